"""Dask plugins that install wheels on workers. They travel to the workers by value (cloudpickle), because
homecluster itself is not installed on the hosts: keep this module to the standard library and distributed.

The wheels travel inside the plugin, so a worker needs no index and no copy of the laptop's wheelhouse, and the
scheduler hands the same plugin to every worker that joins later.
"""

from __future__ import annotations

import importlib
import os
import socket
import subprocess
import sys
import tempfile

from distributed.diagnostics.plugin import NannyPlugin, WorkerPlugin


def install_wheels(wheels: dict[str, bytes], requirements: list[str]) -> None:
    """Install `requirements` from the given wheel files only (no index), with the host's uv or pip."""
    with tempfile.TemporaryDirectory(prefix="homecluster-wheels-") as d:
        for name, data in wheels.items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
        uv = os.environ.get("HOMECLUSTER_UV")
        if uv and os.path.exists(uv):
            cmd = [uv, "pip", "install", "--python", sys.executable]
        else:
            cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check"]
        p = subprocess.run(cmd + ["--no-index", "--find-links", d, *requirements], capture_output=True, text=True,
                           env={**os.environ, "UV_NO_PROGRESS": "1"})
        if p.returncode != 0:
            raise RuntimeError(f"installing {' '.join(requirements)} on {socket.gethostname()} failed: "
                               f"{(p.stderr or p.stdout).strip().splitlines()[-1:]}")
    importlib.invalidate_caches()  # modules installed just now become importable without a restart


async def _one_install_per_host(server, wheels: dict[str, bytes], requirements: list[str]) -> None:
    # Workers of one host share its environment: install there one at a time (as distributed's InstallPlugin).
    from distributed.semaphore import Semaphore

    async with await Semaphore(max_leases=1, name=f"homecluster-install-{socket.gethostname()}",
                               scheduler_rpc=server.scheduler, loop=server.loop):
        await server.loop.run_in_executor(None, install_wheels, wheels, requirements)


class WheelInstall(WorkerPlugin):
    """Install wheels on each worker (and on every worker that joins later)."""

    idempotent = True

    def __init__(self, name: str, wheels: dict[str, bytes], requirements: list[str]):
        self.name, self.wheels, self.requirements = name, wheels, requirements

    async def setup(self, worker):
        await _one_install_per_host(worker, self.wheels, self.requirements)


class WheelInstallRestart(NannyPlugin):
    """The same from each nanny, which then restarts its worker (for modules the worker has imported already)."""

    idempotent = True
    restart = True

    def __init__(self, name: str, wheels: dict[str, bytes], requirements: list[str]):
        self.name, self.wheels, self.requirements = name, wheels, requirements

    async def setup(self, nanny):
        await _one_install_per_host(nanny, self.wheels, self.requirements)


def installed_versions(names: list[str]) -> dict[str, str | None]:
    """Run on each worker: the installed version of each package, or None."""
    from importlib.metadata import PackageNotFoundError, version

    importlib.invalidate_caches()
    out = {}
    for n in names:
        try:
            out[n] = version(n)
        except PackageNotFoundError:
            out[n] = None
    return out
