"""The cluster spec: an inventory turned into the exact Dask processes to run, as plain printable data.

Pure: no network, no files. `build(inventory)` -> `ClusterSpec`; `commands.py` turns it into shell text.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass

from homecluster import scheduler
from homecluster.inventory import Host, Inventory

SCHEDULER, WORKER = "scheduler", "worker"
RUN_FORMAT = 2  # how processes are run; 2: under homecluster's supervisor. A change restarts them all.


@dataclass(frozen=True)
class ProcessSpec:
    """One long-lived Dask process on one host: its command line, environment and where its files live."""

    host: str
    role: str
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    run_dir: str
    worker_names: tuple[str, ...] = ()
    os: str = "linux"

    @property
    def fingerprint(self) -> str:
        """Changes exactly when the process would have to be restarted to match the inventory."""
        blob = json.dumps([self.argv, self.env, RUN_FORMAT], separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        return {"host": self.host, "role": self.role, "argv": list(self.argv), "env": dict(self.env),
                "run_dir": self.run_dir, "worker_names": list(self.worker_names), "os": self.os,
                "fingerprint": self.fingerprint}


@dataclass(frozen=True)
class ClusterSpec:
    """Everything `up` will start, host by host."""

    name: str
    scheduler_address: str
    dashboard_url: str | None
    processes: tuple[ProcessSpec, ...]

    @property
    def scheduler(self) -> ProcessSpec:
        return next(p for p in self.processes if p.role == SCHEDULER)

    @property
    def workers(self) -> tuple[ProcessSpec, ...]:
        return tuple(p for p in self.processes if p.role == WORKER)

    def for_host(self, host: str) -> tuple[ProcessSpec, ...]:
        return tuple(p for p in self.processes if p.host == host)

    @property
    def expected_workers(self) -> tuple[str, ...]:
        return tuple(n for p in self.workers for n in p.worker_names)

    def to_dict(self) -> dict:
        return {"name": self.name, "scheduler_address": self.scheduler_address,
                "dashboard_url": self.dashboard_url, "processes": [p.to_dict() for p in self.processes]}


def run_dir(inv: Inventory, host: Host) -> str:
    """Per-cluster, per-host directory for pid and log files (hosts may share a home directory)."""
    return f"{host.run_directory.rstrip('/')}/{inv.cluster.name}/{host.name}"


def env_dir(inv: Inventory, host: Host) -> str:
    """Where `homecluster setup` puts a host's managed environment."""
    return f"{run_dir(inv, host)}/env"


def uv_path(host_run_dir: str) -> str:
    """Where `homecluster setup` puts uv on a host (install-pkg's worker plugin finds it through $HOMECLUSTER_UV)."""
    return f"{host_run_dir}/uv/uv"


def managed(inv: Inventory, host: Host) -> bool:
    """Whether the host runs dask from the environment `homecluster setup` manages."""
    return not host.python and inv.environment is not None


def _env(inv: Inventory, host: Host, env_digest: str | None) -> tuple[tuple[str, str], ...]:
    # The environment's digest in the process environment makes the fingerprint change when the inventory's
    # environment: changed, so the next `up` restarts the processes that still run the old packages.
    extra = {"HOMECLUSTER_ENV": env_digest, "HOMECLUSTER_UV": uv_path(run_dir(inv, host))} \
        if env_digest and managed(inv, host) else {}
    return tuple(sorted({**host.env, **extra}.items()))


def interpreter(inv: Inventory, host: Host) -> str:
    """The Python that runs dask on a host: its `python:` key; else the managed environment when the inventory
    has an `environment:` section; else this very interpreter for a local host, or python3 over SSH."""
    if host.python:
        return host.python
    if managed(inv, host):
        return f"{env_dir(inv, host)}/bin/python"
    return sys.executable if host.is_local else "python3"


def worker_names(host: Host) -> tuple[str, ...]:
    """The names dask gives the worker processes of `dask worker --name HOST --nworkers N`."""
    if host.nworkers == 1:
        return (host.name,)
    return tuple(f"{host.name}-{i}" for i in range(host.nworkers))


def scheduler_process(inv: Inventory, env_digest: str | None = None) -> ProcessSpec:
    host, c = inv.scheduler_host, inv.cluster
    argv = [interpreter(inv, host), "-m", "distributed.cli.dask_scheduler",
            "--host", host.address, "--port", str(c.scheduler_port)]
    if c.dashboard_port is None:
        argv.append("--no-dashboard")
    else:
        argv += ["--dashboard-address", f"{host.address}:{c.dashboard_port}"]
    return ProcessSpec(host.name, SCHEDULER, tuple(argv), _env(inv, host, env_digest), run_dir(inv, host),
                       os=host.os)


def worker_process(inv: Inventory, host: Host, scheduler_address: str, env_digest: str | None = None) -> ProcessSpec:
    c, rdir = inv.cluster, run_dir(inv, host)
    argv = [interpreter(inv, host), "-m", "distributed.cli.dask_worker", scheduler_address,
            "--name", host.name, "--nworkers", str(host.nworkers)]
    if host.nthreads:
        argv += ["--nthreads", str(host.nthreads)]
    argv += ["--memory-limit", host.memory_limit, "--death-timeout", f"{host.death_timeout:g}",
             "--local-directory", host.local_directory or f"{rdir}/work", "--host", host.address,
             # A worker dashboard would listen on a random port: keep to the port plan.
             "--no-dashboard"]
    if c.worker_ports:
        argv += ["--worker-port", str(c.worker_ports)]
    if c.nanny_ports:
        argv += ["--nanny-port", str(c.nanny_ports)]
    if host.resources:
        argv += ["--resources", " ".join(f"{k}={v:g}" for k, v in host.resources.items())]
    return ProcessSpec(host.name, WORKER, tuple(argv), _env(inv, host, env_digest), rdir,
                       worker_names(host), os=host.os)


def build(inv: Inventory, env_digest: str | None = None) -> ClusterSpec:
    """The cluster spec for an inventory: the scheduler first, then one `dask worker` per host with workers.

    `env_digest` identifies the managed environments' lock (see lock.digest); None when there is none."""
    sched = inv.scheduler_host
    address = scheduler.address(sched.address, inv.cluster.scheduler_port)
    dashboard = (f"http://{sched.address}:{inv.cluster.dashboard_port}/status"
                 if inv.cluster.dashboard_port is not None else None)
    procs = [scheduler_process(inv, env_digest)]
    procs += [worker_process(inv, h, address, env_digest) for h in inv.hosts.values() if h.nworkers > 0]
    return ClusterSpec(inv.cluster.name, address, dashboard, tuple(procs))
