"""Firewall rules rendered from the port plan: golden files for the sample household, each file checked by the
tool that would load it (nft -c, ufw --dry-run, firewalld's rich-rule parser, the PowerShell grammar, sh -n),
and what opens (or not) for a given inventory. No host is touched."""

from __future__ import annotations

import argparse
import ipaddress
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from homecluster.cli.firewall import cmd_firewall
from homecluster.errors import InventoryError
from homecluster.firewall import firewalld, nftables, render_all, render_host, ufw, warnings, windows
from homecluster.inventory import load, parse
from validators import powershell_errors

GOLDEN = Path(__file__).parent / "golden"
SAMPLE = GOLDEN / "sample-inventory.yaml"
FILES = {"linux": {"homecluster.nft", "ufw.sh", "firewalld.sh"}, "macos": {"macos-firewall.md"},
         "windows": {"firewall.ps1", "remove-firewall.ps1"}}


def inventory(cluster: str = "", hosts: str | None = None):
    """A small household: the scheduler on desktop, workers on laptop (Linux) and gaming-pc (Windows)."""
    hosts = hosts or ("  desktop: {address: 192.168.1.10, nworkers: 0}\n"
                      "  laptop: {address: 192.168.1.11}\n"
                      "  gaming-pc: {address: 192.168.1.12, os: windows}\n")
    return parse(f"cluster:\n  name: home\n  scheduler: desktop\n{cluster}hosts:\n{hosts}", "inv.yaml")


PINNED = '  worker_ports: "9000:9099"\n  nanny_ports: "9100:9199"\n'


def variants():
    """Inventories that exercise every branch of the renderers (for the syntax checks)."""
    return {
        "sample": load(SAMPLE),
        "two-nets-v6-lan-dashboard": inventory(PINNED + "  dashboard: lan\n  lan: [192.168.1.0/24, fd00:1::/64]\n"),
        "unpinned": inventory(),
        "no-network": inventory(PINNED, "  desktop: {address: desktop.lan}\n  pc: {address: pc.lan, os: windows}\n"),
        "single-port-ranges": inventory('  worker_ports: "9000:9000"\n  nanny_ports: "9100:9100"\n'),
    }


def need(tool_ok: bool, reason: str) -> None:
    """Skip without the validator, except in CI (tests/run installs it), where its absence is a failure."""
    if not tool_ok:
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI must have it: see tests/run)")
        pytest.skip(reason)


# --- golden files -------------------------------------------------------------------------------------------

def test_sample_matches_golden():
    inv = load(SAMPLE)
    rendered = render_all(inv)
    assert {h: set(files) for h, files in rendered.items()} == {h.name: FILES[h.os] for h in inv.hosts.values()}
    root = GOLDEN / "firewall"
    for host, files in rendered.items():
        for name, text in files.items():
            golden = root / host / name
            if os.environ.get("UPDATE_GOLDEN"):
                golden.parent.mkdir(parents=True, exist_ok=True)
                golden.write_text(text)
            assert text == golden.read_text(), f"{host}/{name} differs from its golden file"
    on_disk = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    assert on_disk == {f"{h}/{n}" for h, files in rendered.items() for n in files}, "stale golden files"
    assert warnings(inv) == []


def test_sample_opens_exactly_the_plan():
    inv = load(SAMPLE)
    assert "elements = {\n\t\t\t8786,  # scheduler\n\t\t}" in nftables(inv, inv.hosts["desktop"])
    assert ufw(inv, inv.hosts["laptop"]) == [
        "ufw allow from 192.168.1.0/24 to any port 9000:9099 proto tcp comment 'homecluster home: worker'",
        "ufw allow from 192.168.1.0/24 to any port 9100:9199 proto tcp comment 'homecluster home: nanny'"]
    assert firewalld(inv, inv.hosts["laptop"])[-1] == "firewall-cmd --reload"
    ps = windows(inv, inv.hosts["gaming-pc"])
    assert "-LocalPort '9000-9099' -RemoteAddress '192.168.1.0/24' -Profile Private -Action Allow" in ps
    assert "8786" not in ps and "8787," not in nftables(inv, inv.hosts["desktop"])  # the dashboard is private


# --- each file through the tool that would load it ----------------------------------------------------------

def _linux_files(suffix: str):
    for label, inv in variants().items():
        for h in inv.hosts.values():
            for name, text in render_host(inv, h).items():
                if name.endswith(suffix):
                    yield f"{label}/{h.name}/{name}", text


