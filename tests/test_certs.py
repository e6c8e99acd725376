"""The cluster's CA and role certificates: made once, mode 0600 in the config directory, verifiable with the CA,
usable by Dask's TLS on both ends, replaced by rotate."""

from __future__ import annotations

import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509

from homecluster.inventory import parse
from homecluster.security.certs import CertStore, role_names

INV = """\
cluster: {name: home, scheduler: desktop}
hosts:
  desktop: {address: 10.0.0.10, nworkers: 0}
  study: {address: 10.0.0.11}
  attic: {address: 10.0.0.12, nworkers: 2}
"""


@pytest.fixture
def store(tmp_path):
    return CertStore("home", tmp_path / "config")


def test_init_makes_the_ca_and_one_certificate_per_role_only_once(store):
    inv = parse(INV)
    assert role_names(inv) == ["scheduler", "worker-study", "worker-attic", "client"]
    assert store.ensure(inv) == ["ca", "scheduler", "worker-study", "worker-attic", "client"]
    assert store.ensure(inv) == []
    assert stat.S_IMODE(store.dir.stat().st_mode) == 0o700
    for f in store.dir.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    assert [c.name for c in store.show()] == ["ca", "client", "scheduler", "worker-attic", "worker-study"]


def test_certificates_chain_to_the_ca_and_carry_the_address(store):
    store.ensure(parse(INV))
    ca = x509.load_pem_x509_certificate(store.cert("ca").read_bytes())
    study = x509.load_pem_x509_certificate(store.cert("worker-study").read_bytes())
    study.verify_directly_issued_by(ca)
    san = study.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.11"]


def test_a_tls_context_loads_them_both_ways(store):
    store.ensure(parse(INV))
    for purpose in (ssl.Purpose.CLIENT_AUTH, ssl.Purpose.SERVER_AUTH):
        ctx = ssl.create_default_context(purpose, cafile=str(store.cert("ca")))
        ctx.load_cert_chain(str(store.cert("scheduler")), str(store.key("scheduler")))


def test_rotate_replaces_the_ca(store):
    inv = parse(INV)
    store.ensure(inv)
    before = {c.name: c.sha256 for c in store.show()}
    assert set(store.rotate(inv)) == set(before)
    after = {c.name: c.sha256 for c in store.show()}
    assert all(before[n] != after[n] for n in before)
    old_ca_signed = before["client"]
    assert old_ca_signed not in after.values()


def test_a_host_added_later_gets_its_certificate(store):
    store.ensure(parse(INV))
    more = parse(INV + "  garage: {address: 10.0.0.13}\n")
    assert store.ensure(more) == ["worker-garage"]


def test_dask_takes_them_and_refuses_a_stranger(store, tmp_path):
    """A real dask scheduler on loopback with the scheduler's certificate: the cluster's client gets in; a plain
    tcp:// client and a client whose certificate comes from another cluster's CA do not."""
    import socket
    import subprocess
    import sys

    from distributed import Client
    from distributed.security import Security

    store.ensure(parse(INV))
    other = CertStore("other", tmp_path / "elsewhere")
    other.ensure(parse(INV.replace("name: home", "name: other")))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sched = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                              "--port", str(port), "--no-dashboard", "--tls-ca-file", str(store.cert("ca")),
                              "--tls-cert", str(store.cert("scheduler")), "--tls-key", str(store.key("scheduler"))],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def security(s: CertStore) -> Security:
        return Security(tls_ca_file=str(s.cert("ca")), tls_client_cert=str(s.cert("client")),
                        tls_client_key=str(s.key("client")), require_encryption=True)
    try:
        with Client(f"tls://127.0.0.1:{port}", security=security(store), timeout=30) as c:
            assert c.scheduler_info()["address"] == f"tls://127.0.0.1:{port}"
        with pytest.raises(OSError):
            Client(f"tcp://127.0.0.1:{port}", timeout=3)
        with pytest.raises(OSError):
            Client(f"tls://127.0.0.1:{port}", security=security(other), timeout=3)
    finally:
        sched.terminate()
        sched.wait(15)


def test_the_certs_command(tmp_path):
    import os
    import subprocess
    import sys

    inv = tmp_path / "inventory.yaml"
    inv.write_text(INV)
    env = {**os.environ, "HOMECLUSTER_CONFIG": str(tmp_path / "config")}

    def certs(action):
        return subprocess.run([sys.executable, "-m", "homecluster", "certs", action, "-i", str(inv)],
                              capture_output=True, text=True, env=env)
    assert "no certificates yet" in certs("show").stdout
    p = certs("init")
    assert p.returncode == 0 and p.stdout.startswith("made: ca, scheduler, worker-study, worker-attic, client")
    assert certs("init").stdout.startswith("nothing to make")
    before = certs("show").stdout
    assert before.count(":") == 5 * 31 and "worker-attic" in before  # five SHA-256 fingerprints
    certs("rotate")
    assert certs("show").stdout != before
    assert (tmp_path / "config" / "certs" / "home" / "client.key").stat().st_mode & 0o077 == 0


def test_unreadable_or_unwritable_certificates_are_one_line_errors(store, tmp_path):
    from homecluster.errors import HomeclusterError

    store.ensure(parse(INV))
    store.cert("client").write_text("not a certificate\n")
    with pytest.raises(HomeclusterError, match="cannot read a certificate in .*Fix: homecluster certs rotate"):
        store.show()
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the config directory should be\n")
    with pytest.raises(HomeclusterError, match="cannot write the cluster's certificates into .*HOMECLUSTER_CONFIG"):
        CertStore("home", blocked).ensure(parse(INV))


def test_doctor_names_missing_and_soon_expiring_certificates(tmp_path, monkeypatch):
    import datetime

    from homecluster.ops.doctor import check_certificates

    monkeypatch.setenv("HOMECLUSTER_CONFIG", str(tmp_path / "config"))
    inv = parse(INV)
    missing = check_certificates(inv)
    assert len(missing) == 1 and "ca, scheduler" in missing[0].what and missing[0].fix == "homecluster up makes them"
    CertStore("home").ensure(inv)
    assert check_certificates(inv) == []
    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=2 * 365 - 10)
    soon = check_certificates(inv, now=later)
    assert {f.what for f in soon} == {"scheduler", "worker-study", "worker-attic", "client"}  # the CA lasts 5 years
    assert all(f.fix == "homecluster certs rotate, then homecluster up" for f in soon)
    assert check_certificates(parse(INV.replace("name: home", "name: home, tls: false"))) == []


def _ensure_in_another_process(root: str) -> None:
    CertStore("home", Path(root)).ensure(parse(INV))


def test_two_ups_at_the_same_instant_make_one_ca(tmp_path):
    """Seen in CI: two `up` of a new cluster at once each wrote ca.key.tmp; one failed. Now the folder is locked:
    every process succeeds and every certificate chains to the one CA."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_ensure_in_another_process, args=(str(tmp_path / "config"),)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    store = CertStore("home", tmp_path / "config")
    ca = x509.load_pem_x509_certificate(store.cert("ca").read_bytes())
    for name in role_names(parse(INV)):
        cert = x509.load_pem_x509_certificate(store.cert(name).read_bytes())
        cert.verify_directly_issued_by(ca)
    assert not list(store.dir.glob("*.tmp"))
