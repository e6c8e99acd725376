"""`dashboard`: where this machine opens the scheduler's dashboard. A private dashboard listens on the scheduler
host's loopback only; from another machine it is reached through an SSH tunnel (like `ssh -L`), which lasts as
long as the `with` block."""

from __future__ import annotations

import socket
from contextlib import contextmanager
from typing import Iterator

from homecluster.core.spec import LOOPBACK, build
from homecluster.errors import HomeclusterError
from homecluster.inventory import Inventory
from homecluster.transport import runner_for


def needs_tunnel(inv: Inventory) -> bool:
    """Whether this machine reaches the dashboard only through SSH: private, and on another host."""
    return inv.cluster.dashboard == "private" and not inv.scheduler_host.is_local


def free_port(preferred: int) -> int:
    """`preferred` if nothing on this machine's loopback listens on it, else a free port."""
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind((LOOPBACK, port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise HomeclusterError("no free port on this machine's loopback for the dashboard tunnel")


@contextmanager
def dashboard_url(inv: Inventory) -> Iterator[str]:
    """The dashboard's URL as this machine opens it, with the tunnel open while the block runs."""
    url = build(inv).dashboard_url
    if not needs_tunnel(inv):
        yield url
        return
    remote, local = inv.cluster.dashboard_port, free_port(inv.cluster.dashboard_port)
    runner = runner_for(inv.scheduler_host)
    try:
        with runner.tunnel(local, LOOPBACK, remote):
            yield f"http://{LOOPBACK}:{local}/status"
    finally:
        runner.close()
