"""The plan for `up`: compare what runs on each host with the spec and keep, start, restart or stop. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from .commands import ProcessState
from .spec import SCHEDULER, WORKER, ClusterSpec, ProcessSpec

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


def plan_up(spec: ClusterSpec, states: dict[str, dict[str, ProcessState]]) -> list[Step]:
    """Steps for every probed host (hosts that could not be probed are absent from `states`).

    A restarted scheduler restarts every worker: they would lose it and exit (dask workers do not reconnect).
    """
    sched = spec.scheduler
    steps: list[Step] = []
    sched_state = states.get(sched.host, {}).get(SCHEDULER)
    sched_kept = _is_current(sched_state, sched)
    if sched.host in states:
        steps.append(Step(sched.host, SCHEDULER, KEEP, sched, "running, unchanged") if sched_kept
                     else _for(sched, sched_state, "inventory changed"))
    for host, roles in states.items():
        if host != sched.host and _alive(roles.get(SCHEDULER)):
            steps.append(Step(host, SCHEDULER, STOP, reason=f"the scheduler is on {sched.host} now"))
    workers = {p.host: p for p in spec.workers}
    for host, roles in states.items():
        state, proc = roles.get(WORKER), workers.get(host)
        if proc is None:
            if _alive(state):
                steps.append(Step(host, WORKER, STOP, reason="no workers on this host now"))
        elif sched_kept and _is_current(state, proc):
            steps.append(Step(host, WORKER, KEEP, proc, "running, unchanged"))
        else:
            steps.append(_for(proc, state, "scheduler restarted" if not sched_kept else "inventory changed"))
    return steps


def plan_changes(steps: list[Step]) -> bool:
    """Whether the plan does anything at all."""
    return any(s.action != KEEP for s in steps)
