"""The inventory: the household's machines as typed, validated data.

`load(path)` reads `inventory.yaml` and returns an `Inventory`, or raises an `InventoryError` that names the
file, the line, the key and the fix. Nothing here touches the network.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from homecluster.inventory import environment
from homecluster.inventory.environment import Environment
from homecluster.errors import InventoryError, one_line, shown
from homecluster.inventory.units import parse_bytes, parse_seconds

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")  # names, variables and port ranges match whole (fullmatch)
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
PORT_RANGE_RE = re.compile(r"\s*(\d{1,5})\s*:\s*(\d{1,5})\s*")
MAX_PROCESSES = 1024  # the most worker processes per host, and threads per worker process
MAX_SECONDS = 7 * 24 * 3600
MAX_MEMORY = 2**50  # 1 PiB
MAX_AMOUNT = 1e15  # of a resource
MAX_DEPTH = 50  # nesting of the YAML: an inventory needs 5
MAX_INT_BITS = 10_000  # a YAML integer longer than that cannot be printed (Python limits int to 4300 digits)


@dataclass(frozen=True)
class PortRange:
    """An inclusive range of TCP ports, written `first:last` as dask's --worker-port takes it."""

    first: int
    last: int

    def __str__(self) -> str:
        return f"{self.first}:{self.last}"

    def __len__(self) -> int:
        return self.last - self.first + 1

    def overlaps(self, other: "PortRange") -> bool:
        return self.first <= other.last and other.first <= self.last


@dataclass(frozen=True)
class ClusterSettings:
    """The `cluster:` section: what is the same for the whole household."""

    name: str = "home"
    scheduler: str = ""
    scheduler_port: int = 8786
    dashboard_port: int | None = 8787
    dashboard: str = "private"
    tls: bool = True
    worker_ports: PortRange | None = None
    nanny_ports: PortRange | None = None
    lan: tuple[str, ...] = ()  # the household's networks (CIDR); () = the /24s of the hosts' addresses


@dataclass(frozen=True)
class Host:
    """One household machine and how its Dask processes run."""

    name: str
    address: str
    port: int = 22
    user: str | None = None
    ssh_key: str | None = None
    known_hosts: str = "~/.ssh/known_hosts"
    connection: str = "ssh"
    os: str = "linux"
    backend: str = "native"
    image: str | None = None
    docker_host: str | None = None
    docker_run_options: tuple[str, ...] = ()
    supervisor: str = "auto"
    service_scope: str = "user"
    nssm: str | None = None
    firewall: str = "auto"
    python: str | None = None
    nworkers: int = 1
    nthreads: int | None = None
    memory_limit: str = "auto"
    death_timeout: float = 120.0
    local_directory: str | None = None
    run_directory: str = "~/.homecluster"
    resources: dict[str, float] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def is_local(self) -> bool:
        return self.connection == "local"



@dataclass(frozen=True)
class Inventory:
    """A validated inventory: cluster settings plus hosts in file order."""

    path: str
    cluster: ClusterSettings
    hosts: dict[str, Host]
    environment: Environment | None = None

    @property
    def scheduler_host(self) -> Host:
        return self.hosts[self.cluster.scheduler]

    def select(self, names: list[str]) -> list[Host]:
        """Hosts by name; an unknown name is a one-line error listing the known ones."""
        unknown = [n for n in names if n not in self.hosts]
        if unknown:
            raise InventoryError(self.path, None, "hosts", f"no host named {unknown[0]!r}",
                                 f"use one of: {', '.join(self.hosts)}")
        return [self.hosts[n] for n in names]


# --- value checkers: each returns the clean value or raises Bad(problem, fix) ---------------------------------

class Bad(ValueError):
    """A value that does not fit; args: (problem, fix)."""


def _int(lo: int, hi: int) -> Callable[[Any], int]:
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise Bad(f"expected a whole number, got {shown(v)}", f"write a number such as {lo}")
        if not lo <= v <= hi:
            raise Bad(f"{shown(v)} is out of range", f"use a number between {lo} and {hi}")
        return v
    return check


