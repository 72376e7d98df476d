"""The node side of local trust policies: load, decide, enforce, log, reload (docs/policy.md).

`PolicyService` owns the node's active `policy.Policy`. At each enforcement point the node
calls `decide(action, peer, **fields)` (or `admit`, which also enforces a LIMIT with token
buckets); the service builds the `policy.Context` from the node's state:

- trust: `rep.trust_of(peer)` -> (local, global) from the last trust computation, and the
  peer's rank in global trust (from the same snapshot);
- history: `interactions` = the peer's evidence counts in the reputation state, `first_seen`
  = the time of its first evidence (None, i.e. "just now", without any);
- `proven_equivocation`: the peer (or the publisher) is in the reputation's equivocators;
- `peer_addr`: the IP of the connection (or of the address being dialled) when there is one;
- `requests_recent`: a `policy.RateTracker` per (action, peer).

Every DENY and LIMIT goes into the ledger as a ``policy-decision`` entry. Writes are
aggregated: identical (peer, action, rule, verdict, policy) decisions within one flush window
(FLUSH_INTERVAL, 1 s) become one entry with a `count`, and a window holds at most
MAX_ENTRIES_PER_FLUSH distinct entries; decisions beyond that are folded into one entry per
(action, rule, verdict) with ``peer = "*"``. So a flood of denials, even from fresh peer IDs,
adds a bounded number of entries per second. Bodies hold no floats (rates in thousandths).

`reload()` validates the file and swaps the policy only when it is valid; otherwise the old
policy stays in force and the errors are returned. Anchors of the policy
(`Policy.anchor_peers()`) are added to the reputation's anchors on load and reload.

The policy file: ``--policy FILE`` / ``$VOUCHNET_POLICY`` if given, else ``[policy] file`` of
the config (relative to the home folder), else ``policy.toml`` in the home folder; when that
implicit file is absent the node runs `policy.default_policy()` (allow, except proven
equivocators). An explicitly named file must exist.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
import tomllib
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable

from policy import (Action, Context, Decision, Policy, RateTracker, TokenBuckets, Verdict, default_policy,
                    validate)
from policy.config import DEFAULT_POLICY
from trust.errors import ConfigError, VouchnetError
from trust.peerid import is_peer_id

log = logging.getLogger("vouchnet.policy")

POLICY_FILE = "policy.toml"
ENV_VAR = "VOUCHNET_POLICY"
DECISION_KIND = "policy-decision"
LOADED_KIND = "policy-loaded"
FLUSH_INTERVAL = 1.0          # seconds: identical decisions within one window become one ledger entry
MAX_ENTRIES_PER_FLUSH = 32    # distinct entries per window; the rest are folded per (action, rule, verdict)
MAX_FOLDED_PEERS = 10_000    # distinct peers counted in one folded entry
MAX_REASON = 300
DEFAULT_SOURCE = "<default policy>"
# Seconds a served request over a LIMIT may wait for its tokens before the answer is BUSY. Short:
# a waiting request holds one of the peer's streams and one of the node's, and fetch.py retries
# BUSY with back-off anyway (docs/policy.md, "Limits on serving", has the measurements).
MAX_THROTTLE = 0.25
THROTTLE_STEP = 0.05

ALLOW, DENY, LIMIT = Verdict.ALLOW, Verdict.DENY, Verdict.LIMIT

__all__ = ["DECISION_KIND", "ENV_VAR", "LOADED_KIND", "POLICY_FILE", "PolicyDenied", "PolicyService",
           "resolve_policy_path"]


class PolicyDenied(VouchnetError):
    """The local policy refused something the user asked for (a dial, a provider, content)."""

    def __init__(self, message: str, decision: Decision | None = None) -> None:
        super().__init__(message)
        self.decision = decision


def resolve_policy_path(home: Path | str, configured: str | None = None) -> tuple[Path, bool]:
    """(path, explicit): $VOUCHNET_POLICY (set by ``--policy``), else ``[policy] file`` (relative
    to the home folder), else ``<home>/policy.toml`` (not explicit: it may be absent)."""
    home = Path(home)
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser(), True
    if configured:
        p = Path(configured).expanduser()
        return (p if p.is_absolute() else home / p), True
    return home / POLICY_FILE, False


def _ms(t: float) -> int:
    return int(round(t * 1000))


def _error_dict(e: Any) -> dict[str, Any]:
    return {"line": e.line, "path": e.path, "problem": e.problem, "expected": e.expected,
            "severity": e.severity, "text": str(e)}


def _ip_of_multiaddr(maddr: Any) -> str | None:
    for proto in ("ip4", "ip6"):
        try:
            return str(maddr.value_for_protocol(proto))
        except Exception:  # noqa: BLE001 - multiaddr raises several types for "not there"
            continue
    return None


def _remote_ip(obj: Any) -> str | None:
    """The IP of a stream's or connection's remote end (get_remote_address -> (host, port))."""
    try:
        remote = obj.get_remote_address()
    except Exception:  # noqa: BLE001 - a transport without addresses (e.g. relayed)
        return None
    if isinstance(remote, tuple) and remote and isinstance(remote[0], str):
        return remote[0]
    return None


class PolicyService:
    """The node's active policy, its context builder, enforcement helpers and decision log.

    `rep` is the node's `trust.reputation.Reputation` (or anything with `trust_of(peer)`,
    `state.counts`, `state.evidence`, `state.equivocators`, `last_snapshot` and `anchors`;
    missing parts count as "unknown"). `ledger` receives the decision entries (None: not
    logged, e.g. for a dry run from the CLI). `base_anchors` are the anchors the reputation
    has without the policy (default: its anchors at construction); `on_anchors` is called
    after the anchors changed (the node marks its trust dirty so it is recomputed).
    """

    def __init__(self, home: Path | str, path: Path | str | None = None, *, explicit: bool | None = None,
                 rep: Any = None, ledger: Any = None, base_anchors: Iterable[str] | None = None,
                 on_anchors: Callable[[], None] | None = None, clock: Callable[[], float] = time.time) -> None:
        self.home = Path(home)
        if path is None:
            self.path, self.explicit = self.home / POLICY_FILE, False
        else:
            self.path, self.explicit = Path(path), True if explicit is None else explicit
        self.rep = rep
        self.ledger = ledger
        self.clock = clock
        self.on_anchors = on_anchors
        self._base_anchors = sorted(set(base_anchors if base_anchors is not None else getattr(rep, "anchors", ())))
        self.rates = RateTracker()
        self.request_buckets = TokenBuckets()
        self.byte_buckets = TokenBuckets()
        self.host: Any = None
        # statistics
        self.by_rule: dict[str, dict[str, int]] = {}
        self.by_action: dict[str, dict[str, int]] = {}
        self.decisions = 0
        self.reloads = 0
        self.rejected_reloads = 0
        self.last_reload_errors: list[dict[str, Any]] = []
        self.logged = {"entries": 0, "decisions": 0, "folded": 0, "write_errors": 0}
        # decision log, aggregated per flush window
        self._pending: dict[tuple, dict[str, Any]] = {}
        self._folded: dict[tuple, dict[str, Any]] = {}
        self._folded_peers: dict[tuple, set[str]] = {}
        # caches derived from the reputation state
        self._first_seen: dict[str, float] = {}
        self._evidence_seen = 0
        self._rank_key: Any = None
        self._ranks: dict[str, int] = {}
        policy, text, source, warnings = self._read()
        if policy is None:
            raise ConfigError("invalid policy:\n  " + "\n  ".join(str(w) for w in warnings))
        self._install(policy, text, source, warnings)
        self._record_loaded()

    # -- construction for a node ---------------------------------------------------------------

    @classmethod
    def for_node(cls, home: Path | str, config: Any, reputation: Any) -> "PolicyService":
        """The service for a Node: path from $VOUCHNET_POLICY / config, trust from its ReputationService."""
        path, explicit = resolve_policy_path(home, getattr(config, "policy_file", "") or None)

        def mark_dirty() -> None:
            reputation.dirty = True

        return cls(home, path, explicit=explicit, rep=reputation.rep, ledger=reputation.ledger,
                   base_anchors=getattr(config, "anchors", ()), on_anchors=mark_dirty)

    # -- loading ---------------------------------------------------------------------------------

    def _read(self) -> tuple[Policy | None, str, str, list[Any]]:
        """(policy or None, text, source, problems) from the file, or the default policy when the
        implicit file is absent (at start, or while the default runs). Never raises.

        A file that vanishes while its policy is in force is an error, not a switch to the open
        default policy: to go back to the default, write it into the file (policy.DEFAULT_POLICY)."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            if not self.explicit and getattr(self, "source", DEFAULT_SOURCE) == DEFAULT_SOURCE:
                return default_policy(), DEFAULT_POLICY, DEFAULT_SOURCE, []
            return None, "", str(self.path), [_Problem(str(self.path), f"policy file {self.path} does not exist")]
        except OSError as exc:
            return None, "", str(self.path), [_Problem(str(self.path),
                                                       f"cannot read policy file {self.path}: {exc.strerror}")]
        policy, problems = validate(raw, str(self.path))
        text = raw.decode("utf-8", "replace")
        return policy, text, str(self.path), problems

    def _install(self, policy: Policy, text: str, source: str, warnings: list[Any]) -> None:
        self.policy = policy  # one reference swap: decisions in flight keep the object they hold
        self.text = text
        self.source = source
        self.warnings = [w for w in warnings if getattr(w, "severity", "error") == "warning"]
        self.loaded_at = self.clock()
        self._apply_anchors()

    def _apply_anchors(self) -> None:
        rep = self.rep
        if rep is None or not hasattr(rep, "anchors"):
            return
        anchors = sorted(set(self._base_anchors) | set(self.policy.anchor_peers()))
        if list(rep.anchors) != anchors:
            rep.anchors = anchors
            if self.on_anchors is not None:
                self.on_anchors()

    def _record_loaded(self) -> None:
        if self.ledger is None:
            return
        body = {"source": self.source[:512], "policy": self.policy.digest, "rules": len(self.policy.rules),
                "anchors": list(self.policy.anchor_peers()), "at": _ms(self.clock())}
        try:
            self.ledger.append(LOADED_KIND, body)
        except Exception:  # noqa: BLE001 - the policy is in force either way; say so in the log
            log.exception("could not record the policy load in the ledger")

    def reload(self) -> dict[str, Any]:
        """Re-read and validate the policy file; swap only if valid. The result says which."""
        self.flush()  # decisions so far are logged under the policy that made them
        policy, text, source, problems = self._read()
        errors = [p for p in problems if getattr(p, "severity", "error") == "error"]
        if policy is None:
            self.rejected_reloads += 1
            self.last_reload_errors = [_error_dict(e) for e in errors]
            log.warning("policy reload rejected; %s stays in force:\n  %s", self.policy.digest[:12],
                        "\n  ".join(str(e) for e in errors))
            return {"ok": False, "source": source, "errors": self.last_reload_errors,
                    "warnings": [_error_dict(w) for w in problems if w not in errors],
                    "active": self._summary()}
        old = self.policy.digest
        self._install(policy, text, source, problems)
        self.reloads += 1
        self.last_reload_errors = []
        self._record_loaded()
        log.warning("policy reloaded from %s (%s -> %s, %d rules)", source, old[:12], policy.digest[:12],
                    len(policy.rules))
        return {"ok": True, "source": source, "errors": [], "warnings": [_error_dict(w) for w in self.warnings],
                "changed": old != policy.digest, "previous": old, "active": self._summary()}

    def _summary(self) -> dict[str, Any]:
        p = self.policy
        return {"source": self.source, "digest": p.digest, "rules": len(p.rules), "default": p.default.value,
                "loaded_at_ms": _ms(self.loaded_at)}

    # -- context ---------------------------------------------------------------------------------

    def _trust(self, peer: str) -> tuple[float, float]:
        rep = self.rep
        if rep is None:
            return 0.0, 0.0
        try:
            local, glob = rep.trust_of(peer)
        except Exception:  # noqa: BLE001 - unknown trust is the least trusting value
            return 0.0, 0.0
        return float(local), float(glob)

    def _rank(self, peer: str) -> int | None:
        snap = getattr(self.rep, "last_snapshot", None)
        glob = getattr(snap, "global_", None)
        if not isinstance(glob, dict):
            return None
        key = (id(snap), getattr(snap, "at_ms", None), len(glob))
        if key != self._rank_key:
            me = getattr(self.rep, "peer_id", None)
            ranked = sorted(((p, v) for p, v in glob.items() if p != me and v > 0), key=lambda kv: (-kv[1], kv[0]))
            self._ranks = {p: i + 1 for i, (p, _) in enumerate(ranked)}
            self._rank_key = key
        return self._ranks.get(peer)

    def _history(self, peer: str) -> tuple[int, float | None]:
        state = getattr(self.rep, "state", None)
        if state is None:
            return 0, None
        evidence = getattr(state, "evidence", None)
        if isinstance(evidence, list) and len(evidence) < self._evidence_seen:  # a rebuilt state: start over
            self._first_seen, self._evidence_seen = {}, 0
        if isinstance(evidence, list) and len(evidence) > self._evidence_seen:
            seen = self._first_seen
            for ev in evidence[self._evidence_seen:]:
                at = getattr(ev, "at", None)
                p = getattr(ev, "peer", None)
                if isinstance(p, str) and isinstance(at, (int, float)):
                    if p not in seen or at < seen[p]:
                        seen[p] = float(at)
            self._evidence_seen = len(evidence)
        counts = getattr(state, "counts", {}).get(peer)
        interactions = sum(v for v in counts.values() if isinstance(v, int)) if counts else 0
        return interactions, self._first_seen.get(peer)

    def _equivocators(self) -> Any:
        return getattr(getattr(self.rep, "state", None), "equivocators", ()) or ()

    def peer_addr(self, peer: str) -> str | None:
        """The IP of an open connection to `peer`, if the node has one."""
        host = self.host
        if host is None:
            return None
        try:
            from libp2p.peer.id import ID
            conns = host.get_network().get_connections(ID.from_base58(peer))
        except Exception:  # noqa: BLE001
            return None
        for conn in conns or ():
            ip = _remote_ip(getattr(conn, "muxed_conn", conn))
            if ip:
                return ip
        return None

    def context(self, action: Action | str, peer: str, *, now: float | None = None, addr: str | None = None,
                content_size: int | None = None, publisher: str | None = None, record: bool = True,
                lookup_addr: bool = True) -> Context:
        """The Context for one decision. `record=False` reads the request rate without counting one."""
        action = Action(action)
        now = self.clock() if now is None else now
        local, glob = self._trust(peer)
        interactions, first_seen = self._history(peer)
        eq = self._equivocators()
        if addr is None and lookup_addr:
            addr = self.peer_addr(peer)
        key = (action, peer)
        recent = self.rates.hit(key, now) if record else self.rates.rate(key, now)
        return Context(peer, action, local_trust=local, global_trust=glob, rank=self._rank(peer), peer_addr=addr,
                       content_size=content_size, publisher=publisher,
                       publisher_trust=self._trust(publisher)[1] if publisher is not None else None,
                       first_seen=first_seen, interactions=interactions,
                       proven_equivocation=peer in eq or (publisher is not None and publisher in eq),
                       requests_recent=recent, now=now)

    # -- decisions -------------------------------------------------------------------------------

    def decide(self, action: Action | str, peer: str, **fields: Any) -> Decision:
        """The active policy's decision (never raises: the engine fails closed). DENY and LIMIT are
        logged to the ledger. Fields: now, addr, content_size, publisher."""
        ctx = self.context(action, peer, **fields)
        d = self.policy.decide(ctx)
        self._note(ctx, d, refused=False)
        return d

    def admit(self, action: Action | str, peer: str, *, nbytes: int | None = None,
              **fields: Any) -> tuple[bool, Decision]:
        """decide() and enforce it: (allowed, decision). A LIMIT is enforced with token buckets per
        (action, peer): its `rate` per call, its `bandwidth` with `nbytes` (when given)."""
        ctx = self.context(action, peer, **fields)
        d = self.policy.decide(ctx)
        allowed = d.verdict is not DENY
        if d.verdict is LIMIT:
            allowed = self._within(ctx, d, nbytes)
        self._note(ctx, d, refused=d.verdict is LIMIT and not allowed)
        return allowed, d

    def _within(self, ctx: Context, d: Decision, nbytes: int | None) -> bool:
        key = (ctx.action, ctx.peer_id)
        try:
            if d.rate is not None and not self.request_buckets.take(key, ctx.now, d.rate):
                return False
            if d.bandwidth is not None and nbytes:
                return self.byte_buckets.take(key, ctx.now, d.bandwidth, amount=float(nbytes))
        except ValueError:  # a clock that is not finite: refuse rather than guess
            return False
        return True

    def _note(self, ctx: Context, d: Decision, refused: bool) -> None:
        self.decisions += 1
        v = d.verdict.value
        r = self.by_rule.setdefault(d.rule, {})
        r[v] = r.get(v, 0) + 1
        a = self.by_action.setdefault(ctx.action.value, {})
        a[v] = a.get(v, 0) + 1
        if refused:
            r["refused"] = r.get("refused", 0) + 1
            a["refused"] = a.get("refused", 0) + 1
        if d.verdict is ALLOW or self.ledger is None:
            return
        at = _ms(ctx.now) if math.isfinite(ctx.now) else _ms(self.clock())
        digest = self.policy.digest
        key = (ctx.peer_id, ctx.action.value, d.rule, v, digest)
        entry = self._pending.get(key)
        if entry is None and len(self._pending) >= MAX_ENTRIES_PER_FLUSH:
            fkey = (ctx.action.value, d.rule, v, digest)
            entry = self._folded.get(fkey)
            if entry is None:
                entry = self._folded[fkey] = self._new_entry("*", ctx, d, at)
                self._folded_peers[fkey] = set()
            peers = self._folded_peers[fkey]
            if len(peers) < MAX_FOLDED_PEERS:
                peers.add(ctx.peer_id)
            entry["peers"] = len(peers)  # distinct peers folded in (counted up to MAX_FOLDED_PEERS)
        elif entry is None:
            entry = self._pending[key] = self._new_entry(ctx.peer_id, ctx, d, at)
            if ctx.peer_addr:
                entry["addr"] = ctx.peer_addr[:64]
        entry["count"] += 1
        entry["last"] = max(entry["last"], at)
        if refused:
            entry["refused"] = entry.get("refused", 0) + 1

    def _new_entry(self, peer: str, ctx: Context, d: Decision, at: int) -> dict[str, Any]:
        body: dict[str, Any] = {"peer": peer, "action": ctx.action.value, "verdict": d.verdict.value, "rule": d.rule,
                                "reason": d.reason[:MAX_REASON], "policy": self.policy.digest, "at": at, "last": at,
                                "count": 0}
        if d.verdict is LIMIT:
            if d.rate is not None:
                body["rate_milli"] = int(round(d.rate * 1000))
            if d.bandwidth is not None:
                body["bandwidth"] = int(round(d.bandwidth))
            body["refused"] = 0
        return body

    def flush(self) -> int:
        """Write the aggregated decisions to the ledger (one transaction); returns the entries written."""
        if not self._pending and not self._folded:
            return 0
        bodies = list(self._pending.values()) + list(self._folded.values())
        self._pending, self._folded, self._folded_peers = {}, {}, {}
        if self.ledger is None:
            return 0
        try:
            self.ledger.append_many([(DECISION_KIND, b) for b in bodies])
        except Exception:  # noqa: BLE001 - losing a log line must not take the node down
            self.logged["write_errors"] += 1
            log.exception("could not write %d policy decisions to the ledger", len(bodies))
            return 0
        self.logged["entries"] += len(bodies)
        self.logged["decisions"] += sum(b["count"] for b in bodies)
        self.logged["folded"] += sum(b["count"] for b in bodies if b["peer"] == "*")
        for b in bodies:
            log.info("policy %s %s for %s by rule %s (x%d): %s", b["verdict"], b["action"], b["peer"], b["rule"],
                     b["count"], b["reason"])
        return len(bodies)

    async def run(self, task_status: Any = None) -> None:
        """Flush the decision log every FLUSH_INTERVAL seconds (a task in the node's nursery)."""
        import trio
        if task_status is not None:
            task_status.started()
        while True:
            await trio.sleep(FLUSH_INTERVAL)
            self.flush()

    def close(self) -> None:
        self.flush()

    # -- enforcement helpers for the node ----------------------------------------------------------

    def attach(self, host: Any) -> None:
        """Gate inbound connections: a connection a denied peer opened to us is closed at once."""
        self.host = host
        from libp2p.abc import INotifee
        from libp2p.rcmgr import Direction

        service = self

        class InboundGate(INotifee):
            async def connected(self, network: Any, conn: Any) -> None:
                if getattr(conn, "direction", None) != Direction.INBOUND:
                    return
                muxed = getattr(conn, "muxed_conn", None)
                peer = str(getattr(muxed, "peer_id", ""))
                ok, d = service.admit(Action.INBOUND_CONNECTION, peer, addr=_remote_ip(muxed), lookup_addr=False)
                if not ok:
                    log.info("closing inbound connection from %s: %s by rule %s (%s)", peer, d.verdict.value,
                             d.rule, d.reason)
                    import trio
                    with trio.move_on_after(5):
                        await conn.close()

            async def opened_stream(self, network: Any, stream: Any) -> None:
                return None

            async def closed_stream(self, network: Any, stream: Any) -> None:
                return None

            async def disconnected(self, network: Any, conn: Any) -> None:
                return None

            async def listen(self, network: Any, multiaddr: Any) -> None:
                return None

            async def listen_close(self, network: Any, multiaddr: Any) -> None:
                return None

        host.get_network().register_notifee(InboundGate())

    def check_dial(self, peer: str, info: Any = None) -> None:
        """Raise PolicyDenied if the policy refuses to dial `peer` (info: its PeerInfo, for the address)."""
        addr = None
        for maddr in getattr(info, "addrs", ()) or ():
            addr = _ip_of_multiaddr(maddr)
            if addr:
                break
        ok, d = self.admit(Action.OUTBOUND_DIAL, peer, addr=addr, lookup_addr=False)
        if not ok:
            raise PolicyDenied(f"local policy refuses to dial {peer}: {d.verdict.value} by rule {d.rule} "
                               f"({d.reason})", d)

    async def serve_refusal(self, peer: str, stream: Any, request: Any, store: Any,
                            max_wait: float = 0.0) -> tuple[Any, str] | None:
        """None to serve a content request, else (ErrorCode, message): DENIED, or BUSY over a limit.

        A request over a LIMIT first waits up to `max_wait` seconds (at most MAX_THROTTLE, 0.25 s)
        for its tokens, so a client pipelining a few requests is slowed down to the limit rather
        than refused; what the limit cannot admit in that time is answered BUSY, and the client
        backs off and asks again without holding a stream here."""
        from overlay.wire import protocol
        from trust.manifest import content_id_from_digest
        size = nbytes = None
        try:
            if isinstance(request, protocol.GetManifest):
                found = store.lookup(request.cid)
                if found is not None:
                    size, nbytes = found[0].size, 1024
            else:
                found = store.lookup(content_id_from_digest(request.digest))
                if found is not None:
                    m = found[0]
                    end = min(request.start + request.count, m.chunk_count)
                    size = m.size
                    nbytes = sum(m.chunk_length(i) for i in range(request.start, end)) if request.start < end else 0
        except Exception:  # noqa: BLE001 - the serving path reports missing content itself
            size = nbytes = None
        ctx = self.context(Action.SERVE_REQUEST, peer, addr=_remote_ip(stream), content_size=size, lookup_addr=False)
        d = self.policy.decide(ctx)
        ok = d.verdict is not DENY
        if d.verdict is LIMIT:
            ok = await self._throttle(ctx, d, nbytes, min(max(max_wait, 0.0), MAX_THROTTLE))
        self._note(ctx, d, refused=d.verdict is LIMIT and not ok)
        if ok:
            return None
        if d.verdict is DENY:
            return protocol.ErrorCode.DENIED, f"denied by policy rule {d.rule}: {d.reason}"
        return protocol.ErrorCode.BUSY, f"over the limit of policy rule {d.rule}: {d.reason}"

    async def _throttle(self, ctx: Context, d: Decision, nbytes: int | None, max_wait: float) -> bool:
        """Take the LIMIT's tokens (request, then bytes), waiting up to max_wait for them."""
        import trio
        key = (ctx.action, ctx.peer_id)
        need_rate, need_bytes = d.rate is not None, d.bandwidth is not None and bool(nbytes)
        now, deadline = ctx.now, self.clock() + max_wait
        while True:
            try:
                if need_rate and self.request_buckets.take(key, now, d.rate):
                    need_rate = False
                if not need_rate and need_bytes and self.byte_buckets.take(key, now, d.bandwidth,
                                                                           amount=float(nbytes)):
                    need_bytes = False
            except ValueError:  # a clock that is not finite: refuse rather than guess
                return False
            if not need_rate and not need_bytes:
                return True
            left = deadline - self.clock()
            if left <= 0:
                return False
            await trio.sleep(min(THROTTLE_STEP, left))
            now = self.clock()

    def choose_providers(self, peers: list[str], content_size: int | None = None,
                         tier: Callable[[str], int] | None = None,
                         denied: dict[str, Any] | None = None) -> list[str]:
        """The providers the policy lets a fetch use: allowed ones first, then limited ones, each in
        the given order. With `tier`, lower tiers come first whatever the verdict (a peer that
        credible witnesses report faulty is riskier than a limited newcomer), allowed before
        limited within a tier. `denied`, if given, receives each refused peer's decision.
        Raises PolicyDenied when it refuses every one of them."""
        kept: list[tuple[int, int, int, str]] = []
        refused = []
        for k, p in enumerate(peers):
            d = self.decide(Action.CHOOSE_PROVIDER, p, content_size=content_size)
            if d.verdict is DENY:
                refused.append(f"{p}: rule {d.rule} ({d.reason})")
                if denied is not None:
                    denied[p] = d
            else:
                kept.append((tier(p) if tier is not None else 0, d.verdict is not ALLOW, k, p))
        if peers and not kept:
            raise PolicyDenied("local policy refuses every provider (choose_provider): " + "; ".join(refused[:8]))
        if refused:
            log.info("policy skips %d provider(s): %s", len(refused), "; ".join(refused[:8]))
        return [p for *_, p in sorted(kept)]

    def check_content(self, provider: str | None, manifest: Any) -> None:
        """Raise PolicyDenied if the policy refuses content signed by manifest.publisher."""
        publisher = manifest.publisher
        d = self.decide(Action.ACCEPT_CONTENT, provider or publisher, publisher=publisher,
                        content_size=manifest.size)
        if d.verdict is DENY:
            raise PolicyDenied(f"local policy refuses this content (publisher {publisher}, {manifest.size} bytes): "
                               f"denied by rule {d.rule} ({d.reason})", d)

    def allows(self, action: Action | str, peer: str, **fields: Any) -> bool:
        """admit() as a yes/no, for gates (gossip)."""
        return self.admit(action, peer, **fields)[0]

    # -- inspection (control ops, CLI) --------------------------------------------------------------

    def show(self) -> dict[str, Any]:
        """The active chain: settings, rules in configured order, evaluation order per action."""
        p = self.policy
        try:
            tables = tomllib.loads(self.text).get("rule", [])
            tables = tables if isinstance(tables, list) else []
        except (tomllib.TOMLDecodeError, TypeError):
            tables = []
        rules = []
        for i, rule in enumerate(p.rules):
            inner = getattr(rule, "inner", rule)
            options = tables[i] if i < len(tables) and isinstance(tables[i], dict) else {}
            rules.append({"name": rule.name, "type": getattr(type(inner), "type", "") or options.get("type", "plugin"),
                          "actions": sorted(a.value for a in rule.applies_to),
                          "deny_list": bool(getattr(rule, "deny_list", False)),
                          "options": _jsonable({k: v for k, v in options.items() if k not in ("type", "name")})})
        chains = {a.value: {"rules": [r.name for r in p.rules_for(a)], "default": p.default_for(a).value}
                  for a in Action}
        return {**self._summary(), "defaults": {a.value: v.value for a, v in p.defaults.items()},
                "anchors": list(p.anchor_peers()), "warnings": [_error_dict(w) for w in self.warnings],
                "rule_list": rules, "chains": chains, "path": str(self.path), "explicit": self.explicit}

    def explain(self, action: Action | str, peer: str, *, content_size: int | None = None,
                publisher: str | None = None, addr: str | None = None) -> dict[str, Any]:
        """A dry run: the outcome and every applicable rule's answer. Counts nothing, logs nothing."""
        ctx = self.context(action, peer, content_size=content_size, publisher=publisher, addr=addr, record=False)
        outcome, steps = self.policy.dry_run(ctx)
        return {"outcome": _decision_dict(outcome),
                "steps": [{"rule": name, "decision": _decision_dict(d) if d is not None else None}
                          for name, d in steps],
                "context": {f.name: (getattr(ctx, f.name).value if f.name == "action" else getattr(ctx, f.name))
                            for f in dataclasses.fields(ctx)},
                "policy": self._summary()}

    def stats(self) -> dict[str, Any]:
        return {"policy": self._summary(), "decisions": self.decisions,
                "by_rule": {k: dict(v) for k, v in sorted(self.by_rule.items())},
                "by_action": {k: dict(v) for k, v in sorted(self.by_action.items())},
                "ledger": dict(self.logged, pending=len(self._pending) + len(self._folded)),
                "reloads": self.reloads, "rejected_reloads": self.rejected_reloads,
                "last_reload_errors": self.last_reload_errors}

    def control_handlers(self) -> dict[str, Callable[[dict[str, Any], Any], Awaitable[Any]]]:
        """Control-socket ops: policy-show, policy-explain, policy-reload, policy-stats."""
        async def show(req: dict[str, Any], send: Any) -> Any:
            return self.show()

        async def explain(req: dict[str, Any], send: Any) -> Any:
            return self.explain(**explain_args(req))

        async def reload(req: dict[str, Any], send: Any) -> Any:
            return self.reload()

        async def stats(req: dict[str, Any], send: Any) -> Any:
            return self.stats()

        return {"policy-show": show, "policy-explain": explain, "policy-reload": reload, "policy-stats": stats}


