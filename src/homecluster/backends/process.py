"""POSIX shell text for each action on a host, and pure parsers of what that text prints.

Every script here runs as `sh -c SCRIPT` on the host (over SSH, or locally), so `--dry-run` can print exactly
what will run. Processes are detached with setsid + nohup and all three streams redirected, so they outlive
the SSH session; their pid, log and fingerprint files live in the process spec's run directory.
"""

from __future__ import annotations

import json
import re
import shlex

from homecluster.shell.posix import shell_join, shell_path
from dataclasses import dataclass

from homecluster.core.spec import SCHEDULER, WORKER, ProcessSpec

ROLES = (SCHEDULER, WORKER)
STOP_WAIT_TENTHS = 150  # a graceful worker shutdown closes its nannies first: allow 15 s before SIGKILL

# Is $1 alive and one of ours? `ps` guards against a recycled pid (skipped where ps is missing).
_ALIVE_FN = ('hc_alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null && '
             '{ ! command -v ps >/dev/null 2>&1 || ps -o args= -p "$1" | grep -q distributed.cli; }; }')


# macOS has no setsid(1): the host's own Python makes the new session, then becomes the dask process.
_PY_SETSID = "import os, sys; os.setsid(); os.execvp(sys.argv[1], sys.argv[1:])"


def detach_prefix(proc: ProcessSpec) -> str:
    """What puts the process in its own session (so it survives the SSH session and can be stopped as a group)."""
    if proc.os == "linux":
        return "setsid nohup"
    return f"nohup {shell_path(proc.argv[0])} -c {shlex.quote(_PY_SETSID)}"


def start_script(proc: ProcessSpec) -> str:
    """Start one process detached, recording pid and fingerprint; fail early if the interpreter is missing."""
    py = proc.argv[0]
    missing = f"no Python interpreter at {py} on this host. Fix: homecluster setup, or set python: for it"
    env = "".join(f"{k}={shell_path(v) if v.startswith('~/') else shlex.quote(v)} " for k, v in proc.env)
    role = proc.role
    return "\n".join([
        f"D={shell_path(proc.run_dir)}",
        'mkdir -p "$D" || exit 1',
        'cd "$D" || exit 1',
        f"command -v {shell_path(py)} >/dev/null 2>&1 || "
        f"{{ echo {shlex.quote(missing)} >&2; "
        "exit 127; }",
        f"[ -f {role}.log ] && mv {role}.log {role}.log.1",
        f"echo {proc.fingerprint} > {role}.spec",
        f"{env}{detach_prefix(proc)} {shell_join(proc.argv)} > {role}.log 2>&1 < /dev/null &",
        f"echo $! > {role}.pid",
        f"echo hc-started {role} $!",
    ])


def probe_script(run_dir: str) -> str:
    """Report, for every role, the recorded pid, whether it is alive and the fingerprint it was started with."""
    return "\n".join([
        _ALIVE_FN,
        f"D={shell_path(run_dir)}",
        f"for role in {' '.join(ROLES)}; do",
        '  pid=$(cat "$D/$role.pid" 2>/dev/null); spec=$(cat "$D/$role.spec" 2>/dev/null)',
        "  alive=0; hc_alive \"$pid\" && alive=1",
        '  echo "hc-probe $role pid=$pid alive=$alive spec=$spec"',
        "done",
    ])


def stop_script(run_dir: str, role: str) -> str:
    """Stop one role gracefully (SIGTERM, wait), then SIGKILL what is left of its process group."""
    return "\n".join([
        _ALIVE_FN,
        f"D={shell_path(run_dir)}",
        f'f="$D/{role}.pid"',
        '[ -f "$f" ] || exit 0',
        'pid=$(cat "$f")',
        'if hc_alive "$pid"; then',
        '  kill -TERM "$pid" 2>/dev/null',
        f'  i=0; while hc_alive "$pid" && [ $i -lt {STOP_WAIT_TENTHS} ]; do sleep 0.1; i=$((i+1)); done',
        '  kill -KILL -- -"$pid" 2>/dev/null; kill -KILL "$pid" 2>/dev/null',
        f'  echo "hc-stopped {role} $pid"',
        "fi",
        f'rm -f "$f" "$D/{role}.spec"',
    ])


_ERROR_LINE = re.compile(r"^\w*(Error|Exception)\b.*|.*\bNo module named\b.*")


def summarize_log(text: str, tail: int = 3) -> str:
    """One line for a crashed process: its exception lines (the cause first), or else its last lines."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = list(dict.fromkeys(ln for ln in lines if _ERROR_LINE.match(ln)))
    return " ... ".join(errors[:1] + errors[-1:] if len(errors) > 1 else errors) or " | ".join(lines[-tail:])


def logs_script(run_dir: str, role: str, lines: int) -> str:
    """Print the last lines of a role's log."""
    return f"tail -n {int(lines)} {shell_path(run_dir)}/{role}.log"


@dataclass(frozen=True)
class ProcessState:
    """What the probe found for one role on one host."""

    role: str
    pid: int | None
    alive: bool
    fingerprint: str


_PROBE_RE = re.compile(r"^hc-probe (\w+) pid=(\d*) alive=([01]) spec=(\w*)\s*$")


def parse_probe(output: str) -> dict[str, ProcessState]:
    """Parse `probe_script` output into role -> ProcessState; unknown lines are ignored (login banners)."""
    states = {}
    for line in output.splitlines():
        m = _PROBE_RE.match(line)
        if m and m.group(1) in ROLES:
            role, pid, alive, spec = m.groups()
            states[role] = ProcessState(role, int(pid) if pid else None, alive == "1", spec)
    return states


def parse_started(output: str) -> int | None:
    """The pid from `start_script` output."""
    m = re.search(r"^hc-started \w+ (\d+)$", output, re.M)
    return int(m.group(1)) if m else None
