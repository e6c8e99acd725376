"""The Windows runner without Windows: a fake Fabric connection (run, SFTP, a channel) stands for the host's
OpenSSH server. A script goes as -EncodedCommand (base64 of UTF-16LE, decoded back here), a long one over SFTP
and -File, removed afterwards; paths as Win32-OpenSSH's SFTP takes them; Windows line ends and CLIXML errors
made readable; the errors of a failed connection name the fix."""

from __future__ import annotations

import base64
import io
import socket
from pathlib import Path

import paramiko
import pytest
from paramiko.ssh_exception import NoValidConnectionsError

from homecluster.errors import HostError
from homecluster.inventory import parse
from homecluster.shell import windows as ps
from homecluster.transport import SSHRunner, WindowsRunner, runner_for
from homecluster.transport.windows import private_file_script
from validators import powershell_errors

HOME = "/C:/Users/Ann O'Neil"  # what normalize('.') answers on Win32-OpenSSH: the profile, with a drive slash
PREFIX = "powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass"


class Result:
    def __init__(self, exited=0, stdout="", stderr=""):
        self.exited, self.stdout, self.stderr = exited, stdout, stderr


class FakeSFTP:
    def __init__(self, log):
        self.log, self.files = log, {}

    def normalize(self, path):
        assert path == "."
        return HOME

    def putfo(self, fileobj, path):
        self.log.append(("putfo", path))
        self.files[path] = fileobj.read()

    def put(self, local, path):
        self.log.append(("put", path))
        self.files[path] = Path(local).read_bytes()

    def remove(self, path):
        self.log.append(("remove", path))
        del self.files[path]


class FakeChannel:
    def __init__(self, log, output, code):
        self.log, self.output, self.code = log, output, code

    def exec_command(self, command):
        self.log.append(("exec", command))

    def makefile(self, mode):
        return io.StringIO(self.output)

    def shutdown_write(self):
        self.log.append(("shutdown_write",))

    def recv_exit_status(self):
        return self.code

    def close(self):
        pass


class FakeConnection:
    """What WindowsRunner uses of a fabric.Connection, recording it."""

    is_connected = True

    def __init__(self, result=None, held_output="", held_code=0):
        self.log = []
        self.result, self.held = result or Result(), (held_output, held_code)
        self._sftp = FakeSFTP(self.log)
        conn = self

        class Transport:
            def open_session(self):
                return FakeChannel(conn.log, *conn.held)

        class Client:
            def get_transport(self):
                return Transport()
        self.client = Client()

    def run(self, command, **kwargs):
        assert kwargs["in_stream"].read() == ""  # stdin: empty, closed at once
        self.log.append(("run", command))
        return self.result

    def sftp(self):
        return self._sftp


def host(**extra):
    keys = ", ".join(f"{k}: {v}" for k, v in extra.items())
    inv = parse(f"hosts:\n  pc: {{address: 192.168.1.12, os: windows{', ' + keys if keys else ''}}}\n")
    return inv.hosts["pc"]


def runner(conn: FakeConnection) -> WindowsRunner:
    r = WindowsRunner(host())
    r.conn = conn
    return r


def decode(command: str) -> str:
    head = PREFIX + " -EncodedCommand "
    assert command.startswith(head)
    return base64.b64decode(command[len(head):]).decode("utf-16-le")


# --- the command line ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("script", ["Write-Line 'hc-locked'", "$x = 'it’s “quoted” 😀'\nexit 3\n", ""])
def test_encoded_command_round_trips(script):
    assert base64.b64decode(ps.encoded_command(script)).decode("utf-16-le") == script
    assert decode(ps.powershell_command(script)) == script
    assert set(ps.encoded_command(script)) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")


def test_short_script_runs_inline_and_its_output_reads_as_posix():
    conn = FakeConnection(Result(0, "hc-started worker 4711\r\nhc-probe-done\r\n", ""))
    r = runner(conn).run("Write-Line 'hc-started worker 4711'")
    (what, command), = conn.log
    assert what == "run" and decode(command) == "Write-Line 'hc-started worker 4711'"
    assert len(command) <= ps.MAX_COMMAND_LINE
    assert r.stdout == "hc-started worker 4711\nhc-probe-done\n" and r.ok


