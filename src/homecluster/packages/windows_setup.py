r"""`homecluster setup` on Windows hosts: its scripts in PowerShell, printing what the sh scripts print (and
`hc-*` lines), so setup's parsers and its plan (ops/setup.py) serve unchanged.

The host's Python X.Y is found as a user would run it: the py launcher (`py -X.Y`), every python.exe on the
PATH, then the python.org installer's own folders. The Microsoft Store's app execution alias
(`%LOCALAPPDATA%\Microsoft\WindowsApps\python.exe`, on the PATH of every Windows 10/11) is not a Python until the
Store's Python is installed: run, it only prints "Python was not found; run without arguments to install from the
Microsoft Store" and exits 9009; the facts name it (`hc-facts-stub PATH`) so the error can say why python.exe did
not count. uv comes as its Windows wheel (uv.exe in `uv-X.data/scripts/`), unpacked by the host's Python; the
venv has the Windows layout (Scripts\python.exe, Lib\site-packages). A failure the user can fix is one `hc-error
MESSAGE` line (backends/nssm.py reads it the same way).

Python code goes to python.exe as one `-c` argument of the form exec(base64...): Windows PowerShell 5.1 passes an
argument's double quotes to a program unescaped (the program then splits it elsewhere), and the code in the
script stays readable as a here-string.
"""

from __future__ import annotations

import re

from packaging.utils import parse_wheel_filename

from homecluster.backends.nssm import _prelude
from homecluster.backends.process import _header
from homecluster.packages.facts import FACTS_PY, Target, interpreter_code, version_check
from homecluster.packages.lock import Locked
from homecluster.services.nssm import ps_expr, win_path
from homecluster.shell.windows import ps_literal

# A program's exit code and output lines, stderr included. Windows PowerShell 5.1 makes each redirected stderr line
# an error record, which $ErrorActionPreference = 'Stop' turns into a terminating error at the first one
# (PowerShell#3996): 'Continue' inside this function only. A program that cannot start at all gives code -1.
# python.exe writes to a pipe in the ANSI code page unless told otherwise; the prelude reads UTF-8.
_INVOKE = r"""$env:PYTHONIOENCODING = 'utf-8'  # what python.exe prints, in the encoding [Console] reads
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
}"""

# The python.org installer's folders: per user %LOCALAPPDATA%\Programs\Python\PythonXY (its default), for all users
# %ProgramFiles%\PythonXY (cpython#69383, #83303); not on the PATH unless "Add python.exe to PATH" was ticked.
_INSTALLER_DIRS = (("LOCALAPPDATA", "Programs\\Python\\Python{xy}\\python.exe"),
                   ("ProgramFiles", "Python{xy}\\python.exe"))

_UNPACK = ("import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); "
           "n = next(x for x in z.namelist() if x.endswith('.data/scripts/uv.exe')); "
           "open(sys.argv[2], 'wb').write(z.read(n))")


def uv_exe(host_dir: str) -> str:
    r"""Where setup puts uv.exe on a Windows host: <run dir>\uv\uv.exe."""
    return f"{host_dir}/uv/uv.exe"


def _here(name: str, text: str) -> list[str]:
    """`$name = @'...'@`: a literal here-string (nothing in it is expanded)."""
    if re.search(r"^'@", text, re.M):
        raise ValueError(f"{name}: a line starts with '@, which a PowerShell here-string cannot hold")
    return [f"${name} = @'", text.strip("\n"), "'@"]


def _start(kind: str, what: str, host_dir: str, env: str | None = None) -> list[str]:
    """Header, the NSSM backend's prelude ($D: the run directory), $E (the environment) and the helpers."""
    return [_header(kind, what), *_prelude(host_dir),
            *([f"$E = {ps_expr(win_path(env))}"] if env else []), _INVOKE]


