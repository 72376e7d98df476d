"""The vouchnet node: a py-libp2p host serving and fetching Merkle-verified content.

One trio task tree: the host (TCP + Noise + Yamux), the Kademlia DHT for provider records, the
content protocol handler, the control socket and, if enabled, the metrics endpoint. Serving is
bounded: a per-peer and a global stream limit, a deadline per request and per frame, and at
most one chunk buffered per stream, so a slow or silent peer cannot pin memory or tasks.
"""
from __future__ import annotations

import logging
import signal
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import trio

from overlay.wire import protocol
from overlay.config import Config
from overlay.node.control import serve_control, socket_path
from overlay.home import Home
from overlay.net.host import parse_peer_multiaddr, running_host
from overlay.wire.framing import FrameWriter
from overlay.net.local_discovery import LocalDiscovery
from overlay.net.libp2p_compat import (WRITE_SIZE, announce_directly, ask_directly, WindowViolation, connect_fresh, connection_config_for,
                                   find_providers_early, forget_failed_dial, gate_inbound_connections,
                                   rank_provider_records, resource_manager_for, whole_frames)
from overlay.net.limits import ConnectionGate
from overlay.net.stream_limits import StreamGate
from overlay.metrics import Metrics
from overlay.store import ContentStore
from overlay.wire.streams import close_quietly, receive, reset_quietly, send
from trust.errors import DecodeError, StoreError, VouchnetError
from trust.identity import Identity
from trust.manifest import content_id_from_digest, parse_cid
from overlay.services.reputation import ReputationService
from overlay.services.policy import PolicyService
from trust.observations import MAX_EVIDENCE, Kind, Observation

from libp2p.kad_dht.kad_dht import DHTMode, KadDHT  # noqa: E402  (after overlay.net.host's import fix)
from libp2p.peer.peerinfo import PeerInfo  # noqa: E402
from libp2p.tools.anyio_service import background_trio_service  # noqa: E402

log = logging.getLogger("vouchnet.node")

CONTENT_PROTOCOL = protocol.PROTOCOL_ID  # defined once, in the sans-IO protocol
DHT_PATIENCE = 1.0  # seconds a provider lookup goes on for more once it has found some


def dht_key(digest: bytes) -> str:
    """Provider-record key: the hex multihash (sha2-256) of the manifest digest."""
    return (b"\x12\x20" + digest).hex()


@dataclass
class Limits:
    streams_per_peer: int = 4
    request_timeout: float = 10.0  # whole request, server side
    frame_timeout: float = 10.0    # one frame, client side: a stall is detected this fast
    dht_timeout: float = 5.0
    # A request is one frame of at most protocol.MAX_REQUEST bytes, written at once by an honest
    # client: a stream that takes longer to send it is a slow sender (slowloris), not a slow link.
    request_read_timeout: float = 2.0


@dataclass
class PeerState:
    # A peer's chunk requests are answered one after another in arrival order (trio.Lock is
    # fair): a pipelining client gets each answer whole rather than all of them interleaved,
    # so its next request is queued here while the current one is still being sent.
    sending: trio.Lock = field(default_factory=trio.Lock)


