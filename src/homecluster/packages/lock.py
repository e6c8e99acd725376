"""The lock: every package of the managed environment pinned to an exact version, per host platform.

Made on the laptop with uv (`uv pip compile`, ~1 s, and it resolves for another platform and Python with
`--python-platform/--python-version` and wheels only). dask, distributed and bokeh are pinned to the versions
this machine runs, and the packages that must match for pickling and the protocol (cloudpickle, msgpack, ...)
are constrained to this machine's versions, so the client and every worker agree.

The lock is kept beside the inventory (`inventory.lock`, JSON) and reused while its inputs are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import tempfile
from dataclasses import dataclass, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import InvalidVersion, Version

from homecluster.inventory.environment import Environment
from homecluster.errors import LockError
from homecluster.packages.facts import Target

PINNED = ("dask", "distributed", "bokeh")
# Checked by `doctor`; constrained to this machine's versions when the environment needs them at all.
MATCHED = ("cloudpickle", "msgpack", "toolz", "tornado", "lz4", "numpy", "pandas")
LOCK_FORMAT = 1


@dataclass(frozen=True)
class Locked:
    """The exact requirements for one target, and their hash (recorded on each host that got them)."""

    target: str
    requirements: tuple[str, ...]

    @property
    def hash(self) -> str:
        return hashlib.sha256("\n".join(self.requirements).encode()).hexdigest()[:16]

    def names(self) -> dict[str, str]:
        """Normalized package name -> pinned version (normalized)."""
        return dict(pin(line) for line in self.requirements)


def pin(line: str) -> tuple[str, str]:
    """A pinned requirement line ("Name[extra]==1.0 ; marker") as (normalized name, normalized version)."""
    name, _, ver = line.partition("==")
    return normalize(name.split("[")[0].strip()), _version(ver.split(";")[0].strip())


def dist_versions(dists: tuple[str, ...]) -> dict[str, str]:
    """Normalized name -> version from an environment's "name-version" dist-info names."""
    have = {}
    for d in dists:
        name, _, ver = d.rpartition("-")
        have[normalize(name)] = _version(ver)
    return have


def matches(locked: Locked, dists: tuple[str, ...]) -> bool:
    """Whether an environment's installed distributions ("name-version" from *.dist-info) are exactly the lock."""
    return dist_versions(dists) == locked.names()


@dataclass(frozen=True)
class Change:
    """An installed package whose version a resolution would change."""

    name: str
    old: str
    new: str

    def __str__(self) -> str:
        return f"{self.name} {self.old} -> {self.new}"


def compare(installed: dict[str, str], locked: Locked) -> tuple[list[str], list[Change]]:
    """What an environment with `installed` (name -> version) lacks of `locked`: the pins it does not have, and
    the installed packages whose version the lock would change."""
    have = {normalize(n): _version(v) for n, v in installed.items()}
    adds, changed = [], []
    for line in locked.requirements:
        name, ver = pin(line)
        if name not in have:
            adds.append(line)
        elif have[name] != ver:
            adds.append(line)
            changed.append(Change(name, have[name], ver))
    return adds, changed


def _version(v: str) -> str:
    try:
        return str(Version(v))
    except InvalidVersion:
        return v


def requirement_name(requirement: str) -> str:
    """The normalized package name of a requirement line."""
    return normalize(Requirement(requirement).name)


def normalize(name: str) -> str:
    """PEP 503 name normalization."""
    return re.sub(r"[-_.]+", "-", name).lower()


