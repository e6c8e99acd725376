#!/usr/bin/env python
"""Benchmark `homecluster up`/`down` against distributed's own SSHCluster on a simulated household.

A fresh 3-host household (network namespaces with their own sshd, see tests/household.py) is built with
prefix "hb" on 10.213.59.0/24, so it never collides with the tests' "hc" household on 10.213.57.0/24.
Host 1 runs the scheduler, hosts 2 and 3 one worker process each (nthreads 1, memory_limit 1GB).

Four contenders are measured interleaved in every round, each round starting with another one:

* homecluster: `python -m homecluster up -i INV` as a fresh process, timed until it returns (it returns once
  every worker registered); checked with a Client (untimed; over TLS, homecluster's default, with this machine's
  client certificate; the SSHCluster contenders stay plain tcp); `up` run once more on the running cluster (the
  no-op `up`, timed separately); then `python -m homecluster down -i INV`, timed.
* homecluster unsupervised: the same CLI with `ProcessBackend.supervised = False` (the Dask processes started
  directly, no supervisor installed or run), up / check / down as above: what supervision adds to a cold up.
* SSHCluster script: a fresh `python -c SCRIPT` that builds the same SSHCluster, waits for the 2 workers and
  prints READY; "up" is from starting it until READY is read. It is then told "stop" on stdin and closes its
  Client and cluster; "down" is from "stop" until the process exited. This is what an SSHCluster user pays:
  like homecluster, a fresh interpreter that imports distributed. The primary comparison.
* SSHCluster in-process: the same SSHCluster built in this (already warm) benchmark process: construction +
  Client + `wait_for_workers(2)` ("up"); `client.close(); cluster.close()` ("down"). A secondary reference.

After each "down" the host namespaces are polled until no Dask process (anything but sshd) is left: "gone" is
the time from the start of down until then. What is still alive after a grace period is an orphan: it is
reported and killed.

    python bench/bench_up.py [--rounds N] [--json PATH]

Needs root (network namespaces); exits 0 with a message when the household cannot be built here.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import (CLI, BenchError, Household, baseline, build_household, cli_start_baseline, fmt, fmt_stat, goal,
                    note_error, parse_args, print_errors, ratio, run_checked, run_cli, run_config, skipped, stats,
                    write_json)
from common import compile_sources, dask_processes

PREFIX, SUBNET = "hb", "10.213.59"
NAMES = ("desktop", "study", "attic")  # host 1 = scheduler, hosts 2 and 3 = one worker each
HC_PORTS = (8786, 8787)  # scheduler, dashboard; each contender has its own, so a slow port release never
SCRIPT_PORTS = (8806, 8807)  # mixes two of them up
INPROC_PORTS = (8796, 8797)
BARE_PORTS = (8776, 8777)
N_WORKERS = 2
CLI_TIMEOUT = 180.0  # seconds for one homecluster command, or for the SSHCluster script to exit after "stop"
WAIT_TIMEOUT = 120.0  # seconds for SSHCluster workers
GONE_GRACE = 10.0  # seconds after down returned before a remaining process counts as an orphan
POLL = 0.05

HC, BARE, SCRIPT, INPROC = "homecluster", "homecluster unsupervised", "SSHCluster script", "SSHCluster in-process"
CONTENDERS = (HC, BARE, SCRIPT, INPROC)
SUPERVISION_BUDGET = 0.2  # seconds supervision may add to a cold up
UNSUPERVISED_CLI = (sys.executable, "-c", "from homecluster.backends.process import ProcessBackend; "
                    "ProcessBackend.supervised = False; from homecluster.cli.main import run; run()")
METRICS = ("up", "down", "gone")

# The SSHCluster user's script. Its options arrive as JSON in argv[1]: {"cluster": SSHCluster kwargs,
# "n_workers": int, "timeout": seconds}.
SSHCLUSTER_SCRIPT = """\
import json
import sys

from distributed import Client, SSHCluster

