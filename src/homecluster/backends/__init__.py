"""How a Dask process is kept running on a host: one small class per way, behind `base.Backend`.

process.py: supervised POSIX processes (supervisor.py is the supervisor, copied to hosts as text).
service.py: what the service-manager backends share; systemd.py (Linux) and launchd.py (macOS) are two.
auto.py: `supervisor: auto`, the service manager where it can be used on the host, else the process backend.
nssm.py: Windows hosts, PowerShell over Windows' OpenSSH, NSSM services.
docker.py: `backend: docker`, containers of the cluster's image on the host's Docker engine."""

from __future__ import annotations

from homecluster.backends.base import Backend
from homecluster.backends.process import ProcessBackend
from homecluster.core.spec import run_dir
from homecluster.inventory import Host, Inventory


def service_backend(inv: Inventory, host: Host, runner):
    """The backend of the host OS's service manager (systemd on Linux, launchd on macOS)."""
    if host.os == "macos":
        from homecluster.backends.launchd import LaunchdBackend as cls
    else:
        from homecluster.backends.systemd import SystemdBackend as cls  # the unit renderer loads only when needed
    return cls(runner, host, inv.cluster.name, run_dir(inv, host))


def backend_for(inv: Inventory, host: Host, runner) -> Backend:
    """The backend that keeps `inv`'s processes on `host` (its `supervisor:` key), running its scripts through
    `runner`."""
    if host.backend == "docker":
        from homecluster.backends.docker import DockerBackend, image_for

        return DockerBackend(runner, host, inv.cluster.name, run_dir(inv, host), image_for(inv, host))
    if host.os == "windows":  # PowerShell, not sh: NSSM is the only way there (supervisor: auto or nssm)
        from homecluster.backends.nssm import NssmBackend

        return NssmBackend(runner, host, inv.cluster.name, run_dir(inv, host))
    if host.supervisor == "process":
        return ProcessBackend(runner, host, inv.cluster.name, run_dir(inv, host))
    if host.supervisor in ("systemd", "launchd"):
        return service_backend(inv, host, runner)
    from homecluster.backends.auto import AutoBackend

    return AutoBackend(runner, host, inv.cluster.name, run_dir(inv, host), service_backend(inv, host, runner))
