"""Workaround (v): what identify and identify-push let a peer store is barely bounded. See the package docstring."""
from __future__ import annotations

import logging
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Sequence

if TYPE_CHECKING:  # pragma: no cover - typing only
    from libp2p.abc import IHost

log = logging.getLogger("vouchnet.identify")

IdentifyTrim = Callable[[str, int], None]  # (field, items dropped) -> e.g. a Prometheus counter

IDENTIFY = "/ipfs/id/1.0.0"
IDENTIFY_PUSH = "/ipfs/id/push/1.0.0"
LOGGED_PEERS = 4096  # peers remembered as "already logged": once per peer, and bounded itself


@dataclass(frozen=True)
class IdentifyLimits:
    """What one peer's identify may make the node keep (py-libp2p 0.8.1 limit in brackets)."""

    max_message: int = 64 * 1024  # bytes of one identify / identify-push message [1 MiB]
    max_addrs: int = 32  # addresses kept per peer, from any source [1,000 per message, none in total]
    max_addr_bytes: int = 256  # one address, binary form [none]
    max_protocols: int = 128  # protocols kept per peer [none]
    max_protocol_len: int = 128  # characters of one protocol ID [none]
    max_version_len: int = 256  # characters of agent_version and protocol_version [none]
    max_record_bytes: int = 16 * 1024  # the signed peer record (its addresses are capped too) [none]
    max_key_bytes: int = 1024  # the public key (an Ed25519 key is 36 bytes) [none]


# ---------------------------------------------------------------------------------------
# (v) [identify, identify-push, peerstore] A peer decides how much the node stores about it.
#
# Verified: identity/identify_push/identify_push.py `handle_identify_push` and
# host/basic_host.py `_identify_peer` read up to 1 MiB (`read_length_prefixed_protobuf`,
# utils/varint.py line 284; basic_host.py line 1267); when that fails, `_identify_peer` falls
# back to `stream.read()` (line 1272), which reads until the peer closes: no bound for 10 s. Both hand the
# message to identity/update.py `update_peerstore_from_identify`, which keeps up to 1,000
# listen addresses of any length, every protocol of any length, and every address of the
# signed peer record (no count at all); peer/peerdata.py `add_addrs` de-duplicates by a list
# scan (quadratic in the count). 40 peers with 1,000 long addresses each made `vouchnet
# peers` answer a 40 MB line (finding 6). Nothing bounds the addresses other sources (the
# DHT) add for a peer either.
#
# Fix, per host: the identify-push handler is ours and reads at most `max_message`; the
# identify answers the host reads are cut off after `max_message` bytes (its fallback read
# included); every message is trimmed in place (:func:`trim_identify`) before py-libp2p
# stores it; the host's peerstore keeps at most `max_addrs` addresses and `max_protocols`
# protocols per peer whatever adds them. What is dropped is counted by field and logged once
# per peer (peer ID and counts only; never the content).
# ---------------------------------------------------------------------------------------
def trim_identify(msg: Any, limits: IdentifyLimits) -> dict[str, int]:
    """Cut an ``Identify`` protobuf down to ``limits`` in place; the number dropped per field."""
    dropped: dict[str, int] = {}

    def note(field: str, n: int) -> None:
        if n > 0:
            dropped[field] = dropped.get(field, 0) + n

    def trim(repeated: Any, max_len: int, max_count: int, length_key: str, count_key: str) -> None:
        items = list(repeated)
        fit = [x for x in items if len(x) <= max_len]
        note(length_key, len(items) - len(fit))
        note(count_key, max(0, len(fit) - max_count))
        if len(fit) != len(items) or len(fit) > max_count:
            del repeated[:]
            repeated.extend(fit[:max_count])

    trim(msg.listen_addrs, limits.max_addr_bytes, limits.max_addrs, "addr_length", "listen_addrs")
    trim(msg.protocols, limits.max_protocol_len, limits.max_protocols, "protocol_length", "protocols")
    for field in ("agent_version", "protocol_version"):
        if msg.HasField(field) and len(getattr(msg, field)) > limits.max_version_len:
            setattr(msg, field, getattr(msg, field)[:limits.max_version_len])
            note(field, 1)
    for field, cap in (("observed_addr", limits.max_addr_bytes), ("signedPeerRecord", limits.max_record_bytes),
                       ("public_key", limits.max_key_bytes)):
        if msg.HasField(field) and len(getattr(msg, field)) > cap:
            msg.ClearField(field)
            note("signed_record" if field == "signedPeerRecord" else field, 1)
    msg.DiscardUnknownFields()  # what we do not read, we do not keep
    return dropped


