r"""The NSSM backend: on a Windows host each Dask process is the service `homecluster-<cluster>-<role>`, which NSSM
keeps running (it restarts the process on every exit) and Windows starts at boot. The services are installed and
removed by the very scripts `homecluster service render` writes (services/nssm.py, windows/*.ps1): the start
script puts the role's installer into the run directory and runs it; the stop script does so with the
uninstaller.

The scripts are PowerShell (transport/windows.py carries them) and print the process backend's hc-* lines, so its
parsers and its Python side (the session's reading, the lock's messages, stop) serve here unchanged. The run
directory holds what it holds there: `lock` (open without sharing while a command works: a second open fails
until the holder's process ends), lock.owner, <role>.spec, <role>.log (NSSM writes it), tls\ (private to the user
and LocalSystem, which runs the services). A failure the user can fix is one `hc-error MESSAGE` line.

Ownership: Windows has no documented call that reads another process's environment (it lives in that process's
memory), so the HOMECLUSTER_PROCESS marker the services still get (AppEnvironmentExtra) is not what a stop looks
for. A stop kills what is left of the service's process tree, and any `distributed.cli.dask_<role>` whose command
line names the run directory (a TLS cluster's always does: its certificates are there).
"""

from __future__ import annotations

import re
from pathlib import Path

from homecluster.backends.base import ProcessState
from homecluster.backends.process import LOCK_BUSY_EXIT, LOCK_WAIT, ROLES, ProcessBackend, _header, parse_started
from homecluster.core.spec import TLS_DIR, ProcessSpec
from homecluster.errors import HostError
from homecluster.services.common import log_path
from homecluster.services.nssm import install_script, ps_expr, service_name, uninstall_script, win_path
from homecluster.shell.windows import SYSTEM_SID, ps_literal

# Alive: the service runs, or NSSM waits to start its process again (a throttled service shows as Paused: NSSM's
# README); Win32_Service.State is one of Stopped, Start Pending, Stop Pending, Running, Continue Pending,
# Pause Pending, Paused, Unknown.
ALIVE_STATES = ("Running", "Paused", "Start Pending", "Continue Pending", "Pause Pending")

# A program as nssm-common.ps1 finds it: a path, or a bare name on the PATH; $null when there is none.
_FIND = r"""function Find-Program([string]$Name) {
    if (Test-Path -LiteralPath $Name -PathType Leaf) { return $Name }
    if ($Name -notmatch '[\\/:]') {
        $Command = Get-Command -Name $Name -CommandType Application -ErrorAction SilentlyContinue |
            Select-Object -First 1
        if ($Command) { return $Command.Source }
    }
    return $null
}"""

# Processes and their descendants, from one Win32_Process snapshot (a child is not older than its parent: a reused
# ParentProcessId does not make a stranger one).
_TREE = r"""function Get-Tree($Roots, $All) {
    $Found = @{}
    $Queue = New-Object System.Collections.Queue
    foreach ($R in $Roots) {
        if (-not $Found.ContainsKey($R.ProcessId)) { $Found[$R.ProcessId] = $R; $Queue.Enqueue($R) }
    }
    while ($Queue.Count -gt 0) {
        $Parent = $Queue.Dequeue()
        foreach ($C in $All) {
            $Young = $C.CreationDate -ge $Parent.CreationDate
            if ($C.ParentProcessId -eq $Parent.ProcessId -and $Young -and -not $Found.ContainsKey($C.ProcessId)) {
                $Found[$C.ProcessId] = $C
                $Queue.Enqueue($C)
            }
        }
    }
    return @($Found.Values)
}"""


def _prelude(run_dir: str) -> list[str]:
    """What every script starts with: stop at the first error, lines out at once (a held session is read line by
    line), and $D, the run directory ($UserHome for a ~ in it, as in the rendered service scripts)."""
    return [
        "$ErrorActionPreference = 'Stop'",
        "$ProgressPreference = 'SilentlyContinue'  # progress records would reach stderr as CLIXML",
        "try { [Console]::OutputEncoding = [System.Text.Encoding]::UTF8 } catch { }",
        "function Write-Line([string]$Line) { [Console]::Out.WriteLine($Line) }",
        "$UserHome = [Environment]::GetFolderPath('UserProfile')",
        f"$D = {ps_expr(win_path(run_dir))}",
    ]


