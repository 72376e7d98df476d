"""Personalised EigenTrust: every node ranks peers from its own anchors; there is no global authority.

Global trust is the fixed point of

    t = (1 - a) · (Cᵀ t + (d · t) p) + a · p

where C is the row-normalised local trust matrix (c_ij = max(s_ij, 0) / Σ_j max(s_ij, 0)),
d marks dangling peers (no outgoing trust; their mass follows p, as in EigenTrust), a is the
damping and p is this node's personalisation vector (itself plus its pre-trusted anchors).
It is found by power iteration from p (cold) or from the previous answer (warm), stopping when
the L1 change between two iterates drops below the tolerance.

Pure logic: no networking, no clocks, no randomness. Not thread-safe; one engine per thread.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import scipy.sparse as sp

from trust.errors import ConfigError

__all__ = [
    "PowerIterationResult",
    "TrustEngine",
    "TrustParams",
    "TrustResult",
    "power_iteration",
]

# Gathering dangling entries beats a full-length dot product while they are this sparse.
_GATHER_FRACTION = 8
_INT32_MAX = np.iinfo(np.int32).max


@dataclass(frozen=True)
class TrustParams:
    """Power-iteration settings. Invalid values raise ConfigError at construction."""

    damping: float = 0.15  # a: share of every step that returns to this node's anchors
    tolerance: float = 1e-9  # stop once the L1 change between iterates is below this
    max_iterations: int = 100

    def __post_init__(self) -> None:
        a = self.damping
        if isinstance(a, bool) or not isinstance(a, numbers.Real) or not 0.0 < a <= 1.0:
            raise ConfigError(f"damping must be a number with 0 < damping <= 1, got {a!r}")
        tol = self.tolerance
        if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not 0.0 < tol < math.inf:
            raise ConfigError(f"tolerance must be a finite number > 0, got {tol!r}")
        m = self.max_iterations
        if isinstance(m, bool) or not isinstance(m, numbers.Integral) or m < 1:
            raise ConfigError(f"max_iterations must be an integer >= 1, got {m!r}")


@dataclass(frozen=True, eq=False)
class PowerIterationResult:
    vector: np.ndarray  # float64, non-negative, sums to 1
    iterations: int  # matrix-vector products performed
    residual: float  # L1 change of the last step
    converged: bool  # residual < tolerance


def power_iteration(
    c_t: sp.sparray | sp.spmatrix,
    p: np.ndarray,
    damping: float,
    tol: float,
    max_iter: int,
    t0: np.ndarray | None = None,
    dangling: np.ndarray | None = None,
) -> PowerIterationResult:
    """Iterate t ← (1-a)·(Cᵀt + (d·t)·p) + a·p on a prepared Cᵀ (n×n, rows of C stochastic or empty).

    `p` (non-negative, any positive sum) is normalised; `t0` defaults to p. `dangling` lists the
    rows of C without outgoing trust, as indices or a boolean mask; if None it is derived from
    Cᵀ in O(nnz), so callers iterating repeatedly should pass it. Raises ValueError on bad input.
    """
    if not 0.0 < damping <= 1.0:
        raise ValueError(f"damping must satisfy 0 < damping <= 1, got {damping!r}")
    if not 0.0 < tol < math.inf:
        raise ValueError(f"tol must be finite and > 0, got {tol!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, numbers.Integral) or max_iter < 1:
        raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    if not sp.issparse(c_t):
        raise ValueError("c_t must be a scipy.sparse matrix")
    if c_t.ndim != 2 or c_t.shape[0] != c_t.shape[1]:
        raise ValueError(f"c_t must be a square matrix, got shape {c_t.shape}")
    if c_t.format != "csr" or c_t.dtype != np.float64:
        # CSR matvec is the fast path; converting once here beats converting every iteration.
        c_t = sp.csr_array(c_t, dtype=np.float64)
    n = c_t.shape[0]
    if n == 0:
        raise ValueError("c_t is empty: there are no peers to rank")

    p = _distribution(p, n, "p")
    t = p.copy() if t0 is None else _distribution(t0, n, "t0")

    d_idx, d_mask = _dangling_terms(c_t, dangling, n)
    p_idx = np.flatnonzero(p)
    p_val = p[p_idx]
    b = 1.0 - damping
    diff = np.empty(n)
    residual = math.inf
    iterations = 0
    for iterations in range(1, max_iter + 1):
        y = c_t @ t
        # Mass held by dangling peers goes back to p instead of leaking out of the vector.
        if d_idx is not None:
            lost = float(t.take(d_idx).sum())
        elif d_mask is not None:
            lost = float(np.dot(d_mask, t))
        else:
            lost = 0.0
        y *= b
        y[p_idx] += (damping + b * lost) * p_val
        np.subtract(y, t, out=diff)
        np.abs(diff, out=diff)
        residual = float(diff.sum())
        t = y
        if residual < tol:
            break
    t /= t.sum()  # drops the rounding drift of the iterations
    return PowerIterationResult(t, iterations, residual, residual < tol)


def _distribution(v: np.ndarray, n: int, name: str) -> np.ndarray:
    """A float64 copy of v scaled to sum 1; ValueError if it cannot be one."""
    out = np.array(v, dtype=np.float64, copy=True)
    if out.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {out.shape}")
    if not np.isfinite(out).all() or (out < 0).any():
        raise ValueError(f"{name} must be finite and non-negative")
    total = out.sum()
    if not 0.0 < total < math.inf:
        raise ValueError(f"{name} must have a positive, finite sum, got {total!r}")
    out /= total
    return out


def _dangling_terms(c_t: sp.csr_array, dangling: np.ndarray | None, n: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(indices to gather, float mask to dot): at most one is set, neither when nothing dangles."""
    if dangling is None:
        out_weight = np.bincount(c_t.indices, weights=c_t.data, minlength=n)
        idx = np.flatnonzero(out_weight <= 0.0)
    else:
        d = np.asarray(dangling)
        if d.dtype == np.bool_:
            if d.shape != (n,):
                raise ValueError(f"dangling mask must have shape ({n},), got {d.shape}")
            idx = np.flatnonzero(d)
        elif d.ndim == 1 and np.issubdtype(d.dtype, np.integer):
            idx = d
            if idx.size and (idx.min() < 0 or idx.max() >= n):
                raise ValueError("dangling indices out of range")
        else:
            raise ValueError("dangling must be a boolean mask or an integer index array")
    if idx.size == 0:
        return None, None
    if idx.size * _GATHER_FRACTION <= n:
        return idx, None
    mask = np.zeros(n)
    mask[idx] = 1.0
    return None, mask


