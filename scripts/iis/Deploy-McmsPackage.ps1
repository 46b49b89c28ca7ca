# deploy: lay out {package} (version {version}) on the STOPPED site of {slot}: Expand-Archive into
# <root>\releases\.staging-*, check the files the configuration requires, rename it to <root>\releases\<version>,
# then point the site's physicalPath at it. The previous release folder is kept (rollback); on any failure the
# staging folder is removed and physicalPath is left as it was.
# powershell -NoProfile -ExecutionPolicy Bypass -File scripts/iis/Deploy-McmsPackage.ps1 -Environment {env} -Slot {slot} -Version {version} -Package {package}
param([string]$Environment = '', [string]$Slot = '', [string]$Version = '', [string]$Package = '')
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
Import-Module (Join-Path $PSScriptRoot 'McmsIis.psm1') -Force -DisableNameChecking
try {
    Assert-McmsNoExtra $args
    $node = Get-McmsNode -Environment $Environment -Slot $Slot
    Assert-McmsVersion $Version
    if (-not $Package) { throw (New-McmsUsageError '-Package PATH.zip is required') }
    if ([IO.Path]::GetExtension($Package) -ne '.zip') { throw (New-McmsUsageError "-Package ${Package}: expected a .zip file") }
    if (-not (Test-Path -LiteralPath $Package -PathType Leaf)) { throw "package $Package does not exist" }
    Initialize-McmsIis
    Assert-McmsSite $node
    $state = Get-McmsSiteState $node
    if ($state -ne 'Stopped') { throw "site $($node.Site) is ${state}: stop it (stop_site) before deploying onto it" }
    $before = Get-McmsPhysicalPath $node
    $releases = Get-McmsReleasesDir $node
    $release = [IO.Path]::Combine($releases, $Version)
    $stamp = [DateTime]::UtcNow.ToString('yyyyMMddTHHmmssZ')
    $staging = [IO.Path]::Combine($releases, ".staging-$Version-$stamp")
    $aside = $null
    $placed = $false
    try {
        New-Item -ItemType Directory -Path $staging -Force | Out-Null
        Expand-Archive -LiteralPath $Package -DestinationPath $staging
        $missing = @($node.Required | Where-Object { -not (Test-Path -LiteralPath ([IO.Path]::Combine($staging, $_))) })
        if ($missing.Count) { throw "package $Package lacks $($missing -join ', '): not a release of this site" }
        if (Test-Path -LiteralPath $release) {
            $aside = "$release.replaced-$stamp"
            Rename-Item -LiteralPath $release -NewName ([IO.Path]::GetFileName($aside))
        }
        Rename-Item -LiteralPath $staging -NewName $Version
        $placed = $true
        Set-ItemProperty -Path "IIS:\Sites\$($node.Site)" -Name physicalPath -Value $release
    } catch {
        if (Test-Path -LiteralPath $staging) { Remove-Item -LiteralPath $staging -Recurse -Force }
        if ($placed) { Remove-Item -LiteralPath $release -Recurse -Force }
        if ($aside) { Rename-Item -LiteralPath $aside -NewName $Version }
        throw
    }
    if ($aside) { Remove-Item -LiteralPath $aside -Recurse -Force -ErrorAction SilentlyContinue }
    Write-Output "site $($node.Site) ($($node.Slot)) now points at $release (previous: $before)"
} catch { exit (Write-McmsFailure $_) }
exit 0
