"""`service install|uninstall|status`: the cluster's processes as boot-time services, through the backends.

install: `up`, where each chosen host must keep its processes with its service manager (systemd, launchd, NSSM):
the backends install, enable and start the units (user units get lingering). uninstall: stop and remove them on
the chosen hosts (`down` there). status: per host, who keeps the processes and whether each role starts at boot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from homecluster.backends import backend_for
from homecluster.backends.base import ProcessState, Supervision
from homecluster.core.spec import SCHEDULER, WORKER, build
from homecluster.errors import InventoryError
from homecluster.inventory import Host, Inventory
from homecluster.transport import runner_for
from homecluster.transport.group import Group, HostResult

MANAGERS = {"systemd": "systemd", "launchd": "launchd", "nssm": "NSSM", "process": "homecluster's supervisor"}


@dataclass(frozen=True)
class BootStatus:
    """One host's answer to `service status`: the roles it runs, who keeps them, and what starts at boot."""

    host: Host
    roles: tuple[str, ...]
    supervision: Supervision
    states: dict[str, ProcessState]

    @property
    def ok(self) -> bool:
        """Every role of the host starts at boot."""
        return all(self.supervision.starts_at_boot(r) for r in self.roles)

    def lines(self, cluster: str) -> list[str]:
        """The host's lines for the terminal: a headline, then one per role."""
        sup, name = self.supervision, self.host.name
        if not self.roles:
            return [f"{name}: runs no process of the cluster"]
        if sup.manager == "process":
            return [f"{name}: {MANAGERS['process']} ({sup.why}): nothing starts at boot. Fix: see README "
                    "'Boot-time services'"]
        scope = f" {self.host.service_scope}" if sup.manager == "systemd" else ""
        head = f"{name}: {MANAGERS.get(sup.manager, sup.manager)}{scope} services"
        if sup.linger is False:
            head += (f"; lingering is off for the user: they start at the first login, not at boot. Fix: on {name} "
                     "run loginctl enable-linger (as root: loginctl enable-linger USER)")
        out = [head]
        for role in self.roles:
            st = self.states.get(role)
            run = f"running (pid {st.pid})" if st and st.alive and st.pid else "not running"
            boot = sup.boot.get(role, "absent")
            out.append(f"  {role}: {'starts at boot' if sup.starts_at_boot(role) else boot}, {run}")
        return out


def check_installable(inv: Inventory, hosts: list[Host]) -> None:
    """Before anything runs: a host whose supervisor is homecluster's own cannot get boot-time services."""
    for h in hosts:
        if h.supervisor == "process":
            raise InventoryError(inv.path, None, f"hosts.{h.name}.supervisor", "is process: homecluster's "
                                 "supervisor does not start at boot", f"remove supervisor: from {h.name} (auto), "
                                 "or set the host's service manager")


def status(inv: Inventory, hosts: list[Host],
           runners: Callable[[Host], object] = runner_for) -> dict[str, HostResult[BootStatus]]:
    """Probe each host: who keeps its processes, and whether each of its roles starts at boot."""
    spec = build(inv)
    roles = {h.name: tuple(r for r in (SCHEDULER, WORKER) if (h.name, r) in {(p.host, p.role) for p in spec.processes})
             for h in hosts}

    def one(runner, host: Host) -> BootStatus:
        backend = backend_for(inv, host, runner)
        states = backend.probe()
        return BootStatus(host, roles[host.name], backend.supervision, states)

    with Group(hosts, runners) as group:
        return group.each([h.name for h in hosts], one)
