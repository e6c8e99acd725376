"""Facts about a host that `setup` needs: a matching Python, its platform, free space, the managed environment.

A shell script finds the interpreter and a few lines of Python print the facts as JSON; the parser and the
platform arithmetic are pure, so they are tested on recorded output.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass

from packaging.tags import mac_platforms

from homecluster.shell.posix import json_line, shell_path

# Where a Python of the wanted version usually lives, in the order they are tried.
CANDIDATES = ("python{v}", "/usr/bin/python{v}", "/usr/local/bin/python{v}", "/opt/homebrew/bin/python{v}",
              "/Library/Frameworks/Python.framework/Versions/{v}/bin/python{v}",
              "$HOME/.pyenv/versions/{v}*/bin/python{v}", "python3", "/usr/bin/python3")

# What a host's Python prints about itself: run by the sh facts script here and the PowerShell one (windows_setup.py).
FACTS_PY = r"""
import glob, json, os, platform, shutil, sys, sysconfig
d = sys.argv[1]
while not os.path.isdir(d) and (os.path.dirname(d) or os.sep) != d:
    d = os.path.dirname(d) or os.sep
env = sys.argv[2]
nt = os.name == "nt"  # a venv keeps Scripts/python.exe and Lib/site-packages on Windows
def read(p):
    try:
        with open(p) as f:
            return f.read().strip()
    except OSError:
        return ""
def free(p):
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return 0
site = env + ("/Lib/site-packages" if nt else "/lib/python*/site-packages")
print("hc-facts " + json.dumps({
    "executable": sys.executable, "version": platform.python_version(), "system": platform.system(),
    "machine": platform.machine(), "libc": list(platform.libc_ver()), "mac_ver": platform.mac_ver()[0],
    "platform": sysconfig.get_platform(), "free_bytes": free(d),
    "env_python": os.path.exists(env + ("/Scripts/python.exe" if nt else "/bin/python")),
    "env_lock": read(env + "/homecluster-lock"),
    "env_dists": sorted(os.path.basename(p)[:-10] for p in glob.glob(site + "/*.dist-info"))}))
