"""The `homecluster` command line: parse arguments, call the operations, print reports, choose the exit code.

Exit codes: 0 all well; 1 some host failed; 2 bad input (inventory or arguments), nothing started;
3 internal error (traceback written to a log file); 130 interrupted (Ctrl-C), saying what was done where.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time
import traceback
import webbrowser
from pathlib import Path

from homecluster import __version__
from homecluster.cli import firewall, image, render, service, trust
from homecluster.ops import dry_run
from homecluster.ops.down import down, logs
from homecluster.ops.report import Interrupted
from homecluster.ops.status import status
from homecluster.ops.up import up
from homecluster.errors import HomeclusterError, InventoryError, LockError
from homecluster.inventory import Inventory, inventory_path, load
from homecluster.core.spec import SCHEDULER, WORKER

CRASH_LOG = Path("~/.homecluster/crash.log")


class Progress:
    """Progress on stderr: one rewritten line on a terminal, a line per change otherwise."""

    def __init__(self, stream=sys.stderr):
        self.stream, self.last, self.tty = stream, "", stream.isatty()

    def __call__(self, message: str) -> None:
        if self.tty:
            self.stream.write("\r\033[K" + message)
        elif re.sub(r"\(\d+ s\)", "", message) != re.sub(r"\(\d+ s\)", "", self.last):
            self.stream.write(message + "\n")
        self.stream.flush()
        self.last = message

    def done(self) -> None:
        if self.tty and self.last:
            self.stream.write("\r\033[K")
            self.stream.flush()


def _warn_tls_off(inv: Inventory) -> None:
    if not inv.cluster.tls:
        print(f"warning: {inv.path}: cluster.tls is false: any device on the network can reach the scheduler "
              "and run code on every machine of the cluster. Fix: remove tls: false", file=sys.stderr)


def cmd_up(inv: Inventory, args: argparse.Namespace) -> int:
    _warn_tls_off(inv)
    if args.dry_run:
        print(dry_run.up_text(inv), end="")
        return 0
    progress = Progress()
    rep = up(inv, timeout=args.timeout, progress=progress)
    progress.done()
    print(render.cluster_text(rep, inv, "ACTIONS"))
    print()
    print(render.workers_text(rep))
    if rep.restored:
        print("\ngiven to the new scheduler for every worker: " + "; ".join(rep.restored))
    for e in rep.restore_errors:
        print(f"warning: {e}", file=sys.stderr)
    if rep.ok:
        print("\nnothing changed: the cluster was already up" if not rep.changed else "\ncluster is up")
        if rep.changed:  # what runs now was checked by the up that started it; doctor checks any time
            _warn_versions(inv)
    return 0 if rep.ok else 1


def _warn_versions(inv: Inventory) -> None:
    """The cheap part of doctor: the running processes' versions against this machine's (one rpc)."""
    from homecluster.ops.doctor import quick_check

    for f in quick_check(inv):
        print(f"warning: {f.where} has {f.what} {f.there}, this machine {f.client}. Fix: {f.fix}", file=sys.stderr)


def cmd_down(inv: Inventory, args: argparse.Namespace) -> int:
    if args.dry_run:
        print(dry_run.down_text(inv), end="")
        return 0
    results = down(inv, progress=Progress(), images=args.images)
    print(render.down_text(results, inv))
    return 0 if all(r.ok for r in results.values()) else 1


def cmd_setup(inv: Inventory, args: argparse.Namespace) -> int:
    from homecluster.ops.setup import Setup  # uv and the lock machinery load only for this command

    hosts = inv.select(args.hosts) if args.hosts else list(inv.hosts.values())
    progress = Progress()
    run = Setup(inv, progress)
    results = run.run(hosts)
    progress.done()
    print(render.setup_text(results, inv, run.downloaded))
    return 0 if all(r.ok for r in results.values()) else 1


def cmd_doctor(inv: Inventory, args: argparse.Namespace) -> int:
    from homecluster.ops.doctor import doctor

    rep = doctor(inv)
    print(render.doctor_text(rep))
    return 0 if rep.ok else 1


def cmd_install_pkg(inv: Inventory, args: argparse.Namespace) -> int:
    from homecluster.packages.additions import Additions, record_path
    from homecluster.ops.install_pkg import install

    if args.list:
        lines = Additions(inv.path).lines()
        print("\n".join(lines) if lines else f"nothing recorded in {record_path(inv.path)}")
        return 0
    if not args.packages:
        print("error: install-pkg: name at least one package (or --list). Fix: homecluster install-pkg numpy",
              file=sys.stderr)
        return 2
    progress = Progress()
    rep = install(inv, args.packages, restart=args.restart, upgrade=args.upgrade, progress=progress)
    progress.done()
    print(render.install_text(rep))
    return 0 if rep.ok else 1


def cmd_upload(inv: Inventory, args: argparse.Namespace) -> int:
    from homecluster.packages.additions import Additions
    from homecluster.api import cluster_client
    from homecluster.ops.upload import upload

    with cluster_client(inv) as client:
        names = upload(client, args.paths, restart=args.restart, record=Additions(inv.path))
        n = len(client.scheduler_info()["workers"])
    print(f"uploaded {', '.join(names)} to {n} worker(s); workers that join later get them too, also after "
          "the scheduler restarts (homecluster up gives recorded uploads to a new scheduler)")
    return 0


def cmd_run(inv: Inventory, args: argparse.Namespace) -> int:
    from homecluster import scheduler

    # A plain Client() in the script reads the address and the TLS files from Dask's configuration.
    env = {**os.environ, **scheduler.endpoint(inv).dask_config(),
           "HOMECLUSTER_INVENTORY": os.path.abspath(inv.path)}  # so connect() in the script finds it too
    return subprocess.run([sys.executable, args.script, *args.args], env=env).returncode


def cmd_status(inv: Inventory, args: argparse.Namespace) -> int:
    rep = status(inv)
    if args.json:
        print(render.status_json(rep))
    else:
        print(render.cluster_text(rep, inv, "PROCESSES"))
        print()
        print(render.workers_text(rep))
    return 0 if rep.ok else 1


def cmd_dashboard(inv: Inventory, args: argparse.Namespace) -> int:
    from homecluster.ops.dashboard import dashboard_url, needs_tunnel

    if inv.cluster.dashboard_port is None:
        print(f"{inv.path}: the dashboard is off (cluster.dashboard_port: null). Fix: set dashboard_port: 8787",
              file=sys.stderr)
        return 2
    with dashboard_url(inv) as url:
        print(url, flush=True)
        has_screen = sys.platform in ("darwin", "win32") or os.environ.get("DISPLAY") or os.environ.get(
            "WAYLAND_DISPLAY")
        if has_screen and not args.no_browser:
            webbrowser.open(url)
        if needs_tunnel(inv):
            print(f"(a tunnel over SSH to the dashboard on {inv.scheduler_host.name}'s loopback; Ctrl-C closes it)",
                  file=sys.stderr, flush=True)
            signal.signal(signal.SIGTERM, signal.getsignal(signal.SIGINT))  # kill closes it like Ctrl-C
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
    return 0


def cmd_ports(inv: Inventory, args: argparse.Namespace) -> int:
    from homecluster.core import ports

    plan, nets, unpinned = ports.plan(inv), ports.lan_networks(inv), ports.unpinned(inv)
    print(render.ports_json(plan, nets, unpinned) if args.json else render.ports_text(inv, plan, nets, unpinned))
    return 0


def cmd_logs(inv: Inventory, args: argparse.Namespace) -> int:
    print(logs(inv, args.host, args.role, args.lines), end="")
    return 0


def cmd_certs(inv: Inventory, args: argparse.Namespace) -> int:
    from homecluster.security.certs import CertStore

    store = CertStore(inv.cluster.name)
    if not inv.cluster.tls:
        print(f"note: {inv.path} has tls: false; these certificates are used once TLS is on", file=sys.stderr)
    if args.action in ("init", "rotate"):
        made = store.rotate(inv) if args.action == "rotate" else store.ensure(inv)
        print(f"{'made' if made else 'nothing to make'}{': ' + ', '.join(made) if made else ''} ({store.dir})")
        if args.action == "rotate":
            print("a running cluster still accepts the old ones: homecluster up restarts it with the new ones")
    print(render.certs_text(store.show()))
    return 0


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-i", "--inventory", default=argparse.SUPPRESS,
                        help="inventory file (default: $HOMECLUSTER_INVENTORY, else ./inventory.yaml)")
    p = argparse.ArgumentParser(prog="homecluster", parents=[common],
                                description="Turn the computers of a household into one Dask cluster.")
    p.add_argument("--version", action="version", version=f"homecluster {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up = sub.add_parser("up", parents=[common], help="start (or update) the cluster and wait for the workers")
    up.add_argument("--dry-run", action="store_true", help="print the scripts each host would run; start nothing")
    up.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for workers (default 60)")
    up.set_defaults(func=cmd_up)
    down = sub.add_parser("down", parents=[common], help="stop every process homecluster started")
    down.add_argument("--dry-run", action="store_true", help="print the scripts each host would run")
    down.add_argument("--images", action="store_true", help="also remove the cluster's image from its docker hosts")
    down.set_defaults(func=cmd_down)
    su = sub.add_parser("setup", parents=[common], help="the same managed Python environment on every host")
    su.add_argument("hosts", nargs="*", metavar="HOST", help="only these hosts (default: all)")
    su.set_defaults(func=cmd_setup)
    dr = sub.add_parser("doctor", parents=[common], help="find version mismatches, pickle and port problems")
    dr.set_defaults(func=cmd_doctor)
    ip = sub.add_parser("install-pkg", parents=[common], help="install packages on every worker, offline")
    ip.add_argument("packages", nargs="*", metavar="PKG", help="requirements such as numpy or 'pandas>=2,<3'")
    ip.add_argument("--restart", action="store_true", help="restart the workers afterwards (for upgrades of "
                                                           "modules they imported already)")
    ip.add_argument("--upgrade", action="store_true", help="allow changing the version of packages the workers "
                                                           "have already (refused otherwise, with the list)")
    ip.add_argument("--list", action="store_true", help="show the recorded packages and uploads")
    ip.set_defaults(func=cmd_install_pkg)
    upl = sub.add_parser("upload", parents=[common], help="make local modules or packages importable on workers")
    upl.add_argument("paths", nargs="+", metavar="PATH", help="a .py module, a package directory, a .zip/.egg")
    upl.add_argument("--restart", action="store_true", help="restart the workers afterwards (for packages)")
    upl.set_defaults(func=cmd_upload)
    rn = sub.add_parser("run", parents=[common], help="run a local script with DASK_SCHEDULER_ADDRESS set")
    rn.add_argument("script")
    rn.add_argument("args", nargs=argparse.REMAINDER)
    rn.set_defaults(func=cmd_run)
    st = sub.add_parser("status", parents=[common], help="what runs where, per host and per worker")
    st.add_argument("--json", action="store_true", help="machine-readable output")
    st.set_defaults(func=cmd_status)
    dash = sub.add_parser("dashboard", parents=[common], help="open the dashboard in a browser (a private one of "
                          "another host through an SSH tunnel, until Ctrl-C)")
    dash.add_argument("--no-browser", action="store_true", help="only print the URL")
    dash.set_defaults(func=cmd_dashboard)
    ce = sub.add_parser("certs", parents=[common], help="the cluster's private CA and certificates (mutual TLS)")
    ce.add_argument("action", choices=["init", "rotate", "show"],
                    help="init: make what is missing; rotate: a new CA and new certificates; show: fingerprints")
    ce.set_defaults(func=cmd_certs)
    trust.add_parser(sub, common)
    firewall.add_parser(sub, common)
    service.add_parser(sub, common)
    image.add_parser(sub, common)
    po = sub.add_parser("ports", parents=[common], help="the port plan: every port the cluster listens on, per host")
    po.add_argument("--json", action="store_true", help="as JSON")
    po.set_defaults(func=cmd_ports)
    lg = sub.add_parser("logs", parents=[common], help="the log of a host's scheduler or worker")
    lg.add_argument("host")
    lg.add_argument("--role", choices=[WORKER, SCHEDULER], default=None,
                    help="default: worker, or scheduler on a host without workers")
    lg.add_argument("-n", "--lines", type=int, default=50, help="how many lines (default 50)")
    lg.set_defaults(func=cmd_logs)
    return p


def _default_role(inv: Inventory, args: argparse.Namespace) -> None:
    if getattr(args, "role", "x") is None:
        host = inv.hosts.get(args.host)
        args.role = WORKER if host is None or host.nworkers > 0 else SCHEDULER


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `homecluster` command."""
    args = parser().parse_args(argv)
    try:
        inv = load(inventory_path(getattr(args, "inventory", None)))
        _default_role(inv, args)
        return args.func(inv, args)
    except InventoryError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except LockError as e:
        print(f"error: {e.where}: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(f"\n{e}", file=sys.stderr)
        return 130
    except HomeclusterError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except Exception:  # noqa: BLE001 - the third tier: a bug, with the traceback kept for the report
        log = CRASH_LOG.expanduser()
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(traceback.format_exc())
        print(f"internal error: {sys.exc_info()[1]!r}. The traceback is in {log}; please report it.",
              file=sys.stderr)
        return 3


def run() -> None:
    """The console entry point: main(), then exit without the interpreter's clean-up of every module it loaded
    (~0.1 s once distributed is imported, a tenth of a no-op up) and without waiting for threads: after Ctrl-C
    one may still be blocked on a host (SSH, a lock), whose lock goes when our connection to it closes. Every
    command has closed its connections and files by then; the output is flushed here."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