def facts_script(python: str, run_dir: str, env_dir: str) -> str:
    """Find a Python `python` (major.minor) on the host and print its facts (`hc-facts JSON`, as the sh script
    does), or `hc-facts-none` after an `hc-facts-stub PATH` line for each Store alias that is no Python."""
    xy = python.replace(".", "")
    check = (f"import sys; print('hc-python ' + sys.executable); "
             f"sys.exit(0 if '%d.%d' % sys.version_info[:2] == '{python}' else 1)")
    return "\n".join([
        *_start("facts", f"Python {python} on this host: its platform, free space and the managed environment",
                run_dir, env_dir),
        f"$Check = {ps_literal(check)}",
        "function Test-Python([string]$Exe, [string[]]$Before) {",
        "    $R = Invoke-Native $Exe ($Before + @('-c', $Check))",
        "    $Line = @($R.Lines | Where-Object { $_ -like 'hc-python *' }) | Select-Object -First 1",
        "    if ($R.Code -eq 0 -and $Line) { return $Line.Substring(10).Trim() }",
        "    # the Store's alias without the Store's Python runs no Python at all: it prints no hc-python line",
        "    if (-not $Line -and $Exe -like '*\\Microsoft\\WindowsApps\\*') { Write-Line ('hc-facts-stub ' + $Exe) }",
        "    return $null",
        "}",
        "function Find-Python {",
        "    $Launcher = Get-Command -Name 'py.exe' -CommandType Application -ErrorAction SilentlyContinue |",
        "        Select-Object -First 1",
        f"    if ($Launcher) {{ $Found = Test-Python $Launcher.Source @({ps_literal('-' + python)}); "
        "if ($Found) { return $Found } }",
        f"    $Names = @({ps_literal(f'python{python}.exe')}, 'python3.exe', 'python.exe')",
        "    $OnPath = @(Get-Command -Name $Names -CommandType Application -All -ErrorAction SilentlyContinue |",
        "        ForEach-Object { $_.Source })",
        "    $Installed = @()",
        *(f"    if ($env:{var}) {{ $Installed += Join-Path $env:{var} {ps_literal(rel.format(xy=xy))} }}"
          for var, rel in _INSTALLER_DIRS),
        "    $Installed = @($Installed | Where-Object { Test-Path -LiteralPath $_ -PathType Leaf })",
        "    foreach ($Exe in @($OnPath + $Installed)) {",
        "        $Found = Test-Python $Exe @()",
        "        if ($Found) { return $Found }",
        "    }",
        "    return $null",
        "}",
        "$Python = Find-Python",
        "if (-not $Python) { Write-Line 'hc-facts-none'; exit 0 }",
        *_here("FactsPy", FACTS_PY),
        "$R = Invoke-Native $Python @('-c', (Get-PythonArgument $FactsPy), $D, $E)",
        "foreach ($Line in $R.Lines) { Write-Line $Line }",
        "exit $R.Code",
    ])


def wheels_script(host_dir: str) -> str:
    """Make the host's wheels folder (SFTP does not create folders) and list the wheels in it, one a line."""
    return "\n".join([
        _header("wheels", "the wheels already on this host"), *_prelude(host_dir),
        "$W = Join-Path $D 'wheels'",
        "New-Item -ItemType Directory -Force -Path $W | Out-Null",
        "Get-ChildItem -LiteralPath $W -Filter '*.whl' -File | ForEach-Object { Write-Line $_.Name }",
    ])


