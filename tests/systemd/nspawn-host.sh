#!/bin/bash
# Prototype (issue 12, not used by the suite yet): the way to a household host with a real systemd as PID 1,
# for the systemd backend's real test. Found and checked on the development machine (hybrid cgroup v1, no
# CAP_SYS_RESOURCE: docker --privileged fails there, nspawn works); needs apt systemd-container + debootstrap.
# A simulated household host with a real systemd as PID 1 (systemd-nspawn),
# reachable over SSH from the root namespace through a veth in its own netns.
# Tests that Restart=always brings back a unit (system and --user) after kill -9 from outside.
# Usage: run.sh            (build rootfs if not cached, boot, test, tear down)
#        KEEP=1 run.sh     (leave the machine running; tear down later with: run.sh down)
#        run.sh down       (teardown only)
set -euo pipefail

DIR=${SYSD_DIR:-/tmp/sysd-proto}
NAME=${SYSD_NAME:-sysd-test}          # machine name = hostname = netns name
NS=$NAME
VETH=${SYSD_VETH:-sysd-h0}            # root-namespace end; the netns end is "host0"
NET=${SYSD_NET:-10.213.90}; OCT=${SYSD_OCTET:-0}   # a /30: .OCT+1 root side, .OCT+2 the machine
HOST_IP=$NET.$((OCT+1)) CT_IP=$NET.$((OCT+2)) PFX=30
ROOTFS=$DIR/rootfs
CG=sysd-$NAME                          # our own cgroup parent in both hierarchies
CGROOTS="/sys/fs/cgroup/systemd /sys/fs/cgroup/unified"
[ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ] && CGROOTS=/sys/fs/cgroup
RUN=$DIR/run-$NAME
KEY=$DIR/keys/id
SSH=(ssh -i "$KEY" -o BatchMode=yes -o UserKnownHostsFile="$RUN/known_hosts" -o StrictHostKeyChecking=yes
     -o ConnectTimeout=3 -o LogLevel=ERROR root@$CT_IP)

ts() { date +%s.%N; }
el() { awk -v a="$1" -v b="$(ts)" 'BEGIN{printf "%.2f", b-a}'; }
log() { echo "[$(date +%T)] $*" >&2; }

