"""`firewall apply` on a simulated Linux host with nftables (issue 12): the ruleset is loaded in that host's
namespace, the cluster still works from the laptop, and a connection to a worker port from an address outside
the LAN range is refused. Ports 8892-8893, 9320-9339."""

from __future__ import annotations

import socket
import subprocess

import pytest

from conftest import hc, household_inventory
from homecluster import connect

pytestmark = pytest.mark.household


def connects(source: str, address: str, port: int) -> bool | str:
    """True when a TCP connection from `source` gets in; "refused" on a reset; False on a timeout."""
    with socket.socket() as s:
        s.settimeout(3)
        s.bind((source, 0))
        try:
            s.connect((address, port))
        except ConnectionRefusedError:
            return "refused"
        except OSError:
            return False
        return True


@pytest.mark.skipif(subprocess.run(["which", "nft"], capture_output=True).returncode != 0,
                    reason="no nft (apt-get install nftables)")
def test_apply_loads_the_rules_and_keeps_strangers_out(household, tmp_path, cleanup):
    lan = f"{household.subnet}.0/28"  # the hosts (.11-.13) and the laptop (.1); .200 is on the wire but outside
    stranger = f"{household.subnet}.200"
    inv = household_inventory(household, tmp_path / "inventory.yaml", "fw", workers={"study": 1},
                              cluster_extra={"scheduler_port": 8892, "dashboard_port": 8893, "lan": lan,
                                             "worker_ports": "9320:9329", "nanny_ports": "9330:9339"})
    cleanup(inv)
    assert hc("up", inv=inv).returncode == 0
    with connect(str(inv)) as client:
        (worker,) = client.scheduler_info()["workers"]
    study, port = household.host("study").address, int(worker.rsplit(":", 1)[1])
    assert 9320 <= port <= 9329
    subprocess.run(["ip", "addr", "add", f"{stranger}/24", "dev", household.laptop_if], check=True)
    try:
        assert connects(stranger, study, port) is True  # without the rules the stranger gets in
        p = hc("firewall", "apply", "study", inv=inv)
        assert p.returncode == 0, p.stdout + p.stderr
        assert f"study: added table inet homecluster_fw: TCP worker 9320:9329, nanny 9330:9339 accepted from {lan}" \
            in p.stdout
        listed = household.run("study", ["nft", "list", "table", "inet", "homecluster_fw"], timeout=30)
        assert listed.returncode == 0 and "9320-9329" in listed.stdout
        assert connects(stranger, study, port) == "refused"
        assert connects(household.laptop_address, study, port) is True
        with connect(str(inv)) as client:  # the cluster still works from the laptop
            assert client.submit(sum, [1, 2, 3]).result() == 6
        again = hc("firewall", "apply", "study", inv=inv)
        assert again.returncode == 0 and "study: table inet homecluster_fw already as planned" in again.stdout
        windows = hc("firewall", "apply", "desktop", "study", inv=inv)
        assert windows.returncode == 0  # both are Linux here; per-host lines for each
        assert windows.stdout.count("homecluster_fw") == 2
    finally:
        subprocess.run(["ip", "addr", "del", f"{stranger}/24", "dev", household.laptop_if])
        household.run("study", ["nft", "delete", "table", "inet", "homecluster_fw"])
        household.run("desktop", ["nft", "delete", "table", "inet", "homecluster_fw"])
