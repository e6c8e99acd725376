"""`homecluster setup`: the same managed Python environment on every host, from wheels downloaded once.

Per host, in parallel: find a Python of the wanted version (facts), then, unless the host already records the
lock's hash: send the wheels it lacks over SSH, uv's first (the host unpacks uv and creates the venv while the
others arrive), `uv pip sync` the venv with no index (`--no-index --find-links`), and record the hash. Hosts
need no internet access.

The scripts are sh (below) on Linux and macOS, PowerShell on Windows (packages/windows_setup.py): `Scripts` holds
one set; both print the same facts and answer the same steps, so the plan is one.
"""

from __future__ import annotations

import shlex
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

from homecluster.backends.nssm import error_line
from homecluster.packages import facts as hostfacts
from homecluster.packages import windows_setup
from homecluster.shell.posix import shell_path
from homecluster.errors import HomeclusterError, HostError
from homecluster.packages.facts import HostFacts, Target
from homecluster.transport.group import Group, HostResult
from homecluster.transport.result import CommandResult
from homecluster.inventory import Host, Inventory
from homecluster.packages.lock import LockFile, Locked, installed, matches
from homecluster.core.spec import env_dir, run_dir, uv_path
from homecluster.packages.wheelhouse import Wheelhouse, WheelhouseError, with_tools

Progress = Callable[[str], None]
INSTALL_FACTOR = 3  # an installed package takes about three times its wheel's size


@dataclass
class SetupResult:
    """What setup did on one host."""

    action: str  # "up to date" | "installed" | "skipped"
    python: str = ""
    target: str = ""
    sent: int = 0
    detail: str = ""


def uv_binary() -> str:
    """The uv that ships with homecluster (the `uv` package)."""
    from uv import find_uv_bin
    return find_uv_bin()


def uv_version() -> str:
    return installed("uv") or "0"


def space_problem(free_bytes: int, send_bytes: int, where: str) -> str | None:
    """A one-line error when the host cannot hold the wheels plus what they install into; else None."""
    need = send_bytes * (1 + INSTALL_FACTOR)
    if free_bytes >= need:
        return None
    return (f"not enough space under {where}: needs about {need / 1e6:.0f} MB, {free_bytes / 1e6:.0f} MB free. "
            "Fix: free some space, or set run_directory: to a larger disk for this host")


def prepare_script(host_dir: str, env: str, target: Target, executable: str, uv_wheel: str) -> str:
    """Unpack uv from its wheel (unless that uv is there) and create the venv (unless it has the right Python).

    Runs while the other wheels are still being sent: it needs only the uv wheel."""
    uv = uv_path(host_dir)
    unpack = ("import os, sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); "
              "n = next(x for x in z.namelist() if x.endswith('/scripts/uv')); "
              "open(sys.argv[2], 'wb').write(z.read(n)); os.chmod(sys.argv[2], 0o755)")
    check = hostfacts.version_check(target.python)
    q = shell_path
    return "\n".join([
        "set -e",
        f"export UV_NO_PROGRESS=1 UV_CACHE_DIR={q(host_dir + '/uv-cache')}",
        f"mkdir -p {q(uv.rsplit('/', 1)[0])}",
        f"{q(uv)} --version 2>/dev/null | grep -q ' {uv_version()}' || "
        f"{shlex.quote(executable)} -c {shlex.quote(unpack)} {q(host_dir + '/wheels/' + uv_wheel)} {q(uv)}",
        f'{q(env + "/bin/python")} -c "{check}" 2>/dev/null || '
        f"{{ rm -rf {q(env)}; {q(uv)} venv --quiet --python {shlex.quote(executable)} {q(env)}; }}",
    ])


def sync_script(host_dir: str, env: str, locked: Locked) -> str:
    """Make the venv hold exactly the lock, from the wheels on the host (no index); record the lock hash last."""
    wheels, uv = f"{host_dir}/wheels", uv_path(host_dir)
    q = shell_path
    # uv's default link mode (hardlinks from its cache on Linux, clones on macOS): the cache and the env share
    # host_dir, so every file is written once; copying took ~1.5 core-seconds more per host and 130 MB of disk.
    return "\n".join([
        "set -e",
        f"export UV_NO_PROGRESS=1 UV_CACHE_DIR={q(host_dir + '/uv-cache')}",
        f"cat > {q(env + '.requirements')} <<'HC_EOF'",
        *locked.requirements,
        "HC_EOF",
        f"{q(uv)} pip sync --quiet --python {q(env + '/bin/python')} --no-index --find-links {q(wheels)} "
        f"{q(env + '.requirements')}",
        f"echo {locked.hash} > {q(env + '/homecluster-lock')}",
    ])


