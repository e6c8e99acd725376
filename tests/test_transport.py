"""The SSH transport against a real sshd of the simulated household."""

from __future__ import annotations

import pytest

from conftest import household_inventory
from homecluster.inventory import load
from homecluster.transport.ssh import SSHRunner

pytestmark = pytest.mark.household


def test_ssh_offers_aes_gcm_first(household, tmp_path):
    """The bulk of setup's bytes (wheels) goes over this cipher: paramiko's default would be aes128-ctr + HMAC."""
    inv = load(household_inventory(household, tmp_path / "inventory.yaml", "transport"))
    runner = SSHRunner(inv.hosts["study"])
    try:
        assert runner.run("hostname").stdout.strip() == "study"
        transport = runner.conn.transport
        assert transport.remote_cipher == transport.local_cipher == "aes128-gcm@openssh.com"
    finally:
        runner.close()
