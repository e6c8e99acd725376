# homecluster: remove the Windows service of {{summary}} (NSSM).
# Rendered by `homecluster service render` from windows/uninstall-service.ps1. Run it on the Windows machine in
# PowerShell opened with "Run as administrator":
#     powershell -NoProfile -ExecutionPolicy Bypass -File .\uninstall-{{service}}.ps1
# The run directory (logs, certificates) stays; homecluster down removes the keys.

$Service = {{service_name}}

{{common}}

if (-not (Get-Service -Name $Service -ErrorAction SilentlyContinue)) {
    Write-Host ($Service + ' is not installed: nothing to remove')
    exit 0
}
Invoke-Nssm ('stop ' + $Service) -MayFail | Out-Null
Invoke-Nssm ('remove ' + $Service + ' confirm') | Out-Null
Write-Host ($Service + ' is removed')
