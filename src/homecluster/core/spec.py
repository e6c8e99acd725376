"""The cluster spec: an inventory turned into the exact Dask processes to run, as plain printable data.

Pure: no network, no files. `build(inventory)` -> `ClusterSpec`; `commands.py` turns it into shell text.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from homecluster.inventory import Host, Inventory

SCHEDULER, WORKER = "scheduler", "worker"
RUN_FORMAT = 2  # how processes are run; 2: under homecluster's supervisor. A change restarts them all.
TLS_DIR = "tls"  # in a host's run directory: ca.pem, <role>.pem, <role>.key
LOOPBACK = "127.0.0.1"
IMAGE_PYTHON = "/opt/homecluster/bin/python"  # inside the image docker/Dockerfile makes: the venv dask lives in
UNBUILT = "unbuilt"  # the image of docker hosts before `homecluster image build`


class Certificates(Protocol):
    """This machine's certificates of the cluster, as the spec needs them (security.store.CertFiles)."""

    def cert(self, name: str) -> Path: ...
    def key(self, name: str) -> Path: ...
    def digest(self, name: str) -> str | None: ...


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
    files: tuple[tuple[str, str], ...] = ()  # (file on this machine, path on the host): private, copied mode 0600
    image: str | None = None  # docker hosts: the image the container runs (an id, or the inventory's image:)
    docker_options: tuple[str, ...] = ()  # docker hosts: the inventory's docker_run_options

    @property
    def fingerprint(self) -> str:
        """Changes exactly when the process would have to be restarted to match the inventory."""
        docker = [self.image, list(self.docker_options)] if self.image else []
        blob = json.dumps([self.argv, self.env, RUN_FORMAT, *docker], separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        return {"host": self.host, "role": self.role, "argv": list(self.argv), "env": dict(self.env),
                "run_dir": self.run_dir, "worker_names": list(self.worker_names), "os": self.os,
                "files": [{"from": a, "to": b} for a, b in self.files], "fingerprint": self.fingerprint,
                **({"image": self.image, "docker_options": list(self.docker_options)} if self.image else {})}


@dataclass(frozen=True)
class ClusterSpec:
    """Everything `up` will start, host by host."""

    name: str
    scheduler_address: str
    dashboard_url: str | None  # as the scheduler's host sees it (with a private dashboard: its loopback)
    processes: tuple[ProcessSpec, ...]
    tls: bool = True
    dashboard_private: bool = True

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
        return {"name": self.name, "scheduler_address": self.scheduler_address, "tls": self.tls,
                "dashboard_url": self.dashboard_url, "dashboard_private": self.dashboard_private,
                "processes": [p.to_dict() for p in self.processes]}


def run_dir(inv: Inventory, host: Host) -> str:
    """Per-cluster, per-host directory for pid and log files (hosts may share a home directory)."""
    return f"{host.run_directory.rstrip('/')}/{inv.cluster.name}/{host.name}"


def env_dir(inv: Inventory, host: Host) -> str:
    """Where `homecluster setup` puts a host's managed environment."""
    return f"{run_dir(inv, host)}/env"


def uv_path(host_run_dir: str, os_name: str = "linux") -> str:
    """Where `homecluster setup` puts uv on a host (install-pkg's worker plugin finds it through $HOMECLUSTER_UV)."""
    return f"{host_run_dir}/uv/uv{'.exe' if os_name == 'windows' else ''}"


def managed(inv: Inventory, host: Host) -> bool:
    """Whether the host runs dask from the environment `homecluster setup` manages (a docker host runs the
    image's)."""
    return not host.python and inv.environment is not None and host.backend != "docker"


def _env(inv: Inventory, host: Host, env_digest: str | None, tls_digest: str | None = None
         ) -> tuple[tuple[str, str], ...]:
    # The digests in the process environment make the fingerprint change when the inventory's environment: or
    # the certificates change, so the next `up` restarts the processes that still run the old ones.
    extra = {"HOMECLUSTER_ENV": env_digest, "HOMECLUSTER_UV": uv_path(run_dir(inv, host), host.os)} \
        if env_digest and managed(inv, host) else {}
    if tls_digest:
        extra["HOMECLUSTER_TLS"] = tls_digest
    return tuple(sorted({**host.env, **extra}.items()))


def cert_name(role: str, host: str) -> str:
    """The certificate a role on a host uses on this machine: `scheduler`, or `worker-<host>`."""
    return SCHEDULER if role == SCHEDULER else f"{WORKER}-{host}"


def tls_files(rdir: str, role: str) -> tuple[str, str, str]:
    """Where a role's CA certificate, certificate and key are on its host."""
    d = f"{rdir}/{TLS_DIR}"
    return f"{d}/ca.pem", f"{d}/{role}.pem", f"{d}/{role}.key"


def _tls(inv: Inventory, host: Host, role: str, certs: Certificates | None) -> tuple[list[str], tuple, str | None]:
    """The TLS arguments of a role, the files to copy for them, and the digest that goes into its fingerprint.
    Without certificates yet (a dry run before the first up) the digest is "new": they will be made."""
    if not inv.cluster.tls:
        return [], (), None
    ca, cert, key = tls_files(run_dir(inv, host), role)
    args = ["--tls-ca-file", ca, "--tls-cert", cert, "--tls-key", key]
    if certs is None:
        return args, (), "new"
    name = cert_name(role, host.name)
    files = ((str(certs.cert("ca")), ca), (str(certs.cert(name)), cert), (str(certs.key(name)), key))
    return args, files, certs.digest(name) or "new"


def interpreter(inv: Inventory, host: Host) -> str:
    """The Python that runs dask on a host: its `python:` key; else the managed environment when the inventory
    has an `environment:` section; else this very interpreter for a local host, or python3 over SSH."""
    if host.backend == "docker":
        return IMAGE_PYTHON
    if host.python:
        return host.python
    if managed(inv, host):  # a venv: Scripts/python.exe on Windows
        return f"{env_dir(inv, host)}/{'Scripts/python.exe' if host.os == 'windows' else 'bin/python'}"
    return sys.executable if host.is_local else "python3"


def worker_names(host: Host) -> tuple[str, ...]:
    """The names dask gives the worker processes of `dask worker --name HOST --nworkers N`."""
    if host.nworkers == 1:
        return (host.name,)
    return tuple(f"{host.name}-{i}" for i in range(host.nworkers))


def scheduler_address(inv: Inventory) -> str:
    """The scheduler's address as workers and clients dial it: tls:// unless the inventory turns TLS off."""
    return f"{'tls' if inv.cluster.tls else 'tcp'}://{inv.scheduler_host.address}:{inv.cluster.scheduler_port}"


def dashboard_address(inv: Inventory) -> str | None:
    """Where the dashboard listens: the scheduler host's loopback (private) or its address (lan)."""
    c = inv.cluster
    if c.dashboard_port is None:
        return None
    return f"{LOOPBACK if c.dashboard == 'private' else inv.scheduler_host.address}:{c.dashboard_port}"


def _docker(host: Host, image: str | None) -> dict:
    """The image and options of a docker host's processes (nothing for a native host)."""
    if host.backend != "docker":
        return {}
    return {"image": host.image or image or UNBUILT, "docker_options": host.docker_run_options}


def scheduler_process(inv: Inventory, env_digest: str | None = None, certs: Certificates | None = None,
                      image: str | None = None) -> ProcessSpec:
    host, c = inv.scheduler_host, inv.cluster
    argv = [interpreter(inv, host), "-m", "distributed.cli.dask_scheduler",
            "--host", host.address, "--port", str(c.scheduler_port)]
    dashboard = dashboard_address(inv)
    argv += ["--dashboard-address", dashboard] if dashboard else ["--no-dashboard"]
    tls_args, files, digest = _tls(inv, host, SCHEDULER, certs)
    return ProcessSpec(host.name, SCHEDULER, tuple(argv + tls_args), _env(inv, host, env_digest, digest),
                       run_dir(inv, host), os=host.os, files=files, **_docker(host, image))


def worker_process(inv: Inventory, host: Host, scheduler_address: str, env_digest: str | None = None,
                   certs: Certificates | None = None, image: str | None = None) -> ProcessSpec:
    c, rdir = inv.cluster, run_dir(inv, host)
    argv = [interpreter(inv, host), "-m", "distributed.cli.dask_worker", scheduler_address,
            "--name", host.name, "--nworkers", str(host.nworkers)]
    if host.nthreads:
        argv += ["--nthreads", str(host.nthreads)]
    argv += ["--memory-limit", host.memory_limit, "--death-timeout", f"{host.death_timeout:g}",
             "--local-directory", host.local_directory or f"{rdir}/work", "--host", host.address,
             # No worker dashboard; the HTTP server every worker process still runs (health, metrics) gets a
             # random port that cannot be pinned per process: on loopback only (core/ports.py)
             "--no-dashboard", "--dashboard-address", f"{LOOPBACK}:0"]
    if c.worker_ports:
        argv += ["--worker-port", str(c.worker_ports)]
    if c.nanny_ports:
        argv += ["--nanny-port", str(c.nanny_ports)]
    if host.resources:
        argv += ["--resources", " ".join(f"{k}={v:g}" for k, v in host.resources.items())]
    tls_args, files, digest = _tls(inv, host, WORKER, certs)
    return ProcessSpec(host.name, WORKER, tuple(argv + tls_args), _env(inv, host, env_digest, digest), rdir,
                       worker_names(host), os=host.os, files=files, **_docker(host, image))


def build(inv: Inventory, env_digest: str | None = None, certs: Certificates | None = None,
          image: str | None = None) -> ClusterSpec:
    """The cluster spec for an inventory: the scheduler first, then one `dask worker` per host with workers.

    `env_digest` identifies the managed environments' lock (see lock.digest); None when there is none.
    `certs`: this machine's certificates of the cluster (security.store.CertFiles), for the files each host gets
    and the fingerprints; None where only the command lines matter. `image`: the id of the image `homecluster
    image build` made, for docker hosts without an image: of their own."""
    address, dashboard = scheduler_address(inv), dashboard_address(inv)
    procs = [scheduler_process(inv, env_digest, certs, image)]
    procs += [worker_process(inv, h, address, env_digest, certs, image) for h in inv.hosts.values()
              if h.nworkers > 0]
    return ClusterSpec(inv.cluster.name, address, f"http://{dashboard}/status" if dashboard else None,
                       tuple(procs), tls=inv.cluster.tls, dashboard_private=inv.cluster.dashboard == "private")
