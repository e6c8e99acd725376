"""Shared fixtures: the simulated household (session scope) and inventories written for it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))

from household import Household, can_build  # noqa: E402

ARTIFACTS = Path(__file__).parent / "_artifacts"


@pytest.fixture(scope="session")
def household(tmp_path_factory):
    """Three household machines (desktop, study, attic), each a namespace with its own sshd and hostname."""
    ok, reason = can_build()
    if not ok:
        pytest.skip(f"cannot build the simulated household here: {reason}")
    with Household(workdir=tmp_path_factory.mktemp("household")) as hh:
        yield hh


def household_inventory(hh: Household, path: Path, name: str, scheduler: str = "desktop",
                        workers: dict[str, int] | None = None, cluster_extra: dict | None = None,
                        host_extra: dict | None = None) -> Path:
    """Write an inventory for the simulated household: SSH as root with the test key, strict known_hosts."""
    workers = {"desktop": 0, "study": 1, "attic": 2} if workers is None else workers
    hosts = {h.name: {"address": h.address, "nworkers": workers.get(h.name, 0), **(host_extra or {}).get(h.name, {})}
             for h in hh.hosts}
    data = {
        "cluster": {"name": name, "scheduler": scheduler, **(cluster_extra or {})},
        "defaults": {"user": "root", "ssh_key": str(hh.client_key), "known_hosts": str(hh.known_hosts),
                     "python": sys.executable, "nthreads": 1, "memory_limit": "1GB", "death_timeout": 30,
                     "run_directory": str(path.parent / "run")},
        "hosts": hosts,
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
