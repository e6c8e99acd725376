# homecluster start: the scheduler of cluster home on tower, as NSSM service homecluster-home-scheduler
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'  # progress records would reach stderr as CLIXML
try { [Console]::OutputEncoding = [System.Text.Encoding]::UTF8 } catch { }
function Write-Line([string]$Line) { [Console]::Out.WriteLine($Line) }
$UserHome = [Environment]::GetFolderPath('UserProfile')
$D = 'D:\Ann''s Dask Runs\home\tower'
function Find-Program([string]$Name) {
    if (Test-Path -LiteralPath $Name -PathType Leaf) { return $Name }
    if ($Name -notmatch '[\\/:]') {
        $Command = Get-Command -Name $Name -CommandType Application -ErrorAction SilentlyContinue |
            Select-Object -First 1
        if ($Command) { return $Command.Source }
    }
    return $null
}
if (-not (Find-Program 'C:\Program Files\Python 3.12\python.exe')) { Write-Line 'hc-error no Python interpreter at C:\Program Files\Python 3.12\python.exe on tower. Fix: homecluster setup, or set python: for it'; exit 127 }
$Nssm = Find-Program 'C:\tools\nssm 2.24\win64\nssm.exe'
if (-not $Nssm) { Write-Line 'hc-error nssm.exe not found on tower. Fix: winget install NSSM.NSSM (in PowerShell there), or set nssm: C:\path\to\nssm.exe for tower in the inventory'; exit 127 }
$Identity = [Security.Principal.WindowsIdentity]::GetCurrent()
$Admin = [Security.Principal.WindowsBuiltInRole]::Administrator
if (-not (New-Object Security.Principal.WindowsPrincipal $Identity).IsInRole($Admin)) {
    Write-Line ('hc-error installing the service homecluster-home-scheduler needs an administrator, and ' + $env:USERNAME + ' is not one on tower. Fix: set user: for tower to an account in its Administrators group, or do it at the PC with the scripts of homecluster service render tower (windows/README.md)'); exit 1
}
New-Item -ItemType Directory -Force -Path $D | Out-Null
$Log = 'D:\Ann''s Dask Runs\home\tower\scheduler.log'
if (Test-Path -LiteralPath $Log) {
    try { [System.IO.File]::Delete($Log + '.1'); [System.IO.File]::Move($Log, $Log + '.1') } catch { }
}
$Rendered = Join-Path $D 'install-homecluster-home-scheduler.ps1'
$Text = @'
# homecluster: install the scheduler of cluster home on tower as a Windows service, kept running by NSSM.
# Rendered by `homecluster service render` from windows/install-service.ps1. Run it on the Windows machine in
# PowerShell opened with "Run as administrator":
#     powershell -NoProfile -ExecutionPolicy Bypass -File .\install-homecluster-home-scheduler.ps1
# Running it again replaces the service. windows/README.md says what each step does, to do it by hand.
# The service runs as LocalSystem (NSSM's default). Paths that the inventory writes with ~ are made here from the
# profile of the user who runs this script: the one homecluster logs in as, who owns the run directory.

$Service = 'homecluster-home-scheduler'
$UserHome = [Environment]::GetFolderPath('UserProfile')
if (-not $UserHome) { throw 'this user has no profile folder: run the script as the user homecluster logs in as' }
$RunDir = 'D:\Ann''s Dask Runs\home\tower'
$Application = 'C:\Program Files\Python 3.12\python.exe'

# --- the part every homecluster NSSM script shares (windows/nssm-common.ps1) ---
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0

$principal = New-Object Security.Principal.WindowsPrincipal ([Security.Principal.WindowsIdentity]::GetCurrent())
if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
    throw ('changing a Windows service needs an administrator. Fix: open PowerShell with "Run as administrator" ' +
           'and run this script again')
}

# nssm.exe: the inventory's nssm: key, else nssm on the PATH (winget puts it there)
$Nssm = 'C:\tools\nssm 2.24\win64\nssm.exe'
$found = $null
if (Test-Path -LiteralPath $Nssm -PathType Leaf) {
    $found = (Resolve-Path -LiteralPath $Nssm).Path
} elseif ($Nssm -notmatch '[\\/:]') {
    $command = Get-Command -Name $Nssm -CommandType Application -ErrorAction SilentlyContinue | Select-Object -First 1
    if ($command) { $found = $command.Source }
}
if (-not $found) {
    throw ('nssm.exe not found (looked for ' + $Nssm + '). Fix: winget install NSSM.NSSM, then open a new ' +
           'PowerShell; or download nssm 2.24 from nssm.cc and set nssm: to the full path of nssm.exe for ' +
           'tower' + ' in the inventory')
}
$Nssm = $found

