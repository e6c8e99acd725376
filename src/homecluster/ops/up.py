"""`up`: bring every host to the spec (probe, plan, act under each host's lock), then wait for the workers.

Returns a ClusterReport with one entry per host; nothing here prints (the CLI does)."""

from __future__ import annotations

import threading
from typing import Callable

from homecluster import scheduler
from homecluster.backends import backend_for
from homecluster.backends.docker import cluster_image
from homecluster.backends.base import Backend, ProcessState, Progress, exit_text
from homecluster.backends.process import summarize_log
from homecluster.core.plan import KEEP, RESTART, START, STOP, Step, plan_host, plan_scheduler
from homecluster.core.spec import SCHEDULER, WORKER, ClusterSpec, build
from homecluster.errors import HomeclusterError, HostError
from homecluster.inventory import Host, Inventory
from homecluster.ops.report import ClusterReport, HostReport, Interrupted, new_reports
from homecluster.packages import lock
from homecluster.packages.additions import Additions, given, restore
from homecluster.security.store import CertFiles
from homecluster.transport import runner_for
from homecluster.transport.group import Group, HostResult


def record_failures(reports: dict[str, HostReport], results: dict[str, HostResult]) -> None:
    """Put each failed host's error on its report (unless it has one already)."""
    for name, res in results.items():
        if not res.ok and reports[name].error is None:
            reports[name].error = res.error


def _execute(backend: Backend, steps: list[Step], roles: dict[str, ProcessState], report: HostReport) -> None:
    """Carry out one host's steps: stops first (workers before the scheduler), then starts (scheduler first)."""
    ordered = sorted(steps, key=lambda s: s.role != WORKER)
    for s in ordered:
        if s.action in (STOP, RESTART):
            report.doing = f"stop {s.role}"
            stopped = backend.stop(s.role)
            if stopped and stopped.killed:
                report.actions.append(f"killed {stopped.killed} stuck {s.role} process(es)")
    for s in reversed(ordered):
        report.doing = f"{s.action} {s.role}"
        if s.action in (START, RESTART):
            report.pids[s.role] = backend.start(s.proc)
        elif s.action == KEEP:
            report.pids[s.role] = roles[s.role].pid
        report.actions.append(report.doing)
    report.doing = None


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


def require_boot_service(backend: Backend, host: Host) -> None:
    """For `service install`: fail the host (before anything is done there) unless a service manager keeps its
    processes, so that they start at boot."""
    sup = backend.supervision
    if sup is not None and sup.manager == "process":
        raise HostError(f"{host.name}: nothing would start the cluster at boot here: {sup.why}. Fix: run it where "
                        "systemd (Linux) or launchd (macOS) can be used, see homecluster service status "
                        f"{host.name}; homecluster up runs it without boot-time start")


def _pipeline(inv: Inventory, spec: ClusterSpec, reports: dict[str, HostReport], progress: Progress,
              services: frozenset[str] = frozenset()):
    """Per host, under its lock: probe, plan, act. A host does not wait for the others' probes, only for the one
    fact it needs from the scheduler's host (kept or restarted), so the scheduler starts as early as possible.
    (Only worker hosts wait while holding their lock, and only for the scheduler's host: no lock cycle.)"""
    decision, sched_host = _SchedulerDecision(), spec.scheduler.host

    def host_up(backend: Backend, host: Host, roles: dict[str, ProcessState]) -> list[Step]:
        reports[host.name].states = roles
        first = []
        if host.name == sched_host:
            first = [plan_scheduler(spec, roles[SCHEDULER])]
            decision.set(first[0].action == KEEP)
        kept = decision.wait()
        if kept is None:
            raise HostError(f"{host.name}: not started: the scheduler host {sched_host} failed")
        steps = first + plan_host(spec, host.name, roles, kept)
        _execute(backend, steps, roles, reports[host.name])
        return steps

    def act(runner, host: Host) -> list[Step]:
        try:
            backend = backend_for(inv, host, runner)
            with backend.session("up", progress) as roles:
                if host.name in services:
                    require_boot_service(backend, host)
                return host_up(backend, host, roles)
        finally:
            if host.name == sched_host:
                decision.set(None)  # no-op when already decided; unblocks the others when this host failed
    return act


