"""`homecluster image build` (issue 13, points 1 and 2): the image's tag, its record, the build's error and
docker/hc-health.py's /proc parsing on recorded text; then for real on a Docker engine of our own (the root
namespace, as the laptop): an image from the debootstrap test base with exactly this machine's dask, run as
uid 1000, labelled, a second build that changes nothing, failing builds and bases as one line each, and the
health check of a scheduler and a worker in containers of the image."""

from __future__ import annotations

import http.server
import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from homecluster.cli import image as image_cli
from homecluster.errors import HomeclusterError
from homecluster.images import build as imgbuild
from homecluster.images import store
from homecluster.core.spec import IMAGE_PYTHON
from homecluster.images.store import BuiltImage
from homecluster.packages.lock import LockFile, Locked, matches

sys.path.insert(0, str(Path(__file__).parent))

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("hc_health", ROOT / "docker" / "hc-health.py")
health = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(health)

REQS = ("dask==2026.8.0", "distributed==2026.8.0", "bokeh==3.9.2")
FILES = {"Dockerfile": "FROM x\n", "hc-health.py": "print('ok')\n"}
CLUSTER = "imgtest"
CLI = (sys.executable, "-m", "homecluster")  # as a user runs it


# --- the tag --------------------------------------------------------------------------------------------------

def test_tag_is_a_digest_of_lock_files_and_base():
    tag = imgbuild.image_tag("home", REQS, FILES, "sha256:aaa")
    repo, _, digest = tag.partition(":")
    assert repo == "homecluster/home" and len(digest) == 12 and int(digest, 16) >= 0
    assert imgbuild.image_tag("home", list(REQS), dict(FILES), "sha256:aaa") == tag  # same inputs, same tag
    others = {
        imgbuild.image_tag("home", REQS[:2] + ("bokeh==3.9.1",), FILES, "sha256:aaa"),  # the lock
        imgbuild.image_tag("home", REQS + ("numpy==2.1.3",), FILES, "sha256:aaa"),
        imgbuild.image_tag("home", REQS, {**FILES, "Dockerfile": "FROM y\n"}, "sha256:aaa"),  # the Dockerfile
        imgbuild.image_tag("home", REQS, {**FILES, "hc-health.py": "print('no')\n"}, "sha256:aaa"),
        imgbuild.image_tag("home", REQS, FILES, "sha256:bbb"),  # the base image's id
    }
    assert tag not in others and len(others) == 5
    assert imgbuild.image_tag("lab", REQS, FILES, "sha256:aaa").split(":")[1] == digest  # the name is the repo


def test_the_repository_is_a_name_docker_accepts():
    assert imgbuild.repository("home") == "homecluster/home"
    assert imgbuild.repository("Home_Lab.2") == "homecluster/home-lab-2"
    assert imgbuild.default_base("3.12") == "python:3.12-slim"


def test_the_build_context_holds_what_the_dockerfile_copies(tmp_path):
    wheel = tmp_path / "toolz-1.0.0-py3-none-any.whl"
    wheel.write_bytes(b"zip")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    imgbuild.write_context(ctx, imgbuild.context_files(), Locked("t", REQS), [wheel])
    assert sorted(p.name for p in ctx.iterdir()) == ["Dockerfile", "hc-health.py", "requirements.txt", "wheels"]
    assert (ctx / "requirements.txt").read_text() == "".join(r + "\n" for r in REQS)
    assert (ctx / "wheels" / wheel.name).read_bytes() == b"zip"
    dockerfile = (ctx / "Dockerfile").read_text()
    for line in ("COPY requirements.txt ", "COPY wheels/ ", "COPY hc-health.py /opt/homecluster/hc-health.py",
                 "USER 1000:1000", "WORKDIR /home/dask", "ENV PATH=/opt/homecluster/bin:$PATH", "HEALTHCHECK "):
        assert line in dockerfile
    instructions = "\n".join(ln for ln in dockerfile.splitlines() if not ln.startswith("#"))
    assert "apt-get" not in instructions and "--mount" not in instructions  # the debootstrap base, no BuildKit
    assert f'"{IMAGE_PYTHON}", "/opt/homecluster/hc-health.py"' in dockerfile


# --- the record ------------------------------------------------------------------------------------------------

