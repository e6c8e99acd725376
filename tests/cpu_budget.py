"""CPU budgets for simulated machines: a cgroup per machine that caps how many cores its processes may use.

All simulated household computers share this machine's cores. A benchmark that asks "are 3 hosts set up in
parallel?" on 2 cores measures the shortage of cores, not the tool: 3 hosts' installs need 3x the CPU. Giving
every simulated machine (each host and the laptop) its own fixed budget, whose sum fits the real cores, makes
each one's speed independent of the others, as with separate computers, so a 1-host and a 3-host run compare
what the tool does in parallel.

Uses the cgroup v1 `cpu` controller (cpu.cfs_quota_us) or cgroup v2 (cpu.max), whichever this machine has.
Processes enter a budget at start (preexec) and their children inherit it. Needs root.
"""

from __future__ import annotations

import os
from pathlib import Path

PERIOD_US = 100_000
V1_ROOT = Path("/sys/fs/cgroup/cpu")
V2_ROOT = Path("/sys/fs/cgroup")


def _root() -> tuple[Path, int] | None:
    """(the cgroup root to make budgets under, cgroup version), or None when neither is usable."""
    if (V1_ROOT / "cpu.cfs_quota_us").exists():
        return V1_ROOT, 1
    controllers = V2_ROOT / "cgroup.controllers"
    if controllers.exists() and "cpu" in controllers.read_text().split():
        return V2_ROOT, 2
    return None


def available() -> tuple[bool, str]:
    """(True, "") when CPU budgets can be made here, else (False, why)."""
    if os.geteuid() != 0:
        return False, "not root"
    found = _root()
    if found is None:
        return False, "no cgroup cpu controller (v1 cpu.cfs_quota_us or v2 cpu.max)"
    probe = CpuBudget(f"homecluster-probe-{os.getpid()}")
    try:
        probe.create().remove()
    except OSError as e:
        return False, f"cannot make a cgroup under {found[0]}: {e}"
    if probe.path.exists():
        return False, f"cannot remove the cgroup {probe.path}"
    return True, ""


class CpuBudget:
    """A cgroup named `name` whose processes together use at most `cores` cores (None: no cap)."""

    def __init__(self, name: str) -> None:
        found = _root()
        if found is None:
            raise RuntimeError(available()[1])
        self.root, self.version = found
        self.path = self.root / name
        self.name = name

    def create(self) -> "CpuBudget":
        """Make the cgroup (no cap yet); returns self."""
        if self.version == 2:
            (self.root / "cgroup.subtree_control").write_text("+cpu")
        self.path.mkdir(exist_ok=True)
        return self

    def cap(self, cores: float | None) -> None:
        """Cap the group at `cores` cores from now on; None removes the cap."""
        quota = -1 if cores is None else max(1000, int(cores * PERIOD_US))
        if self.version == 1:
            (self.path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (self.path / "cpu.cfs_quota_us").write_text(str(quota))
        else:
            (self.path / "cpu.max").write_text(f"{'max' if quota < 0 else quota} {PERIOD_US}")

    def enter(self) -> None:
        """Move the calling process into the group (use as subprocess preexec_fn: the child and all it starts)."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def throttled_seconds(self) -> float:
        """Time the group's processes have waited for their budget so far."""
        stat = dict(line.split() for line in (self.path / "cpu.stat").read_text().splitlines())
        if self.version == 1:
            return int(stat.get("throttled_time", 0)) / 1e9
        return int(stat.get("throttled_usec", 0)) / 1e6

    def remove(self) -> None:
        """Move any process left in the group to the root group, then delete the group. Safe to call twice."""
        remove_group(self.path)


def remove_group(path: Path) -> None:
    """Empty the cgroup at path into its root and delete it, if it is there."""
    if not path.is_dir():
        return
    procs = path / "cgroup.procs"
    for pid in procs.read_text().split() if procs.exists() else []:
        try:
            (path.parent / "cgroup.procs").write_text(pid)
        except OSError:
            pass  # the process has exited meanwhile
    try:
        path.rmdir()
    except OSError:
        pass


def remove_all(prefix: str) -> None:
    """Delete every budget named '<prefix>-*' (leftovers of an earlier run)."""
    found = _root()
    if found is None:
        return
    for path in found[0].glob(f"{prefix}-*"):
        if path.is_dir():
            remove_group(path)
