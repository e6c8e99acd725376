"""`image push [HOST...]`: bring the cluster's image to its docker hosts now (what `up` does before it starts a
container), hosts in parallel; a host that has the exact image id gets nothing."""

from __future__ import annotations

from typing import Callable

from homecluster.backends import backend_for
from homecluster.backends.base import Progress
from homecluster.core.spec import build
from homecluster.backends.docker import cluster_image
from homecluster.errors import HostError
from homecluster.inventory import Host, Inventory
from homecluster.transport import runner_for
from homecluster.transport.group import Group, HostResult


def push(inv: Inventory, hosts: list[Host], progress: Progress = lambda s: None,
         runners: Callable[[Host], object] = runner_for) -> dict[str, HostResult[str]]:
    """Per docker host: `shipped` or `had it` (or why it failed)."""
    spec = build(inv, image=cluster_image(inv))

    def one(runner, host: Host) -> str:
        if host.backend != "docker":
            raise HostError(f"{host.name}: not a docker host (backend: {host.backend}): it runs no image")
        backend = backend_for(inv, host, runner)
        procs = spec.for_host(host.name)
        if not procs:
            return "runs no process of the cluster: nothing to ship"
        with backend.session("image push", progress):
            backend.ensure_image(procs[0])
            return f"shipped {procs[0].image[:19]}" if backend.shipped else f"has {procs[0].image[:19]} already"

    with Group(hosts, runners) as group:
        return group.each([h.name for h in hosts], one)
