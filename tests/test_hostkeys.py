"""Host keys: fingerprints as OpenSSH prints them, known_hosts lookups and appends, refusal of a changed key
(unit tests), and `homecluster trust` / `status` against the real sshds of the simulated household."""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import pty
import re
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import paramiko
import pytest
import yaml

from homecluster.cli import trust as trust_cli
from homecluster.errors import HostError, InventoryError
from homecluster.inventory import Host, parse
from homecluster.security import hostkeys
from homecluster.transport.ssh import SSHRunner

sys.path.insert(0, str(Path(__file__).parent))
from conftest import hc, household_inventory  # noqa: E402

FP_RE = re.compile(r"SHA256:[A-Za-z0-9+/]{43}")


def keygen(path: Path, keytype: str = "ed25519") -> Path:
    """A fresh key pair made by OpenSSH's ssh-keygen; the path of its .pub."""
    extra = ["-b", "2048"] if keytype == "rsa" else []
    subprocess.run(["ssh-keygen", "-q", "-t", keytype, *extra, "-N", "", "-C", "test", "-f", str(path)], check=True)
    return Path(f"{path}.pub")


def public_key(pub: Path) -> paramiko.PKey:
    keytype, blob = pub.read_text().split()[:2]
    return paramiko.PKey.from_type_string(keytype, base64.b64decode(blob))


def keygen_fingerprint(pub: Path) -> str:
    """What `ssh-keygen -lf` prints as the fingerprint."""
    return subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True, check=True).stdout.split()[1]


def line_of(name: str, key: paramiko.PKey) -> str:
    return f"{name} {key.get_name()} {key.get_base64()}\n"


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, paramiko.PKey]:
    d = tmp_path_factory.mktemp("keys")
    return {name: public_key(keygen(d / name, t)) for name, t in
            (("a", "ed25519"), ("b", "ed25519"), ("ecdsa", "ecdsa"), ("rsa", "rsa"))}


def host(tmp_path: Path, port: int = 22, **kw) -> Host:
    return Host(name="attic", address="10.0.0.3", port=port, known_hosts=str(tmp_path / "known_hosts"), **kw)


@pytest.fixture
def offered(monkeypatch):
    """Make scan() return the key put in offered["key"], without network; offered["prefer"] is what it was asked."""
    state: dict = {}

    def fake_scan(h, timeout=hostkeys.SCAN_TIMEOUT, prefer=None):
        state["prefer"] = prefer
        return state["key"]
    monkeypatch.setattr(hostkeys, "scan", fake_scan)
    return state


class Asked:
    def __init__(self, answer: bool):
        self.answer, self.questions = answer, []

    def __call__(self, question: str) -> bool:
        self.questions.append(question)
        return self.answer


# --- fingerprints and known_hosts ---------------------------------------------------------------------------

@pytest.mark.parametrize("keytype", ["ed25519", "ecdsa", "rsa"])
def test_fingerprint_is_what_ssh_keygen_prints(tmp_path, keytype):
    pub = keygen(tmp_path / "k", keytype)
    assert hostkeys.fingerprint(public_key(pub)) == keygen_fingerprint(pub)
    assert FP_RE.fullmatch(keygen_fingerprint(pub))


def test_known_key_is_keyed_like_openssh_and_reads_hashed_entries(tmp_path, keys):
    kh = tmp_path / "known_hosts"
    hashed = paramiko.HostKeys.hash_host("10.0.0.5")
    kh.write_text("# comment\n\n" + line_of("10.0.0.3", keys["a"]) + line_of("[10.0.0.3]:2222", keys["b"])
                  + line_of(hashed, keys["ecdsa"]) + "garbage line\n")
    assert [k.asbytes() for k in hostkeys.known_key(host(tmp_path))] == [keys["a"].asbytes()]
    assert [k.asbytes() for k in hostkeys.known_key(host(tmp_path, 2222))] == [keys["b"].asbytes()]
    hashed_host = Host(name="h", address="10.0.0.5", known_hosts=str(kh))
    assert [k.asbytes() for k in hostkeys.known_key(hashed_host)] == [keys["ecdsa"].asbytes()]
    assert hostkeys.known_key(Host(name="x", address="10.0.0.9", known_hosts=str(kh))) == []
    assert hostkeys.known_key(Host(name="x", address="10.0.0.9", known_hosts=str(tmp_path / "none"))) == []
    assert hostkeys.key_name(host(tmp_path)) == "10.0.0.3"
    assert hostkeys.key_name(host(tmp_path, 2222)) == "[10.0.0.3]:2222"


