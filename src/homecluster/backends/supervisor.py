"""homecluster-supervisor: keep one command running on a household machine, restarting it when it exits.

homecluster copies this file as text onto a host and runs it with the host's Python (3.8+, Linux or macOS,
stdlib only) in front of ``dask worker``: a dask worker that loses its scheduler exits with status 0
(distributed removed reconnection), so without this a scheduler restart or a network outage would leave the
host without workers for good.

Usage: ``PY supervisor.py --name worker --state STATEFILE --pidfile PIDFILE -- CMD ARGS...``

The caller redirects stdout/stderr to a log, shared by the command and the ``homecluster-supervisor:`` lines.
PIDFILE gets this program's pid, STATEFILE a JSON object rewritten atomically at every change. The command is
restarted after a back-off (1 s, doubling, at most 30 s; 1 s again after a run of 60 s or more). SIGTERM or
SIGINT stops it: SIGTERM to the command, SIGKILL to its process group after a grace period. SIGHUP is ignored
(the command inherits that). Overrides: HOMECLUSTER_BACKOFF="first:max:healthy", HOMECLUSTER_STOP_GRACE (s).
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time

PREFIX = "homecluster-supervisor:"
TICK = 0.05  # every wait polls at this pace, so a stop request is acted on within TICK
LEFTOVER_PATIENCE = 1.0
_stop_requested = False


def next_delay(previous, ran, first, cap, healthy):
    """Seconds to wait before the next restart.

    ``previous`` is the delay used before the last restart (None before the first one), ``ran`` how long the
    command ran before this exit. A run of at least ``healthy`` seconds starts the back-off again at ``first``.
    """
    if previous is None or ran >= healthy:
        return first
    return min(previous * 2, cap)


def log(message):
    """Print one supervisor line to the shared log."""
    print(PREFIX, message, flush=True)


def write_atomic(path, text):
    """Replace ``path`` by ``text`` so that readers see the old or the new content, never a partial one."""
    tmp = "%s.%d.tmp" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def describe(code):
    """Human words for a Popen-style return code (negative: killed by that signal)."""
    if code >= 0:
        return "exited with code %d" % code
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = "unknown"
    return "killed by signal %d (%s)" % (-code, name)


def _request_stop(signum, frame):
    global _stop_requested
    _stop_requested = True


def sleep_unless_stopped(seconds):
    """Sleep ``seconds`` in short steps; return False as soon as a stop is requested."""
    deadline = time.monotonic() + seconds
    while not _stop_requested:
        left = deadline - time.monotonic()
        if left <= 0:
            return True
        time.sleep(min(TICK, left))
    return False


def spawn(name, command):
    """Start ``command`` in its own process group with stdin from /dev/null; None if it cannot be executed."""
    group = {"process_group": 0} if sys.version_info >= (3, 11) else {"preexec_fn": os.setpgrp}
    try:
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, **group)
    except OSError as e:  # FileNotFoundError, PermissionError, exec format errors
        log("cannot execute %s command %s: %s" % (name, command[0], e))
        return None


def group_members(pgid):
    """Pids of the live (not zombie) processes in group ``pgid``; without /proc (macOS) [pgid] if it exists."""
    if not os.path.isdir("/proc/self"):
        try:
            os.killpg(pgid, 0)
        except OSError:
            return []
        return [pgid]
    members = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/stat" % entry) as f:
                state, _, group = f.read().rsplit(")", 1)[1].split()[:3]  # the command name may hold ")"
        except (OSError, ValueError):
            continue  # gone meanwhile
        if int(group) == pgid and state != "Z":
            members.append(int(entry))
    return members


def kill_leftovers(name, pgid, patience):
    """Give what is left in group ``pgid`` ``patience`` seconds to exit, then SIGKILL it; True if it had to."""
    deadline = time.monotonic() + patience
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(TICK)
    members = group_members(pgid)
    if not members:
        return False
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        return False
    log("killed processes left in the process group of %s: %s" % (name, " ".join(map(str, members))))
    return True


def stop_child(name, child, grace):
    """SIGTERM the child, SIGKILL its group after ``grace`` seconds; reap it. True if anything was SIGKILLed."""
    killed = False
    if child.poll() is None:
        os.kill(child.pid, signal.SIGTERM)  # the child only: dask's CLI then closes its nanny and worker itself
        deadline = time.monotonic() + grace
        while child.poll() is None and time.monotonic() < deadline:
            time.sleep(TICK)
    if child.poll() is None:
        os.killpg(child.pid, signal.SIGKILL)  # SIGKILL also ends processes frozen by SIGSTOP
        child.wait()
        killed = True
        log("%s did not stop within %g s of SIGTERM; killed" % (name, grace))
    # A moment for grandchildren that exit on their own once their parent is gone (multiprocessing helpers).
    return kill_leftovers(name, child.pid, LEFTOVER_PATIENCE) or killed


class State(dict):
    """The state file's content; ``save(**changes)`` updates it and rewrites the file."""

    def __init__(self, path, name):
        super().__init__(supervisor_pid=os.getpid(), name=name, child_pid=None, running=False, started_at=None,
                         restarts=0, last_exit=None, last_exit_at=None, next_start_at=None, stopping=False,
                         killed=False)
        self.path = path

    def save(self, **changes):
        """Apply ``changes`` and write the whole state atomically."""
        self.update(changes)
        write_atomic(self.path, json.dumps(self) + "\n")