IMG = BuiltImage("home", "homecluster/home:0123456789ab", "sha256:" + "f" * 64, "3.11", "python:3.11-slim",
                 315_000_000, 1_800_000_000.5, "bfc92dba94a84c82")


def test_record_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("HOMECLUSTER_CONFIG", str(tmp_path))
    assert store.built("home") is None
    store.record(IMG)
    assert store.built("home") == IMG
    path = tmp_path / "images" / "home.json"
    assert json.loads(path.read_text())["tag"] == IMG.tag
    assert [p.name for p in path.parent.iterdir()] == ["home.json"]  # no temporary file left
    store.record(BuiltImage(**{**IMG.__dict__, "size": 1}))
    assert store.built("home").size == 1 and store.built("other") is None


@pytest.mark.parametrize("text", ["{not json", "[]", '{"cluster": "home"}',
                                  json.dumps({**IMG.__dict__, "size": "big"})])
def test_a_damaged_record_is_one_line_with_the_fix(tmp_path, monkeypatch, text):
    monkeypatch.setenv("HOMECLUSTER_CONFIG", str(tmp_path))
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "home.json").write_text(text)
    with pytest.raises(HomeclusterError) as e:
        store.built("home")
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path / "images" / "home.json") in msg
    assert msg.endswith("Fix: homecluster image build (it writes the file again)"), msg


# --- the build's output -----------------------------------------------------------------------------------------

STEP6 = ('RUN python3 -m venv /opt/homecluster || { echo "homecluster: python3 -m venv failed in the base image '
         '(on Debian and Ubuntu the python3-venv package is missing). Fix: build FROM an image whose Python has venv '
         'and ensurepip, such as python:${PYTHON}-slim" >&2; exit 1; }')
# Recorded from the engine's classic builder (Docker 20.10) with a base whose Python lacks ensurepip.
FAILING_STREAM = [
    {"stream": "Step 1/23 : ARG BASE=python:3.11-slim"}, {"stream": "\n"},
    {"stream": "Step 2/23 : FROM ${BASE} AS build"}, {"stream": "\n"}, {"stream": " ---> 12c3c01c4268\n"},
    {"stream": "Step 5/23 : RUN command -v python3 >/dev/null || exit 1"}, {"stream": "\n"},
    {"stream": " ---> Using cache\n"}, {"stream": " ---> bd37bec2e59c\n"},
    {"stream": f"Step 6/23 : {STEP6}"}, {"stream": "\n"}, {"stream": " ---> Running in 8666108b8614\n"},
    {"stream": "The virtual environment was not created successfully because ensurepip is not\navailable.  On "
               "Debian/Ubuntu systems, you need to install the python3-venv\npackage using the following command."
               "\n\n    apt install python3.11-venv\n\nYou may need to use sudo with that command.  After installing "
               "the python3-venv\npackage, recreate your virtual environment.\n\nFailing command: "
               "/opt/homecluster/bin/python3\n\n"},
    {"stream": "\u001b[91mhomecluster: python3 -m venv failed in the base image (on Debian and Ubuntu the "
               "python3-venv package is missing). Fix: build FROM an image whose Python has venv and ensurepip, "
               "such as python:3.11-slim\n\u001b[0m"},
    {"stream": "Removing intermediate container 8666108b8614\n"},
    {"errorDetail": {"code": 1, "message": f"The command '/bin/sh -c {STEP6}' returned a non-zero code: 1"},
     "error": f"The command '/bin/sh -c {STEP6}' returned a non-zero code: 1"},
]


def test_build_error_names_the_step_and_what_it_said():
    shown = []
    log = imgbuild.BuildLog(shown.append)
    for chunk in FAILING_STREAM:
        log.feed(chunk)
    log.flush()
    msg = log.failure()
    assert "\n" not in msg and "\x1b" not in msg
    assert msg.startswith('image build failed at Step 6/23 : RUN python3 -m venv /opt/homecluster || { echo '
                          '"homecluster: pyth... (exit 1): homecluster: python3 -m venv failed in the base image'), msg
    assert msg.endswith("such as python:3.11-slim") and msg.count("Fix:") == 1
    # the progress got every step and the step's output, no blank lines, nothing longer than a line
    assert shown[0] == "Step 1/23 : ARG BASE=python:3.11-slim" and " ---> Using cache" in shown
    assert "    apt install python3.11-venv" in shown and "" not in shown
    assert all(len(line) <= imgbuild.SHOWN for line in shown)


