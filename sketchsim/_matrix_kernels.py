"""Numba kernels of the matrix families. Private: they assume valid input and fill given arrays.

Kernels take a row (or column) range and are run in parallel by ``_parallel.run_rows`` (no OpenMP
regions: see that module); each row / column is written by one call, so results are bit-identical
for any thread count. Random bits come from the counter-based :func:`mix3`, keyed by
(matrix key, stream, column, index): the NumPy twin in ``reference.py`` reproduces them.
"""
from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from ._rng import _GOLDEN, _M1, _M2, _S27, _S30, _S31, _splitmix, mix3

_S11 = np.uint64(11)

@intrinsic
def _prefetch(typingctx, arr, index, write):
    """Software prefetch (``llvm.prefetch``) of element ``index`` of the C-contiguous array ``arr``
    (counted in the flattened array), for reading (write=0) or writing (write=1), into every cache
    level. A hint only: no effect on results. The binned kernels prefetch the data of the block
    a few places ahead, since those reads are too sparse for the hardware prefetcher."""
    if not isinstance(write, types.IntegerLiteral):
        return None
    rw = int(write.literal_value)

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = builder.gep(ary.data, [args[1]])
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                                            "llvm.prefetch.p0i8")
        builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, rw), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.void(arr, index, write), codegen


# Random streams of D(b, q, d): which counter tuple feeds which coin (reference.py uses the same).
# Stream 3 (one coin per block, mix3(key, 3, j, i)) was the stored sampler's until issue 11; it is no
# longer drawn: both storages find the nonzero blocks through the geometric gaps of STREAM_GAP below.
STREAM_SIGMA_M = 1   # mix3(key, 1, t, 0) & 1            -> σ_m[t]
STREAM_SIGMA_S = 2   # mix3(key, 2, j, t) & 1            -> σ_{s,j}[t]


@njit(cache=True, nogil=True)
def _ceil_log2(n):
    k = 0
    while (1 << k) < n:
        k += 1
    return k


@njit(cache=True, nogil=True)
def _stream_base(key, a):
    """splitmix(key ^ splitmix(a)): the part of mix3(key, a, ·, ·) shared by every counter."""
    return _splitmix(np.uint64(key) ^ _splitmix(np.uint64(a)))


@njit(cache=True, nogil=True)
def bs_apply(r0_, r1_, X, out, col_ptr, blk_row, blk_sign, b, scale, tile=False):
    """out[k] = R @ X[k] for rows k in [r0_, r1_) (rows of X may be shorter than d: zero padding).

    ``out`` is zeroed on entry. Summation order (every kernel of R X below keeps it, so they agree
    bit for bit; ``reference.block_sparse_apply`` is the literal twin): out[k, i] starts at 0.0 and
    adds ±(X[k, j]·scale) for the nonzero entries (i, j) of row i in increasing j. Skipping a zero
    X[k, j] or adding its ±0.0 gives the same bits (a sum that starts at +0.0 never becomes −0.0).
    With ``tile``, rows go four at a time (one pass over the blocks feeds four rows; a column is
    skipped only where all four are zero), the rest one at a time (each row skips its own zeros).
    """
    L = X.shape[1]
    k = r0_
    while tile and k + 4 <= r1_:
        o0 = out[k]
        o1 = out[k + 1]
        o2 = out[k + 2]
        o3 = out[k + 3]
        for j in range(L):
            v0 = X[k, j] * scale
            v1 = X[k + 1, j] * scale
            v2 = X[k + 2, j] * scale
            v3 = X[k + 3, j] * scale
            if v0 == 0.0 and v1 == 0.0 and v2 == 0.0 and v3 == 0.0:
                continue
            for p in range(col_ptr[j], col_ptr[j + 1]):
                r0 = blk_row[p] * b
                sg = blk_sign[p]
                for t in range(b):
                    s = np.float64(sg[t])
                    o0[r0 + t] += v0 * s
                    o1[r0 + t] += v1 * s
                    o2[r0 + t] += v2 * s
                    o3[r0 + t] += v3 * s
        k += 4
    for k in range(k, r1_):
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
def bs_apply_batch(k0_, k1_, XT, outT, col_ptr, blk_row, blk_sign, b, scale):
    """outT[:, k] = R @ XT[:, k] for batch columns k in [k0_, k1_): :func:`bs_apply` with the batch
    as the minor (contiguous) axis, XT of shape (L, m) and outT (d, m), so that each block entry
    updates a run of contiguous batch values (vectorised). Same summation order, same bits;
    ``outT[:, k0_:k1_]`` is zeroed here."""
    L = XT.shape[0]
    d = outT.shape[0]
    n = k1_ - k0_
    v = np.empty(n)
    for i in range(d):
        o = outT[i, k0_:k1_]
        for k in range(n):
            o[k] = 0.0
    for j in range(L):
        xr = XT[j, k0_:k1_]
        for k in range(n):
            v[k] = xr[k] * scale
        for p in range(col_ptr[j], col_ptr[j + 1]):
            r0 = blk_row[p] * b
            sg = blk_sign[p]
            for t in range(b):
                s = np.float64(sg[t])
                o = outT[r0 + t, k0_:k1_]
                for k in range(n):
                    o[k] += v[k] * s


