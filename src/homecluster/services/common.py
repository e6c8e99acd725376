"""What every service manager's definition shares: the marker, the log file, the restart delay, ~ paths."""

from __future__ import annotations

from homecluster.backends.process import marker
from homecluster.core.spec import WORKER, ProcessSpec
from homecluster.inventory import Host
from homecluster.inventory.units import parse_bytes

RESTART_DELAY = 2  # seconds between an exit and the next start (systemd RestartSec, launchd ThrottleInterval, NSSM)
STOP_TIMEOUT = 20  # seconds a stop waits after SIGTERM (or Ctrl-C) before it kills
ROTATE_BYTES = 10 * 2**20  # NSSM turns the log over at this size (systemd and launchd append to one file)


def is_home(p: str) -> bool:
    """Whether a path (or a command-line argument) is relative to the home directory, as the process backend
    reads it: `~` or `~/...` (not `~user`)."""
    return p == "~" or p.startswith("~/")


def env_is_home(v: str) -> bool:
    """Whether an environment value is expanded as a home path: `~/...` only, as the process backend does."""
    return v.startswith("~/")


def environment(proc: ProcessSpec, cluster: str) -> list[tuple[str, str]]:
    """The process's environment: the ownership marker of the process backend first, then the spec's."""
    return [("HOMECLUSTER_PROCESS", marker(cluster, proc.host, proc.role)), *proc.env]


def log_path(proc: ProcessSpec) -> str:
    """The log of a role, where the process backend writes it too (`homecluster logs` reads it)."""
    return f"{proc.run_dir}/{proc.role}.log"


def describe(proc: ProcessSpec, cluster: str) -> str:
    """`the worker of cluster home on laptop` (names are letters, digits, . _ -: safe in any file)."""
    return f"the {proc.role} of cluster {cluster} on {proc.host}"


def memory_max(proc: ProcessSpec, host: Host) -> int | None:
    """The cap of a role's memory (a systemd unit's MemoryMax, a container's --memory): dask's per-process
    memory_limit times the worker processes; None with auto, and for the scheduler."""
    if proc.role != WORKER or host.memory_limit == "auto":
        return None
    return parse_bytes(host.memory_limit) * host.nworkers
