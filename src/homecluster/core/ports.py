"""The port plan: every TCP port a homecluster process listens on, host by host, and who may reach it. Pure.

`homecluster ports` prints it and the firewall rules open exactly its `lan` entries, to the household's networks
only. Dask gives every worker process an HTTP server (health, metrics) whose port cannot be pinned per process
(with --nworkers N they would share one setting and all but one fall back to a random port): homecluster binds it
to the host's loopback, where nobody on the network reaches it and no rule is needed.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from homecluster.core.spec import LOOPBACK, dashboard_address
from homecluster.inventory import Host, Inventory, PortRange

ANY = "any"  # a port chosen by the OS at start (only ever on loopback, or without a worker_ports/nanny_ports range)


@dataclass(frozen=True)
class Listen:
    """One listening socket (or range of them) of a Dask process on a host."""

    what: str  # scheduler, dashboard, worker, nanny, worker http
    address: str
    ports: PortRange | int | str  # a port, a range, or ANY
    lan: bool  # reached from the household's network (the firewall opens it); False: loopback only
    who: str  # who connects to it

    @property
    def pinned(self) -> bool:
        return self.ports != ANY

    def contains(self, port: int) -> bool:
        if isinstance(self.ports, PortRange):
            return self.ports.first <= port <= self.ports.last
        return self.ports == ANY or self.ports == port

    def to_dict(self) -> dict:
        return {"what": self.what, "address": self.address, "ports": str(self.ports), "lan": self.lan,
                "who": self.who}


def host_plan(inv: Inventory, host: Host) -> list[Listen]:
    """What listens on one host: the scheduler and dashboard on the scheduler's host, workers and nannies on
    hosts with workers."""
    c, out, lan = inv.cluster, [], not is_loopback(host.address)
    if host.name == inv.scheduler_host.name:
        out.append(Listen("scheduler", host.address, c.scheduler_port, lan, "workers and this machine"))
        dash = dashboard_address(inv)
        if dash:
            address = dash.rsplit(":", 1)[0]
            tunnel = address == LOOPBACK and not host.is_local
            out.append(Listen("dashboard", address, c.dashboard_port, lan and address != LOOPBACK,
                              "homecluster dashboard (SSH tunnel)" if tunnel else "browsers"))
    if host.nworkers > 0:
        out.append(Listen("worker", host.address, c.worker_ports or ANY, lan, "the scheduler, workers, clients"))
        out.append(Listen("nanny", host.address, c.nanny_ports or ANY, lan, "the scheduler"))
        out.append(Listen("worker http", LOOPBACK, ANY, False, "health and metrics, on the host itself"))
    return out


def is_loopback(address: str) -> bool:
    """Whether an address (or `localhost`) is this host's loopback: reached by nobody else."""
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


def plan(inv: Inventory) -> dict[str, list[Listen]]:
    """The port plan of every host, in inventory order."""
    return {name: host_plan(inv, h) for name, h in inv.hosts.items()}


def lan_networks(inv: Inventory) -> tuple[str, ...]:
    """The household's networks: `cluster.lan`, else the /24 (IPv4) or /64 (IPv6) of each host's address. Hosts
    known by name only, or on loopback, add none."""
    if inv.cluster.lan:
        return inv.cluster.lan
    nets: list[str] = []
    for h in inv.hosts.values():
        try:
            ip = ipaddress.ip_address(h.address)
        except ValueError:
            continue
        if ip.is_loopback:
            continue
        net = str(ipaddress.ip_network(f"{ip}/{24 if ip.version == 4 else 64}", strict=False))
        if net not in nets:
            nets.append(net)
    return tuple(nets)


def unpinned(inv: Inventory) -> list[str]:
    """What the firewall cannot open exactly: LAN-facing ports the OS picks (set worker_ports/nanny_ports)."""
    return sorted({f"cluster.{entry.what}_ports" for listens in plan(inv).values() for entry in listens
                   if entry.lan and not entry.pinned})
