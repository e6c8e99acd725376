"""The NSSM backend without Windows: its PowerShell scripts (golden files for a sample household, every one parsed
by the tree-sitter PowerShell grammar, the rendered NSSM installer and uninstaller carried byte for byte), what it
makes of the hc-* lines the scripts print (a recording runner answers with them), and up/down walking the same
steps as on the other backends. Nothing here reaches a Windows host (tests/test_windows_runner.py: the runner).

What this cannot show, without Windows: that the lock holds (a second [System.IO.File]::Open with FileShare None
fails while the first handle is open, and the handle goes when the process dies); that [Console]::In.ReadLine()
returns when sshd closes stdin; icacls, Get-CimInstance Win32_Service and NSSM's states (Paused while it
throttles) in practice; the exit codes of -File; the exact CLIXML of PowerShell's stderr."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from homecluster.backends.base import ProcessState, Stopped
from homecluster.backends.nssm import NssmBackend, error_line
from homecluster.core.spec import SCHEDULER, WORKER, build, run_dir
from homecluster.errors import HostError
from homecluster.inventory import parse
from homecluster.ops import down as down_op
from homecluster.ops import up as up_op
from homecluster.packages import lock
from homecluster.services import nssm
from homecluster.transport.replay import ReplayRunner, kind_of
from homecluster.transport.result import CommandResult
from validators import powershell_errors

GOLDEN = Path(__file__).parent / "golden" / "windows-backend"

# Two Windows PCs: paths with spaces and quotes (a straight one and a typographic one), nssm: set on one, the
# default run directory (~, the profile) and a bare interpreter name on the other.
INV = r"""
cluster: {name: home, scheduler: tower}
defaults: {user: ann}
hosts:
  tower:
    address: 192.168.1.20
    os: windows
    nworkers: 0
    python: 'C:\Program Files\Python 3.12\python.exe'
    run_directory: "D:/Ann's Dask Runs"
    nssm: 'C:\tools\nssm 2.24\win64\nssm.exe'
  gaming-pc:
    address: 192.168.1.12
    os: windows
    python: python
    resources: {GPU: 1}
    env: {NOTE: 'it’s "50%" done'}
