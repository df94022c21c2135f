"""Numba kernels of the recursable dictionary learner (THEORY.md §6.2). Private.

Kernels assume valid input (finite samples, b a multiple of 3 with b ≥ 3(⌈log2 d⌉+3), d a multiple
of b) and fill preallocated arrays. The two hot kernels are serial ``nogil`` functions of a sample
range ``[r0_, r1_)`` that :func:`sketchsim._parallel.run_rows` splits across threads (the engine's
convention: no OpenMP wake-up cost). Sample k writes only row k of ``status`` or the slots
``offsets[k]:offsets[k+1]`` of the parse arrays, so the output is bit-identical for any thread count. ``reference.dictlearn_screen`` / ``reference.dictlearn_parse``
are the literal NumPy twins.

Bit packing: bit i of a ±1 vector is stored in word ``i >> 6`` at position ``i & 63``, set for +1.
"""
from __future__ import annotations

import numpy as np
from numba import njit

# Status of a screened block (steps 1–3 of THEORY.md §6.2), in the order the checks run.
ST_ZERO = 0            # ‖v‖₁ = 0: nothing to normalise
ST_OFF_CUBE = 1        # ℓ1-normalised block not within τ_∞ of the hypercube (no single column dominates)
ST_BAD_PADDING = 2     # Enc padding e[L+3:] not all +1
ST_BAD_INDEX = 3       # decoded column index ≥ d (possible when d is not a power of two)
ST_SIGN_MISMATCH = 4   # r_m[0]·b_m ≠ r_s[0]·b_s: the two parity checks disagree on sign(x_j)
ST_ACCEPT = 5
STATUS_NAMES = ("zero", "off_cube", "bad_padding", "bad_index", "sign_mismatch", "accepted")

_ONE = np.uint64(1)
_M1 = np.uint64(0x5555555555555555)
_M2 = np.uint64(0x3333333333333333)
_M4 = np.uint64(0x0F0F0F0F0F0F0F0F)
_H01 = np.uint64(0x0101010101010101)
_S1 = np.uint64(1)
_S2 = np.uint64(2)
_S4 = np.uint64(4)
_S56 = np.uint64(56)


@njit(cache=True, nogil=True)
def _sgn(v):
    # Only called on entries that passed the hypercube test (|u| ≥ 1 − τ_∞ > 0): never zero.
    return 1 if v > 0.0 else -1


@njit(cache=True, nogil=True)
def _l1(y, r0, b):
    # Four independent partial sums: one dependent chain is add-latency bound (≈ 4 cycles/entry).
    a0 = 0.0
    a1 = 0.0
    a2 = 0.0
    a3 = 0.0
    n4 = b - b % 4
    for i in range(0, n4, 4):
        a0 += abs(y[r0 + i])
        a1 += abs(y[r0 + i + 1])
        a2 += abs(y[r0 + i + 2])
        a3 += abs(y[r0 + i + 3])
    for i in range(n4, b):
        a0 += abs(y[r0 + i])
    return (a0 + a1) + (a2 + a3)


@njit(cache=True, nogil=True)
def first_nonfinite(r0_, r1_, Y, out):
    """out[k] = first column of row k (k in [r0_, r1_)) holding NaN or ±inf, or −1."""
    for k in range(r0_, r1_):
        out[k] = -1
        for i in range(Y.shape[1]):
            if not np.isfinite(Y[k, i]):
                out[k] = i
                break


@njit(cache=True, nogil=True)
def _block_status(y, r0, b, nbits, d, tol):
    """Screen + validity checks of the block y[r0 : r0+b] (steps 1–3 of THEORY.md §6.2)."""
    # Necessary condition, checked before the ℓ1 sum: on the cube every |v_i| lies in
    # [(1−τ), (1+τ)]·a/b, so (1−τ)·max(|v_0|, |v_1|) ≤ (1+τ)·min(|v_0|, |v_1|). The slack
    # factor keeps rounding from rejecting a block the exact test below would accept.
    p0 = abs(y[r0])
    p1 = abs(y[r0 + 1])
    lo = min(p0, p1)
    if lo > 0.0 and (1.0 - tol) * max(p0, p1) > (1.0 + tol) * lo * (1.0 + 1e-9):
        return ST_OFF_CUBE
    a = _l1(y, r0, b)
    if not (a > 0.0):
        return ST_ZERO
    # | b|v_i|/a − 1 | > τ  ⇔  | b|v_i| − a | > τ·a  (a > 0): no division per entry.
    ta = tol * a
    for i in range(b):
        if abs(b * abs(y[r0 + i]) - a) > ta:
            return ST_OFF_CUBE
    t = b // 3
    c0 = r0 + t
    g = _sgn(y[c0])                                   # r_c[0] = sign(x_j)·f_c
    for k in range(nbits + 3, t):                     # padding of Enc must read +1
        if _sgn(y[c0 + k]) * g != 1:
            return ST_BAD_PADDING
    j = 0
    for k in range(nbits):                            # bits of the 0-based column index, MSB first
        j = 2 * j + (1 if _sgn(y[c0 + 1 + k]) * g == 1 else 0)
    if j >= d:
        return ST_BAD_INDEX
    bm = _sgn(y[c0 + 1 + nbits]) * g
    bs = _sgn(y[c0 + 2 + nbits]) * g
    if _sgn(y[r0 + 2 * t]) * bm != _sgn(y[r0]) * bs:  # sign(x_j) from σ_m and from σ_s must agree
        return ST_SIGN_MISMATCH
    return ST_ACCEPT