def _line(v: str) -> str:
    if not one_line(v):
        raise Bad(f"{shown(v)} holds a line break or a NUL byte", "write it on one line, without control characters")
    return v


def _str(v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise Bad(f"expected a non-empty text, got {shown(v)}", "write a text value (quote it if in doubt)")
    return _line(v)


def _address(v: Any) -> str:
    if len(_str(v)) > 253 or v.startswith("-") or any(c.isspace() for c in v):
        raise Bad(f"{shown(v)} is not an IP address or host name", "write an address such as 192.168.1.10 or nas.local")
    return v


def _choice(*options: str) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        if v not in options:
            raise Bad(f"{shown(v)} is not one of {', '.join(options)}", f"use one of: {', '.join(options)}")
        return v
    return check


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise Bad(f"{shown(v)} is not true or false", "write true or false")
    return v


def _backend(v: Any) -> str:
    return _choice("native", "docker")(v)


def _options(v: Any) -> tuple[str, ...]:
    """Command-line options: a text split as sh would (`--gpus all`), or a list of single arguments."""
    if isinstance(v, str):
        try:
            parts = shlex.split(_line(v))
        except ValueError as e:
            raise Bad(f"{shown(v)} cannot be split into options ({e})", "close the quote, or write a list") from None
    elif isinstance(v, list):
        parts = [_str(x) for x in v]
    else:
        raise Bad(f"expected options such as '--gpus all', got {shown(v)}", "write a text or a list of texts")
    if parts and not parts[0].startswith("-"):
        raise Bad(f"{parts[0]!r} is not an option", "start with an option such as --gpus or --shm-size")
    return tuple(parts)


def _name(v: Any) -> str:
    if not isinstance(v, str) or not NAME_RE.fullmatch(v) or v.isdigit():
        raise Bad(f"{shown(v)} is not a usable name",
                  "use up to 63 letters, digits, '.', '_' or '-', starting with a letter or digit, not only digits")
    return v


def _parsed(parse: Callable[[str], float], v: Any) -> float | None:
    """What a parser (as dask reads sizes and durations) reads in a number or a one-line text; None where it
    cannot read it."""
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        return None
    text = str(v)
    if not text.strip() or not one_line(text):
        return None
    try:
        return float(parse(text))
    except (ValueError, KeyError, IndexError, OverflowError):  # what the parsers raise on junk
        return None


def _memory(v: Any) -> str:
    if v == "auto":
        return v
    size = _parsed(parse_bytes, v)
    if size is None:
        raise Bad(f"cannot read {shown(v)} as a memory size", "write a size such as 4GB, 1.5GiB or 512MB, or auto")
    if size <= 0:
        raise Bad(f"memory size {shown(v)} is not positive", "write a size such as 4GB, or auto")
    if size > MAX_MEMORY:
        raise Bad(f"memory size {shown(v)} is more than 1 PiB", "write a size such as 4GB, or auto")
    return str(v)


def _seconds(v: Any) -> float:
    secs = _parsed(parse_seconds, v)
    if secs is None:
        raise Bad(f"cannot read {shown(v)} as a duration", "write seconds such as 120, or a duration such as 2min")
    if not 0 < secs <= MAX_SECONDS:
        raise Bad(f"duration {shown(v)} is not between 0 and a week", "write a positive number of seconds such as 120")
    return secs


def _networks(v: Any) -> tuple[str, ...]:
    items = [v] if isinstance(v, str) else v
    if not isinstance(items, list) or not items:
        raise Bad(f"expected a network or a list of networks, got {shown(v)}", "write it as 192.168.1.0/24")
    out = []
    for item in items:
        try:
            out.append(str(ipaddress.ip_network(item if isinstance(item, str) else "", strict=False)))
        except ValueError:
            raise Bad(f"{shown(item)} is not a network", "write it as an address/prefix, such as 192.168.1.0/24") \
                from None
    return tuple(out)


def _port_range(v: Any) -> PortRange:
    m = PORT_RANGE_RE.fullmatch(v) if isinstance(v, str) else None
    if not m:
        raise Bad(f"cannot read {shown(v)} as a port range", 'write it as "first:last", such as "9000:9099" (quoted)')
    first, last = int(m.group(1)), int(m.group(2))
    if not (1024 <= first <= last <= 65535):
        raise Bad(f"range {shown(v)} is not first <= last within 1024..65535", 'write a range such as "9000:9099"')
    return PortRange(first, last)


def _optional_port(v: Any) -> int | None:
    return None if v is None else _int(1, 65535)(v)


def _resources(v: Any) -> dict[str, float]:
    if not isinstance(v, dict):
        raise Bad(f"expected a mapping of resource name to amount, got {shown(v)}", "write it as {GPU: 1}")
    out = {}
    for k, amount in v.items():
        if not isinstance(k, str) or not ENV_NAME_RE.fullmatch(k):
            raise Bad(f"resource name {shown(k)} is not usable", "use a name such as GPU or MEMORY")
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not 0 < amount <= MAX_AMOUNT:
            raise Bad(f"resource {k} has amount {shown(amount)}", "give a positive number, such as GPU: 1")
        out[k] = amount
    return out


def _env(v: Any) -> dict[str, str]:
    if not isinstance(v, dict):
        raise Bad(f"expected a mapping of variable name to value, got {shown(v)}", "write it as {OMP_NUM_THREADS: 1}")
    out = {}
    for k, value in v.items():
        if not isinstance(k, str) or not ENV_NAME_RE.fullmatch(k):
            raise Bad(f"{shown(k)} is not a valid environment variable name", "use letters, digits and _")
        if not isinstance(value, (str, int, float)) or not one_line(str(value)):
            raise Bad(f"variable {k} has value {shown(value)}", "give a text or number value, on one line")
        out[k] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


CLUSTER_KEYS: dict[str, tuple[Callable[[Any], Any], str]] = {
    "name": (_name, "name of the cluster; part of every path homecluster writes on a host"),
    "scheduler": (_str, "the host (a name under hosts:) that runs the scheduler"),
    "scheduler_port": (_int(1, 65535), "TCP port of the scheduler"),
    "dashboard_port": (_optional_port, "port of the Bokeh dashboard on the scheduler host; null for none"),
    "dashboard": (_choice("private", "lan"), "private: only on the scheduler host's loopback (homecluster "
                  "dashboard tunnels to it over SSH); lan: on the scheduler's address, for everyone on the network"),
    "tls": (_bool, "mutual TLS between this machine, the scheduler and the workers (default true)"),
    "lan": (_networks, "the household's network(s) the firewall opens the cluster to, such as 192.168.1.0/24 "
            "(default: the /24 of each host address)"),
    "worker_ports": (_port_range, "fixed range for worker ports (--worker-port), firewall-friendly"),
    "nanny_ports": (_port_range, "fixed range for nanny ports (--nanny-port)"),
}

HOST_KEYS: dict[str, tuple[Callable[[Any], Any], str]] = {
    "address": (_address, "IP address or DNS name on the home network"),
    "port": (_int(1, 65535), "SSH port"),
    "user": (_str, "SSH user"),
    "ssh_key": (_str, "private key file for SSH"),
    "known_hosts": (_str, "known_hosts file the host key is checked against"),
    "connection": (_choice("ssh", "local"), "ssh, or local for this machine without SSH"),
    "os": (_choice("linux", "macos", "windows"), "operating system of the host"),
    "backend": (_backend, "how processes run: native, or docker (containers of the image `homecluster image "
                          "build` makes)"),
    "image": (_str, "docker: the image the containers run (default: the one homecluster image build made)"),
    "docker_host": (_str, "docker: the daemon socket on the host, such as unix:///run/user/1000/docker.sock "
                          "(default: the host's DOCKER_HOST, else /var/run/docker.sock)"),
    "docker_run_options": (_options, "docker: extra docker run options, such as '--gpus all'"),
    "supervisor": (_choice("auto", "process", "systemd", "launchd", "nssm"),
                   "what keeps the processes running: auto (the host's service manager where one runs, else "
                   "homecluster's own supervisor), process, systemd (Linux), launchd (macOS), nssm (Windows)"),
    "service_scope": (_choice("user", "system"), "systemd/launchd: a user service (default) or a system one"),
    "nssm": (_str, "path of nssm.exe on a Windows host (default: nssm on its PATH)"),
    "firewall": (_choice("auto", "nftables", "ufw", "firewalld"),
                 "what firewall apply changes on a Linux host: auto (firewalld where it runs, else ufw where it is "
                 "active, else homecluster's own nftables table), nftables, ufw or firewalld"),
    "python": (_str, "Python interpreter on the host that has dask installed"),
    "nworkers": (_int(0, MAX_PROCESSES), "worker processes on the host; 0 for none"),
    "nthreads": (_int(1, MAX_PROCESSES), "threads per worker process"),
    "memory_limit": (_memory, "memory limit per worker process, such as 4GB, or auto"),
    "death_timeout": (_seconds, "seconds a worker waits for the scheduler before giving up"),
    "local_directory": (_str, "scratch directory of the workers"),
    "run_directory": (_str, "where homecluster keeps pid and log files on the host"),
    "resources": (_resources, "abstract resources of each worker, such as {GPU: 1}"),
    "env": (_env, "extra environment variables for the dask processes"),
}

SECTIONS = ("cluster", "defaults", "hosts", "environment")

# What looks like a secret: such key names (also as env: variable names), and private keys pasted as values.
# "token" only as a word of its own, so that TOKENIZERS_PARALLELISM stays usable.
SECRET_NAME_RE = re.compile(r"pass(?:word|wd|phrase)|secret|private[_-]?key|api[_-]?key|tokens?(?![a-z])", re.I)
PRIVATE_KEY_RE = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----|PuTTY-User-Key-File-")
NO_SECRETS = "keep secrets out of the inventory: use ssh_key: pointing to a key file, or ssh-agent"


# --- YAML with line numbers -----------------------------------------------------------------------------

class _Loader(yaml.SafeLoader):
    """YAML's safe loader, refusing at their line what it would crash on or what no inventory holds: nesting
    deeper than Python's stack, an alias inside its own anchor, a scalar its tag does not fit (2024-13-45,
    !!int x), an integer too long to print."""

    def __init__(self, text: str):
        super().__init__(text)
        self.open_anchors: list[str | None] = []

    def compose_node(self, parent: Any, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) and event.anchor in self.open_anchors:
            raise yaml.composer.ComposerError(None, None, f"alias *{event.anchor} is inside its own anchor",
                                              event.start_mark, "refer to an anchor only after it ends")
        if len(self.open_anchors) >= MAX_DEPTH:
            raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_DEPTH} deep", event.start_mark,
                                              "close the brackets, or nest fewer levels")
        self.open_anchors.append(event.anchor)
        try:
            return super().compose_node(parent, index)
        finally:
            self.open_anchors.pop()

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            value = super().construct_object(node, deep)
            if not (isinstance(value, int) and value.bit_length() > MAX_INT_BITS):
                return value
        except (ValueError, LookupError, AttributeError):  # what yaml's scalar constructors raise on a misfit
            pass
        raise yaml.constructor.ConstructorError(None, None, f"cannot read {shown(node.value)}", node.start_mark,
                                                "write a number or a date that exists, or quote it as text")


