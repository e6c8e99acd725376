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


def _image_remover(inv: Inventory):
    def act(runner, host: Host) -> list[str]:
        removed = backend_for(inv, host, runner).remove_image()
        return [f"image {removed}"] if removed else []
    return act


def down(inv: Inventory, progress: Progress = lambda s: None,
         runners: Callable[[Host], object] = runner_for,
         hosts: list[Host] | None = None, images: bool = False) -> dict[str, HostResult[list[str]]]:
    """Stop workers on every host (or on `hosts`), then schedulers; per host, what was stopped (or why it
    failed). `images`: then remove the cluster's image from its docker hosts too."""
    chosen = hosts if hosts is not None else list(inv.hosts.values())
    names = [h.name for h in chosen]
    docker = [h.name for h in chosen if h.backend == "docker"] if images else []
    with Group(chosen, runners) as group:
        phases = [group.each(names, _stopper(inv, WORKER, progress)),
                  group.each(names, _stopper(inv, SCHEDULER, progress))]
        if docker:
            phases.append(group.each(docker, _image_remover(inv)))
    out = {}
    for name in names:
        results = [ph[name] for ph in phases if name in ph]
        error = next((r.error for r in results if r.error), None)
        out[name] = HostResult(name, error=error) if error else \
            HostResult(name, value=[x for r in results for x in r.value])
    return out


def logs(inv: Inventory, host: str, role: str, lines: int) -> str:
    """The last lines of a role's log on a host."""
    h = inv.select([host])[0]
    with Group([h]) as group:
        res = group.each([host], lambda runner, hh: backend_for(inv, hh, runner).logs(role, lines))[host]
    if not res.ok:
        raise HostError(res.error)
    return res.value
