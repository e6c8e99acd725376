"""homecluster reads memory sizes and durations exactly as dask does (its own parsers spare the CLI the import
of dask): compared with dask.utils on the README's examples and on generated text."""

from __future__ import annotations

import pytest
from dask.utils import parse_bytes as dask_bytes
from dask.utils import parse_timedelta as dask_seconds
from hypothesis import given, settings
from hypothesis import strategies as st

from homecluster.inventory.units import parse_bytes, parse_seconds

JUNK = (ValueError, KeyError, IndexError, OverflowError, TypeError)


def outcome(parse, text):
    try:
        return ("ok", float(parse(text)))
    except JUNK:
        return ("junk",)


@pytest.mark.parametrize("text", ["4GB", "1.5GiB", "512 MB", "1e6", "100", "MB", "5 foos", "", " ", "1kib", "-3k",
                                  "2.5e3 ki", "inf", "nan GB", "1_000", "µB", "0x10"])
def test_sizes_read_as_dask_reads_them(text):
    assert outcome(parse_bytes, text) == outcome(dask_bytes, text)


@pytest.mark.parametrize("text", ["120", "2min", "2 minutes", "300ms", "1.5h", "1w", "3 SECONDS", "s", "", "5 foo",
                                  "-2s", "1e3us", "inf", "2 Ms", "10 µs"])
def test_durations_read_as_dask_reads_them(text):
    assert outcome(parse_seconds, text) == outcome(dask_seconds, text)


UNITISH = st.text(alphabet="0123456789.eE+- _kKmMgGtTpPiIbBsSuUnhHdDwWinoecdrµx", max_size=12)


@settings(max_examples=3000, deadline=None)
@given(UNITISH)
def test_generated_text_agrees(text):
    assert outcome(parse_bytes, text) == outcome(dask_bytes, text)
    assert outcome(parse_seconds, text) == outcome(dask_seconds, text)
