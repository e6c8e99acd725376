"""Windows' quoting: command-line arguments as CommandLineToArgvW (and the C runtime) split them, which nssm.exe
and python.exe both use, and PowerShell string literals. Pure."""

from __future__ import annotations

_NEEDS_QUOTES = set(' \t\n\v"')
_PS_QUOTES = "'\u2018\u2019\u201a\u201b"  # PowerShell ends a single-quoted string at any of these
HOME = "\x00"  # the installing user's profile, filled in by PowerShell (services/nssm.py): always quoted


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
