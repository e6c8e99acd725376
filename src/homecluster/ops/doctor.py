"""`homecluster doctor`: would this household's cluster break on a version mismatch, a pickle or a port?

Compares Python and the packages dask cares about (plus the environment's own packages) between this machine
and: the running scheduler and workers (asked over dask's rpc), and every host's interpreter over SSH (so hosts
not running yet are checked too). Checks that each host's Python can unpickle what this client sends, and that
the scheduler and dashboard ports answer. The comparison is pure and tested on its own.
"""

from __future__ import annotations

import base64
import shlex
import socket
import urllib.request
from dataclasses import dataclass

from homecluster.shell.posix import json_line, shell_path
from homecluster import scheduler
from homecluster.transport import posix_only
from homecluster.transport.group import Group
from homecluster.errors import HomeclusterError
from homecluster.inventory import Host, Inventory
from homecluster.packages.lock import requirement_name
from homecluster.core.spec import build, interpreter

# Must match between client and every process (distributed's own version check list).
REQUIRED = ("python", "dask", "distributed", "cloudpickle", "msgpack", "toolz", "tornado")
# Must match where present; missing on a host is a note (only tasks that import them fail there).
OPTIONAL = ("numpy", "pandas", "lz4")
ERROR, NOTE = "MISMATCH", "note"


@dataclass(frozen=True)
class Finding:
    """One disagreement with this machine (the client), or one failed check."""

    where: str
    what: str
    client: str
    there: str
    verdict: str
    fix: str


def python_minor(v: str | None) -> str | None:
    return ".".join(v.split(".")[:2]) if v else v


def compare(client: dict[str, str | None], there: dict[str, str | None], where: str, extra: tuple[str, ...],
            fix: str) -> list[Finding]:
    """Findings for one process or host against the client's versions. Pure."""
    out = []
    for pkg in REQUIRED + OPTIONAL + extra:
        mine, theirs = client.get(pkg), there.get(pkg)
        if pkg == "python":
            if python_minor(mine) != python_minor(theirs):
                out.append(Finding(where, pkg, mine or "-", theirs or "-", ERROR, fix))
            elif mine != theirs:
                out.append(Finding(where, pkg, mine or "-", theirs or "-", NOTE, "none needed (same minor)"))
        elif mine != theirs and (mine is not None or pkg in extra):
            optional_missing = theirs is None and pkg in OPTIONAL
            out.append(Finding(where, pkg, mine or "-", theirs or "missing", NOTE if optional_missing else ERROR,
                               f"add {pkg} to environment.packages, then {fix}" if optional_missing else fix))
    return out


_VERSIONS_PY = r"""
import base64, json, pickle, platform, sys
from importlib.metadata import version, PackageNotFoundError
def v(n):
    try:
        return version(n)
    except PackageNotFoundError:
        return None
out = {n: v(n) for n in sys.argv[2:]}
out["python"] = platform.python_version()
try:
    f = pickle.loads(base64.b64decode(sys.argv[1]))
    out["_unpickle"] = "ok" if f(41) == 42 else "wrong result"
except Exception as e:
    out["_unpickle"] = "%s: %s" % (type(e).__name__, e)
print("hc-versions " + json.dumps(out))
"""


def pickled_probe() -> str:
    """What the client sends: a function pickled with cloudpickle at dask's protocol, base64 for argv."""
    import pickle

    import cloudpickle
    return base64.b64encode(cloudpickle.dumps(lambda x: x + 1, protocol=pickle.HIGHEST_PROTOCOL)).decode()


def versions_script(python: str, packages: list[str], payload: str) -> str:
    return f"{shell_path(python)} -c {shlex.quote(_VERSIONS_PY)} {payload} {' '.join(map(shlex.quote, packages))}"


def parse_versions(output: str) -> dict | None:
    return json_line(output, "hc-versions")


def client_versions(packages: list[str]) -> dict[str, str | None]:
    from distributed.versions import get_versions
    got = get_versions(packages)["packages"]
    got["python"] = got["python"].split(".final")[0]
    return got


def host_fix(inv: Inventory, host: Host) -> str:
    if host.python or inv.environment is None:
        return f"install the client's versions into {interpreter(inv, host)} on {host.name}"
    return f"homecluster setup {host.name}, then homecluster up"


def check_hosts(inv: Inventory, client: dict, extra: tuple[str, ...]) -> list[Finding]:
    """Each host's interpreter over SSH: versions, and whether it unpickles what this client sends."""
    packages = list(REQUIRED[1:] + OPTIONAL + extra)
    payload = pickled_probe()

    def probe(runner, host: Host) -> dict | None:
        posix_only(host, "doctor")
        return parse_versions(runner.run(versions_script(interpreter(inv, host), packages, payload)).stdout)

    findings = []
    with Group(inv.hosts.values()) as group:
        results = group.each(inv.hosts, probe)
    for name, r in results.items():
        where, host = f"host {name}", inv.hosts[name]
        if not r.ok:
            findings.append(Finding(where, "reachable", "-", "no", ERROR, r.error))
        elif r.value is None:
            findings.append(Finding(where, "python", client["python"], "cannot run", ERROR, host_fix(inv, host)))
        else:
            findings += compare(client, r.value, where, extra, host_fix(inv, host))
            if r.value["_unpickle"] != "ok":
                findings.append(Finding(where, "unpickle", "ok", r.value["_unpickle"], ERROR, host_fix(inv, host)))
    return findings