@njit(cache=True, nogil=True)
def screen_blocks(r0_, r1_, Y, b, nbits, tol, status):
    """status[k, ℓ] = screening verdict (``ST_*``) of block ℓ of sample k, for k in [r0_, r1_)."""
    d = Y.shape[1]
    nb = d // b
    for k in range(r0_, r1_):
        y = Y[k]
        for ell in range(nb):
            status[k, ell] = _block_status(y, ell * b, b, nbits, d, tol)


@njit(cache=True, nogil=True)
def _pack_word(y, r0, n, w, ref):
    """Word w of the packed signs of ref·y[r0 : r0+n] (bit i set ↔ ref·sign(y[r0+i]) = +1)."""
    word = np.uint64(0)
    lo = 64 * w
    hi = min(n, lo + 64)
    for i in range(lo, hi):
        if _sgn(y[r0 + i]) * ref == 1:
            word |= _ONE << np.uint64(i - lo)
    return word


@njit(cache=True, nogil=True)
def parse_blocks(r0_, r1_, Y, b, nbits, mag_scale, status, offsets, out_block, out_col, out_sign, out_mag,
                 out_key_m, out_key_s, out_pat):
    """Parse every accepted block of samples [r0_, r1_) (steps 2–5 of THEORY.md §6.2).

    The c-th accepted block of sample k goes to slot ``offsets[k] + c``.

    out_block : block index ℓ;   out_col : column index j (0-based);   out_sign : sign(x_j) = r_m[0]·b_m
    out_mag : |x̂_j| = ‖v‖₁·mag_scale (mag_scale = √(dq)/b)
    out_key_m, out_key_s : packed canonical forms σ̂_m = r_m·r_m[0], σ̂_s = r_s·r_s[0]  (W_t words)
    out_pat : packed recovered true block of R, sign(x_j)·r  (W_b words)
    """
    nb = status.shape[1]
    t = b // 3
    wt = out_key_m.shape[1]
    wb = out_pat.shape[1]
    for k in range(r0_, r1_):
        y = Y[k]
        p = offsets[k]
        for ell in range(nb):
            if status[k, ell] != ST_ACCEPT:
                continue
            r0 = ell * b
            c0 = r0 + t
            a = _l1(y, r0, b)
            g = _sgn(y[c0])
            j = 0
            for kk in range(nbits):
                j = 2 * j + (1 if _sgn(y[c0 + 1 + kk]) * g == 1 else 0)
            bm = _sgn(y[c0 + 1 + nbits]) * g
            m0 = _sgn(y[r0 + 2 * t])
            s0 = _sgn(y[r0])
            sg = m0 * bm
            out_block[p] = ell
            out_col[p] = j
            out_sign[p] = sg
            out_mag[p] = a * mag_scale
            for w in range(wt):
                out_key_m[p, w] = _pack_word(y, r0 + 2 * t, t, w, m0)
                out_key_s[p, w] = _pack_word(y, r0, t, w, s0)
            for w in range(wb):
                out_pat[p, w] = _pack_word(y, r0, b, w, sg)
            p += 1


@njit(cache=True, nogil=True)
def _popcount(x):
    x = x - ((x >> _S1) & _M1)
    x = (x & _M2) + ((x >> _S2) & _M2)
    x = (x + (x >> _S4)) & _M4
    return int((x * _H01) >> _S56)


@njit(cache=True, nogil=True)
def _find(parent, a):
    while parent[a] != a:
        parent[a] = parent[parent[a]]
        a = parent[a]
    return a


