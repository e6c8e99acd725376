"""Unit tests of inventory parsing: defaults, merging, and a clear located error for each bad input."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from homecluster.errors import InventoryError
from homecluster.inventory import PortRange, load, parse
from homecluster.core.spec import interpreter

GOOD = """\
cluster:
  name: home
  scheduler: desktop
  worker_ports: "9000:9099"
defaults:
  user: alice
  nthreads: 2
  memory_limit: 4GB
hosts:
  desktop: {address: 192.168.1.10, nworkers: 0}
  laptop:
    address: 192.168.1.11
    nworkers: 4
    nthreads: 1
    memory_limit: 1GB
  gaming-pc: {address: 192.168.1.12, os: windows, resources: {GPU: 1}, env: {OMP_NUM_THREADS: 1}}
"""


def test_good_inventory_merges_defaults_and_keeps_order():
    inv = parse(GOOD, "inv.yaml")
    assert list(inv.hosts) == ["desktop", "laptop", "gaming-pc"]
    assert inv.scheduler_host.name == "desktop"
    laptop = inv.hosts["laptop"]
    assert (laptop.user, laptop.nworkers, laptop.nthreads, laptop.memory_limit) == ("alice", 4, 1, "1GB")
    gaming = inv.hosts["gaming-pc"]
    assert gaming.nthreads == 2 and gaming.resources == {"GPU": 1} and gaming.env == {"OMP_NUM_THREADS": "1"}
    assert inv.cluster.worker_ports == PortRange(9000, 9099) and inv.cluster.scheduler_port == 8786


def test_single_host_is_the_scheduler_and_local_defaults_to_loopback():
    inv = parse("hosts:\n  me: {connection: local}\n")
    assert inv.cluster.scheduler == "me"
    assert inv.hosts["me"].address == "127.0.0.1"
    assert interpreter(inv, inv.hosts["me"]) == sys.executable


def test_shipped_inventory_is_valid_and_local():
    inv = load(Path(__file__).parent.parent / "inventory.yaml")
    assert all(h.is_local for h in inv.hosts.values())
    assert sum(h.nworkers for h in inv.hosts.values()) == 2


BASE = {"cluster": "cluster:\n  scheduler: a\n", "hosts": "hosts:\n  a: {address: 10.0.0.1}\n  b: {address: 10.0.0.2}\n"}


def host_a(keys: str) -> str:
    """An inventory whose one host has these keys besides its address (they are on line 4)."""
    return BASE["cluster"] + "hosts:\n  a: {address: 10.0.0.1, %s}\n" % keys


LAUGHS_LIST = "[&l0 [x, x, x, x, x, x, x, x, x], " + ", ".join(f"&l{i} [{', '.join([f'*l{i - 1}'] * 9)}]"
                                                             for i in range(1, 9)) + "]"
LAUGHS_MAP = "{A0: &m0 {k0: 1, k1: 1, k2: 1}, " + ", ".join(f"A{i}: &m{i} {{k0: *m{i - 1}, k1: *m{i - 1}, k2: "
                                                               f"*m{i - 1}}}" for i in range(1, 20)) + "}"

# (case id, inventory text, expected line, text that must appear in the message)
BAD = [
    ("yaml-syntax", "hosts:\n  a: {address: 10.0.0.1\n", 3, "not valid YAML"),
    ("not-a-mapping", "- a\n- b\n", None, "expected a mapping"),
    ("unknown-section", "clusters:\n  name: x\n" + BASE["hosts"], 1, "unknown section"),
    ("unknown-cluster-key", "cluster:\n  scheduler: a\n  shceduler_port: 1\n" + BASE["hosts"], 3,
     "did you mean 'scheduler_port'"),
    ("unknown-host-key", BASE["cluster"] + "hosts:\n  a: {address: 10.0.0.1, nworker: 2}\n", 4,
     "did you mean 'nworkers'"),
    ("wrong-type-nworkers", BASE["cluster"] + "hosts:\n  a:\n    address: 10.0.0.1\n    nworkers: two\n", 6,
     "expected a whole number"),
    ("negative-nthreads", BASE["cluster"] + "hosts:\n  a:\n    address: 10.0.0.1\n    nthreads: 0\n", 6,
     "out of range"),
    ("bool-is-not-int", BASE["cluster"] + "hosts:\n  a: {address: 10.0.0.1, nworkers: true}\n", 4,
     "whole number"),
    ("scheduler-names-no-host", "cluster:\n  scheduler: nas\n" + BASE["hosts"], 2, "names no host: 'nas'"),
    ("scheduler-missing", BASE["hosts"], None, "is missing and there are several hosts"),
    ("no-hosts", "cluster:\n  name: x\nhosts: {}\n", 3, "no hosts are listed"),
    ("host-without-address", BASE["cluster"] + "hosts:\n  a: {nworkers: 1}\n", 4, "has no address"),
    ("duplicate-address", BASE["cluster"] + "hosts:\n  a: {address: 10.0.0.1}\n  b: {address: 10.0.0.1}\n", 5,
     "also the address of host a"),
    ("duplicate-yaml-key", BASE["cluster"] + "hosts:\n  a: {address: 10.0.0.1}\n  a: {address: 10.0.0.2}\n", 5,
     "appears twice"),
    ("memory-unparsable", BASE["cluster"] + "hosts:\n  a: {address: 10.0.0.1, memory_limit: 4 gigs}\n", 4,
     "cannot read '4 gigs' as a memory size"),
    ("memory-negative", BASE["cluster"] + "hosts:\n  a: {address: 10.0.0.1, memory_limit: -1}\n", 4,
     "not positive"),
    ("same-ports", "cluster:\n  scheduler: a\n  scheduler_port: 8786\n  dashboard_port: 8786\n" + BASE["hosts"], 4,
     "same as scheduler_port"),
    ("port-out-of-range", "cluster:\n  scheduler: a\n  scheduler_port: 70000\n" + BASE["hosts"], 3,
     "out of range"),
    ("port-range-reversed", "cluster:\n  scheduler: a\n  worker_ports: '9099:9000'\n" + BASE["hosts"], 3,
     "first <= last"),
    ("port-range-unquoted", "cluster:\n  scheduler: a\n  worker_ports: 9000\n" + BASE["hosts"], 3,
     "as a port range"),
    ("range-holds-scheduler-port", "cluster:\n  scheduler: a\n  worker_ports: '8700:8799'\n" + BASE["hosts"], 3,
     "contains scheduler_port 8786"),
    ("ranges-overlap", "cluster:\n  scheduler: a\n  worker_ports: '9000:9099'\n  nanny_ports: '9050:9150'\n"
     + BASE["hosts"], 4, "overlaps worker_ports"),
    ("range-too-small", "cluster:\n  scheduler: a\n  worker_ports: '9000:9001'\n"
     "hosts:\n  a: {address: 10.0.0.1, nworkers: 3}\n", 3, "has 2 ports but host a runs 3 workers"),
    ("bad-connection", BASE["cluster"] + "hosts:\n  a: {address: 10.0.0.1, connection: telnet}\n", 4,
     "'telnet' is not one of ssh, local"),
    ("bad-os", BASE["cluster"] + "hosts:\n  a: {address: 10.0.0.1, os: beos}\n", 4, "is not one of linux"),
    ("docker-on-windows", BASE["cluster"] + "hosts:\n  a: {address: 10.0.0.1, backend: docker, os: windows}\n", 4,
     "docker hosts are reached with sh"),
    ("bad-host-name", BASE["cluster"] + "hosts:\n  'my pc': {address: 10.0.0.1}\n", 4, "not a usable name"),
    ("numeric-host-name", BASE["cluster"] + "hosts:\n  '42': {address: 10.0.0.1}\n", 4, "not a usable name"),
    ("bad-resources", BASE["cluster"] + "hosts:\n  a: {address: 10.0.0.1, resources: {GPU: lots}}\n", 4,
     "resource GPU has amount 'lots'"),
    ("bad-env-name", BASE["cluster"] + "hosts:\n  a: {address: 10.0.0.1, env: {'1X': y}}\n", 4,
     "not a valid environment variable name"),
    ("bad-death-timeout", BASE["cluster"] + "hosts:\n  a: {address: 10.0.0.1, death_timeout: soon}\n", 4,
     "as a duration"),
    ("loopback-scheduler-remote-workers", "cluster:\n  scheduler: me\nhosts:\n  me: {connection: local}\n"
     "  b: {address: 10.0.0.2}\n", 4, "cannot reach a scheduler on 127.0.0.1"),
    ("hosts-not-mapping", BASE["cluster"] + "hosts:\n  - a\n", 3, "expected a mapping"),
    ("env-unknown-key", BASE["cluster"] + BASE["hosts"] + "environment:\n  pyton: '3.11'\n",
     7, "environment.pyton: unknown key"),
    ("env-bad-specifier", BASE["cluster"] + BASE["hosts"] + "environment:\n  packages: ['numpy=>2']\n", 7,
     "bad requirement 'numpy=>2'"),
    ("env-python-float", BASE["cluster"] + BASE["hosts"] + "environment:\n  python: 3.10\n", 7,
     "3.10 would read as 3.1"),
    ("env-unknown-python", BASE["cluster"] + BASE["hosts"] + "environment:\n  python: '3.99'\n", 7,
     "unknown Python version 3.99"),
    ("env-packages-not-list", BASE["cluster"] + BASE["hosts"] + "environment:\n  packages: {numpy: 1}\n", 7,
     "expected a list"),
    ("env-bad-index-url", BASE["cluster"] + BASE["hosts"] + "environment:\n  index_url: pypi.org\n", 7,
     "is not an index URL"),
    ("bad-cluster-name", "cluster:\n  name: 'my cluster'\n  scheduler: a\n" + BASE["hosts"], 2, "not a usable name"),
    # Inputs that used to crash the loader (exit 3), found by tests/test_inventory_fuzz.py or named in issue 9.
    ("death-timeout-empty", host_a("death_timeout: ''"), 4, "cannot read '' as a duration"),
    ("defaults-death-timeout-mapping", BASE["cluster"] + "defaults:\n  death_timeout: {}\n" + BASE["hosts"], 4,
     "defaults.death_timeout: cannot read {} as a duration"),
    ("death-timeout-overflow", host_a("death_timeout: 1e400"), 4, "cannot read '1e400' as a duration"),
    ("death-timeout-over-a-week", host_a("death_timeout: 8d"), 4, "'8d' is not between 0 and a week"),
    ("nthreads-overflow", host_a("nthreads: 1" + "0" * 400), 4, "100000000000000000...0000000000000000000 is out of "
     "range. Fix: use a number between 1 and 1024"),
    ("nworkers-too-many", host_a("nworkers: 5000"), 4, "use a number between 0 and 1024"),
    ("memory-overflow", host_a("memory_limit: 1e400GB"), 4, "cannot read '1e400GB' as a memory size"),
    ("memory-too-large", host_a("memory_limit: 2PiB"), 4, "'2PiB' is more than 1 PiB"),
    ("memory-empty", host_a("memory_limit: ''"), 4, "cannot read '' as a memory size"),
    ("resource-infinite", host_a("resources: {GPU: .inf}"), 4, "resource GPU has amount inf"),
    ("nul-in-value", host_a('user: "al\\0ice"'), 4, "user: 'al\\x00ice' holds a line break or a NUL byte"),
    ("nul-byte-in-file", host_a("user: al\x00ice"), 4, "not valid YAML (the character '\\x00' is not allowed)"),
    ("line-break-in-host-name", BASE["cluster"] + 'hosts:\n  "a\\n": {address: 10.0.0.1}\n', 4,
     "hosts.'a\\n': 'a\\n' is not a usable name"),
    ("host-name-too-long", BASE["cluster"] + "hosts:\n  %s: {address: 10.0.0.1}\n" % ("a" * 64), 4,
     "is not a usable name. Fix: use up to 63 letters"),
    ("line-break-in-env-value", host_a('env: {X: "a\\nb"}'), 4, "variable X has value 'a\\nb'"),
    ("address-with-space", BASE["cluster"] + "hosts:\n  a: {address: 10.0.0.1 x}\n", 4,
     "'10.0.0.1 x' is not an IP address or host name"),
    ("index-url-line-break", BASE["cluster"] + BASE["hosts"] + 'environment:\n  index_url: "https://x\\n"\n', 7,
     "'https://x\\n' is not an index URL"),
    ("port-range-too-many-digits", BASE["cluster"] + "  worker_ports: '99999999:1'\n" + BASE["hosts"], 3,
     "cannot read '99999999:1' as a port range"),
    ("number-too-long", host_a("port: " + "9" * 5000), 4, "not valid YAML (cannot read '999999999"),
    ("impossible-date", host_a("user: 2024-13-45"), 4, "not valid YAML (cannot read '2024-13-45')"),
    ("tag-misfit", host_a("nworkers: !!int ''"), 4, "not valid YAML (cannot read ''). Fix: write a number"),
    ("nested-too-deep", host_a("env: " + "[" * 60 + "]" * 60), 4, "nested more than 50 deep"),
    ("alias-inside-itself", BASE["cluster"] + "hosts:\n  a: &a {address: 10.0.0.1, env: *a}\n", 4,
     "alias *a is inside its own anchor"),
    ("billion-laughs-list", host_a("memory_limit: " + LAUGHS_LIST), 4,
     "memory_limit: cannot read [['x', 'x', 'x', 'x', ...], [[...]"),
    ("billion-laughs-mapping", host_a("env: " + LAUGHS_MAP), 4, "variable A0 has value {'k0': 1"),
]


@pytest.mark.parametrize("text,line,needle", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_inventory_gives_located_one_line_error(text, line, needle):
    with pytest.raises(InventoryError) as info:
        parse(text, "inv.yaml")
    msg = str(info.value)
    assert needle in msg
    assert "\n" not in msg and "Fix: " in msg
    assert msg.startswith(f"inv.yaml:{line}:" if line else "inv.yaml")


def test_bad_cases_have_distinct_messages():
    messages = set()
    for _, text, _, _ in BAD:
        with pytest.raises(InventoryError) as info:
            parse(text, "inv.yaml")
        messages.add(str(info.value))
    assert len(messages) == len(BAD) >= 15


def test_file_that_is_not_utf8_is_located(tmp_path):
    inv_file = tmp_path / "inventory.yaml"
    inv_file.write_bytes(b"hosts:\n  me: {connection: local, user: \xe9mile}\n")
    with pytest.raises(InventoryError, match=r"inventory.yaml:2: not UTF-8 text \(byte 0xe9\). Fix: save the file"):
        load(inv_file)


def test_missing_file_names_the_fix(tmp_path):
    with pytest.raises(InventoryError, match="file not found. Fix: pass -i PATH"):
        load(tmp_path / "nope.yaml")


@pytest.mark.parametrize("command", [["up"], ["up", "--dry-run"], ["down"], ["status"]])
def test_cli_bad_inventory_exits_2_and_starts_nothing(tmp_path, command):
    inv = tmp_path / "inventory.yaml"
    inv.write_text(textwrap.dedent("""\
        cluster: {scheduler: a}
        hosts:
          a: {connection: local, nworkers: many, run_directory: %s}
        """ % (tmp_path / "run")))
    p = subprocess.run([sys.executable, "-m", "homecluster", *command, "-i", str(inv)], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 2
    assert p.stderr.strip().count("\n") == 0
    assert f"{inv}:3: hosts.a.nworkers: expected a whole number, got 'many'" in p.stderr
    assert not (tmp_path / "run").exists()


def test_environment_section(tmp_path):
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("# numbers\nnumpy>=2  # arrays\n\nsix==1.17.0\n")
    inv_file = tmp_path / "inventory.yaml"
    inv_file.write_text("hosts:\n  me: {connection: local}\nenvironment:\n  packages: requirements.txt\n")
    env = load(inv_file).environment
    assert env.packages == ("numpy>=2", "six==1.17.0")
    assert env.python == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert interpreter(load(inv_file), load(inv_file).hosts["me"]).endswith("/home/me/env/bin/python")


def test_requirements_file_that_is_not_utf8_cannot_be_read(tmp_path):
    (tmp_path / "req.txt").write_bytes(b"caf\xe9\n")
    inv_file = tmp_path / "inventory.yaml"
    inv_file.write_text("hosts:\n  me: {connection: local}\nenvironment:\n  packages: req.txt\n")
    with pytest.raises(InventoryError, match=r"req.txt cannot be read"):
        load(inv_file)


def test_requirements_file_with_options_is_refused(tmp_path):
    (tmp_path / "req.txt").write_text("six\n--index-url http://x\n")
    inv_file = tmp_path / "inventory.yaml"
    inv_file.write_text("hosts:\n  me: {connection: local}\nenvironment:\n  packages: req.txt\n")
    with pytest.raises(InventoryError, match=r"req.txt:2: option lines \(--index-url\) are not supported"):
        load(inv_file)


# --- secrets are refused (issue 11): located like any error, with the fix, and never showing the value ----------

PEM = "-----BEGIN OPENSSH PRIVATE KEY-----\\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\\n-----END OPENSSH PRIVATE KEY-----\\n"

# (case id, inventory text, expected line, the key path named)
SECRETS = [
    ("host-password", host_a("password: hunter2-secret-value"), 4, "hosts.a.password"),
    ("defaults-passphrase", BASE["cluster"] + "defaults:\n  user: al\n  Key_Passphrase: hunter2-secret-value\n"
     + BASE["hosts"], 5, "defaults.Key_Passphrase"),
    ("cluster-token", "cluster:\n  scheduler: a\n  token: hunter2-secret-value\n" + BASE["hosts"], 3,
     "cluster.token"),
    ("private-key-key", host_a("private_key: hunter2-secret-value"), 4, "hosts.a.private_key"),
    ("key-password", host_a("key_password: hunter2-secret-value"), 4, "hosts.a.key_password"),
    ("env-password", host_a("env: {DB_PASSWORD: hunter2-secret-value}"), 4, "hosts.a.env.DB_PASSWORD"),
    ("env-token", BASE["cluster"] + "hosts:\n  a:\n    address: 10.0.0.1\n    env:\n      OMP_NUM_THREADS: 1\n"
     "      HF_TOKEN: hunter2-secret-value\n", 8, "hosts.a.env.HF_TOKEN"),
    ("env-secret", host_a("env: {AWS_SECRET_ACCESS_KEY: hunter2-secret-value}"), 4,
     "hosts.a.env.AWS_SECRET_ACCESS_KEY"),
    ("env-api-key-in-defaults", BASE["cluster"] + "defaults:\n  env: {openai_api_key: hunter2-secret-value}\n"
     + BASE["hosts"], 4, "defaults.env.openai_api_key"),
    ("inline-private-key-as-ssh-key", host_a(f'ssh_key: "{PEM}"'), 4, "hosts.a.ssh_key"),
    ("inline-rsa-key-in-env", BASE["cluster"] + "hosts:\n  a:\n    address: 10.0.0.1\n    env:\n      KEY: |\n"
     "        -----BEGIN RSA PRIVATE KEY-----\n        hunter2-secret-value\n        -----END RSA PRIVATE KEY-----\n",
     7, "hosts.a.env.KEY"),
    ("inline-key-under-an-unknown-key", host_a(f'sshkey_data: "{PEM}"'), 4, "hosts.a.sshkey_data"),
]


@pytest.mark.parametrize("text,line,keypath", [c[1:] for c in SECRETS], ids=[c[0] for c in SECRETS])
def test_secret_in_the_inventory_is_refused_without_showing_it(text, line, keypath):
    with pytest.raises(InventoryError) as info:
        parse(text, "inv.yaml")
    msg = str(info.value)
    assert msg.startswith(f"inv.yaml:{line}: {keypath}: ")
    assert msg.endswith("Fix: keep secrets out of the inventory: use ssh_key: pointing to a key file, or ssh-agent")
    assert "hunter2" not in msg and "b3BlbnNzaC" not in msg and "\n" not in msg
    assert "unknown key" not in msg  # the secret is named as such, before the generic message


def test_secret_looking_key_is_named_before_an_earlier_error():
    text = BASE["cluster"] + "hosts:\n  a: {address: 10.0.0.1, nworker: 2}\n  b: {address: 10.0.0.2, passwd: x}\n"
    with pytest.raises(InventoryError, match=r"^inv.yaml:5: hosts.b.passwd: looks like a secret"):
        parse(text, "inv.yaml")


def test_names_that_only_resemble_secrets_are_accepted():
    inv = parse(BASE["cluster"] + "hosts:\n  a: {address: 10.0.0.1, ssh_key: ~/.ssh/id_ed25519, env: "
                "{TOKENIZERS_PARALLELISM: 'false', OMP_NUM_THREADS: 1}}\n  secret-nas: {address: 10.0.0.2}\n",
                "inv.yaml")
    assert inv.hosts["a"].env["TOKENIZERS_PARALLELISM"] == "false" and "secret-nas" in inv.hosts


def test_secret_check_walks_an_aliased_mapping_once():
    laughs = "{A0: &m0 {k0: 1, k1: 1}, " + ", ".join(f"A{i}: &m{i} {{k0: *m{i - 1}, k1: *m{i - 1}}}"
                                                     for i in range(1, 40)) + ", TOKEN: x}"
    with pytest.raises(InventoryError, match=r"hosts.a.env.TOKEN: looks like a secret"):
        parse(host_a("env: " + laughs), "inv.yaml")


def test_managed_environment_interpreter_on_windows_is_scripts_python_exe(tmp_path):
    (tmp_path / "requirements.txt").write_text("six==1.17.0\n")
    inv_file = tmp_path / "inventory.yaml"
    inv_file.write_text("hosts:\n  pc: {address: 192.168.1.12, os: windows, run_directory: C:/hc}\n"
                        "environment:\n  packages: requirements.txt\n")
    inv = load(inv_file)
    assert interpreter(inv, inv.hosts["pc"]) == "C:/hc/home/pc/env/Scripts/python.exe"


def test_an_index_url_with_credentials_is_refused_without_showing_them(tmp_path):
    inv_file = tmp_path / "inventory.yaml"
    inv_file.write_text("hosts:\n  me: {connection: local}\nenvironment:\n  packages: [six]\n"
                        "  extra_index_urls: ['https://alice:hunter2@pypi.example.org/simple']\n")
    with pytest.raises(InventoryError) as e:
        load(inv_file)
    message = str(e.value)
    assert "environment.extra_index_urls" in message and "holds credentials" in message and "~/.netrc" in message
    assert "hunter2" not in message and "alice" not in message and "https://***@pypi.example.org" in message
