"""NSSM on Windows: per role a PowerShell installer and uninstaller of the service `homecluster-<cluster>-<role>`,
from windows/install-service.ps1 and windows/uninstall-service.ps1 (both include windows/nssm-common.ps1).

Quoting, twice: every nssm argument is quoted for Windows (the rules of CommandLineToArgvW and the C runtime,
which nssm.exe and python.exe both parse their command lines with), and AppParameters, one such argument, holds
the dask command line quoted the same way. The command line goes into the script as a PowerShell single-quoted
literal and reaches nssm.exe verbatim (Start-Process -ArgumentList with one string).

~ in the inventory (the default run_directory is ~/.homecluster) is the profile of the user who runs the
installer, `$UserHome` in the script, taken when it runs: the service itself runs as LocalSystem, whose own
profile is elsewhere. A Windows path holds no double quote and does not end in a backslash, so $UserHome needs no
escaping inside quotes; an argument that holds it is always quoted (it may hold spaces).
"""

from __future__ import annotations

from homecluster.core.spec import ProcessSpec
from homecluster.inventory import Host
from homecluster.services import templates
# HOME stands for $UserHome until the PowerShell text is made (no inventory value holds a NUL byte)
from homecluster.shell.windows import HOME, command_line, ps_literal, quote_arg
from homecluster.services.common import (RESTART_DELAY, ROTATE_BYTES, describe, env_is_home, environment, is_home,
                                         log_path)

INSTALL, UNINSTALL, COMMON = "windows/install-service.ps1", "windows/uninstall-service.ps1", "windows/nssm-common.ps1"


def service_name(cluster: str, role: str) -> str:
    return f"homecluster-{cluster}-{role}"


def file_names(cluster: str, role: str) -> tuple[str, str]:
    name = service_name(cluster, role)
    return f"install-{name}.ps1", f"uninstall-{name}.ps1"


def win_path(p: str) -> str:
    """A path as Windows writes it: backslashes, a leading ~ as the installing user's profile."""
    if is_home(p):
        return HOME + p[1:].replace("/", "\\")
    return p.replace("/", "\\")


def win_arg(a: str) -> str:
    """A command-line argument: only a leading ~ changes (as the process backend expands it on POSIX)."""
    return win_path(a) if is_home(a) else a


def ps_expr(text: str) -> str:
    """A PowerShell expression for a text that may hold HOME: literals joined with $UserHome, in parentheses
    (so it is one argument of a command)."""
    if HOME not in text:
        return ps_literal(text)
    pieces = []
    for i, part in enumerate(text.split(HOME)):
        pieces += (["$UserHome"] if i else []) + ([ps_literal(part)] if part else [])
    return "(" + " + ".join(pieces) + ")"


def _values(proc: ProcessSpec, cluster: str, host: Host) -> dict[str, str]:
    name = service_name(cluster, proc.role)
    common = templates.render(COMMON, {
        "nssm": ps_expr(win_path(host.nssm)) if host.nssm else ps_literal("nssm"),
        "host": ps_literal(proc.host),
    })
    return {"summary": describe(proc, cluster), "service": name, "service_name": ps_literal(name),
            "common": common.rstrip("\n")}


def install_script(proc: ProcessSpec, cluster: str, host: Host) -> str:
    """The PowerShell script that installs (or replaces) and starts the service of one process."""
    rdir, log = win_path(proc.run_dir), win_path(log_path(proc))
    env = [f"{k}={win_path(v) if env_is_home(v) else v}" for k, v in environment(proc, cluster)]
    what = f"homecluster {cluster} {proc.role} ({proc.host})"
    return templates.render(INSTALL, {
        **_values(proc, cluster, host),
        "host": ps_literal(proc.host),
        "run_dir": ps_expr(rdir),
        "application": ps_expr(win_path(proc.argv[0])),
        "app_directory": ps_expr(quote_arg(rdir)),
        "app_parameters": ps_expr(quote_arg(command_line([win_arg(a) for a in proc.argv[1:]]))),
        "app_environment_extra": ps_expr(command_line(env)),
        "log": ps_expr(quote_arg(log)),
        "log_path": ps_expr(log),
        "rotate_bytes": str(ROTATE_BYTES),
        "restart_delay_ms": str(RESTART_DELAY * 1000),
        "display_name": ps_expr(quote_arg(what)),
        "description": ps_expr(quote_arg(f"Dask {proc.role} of the homecluster cluster {cluster} on {proc.host}, "
                                         "started with Windows and restarted whenever it exits, by NSSM")),
    })


def uninstall_script(proc: ProcessSpec, cluster: str, host: Host) -> str:
    """The PowerShell script that stops and removes the service of one process."""
    return templates.render(UNINSTALL, _values(proc, cluster, host))