def run_child(name, command, state):
    """Start the command once; return when it has exited or a stop is requested (None: could not execute)."""
    started = time.time()
    child = spawn(name, command)
    state.save(child_pid=child and child.pid, running=child is not None, started_at=started, next_start_at=None)
    while child is not None and child.poll() is None and not _stop_requested:
        time.sleep(TICK)
    return child


def record_exit(name, child, state, delay, backoff):
    """Log and record the command's exit; return the delay before its restart."""
    ended = time.time()
    ran = ended - state["started_at"]
    code = 127 if child is None else child.returncode
    delay = next_delay(delay, ran, *backoff)
    log("%s %s after %.1f s; restart %d in %g s" % (name, describe(code), ran, state["restarts"] + 1, delay))
    state.save(child_pid=None, running=False, last_exit=code, last_exit_at=ended, next_start_at=ended + delay)
    return delay


def stop(name, child, state, grace):
    """Record that we are stopping; stop the last child if it still runs and reap what is left of its group."""
    state.save(stopping=True, next_start_at=None)
    if child is None:
        return
    changes = {"killed": stop_child(name, child, grace)}
    if state["running"]:
        changes.update(child_pid=None, running=False, last_exit=child.returncode, last_exit_at=time.time())
    state.save(**changes)


def run(name, command, state, backoff, grace):
    """Run ``command`` until a stop is requested, restarting it with back-off; then stop it."""
    delay, child = None, None
    while not _stop_requested:
        child = run_child(name, command, state)
        if _stop_requested:
            break
        delay = record_exit(name, child, state, delay, backoff)
        if not sleep_unless_stopped(delay):
            break
        if child is not None:  # nothing of the old run may keep holding its ports
            kill_leftovers(name, child.pid, 0)
        state["restarts"] += 1  # written with the next start
    stop(name, child, state, grace)


def detach():
    """Leave the caller's session (an SSH login, a terminal): its end, or a Ctrl-C there, must not reach us.
    (macOS has no setsid(1), so this is done here; it fails harmlessly when we already lead a session.)"""
    try:
        os.setsid()
    except OSError:
        pass


def parse_args(argv):
    """Return (options, command) from ``--name N --state S --pidfile P -- CMD ARGS...``."""
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(prog="supervisor.py", usage="%(prog)s --name NAME --state STATEFILE "
                                     "--pidfile PIDFILE -- CMD ARGS...")
    for option in ("--name", "--state", "--pidfile"):
        parser.add_argument(option, required=True)
    options, command = parser.parse_args(argv[:split]), argv[split + 1:]
    if not command:
        parser.error("no command after --")
    return options, command


def main(argv=None):
    """Supervise the command given on the command line; exit 0 once it has been stopped."""
    options, command = parse_args(sys.argv[1:] if argv is None else argv)
    backoff = tuple(float(x) for x in os.environ.get("HOMECLUSTER_BACKOFF", "1:30:60").split(":"))
    if len(backoff) != 3:
        sys.exit("HOMECLUSTER_BACKOFF must be first:max:healthy (seconds)")
    grace = float(os.environ.get("HOMECLUSTER_STOP_GRACE", "10"))
    detach()
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _request_stop)
    signal.signal(signal.SIGINT, _request_stop)
    write_atomic(options.pidfile, "%d\n" % os.getpid())
    run(options.name, command, State(options.state, options.name), backoff, grace)
    return 0


if __name__ == "__main__":
    sys.exit(main())