def test_known_hosts_that_is_a_directory_is_a_one_line_error(tmp_path):
    (tmp_path / "known_hosts").mkdir()
    with pytest.raises(HostError, match=r"^attic: cannot read known_hosts .*known_hosts \(.*\)\. Fix: "):
        hostkeys.known_key(host(tmp_path))


# --- trust ---------------------------------------------------------------------------------------------------

def test_unknown_key_is_recorded_after_yes_in_a_new_private_file(tmp_path, keys, offered):
    offered["key"] = keys["a"]
    h = Host(name="attic", address="10.0.0.3", known_hosts=str(tmp_path / "ssh" / "known_hosts"))
    asked = Asked(True)
    r = hostkeys.trust(h, asked)
    fp = hostkeys.fingerprint(keys["a"])
    assert (r.outcome, r.fingerprint, r.keytype, r.host) == ("recorded", fp, "ssh-ed25519", "attic")
    assert asked.questions == [f"attic (10.0.0.3:22): ssh-ed25519 {fp}\nrecord it in {r.path}?"]
    kh = tmp_path / "ssh" / "known_hosts"
    assert r.path == kh and kh.read_text() == line_of("10.0.0.3", keys["a"])
    assert stat.S_IMODE(kh.stat().st_mode) == 0o600 and stat.S_IMODE(kh.parent.stat().st_mode) == 0o700
    found = subprocess.run(["ssh-keygen", "-F", "10.0.0.3", "-f", str(kh)], capture_output=True, text=True)
    assert found.returncode == 0 and keys["a"].get_base64() in found.stdout  # OpenSSH reads what was written
    again = Asked(True)
    assert hostkeys.trust(h, again).outcome == "already" and again.questions == []
    assert kh.read_text() == line_of("10.0.0.3", keys["a"])


def test_record_keeps_existing_lines_and_adds_a_line_boundary(tmp_path, keys, offered):
    kh = tmp_path / "known_hosts"
    kh.write_text(line_of("10.0.0.9", keys["b"]).rstrip("\n"))  # no newline at the end
    kh.chmod(0o644)
    offered["key"] = keys["ecdsa"]
    assert hostkeys.trust(host(tmp_path, 2222), Asked(True)).outcome == "recorded"
    assert kh.read_text() == line_of("10.0.0.9", keys["b"]) + line_of("[10.0.0.3]:2222", keys["ecdsa"])
    assert stat.S_IMODE(kh.stat().st_mode) == 0o644  # an existing file keeps its mode
    found = subprocess.run(["ssh-keygen", "-F", "[10.0.0.3]:2222", "-f", str(kh)], capture_output=True, text=True)
    assert found.returncode == 0


def test_declined_key_is_not_recorded(tmp_path, keys, offered):
    offered["key"] = keys["a"]
    r = hostkeys.trust(host(tmp_path), Asked(False))
    assert r.outcome == "declined" and r.fingerprint == hostkeys.fingerprint(keys["a"])
    assert not (tmp_path / "known_hosts").exists()


@pytest.mark.parametrize("port,name", [(22, "10.0.0.3"), (2222, "[10.0.0.3]:2222")])
def test_changed_key_is_refused_with_both_fingerprints(tmp_path, keys, offered, port, name):
    kh = tmp_path / "known_hosts"
    kh.write_text(line_of(name, keys["a"]))
    offered["key"] = keys["b"]
    asked = Asked(True)
    with pytest.raises(HostError) as info:
        hostkeys.trust(host(tmp_path, port), asked)
    old, new = hostkeys.fingerprint(keys["a"]), hostkeys.fingerprint(keys["b"])
    assert str(info.value) == (
        f"attic: host key of 10.0.0.3:{port} CHANGED: known_hosts {kh} has {old}, the host now offers {new}; "
        f"refusing. Fix: if attic was reinstalled, remove the old key with ssh-keygen -R {name} -f {kh}, "
        "then run homecluster trust attic")
    assert asked.questions == [] and kh.read_text() == line_of(name, keys["a"])
    assert offered["prefer"] == ["ssh-ed25519"]  # the host was asked for a key of the recorded type


