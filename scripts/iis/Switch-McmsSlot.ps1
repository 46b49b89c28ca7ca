# switch: send the public address to {slot}: enable its server in the ARR server farm and disable the other in
# one commit, or point the URL Rewrite rule's action at the slot's upstream (router.mode in mcms-iis.json).
# powershell -NoProfile -ExecutionPolicy Bypass -File scripts/iis/Switch-McmsSlot.ps1 -Environment {env} -Slot {slot}
param([string]$Environment = '', [string]$Slot = '')
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
Import-Module (Join-Path $PSScriptRoot 'McmsIis.psm1') -Force -DisableNameChecking
try {
    Assert-McmsNoExtra $args
    $envConfig = Get-McmsEnvironment $Environment
    Assert-McmsSlot $Slot @('blue', 'green')
    $before = Resolve-McmsLiveSlot $envConfig
    Set-McmsLiveSlot $envConfig $Slot
    $after = Resolve-McmsLiveSlot $envConfig
    if ($after -ne $Slot) { throw "switched to $Slot, but the router now serves $after" }
    Write-Output "traffic of $Environment switched from $before to $Slot"
} catch { exit (Write-McmsFailure $_) }
exit 0
