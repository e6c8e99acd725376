# homecluster: install {{summary}} as a Windows service, kept running by NSSM.
# Rendered by `homecluster service render` from windows/install-service.ps1. Run it on the Windows machine in
# PowerShell opened with "Run as administrator":
#     powershell -NoProfile -ExecutionPolicy Bypass -File .\install-{{service}}.ps1
# Running it again replaces the service. windows/README.md says what each step does, to do it by hand.
# The service runs as LocalSystem (NSSM's default). Paths that the inventory writes with ~ are made here from the
# profile of the user who runs this script: the one homecluster logs in as, who owns the run directory.

$Service = {{service_name}}
$UserHome = [Environment]::GetFolderPath('UserProfile')
if (-not $UserHome) { throw 'this user has no profile folder: run the script as the user homecluster logs in as' }
$RunDir = {{run_dir}}
$Application = {{application}}

{{common}}

# the interpreter: a full path, or a bare name (such as python) that the PATH finds now
if ($Application -notmatch '[\\/:]') {
    $command = Get-Command -Name $Application -CommandType Application -ErrorAction SilentlyContinue |
        Select-Object -First 1
    if ($command) { $Application = $command.Source }
}
if (-not (Test-Path -LiteralPath $Application -PathType Leaf)) {
    throw ('no Python at ' + $Application + '. Fix: install Python with dask (or run homecluster setup), and ' +
           'set python: for ' + {{host}} + ' in the inventory to the full path of its python.exe')
}

if (Get-Service -Name $Service -ErrorAction SilentlyContinue) {
    Write-Host ($Service + ' exists: replacing it')
    Invoke-Nssm ('stop ' + $Service) -MayFail | Out-Null
    Invoke-Nssm ('remove ' + $Service + ' confirm') | Out-Null
}
New-Item -ItemType Directory -Force -Path $RunDir | Out-Null

# a path holds no double quote and does not end in a backslash: quotes around it are enough
Invoke-Nssm ('install ' + $Service + ' "' + $Application + '"') | Out-Null
Set-Nssm 'AppDirectory' {{app_directory}}
Set-Nssm 'AppParameters' {{app_parameters}}
Set-Nssm 'AppEnvironmentExtra' {{app_environment_extra}}
Set-Nssm 'AppStdout' {{log}}
Set-Nssm 'AppStderr' {{log}}
Set-Nssm 'AppRotateFiles' '1'
Set-Nssm 'AppRotateOnline' '1'
Set-Nssm 'AppRotateBytes' '{{rotate_bytes}}'
# a dask worker that lost its scheduler exits with code 0: restart on every exit
Set-Nssm 'AppExit' 'Default Restart'
Set-Nssm 'AppRestartDelay' '{{restart_delay_ms}}'
Set-Nssm 'Start' 'SERVICE_AUTO_START'
Set-Nssm 'DisplayName' {{display_name}}
Set-Nssm 'Description' {{description}}

if ((Invoke-Nssm ('start ' + $Service) -MayFail) -ne 0) {
    Write-Warning ($Service + ' is installed but did not start yet; NSSM keeps trying. Its log: ' + {{log_path}})
} else {
    Write-Host ($Service + ' is installed and running; it starts with Windows. Log: ' + {{log_path}})
}
