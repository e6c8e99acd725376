"""A real Docker engine per simulated household machine (and one for the laptop), for tests.

    with DockerEngine(tmp / "laptop", "hcdk-laptop") as laptop, \\
         DockerEngine(tmp / "desktop", "hcdk-desktop", household.nsenter_argv("desktop")) as desktop:
        image = base_image(laptop)                  # homecluster-test/python:3.11, imported once per engine
        copy_image(laptop, desktop, image)          # `docker save | docker load`, through pipes
        desktop.docker("run", "--rm", "--network", "host", image, "python3", "-c", "...")
        desktop.stop_daemon(); desktop.start_daemon()    # "Docker is not running" and back
    # closed: containers removed, daemons stopped, mounts, cgroups, sockets and directories gone

Each engine is its own containerd plus its own dockerd talking to it (`--containerd`, so a system containerd
at /run/containerd/containerd.sock is never used or shared), started inside a household host's network and UTS
namespaces with `nsenter --net=/run/netns/<ns> --uts=<utsfile>` (not `ip netns exec`: that remounts /sys in a
new mount namespace and dockerd dies with "Devices cgroup isn't mounted"), or in the root namespace (the
user's laptop) when no nsenter prefix is given. containerd must be in the host's namespaces too: a
`--network host` container shares the network and UTS namespaces of its runc, i.e. of containerd's shim, so it
binds the host's address and `socket.gethostname()` is the host's name, as on a real machine.

dockerd runs with `--iptables=false --ip-forward=false --bridge=none` (it leaves the machine's firewall and
forwarding alone; containers use `--network host`), its own empty `--config-file` (never /etc/docker/daemon.json),
`native.cgroupdriver=cgroupfs` and the relative `--cgroup-parent hc-docker-<name>`: every container's cgroup is
`<containerd's cgroup>/hc-docker-<name>/<id>` in each hierarchy (so on this hybrid cgroup-v1 machine it stays in
the test's own memory cgroup, and engines never share the `docker` parent).

Where things are: short paths (unix sockets are limited to 108 bytes) under /run/hc-docker/<name>/ (docker.sock,
containerd.sock, dockerd's --exec-root, containerd's state, configs, pid file); data (images, containers) and the
daemons' own logs (dockerd.log, containerd.log) in `workdir`. containerd's shims put their sockets in the fixed
/run/containerd/s/<sha256(containerd-address/moby/<id>)>; those are removed by id.

What dockerd leaves behind even after a clean shutdown, and `close()` removes: the nsfs mount
<exec-root>/netns/default (it pins the host's network namespace: `ip netns del` would not free it), the
`hc-docker-<name>` cgroup parents in every hierarchy (cpu, cpuacct, cpuset, memory, devices, freezer, blkio,
pids, name=systemd and the cgroup2 `unified` one), containerd's `.ttrpc` socket. After a crash (daemons
SIGKILLed) also the shims, the containers' processes, overlay and shm mounts and the data-root's bind mount.

The base image: `debootstrap --variant=minbase --include=ca-certificates,python3,python3-venv bookworm`
(Python 3.11, `python3 -m venv` with pip works: python3-venv brings python3.11-venv and the pip/setuptools
wheels), cached as a tarball by tests/fresh_machine.py (keyed by suite, variant, architecture and packages,
built under a lock and renamed into place only when complete; ~1 minute the first time), imported with apt's
package lists and caches, documentation, manual pages and message catalogues left out (123 MB). No registry
is reachable here: images only move by `docker save | docker load` (`copy_image`).

Needs root, dockerd, containerd, runc, the docker CLI, util-linux (nsenter, umount) and debootstrap for the
first build; see ``can_run()``.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from fresh_machine import BuildError, debian_rootfs, mounts_under, remove_tree

BASE_IMAGE = "homecluster-test/python:3.11"
SUITE = "bookworm"
VARIANT = "minbase"
PACKAGES = ("ca-certificates", "python3", "python3-venv")
RUN_ROOT = Path("/run/hc-docker")  # short socket paths
SHIM_SOCKETS = Path("/run/containerd/s")  # where containerd 1.6 shims always put theirs
CGROUP_BASE = Path("/sys/fs/cgroup")
CONTAINERD_NAMESPACE = "moby"  # dockerd's namespace in its containerd
GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
START_TIMEOUT = 30.0
SHUTDOWN_TIMEOUT = 15  # dockerd --shutdown-timeout: how long it waits for containers to stop when told to exit
STOP_TIMEOUT = SHUTDOWN_TIMEOUT + 15.0  # then SIGKILL
KILL_GRACE = 10.0
_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,23}$")
# Not in the image (220 MB -> 123 MB, like Debian's -slim images): what debootstrap leaves of apt's index (~50 MB,
# `apt-get update` brings it back) and caches, documentation, manual pages and message catalogues (~46 MB).
_DROPPED = re.compile(r"^(var/lib/apt/lists/.+_.+|var/cache/apt/.+\.bin|var/cache/apt/archives/.+\.deb"
                      r"|usr/share/(doc|man|info)/.+|usr/share/locale/[^/]+/.+)$")


class DockerEngineError(RuntimeError):
    """An engine could not be started, stopped or cleaned up (the message says why, with the daemon's log)."""


class DockerUnavailable(DockerEngineError):
    """Docker (or root, debootstrap, a mirror for the first build ...) is missing here: skip."""


# --- can it run here ---------------------------------------------------------------------------------------------

def docker_cli() -> str | None:
    """The docker CLI on PATH (/usr/local/bin/docker, or /usr/bin/docker from Debian's docker.io), or None."""
    return shutil.which("docker")


def can_run() -> tuple[bool, str]:
    """Tell whether DockerEngines can run here and the base image can be had: (True, "") or (False, reason)."""
    if sys.platform != "linux":
        return False, "needs Linux"
    if os.geteuid() != 0:
        return False, "needs root"
    for tool, package in (("dockerd", "docker.io"), ("docker", "docker.io"), ("containerd", "containerd"),
                          ("containerd-shim-runc-v2", "containerd"), ("runc", "runc"),
                          ("debootstrap", "debootstrap"), ("nsenter", "util-linux"), ("umount", "util-linux")):
        if shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None:
            return False, f"`{tool}` not found (apt-get install -y --no-install-recommends {package})"
    if not _cgroup_mounts():
        return False, "no cgroup hierarchy mounted under /sys/fs/cgroup"
    probe = subprocess.run([_sbin("dockerd"), "--version"], capture_output=True, text=True)
    if probe.returncode != 0:
        return False, f"`dockerd --version` failed: {(probe.stderr or probe.stdout).strip()}"
    return True, ""


def _sbin(tool: str) -> str:
    return shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") or tool


# --- the base image ----------------------------------------------------------------------------------------------

def base_rootfs() -> Path:
    """The cached rootfs tarball of the base image (built with debootstrap on first use, ~1 minute)."""
    try:
        return debian_rootfs(SUITE, PACKAGES, VARIANT)
    except BuildError as exc:
        raise DockerUnavailable(f"cannot build the base image's rootfs: {exc}") from None
    except OSError as exc:  # debootstrap missing
        raise DockerUnavailable(f"cannot build the base image's rootfs: {exc}") from None


def base_image(engine: "DockerEngine", tag: str = BASE_IMAGE) -> str:
    """Import the base image into `engine` as `tag` unless it already has that tag; returns the tag."""
    if engine.docker("image", "inspect", "--format", "{{.Id}}", tag, check=False).returncode == 0:
        return tag
    tarball = base_rootfs()
    argv = [*engine.docker_argv("import"),
            "--change", f"ENV PATH={GUEST_PATH}", "--change", "ENV LANG=C.UTF-8",
            "--change", 'CMD ["python3"]',
            "--change", f"LABEL org.homecluster.test.rootfs={tarball.name}",
            "-", tag]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=engine.env())
    try:
        try:
            with tarfile.open(tarball, "r|gz") as src, \
                    tarfile.open(fileobj=proc.stdin, mode="w|", format=tarfile.PAX_FORMAT) as dst:
                dropped: set[str] = set()
                for member in src:
                    if _DROPPED.match(_member_path(member.name)) or (
                            member.islnk() and _member_path(member.linkname) in dropped):
                        dropped.add(_member_path(member.name))
                        continue
                    dst.addfile(member, src.extractfile(member) if member.isreg() else None)
        except BrokenPipeError:
            pass  # docker import died: its stderr says why
        finally:
            try:
                proc.stdin.close()
            except BrokenPipeError:
                pass
        out = proc.stdout.read()  # the image id, or why not
        proc.wait(timeout=60)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        proc.stdout.close()
    if proc.returncode != 0:
        raise DockerEngineError(f"docker import {tarball} as {tag} failed ({proc.returncode}): "
                                f"{out.decode(errors='replace').strip()}\n{engine.log_tail()}")
    return tag


