"""Numba kernels of the matrix families. Private: they assume valid input and fill given arrays.

Kernels take a row (or column) range and are run in parallel by ``_parallel.run_rows`` (no OpenMP
regions: see that module); each row / column is written by one call, so results are bit-identical
for any thread count. Random bits come from the counter-based :func:`mix3`, keyed by
(matrix key, stream, column, index): the NumPy twin in ``reference.py`` reproduces them.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ._rng import mix3

# Random streams of D(b, q, d): which counter tuple feeds which coin (reference.py uses the same).
STREAM_SIGMA_M = 1   # mix3(key, 1, t, 0) & 1            -> σ_m[t]
STREAM_SIGMA_S = 2   # mix3(key, 2, j, t) & 1            -> σ_{s,j}[t]
STREAM_BLOCK = 3     # u = mix3(key, 3, j, i): bits 0,1,2 -> f_m, f_s, f_c; u >> 11 -> η ~ Bernoulli(q)
_INV53 = 1.0 / 9007199254740992.0


@njit(cache=True, nogil=True)
def _pm(u):
    return np.int8(1) if (u & np.uint64(1)) else np.int8(-1)


@njit(cache=True, nogil=True)
def _ceil_log2(n):
    k = 0
    while (1 << k) < n:
        k += 1
    return k


@njit(cache=True, nogil=True)
def _nonzero(u, q):
    return float(u >> np.uint64(11)) * _INV53 < q


@njit(cache=True, nogil=True)
def bs_count(j0, j1, key, d, b, q, counts):
    """counts[j] = number of nonzero blocks (η_{i,j} = 1) of column j, for j in [j0, j1)."""
    nb = d // b
    for j in range(j0, j1):
        c = 0
        for i in range(nb):
            if _nonzero(mix3(key, STREAM_BLOCK, j, i), q):
                c += 1
        counts[j] = c


@njit(cache=True, nogil=True)
def bs_fill(j0, j1, key, d, b, q, col_ptr, blk_row, blk_sign):
    """Fill the nonzero blocks of columns [j0, j1) (Algorithm 2, signs only; scale is 1/√(dq)).

    Block layout (THEORY §9 item 4): f_s·σ_{s,j} | f_c·Enc(j, f'_m, f'_s) | f_m·σ_m, with
    Enc = [+1, bits of j (0-based, MSB first, 0→−1), f'_m, f'_s, +1 padding].
    """
    t = b // 3
    nb = d // b
    nbits = _ceil_log2(d)
    sm0 = _pm(mix3(key, STREAM_SIGMA_M, 0, 0))
    for j in range(j0, j1):
        ss0 = _pm(mix3(key, STREAM_SIGMA_S, j, 0))
        p = col_ptr[j]
        for i in range(nb):
            u = mix3(key, STREAM_BLOCK, j, i)
            if not _nonzero(u, q):
                continue
            fm = _pm(u)
            fs = _pm(u >> np.uint64(1))
            fc = _pm(u >> np.uint64(2))
            blk_row[p] = i
            for k in range(t):
                blk_sign[p, k] = fs * _pm(mix3(key, STREAM_SIGMA_S, j, k))
                blk_sign[p, 2 * t + k] = fm * _pm(mix3(key, STREAM_SIGMA_M, k, 0))
            blk_sign[p, t] = fc
            for k in range(nbits):
                bit = (j >> (nbits - 1 - k)) & 1
                blk_sign[p, t + 1 + k] = fc if bit else -fc
            blk_sign[p, t + 1 + nbits] = fc * fm * sm0
            blk_sign[p, t + 2 + nbits] = fc * fs * ss0
            for k in range(t + 3 + nbits, 2 * t):
                blk_sign[p, k] = fc
            p += 1


@njit(cache=True, nogil=True)
def bs_apply(r0_, r1_, X, out, col_ptr, blk_row, blk_sign, b, scale):
    """out[k] = R @ X[k] for rows k in [r0_, r1_) (rows of X may be shorter than d: zero padding).

    ``out`` is zeroed on entry.
    """
    L = X.shape[1]
    for k in range(r0_, r1_):
        for j in range(L):
            xj = X[k, j]
            if xj == 0.0:
                continue
            v = xj * scale
            for p in range(col_ptr[j], col_ptr[j + 1]):
                r0 = blk_row[p] * b
                for t in range(b):
                    out[k, r0 + t] += v * blk_sign[p, t]


@njit(cache=True, nogil=True)
def bs_apply_t(r0_, r1_, X, out, col_ptr, blk_row, blk_sign, b, scale):
    """out[k] = R^T @ X[k] for rows k in [r0_, r1_)."""
    d = X.shape[1]
    for k in range(r0_, r1_):
        for j in range(d):
            acc = 0.0
            for p in range(col_ptr[j], col_ptr[j + 1]):
                r0 = blk_row[p] * b
                for t in range(b):
                    acc += blk_sign[p, t] * X[k, r0 + t]
            out[k, j] = acc * scale


@njit(cache=True, nogil=True)
def bs_dense(j0, j1, out, col_ptr, blk_row, blk_sign, b, scale):
    """Dense view of columns [j0, j1): out (d, d) zeroed on entry."""
    for j in range(j0, j1):
        for p in range(col_ptr[j], col_ptr[j + 1]):
            r0 = blk_row[p] * b
            for t in range(b):
                out[r0 + t, j] = blk_sign[p, t] * scale

