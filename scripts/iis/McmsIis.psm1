#Requires -Version 5.1
<#
    McmsIis: what the scripts/iis/*.ps1 verbs share. The contract is in README.md beside this file.

    - argument checking: a bad or missing argument is a usage error (exit 2), found before anything is touched;
    - the configuration: site, application pool, release root and router (ARR server farm or URL Rewrite rule)
      per environment and slot, read from mcms-iis.json beside this module (or $env:MCMS_IIS_CONFIG);
    - exit codes: 0 done, 1 the action failed (message on stderr), 2 usage error (message on stderr).

    Needs an elevated Windows PowerShell 5.1+ (or PowerShell 7) with the IIS WebAdministration module; the router
    verbs also need ARR (server farms) or URL Rewrite (a rewrite rule).
#>
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$script:ExitDone = 0
$script:ExitFailed = 1
$script:ExitUsage = 2
$script:Slots = @('blue', 'green')
$script:Nodes = @('active', 'blue', 'green')
$script:NamePattern = '\A[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}\z'
$script:VersionPattern = '\A[0-9A-Za-z][0-9A-Za-z._+-]{0,63}\z'
$script:ApplicationHost = 'MACHINE/WEBROOT/APPHOST'

function New-McmsUsageError([string]$Message) {
    # A usage error: the call was wrong; nothing was touched. Exit code 2.
    $exception = [System.InvalidOperationException]::new($Message)
    $exception.Data['McmsExitCode'] = $script:ExitUsage
    return $exception
}

function Write-McmsFailure($ErrorRecord) {
    # The one place that turns an error into the exit code and the message on stderr (no stack, one line).
    $exception = $ErrorRecord.Exception
    $code = $script:ExitFailed
    if ($exception.Data.Contains('McmsExitCode')) { $code = [int]$exception.Data['McmsExitCode'] }
    $prefix = 'failed'
    if ($code -eq $script:ExitUsage) { $prefix = 'usage' }
    [Console]::Error.WriteLine("${prefix}: $($exception.Message)")
    return $code
}

function Assert-McmsNoExtra([object[]]$Extra) {
    if ($Extra -and $Extra.Count -gt 0) {
        throw (New-McmsUsageError "unexpected argument(s): $($Extra -join ' ') (see scripts/iis/README.md)")
    }
}

function Get-McmsConfig {
    $path = $env:MCMS_IIS_CONFIG
    if (-not $path) { $path = Join-Path $PSScriptRoot 'mcms-iis.json' }
    if (-not (Test-Path -LiteralPath $path -PathType Leaf)) {
        throw (New-McmsUsageError "the configuration $path does not exist (see scripts/iis/README.md)")
    }
    try {
        return (Get-Content -LiteralPath $path -Raw -Encoding UTF8 | ConvertFrom-Json)
    } catch {
        throw (New-McmsUsageError "the configuration $path is not valid JSON: $($_.Exception.Message)")
    }
}

function Get-McmsProperty($Object, [string]$Name, [string]$Where) {
    # A required key of the configuration; a missing one is a usage error naming the key.
    if ($null -eq $Object -or -not $Object.PSObject.Properties[$Name]) {
        throw (New-McmsUsageError "$Where.${Name}: missing in the configuration")
    }
    return $Object.PSObject.Properties[$Name].Value
}

function Get-McmsEnvironment([string]$Environment) {
    # The environment's entry of the configuration ({env} of the templates).
    if (-not $Environment) { throw (New-McmsUsageError '-Environment NAME is required') }
    $config = Get-McmsConfig
    $environments = Get-McmsProperty $config 'environments' 'mcms-iis.json'
    $entry = $environments.PSObject.Properties[$Environment]
    if (-not $entry -or $entry.Name -cne $Environment) {
        $known = ($environments.PSObject.Properties | ForEach-Object { $_.Name }) -join ', '
        throw (New-McmsUsageError "-Environment ${Environment}: not in the configuration (known: $known)")
    }
    $entry.Value | Add-Member -NotePropertyName Name -NotePropertyValue $Environment -Force
    return $entry.Value
}

function Get-McmsRouter($EnvConfig) {
    $router = Get-McmsProperty $EnvConfig 'router' $EnvConfig.Name
    $where = "$($EnvConfig.Name).router"
    $mode = Get-McmsProperty $router 'mode' $where
    if ($mode -cnotin @('farm', 'rewrite')) {
        throw (New-McmsUsageError "$where.mode: expected farm or rewrite, got $mode")
    }
    foreach ($slot in $script:Slots) { [void](Get-McmsProperty $router $slot $where) }
    $key = 'rule'
    if ($mode -eq 'farm') { $key = 'farm' }
    $name = [string](Get-McmsProperty $router $key $where)
    if ($name -notmatch $script:NamePattern) { throw (New-McmsUsageError "$where.${key}: unusable IIS name '$name'") }
    foreach ($slot in $script:Slots) {
        if ([string]$router.$slot -match "'") { throw (New-McmsUsageError "$where.${slot}: may not contain a quote") }
    }
    return $router
}

function Assert-McmsSlot([string]$Slot, [string[]]$Allowed) {
    if (-not $Slot) { throw (New-McmsUsageError "-Slot is required ($($Allowed -join ', '))") }
    if ($Slot -cnotin $Allowed) {
        throw (New-McmsUsageError "-Slot ${Slot}: expected one of $($Allowed -join ', ')")
    }
}

function Get-McmsNode([string]$Environment, [string]$Slot) {
    # The site, pool and release root that {slot} names. "active" (a single-node environment's node) is either a
    # slot entry of its own, or "live": the slot the router serves now.
    $envConfig = Get-McmsEnvironment $Environment
    Assert-McmsSlot $Slot $script:Nodes
    $slots = Get-McmsProperty $envConfig 'slots' $Environment
    $entry = $slots.PSObject.Properties[$Slot]
    if (-not $entry) { throw (New-McmsUsageError "-Slot ${Slot}: $Environment has no $Slot slot in the configuration") }
    $value = $entry.Value
    $resolved = $Slot
    if ($value -is [string]) {
        if ($Slot -ne 'active' -or $value -ne 'live') {
            throw (New-McmsUsageError "$Environment.slots.${Slot}: expected a site entry (or ""live"" for active)")
        }
        $resolved = Resolve-McmsLiveSlot $envConfig
        $value = Get-McmsProperty $slots $resolved "$Environment.slots"
    }
    $where = "$Environment.slots.$resolved"
    $node = [pscustomobject]@{
        Environment = $Environment
        Slot        = $resolved
        Site        = [string](Get-McmsProperty $value 'site' $where)
        Pool        = [string](Get-McmsProperty $value 'pool' $where)
        Root        = [string](Get-McmsProperty $value 'root' $where)
        Required    = @('web.config')
        TimeoutS    = 60
    }
    foreach ($name in @($node.Site, $node.Pool)) {
        if ($name -notmatch $script:NamePattern) { throw (New-McmsUsageError "${where}: unusable IIS name '$name'") }
    }
    if ($envConfig.PSObject.Properties['requiredFiles']) { $node.Required = @($envConfig.requiredFiles) }
    if ($envConfig.PSObject.Properties['timeoutSeconds']) { $node.TimeoutS = [int]$envConfig.timeoutSeconds }
    return $node
}

function Assert-McmsVersion([string]$Version) {
    if (-not $Version) { throw (New-McmsUsageError '-Version is required') }
    if ($Version -notmatch $script:VersionPattern) {
        throw (New-McmsUsageError "-Version ${Version}: expected a version like 1.2.3 (letters, digits, . _ + -)")
    }
}

function Initialize-McmsIis {
    # The IIS cmdlets and the IIS:\ drive; an elevated session (reading applicationHost.config needs it).
    $principal = [Security.Principal.WindowsPrincipal][Security.Principal.WindowsIdentity]::GetCurrent()
    if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
        throw 'needs an elevated PowerShell (Run as administrator): IIS configuration is not readable otherwise'
    }
    if (-not (Get-Module -ListAvailable -Name WebAdministration)) {
        throw 'the WebAdministration module is missing: install IIS Management Scripts and Tools'
    }
    Import-Module WebAdministration -Verbose:$false
}

function Assert-McmsSite($Node) {
    if (-not (Test-Path -Path "IIS:\Sites\$($Node.Site)")) { throw "IIS has no site $($Node.Site)" }
    if (-not (Test-Path -Path "IIS:\AppPools\$($Node.Pool)")) { throw "IIS has no application pool $($Node.Pool)" }
}

function Get-McmsSiteState($Node) { return [string](Get-WebsiteState -Name $Node.Site).Value }

function Get-McmsPoolState($Node) { return [string](Get-WebAppPoolState -Name $Node.Pool).Value }

function Wait-McmsState([scriptblock]$Read, [string]$Want, [int]$TimeoutS, [string]$What) {
    $deadline = (Get-Date).AddSeconds($TimeoutS)
    while ($true) {
        $state = & $Read
        if ($state -eq $Want) { return }
        if ((Get-Date) -gt $deadline) { throw "$What is $state, not $Want, after $TimeoutS s" }
        Start-Sleep -Milliseconds 250
    }
}

function Get-McmsPhysicalPath($Node) {
    $path = [string](Get-Item -Path "IIS:\Sites\$($Node.Site)").physicalPath
    return [Environment]::ExpandEnvironmentVariables($path).TrimEnd('\')
}

function Get-McmsReleasesDir($Node) { return [IO.Path]::Combine($Node.Root, 'releases') }

function Get-McmsLaidOutVersion($Node) {
    # The version laid out on the site: the leaf of physicalPath, which must be <root>\releases\<version>.
    $path = [IO.Path]::GetFullPath((Get-McmsPhysicalPath $Node))
    $releases = [IO.Path]::GetFullPath((Get-McmsReleasesDir $Node)).TrimEnd('\')
    $leaf = [IO.Path]::GetFileName($path)
    if ([IO.Path]::GetDirectoryName($path) -ne $releases -or $leaf -notmatch $script:VersionPattern) {
        throw ("cannot tell the version of $($Node.Site): its physicalPath $path is not $releases\<version> " +
            '(deploy once with Deploy-McmsPackage.ps1, or point it at such a folder)')
    }
    return $leaf
}

function Get-McmsConfigValue([string]$PSPath, [string]$Filter, [string]$Name) {
    $value = Get-WebConfigurationProperty -PSPath $PSPath -Filter $Filter -Name $Name
    if ($null -ne $value -and $value.PSObject.Properties['Value']) { $value = $value.Value }
    return $value
}

function Get-McmsRuleScope($Router) {
    # A URL Rewrite rule: global (applicationHost.config) unless router.site names the front site.
    if ($Router.PSObject.Properties['site'] -and $Router.site) {
        return @("IIS:\Sites\$($Router.site)", "system.webServer/rewrite/rules/rule[@name='$($Router.rule)']/action")
    }
    return @($script:ApplicationHost, "system.webServer/rewrite/globalRules/rule[@name='$($Router.rule)']/action")
}

function Get-McmsFarmServer($Router, [string]$Slot) {
    $filter = "webFarms/webFarm[@name='$($Router.farm)']/server[@address='$($Router.$Slot)']"
    if (-not (Get-WebConfiguration -PSPath $script:ApplicationHost -Filter $filter)) {
        throw "the ARR server farm $($Router.farm) has no server $($Router.$Slot) (the $Slot slot)"
    }
    return $filter
}

function Resolve-McmsLiveSlot($EnvConfig) {
    # The slot the public address serves: the one enabled server of the farm, or the rule's upstream.
    $router = Get-McmsRouter $EnvConfig
    Initialize-McmsIis
    if ($router.mode -eq 'farm') {
        $live = @($script:Slots | Where-Object {
                [bool](Get-McmsConfigValue $script:ApplicationHost (Get-McmsFarmServer $router $_) 'enabled') })
        if ($live.Count -ne 1) {
            throw "the ARR server farm $($router.farm) has $($live.Count) slots enabled ($($live -join ', ')); expected exactly one"
        }
        return $live[0]
    }
    $psPath, $filter = Get-McmsRuleScope $router
    $url = [string](Get-McmsConfigValue $psPath $filter 'url')
    foreach ($slot in $script:Slots) { if ($url -eq $router.$slot) { return $slot } }
    throw "the URL Rewrite rule $($router.rule) sends traffic to $url, which is neither blue ($($router.blue)) nor green ($($router.green))"
}

function Set-McmsLiveSlot($EnvConfig, [string]$Slot) {
    # One commit: the new slot's server enabled and the other disabled (ARR finishes requests in flight).
    $router = Get-McmsRouter $EnvConfig
    Initialize-McmsIis
    if ($router.mode -eq 'farm') {
        $other = @($script:Slots | Where-Object { $_ -ne $Slot })[0]
        $on, $off = (Get-McmsFarmServer $router $Slot), (Get-McmsFarmServer $router $other)
        Start-WebCommitDelay
        Set-WebConfigurationProperty -PSPath $script:ApplicationHost -Filter $on -Name enabled -Value $true
        Set-WebConfigurationProperty -PSPath $script:ApplicationHost -Filter $off -Name enabled -Value $false
        Stop-WebCommitDelay -Commit $true
        return
    }
    $psPath, $filter = Get-McmsRuleScope $router
    Set-WebConfigurationProperty -PSPath $psPath -Filter $filter -Name url -Value $router.$Slot
}

Export-ModuleMember -Function *
