"""What the service-manager backends share (systemd.py, launchd.py): a probe that first says whether the manager
can be used on the host, and the host's home directory (for files that must name it).

A service backend is a process backend with other scripts: the run directory, lock, logs, fingerprint files and
ownership marker stay the process backend's, so `up`, `down`, `status` and `logs` do not see a difference.
"""

from __future__ import annotations

from homecluster.backends.process import ProcessBackend
from homecluster.errors import HostError


class ServiceBackend(ProcessBackend):
    """A backend whose processes a service manager keeps (systemd, launchd): its probe says first whether that
    manager can be used on the host (`hc-manager NAME`, or `hc-manager process WHY`)."""

    supervised = False  # the service manager is the supervisor: no hc-supervise.py in the run directory
    manager = ""  # its name in hc-manager lines and in messages

    @property
    def home(self) -> str | None:
        """$HOME on the host, from the last probe (None before one)."""
        return self.supervision.home if self.supervision else None

    def usable_check(self) -> str:
        """sh lines that leave why the manager cannot be used here in $hc_why (empty when it can)."""
        raise NotImplementedError

    def service_probe_body(self) -> str:
        """The probe's hc-probe lines, read from the service manager."""
        raise NotImplementedError

    def either(self, service: str, other: str) -> str:
        """sh: `service` where the manager can be used here, else `other` (with $hc_why set)."""
        return "\n".join([self.usable_check(), 'if [ -z "$hc_why" ]; then', service, "else", other, "fi"])

    def managed_probe(self) -> str:
        """The probe where the manager is used: which one, the host's $HOME, the roles' hc-probe lines."""
        return "\n".join([f'echo "hc-manager {self.manager}"', 'echo "hc-home $HOME"', self.service_probe_body()])

    def probe_body(self) -> str:
        return self.either(self.managed_probe(), 'echo "hc-manager process $hc_why"; echo hc-probe-done')

    def _states(self, output: str, exit_code: int, tail: str):
        states = super()._states(output, exit_code, tail)
        if self.supervision.manager != self.manager:
            why = self.supervision.why
            raise HostError(f"{self.host.name}: supervisor: {self.manager}, but {why}. Fix: set supervisor: auto "
                            f"for {self.host.name} (homecluster's own supervisor where {self.manager} cannot "
                            "be used), or see homecluster service status")
        return states
