"""The port plan (core/ports.py) and the inventory keys it reads: pure, no hosts."""

from __future__ import annotations

import pytest

from homecluster.core import ports
from homecluster.errors import InventoryError
from homecluster.inventory import PortRange, parse

INV = """\
cluster: {name: home, scheduler: desktop, worker_ports: "9000:9009", nanny_ports: "9100:9109"}
hosts:
  desktop: {address: 192.168.1.10, nworkers: 0}
  study: {address: 192.168.1.11, nworkers: 2}
  nas: {address: 10.0.7.5}
"""


def by_what(inv, host):
    return {e.what: e for e in ports.plan(inv)[host]}


def test_scheduler_host_listens_on_its_address_and_a_private_dashboard_on_loopback():
    desk = by_what(parse(INV), "desktop")
    assert set(desk) == {"scheduler", "dashboard"}
    assert (desk["scheduler"].address, desk["scheduler"].ports, desk["scheduler"].lan) == ("192.168.1.10", 8786, True)
    assert (desk["dashboard"].address, desk["dashboard"].lan) == ("127.0.0.1", False)
    lan = by_what(parse(INV.replace("scheduler: desktop,", "scheduler: desktop, dashboard: lan,")), "desktop")
    assert (lan["dashboard"].address, lan["dashboard"].lan) == ("192.168.1.10", True)


def test_worker_hosts_have_pinned_ranges_and_a_loopback_http_server():
    study = by_what(parse(INV), "study")
    assert study["worker"].ports == PortRange(9000, 9009) and study["nanny"].ports == PortRange(9100, 9109)
    assert study["worker"].contains(9009) and not study["worker"].contains(9010)
    assert (study["worker http"].address, study["worker http"].ports, study["worker http"].lan) == \
        ("127.0.0.1", ports.ANY, False)
    assert ports.unpinned(parse(INV)) == []


def test_without_ranges_the_plan_says_what_to_pin():
    inv = parse(INV.replace(', worker_ports: "9000:9009", nanny_ports: "9100:9109"', ""))
    assert ports.unpinned(inv) == ["cluster.nanny_ports", "cluster.worker_ports"]


def test_lan_defaults_to_the_24s_of_the_hosts_and_can_be_set():
    assert ports.lan_networks(parse(INV)) == ("192.168.1.0/24", "10.0.7.0/24")
    inv = parse(INV.replace("scheduler: desktop,", "scheduler: desktop, lan: [192.168.0.0/16, 10.0.7.0/24],"))
    assert ports.lan_networks(inv) == ("192.168.0.0/16", "10.0.7.0/24")
    assert ports.lan_networks(parse("hosts:\n  me: {connection: local}\n")) == ()


def test_a_loopback_cluster_is_reached_from_nowhere_else():
    inv = parse("hosts:\n  me: {connection: local, nworkers: 2}\n")
    assert not any(e.lan for e in ports.plan(inv)["me"]) and ports.unpinned(inv) == []


@pytest.mark.parametrize("text, where, message", [
    ("cluster: {lan: 192.168.1.300/24}\nhosts:\n  a: {address: 10.0.0.1}\n", "cluster.lan", "is not a network"),
    ("hosts:\n  a: {address: 10.0.0.1, supervisor: launchd}\n", "hosts.a.supervisor", "launchd runs on macos"),
    ("hosts:\n  a: {address: 10.0.0.1, os: windows, supervisor: systemd}\n", "hosts.a.supervisor",
     "use supervisor: nssm"),
    ("hosts:\n  a: {address: 10.0.0.1, supervisor: upstart}\n", "hosts.a.supervisor", "is not one of"),
])
def test_bad_keys_are_located(text, where, message):
    with pytest.raises(InventoryError) as e:
        parse(text)
    assert where in str(e.value) and message in str(e.value)