def test_key_of_another_type_when_one_is_recorded_is_refused(tmp_path, keys, offered):
    kh = tmp_path / "known_hosts"
    kh.write_text(line_of("10.0.0.3", keys["rsa"]))
    offered["key"] = keys["a"]
    with pytest.raises(HostError, match=f"has {re.escape(hostkeys.fingerprint(keys['rsa']))}, the host now "
                                        f"offers {re.escape(hostkeys.fingerprint(keys['a']))}; refusing"):
        hostkeys.trust(host(tmp_path), Asked(True))
    assert offered["prefer"] == ["ssh-rsa"]


def test_revoked_key_is_refused(tmp_path, keys, offered):
    kh = tmp_path / "known_hosts"
    kh.write_text("@revoked * " + line_of("", keys["a"]).lstrip())
    offered["key"] = keys["a"]
    with pytest.raises(HostError, match=r"is marked @revoked in .*; refusing"):
        hostkeys.trust(host(tmp_path), Asked(True))
    assert kh.read_text().startswith("@revoked") and len(kh.read_text().splitlines()) == 1


def test_local_host_needs_no_trust_and_no_network(tmp_path, monkeypatch):
    monkeypatch.setattr(hostkeys, "scan", lambda *a, **k: pytest.fail("a local host was scanned"))
    r = hostkeys.trust(host(tmp_path, connection="local"), Asked(True))
    assert r.outcome == "local" and r.fingerprint is None


# --- scan failures -------------------------------------------------------------------------------------------

