"""The process backend's real scripts on this machine (a local host, sh, flock, /proc), with a stand-in for the
Dask command: the lock waits and says who holds it, the supervisor restarts, stop ends everything of the role
(also strays that have no pid file) and nothing else."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from homecluster.backends.process import ProcessBackend, marker, start_script
from homecluster.core.spec import WORKER, ProcessSpec
from homecluster.inventory import parse
from homecluster.transport import LocalRunner

from conftest import wait_for

SLEEPER = (sys.executable, "-c", "import time; time.sleep(600)")


@pytest.fixture
def host_and_dir(tmp_path):
    inv = parse(f"cluster: {{name: unit, scheduler: here}}\nhosts:\n  here: {{connection: local, "
                f"run_directory: {tmp_path}}}\n")
    return inv.hosts["here"], tmp_path / "unit" / "here"


@pytest.fixture
def backend(host_and_dir):
    host, run_dir = host_and_dir
    b = ProcessBackend(LocalRunner(host), host, "unit", str(run_dir))
    yield b
    b.stop(WORKER)  # whatever a test left: stop also sweeps by marker


def spec(run_dir: Path, argv=SLEEPER) -> ProcessSpec:
    return ProcessSpec("here", WORKER, tuple(argv), (("HOMECLUSTER_BACKOFF", "0.2:1:5"),), str(run_dir))


def marked(mark: str) -> list[int]:
    want = f"HOMECLUSTER_PROCESS={mark}".encode()
    out = []
    for p in Path("/proc").iterdir():
        try:
            if p.name.isdigit() and want in (p / "environ").read_bytes().split(b"\0"):
                out.append(int(p.name))
        except OSError:
            pass
    return out


def test_a_second_session_waits_and_says_who_holds_the_lock(backend):
    messages, order = [], []
    with backend.session("down", messages.append):
        waiter = threading.Thread(target=lambda: _session(backend, messages, order))
        waiter.start()
        assert wait_for(lambda: messages, 5)
        order.append("first released")
    waiter.join(10)
    assert messages[0].startswith("here: waiting for homecluster down (since ")
    assert order == ["first released", "second locked"]


def _session(backend, messages, order):
    with backend.session("up", messages.append):
        order.append("second locked")


def test_start_probe_restart_and_stop(backend, host_and_dir):
    _, run_dir = host_and_dir
    with backend.session("up", print):
        pid = backend.start(spec(run_dir))
    st = wait_for(lambda: backend.probe()[WORKER].running and backend.probe()[WORKER])
    assert st.alive and st.pid == pid and st.restarts == 0
    children = [p for p in marked(marker("unit", "here", WORKER)) if p != pid]
    assert len(children) == 1
    os.kill(children[0], signal.SIGKILL)
    st = wait_for(lambda: (s := backend.probe()[WORKER]).restarts == 1 and s.running and s)
    assert st.last_exit == -9 and st.pid == pid  # the same supervisor
    stopped = backend.stop(WORKER)
    assert stopped.pid == pid and stopped.killed == 0
    assert marked(marker("unit", "here", WORKER)) == [] and not backend.probe()[WORKER].alive


def test_start_sweeps_strays_of_its_role_and_stop_leaves_others_alone(backend, host_and_dir):
    _, run_dir = host_and_dir
    mark = marker("unit", "here", WORKER)
    stray = subprocess.Popen(SLEEPER, env={**os.environ, "HOMECLUSTER_PROCESS": mark}, start_new_session=True)
    other = subprocess.Popen(SLEEPER, env={**os.environ, "HOMECLUSTER_PROCESS": marker("other", "here", WORKER)},
                             start_new_session=True)
    try:
        with backend.session("up", print):
            out = backend.runner.run(start_script(spec(run_dir), "unit")).stdout
        assert f"hc-swept worker {stray.pid}" in out
        assert stray.wait(5) == -signal.SIGKILL
        assert wait_for(lambda: backend.probe()[WORKER].running)
        (run_dir / "worker.pid").write_text("1\n")  # the pid file overwritten: stop still finds ours
        stopped = backend.stop(WORKER)
        assert stopped.pid is None and stopped.killed == 2  # the supervisor and its child, by marker
        assert marked(mark) == [] and other.poll() is None
    finally:
        other.kill()
        stray.kill()
        other.wait()
        stray.wait()


def test_stop_of_a_frozen_process_kills_it_and_says_so(backend, host_and_dir):
    _, run_dir = host_and_dir
    with backend.session("up", print):
        pid = backend.start(spec(run_dir))
    assert wait_for(lambda: backend.probe()[WORKER].running)
    for p in marked(marker("unit", "here", WORKER)):
        os.kill(p, signal.SIGSTOP)
    stopped = backend.stop(WORKER)
    assert stopped.pid == pid and stopped.killed >= 1
    assert stopped.describe().endswith("process(es))")
    assert marked(marker("unit", "here", WORKER)) == []