@njit(cache=True, nogil=True)
def _bs_apply_t8(X, k, out, ko, col_ptr, blk_row, blk_sign, b, scale):
    """out[ko + r] = Rᵀ X[k + r] for r < 8 (:func:`bs_apply_t`): eight independent sums in flight
    instead of one addition chain, the same chain per row."""
    d = X.shape[1]
    x0 = X[k]
    x1 = X[k + 1]
    x2 = X[k + 2]
    x3 = X[k + 3]
    x4 = X[k + 4]
    x5 = X[k + 5]
    x6 = X[k + 6]
    x7 = X[k + 7]
    for j in range(d):
        a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = 0.0
        for p in range(col_ptr[j], col_ptr[j + 1]):
            r0 = blk_row[p] * b
            sg = blk_sign[p]
            for t in range(b):
                s = sg[t]
                i = r0 + t
                a0 += s * x0[i]
                a1 += s * x1[i]
                a2 += s * x2[i]
                a3 += s * x3[i]
                a4 += s * x4[i]
                a5 += s * x5[i]
                a6 += s * x6[i]
                a7 += s * x7[i]
        out[ko, j] = a0 * scale
        out[ko + 1, j] = a1 * scale
        out[ko + 2, j] = a2 * scale
        out[ko + 3, j] = a3 * scale
        out[ko + 4, j] = a4 * scale
        out[ko + 5, j] = a5 * scale
        out[ko + 6, j] = a6 * scale
        out[ko + 7, j] = a7 * scale


@njit(cache=True, nogil=True)
def bs_apply_t(r0_, r1_, X, out, col_ptr, blk_row, blk_sign, b, scale):
    """out[k] = R^T @ X[k] for rows k in [r0_, r1_).

    Summation order (``reference.block_sparse_apply_t``): out[k, j] = scale · (0.0 + Σ sign·X[k, i]
    over the nonzero entries (i, j) of column j in increasing i). Eight rows at a time
    (:func:`_bs_apply_t8`); 2–7 rows left over go through it zero-padded, a lone row on its own.
    """
    d = X.shape[1]
    k = r0_
    while k + 8 <= r1_:
        _bs_apply_t8(X, k, out, k, col_ptr, blk_row, blk_sign, b, scale)
        k += 8
    n = r1_ - k
    if n > 1:
        pad = np.zeros((8, d))
        pad[:n] = X[k:r1_]
        res = np.empty((8, d))
        _bs_apply_t8(pad, 0, res, 0, col_ptr, blk_row, blk_sign, b, scale)
        out[k:r1_] = res[:n]
    elif n == 1:
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



# ----------------------------------------------------------------------------- drawing D(b, q, d)
# The nonzero blocks of a column are found through geometric gaps (STREAM_GAP), in O(nonzero blocks)
# per column; σ_m, σ_{s,j} and the block layout are those of Algorithm 2. The stored operator
# (matrices.BlockSparseOperator) draws them once with bs_fill; the implicit operator
# (matrices.ImplicitBlockSparseOperator) stores no block and every kernel below regenerates them,
# so the two storages hold one and the same matrix. Hot loops index with unsigned integers
# (Numba then skips the negative-index wraparound, and LLVM vectorises them) and build ±1.0 from
# IEEE-754 bits (AVX2 has no vectorised int64 → float64 conversion).
STREAM_GAP = 4       # u = mix3(key, 4, j, k): k-th nonzero block of column j, gap ⌊log U / log(1−q)⌋ after the
                     # previous one, U = ((u >> 11) + 1)·2⁻⁵³ ∈ (0, 1]; bits 0,1,2 of u -> f_m, f_s, f_c
