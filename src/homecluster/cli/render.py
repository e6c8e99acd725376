"""Per-host tables and JSON for the results of up, status and down. Pure: results in, text out."""

from __future__ import annotations

import json

from homecluster.transport import reached_by as how
from homecluster.backends.base import ProcessState
from homecluster.ops.report import ClusterReport
from homecluster.transport.group import HostResult
from homecluster.inventory import Inventory


def table(header: list[str], rows: list[list[str]]) -> str:
    """A plain fixed-width table."""
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header] + rows]
    return "\n".join(lines)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _addresses(rep: ClusterReport, inv: Inventory) -> list[str]:
    dash = rep.spec.dashboard_url or "off (dashboard_port: null)"
    if rep.spec.dashboard_url and rep.spec.dashboard_private and not inv.scheduler_host.is_local:
        dash = f"private to {inv.scheduler_host.name} (open it with: homecluster dashboard)"
    state = "running" if rep.scheduler_running else "NOT RUNNING"
    return [f"cluster {rep.spec.name}: scheduler {rep.spec.scheduler_address} ({state})", f"dashboard: {dash}"]


def with_failures(lines: list[str], errors: list[str]) -> str:
    """The text, then every error spelled out under a `failures:` heading (nothing when there is none)."""
    return "\n".join(lines + (["", "failures:"] + [f"  {e}" for e in errors] if errors else []))


def cluster_text(rep: ClusterReport, inv: Inventory, title: str) -> str:
    """The per-host table shown after up and by status, with every failure spelled out below it."""
    rows = []
    for h in rep.hosts.values():
        workers = f"{len(h.registered)}/{len(h.expected)}" if h.expected else "-"
        pids = " ".join(f"{role}={pid}" for role, pid in h.pids.items()) or "-"
        state = "ok" if h.ok else "FAILED"
        rows.append([h.host, how(inv.hosts[h.host]), ", ".join(h.actions) or "-", workers, pids, state])
    out = _addresses(rep, inv) + ["", table(["HOST", "REACHED BY", title, "WORKERS", "PIDS", "STATUS"], rows)]
    return with_failures(out, [h.error for h in rep.hosts.values() if h.error])


def workers_text(rep: ClusterReport) -> str:
    """One row per registered worker."""
    rows = [[w.name, h.host, w.address, str(w.nthreads), _size(w.memory_limit)]
            for h in rep.hosts.values() for w in h.registered]
    if not rows:
        return "no workers registered"
    return table(["WORKER", "HOST", "ADDRESS", "THREADS", "MEMORY"], rows)


def _supervision(st: ProcessState) -> dict:
    return {"running": st.running, "restarts": st.restarts, "last_exit": st.last_exit,
            "last_exit_seconds_ago": st.last_exit_ago, "next_start_in_seconds": st.next_start_in}


def status_json(rep: ClusterReport) -> str:
    """Machine-readable status for scripts."""
    hosts = [{"name": h.host, "address": h.address, "ok": h.ok, "error": h.error, "processes": h.pids,
              "supervision": {role: _supervision(st) for role, st in h.states.items()},
              "state": h.actions, "expected_workers": list(h.expected)} for h in rep.hosts.values()]
    workers = [{**w.to_dict(), "host": h.host} for h in rep.hosts.values() for w in h.registered]
    return json.dumps({"cluster": rep.spec.name, "scheduler_address": rep.spec.scheduler_address,
                       "dashboard_url": rep.spec.dashboard_url, "scheduler_running": rep.scheduler_running,
                       "hosts": hosts, "workers": workers}, indent=2)


def down_text(results: dict[str, HostResult[list[str]]], inv: Inventory) -> str:
    """Per host: what down stopped, or why it could not."""
    rows = []
    for name, r in results.items():
        what = ", ".join(r.value) if r.ok and r.value else ("nothing running" if r.ok else "-")
        rows.append([name, how(inv.hosts[name]), what, "ok" if r.ok else "FAILED"])
    out = [table(["HOST", "REACHED BY", "STOPPED (role pid)", "STATUS"], rows)]
    return with_failures(out, [r.error for r in results.values() if not r.ok])


