"""Issue 11's acceptance on the simulated household: the cluster is private by default (mutual TLS), the keys stay
where they belong, rotation locks the old certificates out, `run` works with a plain Client(), tls: false warns,
and a host whose SSH key changed is refused by `up` while the others come up. Ports 8880-8889."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from distributed import Client
from distributed.security import Security

from conftest import hc, household_inventory, status
from homecluster import connect, scheduler
from homecluster.inventory import load
from homecluster.security.certs import CertStore

pytestmark = pytest.mark.household


def config_dir() -> Path:
    return Path(os.environ["HOMECLUSTER_CONFIG"])


def security_from(folder: Path) -> Security:
    return Security(tls_ca_file=str(folder / "ca.pem"), tls_client_cert=str(folder / "client.pem"),
                    tls_client_key=str(folder / "client.key"), require_encryption=True)


def refused(address: str, security: Security | None = None) -> bool:
    """Whether the scheduler turns this client away (a short timeout: refusals are immediate)."""
    try:
        Client(address, security=security, timeout=5).close()
    except OSError:
        return True
    return False


def key_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and (p.suffix == ".key" or b"PRIVATE KEY" in _head(p))]


def _head(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            return f.read(4096)
    except OSError:
        return b""


def test_private_by_default(household, tmp_path, cleanup):
    """tls:// only; a tcp:// client, a client of another CA and a hand-started worker without certificates are all
    refused; connect() works; every key on the hosts is 0600 in that cluster's run directory, and down removes
    them; the client's keys are in the user's config directory, 0600."""
    inv = household_inventory(household, tmp_path / "inventory.yaml", "private",
                              cluster_extra={"scheduler_port": 8880, "dashboard_port": 8881})
    cleanup(inv)
    up = hc("up", inv=inv)
    assert up.returncode == 0, up.stdout + up.stderr
    desktop = household.host("desktop").address
    address = f"tls://{desktop}:8880"
    assert f"scheduler {address} (running)" in up.stdout and "warning" not in up.stderr
    assert scheduler.endpoint(load(str(inv))).address == address

    with connect(str(inv)) as client:
        workers = client.scheduler_info()["workers"]
        assert sorted(w["name"] for w in workers.values()) == ["attic-0", "attic-1", "study"]
        assert all(a.startswith("tls://") for a in workers)
        assert client.submit(pow, 2, 10).result() == 1024

    assert refused(f"tcp://{desktop}:8880")
    other = CertStore("stranger", tmp_path / "other-config")
    other.ensure(load(str(inv)))
    assert refused(address, security_from(other.dir))

    # a dask worker started by hand on a host without the cluster's certificates cannot join
    for target in (f"tcp://{desktop}:8880", address):
        p = household.run("study", [sys.executable, "-m", "distributed.cli.dask_worker", target, "--name", "intruder",
                                    "--no-nanny", "--death-timeout", "5", "--no-dashboard"], timeout=60)
        assert p.returncode != 0, p.stdout + p.stderr
    with connect(str(inv)) as client:
        assert "intruder" not in {w["name"] for w in client.scheduler_info()["workers"].values()}

    run_root = tmp_path / "run"
    keys = key_files(run_root)
    by_host = {}
    for k in keys:
        rel = k.relative_to(run_root / "private")
        host, folder = rel.parts[0], rel.parts[1]
        assert folder == "tls" and stat.S_IMODE(k.stat().st_mode) == 0o600, k
        assert stat.S_IMODE(k.parent.stat().st_mode) == 0o700, k.parent
        by_host.setdefault(host, set()).add(k.name)
    assert by_host == {"desktop": {"scheduler.key"}, "study": {"worker.key"}, "attic": {"worker.key"}}
    project = [k for k in key_files(tmp_path) if run_root not in k.parents and other.dir not in k.parents]
    assert project == [], "no key in the project folder"
    client_dir = config_dir() / "certs" / "private"
    for f in client_dir.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    assert stat.S_IMODE(client_dir.stat().st_mode) == 0o700

    assert hc("down", inv=inv).returncode == 0
    assert key_files(run_root) == [], "down leaves no key on the hosts"


def test_rotate_then_up_locks_the_old_certificates_out(household, tmp_path, cleanup):
    inv = household_inventory(household, tmp_path / "inventory.yaml", "rotate",
                              workers={"study": 1}, cluster_extra={"scheduler_port": 8882, "dashboard_port": 8883})
    cleanup(inv)
    assert hc("up", inv=inv).returncode == 0
    old = tmp_path / "old-certs"
    shutil.copytree(config_dir() / "certs" / "rotate", old)
    address = f"tls://{household.host('desktop').address}:8882"
    assert not refused(address, security_from(old))

    rot = hc("certs", "rotate", inv=inv)
    assert rot.returncode == 0 and "homecluster up restarts it" in rot.stdout, rot.stdout + rot.stderr
    up = hc("up", inv=inv)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "restart scheduler" in up.stdout and "restart worker" in up.stdout  # the certificates changed
    with connect(str(inv)) as client:
        assert client.submit(sum, [1, 2, 3]).result() == 6
    assert refused(address, security_from(old))
    assert "nothing changed" in hc("up", inv=inv).stdout


def test_run_with_a_plain_client_and_tls_false_warns(household, tmp_path, cleanup):
    """`homecluster run` of a script with a plain Client() works with TLS on; with tls: false the cluster runs
    on tcp:// and every up warns."""
    inv = household_inventory(household, tmp_path / "inventory.yaml", "plain",
                              workers={"attic": 1}, cluster_extra={"scheduler_port": 8884, "dashboard_port": 8885})
    cleanup(inv)
    assert hc("up", inv=inv).returncode == 0
    script = tmp_path / "job.py"
    script.write_text("from distributed import Client\n"
                      "with Client() as c:\n"
                      "    print(c.scheduler.address, c.submit(lambda x: x * 2, 21).result())\n")
    p = hc("run", str(script), inv=inv)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == [f"tls://{household.host('desktop').address}:8884", "42"]

    inv.write_text(inv.read_text().replace("cluster:\n", "cluster:\n  tls: false\n", 1))
    for _ in range(2):  # the restart onto tcp://, then a no-op up: both warn
        up = hc("up", inv=inv)
        assert up.returncode == 0, up.stdout + up.stderr
        assert "warning:" in up.stderr and "cluster.tls is false" in up.stderr and "Fix: remove tls: false" in up.stderr
    address = f"tcp://{household.host('desktop').address}:8884"
    assert f"scheduler {address} (running)" in up.stdout and "nothing changed" in up.stdout
    with Client(address, timeout=10) as client:  # no certificate needed now
        assert client.submit(pow, 3, 3).result() == 27
    assert status(inv)["scheduler_address"] == address


