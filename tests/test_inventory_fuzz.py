"""Property-based tests of the inventory loader: whatever a file holds, it is accepted, and then its spec and
dry-run scripts can be made, or refused with the one located line the CLI prints with exit code 2.

The seeds are the README's sample inventory and the richer golden one. Mutations: junk values at any key path,
dropped and unknown keys, odd host names (on the parsed data, dumped back as YAML); inserted characters, cut
and repeated lines (on the text); bytes that are not UTF-8 (on the file). Runs are reproducible; to hunt for
new failures, run at random with more examples: HOMECLUSTER_FUZZ_EXAMPLES=5000 pytest tests/test_inventory_fuzz.py
"""

from __future__ import annotations

import copy
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from homecluster.ops import dry_run

from homecluster.core import spec
from homecluster.inventory.environment import KEYS as ENVIRONMENT_KEYS
from homecluster.inventory.environment import client_python
from homecluster.errors import InventoryError
from homecluster.inventory import CLUSTER_KEYS, HOST_KEYS, load, parse

README_SAMPLE = """\
cluster:
  name: home                  # part of every path homecluster writes on a host
  scheduler: desktop          # a host name from hosts:
  scheduler_port: 8786        # default 8786
  dashboard_port: 8787        # default 8787; null for no dashboard
  worker_ports: "9000:9099"   # optional fixed range (firewall-friendly), passed as --worker-port
  nanny_ports: "9100:9199"    # optional, --nanny-port
defaults:                     # any host key; a host's own value wins
  user: alice
  ssh_key: ~/.ssh/id_ed25519
  known_hosts: ~/.ssh/known_hosts
  python: /opt/dask/bin/python  # interpreter on the host that has dask installed
  nworkers: 1
  nthreads: 2
  memory_limit: 4GB
  death_timeout: 120
hosts:
  desktop:  {address: 192.168.1.10, nworkers: 0}        # scheduler only
  laptop:   {address: 192.168.1.11, nworkers: 4, nthreads: 1, memory_limit: 1GB}
  mac-mini: {address: 192.168.1.13, port: 2222, os: macos}
"""
GOLDEN_SAMPLE = (Path(__file__).parent / "golden" / "sample-inventory.yaml").read_text()
MANAGED = {**yaml.safe_load(GOLDEN_SAMPLE),
           "environment": {"python": client_python(), "packages": ["numpy>=2", "six==1.17.0"],
                           "index_url": "https://pypi.org/simple", "extra_index_urls": []}}
del MANAGED["defaults"]["python"]
MANAGED["hosts"]["this-machine"] = {"connection": "local", "nworkers": 0}
SEED_TEXTS = [README_SAMPLE, GOLDEN_SAMPLE, yaml.safe_dump(MANAGED, sort_keys=False)]
SEEDS = [yaml.safe_load(t) for t in SEED_TEXTS]

EXAMPLES = int(os.environ.get("HOMECLUSTER_FUZZ_EXAMPLES", "0"))
FUZZ = settings(max_examples=EXAMPLES or 300, derandomize=not EXAMPLES, database=None, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

NASTY = [None, "", " ", "\t", "~", "\x00", "a\x00b", "a\nb", "x\n", "\na", "a\u2028b", "\r", "\x85", "\x1b[2J",
         "null", "inf", ".inf", "-inf", "nan", "-1", "0", "1e400", "1e-400", "9" * 5000, "x" * 5000, "é🙂",
         "-x", "a b", "9000:9099", "0:70000", "99999:99999", "4GB", "1e400GB", "-1GB", "2min", "1e400s", "auto",
         "numpy", "numpy=>2", "https://pypi.org/simple", "http://x\x00y", "/", "..", "3.11", "3.99",
         0, -1, 1, 2, 1023, 1024, 1025, 65535, 65536, 10**400, -10**400, 2**63, True, False,
         math.inf, -math.inf, math.nan, 1e308, -0.0, 0.5, 3.10,
         [], {}, [[]], [None], [{}], {"": None}, {"a": {"b": []}}, ["numpy"], {"GPU": 1}, {"GPU": math.inf}]
SCALARS = st.one_of(st.sampled_from(NASTY), st.none(), st.booleans(), st.integers(), st.floats(),
                    st.text(max_size=20), st.binary(max_size=6), st.dates())
KNOWN_KEYS = st.sampled_from(sorted({*CLUSTER_KEYS, *HOST_KEYS, *ENVIRONMENT_KEYS, "hosts", "defaults"}))
KEYS = st.one_of(KNOWN_KEYS, st.text(max_size=12), st.integers(), st.none(), st.booleans())
JUNK = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
                    max_leaves=6)
