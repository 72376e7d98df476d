"""A misbehaving vouchnet node, for integration tests only.

Nothing in ``overlay`` imports this module and no ``vouchnet`` flag or config key reaches it:
tests start it with ``python -m tests.adversary --home H --mode MODE --listen ... [--bootstrap ...]``
and it prints the same ready lines as ``vouchnet node run``. It is a real
:class:`overlay.node.daemon.Node` (same host, DHT, control socket, store) whose serving path lies:

==================  ==========================================================================
mode                what it answers
==================  ==========================================================================
corrupt             GET_CHUNKS: the real chunks with one byte flipped, with their valid proofs
wrong_index         GET_CHUNKS: for index i the valid data + proof of chunk i+1 (i-1 for the
                    last chunk), labelled as chunk i
forged_manifest     GET_MANIFEST: the real signed manifest with one signature bit flipped
foreign_manifest    GET_MANIFEST: the same root/size/name/created, claiming the real publisher,
                    but sealed with the adversary's own key
oversized           any request: a frame header announcing MAX_MESSAGE + 1 bytes, then garbage
malformed           any request: a well-framed payload with a bad version byte + random bytes
stall               GET_CHUNKS: the first chunk of the batch, then silence (stream kept open)
partial             GET_CHUNKS: honest for chunks below ``--partial`` (default 96), then stalls
                    like ``stall``; used to interrupt a fetch at a known point
equivocate          serves honestly, but gossips two different signed attestations with the
                    same sequence number about each connected peer (a provable lie)
==================  ==========================================================================

In every mode not listed for a request type the adversary answers that request honestly: the
chunk-lying modes serve the genuine signed manifest (so the client accepts it and moves on to
the chunk phase, where the lie is), and the manifest-lying modes serve genuine chunks (so the
only evidence against them is the manifest; a client drops them before asking for chunks).

:func:`clone_content` (from overlay/lab/localnet.py, re-exported here) copies verified content
(signed manifest + every chunk, each re-verified by ``put_chunk``) from one home's store into
another's, so the adversary holds the publisher's exact CID.
"""
from __future__ import annotations

import argparse
import logging
import os
import struct
import sys
from pathlib import Path

import trio

from overlay.wire import protocol
from overlay.config import load_config
from overlay.home import Home
from overlay.lab.localnet import clone_content  # noqa: F401  (re-exported for the tests)
from overlay.node.daemon import Node, write_ready_line
from overlay.wire.streams import send, send_payload
from trust import encoding, keyfile
from trust.manifest import Manifest, content_id_from_digest
from trust.signing import seal

log = logging.getLogger("vouchnet.adversary")

MODES = ("corrupt", "wrong_index", "forged_manifest", "foreign_manifest", "oversized", "malformed", "stall",
         "partial", "equivocate")
STALL_SECONDS = 60.0  # far longer than any test's request_timeout; the stream stays open meanwhile
DEFAULT_PARTIAL = 96


