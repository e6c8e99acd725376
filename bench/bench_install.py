#!/usr/bin/env python
"""Benchmark `homecluster install-pkg`: installing a package on 1 worker host against all worker hosts.

A fresh 3-host household (network namespaces with their own sshd, see tests/household.py) is built with
prefix "hq" on 10.213.65.0/24, so it never collides with the tests' "hc" (10.213.57), bench_up's "hb" (10.213.59)
or bench_setup's "hk" (10.213.63) household. Two clusters run in it at the same time, each from its own inventory
(own directory, so its own inventory.lock), cluster name, run directory and ports; desktop runs only their
schedulers:

* A, "1 worker host": cluster bench-a (ports 8850/8851), one worker on study.
* B, "all worker hosts": cluster bench-b (ports 8852/8853), one worker on study and one on attic.

Both inventories list all three hosts (attic with nworkers: 0 in A) and have an `environment:` section and no
`python:` keys, so every host gets a managed environment (the client's dask stack, no extra packages), as in
tests/test_setup.py. Untimed for the comparison: `homecluster setup` and `homecluster up` of A, then of B (the
setup of A fills the fresh wheelhouse, $HOMECLUSTER_CACHE, with the environment's wheels: "download once").

Every round installs a package that no environment has yet (a different small pure-Python package per round,
pinned, from PACKAGES; nothing is uninstalled), so every run is a real install. Before the rounds all these
wheels are put into the laptop's wheelhouse by homecluster's own planning step (`homecluster.install.plan`, the
part of install-pkg before the cluster is touched: resolve with uv, fill the wheelhouse), timed and reported
apart; a timed run that downloads anything (a new line in downloads.log) is an error.

Every round, A then B, with the round's package:

    python -m homecluster install-pkg PKG==VER -i INV

a fresh process timed until it exits; exit code 0 and exactly one "ok" row per worker with PKG=VER are checked,
and the package's .dist-info must be absent from each worker host's environment before and present after (the
hosts share this machine's file system). The stderr progress lines are timestamped as they arrive and the
.dist-info directory's modification time says when each host's install finished, so each run has a timeline.
At the end `homecluster down` for both clusters; the household is torn down in any case.

    python bench/bench_install.py [--rounds N] [--json PATH]

Goal (issue): install-pkg on all worker hosts at most 1.3x the time on 1 worker host (the hosts install in
parallel; one install at a time per host). Needs root (network namespaces) and a laptop that reaches the package
index; exits 0 with a message when the household cannot be built here.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import (CLIENT_MINOR, BenchError, Household, build_household, cli_start_baseline, diff, fmt, fmt_stat,
                    fresh_laptop, goal, kind_seconds, line_time, managed_inventory, note_error, output_of, parse_args,
                    print_errors, print_events, print_machine_loads, print_round_one, print_seconds_table, rm,
                    run_checked, run_cli, run_config, skipped, stats, timeline, write_json)

PREFIX, SUBNET = "hq", "10.213.65"
NAMES = ("desktop", "study", "attic")  # Household's default names
CLI_TIMEOUT = 900.0  # seconds for one homecluster command (the first setup downloads every wheel)
RATIO_GOAL = 1.3  # install-pkg, all worker hosts / 1 worker host

ONE_HOST, ALL_HOSTS = "install-pkg, 1 worker host", "install-pkg, 2 worker hosts"
KINDS = (ONE_HOST, ALL_HOSTS)
# kind -> cluster name, (scheduler port, dashboard port), workers per host
CLUSTERS = {ONE_HOST: ("bench-a", (8850, 8851), {"study": 1}),
            ALL_HOSTS: ("bench-b", (8852, 8853), {"study": 1, "attic": 1})}
SHORT = {ONE_HOST: "A", ALL_HOSTS: "B"}

# One per round: small pure-Python wheels without dependencies that the managed environment (the dask stack)
# does not contain; checked on the hosts before each timed run.
PACKAGES = ("tabulate==0.9.0", "termcolor==2.4.0", "toml==0.10.2", "appdirs==1.4.4", "text-unidecode==1.3",
            "iniconfig==2.0.0", "humanize==4.11.0", "more-itertools==10.5.0", "wcwidth==0.2.13",
            "colorama==0.4.6")

# Run in a fresh interpreter with the benchmark's environment: homecluster's planning step of install-pkg for
# each package (resolve, fill the wheelhouse), the cluster untouched and the lock's added packages unchanged.
PREFETCH_SCRIPT = """\
import json, sys, time
from homecluster import install
from homecluster.inventory import load

