#!/usr/bin/env python
"""Benchmark `homecluster up`/`down` against distributed's own SSHCluster on a simulated household.

A fresh 3-host household (network namespaces with their own sshd, see tests/household.py) is built with
prefix "hb" on 10.213.59.0/24, so it never collides with the tests' "hc" household on 10.213.57.0/24.
Host 1 runs the scheduler, hosts 2 and 3 one worker process each (nthreads 1, memory_limit 1GB).

The two tools are measured alternately in the same run (homecluster, SSHCluster, homecluster, ...):

* homecluster: `python -m homecluster up -i INV` as a subprocess, timed until it returns (it returns once every
  worker registered); checked with a Client (untimed); then `python -m homecluster down -i INV`, timed.
* SSHCluster: construction + Client + `client.wait_for_workers(2)` ("up"); `client.close(); cluster.close()`
  ("down").

After each "down" the host namespaces are polled until no Dask process (anything but sshd) is left: "gone" is
the time from the start of down until then. What is still alive after a grace period is an orphan: it is
reported and killed.

    python bench/bench_up.py [--rounds N] [--json PATH]

Needs root (network namespaces); exits 0 with a message when the household cannot be built here.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from household import Household, can_build  # noqa: E402

PREFIX, SUBNET = "hb", "10.213.59"
NAMES = ("desktop", "study", "attic")  # host 1 = scheduler, hosts 2 and 3 = one worker each
HC_PORTS = (8786, 8787)  # homecluster: scheduler, dashboard
SSH_PORTS = (8796, 8797)  # SSHCluster: scheduler, dashboard (different, so a slow port release never mixes them)
N_WORKERS = 2
CLI_TIMEOUT = 180.0  # seconds for one homecluster command
WAIT_TIMEOUT = 120.0  # seconds for SSHCluster workers
GONE_GRACE = 10.0  # seconds after `down` returned before a remaining process counts as an orphan
POLL = 0.05

HC, SSH = "homecluster", "SSHCluster"


class BenchError(RuntimeError):
    """A tool failed in one round; the message says how."""


# --- processes on the simulated hosts ----------------------------------------------------------------------

def _is_sshd(cmdline: str) -> bool:
    """The listening sshd (/usr/sbin/sshd -f ...) and its session processes (sshd: root@notty)."""
    return cmdline.startswith("sshd") or cmdline.split(" ", 1)[0].endswith("/sshd")


def dask_processes(hh: Household) -> dict[str, list[tuple[int, str]]]:
    """Per host, every process in its namespace except sshd: dask schedulers, workers, nanny children.

    Matching on `distributed.cli` alone would miss the nanny's worker child (a multiprocessing spawn child whose
    command line does not name distributed), so anything that is not sshd counts.
    """
    found = {}
    for host in hh.hosts:
        procs = [(pid, cmd) for pid, cmd in hh.processes(host.name) if not _is_sshd(cmd)]
        if procs:
            found[host.name] = procs
    return found


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


def check_workers(address: str, hh: Household) -> dict:
    """Connect a Client and check that the two workers run on hosts 2 and 3 with 1 thread each."""
    from distributed import Client

    with Client(address, timeout="20s") as client:
        info = client.scheduler_info(n_workers=-1) if _takes_n_workers(client) else client.scheduler_info()
        workers = info["workers"]
    want_ips = {h.address for h in hh.hosts[1:]}
    ips = sorted(w["host"] for w in workers.values())
    threads = sorted(w["nthreads"] for w in workers.values())
    if len(workers) != N_WORKERS or set(ips) != want_ips or threads != [1] * N_WORKERS:
        raise BenchError(f"expected {N_WORKERS} workers on {sorted(want_ips)} with 1 thread each at {address}, "
                         f"found {len(workers)} on {ips} with threads {threads}")
    return {"workers": len(workers), "ips": ips, "names": sorted(str(w.get("name")) for w in workers.values())}


def _takes_n_workers(client) -> bool:
    import inspect
    return "n_workers" in inspect.signature(client.scheduler_info).parameters


# --- homecluster --------------------------------------------------------------------------------------------

def run_cli(args: list[str], cwd: Path, timeout: float = CLI_TIMEOUT) -> dict:
    """Run `python -m homecluster ARGS`; return exit code, wall time, output and timestamped stderr lines."""
    wall0, t0 = time.time(), time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "homecluster", *args], cwd=cwd, text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out: list[str] = []
    marks: list[tuple[float, str]] = []

    def read_out() -> None:
        out.append(proc.stdout.read())

    def read_err() -> None:
        for line in proc.stderr:
            marks.append((time.perf_counter() - t0, line.rstrip("\n")))

    readers = [threading.Thread(target=read_out, daemon=True), threading.Thread(target=read_err, daemon=True)]
    for t in readers:
        t.start()
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        rc = None
    elapsed = time.perf_counter() - t0
    for t in readers:
        t.join(5)
    return {"rc": rc, "seconds": elapsed, "stdout": "".join(out), "stderr_marks": marks, "wall0": wall0}


def _cli_failure(what: str, res: dict) -> BenchError:
    err = "\n".join(f"  [{t:6.2f}s] {line}" for t, line in res["stderr_marks"])
    code = "timed out" if res["rc"] is None else f"exit {res['rc']}"
    return BenchError(f"`homecluster {what}` failed ({code}) after {res['seconds']:.2f} s\n"
                      f"stdout:\n{res['stdout']}\nstderr:\n{err}")


_LOG_TS = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) - ")


def _log_time(path: Path, needle: str, last: bool = False) -> float | None:
    """Wall-clock time (epoch) of the first (or last) line of a dask log containing needle."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return None
    found = None
    for line in lines:
        m = _LOG_TS.match(line)
        if m and needle in line:
            found = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            if not last:
                break
    return found


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return None


