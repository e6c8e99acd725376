"""A household machine with a real systemd as PID 1, for tests: a cached debootstrapped Debian bookworm tree
booted with systemd-nspawn in its own network namespace, a veth from the root namespace (the laptop), sshd
inside, the test's own Python bound in at the same paths.

    with SystemdHost(workdir=tmp, name="hc-sysd", subnet="10.213.91", client_key=key, binds=[tmp]) as h:
        h.address                      # "10.213.91.2", reachable from the root namespace (h.laptop_address .1)
        h.known_hosts                  # that address with the machine's real (per-boot) ed25519 host key
        h.run(["systemctl", "--user", "is-system-running"])    # as root inside, text captured
        h.pid_in_root(main_pid)        # the root-namespace pid of a pid inside the machine

The rootfs is built once per ROOTFS_VERSION (and package list) under $HOMECLUSTER_TEST_CACHE (default
/var/cache/homecluster-tests)/sysd-rootfs-<key> and never written afterwards: every boot is
`--volatile=overlay` (a tmpfs upper layer), so each machine starts clean and several can share the tree.

Network: the root end of the veth gets <subnet>.1/24 with forwarding off, the machine <subnet>.2/24 on its
`host0`; no default route inside, no NAT, no DNS (resolv.conf deleted): the machine reaches only the laptop.

No host systemd is needed (nor used): nspawn runs with --register=no --keep-unit in a cgroup of its own
(`homecluster-sysd-<name>` in each cgroup hierarchy nspawn uses), which is how everything it started is found
and killed again. Teardown (also after a failed boot, also of an earlier run's leftovers with the same name):
poweroff by SIGTERM to nspawn, SIGKILL after POWEROFF_TIMEOUT, SIGKILL of whatever is left in those cgroups
and in the machine's pid namespace, the cgroups, the netns and the veth removed; `leftovers()` lists what
would still be there.

Needs root, systemd-nspawn (apt: systemd-container), debootstrap (for the first build only), iproute2,
util-linux (nsenter), openssh-client (ssh-keygen, ssh) and overlayfs; see ``can_boot()``.
"""

from __future__ import annotations

import atexit
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fresh_machine import apt_mirror, mounts_under, remove_tree

# Bump when the build steps below change: a new key means a new tree (the old one stays until removed by hand).
ROOTFS_VERSION = "sysd-4"
SUITE = "bookworm"
PACKAGES = (
    # the prototype's (tests/systemd/nspawn-host.sh): systemd as PID 1, logind + user managers, sshd
    "systemd", "systemd-sysv", "dbus", "libpam-systemd", "dbus-user-session", "openssh-server",
    "python3", "iproute2", "procps",
    # shared libraries a CPython built on Debian 12 (pyenv, python.org build) loads for its stdlib modules
    "libffi8", "libssl3", "zlib1g", "libbz2-1.0", "liblzma5", "libsqlite3-0", "libuuid1", "libreadline8",
    "libncursesw6", "libgdbm6", "libexpat1", "libstdc++6", "libgcc-s1",
    # the firewalls a household Linux host may run (tests/test_firewall_tools.py starts the one it tests)
    "ufw", "firewalld",
)
MASKED_UNITS = (  # no console login on nspawn's pty; nothing that would want the network or run at random times
    "console-getty.service", "getty@.service", "systemd-networkd.service", "systemd-resolved.service",
    "systemd-timesyncd.service", "apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer",
    "fstrim.timer",
)
DISABLED_UNITS = (  # installed but not started at boot (nor by D-Bus activation): a test starts it when it wants
    "firewalld.service",
)
CACHE = Path(os.environ.get("HOMECLUSTER_TEST_CACHE", "/var/cache/homecluster-tests"))
NSPAWN = "systemd-nspawn"
DEBOOTSTRAP_TIMEOUT = 1200
BOOT_TIMEOUT = 120.0
POWEROFF_TIMEOUT = 15.0
HOST_IF = "host0"  # the machine's end of the veth
GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CGROUP_BASE = Path("/sys/fs/cgroup")
_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,11}$")  # '<name>-ve' must fit an interface name (15 characters)
_SYSTEM_DIRS = ("/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin", "/etc", "/var", "/boot", "/dev",
                "/proc", "/sys", "/run")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