fill, spent = install.Wheelhouse.fill, []
def timed_fill(self, *a, **kw):
    t0 = time.perf_counter()
    try:
        return fill(self, *a, **kw)
    finally:
        spent.append(time.perf_counter() - t0)
install.Wheelhouse.fill = timed_fill

inv = load(sys.argv[1])
out = []
for pkg in sys.argv[2:]:
    spent.clear()
    t0 = time.perf_counter()
    _, reqs, wheels = install.plan(inv, [pkg], lambda s: None)
    out.append({"package": pkg, "seconds": time.perf_counter() - t0, "download": sum(spent),
                "requirements": reqs, "wheels": sorted(wheels), "bytes": sum(len(b) for b in wheels.values())})
print(json.dumps(out))
"""


# --- the inventories --------------------------------------------------------------------------------------

def write_inventory(hh: Household, kind: str, cwd: Path, runs: Path) -> Path:
    """The managed-environment inventory of cluster A or B (see tests/test_setup.py), in its own directory."""
    name, ports, workers = CLUSTERS[kind]
    d = cwd / name
    d.mkdir(parents=True, exist_ok=True)
    return managed_inventory(hh, d / "inventory.yaml", name, workers, ports, runs / name)


def worker_hosts(kind: str) -> list[str]:
    return [h for h, n in CLUSTERS[kind][2].items() if n > 0]


def site_packages(runs: Path, kind: str, host: str) -> Path:
    """The managed environment's site-packages of a host (the hosts share this machine's file system)."""
    name = CLUSTERS[kind][0]
    env = runs / name / name / host / "env"  # <run_directory>/<cluster>/<host>/env, run_directory = runs/<cluster>
    found = sorted(env.glob("lib/python*/site-packages"))
    if not found:
        raise BenchError(f"no managed environment at {env}")
    return found[0]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def dist_infos(site: Path, requirement: str) -> list[Path]:
    """The .dist-info directories of the requirement's distribution (any version) in site-packages."""
    name = _norm(requirement.split("==")[0])
    return [p for p in site.glob("*.dist-info") if _norm(p.name[:-len(".dist-info")].rsplit("-", 1)[0]) == name]


def downloads_logged(cache: Path) -> int:
    log = cache / "wheelhouse" / "downloads.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


# --- running the CLI --------------------------------------------------------------------------------------

def install_rows(stdout: str) -> list[dict]:
    """Rows of the install-pkg table: [{"worker", "host", "installed", "status"}]."""
    lines = stdout.splitlines()
    try:
        head = next(i for i, ln in enumerate(lines) if ln.startswith("WORKER "))
    except StopIteration:
        return []
    header = lines[head]
    cols = [header.index(c) for c in ("WORKER", "HOST", "INSTALLED", "STATUS")] + [None]
    rows = []
    for ln in lines[head + 1:]:
        if not ln.strip():
            break
        if set(ln.strip()) <= set("-= "):  # a rule under the header, if the table has one
            continue
        cells = [ln[cols[i]:cols[i + 1]].strip() for i in range(4)]
        rows.append(dict(zip(("worker", "host", "installed", "status"), cells)))
    return rows


