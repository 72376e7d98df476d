"""Workaround (t): inbound connection limits by trust. See the package docstring."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, Hashable

import trio

if TYPE_CHECKING:  # pragma: no cover - typing only
    from libp2p.abc import IHost

from overlay.net.limits import ConnectionGate, ConnectionLimits

log = logging.getLogger("vouchnet.limits")

Refused = Callable[[str], None]  # reason (overlay.net.limits.REASONS)


# ---------------------------------------------------------------------------------------
# (t) [inbound connections] py-libp2p admits inbound connections first come, first served,
# and a closed one keeps its slot for the life of the node.
#
# Verified (paths relative to site-packages/libp2p):
# - __init__.py new_swarm (lines 779-789) always attaches a default rcmgr
#   (rcmgr/manager.py new_resource_manager, line 827): ResourceLimits(max_connections=1000)
#   (line 69), a per-peer connection rate limit of 10/s, burst 50 (lines 139-141), NO CIDR
#   limits (cidr_limits=None, line 143), and ConnectionLimits defaults (rcmgr/
#   connection_limits.py line 236: pending_inbound 64, established_inbound 256, per_peer 8,
#   total 1024). Swarm.upgrade_inbound_raw_conn (network/swarm.py line 2104) asks it once
#   before the Noise handshake with the IP only (total and CIDR; nothing per IP or per
#   subnet: rcmgr/cidr_limits.py counts one bucket per configured network, not per /24), and
#   once after it with the peer ID (line 2203); add_conn applies the lifecycle limits
#   (line 2452). max_pending_inbound is never checked (handle_pending_inbound_connection
#   has no caller). Nothing knows trust: the only bypass is rcmgr's allowlist
#   (manager.py line 318), a static list of peer IDs or networks.
# - network/swarm.py `_handle_inbound_connection` (line 1947) takes a token of
#   `_inbound_limiter` (max_connections - min_connections = 250, line 348) per inbound
#   connection and returns it in `finally` (line 1999); but after a successful upgrade
#   `_do_handle_inbound_connection` parks in `await self.manager.wait_finished()` (line 2060)
#   until the whole swarm stops, so the token (and the task) is never returned when the
#   connection closes. Measured: with 10 tokens, the 11th connect-and-close cycle and every
#   later inbound connection were refused; with the defaults, 250 cycles lock inbound out
#   for good (tests/hostile/test_connection_flood.py, churn test: 250 accepted, then refused).
# - Measured: 300 fresh identities connecting at once to a default host: 250 accepted,
#   50 refused, in arrival order.
#
# Fix: wrap the swarm's two inbound entry points on the instance (both are looked up on
# `self` by their callers: the listener's conn_handler, line 1914, and
# upgrade_inbound_raw_conn, line 2282). `_handle_inbound_connection` asks
# overlay.net.limits.ConnectionGate.begin(ip) before any handshake work (per IP, per /24 or /48,
# pending handshakes, total) and runs the original inside a cancel scope that is cancelled
# once the connection has closed, which unparks it so the limiter token and the task are
# returned. `add_conn(direction="inbound")` asks ConnectionGate.establish(peer, trusted)
# before the connection is registered or any stream on it is served (per peer, strangers'
# share, total). The rcmgr is kept as a backstop (rate limit, memory) with its connection
# caps raised above ours (`resource_manager_for`), and the swarm's own max_connections too
# (`connection_config_for`), so that vouchnet's limits are the ones that decide.
# ---------------------------------------------------------------------------------------
def gate_inbound_connections(host: IHost, gate: ConnectionGate, trusted: Callable[[str], bool],
                             on_refused: Refused | None = None) -> "InboundHook":
    """Put every inbound connection of ``host`` through ``gate`` (see (t)); idempotent."""
    swarm: Any = host.get_network()
    existing = getattr(swarm, "_vouchnet_inbound_hook", None)
    if existing is not None:
        return existing
    for name in ("_handle_inbound_connection", "add_conn", "register_notifee"):
        if not callable(getattr(swarm, name, None)):
            raise RuntimeError(f"py-libp2p's Swarm has no {name}: re-check workaround (t) in "
                               "overlay/net/libp2p_compat/connections.py")
    hook = InboundHook(swarm, gate, trusted, on_refused)
    swarm._vouchnet_inbound_hook = hook
    return hook


def connection_config_for(limits: ConnectionLimits, **overrides: Any) -> Any:
    """Workaround (b)'s ConnectionConfig with the swarm's caps above ``limits`` (see (t))."""
    from overlay.net.libp2p_compat.dialing import connection_config

    # Room for every inbound connection we admit, its handshake, and our own dials.
    cap = max(300, limits.total + limits.pending + 64)
    return connection_config(max_connections=cap, high_watermark=cap, **overrides)


def resource_manager_for(limits: ConnectionLimits) -> Any:
    """py-libp2p's rcmgr as a backstop: its connection caps above ``limits`` (see (t))."""
    from libp2p.rcmgr import ResourceLimits, new_resource_manager
    from libp2p.rcmgr.connection_limits import new_connection_limits_with_defaults

    cap = max(300, limits.total + limits.pending + 64)
    conn_limits = new_connection_limits_with_defaults()
    conn_limits.max_established_inbound = max(256, cap)
    conn_limits.max_established_total = max(1024, cap)
    conn_limits.max_established_per_peer = max(8, limits.per_peer)
    # rcmgr counts an inbound connection twice while it upgrades (before and after the handshake).
    return new_resource_manager(limits=ResourceLimits(max_connections=max(1000, 2 * cap)),
                                connection_limits=conn_limits)


