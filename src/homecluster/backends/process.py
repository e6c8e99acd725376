"""The process backend: each Dask process runs under homecluster's supervisor, detached from the SSH session.

Scripts are POSIX sh, rendered by the pure functions below and parsed by pure parsers; `ProcessBackend` runs them
on one host. Files live in the host's run directory: <role>.pid (the supervisor), <role>.spec (fingerprint),
<role>.state (the supervisor's JSON), <role>.log, `lock` and the supervisor itself (hc-supervise.py).

Ownership: every process carries HOMECLUSTER_PROCESS=<cluster>/<host>/<role> in its environment (the dask
workers a nanny spawns inherit it), so `stop` finds all of them without pid files, also after a torn `up`.
"""

from __future__ import annotations

import json
import re
import shlex
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from homecluster.backends.base import Backend, ProcessState, Progress, Stopped, Supervision, parse_supervision
from homecluster.core.spec import SCHEDULER, TLS_DIR, WORKER, ProcessSpec
from homecluster.errors import HostError
from homecluster.shell.posix import shell_join, shell_path

ROLES = (SCHEDULER, WORKER)
SUPERVISOR = "hc-supervise.py"
SUPERVISOR_SOURCE = (Path(__file__).parent / "supervisor.py").read_text()
STOP_WAIT_TENTHS = 150  # the supervisor gives its process 10 s after SIGTERM, then kills; then we sweep
LOCK_WAIT = 300  # seconds a command waits for another one's lock on a host
LOCK_BUSY_EXIT = 75

# Ours: the marker in /proc/PID/environ (Linux, GNU grep -z); elsewhere the command line (ps). A process started
# by an older homecluster (no supervisor) is still recognised by its command line, so `up` replaces it.
_FUNCTIONS = r"""hc_ours() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null || return 1
  if [ -r "/proc/$1/environ" ]; then
    grep -qsxzF "HOMECLUSTER_PROCESS=$2" "/proc/$1/environ" && return 0
  else ps -o args= -p "$1" 2>/dev/null | grep -q hc-supervise && return 0; fi
  ps -o args= -p "$1" 2>/dev/null | grep -q distributed.cli; }
hc_marked() { if [ -d /proc/self ]; then
    grep -lsxzF "HOMECLUSTER_PROCESS=$1" /proc/[0-9]*/environ 2>/dev/null | sed 's,^/proc/\([0-9]*\)/environ$,\1,'
  else ps -AwwE -o pid= -o command= 2>/dev/null | grep -F " HOMECLUSTER_PROCESS=$1" | awk '{print $1}'; fi; }"""


def marker(cluster: str, host: str, role: str) -> str:
    """The environment marker of one role's processes: unique per cluster, host and role."""
    return f"{cluster}/{host}/{role}"


def _header(kind: str, what: str) -> str:
    return f"# homecluster {kind}: {what}"


def _lock_lines(run_dir: str, command: str) -> list[str]:
    """Take the host's lock for the cluster on fd 9 (waiting at most LOCK_WAIT s, saying who holds it); the lock
    lasts as long as this shell."""
    return [
        f"D={shell_path(run_dir)}",
        'mkdir -p "$D" || exit 1',
        'exec 9>>"$D/lock"',
        # flock(1) is util-linux (every Linux); macOS has perl. Both lock the descriptor this shell keeps open.
        "hc_lock() { if command -v flock >/dev/null 2>&1; then if [ \"$1\" = 0 ]; then flock -n 9; "
        "else flock -w \"$1\" 9; fi; else perl -MFcntl=:flock -e 'open(F, \">&=9\") or exit 2; "
        "$end = time + shift; until (flock(F, LOCK_EX | LOCK_NB)) { exit 1 if time >= $end; "
        "select(undef, undef, undef, 0.1) }' \"$1\"; fi; }",
        'if ! hc_lock 0; then',
        '  echo "hc-busy $(cat "$D/lock.owner" 2>/dev/null)"',
        f'  hc_lock {LOCK_WAIT} || {{ echo "hc-busy-timeout"; exit {LOCK_BUSY_EXIT}; }}',
        "fi",
        # who holds the lock, as a waiting command shows it: the command, the laptop it came from, since when
        f'echo "homecluster {command}${{SSH_CLIENT:+ from ${{SSH_CLIENT%% *}}}} (since $(date +%H:%M:%S))"'
        ' > "$D/lock.owner"',
    ]


