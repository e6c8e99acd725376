"""up, down, status and logs: the code that touches hosts, built on the pure spec, commands and plan.

Each action returns a result with one entry per host; nothing here prints (the CLI does).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable

from homecluster.backends import process as commands

from homecluster.packages import lock
from homecluster.packages.additions import Additions, restore
from homecluster.backends.process import ProcessState
from homecluster.errors import HomeclusterError, HostError
from homecluster.transport.group import Group, HostResult
from homecluster.inventory import Host, Inventory
from homecluster.scheduler import WorkerInfo, scheduler_workers, wait_for_workers
from homecluster.core.plan import KEEP, RESTART, START, STOP, Step, plan_host, plan_scheduler
from homecluster.core.spec import SCHEDULER, WORKER, ClusterSpec, build, run_dir
from homecluster.transport import CommandResult

Progress = Callable[[str], None]


@dataclass
class HostReport:
    """What happened on one host."""

    host: str
    address: str
    actions: list[str] = field(default_factory=list)
    expected: tuple[str, ...] = ()
    registered: list[WorkerInfo] = field(default_factory=list)
    pids: dict[str, int] = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and len(self.registered) == len(self.expected)


@dataclass
class ClusterReport:
    """The outcome of up or status: the cluster addresses plus one report per host."""

    spec: ClusterSpec
    hosts: dict[str, HostReport]
    scheduler_running: bool = False
    changed: bool = False
    restored: list[str] = field(default_factory=list)
    restore_errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.scheduler_running and all(h.ok for h in self.hosts.values())


def _probe(runner, host: Host, inv: Inventory) -> dict[str, ProcessState]:
    r = runner.run(commands.probe_script(run_dir(inv, host)), timeout=30)
    states = commands.parse_probe(r.stdout)
    if not r.ok or not states:
        raise_host(host, "probe", r)
    return states


def raise_host(host: Host, what: str, r: CommandResult) -> None:
    """Raise a HostError for a failed command, with its exit code and the last lines of its output."""
    raise HostError(f"{host.name}: {what} failed (exit {r.exit_code}): {r.tail()}")


def _new_reports(inv: Inventory, spec: ClusterSpec) -> dict[str, HostReport]:
    expected = {p.host: p.worker_names for p in spec.workers}
    return {h.name: HostReport(h.name, h.address, expected=expected.get(h.name, ())) for h in inv.hosts.values()}


def _record_failures(reports: dict[str, HostReport], results: dict[str, HostResult]) -> None:
    for name, res in results.items():
        if not res.ok and reports[name].error is None:
            reports[name].error = res.error


def _execute(runner, host: Host, inv: Inventory, steps: list[Step], roles: dict[str, ProcessState],
             report: HostReport) -> None:
    """Carry out one host's steps: stops first (workers before the scheduler), then starts (scheduler first)."""
    ordered = sorted(steps, key=lambda s: s.role != WORKER)
    for s in ordered:
        if s.action in (STOP, RESTART):
            r = runner.run(commands.stop_script(run_dir(inv, host), s.role))
            if not r.ok:
                raise_host(host, f"stopping the {s.role}", r)
    for s in reversed(ordered):
        if s.action in (START, RESTART):
            r = runner.run(commands.start_script(s.proc))
            if not r.ok:
                raise_host(host, f"starting the {s.role}", r)
            report.pids[s.role] = commands.parse_started(r.stdout)
        elif s.action == KEEP:
            report.pids[s.role] = roles[s.role].pid
        report.actions.append(f"{s.action} {s.role}")


class _SchedulerDecision:
    """Set once the scheduler's host is probed: whether its scheduler is kept, or None when that host failed."""

    def __init__(self) -> None:
        self._event, self.kept = threading.Event(), None

    def set(self, kept: bool | None) -> None:
        if not self._event.is_set():
            self.kept = kept
            self._event.set()

    def wait(self) -> bool | None:
        self._event.wait()
        return self.kept


