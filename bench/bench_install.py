#!/usr/bin/env python
"""Benchmark `homecluster install-pkg`: installing a package on 1 worker host against all worker hosts, on managed
environments and on hosts that bring their own Python.

A fresh 3-host household (network namespaces with their own sshd, see tests/household.py) is built with
prefix "hq" on 10.213.65.0/24, so it never collides with the tests' "hc" (10.213.57), bench_up's "hb" (10.213.59)
or bench_setup's "hk" (10.213.63) household. Four clusters run in it at the same time, each from its own inventory
(own directory, so its own inventory.lock and inventory.added.json), cluster name, run directory and ports;
desktop runs only their schedulers:

* A, "managed, 1 worker host": cluster bench-a (ports 8850/8851), one worker on study.
* B, "managed, 2 worker hosts": cluster bench-b (ports 8852/8853), one worker on study and one on attic.
* C, "own Python, 1 worker host": cluster bench-c (ports 8854/8855), one worker on study.
* D, "own Python, 2 worker hosts": cluster bench-d (ports 8856/8857), one worker on study and one on attic.

Every inventory lists all three hosts (attic with nworkers: 0 in A and C). A and B have an `environment:` section
and no `python:` keys, so every host gets a managed environment (the client's dask stack, no extra packages), as
in tests/test_setup.py. C and D have no `environment:` section and a `python:` key per host: each host of each
cluster has its own venv, made by the benchmark from this machine's Python as in tests/test_install_own_python.py
(`python -m venv --system-site-packages --without-pip`: it sees this machine's dask, and a worker installs into it
with uv if the worker's PATH has one, else with the system's pip). Untimed for the comparison: `homecluster
setup` and `homecluster up` of A, then of B (the setup of A fills the fresh wheelhouse, $HOMECLUSTER_CACHE, with
the environment's wheels: "download once"), then the venvs and `homecluster up` of C, then of D.

Every round installs a package that no environment has yet (a different small pure-Python package per round,
pinned, from PACKAGES, leaving out those this machine's Python has, since the venvs see them; nothing is
uninstalled), so every run is a real install. Before the rounds all these wheels are put into the laptop's
wheelhouse by homecluster's own planning step (`homecluster.install.plan`, the part of install-pkg before the
cluster is touched: probe the hosts, resolve with uv, fill the wheelhouse), once for A's inventory and once for
C's, timed and reported apart; a timed run that downloads anything (a new line in downloads.log) is an error.

Every round, A, B, C then D with the round's package:

    python -m homecluster install-pkg PKG==VER -i INV

a fresh process timed until it exits; exit code 0 and exactly one "ok" row per worker with PKG=VER are checked,
and the package's .dist-info must be absent from each worker host's environment (managed env or own venv) before
and present after (the hosts share this machine's file system). The stderr progress lines are timestamped as they
arrive and the .dist-info directory's modification time says when each host's install finished (its INSTALLER
file says whether pip or uv did it), so each run has a timeline. At the end `homecluster down` for all four
clusters; the household is torn down in any case.

    python bench/bench_install.py [--rounds N] [--json PATH]

Goal (issue): install-pkg on all worker hosts at most 1.3x the time on 1 worker host (the hosts install in
parallel; one install at a time per host), for managed environments (B / A) and for own Pythons (D / C). Needs
root (network namespaces) and a laptop that reaches the package index; exits 0 with a message when the household
cannot be built here.
"""

from __future__ import annotations

import json
import re
import site
import subprocess
import sys
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from common import (CLIENT_MINOR, BenchError, Household, build_household, cli_start_baseline, diff, fmt, fmt_stat,
                    fresh_laptop, goal, kind_seconds, line_time, managed_inventory, note_error, output_of, parse_args,
                    print_errors, print_events, print_machine_loads, print_ratio_row, print_round_one,
                    print_seconds_table, rm, run_checked, run_cli, run_config, skipped, stats, timeline, write_json)
from common import compile_sources

