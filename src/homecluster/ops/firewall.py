"""`firewall apply`: put the port plan's firewall rules (firewall/rules.py) on each Linux host over SSH, into the
firewall that manages the host, and say what changed.

One SSH command first tells which firewall that is and what it holds (`facts_script`, parsed by `parse_facts`):
- firewalld running (`firewall-cmd --state`): the plan's rich rules in the permanent configuration of the zone
  of the interface we reached the host on (else the default zone), then `firewall-cmd --reload`;
- else ufw active (`ufw status`: "Status: active"): the plan's `ufw allow` rules;
- else homecluster's own nftables table (`inet homecluster_<cluster>`), loaded as a whole.
A ufw or firewalld host needs their rules: their default deny drops the LAN's traffic to the dask ports whatever
an nftables table of ours says. The host key `firewall:` (auto, nftables, ufw, firewalld) overrides the choice.

Only what differs is changed (`compare`), so a second apply changes nothing. Stale rules of this cluster are
removed: in ufw found by their comment (`homecluster <cluster>: ...`); firewalld rich rules carry no comment, so
the rich rules apply made are recorded in the host's run directory (`firewalld.rules`, one `zone rule` a line).
Everything needs root on the host. Windows and macOS hosts are reported with the files to run there by hand
(`firewall render`)."""

from __future__ import annotations

import ipaddress
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from homecluster.core.ports import lan_networks
from homecluster.core.spec import run_dir
from homecluster.errors import HostError
from homecluster.firewall.rules import (comment_prefix, firewalld_rule, nftables, opened, rich_rules, table_name,
                                        ufw, ufw_delete)
from homecluster.inventory import Host, Inventory
from homecluster.shell.posix import shell_path
from homecluster.transport import runner_for
from homecluster.transport.group import Group, HostResult

MARK = "hc-firewall"
TOOLS = ("nftables", "ufw", "firewalld")
RECORD = "firewalld.rules"  # in the run directory: the rich rules apply made, `zone rule` per line
PATH_LINE = "PATH=$PATH:/usr/sbin:/sbin"
DENIED = ("Operation not permitted", "You need to be root", "Authorization failed", "NOT_AUTHORIZED",
          "AccessDenied", "Permission denied")


# --- what a host has: one command and its parser --------------------------------------------------------------

def facts_script(inv: Inventory, host: Host) -> str:
    """Make the run directory; print which firewall manages the host (or the forced one) and, for ufw and
    firewalld, the rules it holds: `hc-firewall <field> <value>` lines (see parse_facts)."""
    rdir = shell_path(run_dir(inv, host))
    forced = "" if host.firewall == "auto" else host.firewall
    return "\n".join([
        f"# homecluster facts: the firewall of {host.name} (cluster {inv.cluster.name})",
        PATH_LINE, f"M={MARK}", f"mkdir -p {rdir} || exit 1", 'echo "$M uid $(id -u)"', f"tool={forced}",
        'if [ -z "$tool" ]; then',
        # firewalld: `--state` needs root (polkit) where systemd can tell any user
        "  if command -v firewall-cmd >/dev/null 2>&1 && { [ \"$(firewall-cmd --state 2>/dev/null)\" = running ] "
        "|| systemctl is-active --quiet firewalld.service 2>/dev/null; }; then tool=firewalld",
        # ufw: `status` needs root; a user can read whether it is enabled at boot
        "  elif command -v ufw >/dev/null 2>&1 && { ufw status 2>/dev/null | grep -qx 'Status: active' || "
        "{ [ \"$(id -u)\" != 0 ] && grep -qsx 'ENABLED=yes' /etc/ufw/ufw.conf; }; }; then tool=ufw",
        "  else tool=nftables; fi",
        "fi",
        'echo "$M tool $tool"',
        'if [ "$tool" = ufw ]; then',
        '  out=$(ufw show added 2>&1); echo "$M listed $?"',
        '  printf \'%s\\n\' "$out" | sed "s/^/$M rule - /"',
        "fi",
        'if [ "$tool" = firewalld ]; then',
        f"  R={rdir}/{RECORD}",
        "  set -- $SSH_CONNECTION",  # client, its port, the address we reached the host at, its port
        "  ifc=$(ip -o addr show 2>/dev/null | awk -v a=\"$3\" '{split($4, p, \"/\")} p[1] == a {print $2; exit}')",
        '  zone=$( [ -n "$ifc" ] && firewall-cmd --get-zone-of-interface="$ifc" 2>/dev/null)',
        '  [ -n "$zone" ] || zone=$(firewall-cmd --get-default-zone 2>&1) || {',
        '    printf \'%s\\n\' "$zone" | sed "s/^/$M rule - /"; echo "$M listed 1 -"; exit 0; }',
        '  echo "$M interface ${ifc:--}"; echo "$M zone $zone"',
        '  for z in $( { echo "$zone"; [ -f "$R" ] && cut -d" " -f1 "$R"; } | sort -u); do',
        '    out=$(firewall-cmd --permanent --zone="$z" --list-rich-rules 2>&1); echo "$M listed $? $z"',
        '    printf \'%s\\n\' "$out" | sed "s/^/$M rule $z /"',
        "  done",
        '  firewall-cmd --zone="$zone" --list-rich-rules 2>/dev/null | sed "s/^/$M runtime - /"',
        '  [ -f "$R" ] && sed "s/^/$M recorded /" "$R"',
        "fi",
        "exit 0",
    ])


