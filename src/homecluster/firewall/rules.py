"""Firewall rules rendered from the port plan (core/ports.py): pure text, nothing is applied here.

The rules open exactly the plan's LAN-facing ports of a host (its `lan=True` entries), TCP, and only to the
household's networks (`ports.lan_networks`: cluster.lan, else the /24 of the hosts' addresses). Loopback-only
entries (a private dashboard, the workers' HTTP servers) get no rule. A LAN-facing port the OS picks at start
(no worker_ports / nanny_ports) cannot be opened exactly: the files say so and `warnings()` names the key to set.

Per host OS, from the templates in `cluster/firewall/` and `windows/` (one source, shipped in the package):
- linux: `homecluster.nft` (nftables, see `nftables()`), `ufw.sh`, `firewalld.sh`: one of the three is used,
  by what the host runs;
- macos: `macos-firewall.md`, the application firewall's commands (it allows a program, not a port);
- windows: `firewall.ps1` (New-NetFirewallRule, Private profile) and `remove-firewall.ps1`.

`firewall apply` (ops/firewall.py) compares what a Linux host has with these and runs only the commands made
here: `ufw()` and `ufw_delete()`, `firewalld_rule()`, or loads `nftables()`.
"""

from __future__ import annotations

import ipaddress
import shlex

from homecluster.core import ports
from homecluster.core.ports import Listen
from homecluster.core.spec import interpreter
from homecluster.shell.windows import ps_literal
from homecluster.inventory import Host, Inventory, PortRange
from homecluster.services import templates
from homecluster.shell.posix import shell_path

EXAMPLE_RANGES = {"worker": "9000:9099", "nanny": "9100:9199"}


# --- what a host opens --------------------------------------------------------------------------------------

def opened(inv: Inventory, host: Host) -> list[Listen]:
    """The plan's entries of a host that the network reaches (pinned or not)."""
    return [e for e in ports.host_plan(inv, host) if e.lan and not ports.is_loopback(e.address)]


def _pinned(inv: Inventory, host: Host) -> list[Listen]:
    return [e for e in opened(inv, host) if e.pinned]


def _span(p: int | PortRange, sep: str) -> str:
    """A port or a range, with the range separator of the firewall at hand (nft and Windows '-', ufw ':')."""
    if isinstance(p, PortRange):
        return str(p.first) if p.first == p.last else f"{p.first}{sep}{p.last}"
    return str(p)


def _families(inv: Inventory) -> tuple[list[str], list[str]]:
    nets = [ipaddress.ip_network(n, strict=False) for n in ports.lan_networks(inv)]
    return [str(n) for n in nets if n.version == 4], [str(n) for n in nets if n.version == 6]


def _plan_items(inv: Inventory, host: Host) -> list[str]:
    """The host's plan, one line per entry: what is opened, and what is not and why."""
    reached = opened(inv, host)
    items = []
    for e in ports.host_plan(inv, host):
        if e in reached and e.pinned:
            items.append(f"{e.what} {e.ports}: TCP, for {e.who}")
        elif e in reached:
            items.append(f"{e.what}: NOT OPENED, its ports are chosen by the OS at start. Fix: set "
                         f"cluster.{e.what}_ports in the inventory, such as {EXAMPLE_RANGES.get(e.what, '9000:9099')}")
        else:
            port = "any port" if not e.pinned else f"port {e.ports}"
            items.append(f"not opened: {e.what} on {e.address} ({port}), {e.who}: loopback only")
    return items + ([] if reached else ["nothing of homecluster listens on this host's network: nothing to open"])


def _plan_comment(inv: Inventory, host: Host) -> str:
    """The plan as a comment block (#: nft, sh and PowerShell alike)."""
    lan = ", ".join(ports.lan_networks(inv)) or "no network known (set cluster.lan)"
    return "\n".join([f"# The port plan of {host.name} (homecluster ports); opened to {lan}:"] +
                     [f"#   {item}" for item in _plan_items(inv, host)])


def warnings(inv: Inventory, hosts: list[Host] | None = None) -> list[str]:
    """What the rules for `hosts` (default: all) cannot do as the plan wants, each with the inventory key that
    fixes it."""
    hosts = list(inv.hosts.values()) if hosts is None else hosts
    out = []
    for what, example in EXAMPLE_RANGES.items():
        names = [h.name for h in hosts if any(e.what == what and not e.pinned for e in opened(inv, h))]
        if names:
            out.append(f"cluster.{what}_ports is not set: the {what} ports of {', '.join(names)} are chosen by the "
                       f"OS at start, so no rule opens them (rendered without them). Fix: set {what}_ports: "
                       f"\"{example}\" in the cluster section of {inv.path}")
    lan = [ipaddress.ip_network(n, strict=False) for n in ports.lan_networks(inv)]
    if not lan and any(opened(inv, h) for h in hosts):
        out.append(f"no household network is known (no host has an IP address): the rules open nothing. Fix: set "
                   f"lan: 192.168.1.0/24 (your network) in the cluster section of {inv.path}")
    for h in inv.hosts.values() if lan else ():
        try:
            ip = ipaddress.ip_address(h.address)
        except ValueError:
            continue
        if not ip.is_loopback and not any(ip in n for n in lan if n.version == ip.version):
            out.append(f"{h.name}'s address {h.address} is outside cluster.lan ({', '.join(map(str, lan))}): the "
                       f"rules refuse its connections. Fix: add its network to cluster.lan in {inv.path}")
    return out