def test_nftables_rulesets_pass_nft_check(tmp_path):
    nft = shutil.which("nft") or shutil.which("nft", path="/usr/sbin:/sbin")
    need(nft is not None, "nft is not installed (apt-get install nftables)")
    unshare = ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-rn"]
    probe = subprocess.run([*unshare, "true"], capture_output=True, text=True)
    need(probe.returncode == 0, f"cannot make a network namespace here: {probe.stderr.strip()}")
    checked = 0
    for where, text in _linux_files(".nft"):
        path = tmp_path / "ruleset.nft"
        path.write_text(text)
        p = subprocess.run([*unshare, nft, "-c", "-f", str(path)], capture_output=True, text=True, timeout=30)
        assert p.returncode == 0 and not p.stderr, f"{where}: {p.stderr}\n{text}"
        checked += 1
    assert checked >= 8


def test_nft_check_catches_a_broken_ruleset(tmp_path):
    """The validator itself: a misspelt keyword is refused (so a passing check means something)."""
    nft = shutil.which("nft") or shutil.which("nft", path="/usr/sbin:/sbin")
    need(nft is not None, "nft is not installed (apt-get install nftables)")
    unshare = ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-rn"]
    path = tmp_path / "bad.nft"
    inv = load(SAMPLE)
    path.write_text(nftables(inv, inv.hosts["laptop"]).replace("reject with tcp reset", "reject with tcp rst"))
    p = subprocess.run([*unshare, nft, "-c", "-f", str(path)], capture_output=True, text=True, timeout=30)
    need(p.returncode != 0 or "Operation not permitted" not in p.stderr, "unshare refused")
    assert p.returncode != 0


def test_shell_scripts_parse():
    for suffix in (".sh",):
        for where, text in _linux_files(suffix):
            p = subprocess.run(["sh", "-n", "-c", text], capture_output=True, text=True)
            assert p.returncode == 0, f"{where}: {p.stderr}"


def _ufw_commands():
    for label, inv in variants().items():
        for h in inv.hosts.values():
            if h.os == "linux":
                yield from ((f"{label}/{h.name}", c) for c in ufw(inv, h))


def test_ufw_commands_are_well_formed():
    """Without ufw: each command splits into the grammar `ufw allow from NET to any port P proto tcp comment C`."""
    seen = 0
    for where, command in _ufw_commands():
        words = shlex.split(command)
        assert words[:3] == ["ufw", "allow", "from"] and words[4:7] == ["to", "any", "port"], where
        assert words[8:11] == ["proto", "tcp", "comment"] and len(words) == 12, where
        assert words[11].startswith("homecluster home: "), where
        ipaddress.ip_network(words[3])
        assert all(part.isdigit() for part in words[7].split(":")) and words[7].count(":") <= 1, where
        seen += 1
    assert seen >= 6