def _yaml(text: str, path: str) -> tuple[Any, dict]:
    """The data of the YAML text and the line of each key path; broken YAML is an InventoryError at its line."""
    try:
        loader = _Loader(text)
        try:
            root = loader.get_single_node()
            lines = _positions(root, path)
            return (None if root is None else loader.construct_document(root)), lines
        finally:
            loader.dispose()
    except yaml.reader.ReaderError as e:  # a character YAML does not allow, such as NUL
        raise InventoryError(path, text.count("\n", 0, e.position) + 1, "", f"not valid YAML (the character "
                             f"{chr(e.character)!r} is not allowed)", "delete it; YAML is printable text") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        raise InventoryError(path, mark.line + 1 if mark else None, "", f"not valid YAML ({e.problem or e.context})",
                             e.note or "check the indentation and quoting on that line") from None


def _positions(root: yaml.Node | None, file: str) -> dict:
    """Map each key path to its line (1-based); reject duplicate keys, which YAML would silently merge."""
    out: dict = {}
    walked: set = set()  # a node an alias repeats is walked once, so a billion laughs stays small

    def walk(node: yaml.Node | None, path: tuple) -> None:
        if not isinstance(node, yaml.MappingNode) or node in walked:
            return
        walked.add(node)
        keys: set = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue  # a list or mapping as a key: the constructor refuses it
            here = path + (key_node.value,)
            if key_node.value in keys:
                raise InventoryError(file, key_node.start_mark.line + 1, _keypath(here), "this key appears twice",
                                     "keep one of the two")
            keys.add(key_node.value)
            out[here] = key_node.start_mark.line + 1
            walk(value_node, here)

    walk(root, ())
    return out


