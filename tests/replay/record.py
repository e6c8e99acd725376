"""Record what real hosts print for each of homecluster's scripts, for the replay unit tests.

Run as root when the scripts' output format changes: `python tests/replay/record.py`. It builds a simulated
household (prefix hr, subnet 10.213.61), writes tests/replay/inventory.yaml, runs up/down through the real SSH
runner and the process backend, and stores each host's output under tests/replay/recorded/."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent.parent / "src"))

import yaml  # noqa: E402
from household import Household  # noqa: E402

from homecluster.backends.process import ProcessBackend  # noqa: E402
from homecluster.core.spec import run_dir  # noqa: E402
from homecluster.inventory import load  # noqa: E402
from homecluster.ops.up import up  # noqa: E402
from homecluster.transport import SSHRunner  # noqa: E402
from homecluster.transport.replay import kind_of  # noqa: E402

WORKDIR = Path("/tmp/hc-replay")
OUT = HERE / "recorded"


class Recording(SSHRunner):
    """An SSH runner that also keeps each script's stdout under a name."""

    def __init__(self, host, sink: dict):
        super().__init__(host)
        self.sink, self.name = sink, None

    def run(self, script, timeout=120):
        r = super().run(script, timeout)
        name = self.name or f"{kind_of(script)}-{self.host.name}-up"
        self.sink.setdefault(name, r.stdout)
        self.name = None
        return r


def backend(inv, name: str, sink: dict) -> tuple[ProcessBackend, Recording]:
    host = inv.hosts[name]
    runner = Recording(host, sink)
    return ProcessBackend(runner, host, inv.cluster.name, run_dir(inv, host)), runner


def marked(hh, host: str, role: str) -> list[int]:
    want = f"HOMECLUSTER_PROCESS=replay/{host}/{role}".encode()
    out = []
    for pid in hh.pids(host):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if want in env and b"hc-supervise" not in cmd:
            out.append(pid)
    return out


def main() -> None:
    sink: dict[str, str] = {}
    with Household(workdir=WORKDIR / "household", prefix="hr", subnet="10.213.61") as hh:
        data = {"cluster": {"name": "replay", "scheduler": "desktop", "scheduler_port": 8870, "dashboard_port": 8871},
                "defaults": {"user": "root", "ssh_key": str(hh.client_key), "known_hosts": str(hh.known_hosts),
                             "python": sys.executable, "nthreads": 1, "memory_limit": "1GB", "death_timeout": 30,
                             "run_directory": str(WORKDIR / "run")},
                "hosts": {"desktop": {"address": hh.host("desktop").address, "nworkers": 0},
                          "study": {"address": hh.host("study").address, "nworkers": 1},
                          "attic": {"address": hh.host("attic").address, "nworkers": 2}}}
        path = HERE / "inventory.yaml"
        path.write_text("# written by tests/replay/record.py: the inventory the recordings were made with\n"
                        + yaml.safe_dump(data, sort_keys=False))
        inv = load(str(path))
        desk, desk_runner = backend(inv, "desktop", sink)
        desk_runner.name = "probe-idle"
        desk.probe()
        cli = [sys.executable, "-m", "homecluster"]
        rep = up(inv, runners=lambda h: Recording(h, sink))
        assert rep.ok, [h.error for h in rep.hosts.values()]
        for name in ("desktop", "study", "attic"):
            b, r = backend(inv, name, sink)
            r.name = f"probe-running-{name}"
            b.probe()
        # a session that has to wait: hold desktop's lock for 1 s from another command
        other, _ = backend(inv, "desktop", sink)
        held = threading.Event()

        def hold() -> None:
            with other.session("down", print):
                held.set()
                time.sleep(1.0)
        t = threading.Thread(target=hold)
        t.start()
        held.wait()
        lines = []
        waiter = desk.runner.hold(__import__("homecluster.backends.process", fromlist=["x"]).session_script(
            desk.run_dir, "up", supervisor=False))
        for line in iter(waiter.readline, ""):
            lines.append(line)
            if line.strip() == "hc-locked":
                break
        waiter.release()
        t.join()
        sink["session-busy"] = "".join(lines)
        # attic: kill -9 of the worker's Dask processes; the probe right after sees the supervisor backing off
        hh.kill("attic", marked(hh, "attic", "worker"))
        attic, attic_runner = backend(inv, "attic", sink)
        time.sleep(0.3)
        attic_runner.name = "probe-restarting-attic"
        attic.probe()
        time.sleep(8)
        for pid in marked(hh, "attic", "worker"):
            os.kill(pid, signal.SIGSTOP)
        attic_runner.name = "stop-worker-hung-attic"
        attic.stop("worker")
        study, study_runner = backend(inv, "study", sink)
        study_runner.name = "stop-worker-study"
        study.stop("worker")
        desk_runner.name = "stop-scheduler-desktop"
        desk.stop("scheduler")
        desk_runner.name = "stop-nothing-desktop"
        desk.stop("worker")
        subprocess.run(cli + ["down", "-i", str(path)], check=True, capture_output=True)
    OUT.mkdir(exist_ok=True)
    for name, text in sink.items():
        (OUT / f"{name}.txt").write_text(text)
    print("recorded:", ", ".join(sorted(sink)))


if __name__ == "__main__":
    main()
