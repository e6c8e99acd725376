"""POSIX sh: quoting and the command line that runs a script, whatever the login shell of the user is."""

from __future__ import annotations

import json
import shlex


def shell_path(path: str) -> str:
    """Quote a path for sh, keeping a leading ~ as $HOME (quoting would stop the shell from expanding it)."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


def shell_join(argv: tuple[str, ...]) -> str:
    """Quote a command line for sh; arguments that start with ~/ are expanded on the host."""
    return " ".join(shell_path(a) if a.startswith("~") else shlex.quote(a) for a in argv)


def wrap(script: str) -> str:
    """The command line that runs a script with sh, whatever the login shell of the remote user is."""
    return "sh -c " + shlex.quote(script)


def json_line(output: str, tag: str) -> dict | None:
    """The JSON after the first line that starts with `tag ` (how host-side Python reports facts), or None."""
    for line in output.splitlines():
        if line.startswith(tag + " "):
            return json.loads(line[len(tag) + 1:])
    return None