PREFIX, SUBNET = "hq", "10.213.65"
NAMES = ("desktop", "study", "attic")  # Household's default names
CLI_TIMEOUT = 900.0  # seconds for one homecluster command (the first setup downloads every wheel)
RATIO_GOAL = 1.3  # install-pkg, all worker hosts / 1 worker host

MANAGED_ONE, MANAGED_ALL = "managed, 1 worker host", "managed, 2 worker hosts"
OWN_ONE, OWN_ALL = "own Python, 1 worker host", "own Python, 2 worker hosts"
KINDS = (MANAGED_ONE, MANAGED_ALL, OWN_ONE, OWN_ALL)  # also the order of the runs in every round
OWN = (OWN_ONE, OWN_ALL)  # hosts with `python:` keys (the benchmark's venvs), no environment: section
PAIRS = {"managed": (MANAGED_ONE, MANAGED_ALL), "own Python": (OWN_ONE, OWN_ALL)}  # -> (1 host, all hosts)
# kind -> cluster name, (scheduler port, dashboard port), workers per host
CLUSTERS = {MANAGED_ONE: ("bench-a", (8850, 8851), {"study": 1}),
            MANAGED_ALL: ("bench-b", (8852, 8853), {"study": 1, "attic": 1}),
            OWN_ONE: ("bench-c", (8854, 8855), {"study": 1}),
            OWN_ALL: ("bench-d", (8856, 8857), {"study": 1, "attic": 1})}
SHORT = {MANAGED_ONE: "A", MANAGED_ALL: "B", OWN_ONE: "C", OWN_ALL: "D"}
OWN_PYTHONS = "own-python"  # <runs>/own-python/<cluster>/<host>: the hosts' own venvs

# One per round: small pure-Python wheels without dependencies that the managed environment (the dask stack)
# does not contain; those this machine's Python has are left out (own_python's venvs see them), and every
# worker host's environment is checked before each timed run.
PACKAGES = ("tabulate==0.9.0", "termcolor==2.4.0", "toml==0.10.2", "appdirs==1.4.4", "text-unidecode==1.3",
            "iniconfig==2.0.0", "humanize==4.11.0", "more-itertools==10.5.0", "wcwidth==0.2.13",
            "colorama==0.4.6")

# Run in a fresh interpreter with the benchmark's environment: homecluster's planning step of install-pkg for
# each package (probe, resolve, fill the wheelhouse), the cluster untouched and the recorded packages unchanged.
PREFETCH_SCRIPT = """\
import json, sys, time
from homecluster.ops import install_pkg as install
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
    p = install.plan(inv, [pkg], progress=lambda s: None)
    out.append({"package": pkg, "seconds": time.perf_counter() - t0, "download": sum(spent),
                "adds": sorted({a for h in p.good() for a in h.adds}), "wheels": sorted(p.wheels),
                "bytes": sum(len(b) for b in p.wheels.values()),
                "not_planned": [r.error or r.value.problem for r in p.hosts.values() if r.value not in p.good()]})
print(json.dumps(out))
"""


# --- the inventories and the hosts' own Pythons -------------------------------------------------------------

def own_python(runs: Path, kind: str, host: str) -> Path:
    """The venv that is a host's own Python in cluster C or D (one per cluster and host)."""
    return runs / OWN_PYTHONS / CLUSTERS[kind][0] / host