@dataclass(frozen=True)
class Facts:
    """What facts_script found: the tool, the user id, and for ufw/firewalld what the tool lists.

    `rules` are (zone, text) pairs: ufw's `ufw show added` lines (zone "-"), or the permanent rich rules per
    zone. `listed` is the exit code of each listing by zone ("-" for ufw): not 0 means the tool refused (its
    words are then in `rules`). `runtime` are the running rich rules of `zone`, `recorded` what apply made."""

    tool: str = "nftables"
    uid: int | None = None
    zone: str = ""
    interface: str = ""
    listed: tuple[tuple[str, int], ...] = ()
    rules: tuple[tuple[str, str], ...] = ()
    runtime: tuple[str, ...] = ()
    recorded: tuple[tuple[str, str], ...] = ()

    def listing(self, zone: str = "-") -> list[str]:
        """The lines a listing printed for a zone (ufw: "-"), empty ones left out."""
        return [text for z, text in self.rules if z == zone and text]

    def present(self) -> list[tuple[str, str]]:
        """The (zone, rule) pairs of the listings that worked (a zone recorded earlier may be gone since)."""
        good = {z for z, code in self.listed if code == 0}
        return [(z, text) for z, text in self.rules if z in good and text]

    def refused(self) -> str | None:
        """The tool's own words when listing the rules of the host's zone (or ufw's) failed, else None."""
        zone = self.zone or "-"
        code = dict(self.listed).get(zone)
        if code is None and self.tool != "nftables":
            return "it printed no rule listing"
        return None if not code else (" | ".join(self.listing(zone)[-3:]) or f"exit {code}")


def parse_facts(stdout: str) -> Facts:
    """Facts from facts_script's output. A host that printed no `tool` line (such as a replayed one) is taken
    as before there was detection: nftables."""
    fields: dict = {"listed": [], "rules": [], "runtime": [], "recorded": []}
    for line in stdout.splitlines():
        mark, _, rest = line.partition(" ")
        if mark != MARK:
            continue
        key, _, value = rest.partition(" ")
        if key in ("tool", "zone", "interface") and value:
            fields[key] = value.strip()
        elif key == "uid" and value.strip().isdigit():
            fields["uid"] = int(value)
        elif key == "listed" and value.split()[:1] and value.split()[0].isdigit():
            code, _, zone = value.partition(" ")
            fields["listed"].append((zone.strip() or "-", int(code)))
        elif key in ("rule", "recorded"):
            zone, _, text = value.partition(" ")
            fields["rules" if key == "rule" else "recorded"].append((zone, text.strip()))
        elif key == "runtime":
            fields["runtime"].append(value.partition(" ")[2].strip())
    if fields.get("tool") not in TOOLS:
        fields["tool"] = "nftables"
    if fields.get("interface") == "-":
        fields["interface"] = ""
    return Facts(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})


# --- what to change: pure ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Diff:
    """Rules to add (planned, not there), to remove (this cluster's, there, no longer planned), and kept."""

    add: tuple = ()
    remove: tuple = ()
    keep: tuple = ()

    @property
    def changed(self) -> bool:
        return bool(self.add or self.remove)


def compare(planned: dict, present: dict, ours: Callable[[object], bool]) -> Diff:
    """Each dict maps a rule's identity to the rule as shown and run; `ours(identity)` tells this cluster's."""
    return Diff(add=tuple(v for k, v in planned.items() if k not in present),
                remove=tuple(v for k, v in present.items() if k not in planned and ours(k)),
                keep=tuple(v for k, v in planned.items() if k in present))


def ufw_identity(rule: str) -> tuple | None:
    """What makes a `ufw allow ...` rule the same rule for ufw: its words with the source network written one
    way (ufw lists 10.0.0.5/32 as 10.0.0.5), the comment apart: (words, comment). None for other lines."""
    try:
        words = shlex.split(rule)
    except ValueError:
        return None
    if words[:1] != ["ufw"] or len(words) < 2 or words[1] == "route":
        return None
    comment = ""
    if "comment" in words[:-1]:
        at = words.index("comment")
        words, comment = words[:at] + words[at + 2:], words[at + 1]
    if "from" in words[:-1]:
        at = words.index("from") + 1
        try:
            words[at] = str(ipaddress.ip_network(words[at], strict=False))
        except ValueError:
            pass
    return tuple(words), comment