HOST_NAMES = st.one_of(st.sampled_from(["desktop", "laptop", "42", "", " ", "a b", "-x", "a\nb", "a\x00", "ü",
                                        "x" * 300, ".hidden", "a/b", "..", "~", "a.b-c_d"]),
                       st.text(max_size=12), st.integers(), st.none(), st.booleans())


def _leaves(node) -> list:
    """Every scalar in nested dicts and lists."""
    if isinstance(node, dict):
        return [leaf for v in node.values() for leaf in _leaves(v)]
    return [leaf for v in node for leaf in _leaves(v)] if isinstance(node, list) else [node]


# Mostly values that are right somewhere else in an inventory, or nearly right.
VALUES = st.one_of(st.sampled_from(NASTY), st.sampled_from(sorted(set(map(str, _leaves(SEEDS))))),
                   st.sampled_from([v for v in _leaves(SEEDS) if isinstance(v, int)]), JUNK).map(copy.deepcopy)


def _sections(data) -> list:
    """(mapping, its known keys) for each section and host of an inventory that is still shaped like one."""
    if not isinstance(data, dict):
        return []
    hosts = data.get("hosts") if isinstance(data.get("hosts"), dict) else {}
    found = [(data.get("cluster"), CLUSTER_KEYS), (data.get("defaults"), HOST_KEYS),
             (data.get("environment"), ENVIRONMENT_KEYS), *((h, HOST_KEYS) for h in hosts.values())]
    return [(mapping, sorted(keys)) for mapping, keys in found if isinstance(mapping, dict)]


