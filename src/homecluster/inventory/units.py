"""Memory sizes and durations read exactly as dask reads them (dask.utils.parse_bytes and parse_timedelta:
tests/test_units.py checks that both agree on every input), without importing dask: that costs ~0.12 s at
every start of the CLI, and most commands never need dask itself."""

from __future__ import annotations

_DECIMAL = {"k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15}
_BINARY = {"ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40, "pi": 2**50}
BYTE_UNITS = {"": 1, "b": 1, **_DECIMAL, **{k + "b": v for k, v in _DECIMAL.items()},
              **_BINARY, **{k + "b": v for k, v in _BINARY.items()}}
_TIME = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800, "millisecond": 1e-3,
         "microsecond": 1e-6, "nanosecond": 1e-9}
TIME_UNITS = {"s": 1, "ms": 1e-3, "us": 1e-6, "ns": 1e-9, "m": 60, "h": 3600, "d": 86400, "w": 604800,
              **_TIME, **{k + "s": v for k, v in _TIME.items()}}


def _split(s: str) -> tuple[str, str]:
    """The number and the unit (the trailing letters) of a text without spaces."""
    i = len(s)
    while i > 0 and s[i - 1].isalpha():
        i -= 1
    return s[:i], s[i:]


def parse_bytes(text: str) -> int:
    """'4GB' -> 4000000000, '1.5GiB', '512 MB', '1e6': bytes. ValueError or KeyError on anything else."""
    s = text.replace(" ", "")
    if not any(c.isdigit() for c in s):
        s = "1" + s
    number, unit = _split(s)
    return int(float(number) * BYTE_UNITS[unit.lower()])


def parse_seconds(text: str) -> float:
    """'120' -> 120, '2min'... as dask's parse_timedelta: seconds. ValueError, KeyError or IndexError on junk."""
    s = text.replace(" ", "")
    if not s[0].isdigit():
        s = "1" + s
    number, unit = _split(s)
    seconds = float(number) * TIME_UNITS[(unit or "seconds").lower()]
    int(seconds)  # as dask (it makes whole seconds an int): infinite and NaN durations are refused
    return seconds
