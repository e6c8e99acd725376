"""Unit tests of the pure parts of setup and doctor: host facts, targets, lock inputs, scripts, comparisons."""

from __future__ import annotations

import subprocess
from importlib.metadata import version

import pytest

from homecluster.ops import doctor

from homecluster.packages import facts

from homecluster.packages import lock

from homecluster.ops import setup as provision
from homecluster.inventory.environment import Environment
from homecluster.errors import LockError
from homecluster.packages.facts import HostFacts, Target, UnsupportedPlatform, parse_facts, target_of

RECORDED_FACTS = ('Linux 6.1 banner\nhc-facts {"executable": "/usr/bin/python3.11", "version": "3.11.2", '
                  '"system": "Linux", "machine": "x86_64", "libc": ["glibc", "2.36"], "mac_ver": "", '
                  '"free_bytes": 5000000000, "env_python": true, "env_lock": "abc123"}\n')
LINUX = Target("3.11", "Linux", "x86_64", glibc="2.36")


def test_parse_facts_on_recorded_output():
    f = parse_facts(RECORDED_FACTS)
    assert (f.executable, f.minor, f.env_python, f.env_lock) == ("/usr/bin/python3.11", "3.11", True, "abc123")
    assert parse_facts("hc-facts-none\n") is None


def test_targets_per_platform():
    f = parse_facts(RECORDED_FACTS)
    t = target_of(f, "3.11")
    assert t == LINUX and t.key == "cp311-manylinux_2_36_x86_64" and t.uv_platform == "x86_64-manylinux_2_36"
    plats = t.wheel_platforms()
    assert plats[0] == "manylinux_2_36_x86_64" and "manylinux_2_17_x86_64" in plats and "manylinux2014_x86_64" in plats
    mac = HostFacts("/opt/homebrew/bin/python3.11", "3.11.9", "Darwin", "arm64", ("", ""), "14.5", 1, False, "")
    tm = target_of(mac, "3.11")
    assert tm.key == "cp311-macosx_14.0_arm64" and tm.uv_platform == "aarch64-apple-darwin"
    assert "macosx_11_0_arm64" in tm.wheel_platforms()
    musl = HostFacts("/usr/bin/python3", "3.11.9", "Linux", "x86_64", ("", ""), "", 1, False, "")
    with pytest.raises(UnsupportedPlatform, match="without glibc"):
        target_of(musl, "3.11")


def test_facts_script_finds_this_python(tmp_path):
    import sys
    want = f"{sys.version_info.major}.{sys.version_info.minor}"
    out = subprocess.run(["sh", "-c", facts.facts_script(want, str(tmp_path / "a/b"), str(tmp_path / "env"))],
                         capture_output=True, text=True).stdout
    f = parse_facts(out)
    assert f.minor == want and f.free_bytes > 0 and not f.env_python
    out = subprocess.run(["/bin/sh", "-c", facts.facts_script("3.10" if want != "3.10" else "3.12", "/tmp", "/tmp/e")],
                         capture_output=True, text=True, env={"PATH": "/nonexistent", "HOME": str(tmp_path)}).stdout
    assert parse_facts(out) is None


def test_lock_inputs_pin_the_client_dask_stack():
    reqs, constraints = lock.inputs(Environment("3.11", ("six==1.17.0",)))
    assert f"dask=={version('dask')}" in reqs and f"distributed=={version('distributed')}" in reqs
    assert f"bokeh=={version('bokeh')}" in reqs and "six==1.17.0" in reqs
    assert f"cloudpickle=={version('cloudpickle')}" in constraints


def test_lock_hash_and_names():
    locked = lock.Locked("t", ("Dask==2026.8.0", "six==1.17.0"))
    assert locked.names() == {"dask": "2026.8.0", "six": "1.17.0"}
    assert locked.hash != lock.Locked("t", ("dask==2026.8.0", "six==1.16.0")).hash


UV_NOT_FOUND = """error: No solution found when resolving dependencies
  cause: Because nonexistent-pkg-zzqx was not found in the package registry and you require nonexistent-pkg-zzqx, \
we can conclude that your requirements are unsatisfiable.
"""
UV_NO_WHEEL = """error: No solution found when resolving dependencies
  cause: Because numpy==1.21.0 has no usable wheels and you require numpy==1.21.0, we can conclude that your \
requirements are unsatisfiable.
"""


