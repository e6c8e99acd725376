"""The one place that talks to the scheduler: every connection to it (a Client for notebooks and plugins; Dask's
rpc, without a Client, for the workers list and the versions), with this machine's client certificate when the
cluster uses TLS. An `Endpoint` is the address plus those credentials: `endpoint(inv)` makes it.

distributed is imported inside the functions: commands that never ask start faster."""

from __future__ import annotations

import asyncio
import http.client
import json
import time
import urllib.parse
from dataclasses import dataclass
from typing import Callable

from homecluster.core.spec import scheduler_address
from homecluster.inventory import Inventory
from homecluster.security.store import CertFiles

POLL_INTERVAL = 0.1


@dataclass(frozen=True)
class Endpoint:
    """How this machine reaches the scheduler: its address and, with TLS, the client's CA, certificate and key."""

    address: str
    tls: tuple[str, str, str] | None = None  # (CA file, certificate file, key file)

    def security(self):
        """The distributed.Security for this machine's client (or None without TLS)."""
        if self.tls is None:
            return None
        from distributed.security import Security

        ca, cert, key = self.tls
        return Security(tls_ca_file=ca, tls_client_cert=cert, tls_client_key=key, require_encryption=True)

    def connection_args(self) -> dict:
        security = self.security()
        return security.get_connection_args("client") if security else {}

    def dask_config(self) -> dict[str, str]:
        """Dask's configuration as environment variables, so a plain Client() in a script connects."""
        env = {"DASK_SCHEDULER_ADDRESS": self.address}
        if self.tls:
            ca, cert, key = self.tls
            env.update({"DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION": "True",
                        "DASK_DISTRIBUTED__COMM__TLS__CA_FILE": ca,
                        "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT": cert,
                        "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY": key})
        return env


def endpoint(inv: Inventory) -> Endpoint:
    """The inventory's scheduler as this machine reaches it; a one-line error when its certificates are missing."""
    tls = CertFiles(inv.cluster.name).client_files() if inv.cluster.tls else None
    return Endpoint(scheduler_address(inv), tls)


def host_port(addr: str) -> tuple[str, int]:
    """(host, port) of a scheduler address."""
    host, _, port = addr.split("://", 1)[-1].rpartition(":")
    return host.strip("[]"), int(port)


def client(ep: Endpoint, timeout: float = 10, **kwargs):
    """A dask Client connected to the scheduler."""
    from distributed import Client

    kwargs.setdefault("security", ep.security())
    return Client(ep.address, timeout=timeout, **kwargs)


def _rpc(ep: Endpoint, timeout: float):
    from distributed.core import rpc

    return rpc(ep.address, timeout=timeout, connection_args=ep.connection_args())


async def _versions(ep: Endpoint, packages: list[str]) -> dict[str, dict]:
    async with _rpc(ep, 5) as r:
        sched = await asyncio.wait_for(r.versions(packages=packages), 10)
        workers = await asyncio.wait_for(r.broadcast(msg={"op": "versions", "packages": packages}), 10)
    return {"scheduler": sched["packages"], **{f"worker {a}": w["packages"] for a, w in workers.items()}}


def versions(ep: Endpoint, packages: list[str]) -> dict[str, dict]:
    """Package versions loaded by the scheduler and by each worker ("scheduler", "worker ADDR")."""
    return asyncio.run(_versions(ep, packages))


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


async def _identity(ep: Endpoint, timeout: float) -> dict:
    # (Importing distributed in a thread while the hosts answer was measured: no faster, they share one GIL.)
    async with _rpc(ep, timeout) as r:
        return await asyncio.wait_for(r.identity(), timeout)


def workers_over_http(dashboard_url: str, timeout: float = 2.0,
                      via: Callable[[str, int], object] | None = None) -> dict[str, WorkerInfo] | None:
    """The scheduler's workers from its dashboard's /json/identity.json, or None when it does not answer:
    no import of distributed (~0.2 s), which is most of what a no-op up would otherwise spend here.

    `via(host, port)` opens the connection instead (a socket-like SSH channel to a private dashboard)."""
    url = urllib.parse.urlsplit(dashboard_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
    try:
        if via is not None:
            conn.sock = via(url.hostname, url.port)
        conn.request("GET", "/json/identity.json")
        reply = conn.getresponse()
        return parse_identity(json.loads(reply.read())) if reply.status == 200 else None
    except (OSError, ValueError, AttributeError, http.client.HTTPException):  # not answering, or not Dask's
        return None
    finally:
        conn.close()


def workers(ep: Endpoint, timeout: float = 2.0) -> dict[str, WorkerInfo] | None:
    """The scheduler's workers, or None when no scheduler answers (or it refuses this machine)."""
    try:
        return parse_identity(asyncio.run(_identity(ep, timeout)))
    except Exception:  # noqa: BLE001 - refused, timed out, or something that is not a Dask scheduler answered
        return None


def wait_for_workers(ep: Endpoint, expected: set[str], timeout: float,
                     progress: Callable[[int, int, float], None],
                     check: Callable[[set[str]], set[str]], check_every: float = 2.0) -> dict[str, WorkerInfo]:
    """Poll until every expected worker has registered or `timeout` passes; return what registered.

    Every `check_every` seconds, `check(missing)` runs in a thread with the names still missing and returns
    the names that will never come (their process died), so a crash does not cost the whole timeout.
    """
    return asyncio.run(_wait(ep, set(expected), timeout, progress, check, check_every))


async def _wait(ep, expected, timeout, progress, check, check_every) -> dict[str, WorkerInfo]:
    loop, start = asyncio.get_running_loop(), time.monotonic()
    pending, next_check = None, start + check_every
    scheduler = _rpc(ep, 2)  # one connection for every poll: polling stays cheap
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
