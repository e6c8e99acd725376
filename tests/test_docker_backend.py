"""The docker backend on the simulated household (issue 13): a real Docker engine in each of two docker hosts and
on the laptop (tests/docker_engine.py), the scheduler native on the third host. `homecluster image build --base`
on the laptop's engine, then `up` ships the image once to each docker host and the workers register with the
hosts' names; a second `up` ships nothing and replaces no container; `docker kill` of a worker container is
undone by the watcher; a host whose daemon is stopped fails alone with the reason; `down` leaves no container
and no process of ours, and the images (unless --images). Ports 8896-8897, 9360-9379."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from conftest import hc, wait_for  # noqa: E402
from docker_engine import DockerEngine, base_image, can_run  # noqa: E402
from household import Household, can_build  # noqa: E402

pytestmark = pytest.mark.household

PREFIX = os.environ.get("HC_TEST_DOCKERB_PREFIX", "hcdb")
SUBNET = os.environ.get("HC_TEST_DOCKERB_SUBNET", "10.213.68")
DOCKER_HOSTS = ("study", "attic")


def _unavailable(message: str):
    if os.environ.get("CI"):
        pytest.fail(message + " (CI must run the docker backend tests: see tests/run)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def docker_household(tmp_path_factory):
    """desktop (native, the scheduler), study and attic (docker hosts, each with its own engine), and the
    laptop's engine (the root namespace) with the test base image."""
    for ok, reason in (can_build(), can_run()):
        if not ok:
            _unavailable(reason)
    work = tmp_path_factory.mktemp("dockerb")
    engines: dict[str, DockerEngine] = {}
    with Household(workdir=work / "household", prefix=PREFIX, subnet=SUBNET) as hh:
        try:
            engines["laptop"] = DockerEngine(work / "laptop", f"{PREFIX}-laptop").__enter__()
            for name in DOCKER_HOSTS:
                engines[name] = DockerEngine(work / name, f"{PREFIX}-{name}", nsenter_prefix=hh.nsenter_argv(name)
                                             ).__enter__()
            base = base_image(engines["laptop"])
            yield hh, engines, base, work
        finally:
            left = [f"{name}: {x}" for name, e in engines.items() for x in e.close()]
            assert left == [], left


