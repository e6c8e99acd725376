"""Validators the tests share. PowerShell: the tree-sitter grammar (PyPI tree-sitter, tree-sitter-powershell;
there is no PowerShell for Debian here), a script parses clean when its tree has no ERROR and no missing node.
Known false alarm: an unquoted mixed list such as `-LocalPort 9000-9099,9100-9199`."""

from __future__ import annotations

import functools
import os

import pytest


@functools.lru_cache(maxsize=None)
def _powershell():
    try:
        import tree_sitter
        import tree_sitter_powershell
    except ImportError as e:
        reason = f"the PowerShell grammar is not installed ({e}): pip install tree-sitter tree-sitter-powershell"
        if os.environ.get("CI"):  # tests/run installs it: its absence there is a failure
            pytest.fail(reason + " (CI must have it: see tests/run)")
        pytest.skip(reason)
    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_powershell.language()))


def powershell_errors(text: str) -> list[str]:
    """Where the PowerShell grammar finds an ERROR or a missing node in `text`, one line each; [] when clean."""
    data = text.encode("utf-8")
    lines = data.splitlines()
    problems, stack = [], [_powershell().parse(data).root_node]
    while stack:
        node = stack.pop()
        if node.type == "ERROR" or node.is_missing:
            row = node.start_point[0]
            source = lines[row].decode("utf-8", "replace") if row < len(lines) else ""
            problems.append(f"line {row + 1}: {'missing ' if node.is_missing else ''}{node.type} {source[:100]!r}")
        stack.extend(node.children)
    return problems