"""

IDLE = "hc-now 100\nhc-probe scheduler pid= alive=0 spec=\nhc-probe worker pid= alive=0 spec=\nhc-probe-done\n"


def inventory():
    return parse(INV, "windows.yaml")


def backend(inv, name: str, replies=None) -> NssmBackend:
    host = inv.hosts[name]
    return NssmBackend(ReplayRunner(host, replies), host, inv.cluster.name, run_dir(inv, host))


def scripts(inv) -> dict[str, str]:
    """Every script the backend emits for the sample household, by golden file name (host/what.ps1)."""
    spec, out = build(inv), {}
    for name in inv.hosts:
        b = backend(inv, name)
        out[f"{name}/probe.ps1"] = b.probe_script()
        for command in ("up", "down"):
            out[f"{name}/session-{command}.ps1"] = b.session_script(command)
        for proc in spec.for_host(name):
            out[f"{name}/start-{proc.role}.ps1"] = b.start_script(proc)
        for role in (SCHEDULER, WORKER):
            out[f"{name}/stop-{role}.ps1"] = b.stop_script(role)
            out[f"{name}/stop-{role}-locked.ps1"] = b.stop_script(role, lock_for="down")
            out[f"{name}/logs-{role}.ps1"] = b.logs_script(role, 80)
    return out


# --- the scripts --------------------------------------------------------------------------------------------

def test_scripts_match_golden():
    """The scripts for the sample household, byte for byte (UPDATE_GOLDEN=1 regenerates them)."""
    rendered = scripts(inventory())
    if os.environ.get("UPDATE_GOLDEN"):
        shutil.rmtree(GOLDEN, ignore_errors=True)
        for rel, text in rendered.items():
            (GOLDEN / rel).parent.mkdir(parents=True, exist_ok=True)
            (GOLDEN / rel).write_text(text, encoding="utf-8")
    golden = {str(p.relative_to(GOLDEN)): p.read_text(encoding="utf-8") for p in sorted(GOLDEN.rglob("*.ps1"))}
    assert sorted(rendered) == sorted(golden), "scripts and golden files differ (stale or missing)"
    for rel, text in rendered.items():
        assert text == golden[rel], f"{rel} differs from its golden file (UPDATE_GOLDEN=1 regenerates)"


def test_every_script_parses_clean():
    """Each script (and each kind is told apart by its first line, as --dry-run and the replay tests read it)."""
    found = scripts(inventory())
    assert len(found) == 20
    for rel, text in found.items():
        assert powershell_errors(text) == [], rel
        assert kind_of(text) == re.match(r"[a-z]+", rel.split("/")[1]).group(0), rel
    # the validator does find what a broken here-string or a missing brace does
    assert powershell_errors("$Text = @'\nabc\n'@ x'@\nif ($a) { Write-Line 'x'\n")
    assert powershell_errors("foreach ($R in @('a')) { Write-Line $R\n")


def test_the_rendered_service_scripts_are_carried_unchanged():
    """The start script runs exactly the installer `service render` writes, the stop script the uninstaller:
    no second NSSM installer. The here-string holds them verbatim; they parse on their own too."""
    inv = inventory()
    spec = build(inv)
    for proc in spec.processes:
        b, host = backend(inv, proc.host), inv.hosts[proc.host]
        install, uninstall = nssm.install_script(proc, "home", host), nssm.uninstall_script(proc, "home", host)
        for script, rendered, file in [(b.start_script(proc), install, nssm.file_names("home", proc.role)[0]),
                                       (b.stop_script(proc.role), uninstall, nssm.file_names("home", proc.role)[1])]:
            body = re.search(r"^\$Text = @'\n(.*?)\n'@$", script, re.S | re.M).group(1)
            assert body == rendered.lstrip("\ufeff").rstrip("\n")
            assert f"$Rendered = Join-Path $D '{file}'" in script
            assert powershell_errors(body) == []


def test_paths_with_spaces_and_quotes_are_single_quoted_literals():
    inv = inventory()
    tower = backend(inv, "tower").session_script("up")
    assert "$D = 'D:\\Ann''s Dask Runs\\home\\tower'" in tower
    start = backend(inv, "tower").start_script(build(inv).scheduler)
    assert "Find-Program 'C:\\Program Files\\Python 3.12\\python.exe'" in start
    assert "$Nssm = Find-Program 'C:\\tools\\nssm 2.24\\win64\\nssm.exe'" in start
    pc = backend(inv, "gaming-pc").session_script("down")
    assert "$D = ($UserHome + '\\.homecluster\\home\\gaming-pc')" in pc  # ~ is the profile, as in the installers
    assert "it’’s" in backend(inv, "gaming-pc").start_script(build(inv).workers[0])  # inside the installer


def test_session_locks_probes_and_holds_until_stdin_closes():
    inv = inventory()
    up, down = backend(inv, "gaming-pc").session_script("up"), backend(inv, "gaming-pc").session_script("down")
    for text in (up, down):
        assert "[System.IO.File]::Open((Join-Path $D 'lock'), 'OpenOrCreate', 'ReadWrite', 'None')" in text
        assert text.index("'hc-busy ' + $Holder") < text.index("'hc-busy-timeout'; exit 75")
        assert text.index("hc-probe-done") < text.index("Write-Line 'hc-locked'") < text.index(
            "[Console]::In.ReadLine()")
        assert "Get-CimInstance -ClassName Win32_Service -Filter \"Name='homecluster-home-$Role'\"" in text
    assert "icacls.exe $T /inheritance:r /grant:r ('*' + $Me + ':(OI)(CI)F') '*S-1-5-18:(OI)(CI)F'" in up
    assert "icacls" not in down  # only up copies keys
    assert "('homecluster up' + $From + $Since)" in up


def test_stop_takes_the_lock_only_outside_a_session():
    b = backend(inventory(), "gaming-pc")
    inside, outside = b.stop_script(WORKER), b.stop_script(WORKER, lock_for="down")
    assert "lock.owner" not in inside and "under the lock" not in inside.splitlines()[0]
    assert "('homecluster down' + $From + $Since)" in outside and outside.splitlines()[0].endswith("under the lock")
    for text in (inside, outside):
        assert "Write-Line ('hc-stopped worker ' + $ServicePid)" in text
        assert "Write-Line ('hc-killed worker ' + $Killed)" in text
        assert "-like '*distributed.cli.dask_worker*'" in text
        assert "@('worker.spec', 'tls\\worker.key', 'tls\\worker.pem')" in text


# --- what the backend makes of the scripts' output ----------------------------------------------------------

def test_session_states_from_the_probe_lines():
    out = ("banner line\nhc-now 100\nhc-probe scheduler pid=4242 alive=1 spec=abc\n"
           'hc-state scheduler {"running": true}\nhc-probe worker pid=77 alive=1 spec=def\n'
           'hc-state worker {"running": false}\nhc-probe-done\nhc-locked\n')
    b = backend(inventory(), "tower", {"session": out})
    with b.session("up", lambda s: None) as roles:
        assert roles[SCHEDULER] == ProcessState(SCHEDULER, 4242, True, "abc", running=True)
        assert roles[WORKER].alive and roles[WORKER].running is False and not roles[WORKER].healthy  # Paused
        assert b._locked
    assert not b._locked and b.runner.kinds() == ["session"]


def test_session_says_who_holds_the_lock_and_gives_up():
    messages = []
    busy = CommandResult(75, "hc-busy homecluster down from 192.168.1.5 (since 10:00:00)\nhc-busy-timeout\n", "")
    b = backend(inventory(), "tower", {"session": busy})
    with pytest.raises(HostError) as e:
        with b.session("up", messages.append):
            pass
    assert messages == ["tower: waiting for homecluster down from 192.168.1.5 (since 10:00:00) to finish"]
    assert "held the cluster's lock for 300 s" in str(e.value) and "lock.owner" in str(e.value)


@pytest.mark.parametrize("kind", ["session", "probe"])
def test_nssm_missing_is_one_line_with_the_fix(kind):
    line = ("hc-error nssm.exe not found on tower. Fix: winget install NSSM.NSSM (in PowerShell there), or set "
            "nssm: C:\\path\\to\\nssm.exe for tower in the inventory")
    b = backend(inventory(), "tower", {kind: CommandResult(127, line + "\n", "")})
    with pytest.raises(HostError) as e:
        if kind == "session":
            with b.session("status", lambda s: None):
                pass
        else:
            b.probe()
    assert str(e.value) == "tower: " + line[len("hc-error "):]


def test_probe_reads_the_services():
    b = backend(inventory(), "gaming-pc", {"probe": IDLE.replace("worker pid= alive=0 spec=",
                                                                 "worker pid=900 alive=1 spec=f00")})
    roles = b.probe()
    assert roles[WORKER] == ProcessState(WORKER, 900, True, "f00")
    assert roles[SCHEDULER] == ProcessState(SCHEDULER, None, False, "")
    with pytest.raises(HostError, match="probe failed"):
        backend(inventory(), "gaming-pc", {"probe": "hc-now 1\n"}).probe()  # cut short


def test_start_copies_the_keys_then_installs():
    inv = inventory()
    proc = build(inv).workers[0]
    proc = type(proc)(**{**proc.__dict__, "files": (("/here/worker.key", "~/.homecluster/home/gaming-pc/tls/"
                                                                          "worker.key"),)})
    b = backend(inv, "gaming-pc", {"start": "nssm install homecluster-home-worker\nhc-started worker 4711\n"})
    assert b.start(proc) == 4711
    copy, start = b.runner.scripts
    assert copy.startswith("# homecluster copy: /here/worker.key to ~/.homecluster/home/gaming-pc/tls/worker.key")
    assert kind_of(start) == "start" and f"'{proc.fingerprint}'" in start


@pytest.mark.parametrize("line", [
    "hc-error no Python interpreter at python on gaming-pc. Fix: homecluster setup, or set python: for it",
    "hc-error installing homecluster-home-worker failed: nssm install homecluster-home-worker failed with exit code 5",
])
def test_start_failures_say_what_and_the_fix(line):
    b = backend(inventory(), "gaming-pc", {"start": CommandResult(1, line + "\n", "")})
    with pytest.raises(HostError) as e:
        b.start(build(inventory()).workers[0])
    assert str(e.value) == "gaming-pc: " + line[len("hc-error "):]
    plain = backend(inventory(), "gaming-pc", {"start": CommandResult(1, "", "boom")})
    with pytest.raises(HostError, match="starting the worker failed \\(exit 1\\): boom"):
        plain.start(build(inventory()).workers[0])


def test_start_script_checks_python_and_nssm_before_it_installs():
    text = backend(inventory(), "gaming-pc").start_script(build(inventory()).workers[0])
    python = text.index("hc-error no Python interpreter at python on gaming-pc. Fix: homecluster setup, or set "
                        "python: for it")
    missing = text.index("hc-error nssm.exe not found on gaming-pc. Fix: winget install NSSM.NSSM (in PowerShell "
                         "there), or set nssm: C:\\path\\to\\nssm.exe for gaming-pc in the inventory")
    admin = text.index("needs an administrator")
    assert python < missing < admin < text.index("& $Rendered") < text.index("worker.spec") < text.index(
        "'hc-started worker '")


def test_stop_parses_what_it_did():
    inside = backend(inventory(), "gaming-pc", {"stop": "nssm stop x\nhc-stopped worker 900\nhc-killed worker 2\n"})
    inside._locked = True
    assert inside.stop(WORKER) == Stopped(WORKER, 900, 2)
    assert inside.runner.scripts[0].splitlines()[0].endswith("homecluster-home-worker")  # run: the session's lock
    messages = []
    outside = backend(inventory(), "gaming-pc", {"stop": "hc-busy homecluster up\nhc-stopped worker 0\n"})
    assert outside.stop(WORKER, messages.append) == Stopped(WORKER, 0)  # the service was installed, not running
    assert outside.runner.scripts[0].splitlines()[0].endswith("under the lock")  # hold: takes the lock itself
    assert messages == ["gaming-pc: waiting for homecluster up to finish"]
    assert backend(inventory(), "gaming-pc", {"stop": ""}).stop(WORKER) is None  # nothing was there


def test_logs():
    b = backend(inventory(), "gaming-pc", {"logs": "distributed.worker - INFO - Start worker\n"})
    assert b.logs(WORKER, 5) == "distributed.worker - INFO - Start worker\n"
    assert "Get-Content -LiteralPath $Log -Tail 5 -Encoding UTF8" in b.runner.scripts[0]
    assert "$Log = ($UserHome + '\\.homecluster\\home\\gaming-pc\\worker.log')" in b.runner.scripts[0]
    missing = backend(inventory(), "tower", {"logs": CommandResult(1, "hc-error no log at D:\\x\\worker.log yet\n",
                                                                   "")})
    with pytest.raises(HostError, match=r"^tower: no log at D:\\x\\worker.log yet$"):
        missing.logs(WORKER, 5)


def test_error_line():
    assert error_line("a\nhc-error one. Fix: two\nhc-error three\n") == "one. Fix: two"
    assert error_line("hc-errors\n") is None


# --- up and down through the seam ---------------------------------------------------------------------------

@pytest.fixture
def on_nssm(monkeypatch):
    """backend_for as it will route Windows hosts (backends/__init__.py is changed elsewhere)."""
    def backend_for(inv, host, runner):
        return NssmBackend(runner, host, inv.cluster.name, run_dir(inv, host))
    monkeypatch.setattr(up_op, "backend_for", backend_for)
    monkeypatch.setattr(down_op, "backend_for", backend_for)


def replaying(runners: dict, replies: dict):
    def make(host):
        runners[host.name] = ReplayRunner(host, replies.get(host.name, {}))
        return runners[host.name]
    return make


def test_up_installs_and_down_removes(on_nssm):
    inv, runners = inventory(), {}
    started = {"session": IDLE + "hc-locked\n", "start": "hc-started worker 4711\n"}
    rep = up_op.up(inv, runners=replaying(runners, {"tower": {**started, "start": "hc-started scheduler 42\n"},
                                                    "gaming-pc": started}), wait=False)
    assert rep.hosts["tower"].pids == {SCHEDULER: 42} and rep.hosts["gaming-pc"].pids == {WORKER: 4711}
    assert [k for k in runners["gaming-pc"].kinds() if k != "copy"] == ["session", "start"]  # copy: its keys
    assert "as NSSM service homecluster-home-worker" in runners["gaming-pc"].scripts[-1]
    results = down_op.down(inv, runners=replaying(runners, {"gaming-pc": {"stop": "hc-stopped worker 4711\n"}}))
    assert results["gaming-pc"].value == ["worker 4711"] and results["tower"].value == []
    assert [s.splitlines()[0].split(", ")[-1] for s in runners["gaming-pc"].scripts] == ["under the lock"] * 2


def test_a_changed_spec_reinstalls(on_nssm):
    inv, runners = inventory(), {}
    spec = build(inv, lock.digest(inv), up_op.credentials(inv, make=False))  # as up builds it
    current = IDLE.replace("scheduler pid= alive=0 spec=", f"scheduler pid=42 alive=1 "
                                                             f"spec={spec.scheduler.fingerprint}")
    old = IDLE.replace("worker pid= alive=0 spec=", "worker pid=900 alive=1 spec=0123456789abcdef")
    rep = up_op.up(inv, runners=replaying(runners, {
        "tower": {"session": current + "hc-locked\n"},
        "gaming-pc": {"session": old + "hc-locked\n", "stop": "hc-stopped worker 900\n",
                      "start": "hc-started worker 901\n"}}), wait=False)
    assert rep.hosts["tower"].actions == ["keep scheduler"] and runners["tower"].kinds() == ["session"]
    assert rep.hosts["gaming-pc"].actions == ["restart worker"] and rep.hosts["gaming-pc"].pids[WORKER] == 901
    assert [k for k in runners["gaming-pc"].kinds() if k != "copy"] == ["session", "stop", "start"]


def test_one_host_failing_leaves_the_others(on_nssm):
    inv, runners = inventory(), {}
    missing = CommandResult(127, "hc-error nssm.exe not found on gaming-pc. Fix: winget install NSSM.NSSM\n", "")
    rep = up_op.up(inv, runners=replaying(runners, {
        "tower": {"session": IDLE + "hc-locked\n", "start": "hc-started scheduler 42\n"},
        "gaming-pc": {"session": missing}}), wait=False)
    assert rep.hosts["gaming-pc"].error == "gaming-pc: nssm.exe not found on gaming-pc. Fix: winget install NSSM.NSSM"
    assert rep.hosts["tower"].error is None and rep.hosts["tower"].pids == {SCHEDULER: 42}