class SystemdHostError(RuntimeError):
    """The machine could not be booted or torn down as expected (the message says why, with nspawn's log)."""


class SystemdHostUnavailable(SystemdHostError):
    """systemd-nspawn (or root, debootstrap, cgroups, overlayfs ...) is missing or cannot run here: skip."""


# --- can it run here ---------------------------------------------------------------------------------------------

def can_boot() -> tuple[bool, str]:
    """Tell whether a SystemdHost can be booted here: (True, "") or (False, reason)."""
    if sys.platform != "linux":
        return False, "needs Linux"
    if os.geteuid() != 0:
        return False, "needs root"
    if shutil.which(NSPAWN) is None:
        return False, f"`{NSPAWN}` not found (apt-get install -y systemd-container)"
    for tool, package in (("ip", "iproute2"), ("nsenter", "util-linux"), ("ssh-keygen", "openssh-client"),
                          ("ssh", "openssh-client")):
        if shutil.which(tool) is None:
            return False, f"`{tool}` not found (apt-get install -y {package})"
    probe = subprocess.run([NSPAWN, "--version"], capture_output=True, text=True)
    if probe.returncode != 0:
        return False, f"`{NSPAWN} --version` failed: {(probe.stderr or probe.stdout).strip()}"
    if not _cgroup_roots():
        return False, "no usable cgroup hierarchy (neither cgroup2 nor a name=systemd v1 hierarchy is mounted)"
    try:
        if "overlay" not in Path("/proc/filesystems").read_text().split():
            subprocess.run(["modprobe", "overlay"], capture_output=True)
            if "overlay" not in Path("/proc/filesystems").read_text().split():
                return False, "no overlayfs in this kernel (--volatile=overlay needs it)"
    except OSError as exc:
        return False, f"cannot read /proc/filesystems: {exc}"
    return True, ""


def _cgroup_roots() -> list[Path]:
    """The cgroup hierarchies nspawn puts a machine into: the unified one, and the name=systemd v1 one if any."""
    mounts: dict[str, tuple[str, str]] = {}
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) >= 5 and len(tail) >= 3:
            mounts[fields[4]] = (tail[0], tail[2])
    base = str(CGROUP_BASE)
    if mounts.get(base, ("",))[0] == "cgroup2":
        return [CGROUP_BASE]
    roots = []
    fstype, options = mounts.get(f"{base}/systemd", ("", ""))
    if fstype == "cgroup" and "name=systemd" in options.split(","):
        roots.append(CGROUP_BASE / "systemd")
    if mounts.get(f"{base}/unified", ("",))[0] == "cgroup2":
        roots.append(CGROUP_BASE / "unified")
    return roots if roots and roots[0].name == "systemd" else []


# --- the cached rootfs -------------------------------------------------------------------------------------------

def rootfs_key() -> str:
    """The cache key of the tree this code builds (version string, suite, packages, masked and disabled units)."""
    text = json.dumps([ROOTFS_VERSION, SUITE, sorted(PACKAGES), sorted(MASKED_UNITS), sorted(DISABLED_UNITS)])
    return f"{ROOTFS_VERSION}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