def test_build_error_without_a_message_of_ours_shows_the_last_lines():
    log = imgbuild.BuildLog()
    for chunk in [{"stream": "Step 9/23 : RUN /opt/homecluster/bin/python -m pip install --no-index"}, {"stream": "\n"},
                  {"stream": "Looking in links: /tmp/homecluster/wheels\nERROR: Could not find a version that "
                             "satisfies the requirement toolz==1.0.0 (from versions: none)\n"},
                  {"stream": "ERROR: No matching distribution found for toolz==1.0.0\n"},
                  {"errorDetail": {"message": "The command '/bin/sh -c ...' returned a non-zero code: 1"},
                   "error": "The command '/bin/sh -c ...' returned a non-zero code: 1"}]:
        log.feed(chunk)
    assert log.failure() == (
        "image build failed at Step 9/23 : RUN /opt/homecluster/bin/python -m pip install --no-index (exit 1): "
        "Looking in links: /tmp/homecluster/wheels | ERROR: Could not find a version that satisfies the requirement "
        "toolz==1.0.0 (from versions: none) | ERROR: No matching distribution found for toolz==1.0.0. "
        "Fix: see the step's output above")
    copy = imgbuild.BuildLog()
    for chunk in [{"stream": "Step 7/23 : COPY wheels/ /tmp/homecluster/wheels/\n"},
                  {"errorDetail": {"message": "COPY failed: file not found in build context: stat wheels/: file does "
                                              "not exist"}, "error": "COPY failed: ..."}]:
        copy.feed(chunk)
    assert copy.failure() == ("image build failed at Step 7/23 : COPY wheels/ /tmp/homecluster/wheels/ (COPY failed: "
                              "file not found in build context: stat wheels/: file does not exist). Fix: see the "
                              "step's output above")


def test_a_successful_stream_gives_the_image_id():
    log = imgbuild.BuildLog()
    for chunk in [{"stream": "Step 23/23 : CMD [\"python\"]\n"}, {"aux": {"ID": "sha256:abc"}},
                  {"stream": "Successfully built abc\n"}, {"stream": "Successfully tagged homecluster/home:1\n"}]:
        log.feed(chunk)
    assert log.image_id == "sha256:abc" and log.error is None


def test_cli_registers_image_build_and_says_what_it_built():
    import argparse

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-i", "--inventory", default=argparse.SUPPRESS)
    p = argparse.ArgumentParser()
    image_cli.add_parser(p.add_subparsers(dest="command"), common)
    args = p.parse_args(["image", "build", "--base", "local/py:3.11", "-i", "inv.yaml"])
    assert (args.image_command, args.base, args.inventory, args.func) == ("build", "local/py:3.11", "inv.yaml",
                                                                          image_cli.cmd_image)
    assert p.parse_args(["image", "build"]).base is None
    text = image_cli.built_text(IMG, unchanged=False, seconds=38.6)
    assert text.splitlines()[:3] == ["homecluster/home:0123456789ab  (built in 39 s)",
                                     f"  id      {IMG.id}", "  size    315 MB"]
    assert "nothing changed" in image_cli.built_text(IMG, unchanged=True, seconds=0.4)


