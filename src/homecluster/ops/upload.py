"""`homecluster upload`: make local code importable on every worker, including workers that join later.

A module (.py) or an archive (.zip/.egg) goes as it is; a package directory is zipped first (without
__pycache__, .git, tests and other clutter). distributed's `upload_file` registers an UploadFile plugin, so
the scheduler hands the file to late joiners too. Re-uploading a changed .py module reloads it in the workers;
a changed package (zip) keeps Python's zip import cache in each worker, so use `restart=True` for those.
Recorded uploads are given again by `up` to a newly started scheduler (additions.py).
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

from homecluster.packages.additions import Additions
from homecluster.errors import HomeclusterError

SKIP_DIRS = {"__pycache__", ".git", ".hg", ".svn", ".tox", ".nox", ".venv", "venv", ".mypy_cache",
             ".pytest_cache", ".ipynb_checkpoints", "tests", "test"}
SKIP_SUFFIXES = (".pyc", ".pyo")


def zip_package(directory: Path, out_dir: Path) -> Path:
    """Zip a package directory so that `import <name>` works from the zip; clutter is left out."""
    if not (directory / "__init__.py").is_file():
        raise HomeclusterError(f"{directory} is not a package (no __init__.py). Fix: upload its .py files, "
                               "or add an __init__.py")
    target = out_dir / f"{directory.name}.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as z:
        for root, dirs, files in os.walk(directory):
            dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
            for f in sorted(files):
                if not f.endswith(SKIP_SUFFIXES):
                    full = Path(root) / f
                    z.write(full, Path(directory.name) / full.relative_to(directory))
    return target


def prepare(path: str | Path, out_dir: Path) -> Path:
    """The file to upload for a path: the module or archive itself, or a zip of a package directory."""
    p = Path(path)
    if p.is_dir():
        return zip_package(p.resolve(), out_dir)
    if p.is_file() and p.suffix in (".py", ".zip", ".egg"):
        return p
    if not p.exists():
        raise HomeclusterError(f"{p}: no such file or directory. Fix: check the path")
    raise HomeclusterError(f"{p}: cannot upload a {p.suffix or 'file without suffix'}. Fix: upload a .py module, "
                           "a package directory, or a .zip/.egg")


def upload(client, paths: list[str], restart: bool = False, record: Additions | None = None) -> list[str]:
    """Upload each path to every worker (and late joiners); returns the uploaded file names. With `record`,
    each file is also recorded there, so `up` gives it to a new scheduler."""
    done = []
    with tempfile.TemporaryDirectory(prefix="homecluster-upload-") as tmp:
        files = [prepare(p, Path(tmp)) for p in paths]  # check every path before the cluster is touched
        for f in files:
            client.upload_file(str(f), load=True)
            if record is not None:
                record.add_upload(f)
            done.append(f.name)
    if restart:
        client.restart()
    return done
