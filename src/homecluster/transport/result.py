"""What running one script on one host gave."""

from __future__ import annotations

from dataclasses import dataclass

COMMAND_TIMEOUT = 120


@dataclass(frozen=True)
class CommandResult:
    """The outcome of one script on one host."""

    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def tail(self, lines: int = 5) -> str:
        """The last lines of the output, stderr first, for error messages."""
        text = (self.stderr.strip() + "\n" + self.stdout.strip()).strip()
        return " | ".join(text.splitlines()[-lines:])


class Held:
    """A script kept running on a host while a command works there (how a host's lock is held): read its
    output line by line; `release()` closes its stdin, which ends it."""

    def __init__(self, readline, release):
        self._readline, self._release = readline, release
        self.lines: list[str] = []  # every line read so far
        self._released, self._code = False, None

    def readline(self) -> str:
        """The next line of output ('' at the end)."""
        line = self._readline()
        if line:
            self.lines.append(line.rstrip("\n"))
        return line

    def tail(self, lines: int = 5) -> str:
        """The last lines read, for error messages."""
        return " | ".join(self.lines[-lines:]) or "no output"

    def release(self) -> int | None:
        """End the script; its exit code (None when the host or the connection is already gone). Releasing
        again returns the same code."""
        if not self._released:
            self._released = True
            try:
                self._code = self._release()
            except Exception:  # noqa: BLE001 - the host or its connection may already be gone: nothing to release
                self._code = None
        return self._code