def remote_wheels_script(host_dir: str) -> str:
    return f"mkdir -p {shell_path(host_dir + '/wheels')} && ls {shell_path(host_dir + '/wheels')}"


def posix_no_python(host: Host, python: str, output: str) -> str:
    return (f"{host.name}: no Python {python} found. Fix: {hostfacts.install_hint(python, host.os)}, or set "
            "python: for this host")


@dataclass(frozen=True)
class Scripts:
    """What setup runs on a host, in its shell. `overlap`: the environment is prepared while the other wheels are
    sent (the Windows runner may copy a long script over SFTP, and one SFTP session is not shared between
    threads, paramiko#1836: there the steps run one after the other)."""

    facts: Callable[[str, str, str], str]  # (python, run dir, env dir)
    wheels: Callable[[str], str]  # (run dir)
    prepare: Callable[[str, str, Target, str, str], str]  # (run dir, env dir, target, executable, uv wheel)
    sync: Callable[[str, str, Locked], str]  # (run dir, env dir, lock)
    interpreter: Callable[[str], str]  # (a host's python:), for install-pkg
    no_python: Callable[[Host, str, str], str]  # (host, python, facts output): the error with the fix
    overlap: bool = True


POSIX = Scripts(hostfacts.facts_script, remote_wheels_script, prepare_script, sync_script,
                hostfacts.interpreter_script, posix_no_python)
WINDOWS = Scripts(windows_setup.facts_script, windows_setup.wheels_script, windows_setup.prepare_script,
                  windows_setup.sync_script, windows_setup.interpreter_script, windows_setup.no_python,
                  overlap=False)


def scripts_for(host: Host) -> Scripts:
    return WINDOWS if host.os == "windows" else POSIX


def failure(host: Host, what: str, r: CommandResult) -> HostError:
    """A failed step: the script's hc-error line (the fix), else the exit code and its last lines."""
    return HostError(f"{host.name}: " + (error_line(r.stdout) or f"{what} failed (exit {r.exit_code}): {r.tail(3)}"))


def find_python(runner, inv: Inventory, host: Host, python: str) -> HostFacts:
    """The facts of a host's Python `python` (major.minor) and of its managed environment, over its runner."""
    scripts = scripts_for(host)
    r = runner.run(scripts.facts(python, run_dir(inv, host), env_dir(inv, host)))
    f = hostfacts.parse_facts(r.stdout)
    if f is not None:
        return f
    if "hc-facts-none" not in r.stdout:
        raise failure(host, f"looking for Python {python}", r)
    raise HostError(scripts.no_python(host, python, r.stdout))