def _hc_up_phases(res: dict, run: Path) -> dict:
    """Where `up` spends its time: its progress lines on stderr (one line per change when not a tty), the
    pid files its start scripts write (mtime = when the process was spawned) and the dask logs' timestamps.
    Every value is seconds since the CLI was launched."""
    w0, total, marks = res["wall0"], res["seconds"], res["stderr_marks"]
    sched, workers = run / NAMES[0], [run / n for n in NAMES[1:]]
    checking = next((t for t, line in marks if line.startswith("checking")), None)
    noticed = next((t for t, line in marks if line.startswith(f"waiting for workers: {N_WORKERS}/")), None)
    spawns = [_mtime(d / f"{role}.pid") for d, role in [(sched, "scheduler")] + [(w, "worker") for w in workers]]
    sched_ready = _log_time(sched / "scheduler.log", "Scheduler at")
    registered = [_log_time(w / "worker.log", "Registered to") for w in workers]
    t = {"cli_started": checking}  # interpreter + imports (fabric, distributed) + inventory
    if None not in spawns:
        t["first_spawn"], t["last_spawn"] = min(spawns) - w0, max(spawns) - w0  # + SSH connect, probe, start
    if sched_ready is not None:
        t["scheduler_ready"] = sched_ready - w0
    if None not in registered:
        t["last_registered"] = max(registered) - w0
    t["cli_noticed"] = noticed
    t["cli_returned"] = total
    return {k: v for k, v in t.items() if v is not None}


def _hc_down_phases(res: dict, run: Path) -> dict:
    """Last log line of the workers and of the scheduler during `down`, in seconds since the CLI was launched."""
    w0 = res["wall0"]
    t = {"workers_last_log": [_log_time(run / n / "worker.log", " - ", last=True) for n in NAMES[1:]],
         "scheduler_last_log": [_log_time(run / NAMES[0] / "scheduler.log", " - ", last=True)]}
    out = {k: max(v) - w0 for k, v in t.items() if None not in v and max(v) > w0}
    out["cli_returned"] = res["seconds"]
    return out