def _pipeline(inv: Inventory, spec: ClusterSpec, reports: dict[str, HostReport]):
    """Per host: probe, plan, act. A host does not wait for the others' probes, only for the one fact it
    needs from the scheduler's host (kept or restarted), so the scheduler starts as early as possible."""
    decision, sched_host = _SchedulerDecision(), spec.scheduler.host

    def act(runner, host: Host) -> list[Step]:
        first: list[Step] = []
        try:
            roles = _probe(runner, host, inv)
            if host.name == sched_host:
                first = [plan_scheduler(spec, roles.get(SCHEDULER))]
                decision.set(first[0].action == KEEP)
        finally:
            if host.name == sched_host:
                decision.set(None)  # no-op when already decided; unblocks the others when the probe failed
        kept = decision.wait()
        if kept is None:
            raise HostError(f"{host.name}: not started: the scheduler host {sched_host} failed")
        steps = first + plan_host(spec, host.name, roles, kept)
        _execute(runner, host, inv, steps, roles, reports[host.name])
        return steps
    return act


def _dead_checker(group: Group, inv: Inventory, spec: ClusterSpec, reports: dict[str, HostReport]):
    """A callback for wait_for_workers: probe the hosts of missing workers (and the scheduler's host); a host
    whose process died gets its log tail as the error. A dead scheduler means no worker will come."""
    owner = {n: p.host for p in spec.workers for n in p.worker_names}
    sched = spec.scheduler.host

    def check(missing: set[str]) -> set[str]:
        worker_hosts = {owner[n] for n in missing}
        results = group.each(worker_hosts | {sched}, lambda runner, host: _probe(runner, host, inv))
        if results[sched].ok and not results[sched].value[SCHEDULER].alive:
            _report_death(group, inv, reports[sched], SCHEDULER)
            return set(missing)
        gone: set[str] = set()
        for name, res in results.items():
            if name in worker_hosts and res.ok and not res.value[WORKER].alive:
                _report_death(group, inv, reports[name], WORKER)
                gone |= set(reports[name].expected)
        return gone
    return check


def _report_death(group: Group, inv: Inventory, report: HostReport, role: str) -> None:
    """A host's process exited: its error is the cause line of its log."""
    name = report.host
    r = group.runners[name].run(commands.logs_script(run_dir(inv, inv.hosts[name]), role, 60))
    report.error = (f"{name}: the {role} process exited: {commands.summarize_log(r.stdout)}. "
                    f"Fix: see homecluster logs {name} --role {role}")


def _wait(group: Group, inv: Inventory, spec: ClusterSpec, reports: dict[str, HostReport], timeout: float,
          progress: Progress) -> tuple[dict[str, WorkerInfo], bool]:
    """Wait for the workers of the hosts that did not fail; the registered workers, and whether the scheduler
    runs. A process that died meanwhile is reported on its host with its log's cause line."""
    sched = reports[spec.scheduler.host]
    seen: dict[str, WorkerInfo] = {}
    if SCHEDULER in sched.pids:
        expected = {n for r in reports.values() if r.error is None for n in r.expected}
        seen = wait_for_workers(
            spec.scheduler_address, expected, timeout,
            lambda n, total, t: progress(f"waiting for workers: {n}/{total} registered ({t:.0f} s)"),
            _dead_checker(group, inv, spec, reports))
    running = bool(seen) or scheduler_workers(spec.scheduler_address) is not None
    if not running and SCHEDULER in sched.pids and sched.error is None:
        # the workers may have died first (nothing left to wait for) before the checker saw the scheduler go
        probe = group.each([sched.host], lambda runner, host: _probe(runner, host, inv))[sched.host]
        if probe.ok and not probe.value[SCHEDULER].alive:
            _report_death(group, inv, sched, SCHEDULER)
    return seen, running


def up(inv: Inventory, timeout: float = 60.0, progress: Progress = lambda s: None) -> ClusterReport:
    """Bring the cluster to the state the inventory describes, and wait for every worker to register."""
    spec = build(inv, lock.digest(inv))
    reports = _new_reports(inv, spec)
    # The scheduler's host goes first: the others wait for its decision, so it must never queue behind them.
    order = [spec.scheduler.host] + [n for n in inv.hosts if n != spec.scheduler.host]
    with Group(inv.hosts.values()) as group:
        progress(f"checking and starting on {len(inv.hosts)} host(s)")
        results = group.each(order, _pipeline(inv, spec, reports))
        _record_failures(reports, results)
        changed = any(s.action != KEEP for r in results.values() if r.ok for s in r.value)
        seen, running = _wait(group, inv, spec, reports, timeout, progress)
    _settle(reports, seen, running, timeout)
    rep = ClusterReport(spec, reports, scheduler_running=running, changed=changed)
    sched_actions = reports[spec.scheduler.host].actions
    if running and {f"{START} {SCHEDULER}", f"{RESTART} {SCHEDULER}"} & set(sched_actions):
        _restore(inv, rep, progress)
    return rep


