"""Where a cluster's certificates live on this machine, and what identifies them: paths and digests only, so
the commands that just read them (status, connect) do not import `cryptography`. Making them: certs.py."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from homecluster.core.spec import SCHEDULER, WORKER, cert_name
from homecluster.errors import HomeclusterError
from homecluster.inventory import Inventory

CA, CLIENT = "ca", "client"


def config_root() -> Path:
    """$HOMECLUSTER_CONFIG, else $XDG_CONFIG_HOME/homecluster, else ~/.config/homecluster."""
    if os.environ.get("HOMECLUSTER_CONFIG"):
        return Path(os.environ["HOMECLUSTER_CONFIG"])
    return Path(os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")) / "homecluster"


def role_names(inv: Inventory) -> list[str]:
    """The certificates a cluster needs: the scheduler, each host that runs workers, and this machine."""
    return [SCHEDULER] + [cert_name(WORKER, h.name) for h in inv.hosts.values() if h.nworkers > 0] + [CLIENT]


class CertFiles:
    """One cluster's certificate folder on this machine: <config>/certs/<cluster>/, NAME.pem and NAME.key."""

    def __init__(self, cluster: str, root: Path | None = None):
        self.cluster = cluster
        self.dir = (root or config_root()) / "certs" / cluster

    def cert(self, name: str) -> Path:
        return self.dir / f"{name}.pem"

    def key(self, name: str) -> Path:
        return self.dir / f"{name}.key"

    def has(self, name: str) -> bool:
        return self.cert(name).is_file() and self.key(name).is_file()

    def missing(self, inv: Inventory) -> list[str]:
        """The certificates the inventory needs that do not exist yet (the CA first)."""
        return [n for n in [CA] + role_names(inv) if not self.has(n)]

    def digest(self, name: str) -> str | None:
        """What identifies a role's credentials (the CA and its certificate): a process started with others
        must be restarted. None when they do not exist yet."""
        try:
            blob = self.cert(CA).read_bytes() + self.cert(name).read_bytes()
        except OSError:
            return None
        return hashlib.sha256(blob).hexdigest()[:16]

    def client_files(self) -> tuple[str, str, str]:
        """(CA, certificate, key) of this machine's client; a one-line error when they are missing."""
        if not (self.cert(CA).is_file() and self.has(CLIENT)):
            raise HomeclusterError(f"no client certificate for cluster {self.cluster} in {self.dir}. "
                                   "Fix: homecluster up (it makes them), or homecluster certs init")
        return str(self.cert(CA)), str(self.cert(CLIENT)), str(self.key(CLIENT))
