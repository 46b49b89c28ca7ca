# active: print the slot the public address serves (blue or green): the one enabled server of the ARR farm, or the
# slot whose upstream the URL Rewrite rule points at. stdout carries nothing but the slot.
# powershell -NoProfile -ExecutionPolicy Bypass -File scripts/iis/Get-McmsActiveSlot.ps1 -Environment {env}
param([string]$Environment = '')
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
Import-Module (Join-Path $PSScriptRoot 'McmsIis.psm1') -Force -DisableNameChecking
try {
    Assert-McmsNoExtra $args
    $envConfig = Get-McmsEnvironment $Environment
    Write-Output (Resolve-McmsLiveSlot $envConfig)
} catch { exit (Write-McmsFailure $_) }
exit 0
