# start_site: start {slot} serving {version}: the laid out release must be that version; the application pool is
# started if it is stopped, then the site; waits until IIS says Started. The runbook then waits for /health.
# powershell -NoProfile -ExecutionPolicy Bypass -File scripts/iis/Start-McmsSite.ps1 -Environment {env} -Slot {slot} -Version {version}
param([string]$Environment = '', [string]$Slot = '', [string]$Version = '')
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
Import-Module (Join-Path $PSScriptRoot 'McmsIis.psm1') -Force -DisableNameChecking
try {
    Assert-McmsNoExtra $args
    $node = Get-McmsNode -Environment $Environment -Slot $Slot
    Assert-McmsVersion $Version
    Initialize-McmsIis
    Assert-McmsSite $node
    $laidOut = Get-McmsLaidOutVersion $node
    if ($laidOut -ne $Version) { throw "site $($node.Site) has $laidOut laid out, not ${Version}: deploy $Version first" }
    if ((Get-McmsPoolState $node) -ne 'Started') {
        Start-WebAppPool -Name $node.Pool
        Wait-McmsState { Get-McmsPoolState $node } 'Started' $node.TimeoutS "application pool $($node.Pool)"
    }
    if ((Get-McmsSiteState $node) -ne 'Started') {
        Start-Website -Name $node.Site
        Wait-McmsState { Get-McmsSiteState $node } 'Started' $node.TimeoutS "site $($node.Site)"
    }
    Write-Output "site $($node.Site) ($($node.Slot)) started on $Version"
} catch { exit (Write-McmsFailure $_) }
exit 0
