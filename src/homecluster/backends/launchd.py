"""The launchd backend (macOS): each Dask process is a job, `org.homecluster.<cluster>.<role>` (services/launchd.py
renders its plist), loaded with `launchctl bootstrap`; launchd keeps it running (KeepAlive) and loads it at login
(a LaunchAgent, service_scope: user, the default) or at boot (a LaunchDaemon, service_scope: system, root).

Usable when launchctl answers for the domain: `gui/<uid>` needs the user logged in at the Mac (a LaunchAgent runs
only then); `system` needs root. No Mac runs here: the scripts are checked as sh and against recorded output
(tests/test_launchd_backend.py), the plist with plistlib (tests/test_services.py).
"""

from __future__ import annotations

import shlex

from homecluster.backends.process import ROLES, _FUNCTIONS, _header, _lock_lines, marker
from homecluster.backends.service import ServiceBackend
from homecluster.core.spec import TLS_DIR, ProcessSpec
from homecluster.services import launchd as jobs
from homecluster.services.render import home_of, user_of
from homecluster.shell.posix import shell_path

UNLOAD_WAIT_TENTHS = 100  # bootout returns before the job is gone; bootstrap of the same label fails until it is


def _field(name: str) -> str:
    """sh: one `name = value` line of `launchctl print` output (in $out)."""
    return f'$(echo "$out" | sed -n "s/^[[:space:]]*{name} = //p" | head -n 1)'


class LaunchdBackend(ServiceBackend):
    """Dask processes as launchd jobs on a Mac."""

    manager = "launchd"

    @property
    def domain(self) -> str:
        return 'gui/$(id -u)' if self.host.service_scope == "user" else "system"

    def target(self, role: str) -> str:
        return f"{self.domain}/{jobs.label(self.cluster, role)}"

    def usable_check(self) -> str:
        if self.host.service_scope == "user":
            other = ('elif ! launchctl print "gui/$(id -u)" >/dev/null 2>&1; then hc_why="$(id -un) is not logged in '
                     'at the Mac: a LaunchAgent runs only during a login (service_scope: system for a LaunchDaemon)"')
        else:
            other = 'elif [ "$(id -u)" != 0 ]; then hc_why="LaunchDaemons need root, and $(id -un) is not"'
        return "\n".join(["hc_why=", 'if ! command -v launchctl >/dev/null 2>&1; then hc_why="no launchctl here"',
                          other, "fi"])

    def service_probe_body(self) -> str:
        """For every role: the job's pid and state and how often launchd started it (`launchctl print`)."""
        return "\n".join([
            'echo "hc-now $(date +%s)"',
            f"A={shell_path(jobs.install_dir(self.host))}",
            f"for role in {' '.join(ROLES)}; do",
            f'  out=$(launchctl print "{self.domain}/{jobs.label(self.cluster, "$role")}" 2>/dev/null)',
            f"  pid={_field('pid')}; state={_field('state')}; runs={_field('runs')}",
            '  alive=0; [ -n "$out" ] && alive=1',  # loaded: launchd keeps it (KeepAlive)
            '  spec=$(cat "$D/$role.spec" 2>/dev/null)',
            '  echo "hc-probe $role pid=$pid alive=$alive spec=$spec"',
            '  run=false; [ "$state" = running ] && run=true',
            '  [ $alive = 1 ] && echo "hc-state $role {\\"running\\": $run, \\"restarts\\": $(( ${runs:-1} - 1 ))}"',
            f'  b=absent; [ -f "$A/{jobs.label(self.cluster, "$role")}.plist" ] && b=enabled',
            '  echo "hc-boot $role $b"',
            "done",
            "echo hc-probe-done",
        ])

    def _unload(self, role: str) -> list[str]:
        t = self.target(role)
        return [f'launchctl bootout "{t}" 2>/dev/null',
                f'i=0; while launchctl print "{t}" >/dev/null 2>&1 && [ $i -lt {UNLOAD_WAIT_TENTHS} ]; do sleep 0.1; '
                "i=$((i+1)); done"]

    def start_script(self, proc: ProcessSpec) -> str:
        """Write the plist, unload the job if loaded, sweep what else runs of the role, load and enable it."""
        role, t = proc.role, self.target(proc.role)
        home = self.home or home_of(self.host)
        text = jobs.plist(proc, self.cluster, self.host, home=home, user=user_of(self.host))
        plist = f'"$A/{jobs.file_name(self.cluster, role)}"'
        mark = shlex.quote(marker(self.cluster, proc.host, role))
        missing = f"no Python interpreter at {proc.argv[0]} on this host. Fix: homecluster setup, or set python: for it"
        return "\n".join([
            _header("start", f"the {role} of cluster {self.cluster} on {proc.host}, as launchd job "
                    f"{jobs.label(self.cluster, role)}"),
            _FUNCTIONS,
            f"D={shell_path(proc.run_dir)}",
            f"A={shell_path(jobs.install_dir(self.host))}",
            'mkdir -p "$D" "$A" || exit 1',
            'cd "$D" || exit 1',
            f"command -v {shell_path(proc.argv[0])} >/dev/null 2>&1 || {{ echo {shlex.quote(missing)} >&2; exit 127; }}",
            f"cat > {plist}.new <<'HC_PLIST_EOF'",
            text.rstrip("\n"),
            "HC_PLIST_EOF",
            f"mv -f {plist}.new {plist} || exit 1",
            *self._unload(role),
            f"left=$(hc_marked {mark})",
            f'[ -z "$left" ] || {{ kill -KILL $left 2>/dev/null; echo "hc-swept {role}" $left; }}',
            f"[ -f {role}.log ] && mv {role}.log {role}.log.1",
            f"echo {proc.fingerprint} > {role}.spec",
            f'launchctl bootstrap "{self.domain}" {plist} || exit 1',
            f'launchctl enable "{t}"',
            f'out=$(launchctl print "{t}" 2>/dev/null); echo "hc-started {role} {_field("pid")}"',
        ])

    def stop_script(self, role: str, lock_for: str | None = None) -> str:
        """Unload the job (launchd stops it), remove its plist, then kill whatever still carries the marker."""
        mark = shlex.quote(marker(self.cluster, self.host.name, role))
        where = _lock_lines(self.run_dir, lock_for) if lock_for else [f"D={shell_path(self.run_dir)}"]
        t = self.target(role)
        return "\n".join([
            _header("stop", f"the {role} of cluster {self.cluster} on {self.host.name}, launchd job "
                    f"{jobs.label(self.cluster, role)}" + (", under the lock" if lock_for else "")),
            *where,
            _FUNCTIONS,
            f"A={shell_path(jobs.install_dir(self.host))}",
            f'out=$(launchctl print "{t}" 2>/dev/null); pid={_field("pid")}; killed=0',
            'if [ -n "$out" ]; then',
            *("  " + line for line in self._unload(role)),
            f'  echo "hc-stopped {role} ${{pid:-0}}"',
            "fi",
            f'rm -f "$A/{jobs.file_name(self.cluster, role)}"',
            f"left=$(hc_marked {mark})",
            '[ -z "$left" ] || { kill -KILL $left 2>/dev/null; killed=$(echo $left | wc -w); }',
            f'[ $killed = 0 ] || echo "hc-killed {role} $killed"',
            f'rm -f "$D/{role}.spec" "$D/{TLS_DIR}/{role}.key" "$D/{TLS_DIR}/{role}.pem"',
        ])