_ENTRY_COL_BITS = 29  # packed block (binned apply): block row << 32 | (column − chunk start) << 3 | (u & 7)
_ENTRY_COL_MASK = np.uint64((1 << _ENTRY_COL_BITS) - 1)
_TWO_M53 = 2.0 ** -53
PREFETCH = 16         # binned kernels prefetch the data of the block this many places ahead
_ONE_BITS = np.uint64(0x3FF0000000000000)   # IEEE-754 bits of +1.0; with bit 63 set, −1.0
_U1 = np.uint64(1)
_S63 = np.uint64(63)


def gap_log(q):
    """log(1 − q), the denominator of the geometric gap (−inf for q = 1: every block is nonzero)."""
    return math.log1p(-q) if q < 1.0 else -math.inf


@njit(cache=True, nogil=True)
def _next_block(z, k, i, nb, lq):
    """(i', u): the k-th nonzero block i' of a column whose previous nonzero block is i (−1 for k = 0).

    u = mix3(key, 4, j, k) with z = the column's hoisted prefix; gap g = ⌊log U / log(1−q)⌋ with
    U = ((u >> 11) + 1)·2⁻⁵³, so P(g ≥ n) = P(U ≤ (1−q)ⁿ) = (1−q)ⁿ: the blocks i + 1, …, i + g are
    zero and i' = i + 1 + g is nonzero, i.e. independent Bernoulli(q) blocks. i' ≥ nb: no more blocks
    (returned as nb; the comparison is made in floating point first, so a huge gap never overflows).
    """
    u = _splitmix(z ^ (np.uint64(k) * _GOLDEN))
    if lq == -np.inf:
        return i + 1, u
    gf = math.log(float((u >> _S11) + _U1) * _TWO_M53) / lq
    if gf >= float(nb - 1 - i):
        return nb, u
    return i + 1 + np.int64(gf), u


