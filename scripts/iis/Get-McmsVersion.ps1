# current_version: print the version laid out on {slot} (the leaf of its physicalPath, <root>\releases\<version>),
# even when the site is stopped. stdout carries nothing but the version.
# powershell -NoProfile -ExecutionPolicy Bypass -File scripts/iis/Get-McmsVersion.ps1 -Environment {env} -Slot {slot}
param([string]$Environment = '', [string]$Slot = '')
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
Import-Module (Join-Path $PSScriptRoot 'McmsIis.psm1') -Force -DisableNameChecking
try {
    Assert-McmsNoExtra $args
    $node = Get-McmsNode -Environment $Environment -Slot $Slot
    Initialize-McmsIis
    Assert-McmsSite $node
    Write-Output (Get-McmsLaidOutVersion $node)
} catch { exit (Write-McmsFailure $_) }
exit 0
