"""What this machine knows about a cluster's built image: one JSON file per cluster under the config root
(<config>/images/<cluster>.json), written by `homecluster image build` and read by whoever runs the image."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from homecluster.errors import HomeclusterError
from homecluster.security.store import config_root



@dataclass(frozen=True)
class BuiltImage:
    """A cluster's dask image on this machine's Docker engine."""

    cluster: str
    tag: str  # homecluster/<cluster>:<12 hex>, a digest of what went into it
    id: str  # sha256:...
    python: str  # major.minor of the image's Python
    base: str  # the base image as given (python:3.11-slim)
    size: int  # bytes, as the engine reports it
    built_at: float  # time.time() of the build
    env: str  # the hash of the lock installed in it (Locked.hash, also the label org.homecluster.env)


def image_file(cluster: str) -> Path:
    return config_root() / "images" / f"{cluster}.json"


def built(cluster: str) -> BuiltImage | None:
    """The image recorded for a cluster, or None before its first build."""
    path = image_file(cluster)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise HomeclusterError(f"{path} cannot be read ({e.strerror}). Fix: homecluster image build") from None
    try:
        return _parse(json.loads(text))
    except (ValueError, TypeError) as e:
        raise HomeclusterError(f"{path} is damaged ({e}). Fix: homecluster image build (it writes the file "
                               "again)") from None


def _parse(data) -> BuiltImage:
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    values = {}
    for f in fields(BuiltImage):
        kind = {"size": int, "built_at": (int, float)}.get(f.name, str)
        if not isinstance(data.get(f.name), kind) or isinstance(data.get(f.name), bool):
            raise ValueError(f"{f.name}: missing or not a {'number' if f.name in ('size', 'built_at') else 'text'}")
        values[f.name] = data[f.name]
    return BuiltImage(**{**values, "built_at": float(values["built_at"])})


def record(img: BuiltImage) -> None:
    """Write the cluster's record atomically (a reader sees the old file or the new one, never half)."""
    path = image_file(img.cluster)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(img), f, indent=1, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
