# --- the part every homecluster NSSM script shares (windows/nssm-common.ps1) ---
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0

$principal = New-Object Security.Principal.WindowsPrincipal ([Security.Principal.WindowsIdentity]::GetCurrent())
if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
    throw ('changing a Windows service needs an administrator. Fix: open PowerShell with "Run as administrator" ' +
           'and run this script again')
}

# nssm.exe: the inventory's nssm: key, else nssm on the PATH (winget puts it there)
$Nssm = {{nssm}}
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
           {{host}} + ' in the inventory')
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