def test_no_docker_engine_is_one_line_with_the_fix(tmp_path):
    inv = tmp_path / "inventory.yaml"
    inv.write_text(yaml.safe_dump({"cluster": {"name": CLUSTER, "scheduler": "desktop"},
                                   "hosts": {"desktop": {"address": "192.0.2.10"}}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env.update(DOCKER_HOST=f"unix://{tmp_path}/docker.sock", HOMECLUSTER_CONFIG=str(tmp_path / "config"))
    proc = subprocess.run([*CLI, "image", "build", "-i", str(inv)], capture_output=True,
                          text=True, timeout=60, env=env)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == (f"error: cannot reach this machine's Docker engine at unix://{tmp_path}/docker.sock (no "
                           "socket there: Docker is not running, or not installed). Fix: start Docker (Docker "
                           "Desktop, or sudo systemctl start docker), or set DOCKER_HOST to a running engine\n")
    assert not (tmp_path / "config").exists()


# --- hc-health.py on recorded /proc text ---------------------------------------------------------------------

HEAD = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode"
        "                                                     \n")
# 127.0.0.1:37337 (ours, the worker's HTTP), 10.213.57.1:40000 (ours, its comm), 0.0.0.0:2024 (the host's sshd),
# 127.0.0.1:8787 (another container's dashboard), 127.0.0.1:50566 -> 127.0.0.1:37337 (established, ours)
TCP = HEAD + "\n".join([
    "   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1079 1 "
    "000000008c32a6c7 100 0 0 10 0",
    "   1: 0100007F:91D9 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 52211 1 "
    "0000000000000000 100 0 0 10 0",
    "   2: 0139D50A:9C40 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 52207 1 "
    "0000000000000000 100 0 0 10 0",
    "   3: 0100007F:2253 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 40001 1 "
    "0000000000000000 100 0 0 10 0",
    "   4: 0100007F:C5C6 0100007F:91D9 01 00000000:00000000 00:00000000 00000000  1000        0 52300 1 "
    "0000000000000000 20 4 30 10 -1",
]) + "\n"
# [::]:8786 (ours), [::1]:9000 (ours), [::ffff:127.0.0.1]:9001 (ours), [::]:22 (not ours)
TCP6 = ("  sl  local_address                         remote_address                        st tx_queue rx_queue tr "
        "tm->when retrnsmt   uid  timeout inode\n" + "\n".join([
            "   0: 00000000000000000000000000000000:2252 00000000000000000000000000000000:0000 0A 00000000:00000000 "
            "00:00000000 00000000  1000        0 52212 1 0000000000000000 100 0 0 10 0",
            "   1: 00000000000000000000000001000000:2328 00000000000000000000000000000000:0000 0A 00000000:00000000 "
            "00:00000000 00000000  1000        0 52213 1 0000000000000000 100 0 0 10 0",
            "   2: 0000000000000000FFFF00000100007F:2329 00000000000000000000000000000000:0000 0A 00000000:00000000 "
            "00:00000000 00000000  1000        0 52214 1 0000000000000000 100 0 0 10 0",
            "   3: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 "
            "00:00000000 00000000     0        0 999 1 0000000000000000 100 0 0 10 0",
        ]) + "\n")
OURS = {52211, 52207, 52300, 52212, 52213, 52214}


def test_health_finds_the_socket_inodes_of_the_containers_processes():
    links = ["/dev/null", "pipe:[4980875]", "socket:[52211]", "anon_inode:[eventpoll]", "socket:[52207]",
             "/tmp/x (deleted)", "socket:[52300]", "socket:[notanumber]"]
    assert health.socket_inodes(links) == {52211, 52207, 52300}


def test_health_reads_listening_sockets_from_proc_net_tcp():
    assert health.listening(TCP, "little") == {1079: ("0.0.0.0", 2024), 52211: ("127.0.0.1", 37337),
                                               52207: ("10.213.57.1", 40000), 40001: ("127.0.0.1", 8787)}
    assert health.listening(TCP6, "little") == {52212: ("::", 8786), 52213: ("::1", 9000),
                                                52214: ("::ffff:127.0.0.1", 9001), 999: ("::", 22)}
    assert health.decode_address("7F000001", "big") == "127.0.0.1"  # a big-endian machine prints it the other way
    assert health.listening("", "little") == {} and health.listening(HEAD + "garbage\n", "little") == {}


def test_health_counts_only_the_containers_own_sockets():
    loop, other = health.own_sockets(OURS, [TCP, TCP6], "little")
    # the host's sshd (2024, 22) and the other container's dashboard (8787) are not ours; the established
    # connection is not a listener; the comm port on the host's address is kept for the fallback only
    assert loop == [("127.0.0.1", 37337), ("::1", 8786), ("::1", 9000), ("127.0.0.1", 9001)]
    assert other == [("10.213.57.1", 40000)]
    assert health.own_sockets(set(), [TCP, TCP6], "little") == ([], [])


def test_health_dial_addresses():
    assert health.dial_address("0.0.0.0") == ("127.0.0.1", True)
    assert health.dial_address("::") == ("::1", True)
    assert health.dial_address("::ffff:0.0.0.0") == ("127.0.0.1", True)
    assert health.dial_address("127.0.0.2") == ("127.0.0.2", False)  # only 127.0.0.1 and ::1 count as "ours first"
    assert health.dial_address("192.168.1.10") == ("192.168.1.10", False)


def test_health_classifies_answers_and_decides():
    ok = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
    assert health.classify(ok) == "ok"
    assert health.classify(b"HTTP/1.1 500 Internal Server Error\r\n\r\nboom") == "fail: HTTP/1.1 500 Internal " \
                                                                                  "Server Error boom"
    assert health.classify(b"HTTP/1.1 200 OK\r\n\r\nnot ok") == "fail: HTTP/1.1 200 OK not ok"
    assert health.classify(b"\x82\xa7compression") == "not http"  # a dask comm's handshake (msgpack)
    assert health.classify(b"") == "not http"  # closed at once (a TLS comm)
    assert health.classify(None).startswith("fail: no answer")
    assert health.verdict({"127.0.0.1:1": "ok", "127.0.0.1:2": "not http"}) == (True, "healthy: 127.0.0.1:1 ok")
    assert health.verdict({"127.0.0.1:1": "ok", "127.0.0.1:2": "fail: HTTP/1.1 500"})[0] is False
    assert health.verdict({}) == (False, "unhealthy: no HTTP server of this container answers yet")
    assert health.verdict({"127.0.0.1:3": "not http"})[1].endswith("(listening: 127.0.0.1:3)")


def _serve(status: int, body: bytes) -> http.server.HTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(status if self.path == "/health" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_health_get_against_real_servers():
    good, bad = _serve(200, b"ok"), _serve(503, b"closing")
    speaker = socket.create_server(("127.0.0.1", 0))  # speaks first, as a dask comm does

    def greet():
        conn, _ = speaker.accept()
        conn.sendall(b"\x82\xa7compression\xc0")
        time.sleep(5)  # and then waits: the probe must not wait for it
        conn.close()

    threading.Thread(target=greet, daemon=True).start()
    try:
        assert health.classify(health.get_health("127.0.0.1", good.server_address[1])) == "ok"
        assert health.classify(health.get_health("127.0.0.1", bad.server_address[1])).startswith("fail: HTTP/1.0 503")
        t0 = time.monotonic()
        assert health.classify(health.get_health("127.0.0.1", speaker.getsockname()[1])) == "not http"
        assert time.monotonic() - t0 < 2
        free = socket.create_server(("127.0.0.1", 0))
        port = free.getsockname()[1]
        free.close()
        assert health.classify(health.get_health("127.0.0.1", port)) == "not http"  # refused: it just went away
    finally:
        for s in (good, bad):
            s.shutdown()
            s.server_close()
        speaker.close()


# --- for real: a Docker engine of our own ---------------------------------------------------------------------

PREFIX = os.environ.get("HC_TEST_IMAGE_PREFIX", "hcimg")
FAKE_PYTHON_312 = """#!/bin/sh
# a python3 that says it is 3.12 when asked what it is (the real 3.11 does the rest)
case "$*" in *hc-env*) exec /usr/bin/python3.11 -c 'import json; print("hc-env " + json.dumps({"version": "3.12.1",
  "system": "Linux", "machine": "x86_64", "libc": ["glibc", "2.36"], "mac_ver": ""}))';; esac
exec /usr/bin/python3.11 "$@"
"""
DERIVED = {  # bases made from the test base, each missing something
    "hc-test/no-ensurepip": "RUN rm -rf /usr/lib/python3.11/ensurepip\n",
    "hc-test/no-python": "RUN rm -f /usr/bin/python3 /usr/bin/python3.11\n",
    "hc-test/python-3.12": "COPY python3 /usr/local/bin/python3\nRUN chmod 755 /usr/local/bin/python3\n",
}


def _unavailable(message: str):
    if os.environ.get("CI"):
        pytest.fail(message + " (CI must run the Docker image tests: see tests/run)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def laptop(tmp_path_factory):
    """A Docker engine in the root namespace (this machine) with the test base and the derived bases."""
    from docker_engine import DockerEngine, DockerUnavailable, base_image, can_run

    ok, reason = can_run()
    if not ok:
        _unavailable(f"cannot run a Docker engine here: {reason}")
    engine = DockerEngine(tmp_path_factory.mktemp("image-engine"), f"{PREFIX}-laptop")
    try:
        engine.__enter__()
    except DockerUnavailable as exc:
        _unavailable(str(exc))
    try:
        base = base_image(engine)
        for tag, lines in DERIVED.items():
            ctx = tmp_path_factory.mktemp("derived")
            (ctx / "Dockerfile").write_text(f"FROM {base}\n{lines}")
            (ctx / "python3").write_text(FAKE_PYTHON_312)
            engine.docker("build", "-q", "--network", "none", "-t", tag, str(ctx), timeout=120)
        yield engine
    finally:
        left = engine.close()
    assert left == [], f"left behind: {left}"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """An inventory without an environment: section (the image carries this machine's dask), a config root, an
    empty wheelhouse (the first build is cold)."""
    d = tmp_path_factory.mktemp("image-project")
    inv = d / "inventory.yaml"
    inv.write_text(yaml.safe_dump({"cluster": {"name": CLUSTER, "scheduler": "desktop"},
                                   "hosts": {"desktop": {"address": "192.0.2.10"}}}))
    return {"inventory": inv, "config": d / "config", "cache": d / "cache"}


def _build(laptop, project, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {**laptop.env(), "HOMECLUSTER_CONFIG": str(project["config"]), "HOMECLUSTER_CACHE": str(project["cache"])}
    return subprocess.run([*CLI, "image", "build", "-i", str(project["inventory"]), *args],
                          capture_output=True, text=True, timeout=timeout, env=env)


def _recorded(project) -> BuiltImage | None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOMECLUSTER_CONFIG", str(project["config"]))
        return store.built(CLUSTER)


def _error(proc: subprocess.CompletedProcess) -> str:
    """The last stderr line, which must be the one-line error."""
    assert proc.returncode == 1, proc.stdout + proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), proc.stderr
    return last


def _versions() -> dict[str, str]:
    import bokeh
    import dask
    import distributed
    return {"dask": dask.__version__, "distributed": distributed.__version__, "bokeh": bokeh.__version__}


def _containers(laptop) -> list[str]:
    return laptop.docker("ps", "-aq").stdout.split()


@pytest.fixture(scope="module")
def image(laptop, project):
    """`homecluster image build --base homecluster-test/python:3.11`, cold: no wheels, no layer cache."""
    from docker_engine import BASE_IMAGE

    t0 = time.monotonic()
    proc = _build(laptop, project, "--base", BASE_IMAGE)
    cold = time.monotonic() - t0
    assert proc.returncode == 0, proc.stdout + proc.stderr
    img = _recorded(project)
    print(f"\ncold image build (wheels downloaded, no layer cache): {cold:.1f} s, {img.size / 1e6:.0f} MB")
    return {"img": img, "proc": proc, "cold": cold}


@pytest.mark.household
def test_build_makes_the_image_with_this_machines_dask(laptop, project, image):
    img, proc = image["img"], image["proc"]
    assert img.cluster == CLUSTER and img.python == "3.11" and img.base == "homecluster-test/python:3.11"
    assert img.tag.startswith(f"homecluster/{CLUSTER}:") and img.id.startswith("sha256:")
    # the progress: every step on stderr; what was built on stdout
    assert "Step 1/" in proc.stderr and "Successfully tagged " + img.tag in proc.stderr
    assert proc.stdout.startswith(f"{img.tag}  (built in ") and f"size    {img.size / 1e6:.0f} MB" in proc.stdout
    inspect = json.loads(laptop.docker("image", "inspect", img.tag).stdout)[0]
    assert inspect["Id"] == img.id and inspect["Size"] == img.size
    labels = inspect["Config"]["Labels"]
    assert (labels["org.homecluster.cluster"], labels["org.homecluster.env"], labels["org.homecluster.python"]) \
        == (CLUSTER, img.env, "3.11")
    assert inspect["Config"]["User"] == "1000:1000" and inspect["Config"]["WorkingDir"] == "/home/dask"
    run = ["run", "--rm", "--network", "none", img.tag]
    out = laptop.docker(*run, IMAGE_PYTHON, "-c", "import dask, distributed, bokeh, json; print(json.dumps("
                        "{'dask': dask.__version__, 'distributed': distributed.__version__, "
                        "'bokeh': bokeh.__version__}))").stdout
    assert json.loads(out) == _versions()
    assert laptop.docker(*run, "sh", "-c", "id -u; id -un; pwd; command -v python").stdout.split() == \
        ["1000", "dask", "/home/dask", IMAGE_PYTHON]
    # the venv holds exactly the lock (no pip, no setuptools): what a native host of that platform gets
    dists = laptop.docker(*run, IMAGE_PYTHON, "-c", "import importlib.metadata as m; "
                          "print(' '.join(d.metadata['Name'] + '-' + d.version for d in m.distributions()))").stdout
    lockfile = LockFile(str(project["inventory"]))
    (target,) = lockfile.data["targets"]
    locked = Locked(target, tuple(lockfile.data["targets"][target]["requirements"]))
    assert target == "cp311-manylinux_2_36_x86_64" and locked.hash == img.env
    assert matches(locked, tuple(dists.split())), dists
    assert laptop.docker(*run, "cat", "/opt/homecluster/homecluster-lock").stdout.strip() == img.env
    # no wheel file in the image, no container left by the build or the probe
    assert laptop.docker(*run, "sh", "-c", "find /opt /tmp /home -name '*.whl' | head -3").stdout == ""
    assert _containers(laptop) == []


@pytest.mark.household
def test_a_second_build_changes_nothing_and_a_lost_record_is_rebuilt_from_the_cache(laptop, project, image):
    img = image["img"]
    t0 = time.monotonic()
    proc = _build(laptop, project, "--base", "homecluster-test/python:3.11")
    noop = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"{img.tag}  (nothing changed: the image is built already)")
    assert "Step " not in proc.stderr and f"nothing changed: {img.tag} is built already" in proc.stderr
    assert _recorded(project) == img  # not even rewritten
    assert noop < 10, noop

    (project["config"] / "images" / f"{CLUSTER}.json").unlink()
    t0 = time.monotonic()
    proc = _build(laptop, project, "--base", "homecluster-test/python:3.11")
    warm = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr
    again = _recorded(project)
    assert (again.tag, again.id) == (img.tag, img.id) and again.built_at > img.built_at  # the same layers
    assert "Using cache" in proc.stderr
    print(f"\nno-op build {noop:.1f} s; warm build (wheels and layers cached, record lost) {warm:.1f} s; "
          f"cold {image['cold']:.1f} s")


@pytest.mark.household
def test_a_failing_build_is_one_line_with_the_failing_step(laptop, project, image):
    before = _recorded(project)
    images = laptop.docker("images", "-q", "--no-trunc").stdout.split()
    proc = _build(laptop, project, "--base", "hc-test/no-ensurepip")
    msg = _error(proc)
    assert msg.startswith("error: image build failed at Step 6/"), msg
    assert ": RUN python3 -m venv /opt/homecluster" in msg and "(exit 1): homecluster: python3 -m venv failed in " \
        "the base image (on Debian and Ubuntu the python3-venv package is missing). Fix: build FROM an image " \
        "whose Python has venv and ensurepip, such as python:3.11-slim" in msg
    assert "ensurepip is not" in proc.stderr  # the step's own output went by in the progress
    assert _recorded(project) == before
    assert _containers(laptop) == []  # the failed step's container is removed too
    tagged = [t for t in laptop.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
              if t.startswith("homecluster/")]
    assert tagged == [before.tag]
    assert set(images) <= set(laptop.docker("images", "-q", "--no-trunc").stdout.split())


@pytest.mark.household
def test_bases_that_cannot_be_used_are_one_line_before_any_build(laptop, project, image):
    cases = {
        "hc-test/python-3.12": "error: hc-test/python-3.12 has Python 3.12, the cluster's environment is Python "
                               "3.11. Fix: --base an image with Python 3.11 and glibc, such as python:3.11-slim, or "
                               "set environment.python to 3.12",
        "hc-test/no-python": "error: hc-test/no-python has no python3 on its PATH. Fix: --base an image with Python "
                             "3.11 and glibc, such as python:3.11-slim",
        "python:3.11-slim": "error: no image python:3.11-slim on this machine's Docker. Fix: docker pull "
                            "python:3.11-slim (needs a registry), or --base a local image that has Python 3.11",
    }
    for base, expected in cases.items():
        proc = _build(laptop, project, "--base", base, timeout=120)
        assert _error(proc) == expected
        assert "Step " not in proc.stderr
    assert _error(_build(laptop, project, timeout=120)) == cases["python:3.11-slim"]  # the default base
    assert _containers(laptop) == []  # the probe's containers are gone


@pytest.mark.household
def test_the_dockerfile_itself_refuses_another_python(laptop, tmp_path, monkeypatch):
    """A build by hand (docker/README.md) with PYTHON not the base's: the first RUN says so."""
    from docker_engine import BASE_IMAGE

    monkeypatch.setenv("DOCKER_HOST", laptop.docker_host)
    imgbuild.write_context(tmp_path, imgbuild.context_files(), Locked("t", ()), [])
    client = imgbuild.engine()
    try:
        with pytest.raises(HomeclusterError) as e:
            imgbuild.run_build(client, tmp_path, "homecluster/bad:1", {"BASE": BASE_IMAGE, "PYTHON": "3.12"},
                               lambda s: None)
    finally:
        client.close()
    assert str(e.value).startswith("image build failed at Step 5/"), e.value
    assert str(e.value).endswith("(exit 1): homecluster: the base image has Python 3.11, the cluster needs 3.12. "
                                 "Fix: build FROM an image with Python 3.12, such as python:3.12-slim")
    assert _containers(laptop) == []


def _health(laptop, name: str) -> dict:
    return json.loads(laptop.docker("inspect", "--format", "{{json .State.Health}}", name).stdout)


def _wait_health(laptop, name: str, status: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        h = _health(laptop, name)
        if h["Status"] == status or time.monotonic() > deadline:
            return h
        time.sleep(0.3)


@pytest.mark.household
def test_health_check_of_a_scheduler_and_a_worker(laptop, image):
    """Containers of the image with host networking (here: this machine's loopback): healthy once dask's HTTP
    server answers; a failing HTTP server on the same 127.0.0.1 that is not the container's changes nothing."""
    tag = image["img"].tag
    stranger = _serve(500, b"not ours")
    comm = "127.0.0.2"  # the comm ports off 127.0.0.1, as on a household host (its LAN address)
    with socket.socket() as s:
        s.bind((comm, 0))
        port = s.getsockname()[1]
    fast = ["--network", "host", "--health-interval", "1s", "--health-retries", "1",
            "--health-start-period", "1ms"]  # (0 would keep the image's 60 s, in which failures do not count)
    try:
        laptop.docker("run", "-d", "--name", "idle", *fast, tag, "python", "-c", "import time; time.sleep(300)")
        laptop.docker("run", "-d", "--name", "sched", *fast, tag, "python", "-m", "distributed.cli.dask_scheduler",
                      "--host", comm, "--port", str(port), "--dashboard-address", "127.0.0.1:0")
        laptop.docker("run", "-d", "--name", "work", *fast, tag, "python", "-m", "distributed.cli.dask_worker",
                      f"tcp://{comm}:{port}", "--host", comm, "--nthreads", "1", "--no-dashboard",
                      "--dashboard-address", "127.0.0.1:0")
        for name in ("sched", "work"):
            h = _wait_health(laptop, name, "healthy")
            assert h["Status"] == "healthy", h
            out = h["Log"][-1]["Output"]
            assert out.startswith("healthy: 127.0.0.1:") and f":{stranger.server_address[1]}" not in out, out
        idle = _wait_health(laptop, "idle", "unhealthy", 20)
        assert idle["Status"] == "unhealthy" and idle["Log"][-1]["Output"].strip() == \
            "unhealthy: no HTTP server of this container answers yet"
        logs = laptop.docker("logs", "sched").stderr
        assert "Register worker" in logs and "handshake" not in logs  # the comm port was left alone
    finally:
        laptop.docker("rm", "-f", "idle", "sched", "work", check=False)
        stranger.shutdown()
        stranger.server_close()
