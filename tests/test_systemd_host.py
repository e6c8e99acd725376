"""Self-check of the systemd test machine (tests/systemd_host.py): a household host with a real systemd as PID 1,
reached over SSH from the root namespace (the laptop) with strict host key checking; Restart=always brings back
a unit after `kill -9` of its main process from outside, for root's user manager and for the system; the test's
own Python (and dask) runs inside; a failed boot leaves nothing behind."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import paramiko
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from systemd_host import SystemdHost, SystemdHostError, SystemdHostUnavailable, can_boot, rootfs  # noqa: E402

pytestmark = pytest.mark.household

# Not the household's 10.213.57/58 nor the prototype's 10.213.90; two test runs at once need other names and
# subnets (a machine's leftovers are cleared by name when the next one of that name boots).
NAME = os.environ.get("HC_TEST_SYSD_NAME", "hc-sysd")
SUBNET = os.environ.get("HC_TEST_SYSD_SUBNET", "10.213.91")
FAIL_NAME = NAME[:10] + "-f"  # the machines that are made to fail
FAIL_SUBNET = os.environ.get("HC_TEST_SYSD_FAIL_SUBNET", "10.213.92")
SLEEPER = "import time; time.sleep(1000)"


def _unavailable(message: str):
    if os.environ.get("CI"):
        pytest.fail(message + " (CI must run the systemd machine tests: apt-get install -y systemd-container "
                    "debootstrap)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def sysd_client_key(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sysd-keys") / "id_ed25519"  # SystemdHost makes it


@pytest.fixture(scope="session")
def sysd_shared(tmp_path_factory) -> Path:
    """A directory bound read-write into the machine at the same path."""
    return tmp_path_factory.mktemp("sysd-shared")


@pytest.fixture(scope="session")
def systemd_host(tmp_path_factory, sysd_client_key, sysd_shared):
    """One machine for the session; its teardown must leave nothing behind."""
    host = SystemdHost(workdir=tmp_path_factory.mktemp("sysd-machine"), name=NAME, subnet=SUBNET,
                       client_key=sysd_client_key, binds=[sysd_shared])
    t0 = time.monotonic()
    try:
        host.__enter__()
    except SystemdHostUnavailable as exc:
        _unavailable(str(exc))
    print(f"\nsystemd machine {NAME} up in {time.monotonic() - t0:.2f} s{' (rootfs built first)' * host.built}: "
          + ", ".join(f"{k}={v:.2f}" for k, v in host.timings.items()))
    try:
        yield host
    finally:
        t1 = time.monotonic()
        left = host.close()
        print(f"\nsystemd machine {NAME} torn down in {time.monotonic() - t1:.2f} s")
    assert left == [], f"left behind: {left}"


def _connect(host: SystemdHost, key: Path, known_hosts: Path | None = None) -> paramiko.SSHClient:
    """paramiko as root with strict host key checking (only the keys in known_hosts, unknown ones rejected)."""
    client = paramiko.SSHClient()
    client.load_host_keys(str(known_hosts or host.known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(host.address, username="root", key_filename=str(key), look_for_keys=False, allow_agent=False,
                   timeout=10, banner_timeout=10, auth_timeout=10)
    return client


def _exec(client: paramiko.SSHClient, command: str, stdin: str | None = None) -> tuple[int, str, str]:
    chan_in, chan_out, chan_err = client.exec_command(command, timeout=60)
    if stdin is not None:
        chan_in.write(stdin)
        chan_in.channel.shutdown_write()
    out, err = chan_out.read().decode(), chan_err.read().decode()
    return chan_out.channel.recv_exit_status(), out, err


@pytest.fixture
def ssh(systemd_host, sysd_client_key):
    client = _connect(systemd_host, sysd_client_key)
    yield client
    client.close()


def test_ssh_with_strict_host_key_checking(systemd_host, sysd_client_key, ssh, tmp_path):
    """paramiko logs in as root; PID 1 is systemd; the system and root's user manager (linger) are running."""
    rc, out, err = _exec(ssh, "hostname; cat /proc/1/comm; systemctl is-system-running; "
                              "systemctl --user is-system-running; loginctl show-user root -p Linger --value")
    assert rc == 0, err
    assert out.split() == [NAME, "systemd", "running", "running", "yes"]

    wrong = tmp_path / "known_hosts_wrong"  # the right address with another key: refused
    other = paramiko.Ed25519Key.from_private_key_file(str(sysd_client_key))
    wrong.write_text(f"{systemd_host.address} ssh-ed25519 {other.get_base64()}\n")
    with pytest.raises(paramiko.BadHostKeyException):
        _connect(systemd_host, sysd_client_key, known_hosts=wrong)
    empty = tmp_path / "known_hosts_empty"  # unknown host: refused, not added
    empty.write_text("")
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        _connect(systemd_host, sysd_client_key, known_hosts=empty)


