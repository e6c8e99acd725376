"""SSH host keys: what a host offers, what its known_hosts holds, and recording a checked key (`homecluster trust`).

OpenSSH's conventions throughout, so that what homecluster shows and writes is what `ssh` and `ssh-keygen` show
and read: fingerprints as `SHA256:<base64 without padding>` (`ssh-keygen -lf`), known_hosts entries named
`address` on port 22 and `[address]:port` on any other port. Nothing here turns host-key checking off: a key is
recorded only after `confirm` says yes, and a key that differs from the recorded one is refused, never replaced.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import paramiko

from homecluster.errors import HostError
from homecluster.inventory import Host

SCAN_TIMEOUT = 10
RECORDED, ALREADY, DECLINED, LOCAL = "recorded", "already", "declined", "local"


@dataclass(frozen=True)
class TrustResult:
    """What `trust` did for one host: recorded its key, found it there already, was declined, or had nothing to
    do (a `connection: local` host: no SSH, no host key)."""

    host: str
    fingerprint: str | None
    outcome: str
    path: Path
    keytype: str | None = None


def fingerprint(key: paramiko.PKey) -> str:
    """The key's fingerprint as OpenSSH prints it (`ssh-keygen -lf`): SHA256:<base64 of the digest, unpadded>."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def key_name(host: Host) -> str:
    """The name of the host's entry in known_hosts, as OpenSSH writes it: address, or [address]:port."""
    return host.address if host.port == 22 else f"[{host.address}]:{host.port}"


def known_hosts_path(host: Host) -> Path:
    """The host's known_hosts file, `~` expanded."""
    return Path(os.path.expanduser(host.known_hosts))


def _lines(host: Host) -> list[str]:
    """The lines of host.known_hosts, stripped; [] when the file does not exist. Unreadable is a HostError."""
    path = known_hosts_path(host)
    try:
        return [line.strip() for line in path.read_text(errors="replace").splitlines()]
    except FileNotFoundError:
        return []
    except OSError as e:
        raise HostError(f"{host.name}: cannot read known_hosts {path} ({e.strerror or e}). Fix: check that it is "
                        "a readable file, or set known_hosts: in the inventory") from None


def known_key(host: Host) -> list[paramiko.PKey]:
    """The keys host.known_hosts holds for the host (plain or hashed entries), the first one of each key type, as
    paramiko checks them; [] when the file does not exist. Lines paramiko cannot read are skipped, and so are
    marker lines (@revoked: see `_revoked`; @cert-authority: host certificates, which paramiko does not check)."""
    keys = paramiko.HostKeys()
    for line in _lines(host):
        if not line or line.startswith(("#", "@")):
            continue
        try:
            entry = paramiko.hostkeys.HostKeyEntry.from_line(line)
        except (paramiko.hostkeys.InvalidHostKey, paramiko.SSHException, ValueError):
            continue
        for name in entry.hostnames if entry else []:
            recorded = keys.lookup(name)
            if recorded is None or entry.key.get_name() not in recorded:
                keys.add(name, entry.key.get_name(), entry.key)
    found = keys.lookup(key_name(host))
    return [found[t] for t in found.keys()] if found else []


def _revoked(host: Host) -> set[str]:
    """The keys (base64) of the file's `@revoked` lines: refused for every host."""
    return {f[3] for f in (line.split() for line in _lines(host)) if len(f) >= 4 and f[0] == "@revoked"}


def changed_message(host: Host, path: Path, old: paramiko.PKey, new: paramiko.PKey) -> str:
    """The one-line refusal of a host key that is not the recorded one, with both fingerprints and the fix."""
    return (f"{host.name}: host key of {host.address}:{host.port} CHANGED: known_hosts {path} has "
            f"{fingerprint(old)}, the host now offers {fingerprint(new)}; refusing. Fix: if {host.name} was "
            f"reinstalled, remove the old key with ssh-keygen -R {key_name(host)} -f {path}, "
            f"then run homecluster trust {host.name}")


