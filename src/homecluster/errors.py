"""The errors homecluster expects to meet, each printable as one line for the user."""

from __future__ import annotations

import re
import reprlib
from typing import Any

_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 60
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict = 2, 4, 4
_NOT_IN_A_LINE = re.compile("[\x00\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")  # NUL, and where splitlines() splits


def shown(value: Any) -> str:
    """A value as a message shows it: its repr, long texts and containers cut short."""
    return _SHORT.repr(value)


def one_line(text: str) -> bool:
    """Whether a text fits in a one-line message and in a command line: no line break, no NUL byte."""
    return not _NOT_IN_A_LINE.search(text)


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
