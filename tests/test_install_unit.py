"""The pure parts of install-pkg: what a resolution changes, what a worker is asked to install, who cannot
install, and the record `up` restores from. No cluster, no network."""

from __future__ import annotations

import json

import pytest

from homecluster.plugins import worker as worker_plugins
from homecluster.packages.additions import Additions, record_path
from homecluster.packages.facts import Target
from homecluster.transport.group import HostResult
from homecluster.ops.install_pkg import HostPlan, InstallPlan, _refusal
from homecluster.packages.lock import Change, Locked, compare

LINUX = Target("3.11", "Linux", "x86_64", glibc="2.36")


def test_compare_tells_new_pins_from_changed_versions():
    locked = Locked(LINUX.key, ("pandas==2.1.4", "numpy==1.26.4", "six==1.17.0", "tzdata==2024.1"))
    adds, changes = compare({"NumPy": "2.4.6", "six": "1.17.0", "TzData": "2024.01"}, locked)
    assert adds == ["pandas==2.1.4", "numpy==1.26.4"]
    assert changes == [Change("numpy", "2.4.6", "1.26.4")]  # 2024.01 == 2024.1: the same version


def plan_of(upgrade: bool) -> InstallPlan:
    def host(name, installed, resolved, problem=None):
        adds, changes = compare(installed, Locked(LINUX.key, resolved))
        return HostResult(name, value=HostPlan(name, LINUX, installed, tuple(adds), tuple(changes), problem,
                                               Locked(LINUX.key, resolved)))
    hosts = {"study": host("study", {"numpy": "2.4.6"}, ("pandas==2.1.4", "numpy==1.26.4")),
             "attic": host("attic", {"numpy": "1.26.4"}, ("pandas==2.1.4", "numpy==1.26.4")),
             "pc": host("pc", {"numpy": "2.0.0"}, ("pandas==2.1.4", "numpy==1.26.4"), problem="pc: PEP 668"),
             "nas": HostResult("nas", error="nas: unreachable")}
    return InstallPlan(["pandas<2.2"], upgrade, hosts)


def test_changes_come_from_hosts_that_can_install_and_are_listed_with_their_hosts():
    p = plan_of(upgrade=False)
    assert p.changes() == {Change("numpy", "2.4.6", "1.26.4"): ["study"]}  # pc cannot install: not asked
    assert p.requirements == ["pandas<2.2"] and p.upgraded == ()
    assert _refusal(p.requested, p.changes()) == (
        "installing pandas<2.2 would change packages the workers already have: numpy 2.4.6 -> 1.26.4 (on study). "
        "Fix: add --upgrade to make these changes, or ask for versions that fit what is installed")
    assert p.pinned() == ["pandas==2.1.4"]


def test_upgrade_pins_the_changes_and_lifts_their_constraint():
    p = plan_of(upgrade=True)
    assert p.requirements == ["pandas<2.2", "numpy==1.26.4"]
    assert p.upgraded == ("numpy",)


def facts(**kw):
    base = {"executable": "/usr/bin/python3", "externally_managed": False, "marker": "/usr/lib/python3.11/"
            "EXTERNALLY-MANAGED", "writable": True, "purelib": "/usr/lib/python3/dist-packages", "pip": True,
            "uv": ""}
    return {**base, **kw}


@pytest.mark.parametrize("kw, expected", [
    ({}, None),
    ({"pip": False, "uv": "/usr/bin/uv"}, None),
    ({"externally_managed": True}, "/usr/bin/python3 is externally managed (PEP 668, /usr/lib/python3.11/"
                                   "EXTERNALLY-MANAGED): homecluster never installs into it with "
                                   "--break-system-packages. Fix: make a virtual environment on the host"),
    ({"writable": False}, "/usr/lib/python3/dist-packages is read-only for the worker's user. Fix: make a virtual"),
    ({"pip": False}, "/usr/bin/python3 has neither pip nor uv. Fix: /usr/bin/python3 -m ensurepip --upgrade"),
])
def test_install_problem_names_the_reason_and_the_fix(kw, expected):
    got = worker_plugins.install_problem(facts(**kw))
    assert got == expected if expected is None else got.startswith(expected)


def test_environment_facts_of_this_interpreter():
    f = worker_plugins.environment_facts()
    assert f["dists"]["distributed"] and f["version"].startswith("3.")
    assert worker_plugins.install_problem(f) is None  # the test runs in a Python that can take packages


def test_install_command_prefers_uv_and_never_uses_an_index():
    uv = worker_plugins.install_command(facts(uv="/opt/uv"), "/w", "/w/c.txt", ["six==1.17.0"])
    assert uv == ["/opt/uv", "pip", "install", "--python", "/usr/bin/python3", "--no-index", "--find-links", "/w",
                  "--constraint", "/w/c.txt", "six==1.17.0"]
    pip = worker_plugins.install_command(facts(), "/w", "/w/c.txt", ["six"])
    assert pip[:4] == ["/usr/bin/python3", "-m", "pip", "install"] and "--break-system-packages" not in pip


def test_record_keeps_packages_and_uploads_and_replaces_a_package(tmp_path, monkeypatch):
    monkeypatch.setenv("HOMECLUSTER_CACHE", str(tmp_path / "cache"))
    inv = tmp_path / "inventory.yaml"
    a = Additions(str(inv))
    assert a.empty and a.lines() == []
    a.add_packages(["six==1.16.0", "ujson==5.10.0"], {LINUX.key: ["six==1.16.0", "ujson==5.10.0"]})
    a.add_packages(["six==1.17.0"], {LINUX.key: ["six==1.17.0"]})
    module = tmp_path / "m.py"
    module.write_text("X = 1\n")
    a.add_upload(module)
    module.write_text("X = 2\n")  # the record keeps the file as it was uploaded
    again = Additions(str(inv))
    assert again.requirements() == ["six==1.17.0", "ujson==5.10.0"]
    assert again.lines()[:2] == ["package six==1.17.0", "package ujson==5.10.0"]
    copy = again.uploads["m.py"]["file"]
    assert open(copy).read() == "X = 1\n" and copy.startswith(str(tmp_path / "cache" / "uploads"))
    assert json.loads(record_path(str(inv)).read_text())["format"] == 1
    assert record_path(str(inv)).name == "inventory.added.json"


def test_record_finds_its_wheels_in_the_wheelhouse(tmp_path, monkeypatch):
    monkeypatch.setenv("HOMECLUSTER_CACHE", str(tmp_path))
    house = tmp_path / "wheelhouse" / LINUX.key
    house.mkdir(parents=True)
    (house / "six-1.17.0-py2.py3-none-any.whl").write_bytes(b"")
    a = Additions(str(tmp_path / "inventory.yaml"))
    a.add_packages(["six==1.17.0"], {LINUX.key: ["six==1.17.0", "gone==1.0"]})
    assert [f.name for f in a.wheel_files()] == ["six-1.17.0-py2.py3-none-any.whl"]


def test_a_record_edited_into_another_shape_is_a_clear_error(tmp_path):
    from homecluster.errors import HomeclusterError
    path = record_path(str(tmp_path / "inventory.yaml"))
    path.write_text(json.dumps({"format": 1, "packages": {"six": {"requirement": 3}}}))
    with pytest.raises(HomeclusterError, match="inventory.added.json: not a record homecluster wrote"):
        Additions(str(tmp_path / "inventory.yaml"))
    path.write_text("[1]")  # not even a mapping: an unknown format, read as empty
    assert Additions(str(tmp_path / "inventory.yaml")).empty
