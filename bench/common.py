"""What the benchmarks in this folder (bench_up.py, bench_setup.py, bench_install.py) share.

Importing this module puts tests/ on sys.path, so that tests/household.py (re-exported here: Household,
can_build) and, once the household can be built, tests/conftest.py (imports pytest and yaml) can be imported.
The benchmarks are run as scripts (`python bench/bench_X.py`), so this folder is on sys.path and they import this
module as `common`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from cpu_budget import available as cpu_budgets_available  # noqa: E402,F401 - re-exported
from household import Household, can_build  # noqa: E402

CLIENT_MINOR = f"{sys.version_info.major}.{sys.version_info.minor}"  # the managed environments' Python


class BenchError(RuntimeError):
    """A run failed or did not do what it should; the message says how."""


# --- the command line and the household -----------------------------------------------------------------------

def parse_args(argv: list[str] | None, doc: str, rounds_default: int, rounds_help: str,
               max_rounds: int | None = None, max_reason: str = "") -> argparse.Namespace:
    """The benchmarks' common options: --rounds N (at least 1; at most max_rounds if given) and --json PATH.

    The description is the first paragraph of the benchmark's docstring `doc`; max_reason says in the error why
    there is a maximum."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=rounds_default, help=rounds_help)
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON to PATH")
    args = p.parse_args(argv)
    if max_rounds is None:
        if args.rounds < 1:
            p.error("--rounds must be at least 1")
    elif not 1 <= args.rounds <= max_rounds:
        p.error(f"--rounds must be between 1 and {max_rounds} ({max_reason})")
    return args


def skipped(bench: str) -> bool:
    """True, after saying so on stdout, when the simulated household cannot be built here (the benchmark then
    exits 0)."""
    ok, reason = can_build()
    if not ok:
        print(f"{bench}: skipped: cannot build the simulated household here: {reason}")
    return not ok


def compile_sources() -> None:
    """Byte-compile homecluster's sources, as a regular install does: an editable install in an environment with
    PYTHONDONTWRITEBYTECODE (this machine's) would otherwise compile every module at every CLI start."""
    import compileall

    import homecluster

    compileall.compile_dir(str(Path(homecluster.__file__).parent), quiet=1)


def build_household(workdir: Path, prefix: str, subnet: str, names: tuple[str, ...] = ("desktop", "study", "attic"),
                    cpu_budgets: bool = False) -> tuple[Household, float]:
    """Build a Household (it tears down what it built if that fails) and say so: (household, seconds taken).

    cpu_budgets: a CPU budget per simulated machine (see tests/cpu_budget.py), uncapped until hh.cap_cpu."""
    t0 = time.perf_counter()
    hh = Household(names=names, workdir=workdir, prefix=prefix, subnet=subnet, cpu_budgets=cpu_budgets)
    hh.__enter__()
    build_s = time.perf_counter() - t0
    print(f"household {prefix} built in {build_s:.2f} s: "
          + ", ".join(f"{h.name}={h.address}" for h in hh.hosts), flush=True)
    return hh, build_s


def fresh_laptop(tmp: Path) -> tuple[Path, Path, Path, dict]:
    """Directories cache/, runs/, hc/ (the working directory) made in tmp, and an environment for a new laptop:
    an empty wheelhouse ($HOMECLUSTER_CACHE = cache/), and pip's and uv's own caches empty too, so that any
    download is real. Returns (cache, runs, cwd, env)."""
    cache, runs, cwd = tmp / "cache", tmp / "runs", tmp / "hc"
    for d in (cache, runs, cwd):
        d.mkdir()
    env = {**os.environ, "HOMECLUSTER_CACHE": str(cache), "PIP_CACHE_DIR": str(tmp / "pip-cache"),
           "UV_CACHE_DIR": str(tmp / "uv-cache")}
    return cache, runs, cwd, env


def managed_inventory(hh: Household, path: Path, cluster: str, workers: dict[str, int], ports: tuple[int, int],
                      run_directory: Path) -> Path:
    """Write a managed-environment inventory for the household to path (see tests/test_setup.py) and return path.

    All of the household's hosts, `workers` worker processes per host (0 where not named), the scheduler on
    desktop at ports (scheduler, dashboard), the given run_directory, no `python:` keys and an `environment:`
    section with the client's Python and no extra packages, so every host gets a managed environment with the
    client's dask stack. The lock beside it (inventory.lock) does not depend on run_directory."""
    import yaml
    from conftest import household_inventory

    inv = household_inventory(hh, path, cluster, workers=workers,
                              cluster_extra={"scheduler_port": ports[0], "dashboard_port": ports[1]})
    data = yaml.safe_load(inv.read_text())
    del data["defaults"]["python"]
    data["defaults"]["run_directory"] = str(run_directory)
    data["environment"] = {"python": CLIENT_MINOR, "packages": []}
    inv.write_text(yaml.safe_dump(data, sort_keys=False))
    return inv


def rm(path: Path) -> None:
    """Remove a directory tree if it is there."""
    shutil.rmtree(path, ignore_errors=True)


# --- running the CLI ------------------------------------------------------------------------------------------

