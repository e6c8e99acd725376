"""The errors homecluster expects to meet, each printable as one line for the user."""

from __future__ import annotations


class HomeclusterError(Exception):
    """An expected failure: its message is one line that says what is wrong and how to fix it."""


class InventoryError(HomeclusterError):
    """A problem in the inventory file, located by file, line and key."""

    def __init__(self, path: str, line: int | None, key: str, problem: str, fix: str):
        self.path, self.line, self.key, self.problem, self.fix = path, line, key, problem, fix
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        key = f" {self.key}:" if self.key else ""
        return f"{where}:{key} {self.problem}. Fix: {self.fix}"


class HostError(HomeclusterError):
    """A failure on one host (unreachable, refused host key, failed command)."""


class LockError(HomeclusterError):
    """The environment: section cannot be resolved (unknown package, no wheel, a conflict): bad input."""

    where = "environment"  # what the error is about: set by whoever knows (the inventory file, install-pkg)