def round_homecluster(hh: Household, inv: Path, cwd: Path, state: dict, notes: list[str]) -> dict:
    address = f"tcp://{hh.hosts[0].address}:{HC_PORTS[0]}"
    ensure_clean(hh, f"{HC} up", notes)
    state["hc_maybe_up"] = True
    up = run_cli(["up", "-i", str(inv)], cwd)
    if up["rc"] != 0:
        raise _cli_failure(f"up -i {inv}", up)
    check = check_workers(address, hh)  # outside the timed region
    run = inv.parent / "run" / "bench"  # spec.run_dir: <run_directory>/<cluster name>/<host name>
    up_phases = _hc_up_phases(up, run)
    t_down = time.perf_counter()
    down = run_cli(["down", "-i", str(inv)], cwd)
    if down["rc"] != 0:
        raise _cli_failure(f"down -i {inv}", down)
    state["hc_maybe_up"] = False
    gone, orphans = wait_gone(hh, t_down)
    if orphans:
        notes.append(f"{HC} down left processes (killed): {orphans}")
    return {"up": up["seconds"], "down": down["seconds"], "gone": gone, "orphans": orphans,
            "phases": up_phases, "down_phases": _hc_down_phases(down, run), "check": check}


# --- SSHCluster ---------------------------------------------------------------------------------------------

class _Marks(logging.Handler):
    """Record when distributed.deploy.ssh logs the remote 'Scheduler at' / 'worker at' lines (and silence them)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.t0 = time.perf_counter()
        self.marks: list[tuple[float, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.marks.append((time.perf_counter() - self.t0, record.getMessage()))


def _ssh_logger() -> logging.Logger:
    log = logging.getLogger("distributed.deploy.ssh")
    log.setLevel(logging.INFO)
    log.propagate = False
    return log


def round_sshcluster(hh: Household, state: dict, notes: list[str]) -> dict:
    from distributed import Client
    from distributed.deploy.ssh import SSHCluster

    a1 = hh.hosts[0].address
    ensure_clean(hh, f"{SSH} up", notes)
    log, marks = _ssh_logger(), _Marks()
    log.addHandler(marks)
    try:
        t0 = marks.t0 = time.perf_counter()
        cluster = SSHCluster(
            hosts=[h.address for h in hh.hosts],
            connect_options={"known_hosts": str(hh.known_hosts), "client_keys": [str(hh.client_key)],
                             "username": "root"},
            remote_python=sys.executable,
            scheduler_options={"host": a1, "port": SSH_PORTS[0], "dashboard_address": f"{a1}:{SSH_PORTS[1]}"},
            worker_options={"nthreads": 1, "memory_limit": "1GB", "n_workers": 1},
        )
        state["cluster"] = cluster
        t_ctor = time.perf_counter() - t0
        client = Client(cluster)
        state["client"] = client
        client.wait_for_workers(N_WORKERS, timeout=WAIT_TIMEOUT)
        t_up = time.perf_counter() - t0
    finally:
        log.removeHandler(marks)
    check = check_workers(f"tcp://{a1}:{SSH_PORTS[0]}", hh)  # outside the timed region, a separate Client
    t_down = time.perf_counter()
    client.close()
    cluster.close()
    t_closed = time.perf_counter() - t_down
    state["client"] = state["cluster"] = None
    at_return = dask_processes(hh)
    gone, orphans = wait_gone(hh, t_down)
    if orphans:
        notes.append(f"{SSH} close left processes (killed): {orphans}")
    sched_at = next((t for t, m in marks.marks if "Scheduler at" in m), None)
    worker_at = [t for t, m in marks.marks if "worker at" in m.lower()]
    phases = {}  # seconds since the constructor was called
    if sched_at is not None:
        phases["scheduler_ready"] = sched_at  # remote 'Scheduler at' line read over SSH
    if worker_at:
        phases["last_worker_started"] = max(worker_at)  # remote 'Start worker at' line (registration follows)
    phases["constructor_returned"] = t_ctor
    phases["workers_registered"] = t_up  # Client(cluster) + wait_for_workers returned
    return {"up": t_up, "down": t_closed, "gone": gone, "orphans": orphans, "phases": phases, "check": check,
            "alive_when_close_returned": sum(len(p) for p in at_return.values())}


def _close_sshcluster(state: dict) -> None:
    for key in ("client", "cluster"):
        obj = state.get(key)
        if obj is not None:
            try:
                obj.close()
            except Exception as e:  # noqa: BLE001 - cleanup continues
                print(f"cleanup: {key}.close() failed: {e!r}", file=sys.stderr)
            state[key] = None


# --- baselines and the report -------------------------------------------------------------------------------

def baseline(argv: list[str], n: int = 3) -> float:
    """Median wall time of a short local command (start-up costs that are part of the figures)."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _stats(values: list[float | None]) -> dict | None:
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def summarize(results: dict[str, list[dict]]) -> dict:
    summary = {}
    for tool, runs in results.items():
        summary[tool] = {m: _stats([r[m] for r in runs]) for m in ("up", "down", "gone")}
        for field in ("phases", "down_phases"):
            keys = list(dict.fromkeys(k for r in runs for k in r.get(field, {})))  # first-seen order = timeline
            summary[tool][f"{field}_median"] = {
                k: statistics.median([r[field][k] for r in runs if k in r.get(field, {})]) for k in keys}
    ratios = {}
    for m in ("up", "down", "gone"):
        a, b = summary.get(HC, {}).get(m), summary.get(SSH, {}).get(m)
        if a and b:
            ratios[m] = {"median": a["median"] / b["median"], "min": a["min"] / b["min"]}
    return {"tools": summary, "ratios_homecluster_over_sshcluster": ratios}