class _Intake:
    """One host's limits, its trim hook and the peers already logged."""

    def __init__(self, limits: IdentifyLimits, on_trim: IdentifyTrim | None) -> None:
        self.limits = limits
        self.on_trim = on_trim
        self._logged: OrderedDict[str, None] = OrderedDict()

    def dropped(self, peer: Any, counts: dict[str, int]) -> None:
        if not counts:
            return
        if self.on_trim is not None:
            for field, n in counts.items():
                try:
                    self.on_trim(field, n)
                except Exception:  # noqa: BLE001 - a counter must not break identify
                    log.exception("identify trim hook failed")
        pid = str(peer)
        if pid in self._logged:
            self._logged.move_to_end(pid)
            return
        self._logged[pid] = None
        if len(self._logged) > LOGGED_PEERS:
            self._logged.popitem(last=False)
        log.warning("identify from %s trimmed: %s", pid, ", ".join(f"{k} -{v}" for k, v in sorted(counts.items())))


# peerstore -> the intake of the host that owns it; weak, so a closed host is forgotten
_INTAKES: "weakref.WeakKeyDictionary[Any, _Intake]" = weakref.WeakKeyDictionary()


def bound_identify_intake(host: IHost, limits: IdentifyLimits | None = None,
                          on_trim: IdentifyTrim | None = None) -> None:
    """Bound what ``host`` keeps from identify, identify-push and its peerstore (see (v)); idempotent."""
    peerstore: Any = host.get_peerstore()
    if peerstore in _INTAKES:
        return
    intake = _Intake(limits or IdentifyLimits(), on_trim)
    _install_trimming()
    _INTAKES[peerstore] = intake
    _bound_peerstore(peerstore, intake)
    _cap_identify_reads(host, intake)
    _replace_push_handler(host, intake)


def _install_trimming() -> None:
    """Route both of py-libp2p's callers of `update_peerstore_from_identify` through the trim (once)."""
    import libp2p.host.basic_host as basic_host
    import libp2p.identity.identify_push.identify_push as push

    for module in (basic_host, push):
        original = getattr(module, "update_peerstore_from_identify", None)
        if original is None or not callable(original):
            raise RuntimeError("py-libp2p's identify changed: re-check workaround (v) in "
                               "overlay/net/libp2p_compat/identify.py")
        if getattr(original, "_vouchnet_trims", False):
            continue
        module.update_peerstore_from_identify = _trimming(original)  # type: ignore[attr-defined]


def _trimming(original: Callable[[Any, Any, Any], Awaitable[None]]) -> Callable[[Any, Any, Any], Awaitable[None]]:
    async def update(peerstore: Any, peer_id: Any, msg: Any) -> None:
        intake = _INTAKES.get(peerstore)
        if intake is not None:  # a host we did not build is left as py-libp2p made it
            intake.dropped(peer_id, trim_identify(msg, intake.limits))
        await original(peerstore, peer_id, msg)

    update._vouchnet_trims = True  # type: ignore[attr-defined]
    return update


