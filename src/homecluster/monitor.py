"""Ask the running scheduler which workers it has, over Dask's own protocol (no Client needed)."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from typing import Callable

POLL_INTERVAL = 0.1


@dataclass(frozen=True)
class WorkerInfo:
    """A worker as the scheduler sees it."""

    name: str
    address: str
    ip: str
    nthreads: int
    memory_limit: int

    def to_dict(self) -> dict:
        return {"name": self.name, "address": self.address, "ip": self.ip, "nthreads": self.nthreads,
                "memory_limit": self.memory_limit}


def parse_identity(identity: dict) -> dict[str, WorkerInfo]:
    """Worker name -> WorkerInfo from the scheduler's `identity` reply."""
    out = {}
    for address, w in (identity.get("workers") or {}).items():
        name = str(w.get("name", address))
        out[name] = WorkerInfo(name, address, str(w.get("host", "")), int(w.get("nthreads", 0)),
                               int(w.get("memory_limit") or 0))
    return out


def preload() -> None:
    """Import distributed in the background (~0.3 s) while the caller waits on SSH; the import lock makes
    a later `import distributed` simply wait for this one."""
    threading.Thread(target=lambda: __import__("distributed.core"), daemon=True).start()


async def _identity(address: str, timeout: float) -> dict:
    from distributed.core import rpc  # imported here: commands that never ask the scheduler start faster

    async with rpc(address, timeout=timeout) as r:
        return await asyncio.wait_for(r.identity(), timeout)


def scheduler_workers(address: str, timeout: float = 2.0) -> dict[str, WorkerInfo] | None:
    """The scheduler's workers, or None when no scheduler answers at `address`."""
    try:
        return parse_identity(asyncio.run(_identity(address, timeout)))
    except Exception:  # noqa: BLE001 - refused, timed out, or something that is not a Dask scheduler answered
        return None


def wait_for_workers(address: str, expected: set[str], timeout: float,
                     progress: Callable[[int, int, float], None],
                     check: Callable[[set[str]], set[str]], check_every: float = 2.0) -> dict[str, WorkerInfo]:
    """Poll until every expected worker has registered or `timeout` passes; return what registered.

    `check(missing)` is called every `check_every` seconds with the names still missing and returns the
    names that will never come (their process died), so a crash does not cost the whole timeout.
    """
    start, last_check = time.monotonic(), time.monotonic()
    expected, seen = set(expected), {}
    while True:
        workers = scheduler_workers(address, timeout=min(2.0, timeout)) or {}
        seen = {n: w for n, w in workers.items() if n in expected}
        elapsed = time.monotonic() - start
        progress(len(seen), len(expected), elapsed)
        missing = expected - set(seen)
        if not missing or elapsed >= timeout:
            return seen
        if time.monotonic() - last_check >= check_every:
            expected -= check(missing)
            last_check = time.monotonic()
        time.sleep(POLL_INTERVAL)