def _died(report: HostReport, role: str, now: ProcessState) -> bool:
    """Whether a role's process exited since this `up` (a restart by its supervisor counts)."""
    started = f"{START} {role}" in report.actions or f"{RESTART} {role}" in report.actions
    before = 0 if started else (report.states.get(role) or now).restarts
    return not now.healthy or now.restarts > before


def _dead_checker(group: Group, inv: Inventory, spec: ClusterSpec, reports: dict[str, HostReport]):
    """A callback for wait_for_workers: probe the hosts of missing workers (and the scheduler's host); a host
    whose process died gets its log's cause line as the error. A dead scheduler means no worker will come."""
    owner = {n: p.host for p in spec.workers for n in p.worker_names}
    sched = spec.scheduler.host

    def check(missing: set[str]) -> set[str]:
        worker_hosts = {owner[n] for n in missing}
        results = group.each(worker_hosts | {sched}, lambda r, h: backend_for(inv, h, r).probe())
        if results[sched].ok and _died(reports[sched], SCHEDULER, results[sched].value[SCHEDULER]):
            report_death(group, inv, reports[sched], results[sched].value[SCHEDULER])
            return set(missing)
        gone: set[str] = set()
        for name, res in results.items():
            if name in worker_hosts and res.ok and _died(reports[name], WORKER, res.value[WORKER]):
                report_death(group, inv, reports[name], res.value[WORKER])
                gone |= set(reports[name].expected)
        return gone
    return check


def report_death(group: Group, inv: Inventory, report: HostReport, state: ProcessState) -> None:
    """A host's process exited: its error is the cause line of its log (and what its supervisor does now)."""
    name, role = report.host, state.role
    backend = backend_for(inv, inv.hosts[name], group.runners[name])
    notes = ([f"exit {exit_text(state.last_exit)}"] if state.last_exit is not None else []) + \
        (["its supervisor restarts it with back-off"] if state.alive else [])
    how = f" ({'; '.join(notes)})" if notes else ""
    report.error = (f"{name}: the {role} process exited: {summarize_log(backend.logs(role, 80))}{how}. "
                    f"Fix: see homecluster logs {name} --role {role}")


def _all_kept(reports: dict[str, HostReport]) -> bool:
    return all(r.error is None and all(a.startswith(KEEP) for a in r.actions) for r in reports.values())


def _dashboard_here(inv: Inventory, spec: ClusterSpec) -> bool:
    """Whether this machine can open the dashboard's URL itself (a private one is on the scheduler's loopback)."""
    return bool(spec.dashboard_url) and (not spec.dashboard_private or inv.scheduler_host.is_local)


def _wait(group: Group, inv: Inventory, spec: ClusterSpec, reports: dict[str, HostReport], timeout: float,
          progress: Progress) -> tuple[dict[str, scheduler.WorkerInfo], bool]:
    """Wait for the workers of the hosts that did not fail; the registered workers, and whether the scheduler
    runs. A process that died meanwhile is reported on its host with its log's cause line."""
    sched = reports[spec.scheduler.host]
    seen: dict[str, scheduler.WorkerInfo] = {}
    ep = scheduler.endpoint(inv)
    if _all_kept(reports) and spec.dashboard_url:  # a no-op up: a look at the dashboard may be enough
        expected = {n for r in reports.values() for n in r.expected}
        # a private dashboard of another host: through the SSH connection up holds to it anyway
        via = None if _dashboard_here(inv, spec) else getattr(group.runners[sched.host], "connect_to", None)
        seen = scheduler.workers_over_http(spec.dashboard_url, via=via) or {}
        if expected <= set(seen):
            return {n: w for n, w in seen.items() if n in expected}, True
    if SCHEDULER in sched.pids:
        expected = {n for r in reports.values() if r.error is None for n in r.expected}
        seen = scheduler.wait_for_workers(
            ep, expected, timeout,
            lambda n, total, t: progress(f"waiting for workers: {n}/{total} registered ({t:.0f} s)"),
            _dead_checker(group, inv, spec, reports))
    running = bool(seen) or scheduler.workers(ep) is not None
    if not running and SCHEDULER in sched.pids and sched.error is None:
        # the workers may have died first (nothing left to wait for) before the checker saw the scheduler go
        probe = group.each([sched.host], lambda r, h: backend_for(inv, h, r).probe())[sched.host]
        if probe.ok and _died(sched, SCHEDULER, probe.value[SCHEDULER]):
            report_death(group, inv, sched, probe.value[SCHEDULER])
    return seen, running


