"""What up, status and down found and did, per host: the results the CLI renders. Plain data."""

from __future__ import annotations

from dataclasses import dataclass, field

from homecluster.backends.base import ProcessState
from homecluster.core.spec import ClusterSpec
from homecluster.errors import HomeclusterError
from homecluster.inventory import Inventory
from homecluster.scheduler import WorkerInfo


@dataclass
class HostReport:
    """What happened on one host."""

    host: str
    address: str
    actions: list[str] = field(default_factory=list)
    expected: tuple[str, ...] = ()
    registered: list[WorkerInfo] = field(default_factory=list)
    pids: dict[str, int] = field(default_factory=dict)
    states: dict[str, ProcessState] = field(default_factory=dict)
    error: str | None = None
    doing: str | None = None  # the step under way (what Ctrl-C may have cut short)

    @property
    def ok(self) -> bool:
        return self.error is None and len(self.registered) == len(self.expected)


@dataclass
class ClusterReport:
    """The outcome of up or status: the cluster addresses plus one report per host."""

    spec: ClusterSpec
    hosts: dict[str, HostReport]
    scheduler_running: bool = False
    changed: bool = False
    restored: list[str] = field(default_factory=list)
    restore_errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.scheduler_running and all(h.ok for h in self.hosts.values())


def new_reports(inv: Inventory, spec: ClusterSpec) -> dict[str, HostReport]:
    """An empty report for every inventory host, with the workers each should have."""
    expected = {p.host: p.worker_names for p in spec.workers}
    return {h.name: HostReport(h.name, h.address, expected=expected.get(h.name, ())) for h in inv.hosts.values()}


class Interrupted(HomeclusterError):
    """A command was interrupted (Ctrl-C): says what it had done where, and how to converge."""

    def __init__(self, command: str, reports: dict[str, HostReport]):
        done = [f"{', '.join(r.actions)} on {r.host}" for r in reports.values() if r.actions]
        under_way = [f"{r.doing} on {r.host}" for r in reports.values() if r.doing]
        untouched = [r.host for r in reports.values() if not r.actions and not r.doing]
        text = f"{command} interrupted. Done: {'; '.join(done) or 'nothing'}"
        if under_way:
            text += f"; under way: {'; '.join(under_way)}"
        if untouched:
            text += f"; nothing done on {', '.join(untouched)}"
        super().__init__(f"{text}. What was started keeps running: homecluster up finishes the job, "
                         "homecluster down stops everything")
