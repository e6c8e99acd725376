"""setup and doctor on the simulated household, whose hosts have no route to the package index."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

from homecluster import connect

from conftest import hc, household_inventory

pytestmark = pytest.mark.household
CLIENT_MINOR = f"{sys.version_info.major}.{sys.version_info.minor}"


def managed_inventory(hh, tmp_path, name: str, packages: list[str], port: int):
    """An inventory with an environment: section and no python: keys (every host gets a managed env)."""
    inv = household_inventory(hh, tmp_path / "inventory.yaml", name, workers={"study": 1, "attic": 1},
                              cluster_extra={"scheduler_port": port, "dashboard_port": port + 1})
    data = yaml.safe_load(inv.read_text())
    del data["defaults"]["python"]
    data["environment"] = {"python": CLIENT_MINOR, "packages": packages}
    inv.write_text(yaml.safe_dump(data, sort_keys=False))
    return inv


def downloads(cache, package: str) -> int:
    log = cache / "wheelhouse" / "downloads.log"
    if not log.exists():
        return 0
    return sum(1 for line in log.read_text().splitlines() if line.split()[-1].startswith(package + "=="))


def test_setup_up_doctor_on_hosts_without_internet(household, tmp_path, cleanup, wheel_cache, monkeypatch):
    monkeypatch.setenv("HOMECLUSTER_CACHE", str(wheel_cache))
    for h in household.hosts:
        routes = subprocess.run(["ip", "-n", h.netns, "route"], capture_output=True, text=True).stdout
        assert "default" not in routes and routes.strip(), routes  # only the home subnet: no way to the index
    inv = managed_inventory(household, tmp_path, "envs", [], 8810)
    cleanup(inv)

    first = hc("setup", inv=inv)
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.count("installed (sent") == 3
    again = hc("setup", inv=inv)
    assert again.returncode == 0 and again.stdout.count("up to date") == 3
    assert "nothing to download" in again.stdout

    assert hc("up", inv=inv).returncode == 0
    with connect(str(inv)) as client:
        versions = client.get_versions()
        for w in versions["workers"].values():
            assert w["packages"]["dask"] == version("dask")
            assert w["packages"]["distributed"] == version("distributed")
        assert versions["scheduler"]["packages"]["distributed"] == version("distributed")
        executables = client.run(lambda: sys.executable)
        assert sorted(executables.values()) == sorted(
            str(tmp_path / "run" / "envs" / h / "env" / "bin" / "python") for h in ("attic", "study"))
    assert hc("doctor", inv=inv).returncode == 0

    # A package added to the environment: downloaded once for the household, importable on every worker.
    added = managed_inventory(household, tmp_path, "envs", ["six==1.17.0"], 8810)
    before = downloads(wheel_cache, "six")  # other tests of the session share the wheelhouse
    had_it = any(wheel_cache.glob("wheelhouse/*/six-1.17.0-*.whl"))
    third = hc("setup", inv=added)
    assert third.returncode == 0 and third.stdout.count("installed") == 3, third.stdout + third.stderr
    assert downloads(wheel_cache, "six") - before == (0 if had_it else 1)  # once for the whole household
    up = hc("up", inv=added)
    assert up.returncode == 0 and "restart worker" in up.stdout  # the environment changed under them
    with connect(str(added)) as client:
        assert set(client.run(lambda: __import__("six").__version__).values()) == {"1.17.0"}


def test_doctor_names_host_package_and_both_versions(household, tmp_path, cleanup, wheel_cache, monkeypatch):
    monkeypatch.setenv("HOMECLUSTER_CACHE", str(wheel_cache))
    inv = managed_inventory(household, tmp_path, "drift", [], 8812)
    cleanup(inv)
    assert hc("setup", inv=inv).returncode == 0
    assert hc("doctor", inv=inv).returncode == 0
    # Make attic drift: another toolz in its environment (installed from a wheel fetched here).
    wheels = tmp_path / "other"
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(wheels), "toolz==1.0.0"],
                   check=True)
    attic_python = tmp_path / "run" / "drift" / "attic" / "env" / "bin" / "python"
    from homecluster.ops.setup import uv_binary
    subprocess.run([uv_binary(), "pip", "install", "-q", "--python", str(attic_python), "--no-index",
                    "--find-links", str(wheels), "toolz==1.0.0"], check=True)
    p = hc("doctor", inv=inv)
    assert p.returncode == 1
    row = next(line for line in p.stdout.splitlines() if line.startswith("host attic") and " toolz " in line)
    assert version("toolz") in row and "1.0.0" in row and "MISMATCH" in row and "homecluster setup attic" in row
    assert not any(line.startswith("host study") and "MISMATCH" in line for line in p.stdout.splitlines())
    up = hc("up", inv=inv)  # up warns about what the started processes loaded
    assert up.returncode == 0 and f"has toolz 1.0.0, this machine {version('toolz')}" in up.stderr

    fixed = hc("setup", "attic", inv=inv)  # the fix doctor names
    assert fixed.returncode == 0 and "installed" in fixed.stdout
    still = hc("doctor", inv=inv)  # the files are fixed, but the running worker loaded the old toolz
    assert still.returncode == 1 and "homecluster down, then homecluster up" in still.stdout
    assert not any(line.startswith("host attic") and "MISMATCH" in line for line in still.stdout.splitlines())
    assert hc("down", inv=inv).returncode == 0 and hc("up", inv=inv).returncode == 0
    assert hc("doctor", inv=inv).returncode == 0


def test_missing_python_version_names_the_install_command(household, tmp_path, cleanup, wheel_cache,
                                                          monkeypatch):
    if list(Path("/").glob("root/.pyenv/versions/3.14*")) or Path("/usr/bin/python3.14").exists():
        pytest.skip("this machine has a Python 3.14")
    monkeypatch.setenv("HOMECLUSTER_CACHE", str(wheel_cache))
    inv = managed_inventory(household, tmp_path, "nopy", [], 8816)
    data = yaml.safe_load(inv.read_text())
    data["environment"]["python"] = "3.14"
    inv.write_text(yaml.safe_dump(data))
    cleanup(inv)
    p = hc("setup", inv=inv)
    assert p.returncode == 1
    for h in ("desktop", "study", "attic"):
        assert f"{h}: no Python 3.14 found. Fix: sudo apt install python3.14 python3.14-venv" in p.stdout


def test_unknown_package_is_refused_before_any_host_changes(household, tmp_path, cleanup, wheel_cache, monkeypatch):
    monkeypatch.setenv("HOMECLUSTER_CACHE", str(wheel_cache))
    inv = managed_inventory(household, tmp_path, "bad", ["homecluster-no-such-package-zq"], 8814)
    cleanup(inv)
    p = hc("setup", inv=inv)
    assert p.returncode == 2
    assert f"error: {inv}: environment: package 'homecluster-no-such-package-zq' was not found" in p.stderr
    assert not (tmp_path / "run" / "bad" / "study" / "env").exists()
