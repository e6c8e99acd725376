"""`homecluster install-pkg`: install packages on every worker of the running cluster, offline.

Planned here before the cluster is touched, per host: its interpreter's platform and what it has installed
(over SSH: the managed environment, or the host's own `python:`), resolved with uv for that platform keeping
every installed version (`prefer`). A request that would up- or downgrade an installed package is refused with
the list of changes unless `upgrade` allows them; an unknown package or a conflict fails here too. The new wheels
come from the laptop's wheelhouse (downloaded once) and travel inside a Dask worker plugin, which the scheduler
also hands to every worker that joins later. Each worker installs into its own interpreter; one that cannot
take packages (PEP 668, read-only, no pip) gets a FAILED row and the others install. What was installed is
recorded (additions.py; and in the lock for managed environments), so `up` and `setup` give it again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Callable

import cloudpickle

from homecluster.packages import facts as hostfacts
from homecluster.plugins import worker as worker_plugins
from homecluster.packages.additions import Additions
from homecluster.api import cluster_client
from homecluster.inventory.environment import _requirement
from homecluster.errors import HomeclusterError, HostError, InventoryError, LockError
from homecluster.packages.facts import Target
from homecluster.transport.group import Group, HostResult
from homecluster.inventory import Host, Inventory
from homecluster.packages.lock import Change, Locked, LockFile, compare, compile_for, dist_versions, pin, requirement_name, resolve
from homecluster import scheduler
from homecluster.ops.setup import find_python, scripts_for, uv_binary
from homecluster.core.spec import build, interpreter, managed
from homecluster.packages.wheelhouse import Wheelhouse

Progress = Callable[[str], None]


class ChangesRefused(LockError):
    """The request would change installed packages and --upgrade was not given: bad input, nothing touched."""

    where = "install-pkg"


@dataclass(frozen=True)
class HostPlan:
    """One host's interpreter: its target, what it has, and what the request adds or changes there."""

    host: str
    target: Target
    installed: dict[str, str]
    adds: tuple[str, ...] = ()
    changes: tuple[Change, ...] = ()
    problem: str | None = None  # why this interpreter cannot take packages, with the fix
    resolved: Locked | None = None
    is_managed: bool = False

    @property
    def lock(self) -> Locked | None:
        """The managed environment's new lock (None for a host's own Python)."""
        return self.resolved if self.is_managed else None

    @property
    def closure(self) -> tuple[str, ...]:
        """What a fresh interpreter on this target needs for the request: a managed environment gets the
        lock's new pins; a host's own Python everything the request resolved to."""
        return self.adds if self.is_managed else self.resolved.requirements


@dataclass
class InstallPlan:
    """What every worker gets: the requirements, the packages allowed to change, and the wheels they need."""

    requested: list[str]
    upgrade: bool
    hosts: dict[str, HostResult[HostPlan]]
    wheels: dict[str, bytes] = field(default_factory=dict)
    wheel_pins: dict[str, list[str]] = field(default_factory=dict)

    def good(self) -> list[HostPlan]:
        return [r.value for r in self.hosts.values() if r.ok and not r.value.problem]

    def changes(self) -> dict[Change, list[str]]:
        out: dict[Change, list[str]] = {}
        for h in self.good():
            for c in h.changes:
                out.setdefault(c, []).append(h.host)
        return out

    @property
    def upgraded(self) -> tuple[str, ...]:
        return tuple(sorted({c.name for c in self.changes()})) if self.upgrade else ()

    @property
    def requirements(self) -> list[str]:
        """What each worker is asked to install: the request, plus the allowed changes pinned."""
        changed = {f"{c.name}=={c.new}" for c in self.changes()} if self.upgrade else set()
        return list(self.requested) + sorted(changed - set(self.requested))

    def pinned(self) -> list[str]:
        """The requested packages at the versions they resolved to (for the record)."""
        names = {requirement_name(r) for r in self.requested}
        out: dict[str, str] = {}
        for h in self.good():
            for line in h.resolved.requirements:
                if pin(line)[0] in names:
                    out.setdefault(pin(line)[0], line)
        return [out.get(requirement_name(r), r) for r in self.requested]


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


@dataclass
class InstallReport:
    """A row per worker, plus the hosts that could not be checked."""

    workers: list[WorkerInstall]
    host_errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.workers) and all(w.ok for w in self.workers) and not self.host_errors


