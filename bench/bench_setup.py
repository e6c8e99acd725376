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
  (every wheel sent over SFTP, uv unpacked, venv created, packages installed offline).
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

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from household import Household, can_build  # noqa: E402

PREFIX, SUBNET = "hk", "10.213.63"
NAMES = ("desktop", "study", "attic")  # Household's default names
ONE = "study"  # the host of the 1-host runs (and of the warm-up)
CLUSTER = "bench"  # cluster name: run_dir = <run_directory>/bench/<host>
PORTS = (8830, 8831)  # scheduler, dashboard (setup starts nothing; only so an `up` would not collide)
CLIENT_MINOR = f"{sys.version_info.major}.{sys.version_info.minor}"
CLI_TIMEOUT = 900.0  # seconds for one setup (the warm-up downloads every wheel)
NOOP_GOAL = 3.0  # seconds, no-op setup of 3 hosts
RATIO_GOAL = 1.3  # first setup, 3 hosts / 1 host

ONE_HOST, THREE_HOSTS, NOOP = "first setup, 1 host", "first setup, 3 hosts", "no-op setup, 3 hosts"
KINDS = (ONE_HOST, THREE_HOSTS, NOOP)


class BenchError(RuntimeError):
    """A run failed or did not do what it should; the message says how."""


# --- the inventory ----------------------------------------------------------------------------------------

def write_inventory(hh: Household, path: Path, run_directory: Path) -> Path:
    """The managed-environment inventory (see tests/test_setup.py), pointing at the given run_directory.

    Always the same file, so the lock beside it (inventory.lock) made by the warm-up is reused: its inputs do not
    include run_directory."""
    import yaml
    from conftest import household_inventory

    inv = household_inventory(hh, path, CLUSTER, workers={"study": 1, "attic": 1},
                              cluster_extra={"scheduler_port": PORTS[0], "dashboard_port": PORTS[1]})
    data = yaml.safe_load(inv.read_text())
    del data["defaults"]["python"]
    data["defaults"]["run_directory"] = str(run_directory)
    data["environment"] = {"python": CLIENT_MINOR, "packages": []}
    inv.write_text(yaml.safe_dump(data, sort_keys=False))
    return inv


# --- running the CLI --------------------------------------------------------------------------------------

def run_cli(args: list[str], cwd: Path, env: dict, timeout: float = CLI_TIMEOUT) -> dict:
    """Run `python -m homecluster ARGS` in a fresh interpreter; exit code (None: timed out), seconds, output.

    stderr is read line by line as it arrives, each line with its wall-clock offset from the start (the progress
    lines). The time ends when the process exits, not when its pipes close."""
    counters = machine_counters()
    t_wall = time.time()
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "homecluster", *args], cwd=cwd, env=env, text=True, bufsize=1,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out: list[str] = []
    lines: list[tuple[float, str]] = []

    def read_out() -> None:
        out.append(proc.stdout.read())

    def read_err() -> None:
        for line in proc.stderr:
            lines.append((time.perf_counter() - t0, line.rstrip("\n")))

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
    load = machine_load(counters, machine_counters(), elapsed)
    for t in readers:
        t.join(5)
    return {"rc": rc, "seconds": elapsed, "t_wall": t_wall, "load": load, "stdout": "".join(out),
            "stderr_lines": lines, "stderr": "\n".join(text for _, text in lines)}


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


def checked_setup(hosts: list[str], want: str, inv: Path, cwd: Path, env: dict, expect_download: bool = False) -> dict:
    """`homecluster setup [HOST...] -i INV`, which must exit 0 with `want` ("installed"/"up to date") on every
    given host, and download nothing unless expect_download."""
    args = ["setup", *(hosts if hosts != list(NAMES) else []), "-i", str(inv)]
    res = run_cli(args, cwd, env)
    cmd = f"`homecluster {' '.join(args)}`"
    if res["rc"] != 0:
        code = "timed out" if res["rc"] is None else f"exit {res['rc']}"
        raise BenchError(f"{cmd} failed ({code}) after {res['seconds']:.2f} s\nstdout:\n{res['stdout']}\n"
                         f"stderr:\n{res['stderr']}")
    rows = setup_rows(res["stdout"])
    counts = {w: sum(1 for r in rows.values() if r["setup"].startswith(w)) for w in ("installed", "up to date")}
    bad = [h for h in hosts if not rows.get(h, {}).get("setup", "").startswith(want)
           or rows[h]["status"] != "ok"]
    if bad or set(rows) != set(hosts) or counts[want] != len(hosts):
        raise BenchError(f"{cmd}: expected {want!r} on {hosts}, got {rows} (counts {counts}) after "
                         f"{res['seconds']:.2f} s\nstdout:\n{res['stdout']}\nstderr:\n{res['stderr']}")
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