def setup_text(results: dict, inv: Inventory, downloaded: list[str]) -> str:
    """Per host: which Python, which target, what setup did."""
    rows = []
    for name, r in results.items():
        v = r.value
        if r.ok:
            what = v.action + (f" (sent {v.sent} wheels)" if v.sent else "") + (f": {v.detail}" if v.detail else "")
            rows.append([name, how(inv.hosts[name]), v.python or "-", v.target or "-", what, "ok"])
        else:
            rows.append([name, how(inv.hosts[name]), "-", "-", "-", "FAILED"])
    out = [table(["HOST", "REACHED BY", "PYTHON", "TARGET", "SETUP", "STATUS"], rows)]
    out.append(f"downloaded {len(downloaded)} wheel(s) into the wheelhouse" if downloaded
               else "wheelhouse: nothing to download")
    return with_failures(out, [r.error for r in results.values() if not r.ok])


def doctor_text(rep) -> str:
    """Mismatches first, then notes; the fix on every row."""
    order = sorted(rep.findings, key=lambda f: f.verdict != "MISMATCH")
    rows = [[f.where, f.what, f.client, f.there, f.verdict, f.fix] for f in order]
    cluster = "running: scheduler and workers checked" if rep.cluster_running else "not running: hosts only"
    head = f"checked this machine against {rep.hosts_checked} host(s); cluster {cluster}"
    if not rows:
        return head + "\nall versions agree; every host unpickles what this client sends; ports answer"
    verdict = "something would break" if not rep.ok else "nothing would break"
    return "\n".join([head, "", table(["WHERE", "CHECK", "CLIENT", "THERE", "VERDICT", "FIX"], rows), "", verdict])


def install_text(rep) -> str:
    """One row per worker: the installed version of each requested package, or the error."""
    if not rep.workers:
        return with_failures(["no workers are running. Fix: homecluster up"], rep.host_errors)
    rows = [[r.worker, r.host, " ".join(f"{n}={v or 'MISSING'}" for n, v in r.versions.items()),
             "ok" if r.ok else "FAILED"] for r in rep.workers]
    out = [table(["WORKER", "HOST", "INSTALLED", "STATUS"], rows)]
    return with_failures(out, sorted({r.error for r in rep.workers if r.error}) + rep.host_errors)


def certs_text(certs: list) -> str:
    """One row per certificate: name, expiry, SHA-256 fingerprint."""
    if not certs:
        return "no certificates yet. Fix: homecluster certs init (homecluster up makes them too)"
    rows = [[c.name, c.not_after.strftime("%Y-%m-%d"), c.sha256] for c in certs]
    return table(["CERTIFICATE", "EXPIRES", "SHA-256"], rows)


def ports_text(inv: Inventory, plan: dict, networks: tuple[str, ...], unpinned: list[str]) -> str:
    """The port plan: one row per listening socket (or range), and what the firewall cannot pin."""
    rows = [[host, e.what, e.address, str(e.ports), ", ".join(networks) or "(set cluster.lan)" if e.lan
             else "this host only", e.who] for host, listens in plan.items() for e in listens]
    out = [table(["HOST", "LISTENS", "ADDRESS", "PORTS", "REACHED FROM", "BY"], rows)]
    if unpinned:
        out.append(f"\nnot pinned (the OS picks a port at start, a firewall cannot open them exactly): set "
                   f"{' and '.join(unpinned)} in {inv.path}")
    return "\n".join(out)


def ports_json(plan: dict, networks: tuple[str, ...], unpinned: list[str]) -> str:
    return json.dumps({"lan": list(networks), "unpinned": unpinned,
                       "hosts": {h: [e.to_dict() for e in listens] for h, listens in plan.items()}}, indent=2)
