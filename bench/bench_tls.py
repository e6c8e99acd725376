#!/usr/bin/env python
"""Benchmark what mutual TLS costs a homecluster cluster: the same work on a tls:// and a tcp:// cluster, side by side.

A fresh 3-host household (network namespaces with their own sshd, see tests/household.py) is built with
prefix "hbt" on 10.213.75.0/24, so it never collides with the tests' "hc" (10.213.57), bench_up's "hb"
(10.213.59), bench_setup's "hk" (10.213.63) or bench_install's "hq" (10.213.65) household. Two clusters run on it
from their own inventories (own directory, cluster name, run directory and ports), each with its scheduler on
host 1 (desktop) and one worker process with 1 thread (memory_limit 1GB) on hosts 2 and 3 (study, attic):

* tls: cluster bench-tls (ports 8886/8887), no `tls:` key, i.e. the default: mutual TLS.
* tcp: cluster bench-tcp (ports 8896/8897), `cluster: {tls: false}`: plain tcp://.

$HOMECLUSTER_CONFIG (where `up` makes the CA and the certificates, and where connect() finds the client's) is a
temporary directory of the run. Both clusters are started with `python -m homecluster up -i INV`, a fresh process
each, timed: the cold up of each (tls first; its time includes making the cluster's CA and certificates), printed
for information only. Each cluster is then checked (scheduler address scheme, 2 workers on hosts 2 and 3 with
1 thread each) and warmed up with a small untimed map and joblib batch, so the first timed round does not pay
for the first connections, imports and function deserialisation on the workers.

Both clusters stay up for the whole run: while one is measured the other idles (heartbeats only), which is the
same for both, so it is fair. Bringing them up and down every round instead would make each round's figures
those of freshly started workers (cold connection pools and caches) and add two cold ups per round of machine
load, which is noise and not what TLS costs a running cluster.

Every round measures, per kind of work, both clusters one after the other; which one goes first alternates from
one kind to the next and from one round to the next (so over the rounds each goes first equally often):

* map: `client.gather(client.map(inc, range(N_TASKS), pure=False))` on a Client kept open for the whole run (one
  per cluster, not the default Client); the time from submit until all results are back, checked.
* joblib: `with joblib_on_cluster(inv): Parallel(n_jobs=-1)(delayed(square)(i) for i in range(M_JOBLIB))`; only
  the Parallel call is timed (not the connection of the block's Client), results checked.
* connect: a fresh `connect(inv)` (dask Client creation: connection, TLS handshake and the scheduler's identity);
  CONNECTS of them per round, closed untimed; the round's figure is their median.

The report gives per kind the median, min and max of both, the ratio tls / tcp (median over median, min over
min, and per round), the throughput (tasks per second at the median), how busy the whole machine was during each
measurement (all simulated hosts share its cores; with other work running the figures are noisy), and whether
the throughput ratios (map, joblib) meet the goal "TLS costs at most 20 %" (median ratio <= 1.20; connect is
information: a handshake per new Client). At the end both clusters are brought
down and the host namespaces are polled until no Dask process (anything but sshd) is left; what is still alive
after a grace period is reported and killed; then the household is torn down. The same cleanup runs when
anything fails.

    python bench/bench_tls.py [--rounds N] [--json PATH]

Needs root (network namespaces); exits 0 with a message when the household cannot be built here.
"""

from __future__ import annotations

import importlib
import os
import signal
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from common import (BenchError, Household, build_household, compile_sources, dask_processes, fmt_stat, goal,
                    machine_counters, machine_load, note_error, parse_args, print_errors, ratio, run_checked, run_cli,
                    run_config, skipped, stats, write_json)