def prepare_script(host_dir: str, env: str, target: Target, executable: str, uv_wheel: str) -> str:
    r"""Unpack uv.exe from its wheel (unless that uv is there), create the venv from the host's Python (unless it
    has the right Python), and give the venv's Scripts a uv.exe: install-pkg's worker plugin looks for uv there
    (shutil.which in the interpreter's scripts folder)."""
    uv_version = str(parse_wheel_filename(uv_wheel)[1])
    return "\n".join([
        *_start("prepare", f"uv {uv_version} from its wheel, and the environment from {executable}", host_dir, env),
        "$env:UV_NO_PROGRESS = '1'",
        "$env:UV_CACHE_DIR = Join-Path $D 'uv-cache'",
        f"$Python = {ps_literal(win_path(executable))}",
        f"$Uv = {ps_expr(win_path(uv_exe(host_dir)))}",
        f"$Wheel = Join-Path (Join-Path $D 'wheels') {ps_literal(uv_wheel)}",
        "$EnvPython = Join-Path $E 'Scripts\\python.exe'",
        "New-Item -ItemType Directory -Force -Path (Split-Path -Parent $Uv) | Out-Null",
        "$Have = ''",
        "if (Test-Path -LiteralPath $Uv) { $Have = [string]((Invoke-Native $Uv @('--version')).Lines | "
        "Select-Object -First 1) }",
        f"if (($Have -split ' ')[1] -ne {ps_literal(uv_version)}) {{",
        "    # a wheel is a zip file: the host's Python takes uv.exe out (Expand-Archive takes only *.zip names)",
        f"    $R = Invoke-Native $Python @('-c', {ps_literal(_UNPACK)}, $Wheel, $Uv)",
        "    if ($R.Code -ne 0) { Write-Line ('hc-error unpacking uv failed: ' + (Get-Tail $R)); exit 1 }",
        "}",
        "$Ready = $false",
        "if (Test-Path -LiteralPath $EnvPython) {",
        f"    $Ready = (Invoke-Native $EnvPython @('-c', {ps_literal(version_check(target.python))})).Code -eq 0",
        "}",
        "if (-not $Ready) {",
        "    try {",
        "        if (Test-Path -LiteralPath $E) { Remove-Item -LiteralPath $E -Recurse -Force }",
        "    } catch {",
        "        $Why = $_.Exception.Message",
        "        $Fix = ' Fix: homecluster down, then homecluster setup again'",
        "        Write-Line ('hc-error cannot replace ' + $E + ' (' + $Why + ').' + $Fix)",
        "        exit 1",
        "    }",
        "    $R = Invoke-Native $Uv @('venv', '--quiet', '--python', $Python, $E)",
        "    if ($R.Code -ne 0) { Write-Line ('hc-error creating the environment failed: ' + (Get-Tail $R)); exit 1 }",
        "}",
        "$Linked = Join-Path $E 'Scripts\\uv.exe'",
        "Remove-Item -LiteralPath $Linked -Force -ErrorAction SilentlyContinue",
        "try { New-Item -ItemType HardLink -Path $Linked -Target $Uv | Out-Null } catch { "
        "Copy-Item -LiteralPath $Uv -Destination $Linked }",
        "Write-Line 'hc-prepared'",
    ])


def sync_script(host_dir: str, env: str, locked: Locked) -> str:
    """Make the venv hold exactly the lock, from the wheels on the host (no index, offline); record the lock's
    hash last. uv's error lines become the hc-error line."""
    return "\n".join([
        *_start("sync", f"the environment exactly as the lock ({len(locked.requirements)} packages), offline",
                host_dir, env),
        "$env:UV_NO_PROGRESS = '1'",
        "$env:UV_CACHE_DIR = Join-Path $D 'uv-cache'",
        f"$Uv = {ps_expr(win_path(uv_exe(host_dir)))}",
        "$Requirements = $E + '.requirements'",
        *_here("Text", "\n".join(locked.requirements)),
        "[System.IO.File]::WriteAllText($Requirements, $Text + \"`n\")  # UTF-8 without a BOM",
        "$R = Invoke-Native $Uv @('pip', 'sync', '--quiet', '--offline', '--no-index', '--find-links', "
        "(Join-Path $D 'wheels'), '--python', (Join-Path $E 'Scripts\\python.exe'), $Requirements)",
        "if ($R.Code -ne 0) { Write-Line ('hc-error installing the environment failed: ' + (Get-Tail $R)); exit 1 }",
        f"[System.IO.File]::WriteAllText((Join-Path $E 'homecluster-lock'), {ps_literal(locked.hash)})",
        f"Write-Line {ps_literal('hc-synced ' + locked.hash)}",
    ])


def interpreter_script(python: str) -> str:
    """Print the facts of a given interpreter (a Windows host's `python:`) as install-pkg's plugin sees them."""
    return "\n".join([
        _header("interpreter", f"what {python} has installed and whether it can take packages"),
        *(line for line in _prelude("~") if not line.startswith("$D =")), _INVOKE,
        f"$Python = {ps_expr(win_path(python))}",
        *_here("Code", interpreter_code()),
        "$R = Invoke-Native $Python @('-c', (Get-PythonArgument $Code))",
        "foreach ($Line in $R.Lines) { Write-Line $Line }",
        "exit $R.Code",
    ])


def stubs(output: str) -> list[str]:
    """The Store aliases the facts script found instead of a Python."""
    return re.findall(r"^hc-facts-stub (.+?)\s*$", output, re.M)


def no_python(host, python: str, output: str) -> str:
    """The error for a Windows host without a Python `python`, with the fix (and why python.exe did not count)."""
    why = "".join(f" ({s} is the Microsoft Store's app execution alias, not a Python)" for s in stubs(output)[:1])
    return (f"{host.name}: no Python {python} on {host.name}{why}. Fix: winget install Python.Python.{python} (in "
            f"PowerShell there), or set python: C:\\...\\python.exe for {host.name} in the inventory")
