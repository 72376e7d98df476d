"""The manifest request: BUSY and transient failures are retried with back-off and the other
providers (issue 10, finding 3: a single BUSY answer used to end the fetch); a proven fault or a
NOT_FOUND ends that provider's turn for good."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import trio
import trio.testing

from overlay.node import fetch as fetch_mod
from overlay.node.fetch import Fetch, FetchError, _Busy, _NotProvider
from trust.identity import Identity
from trust.manifest import sign_manifest

PUBLISHER = Identity.from_seed(bytes(range(32)))
CID, SIGNED, _ = sign_manifest(PUBLISHER, bytes(32), 1000, "f.bin", created=1)


def make(answers: dict[str, list]) -> tuple[Fetch, list[str], list]:
    """A Fetch whose providers answer the manifest request from ``answers`` in turn (an exception
    to raise, or the signed manifest)."""
    recorded: list = []
    metrics = SimpleNamespace(verification_failures=SimpleNamespace(labels=lambda *a: SimpleNamespace(inc=lambda: None)))
    node = SimpleNamespace(record=lambda *obs: recorded.extend(obs), policy=None, metrics=metrics)
    f = Fetch(node, CID, list(answers))
    asked: list[str] = []

    async def ask(peer: str) -> bytes:
        asked.append(peer)
        queue = answers[peer]
        item = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(item, BaseException):
            raise item
        return item

    f._ask_manifest = ask  # type: ignore[method-assign]
    return f, asked, recorded


def run(f: Fetch) -> tuple[bytes | Exception, float]:
    async def main():
        t0 = trio.current_time()
        try:
            return await f._get_manifest(), trio.current_time() - t0
        except FetchError as exc:
            return exc, trio.current_time() - t0
    return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_busy_provider_is_asked_again_after_a_back_off():
    f, asked, recorded = make({"only": [_Busy("node is busy"), _Busy("node is busy"), SIGNED]})
    got, took = run(f)
    assert got == SIGNED and asked == ["only"] * 3 and not recorded
    assert took == pytest.approx(fetch_mod.BUSY_BACKOFF * (2 + 4))  # 0.1 s, then 0.2 s


def test_transient_failure_then_the_other_provider():
    f, asked, _ = make({"gone": [ConnectionResetError("reset")], "busy": [_Busy("busy"), SIGNED]})
    got, _ = run(f)
    assert got == SIGNED and asked == ["gone", "busy", "gone", "busy"]


def test_not_found_and_faults_are_not_asked_again():
    f, asked, recorded = make({"nf": [_NotProvider("no such content here")], "liar": [b"not a manifest"],
                               "busy": [_Busy("node is busy")]})
    got, took = run(f)
    assert isinstance(got, FetchError)
    assert asked.count("nf") == 1 and asked.count("liar") == 1
    assert asked.count("busy") == fetch_mod.MANIFEST_ROUNDS
    assert [o.peer for o in recorded] == ["liar"] and recorded[0].kind.value == "manifest_invalid"
    assert "nf: no such content here" in str(got) and "busy: busy: node is busy" in str(got)
    assert took < 10  # bounded: ~7 s of back-off in all
