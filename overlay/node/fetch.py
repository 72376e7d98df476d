"""Fetching content from several providers at once, verifying every chunk before it is written.

Order of checks: the manifest must hash to the CID and carry a valid publisher signature
(else the provider is recorded as misbehaving and the next one is asked); every chunk must
prove its inclusion under the signed root before the store writes it. A provider that sends
a bad chunk or breaks the protocol is dropped for this fetch and recorded with the evidence; a
stalled or slow one loses its batch to another provider (and is dropped after two strikes);
when the queue runs dry, idle providers duplicate batches still in flight elsewhere (endgame),
so one slow peer cannot hold the fetch back. A provider that answers BUSY keeps its place:
the batch goes back to the queue and that worker backs off before asking again; BUSY or a
transient failure on the manifest request is retried the same way, round after round.

Providers the local policy refuses (outbound_dial for named ones, choose_provider for all) are
skipped and reported with the rule that refused them; the fetch fails on policy grounds only
when no allowed provider is left.

Throughput: each request's stream is granted a receive window for its whole answer (no Yamux
window stalls, no window updates); chunks are verified and written as they arrive (a fraction of
a millisecond each, less than a hand-off to a thread and back) and noted in the store a few at a
time, while the periodic fsync runs in a worker thread.
"""
from __future__ import annotations

import logging
import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import trio

from overlay.wire import protocol
from overlay.wire.framing import HEADER_SIZE
from overlay.net.libp2p_compat import window_for_response
from overlay.services.policy import PolicyDenied
from overlay.store import ChunkWriter
from overlay.wire.streams import close_quietly, frame_reader, receive, receive_from, send_payload
from policy import Action
from trust import merkle
from trust.errors import DecodeError, ProofError, SignatureError, StoreError, VouchnetError
from trust.manifest import Manifest, open_manifest, parse_cid
from trust.observations import Kind, Observation

log = logging.getLogger("vouchnet.fetch")

BATCH = protocol.MAX_CHUNKS_PER_REQUEST  # most chunks per request (16)
BATCH_BYTES = 4 << 20     # bytes per request (16 chunks of 256 KiB): amortises a stream and a round trip
STREAMS_PER_PROVIDER = 3  # pipelining: requests in flight per provider (servers allow 4 per peer)
ENDGAME_AFTER = 1.0       # seconds a batch may run elsewhere before an idle provider duplicates it
MAX_STRIKES = 2           # timeouts before a slow provider is dropped
RECORD_EVERY = 4          # verified chunks noted in the store together
BUSY_BACKOFF = 0.05       # seconds before retrying a provider that answered BUSY, doubling per answer in a row
BUSY_BACKOFF_MAX = 2.0
MAX_BUSY = 10             # BUSY answers in a row (no batch served in between) before a provider is dropped
MANIFEST_ROUNDS = 8       # rounds over the providers left for the manifest (back-off 0.1 s doubling to 2 s: ~7 s)


class FetchError(VouchnetError):
    pass


@dataclass
class ProviderStats:
    peer: str
    chunks: int = 0
    nbytes: int = 0
    strikes: int = 0
    busy: int = 0      # BUSY answers since it last served a batch
    dropped: str = ""  # why the provider was dropped, if it was


@dataclass
class FetchResult:
    cid: str
    size: int
    chunks: int
    seconds: float
    providers: dict[str, ProviderStats]
    already_had: int = 0
    refused: dict[str, str] = field(default_factory=dict)  # provider -> why the local policy skipped it

    def to_json(self) -> dict[str, Any]:
        return {"cid": self.cid, "size": self.size, "chunks": self.chunks, "seconds": round(self.seconds, 3),
                "already_had": self.already_had,
                "providers": {p: {"chunks": s.chunks, "bytes": s.nbytes, "strikes": s.strikes, "dropped": s.dropped}
                              for p, s in self.providers.items()},
                "refused_by_policy": dict(self.refused)}


@dataclass
class _Batch:
    indexes: list[int]
    failed_by: set[str] = field(default_factory=set)
    running: dict[str, float] = field(default_factory=dict)  # provider -> start time


