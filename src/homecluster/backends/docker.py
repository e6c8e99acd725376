"""The docker backend (`backend: docker`): each Dask process is a container of the cluster's image on the host's
Docker engine, driven with the docker CLI over the same SSH session scripts as the process backend (lock, run
directory, hc-* lines): `up`, `down`, `status` and `logs` do not see a difference.

A container is `hc-<cluster>-<host>-<role>`, labelled with cluster, host, role and the spec's fingerprint (by
which `down` finds exactly ours and `up` keeps what is current); host networking, so it listens on the host's
address and follows the port plan; `--restart unless-stopped`, so Docker brings it back after a crash and at
boot; `--user` the SSH user (it reads the TLS key, mounted read-only from the run directory); memory and CPU
caps from the inventory. `docker kill` switches a restart policy off ("until the next start", Docker's
documentation), so a small watcher on the host (sh, detached, carrying the ownership marker) waits on the
container and starts it again when it stopped without `down`.

The image comes from this machine (images/ship.py): `start` ships it first when the probe found the host without
that exact image id.
"""

from __future__ import annotations

import shlex

from homecluster.backends.base import ProcessState
from homecluster.backends.process import ROLES, ProcessBackend, _FUNCTIONS, _header, _lock_lines, marker
from homecluster.core.spec import TLS_DIR, UNBUILT, ProcessSpec
from homecluster.errors import HostError
from homecluster.images import ship
from homecluster.services.common import memory_max
from homecluster.services.render import user_of
from homecluster.shell.posix import shell_join, shell_path

LABEL = "org.homecluster"
STOP_TIMEOUT = 20  # seconds docker stop gives a container after SIGTERM
WATCH_DELAY = 2  # seconds the watcher waits before starting a stopped container again
SPEC_FORMAT = shlex.quote('{{index .Config.Labels "%s.spec"}}' % LABEL)


def container_name(cluster: str, host: str, role: str) -> str:
    return f"hc-{cluster}-{host}-{role}"


def cluster_image(inv) -> str | None:
    """The id of the image `homecluster image build` made for the cluster, when a docker host runs it (one
    without an image: of its own); None otherwise or before the first build."""
    if not any(h.backend == "docker" and not h.image for h in inv.hosts.values()):
        return None
    from homecluster.images.store import built

    img = built(inv.cluster.name)
    return img.id if img else None


def image_for(inv, host) -> str | None:
    """What a docker host's containers run: its image:, else the cluster's built image."""
    return host.image or cluster_image(inv)


