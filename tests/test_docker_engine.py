"""Self-check of the Docker test harness (tests/docker_engine.py): a real Docker engine in each simulated household
host plus one on the laptop (the root namespace); the base image imported on the laptop reaches the hosts by
`docker save | docker load` through pipes, and so does an image built on the laptop; `--network host`
containers see the host's name and bind the host's address; a stopped daemon is "Docker not running" and
`--restart unless-stopped` containers come back with it; closing an engine (also after its daemons were
SIGKILLed) leaves no process, mount, cgroup, socket or netns."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from docker_engine import (RUN_ROOT, DockerEngine, DockerUnavailable, base_image, can_run,  # noqa: E402
                           copy_image)
from household import Household, can_build  # noqa: E402

pytestmark = pytest.mark.household

# Not used by any other household (57, 58, 59, 61, 63, 65, 70, 75, 90-92); two test runs at once need others.
PREFIX = os.environ.get("HC_TEST_DOCKER_PREFIX", "hcdk")
SUBNET = os.environ.get("HC_TEST_DOCKER_SUBNET", "10.213.67")
HOSTS = ("desktop", "study")

# A web server that answers with the hostname it sees and exits on SIGTERM (as PID 1 of a container a Python
# without a handler ignores it, and every daemon stop would wait out the stop timeout).
SERVER = """
import http.server, signal, socket, sys
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = socket.gethostname().encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer((sys.argv[1], int(sys.argv[2])), Handler).serve_forever()
"""


def _unavailable(message: str):
    if os.environ.get("CI"):
        pytest.fail(message + " (CI must run the Docker harness tests: see tests/run)", pytrace=False)
    pytest.skip(message)


def _get(address: str, port: int, timeout: float = 2.0) -> str:
    with urllib.request.urlopen(f"http://{address}:{port}/", timeout=timeout) as response:
        return response.read().decode()


def _answers(address: str, port: int) -> str | None:
    try:
        return _get(address, port, timeout=0.5)
    except OSError:
        return None


def _refused(address: str, port: int) -> bool:
    try:
        socket.create_connection((address, port), timeout=1.0).close()
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    return False


def _wait(predicate, timeout: float = 20.0, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def _ours_anywhere() -> list[str]:
    """What of this module's engines and household is still on the machine (processes, mounts, cgroups, netns)."""
    marker = f"{RUN_ROOT}/{PREFIX}-"
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in cmd:
                found.append(f"process {entry}: {cmd}")
    found += [f"mount {line.split()[4]}" for line in Path("/proc/self/mountinfo").read_text().splitlines()
              if marker in line or f"hc-docker-{PREFIX}-" in line]
    found += [f"cgroup {group}" for group in Path("/sys/fs/cgroup").glob(f"**/hc-docker-{PREFIX}-*")]
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    found += [f"netns {ns}" for ns in netns if ns.startswith(f"{PREFIX}-")]
    return found


@pytest.fixture(scope="module")
def docker_household(tmp_path_factory):
    """Two household hosts (desktop, study) of their own; gone afterwards, with everything of the engines."""
    for ok, reason in (can_build(), can_run()):
        if not ok:
            _unavailable(f"cannot run the Docker harness here: {reason}")
    hh = Household(names=HOSTS, workdir=tmp_path_factory.mktemp("docker-household"), prefix=PREFIX, subnet=SUBNET)
    hh.__enter__()
    try:
        yield hh
    finally:
        hh.close()
    left = _ours_anywhere()
    assert left == [], f"left on the machine: {left}"