def _keypath(keypath: tuple) -> str:
    """A key path as messages show it: hosts.laptop.nworkers, with a key that is not plain text as its repr."""
    return ".".join(k if isinstance(k, str) and k.isprintable() and len(k) <= 60 else shown(k) for k in keypath)


class _Reader:
    """Validates the parsed YAML, raising InventoryError at the offending line."""

    def __init__(self, path: str, lines: dict):
        self.path, self.lines = path, lines

    def fail(self, keypath: tuple, problem: str, fix: str) -> InventoryError:
        line = None
        for i in range(len(keypath), 0, -1):
            line = self.lines.get(keypath[:i])
            if line:
                break
        return InventoryError(self.path, line, _keypath(keypath), problem, fix)

    def mapping(self, value: Any, keypath: tuple, what: str) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            fix = (f"write {keypath[-1]}: as indented 'key: value' lines" if keypath
                   else "start the file with the sections cluster:, defaults: and hosts:")
            raise self.fail(keypath, f"expected a mapping of {what}, got {type(value).__name__}", fix)
        return value

    def fields(self, raw: dict, schema: dict, keypath: tuple) -> dict:
        out = {}
        for key, value in raw.items():
            if key not in schema:
                close = difflib.get_close_matches(str(key), schema, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(schema)}"
                raise self.fail(keypath + (key,), "unknown key", hint)
            check = schema[key][0]
            try:
                out[key] = check(value)
            except Bad as e:
                raise self.fail(keypath + (key,), e.args[0], e.args[1]) from None
        return out


