# homecluster stop: the worker of cluster home on tower, NSSM service homecluster-home-worker
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'  # progress records would reach stderr as CLIXML
try { [Console]::OutputEncoding = [System.Text.Encoding]::UTF8 } catch { }
function Write-Line([string]$Line) { [Console]::Out.WriteLine($Line) }
$UserHome = [Environment]::GetFolderPath('UserProfile')
$D = 'D:\Ann''s Dask Runs\home\tower'
function Get-Tree($Roots, $All) {
    $Found = @{}
    $Queue = New-Object System.Collections.Queue
    foreach ($R in $Roots) {
        if (-not $Found.ContainsKey($R.ProcessId)) { $Found[$R.ProcessId] = $R; $Queue.Enqueue($R) }
    }
    while ($Queue.Count -gt 0) {
        $Parent = $Queue.Dequeue()
        foreach ($C in $All) {
            $Young = $C.CreationDate -ge $Parent.CreationDate
            if ($C.ParentProcessId -eq $Parent.ProcessId -and $Young -and -not $Found.ContainsKey($C.ProcessId)) {
                $Found[$C.ProcessId] = $C
                $Queue.Enqueue($C)
            }
        }
    }
    return @($Found.Values)
}
$Svc = Get-CimInstance -ClassName Win32_Service -Filter "Name='homecluster-home-worker'"
$Before = @()
if ($Svc) {
    $ServicePid = [int]$Svc.ProcessId
    $All = @(Get-CimInstance -ClassName Win32_Process)
    $Before = @(Get-Tree @($All | Where-Object { $_.ProcessId -eq $ServicePid }) $All)
    New-Item -ItemType Directory -Force -Path $D | Out-Null
$Identity = [Security.Principal.WindowsIdentity]::GetCurrent()
$Admin = [Security.Principal.WindowsBuiltInRole]::Administrator
if (-not (New-Object Security.Principal.WindowsPrincipal $Identity).IsInRole($Admin)) {
    Write-Line ('hc-error removing the service homecluster-home-worker needs an administrator, and ' + $env:USERNAME + ' is not one on tower. Fix: set user: for tower to an account in its Administrators group, or do it at the PC with the scripts of homecluster service render tower (windows/README.md)'); exit 1
}
$Rendered = Join-Path $D 'uninstall-homecluster-home-worker.ps1'
$Text = @'
# homecluster: remove the Windows service of the worker of cluster home on tower (NSSM).
# Rendered by `homecluster service render` from windows/uninstall-service.ps1. Run it on the Windows machine in
# PowerShell opened with "Run as administrator":
#     powershell -NoProfile -ExecutionPolicy Bypass -File .\uninstall-homecluster-home-worker.ps1
# The run directory (logs, certificates) stays; homecluster down removes the keys.

$Service = 'homecluster-home-worker'

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

if (-not (Get-Service -Name $Service -ErrorAction SilentlyContinue)) {
    Write-Host ($Service + ' is not installed: nothing to remove')
    exit 0
}
Invoke-Nssm ('stop ' + $Service) -MayFail | Out-Null
Invoke-Nssm ('remove ' + $Service + ' confirm') | Out-Null
Write-Host ($Service + ' is removed')
'@
[System.IO.File]::WriteAllText($Rendered, $Text, (New-Object System.Text.UTF8Encoding $true))
try { & $Rendered } catch { Write-Line ('hc-error removing homecluster-home-worker failed: ' + $_.Exception.Message); exit 1 }
    Write-Line ('hc-stopped worker ' + $ServicePid)
}
$All = @(Get-CimInstance -ClassName Win32_Process)
$Left = @($All | Where-Object {
    $P = $_
    @($Before | Where-Object { $_.ProcessId -eq $P.ProcessId -and $_.CreationDate -eq $P.CreationDate }).Count -gt 0
})
$Marked = @($All | Where-Object { ($_.CommandLine -like '*distributed.cli.dask_worker*') -and $_.CommandLine.IndexOf($D + '\', [System.StringComparison]::OrdinalIgnoreCase) -ge 0 })
$Killed = 0
foreach ($P in @(Get-Tree @($Left + $Marked) $All)) {
    try { Stop-Process -Id $P.ProcessId -Force -ErrorAction Stop; $Killed++ } catch { }
}
if ($Killed) { Write-Line ('hc-killed worker ' + $Killed) }
foreach ($F in @('worker.spec', 'tls\worker.key', 'tls\worker.pem')) {
    Remove-Item -LiteralPath (Join-Path $D $F) -Force -ErrorAction SilentlyContinue
}