def parse_requirements(packages: list[str]) -> list[str]:
    """Validate the command line's requirements; a bad one is a usage error naming it."""
    def fail(keypath, problem, fix):
        return InventoryError("install-pkg", None, "", problem, fix)
    return [_requirement(p, ("install-pkg",), fail) for p in packages]


def probe(inv: Inventory, progress: Progress) -> dict[str, HostResult[HostPlan]]:
    """Every host's interpreter, over SSH in parallel: target, installed packages, and whether it can install."""
    progress(f"checking the Python of {len(inv.hosts)} host(s)")
    with Group(inv.hosts.values()) as group:
        return group.each(inv.hosts, lambda runner, host: _probe_host(runner, inv, host))


def _probe_host(runner, inv: Inventory, host: Host) -> HostPlan:
    if managed(inv, host):
        f = find_python(runner, inv, host, inv.environment.python)
        problem = None if f.env_python else (f"{host.name} has no managed environment yet. "
                                             f"Fix: homecluster setup {host.name}")
        return HostPlan(host.name, hostfacts.target_of(f, inv.environment.python), dist_versions(f.env_dists),
                        problem=problem, is_managed=True)
    python = interpreter(inv, host)
    r = runner.run(scripts_for(host).interpreter(python))  # sh, or PowerShell on Windows
    env = hostfacts.parse_interpreter(r.stdout)
    if env is None:
        raise HostError(f"{host.name}: python {python} did not run (exit {r.exit_code}: {r.tail(2)}). "
                        "Fix: set python: to the interpreter that runs dask on that host")
    try:
        target = hostfacts.interpreter_target(env)
    except hostfacts.UnsupportedPlatform as e:
        raise HostError(f"{host.name}: {e}") from None
    problem = worker_plugins.install_problem(env)
    return HostPlan(host.name, target, env["dists"], problem=f"{host.name}: {problem}" if problem else None)


def plan(inv: Inventory, packages: list[str], upgrade: bool = False,
         progress: Progress = lambda s: None) -> InstallPlan:
    """Resolve the request for every host, fill the wheelhouse; raises LockError (nothing touched) for an
    unknown package or a conflict, and ChangesRefused for changes without `upgrade`."""
    probed = probe(inv, progress)
    resolver = _Resolver(inv, packages, progress)
    hosts = {n: HostResult(n, value=resolver.plan(r.value)) if r.ok and not r.value.problem else r
             for n, r in probed.items()}
    out = InstallPlan(packages, upgrade, hosts)
    if not out.good():
        raise HomeclusterError("no host can take packages: " + "; ".join(
            r.error or r.value.problem for r in hosts.values()))
    if out.changes() and not upgrade:
        raise ChangesRefused(_refusal(packages, out.changes()))
    _fill(inv, out, progress)
    return out


def _refusal(packages: list[str], changes: dict[Change, list[str]]) -> str:
    listed = "; ".join(f"{c} (on {', '.join(h)})" for c, h in sorted(changes.items(), key=lambda kv: kv[0].name))
    return (f"installing {' '.join(packages)} would change packages the workers already have: {listed}. "
            "Fix: add --upgrade to make these changes, or ask for versions that fit what is installed")


class _Resolver:
    """uv once per distinct (target, installed packages): hosts set up alike share one resolution."""

    def __init__(self, inv: Inventory, packages: list[str], progress: Progress):
        self.inv, self.packages, self.progress = inv, packages, progress
        self.cache: dict[tuple, Locked] = {}
        self.lockfile = LockFile(inv.path) if inv.environment else None

    def plan(self, h: HostPlan) -> HostPlan:
        key = (h.target.key, h.is_managed, tuple(sorted(h.installed.items())))
        if key not in self.cache:
            self.progress(f"resolving {' '.join(self.packages)} for {h.target.key}")
            self.cache[key] = self._managed(h) if h.is_managed else self._own(h)
        adds, changes = compare(h.installed, self.cache[key])
        return replace(h, adds=tuple(adds), changes=tuple(changes), resolved=self.cache[key])

    def _own(self, h: HostPlan) -> Locked:
        env = self.inv.environment
        prefer = tuple(f"{n}=={v}" for n, v in sorted(h.installed.items()))
        return self._located(lambda: compile_for(h.target, self.packages, [], uv_binary(), prefer,
                                                 env.index_url if env else None,
                                                 env.extra_index_urls if env else ()))

    def _managed(self, h: HostPlan) -> Locked:
        env = self.lockfile.effective(self.inv.environment)
        wanted = self.lockfile.effective(self.inv.environment, replacing=tuple(self.packages))
        old = self.lockfile.get(env, h.target, uv_binary())
        return self._located(lambda: resolve(wanted, h.target, uv_binary(), prefer=old.requirements))

    @staticmethod
    def _located(run: Callable[[], Locked]) -> Locked:
        try:
            return run()
        except LockError as e:
            e.where = "install-pkg"
            raise