opts = json.loads(sys.argv[1])
cluster = SSHCluster(**opts["cluster"])
client = Client(cluster)
client.wait_for_workers(opts["n_workers"], timeout=opts["timeout"])
print("READY", flush=True)
sys.stdin.readline()  # "stop"
client.close()
cluster.close()
"""


# --- processes on the simulated hosts ----------------------------------------------------------------------

def kill_processes(found: dict[str, list[tuple[int, str]]]) -> None:
    """SIGTERM, then SIGKILL after 3 s, the given pids (processes this benchmark caused to be started)."""
    pids = [pid for procs in found.values() for pid, _ in procs]
    for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
        alive = []
        for pid in pids:
            try:
                os.kill(pid, sig)
                alive.append(pid)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while alive and time.monotonic() < deadline:
            alive = [p for p in alive if _pid_alive(p)]
            time.sleep(POLL)
        if not alive:
            return
        pids = alive


def _pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def wait_gone(hh: Household, t_start: float, grace: float = GONE_GRACE) -> tuple[float | None, dict]:
    """Poll until no dask process is left on any host: (seconds since t_start, or None; orphans killed)."""
    deadline = time.perf_counter() + grace
    while True:
        found = dask_processes(hh)
        if not found:
            return time.perf_counter() - t_start, {}
        if time.perf_counter() >= deadline:
            kill_processes(found)
            return None, {h: [f"{pid} {cmd[:160]}" for pid, cmd in procs] for h, procs in found.items()}
        time.sleep(POLL)


def ensure_clean(hh: Household, before: str, notes: list[str]) -> None:
    """Kill (and note) any dask process left over before a measurement, so rounds never overlap."""
    found = dask_processes(hh)
    if found:
        notes.append(f"leftovers before {before}, killed: {found}")
        kill_processes(found)


def finish_down(hh: Household, who: str, t_down: float, notes: list[str]) -> dict:
    """After a contender's down returned: how many of its processes still ran, then wait until all are gone."""
    alive = sum(len(p) for p in dask_processes(hh).values())
    gone, orphans = wait_gone(hh, t_down)
    if orphans:
        notes.append(f"{who} down left processes (killed): {orphans}")
    return {"gone": gone, "orphans": orphans, "alive_when_down_returned": alive}


def check_workers(address: str, hh: Household, security=None) -> dict:
    """Connect a Client and check that the two workers run on hosts 2 and 3 with 1 thread each. `security`: a
    distributed.Security for a TLS scheduler (homecluster's); None for plain tcp (the SSHCluster contenders')."""
    import inspect

    from distributed import Client

    with Client(address, timeout="20s", security=security) as client:
        takes_n = "n_workers" in inspect.signature(client.scheduler_info).parameters
        workers = (client.scheduler_info(n_workers=-1) if takes_n else client.scheduler_info())["workers"]
    want_ips = {h.address for h in hh.hosts[1:]}
    ips = sorted(w["host"] for w in workers.values())
    threads = sorted(w["nthreads"] for w in workers.values())
    if len(workers) != N_WORKERS or set(ips) != want_ips or threads != [1] * N_WORKERS:
        raise BenchError(f"expected {N_WORKERS} workers on {sorted(want_ips)} with 1 thread each at {address}, "
                         f"found {len(workers)} on {ips} with threads {threads}")
    return {"workers": len(workers), "ips": ips}


# --- homecluster --------------------------------------------------------------------------------------------

def check_homecluster(inv: Path, hh: Household, port: int) -> dict:
    """check_workers on homecluster's cluster: tls:// (its default), with this machine's client certificate."""
    from homecluster import scheduler
    from homecluster.inventory import load

    ep = scheduler.endpoint(load(str(inv)))
    want = f"tls://{hh.hosts[0].address}:{port}"
    if ep.address != want:
        raise BenchError(f"homecluster's scheduler is at {ep.address}, expected {want}")
    return check_workers(ep.address, hh, ep.security())


def _cli(args: list[str], cwd: Path, program: tuple[str, ...] = CLI) -> float:
    """`python -m homecluster ARGS`, raising BenchError unless it exits 0; returns its seconds."""
    return run_checked(args, cwd, timeout=CLI_TIMEOUT, program=program)["seconds"]


def round_homecluster(hh: Household, inv: Path, cwd: Path, state: dict, notes: list[str]) -> dict:
    """up, check (untimed), no-op up, down, then until gone."""
    ensure_clean(hh, f"{HC} up", notes)
    state["hc_maybe_up"] = True
    up = _cli(["up", "-i", str(inv)], cwd)
    check = check_homecluster(inv, hh, HC_PORTS[0])
    noop_up = _cli(["up", "-i", str(inv)], cwd)
    t_down = time.perf_counter()
    down = _cli(["down", "-i", str(inv)], cwd)
    state["hc_maybe_up"] = False
    return {"up": up, "down": down, "noop_up": noop_up, "check": check, **finish_down(hh, HC, t_down, notes)}


