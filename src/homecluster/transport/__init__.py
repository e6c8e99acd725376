"""How a script reaches a host: a local shell (local.py), Fabric over SSH with strict host-key checking
(ssh.py), PowerShell over Windows' own OpenSSH server (windows.py); group.py runs one action on many hosts and
keeps a result per host."""

from __future__ import annotations

from homecluster.inventory import Host
from homecluster.transport.local import LocalRunner
from homecluster.transport.result import CommandResult
from homecluster.transport.ssh import SSHRunner
from homecluster.transport.windows import WindowsRunner, posix_only

__all__ = ["CommandResult", "LocalRunner", "SSHRunner", "WindowsRunner", "posix_only", "reached_by",
           "runner_for"]


def runner_for(host: Host) -> LocalRunner | SSHRunner:
    """The runner that reaches `host`."""
    if host.os == "windows":
        return WindowsRunner(host)
    return LocalRunner(host) if host.is_local else SSHRunner(host)


def reached_by(host: Host) -> str:
    """How homecluster reaches a host, for headers and tables."""
    if host.is_local:
        return "local shell"
    user = f"{host.user}@" if host.user else ""
    return f"ssh {user}{host.address}:{host.port}"
