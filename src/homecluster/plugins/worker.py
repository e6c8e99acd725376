"""Dask plugins that install wheels on workers. They travel to the workers by value (cloudpickle), because
homecluster itself is not installed on the hosts: keep this module to the standard library and distributed.

The wheels travel inside the plugin, so a worker needs no index and no copy of the laptop's wheelhouse, and the
scheduler hands the same plugin to every worker that joins later. Each worker installs into its own interpreter
(`sys.executable`) with uv where the host has it, else pip, from those wheels only, and with every package it
already has pinned as a constraint: an install never up- or downgrades what a worker has unless `upgrade` names
the package. A worker that cannot take packages records why (`error`) instead of raising, so the others install.

`environment_facts` also runs on the hosts over SSH (its source is sent by facts.py), so the laptop plans with
exactly what the plugin will see.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import socket
import subprocess
import tempfile

from distributed.diagnostics.plugin import NannyPlugin, WorkerPlugin

log = logging.getLogger("homecluster.install")


def environment_facts() -> dict:
    """What decides how packages go into this interpreter: its platform, what it has installed, and whether it
    can take more (PEP 668 marker, write access, pip or uv). Standard library only: it also runs over SSH."""
    import importlib.metadata
    import importlib.util
    import os
    import platform
    import shutil
    import sys
    import sysconfig

    paths = sysconfig.get_paths()
    in_venv = sys.prefix != getattr(sys, "base_prefix", sys.prefix)
    marker = os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")
    uv = os.environ.get("HOMECLUSTER_UV") or ""
    if not (uv and os.path.exists(uv)):
        uv = shutil.which("uv", path=paths["scripts"]) or shutil.which("uv") or ""
    dists = {}
    for d in importlib.metadata.distributions():
        name = d.metadata["Name"]
        if name and d.version:
            dists.setdefault(name, d.version)
    purelib = paths["purelib"]
    while not os.path.isdir(purelib):
        purelib = os.path.dirname(purelib)
    return {"executable": sys.executable, "version": platform.python_version(), "system": platform.system(),
            "machine": platform.machine(), "libc": list(platform.libc_ver()), "mac_ver": platform.mac_ver()[0],
            "dists": dists, "externally_managed": os.path.exists(marker) and not in_venv, "marker": marker,
            "purelib": paths["purelib"], "writable": os.access(purelib, os.W_OK),
            "pip": importlib.util.find_spec("pip") is not None, "uv": uv}


def install_problem(facts: dict) -> str | None:
    """Why this interpreter cannot take packages, with the fix; None when it can."""
    py = facts["executable"]
    venv = ("make a virtual environment on the host (python3 -m venv ~/dask-env, then ~/dask-env/bin/pip install "
            "'dask[distributed]' bokeh) and set python: to ~/dask-env/bin/python, or add an environment: section "
            "and run homecluster setup")
    if facts["externally_managed"]:
        return (f"{py} is externally managed (PEP 668, {facts['marker']}): homecluster never installs into it "
                f"with --break-system-packages. Fix: {venv}")
    if not facts["writable"]:
        return f"{facts['purelib']} is read-only for the worker's user. Fix: {venv}"
    if not facts["pip"] and not facts["uv"]:
        return f"{py} has neither pip nor uv. Fix: {py} -m ensurepip --upgrade, or {venv}"
    return None


def install_command(facts: dict, wheel_dir: str, constraints: str, requirements: list[str]) -> list[str]:
    """uv where the host has it, else pip; no index, only the wheels in `wheel_dir`."""
    if facts["uv"]:
        cmd = [facts["uv"], "pip", "install", "--python", facts["executable"]]
    else:
        cmd = [facts["executable"], "-m", "pip", "install", "--disable-pip-version-check"]
    return cmd + ["--no-index", "--find-links", wheel_dir, "--constraint", constraints, *requirements]


def install_wheels(wheels: dict[str, bytes], requirements: list[str], upgrade: tuple[str, ...] = ()) -> None:
    """Install `requirements` from the given wheel files only, keeping every installed package's version except
    those named in `upgrade`. Raises RuntimeError with the installer's last line on failure."""
    facts = environment_facts()
    problem = install_problem(facts)
    if problem:
        raise RuntimeError(problem)
    keep = {_normalize(n): f"{n}=={v}" for n, v in facts["dists"].items()}
    for name in upgrade:
        keep.pop(_normalize(name), None)
    with tempfile.TemporaryDirectory(prefix="homecluster-wheels-") as d:
        for name, data in wheels.items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
        constraints = os.path.join(d, "installed.txt")
        with open(constraints, "w") as f:
            f.write("\n".join(sorted(keep.values())) + "\n")
        p = subprocess.run(install_command(facts, d, constraints, requirements), capture_output=True, text=True,
                           env={**os.environ, "UV_NO_PROGRESS": "1", "PIP_NO_INPUT": "1"})
        if p.returncode != 0:
            last = (p.stderr or p.stdout).strip().splitlines()[-1:]
            raise RuntimeError(f"installing {' '.join(requirements)} on {socket.gethostname()} failed: "
                               f"{' '.join(last)}")
    importlib.invalidate_caches()  # modules installed just now become importable without a restart


def _normalize(name: str) -> str:
    # lock.normalize, which this module cannot import: it runs where homecluster is not installed
    return re.sub(r"[-_.]+", "-", name).lower()


async def _one_install_per_host(server, plugin) -> None:
    # Workers of one host share its environment: install there one at a time (as distributed's InstallPlugin).
    from distributed.semaphore import Semaphore

    async with await Semaphore(max_leases=1, name=f"homecluster-install-{socket.gethostname()}",
                               scheduler_rpc=server.scheduler, loop=server.loop):
        try:
            await server.loop.run_in_executor(None, install_wheels, plugin.wheels, plugin.requirements,
                                              plugin.upgrade)
            plugin.error = None
        except Exception as e:  # noqa: BLE001 - recorded and reported per worker; the others still install
            plugin.error = str(e)
            log.error("homecluster install-pkg: %s", e)


class _Wheels:
    """What both install plugins carry; `error` says why the install did not happen here."""

    idempotent = True

    def __init__(self, name: str, wheels: dict[str, bytes], requirements: list[str], upgrade: tuple[str, ...] = ()):
        self.name, self.wheels, self.requirements, self.upgrade = name, wheels, requirements, tuple(upgrade)
        self.error: str | None = None


class WheelInstall(_Wheels, WorkerPlugin):
    """Install wheels on each worker (and on every worker that joins later)."""

    async def setup(self, worker):  # distributed passes it by this keyword
        await _one_install_per_host(worker, self)


class WheelInstallRestart(_Wheels, NannyPlugin):
    """The same from each nanny, which then restarts its worker (for modules the worker has imported already)."""

    restart = True

    async def setup(self, nanny):  # distributed passes it by this keyword
        await _one_install_per_host(nanny, self)


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


def plugin_error(name: str, dask_worker=None) -> str | None:
    """Run on each worker (or nanny): the error the named install plugin recorded there, if any."""
    plugin = (getattr(dask_worker, "plugins", None) or {}).get(name)
    return getattr(plugin, "error", None)