def test_ufw_dry_run_accepts_every_command():
    ufw_bin = shutil.which("ufw") or shutil.which("ufw", path="/usr/sbin:/sbin")
    need(ufw_bin is not None and os.geteuid() == 0, "ufw --dry-run needs ufw (apt-get install ufw) and root")
    for where, command in _ufw_commands():
        words = shlex.split(command)
        p = subprocess.run([ufw_bin, "--dry-run", *words[1:]], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0 and "ERROR" not in p.stderr + p.stdout, f"{where}: {command}\n{p.stderr}"


def test_firewalld_rich_rules_pass_firewalld_parser():
    """firewalld's own parser (python3-firewall, in Debian's system Python) checks every rich rule."""
    rules = [shlex.split(c)[2].split("=", 1)[1] for label, inv in variants().items() for h in inv.hosts.values()
             if h.os == "linux" for c in firewalld(inv, h) if "--add-rich-rule" in c]
    assert len(rules) >= 6
    check = ("import sys\nfrom firewall.core.rich import Rich_Rule\n"
             "for line in sys.stdin.read().splitlines():\n    Rich_Rule(rule_str=line).check()\n")
    probe = subprocess.run(["/usr/bin/python3", "-c", "import firewall.core.rich"], capture_output=True)
    need(probe.returncode == 0, "firewalld's Python package is missing (apt-get install python3-firewall)")
    p = subprocess.run(["/usr/bin/python3", "-c", check], input="\n".join(rules), capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    ufw_style = 'rule family="ipv4" source address="192.168.1.0/24" port port="9000:9099" protocol="tcp" accept'
    bad = subprocess.run(["/usr/bin/python3", "-c", check], input=ufw_style, capture_output=True, text=True)
    assert bad.returncode != 0  # the parser refuses ufw's range syntax: it does check


def test_powershell_files_parse():
    checked = 0
    for label, inv in variants().items():
        for h in inv.hosts.values():
            for name, text in render_host(inv, h).items():
                if name.endswith(".ps1"):
                    assert powershell_errors(text) == [], f"{label}/{h.name}/{name}"
                    assert text.isascii(), f"{label}/{h.name}/{name}: Windows PowerShell 5.1 reads BOM-less files " \
                                           "as ANSI: keep them ASCII"
                    checked += 1
    assert checked >= 6


def test_powershell_grammar_catches_the_known_trap():
    """The validator itself: an unquoted mixed list is an error node (why the renderer quotes -LocalPort)."""
    assert powershell_errors("New-NetFirewallRule -LocalPort 9000-9099,9100-9199 -Action Allow\n")


# --- what opens, and to whom --------------------------------------------------------------------------------

def test_lan_defaults_to_the_hosts_networks():
    inv = inventory(PINNED, "  desktop: {address: 192.168.1.10}\n  nas: {address: 10.0.7.20}\n"
                            "  me: {connection: local}\n")
    nft = nftables(inv, inv.hosts["nas"])
    assert "elements = { 192.168.1.0/24, 10.0.7.0/24 }" in nft
    assert [c.split()[3] for c in ufw(inv, inv.hosts["nas"])] == ["192.168.1.0/24", "10.0.7.0/24"] * 2
    assert warnings(inv) == []


def test_explicit_lan_is_used_and_hosts_outside_it_are_named():
    inv = inventory(PINNED + "  lan: [192.168.0.0/16, fd00:1::/64]\n")
    nft = nftables(inv, inv.hosts["laptop"])
    assert "elements = { 192.168.0.0/16 }" in nft and "elements = { fd00:1::/64 }" in nft
    assert "tcp dport @ports ip6 saddr @lan6 accept" in nft
    assert 'rule family="ipv6" source address="fd00:1::/64" port port="9000-9099"' in \
        " ".join(firewalld(inv, inv.hosts["laptop"]))
    assert "-RemoteAddress '192.168.0.0/16', 'fd00:1::/64'" in windows(inv, inv.hosts["gaming-pc"])
    narrow = inventory(PINNED + "  lan: 192.168.1.0/28\n",
                       "  desktop: {address: 192.168.1.10}\n  attic: {address: 192.168.1.40}\n")
    (w,) = warnings(narrow)
    assert w.startswith("attic's address 192.168.1.40 is outside cluster.lan (192.168.1.0/28)") and "inv.yaml" in w


def test_unpinned_ports_render_with_warnings_naming_the_keys():
    inv = inventory()
    ws = warnings(inv)
    assert len(ws) == 2 and ws[0].startswith("cluster.worker_ports is not set: the worker ports of laptop, "
                                             "gaming-pc") and 'worker_ports: "9000:9099"' in ws[0]
    assert ws[1].startswith("cluster.nanny_ports is not set")
    assert warnings(inv, [inv.hosts["desktop"]]) == []  # the scheduler's host has no workers
    laptop = render_host(inv, inv.hosts["laptop"])
    assert "worker: NOT OPENED, its ports are chosen by the OS at start. Fix: set cluster.worker_ports" in \
        laptop["homecluster.nft"]
    assert "# none: no pinned homecluster port" in laptop["homecluster.nft"]
    assert ": # nothing to open on this host" in laptop["ufw.sh"] and ufw(inv, inv.hosts["laptop"]) == []
    assert "New-NetFirewallRule" not in windows(inv, inv.hosts["gaming-pc"]).split("$Group = ")[1]


def test_no_known_network_opens_nothing_and_says_so():
    inv = variants()["no-network"]
    (w,) = warnings(inv)
    assert w.startswith("no household network is known") and "lan: 192.168.1.0/24" in w
    assert "set lan4" not in nftables(inv, inv.hosts["desktop"]) and ufw(inv, inv.hosts["desktop"]) == []
    assert "no household network known" in windows(inv, inv.hosts["pc"])


def test_private_dashboard_gets_no_rule_a_lan_dashboard_gets_one():
    private, lan = inventory(PINNED), inventory(PINNED + "  dashboard: lan\n")
    desktop = private.hosts["desktop"]
    assert "8787" not in " ".join(ufw(private, desktop) + firewalld(private, desktop))
    assert "8787,  # dashboard" not in nftables(private, desktop)
    assert "not opened: dashboard on 127.0.0.1 (port 8787)" in nftables(private, desktop)
    assert "8787,  # dashboard" in nftables(lan, desktop)
    assert "ufw allow from 192.168.1.0/24 to any port 8787 proto tcp comment 'homecluster home: dashboard'" in \
        ufw(lan, desktop)
    assert any('port port="8787"' in c for c in firewalld(lan, desktop))


def test_a_windows_scheduler_opens_its_port_and_single_port_ranges_stay_single():
    inv = parse(f"cluster:\n  scheduler: pc\n{PINNED}hosts:\n  pc: {{address: 192.168.1.12, os: windows}}\n")
    assert "-LocalPort '8786'" in windows(inv, inv.hosts["pc"])
    one = variants()["single-port-ranges"]
    assert "port 9000 proto tcp" in ufw(one, one.hosts["laptop"])[0]
    assert "-LocalPort '9000'" in windows(one, one.hosts["gaming-pc"])


def test_loopback_hosts_open_nothing():
    inv = parse("hosts:\n  me: {connection: local, nworkers: 2}\n", "inv.yaml")
    me = inv.hosts["me"]
    assert ufw(inv, me) == [] and warnings(inv) == []
    assert "nothing of homecluster listens on this host's network" in nftables(inv, me)


# --- the command ---------------------------------------------------------------------------

def _args(**kw) -> argparse.Namespace:
    return argparse.Namespace(**{"action": "render", "hosts": [], "out": None, **kw})


def test_cli_render_writes_one_folder_per_host(tmp_path, capsys):
    inv = load(SAMPLE)
    assert cmd_firewall(inv, _args(hosts=["laptop", "gaming-pc"], out=str(tmp_path))) == 0
    out = capsys.readouterr()
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == \
        ["gaming-pc/firewall.ps1", "gaming-pc/remove-firewall.ps1", "laptop/firewalld.sh", "laptop/homecluster.nft",
         "laptop/ufw.sh"]
    assert f"wrote {tmp_path / 'laptop' / 'ufw.sh'}" in out.out.splitlines() and out.err == ""
    assert os.access(tmp_path / "laptop" / "ufw.sh", os.X_OK)
    golden = GOLDEN / "firewall" / "laptop" / "homecluster.nft"
    assert (tmp_path / "laptop" / "homecluster.nft").read_text() == golden.read_text()


def test_cli_render_prints_and_warns(capsys):
    assert cmd_firewall(inventory(), _args(hosts=["laptop"])) == 0
    out = capsys.readouterr()
    assert out.out.startswith("# === laptop/homecluster.nft\n") and "# === laptop/ufw.sh\n" in out.out
    assert [line.split(":")[0] for line in out.err.splitlines()] == ["warning", "warning"]
    assert "cluster.worker_ports is not set" in out.err


def test_cli_unknown_hosts_are_refused():
    with pytest.raises(InventoryError):
        cmd_firewall(load(SAMPLE), _args(hosts=["toaster"]))


def test_apply_loads_linux_rules_and_names_the_way_for_other_hosts():
    """The deploy logic of apply against replay runners: a Linux host gets the ruleset copied and loaded, and
    says what changed; a Mac and a Windows PC are refused with the files to run there."""
    from homecluster.ops.firewall import apply
    from homecluster.transport.replay import ReplayRunner

    inv = load(SAMPLE)
    runners = {}

    def runner(host):
        runners[host.name] = ReplayRunner(host, {"firewall": "hc-firewall added\n"})
        return runners[host.name]
    hosts = [inv.hosts[n] for n in ("laptop", "mac-mini", "gaming-pc")]
    results = apply(inv, hosts, runners=runner)
    laptop = results["laptop"].value
    assert laptop.change == "added" and laptop.table == "inet homecluster_home"
    assert laptop.describe() == ("laptop: added table inet homecluster_home: TCP worker 9000:9099, nanny 9100:9199 "
                                 "accepted from 192.168.1.0/24, refused from anywhere else")
    scripts = runners["laptop"].scripts
    assert scripts[1].startswith("# copy ") and scripts[1].endswith("to ~/.homecluster/home/laptop/homecluster.nft")
    assert scripts[2].startswith("# homecluster firewall: load") and "nft -f" in scripts[2]
    for name in ("mac-mini", "gaming-pc"):
        assert not results[name].ok and f"homecluster firewall render {name} --out DIR" in results[name].error


def test_cli_parser_takes_hosts_and_out():
    from homecluster.cli.firewall import add_parser

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-i", "--inventory", default=argparse.SUPPRESS)
    p = argparse.ArgumentParser()
    add_parser(p.add_subparsers(dest="command"), common)
    args = p.parse_args(["firewall", "render", "laptop", "gaming-pc", "--out", "fw", "-i", "inv.yaml"])
    assert (args.action, args.hosts, args.out, args.inventory, args.func) == \
        ("render", ["laptop", "gaming-pc"], "fw", "inv.yaml", cmd_firewall)
