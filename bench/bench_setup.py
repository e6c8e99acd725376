#!/usr/bin/env python
"""Benchmark `homecluster setup`: first setup on 1 host against 3 hosts, and the no-op setup, on a simulated household.

A fresh 3-host household (network namespaces with their own sshd, see tests/household.py) is built with
prefix "hk" on 10.213.63.0/24, so it never collides with the tests' "hc" (10.213.57) or bench_up's "hb"
(10.213.59) household. The inventory has an `environment:` section and no `python:` keys, so every host gets a
managed environment (the client's dask stack, no extra packages), as in tests/test_setup.py.

The laptop's wheelhouse ($HOMECLUSTER_CACHE, here a fresh directory, with fresh pip and uv caches too) is warmed
once before the rounds by one `homecluster setup study` into a throwaway run directory: the lock is resolved
and every wheel downloaded there ("download once", reported apart). After that every timed run must say
"wheelhouse: nothing to download", so download time is never part of the comparison.

Every round, in this order:

* 1 host: `python -m homecluster setup study -i INV` with a new, empty run_directory: a real first setup
  (every wheel sent over SFTP, uv unpacked and venv created meanwhile, packages installed offline).
* 3 hosts: `python -m homecluster setup -i INV` for all 3 hosts, with another new, empty run_directory.
* no-op: right after, the same command again on the same run_directory: every host must be "up to date".

Each is a fresh process timed until it exits; exit code 0 and the per-host SETUP column are checked. Its
stderr progress lines are timestamped as they arrive, and the files setup leaves on each host (last wheel
sent, uv unpacked, venv created, lock hash recorded) give their modification times, so each run also has a
timeline: where the time goes. The run directories (~100 MB each) are deleted after each round.

    python bench/bench_setup.py [--rounds N] [--json PATH]

Goals (issue): first setup on 3 hosts at most 1.3x the time on 1 host (the hosts are set up in parallel); the
no-op setup under 3 s in total for 3 hosts. Needs root (network namespaces) and a laptop that reaches the
package index; exits 0 with a message when the household cannot be built here.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from pathlib import Path

from common import (CLIENT_MINOR, BenchError, Household, build_household, cli_start_baseline, cpu_budgets_available,
                    diff, fmt, fmt_stat, print_ratio_row,
                    fresh_laptop, goal, kind_seconds, line_time, managed_inventory, note_error, output_of, parse_args,
                    print_errors, print_events, print_machine_loads, print_round_one, print_seconds_table, rm,
                    run_checked, run_config, skipped, stats, timeline, write_json)
from common import compile_sources

PREFIX, SUBNET = "hk", "10.213.63"
NAMES = ("desktop", "study", "attic")  # Household's default names
ONE = "study"  # the host of the 1-host runs (and of the warm-up)
CLUSTER = "bench"  # cluster name: run_dir = <run_directory>/bench/<host>
PORTS = (8830, 8831)  # scheduler, dashboard (setup starts nothing; only so an `up` would not collide)
CLI_TIMEOUT = 900.0  # seconds for one setup (the warm-up downloads every wheel)
NOOP_GOAL = 3.0  # seconds, no-op setup of 3 hosts
RATIO_GOAL = 1.3  # first setup, 3 hosts / 1 host

ONE_HOST, THREE_HOSTS, NOOP = "first setup, 1 host", "first setup, 3 hosts", "no-op setup, 3 hosts"
ONE_HOST_B, THREE_HOSTS_B = "first setup, 1 host, budgets", "first setup, 3 hosts, budgets"
KINDS = (ONE_HOST, THREE_HOSTS, NOOP, ONE_HOST_B, THREE_HOSTS_B)
FIRST = ((ONE_HOST, [ONE]), (THREE_HOSTS, list(NAMES)))
FIRST_BUDGETED = ((ONE_HOST_B, [ONE]), (THREE_HOSTS_B, list(NAMES)))
MACHINE_CORES = (os.cpu_count() or 2) / (len(NAMES) + 1)  # each host and the laptop: an equal share of the cores
WIDTH = 32  # of the kind labels in the report
HOST_PHASES = ("send", "prepare", "sync", "total")  # per host, see breakdown()


# --- the inventory ----------------------------------------------------------------------------------------

def write_inventory(hh: Household, path: Path, run_directory: Path) -> Path:
    """The managed-environment inventory (see tests/test_setup.py), pointing at the given run_directory.

    Always the same file, so the lock beside it (inventory.lock) made by the warm-up is reused: its inputs do not
    include run_directory."""
    return managed_inventory(hh, path, CLUSTER, {"study": 1, "attic": 1}, PORTS, run_directory)


# --- running the CLI --------------------------------------------------------------------------------------

def setup_rows(stdout: str) -> dict[str, dict]:
    """Per host row of the setup table: {"setup": "installed (sent 40 wheels)", "status": "ok"}."""
    lines = stdout.splitlines()
    try:
        head = next(i for i, ln in enumerate(lines) if ln.startswith("HOST "))
    except StopIteration:
        return {}
    header = lines[head]
    cols = [header.index(c) for c in ("SETUP", "STATUS")]
    rows = {}
    for ln in lines[head + 1:]:
        if not ln.strip():
            break
        name = ln.split()[0]
        if name in NAMES:
            rows[name] = {"setup": ln[cols[0]:cols[1]].strip(), "status": ln[cols[1]:].strip()}
    return rows


def checked_setup(hosts: list[str], want: str, inv: Path, cwd: Path, env: dict, expect_download: bool = False,
                  preexec=None) -> dict:
    """`homecluster setup [HOST...] -i INV`, which must exit 0 with `want` ("installed"/"up to date") on every
    given host, and download nothing unless expect_download. preexec: see common.run_cli."""
    args = ["setup", *(hosts if hosts != list(NAMES) else []), "-i", str(inv)]
    res = run_checked(args, cwd, timeout=CLI_TIMEOUT, env=env, preexec_fn=preexec)
    cmd = f"`homecluster {' '.join(args)}`"
    rows = setup_rows(res["stdout"])
    counts = {w: sum(1 for r in rows.values() if r["setup"].startswith(w)) for w in ("installed", "up to date")}
    bad = [h for h in hosts if not rows.get(h, {}).get("setup", "").startswith(want)
           or rows[h]["status"] != "ok"]
    if bad or set(rows) != set(hosts) or counts[want] != len(hosts):
        raise BenchError(f"{cmd}: expected {want!r} on {hosts}, got {rows} (counts {counts}) {output_of(res)}")
    downloaded = "wheelhouse: nothing to download" not in res["stdout"]
    if downloaded and not expect_download:
        raise BenchError(f"{cmd} downloaded wheels although the wheelhouse was warm:\n{res['stdout']}")
    sent = {h: _sent(rows[h]["setup"]) for h in hosts}
    return {**res, "rows": rows, "counts": counts, "sent": sent}


def _sent(setup: str) -> int:
    """'installed (sent 40 wheels)' -> 40; 0 when nothing was sent."""
    if "(sent " not in setup:
        return 0
    return int(setup.split("(sent ", 1)[1].split()[0])


# --- where the time goes ----------------------------------------------------------------------------------

def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def host_files(run_directory: Path, host: str, t_wall: float) -> dict[str, float | None]:
    """Seconds from the start of the run at which setup last wrote each of its files on the host.

    The hosts share this machine's file system, so the modification times are on the same clock: last wheel
    written (end of sending), uv unpacked, venv created (pyvenv.cfg), lock hash recorded (the install's end)."""
    hdir = run_directory / CLUSTER / host
    wheels = [m for m in (_mtime(p) for p in (hdir / "wheels").glob("*.whl")) if m is not None]
    stamps = {"last wheel written": max(wheels) if wheels else None,
              "uv unpacked": _mtime(hdir / "uv" / "uv"),
              "venv created": _mtime(hdir / "env" / "pyvenv.cfg"),
              "lock hash recorded": _mtime(hdir / "env" / "homecluster-lock")}
    return {k: (None if v is None else v - t_wall) for k, v in stamps.items()}


def breakdown(res: dict, hosts: list[str], run_directory: Path, fresh: bool) -> dict:
    """A run's timeline (events sorted by time) and its phases in seconds.

    Phases: start (interpreter, imports, inventory; until the first progress line), facts+lock (SSH connect, find
    Python, lock and wheelhouse check; until the first host starts sending, or the exit of a no-op), per host
    send (sending line .. last wheel written), prepare (sending line .. venv created: uv unpacked and the venv
    made while the other wheels arrive), sync (installing line .. lock hash recorded), total (sending line .. lock
    hash recorded), then tail (last host done .. exit: report, closing connections)."""
    lines = res["stderr_lines"]
    files = {h: host_files(run_directory, h, res["t_wall"]) for h in hosts} if fresh else {}
    events = [(t, f"{h}: {what} (file mtime)") for h, stamps in files.items() for what, t in stamps.items()
              if t is not None]

    first_line = lines[0][0] if lines else None
    phases: dict = {"start": first_line}
    sends = [t for t in (line_time(lines, f"{h}: sending") for h in hosts) if t is not None]
    phases["facts+lock"] = None if first_line is None else (min(sends) if sends else res["seconds"]) - first_line
    per_host = {}
    for h in hosts:
        t_send, t_inst = line_time(lines, f"{h}: sending"), line_time(lines, f"{h}: installing")
        st = files.get(h, {})
        last, venv, done = st.get("last wheel written"), st.get("venv created"), st.get("lock hash recorded")
        per_host[h] = {"send": diff(last, t_send), "prepare": diff(venv, t_send), "sync": diff(done, t_inst),
                       "total": diff(done, t_send), "done": done}
    phases["hosts"] = per_host
    dones = [p["done"] for p in per_host.values() if p["done"] is not None]
    phases["tail"] = res["seconds"] - max(dones) if dones else None
    return {"events": timeline(res, events), "phases": phases}


def dir_size(path: Path, seen: set | None = None) -> int:
    """Bytes of the files under path, each hard-linked file once (uv links the env's files to its cache);
    pass the same `seen` set to count a file shared between several directories only in the first."""
    seen = set() if seen is None else seen
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                st = os.lstat(os.path.join(root, f))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


# --- rounds -----------------------------------------------------------------------------------------------

def one_round(i: int, hh: Household, inv_path: Path, runs: Path, cwd: Path, env: dict) -> dict:
    """1 host, 3 hosts, no-op; then, when the household has CPU budgets, 1 host and 3 hosts again with every
    simulated machine capped at MACHINE_CORES. Each first setup gets a fresh run directory; all are deleted at
    the end."""
    out: dict = {}
    dirs = {kind: runs / f"r{i}-{n}" for n, (kind, _) in enumerate(FIRST + FIRST_BUDGETED)}
    try:
        for kind, hosts in FIRST:
            out[kind] = first_setup(hh, hosts, inv_path, dirs[kind], cwd, env)
        d3 = dirs[THREE_HOSTS]
        out["run_directory_bytes"] = dir_size(d3)
        seen: set = set()
        hdir = d3 / CLUSTER / ONE
        out["host_directory_bytes"] = {p.name: dir_size(p, seen) for p in sorted(hdir.iterdir()) if p.is_dir()}

        inv = write_inventory(hh, inv_path, d3)
        r = checked_setup(list(NAMES), "up to date", inv, cwd, env)
        out[NOOP] = _record(r, list(NAMES), d3, fresh=False)
        if hh.budgets:
            hh.cap_cpu(MACHINE_CORES)
            try:
                for kind, hosts in FIRST_BUDGETED:
                    out[kind] = first_setup(hh, hosts, inv_path, dirs[kind], cwd, env, budgets=True)
            finally:
                hh.cap_cpu(None)
        return out
    finally:
        for d in dirs.values():
            rm(d)


def first_setup(hh: Household, hosts: list[str], inv_path: Path, run_directory: Path, cwd: Path, env: dict,
                budgets: bool = False) -> dict:
    """A timed first setup of `hosts` into an empty run_directory; with budgets, the CLI runs in the laptop's CPU
    budget and the record says how long each machine waited for its budget ("throttled")."""
    rm(run_directory)
    inv = write_inventory(hh, inv_path, run_directory)
    before = throttled(hh)
    r = checked_setup(hosts, "installed", inv, cwd, env, preexec=hh.laptop_budget.enter if budgets else None)
    rec = _record(r, hosts, run_directory, fresh=True)
    if budgets:
        rec["throttled"] = {k: v - before[k] for k, v in throttled(hh).items()}
    return rec


def throttled(hh: Household) -> dict[str, float]:
    """Seconds each simulated machine (hosts, then "laptop") has waited for its CPU budget so far."""
    if not hh.budgets:
        return {}
    return {**{n: b.throttled_seconds() for n, b in hh.budgets.items()}, "laptop": hh.laptop_budget.throttled_seconds()}


def _record(res: dict, hosts: list[str], run_directory: Path, fresh: bool) -> dict:
    return {"seconds": res["seconds"], "sent": res["sent"], "counts": res["counts"], "load": res["load"],
            "stdout": res["stdout"],
            **breakdown(res, hosts, run_directory, fresh)}


def warm_up(hh: Household, inv_path: Path, runs: Path, cwd: Path, env: dict) -> dict:
    """One untimed-for-the-comparison `setup study` into a throwaway run directory: resolves the lock and fills
    the wheelhouse. Its time and its download phase are "download once"."""
    d = runs / "warm"
    try:
        inv = write_inventory(hh, inv_path, d)
        r = checked_setup([ONE], "installed", inv, cwd, env, expect_download=True)
        rec = _record(r, [ONE], d, fresh=True)
        lines = r["stderr_lines"]
        t_res, t_dl = line_time(lines, "resolving"), line_time(lines, "downloading")
        t_send = line_time(lines, f"{ONE}: sending")
        rec["resolve"] = diff(t_dl if t_dl is not None else t_send, t_res)
        rec["download"] = diff(t_send, t_dl)
        rec["downloaded"] = next((ln for ln in r["stdout"].splitlines() if ln.startswith("downloaded ")), "")
        return rec
    finally:
        rm(d)


def wheelhouse_size(cache: Path) -> tuple[int, int]:
    wheels = list((cache / "wheelhouse").glob("*/*.whl"))
    return len(wheels), sum(p.stat().st_size for p in wheels)


# --- figures and the report -------------------------------------------------------------------------------

def summarize(rounds: list[dict]) -> dict:
    """Seconds per kind, the 3/1 ratios (shared cores; CPU budgets), phase medians and waits for the budgets."""
    kinds, ratio, per_round = kind_seconds(rounds, KINDS, ONE_HOST, THREE_HOSTS)
    _, ratio_b, per_round_b = kind_seconds(rounds, KINDS, ONE_HOST_B, THREE_HOSTS_B)
    waits = {k: {m: stats([r[k]["throttled"][m] for r in rounds if k in r])
                 for m in rounds[0][k]["throttled"]}
             for k in (ONE_HOST_B, THREE_HOSTS_B) if rounds and k in rounds[0]}
    phases = {}
    for k in KINDS:
        ph = [r[k]["phases"] for r in rounds if k in r]
        if not ph:
            continue
        phases[k] = {name: stats([p[name] for p in ph]) for name in ("start", "facts+lock", "tail")}
        hosts = ph[0]["hosts"]
        phases[k]["hosts"] = {h: {name: stats([p["hosts"][h][name] for p in ph])
                                  for name in HOST_PHASES}
                              for h in hosts}
    return {"seconds": kinds, "ratio_3_over_1": ratio, "ratio_per_round": per_round,
            "ratio_3_over_1_budgets": ratio_b, "ratio_per_round_budgets": per_round_b,
            "machine_cores": MACHINE_CORES, "throttled": waits, "phases": phases}


def print_timeline(title: str, rec: dict) -> None:
    print_events(title, rec)
    ph = rec["phases"]
    print(f"  phases: start {fmt(ph['start'])}, facts+lock {fmt(ph['facts+lock'])}, tail {fmt(ph['tail'])}")
    for h, p in ph["hosts"].items():
        if p["total"] is not None:
            print(f"    {h:<8} " + "  ".join(f"{name} {fmt(p[name])}" for name in HOST_PHASES))


def print_report(warm: dict | None, rounds: list[dict], summ: dict, base: float, house: tuple[int, int],
                 errors: list[str]) -> None:
    if warm:
        print(f"\ndownload once (warm-up `setup {ONE}`, untimed for the comparison): {warm['seconds']:.2f} s in all; "
              f"resolve {fmt(warm['resolve'])} s, download {fmt(warm['download'])} s; {warm['downloaded']}; "
              f"wheelhouse {house[0]} wheels, {house[1] / 1e6:.1f} MB")
    print("\nper round (seconds)")
    for i, r in enumerate(rounds, 1):
        print(f"  #{i}  " + "  ".join(f"{k} {fmt(r[k]['seconds'])}" for k in KINDS if k in r))
    print()
    ratio, ratio_b = summ["ratio_3_over_1"], summ["ratio_3_over_1_budgets"]
    print_seconds_table([(k, summ["seconds"][k]) for k in KINDS], WIDTH, "ratio 3 hosts / 1 host", ratio,
                        summ["ratio_per_round"])
    if ratio_b:
        print_ratio_row("ratio 3 hosts / 1 host, budgets", ratio_b, summ["ratio_per_round_budgets"], WIDTH)
        print(f"\"budgets\": every simulated machine (3 hosts, the laptop) capped at {MACHINE_CORES:g} core, so "
              "each runs at its own speed whatever the others do, as separate computers; without budgets the "
              f"{os.cpu_count()} cores are shared and 3 installs need 3x the CPU of one (see core-seconds below).")
        for k, waits in summ["throttled"].items():
            print(f"  waited for its budget in {k}: " + ", ".join(
                f"{m} {fmt_stat(w)} s" for m, w in waits.items()))
        print("\n" + goal(f"first setup 3 hosts / 1 host <= {RATIO_GOAL}, a CPU budget per machine", ratio_b["median"],
                          ratio_b["median"] <= RATIO_GOAL))
    elif ratio:
        print(f"\n(no CPU budgets here: {cpu_budgets_available()[1]})")
    if ratio:
        print(goal(f"first setup 3 hosts / 1 host <= {RATIO_GOAL}, {os.cpu_count()} cores shared by all machines",
                   ratio["median"], ratio["median"] <= RATIO_GOAL))
    noop = summ["seconds"][NOOP]
    if noop:
        print(goal(f"no-op setup of 3 hosts < {NOOP_GOAL:g} s", noop["median"], noop["median"] < NOOP_GOAL, " s"))
    print(f"baseline: `python -m homecluster --version` {base:.2f} s (fresh-process cost inside every figure)")
    if rounds and "run_directory_bytes" in rounds[0]:
        sent = rounds[0][THREE_HOSTS]["sent"]
        print(f"a 3-host run directory held {rounds[0]['run_directory_bytes'] / 1e6:.0f} MB; wheels sent per host: "
              + ", ".join(f"{h} {n}" for h, n in sent.items()))
        print(f"one host's directory ({ONE}): " + ", ".join(
            f"{name}/ {n / 1e6:.0f} MB" for name, n in rounds[0]["host_directory_bytes"].items()))

    def core_seconds(k: str) -> str:
        core_s = statistics.median(r[k]["load"]["cores_busy"] * r[k]["seconds"] for r in rounds if k in r)
        return f"; {core_s:.1f} core-seconds, so at least {core_s / os.cpu_count():.1f} s on {os.cpu_count()} cores"

    print_machine_loads(rounds, KINDS, lambda k: f"{k:<{WIDTH}}", core_seconds)

    print("\nphase medians (seconds; start = until the first progress line, facts+lock = until the first host "
          "sends, tail = last host done until exit)")
    for k, ph in summ["phases"].items():
        print(f"  {k:<{WIDTH}} start {fmt_stat(ph['start'])}  facts+lock {fmt_stat(ph['facts+lock'])}  "
              f"tail {fmt_stat(ph['tail'])}")
        for h, p in ph["hosts"].items():
            if (p["total"] or {}).get("median") is None:
                continue
            print(f"    {h:<8} " + "  ".join(f"{name} {fmt_stat(p[name])}"
                                            for name in HOST_PHASES))

    print("\nwhere the time goes (one run of each; t = seconds since the process started; stderr lines as they "
          "arrived, file times from what setup wrote on the hosts)")
    if warm:
        print_timeline(f"warm-up `setup {ONE}` (download once)", warm)
    print_round_one(rounds, KINDS, lambda k: k, print_timeline)
    print_errors(errors)


# --- main ---------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv, __doc__, 3, "rounds, each 1 host, 3 hosts, no-op (default 3)")
    if skipped("bench_setup"):
        return 0
    compile_sources()

    errors: list[str] = []
    rounds: list[dict] = []
    warm = None
    hh = None
    with tempfile.TemporaryDirectory(prefix="homecluster-bench-setup-") as tmp:
        tmp = Path(tmp)
        cache, runs, cwd, env = fresh_laptop(tmp)  # empty wheelhouse and pip and uv caches: "download once" is real
        inv_path = cwd / "inventory.yaml"
        try:
            hh, build_s = build_household(tmp / "household", PREFIX, SUBNET, cpu_budgets=cpu_budgets_available()[0])
            base = cli_start_baseline(env)

            try:
                warm = warm_up(hh, inv_path, runs, cwd, env)
                print(f"warm-up (download once) `setup {ONE}`: {warm['seconds']:.2f} s; resolve "
                      f"{fmt(warm['resolve'])} s, download {fmt(warm['download'])} s", flush=True)
            except Exception as e:  # noqa: BLE001 - without a warm wheelhouse the rounds would measure downloads
                note_error(errors, "warm-up", e)
            house = wheelhouse_size(cache)

            for i in range(1, args.rounds + 1 if warm else 1):
                try:
                    r = one_round(i, hh, inv_path, runs, cwd, env)
                except Exception as e:  # noqa: BLE001 - one failed round is reported, the others still run
                    note_error(errors, f"round {i}", e)
                    continue
                rounds.append(r)
                print(f"round {i}: " + ", ".join(f"{k} {r[k]['seconds']:.2f} s" for k in KINDS if k in r), flush=True)

            summ = summarize(rounds)
            print_report(warm, rounds, summ, base, house, errors)
            if args.json:
                config = run_config(args.rounds, hh, build_s, one_host=ONE,
                                    environment={"python": CLIENT_MINOR, "packages": []})
                data = {"config": config, "baseline_cli_start": base,
                        "wheelhouse": {"wheels": house[0], "bytes": house[1]}, "warm_up": warm, "rounds": rounds,
                        **summ, "errors": errors}
                write_json(args.json, data)
            return 1 if errors else 0
        finally:
            if hh is not None:
                hh.close()  # also kills whatever a timed-out setup left running in the host namespaces
            rm(runs)


if __name__ == "__main__":
    sys.exit(main())
