"""`homecluster trust HOST...`: show each host's SSH key fingerprint and record the key in its known_hosts once
the user has checked it (or with --yes). A host whose key changed is refused, never overwritten."""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from homecluster.errors import HostError
from homecluster.inventory import Inventory
from homecluster.security import hostkeys

NO_TTY = "stdin is not a terminal"


def add_parser(sub, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Register `trust HOST... [--yes]` on the subcommands `sub` (with the `common` options, such as -i)."""
    tr = sub.add_parser("trust", parents=[common], help="check a host's SSH key fingerprint and record the key "
                                                        "in its known_hosts")
    tr.add_argument("hosts", nargs="+", metavar="HOST", help="host names from the inventory")
    tr.add_argument("--yes", action="store_true", help="record without asking (check the printed fingerprints)")
    tr.set_defaults(func=cmd_trust)
    return tr


class Confirm:
    """Asks on the terminal, or answers yes (--yes), or no when stdin is not a terminal (then says so)."""

    def __init__(self, yes: bool, stdin: TextIO | None = None, out: TextIO | None = None):
        self.yes, self.stdin, self.out, self.no_tty = yes, stdin or sys.stdin, out or sys.stdout, False

    def __call__(self, question: str) -> bool:
        if self.yes:
            print(f"{question} yes (--yes)", file=self.out, flush=True)
            return True
        if not self.stdin.isatty():
            self.no_tty = True
            print(f"{question} no: {NO_TTY}", file=self.out, flush=True)
            return False
        self.out.write(f"{question} [y/N] ")
        self.out.flush()
        return self.stdin.readline().strip().lower() in ("y", "yes")


def result_line(r: hostkeys.TrustResult, no_tty: bool = False) -> str:
    """One line per host: what was done."""
    if r.outcome == hostkeys.LOCAL:
        return f"{r.host}: connection: local, no SSH host key to trust"
    if r.outcome == hostkeys.ALREADY:
        return f"{r.host}: {r.keytype} {r.fingerprint} is already in {r.path}"
    if r.outcome == hostkeys.RECORDED:
        return f"{r.host}: recorded {r.keytype} {r.fingerprint} in {r.path}"
    why = f" ({NO_TTY}). Fix: check the fingerprint, then homecluster trust {r.host} --yes" if no_tty else ""
    return f"{r.host}: not recorded{why}"


def cmd_trust(inv: Inventory, args: argparse.Namespace) -> int:
    """Trust each named host in turn; every host gets its line; 1 if any failed or was declined."""
    hosts = inv.select(args.hosts)
    confirm = Confirm(args.yes)
    ok = True
    for host in hosts:
        try:
            r = hostkeys.trust(host, confirm)
        except HostError as e:
            sys.stdout.flush()
            print(f"error: {e}", file=sys.stderr, flush=True)
            ok = False
            continue
        print(result_line(r, confirm.no_tty), flush=True)
        ok = ok and r.outcome != hostkeys.DECLINED
    return 0 if ok else 1