@pytest.fixture(scope="module")
def engines(docker_household, tmp_path_factory):
    """One engine per host (in its network and UTS namespaces) and one for the laptop (the root namespace)."""
    base = tmp_path_factory.mktemp("docker-engines")
    started: dict[str, DockerEngine] = {}
    t0 = time.monotonic()
    try:
        for name in ("laptop", *HOSTS):
            prefix = None if name == "laptop" else docker_household.nsenter_argv(name)
            engine = DockerEngine(base / name, f"{PREFIX}-{name}", prefix)
            try:
                engine.__enter__()
            except DockerUnavailable as exc:
                _unavailable(str(exc))
            started[name] = engine
        print(f"\n{len(started)} Docker engines up in {time.monotonic() - t0:.2f} s")
        yield started
    finally:
        t1 = time.monotonic()
        with ThreadPoolExecutor(len(started) or 1) as pool:
            left = dict(zip(started, pool.map(DockerEngine.close, started.values())))
        print(f"\nDocker engines closed in {time.monotonic() - t1:.2f} s")
    assert all(not items for items in left.values()), f"left behind: {left}"
    strays = docker_household.leftovers(settle=2)
    assert strays == [], f"processes left in the host namespaces: {strays}"


@pytest.fixture(scope="module")
def image(engines):
    """The base image, imported on the laptop and shipped to every host with `docker save | docker load`."""
    laptop = engines["laptop"]
    t0 = time.monotonic()
    try:
        tag = base_image(laptop)
    except DockerUnavailable as exc:
        _unavailable(str(exc))
    t1 = time.monotonic()
    for name in HOSTS:
        assert engines[name].docker("image", "inspect", tag, check=False).returncode != 0  # not there before
    with ThreadPoolExecutor(len(HOSTS)) as pool:  # to both hosts at once, as a deploy would
        for done in [pool.submit(copy_image, laptop, engines[name], tag) for name in HOSTS]:
            done.result()
    print(f"\nbase image imported in {t1 - t0:.2f} s, shipped to {len(HOSTS)} hosts in {time.monotonic() - t1:.2f} s")
    return tag


def _image_id(engine: DockerEngine, tag: str) -> str:
    return engine.docker("image", "inspect", "--format", "{{.Id}}", tag).stdout.strip()


def test_image_reaches_the_hosts_by_save_and_load(engines, image):
    laptop_id = _image_id(engines["laptop"], image)
    for name in HOSTS:
        assert _image_id(engines[name], image) == laptop_id
    # every engine is its own: a container on one host is not seen by the laptop or the other host
    cid = engines["desktop"].docker("create", image, "true").stdout.strip()
    try:
        for other in ("laptop", "study"):
            assert cid not in engines[other].docker("ps", "-aq", "--no-trunc").stdout
    finally:
        engines["desktop"].docker("rm", "-f", cid)


def test_host_network_container_sees_the_host_name(engines, image):
    probe = "import socket; print(socket.gethostname())"
    for name in HOSTS:
        out = engines[name].docker("run", "--rm", "--network", "host", image, "python3", "-c", probe).stdout
        assert out.strip() == name
    laptop = engines["laptop"].docker("run", "--rm", "--network", "host", image, "python3", "-c", probe).stdout
    assert laptop.strip() == socket.gethostname()


def test_laptop_builds_an_image_a_host_runs(engines, image, tmp_path):
    """`docker build` on the laptop (FROM the base image: Python 3.11, a venv with pip), shipped to a host."""
    (tmp_path / "Dockerfile").write_text(
        f"FROM {image}\n"
        "RUN python3 -m venv /opt/venv && /opt/venv/bin/python -m pip --version\n"
        'CMD ["/opt/venv/bin/python", "-c", "import socket, sys; print(socket.gethostname(), sys.version_info[:2])"]\n')
    tag = "homecluster-test/venv:1"
    engines["laptop"].docker("build", "--network", "host", "-t", tag, str(tmp_path), timeout=300)
    copy_image(engines["laptop"], engines["desktop"], tag)
    try:
        out = engines["desktop"].docker("run", "--rm", "--network", "host", tag).stdout
        assert out.split(maxsplit=1) == ["desktop", "(3, 11)\n"]
    finally:
        engines["desktop"].docker("rmi", tag, check=False)


def test_host_network_container_binds_the_host_address(docker_household, engines, image):
    desktop, study = docker_household.host("desktop"), docker_household.host("study")
    port = 18765
    engine = engines["desktop"]
    engine.docker("run", "-d", "--name", "web", "--network", "host", image, "python3", "-c", SERVER,
                  desktop.address, str(port))
    try:
        assert _wait(lambda: _answers(desktop.address, port)) == "desktop"  # from the root namespace (laptop)
        assert _refused(study.address, port)  # the desktop's address, not every host's
        assert _refused("127.0.0.1", port)  # nor the laptop's own
    finally:
        engine.docker("rm", "-f", "web")
    assert _wait(lambda: _refused(desktop.address, port), 5)


