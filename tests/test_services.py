"""Boot-time service files (systemd units, launchd plists, NSSM PowerShell installers) rendered from the
inventory: golden files for the sample household, each file checked by the tool that would read it
(systemd-analyze verify, plistlib, the tree-sitter PowerShell grammar), the quoting of every command line taken
apart again, and the CLI. No host is touched."""

from __future__ import annotations

import argparse
import os
import plistlib
import re
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from homecluster.cli import service as service_cli
from homecluster.core.spec import build
from homecluster.errors import InventoryError
from homecluster.inventory import load, parse
from homecluster.services import nssm, systemd, templates
from homecluster.services.render import render_all, render_host, supervisor
from validators import powershell_errors

GOLDEN = Path(__file__).parent / "golden"
SAMPLE = GOLDEN / "sample-inventory.yaml"
SERVICES = GOLDEN / "services"
REPO = Path(__file__).parent.parent
SYSTEMD_ANALYZE = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"

# NSSM 2.24's parameters (nssm.cc/usage, and the settings table of its settings.cpp)
NSSM_PARAMETERS = {
    "Application", "AppParameters", "AppDirectory", "AppExit", "AppEvents", "AppAffinity", "AppEnvironment",
    "AppEnvironmentExtra", "AppNoConsole", "AppPriority", "AppRestartDelay", "AppStdin", "AppStdinShareMode",
    "AppStdinCreationDisposition", "AppStdinFlagsAndAttributes", "AppStdout", "AppStdoutShareMode",
    "AppStdoutCreationDisposition", "AppStdoutFlagsAndAttributes", "AppStdoutCopyAndTruncate", "AppStderr",
    "AppStderrShareMode", "AppStderrCreationDisposition", "AppStderrFlagsAndAttributes",
    "AppStderrCopyAndTruncate", "AppStopMethodSkip", "AppStopMethodConsole", "AppStopMethodWindow",
    "AppStopMethodThreads", "AppKillProcessTree", "AppThrottle", "AppRedirectHook", "AppRotateFiles",
    "AppRotateOnline", "AppRotateSeconds", "AppRotateBytes", "AppRotateBytesHigh", "AppRotateDelay",
    "AppTimestampLog", "DependOnGroup", "DependOnService", "Description", "DisplayName", "ImagePath",
    "ObjectName", "Name", "Start", "Type",
}
NSSM_COMMANDS = {"install", "remove", "set", "get", "reset", "unset", "start", "stop", "restart", "status",
                 "rotate", "edit", "dump", "pause", "continue", "statuscode"}
NSSM_START = {"SERVICE_AUTO_START", "SERVICE_DELAYED_AUTO_START", "SERVICE_DEMAND_START", "SERVICE_DISABLED"}
NSSM_EXIT_ACTIONS = {"Restart", "Ignore", "Exit", "Suicide"}
NSSM_REQUIRED = {"AppDirectory", "AppParameters", "AppEnvironmentExtra", "AppStdout", "AppStderr", "AppRotateFiles",
                 "AppRotateOnline", "AppRotateBytes", "AppExit", "AppRestartDelay", "Start", "DisplayName",
                 "Description"}

# Inventories that take every branch: system units and daemons, absolute paths with spaces, quotes, $, %,
# backslashes and typographic quotes in values, a bare interpreter name, nssm: set, supervisor: process.
VARIANTS = r"""
cluster: {name: attic, scheduler: nas, worker_ports: "9000:9099", tls: false}
defaults: {user: bob, nthreads: 1}
hosts:
  nas:
    address: 192.168.7.2
    supervisor: systemd
    service_scope: system
    nworkers: 2
    memory_limit: 1.5GiB
    python: /srv/dask env/bin/python
    run_directory: /var/lib/homecluster
    local_directory: /scratch/dask work
    env: {MSG: 'it''s 100% "$HOME" \ done', SCRATCH: ~/scratch, ODD: "a;b ; c"}
  imac: {address: 192.168.7.3, os: macos, service_scope: system, python: /opt/homebrew/bin/python3}
  studio-pc:
    address: 192.168.7.4
    os: windows
    python: 'C:\Program Files\Python312\python.exe'
    run_directory: 'D:/dask runs'
    nssm: 'C:\tools\nssm 2.24\win64\nssm.exe'
    env: {NOTE: 'say "hi" \\ it’s 50%', TRAIL: 'ends in \', CACHE: ~/cache}
  mini-pc: {address: 192.168.7.5, os: windows, python: python, user: carol}
  pi: {address: 192.168.7.6, supervisor: process}
  old-nas: {address: 192.168.7.7, supervisor: systemd, python: python3}
"""


