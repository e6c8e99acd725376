"""systemd: one unit per cluster and role, `homecluster-<cluster>-<role>.service`, from
cluster/systemd/homecluster.service.

A user unit (service_scope: user, the default) goes to ~/.config/systemd/user/ and starts at boot once lingering
is on (`loginctl enable-linger USER`); a system unit goes to /etc/systemd/system/ and runs as the host's user.
Paths the inventory writes with ~ become `%h` in a user unit (systemd's own home specifier) and the home directory
given in a system unit (where %h would be root's).
"""

from __future__ import annotations

import re

from homecluster.core.spec import ProcessSpec
from homecluster.inventory import Host
from homecluster.services import templates
from homecluster.services.common import (RESTART_DELAY, STOP_TIMEOUT, describe, env_is_home, environment, is_home,
                                         log_path, memory_max)

TEMPLATE = "cluster/systemd/homecluster.service"
USER_HOME = "%h"
_PLAIN = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")


def unit_name(cluster: str, role: str) -> str:
    return f"homecluster-{cluster}-{role}.service"


def install_dir(host: Host) -> str:
    return "~/.config/systemd/user" if host.service_scope == "user" else "/etc/systemd/system"


def specifiers(text: str) -> str:
    """A literal text in a unit file: `%` starts a specifier, so it is doubled."""
    return text.replace("%", "%%")


def path(p: str, home: str) -> str:
    """A path for a unit file: a leading ~ becomes `home` (the %h specifier, or an absolute directory)."""
    if is_home(p):
        head = home if home == USER_HOME else specifiers(home)
        return head + specifiers(p[1:])
    return specifiers(p)


def exec_word(word: str) -> str:
    """One word of ExecStart= (already through `path`/`specifiers`): quoted when it holds anything but plain
    characters; `$` is doubled (systemd expands $VAR there), backslashes and double quotes escaped."""
    word = word.replace("$", "$$")
    if _PLAIN.fullmatch(word) and word != ";":
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def exec_start(argv: tuple[str, ...], home: str) -> str:
    return " ".join(exec_word(path(a, home)) for a in argv)


def environment_line(key: str, value: str) -> str:
    """`Environment="KEY=VALUE"`, quoted as systemd reads it (C escapes, specifiers)."""
    text = f"{key}={value}".replace("\\", "\\\\").replace('"', '\\"')
    return f'Environment="{text}"'


def unit(proc: ProcessSpec, cluster: str, host: Host, home: str = USER_HOME, user: str | None = None) -> str:
    """The unit file text of one process. `home`: what ~ is (%h in a user unit); `user`: User= of a system
    unit (None or root: no User=), the account to enable lingering for in a user unit's install note."""
    system = host.service_scope == "system"
    rdir, log = path(proc.run_dir, home), path(log_path(proc), home)
    env_lines = [environment_line(k, path(v, home) if env_is_home(v) else specifiers(v))
                 for k, v in environment(proc, cluster)]
    limit = memory_max(proc, host)
    name = unit_name(cluster, proc.role)
    if system:
        note = (f"# Install: copy it to /etc/systemd/system/, then: systemctl daemon-reload; "
                f"systemctl enable --now {name}")
    else:
        note = (f"# Install: copy it to ~/.config/systemd/user/, then: systemctl --user daemon-reload; "
                f"systemctl --user enable --now {name}\n# and, so that it starts at boot without a login: "
                f"loginctl enable-linger {user or '$USER'}")
    return templates.render(TEMPLATE, {
        "summary": describe(proc, cluster),
        "install_note": note,
        "description": specifiers(f"homecluster {cluster}: dask {proc.role} on {proc.host}"),
        # the user manager has no network-online.target; a user unit's worker retries until the network is up
        "network": "After=network-online.target\nWants=network-online.target" if system else "",
        "user": f"User={user}" if system and user and user != "root" else "",
        "working_directory": rdir,
        "environment": "\n".join(env_lines),
        "exec_start": exec_start(proc.argv, home),
        "restart_sec": f"{RESTART_DELAY:g}",
        "timeout_stop_sec": f"{STOP_TIMEOUT:g}",
        "log": log,
        "memory_max": f"MemoryMax={limit}" if limit else "",
        "wanted_by": "multi-user.target" if system else "default.target",
    })
