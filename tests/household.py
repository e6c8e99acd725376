"""A simulated household of computers on this one Linux machine, for tests.

Each household computer is a network namespace ``<prefix>-<name>`` with its own
address, its own hostname (a persistent UTS namespace) and its own sshd.  The
home "switch" is a bridge in its own namespace ``<prefix>-sw``; the root
namespace plays the user's laptop through a veth into the switch.  No host
namespace has a default route and nothing is NATed, so traffic only ever goes
to loopback or to these namespaces.

Needs root, iproute2 and openssh-server (``apt-get install -y openssh-server
iproute2``).  See ``can_build()``.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cpu_budget
from cpu_budget import CpuBudget

SSHD = "/usr/sbin/sshd"
UTS_ROOT = Path("/run/homecluster")  # persistent UTS namespace files live here
BRIDGE = "br0"
HOST_IF = "eth0"
SWITCH_LAPTOP_PORT = "lap-root"
SSHD_START_TIMEOUT = 10.0
KILL_GRACE = 3.0
LEFTOVER_SETTLE = 5.0  # seconds `leftovers` waits for closing SSH sessions' sshd children to exit
_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")

_PROBE = """
import socket, sys, time
deadline = time.monotonic() + float(sys.argv[1])
for addr in sys.argv[2:]:
    while True:
        try:
            socket.create_connection((addr, 22), timeout=0.5).close()
            break
        except OSError as exc:
            if time.monotonic() > deadline:
                sys.exit(f"{addr}:22 unreachable: {exc}")
            time.sleep(0.02)
"""


@dataclass(frozen=True)
class SimHost:
    """One simulated household computer."""

    name: str  # also its hostname inside SSH sessions
    address: str  # its IPv4 address on the household subnet
    netns: str  # its network namespace name


def can_build() -> tuple[bool, str]:
    """Tell whether a Household can be built here: (True, "") or (False, reason)."""
    if os.geteuid() != 0:
        return False, "needs root"
    for tool in ("ip", "ssh-keygen", "nsenter", "unshare"):
        if shutil.which(tool) is None:
            return False, f"`{tool}` not found (apt-get install -y openssh-server iproute2)"
    if not os.access(SSHD, os.X_OK):
        return False, f"{SSHD} not found (apt-get install -y openssh-server)"
    if _root_account_locked():
        return False, "root account is locked ('!' in /etc/shadow): sshd without PAM refuses root"
    probe = subprocess.run(["unshare", "--net", "--uts", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return False, f"cannot create namespaces: {probe.stderr.strip()}"
    return True, ""


def _root_account_locked() -> bool:
    """True when root's password field starts with '!' (sshd without PAM refuses such accounts)."""
    try:
        for line in Path("/etc/shadow").read_text().splitlines():
            if line.startswith("root:"):
                return line.split(":")[1].startswith("!")
    except OSError:
        pass
    return False


def _sh(argv: list[str], check: bool = True, timeout: float = 30, preexec_fn=None) -> subprocess.CompletedProcess:
    """Run a setup command, capturing text output; raise with its stderr when check fails."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, preexec_fn=preexec_fn)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def _netns_list() -> list[str]:
    """Names of all named network namespaces."""
    out = _sh(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _netns_pids(netns: str) -> list[int]:
    """Pids of live processes in a named network namespace (zombies are not listed)."""
    proc = _sh(["ip", "netns", "pids", netns], check=False)
    return [int(tok) for tok in proc.stdout.split() if tok.isdigit()]


def _signal_all(pids: list[int], sig: int) -> None:
    """Send sig to every pid, ignoring those already gone."""
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _wait_until(predicate, timeout: float, interval: float = 0.02) -> bool:
    """Poll predicate until it is true or timeout seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def _kill_netns_processes(netns: str) -> None:
    """SIGTERM every process in netns, then SIGKILL whatever is left after KILL_GRACE seconds."""
    pids = _netns_pids(netns)
    if not pids:
        return
    _signal_all(pids, signal.SIGTERM)
    if _wait_until(lambda: not _netns_pids(netns), KILL_GRACE):
        return
    _signal_all(_netns_pids(netns), signal.SIGKILL)
    _wait_until(lambda: not _netns_pids(netns), KILL_GRACE)