# The scheduler and a worker on one Windows host, and on one Mac
SCHEDULERS = """
cluster: {name: pcs, scheduler: tower}
hosts:
  tower: {address: 192.168.9.2, os: windows, python: 'C:/Python312/python.exe'}
  mac: {address: 192.168.9.3, os: macos, user: root}
"""


def variants():
    return {"sample": load(SAMPLE), "variants": parse(VARIANTS, "variants.yaml"),
            "schedulers": parse(SCHEDULERS, "schedulers.yaml")}


def all_files():
    """(inventory name, host, file name, text) of every file rendered for every variant."""
    for name, inv in variants().items():
        for host, files in render_all(inv).items():
            for file, text in files.items():
                yield name, inv.hosts[host], file, text


def need(ok: bool, reason: str) -> None:
    """Skip without the validator, except in CI (tests/run installs it), where its absence is a failure."""
    if not ok:
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI must have it: see tests/run)")
        pytest.skip(reason)


def run_render(inv, out: str, *hosts: str, force: bool = False) -> int:
    args = argparse.Namespace(service_command="render", hosts=list(hosts), out=out, force=force)
    return service_cli.cmd_service(inv, args)


# --- golden files -------------------------------------------------------------------------------------------

def test_sample_matches_golden(tmp_path, monkeypatch, capsys):
    """`service render --out DIR` of the sample household: exactly the golden files, byte for byte, and the
    output that says what was written and how to install it."""
    monkeypatch.chdir(tmp_path)
    assert run_render(load(SAMPLE), "out") == 0
    output = capsys.readouterr().out
    written = {str(p.relative_to(tmp_path / "out")): p.read_bytes()
               for p in sorted((tmp_path / "out").rglob("*")) if p.is_file()}
    if os.environ.get("UPDATE_GOLDEN"):
        shutil.rmtree(SERVICES, ignore_errors=True)
        for rel, data in written.items():
            (SERVICES / rel).parent.mkdir(parents=True, exist_ok=True)
            (SERVICES / rel).write_bytes(data)
        (SERVICES / "render-output.txt").write_text(output)
    golden = {str(p.relative_to(SERVICES)): p.read_bytes() for p in sorted(SERVICES.rglob("*"))
              if p.is_file() and p.name != "render-output.txt"}
    assert sorted(written) == sorted(golden), "files written and golden files differ (stale or missing)"
    for rel, data in written.items():
        assert data == golden[rel], f"{rel} differs from its golden file (UPDATE_GOLDEN=1 regenerates)"
    assert output == (SERVICES / "render-output.txt").read_text()
    assert sorted(written) == ["desktop/homecluster-home-scheduler.service",
                               "gaming-pc/install-homecluster-home-worker.ps1",
                               "gaming-pc/uninstall-homecluster-home-worker.ps1",
                               "laptop/homecluster-home-worker.service",
                               "mac-mini/org.homecluster.home.worker.plist"]


def test_choice_of_service_manager():
    inv = variants()["variants"]
    assert {h.name: supervisor(h) for h in inv.hosts.values()} == {
        "nas": "systemd", "imac": "launchd", "studio-pc": "nssm", "mini-pc": "nssm", "pi": "process",
        "old-nas": "systemd"}
    assert render_host(inv, build(inv), inv.hosts["pi"]) == {}


# --- systemd ------------------------------------------------------------------------------------------------

