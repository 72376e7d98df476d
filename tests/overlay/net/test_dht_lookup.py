"""overlay.net.libp2p_compat.find_providers_early, workaround (k): a provider lookup that would go on
(and lose what it found on a timeout) returns once enough providers are in the local store."""
from __future__ import annotations

from types import SimpleNamespace

import trio
import trio.testing

from overlay.net.libp2p_compat import find_providers_early

KEY = ("1220" + "ab" * 32)


class Store:
    def __init__(self) -> None:
        self.by_key: dict[bytes, list[str]] = {}

    def get_providers(self, key: bytes) -> list[str]:
        return list(self.by_key.get(key, []))


def dht_finding(found_at: list[tuple[float, str]], total: float) -> SimpleNamespace:
    """Like KadDHT: providers go into the local store as they are found; find_providers returns
    only at the end of the whole lookup (`total` seconds)."""
    store = Store()

    async def find_providers(key: str, count: int) -> list[str]:
        assert key == KEY and count == 20
        t = 0.0
        for at, peer in found_at:
            await trio.sleep(at - t)
            t = at
            store.by_key.setdefault(bytes.fromhex(key), []).append(peer)
        await trio.sleep(total - t)
        return store.get_providers(bytes.fromhex(key))

    return SimpleNamespace(provider_store=store, find_providers=find_providers)


def run(dht: SimpleNamespace, **kw) -> tuple[list[str], float]:
    async def main() -> tuple[list[str], float]:
        t0 = trio.current_time()
        got = await find_providers_early(dht, KEY, 20, **kw)
        return got, trio.current_time() - t0
    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_returns_once_enough_are_found():
    dht = dht_finding([(0.2, "a"), (0.4, "b"), (0.6, "c"), (0.8, "d")], total=30.0)
    got, took = run(dht, enough=3, patience=1.0, limit=5.0)
    assert got == ["a", "b", "c"] and took < 0.7


def test_returns_what_it_has_after_patience():
    dht = dht_finding([(0.3, "a"), (2.5, "b")], total=30.0)
    got, took = run(dht, enough=4, patience=1.0, limit=5.0)
    assert got == ["a"] and 1.0 <= took < 1.1


def test_a_timeout_keeps_what_was_found():
    # Nothing until late: the old code (move_on_after around find_providers) returned [] here.
    dht = dht_finding([(4.5, "a")], total=30.0)
    got, took = run(dht, enough=4, patience=10.0, limit=5.0)
    assert got == ["a"] and took == 5.0


def test_a_lookup_that_ends_returns_its_answer_at_once():
    dht = dht_finding([], total=0.5)
    got, took = run(dht, enough=4, patience=1.0, limit=5.0)
    assert got == [] and took < 0.6


def test_ask_directly_keeps_the_peers_order_and_survives_a_failing_one():
    """libp2p_compat (w): connected peers are asked every time (py-libp2p asks no one once its
    local store holds any record of the key); answers in the order the peers were given."""
    from overlay.net.libp2p_compat import ask_directly

    async def query(peer: str, key: bytes):
        if peer == "slow":
            await trio.sleep(60)
        if peer == "broken":
            raise ConnectionResetError("reset")
        return [f"{peer}-1", f"{peer}-2"], []

    dht = SimpleNamespace(provider_store=SimpleNamespace(_get_providers_from_peer_with_closers=query))

    async def main():
        t0 = trio.current_time()
        got = await ask_directly(dht, ["trusted", "slow", "broken", "other"], b"k", timeout=2.0)
        return got, trio.current_time() - t0

    got, took = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert got == ["trusted-1", "trusted-2", "other-1", "other-2"] and took == 2.0
