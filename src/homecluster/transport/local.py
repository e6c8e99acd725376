"""This machine as a host: scripts run with the local sh."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Callable, Iterable

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

    def feed(self, script: str, chunks: Iterable[bytes], on_bytes: Callable[[int], None] = lambda n: None
             ) -> CommandResult:
        """Run a script with `chunks` streamed to its stdin, calling `on_bytes` with the bytes sent so far."""
        p = subprocess.Popen(["sh", "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)
        sent = 0
        try:
            for chunk in chunks:
                p.stdin.write(chunk)
                sent += len(chunk)
                on_bytes(sent)
            p.stdin.close()
        except BrokenPipeError:
            pass  # the command ended early: its output says why
        out = p.stdout.read().decode(errors="replace")
        return CommandResult(p.wait(), out, "")

    def put(self, local: Path, remote: str) -> None:
        """Copy a file to a path on this machine (`~/` is the home directory)."""
        shutil.copyfile(local, os.path.expanduser(remote))

    def put_private(self, local: Path, remote: str) -> None:
        """Copy a file (a key) so that only its owner can ever read it: mode 0600 from its creation, replaced
        atomically."""
        path = Path(os.path.expanduser(remote))
        tmp = path.with_name(path.name + ".tmp")
        try:
            data = local.read_bytes()
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), 0o600)
                f.write(data)
            os.replace(tmp, path)
        except OSError as e:
            raise HostError(f"{self.host.name}: copying {local.name} to {remote} failed: {e}") from None

    def close(self) -> None:
        pass