def ufw_diff(inv: Inventory, host: Host, facts: Facts) -> Diff:
    """The plan's `ufw allow` rules against the host's: this cluster's rules are those whose comment starts
    with `homecluster <cluster>: `."""
    planned = {ufw_identity(c): c for c in ufw(inv, host)}
    present = {ufw_identity(r): r for _, r in facts.present() if ufw_identity(r)}
    prefix = comment_prefix(inv)
    return compare(planned, present, lambda k: k[1].startswith(prefix))


def firewalld_diff(inv: Inventory, host: Host, facts: Facts) -> Diff:
    """The plan's rich rules in the host's zone against the permanent ones of every zone apply has used (a rule
    is a (zone, rule) pair); this cluster's are those apply recorded."""
    planned = {(facts.zone, r): (facts.zone, r) for r in rich_rules(inv, host)}
    present = {pair: pair for pair in facts.present()}
    recorded = set(facts.recorded)
    return compare(planned, present, lambda k: k in recorded)


# --- the result of one host ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Applied:
    """What `apply` did on one host.

    nftables: `change` is `added`, `replaced` or `unchanged` for the `table`. ufw and firewalld: `change` is
    `changed`, `reloaded` (only the running rules were behind) or `unchanged`; `added`, `removed`, `unchanged`
    are the rules as the tool lists them; `zone` is firewalld's. `opens` says what the plan opens."""

    host: str
    change: str
    table: str
    opens: str
    tool: str = "nftables"
    zone: str = ""
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    reloaded: bool = False

    def describe(self) -> str:
        if self.tool == "nftables":
            if self.change == "unchanged":
                return f"{self.host}: table {self.table} already as planned: nothing changed"
            return f"{self.host}: {self.change} table {self.table}: {self.opens}"
        where = "ufw" if self.tool == "ufw" else f"firewalld zone {self.zone}"
        if self.change == "unchanged":
            return (f"{self.host}: {where}: rules already as planned ({len(self.unchanged)} unchanged): "
                    "nothing changed")
        counts = f"{len(self.added)} added, {len(self.removed)} removed, {len(self.unchanged)} unchanged"
        reload = ", reloaded" if self.reloaded else ""
        lines = [f"{self.host}: {where}: {counts}{reload}: {self.opens}"]
        lines += [f"  + {r}" for r in self.added] + [f"  - {r}" for r in self.removed]
        if self.change == "reloaded":
            lines.append("  (the running rules were behind the permanent ones)")
        return "\n".join(lines)


def _summary(inv: Inventory, host: Host) -> str:
    ports = ", ".join(f"{e.what} {e.ports}" for e in opened(inv, host))
    return (f"TCP {ports} accepted from {', '.join(lan_networks(inv))}, refused from anywhere else"
            if ports else "no port to open on this host: only the table")


def _allowed(inv: Inventory, host: Host) -> str:
    """What the ufw/firewalld rules of the plan let in (the rest is left to the tool's default policy)."""
    ports = ", ".join(f"{e.what} {e.ports}" for e in opened(inv, host) if e.pinned)
    return (f"TCP {ports} allowed from {', '.join(lan_networks(inv))}" if ports and lan_networks(inv)
            else "no port to open on this host")


def _failed(host: Host, tool: str, what: str, words: str) -> HostError:
    """A failed ufw/firewalld command as a host error whose fix fits the cause."""
    if any(token in words for token in DENIED):
        fix = (f"log in as root (user: root for {host.name}), or run sudo sh {tool}.sh there (homecluster "
               f"firewall render {host.name} --out DIR)")
    elif "not found" in words:
        fix = f"install {tool} on {host.name}, or set firewall: auto for {host.name} in the inventory"
    else:
        fix = "see the error above"
    return HostError(f"{host.name}: {what} failed: {words.rstrip('. ')}. Fix: {fix}")


# --- ufw and firewalld ------------------------------------------------------------------------------------------

def ufw_script(host: Host, diff: Diff) -> str:
    """The ufw commands of a diff: stale rules deleted first (a rule whose comment changes is deleted, then
    made again), then the missing ones added."""
    return "\n".join([f"# homecluster ufw: the rules of {host.name}", PATH_LINE, "set -e",
                      *(ufw_delete(r) for r in diff.remove), *diff.add, f'echo "{MARK} done"'])


