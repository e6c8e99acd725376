"""The `environment:` section: which Python and which packages every host's managed environment gets. Pure.

    environment:
      python: "3.11"                 # default: this machine's major.minor
      packages: [numpy==2.4.6, scikit-learn]   # or a path to a requirements file, relative to the inventory
      index_url: https://pypi.org/simple       # optional
      extra_index_urls: []                     # optional
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from packaging.requirements import InvalidRequirement, Requirement

from homecluster.errors import one_line, shown

KNOWN_PYTHONS = tuple(f"3.{m}" for m in range(10, 15))  # what dask 2024+ supports
KEYS = ("python", "packages", "index_url", "extra_index_urls")
Fail = Callable[[tuple, str, str], Exception]


@dataclass(frozen=True)
class Environment:
    """The managed environment every host without a `python:` key gets."""

    python: str
    packages: tuple[str, ...] = ()
    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()


def client_python() -> str:
    """This machine's Python as major.minor, the default for every host."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def parse(raw: Any, fail: Fail, base_dir: Path) -> Environment | None:
    """Validate the raw section; `fail(keypath, problem, fix)` builds the located error to raise."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise fail(("environment",), "expected a mapping such as {python: '3.11', packages: [numpy]}",
                   "write environment: as indented 'key: value' lines")
    for key in raw:
        if key not in KEYS:
            raise fail(("environment", key), "unknown key", f"known keys: {', '.join(KEYS)}")
    return Environment(
        python=_python(raw.get("python", client_python()), fail),
        packages=_packages(raw.get("packages", []), fail, base_dir),
        index_url=_url(raw.get("index_url"), ("environment", "index_url"), fail),
        extra_index_urls=tuple(_url(u, ("environment", "extra_index_urls"), fail)
                               for u in _list(raw.get("extra_index_urls", []), "extra_index_urls", fail)),
    )


def _python(value: Any, fail: Fail) -> str:
    if isinstance(value, float):
        raise fail(("environment", "python"), f"{shown(value)} is a number, and 3.10 would read as 3.1",
                   'quote the version: python: "3.11"')
    if not isinstance(value, str) or not re.fullmatch(r"3\.\d+", value):
        raise fail(("environment", "python"), f"{shown(value)} is not a major.minor Python version",
                   'write it as python: "3.11"')
    if value not in KNOWN_PYTHONS:
        raise fail(("environment", "python"), f"unknown Python version {value}",
                   f"use one of {', '.join(KNOWN_PYTHONS)}")
    return value


def _list(value: Any, key: str, fail: Fail) -> list:
    if isinstance(value, list):
        return value
    raise fail(("environment", key), f"expected a list, got {shown(value)}", f"write {key}: [first, second]")


def _url(value: Any, keypath: tuple, fail: Fail) -> str | None:
    if value is None:
        return None
    if isinstance(value, str) and re.match(r"https?://[^/@\s]*@", value):  # user:password@ or token@
        masked = re.sub(r"^(https?://)[^/@\s]*@", r"\1***@", value)
        raise fail(keypath, f"{masked} holds credentials", "keep secrets out of the inventory: put them in "
                   "~/.netrc (pip and uv read it) and write the URL without them")
    if not isinstance(value, str) or not re.fullmatch(r"(https?|file)://[^\s\x00]+", value):
        raise fail(keypath, f"{shown(value)} is not an index URL", "write a URL such as https://pypi.org/simple")
    return value


def _packages(value: Any, fail: Fail, base_dir: Path) -> tuple[str, ...]:
    if isinstance(value, str) and one_line(value):
        return _requirements_file(base_dir / value, fail)
    items = _list(value, "packages", fail)
    return tuple(_requirement(item, ("environment", "packages"), fail) for item in items)


def _requirement(item: Any, keypath: tuple, fail: Fail) -> str:
    try:
        if not isinstance(item, str) or not one_line(item):
            raise InvalidRequirement(f"expected a one-line text such as 'numpy==2.1', got {shown(item)}")
        return str(Requirement(item))
    except InvalidRequirement as e:
        first = str(e).splitlines()[0]
        raise fail(keypath, f"bad requirement {shown(item)} ({first})",
                   "write a requirement such as numpy, numpy==2.1.3 or 'pandas>=2,<3'") from None


def _requirements_file(path: Path, fail: Fail) -> tuple[str, ...]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        raise fail(("environment", "packages"), f"requirements file {path} cannot be read",
                   "give a list of packages, or a path relative to the inventory file") from None
    out = []
    for n, line in enumerate(lines, 1):
        line = line.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            raise fail(("environment", "packages"), f"{path}:{n}: option lines ({line.split()[0]}) are not "
                       "supported", "list plain requirements; set index_url: in environment: instead")
        out.append(_requirement(line, ("environment", "packages", f"{path.name}:{n}"), fail))
    return tuple(out)
