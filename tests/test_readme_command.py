"""The README's first command, run as written on a fresh Debian 12 whose only Python is Debian's python3 (with
python3-venv): it must install homecluster and bring the shipped inventory up (`tests/fresh_machine.py`).

The machine is a debootstrapped chroot in its own network namespace with only loopback up. It never reaches the
package index: the wheels homecluster needs are downloaded once on this machine and offered read-only at /wheels,
through pip's environment (PIP_NO_INDEX, PIP_FIND_LINKS) only; the command's text is taken from README.md."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

import fresh_machine
from fresh_machine import BuildError, FreshMachine

REPO = Path(__file__).parent.parent
SECTION = "## The two commands"
GUEST_REPO = "/root/homecluster"
SUITE, PACKAGES = "bookworm", ["python3", "python3-venv"]  # Debian 12; its python3 is the only Python

CHECK = """
import json, sys
from distributed import Client
from homecluster import connect
try:
    Client("tcp://127.0.0.1:8786", timeout=5)
    plain = "connected"
except OSError:
    plain = "refused"
with connect(timeout=30) as client:
    workers = client.scheduler_info()["workers"]
    prefixes = sorted(set(client.run(lambda: __import__("sys").prefix).values()))
    result = client.submit(pow, 2, 10).result()
print("@@ check " + json.dumps({"workers": sorted(w["name"] for w in workers.values()), "result": result,
                                "prefixes": prefixes, "client": sys.prefix, "plain": plain}))
"""

LEFTOVERS = """
import json, os, time
def dask():
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\\0", b" ").decode()
        except OSError:
            continue
        if "distributed.cli" in cmd or "dask" in cmd.split(" ")[0]:
            found.append(cmd)
    return found
deadline = time.monotonic() + 10
while dask() and time.monotonic() < deadline:
    time.sleep(0.2)
print("@@ left " + json.dumps(dask()))
"""


def readme_command() -> str:
    """The one line in the first fenced block of the README's "The two commands" section."""
    text = (REPO / "README.md").read_text()
    section = text.split(SECTION + "\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```(?:bash|sh)?\n(.*?)```", section, re.S)
    assert block, f"no fenced block in README.md's {SECTION!r}"
    lines = [line for line in block.group(1).splitlines() if line.strip()]
    assert len(lines) == 1, f"README's first command should be one line, got {lines}"
    return lines[0]


def repo_files() -> list[str]:
    """The files a clone of this work tree would have (tracked and new, not ignored), relative to REPO."""
    git = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         capture_output=True)
    if git.returncode == 0:
        return [name for name in git.stdout.decode().split("\0") if name]
    skip = {".git", ".venv", "__pycache__", ".pytest_cache", "_artifacts", "build", "dist"}
    return [str(p.relative_to(REPO)) for p in REPO.rglob("*")
            if p.is_file() and not skip.intersection(p.relative_to(REPO).parts) and ".egg-info" not in str(p)]


@pytest.fixture(scope="module")
def rootfs() -> Path:
    ok, reason = fresh_machine.can_build()
    if ok:
        try:
            return fresh_machine.debian_rootfs(SUITE, PACKAGES)
        except BuildError as exc:
            reason = str(exc)
    message = f"cannot build a fresh Debian machine here: {reason}"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI must run the README command test: see tests/run)")
    pytest.skip(message)


def test_readme_command_on_fresh_debian(rootfs, tmp_path):
    command = readme_command()
    with FreshMachine(rootfs, tmp_path / "machine") as machine:
        machine.copy_in(repo_files(), REPO, GUEST_REPO)
        wheels = fresh_machine.download_wheels(REPO, machine.python())
        script = "\n".join([
            f"cd {GUEST_REPO}",
            'echo "@@ system-pip $(python3 -m pip --version >/dev/null 2>&1 && echo yes || echo no)"',
            "start=$EPOCHREALTIME",
            command,  # exactly the README's text
            'rc=$?; echo "@@ readme-command $rc $start $EPOCHREALTIME"',
            'echo "@@ which $(command -v homecluster)"',
            "homecluster status", 'echo "@@ status $?"',
            f".venv/bin/python - <<'EOF'\n{CHECK}\nEOF",
            "homecluster down", 'echo "@@ down $?"',
            f"python3 - <<'EOF'\n{LEFTOVERS}\nEOF",
        ]) + "\n"
        started = time.monotonic()
        run = machine.run(script, env={"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "/wheels",
                                       "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
                          binds={"/wheels": wheels}, timeout=600)
        elapsed = time.monotonic() - started
        left_running = machine.processes()
    assert not (tmp_path / "machine/rootfs").exists(), "the machine's copy was not removed"
    assert left_running == [], "processes from the machine outlived its run"

    marks = {}
    for line in run.stdout.splitlines():
        if line.startswith("@@ "):
            key, _, value = line[3:].partition(" ")
            marks[key] = value
    log = f"$ {command}  ({elapsed:.1f} s in the machine)\n--- stdout\n{run.stdout}\n--- stderr\n{run.stderr[-6000:]}"
    assert marks.get("system-pip") == "no", "the fresh machine should have no pip for its system Python\n" + log
    assert marks.get("readme-command", "").split(" ")[0] == "0", "the README command failed\n" + log
    assert marks.get("which") == f"{GUEST_REPO}/.venv/bin/homecluster", log
    assert marks.get("status") == "0", log
    check = json.loads(marks["check"]) if "check" in marks else {}
    assert check.get("workers") == ["this-machine-0", "this-machine-1"], log
    assert check.get("result") == 1024, log
    assert check.get("plain") == "refused", log  # TLS by default: a client without the certificate is refused
    assert check.get("prefixes") == [f"{GUEST_REPO}/.venv"], log  # the workers run the venv's interpreter
    assert marks.get("down") == "0", log
    assert json.loads(marks.get("left", "null")) == [], "homecluster down left dask processes\n" + log
    assert run.returncode == 0, log
    _, begin, end = marks["readme-command"].split(" ")
    print(f"\nREADME command on fresh Debian: {float(end) - float(begin):.1f} s; whole machine run {elapsed:.1f} s")