def up(inv: Inventory, timeout: float = 60.0, progress: Progress = lambda s: None,
       runners: Callable[[Host], object] = runner_for, wait: bool = True,
       services: frozenset[str] = frozenset()) -> ClusterReport:
    """Bring the cluster to the state the inventory describes, and wait for every worker to register.

    `runners` makes the runner of each host (--dry-run passes a recording one, and `wait=False`: then no
    certificate is made either). `services`: hosts that must keep their processes as boot-time services
    (`service install`); one where no service manager can be used fails with the reason, the others go on.
    Ctrl-C raises Interrupted, which says what was started where."""
    spec = build(inv, lock.digest(inv), credentials(inv, make=wait), cluster_image(inv))
    reports = new_reports(inv, spec)
    # The scheduler's host goes first: the others wait for its decision, so it must never queue behind them.
    order = [spec.scheduler.host] + [n for n in inv.hosts if n != spec.scheduler.host]
    try:
        with Group(inv.hosts.values(), runners) as group:
            progress(f"checking and starting on {len(inv.hosts)} host(s)")
            results = group.each(order, _pipeline(inv, spec, reports, progress, services))
            record_failures(reports, results)
            changed = any(s.action != KEEP for r in results.values() if r.ok for s in r.value)
            seen, running = _wait(group, inv, spec, reports, timeout, progress) if wait else ({}, False)
    except KeyboardInterrupt:
        raise Interrupted("up", reports) from None
    if wait:  # (without waiting, nothing can have registered: --dry-run reports only what failed)
        _settle(reports, seen, running, timeout)
    rep = ClusterReport(spec, reports, scheduler_running=running, changed=changed)
    if running and _scheduler_is_new(inv, reports[spec.scheduler.host]):
        _restore(inv, rep, progress)
    return rep


def credentials(inv: Inventory, make: bool = True) -> CertFiles | None:
    """The cluster's certificates, made where missing (the first up, a new worker host) unless `make` is false
    (--dry-run); None without TLS."""
    if not inv.cluster.tls:
        return None
    files = CertFiles(inv.cluster.name)
    if not make or not files.missing(inv):
        return files
    from homecluster.security.certs import CertStore  # cryptography loads only when up may make certificates

    store = CertStore(inv.cluster.name)
    store.ensure(inv)
    return store


def _scheduler_is_new(inv: Inventory, report: HostReport) -> bool:
    """Whether the scheduler may lack what install-pkg and upload recorded: this up started it, or its supervisor
    restarted it since (then, if anything is recorded, the scheduler is asked)."""
    if {f"{START} {SCHEDULER}", f"{RESTART} {SCHEDULER}"} & set(report.actions):
        return True
    state = report.states.get(SCHEDULER)
    if not (state and state.restarts):
        return False
    try:
        recorded = Additions(inv.path)
    except HomeclusterError:
        return True  # _restore reports the broken record
    return not recorded.empty and not _already_given(inv, recorded)


def _already_given(inv: Inventory, recorded: Additions) -> bool:
    from homecluster.api import connect

    try:
        with connect(inv) as client:
            return given(client, recorded)
    except Exception:  # noqa: BLE001 - cannot tell: giving it all again is harmless
        return False


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
    rep.restored, rep.changed = recorded.lines(), True


def _settle(reports: dict[str, HostReport], seen: dict, running: bool, timeout: float) -> None:
    """Attach registered workers to their hosts; say why the missing ones are missing."""
    for rep in reports.values():
        rep.registered = [seen[n] for n in rep.expected if n in seen]
        if rep.error is None and len(rep.registered) < len(rep.expected):
            why = f"within {timeout:g} s" if running else "because the scheduler is not running"
            rep.error = (f"{rep.host}: {len(rep.registered)}/{len(rep.expected)} workers registered {why}. "
                         f"Fix: homecluster logs {rep.host}")
