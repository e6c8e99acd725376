"""launchd: one job per cluster and role, `org.homecluster.<cluster>.<role>.plist`, from
cluster/launchd/homecluster.plist.

service_scope: user makes a LaunchAgent (~/Library/LaunchAgents/: it runs while that user is logged in, so turn
on automatic login for a Mac that should work after a power cut); system makes a LaunchDaemon
(/Library/LaunchDaemons/, starts at boot) that runs as the host's user. launchd expands no ~, so the plist holds
the home directory (`home`).
"""

from __future__ import annotations

from homecluster.core.spec import ProcessSpec
from homecluster.inventory import Host
from homecluster.services import templates
from homecluster.services.common import RESTART_DELAY, env_is_home, environment, is_home, log_path

TEMPLATE = "cluster/launchd/homecluster.plist"


def label(cluster: str, role: str) -> str:
    return f"org.homecluster.{cluster}.{role}"


def file_name(cluster: str, role: str) -> str:
    return f"{label(cluster, role)}.plist"


def install_dir(host: Host) -> str:
    return "~/Library/LaunchAgents" if host.service_scope == "user" else "/Library/LaunchDaemons"


def path(p: str, home: str) -> str:
    return home.rstrip("/") + p[1:] if is_home(p) else p


def plist(proc: ProcessSpec, cluster: str, host: Host, home: str, user: str | None = None) -> str:
    """The plist text of one process. `home`: the directory ~ stands for; `user`: UserName of a LaunchDaemon."""
    daemon = host.service_scope == "system"
    return templates.render_plist(TEMPLATE, {
        "label": label(cluster, proc.role),
        "program_arguments": [path(a, home) for a in proc.argv],
        "environment": {k: path(v, home) if env_is_home(v) else v for k, v in environment(proc, cluster)},
        "working_directory": path(proc.run_dir, home),
        "user_name": user if daemon and user and user != "root" else None,
        "throttle_interval": RESTART_DELAY,
        "log": path(log_path(proc), home),
    })
