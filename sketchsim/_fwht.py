"""Fast Walsh–Hadamard transform kernels (Numba). Private: they assume valid input.

Split out of ``_matrix_kernels.py`` so that the FWHT, the randomized-Hadamard operator kernels
(``_hadamard_kernels.py``) and the block-sparse kernels (``_matrix_kernels.py``) evolve separately.
``reference.fwht`` is the literal NumPy twin.
"""
from __future__ import annotations

import numpy as np
from numba import njit

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
