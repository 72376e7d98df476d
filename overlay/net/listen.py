"""Listen addresses a node may not take: one clear error, before anything is started.

A node's TCP listen sockets are exclusive (libp2p_compat (n)): a port another process listens
on, with or without SO_REUSEPORT, is refused instead of shared. :func:`check_listen_addrs` finds
that out with a probe bind before the node opens its store, ledger or control socket; the
host's own bind is the authoritative check (:mod:`overlay.net.host`), the probe only makes the
common case fail early and leave nothing behind.
"""
from __future__ import annotations

import errno
import socket
from collections.abc import Iterable

from trust.errors import VouchnetError

__all__ = ["ListenError", "check_listen_addrs", "listen_error"]


class ListenError(VouchnetError):
    """A listen address cannot be used (in use, not local, not permitted); exit status 2."""

    exit_code = 2


_REASONS = {
    errno.EADDRINUSE: "the address is in use by another process (stop it, or choose another port with --listen)",
    errno.EACCES: "permission denied (ports below 1024 need privileges; choose another port with --listen)",
    errno.EADDRNOTAVAIL: "the address is not one of this machine's (choose a local address with --listen)",
}


def _tcp_endpoint(addr: str) -> tuple[int, str, int] | None:
    """(family, ip, port) of an ``/ip4|ip6/<ip>/tcp/<port>`` listen address, else None."""
    import multiaddr  # noqa: PLC0415 - only needed here

    try:
        maddr = multiaddr.Multiaddr(addr)
        names = [p.name for p in maddr.protocols()]
        if len(names) < 2 or names[0] not in ("ip4", "ip6") or names[1] != "tcp":
            return None
        family = socket.AF_INET if names[0] == "ip4" else socket.AF_INET6
        return family, str(maddr.value_for_protocol(names[0])), int(maddr.value_for_protocol("tcp"))
    except Exception:  # noqa: BLE001 - malformed: the host reports it with its own message
        return None


def _probe(family: int, ip: str, port: int) -> OSError | None:
    """Bind (never listen) as our listener would, then let go; the error, if any."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # like the listener: no SO_REUSEPORT
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((ip, port))
        return None
    except OSError as exc:
        return exc
    finally:
        sock.close()


def _reason(exc: OSError) -> str:
    return _REASONS.get(exc.errno or 0, exc.strerror or str(exc))


def listen_error(addr: str) -> ListenError:
    """The error for a listen address the host could not take, with the reason when we can tell."""
    endpoint = _tcp_endpoint(addr)
    exc = _probe(*endpoint) if endpoint is not None and endpoint[2] != 0 else None
    if exc is None:
        return ListenError(f"cannot listen on {addr} (run with -vv for py-libp2p's reason)")
    return ListenError(f"cannot listen on {addr}: {_reason(exc)}")


def check_listen_addrs(addrs: Iterable[str]) -> None:
    """Raise :class:`ListenError` for the first fixed-port TCP address this node cannot bind."""
    for addr in addrs:
        endpoint = _tcp_endpoint(addr)
        if endpoint is None or endpoint[2] == 0:
            continue
        exc = _probe(*endpoint)
        if exc is not None:
            raise ListenError(f"cannot listen on {addr}: {_reason(exc)}")
