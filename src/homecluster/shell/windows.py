"""Windows' quoting: command-line arguments as CommandLineToArgvW (and the C runtime) split them, which nssm.exe
and python.exe both use, and PowerShell string literals; and how a PowerShell script reaches a host over its
OpenSSH server (the command line that runs it, SFTP paths, the error stream it writes). Pure."""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET

_NEEDS_QUOTES = set(' \t\n\v"')
_PS_QUOTES = "'\u2018\u2019\u201a\u201b"  # PowerShell ends a single-quoted string at any of these
HOME = "\x00"  # the installing user's profile, filled in by PowerShell (services/nssm.py): always quoted
SYSTEM_SID = "S-1-5-18"  # LocalSystem, the account NSSM services run as (services/nssm.py)

# -EncodedCommand takes the script as base64 of its UTF-16LE bytes: no quoting, whether the host's OpenSSH runs
# the command with cmd.exe (its default shell) or PowerShell (DefaultShell set in HKLM:\SOFTWARE\OpenSSH).
POWERSHELL = "powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass"
# cmd.exe refuses a longer command line (KB830473); Win32-OpenSSH has the same MAX_CMD_LEN 8191 for commands.
MAX_COMMAND_LINE = 8191
_DRIVE = re.compile(r"[A-Za-z]:(/|$)")


def quote_arg(arg: str) -> str:
    """One argument quoted so that CommandLineToArgvW (and the C runtime) gives it back unchanged: inside
    quotes, backslashes are literal unless a run of them precedes a double quote; then they are doubled, and
    the quote escaped."""
    if arg and not _NEEDS_QUOTES.intersection(arg) and HOME not in arg:
        return arg
    out, backslashes = ['"'], 0
    for c in arg:
        if c == "\\":
            backslashes += 1
            continue
        out.append("\\" * (backslashes * 2 + 1) + '"' if c == '"' else "\\" * backslashes + c)
        backslashes = 0
    out.append("\\" * (backslashes * 2) + '"')
    return "".join(out)


def command_line(args: list[str]) -> str:
    return " ".join(quote_arg(a) for a in args)


def ps_literal(text: str) -> str:
    """A PowerShell single-quoted string: nothing is expanded in it; each kind of single quote is doubled."""
    for q in _PS_QUOTES:
        text = text.replace(q, q + q)
    return f"'{text}'"


def encoded_command(script: str) -> str:
    """The script as powershell.exe -EncodedCommand takes it: base64 of its UTF-16LE bytes."""
    return base64.b64encode(script.encode("utf-16-le")).decode("ascii")


def powershell_command(script: str) -> str:
    """The command line that runs a PowerShell script given inline."""
    return f"{POWERSHELL} -EncodedCommand {encoded_command(script)}"


def powershell_file_command(name: str) -> str:
    """The command line that runs a script file in the login directory (a bare name: nothing to quote)."""
    if not re.fullmatch(r"[\w.-]+\.ps1", name):
        raise ValueError(f"not a bare script file name: {name!r}")
    return f"{POWERSHELL} -File {name}"


def sftp_path(path: str, home: str) -> str:
    """A path as Win32-OpenSSH's SFTP server takes it: forward slashes, a drive as `/C:/...` (the form its
    realpath answers, Win32-OpenSSH#476; its resolved_path drops the '/' before a drive letter, win32compat/
    misc_internal.h), `~` as the user's profile `home` (in that form: what SFTP's starting directory, the profile,
    normalizes to)."""
    p = path.replace("\\", "/")
    if p == "~" or p.startswith("~/"):
        return home.rstrip("/") + p[1:]
    return "/" + p if _DRIVE.match(p) else p


def windows_path(path: str) -> str:
    """An SFTP path of a Windows host (`/C:/Users/x`) as Windows writes it (`C:\\Users\\x`)."""
    p = path[1:] if path.startswith("/") and _DRIVE.match(path[1:]) else path
    return p.replace("/", "\\")


def clixml_text(stderr: str) -> str:
    """A PowerShell's stderr as text. Windows PowerShell started with -EncodedCommand and redirected output writes
    its error stream as CLIXML (`#< CLIXML` then <Objs>, PowerShell#16678): its Error strings, with the _xHHHH_
    escapes of UTF-16 code units (line ends among them) decoded; other text stays as it is."""
    if "#< CLIXML" not in stderr:
        return stderr
    out = []
    for part in re.split(r"(<Objs\b.*?</Objs>)", stderr, flags=re.S):
        if not part.startswith("<Objs"):
            out.append(part.replace("#< CLIXML", ""))
            continue
        try:
            root = ET.fromstring(part)
        except ET.ParseError:
            out.append(part)
            continue
        out += [_unescape(e.text or "") for e in root.iter() if e.tag.split("}")[-1] == "S" and e.get("S") == "Error"]
    text = "".join(out).strip()
    return text + "\n" if text else ""


def _unescape(text: str) -> str:
    units = re.sub(r"_x([0-9A-Fa-f]{4})_", lambda m: chr(int(m.group(1), 16)), text)
    return units.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")  # surrogate pairs joined
