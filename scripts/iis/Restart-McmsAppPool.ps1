# recycle_pool: recycle the application pool of {slot} (a new worker process; a stopped pool stays stopped).
# powershell -NoProfile -ExecutionPolicy Bypass -File scripts/iis/Restart-McmsAppPool.ps1 -Environment {env} -Slot {slot}
param([string]$Environment = '', [string]$Slot = '')
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
Import-Module (Join-Path $PSScriptRoot 'McmsIis.psm1') -Force -DisableNameChecking
try {
    Assert-McmsNoExtra $args
    $node = Get-McmsNode -Environment $Environment -Slot $Slot
    Initialize-McmsIis
    Assert-McmsSite $node
    $state = Get-McmsPoolState $node
    if ($state -eq 'Started') {
        Restart-WebAppPool -Name $node.Pool
        Write-Output "application pool $($node.Pool) ($($node.Slot)) recycled"
    } else {
        Write-Output "application pool $($node.Pool) ($($node.Slot)) is ${state}: nothing to recycle"
    }
} catch { exit (Write-McmsFailure $_) }
exit 0