CLI = (sys.executable, "-m", "homecluster")


def run_cli(args: list[str], cwd: Path, *, timeout: float, env: dict | None = None, preexec_fn=None,
            program: tuple[str, ...] = CLI) -> dict:
    """Run `python -m homecluster ARGS` in a fresh interpreter (env None: this process's environment; preexec_fn:
    run in the child before it starts, e.g. CpuBudget.enter; program: another command line that runs the CLI).

    Returns rc (None: timed out, then killed), seconds, t_wall (time.time() at the start), load (machine_load over
    the run, plus laptop_cpu: CPU seconds of the CLI and what it waited for, i.e. the laptop's share), stdout,
    stderr_lines ([(seconds since the start, line)], each stderr line as it arrived: the progress
    lines) and stderr (those lines joined). Both pipes are drained in threads, so a full pipe never blocks the
    child; the time ends when the process exits, not when its pipes close."""
    counters = machine_counters()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    t_wall = time.time()
    t0 = time.perf_counter()
    proc = subprocess.Popen([*program, *args], cwd=cwd, env=env, text=True, bufsize=1,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=preexec_fn)
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
    load["laptop_cpu"] = cpu_seconds(resource.getrusage(resource.RUSAGE_CHILDREN)) - cpu_seconds(children)
    for t in readers:
        t.join(5)
    return {"rc": rc, "seconds": elapsed, "t_wall": t_wall, "load": load, "stdout": "".join(out),
            "stderr_lines": lines, "stderr": "\n".join(text for _, text in lines)}


def cpu_seconds(usage: resource.struct_rusage) -> float:
    """User plus system CPU seconds of a getrusage result."""
    return usage.ru_utime + usage.ru_stime


def output_of(res: dict) -> str:
    """'after S s' and a run_cli result's stdout and stderr, for an error message."""
    return f"after {res['seconds']:.2f} s\nstdout:\n{res['stdout']}\nstderr:\n{res['stderr']}"


def run_checked(args: list[str], cwd: Path, *, timeout: float, env: dict | None = None, preexec_fn=None,
                program: tuple[str, ...] = CLI) -> dict:
    """run_cli, raising BenchError (with the command's output) unless it exits 0; returns run_cli's result."""
    res = run_cli(args, cwd, timeout=timeout, env=env, preexec_fn=preexec_fn, program=program)
    if res["rc"] != 0:
        code = "timed out" if res["rc"] is None else f"exit {res['rc']}"
        raise BenchError(f"`homecluster {' '.join(args)}` failed ({code}) {output_of(res)}")
    return res


def note_error(errors: list[str], what: str, e: BaseException) -> None:
    """Record a failed step ("WHAT: ExceptionType: message") in errors and print it to stderr at once."""
    errors.append(f"{what}: {type(e).__name__}: {e}")
    print(errors[-1], file=sys.stderr, flush=True)


# --- the machine ----------------------------------------------------------------------------------------------

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


def load_text(rec: dict) -> str:
    """A run's machine load (rec["load"], see machine_load) in words."""
    ld = rec["load"]
    return (f"{ld['cores_busy']:.2f} cores busy, {ld['cores_iowait']:.2f} in iowait (of {os.cpu_count()}), "
            f"{ld['mb_written']:.0f} MB of files written, laptop CPU {ld.get('laptop_cpu', 0):.2f} s")


def print_machine_loads(rounds: list[dict], kinds: tuple[str, ...], label: Callable[[str], str],
                        more: Callable[[str], str] | None = None) -> None:
    """Per kind of run, the medians over the rounds of its machine load; each line starts with label(kind) and
    ends with more(kind)."""
    print(f"machine during each run (all simulated hosts share its {os.cpu_count()} cores and its disk; medians):")
    for k in kinds:
        recs = [r[k]["load"] for r in rounds if k in r]
        if recs:
            med = {m: statistics.median(x[m] for x in recs) for m in recs[0]}
            print(f"  {label(k)} {med['cores_busy']:.2f} cores busy, {med['cores_iowait']:.2f} in iowait, "
                  f"{med['mb_written']:.0f} MB of files written, laptop CPU {med.get('laptop_cpu', 0):.2f} s"
                  f"{more(k) if more else ''}")


# --- where the time goes --------------------------------------------------------------------------------------

def line_time(lines: list[tuple[float, str]], startswith: str) -> float | None:
    """The time of the first (time, line) whose line starts with `startswith`; None if there is none."""
    return next((t for t, text in lines if text.startswith(startswith)), None)


def diff(a: float | None, b: float | None) -> float | None:
    """a - b, or None if either is None."""
    return None if a is None or b is None else a - b


def timeline(res: dict, more: list[tuple[float, str]]) -> list[dict]:
    """A run's events sorted by time, [{"t": seconds, "what": ...}]: its start, every stderr line as it arrived,
    the `more` events (seconds, what) and its exit."""
    events = [(0.0, "start")] + [(t, f"stderr: {text}") for t, text in res["stderr_lines"]] + more
    events.append((res["seconds"], "exit"))
    events.sort(key=lambda e: e[0])
    return [{"t": round(t, 3), "what": w} for t, w in events]


