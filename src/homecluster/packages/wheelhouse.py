"""The laptop's wheelhouse: every wheel of a lock, downloaded once per target for the whole household.

pip does the downloading (uv has no download command): `pip download --no-deps --only-binary=:all:` with the
target's Python, ABI and every platform tag its wheels may carry. Each download is appended to
`downloads.log`, so "downloaded once" can be checked.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from homecluster.inventory.environment import Environment
from homecluster.errors import HomeclusterError
from homecluster.packages.facts import Target
from homecluster.packages.lock import Locked, normalize, pin


class WheelhouseError(HomeclusterError):
    """Wheels that cannot be downloaded for a target."""


def cache_root() -> Path:
    """$HOMECLUSTER_CACHE, else $XDG_CACHE_HOME/homecluster, else ~/.cache/homecluster."""
    if os.environ.get("HOMECLUSTER_CACHE"):
        return Path(os.environ["HOMECLUSTER_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "homecluster"


def wheels_in(directory: Path) -> dict[tuple[str, str], Path]:
    """(normalized name, version) -> wheel file, for the wheels in a directory."""
    out = {}
    for f in directory.glob("*.whl") if directory.is_dir() else []:
        try:
            name, ver, _, _ = parse_wheel_filename(f.name)
        except InvalidWheelFilename:
            continue
        out[(normalize(name), str(ver))] = f
    return out


def recorded_files(target_key: str, pins: list[str], root: Path | None = None) -> list[Path]:
    """The wheel files of pinned requirements already in the wheelhouse of a target (by its key)."""
    have = wheels_in((root or cache_root()) / "wheelhouse" / target_key)
    return [have[pin(r)] for r in pins if pin(r) in have]


class Wheelhouse:
    """Wheels for one target, in <cache>/wheelhouse/<target>/."""

    def __init__(self, target: Target, root: Path | None = None):
        self.target = target
        self.root = (root or cache_root()) / "wheelhouse"
        self.dir = self.root / target.key

    def wheels(self) -> dict[tuple[str, str], Path]:
        """(normalized name, version) -> wheel file."""
        return wheels_in(self.dir)

    def missing(self, requirements: list[str]) -> list[str]:
        have = self.wheels()
        return [r for r in requirements if pin(r) not in have]

    def files_for(self, requirements: list[str]) -> list[Path]:
        have = self.wheels()
        return [have[pin(r)] for r in requirements]

    def download_command(self, requirements: list[str], env: Environment | None) -> list[str]:
        t = self.target
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
               "--python-version", t.python, "--implementation", "cp", "--abi", f"cp{t.python.replace('.', '')}",
               "--abi", "abi3", "--abi", "none", "-d", str(self.dir)]
        for plat in t.wheel_platforms():
            cmd += ["--platform", plat]
        if env and env.index_url:
            cmd += ["--index-url", env.index_url]
        for url in env.extra_index_urls if env else ():
            cmd += ["--extra-index-url", url]
        return cmd + requirements

    def fill(self, requirements: list[str], env: Environment | None) -> list[str]:
        """Download what is missing; return the requirements that were downloaded now."""
        need = self.missing(requirements)
        if not need:
            return []
        self.dir.mkdir(parents=True, exist_ok=True)
        p = subprocess.run(self.download_command(need, env), capture_output=True, text=True, timeout=1800)
        if p.returncode != 0:
            lines = [ln for ln in p.stderr.splitlines() if ln.startswith("ERROR")] or p.stderr.splitlines()[-2:]
            raise WheelhouseError(f"downloading wheels for {self.target.key} failed: {' '.join(lines)}. "
                                   "Fix: check the network of this machine, or index_url")
        still = self.missing(need)
        if still:
            raise WheelhouseError(f"no wheel for {', '.join(still)} on {self.target.key}. Fix: pin a version "
                                   "that publishes a wheel for that platform")
        with open(self.root / "downloads.log", "a") as log:
            for r in need:
                log.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {self.target.key} {r}\n")
        return need


def with_tools(locked: Locked, uv_version: str) -> list[str]:
    """The lock's requirements plus uv itself, which installs them on the host."""
    return list(locked.requirements) + [f"uv=={uv_version}"]