def _main_pid(host: SystemdHost, systemctl: list[str], unit: str) -> int:
    return int(host.run([*systemctl, "show", "-p", "MainPID", "--value", unit], check=True).stdout.strip() or 0)


@pytest.mark.parametrize("manager", ["user", "system"])
def test_kill_9_from_outside_is_undone_by_restart_always(systemd_host, ssh, manager):
    """A unit written over SSH (python -c 'time.sleep', Restart=always, RestartSec=1) gets a new MainPID within
    10 s after `kill -9` of its main process's root-namespace pid."""
    unit = f"hc-sleeper-{manager}.service"
    unit_dir = "~/.config/systemd/user" if manager == "user" else "/etc/systemd/system"
    sc = "systemctl --user" if manager == "user" else "systemctl"
    systemctl = sc.split()
    text = ("[Unit]\nDescription=homecluster test sleeper\n[Service]\n"
            f"ExecStart={sys.executable} -c {shlex.quote(SLEEPER)}\nRestart=always\nRestartSec=1\n"
            "[Install]\nWantedBy=default.target\n")
    rc, _, err = _exec(ssh, f"mkdir -p {unit_dir} && cat > {unit_dir}/{unit} && {sc} daemon-reload && "
                            f"{sc} enable --now {unit}", stdin=text)
    assert rc == 0, err
    try:
        inner = 0
        deadline = time.monotonic() + 10
        while not inner and time.monotonic() < deadline:
            inner = _main_pid(systemd_host, systemctl, unit)
            time.sleep(0.1)
        assert inner > 1, f"{unit} has no main process"
        outer = systemd_host.pid_in_root(inner)
        assert outer != inner
        nspid = [line.split()[1:] for line in Path(f"/proc/{outer}/status").read_text().splitlines()
                 if line.startswith("NSpid:")][0]
        assert nspid == [str(outer), str(inner)]
        assert SLEEPER in Path(f"/proc/{outer}/cmdline").read_bytes().decode().replace("\0", " ")

        os.kill(outer, signal.SIGKILL)
        t0 = time.monotonic()
        new = inner
        while time.monotonic() - t0 < 10:
            new = _main_pid(systemd_host, systemctl, unit)
            if new not in (0, inner):
                break
            time.sleep(0.1)
        elapsed = time.monotonic() - t0
        state = systemd_host.run([*systemctl, "show", "-p", "NRestarts", "-p", "ActiveState", unit]).stdout
        print(f"\n{manager} unit: MainPID {inner} (root pid {outer}) killed, new MainPID {new} after "
              f"{elapsed:.2f} s; {' '.join(state.split())}")
        assert new not in (0, inner), f"no new main process within 10 s: {state}"
        assert "NRestarts=1" in state and "ActiveState=active" in state
        assert not Path(f"/proc/{outer}").exists() or "zombie" in Path(f"/proc/{outer}/status").read_text()
    finally:
        _exec(ssh, f"{sc} disable --now {unit}; rm -f {unit_dir}/{unit}; {sc} daemon-reload")


