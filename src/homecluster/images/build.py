"""`homecluster image build`: the cluster's dask image on this machine's Docker engine, from the cluster's lock.

The base image (default python:X.Y-slim, or any local one) is run once to read its Python and platform; that
target gets the same lock and the same wheelhouse as a native host of that platform (packages/lock.py,
packages/wheelhouse.py), so docker and native hosts run identical versions. The build context (docker/Dockerfile,
docker/hc-health.py, the lock as requirements.txt, its wheels) goes to the engine's classic builder with no
network at all. The tag is a digest of what makes the image: a build whose inputs are unchanged finds its image
and does nothing.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from homecluster.errors import HomeclusterError
from homecluster.images.store import BuiltImage, built, record
from homecluster.inventory import Inventory
from homecluster.inventory.environment import Environment, client_python
from homecluster.packages import facts
from homecluster.packages.lock import LockFile, Locked
from homecluster.packages.wheelhouse import Wheelhouse

Progress = Callable[[str], None]
DOCKER_DIR = Path(__file__).parent / "docker"  # a link to the project's docker/ folder
CONTEXT_FILES = ("Dockerfile", "hc-health.py")  # what the image is made of besides the lock and its wheels
BUILD_NETWORK = "none"  # the build installs from the wheels it is given: no step needs a network
TAIL = 3  # output lines of a failed step in its error
SHOWN = 110  # a line of the build's output in the progress is cut to this many characters
STEP_IN_ERROR = 80  # and the failed step in the error to this many
# What the base's python3 prints about itself: the keys packages.facts.interpreter_target reads.
PROBE = ("import json, platform; print('hc-env ' + json.dumps({'version': platform.python_version(), "
         "'system': platform.system(), 'machine': platform.machine(), 'libc': list(platform.libc_ver()), "
         "'mac_ver': platform.mac_ver()[0]}))")
_STEP = re.compile(r"^Step \d+/\d+ : ")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|[\x00-\x08\x0b-\x1f\x7f]")


def default_base(python: str) -> str:
    """The official slim image of a Python major.minor."""
    return f"python:{python}-slim"


def repository(cluster: str) -> str:
    """homecluster/<cluster>, the cluster name as Docker allows it in a repository (lowercase, - between)."""
    return "homecluster/" + (re.sub(r"[^a-z0-9]+", "-", cluster.lower()).strip("-") or "cluster")


def image_tag(cluster: str, requirements: tuple[str, ...] | list[str], files: dict[str, str], base_id: str) -> str:
    """homecluster/<cluster>:<12 hex>: a digest of the lock's requirements, the context files (the Dockerfile
    and what it copies) and the base image's id."""
    h = hashlib.sha256()
    for part in ["\n".join(requirements), *(f"{n}\n{files[n]}" for n in sorted(files)), base_id]:
        h.update(part.encode())
        h.update(b"\0")
    return f"{repository(cluster)}:{h.hexdigest()[:12]}"


def context_files() -> dict[str, str]:
    """The Dockerfile and hc-health.py, as text."""
    try:
        return {name: (DOCKER_DIR / name).read_text() for name in CONTEXT_FILES}
    except OSError as e:
        raise HomeclusterError(f"homecluster's docker files are missing ({e.filename}). Fix: reinstall "
                               "homecluster (they ship in homecluster/images/docker)") from None


@dataclass(frozen=True)
class Recipe:
    """What an image build is made of (all known before anything is built)."""

    cluster: str
    base: str  # as given
    base_id: str
    target: facts.Target
    env: Environment
    locked: Locked
    tag: str

    @property
    def buildargs(self) -> dict[str, str]:
        return {"BASE": self.base_id, "PYTHON": self.target.python, "CLUSTER": self.cluster,
                "ENV": self.locked.hash}


# --- the engine ------------------------------------------------------------------------------------------------

def engine():
    """A client of this machine's Docker engine (DOCKER_HOST honoured), or a one-line error with the fix."""
    import docker  # the SDK loads only for image commands

    where = os.environ.get("DOCKER_HOST") or "the default socket"
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as e:
        text = str(e)
        start = "start Docker (Docker Desktop, or sudo systemctl start docker), or set DOCKER_HOST to a running engine"
        if "Permission denied" in text or "PermissionError" in text:
            why, fix = "permission denied on its socket", ("add your user to the docker group (sudo usermod -aG "
                                                           "docker $USER, then log in again)")
        elif "FileNotFoundError" in text or "No such file" in text:
            why, fix = "no socket there: Docker is not running, or not installed", start
        elif "Connection refused" in text or "ConnectionRefusedError" in text:
            why, fix = "nothing answers there", start
        else:
            why, fix = _short(text), start
        raise HomeclusterError(f"cannot reach this machine's Docker engine at {where} ({why}). Fix: {fix}") from None
    return client


