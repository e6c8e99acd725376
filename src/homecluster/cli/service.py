"""`homecluster service install|uninstall|status|render [HOST...]`: the scheduler and workers as boot-time services.

install: `up`, with the chosen hosts' processes as services of their manager (systemd, launchd, NSSM), enabled
at boot; uninstall: stop and remove them there; status: per host, who keeps them and what starts at boot
(ops/service.py). render --out DIR: every host's service files (systemd units, launchd plists, NSSM PowerShell
installers), one folder per host, without touching any host.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from homecluster.core.spec import build
from homecluster.inventory import Host, Inventory
from homecluster.ops import service as service_ops
from homecluster.packages import lock
from homecluster.services import launchd, systemd
from homecluster.services.render import home_of, needs_home, render_host, supervisor, user_of, why_nothing

ACTIONS = {"install": "install, enable and start the services (an up that makes them boot-time services)",
           "uninstall": "stop the services and remove them",
           "status": "who keeps the processes on each host, and what starts at boot"}


def add_parser(sub, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Register `service render|install|uninstall|status` on the subcommands `sub` (with the `common` options)."""
    sv = sub.add_parser("service", parents=[common], help="the scheduler and workers as boot-time services "
                                                          "(systemd, launchd, NSSM)")
    ssub = sv.add_subparsers(dest="service_command", metavar="COMMAND", required=True)
    rd = ssub.add_parser("render", parents=[common], help="write every host's service files, one folder per "
                                                          "host, without touching any host")
    rd.add_argument("hosts", nargs="*", metavar="HOST", help="host names from the inventory (default: all)")
    rd.add_argument("--out", required=True, metavar="DIR", help="folder to write to (new or empty)")
    rd.add_argument("--force", action="store_true", help="write into a folder that is not empty: the folders of "
                                                         "the hosts rendered are replaced, nothing else is touched")
    rd.set_defaults(func=cmd_service)
    for name, text in ACTIONS.items():
        action = ssub.add_parser(name, parents=[common], help=text)
        action.add_argument("hosts", nargs="*", metavar="HOST", help="host names from the inventory (default: all)")
        if name == "install":
            action.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for workers")
        action.set_defaults(func=cmd_service)
    return sv


def cmd_service(inv: Inventory, args: argparse.Namespace) -> int:
    hosts = inv.select(args.hosts) if args.hosts else list(inv.hosts.values())
    if args.service_command == "render":
        return _render(inv, args.hosts, Path(args.out).expanduser(), args.force)
    if args.service_command == "status":
        return _status(inv, hosts)
    from homecluster.cli.main import Progress  # (main registers this module's parser)

    if args.service_command == "uninstall":
        from homecluster.cli.render import down_text
        from homecluster.ops.down import down

        results = down(inv, progress=Progress(), hosts=hosts)
        print(down_text(results, inv))
        print("\nthe services are stopped and removed there. The next homecluster up installs them again: set "
              "supervisor: process for a host to run its processes without boot-time start")
        return 0 if all(r.ok for r in results.values()) else 1
    return _install(inv, hosts, args.timeout, Progress())


def _install(inv: Inventory, hosts: list[Host], timeout: float, progress) -> int:
    from homecluster.cli import render
    from homecluster.ops.up import up

    service_ops.check_installable(inv, hosts)
    rep = up(inv, timeout=timeout, progress=progress, services=frozenset(h.name for h in hosts))
    progress.done()
    print(render.cluster_text(rep, inv, "ACTIONS"))
    print()
    code = _status(inv, [h for h in hosts if rep.hosts[h.name].error is None]) if rep.ok else 1
    if not rep.ok:
        print(render.workers_text(rep))
    return code


def _status(inv: Inventory, hosts: list[Host]) -> int:
    results = service_ops.status(inv, hosts)
    failed = False
    for name, r in results.items():
        if r.ok:
            print("\n".join(r.value.lines(inv.cluster.name)))
            failed |= not r.value.ok and bool(r.value.roles)
        else:
            print(f"{name}: FAILED")
            print(f"error: {r.error}", file=sys.stderr)
            failed = True
    return 1 if failed else 0


def _render(inv: Inventory, names: list[str], out: Path, force: bool) -> int:
    hosts = inv.select(names) if names else list(inv.hosts.values())
    if out.exists() and not out.is_dir():
        print(f"error: {out} is a file. Fix: give --out a folder", file=sys.stderr)
        return 2
    if out.is_dir() and any(out.iterdir()) and not force:
        print(f"error: {out} is not empty. Fix: give --out a new or empty folder, or add --force to replace the "
              "folders of the hosts rendered", file=sys.stderr)
        return 2
    spec = build(inv, lock.digest(inv))
    rendered = {h.name: render_host(inv, spec, h) for h in hosts}  # every host first: an error writes nothing
    for host in hosts:
        folder = out / host.name
        if force and folder.is_dir():
            shutil.rmtree(folder)
        files = rendered[host.name]
        if not files:
            print(f"{host.name}: nothing to render: {why_nothing(spec, host)}")
            continue
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            # a BOM: Windows PowerShell 5.1 reads a script without one in the ANSI code page
            (folder / name).write_text(text, encoding="utf-8-sig" if name.endswith(".ps1") else "utf-8")
        print(f"{host.name} ({_kind(host)}): wrote {', '.join(str(folder / n) for n in files)}")
        for line in _next_steps(host, list(files)):
            print(f"  {line}")
    return 0


def _kind(host: Host) -> str:
    sup = supervisor(host)
    if sup == "nssm":
        return "NSSM services"
    if sup == "launchd":
        return "launchd agents" if host.service_scope == "user" else "launchd daemons"
    return f"systemd {host.service_scope} units"


def _next_steps(host: Host, files: list[str]) -> list[str]:
    """What a person runs on the host to install the files (homecluster service install will do it)."""
    sup, user = supervisor(host), host.service_scope == "user"
    notes = [f"~ is written as {home_of(host)}, the usual home of {user_of(host)}: edit the files if it is "
             "elsewhere"] if needs_home(host) else []
    if sup == "nssm":
        return notes + [f"on {host.name}, in PowerShell run as administrator: powershell -NoProfile "
                        f"-ExecutionPolicy Bypass -File .\\{n}" for n in files if n.startswith("install-")]
    listed = " ".join(files)
    if sup == "launchd":
        where = launchd.install_dir(host)
        domain = "gui/$(id -u)" if user else "system"
        sudo = "" if user else "sudo "
        return notes + [f"on {host.name}: {sudo}cp {listed} {where}/ && " + " && ".join(
            f"{sudo}launchctl bootstrap {domain} {where}/{n}" for n in files)]
    ctl = "systemctl --user" if user else "sudo systemctl"
    steps = [f"on {host.name}: {'mkdir -p ~/.config/systemd/user && ' if user else 'sudo '}cp {listed} "
             f"{systemd.install_dir(host)}/ && {ctl} daemon-reload && {ctl} enable --now {listed}"]
    if user:
        steps.append(f"and, to start them at boot without a login: loginctl enable-linger {user_of(host)}")
    return notes + steps