class AdversaryNode(Node):
    """A Node whose ``_answer`` lies according to ``mode`` (see the module docstring)."""

    def __init__(self, *args, mode: str, partial: int = DEFAULT_PARTIAL, **kwargs):
        if mode not in MODES:
            raise ValueError(f"unknown adversary mode {mode!r} (known: {', '.join(MODES)})")
        super().__init__(*args, **kwargs)
        self.mode = mode
        self.partial = partial
        if mode in ("stall", "partial"):
            # The node's own per-request deadline would close the stalled stream (the client
            # would then see an early EOF, a protocol violation, instead of a stall).
            self.limits.request_timeout = STALL_SECONDS + 10
        if mode == "equivocate":
            honest_tick = self.reputation.tick

            async def lying_tick(now=None):
                await honest_tick(now)
                await self._equivocate()
            self.reputation.tick = lying_tick
            self._lie_seq = 1000

    async def _equivocate(self) -> None:
        """Sign two conflicting attestations for one sequence number and gossip both."""
        import time as _time

        from trust.attestation import sign_attestation
        gossip = self.reputation.gossip
        if gossip is None:
            return
        self._lie_seq += 1
        for peer in self.connected_peers():
            for value in (0.9, 0.1):
                env = sign_attestation(self.identity, peer, value, self._lie_seq, int(_time.time()), b"\0" * 32)
                try:
                    await gossip.publish_attestation(env)
                except Exception as exc:  # no mesh yet: the next tick lies again
                    log.debug("could not publish: %s", exc)

    async def _answer(self, stream, peer: str, request) -> str:
        """Called by Node._serve once the whole request has arrived and a serving slot is held."""
        if self.mode == "equivocate":
            return await super()._answer(stream, peer, request)
        log.info("adversary (%s) got %s from %s", self.mode, type(request).__name__, peer)
        if self.mode == "oversized":
            await stream.write(struct.pack(">I", protocol.MAX_MESSAGE + 1) + os.urandom(4096))
            await trio.sleep(0.5)  # let the bytes leave before the stream is closed
            return "oversized"
        if self.mode == "malformed":
            await send_payload(stream, b"\xee" + os.urandom(63))  # version 0xee, then noise
            return "malformed"
        if isinstance(request, protocol.GetManifest):
            return await self._manifest(stream, request.cid)
        return await self._chunks(stream, request)

    async def _manifest(self, stream, cid: str) -> str:
        item = self.store.get(cid)
        if item is None or not item.complete:
            await send(stream, protocol.Error(protocol.ErrorCode.NOT_FOUND, "no such content here"))
            return "manifest"
        signed = item.signed_manifest
        if self.mode == "forged_manifest":
            signed = forge_signature(signed)
        elif self.mode == "foreign_manifest":
            signed = foreign_manifest(item.manifest, self.identity)
        await send(stream, protocol.ManifestMsg(signed))
        return "manifest"

    async def _chunks(self, stream, request: "protocol.GetChunks") -> str:
        cid = content_id_from_digest(request.digest)
        item = self.store.get(cid)
        if item is None or not item.complete:
            await send(stream, protocol.Error(protocol.ErrorCode.NOT_FOUND, "no such content here"))
            return "chunks"
        n = item.manifest.chunk_count
        end = min(request.start + request.count, n)
        for index in range(request.start, end):
            if (self.mode == "stall" and index > request.start) or (self.mode == "partial" and index >= self.partial):
                log.info("adversary stalling before chunk %d", index)
                await trio.sleep(STALL_SECONDS)
                return "chunks"
            if self.mode == "wrong_index":
                other = index + 1 if index + 1 < n else index - 1
                data, proof = self.store.read_chunk(cid, other)
            else:
                data, proof = self.store.read_chunk(cid, index)
            if self.mode == "corrupt":
                data = bytes([data[0] ^ 0x01]) + data[1:]
            await send(stream, protocol.Chunk(index, tuple(proof), data))
        return "chunks"


def forge_signature(signed: bytes) -> bytes:
    """The signed manifest envelope with one bit of its Ed25519 signature flipped."""
    fmt, tag, version, payload, public_key, signature = encoding.decode(signed, Manifest.MAX_SIZE)
    bad = bytes([signature[0] ^ 0x80]) + signature[1:]
    return encoding.encode([fmt, tag, version, payload, public_key, bad])


def foreign_manifest(real: Manifest, identity) -> bytes:
    """The real manifest's fields (publisher included) sealed with ``identity``'s key instead."""
    env = seal(identity.signing_key, Manifest.TAG, Manifest.VERSION, encoding.encode(real.to_dict()))
    return env.to_bytes()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m tests.adversary", description=__doc__.split("\n")[0])
    ap.add_argument("--home", required=True, type=Path)
    ap.add_argument("--mode", required=True, choices=MODES)
    ap.add_argument("--listen", action="append", default=[])
    ap.add_argument("--bootstrap", action="append", default=[])
    ap.add_argument("--partial", type=int, default=DEFAULT_PARTIAL, help="partial mode: chunks served honestly")
    ap.add_argument("-v", "--verbose", action="count", default=1)
    args = ap.parse_args(argv)
    from overlay.logs import setup_logging
    setup_logging(args.verbose)
    home = Home(args.home)
    home.require()
    identity = keyfile.load_identity(home.key_file, None)
    cfg = load_config(home.config_file)
    node = AdversaryNode(home, identity, cfg, listen=args.listen or None, bootstrap=args.bootstrap,
                         mode=args.mode, partial=args.partial)
    log.warning("ADVERSARY node %s running in mode %s", identity.peer_id, args.mode)
    trio.run(node.run, write_ready_line)
    print("adversary stopped", file=sys.stderr)


if __name__ == "__main__":
    main()