def _cluster_versions(ep: scheduler.Endpoint, packages: list[str]) -> dict[str, dict]:
    out = scheduler.versions(ep, packages)
    for v in out.values():
        v["python"] = (v.get("python") or "").split(".final")[0]
    return out


def check_cluster(inv: Inventory, client: dict, extra: tuple[str, ...], ports: bool = True
                  ) -> tuple[bool, list[Finding]]:
    """The running scheduler and workers (their versions are what is loaded, not what is on disk)."""
    spec = build(inv)
    host, port = scheduler.host_port(spec.scheduler_address)
    try:
        socket.create_connection((host, port), timeout=1).close()
        running = _cluster_versions(scheduler.endpoint(inv), list(extra))
    except Exception:  # noqa: BLE001 - not running (or not answering): only the host checks apply
        return False, []
    findings = []
    for where, there in running.items():
        findings += compare(client, there, where, extra, "homecluster down, then homecluster up (the running "
                                                         "processes loaded the old packages)")
    return True, findings + (check_ports(inv, spec) if ports else [])


def check_ports(inv: Inventory, spec) -> list[Finding]:
    """The scheduler port accepts TCP; the dashboard answers HTTP where this machine should see it, and a private
    dashboard of another host is closed to the network."""
    out = []
    host, port = scheduler.host_port(spec.scheduler_address)
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError as e:
        out.append(Finding("scheduler", f"port {port}", "open", str(e), ERROR, "check the firewall"))
    dashboard_url = spec.dashboard_url
    if dashboard_url and spec.dashboard_private and not inv.scheduler_host.is_local:
        try:
            socket.create_connection((host, inv.cluster.dashboard_port), timeout=1).close()
            out.append(Finding("dashboard", f"port {inv.cluster.dashboard_port}", "closed to the network", "open",
                               ERROR, "homecluster up (the running scheduler was started with dashboard: lan)"))
        except OSError:
            pass
    elif dashboard_url:
        try:
            base = dashboard_url.rsplit("/", 1)[0]
            with urllib.request.urlopen(f"{base}/health", timeout=3) as r:
                r.read()
        except OSError as e:
            out.append(Finding("dashboard", dashboard_url, "answers", str(e), ERROR,
                               "check the firewall and that bokeh is installed where the scheduler runs"))
    return out


def quick_check(inv: Inventory) -> list[Finding]:
    """Only the running processes' versions (what `up` warns about): no SSH, no port checks."""
    extra = _extra(inv)
    running, findings = check_cluster(inv, client_versions(list(extra)), extra, ports=False)
    return [f for f in findings if f.verdict == ERROR]


def _extra(inv: Inventory) -> tuple[str, ...]:
    """The environment's own packages, by normalized name."""
    return tuple(requirement_name(p) for p in (inv.environment.packages if inv.environment else ()))


@dataclass
class DoctorReport:
    """Every finding, and what was checked."""

    findings: list[Finding]
    hosts_checked: int
    cluster_running: bool

    @property
    def ok(self) -> bool:
        return not any(f.verdict == ERROR for f in self.findings)


EXPIRY_WARNING_DAYS = 30


def check_certificates(inv: Inventory, now=None) -> list[Finding]:
    """The cluster's certificates on this machine: missing ones (up makes them), and any that expires soon."""
    if not inv.cluster.tls:
        return []
    import datetime

    from homecluster.security.certs import CertStore

    store = CertStore(inv.cluster.name)
    missing = store.missing(inv)
    if missing:
        return [Finding("certificates", ", ".join(missing), "-", "missing", NOTE, "homecluster up makes them")]
    now = now or datetime.datetime.now(datetime.timezone.utc)
    try:
        infos = store.show()
    except HomeclusterError as e:
        return [Finding("certificates", str(store.dir), "-", "unreadable", ERROR, str(e).split("Fix: ")[-1])]
    soon = now + datetime.timedelta(days=EXPIRY_WARNING_DAYS)
    return [Finding("certificates", c.name, "-", f"expires {c.not_after:%Y-%m-%d}", ERROR,
                    "homecluster certs rotate, then homecluster up") for c in infos if c.not_after <= soon]


def doctor(inv: Inventory) -> DoctorReport:
    """Run every check; a host's failure is a finding, never an exception."""
    extra = _extra(inv)
    client = client_versions(list(extra))
    findings = check_hosts(inv, client, extra)
    running, more = check_cluster(inv, client, extra)
    return DoctorReport(findings + more + check_certificates(inv), len(inv.hosts), running)