def test_up_refuses_a_host_whose_ssh_key_changed(household, tmp_path, cleanup):
    """The other hosts come up; the changed one is refused with both fingerprints and the fix."""
    known = tmp_path / "known_hosts"
    attic = household.host("attic").address
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    fake = stranger.with_suffix(".pub").read_text().split()[:2]
    lines = [ln if ln.split()[0] != attic else f"{attic} {' '.join(fake)}\n"
             for ln in household.known_hosts.read_text().splitlines(keepends=True)]
    known.write_text("".join(lines))
    inv = household_inventory(household, tmp_path / "inventory.yaml", "hostkey",
                              workers={"study": 1, "attic": 1},
                              cluster_extra={"scheduler_port": 8886, "dashboard_port": 8887})
    inv.write_text(inv.read_text().replace(str(household.known_hosts), str(known)))
    cleanup(inv)
    up = hc("up", inv=inv)
    assert up.returncode == 1
    offered = subprocess.run(["ssh-keygen", "-lf", str(household._host_key("attic")) + ".pub"],
                             capture_output=True, text=True, check=True).stdout.split()[1]
    recorded = subprocess.run(["ssh-keygen", "-lf", str(stranger) + ".pub"], capture_output=True, text=True,
                              check=True).stdout.split()[1]
    attic_error = next(ln for ln in up.stdout.splitlines() if ln.strip().startswith("attic:"))
    assert "CHANGED" in attic_error and offered in attic_error and recorded in attic_error, up.stdout
    assert f"ssh-keygen -R {attic} -f {known}" in attic_error
    assert "study" in up.stdout and "1/1" in next(ln for ln in up.stdout.splitlines() if ln.startswith("study"))