def installed(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def inputs(env: Environment) -> tuple[list[str], list[str]]:
    """(requirements, constraints) for the resolver: the client's dask stack plus the user's packages."""
    reqs = [f"{n}=={installed(n)}" for n in PINNED if installed(n)] + list(env.packages)
    constraints = [f"{n}=={installed(n)}" for n in MATCHED if installed(n)]
    return reqs, constraints


def compile_command(target: Target, constraints_file: str, output_file: str, index_url: str | None = None,
                    extra_index_urls: tuple[str, ...] = ()) -> list[str]:
    """The uv command that resolves requirements (on stdin) for one target, into `output_file`. Versions already
    in that file are preferred (kept unless the requirements need another), as pip-compile does."""
    cmd = ["uv", "pip", "compile", "-", "--output-file", output_file, "--python-version", target.python,
           "--python-platform", target.uv_platform, "--only-binary", ":all:", "--no-header", "--no-annotate",
           "--quiet", "--constraint", constraints_file]
    if index_url:
        cmd += ["--index-url", index_url]
    for url in extra_index_urls:
        cmd += ["--extra-index-url", url]
    return cmd


def explain_failure(stderr: str, target: Target) -> str:
    """uv's resolver error as one line naming the package, plus the fix."""
    stderr = " ".join(stderr.split())  # uv wraps its explanation to the terminal width
    m = re.search(r"Because (\S+) was not found in the package registry", stderr)
    if m:
        return f"package {m.group(1)!r} was not found in the package index. Fix: check its name (and index_url)"
    m = re.search(r"Because (\S+?)(==\S+)? has no usable wheels", stderr) or re.search(
        r"Because (?:only )?(\S+?)[<>=!~].* has no wheels with a matching platform", stderr)
    if m:
        return (f"{m.group(1)} has no wheel for {target.key}: it would have to be built from source on the host, "
                "which setup does not do. Fix: pin a version of it that publishes a wheel for that platform")
    cause = stderr.split("cause:", 1)[-1].strip() if stderr else "uv failed"
    return f"cannot resolve the environment for {target.key}: {cause}"


def resolve(env: Environment, target: Target, uv: str, prefer: tuple[str, ...] = ()) -> Locked:
    """Resolve the environment for one target, keeping the versions in `prefer` where they fit."""
    reqs, constraints = inputs(env)
    return compile_for(target, reqs, constraints, uv, prefer, env.index_url, env.extra_index_urls)


def compile_for(target: Target, requirements: list[str], constraints: list[str], uv: str,
                prefer: tuple[str, ...] = (), index_url: str | None = None,
                extra_index_urls: tuple[str, ...] = ()) -> Locked:
    """Run the resolver for one target: exact pins for `requirements` and everything they need."""
    with tempfile.TemporaryDirectory(prefix="homecluster-lock-") as d:
        cf, out = Path(d, "constraints.txt"), Path(d, "lock.txt")
        cf.write_text("\n".join(constraints) + "\n")
        out.write_text("".join(p + "\n" for p in prefer))
        cmd = [uv] + compile_command(target, str(cf), str(out), index_url, extra_index_urls)[1:]
        p = subprocess.run(cmd, input="\n".join(requirements) + "\n", capture_output=True, text=True,
                           timeout=300)
        if p.returncode != 0:
            raise LockError(explain_failure(p.stderr, target))
        text = out.read_text()
    lines = tuple(ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#"))
    return Locked(target.key, lines)


def inputs_hash(env: Environment, target: Target) -> str:
    reqs, constraints = inputs(env)
    blob = json.dumps([LOCK_FORMAT, reqs, constraints, env.index_url, list(env.extra_index_urls), target.key])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class LockFile:
    """`inventory.lock` beside the inventory: one entry per target, reused while its inputs are unchanged."""

    def __init__(self, inventory_path: str):
        self.inventory, self.path = inventory_path, lock_path(inventory_path)
        try:
            self.data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.data = {}
        if self.data.get("format") != LOCK_FORMAT:
            self.data = {"format": LOCK_FORMAT, "targets": {}}

    @property
    def added(self) -> list[str]:
        """Packages install-pkg added on top of the inventory's environment.packages."""
        return list(self.data.get("added", []))

    def effective(self, env: Environment, replacing: tuple[str, ...] = ()) -> Environment:
        """The inventory's environment plus what install-pkg added (what setup installs), with the added
        entries of the same packages as `replacing` swapped for those (another version asked for later)."""
        names = {requirement_name(r) for r in replacing}
        extra = [p for p in self.added if p not in env.packages and requirement_name(p) not in names]
        extra += [p for p in replacing if p not in env.packages and p not in extra]
        return replace(env, packages=tuple(env.packages) + tuple(extra))

    def put(self, env: Environment, target: Target, locked: Locked) -> None:
        """Record a lock resolved elsewhere (install-pkg) for these inputs."""
        self.data["targets"][target.key] = {"inputs": inputs_hash(env, target),
                                            "requirements": list(locked.requirements)}
        self.save()

    def add(self, requirements: list[str]) -> None:
        """Remember packages install-pkg installed; a later version of the same package replaces the entry."""
        names = {requirement_name(r) for r in requirements}
        self.data["added"] = [r for r in self.added if requirement_name(r) not in names] + list(requirements)
        self.save()

    def save(self) -> None:
        self.path.write_text(json.dumps(self.data, indent=1, sort_keys=True) + "\n")

    def is_current(self, env: Environment, target: Target) -> bool:
        """Whether the file holds a lock for this target made from these very inputs."""
        entry = self.data["targets"].get(target.key)
        return bool(entry) and entry.get("inputs") == inputs_hash(env, target)

    def get(self, env: Environment, target: Target, uv: str) -> Locked:
        """The lock for a target: from the file when its inputs are unchanged, else resolved and saved."""
        if self.is_current(env, target):
            return Locked(target.key, tuple(self.data["targets"][target.key]["requirements"]))
        try:
            locked = resolve(env, target, uv)
        except LockError as e:
            e.where = f"{self.inventory}: environment"
            raise
        self.put(env, target, locked)
        return locked


def lock_path(inventory_path: str) -> Path:
    """inventory.yaml -> inventory.lock"""
    return Path(inventory_path).with_suffix(".lock")


def digest(inv) -> str | None:
    """Identifies what `setup` installs from the inventory (its environment: inputs and this machine's dask
    stack); None without an environment: section. Packages added later by install-pkg are left out: the
    running processes have those already, so they are no reason to restart them."""
    if inv.environment is None:
        return None
    reqs, constraints = inputs(inv.environment)
    blob = json.dumps([reqs, constraints, inv.environment.index_url, list(inv.environment.extra_index_urls)])
    return hashlib.sha256(blob.encode()).hexdigest()[:12]