def print_report(results: dict[str, list[dict]], summ: dict, base: dict, errors: list[str],
                 notes: list[str]) -> None:
    def f(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f}"

    print("\nper round (seconds; gone = from start of down until no dask process is left on any host)")
    for tool, runs in results.items():
        for i, r in enumerate(runs, 1):
            print(f"  {tool:<12} #{i}  up {f(r['up'])}  down {f(r['down'])}  gone {f(r['gone'])}")
    print()
    header = f"{'tool':<14}{'up median':>10}{'up min':>9}{'down median':>13}{'down min':>10}{'gone median':>13}" \
             f"{'rounds':>8}"
    print(header)
    print("-" * len(header))
    for tool in (HC, SSH):
        s = summ["tools"].get(tool)
        if not s or not s["up"]:
            print(f"{tool:<14}{'(no successful round)':>40}")
            continue
        print(f"{tool:<14}{f(s['up']['median']):>10}{f(s['up']['min']):>9}{f(s['down']['median']):>13}"
              f"{f(s['down']['min']):>10}{f((s['gone'] or {}).get('median')):>13}{s['up']['n']:>8}")
    r = summ["ratios_homecluster_over_sshcluster"]
    if r:
        print(f"{'hc/SSHCluster':<14}{f(r['up']['median']):>10}{f(r['up']['min']):>9}"
              f"{f(r['down']['median']):>13}{f(r['down']['min']):>10}"
              f"{f(r.get('gone', {}).get('median')):>13}")
        verdict = "met" if r["up"]["median"] <= 1.0 else "NOT met"
        print(f"\ngoal up ratio <= 1.0 (median): {verdict} ({r['up']['median']:.2f})")
    print("\nwhere the time goes: timeline, medians of seconds since the start of up / down")
    for tool in (HC, SSH):
        for field in ("phases", "down_phases"):
            ph = summ["tools"].get(tool, {}).get(f"{field}_median") or {}
            if ph:
                label = "up" if field == "phases" else "down"
                print(f"  {tool:<12} {label:<5}" + ", ".join(f"{k} {v:.2f}" for k, v in ph.items()))
    print(f"  baselines    `python -m homecluster --version` {base['homecluster_cli_start']:.2f} "
          f"(paid by every up and down); `python -c 'import distributed'` {base['import_distributed']:.2f}")
    early = [r["alive_when_close_returned"] for r in results.get(SSH, []) if r.get("alive_when_close_returned")]
    if early:
        print(f"\nnote: SSHCluster's close() returned while {max(early)} of its processes were still running "
              f"(in {len(early)}/{len(results[SSH])} rounds): its 'down' does not wait, compare 'gone' instead")
    for note in notes:
        print(f"\nnote: {note}")
    for err in errors:
        print(f"\nERROR: {err}")