def parse(text: str, path: str = "inventory.yaml") -> Inventory:
    """Parse and validate inventory text; `path` is only used in messages."""
    data, lines = _yaml(text, path)
    reader = _Reader(path, lines)
    data = reader.mapping(data, (), "sections")
    for key in data:
        if key not in SECTIONS:
            raise reader.fail((key,), "unknown section", f"the sections are: {', '.join(SECTIONS)}")
    _refuse_secrets(reader, data)
    cluster_raw = reader.fields(reader.mapping(data.get("cluster"), ("cluster",), "settings"),
                                CLUSTER_KEYS, ("cluster",))
    defaults = reader.fields(reader.mapping(data.get("defaults"), ("defaults",), "host keys"),
                             HOST_KEYS, ("defaults",))
    hosts = _hosts(reader, data.get("hosts"), defaults)
    cluster = _cluster(reader, cluster_raw, hosts)
    env = environment.parse(data.get("environment"), reader.fail, Path(path).parent)
    inv = Inventory(path, cluster, hosts, env)
    _check_conflicts(reader, inv)
    return inv


def _refuse_secrets(reader: _Reader, data: dict) -> None:
    """Refuse a secret-looking key or an inline private key anywhere in cluster:, defaults: and hosts:, before
    any other check of them, so that no message (such as "unknown key" or "holds a line break") shows a secret.
    Host names are names, not keys; each container is walked once (aliases repeat it)."""
    seen: set[int] = set()

    def walk(value: Any, keypath: tuple, names_are_keys: bool = True) -> None:
        if isinstance(value, str):
            if PRIVATE_KEY_RE.search(value):
                raise reader.fail(keypath, "holds an inline private key", NO_SECRETS)
            return
        if not isinstance(value, (dict, list)) or id(value) in seen:
            return
        seen.add(id(value))
        for key, item in value.items() if isinstance(value, dict) else ((None, v) for v in value):
            here = keypath if key is None else keypath + (key,)
            walk(key, keypath)  # a private key pasted as a key (or host name) is refused too
            if names_are_keys and isinstance(key, str) and SECRET_NAME_RE.search(key):
                raise reader.fail(here, "looks like a secret (a password, passphrase, token or private key)",
                                  NO_SECRETS)
            walk(item, here)

    for section in ("cluster", "defaults", "hosts"):
        walk(data.get(section), (section,), names_are_keys=section != "hosts")


