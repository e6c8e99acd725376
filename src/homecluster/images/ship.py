"""Bringing the image to a docker host without a registry: `docker save` on this machine streamed into `docker
load` on the host (over SSH, or a local pipe), hosts in parallel, with one progress line for all of them.

A host that already has the exact image id gets nothing. Before sending, the host's free space under Docker's
data root is checked against the image's size (a load needs about that much), so a full disk is one clear line
instead of a broken stream.
"""

from __future__ import annotations

import re
import threading
import time
import weakref
from typing import Callable, Iterator

from homecluster.errors import HomeclusterError, HostError
from homecluster.inventory import Host

CHUNK = 1 << 20
SPACE_MARGIN = 1.2  # a load unpacks the layers next to the stream it reads: ask for a fifth more than the size
_LOADED = re.compile(r"^Loaded image(?: ID)?: (\S+)", re.M)


def _client():
    from homecluster.images.build import engine  # one way to reach this machine's engine, with its errors

    return engine()


class LocalImage:
    """An image of this machine's Docker engine (an id or a tag): its id and size in bytes, asked of the engine
    only when first needed (`--dry-run` records the load without ever asking)."""

    def __init__(self, ref: str, id: str | None = None, size: int | None = None):
        self.ref, self._id, self._size = ref, id, size

    def _look(self) -> None:
        import docker

        try:
            img = _client().images.get(self.ref)
        except docker.errors.ImageNotFound:
            raise HomeclusterError(f"no image {self.ref} on this machine's Docker engine. Fix: homecluster image "
                                   "build (or build or pull that image here)") from None
        self._id, self._size = img.id, int(img.attrs.get("Size") or 0)

    @property
    def id(self) -> str:
        if self._id is None:
            self._look()
        return self._id

    @property
    def size(self) -> int:
        if self._size is None:
            self._look()
        return self._size


def local_image(ref: str) -> LocalImage:
    """The image `ref` (an id or a tag) on this machine's Docker engine."""
    return LocalImage(ref)


def save_stream(image: LocalImage) -> Iterator[bytes]:
    """`docker save` of the image, as chunks (its tags travel with it); the engine is asked at the first chunk."""
    yield from _client().api.get_image(image.ref, chunk_size=CHUNK)


def load_script(docker_env: str) -> str:
    """sh: `docker load` of the stream on stdin, printing what was loaded."""
    return "\n".join(["# homecluster load: the image, from this machine's docker save on stdin",
                      docker_env, "docker load"])


def check_space(host: Host, image: LocalImage, free_kb: int | None, root: str | None) -> None:
    """Fail the host before sending when Docker's data root has not room for the image."""
    if free_kb is None:
        return
    need = image.size * SPACE_MARGIN
    if free_kb * 1024 < need:
        raise HostError(f"{host.name}: not enough disk for the image: it needs about {need / 1e6:.0f} MB under "
                        f"{root or 'Docker’s data root'}, {free_kb * 1024 / 1e6:.0f} MB are free. Fix: free space "
                        f"there (docker system prune on {host.name}), or move Docker's data-root")


def ship(runner, host: Host, image: LocalImage, docker_env: str, board: "Board") -> str:
    """Stream the image into `docker load` on the host (the board shows the bytes); what docker load says it
    loaded."""
    sent = [0]

    def on_bytes(n: int) -> None:
        sent[0] = n
        board.update(host.name, n, image.size)
    r = runner.feed(load_script(docker_env), save_stream(image), on_bytes)
    if sent[0]:
        board.update(host.name, sent[0], image.size, final=True)
    if not r.ok:
        tail = " ".join(r.stdout.strip().splitlines()[-2:])
        if "no space left" in r.stdout:
            raise HostError(f"{host.name}: docker load ran out of disk: {tail}. Fix: free space under Docker's "
                            f"data root on {host.name} (docker system prune)")
        raise HostError(f"{host.name}: docker load failed (exit {r.exit_code}): {tail}")
    m = _LOADED.search(r.stdout)
    return m.group(1) if m else ""


class Board:
    """One progress line for the images on their way to several hosts at once: bytes per host."""

    def __init__(self, progress: Callable[[str], None], interval: float = 1.0):
        self.progress, self.interval = progress, interval
        self.sent: dict[str, tuple[int, int]] = {}
        self._lock, self._last = threading.Lock(), 0.0

    def update(self, host: str, done: int, total: int, final: bool = False) -> None:
        """`done` bytes of about `total` sent to `host`; a line at most every `interval` s, and at the end."""
        with self._lock:
            self.sent[host] = (done, done if final else max(total, done))
            now = time.monotonic()
            if now - self._last < self.interval and not final:
                return
            self._last = now
            parts = [f"{h} {d / 1e6:.0f}/{t / 1e6:.0f} MB" for h, (d, t) in self.sent.items()]
        self.progress("shipping the image: " + ", ".join(parts))


_BOARDS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_BOARDS_LOCK = threading.Lock()


def board(progress: Callable[[str], None]) -> Board:
    """The Board of a command's progress callback (hosts shipping in parallel share it)."""
    with _BOARDS_LOCK:
        try:
            if progress not in _BOARDS:
                _BOARDS[progress] = Board(progress)
            return _BOARDS[progress]
        except TypeError:  # not weakly referable: a board of its own
            return Board(progress)
