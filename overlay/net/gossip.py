"""Reputation gossip over GossipSub: attestations, equivocation proofs and tree heads.

Three topics, one record kind each:

==========================  ===========================================  =========
topic                       payload                                      max size
==========================  ===========================================  =========
``vouchnet/attestations/1``  attestation envelope (``sign_attestation``)   1 KiB
``vouchnet/equivocations/1`` ``Equivocation.to_bytes()``                  4 KiB
``vouchnet/heads/1``         tree-head envelope (``sign_tree_head``)       512 B
==========================  ===========================================  =========

Every message passes a synchronous per-topic validator before GossipSub delivers or
forwards it. The checks, in order (the first failure rejects; GossipSub then counts an
invalid message against the peer that forwarded it):

1. ``oversized``       -- the payload is larger than the topic's limit;
2. ``malformed`` /
   ``bad_signature``   -- strict decode and signature check (``open_attestation``,
                          ``open_equivocation``, ``open_tree_head``);
3. ``wrong_origin``    -- attestations and heads only: the record's issuer must be the
                          message's origin (the pubsub-signed ``from`` peer). Only issuers
                          gossip their own records; an attestation relayed under another
                          origin is refused. Equivocation proofs may come from anyone;
4. ``origin_rejected`` -- ``accept_origin(origin)`` (the trust/policy gate) said no;
5. ``record_rejected`` -- attestations and heads only: ``accept_record(topic, record,
                          origin)`` (the policy gate on the record: the node's
                          accept_attestation / accept_head) said no. Equivocation proofs
                          are not asked.

A rejected message is neither delivered to the handlers nor forwarded: gates that run
after delivery (in a handler) cannot stop GossipSub from relaying. py-libp2p 0.8.1 has no
"ignore" result, so every rejection, policy ones included, counts as an invalid message
against the forwarder (see ``GossipParams.invalid_message_weight``).

``validator_error`` counts validator, ``accept_origin`` or ``accept_record`` exceptions
(rejected, logged).
Rejections are counted in :attr:`Gossip.rejections` (by reason) and
:attr:`Gossip.rejections_by_topic`.

Messages this node publishes itself skip ``accept_origin`` and ``accept_record`` (it does
not judge itself), are checked before sending (``publish_*`` raise instead of dropping
silently, which is what py-libp2p does with a message failing the node's own validator),
and are not handed to the local handlers.

Duplicates are suppressed by GossipSub (message ID = origin + pubsub seqno). Replays of
old attestations under new pubsub messages are NOT detected here: that is the job of the
reputation code (per (issuer, subject) sequence numbers).

py-libp2p 0.8.1 defaults that drop messages silently and how they are set here (see
:class:`GossipParams`; line numbers in site-packages/libp2p/pubsub):

- rate limit 10 messages/s per topic per forwarder, own publishes included
  (gossipsub.py:190, checked at 2894; excess is delivered locally but not forwarded)
  -> ``max_messages_per_topic_per_second`` (constructor);
- 32-entry outbound RPC queue per peer (rpc_queue.py:39, created at pubsub.py:948)
  -> ``outbound_queue_size`` via :func:`overlay.net.libp2p_compat.size_pubsub_buffers`;
- 32-entry subscription channel per topic (pubsub.py:124/1405, dropped at 1372)
  -> ``subscription_buffer`` via the same compat function;
- 100 messages per peer held while the peer's identify/subscription is pending
  (gossipsub.py:197, oldest dropped at 627) -> ``max_pending_messages_per_peer``;
- heartbeat 120 s (gossipsub.py:179) -> ``heartbeat_interval`` (1 s); and the "adaptive
  gossip" that raises the heartbeat to >= 60 s when its network-health score is below
  0.7, which small meshes always are (gossipsub.py:2864-2867) -> disabled.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from overlay.net.libp2p_compat import count_pubsub_traffic, import_libp2p, safe_blacklist_teardown, size_pubsub_buffers
from overlay.metrics import Metrics

import_libp2p()

import trio  # noqa: E402
from libp2p.abc import IHost  # noqa: E402
from libp2p.peer.id import ID  # noqa: E402
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, PROTOCOL_ID_V12, GossipSub  # noqa: E402
from libp2p.pubsub.pb import rpc_pb2  # noqa: E402
from libp2p.pubsub.pubsub import Pubsub  # noqa: E402
from libp2p.pubsub.score import ScoreParams, TopicScoreParams  # noqa: E402
from libp2p.tools.anyio_service import background_trio_service  # noqa: E402

from trust.attestation import (  # noqa: E402
    Attestation,
    Equivocation,
    TreeHead,
    open_attestation,
    open_equivocation,
    open_tree_head,
)
from trust.errors import DecodeError, SignatureError  # noqa: E402

__all__ = [
    "TOPIC_ATTESTATIONS",
    "TOPIC_EQUIVOCATIONS",
    "TOPIC_HEADS",
    "TOPICS",
    "REJECT_REASONS",
    "GossipParams",
    "Gossip",
]

logger = logging.getLogger(__name__)

TOPIC_ATTESTATIONS = "vouchnet/attestations/1"
TOPIC_EQUIVOCATIONS = "vouchnet/equivocations/1"
TOPIC_HEADS = "vouchnet/heads/1"
TOPICS = (TOPIC_ATTESTATIONS, TOPIC_EQUIVOCATIONS, TOPIC_HEADS)

REJECT_REASONS = ("oversized", "malformed", "bad_signature", "wrong_origin", "origin_rejected", "record_rejected",
                  "validator_error")

# Library defaults, for GossipParams.library_defaults() (the control in the tests).
_LIB_RATE_LIMIT = 10.0
_LIB_QUEUE = 32
_LIB_PENDING = 100


def _default_sizes() -> dict[str, int]:
    return {
        TOPIC_ATTESTATIONS: Attestation.MAX_SIZE,  # 1024
        TOPIC_EQUIVOCATIONS: Equivocation.MAX_SIZE,  # 4096
        TOPIC_HEADS: TreeHead.MAX_SIZE,  # 512
    }


@dataclass
class GossipParams:
    """GossipSub settings for vouchnet. Every silent-drop limit is set deliberately.

    Sizing of the drop limits: a forwarder uses, per message and per target peer, one
    outbound queue slot (two with ``idontwant``: py-libp2p also queues an IDONTWANT per
    v1.2 mesh peer), so a burst of N messages needs N-2N slots; a burst arrives faster
    than the local handlers run, so the subscription buffer needs ~N. The defaults take a
    burst of 2000 messages per topic (4x the 500 the tests require) with memory bounded
    at a few MB per peer (attestations <= 1 KiB).
    """

    degree: int = 6
    degree_low: int = 4
    degree_high: int = 12
    heartbeat_interval: float = 1.0
    heartbeat_initial_delay: float = 0.1
    gossip_window: int = 3
    gossip_history: int = 5
    fanout_ttl: int = 60
    # Advertise /meshsub/1.2.0 as well as 1.1.0. Off by default: py-libp2p 0.8.1 sends an
    # IDONTWANT for EVERY message to every v1.2 mesh peer (gossipsub.py
    # _emit_idontwant_for_message), each as its own RPC carrying a signed peer record
    # that the receiver verifies; for our <= 4 KiB records that costs more than the
    # duplicates it saves (measured: a 500-message burst over 2 hops took 4.4-6.1 s with
    # 1.2, 2.6 s with 1.1 only) and doubles outbound queue use.
    idontwant: bool = False
    # Rate limit per (forwarder, topic) over a sliding 1 s window; excess is not forwarded.
    max_messages_per_topic_per_second: float = 2000.0
    # RPCs queued per peer before dropping (library: 32, not settable by constructor).
    outbound_queue_size: int = 4096
    # Messages buffered per topic for the local handlers (library: 32, idem).
    subscription_buffer: int = 2048
    # Messages held per peer whose identify/subscription is still pending (library: 100).
    max_pending_messages_per_peer: int = 2048
    max_message_size: dict[str, int] = field(default_factory=_default_sizes)
    # Peer score: score = app_score_weight * app_score(peer) - invalid-message penalty.
    # A peer scoring below trust_floor is graylisted: not forwarded to, and its GRAFTs
    # are refused. NOTE: in py-libp2p 0.8.1 graylisting does NOT stop accepting the
    # peer's messages; the validator's accept_origin and blacklist() do that.
    trust_floor: float = 0.0
    app_score_weight: float = 1.0
    # P4: each invalid message a peer forwards costs invalid_message_weight (counter
    # capped at invalid_message_cap, multiplied by invalid_message_decay per heartbeat).
    # Note validation includes local policy (accept_origin, accept_record): an honest
    # forwarder can be penalised by a node whose policy disagrees with its own.
    invalid_message_weight: float = 0.05
    invalid_message_cap: float = 100.0
    invalid_message_decay: float = 0.95

    def __post_init__(self) -> None:
        if not (1 <= self.degree_low <= self.degree <= self.degree_high):
            raise ValueError("need 1 <= degree_low <= degree <= degree_high")
        for name in ("heartbeat_interval", "max_messages_per_topic_per_second"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive number")
        for name in ("outbound_queue_size", "subscription_buffer", "max_pending_messages_per_peer"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v >= 1):
                raise ValueError(f"{name} must be a positive integer")
        if set(self.max_message_size) != set(TOPICS) or any(
            not isinstance(v, int) or v < 1 for v in self.max_message_size.values()
        ):
            raise ValueError(f"max_message_size needs a positive size for each of {TOPICS}")
        for name in ("trust_floor", "app_score_weight", "invalid_message_weight", "invalid_message_cap"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be finite")
        if self.app_score_weight < 0 or self.invalid_message_weight < 0 or self.invalid_message_cap < 0:
            raise ValueError("score weights and caps must be >= 0")
        if not (0.0 <= self.invalid_message_decay <= 1.0):
            raise ValueError("invalid_message_decay must be in [0, 1]")

    @classmethod
    def library_defaults(cls, **overrides: Any) -> "GossipParams":
        """py-libp2p's own drop limits (10 msg/s, 32-entry queues, 100 pending): for tests."""
        params: dict[str, Any] = {
            "max_messages_per_topic_per_second": _LIB_RATE_LIMIT,
            "outbound_queue_size": _LIB_QUEUE,
            "subscription_buffer": _LIB_QUEUE,
            "max_pending_messages_per_peer": _LIB_PENDING,
        }
        params.update(overrides)
        return cls(**params)

    def score_params(self, app_score: Callable[[ID], float]) -> ScoreParams:
        return ScoreParams(
            p4_invalid_messages=TopicScoreParams(
                weight=self.invalid_message_weight, cap=self.invalid_message_cap, decay=self.invalid_message_decay
            ),
            p6_appl_slack_weight=self.app_score_weight,
            p6_appl_slack_decay=1.0,  # recomputed from app_score on every score() anyway
            # publish/gossip gates use only the topic score in py-libp2p (not the app
            # score): leaving them open keeps an honest forwarder that a policy
            # disagreement penalised from being cut off entirely.
            publish_threshold=-math.inf,
            gossip_threshold=-math.inf,
            graylist_threshold=self.trust_floor,
            accept_px_threshold=math.inf,  # PX is off (do_px=False); never accept it
            app_specific_score_fn=app_score,
        )