def session_script(run_dir: str, cluster: str, host: str, command: str, supervisor: bool,
                   probe: str | None = None) -> str:
    """Take the host's lock for the cluster, put the supervisor in place (for a command that starts processes),
    probe, then hold the lock until stdin closes: when the command ends, or its SSH connection drops.
    (One SSH command instead of three: each costs the login shell's start-up on the host.) `probe`: another
    backend's probe body (it must print the same hc-probe lines)."""
    install = [f"cat > \"$D/{SUPERVISOR}.new\" <<'HC_SUPERVISOR_EOF'", SUPERVISOR_SOURCE.rstrip("\n"),
               "HC_SUPERVISOR_EOF", f'mv -f "$D/{SUPERVISOR}.new" "$D/{SUPERVISOR}" || exit 1'] if supervisor else []
    # where `start` copies the certificates and keys: only this user may enter it
    private = [f'mkdir -p "$D/{TLS_DIR}" && chmod 700 "$D/{TLS_DIR}" || exit 1'] if command == "up" else []
    return "\n".join([
        _header("session", f"lock cluster {cluster} on {host} while homecluster {command} works here; probe"),
        *_lock_lines(run_dir, command),
        *install,
        *private,
        probe if probe is not None else _probe_body(cluster, host),
        "echo hc-locked",
        "read _ || true",
    ])


def _env_text(proc: ProcessSpec, mark: str) -> str:
    pairs = [("HOMECLUSTER_PROCESS", mark), *proc.env]
    return "".join(f"{k}={shell_path(v) if v.startswith('~/') else shlex.quote(v)} " for k, v in pairs)


def _launcher(proc: ProcessSpec, supervised: bool) -> str:
    if not supervised:  # the Dask process alone in its own session (Linux): what bench_up compares against
        return "setsid nohup"
    role = proc.role
    return " ".join(["nohup", shell_path(proc.argv[0]), f'"$D/{SUPERVISOR}"', "--name", role,
                     "--state", f'"$D/{role}.state"', "--pidfile", f'"$D/{role}.pid"', "--"])


def _other_managers(cluster: str, role: str) -> list[str]:
    """Take the role's systemd unit or launchd job down if one is left (supervisor: systemd or auto before, on
    this host): it would start the role again next to ours."""
    from homecluster.services import launchd, systemd  # (they import this module's marker)

    unit, job = systemd.unit_name(cluster, role), launchd.label(cluster, role)
    return [
        'for u in "$HOME/.config/systemd/user" /etc/systemd/system; do',
        f'  [ -f "$u/{unit}" ] || continue',
        '  c=systemctl; [ "$u" = /etc/systemd/system ] || c="systemctl --user"',
        f'  $c disable --now {unit} >/dev/null 2>&1; rm -f "$u/{unit}"; $c daemon-reload 2>/dev/null',
        f'  echo "hc-swept {role} unit $u/{unit}"',
        "done",
        'for u in "$HOME/Library/LaunchAgents" /Library/LaunchDaemons; do',
        f'  [ -f "$u/{job}.plist" ] || continue',
        f'  d=system; [ "$u" = /Library/LaunchDaemons ] || d="gui/$(id -u)"; launchctl bootout "$d/{job}" 2>/dev/null',
        f'  rm -f "$u/{job}.plist"; echo "hc-swept {role} job $u/{job}.plist"',
        "done",
    ]


