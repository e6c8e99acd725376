# homecluster interpreter: what C:\Program Files\Python 3.12\python.exe has installed and whether it can take packages
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'  # progress records would reach stderr as CLIXML
try { [Console]::OutputEncoding = [System.Text.Encoding]::UTF8 } catch { }
function Write-Line([string]$Line) { [Console]::Out.WriteLine($Line) }
$UserHome = [Environment]::GetFolderPath('UserProfile')
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
$Python = 'C:\Program Files\Python 3.12\python.exe'
$Code = @'
def environment_facts() -> dict:
    """What decides how packages go into this interpreter: its platform, what it has installed, and whether it
    can take more (PEP 668 marker, write access, pip or uv). Standard library only: it also runs over SSH."""
    import importlib.metadata
    import importlib.util
    import os
    import platform
    import shutil
    import sys
    import sysconfig

    paths = sysconfig.get_paths()
    in_venv = sys.prefix != getattr(sys, "base_prefix", sys.prefix)
    marker = os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")
    uv = os.environ.get("HOMECLUSTER_UV") or ""
    if not (uv and os.path.exists(uv)):
        uv = shutil.which("uv", path=paths["scripts"]) or shutil.which("uv") or ""
    dists = {}
    for d in importlib.metadata.distributions():
        name = d.metadata["Name"]
        if name and d.version:
            dists.setdefault(name, d.version)
    purelib = paths["purelib"]
    while not os.path.isdir(purelib):
        purelib = os.path.dirname(purelib)
    return {"executable": sys.executable, "version": platform.python_version(), "system": platform.system(),
            "machine": platform.machine(), "libc": list(platform.libc_ver()), "mac_ver": platform.mac_ver()[0],
            "dists": dists, "externally_managed": os.path.exists(marker) and not in_venv, "marker": marker,
            "purelib": paths["purelib"], "writable": os.access(purelib, os.W_OK),
            "pip": importlib.util.find_spec("pip") is not None, "uv": uv}
import json
print("hc-env " + json.dumps(environment_facts()))
'@
$R = Invoke-Native $Python @('-c', (Get-PythonArgument $Code))
foreach ($Line in $R.Lines) { Write-Line $Line }
exit $R.Code