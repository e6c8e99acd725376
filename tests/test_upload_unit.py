"""Unit tests of what upload sends and of install-pkg's input checks (no cluster needed)."""

from __future__ import annotations

import zipfile

import pytest

from homecluster.errors import HomeclusterError, InventoryError
from homecluster.ops.install_pkg import InstallReport, WorkerInstall, parse_requirements
from homecluster.cli.render import install_text
from homecluster.ops.upload import prepare, zip_package


def test_package_zip_leaves_clutter_out(tmp_path):
    pkg = tmp_path / "mypkg"
    for d in ("sub", "tests", "__pycache__", ".git"):
        (pkg / d).mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "m.py").write_text("X = 1\n")
    (pkg / "tests" / "test_m.py").write_text("")
    (pkg / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"\0")
    (pkg / ".git" / "HEAD").write_text("ref")
    (pkg / "stale.pyc").write_bytes(b"\0")
    out = tmp_path / "out"
    out.mkdir()
    names = sorted(zipfile.ZipFile(zip_package(pkg, out)).namelist())
    assert names == ["mypkg/__init__.py", "mypkg/sub/__init__.py", "mypkg/sub/m.py"]


def test_prepare_refuses_what_cannot_be_imported(tmp_path):
    (tmp_path / "notes.txt").write_text("")
    (tmp_path / "plain").mkdir()
    with pytest.raises(HomeclusterError, match="cannot upload a .txt"):
        prepare(tmp_path / "notes.txt", tmp_path)
    with pytest.raises(HomeclusterError, match="is not a package"):
        prepare(tmp_path / "plain", tmp_path)
    with pytest.raises(HomeclusterError, match="no such file"):
        prepare(tmp_path / "missing.py", tmp_path)
    module = tmp_path / "m.py"
    module.write_text("")
    assert prepare(module, tmp_path) == module


def test_bad_requirement_on_the_command_line_is_named():
    with pytest.raises(InventoryError, match="bad requirement 'numpy=>2'"):
        parse_requirements(["six", "numpy=>2"])


def test_install_report_shows_each_worker():
    text = install_text(InstallReport([WorkerInstall("study", "study", {"six": "1.17.0"}),
                                       WorkerInstall("attic", "attic", {"six": None}, "attic: no wheel")],
                                      ["nas: python /x did not run"]))
    assert "study   study  six=1.17.0   ok" in text and "six=MISSING  FAILED" in text
    assert "failures:\n  attic: no wheel\n  nas: python /x did not run" in text