def rootfs(cache: Path | None = None) -> tuple[Path, bool]:
    """(the cached tree, whether it was built just now); built once with debootstrap under a lock, so two test
    runs at once build it only once. Raises SystemdHostUnavailable when it cannot be built here."""
    directory = Path(cache or CACHE)
    directory.mkdir(parents=True, exist_ok=True)
    tree = directory / f"sysd-rootfs-{rootfs_key()}"
    marker = tree / ".homecluster-sysd-rootfs"
    with open(directory / f"{tree.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return tree, False
        if shutil.which("debootstrap") is None:
            raise SystemdHostUnavailable(f"no cached rootfs at {tree} and `debootstrap` not found "
                                         "(apt-get install -y debootstrap)")
        if tree.exists():  # a half-finished tree of a crashed build
            remove_tree(tree)
        build = Path(tempfile.mkdtemp(prefix="sysd-build-", dir=directory))
        try:
            target = build / "root"
            argv = ["debootstrap", "--variant=minbase", "--include=" + ",".join(PACKAGES), SUITE, str(target)]
            mirror = apt_mirror(SUITE)
            if mirror:
                argv.append(mirror)
            log = build / "debootstrap.log"
            with open(log, "w") as out:
                try:
                    proc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          timeout=DEBOOTSTRAP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    raise SystemdHostUnavailable(f"{' '.join(argv)} took over {DEBOOTSTRAP_TIMEOUT} s") from None
            if proc.returncode != 0:
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
                raise SystemdHostUnavailable(f"cannot build the rootfs: {' '.join(argv)} failed "
                                             f"({proc.returncode}):\n{tail}")
            _configure_tree(target)
            marker_in_build = target / marker.name
            marker_in_build.write_text(json.dumps({"key": rootfs_key(), "packages": sorted(PACKAGES),
                                                   "mirror": mirror, "built": time.time()}) + "\n")
            target.rename(tree)
        finally:
            remove_tree(build)
    return tree, True


def _configure_tree(root: Path) -> None:
    """What the tree needs beyond debootstrap; everything per machine (keys, hosts) is bound in at boot."""
    (root / "etc/hostname").unlink(missing_ok=True)  # systemd keeps the hostname nspawn sets (= machine name)
    (root / "etc/machine-id").write_text("")  # empty: a transient id per boot, not one shared by all machines
    (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    (root / "etc/resolv.conf").unlink(missing_ok=True)  # debootstrap's copy of ours; no DNS in there
    (root / "etc/default/locale").write_text("LANG=C.UTF-8\n")
    for key in (root / "etc/ssh").glob("ssh_host_*"):  # the per-boot key is bound over the ed25519 one
        key.unlink()
    for name in ("ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"):  # mount points
        (root / "etc/ssh" / name).write_text("")
    (root / "etc/ssh/sshd_config.d/homecluster-test.conf").write_text(
        "HostKey /etc/ssh/ssh_host_ed25519_key\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\n"
        "MaxStartups 50:30:100\n"
    )
    ssh_dir = root / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text("")  # mount point of the machine's authorized_keys
    (ssh_dir / "authorized_keys").chmod(0o600)
    # `loginctl enable-linger root` (what it writes): logind starts user@0.service at every boot, so
    # `ssh root@machine systemctl --user ...` and units in ~/.config/systemd/user run without a login session
    linger = root / "var/lib/systemd/linger"
    linger.mkdir(parents=True, exist_ok=True)
    (linger / "root").write_text("")
    for unit in MASKED_UNITS:
        link = root / "etc/systemd/system" / unit
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    for link in list((root / "etc/systemd/system").rglob("*")):  # `systemctl disable`: its wants and alias links
        if link.is_symlink() and os.path.basename(os.readlink(link)) in DISABLED_UNITS:
            link.unlink()
    for leftover in [*(root / "var/cache/apt/archives").glob("*.deb"), *(root / "var/lib/apt/lists").glob("*_*")]:
        leftover.unlink()


# --- the Python of the tests, bound in ---------------------------------------------------------------------------

def python_dirs() -> list[Path]:
    """The directories the running Python needs (its prefixes, the directory of the real executable's
    installation, the existing directories on sys.path), real paths, outermost only; directories of the
    system (/usr, /lib ...), $HOME and its ancestors are left out: the machine has its own."""
    candidates = [sys.prefix, sys.base_prefix, os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))]
    candidates += [p for p in sys.path if p and os.path.isdir(p)]
    home = os.path.realpath(os.path.expanduser("~"))
    found: list[str] = []
    for candidate in candidates:
        path = os.path.realpath(candidate)
        if path == "/" or any(path == d or path.startswith(d + "/") for d in _SYSTEM_DIRS):
            continue
        if path == home or home.startswith(path + "/") or path in ("/tmp", "/root", "/home"):
            continue
        found.append(path)
    outer = [p for p in found if not any(p != q and p.startswith(q + "/") for q in found)]
    return [Path(p) for p in sorted(set(outer))]


# --- the machine -------------------------------------------------------------------------------------------------