def test_long_script_goes_over_sftp_and_runs_with_file():
    script = "# homecluster start: long\n" + "Write-Line 'x’'\n" * 400
    assert len(ps.powershell_command(script)) > ps.MAX_COMMAND_LINE
    conn = FakeConnection(Result(0, "ok\r\n"))
    seen = {}

    def run(command, **kwargs):  # what is on the host while the command runs
        seen.update(command=command, files=dict(conn._sftp.files))
        return Result(0, "ok\r\n")
    conn.run = run
    assert runner(conn).run(script).stdout == "ok\n"
    (what, path), (removed, again) = conn.log
    name = path.rsplit("/", 1)[1]
    assert what == "putfo" and path.startswith(HOME + "/hc-script-") and name.endswith(".ps1")
    assert seen["command"] == f"{PREFIX} -File {name}"  # the login directory is the profile: a bare name
    assert seen["files"][path] == ("\ufeff" + script).encode("utf-8")  # a BOM for Windows PowerShell 5.1
    assert (removed, again) == ("remove", path) and conn._sftp.files == {}


def test_file_command_takes_only_a_bare_name():
    with pytest.raises(ValueError):
        ps.powershell_file_command("C:/Users/Ann O'Neil/x.ps1")


def test_hold_reads_lines_and_release_closes_stdin():
    conn = FakeConnection(held_output="hc-busy homecluster up\r\nhc-locked\r\n", held_code=0)
    held = runner(conn).hold("Write-Line 'hc-locked'\n$null = [Console]::In.ReadLine()")
    assert held.readline() == "hc-busy homecluster up\n" and held.readline() == "hc-locked\n"
    assert held.lines == ["hc-busy homecluster up", "hc-locked"]
    assert ("shutdown_write",) not in conn.log
    assert held.release() == 0 and conn.log[-1] == ("shutdown_write",)
    assert decode(conn.log[0][1]).startswith("Write-Line 'hc-locked'")


def test_long_held_script_is_removed_at_release():
    conn = FakeConnection(held_output="hc-locked\n")
    held = runner(conn).hold("Write-Line 'a'\n" * 600)
    kinds = [entry[0] for entry in conn.log]
    assert kinds == ["putfo", "exec"] and conn.log[1][1].endswith(".ps1")
    held.release()
    assert conn.log[-1][0] == "remove" and conn._sftp.files == {}


def test_clixml_errors_become_text():
    """PowerShell#16678: -EncodedCommand without a terminal writes its error stream as CLIXML."""
    stderr = ('#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
              '<Obj S="progress" RefId="0"><TN RefId="0"><T>System.Management.Automation.PSCustomObject</T></TN>'
              '</Obj><S S="Error">changing a Windows service needs an administrator._x000D__x000A_</S>'
              '<S S="Error">At line:1 char:1 caf_x00E9_ _xD83D__xDE00__x000D__x000A_</S></Objs>')
    assert ps.clixml_text(stderr) == ("changing a Windows service needs an administrator.\r\nAt line:1 char:1 café "
                                      "\U0001F600\n")
    conn = FakeConnection(Result(1, "", stderr))
    r = runner(conn).run("throw 'x'")
    assert r.stderr.startswith("changing a Windows service needs an administrator.\n") and not r.ok
    assert "CLIXML" not in r.tail() and "administrator" in r.tail()
    assert ps.clixml_text("plain error\n") == "plain error\n"


# --- files --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path, sftp, windows", [
    ("~/.homecluster/home/pc/tls/worker.key", HOME + "/.homecluster/home/pc/tls/worker.key",
     "C:\\Users\\Ann O'Neil\\.homecluster\\home\\pc\\tls\\worker.key"),
    ("~", HOME, "C:\\Users\\Ann O'Neil"),
    ("D:/dask runs/x.pem", "/D:/dask runs/x.pem", "D:\\dask runs\\x.pem"),
    ("D:\\dask runs\\x.pem", "/D:/dask runs/x.pem", "D:\\dask runs\\x.pem"),
    ("C:", "/C:", "C:"),
])
def test_sftp_paths(path, sftp, windows):
    assert ps.sftp_path(path, HOME) == sftp
    assert ps.windows_path(sftp) == windows


