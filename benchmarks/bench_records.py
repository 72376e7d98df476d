"""Signed-record validation vs a raw PyNaCl verify of the same bytes.

Subject: `open_attestation(envelope)`, what a node does to every attestation gossip delivers:
bounded strict CBOR decode of the envelope, format/tag/version checks, Ed25519 verification of
the domain-separated message, strict decode of the record and its field checks (peer IDs,
ranges, issuer = signer). Baseline: `VerifyKey(pk).verify(message, signature)` on the very
message the envelope signs, with the key object built per call as the subject must (every
record may come from a different peer). Both over the same 2,000 envelopes from 50 signers.
Target: validation costs at most 1.5x the bare signature check, so the decoding and checks
that make a record safe to read stay small next to the cryptography.
"""
from __future__ import annotations

import nacl.signing

from benchmarks.common import Result, interleaved
from trust import encoding
from trust.attestation import evidence_digest, open_attestation, sign_attestation
from trust.identity import Identity
from trust.signing import signed_message

TARGET = 1.5


def _envelopes(n: int, signers: int) -> list[bytes]:
    ids = [Identity.from_seed(i.to_bytes(32, "big")) for i in range(1, signers + 1)]
    digest = evidence_digest([("chunk_verified", 12)])
    return [sign_attestation(ids[k % signers], ids[(k + 1) % signers].peer_id, (k % 1000) / 1000, k + 1,
                             1_700_000_000 + k, digest) for k in range(n)]


def run(quick: bool = False) -> list[Result]:
    n = 500 if quick else 2000
    envs = _envelopes(n, 50)
    raw = []
    for env in envs:
        _, tag, version, payload, pk, sig = encoding.decode(env, len(env))
        raw.append((pk, signed_message(tag, version, payload), sig))

    def subject() -> None:
        for env in envs:
            open_attestation(env)

    def baseline() -> None:
        for pk, msg, sig in raw:
            nacl.signing.VerifyKey(pk).verify(msg, sig)

    s, b = interleaved(subject, baseline, repeat=3 if quick else 7)
    ratio = s / b
    return [Result(
        name=f"signed attestation validation, {n:,} envelopes",
        baseline="PyNaCl VerifyKey(pk).verify of the same signed messages",
        subject_s=s, baseline_s=b, target=f"<= {TARGET:.2f}x", ok=ratio <= TARGET,
        detail=(f"{n / s:,.0f} records/s validated vs {n / b:,.0f} bare verifies/s; "
                f"{(s - b) / n * 1e6:.1f} µs per record for decoding and checks; envelope {len(envs[0])} bytes"),
    )]


if __name__ == "__main__":
    for r in run():
        print(f"{r.name}: {r.ratio:.3f}x ({r.target}) {r.detail}")