def test_pid_in_root(systemd_host):
    assert systemd_host.pid_in_root(1) == systemd_host.leader
    assert Path(f"/proc/{systemd_host.leader}/comm").read_text().strip() == "systemd"
    inner = int(systemd_host.run(["sh", "-c", "echo $$"], check=True).stdout)
    assert inner > 1  # gone again: no such process now
    with pytest.raises(LookupError):
        systemd_host.pid_in_root(inner)
    assert systemd_host.processes() and systemd_host.leader in systemd_host.processes()


def test_the_tests_python_and_dask_run_inside(systemd_host, ssh, sysd_shared):
    """sys.executable at the same path with distributed importable (nsenter and SSH), the Python read-only, the
    shared directory read-write, no shared library of the stdlib's extension modules missing."""
    import distributed

    probe = [sys.executable, "-c", "import distributed; print(distributed.__version__)"]
    assert systemd_host.run(probe, check=True).stdout.strip() == distributed.__version__
    rc, out, err = _exec(ssh, shlex.join(probe))
    assert (rc, out.strip()) == (0, distributed.__version__), err

    marker = sysd_shared / "written-inside"
    rc, _, err = _exec(ssh, f"hostname > {marker}")
    assert rc == 0, err
    assert marker.read_text().strip() == NAME
    rc, _, err = _exec(ssh, f"touch {shlex.quote(sys.prefix)}/hc-sysd-probe")
    assert rc != 0 and "Read-only file system" in err

    dynload = Path(distributed.__file__).parents[2] / "lib-dynload"
    if not dynload.is_dir():
        dynload = Path(os.__file__).parent / "lib-dynload"
    out = systemd_host.run(["sh", "-c", f"for f in {shlex.quote(str(dynload))}/*.so; do case $f in *_tkinter*) "
                                        "continue;; esac; ldd $f | sed -n \"s|not found|$f: &|p\"; done"],
                           check=True).stdout
    assert out.strip() == "", f"missing shared libraries inside the machine:\n{out}"


def test_dask_scheduler_and_worker_as_user_units(systemd_host):
    """The machine runs real dask processes under root's user manager; the laptop's Client uses them."""
    distributed = pytest.importorskip("distributed")
    addr = systemd_host.address
    units = {
        "hc-test-scheduler": ["scheduler", "--host", addr, "--port", "8786", "--no-dashboard"],
        "hc-test-worker": ["worker", f"tcp://{addr}:8786", "--host", addr, "--nthreads", "1", "--no-dashboard",
                           "--memory-limit", "1GB", "--name", "sysd-w1"],
    }
    try:
        for unit, args in units.items():
            systemd_host.run(["systemd-run", "--user", f"--unit={unit}", "-p", "Restart=always", "-p",
                              "RestartSec=1", "--", sys.executable, "-m", "dask", *args], check=True)
        client = None
        deadline = time.monotonic() + 60
        while client is None:
            try:
                client = distributed.Client(f"tcp://{addr}:8786", timeout=5)
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        with client:
            client.wait_for_workers(1, timeout=60)
            assert client.submit(socket.gethostname, pure=False).result(timeout=30) == NAME
    finally:
        for unit in units:
            systemd_host.run(["systemctl", "--user", "stop", unit])


def _boot_should_fail(tmp_path: Path, **kwargs) -> tuple[SystemdHost, BaseException]:
    ok, reason = can_boot()
    if not ok:
        _unavailable(f"cannot boot a systemd machine here: {reason}")
    try:
        rootfs()
    except SystemdHostUnavailable as exc:
        _unavailable(str(exc))
    host = SystemdHost(workdir=tmp_path / "machine", name=FAIL_NAME, subnet=FAIL_SUBNET,
                       client_key=tmp_path / "id", **kwargs)
    with pytest.raises(SystemdHostError) as info:
        with host:
            pass
    return host, info.value


def _nothing_left(host: SystemdHost) -> None:
    assert host.leftovers() == []
    assert FAIL_NAME not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    assert not Path(f"/sys/class/net/{host.veth}").exists()
    assert not any(Path(root, host.cgroup).exists() for root in ("/sys/fs/cgroup", "/sys/fs/cgroup/systemd",
                                                                 "/sys/fs/cgroup/unified"))
    assert host.rootfs is None or str(host.rootfs) not in Path("/proc/self/mountinfo").read_text()