def base_image(client, base: str, python: str):
    """The local base image, or the error that says nothing can be pulled."""
    import docker

    try:
        return client.images.get(base)
    except docker.errors.ImageNotFound:
        raise HomeclusterError(f"no image {base} on this machine's Docker. Fix: docker pull {base} (needs a "
                               f"registry), or --base a local image that has Python {python}") from None


def probe(client, base: str, base_id: str, python: str) -> facts.Target:
    """Run the base once (no network) to read its Python and platform: the lock target of the image."""
    import docker

    fix = f"Fix: --base an image with Python {python} and glibc, such as {default_base(python)}"
    container = client.containers.create(base_id, entrypoint=["python3", "-c", PROBE], network_mode="none",
                                         labels={"org.homecluster.probe": "1"})
    try:
        try:
            container.start()
            status = container.wait(timeout=120).get("StatusCode")
        except docker.errors.APIError as e:
            why = str(e.explanation or e)
            said = "has no python3 on its PATH" if "executable file not found" in why else \
                f"cannot run python3 ({_short(why)})"
            raise HomeclusterError(f"{base} {said}. {fix}") from None
        out = container.logs(stdout=True, stderr=False).decode(errors="replace")
        err = container.logs(stdout=False, stderr=True).decode(errors="replace")
    finally:
        container.remove(force=True)
    env = facts.parse_interpreter(out)
    if status != 0 or env is None:
        last = (err.strip().splitlines() or [f"exit {status}"])[-1]
        raise HomeclusterError(f"{base}: python3 did not say what it is ({_short(last)}). {fix}")
    try:
        target = facts.interpreter_target(env)
    except facts.UnsupportedPlatform as e:
        raise HomeclusterError(f"{base}: {e}. {fix}") from None
    if target.python != python:
        raise HomeclusterError(f"{base} has Python {target.python}, the cluster's environment is Python {python}. "
                               f"{fix}, or set environment.python to {target.python}")
    return target


# --- the build -------------------------------------------------------------------------------------------------

class BuildLog:
    """The classic builder's stream as lines: each goes to `progress`; the running step and the last lines of
    its output are kept for the error. Pure: fed with the decoded JSON chunks of the build API."""

    def __init__(self, progress: Progress = lambda s: None):
        self.progress = progress
        self.step, self.tail, self.buffer = "", deque(maxlen=50), ""
        self.image_id: str | None = None
        self.error: str | None = None

    def feed(self, chunk: dict) -> None:
        if "stream" in chunk:
            self.buffer += chunk["stream"]
            *lines, self.buffer = self.buffer.split("\n")
            for line in lines:
                self._line(line)
        if isinstance(chunk.get("aux"), dict) and "ID" in chunk["aux"]:
            self.image_id = chunk["aux"]["ID"]
        if "error" in chunk:
            self.flush()
            self.error = (chunk.get("errorDetail") or {}).get("message") or chunk["error"]

    def flush(self) -> None:
        if self.buffer:
            self._line(self.buffer)
            self.buffer = ""

    def _line(self, line: str) -> None:
        line = _ANSI.sub("", line.split("\r")[-1]).rstrip()
        if not line.strip():
            return
        if _STEP.match(line):
            self.step = line
            self.tail.clear()
        elif not line.startswith((" ---> ", "Removing intermediate container ")):
            self.tail.append(line)
        self.progress(_cut(line))

    def failure(self) -> str:
        """The one-line error of a failed build: the step, its exit code and the last lines of its output."""
        error = " ".join((self.error or "the build stopped without an image").split())
        code = re.search(r"returned a non-zero code: (\d+)", error)
        what = f"exit {code.group(1)}" if code else _short(error, 300)
        own = [ln for ln in self.tail if ln.startswith("homecluster: ")]  # the Dockerfile's own messages say the fix
        if own:
            lines = own[-1:]
        else:  # a command's last lines (a builder's own error, such as a missing COPY source, says it all)
            lines = [_short(ln, 200) for ln in list(self.tail)[-TAIL:]] if code else []
        where = f" at {_cut(self.step, STEP_IN_ERROR)}" if self.step else ""
        said = (": " + " | ".join(lines)) if lines else ""
        fix = "" if own else ". Fix: see the step's output above"
        return f"image build failed{where} ({what}){said}{fix}"


