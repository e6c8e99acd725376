"""Self-check of the simulated household test bed (tests/household.py)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from household import Household, can_build  # noqa: E402

_OK, _REASON = can_build()
pytestmark = [pytest.mark.household, pytest.mark.skipif(not _OK, reason=_REASON)]

PREFIX = "hct"  # not the project's main fixture prefix "hc"
SUBNET = "10.213.58"  # not the main fixture's subnet either, so both can run at once


def _ssh_hostname(hh: Household, address: str) -> subprocess.CompletedProcess:
    """`ssh root@address hostname` with strict host key checking against hh.known_hosts."""
    return subprocess.run(
        ["ssh", "-i", str(hh.client_key), "-o", f"UserKnownHostsFile={hh.known_hosts}",
         "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
         "-F", "/dev/null", f"root@{address}", "hostname"],
        capture_output=True, text=True, timeout=30,
    )


def _port_refuses(address: str) -> bool:
    """True when a TCP connect to address:22 is actively refused."""
    try:
        socket.create_connection((address, 22), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def _our_namespaces() -> list[str]:
    """Named network namespaces that belong to this test's prefix."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(f"{PREFIX}-")]


def test_household(tmp_path: Path) -> None:
    """Build three hosts, log in to each, ping between them, bounce an sshd, tear down."""
    hh = Household(names=("desktop", "study", "attic"), workdir=tmp_path, prefix=PREFIX, subnet=SUBNET)
    with hh:
        assert [h.address for h in hh.hosts] == [f"{SUBNET}.11", f"{SUBNET}.12", f"{SUBNET}.13"]
        assert hh.laptop_address == f"{SUBNET}.1"
        assert hh.client_key.stat().st_mode & 0o777 == 0o600

        for host in hh.hosts:
            result = _ssh_hostname(hh, host.address)
            assert result.returncode == 0, result.stderr
            assert result.stdout.strip() == host.name
            assert hh.run(host.name, ["hostname"]).stdout.strip() == host.name

        desktop, study = hh.host("desktop"), hh.host("study")
        if subprocess.run(["which", "ping"], capture_output=True).returncode == 0:
            ping = hh.run("desktop", ["ping", "-c1", "-W2", study.address])
            assert ping.returncode == 0, ping.stdout + ping.stderr
        probe = hh.run("desktop", [sys.executable, "-c",
                                   f"import socket; socket.create_connection(('{study.address}', 22), 2)"])
        assert probe.returncode == 0, probe.stderr

        assert any("sshd" in cmd for _, cmd in hh.processes("study"))
        hh.stop_sshd("study")
        assert _port_refuses(study.address)
        hh.start_sshd("study")
        assert _ssh_hostname(hh, study.address).stdout.strip() == "study"

        hh.cut_link("desktop")
        assert not _port_open(desktop.address)
        hh.restore_link("desktop")
        assert _ssh_hostname(hh, desktop.address).stdout.strip() == "desktop"

    assert _our_namespaces() == []
    hh.close()  # idempotent
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert f"{PREFIX}-lap" not in links
    assert "/run/homecluster/hct/" not in Path("/proc/self/mountinfo").read_text()


def _port_open(address: str) -> bool:
    """True when a TCP connect to address:22 succeeds within a second."""
    try:
        socket.create_connection((address, 22), timeout=1).close()
    except OSError:
        return False
    return True
