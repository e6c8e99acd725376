"""A freshly installed Debian machine on this Linux machine, for tests: a debootstrapped root file system run
as a chroot in its own network, mount, pid and UTS namespaces, with only loopback up (nothing it runs reaches
the network).

    tarball = debian_rootfs("bookworm", ["python3", "python3-venv"])  # cached tarball (also fits `docker import`)
    with FreshMachine(tarball, workdir) as machine:                   # a private copy, removed on exit
        machine.copy_in(files, source_dir, "/root/project")
        wheels = download_wheels(project_dir, machine.python())        # on this machine, cached
        result = machine.run("cd /root/project && ...", binds={"/wheels": wheels})

The rootfs tarball is built once per (suite, variant, packages, architecture) with `debootstrap` from the
mirror this machine's apt sources name for that suite (debootstrap's own default when none does) and kept under
$HOMECLUSTER_TEST_CACHE (default /var/cache/homecluster-tests). Needs root, debootstrap, util-linux (unshare,
mount), iproute2 (ip) and tar; see ``can_build()``.

Each ``run`` is one short-lived machine boot: the namespaces' init is the launcher shell, so when the script
ends (or the run times out and the launcher is killed) every process started inside dies with it, and the mounts
(/proc, /sys, /dev, binds) vanish with the mount namespace.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

CACHE = Path(os.environ.get("HOMECLUSTER_TEST_CACHE", "/var/cache/homecluster-tests"))
GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HOSTNAME = "debian"
DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")
DEBOOTSTRAP_TIMEOUT = 900
_TOOLS = ("debootstrap", "unshare", "chroot", "mount", "umount", "ip", "tar", "gzip")


class BuildError(RuntimeError):
    """The rootfs could not be built here (no mirror reachable, debootstrap failed ...)."""


def can_build() -> tuple[bool, str]:
    """Tell whether a FreshMachine can be built and run here: (True, "") or (False, reason)."""
    if sys.platform != "linux":
        return False, "needs Linux"
    if os.geteuid() != 0:
        return False, "needs root"
    for tool in _TOOLS:
        if shutil.which(tool) is None:
            return False, f"`{tool}` not found (apt-get install -y debootstrap iproute2 util-linux)"
    probe = subprocess.run(["unshare", "--net", "--mount", "--pid", "--uts", "--fork", "--kill-child", "true"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return False, f"cannot create namespaces: {probe.stderr.strip()}"
    return True, ""


# --- the mirror ----------------------------------------------------------------------------------------------

def apt_mirror(suite: str, etc_apt: Path = Path("/etc/apt")) -> str | None:
    """The first mirror URI this machine's apt sources use for `suite` (deb822 *.sources first, then one-line
    sources.list and *.list), or None when no source names that suite (debootstrap then uses its default)."""
    for path in sorted((etc_apt / "sources.list.d").glob("*.sources")):
        for uri in _deb822_uris(_read(path), suite):
            return uri
    for path in [etc_apt / "sources.list", *sorted((etc_apt / "sources.list.d").glob("*.list"))]:
        for uri in _one_line_uris(_read(path), suite):
            return uri
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _deb822_uris(text: str, suite: str):
    """URIs of enabled `deb` stanzas listing `suite` in a deb822 .sources file."""
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in stanza.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[0] in " \t" and key:  # continuation line
                fields[key] += " " + line.strip()
                continue
            key, _, value = line.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
        if fields.get("enabled", "yes").lower() == "no":
            continue
        if "deb" in fields.get("types", "").split() and suite in fields.get("suites", "").split():
            yield from (u for u in fields.get("uris", "").split() if _usable(u))


def _one_line_uris(text: str, suite: str):
    """URIs of `deb URI SUITE COMPONENTS` lines (options in [...] allowed) for `suite`."""
    for line in text.splitlines():
        line = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
        if len(line) >= 3 and line[0] == "deb" and line[2] == suite and _usable(line[1]):
            yield line[1]


def _usable(uri: str) -> bool:
    return uri.startswith(("http://", "https://", "file:/"))


# --- the rootfs tarball ----------------------------------------------------------------------------------------

def debian_rootfs(suite: str = "bookworm", packages: list[str] | tuple[str, ...] = ("python3", "python3-venv"),
                  variant: str = "minbase", cache: Path | None = None) -> Path:
    """A gzipped tarball of a freshly debootstrapped Debian `suite` with `packages`, built once and cached.

    The tar has numeric owners and `./`-relative paths, so `docker import TARBALL` takes it as well. Raises
    BuildError (with the end of debootstrap's log) when it cannot be built."""
    arch = _dpkg_arch()
    packages = sorted(set(packages))
    key = hashlib.sha256(json.dumps([suite, variant, arch, packages]).encode()).hexdigest()[:12]
    directory = (cache or CACHE) / "rootfs"
    directory.mkdir(parents=True, exist_ok=True)
    tarball = directory / f"debian-{suite}-{variant}-{arch}-{key}.tar.gz"
    with _locked(directory / f"{tarball.name}.lock"):
        if tarball.exists():
            return tarball
        build = Path(tempfile.mkdtemp(prefix="build-", dir=directory))
        try:
            target = build / "root"
            argv = ["debootstrap", f"--variant={variant}", f"--arch={arch}"]
            if packages:
                argv.append("--include=" + ",".join(packages))
            argv += [suite, str(target)]
            mirror = apt_mirror(suite)
            if mirror:
                argv.append(mirror)
            log = build / "debootstrap.log"
            with open(log, "w") as out:
                proc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      timeout=DEBOOTSTRAP_TIMEOUT)
            if proc.returncode != 0:
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
                raise BuildError(f"{' '.join(argv)} failed ({proc.returncode}):\n{tail}")
            for deb in (target / "var/cache/apt/archives").glob("*.deb"):  # what `apt-get clean` drops
                deb.unlink()
            partial = build / "rootfs.tar.gz"
            subprocess.run(["tar", "--numeric-owner", "-I", "gzip -1", "-C", str(target), "-cf", str(partial), "."],
                           check=True, capture_output=True, timeout=600)
            partial.rename(tarball)
        finally:
            remove_tree(build)
    return tarball


