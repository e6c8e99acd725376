"""install-pkg on hosts that bring their own Python (`python:` keys, no environment: section), on the simulated
household, whose hosts have no route to the package index: every wheel comes from the laptop."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cloudpickle
import pytest
import yaml

from conftest import hc, household_inventory

pytestmark = pytest.mark.household
PORT = 8830
cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the functions below run on the workers
PACKAGES = ("termcolor==2.4.0", "ujson==5.10.0")  # pure Python, and a compiled wheel; neither on this machine


def make_venv(path: Path, *pip_args: str) -> Path:
    """A host's own Python: a venv that sees this machine's dask (system site packages) and installs into
    itself with the system's pip; `pip_args`, if any, are installed into it first."""
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(path)],
                   check=True)
    python = path / "bin" / "python"
    if pip_args:
        subprocess.run([str(python), "-m", "pip", "install", "-q", *pip_args], check=True)
    return python


def write_inventory(hh, inv: Path, pythons: dict[str, Path], desktop_workers: int = 0) -> Path:
    household_inventory(hh, inv, "own", workers={"desktop": desktop_workers, "study": 1, "attic": 1},
                        cluster_extra={"scheduler_port": PORT, "dashboard_port": PORT + 1},
                        host_extra={n: {"python": str(p)} for n, p in pythons.items()})
    assert "environment" not in yaml.safe_load(inv.read_text())
    return inv


def on_workers(inv: Path, fn) -> dict:
    from homecluster import connect
    with connect(str(inv)) as client:
        return {client.scheduler_info()["workers"][a]["name"]: v for a, v in client.run(fn).items()}


def imports():
    import termcolor  # noqa: F401 - importable is the point
    import ujson
    from importlib.metadata import version
    return version("termcolor"), ujson.dumps([1])


def six_version():
    from importlib.metadata import version
    return version("six")


@pytest.fixture(scope="module")
def pythons(tmp_path_factory):
    base = tmp_path_factory.mktemp("own-pythons")
    found = subprocess.run([sys.executable, "-c", "import termcolor, ujson"], capture_output=True)
    assert found.returncode != 0, "this machine's Python has termcolor/ujson: the test would prove nothing"
    # study and attic have six 1.16.0 in their venvs (the system has a newer one): the change test needs it
    return {"desktop": make_venv(base / "desktop"),
            "study": make_venv(base / "study", "six==1.16.0"),
            "attic": make_venv(base / "attic", "six==1.16.0")}


@pytest.fixture
def own_cluster(household, pythons, tmp_path, cleanup, wheel_cache, monkeypatch):
    monkeypatch.setenv("HOMECLUSTER_CACHE", str(wheel_cache))
    inv = write_inventory(household, tmp_path / "inventory.yaml", pythons)
    cleanup(inv)
    up = hc("up", inv=inv)
    assert up.returncode == 0, up.stdout + up.stderr
    return inv


def test_install_on_own_pythons_late_joiners_and_after_down_up(household, pythons, own_cluster, tmp_path):
    inv = own_cluster
    p = hc("install-pkg", *PACKAGES, inv=inv)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.count("termcolor=2.4.0 ujson=5.10.0  ok") == 2
    assert on_workers(inv, imports) == {"study": ("2.4.0", "[1]"), "attic": ("2.4.0", "[1]")}
    assert on_workers(inv, lambda: sys.executable) == {"study": str(pythons["study"]),
                                                       "attic": str(pythons["attic"])}
    assert list((pythons["study"].parent.parent / "lib").glob("python3*/site-packages/ujson*"))  # in the venv
    listed = hc("install-pkg", "--list", inv=inv)
    assert listed.stdout.split("\n")[:2] == ["package termcolor==2.4.0", "package ujson==5.10.0"]

    # A worker that joins later, from an interpreter that never had the packages: study moves to a new venv.
    fresh = make_venv(tmp_path / "study-new")
    write_inventory(household, inv, {**pythons, "study": fresh})
    assert hc("up", inv=inv).returncode == 0
    assert on_workers(inv, imports)["study"] == ("2.4.0", "[1]")
    assert on_workers(inv, lambda: sys.executable)["study"] == str(fresh)

    # down, then up with a worker on the scheduler-only host, whose venv never had them: a new scheduler.
    assert hc("down", inv=inv).returncode == 0
    write_inventory(household, inv, {**pythons, "study": fresh}, desktop_workers=1)
    up = hc("up", inv=inv)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "given to the new scheduler for every worker: package termcolor==2.4.0; package ujson==5.10.0" in up.stdout
    assert on_workers(inv, imports) == {n: ("2.4.0", "[1]") for n in ("desktop", "study", "attic")}