@njit(cache=True, nogil=True)
def _flip_words(b, nbits):
    """flip[u & 7]: the entries of a block whose sign the flags f_m, f_s, f_c (bits 0, 1, 2 of u) flip.

    As ⌈b/64⌉ words, bit s for entry s: the σ_s sub-block flips with f_s = −1, Enc with f_c = −1,
    except its parity entries f'_m = f_m·σ_m[0] (flips with f_c·f_m = −1) and f'_s = f_s·σ_{s,j}[0]
    (with f_c·f_s = −1), and the σ_m sub-block with f_m = −1 (Algorithm 2 step 13).
    """
    t = b // 3
    flip = np.zeros((8, (b + 63) // 64), dtype=np.uint64)
    for code in range(8):
        nm = (code & 1) ^ 1
        ns = ((code >> 1) & 1) ^ 1
        nc = ((code >> 2) & 1) ^ 1
        for s in range(b):
            if s < t:
                f = ns
            elif s == t + 1 + nbits:
                f = nc ^ nm
            elif s == t + 2 + nbits:
                f = nc ^ ns
            elif s < 2 * t:
                f = nc
            else:
                f = nm
            if f:
                flip[code, s >> 6] |= _U1 << np.uint64(s & 63)
    return flip


@njit(cache=True, nogil=True)
def _shared_words(key, b, nbits):
    """The bits (1 = entry −1) every column's template shares: σ_m, and σ_m[0] at the f'_m entry of Enc."""
    t = b // 3
    gw = np.zeros((b + 63) // 64, dtype=np.uint64)
    for k in range(t):
        if not mix3(key, STREAM_SIGMA_M, k, 0) & _U1:
            s = 2 * t + k
            gw[s >> 6] |= _U1 << np.uint64(s & 63)
            if k == 0:
                s = t + 1 + nbits
                gw[s >> 6] |= _U1 << np.uint64(s & 63)
    return gw


@njit(cache=True, nogil=True)
def _col_template(base_s, j, t, nbits, gw, tw):
    """tw = bits (1 = entry −1) of column j's nonzero block at flags f_m = f_s = f_c = +1:
    σ_{s,j} | Enc(j, σ_m[0], σ_{s,j}[0]) | σ_m. A block with flags u & 7 is tw ^ flip[u & 7].

    Branch-free (the bits are random: branches on them would be mispredicted half of the time).
    """
    for w in range(tw.shape[0]):
        tw[w] = gw[w]
    z = _splitmix(base_s ^ np.uint64(j))
    for w in range((t + 63) // 64):                  # σ_{s,j}[k] = −1 where mix3(key, 2, j, k) is even
        g = np.uint64(64 * w) * _GOLDEN
        word = np.uint64(0)
        for k in range(min(64, t - 64 * w)):
            x = (z ^ g) + _GOLDEN                    # _splitmix(z ^ (64w + k)·G), inlined (vectorises)
            g += _GOLDEN
            x = (x ^ (x >> _S30)) * _M1
            x = (x ^ (x >> _S27)) * _M2
            x = x ^ (x >> _S31)
            word |= ((x & _U1) ^ _U1) << np.uint64(k)
        tw[w] |= word
    # Enc entries t+1 … t+nbits (bits of j, MSB first, 0 → −1) and t+2+nbits (f'_s = σ_{s,j}[0]), built
    # in a register (entry t+1+k is bit k) and placed at entry t+1, possibly across two words
    uj = np.uint64(j)
    e = (tw[0] & _U1) << np.uint64(nbits + 1)        # tw[0] bit 0: σ_{s,j}[0] = −1
    for k in range(nbits):
        e |= (((uj >> np.uint64(nbits - 1 - k)) & _U1) ^ _U1) << np.uint64(k)
    s = t + 1
    tw[s >> 6] |= e << np.uint64(s & 63)
    if (s & 63) + nbits + 2 > 64:
        tw[(s >> 6) + 1] |= e >> np.uint64(64 - (s & 63))


@njit(cache=True, nogil=True)
def _block_values(svu, tw, fw, b):
    """svu[0:b] = IEEE-754 bits of the ±1.0 entries of the block with sign bits tw ^ fw (bit 63 = sign)."""
    for w in range(tw.shape[0]):
        word = tw[w] ^ fw[w]
        for k in range(min(64, b - 64 * w)):
            svu[np.uint64(64 * w + k)] = _ONE_BITS | (((word >> np.uint64(k)) & _U1) << _S63)


@njit(cache=True, nogil=True)
def _block_values_at(svu, rec, jl, fw, code, nwb, b):
    """:func:`_block_values` for the template rec[jl, :nwb] and the flags code, without array views
    (a view per block costs reference counting in the hot loop)."""
    for w in range(nwb):
        word = rec[jl, w] ^ fw[code, w]
        for k in range(min(64, b - 64 * w)):
            svu[np.uint64(64 * w + k)] = _ONE_BITS | (((word >> np.uint64(k)) & _U1) << _S63)


@njit(cache=True, nogil=True)
def bsi_col_counts(j0, j1, c0, key, d, b, lq, counts):
    """counts[j − c0] = number of nonzero blocks of column j of the implicit D(b, q, d), j in [j0, j1)."""
    nb = d // b
    base = _stream_base(key, STREAM_GAP)
    for j in range(j0, j1):
        z = _splitmix(base ^ np.uint64(j))
        i, k = -1, 0
        while True:
            i, u = _next_block(z, k, i, nb, lq)
            if i >= nb:
                break
            k += 1
        counts[j - c0] = k


@njit(cache=True, nogil=True)
def bsi_group_counts(g0, g1, G, key, d, b, lq, counts):
    """counts[g] = nonzero blocks of columns [g·G, min((g+1)·G, d)), g in [g0, g1)."""
    nb = d // b
    base = _stream_base(key, STREAM_GAP)
    for g in range(g0, g1):
        c = 0
        for j in range(g * G, min(d, (g + 1) * G)):
            z = _splitmix(base ^ np.uint64(j))
            i, k = -1, 0
            while True:
                i, u = _next_block(z, k, i, nb, lq)
                if i >= nb:
                    break
                k += 1
            c += k
        counts[g] = c


@njit(cache=True, nogil=True)
def bs_fill(r0, r1, c0, key, d, b, lq, ptr, blk_row, blk_sign):
    """The stored D(b, q, d): blocks of columns j = c0 + r, r in [r0, r1), into ``ptr[r]:ptr[r+1]``
    of ``blk_row`` (int32, ascending within a column) and ``blk_sign`` (int8 ±1, scale 1/√(dq) apart).

    The same blocks as the implicit operator (:func:`_next_block` positions, :func:`_col_template`
    signs, Algorithm 2's layout), so both storages hold one matrix; ``ptr`` comes from
    :func:`bsi_col_counts`. O(q·d/b) random draws and O(q·d) writes per column.
    """
    t = b // 3
    nb = d // b
    nbits = _ceil_log2(d)
    base = _stream_base(key, STREAM_GAP)
    base_s = _stream_base(key, STREAM_SIGMA_S)
    fw = _flip_words(b, nbits)
    gw = _shared_words(key, b, nbits)
    tw = np.empty(fw.shape[1], dtype=np.uint64)
    for r in range(r0, r1):
        p = ptr[r]
        if p == ptr[r + 1]:
            continue
        j = c0 + r
        _col_template(base_s, j, t, nbits, gw, tw)
        z = _splitmix(base ^ np.uint64(j))
        i, k = -1, 0
        while True:
            i, u = _next_block(z, k, i, nb, lq)
            if i >= nb:
                break
            k += 1
            blk_row[p] = i
            code = np.int64(u & np.uint64(7))
            for w in range(tw.shape[0]):
                word = tw[w] ^ fw[code, w]
                for s in range(min(64, b - 64 * w)):   # bit 1 -> −1, bit 0 -> +1
                    blk_sign[p, 64 * w + s] = np.int8(1 - 2 * np.int64((word >> np.uint64(s)) & _U1))
            p += 1


@njit(cache=True, nogil=True)
def bsi_apply_direct(k0, k1, X, out, key, d, b, lq, scale):
    """out[k] = R @ X[k] for rows k in [k0, k1), R the implicit D(b, q, d), columns in ascending order.

    ``out`` rows zeroed on entry. Every out[k, r] is the sum, in ascending column order j, of
    (X[k, j]·scale)·(±1) over the nonzero X[k, j] whose column has a block at r: the binned kernels
    (bsi_gen, bsi_scatter, bsi_apply_tiles) add the same terms in the same order, so both are
    bit-identical.
    """
    L = X.shape[1]
    t = b // 3
    nb = d // b
    nbits = _ceil_log2(d)
    base = _stream_base(key, STREAM_GAP)
    base_s = _stream_base(key, STREAM_SIGMA_S)
    fw = _flip_words(b, nbits)
    gw = _shared_words(key, b, nbits)
    tw = np.empty(fw.shape[1], dtype=np.uint64)
    svu = np.empty(b, dtype=np.uint64)
    sv = svu.view(np.float64)
    for j in range(L):
        nz = False
        for k in range(k0, k1):
            if X[k, j] != 0.0:
                nz = True
                break
        if not nz:
            continue
        _col_template(base_s, j, t, nbits, gw, tw)
        z = _splitmix(base ^ np.uint64(j))
        i, kk = -1, 0
        while True:
            i, u = _next_block(z, kk, i, nb, lq)
            if i >= nb:
                break
            kk += 1
            _block_values(svu, tw, fw[np.int64(u & np.uint64(7))], b)
            r0 = np.uint64(i * b)
            for k in range(k0, k1):
                xj = X[k, j]
                if xj == 0.0:
                    continue
                v = xj * scale
                for s in range(b):
                    us = np.uint64(s)
                    out[k, r0 + us] += v * sv[us]


@njit(cache=True, nogil=True)
def _dot_block(sv, X, k, r0, b):
    """Σ_s sv[s]·X[k, r0 + s] in a fixed order: four interleaved partial sums (s mod 4, the last
    b mod 4 terms into the first), added as (p0 + p1) + (p2 + p3)."""
    p0 = 0.0
    p1 = 0.0
    p2 = 0.0
    p3 = 0.0
    n4 = np.uint64(b - b % 4)
    s = np.uint64(0)
    while s < n4:
        p0 += sv[s] * X[k, r0 + s]
        p1 += sv[s + _U1] * X[k, r0 + s + _U1]
        p2 += sv[s + np.uint64(2)] * X[k, r0 + s + np.uint64(2)]
        p3 += sv[s + np.uint64(3)] * X[k, r0 + s + np.uint64(3)]
        s += np.uint64(4)
    while s < np.uint64(b):
        p0 += sv[s] * X[k, r0 + s]
        s += _U1
    return (p0 + p1) + (p2 + p3)


@njit(cache=True, nogil=True)
def bsi_apply_t_direct(j0, j1, X, out, key, d, b, lq, scale):
    """out[:, j] = (Rᵀ X[k])_j for columns j in [j0, j1) (all rows), R the implicit D(b, q, d).

    ``out`` columns zeroed on entry; out[k, j] accumulates the blocks' dot products
    (:func:`_dot_block`) in ascending block order, then is multiplied by the scale; the binned
    kernel (bsi_apply_t_groups) performs the same operations.
    """
    m = X.shape[0]
    t = b // 3
    nb = d // b
    nbits = _ceil_log2(d)
    base = _stream_base(key, STREAM_GAP)
    base_s = _stream_base(key, STREAM_SIGMA_S)
    fw = _flip_words(b, nbits)
    gw = _shared_words(key, b, nbits)
    tw = np.empty(fw.shape[1], dtype=np.uint64)
    svu = np.empty(b, dtype=np.uint64)
    sv = svu.view(np.float64)
    for j in range(j0, j1):
        _col_template(base_s, j, t, nbits, gw, tw)
        z = _splitmix(base ^ np.uint64(j))
        i, kk = -1, 0
        while True:
            i, u = _next_block(z, kk, i, nb, lq)
            if i >= nb:
                break
            kk += 1
            _block_values(svu, tw, fw[np.int64(u & np.uint64(7))], b)
            r0 = np.uint64(i * b)
            for k in range(m):
                out[k, j] += _dot_block(sv, X, k, r0, b)
        for k in range(m):
            out[k, j] *= scale


@njit(cache=True, nogil=True)
def bsi_gen(g0, g1, gbase, G, c0, c1, key, d, b, lq, X, skip_zero, tshift, goff, buf, gfill, hist, rec, nwb):
    """Binned apply, step 1: the nonzero blocks of the chunk's columns, group by group.

    Group g (0-based in the chunk, global gbase + g) covers columns [max(c0, (gbase+g)·G), min(c1, …)).
    Its blocks are packed as i << 32 | (j − c0) << 3 | (u & 7) into buf[goff[g]:], in column then
    block order (gfill[g] of them); hist[g, i >> tshift] counts them per tile of 2^tshift block
    rows; rec[j − c0, :nwb] gets the sign template (:func:`_col_template`) of every column with a
    block. With ``skip_zero``, columns whose
    X[:, j] is all zero are skipped (they add nothing to R X).
    """
    m = X.shape[0]
    t = b // 3
    nb = d // b
    nbits = _ceil_log2(d)
    base = _stream_base(key, STREAM_GAP)
    base_s = _stream_base(key, STREAM_SIGMA_S)
    gw = _shared_words(key, b, nbits)
    for g in range(g0, g1):
        p = goff[g]
        for j in range(max(c0, (gbase + g) * G), min(c1, (gbase + g + 1) * G)):
            if skip_zero:
                nz = False
                for k in range(m):
                    if X[k, j] != 0.0:
                        nz = True
                        break
                if not nz:
                    continue
            z = _splitmix(base ^ np.uint64(j))
            jl = np.uint64(j - c0) << np.uint64(3)
            i, kk = -1, 0
            while True:
                i, u = _next_block(z, kk, i, nb, lq)
                if i >= nb:
                    break
                kk += 1
                buf[p] = (np.uint64(i) << np.uint64(32)) | jl | (u & np.uint64(7))
                hist[g, i >> tshift] += 1
                p += 1
            if kk:
                _col_template(base_s, j, t, nbits, gw, rec[j - c0, :nwb])
        gfill[g] = p - goff[g]


@njit(cache=True, nogil=True)
def bsi_scatter(g0, g1, ng, tshift, buf, goff, gfill, S, bins):
    """Binned apply, step 2: stable counting sort of the chunk's blocks by tile (block row >> tshift).

    S (flat, tile-major exclusive prefix sums of hist) gives where group g's blocks of tile τ start:
    S[τ·ng + g]. Within a tile, blocks stay in (group, column, block) order, i.e. ascending column.
    """
    NT = (S.shape[0] - 1) // ng
    cur = np.empty(NT, dtype=np.int64)
    sh = np.uint64(32 + tshift)
    for g in range(g0, g1):
        for tau in range(NT):
            cur[tau] = S[tau * ng + g]
        for p in range(goff[g], goff[g] + gfill[g]):
            e = buf[p]
            tau = np.int64(e >> sh)
            bins[cur[tau]] = e
            cur[tau] += 1


@njit(cache=True, nogil=True)
def bsi_gather_x(r0, r1, c0, k0, k1, X, recf, nwb):
    """Binned apply: recf[r, nwb + kk] = X[k0 + kk, c0 + r] for the chunk's columns r in [r0, r1), so
    that a block's column record (sign template, then the row chunk's x values) is contiguous."""
    for r in range(r0, r1):
        for kk in range(k1 - k0):
            recf[r, nwb + kk] = X[k0 + kk, c0 + r]


@njit(cache=True, nogil=True)
def bsi_apply_tiles(t0, t1, ng, k0, k1, out, c0, d, b, scale, S, bins, rec, recf, nwb):
    """Binned apply, step 3: out[k] += (chunk's columns of R) X[k] for rows k in [k0, k1) and the
    output tiles [t0, t1).

    A tile spans few enough block rows that these rows of it stay in cache while its blocks (bins,
    ascending column) are added. Each block reads its column's record rec[j − c0] (sign template
    and x values, :func:`bsi_gather_x`), prefetched PREFETCH blocks ahead. Same terms, same order as
    :func:`bsi_apply_direct`.
    """
    mr = k1 - k0
    W = rec.shape[1]
    fw = _flip_words(b, _ceil_log2(d))
    svu = np.empty(b, dtype=np.uint64)
    sv = svu.view(np.float64)
    for tau in range(t0, t1):
        hi = S[(tau + 1) * ng]
        for p in range(S[tau * ng], hi):
            if p + PREFETCH < hi:
                jf = np.int64((bins[p + PREFETCH] >> np.uint64(3)) & _ENTRY_COL_MASK)
                _prefetch(rec, jf * W, 0)
                _prefetch(rec, jf * W + W - 1, 0)
            e = bins[p]
            jl = np.int64((e >> np.uint64(3)) & _ENTRY_COL_MASK)
            nz = False
            for kk in range(mr):
                if recf[jl, nwb + kk] != 0.0:
                    nz = True
                    break
            if not nz:
                continue
            _block_values_at(svu, rec, jl, fw, np.int64(e & np.uint64(7)), nwb, b)
            r0 = (e >> np.uint64(32)) * np.uint64(b)
            for kk in range(mr):
                xj = recf[jl, nwb + kk]
                if xj == 0.0:
                    continue
                v = xj * scale
                k = k0 + kk
                for s in range(b):
                    us = np.uint64(s)
                    out[k, r0 + us] += v * sv[us]


@njit(cache=True, nogil=True)
def bsi_apply_t_groups(g0, g1, ng, gbase, G, c0, c1, k0, k1, X, out, d, b, scale, S, bins, rec, recf, nwb):
    """Binned apply_t for rows [k0, k1): out[k, j] for the columns j of groups [g0, g1) of the chunk.

    Each column accumulates its blocks' dot products (:func:`_dot_block`) in recf[j − c0, nwb + kk],
    from 0 and in ascending block order (tiles ascending, a column's blocks ascending within a tile),
    and out[k, j] = that sum × scale: the same operations as :func:`bsi_apply_t_direct`. The column
    record of the block PREFETCH places ahead is prefetched.
    """
    mr = k1 - k0
    W = rec.shape[1]
    fw = _flip_words(b, _ceil_log2(d))
    svu = np.empty(b, dtype=np.uint64)
    sv = svu.view(np.float64)
    ja, jb = max(c0, (gbase + g0) * G), min(c1, (gbase + g1) * G)
    for j in range(ja, jb):
        for kk in range(mr):
            recf[j - c0, nwb + kk] = 0.0
    NT = (S.shape[0] - 1) // ng
    for tau in range(NT):
        hi = S[tau * ng + g1]
        for p in range(S[tau * ng + g0], hi):
            if p + PREFETCH < hi:
                jf = np.int64((bins[p + PREFETCH] >> np.uint64(3)) & _ENTRY_COL_MASK)
                _prefetch(rec, jf * W, 1)
                _prefetch(rec, jf * W + W - 1, 1)
            e = bins[p]
            jl = np.int64((e >> np.uint64(3)) & _ENTRY_COL_MASK)
            _block_values_at(svu, rec, jl, fw, np.int64(e & np.uint64(7)), nwb, b)
            r0 = (e >> np.uint64(32)) * np.uint64(b)
            for kk in range(mr):
                recf[jl, nwb + kk] += _dot_block(sv, X, k0 + kk, r0, b)
    for j in range(ja, jb):
        for kk in range(mr):
            out[k0 + kk, j] = recf[j - c0, nwb + kk] * scale
