"""The docker backend's scripts and deploy logic without a Docker engine (tests/test_docker_backend.py runs them on
real ones): the scripts are sh, the probe's lines read back, each docker failure is one line with its fix, the
container gets what the issue asks (host network, unless-stopped, labels, caps, read-only TLS), the inventory
keys are checked."""

from __future__ import annotations

import subprocess

import pytest

from homecluster.backends import backend_for
from homecluster.backends.docker import DockerBackend, container_name
from homecluster.core.spec import IMAGE_PYTHON, UNBUILT, build
from homecluster.errors import HostError, InventoryError
from homecluster.inventory import parse
from homecluster.transport.replay import ReplayRunner

INV = """\
cluster: {name: home, scheduler: desktop}
hosts:
  desktop: {address: 10.0.0.10, nworkers: 0}
  gamer: {address: 10.0.0.11, backend: docker, nworkers: 2, nthreads: 4, memory_limit: 8GB,
          docker_host: 'unix:///run/user/1000/docker.sock', docker_run_options: '--gpus all'}
  nas: {address: 10.0.0.12, backend: docker, image: 'myown/dask:1'}
"""
IMAGE = "sha256:" + "ab" * 32
PROBE = (f"hc-now 100\nhc-docker-root /var/lib/docker\nhc-disk 5000000\nhc-image {IMAGE}\n"
         "hc-probe scheduler pid= alive=0 spec=\nhc-probe worker pid=321 alive=1 spec=f00\nhc-boot worker enabled\n"
         'hc-state worker {"running": true, "restarts": 2}\nhc-probe-done\n')


def backend(inv, name, replies=None, image=IMAGE):
    host = inv.hosts[name]
    return DockerBackend(ReplayRunner(host, replies), host, inv.cluster.name, "~/.homecluster/home/" + name,
                         image)


def test_docker_hosts_get_the_docker_backend_and_the_images_python():
    inv = parse(INV)
    assert isinstance(backend_for(inv, inv.hosts["gamer"], ReplayRunner(inv.hosts["gamer"])), DockerBackend)
    spec = build(inv, image=IMAGE)
    gamer, nas = spec.for_host("gamer")[0], spec.for_host("nas")[0]
    assert gamer.argv[0] == IMAGE_PYTHON and gamer.image == IMAGE and gamer.docker_options == ("--gpus", "all")
    assert nas.image == "myown/dask:1"
    assert build(inv).for_host("gamer")[0].image == UNBUILT
    assert build(inv, image="sha256:other").for_host("gamer")[0].fingerprint != gamer.fingerprint


def test_every_script_is_sh_and_the_container_gets_what_it_should():
    inv = parse(INV)
    b = backend(inv, "gamer")
    proc = build(inv, image=IMAGE).for_host("gamer")[0]
    start = b.start_script(proc)
    for text in (start, b.stop_script("worker"), b.stop_script("worker", lock_for="down"), b.probe_body()):
        p = subprocess.run(["sh", "-n", "-c", text], capture_output=True, text=True)
        assert p.returncode == 0, p.stderr + text
    for part in ("--network host", "--restart unless-stopped", "--label org.homecluster.cluster=home",
                 "--label org.homecluster.host=gamer", "--label org.homecluster.role=worker",
                 f"--label org.homecluster.spec={proc.fingerprint}", f"--memory {2 * 8 * 10**9}", "--cpus 8",
                 '--user "$(id -u):$(id -g)"', "--gpus all", IMAGE, f"{IMAGE_PYTHON} -m distributed.cli.dask_worker",
                 "export DOCKER_HOST=unix:///run/user/1000/docker.sock", "docker wait hc-home-gamer-worker"):
        assert part in start, part
    tls = '"$HOME"/.homecluster/home/gamer/tls'
    assert f"-v {tls}:{tls}:ro" in start
    assert container_name("home", "gamer", "worker") == "hc-home-gamer-worker"
    stop = b.stop_script("worker")
    assert stop.index("hc_marked") < stop.index("docker stop")  # the watcher goes first, or it restarts it


def test_probe_reads_states_image_and_space():
    inv = parse(INV)
    b = backend(inv, "gamer", {"probe": PROBE})
    states = b.probe()
    assert states["worker"].pid == 321 and states["worker"].restarts == 2 and not states["scheduler"].alive
    assert (b.host_image, b.free_kb, b.docker_root) == (IMAGE, 5000000, "/var/lib/docker")
    assert b.supervision.manager == "docker" and b.supervision.starts_at_boot("worker")


