"""The host-side supervisor (src/homecluster/backends/supervisor.py), run as a real process with real children.

Each test starts the supervisor with small back-off values and a short stop grace, drives it with signals and
watches its state file and log. Every process a test starts carries a marker in its environment, so the fixture
can SIGKILL all of them (and their process groups) at teardown, whatever happened.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

SUPERVISOR = Path(__file__).resolve().parent.parent / "src" / "homecluster" / "backends" / "supervisor.py"
# The hosts run whatever Python they have: HC_SUPERVISOR_PYTHON=/path/to/python3.8 runs these tests on an old one.
SUPERVISOR_PYTHON = os.environ.get("HC_SUPERVISOR_PYTHON", sys.executable)
MARKER = "HC_SUPERVISOR_TEST"


def load_supervisor_module():
    spec = importlib.util.spec_from_file_location("hc_supervisor_under_test", SUPERVISOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, process group) of a live process, None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[2])


def alive(pid: int) -> bool:
    """Exists and is not a zombie (a zombie waits for its parent, or init, to reap it: it runs nothing)."""
    stat = proc_stat(pid)
    return stat is not None and stat[0] != "Z"


def live_group_members(pgid: int) -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and (s := proc_stat(int(p))) and s[1] == pgid
            and s[0] != "Z"]


def marked_processes(token: str) -> list[int]:
    """Pids of every live process whose environment carries this test's marker."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if f"{MARKER}={token}".encode() in environ.split(b"\0"):
            found.append(int(entry))
    return found


def wait_until(predicate, what: str, timeout: float = 10, log: Path | None = None):
    """Poll until predicate() is truthy and return its value; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    text = log.read_text() if log is not None and log.exists() else ""
    pytest.fail(f"not within {timeout} s: {what}\n--- log ---\n{text}")


class Run:
    """One supervisor process under test."""

    def __init__(self, tmp_path: Path, command: list[str], backoff: str, grace: float):
        self.dir = tmp_path
        self.state_path, self.pidfile, self.log = tmp_path / "state.json", tmp_path / "pid", tmp_path / "log"
        env = {**os.environ, "HOMECLUSTER_BACKOFF": backoff, "HOMECLUSTER_STOP_GRACE": str(grace),
               MARKER: str(tmp_path)}
        with open(self.log, "wb") as log:
            # -I -S: no site-packages, so the supervisor provably needs nothing beyond the stdlib.
            self.proc = subprocess.Popen([SUPERVISOR_PYTHON, "-I", "-S", str(SUPERVISOR), "--name", "worker",
                                          "--state", str(self.state_path), "--pidfile", str(self.pidfile),
                                          "--", *command],
                                         stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.groups = {self.proc.pid}

    def state(self) -> dict | None:
        try:
            state = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return None
        if state.get("child_pid"):
            self.groups.add(state["child_pid"])  # the child leads its own group: remember it for teardown
        return state

    def until(self, predicate, what: str, timeout: float = 10) -> dict:
        """Wait until the state file satisfies predicate(state); return that state."""
        return wait_until(lambda: (s := self.state()) is not None and predicate(s) and s, what, timeout, self.log)

    def text(self) -> str:
        return self.log.read_text()

    def lines(self) -> list[str]:
        return [line for line in self.text().splitlines() if line.startswith("homecluster-supervisor:")]

    def delays(self) -> list[float]:
        return [float(d) for d in re.findall(r"; restart \d+ in ([0-9.]+) s$", self.text(), re.M)]

    def terminate(self, timeout: float = 10) -> int:
        """SIGTERM the supervisor and wait for it to exit; return its exit status."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"supervisor still running {timeout} s after SIGTERM\n--- log ---\n{self.text()}")

    def cleanup(self):
        for pid in marked_processes(str(self.dir)):
            try:
                self.groups.add(os.getpgid(pid))
            except OSError:
                pass
        for pgid in self.groups - {os.getpgid(0)}:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except OSError:
                pass
        for pid in marked_processes(str(self.dir)):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


@pytest.fixture
def supervise(tmp_path):
    """supervise(child_code_or_argv, backoff=..., grace=...) starts a supervisor; all is SIGKILLed at teardown."""
    runs: list[Run] = []

    def start(child, backoff: str = "0.2:0.8:2", grace: float = 1) -> Run:
        if isinstance(child, str):
            script = tmp_path / "child.py"
            script.write_text(textwrap.dedent(child))
            child = [sys.executable, str(script)]
        run = Run(tmp_path, child, backoff, grace)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.cleanup()


# A child that appends "<pid> <time>" to starts.txt on each start, then does what the test appends.
COUNTING = """\
    import os, signal, sys, time
    from pathlib import Path
    here = Path(__file__).parent
    with open(here / "starts.txt", "a") as f:
        f.write("%d %r\\n" % (os.getpid(), time.time()))
    starts = len((here / "starts.txt").read_text().splitlines())
"""


