r"""`homecluster setup` for Windows hosts without Windows: the real lock and wheelhouse for win_amd64 (resolved and
downloaded here, from the package index), the PowerShell scripts setup sends (golden files, every one parsed by the
tree-sitter PowerShell grammar), and setup's plan against a stand-in Windows host that answers those scripts' hc-*
lines from its state (facts, then copy + venv + install in order; nothing on a second run; the fix when there is
no Python). The Python that the scripts hand to python.exe runs here too, as the scripts pass it.

What this cannot show, without Windows: that `py -3.11`, Get-Command and the Store's alias behave on a real PC as
their documentation and issue threads say (the alias prints "Python was not found..." and exits 9009); that
Windows PowerShell 5.1 passes the exec(base64...) argument to python.exe unchanged; that `uv venv` and
`uv pip sync --offline` work from a run directory under the profile; the hard link of uv.exe into the venv's
Scripts; Remove-Item on a venv whose python.exe runs (the hc-error line that asks for homecluster down)."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from packaging.utils import parse_wheel_filename

from homecluster.inventory import parse
from homecluster.ops import setup as setup_op
from homecluster.packages import windows_setup
from homecluster.packages.facts import FACTS_PY, parse_facts, platform_target
from homecluster.packages.lock import LockFile, Locked
from homecluster.packages.wheelhouse import Wheelhouse, with_tools
from homecluster.transport.group import Group
from homecluster.transport.replay import ReplayRunner, kind_of
from homecluster.transport.result import CommandResult
from validators import powershell_errors

GOLDEN = Path(__file__).parent / "golden" / "windows-setup"
CLIENT_MINOR = f"{sys.version_info.major}.{sys.version_info.minor}"
UV = "0.13.9"  # the uv the goldens were written with (its wheel's name is in the prepare script)

# Two Windows PCs set up by homecluster (one with a run directory holding a space and a quote, one under the
# profile), one with its own Python (install-pkg's interpreter script).
INV = """
cluster: {name: home, scheduler: tower}
defaults: {user: ann}
environment: {python: "3.11", packages: [six==1.17.0]}
hosts:
  tower:
    address: 192.168.1.20
    os: windows
    nworkers: 0
    run_directory: "D:/Ann's Dask Runs"
  gaming-pc:
    address: 192.168.1.12
    os: windows
  old-laptop:
    address: 192.168.1.30
    os: windows
    python: 'C:\\Program Files\\Python 3.12\\python.exe'
