"""Windows hosts: not reachable by this release (NSSM services come with a later one)."""

from __future__ import annotations

from pathlib import Path

from homecluster.errors import HostError
from homecluster.inventory import Host
from homecluster.transport.result import COMMAND_TIMEOUT, CommandResult


class WindowsUnsupported:
    """Windows hosts get NSSM services in a later release; until then every action fails with that message."""

    REASON = ("Windows hosts are not supported by the native backend yet (NSSM services are planned). "
              "Fix: remove the host from the inventory for now")

    def __init__(self, host: Host):
        self.host = host

    def run(self, script: str, timeout: float = COMMAND_TIMEOUT) -> CommandResult:
        raise HostError(f"{self.host.name}: {self.REASON}")

    def hold(self, script: str):
        raise HostError(f"{self.host.name}: {self.REASON}")

    def put(self, local: Path, remote: str) -> None:
        raise HostError(f"{self.host.name}: {self.REASON}")

    put_private = put

    def close(self) -> None:
        pass