def test_stopped_daemon_and_restart_policy(docker_household, engines, image):
    study = docker_household.host("study")
    engine = engines["study"]
    keeper, oneshot = 18766, 18767
    engine.docker("run", "-d", "--name", "keeper", "--restart", "unless-stopped", "--network", "host", image,
                  "python3", "-c", SERVER, study.address, str(keeper))
    engine.docker("run", "-d", "--name", "oneshot", "--network", "host", image,
                  "python3", "-c", SERVER, study.address, str(oneshot))
    try:
        assert _wait(lambda: _answers(study.address, keeper)) == "study"
        assert _wait(lambda: _answers(study.address, oneshot)) == "study"

        t0 = time.monotonic()
        engine.stop_daemon()
        stop_s = time.monotonic() - t0
        info = engine.docker("info", check=False)
        assert info.returncode != 0
        assert "Cannot connect to the Docker daemon" in info.stderr, info.stderr
        assert engine.docker("ps", check=False).returncode != 0
        assert engine.pids() == []  # no dockerd, containerd, shim or container process
        assert _refused(study.address, keeper) and _refused(study.address, oneshot)

        t1 = time.monotonic()
        engine.start_daemon()
        start_s = time.monotonic() - t1
        assert engine.docker("info", "--format", "{{.ServerVersion}}").stdout.strip()
        assert _wait(lambda: _answers(study.address, keeper)) == "study"  # restarted by the daemon
        state = engine.docker("inspect", "--format", "{{.State.Status}} {{.RestartCount}}", "keeper").stdout.split()
        assert state[0] == "running"
        assert engine.docker("inspect", "--format", "{{.State.Status}}", "oneshot").stdout.strip() == "exited"
        assert _refused(study.address, oneshot)
        print(f"\nstop_daemon {stop_s:.2f} s, start_daemon {start_s:.2f} s (keeper {state})")
    finally:
        if engine.running():
            engine.docker("rm", "-f", "keeper", "oneshot", check=False)


def test_close_after_a_crash_leaves_nothing(docker_household, engines, image, tmp_path):
    """SIGKILL both daemons while a container runs (its shim and process live on), then close: nothing is left,
    and the host's other engine is untouched."""
    desktop = docker_household.host("desktop")
    port = 18768
    engine = DockerEngine(tmp_path / "crash", f"{PREFIX}-crash", docker_household.nsenter_argv("desktop"))
    engine.__enter__()
    try:
        copy_image(engines["laptop"], engine, image)
        engine.docker("run", "-d", "--network", "host", image, "python3", "-c", SERVER, desktop.address, str(port))
        assert _wait(lambda: _answers(desktop.address, port)) == "desktop"
        mounts = [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if str(tmp_path) in line]
        assert any(" overlay " in line for line in mounts)
        os.kill(engine.dockerd_pid, signal.SIGKILL)
        os.kill(engine.containerd_pid, signal.SIGKILL)
        assert _wait(lambda: not engine.running(), 5)
        assert _answers(desktop.address, port) == "desktop"  # orphaned: shim and server still run
        survivors = engine.pids()
        assert survivors
    finally:
        left = engine.close()
    assert left == []
    assert _refused(desktop.address, port)
    assert not any(Path(f"/proc/{pid}").exists() and pid in docker_household.pids("desktop") for pid in survivors)
    assert not [line for line in Path("/proc/self/mountinfo").read_text().splitlines()
                if str(tmp_path) in line or str(engine.run_dir) in line]
    assert not list(Path("/sys/fs/cgroup").glob(f"**/{engine.cgroup_parent}"))
    # what still runs in the desktop's namespace is its sshd and its own engine
    others = set(docker_household.pids("desktop")) - set(engines["desktop"].pids())
    assert others <= {docker_household.sshd_pid("desktop")}
    assert engines["desktop"].running()
