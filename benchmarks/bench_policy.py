"""Policy engine: one decision through a 20-rule chain vs a bare Python call doing one dict lookup.

Chain: 20 built-in rules that all apply to serve_request (4 deny lists: equivocators, two 1,000-peer
lists, 100 address ranges; then rate limits, newcomer quarantines, trust minimums, content
size, 1,000-peer allow lists, address allow lists, anchors) ending in a catch-all allow. The
context is built so no rule before the last one ends evaluation: every rule runs, two limits
are combined, the worst case for a chain of this length. The context is built once (building
it is the node's cost, not the engine's); peer addresses rotate over 64 values so address
parsing is not one cached entry.

Baseline: `lookup(table, key)`, a Python function whose body is one dict lookup, called the
same number of times in the same kind of loop. The target is absolute (< 20 µs per decision);
the ratio says how many bare calls one decision costs. A second figure adds two guarded plugin
rules (timed with perf_counter each) to the same chain.
"""
from __future__ import annotations

import time

from benchmarks.common import Result, interleaved
from policy import Action, Context, Decision, Policy, Verdict
from policy.rules import (AllowAddrs, AllowAll, AllowPeers, Anchors, DenyAddrs, DenyEquivocators, DenyPeers,
                          MaxContentSize, MinTrust, NewcomerQuarantine, RateLimit)
from trust.peerid import peer_id_from_public_key

SERVE = ["serve_request"]
TARGET_S = 20e-6


def _peers(start: int, n: int) -> list[str]:
    return [peer_id_from_public_key(i.to_bytes(32, "big")) for i in range(start, start + n)]


def chain() -> list:
    deny_peers, allow_peers, anchors = _peers(1, 1000), _peers(2001, 1000), _peers(5001, 10)
    deny_ranges = [f"100.{i // 256}.{i % 256}.0/24" for i in range(100)]
    rules = [
        DenyEquivocators(),
        DenyPeers(peers=deny_peers),
        DenyAddrs(ranges=deny_ranges),
        DenyPeers(name="deny-publishers", peers=deny_peers[:500], match="publisher"),
        RateLimit(rate=50.0, hard_cap=200.0),
        NewcomerQuarantine(min_interactions=20, rate=5.0, exempt_global=0.5),
        MinTrust(name="local", actions=SERVE, min_local=0.001),
        MinTrust(name="global", actions=SERVE, min_global=0.0001),
        MinTrust(name="rank", actions=SERVE, max_rank=100_000),
        MaxContentSize(actions=SERVE, max_bytes=2**30),
        AllowPeers(peers=allow_peers),
        AllowAddrs(ranges=["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]),
        Anchors(peers=anchors),
        RateLimit(name="bandwidth", bandwidth=10e6),
        MinTrust(name="both", actions=SERVE, min_local=0.0001, min_global=0.00001, match="all"),
        NewcomerQuarantine(name="young", min_interactions=0, min_age=3600.0, bandwidth=1e6),
        AllowPeers(name="allow-publishers", peers=allow_peers[:100], match="publisher"),
        AllowAddrs(name="allow-v6", ranges=["fd00::/8"]),
        MinTrust(name="judged", actions=SERVE, min_local=0.001, min_interactions=5),
        AllowAll(actions=SERVE),
    ]
    assert len(rules) == 20 and all(Action.SERVE_REQUEST in r.applies_to for r in rules)
    return rules


class _Plugin:
    applies_to = frozenset({Action.SERVE_REQUEST})

    def __init__(self, name: str) -> None:
        self.name = name

    def evaluate(self, ctx: Context) -> Decision | None:
        return None if ctx.global_trust >= 0.0 else Decision(Verdict.DENY, "never", self.name)


def contexts() -> list[Context]:
    peer, publisher = _peers(9001, 2)
    now = 1_700_000_000.0
    return [Context(peer, Action.SERVE_REQUEST, local_trust=0.01, global_trust=0.001, rank=50, content_size=10**6,
                    peer_addr=f"203.0.{i}.{i + 1}", publisher=publisher, publisher_trust=0.01,
                    first_seen=now - 60, interactions=10, requests_recent=3.0, now=now) for i in range(64)]


def _time(policy: Policy, ctxs: list[Context], n: int, repeat: int) -> tuple[float, float]:
    decide = policy.decide
    table = {c.peer_id + str(i): i for i, c in enumerate(ctxs)}
    keys = list(table)

    def lookup(d: dict, k: str) -> int:
        return d[k]

    def subject() -> None:
        for i in range(n):
            decide(ctxs[i & 63])

    def baseline() -> None:
        for i in range(n):
            lookup(table, keys[i & 63])

    s, b = interleaved(subject, baseline, repeat=repeat)
    return s / n, b / n


def run(quick: bool = False) -> list[Result]:
    n, repeat = (5_000, 5) if quick else (50_000, 7)
    ctxs = contexts()
    rules = chain()
    policy = Policy(rules, default="deny")
    d = policy.decide(ctxs[0])
    # The worst case: every rule ran, and the catch-all allow returned the combined limit.
    assert d.verdict is Verdict.LIMIT and d.rate == 5.0 and d.bandwidth == 1e6, d
    assert len(policy.explain(ctxs[0])) == 20
    results = []
    s, b = _time(policy, ctxs, n, repeat)
    results.append(Result(
        name="policy decision, 20-rule chain (every rule evaluated)",
        baseline="Python function call doing one dict lookup",
        subject_s=s * 1e9, baseline_s=b * 1e9, unit="ns",
        target="< 20 µs per decision", ok=s < TARGET_S,
        detail=f"{s * 1e6:.2f} µs per decision ({1 / s:,.0f} decisions/s, {s / b:.0f}x a bare lookup call); "
               f"{n:,} decisions per timing, median of {repeat}",
    ))
    guarded = Policy(rules[:10] + [_Plugin("plugin-a")] + rules[10:-1] + [_Plugin("plugin-b"), rules[-1]],
                     default="deny")
    assert guarded.decide(ctxs[0]) == d
    s2, b2 = _time(guarded, ctxs, n, repeat)
    results.append(Result(
        name="policy decision, 20 rules + 2 guarded plugins",
        baseline="Python function call doing one dict lookup",
        subject_s=s2 * 1e9, baseline_s=b2 * 1e9, unit="ns",
        target="< 20 µs per decision", ok=s2 < TARGET_S,
        detail=f"{s2 * 1e6:.2f} µs per decision; each plugin call is timed (perf_counter x2) and its answer checked",
    ))
    return results


if __name__ == "__main__":
    import sys

    t0 = time.perf_counter()
    for r in run(quick="--quick" in sys.argv):
        print(f"{'OK  ' if r.ok else 'FAIL'} {r.name}: {r.subject_s / 1e3:.2f} µs vs {r.baseline_s:.0f} ns "
              f"({r.ratio:.0f}x, target {r.target})")
        print(f"     baseline: {r.baseline}")
        print(f"     {r.detail}")
    print(f"({time.perf_counter() - t0:.1f} s)")