Handler = Callable[..., Any]


def _accept_all(_origin: str) -> bool:
    return True


def _accept_any_record(_topic: str, _record: Any, _origin: str) -> bool:
    return True


def _neutral_score(_peer: str) -> float:
    return 0.0


class _Reject(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Gossip:
    """Reputation gossip for one host. Use ``async with gossip.running():``.

    :param host: a py-libp2p host (``overlay.net.host.build_host``/``running_host``), running.
    :param accept_origin: trust/policy gate on a message's ORIGIN peer ID (str); a False
        (or an exception) rejects the message. Default: accept all.
    :param accept_record: policy gate on a verified attestation or head:
        ``(topic, record: Attestation | TreeHead, origin: str) -> bool``, asked after
        ``accept_origin``; a False (or an exception) rejects the message, so it is neither
        delivered nor forwarded. Not asked for equivocation proofs. Default: accept all.
    :param app_score: application score of a peer ID (str) for GossipSub's peer score
        (mesh, gossip targets, graylisting); must be cheap: it is called for every mesh
        peer on every forwarded message. An exception or NaN counts as -inf (graylisted).
    :param on_attestation: ``(att: Attestation, envelope: bytes, origin: str)``
    :param on_equivocation: ``(eq: Equivocation, origin: str)``
    :param on_head: ``(head: TreeHead, envelope: bytes, origin: str)``
        Handlers may be plain functions or coroutine functions; their exceptions are
        logged and counted in :attr:`handler_errors`, never raised.
    :param metrics: where RPCs, bytes and messages sent and received are counted
        (``vouchnet_gossip_*``); default: a registry of its own.
    """

    def __init__(
        self,
        host: IHost,
        *,
        params: GossipParams | None = None,
        accept_origin: Callable[[str], bool] = _accept_all,
        accept_record: Callable[[str, Any, str], bool] = _accept_any_record,
        app_score: Callable[[str], float] = _neutral_score,
        on_attestation: Handler | None = None,
        on_equivocation: Handler | None = None,
        on_head: Handler | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.host = host
        self.metrics = metrics if metrics is not None else Metrics()
        self.params = params if params is not None else GossipParams()
        self._accept_origin = accept_origin
        self._accept_record = accept_record
        self._app_score = app_score
        self._handlers: dict[str, Handler | None] = {
            TOPIC_ATTESTATIONS: on_attestation,
            TOPIC_EQUIVOCATIONS: on_equivocation,
            TOPIC_HEADS: on_head,
        }
        self.my_id: str = str(host.get_id())
        self.rejections: Counter[str] = Counter()
        self.rejections_by_topic: Counter[tuple[str, str]] = Counter()
        self.delivered: Counter[str] = Counter()
        self.handler_errors: Counter[str] = Counter()
        self._started = False
        self._running = False

        p = self.params
        self.router = GossipSub(
            protocols=[PROTOCOL_ID_V12, PROTOCOL_ID_V11] if p.idontwant else [PROTOCOL_ID_V11],
            degree=p.degree,
            degree_low=p.degree_low,
            degree_high=p.degree_high,
            time_to_live=p.fanout_ttl,
            gossip_window=p.gossip_window,
            gossip_history=p.gossip_history,
            heartbeat_initial_delay=p.heartbeat_initial_delay,
            heartbeat_interval=p.heartbeat_interval,  # type: ignore[arg-type]  # float is fine (trio.sleep)
            do_px=False,
            score_params=p.score_params(self._score_of),
            # The "adaptive" mode slows the heartbeat to >= 60 s on small meshes.
            adaptive_gossip_enabled=False,
            spam_protection_enabled=True,
            max_messages_per_topic_per_second=p.max_messages_per_topic_per_second,
            max_pending_messages_per_peer=p.max_pending_messages_per_peer,
        )
        self.pubsub = Pubsub(
            host,
            self.router,
            strict_signing=True,
            # Remote peers cannot make us track subscriptions to other topics.
            allowed_topics=frozenset(TOPICS),
        )
        size_pubsub_buffers(
            self.pubsub, outbound_queue_size=p.outbound_queue_size, subscription_buffer=p.subscription_buffer
        )
        safe_blacklist_teardown(self.pubsub)
        count_pubsub_traffic(self.pubsub, self.metrics.count_gossip)
        self._validators = {topic: self._make_validator(topic) for topic in TOPICS}

    # ------------------------------------------------------------------ lifecycle

    @asynccontextmanager
    async def running(self) -> AsyncIterator["Gossip"]:
        """Run Pubsub + GossipSub, subscribe to the three topics and dispatch messages.

        Can be entered once per Gossip. An exception raised in the block comes out as
        itself, not wrapped in the ExceptionGroups of the nurseries involved.
        """
        if self._started:
            raise RuntimeError("Gossip.running() can only be entered once")
        self._started = True
        sole: BaseException | None = None
        try:
            async with background_trio_service(self.pubsub), background_trio_service(self.router):
                await self.pubsub.wait_until_ready()
                async with trio.open_nursery() as nursery:
                    for topic in TOPICS:
                        self.pubsub.set_topic_validator(topic, self._validators[topic], False)
                        subscription = await self.pubsub.subscribe(topic)
                        nursery.start_soon(self._dispatch, topic, subscription)
                    self._running = True
                    try:
                        yield self
                    finally:
                        self._running = False
                        nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            sole = _sole_exception(group)
            if sole is None:
                raise
        if sole is not None:
            raise sole

    @property
    def is_running(self) -> bool:
        return self._running

    async def wait_for_mesh(self, peer_id: str, timeout: float = 5.0) -> None:
        """Wait until ``peer_id`` is in our mesh for all three topics (trio.TooSlowError)."""
        pid = _to_id(peer_id)
        with trio.fail_after(timeout):
            for topic in TOPICS:
                await self.router.wait_for_mesh(pid, topic, timeout=timeout)

    # ------------------------------------------------------------------ publishing

    async def publish_attestation(self, envelope: bytes) -> None:
        """Gossip our own attestation envelope. Raises if it is not valid to send."""
        self._check_own(TOPIC_ATTESTATIONS, envelope)
        await self._publish(TOPIC_ATTESTATIONS, envelope)

    async def publish_equivocation(self, eq: Equivocation) -> None:
        """Gossip an equivocation proof (anyone may)."""
        data = eq.to_bytes()
        self._check_own(TOPIC_EQUIVOCATIONS, data)
        await self._publish(TOPIC_EQUIVOCATIONS, data)

    async def publish_head(self, envelope: bytes) -> None:
        """Gossip our own signed tree head. Raises if it is not valid to send."""
        self._check_own(TOPIC_HEADS, envelope)
        await self._publish(TOPIC_HEADS, envelope)

    async def _publish(self, topic: str, data: bytes) -> None:
        if not self._running:
            raise RuntimeError("Gossip is not running (use `async with gossip.running():`)")
        await self.pubsub.publish(topic, data)

    def _check_own(self, topic: str, data: bytes) -> None:
        """The checks the validator will make, raised as errors instead of a silent no-op."""
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError("gossip payloads are bytes")
        try:
            self._check(topic, bytes(data), self.my_id)
        except _Reject as rej:
            if rej.reason == "oversized":
                raise DecodeError(
                    f"{topic} payload is {len(data)} bytes; the limit is {self.params.max_message_size[topic]}"
                ) from None
            if rej.reason == "wrong_origin":
                raise ValueError(f"only the issuer gossips its own {topic} records; this node is {self.my_id}") from None
            raise  # pragma: no cover - decode errors are raised as themselves by _check

    # ------------------------------------------------------------------ blacklist

    def blacklist(self, peer_id: str) -> None:
        """Drop everything forwarded by or originating from ``peer_id`` and cut its
        pubsub stream (``Pubsub.add_to_blacklist``)."""
        pid = _to_id(peer_id)
        if self._running:
            self.pubsub.add_to_blacklist(pid)
        else:
            # add_to_blacklist needs the running service for its teardown task; with no
            # service there is no stream to tear down.
            self.pubsub.blacklisted_peers.add(pid)

    def unblacklist(self, peer_id: str) -> None:
        """Accept ``peer_id`` again (its trust recovered)."""
        self.pubsub.remove_from_blacklist(_to_id(peer_id))

    def is_blacklisted(self, peer_id: str) -> bool:
        return self.pubsub.is_peer_blacklisted(_to_id(peer_id))

    # ------------------------------------------------------------------ validation

    def _make_validator(self, topic: str) -> Callable[[ID, Any], bool]:
        def validator(_forwarder: ID, msg: rpc_pb2.Message) -> bool:
            # Never raise: an exception in a sync validator escapes py-libp2p's
            # push_msg task (pubsub.py validate_msg only catches ValidationError).
            try:
                self._check(topic, msg.data, str(ID(msg.from_id)))
                return True
            except _Reject as rej:
                reason = rej.reason
            except (DecodeError, SignatureError) as exc:
                reason = "bad_signature" if isinstance(exc, SignatureError) else "malformed"
            except Exception:
                logger.exception("gossip validator failed on %s", topic)
                reason = "validator_error"
            self.rejections[reason] += 1
            self.rejections_by_topic[(topic, reason)] += 1
            logger.debug("rejected %s message: %s", topic, reason)
            return False

        return validator

    def _check(self, topic: str, data: bytes, origin: str) -> Any:
        """Run the topic's checks; return the decoded record or raise."""
        if len(data) > self.params.max_message_size[topic]:
            raise _Reject("oversized")
        if topic == TOPIC_ATTESTATIONS:
            record: Any = self._check_attestation(data, origin)
        elif topic == TOPIC_HEADS:
            record = self._check_head(data, origin)
        else:
            record = self._check_equivocation(data, origin)
        if origin != self.my_id:
            try:
                accepted = self._accept_origin(origin)
            except Exception:
                logger.exception("accept_origin(%s) failed; rejecting", origin)
                raise _Reject("validator_error") from None
            if not accepted:
                raise _Reject("origin_rejected")
            if topic != TOPIC_EQUIVOCATIONS:
                try:
                    accepted = self._accept_record(topic, record, origin)
                except Exception:
                    logger.exception("accept_record(%s, %s) failed; rejecting", topic, origin)
                    raise _Reject("validator_error") from None
                if not accepted:
                    raise _Reject("record_rejected")
        return record

    @staticmethod
    def _check_attestation(data: bytes, origin: str) -> Attestation:
        att = open_attestation(data)
        if att.issuer != origin:
            raise _Reject("wrong_origin")
        return att

    @staticmethod
    def _check_head(data: bytes, origin: str) -> TreeHead:
        head = open_tree_head(data)
        if head.issuer != origin:
            raise _Reject("wrong_origin")
        return head

    @staticmethod
    def _check_equivocation(data: bytes, _origin: str) -> Equivocation:
        return open_equivocation(data)

    def _score_of(self, peer: ID) -> float:
        try:
            value = float(self._app_score(str(peer)))
        except Exception:
            logger.exception("app_score(%s) failed; scoring it -inf", peer)
            return -math.inf
        return -math.inf if math.isnan(value) else value

    # ------------------------------------------------------------------ dispatch

    async def _dispatch(self, topic: str, subscription: Any) -> None:
        async for msg in subscription:
            origin = str(ID(msg.from_id))
            if origin == self.my_id:
                continue  # our own publish, echoed by py-libp2p's notify_subscriptions
            handler = self._handlers[topic]
            data = bytes(msg.data)
            try:
                # Decoded again (cheap) rather than cached from the validator: a
                # validated message is not always delivered, and a cache would leak.
                if topic == TOPIC_ATTESTATIONS:
                    args: tuple[Any, ...] = (open_attestation(data), data, origin)
                elif topic == TOPIC_HEADS:
                    args = (open_tree_head(data), data, origin)
                else:
                    args = (open_equivocation(data), origin)
            except Exception:
                logger.exception("validated %s message failed to decode; dropped", topic)
                self.handler_errors[topic] += 1
                continue
            self.delivered[topic] += 1
            if handler is None:
                continue
            try:
                result = handler(*args)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("%s handler failed (origin %s)", topic, origin)
                self.handler_errors[topic] += 1


def _to_id(peer_id: str) -> ID:
    if isinstance(peer_id, ID):
        return peer_id
    try:
        return ID.from_base58(peer_id)
    except Exception:
        raise ValueError(f"not a peer ID: {str(peer_id)[:60]!r}") from None


def _sole_exception(group: BaseExceptionGroup) -> BaseException | None:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return None if isinstance(exc, BaseExceptionGroup) else exc