def start_script(proc: ProcessSpec, cluster: str, supervised: bool = True) -> str:
    """Start one process under the supervisor, detached; first take down leftovers of the role (a torn `up`, a
    service manager's unit)."""
    py, role = proc.argv[0], proc.role
    mark = marker(cluster, proc.host, role)
    missing = f"no Python interpreter at {py} on this host. Fix: homecluster setup, or set python: for it"
    return "\n".join([
        _header("start", f"the {role} of cluster {cluster} on {proc.host}, supervised"),
        _FUNCTIONS,
        f"D={shell_path(proc.run_dir)}",
        'mkdir -p "$D" || exit 1',
        'cd "$D" || exit 1',
        f"command -v {shell_path(py)} >/dev/null 2>&1 || {{ echo {shlex.quote(missing)} >&2; exit 127; }}",
        *_other_managers(cluster, role),
        f"left=$(hc_marked {shlex.quote(mark)})",
        f'[ -z "$left" ] || {{ kill -KILL $left 2>/dev/null; echo "hc-swept {role}" $left; }}',
        f"[ -f {role}.log ] && mv {role}.log {role}.log.1",
        f"echo {proc.fingerprint} > {role}.spec",
        f"rm -f {role}.state",
        f"{_env_text(proc, mark)}{_launcher(proc, supervised)} {shell_join(proc.argv)} > {role}.log 2>&1 "
        "< /dev/null &",
        f"echo $! > {role}.pid",
        f"echo hc-started {role} $!",
    ])


def _probe_body(cluster: str, host: str) -> str:
    return "\n".join([
        _FUNCTIONS,
        'echo "hc-now $(date +%s)"',
        f"for role in {' '.join(ROLES)}; do",
        '  pid=$(cat "$D/$role.pid" 2>/dev/null); spec=$(cat "$D/$role.spec" 2>/dev/null)',
        f'  alive=0; hc_ours "$pid" {shlex.quote(marker(cluster, host, ""))}"$role" && alive=1',
        '  echo "hc-probe $role pid=$pid alive=$alive spec=$spec"',
        '  [ $alive = 1 ] && [ -f "$D/$role.state" ] && echo "hc-state $role $(tr -d \'\\n\' < "$D/$role.state")"',
        "done",
        "echo hc-probe-done",
    ])


def probe_script(run_dir: str, cluster: str, host: str, body: str | None = None) -> str:
    """Report the host's clock and, for every role: supervisor pid, whether it is ours and alive, the fingerprint
    it was started with, and the supervisor's state (restarts, last exit). Takes no lock (status). `body`:
    another backend's probe body (the same hc-probe lines)."""
    return "\n".join([_header("probe", f"what runs for cluster {cluster} on {host}"), f"D={shell_path(run_dir)}",
                      body if body is not None else _probe_body(cluster, host)])


def stop_script(run_dir: str, cluster: str, host: str, role: str, lock_for: str | None = None) -> str:
    """Stop one role: SIGTERM to its supervisor (which stops the Dask process, killing it after a grace period),
    then SIGKILL whatever still carries the role's marker. Says what had to be killed. With `lock_for` (a
    command's name) it first takes the host's lock itself (down); without, the caller holds it (up)."""
    mark = shlex.quote(marker(cluster, host, role))
    where = _lock_lines(run_dir, lock_for) if lock_for else [f"D={shell_path(run_dir)}"]
    return "\n".join([
        _header("stop", f"the {role} of cluster {cluster} on {host}" + (", under the lock" if lock_for else "")),
        *where,
        _FUNCTIONS,
        f'pid=$(cat "$D/{role}.pid" 2>/dev/null); killed=0',
        f'if hc_ours "$pid" {mark}; then',
        '  kill -TERM "$pid" 2>/dev/null',
        f'  i=0; while hc_ours "$pid" {mark} && [ $i -lt {STOP_WAIT_TENTHS} ]; do sleep 0.1; i=$((i+1)); done',
        f'  if hc_ours "$pid" {mark}; then kill -KILL -"$pid" "$pid" 2>/dev/null; killed=1; fi',
        f'  grep -qs \'"killed": *true\' "$D/{role}.state" && killed=1',
        f'  echo "hc-stopped {role} $pid"',
        "fi",
        f"left=$(hc_marked {mark})",
        '[ -z "$left" ] || { kill -KILL $left 2>/dev/null; killed=$((killed + $(echo $left | wc -w))); }',
        f'[ $killed = 0 ] || echo "hc-killed {role} $killed"',
        f'rm -f "$D/{role}.pid" "$D/{role}.spec" "$D/{role}.state"',
        f'rm -f "$D/{TLS_DIR}/{role}.key" "$D/{TLS_DIR}/{role}.pem"',  # a stopped role leaves no key behind
    ])


