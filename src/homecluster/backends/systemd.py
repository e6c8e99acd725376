"""The systemd backend: each Dask process is a unit, `homecluster-<cluster>-<role>.service` (services/systemd.py
renders it), and systemd keeps it running (Restart=always) and starts it at boot. A user unit by default
(`systemctl --user`, lingering switched on so it starts without a login); `service_scope: system` for a system
unit (root over SSH).

The lock, the run directory, the log (`<role>.log`, appended by the unit), the fingerprint file and the ownership
marker are the process backend's (this class is one, with other scripts): `up`, `down`, `status` and `logs` do
not see a difference. A probe reads the unit's MainPID, state and NRestarts; it first checks that systemd can be
used here (`usable_check`): PID 1 is systemd, and a user manager answers (user units) or we are root (system
units). With `supervisor: systemd` a host where it cannot is an error that says why; `supervisor: auto`
(backends/auto.py) runs homecluster's own supervisor there instead.
"""

from __future__ import annotations

import shlex

from homecluster.backends.process import ROLES, _FUNCTIONS, _header, _lock_lines, marker
from homecluster.core.spec import TLS_DIR, ProcessSpec
from homecluster.backends.service import ServiceBackend
from homecluster.services import systemd as units
from homecluster.services.render import home_of, user_of
from homecluster.shell.posix import shell_path

ACTIVE = "active|activating|reloading|deactivating"


