"""CLI behaviour that needs no hosts: inventory lookup, dashboard URL, exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SAMPLE = Path(__file__).parent / "golden" / "sample-inventory.yaml"


def run(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "HOMECLUSTER_INVENTORY")}
    return subprocess.run([sys.executable, "-m", "homecluster", *args], capture_output=True, text=True,
                          env={**clean, **(env or {})}, cwd=cwd, timeout=60)


def test_dashboard_url_from_environment_variable(tmp_path):
    lan = tmp_path / "lan.yaml"
    lan.write_text(SAMPLE.read_text().replace("cluster:\n", "cluster:\n  dashboard: lan\n", 1))
    p = run("dashboard", env={"HOMECLUSTER_INVENTORY": str(lan)}, cwd=tmp_path)
    assert p.returncode == 0 and p.stdout.strip() == "http://192.168.1.10:8787/status"


def test_inventory_flag_wins_over_environment(tmp_path):
    other = tmp_path / "other.yaml"
    other.write_text("hosts:\n  me: {connection: local, address: 127.0.0.1}\ncluster: {dashboard_port: 9999}\n")
    p = run("dashboard", "-i", str(other), env={"HOMECLUSTER_INVENTORY": str(SAMPLE)})
    assert p.stdout.strip() == "http://127.0.0.1:9999/status"


def test_missing_default_inventory_says_how_to_fix(tmp_path):
    p = run("status", cwd=tmp_path)
    assert p.returncode == 2
    assert p.stderr.strip() == ("error: inventory.yaml: file not found. Fix: pass -i PATH, set "
                                "HOMECLUSTER_INVENTORY, or create inventory.yaml here")


def test_logs_of_unknown_host(tmp_path):
    p = run("logs", "toaster", "-i", str(SAMPLE))
    assert p.returncode == 2 and "no host named 'toaster'. Fix: use one of: desktop, laptop, mac-mini, gaming-pc" in p.stderr


def test_dashboard_off_is_explained(tmp_path):
    inv = tmp_path / "inv.yaml"
    inv.write_text("cluster: {dashboard_port: null}\nhosts:\n  me: {connection: local}\n")
    p = run("dashboard", "-i", str(inv))
    assert p.returncode == 2 and "dashboard is off" in p.stderr


def test_usage_error_exits_2():
    p = run("upp")
    assert p.returncode == 2 and "invalid choice" in p.stderr


def test_run_passes_the_inventory_and_the_tls_files_to_the_script(tmp_path):
    """A plain Client() in the script reads the address and the client's TLS files from Dask's configuration."""
    script = tmp_path / "s.py"
    script.write_text("import dask, distributed\nfrom homecluster.api import scheduler_address\n"
                      "print(dask.config.get('scheduler-address'), scheduler_address())\n"
                      "g = lambda k: dask.config.get('distributed.comm.' + k)\n"
                      "print(g('require-encryption'), g('tls.ca-file'), g('tls.client.cert'), g('tls.client.key'))\n")
    config = {"HOMECLUSTER_CONFIG": str(tmp_path / "config")}
    missing = run("run", "-i", str(SAMPLE), str(script), cwd=tmp_path, env=config)
    assert missing.returncode == 1 and "no client certificate for cluster home" in missing.stderr
    assert "Fix: homecluster up" in missing.stderr
    assert run("certs", "init", "-i", str(SAMPLE), env=config).returncode == 0
    p = run("run", "-i", str(SAMPLE), str(script), cwd=tmp_path, env=config)
    assert p.returncode == 0, p.stderr
    address, tls = p.stdout.splitlines()
    assert address.split() == ["tls://192.168.1.10:8786", "tls://192.168.1.10:8786"]
    certs = tmp_path / "config/certs/home"
    assert tls.split() == ["True", str(certs / "ca.pem"), str(certs / "client.pem"), str(certs / "client.key")]


def test_joblib_block_keeps_only_builtin_warning_filters(monkeypatch):
    """scikit-learn ships the caller's warning filters with every task: inside the block only builtin ones remain
    (a Jupyter filter on an IPython class would make the workers fail to unpickle the tasks)."""
    import warnings

    from distributed import Client

    from homecluster import api

    class Custom(Warning):
        pass

    local = Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None)
    monkeypatch.setattr(api, "connect", lambda inventory=None: local)  # the block closes it at the end
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=Custom)
        with api.joblib_on_cluster() as client:
            assert client is local
            assert all(f[2].__module__ == "builtins" for f in warnings.filters)
        assert any(f[2] is Custom for f in warnings.filters)  # restored after the block
    assert local.status == "closed"