def _bound_peerstore(peerstore: Any, intake: _Intake) -> None:
    """At most `max_addrs` addresses and `max_protocols` protocols per peer, whatever adds them."""
    add_addrs, add_protocols = peerstore.add_addrs, peerstore.add_protocols
    data_map = peerstore.peer_data_map  # PeerStore's own dict of PeerData (peer/peerstore.py)
    lim = intake.limits

    def bounded_add_addrs(peer_id: Any, addrs: Sequence[Any], ttl: int = 0) -> None:
        data = data_map.get(peer_id)
        have = data.get_addrs() if data is not None else []
        seen, kept, dropped = set(have), [], 0
        for a in addrs:
            if a in seen:
                continue
            if len(a.to_bytes()) > lim.max_addr_bytes or len(have) + len(kept) >= lim.max_addrs:
                dropped += 1
                continue
            seen.add(a)
            kept.append(a)
        intake.dropped(peer_id, {"peerstore_addrs": dropped} if dropped else {})
        add_addrs(peer_id, kept, ttl)  # even when empty: py-libp2p refreshes the TTL there

    def bounded_add_protocols(peer_id: Any, protocols: Sequence[str]) -> None:
        data = data_map.get(peer_id)
        have = set(data.get_protocols()) if data is not None else set()
        new = [p for p in dict.fromkeys(protocols) if p not in have]
        room = max(0, lim.max_protocols - len(have))
        kept = [p for p in new if len(p) <= lim.max_protocol_len][:room]
        if len(kept) < len(new):
            intake.dropped(peer_id, {"peerstore_protocols": len(new) - len(kept)})
        add_protocols(peer_id, kept)

    peerstore.add_addrs = bounded_add_addrs  # add_addr and consume_peer_record call self.add_addrs
    peerstore.add_protocols = bounded_add_protocols


class MessageTooLarge(Exception):
    """An identify answer past `max_message` bytes: the read stops there."""


class _CappedStream:
    """A stream whose reads stop (raise) once `cap` bytes have been read; `read()` is bounded too."""

    def __init__(self, stream: Any, cap: int, on_over: Callable[[], None]) -> None:
        self._stream, self._left, self._on_over = stream, cap, on_over

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    async def read(self, n: int | None = None) -> bytes:
        if self._left <= 0:
            raise MessageTooLarge("identify message too large")
        want = self._left + 1 if n is None or n < 0 else min(n, self._left + 1)  # +1: to see it is over
        data = await self._stream.read(want)
        self._left -= len(data)
        if self._left < 0:
            self._on_over()
            raise MessageTooLarge("identify message too large")
        return data


def _cap_identify_reads(host: Any, intake: _Intake) -> None:
    """The identify answers this host reads (`_identify_peer`) stop after `max_message` bytes."""
    original = host.new_stream

    async def new_stream(peer_id: Any, protocol_ids: Sequence[Any], *args: Any, **kwargs: Any) -> Any:
        stream = await original(peer_id, protocol_ids, *args, **kwargs)
        if [str(p) for p in protocol_ids] != [IDENTIFY]:
            return stream
        return _CappedStream(stream, intake.limits.max_message, lambda: intake.dropped(peer_id, {"message": 1}))

    host.new_stream = new_stream  # `_identify_peer` opens its stream with `self.new_stream`


def _replace_push_handler(host: Any, intake: _Intake) -> None:
    """Our identify-push handler: py-libp2p's reads up to 1 MiB and logs an ERROR per bad push."""
    import trio
    from libp2p.custom_types import TProtocol
    from libp2p.identity.identify.pb.identify_pb2 import Identify
    from libp2p.utils.varint import read_length_prefixed_protobuf

    import libp2p.identity.identify_push.identify_push as push

    async def handle_identify_push(stream: Any) -> None:
        peer_id = stream.muxed_conn.peer_id
        try:
            with trio.move_on_after(10.0):
                try:
                    data = await read_length_prefixed_protobuf(stream, True, max_length=intake.limits.max_message)
                except Exception as exc:  # noqa: BLE001 - too large, truncated, reset: all the peer's doing
                    if "exceeds maximum" in str(exc):
                        intake.dropped(peer_id, {"message": 1})
                    log.debug("identify-push from %s not read: %s", peer_id, type(exc).__name__)
                    return
                msg = Identify()
                try:
                    msg.ParseFromString(data)
                except Exception:  # noqa: BLE001 - protobuf raises DecodeError and others
                    log.debug("identify-push from %s is not an Identify message", peer_id)
                    return
                await push.update_peerstore_from_identify(host.get_peerstore(), peer_id, msg)  # trims (above)
        finally:
            with trio.move_on_after(1):
                try:
                    await stream.close()
                except Exception:  # nosec B110 - the stream may already be gone
                    pass

    host.set_stream_handler(TProtocol(IDENTIFY_PUSH), handle_identify_push)
