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


_FWHT_CHUNK = 4096     # stages below this stride run chunk by chunk (32 KiB: in L1/L2)
_FWHT_COLS = 64        # column strip of the outer stages, copied to a (d / chunk) × 64 buffer


@njit(cache=True, nogil=True)
def _fwht(x):
    """In-place unnormalised fast Walsh–Hadamard transform (Sylvester order) of a length-2^k vector.

    Cache-blocked: the stages of stride < 4096 run chunk by chunk, the outer stages strip by strip
    over the (d/4096) × 4096 view, so the vector is streamed through memory twice, not log2(d) times.
    """
    d = x.shape[0]
    if d <= _FWHT_CHUNK:
        _fwht_small(x)
        return
    C = _FWHT_CHUNK
    for i in range(0, d, C):
        _fwht_small(x[i:i + C])
    R = d // C
    W = _FWHT_COLS
    buf = np.empty(R * W)
    for c0 in range(0, C, W):
        # gather the strip into a contiguous buffer (row stride C would alias in the cache)
        for r in range(R):
            for c in range(W):
                buf[r * W + c] = x[r * C + c0 + c]
        _radix_stages(buf, R * W, W, 1)
        for r in range(R):
            for c in range(W):
                x[r * C + c0 + c] = buf[r * W + c]


@njit(cache=True, nogil=True)
def _radix_stages(x, n, W, h):
    """The FWHT stages of stride h·W, 2h·W, … < n over x[:n] (x viewed as rows of W entries).

    Two stages per pass (radix 4) where possible, then one radix-2 stage: the same additions on the
    same operands as stage-by-stage radix 2, so the result is bit-identical, with half the passes.
    """
    while 4 * h * W <= n:
        m = h * W
        for i in range(0, n, 4 * m):
            p0 = x[i:i + m]
            p1 = x[i + m:i + 2 * m]
            p2 = x[i + 2 * m:i + 3 * m]
            p3 = x[i + 3 * m:i + 4 * m]
            for j in range(m):
                u0 = p0[j]
                u1 = p1[j]
                u2 = p2[j]
                u3 = p3[j]
                a0 = u0 + u1
                a1 = u0 - u1
                a2 = u2 + u3
                a3 = u2 - u3
                p0[j] = a0 + a2
                p2[j] = a0 - a2
                p1[j] = a1 + a3
                p3[j] = a1 - a3
        h *= 4
    while h * W < n:
        m = h * W
        for i in range(0, n, 2 * m):
            a = x[i:i + m]
            b = x[i + m:i + 2 * m]
            for j in range(m):
                u = a[j]
                v = b[j]
                a[j] = u + v
                b[j] = u - v
        h *= 2


@njit(cache=True, nogil=True)
def _fwht_small(x):
    """Plain in-place FWHT: a radix-8 pass, then radix-2 stages over non-overlapping slices.

    Working on the two half-slices ``a``, ``b`` of each butterfly group lets LLVM vectorise the
    inner loop (measured 7× faster than index arithmetic on one array, at d = 4096).
    """
    d = x.shape[0]
    if d < 8:
        h = 1
        while h < d:
            for i in range(0, d, 2 * h):
                for j in range(i, i + h):
                    u = x[j]
                    v = x[j + h]
                    x[j] = u + v
                    x[j + h] = u - v
            h *= 2
        return
    for i in range(0, d, 8):
        a0 = x[i] + x[i + 1]
        a1 = x[i] - x[i + 1]
        a2 = x[i + 2] + x[i + 3]
        a3 = x[i + 2] - x[i + 3]
        a4 = x[i + 4] + x[i + 5]
        a5 = x[i + 4] - x[i + 5]
        a6 = x[i + 6] + x[i + 7]
        a7 = x[i + 6] - x[i + 7]
        b0 = a0 + a2
        b2 = a0 - a2
        b1 = a1 + a3
        b3 = a1 - a3
        b4 = a4 + a6
        b6 = a4 - a6
        b5 = a5 + a7
        b7 = a5 - a7
        x[i] = b0 + b4
        x[i + 4] = b0 - b4
        x[i + 1] = b1 + b5
        x[i + 5] = b1 - b5
        x[i + 2] = b2 + b6
        x[i + 6] = b2 - b6
        x[i + 3] = b3 + b7
        x[i + 7] = b3 - b7
    _radix_stages(x, d, 1, 8)


@njit(cache=True, nogil=True)
def fwht_rows(r0_, r1_, X):
    """In-place FWHT of rows [r0_, r1_) of X (m, d)."""
    for k in range(r0_, r1_):
        _fwht(X[k])


@njit(cache=True, nogil=True)
def hadamard_apply(r0_, r1_, X, out, perm, s1, s2, s3, scale):
    """out[k] = H D1 H D2 H D3 P X[k] · scale for rows [r0_, r1_) (short rows are zero-padded)."""
    L = X.shape[1]
    d = out.shape[1]
    for k in range(r0_, r1_):
        y = out[k]
        for i in range(d):
            src = perm[i]
            y[i] = X[k, src] * s3[i] if src < L else 0.0
        _fwht(y)
        for i in range(d):
            y[i] *= s2[i]
        _fwht(y)
        for i in range(d):
            y[i] *= s1[i]
        _fwht(y)
        for i in range(d):
            y[i] *= scale


@njit(cache=True, nogil=True)
def hadamard_apply_t(r0_, r1_, X, out, tmp, perm, s1, s2, s3, scale):
    """out[k] = P^T D3 H D2 H D1 H X[k] · scale for rows [r0_, r1_) (transpose of hadamard_apply)."""
    d = X.shape[1]
    for k in range(r0_, r1_):
        z = tmp[k]
        for i in range(d):
            z[i] = X[k, i]
        _fwht(z)
        for i in range(d):
            z[i] *= s1[i]
        _fwht(z)
        for i in range(d):
            z[i] *= s2[i]
        _fwht(z)
        for i in range(d):
            out[k, perm[i]] = z[i] * s3[i] * scale
