"""supervisor: auto, the launchd backend and `service install|uninstall|status` against recorded output (no Mac,
no systemd here: tests/test_systemd_host.py runs systemd for real). The launchd probe runs for real in sh, with a
stub launchctl that prints what `launchctl print` prints."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from homecluster.backends import backend_for
from homecluster.backends.auto import AutoBackend
from homecluster.backends.launchd import LaunchdBackend
from homecluster.backends.nssm import NssmBackend
from homecluster.backends.systemd import SystemdBackend
from homecluster.core.spec import build
from homecluster.errors import HostError, InventoryError
from homecluster.inventory import parse
from homecluster.ops import service
from homecluster.ops.up import up
from homecluster.transport.replay import ReplayRunner

INV = """\
cluster: {name: home, scheduler: desktop, tls: false}
hosts:
  desktop: {address: 10.0.0.10}
  mac: {address: 10.0.0.11, os: macos}
  imac: {address: 10.0.0.12, os: macos, supervisor: launchd}
  tower: {address: 10.0.0.13, os: windows}
  shed: {address: 10.0.0.14, supervisor: process}
"""
SYSTEMD_PROBE = ("hc-manager systemd\nhc-home /home/ann\nhc-now 100\nhc-probe scheduler pid=41 alive=1 spec=s1\n"
                 "hc-boot scheduler enabled\nhc-probe worker pid=42 alive=1 spec=w1\nhc-boot worker disabled\n"
                 "hc-linger no\nhc-probe-done\n")
FALLBACK_PROBE = "hc-manager process PID 1 is not systemd\nhc-now 100\nhc-probe-done\n"


def backend(inv, name, replies=None):
    return backend_for(inv, inv.hosts[name], ReplayRunner(inv.hosts[name], replies))


def test_each_host_gets_the_backend_of_its_os_and_supervisor_key():
    inv = parse(INV)
    assert type(backend(inv, "desktop")) is AutoBackend and type(backend(inv, "desktop").service) is SystemdBackend
    assert type(backend(inv, "mac")) is AutoBackend and type(backend(inv, "mac").service) is LaunchdBackend
    assert type(backend(inv, "imac")) is LaunchdBackend
    assert type(backend(inv, "tower")) is NssmBackend


def test_windows_hosts_refuse_the_process_supervisor():
    with pytest.raises(InventoryError, match=r"hosts.tower.supervisor: homecluster's own supervisor needs a POSIX "
                                             r"shell.*Fix: use supervisor: nssm or auto"):
        parse(INV.replace("os: windows}", "os: windows, supervisor: process}"))


def test_auto_reads_what_the_host_chose_and_its_boot_state():
    inv = parse(INV)
    b = backend(inv, "desktop", {"probe": SYSTEMD_PROBE})
    states = b.probe()
    sup = b.supervision
    assert (sup.manager, sup.home, sup.boot, sup.linger) == ("systemd", "/home/ann",
                                                             {"scheduler": "enabled", "worker": "disabled"}, False)
    assert states["worker"].pid == 42 and b.service.home == "/home/ann"
    assert not sup.starts_at_boot("scheduler")  # enabled, but lingering is off: only at the next login
    b = backend(inv, "desktop", {"probe": FALLBACK_PROBE})
    b.probe()
    assert (b.supervision.manager, b.supervision.why) == ("process", "PID 1 is not systemd")


def test_auto_scripts_choose_on_the_host_and_are_sh():
    inv = parse(INV)
    spec = build(inv)
    for name in ("desktop", "mac"):
        b = backend(inv, name)
        proc = spec.for_host(name)[-1]
        start = b.start_script(proc)
        assert start.startswith("# homecluster start:") and start.count("# homecluster start:") == 3
        assert b.service.start_script(proc) in start and "hc-supervise.py" in start
        stop = b.stop_script("worker", lock_for="down")
        assert b.service.stop_script("worker") in stop and "flock" in stop
        for text in (start, stop, b.probe_body()):
            p = subprocess.run(["sh", "-n", "-c", text], capture_output=True, text=True)
            assert p.returncode == 0, p.stderr


def test_explicit_service_manager_that_cannot_run_fails_the_host_with_why():
    inv = parse(INV)
    b = backend(inv, "imac", {"probe": "hc-manager process no launchctl here\nhc-probe-done\n"})
    with pytest.raises(HostError, match=r"imac: supervisor: launchd, but no launchctl here. Fix: set supervisor: auto"):
        b.probe()


LAUNCHCTL = r"""#!/bin/sh
# what launchctl prints for a loaded job (macOS 14), for org.homecluster.home.worker only
echo "$@" >> "$HC_CALLS"
case "$1 $2" in
  "print gui/"*"/org.homecluster.home.worker") cat <<'EOF'
