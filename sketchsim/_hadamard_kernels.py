"""Kernels of the randomized Hadamard operator R = H D₁ H D₂ H D₃ P / d^{3/2} (THEORY.md §2.4).

Private: they assume valid input and fill given arrays; run in parallel by ``_parallel.run_rows``.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ._fwht import _NO_SIGNS, _fwht_ss


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