PREFIX, SUBNET = "hbt", "10.213.75"
NAMES = ("desktop", "study", "attic")  # host 1 = both schedulers, hosts 2 and 3 = one worker of each cluster
TLS, TCP = "tls", "tcp"
KINDS = (TLS, TCP)
CLUSTERS = {TLS: "bench-tls", TCP: "bench-tcp"}
PORTS = {TLS: (8886, 8887), TCP: (8896, 8897)}  # scheduler, dashboard
N_WORKERS = 2
N_TASKS = 2000  # tiny tasks per map
M_JOBLIB = 500  # calls per joblib batch
CONNECTS = 3  # fresh Clients per round and cluster
WARM_TASKS, WARM_JOBLIB = 200, 50
GOAL_RATIO = 1.20  # "TLS costs at most 20 %" of task throughput
THROUGHPUT = ("map", "joblib")  # what the goal is about; a connect (the handshake, once per Client) is information
CLI_TIMEOUT = 180.0  # seconds for one homecluster command
STEP_TIMEOUT = 120.0  # seconds for one measurement (map, joblib batch, connects)
GONE_GRACE = 10.0  # seconds after down before a remaining process counts as an orphan
POLL = 0.05

MEASURES = ("map", "joblib", "connect")
WHAT = {"map": f"map {N_TASKS} tiny tasks", "joblib": f"joblib {M_JOBLIB} calls", "connect": "connect (Client)"}
COUNT = {"map": N_TASKS, "joblib": M_JOBLIB, "connect": 1}


def inc(x: int) -> int:
    return x + 1


def square(x: int) -> int:
    return x * x