def checked_install(kind: str, requirement: str, inv: Path, runs: Path, cwd: Path, env: dict, cache: Path) -> dict:
    """`homecluster install-pkg REQ -i INV`: exit 0, one ok row per worker with the version, installed on every
    worker host's environment (absent before), and nothing downloaded."""
    hosts = worker_hosts(kind)
    name, ver = requirement.split("==")
    sites = {h: site_packages(runs, kind, h) for h in hosts}
    already = {h: [p.name for p in dist_infos(s, requirement)] for h, s in sites.items()}
    if any(already.values()):
        raise BenchError(f"{requirement} is in the environment before install-pkg ({kind}): {already}; "
                         "pick another package in PACKAGES")
    logged = downloads_logged(cache)
    res = run_checked(["install-pkg", requirement, "-i", str(inv)], cwd, timeout=CLI_TIMEOUT, env=env)
    cmd = f"`homecluster install-pkg {requirement} -i {inv}`"
    rows = install_rows(res["stdout"])
    per_host = {h: [r for r in rows if r["host"] == h] for h in hosts}
    good = (len(rows) == len(hosts) and all(len(rs) == 1 for rs in per_host.values())
            and all(r["status"] == "ok" and r["installed"].endswith(f"={ver}") for r in rows))
    if not good:
        raise BenchError(f"{cmd}: expected one ok row with {name}={ver} per worker on {hosts}, got {rows} "
                         f"{output_of(res)}")
    after = {h: dist_infos(s, requirement) for h, s in sites.items()}
    wrong = {h: [p.name for p in ps] for h, ps in after.items() if len(ps) != 1 or not ps[0].name.endswith(
        f"-{ver}.dist-info")}
    if wrong:
        raise BenchError(f"{cmd} said ok, but the environments hold {wrong}\nstdout:\n{res['stdout']}")
    if downloads_logged(cache) != logged:
        raise BenchError(f"{cmd} downloaded wheels although the wheelhouse was filled before:\n{res['stderr']}")
    done = {h: after[h][0].stat().st_mtime - res["t_wall"] for h in hosts}
    return {**res, "rows": rows, "done": done}


# --- where the time goes ----------------------------------------------------------------------------------

def breakdown(res: dict) -> dict:
    """A run's timeline (events sorted by time) and its phases in seconds.

    Phases: start+facts (interpreter, imports, inventory, SSH to every host for its Python and platform; until the
    "resolving" line), resolve+connect (uv resolves the environment plus the package, wheelhouse checked, the
    client connects to the scheduler; until the "installing" line), install (plugin registered, every worker
    installs; until the last host's .dist-info is written), tail (last host done until exit: the versions asked
    from every worker, the lock updated, the table printed)."""
    lines = res["stderr_lines"]
    events = [(t, f"{h}: .dist-info written (file mtime)") for h, t in res["done"].items()]
    t_res, t_inst = line_time(lines, "resolving"), line_time(lines, "installing")
    last = max(res["done"].values()) if res["done"] else None
    phases = {"start+facts": t_res, "resolve+connect": diff(t_inst, t_res), "install": diff(last, t_inst),
              "tail": diff(res["seconds"], last),
              "hosts": {h: diff(t, t_inst) for h, t in res["done"].items()}}
    return {"events": timeline(res, events), "phases": phases}


# --- preparation ------------------------------------------------------------------------------------------

def prepare(kind: str, inv: Path, cwd: Path, env: dict, cache: Path) -> dict:
    """`homecluster setup` then `homecluster up` of one cluster (untimed for the comparison)."""
    logged = downloads_logged(cache)
    s = run_checked(["setup", "-i", str(inv)], cwd, timeout=CLI_TIMEOUT, env=env)
    u = run_checked(["up", "-i", str(inv)], cwd, timeout=CLI_TIMEOUT, env=env)
    downloaded = next((ln for ln in s["stdout"].splitlines() if ln.startswith("downloaded ")), "")
    return {"setup_seconds": s["seconds"], "up_seconds": u["seconds"],
            "wheels_downloaded": downloads_logged(cache) - logged, "downloaded": downloaded,
            "setup_stdout": s["stdout"], "up_stdout": u["stdout"]}


def prefetch(packages: list[str], inv: Path, cwd: Path, env: dict, cache: Path) -> dict:
    """Put every round's wheels into the wheelhouse with install-pkg's own planning step (untimed for the
    comparison); per package: plan seconds, of which download, and what it needs."""
    logged = downloads_logged(cache)
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", PREFETCH_SCRIPT, str(inv), *packages], cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=CLI_TIMEOUT)
    seconds = time.perf_counter() - t0
    if p.returncode != 0:
        raise BenchError(f"filling the wheelhouse for {packages} failed (exit {p.returncode}):\n{p.stderr}")
    per = json.loads(p.stdout.strip().splitlines()[-1])
    for rec in per:
        name = _norm(rec["package"].split("==")[0])
        if not any(_norm(r.split("==")[0]) == name for r in rec["requirements"]):
            raise BenchError(f"planning {rec['package']} would install {rec['requirements']}, not the package")
    return {"seconds": seconds, "wheels_downloaded": downloads_logged(cache) - logged, "packages": per}