class Node:
    def __init__(self, home: Home, identity: Identity, config: Config, *,
                 listen: list[str] | None = None, bootstrap: list[str] | None = None,
                 limits: Limits | None = None):
        self.home = home
        self.identity = identity
        self.config = config
        self.listen = listen or config.listen
        self.bootstrap = list(config.bootstrap) + list(bootstrap or [])
        self.limits = limits or Limits(streams_per_peer=config.streams_per_peer, request_timeout=config.request_timeout,
                                       frame_timeout=config.request_timeout)
        self.store = ContentStore(home.store_dir)
        self.metrics = Metrics()
        self.reputation = ReputationService(home.path, identity, anchors=config.anchors, damping=config.damping,
                                            interval=config.reputation_interval, trust_floor=config.trust_floor,
                                            metrics=self.metrics, intake=config.intake_limits())
        self.policy = PolicyService.for_node(home.path, config, self.reputation)  # ConfigError if invalid
        self.reputation.policy = self.policy  # gossip gates: relay_gossip, accept_attestation, accept_head
        self.peer_state: dict[str, PeerState] = {}
        self.stream_gate = StreamGate(replace(config.stream_limits(), per_peer=self.limits.streams_per_peer))
        self.connection_gate = ConnectionGate(config.connection_limits())  # [limits], compat (t)
        self.host: Any = None
        self.dht: KadDHT | None = None
        self._tasks: trio.Nursery | None = None  # background work of the running node
        self.started = time.time()
        self._stop = trio.Event()
        self._served_since_flush: dict[str, list[int]] = {}

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self, ready: Callable[["Node"], None] | None = None) -> None:
        try:
            await self._run(ready)
        finally:  # also when the host could not start (e.g. ListenError): store and ledger closed
            self.close()

    async def _run(self, ready: Callable[["Node"], None] | None) -> None:
        conn_limits = self.connection_gate.limits
        async with running_host(self.identity.seed, self.listen, enable_mdns=self.config.mdns,
                                on_stream_failure=self.metrics.count_stream_failure,
                                conn_config=connection_config_for(conn_limits),
                                resource_manager=resource_manager_for(conn_limits),
                                on_window_violation=self._window_violation,
                                on_identify_trim=self.metrics.count_identify_trimmed) as host:
            self.host = host
            # compat (t): inbound connections by [limits], a share kept for trusted peers
            gate_inbound_connections(host, self.connection_gate, self.trusted_peer,
                                     self.metrics.count_connection_refused)
            self.policy.attach(host)  # inbound_connection: denied peers' connections are closed
            host.set_stream_handler(CONTENT_PROTOCOL, self._serve)
            self.dht = KadDHT(host, DHTMode.SERVER, strict_validation=True)
            rank_provider_records(self.dht, self._provider_rank)  # compat (s): sybils cannot crowd out trusted mirrors
            async with background_trio_service(self.dht), trio.open_nursery() as nursery:
                self._tasks = nursery
                await nursery.start(serve_control, socket_path(self.home.path), self._control_handlers())
                await nursery.start(self.reputation.run, host)
                await nursery.start(self.policy.run)  # writes aggregated policy decisions to the ledger
                if self.config.metrics_enabled:
                    self.metrics.serve(self.config.metrics_port)
                nursery.start_soon(self._watch_signals, nursery.cancel_scope)
                nursery.start_soon(self._join)
                if self.config.mdns:  # py-libp2p's mDNS only fills the peerstore; we dial
                    await nursery.start(LocalDiscovery(self.peer_id, self.connect,
                                                       lambda p: p in self.connected_peers()).run)
                if ready:
                    ready(self)
                await self._stop.wait()
                nursery.cancel_scope.cancel()

    def close(self) -> None:
        self._flush_served()
        self.store.close()
        self.policy.close()
        self.reputation.close()

    def stop(self) -> None:
        self._stop.set()

    async def _watch_signals(self, scope: trio.CancelScope) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
            async for sig in signals:
                if sig == signal.SIGHUP:  # reload the policy file; an invalid one leaves the old in force
                    self.policy.reload()
                    continue
                log.warning("received %s, stopping", signal.Signals(sig).name)
                self.stop()
                return

    @property
    def peer_id(self) -> str:
        return self.identity.peer_id

    def addrs(self) -> list[str]:
        return [str(a) for a in self.host.get_addrs()] if self.host else []

    # -- peers -------------------------------------------------------------------------------

    async def connect(self, addr: str) -> str:
        """Dial a full multiaddr (…/p2p/ID); returns the peer ID. Logs and raises on failure."""
        info = parse_peer_multiaddr(addr)
        if str(info.peer_id) == self.peer_id:
            raise VouchnetError("refusing to dial our own peer ID")
        self.policy.check_dial(str(info.peer_id), info)  # outbound_dial: PolicyDenied if refused
        try:
            with trio.fail_after(10):
                await connect_fresh(self.host, info)
        except Exception as exc:
            forget_failed_dial(self.host, info.peer_id)  # let a later retry dial for real
            log.warning("could not connect to %s: %s", addr, exc)
            raise VouchnetError(f"could not connect to {addr}: {exc}") from None
        if self.dht is not None:
            try:
                await self.dht.add_peer(info.peer_id)
            except Exception as exc:  # a peer without the DHT protocol is still a content peer
                log.debug("DHT did not take %s: %s", info.peer_id, exc)
        self.metrics.peers.set(len(self.host.get_connected_peers()))
        log.info("connected to %s", info.peer_id)
        return str(info.peer_id)

    async def _bootstrap(self, addr: str) -> None:
        """Dial a bootstrap peer; a dead or refused one is logged, never fatal to the node."""
        try:
            await self.connect(addr)
        except VouchnetError as exc:
            log.warning("bootstrap peer skipped: %s", exc)

    def _provider_rank(self, peer: str) -> float | None:
        """How the DHT orders providers it keeps and lists: our trust in them, less the share of
        credible fault reports; None (not kept) for a distrusted peer."""
        rep = self.reputation
        if rep.distrusted(peer):
            return None
        return rep.rep.trust_of(peer)[1] * (1.0 - rep.risk(peer))

    def trusted_peer(self, peer: str) -> bool:
        """May use the connections kept from strangers: an anchor, or trusted here and not distrusted."""
        rep = self.reputation
        if peer in rep.rep.anchors:
            return True
        if rep.distrusted(peer):
            return False
        local, glob = rep.rep.trust_of(peer)
        return local > 0 or glob > 0

    def connected_peers(self) -> list[str]:
        return [str(p) for p in self.host.get_connected_peers()] if self.host else []

    async def _join(self) -> None:
        """Dial the bootstrap peers (each bounded by connect's timeout), then announce what we
        hold: records sent before any peer is connected would reach no one."""
        async with trio.open_nursery() as nursery:
            for addr in self.bootstrap:
                nursery.start_soon(self._bootstrap, addr)
        await self._provide_all()

    async def _provide_all(self) -> None:
        for item in self.store.list():
            if item.complete:
                await self.provide(item.cid)

    async def provide(self, cid: str) -> None:
        if self.dht is None:
            return
        key = bytes.fromhex(dht_key(parse_cid(cid)))
        with trio.move_on_after(self.limits.dht_timeout):
            try:
                # Our own connected peers first, trusted ones first (libp2p_compat (w)): sybils
                # can own the XOR-closest set, not the peers we chose to be connected to.
                peers = sorted(self.host.get_connected_peers(), key=lambda p: not self.trusted_peer(str(p)))
                await announce_directly(self.dht, peers, key, self.limits.dht_timeout / 2)
                await self.dht.provide(dht_key(parse_cid(cid)))
            except Exception as exc:
                log.info("could not announce %s on the DHT: %s", cid, exc)

    def provide_soon(self, cid: str) -> None:
        """Announce in the background: a DHT provide can take the whole dht_timeout (unresponsive
        peers in the routing table), and a finished fetch should not wait for it."""
        if self._tasks is not None:
            self._tasks.start_soon(self.provide, cid)

    async def find_providers(self, cid: str) -> list[PeerInfo]:
        if self.dht is None:
            return []
        key = dht_key(parse_cid(cid))
        # Our connected peers first, trusted first, asked every time (libp2p_compat (w)); then
        # the lookup, stopped early once enough holders are known (libp2p_compat (k)): it only
        # returns after searching the whole network, and loses everything on a timeout.
        peers = sorted(self.host.get_connected_peers(), key=lambda p: not self.trusted_peer(str(p)))
        found: list[PeerInfo] = await ask_directly(self.dht, peers, bytes.fromhex(key), self.limits.dht_timeout / 2)
        if len({str(i.peer_id) for i in found} - {self.peer_id}) < self.config.max_providers:
            found += await find_providers_early(
                self.dht, key, 20, enough=self.config.max_providers,
                patience=DHT_PATIENCE, limit=self.limits.dht_timeout)
        unique: dict[str, PeerInfo] = {}
        for info in found:  # py-libp2p returns duplicates
            if str(info.peer_id) != self.peer_id:
                unique.setdefault(str(info.peer_id), info)
        return list(unique.values())

    def _window_violation(self, v: WindowViolation) -> None:
        """A connection closed by libp2p_compat (o): counted; recorded against the peer when it
        broke the protocol (sent past its window), not when it only reached our own caps."""
        self.metrics.count_window_violation(v.reason)
        if v.proves_misbehaviour:
            self.record(Observation(v.peer, Kind.PROTOCOL_VIOLATION, evidence=v.detail[:MAX_EVIDENCE]))

    def record(self, *obs: Observation) -> None:
        try:
            self.reputation.record(*obs)
        except Exception:
            log.exception("could not record observations")

    # -- serving -----------------------------------------------------------------------------

    async def _serve(self, stream) -> None:
        """One inbound content stream: its request must arrive within request_read_timeout
        holding only a pending slot; answering it takes a serving slot (strangers a share)."""
        peer = str(stream.muxed_conn.peer_id)
        ticket = self.stream_gate.open(peer)
        if isinstance(ticket, str):
            self.metrics.streams_refused.labels(ticket).inc()
            await self._refuse(stream, protocol.ErrorCode.BUSY, f"node is busy ({ticket.replace('_', ' ')} limit)")
            return
        t0 = time.perf_counter()
        kind = "unknown"
        try:
            request = await self._read_request(stream, peer)
            if request is None:
                kind = "empty"
                return
            reason = self.stream_gate.serve(ticket, self.trusted_peer(peer))
            if reason is not None:
                self.metrics.streams_refused.labels(reason).inc()
                await self._refuse(stream, protocol.ErrorCode.BUSY, f"node is busy ({reason} limit)")
                return
            with trio.move_on_after(self.limits.request_timeout) as scope:
                kind = await self._answer(stream, peer, request)
            if scope.cancelled_caught:
                self.record(Observation(peer, Kind.TIMEOUT, evidence="request not completed in time (serving)"))
                self.metrics.requests.labels(kind, "timeout").inc()
        finally:
            self.stream_gate.close(ticket)
            if not self.stream_gate.streams_of(peer):
                self.peer_state.pop(peer, None)  # kept only while the peer has streams: sybils can't grow it
            self.metrics.request_seconds.observe(time.perf_counter() - t0)
            await close_quietly(stream)

    async def _refuse(self, stream, code: "protocol.ErrorCode", message: str) -> None:
        with trio.move_on_after(1):
            try:
                await send(stream, protocol.Error.from_text(code, message))
            except Exception:  # nosec B110 - best effort; the stream is closed next
                pass
        await close_quietly(stream)

    async def _read_request(self, stream, peer: str) -> Any:
        """The stream's request, or None (EOF, too slow, malformed: answered and recorded here)."""
        try:
            payload = await receive(stream, self.limits.request_read_timeout, limit=protocol.MAX_REQUEST)
            if payload is None:
                return None
            return protocol.ServerExchange().receive_request(payload)
        except trio.TooSlowError:
            self.metrics.requests.labels("slow", "refused").inc()
            self.record(Observation(peer, Kind.TIMEOUT, evidence=(
                f"request not sent within {self.limits.request_read_timeout:g} s (serving)")))
            await self._refuse(stream, protocol.ErrorCode.BAD_REQUEST, "request not sent in time")
            await reset_quietly(stream)  # what it still sends would sit in our buffers unread
            return None
        except DecodeError as exc:
            self.record(Observation(peer, Kind.PROTOCOL_VIOLATION, evidence=f"bad request: {exc}"))
            self.metrics.requests.labels("invalid", "refused").inc()
            await self._refuse(stream, protocol.ErrorCode.BAD_REQUEST, str(exc))
            return None

    async def _answer(self, stream, peer: str, request: Any) -> str:
        # serve_request: DENIED, or BUSY over a LIMIT after waiting briefly for its tokens
        refusal = await self.policy.serve_refusal(peer, stream, request, self.store, self.limits.request_timeout / 2)
        if refusal is not None:
            self.metrics.requests.labels("policy", "refused").inc()
            await self._refuse(stream, *refusal)
            return "refused"
        if isinstance(request, protocol.GetManifest):
            item = self.store.get(request.cid)
            if item is None or not item.complete:
                await send(stream, protocol.Error(protocol.ErrorCode.NOT_FOUND, "no such content here"))
                self.metrics.requests.labels("manifest", "not_found").inc()
            else:
                await send(stream, protocol.ManifestMsg(item.signed_manifest))
                self.metrics.requests.labels("manifest", "ok").inc()
            return "manifest"
        cid = content_id_from_digest(request.digest)
        found = self.store.lookup(cid)
        if found is None or not found[1]:
            await send(stream, protocol.Error(protocol.ErrorCode.NOT_FOUND, "no such content here"))
            self.metrics.requests.labels("chunks", "not_found").inc()
            return "chunks"
        n = found[0].chunk_count
        end = request.start + request.count
        if end > n:
            await send(stream, protocol.Error(protocol.ErrorCode.BAD_REQUEST, f"content has {n} chunks"))
            return "chunks"
        served = 0
        out = FrameWriter(whole_frames(stream), protocol.MAX_MESSAGE, WRITE_SIZE)
        async with self.peer_state.setdefault(peer, PeerState()).sending:
            for index in range(request.start, end):
                try:
                    data, proof = self.store.read_chunk(cid, index)
                except StoreError as exc:
                    log.error("cannot serve chunk %d of %s: %s", index, cid, exc)
                    await out.write(protocol.encode_parts(protocol.Error(protocol.ErrorCode.INTERNAL,
                                                                         "chunk unavailable")))
                    break
                await out.write(protocol.encode_parts(protocol.Chunk(index, tuple(proof), data)))
                served += len(data)
            await out.flush()
        self.metrics.bytes_served.inc(served)
        self.metrics.requests.labels("chunks", "ok").inc()
        self._note_served(peer, served, end - request.start)
        return "chunks"

    def _note_served(self, peer: str, nbytes: int, chunks: int) -> None:
        acc = self._served_since_flush.setdefault(peer, [0, 0])
        acc[0] += nbytes
        acc[1] += chunks
        if acc[1] >= 64:
            self._flush_served()

    def _flush_served(self) -> None:
        obs = [Observation(p, Kind.SERVED, count=c, nbytes=b) for p, (b, c) in self._served_since_flush.items() if c]
        self._served_since_flush.clear()
        if obs:
            self.record(*obs)

    # -- control interface -------------------------------------------------------------------

    def _control_handlers(self) -> dict:
        from overlay.node.operations import handlers
        return handlers(self)


def write_ready_line(node: Node) -> None:
    """Print the peer ID and listen addresses (the first lines a user or test reads)."""
    print(f"vouchnet node {node.peer_id}", flush=True)
    for a in node.addrs():
        print(f"listening on {a}", flush=True)
    print(f"control socket {socket_path(node.home.path)}", flush=True)
