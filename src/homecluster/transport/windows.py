"""Windows hosts over Windows' own OpenSSH server: every script is PowerShell.

A script is sent as `powershell.exe ... -EncodedCommand BASE64` (shell/windows.py), which cmd.exe and PowerShell
(the two default shells of Win32-OpenSSH) both pass on untouched; one too long for cmd.exe's command line is
copied over SFTP and run with -File. Host keys are checked exactly as SSHRunner checks them (it is one).

`posix_only` refuses Windows hosts for the commands whose scripts are sh only.
"""

from __future__ import annotations

import io
import secrets
from pathlib import Path, PureWindowsPath
from typing import Callable

import paramiko
from paramiko.ssh_exception import NoValidConnectionsError

from homecluster.errors import HostError
from homecluster.inventory import Host
from homecluster.shell.windows import (MAX_COMMAND_LINE, SYSTEM_SID, clixml_text, powershell_command,
                                       powershell_file_command, ps_literal, sftp_path, windows_path)
from homecluster.transport.result import COMMAND_TIMEOUT, CommandResult, Held
from homecluster.transport.ssh import SSHRunner

OPENSSH_SERVER = "OpenSSH.Server~~~~0.0.1.0"  # the Windows capability (Microsoft's OpenSSH install steps)


def private_file_script(tmp: str, path: str) -> str:
    """Make a copied file readable by this user (and LocalSystem) only, then put it in place: icacls
    /inheritance:r drops every inherited entry, /grant:r replaces the explicit ones; `*SID` names an account
    whatever the language of Windows (icacls' syntax). The user is the token's SID, what %USERNAME% names."""
    return "\n".join([
        f"# homecluster copy: {PureWindowsPath(path).name} readable only by this user and LocalSystem",
        "$ErrorActionPreference = 'Stop'",
        f"$Tmp = {ps_literal(tmp)}",
        f"$Path = {ps_literal(path)}",
        "$Me = [Security.Principal.WindowsIdentity]::GetCurrent().User.Value",
        f"& icacls.exe $Tmp /inheritance:r /grant:r ('*' + $Me + ':F') '*{SYSTEM_SID}:F' | Out-Null",
        "if ($LASTEXITCODE -ne 0) {",
        "    Remove-Item -LiteralPath $Tmp -Force -ErrorAction SilentlyContinue",
        "    [Console]::Out.WriteLine('icacls could not make ' + $Path + ' private (exit ' + $LASTEXITCODE + ')')",
        "    exit 1",
        "}",
        "Remove-Item -LiteralPath $Path -Force -ErrorAction SilentlyContinue",
        "[System.IO.File]::Move($Tmp, $Path)  # the same volume: the file keeps its private ACL",
    ])