def starts(tmp_path: Path) -> list[tuple[int, float]]:
    path = tmp_path / "starts.txt"
    if not path.exists():
        return []
    return [(int(p), float(t)) for p, t in (line.split() for line in path.read_text().splitlines())]


@pytest.mark.parametrize("code", [0, 3])
def test_exited_child_is_restarted_and_counted(supervise, tmp_path, code):
    run = supervise(COUNTING + f"    sys.exit({code})\n")
    state = run.until(lambda s: s["restarts"] >= 2 and s["last_exit"] is not None, "two restarts")
    assert state["last_exit"] == code and state["name"] == "worker" and not state["stopping"]
    assert state["supervisor_pid"] == run.proc.pid == int(run.pidfile.read_text())
    assert f"homecluster-supervisor: worker exited with code {code} after " in run.text()
    assert run.lines()[0].endswith("; restart 1 in 0.2 s")
    assert run.terminate() == 0
    final = run.state()
    assert final["stopping"] and not final["running"] and final["child_pid"] is None and not final["killed"]
    # a child started just before the stop may be ended before it writes its line
    assert len(starts(tmp_path)) - 1 <= final["restarts"] <= len(starts(tmp_path))


def test_backoff_grows_and_is_capped(supervise, tmp_path):
    run = supervise(COUNTING + "    sys.exit(1)\n", backoff="0.1:0.4:100")
    wait_until(lambda: len(starts(tmp_path)) >= 6, "six starts", log=run.log)
    assert run.terminate() == 0
    times = [t for _, t in starts(tmp_path)]
    gaps = [b - a for a, b in zip(times, times[1:])]
    delays = run.delays()
    assert delays[:5] == [0.1, 0.2, 0.4, 0.4, 0.4]
    for gap, delay in zip(gaps, delays):
        assert gap >= delay  # each restart waited at least its back-off: no tight loop
    assert gaps[2] >= gaps[0]  # 0.4 s against 0.1 s nominal: robust against scheduling noise


def test_restarts_in_a_window_are_few(supervise, tmp_path):
    run = supervise(COUNTING + "    sys.exit(1)\n", backoff="0.1:0.4:100")
    wait_until(lambda: starts(tmp_path), "first start", log=run.log)
    time.sleep(2)
    count = len(starts(tmp_path))
    assert run.proc.poll() is None
    assert run.terminate() == 0
    assert count <= 2 / 0.1 + 1  # bounded by the back-off; a tight loop would run hundreds


def test_backoff_resets_after_a_healthy_run(supervise, tmp_path):
    # Runs 1-3 fail at once, run 4 stays up longer than healthy (1 s), later runs fail at once again.
    run = supervise(COUNTING + "    time.sleep(1.5 if starts == 4 else 0)\n    sys.exit(1)\n",
                    backoff="0.1:0.4:1")
    wait_until(lambda: len(run.delays()) >= 5, "five exits", timeout=15, log=run.log)
    assert run.terminate() == 0
    assert run.delays()[:5] == [0.1, 0.2, 0.4, 0.1, 0.2]


def test_sigterm_stops_the_child_gracefully(supervise, tmp_path):
    run = supervise(COUNTING + """\
    def on_term(signum, frame):
        (here / "got-term").write_text("yes")
        sys.exit(0)
    signal.signal(signal.SIGTERM, on_term)
    (here / "ready").write_text("yes")
    time.sleep(60)
""")
    wait_until(lambda: (tmp_path / "ready").exists(), "child ready", log=run.log)
    run.proc.send_signal(signal.SIGHUP)  # ignored
    time.sleep(0.3)
    assert run.proc.poll() is None and run.state()["running"]
    child = run.state()["child_pid"]
    assert run.terminate() == 0
    assert (tmp_path / "got-term").read_text() == "yes"
    state = run.state()
    assert state == {**state, "running": False, "stopping": True, "killed": False, "restarts": 0, "last_exit": 0,
                     "child_pid": None, "next_start_at": None}
    assert len(starts(tmp_path)) == 1 and not alive(child)
    assert run.lines() == []  # no exit or kill line: the stop was clean


def test_frozen_child_and_grandchild_are_killed(supervise, tmp_path):
    run = supervise(COUNTING + """\
    grandchild = __import__("subprocess").Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    (here / "pids").write_text("%d %d" % (os.getpid(), grandchild.pid))
    time.sleep(60)
""")
    pids = wait_until(lambda: (p := tmp_path / "pids").exists() and p.read_text(), "pids", log=run.log)
    child, grandchild = map(int, pids.split())
    assert live_group_members(child) == sorted([child, grandchild])
    for pid in (child, grandchild):
        os.kill(pid, signal.SIGSTOP)
    wait_until(lambda: all(proc_stat(p)[0] == "T" for p in (child, grandchild)), "both stopped", log=run.log)
    assert run.terminate(timeout=1 + 5) == 0
    state = run.state()
    assert state["killed"] and state["stopping"] and not state["running"] and state["last_exit"] == -9
    assert "homecluster-supervisor: worker did not stop within 1 s of SIGTERM; killed" in run.lines()
    wait_until(lambda: not alive(grandchild), "grandchild gone (reaped by init)", log=run.log)
    assert not alive(child) and live_group_members(child) == []


