# homecluster facts: Python 3.11 on this host: its platform, free space and the managed environment
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'  # progress records would reach stderr as CLIXML
try { [Console]::OutputEncoding = [System.Text.Encoding]::UTF8 } catch { }
function Write-Line([string]$Line) { [Console]::Out.WriteLine($Line) }
$UserHome = [Environment]::GetFolderPath('UserProfile')
$D = ($UserHome + '\.homecluster\home\gaming-pc')
$E = ($UserHome + '\.homecluster\home\gaming-pc\env')
$env:PYTHONIOENCODING = 'utf-8'  # what python.exe prints, in the encoding [Console] reads
function Invoke-Native([string]$Exe, [string[]]$Arguments) {
    $ErrorActionPreference = 'Continue'
    try {
        $Lines = @(& $Exe @Arguments 2>&1 | ForEach-Object { [string]$_ })
        return @{ Code = $LASTEXITCODE; Lines = $Lines }
    } catch {
        return @{ Code = -1; Lines = @([string]$_.Exception.Message) }
    }
}
function Get-Tail($Result) {
    $Last = @($Result.Lines | Where-Object { $_.Trim() }) | Select-Object -Last 3
    return (($Last | ForEach-Object { $_.Trim() }) -join ' ') + ' (exit ' + $Result.Code + ')'
}
function Get-PythonArgument([string]$Code) {
    $Base64 = [Convert]::ToBase64String([System.Text.Encoding]::UTF8.GetBytes($Code))
    return "import base64; exec(base64.b64decode('" + $Base64 + "'))"
}
$Check = 'import sys; print(''hc-python '' + sys.executable); sys.exit(0 if ''%d.%d'' % sys.version_info[:2] == ''3.11'' else 1)'
function Test-Python([string]$Exe, [string[]]$Before) {
    $R = Invoke-Native $Exe ($Before + @('-c', $Check))
    $Line = @($R.Lines | Where-Object { $_ -like 'hc-python *' }) | Select-Object -First 1
    if ($R.Code -eq 0 -and $Line) { return $Line.Substring(10).Trim() }
    # the Store's alias without the Store's Python runs no Python at all: it prints no hc-python line
    if (-not $Line -and $Exe -like '*\Microsoft\WindowsApps\*') { Write-Line ('hc-facts-stub ' + $Exe) }
    return $null
}
function Find-Python {
    $Launcher = Get-Command -Name 'py.exe' -CommandType Application -ErrorAction SilentlyContinue |
        Select-Object -First 1
    if ($Launcher) { $Found = Test-Python $Launcher.Source @('-3.11'); if ($Found) { return $Found } }
    $Names = @('python3.11.exe', 'python3.exe', 'python.exe')
    $OnPath = @(Get-Command -Name $Names -CommandType Application -All -ErrorAction SilentlyContinue |
        ForEach-Object { $_.Source })
    $Installed = @()
    if ($env:LOCALAPPDATA) { $Installed += Join-Path $env:LOCALAPPDATA 'Programs\Python\Python311\python.exe' }
    if ($env:ProgramFiles) { $Installed += Join-Path $env:ProgramFiles 'Python311\python.exe' }
    $Installed = @($Installed | Where-Object { Test-Path -LiteralPath $_ -PathType Leaf })
    foreach ($Exe in @($OnPath + $Installed)) {
        $Found = Test-Python $Exe @()
        if ($Found) { return $Found }
    }
    return $null
}
$Python = Find-Python
if (-not $Python) { Write-Line 'hc-facts-none'; exit 0 }
$FactsPy = @'
import glob, json, os, platform, shutil, sys, sysconfig
d = sys.argv[1]
while not os.path.isdir(d) and (os.path.dirname(d) or os.sep) != d:
    d = os.path.dirname(d) or os.sep
env = sys.argv[2]
nt = os.name == "nt"  # a venv keeps Scripts/python.exe and Lib/site-packages on Windows
def read(p):
    try:
        with open(p) as f:
            return f.read().strip()
    except OSError:
        return ""
def free(p):
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return 0
site = env + ("/Lib/site-packages" if nt else "/lib/python*/site-packages")
print("hc-facts " + json.dumps({
    "executable": sys.executable, "version": platform.python_version(), "system": platform.system(),
    "machine": platform.machine(), "libc": list(platform.libc_ver()), "mac_ver": platform.mac_ver()[0],
    "platform": sysconfig.get_platform(), "free_bytes": free(d),
    "env_python": os.path.exists(env + ("/Scripts/python.exe" if nt else "/bin/python")),
    "env_lock": read(env + "/homecluster-lock"),
    "env_dists": sorted(os.path.basename(p)[:-10] for p in glob.glob(site + "/*.dist-info"))}))
'@
$R = Invoke-Native $Python @('-c', (Get-PythonArgument $FactsPy), $D, $E)
foreach ($Line in $R.Lines) { Write-Line $Line }
exit $R.Code