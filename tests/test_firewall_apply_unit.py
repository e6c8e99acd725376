"""`firewall apply` for ufw and firewalld hosts without a host: the facts parser on output recorded on real
machines (tests/test_firewall_tools.py's: Debian 12, ufw 0.36.2, firewalld 1.3.3), the added/removed/unchanged
computation, the scripts it runs (replayed runners) and the per-host errors with their fixes."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from homecluster.errors import InventoryError
from homecluster.inventory import parse
from homecluster.ops import firewall as fw
from homecluster.ops.firewall import (Facts, apply, apply_host, compare, facts_script, firewalld_diff, parse_facts,
                                      ufw_diff, ufw_identity)
from homecluster.transport.replay import ReplayRunner
from homecluster.transport.result import CommandResult

RULE = 'rule family="ipv4" source address="10.213.97.0/28" port port="{}" protocol="tcp" accept'


def inventory(worker_ports: str = "9360:9362", box: str = "", cluster: str = "fw"):
    return parse(f"""\
cluster:
  name: {cluster}
  scheduler: box
  scheduler_port: 8896
  dashboard_port: 8897
  worker_ports: "{worker_ports}"
  nanny_ports: "9370:9379"
  lan: 10.213.97.0/28
hosts:
  box: {{address: 10.213.97.2, user: root{box}}}
  mac: {{address: 10.213.97.3, os: macos}}