def batch_size(chunk_size: int, missing: int, workers: int) -> int:
    """Chunks per request: about BATCH_BYTES, at most BATCH, and few enough that every worker
    gets a batch at the start (so small content is still spread over all providers)."""
    spread = -(-missing // max(workers, 1))
    return max(1, min(BATCH, BATCH_BYTES // chunk_size, spread))


def response_bytes(m: Manifest, start: int, count: int) -> int:
    """Most bytes an honest answer to GET_CHUNKS(start, count) takes on the wire: its CHUNK
    frames with the longest possible proofs, and an ERROR frame that may end them early."""
    per_chunk = HEADER_SIZE + protocol.CHUNK_HEADER_SIZE + merkle.HASH_SIZE * (m.chunk_count - 1).bit_length()
    data = sum(m.chunk_length(i) for i in range(start, start + count))
    return data + count * per_chunk + HEADER_SIZE + protocol.MAX_ERROR_SIZE


def order_providers(named: list[str], announced: list[str], connected: list[str], me: str,
                    rank: Callable[[list[str]], list[str]]) -> tuple[list[str], list[str]]:
    """(the order a fetch asks providers in, the peers ``rank`` left out: distrusted ones).

    Known holders (named with --from, or announced on the DHT) come before peers that are merely
    connected, each group in ``rank``'s order: ranked together, trusted non-holders took every
    provider slot and the fetch failed although a holder was known (24-node real-network run)."""
    unique: list[str] = []
    seen = {me}
    for p in (*named, *announced, *connected):
        if p not in seen:
            seen.add(p)
            unique.append(p)
    holders = set(named) | set(announced)
    ordered = rank([p for p in unique if p in holders]) + rank([p for p in unique if p not in holders])
    return ordered, sorted(set(unique) - set(ordered))


def refusal(action: Action, decision: Any) -> str:
    """How a provider refusal is reported: the enforcement point and the rule that refused."""
    if decision is None:
        return f"{action.value} denied by the local policy"
    return f"{action.value} denied by rule {decision.rule} ({decision.reason})"


async def dial_named(node: Any, addrs: list[str]) -> tuple[list[str], dict[str, str]]:
    """Connect to the providers named with --from: (their peer IDs, {peer: why the local policy
    refused to dial it}). A refused one is skipped so the fetch can go on with the others; an
    unreachable one still raises (the user named it)."""
    from overlay.net.host import parse_peer_multiaddr
    named: list[str] = []
    refused: dict[str, str] = {}
    for addr in addrs:
        try:
            named.append(await node.connect(addr))
        except PolicyDenied as exc:
            peer = str(parse_peer_multiaddr(addr).peer_id)
            refused[peer] = refusal(Action.OUTBOUND_DIAL, exc.decision)
            log.warning("skipping provider %s: %s", peer, refused[peer])
    return named, refused


def contiguous_batches(indexes: list[int], size: int = BATCH) -> list[list[int]]:
    out: list[list[int]] = []
    for i in sorted(indexes):
        if out and out[-1][-1] == i - 1 and len(out[-1]) < size:
            out[-1].append(i)
        else:
            out.append([i])
    return out


class Fetch:
    def __init__(self, node: Any, cid: str, providers: list[str],
                 progress: Callable[[int, int], Awaitable[None]] | None = None,
                 refused: dict[str, str] | None = None, holders: set[str] | None = None):
        self.node = node
        self.cid = cid
        self.digest = parse_cid(cid)
        self.candidates = providers  # in order (order_providers): known holders first
        self.holders = set(providers) if holders is None else holders
        self.refused: dict[str, str] = dict(refused or {})  # provider -> why the local policy skipped it
        self.progress = progress
        self.stats: dict[str, ProviderStats] = {}
        self.queue: deque[_Batch] = deque()
        self.in_flight: list[_Batch] = []
        self._workers: trio.CancelScope | None = None  # the request workers, cancelled once every chunk is in
        self.done: set[int] = set()
        self.changed = trio.Event()
        self.manifest: Manifest | None = None
        self._flush_due = trio.Event()
        self.done_bytes = 0

    def _stat(self, peer: str) -> ProviderStats:
        return self.stats.setdefault(peer, ProviderStats(peer))

    def _drop(self, peer: str, kind: Kind, evidence: str) -> None:
        st = self._stat(peer)
        if not st.dropped:
            st.dropped = f"{kind.value}: {evidence}"
            log.warning("dropping provider %s for %s: %s", peer, self.cid, evidence)
        self.node.record(Observation(peer, kind, self.cid, evidence=evidence))
        if kind in (Kind.CHUNK_INVALID, Kind.MANIFEST_INVALID):
            self.node.metrics.verification_failures.labels(kind.value).inc()

    def _notify(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    # -- local policy ------------------------------------------------------------------------

    def _choose(self, content_size: int | None) -> None:
        """choose_provider: skip the providers the local policy refuses, noting why; raise
        PolicyDenied only when that leaves none (naming every refused one and its rule)."""
        gate = getattr(self.node, "policy", None)  # overlay.services.policy.PolicyService
        if gate is not None and self.candidates:
            tier = getattr(getattr(self.node, "reputation", None), "tier", None)  # reported peers later
            kept: list[str] = []
            denied: dict[str, Any] = {}
            # Holders and non-holders apart: the policy's order (allowed before limited) must not
            # put a non-holder, which cannot serve, before a holder.
            for group in ([p for p in self.candidates if p in self.holders],
                          [p for p in self.candidates if p not in self.holders]):
                try:
                    kept += gate.choose_providers(group, content_size, tier=tier, denied=denied) if group else []
                except PolicyDenied:  # it refuses all of them: in `denied`, reported below
                    pass
            for peer, decision in denied.items():
                if peer not in self.refused:
                    self.refused[peer] = refusal(Action.CHOOSE_PROVIDER, decision)
                    log.warning("skipping provider %s for %s: %s", peer, self.cid, self.refused[peer])
            self.candidates = kept
        if not self.candidates and self.refused:
            raise PolicyDenied(f"local policy refuses every provider of {self.cid}: {self._refused_text()}. "
                               "`vouchnet policy explain --peer PEER --action choose_provider` (or outbound_dial) "
                               "shows why; change that rule, or name a provider it allows with --from")

    def _refused_text(self) -> str:
        items = [f"{p}: {why}" for p, why in self.refused.items()]
        more = f"; and {len(items) - 8} more" if len(items) > 8 else ""
        return "; ".join(items[:8]) + more

    def _refused_note(self) -> str:
        return f". Skipped by the local policy: {self._refused_text()}" if self.refused else ""

    # -- manifest ----------------------------------------------------------------------------

    async def _get_manifest(self) -> bytes:
        """Ask the providers in order for the signed manifest. A BUSY answer or a transient
        failure (reset, refused connection) keeps the provider for another round, after a
        back-off; only a proven fault or a timeout drops it, and NOT_FOUND/DENIED end its turn."""
        refused: list[str] = []  # providers' final ERROR answers (not found, denied), for the error message
        waiting = list(self.candidates)
        busy_note: dict[str, str] = {}
        for round_ in range(MANIFEST_ROUNDS):
            again: list[str] = []
            for peer in waiting:
                try:
                    signed = await self._ask_manifest(peer)
                except trio.TooSlowError:
                    self._drop(peer, Kind.TIMEOUT, "no manifest answer in time")
                    continue
                except (protocol.ProtocolViolation, DecodeError) as exc:
                    self._drop(peer, Kind.PROTOCOL_VIOLATION, f"manifest exchange: {exc}")
                    continue
                except _Busy as exc:
                    busy_note[peer] = f"busy: {exc}"
                    again.append(peer)
                    continue
                except _NotProvider as exc:
                    refused.append(f"{peer}: {exc}")
                    continue
                except Exception as exc:  # connection refused, reset: not evidence of malice
                    log.info("manifest request to %s failed: %s", peer, exc)
                    busy_note[peer] = f"unreachable: {exc}"
                    again.append(peer)
                    continue
                try:
                    _, manifest = open_manifest(signed, self.cid)
                except (DecodeError, SignatureError) as exc:
                    self._drop(peer, Kind.MANIFEST_INVALID, f"{exc}")
                    continue
                gate = getattr(self.node, "policy", None)
                if gate is not None:  # accept_content: PolicyDenied ends the fetch before anything is stored
                    gate.check_content(peer, manifest)
                return signed
            if not again:
                break
            waiting = again
            if round_ + 1 < MANIFEST_ROUNDS:
                await trio.sleep(min(BUSY_BACKOFF * 2 ** (round_ + 1), BUSY_BACKOFF_MAX))
        refused += [f"{p}: {busy_note[p]}" for p in waiting if p in busy_note]
        raise FetchError(f"no provider gave a valid manifest for {self.cid} "
                         f"(asked {len(self.candidates)} peer{'s' if len(self.candidates) != 1 else ''}"
                         + (f"; refused by {'; '.join(refused[:4])})" if refused else ")") + self._refused_note())

    async def _ask_manifest(self, peer: str) -> bytes:
        ex = protocol.ClientExchange.manifest(self.cid)
        stream = await self._open(peer)
        try:
            await send_payload(stream, ex.request_bytes())
            while True:
                payload = await receive(stream, self.node.limits.frame_timeout)
                ev = ex.end_of_stream() if payload is None else ex.receive(payload)
                if isinstance(ev, protocol.ManifestReceived):
                    return ev.signed
                if isinstance(ev, protocol.RemoteError):
                    raise (_Busy if ev.code == protocol.ErrorCode.BUSY else _NotProvider)(ev.message)
        finally:
            await close_quietly(stream)

    async def _open(self, peer: str):
        from libp2p.peer.id import ID
        with trio.fail_after(self.node.limits.frame_timeout):
            return await self.node.host.new_stream(ID.from_base58(peer), [protocol.PROTOCOL_ID])

    # -- chunks ------------------------------------------------------------------------------

    async def run(self) -> FetchResult:
        t0 = time.perf_counter()
        store = self.node.store
        item = store.get(self.cid)
        gate = getattr(self.node, "policy", None)  # overlay.services.policy.PolicyService: the local policy
        if item is None:
            self._choose(None)  # the size is not known yet
            signed = await self._get_manifest()
            item = store.begin(self.cid, signed)
        elif gate is not None and not item.complete:  # resuming: accept_content under the current policy
            gate.check_content(None, item.manifest)
        self.manifest = m = item.manifest
        missing = store.missing_chunks(self.cid)
        already = m.chunk_count - len(missing)
        missing_set = set(missing)
        self.done_bytes = sum(m.chunk_length(i) for i in range(m.chunk_count) if i not in missing_set)
        await self._report()
        if missing:
            self._choose(m.size)  # again, now with the content's size
            if not self.candidates:
                raise FetchError(f"no providers known for {self.cid}")
            providers = self.candidates[: self.node.config.max_providers]
            size = batch_size(m.chunk_size, len(missing), len(providers) * STREAMS_PER_PROVIDER)
            self.queue.extend(_Batch(b) for b in contiguous_batches(missing, size))
            async with trio.open_nursery() as outer:
                outer.start_soon(self._progress_loop)
                outer.start_soon(self._flush_loop)
                async with trio.open_nursery() as nursery:
                    self._workers = nursery.cancel_scope
                    for peer in providers:
                        for _ in range(STREAMS_PER_PROVIDER):
                            nursery.start_soon(self._worker, peer)
                outer.cancel_scope.cancel()
            await self._report()
            self._record_verified()
            left = store.missing_chunks(self.cid)
            if left:
                reasons = "; ".join(f"{p[:16]}…: {s.dropped or 'no answer'}" for p, s in self.stats.items())
                raise FetchError(f"{len(left)} of {m.chunk_count} chunks could not be fetched; verified chunks are "
                                 f"kept for a resume. Providers: {reasons or 'none'}{self._refused_note()}")
        store.finish(self.cid)
        self.node.metrics.fetch_seconds.observe(time.perf_counter() - t0)
        return FetchResult(self.cid, m.size, m.chunk_count, time.perf_counter() - t0, self.stats, already,
                           self.refused)

    def _record_verified(self) -> None:
        obs = [Observation(p, Kind.CHUNK_VERIFIED, self.cid, count=s.chunks, nbytes=s.nbytes)
               for p, s in self.stats.items() if s.chunks]
        if obs:
            self.node.record(*obs)

    async def _report(self) -> None:
        if self.progress and self.manifest:
            await self.progress(self.done_bytes, self.manifest.size)

    async def _progress_loop(self) -> None:
        while True:
            await trio.sleep(0.25)
            await self._report()

    def _take(self, peer: str) -> _Batch | None:
        for batch in self.queue:
            if peer not in batch.failed_by:
                self.queue.remove(batch)
                batch.running[peer] = time.monotonic()
                self.in_flight.append(batch)
                return batch
        now = time.monotonic()
        for batch in sorted(self.in_flight, key=lambda b: min(b.running.values(), default=now)):
            if peer in batch.failed_by or peer in batch.running or not batch.running:
                continue
            if now - min(batch.running.values()) >= ENDGAME_AFTER:
                batch.running[peer] = now
                return batch
        return None

    def _release(self, batch: _Batch, peer: str, failed: bool) -> None:
        batch.running.pop(peer, None)
        batch.indexes = [i for i in batch.indexes if i not in self.done]
        if failed:
            batch.failed_by.add(peer)
        if not batch.indexes:
            if batch in self.in_flight:
                self.in_flight.remove(batch)
        elif not batch.running:
            if batch in self.in_flight:
                self.in_flight.remove(batch)
            for part in contiguous_batches(batch.indexes):
                self.queue.appendleft(_Batch(part, set(batch.failed_by)))
        self._notify()
        if self._finished() and self._workers is not None:
            # Every chunk is in: stop the requests still running elsewhere (a staller's duplicate
            # of the last batch) instead of waiting for their timeout.
            self._workers.cancel()

    def _finished(self) -> bool:
        return not self.queue and not self.in_flight

    def _alive_others(self, peer: str) -> bool:
        return any(not s.dropped for p, s in self.stats.items() if p != peer)

    async def _worker(self, peer: str) -> None:
        st = self._stat(peer)
        while not st.dropped and not self._finished():
            batch = self._take(peer)
            if batch is None:
                if not self.queue and not any(peer not in b.failed_by for b in self.in_flight):
                    return
                if self.queue and not self._alive_others(peer) and all(peer in b.failed_by for b in self.queue):
                    return
                with trio.move_on_after(ENDGAME_AFTER / 2):
                    await self.changed.wait()
                continue
            failed = True
            backoff = 0.0
            # Other providers may finish (and empty) this batch while we wait on it: keep its span.
            first, last = batch.indexes[0], batch.indexes[-1]
            try:
                await self._fetch_batch(peer, batch)
                failed = False
                st.busy = 0
            except trio.TooSlowError:
                self._stalled(peer, st, f"stalled on chunks {first}-{last}")
            except trio.Cancelled:
                # Stopped because others fetched every chunk. It lost a race it had a head start in
                # (at least ENDGAME_AFTER on a batch someone else then finished): a stall too.
                started = batch.running.get(peer)
                if self._finished() and started is not None and time.monotonic() - started >= ENDGAME_AFTER:
                    self._stalled(peer, st, f"outpaced on chunks {first}-{last}: another provider that started "
                                            f"{ENDGAME_AFTER:g} s or more later finished them")
                raise
            except _BadChunk as exc:
                self._drop(peer, Kind.CHUNK_INVALID, str(exc))
            except (protocol.ProtocolViolation, DecodeError) as exc:
                self._drop(peer, Kind.PROTOCOL_VIOLATION, str(exc))
            except _NotProvider as exc:
                st.dropped = f"not a provider: {exc}"
            except _Busy as exc:  # not the batch's fault: back to the queue, and ask again later
                failed = False
                st.busy += 1
                if st.busy >= MAX_BUSY:
                    st.dropped = f"busy: answered BUSY {st.busy} times in a row ({exc})"
                backoff = min(BUSY_BACKOFF * 2 ** (st.busy - 1), BUSY_BACKOFF_MAX)
            except Exception as exc:  # connection reset, refused dial: not evidence of malice
                st.strikes += 1
                log.info("request to %s failed: %s", peer, exc)
                if st.strikes >= MAX_STRIKES:
                    st.dropped = f"unreachable: {exc}"
            finally:
                self._release(batch, peer, failed)
            if backoff and not st.dropped:
                await trio.sleep(backoff)

    def _stalled(self, peer: str, st: ProviderStats, why: str) -> None:
        st.strikes += 1
        self.node.record(Observation(peer, Kind.TIMEOUT, self.cid, evidence=why))
        if st.strikes >= MAX_STRIKES:
            st.dropped = f"timeout: stalled {st.strikes} times"

    async def _fetch_batch(self, peer: str, batch: _Batch) -> None:
        start, count = batch.indexes[0], len(batch.indexes)
        ex = protocol.ClientExchange.chunks(self.cid, start, count)
        m = self.manifest
        assert m is not None  # nosec B101 - set before workers start
        stream = await self._open(peer)
        try:
            await window_for_response(stream, response_bytes(m, start, count))
            await send_payload(stream, ex.request_bytes())
            frames = frame_reader(stream)
            written: list[tuple[protocol.ChunkReceived, bytes]] = []
            with self.node.store.chunk_writer(self.cid) as writer:
                try:
                    while True:
                        payload = await receive_from(frames, self.node.limits.frame_timeout)
                        ev = ex.end_of_stream() if payload is None else ex.receive(payload)
                        if isinstance(ev, protocol.Done):
                            return
                        if isinstance(ev, protocol.RemoteError):
                            if ev.code == protocol.ErrorCode.BUSY:
                                raise _Busy(ev.message)
                            raise _NotProvider(ev.message)
                        if isinstance(ev, protocol.ChunkReceived) and ev.index not in self.done:
                            written.append((ev, self._verify_and_write(writer, ev)))
                            if len(written) >= RECORD_EVERY:
                                self._record(peer, written)
                finally:
                    self._record(peer, written)
        finally:
            with trio.CancelScope(shield=True):  # cancelled once the others finished: still close it
                await close_quietly(stream)

    def _verify_and_write(self, writer: ChunkWriter, ev: protocol.ChunkReceived) -> bytes:
        """Check the chunk's proof, then write it (hashing and pwrite of a chunk take a fraction
        of a millisecond: less than handing it to a thread and back); returns its leaf."""
        try:
            return writer.write(ev.index, ev.data, ev.proof)
        except (ProofError, StoreError) as exc:
            leaf = merkle.leaf_hash(ev.data).hex()
            raise _BadChunk(f"chunk {ev.index} (leaf {leaf}, {len(ev.data)} bytes) failed verification: {exc}") from None

    def _record(self, peer: str, written: list[tuple[protocol.ChunkReceived, bytes]]) -> None:
        """Note verified, written chunks (a few at a time: one store look-up each time) and
        empty ``written``."""
        new = [(ev, leaf) for ev, leaf in written if ev.index not in self.done]
        written.clear()
        if self.node.store.record_chunks(self.cid, [(ev.index, leaf) for ev, leaf in new], flush=False):
            self._flush_due.set()
        nbytes = sum(len(ev.data) for ev, _ in new)
        self.done.update(ev.index for ev, _ in new)
        st = self._stat(peer)
        st.chunks += len(new)
        st.nbytes += nbytes
        self.done_bytes += nbytes
        self.node.metrics.bytes_fetched.inc(nbytes)

    async def _flush_loop(self) -> None:
        while True:
            await self._flush_due.wait()
            self._flush_due = trio.Event()
            await self._flush()

    async def _flush(self) -> None:
        """The store's periodic flush with its fsync in a worker thread (receiving and writing
        go on meanwhile); chunks are recorded only after their bytes are durable, as in flush().
        Shielded: a flush, once begun, records its chunks even if the fetch is cancelled."""
        job = self.node.store.begin_flush(self.cid)
        if job is None:
            return
        fd, chunks = job
        with trio.CancelScope(shield=True):
            try:
                await trio.to_thread.run_sync(os.fsync, fd)
            finally:
                os.close(fd)
            self.node.store.end_flush(self.cid, chunks)


class _BadChunk(Exception):
    pass


class _NotProvider(Exception):
    pass


class _Busy(Exception):
    pass