def test_put_resolves_home_once(tmp_path):
    (tmp_path / "wheel.whl").write_bytes(b"wheel")
    conn = FakeConnection()
    r = runner(conn)
    r.put(tmp_path / "wheel.whl", "~/.homecluster/wheels/wheel.whl")
    r.put(tmp_path / "wheel.whl", "D:\\w.whl")
    assert conn.log == [("put", HOME + "/.homecluster/wheels/wheel.whl"), ("put", "/D:/w.whl")]


def test_put_private_copies_then_makes_private_then_renames(tmp_path):
    (tmp_path / "worker.key").write_bytes(b"KEY")
    conn = FakeConnection()
    runner(conn).put_private(tmp_path / "worker.key", "~/.homecluster/home/pc/tls/worker.key")
    (put, tmp), (run, command) = conn.log
    assert (put, tmp) == ("put", HOME + "/.homecluster/home/pc/tls/worker.key.tmp")
    script = decode(command)
    assert script == private_file_script("C:\\Users\\Ann O'Neil\\.homecluster\\home\\pc\\tls\\worker.key.tmp",
                                         "C:\\Users\\Ann O'Neil\\.homecluster\\home\\pc\\tls\\worker.key")
    assert "$Tmp = 'C:\\Users\\Ann O''Neil\\.homecluster\\home\\pc\\tls\\worker.key.tmp'" in script
    assert "icacls.exe $Tmp /inheritance:r /grant:r ('*' + $Me + ':F') '*S-1-5-18:F'" in script
    assert script.index("icacls") < script.index("[System.IO.File]::Move($Tmp, $Path)")
    assert powershell_errors(script) == []


def test_put_private_failure_is_the_hosts(tmp_path):
    (tmp_path / "worker.key").write_bytes(b"KEY")
    conn = FakeConnection(Result(1, "icacls could not make C:\\x private (exit 5)\r\n"))
    with pytest.raises(HostError, match="pc: copying worker.key to ~/k failed: icacls could not make"):
        runner(conn).put_private(tmp_path / "worker.key", "~/k")


# --- connecting ---------------------------------------------------------------------------------------------

def test_runner_for_windows_hosts():
    assert type(runner_for(host())) is WindowsRunner
    linux = parse("hosts:\n  nas: {address: 192.168.1.2}\n").hosts["nas"]
    assert type(runner_for(linux)) is SSHRunner
    assert WindowsRunner.open is SSHRunner.open  # the host-key rules are SSHRunner's, unchanged


def test_connection_refused_says_how_to_enable_openssh(tmp_path, monkeypatch):
    known = tmp_path / "known_hosts"
    known.write_text("")
    r = WindowsRunner(host(known_hosts=str(known)))
    refused = NoValidConnectionsError({("192.168.1.12", 22): ConnectionRefusedError(111, "refused")})
    monkeypatch.setattr(r.conn, "open", lambda: (_ for _ in ()).throw(refused))
    with pytest.raises(HostError) as e:
        r.open()
    assert str(e.value) == (
        "pc: cannot reach 192.168.1.12:22: connection refused: OpenSSH Server is not enabled on pc. Fix: in an "
        "administrator PowerShell there: Add-WindowsCapability -Online -Name OpenSSH.Server~~~~0.0.1.0; "
        "Start-Service sshd; Set-Service sshd -StartupType Automatic")


def test_other_connection_errors_are_ssh_runners(tmp_path):
    r, plain = WindowsRunner(host()), SSHRunner(host())
    for e in (socket.timeout(), paramiko.SSHException("Server '192.168.1.12' not found in known_hosts")):
        assert r._explain(e) == plain._explain(e)
    denied = r._explain(paramiko.AuthenticationException())
    assert denied.startswith(plain._explain(paramiko.AuthenticationException()))
    assert "C:\\ProgramData\\ssh\\administrators_authorized_keys" in denied
    missing = WindowsRunner(host(known_hosts=str(tmp_path / "none")))
    with pytest.raises(HostError, match="known_hosts file .* does not exist. Fix: homecluster trust pc"):
        missing.open()
