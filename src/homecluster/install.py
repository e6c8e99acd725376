"""`homecluster install-pkg`: install packages on every worker of the running cluster, offline.

The packages are resolved on the laptop against the environment's lock (an unknown package or a conflict
fails here, before the cluster is touched), their new wheels come from the laptop's wheelhouse (downloaded
once), and they travel to the workers inside a Dask worker plugin, which the scheduler also hands to every
worker that joins later. On success they are added to the lock, so the next `setup` keeps them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

import cloudpickle

from . import worker_plugins
from .api import connect
from .environment import _requirement
from .errors import HomeclusterError, InventoryError, LockError
from .inventory import Inventory
from .lock import LockFile, pin, requirement_name, resolve
from .provision import Setup, uv_binary
from .spec import build
from .wheelhouse import Wheelhouse

Progress = Callable[[str], None]


@dataclass(frozen=True)
class WorkerInstall:
    """One worker's outcome: the installed version of each requested package (None = missing)."""

    worker: str
    host: str
    versions: dict[str, str | None]
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and all(self.versions.values())


def parse_requirements(packages: list[str]) -> list[str]:
    """Validate the command line's requirements; a bad one is a usage error naming it."""
    def fail(keypath, problem, fix):
        return InventoryError("install-pkg", None, "", problem, fix)
    return [_requirement(p, ("install-pkg",), fail) for p in packages]


def plan(inv: Inventory, packages: list[str], progress: Progress) -> tuple[dict, list[str], dict[str, bytes]]:
    """Resolve the environment plus `packages` for every host platform; return the new locks per target,
    the exact requirements to install, and the wheels they need (filename -> bytes)."""
    setup = Setup(inv, progress)
    targets, failed = setup.targets([h for h in inv.hosts.values() if not h.python])
    if failed:
        raise HomeclusterError("; ".join(r.error for r in failed.values()))
    env = setup.lockfile.effective(inv.environment)
    wanted = setup.lockfile.effective(inv.environment, replacing=tuple(packages))
    locks, new, wheels = {}, [], {}
    names = _names(packages)
    for t in {t.key: t for t in targets.values()}.values():
        progress(f"resolving {' '.join(packages)} for {t.key}")
        try:
            locked = resolve(wanted, t, uv_binary())
        except LockError as e:
            e.where = "install-pkg"
            raise
        old = set(setup.lockfile.get(env, t, uv_binary()).requirements)
        adds = [r for r in locked.requirements if r not in old or pin(r)[0] in names]
        house = Wheelhouse(t)
        house.fill(adds, env)
        wheels.update({p.name: p.read_bytes() for p in house.files_for(adds)})
        locks[t.key] = (t, locked)
        new += [r for r in adds if r not in new]
    return locks, new, wheels


def install(inv: Inventory, packages: list[str], restart: bool = False,
            progress: Progress = lambda s: None) -> list[WorkerInstall]:
    """Install packages on every worker of the running cluster; a result per worker."""
    if inv.environment is None:
        raise HomeclusterError(f"{inv.path}: install-pkg needs an environment: section (managed environments). "
                               'Fix: add environment: {python: "3.11"}, then homecluster setup')
    packages = parse_requirements(packages)
    locks, requirements, wheels = plan(inv, packages, progress)
    cloudpickle.register_pickle_by_value(worker_plugins)  # homecluster is not installed on the workers
    name = "homecluster-install-" + hashlib.sha256("\n".join(requirements).encode()).hexdigest()[:10]
    cls = worker_plugins.WheelInstallRestart if restart else worker_plugins.WheelInstall
    with connect(inv) as client:
        progress(f"installing {len(requirements)} package(s) on {len(client.scheduler_info()['workers'])} workers")
        error = _register(client, cls(name, wheels, requirements))
        results = _report(client, inv, sorted(_names(packages)), error)
    if all(r.ok for r in results):
        _remember(inv, packages, locks)
    return results


def _remember(inv: Inventory, packages: list[str], locks: dict) -> None:
    """Add the packages to the lock, so that the next setup installs them too."""
    lockfile = LockFile(inv.path)
    lockfile.add(packages)
    env = lockfile.effective(inv.environment)
    for target, locked in locks.values():
        lockfile.put(env, target, locked)


def _names(packages: list[str]) -> set[str]:
    return {requirement_name(p) for p in packages}


def _register(client, plugin) -> str | None:
    """Register the plugin; on failure take it back (no worker keeps retrying it) and return the error."""
    try:
        client.register_plugin(plugin, name=plugin.name)
        return None
    except Exception as e:  # noqa: BLE001 - a failed install is reported per worker, the cluster keeps running
        for unregister in (client.unregister_worker_plugin,):
            try:
                unregister(plugin.name, nanny=isinstance(plugin, worker_plugins.WheelInstallRestart))
            except Exception:  # noqa: BLE001 - it may not have been registered at all
                pass
        return f"{type(e).__name__}: {e}"


def _report(client, inv: Inventory, names: list[str], error: str | None) -> list[WorkerInstall]:
    owner = {n: p.host for p in build(inv).workers for n in p.worker_names}
    workers = client.scheduler_info()["workers"]
    versions = client.run(worker_plugins.installed_versions, names)
    out = []
    for addr, info in sorted(workers.items(), key=lambda kv: str(kv[1].get("name"))):
        name = str(info.get("name", addr))
        got = versions.get(addr, {n: None for n in names})
        missing = any(v is None for v in got.values())
        out.append(WorkerInstall(name, owner.get(name, info.get("host", "?")), got, error if missing else None))
    return out
