"""Which service manager keeps a host's Dask processes running, and the files that define them there.

`render_host(inv, spec, host)` -> {file name: text} for one host (empty when the host runs no process, or its
supervisor is homecluster's own: `process`); `render_all(inv)` -> {host: {file name: text}}. Pure: the same
inventory gives the same files; nothing is read from or written to a host.

supervisor: auto is systemd on Linux, launchd on macOS and NSSM on Windows here: whether systemd really runs as
PID 1 on a Linux host is for the command that installs to find out on the host.
"""

from __future__ import annotations

import getpass
import os
import re

from homecluster.core.spec import ClusterSpec, build
from homecluster.errors import InventoryError
from homecluster.inventory import Host, Inventory
from homecluster.services import launchd, nssm, systemd

AUTO = {"linux": "systemd", "macos": "launchd", "windows": "nssm"}
PROCESS = "process"
_WINDOWS_ABSOLUTE = re.compile(r"[A-Za-z]:[\\/]|[\\/]")


def supervisor(host: Host) -> str:
    """The service manager of a host: its `supervisor:` key, auto resolved by its os."""
    return AUTO[host.os] if host.supervisor == "auto" else host.supervisor


def user_of(host: Host) -> str:
    """Who runs the processes: the SSH user (ssh's default: this machine's user name) or, locally, us."""
    return getpass.getuser() if host.is_local else host.user or getpass.getuser()


def needs_home(host: Host) -> bool:
    """Whether the files hold the host's home directory for ~ (launchd, systemd system units); a systemd user
    unit has %h and NSSM's installer takes the profile when it runs."""
    sup = supervisor(host)
    return sup == "launchd" or (sup == "systemd" and host.service_scope == "system")


def home_of(host: Host) -> str:
    """The home directory ~ stands for: this machine's own for a local host; else the usual one of the user on
    the host's OS (/home/USER, /Users/USER; root's). The command that installs passes the real one."""
    if host.is_local:
        return os.path.expanduser("~")
    user = user_of(host)
    if user == "root":
        return "/var/root" if host.os == "macos" else "/root"
    return f"/Users/{user}" if host.os == "macos" else f"/home/{user}"


def render_host(inv: Inventory, spec: ClusterSpec, host: Host, home: str | None = None) -> dict[str, str]:
    """The service files of one host, by file name. `home`: the host's home directory, where the files need it
    (needs_home); default home_of(host)."""
    sup, procs, cluster = supervisor(host), spec.for_host(host.name), spec.name
    if sup == PROCESS or not procs:
        return {}
    _check_paths(inv, host, procs[0].argv[0])
    home = home or home_of(host)
    files: dict[str, str] = {}
    for p in procs:
        if sup == "systemd":
            unit_home = systemd.USER_HOME if host.service_scope == "user" else home
            files[systemd.unit_name(cluster, p.role)] = systemd.unit(p, cluster, host, unit_home, user_of(host))
        elif sup == "launchd":
            files[launchd.file_name(cluster, p.role)] = launchd.plist(p, cluster, host, home, user_of(host))
        else:
            install, uninstall = nssm.file_names(cluster, p.role)
            files[install] = nssm.install_script(p, cluster, host)
            files[uninstall] = nssm.uninstall_script(p, cluster, host)
    return files


def render_all(inv: Inventory, spec: ClusterSpec | None = None, hosts: list[Host] | None = None
               ) -> dict[str, dict[str, str]]:
    """The service files of every host (or of `hosts`), in inventory order; {} for a host with none."""
    spec = spec or build(inv)
    return {h.name: render_host(inv, spec, h) for h in (hosts or list(inv.hosts.values()))}


def why_nothing(spec: ClusterSpec, host: Host) -> str | None:
    """Why a host gets no service file, or None when it gets some."""
    if supervisor(host) == PROCESS:
        return "supervisor: process: homecluster's own supervisor runs its processes (homecluster up)"
    if not spec.for_host(host.name):
        return "no process runs there (nworkers: 0 and not the scheduler)"
    return None


def _absolute(p: str, host_os: str) -> bool:
    if p == "~" or p.startswith("~/"):
        return True
    return bool(_WINDOWS_ABSOLUTE.match(p)) if host_os == "windows" else p.startswith("/")


def _check_paths(inv: Inventory, host: Host, interpreter: str) -> None:
    """A service starts in no shell and no login directory: its paths must be absolute (or ~/...)."""
    if not _absolute(host.run_directory, host.os):
        raise InventoryError(inv.path, None, f"hosts.{host.name}.run_directory", f"{host.run_directory!r} is a "
                             "relative path, and a service has no directory to start from",
                             "write an absolute path, or one that starts with ~/")
    if re.search(r"[\\/]", interpreter) and not _absolute(interpreter, host.os):
        raise InventoryError(inv.path, None, f"hosts.{host.name}.python", f"{interpreter!r} is a relative path, "
                             "and a service has no directory to start from",
                             "write an absolute path, one that starts with ~/, or a bare name found on the PATH")
