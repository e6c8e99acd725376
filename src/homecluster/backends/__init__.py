"""How a Dask process is kept running on a host: one small class per way, behind `base.Backend`.

process.py: supervised POSIX processes (supervisor.py is the supervisor, copied to hosts as text).
systemd.py: systemd units (`supervisor: systemd`). launchd, NSSM and Docker backends plug in here."""

from __future__ import annotations

from homecluster.backends.base import Backend
from homecluster.backends.process import ProcessBackend
from homecluster.core.spec import run_dir
from homecluster.inventory import Host, Inventory


def backend_for(inv: Inventory, host: Host, runner) -> Backend:
    """The backend that keeps `inv`'s processes on `host`, running its scripts through `runner`. `supervisor:
    auto` is homecluster's own supervisor until auto-detection of the host's service manager lands."""
    if host.supervisor == "systemd":
        from homecluster.backends.systemd import SystemdBackend  # the unit renderer loads only for its hosts

        return SystemdBackend(runner, host, inv.cluster.name, run_dir(inv, host))
    return ProcessBackend(runner, host, inv.cluster.name, run_dir(inv, host))
