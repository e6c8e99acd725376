"""The README's main command: `homecluster up` on the shipped inventory.yaml, on this machine alone, no SSH."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from homecluster import connect

REPO = Path(__file__).parent.parent


def ours(home: Path) -> list[str]:
    """Command lines of running dask processes whose files live under `home`."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue
        if "distributed.cli" in cmd and str(home) in cmd:
            found.append(cmd)
    return found


def test_shipped_inventory_up_compute_down(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path)}  # keep pid/log files away from the real ~/.homecluster

    def hc(*args):
        return subprocess.run([sys.executable, "-m", "homecluster", *args], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=180)

    try:
        up = hc("up")
        assert up.returncode == 0, up.stdout + up.stderr
        assert "dashboard: http://127.0.0.1:8787/status" in up.stdout
        assert "scheduler tls://127.0.0.1:8786 (running)" in up.stdout
        with connect(str(REPO / "inventory.yaml"), timeout=10) as client:
            assert len(client.scheduler_info()["workers"]) == 2
            assert client.submit(pow, 2, 10).result() == 1024
        assert "nothing changed" in hc("up").stdout
        # install-pkg needs no environment: section: the local host's workers run this very interpreter
        p = hc("install-pkg", "six==1.17.0")
        assert p.returncode == 0, p.stdout + p.stderr
        assert p.stdout.count("six=1.17.0  ok") == 2
        with connect(str(REPO / "inventory.yaml"), timeout=10) as client:
            assert set(client.run(lambda: __import__("six").__version__).values()) == {"1.17.0"}
        assert (tmp_path / ".homecluster/home/this-machine/worker.log").exists()
    finally:
        down = hc("down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert ours(tmp_path) == []
    (REPO / "inventory.added.json").unlink(missing_ok=True)  # the record install-pkg left beside the inventory
