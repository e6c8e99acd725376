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
