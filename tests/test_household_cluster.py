"""Integration tests on the simulated household: real sshd, Fabric over TCP, real dask processes.

The test process is the user's laptop (root namespace); desktop, study and attic are network namespaces.
"""

from __future__ import annotations

import os
import socket
import sys

import pytest

from homecluster import connect

from conftest import dask_processes, hc, household_inventory, status

pytestmark = pytest.mark.household


def test_up_runs_on_three_hosts_idempotently_and_down_cleans_up(household, tmp_path, cleanup):
    inv = household_inventory(household, tmp_path / "inventory.yaml", "life",
                              cluster_extra={"scheduler_port": 8786, "dashboard_port": 8787})
    cleanup(inv)
    first = hc("up", inv=inv)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"scheduler tls://{household.host('desktop').address}:8786 (running)" in first.stdout
    # the dashboard is private by default: on desktop's loopback, reached from here through an SSH tunnel
    assert "dashboard: private to desktop (open it with: homecluster dashboard)" in first.stdout

    with connect(str(inv)) as client:
        assert client.scheduler.address == f"tls://{household.host('desktop').address}:8786"
        assert len(client.scheduler_info()["workers"]) == 3
        assert all(a.startswith("tls://") for a in client.scheduler_info()["workers"])
        hostnames = client.run(socket.gethostname)
        assert sorted(hostnames.values()) == ["attic", "attic", "study"]
        assert client.submit(sum, range(100)).result() == 4950
        before = {w["name"]: (w["address"]) for w in status(inv)["workers"]}
    pids = status(inv)["hosts"]

    second = hc("up", inv=inv)
    assert second.returncode == 0 and "nothing changed" in second.stdout
    assert status(inv)["hosts"] == pids
    assert {w["name"]: w["address"] for w in status(inv)["workers"]} == before

    changed = household_inventory(household, inv, "life", cluster_extra={"scheduler_port": 8786},
                                  host_extra={"attic": {"nthreads": 2}})
    third = hc("up", inv=changed)
    assert third.returncode == 0, third.stdout + third.stderr
    after = {h["name"]: h["processes"] for h in status(inv)["hosts"]}
    old = {h["name"]: h["processes"] for h in pids}
    assert after["study"] == old["study"] and after["desktop"] == old["desktop"]
    assert after["attic"]["worker"] != old["attic"]["worker"]
    assert {w["name"]: w["nthreads"] for w in status(inv)["workers"]} == {"study": 1, "attic-0": 2, "attic-1": 2}

    down = hc("down", inv=inv)
    assert down.returncode == 0, down.stdout + down.stderr
    assert dask_processes(household) == []
    again = hc("down", inv=inv)
    assert again.returncode == 0 and "nothing running" in again.stdout


def test_status_json_and_logs(household, tmp_path, cleanup):
    inv = household_inventory(household, tmp_path / "inventory.yaml", "stat", workers={"study": 2},
                              cluster_extra={"scheduler_port": 8790, "dashboard_port": 8791})
    cleanup(inv)
    assert hc("up", inv=inv).returncode == 0
    data = status(inv)
    assert data["scheduler_running"] is True
    workers = sorted(data["workers"], key=lambda w: w["name"])
    assert [(w["name"], w["host"], w["nthreads"], w["memory_limit"]) for w in workers] == [
        ("study-0", "study", 1, 10**9), ("study-1", "study", 1, 10**9)]
    assert all(w["address"].startswith(f"tls://{household.host('study').address}:") for w in workers)
    text = hc("status", inv=inv).stdout
    assert "study-0" in text and "scheduler running" in text
    assert "Starting Worker" in hc("logs", "study", inv=inv).stdout
    assert "Scheduler at" in hc("logs", "desktop", inv=inv).stdout


def test_a_host_with_sshd_stopped_fails_alone(household, tmp_path, cleanup):
    inv = household_inventory(household, tmp_path / "inventory.yaml", "partial",
                              cluster_extra={"scheduler_port": 8792, "dashboard_port": 8793})
    cleanup(inv)
    household.stop_sshd("attic")
    try:
        p = hc("up", inv=inv)
    finally:
        household.start_sshd("attic")
    assert p.returncode == 1
    assert f"attic: cannot reach {household.host('attic').address}:22: connection refused" in p.stdout
    assert [h["ok"] for h in status(inv)["hosts"] if h["name"] == "study"] == [True]
    with connect(str(inv)) as client:
        assert set(client.run(socket.gethostname).values()) == {"study"}


