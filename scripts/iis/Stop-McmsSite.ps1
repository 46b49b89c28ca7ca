# stop_site: stop the IIS site of {slot} and wait until IIS says Stopped (already stopped is success).
# powershell -NoProfile -ExecutionPolicy Bypass -File scripts/iis/Stop-McmsSite.ps1 -Environment {env} -Slot {slot}
param([string]$Environment = '', [string]$Slot = '')
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
Import-Module (Join-Path $PSScriptRoot 'McmsIis.psm1') -Force -DisableNameChecking
try {
    Assert-McmsNoExtra $args
    $node = Get-McmsNode -Environment $Environment -Slot $Slot
    Initialize-McmsIis
    Assert-McmsSite $node
    $before = Get-McmsSiteState $node
    if ($before -eq 'Stopped') {
        Write-Output "site $($node.Site) ($($node.Slot)) already stopped"
    } else {
        Stop-Website -Name $node.Site
        Wait-McmsState { Get-McmsSiteState $node } 'Stopped' $node.TimeoutS "site $($node.Site)"
        Write-Output "site $($node.Site) ($($node.Slot)) stopped (was $before)"
    }
} catch { exit (Write-McmsFailure $_) }
exit 0