gui/501/org.homecluster.home.worker = {
	active count = 1
	path = /Users/ann/Library/LaunchAgents/org.homecluster.home.worker.plist
	state = running
	program = /usr/bin/python3
	runs = 3
	pid = 4242
	last exit code = 0
}
EOF
  ;;
  "print gui/"*) [ "$2" = "gui/$(id -u)" ] && exit 0; exit 113;;
  *) exit 113;;
esac
"""


def test_launchd_probe_reads_launchctl_print(tmp_path):
    inv = parse(INV)
    b = backend(inv, "imac")
    (tmp_path / "bin").mkdir()
    stub = tmp_path / "bin/launchctl"
    stub.write_text(LAUNCHCTL)
    stub.chmod(0o755)
    home = tmp_path / "home"
    (home / "Library/LaunchAgents").mkdir(parents=True)
    (home / "Library/LaunchAgents/org.homecluster.home.worker.plist").write_text("<plist/>")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "worker.spec").write_text("abc\n")
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}", "HOME": str(home),
           "HC_CALLS": str(tmp_path / "calls")}
    script = f"D={run_dir}\n" + b.probe_body()
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=env, check=True).stdout
    states = b._states(out, 0, "")
    assert b.supervision.manager == "launchd" and b.supervision.home == str(home)
    w, s = states["worker"], states["scheduler"]
    assert (w.pid, w.alive, w.fingerprint, w.running, w.restarts) == (4242, True, "abc", True, 2)
    assert not s.alive and s.pid is None
    assert b.supervision.boot == {"scheduler": "absent", "worker": "enabled"}


def test_launchd_start_writes_the_plist_with_the_hosts_home():
    inv = parse(INV)
    b = backend(inv, "imac", {"probe": "hc-manager launchd\nhc-home /Users/Ann Lee\nhc-probe-done\n"})
    b.probe()
    proc = build(inv).for_host("imac")[-1]
    start = b.start_script(proc)
    assert "<string>/Users/Ann Lee/.homecluster/home/imac</string>" in start
    assert 'launchctl bootstrap "gui/$(id -u)"' in start and "hc-swept worker" in start


def test_service_install_fails_a_host_where_no_service_manager_can_run_and_goes_on_elsewhere():
    inv = parse("cluster: {name: home, scheduler: desktop, tls: false}\nhosts:\n  desktop: {address: 10.0.0.10}\n"
                "  attic: {address: 10.0.0.15}\n")
    runners = {}

    def runner(host):
        probe = FALLBACK_PROBE if host.name == "attic" else SYSTEMD_PROBE.replace("alive=1", "alive=0")
        runners[host.name] = ReplayRunner(host, {"session": probe + "hc-locked\n", "start": "hc-started x 7\n"})
        return runners[host.name]
    rep = up(inv, runners=runner, wait=False, services=frozenset(inv.hosts))
    assert rep.hosts["attic"].error.startswith("attic: nothing would start the cluster at boot here: PID 1 is not "
                                               "systemd. Fix:")
    assert runners["attic"].kinds() == ["session"]  # nothing done there
    assert rep.hosts["desktop"].actions == ["start scheduler", "start worker"]


def test_service_install_refuses_a_process_host_before_anything_runs():
    inv = parse(INV)
    with pytest.raises(InventoryError, match=r"hosts.shed.supervisor: is process.*Fix: remove supervisor: from shed"):
        service.check_installable(inv, [inv.hosts["shed"]])


def test_service_status_lines():
    inv = parse(INV)
    on = SYSTEMD_PROBE.replace("disabled", "enabled").replace("hc-linger no", "hc-linger yes")
    res = service.status(inv, [inv.hosts["desktop"]], runners=lambda h: ReplayRunner(h, {"probe": on}))
    st = res["desktop"].value
    assert st.ok and st.lines("home") == ["desktop: systemd user services",
                                          "  scheduler: starts at boot, running (pid 41)",
                                          "  worker: starts at boot, running (pid 42)"]
    res = service.status(inv, [inv.hosts["desktop"]], runners=lambda h: ReplayRunner(h, {"probe": SYSTEMD_PROBE}))
    lines = res["desktop"].value.lines("home")
    assert not res["desktop"].value.ok and "lingering is off" in lines[0]
    assert lines[2] == "  worker: disabled, running (pid 42)"


def test_service_install_of_a_process_host_is_one_line_and_exit_2(tmp_path):
    inv = tmp_path / "inventory.yaml"
    inv.write_text("cluster: {name: solo}\nhosts:\n  shed: {connection: local, address: 127.0.0.1, supervisor: process}\n")
    p = subprocess.run([sys.executable, "-m", "homecluster", "service", "install", "shed", "-i", str(inv)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "hosts.shed.supervisor: is process" in p.stderr and "Traceback" not in p.stderr