def test_boot_timeout_names_the_cause_and_leaves_nothing(tmp_path):
    # no time at all: it fails at the first look for PID 1 (a boot takes ~0.04 s to get there); 0.3 s was too
    # long for a fast warm boot, which could finish inside one check
    host, exc = _boot_should_fail(tmp_path, boot_timeout=0.0)
    assert not isinstance(exc, SystemdHostUnavailable)
    assert "boot timeout" in str(exc) and "nspawn log" in str(exc)
    assert host.nspawn_pid is not None
    _nothing_left(host)


def test_nspawn_that_cannot_start_is_unavailable_and_leaves_nothing(tmp_path):
    host, exc = _boot_should_fail(tmp_path, nspawn_args=["--bind-ro=/nonexistent-hc-sysd:/mnt/x"])
    assert isinstance(exc, SystemdHostUnavailable), exc
    assert "nonexistent-hc-sysd" in str(exc)  # nspawn's own message, from its log
    _nothing_left(host)


def _status(inv: Path) -> dict:
    import json

    p = subprocess.run([sys.executable, "-m", "homecluster", "status", "--json", "-i", str(inv)],
                       capture_output=True, text=True, timeout=120)
    return json.loads(p.stdout)


def _hc(*args: str, inv: Path) -> subprocess.CompletedProcess:
    command, *rest = args
    return subprocess.run([sys.executable, "-m", "homecluster", command, "-i", str(inv), *rest],
                          capture_output=True, text=True, timeout=300)


def test_up_with_supervisor_systemd_runs_units_that_come_back_after_kill_9(systemd_host, sysd_shared):
    """The systemd backend for real (issue 12): `up` makes the scheduler and the worker root's user units over
    SSH; kill -9 of the worker's main process from outside is undone by Restart=always (the worker registers
    again, status counts the restart); a second up changes nothing; down removes the units and leaves nothing."""
    import yaml

    from homecluster import connect

    h, run = systemd_host, sysd_shared / "run"
    inv = sysd_shared / "inventory.yaml"
    inv.write_text(yaml.safe_dump({
        "cluster": {"name": "sysd", "scheduler_port": 8894, "dashboard_port": 8895,
                    "worker_ports": "9340:9349", "nanny_ports": "9350:9359"},
        "hosts": {"box": {"address": h.address, "user": "root", "ssh_key": str(h.client_key),
                          "known_hosts": str(h.known_hosts), "python": sys.executable, "supervisor": "systemd",
                          "nworkers": 1, "nthreads": 1, "memory_limit": "1GB", "death_timeout": 30,
                          "run_directory": str(run)}}}, sort_keys=False))
    unit = "homecluster-sysd-worker.service"

    def main_pid() -> int:
        p = h.run(["systemctl", "--user", "show", "-p", "MainPID", "--value", unit], check=True)
        return int(p.stdout.strip())

    try:
        up = _hc("up", inv=inv)
        assert up.returncode == 0, up.stdout + up.stderr
        assert "start scheduler, start worker" in up.stdout
        assert h.run(["systemctl", "--user", "is-enabled", unit]).stdout.strip() == "enabled"
        with connect(str(inv)) as client:
            assert [w["name"] for w in client.scheduler_info()["workers"].values()] == ["box"]
            assert client.submit(pow, 2, 5).result() == 32
        first = main_pid()
        os.kill(h.pid_in_root(first), signal.SIGKILL)
        deadline, again = time.monotonic() + 60, None
        while time.monotonic() < deadline:
            st = _status(inv)
            box = st["hosts"][0]
            if main_pid() not in (0, first) and [w["name"] for w in st["workers"]] == ["box"]:
                again = box
                break
            time.sleep(0.5)
        assert again is not None, f"the worker did not come back: {st}"
        assert again["supervision"]["worker"]["restarts"] == 1 and "worker running (restarts 1)" in again["state"]
        noop = _hc("up", inv=inv)
        assert noop.returncode == 0 and "nothing changed" in noop.stdout, noop.stdout + noop.stderr
    finally:
        down = _hc("down", inv=inv)
    assert down.returncode == 0, down.stdout + down.stderr
    assert h.run(["systemctl", "--user", "cat", unit]).returncode != 0  # the unit is gone
    left = [p for p in h.processes() if b"HOMECLUSTER_PROCESS=sysd/" in _environ(p)]
    assert left == [], left


