"""Unit tests of up, down and status: the real operations run against replay runners that answer each script
with what real hosts printed (tests/replay/recorded/, made by tests/replay/record.py on the simulated household).
No household, no network: the deploy logic alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from homecluster import scheduler
from homecluster.core.spec import SCHEDULER, WORKER
from homecluster.inventory import load, parse
from homecluster.ops.down import down
from homecluster.ops.status import status
from homecluster.ops.up import _dead_checker, up
from homecluster.ops.report import new_reports
from homecluster.core.spec import build
from homecluster.scheduler import WorkerInfo
from homecluster.security.store import CertFiles
from homecluster.transport import CommandResult
from homecluster.transport.group import Group
from homecluster.transport.replay import ReplayRunner

REPLAY = Path(__file__).parent / "replay"
HOSTS = ("desktop", "study", "attic")


def recorded(name: str) -> str:
    return (REPLAY / "recorded" / f"{name}.txt").read_text()


CERT_DIGEST = "recorded"  # as tests/replay/record.py pins it


@pytest.fixture
def inv(monkeypatch):
    monkeypatch.setattr(CertFiles, "digest", lambda self, name: CERT_DIGEST)
    return load(str(REPLAY / "inventory.yaml"))


class Household:
    """Replay runners for the recorded household: `replies[host]` maps a script kind to the host's output."""

    def __init__(self, replies: dict[str, dict]):
        self.replies, self.runners = replies, {}

    def __call__(self, host) -> ReplayRunner:
        self.runners[host.name] = ReplayRunner(host, self.replies.get(host.name, {}))
        return self.runners[host.name]

    def kinds(self, host: str) -> list[str]:
        return self.runners[host].kinds()


def fresh() -> Household:
    return Household({h: {"session": recorded(f"session-{h}-up"), "start": recorded(f"start-{h}-up")} for h in HOSTS})


def running(**overrides) -> Household:
    """Everything runs; `session` replies with the probe taken under the lock, `probe` (status) the same lines."""
    replies = {h: {"session": recorded(f"session-{h}-noop"), "probe": recorded(f"session-{h}-noop"),
                   "stop": recorded(f"stop-{h}-down-again")} for h in HOSTS}
    for host, extra in overrides.items():
        replies[host].update(extra)
    return Household(replies)


def test_up_on_a_fresh_household_starts_the_scheduler_then_the_workers(inv):
    hh = fresh()
    rep = up(inv, runners=hh, wait=False)
    # the certificate and key of each role are copied (SFTP, no shell) right before it starts
    assert hh.kinds("desktop") == ["session", "copy", "copy", "copy", "start"]
    assert hh.kinds("study") == hh.kinds("attic") == ["session", "copy", "copy", "copy", "start"]
    copies = [s for s in hh.runners["study"].scripts if s.startswith("# homecluster copy:")]
    assert [c.split(" to ")[1].split(",")[0].rsplit("/", 1)[-1] for c in copies] == [
        "ca.pem", "worker.pem", "worker.key"]
    assert all(c.endswith("mode 0600") and "BEGIN" not in c for c in copies)
    assert rep.hosts["desktop"].actions == ["start scheduler"]
    assert rep.hosts["attic"].actions == ["start worker"] and rep.changed
    assert rep.hosts["attic"].pids["worker"] == int(recorded("start-attic-up").split()[-1])


def test_up_on_a_running_cluster_touches_nothing(inv):
    hh = running()
    rep = up(inv, runners=hh, wait=False)
    assert all(hh.kinds(h) == ["session"] for h in HOSTS)  # one SSH command per host
    assert not rep.changed
    assert rep.hosts["study"].actions == ["keep worker"]


def test_up_restarts_only_the_changed_host(inv):
    changed = parse(Path(inv.path).read_text().replace("nworkers: 1", "nworkers: 3"), inv.path)
    hh = running(study={"stop": recorded("stop-study-down"), "start": recorded("start-study-up")})
    rep = up(changed, runners=hh, wait=False)
    assert hh.kinds("study") == ["session", "stop", "copy", "copy", "copy", "start"]
    assert "under the lock" not in hh.runners["study"].scripts[1]  # the session holds it already
    assert hh.kinds("attic") == ["session"] and rep.hosts["attic"].actions == ["keep worker"]
    assert rep.hosts["study"].actions == ["restart worker"]


def test_a_restart_that_had_to_kill_says_so(inv):
    changed = parse(Path(inv.path).read_text().replace("nworkers: 2", "nworkers: 3"), inv.path)
    hh = running(attic={"stop": recorded("stop-attic-down"), "start": recorded("start-attic-up")})
    rep = up(changed, runners=hh, wait=False)
    assert rep.hosts["attic"].actions == ["killed 1 stuck worker process(es)", "restart worker"]