# --- main ---------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5, help="rounds per tool, interleaved (default 5)")
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON to PATH")
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds must be at least 1")

    ok, reason = can_build()
    if not ok:
        print(f"bench_up: skipped: cannot build the simulated household here: {reason}")
        return 0
    from conftest import household_inventory  # imports pytest and yaml; only needed from here on

    import dask
    import distributed

    results: dict[str, list[dict]] = {HC: [], SSH: []}
    errors: list[str] = []
    notes: list[str] = []
    state: dict = {"hc_maybe_up": False, "client": None, "cluster": None}
    inv = hh = None
    with tempfile.TemporaryDirectory(prefix="homecluster-bench-") as tmp:
        tmp = Path(tmp)
        try:
            t0 = time.perf_counter()
            hh = Household(names=NAMES, workdir=tmp / "household", prefix=PREFIX, subnet=SUBNET)
            hh.__enter__()
            build_s = time.perf_counter() - t0
            print(f"household {PREFIX} built in {build_s:.2f} s: "
                  + ", ".join(f"{h.name}={h.address}" for h in hh.hosts))
            (tmp / "hc").mkdir()
            inv = household_inventory(
                hh, tmp / "hc" / "inventory.yaml", "bench", scheduler=NAMES[0],
                workers={NAMES[0]: 0, NAMES[1]: 1, NAMES[2]: 1},
                cluster_extra={"scheduler_port": HC_PORTS[0], "dashboard_port": HC_PORTS[1]})
            # SSHCluster passes this process's dask config to the remote processes: keep their scratch in tmp.
            dask.config.set({"temporary-directory": str(tmp / "sshcluster-scratch")})
            base = {"homecluster_cli_start": baseline([sys.executable, "-m", "homecluster", "--version"]),
                    "import_distributed": baseline([sys.executable, "-c", "import distributed"])}
            print(f"baselines: homecluster CLI start {base['homecluster_cli_start']:.2f} s, "
                  f"import distributed {base['import_distributed']:.2f} s")
            for i in range(1, args.rounds + 1):
                for tool in (HC, SSH):
                    try:
                        r = (round_homecluster(hh, inv, tmp, state, notes) if tool == HC
                             else round_sshcluster(hh, state, notes))
                        results[tool].append(r)
                        print(f"round {i} {tool:<12} up {r['up']:.2f} s, down {r['down']:.2f} s, "
                              f"gone {_fmt(r['gone'])} s", flush=True)
                    except Exception as e:  # noqa: BLE001 - one failed round is reported, the others still run
                        msg = f"round {i} {tool}: {type(e).__name__}: {e}"
                        errors.append(msg)
                        print(msg, file=sys.stderr, flush=True)
                        _cleanup_tools(hh, inv, tmp, state, notes)
            summ = summarize(results)
            print_report(results, summ, base, errors, notes)
            if args.json:
                data = {"config": {"rounds": args.rounds, "prefix": PREFIX, "subnet": SUBNET,
                                   "hosts": {h.name: h.address for h in hh.hosts},
                                   "homecluster_ports": HC_PORTS, "sshcluster_ports": SSH_PORTS,
                                   "python": sys.version.split()[0], "dask": dask.__version__,
                                   "distributed": distributed.__version__, "cpus": os.cpu_count(),
                                   "machine": platform.platform(), "household_build_seconds": build_s},
                        "baselines": base, "rounds": results, **summ, "errors": errors, "notes": notes}
                Path(args.json).write_text(json.dumps(data, indent=2, default=str))
                print(f"\nwrote {args.json}")
            return 1 if errors else 0
        finally:
            if hh is not None:
                try:
                    _cleanup_tools(hh, inv, tmp, state, notes, quiet=True)
                finally:
                    hh.close()


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _cleanup_tools(hh: Household, inv: Path | None, cwd: Path, state: dict, notes: list[str],
                   quiet: bool = False) -> None:
    """homecluster down and SSHCluster close (whatever may be running), then kill what is left."""
    _close_sshcluster(state)
    if inv is not None and state.get("hc_maybe_up"):
        res = run_cli(["down", "-i", str(inv)], cwd)
        if res["rc"] != 0:
            print(f"cleanup: homecluster down failed: {_cli_failure('down', res)}", file=sys.stderr)
        state["hc_maybe_up"] = False
    _, orphans = wait_gone(hh, time.perf_counter())  # SSHCluster.close() does not wait for its processes
    if orphans and not quiet:
        notes.append(f"still running {GONE_GRACE:g} s after cleaning up a failed round, killed: {orphans}")


if __name__ == "__main__":
    sys.exit(main())