""", "inv.yaml")


# --- recorded on the machines of tests/test_firewall_tools.py ---------------------------------------------------

UFW_ROOT = """\
hc-firewall uid 0
hc-firewall tool ufw
hc-firewall listed 0
hc-firewall rule - Added user rules (see 'ufw status' for running firewall):
hc-firewall rule - ufw allow 22/tcp
hc-firewall rule - ufw allow from 10.213.97.0/28 to any port 8896 proto tcp comment 'homecluster fw: scheduler'
hc-firewall rule - ufw allow from 10.213.97.0/28 to any port 9370:9379 proto tcp comment 'homecluster fw: nanny'
hc-firewall rule - ufw allow from 10.213.97.0/28 to any port 9360:9362 proto tcp comment 'homecluster fw: worker'
"""
UFW_USER = """\
hc-firewall uid 1000
hc-firewall tool ufw
hc-firewall listed 1
hc-firewall rule - ERROR: You need to be root to run this script
"""
UFW_NONE = """\
hc-firewall uid 0
hc-firewall tool ufw
hc-firewall listed 0
hc-firewall rule - Added user rules (see 'ufw status' for running firewall):
hc-firewall rule - (None)
"""
FIREWALLD_ROOT = f"""\
hc-firewall uid 0
hc-firewall tool firewalld
hc-firewall interface host0
hc-firewall zone home
hc-firewall listed 0 home
hc-firewall rule home {RULE.format(8896)}
hc-firewall rule home {RULE.format('9360-9365')}
hc-firewall rule home {RULE.format('9370-9379')}
hc-firewall runtime - {RULE.format('9360-9365')}
hc-firewall runtime - {RULE.format('9370-9379')}
hc-firewall runtime - {RULE.format(8896)}
hc-firewall recorded home {RULE.format(8896)}
hc-firewall recorded home {RULE.format('9360-9365')}
hc-firewall recorded home {RULE.format('9370-9379')}
"""
FIREWALLD_USER = """\
hc-firewall uid 1000
hc-firewall tool firewalld
hc-firewall interface host0
hc-firewall zone home
hc-firewall listed 253 home
hc-firewall rule home Authorization failed.
hc-firewall rule home     Make sure polkit agent is running or run the application as superuser.
"""
NFTABLES = "hc-firewall uid 0\nhc-firewall tool nftables\n"


# --- the facts: script and parser ----------------------------------------------------------------------------

def test_the_facts_script_is_sh_and_takes_a_forced_tool():
    for box in ("", ", firewall: ufw", ", firewall: firewalld", ", firewall: nftables"):
        inv = inventory(box=box)
        script = facts_script(inv, inv.hosts["box"])
        p = subprocess.run(["sh", "-n", "-c", script], capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        assert script.startswith("# homecluster facts: the firewall of box (cluster fw)")
        assert f"\ntool={box.rpartition(' ')[2]}\n" in script and "mkdir -p \"$HOME\"/.homecluster/fw/box" in script


def _stubs(folder: Path, scripts: dict[str, str]) -> dict[str, str]:
    """Executables `name` running `body` under sh, first on PATH: the environment to run a script with."""
    folder.mkdir(exist_ok=True)
    for name, body in scripts.items():
        (folder / name).write_text(f"#!/bin/sh\n{body}\n")
        (folder / name).chmod(0o755)
    return {"HOME": str(folder.parent), "PATH": f"{folder}:/usr/bin:/bin"}


@pytest.mark.parametrize("firewalld, ufw, tool", [("running", "active", "firewalld"), ("not running", "active", "ufw"),
                                                  ("not running", "inactive", "nftables")])
def test_the_facts_script_detects_in_order(tmp_path, firewalld, ufw, tool):
    """The script under sh with stub tools: firewalld before ufw before nftables; firewalld's zone is that of
    the interface holding the address we came in on ($SSH_CONNECTION), its rules listed per zone."""
    env = _stubs(tmp_path / "bin", {
        "firewall-cmd": f'case "$*" in --state) echo "{firewalld}";; --get-zone-of-interface=eth1) echo home;; '
                        f'*--list-rich-rules*) echo {shlex.quote(RULE.format(8896))};; *) exit 2;; esac',
        "ufw": f'case "$*" in status) echo "Status: {ufw}";; "show added") echo "Added user rules (see ...):"; '
               "echo 'ufw allow 22/tcp';; esac",
        "systemctl": "exit 3", "id": "echo 0",
        "ip": "echo '2: eth0    inet 192.168.1.4/24 brd 192.168.1.255 scope global eth0'; "
              "echo '3: eth1    inet 10.213.97.2/24 brd 10.213.97.255 scope global eth1'"})
    inv = inventory()
    env["SSH_CONNECTION"] = "10.213.97.1 50000 10.213.97.2 22"
    p = subprocess.run(["sh", "-c", facts_script(inv, inv.hosts["box"])], env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    facts = parse_facts(p.stdout)
    assert facts.tool == tool and (tmp_path / ".homecluster/fw/box").is_dir()
    if tool == "firewalld":
        assert (facts.zone, facts.interface, facts.listing("home")) == ("home", "eth1", [RULE.format(8896)])
        assert facts.runtime == (RULE.format(8896),) and facts.refused() is None
    if tool == "ufw":
        assert facts.listing() == ["Added user rules (see ...):", "ufw allow 22/tcp"] and facts.refused() is None


def test_parse_detection_of_each_tool():
    assert parse_facts(NFTABLES) == Facts(tool="nftables", uid=0)
    assert parse_facts("") == Facts(tool="nftables")  # printed nothing (a replay): as before detection
    assert parse_facts("hc-firewall tool iptables\n").tool == "nftables"
    ufw = parse_facts(UFW_ROOT)
    assert (ufw.tool, ufw.uid, ufw.zone, ufw.listed, ufw.refused()) == ("ufw", 0, "", (("-", 0),), None)
    assert ufw.listing()[1] == "ufw allow 22/tcp" and len(ufw.present()) == 5
    fwd = parse_facts(FIREWALLD_ROOT)
    assert (fwd.tool, fwd.zone, fwd.interface, fwd.refused()) == ("firewalld", "home", "host0", None)
    assert fwd.listing("home") == [RULE.format(p) for p in (8896, "9360-9365", "9370-9379")]
    assert len(fwd.runtime) == 3 and fwd.recorded[0] == ("home", RULE.format(8896))


def test_parse_refusals_carry_the_tools_words():
    assert parse_facts(UFW_USER).refused() == "ERROR: You need to be root to run this script"
    assert parse_facts(FIREWALLD_USER).refused() == ("Authorization failed. | Make sure polkit agent is running or "
                                                     "run the application as superuser.")
    assert parse_facts("hc-firewall tool ufw\n").refused() == "it printed no rule listing"
    gone = parse_facts(FIREWALLD_ROOT + "hc-firewall listed 112 old\nhc-firewall rule old Error: INVALID_ZONE: old\n")
    assert gone.refused() is None and ("old", "Error: INVALID_ZONE: old") not in gone.present()


# --- what to change ----------------------------------------------------------------------------------------------

def test_ufw_identity_is_how_ufw_compares():
    ours = "ufw allow from 10.213.97.5/32 to any port 8896 proto tcp comment 'homecluster fw: scheduler'"
    listed = "ufw allow from 10.213.97.5 to any port 8896 proto tcp comment 'homecluster fw: scheduler'"
    assert ufw_identity(ours) == ufw_identity(listed)
    assert ufw_identity(listed)[1] == "homecluster fw: scheduler"
    assert ufw_identity("ufw allow 22/tcp") == (("ufw", "allow", "22/tcp"), "")
    for other in ("Added user rules (see 'ufw status' for running firewall):", "(None)", "ufw route allow 80",
                  "ufw allow 'unbalanced", ""):
        assert ufw_identity(other) is None


def test_compare_adds_removes_only_ours_and_keeps():
    d = compare({1: "a", 2: "b"}, {2: "b", 3: "c", 4: "d"}, ours=lambda k: k == 3)
    assert (d.add, d.remove, d.keep, d.changed) == (("a",), ("c",), ("b",), True)
    assert compare({1: "a"}, {1: "a", 5: "e"}, ours=lambda k: True).remove == ("e",)
    assert not compare({1: "a"}, {1: "a"}, ours=lambda k: True).changed


def test_ufw_diff_against_the_recorded_listing():
    facts = parse_facts(UFW_ROOT)
    inv = inventory()
    same = ufw_diff(inv, inv.hosts["box"], facts)
    assert (same.add, same.remove, len(same.keep)) == ((), (), 3)
    wider = inventory("9360:9369")
    d = ufw_diff(wider, wider.hosts["box"], facts)
    assert d.add == ("ufw allow from 10.213.97.0/28 to any port 9360:9369 proto tcp comment 'homecluster fw: worker'",)
    assert d.remove == ("ufw allow from 10.213.97.0/28 to any port 9360:9362 proto tcp comment "
                        "'homecluster fw: worker'",)
    other = inventory(cluster="fw2")  # another cluster's rules (and ufw allow 22/tcp) are never removed
    d = ufw_diff(other, other.hosts["box"], facts)
    assert len(d.add) == 3 and d.remove == ()


def test_firewalld_diff_finds_ours_by_the_record_in_every_zone():
    facts = parse_facts(FIREWALLD_ROOT)
    inv = inventory("9360:9365")
    same = firewalld_diff(inv, inv.hosts["box"], facts)
    assert (same.add, same.remove, len(same.keep)) == ((), (), 3)
    narrow = inventory("9360:9362")
    d = firewalld_diff(narrow, narrow.hosts["box"], facts)
    assert d.add == (("home", RULE.format("9360-9362")),) and d.remove == (("home", RULE.format("9360-9365")),)
    moved = parse_facts(FIREWALLD_ROOT.replace("zone home\n", "zone work\n").replace("listed 0 home",
                                                                                     "listed 0 work\nhc-firewall "
                                                                                     "listed 0 home"))
    d = firewalld_diff(inv, inv.hosts["box"], moved)  # the interface moved to zone work: ours leave home
    assert len(d.add) == 3 and {z for z, _ in d.add} == {"work"} and {z for z, _ in d.remove} == {"home"}
    unrecorded = parse_facts("\n".join(ln for ln in FIREWALLD_ROOT.splitlines() if "recorded" not in ln))
    d = firewalld_diff(narrow, narrow.hosts["box"], unrecorded)
    assert d.remove == ()  # the same rule made by hand is not ours: kept


# --- apply on one host, replayed --------------------------------------------------------------------------------

def _apply(inv, replies: dict):
    runner = ReplayRunner(inv.hosts["box"], replies)
    return apply_host(inv, runner, inv.hosts["box"]), runner


def test_ufw_changes_only_what_differs_and_says_so():
    applied, runner = _apply(inventory("9360:9369"), {"facts": UFW_ROOT, "ufw": "Rule deleted\nRule added\n"
                                                                                "hc-firewall done\n"})
    assert runner.kinds() == ["facts", "ufw"]
    script = runner.scripts[1].splitlines()
    assert script[2:] == ["set -e",
                          "ufw delete allow from 10.213.97.0/28 to any port 9360:9362 proto tcp comment "
                          "'homecluster fw: worker'",
                          "ufw allow from 10.213.97.0/28 to any port 9360:9369 proto tcp comment "
                          "'homecluster fw: worker'",
                          'echo "hc-firewall done"']
    assert applied.describe() == (
        "box: ufw: 1 added, 1 removed, 2 unchanged: TCP scheduler 8896, worker 9360:9369, nanny 9370:9379 allowed "
        "from 10.213.97.0/28\n"
        "  + allow from 10.213.97.0/28 to any port 9360:9369 proto tcp comment 'homecluster fw: worker'\n"
        "  - allow from 10.213.97.0/28 to any port 9360:9362 proto tcp comment 'homecluster fw: worker'")
    assert subprocess.run(["sh", "-n", "-c", runner.scripts[1]]).returncode == 0


def test_ufw_second_apply_runs_nothing_but_the_facts():
    applied, runner = _apply(inventory(), {"facts": UFW_ROOT})
    assert runner.kinds() == ["facts"]
    assert applied.describe() == "box: ufw: rules already as planned (3 unchanged): nothing changed"
    first, _ = _apply(inventory(), {"facts": UFW_NONE, "ufw": "hc-firewall done\n"})
    assert first.describe().startswith("box: ufw: 3 added, 0 removed, 0 unchanged: ")


def test_firewalld_removes_adds_reloads_and_records():
    inv = inventory()
    applied, runner = _apply(inv, {"facts": FIREWALLD_ROOT, "firewalld": "success\nsuccess\nhc-firewall done\n"})
    assert runner.kinds() == ["facts", "firewalld"]
    script = runner.scripts[1]
    assert script.startswith("# homecluster firewalld: the rich rules of box in zone home\n")
    assert [ln for ln in script.splitlines() if ln.startswith("firewall-cmd")] == [
        f"firewall-cmd --permanent --zone=home --remove-rich-rule='{RULE.format('9360-9365')}'",
        f"firewall-cmd --permanent --zone=home --add-rich-rule='{RULE.format('9360-9362')}'",
        "firewall-cmd --reload"]
    first, changes, last = script.partition("firewall-cmd --permanent")[0], script, script.rpartition("--reload")[2]
    record = '> "$HOME"/.homecluster/fw/box/firewalld.rules'
    assert first.count(record) == 1 and RULE.format("9360-9365") in first and RULE.format("9360-9362") in first
    assert last.count(record) == 1 and RULE.format("9360-9365") not in last  # the old rule and the new, then the plan
    assert f"'home {RULE.format(8896)}\nhome " in last and changes.endswith('echo "hc-firewall done"')
    assert subprocess.run(["sh", "-n", "-c", script]).returncode == 0
    assert applied.describe() == (
        "box: firewalld zone home: 1 added, 1 removed, 2 unchanged, reloaded: TCP scheduler 8896, worker "
        "9360:9362, nanny 9370:9379 allowed from 10.213.97.0/28\n"
        f"  + {RULE.format('9360-9362')}\n  - {RULE.format('9360-9365')}")


def test_the_firewalld_script_runs_and_writes_the_record_the_facts_read(tmp_path):
    """The script under sh with a stub firewall-cmd (logs its arguments): the commands get their rules whole,
    and the record it leaves is what the facts script gives back as `recorded`."""
    inv = inventory()
    _, runner = _apply(inv, {"facts": FIREWALLD_ROOT, "firewalld": "hc-firewall done\n"})
    (tmp_path / "bin").mkdir()
    stub = tmp_path / "bin" / "firewall-cmd"
    stub.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s|" "$a"; done >> "$HOME/log"; echo >> "$HOME/log"\n')
    stub.chmod(0o755)
    (tmp_path / ".homecluster/fw/box").mkdir(parents=True)
    env = {"HOME": str(tmp_path), "PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin"}
    p = subprocess.run(["sh", "-c", runner.scripts[1]], env=env, capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout == "hc-firewall done\n", p.stderr
    assert (tmp_path / "log").read_text().splitlines() == [
        f"--permanent|--zone=home|--remove-rich-rule={RULE.format('9360-9365')}|",
        f"--permanent|--zone=home|--add-rich-rule={RULE.format('9360-9362')}|", "--reload|"]
    record = (tmp_path / ".homecluster/fw/box/firewalld.rules").read_text()
    facts = parse_facts("".join(f"hc-firewall recorded {line}\n" for line in record.splitlines()))
    assert facts.recorded == tuple(("home", RULE.format(p)) for p in (8896, "9360-9362", "9370-9379"))


def test_firewalld_unchanged_reloads_only_when_the_running_rules_are_behind():
    applied, runner = _apply(inventory("9360:9365"), {"facts": FIREWALLD_ROOT})
    assert runner.kinds() == ["facts"]
    assert applied.describe() == "box: firewalld zone home: rules already as planned (3 unchanged): nothing changed"
    behind = "\n".join(ln for ln in FIREWALLD_ROOT.splitlines() if "runtime - " + RULE.format(8896) not in ln)
    applied, runner = _apply(inventory("9360:9365"), {"facts": behind, "firewalld": "success\nhc-firewall done\n"})
    assert applied.change == "reloaded" and "firewall-cmd --reload" in runner.scripts[1]
    assert "-rich-rule" not in runner.scripts[1]
    assert applied.describe().endswith("(the running rules were behind the permanent ones)")


def test_firewalld_rules_made_by_hand_are_adopted_into_the_record_without_a_change():
    unrecorded = "\n".join(ln for ln in FIREWALLD_ROOT.splitlines() if "recorded" not in ln)
    applied, runner = _apply(inventory("9360:9365"), {"facts": unrecorded, "firewalld": "hc-firewall done\n"})
    assert applied.change == "unchanged" and runner.kinds() == ["facts", "firewalld"]
    assert "firewall-cmd" not in runner.scripts[1] and "firewalld.rules" in runner.scripts[1]


def test_a_nftables_host_is_loaded_as_before():
    applied, runner = _apply(inventory(), {"facts": NFTABLES, "firewall": "hc-firewall unchanged\n"})
    assert runner.kinds() == ["facts", "", "firewall"] and runner.scripts[1].startswith("# copy ")
    assert applied.describe() == "box: table inet homecluster_fw already as planned: nothing changed"


# --- per-host errors --------------------------------------------------------------------------------------------

FIX_ROOT = "Fix: log in as root (user: root for box), or run sudo sh {}.sh there (homecluster firewall render box " \
           "--out DIR)"


@pytest.mark.parametrize("facts, tool, what", [
    (UFW_USER, "ufw", "listing the ufw rules (ufw show added) failed: ERROR: You need to be root to run this script"),
    (FIREWALLD_USER, "firewalld", "listing the firewalld rich rules failed: Authorization failed. | Make sure polkit "
                                  "agent is running or run the application as superuser"),
])
def test_not_root_is_refused_with_the_fix(facts, tool, what):
    with pytest.raises(fw.HostError) as info:
        _apply(inventory(), {"facts": facts})
    assert str(info.value) == f"box: {what}. {FIX_ROOT.format(tool)}"


def test_a_failed_change_names_the_tools_words_and_the_fix():
    denied = CommandResult(1, "", "Authorization failed.\n")
    with pytest.raises(fw.HostError, match=r"changing the firewalld rules \(exit 1\) failed: Authorization failed\. "
                                           r"Fix: log in as root"):
        _apply(inventory(), {"facts": FIREWALLD_ROOT, "firewalld": denied})
    broken = CommandResult(0, "Rule added\n", "")  # no `done`: the script stopped early
    with pytest.raises(fw.HostError, match="changing the ufw rules .* Fix: see the error above"):
        _apply(inventory("9360:9369"), {"facts": UFW_ROOT, "ufw": broken})
    missing = "hc-firewall tool ufw\nhc-firewall listed 127\nhc-firewall rule - sh: 1: ufw: not found\n"
    with pytest.raises(fw.HostError, match="Fix: install ufw on box, or set firewall: auto for box in the inventory"):
        _apply(inventory(box=", firewall: ufw"), {"facts": missing})
    with pytest.raises(fw.HostError, match="box: cannot tell its firewall or create ~/.homecluster/fw/box "
                                           r"\(exit 1\): mkdir: cannot create directory"):
        _apply(inventory(), {"facts": CommandResult(1, "", "mkdir: cannot create directory\n")})


def test_every_host_gets_its_result():
    inv = inventory()

    def runner(host):
        return ReplayRunner(host, {"facts": UFW_USER})
    results = apply(inv, list(inv.hosts.values()), runners=runner)
    assert not results["box"].ok and "You need to be root" in results["box"].error
    assert not results["mac"].ok and "homecluster firewall render mac --out DIR" in results["mac"].error


def test_the_cli_prints_each_hosts_lines(monkeypatch, capsys):
    import argparse

    from homecluster.cli.firewall import cmd_firewall

    inv = inventory("9360:9369")
    real = fw.apply
    monkeypatch.setattr(fw, "apply", lambda inv, hosts: real(inv, hosts, runners=lambda h: ReplayRunner(
        h, {"facts": UFW_ROOT, "ufw": "hc-firewall done\n"})))
    code = cmd_firewall(inv, argparse.Namespace(action="apply", hosts=["box", "mac"], out=None))
    out = capsys.readouterr().out.splitlines()
    assert code == 1
    assert out[0].startswith("box: ufw: 1 added, 1 removed, 2 unchanged: ") and out[1].startswith("  + allow from")
    assert out[2].startswith("  - allow from") and out[3].startswith("mac: FAILED: mac: firewall apply changes")


def test_the_inventory_key_firewall():
    assert inventory(box=", firewall: firewalld").hosts["box"].firewall == "firewalld"
    assert inventory().hosts["box"].firewall == "auto"
    with pytest.raises(InventoryError) as info:
        inventory(box=", firewall: iptables")
    assert str(info.value) == ("inv.yaml:10: hosts.box.firewall: 'iptables' is not one of auto, nftables, ufw, "
                               "firewalld. Fix: use one of: auto, nftables, ufw, firewalld")
