"""The seam between the operations (up, down, status, logs) and how a Dask process is kept running on a host.

A backend is one small class bound to one host's runner. It renders its scripts in the host's shell dialect,
runs them through the runner and parses what they print; the operations never see a script. The first backend
is `process.ProcessBackend` (supervised POSIX processes); systemd, launchd, NSSM and Docker plug in here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Callable

from homecluster.core.spec import ProcessSpec
from homecluster.inventory import Host

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ProcessState:
    """What a probe found for one role on one host.

    `alive`: the process homecluster keeps there (its supervisor) runs and is ours. The rest comes from the
    supervisor: whether the Dask process itself runs right now, how often it was restarted, its last exit."""

    role: str
    pid: int | None
    alive: bool
    fingerprint: str
    running: bool | None = None
    restarts: int = 0
    last_exit: int | None = None
    last_exit_ago: float | None = None
    next_start_in: float | None = None

    @property
    def healthy(self) -> bool:
        """Alive, and the Dask process is not waiting to be restarted."""
        return self.alive and self.running is not False

    def describe(self) -> str:
        """The restart history for status: '' when there was none."""
        if not self.restarts and self.last_exit is None:
            return ""
        parts = [f"restarts {self.restarts}"]
        if self.last_exit is not None:
            ago = f" {self.last_exit_ago:.0f} s ago" if self.last_exit_ago is not None else ""
            parts.append(f"last exit {exit_text(self.last_exit)}{ago}")
        if self.next_start_in is not None:
            parts.append(f"next start in {max(self.next_start_in, 0):.0f} s")
        return ", ".join(parts)


def exit_text(code: int) -> str:
    """An exit status as people read it: 'code 1', or 'signal 9' for a negative (Popen-style) one."""
    return f"signal {-code}" if code < 0 else f"code {code}"


@dataclass(frozen=True)
class Supervision:
    """Who keeps a host's processes running, as its last probe found: a service manager (`systemd`, `launchd`,
    `nssm`) or homecluster's own supervisor (`process`; `why` a service manager is not used), and per role
    whether it starts at boot (`enabled`, `disabled`, `absent`, or the manager's own word)."""

    manager: str
    why: str = ""
    boot: dict[str, str] = field(default_factory=dict)
    linger: bool | None = None  # systemd user units: whether they start at boot without a login
    home: str | None = None  # $HOME on the host

    def starts_at_boot(self, role: str) -> bool:
        return self.boot.get(role) == "enabled" and self.linger is not False


def parse_supervision(output: str, default: str, why: str = "") -> Supervision:
    """The hc-manager, hc-boot, hc-linger and hc-home lines of a probe's output (`default` when it has none)."""
    manager, boot, linger, home = default, {}, None, None
    for line in output.splitlines():
        key, _, rest = line.partition(" ")
        if key == "hc-manager":
            manager, _, why = rest.partition(" ")
        elif key == "hc-boot" and " " in rest:
            role, state = rest.split(" ", 1)
            boot[role] = state.strip()
        elif key == "hc-linger":
            linger = {"yes": True, "no": False}.get(rest.strip())
        elif key == "hc-home":
            home = rest.strip() or None
    return Supervision(manager, why.strip(), boot, linger, home)


@dataclass(frozen=True)
class Stopped:
    """What stopping one role did: the pid it stopped, and whether something had to be killed."""

    role: str
    pid: int | None
    killed: int = 0

    def describe(self) -> str:
        what = f"{self.role} {self.pid}" if self.pid else f"{self.role} (leftovers)"
        return what + (f" (had to kill {self.killed} process(es))" if self.killed else "")


class Backend(ABC):
    """Keeps the Dask processes of one cluster running on one host."""

    def __init__(self, runner, host: Host, cluster: str):
        self.runner, self.host, self.cluster = runner, host, cluster

    @abstractmethod
    def session(self, command: str, progress: Progress) -> AbstractContextManager[dict[str, ProcessState]]:
        """Hold this host's lock for the cluster while the block runs (a concurrent up/down waits, saying so);
        the value is every role's state, probed under the lock."""

    @abstractmethod
    def probe(self) -> dict[str, ProcessState]:
        """Every role's state on this host (without the lock: status)."""

    @abstractmethod
    def start(self, proc: ProcessSpec) -> int | None:
        """Start a process (and whatever keeps it running); its pid."""

    @abstractmethod
    def stop(self, role: str, progress: Progress = lambda s: None) -> Stopped | None:
        """Stop a role and everything it started; None when nothing ran. Outside a session it takes the lock."""

    def remove_image(self) -> str | None:
        """Remove the cluster's image from the host (`down --images`); what was removed. Only docker hosts have
        one: None."""
        return None

    @abstractmethod
    def logs(self, role: str, lines: int) -> str:
        """The last lines of a role's log."""
