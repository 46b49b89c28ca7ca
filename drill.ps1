# The Lab drill on Windows (PowerShell 5.1 or 7): find a Python >= 3.12 (py -3.12 first), create .venv, install
# the pinned requirements (from wheelhouse\ when it is there: offline; else from the package index), run the
# single-node rollback drill against the embedded Lab, then open its report in the default browser (not with
# RUNBOOK_NO_OPEN=1). Arguments go to the drill: .\drill.ps1 --keep-lab. Exit code: the drill's.
#   $env:PYTHON = 'C:\Python312\python.exe'   use that interpreter to create .venv
#   $env:RUNBOOK_VENV = 'D:\venvs\runbook'     use that virtual environment (created if missing)
# Double-click drill.cmd to run this without changing the execution policy.
$ErrorActionPreference = 'Continue'   # native programs report through $LASTEXITCODE, checked below
Set-Location -LiteralPath $PSScriptRoot

$venv = Join-Path $PSScriptRoot '.venv'
if ($env:RUNBOOK_VENV) { $venv = $env:RUNBOOK_VENV }
$py = Join-Path $venv 'Scripts\python.exe'
$stamp = Join-Path $venv '.installed-requirements'
$probe = 'import sys, venv; sys.exit(sys.version_info < (3, 12))'

function Find-Python {
    $candidates = @()
    if ($env:PYTHON) { $candidates += , @($env:PYTHON) }
    $candidates += , @('py', '-3.12')   # first: the wheelhouse's compiled wheels are CPython 3.12's
    $candidates += , @('py', '-3.14')
    $candidates += , @('py', '-3.13')
    $candidates += , @('python')
    $candidates += , @('python3')
    foreach ($c in $candidates) {
        if (-not (Get-Command $c[0] -ErrorAction SilentlyContinue)) { continue }
        $rest = @($c | Select-Object -Skip 1)
        & $c[0] @rest -c $probe 2>$null | Out-Null
        if ($LASTEXITCODE -eq 0) { return , $c }
    }
    return $null
}

if (-not (Test-Path -LiteralPath $py)) {
    $found = Find-Python
    if ($null -eq $found) {
        Write-Host 'ERROR: no Python >= 3.12 found (tried $env:PYTHON, py -3.12, py -3.14, py -3.13, python, python3).'
        Write-Host 'Install Python 3.12 from python.org (tick "Add python.exe to PATH" and the py launcher),'
        Write-Host "or point `$env:PYTHON at a python.exe 3.12 or newer."
        exit 2
    }
    $rest = @($found | Select-Object -Skip 1)
    Write-Host "Creating $venv with $($found -join ' ')"
    & $found[0] @rest -m venv $venv
    if ($LASTEXITCODE -ne 0) { Write-Host "ERROR: could not create $venv"; exit 2 }
}

$requirements = Join-Path $PSScriptRoot 'requirements.txt'
$fresh = (Test-Path -LiteralPath $stamp) -and
    ((Get-Item -LiteralPath $stamp).LastWriteTime -ge (Get-Item -LiteralPath $requirements).LastWriteTime)
if (-not $fresh) {
    if (Test-Path (Join-Path $PSScriptRoot 'wheelhouse\*.whl')) {
        Write-Host 'Installing the requirements from wheelhouse\ (offline)'
        & $py -m pip install --quiet --disable-pip-version-check --no-index --find-links wheelhouse -r requirements.txt
    } else {
        Write-Host 'Installing the requirements from the package index'
        & $py -m pip install --quiet --disable-pip-version-check -r requirements.txt
    }
    if ($LASTEXITCODE -ne 0) { Write-Host 'ERROR: the requirements could not be installed (see above)'; exit 2 }
    Set-Content -LiteralPath $stamp -Value '' -Encoding ascii
}

$before = & $py -m plugins.cli open --print-only 2>$null
& $py -m plugins.cli drill @args
$rc = $LASTEXITCODE

$report = & $py -m plugins.cli open --print-only 2>$null
if ((-not $report) -or ($report -eq $before)) { exit $rc }   # no new report: the drill said why
if ($env:RUNBOOK_NO_OPEN -eq '1') {
    Write-Host "HTML report: $report (not opened: RUNBOOK_NO_OPEN=1)"
} elseif (-not [Environment]::UserInteractive) {
    Write-Host "HTML report: $report (not opened: no interactive desktop)"
} else {
    Write-Host "Opening $report"
    Start-Process -FilePath $report
}
exit $rc
