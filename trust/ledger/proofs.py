"""Checks of signed records without the database: envelopes, equivocation proofs, proof bundles."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import Any

from trust import encoding
from trust.attestation import (Attestation, Equivocation, TreeHead, open_attestation, open_equivocation,
                               open_tree_head)
from trust.errors import DecodeError, ProofError, SignatureError
from trust.ledger.codec import HEADER, decode_body, parse_leaf_data
from trust.ledger.types import MAX_BODY, MAX_KIND, MAX_U64
from trust.merkle import HASH_SIZE, leaf_hash, verify_inclusion


ENVELOPE_TYPE = {"attestation-received": "attestation", "attestation-issued": "attestation",
                  "peer-head": "tree-head", "equivocation": "equivocation"}


# --- envelope verification (shared by the audit scan, its workers and the ledger) --------------

def verify_equivocation(proof: bytes) -> Equivocation:
    """Verify an equivocation proof: two same-slot records (trust.attestation.open_equivocation), or
    two tree heads of one issuer with the same size and different roots (a forked log)."""
    value = encoding.decode(proof, Equivocation.MAX_SIZE)
    if (isinstance(value, list) and len(value) == 4 and value[0] == 1 and value[1] == TreeHead.TAG
            and isinstance(value[2], bytes) and isinstance(value[3], bytes) and value[2] < value[3]):
        a, b = open_tree_head(value[2]), open_tree_head(value[3])
        if a.issuer == b.issuer and a.size == b.size and a.root != b.root:
            return Equivocation(a.issuer, TreeHead.TAG, value[2], value[3])
    return open_equivocation(proof)


def verify_one(typ: str, data: Any) -> Any:
    if type(data) is not bytes:
        raise DecodeError(f"expected the signed record as bytes, got {type(data).__name__}")
    if typ == "attestation":
        return open_attestation(data)
    if typ == "tree-head":
        return open_tree_head(data)
    if typ == "equivocation":
        return verify_equivocation(data)
    raise ValueError(typ)


def verify_jobs(jobs: Sequence[tuple[Any, str, Any]]) -> list[tuple[Any, Any, str | None]]:
    """[(key, record or None, error or None)] for [(key, type, envelope)]."""
    out = []
    for key, typ, data in jobs:
        try:
            out.append((key, verify_one(typ, data), None))
        except (DecodeError, SignatureError) as exc:
            out.append((key, None, str(exc)))
    return out


def find_equivocations(records: list[tuple[str, str, Any, bytes]]) -> list[Equivocation]:
    """(7) Two different signed records of one issuer in one slot, among verified records."""
    seen: dict[tuple, tuple[Any, bytes]] = {}
    found: dict[bytes, Equivocation] = {}

    def conflict(slot: tuple, rec: Any, env: bytes, differs: Callable[[Any, Any], bool]) -> None:
        first = seen.setdefault(slot, (rec, env))
        if first[1] != env and differs(first[0], rec):
            a, b = sorted([first[1], env])
            eq = Equivocation(rec.issuer, rec.TAG, a, b)
            found.setdefault(eq.to_bytes(), eq)

    for _where, kind, rec, env in records:
        if isinstance(rec, Attestation):
            conflict(("att",) + rec.slot(), rec, env, lambda x, y: x != y)
        elif isinstance(rec, TreeHead):
            conflict(("seq",) + rec.slot(), rec, env, lambda x, y: x != y)
            conflict(("size", rec.issuer, rec.size), rec, env, lambda x, y: x.root != y.root)
    return list(found.values())


# --- proof bundles ---------------------------------------------------------------------------------

_BUNDLE_KEYS = {"head", "index", "leaf_data", "proof"}


def _unb64(value: Any, what: str, max_len: int) -> bytes:
    if not isinstance(value, str):
        raise DecodeError(f"proof bundle: {what} must be a base64 string")
    if len(value) > max_len * 4 // 3 + 4:
        raise DecodeError(f"proof bundle: {what} is too long")
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise DecodeError(f"proof bundle: {what} is not valid base64") from None


def verify_proof_bundle(bundle: Any, issuer: str | None = None) -> tuple[TreeHead, int]:
    """Check a bundle made by `Ledger.prove`, without the ledger: the head's signature (and, if
    given, that `issuer` signed it), that leaf_data is entry `index` with a canonical body, and the
    inclusion proof. Returns (head, index); raises DecodeError, SignatureError or ProofError."""
    if not isinstance(bundle, dict):
        raise DecodeError("proof bundle must be a JSON object")
    keys = set(bundle)
    if keys != _BUNDLE_KEYS:
        missing, extra = sorted(_BUNDLE_KEYS - keys), sorted(str(k) for k in keys - _BUNDLE_KEYS)
        raise DecodeError("proof bundle: " + "; ".join(
            ([f"missing {', '.join(missing)}"] if missing else []) + ([f"unknown {', '.join(extra)}"] if extra else [])))
    index = bundle["index"]
    if type(index) is not int or not 0 <= index <= MAX_U64:
        raise DecodeError("proof bundle: index must be a non-negative integer")
    proof_in = bundle["proof"]
    if not isinstance(proof_in, list) or len(proof_in) > 64:
        raise DecodeError("proof bundle: proof must be a list of at most 64 base64 hashes")
    head_bytes = _unb64(bundle["head"], "head", TreeHead.MAX_SIZE)
    data = _unb64(bundle["leaf_data"], "leaf_data", HEADER.size + MAX_KIND + MAX_BODY)
    proof = [_unb64(p, f"proof hash {i}", HASH_SIZE) for i, p in enumerate(proof_in)]
    head = open_tree_head(head_bytes)
    if issuer is not None and head.issuer != issuer:
        raise SignatureError(f"the tree head is signed by {head.issuer}, not by {issuer}")
    idx, _ts, _kind, body = parse_leaf_data(data)
    if idx != index:
        raise ProofError(f"leaf data is entry {idx}, but the bundle claims index {index}")
    decode_body(body)
    if index >= head.size:
        raise ProofError(f"index {index} is outside the signed head's tree of size {head.size}")
    verify_inclusion(leaf_hash(data), index, head.size, proof, head.root)
    return head, index