def exec_start_program(text: str) -> str:
    """The executable of the unit's ExecStart= (first word, quotes and escapes removed)."""
    line = next(x for x in text.splitlines() if x.startswith("ExecStart="))[len("ExecStart="):]
    m = re.match(r'"((?:[^"\\]|\\.)*)"|(\S+)', line)
    word = m.group(1) if m.group(1) is not None else m.group(2)
    return re.sub(r"\\(.)", r"\1", word).replace("%%", "%")


@pytest.fixture(scope="module")
def scratch_root(tmp_path_factory):
    """A scratch root for systemd-analyze verify: the distribution's units, nothing of this machine's /etc."""
    need(os.access(SYSTEMD_ANALYZE, os.X_OK), "systemd-analyze not found (apt install systemd)")
    root = tmp_path_factory.mktemp("systemd-root")
    (root / "usr/lib/systemd").mkdir(parents=True)
    shutil.copytree("/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    return root


def test_every_unit_passes_systemd_analyze_verify(scratch_root):
    units = [(v, h, f, t) for v, h, f, t in all_files() if f.endswith(".service")]
    assert len(units) == 5
    for variant, host, name, text in units:
        program = exec_start_program(text).replace("%h", "/root")  # %h of the system manager verify runs as
        stub = scratch_root / (program.lstrip("/") if program.startswith("/") else f"usr/bin/{program}")
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text("#!/bin/sh\n")
        stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
        unit = scratch_root / "etc/systemd/system" / name
        unit.write_text(text)
        p = subprocess.run([SYSTEMD_ANALYZE, "verify", f"--root={scratch_root}", "--man=no", str(unit)],
                           capture_output=True, text=True, timeout=60)
        assert (p.returncode, p.stdout + p.stderr) == (0, ""), f"{variant}/{host.name}/{name}:\n{text}"
        unit.unlink()
    # the validator does find mistakes (warnings with exit code 0, hence: no output at all)
    unit = scratch_root / "etc/systemd/system" / units[0][2]
    unit.write_text(units[0][3].replace("Restart=always", "Restart=sometimes"))
    p = subprocess.run([SYSTEMD_ANALYZE, "verify", f"--root={scratch_root}", "--man=no", str(unit)],
                       capture_output=True, text=True, timeout=60)
    assert "sometimes" in p.stdout + p.stderr


def test_systemd_unit_settings():
    units = {(v, h.name): t for v, h, f, t in all_files() if f.endswith(".service")}
    laptop = units["sample", "laptop"]
    for line in ["Type=simple", "Restart=always", "RestartSec=2", "StartLimitIntervalSec=0", "KillMode=mixed",
                 "WorkingDirectory=%h/.homecluster/home/laptop", 'Environment="HOMECLUSTER_PROCESS=home/laptop/worker"',
                 'Environment="OMP_NUM_THREADS=1"', "StandardOutput=append:%h/.homecluster/home/laptop/worker.log",
                 "StandardError=append:%h/.homecluster/home/laptop/worker.log",
                 "MemoryMax=4000000000", "WantedBy=default.target"]:  # 1GB x 4 worker processes
        assert line in laptop.splitlines(), line
    assert "network-online" not in laptop and "User=" not in laptop  # the user manager has neither
    assert "MemoryMax" not in units["sample", "desktop"]  # the scheduler: no memory_limit
    nas = units["variants", "nas"].splitlines()
    for line in ["User=bob", "WantedBy=multi-user.target", "After=network-online.target",
                 "Wants=network-online.target", "WorkingDirectory=/var/lib/homecluster/attic/nas",
                 f"MemoryMax={2 * int(1.5 * 2**30)}",
                 # systemd's quoting: C escapes in quotes, % doubled; $ is literal in Environment=
                 r'Environment="MSG=it' + "'" + r's 100%% \"$HOME\" \\ done"',
                 # ~ in a system unit: the user's home (%h would be root's)
                 'Environment="SCRATCH=/home/bob/scratch"']:
        assert line in nas, line
    exec_start = next(x for x in nas if x.startswith("ExecStart="))
    assert exec_start.startswith('ExecStart="/srv/dask env/bin/python" -m distributed.cli.dask_worker ')
    assert '--local-directory "/scratch/dask work"' in exec_start
    assert units["variants", "old-nas"].count("ExecStart=python3 ") == 1  # a bare name: systemd's PATH


def test_systemd_exec_words():
    assert systemd.exec_word("plain/path-1.2:3,x=y@z+") == "plain/path-1.2:3,x=y@z+"
    assert systemd.exec_word("a b") == '"a b"'
    assert systemd.exec_word('say "hi" \\ $HOME') == r'"say \"hi\" \\ $$HOME"'
    assert systemd.exec_word(";") == '";"'
    assert systemd.exec_start(("~/env/bin/python", "100%", "~"), "%h") == "%h/env/bin/python 100%% %h"
    assert systemd.path("~/a%b", "/home/x%y") == "/home/x%%y/a%%b"


# --- launchd ------------------------------------------------------------------------------------------------

def test_every_plist_loads_with_the_keys_launchd_needs():
    plists = [(v, h, f, t) for v, h, f, t in all_files() if f.endswith(".plist")]
    assert len(plists) == 3
    for variant, host, name, text in plists:
        data = plistlib.loads(text.encode())
        for key in ("Label", "ProgramArguments", "KeepAlive", "RunAtLoad"):
            assert key in data, f"{variant}/{host.name}/{name}: no {key}"
        assert name == data["Label"] + ".plist"
        assert data["KeepAlive"] is True and data["RunAtLoad"] is True
        assert all(isinstance(a, str) for a in data["ProgramArguments"])
        program = data["ProgramArguments"][0]
        assert program.startswith("/") or "/" not in program  # absolute, or a bare name launchd finds on PATH
        role = data["Label"].rsplit(".", 1)[1]
        assert data["StandardOutPath"] == data["StandardErrorPath"] == data["WorkingDirectory"] + f"/{role}.log"
        assert data["EnvironmentVariables"]["HOMECLUSTER_PROCESS"].endswith(f"/{host.name}/{role}")
        assert isinstance(data["ThrottleInterval"], int)
        assert "~" not in text  # launchd expands no ~
    mac = plistlib.loads(dict(((v, h.name), t) for v, h, f, t in plists)["sample", "mac-mini"].encode())
    assert mac["ProgramArguments"][0] == "/Users/alice/dask-env/bin/python"
    assert mac["Label"] == "org.homecluster.home.worker" and "UserName" not in mac  # an agent: the user's own
    imac = plistlib.loads(dict(((v, h.name), t) for v, h, f, t in plists)["variants", "imac"].encode())
    assert imac["UserName"] == "bob"  # a daemon runs as the host's user
    root = plistlib.loads(dict(((v, h.name), t) for v, h, f, t in plists)["schedulers", "mac"].encode())
    assert root["WorkingDirectory"] == "/var/root/.homecluster/pcs/mac"


# --- PowerShell (NSSM) --------------------------------------------------------------------------------------

def test_every_powershell_file_parses():
    scripts = [(v, h, f, t) for v, h, f, t in all_files() if f.endswith(".ps1")]
    assert len(scripts) == 10
    for variant, host, name, text in scripts:
        assert powershell_errors(text) == [], f"{variant}/{host.name}/{name}"
    # the validator does find mistakes
    assert powershell_errors("Set-Nssm 'AppDirectory' ('\"' + $UserHome + '\\x\"'\n")


PS_QUOTES = "'\u2018\u2019\u201a\u201b"
TEST_HOME = "C:\\Users\\Ann O'Neil"  # spaces and a quote, as a Windows profile may have
TEST_APP = "C:\\Program Files\\Python 3\\python.exe"


def ps_eval(expr: str, variables: dict[str, str]) -> str:
    """The value of a PowerShell expression made of single-quoted strings, variables, + and parentheses."""
    out, i = [], 0
    while i < len(expr):
        c = expr[i]
        if c in PS_QUOTES:
            i += 1
            while True:
                if expr[i] in PS_QUOTES:
                    if i + 1 < len(expr) and expr[i + 1] in PS_QUOTES:
                        out.append(expr[i + 1])
                        i += 2
                        continue
                    i += 1
                    break
                out.append(expr[i])
                i += 1
        elif c == "$":
            name = re.match(r"\$(\w+)", expr[i:]).group(1)
            out.append(variables[name])
            i += len(name) + 1
        elif c in "()+ ":
            i += 1
        else:
            raise AssertionError(f"not a simple expression at {expr[i:]!r}")
    return "".join(out)


def windows_argv(line: str) -> list[str]:
    """A command line split as CommandLineToArgvW and the C runtime (2008 and later) split it."""
    args, i, n = [], 0, len(line)
    while True:
        while i < n and line[i] in " \t":
            i += 1
        if i >= n:
            return args
        arg, quoted = [], False
        while i < n and (quoted or line[i] not in " \t"):
            if line[i] == "\\":
                j = i
                while j < n and line[j] == "\\":
                    j += 1
                if j < n and line[j] == '"':
                    arg.append("\\" * ((j - i) // 2))
                    if (j - i) % 2:
                        arg.append('"')
                        j += 1
                else:
                    arg.append("\\" * (j - i))
                i = j
            elif line[i] == '"':
                if quoted and i + 1 < n and line[i + 1] == '"':
                    arg.append('"')
                    i += 2
                else:
                    quoted = not quoted
                    i += 1
            else:
                arg.append(line[i])
                i += 1
        args.append("".join(arg))


def nssm_command_lines(script: str, service: str) -> list[list[str]]:
    """Every nssm command line of a script, as nssm.exe's argv (its values evaluated as PowerShell would)."""
    variables = {"UserHome": TEST_HOME, "Service": service, "Application": TEST_APP}
    start, end = script.index("# --- the part every"), script.index("# --- end of nssm-common.ps1 ---")
    lines = []
    for line in (script[:start] + script[end:]).splitlines():  # without the functions' own definitions
        if m := re.fullmatch(r"Set-Nssm '(\w+)' (.+)", line):
            lines.append(windows_argv(f"set {service} {m.group(1)} {ps_eval(m.group(2), variables)}"))
        elif m := re.match(r"\s*(?:if \(\()?Invoke-Nssm (\(.+?\))(?: -MayFail)?(?:\) -ne 0\) \{| \| Out-Null)$",
                           line):
            lines.append(windows_argv(ps_eval(m.group(1), variables)))
    return lines


def windows_expected(value: str) -> str:
    if value == "~" or value.startswith("~/"):
        return TEST_HOME + value[1:].replace("/", "\\")
    return value


def test_nssm_command_lines():
    """Each nssm call, taken apart as nssm.exe would: documented commands and parameters, and the dask
    command line (AppParameters) and environment exactly the spec's."""
    for name, inv in variants().items():
        spec = build(inv)
        for host, files in render_all(inv, spec).items():
            for proc in spec.for_host(host):
                if supervisor(inv.hosts[host]) != "nssm":
                    continue
                svc = nssm.service_name(spec.name, proc.role)
                install, uninstall = (files[f] for f in nssm.file_names(spec.name, proc.role))
                calls = nssm_command_lines(install, svc)
                assert [c[0] for c in calls] == ["stop", "remove", "install"] + ["set"] * len(NSSM_REQUIRED) + ["start"]
                assert all(c[0] in NSSM_COMMANDS for c in calls)
                assert calls[2] == ["install", svc, TEST_APP]
                sets = {c[2]: c[3:] for c in calls if c[0] == "set"}
                assert set(sets) <= NSSM_PARAMETERS and set(sets) == NSSM_REQUIRED
                assert all(c[1] == svc for c in calls)
                run_dir = windows_expected(proc.run_dir).replace("/", "\\")
                assert sets["AppDirectory"] == [run_dir]
                assert sets["AppStdout"] == sets["AppStderr"] == [run_dir + f"\\{proc.role}.log"]
                assert len(sets["AppParameters"]) == 1
                assert windows_argv(sets["AppParameters"][0]) == [windows_expected(a) for a in proc.argv[1:]]
                env = [f"HOMECLUSTER_PROCESS={spec.name}/{host}/{proc.role}"] + [
                    f"{k}={windows_expected(v) if v.startswith('~/') else v}" for k, v in proc.env]
                assert sets["AppEnvironmentExtra"] == env  # one KEY=VALUE argument per variable
                assert sets["AppExit"] == ["Default", "Restart"] and sets["AppExit"][1] in NSSM_EXIT_ACTIONS
                assert sets["Start"] == ["SERVICE_AUTO_START"] and sets["Start"][0] in NSSM_START
                assert sets["AppRotateFiles"] == sets["AppRotateOnline"] == ["1"]
                assert int(sets["AppRestartDelay"][0]) == 2000 and int(sets["AppRotateBytes"][0]) > 0
                assert [c[:3] for c in nssm_command_lines(uninstall, svc)] == [["stop", svc], ["remove", svc,
                                                                                               "confirm"]]


def test_nssm_not_found_says_how_to_get_it():
    inv = variants()["variants"]
    files = render_all(inv)
    for host in ("studio-pc", "mini-pc"):
        for text in files[host].values():
            assert "winget install NSSM.NSSM" in text and "set nssm: to the full path of nssm.exe" in text
    studio = files["studio-pc"]["install-homecluster-attic-worker.ps1"]
    assert "$Nssm = 'C:\\tools\\nssm 2.24\\win64\\nssm.exe'" in studio
    assert "$Nssm = 'nssm'" in files["mini-pc"]["install-homecluster-attic-worker.ps1"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet=st.sampled_from('ab \t"\\\'%$~/:\u2019\x00'), max_size=12), max_size=5))
def test_windows_quoting_round_trips(args):
    """quote_arg/command_line give back every argument list, also with $UserHome (the NUL) inside."""
    line = nssm.command_line(args)
    home = "C:\\Users\\A B"
    assert windows_argv(line.replace(nssm.HOME, home)) == [a.replace(nssm.HOME, home) for a in args]
    # twice, as AppParameters inside nssm's own command line
    outer = nssm.command_line(["set", "svc", "AppParameters", line])
    assert windows_argv(windows_argv(outer.replace(nssm.HOME, home))[3]) == [a.replace(nssm.HOME, home)
                                                                              for a in args]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab '\"$`\u2018\u2019\u201a\u201b\x00\\"), max_size=20))
def test_powershell_literals_round_trip(text):
    assert ps_eval(nssm.ps_expr(text), {"UserHome": TEST_HOME}) == text.replace(nssm.HOME, TEST_HOME)


def test_powershell_literals_parse():
    text = "it's ‘quoted’ ‚low‛ $HOME `n \"x\"" + nssm.HOME + "\\end"
    assert powershell_errors(f"$x = {nssm.ps_expr(text)}\n") == []


# --- the renderer and the templates -------------------------------------------------------------------------

def test_renderer_is_strict():
    assert templates.fill("a={{x}}\n{{gone}}\nb\n", {"x": "1", "gone": ""}) == "a=1\nb\n"
    assert templates.fill("{{x}}\n", {"x": "{{y}}"}) == "{{y}}\n"  # values are not rendered again
    for text, values, problem in [("{{x}}", {}, "no value for {{x}}"), ("a", {"x": "1"}, "does not use: x"),
                                  ("{{ x }}", {}, "not a placeholder"), ("}}", {}, "not a placeholder"),
                                  ("{{x}}", {"x": 1}, "not text")]:
        with pytest.raises(templates.TemplateError, match=re.escape(problem)):
            templates.fill(text, values)
    with pytest.raises(templates.TemplateError, match="no value"):
        templates.fill_plist({"a": "{{x}}"}, {})
    assert templates.fill_plist({"a": "{{x}}", "b": ["{{y}}"], "c": "k={{z}}"}, {"x": None, "y": [1], "z": "v"}) \
        == {"b": [[1]], "c": "k=v"}


def test_templates_are_the_repository_folders():
    """One source: the package reads cluster/ and windows/ at the repository root (through the symlinks)."""
    for name in (systemd.TEMPLATE, "cluster/launchd/homecluster.plist", nssm.INSTALL, nssm.UNINSTALL, nssm.COMMON):
        assert templates.path(name).resolve() == (REPO / name).resolve()
    for link in ("cluster", "windows"):
        assert (REPO / "src/homecluster/templates" / link).is_symlink()


@pytest.mark.skipif(not os.environ.get("HC_TEST_WHEEL"), reason="builds a wheel (~20 s): set HC_TEST_WHEEL=1")
def test_the_wheel_carries_the_templates(tmp_path):
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "-w", str(tmp_path), "-q"],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    names = zipfile.ZipFile(next(tmp_path.glob("homecluster-*.whl"))).namelist()
    for name in (systemd.TEMPLATE, "cluster/launchd/homecluster.plist", nssm.INSTALL, nssm.UNINSTALL, nssm.COMMON,
                 "cluster/README.md", "windows/README.md"):
        assert f"homecluster/templates/{name}" in names


