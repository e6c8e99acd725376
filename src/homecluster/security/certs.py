"""The cluster's private certificate authority and one certificate per role, for Dask's mutual TLS.

Kept under the user's config directory (never in the inventory or the project folder), one folder per cluster,
every file mode 0600 and folders 0700: ca.pem + ca.key, scheduler.pem/.key, worker-<host>.pem/.key per worker
host, client.pem/.key for this machine. Keys are EC P-256. A node's certificate both accepts and opens
connections, so it carries serverAuth and clientAuth; Dask does not check hostnames, the address SAN is there
for other tools.
"""

from __future__ import annotations

import datetime
import fcntl
import ipaddress
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from homecluster.core.spec import SCHEDULER, WORKER
from homecluster.errors import HomeclusterError
from homecluster.inventory import Inventory
from homecluster.security.store import CA, CertFiles, role_names

CA_DAYS = 5 * 365
CERT_DAYS = 2 * 365


@dataclass(frozen=True)
class CertInfo:
    """What `certs show` prints for one certificate."""

    name: str
    subject: str
    sha256: str
    not_after: datetime.datetime


class CertStore(CertFiles):
    """One cluster's CA and certificates on this machine, and making them."""

    @contextmanager
    def _locked(self):
        """Hold the cluster's certificate folder alone (two `up` at the same instant must not make two CAs)."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.dir / ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
        except OSError as e:
            raise HomeclusterError(f"cannot write the cluster's certificates into {self.dir}: {e}. Fix: make it "
                                   "writable, or set HOMECLUSTER_CONFIG to a directory of yours") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def ensure(self, inv: Inventory) -> list[str]:
        """Make the CA and every certificate the inventory needs that does not exist yet; the names made."""
        with self._locked():
            return self._ensure(inv)

    def _ensure(self, inv: Inventory) -> list[str]:
        made = []
        if not self.has(CA):
            self._new_ca()
            made.append(CA)
        ca_key, ca_cert = self._load(CA)
        for name in role_names(inv):
            if CA in made or not self.has(name):  # a new CA: certificates of the old one no longer get in
                self._new_cert(name, _address_of(inv, name), ca_key, ca_cert)
                made.append(name)
        return made

    def rotate(self, inv: Inventory) -> list[str]:
        """A new CA and new certificates for every role: the old ones no longer get in after the next `up`."""
        with self._locked():
            for f in [*self.dir.glob("*.pem"), *self.dir.glob("*.key")]:
                f.unlink()
            return self._ensure(inv)

    def show(self) -> list[CertInfo]:
        """Every certificate of the cluster, the CA first."""
        files = sorted(self.dir.glob("*.pem"), key=lambda f: (f.stem != "ca", f.stem))
        try:
            return [_info(f) for f in files]
        except (OSError, ValueError) as e:
            raise HomeclusterError(f"cannot read a certificate in {self.dir}: {e}. Fix: homecluster certs rotate"
                                   ) from None

    def _new_ca(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"homecluster {self.cluster} CA")])
        cert = (_builder(name, name, key.public_key(), CA_DAYS)
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False, encipher_only=False,
                                             decipher_only=False), critical=True)
                .sign(key, hashes.SHA256()))
        self._write("ca", key, cert)

    def _new_cert(self, name: str, address: str | None, ca_key, ca_cert: x509.Certificate) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"homecluster {self.cluster} {name}")])
        builder = (_builder(subject, ca_cert.subject, key.public_key(), CERT_DAYS)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                         ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
        if address:
            builder = builder.add_extension(x509.SubjectAlternativeName([_san(address)]), critical=False)
        self._write(name, key, builder.sign(ca_key, hashes.SHA256()))

    def _write(self, name: str, key, cert: x509.Certificate) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(self.dir, 0o700)
            _write_private(self.key(name), key.private_bytes(serialization.Encoding.PEM,
                                                             serialization.PrivateFormat.PKCS8,
                                                             serialization.NoEncryption()))
            _write_private(self.cert(name), cert.public_bytes(serialization.Encoding.PEM))
        except OSError as e:
            raise HomeclusterError(f"cannot write the cluster's certificates into {self.dir}: {e}. Fix: make it "
                                   "writable, or set HOMECLUSTER_CONFIG to a directory of yours") from None

    def _load(self, name: str):
        try:
            key = serialization.load_pem_private_key(self.key(name).read_bytes(), password=None)
            return key, x509.load_pem_x509_certificate(self.cert(name).read_bytes())
        except (OSError, ValueError) as e:
            raise HomeclusterError(f"cannot read the cluster's {name} certificate in {self.dir}: {e}. "
                                   f"Fix: homecluster certs rotate") from None


def _builder(subject: x509.Name, issuer: x509.Name, public_key, days: int) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))  # a host's clock may be a little behind
            .not_valid_after(now + datetime.timedelta(days=days)))


def _address_of(inv: Inventory, name: str) -> str | None:
    if name == SCHEDULER:
        return inv.scheduler_host.address
    if name.startswith(f"{WORKER}-"):
        return inv.hosts[name[len(WORKER) + 1:]].address
    return None


def _san(address: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(address))
    except ValueError:
        return x509.DNSName(address)


def _write_private(path: Path, data: bytes) -> None:
    """Write a file that only its owner can read, never readable by others even for a moment."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _info(path: Path) -> CertInfo:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return CertInfo(path.stem, cert.subject.rfc4514_string(), cert.fingerprint(hashes.SHA256()).hex(":"),
                    cert.not_valid_after_utc)
