"""`down` (stop workers everywhere, then schedulers; each stop takes its host's lock) and `logs`."""

from __future__ import annotations

from typing import Callable

from homecluster.backends import backend_for
from homecluster.backends.base import Progress
from homecluster.core.spec import SCHEDULER, WORKER
from homecluster.errors import HostError
from homecluster.inventory import Host, Inventory
from homecluster.transport import runner_for
from homecluster.transport.group import Group, HostResult


def _stopper(inv: Inventory, role: str, progress: Progress):
    def act(runner, host: Host) -> list[str]:
        stopped = backend_for(inv, host, runner).stop(role, progress)  # under the host's lock
        return [stopped.describe()] if stopped else []
    return act


def down(inv: Inventory, progress: Progress = lambda s: None,
         runners: Callable[[Host], object] = runner_for,
         hosts: list[Host] | None = None) -> dict[str, HostResult[list[str]]]:
    """Stop workers on every host (or on `hosts`), then schedulers; per host, what was stopped (or why it
    failed)."""
    chosen = hosts if hosts is not None else list(inv.hosts.values())
    names = [h.name for h in chosen]
    with Group(chosen, runners) as group:
        first = group.each(names, _stopper(inv, WORKER, progress))
        second = group.each(names, _stopper(inv, SCHEDULER, progress))
    out = {}
    for name in names:
        a, b = first[name], second[name]
        error = a.error or b.error
        out[name] = HostResult(name, error=error) if error else HostResult(name, value=a.value + b.value)
    return out


def logs(inv: Inventory, host: str, role: str, lines: int) -> str:
    """The last lines of a role's log on a host."""
    h = inv.select([host])[0]
    with Group([h]) as group:
        res = group.each([host], lambda runner, hh: backend_for(inv, hh, runner).logs(role, lines))[host]
    if not res.ok:
        raise HostError(res.error)
    return res.value