@njit(cache=True)
def merge_buckets(keys, order, starts, tol, parent):
    """Union keys of one bucket that lie within Hamming distance ``tol``.

    keys : (n, W) uint64 packed keys; order : rows sorted by bucket; bucket i is
    ``order[starts[i]:starts[i+1]]``. parent : union-find forest over rows (updated; the root of a
    component is its smallest row, so components do not depend on the merge order).
    """
    W = keys.shape[1]
    for bi in range(starts.shape[0] - 1):
        s = starts[bi]
        e = starts[bi + 1]
        if e - s < 2:
            continue
        for x in range(s, e):
            a = order[x]
            for z in range(x + 1, e):
                c = order[z]
                dist = 0
                for w in range(W):
                    dist += _popcount(keys[a, w] ^ keys[c, w])
                    if dist > tol:
                        break
                if dist <= tol:
                    ra = _find(parent, a)
                    rc = _find(parent, c)
                    if ra < rc:
                        parent[rc] = ra
                    elif rc < ra:
                        parent[ra] = rc


@njit(cache=True)
def find_roots(parent, out):
    for i in range(parent.shape[0]):
        out[i] = _find(parent, i)


@njit(cache=True)
def hamming_rows(keys, ref):
    """out[i] = Hamming distance between packed rows keys[i] and ref."""
    out = np.empty(keys.shape[0], dtype=np.int64)
    for i in range(keys.shape[0]):
        dist = 0
        for w in range(keys.shape[1]):
            dist += _popcount(keys[i, w] ^ ref[w])
        out[i] = dist
    return out


@njit(cache=True, nogil=True)
def unpack_bits(words, nbits):
    """Packed rows (n, W) uint64 → (n, nbits) int8 in {−1, +1} (bit i set ↔ +1)."""
    n = words.shape[0]
    out = np.empty((n, nbits), dtype=np.int8)
    for r in range(n):
        for i in range(nbits):
            out[r, i] = 1 if (words[r, i >> 6] >> np.uint64(i & 63)) & _ONE else -1
    return out


@njit(cache=True, nogil=True)
def majority_bits(words, order, starts, nbits):
    """Per-entry majority vote of the packed ±1 rows ``words[order[starts[g]:starts[g+1]]]``.

    Returns (n_groups, nbits) int8: the sign of the sum of each entry over the group's rows, and on
    a tie the entry of the group's first row (THEORY.md §6.2 step 8).
    """
    G = starts.shape[0] - 1
    out = np.empty((G, nbits), dtype=np.int8)
    cnt = np.empty(nbits, dtype=np.int64)
    for g in range(G):
        s = starts[g]
        e = starts[g + 1]
        for i in range(nbits):
            cnt[i] = 0
        for x in range(s, e):
            r = order[x]
            for i in range(nbits):
                if (words[r, i >> 6] >> np.uint64(i & 63)) & _ONE:
                    cnt[i] += 1
        r0 = order[s]
        m = e - s
        for i in range(nbits):
            v = 2 * cnt[i] - m
            if v > 0:
                out[g, i] = 1
            elif v < 0:
                out[g, i] = -1
            else:
                out[g, i] = 1 if (words[r0, i >> 6] >> np.uint64(i & 63)) & _ONE else -1
    return out


@njit(cache=True, nogil=True)
def _key_less(keys, a, c):
    for w in range(keys.shape[1]):
        if keys[a, w] != keys[c, w]:
            return keys[a, w] < keys[c, w]
    return False


@njit(cache=True, nogil=True)
def group_sorted_primary(primary, keys, order, change):
    """Stable lexicographic order of rows by (primary, keys[:, 0], …) when ``primary`` is already
    nondecreasing: each run of equal primary values is insertion-sorted by its packed keys.

    Fills ``order`` (n,) and ``change`` (n,) bool (row order[i] starts a new group).
    """
    n = primary.shape[0]
    s = 0
    while s < n:
        e = s + 1
        while e < n and primary[e] == primary[s]:
            e += 1
        for x in range(s, e):
            r = x
            z = x
            while z > s and _key_less(keys, r, order[z - 1]):
                order[z] = order[z - 1]
                z -= 1
            order[z] = r
        change[s] = True
        for x in range(s + 1, e):
            a = order[x - 1]
            c = order[x]
            diff = False
            for w in range(keys.shape[1]):
                if keys[a, w] != keys[c, w]:
                    diff = True
                    break
            change[x] = diff
        s = e
