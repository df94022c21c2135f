"""Kernels of the randomized Hadamard operator R = H D₁ H D₂ H D₃ P / d^{3/2} (THEORY.md §2.4).

Private: they assume valid input and fill given arrays; run in parallel by ``_parallel.run_rows``.

The permutation ``(P x)_i = x[perm[i]]`` is a random gather; once x no longer fits in L1 every
read is a cache miss, and at d = 2^20 it cost as much as a transform. From ``GATHER_BLOCK_MIN_D``
on it runs in two streaming passes over a precomputed *gather plan* (``gather_plan``): x is
scattered, in order, into d/C buckets of C slots (bucket b holds the sources of destination block
b, in increasing source order), and each destination block is then gathered from its own bucket,
which sits in L2 (C = ``gather_block(d)``, 4096 … 65536). Both passes move the same values, so
the result is bit-identical to the direct gather.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ._fwht import _NO_SIGNS, _fwht_ss

GATHER_BLOCK_MIN = 4096
GATHER_BLOCK_MAX = 2 ** 16
"""Entries per destination block C of the blocked gather: ``gather_block(d)`` = d/16 clamped to
[GATHER_BLOCK_MIN, GATHER_BLOCK_MAX] (q is uint16, so C ≤ 2^16)."""

GATHER_BLOCK_MIN_D = 2 * GATHER_BLOCK_MIN
"""Smallest d that uses the blocked gather: two blocks or more (measured, 1 thread: 0.7–0.85× the
time of a whole operator row with the direct gather for d = 2^13 … 2^18)."""


@njit(cache=True, nogil=True)
def gather_block(d):
    """C for dimension d: d/16 within [4096, 65536]. Fewer, larger buckets make pass 1 write fewer
    streams while a block (≤ 512 KiB) still sits in L2 for pass 2; measured on cold rows, 1 thread
    (µs per gather, C = 4096 → d/16): 153 → 153 at d = 2^16, 832 → 698 at 2^18, 5280 → 3359 at
    2^20, 26959 → 17720 at 2^22. The choice moves no value: every C gives the same bits."""
    return min(GATHER_BLOCK_MAX, max(GATHER_BLOCK_MIN, d // 16))


NO_ROWS = np.zeros(0, dtype=np.int64)
NO_POS = np.zeros(0, dtype=np.int32)
NO_Q = np.zeros(0, dtype=np.uint16)


@njit(cache=True, nogil=True)
def gather_plan(perm, C, pos, q):
    """Fill the gather plan of ``perm`` for destination blocks of C entries (C divides d, C ≤ 2^16).

    pos[j] = b·C + (rank of j among the sources of destination block b, in increasing order),
    where b = perm⁻¹[j] // C: the slot of source j in the bucketed layout. q[i] = pos[perm[i]] − b·C
    with b = i // C: where, inside its block's bucket, destination i finds its source.
    """
    d = perm.shape[0]
    inv = np.empty(d, dtype=np.int64)
    for i in range(d):
        inv[perm[i]] = i
    fill = np.zeros(d // C, dtype=np.int64)
    for j in range(d):
        b = inv[j] // C
        pos[j] = b * C + fill[b]
        fill[b] += 1
    for i in range(d):
        q[i] = pos[perm[i]] - (i // C) * C


@njit(cache=True, nogil=True)
def _gather_blocked(x, y, pos, q, s, buf):
    """y[i] = x[perm[i]] · s[i] through the gather plan (pos, q); buf: C float64 of scratch."""
    d = y.shape[0]
    C = buf.shape[0]
    for j in range(d):                      # pass 1: sequential read, d/C sequential write streams
        y[pos[j]] = x[j]
    for b0 in range(0, d, C):               # pass 2: each block from its own bucket (in L1/L2)
        yb = y[b0:b0 + C]
        for t in range(C):
            buf[t] = yb[t]
        qb = q[b0:b0 + C]
        sb = s[b0:b0 + C]
        for t in range(C):
            yb[t] = buf[qb[t]] * sb[t]


@njit(cache=True, nogil=True)
def hadamard_apply(r0_, r1_, X, xrows, out, perm, pos, q, s1, s2, s3, scale, plus, c):
    """out[k] = H D1 H D2 H D3 P x_k · scale for rows k in [r0_, r1_), with x_k = X[xrows[k]]
    (``xrows`` empty: X[k]); short rows are zero-padded. With ``plus``, out[k] = c·(x_k + R x_k)
    instead (rows of length d only): the (I+R)/2-type factors of the sketch, with no NumPy pass.

    perm: int32 (or int64) with (P x)_i = x[perm[i]]; pos, q: its gather plan (empty: direct
    gather); s1, s2, s3: int8 ±1. D3 is applied with the gather, D2 and D1 in the first pass of the
    next transform, the scale in the last pass. ``c·(x + y)`` rounds exactly as ``x + y`` followed
    by ``*= c`` in NumPy.
    """
    L = X.shape[1]
    d = out.shape[1]
    blocked = L == d and pos.shape[0] == d
    buf = np.empty(gather_block(d) if blocked else 0)
    indexed = xrows.shape[0] > 0
    for k in range(r0_, r1_):
        y = out[k]
        xk = X[xrows[k]] if indexed else X[k]
        if blocked:
            _gather_blocked(xk, y, pos, q, s3, buf)
        elif L == d:
            for i in range(d):
                y[i] = xk[perm[i]] * s3[i]
        else:
            for i in range(d):
                src = perm[i]
                y[i] = xk[src] * s3[i] if src < L else 0.0
        _fwht_ss(y, _NO_SIGNS, 1.0)
        _fwht_ss(y, s2, 1.0)
        _fwht_ss(y, s1, scale)
        if plus:
            for i in range(d):
                y[i] = (xk[i] + y[i]) * c


@njit(cache=True, nogil=True)
def hadamard_apply_t(r0_, r1_, X, out, perm, s1, s2, s3, scale):
    """out[k] = P^T D3 H D2 H D1 H X[k] · scale for rows [r0_, r1_) (transpose of hadamard_apply).

    One d-vector of scratch per call (reused across its rows), not one per row.
    """
    d = X.shape[1]
    z = np.empty(d)
    for k in range(r0_, r1_):
        xk = X[k]
        for i in range(d):
            z[i] = xk[i]
        _fwht_ss(z, _NO_SIGNS, 1.0)
        _fwht_ss(z, s1, 1.0)
        _fwht_ss(z, s2, 1.0)
        ok = out[k]
        for i in range(d):
            ok[perm[i]] = z[i] * s3[i] * scale