def _slots(node, out: list) -> list:
    """Every (container, key) in nested dicts and lists, outermost first."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in list(items):
        out.append((node, key))
        _slots(value, out)
    return out


@st.composite
def mutated_data(draw) -> object:
    box = {"": copy.deepcopy(draw(st.sampled_from(SEEDS)))}
    for _ in range(draw(st.integers(1, 3))):
        slots = _slots(box, [])
        leaves = [(c, k) for c, k in slots if not isinstance(c[k], (dict, list))]
        sections = _sections(box[""])
        op = draw(st.sampled_from(["key", "key", "key", "set", "set", "drop", "add", "rename"]))
        if op == "key" and sections:
            mapping, keys = draw(st.sampled_from(sections))
            mapping[draw(st.sampled_from(keys))] = draw(VALUES)
        elif op == "set":
            container, key = draw(st.sampled_from(leaves if leaves and draw(st.integers(0, 3)) else slots))
            container[key] = draw(VALUES)
        elif op == "drop" and len(slots) > 1:
            container, key = draw(st.sampled_from(slots[1:]))
            del container[key]
        elif op == "add":
            mappings = [c[k] for c, k in slots if isinstance(c[k], dict)]
            if mappings:
                draw(st.sampled_from(mappings))[draw(KEYS)] = draw(VALUES)
        elif op == "rename":
            hosts = box[""].get("hosts") if isinstance(box[""], dict) else None
            if isinstance(hosts, dict) and hosts:
                old, new = draw(st.sampled_from(list(hosts))), draw(HOST_NAMES)
                renamed = {(new if k == old else k): v for k, v in hosts.items()}
                hosts.clear()
                hosts.update(renamed)
    return box[""]


INSERTS = st.one_of(st.sampled_from([
    "\x00", "\t", "\r", "\n", "\r\n", "\x85", "\u2028", "\ufeff", "\udc80", "\x1b", "\x7f", "{", "}", "[", "]", ":",
    ": ", "- ", "? ", "&a ", "*a", "*b", "!", "!!binary ", "!!set ", "!!python/object:os.system ", "!!int ", '"',
    "'", "#", "|", ">", "%YAML 1.1\n", "---\n", "...\n", "@", "`", "\\", "<<: *a\n", "9" * 5000, "0x" + "f" * 5000,
    "1" + ":00" * 3000, "2024-13-45", "2001-12-14t21:59:43.10-99:99", "[" * 3000, "{a: " * 400, "&a {x: *a}",
    "&a [*a]", "&a {<<: *a}", "1e400", ".inf", ".nan", "~", "null", "''", "{}", "[]"]), st.text(max_size=5))
TEXT_VALUES = st.sampled_from([
    "''", "{}", "[]", "~", ".inf", ".nan", "1e400", "1" + "0" * 400, "-1", "0", "1025", '"a\\0b"', '"a\\nb"',
    '"\\u2028"', "[[1]]", "{a: {b: c}}", "9" * 5000, "0x" + "f" * 5000, "2024-13-45", "!!binary aGk=", "!!int ''",
    "!!bool x", "!!timestamp x", "!!float _", "!!set {a}", "&a [*a]", "*nope", "true", "'x'"])


@st.composite
def mutated_text(draw) -> str:
    text = draw(st.sampled_from(SEED_TEXTS))
    for _ in range(draw(st.integers(1, 3))):
        lines = text.split("\n")
        i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["insert", "insert", "value", "value", "delete", "truncate", "repeat", "swap",
                                   "indent"]))
        if op == "insert":
            at = draw(st.integers(0, len(text)))
            text = text[:at] + draw(INSERTS) + text[at:]
            continue
        if op == "value" and ": " in lines[i]:
            lines[i] = lines[i].split(": ")[0] + ": " + draw(TEXT_VALUES)
        elif op == "delete":
            del lines[min(i, j):max(i, j) + 1]
        elif op == "truncate":
            lines[i] = lines[i][:draw(st.integers(0, len(lines[i])))]
            lines = lines[:i + 1]
        elif op == "repeat":
            lines.insert(j, lines[i])
        elif op == "swap":
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "indent":
            lines[i] = draw(st.sampled_from(["", " ", "  ", "    ", "\t"])) + lines[i].lstrip(" ")
        text = "\n".join(lines)
    return text


BYTES = st.one_of(st.sampled_from([b"\x00", b"\xff", b"\x80", b"\xc3", b"\xc3(", b"\xed\xa0\x80", b"\xef\xbb\xbf",
                                   b"\xfe\xff", b"\r", b"\r\n", b"\xe2\x80\xa8"]), st.binary(min_size=1, max_size=4))


def one_line(text: str) -> bool:
    return "\x00" not in text and len((text + ".").splitlines()) == 1  # the dot: a trailing line break counts


def assert_located(error: InventoryError, path: str, text: str) -> None:
    """The one line the CLI prints after 'error: ': file[:line]: [key:] problem. Fix: fix."""
    msg = str(error)
    assert one_line(msg), msg
    assert msg.startswith(path) and "Fix: " in msg, msg
    lines = len(text.splitlines()) + 1  # a problem at the very end is on the line after the last newline
    assert error.line is None or (type(error.line) is int and 1 <= error.line <= lines), (error.line, lines, msg)


def assert_usable(inv) -> None:
    """What an accepted inventory must allow: the spec and the dry-run scripts, with sane numbers and clean text."""
    for h in inv.hosts.values():
        assert 0 <= h.nworkers <= 1024 and (h.nthreads is None or 1 <= h.nthreads <= 1024), h
        assert 0 < h.death_timeout <= 7 * 24 * 3600, h
        assert all(0 < amount < 1e300 for amount in h.resources.values()), h
    cluster = spec.build(inv, "digest")
    for p in cluster.processes:
        for text in p.argv + tuple(v for pair in p.env for v in pair) + (p.run_dir,):
            assert one_line(text), (p.host, text)
    assert dry_run.up_text(inv) and dry_run.down_text(inv)


def check(text: str, path: str = "inv.yaml") -> None:
    try:
        inv = parse(text, path)
    except InventoryError as e:
        assert_located(e, path, text)
    else:
        assert_usable(inv)


def test_seeds_are_accepted():
    for text in SEED_TEXTS:
        assert_usable(parse(text, "inv.yaml"))


@FUZZ
@given(mutated_data(), st.booleans(), st.sampled_from([False, None, True]))
def test_mutated_data_is_accepted_or_refused_with_a_located_line(data, unicode, flow):
    check(yaml.safe_dump(data, sort_keys=False, allow_unicode=unicode, default_flow_style=flow))


@FUZZ
@given(mutated_text())
def test_mutated_text_is_accepted_or_refused_with_a_located_line(text):
    check(text)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "inventory.yaml"


@FUZZ
@given(data=st.data())
def test_mutated_file_bytes_are_accepted_or_refused_with_a_located_line(scratch, data):
    raw = data.draw(st.sampled_from(SEED_TEXTS)).encode()
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(raw)))
        raw = raw[:at] + data.draw(BYTES) + raw[at:]
    scratch.write_bytes(raw)
    try:
        inv = load(scratch)
    except InventoryError as e:
        assert_located(e, str(scratch), raw.decode("utf-8", "replace"))
    else:
        assert_usable(inv)


CLI_CASES = {
    "nul-byte": README_SAMPLE.replace("user: alice", "user: al\x00ice").encode(),
    "not-utf8": README_SAMPLE.replace("user: alice", "user: al\xefce").encode("latin-1"),
    "death-timeout-empty": README_SAMPLE.replace("death_timeout: 120", "death_timeout: ''").encode(),
    "defaults-death-timeout-mapping": README_SAMPLE.replace("death_timeout: 120", "death_timeout: {}").encode(),
    "defaults-memory-mapping": README_SAMPLE.replace("memory_limit: 4GB", "memory_limit: {}").encode(),
    "nthreads-1e400": README_SAMPLE.replace("nthreads: 2", "nthreads: 1e400").encode(),
    "nthreads-huge": README_SAMPLE.replace("nthreads: 2", "nthreads: 1" + "0" * 400).encode(),
    "death-timeout-1e400": README_SAMPLE.replace("death_timeout: 120", "death_timeout: 1e400").encode(),
    "number-too-long": README_SAMPLE.replace("nworkers: 1", "nworkers: " + "9" * 5000).encode(),
    "nested-too-deep": README_SAMPLE.replace("nworkers: 1", "nworkers: " + "[" * 3000).encode(),
}


def test_cli_refuses_nasty_files_with_exit_2_and_one_line(tmp_path):
    runs = {}
    for name, raw in CLI_CASES.items():
        f = tmp_path / f"{name}.yaml"
        f.write_bytes(raw)
        runs[name] = (f, subprocess.Popen([sys.executable, "-m", "homecluster", "up", "--dry-run", "-i", str(f)],
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                          env={**os.environ, "HOME": str(tmp_path)}))
    for name, (f, p) in runs.items():
        out, err = p.communicate(timeout=120)
        assert (p.returncode, out) == (2, ""), (name, err)
        assert err.startswith(f"error: {f}:") and err.count("\n") == 1, (name, err)
