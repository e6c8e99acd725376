"""`homecluster firewall render [HOST...] [--out DIR]`: the firewall rules of the port plan, one folder per host,
without touching any host. `firewall apply [HOST...]`: put them into the firewall of each Linux host over SSH
(firewalld, ufw or homecluster's nftables table: ops/firewall.py) and print what changed."""

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
                    help="render: write the rules per host (nothing on any host changes); apply: put them "
                         "into the firewall of each Linux host over SSH (firewalld, ufw, else an nftables table; "
                         "root) and say what changed")
    fw.add_argument("hosts", nargs="*", metavar="HOST", help="only these hosts (default: all)")
    fw.add_argument("--out", metavar="DIR", help="write DIR/<host>/<file> (default: print every file)")
    fw.set_defaults(func=cmd_firewall)
    return fw


def cmd_firewall(inv: Inventory, args: argparse.Namespace) -> int:
    """Render (to --out or stdout) or apply; the warnings on stderr. Apply: each host's lines (what changed, or
    FAILED with the fix); 1 if any host failed."""
    hosts = inv.select(args.hosts) if args.hosts else list(inv.hosts.values())
    for w in warnings(inv, hosts):
        print(f"warning: {w}", file=sys.stderr)
    if args.action == "apply":
        return _apply(inv, hosts)
    rendered = render_all(inv, hosts)
    if args.out:
        for line in write(rendered, Path(args.out)):
            print(line)
    else:
        for host, files in rendered.items():
            for name, text in files.items():
                print(f"# === {host}/{name}\n{text}", end="" if text.endswith("\n") else "\n")
    return 0


def _apply(inv: Inventory, hosts: list) -> int:
    from homecluster.ops.firewall import apply

    results = apply(inv, [h for h in hosts if not h.is_local])
    for name, res in results.items():
        print(res.value.describe() if res.ok else f"{name}: FAILED: {res.error}")
    for h in hosts:
        if h.is_local:
            print(f"{h.name}: connection: local, not changed: run the rendered rules yourself (root)")
    return 0 if all(r.ok for r in results.values()) else 1


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