class DockerBackend(ProcessBackend):
    """Dask processes as containers on a host's Docker engine."""

    supervised = False  # Docker and the watcher keep the containers: no hc-supervise.py
    manager = "docker"

    def __init__(self, runner, host, cluster: str, run_dir: str, image: str | None = None):
        super().__init__(runner, host, cluster, run_dir)
        self.image = image  # what the containers run: an image id, or the inventory's image:
        self.host_image: str | None = None  # that image's id on the host, from the last probe
        self.free_kb: int | None = None
        self.docker_root: str | None = None
        self._progress = lambda s: None
        self.shipped: set[str] = set()  # images loaded on the host by this backend

    # -- pieces of every script ---------------------------------------------------------------------------

    @property
    def docker_env(self) -> str:
        """sh: point the docker CLI at the host's daemon (`docker_host:`), else leave the host's default."""
        return f"export DOCKER_HOST={shlex.quote(self.host.docker_host)}" if self.host.docker_host else ":"

    def name(self, role: str) -> str:
        return container_name(self.cluster, self.host.name, role)

    def _ours(self, role: str) -> str:
        """docker ps filters for exactly our containers of a role."""
        return " ".join(f"--filter label={LABEL}.{k}={v}" for k, v in
                        (("cluster", self.cluster), ("host", self.host.name), ("role", role)))

    # -- probe ----------------------------------------------------------------------------------------------

    def probe_body(self) -> str:
        """Whether docker answers (else why, as hc-docker-error); per role the container's pid, state, restart
        count and fingerprint label, and the watcher; the image's id on the host and the free space there."""
        fmt = shlex.quote("{{.State.Pid}} {{.State.Status}} {{.RestartCount}} {{index .Config.Labels \"%s.spec\"}}"
                       % LABEL)
        image = shlex.quote(self.image or UNBUILT)
        return "\n".join([
            self.docker_env,
            _FUNCTIONS,
            'echo "hc-now $(date +%s)"',
            'if ! command -v docker >/dev/null 2>&1; then echo "hc-docker-error missing"',
            "elif ! root=$(docker info --format '{{.DockerRootDir}}' 2>&1); then",
            '  echo "hc-docker-error down $(echo "$root" | tr "\\n" " ")"',
            "else",
            'echo "hc-docker-root $root"',
            'echo "hc-disk $(df -Pk "$root" 2>/dev/null | awk \'NR == 2 {print $4}\')"',
            f'echo "hc-image $(docker image inspect -f \'{{{{.Id}}}}\' {image} 2>/dev/null)"',
            f"for role in {' '.join(ROLES)}; do",
            f'  n=hc-{self.cluster}-{self.host.name}-$role',
            f"  set -- $(docker inspect -f {fmt} \"$n\" 2>/dev/null); pid=$1; st=$2; rc=$3; spec=$4",
            '  [ "$pid" = 0 ] && pid=',
            f'  w=$(cat "$D/$role.pid" 2>/dev/null); watch=0; hc_ours "$w" '
            f'{shlex.quote(marker(self.cluster, self.host.name, ""))}"$role" && watch=1',
            '  alive=0; case "$st" in running|restarting) [ $watch = 1 ] && alive=1;; esac',
            '  echo "hc-probe $role pid=$pid alive=$alive spec=$spec"',
            '  [ -n "$st" ] && echo "hc-boot $role enabled"',  # unless-stopped: with the daemon, at boot
            '  again=$(grep -c "started again" "$D/watch-$role.log" 2>/dev/null); run=false',
            '  [ "$st" = running ] && run=true',
            '  [ $alive = 1 ] && echo "hc-state $role {\\"running\\": $run, \\"restarts\\": $(( ${rc:-0} + '
            '${again:-0} ))}"',
            "done",
            "fi",
            "echo hc-probe-done",
        ])

    def _states(self, output: str, exit_code: int, tail: str) -> dict[str, ProcessState]:
        self._docker_error(output)
        states = super()._states(output, exit_code, tail)
        facts = dict(ln.split(" ", 1) if " " in ln else (ln, "") for ln in output.splitlines()
                     if ln.startswith(("hc-image", "hc-disk", "hc-docker-root")))
        self.host_image = facts.get("hc-image", "").strip() or None
        self.free_kb = int(facts["hc-disk"]) if facts.get("hc-disk", "").strip().isdigit() else None
        self.docker_root = facts.get("hc-docker-root", "").strip() or None
        return states

    def _docker_error(self, output: str) -> None:
        line = next((ln for ln in output.splitlines() if ln.startswith("hc-docker-error ")), None)
        if line is None:
            return
        kind, _, detail = line[16:].partition(" ")
        h, where = self.host.name, f" at {self.host.docker_host}" if self.host.docker_host else ""
        if kind == "missing":
            raise HostError(f"{h}: no docker on {h}. Fix: install Docker there (Debian/Ubuntu: sudo apt install "
                            f"docker.io; macOS: Docker Desktop), or set backend: native for {h}")
        detail = detail.strip()
        if "permission denied" in detail.lower():
            user = user_of(self.host)
            raise HostError(f"{h}: permission denied on the Docker socket{where} for {user}. Fix: on {h}, sudo "
                            f"usermod -aG docker {user} and log in again (or point docker_host: at a daemon "
                            f"{user} may use)")
        if "cannot connect" in detail.lower() or "daemon running" in detail.lower():
            raise HostError(f"{h}: the Docker daemon{where} is not running ({detail}). Fix: start it on {h} "
                            "(sudo systemctl start docker, or open Docker Desktop)"
                            + (", or correct docker_host:" if where else ""))
        raise HostError(f"{h}: docker info failed{where}: {detail}. Fix: check Docker on {h}")

    # -- start: ship the image if needed, then the container and its watcher --------------------------------

    def session(self, command: str, progress):
        self._progress = progress
        return super().session(command, progress)

    def start(self, proc: ProcessSpec) -> int | None:
        self.ensure_image(proc)
        return super().start(proc)

    def ensure_image(self, proc: ProcessSpec) -> None:
        """Ship the image of `proc` to the host unless the last probe found it there (by id)."""
        if proc.image in (None, UNBUILT):
            raise HostError(f"{self.host.name}: no image for the docker hosts of cluster {self.cluster} yet. Fix: "
                            "homecluster image build (or set image: for the host)")
        if proc.image in self.shipped:
            return  # the scheduler and a worker on one host: one shipment
        image = ship.local_image(proc.image)
        if self.host_image is not None and self.host_image == image.id:
            return  # (a host without the image is not asked about: --dry-run never reaches this machine's engine)
        ship.check_space(self.host, image, self.free_kb, self.docker_root)
        ship.ship(self.runner, self.host, image, self.docker_env, ship.board(self._progress))
        self.shipped.add(proc.image)

    def run_argv(self, proc: ProcessSpec) -> list[str]:
        """`docker run` of one process, without the parts the host's shell fills in (user, paths with ~)."""
        labels = [("cluster", self.cluster), ("host", proc.host), ("role", proc.role), ("spec", proc.fingerprint)]
        argv = ["docker", "run", "-d", "--name", self.name(proc.role), "--network", "host",
                "--restart", "unless-stopped", "--stop-timeout", str(STOP_TIMEOUT)]
        for k, v in labels:
            argv += ["--label", f"{LABEL}.{k}={v}"]
        for k, v in (("HOME", "/tmp"), *proc.env):
            argv += ["-e", f"{k}={v}"]
        limit = memory_max(proc, self.host)
        if limit:
            argv += ["--memory", str(limit)]
        if proc.role != "scheduler" and self.host.nthreads:
            argv += ["--cpus", str(self.host.nthreads * self.host.nworkers)]
        return argv

    def start_script(self, proc: ProcessSpec) -> str:
        """Create the container unless one with this spec exists (then only start it), then its watcher."""
        role, name = proc.role, self.name(proc.role)
        mark = shlex.quote(marker(self.cluster, proc.host, role))
        mounts = [proc.run_dir] + ([self.host.local_directory] if self.host.local_directory else [])
        volumes = " ".join(f"-v {shell_path(m)}:{shell_path(m)}" for m in mounts)
        tls = f"{proc.run_dir}/{TLS_DIR}"
        run = " ".join([shell_join(tuple(self.run_argv(proc))), '--user "$(id -u):$(id -g)"', '-w "$D"', volumes,
                        f"-v {shell_path(tls)}:{shell_path(tls)}:ro", shell_join(proc.docker_options),
                        shlex.quote(proc.image or UNBUILT), shell_join(proc.argv)])
        watch = (f"while :; do docker wait {name} >/dev/null 2>&1; sleep {WATCH_DELAY}; "
                 f"s=$(docker inspect -f '{{{{.State.Status}}}}' {name} 2>/dev/null) || exit 0; "
                 f'case "$s" in running|restarting) ;; *) docker start {name} >/dev/null 2>&1 && '
                 f'echo "$(date +%s) {name} started again";; esac; done')
        return "\n".join([
            _header("start", f"the {role} of cluster {self.cluster} on {proc.host}, as container {name}"),
            self.docker_env,
            _FUNCTIONS,
            f"D={shell_path(proc.run_dir)}",
            f'mkdir -p "$D" "$D/{TLS_DIR}" ' + " ".join(shell_path(m) for m in mounts[1:]) + " || exit 1",
            'cd "$D" || exit 1',
            f"left=$(hc_marked {mark})",  # a watcher of an earlier container
            f'[ -z "$left" ] || {{ kill -KILL $left 2>/dev/null; echo "hc-swept {role}" $left; }}',
            f"have=$(docker inspect -f {SPEC_FORMAT} {name} 2>/dev/null)",
            f'if [ "$have" = {proc.fingerprint} ]; then',
            f"  docker start {name} >/dev/null || exit 1",
            "else",
            f"  old=$(docker ps -aq {self._ours(role)}); [ -z \"$old\" ] || docker rm -f $old >/dev/null",
            f"  {run} >/dev/null || exit 1",
            "fi",
            f"echo {proc.fingerprint} > {role}.spec",
            f": > watch-{role}.log",
            "S=$(command -v setsid)",  # its own session (Linux), so that the SSH session's end does not reach it
            f"HOMECLUSTER_PROCESS={mark} $S nohup sh -c {shlex.quote(watch)} >> watch-{role}.log 2>&1 < /dev/null &",
            f"echo $! > {role}.pid",
            f"echo \"hc-started {role} $(docker inspect -f '{{{{.State.Pid}}}}' {name})\"",
        ])

    def stop_script(self, role: str, lock_for: str | None = None) -> str:
        """The watcher first (or it would start the container again), then every container of ours for the
        role: docker stop (SIGTERM, STOP_TIMEOUT s, SIGKILL), removed."""
        mark = shlex.quote(marker(self.cluster, self.host.name, role))
        where = _lock_lines(self.run_dir, lock_for) if lock_for else [f"D={shell_path(self.run_dir)}"]
        return "\n".join([
            _header("stop", f"the {role} of cluster {self.cluster} on {self.host.name}, container "
                    f"{self.name(role)}" + (", under the lock" if lock_for else "")),
            *where,
            self.docker_env,
            _FUNCTIONS,
            f"left=$(hc_marked {mark}); killed=0",
            '[ -z "$left" ] || kill -KILL $left 2>/dev/null',
            "command -v docker >/dev/null 2>&1 || exit 0",
            f"for c in $(docker ps -aq {self._ours(role)}); do",
            "  pid=$(docker inspect -f '{{.State.Pid}}' \"$c\" 2>/dev/null)",
            '  docker stop "$c" >/dev/null 2>&1; docker rm -f "$c" >/dev/null 2>&1 || killed=1',
            f'  echo "hc-stopped {role} ${{pid:-0}}"',
            "done",
            f'[ $killed = 0 ] || echo "hc-killed {role} 1"',
            f'rm -f "$D/{role}.pid" "$D/{role}.spec" "$D/{TLS_DIR}/{role}.key" "$D/{TLS_DIR}/{role}.pem"',
        ])

    def remove_image(self) -> str | None:
        """Remove the cluster's image from the host (`down --images`); what was removed, None when absent."""
        if not self.image:
            return None
        ref = shlex.quote(self.image)
        r = self.runner.run("\n".join([_header("image", f"remove {self.image} from {self.host.name}"),
                                       self.docker_env, f"docker image inspect {ref} >/dev/null 2>&1 || exit 0",
                                       f"docker image rm -f {ref} >/dev/null && echo hc-removed"]))
        if not r.ok:
            raise HostError(f"{self.host.name}: removing the image failed (exit {r.exit_code}): {r.tail()}")
        return self.image[:19] if "hc-removed" in r.stdout else None

    def logs(self, role: str, lines: int) -> str:
        r = self.runner.run("\n".join([_header("logs", f"the last {int(lines)} lines of container {self.name(role)}"),
                                       self.docker_env, f"docker logs --tail {int(lines)} {self.name(role)} 2>&1"]))
        if not r.ok:
            raise HostError(f"{self.host.name}: reading the {role} container's log failed (exit {r.exit_code}): "
                            f"{r.tail()}")
        return r.stdout