def _hosts(reader: _Reader, raw: Any, defaults: dict) -> dict[str, Host]:
    raw = reader.mapping(raw, ("hosts",), "host names to host keys")
    if not raw:
        raise reader.fail(("hosts",), "no hosts are listed",
                          "add at least one host, such as: hosts: {desktop: {connection: local}}")
    hosts = {}
    for name, keys in raw.items():
        try:
            _name(name)
        except Bad as e:
            raise reader.fail(("hosts", name), e.args[0], e.args[1]) from None
        own = reader.fields(reader.mapping(keys, ("hosts", name), "host keys"), HOST_KEYS, ("hosts", name))
        merged = {**defaults, **own}
        if merged.get("connection", "ssh") == "local":
            merged.setdefault("address", "127.0.0.1")
        if "address" not in merged:
            raise reader.fail(("hosts", name), "has no address",
                              f"add address: <IP or name of {name}>, or connection: local for this machine")
        hosts[name] = Host(name=name, **merged)
    return hosts


def _cluster(reader: _Reader, raw: dict, hosts: dict[str, Host]) -> ClusterSettings:
    scheduler = raw.get("scheduler")
    if scheduler is None:
        if len(hosts) > 1:
            raise reader.fail(("cluster", "scheduler"), "is missing and there are several hosts",
                              f"add scheduler: <one of {', '.join(hosts)}> under cluster:")
        scheduler = next(iter(hosts))
    elif scheduler not in hosts:
        raise reader.fail(("cluster", "scheduler"), f"names no host: {shown(scheduler)}",
                          f"use one of: {', '.join(hosts)}")
    return ClusterSettings(**{**raw, "scheduler": scheduler})


def _check_conflicts(reader: _Reader, inv: Inventory) -> None:
    c = inv.cluster
    if c.dashboard_port == c.scheduler_port:
        raise reader.fail(("cluster", "dashboard_port"), f"is the same as scheduler_port ({c.scheduler_port})",
                          "give the dashboard its own port, such as 8787")
    singles = {"scheduler_port": c.scheduler_port, "dashboard_port": c.dashboard_port}
    ranges = {"worker_ports": c.worker_ports, "nanny_ports": c.nanny_ports}
    for rname, r in ranges.items():
        if r is None:
            continue
        for sname, port in singles.items():
            if port is not None and r.first <= port <= r.last:
                raise reader.fail(("cluster", rname), f"range {r} contains {sname} {port}",
                                  "choose ranges that leave the scheduler and dashboard ports out")
        busiest = max(inv.hosts.values(), key=lambda h: h.nworkers)
        if len(r) < busiest.nworkers:
            raise reader.fail(("cluster", rname), f"range {r} has {len(r)} ports but host "
                              f"{busiest.name} runs {busiest.nworkers} workers",
                              "widen the range to at least one port per worker process")
    if c.worker_ports and c.nanny_ports and c.worker_ports.overlaps(c.nanny_ports):
        raise reader.fail(("cluster", "nanny_ports"), f"range {c.nanny_ports} overlaps worker_ports "
                          f"{c.worker_ports}", "give workers and nannies separate ranges")
    _check_addresses(reader, inv)
    _check_supervisors(reader, inv)
    _check_docker(reader, inv)


