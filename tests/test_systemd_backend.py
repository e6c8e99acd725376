"""The systemd backend's scripts and deploy logic, without a systemd (tests/test_systemd_host.py runs it on a
real one): the start script carries exactly the unit `service render` makes, every script is valid sh, and
up/down walk the same steps as with the process backend."""

from __future__ import annotations

import subprocess

from homecluster.backends import backend_for
from homecluster.backends.auto import AutoBackend
from homecluster.backends.process import ProcessBackend, parse_probe
from homecluster.backends.systemd import SystemdBackend
from homecluster.core.spec import build
from homecluster.inventory import parse
from homecluster.ops.down import down
from homecluster.ops.up import up
from homecluster.services import systemd as units
from homecluster.transport.replay import ReplayRunner

INV = """\
cluster: {name: home, scheduler: desktop, tls: false}
hosts:
  desktop: {address: 10.0.0.10, nworkers: 0, supervisor: systemd}
  study: {address: 10.0.0.11, supervisor: systemd, service_scope: system, user: root}
  attic: {address: 10.0.0.12}
  shed: {address: 10.0.0.13, supervisor: process}
"""


def backend(inv, name):
    return backend_for(inv, inv.hosts[name], ReplayRunner(inv.hosts[name]))


def test_supervisor_key_picks_the_backend():
    inv = parse(INV)
    assert type(backend(inv, "desktop")) is SystemdBackend and backend(inv, "desktop").systemctl == "systemctl --user"
    assert backend(inv, "study").systemctl == "systemctl"
    auto = backend(inv, "attic")
    assert type(auto) is AutoBackend and type(auto.service) is SystemdBackend
    assert type(backend(inv, "shed")) is ProcessBackend


def test_start_script_writes_the_rendered_unit_and_every_script_is_sh():
    inv = parse(INV)
    spec = build(inv)
    for proc in spec.processes:
        b = backend(inv, proc.host)
        if not isinstance(b, SystemdBackend):
            continue
        script = b.start_script(proc)
        home = {} if inv.hosts[proc.host].service_scope == "user" else {"home": "/root", "user": "root"}
        assert units.unit(proc, "home", inv.hosts[proc.host], **home).rstrip("\n") in script
        assert f"start {units.unit_name('home', proc.role)}" in script
        for text in (script, b.stop_script(proc.role), b.stop_script(proc.role, lock_for="down"), b.probe_body()):
            p = subprocess.run(["sh", "-n", "-c", text], capture_output=True, text=True)
            assert p.returncode == 0, p.stderr + text


def test_probe_output_reads_as_the_process_backends():
    out = ("hc-now 100\nhc-probe scheduler pid= alive=0 spec=\nhc-probe worker pid=4242 alive=1 spec=abc\n"
           'hc-state worker {"running": false, "restarts": 3}\nhc-probe-done\n')
    worker = parse_probe(out)["worker"]
    assert (worker.pid, worker.alive, worker.fingerprint, worker.running, worker.restarts) == (4242, True, "abc",
                                                                                              False, 3)
    assert not worker.healthy  # restarting: systemd waits RestartSec before the next start


def test_up_and_down_on_a_systemd_host_take_the_same_steps():
    inv = parse(INV)
    runners = {}

    def runner(host):
        replies = {"session": "hc-probe-done\nhc-locked\n", "start": "hc-started worker 77\n"}
        runners[host.name] = ReplayRunner(host, replies)
        return runners[host.name]
    rep = up(inv, runners=runner, wait=False)
    assert rep.hosts["study"].actions == ["start worker"] and rep.hosts["study"].pids["worker"] == 77
    assert runners["study"].kinds() == ["session", "start"]
    assert "as systemd unit homecluster-home-worker.service" in runners["study"].scripts[1]
    assert "hc-supervise" not in runners["study"].scripts[0]  # systemd supervises: no supervisor is written
    down(inv, runners=runner)
    stops = runners["study"].scripts
    assert "disable --now homecluster-home-worker.service" in stops[0]  # workers first, then the scheduler
    assert "disable --now homecluster-home-scheduler.service" in stops[1]