def _server(reply: bytes | None) -> tuple[socket.socket, int]:
    """A TCP server on 127.0.0.1 that answers each connection with `reply` and closes, or stays silent (None)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()

    def serve():
        held = []
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            if reply is None:
                held.append(conn)
            else:
                conn.sendall(reply)
                conn.close()
    threading.Thread(target=serve, daemon=True).start()
    return srv, srv.getsockname()[1]


def test_scan_of_a_closed_port_says_connection_refused(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    h = Host(name="attic", address="127.0.0.1", port=port, known_hosts=str(tmp_path / "kh"))
    with pytest.raises(HostError, match=f"^attic: cannot reach 127.0.0.1:{port}: connection refused. Fix: is sshd "
                                        "running on attic\\?$"):
        hostkeys.scan(h, timeout=2)


@pytest.mark.parametrize("reply", [b"HTTP/1.0 400 Bad Request\r\n\r\n", None], ids=["not-ssh", "silent"])
def test_scan_of_something_that_is_not_sshd_is_one_line(tmp_path, reply):
    srv, port = _server(reply)
    try:
        h = Host(name="attic", address="127.0.0.1", port=port, known_hosts=str(tmp_path / "kh"))
        with pytest.raises(HostError) as info:
            hostkeys.scan(h, timeout=1)
    finally:
        srv.close()
    msg = str(info.value)
    assert msg.startswith(f"attic: 127.0.0.1:{port} did not complete an SSH handshake (")
    assert "Fix: check port:" in msg and "\n" not in msg


# --- the SSH transport's refusals ----------------------------------------------------------------------------

def test_ssh_refusal_of_a_changed_key_names_both_fingerprints(tmp_path, keys):
    runner = SSHRunner(host(tmp_path))
    msg = runner._explain(paramiko.BadHostKeyException("10.0.0.3", keys["b"], keys["a"]))
    kh = tmp_path / "known_hosts"
    assert msg == (f"attic: host key of 10.0.0.3:22 CHANGED: known_hosts {kh} has {hostkeys.fingerprint(keys['a'])}, "
                   f"the host now offers {hostkeys.fingerprint(keys['b'])}; refusing. Fix: if attic was reinstalled, "
                   f"remove the old key with ssh-keygen -R 10.0.0.3 -f {kh}, then run homecluster trust attic")


def test_ssh_refusal_of_an_unknown_key_says_homecluster_trust(tmp_path):
    msg = SSHRunner(host(tmp_path))._explain(paramiko.SSHException("Server '10.0.0.3' not found in known_hosts"))
    assert "is unknown" in msg and "Fix: homecluster trust attic (check the fingerprint" in msg


# --- the trust command ---------------------------------------------------------------------------------------

def _args(argv: list[str]) -> argparse.Namespace:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-i", "--inventory", default=argparse.SUPPRESS)
    p = argparse.ArgumentParser(parents=[common])
    trust_cli.add_parser(p.add_subparsers(dest="command", required=True), common)
    return p.parse_args(argv)


def test_trust_parser():
    args = _args(["trust", "-i", "x.yaml", "a", "b", "--yes"])
    assert (args.hosts, args.yes, args.inventory, args.func) == (["a", "b"], True, "x.yaml", trust_cli.cmd_trust)
    assert _args(["trust", "a"]).yes is False
    with pytest.raises(SystemExit):
        _args(["trust"])


def test_confirm_without_a_terminal_is_no_and_says_so():
    out = io.StringIO()
    confirm = trust_cli.Confirm(False, stdin=io.StringIO("y\n"), out=out)
    assert confirm("q?") is False and confirm.no_tty and out.getvalue() == "q? no: stdin is not a terminal\n"
    assert trust_cli.Confirm(True, stdin=io.StringIO(""), out=io.StringIO())("q?") is True


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("answer,expected", [("y\n", True), ("YES\n", True), ("n\n", False), ("\n", False),
                                             ("", False)])
def test_confirm_on_a_terminal_asks(answer, expected):
    out = io.StringIO()
    assert trust_cli.Confirm(False, stdin=_Tty(answer), out=out)("q?") is expected
    assert out.getvalue() == "q? [y/N] "


def test_one_failing_host_does_not_hide_the_others(tmp_path, keys, monkeypatch, capsys):
    inv = parse(f"cluster: {{scheduler: a}}\ndefaults: {{known_hosts: {tmp_path / 'kh'}}}\n"
                "hosts:\n  a: {address: 10.0.0.1}\n  b: {address: 10.0.0.2}\n  me: {connection: local, "
                "address: 127.0.0.2}\n")

    def fake_scan(h, timeout=10, prefer=None):
        if h.name == "a":
            raise HostError("a: cannot reach 10.0.0.1:22: connection refused. Fix: is sshd running on a?")
        return keys["a"]
    monkeypatch.setattr(hostkeys, "scan", fake_scan)
    code = trust_cli.cmd_trust(inv, _args(["trust", "a", "b", "me", "--yes"]))
    out, err = capsys.readouterr()
    fp = hostkeys.fingerprint(keys["a"])
    assert code == 1
    assert err == "error: a: cannot reach 10.0.0.1:22: connection refused. Fix: is sshd running on a?\n"
    assert out.splitlines() == [f"b (10.0.0.2:22): ssh-ed25519 {fp}", f"record it in {tmp_path / 'kh'}? yes (--yes)",
                                f"b: recorded ssh-ed25519 {fp} in {tmp_path / 'kh'}",
                                "me: connection: local, no SSH host key to trust"]
    assert trust_cli.cmd_trust(inv, _args(["trust", "b", "me"])) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"b: ssh-ed25519 {fp} is already in {tmp_path / 'kh'}"
    with pytest.raises(InventoryError, match="no host named 'nas'. Fix: use one of: a, b, me"):
        trust_cli.cmd_trust(inv, _args(["trust", "b", "nas"]))


# --- on the simulated household ------------------------------------------------------------------------------

def _inventory(hh, tmp_path: Path, known_hosts: Path) -> Path:
    """A household inventory (no worker processes: status then only has to reach each host) whose hosts are
    checked against `known_hosts`."""
    inv = household_inventory(hh, tmp_path / "inventory.yaml", "hostkeys", workers={})
    data = yaml.safe_load(inv.read_text())
    data["defaults"]["known_hosts"] = str(known_hosts)
    inv.write_text(yaml.safe_dump(data, sort_keys=False))
    return inv


def _known_hosts_without(hh, path: Path, name: str, instead: str = "") -> Path:
    address = hh.host(name).address
    lines = [line if line.split()[0] != address else instead for line in hh.known_hosts.read_text().splitlines(True)]
    path.write_text("".join(lines))
    return path


def _status_errors(inv: Path) -> dict[str, str | None]:
    p = hc("status", "--json", inv=inv)
    return {h["name"]: h["error"] for h in json.loads(p.stdout)["hosts"]}


@pytest.mark.household
def test_trust_records_a_missing_host_key_that_status_then_accepts(household, tmp_path):
    hh = household
    kh = _known_hosts_without(hh, tmp_path / "known_hosts", "attic")
    before = kh.read_text()
    inv = _inventory(hh, tmp_path, kh)
    errors = _status_errors(inv)
    assert "host key of" in errors["attic"] and "is unknown" in errors["attic"]
    assert "homecluster trust attic" in errors["attic"]
    assert errors["desktop"] is None and errors["study"] is None

    no = subprocess.run([sys.executable, "-m", "homecluster", "trust", "-i", str(inv), "attic"], input="n\n",
                        capture_output=True, text=True, timeout=60)
    assert no.returncode == 1, no.stdout + no.stderr
    assert "attic: not recorded (stdin is not a terminal)" in no.stdout and "--yes" in no.stdout
    assert kh.read_text() == before

    real = keygen_fingerprint(Path(f"{hh._host_key('attic')}.pub"))
    yes = hc("trust", "attic", "--yes", inv=inv, timeout=60)
    assert yes.returncode == 0, yes.stdout + yes.stderr
    assert FP_RE.findall(yes.stdout) == [real, real]  # shown before recording, and in the result line
    assert f"attic ({hh.host('attic').address}:22): ssh-ed25519 {real}" in yes.stdout
    assert kh.read_text().startswith(before) and len(kh.read_text().splitlines()) == len(before.splitlines()) + 1

    again = hc("trust", "attic", "study", "--yes", inv=inv, timeout=60)
    assert again.returncode == 0 and again.stdout.count("is already in") == 2, again.stdout + again.stderr
    assert _status_errors(inv) == {"desktop": None, "study": None, "attic": None}

    unknown = hc("trust", "nas", inv=inv, timeout=60)
    assert unknown.returncode == 2 and unknown.stderr.strip().count("\n") == 0
    assert "no host named 'nas'. Fix: use one of: desktop, study, attic" in unknown.stderr


@pytest.mark.household
def test_changed_host_key_is_refused_per_host_with_both_fingerprints(household, tmp_path):
    hh = household
    impostor = public_key(keygen(tmp_path / "impostor"))
    study = hh.host("study").address
    kh = _known_hosts_without(hh, tmp_path / "known_hosts", "study", instead=line_of(study, impostor))
    before = kh.read_text()
    inv = _inventory(hh, tmp_path, kh)
    p = hc("status", inv=inv)
    old, new = hostkeys.fingerprint(impostor), keygen_fingerprint(Path(f"{hh._host_key('study')}.pub"))
    expected = (f"study: host key of {study}:22 CHANGED: known_hosts {kh} has {old}, the host now offers {new}; "
                f"refusing. Fix: if study was reinstalled, remove the old key with ssh-keygen -R {study} -f {kh}, "
                "then run homecluster trust study")
    assert expected in p.stdout, p.stdout + p.stderr
    assert "desktop:" not in p.stdout.split("failures:")[-1] and "attic:" not in p.stdout.split("failures:")[-1]
    assert _status_errors(inv) == {"desktop": None, "study": expected, "attic": None}

    refused = hc("trust", "study", "attic", "--yes", inv=inv, timeout=60)
    assert refused.returncode == 1
    assert refused.stderr == f"error: {expected}\n"
    assert "attic: ssh-ed25519" in refused.stdout and "is already in" in refused.stdout
    assert kh.read_text() == before


@pytest.mark.household
def test_trust_on_a_terminal_records_only_after_the_user_says_yes(household, tmp_path):
    """As a person runs it: the question with the fingerprint on the terminal, then `y`."""
    kh = _known_hosts_without(household, tmp_path / "known_hosts", "study")
    before = kh.read_text()
    inv = _inventory(household, tmp_path, kh)
    real = keygen_fingerprint(Path(f"{household._host_key('study')}.pub"))
    master, slave = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "homecluster", "trust", "-i", str(inv), "study"], stdin=slave,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    os.close(slave)
    try:
        asked = b""
        while b"[y/N] " not in asked:
            chunk = os.read(p.stdout.fileno(), 4096)
            assert chunk, asked.decode() + p.stderr.read().decode()
            asked += chunk
        assert kh.read_text() == before  # nothing recorded while the question waits
        assert f"study ({household.host('study').address}:22): ssh-ed25519 {real}".encode() in asked
        os.write(master, b"y\n")
        out, err = p.communicate(timeout=60)
    finally:
        os.close(master)
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, (asked + out + err).decode()
    assert f"study: recorded ssh-ed25519 {real}".encode() in out
    assert kh.read_text().startswith(before) and household.host("study").address in kh.read_text()[len(before):]
