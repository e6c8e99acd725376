"""The plan for `up`: compare what runs on each host with the spec and keep, start, restart or stop. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from homecluster.backends.process import ProcessState
from homecluster.core.spec import SCHEDULER, WORKER, ClusterSpec, ProcessSpec

KEEP, START, RESTART, STOP = "keep", "start", "restart", "stop"


@dataclass(frozen=True)
class Step:
    """One thing `up` does (or deliberately does not do) to one role on one host."""

    host: str
    role: str
    action: str
    proc: ProcessSpec | None = None
    reason: str = ""


def _is_current(state: ProcessState | None, proc: ProcessSpec) -> bool:
    return bool(state and state.alive and state.fingerprint == proc.fingerprint)


def _alive(state: ProcessState | None) -> bool:
    return bool(state and state.alive)


def _for(proc: ProcessSpec, state: ProcessState | None, changed_reason: str) -> Step:
    if _alive(state):
        return Step(proc.host, proc.role, RESTART, proc, changed_reason)
    return Step(proc.host, proc.role, START, proc, "not running")


def plan_scheduler(spec: ClusterSpec, state: ProcessState | None) -> Step:
    """Keep the scheduler if it runs as specified, else (re)start it."""
    sched = spec.scheduler
    if _is_current(state, sched):
        return Step(sched.host, SCHEDULER, KEEP, sched, "running, unchanged")
    return _for(sched, state, "inventory changed")


def plan_host(spec: ClusterSpec, host: str, roles: dict[str, ProcessState], scheduler_kept: bool) -> list[Step]:
    """The steps for one host other than starting the scheduler: a stray scheduler, and its workers.

    A restarted scheduler restarts every worker: they would lose it and exit (dask workers do not reconnect).
    """
    steps = []
    if host != spec.scheduler.host and _alive(roles.get(SCHEDULER)):
        steps.append(Step(host, SCHEDULER, STOP, reason=f"the scheduler is on {spec.scheduler.host} now"))
    state, proc = roles.get(WORKER), next((p for p in spec.workers if p.host == host), None)
    if proc is None:
        if _alive(state):
            steps.append(Step(host, WORKER, STOP, reason="no workers on this host now"))
    elif scheduler_kept and _is_current(state, proc):
        steps.append(Step(host, WORKER, KEEP, proc, "running, unchanged"))
    else:
        steps.append(_for(proc, state, "scheduler restarted" if not scheduler_kept else "inventory changed"))
    return steps


def plan_up(spec: ClusterSpec, states: dict[str, dict[str, ProcessState]]) -> list[Step]:
    """All steps for the probed hosts (hosts that could not be probed are absent from `states`)."""
    sched_host = spec.scheduler.host
    if sched_host not in states:
        return []
    first = plan_scheduler(spec, states[sched_host].get(SCHEDULER))
    kept = first.action == KEEP
    return [first] + [s for host, roles in states.items() for s in plan_host(spec, host, roles, kept)]


def plan_changes(steps: list[Step]) -> bool:
    """Whether the plan does anything at all."""
    return any(s.action != KEEP for s in steps)
