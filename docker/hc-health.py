"""The dask image's HEALTHCHECK: is the dask process in this container answering?

Finds the TCP sockets the container's own processes listen on (the socket inodes behind /proc/<pid>/fd of
every pid this container sees, matched against /proc/net/tcp and tcp6; with --network host those files list the
whole host's sockets, so only the container's own inodes count) and GETs /health on each one reachable at
127.0.0.1 or ::1 (bound there or to a wildcard address). dask's scheduler and worker HTTP servers answer `ok`.
The comm ports (bound to the host's address by homecluster) are left alone: a probe there would be logged by
dask at every check. Only when nothing on the loopback speaks HTTP are the other listening sockets tried (a
scheduler whose dashboard is on the LAN address).

Healthy (exit 0) when at least one socket answers `ok` and none fails; unhealthy (exit 1) otherwise, also while
no such socket exists yet (HEALTHCHECK --start-period covers dask's start). One line on stdout says why: Docker
keeps it in `docker inspect --format '{{json .State.Health}}'`. Standard library only.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import sys

TCP_LISTEN = "0A"
TIMEOUT = 3.0  # seconds per socket; the HEALTHCHECK's own --timeout is larger
_SOCKET_LINK = re.compile(r"^socket:\[(\d+)\]$")


def socket_inodes(links) -> set[int]:
    """The socket inodes among fd link targets ("socket:[1234]", "/dev/null", "pipe:[5]" ...)."""
    return {int(m.group(1)) for link in links if (m := _SOCKET_LINK.match(link))}


def decode_address(hex_address: str, byteorder: str = sys.byteorder) -> str:
    """/proc/net/tcp{,6}'s address ("0100007F" or 32 hex digits): the kernel prints each 32-bit word of the
    address in the machine's byte order."""
    words = [int(hex_address[i:i + 8], 16) for i in range(0, len(hex_address), 8)]
    packed = b"".join(w.to_bytes(4, byteorder) for w in words)
    return socket.inet_ntop(socket.AF_INET if len(packed) == 4 else socket.AF_INET6, packed)


def listening(table: str, byteorder: str = sys.byteorder) -> dict[int, tuple[str, int]]:
    """inode -> (address, port) of the LISTEN sockets in the text of /proc/net/tcp or /proc/net/tcp6."""
    out = {}
    for line in table.splitlines()[1:]:
        f = line.split()
        if len(f) < 10 or f[3] != TCP_LISTEN or ":" not in f[1]:
            continue
        address, port = f[1].split(":")
        out[int(f[9])] = (decode_address(address, byteorder), int(port, 16))
    return out


def dial_address(address: str) -> tuple[str, bool]:
    """Where to connect to a socket bound to `address`, and whether that is 127.0.0.1 or ::1: a wildcard is
    reached at the loopback of its family, an IPv4-mapped IPv6 address at its IPv4 address."""
    ip = ipaddress.ip_address(address)
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if ip.is_unspecified:
        ip = ipaddress.ip_address("127.0.0.1" if ip.version == 4 else "::1")
    return str(ip), str(ip) in ("127.0.0.1", "::1")


def own_sockets(inodes: set[int], tables: list[str], byteorder: str = sys.byteorder
                ) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(loopback, other): where to reach each listening socket among `inodes`, deduplicated, in order."""
    loop, other = [], []
    for table in tables:
        for inode, (address, port) in sorted(listening(table, byteorder).items(), key=lambda kv: kv[1][1]):
            if inode in inodes:
                host, is_loop = dial_address(address)
                target = loop if is_loop else other
                if (host, port) not in target:
                    target.append((host, port))
    return loop, other


def classify(response: bytes | None) -> str:
    """What an answer to GET /health means: "ok", "not http" (another protocol: skipped), or "fail: why"."""
    if response is None:
        return f"fail: no answer in {TIMEOUT:g} s"
    if not response.startswith(b"HTTP/"):
        return "not http"
    head, _, body = response.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].decode(errors="replace")
    parts = status.split()
    if len(parts) >= 2 and parts[1] == "200" and body.strip() == b"ok":
        return "ok"
    return f"fail: {status} {body.strip()[:60].decode(errors='replace')}".rstrip()


def get_health(host: str, port: int) -> bytes | None:
    """The raw answer to GET /health (b"" when the peer closed at once), None on a timeout."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    name = f"[{host}]" if family == socket.AF_INET6 else host
    chunks = []
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(TIMEOUT)
            s.connect((host, port))
            s.sendall(f"GET /health HTTP/1.0\r\nHost: {name}:{port}\r\nConnection: close\r\n\r\n".encode())
            while sum(map(len, chunks)) < 65536:
                chunk = s.recv(4096)
                if not chunk:
                    break
                chunks.append(chunk)
                head = b"".join(chunks)[:5]
                if len(head) == 5 and head != b"HTTP/":
                    break  # another protocol (a dask comm speaks first): no need to wait for more
    except socket.timeout:
        return b"".join(chunks) or None
    except OSError:
        pass  # refused or reset: whatever arrived decides
    return b"".join(chunks)


def verdict(results: dict[str, str]) -> tuple[bool, str]:
    """(healthy, the line to print) from each socket's classification."""
    oks = [t for t, r in results.items() if r == "ok"]
    fails = [f"{t} {r}" for t, r in results.items() if r.startswith("fail")]
    if fails:
        return False, "unhealthy: " + "; ".join(fails)
    if not oks:
        return False, "unhealthy: no HTTP server of this container answers yet" + (
            f" (listening: {', '.join(results)})" if results else "")
    return True, "healthy: " + ", ".join(f"{t} ok" for t in oks)


def container_inodes(proc: str = "/proc") -> set[int]:
    """The socket inodes of every process this container sees (its own pid namespace)."""
    links = []
    for pid in (e for e in os.listdir(proc) if e.isdigit()):
        fd_dir = f"{proc}/{pid}/fd"
        try:
            names = os.listdir(fd_dir)
        except OSError:
            continue  # gone, or not ours to read
        for fd in names:
            try:
                links.append(os.readlink(f"{fd_dir}/{fd}"))
            except OSError:
                pass
    return socket_inodes(links)


def read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def main() -> int:
    inodes = container_inodes()
    loop, other = own_sockets(inodes, [read("/proc/net/tcp"), read("/proc/net/tcp6")])
    results = {}
    for group in (loop, other):
        for host, port in group:
            results[f"{host}:{port}"] = classify(get_health(host, port))
        if any(r != "not http" for r in results.values()):
            break  # the loopback answered: the comm ports stay untouched
    healthy, line = verdict(results)
    print(line)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