# --- Linux --------------------------------------------------------------------------------------------------

def table_name(inv: Inventory) -> str:
    """The nftables table of the cluster (cluster names are letters, digits, '.', '_', '-': all valid in nft
    identifiers after a letter)."""
    return f"homecluster_{inv.cluster.name}"


def nftables(inv: Inventory, host: Host) -> str:
    """A complete nftables ruleset (`nft -f FILE`) for a Linux host.

    It lives in its own table `inet homecluster_<cluster>`, replaced as a whole on every load (declared, deleted
    and made again in one transaction), so it never touches the host's other tables. Its one chain hooks input
    at priority -10 with policy accept and judges only TCP to the plan's ports: from the household's networks
    it accepts, from elsewhere it answers with a TCP reset (connection refused, at once). Loopback traffic and
    packets of established connections pass first.

    Why not "accept the plan, drop the rest": in nftables an accept ends only its own base chain, and a drop in
    any chain is final, so a table of ours can refuse but never open a port that another table (ufw, firewalld,
    a hand-made policy drop) drops. Dropping everything else would break the host's other services. Hence the
    table only restricts the plan's ports to the LAN; a host with a default-drop firewall opens them there too
    (ufw.sh / firewalld.sh). The priority before the usual filter chains (0) makes the refusal come first; it
    does not change what passes, since accepts do not carry over between chains.
    """
    v4, v6 = _families(inv)
    sets, accepts = [], []
    for family, nets, name in (("ipv4_addr", v4, "lan4"), ("ipv6_addr", v6, "lan6")):
        if nets:
            sets.append(f"\tset {name} {{\n\t\ttype {family}\n\t\tflags interval\n"
                        f"\t\telements = {{ {', '.join(nets)} }}\n\t}}\n")
            accepts.append(f"\t\ttcp dport @ports {'ip' if name == 'lan4' else 'ip6'} saddr @{name} accept")
    if not accepts:
        accepts.append("\t\t# no household network known (set cluster.lan): nothing is accepted from the network")
        sets.append("\t# no household network known: set cluster.lan in the inventory\n")
    elements = [f"\t\t\t{_span(e.ports, '-')},  # {e.what}" for e in _pinned(inv, host)]
    body = ("\t\telements = {\n" + "\n".join(elements) + "\n\t\t}" if elements
            else "\t\t# none: no pinned homecluster port on this host's network")
    return templates.render("cluster/firewall/homecluster.nft", {
        "host": host.name, "cluster": inv.cluster.name, "table": table_name(inv),
        "plan": _plan_comment(inv, host), "lan_sets": "".join(sets).rstrip("\n"),
        "port_elements": body, "accept_rules": "\n".join(accepts)})


def _rule_comment(inv: Inventory, e: Listen) -> str:
    return f"homecluster {inv.cluster.name}: {e.what}"


def ufw(inv: Inventory, host: Host) -> list[str]:
    """ufw commands that open the plan's pinned LAN ports of a host from each household network (ufw's own
    default deny keeps everyone else out)."""
    return [f"ufw allow from {net} to any port {_span(e.ports, ':')} proto tcp comment "
            f"{shlex.quote(_rule_comment(inv, e))}"
            for e in _pinned(inv, host) for net in ports.lan_networks(inv)]


def _ufw_undo(inv: Inventory, host: Host) -> list[str]:
    return [f"ufw delete allow from {net} to any port {_span(e.ports, ':')} proto tcp"
            for e in _pinned(inv, host) for net in ports.lan_networks(inv)]


def comment_prefix(inv: Inventory) -> str:
    """How a ufw rule's comment starts when the rule is this cluster's (how apply finds its own rules)."""
    return f"homecluster {inv.cluster.name}: "


def ufw_delete(rule: str) -> str:
    """The command that deletes exactly `rule`, a rule as `ufw show added` lists it (`ufw allow ... comment
    '...'`): ufw deletes the rule that matches all of it, comment included."""
    return shlex.join(["ufw", "delete", *shlex.split(rule)[1:]])


def rich_rules(inv: Inventory, host: Host) -> list[str]:
    """firewalld rich rules (the text, unquoted) for the plan's pinned LAN ports of a host."""
    out = []
    for e in _pinned(inv, host):
        for net in ports.lan_networks(inv):
            family = f"ipv{ipaddress.ip_network(net, strict=False).version}"
            out.append(f'rule family="{family}" source address="{net}" port port="{_span(e.ports, "-")}" '
                       f'protocol="tcp" accept')
    return out


