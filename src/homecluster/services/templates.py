"""The service templates and their renderer.

One source: the templates are the repository's top-level `cluster/` (systemd, launchd) and `windows/` (NSSM)
folders; `src/homecluster/templates/{cluster,windows}` are symlinks to them, which setuptools follows, so an
editable install reads the folders themselves and a wheel carries copies under homecluster/templates/.

Placeholders are `{{name}}` (PowerShell takes `$`). The renderer is strict: a placeholder without a value, a value
the template does not use, a value that is not text and a stray `{{` or `}}` are all errors (TemplateError: the
template and the code disagree, a bug). A placeholder alone on its line whose value is empty drops the line.
"""

from __future__ import annotations

import plistlib
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent / "templates"
PLACEHOLDER = re.compile(r"\{\{([a-z][a-z0-9_]*)\}\}")
_STRAY = re.compile(r"\{\{|\}\}")


class TemplateError(Exception):
    """A template and the values rendered into it disagree (an internal error, not the user's)."""


def path(name: str) -> Path:
    """A template by its path under the repository root, such as `cluster/systemd/homecluster.service`."""
    p = ROOT / name
    if not p.is_file():
        raise TemplateError(f"template {name} is missing from {ROOT} (the package was built without its "
                            "templates: see cluster/README.md)")
    return p


def read(name: str) -> str:
    return path(name).read_text(encoding="utf-8")


def fill(text: str, values: dict[str, str], name: str = "template") -> str:
    """`text` with every `{{key}}` replaced by `values[key]` (see the module's rules)."""
    used: set[str] = set()
    out = []
    for number, line in enumerate(text.splitlines(keepends=True), 1):
        keys = PLACEHOLDER.findall(line)
        if _STRAY.search(PLACEHOLDER.sub("", line)):
            raise TemplateError(f"{name}:{number}: a {{{{ or }}}} that is not a placeholder")
        for key in keys:
            if key not in values:
                raise TemplateError(f"{name}:{number}: no value for {{{{{key}}}}}")
            if not isinstance(values[key], str):
                raise TemplateError(f"{name}:{number}: the value of {{{{{key}}}}} is not text")
            used.add(key)
        if len(keys) == 1 and line.strip() == f"{{{{{keys[0]}}}}}" and values[keys[0]] == "":
            continue
        out.append(PLACEHOLDER.sub(lambda m: values[m.group(1)], line))
    _check_unused(values, used, name)
    return "".join(out)


def render(name: str, values: dict[str, str]) -> str:
    """The template `name` filled with `values`."""
    return fill(read(name), values, name)


def fill_plist(data: Any, values: dict[str, Any], name: str = "plist") -> Any:
    """A loaded plist with its placeholders filled: a string that is exactly `{{key}}` takes the value whole
    (any plist type; None drops the dictionary key or list item), other strings take text values."""
    used: set[str] = set()

    def walk(v: Any) -> Any:
        if isinstance(v, dict):
            items = ((k, walk(x)) for k, x in v.items())
            return {k: x for k, x in items if x is not None}
        if isinstance(v, list):
            return [x for x in map(walk, v) if x is not None]
        if not isinstance(v, str):
            return v
        whole = PLACEHOLDER.fullmatch(v)
        if whole:
            return _value(whole.group(1), values, used, name, whole=True)
        if _STRAY.search(PLACEHOLDER.sub("", v)):
            raise TemplateError(f"{name}: a {{{{ or }}}} that is not a placeholder in {v!r}")
        return PLACEHOLDER.sub(lambda m: _value(m.group(1), values, used, name, whole=False), v)

    filled = walk(data)
    _check_unused(values, used, name)
    return filled


def render_plist(name: str, values: dict[str, Any]) -> str:
    """The plist template `name` filled with `values`, as XML text (keys in the template's order)."""
    with path(name).open("rb") as f:
        data = plistlib.load(f)
    return plistlib.dumps(fill_plist(data, values, name), sort_keys=False).decode("utf-8")


def _value(key: str, values: dict[str, Any], used: set[str], name: str, whole: bool) -> Any:
    if key not in values:
        raise TemplateError(f"{name}: no value for {{{{{key}}}}}")
    if not whole and not isinstance(values[key], str):
        raise TemplateError(f"{name}: {{{{{key}}}}} is inside a text, its value must be text")
    used.add(key)
    return values[key]


def _check_unused(values: dict, used: set[str], name: str) -> None:
    unused = sorted(set(values) - used)
    if unused:
        raise TemplateError(f"{name}: values the template does not use: {', '.join(unused)}")