def one_round(i: int, requirement: str, invs: dict[str, Path], runs: Path, cwd: Path, env: dict,
              cache: Path) -> dict:
    """A then B, each installing the round's package."""
    out: dict = {"package": requirement}
    for kind in KINDS:
        r = checked_install(kind, requirement, invs[kind], runs, cwd, env, cache)
        out[kind] = {"seconds": r["seconds"], "load": r["load"], "stdout": r["stdout"], "rows": r["rows"],
                     **breakdown(r)}
    return out


# --- figures and the report -------------------------------------------------------------------------------

def summarize(rounds: list[dict]) -> dict:
    kinds, ratio, per_round = kind_seconds(rounds, KINDS, ONE_HOST, ALL_HOSTS)
    phases = {}
    for k in KINDS:
        ph = [r[k]["phases"] for r in rounds if k in r]
        if not ph:
            continue
        phases[k] = {name: stats([p[name] for p in ph])
                     for name in ("start+facts", "resolve+connect", "install", "tail")}
        phases[k]["hosts"] = {h: stats([p["hosts"].get(h) for p in ph]) for h in ph[0]["hosts"]}
    return {"seconds": kinds, "ratio_all_over_1": ratio, "ratio_per_round": per_round, "phases": phases}


def print_timeline(title: str, rec: dict) -> None:
    print_events(title, rec)
    ph = rec["phases"]
    print(f"  phases: start+facts {fmt(ph['start+facts'])}, resolve+connect {fmt(ph['resolve+connect'])}, install "
          f"{fmt(ph['install'])}, tail {fmt(ph['tail'])}; per host, installing line until .dist-info: "
          + ", ".join(f"{h} {fmt(t)}" for h, t in ph["hosts"].items()))


def print_report(prep: dict, fetched: dict | None, rounds: list[dict], summ: dict, base: float,
                 errors: list[str]) -> None:
    print()
    for k, p in prep.items():
        print(f"{SHORT[k]} ({CLUSTERS[k][0]}, workers on {', '.join(worker_hosts(k))}): "
              f"setup {p['setup_seconds']:.2f} s"
              f" ({p['wheels_downloaded']} wheels downloaded), up {p['up_seconds']:.2f} s (untimed for the comparison)")
    if fetched:
        print(f"wheels of the rounds put into the wheelhouse first (install-pkg's planning step, untimed for the "
              f"comparison): {fetched['seconds']:.2f} s in all, {fetched['wheels_downloaded']} downloaded")
        for rec in fetched["packages"]:
            print(f"  {rec['package']:<24} plan {rec['seconds']:.2f} s, of which download {rec['download']:.2f} s; "
                  f"{', '.join(rec['wheels'])} ({rec['bytes'] / 1e3:.0f} kB)")
    print("\nper round (seconds)")
    for i, r in enumerate(rounds, 1):
        print(f"  #{i}  {r['package']:<22}  "
              + "  ".join(f"{SHORT[k]} {fmt(r[k]['seconds'])}" for k in KINDS if k in r))
    print()
    ratio = summ["ratio_all_over_1"]
    print_seconds_table([(f"{SHORT[k]}: {k}", summ["seconds"][k]) for k in KINDS], 32, "ratio B / A", ratio,
                        summ["ratio_per_round"])
    if ratio:
        print("\n" + goal(f"install-pkg on all worker hosts / 1 worker host <= {RATIO_GOAL}", ratio["median"],
                          ratio["median"] <= RATIO_GOAL))
    print(f"baseline: `python -m homecluster --version` {base:.2f} s (fresh-process cost inside every figure)")
    print_machine_loads(rounds, KINDS, lambda k: f"{SHORT[k]} ")

    print("\nphase medians (seconds; start+facts = until the resolving line, resolve+connect = until the installing "
          "line, install = until the last host's .dist-info, tail = until exit)")
    for k, ph in summ["phases"].items():
        print(f"  {SHORT[k]}  " + "  ".join(f"{name} {fmt_stat(ph[name])}"
                                          for name in ("start+facts", "resolve+connect", "install", "tail"))
              + "; per host " + ", ".join(f"{h} {fmt_stat(s)}" for h, s in ph["hosts"].items()))

    print("\nwhere the time goes (round 1; t = seconds since the process started; stderr lines as they arrived, "
          ".dist-info times from the hosts' environments)")
    print_round_one(rounds, KINDS, lambda k: f"{SHORT[k]}: {k}", print_timeline)
    print_errors(errors)