def firewalld_rule(action: str, rule: str, zone: str | None = None) -> str:
    """The firewall-cmd command that adds (action "add") or removes ("remove") a rich rule in the permanent
    configuration of `zone` (None: the default zone)."""
    where = f" --zone={shlex.quote(zone)}" if zone else ""
    return f"firewall-cmd --permanent{where} --{action}-rich-rule={shlex.quote(rule)}"


def firewalld(inv: Inventory, host: Host) -> list[str]:
    """firewall-cmd commands: each rich rule added permanently to the default zone, then a reload."""
    rules = rich_rules(inv, host)
    return [firewalld_rule("add", r) for r in rules] + (["firewall-cmd --reload"] if rules else [])


def _script(name: str, inv: Inventory, host: Host, commands: list[str], undo: list[str]) -> str:
    nothing = [": # nothing to open on this host"]
    return templates.render(f"cluster/firewall/{name}", {
        "host": host.name, "cluster": inv.cluster.name, "plan": _plan_comment(inv, host),
        "commands": "\n".join(commands or nothing),
        "undo": "\n".join(f"# {line}" for line in undo or ["nothing to undo"])})


def ufw_script(inv: Inventory, host: Host) -> str:
    return _script("ufw.sh", inv, host, ufw(inv, host), _ufw_undo(inv, host))


def firewalld_script(inv: Inventory, host: Host) -> str:
    removes = [firewalld_rule("remove", r) for r in rich_rules(inv, host)]
    return _script("firewalld.sh", inv, host, firewalld(inv, host),
                   removes + (["firewall-cmd --reload"] if removes else []))


# --- Windows ------------------------------------------------------------------------------------------------

def group(inv: Inventory) -> str:
    """The Windows firewall rule group of the cluster: how re-running and removing find its rules."""
    return f"homecluster {inv.cluster.name}"


def _new_rule(inv: Inventory, e: Listen) -> str:
    span = _span(e.ports, "-")
    remote = ", ".join(ps_literal(n) for n in ports.lan_networks(inv))
    # -LocalPort quoted: a bare 9000-9099 (and mixed lists) trips PowerShell grammars; the cmdlet takes strings
    return (f"New-NetFirewallRule -DisplayName {ps_literal(f'{group(inv)}: {e.what} {span}')} -Group $Group "
            f"-Description {ps_literal(f'dask {e.what}, for {e.who}')} -Direction Inbound -Protocol TCP "
            f"-LocalPort {ps_literal(span)} -RemoteAddress {remote} -Profile Private -Action Allow | Out-Null")


def windows(inv: Inventory, host: Host) -> str:
    """A PowerShell script that (re)makes the host's rules: inbound TCP, the plan's pinned LAN ports, from the
    household's networks, Private profile, in the cluster's group (the script first removes that group's old
    rules, so a second run changes nothing)."""
    if not ports.lan_networks(inv):
        rules = ["# no household network known (set cluster.lan in the inventory): no rule made"]
    else:
        rules = [_new_rule(inv, e) for e in _pinned(inv, host)] or ["# nothing to open on this host"]
    return templates.render("windows/firewall.ps1", {
        "host": host.name, "cluster": inv.cluster.name, "group": group(inv).replace("'", "''"),
        "plan": _plan_comment(inv, host), "rules": "\n".join(rules)})


def windows_remove(inv: Inventory, host: Host) -> str:
    """A PowerShell script that removes the rules `windows()` made (by their group)."""
    return templates.render("windows/remove-firewall.ps1", {
        "host": host.name, "cluster": inv.cluster.name, "group": group(inv).replace("'", "''")})


# --- macOS --------------------------------------------------------------------------------------------------

def macos_notes(inv: Inventory, host: Host) -> str:
    """What to do on a Mac: the application firewall allows the interpreter that runs dask (socketfilterfw
    --add/--unblockapp); it works per program and cannot restrict by port or source network."""
    return templates.render("cluster/firewall/macos-firewall.md", {
        "host": host.name, "cluster": inv.cluster.name, "lan": ", ".join(ports.lan_networks(inv)) or "unknown",
        "plan": "\n".join(f"- {item}" for item in _plan_items(inv, host)),
        "python": shell_path(interpreter(inv, host))})


# --- per host -----------------------------------------------------------------------------------------------

def render_host(inv: Inventory, host: Host) -> dict[str, str]:
    """Every file for one host, by its OS: {file name: text}."""
    if host.os == "windows":
        return {"firewall.ps1": windows(inv, host), "remove-firewall.ps1": windows_remove(inv, host)}
    if host.os == "macos":
        return {"macos-firewall.md": macos_notes(inv, host)}
    return {"homecluster.nft": nftables(inv, host), "ufw.sh": ufw_script(inv, host),
            "firewalld.sh": firewalld_script(inv, host)}


def render_all(inv: Inventory, hosts: list[Host] | None = None) -> dict[str, dict[str, str]]:
    """{host name: {file name: text}} for `hosts` (default: every host), in inventory order."""
    return {h.name: render_host(inv, h) for h in (list(inv.hosts.values()) if hosts is None else hosts)}