def _fail(message: str, code: int) -> str:
    return f"Write-Line {ps_literal('hc-error ' + message)}; exit {code}"


def _lock_lines(command: str) -> list[str]:
    """Take the host's lock for the cluster (waiting at most LOCK_WAIT s, saying who holds it); it lasts as long
    as this PowerShell: [System.IO.File]::Open with FileShare None fails with an IOException (a sharing
    violation) while another process has the file open."""
    return [
        "New-Item -ItemType Directory -Force -Path $D | Out-Null",
        "$Owner = Join-Path $D 'lock.owner'",
        f"$Deadline = (Get-Date).AddSeconds({LOCK_WAIT})",
        "$Lock = $null",
        "$Waited = $false",
        "while ($null -eq $Lock) {",
        "    try {",
        "        $Lock = [System.IO.File]::Open((Join-Path $D 'lock'), 'OpenOrCreate', 'ReadWrite', 'None')",
        "    } catch [System.IO.IOException] {",
        "        if (-not $Waited) {",
        "            $Waited = $true",
        "            $Holder = ''",
        "            try { $Holder = [System.IO.File]::ReadAllText($Owner).Trim() } catch { }",
        "            Write-Line ('hc-busy ' + $Holder)",
        "        }",
        f"        if ((Get-Date) -ge $Deadline) {{ Write-Line 'hc-busy-timeout'; exit {LOCK_BUSY_EXIT} }}",
        "        Start-Sleep -Milliseconds 100",
        "    }",
        "}",
        # who holds the lock, as a waiting command shows it: the command, the laptop it came from, since when
        "$From = ''",
        "if ($env:SSH_CLIENT) { $From = ' from ' + ($env:SSH_CLIENT -split ' ')[0] }",
        "$Since = ' (since ' + (Get-Date -Format 'HH:mm:ss') + ')'",
        f"[System.IO.File]::WriteAllText($Owner, ({ps_literal('homecluster ' + command)} + $From + $Since))",
    ]


# Where `start` copies the certificates and keys: only this user and LocalSystem (which runs the services) may
# read it, and what is created inside inherits just that: icacls /inheritance:r drops the inherited entries,
# /grant:r replaces the explicit ones, (OI)(CI) passes them on to files and folders, `*SID` names an account in
# any language of Windows.
_PRIVATE_TLS = [
    f"$T = Join-Path $D '{TLS_DIR}'",
    "New-Item -ItemType Directory -Force -Path $T | Out-Null",
    "$Me = [Security.Principal.WindowsIdentity]::GetCurrent().User.Value",
    f"& icacls.exe $T /inheritance:r /grant:r ('*' + $Me + ':(OI)(CI)F') '*{SYSTEM_SID}:(OI)(CI)F' | Out-Null",
    "if ($LASTEXITCODE -ne 0) { Write-Line ('hc-error icacls could not make ' + $T + ' private'); exit 1 }",
]


def _run_rendered(name: str, text: str, what: str) -> list[str]:
    """Write a rendered service script into the run directory, as `service render` names it (with a BOM: Windows
    PowerShell 5.1 reads a file without one in the ANSI code page), and run it: its `exit` ends it, not this
    script, and what it throws becomes an hc-error line."""
    text = text.lstrip("\ufeff").rstrip("\n")
    if re.search(r"^'@", text, re.M):  # it would end the here-string; the loader refuses values with line breaks
        raise ValueError(f"{name}: a line starts with '@, which a PowerShell here-string cannot hold")
    return [
        f"$Rendered = Join-Path $D {ps_literal(name)}",
        "$Text = @'",
        text,
        "'@",
        "[System.IO.File]::WriteAllText($Rendered, $Text, (New-Object System.Text.UTF8Encoding $true))",
        f"try {{ & $Rendered }} catch {{ Write-Line ({ps_literal('hc-error ' + what + ' failed: ')} + "
        "$_.Exception.Message); exit 1 }",
    ]


