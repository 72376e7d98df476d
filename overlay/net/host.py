"""Building and running vouchnet's py-libp2p host.

The host is deliberately narrow: TCP only, Noise only (no plaintext, SECIO or TLS), Yamux
only. Its identity is the Ed25519 key derived from a 32-byte seed, so the peer ID is a
pure function of the seed (:func:`peer_id_from_seed`).

py-libp2p quirks are handled in :mod:`overlay.net.libp2p_compat` (imported first, so the
``libp2p`` logger keeps our configuration).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from overlay.net.libp2p_compat import (
    IdentifyLimits,
    IdentifyTrim,
    OnWindowViolation,
    bound_identify_intake,
    StreamFailure,
    connection_config,
    disable_auto_dial,
    enforce_receive_windows,
    exclusive_tcp_listeners,
    guard_inbound_streams,
    import_libp2p,
    missing_listeners,
    redial_closed_connections,
    shared_listen_sockets,
)
from overlay.net.listen import ListenError, listen_error

libp2p = import_libp2p()

import multiaddr  # noqa: E402
import trio  # noqa: E402
from libp2p.abc import IHost  # noqa: E402
from libp2p.crypto import ed25519, x25519  # noqa: E402
from libp2p.crypto.keys import KeyPair  # noqa: E402
from libp2p.custom_types import TProtocol  # noqa: E402
from libp2p.network.config import ConnectionConfig  # noqa: E402
from libp2p.peer.id import ID  # noqa: E402
from libp2p.peer.peerinfo import PeerInfo  # noqa: E402
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID  # noqa: E402
from libp2p.security.noise.transport import Transport as NoiseTransport  # noqa: E402
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID  # noqa: E402
from libp2p.stream_muxer.yamux.yamux import Yamux  # noqa: E402
from libp2p.transport.tcp.tcp import TCP  # noqa: E402

from trust.errors import ConfigError  # noqa: E402

__all__ = [
    "SEED_SIZE",
    "DEFAULT_LISTEN_ADDRS",
    "keypair_from_seed",
    "peer_id_from_seed",
    "build_host",
    "running_host",
    "parse_peer_multiaddr",
    "ListenError",
]

SEED_SIZE = 32
DEFAULT_LISTEN_ADDRS = ("/ip4/127.0.0.1/tcp/0",)


def keypair_from_seed(seed: bytes) -> KeyPair:
    """The libp2p Ed25519 key pair whose private key is ``seed`` (exactly 32 bytes).

    The length is checked here because ``Ed25519PrivateKey.new(seed)`` (libp2p/crypto/
    ed25519.py) silently generates a RANDOM key when ``seed`` is falsy (``b""``).
    """
    if not isinstance(seed, (bytes, bytearray)) or len(seed) != SEED_SIZE:
        raise ValueError(f"identity seed must be exactly {SEED_SIZE} bytes")
    return ed25519.create_new_key_pair(bytes(seed))


def peer_id_from_seed(seed: bytes) -> str:
    """The peer ID (``12D3KooW...``) of the host built from ``seed``."""
    return str(ID.from_pubkey(keypair_from_seed(seed).public_key))


def build_host(
    seed: bytes,
    *,
    enable_mdns: bool = False,
    auto_dial: bool = False,
    conn_config: ConnectionConfig | None = None,
    negotiate_timeout: int = 10,
    on_stream_failure: StreamFailure | None = None,
    on_window_violation: OnWindowViolation | None = None,
    on_identify_trim: IdentifyTrim | None = None,
    identify_limits: IdentifyLimits | None = None,
    **new_host_kwargs: Any,
) -> IHost:
    """A py-libp2p host with the Ed25519 identity from ``seed`` and our fixed stack.

    - transport: TCP only (explicit ``transports=[TCP()]``);
    - security: Noise only (explicit ``sec_opt``; the library default would also offer
      TLS, SECIO and ``/plaintext/2.0.0``);
    - muxer: Yamux only (explicit ``muxer_opt``; the default also offers Mplex);
    - ``ConnectionConfig(max_connections_per_peer=1)`` unless ``conn_config`` is given
      (see libp2p_compat (b): avoids a 250 ms wait on every dial);
    - no automatic dialing of peerstore peers unless ``auto_dial=True`` (libp2p_compat
      (f): the swarm would otherwise dial every known peer every 10 s, including
      addresses learnt from other peers).

    Every inbound stream, of every protocol, runs inside one guard (libp2p_compat (m)): a
    failure ends that stream only and is reported to ``on_stream_failure``. Every connection
    whose peer sends past the Yamux receive window it was granted, or makes us buffer more
    than a connection may, is closed and reported to ``on_window_violation`` (libp2p_compat
    (o)). What a peer's identify and identify-push can make the host store is bounded
    (``identify_limits``, default :class:`~overlay.net.libp2p_compat.IdentifyLimits`); what is
    dropped is reported to ``on_identify_trim`` by field (libp2p_compat (v)).

    ``negotiate_timeout`` (seconds, libp2p default 30) bounds multistream-select protocol
    negotiation on new streams. ``enable_mdns`` is passed to libp2p as is (measured: its
    mDNS only worked on loopback when zeroconf was limited to 127.0.0.1).

    The Noise static key is a fresh X25519 key per host, as ``libp2p.new_swarm`` does by
    default: Noise binds it to the identity by signing it with the Ed25519 key, so it
    need not be persistent.

    Extra keyword arguments go to ``libp2p.new_host`` (e.g. ``peerstore_opt``); the
    security, muxer and transport options cannot be overridden here.
    """
    for forbidden in ("key_pair", "sec_opt", "muxer_opt", "transports", "connection_config"):
        if forbidden in new_host_kwargs:
            raise TypeError(f"build_host() does not accept {forbidden!r}")
    key_pair = keypair_from_seed(seed)
    noise_static = x25519.create_new_key_pair()
    sec_opt = {
        TProtocol(NOISE_PROTOCOL_ID): NoiseTransport(key_pair, noise_privkey=noise_static.private_key),
    }
    muxer_opt = {TProtocol(YAMUX_PROTOCOL_ID): Yamux}
    host = libp2p.new_host(
        key_pair=key_pair,
        sec_opt=sec_opt,
        muxer_opt=muxer_opt,
        transports=[TCP()],
        connection_config=conn_config if conn_config is not None else connection_config(),
        enable_mDNS=enable_mdns,
        negotiate_timeout=negotiate_timeout,
        **new_host_kwargs,
    )
    exclusive_tcp_listeners()  # (n): our listen ports are ours alone, never shared
    if not auto_dial:
        disable_auto_dial(host)
    guard_inbound_streams(host, on_stream_failure)
    enforce_receive_windows(host, on_window_violation)
    redial_closed_connections(host)  # (u)
    bound_identify_intake(host, identify_limits, on_identify_trim)  # (v)
    return host


@asynccontextmanager
async def running_host(
    seed: bytes,
    listen_addrs: Sequence[str] = DEFAULT_LISTEN_ADDRS,
    **build_kwargs: Any,
) -> AsyncIterator[IHost]:
    """Build a host from ``seed``, listen on ``listen_addrs`` and yield it (trio).

    Inside the block ``host.get_addrs()`` gives full multiaddrs ending in ``/p2p/<id>``
    (with ``/tcp/0`` replaced by the bound port). On exit the host's network service is
    stopped (listeners and connections closed), then ``host.close()`` is called (shielded
    from cancellation, at most 5 s). An exception raised in the block comes out as itself,
    not inside the ExceptionGroups that py-libp2p's nurseries would wrap it in.

    Raises :class:`~overlay.net.listen.ListenError` before yielding if any address could not be
    listened on (py-libp2p would run on without it) or a listen socket would share its port
    (libp2p_compat (n)).
    """
    addrs = [_multiaddr(a) for a in listen_addrs]
    host = build_host(seed, **build_kwargs)
    sole: BaseException | None = None
    try:
        try:
            async with host.run(listen_addrs=addrs):
                _check_listening(host, addrs)
                yield host
        except BaseExceptionGroup as group:
            # `host.run` wraps whatever the body raises in two trio nursery groups
            # (libp2p/host/basic_host.py `_run` and the network service). Hand a single
            # exception back as itself so callers can simply `except` it.
            sole = _sole_exception(group)
            if sole is None:
                raise
    finally:
        # Shielded so the host is closed even when we leave through a cancellation;
        # bounded so a stuck close cannot hang the caller.
        with trio.move_on_after(_CLOSE_TIMEOUT) as scope:
            scope.shield = True
            await host.close()
    if sole is not None:
        raise sole


_CLOSE_TIMEOUT = 5.0


def _check_listening(host: IHost, addrs: Sequence[multiaddr.Multiaddr]) -> None:
    missing = missing_listeners(host, list(addrs))
    if missing:
        raise listen_error(str(missing[0]))
    shared = shared_listen_sockets(host)
    if shared:  # (n) did not take: py-libp2p changed how it opens listen sockets
        raise ListenError(f"refusing to listen on {shared[0]}: the socket would share its port (SO_REUSEPORT); "
                          "re-check workaround (n) in overlay/net/libp2p_compat/tcp.py")


def _sole_exception(group: BaseExceptionGroup) -> BaseException | None:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return None if isinstance(exc, BaseExceptionGroup) else exc


def _multiaddr(s: str) -> multiaddr.Multiaddr:
    try:
        return multiaddr.Multiaddr(s)
    except Exception as exc:  # the multiaddr package raises several unrelated types
        raise ConfigError(f"invalid multiaddr {s!r}: {exc}") from None


def parse_peer_multiaddr(s: str) -> PeerInfo:
    """Parse ``/ip4/1.2.3.4/tcp/4001/p2p/12D3KooW...`` into a ``PeerInfo``.

    Raises ``ConfigError`` for a malformed multiaddr, one that does not end in
    ``/p2p/<peer id>``, or one with no transport address before the ``/p2p/`` part.
    """
    if not isinstance(s, str) or not s.strip():
        raise ConfigError("peer address is empty; expected /ip4/<ip>/tcp/<port>/p2p/<peer id>")
    maddr = _multiaddr(s.strip())
    try:
        protos = list(maddr.protocols())
    except Exception as exc:
        raise ConfigError(f"invalid multiaddr {s!r}: {exc}") from None
    if not protos or protos[-1].name != "p2p":
        raise ConfigError(f"peer address {s!r} must end in /p2p/<peer id> (e.g. .../tcp/4001/p2p/12D3KooW...)")
    if len(protos) < 2:
        raise ConfigError(f"peer address {s!r} has no transport address before /p2p/")
    try:
        from libp2p.peer.peerinfo import info_from_p2p_addr

        info = info_from_p2p_addr(maddr)
    except Exception as exc:
        raise ConfigError(f"invalid peer address {s!r}: {exc}") from None
    if any(p.name == "p2p" for a in info.addrs for p in a.protocols()):
        raise ConfigError(f"peer address {s!r} has more than one /p2p/ part")
    return info