def _umount_and_remove(path: Path) -> None:
    """Unmount a UTS namespace file (if mounted) and delete it."""
    _sh(["umount", str(path)], check=False)
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _port_state(address: str, timeout: float = 0.5) -> str:
    """'open', 'refused' or 'other' for a TCP connect from the root namespace to address:22."""
    try:
        socket.create_connection((address, 22), timeout=timeout).close()
        return "open"
    except ConnectionRefusedError:
        return "refused"
    except OSError:
        return "other"


def _read_cmdline(pid: int) -> str | None:
    """The full command line of pid joined by spaces, or None when the process vanished."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)


def _read_ppid(pid: int) -> int | None:
    """The parent pid of pid, or None when the process vanished."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])  # "pid (comm) state ppid ...": comm may hold spaces


def _descends(pid: int, roots: set[int]) -> bool:
    """True when pid is one of roots or a descendant of one."""
    if not roots:
        return False
    while pid and pid not in roots:
        pid = _read_ppid(pid) or 0
    return pid in roots


class Household:
    """Context manager that builds a simulated household and tears it down again.

    ``Household(names=("desktop", "study", "attic"), workdir=Path, prefix="hc",
    subnet="10.213.57")``: host i gets ``{subnet}.{11+i}``, the laptop (the root
    namespace) gets ``{subnet}.1``.  Everything except the UTS namespace files
    (under /run/homecluster/<prefix>/) is kept in ``workdir``.
    """

    def __init__(
        self,
        names: tuple[str, ...] | list[str] = ("desktop", "study", "attic"),
        workdir: Path | str = Path("/tmp/homecluster-household"),
        prefix: str = "hc",
        subnet: str = "10.213.57",
        cpu_budgets: bool = False,
    ) -> None:
        """Describe the household; nothing is built until __enter__.

        cpu_budgets: give each host and the laptop a CPU budget (tests/cpu_budget.py: a cgroup named
        '<prefix>-<name>', '<prefix>-laptop' for the laptop), uncapped until `cap_cpu` is called; a host's sshd and
        everything it starts run in its budget, laptop processes enter theirs with `laptop_budget.enter`."""
        _validate(list(names), prefix, subnet)
        self.prefix = prefix
        self.subnet = subnet
        self.workdir = Path(workdir).resolve()
        self.hosts: list[SimHost] = [
            SimHost(name, f"{subnet}.{11 + i}", f"{prefix}-{name}") for i, name in enumerate(names)
        ]
        self.laptop_address = f"{subnet}.1"
        self.client_key = self.workdir / "client_ed25519"
        self.known_hosts = self.workdir / "known_hosts"
        self.authorized_keys = self.workdir / "authorized_keys"
        self.switch_netns = f"{prefix}-sw"
        self.laptop_if = f"{prefix}-lap"
        self.uts_dir = UTS_ROOT / prefix
        self.budgets: dict[str, CpuBudget] = {}
        self.laptop_budget: CpuBudget | None = None
        if cpu_budgets:
            self.budgets = {h.name: CpuBudget(f"{prefix}-{h.name}") for h in self.hosts}
            self.laptop_budget = CpuBudget(f"{prefix}-laptop")
        self._owned: dict[str, set[int]] = {h.name: set() for h in self.hosts}
        self._built = False
        self._closed = False

    # ----- context manager -------------------------------------------------

    def __enter__(self) -> "Household":
        """Build the household; on any failure tear down what was built and re-raise."""
        if self._built:
            raise RuntimeError("Household already built")
        self._built = True
        atexit.register(self.close)
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        """Tear the household down."""
        self.close()

    # ----- public helpers --------------------------------------------------

    def host(self, name: str) -> SimHost:
        """The SimHost called name."""
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)

    def stop_sshd(self, name: str) -> None:
        """Kill that host's listening sshd and wait until its port 22 refuses connections."""
        host = self.host(name)
        pid = self.sshd_pid(name)
        if pid is not None:
            _signal_all([pid], signal.SIGTERM)
        if not _wait_until(lambda: _port_state(host.address) == "refused", 5.0):
            raise RuntimeError(f"sshd on {name} still answers on {host.address}:22")

    def start_sshd(self, name: str) -> None:
        """(Re)start that host's sshd and wait until its port 22 answers."""
        if self.sshd_pid(name) is not None:
            self.stop_sshd(name)
        host = self.host(name)
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        self._sshd_pidfile(name).unlink(missing_ok=True)
        budget = self.budgets.get(name)
        _sh(self._nsenter(name) + [SSHD, "-f", str(self._sshd_config(name)), "-E", str(self._sshd_log(name))],
            preexec_fn=budget.enter if budget else None)
        if not _wait_until(lambda: _port_state(host.address, 0.2) == "open", SSHD_START_TIMEOUT):
            raise RuntimeError(f"sshd on {name} ({host.address}:22) did not answer:\n{self._log_tail(name)}")

    def cap_cpu(self, cores: float | None) -> None:
        """Cap every host's and the laptop's CPU budget at `cores` cores each (None: uncapped).

        Only for a household built with cpu_budgets=True."""
        if not self.budgets:
            raise RuntimeError("this household was built without cpu_budgets")
        for budget in [*self.budgets.values(), self.laptop_budget]:
            budget.cap(cores)

    def run(self, name: str, argv: list[str], **kw) -> subprocess.CompletedProcess:
        """Run argv inside that host's network and UTS namespaces, capturing text output."""
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        return subprocess.run(self._nsenter(name) + list(argv), **kw)

    def nsenter_argv(self, name: str) -> list[str]:
        """The nsenter prefix that enters that host's network and UTS namespaces (for daemons a test starts)."""
        return self._nsenter(name)

    def pids(self, name: str) -> list[int]:
        """Pids of the processes in that host's network namespace (`ip netns pids`)."""
        return _netns_pids(self.host(name).netns)

    def processes(self, name: str) -> list[tuple[int, str]]:
        """(pid, full command line) for each process in that host's network namespace."""
        found = []
        for pid in self.pids(name):
            cmdline = _read_cmdline(pid)
            if cmdline is not None:
                found.append((pid, cmdline))
        return found

    def sshd_pid(self, name: str) -> int | None:
        """Pid of that host's listening sshd (from its pid file), or None when it is not running."""
        try:
            pid = int(self._sshd_pidfile(name).read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None
        return pid if pid in self.pids(name) else None

    def own(self, name: str, pid: int) -> int:
        """Declare pid a process the test started itself in that host's namespace; returns pid.

        Neither it nor its descendants count as `leftovers` until `release_owned` (the `cleanup` fixture calls it
        after each test)."""
        self._owned[name].add(pid)
        return pid

    def leftovers(self, settle: float = LEFTOVER_SETTLE) -> list[tuple[str, int, str]]:
        """(host, pid, command line) of every process in a host's network namespace other than the host's
        listening sshd and what was declared with `own`.

        Polls up to settle seconds for them to go away first: the per-connection sshd children of SSH sessions
        that are still closing linger a moment.  Only processes in a host's network namespace count (the hosts
        share the pid namespace and /proc with the laptop)."""
        found: list[tuple[str, int, str]] = []

        def none_left() -> bool:
            found.clear()
            for h in self.hosts:
                sshd = self.sshd_pid(h.name)
                found.extend((h.name, pid, cmd) for pid, cmd in self.processes(h.name)
                             if pid != sshd and not _descends(pid, self._owned[h.name]))
            return not found

        _wait_until(none_left, settle, interval=0.1)
        return found

    def kill(self, name: str, pids: list[int]) -> None:
        """SIGKILL those processes of that host's namespace (pids no longer in it are skipped) and wait for them."""
        victims = set(pids) & set(self.pids(name))
        _signal_all(sorted(victims), signal.SIGKILL)
        _wait_until(lambda: not victims & set(self.pids(name)), KILL_GRACE)

    def release_owned(self) -> None:
        """SIGKILL what is still running of the processes declared with `own` (and their descendants); forget them."""
        for name, owned in self._owned.items():
            if owned:
                self.kill(name, [pid for pid in self.pids(name) if _descends(pid, owned)])
                owned.clear()

    def cut_link(self, name: str) -> None:
        """Unplug that host from the switch (switch-side port down)."""
        _sh(["ip", "-n", self.switch_netns, "link", "set", self._port(name), "down"])

    def restore_link(self, name: str) -> None:
        """Plug that host back into the switch (switch-side port up)."""
        _sh(["ip", "-n", self.switch_netns, "link", "set", self._port(name), "up"])

    def close(self) -> None:
        """Tear everything down: processes, namespaces, veth, UTS mounts. Safe to call twice."""
        if self._closed or not self._built:
            return
        self._closed = True
        self._remove(self._namespaces(), self.prefix, self.laptop_if, self.uts_dir)
        atexit.unregister(self.close)

    # ----- building --------------------------------------------------------

    def _build(self) -> None:
        """Remove leftovers, then make keys, network, hostnames and sshds, and verify."""
        self._remove(self._namespaces(), self.prefix, self.laptop_if, self.uts_dir)
        self._check_subnet_free()
        for budget in [*self.budgets.values(), *filter(None, [self.laptop_budget])]:
            budget.create()
        self._make_keys()
        self._make_switch()
        for index, host in enumerate(self.hosts):
            self._make_host(index, host)
        self._make_laptop_link()
        for host in self.hosts:
            self._write_sshd_config(host)
            self.start_sshd(host.name)
        self._write_known_hosts()
        self._verify()

    def _check_subnet_free(self) -> None:
        """Fail if the root namespace already has an address on our subnet (another household?)."""
        out = _sh(["ip", "-o", "-4", "addr", "show"]).stdout
        if f" {self.subnet}." in out:
            raise RuntimeError(f"subnet {self.subnet}.0/24 already in use in the root namespace:\n{out}")

    def _make_keys(self) -> None:
        """Create the client key, authorized_keys and one host key per host."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        _keygen(self.client_key, "homecluster-test-client")
        self.client_key.chmod(0o600)
        self.authorized_keys.write_text(Path(f"{self.client_key}.pub").read_text())
        for host in self.hosts:
            (self.workdir / host.name).mkdir(exist_ok=True)
            _keygen(self._host_key(host.name), host.name)

    def _make_switch(self) -> None:
        """Create the switch namespace with a bridge that does not go through iptables."""
        sw = self.switch_netns
        _sh(["ip", "netns", "add", sw])
        _sh(["ip", "-n", sw, "link", "set", "lo", "up"])
        _sh(["ip", "-n", sw, "link", "add", BRIDGE, "type", "bridge"])
        _sh(["ip", "-n", sw, "link", "set", BRIDGE, "up"])
        _sh(["ip", "netns", "exec", sw, "sh", "-c",
             'for f in /proc/sys/net/bridge/bridge-nf-call-*; do [ -e "$f" ] && echo 0 > "$f"; done; true'])

    def _make_host(self, index: int, host: SimHost) -> None:
        """Create a host namespace, wire it to the switch and give it a hostname."""
        sw, port = self.switch_netns, self._port(host.name)
        _sh(["ip", "netns", "add", host.netns])
        _sh(["ip", "-n", host.netns, "link", "set", "lo", "up"])
        _sh(["ip", "-n", sw, "link", "add", port, "type", "veth", "peer", "name", HOST_IF, "netns", host.netns])
        _sh(["ip", "-n", sw, "link", "set", port, "master", BRIDGE, "up"])
        _sh(["ip", "-n", host.netns, "addr", "add", f"{host.address}/24", "dev", HOST_IF])
        _sh(["ip", "-n", host.netns, "link", "set", HOST_IF, "up"])
        self.uts_dir.mkdir(parents=True, exist_ok=True)
        uts = self._uts_file(host.name)
        uts.touch()
        _sh(["unshare", f"--uts={uts}", "hostname", host.name])

    def _make_laptop_link(self) -> None:
        """Connect the root namespace (the laptop) to the switch; it never forwards."""
        sw, lap = self.switch_netns, self.laptop_if
        _sh(["ip", "link", "add", lap, "type", "veth", "peer", "name", SWITCH_LAPTOP_PORT, "netns", sw])
        _sh(["ip", "-n", sw, "link", "set", SWITCH_LAPTOP_PORT, "master", BRIDGE, "up"])
        Path(f"/proc/sys/net/ipv4/conf/{lap}/forwarding").write_text("0\n")
        _sh(["ip", "addr", "add", f"{self.laptop_address}/24", "dev", lap])
        _sh(["ip", "link", "set", lap, "up"])

    def _write_sshd_config(self, host: SimHost) -> None:
        """Write and validate that host's sshd_config."""
        config = self._sshd_config(host.name)
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd -t wants it too
        config.write_text(
            f"ListenAddress {host.address}\n"
            "Port 22\n"
            f"HostKey {self._host_key(host.name)}\n"
            f"PidFile {self._sshd_pidfile(host.name)}\n"
            f"AuthorizedKeysFile {self.authorized_keys}\n"
            "UsePAM no\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "PermitRootLogin prohibit-password\n"
            "MaxStartups 50:30:100\n"
            "StrictModes no\n"
            "LogLevel VERBOSE\n"
            "Subsystem sftp internal-sftp\n"
        )
        _sh([SSHD, "-t", "-f", str(config)])

    def _write_known_hosts(self) -> None:
        """Write known_hosts with each host's real host key, keyed by its address."""
        lines = []
        for host in self.hosts:
            keytype, blob = Path(f"{self._host_key(host.name)}.pub").read_text().split()[:2]
            lines.append(f"{host.address} {keytype} {blob}\n")
        self.known_hosts.write_text("".join(lines))

    def _verify(self) -> None:
        """Fail loudly unless every host reaches every other host's sshd."""
        for host in self.hosts:
            others = [h.address for h in self.hosts if h is not host]
            if not others:
                continue
            probe = subprocess.run(
                ["ip", "netns", "exec", host.netns, sys.executable, "-I", "-S", "-c", _PROBE, "5", *others],
                capture_output=True, text=True, timeout=30,
            )
            if probe.returncode != 0:
                raise RuntimeError(f"household broken: from {host.name}: {probe.stderr.strip()}")

    # ----- teardown --------------------------------------------------------

    def _namespaces(self) -> set[str]:
        """This household's namespace names: its hosts' and its switch's (another harness's machine may share
        the prefix, such as tests/systemd_host.py's hc-sysd: it is not ours to remove)."""
        return {h.netns for h in self.hosts} | {self.switch_netns}

    @staticmethod
    def _remove(names: set[str], prefix: str, laptop_if: str, uts_dir: Path) -> None:
        """Remove the namespaces `names` (left from an earlier run too), the root veth, the UTS files and the CPU
        budgets."""
        ours = [ns for ns in _netns_list() if ns in names]
        for ns in ours:
            _kill_netns_processes(ns)
        cpu_budget.remove_all(prefix)
        _sh(["ip", "link", "del", laptop_if], check=False)
        for ns in ours:
            _sh(["ip", "netns", "del", ns], check=False)
        if uts_dir.is_dir():
            for uts in uts_dir.glob("*.uts"):
                _umount_and_remove(uts)
            try:
                uts_dir.rmdir()
            except OSError:
                pass

    # ----- paths and small lookups -----------------------------------------

    def _nsenter(self, name: str) -> list[str]:
        """The nsenter prefix that enters that host's network and UTS namespaces."""
        host = self.host(name)
        return ["nsenter", f"--net=/run/netns/{host.netns}", f"--uts={self._uts_file(name)}"]

    def _port(self, name: str) -> str:
        """Switch-side interface name for that host (at most 15 characters)."""
        port = f"p-{name}"
        if len(port) <= 15:
            return port
        return f"p-{self.hosts.index(self.host(name))}"

    def _log_tail(self, name: str, lines: int = 20) -> str:
        """Last lines of that host's sshd log."""
        try:
            return "\n".join(self._sshd_log(name).read_text().splitlines()[-lines:])
        except FileNotFoundError:
            return "(no sshd log)"

    def _uts_file(self, name: str) -> Path:
        return self.uts_dir / f"{name}.uts"

    def _host_key(self, name: str) -> Path:
        return self.workdir / name / "ssh_host_ed25519_key"

    def _sshd_config(self, name: str) -> Path:
        return self.workdir / name / "sshd_config"

    def _sshd_pidfile(self, name: str) -> Path:
        return self.workdir / name / "sshd.pid"

    def _sshd_log(self, name: str) -> Path:
        return self.workdir / name / "sshd.log"


def _keygen(path: Path, comment: str) -> None:
    """Create a fresh passphrase-less ed25519 key pair at path (replacing an old one)."""
    path.unlink(missing_ok=True)
    Path(f"{path}.pub").unlink(missing_ok=True)
    _sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])


def _validate(names: list[str], prefix: str, subnet: str) -> None:
    """Reject names, prefixes and subnets that would clash or break interface-name limits."""
    if not names or len(set(names)) != len(names):
        raise ValueError(f"host names must be non-empty and unique: {names}")
    for name in names:
        if not _NAME_RE.match(name) or name == "sw":
            raise ValueError(f"bad host name {name!r} (lowercase hostname, not 'sw')")
    if not re.match(r"^[a-z][a-z0-9]{0,10}$", prefix):
        raise ValueError(f"bad prefix {prefix!r} (1-11 lowercase letters/digits, so '<prefix>-lap' fits 15 chars)")
    parts = subnet.split(".")
    if len(parts) != 3 or not all(p.isdigit() and 0 <= int(p) <= 255 for p in parts):
        raise ValueError(f"subnet must look like '10.213.57', got {subnet!r}")
    if len(names) > 200:
        raise ValueError("at most 200 hosts")
