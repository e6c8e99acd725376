"""Shared fixtures: the simulated household (session scope) and inventories written for it."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))

from household import Household, can_build  # noqa: E402

ARTIFACTS = Path(__file__).parent / "_artifacts"

# The clusters' certificates of a test run (and of the CLI it starts) stay out of the user's ~/.config.
if "HOMECLUSTER_CONFIG" not in os.environ:
    os.environ["HOMECLUSTER_CONFIG"] = tempfile.mkdtemp(prefix="hc-test-config-")
    atexit.register(shutil.rmtree, os.environ["HOMECLUSTER_CONFIG"], True)


@pytest.fixture(scope="session")
def household(tmp_path_factory):
    """Three household machines (desktop, study, attic), each a namespace with its own sshd and hostname."""
    ok, reason = can_build()
    if not ok:
        message = f"cannot build the simulated household here: {reason}"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI must run the household tests: see tests/run)")
        pytest.skip(message)
    # Two test runs at once (two developers' terminals) need distinct namespaces and subnets.
    prefix = os.environ.get("HC_TEST_PREFIX", "hc")
    subnet = os.environ.get("HC_TEST_SUBNET", "10.213.57")
    with Household(workdir=tmp_path_factory.mktemp("household"), prefix=prefix, subnet=subnet) as hh:
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


def hc(*args: str, inv: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real CLI as a user would."""
    command, *rest = args  # -i right after the command: `run SCRIPT ARGS...` keeps every later word for the script
    return subprocess.run([sys.executable, "-m", "homecluster", command, "-i", str(inv), *rest],
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def wheel_cache(tmp_path_factory) -> Path:
    """One laptop wheelhouse for the whole test session (each wheel is downloaded once)."""
    return tmp_path_factory.mktemp("cache")


def dask_processes(hh) -> list[tuple[str, int, str]]:
    """Every dask process left in any host namespace (a nanny's workers run as `python -c from multiprocessing...`)."""
    return [(h.name, pid, cmd) for h in hh.hosts for pid, cmd in hh.processes(h.name)
            if "distributed" in cmd or "multiprocessing" in cmd]


def wait_for(predicate, timeout: float = 10, interval: float = 0.2):
    """Poll until predicate() is truthy; its value, or None after timeout seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return None


def status(inv: Path) -> dict:
    p = hc("status", "--json", inv=inv)
    return json.loads(p.stdout)


def _sshd_running(hh: Household) -> None:
    """(Re)start the sshd of every host that has none listening."""
    for h in hh.hosts:
        if hh.sshd_pid(h.name) is None:
            hh.start_sshd(h.name)


@pytest.fixture
def cleanup(household):
    """Inventories registered here are brought down after the test, whatever happened; then nothing but each host's
    sshd (and what the test declared with `household.own(host, pid)`) may be left in any host namespace. Leftovers
    are SIGKILLed, so that one failure does not spill into the next test, and fail the test."""
    invs: list[Path] = []
    yield invs.append
    _sshd_running(household)
    for inv in invs:
        hc("down", inv=inv)
    left = household.leftovers()
    for h in household.hosts:
        household.kill(h.name, [pid for host, pid, _ in left if host == h.name])
    household.release_owned()
    _sshd_running(household)
    if left:
        pytest.fail("processes left behind in the host namespaces (killed now):\n"
                    + "\n".join(f"  {host} pid {pid}: {cmd}" for host, pid, cmd in left), pytrace=False)