def logs_script(run_dir: str, role: str, lines: int) -> str:
    """Print the last lines of a role's log."""
    return "\n".join([_header("logs", f"the last {int(lines)} lines of the {role} log"),
                      f"tail -n {int(lines)} {shell_path(run_dir)}/{role}.log"])


_ERROR_LINE = re.compile(r"^\w*(Error|Exception)\b.*|.*\bNo module named\b.*|.*\berror: .*")


def summarize_log(text: str, tail: int = 3) -> str:
    """One line for a crashed process: its exception lines (the cause first), or else its last lines."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("homecluster-supervisor")]
    errors = list(dict.fromkeys(ln for ln in lines if _ERROR_LINE.match(ln)))
    return " ... ".join(errors[:1] + errors[-1:] if len(errors) > 1 else errors) or " | ".join(lines[-tail:])


_PROBE_RE = re.compile(r"^hc-probe (\w+) pid=(\d*) alive=([01]) spec=(\w*)\s*$")


def parse_probe(output: str) -> dict[str, ProcessState] | None:
    """Parse `probe_script` output into role -> ProcessState; None unless the probe ran to its end.
    Unknown lines are ignored (login banners)."""
    lines = output.splitlines()
    if "hc-probe-done" not in lines:
        return None
    now = next((float(ln.split()[1]) for ln in lines if re.fullmatch(r"hc-now \d+", ln)), None)
    supervised = {ln.split(" ", 2)[1]: ln.split(" ", 2)[2] for ln in lines
                  if ln.startswith("hc-state ") and ln.count(" ") >= 2}
    states = {}
    for line in lines:
        m = _PROBE_RE.match(line)
        if m and m.group(1) in ROLES:
            role, pid, alive, spec = m.groups()
            states[role] = _with_state(ProcessState(role, int(pid) if pid else None, alive == "1", spec),
                                       supervised.get(role), now)
    return states


def _with_state(state: ProcessState, raw: str | None, now: float | None) -> ProcessState:
    try:
        s = json.loads(raw) if raw else {}
    except ValueError:
        s = {}
    if not isinstance(s, dict):
        return state

    def whole(key: str) -> int | None:  # a state file edited or damaged by hand must not crash the probe
        v = s.get(key)
        return v if isinstance(v, int) and not isinstance(v, bool) else None

    def since(key: str, sign: int) -> float | None:
        t = s.get(key)
        ok = now is not None and isinstance(t, (int, float)) and not isinstance(t, bool) and abs(t) < 1e12
        return sign * (now - t) if ok else None

    return ProcessState(state.role, state.pid, state.alive, state.fingerprint,
                        running=s.get("running") if isinstance(s.get("running"), bool) else None,
                        restarts=whole("restarts") or 0, last_exit=whole("last_exit"),
                        last_exit_ago=since("last_exit_at", 1), next_start_in=since("next_start_at", -1))


def parse_started(output: str) -> int | None:
    """The pid from `start_script` output."""
    m = re.search(r"^hc-started \w+ (\d+)$", output, re.M)
    return int(m.group(1)) if m else None


def parse_stopped(output: str, role: str) -> Stopped | None:
    """What `stop_script` did, or None when nothing of the role ran."""
    pid = re.search(rf"^hc-stopped {role} (\d+)$", output, re.M)
    killed = re.search(rf"^hc-killed {role} (\d+)$", output, re.M)
    if not pid and not killed:
        return None
    return Stopped(role, int(pid.group(1)) if pid else None, int(killed.group(1)) if killed else 0)


# What each script prints on a host where nothing has run yet: how --dry-run walks the real code path.
IDLE_OUTPUT = {"session": "hc-probe-done\nhc-locked\n", "probe": "hc-probe-done\n", "start": "hc-started x 0\n",
               "stop": "", "logs": ""}


class ProcessBackend(Backend):
    """Supervised processes started over a POSIX shell (Linux, macOS)."""

    supervised = True  # False only in bench/bench_up.py, to measure what supervision costs side by side
    manager = "process"  # who keeps the processes, as hc-manager lines say it

    def __init__(self, runner, host, cluster: str, run_dir: str):
        super().__init__(runner, host, cluster)
        self.run_dir, self._locked = run_dir, False
        self.supervision: Supervision | None = None  # what the last probe found

    def session_script(self, command: str) -> str:
        """The script that takes this host's lock for `command`, probes, and holds the lock."""
        return session_script(self.run_dir, self.cluster, self.host.name, command,
                              supervisor=self.supervised and command == "up", probe=self.probe_body())

    @contextmanager
    def session(self, command: str, progress: Progress) -> Iterator[dict[str, ProcessState]]:
        held = self.runner.hold(self.session_script(command))
        try:
            lines = self._read(held, progress, until="hc-locked")
            if lines[-1:] != ["hc-locked"]:
                self._session_failed(held, lines)
            self._locked = True
            yield self._states("\n".join(lines), 0, held.tail())
        finally:
            self._locked = False
            held.release()

    def _session_failed(self, held, lines: list[str]) -> None:
        code = held.release()
        if "hc-busy-timeout" in lines:
            raise HostError(f"{self.host.name}: another homecluster command held the cluster's lock for {LOCK_WAIT} s "
                            f"({held.tail(2)}). Fix: wait for it, or see {self.run_dir}/lock.owner on "
                            f"{self.host.name}")
        raise HostError(f"{self.host.name}: the session script ended early (exit {code}): {held.tail()}")

    def _read(self, held, progress: Progress, until: str | None = None) -> list[str]:
        """Lines of a held script up to `until` (or its end), saying when it waits for another command's lock."""
        for line in iter(held.readline, ""):
            if line.startswith("hc-busy "):
                progress(f"{self.host.name}: waiting for {line[8:].strip() or 'another homecluster command'}"
                         " to finish")
            elif until and line.rstrip("\n") == until:
                break
        return held.lines

    def _states(self, output: str, exit_code: int, tail: str) -> dict[str, ProcessState]:
        states = parse_probe(output)
        if exit_code or states is None:
            raise HostError(f"{self.host.name}: probe failed (exit {exit_code}): {tail}")
        self.supervision = parse_supervision(output, self.manager, f"supervisor: {self.host.supervisor}")
        return {role: states.get(role, ProcessState(role, None, False, "")) for role in ROLES}

    # What a subclass that keeps the processes another way (systemd.py) renders instead.
    def probe_body(self) -> str:
        return _probe_body(self.cluster, self.host.name)

    def start_script(self, proc: ProcessSpec) -> str:
        return start_script(proc, self.cluster, self.supervised)

    def stop_script(self, role: str, lock_for: str | None = None) -> str:
        return stop_script(self.run_dir, self.cluster, self.host.name, role, lock_for)

    def probe(self) -> dict[str, ProcessState]:
        r = self.runner.run(probe_script(self.run_dir, self.cluster, self.host.name, self.probe_body()), timeout=30)
        return self._states(r.stdout, r.exit_code, r.tail())

    def start(self, proc: ProcessSpec) -> int | None:
        """Copy the process's certificate and key (into the session's private tls folder), then start it."""
        for local, remote in proc.files:
            self.runner.put_private(Path(local), remote)
        r = self.runner.run(self.start_script(proc))
        if not r.ok:
            raise HostError(f"{self.host.name}: starting the {proc.role} failed (exit {r.exit_code}): {r.tail()}")
        return parse_started(r.stdout)

    def stop(self, role: str, progress: Progress = lambda s: None) -> Stopped | None:
        if self._locked:  # within this command's session
            r = self.runner.run(self.stop_script(role))
            code, out, tail = r.exit_code, r.stdout, r.tail()
        else:  # takes the lock itself, and says so while it waits
            held = self.runner.hold(self.stop_script(role, lock_for="down"))
            out = "\n".join(self._read(held, progress))
            code, tail = held.release(), held.tail()
        if code:
            raise HostError(f"{self.host.name}: stopping the {role} failed (exit {code}): {tail}")
        return parse_stopped(out, role)

    def logs(self, role: str, lines: int) -> str:
        r = self.runner.run(logs_script(self.run_dir, role, lines))
        if not r.ok:
            raise HostError(f"{self.host.name}: reading the {role} log failed (exit {r.exit_code}): {r.tail()}")
        return r.stdout