def print_events(title: str, rec: dict) -> None:
    """The head of a run's timeline in the report: title, seconds and machine load, then one line per event."""
    print(f"\n{title}: {rec['seconds']:.2f} s; machine: {load_text(rec)}")
    for e in rec["events"]:
        print(f"  {e['t']:7.2f}  {e['what']}")


# --- figures --------------------------------------------------------------------------------------------------

def baseline(argv: list[str], env: dict | None = None, n: int = 3) -> float:
    """Median wall time of a short local command (start-up costs that are part of the figures)."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True, env=env)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def cli_start_baseline(env: dict | None = None) -> float:
    """baseline of `python -m homecluster --version`: what starting the CLI costs inside every figure."""
    return baseline([sys.executable, "-m", "homecluster", "--version"], env)


def stats(values: list[float | None]) -> dict | None:
    """Median, min, max and n of the values that are not None; None if there are none."""
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def ratio(a: dict | None, b: dict | None) -> dict | None:
    """a / b of two `stats` results, median over median and min over min; None if either is missing."""
    if not a or not b:
        return None
    return {"median": a["median"] / b["median"], "min": a["min"] / b["min"]}


def kind_seconds(rounds: list[dict], kinds: tuple[str, ...], one: str, many: str
                 ) -> tuple[dict[str, dict | None], dict | None, list[float]]:
    """For rounds of {kind: {"seconds": ...}}: stats of each kind's seconds, the ratio many / one of those stats,
    and that ratio in each round that has both."""
    seconds = {k: stats([r[k]["seconds"] for r in rounds if k in r]) for k in kinds}
    per_round = [r[many]["seconds"] / r[one]["seconds"] for r in rounds if one in r and many in r]
    return seconds, ratio(seconds[many], seconds[one]), per_round


def fmt(x: float | None) -> str:
    """Seconds (or a ratio) with 2 decimals; '-' for None."""
    return "-" if x is None else f"{x:.2f}"


def fmt_stat(s: dict | None, which: str = "median") -> str:
    """One figure ("median", "min", ...) of a `stats` or `ratio` result, as fmt does it; '-' if it is missing."""
    return fmt((s or {}).get(which))


def goal(what: str, value: float, met: bool, unit: str = "") -> str:
    """The report line on a goal: 'goal WHAT (median): met (VALUE)' or '... NOT met ...'."""
    return f"goal {what} (median): {'met' if met else 'NOT met'} ({value:.2f}{unit})"


def print_seconds_table(rows: list[tuple[str, dict | None]], width: int, ratio_label: str, rat: dict | None,
                        per_round: list[float]) -> None:
    """The table of median, min, max and rounds per (label, stats) row, then the ratio row if there is a ratio
    (median, min, and the per-round ratios)."""
    head = f"{'seconds':<{width}}{'median':>9}{'min':>9}{'max':>9}{'rounds':>8}"
    print(head)
    print("-" * len(head))
    for label, s in rows:
        print(f"{label:<{width}}" + ("".join(f"{fmt(s[m]):>9}" for m in ("median", "min", "max")) + f"{s['n']:>8}"
                                     if s else f"{'-':>9}{'-':>9}{'-':>9}{0:>8}"))
    print_ratio_row(ratio_label, rat, per_round, width)


def print_ratio_row(label: str, rat: dict | None, per_round: list[float], width: int) -> None:
    """A ratio row under print_seconds_table's table: median, min, and the per-round ratios; nothing if no ratio."""
    if rat:
        per = ", ".join(f"{x:.2f}" for x in per_round)
        print(f"{label:<{width}}{rat['median']:>9.2f}{rat['min']:>9.2f}   (per round: {per})")


def print_round_one(rounds: list[dict], kinds: tuple[str, ...], label: Callable[[str], str],
                    print_timeline: Callable[[str, dict], None]) -> None:
    """print_timeline of each kind of run in the first round, titled 'round 1, LABEL'."""
    if rounds:
        for k in kinds:
            if k in rounds[0]:
                print_timeline(f"round 1, {label(k)}", rounds[0][k])


def print_errors(errors: list[str]) -> None:
    """The report's last lines: every error, each after a blank line."""
    for err in errors:
        print(f"\nERROR: {err}")


# --- the JSON file --------------------------------------------------------------------------------------------

def run_config(rounds: int, hh: Household, build_s: float, **extra) -> dict:
    """The "config" of a benchmark's JSON: rounds, the household (prefix, subnet, hosts), the benchmark's `extra`
    keys, then the versions and the machine."""
    import dask
    import distributed

    return {"rounds": rounds, "prefix": hh.prefix, "subnet": hh.subnet,
            "hosts": {h.name: h.address for h in hh.hosts}, **extra,
            "python": sys.version.split()[0], "dask": dask.__version__, "distributed": distributed.__version__,
            "cpus": os.cpu_count(), "machine": platform.platform(), "household_build_seconds": build_s}


def write_json(path: str, data: dict) -> None:
    """Write the figures as JSON to path and say so."""
    Path(path).write_text(json.dumps(data, indent=2, default=str))
    print(f"\nwrote {path}")


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
