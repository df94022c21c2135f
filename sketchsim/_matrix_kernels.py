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
_NO_SIGNS = np.ones(0, dtype=np.int8)


@njit(cache=True, nogil=True)
def _fwht(x):
    """In-place unnormalised fast Walsh–Hadamard transform (Sylvester order) of a length-2^k vector."""
    _fwht_ss(x, _NO_SIGNS, 1.0)


@njit(cache=True, nogil=True)
def _fwht_ss(x, s, scale):
    """x ← scale · H (s ⊙ x), in place: a fast Walsh–Hadamard transform (Sylvester order, d = 2^k)
    with a ±1 diagonal (int8 ``s``; empty for none) folded into its first pass and a scale into its
    last.

    Cache-blocked: the stages of stride < 4096 run chunk by chunk (the signs are applied to a chunk
    while it is in L1), the outer stages strip by strip over the (d/4096) × 4096 view, each strip
    copied to a (d/4096) × 64 buffer (narrower strips measured slower at 2^22) and the scale applied as it is copied back: the
    vector is streamed through memory twice, not log2(d) times. Multiplying by ±1 and by the scale
    after the last addition are exact / the same operation as a separate pass, so the result is
    bit-identical to ``scale · H (s ⊙ x)`` computed stage by stage with the same butterflies.
    """
    d = x.shape[0]
    C = min(d, _FWHT_CHUNK)
    signed = s.shape[0] == d
    for i in range(0, d, C):
        c = x[i:i + C]
        if signed:
            sc = s[i:i + C]
            for t in range(C):
                c[t] = c[t] * sc[t]
        _fwht_small(c)
    if d <= C:
        if scale != 1.0:
            for t in range(d):
                x[t] = x[t] * scale
        return
    R = d // C
    W = _FWHT_COLS
    buf = np.empty(R * W)
    for c0 in range(0, C, W):
        # gather the strip into a contiguous buffer (row stride C would alias in the cache)
        for r in range(R):
            src = x[r * C + c0:r * C + c0 + W]
            dst = buf[r * W:(r + 1) * W]
            for c in range(W):
                dst[c] = src[c]
        _radix_stages(buf, R * W, W, 1)
        for r in range(R):
            src = buf[r * W:(r + 1) * W]
            dst = x[r * C + c0:r * C + c0 + W]
            if scale != 1.0:
                for c in range(W):
                    dst[c] = src[c] * scale
            else:
                for c in range(W):
                    dst[c] = src[c]


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
def _low8(x):
    """The three stages of stride 1, 2, 4 (radix 8) over x, len(x) a multiple of 8.

    Written as one loop over j with the 8 entries at 8j + c so that LLVM's loop vectoriser treats
    them as an interleaved group (8 vector loads, in-register transposes, vector adds): 2–3× faster
    than the scalar form, same additions on the same operands.
    """
    n8 = x.shape[0] // 8
    for j in range(n8):
        i = 8 * j
        x0 = x[i]
        x1 = x[i + 1]
        x2 = x[i + 2]
        x3 = x[i + 3]
        x4 = x[i + 4]
        x5 = x[i + 5]
        x6 = x[i + 6]
        x7 = x[i + 7]
        a0 = x0 + x1
        a1 = x0 - x1
        a2 = x2 + x3
        a3 = x2 - x3
        a4 = x4 + x5
        a5 = x4 - x5
        a6 = x6 + x7
        a7 = x6 - x7
        b0 = a0 + a2
        b2 = a0 - a2
        b1 = a1 + a3
        b3 = a1 - a3
        b4 = a4 + a6
        b6 = a4 - a6
        b5 = a5 + a7
        b7 = a5 - a7
        x[i] = b0 + b4
        x[i + 1] = b1 + b5
        x[i + 2] = b2 + b6
        x[i + 3] = b3 + b7
        x[i + 4] = b0 - b4
        x[i + 5] = b1 - b5
        x[i + 6] = b2 - b6
        x[i + 7] = b3 - b7