def _ufw(inv: Inventory, runner, host: Host, facts: Facts) -> Applied:
    refused = facts.refused()
    if refused:
        raise _failed(host, "ufw", "listing the ufw rules (ufw show added)", refused)
    diff = ufw_diff(inv, host, facts)
    if diff.changed:
        r = runner.run(ufw_script(host, diff))
        if not r.ok or f"{MARK} done" not in r.stdout:
            raise _failed(host, "ufw", f"changing the ufw rules (exit {r.exit_code})", r.tail())
    shown = (lambda rules: tuple(shlex.join(shlex.split(x)[1:]) for x in rules))
    return Applied(host.name, "changed" if diff.changed else "unchanged", "", _allowed(inv, host),
                   tool="ufw", added=shown(diff.add), removed=shown(diff.remove), unchanged=shown(diff.keep))


def _record(pairs) -> str:
    """The record file's text: a `zone rule` line per (zone, rule) pair."""
    return "".join(f"{zone} {rule}\n" for zone, rule in pairs)


def firewalld_script(inv: Inventory, host: Host, facts: Facts, diff: Diff, reload: bool) -> str:
    """Record what apply makes, remove the stale rich rules and add the missing ones (permanent), reload if
    asked, then record the plan alone. The first record keeps old and new, so an interrupted run loses none."""
    record = f"{shell_path(run_dir(inv, host))}/{RECORD}"
    planned = [(facts.zone, r) for r in rich_rules(inv, host)]
    both = list(dict.fromkeys([*facts.recorded, *planned]))
    lines = [f"# homecluster firewalld: the rich rules of {host.name} in zone {facts.zone}", PATH_LINE, "set -e",
             f"printf %s {shlex.quote(_record(both))} > {record}"]
    lines += [firewalld_rule("remove", r, z) for z, r in diff.remove]
    lines += [firewalld_rule("add", r, z) for z, r in diff.add]
    lines += ["firewall-cmd --reload"] * reload
    lines += [f"printf %s {shlex.quote(_record(planned))} > {record}" if planned else f"rm -f {record}",
              f'echo "{MARK} done"']
    return "\n".join(lines)


def _firewalld(inv: Inventory, runner, host: Host, facts: Facts) -> Applied:
    refused = facts.refused()
    if refused:
        raise _failed(host, "firewalld", "listing the firewalld rich rules", refused)
    diff = firewalld_diff(inv, host, facts)
    planned = rich_rules(inv, host)
    reload = diff.changed or any(r not in facts.runtime for r in planned)  # or the running rules are behind
    if reload or set(facts.recorded) != {(facts.zone, r) for r in planned}:
        r = runner.run(firewalld_script(inv, host, facts, diff, reload))
        if not r.ok or f"{MARK} done" not in r.stdout:
            raise _failed(host, "firewalld", f"changing the firewalld rules (exit {r.exit_code})", r.tail())
    shown = (lambda pairs: tuple(rule if zone == facts.zone else f"{rule} (zone {zone})" for zone, rule in pairs))
    change = "changed" if diff.changed else "reloaded" if reload else "unchanged"
    return Applied(host.name, change, "", _allowed(inv, host), tool="firewalld", zone=facts.zone,
                   added=shown(diff.add), removed=shown(diff.remove), unchanged=shown(diff.keep), reloaded=reload)


# --- nftables -------------------------------------------------------------------------------------------------

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


def _nftables(inv: Inventory, runner, host: Host) -> Applied:
    """Copy the host's ruleset into its run directory (made by the facts script) and load it."""
    remote = f"{run_dir(inv, host)}/homecluster.nft"
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


# --- per host, all hosts ----------------------------------------------------------------------------------------

def apply_host(inv: Inventory, runner, host: Host) -> Applied:
    """Tell the host's firewall (one command), then change only what differs from the plan."""
    if host.os != "linux":
        raise HostError(f"{host.name}: firewall apply changes the firewall of Linux hosts only. Fix: homecluster "
                        f"firewall render {host.name} --out DIR, then run its files on {host.name} "
                        "(windows/FIREWALL.md, cluster/firewall/README.md)")
    r = runner.run(facts_script(inv, host))
    if not r.ok:
        raise HostError(f"{host.name}: cannot tell its firewall or create {run_dir(inv, host)} "
                        f"(exit {r.exit_code}): {r.tail()}")
    facts = parse_facts(r.stdout)
    if facts.tool == "ufw":
        return _ufw(inv, runner, host, facts)
    if facts.tool == "firewalld":
        return _firewalld(inv, runner, host, facts)
    return _nftables(inv, runner, host)


def apply(inv: Inventory, hosts: list[Host], runners=runner_for) -> dict[str, HostResult]:
    """Apply on every host in parallel; a result per host."""
    with Group(hosts, runners) as group:
        return group.each([h.name for h in hosts], lambda runner, host: apply_host(inv, runner, host))