def round_unsupervised(hh: Household, inv: Path, cwd: Path, state: dict, notes: list[str]) -> dict:
    """up and down of the same cluster without the supervisor (its own inventory: other ports, other name)."""
    ensure_clean(hh, f"{BARE} up", notes)
    state["bare_maybe_up"] = True
    up = _cli(["up", "-i", str(inv)], cwd, UNSUPERVISED_CLI)
    check = check_homecluster(inv, hh, BARE_PORTS[0])
    t_down = time.perf_counter()
    down = _cli(["down", "-i", str(inv)], cwd, UNSUPERVISED_CLI)
    state["bare_maybe_up"] = False
    return {"up": up, "down": down, "check": check, **finish_down(hh, BARE, t_down, notes)}


def supervisor_start_cost(tmp: Path, reps: int = 15) -> dict:
    """What the supervisor adds before the Dask process starts, measured alone and side by side: the time until
    a child prints its first line, started directly or through backends/supervisor.py (interleaved)."""
    from homecluster.backends import process

    child = [sys.executable, "-c", "print('up', flush=True)"]
    sup = [sys.executable, str(Path(process.__file__).parent / "supervisor.py"), "--name", "bench",
           "--state", str(tmp / "bench.state"), "--pidfile", str(tmp / "bench.pid"), "--"]
    times: dict[str, list[float]] = {"direct": [], "supervised": []}
    for _ in range(reps):
        for kind, argv in (("direct", child), ("supervised", sup + child)):
            t0 = time.perf_counter()
            p = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, start_new_session=True)
            while "up" not in p.stdout.readline():
                pass
            times[kind].append(time.perf_counter() - t0)
            if kind == "supervised":  # it would restart the child: stop it
                os.killpg(p.pid, signal.SIGTERM)
            p.wait()
    return {k: stats(v) for k, v in times.items()}


# --- SSHCluster ---------------------------------------------------------------------------------------------

def sshcluster_options(hh: Household, ports: tuple[int, int]) -> dict:
    """SSHCluster keyword arguments (JSON-compatible): scheduler on host 1, one 1-thread worker on hosts 2, 3."""
    a1 = hh.hosts[0].address
    return {
        "hosts": [h.address for h in hh.hosts],
        "connect_options": {"known_hosts": str(hh.known_hosts), "client_keys": [str(hh.client_key)],
                            "username": "root"},
        "remote_python": sys.executable,
        "scheduler_options": {"host": a1, "port": ports[0], "dashboard_address": f"{a1}:{ports[1]}"},
        "worker_options": {"nthreads": 1, "memory_limit": "1GB", "n_workers": 1},
    }


def _await_ready(proc: subprocess.Popen, timeout: float) -> float | None:
    """perf_counter time at which the script printed READY; None if it exited or timed out before."""
    got: dict[str, float] = {}

    def read() -> None:
        for line in proc.stdout:
            if line.strip() == "READY":
                got["t"] = time.perf_counter()
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    return got.get("t")


def _script_failure(what: str, proc: subprocess.Popen, errlog: Path) -> BenchError:
    tail = "\n".join(errlog.read_text(errors="replace").splitlines()[-40:])
    rc = proc.poll()
    return BenchError(f"SSHCluster script {what} ({'still running' if rc is None else f'exit {rc}'})\n"
                      f"stderr (last lines):\n{tail}")