@dataclass(eq=False)
class TrustResult:
    """One compute(): the global trust vector seen from this node, indexed by the engine's peer map."""

    vector: np.ndarray  # read-only, float64, sums to 1, index i is peer_ids[i]
    iterations: int
    residual: float
    converged: bool
    _ids: list[str] = field(repr=False)  # the engine's append-only list, shared: no O(n) copy
    _index: dict[str, int] = field(repr=False)
    _ascending: np.ndarray | None = field(default=None, init=False, repr=False)

    def __len__(self) -> int:
        return len(self.vector)

    @property
    def peer_ids(self) -> tuple[str, ...]:
        return tuple(self._ids[: len(self.vector)])

    def _idx(self, peer: str) -> int | None:
        i = self._index.get(peer)
        return i if i is not None and i < len(self.vector) else None

    def trust_of(self, peer: str) -> float:
        """Global trust of peer; 0.0 for a peer this result has never heard of."""
        i = self._idx(peer)
        return 0.0 if i is None else float(self.vector[i])

    def rank_of(self, peer: str) -> int:
        """1-based competition rank (1 = most trusted; ties share a rank). KeyError if unknown."""
        i = self._idx(peer)
        if i is None:
            raise KeyError(peer)
        if self._ascending is None:
            self._ascending = np.sort(self.vector)
        higher = len(self.vector) - int(np.searchsorted(self._ascending, self.vector[i], side="right"))
        return higher + 1

    def top(self, n: int) -> list[tuple[str, float]]:
        """The n most trusted peers, best first; ties ordered by peer index, so the order is stable."""
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
            raise ValueError(f"n must be an integer >= 0, got {n!r}")
        v = self.vector
        size = len(v)
        if n == 0 or size == 0:
            return []
        if n >= size:
            cand = np.arange(size)
        else:
            # Partition first so a top-10 of a million peers does not sort a million values.
            kth = np.partition(v, size - n)[size - n]
            cand = np.flatnonzero(v >= kth)
        order = cand[np.lexsort((cand, -v[cand]))][:n]
        return [(self._ids[i], float(v[i])) for i in order]


