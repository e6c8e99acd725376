"""Run one action on many hosts in parallel and keep a result per host: a failure never hides the others."""

from __future__ import annotations

import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterable, TypeVar

from homecluster.errors import HomeclusterError
from homecluster.inventory import Host
from homecluster.transport import runner_for

T = TypeVar("T")
MAX_PARALLEL = 32


@dataclass(frozen=True)
class HostResult(Generic[T]):
    """Either the value an action returned on a host, or the one-line error it failed with."""

    host: str
    value: T | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class Group:
    """Open runners to a set of hosts, reused across the phases of one command, closed at the end."""

    def __init__(self, hosts: Iterable[Host], runner_factory: Callable[[Host], Any] = runner_for):
        self.hosts = {h.name: h for h in hosts}
        self.runners = {name: runner_factory(h) for name, h in self.hosts.items()}

    def __enter__(self) -> "Group":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        for r in self.runners.values():
            try:
                r.close()
            except Exception:  # noqa: BLE001 - closing must not mask the real outcome
                pass

    def each(self, names: Iterable[str], action: Callable[[Any, Host], T]) -> dict[str, HostResult[T]]:
        """Call `action(runner, host)` for each named host in parallel; results in the order given."""
        names = list(names)
        if not names:
            return {}
        pool = ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(names)))
        try:
            futures = {n: pool.submit(_guarded, n, action, self.runners[n], self.hosts[n]) for n in names}
            return {n: f.result() for n, f in futures.items()}
        finally:
            # Not waiting: on Ctrl-C the caller reports at once (a thread may be blocked on a host for long).
            pool.shutdown(wait=False, cancel_futures=True)


def _guarded(name: str, action: Callable, runner: Any, host: Host) -> HostResult:
    try:
        return HostResult(name, value=action(runner, host))
    except HomeclusterError as e:
        return HostResult(name, error=str(e))
    except Exception as e:  # noqa: BLE001 - an internal error on one host is still reported per host
        tb = traceback.extract_tb(e.__traceback__)[-1]
        return HostResult(name, error=f"{name}: internal error {type(e).__name__}: {e} "
                                      f"(at {tb.filename}:{tb.lineno}; please report it)")