@pytest.mark.parametrize("line, expected", [
    ("hc-docker-error missing", "gamer: no docker on gamer. Fix: install Docker there"),
    ("hc-docker-error down Cannot connect to the Docker daemon at unix:///x.sock. Is the docker daemon running?",
     "gamer: the Docker daemon at unix:///run/user/1000/docker.sock is not running (Cannot connect"),
    ("hc-docker-error down permission denied while trying to connect to the Docker daemon socket",
     "gamer: permission denied on the Docker socket at unix:///run/user/1000/docker.sock for"),
])
def test_docker_failures_are_one_line_with_the_fix(line, expected):
    inv = parse(INV)
    b = backend(inv, "gamer", {"probe": f"{line}\nhc-probe-done\n"})
    with pytest.raises(HostError) as e:
        b.probe()
    assert str(e.value).startswith(expected) and "Fix:" in str(e.value)


def test_not_enough_disk_fails_before_anything_is_sent(monkeypatch):
    from homecluster.images import ship

    inv = parse(INV)
    b = backend(inv, "gamer", {"probe": PROBE.replace(f"hc-image {IMAGE}", "hc-image ").replace(
        "hc-disk 5000000", "hc-disk 1000")})
    b.probe()
    monkeypatch.setattr(ship, "local_image", lambda ref: ship.LocalImage(ref, IMAGE, 400 * 10**6))
    monkeypatch.setattr(ship, "save_stream", lambda image: pytest.fail("nothing may be sent"))
    proc = build(inv, image=IMAGE).for_host("gamer")[0]
    with pytest.raises(HostError, match=r"gamer: not enough disk for the image: it needs about 480 MB under "
                                        r"/var/lib/docker, 1 MB are free. Fix:"):
        b.ensure_image(proc)


def test_an_unbuilt_image_says_how_to_build_it():
    inv = parse(INV)
    b = backend(inv, "gamer", image=None)
    with pytest.raises(HostError, match="no image for the docker hosts of cluster home yet. Fix: homecluster image "
                                        "build"):
        b.ensure_image(build(inv).for_host("gamer")[0])


@pytest.mark.parametrize("extra, message", [
    ("image: x", "hosts.desktop.image: is for docker hosts"),
    ("backend: docker, os: windows", "hosts.desktop.backend: docker hosts are reached with sh"),
    ("backend: docker, supervisor: systemd", "hosts.desktop.supervisor: Docker restarts the containers"),
    ("backend: docker, docker_run_options: 'gpus all'", "hosts.desktop.docker_run_options: 'gpus' is not an option"),
    ("backend: docker, docker_run_options: '--x \"y'", "cannot be split into options"),
])
def test_docker_keys_are_checked(extra, message):
    with pytest.raises(InventoryError, match=message):
        parse(INV.replace("desktop: {address: 10.0.0.10, nworkers: 0}", f"desktop: {{address: 10.0.0.10, {extra}}}"))


def test_dry_run_of_docker_hosts_records_the_load_without_this_machines_engine(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")  # any look at the engine would fail
    inv = tmp_path / "inventory.yaml"
    inv.write_text(INV)
    p = subprocess.run(["python", "-m", "homecluster", "up", "--dry-run", "-i", str(inv)], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("# homecluster load: the image") == 1  # nas runs myown/dask:1; gamer has no image yet
    assert "docker run -d --name hc-home-nas-worker" in p.stdout
    assert ("# stops here: gamer: no image for the docker hosts of cluster home yet. Fix: homecluster image build"
            in p.stdout)


def test_a_host_with_the_scheduler_and_a_worker_gets_the_image_once(monkeypatch):
    from homecluster.images import ship

    inv = parse(INV.replace("scheduler: desktop", "scheduler: gamer"))
    b = backend(inv, "gamer", {"probe": PROBE.replace(f"hc-image {IMAGE}", "hc-image ")})
    b.probe()
    sent = []
    monkeypatch.setattr(ship, "local_image", lambda ref: ship.LocalImage(ref, IMAGE, 10**6))
    monkeypatch.setattr(ship, "ship", lambda runner, host, image, env, board: sent.append(image.ref))
    for proc in build(inv, image=IMAGE).for_host("gamer"):
        b.ensure_image(proc)
    assert sent == [IMAGE]
