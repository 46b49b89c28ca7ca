@echo off
rem The Lab drill on Windows: double-click this file (or run `drill.cmd` in a console). It runs drill.ps1 with
rem PowerShell, bypassing the execution policy for this one script only; arguments go to the drill.
setlocal
powershell.exe -NoProfile -ExecutionPolicy Bypass -File "%~dp0drill.ps1" %*
set "rc=%ERRORLEVEL%"
rem Double-clicked (the command line names this file): keep the window open so the result can be read.
echo %cmdcmdline% | findstr /i /c:"%~nx0" >nul && pause
exit /b %rc%