def test_a_change_to_an_installed_package_is_refused_unless_upgrade(own_cluster):
    inv = own_cluster
    before = on_workers(inv, six_version)
    assert before == {"study": "1.16.0", "attic": "1.16.0"}
    p = hc("install-pkg", "six==1.17.0", inv=inv)
    assert p.returncode == 2
    assert ("would change packages the workers already have: six 1.16.0 -> 1.17.0 (on study, attic)"
            in p.stderr), p.stderr
    assert "Fix: add --upgrade" in p.stderr
    assert on_workers(inv, six_version) == before  # nothing touched
    assert not inv.with_suffix(".added.json").exists()

    p = hc("install-pkg", "--upgrade", "six==1.17.0", inv=inv)
    assert p.returncode == 0, p.stdout + p.stderr
    assert on_workers(inv, six_version) == {"study": "1.17.0", "attic": "1.17.0"}
    p = hc("install-pkg", "--upgrade", "six==1.16.0", inv=inv)  # back, so the module's venvs stay as they were
    assert p.returncode == 0, p.stdout + p.stderr
    assert on_workers(inv, six_version) == before


def test_externally_managed_interpreter_fails_alone(household, pythons, tmp_path, cleanup, wheel_cache,
                                                    monkeypatch):
    monkeypatch.setenv("HOMECLUSTER_CACHE", str(wheel_cache))
    # A whole Python installation, not a venv (PEP 668 exempts venvs), hardlinked from this machine's, with the
    # marker Debian ships in /usr/lib/python3.X.
    system = tmp_path / "system-python"
    subprocess.run(["cp", "-al", sys.base_prefix, str(system)], check=True)
    stdlib = system / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    (stdlib / "EXTERNALLY-MANAGED").write_text("[externally-managed]\nError=managed by the test's OS\n")
    python = system / "bin" / Path(sys.executable).name
    inv = write_inventory(household, tmp_path / "inventory.yaml", {**pythons, "attic": python})
    cleanup(inv)
    assert hc("up", inv=inv).returncode == 0
    assert on_workers(inv, lambda: sys.prefix)["attic"] == str(system)

    p = hc("install-pkg", "text-unidecode==1.3", inv=inv)
    assert p.returncode == 1, p.stdout + p.stderr
    rows = {line.split()[0]: line for line in p.stdout.splitlines() if line.startswith(("study", "attic"))}
    assert rows["study"].split()[-2:] == ["text-unidecode=1.3", "ok"]
    assert rows["attic"].split()[-2:] == ["text-unidecode=MISSING", "FAILED"]
    failure = next(line for line in p.stdout.splitlines() if line.strip().startswith("attic:"))
    assert "externally managed (PEP 668" in failure and "--break-system-packages" in failure
    assert "Fix: make a virtual environment on the host" in failure
    assert not list(stdlib.glob("site-packages/text_unidecode*"))  # nothing went into the marked Python
    found = on_workers(inv, lambda: __import__("importlib.util").util.find_spec("text_unidecode") is not None)
    assert found == {"study": True, "attic": False}


def test_nonexistent_package_leaves_the_cluster_untouched(own_cluster):
    from homecluster import connect
    with connect(str(own_cluster)) as client:
        before = sorted(client.scheduler_info()["workers"])
        p = hc("install-pkg", "homecluster-no-such-package-zq", inv=own_cluster)
        assert p.returncode == 2
        assert "package 'homecluster-no-such-package-zq' was not found" in p.stderr
        assert client.run_on_scheduler(lambda dask_scheduler: [
            n for n in dask_scheduler.worker_plugins if n.startswith("homecluster")]) == []
        assert client.submit(sum, [1, 2]).result() == 3
        assert sorted(client.scheduler_info()["workers"]) == before
    assert not own_cluster.with_suffix(".added.json").exists()
    assert json.loads(hc("status", "--json", inv=own_cluster).stdout)["scheduler_running"]