def _environ(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return b""


def _ours(h) -> list[str]:
    """Command lines of the processes of cluster sysd in the booted host."""
    out = []
    for pid in h.processes():
        if b"HOMECLUSTER_PROCESS=sysd/" in _environ(pid):
            try:
                out.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
            except OSError:
                pass
    return out


def test_auto_picks_systemd_and_service_commands_move_the_cluster_between_supervisors(systemd_host, sysd_shared):
    """supervisor: auto on a host where systemd is PID 1 (issue 12): `service install` makes units that start at
    boot, after supervised processes ran there (they are swept, none is left next to the units); supervisor:
    process takes the units down again; `service status` says which is which; `service uninstall` leaves
    nothing."""
    import yaml

    h, run = systemd_host, sysd_shared / "run-auto"
    inv = sysd_shared / "inventory-auto.yaml"
    unit = "homecluster-sysd-worker.service"

    def write(**extra):
        box = {"address": h.address, "user": "root", "ssh_key": str(h.client_key), "known_hosts": str(h.known_hosts),
               "python": sys.executable, "nworkers": 1, "nthreads": 1, "memory_limit": "1GB", "death_timeout": 30,
               "run_directory": str(run), **extra}
        inv.write_text(yaml.safe_dump({"cluster": {"name": "sysd", "scheduler_port": 8894, "dashboard_port": 8895,
                                                   "worker_ports": "9340:9349", "nanny_ports": "9350:9359"},
                                       "hosts": {"box": box}}, sort_keys=False))

    def unit_file() -> bool:
        return h.run(["test", "-f", f"/root/.config/systemd/user/{unit}"]).returncode == 0

    try:
        write(supervisor="process")
        first = _hc("up", inv=inv)
        assert first.returncode == 0, first.stdout + first.stderr
        assert any("hc-supervise" in c for c in _ours(h)) and not unit_file()
        refused = _hc("service", "install", inv=inv)
        assert refused.returncode == 2 and "hosts.box.supervisor: is process" in refused.stderr, refused.stderr
        st = _hc("service", "status", inv=inv)
        assert st.returncode == 1 and "homecluster's supervisor (supervisor: process)" in st.stdout, st.stdout

        write()  # supervisor: auto
        inst = _hc("service", "install", inv=inv)
        assert inst.returncode == 0, inst.stdout + inst.stderr
        assert "box: systemd user services" in inst.stdout and "worker: starts at boot, running" in inst.stdout
        assert h.run(["systemctl", "--user", "is-enabled", unit]).stdout.strip() == "enabled"
        cmds = _ours(h)
        assert cmds and not any("hc-supervise" in c for c in cmds), cmds  # the supervised ones were swept
        again = _hc("up", inv=inv)
        assert again.returncode == 0 and "nothing changed" in again.stdout, again.stdout + again.stderr

        write(supervisor="process")
        back = _hc("up", inv=inv)
        assert back.returncode == 0, back.stdout + back.stderr
        assert not unit_file() and h.run(["systemctl", "--user", "is-active", unit]).stdout.strip() != "active"
        assert any("hc-supervise" in c for c in _ours(h))

        write()
        assert _hc("service", "install", inv=inv).returncode == 0
        gone = _hc("service", "uninstall", inv=inv)
        assert gone.returncode == 0 and "stopped and removed" in gone.stdout, gone.stdout + gone.stderr
        assert not unit_file() and _ours(h) == []
    finally:
        down = _hc("down", inv=inv)
    assert down.returncode == 0, down.stdout + down.stderr
    assert _ours(h) == []