def _inventory(hh, engines, path: Path, **host_extra) -> Path:
    data = {
        "cluster": {"name": "dk", "scheduler": "desktop", "scheduler_port": 8896, "dashboard_port": 8897,
                    "worker_ports": "9360:9369", "nanny_ports": "9370:9379"},
        "defaults": {"user": "root", "ssh_key": str(hh.client_key), "known_hosts": str(hh.known_hosts),
                     "nthreads": 1, "memory_limit": "1GB", "death_timeout": 30,
                     "run_directory": str(path.parent / "run")},
        "hosts": {
            "desktop": {"address": hh.host("desktop").address, "python": sys.executable, "nworkers": 0},
            **{n: {"address": hh.host(n).address, "backend": "docker", "docker_host": engines[n].docker_host,
                   "nworkers": 1, **host_extra.get(n, {})} for n in DOCKER_HOSTS},
        },
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _hc(*args, inv, engines, timeout=600):
    env_before = os.environ.get("DOCKER_HOST")
    os.environ["DOCKER_HOST"] = engines["laptop"].docker_host  # this machine's engine, as the user's
    try:
        return hc(*args, inv=inv, timeout=timeout)
    finally:
        if env_before is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = env_before


def _containers(engine) -> list[dict]:
    out = engine.docker("ps", "-a", "--filter", "label=org.homecluster.cluster=dk", "--format", "{{json .}}").stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_docker_hosts_run_the_shipped_image_and_recover(docker_household, tmp_path):
    from homecluster import connect

    hh, engines, base, work = docker_household
    inv = _inventory(hh, engines, tmp_path / "inventory.yaml")
    try:
        build = _hc("image", "build", "--base", base, inv=inv, engines=engines)
        assert build.returncode == 0, build.stdout + build.stderr
        up = _hc("up", inv=inv, engines=engines)
        assert up.returncode == 0, up.stdout + up.stderr
        assert "shipping the image" in up.stderr
        ids = {n: engines[n].docker("images", "-q", "--no-trunc").stdout.split() for n in DOCKER_HOSTS}
        assert all(len(v) == 1 for v in ids.values()) and ids["study"] == ids["attic"], ids
        with connect(str(inv)) as client:
            names = client.run(socket.gethostname)
            assert sorted(names.values()) == ["attic", "study"]
            assert client.submit(sum, [1, 2, 3]).result() == 6
        for n in DOCKER_HOSTS:
            (c,) = _containers(engines[n])
            assert c["Names"] == f"hc-dk-{n}-worker" and c["State"] == "running"
        before = {n: _containers(engines[n])[0]["ID"] for n in DOCKER_HOSTS}

        t0 = time.monotonic()
        again = _hc("up", inv=inv, engines=engines)
        took = time.monotonic() - t0
        assert again.returncode == 0 and "nothing changed" in again.stdout, again.stdout + again.stderr
        assert "shipping" not in again.stderr
        assert {n: _containers(engines[n])[0]["ID"] for n in DOCKER_HOSTS} == before
        print(f"second up: {took:.2f} s (bench/bench_docker.py measures it side by side)")

        engines["study"].docker("kill", "hc-dk-study-worker")
        with connect(str(inv)) as client:
            gone = wait_for(lambda: "study" not in [w["name"] for w in client.scheduler_info()["workers"].values()],
                            timeout=40)
            assert gone, "the killed worker never left the scheduler"
            back = wait_for(lambda: "study" in [w["name"] for w in client.scheduler_info()["workers"].values()],
                            timeout=60)
            assert back, "the killed worker container did not come back"
        st = _hc("status", "--json", inv=inv, engines=engines)
        study = next(h for h in json.loads(st.stdout)["hosts"] if h["name"] == "study")
        assert study["supervision"]["worker"]["restarts"] == 1, study

        engines["attic"].stop_daemon()
        try:
            broken = _hc("up", inv=inv, engines=engines)
            failures = broken.stdout.split("failures:")[-1]
            assert broken.returncode == 1
            assert f"attic: the Docker daemon at {engines['attic'].docker_host} is not running" in failures, \
                broken.stdout + broken.stderr
            assert "study:" not in failures and "study  tls://" in broken.stdout  # the rest of the cluster is fine
        finally:
            engines["attic"].start_daemon()
    finally:
        down = _hc("down", inv=inv, engines=engines)
    assert down.returncode == 0, down.stdout + down.stderr
    for n in DOCKER_HOSTS:
        assert _containers(engines[n]) == []
        assert engines[n].docker("images", "-q").stdout.strip(), "down keeps the images"
    daemons = {e.dockerd_pid for e in engines.values()} | {e.containerd_pid for e in engines.values()}
    left = [(h.name, pid, cmd) for h in hh.hosts for pid, cmd in hh.processes(h.name)
            if "sshd" not in cmd and pid not in daemons]
    assert left == [], left  # no watcher, no container process, no native scheduler
    gone = _hc("down", "--images", inv=inv, engines=engines)
    assert gone.returncode == 0 and gone.stdout.count("image sha256:") == 2, gone.stdout + gone.stderr
    assert all(engines[n].docker("images", "-q").stdout.strip() == "" for n in DOCKER_HOSTS)


def test_the_scheduler_on_a_docker_host(docker_household, tmp_path):
    """Mixed the other way: the scheduler in a container on study, a worker in one on attic and a native worker
    on desktop; all three register and compute; down leaves no container."""
    import yaml

    from homecluster import connect

    hh, engines, base, work = docker_household
    inv = _inventory(hh, engines, tmp_path / "inventory.yaml")
    data = yaml.safe_load(inv.read_text())
    data["cluster"]["scheduler"] = "study"
    data["hosts"]["desktop"]["nworkers"] = 1
    data["hosts"]["study"]["nworkers"] = 0
    inv.write_text(yaml.safe_dump(data, sort_keys=False))
    try:
        build = _hc("image", "build", "--base", base, inv=inv, engines=engines)
        assert build.returncode == 0, build.stdout + build.stderr
        up = _hc("up", inv=inv, engines=engines)
        assert up.returncode == 0, up.stdout + up.stderr
        assert [c["Names"] for c in _containers(engines["study"])] == ["hc-dk-study-scheduler"]
        with connect(str(inv)) as client:
            assert sorted(client.run(socket.gethostname).values()) == ["attic", "desktop"]
            assert client.submit(sum, [4, 5]).result() == 9
        again = _hc("up", inv=inv, engines=engines)
        assert again.returncode == 0 and "nothing changed" in again.stdout, again.stdout + again.stderr
    finally:
        down = _hc("down", inv=inv, engines=engines)
    assert down.returncode == 0, down.stdout + down.stderr
    assert all(_containers(engines[n]) == [] for n in DOCKER_HOSTS)