def test_a_busy_lock_is_waited_for_and_said(inv):
    messages: list[str] = []
    hh = fresh()
    hh.replies["desktop"]["session"] = recorded("session-desktop-busy")
    up(inv, runners=hh, wait=False, progress=messages.append)
    assert any(m.startswith("desktop: waiting for homecluster down from 10.213.61.1 (since ") for m in messages)


def test_a_lock_never_granted_fails_that_host_and_holds_back_the_workers(inv):
    hh = fresh()
    hh.replies["desktop"]["session"] = CommandResult(
        75, "hc-busy homecluster up from 10.213.61.1 (since 21:00:00)\nhc-busy-timeout\n", "")
    rep = up(inv, runners=hh, wait=False)
    assert rep.hosts["desktop"].error.startswith(
        "desktop: another homecluster command held the cluster's lock for 300 s (hc-busy homecluster up from "
        "10.213.61.1 (since 21:00:00) | hc-busy-timeout). Fix: wait for it")
    assert rep.hosts["study"].error == "study: not started: the scheduler host desktop failed"
    assert hh.kinds("study") == ["session"]  # probed, never started


def test_a_session_cut_short_fails_only_its_host(inv):
    hh = fresh()
    cut = recorded("session-attic-up").split("hc-probe worker")[0]
    hh.replies["attic"]["session"] = CommandResult(255, cut, "")
    rep = up(inv, runners=hh, wait=False)
    assert rep.hosts["attic"].error.startswith("attic: the session script ended early (exit 255): hc-now ")
    assert rep.hosts["study"].actions == ["start worker"]


def test_the_dead_checker_reports_a_worker_its_supervisor_is_restarting(inv):
    spec = build(inv)
    reports = new_reports(inv, spec)
    reports["attic"].actions = ["start worker"]
    log = "Traceback (most recent call last):\nImportError: this distributed is broken on purpose\n"
    hh = running(attic={"probe": recorded("probe-attic-restarting"), "logs": log})
    with Group(inv.hosts.values(), hh) as group:
        gone = _dead_checker(group, inv, spec, reports)({"attic-0", "attic-1", "study"})
    assert gone == {"attic-0", "attic-1"}
    assert reports["attic"].error == (
        "attic: the worker process exited: ImportError: this distributed is broken on purpose (exit signal 9; its "
        "supervisor restarts it with back-off). Fix: see homecluster logs attic --role worker")
    assert reports["study"].error is None


def test_status_shows_restarts_and_the_registered_workers(inv, monkeypatch):
    w = {n: WorkerInfo(n, f"tcp://10.213.61.13:{9000 + i}", "10.213.61.13", 1, 10**9)
         for i, n in enumerate(["study", "attic-0"])}
    monkeypatch.setattr(scheduler, "workers", lambda address, timeout=2.0: w)
    monkeypatch.setattr(scheduler, "endpoint", lambda inv: scheduler.Endpoint("tls://10.213.61.11:8870"))
    monkeypatch.setattr("homecluster.ops.status.Group",
                        lambda hosts: Group(hosts, running(attic={"probe": recorded("probe-attic-restarting")})))
    rep = status(inv)
    assert rep.scheduler_running and rep.hosts["study"].ok
    attic = rep.hosts["attic"]
    assert attic.actions[0].startswith("worker restarting (restarts 0, last exit signal 9 ")
    assert attic.states[WORKER].running is False and not attic.ok
    assert attic.error == ("attic: 1/2 workers registered. Fix: homecluster up; if it fails again, "
                           "homecluster logs attic")


def test_down_stops_workers_first_and_reports_kills_per_host(inv):
    hh = Household({h: {"stop": [recorded(f"stop-{h}-down"), recorded(f"stop-{h}-down~2")]} for h in HOSTS})
    results = down(inv, runners=hh)
    assert results["desktop"].value == [f"scheduler {recorded('stop-desktop-down~2').split()[-1]}"]
    assert results["attic"].value == [f"worker {recorded('stop-attic-down').split()[2]} "
                                      "(had to kill 1 process(es))"]
    assert hh.kinds("study") == ["stop", "stop"]  # each takes the lock itself: one SSH command per phase
    worker_stop, scheduler_stop = [s for s in hh.runners["desktop"].scripts if s.startswith("# homecluster stop")]
    assert "the worker of cluster replay" in worker_stop and "the scheduler of" in scheduler_stop


def test_the_recordings_match_the_inventory(inv):
    """Guards the fixtures: regenerate them with tests/replay/record.py when the spec's fingerprints change."""
    for p in build(inv, certs=CertFiles(inv.cluster.name)).processes:
        assert f"spec={p.fingerprint}" in recorded(f"session-{p.host}-noop"), (
            "tests/replay/recorded/ is stale: run python tests/replay/record.py (as root)")
    assert f"hc-probe {SCHEDULER} pid=" in recorded("session-desktop-noop")
