"""`firewall apply` on hosts whose firewall is ufw or firewalld (issue 12): a household machine with systemd as
PID 1 (tests/systemd_host.py: its own rootfs, netns and /etc) runs the tool with its default deny, and
`homecluster firewall apply` over SSH puts exactly the plan's rules into it.

Per tool: the tool's own listing holds exactly our rules (and what was there before); a listener inside the
machine on a planned port is reached from the LAN address and not from an address outside cluster.lan (a second
address on the laptop's end of the link), nor on a port outside the plan; a second apply changes nothing; a
changed plan removes the stale rule; a user who is not root gets the fix. This machine's own firewall and /etc
are never touched (checked). The machine gets CAP_NET_ADMIN for its own network namespace (nspawn gives none
with --network-namespace-path): without it neither ufw nor firewalld can load a rule there."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from conftest import hc
from systemd_host import SystemdHost, SystemdHostUnavailable

pytestmark = pytest.mark.household

# Not "hc-...": the household's teardown kills the processes of every netns named "<its prefix, hc>-*"
NAMES = {"ufw": os.environ.get("HC_TEST_FW_UFW_NAME", "hcfw-ufw"),
         "firewalld": os.environ.get("HC_TEST_FW_FWD_NAME", "hcfw-fwd")}
SUBNETS = {"ufw": os.environ.get("HC_TEST_FW_UFW_SUBNET", "10.213.95"),
           "firewalld": os.environ.get("HC_TEST_FW_FWD_SUBNET", "10.213.96")}
PORTS = {"scheduler_port": 8898, "dashboard_port": 8899, "worker_ports": "9380:9389", "nanny_ports": "9390:9399"}
LISTEN = (9380, 9386, 9400)  # a worker port, one the narrowed plan drops, one never planned
ZONE = "home"  # firewalld: the machine's interface is put there; apply must find it (not the default, public)
LISTENER = """\
import socket, sys, threading
def serve(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(16)
    while True:
        s.accept()[0].close()
for p in sys.argv[1:]:
    threading.Thread(target=serve, args=(int(p),)).start()
"""


def _unavailable(message: str):
    if os.environ.get("CI"):
        pytest.fail(message + " (CI must run the systemd machine tests: apt-get install -y systemd-container "
                    "debootstrap)", pytrace=False)
    pytest.skip(message)


def connects(source: str, address: str, port: int) -> bool | str:
    """True when a TCP connection from `source` gets in; "refused" on a reset, "rejected" on an ICMP error (no
    route to host: firewalld's reject), False when dropped (a timeout: ufw's deny)."""
    with socket.socket() as s:
        s.settimeout(2)
        s.bind((source, 0))
        try:
            s.connect((address, port))
        except ConnectionRefusedError:
            return "refused"
        except TimeoutError:
            return False
        except OSError:
            return "rejected"
        return True


def _own_firewall() -> str:
    """A fingerprint of this machine's firewall and its ufw/firewalld configuration (must not change)."""
    digest = hashlib.sha256()
    for argv in (["nft", "list", "ruleset"], ["iptables-save"]):
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        except FileNotFoundError:
            continue
        digest.update("\n".join(ln for ln in p.stdout.splitlines() if not ln.startswith("#")).encode())
    for folder in (Path("/etc/ufw"), Path("/etc/firewalld")):
        for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
            if path.is_file():
                digest.update(str(path).encode() + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(params=["ufw", "firewalld"])
def machine(request, tmp_path):
    """A booted machine for one tool, its firewall not started yet."""
    tool = request.param
    host = SystemdHost(workdir=tmp_path / "machine", name=NAMES[tool], subnet=SUBNETS[tool], check_python=False,
                       nspawn_args=["--capability=CAP_NET_ADMIN"])
    t0 = time.monotonic()
    try:
        host.__enter__()
    except SystemdHostUnavailable as exc:
        _unavailable(str(exc))
    print(f"\n{tool} machine up in {time.monotonic() - t0:.2f} s{' (rootfs built first)' * host.built}")
    try:
        yield tool, host
    finally:
        left = host.close()
    assert left == [], f"left behind: {left}"


def _start(tool: str, h: SystemdHost) -> None:
    """The tool as a household would have it: default deny incoming, SSH allowed."""
    if tool == "ufw":
        for argv in (["ufw", "default", "deny", "incoming"], ["ufw", "allow", "22/tcp"], ["ufw", "--force", "enable"]):
            h.run(argv, check=True, timeout=60)
        assert "Status: active" in h.run(["ufw", "status"], check=True).stdout
        return
    started = h.run(["systemctl", "start", "firewalld"], timeout=90)
    state = h.run(["firewall-cmd", "--state"], timeout=30)
    if started.returncode != 0 or state.stdout.strip() != "running":
        log = h.run(["journalctl", "-u", "firewalld", "--no-pager", "-n", "15"]).stdout
        _unavailable(f"firewalld does not run in the machine: {started.stderr.strip()} {state.stderr.strip()}\n{log}")
    h.run(["firewall-cmd", "--permanent", f"--zone={ZONE}", "--change-interface=host0"], check=True, timeout=30)
    h.run(["firewall-cmd", "--reload"], check=True, timeout=60)
    assert h.run(["firewall-cmd", "--get-zone-of-interface=host0"], check=True).stdout.strip() == ZONE


def _listing(tool: str, h: SystemdHost) -> list[str]:
    """The tool's own listing of the rules it holds, sorted (ufw: as commands; firewalld: the rich rules of
    ZONE, then those of the default zone marked)."""
    if tool == "ufw":
        out = h.run(["ufw", "show", "added"], check=True).stdout
        return sorted(ln for ln in out.splitlines() if ln.startswith("ufw "))
    def rich(*args: str) -> list[str]:
        return sorted(filter(None, h.run(["firewall-cmd", *args, "--list-rich-rules"], check=True).stdout.split("\n")))
    permanent = rich("--permanent", f"--zone={ZONE}")
    assert rich(f"--zone={ZONE}") == permanent, "reloaded: the running rules are the permanent ones"
    return permanent + [f"public: {r}" for r in rich("--permanent", "--zone=public")]


def _expected(tool: str, lan: str, workers: str) -> list[str]:
    """What the listing must be: the plan's rules, plus ufw's SSH rule the household had."""
    spans = [("scheduler", "8898"), ("worker", workers), ("nanny", "9390:9399")]
    if tool == "ufw":
        return sorted(["ufw allow 22/tcp"] + [f"ufw allow from {lan} to any port {p} proto tcp comment "
                                              f"'homecluster fwt: {w}'" for w, p in spans])
    return sorted(f'rule family="ipv4" source address="{lan}" port port="{p.replace(":", "-")}" protocol="tcp" accept'
                  for _, p in spans)


def _inventory(path: Path, h: SystemdHost, lan: str, user: str = "root", **ports) -> Path:
    path.write_text(yaml.safe_dump({
        "cluster": {"name": "fwt", "scheduler": "box", "lan": lan, **PORTS, **ports},
        "hosts": {"box": {"address": h.address, "user": user, "ssh_key": str(h.client_key),
                          "known_hosts": str(h.known_hosts), "python": "/usr/bin/python3", "nworkers": 1}}}))
    return path


def _make_user(h: SystemdHost, user: str) -> None:
    """A login of `user` with the test's key (the machine's overlay: gone with it)."""
    h.run(["useradd", "-m", user], check=True)
    h.run(["sh", "-c", f"install -d -o {user} -m 700 /home/{user}/.ssh && install -o {user} -m 600 "
                       f"/root/.ssh/authorized_keys /home/{user}/.ssh/authorized_keys"], check=True)


def test_apply_puts_exactly_the_plan_into_the_hosts_firewall(machine, tmp_path):
    tool, h = machine
    lan, stranger = f"{h.subnet}.0/28", f"{h.subnet}.200"  # the laptop (.1) and the machine (.2) are in the LAN
    mine = _own_firewall()
    t0 = time.monotonic()
    _start(tool, h)
    assert _listing(tool, h) == (["ufw allow 22/tcp"] if tool == "ufw" else [])
    h.run(["systemd-run", "--unit=hc-listen", "/usr/bin/python3", "-c", LISTENER, *map(str, LISTEN)], check=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        ss = h.run(["ss", "-Hltn"]).stdout
        if all(f":{p} " in ss for p in LISTEN):
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the listener did not start: {ss}")
    assert connects(h.laptop_address, h.address, 9380) is not True, "the default deny lets the LAN in before apply"
    subprocess.run(["ip", "addr", "add", f"{stranger}/24", "dev", h.veth], check=True)
    try:
        inv = _inventory(tmp_path / "inventory.yaml", h, lan)
        p = hc("firewall", "apply", inv=inv)
        where = "ufw" if tool == "ufw" else f"firewalld zone {ZONE}"
        print(f"\n{p.stdout}")
        assert p.returncode == 0, p.stdout + p.stderr
        head, *changes = p.stdout.splitlines()
        assert head == (f"box: {where}: 3 added, 0 removed, 0 unchanged{', reloaded' * (tool == 'firewalld')}: "
                        f"TCP scheduler 8898, worker 9380:9389, nanny 9390:9399 allowed from {lan}")
        want = _expected(tool, lan, "9380:9389")
        assert _listing(tool, h) == want
        assert sorted(changes) == sorted(f"  + {r.removeprefix('ufw ')}" for r in want if r != "ufw allow 22/tcp")
        assert connects(h.laptop_address, h.address, 9380) is True
        outside = connects(stranger, h.address, 9380)
        unplanned = connects(h.laptop_address, h.address, 9400)
        print(f"port 9380 from {stranger}: {outside or 'dropped'}; port 9400 from the LAN: {unplanned or 'dropped'}")
        assert outside is not True and unplanned is not True

        again = hc("firewall", "apply", inv=inv)
        assert again.returncode == 0 and again.stdout == \
            f"box: {where}: rules already as planned (3 unchanged): nothing changed\n", again.stdout + again.stderr

        assert connects(h.laptop_address, h.address, 9386) is True
        narrowed = _inventory(tmp_path / "narrowed.yaml", h, lan, worker_ports="9380:9384")
        changed = hc("firewall", "apply", inv=narrowed)
        print(changed.stdout)
        assert changed.returncode == 0, changed.stdout + changed.stderr
        head, *changes = changed.stdout.splitlines()
        assert head.startswith(f"box: {where}: 1 added, 1 removed, 2 unchanged")
        old, want = set(want), _expected(tool, lan, "9380:9384")
        shown = (lambda rules: [r.removeprefix("ufw ") for r in rules])  # as apply prints them
        assert changes == [f"  + {r}" for r in shown(set(want) - old)] + [f"  - {r}" for r in shown(old - set(want))]
        assert _listing(tool, h) == want
        assert connects(h.laptop_address, h.address, 9380) is True
        assert connects(h.laptop_address, h.address, 9386) is not True  # the stale rule is gone
        if tool == "firewalld":
            record = h.run(["cat", "/root/.homecluster/fwt/box/firewalld.rules"], check=True).stdout.splitlines()
            assert sorted(record) == sorted(f"{ZONE} {r}" for r in want)

        _make_user(h, "alice")
        denied = hc("firewall", "apply", inv=_inventory(tmp_path / "alice.yaml", h, lan, user="alice"))
        print(denied.stdout)
        assert denied.returncode == 1
        assert denied.stdout.startswith("box: FAILED: box: listing the ") and \
            "Fix: log in as root (user: root for box), or run sudo sh " in denied.stdout
        assert _listing(tool, h) == want
    finally:
        subprocess.run(["ip", "addr", "del", f"{stranger}/24", "dev", h.veth], capture_output=True)
    print(f"{tool}: {time.monotonic() - t0:.1f} s from starting the tool")
    assert _own_firewall() == mine, "this machine's own firewall or its /etc/ufw, /etc/firewalld changed"
