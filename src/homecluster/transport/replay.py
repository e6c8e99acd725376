"""A runner that records the scripts it is given and replays prepared host output instead of running them.

`--dry-run` walks the real code path of up/down with one of these (replying what a host where nothing runs
prints) and prints what it recorded; the unit tests of the deploy logic replay output recorded on real hosts.
Scripts are told apart by their first line, `# homecluster KIND: ...`.
"""

from __future__ import annotations

import re
from collections import defaultdict, deque
from pathlib import Path
from typing import Callable, Mapping

from homecluster.inventory import Host
from homecluster.transport.result import COMMAND_TIMEOUT, CommandResult, Held

Reply = str | CommandResult


def kind_of(script: str) -> str:
    """The kind of a homecluster script (probe, start, ...), from its first line; '' for other scripts."""
    m = re.match(r"# homecluster (\w+):", script)
    return m.group(1) if m else ""


class ReplayRunner:
    """Records every script; answers each kind with the next prepared reply for it, else with `default`.

    `replies` maps a kind to one reply (used every time) or a list (used in turn, the last one repeating).
    A reply is stdout text (exit 0) or a CommandResult."""

    def __init__(self, host: Host, replies: Mapping[str, Reply | list[Reply]] | None = None,
                 default: Callable[[str], Reply] = lambda kind: ""):
        self.host, self.default = host, default
        self.scripts: list[str] = []
        self._replies: dict[str, deque] = defaultdict(deque)
        for kind, reply in (replies or {}).items():
            self._replies[kind].extend(reply if isinstance(reply, list) else [reply])

    def _answer(self, script: str) -> CommandResult:
        self.scripts.append(script)
        kind, queue = kind_of(script), None
        queue = self._replies.get(kind)
        reply = (queue.popleft() if len(queue) > 1 else queue[0]) if queue else self.default(kind)
        return reply if isinstance(reply, CommandResult) else CommandResult(0, reply, "")

    def run(self, script: str, timeout: float = COMMAND_TIMEOUT) -> CommandResult:
        return self._answer(script)

    def hold(self, script: str) -> Held:
        r = self._answer(script)
        lines = deque(r.stdout.splitlines(keepends=True))
        return Held(lambda: lines.popleft() if lines else "", lambda: r.exit_code)

    def put(self, local: Path, remote: str) -> None:
        self.scripts.append(f"# copy {local} to {remote}")

    def feed(self, script: str, chunks, on_bytes=lambda n: None) -> CommandResult:
        """Record the script (the stream is not read: --dry-run ships nothing) and answer it like `run`."""
        return self._answer(script)

    def put_private(self, local: Path, remote: str) -> None:
        self.scripts.append(f"# homecluster copy: {local} to {remote}, mode 0600")

    def close(self) -> None:
        pass

    def kinds(self) -> list[str]:
        """The kinds of the scripts run so far, in order."""
        return [kind_of(s) for s in self.scripts]