def _prefer(transport: paramiko.Transport, keytypes: list[str]) -> None:
    """Ask the host for a key of the first recorded type (as paramiko's SSHClient does when it connects), so the
    scanned key is compared with a recorded key of its own type."""
    if not keytypes:
        return
    options = transport.get_security_options()
    offered = list(options.key_types)
    wanted = keytypes[0]
    if wanted == "ssh-rsa":  # recorded as ssh-rsa, negotiated as one of its SHA-2 signature algorithms
        wanted = next((t for t in ("rsa-sha2-512", "rsa-sha2-256") if t in offered), wanted)
    if wanted in offered:
        options.key_types = [wanted] + [t for t in offered if t != wanted]


def _connect(host: Host, timeout: float) -> socket.socket:
    where = f"{host.address}:{host.port}"
    try:
        return socket.create_connection((host.address, host.port), timeout=timeout)
    except ConnectionRefusedError:
        raise HostError(f"{host.name}: cannot reach {where}: connection refused. "
                        f"Fix: is sshd running on {host.name}?") from None
    except (socket.timeout, TimeoutError):
        raise HostError(f"{host.name}: cannot reach {where}: timed out. "
                        f"Fix: is {host.name} switched on and on the network?") from None
    except socket.gaierror:
        raise HostError(f"{host.name}: cannot resolve {host.address}. Fix: check address: in the inventory") \
            from None
    except OSError as e:
        raise HostError(f"{host.name}: cannot reach {where}: {e.strerror or e}. "
                        "Fix: check address:, port: and the network") from None


def scan(host: Host, timeout: float = SCAN_TIMEOUT, prefer: list[str] | None = None) -> paramiko.PKey:
    """The host key the host's sshd offers (proven: the key exchange checks the host's signature), like
    ssh-keyscan; `prefer`: key types to ask for first. Failures are a one-line HostError with the fix."""
    sock = _connect(host, timeout)
    transport = paramiko.Transport(sock)
    transport.banner_timeout = transport.handshake_timeout = timeout
    try:
        _prefer(transport, prefer or [])
        transport.start_client(timeout=timeout)
        return transport.get_remote_server_key()
    except (paramiko.SSHException, EOFError, OSError) as e:
        raise HostError(f"{host.name}: {host.address}:{host.port} did not complete an SSH handshake "
                        f"({str(e).strip() or type(e).__name__}). Fix: check port: (the SSH port of {host.name}) "
                        "and that sshd runs there") from None
    finally:
        transport.close()
        sock.close()


def _append(host: Host, path: Path, key: paramiko.PKey) -> None:
    """Append the key's line to known_hosts, creating the file 0600 (and its directory 0700) if missing."""
    line = f"{key_name(host)} {key.get_name()} {key.get_base64()}\n"
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "r+b") as f:
            size = f.seek(0, os.SEEK_END)
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = "\n" + line
            f.write(line.encode("ascii"))
    except OSError as e:
        raise HostError(f"{host.name}: cannot write known_hosts {path} ({e.strerror or e}). Fix: check its "
                        "permissions, or set known_hosts: to a file you can write") from None


def trust(host: Host, confirm: Callable[[str], bool], timeout: float = SCAN_TIMEOUT) -> TrustResult:
    """Record the key the host offers in its known_hosts if `confirm(question)` says yes; the question shows
    the key type and fingerprint to check. A key already recorded is left alone; a recorded key that differs is
    a HostError (refused: the host may be an impostor, or reinstalled)."""
    path = known_hosts_path(host)
    if host.is_local:
        return TrustResult(host.name, None, LOCAL, path)
    known = known_key(host)
    key = scan(host, timeout, prefer=[k.get_name() for k in known])
    result = TrustResult(host.name, fingerprint(key), ALREADY, path, key.get_name())
    if key.get_base64() in _revoked(host):
        raise HostError(f"{host.name}: the host key {result.fingerprint} of {host.address}:{host.port} is marked "
                        f"@revoked in {path}; refusing. Fix: find out why it was revoked before you connect to "
                        f"{host.name}; a reinstalled host has a new key")
    if any(k.asbytes() == key.asbytes() for k in known):
        return result
    if known:
        old = next((k for k in known if k.get_name() == key.get_name()), known[0])
        raise HostError(changed_message(host, path, old, key))
    question = (f"{host.name} ({host.address}:{host.port}): {key.get_name()} {result.fingerprint}\n"
                f"record it in {path}?")
    if not confirm(question):
        return replace(result, outcome=DECLINED)
    _append(host, path, key)
    return replace(result, outcome=RECORDED)