SUPERVISOR_OS = {"systemd": "linux", "launchd": "macos", "nssm": "windows"}


def _check_supervisors(reader: _Reader, inv: Inventory) -> None:
    for h in inv.hosts.values():
        needs = SUPERVISOR_OS.get(h.supervisor)
        fits = next(s for s, o in SUPERVISOR_OS.items() if o == h.os)
        if needs and h.os != needs:
            others = "auto" if h.os == "windows" else "process or auto"
            raise reader.fail(("hosts", h.name, "supervisor"), f"{h.supervisor} runs on {needs}, {h.name} is "
                              f"os: {h.os}", f"use supervisor: {fits} or {others}")
        if h.supervisor == "process" and h.os == "windows":
            raise reader.fail(("hosts", h.name, "supervisor"), "homecluster's own supervisor needs a POSIX shell: "
                              "Windows hosts run their processes as NSSM services", "use supervisor: nssm or auto")


DOCKER_KEYS = ("image", "docker_host", "docker_run_options")


def _check_docker(reader: _Reader, inv: Inventory) -> None:
    for h in inv.hosts.values():
        if h.backend != "docker":
            for key in DOCKER_KEYS:
                if getattr(h, key):
                    raise reader.fail(("hosts", h.name, key), f"is for docker hosts, and {h.name} is backend: "
                                      f"{h.backend}", f"set backend: docker for {h.name}, or remove {key}:")
            continue
        if h.os == "windows":
            raise reader.fail(("hosts", h.name, "backend"), "docker hosts are reached with sh: Docker Desktop on "
                              "Windows is not supported yet", "use backend: native (NSSM services) for it")
        if h.supervisor != "auto":
            raise reader.fail(("hosts", h.name, "supervisor"), "Docker restarts the containers of a docker host",
                              "remove supervisor: from it")


LOOPBACK = ("127.", "localhost", "::1")


def _check_addresses(reader: _Reader, inv: Inventory) -> None:
    sched = inv.scheduler_host
    remote = [h.name for h in inv.hosts.values() if not h.is_local and h.nworkers > 0]
    if sched.address.startswith(LOOPBACK) and remote:
        raise reader.fail(("hosts", sched.name, "address"), f"workers on {remote[0]} cannot reach a scheduler "
                          f"on {sched.address}", "set address: to this machine's address on the home network")
    seen: dict[tuple, str] = {}
    for h in inv.hosts.values():
        key = (h.address, h.port) if not h.is_local else ("local", h.address)
        if key in seen:
            raise reader.fail(("hosts", h.name, "address"), f"{h.address} (port {h.port}) is also the address "
                              f"of host {seen[key]}", "give each host its own address, or merge the two entries")
        seen[key] = h.name


DEFAULT_INVENTORY = "inventory.yaml"


def inventory_path(path: str | None = None) -> str:
    """`path`, else $HOMECLUSTER_INVENTORY, else ./inventory.yaml (the lookup of the CLI and of connect())."""
    return path or os.environ.get("HOMECLUSTER_INVENTORY") or DEFAULT_INVENTORY


def load(path: str | Path) -> Inventory:
    """Read and validate an inventory file."""
    p = Path(path).expanduser()
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise InventoryError(str(p), None, "", "file not found",
                             "pass -i PATH, set HOMECLUSTER_INVENTORY, or create inventory.yaml here") from None
    except OSError as e:
        raise InventoryError(str(p), None, "", f"cannot read the file ({e})", "check the path and permissions") \
            from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InventoryError(str(p), raw.count(b"\n", 0, e.start) + 1, "", f"not UTF-8 text (byte "
                             f"{raw[e.start]:#04x})", "save the file as UTF-8") from None
    return parse(text, str(p))