def _fill(inv: Inventory, out: InstallPlan, progress: Progress) -> None:
    """Into the plan: the wheels the hosts lack (they travel in the plugin), and the pins a fresh interpreter
    needs (recorded, for `up`); every one of them in the wheelhouse (downloaded once)."""
    targets: dict[str, tuple[Target, list[str], list[str]]] = {}
    for h in out.good():
        t, adds, closure = targets.setdefault(h.target.key, (h.target, [], []))
        adds += [p for p in h.adds if p not in adds]
        closure += [p for p in h.closure if p not in closure]
    for key, (t, adds, closure) in sorted(targets.items()):
        house = Wheelhouse(t)
        if house.missing(closure):
            progress(f"downloading {len(house.missing(closure))} wheel(s) for {key}")
        house.fill(closure, inv.environment)
        out.wheels.update({p.name: p.read_bytes() for p in house.files_for(adds)})
        out.wheel_pins[key] = closure


def install(inv: Inventory, packages: list[str], restart: bool = False, upgrade: bool = False,
            progress: Progress = lambda s: None) -> InstallReport:
    """Install packages on every worker of the running cluster (and on late joiners); a row per worker."""
    packages = parse_requirements(packages)
    ep = scheduler.endpoint(inv)
    if scheduler.workers(ep) is None:
        raise HomeclusterError(f"no scheduler answers at {ep.address}. Fix: homecluster up")
    p = plan(inv, packages, upgrade, progress)
    cloudpickle.register_pickle_by_value(worker_plugins)  # homecluster is not installed on the workers
    digest = hashlib.sha256("\n".join(p.requirements + list(p.upgraded) + sorted(p.wheels)).encode()).hexdigest()
    cls = worker_plugins.WheelInstallRestart if restart else worker_plugins.WheelInstall
    plugin = cls("homecluster-install-" + digest[:10], p.wheels, p.requirements, p.upgraded)
    with cluster_client(inv) as client:
        progress(f"installing on {len(client.scheduler_info()['workers'])} workers")
        client.register_plugin(plugin, name=plugin.name)
        rows = _rows(client, inv, plugin, sorted({requirement_name(r) for r in packages}))
        if rows and not any(r.ok for r in rows):  # nobody took it: no late joiner should try it either
            client.unregister_worker_plugin(plugin.name, nanny=restart)
    worker_hosts = {w.host for w in rows}
    report = InstallReport(rows, [r.error for n, r in p.hosts.items()
                                  if not r.ok and inv.hosts[n].nworkers and n not in worker_hosts])
    if any(r.ok for r in rows):
        _remember(inv, p)
    return report


def _remember(inv: Inventory, p: InstallPlan) -> None:
    """Record the packages for `up` (late joiners after a new scheduler) and, for managed environments, in
    the lock, so that the next setup installs them too."""
    Additions(inv.path).add_packages(p.pinned(), p.wheel_pins)
    if inv.environment is None:
        return
    lockfile = LockFile(inv.path)
    lockfile.add(p.requested)
    env = lockfile.effective(inv.environment)
    for h in p.good():
        if h.lock is not None:
            lockfile.put(env, h.target, h.lock)


def _rows(client, inv: Inventory, plugin, names: list[str]) -> list[WorkerInstall]:
    """A row per worker: the versions it has now, and the error its plugin recorded."""
    owner = {n: p.host for p in build(inv).workers for n in p.worker_names}
    workers = client.scheduler_info()["workers"]
    versions = client.run(worker_plugins.installed_versions, names)
    nanny = isinstance(plugin, worker_plugins.WheelInstallRestart)
    errors = client.run(worker_plugins.plugin_error, plugin.name, nanny=nanny)
    out = []
    for addr, info in sorted(workers.items(), key=lambda kv: str(kv[1].get("name"))):
        name = str(info.get("name", addr))
        host = owner.get(name, info.get("host", "?"))
        got = versions.get(addr, {n: None for n in names})
        error = errors.get(info.get("nanny") if nanny else addr)
        if error is None and any(v is None for v in got.values()):
            error = "the packages are not importable after the install. Fix: homecluster logs " + host
        out.append(WorkerInstall(name, host, got, f"{host}: {error}" if error else None))
    return out