def round_script(hh: Household, tmp: Path, state: dict, notes: list[str]) -> dict:
    """A fresh `python -c SSHCLUSTER_SCRIPT`: up = start .. READY, down = "stop" .. exit, then until gone."""
    ensure_clean(hh, f"{SCRIPT} up", notes)
    opts = {"cluster": sshcluster_options(hh, SCRIPT_PORTS), "n_workers": N_WORKERS, "timeout": WAIT_TIMEOUT}
    # SSHCluster passes its dask config to the remote processes: keep their scratch in tmp.
    env = {**os.environ, "DASK_TEMPORARY_DIRECTORY": str(tmp / "sshcluster-scratch")}
    errlog = tmp / "sshcluster-script.stderr"
    with open(errlog, "w") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", SSHCLUSTER_SCRIPT, json.dumps(opts)], cwd=tmp, env=env,
                                text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                start_new_session=True)
    state["script"] = proc
    t_ready = _await_ready(proc, WAIT_TIMEOUT + 30)
    if t_ready is None:
        raise _script_failure("never printed READY", proc, errlog)
    check = check_workers(f"tcp://{hh.hosts[0].address}:{SCRIPT_PORTS[0]}", hh)
    t_down = time.perf_counter()
    try:
        proc.stdin.write("stop\n")
        proc.stdin.close()
        rc = proc.wait(timeout=CLI_TIMEOUT)
    except (BrokenPipeError, subprocess.TimeoutExpired) as e:
        raise _script_failure(f"did not stop ({type(e).__name__})", proc, errlog) from None
    down = time.perf_counter() - t_down
    state["script"] = None
    if rc != 0:
        raise _script_failure("failed on stop", proc, errlog)
    return {"up": t_ready - t0, "down": down, "check": check, **finish_down(hh, SCRIPT, t_down, notes)}


def _kill_script(state: dict) -> None:
    """Kill the SSHCluster script's process group if it still runs (its remote processes: see wait_gone)."""
    proc = state.get("script")
    state["script"] = None
    if proc is not None and proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def round_inprocess(hh: Household, state: dict, notes: list[str]) -> dict:
    """SSHCluster in this process: up = constructor .. wait_for_workers, down = client + cluster close."""
    from distributed import Client, SSHCluster

    ensure_clean(hh, f"{INPROC} up", notes)
    t0 = time.perf_counter()
    cluster = state["cluster"] = SSHCluster(**sshcluster_options(hh, INPROC_PORTS))
    client = state["client"] = Client(cluster)
    client.wait_for_workers(N_WORKERS, timeout=WAIT_TIMEOUT)
    up = time.perf_counter() - t0
    check = check_workers(f"tcp://{hh.hosts[0].address}:{INPROC_PORTS[0]}", hh)  # a separate Client
    t_down = time.perf_counter()
    client.close()
    cluster.close()
    down = time.perf_counter() - t_down
    state["client"] = state["cluster"] = None
    return {"up": up, "down": down, "check": check, **finish_down(hh, INPROC, t_down, notes)}


def _close_inprocess(state: dict) -> None:
    for key in ("client", "cluster"):
        obj = state.get(key)
        if obj is not None:
            try:
                obj.close()
            except Exception as e:  # noqa: BLE001 - cleanup continues
                print(f"cleanup: {key}.close() failed: {e!r}", file=sys.stderr)
            state[key] = None


def cleanup(hh: Household, inv: Path | None, cwd: Path, state: dict, notes: list[str],
            quiet: bool = False) -> None:
    """Stop whatever a failed round may have left running (all three contenders), then kill what is left."""
    _kill_script(state)
    _close_inprocess(state)
    for flag, path in (("hc_maybe_up", inv), ("bare_maybe_up", state.get("bare_inv"))):
        if path is not None and state.get(flag):
            res = run_cli(["down", "-i", str(path)], cwd, timeout=CLI_TIMEOUT)
            if res["rc"] != 0:
                print(f"cleanup: homecluster down failed (rc {res['rc']}):\n{res['stderr']}", file=sys.stderr)
            state[flag] = False
    _, orphans = wait_gone(hh, time.perf_counter())  # also the killed script's remote processes
    if orphans and not quiet:
        notes.append(f"still running {GONE_GRACE:g} s after cleaning up a failed round, killed: {orphans}")


# --- figures and the report ---------------------------------------------------------------------------------

def summarize(results: dict[str, list[dict]]) -> dict:
    """Median/min/max per contender and metric, the no-op up, and homecluster's ratios to both SSHClusters."""
    tools = {tool: {m: stats([r.get(m) for r in runs]) for m in METRICS} for tool, runs in results.items()}
    tools[HC]["noop_up"] = stats([r.get("noop_up") for r in results[HC]])
    ratios = {f"{HC} / {other}": {m: ratio(tools[HC].get(m), tools[other].get(m)) for m in METRICS}
              for other in (BARE, SCRIPT, INPROC)}
    paired = [a["up"] - b["up"] for a, b in zip(results[HC], results[BARE])]  # same round: side by side
    return {"tools": tools, "ratios": ratios, "supervision_cost_up": stats(paired)}