@dataclass(frozen=True, eq=False)
class _Matrix:
    c_t: sp.csr_array  # Cᵀ: row j holds the normalised trust every issuer gives peer j
    dangling: np.ndarray  # indices of rows of C with no outgoing trust
    n: int


class TrustEngine:
    """Holds local trust rows and computes this node's personalised global trust.

    Peers are string IDs mapped to stable indices (append-only), so vectors from successive
    computes line up and warm starts are possible.
    """

    def __init__(self, params: TrustParams | None = None, self_id: str | None = None) -> None:
        if params is None:
            params = TrustParams()
        if not isinstance(params, TrustParams):
            raise ConfigError(f"params must be a TrustParams, got {type(params).__name__}")
        self._params = params
        self._ids: list[str] = []
        self._index: dict[str, int] = {}
        self._self: int | None = None if self_id is None else self._intern(self_id)
        self._rows: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # issuer -> (targets, weights)
        # Bulk rows from from_arrays, kept as flat arrays; rows later replaced are masked out.
        self._base: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._base_replaced: set[int] = set()
        self._anchors: dict[int, float] = {}
        self._distrusted: set[int] = set()
        self._matrix: _Matrix | None = None
        self._dirty = True
        self._last: np.ndarray | None = None
        self._builds = 0

    # ----- peers -------------------------------------------------------------------------

    @staticmethod
    def _check_id(peer: object) -> None:
        if not isinstance(peer, str):
            raise TypeError(f"peer IDs must be str, got {type(peer).__name__}")
        if not peer:
            raise ValueError("peer ID must not be empty")

    def _intern(self, peer: str) -> int:
        i = self._index.get(peer)
        if i is not None:
            return i
        self._check_id(peer)
        i = len(self._ids)
        self._ids.append(peer)
        self._index[peer] = i
        return i

    @property
    def params(self) -> TrustParams:
        return self._params

    @property
    def peer_count(self) -> int:
        return len(self._ids)

    @property
    def peer_ids(self) -> tuple[str, ...]:
        return tuple(self._ids)

    def index_of(self, peer: str) -> int:
        """Stable vector index of a known peer; KeyError if unknown."""
        return self._index[peer]

    def intern(self, peer: str) -> int:
        """Stable vector index of a peer, known from now on (with no trust until rows name it)."""
        return self._intern(peer)

    @property
    def index(self) -> Mapping[str, int]:
        """Peer ID -> vector index, read-only view."""
        return MappingProxyType(self._index)

    @property
    def matrix_builds(self) -> int:
        """How many times Cᵀ was rebuilt; lets callers check that unchanged graphs are reused."""
        return self._builds

    # ----- inputs ------------------------------------------------------------------------

    def set_local_trust(self, issuer: str, scores: Mapping[str, float]) -> None:
        """Replace issuer's whole row. Negative scores count as 0; NaN, ±inf or non-numbers raise
        ValueError (nothing is changed then). Self-ratings are ignored: a peer vouching for itself
        would keep its own mass."""
        if not isinstance(scores, Mapping):
            raise TypeError("scores must be a mapping of peer ID to score")
        self._check_id(issuer)
        raw: list[tuple[str, float]] = []
        for peer, score in scores.items():
            self._check_id(peer)
            if isinstance(score, bool) or not isinstance(score, numbers.Real):
                raise ValueError(f"score for {peer!r} from {issuer!r} is not a number: {score!r}")
            x = float(score)
            if not math.isfinite(x):
                raise ValueError(f"score for {peer!r} from {issuer!r} is not finite: {x!r}")
            raw.append((peer, x))
        src = self._intern(issuer)  # after validation, so a rejected row registers nothing new
        cols = np.fromiter((self._intern(peer) for peer, _ in raw), dtype=np.int64, count=len(raw))
        vals = np.fromiter((x for _, x in raw), dtype=np.float64, count=len(raw))
        keep = (vals > 0.0) & (cols != src)
        cols, vals = cols[keep], vals[keep]
        if vals.size:
            # Normalisation ignores scale; dividing by the max keeps row sums from overflowing.
            vals = vals / vals.max()
            # A weight below 2^-1074 of the row's largest underflows to 0: it carried no trust,
            # and left in, a row holding only such entries would sum to 0 (NaN once normalised).
            nonzero = vals > 0.0
            cols, vals = cols[nonzero], vals[nonzero]
            order = np.argsort(cols, kind="stable")  # same row in any dict order -> same matrix
            cols, vals = cols[order], vals[order]
        self._rows[src] = (cols, vals)
        if self._base is not None:
            self._base_replaced.add(src)
        self._dirty = True

    def remove_issuer(self, issuer: str) -> bool:
        """Drop issuer's outgoing row (it becomes dangling). Returns whether a row existed."""
        i = self._index.get(issuer)
        if i is None:
            return False
        had = self._rows.pop(i, None) is not None
        if self._base is not None and i not in self._base_replaced:
            self._base_replaced.add(i)
            had = True  # may have had a bulk row; rebuilding is the safe answer
        if had:
            self._dirty = True
        return had

    def set_anchors(self, weights: Mapping[str, float] | Iterable[str]) -> None:
        """Replace the pre-trusted anchors: a mapping of weights, or IDs for uniform weight 1.
        This node itself always weighs 1 unless listed here. Weights must be finite and >= 0."""
        items = weights.items() if isinstance(weights, Mapping) else ((peer, 1.0) for peer in weights)
        checked: list[tuple[str, float]] = []
        for peer, w in items:
            self._check_id(peer)
            if isinstance(w, bool) or not isinstance(w, numbers.Real) or not 0.0 <= float(w) < math.inf:
                raise ValueError(f"anchor weight for {peer!r} must be finite and >= 0, got {w!r}")
            checked.append((peer, float(w)))
        self._anchors = {self._intern(peer): w for peer, w in checked}

    def set_distrusted(self, peer_ids: Iterable[str]) -> None:
        """Replace the set of peers proven to equivocate: their outgoing rows are dropped, trust
        given to them is removed before rows are normalised, and their trust is forced to 0."""
        if isinstance(peer_ids, str):
            raise TypeError("peer_ids must be a collection of IDs, not one str")
        ids = list(peer_ids)
        for peer in ids:
            self._check_id(peer)
            if self._self is not None and peer == self._ids[self._self]:
                raise ValueError("a node cannot distrust itself")
        new = {self._intern(peer) for peer in ids}
        if new != self._distrusted:
            self._distrusted = new
            self._dirty = True

    def zero_out(self, peer: str) -> None:
        """Add one peer to the distrusted set (see set_distrusted)."""
        self.set_distrusted(self.distrusted | {peer})

    @property
    def distrusted(self) -> frozenset[str]:
        return frozenset(self._ids[i] for i in self._distrusted)

    # ----- bulk --------------------------------------------------------------------------

    @classmethod
    def from_arrays(
        cls,
        n: int,
        rows: np.ndarray,
        cols: np.ndarray,
        vals: np.ndarray,
        anchors_idx: Sequence[int] | np.ndarray,
        *,
        params: TrustParams | None = None,
        self_index: int | None = None,
        peer_ids: Sequence[str] | None = None,
        anchor_weights: Sequence[float] | np.ndarray | None = None,
    ) -> TrustEngine:
        """Engine over n peers from edge arrays s[rows[k], cols[k]] = vals[k] (duplicates add up).

        Peer IDs default to "0".."n-1". Same value rules as set_local_trust; bad shapes, indices
        or values raise ValueError. The arrays are copied, so callers may reuse theirs.
        """
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise ValueError(f"n must be an integer >= 1, got {n!r}")
        n = int(n)
        r, c, v = np.asarray(rows), np.asarray(cols), np.asarray(vals)
        if r.ndim != 1 or r.shape != c.shape or r.shape != v.shape:
            raise ValueError("rows, cols and vals must be 1-D arrays of equal length")
        for name, a in (("rows", r), ("cols", c)):
            if a.size and not np.issubdtype(a.dtype, np.integer):
                raise ValueError(f"{name} must hold integers, got {a.dtype}")
            if a.size and (a.min() < 0 or a.max() >= n):
                raise ValueError(f"{name} holds an index outside 0..{n - 1}")
        if v.size and not (np.issubdtype(v.dtype, np.integer) or np.issubdtype(v.dtype, np.floating)):
            raise ValueError(f"vals must be real numbers, got {v.dtype}")
        v = np.array(v, dtype=np.float64, copy=True)
        if not np.isfinite(v).all():
            raise ValueError("vals must be finite (no NaN or inf)")
        idx_t = np.int32 if n <= _INT32_MAX else np.int64
        keep = (v > 0.0) & (r != c)  # negatives clip to 0; zeros and self-ratings carry nothing
        if keep.all():
            r, c = r.astype(idx_t, copy=True), c.astype(idx_t, copy=True)
        else:
            r, c, v = r[keep].astype(idx_t, copy=False), c[keep].astype(idx_t, copy=False), v[keep]
        if not np.isfinite(np.bincount(r, weights=v, minlength=n)).all():
            raise ValueError("a row's scores sum past float64 range; rescale them")

        if peer_ids is None:
            ids = [str(i) for i in range(n)]
        else:
            ids = list(peer_ids)
            if len(ids) != n:
                raise ValueError(f"peer_ids has {len(ids)} entries, expected {n}")
            for peer in ids:
                if not isinstance(peer, str) or not peer:
                    raise ValueError("peer_ids must be non-empty str")
        index = {peer: i for i, peer in enumerate(ids)}
        if len(index) != n:
            raise ValueError("peer_ids must be unique")

        anchors = np.asarray(anchors_idx)
        if anchors.ndim != 1 or (anchors.size and not np.issubdtype(anchors.dtype, np.integer)):
            raise ValueError("anchors_idx must be a 1-D integer array")
        if anchors.size and (anchors.min() < 0 or anchors.max() >= n):
            raise ValueError("anchors_idx holds an index outside the peers")
        if anchor_weights is None:
            weights = np.ones(anchors.size)
        else:
            weights = np.asarray(anchor_weights, dtype=np.float64)
            if weights.shape != anchors.shape:
                raise ValueError("anchor_weights must match anchors_idx")
            if not np.isfinite(weights).all() or (weights < 0).any():
                raise ValueError("anchor weights must be finite and >= 0")
        if self_index is not None and not (isinstance(self_index, numbers.Integral) and 0 <= self_index < n):
            raise ValueError(f"self_index must be an index in 0..{n - 1}, got {self_index!r}")

        engine = cls(params)
        engine._ids, engine._index = ids, index
        engine._self = None if self_index is None else int(self_index)
        engine._base = (r, c, v)
        engine._anchors = {int(i): float(w) for i, w in zip(anchors, weights)}
        return engine

    # ----- compute -----------------------------------------------------------------------

    def _build(self) -> _Matrix:
        """Rebuild Cᵀ from all rows with numpy in O(nnz): no Python loop over edges."""
        n = len(self._ids)
        idx_t = np.int32 if n <= _INT32_MAX else np.int64
        rs: list[np.ndarray] = []
        cs: list[np.ndarray] = []
        vs: list[np.ndarray] = []
        if self._base is not None:
            r, c, v = self._base
            if self._base_replaced:
                live = np.ones(n, dtype=bool)
                live[np.fromiter(self._base_replaced, dtype=np.int64)] = False
                keep = live[r]
                r, c, v = r[keep], c[keep], v[keep]
            rs.append(r)
            cs.append(c)
            vs.append(v)
        if self._rows:
            rows = list(self._rows.items())
            lengths = np.fromiter((len(cv[0]) for _, cv in rows), dtype=np.int64, count=len(rows))
            issuers = np.fromiter((i for i, _ in rows), dtype=idx_t, count=len(rows))
            rs.append(np.repeat(issuers, lengths))
            cs.append(np.concatenate([cv[0] for _, cv in rows]).astype(idx_t, copy=False))
            vs.append(np.concatenate([cv[1] for _, cv in rows]))
        if rs:
            r = rs[0] if len(rs) == 1 else np.concatenate(rs)
            c = cs[0] if len(cs) == 1 else np.concatenate(cs)
            v = vs[0] if len(vs) == 1 else np.concatenate(vs)
        else:
            r = c = np.zeros(0, dtype=idx_t)
            v = np.zeros(0)
        if self._distrusted:
            bad = np.zeros(n, dtype=bool)
            bad[np.fromiter(self._distrusted, dtype=np.int64)] = True
            # Zero the distrusted column before normalising, so honest rows re-spread their trust.
            keep = ~(bad[r] | bad[c])
            r, c, v = r[keep], c[keep], v[keep]
        row_sum = np.bincount(r, weights=v, minlength=n)
        data = v / row_sum[r]
        c_t = sp.coo_array((data, (c, r)), shape=(n, n)).tocsr()
        c_t.sum_duplicates()  # canonical (sorted) rows: deterministic sums and cache-friendly reads
        self._matrix = _Matrix(c_t, np.flatnonzero(row_sum <= 0.0), n)
        self._dirty = False
        self._builds += 1
        return self._matrix

    def _personalisation(self, n: int) -> np.ndarray:
        p = np.zeros(n)
        if self._self is not None:
            p[self._self] = 1.0
        for i, w in self._anchors.items():
            p[i] = w
        if self._distrusted:
            p[np.fromiter(self._distrusted, dtype=np.int64)] = 0.0
        if not p.sum() > 0.0:
            raise ConfigError("no personalisation: set self_id or anchors with positive weight that are not distrusted")
        return p

    def compute(self, warm_start: bool = True) -> TrustResult:
        """Global trust from this node's view. Rebuilds Cᵀ only if rows, peers or the distrusted
        set changed; warm_start resumes from the previous vector, so small edits converge in a
        few iterations. Raises ConfigError when there is nothing to personalise on."""
        n = len(self._ids)
        if n == 0:
            raise ConfigError("no peers: set self_id, anchors or local trust first")
        p = self._personalisation(n)
        m = self._matrix
        if self._dirty or m is None or m.n != n:
            m = self._build()
        t0 = self._warm_vector(n) if warm_start else None
        a = float(self._params.damping)
        res = power_iteration(
            m.c_t, p, a, float(self._params.tolerance), int(self._params.max_iterations), t0=t0, dangling=m.dangling
        )
        vec = res.vector
        if self._distrusted:
            vec[np.fromiter(self._distrusted, dtype=np.int64)] = 0.0  # already 0; made explicit
        vec.flags.writeable = False  # shared with the warm start and the caller
        self._last = vec
        return TrustResult(vec, res.iterations, res.residual, res.converged, self._ids, self._index)

    def _warm_vector(self, n: int) -> np.ndarray | None:
        last = self._last
        if last is None:
            return None
        t0 = np.zeros(n)
        t0[: len(last)] = last  # indices are append-only, so old entries still line up
        if self._distrusted:
            t0[np.fromiter(self._distrusted, dtype=np.int64)] = 0.0
        return t0 if t0.sum() > 0.0 else None