def _member_path(name: str) -> str:
    return name[2:] if name.startswith("./") else name


def copy_image(src: "DockerEngine", dst: "DockerEngine", image: str, timeout: float = 300) -> str:
    """`docker save IMAGE | docker load` from one engine to another through a pipe (how an image reaches a host
    without a registry); returns `docker load`'s output."""
    save = subprocess.Popen(src.docker_argv("save", image), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=src.env())
    try:
        load = subprocess.Popen(dst.docker_argv("load"), stdin=save.stdout, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=dst.env())
    except BaseException:
        save.kill()
        save.wait()
        raise
    save.stdout.close()  # only `docker load` holds the read end now: it sees EOF (or save sees EPIPE)
    try:
        out, load_err = load.communicate(timeout=timeout)
        save_err = save.stderr.read()
        save.wait(timeout=30)
    except BaseException:
        for proc in (save, load):
            proc.kill()
            proc.wait()
        raise
    finally:
        save.stderr.close()
    if save.returncode != 0 or load.returncode != 0:
        raise DockerEngineError(f"docker save {image} ({src.name}, {save.returncode}) | docker load ({dst.name}, "
                                f"{load.returncode}) failed: {save_err.decode(errors='replace').strip()} "
                                f"{load_err.decode(errors='replace').strip()}")
    return out.decode(errors="replace")


