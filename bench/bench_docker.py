#!/usr/bin/env python
"""Benchmark the docker backend: image build, image size, shipping per host, and cold `up` on docker hosts next to
native ones, side by side in one run.

A fresh 3-host household (tests/household.py, prefix "hdk" on 10.213.71.0/24, so it never collides with the
tests' or the other benchmarks' households) with a real Docker engine in study and attic and one on the laptop
(tests/docker_engine.py; the base image `homecluster-test/python:3.11` comes from a cached debootstrap: nothing
can be pulled here). The scheduler is native on desktop; one worker process (1 thread) on study and on attic.

Once: `homecluster image build --base homecluster-test/python:3.11` on the laptop's engine (cold: the lock and
the wheelhouse are made too, unless cached), then again (nothing changed); the image's size.

Every round, in alternating order:
* native: study and attic run this machine's Python (`python:`); cold `up` (nothing running), then `down`.
* docker: the image removed from both hosts; `image push study`, then `image push attic` timed one after the
  other (shipping per host, MB/s), the image removed again; cold `up` that ships to both hosts in parallel; a
  second `up` (nothing changed: nothing shipped, nothing restarted; the issue's goal is under 5 s); `down`;
  cold `up` with the image already there; `down`.
The report gives per measurement median, min and max, and the ratio of docker's cold up (image present) to
native's, measured in the same rounds.

    python bench/bench_docker.py [--rounds N] [--json PATH]

Needs root, dockerd and debootstrap; exits 0 with a message when the household or Docker cannot run here.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import common
from common import BenchError, build_household, fmt_stat, parse_args, ratio, skipped, stats

PREFIX, SUBNET = "hdk", "10.213.71"
DOCKER_HOSTS = ("study", "attic")
PORTS = {"native": (8902, 8903), "docker": (8900, 8901)}
NOOP_GOAL = 5.0


def inventory(hh, engines, path: Path, kind: str) -> Path:
    import yaml

    def host(name: str) -> dict:
        h = {"address": hh.host(name).address, "nworkers": 1}
        if kind == "docker":
            return {**h, "backend": "docker", "docker_host": engines[name].docker_host}
        return {**h, "python": sys.executable}
    data = {"cluster": {"name": f"b{kind}", "scheduler": "desktop", "scheduler_port": PORTS[kind][0],
                        "dashboard_port": PORTS[kind][1]},
            "defaults": {"user": "root", "ssh_key": str(hh.client_key), "known_hosts": str(hh.known_hosts),
                         "nthreads": 1, "memory_limit": "1GB", "death_timeout": 30,
                         "run_directory": str(path.parent / "run")},
            "hosts": {"desktop": {"address": hh.host("desktop").address, "python": sys.executable, "nworkers": 0},
                      **{n: host(n) for n in DOCKER_HOSTS}}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def timed(args: list[str], inv: Path, env: dict, what: str) -> float:
    """Run the CLI; its wall time. A failure is a BenchError with its output."""
    import subprocess

    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "homecluster", args[0], "-i", str(inv), *args[1:]], env=env,
                       capture_output=True, text=True, timeout=900)
    took = time.perf_counter() - t0
    if p.returncode != 0:
        raise BenchError(f"{what} failed (exit {p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    return took


def drop_images(engines) -> None:
    for n in DOCKER_HOSTS:
        ids = engines[n].docker("images", "-q").stdout.split()
        if ids:
            engines[n].docker("rmi", "-f", *ids)


def one_round(i: int, invs: dict[str, Path], engines, env: dict, size: int) -> dict:
    rec: dict = {}
    order = ("native", "docker") if i % 2 == 0 else ("docker", "native")
    for kind in order:
        if kind == "native":
            rec["native_cold_up"] = timed(["up"], invs["native"], env, "native up")
            timed(["down"], invs["native"], env, "native down")
            continue
        drop_images(engines)
        for n in DOCKER_HOSTS:
            rec[f"ship_{n}"] = timed(["image", "push", n], invs["docker"], env, f"image push {n}")
            rec[f"ship_{n}_mb_s"] = size / 1e6 / rec[f"ship_{n}"]
        drop_images(engines)
        rec["docker_cold_up_shipping"] = timed(["up"], invs["docker"], env, "docker up (shipping)")
        rec["docker_noop_up"] = timed(["up"], invs["docker"], env, "docker second up")
        timed(["down"], invs["docker"], env, "docker down")
        rec["docker_cold_up"] = timed(["up"], invs["docker"], env, "docker up (image there)")
        timed(["down"], invs["docker"], env, "docker down")
    print(f"round {i + 1}: " + ", ".join(f"{k} {v:.2f}" for k, v in rec.items()), flush=True)
    return rec


ROWS = (("image push study (s)", "ship_study"), ("image push attic (s)", "ship_attic"),
        ("shipping study (MB/s)", "ship_study_mb_s"), ("shipping attic (MB/s)", "ship_attic_mb_s"),
        ("cold up, native hosts (s)", "native_cold_up"), ("cold up, docker hosts, image there (s)", "docker_cold_up"),
        ("cold up, docker hosts, shipping (s)", "docker_cold_up_shipping"),
        ("second up, docker hosts (s)", "docker_noop_up"))


def report(build: dict, rounds: list[dict]) -> dict:
    summ = {key: stats([r.get(key) for r in rounds]) for _, key in ROWS}
    print(f"\nimage build: cold {build['cold']:.2f} s, again (nothing changed) {build['warm']:.2f} s; "
          f"image size {build['size'] / 1e6:.0f} MB\n")
    print(f"{'':42} {'median':>8} {'min':>8} {'max':>8}")
    for label, key in ROWS:
        s = summ[key]
        print(f"{label:42} {fmt_stat(s):>8} {fmt_stat(s, 'min'):>8} {fmt_stat(s, 'max'):>8}")
    rat = ratio(summ["docker_cold_up"], summ["native_cold_up"])
    per = [r["docker_cold_up"] / r["native_cold_up"] for r in rounds]
    print(f"\ncold up docker / native (same rounds): median {fmt_stat(rat)}, min {fmt_stat(rat, 'min')}, per round "
          + ", ".join(f"{x:.2f}" for x in per))
    noop = summ["docker_noop_up"]["median"]
    print(common.goal(f"second up on docker hosts under {NOOP_GOAL:g} s", noop, noop < NOOP_GOAL, " s"))
    return {"build": build, "summary": summ, "ratio_docker_native_cold_up": rat, "per_round_ratio": per}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv, __doc__, 3, "rounds (default 3)")
    if skipped("bench_docker"):
        return 0
    from docker_engine import DockerEngine, base_image, can_run

    ok, reason = can_run()
    if not ok:
        print(f"bench_docker: skipped: {reason}")
        return 0
    engines: dict = {}
    hh = None
    with tempfile.TemporaryDirectory(prefix="homecluster-bench-docker-") as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "HOMECLUSTER_CONFIG": str(tmp / "config")}
        try:
            hh, _ = build_household(tmp / "household", PREFIX, SUBNET)
            engines["laptop"] = DockerEngine(tmp / "laptop", f"{PREFIX}-laptop").__enter__()
            for n in DOCKER_HOSTS:
                engines[n] = DockerEngine(tmp / n, f"{PREFIX}-{n}", nsenter_prefix=hh.nsenter_argv(n)).__enter__()
            base = base_image(engines["laptop"])
            env["DOCKER_HOST"] = engines["laptop"].docker_host
            invs = {k: inventory(hh, engines, tmp / k / "inventory.yaml", k) for k in PORTS}
            build = {"cold": timed(["image", "build", "--base", base], invs["docker"], env, "image build")}
            build["warm"] = timed(["image", "build", "--base", base], invs["docker"], env, "image build again")
            record = json.loads((tmp / "config" / "images" / "bdocker.json").read_text())
            build["size"] = record["size"]
            rounds = [one_round(i, invs, engines, env, record["size"]) for i in range(args.rounds)]
            data = report(build, rounds)
            if args.json:
                common.write_json(args.json, {"rounds": rounds, **data})
            return 0
        finally:
            for kind in PORTS:
                p = tmp / kind / "inventory.yaml"
                if p.exists():
                    try:
                        timed(["down"], p, env, "final down")
                    except BenchError as e:
                        print(f"cleanup: {e}", file=sys.stderr)
            for e in engines.values():
                left = e.close()
                if left:
                    print(f"cleanup: {e.name} left {left}", file=sys.stderr)
            if hh is not None:
                hh.close()


if __name__ == "__main__":
    sys.exit(main())
