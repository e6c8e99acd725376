"""The one place that talks to the scheduler: its address scheme, and every connection to it (a Client for
notebooks and plugins; Dask's rpc, without a Client, for the workers list and the versions).

distributed is imported inside the functions: commands that never ask start faster."""

from __future__ import annotations

import asyncio
import json
import urllib.request
import time
from dataclasses import dataclass
from typing import Callable

POLL_INTERVAL = 0.1
SCHEME = "tcp"


def address(host: str, port: int) -> str:
    """The scheduler's address as workers and clients dial it."""
    return f"{SCHEME}://{host}:{port}"


def host_port(addr: str) -> tuple[str, int]:
    """(host, port) of a scheduler address."""
    host, _, port = addr.split("://", 1)[-1].rpartition(":")
    return host.strip("[]"), int(port)


def client(addr: str, timeout: float = 10, **kwargs):
    """A dask Client connected to the scheduler at `addr`."""
    from distributed import Client

    return Client(addr, timeout=timeout, **kwargs)


async def _versions(addr: str, packages: list[str]) -> dict[str, dict]:
    from distributed.core import rpc

    async with rpc(addr, timeout=5) as r:
        sched = await asyncio.wait_for(r.versions(packages=packages), 10)
        workers = await asyncio.wait_for(r.broadcast(msg={"op": "versions", "packages": packages}), 10)
    return {"scheduler": sched["packages"], **{f"worker {a}": w["packages"] for a, w in workers.items()}}


def versions(addr: str, packages: list[str]) -> dict[str, dict]:
    """Package versions loaded by the scheduler and by each worker ("scheduler", "worker ADDR")."""
    return asyncio.run(_versions(addr, packages))


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


async def _identity(address: str, timeout: float) -> dict:
    # (Importing it in a thread while the hosts answer was measured: no faster, they share one GIL.)
    from distributed.core import rpc

    async with rpc(address, timeout=timeout) as r:
        return await asyncio.wait_for(r.identity(), timeout)


def workers_over_http(dashboard_url: str, timeout: float = 2.0) -> dict[str, WorkerInfo] | None:
    """The scheduler's workers from its dashboard's /json/identity.json, or None when it does not answer:
    no import of distributed (~0.2 s), which is most of what a no-op up would otherwise spend here."""
    base = dashboard_url.rsplit("/", 1)[0]
    try:
        with urllib.request.urlopen(f"{base}/json/identity.json", timeout=timeout) as r:
            return parse_identity(json.loads(r.read()))
    except (OSError, ValueError, AttributeError):  # not answering, or not a Dask dashboard
        return None


def workers(address: str, timeout: float = 2.0) -> dict[str, WorkerInfo] | None:
    """The scheduler's workers, or None when no scheduler answers at `address`."""
    try:
        return parse_identity(asyncio.run(_identity(address, timeout)))
    except Exception:  # noqa: BLE001 - refused, timed out, or something that is not a Dask scheduler answered
        return None


def wait_for_workers(address: str, expected: set[str], timeout: float,
                     progress: Callable[[int, int, float], None],
                     check: Callable[[set[str]], set[str]], check_every: float = 2.0) -> dict[str, WorkerInfo]:
    """Poll until every expected worker has registered or `timeout` passes; return what registered.

    Every `check_every` seconds, `check(missing)` runs in a thread with the names still missing and returns
    the names that will never come (their process died), so a crash does not cost the whole timeout.
    """
    return asyncio.run(_wait(address, set(expected), timeout, progress, check, check_every))


async def _wait(address, expected, timeout, progress, check, check_every) -> dict[str, WorkerInfo]:
    from distributed.core import rpc

    loop, start = asyncio.get_running_loop(), time.monotonic()
    pending, next_check = None, start + check_every
    scheduler = rpc(address, timeout=2)  # one connection for every poll: polling stays cheap
    try:
        while True:
            try:
                workers = parse_identity(await asyncio.wait_for(scheduler.identity(), 2))
            except Exception:  # noqa: BLE001 - not up yet (or gone): keep polling until the timeout
                workers = {}
            seen = {n: w for n, w in workers.items() if n in expected}
            now = time.monotonic()
            progress(len(seen), len(expected), now - start)
            missing = expected - set(seen)
            if not missing or now - start >= timeout:
                return seen
            if pending is not None and pending.done():
                expected -= pending.result()
                pending, next_check = None, now + check_every
            if pending is None and now >= next_check:
                pending = loop.run_in_executor(None, check, missing)
            await asyncio.sleep(POLL_INTERVAL)
    finally:
        await scheduler.close_rpc()