def _restore(inv: Inventory, rep: ClusterReport, progress: Progress) -> None:
    """A new scheduler knows no plugins: give it what install-pkg and upload recorded, for every worker."""
    try:
        recorded = Additions(inv.path)
    except HomeclusterError as e:
        rep.restore_errors = [str(e)]
        return
    if recorded.empty:
        return
    from homecluster.api import connect

    progress(f"giving the new scheduler {len(recorded.lines())} recorded package(s) and upload(s)")
    try:
        with connect(inv) as client:
            rep.restore_errors = restore(client, recorded)
    except OSError as e:
        rep.restore_errors = [f"cannot reach the scheduler to restore recorded packages: {e}"]
    rep.restored = recorded.lines()


def _settle(reports: dict[str, HostReport], seen: dict[str, WorkerInfo], running: bool, timeout: float) -> None:
    """Attach registered workers to their hosts; say why the missing ones are missing."""
    for rep in reports.values():
        rep.registered = [seen[n] for n in rep.expected if n in seen]
        if rep.error is None and len(rep.registered) < len(rep.expected):
            why = f"within {timeout:g} s" if running else "because the scheduler is not running"
            rep.error = (f"{rep.host}: {len(rep.registered)}/{len(rep.expected)} workers registered {why}. "
                         f"Fix: homecluster logs {rep.host}")


def status(inv: Inventory) -> ClusterReport:
    """What runs where: processes found on each host and the workers the scheduler knows."""
    spec = build(inv, lock.digest(inv))
    reports = _new_reports(inv, spec)
    with Group(inv.hosts.values()) as group:
        probes = group.each(inv.hosts, lambda runner, host: _probe(runner, host, inv))
    _record_failures(reports, probes)
    fingerprints = {(p.host, p.role): p.fingerprint for p in spec.processes}
    for name, res in probes.items():
        for role, st in (res.value or {}).items():
            if st.alive:
                current = fingerprints.get((name, role)) == st.fingerprint
                reports[name].pids[role] = st.pid
                reports[name].actions.append(f"{role} running" + ("" if current else " (outdated: run up)"))
    workers = scheduler_workers(spec.scheduler_address)
    for rep in reports.values():
        rep.registered = [workers[n] for n in rep.expected if workers and n in workers]
        if rep.error is None and len(rep.registered) < len(rep.expected):
            rep.error = (f"{rep.host}: {len(rep.registered)}/{len(rep.expected)} workers registered. "
                         f"Fix: homecluster up; if it fails again, homecluster logs {rep.host}")
    return ClusterReport(spec, reports, scheduler_running=workers is not None)


def down(inv: Inventory) -> dict[str, HostResult[list[str]]]:
    """Stop workers on every host, then schedulers; per host, what was stopped (or why it failed)."""
    def stopper(role: str):
        def act(runner, host: Host) -> list[str]:
            r = runner.run(commands.stop_script(run_dir(inv, host), role))
            if not r.ok:
                raise_host(host, f"stopping the {role}", r)
            return [line.split(" ", 1)[1] for line in r.stdout.splitlines() if line.startswith("hc-stopped ")]
        return act

    with Group(inv.hosts.values()) as group:
        first = group.each(inv.hosts, stopper(WORKER))
        second = group.each(inv.hosts, stopper(SCHEDULER))
    out = {}
    for name in inv.hosts:
        a, b = first[name], second[name]
        error = a.error or b.error
        out[name] = HostResult(name, error=error) if error else HostResult(name, value=a.value + b.value)
    return out


def logs(inv: Inventory, host: str, role: str, lines: int) -> str:
    """The last lines of a role's log on a host."""
    h = inv.select([host])[0]
    with Group([h]) as group:
        res = group.each([host], lambda runner, hh: runner.run(commands.logs_script(run_dir(inv, hh), role, lines)))
    r = res[host]
    if not r.ok:
        raise HostError(r.error)
    if not r.value.ok:
        raise_host(h, f"reading the {role} log", r.value)
    return r.value.stdout
