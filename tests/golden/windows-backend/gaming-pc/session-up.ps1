# homecluster session: lock cluster home on gaming-pc while homecluster up works here; probe
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'  # progress records would reach stderr as CLIXML
try { [Console]::OutputEncoding = [System.Text.Encoding]::UTF8 } catch { }
function Write-Line([string]$Line) { [Console]::Out.WriteLine($Line) }
$UserHome = [Environment]::GetFolderPath('UserProfile')
$D = ($UserHome + '\.homecluster\home\gaming-pc')
New-Item -ItemType Directory -Force -Path $D | Out-Null
$Owner = Join-Path $D 'lock.owner'
$Deadline = (Get-Date).AddSeconds(300)
$Lock = $null
$Waited = $false
while ($null -eq $Lock) {
    try {
        $Lock = [System.IO.File]::Open((Join-Path $D 'lock'), 'OpenOrCreate', 'ReadWrite', 'None')
    } catch [System.IO.IOException] {
        if (-not $Waited) {
            $Waited = $true
            $Holder = ''
            try { $Holder = [System.IO.File]::ReadAllText($Owner).Trim() } catch { }
            Write-Line ('hc-busy ' + $Holder)
        }
        if ((Get-Date) -ge $Deadline) { Write-Line 'hc-busy-timeout'; exit 75 }
        Start-Sleep -Milliseconds 100
    }
}
$From = ''
if ($env:SSH_CLIENT) { $From = ' from ' + ($env:SSH_CLIENT -split ' ')[0] }
$Since = ' (since ' + (Get-Date -Format 'HH:mm:ss') + ')'
[System.IO.File]::WriteAllText($Owner, ('homecluster up' + $From + $Since))
$T = Join-Path $D 'tls'
New-Item -ItemType Directory -Force -Path $T | Out-Null
$Me = [Security.Principal.WindowsIdentity]::GetCurrent().User.Value
& icacls.exe $T /inheritance:r /grant:r ('*' + $Me + ':(OI)(CI)F') '*S-1-5-18:(OI)(CI)F' | Out-Null
if ($LASTEXITCODE -ne 0) { Write-Line ('hc-error icacls could not make ' + $T + ' private'); exit 1 }
function Find-Program([string]$Name) {
    if (Test-Path -LiteralPath $Name -PathType Leaf) { return $Name }
    if ($Name -notmatch '[\\/:]') {
        $Command = Get-Command -Name $Name -CommandType Application -ErrorAction SilentlyContinue |
            Select-Object -First 1
        if ($Command) { return $Command.Source }
    }
    return $null
}
$Nssm = Find-Program 'nssm'
if (-not $Nssm) { Write-Line 'hc-error nssm.exe not found on gaming-pc. Fix: winget install NSSM.NSSM (in PowerShell there), or set nssm: C:\path\to\nssm.exe for gaming-pc in the inventory'; exit 127 }
Write-Line ('hc-now ' + [DateTimeOffset]::UtcNow.ToUnixTimeSeconds())
foreach ($Role in @('scheduler', 'worker')) {
    $Svc = Get-CimInstance -ClassName Win32_Service -Filter "Name='homecluster-home-$Role'"
    $ProcId = ''
    $Alive = 0
    $Running = 'false'
    if ($Svc) {
        if ($Svc.ProcessId) { $ProcId = [string]$Svc.ProcessId }
        if (@('Running', 'Paused', 'Start Pending', 'Continue Pending', 'Pause Pending') -contains $Svc.State) { $Alive = 1 }
        if ($ProcId -and $Svc.State -eq 'Running') {
            $Filter = "ParentProcessId=$ProcId AND Name<>'conhost.exe'"
            $Children = @(Get-CimInstance -ClassName Win32_Process -Filter $Filter)
            if ($Children.Count -gt 0) { $Running = 'true' }
        }
    }
    $SpecFile = Join-Path $D ($Role + '.spec')
    $Spec = ''
    if (Test-Path -LiteralPath $SpecFile) { $Spec = [System.IO.File]::ReadAllText($SpecFile).Trim() }
    Write-Line ('hc-probe ' + $Role + ' pid=' + $ProcId + ' alive=' + $Alive + ' spec=' + $Spec)
    if ($Alive) { Write-Line ('hc-state ' + $Role + ' {"running": ' + $Running + '}') }
}
Write-Line 'hc-probe-done'
Write-Line 'hc-locked'
$null = [Console]::In.ReadLine()
$Lock.Close()