def error_line(output: str) -> str | None:
    """The message of a script's first `hc-error` line (a failure with its fix), or None."""
    m = re.search(r"^hc-error (.+)$", output, re.M)
    return m.group(1).strip() if m else None


class NssmBackend(ProcessBackend):
    """Dask processes as NSSM services on a Windows host: the process backend with PowerShell scripts."""

    supervised = False  # NSSM is the supervisor

    def service(self, role: str) -> str:
        return service_name(self.cluster, role)

    def _role(self, role: str) -> ProcessSpec:
        """The role as the uninstaller and the log path need it (its command line is not needed there)."""
        return ProcessSpec(self.host.name, role, (), (), self.run_dir, os="windows")

    def _nssm_lines(self) -> list[str]:
        """$Nssm, as nssm-common.ps1 looks for it, or an hc-error line with the fix (and exit 127)."""
        name = self.host.name
        missing = (f"nssm.exe not found on {name}. Fix: winget install NSSM.NSSM (in PowerShell there), or set "
                   f"nssm: C:\\path\\to\\nssm.exe for {name} in the inventory")
        return [f"$Nssm = Find-Program {ps_expr(win_path(self.host.nssm)) if self.host.nssm else ps_literal('nssm')}",
                f"if (-not $Nssm) {{ {_fail(missing, 127)} }}"]

    def _admin_lines(self, what: str) -> list[str]:
        """An hc-error line (and exit 1) unless this login may change services. The rendered scripts check this
        too, but say what to do at the PC itself; over SSH the fix is another account: Win32-OpenSSH gives an
        administrator's logins the full (elevated) token, by design (Win32-OpenSSH#1713)."""
        name = self.host.name
        head = f"hc-error {what} needs an administrator, and "
        tail = (f" is not one on {name}. Fix: set user: for {name} to an account in its Administrators group, or "
                f"do it at the PC with the scripts of homecluster service render {name} (windows/README.md)")
        return [
            "$Identity = [Security.Principal.WindowsIdentity]::GetCurrent()",
            "$Admin = [Security.Principal.WindowsBuiltInRole]::Administrator",
            "if (-not (New-Object Security.Principal.WindowsPrincipal $Identity).IsInRole($Admin)) {",
            f"    Write-Line ({ps_literal(head)} + $env:USERNAME + {ps_literal(tail)}); exit 1",
            "}",
        ]

    # --- the scripts ----------------------------------------------------------------------------------------

    def probe_body(self) -> str:
        """nssm.exe is there; for every role: the service's process (nssm.exe), whether it is alive, the
        fingerprint it was started with, and whether the Dask process runs (nssm.exe has a child besides the
        conhost.exe of the console it makes), in the process backend's hc-probe/hc-state lines."""
        prefix = service_name(self.cluster, "")
        return "\n".join([
            _FIND,
            *self._nssm_lines(),
            "Write-Line ('hc-now ' + [DateTimeOffset]::UtcNow.ToUnixTimeSeconds())",
            f"foreach ($Role in @({', '.join(map(ps_literal, ROLES))})) {{",
            f'    $Svc = Get-CimInstance -ClassName Win32_Service -Filter "Name=\'{prefix}$Role\'"',
            "    $ProcId = ''",
            "    $Alive = 0",
            "    $Running = 'false'",
            "    if ($Svc) {",
            "        if ($Svc.ProcessId) { $ProcId = [string]$Svc.ProcessId }",
            f"        if (@({', '.join(map(ps_literal, ALIVE_STATES))}) -contains $Svc.State) {{ $Alive = 1 }}",
            "        if ($ProcId -and $Svc.State -eq 'Running') {",
            '            $Filter = "ParentProcessId=$ProcId AND Name<>\'conhost.exe\'"',
            "            $Children = @(Get-CimInstance -ClassName Win32_Process -Filter $Filter)",
            "            if ($Children.Count -gt 0) { $Running = 'true' }",
            "        }",
            "    }",
            "    $SpecFile = Join-Path $D ($Role + '.spec')",
            "    $Spec = ''",
            "    if (Test-Path -LiteralPath $SpecFile) { $Spec = [System.IO.File]::ReadAllText($SpecFile).Trim() }",
            "    Write-Line ('hc-probe ' + $Role + ' pid=' + $ProcId + ' alive=' + $Alive + ' spec=' + $Spec)",
            "    if ($Alive) { Write-Line ('hc-state ' + $Role + ' {\"running\": ' + $Running + '}') }",
            "}",
            "Write-Line 'hc-probe-done'",
        ])

    def session_script(self, command: str) -> str:
        """Take the host's lock for the cluster, make the tls folder private (up), probe, then hold the lock
        until stdin closes: when the command ends, or its SSH connection drops."""
        return "\n".join([
            _header("session", f"lock cluster {self.cluster} on {self.host.name} while homecluster {command} works "
                    "here; probe"),
            *_prelude(self.run_dir),
            *_lock_lines(command),
            *(_PRIVATE_TLS if command == "up" else []),
            self.probe_body(),
            "Write-Line 'hc-locked'",
            "$null = [Console]::In.ReadLine()",
            "$Lock.Close()",
        ])

    def probe_script(self) -> str:
        """The probe without the lock (status)."""
        return "\n".join([_header("probe", f"what runs for cluster {self.cluster} on {self.host.name}"),
                          *_prelude(self.run_dir), self.probe_body()])

    def start_script(self, proc: ProcessSpec) -> str:
        """Check the interpreter and nssm.exe, keep the last log as <role>.log.1, install (or replace) and start
        the service with the rendered installer, then write the fingerprint and say the service's pid."""
        role, name, py = proc.role, self.service(proc.role), proc.argv[0]
        missing = f"no Python interpreter at {py} on {proc.host}. Fix: homecluster setup, or set python: for it"
        return "\n".join([
            _header("start", f"the {role} of cluster {self.cluster} on {proc.host}, as NSSM service {name}"),
            *_prelude(proc.run_dir),
            _FIND,
            f"if (-not (Find-Program {ps_expr(win_path(py))})) {{ {_fail(missing, 127)} }}",
            *self._nssm_lines(),
            *self._admin_lines(f"installing the service {name}"),
            "New-Item -ItemType Directory -Force -Path $D | Out-Null",
            f"$Log = {ps_expr(win_path(log_path(proc)))}",
            "if (Test-Path -LiteralPath $Log) {",
            "    try { [System.IO.File]::Delete($Log + '.1'); [System.IO.File]::Move($Log, $Log + '.1') } catch { }",
            "}",
            *_run_rendered(f"install-{name}.ps1", install_script(proc, self.cluster, self.host), f"installing {name}"),
            f"[System.IO.File]::WriteAllText((Join-Path $D '{role}.spec'), '{proc.fingerprint}')",
            f"$Svc = Get-CimInstance -ClassName Win32_Service -Filter \"Name='{name}'\"",
            f"Write-Line ('hc-started {role} ' + [int]$Svc.ProcessId)",
        ])

    def stop_script(self, role: str, lock_for: str | None = None) -> str:
        """Stop and remove the service with the rendered uninstaller (NSSM ends the process tree), kill what is
        left of the role, and remove its fingerprint, certificate and key. With `lock_for` (a command's name) it
        first takes the host's lock itself (down); without, the caller holds it (up)."""
        name = self.service(role)
        uninstaller = uninstall_script(self._role(role), self.cluster, self.host)
        marked = (f"($_.CommandLine -like '*distributed.cli.dask_{role}*') -and "
                  "$_.CommandLine.IndexOf($D + '\\', [System.StringComparison]::OrdinalIgnoreCase) -ge 0")
        return "\n".join([
            _header("stop", f"the {role} of cluster {self.cluster} on {self.host.name}, NSSM service {name}"
                    + (", under the lock" if lock_for else "")),
            *_prelude(self.run_dir),
            *(_lock_lines(lock_for) if lock_for else []),
            _TREE,
            f"$Svc = Get-CimInstance -ClassName Win32_Service -Filter \"Name='{name}'\"",
            "$Before = @()",
            "if ($Svc) {",
            "    $ServicePid = [int]$Svc.ProcessId",
            "    $All = @(Get-CimInstance -ClassName Win32_Process)",
            "    $Before = @(Get-Tree @($All | Where-Object { $_.ProcessId -eq $ServicePid }) $All)",
            "    New-Item -ItemType Directory -Force -Path $D | Out-Null",
            *self._admin_lines(f"removing the service {name}"),
            *_run_rendered(f"uninstall-{name}.ps1", uninstaller, f"removing {name}"),  # (a here-string: no indent)
            f"    Write-Line ('hc-stopped {role} ' + $ServicePid)",
            "}",
            # what is left: of the service's process tree (the same process: pid and start time), and any dask
            # process of the role whose command line names this run directory
            "$All = @(Get-CimInstance -ClassName Win32_Process)",
            "$Left = @($All | Where-Object {",
            "    $P = $_",
            "    @($Before | Where-Object { $_.ProcessId -eq $P.ProcessId -and $_.CreationDate -eq $P.CreationDate })"
            ".Count -gt 0",
            "})",
            f"$Marked = @($All | Where-Object {{ {marked} }})",
            "$Killed = 0",
            "foreach ($P in @(Get-Tree @($Left + $Marked) $All)) {",
            "    try { Stop-Process -Id $P.ProcessId -Force -ErrorAction Stop; $Killed++ } catch { }",
            "}",
            f"if ($Killed) {{ Write-Line ('hc-killed {role} ' + $Killed) }}",
            f"foreach ($F in @('{role}.spec', '{TLS_DIR}\\{role}.key', '{TLS_DIR}\\{role}.pem')) {{",
            "    Remove-Item -LiteralPath (Join-Path $D $F) -Force -ErrorAction SilentlyContinue",
            "}",
        ])

    def logs_script(self, role: str, lines: int) -> str:
        """The last lines of the role's log (where services/common.log_path says NSSM writes it)."""
        n = int(lines)
        return "\n".join([
            _header("logs", f"the last {n} lines of the {role} log"),
            *_prelude(self.run_dir),
            f"$Log = {ps_expr(win_path(log_path(self._role(role))))}",
            "if (-not (Test-Path -LiteralPath $Log)) { Write-Line ('hc-error no log at ' + $Log + ' yet'); exit 1 }",
            f"Get-Content -LiteralPath $Log -Tail {n} -Encoding UTF8 | ForEach-Object {{ Write-Line $_ }}",
        ])

    # --- running them (the rest is the process backend's) ---------------------------------------------------

    def _session_failed(self, held, lines: list[str]) -> None:
        error = error_line("\n".join(lines))
        if error:
            held.release()
            raise HostError(f"{self.host.name}: {error}")
        super()._session_failed(held, lines)

    def _states(self, output: str, exit_code: int, tail: str) -> dict[str, ProcessState]:
        error = error_line(output)
        if error:
            raise HostError(f"{self.host.name}: {error}")
        return super()._states(output, exit_code, tail)

    def probe(self) -> dict[str, ProcessState]:
        r = self.runner.run(self.probe_script(), timeout=30)
        return self._states(r.stdout, r.exit_code, r.tail())

    def start(self, proc: ProcessSpec) -> int | None:
        """Copy the process's certificate and key (into the session's private tls folder), then install and
        start its service."""
        for local, remote in proc.files:
            self.runner.put_private(Path(local), remote)
        r = self.runner.run(self.start_script(proc))
        if not r.ok:
            raise HostError(f"{self.host.name}: " + (error_line(r.stdout) or f"starting the {proc.role} failed "
                                                      f"(exit {r.exit_code}): {r.tail()}"))
        return parse_started(r.stdout)

    def logs(self, role: str, lines: int) -> str:
        r = self.runner.run(self.logs_script(role, lines))
        if not r.ok:
            raise HostError(f"{self.host.name}: " + (error_line(r.stdout) or f"reading the {role} log failed "
                                                      f"(exit {r.exit_code}): {r.tail()}"))
        return r.stdout
