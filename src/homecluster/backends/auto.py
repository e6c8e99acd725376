"""`supervisor: auto` (the default) on Linux and macOS: the host's service manager where homecluster can use it
(systemd when it is PID 1 and answers, launchd with a login or as root), homecluster's own process supervisor
elsewhere (a container, WSL without systemd, sshd without PAM).

The choice is made on the host, by the scripts themselves: each one checks the service manager
(`usable_check`) and runs the service backend's script or the process backend's. So `--dry-run` prints exactly
what runs, and a host that changes (systemd switched on in WSL) needs no change in the inventory. Every start
sweeps what still runs of the role the other way, and every stop stops both: moving between the two leaves no
process behind.
"""

from __future__ import annotations

from homecluster.backends.process import ProcessBackend, _FUNCTIONS, _header, _lock_lines
from homecluster.backends.service import ServiceBackend
from homecluster.core.spec import ProcessSpec
from homecluster.shell.posix import shell_path


class AutoBackend(ProcessBackend):
    """The service manager's backend where it can be used on the host, else the process backend."""

    def __init__(self, runner, host, cluster: str, run_dir: str, service: ServiceBackend):
        super().__init__(runner, host, cluster, run_dir)
        self.service = service

    def probe_body(self) -> str:
        return self.service.either(self.service.managed_probe(),
                                   'echo "hc-manager process $hc_why"\n' + super().probe_body())

    def _states(self, output: str, exit_code: int, tail: str):
        states = super()._states(output, exit_code, tail)
        self.service.supervision = self.supervision  # the home directory its files name
        return states

    def start_script(self, proc: ProcessSpec) -> str:
        return "\n".join([
            _header("start", f"the {proc.role} of cluster {self.cluster} on {proc.host}: with "
                    f"{self.service.manager} where it can be used here, else supervised"),
            self.service.either(self.service.start_script(proc), super().start_script(proc)),
        ])

    def stop_script(self, role: str, lock_for: str | None = None) -> str:
        where = _lock_lines(self.run_dir, lock_for) if lock_for else [f"D={shell_path(self.run_dir)}"]
        return "\n".join([
            _header("stop", f"the {role} of cluster {self.cluster} on {self.host.name}, kept by "
                    f"{self.service.manager} or supervised" + (", under the lock" if lock_for else "")),
            *where,
            _FUNCTIONS,
            self.service.either(self.service.stop_script(role), ":"),
            super().stop_script(role),
        ])