def _line_time(lines: list[tuple[float, str]], startswith: str) -> float | None:
    return next((t for t, text in lines if text.startswith(startswith)), None)


def breakdown(res: dict, hosts: list[str], run_directory: Path, fresh: bool) -> dict:
    """A run's timeline (events sorted by time) and its phases in seconds.

    Phases: start (interpreter, imports, inventory; until the first progress line), facts+lock (SSH connect, find
    Python, lock and wheelhouse check; until the first host starts sending, or the exit of a no-op), per host
    send (sending line .. installing line), unpack uv, create venv, sync (installing .. lock hash recorded),
    tail (last host done .. exit: report, closing connections)."""
    lines = res["stderr_lines"]
    events = [(0.0, "start")] + [(t, f"stderr: {text}") for t, text in lines]
    files = {h: host_files(run_directory, h, res["t_wall"]) for h in hosts} if fresh else {}
    for h, stamps in files.items():
        events += [(t, f"{h}: {what} (file mtime)") for what, t in stamps.items() if t is not None]
    events.append((res["seconds"], "exit"))
    events.sort(key=lambda e: e[0])

    first_line = lines[0][0] if lines else None
    phases: dict = {"start": first_line}
    sends = [t for t in (_line_time(lines, f"{h}: sending") for h in hosts) if t is not None]
    phases["facts+lock"] = None if first_line is None else (min(sends) if sends else res["seconds"]) - first_line
    per_host = {}
    for h in hosts:
        t_send, t_inst = _line_time(lines, f"{h}: sending"), _line_time(lines, f"{h}: installing")
        st = files.get(h, {})
        uv, venv, done = st.get("uv unpacked"), st.get("venv created"), st.get("lock hash recorded")
        per_host[h] = {"send": _diff(t_inst, t_send), "unpack uv": _diff(uv, t_inst), "create venv": _diff(venv, uv),
                       "sync": _diff(done, venv), "install": _diff(done, t_inst), "done": done}
    phases["hosts"] = per_host
    dones = [p["done"] for p in per_host.values() if p["done"] is not None]
    phases["tail"] = res["seconds"] - max(dones) if dones else None
    return {"events": [{"t": round(t, 3), "what": w} for t, w in events], "phases": phases}


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def machine_counters() -> tuple[dict[str, int], int]:
    """This machine's CPU jiffies (busy, iowait, total; all cores) and file pages written (dirtied) so far.

    Every simulated host shares this machine's cores and disk, so these say whether a run was CPU- or write-bound.
    Dirtied pages count what was written whether or not writeback reached the disk during the run."""
    cpu = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle, iowait, total = cpu[3], cpu[4], sum(cpu[:8])
    vm = dict(line.split() for line in Path("/proc/vmstat").read_text().splitlines())
    return {"busy": total - idle - iowait, "iowait": iowait, "total": total}, int(vm.get("nr_dirtied", 0))


def machine_load(before: tuple[dict[str, int], int], after: tuple[dict[str, int], int], seconds: float) -> dict:
    """Average cores busy and in iowait over a run, and MB of file data written (this whole machine)."""
    hz = os.sysconf("SC_CLK_TCK")
    (c0, p0), (c1, p1) = before, after
    return {"cores_busy": (c1["busy"] - c0["busy"]) / hz / seconds,
            "cores_iowait": (c1["iowait"] - c0["iowait"]) / hz / seconds,
            "mb_written": (p1 - p0) * os.sysconf("SC_PAGE_SIZE") / 1e6}