def explain_args(req: dict[str, Any]) -> dict[str, Any]:
    """Checked arguments of an explain request (control op or CLI)."""
    action = req.get("action")
    try:
        action = Action(action)
    except ValueError:
        raise VouchnetError(f"unknown action {str(action)[:40]!r}; one of: "
                            f"{', '.join(a.value for a in Action)}") from None
    peer = req.get("peer")
    if not is_peer_id(peer):
        raise VouchnetError(f"{str(peer)[:80]!r} is not a peer ID (expected 12D3KooW...)")
    publisher = req.get("publisher")
    if publisher is not None and not is_peer_id(publisher):
        raise VouchnetError(f"publisher {str(publisher)[:80]!r} is not a peer ID")
    size = req.get("size")
    if size is not None and (type(size) is not int or size < 0):
        raise VouchnetError("size must be a non-negative integer number of bytes")
    addr = req.get("addr")
    if addr is not None and not isinstance(addr, str):
        raise VouchnetError("addr must be an IP address string")
    return {"action": action, "peer": peer, "content_size": size, "publisher": publisher, "addr": addr}


def _decision_dict(d: Decision) -> dict[str, Any]:
    out: dict[str, Any] = {"verdict": d.verdict.value, "rule": d.rule, "reason": d.reason}
    if d.rate is not None:
        out["rate"] = d.rate
    if d.bandwidth is not None:
        out["bandwidth"] = d.bandwidth
    return out


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return str(v)  # TOML dates and times


@dataclasses.dataclass(frozen=True)
class _Problem:
    """A file-level problem shaped like policy.ValidationError (for unreadable or missing files)."""

    source: str
    problem: str
    line: int | None = None
    path: str = ""
    expected: str = ""
    severity: str = "error"

    def __str__(self) -> str:
        return f"{self.source}: error: {self.problem}"