def write_inventory(hh: Household, kind: str, cwd: Path, runs: Path) -> Path:
    """The inventory of a cluster, in its own directory: managed environments (A, B; see tests/test_setup.py),
    or a `python:` key per host and no environment: section (C, D; see tests/test_install_own_python.py)."""
    import yaml
    from conftest import household_inventory

    name, ports, workers = CLUSTERS[kind]
    path = cwd / name / "inventory.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind not in OWN:
        return managed_inventory(hh, path, name, workers, ports, runs / name)
    pythons = {h: {"python": str(own_python(runs, kind, h) / "bin" / "python")} for h in NAMES}
    household_inventory(hh, path, name, workers=workers, host_extra=pythons,
                        cluster_extra={"scheduler_port": ports[0], "dashboard_port": ports[1]})
    data = yaml.safe_load(path.read_text())
    data["defaults"]["run_directory"] = str(runs / name)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def make_own_pythons(kind: str, runs: Path) -> float:
    """Every host's own Python of cluster C or D: a venv from this machine's Python that sees its dask (system site
    packages) and has no pip of its own (the worker installs with uv if its PATH has one, else with the system's
    pip: INSTALLER in the timeline says which); checked to import this machine's distributed. Returns the seconds
    taken.

    Run from a venv, the benchmark's Python is not the one whose packages a new venv sees (that is the base
    interpreter's): a .pth file then adds the benchmark's own site-packages."""
    import distributed

    t0 = time.perf_counter()
    for h in NAMES:
        venv = own_python(runs, kind, h)
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
                       check=True, capture_output=True)
        if sys.prefix != sys.base_prefix:
            (site_packages(runs, kind, h) / "bench-client.pth").write_text("\n".join(site.getsitepackages()) + "\n")
        seen = subprocess.run([str(venv / "bin" / "python"), "-c", "import distributed as d; print(d.__version__)"],
                              capture_output=True, text=True)
        if seen.stdout.strip() != distributed.__version__:
            raise BenchError(f"the venv {venv} does not see this machine's distributed {distributed.__version__} "
                             f"(exit {seen.returncode}: {seen.stderr.strip()[-300:]})")
    return time.perf_counter() - t0


def worker_hosts(kind: str) -> list[str]:
    return [h for h, n in CLUSTERS[kind][2].items() if n > 0]