class InboundHook:
    """The installed wrappers and the bookkeeping that ties a socket to its gate entry."""

    def __init__(self, swarm: Any, gate: ConnectionGate, trusted: Callable[[str], bool],
                 on_refused: Refused | None) -> None:
        self.gate = gate
        self._trusted = trusted
        self._on_refused = on_refused
        self._pending: dict[tuple[str, int], Hashable] = {}  # remote (ip, port) -> key, until add_conn
        self._scopes: dict[Hashable, trio.CancelScope] = {}  # key -> the parked inbound handler
        self._conns: dict[Hashable, Any] = {}                # key -> muxed connection, once admitted
        self._keys: dict[int, Hashable] = {}                 # id(muxed connection) -> key
        self._handle = swarm._handle_inbound_connection
        self._add_conn = swarm.add_conn
        swarm._handle_inbound_connection = self.handle_inbound
        swarm.add_conn = self.add_conn
        swarm.register_notifee(_Closed(self))

    # -- before the handshake ------------------------------------------------------------------
    async def handle_inbound(self, read_write_closer: Any, maddr: Any) -> None:
        self.sweep()
        remote = _remote(read_write_closer)
        key = _Key()
        reason = self.gate.begin(key, remote[0] if remote else "?")
        if reason:
            self._refused(reason, remote)
            with trio.move_on_after(1):
                try:
                    await read_write_closer.close()
                except Exception:  # nosec B110 - the socket may be gone already
                    pass
            return
        if remote:
            self._pending[remote] = key
        try:
            with trio.CancelScope() as scope:
                self._scopes[key] = scope
                await self._handle(read_write_closer, maddr)
        finally:
            self._forget(key, remote)

    # -- after the handshake, before the connection is registered ---------------------------------
    async def add_conn(self, muxed_conn: Any, direction: str = "unknown") -> Any:
        if direction != "inbound":
            return await self._add_conn(muxed_conn, direction)
        from libp2p.network.exceptions import SwarmException

        remote = _remote(muxed_conn)
        key = self._pending.pop(remote, None) if remote else None
        peer = str(muxed_conn.peer_id)
        try:
            trusted = bool(self._trusted(peer))
        except Exception:  # noqa: BLE001 - a failing trust lookup means "not trusted", not a crash
            log.exception("trust lookup failed for %s", peer)
            trusted = False
        if key is None:  # not seen before its handshake (another transport): checked here in full
            key = _Key()
            reason = self.gate.establish(key, peer, trusted, ip=remote[0] if remote else "?")
        else:
            reason = self.gate.establish(key, peer, trusted)
        if reason:
            self._refused(reason, remote, peer)
            _release_scope(muxed_conn)
            with trio.move_on_after(5):
                try:
                    await muxed_conn.close()
                except Exception:  # nosec B110 - closing a refused connection, best effort
                    pass
            raise SwarmException(f"inbound connection refused by vouchnet limits: {reason}")
        try:
            conn = await self._add_conn(muxed_conn, direction)
        except BaseException:
            self.gate.end(key)
            raise
        self._conns[key] = muxed_conn
        self._keys[id(muxed_conn)] = key
        if muxed_conn.is_closed:
            self.closed(key)
        return conn

    # -- when it ends ---------------------------------------------------------------------------
    def closed(self, key: Hashable) -> None:
        """The connection is gone: free its limits and unpark its inbound handler."""
        self.gate.end(key)
        muxed = self._conns.pop(key, None)
        if muxed is not None:
            self._keys.pop(id(muxed), None)
        scope = self._scopes.pop(key, None)
        if scope is not None:
            scope.cancel()

    def closed_muxed(self, muxed_conn: Any) -> None:
        key = self._keys.get(id(muxed_conn))
        if key is not None and self._conns.get(key) is muxed_conn and muxed_conn.is_closed:
            self.closed(key)

    def sweep(self) -> None:
        """Free connections that closed without a disconnect notification reaching us."""
        for key, muxed in list(self._conns.items()):
            if getattr(muxed, "is_closed", False):
                self.closed(key)

    def _forget(self, key: Hashable, remote: tuple[str, int] | None) -> None:
        self.gate.end(key)
        if remote and self._pending.get(remote) is key:
            del self._pending[remote]
        self._scopes.pop(key, None)
        muxed = self._conns.pop(key, None)
        if muxed is not None:
            self._keys.pop(id(muxed), None)

    def _refused(self, reason: str, remote: tuple[str, int] | None, peer: str = "") -> None:
        log.info("inbound connection refused (%s): %s %s", reason, remote[0] if remote else "?", peer)
        if self._on_refused is not None:
            try:
                self._on_refused(reason)
            except Exception:  # noqa: BLE001 - a counter must not turn into a crash
                log.exception("refusal hook failed")


