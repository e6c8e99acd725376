"""--dry-run prints exactly the scripts each host would run: checked against golden files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from validators import powershell_errors

GOLDEN = Path(__file__).parent / "golden"
SAMPLE = GOLDEN / "sample-inventory.yaml"


@pytest.mark.parametrize("command", ["up", "down"])
def test_dry_run_matches_golden(command):
    # the certificates' folder as the golden file shows it, and where none exist yet (--dry-run makes none)
    env = {**os.environ, "HOMECLUSTER_CONFIG": "/home/alice/.config/homecluster"}
    p = subprocess.run([sys.executable, "-m", "homecluster", command, "--dry-run", "-i", str(SAMPLE)],
                       capture_output=True, text=True, timeout=60, env=env)
    assert p.returncode == 0, p.stderr
    golden = GOLDEN / f"{command}-dry-run.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(p.stdout)
    assert p.stdout == golden.read_text()


def test_dry_run_scripts_are_valid_sh_or_powershell():
    """Every script in the golden output parses: sh -n for POSIX hosts, the tree-sitter PowerShell grammar for
    Windows hosts (syntax only, nothing runs)."""
    for name in ("up-dry-run.txt", "down-dry-run.txt"):
        kinds = set()
        for powershell, chunk in _scripts(GOLDEN / name):
            kinds.add(powershell)
            if powershell:
                assert powershell_errors(chunk) == [], f"{name}:\n{chunk}"
                continue
            p = subprocess.run(["sh", "-n", "-c", chunk], capture_output=True, text=True)
            assert p.returncode == 0, f"{name}: {p.stderr}\n{chunk}"
        assert kinds == {True, False}  # the sample has a Windows host


def _scripts(path: Path) -> list[tuple[bool, str]]:
    """(whether PowerShell, script) for every script of a dry-run's output."""
    chunks, current, powershell = [], [], False
    for line in path.read_text().splitlines():
        if line.startswith("# ===") or line == "# ---":
            if current:
                chunks.append((powershell, "\n".join(current)))
            current = []
            if line.startswith("# ==="):
                powershell = line.endswith("powershell -EncodedCommand SCRIPT")
        elif not line.startswith("#"):
            current.append(line)
    return chunks + ([(powershell, "\n".join(current))] if current else [])