"""


@dataclass(frozen=True)
class HostFacts:
    """What `setup` learned about one host."""

    executable: str
    version: str
    system: str
    machine: str
    libc: tuple[str, str]
    mac_ver: str
    free_bytes: int
    env_python: bool
    env_lock: str
    env_dists: tuple[str, ...] = ()
    platform: str = ""  # sysconfig.get_platform(): win32 for a 32-bit Python on 64-bit Windows (machine: AMD64)

    @property
    def minor(self) -> str:
        return ".".join(self.version.split(".")[:2])


def version_check(python: str) -> str:
    """Python code (for `-c`, double-quotable) that exits 0 only under the given major.minor."""
    return f"import sys; sys.exit(0 if '%d.%d' % sys.version_info[:2] == '{python}' else 1)"


def facts_script(python: str, run_dir: str, env_dir: str) -> str:
    """Find a Python `python` (major.minor) on the host and print its facts, or `hc-facts-none`."""
    cands = " ".join('"$HOME"' + c[5:].format(v=python) if c.startswith("$HOME/")  # unquoted: a glob
                     else shell_path(c.format(v=python)) for c in CANDIDATES)
    check = version_check(python)
    return "\n".join([
        "found=",
        f"for c in {cands}; do",
        '  p=$(command -v "$c" 2>/dev/null) || continue',
        f'  "$p" -c "{check}" 2>/dev/null && {{ found=$p; break; }}',
        "done",
        '[ -n "$found" ] || { echo hc-facts-none; exit 0; }',
        f'"$found" -c {_sh_quote(FACTS_PY)} {shell_path(run_dir)} {shell_path(env_dir)}',
    ])


def _sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def parse_facts(output: str) -> HostFacts | None:
    """The facts from `facts_script` output; None when no matching Python was found."""
    d = json_line(output, "hc-facts")
    if d is None:
        return None
    return HostFacts(d["executable"], d["version"], d["system"], d["machine"], tuple(d["libc"]), d["mac_ver"],
                     int(d["free_bytes"]), bool(d["env_python"]), d["env_lock"], tuple(d.get("env_dists", ())),
                     d.get("platform", ""))


def install_hint(python: str, os_name: str) -> str:
    """How to install a given Python on a given OS: the fix in the 'no matching Python' error."""
    if os_name == "macos":
        return f"brew install python@{python} (or the installer from python.org)"
    if os_name == "windows":
        return f"winget install Python.Python.{python}"
    return (f"sudo apt install python{python} python{python}-venv (Debian/Ubuntu), sudo dnf install "
            f"python{python} (Fedora), or pyenv install {python}")


@dataclass(frozen=True)
class Target:
    """A platform + Python the lock is resolved for and wheels are downloaded for, e.g. cp311 manylinux 2.36."""

    python: str
    system: str
    machine: str
    glibc: str = ""
    mac: str = ""

    @property
    def key(self) -> str:
        if self.system == "Windows":
            return f"cp{self.python.replace('.', '')}-{WINDOWS_TAGS[self.machine]}"
        tag = f"manylinux_{self.glibc.replace('.', '_')}" if self.system == "Linux" else f"macosx_{self.mac}"
        return f"cp{self.python.replace('.', '')}-{tag}_{self.machine}"

    @property
    def uv_platform(self) -> str:
        """The --python-platform name uv resolves for."""
        if self.system == "Linux":
            return f"{self.machine}-manylinux_{self.glibc.replace('.', '_')}"
        if self.system == "Windows":
            return "x86_64-pc-windows-msvc"  # uv's name for 64-bit Windows (uv pip compile --help)
        return f"{'aarch64' if self.machine == 'arm64' else self.machine}-apple-darwin"

    def wheel_platforms(self) -> list[str]:
        """Every platform tag a wheel for this target may carry (for pip download --platform)."""
        if self.system == "Windows":
            return [WINDOWS_TAGS[self.machine]]
        if self.system == "Linux":
            major, minor = (int(x) for x in self.glibc.split("."))
            tags = [f"manylinux_{major}_{m}_{self.machine}" for m in range(minor, 4, -1)]
            legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
            return tags + [f"{name}_{self.machine}" for m, name in legacy.items() if m <= minor]
        major, minor = (int(x) for x in (self.mac.split(".") + ["0"])[:2])
        return list(mac_platforms((major, minor), self.machine))


# Windows' platform.machine() -> the wheel platform tag. AMD64 only: a 32-bit Python on 64-bit Windows reports
# AMD64 too, so its sysconfig platform (win32) is checked as well.
WINDOWS_TAGS = {"AMD64": "win_amd64"}


class UnsupportedPlatform(ValueError):
    """A host platform homecluster cannot provision yet."""


def target_of(facts: HostFacts, python: str) -> Target:
    """The lock target for a host, from its facts."""
    return platform_target(python, facts.system, facts.machine, facts.libc, facts.mac_ver, facts.platform)


def platform_target(python: str, system: str, machine: str, libc: tuple[str, str], mac_ver: str,
                    sys_platform: str = "") -> Target:
    """The lock target for a Python major.minor on a platform (as `platform` and `sysconfig.get_platform()`
    report it)."""
    if system == "Linux":
        lib, ver = libc
        if lib != "glibc" or not re.fullmatch(r"\d+\.\d+", ver):
            raise UnsupportedPlatform(f"Linux without glibc ({lib or 'musl?'}) has no manylinux wheels")
        return Target(python, "Linux", machine, glibc=ver)
    if system == "Darwin":
        mac = ".".join(mac_ver.split(".")[:2]) if mac_ver.split(".")[0] == "10" else mac_ver.split(".")[0] + ".0"
        return Target(python, "Darwin", machine, mac=mac)
    if system == "Windows":
        if sys_platform == "win32":
            raise UnsupportedPlatform(f"a 32-bit Python {python} is not supported by setup (win_amd64 wheels "
                                      f"only). Fix: install the 64-bit one: winget install Python.Python.{python}")
        if machine not in WINDOWS_TAGS:
            raise UnsupportedPlatform(f"Windows on {machine} is not supported by setup yet (x86-64 only)")
        return Target(python, "Windows", machine)
    raise UnsupportedPlatform(f"{system} hosts are not supported by setup yet")


def interpreter_script(python: str) -> str:
    """Print the facts of a given interpreter (a host's `python:`), for install-pkg on hosts homecluster does
    not manage: the same `environment_facts` the install plugin sees on the worker."""
    return f"{shell_path(python)} -c {_sh_quote(interpreter_code())}"


def interpreter_code() -> str:
    """The Python that prints `environment_facts()` as an `hc-env` line (any shell runs it)."""
    import inspect

    from homecluster.plugins import worker as worker_plugins  # imports distributed: only installs load it

    return (textwrap.dedent(inspect.getsource(worker_plugins.environment_facts))
            + 'import json\nprint("hc-env " + json.dumps(environment_facts()))\n')


def parse_interpreter(output: str) -> dict | None:
    """The facts printed by `interpreter_script`, or None when the interpreter did not run."""
    return json_line(output, "hc-env")


def interpreter_target(env: dict) -> Target:
    """The lock target of an interpreter from its facts (`interpreter_script`)."""
    minor = ".".join(env["version"].split(".")[:2])
    return platform_target(minor, env["system"], env["machine"], tuple(env["libc"]), env["mac_ver"])