def _dpkg_arch() -> str:
    try:
        return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


@contextmanager
def _locked(path: Path):
    """An exclusive lock on `path` (two test runs at once build a tarball or wheel set only once)."""
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- removing a tree that may hold mounts ------------------------------------------------------------------------

def mounts_under(path: Path) -> list[str]:
    """Mount points at or below `path` in this mount namespace, deepest first."""
    prefix = str(Path(path).resolve())
    found = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
        if point == prefix or point.startswith(prefix + "/"):
            found.append(point)
    return sorted(found, key=len, reverse=True)


def remove_tree(path: Path) -> None:
    """Unmount whatever is mounted below `path`, then delete it without crossing into another file system.
    Refuses (raises) while a mount is left, so a bind of /dev can never be emptied."""
    path = Path(path)
    if not path.exists():
        return
    for point in mounts_under(path):
        subprocess.run(["umount", "-R", "-l", point], capture_output=True)
    left = mounts_under(path)
    if left:
        raise RuntimeError(f"not removing {path}: still mounted: {left}")
    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=True, capture_output=True)


# --- wheels for an offline install -----------------------------------------------------------------------------

def download_wheels(project: Path, python: dict, cache: Path | None = None, extra: list[str] | None = None) -> Path:
    """A directory of wheels for installing `project` (its dependencies and its build requirements, wheels only)
    with no index, on a machine whose interpreter `python` describes (FreshMachine.python()). Downloaded once
    on this machine with its own pip configuration, cached under `cache` keyed by the requirements and target."""
    meta = _pyproject(Path(project))
    build_requires = meta.get("build-system", {}).get("requires", [])
    dependencies = meta.get("project", {}).get("dependencies", [])
    target = [python["version"], python["platforms"]]
    key = hashlib.sha256(json.dumps([sorted(dependencies), sorted(build_requires), sorted(extra or []),
                                     target]).encode()).hexdigest()[:12]
    directory = (cache or CACHE) / "wheels"
    directory.mkdir(parents=True, exist_ok=True)
    wheels = directory / f"{meta.get('project', {}).get('name', 'project')}-py{python['version']}-{key}"
    with _locked(directory / f"{wheels.name}.lock"):
        if (wheels / ".complete").exists():
            return wheels
        wheels.mkdir(exist_ok=True)
        common = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "-d", str(wheels),
                  "--only-binary=:all:", "--python-version", python["version"]]
        common += [arg for tag in python["platforms"] for arg in ("--platform", tag)]
        for argv in (common + [str(project)], common + [*build_requires, *(extra or [])]):
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=900)
            if proc.returncode != 0:
                raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        (wheels / ".complete").write_text("")
    return wheels


def _pyproject(project: Path) -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        from pip._vendor import tomli as tomllib
    return tomllib.loads((project / "pyproject.toml").read_text())


# --- the machine -------------------------------------------------------------------------------------------------

_LAUNCHER = r"""
set -eu
R=$FM_ROOT
ip link set lo up
mount -t proc proc "$R/proc"
echo "$FM_HOSTNAME" > /proc/sys/kernel/hostname
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$R/sys"
mount -t tmpfs -o nosuid,mode=755 tmpfs "$R/dev"
for n in $FM_DEV_NODES; do : > "$R/dev/$n"; mount --bind "/dev/$n" "$R/dev/$n"; done
mkdir "$R/dev/shm" "$R/dev/pts"
mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs "$R/dev/shm"
ln -s /proc/self/fd "$R/dev/fd"; ln -s fd/0 "$R/dev/stdin"; ln -s fd/1 "$R/dev/stdout"; ln -s fd/2 "$R/dev/stderr"
eval "$FM_BINDS"
set +e
chroot "$R" /usr/bin/env -i /bin/bash "$FM_SCRIPT"
exit $?
"""