def _sh(argv: list[str], check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    """Run a setup command, capturing text; raise SystemdHostError with its stderr when check fails."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise SystemdHostError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def _nspid(pid: int) -> list[int]:
    """The NSpid line of /proc/PID/status (outermost first), [] when gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return [int(tok) for tok in line.split()[1:]]
    except (OSError, ValueError):
        pass
    return []


def _pidns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def _all_pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def _cgroup_pids(directory: Path) -> list[int]:
    """Pids in a cgroup directory and all below it."""
    pids: list[int] = []
    for procs in directory.rglob("cgroup.procs") if directory.is_dir() else []:
        try:
            pids += [int(tok) for tok in procs.read_text().split()]
        except (OSError, ValueError):
            continue
    return pids


def _signal_all(pids, sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _link_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def _keygen(path: Path, comment: str) -> None:
    """A fresh passphrase-less ed25519 key pair at path (replacing an old one)."""
    path.unlink(missing_ok=True)
    Path(f"{path}.pub").unlink(missing_ok=True)
    _sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])
    path.chmod(0o600)


class SystemdHost:
    """One household machine with systemd as PID 1; a context manager (boots in __enter__, tears down in
    __exit__). See the module docstring."""

    def __init__(self, workdir: Path, name: str = "hc-sysd", subnet: str = "10.213.91",
                 client_key: Path | None = None, authorized_keys: Path | str | None = None,
                 binds: list[Path] | tuple = (), ro_binds: list[Path] | tuple = (),
                 boot_timeout: float = BOOT_TIMEOUT, check_python: bool = True, cache: Path | None = None,
                 nspawn_args: list[str] | tuple = ()) -> None:
        if not _NAME_RE.match(name):
            raise ValueError(f"bad machine name {name!r} (1-12 lowercase letters, digits, '-'; a letter first)")
        parts = subnet.split(".")
        if len(parts) != 3 or not all(p.isdigit() and 0 <= int(p) <= 255 for p in parts):
            raise ValueError(f"subnet must look like '10.213.91', got {subnet!r}")
        self.name = name  # machine name = hostname inside = netns name
        self.netns = name
        self.veth = f"{name}-ve"  # the root namespace's end
        self.subnet = subnet
        self.laptop_address = f"{subnet}.1"
        self.address = f"{subnet}.2"
        self.workdir = Path(workdir).resolve()
        self.client_key = Path(client_key) if client_key else self.workdir / "client_key"
        self._authorized_source = authorized_keys
        self.authorized_keys = self.workdir / "authorized_keys"  # bound (read-write) at /root/.ssh/authorized_keys
        self.known_hosts = self.workdir / "known_hosts"
        self.host_key = self.workdir / "ssh_host_ed25519_key"
        self.log = self.workdir / "nspawn.log"
        self.binds = [Path(os.path.realpath(p)) for p in binds]
        self.ro_binds = [Path(os.path.realpath(p)) for p in ro_binds]
        self.python_binds = python_dirs()
        self.boot_timeout = boot_timeout
        self.check_python = check_python
        self.cache = cache
        self.nspawn_args = list(nspawn_args)
        self.cgroup = f"homecluster-sysd-{name}"
        self.rootfs: Path | None = None
        self.built = False  # whether this boot had to build the rootfs first
        self.nspawn_pid: int | None = None
        self.leader: int | None = None  # PID 1 of the machine, as seen from the root namespace
        self.timings: dict[str, float] = {}  # seconds: rootfs (lookup or build), then from nspawn's start:
        # pid1, running (system and user manager), ssh (first login), ready (+ the Python check); total
        self._proc: subprocess.Popen | None = None
        self._log_handle = None
        self._pidns: str | None = None
        self._active = False

    # ----- context manager -------------------------------------------------------------------------------------

    def __enter__(self) -> "SystemdHost":
        ok, reason = can_boot()
        if not ok:
            raise SystemdHostUnavailable(f"cannot boot a systemd machine here: {reason}")
        self._check_binds()
        self._active = True
        atexit.register(self.close)
        try:
            self._teardown()  # leftovers of an earlier run with this name
            self._boot()
        except BaseException as exc:
            left = self.close()
            if left and hasattr(exc, "add_note"):
                exc.add_note("left behind after the failed boot: " + "; ".join(left))
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        left = self.close()
        if left and exc_info[0] is None:
            raise SystemdHostError("left behind after teardown: " + "; ".join(left))

    def close(self) -> list[str]:
        """Power off and remove everything (safe to call twice); returns what could not be removed ([] = clean)."""
        if not self._active:
            return []
        self._active = False
        atexit.unregister(self.close)
        self._teardown()
        return self.leftovers()

    # ----- inside the machine ----------------------------------------------------------------------------------

    def run(self, argv: list[str], *, input: str | None = None, env: dict[str, str] | None = None,
            timeout: float = 120, check: bool = False, cwd: str = "/root") -> subprocess.CompletedProcess:
        """Run argv as root inside the machine (all of PID 1's namespaces and its root, nsenter), in a clean
        environment (PATH, HOME=/root, LANG=C.UTF-8, XDG_RUNTIME_DIR and DBUS_SESSION_BUS_ADDRESS of root's user
        manager so `systemctl --user` works, plus env). Text stdout/stderr captured. The process lives in this
        machine's own cgroup `<cgroup>/run` (outside systemd's view inside), so teardown finds what it leaves.
        check=True raises subprocess.CalledProcessError; a timeout kills it and raises subprocess.TimeoutExpired."""
        if self.leader is None:
            raise SystemdHostError("the machine is not running")
        guest_env = {"PATH": GUEST_PATH, "HOME": "/root", "USER": "root", "LOGNAME": "root", "SHELL": "/bin/bash",
                     "LANG": "C.UTF-8", "TERM": "dumb", "XDG_RUNTIME_DIR": "/run/user/0",
                     "DBUS_SESSION_BUS_ADDRESS": "unix:path=/run/user/0/bus", "SYSTEMD_COLORS": "0",
                     "SYSTEMD_PAGER": "", **(env or {})}
        full = ["nsenter", "-t", str(self.leader), "-m", "-u", "-i", "-n", "-p", "-C", "-r", f"-w{cwd}",
                "/usr/bin/env", "-i", *(f"{k}={v}" for k, v in guest_env.items()), *argv]
        run_groups = [root / self.cgroup / "run" for root in _cgroup_roots()]

        def enter_cgroup() -> None:
            for group in run_groups:
                (group / "cgroup.procs").write_text("0")

        proc = subprocess.Popen(full, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                                preexec_fn=enter_cgroup, env={"PATH": os.environ.get("PATH", GUEST_PATH)})
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            raise subprocess.TimeoutExpired(argv, timeout, output=out, stderr=err) from None
        result = subprocess.CompletedProcess(argv, proc.returncode, out, err)
        if check and result.returncode != 0:
            raise subprocess.CalledProcessError(result.returncode, argv, out, err)
        return result

    def pid_in_root(self, pid_inside: int) -> int:
        """The root-namespace pid of the process that is pid_inside in the machine (its NSpid); LookupError
        when the machine has no such process."""
        if self._pidns is None:
            raise SystemdHostError("the machine is not running")
        if pid_inside == 1 and self.leader is not None:
            return self.leader
        for pid in _all_pids():
            nspid = _nspid(pid)
            if len(nspid) >= 2 and nspid[-1] == pid_inside and _pidns(pid) == self._pidns:
                return pid
        raise LookupError(f"no process {pid_inside} in machine {self.name}")

    def processes(self) -> list[int]:
        """Root-namespace pids of every live process in the machine's pid namespace."""
        if self._pidns is None:
            return []
        return [pid for pid in _all_pids() if _pidns(pid) == self._pidns]

    def ssh_argv(self, *command: str) -> list[str]:
        """OpenSSH argv for `ssh root@address COMMAND...` with the client key and strict known_hosts."""
        return ["ssh", "-F", "/dev/null", "-i", str(self.client_key), "-o", "IdentitiesOnly=yes",
                "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "StrictHostKeyChecking=yes",
                "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR",
                f"root@{self.address}", *command]

    def log_tail(self, lines: int = 40) -> str:
        """The end of nspawn's output (the machine's console), escape sequences removed."""
        try:
            text = _ANSI.sub("", self.log.read_text(errors="replace"))
        except OSError:
            return "(no nspawn log)"
        return "\n".join(text.splitlines()[-lines:]) or "(nspawn log empty)"

    # ----- what is left ----------------------------------------------------------------------------------------

    def leftovers(self) -> list[str]:
        """Everything of this machine still present: processes, cgroups, netns, veth, addresses, mounts,
        nspawn's runtime directories. [] when clean."""
        found = []
        if self.nspawn_pid is not None and Path(f"/proc/{self.nspawn_pid}").exists():
            found.append(f"nspawn pid {self.nspawn_pid}")
        if self._pidns is not None:
            pids = [pid for pid in _all_pids() if _pidns(pid) == self._pidns]
            if pids:
                found.append(f"processes in the machine's pid namespace: {pids}")
        for root in _cgroup_roots():
            group = root / self.cgroup
            if group.exists():
                found.append(f"cgroup {group} (pids {_cgroup_pids(group)})")
        if Path(f"/run/netns/{self.netns}").exists():
            found.append(f"netns {self.netns}")
        if _link_exists(self.veth):
            found.append(f"link {self.veth}")
        addrs = _sh(["ip", "-o", "-4", "addr", "show"], check=False).stdout
        if f" {self.subnet}." in addrs:
            found.append(f"address on {self.subnet}.0/24 in the root namespace")
        for sub in ("propagate", "unix-export"):
            if Path(f"/run/systemd/nspawn/{sub}/{self.name}").exists():
                found.append(f"/run/systemd/nspawn/{sub}/{self.name}")
        for path in filter(None, [self.rootfs, Path(f"/run/netns/{self.netns}")]):
            found += [f"mount {m}" for m in mounts_under(path)]
        return found

    # ----- booting ---------------------------------------------------------------------------------------------

    def _check_binds(self) -> None:
        for path in [*self.binds, *self.ro_binds, *self.python_binds]:
            if not path.is_dir():
                raise ValueError(f"bind source {path} is not a directory")
            if ":" in str(path) or "," in str(path):
                raise ValueError(f"bind source {path}: ':' and ',' are not supported in paths")

    def _boot(self) -> None:
        t0 = time.monotonic()
        self._check_subnet_free()
        self.rootfs, self.built = rootfs(self.cache)
        self.timings["rootfs"] = time.monotonic() - t0
        self._write_files()
        self._make_network()
        self._make_cgroups()
        t1 = time.monotonic()
        self._start_nspawn()
        self._wait_leader(t1)
        self.timings["pid1"] = time.monotonic() - t1
        self._wait_running(t1)
        self.timings["running"] = time.monotonic() - t1
        self._check_ssh(t1)
        self.timings["ssh"] = time.monotonic() - t1
        if self.check_python:
            self._check_python()
        self.timings["ready"] = time.monotonic() - t1
        self.timings["total"] = time.monotonic() - t0

    def _check_subnet_free(self) -> None:
        out = _sh(["ip", "-o", "-4", "addr", "show"]).stdout
        if f" {self.subnet}." in out:
            raise SystemdHostError(f"subnet {self.subnet}.0/24 already in use in the root namespace:\n{out}")

    def _write_files(self) -> None:
        """Client key (if missing), the per-boot host key, authorized_keys, known_hosts, /etc/hosts."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.client_key.exists():
            self.client_key.parent.mkdir(parents=True, exist_ok=True)
            _keygen(self.client_key, "homecluster-test-client")
        _keygen(self.host_key, self.name)
        source = self._authorized_source
        if source is None:
            text = Path(f"{self.client_key}.pub").read_text()
        elif isinstance(source, Path):
            text = source.read_text()
        else:
            text = source
        self.authorized_keys.write_text(text if text.endswith("\n") else text + "\n")
        self.authorized_keys.chmod(0o600)
        keytype, blob = Path(f"{self.host_key}.pub").read_text().split()[:2]
        self.known_hosts.write_text(f"{self.address} {keytype} {blob}\n")
        (self.workdir / "hosts").write_text(
            f"127.0.0.1\tlocalhost\n127.0.1.1\t{self.name}\n::1\tlocalhost ip6-localhost ip6-loopback\n")

    def _make_network(self) -> None:
        """netns + veth: <subnet>.1/24 in the root namespace (no forwarding), <subnet>.2/24 on host0 inside."""
        ns = self.netns
        _sh(["ip", "netns", "add", ns])
        _sh(["ip", "-n", ns, "link", "set", "lo", "up"])
        _sh(["ip", "link", "add", self.veth, "type", "veth", "peer", "name", HOST_IF, "netns", ns])
        Path(f"/proc/sys/net/ipv4/conf/{self.veth}/forwarding").write_text("0\n")
        _sh(["ip", "addr", "add", f"{self.laptop_address}/24", "dev", self.veth])
        _sh(["ip", "link", "set", self.veth, "up"])
        _sh(["ip", "-n", ns, "addr", "add", f"{self.address}/24", "dev", HOST_IF])
        _sh(["ip", "-n", ns, "link", "set", HOST_IF, "up"])

    def _make_cgroups(self) -> None:
        """Our own cgroup parent per hierarchy: nspawn (--keep-unit, no host systemd) makes <it>/supervisor for
        itself and <it>/payload for the machine; <it>/run holds what `run` starts."""
        for root in _cgroup_roots():
            try:
                (root / self.cgroup / "run").mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise SystemdHostUnavailable(f"cannot make cgroup {root / self.cgroup}: {exc}") from None

    def _nspawn_argv(self) -> list[str]:
        argv = [NSPAWN, "--quiet", "-D", str(self.rootfs), "--boot", f"--machine={self.name}",
                f"--hostname={self.name}", f"--network-namespace-path=/run/netns/{self.netns}", "--register=no",
                "--keep-unit", "--volatile=overlay", "--link-journal=no", "--console=passive",
                "--resolv-conf=delete", "--timezone=off",
                f"--bind-ro={self.host_key}:/etc/ssh/ssh_host_ed25519_key",
                f"--bind-ro={self.host_key}.pub:/etc/ssh/ssh_host_ed25519_key.pub",
                f"--bind={self.authorized_keys}:/root/.ssh/authorized_keys",
                f"--bind-ro={self.workdir / 'hosts'}:/etc/hosts"]
        argv += [f"--bind-ro={p}" for p in [*self.python_binds, *self.ro_binds]]
        argv += [f"--bind={p}" for p in self.binds]
        return argv + self.nspawn_args

    def _start_nspawn(self) -> None:
        groups = [root / self.cgroup for root in _cgroup_roots()]

        def enter_cgroup() -> None:
            for group in groups:
                (group / "cgroup.procs").write_text("0")

        self._log_handle = open(self.log, "w")
        self._proc = subprocess.Popen(self._nspawn_argv(), stdin=subprocess.DEVNULL, stdout=self._log_handle,
                                      stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=enter_cgroup,
                                      env={"PATH": os.environ.get("PATH", GUEST_PATH), "SYSTEMD_COLORS": "0",
                                           "LANG": "C.UTF-8"})
        self.nspawn_pid = self._proc.pid

    def _fail(self, what: str, unavailable: bool = False) -> None:
        cls = SystemdHostUnavailable if unavailable else SystemdHostError
        raise cls(f"{what}\n--- {' '.join(self._nspawn_argv())}\n--- nspawn log ({self.log}):\n{self.log_tail()}")

    def _remaining(self, t0: float) -> float:
        return self.boot_timeout - (time.monotonic() - t0)

    def _wait_leader(self, t0: float) -> None:
        """Find the machine's PID 1 (NSpid ends in 1) among the processes in our payload cgroup."""
        payload = _cgroup_roots()[0] / self.cgroup / "payload"
        while True:
            for pid in _cgroup_pids(payload):
                nspid = _nspid(pid)
                if len(nspid) >= 2 and nspid[-1] == 1:
                    self.leader, self._pidns = pid, _pidns(pid)
                    return
            if self._proc.poll() is not None:
                self._fail(f"systemd-nspawn cannot run here: it exited ({self._proc.returncode}) before the "
                           "machine's PID 1 started", unavailable=True)
            if self._remaining(t0) <= 0:
                self._fail(f"boot timeout: no PID 1 in {payload} after {self.boot_timeout:g} s")
            time.sleep(0.02)

    def _wait_running(self, t0: float) -> None:
        """`systemctl is-system-running` = running, for the system and root's user manager (linger)."""
        for label, argv in (("system", ["systemctl", "is-system-running"]),
                            ("root's user manager", ["systemctl", "--user", "is-system-running"])):
            state = ""
            while True:
                if self._proc.poll() is not None:
                    self._fail(f"the machine stopped ({self._proc.returncode}) while booting (state {state!r})")
                try:
                    state = self.run(argv, timeout=max(1.0, self._remaining(t0))).stdout.strip()
                except subprocess.TimeoutExpired:
                    state = "(systemctl timed out)"
                if state == "running":
                    break
                if state in ("degraded", "maintenance", "stopping"):
                    failed = self.run(["systemctl", *argv[1:-1], "--failed", "--no-pager", "--no-legend"],
                                      timeout=30).stdout
                    self._fail(f"{label} is {state!r}, failed units:\n{failed}")
                if self._remaining(t0) <= 0:
                    jobs = self.run(["systemctl", *argv[1:-1], "list-jobs", "--no-pager"], timeout=10).stdout
                    self._fail(f"boot timeout: {label} is {state!r} after {self.boot_timeout:g} s; jobs:\n{jobs}")
                time.sleep(0.05)

    def _check_ssh(self, t0: float) -> None:
        """A real login from the root namespace with the client key and strict host key checking."""
        while True:
            try:
                proc = subprocess.run(self.ssh_argv("true"), capture_output=True, text=True,
                                      timeout=max(2.0, self._remaining(t0)), stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired:
                self._fail(f"boot timeout: ssh root@{self.address} hangs")
            if proc.returncode == 0:
                return
            if self._remaining(t0) <= 0:
                sshd = self.run(["journalctl", "-u", "ssh.service", "--no-pager", "-n", "20"], timeout=10).stdout
                self._fail(f"boot timeout: ssh root@{self.address} fails: {proc.stderr.strip()}\nsshd:\n{sshd}")
            time.sleep(0.1)

    def _check_python(self) -> None:
        probe = [sys.executable, "-c", "import distributed; print(distributed.__version__)"]
        proc = self.run(probe, timeout=120)
        if proc.returncode != 0:
            self._fail(f"the test's Python does not run inside the machine ({' '.join(probe)}, bound: "
                       f"{', '.join(map(str, self.python_binds))}):\n{proc.stderr.strip()}")

    # ----- teardown --------------------------------------------------------------------------------------------

    def _teardown(self) -> None:
        """Power off, kill what is left (cgroups, pid namespace, netns), remove cgroups, netns, veth, runtime
        directories. Works from names alone, so it also clears an earlier run's leftovers."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)  # nspawn: a clean poweroff of the machine
            try:
                self._proc.wait(POWEROFF_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(10)
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None
        roots = _cgroup_roots()
        groups = [root / self.cgroup for root in roots]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            victims = {pid for group in groups for pid in _cgroup_pids(group)}
            if self._pidns is not None:
                victims |= {pid for pid in _all_pids() if _pidns(pid) == self._pidns}
            if not victims:
                break
            _signal_all(sorted(victims), signal.SIGKILL)
            time.sleep(0.05)
        for group in groups:
            if group.is_dir():
                for sub in sorted((d for d in group.rglob("*") if d.is_dir()), key=lambda d: len(d.parts),
                                  reverse=True) + [group]:
                    try:
                        sub.rmdir()
                    except OSError:
                        pass
        if Path(f"/run/netns/{self.netns}").exists():
            netns_pids = _sh(["ip", "netns", "pids", self.netns], check=False).stdout.split()
            _signal_all([int(p) for p in netns_pids if p.isdigit()], signal.SIGKILL)
            _sh(["ip", "netns", "del", self.netns], check=False)
        if _link_exists(self.veth):
            _sh(["ip", "link", "del", self.veth], check=False)
        for sub in ("propagate", "unix-export"):
            shutil.rmtree(f"/run/systemd/nspawn/{sub}/{self.name}", ignore_errors=True)
        for directory in ("/run/systemd/nspawn/propagate", "/run/systemd/nspawn/unix-export",
                          "/run/systemd/nspawn/locks", "/run/systemd/nspawn"):
            try:
                os.rmdir(directory)  # only when empty: another machine may be running
            except OSError:
                pass
        self.leader = None
