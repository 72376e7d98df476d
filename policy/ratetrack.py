"""Per-peer rates for the policy: a sliding-window counter and token buckets. Pure: time is passed in.

`RateTracker` measures (fills Context.requests_recent); `TokenBuckets` enforces (a LIMIT
decision's rate or bandwidth). Both keep O(1) state per key and at most `max_keys` keys,
evicting the least recently used: a flood of fresh peer IDs can only evict the quietest peers,
whose state is worth least. Neither is thread-safe; use one per event loop.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Hashable

__all__ = ["RateTracker", "TokenBuckets"]


def _check_time(now: float) -> float:
    if isinstance(now, bool) or not isinstance(now, (int, float)) or not math.isfinite(now):
        raise ValueError(f"now must be a finite number of seconds, got {now!r}")
    return float(now)


class RateTracker:
    """Sliding-window rate estimate per key, in units per second (requests, or bytes with `amount`).

    The window is split into fixed slots of `window` seconds; the estimate at time t weighs the
    previous slot by the part of it still inside the window ending at t:

        rate(t) = (previous · (1 - f) + current) / window,  f = position of t in its slot (0..1)

    which tracks a true sliding window closely for the cost of two numbers per key. Time moving
    backwards (clock adjustments) counts into the current slot rather than resetting anything.
    """

    __slots__ = ("window", "max_keys", "_state")

    def __init__(self, window: float = 1.0, max_keys: int = 65536) -> None:
        if isinstance(window, bool) or not isinstance(window, (int, float)) or not 0 < window < math.inf:
            raise ValueError(f"window must be a positive number of seconds, got {window!r}")
        if isinstance(max_keys, bool) or not isinstance(max_keys, int) or max_keys < 1:
            raise ValueError(f"max_keys must be an integer >= 1, got {max_keys!r}")
        self.window = float(window)
        self.max_keys = max_keys
        self._state: OrderedDict[Hashable, list[float]] = OrderedDict()  # key -> [slot, previous, current]

    def __len__(self) -> int:
        return len(self._state)

    def _roll(self, st: list[float], slot: float) -> None:
        if slot == st[0] + 1:
            st[0], st[1], st[2] = slot, st[2], 0.0
        elif slot > st[0]:
            st[0], st[1], st[2] = slot, 0.0, 0.0
        # slot < st[0]: the clock went backwards; keep counting into the current slot.

    def _estimate(self, st: list[float], now: float) -> float:
        frac = now / self.window - st[0]
        frac = min(max(frac, 0.0), 1.0)
        return (st[1] * (1.0 - frac) + st[2]) / self.window

    def hit(self, key: Hashable, now: float, amount: float = 1.0) -> float:
        """Record `amount` (one request, or n bytes) for key at `now`; return its rate including it."""
        now = _check_time(now)
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not 0 <= amount < math.inf:
            raise ValueError(f"amount must be a finite number >= 0, got {amount!r}")
        slot = math.floor(now / self.window)
        st = self._state.get(key)
        if st is None:
            st = [slot, 0.0, 0.0]
            self._state[key] = st
            if len(self._state) > self.max_keys:
                self._state.popitem(last=False)
        else:
            self._state.move_to_end(key)
            self._roll(st, slot)
        st[2] += amount
        return self._estimate(st, now)

    def rate(self, key: Hashable, now: float) -> float:
        """Current rate of key without recording anything (0.0 for an unknown key)."""
        now = _check_time(now)
        st = self._state.get(key)
        if st is None:
            return 0.0
        slot = math.floor(now / self.window)
        if slot > st[0] + 1:
            return 0.0
        if slot == st[0] + 1:
            return self._estimate([slot, st[2], 0.0], now)
        return self._estimate(st, now)

    def forget(self, key: Hashable) -> None:
        self._state.pop(key, None)

    def prune(self, now: float) -> int:
        """Drop keys with nothing inside the window any more; return how many."""
        now = _check_time(now)
        slot = math.floor(now / self.window)
        stale = [k for k, st in self._state.items() if slot > st[0] + 1]
        for k in stale:
            del self._state[k]
        return len(stale)


class TokenBuckets:
    """One token bucket per key, for enforcing a LIMIT: `take(peer, now, rate, burst)` -> bool.

    The rate comes with each call (the decision may change as trust changes); a bucket holds at
    most `burst` tokens and refills at `rate` per second. A new key starts full.
    """

    __slots__ = ("max_keys", "_state")

    def __init__(self, max_keys: int = 65536) -> None:
        if isinstance(max_keys, bool) or not isinstance(max_keys, int) or max_keys < 1:
            raise ValueError(f"max_keys must be an integer >= 1, got {max_keys!r}")
        self.max_keys = max_keys
        self._state: OrderedDict[Hashable, list[float]] = OrderedDict()  # key -> [tokens, last time]

    def __len__(self) -> int:
        return len(self._state)

    def take(self, key: Hashable, now: float, rate: float, burst: float | None = None, amount: float = 1.0) -> bool:
        """Take `amount` tokens if the bucket has them. burst defaults to max(rate, amount)."""
        now = _check_time(now)
        for name, value in (("rate", rate), ("amount", amount)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        cap = max(rate, amount) if burst is None else burst
        if isinstance(cap, bool) or not isinstance(cap, (int, float)) or not 0 < cap < math.inf:
            raise ValueError(f"burst must be a finite number > 0, got {burst!r}")
        st = self._state.get(key)
        if st is None:
            st = [float(cap), now]
            self._state[key] = st
            if len(self._state) > self.max_keys:
                self._state.popitem(last=False)
        else:
            self._state.move_to_end(key)
            elapsed = max(now - st[1], 0.0)  # a clock going backwards refills nothing
            st[0] = min(cap, st[0] + elapsed * rate)
            st[1] = max(st[1], now)
        if st[0] >= amount:
            st[0] -= amount
            return True
        return False

    def forget(self, key: Hashable) -> None:
        self._state.pop(key, None)