class Setup:
    """One `homecluster setup` run over some hosts of an inventory."""

    def __init__(self, inv: Inventory, progress: Progress = lambda s: None):
        if inv.environment is None:
            raise HomeclusterError(f"{inv.path}: no environment: section, so no host has a managed environment. "
                                   'Fix: add environment: {python: "3.11", packages: []} to the inventory')
        self.inv, self.progress = inv, progress
        self.lockfile = LockFile(inv.path)
        self.env = self.lockfile.effective(inv.environment)
        self.locks: dict[str, Locked] = {}
        self.houses: dict[str, Wheelhouse] = {}
        self.downloaded: list[str] = []

    def run(self, hosts: list[Host]) -> dict[str, HostResult[SetupResult]]:
        """Set up the given hosts; a result per host, in the order given."""
        out = {h.name: HostResult(h.name, SetupResult("skipped", detail=f"uses its own python: {h.python}"))
               for h in hosts if h.python}
        managed = [h for h in hosts if not h.python]
        with Group(managed) as group:
            self.progress(f"looking for Python {self.env.python} on {len(managed)} host(s)")
            found = group.each([h.name for h in managed], self._facts)
            targets, failed = self._targets_of(found)
            out.update(failed)
            targets = self._prepare(targets, out)
            out.update(group.each(targets, lambda runner, host: self._host(
                runner, host, found[host.name].value, targets[host.name])))
        return {h.name: out[h.name] for h in hosts}

    def targets(self, hosts: list[Host]) -> tuple[dict[str, Target], dict[str, HostResult]]:
        """Each host's lock target (from its facts, over SSH), and the hosts that failed."""
        with Group(hosts) as group:
            return self._targets_of(group.each([h.name for h in hosts], self._facts))

    def _targets_of(self, found: dict[str, HostResult[HostFacts]]
                    ) -> tuple[dict[str, Target], dict[str, HostResult]]:
        """The target of each host whose facts came back; the others (and unsupported platforms) as failures."""
        failed = {n: r for n, r in found.items() if not r.ok}
        targets = {}
        for n, r in found.items():
            if r.ok:
                try:
                    targets[n] = hostfacts.target_of(r.value, self.env.python)
                except hostfacts.UnsupportedPlatform as e:
                    failed[n] = HostResult(n, error=f"{n}: {e}")
        return targets, failed

    def _facts(self, runner, host: Host) -> HostFacts:
        return find_python(runner, self.inv, host, self.env.python)

    def _prepare(self, targets: dict[str, Target], out: dict[str, HostResult]) -> dict[str, Target]:
        """Lock and fill the wheelhouse once per target, before any host is touched; return the hosts whose
        target is ready.

        A platform without wheels fails its hosts (in `out`); a LockError (the environment itself cannot be
        resolved) ends the whole run with nothing changed on any host."""
        ready: dict[str, Target] = {}
        for name, t in targets.items():
            try:
                self._ensure(t)
                ready[name] = t
            except WheelhouseError as e:
                out[name] = HostResult(name, error=f"{name}: {e}")
        return ready

    def _ensure(self, t: Target) -> None:
        if t.key in self.locks:
            return
        if not self.lockfile.is_current(self.env, t):
            self.progress(f"resolving the environment for {t.key}")
        locked = self.lockfile.get(self.env, t, uv_binary())
        house = Wheelhouse(t)
        wanted = with_tools(locked, uv_version())
        missing = house.missing(wanted)
        if missing:
            self.progress(f"downloading {len(missing)} wheel(s) for {t.key}")
        self.downloaded += house.fill(wanted, self.env)
        self.locks[t.key], self.houses[t.key] = locked, house

    def _host(self, runner, host: Host, f: HostFacts, t: Target) -> SetupResult:
        locked, house = self.locks[t.key], self.houses[t.key]
        if f.env_python and f.env_lock == locked.hash and matches(locked, f.env_dists):
            return SetupResult("up to date", python=f.version, target=t.key)
        scripts, hdir, env = scripts_for(host), run_dir(self.inv, host), env_dir(self.inv, host)
        files = house.files_for(with_tools(locked, uv_version()))
        listed = runner.run(scripts.wheels(hdir))
        if not listed.ok:
            raise failure(host, "listing the wheels there", listed)
        send = [p for p in files if p.name not in set(listed.stdout.split())]
        problem = space_problem(f.free_bytes, sum(p.stat().st_size for p in send), hdir)
        if problem:
            raise HostError(f"{host.name}: {problem}")
        uv_wheel = next(p for p in files if p.name.startswith("uv-"))
        rest = [p for p in send if p != uv_wheel]
        self.progress(f"{host.name}: sending {len(send)} wheel(s)")
        if uv_wheel in send:  # uv first: the host unpacks it while the rest arrives
            runner.put(uv_wheel, f"{hdir}/wheels/{uv_wheel.name}")
        r = self._prepare_and_send(runner, scripts, scripts.prepare(hdir, env, t, f.executable, uv_wheel.name),
                                   hdir, rest)
        if not r.ok:
            raise failure(host, "creating the environment", r)
        self.progress(f"{host.name}: installing {len(locked.requirements)} packages")
        r = runner.run(scripts.sync(hdir, env, locked), timeout=900)
        if not r.ok:
            raise failure(host, "installing the environment", r)
        return SetupResult("installed", python=f.version, target=t.key, sent=len(send))

    @staticmethod
    def _prepare_and_send(runner, scripts: Scripts, prepare: str, hdir: str, wheels: list) -> CommandResult:
        """Run the prepare script and send the other wheels: at the same time where the scripts allow it, else
        one after the other (no wheel is sent after a failed prepare)."""
        def send() -> None:
            for p in wheels:
                runner.put(p, f"{hdir}/wheels/{p.name}")
        if not scripts.overlap:
            r = runner.run(prepare)
            if r.ok:
                send()
            return r
        with ThreadPoolExecutor(1) as pool:
            prepared = pool.submit(runner.run, prepare)
            send()
            return prepared.result()