class FreshMachine:
    """A private copy of a rootfs tarball under `workdir`, removed again on exit (also on failure)."""

    def __init__(self, tarball: Path, workdir: Path, hostname: str = HOSTNAME) -> None:
        self.tarball = Path(tarball)
        self.workdir = Path(workdir).resolve()
        self.root = self.workdir / "rootfs"
        self.hostname = hostname
        self._runs = 0

    def __enter__(self) -> "FreshMachine":
        try:
            self.root.mkdir(parents=True)
            subprocess.run(["tar", "--numeric-owner", "-xzf", str(self.tarball), "-C", str(self.root)],
                           check=True, capture_output=True, timeout=300)
            # what the installer of a real machine writes (debootstrap leaves no /etc/hosts)
            (self.root / "etc/hostname").write_text(self.hostname + "\n")
            (self.root / "etc/hosts").write_text(
                f"127.0.0.1\tlocalhost\n127.0.1.1\t{self.hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n")
            (self.root / "etc/resolv.conf").unlink(missing_ok=True)  # no network: no name server either
            (self.root / ".fresh-machine").mkdir()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Kill anything still running from this rootfs (nothing should: each run's pid namespace died with its
        launcher), then unmount and remove the copy."""
        for _ in range(50):
            pids = self.processes()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
        remove_tree(self.root)

    def processes(self) -> list[int]:
        """Pids of live processes whose root directory is this machine's rootfs."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if os.readlink(entry / "root") == str(self.root):
                    found.append(int(entry.name))
            except OSError:
                continue
        return found

    def copy_in(self, files: list[str], source: Path, destination: str) -> Path:
        """Copy `files` (paths relative to `source`) to `destination` inside the machine; returns the host path."""
        target = self.root / destination.lstrip("/")
        for name in files:
            src, dst = Path(source) / name, target / name
            if src.is_symlink():  # as git checks it out (src/homecluster/templates/* point at the top-level folders)
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.symlink_to(os.readlink(src))
                continue
            if not src.is_file():
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
        return target

    def run(self, script: str, env: dict[str, str] | None = None, binds: dict[str, Path] | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess:
        """Run `script` with bash as root inside the machine, in a clean environment (PATH, HOME=/root,
        LANG=C.UTF-8, plus `env`), with host directories bound read-only at `binds` (guest path -> host path),
        loopback as the only network. Returns the CompletedProcess (stdout and stderr as text); on timeout
        everything inside is killed and subprocess.TimeoutExpired is raised with the output so far."""
        self._runs += 1
        guest_script = f"/.fresh-machine/run-{self._runs}.sh"
        guest_env = {"PATH": GUEST_PATH, "HOME": "/root", "USER": "root", "LOGNAME": "root", "SHELL": "/bin/bash",
                     "LANG": "C.UTF-8", "TERM": "dumb", **(env or {})}
        exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in guest_env.items())
        (self.root / guest_script.lstrip("/")).write_text(exports + "cd ~\n" + script)
        bind_lines = []
        for guest, host in (binds or {}).items():
            mountpoint = shlex.quote(str(self.root / guest.lstrip("/")))
            bind_lines.append(f"mkdir -p {mountpoint}; mount --bind {shlex.quote(str(host))} {mountpoint};"
                              f" mount -o remount,bind,ro {mountpoint}")
        launcher_env = {"PATH": os.environ.get("PATH", GUEST_PATH), "FM_ROOT": str(self.root),
                        "FM_HOSTNAME": self.hostname, "FM_DEV_NODES": " ".join(DEV_NODES),
                        "FM_BINDS": "\n".join(bind_lines), "FM_SCRIPT": guest_script}
        argv = ["unshare", "--net", "--mount", "--pid", "--uts", "--fork", "--kill-child", "--propagation",
                "private", "sh", "-c", _LAUNCHER]
        proc = subprocess.Popen(argv, env=launcher_env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # unshare dies, --kill-child takes the namespace's init along
            out, err = proc.communicate()
            raise subprocess.TimeoutExpired(argv, timeout, output=out, stderr=err)
        return subprocess.CompletedProcess(argv, proc.returncode, out, err)

    def python(self) -> dict:
        """The machine's python3: {"version": "3.11", "platforms": ["manylinux_2_36_x86_64", ...]}, pip's
        --python-version and --platform values for wheels that fit it (every manylinux tag its glibc accepts)."""
        probe = self.run("python3 -c 'import platform, sys; print(\"%d.%d\" % sys.version_info[:2],"
                         " platform.libc_ver()[1], platform.machine())'", timeout=60)
        if probe.returncode != 0:
            raise RuntimeError(f"no python3 in the machine: {probe.stderr.strip()}")
        version, libc, machine = probe.stdout.split()
        major, minor = (int(part) for part in libc.split(".")[:2])
        platforms = [f"manylinux_{major}_{m}_{machine}" for m in range(minor, 4, -1)]
        legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}  # PEP 599/571/513 names
        platforms += [f"{name}_{machine}" for m, name in legacy.items() if major == 2 and m <= minor]
        return {"version": version, "platforms": platforms}
