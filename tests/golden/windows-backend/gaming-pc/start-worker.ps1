# homecluster start: the worker of cluster home on gaming-pc, as NSSM service homecluster-home-worker
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'  # progress records would reach stderr as CLIXML
try { [Console]::OutputEncoding = [System.Text.Encoding]::UTF8 } catch { }
function Write-Line([string]$Line) { [Console]::Out.WriteLine($Line) }
$UserHome = [Environment]::GetFolderPath('UserProfile')
$D = ($UserHome + '\.homecluster\home\gaming-pc')
function Find-Program([string]$Name) {
    if (Test-Path -LiteralPath $Name -PathType Leaf) { return $Name }
    if ($Name -notmatch '[\\/:]') {
        $Command = Get-Command -Name $Name -CommandType Application -ErrorAction SilentlyContinue |
            Select-Object -First 1
        if ($Command) { return $Command.Source }
    }
    return $null
}
if (-not (Find-Program 'python')) { Write-Line 'hc-error no Python interpreter at python on gaming-pc. Fix: homecluster setup, or set python: for it'; exit 127 }
$Nssm = Find-Program 'nssm'
if (-not $Nssm) { Write-Line 'hc-error nssm.exe not found on gaming-pc. Fix: winget install NSSM.NSSM (in PowerShell there), or set nssm: C:\path\to\nssm.exe for gaming-pc in the inventory'; exit 127 }
$Identity = [Security.Principal.WindowsIdentity]::GetCurrent()
$Admin = [Security.Principal.WindowsBuiltInRole]::Administrator
if (-not (New-Object Security.Principal.WindowsPrincipal $Identity).IsInRole($Admin)) {
    Write-Line ('hc-error installing the service homecluster-home-worker needs an administrator, and ' + $env:USERNAME + ' is not one on gaming-pc. Fix: set user: for gaming-pc to an account in its Administrators group, or do it at the PC with the scripts of homecluster service render gaming-pc (windows/README.md)'); exit 1
}
New-Item -ItemType Directory -Force -Path $D | Out-Null
$Log = ($UserHome + '\.homecluster\home\gaming-pc\worker.log')
if (Test-Path -LiteralPath $Log) {
    try { [System.IO.File]::Delete($Log + '.1'); [System.IO.File]::Move($Log, $Log + '.1') } catch { }
}
$Rendered = Join-Path $D 'install-homecluster-home-worker.ps1'
$Text = @'
# homecluster: install the worker of cluster home on gaming-pc as a Windows service, kept running by NSSM.
# Rendered by `homecluster service render` from windows/install-service.ps1. Run it on the Windows machine in
# PowerShell opened with "Run as administrator":
#     powershell -NoProfile -ExecutionPolicy Bypass -File .\install-homecluster-home-worker.ps1
# Running it again replaces the service. windows/README.md says what each step does, to do it by hand.
# The service runs as LocalSystem (NSSM's default). Paths that the inventory writes with ~ are made here from the
# profile of the user who runs this script: the one homecluster logs in as, who owns the run directory.

$Service = 'homecluster-home-worker'
$UserHome = [Environment]::GetFolderPath('UserProfile')
if (-not $UserHome) { throw 'this user has no profile folder: run the script as the user homecluster logs in as' }
$RunDir = ($UserHome + '\.homecluster\home\gaming-pc')
$Application = 'python'

# --- the part every homecluster NSSM script shares (windows/nssm-common.ps1) ---
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0

$principal = New-Object Security.Principal.WindowsPrincipal ([Security.Principal.WindowsIdentity]::GetCurrent())
if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
    throw ('changing a Windows service needs an administrator. Fix: open PowerShell with "Run as administrator" ' +
           'and run this script again')
}

# nssm.exe: the inventory's nssm: key, else nssm on the PATH (winget puts it there)
$Nssm = 'nssm'
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
           'gaming-pc' + ' in the inventory')
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
           'set python: for ' + 'gaming-pc' + ' in the inventory to the full path of its python.exe')
}

if (Get-Service -Name $Service -ErrorAction SilentlyContinue) {
    Write-Host ($Service + ' exists: replacing it')
    Invoke-Nssm ('stop ' + $Service) -MayFail | Out-Null
    Invoke-Nssm ('remove ' + $Service + ' confirm') | Out-Null
}
New-Item -ItemType Directory -Force -Path $RunDir | Out-Null

# a path holds no double quote and does not end in a backslash: quotes around it are enough
Invoke-Nssm ('install ' + $Service + ' "' + $Application + '"') | Out-Null
Set-Nssm 'AppDirectory' ('"' + $UserHome + '\.homecluster\home\gaming-pc"')
Set-Nssm 'AppParameters' ('"-m distributed.cli.dask_worker tls://192.168.1.20:8786 --name gaming-pc --nworkers 1 --memory-limit auto --death-timeout 120 --local-directory \"' + $UserHome + '\.homecluster\home\gaming-pc\work\" --host 192.168.1.12 --no-dashboard --dashboard-address 127.0.0.1:0 --resources GPU=1 --tls-ca-file \"' + $UserHome + '\.homecluster\home\gaming-pc\tls\ca.pem\" --tls-cert \"' + $UserHome + '\.homecluster\home\gaming-pc\tls\worker.pem\" --tls-key \"' + $UserHome + '\.homecluster\home\gaming-pc\tls\worker.key\""')
Set-Nssm 'AppEnvironmentExtra' 'HOMECLUSTER_PROCESS=home/gaming-pc/worker HOMECLUSTER_TLS=new "NOTE=it’’s \"50%\" done"'
Set-Nssm 'AppStdout' ('"' + $UserHome + '\.homecluster\home\gaming-pc\worker.log"')
Set-Nssm 'AppStderr' ('"' + $UserHome + '\.homecluster\home\gaming-pc\worker.log"')
Set-Nssm 'AppRotateFiles' '1'
Set-Nssm 'AppRotateOnline' '1'
Set-Nssm 'AppRotateBytes' '10485760'
# a dask worker that lost its scheduler exits with code 0: restart on every exit
Set-Nssm 'AppExit' 'Default Restart'
Set-Nssm 'AppRestartDelay' '2000'
Set-Nssm 'Start' 'SERVICE_AUTO_START'
Set-Nssm 'DisplayName' '"homecluster home worker (gaming-pc)"'
Set-Nssm 'Description' '"Dask worker of the homecluster cluster home on gaming-pc, started with Windows and restarted whenever it exits, by NSSM"'

if ((Invoke-Nssm ('start ' + $Service) -MayFail) -ne 0) {
    Write-Warning ($Service + ' is installed but did not start yet; NSSM keeps trying. Its log: ' + ($UserHome + '\.homecluster\home\gaming-pc\worker.log'))
} else {
    Write-Host ($Service + ' is installed and running; it starts with Windows. Log: ' + ($UserHome + '\.homecluster\home\gaming-pc\worker.log'))
}
'@
[System.IO.File]::WriteAllText($Rendered, $Text, (New-Object System.Text.UTF8Encoding $true))
try { & $Rendered } catch { Write-Line ('hc-error installing homecluster-home-worker failed: ' + $_.Exception.Message); exit 1 }
[System.IO.File]::WriteAllText((Join-Path $D 'worker.spec'), '904530574ceda25c')
$Svc = Get-CimInstance -ClassName Win32_Service -Filter "Name='homecluster-home-worker'"
Write-Line ('hc-started worker ' + [int]$Svc.ProcessId)