class WindowsRunner(SSHRunner):
    """Runs PowerShell scripts on a Windows host over its OpenSSH server, with SSHRunner's host-key checking."""

    def __init__(self, host: Host):
        super().__init__(host)
        self._home: str | None = None

    def _explain(self, e: Exception) -> str:
        h, where = self.host, f"{self.host.address}:{self.host.port}"
        if isinstance(e, (NoValidConnectionsError, ConnectionRefusedError)):
            return (f"{h.name}: cannot reach {where}: connection refused: OpenSSH Server is not enabled on {h.name}. "
                    f"Fix: in an administrator PowerShell there: Add-WindowsCapability -Online -Name {OPENSSH_SERVER}; "
                    "Start-Service sshd; Set-Service sshd -StartupType Automatic")
        if isinstance(e, paramiko.AuthenticationException):
            # Win32-OpenSSH's sshd_config reads an administrator's keys from one file for all of them (#1713)
            return (super()._explain(e) + r"; for an account in Administrators the public key goes into "
                    r"C:\ProgramData\ssh\administrators_authorized_keys on the host")
        return super()._explain(e)

    # --- files ----------------------------------------------------------------------------------------------

    def home(self) -> str:
        """The user's profile as SFTP names it (`/C:/Users/alice`): where SFTP starts (Win32-OpenSSH#209)."""
        if self._home is None:
            self._home = self._sftp(lambda sftp: sftp.normalize("."), "finding the home directory")
        return self._home

    def _sftp(self, action: Callable, what: str):
        self.open()
        try:
            return action(self.conn.sftp())
        except Exception as e:  # noqa: BLE001 - a failed transfer is this host's failure
            raise HostError(f"{self.host.name}: {what} over SFTP failed: {e}") from None

    def put(self, local: Path, remote: str) -> None:
        """Copy a file to the host over SFTP (`~/` is the user's profile)."""
        path = sftp_path(remote, self.home())
        self._sftp(lambda sftp: sftp.put(str(local), path), f"copying {local.name} to {remote}")

    def put_private(self, local: Path, remote: str) -> None:
        """Copy a file (a key) so that only this user (and LocalSystem, which runs the services) can read it.
        It is written next to its place, made private with icacls, then renamed into place; the tls folder it
        goes to is private already (the NSSM backend's session), so the copy never is readable by others."""
        path = sftp_path(remote, self.home())
        self._sftp(lambda sftp: sftp.put(str(local), path + ".tmp"), f"copying {local.name} to {remote}")
        r = self.run(private_file_script(windows_path(path + ".tmp"), windows_path(path)))
        if not r.ok:
            raise HostError(f"{self.host.name}: copying {local.name} to {remote} failed: {r.tail()}")

    # --- scripts --------------------------------------------------------------------------------------------

    def _command(self, script: str) -> tuple[str, Callable[[], None]]:
        """The command line that runs a script, and what removes what it needed afterwards. A script too long
        for one command line is copied into the login directory (the profile, where SFTP starts too) as a file
        with a BOM (Windows PowerShell 5.1 reads a file without one in the ANSI code page)."""
        line = powershell_command(script)
        if len(line) <= MAX_COMMAND_LINE:
            return line, lambda: None
        name = f"hc-script-{secrets.token_hex(8)}.ps1"
        path = sftp_path(f"~/{name}", self.home())
        data = io.BytesIO(("\ufeff" + script).encode("utf-8"))
        self._sftp(lambda sftp: sftp.putfo(data, path), "copying a script")

        def remove() -> None:
            try:
                self.conn.sftp().remove(path)
            except Exception:  # noqa: BLE001 - a leftover script file is harmless; the command's outcome matters
                pass
        return powershell_file_command(name), remove

    def run(self, script: str, timeout: float = COMMAND_TIMEOUT) -> CommandResult:
        self.open()
        command, cleanup = self._command(script)
        try:
            # stdin closed at once: powershell.exe may wait for a redirected stdin's end before it exits
            r = self.conn.run(command, hide=True, warn=True, in_stream=io.StringIO(), timeout=timeout)
        except Exception as e:  # noqa: BLE001 - a broken channel or timeout is this host's failure
            raise HostError(f"{self.host.name}: command failed over SSH: {e}") from None
        finally:
            cleanup()
        return CommandResult(r.exited, _lines(r.stdout), _lines(clixml_text(r.stderr)))

    def hold(self, script: str) -> Held:
        """Run a script on its own SSH channel until released: the script reads stdin, which release closes
        (the connection dropping ends it too)."""
        self.open()
        command, cleanup = self._command(script)
        try:
            channel = self.conn.client.get_transport().open_session()
            channel.exec_command(command)
        except Exception as e:  # noqa: BLE001 - a broken connection is this host's failure
            cleanup()
            raise HostError(f"{self.host.name}: command failed over SSH: {e}") from None
        out = channel.makefile("r")

        def readline() -> str:
            try:
                return _lines(out.readline())
            except Exception:  # noqa: BLE001 - the channel broke: the end of the output
                return ""

        def release() -> int:
            try:
                channel.shutdown_write()
                code = channel.recv_exit_status()
                channel.close()
                return code
            finally:
                cleanup()
        return Held(readline, release)


def _lines(text: str) -> str:
    """Windows line ends as the parsers read them (`hc-locked`, not `hc-locked\\r`)."""
    return text.replace("\r\n", "\n")


def posix_only(host: Host, command: str) -> None:
    """Refuse a Windows host for a command whose scripts are sh only (doctor): one line with the way that works
    there."""
    if host.os == "windows":
        raise HostError(f"{host.name}: homecluster {command} does not reach Windows hosts yet (its scripts are sh). "
                        f"Fix: homecluster setup {host.name} gives it the lock's packages (or install them into its "
                        "python: by hand, README: Windows), then homecluster up")