LABEL_W = 41


def _row(label: str, cells: dict, n: object = "") -> str:
    """One table line: median and min of up, down, gone (a missing metric prints '-')."""
    vals = "".join(f"{fmt_stat(cells.get(m)):>9}{fmt_stat(cells.get(m), 'min'):>7}" for m in METRICS)
    return f"{label:<{LABEL_W}}{vals}{n!s:>8}"


def print_report(results: dict[str, list[dict]], summ: dict, base: dict, errors: list[str],
                 notes: list[str]) -> None:
    print("\nper round (seconds; gone = from start of down until no dask process is left on any host)")
    for tool, runs in results.items():
        for i, r in enumerate(runs, 1):
            extra = f"  no-op up {fmt(r['noop_up'])}" if "noop_up" in r else ""
            print(f"  {tool:<22} #{i}  up {fmt(r['up'])}  down {fmt(r['down'])}  gone {fmt(r['gone'])}{extra}")
    print()
    print(f"{'seconds':<{LABEL_W}}" + "".join(f"{m:>16}" for m in METRICS))
    head = f"{'':<{LABEL_W}}" + f"{'median':>9}{'min':>7}" * len(METRICS) + f"{'rounds':>8}"
    print(head)
    print("-" * len(head))
    for tool in CONTENDERS:
        s = summ["tools"][tool]
        print(_row(tool, s, s["up"]["n"] if s["up"] else 0))
    noop = summ["tools"][HC]["noop_up"]
    print(_row(f"{HC} up (no-op)", {"up": noop}, noop["n"] if noop else 0))
    print(_row(f"ratio hc / {SCRIPT}", summ["ratios"][f"{HC} / {SCRIPT}"]))  # primary: both fresh processes
    print(_row(f"ratio hc / {INPROC} (ref.)", summ["ratios"][f"{HC} / {INPROC}"]))
    print(_row(f"ratio hc / {BARE}", summ["ratios"][f"{HC} / {BARE}"]))
    primary = summ["ratios"][f"{HC} / {SCRIPT}"]["up"]
    if primary:
        print("\n" + goal(f"up ratio {HC} / {SCRIPT} <= 1.0", primary["median"], primary["median"] <= 1.0))
    cost = summ["supervision_cost_up"]
    if cost:
        print(goal(f"supervision adds <= {SUPERVISION_BUDGET} s to a cold up (up - unsupervised up, per round)",
                   cost["median"], cost["median"] <= SUPERVISION_BUDGET, " s"))
    if noop:
        print(goal("no-op up < 1 s", noop["median"], noop["median"] < 1.0, " s"))
    s = summ.get("supervisor_start")
    if s:
        print(f"the supervisor's own start before the Dask process: {fmt(s['supervised']['median'])} s to a "
              f"child's first line through it, {fmt(s['direct']['median'])} s directly (medians of "
              f"{s['direct']['n']} interleaved starts): +{s['supervised']['median'] - s['direct']['median']:.3f} s")
    print(f"baselines: `python -m homecluster --version` {base['homecluster_cli_start']:.2f} s, "
          f"`python -c 'import distributed'` {base['import_distributed']:.2f} s (both fresh-process costs)")
    for tool in (SCRIPT, INPROC):
        early = [r["alive_when_down_returned"] for r in results[tool] if r.get("alive_when_down_returned")]
        if early:
            print(f"\nnote: {tool}: down returned while up to {max(early)} of its processes still ran "
                  f"(in {len(early)}/{len(results[tool])} rounds): compare 'gone'")
    for note in notes:
        print(f"\nnote: {note}")
    print_errors(errors)


# --- main ---------------------------------------------------------------------------------------------------

