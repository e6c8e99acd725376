"""This machine as a host: scripts run with the local sh."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from homecluster.errors import HostError
from homecluster.inventory import Host
from homecluster.transport.result import COMMAND_TIMEOUT, CommandResult, Held


class LocalRunner:
    """Runs scripts on this machine with sh (for `connection: local`)."""

    def __init__(self, host: Host):
        self.host = host

    def run(self, script: str, timeout: float = COMMAND_TIMEOUT) -> CommandResult:
        try:
            p = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=timeout,
                               stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise HostError(f"{self.host.name}: command timed out after {timeout:g} s") from None
        return CommandResult(p.returncode, p.stdout, p.stderr)

    def hold(self, script: str) -> Held:
        """Start a script that runs until released (its stdin closes; also when this process dies)."""
        p = subprocess.Popen(["sh", "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)

        def release() -> int:
            p.stdin.close()
            code = p.wait(timeout=60)
            p.stdout.close()
            return code
        return Held(p.stdout.readline, release)

    def put(self, local: Path, remote: str) -> None:
        """Copy a file to a path on this machine (`~/` is the home directory)."""
        shutil.copyfile(local, os.path.expanduser(remote))

    def close(self) -> None:
        pass
