"""`firewall apply`: load each Linux host's nftables ruleset (firewall/rules.py) over SSH and say what changed.

The ruleset is the host's own table (`inet homecluster_<cluster>`), replaced as a whole: applying twice changes
nothing the second time. It needs root on the host (nft changes the kernel's rules). Windows and macOS hosts are
reported with the files to run there by hand (`firewall render`)."""

from __future__ import annotations

import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path

from homecluster.core.spec import run_dir
from homecluster.errors import HostError
from homecluster.firewall.rules import nftables, opened, table_name
from homecluster.core.ports import lan_networks
from homecluster.inventory import Host, Inventory
from homecluster.shell.posix import shell_path
from homecluster.transport import runner_for
from homecluster.transport.group import Group, HostResult

MARK = "hc-firewall"


@dataclass(frozen=True)
class Applied:
    """What `apply` did on one host: `added`, `replaced` or `unchanged`, the table, and what it opens."""

    host: str
    change: str
    table: str
    opens: str

    def describe(self) -> str:
        if self.change == "unchanged":
            return f"{self.host}: table {self.table} already as planned: nothing changed"
        return f"{self.host}: {self.change} table {self.table}: {self.opens}"


def apply_script(remote: str, table: str) -> str:
    """Load the ruleset at `remote` with nft, printing whether the table was new, changed or the same."""
    t = f"inet {table}"
    return "\n".join([
        f"# homecluster firewall: load {remote}",
        "command -v nft >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin",
        "command -v nft >/dev/null 2>&1 || { echo 'no nft here. Fix: install nftables (apt install nftables), "
        "or use ufw.sh/firewalld.sh from homecluster firewall render' >&2; exit 127; }",
        f"before=$(nft list table {t} 2>/dev/null)",
        f"nft -f {shell_path(remote)} || exit 1",
        f"after=$(nft list table {t})",
        'if [ -z "$before" ]; then change=added; elif [ "$before" = "$after" ]; then change=unchanged; '
        "else change=replaced; fi",
        f'echo "{MARK} $change"',
    ])


def _summary(inv: Inventory, host: Host) -> str:
    ports = ", ".join(f"{e.what} {e.ports}" for e in opened(inv, host))
    return (f"TCP {ports} accepted from {', '.join(lan_networks(inv))}, refused from anywhere else"
            if ports else "no port to open on this host: only the table")


def apply_host(inv: Inventory, runner, host: Host) -> Applied:
    """Copy the host's ruleset into its run directory and load it."""
    if host.os != "linux":
        raise HostError(f"{host.name}: firewall apply loads nftables rules on Linux hosts only. Fix: homecluster "
                        f"firewall render {host.name} --out DIR, then run its files on {host.name} "
                        "(windows/FIREWALL.md, cluster/firewall/README.md)")
    remote = f"{run_dir(inv, host)}/homecluster.nft"
    mkdir = runner.run(f"mkdir -p {shell_path(run_dir(inv, host))}")
    if not mkdir.ok:
        raise HostError(f"{host.name}: cannot create {run_dir(inv, host)}: {mkdir.tail()}")
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "homecluster.nft"
        local.write_text(nftables(inv, host))
        runner.put(local, remote)
    r = runner.run(apply_script(remote, table_name(inv)))
    change = next((ln.split()[1] for ln in r.stdout.splitlines() if ln.startswith(MARK + " ")), None)
    if not r.ok or change is None:
        denied = "Operation not permitted" in r.stderr
        fix = (f"log in as root (user: root for {host.name}), or run sudo nft -f {shlex.quote(remote)} there"
               if denied else "see the error above")
        raise HostError(f"{host.name}: loading the firewall rules failed (exit {r.exit_code}): {r.tail()}. "
                        f"Fix: {fix}")
    return Applied(host.name, change, f"inet {table_name(inv)}", _summary(inv, host))


def apply(inv: Inventory, hosts: list[Host], runners=runner_for) -> dict[str, HostResult]:
    """Apply on every host in parallel; a result per host."""
    with Group(hosts, runners) as group:
        return group.each([h.name for h in hosts], lambda runner, host: apply_host(inv, runner, host))
