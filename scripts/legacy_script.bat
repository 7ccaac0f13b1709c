@echo off
REM Stand-in for an incident tool: prints what hub hands it.
echo legacy_script.bat called with: %*
echo environment:
set HUB_
exit /b 0
