"""The port plan against what really listens (issue 12): with worker_ports/nanny_ports set, every TCP socket a
process of the cluster listens on, in every host namespace, is in `homecluster ports`' plan and bound to the
address the plan names (the host's own, or loopback for what only the host itself uses). Ports 8890-8891,
9300-9319."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import hc, household_inventory

pytestmark = pytest.mark.household


def listening(household, host: str, cluster: str) -> list[tuple[str, int, int]]:
    """(address, port, pid) of every listening TCP socket of the cluster's processes on a host (`ss -ltnpH`)."""
    p = household.run(host, ["ss", "-ltnpH"], timeout=30)
    assert p.returncode == 0, p.stderr
    out = []
    for line in p.stdout.splitlines():
        local = line.split()[3]
        address, port = local.rsplit(":", 1)
        for pid in map(int, re.findall(r"pid=(\d+)", line)):
            try:
                env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(e.startswith(f"HOMECLUSTER_PROCESS={cluster}/".encode()) for e in env):
                out.append((address.strip("[]"), int(port), pid))
    return out


def in_plan(entries: list[dict], address: str, port: int) -> dict | None:
    for e in entries:
        if e["address"] != address:
            continue
        ports = e["ports"]
        if ports == "any" or (":" in ports and int(ports.split(":")[0]) <= port <= int(ports.split(":")[1])) \
                or ports == str(port):
            return e
    return None


def test_every_listening_port_is_in_the_plan(household, tmp_path, cleanup):
    inv = household_inventory(household, tmp_path / "inventory.yaml", "ports",
                              cluster_extra={"scheduler_port": 8890, "dashboard_port": 8891,
                                             "worker_ports": "9300:9309", "nanny_ports": "9310:9319"})
    cleanup(inv)
    up = hc("up", inv=inv)
    assert up.returncode == 0, up.stdout + up.stderr
    p = hc("ports", "--json", inv=inv)
    assert p.returncode == 0, p.stderr
    plan = json.loads(p.stdout)
    assert plan["unpinned"] == [] and plan["lan"] == [f"{household.host('desktop').address.rsplit('.', 1)[0]}.0/24"]
    seen = {}
    for h in household.hosts:
        sockets = listening(household, h.name, "ports")
        for address, port, pid in sockets:
            entry = in_plan(plan["hosts"][h.name], address, port)
            assert entry is not None, f"{h.name}: {address}:{port} (pid {pid}) is not in the plan {plan['hosts'][h.name]}"
            assert address in (h.address, "127.0.0.1"), f"{h.name}: {address}:{port} is bound wider than the plan"
            if entry["lan"]:
                assert entry["ports"] != "any", entry  # everything the network reaches is pinned
            seen.setdefault(h.name, set()).add(entry["what"])
    # all of it was really seen: the scheduler and its private dashboard; 1 and 2 workers with nanny and http
    assert seen["desktop"] == {"scheduler", "dashboard"}
    assert seen["study"] == seen["attic"] == {"worker", "nanny", "worker http"}
    attic = [s for s in listening(household, "attic", "ports")]
    assert len([s for s in attic if 9300 <= s[1] <= 9309]) == 2  # nworkers: 2, each its own worker port
