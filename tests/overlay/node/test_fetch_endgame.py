"""The end of a fetch: once every chunk is in, requests still running elsewhere (a staller's
duplicate of the last batch) are stopped instead of waited for (seen in the 24-node real-network
run: every fetch that asked the staller took its full 10 s request timeout)."""
from __future__ import annotations

import time
from types import SimpleNamespace

import trio
import trio.testing

from overlay.node.fetch import Fetch, _Batch, contiguous_batches
from trust.manifest import content_id_from_digest

CID = content_id_from_digest(bytes(range(32)))
STALL = 60.0


def test_a_staller_does_not_hold_the_fetch_once_every_chunk_is_in():
    recorded: list = []
    f = Fetch(SimpleNamespace(record=lambda *obs: recorded.extend(obs)), CID, ["good", "stall"])
    f.queue.extend(_Batch(b) for b in contiguous_batches(list(range(8)), 4))
    asked: list[tuple[str, int]] = []

    async def fetch_batch(peer: str, batch: _Batch) -> None:
        asked.append((peer, batch.indexes[0]))
        if peer == "stall":
            await trio.sleep(STALL)  # the first chunk, then silence: nothing arrives
        f.done.update(batch.indexes)  # what _record does for verified chunks

    f._fetch_batch = fetch_batch  # type: ignore[method-assign]

    async def main() -> float:
        t0 = time.monotonic()
        with trio.fail_after(STALL / 2):  # the old code waits for the staller: this fires
            async with trio.open_nursery() as nursery:
                f._workers = nursery.cancel_scope  # as Fetch.run sets it
                nursery.start_soon(f._worker, "stall")
                await trio.testing.wait_all_tasks_blocked()  # the staller holds the first batch
                nursery.start_soon(f._worker, "good")
        return time.monotonic() - t0

    took = trio.run(main)
    assert f.done == set(range(8)) and f._finished()
    assert asked[0] == ("stall", 0)  # the staller did get a batch...
    assert ("good", 0) in asked  # ...which the good provider duplicated (endgame)
    assert took < STALL / 2
    # It had a head start of more than ENDGAME_AFTER and lost: recorded as a stall, once.
    [obs] = recorded
    assert obs.peer == "stall" and obs.kind.value == "timeout" and "outpaced on chunks 0-3" in obs.evidence
    assert f.stats["stall"].strikes == 1 and f.stats["good"].strikes == 0
