"""Unit tests of the pure core: spec building, shell rendering, probe parsing and the up plan."""

from __future__ import annotations

import subprocess
from pathlib import Path

from homecluster.backends import process as commands
from homecluster.backends.process import ProcessState, parse_probe, parse_started
from homecluster.shell.posix import shell_path
from homecluster.inventory import parse
from homecluster.core.plan import KEEP, RESTART, START, STOP, plan_up
from homecluster.core.spec import SCHEDULER, WORKER, build

INV = """\
cluster: {name: home, scheduler: desktop}
defaults: {python: /usr/bin/python3, nthreads: 1}
hosts:
  desktop: {address: 10.0.0.10, nworkers: 0}
  study: {address: 10.0.0.11, nworkers: 2}
  attic: {address: 10.0.0.12}
"""


def spec_of(text: str = INV):
    return build(parse(text))


def test_spec_names_workers_as_dask_does():
    spec = spec_of()
    assert spec.expected_workers == ("study-0", "study-1", "attic")
    assert spec.scheduler_address == "tls://10.0.0.10:8786"
    assert spec.dashboard_url == "http://127.0.0.1:8787/status" and spec.dashboard_private
    assert [p.host for p in spec.workers] == ["study", "attic"]


def test_worker_argv_has_explicit_addresses_and_no_random_dashboard_port():
    argv = spec_of().workers[0].argv
    assert argv[argv.index("--host") + 1] == "10.0.0.11"
    assert "--no-dashboard" in argv
    assert argv[3] == "tls://10.0.0.10:8786"


def test_fingerprint_changes_only_with_what_the_process_runs():
    a, b = spec_of(), spec_of(INV.replace("nworkers: 2", "nworkers: 3"))
    assert a.scheduler.fingerprint == b.scheduler.fingerprint
    assert a.workers[0].fingerprint != b.workers[0].fingerprint
    assert a.workers[1].fingerprint == b.workers[1].fingerprint


def test_dashboard_off():
    spec = spec_of(INV.replace("scheduler: desktop}", "scheduler: desktop, dashboard_port: null}"))
    assert spec.dashboard_url is None and "--no-dashboard" in spec.scheduler.argv


def test_shell_path_keeps_home_expandable():
    assert shell_path("~/.homecluster/x y") == "\"$HOME\"/'.homecluster/x y'"
    assert shell_path("/opt/a b") == "'/opt/a b'"
    out = subprocess.run(["sh", "-c", f"echo {shell_path('~/a b')}"], capture_output=True, text=True,
                         env={"HOME": "/home/u"}).stdout
    assert out.strip() == "/home/u/a b"


RECORDED_PROBE = """\
Welcome to Debian!
hc-now 1796159000
hc-probe scheduler pid= alive=0 spec=
hc-probe worker pid=4242 alive=1 spec=0123abcd0123abcd
hc-state worker {"supervisor_pid": 4242, "name": "worker", "child_pid": null, "running": false, \
"started_at": 1796158990.5, "restarts": 3, "last_exit": 1, "last_exit_at": 1796158995.0, \
"next_start_at": 1796159004.0, "stopping": false, "killed": false}
hc-probe-done
"""


def test_parse_probe_on_recorded_output():
    states = parse_probe(RECORDED_PROBE)
    assert states[SCHEDULER] == ProcessState(SCHEDULER, None, False, "")
    w = states[WORKER]
    assert (w.pid, w.alive, w.fingerprint, w.running, w.restarts, w.last_exit) == \
        (4242, True, "0123abcd0123abcd", False, 3, 1)
    assert not w.healthy
    assert w.describe() == "restarts 3, last exit code 1 5 s ago, next start in 4 s"
    assert parse_started("noise\nhc-started worker 99\n") == 99


def test_a_probe_cut_short_is_not_read_as_nothing_running():
    assert parse_probe(RECORDED_PROBE.replace("hc-probe-done\n", "")) is None


def test_probe_script_runs_on_an_empty_run_dir(tmp_path):
    out = subprocess.run(["sh", "-c", commands.probe_script(str(tmp_path / "none"), "home", "study")], capture_output=True,
                         text=True).stdout
    assert set(parse_probe(out)) == {SCHEDULER, WORKER}
    assert not any(s.alive for s in parse_probe(out).values())


def test_start_script_reports_missing_interpreter(tmp_path):
    spec = spec_of(INV.replace("/usr/bin/python3", str(tmp_path / "nope")).replace("10.0.0.10",
                                                                                  "10.0.0.10, run_directory: "
                                                                                  + str(tmp_path)))
    p = subprocess.run(["sh", "-c", commands.start_script(spec.scheduler, "home")], capture_output=True, text=True)
    assert p.returncode == 127 and "no Python interpreter at" in p.stderr


def states(sched=None, **workers):
    """Probe results: sched/workers given as (alive, fingerprint)."""
    def st(role, v):
        return ProcessState(role, 1 if v else None, bool(v and v[0]), v[1] if v else "")
    hosts = {"desktop": {SCHEDULER: st(SCHEDULER, sched), WORKER: st(WORKER, None)}}
    for h in ("study", "attic"):
        hosts[h] = {SCHEDULER: st(SCHEDULER, None), WORKER: st(WORKER, workers.get(h))}
    return hosts


def actions(steps):
    return {(s.host, s.role): s.action for s in steps}


def test_plan_fresh_cluster_starts_everything():
    assert actions(plan_up(spec_of(), states())) == {
        ("desktop", SCHEDULER): START, ("study", WORKER): START, ("attic", WORKER): START}