class _Key:
    """One inbound connection's identity in the gate (unique, never reused)."""

    __slots__ = ()


def _release_scope(muxed_conn: Any) -> None:
    # The rcmgr scope taken after the handshake (swarm.py line 2211) is released by SwarmConn.close;
    # a connection refused before add_conn never gets a SwarmConn, so release it here.
    scope = getattr(muxed_conn, "_resource_scope", None)
    if scope is not None:
        try:
            scope.close()
        except Exception:  # nosec B110 - best effort; rcmgr's reconcile is the fallback
            pass


def _remote(obj: Any) -> tuple[str, int] | None:
    try:
        remote = obj.get_remote_address()
    except Exception:  # noqa: BLE001 - a transport without addresses
        return None
    if isinstance(remote, tuple) and len(remote) >= 2 and isinstance(remote[0], str):
        return remote[0], int(remote[1])
    return None


def _notifee_base() -> type:
    from libp2p.abc import INotifee

    return INotifee


class _Closed(_notifee_base()):  # type: ignore[misc]
    """Disconnect notifications: the prompt way a closed connection is freed (sweep is the fallback)."""

    def __init__(self, hook: InboundHook) -> None:
        self._hook = hook

    async def disconnected(self, network: Any, conn: Any) -> None:
        if not getattr(conn, "_shared_muxed_conn", False):
            self._hook.closed_muxed(getattr(conn, "muxed_conn", None))

    async def connected(self, network: Any, conn: Any) -> None:
        return None

    async def opened_stream(self, network: Any, stream: Any) -> None:
        return None

    async def closed_stream(self, network: Any, stream: Any) -> None:
        return None

    async def listen(self, network: Any, multiaddr: Any) -> None:
        return None

    async def listen_close(self, network: Any, multiaddr: Any) -> None:
        return None

