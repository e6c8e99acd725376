"""What `install-pkg` and `upload` gave a cluster, recorded beside the inventory (`inventory.added.json`).

The scheduler keeps plugins only while it runs; this record outlives it. `up` hands the recorded packages and
uploads to a freshly started scheduler (`restore`), so every worker that joins later gets them, also after
`down` and `up`. The packages' wheels stay in the laptop's wheelhouse; an upload is kept as a copy, so a file
moved or edited since is given again as it was uploaded.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from homecluster.errors import HomeclusterError
from homecluster.packages.lock import requirement_name
from homecluster.packages.wheelhouse import cache_root, recorded_files

RECORD_FORMAT = 1
RESTORED_PLUGIN = "homecluster-recorded-packages"


def record_path(inventory_path: str) -> Path:
    """inventory.yaml -> inventory.added.json"""
    return Path(inventory_path).with_suffix(".added.json")


class Additions:
    """The record of one inventory's cluster: packages (requirement + its wheels per target) and uploads."""

    def __init__(self, inventory_path: str):
        self.path = record_path(inventory_path)
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            data = {}
        if not isinstance(data, dict) or data.get("format") != RECORD_FORMAT:
            data = {"format": RECORD_FORMAT}
        self.packages: dict[str, dict] = data.get("packages", {})
        self.uploads: dict[str, dict] = data.get("uploads", {})
        if not _well_formed(self.packages, {"requirement": str, "wheels": dict}) or \
                not _well_formed(self.uploads, {"file": str, "sha256": str}):
            raise HomeclusterError(f"{self.path}: not a record homecluster wrote (edited by hand?). "
                                   "Fix: delete it, then install-pkg and upload again")

    @property
    def empty(self) -> bool:
        return not self.packages and not self.uploads

    def add_packages(self, requirements: list[str], wheels: dict[str, list[str]]) -> None:
        """Record installed requirements (exact pins) and the pins, per target key, whose wheels they need;
        a package recorded before is replaced."""
        for r in requirements:
            self.packages[requirement_name(r)] = {"requirement": r, "wheels": wheels}
        self._save()

    def add_upload(self, file: Path) -> None:
        """Record an uploaded file, keeping a copy of it as it is now."""
        data = file.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        copy = cache_root() / "uploads" / digest[:16] / file.name
        copy.parent.mkdir(parents=True, exist_ok=True)
        if not copy.exists():
            shutil.copyfile(file, copy)
        self.uploads[file.name] = {"file": str(copy), "sha256": digest}
        self._save()

    def requirements(self) -> list[str]:
        return [p["requirement"] for _, p in sorted(self.packages.items())]

    def wheel_files(self) -> list[Path]:
        """Every recorded package's wheels still in the wheelhouse, once each."""
        files: dict[str, Path] = {}
        for p in self.packages.values():
            for key, pins in p["wheels"].items():
                files.update({f.name: f for f in recorded_files(key, pins)})
        return sorted(files.values())

    def lines(self) -> list[str]:
        """What is recorded, one line each (for `install-pkg --list`)."""
        out = [f"package {r}" for r in self.requirements()]
        out += [f"upload  {name} (sha256 {u['sha256'][:12]})" for name, u in sorted(self.uploads.items())]
        return out

    def _save(self) -> None:
        data = {"format": RECORD_FORMAT, "packages": self.packages, "uploads": self.uploads}
        self.path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def _well_formed(entries, fields: dict[str, type]) -> bool:
    return isinstance(entries, dict) and all(
        isinstance(e, dict) and all(isinstance(e.get(k), t) for k, t in fields.items()) for e in entries.values())


def given(client, additions: Additions) -> bool:
    """Whether the scheduler behind `client` already has everything recorded (a scheduler that its supervisor
    restarted has none of it): the recorded packages' plugin, and each upload (distributed names an upload's
    plugin after the file's path)."""
    names = [str(n) for n in client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.worker_plugins))]
    wanted = ([RESTORED_PLUGIN] if additions.packages else []) + [u["file"] for u in additions.uploads.values()]
    return all(any(n.startswith(w) for n in names) for w in wanted)


def restore(client, additions: Additions) -> list[str]:
    """Give a (freshly started) scheduler everything recorded; the errors, one line each (empty when all went
    well). The scheduler then hands it to every worker, including the ones that join later."""
    import cloudpickle

    from homecluster.plugins import worker as worker_plugins

    errors = []
    if additions.packages:
        cloudpickle.register_pickle_by_value(worker_plugins)  # homecluster is not installed on the workers
        wheels = {f.name: f.read_bytes() for f in additions.wheel_files()}
        plugin = worker_plugins.WheelInstall(RESTORED_PLUGIN, wheels, additions.requirements())
        try:
            client.register_plugin(plugin, name=plugin.name)
            failed = client.run(worker_plugins.plugin_error, plugin.name)
            errors += [f"recorded packages on {w}: {e}" for w, e in sorted(failed.items()) if e]
        except Exception as e:  # noqa: BLE001 - reported; the cluster itself is up
            errors.append(f"recorded packages: {type(e).__name__}: {e}")
    for name, u in sorted(additions.uploads.items()):
        try:
            client.upload_file(u["file"], load=True)
        except Exception as e:  # noqa: BLE001 - a missing copy or a module that fails to import on a worker
            errors.append(f"recorded upload {name}: {type(e).__name__}: {e}")
    return errors
