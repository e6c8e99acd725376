"""Record what real hosts print for each of homecluster's scripts, for the replay unit tests.

Run as root when the scripts' output format changes: `python tests/replay/record.py`. It builds a simulated
household (prefix hr, subnet 10.213.61), writes tests/replay/inventory.yaml, runs up/down through the real SSH
runner and the process backend, and stores each host's output under tests/replay/recorded/."""

from __future__ import annotations

import os
import signal
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
from homecluster.ops.down import down  # noqa: E402
from homecluster.ops.up import up  # noqa: E402
from homecluster.transport import SSHRunner  # noqa: E402
from homecluster.security.store import CertFiles  # noqa: E402
from homecluster.transport.replay import kind_of  # noqa: E402

WORKDIR = Path("/tmp/hc-replay")
OUT = HERE / "recorded"
# The certificates are real (the recorded cluster runs TLS) but made afresh each time: their digest, which goes
# into the fingerprints, is pinned here and in the replay tests (CERT_DIGEST in tests/test_deploy_replay.py).
CERT_DIGEST = "recorded"


class Recording(SSHRunner):
    """An SSH runner that also keeps what each script printed, as `<kind>-<host>-<phase>` (`~2` for the second)."""

    def __init__(self, host, sink: dict, phase: str):
        super().__init__(host)
        self.sink, self.phase = sink, phase

    def _keep(self, script: str, text: str) -> None:
        name, n = f"{kind_of(script)}-{self.host.name}-{self.phase}", 2
        while name in self.sink:  # the second script of that kind in the phase: NAME-2
            name, n = f"{name.rsplit('~', 1)[0]}~{n}", n + 1
        self.sink[name] = text

    def run(self, script, timeout=120):
        r = super().run(script, timeout)
        self._keep(script, r.stdout)
        return r

    def hold(self, script):
        held = super().hold(script)
        release = held.release

        def keep_and_release():
            self._keep(script, "".join(line + "\n" for line in held.lines))
            return release()
        held.release = keep_and_release
        return held


def backend(inv, name: str, sink: dict, phase: str) -> ProcessBackend:
    host = inv.hosts[name]
    return ProcessBackend(Recording(host, sink, phase), host, inv.cluster.name, run_dir(inv, host))


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
    os.environ["HOMECLUSTER_CONFIG"] = str(WORKDIR / "config")
    CertFiles.digest = lambda self, name: CERT_DIGEST
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
        rep = up(inv, runners=lambda h: Recording(h, sink, "up"))  # cold: session (idle probe), start
        assert rep.ok, [h.error for h in rep.hosts.values()]
        up(inv, runners=lambda h: Recording(h, sink, "noop"))  # session with the running processes
        # a session that has to wait: desktop's lock held for 1 s by another command
        held = threading.Event()

        def hold() -> None:
            with backend(inv, "desktop", {}, "other").session("down", print):
                held.set()
                time.sleep(1.0)
        t = threading.Thread(target=hold)
        t.start()
        held.wait()
        with backend(inv, "desktop", sink, "busy").session("up", print):
            pass
        t.join()
        # attic: kill -9 of the worker's Dask processes; the probe right after sees the supervisor backing off
        hh.kill("attic", marked(hh, "attic", "worker"))
        time.sleep(0.3)
        backend(inv, "attic", sink, "restarting").probe()
        time.sleep(8)
        for pid in marked(hh, "attic", "worker"):
            os.kill(pid, signal.SIGSTOP)
        down(inv, runners=lambda h: Recording(h, sink, "down"))  # attic hung: killed
        down(inv, runners=lambda h: Recording(h, sink, "down-again"))  # nothing runs
    OUT.mkdir(exist_ok=True)
    for name, text in sink.items():
        (OUT / f"{name}.txt").write_text(text)
    print("recorded:", ", ".join(sorted(sink)))


if __name__ == "__main__":
    main()