def test_plan_running_cluster_keeps_everything():
    spec = spec_of()
    fp = {p.host: p.fingerprint for p in spec.workers}
    steps = plan_up(spec, states((True, spec.scheduler.fingerprint), study=(True, fp["study"]),
                                 attic=(True, fp["attic"])))
    assert set(actions(steps).values()) == {KEEP}


def test_plan_restarts_only_the_changed_worker():
    old, new = spec_of(), spec_of(INV.replace("nworkers: 2", "nworkers: 3"))
    fp = {p.host: p.fingerprint for p in old.workers}
    steps = plan_up(new, states((True, old.scheduler.fingerprint), study=(True, fp["study"]),
                                attic=(True, fp["attic"])))
    assert actions(steps) == {("desktop", SCHEDULER): KEEP, ("study", WORKER): RESTART, ("attic", WORKER): KEEP}


def test_plan_scheduler_change_restarts_all_workers():
    spec = spec_of()
    fp = {p.host: p.fingerprint for p in spec.workers}
    steps = plan_up(spec, states((True, "stale"), study=(True, fp["study"]), attic=(True, fp["attic"])))
    assert actions(steps) == {("desktop", SCHEDULER): RESTART, ("study", WORKER): RESTART,
                              ("attic", WORKER): RESTART}


def test_plan_stops_workers_on_a_host_that_has_none_now():
    spec = spec_of(INV.replace("attic: {address: 10.0.0.12}", "attic: {address: 10.0.0.12, nworkers: 0}"))
    steps = plan_up(spec, states((True, spec.scheduler.fingerprint), attic=(True, "old")))
    assert actions(steps)[("attic", WORKER)] == STOP


def test_plan_skips_unreachable_hosts():
    s = states()
    del s["attic"]
    assert ("attic", WORKER) not in actions(plan_up(spec_of(), s))


def test_summarize_log_puts_the_cause_first():
    recorded = (Path(__file__).parent / "golden" / "scheduler-bind-failure.log").read_text()
    assert commands.summarize_log(recorded) == ("OSError: [Errno 98] Address already in use ... "
                                                "RuntimeError: Scheduler failed to start.")
    assert commands.summarize_log("a\nb\nc\nd\n") == "b | c | d"
    assert commands.summarize_log("ModuleNotFoundError: No module named 'distributed'\n") == \
        "ModuleNotFoundError: No module named 'distributed'"


def test_a_damaged_state_file_does_not_break_the_probe():
    damaged = RECORDED_PROBE.replace('"restarts": 3', '"restarts": "many"').replace('"last_exit": 1', '"last_exit": [1]')
    w = parse_probe(damaged.replace('"last_exit_at": 1796158995.0', '"last_exit_at": 1e400'))[WORKER]
    assert (w.restarts, w.last_exit, w.last_exit_ago) == (0, None, None) and w.describe() == ""
    assert parse_probe(RECORDED_PROBE.replace("hc-state worker {", "hc-state worker [1, {"))[WORKER].alive


class FakeCerts:
    """Certificates as the spec sees them: paths and a digest per name, changeable."""

    def __init__(self, digests: dict[str, str]):
        self.digests = digests

    def cert(self, name):
        return Path(f"/cfg/{name}.pem")

    def key(self, name):
        return Path(f"/cfg/{name}.key")

    def digest(self, name):
        return self.digests.get(name)


def test_tls_by_default_each_role_gets_only_its_own_files():
    certs = FakeCerts({"scheduler": "s1", "worker-study": "w1", "worker-attic": "a1"})
    spec = build(parse(INV), certs=certs)
    assert spec.tls and spec.scheduler_address.startswith("tls://")
    for proc in spec.processes:
        tls = f"{proc.run_dir}/tls"
        args = proc.argv[proc.argv.index("--tls-ca-file"):]
        assert args == ("--tls-ca-file", f"{tls}/ca.pem", "--tls-cert", f"{tls}/{proc.role}.pem",
                        "--tls-key", f"{tls}/{proc.role}.key")
        name = "scheduler" if proc.role == "scheduler" else f"worker-{proc.host}"
        assert proc.files == (("/cfg/ca.pem", f"{tls}/ca.pem"), (f"/cfg/{name}.pem", f"{tls}/{proc.role}.pem"),
                              (f"/cfg/{name}.key", f"{tls}/{proc.role}.key"))


def test_a_new_certificate_restarts_exactly_the_role_that_uses_it():
    before = build(parse(INV), certs=FakeCerts({"scheduler": "s1", "worker-study": "w1", "worker-attic": "a1"}))
    after = build(parse(INV), certs=FakeCerts({"scheduler": "s1", "worker-study": "w2", "worker-attic": "a1"}))
    changed = [p.host for p, q in zip(before.processes, after.processes) if p.fingerprint != q.fingerprint]
    assert changed == ["study"]


def test_tls_false_runs_plain_tcp_with_no_certificate_files():
    spec = build(parse(INV.replace("scheduler: desktop}", "scheduler: desktop, tls: false}")),
                 certs=FakeCerts({"scheduler": "s1"}))
    assert spec.scheduler_address == "tcp://10.0.0.10:8786" and not spec.tls
    assert all("--tls-cert" not in p.argv and p.files == () and "HOMECLUSTER_TLS" not in dict(p.env)
               for p in spec.processes)


def test_dashboard_lan_listens_on_the_scheduler_address():
    spec = build(parse(INV.replace("scheduler: desktop}", "scheduler: desktop, dashboard: lan}")))
    argv = spec.scheduler.argv
    assert argv[argv.index("--dashboard-address") + 1] == "10.0.0.10:8787" and not spec.dashboard_private
    private = build(parse(INV)).scheduler.argv
    assert private[private.index("--dashboard-address") + 1] == "127.0.0.1:8787"