# Runs nssm.exe with this command line exactly as written: homecluster quoted every argument for Windows
# (CommandLineToArgvW rules), so PowerShell must not quote it again (Windows PowerShell 5.1 would break the
# quotes inside AppParameters). Returns nssm's exit code; throws on failure unless -MayFail.
function Invoke-Nssm([string]$CommandLine, [switch]$MayFail) {
    Write-Host ('nssm ' + $CommandLine)
    $process = Start-Process -FilePath $Nssm -ArgumentList $CommandLine -NoNewWindow -Wait -PassThru
    if ($process.ExitCode -ne 0 -and -not $MayFail) {
        throw ('nssm ' + $CommandLine + ' failed with exit code ' + $process.ExitCode)
    }
    return $process.ExitCode
}

# nssm set SERVICE PARAMETER VALUE...: the values already quoted for Windows
function Set-Nssm([string]$Parameter, [string]$Values) {
    Invoke-Nssm ('set ' + $Service + ' ' + $Parameter + ' ' + $Values) | Out-Null
}
# --- end of nssm-common.ps1 ---

# the interpreter: a full path, or a bare name (such as python) that the PATH finds now
if ($Application -notmatch '[\\/:]') {
    $command = Get-Command -Name $Application -CommandType Application -ErrorAction SilentlyContinue |
        Select-Object -First 1
    if ($command) { $Application = $command.Source }
}
if (-not (Test-Path -LiteralPath $Application -PathType Leaf)) {
    throw ('no Python at ' + $Application + '. Fix: install Python with dask (or run homecluster setup), and ' +
           'set python: for ' + 'tower' + ' in the inventory to the full path of its python.exe')
}

if (Get-Service -Name $Service -ErrorAction SilentlyContinue) {
    Write-Host ($Service + ' exists: replacing it')
    Invoke-Nssm ('stop ' + $Service) -MayFail | Out-Null
    Invoke-Nssm ('remove ' + $Service + ' confirm') | Out-Null
}
New-Item -ItemType Directory -Force -Path $RunDir | Out-Null

# a path holds no double quote and does not end in a backslash: quotes around it are enough
Invoke-Nssm ('install ' + $Service + ' "' + $Application + '"') | Out-Null
Set-Nssm 'AppDirectory' '"D:\Ann''s Dask Runs\home\tower"'
Set-Nssm 'AppParameters' '"-m distributed.cli.dask_scheduler --host 192.168.1.20 --port 8786 --dashboard-address 127.0.0.1:8787 --tls-ca-file \"D:/Ann''s Dask Runs/home/tower/tls/ca.pem\" --tls-cert \"D:/Ann''s Dask Runs/home/tower/tls/scheduler.pem\" --tls-key \"D:/Ann''s Dask Runs/home/tower/tls/scheduler.key\""'
Set-Nssm 'AppEnvironmentExtra' 'HOMECLUSTER_PROCESS=home/tower/scheduler HOMECLUSTER_TLS=new'
Set-Nssm 'AppStdout' '"D:\Ann''s Dask Runs\home\tower\scheduler.log"'
Set-Nssm 'AppStderr' '"D:\Ann''s Dask Runs\home\tower\scheduler.log"'
Set-Nssm 'AppRotateFiles' '1'
Set-Nssm 'AppRotateOnline' '1'
Set-Nssm 'AppRotateBytes' '10485760'
# a dask worker that lost its scheduler exits with code 0: restart on every exit
Set-Nssm 'AppExit' 'Default Restart'
Set-Nssm 'AppRestartDelay' '2000'
Set-Nssm 'Start' 'SERVICE_AUTO_START'
Set-Nssm 'DisplayName' '"homecluster home scheduler (tower)"'
Set-Nssm 'Description' '"Dask scheduler of the homecluster cluster home on tower, started with Windows and restarted whenever it exits, by NSSM"'

if ((Invoke-Nssm ('start ' + $Service) -MayFail) -ne 0) {
    Write-Warning ($Service + ' is installed but did not start yet; NSSM keeps trying. Its log: ' + 'D:\Ann''s Dask Runs\home\tower\scheduler.log')
} else {
    Write-Host ($Service + ' is installed and running; it starts with Windows. Log: ' + 'D:\Ann''s Dask Runs\home\tower\scheduler.log')
}
'@
[System.IO.File]::WriteAllText($Rendered, $Text, (New-Object System.Text.UTF8Encoding $true))
try { & $Rendered } catch { Write-Line ('hc-error installing homecluster-home-scheduler failed: ' + $_.Exception.Message); exit 1 }
[System.IO.File]::WriteAllText((Join-Path $D 'scheduler.spec'), '58e9ae7e32ab4c0a')
$Svc = Get-CimInstance -ClassName Win32_Service -Filter "Name='homecluster-home-scheduler'"
Write-Line ('hc-started scheduler ' + [int]$Svc.ProcessId)