"""`homecluster firewall render [HOST...] [--out DIR]`: the firewall rules of the port plan, one folder per host,
without touching any host. `firewall apply` comes later."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from homecluster.firewall import render_all, warnings
from homecluster.inventory import Inventory

EXECUTABLE = (".sh",)


def add_parser(sub, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Register `firewall render|apply [HOST...] [--out DIR]` on the subcommands `sub`."""
    fw = sub.add_parser("firewall", parents=[common], help="firewall rules that open exactly the port plan, to the "
                                                           "household's network only")
    fw.add_argument("action", choices=["render", "apply"],
                    help="render: write the rules per host (nothing on any host changes); apply: not yet")
    fw.add_argument("hosts", nargs="*", metavar="HOST", help="only these hosts (default: all)")
    fw.add_argument("--out", metavar="DIR", help="write DIR/<host>/<file> (default: print every file)")
    fw.set_defaults(func=cmd_firewall)
    return fw


def cmd_firewall(inv: Inventory, args: argparse.Namespace) -> int:
    """Render (to --out or stdout) and print the warnings on stderr; 2 for apply, which does not exist yet."""
    if args.action == "apply":
        print("error: firewall apply is not available yet. Fix: homecluster firewall render --out DIR, then run "
              "the files on each host as cluster/firewall/README.md and windows/FIREWALL.md say", file=sys.stderr)
        return 2
    hosts = inv.select(args.hosts) if args.hosts else list(inv.hosts.values())
    rendered = render_all(inv, hosts)
    if args.out:
        for line in write(rendered, Path(args.out)):
            print(line)
    else:
        for host, files in rendered.items():
            for name, text in files.items():
                print(f"# === {host}/{name}\n{text}", end="" if text.endswith("\n") else "\n")
    for w in warnings(inv, hosts):
        print(f"warning: {w}", file=sys.stderr)
    return 0


def write(rendered: dict[str, dict[str, str]], out: Path) -> list[str]:
    """Write each host's files into out/<host>/ (scripts executable); one line per file written."""
    lines = []
    for host, files in rendered.items():
        folder = out / host
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            path = folder / name
            path.write_text(text, encoding="utf-8", newline="\n")
            if name.endswith(EXECUTABLE):
                path.chmod(0o755)
            lines.append(f"wrote {path}")
    return lines