class SystemdBackend(ServiceBackend):
    """Dask processes as systemd units on a Linux host."""

    manager = "systemd"

    @property
    def systemctl(self) -> str:
        return "systemctl --user" if self.host.service_scope == "user" else "systemctl"

    def unit(self, role: str) -> str:
        return units.unit_name(self.cluster, role)

    def usable_check(self) -> str:
        if self.host.service_scope == "user":
            other = ('elif ! systemctl --user show-environment >/dev/null 2>&1; then hc_why="no systemd user manager '
                     'answers for $(id -un) in this session (XDG_RUNTIME_DIR is ${XDG_RUNTIME_DIR:-unset})"')
        else:
            other = 'elif [ "$(id -u)" != 0 ]; then hc_why="system units need root, and $(id -un) is not"'
        return "\n".join(["hc_why=", 'if [ ! -d /run/systemd/system ]; then hc_why="PID 1 is not systemd"', other,
                          "fi"])

    def service_probe_body(self) -> str:
        """For every role: the unit's MainPID, whether it is active (or restarting), the fingerprint it was
        started with, and its restarts, in the process backend's hc-probe/hc-state lines."""
        return "\n".join([
            'echo "hc-now $(date +%s)"',
            f"for role in {' '.join(ROLES)}; do",
            f'  u=homecluster-{self.cluster}-$role.service',
            f'  out=$({self.systemctl} show -p MainPID -p ActiveState -p SubState -p NRestarts "$u" 2>/dev/null)',
            '  pid=$(echo "$out" | sed -n "s/^MainPID=//p"); [ "$pid" = 0 ] && pid=',
            '  act=$(echo "$out" | sed -n "s/^ActiveState=//p"); sub=$(echo "$out" | sed -n "s/^SubState=//p")',
            '  n=$(echo "$out" | sed -n "s/^NRestarts=//p")',
            f'  alive=0; case "$act" in {ACTIVE}) alive=1;; esac',
            '  spec=$(cat "$D/$role.spec" 2>/dev/null)',
            '  echo "hc-probe $role pid=$pid alive=$alive spec=$spec"',
            '  run=false; [ "$sub" = running ] && run=true',
            '  [ $alive = 1 ] && echo "hc-state $role {\\"running\\": $run, \\"restarts\\": ${n:-0}}"',
            f'  b=$({self.systemctl} is-enabled "$u" 2>/dev/null); echo "hc-boot $role ${{b:-absent}}"',
            "done",
            *(['echo "hc-linger $(loginctl show-user "$(id -un)" -p Linger --value 2>/dev/null)"']
              if self.host.service_scope == "user" else []),
            "echo hc-probe-done",
        ])

    def start_script(self, proc: ProcessSpec) -> str:
        """Write the unit, enable and (re)start it; lingering on for a user unit, so it starts at boot."""
        role, name, sctl = proc.role, self.unit(proc.role), self.systemctl
        if self.host.service_scope == "user":
            text = units.unit(proc, self.cluster, self.host)
        else:
            text = units.unit(proc, self.cluster, self.host, home=self.home or home_of(self.host),
                              user=user_of(self.host))
        mark = shlex.quote(marker(self.cluster, proc.host, role))
        linger = ['loginctl enable-linger "$(id -un)" 2>/dev/null || echo "hc-note no lingering: the unit '
                  'starts at the next login, not at boot"'] if self.host.service_scope == "user" else []
        missing = f"no Python interpreter at {proc.argv[0]} on this host. Fix: homecluster setup, or set python: for it"
        return "\n".join([
            _header("start", f"the {role} of cluster {self.cluster} on {proc.host}, as systemd unit {name}"),
            f"D={shell_path(proc.run_dir)}",
            f"U={shell_path(units.install_dir(self.host))}",
            'mkdir -p "$D" "$U" || exit 1',
            'cd "$D" || exit 1',
            f"command -v {shell_path(proc.argv[0])} >/dev/null 2>&1 || {{ echo {shlex.quote(missing)} >&2; exit 127; }}",
            f"cat > \"$U/{name}.new\" <<'HC_UNIT_EOF'",
            text.rstrip("\n"),
            "HC_UNIT_EOF",
            f'mv -f "$U/{name}.new" "$U/{name}" || exit 1',
            f"{sctl} daemon-reload || exit 1",
            f"{sctl} stop {name} 2>/dev/null",
            _FUNCTIONS,  # what still runs of the role now is not the unit's: a torn up, the process supervisor's
            f"left=$(hc_marked {mark})",
            f'[ -z "$left" ] || {{ kill -KILL $left 2>/dev/null; echo "hc-swept {role}" $left; }}',
            f"[ -f {role}.log ] && mv {role}.log {role}.log.1",
            f"echo {proc.fingerprint} > {role}.spec",
            f"{sctl} enable {name} >/dev/null 2>&1 || exit 1",
            f"{sctl} start {name} || exit 1",
            *linger,
            f'echo "hc-started {role} $({sctl} show -p MainPID --value {name})"',
        ])

    def stop_script(self, role: str, lock_for: str | None = None) -> str:
        """Disable and stop the unit (systemd gives it TimeoutStopSec, then kills its cgroup), remove it, then
        kill whatever still carries the role's marker."""
        name, sctl, mark = self.unit(role), self.systemctl, shlex.quote(marker(self.cluster, self.host.name, role))
        where = _lock_lines(self.run_dir, lock_for) if lock_for else [f"D={shell_path(self.run_dir)}"]
        return "\n".join([
            _header("stop", f"the {role} of cluster {self.cluster} on {self.host.name}, systemd unit {name}"
                    + (", under the lock" if lock_for else "")),
            *where,
            _FUNCTIONS,
            f"U={shell_path(units.install_dir(self.host))}",
            f"pid=$({sctl} show -p MainPID --value {name} 2>/dev/null); killed=0",
            f'if [ -f "$U/{name}" ] || {sctl} is-active -q {name} 2>/dev/null; then',
            f"  {sctl} disable --now {name} >/dev/null 2>&1",
            f'  rm -f "$U/{name}"; {sctl} daemon-reload',
            f'  echo "hc-stopped {role} ${{pid:-0}}"',
            "fi",
            f"left=$(hc_marked {mark})",
            '[ -z "$left" ] || { kill -KILL $left 2>/dev/null; killed=$(echo $left | wc -w); }',
            f'[ $killed = 0 ] || echo "hc-killed {role} $killed"',
            f'rm -f "$D/{role}.spec" "$D/{TLS_DIR}/{role}.key" "$D/{TLS_DIR}/{role}.pem"',
        ])
