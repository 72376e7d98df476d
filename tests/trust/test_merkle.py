"""trust.merkle against an independent RFC 6962 §2.1 reference, property tests and public vectors."""
from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trust import merkle
from trust.errors import ProofError
from trust.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    CompactRange,
    MerkleTree,
    leaf_hash,
    node_hash,
    root_from_inclusion_proof,
    tree_root_of_bytes,
    verify_consistency,
    verify_inclusion,
)

FAST = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- reference: the recursive definitions of RFC 6962 §2.1, written for clarity not speed ---------


def _sha(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def _k(n: int) -> int:
    """Largest power of two smaller than n (n > 1), found the slow way."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


class Ref:
    """MTH, PATH and PROOF over the data entries D[0:n], memoised by range only to keep tests fast."""

    def __init__(self, entries: list[bytes]):
        self.d = entries
        self.memo: dict[tuple[int, int], bytes] = {}

    def mth(self, lo: int, hi: int) -> bytes:
        if (lo, hi) not in self.memo:
            n = hi - lo
            if n == 0:
                h = _sha(b"")
            elif n == 1:
                h = _sha(b"\x00" + self.d[lo])
            else:
                k = _k(n)
                h = _sha(b"\x01" + self.mth(lo, lo + k) + self.mth(lo + k, hi))
            self.memo[lo, hi] = h
        return self.memo[lo, hi]

    def path(self, m: int, lo: int, hi: int) -> list[tuple[bytes, str]]:
        """PATH(m, D[lo:hi]) with the side each sibling sits on."""
        n = hi - lo
        if n == 1:
            return []
        k = _k(n)
        if m < k:
            return self.path(m, lo, lo + k) + [(self.mth(lo + k, hi), "R")]
        return self.path(m - k, lo + k, hi) + [(self.mth(lo, lo + k), "L")]

    def inclusion(self, m: int, n: int) -> list[bytes]:
        return [h for h, _ in self.path(m, 0, n)]

    def shape(self, m: int, n: int) -> tuple[str, ...]:
        return tuple(side for _, side in self.path(m, 0, n))

    def subproof(self, m: int, lo: int, hi: int, b: bool) -> list[bytes]:
        n = hi - lo
        if m == n:
            return [] if b else [self.mth(lo, hi)]
        k = _k(n)
        if m <= k:
            return self.subproof(m, lo, lo + k, b) + [self.mth(lo + k, hi)]
        return self.subproof(m - k, lo + k, hi, False) + [self.mth(lo, lo + k)]

    def consistency(self, m: int, n: int) -> list[bytes]:
        return self.subproof(m, 0, n, True)


def entries(n: int, salt: bytes = b"") -> list[bytes]:
    return [salt + i.to_bytes(4, "big") for i in range(n)]


def leaves_of(data: list[bytes]) -> list[bytes]:
    return [_sha(b"\x00" + d) for d in data]


def flip(h: bytes, bit: int) -> bytes:
    b = bytearray(h)
    b[bit // 8 % len(b)] ^= 1 << (bit % 8)
    return bytes(b)


def rejects(fn, *args) -> bool:
    try:
        fn(*args)
    except ProofError:
        return True
    return False


# --- known values ------------------------------------------------------------------------------

# The eight-entry tree used throughout the Certificate Transparency test suites.
CT_ENTRIES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    bytes(range(0x50, 0x58)),
    bytes(range(0x60, 0x70)),
]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def test_constants_and_primitives():
    assert HASH_SIZE == 32
    assert EMPTY_ROOT == _sha(b"") == merkle.root([]) == CompactRange().root() == MerkleTree().root()
    assert leaf_hash(b"abc") == _sha(b"\x00abc")
    assert leaf_hash(memoryview(b"xabcx")[1:4]) == _sha(b"\x00abc")
    a, b = _sha(b"a"), _sha(b"b")
    assert node_hash(a, b) == _sha(b"\x01" + a + b)


def test_known_ct_roots_and_reference_agree():
    ref = Ref(CT_ENTRIES)
    leaves = leaves_of(CT_ENTRIES)
    tree = MerkleTree(leaves)
    for n in range(1, 9):
        want = bytes.fromhex(CT_ROOTS[n - 1])
        assert ref.mth(0, n) == want
        assert merkle.root(leaves[:n]) == want
        assert tree.root(n) == want


def test_small_trees_match_reference_exhaustively():
    data = entries(40)
    ref = Ref(data)
    leaves = leaves_of(data)
    tree = MerkleTree(leaves)
    for n in range(0, 41):
        assert merkle.root(leaves[:n]) == ref.mth(0, n) == tree.root(n)
        for m in range(n):
            proof = tree.inclusion_proof(m, n)
            assert proof == ref.inclusion(m, n)
            verify_inclusion(leaves[m], m, n, proof, ref.mth(0, n))
        for m in range(1, n + 1):
            proof = tree.consistency_proof(m, n)
            assert proof == ref.consistency(m, n)
            verify_consistency(m, n, ref.mth(0, m), ref.mth(0, n), proof)


# --- property tests ----------------------------------------------------------------------------


@FAST
@given(size=st.integers(1, 300), salt=st.binary(max_size=4), rnd=st.randoms(use_true_random=False))
def test_inclusion_every_index_and_tampering(size, salt, rnd):
    # The reference spans twice the tree so that larger claimed sizes can be checked too.
    data = entries(size * 2, salt)
    ref = Ref(data)
    leaves = leaves_of(data[:size])
    tree = MerkleTree(leaves)
    top = tree.root()
    assert top == ref.mth(0, size)
    for i in range(size):
        proof = tree.inclusion_proof(i)
        assert proof == ref.inclusion(i, size)
        verify_inclusion(leaves[i], i, size, proof, top)
        assert root_from_inclusion_proof(leaves[i], i, size, proof) == top
        # One random bit of each proof hash, of the leaf, of the root.
        for j in range(len(proof)):
            bad = list(proof)
            bad[j] = flip(bad[j], rnd.randrange(256))
            assert rejects(verify_inclusion, leaves[i], i, size, bad, top)
        assert rejects(verify_inclusion, flip(leaves[i], rnd.randrange(256)), i, size, proof, top)
        assert rejects(verify_inclusion, leaves[i], i, size, proof, flip(top, rnd.randrange(256)))
        # Another position in the same tree never shares this leaf's proof.
        for j in {i - 1, i + 1, i ^ 2, rnd.randrange(size * 2)}:
            if j != i and 0 <= j < 2**64:
                assert rejects(verify_inclusion, leaves[i], j, size, proof, top)
        # Another size: with that size's true root the proof passes only if it is that size's
        # proof too; with this root it passes only if the path has the same shape, since the
        # verifier cannot tell trees apart whose paths for i coincide (size is bound by the STH).
        for n2 in {size - 1, size + 1, size * 2, size // 2, rnd.randrange(1, size * 2 + 1)}:
            if n2 <= i:
                assert rejects(verify_inclusion, leaves[i], i, n2, proof, top)
                continue
            same = ref.inclusion(i, n2) == proof
            assert rejects(verify_inclusion, leaves[i], i, n2, proof, ref.mth(0, n2)) is not same
            same_shape = ref.shape(i, n2) == ref.shape(i, size)
            assert rejects(verify_inclusion, leaves[i], i, n2, proof, top) is not same_shape


@FAST
@given(size2=st.integers(1, 300), salt=st.binary(max_size=4), rnd=st.randoms(use_true_random=False))
def test_consistency_pairs_and_tampering(size2, salt, rnd):
    # Every size1 for small trees, a sample of them for larger ones.
    big = size2 + 40
    data = entries(big, salt)
    ref = Ref(data)
    tree = MerkleTree(leaves_of(data))
    size1s = range(1, size2 + 1) if size2 <= 40 else sorted({1, size2, *rnd.sample(range(1, size2 + 1), 40)})
    r2 = ref.mth(0, size2)
    for size1 in size1s:
        r1 = ref.mth(0, size1)
        proof = tree.consistency_proof(size1, size2)
        assert proof == ref.consistency(size1, size2)
        verify_consistency(size1, size2, r1, r2, proof)
        for j in range(len(proof)):
            bad = list(proof)
            bad[j] = flip(bad[j], rnd.randrange(256))
            assert rejects(verify_consistency, size1, size2, r1, r2, bad)
        assert rejects(verify_consistency, size1, size2, flip(r1, rnd.randrange(256)), r2, proof)
        assert rejects(verify_consistency, size1, size2, r1, flip(r2, rnd.randrange(256)), proof)
        if size1 != size2:
            assert rejects(verify_consistency, size1, size2, r2, r1, proof)
            assert rejects(verify_consistency, size1, size2, r1, r2, proof[:-1])
            assert rejects(verify_consistency, size1, size2, r1, r2, [*proof, r1])
        # Changed sizes, each with the true roots for the claimed sizes: accepted only if the
        # proof is exactly the proof for the claimed pair.
        for s1, s2 in {
            (size1 - 1, size2),
            (size1 + 1, size2),
            (size1, size2 - 1),
            (size1, size2 + 1),
            (size1 ^ 2, size2),
            (size1, size2 * 2 if size2 * 2 <= big else big),
        }:
            if s1 == size1 and s2 == size2:
                continue
            if 0 < s1 <= s2 <= big:
                same = ref.consistency(s1, s2) == proof
                assert rejects(verify_consistency, s1, s2, ref.mth(0, s1), ref.mth(0, s2), proof) is not same
            else:
                assert rejects(verify_consistency, s1, s2, r1, r2, proof)


@FAST
@given(size=st.integers(1, 300), split=st.floats(0, 1), rnd=st.randoms(use_true_random=False))
def test_merkletree_historic_sizes_and_append(size, split, rnd):
    data = entries(size)
    ref = Ref(data)
    leaves = leaves_of(data)
    built = int(size * split)
    tree = MerkleTree(leaves[:built])
    for h in leaves[built:]:
        tree.append(h)
    assert tree.size == len(tree) == size
    for _ in range(40):
        n = rnd.randint(1, size)
        assert tree.root(n) == ref.mth(0, n)
        i = rnd.randrange(n)
        assert tree.leaf(i) == leaves[i]
        assert tree.inclusion_proof(i, n) == ref.inclusion(i, n)
        m = rnd.randint(1, n)
        assert tree.consistency_proof(m, n) == ref.consistency(m, n)
        assert tree.consistency_proof(m) == ref.consistency(m, size)


@FAST
@given(size=st.integers(0, 300))
def test_compact_range_matches_root(size):
    leaves = leaves_of(entries(size))
    cr = CompactRange()
    assert cr.root() == merkle.root([])
    for n, h in enumerate(leaves, 1):
        cr.append(h)
        assert cr.size == n
        assert cr.root() == merkle.root(leaves[:n])


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=3000), chunk=st.integers(1, 400))
def test_tree_root_of_bytes_matches_reference(data, chunk):
    pieces = [data[i : i + chunk] for i in range(0, len(data), chunk)]
    want = Ref(pieces).mth(0, len(pieces))
    assert tree_root_of_bytes(data, chunk) == want
    assert tree_root_of_bytes(memoryview(data), chunk) == want
    assert tree_root_of_bytes(bytearray(data), chunk) == want


def test_large_tree_proofs_at_old_sizes_are_fast():
    # 2^17 + 3 leaves keeps the build under a second while every proof still needs the cache.
    n = (1 << 17) + 3
    leaves = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(n)]
    tree = MerkleTree(leaves)
    top = tree.root()
    assert top == merkle.root(leaves)
    for size in (n, n - 1, 100_000, 65_537, 3):
        r = tree.root(size)
        for i in (0, size // 2, size - 1):
            verify_inclusion(leaves[i], i, size, tree.inclusion_proof(i, size), r)
        for m in (1, size // 3 or 1, size):
            verify_consistency(m, size, tree.root(m), r, tree.consistency_proof(m, size))


# --- garbage in: always ProofError -------------------------------------------------------------

H = _sha(b"x")
GARBAGE_CALLS = [
    ("short leaf", verify_inclusion, (H[:31], 0, 1, [], H)),
    ("long leaf", verify_inclusion, (H + b"\x00", 0, 1, [], H)),
    ("str leaf", verify_inclusion, ("x" * 32, 0, 1, [], H)),
    ("short root", verify_inclusion, (H, 0, 1, [], H[:16])),
    ("None root", verify_inclusion, (H, 0, 1, [], None)),
    ("negative index", verify_inclusion, (H, -1, 1, [], H)),
    ("negative size", verify_inclusion, (H, 0, -1, [], H)),
    ("zero size", verify_inclusion, (H, 0, 0, [], H)),
    ("index == size", verify_inclusion, (H, 8, 8, [H] * 3, H)),
    ("float index", verify_inclusion, (H, 0.0, 1, [], H)),
    ("bool size", verify_inclusion, (H, 0, True, [], H)),
    ("2**64 size", verify_inclusion, (H, 0, 2**64, [H] * 64, H)),
    ("2**64 index", verify_inclusion, (H, 2**64, 2**64 + 1, [H] * 64, H)),
    ("huge size", verify_inclusion, (H, 5, 2**200, [H] * 200, H)),
    ("short proof hash", verify_inclusion, (H, 0, 2, [H[:5]], H)),
    ("None proof hash", verify_inclusion, (H, 0, 2, [None], H)),
    ("bytes as proof", verify_inclusion, (H, 0, 2, H, H)),
    ("None proof", verify_inclusion, (H, 0, 2, None, H)),
    ("int proof", verify_inclusion, (H, 0, 2, 7, H)),
    ("too long proof", verify_inclusion, (H, 0, 1, [H], H)),
    ("too short proof", verify_inclusion, (H, 0, 4, [H], H)),
    ("helper 2**64", root_from_inclusion_proof, (H, 0, 2**64, [H] * 64)),
    ("cons size1 > size2", verify_consistency, (2, 1, H, H, [])),
    ("cons size1 zero", verify_consistency, (0, 5, EMPTY_ROOT, H, [])),
    ("cons both zero", verify_consistency, (0, 0, EMPTY_ROOT, EMPTY_ROOT, [])),
    ("cons negative", verify_consistency, (-1, 5, H, H, [H])),
    ("cons 2**64", verify_consistency, (1, 2**64, H, H, [H] * 64)),
    ("cons huge", verify_consistency, (3, 2**100, H, H, [H] * 100)),
    ("cons short root1", verify_consistency, (1, 2, H[:31], H, [H])),
    ("cons short root2", verify_consistency, (1, 2, H, H[:31], [H])),
    ("cons str root equal sizes", verify_consistency, (1, 1, "a", "a", [])),
    ("cons short proof hash", verify_consistency, (1, 2, H, H, [H[:1]])),
    ("cons equal sizes proof", verify_consistency, (3, 3, H, H, [H])),
    ("cons empty proof", verify_consistency, (1, 2, H, H, [])),
    ("cons None proof", verify_consistency, (1, 2, H, H, None)),
    ("cons float size", verify_consistency, (1.0, 2, H, H, [H])),
    ("root of short hash", merkle.root, ([H, H[:3]],)),
    ("root of str", merkle.root, ("ab",)),
    ("tree of bad hash", MerkleTree, ([H, b"x"],)),
    ("compact bad hash", CompactRange().append, (b"",)),
    ("chunk 0", tree_root_of_bytes, (b"abc", 0)),
    ("chunk negative", tree_root_of_bytes, (b"abc", -4)),
    ("data str", tree_root_of_bytes, ("abc", 4)),
]


@pytest.mark.parametrize("fn,args", [(f, a) for _, f, a in GARBAGE_CALLS], ids=[n for n, _, _ in GARBAGE_CALLS])
def test_garbage_raises_proof_error(fn, args):
    with pytest.raises(ProofError):
        fn(*args)


@pytest.mark.parametrize(
    "call",
    [
        lambda t: t.inclusion_proof(9, 8),
        lambda t: t.inclusion_proof(0, 9),
        lambda t: t.inclusion_proof(-1),
        lambda t: t.inclusion_proof(0, 0),
        lambda t: t.inclusion_proof(2**64),
        lambda t: t.consistency_proof(0, 4),
        lambda t: t.consistency_proof(5, 4),
        lambda t: t.consistency_proof(1, 9),
        lambda t: t.consistency_proof(-1),
        lambda t: t.root(9),
        lambda t: t.root(-1),
        lambda t: t.leaf(8),
        lambda t: t.append(b"short"),
    ],
)
def test_tree_rejects_out_of_range(call):
    tree = MerkleTree(leaves_of(entries(8)))
    with pytest.raises(ProofError):
        call(tree)


def test_error_messages_are_precise():
    with pytest.raises(ProofError, match=r"inclusion proof has 3 hashes, expected 4 for index 6 of size 13"):
        verify_inclusion(H, 6, 13, [H] * 3, H)
    with pytest.raises(ProofError, match=r"index 9 out of range for size 8"):
        verify_inclusion(H, 9, 8, [], H)
    with pytest.raises(ProofError, match=r"root mismatch"):
        verify_inclusion(H, 0, 2, [H], H)
    with pytest.raises(ProofError, match=r"consistency proof has 1 hashes, expected 3 for sizes 3 to 4"):
        verify_consistency(3, 4, H, H, [H])


# --- public vectors (transparency-dev/merkle testdata) -----------------------------------------

VECTORS = Path(__file__).resolve().parents[2].parent / "shared" / "vectors" / "rfc6962"


def _vector_files(kind: str) -> list[Path]:
    return sorted((VECTORS / kind).rglob("*.json")) if VECTORS.is_dir() else []


def _b64(value: str | None) -> bytes:
    # Go marshals a nil []byte as null and an empty one as "": both mean "no bytes".
    return base64.b64decode(value, validate=True) if value else b""


def _b64_list(values: list[str] | None) -> list[bytes]:
    # A nil proof slice is null in the JSON: an empty proof.
    return [_b64(v) for v in values or []]


def _id(p: Path) -> str:
    return str(p.relative_to(VECTORS)) if VECTORS in p.parents else p.name


INCLUSION_FILES = _vector_files("inclusion")
CONSISTENCY_FILES = _vector_files("consistency")


def _need_vectors():
    if not VECTORS.is_dir():
        pytest.skip(f"RFC 6962 vector folder {VECTORS} is absent")


def test_vectors_found():
    _need_vectors()
    assert len(INCLUSION_FILES) > 0
    assert len(CONSISTENCY_FILES) > 0


@pytest.mark.parametrize("path", INCLUSION_FILES or [None], ids=_id if INCLUSION_FILES else None)
def test_inclusion_vector(path):
    _need_vectors()
    assert path is not None, f"no inclusion vectors under {VECTORS}"
    v = json.loads(path.read_text())
    args = (_b64(v["leafHash"]), v["leafIdx"], v["treeSize"], _b64_list(v["proof"]), _b64(v["root"]))
    if v["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("path", CONSISTENCY_FILES or [None], ids=_id if CONSISTENCY_FILES else None)
def test_consistency_vector(path):
    _need_vectors()
    assert path is not None, f"no consistency vectors under {VECTORS}"
    v = json.loads(path.read_text())
    args = (v["size1"], v["size2"], _b64(v["root1"]), _b64(v["root2"]), _b64_list(v["proof"]))
    if v["wantErr"]:
        with pytest.raises(ProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


def test_vector_happy_paths_are_what_we_generate():
    # The happy paths are proofs over the CT eight-entry tree: our generator must emit them.
    _need_vectors()
    tree = MerkleTree(leaves_of(CT_ENTRIES))
    checked = 0
    for path in INCLUSION_FILES + CONSISTENCY_FILES:
        if path.name != "happy-path.json":
            continue
        v = json.loads(path.read_text())
        if "leafIdx" in v:
            assert _b64(v["leafHash"]) == tree.leaf(v["leafIdx"])
            assert _b64(v["root"]) == tree.root(v["treeSize"])
            assert tree.inclusion_proof(v["leafIdx"], v["treeSize"]) == _b64_list(v["proof"])
        else:
            assert _b64(v["root2"]) == tree.root(v["size2"])
            assert tree.consistency_proof(v["size1"], v["size2"]) == _b64_list(v["proof"])
        checked += 1
    assert checked > 0


def test_level_helpers_build_the_same_tree_as_appending():
    from trust.merkle import grow_levels, pair_level
    leaves = [leaf_hash(bytes([i])) for i in range(37)]
    levels = [leaves[:]]
    grow_levels(levels)
    assert MerkleTree.from_levels(levels).root() == MerkleTree(leaves).root()
    assert pair_level(leaves[:3]) == [node_hash(leaves[0], leaves[1])]
    tree = MerkleTree(leaves[:5])
    tree.extend(leaves[5:])  # many at once
    tree.extend([])          # few: one by one
    assert tree.root() == MerkleTree(leaves).root() and tree.consistency_proof(5) == MerkleTree(leaves).consistency_proof(5)
    # levels that are not every complete level: rebuilt from the leaves
    assert MerkleTree.from_levels([leaves[:]]).root() == MerkleTree(leaves).root()
