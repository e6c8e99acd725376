"""install-pkg, upload, run and connect() on the simulated household (hosts with no route to the index)."""

from __future__ import annotations

import json
import sys
import textwrap
import time
from importlib.metadata import version

import pytest
import yaml

from conftest import hc, household_inventory

pytestmark = pytest.mark.household
PORT = 8820


def write_inventory(hh, path, desktop_workers: int = 0):
    inv = household_inventory(hh, path, "client", workers={"desktop": desktop_workers, "study": 1, "attic": 1},
                              cluster_extra={"scheduler_port": PORT, "dashboard_port": PORT + 1})
    data = yaml.safe_load(inv.read_text())
    del data["defaults"]["python"]
    data["environment"] = {"python": f"{sys.version_info.major}.{sys.version_info.minor}", "packages": []}
    inv.write_text(yaml.safe_dump(data, sort_keys=False))
    return inv


@pytest.fixture(scope="module")
def cluster(household, tmp_path_factory, wheel_cache):
    """One managed-environment cluster for the module: scheduler on desktop, one worker on study and attic."""
    import os
    os.environ["HOMECLUSTER_CACHE"] = str(wheel_cache)
    inv = write_inventory(household, tmp_path_factory.mktemp("client") / "inventory.yaml")
    try:
        assert hc("setup", inv=inv).returncode == 0
        up = hc("up", inv=inv)
        assert up.returncode == 0, up.stdout + up.stderr
        yield inv
    finally:
        hc("down", inv=inv)


def on_every_worker(inv, fn):
    from homecluster import connect
    with connect(str(inv)) as client:
        return client.run(fn)


def with_desktop_worker(household, inv):
    """A worker joins later: desktop (scheduler only so far) gets one."""
    write_inventory(household, inv, desktop_workers=1)
    up = hc("up", inv=inv)
    assert up.returncode == 0, up.stdout + up.stderr


def without_desktop_worker(household, inv):
    write_inventory(household, inv, desktop_workers=0)
    assert hc("up", inv=inv).returncode == 0


def test_install_pkg_reaches_every_worker_and_late_joiners(household, cluster):
    p = hc("install-pkg", "six==1.17.0", "ujson==5.10.0", inv=cluster)  # pure Python, and a compiled wheel
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.count("six=1.17.0 ujson=5.10.0  ok") == 2
    got = on_every_worker(cluster, lambda: (__import__("six").__version__, __import__("ujson").dumps([1])))
    assert sorted(got.values()) == [("1.17.0", "[1]"), ("1.17.0", "[1]")]
    lock = json.loads(cluster.with_suffix(".lock").read_text())
    assert lock["added"] == ["six==1.17.0", "ujson==5.10.0"]  # the next setup keeps them
    try:
        with_desktop_worker(household, cluster)
        got = on_every_worker(cluster, lambda: (__import__("socket").gethostname(), __import__("ujson").__name__))
        assert sorted(got.values()) == [("attic", "ujson"), ("desktop", "ujson"), ("study", "ujson")]
    finally:
        without_desktop_worker(household, cluster)


def test_nonexistent_package_fails_alone_and_nothing_restarts(cluster):
    from homecluster import connect
    with connect(str(cluster)) as client:
        before = sorted(client.scheduler_info()["workers"])
        p = hc("install-pkg", "homecluster-no-such-package-zq", inv=cluster)
        assert p.returncode == 2
        assert "package 'homecluster-no-such-package-zq' was not found" in p.stderr
        assert client.submit(sum, [1, 2, 3]).result() == 6  # the cluster still computes
        deadline, seen = time.monotonic() + 30, set()
        while time.monotonic() < deadline:  # count restarts for 30 s: any new worker address is one
            seen |= set(client.scheduler_info()["workers"])
            time.sleep(1)
        assert seen == set(before) and sorted(client.scheduler_info()["workers"]) == before


def test_upload_module_and_package_then_change_and_late_joiner(household, cluster, tmp_path):
    mod = tmp_path / "hc_mod.py"
    mod.write_text("def value():\n    return 1\n")
    pkg = tmp_path / "hc_pkg"
    (pkg / "tests").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "core.py").write_text("def double(x):\n    return 2 * x\n")
    (pkg / "tests" / "test_core.py").write_text("raise RuntimeError('tests must not be uploaded')\n")
    p = hc("upload", str(mod), str(pkg), inv=cluster)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "uploaded hc_mod.py, hc_pkg.zip to 2 worker(s)" in p.stdout

    def use():
        import hc_mod
        import hc_pkg.core
        return hc_mod.value(), hc_pkg.core.double(21)
    assert sorted(on_every_worker(cluster, use).values()) == [(1, 42), (1, 42)]

    mod.write_text("def value():\n    return 2\n")
    assert hc("upload", str(mod), inv=cluster).returncode == 0
    assert sorted(on_every_worker(cluster, use).values()) == [(2, 42), (2, 42)]
    try:
        with_desktop_worker(household, cluster)
        assert sorted(on_every_worker(cluster, use).values()) == [(2, 42), (2, 42), (2, 42)]
    finally:
        without_desktop_worker(household, cluster)


def test_run_sets_the_scheduler_address_and_connect_finds_the_cluster(household, cluster, tmp_path):
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent("""\
        import sys
        from distributed import Client
        with Client() as client:
            print("workers", len(client.scheduler_info()["workers"]), "arg", sys.argv[1])
            print("sum", client.submit(sum, range(10)).result())
        sys.exit(3)
        """))
    p = hc("run", str(script), "hello", inv=cluster)
    assert p.returncode == 3  # the script's own exit code
    assert "workers 2 arg hello" in p.stdout and "sum 45" in p.stdout
    from homecluster import connect
    with connect(str(cluster)) as client:
        assert client.scheduler.address == f"tls://{household.host('desktop').address}:{PORT}"
        assert client.get_versions()["scheduler"]["packages"]["distributed"] == version("distributed")


def test_install_pkg_restart_restarts_workers_which_then_have_it(cluster):
    from homecluster import connect
    with connect(str(cluster)) as client:
        before = set(client.scheduler_info()["workers"])
    p = hc("install-pkg", "--restart", "tabulate==0.9.0", inv=cluster)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.count("tabulate=0.9.0  ok") == 2
    with connect(str(cluster)) as client:
        after = set(client.scheduler_info()["workers"])
        assert len(after) == 2 and not after & before  # new worker processes (new addresses)
        assert set(client.run(lambda: __import__("tabulate").__version__).values()) == {"0.9.0"}