def run_build(client, context: Path, tag: str, buildargs: dict[str, str], progress: Progress) -> str:
    """Build the context with the engine's classic builder, streaming its lines; the image id, or the error."""
    import docker

    log = BuildLog(progress)
    try:
        for chunk in client.api.build(path=str(context), tag=tag, buildargs=buildargs, network_mode=BUILD_NETWORK,
                                      rm=True, forcerm=True, pull=False, decode=True):
            log.feed(chunk)
    except docker.errors.APIError as e:
        log.feed({"error": e.explanation or str(e)})
    log.flush()
    if log.error or not log.image_id:
        raise HomeclusterError(log.failure())
    return log.image_id


def write_context(directory: Path, files: dict[str, str], locked: Locked, wheels: list[Path]) -> None:
    """The build context: the docker files, requirements.txt (the lock) and wheels/ (hard links when they can
    be, else copies)."""
    for name, text in files.items():
        (directory / name).write_text(text)
    (directory / "requirements.txt").write_text("".join(r + "\n" for r in locked.requirements))
    (directory / "wheels").mkdir()
    for wheel in wheels:
        dest = directory / "wheels" / wheel.name
        try:
            os.link(wheel, dest)
        except OSError:
            shutil.copy2(wheel, dest)


def recipe(client, inv: Inventory, base: str | None, progress: Progress) -> Recipe:
    """Everything the image is made of: the base and its target, the lock for that target, the tag."""
    from uv import find_uv_bin

    python = inv.environment.python if inv.environment else client_python()
    base = base or default_base(python)
    base_id = base_image(client, base, python).id
    progress(f"reading the Python of {base}")
    target = probe(client, base, base_id, python)
    lockfile = LockFile(inv.path)
    env = lockfile.effective(inv.environment or Environment(python=python))
    if not lockfile.is_current(env, target):
        progress(f"resolving the environment for {target.key}")
    locked = lockfile.get(env, target, find_uv_bin())
    tag = image_tag(inv.cluster.name, locked.requirements, context_files(), base_id)
    return Recipe(inv.cluster.name, base, base_id, target, env, locked, tag)


def unchanged(client, r: Recipe) -> BuiltImage | None:
    """The recorded image when it is the one this recipe makes and the engine still has it."""
    import docker

    previous = built(r.cluster)
    if previous is None or previous.tag != r.tag:
        return None
    try:
        return previous if client.images.get(r.tag).id == previous.id else None
    except docker.errors.ImageNotFound:
        return None


def build(inv: Inventory, base: str | None, progress: Progress) -> BuiltImage:
    """Build (or find) the cluster's image and record it. With nothing changed, the recorded image itself is
    returned and nothing is built or written."""
    client = engine()
    try:
        r = recipe(client, inv, base, progress)
        same = unchanged(client, r)
        if same:
            progress(f"nothing changed: {same.tag} is built already")
            return same
        house = Wheelhouse(r.target)
        missing = house.missing(list(r.locked.requirements))
        if missing:
            progress(f"downloading {len(missing)} wheel(s) for {r.target.key}")
        house.fill(list(r.locked.requirements), r.env)
        with tempfile.TemporaryDirectory(prefix="homecluster-image-") as d:
            write_context(Path(d), context_files(), r.locked, house.files_for(list(r.locked.requirements)))
            image_id = run_build(client, Path(d), r.tag, r.buildargs, progress)
        size = int(client.images.get(image_id).attrs.get("Size") or 0)
        img = BuiltImage(r.cluster, r.tag, image_id, r.target.python, r.base, size, time.time(), r.locked.hash)
        record(img)
        return img
    finally:
        client.close()


def _cut(text: str, n: int = SHOWN) -> str:
    return text if len(text) <= n else text[:n - 3] + "..."


def _short(text: str, n: int = 160) -> str:
    return _cut(" ".join(text.split()), n)