# --- main ---------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv, __doc__, 3, f"rounds, each A (1 worker host) then B (all worker hosts) "
                                        f"(default 3, at most {len(PACKAGES)})",
                      max_rounds=len(PACKAGES), max_reason="one new package per round")
    if skipped("bench_install"):
        return 0

    errors: list[str] = []
    rounds: list[dict] = []
    prep: dict = {}
    fetched = None
    hh = None
    invs: dict[str, Path] = {}
    packages = list(PACKAGES[:args.rounds])
    with tempfile.TemporaryDirectory(prefix="homecluster-bench-install-") as tmp:
        tmp = Path(tmp)
        cache, runs, cwd, env = fresh_laptop(tmp)  # empty wheelhouse, and pip's and uv's own caches empty too
        try:
            hh, build_s = build_household(tmp / "household", PREFIX, SUBNET)
            base = cli_start_baseline(env)

            try:
                for kind in KINDS:
                    invs[kind] = write_inventory(hh, kind, cwd, runs)
                    prep[kind] = prepare(kind, invs[kind], cwd, env, cache)
                    print(f"{SHORT[kind]} ({CLUSTERS[kind][0]}): setup {prep[kind]['setup_seconds']:.2f} s "
                          f"({prep[kind]['wheels_downloaded']} wheels downloaded), up {prep[kind]['up_seconds']:.2f} s",
                          flush=True)
                fetched = prefetch(packages, invs[ONE_HOST], cwd, env, cache)
                print(f"wheelhouse filled for {', '.join(packages)}: {fetched['seconds']:.2f} s, "
                      f"{fetched['wheels_downloaded']} wheels downloaded", flush=True)
            except Exception as e:  # noqa: BLE001 - without both clusters up and the wheels there, no rounds
                note_error(errors, "preparation", e)

            for i, pkg in enumerate(packages if fetched else [], 1):
                try:
                    r = one_round(i, pkg, invs, runs, cwd, env, cache)
                except Exception as e:  # noqa: BLE001 - one failed round is reported, the others still run
                    note_error(errors, f"round {i} ({pkg})", e)
                    continue
                rounds.append(r)
                print(f"round {i} ({pkg}): " + ", ".join(f"{SHORT[k]} {r[k]['seconds']:.2f} s" for k in KINDS)
                      + f", ratio {r[ALL_HOSTS]['seconds'] / r[ONE_HOST]['seconds']:.2f}", flush=True)

            downs = {}
            for kind, inv in invs.items():
                d = run_cli(["down", "-i", str(inv)], cwd, timeout=CLI_TIMEOUT, env=env)
                downs[kind] = {"rc": d["rc"], "seconds": d["seconds"]}
                if d["rc"] != 0:
                    errors.append(f"`homecluster down -i {inv}` exit {d['rc']}:\n{d['stdout']}\n{d['stderr']}")
            invs = {}  # down done: nothing left for the finally block

            summ = summarize(rounds)
            print_report(prep, fetched, rounds, summ, base, errors)
            print("down: " + ", ".join(f"{SHORT[k]} {fmt(d['seconds'])} s (exit {d['rc']})" for k, d in downs.items()))
            if args.json:
                clusters = {SHORT[k]: {"name": c[0], "ports": c[1], "workers": c[2]} for k, c in CLUSTERS.items()}
                config = run_config(args.rounds, hh, build_s, clusters=clusters, packages=packages,
                                    environment={"python": CLIENT_MINOR, "packages": []})
                data = {"config": config, "baseline_cli_start": base, "prepare": prep, "prefetch": fetched,
                        "rounds": rounds, **summ, "down": downs, "errors": errors}
                write_json(args.json, data)
            return 1 if errors else 0
        finally:
            for inv in invs.values():  # only after a failure above: stop the clusters, best effort
                try:
                    run_cli(["down", "-i", str(inv)], cwd, timeout=120, env=env)
                except Exception:  # noqa: BLE001 - the household's teardown kills whatever is left
                    pass
            if hh is not None:
                hh.close()  # also kills whatever is left running in the host namespaces
            rm(runs)


if __name__ == "__main__":
    sys.exit(main())