teardown() {
  set +e
  local pid t0; t0=$(ts)
  if [ -f "$RUN/nspawn.pid" ] && pid=$(cat "$RUN/nspawn.pid") && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"                  # nspawn turns SIGTERM into a clean poweroff of the container
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && { log "nspawn did not stop, SIGKILL"; kill -KILL "$pid"; sleep 0.5; }
  fi
  # anything left in our cgroups (only ours: the tree is named after this machine)
  for r in $CGROOTS; do
    [ -d "$r/$CG" ] || continue
    find "$r/$CG" -name cgroup.procs -exec cat {} + 2>/dev/null | while read -r p; do kill -KILL "$p" 2>/dev/null; done
  done
  sleep 0.2
  for r in $CGROOTS; do [ -d "$r/$CG" ] && find "$r/$CG" -depth -type d -exec rmdir {} \; 2>/dev/null; done
  if [ -e "/run/netns/$NS" ]; then
    for p in $(ip netns pids "$NS" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
    ip netns del "$NS"
  fi
  ip link del "$VETH" 2>/dev/null
  rm -rf "/run/systemd/nspawn/propagate/$NAME" "/run/systemd/nspawn/unix-export/$NAME" 2>/dev/null
  rmdir /run/systemd/nspawn/locks /run/systemd/nspawn/propagate /run/systemd/nspawn 2>/dev/null  # only if empty
  # nspawn's mounts live in its own mount namespace; nothing should be left on the host
  mount | grep -q "$ROOTFS" && log "WARNING: mounts left under $ROOTFS"
  rm -rf "$RUN"
  log "teardown done in $(el "$t0")s"
  return 0
}

build() {
  [ -f "$ROOTFS/.sysd-proto-ok" ] && return 0
  local t0; t0=$(ts)
  log "building rootfs (debootstrap bookworm minbase)"
  rm -rf "$ROOTFS.tmp"; mkdir -p "$DIR"
  debootstrap --variant=minbase \
    --include=systemd,systemd-sysv,dbus,libpam-systemd,openssh-server,python3,iproute2,procps,dbus-user-session \
    bookworm "$ROOTFS.tmp" http://deb.debian.org/debian > "$DIR/debootstrap.log" 2>&1 \
    || { tail -20 "$DIR/debootstrap.log" >&2; return 1; }
  local R=$ROOTFS.tmp
  rm -f "$R/etc/hostname"              # systemd then keeps the hostname nspawn sets (= machine name)
  : > "$R/etc/machine-id"              # empty: a transient id per boot, not one shared by all hosts
  rm -f "$R/var/lib/dbus/machine-id"
  printf 'LANG=C.UTF-8\n' > "$R/etc/default/locale"
  # root login with our key only
  mkdir -p "$DIR/keys"; chmod 700 "$DIR/keys"
  [ -f "$KEY" ] || ssh-keygen -q -t ed25519 -N '' -f "$KEY"
  install -d -m 700 "$R/root/.ssh"; install -m 600 "$KEY.pub" "$R/root/.ssh/authorized_keys"
  printf 'PasswordAuthentication no\nPermitRootLogin prohibit-password\nMaxStartups 50:30:100\n' \
    > "$R/etc/ssh/sshd_config.d/sysd-proto.conf"
  # no console login on the nspawn pty; nothing to do there
  chroot "$R" systemctl mask console-getty.service getty@.service systemd-networkd.service \
    systemd-resolved.service systemd-timesyncd.service >/dev/null 2>&1 || true
  rm -rf "$R/var/cache/apt/archives/"*.deb "$R/var/lib/apt/lists/"*
  touch "$R/.sysd-proto-ok"
  mv "$R" "$ROOTFS"
  log "rootfs built in $(el "$t0")s ($(du -sh "$ROOTFS" | cut -f1))"
}

net_up() {
  ip netns add "$NS"
  ip link add "$VETH" type veth peer name host0 netns "$NS"
  sysctl -qw "net.ipv4.conf.$VETH.forwarding=0"
  ip addr add "$HOST_IP/$PFX" dev "$VETH"; ip link set "$VETH" up
  ip -n "$NS" link set lo up
  ip -n "$NS" addr add "$CT_IP/$PFX" dev host0; ip -n "$NS" link set host0 up
  # no default route, no NAT: the host can only talk to 10.213.90.1
}

boot() {
  mkdir -p "$RUN"
  for r in $CGROOTS; do mkdir -p "$r/$CG"; done
  # nspawn (--keep-unit, no host systemd) puts the container in <own cgroup>/payload and itself in
  # <own cgroup>/supervisor: give it its own parent so several machines don't collide and cleanup is exact.
  CGROOTS="$CGROOTS" CG="$CG" setsid sh -c '
      for r in $CGROOTS; do echo $$ > "$r/$CG/cgroup.procs"; done
      exec systemd-nspawn --quiet -D "$0" --boot --machine="$1" --hostname="$1" \
        --network-namespace-path="/run/netns/$2" --register=no --keep-unit \
        --volatile=overlay --link-journal=no --console=passive' \
      "$ROOTFS" "$NAME" "$NS" > "$RUN/nspawn.log" 2>&1 < /dev/null &
  echo $! > "$RUN/nspawn.pid"
  # known_hosts from the tree's host key: host key checking stays on
  echo "$CT_IP $(cut -d' ' -f1,2 "$ROOTFS/etc/ssh/ssh_host_ed25519_key.pub")" > "$RUN/known_hosts"
}

wait_ready() {
  local t0=$1
  for _ in $(seq 300); do
    kill -0 "$(cat "$RUN/nspawn.pid")" 2>/dev/null || { cat "$RUN/nspawn.log" >&2; return 1; }
    if "${SSH[@]}" true 2>/dev/null; then break; fi
    sleep 0.1
  done
  log "sshd answers after $(el "$t0")s"
  local st; st=$("${SSH[@]}" 'systemctl is-system-running --wait' || true)
  log "system state '$st' after $(el "$t0")s"
  [ "$st" = running ] || { "${SSH[@]}" 'systemctl --failed --no-pager' >&2; return 1; }
}

# host pid (root namespace) of a process whose pid inside the container is $2, searched in cgroup dir $1
host_pid() {
  local p ns
  for p in $(cat "$1/cgroup.procs" 2>/dev/null); do
    ns=$(awk '/^NSpid:/{print $NF}' "/proc/$p/status" 2>/dev/null)
    [ "$ns" = "$2" ] && { echo "$p"; return 0; }
  done
  return 1
}

kill_and_watch() {   # $1: "system" or "user"; $2: cgroup path of the unit below payload/
  local mode=$1 cgrel=$2 sc=systemctl
  [ "$mode" = user ] && sc="systemctl --user"
  local inner hp new t0 cgdir
  inner=$("${SSH[@]}" "$sc show -p MainPID --value sleeper.service")
  cgdir=/sys/fs/cgroup/systemd/$CG/payload/$cgrel
  [ "$CGROOTS" = /sys/fs/cgroup ] && cgdir=/sys/fs/cgroup/$CG/payload/$cgrel
  hp=$(host_pid "$cgdir" "$inner") || { log "$mode: no host pid for MainPID=$inner in $cgdir"; return 1; }
  log "$mode unit: MainPID=$inner inside = pid $hp in the root namespace; kill -9 $hp"
  kill -9 "$hp"; t0=$(ts)
  for _ in $(seq 100); do
    new=$("${SSH[@]}" "$sc show -p MainPID --value sleeper.service")
    [ -n "$new" ] && [ "$new" != 0 ] && [ "$new" != "$inner" ] && break
    sleep 0.2
  done
  log "$mode unit: new MainPID=$new after $(el "$t0")s; $("${SSH[@]}" "$sc show -p NRestarts,ActiveState sleeper.service | tr '\n' ' '")"
  [ "$new" != "$inner" ] && [ "$new" != 0 ]
}

test_units() {
  local unit='[Unit]
Description=sysd-proto sleeper
[Service]
ExecStart=/usr/bin/python3 -c "import time; time.sleep(1000)"
Restart=always
RestartSec=1
[Install]
WantedBy=default.target'
  # system unit
  "${SSH[@]}" "cat > /etc/systemd/system/sleeper.service && systemctl daemon-reload && systemctl enable --now sleeper.service" <<<"$unit"
  kill_and_watch system system.slice/sleeper.service
  # user unit for root: linger starts user@0.service without a login session
  "${SSH[@]}" 'loginctl enable-linger root && for i in $(seq 100); do [ -S /run/user/0/systemd/private ] && break; sleep 0.1; done'
  "${SSH[@]}" 'mkdir -p ~/.config/systemd/user && cat > ~/.config/systemd/user/sleeper.service && systemctl --user daemon-reload && systemctl --user enable --now sleeper.service && echo "user manager: $(systemctl --user is-system-running)"' <<<"$unit"
  kill_and_watch user user.slice/user-0.slice/user@0.service/app.slice/sleeper.service
}

if [ "${1:-}" = down ]; then teardown; exit 0; fi
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
command -v systemd-nspawn >/dev/null || { echo "apt-get install systemd-container debootstrap" >&2; exit 1; }
teardown                                # leftovers of an earlier run
[ "${KEEP:-0}" = 1 ] || trap teardown EXIT
trap 'exit 130' INT TERM
log "cgroup fs: $(stat -fc %T /sys/fs/cgroup) ($CGROOTS)"
build
net_up
t0=$(ts); boot; wait_ready "$t0"
log "PID 1 in the machine: $("${SSH[@]}" 'cat /proc/1/comm; hostname' | tr '\n' ' ')"
test_units
log "OK"
