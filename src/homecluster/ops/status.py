"""`status`: what runs where (each host's processes and their restarts) and the workers the scheduler knows."""

from __future__ import annotations

from homecluster import scheduler
from homecluster.backends import backend_for
from homecluster.backends.docker import cluster_image
from homecluster.backends.base import ProcessState
from homecluster.core.spec import build
from homecluster.errors import HomeclusterError
from homecluster.inventory import Inventory
from homecluster.ops.report import ClusterReport, new_reports
from homecluster.ops.up import record_failures
from homecluster.packages import lock
from homecluster.security.store import CertFiles
from homecluster.transport.group import Group


def describe(state: ProcessState, current: bool) -> str:
    """One process for the status table: running or restarting, its restarts, whether it is outdated."""
    what = f"{state.role} {'running' if state.running is not False else 'restarting'}"
    history = state.describe()
    return what + (f" ({history})" if history else "") + ("" if current else " (outdated: run up)")


def _workers(inv: Inventory) -> dict[str, scheduler.WorkerInfo] | None:
    try:
        return scheduler.workers(scheduler.endpoint(inv))
    except HomeclusterError:  # no client certificate yet: nothing can have registered with this machine's CA
        return None


def status(inv: Inventory) -> ClusterReport:
    """What runs where: processes found on each host and the workers the scheduler knows."""
    spec = build(inv, lock.digest(inv), CertFiles(inv.cluster.name), cluster_image(inv))
    reports = new_reports(inv, spec)
    with Group(inv.hosts.values()) as group:
        probes = group.each(inv.hosts, lambda runner, host: backend_for(inv, host, runner).probe())
    record_failures(reports, probes)
    fingerprints = {(p.host, p.role): p.fingerprint for p in spec.processes}
    for name, res in probes.items():
        for role, st in (res.value or {}).items():
            if st.alive:
                reports[name].pids[role] = st.pid
                reports[name].states[role] = st
                reports[name].actions.append(describe(st, fingerprints.get((name, role)) == st.fingerprint))
    workers = _workers(inv)
    for rep in reports.values():
        rep.registered = [workers[n] for n in rep.expected if workers and n in workers]
        if rep.error is None and len(rep.registered) < len(rep.expected):
            rep.error = (f"{rep.host}: {len(rep.registered)}/{len(rep.expected)} workers registered. "
                         f"Fix: homecluster up; if it fails again, homecluster logs {rep.host}")
    return ClusterReport(spec, reports, scheduler_running=workers is not None)