# --- inventory problems and the CLI -------------------------------------------------------------------------

def test_relative_paths_are_refused_with_the_key():
    inv = parse("cluster: {scheduler: a}\nhosts:\n  a: {address: 10.0.0.1, run_directory: runs}\n", "inv.yaml")
    with pytest.raises(InventoryError, match=r"hosts\.a\.run_directory: 'runs' is a relative path"):
        render_all(inv)
    inv = parse("cluster: {scheduler: a}\nhosts:\n  a: {address: 10.0.0.1, python: venv/bin/python}\n", "inv.yaml")
    with pytest.raises(InventoryError, match=r"hosts\.a\.python: .* Fix: write an absolute path"):
        render_all(inv)


def test_cli_refuses_a_folder_that_is_not_empty(tmp_path, capsys):
    inv = load(SAMPLE)
    (tmp_path / "keep.txt").write_text("mine")
    assert run_render(inv, str(tmp_path), "laptop") == 2
    assert "is not empty" in capsys.readouterr().err
    (tmp_path / "laptop").mkdir()
    (tmp_path / "laptop" / "stale.service").write_text("old")
    assert run_render(inv, str(tmp_path), "laptop", force=True) == 0
    assert sorted(p.name for p in (tmp_path / "laptop").iterdir()) == ["homecluster-home-worker.service"]
    assert (tmp_path / "keep.txt").read_text() == "mine" and not (tmp_path / "desktop").exists()
    ps1 = tmp_path / "new" / "gaming-pc" / "install-homecluster-home-worker.ps1"
    assert run_render(inv, str(tmp_path / "new"), "gaming-pc") == 0
    assert ps1.read_bytes().startswith(b"\xef\xbb\xbf")  # Windows PowerShell 5.1 reads it as UTF-8


def test_cli_says_why_a_host_has_nothing(tmp_path, capsys):
    inv = variants()["variants"]
    assert run_render(inv, str(tmp_path / "out"), "pi") == 0
    assert capsys.readouterr().out == ("pi: nothing to render: supervisor: process: homecluster's own supervisor "
                                       "runs its processes (homecluster up)\n")
    assert not (tmp_path / "out" / "pi").exists()


def test_cli_parser():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-i", "--inventory", default=argparse.SUPPRESS)
    p = argparse.ArgumentParser()
    service_cli.add_parser(p.add_subparsers(dest="command"), common)
    a = p.parse_args(["service", "render", "laptop", "--out", "d", "-i", "x.yaml"])
    assert (a.service_command, a.hosts, a.out, a.force, a.inventory, a.func) == (
        "render", ["laptop"], "d", False, "x.yaml", service_cli.cmd_service)
    with pytest.raises(SystemExit):
        p.parse_args(["service", "render"])  # --out is required
    a = p.parse_args(["service", "install", "laptop", "--timeout", "5"])
    assert (a.service_command, a.hosts, a.timeout) == ("install", ["laptop"], 5.0)
    assert p.parse_args(["service", "status"]).hosts == []
