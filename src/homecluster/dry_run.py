"""`--dry-run`: the exact scripts `up` and `down` would run on each host, printed instead of run. Pure."""

from __future__ import annotations

from homecluster.backends import process as commands

from homecluster.packages import lock
from homecluster.inventory import Host, Inventory
from homecluster.core.spec import SCHEDULER, WORKER, build, run_dir
from homecluster.transport import WindowsUnsupported


def how(host: Host) -> str:
    """How homecluster reaches a host, for headers and tables."""
    if host.is_local:
        return "local shell"
    user = f"{host.user}@" if host.user else ""
    return f"ssh {user}{host.address}:{host.port}"


def _section(host: Host, title: str, scripts: list[str]) -> str:
    head = f"# === {host.name} ({how(host)}): {title}; each script runs as: sh -c SCRIPT"
    if host.os == "windows":
        return f"# === {host.name} ({how(host)}): {title}\n# not run: {WindowsUnsupported.REASON}\n"
    body = "\n# ---\n".join(scripts) if scripts else "# (nothing to run)"
    return f"{head}\n{body}\n"


def up_text(inv: Inventory) -> str:
    """The scripts `up` runs on a household where nothing is running yet: probe, then start."""
    spec = build(inv, lock.digest(inv))
    out = [f"# homecluster up --dry-run: cluster {spec.name}, scheduler {spec.scheduler_address}, "
           f"dashboard {spec.dashboard_url or 'off'}\n"]
    for host in inv.hosts.values():
        procs = spec.for_host(host.name)
        roles = ", ".join(p.role for p in procs) or "nothing to start"
        scripts = [commands.probe_script(run_dir(inv, host))] + [commands.start_script(p) for p in procs]
        out.append(_section(host, roles, scripts))
    return "\n".join(out)


def down_text(inv: Inventory) -> str:
    """The scripts `down` runs: stop workers on every host, then schedulers."""
    out = [f"# homecluster down --dry-run: cluster {inv.cluster.name}\n"]
    for host in inv.hosts.values():
        scripts = [commands.stop_script(run_dir(inv, host), role) for role in (WORKER, SCHEDULER)]
        out.append(_section(host, "stop workers, then the scheduler", scripts))
    return "\n".join(out)