"""
LOCK = Locked("cp311-win_amd64", ("dask==2026.8.0", "distributed==2026.8.0", "six==1.17.0"))
PYTHON_EXE = r"C:\Users\ann\AppData\Local\Programs\Python\Python311\python.exe"
STUB = r"C:\Users\ann\AppData\Local\Microsoft\WindowsApps\python.exe"


class WindowsPC(ReplayRunner):
    """A Windows host as setup's scripts see it: it answers each script's hc-* lines from its state (a Python or
    none, the wheels it holds, its environment) and changes that state as the scripts would."""

    def __init__(self, host, python: bool = True, free: int = 10**11, replies=None):
        super().__init__(host, replies, default=self._reply)
        self.python, self.free = python, free
        self.wheels: set[str] = set()
        self.env_python, self.env_lock, self.env_dists = False, "", ()

    def _reply(self, kind: str) -> str:
        if kind == "facts":
            if not self.python:
                return f"hc-facts-stub {STUB}\nhc-facts-none\n"
            return "hc-facts " + json.dumps({
                "executable": PYTHON_EXE, "version": "3.11.9", "system": "Windows", "machine": "AMD64",
                "libc": ["", ""], "mac_ver": "", "platform": "win-amd64", "free_bytes": self.free,
                "env_python": self.env_python, "env_lock": self.env_lock, "env_dists": list(self.env_dists)}) + "\n"
        if kind == "wheels":
            return "".join(f"{w}\n" for w in sorted(self.wheels))
        if kind == "prepare":
            assert any(w.startswith("uv-") for w in self.wheels), "prepare ran before uv's wheel arrived"
            self.env_python = True
            return "hc-prepared\n"
        if kind == "sync":
            hash_ = re.search(r"'hc-synced (\w+)'", self.scripts[-1]).group(1)
            self.env_lock, self.env_dists = hash_, tuple(r.replace("==", "-") for r in LOCK.requirements)
            return f"hc-synced {hash_}\n"
        return ""

    def put(self, local: Path, remote: str) -> None:
        super().put(local, remote)
        self.wheels.add(local.name)

    def steps(self) -> list[str]:
        """The kinds of the scripts run so far, and `copy` for each file copied, in order."""
        return [kind_of(s) or "copy" for s in self.scripts]


@pytest.fixture
def household(tmp_path, monkeypatch):
    """The inventory, the lock already made for its inputs and a wheelhouse holding its wheels (empty files):
    setup's own lock and wheelhouse code runs, without the network."""
    monkeypatch.setenv("HOMECLUSTER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(setup_op, "uv_version", lambda: UV)
    path = tmp_path / "inventory.yaml"
    path.write_text(INV)
    inv = parse(INV, str(path))
    target = platform_target("3.11", "Windows", "AMD64", ("", ""), "", "win-amd64")
    lockfile = LockFile(inv.path)
    lockfile.put(lockfile.effective(inv.environment), target, LOCK)
    house = Wheelhouse(target)
    house.dir.mkdir(parents=True)
    for r in with_tools(LOCK, UV):
        name, ver = r.split("==")
        tag = "py3-none-win_amd64" if name == "uv" else "py3-none-any"
        (house.dir / f"{name}-{ver}-{tag}.whl").write_bytes(b"wheel")
    return inv


def run_setup(inv, monkeypatch, pcs: dict[str, WindowsPC], hosts=("tower", "gaming-pc")):
    monkeypatch.setattr(setup_op, "Group", lambda hs: Group(hs, lambda h: pcs[h.name]))
    return setup_op.Setup(inv).run([inv.hosts[h] for h in hosts])


def setup_scripts(inv, monkeypatch) -> dict[str, str]:
    """Every script a first setup sends each PC, by golden file name (host/kind.ps1), plus install-pkg's
    interpreter script for the PC with its own Python."""
    pcs = {n: WindowsPC(inv.hosts[n]) for n in ("tower", "gaming-pc")}
    results = run_setup(inv, monkeypatch, pcs)
    assert all(r.ok for r in results.values()), results
    out = {f"{n}/{kind_of(s)}.ps1": s for n, pc in pcs.items() for s in pc.scripts if kind_of(s)}
    python = inv.hosts["old-laptop"].python
    out["old-laptop/interpreter.ps1"] = setup_op.scripts_for(inv.hosts["old-laptop"]).interpreter(python)
    return out


# --- the scripts --------------------------------------------------------------------------------------------

def test_scripts_match_golden(household, monkeypatch):
    """What setup sends, byte for byte (UPDATE_GOLDEN=1 regenerates)."""
    rendered = setup_scripts(household, monkeypatch)
    if os.environ.get("UPDATE_GOLDEN"):
        shutil.rmtree(GOLDEN, ignore_errors=True)
        for rel, text in rendered.items():
            (GOLDEN / rel).parent.mkdir(parents=True, exist_ok=True)
            (GOLDEN / rel).write_text(text, encoding="utf-8")
    golden = {str(p.relative_to(GOLDEN)): p.read_text(encoding="utf-8") for p in sorted(GOLDEN.rglob("*.ps1"))}
    assert sorted(rendered) == sorted(golden), "scripts and golden files differ (stale or missing)"
    for rel, text in rendered.items():
        assert text == golden[rel], f"{rel} differs from its golden file (UPDATE_GOLDEN=1 regenerates)"


def test_every_script_parses_clean(household, monkeypatch):
    found = setup_scripts(household, monkeypatch)
    assert sorted({rel.split("/")[1] for rel in found}) == [
        "facts.ps1", "interpreter.ps1", "prepare.ps1", "sync.ps1", "wheels.ps1"]
    for rel, text in found.items():
        assert powershell_errors(text) == [], rel
        assert text.startswith(f"# homecluster {rel.split('/')[1][:-4]}: ")


def test_paths_quotes_and_what_the_scripts_call(household, monkeypatch):
    s = setup_scripts(household, monkeypatch)
    assert "$D = 'D:\\Ann''s Dask Runs\\home\\tower'" in s["tower/facts.ps1"]
    assert "$E = ($UserHome + '\\.homecluster\\home\\gaming-pc\\env')" in s["gaming-pc/sync.ps1"]
    facts = s["gaming-pc/facts.ps1"]
    assert "Test-Python $Launcher.Source @('-3.11')" in facts  # the py launcher first
    assert "$Names = @('python3.11.exe', 'python3.exe', 'python.exe')" in facts
    assert "'Programs\\Python\\Python311\\python.exe'" in facts and "'Python311\\python.exe'" in facts
    assert "-like '*\\Microsoft\\WindowsApps\\*') { Write-Line ('hc-facts-stub ' + $Exe) }" in facts
    prepare = s["gaming-pc/prepare.ps1"]
    assert f"$Python = '{PYTHON_EXE}'" in prepare  # the interpreter the facts found, by its own path
    assert f"'uv-{UV}-py3-none-win_amd64.whl'" in prepare and f"-ne '{UV}')" in prepare
    assert "@('venv', '--quiet', '--python', $Python, $E)" in prepare
    assert "New-Item -ItemType HardLink -Path $Linked -Target $Uv" in prepare
    sync = s["gaming-pc/sync.ps1"]
    assert "@('pip', 'sync', '--quiet', '--offline', '--no-index', '--find-links', (Join-Path $D 'wheels')" in sync
    assert "$Text = @'\ndask==2026.8.0\ndistributed==2026.8.0\nsix==1.17.0\n'@" in sync
    assert f"'hc-synced {LOCK.hash}'" in sync
    assert "$Python = 'C:\\Program Files\\Python 3.12\\python.exe'" in s["old-laptop/interpreter.ps1"]
    # no double quote inside a program's argument: Windows PowerShell 5.1 would pass it unescaped
    for text in s.values():
        for arg in re.findall(r"@\('-c', ('(?:[^']|'')*')", text):
            assert '"' not in arg, arg


def test_the_python_the_scripts_hand_to_python_exe_runs(tmp_path):
    """FACTS_PY goes as `-c "import base64; exec(base64.b64decode('...'))" RUN_DIR ENV`, as Get-PythonArgument
    builds it; here it runs in this machine's Python (its POSIX branch) and the facts parse."""
    arg = "import base64; exec(base64.b64decode('" + base64.b64encode(FACTS_PY.encode()).decode() + "'))"
    out = subprocess.run([sys.executable, "-c", arg, str(tmp_path / "a" / "b"), str(tmp_path / "env")],
                         capture_output=True, text=True, check=True).stdout
    f = parse_facts(out)
    assert f.version == ".".join(map(str, sys.version_info[:3])) and f.free_bytes > 0 and not f.env_python
    assert f.platform.startswith("linux")


# --- setup's plan against the stand-in PC -------------------------------------------------------------------

def test_first_setup_copies_prepares_installs_in_order_then_nothing(household, monkeypatch):
    pcs = {n: WindowsPC(household.hosts[n]) for n in ("tower", "gaming-pc")}
    first = run_setup(household, monkeypatch, pcs)
    for name, pc in pcs.items():
        r = first[name]
        assert r.ok and (r.value.action, r.value.target, r.value.sent) == ("installed", "cp311-win_amd64", 4)
        kinds = pc.steps()
        assert kinds[:3] == ["facts", "wheels", "copy"] and kinds[3:] == ["prepare", "copy", "copy", "copy", "sync"]
        assert f"uv-{UV}-py3-none-win_amd64.whl to " in pc.scripts[2]  # uv's wheel first, before prepare
    assert "to D:/Ann's Dask Runs/home/tower/wheels/six-1.17.0-py3-none-any.whl" in "\n".join(pcs["tower"].scripts)
    assert "to ~/.homecluster/home/gaming-pc/wheels/uv-" in "\n".join(pcs["gaming-pc"].scripts)

    for pc in pcs.values():
        pc.scripts.clear()
    again = run_setup(household, monkeypatch, pcs)
    assert {n: (r.value.action, r.value.sent) for n, r in again.items()} == {
        "tower": ("up to date", 0), "gaming-pc": ("up to date", 0)}
    assert [pc.steps() for pc in pcs.values()] == [["facts"], ["facts"]]  # one round trip, nothing changed


def test_a_changed_lock_sends_only_the_new_wheels(household, monkeypatch):
    pc = WindowsPC(household.hosts["gaming-pc"])
    run_setup(household, monkeypatch, {"gaming-pc": pc}, hosts=("gaming-pc",))
    pc.scripts.clear()
    pc.env_lock = "old"  # another lock was installed since
    r = run_setup(household, monkeypatch, {"gaming-pc": pc}, hosts=("gaming-pc",))["gaming-pc"]
    assert r.ok and r.value.action == "installed" and r.value.sent == 0
    assert pc.steps() == ["facts", "wheels", "prepare", "sync"]


def test_no_python_gets_the_fix_and_says_what_the_store_alias_is(household, monkeypatch):
    pcs = {"tower": WindowsPC(household.hosts["tower"], python=False),
           "gaming-pc": WindowsPC(household.hosts["gaming-pc"])}
    results = run_setup(household, monkeypatch, pcs)
    assert results["tower"].error == (
        f"tower: no Python 3.11 on tower ({STUB} is the Microsoft Store's app execution alias, not a Python). "
        "Fix: winget install Python.Python.3.11 (in PowerShell there), or set python: C:\\...\\python.exe for tower "
        "in the inventory")
    assert pcs["tower"].kinds() == ["facts"]  # nothing else reached it
    assert results["gaming-pc"].ok and results["gaming-pc"].value.action == "installed"  # the other one goes on


def test_a_host_short_of_space_is_named_with_the_space_needed(household, monkeypatch):
    pc = WindowsPC(household.hosts["gaming-pc"], free=10)
    r = run_setup(household, monkeypatch, {"gaming-pc": pc}, hosts=("gaming-pc",))["gaming-pc"]
    assert r.error.startswith("gaming-pc: not enough space under ~/.homecluster/home/gaming-pc: needs about 0 MB, "
                              "0 MB free. Fix: free some space")
    assert pc.steps() == ["facts", "wheels"]


def test_a_failed_install_says_uvs_line(household, monkeypatch):
    line = ("hc-error installing the environment failed: error: Failed to install: six-1.17.0-py3-none-any.whl "
            "Caused by: The process cannot access the file because it is being used by another process. "
            "(os error 32) (exit 2)")
    pc = WindowsPC(household.hosts["gaming-pc"], replies={"sync": CommandResult(1, line + "\n", "")})
    r = run_setup(household, monkeypatch, {"gaming-pc": pc}, hosts=("gaming-pc",))["gaming-pc"]
    assert r.error == "gaming-pc: " + line[len("hc-error "):]
    failed = WindowsPC(household.hosts["tower"], replies={"prepare": CommandResult(1, "", "Remove-Item: denied\n")})
    r = run_setup(household, monkeypatch, {"tower": failed}, hosts=("tower",))["tower"]
    assert r.error == "tower: creating the environment failed (exit 1): Remove-Item: denied"
    assert failed.steps()[-1] == "prepare"  # the other wheels are not sent after a failed prepare


def test_routing_and_the_windows_target():
    inv = parse(INV.replace("  old-laptop:\n    address: 192.168.1.30\n    os: windows\n",
                            "  old-laptop:\n    address: 192.168.1.30\n"), "x.yaml")
    assert setup_op.scripts_for(inv.hosts["gaming-pc"]) is setup_op.WINDOWS
    assert setup_op.scripts_for(inv.hosts["old-laptop"]) is setup_op.POSIX
    t = platform_target("3.11", "Windows", "AMD64", ("", ""), "", "win-amd64")
    assert (t.key, t.uv_platform, t.wheel_platforms()) == ("cp311-win_amd64", "x86_64-pc-windows-msvc", ["win_amd64"])
    with pytest.raises(ValueError, match="a 32-bit Python 3.11 is not supported.*winget install Python.Python.3.11"):
        platform_target("3.11", "Windows", "AMD64", ("", ""), "", "win32")  # platform.machine() says AMD64 there too
    with pytest.raises(ValueError, match="Windows on ARM64 is not supported by setup yet"):
        platform_target("3.11", "Windows", "ARM64", ("", ""), "", "win-arm64")


# --- the real lock and wheelhouse for win_amd64 (the package index: the one network this machine reaches) --------

def test_the_default_environment_resolves_and_downloads_for_windows(tmp_path, wheel_cache, monkeypatch, capsys):
    """The project's default environment (no packages) for a Windows host running this machine's Python minor:
    locked with uv for x86_64-pc-windows-msvc, every wheel downloaded for win_amd64 (or pure), uv's own Windows
    wheel among them, and uv.exe comes out of it with the very code the prepare script hands the host's Python."""
    monkeypatch.setenv("HOMECLUSTER_CACHE", str(wheel_cache))  # the session's wheelhouse: downloaded once
    path = tmp_path / "inventory.yaml"
    path.write_text(f'cluster: {{name: w, scheduler: pc}}\nenvironment: {{python: "{CLIENT_MINOR}"}}\n'
                    "hosts:\n  pc: {address: 192.168.1.12, os: windows}\n")
    run = setup_op.Setup(parse(path.read_text(), str(path)))
    target = platform_target(CLIENT_MINOR, "Windows", "AMD64", ("", ""), "", "win-amd64")
    started = time.monotonic()
    run._ensure(target)
    took = time.monotonic() - started
    locked, house = run.locks[target.key], run.houses[target.key]
    files = house.files_for(with_tools(locked, setup_op.uv_version()))
    cp = f"cp{CLIENT_MINOR.replace('.', '')}"
    for f in files:
        tags = parse_wheel_filename(f.name)[3]
        assert any(t.platform in ("win_amd64", "any") and t.abi in (cp, "abi3", "none") for t in tags), f.name
        assert all(t.platform in ("win_amd64", "any") for t in tags), f.name
    names = {parse_wheel_filename(f.name)[0] for f in files}
    assert {"dask", "distributed", "bokeh", "numpy", "uv"} <= names
    assert any(f.name.endswith("-win_amd64.whl") and f.name.startswith("numpy-") for f in files)
    uv_wheel = next(f for f in files if f.name.startswith("uv-"))
    assert uv_wheel.name.endswith("-py3-none-win_amd64.whl")
    assert f"uv-{setup_op.uv_version()}.data/scripts/uv.exe" in zipfile.ZipFile(uv_wheel).namelist()
    exe = tmp_path / "uv.exe"
    unpack = re.search(r"@\('-c', '((?:[^']|'')*)', \$Wheel, \$Uv\)",
                       windows_setup.prepare_script("~/x", "~/x/env", target, "py", uv_wheel.name)).group(1)
    subprocess.run([sys.executable, "-c", unpack.replace("''", "'"), str(uv_wheel), str(exe)], check=True)
    assert exe.read_bytes()[:2] == b"MZ" and exe.stat().st_size > 10**7  # a Windows executable
    size = sum(f.stat().st_size for f in files)
    with capsys.disabled():
        print(f"\nwin_amd64 lock: {len(locked.requirements)} packages; wheelhouse {len(files)} wheels, "
              f"{size / 1e6:.0f} MB (uv {uv_wheel.stat().st_size / 1e6:.0f} MB); lock + download {took:.1f} s")