@contextmanager
def deadline(seconds: float, what: str):
    """Raise BenchError in this (the main) thread if the block takes longer than seconds."""
    def expired(signum, frame):
        raise BenchError(f"{what} took longer than {seconds:g} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# --- processes on the simulated hosts (as bench_up does it) ------------------------------------------------

def wait_gone(hh: Household, grace: float = GONE_GRACE) -> tuple[float | None, dict]:
    """Poll until no dask process is left on any host: (seconds it took, or None; what was left and killed)."""
    t0 = time.perf_counter()
    while True:
        found = dask_processes(hh)
        if not found:
            return time.perf_counter() - t0, {}
        if time.perf_counter() - t0 >= grace:
            for name, procs in found.items():
                hh.kill(name, [pid for pid, _ in procs])  # SIGKILL, waits for them
            return None, {h: [f"{pid} {cmd[:160]}" for pid, cmd in procs] for h, procs in found.items()}
        time.sleep(POLL)


# --- the clusters -------------------------------------------------------------------------------------------

def write_inventories(hh: Household, tmp: Path) -> dict[str, Path]:
    """One inventory per cluster in its own directory (so its own run directory): see the module docstring."""
    from conftest import household_inventory  # imports pytest and yaml; only needed from here on

    invs = {}
    for kind in KINDS:
        (tmp / kind).mkdir()
        extra = {"scheduler_port": PORTS[kind][0], "dashboard_port": PORTS[kind][1]}
        if kind == TCP:
            extra["tls"] = False
        invs[kind] = household_inventory(hh, tmp / kind / "inventory.yaml", CLUSTERS[kind], scheduler=NAMES[0],
                                         workers={NAMES[0]: 0, NAMES[1]: 1, NAMES[2]: 1}, cluster_extra=extra)
    return invs


def check_cluster(client, kind: str, hh: Household) -> dict:
    """The scheduler speaks the expected protocol and has the two 1-thread workers on hosts 2 and 3."""
    import inspect

    address = client.scheduler.address
    takes_n = "n_workers" in inspect.signature(client.scheduler_info).parameters
    workers = (client.scheduler_info(n_workers=-1) if takes_n else client.scheduler_info())["workers"]
    want_ips = {h.address for h in hh.hosts[1:]}
    ips = sorted(w["host"] for w in workers.values())
    threads = sorted(w["nthreads"] for w in workers.values())
    schemes = sorted({a.split("://", 1)[0] for a in [address, *workers]})
    if schemes != [kind] or len(workers) != N_WORKERS or set(ips) != want_ips or threads != [1] * N_WORKERS:
        raise BenchError(f"{kind}: expected {N_WORKERS} {kind}:// workers on {sorted(want_ips)} with 1 thread each "
                         f"at a {kind}:// scheduler, found scheduler {address} and workers {sorted(workers)} "
                         f"with threads {threads}")
    return {"scheduler": address, "workers": sorted(workers)}


# --- the measurements ---------------------------------------------------------------------------------------

def run_map(client, n: int) -> float:
    """Submit n tiny tasks and gather them; seconds, results checked. (Not distributed.wait: it takes the
    default Client, and these are not.)"""
    with deadline(STEP_TIMEOUT, f"map of {n} tasks"):
        t0 = time.perf_counter()
        futures = client.map(inc, range(n), pure=False)
        results = client.gather(futures)
        seconds = time.perf_counter() - t0
    if results != list(range(1, n + 1)):
        raise BenchError(f"map of {n} tasks returned wrong results")
    del futures
    return seconds


def run_joblib(inv, m: int, check_backend: bool = False) -> float:
    """A joblib batch of m calls on the cluster; seconds of the Parallel call alone, results checked
    (check_backend: also that joblib's backend uses the block's Client, i.e. this cluster)."""
    from joblib import Parallel, delayed, parallel

    from homecluster.api import joblib_on_cluster

    with deadline(STEP_TIMEOUT, f"joblib batch of {m} calls"):
        with joblib_on_cluster(inv) as client:
            if check_backend:
                backend = parallel.get_active_backend()[0]
                used = getattr(backend, "client", None)
                if used is not client:
                    raise BenchError(f"joblib's backend {backend!r} does not use the Client of "
                                     f"joblib_on_cluster ({client.scheduler.address})")
            t0 = time.perf_counter()
            results = Parallel(n_jobs=-1)(delayed(square)(i) for i in range(m))
            seconds = time.perf_counter() - t0
    if results != [i * i for i in range(m)]:
        raise BenchError(f"joblib batch of {m} calls returned wrong results")
    return seconds


def run_connect(inv, n: int = CONNECTS) -> float:
    """Median seconds of n fresh connect(inv) (each closed, untimed)."""
    from homecluster import connect

    times = []
    with deadline(STEP_TIMEOUT, f"{n} connects"):
        for _ in range(n):
            t0 = time.perf_counter()
            client = connect(inv, set_as_default=False)
            times.append(time.perf_counter() - t0)
            client.close()
    return statistics.median(times)


def measure(what: str, kind: str, state: dict) -> float:
    if what == "map":
        return run_map(state["clients"][kind], N_TASKS)
    if what == "joblib":
        return run_joblib(state["invs"][kind], M_JOBLIB)
    return run_connect(state["invs"][kind])


def run_rounds(rounds: int, state: dict, errors: list[str]) -> list[dict]:
    """Each round: every kind of work on both clusters, the first of the two alternating (see the docstring)."""
    results = []
    for i in range(rounds):
        rnd: dict = {what: {} for what in MEASURES}
        rnd["cores_busy"] = {what: {} for what in MEASURES}
        for j, what in enumerate(MEASURES):
            order = KINDS if (i + j) % 2 == 0 else KINDS[::-1]
            for kind in order:
                try:
                    before, t0 = machine_counters(), time.perf_counter()
                    rnd[what][kind] = measure(what, kind, state)
                    load = machine_load(before, machine_counters(), time.perf_counter() - t0)
                    rnd["cores_busy"][what][kind] = load["cores_busy"]
                except Exception as e:  # noqa: BLE001 - reported; the other measurements still run
                    note_error(errors, f"round {i + 1} {what} {kind}", e)
            got = rnd[what]
            rat = f", ratio {got[TLS] / got[TCP]:.2f}" if TLS in got and TCP in got else ""
            print(f"round {i + 1} {what:<8} " + ", ".join(f"{k} {got[k]:.3f} s" for k in order if k in got)
                  + f" ({order[0]} first){rat}", flush=True)
        results.append(rnd)
    return results


# --- figures and the report ---------------------------------------------------------------------------------

def summarize(results: list[dict]) -> dict:
    out = {}
    for what in MEASURES:
        s = {k: stats([r[what].get(k) for r in results]) for k in KINDS}
        per_round = [r[what][TLS] / r[what][TCP] for r in results if TLS in r[what] and TCP in r[what]]
        rat = ratio(s[TLS], s[TCP])
        out[what] = {**s, "ratio": rat, "ratio_per_round": per_round,
                     "per_second": {k: COUNT[what] / s[k]["median"] for k in KINDS if s[k]},
                     "goal_met": None if rat is None or what not in THROUGHPUT else rat["median"] <= GOAL_RATIO,
                     "cores_busy": {k: stats([r["cores_busy"][what].get(k) for r in results]) for k in KINDS}}
    return out


W = 30


def _f3(s: dict | None, which: str) -> str:
    return "-" if not s else f"{s[which]:.3f}"


def print_report(summ: dict, cold: dict, errors: list[str], notes: list[str]) -> None:
    print("\ncold `homecluster up` (the first up of each cluster, information only): "
          + ", ".join(f"{k} {cold[k]:.2f} s" for k in KINDS if k in cold)
          + (" (tls includes making the CA and certificates)" if TLS in cold else ""))
    head = f"{'seconds':<{W}}{'median':>9}{'min':>9}{'max':>9}{'rounds':>8}{'per s (median)':>16}"
    print("\n" + head)
    print("-" * len(head))
    for what in MEASURES:
        m = summ[what]
        unit = "tasks/s" if what != "connect" else "conn/s"
        for k in KINDS:
            s = m[k]
            ps = f"{m['per_second'][k]:.0f} {unit}" if k in m["per_second"] else "-"
            print(f"{WHAT[what] + ', ' + k:<{W}}{_f3(s, 'median'):>9}{_f3(s, 'min'):>9}{_f3(s, 'max'):>9}"
                  f"{s['n'] if s else 0:>8}{ps:>16}")
        if m["ratio"]:
            per = ", ".join(f"{x:.2f}" for x in m["ratio_per_round"])
            print(f"{'  ratio tls / tcp':<{W}}{fmt_stat(m['ratio']):>9}{fmt_stat(m['ratio'], 'min'):>9}"
                  f"   (per round: {per})")
    print(f"\nmachine during each measurement (cores busy of its {os.cpu_count()}, all of it: both clusters, this "
          "process and anything else running; medians):")
    print("  " + "; ".join(f"{what} " + ", ".join(f"{k} {fmt_stat(summ[what]['cores_busy'][k])}" for k in KINDS)
                           for what in MEASURES))
    print()
    for what in MEASURES:
        rat = summ[what]["ratio"]
        if what not in THROUGHPUT:
            if rat:
                extra = (summ[what][TLS]["median"] - summ[what][TCP]["median"]) * 1000
                print(f"information: {WHAT[what]} ratio tls / tcp {rat['median']:.2f} (+{extra:.0f} ms per new "
                      "Client: the TLS handshake, paid once per connection)")
            continue
        if rat:
            print(goal(f"TLS costs at most 20 %: {WHAT[what]} ratio tls / tcp <= {GOAL_RATIO:.2f}",
                       rat["median"], summ[what]["goal_met"]))
        else:
            print(f"goal TLS costs at most 20 %: {WHAT[what]}: no figures")
    for note in notes:
        print(f"\nnote: {note}")
    print_errors(errors)


# --- cleanup and main ---------------------------------------------------------------------------------------

def cleanup(hh: Household, state: dict, notes: list[str]) -> None:
    """Close this process's Clients, bring down every cluster that may be up, then kill whatever is left."""
    for kind, client in list(state["clients"].items()):
        try:
            client.close()
        except Exception as e:  # noqa: BLE001 - cleanup continues
            print(f"cleanup: closing the {kind} Client failed: {e!r}", file=sys.stderr)
        del state["clients"][kind]
    for kind in KINDS:
        if state["maybe_up"].get(kind):
            path = state["paths"][kind]
            res = run_cli(["down", "-i", str(path)], path.parent, timeout=CLI_TIMEOUT)
            if res["rc"] != 0:
                notes.append(f"`homecluster down` of {kind} failed (rc {res['rc']}): {res['stderr'][-2000:]}")
            else:
                state["down"][kind] = res["seconds"]
            state["maybe_up"][kind] = False
    gone, orphans = wait_gone(hh)
    state["gone"] = gone
    if orphans:
        notes.append(f"still running {GONE_GRACE:g} s after down, killed: {orphans}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv, __doc__, 7, "rounds of every measurement on both clusters, interleaved (default 7)")
    if skipped("bench_tls"):
        return 0
    compile_sources()
    errors: list[str] = []
    notes: list[str] = []
    state: dict = {"paths": {}, "invs": {}, "clients": {}, "maybe_up": {}, "down": {}, "gone": None}
    hh = None
    t_start = time.perf_counter()
    old_config = os.environ.get("HOMECLUSTER_CONFIG")
    with tempfile.TemporaryDirectory(prefix="homecluster-bench-tls-") as tmp:
        tmp = Path(tmp)
        # The clusters' certificates stay in this run (the CLI processes inherit it; conftest keeps it).
        os.environ["HOMECLUSTER_CONFIG"] = str(tmp / "config")
        try:
            for module in ("distributed", "joblib", "joblib._dask"):  # imported before anything is timed
                importlib.import_module(module)
            from homecluster import connect
            from homecluster.api import load_inventory

            load_avg = os.getloadavg()
            if load_avg[0] > (os.cpu_count() or 1) / 2:
                notes.append(f"the machine was busy when the run started (load average {load_avg[0]:.1f} on "
                             f"{os.cpu_count()} cores): the figures are noisy, compare the per-round ratios")
            hh, build_s = build_household(tmp / "household", PREFIX, SUBNET, NAMES)
            paths = state["paths"] = write_inventories(hh, tmp)
            cold: dict[str, float] = {}
            checks = {}
            for kind in KINDS:
                state["maybe_up"][kind] = True
                cold[kind] = run_checked(["up", "-i", str(paths[kind])], paths[kind].parent,
                                         timeout=CLI_TIMEOUT)["seconds"]
                print(f"cold up {kind}: {cold[kind]:.2f} s", flush=True)
                inv = state["invs"][kind] = load_inventory(str(paths[kind]))
                client = state["clients"][kind] = connect(inv, set_as_default=False)
                checks[kind] = check_cluster(client, kind, hh)
                run_map(client, WARM_TASKS)  # warm-up, untimed
                run_joblib(inv, WARM_JOBLIB, check_backend=True)
                print(f"  {kind}: scheduler {checks[kind]['scheduler']}, workers {checks[kind]['workers']}, "
                      "warmed up", flush=True)
            results = run_rounds(args.rounds, state, errors)
            summ = summarize(results)
            cleanup(hh, state, notes)
            print_report(summ, cold, errors, notes)
            total = time.perf_counter() - t_start
            gone = (f"no Dask process left on any host {state['gone']:.2f} s after" if state["gone"] is not None
                    else "Dask processes had to be killed after (see the note)")
            print("\ndown: " + ", ".join(f"{k} {state['down'][k]:.2f} s" for k in KINDS if k in state["down"])
                  + f"; {gone}")
            print(f"whole run {total:.0f} s")
            if args.json:
                data = {"config": run_config(args.rounds, hh, build_s, clusters=CLUSTERS, ports=PORTS,
                                             n_tasks=N_TASKS, m_joblib=M_JOBLIB, connects_per_round=CONNECTS,
                                             goal_ratio=GOAL_RATIO),
                        "cold_up": cold, "checks": checks, "rounds": results, "summary": summ,
                        "down": state["down"], "gone": state["gone"], "seconds": total,
                        "errors": errors, "notes": notes}
                write_json(args.json, data)
            return 1 if errors else 0
        except Exception as e:  # noqa: BLE001 - reported, then cleaned up
            note_error(errors, "bench_tls", e)
            return 1
        finally:
            try:
                if hh is not None:
                    try:
                        cleanup(hh, state, notes)
                    finally:
                        hh.close()
            finally:
                if old_config is None:
                    os.environ.pop("HOMECLUSTER_CONFIG", None)
                else:
                    os.environ["HOMECLUSTER_CONFIG"] = old_config


if __name__ == "__main__":
    sys.exit(main())
