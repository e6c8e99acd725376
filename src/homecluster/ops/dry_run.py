"""`--dry-run`: `up` and `down` walk their real code path against recording runners that answer as hosts where
nothing runs yet; what they recorded is printed, script by script, host by host."""

from __future__ import annotations

from homecluster.backends.process import IDLE_OUTPUT
from homecluster.backends.docker import cluster_image
from homecluster.core.spec import build
from homecluster.inventory import Host, Inventory
from homecluster.ops.down import down
from homecluster.ops.up import up
from homecluster.packages import lock
from homecluster.security.store import CLIENT, CertFiles
from homecluster.transport import reached_by
from homecluster.transport.replay import ReplayRunner


class _Recorder:
    def __init__(self) -> None:
        self.runners: dict[str, ReplayRunner] = {}

    def __call__(self, host: Host) -> ReplayRunner:
        self.runners[host.name] = ReplayRunner(host, default=lambda kind: IDLE_OUTPUT.get(kind, ""))
        return self.runners[host.name]

    def text(self, inv: Inventory, head: str, titles: dict[str, str], errors: dict[str, str] | None = None) -> str:
        out = [head]
        for host in inv.hosts.values():
            title = f"# === {host.name} ({reached_by(host)}): {titles[host.name]}"
            scripts = self.runners[host.name].scripts
            body = "\n# ---\n".join(scripts) if scripts else "# (nothing to run)"
            how = "powershell -EncodedCommand SCRIPT" if host.os == "windows" else "sh -c SCRIPT"
            stop = f"\n# stops here: {errors[host.name]}" if (errors or {}).get(host.name) else ""
            out.append(f"{title}; each script runs as: {how}\n{body}{stop}\n")
        return "\n".join(out)


def up_text(inv: Inventory) -> str:
    """The scripts `up` runs on a household where nothing is running yet."""
    spec, rec = build(inv, lock.digest(inv), image=cluster_image(inv)), _Recorder()
    rep = up(inv, runners=rec, wait=False)
    titles = {h: ", ".join(p.role for p in spec.for_host(h)) or "nothing to start" for h in inv.hosts}
    errors = {h: r.error for h, r in rep.hosts.items() if r.error}  # what up would say there (no image yet, ...)
    head = (f"# homecluster up --dry-run: cluster {spec.name}, scheduler {spec.scheduler_address}, "
            f"dashboard {spec.dashboard_url or 'off'}{' (private to its host)' if spec.dashboard_private else ''}\n")
    store = CertFiles(inv.cluster.name)
    if inv.cluster.tls and not store.has(CLIENT):
        head += f"# first: make the cluster's certificates in {store.dir} (homecluster certs init)\n"
    return rec.text(inv, head, titles, errors)


def down_text(inv: Inventory) -> str:
    """The scripts `down` runs: stop workers on every host, then schedulers."""
    rec = _Recorder()
    down(inv, runners=rec)
    return rec.text(inv, f"# homecluster down --dry-run: cluster {inv.cluster.name}\n",
                    dict.fromkeys(inv.hosts, "stop workers, then the scheduler"))