def site_packages(runs: Path, kind: str, host: str) -> Path:
    """A host's site-packages in a cluster: its managed environment's or its own venv's (the hosts share this
    machine's file system)."""
    name = CLUSTERS[kind][0]
    # managed: <run_directory>/<cluster>/<host>/env, run_directory = runs/<cluster>
    env = own_python(runs, kind, host) if kind in OWN else runs / name / name / host / "env"
    found = sorted(env.glob("lib/python*/site-packages"))
    if not found:
        raise BenchError(f"no environment at {env}")
    return found[0]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def absent_here(requirements: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(the requirements whose distribution this machine's Python lacks, those it has, as NAME=VERSION)."""
    absent, present = [], []
    for req in requirements:
        name = req.split("==")[0]
        try:
            present.append(f"{name}={version(name)}")
        except PackageNotFoundError:
            absent.append(req)
    return absent, present


def dist_infos(site: Path, requirement: str) -> list[Path]:
    """The .dist-info directories of the requirement's distribution (any version) in site-packages."""
    name = _norm(requirement.split("==")[0])
    return [p for p in site.glob("*.dist-info") if _norm(p.name[:-len(".dist-info")].rsplit("-", 1)[0]) == name]


def installer(dist_info: Path) -> str:
    """Who installed a distribution (its INSTALLER file: pip, uv), '?' if it does not say."""
    f = dist_info / "INSTALLER"
    return f.read_text().strip() if f.exists() else "?"


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
    return {**res, "rows": rows, "done": done, "installer": {h: installer(after[h][0]) for h in hosts}}


# --- where the time goes ----------------------------------------------------------------------------------

PHASES = ("start+facts", "resolve+connect", "install", "tail")


def breakdown(res: dict) -> dict:
    """A run's timeline (events sorted by time) and its phases in seconds.

    Phases: start+facts (interpreter, imports, inventory, SSH to every host for its Python, platform and installed
    packages; until the "resolving" line), resolve+connect (uv resolves, one after the other for each distinct
    set of installed packages among all hosts, workers or not: the progress line is printed once; wheelhouse
    checked, the client connects to the scheduler; until the "installing" line), install (plugin registered,
    every worker installs; until the last host's .dist-info is written), tail (last host done until exit: the
    versions asked from every worker, the lock and the record updated, the table printed)."""
    lines = res["stderr_lines"]
    events = [(t, f"{h}: .dist-info written (file mtime; INSTALLER {res['installer'][h]})")
              for h, t in res["done"].items()]
    t_res, t_inst = line_time(lines, "resolving"), line_time(lines, "installing")
    last = max(res["done"].values()) if res["done"] else None
    phases = {"start+facts": t_res, "resolve+connect": diff(t_inst, t_res), "install": diff(last, t_inst),
              "tail": diff(res["seconds"], last),
              "hosts": {h: diff(t, t_inst) for h, t in res["done"].items()}}
    return {"events": timeline(res, events), "phases": phases}


# --- preparation ------------------------------------------------------------------------------------------

def prepare(kind: str, inv: Path, cwd: Path, runs: Path, env: dict, cache: Path) -> dict:
    """`homecluster setup` (A, B) or the hosts' venvs (C, D), then `homecluster up` of one cluster (untimed for
    the comparison)."""
    logged = downloads_logged(cache)
    if kind in OWN:
        out = {"venv_seconds": make_own_pythons(kind, runs)}
    else:
        s = run_checked(["setup", "-i", str(inv)], cwd, timeout=CLI_TIMEOUT, env=env)
        out = {"setup_seconds": s["seconds"], "setup_stdout": s["stdout"],
               "downloaded": next((ln for ln in s["stdout"].splitlines() if ln.startswith("downloaded ")), "")}
    u = run_checked(["up", "-i", str(inv)], cwd, timeout=CLI_TIMEOUT, env=env)
    return {**out, "up_seconds": u["seconds"], "up_stdout": u["stdout"],
            "wheels_downloaded": downloads_logged(cache) - logged}


def prepared_text(kind: str, p: dict) -> str:
    """One cluster's preparation in words."""
    made = (f"venvs {p['venv_seconds']:.2f} s" if kind in OWN
            else f"setup {p['setup_seconds']:.2f} s ({p['wheels_downloaded']} wheels downloaded)")
    return f"{SHORT[kind]} ({CLUSTERS[kind][0]}, workers on {', '.join(worker_hosts(kind))}): {made}, " \
           f"up {p['up_seconds']:.2f} s"


def prefetch(packages: list[str], inv: Path, cwd: Path, env: dict, cache: Path) -> dict:
    """Put every round's wheels into the wheelhouse with install-pkg's own planning step on one inventory
    (untimed for the comparison); per package: plan seconds, of which download, and what it adds."""
    logged = downloads_logged(cache)
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", PREFETCH_SCRIPT, str(inv), *packages], cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=CLI_TIMEOUT)
    seconds = time.perf_counter() - t0
    if p.returncode != 0:
        raise BenchError(f"filling the wheelhouse for {packages} from {inv} failed (exit {p.returncode}):\n"
                         f"{p.stderr}")
    per = json.loads(p.stdout.strip().splitlines()[-1])
    for rec in per:
        name = _norm(rec["package"].split("==")[0])
        if rec["not_planned"] or not any(_norm(r.split("==")[0]) == name for r in rec["adds"]):
            raise BenchError(f"planning {rec['package']} with {inv} would add {rec['adds']}, not the package "
                             f"(hosts not planned: {rec['not_planned']})")
    return {"seconds": seconds, "wheels_downloaded": downloads_logged(cache) - logged, "packages": per}


def one_round(requirement: str, invs: dict[str, Path], runs: Path, cwd: Path, env: dict, cache: Path) -> dict:
    """A, B, C then D, each installing the round's package."""
    out: dict = {"package": requirement}
    for kind in KINDS:
        r = checked_install(kind, requirement, invs[kind], runs, cwd, env, cache)
        out[kind] = {"seconds": r["seconds"], "load": r["load"], "stdout": r["stdout"], "rows": r["rows"],
                     "installer": r["installer"], **breakdown(r)}
    return out


def round_text(r: dict) -> str:
    """A round's seconds per cluster and its two ratios."""
    ratios = [f"{SHORT[many]}/{SHORT[one]} {r[many]['seconds'] / r[one]['seconds']:.2f}"
              for one, many in PAIRS.values() if one in r and many in r]
    return ", ".join(f"{SHORT[k]} {r[k]['seconds']:.2f} s" for k in KINDS if k in r) + "; " + ", ".join(ratios)


# --- figures and the report -------------------------------------------------------------------------------

def summarize(rounds: list[dict]) -> dict:
    """Seconds per kind, the two ratios (all hosts / 1 host: managed, own Python) against the goal, phases."""
    seconds, ratios = {}, {}  # seconds: every kind's, from kind_seconds
    for family, (one, many) in PAIRS.items():
        seconds, rat, per_round = kind_seconds(rounds, KINDS, one, many)
        ratios[family] = {"of": f"{SHORT[many]} / {SHORT[one]}", "ratio": rat, "per_round": per_round,
                          "goal": RATIO_GOAL, "met": bool(rat) and rat["median"] <= RATIO_GOAL}
    phases = {}
    for k in KINDS:
        ph = [r[k]["phases"] for r in rounds if k in r]
        if not ph:
            continue
        phases[k] = {name: stats([p[name] for p in ph]) for name in PHASES}
        phases[k]["hosts"] = {h: stats([p["hosts"].get(h) for p in ph]) for h in ph[0]["hosts"]}
    return {"seconds": seconds, "ratios": ratios, "phases": phases}


def print_timeline(title: str, rec: dict) -> None:
    print_events(title, rec)
    ph = rec["phases"]
    print("  phases: " + ", ".join(f"{name} {fmt(ph[name])}" for name in PHASES)
          + "; per host, installing line until .dist-info: "
          + ", ".join(f"{h} {fmt(t)}" for h, t in ph["hosts"].items()))


def installers(rounds: list[dict], kind: str) -> str:
    """Who installed the packages on the workers of a kind of run, over all rounds (INSTALLER files: pip, uv)."""
    return ", ".join(sorted({i for r in rounds if kind in r for i in r[kind]["installer"].values()}))


def print_prefetch(family: str, fetched: dict) -> None:
    print(f"wheels of the rounds put into the wheelhouse first with the {family} inventory (install-pkg's planning "
          f"step, untimed for the comparison): {fetched['seconds']:.2f} s in all, {fetched['wheels_downloaded']} "
          "downloaded")
    for rec in fetched["packages"]:
        print(f"  {rec['package']:<24} plan {rec['seconds']:.2f} s, of which download {rec['download']:.2f} s; "
              f"{', '.join(rec['wheels'])} ({rec['bytes'] / 1e3:.0f} kB)")


def print_report(prep: dict, fetched: dict, rounds: list[dict], summ: dict, base: float, left_out: list[str],
                 errors: list[str]) -> None:
    print()
    for k, p in prep.items():
        print(prepared_text(k, p) + " (untimed for the comparison)")
    if left_out:
        print(f"left out of PACKAGES, this machine's Python has them (the venvs would see them): {', '.join(left_out)}")
    for family, f in fetched.items():
        print_prefetch(family, f)
    print("\nper round (seconds)")
    for i, r in enumerate(rounds, 1):
        print(f"  #{i}  {r['package']:<22}  "
              + "  ".join(f"{SHORT[k]} {fmt(r[k]['seconds'])}" for k in KINDS if k in r))
    print()
    width = 34
    print_seconds_table([(f"{SHORT[k]}: {k}", summ["seconds"][k]) for k in KINDS], width, "", None, [])
    for family, rat in summ["ratios"].items():
        print_ratio_row(f"ratio {rat['of']} ({family})", rat["ratio"], rat["per_round"], width)
    for family, rat in summ["ratios"].items():
        if rat["ratio"]:
            print(goal(f"{family}: install-pkg on all worker hosts / 1 worker host <= {RATIO_GOAL}",
                       rat["ratio"]["median"], rat["met"]))
    print(f"baseline: `python -m homecluster --version` {base:.2f} s (fresh-process cost inside every figure)")
    print_machine_loads(rounds, KINDS, lambda k: f"{SHORT[k]} ", lambda k: f"; installed by {installers(rounds, k)}")

    print("\nphase medians (seconds; start+facts = until the resolving line, resolve+connect = until the "
          "installing line, install = until the last host's .dist-info, tail = until exit)")
    for k, ph in summ["phases"].items():
        print(f"  {SHORT[k]}  " + "  ".join(f"{name} {fmt_stat(ph[name])}" for name in PHASES)
              + "; per host " + ", ".join(f"{h} {fmt_stat(s)}" for h, s in ph["hosts"].items()))

    print("\nwhere the time goes (round 1; t = seconds since the process started; stderr lines as they arrived, "
          ".dist-info times from the hosts' environments)")
    print_round_one(rounds, KINDS, lambda k: f"{SHORT[k]}: {k}", print_timeline)
    print_errors(errors)


# --- main ---------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    usable, left_out = absent_here(PACKAGES)
    args = parse_args(argv, __doc__, min(3, len(usable)),
                      f"rounds, each A, B, C then D (default 3, at most {len(usable)})",
                      max_rounds=len(usable), max_reason="one new package per round, one this machine's Python "
                                                         f"lacks: {', '.join(usable)}")
    if skipped("bench_install"):
        return 0
    compile_sources()

    errors: list[str] = []
    rounds: list[dict] = []
    prep: dict = {}
    fetched: dict = {}
    hh = None
    invs: dict[str, Path] = {}
    packages = usable[:args.rounds]
    with tempfile.TemporaryDirectory(prefix="homecluster-bench-install-") as tmp:
        tmp = Path(tmp)
        cache, runs, cwd, env = fresh_laptop(tmp)  # empty wheelhouse, and pip's and uv's own caches empty too
        try:
            hh, build_s = build_household(tmp / "household", PREFIX, SUBNET)
            base = cli_start_baseline(env)

            try:
                for kind in KINDS:
                    invs[kind] = write_inventory(hh, kind, cwd, runs)
                    prep[kind] = prepare(kind, invs[kind], cwd, runs, env, cache)
                    print(prepared_text(kind, prep[kind]), flush=True)
                for family, (one, _) in PAIRS.items():
                    fetched[family] = prefetch(packages, invs[one], cwd, env, cache)
                    print(f"wheelhouse filled for {', '.join(packages)} with the {family} inventory: "
                          f"{fetched[family]['seconds']:.2f} s, {fetched[family]['wheels_downloaded']} wheels "
                          "downloaded", flush=True)
            except Exception as e:  # noqa: BLE001 - without all clusters up and the wheels there, no rounds
                note_error(errors, "preparation", e)
                fetched = {}

            for i, pkg in enumerate(packages if fetched else [], 1):
                try:
                    r = one_round(pkg, invs, runs, cwd, env, cache)
                except Exception as e:  # noqa: BLE001 - one failed round is reported, the others still run
                    note_error(errors, f"round {i} ({pkg})", e)
                    continue
                rounds.append(r)
                print(f"round {i} ({pkg}): {round_text(r)}", flush=True)

            downs = {}
            for kind, inv in invs.items():
                d = run_cli(["down", "-i", str(inv)], cwd, timeout=CLI_TIMEOUT, env=env)
                downs[kind] = {"rc": d["rc"], "seconds": d["seconds"]}
                if d["rc"] != 0:
                    errors.append(f"`homecluster down -i {inv}` exit {d['rc']}:\n{d['stdout']}\n{d['stderr']}")
            invs = {}  # down done: nothing left for the finally block

            summ = summarize(rounds)
            print_report(prep, fetched, rounds, summ, base, left_out, errors)
            print("down: " + ", ".join(f"{SHORT[k]} {fmt(d['seconds'])} s (exit {d['rc']})" for k, d in downs.items()))
            if args.json:
                clusters = {SHORT[k]: {"kind": k, "name": c[0], "ports": c[1], "workers": c[2],
                                       "python": "own venvs" if k in OWN else "managed environment"}
                            for k, c in CLUSTERS.items()}
                config = run_config(args.rounds, hh, build_s, clusters=clusters, packages=packages,
                                    left_out=left_out, environment={"python": CLIENT_MINOR, "packages": []})
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