def test_grandchild_left_after_the_child_exits_is_killed(supervise, tmp_path):
    run = supervise(COUNTING + """\
    import subprocess
    grandchild = subprocess.Popen([sys.executable, "-c", "import signal, time; "
                                   "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"])
    (here / "pids").write_text("%d %d" % (os.getpid(), grandchild.pid))
    signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
    time.sleep(60)
""")
    pids = wait_until(lambda: (p := tmp_path / "pids").exists() and p.read_text(), "pids", log=run.log)
    child, grandchild = map(int, pids.split())
    assert run.terminate() == 0
    state = run.state()
    assert state["killed"] and state["last_exit"] == 0
    assert f"homecluster-supervisor: killed processes left in the process group of worker: {grandchild}" \
        in run.lines()
    wait_until(lambda: not alive(grandchild), "grandchild gone", log=run.log)
    assert live_group_members(child) == []


def test_sigterm_during_backoff_ends_at_once(supervise, tmp_path):
    run = supervise(COUNTING + "    sys.exit(1)\n", backoff="30:30:100")
    run.until(lambda s: s["next_start_at"] is not None, "backing off")
    assert run.terminate(timeout=5) == 0  # far less than the 30 s back-off
    state = run.state()
    assert state["stopping"] and state["next_start_at"] is None and state["restarts"] == 0
    assert state["last_exit"] == 1 and not state["killed"]
    assert len(starts(tmp_path)) == 1


@pytest.mark.parametrize("kind", ["missing", "not-executable"])
def test_command_that_cannot_run_is_retried_with_backoff(supervise, tmp_path, kind):
    program = tmp_path / "no-such-program"
    if kind == "not-executable":
        program.write_text("#!/bin/sh\n")
        program.chmod(0o644)
    run = supervise([str(program), "--flag"], backoff="0.1:0.4:100")
    state = run.until(lambda s: s["restarts"] >= 3, "three restarts")
    assert state["last_exit"] == 127 and state["child_pid"] is None and not state["running"]
    assert run.proc.poll() is None
    assert f"homecluster-supervisor: cannot execute worker command {program}: " in run.text()
    assert "homecluster-supervisor: worker exited with code 127 after " in run.text()
    assert run.delays()[:3] == [0.1, 0.2, 0.4]
    assert run.terminate() == 0
    assert run.state()["stopping"]


def test_kill_9_of_the_child_is_restarted(supervise, tmp_path):
    run = supervise(COUNTING + "    time.sleep(60)\n")
    first = run.until(lambda s: s["running"] and s["child_pid"], "child running")["child_pid"]
    os.kill(first, signal.SIGKILL)
    state = run.until(lambda s: s["restarts"] == 1 and s["running"], "restarted")
    assert state["last_exit"] == -9 and state["child_pid"] != first and state["last_exit_at"] is not None
    assert "homecluster-supervisor: worker killed by signal 9 (SIGKILL) after " in run.text()
    assert run.terminate() == 0
    assert run.state()["last_exit"] == -signal.SIGTERM  # the second child had no TERM handler


def test_usage_error_without_command(tmp_path):
    p = subprocess.run([sys.executable, str(SUPERVISOR), "--name", "w", "--state", str(tmp_path / "s"),
                        "--pidfile", str(tmp_path / "p")], capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and "usage: supervisor.py" in p.stderr
    assert not (tmp_path / "p").exists()


def test_next_delay():
    next_delay = load_supervisor_module().next_delay
    assert next_delay(None, 0.1, 1, 30, 60) == 1
    assert next_delay(1, 0.1, 1, 30, 60) == 2
    assert next_delay(16, 59.9, 1, 30, 60) == 30
    assert next_delay(30, 5, 1, 30, 60) == 30
    assert next_delay(30, 60, 1, 30, 60) == 1
    delays, delay = [], None
    for _ in range(7):
        delay = next_delay(delay, 0, 1, 30, 60)
        delays.append(delay)
    assert delays == [1, 2, 4, 8, 16, 30, 30]


def test_describe_exit_codes():
    describe = load_supervisor_module().describe
    assert describe(0) == "exited with code 0"
    assert describe(127) == "exited with code 127"
    assert describe(-9) == "killed by signal 9 (SIGKILL)"
    assert describe(-15) == "killed by signal 15 (SIGTERM)"