def test_resolver_errors_name_the_package():
    assert lock.explain_failure(UV_NOT_FOUND, LINUX).startswith("package 'nonexistent-pkg-zzqx' was not found")
    assert lock.explain_failure(UV_NO_WHEEL, LINUX).startswith("numpy has no wheel for cp311-manylinux_2_36_x86_64")


def test_space_check():
    assert provision.space_problem(10**9, 100 * 10**6, "/x") is None
    msg = provision.space_problem(10**8, 100 * 10**6, "~/.homecluster/home/pi")
    assert msg.startswith("not enough space under ~/.homecluster/home/pi: needs about 400 MB, 100 MB free")


def test_setup_scripts_are_valid_sh():
    host_dir, env = "~/.homecluster/h/pi", "~/.homecluster/h/pi/env"
    prepare = provision.prepare_script(host_dir, env, LINUX, "/usr/bin/python3.11", "uv-0.13.9.whl")
    sync = provision.sync_script(host_dir, env, lock.Locked("t", ("six==1.17.0",)))
    for script in (prepare, sync):
        assert subprocess.run(["sh", "-n", "-c", script]).returncode == 0
    assert '"$HOME"/.homecluster/h/pi/wheels/uv-0.13.9.whl' in prepare and "venv" in prepare
    assert "--no-index --find-links" in sync and "six==1.17.0" in sync


CLIENT = {"python": "3.11.7", "dask": "2026.8.0", "distributed": "2026.8.0", "cloudpickle": "3.1.2",
          "msgpack": "1.2.4", "toolz": "1.2.0", "tornado": "6.6.1", "numpy": "2.4.6", "pandas": "3.0.1",
          "lz4": None, "six": "1.17.0"}


def test_compare_names_package_and_both_versions():
    there = {**CLIENT, "toolz": "1.0.0", "python": "3.11.2", "pandas": None, "six": None}
    found = {f.what: f for f in doctor.compare(CLIENT, there, "host attic", ("six",), "homecluster setup attic")}
    assert (found["toolz"].client, found["toolz"].there, found["toolz"].verdict) == ("1.2.0", "1.0.0", "MISMATCH")
    assert found["python"].verdict == "note"  # same minor
    assert found["pandas"].verdict == "note" and found["six"].verdict == "MISMATCH"
    assert doctor.compare(CLIENT, {**CLIENT, "python": "3.12.1"}, "w", (), "fix")[0].verdict == "MISMATCH"
    assert doctor.compare(CLIENT, dict(CLIENT), "w", ("six",), "fix") == []


def test_unknown_package_is_a_lock_error_naming_it(tmp_path):
    """Asks the real package index through uv (the one network the machines here reach)."""
    inv = tmp_path / "inventory.yaml"
    lf = lock.LockFile(str(inv))
    with pytest.raises(LockError, match="package 'homecluster-no-such-package-zq' was not found"):
        lf.get(Environment("3.11", ("homecluster-no-such-package-zq",)), LINUX, provision.uv_binary())
    assert not lock.lock_path(str(inv)).exists()


def test_environment_matches_lock_exactly():
    locked = lock.Locked("t", ("dask==2026.8.0", "toolz==1.2.0", "PyYAML==6.0.3"))
    assert lock.matches(locked, ("dask-2026.8.0", "toolz-1.2.0", "pyyaml-6.0.3"))
    assert not lock.matches(locked, ("dask-2026.8.0", "toolz-1.0.0", "pyyaml-6.0.3"))  # drifted
    assert not lock.matches(locked, ("dask-2026.8.0", "toolz-1.2.0", "pyyaml-6.0.3", "six-1.17.0"))  # extra
    assert not lock.matches(locked, ("dask-2026.8.0", "toolz-1.2.0"))  # missing


def test_install_pkg_of_another_version_replaces_the_added_entry(tmp_path):
    lf = lock.LockFile(str(tmp_path / "inventory.yaml"))
    lf.add(["six==1.16.0", "ujson"])
    lf.add(["Six==1.17.0"])
    assert lf.added == ["ujson", "Six==1.17.0"]
    env = Environment("3.11", ("numpy",))
    assert lf.effective(env).packages == ("numpy", "ujson", "Six==1.17.0")
    assert lf.effective(env, replacing=("six==1.16.0",)).packages == ("numpy", "ujson", "six==1.16.0")
    assert lock.LockFile(str(tmp_path / "inventory.yaml")).added == ["ujson", "Six==1.17.0"]  # saved