@njit(cache=True, nogil=True)
def _low16(x):
    """The four stages of stride 1, 2, 4, 8 (radix 16) over x, len(x) a multiple of 16.

    One loop over g with the 16 entries at 16g + c: LLVM's loop vectoriser treats them as an
    interleaved group (vector loads, in-register transposes, vector adds), which it does not do for
    butterfly loops shorter than its vector block. Same additions on the same operands, in the same
    stage order, as stage-by-stage radix 2.
    """
    for g in range(x.shape[0] // 16):
        i = 16 * g
        v0 = x[i + 0]
        v1 = x[i + 1]
        v2 = x[i + 2]
        v3 = x[i + 3]
        v4 = x[i + 4]
        v5 = x[i + 5]
        v6 = x[i + 6]
        v7 = x[i + 7]
        v8 = x[i + 8]
        v9 = x[i + 9]
        v10 = x[i + 10]
        v11 = x[i + 11]
        v12 = x[i + 12]
        v13 = x[i + 13]
        v14 = x[i + 14]
        v15 = x[i + 15]
        a0 = v0 + v1
        a1 = v0 - v1
        a2 = v2 + v3
        a3 = v2 - v3
        a4 = v4 + v5
        a5 = v4 - v5
        a6 = v6 + v7
        a7 = v6 - v7
        a8 = v8 + v9
        a9 = v8 - v9
        a10 = v10 + v11
        a11 = v10 - v11
        a12 = v12 + v13
        a13 = v12 - v13
        a14 = v14 + v15
        a15 = v14 - v15
        b0 = a0 + a2
        b2 = a0 - a2
        b1 = a1 + a3
        b3 = a1 - a3
        b4 = a4 + a6
        b6 = a4 - a6
        b5 = a5 + a7
        b7 = a5 - a7
        b8 = a8 + a10
        b10 = a8 - a10
        b9 = a9 + a11
        b11 = a9 - a11
        b12 = a12 + a14
        b14 = a12 - a14
        b13 = a13 + a15
        b15 = a13 - a15
        c0 = b0 + b4
        c4 = b0 - b4
        c1 = b1 + b5
        c5 = b1 - b5
        c2 = b2 + b6
        c6 = b2 - b6
        c3 = b3 + b7
        c7 = b3 - b7
        c8 = b8 + b12
        c12 = b8 - b12
        c9 = b9 + b13
        c13 = b9 - b13
        c10 = b10 + b14
        c14 = b10 - b14
        c11 = b11 + b15
        c15 = b11 - b15
        d0 = c0 + c8
        d8 = c0 - c8
        d1 = c1 + c9
        d9 = c1 - c9
        d2 = c2 + c10
        d10 = c2 - c10
        d3 = c3 + c11
        d11 = c3 - c11
        d4 = c4 + c12
        d12 = c4 - c12
        d5 = c5 + c13
        d13 = c5 - c13
        d6 = c6 + c14
        d14 = c6 - c14
        d7 = c7 + c15
        d15 = c7 - c15
        x[i + 0] = d0
        x[i + 1] = d1
        x[i + 2] = d2
        x[i + 3] = d3
        x[i + 4] = d4
        x[i + 5] = d5
        x[i + 6] = d6
        x[i + 7] = d7
        x[i + 8] = d8
        x[i + 9] = d9
        x[i + 10] = d10
        x[i + 11] = d11
        x[i + 12] = d12
        x[i + 13] = d13
        x[i + 14] = d14
        x[i + 15] = d15


@njit(cache=True, nogil=True)
def _fwht_small(x):
    """Plain in-place FWHT: a radix-16 pass (strides 1…8; radix 8 when d = 8), then radix-4 / radix-2
    stages. Every grouping performs the radix-2 stages in order 1, 2, 4, …, so the result is
    bit-identical to the stage-by-stage transform."""
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
    if d == 8:
        _low8(x)
        return
    _low16(x)
    _radix_stages(x, d, 1, 16)


@njit(cache=True, nogil=True)
def fwht_rows(r0_, r1_, X):
    """In-place FWHT of rows [r0_, r1_) of X (m, d)."""
    for k in range(r0_, r1_):
        _fwht(X[k])


@njit(cache=True, nogil=True)
def hadamard_apply(r0_, r1_, X, out, perm, s1, s2, s3, scale):
    """out[k] = H D1 H D2 H D3 P X[k] · scale for rows [r0_, r1_) (short rows are zero-padded).

    perm: int32 (or int64) with (P x)_i = x[perm[i]]; s1, s2, s3: int8 ±1. D3 is applied with the
    gather, D2 and D1 in the first pass of the next transform, the scale in the last pass.
    """
    L = X.shape[1]
    d = out.shape[1]
    for k in range(r0_, r1_):
        y = out[k]
        xk = X[k]
        if L == d:
            for i in range(d):
                y[i] = xk[perm[i]] * s3[i]
        else:
            for i in range(d):
                src = perm[i]
                y[i] = xk[src] * s3[i] if src < L else 0.0
        _fwht_ss(y, _NO_SIGNS, 1.0)
        _fwht_ss(y, s2, 1.0)
        _fwht_ss(y, s1, scale)


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