def test_unknown_and_changed_host_keys_are_refused(household, tmp_path, cleanup):
    lines = household.known_hosts.read_text().splitlines()
    attic = household.host("attic").address
    others = [ln for ln in lines if not ln.startswith(attic + " ")]
    study_key = next(ln for ln in lines if ln.startswith(household.host("study").address + " ")).split(" ", 1)[1]
    unknown, changed = tmp_path / "known_unknown", tmp_path / "known_changed"
    unknown.write_text("\n".join(others) + "\n")
    changed.write_text("\n".join(others + [f"{attic} {study_key}"]) + "\n")
    for kh, needle in ((unknown, "is unknown"), (changed, "CHANGED")):
        inv = household_inventory(household, tmp_path / f"{kh.name}.yaml", "keys", workers={"attic": 1},
                                  cluster_extra={"scheduler_port": 8794, "dashboard_port": 8795},
                                  host_extra={"attic": {"known_hosts": str(kh)}})
        cleanup(inv)
        p = hc("up", inv=inv, timeout=120)
        assert p.returncode == 1
        assert f"attic: host key of {attic}:22 {needle}" in p.stdout
        assert not any(h == "attic" for h, _, _ in dask_processes(household))
        hc("down", inv=inv)


def test_a_worker_that_cannot_start_is_reported_fast(household, tmp_path, cleanup):
    inv = household_inventory(household, tmp_path / "inventory.yaml", "broken", workers={"study": 1, "attic": 1},
                              cluster_extra={"scheduler_port": 8796, "dashboard_port": 8797},
                              host_extra={"attic": {"python": "/nonexistent/python3"}})
    cleanup(inv)
    p = hc("up", "--timeout", "30", inv=inv)
    assert p.returncode == 1
    assert "attic: starting the worker failed (exit 127): no Python interpreter at /nonexistent/python3" in p.stdout
    assert "study" in p.stdout and status(inv)["workers"][0]["name"] == "study"


def test_a_worker_that_dies_at_start_is_reported_with_its_log(household, tmp_path, cleanup):
    fake = tmp_path / "python-without-dask"
    fake.write_text("#!/bin/sh\necho \"ModuleNotFoundError: No module named 'distributed'\" >&2\nexit 1\n")
    fake.chmod(0o755)
    inv = household_inventory(household, tmp_path / "inventory.yaml", "dies", workers={"study": 1, "attic": 1},
                              cluster_extra={"scheduler_port": 8798, "dashboard_port": 8799},
                              host_extra={"attic": {"python": str(fake)}})
    cleanup(inv)
    p = hc("up", "--timeout", "60", inv=inv)
    assert p.returncode == 1
    assert "attic: the worker process exited: ModuleNotFoundError: No module named 'distributed'" in p.stdout
    assert "within 60 s" not in p.stdout  # found by the probe, not by waiting out the timeout


def test_processes_detach_without_setsid_1(household, tmp_path, cleanup):
    """macOS has no setsid(1): the supervisor makes its own session; an os: macos host, run here on Linux, shows
    the path works end to end."""
    inv = household_inventory(household, tmp_path / "inventory.yaml", "mac", workers={"attic": 1},
                              cluster_extra={"scheduler_port": 8800, "dashboard_port": 8801},
                              host_extra={"attic": {"os": "macos"}})
    cleanup(inv)
    dry = hc("up", "--dry-run", inv=inv).stdout
    assert "nohup " + sys.executable + ' "$D/hc-supervise.py"' in dry and "setsid nohup" not in dry
    p = hc("up", inv=inv)
    assert p.returncode == 0, p.stdout + p.stderr
    pid = status(inv)["hosts"][2]["processes"]["worker"]
    assert os.getsid(pid) == pid  # its own session: it outlives SSH and is stopped as a group
    assert hc("down", inv=inv).returncode == 0
    assert dask_processes(household) == []


def test_a_scheduler_that_cannot_bind_is_reported_with_its_log(household, tmp_path, cleanup):
    """Port 22 on desktop is taken by its sshd: the scheduler exits, and up says so without waiting it out."""
    inv = household_inventory(household, tmp_path / "inventory.yaml", "nobind", workers={"study": 1},
                              cluster_extra={"scheduler_port": 22, "dashboard_port": 8803})
    cleanup(inv)
    p = hc("up", "--timeout", "60", inv=inv)
    assert p.returncode == 1
    assert "desktop: the scheduler process exited:" in p.stdout
    assert "(NOT RUNNING)" in p.stdout and "within 60 s" not in p.stdout