# --- small helpers -----------------------------------------------------------------------------------------------

def _sh(argv: list[str], check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise DockerEngineError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def _signal_all(pids, sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _alive(pid: int) -> bool:
    """True while pid exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _cmdline(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)


def _all_pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def _unix_connectable(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect(str(path))
            return True
        except OSError:
            return False


def _ping(path: Path) -> bool:
    """True when a Docker API answers GET /_ping with 200 on the unix socket at path."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2.0)
        try:
            sock.connect(str(path))
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return sock.recv(64).split(b"\r\n", 1)[0].split()[1:2] == [b"200"]
        except (OSError, IndexError):
            return False


def _cgroup_mounts() -> dict[frozenset[str], Path]:
    """Mounted cgroup hierarchies: {its controllers (or {'name=systemd'}; {} for cgroup2): mount point}."""
    found: dict[frozenset[str], Path] = {}
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3 or fields[3] != "/":
            continue
        if tail[0] == "cgroup2":
            found.setdefault(frozenset(), Path(fields[4]))
        elif tail[0] == "cgroup":  # super options: rw,cpu,cpuacct or rw,xattr,name=systemd ...
            found.setdefault(frozenset(tail[2].split(",")), Path(fields[4]))
    return found


def _cgroup_dirs(pid: int | str = "self") -> list[Path]:
    """The cgroup directories of a process, one per mounted hierarchy (/proc/PID/cgroup mapped onto mounts)."""
    mounts = _cgroup_mounts()
    dirs = []
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        key = frozenset(c for c in controllers.split(",") if c)
        if key:  # a v1 hierarchy: the mount whose options name all its controllers (or its name=)
            mount = next((m for k, m in mounts.items() if k and key <= k), None)
        else:
            mount = mounts.get(frozenset())
        if mount is not None:
            dirs.append(mount / path.lstrip("/"))
    return dirs


def _cgroup_tree_pids(directory: Path) -> list[int]:
    pids: list[int] = []
    if not directory.is_dir():
        return pids
    for procs in directory.rglob("cgroup.procs"):
        try:
            pids += [int(tok) for tok in procs.read_text().split()]
        except (OSError, ValueError):
            continue
    return pids


def _remove_cgroup_tree(directory: Path) -> None:
    if not directory.is_dir():
        return
    subs = sorted((d for d in directory.rglob("*") if d.is_dir()), key=lambda d: len(d.parts), reverse=True)
    for sub in [*subs, directory]:
        for _ in range(50):  # a cgroup whose last task just died can be busy for a moment
            try:
                sub.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.02)


def _umount_all(paths: list[Path]) -> None:
    """Unmount everything at or below each path (deepest first), lazily when a plain umount fails."""
    for _ in range(3):
        points = sorted({p for path in paths for p in mounts_under(path)}, key=len, reverse=True)
        if not points:
            return
        for point in points:
            if _sh(["umount", point], check=False).returncode != 0:
                _sh(["umount", "-l", point], check=False)


# --- the engine --------------------------------------------------------------------------------------------------

class DockerEngine:
    """A containerd + dockerd pair of our own; a context manager (starts in __enter__, removes everything in
    __exit__). See the module docstring."""

    def __init__(self, workdir: Path | str, name: str, nsenter_prefix: list[str] | None = None,
                 storage_driver: str | None = None, start_timeout: float = START_TIMEOUT) -> None:
        """workdir: this engine's own directory (data and logs); name: unique among engines running at once
        (also the socket directory /run/hc-docker/<name>/); nsenter_prefix: e.g. Household.nsenter_argv(host),
        None for the root namespace (the laptop); storage_driver: dockerd's --storage-driver (None: its choice,
        overlay2 on this machine's ext4)."""
        if not _NAME_RE.match(name):
            raise ValueError(f"bad engine name {name!r} (1-24 lowercase letters, digits, '-'; a letter first)")
        self.name = name
        self.workdir = Path(workdir).resolve()
        self.nsenter_prefix = list(nsenter_prefix or [])
        self.storage_driver = storage_driver
        self.start_timeout = start_timeout
        self.data_root = self.workdir / "docker"
        self.containerd_root = self.workdir / "containerd"
        self.log = self.workdir / "dockerd.log"
        self.containerd_log = self.workdir / "containerd.log"
        self.run_dir = RUN_ROOT / name
        self.socket = self.run_dir / "docker.sock"
        self.containerd_socket = self.run_dir / "containerd.sock"
        self.exec_root = self.run_dir / "exec"
        self.containerd_state = self.run_dir / "containerd"
        self.pidfile = self.run_dir / "dockerd.pid"
        self.daemon_config = self.run_dir / "daemon.json"
        self.containerd_config = self.run_dir / "containerd.toml"
        self.cgroup_parent = f"hc-docker-{name}"
        self.dockerd_pid: int | None = None
        self.containerd_pid: int | None = None
        self.timings: dict[str, float] = {}  # seconds of the last start: containerd, dockerd
        self._dockerd: subprocess.Popen | None = None
        self._containerd: subprocess.Popen | None = None
        self._cgroup_bases: set[Path] = set(_cgroup_dirs())  # where containerd's cgroup is (ours, inherited)
        self._container_ids: set[str] = set()
        self._active = False

    # ----- context manager -------------------------------------------------------------------------------------

    def __enter__(self) -> "DockerEngine":
        ok, reason = can_run()
        if not ok:
            raise DockerUnavailable(f"cannot run a Docker engine here: {reason}")
        self._active = True
        atexit.register(self.close)
        try:
            self._teardown(earlier_run=True)  # leftovers of an earlier run with this name
            self.start_daemon()
        except BaseException as exc:
            left = self.close()
            if left and hasattr(exc, "add_note"):
                exc.add_note("left behind after the failed start: " + "; ".join(left))
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        left = self.close()
        if left and exc_info[0] is None:
            raise DockerEngineError(f"engine {self.name} left behind: " + "; ".join(left))

    def close(self) -> list[str]:
        """Remove every container, stop both daemons (SIGTERM, then SIGKILL), kill what is left of the engine,
        unmount, remove cgroups, sockets and directories (the logs stay). Safe to call twice; returns
        `leftovers()` ([] = clean)."""
        if not self._active:
            return []
        self._active = False
        atexit.unregister(self.close)
        try:
            if self.running():
                ids = self.docker("ps", "-aq", "--no-trunc", check=False, timeout=30).stdout.split()
                self._container_ids.update(ids)
                if ids:
                    self.docker("rm", "-f", *ids, check=False, timeout=120)
        except (subprocess.TimeoutExpired, OSError, DockerEngineError):
            pass  # a hung or missing daemon: the teardown kills what is left
        finally:
            self._teardown()
        return self.leftovers()

    # ----- talking to it ---------------------------------------------------------------------------------------

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket}"

    def env(self) -> dict[str, str]:
        """os.environ with DOCKER_HOST set to this engine (and no DOCKER_CONTEXT to override it)."""
        env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_CONTEXT", "DOCKER_TLS_VERIFY",
                                                                 "DOCKER_CERT_PATH")}
        env["DOCKER_HOST"] = self.docker_host
        return env

    def docker_argv(self, *args: str) -> list[str]:
        """The docker CLI command line for args (run it with env=self.env())."""
        cli = docker_cli()
        if cli is None:
            raise DockerUnavailable("the docker CLI is not on PATH")
        return [cli, *map(str, args)]

    def docker(self, *args: str, check: bool = True, timeout: float = 120, input: str | None = None,
               ) -> subprocess.CompletedProcess:
        """Run the docker CLI against this engine, text captured; check=True raises DockerEngineError."""
        proc = subprocess.run(self.docker_argv(*args), capture_output=True, text=True, timeout=timeout,
                              env=self.env(), input=input, stdin=None if input is not None else subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise DockerEngineError(f"docker {' '.join(map(str, args))} ({self.name}) failed ({proc.returncode}):\n"
                                    f"{proc.stderr.strip()}")
        return proc

    def running(self) -> bool:
        """True when dockerd answers on its socket."""
        return _ping(self.socket)

    def log_tail(self, lines: int = 25) -> str:
        parts = []
        for label, path in (("dockerd", self.log), ("containerd", self.containerd_log)):
            try:
                tail = path.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                tail = ["(no log)"]
            parts.append(f"--- {label} log ({path}):\n" + "\n".join(tail))
        return "\n".join(parts)

    # ----- the daemons -----------------------------------------------------------------------------------------

    def start_daemon(self) -> None:
        """Start containerd, then dockerd, and wait until dockerd answers (containers with a restart policy come
        back as dockerd starts)."""
        if not self._active:
            raise DockerEngineError(f"engine {self.name} is closed")
        if self.running():
            raise DockerEngineError(f"engine {self.name} is already running")
        self._stop_daemons()  # a half-dead pair (one of them crashed)
        for directory in (self.workdir, self.data_root, self.containerd_root):
            directory.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        (self.run_dir / "workdir").write_text(f"{self.workdir}\n")  # for the cleanup after a crashed run
        # its own trust key too: without a path dockerd 20.10 creates /etc/docker/key.json on first start
        self.daemon_config.write_text(json.dumps({"deprecated-key-path": str(self.run_dir / "key.json")}) + "\n")
        self.containerd_config.write_text(self._containerd_toml())
        t0 = time.monotonic()
        self._containerd = self._spawn([_sbin("containerd"), "--config", str(self.containerd_config)],
                                       self.containerd_log)
        self.containerd_pid = self._containerd.pid
        self._wait_ready("containerd", self._containerd, lambda: _unix_connectable(self.containerd_socket))
        self._cgroup_bases.update(_cgroup_dirs(self.containerd_pid))
        (self.run_dir / "cgroups").write_text("".join(f"{base}\n" for base in sorted(self._cgroup_bases)))
        t1 = time.monotonic()
        self._dockerd = self._spawn(self._dockerd_argv(), self.log)
        self.dockerd_pid = self._dockerd.pid
        self._wait_ready("dockerd", self._dockerd, self.running)
        self.timings = {"containerd": t1 - t0, "dockerd": time.monotonic() - t1}

    def stop_daemon(self) -> None:
        """Stop dockerd (SIGTERM: it stops the containers, as on shutdown; SIGKILL after STOP_TIMEOUT s), then
        containerd; afterwards `docker` cannot connect ("Is the docker daemon running?"). Containers with
        --restart always/unless-stopped come back with `start_daemon`."""
        self._stop_daemons()
        if self.running():
            raise DockerEngineError(f"engine {self.name} still answers on {self.socket} after stopping")

    def pids(self) -> list[int]:
        """Every live process of this engine: the daemons, containerd's shims, the containers' processes (found
        by the engine's socket directory on their command line and by the containers' cgroups)."""
        marker = f"{self.run_dir}/"
        found = {pid for pid in (self.dockerd_pid, self.containerd_pid) if pid and _alive(pid)}
        for pid in _all_pids():
            cmd = _cmdline(pid)
            if cmd and marker in cmd and pid != os.getpid():
                found.add(pid)
        for group in self._cgroup_groups():
            found.update(_cgroup_tree_pids(group))
        return sorted(pid for pid in found if _alive(pid))

    def leftovers(self) -> list[str]:
        """Everything of this engine still present: processes, mounts, cgroups, sockets, directories. [] when
        clean (only meaningful after close)."""
        found = [f"process {pid}: {_cmdline(pid)}" for pid in self.pids()]
        found += [f"mount {m}" for m in self._mounts()]
        found += [f"cgroup {g}" for g in self._cgroup_groups() if g.exists()]
        found += [f"socket {s}" for s in self._shim_sockets() if s.exists()]
        if self.run_dir.exists():
            found.append(f"directory {self.run_dir}: {sorted(p.name for p in self.run_dir.iterdir())}")
        found += [f"directory {d}" for d in (self.data_root, self.containerd_root) if d.exists()]
        return found

    # ----- internals -------------------------------------------------------------------------------------------

    def _containerd_toml(self) -> str:
        """containerd's config (what dockerd would write for its own containerd, in our directories): no CRI, no
        snapshotters docker does not use, no debug/metrics listeners; `opt` inside our root, not /opt."""
        return (
            "version = 2\n"
            f'root = "{self.containerd_root}"\n'
            f'state = "{self.containerd_state}"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",\n'
            '  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",\n'
            '  "io.containerd.snapshotter.v1.aufs"]\n'
            "[grpc]\n"
            f'  address = "{self.containerd_socket}"\n'
            "[ttrpc]\n"
            f'  address = "{self.containerd_socket}.ttrpc"\n'
            "[debug]\n"
            '  address = ""\n'
            "[metrics]\n"
            '  address = ""\n'
            '[plugins."io.containerd.internal.v1.opt"]\n'
            f'  path = "{self.containerd_root}/opt"\n'
        )

    def _dockerd_argv(self) -> list[str]:
        argv = [_sbin("dockerd"), "--config-file", str(self.daemon_config),
                "--data-root", str(self.data_root), "--exec-root", str(self.exec_root),
                "--pidfile", str(self.pidfile), "-H", self.docker_host,
                "--containerd", str(self.containerd_socket),
                "--iptables=false", "--ip-forward=false", "--bridge=none", "--ip-masq=false",
                "--exec-opt", "native.cgroupdriver=cgroupfs", "--cgroup-parent", self.cgroup_parent,
                "--shutdown-timeout", str(SHUTDOWN_TIMEOUT)]
        if self.storage_driver:
            argv += ["--storage-driver", self.storage_driver]
        return argv

    def _spawn(self, argv: list[str], log: Path) -> subprocess.Popen:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "CONTAINERD_"))}
        env["PATH"] = env.get("PATH", GUEST_PATH) + ":/usr/sbin:/sbin"
        with open(log, "a") as out:  # appended: a restart keeps the earlier start's log
            return subprocess.Popen([*self.nsenter_prefix, *argv], stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True, env=env)

    def _wait_ready(self, what: str, proc: subprocess.Popen, ready) -> None:
        deadline = time.monotonic() + self.start_timeout
        while not ready():
            if proc.poll() is not None:
                raise DockerEngineError(f"{what} of engine {self.name} exited ({proc.returncode}) before it was "
                                        f"ready\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise DockerEngineError(f"{what} of engine {self.name} not ready after {self.start_timeout:g} s\n"
                                        f"{self.log_tail()}")
            time.sleep(0.05)

    def _stop_daemons(self) -> None:
        """SIGTERM dockerd, then containerd; SIGKILL whichever does not exit in time; reap them; unmount the nsfs
        mount dockerd leaves (it would keep the host's network namespace alive) and remove stale sockets."""
        for proc, timeout in ((self._dockerd, STOP_TIMEOUT), (self._containerd, KILL_GRACE)):
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(KILL_GRACE)
        self._dockerd = self._containerd = None
        _umount_all([self.exec_root / "netns"])
        for stale in (self.socket, self.containerd_socket, Path(f"{self.containerd_socket}.ttrpc")):
            if stale.exists() and not _unix_connectable(stale):
                stale.unlink(missing_ok=True)

    def _teardown(self, earlier_run: bool = False) -> None:
        """Stop the daemons, SIGKILL whatever else of the engine lives, unmount, remove shim sockets, cgroups and
        directories. From names alone (and the workdir recorded in the socket directory), so it also clears an
        earlier run's leftovers."""
        self._stop_daemons()
        data_dirs = [self.data_root, self.containerd_root]
        if earlier_run:
            try:
                old = Path((self.run_dir / "workdir").read_text().strip())
                data_dirs += [old / "docker", old / "containerd"]
            except OSError:
                pass
            try:  # that run's containerd may have been in other cgroups (another memory cgroup ...)
                self._cgroup_bases.update(Path(line) for line in (self.run_dir / "cgroups").read_text().split()
                                          if line.startswith(f"{CGROUP_BASE}/"))
            except OSError:
                pass
        self._container_ids.update(self._known_ids(data_dirs))
        deadline = time.monotonic() + KILL_GRACE
        while (victims := self.pids()) and time.monotonic() < deadline:
            _signal_all(victims, signal.SIGKILL)
            time.sleep(0.05)
        _umount_all([*data_dirs, self.run_dir])
        for sock in self._shim_sockets():
            sock.unlink(missing_ok=True)
        for group in self._cgroup_groups():
            _remove_cgroup_tree(group)
        for directory in [*data_dirs, self.run_dir]:
            try:
                remove_tree(directory)
            except (RuntimeError, subprocess.CalledProcessError):
                pass  # reported by leftovers()
        try:
            RUN_ROOT.rmdir()  # only when empty: other engines may be running
        except OSError:
            pass
        self.dockerd_pid = self.containerd_pid = None

    def _known_ids(self, data_dirs: list[Path]) -> set[str]:
        """Container ids found in dockerd's and containerd's state (for their shims' sockets)."""
        ids = set()
        for directory in [*(d / "containers" for d in data_dirs),
                          self.containerd_state / "io.containerd.runtime.v2.task" / CONTAINERD_NAMESPACE,
                          self.exec_root / "containerd"]:
            try:
                ids.update(entry.name for entry in directory.iterdir() if re.fullmatch(r"[0-9a-f]{64}", entry.name))
            except OSError:
                pass
        return ids

    def _shim_sockets(self) -> list[Path]:
        """containerd 1.6: a shim listens on /run/containerd/s/<sha256 of '<address>/<namespace>/<id>'>."""
        return [SHIM_SOCKETS / hashlib.sha256(f"{self.containerd_socket}/{CONTAINERD_NAMESPACE}/{cid}".encode())
                .hexdigest() for cid in sorted(self._container_ids)]

    def _cgroup_groups(self) -> list[Path]:
        """The containers' parent cgroup in each hierarchy: <containerd's cgroup>/hc-docker-<name>."""
        return sorted({base / self.cgroup_parent for base in self._cgroup_bases})

    def _mounts(self) -> list[str]:
        return sorted({m for path in (self.data_root, self.containerd_root, self.run_dir) for m in mounts_under(path)})
