"""Inbound content-request slots with a share reserved for trusted peers (issue 10, finding 3).

A pure decision object, like :class:`overlay.net.limits.ConnectionGate`. A content stream goes
through two stages: *pending* while its request is still arriving, then *serving* once a whole
request is in. A stream that sends its request slowly (slowloris: one byte a second) only ever
holds a pending slot: those are many, cheap (no answer is being built), limited per peer, and
each lasts at most the request read deadline. The serving slots are the scarce ones; strangers
(neither anchors nor trusted) may hold at most ``strangers`` of the ``total``, so the rest is
always free for trusted peers whatever sybils do.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from overlay.net.limits import check_counts

__all__ = ["StreamLimits", "StreamGate", "Ticket", "STREAM_REASONS"]

# Why a stream was refused; also the `reason` label of vouchnet_streams_refused_total.
STREAM_REASONS = ("per_peer", "pending", "total", "strangers")


@dataclass(frozen=True)
class StreamLimits:
    """Content-request limits (config.toml [limits] and node.streams_per_peer, see README.md)."""

    total: int = 64       # requests being answered at once
    strangers: int = 48   # of those, for peers that are neither anchors nor trusted
    pending: int = 256    # streams whose request has not fully arrived yet
    per_peer: int = 4     # streams of one peer, pending and serving together

    def check(self, names: dict[str, str] | None = None) -> str | None:
        """None if consistent, else what is wrong (for a ConfigError); ``names``: field -> config key."""
        return check_counts(self, names)


@dataclass
class Ticket:
    """One inbound stream's place in the gate (see :class:`StreamGate`)."""

    peer: str
    stage: str = "pending"  # pending -> serving -> closed
    stranger: bool = False


class StreamGate:
    """Counts pending and serving streams; every call answers None (admitted) or a reason."""

    def __init__(self, limits: StreamLimits | None = None) -> None:
        self.limits = limits or StreamLimits()
        problem = self.limits.check()
        if problem:
            raise ValueError(problem)
        self.pending = 0
        self.serving = 0
        self.strangers = 0
        self._per_peer: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()

    def open(self, peer: str) -> Ticket | str:
        """A new stream from ``peer``: its ticket, or why it is refused."""
        if self._per_peer[peer] >= self.limits.per_peer:
            return self._refuse("per_peer")
        if self.pending >= self.limits.pending:
            return self._refuse("pending")
        self._per_peer[peer] += 1
        self.pending += 1
        return Ticket(peer)

    def serve(self, ticket: Ticket, trusted: bool) -> str | None:
        """The ticket's whole request arrived: take a serving slot (None) or say why not."""
        if ticket.stage != "pending":
            raise ValueError(f"ticket is {ticket.stage}, not pending")
        if self.serving >= self.limits.total:
            return self._refuse("total")
        if not trusted and self.strangers >= self.limits.strangers:
            return self._refuse("strangers")
        self.pending -= 1
        self.serving += 1
        ticket.stage = "serving"
        ticket.stranger = not trusted
        self.strangers += ticket.stranger
        return None

    def close(self, ticket: Ticket) -> None:
        """The stream ended (any stage; closing twice is harmless)."""
        if ticket.stage == "closed":
            return
        if ticket.stage == "pending":
            self.pending -= 1
        else:
            self.serving -= 1
            self.strangers -= ticket.stranger
        ticket.stage = "closed"
        self._per_peer[ticket.peer] -= 1
        if self._per_peer[ticket.peer] <= 0:
            del self._per_peer[ticket.peer]

    def streams_of(self, peer: str) -> int:
        return self._per_peer.get(peer, 0)

    def _refuse(self, reason: str) -> str:
        self.refused[reason] += 1
        return reason

    def snapshot(self) -> dict[str, Any]:
        """Limits, current use and refusals by reason (for `vouchnet status`)."""
        return {"limits": asdict(self.limits),
                "in_use": {"pending": self.pending, "serving": self.serving, "strangers": self.strangers,
                           "trusted": self.serving - self.strangers, "peers": len(self._per_peer)},
                "refused": {r: self.refused.get(r, 0) for r in STREAM_REASONS}}