def dir_size(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


# --- rounds -----------------------------------------------------------------------------------------------

def rm(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def one_round(i: int, hh: Household, inv_path: Path, runs: Path, cwd: Path, env: dict) -> dict:
    """1 host, 3 hosts, no-op; each with its run directories fresh; they are deleted at the end."""
    out: dict = {}
    d1, d3 = runs / f"r{i}-one", runs / f"r{i}-three"
    try:
        rm(d1)
        inv = write_inventory(hh, inv_path, d1)
        r = checked_setup([ONE], "installed", inv, cwd, env)
        out[ONE_HOST] = _record(r, [ONE], d1, fresh=True)

        rm(d3)
        inv = write_inventory(hh, inv_path, d3)
        r = checked_setup(list(NAMES), "installed", inv, cwd, env)
        out[THREE_HOSTS] = _record(r, list(NAMES), d3, fresh=True)
        out["run_directory_bytes"] = dir_size(d3)
        hdir = d3 / CLUSTER / ONE
        out["host_directory_bytes"] = {p.name: dir_size(p) for p in sorted(hdir.iterdir()) if p.is_dir()}

        r = checked_setup(list(NAMES), "up to date", inv, cwd, env)
        out[NOOP] = _record(r, list(NAMES), d3, fresh=False)
        return out
    finally:
        rm(d1)
        rm(d3)


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
        t_res, t_dl = _line_time(lines, "resolving"), _line_time(lines, "downloading")
        t_send = _line_time(lines, f"{ONE}: sending")
        rec["resolve"] = _diff(t_dl if t_dl is not None else t_send, t_res)
        rec["download"] = _diff(t_send, t_dl)
        rec["downloaded"] = next((ln for ln in r["stdout"].splitlines() if ln.startswith("downloaded ")), "")
        return rec
    finally:
        rm(d)


def wheelhouse_size(cache: Path) -> tuple[int, int]:
    wheels = list((cache / "wheelhouse").glob("*/*.whl"))
    return len(wheels), sum(p.stat().st_size for p in wheels)


# --- figures and the report -------------------------------------------------------------------------------

def baseline(argv: list[str], env: dict, n: int = 3) -> float:
    """Median wall time of a short local command (start-up costs that are part of the figures)."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True, env=env)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _stats(values: list[float | None]) -> dict | None:
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def summarize(rounds: list[dict]) -> dict:
    kinds = {k: _stats([r[k]["seconds"] for r in rounds if k in r]) for k in KINDS}
    one, three = kinds[ONE_HOST], kinds[THREE_HOSTS]
    ratio = ({"median": three["median"] / one["median"], "min": three["min"] / one["min"]}
             if one and three else None)
    per_round = [r[THREE_HOSTS]["seconds"] / r[ONE_HOST]["seconds"] for r in rounds
                 if ONE_HOST in r and THREE_HOSTS in r]
    phases = {}
    for k in (ONE_HOST, THREE_HOSTS, NOOP):
        ph = [r[k]["phases"] for r in rounds if k in r]
        if not ph:
            continue
        phases[k] = {name: _stats([p[name] for p in ph]) for name in ("start", "facts+lock", "tail")}
        hosts = ph[0]["hosts"]
        phases[k]["hosts"] = {h: {name: _stats([p["hosts"][h][name] for p in ph])
                                  for name in ("send", "unpack uv", "create venv", "sync", "install")}
                              for h in hosts}
    return {"seconds": kinds, "ratio_3_over_1": ratio, "ratio_per_round": per_round, "phases": phases}


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _load(rec: dict) -> str:
    ld = rec["load"]
    return (f"{ld['cores_busy']:.2f} cores busy, {ld['cores_iowait']:.2f} in iowait (of {os.cpu_count()}), "
            f"{ld['mb_written']:.0f} MB of files written")


def print_timeline(title: str, rec: dict) -> None:
    print(f"\n{title}: {rec['seconds']:.2f} s; machine: {_load(rec)}")
    for e in rec["events"]:
        print(f"  {e['t']:7.2f}  {e['what']}")
    ph = rec["phases"]
    print(f"  phases: start {_f(ph['start'])}, facts+lock {_f(ph['facts+lock'])}, tail {_f(ph['tail'])}")
    for h, p in ph["hosts"].items():
        if p["install"] is not None or p["send"] is not None:
            print(f"    {h:<8} send {_f(p['send'])}  install {_f(p['install'])} (unpack uv {_f(p['unpack uv'])}, "
                  f"create venv {_f(p['create venv'])}, sync {_f(p['sync'])})")


def print_report(warm: dict | None, rounds: list[dict], summ: dict, base: float, house: tuple[int, int],
                 errors: list[str]) -> None:
    if warm:
        print(f"\ndownload once (warm-up `setup {ONE}`, untimed for the comparison): {warm['seconds']:.2f} s in all; "
              f"resolve {_f(warm['resolve'])} s, download {_f(warm['download'])} s; {warm['downloaded']}; "
              f"wheelhouse {house[0]} wheels, {house[1] / 1e6:.1f} MB")
    print("\nper round (seconds)")
    for i, r in enumerate(rounds, 1):
        print(f"  #{i}  " + "  ".join(f"{k} {_f(r[k]['seconds'])}" for k in KINDS if k in r))
    print()
    w = 24
    head = f"{'seconds':<{w}}{'median':>9}{'min':>9}{'max':>9}{'rounds':>8}"
    print(head)
    print("-" * len(head))
    for k in KINDS:
        s = summ["seconds"][k]
        print(f"{k:<{w}}" + ("".join(f"{_f(s[m]):>9}" for m in ("median", "min", "max")) + f"{s['n']:>8}"
                             if s else f"{'-':>9}{'-':>9}{'-':>9}{0:>8}"))
    ratio = summ["ratio_3_over_1"]
    if ratio:
        per = ", ".join(f"{x:.2f}" for x in summ["ratio_per_round"])
        print(f"{'ratio 3 hosts / 1 host':<{w}}{ratio['median']:>9.2f}{ratio['min']:>9.2f}   (per round: {per})")
        print(f"\ngoal first setup 3 hosts / 1 host <= {RATIO_GOAL} (median): "
              f"{'met' if ratio['median'] <= RATIO_GOAL else 'NOT met'} ({ratio['median']:.2f})")
    noop = summ["seconds"][NOOP]
    if noop:
        print(f"goal no-op setup of 3 hosts < {NOOP_GOAL:g} s (median): "
              f"{'met' if noop['median'] < NOOP_GOAL else 'NOT met'} ({noop['median']:.2f} s)")
    print(f"baseline: `python -m homecluster --version` {base:.2f} s (fresh-process cost inside every figure)")
    if rounds and "run_directory_bytes" in rounds[0]:
        sent = rounds[0][THREE_HOSTS]["sent"]
        print(f"a 3-host run directory held {rounds[0]['run_directory_bytes'] / 1e6:.0f} MB; wheels sent per host: "
              + ", ".join(f"{h} {n}" for h, n in sent.items()))
        print(f"one host's directory ({ONE}): " + ", ".join(
            f"{name}/ {n / 1e6:.0f} MB" for name, n in rounds[0]["host_directory_bytes"].items()))
    print(f"machine during each run (all simulated hosts share its {os.cpu_count()} cores and its disk; medians):")
    for k in KINDS:
        recs = [r[k]["load"] for r in rounds if k in r]
        if recs:
            med = {m: statistics.median(x[m] for x in recs) for m in recs[0]}
            core_s = statistics.median(r[k]["load"]["cores_busy"] * r[k]["seconds"] for r in rounds if k in r)
            print(f"  {k:<22} {med['cores_busy']:.2f} cores busy, {med['cores_iowait']:.2f} in iowait, "
                  f"{med['mb_written']:.0f} MB of files written; {core_s:.1f} core-seconds, so at least "
                  f"{core_s / os.cpu_count():.1f} s on {os.cpu_count()} cores")

    print("\nphase medians (seconds; start = until the first progress line, facts+lock = until the first host "
          "sends, tail = last host done until exit)")
    for k, ph in summ["phases"].items():
        print(f"  {k:<22} start {_f((ph['start'] or {}).get('median'))}  facts+lock "
              f"{_f((ph['facts+lock'] or {}).get('median'))}  tail {_f((ph['tail'] or {}).get('median'))}")
        for h, p in ph["hosts"].items():
            if (p["install"] or {}).get("median") is None:
                continue
            print(f"    {h:<8} " + "  ".join(f"{name} {_f((p[name] or {}).get('median'))}"
                                            for name in ("send", "unpack uv", "create venv", "sync", "install")))

    print("\nwhere the time goes (one run of each; t = seconds since the process started; stderr lines as they "
          "arrived, file times from what setup wrote on the hosts)")
    if warm:
        print_timeline(f"warm-up `setup {ONE}` (download once)", warm)
    if rounds:
        for k in KINDS:
            if k in rounds[0]:
                print_timeline(f"round 1, {k}", rounds[0][k])
    for err in errors:
        print(f"\nERROR: {err}")


# --- main ---------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="rounds, each 1 host, 3 hosts, no-op (default 3)")
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON to PATH")
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds must be at least 1")

    ok, reason = can_build()
    if not ok:
        print(f"bench_setup: skipped: cannot build the simulated household here: {reason}")
        return 0

    import dask
    import distributed

    errors: list[str] = []
    rounds: list[dict] = []
    warm = None
    hh = None
    with tempfile.TemporaryDirectory(prefix="homecluster-bench-setup-") as tmp:
        tmp = Path(tmp)
        cache, runs, cwd = tmp / "cache", tmp / "runs", tmp / "hc"
        for d in (cache, runs, cwd):
            d.mkdir()
        # A new laptop: empty wheelhouse, and pip's and uv's own caches empty too, so "download once" is real.
        env = {**os.environ, "HOMECLUSTER_CACHE": str(cache), "PIP_CACHE_DIR": str(tmp / "pip-cache"),
               "UV_CACHE_DIR": str(tmp / "uv-cache")}
        inv_path = cwd / "inventory.yaml"
        try:
            t0 = time.perf_counter()
            hh = Household(workdir=tmp / "household", prefix=PREFIX, subnet=SUBNET)
            hh.__enter__()
            build_s = time.perf_counter() - t0
            print(f"household {PREFIX} built in {build_s:.2f} s: "
                  + ", ".join(f"{h.name}={h.address}" for h in hh.hosts), flush=True)
            base = baseline([sys.executable, "-m", "homecluster", "--version"], env)

            try:
                warm = warm_up(hh, inv_path, runs, cwd, env)
                print(f"warm-up (download once) `setup {ONE}`: {warm['seconds']:.2f} s; resolve "
                      f"{_f(warm['resolve'])} s, download {_f(warm['download'])} s", flush=True)
            except Exception as e:  # noqa: BLE001 - without a warm wheelhouse the rounds would measure downloads
                errors.append(f"warm-up: {type(e).__name__}: {e}")
                print(errors[-1], file=sys.stderr, flush=True)
            house = wheelhouse_size(cache)

            for i in range(1, args.rounds + 1 if warm else 1):
                try:
                    r = one_round(i, hh, inv_path, runs, cwd, env)
                except Exception as e:  # noqa: BLE001 - one failed round is reported, the others still run
                    errors.append(f"round {i}: {type(e).__name__}: {e}")
                    print(errors[-1], file=sys.stderr, flush=True)
                    continue
                rounds.append(r)
                print(f"round {i}: " + ", ".join(f"{k} {r[k]['seconds']:.2f} s" for k in KINDS), flush=True)

            summ = summarize(rounds)
            print_report(warm, rounds, summ, base, house, errors)
            if args.json:
                data = {"config": {"rounds": args.rounds, "prefix": PREFIX, "subnet": SUBNET,
                                   "hosts": {h.name: h.address for h in hh.hosts}, "one_host": ONE,
                                   "environment": {"python": CLIENT_MINOR, "packages": []},
                                   "python": sys.version.split()[0], "dask": dask.__version__,
                                   "distributed": distributed.__version__, "cpus": os.cpu_count(),
                                   "machine": platform.platform(), "household_build_seconds": build_s},
                        "baseline_cli_start": base, "wheelhouse": {"wheels": house[0], "bytes": house[1]},
                        "warm_up": warm, "rounds": rounds, **summ, "errors": errors}
                Path(args.json).write_text(json.dumps(data, indent=2, default=str))
                print(f"\nwrote {args.json}")
            return 1 if errors else 0
        finally:
            if hh is not None:
                hh.close()  # also kills whatever a timed-out setup left running in the host namespaces
            rm(runs)


if __name__ == "__main__":
    sys.exit(main())