def run_rounds(rounds: int, hh: Household, inv: Path, tmp: Path, state: dict, notes: list[str],
               errors: list[str]) -> dict[str, list[dict]]:
    """Every round runs the four contenders in turn, starting with another one each round; a failed one is
    reported and cleaned up, the rest go on."""
    steps = {HC: lambda: round_homecluster(hh, inv, tmp, state, notes),
             BARE: lambda: round_unsupervised(hh, state["bare_inv"], tmp, state, notes),
             SCRIPT: lambda: round_script(hh, tmp, state, notes),
             INPROC: lambda: round_inprocess(hh, state, notes)}
    results: dict[str, list[dict]] = {tool: [] for tool in CONTENDERS}
    for i in range(1, rounds + 1):
        shift = (i - 1) % len(CONTENDERS)  # each round starts with another contender: no one always goes first
        for tool in CONTENDERS[shift:] + CONTENDERS[:shift]:
            try:
                r = steps[tool]()
            except Exception as e:  # noqa: BLE001 - one failed round is reported, the others still run
                note_error(errors, f"round {i} {tool}", e)
                cleanup(hh, inv, tmp, state, notes)
                continue
            results[tool].append(r)
            extra = f", no-op up {r['noop_up']:.2f} s" if "noop_up" in r else ""
            print(f"round {i} {tool:<22} up {r['up']:.2f} s, down {r['down']:.2f} s, gone {fmt(r['gone'])} s"
                  f"{extra}", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv, __doc__, 5, "rounds per contender, interleaved (default 5)")
    if skipped("bench_up"):
        return 0
    compile_sources()
    from conftest import household_inventory  # imports pytest and yaml; only needed from here on

    import dask
    import distributed  # noqa: F401 - imported before the rounds: the in-process SSHCluster runs in a warm process

    # The in-process SSHCluster would log every remote output line to this process's stderr (the script's goes
    # to a file).
    logging.getLogger("distributed.deploy.ssh").setLevel(logging.WARNING)
    errors: list[str] = []
    notes: list[str] = []
    state: dict = {"hc_maybe_up": False, "bare_maybe_up": False, "bare_inv": None, "script": None, "client": None,
                   "cluster": None}
    inv = hh = None
    with tempfile.TemporaryDirectory(prefix="homecluster-bench-") as tmp:
        tmp = Path(tmp)
        try:
            hh, build_s = build_household(tmp / "household", PREFIX, SUBNET, NAMES)
            (tmp / "hc").mkdir()
            inv = household_inventory(
                hh, tmp / "hc" / "inventory.yaml", "bench", scheduler=NAMES[0],
                workers={NAMES[0]: 0, NAMES[1]: 1, NAMES[2]: 1},
                cluster_extra={"scheduler_port": HC_PORTS[0], "dashboard_port": HC_PORTS[1]})
            (tmp / "bare").mkdir()
            state["bare_inv"] = household_inventory(
                hh, tmp / "bare" / "inventory.yaml", "bare", scheduler=NAMES[0],
                workers={NAMES[0]: 0, NAMES[1]: 1, NAMES[2]: 1},
                cluster_extra={"scheduler_port": BARE_PORTS[0], "dashboard_port": BARE_PORTS[1]})
            # SSHCluster passes this process's dask config to the remote processes: keep their scratch in tmp.
            dask.config.set({"temporary-directory": str(tmp / "sshcluster-scratch")})
            base = {"homecluster_cli_start": cli_start_baseline(),
                    "import_distributed": baseline([sys.executable, "-c", "import distributed"])}
            print(f"baselines: homecluster CLI start {base['homecluster_cli_start']:.2f} s, "
                  f"import distributed {base['import_distributed']:.2f} s")
            results = run_rounds(args.rounds, hh, inv, tmp, state, notes, errors)
            summ = summarize(results)
            summ["supervisor_start"] = supervisor_start_cost(tmp)
            print_report(results, summ, base, errors, notes)
            if args.json:
                ports = {HC: HC_PORTS, BARE: BARE_PORTS, SCRIPT: SCRIPT_PORTS, INPROC: INPROC_PORTS}
                data = {"config": run_config(args.rounds, hh, build_s, ports=ports),
                        "baselines": base, "rounds": results, **summ, "errors": errors, "notes": notes}
                write_json(args.json, data)
            return 1 if errors else 0
        finally:
            if hh is not None:
                try:
                    cleanup(hh, inv, tmp, state, notes, quiet=True)
                finally:
                    hh.close()


if __name__ == "__main__":
    sys.exit(main())
