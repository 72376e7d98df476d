"""Workaround (n): TCP listen sockets are shared (SO_REUSEPORT). See the package docstring."""
from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:  # pragma: no cover - typing only
    from libp2p.abc import IHost


# ---------------------------------------------------------------------------------------
# (n) [TCP listeners] A port a node listens on can be shared with any same-uid process.
#
# Verified: transport/tcp/tcp.py `_set_reuse_flags` (line 44) sets SO_REUSEADDR and
# SO_REUSEPORT, and `_open_reuseport_listeners` (line 64) applies it to every listen
# socket; `TCPListener.listen`'s `serve_tcp` closure calls that module function (line 212),
# looked up at call time. Linux lets any number of SO_REUSEPORT sockets of one uid bind
# the same (ip, port) and spreads incoming connections over them: a second
# `vouchnet node run` on a held port started, and any same-uid process with SO_REUSEPORT
# could join a running node's port later and take part of its inbound connections. When
# the bind does fail (the holder lacks SO_REUSEPORT), network/swarm.py `Swarm.listen`
# catches the error (line 1935) and returns False, which host/basic_host.py `run` ignores
# (line 591): the node started with no listen address at all. (QUIC's listener,
# transport/quic/listener.py:1344, does the same; vouchnet runs TCP only.)
#
# Fix: replace that module function with `trio.open_tcp_listeners`, which py-libp2p used
# before (SO_REUSEADDR for quick restarts, never SO_REUSEPORT): our listen socket is then
# exclusive, and the bind fails if anyone else listens there. `check_listeners` then refuses
# to run a host that did not get every address, or whose listeners share their port.
#
# Trade-off: py-libp2p wanted SO_REUSEPORT for DCUtR TCP hole punching, which dials FROM the
# listen port (`_open_tcp_stream_from`, line 122). vouchnet uses neither relays nor DCUtR;
# should it, such a dial falls back to an ephemeral source port (that function's own
# fallback, line 143): direct connections still work, only NAT hole punching does not.
# ---------------------------------------------------------------------------------------
async def _open_exclusive_listeners(host: str | None, port: int) -> list[trio.SocketListener]:
    return await trio.open_tcp_listeners(port, host=host, backlog=128)


def exclusive_tcp_listeners() -> None:
    """Make py-libp2p's TCP listen sockets exclusive, process-wide (see (n)); idempotent."""
    from libp2p.transport.tcp import tcp as libp2p_tcp

    if getattr(libp2p_tcp, "_open_reuseport_listeners", None) is _open_exclusive_listeners:
        return
    if not callable(getattr(libp2p_tcp, "_open_reuseport_listeners", None)):
        raise RuntimeError("py-libp2p's TCP transport changed: re-check workaround (n) in "
                           "overlay/net/libp2p_compat/tcp.py")
    libp2p_tcp._open_reuseport_listeners = _open_exclusive_listeners  # type: ignore[attr-defined]


def missing_listeners(host: IHost, requested: list[Any]) -> list[Any]:
    """The requested listen multiaddrs ``host``'s swarm has no listener for (see (n)).

    The swarm keeps a listener per address it listened on (``Swarm.listeners``, keyed by the
    multiaddr string) and drops the key when listening failed (network/swarm.py line 1937).
    """
    listeners = getattr(host.get_network(), "listeners", None)
    if not isinstance(listeners, dict):
        raise RuntimeError("py-libp2p's Swarm changed: re-check workaround (n) in overlay/net/libp2p_compat/tcp.py")
    return [a for a in requested if str(a) not in listeners]


def shared_listen_sockets(host: IHost) -> list[str]:
    """``ip:port`` of every listen socket of ``host`` that has SO_REUSEPORT set (see (n))."""
    shared = []
    for listener in host.get_network().listeners.values():
        for sl in getattr(listener, "listeners", []):
            sock = getattr(sl, "socket", None)
            if sock is not None and sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT):
                name = sock.getsockname()
                shared.append(f"{name[0]}:{name[1]}")
    return shared
