"""Fast Walsh–Hadamard transform kernels (Numba). Private: they assume valid input.

H is the d × d Sylvester–Hadamard matrix of the randomized Hadamard operator
R = H D₁ H D₂ H D₃ P / d^{3/2} (THEORY.md §2.4); ``_fwht_ss(x, s, scale)`` computes
x ← scale · H (s ⊙ x) in place and ``reference.fwht`` is the literal NumPy twin of H x.

Arithmetic. Every kernel performs the radix-2 butterflies (u, v) → (u + v, u − v) of the
stage-by-stage transform, stage of stride 1 first, on the same operands: the result is bit-identical
to the textbook loop ``for h = 1, 2, 4, …: x[j], x[j+h] = x[j] + x[j+h], x[j] − x[j+h]``. Grouping
stages (radix 4/8 in registers) and regrouping the entries of a stage into vectors change neither.
The ±1 signs are applied as the entries are first loaded (x·(±1) is exact) and the scale as the
last stage is stored (one multiplication after the last addition, as a separate pass would do).

Performance structure (issue 11; measured against the pip package ``fht-cpu`` in
``experiments/perf_fwht.py``):

* 4-wide SIMD values. LLVM's loop vectoriser does not turn the butterfly loops into
  register-blocked 256-bit code (it scalarises the stride-1/2 stages and keeps radix-2/4 passes
  memory-bound), so the kernels use a tiny Numba type ``_V4`` whose LLVM type is ``<4 x double>``,
  with intrinsics for load / store / add / sub / mul, the two stages inside a vector (a shuffle and
  t + v·(±1), fused where the CPU has FMA), a two-halves load / store and a prefetch hint. Generic
  LLVM vector IR: any target (AVX2 here; SSE2 or NEON elsewhere, as two halves) and no fast-math.
* A 2048-entry chunk (16 KiB, in L1) takes three passes: ``_blk32`` (strides 1–16: the two in-vector
  stages on 8 vectors, then a radix-8 across them) and two radix-8 passes (strides 32–128, 256–1024),
  prefetching the next chunk meanwhile.
* The stages of stride ≥ 2048 run depth-first, as FFHT does: as soon as a block of 2048·r^l entries
  is complete, one radix-r pass (r = 8; the remainder radix 2 or 4 at the lowest level) combines its
  sub-blocks, 8 streams at a time (8 = the L1 associativity: a radix-16 pass over power-of-two
  strides thrashes the set). Blocks up to L2 / L3 size are combined while they are still cached.
* Alignment. numpy places large arrays 16 bytes past a page boundary, so half of the 32-byte
  vectors at 4-entry boundaries straddle a cache line. The radix passes (all stages but the two
  in-vector ones) may use any 4 consecutive entries as a vector, so when x is 16 mod 32 bytes they
  shift their vector grid by 2 entries (32-byte aligned) and do the 4 entries left over in each
  stream (0, 1 and m−2, m−1) as one vector of two 16-byte halves.
"""
from __future__ import annotations

import numpy as np
from llvmlite import binding as llvm_binding
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils, config
from numba.core.extending import intrinsic, models, register_model
from numba.np.arrayobj import make_array

_CHUNK = 2048          # entries of a chunk: all its stages run in L1 (16 KiB)
_NO_SIGNS = np.ones(0, dtype=np.int8)

# ----------------------------------------------------------------------------- 4 x float64 values
_LV = ir.VectorType(ir.DoubleType(), 4)
_LV2 = ir.VectorType(ir.DoubleType(), 2)
_I32 = ir.IntType(32)


class _V4Type(types.Type):
    """Four float64 held in one SIMD register (LLVM ``<4 x double>``); only kernels of this module
    create them, through the intrinsics below."""

    def __init__(self):
        super().__init__(name="sketchsim_fwht_v4")


_V4 = _V4Type()


@register_model(_V4Type)
class _V4Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _LV)


def _is_c_f8(a):
    return isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C" and a.dtype == types.float64


def _elem_ptr(context, builder, arrty, arr, i):
    return builder.gep(make_array(arrty)(context, builder, arr).data, [i])


def _mask(*idx):
    return ir.Constant(ir.VectorType(_I32, len(idx)), list(idx))


def _const4(*vals):
    return ir.Constant(_LV, [ir.Constant(ir.DoubleType(), v) for v in vals])


@intrinsic
def _vload(typingctx, x, i):
    """x[i:i+4] (no bounds check; x a C-contiguous float64 vector)."""
    if not (_is_c_f8(x) and isinstance(i, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        p = _elem_ptr(context, builder, sig.args[0], args[0], args[1])
        return builder.load(builder.bitcast(p, _LV.as_pointer()), align=8)
    return _V4(x, i), codegen


@intrinsic
def _vstore(typingctx, x, i, v):
    """x[i:i+4] = v."""
    if not (_is_c_f8(x) and isinstance(i, types.Integer) and v == _V4):
        return None

    def codegen(context, builder, sig, args):
        p = _elem_ptr(context, builder, sig.args[0], args[0], args[1])
        builder.store(args[2], builder.bitcast(p, _LV.as_pointer()), align=8)
        return context.get_dummy_value()
    return types.none(x, i, v), codegen


@intrinsic
def _vload_signed(typingctx, x, sp, i):
    """x[i:i+4] · s[i:i+4] for int8 signs ±1 (exact), s given by the address ``sp`` of its data.

    An address rather than the array: the kernels are then compiled once, whether the caller's
    signs are a writeable array or a read-only global (two Numba types)."""
    if not (_is_c_f8(x) and isinstance(sp, types.Integer) and isinstance(i, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        p = _elem_ptr(context, builder, sig.args[0], args[0], args[2])
        v = builder.load(builder.bitcast(p, _LV.as_pointer()), align=8)
        i64 = ir.IntType(64)
        a = builder.add(builder.zext(args[1], i64) if args[1].type.width < 64 else args[1],
                        builder.sext(args[2], i64) if args[2].type.width < 64 else args[2])
        q = builder.inttoptr(a, ir.VectorType(ir.IntType(8), 4).as_pointer())
        si = builder.load(q, align=1)
        return builder.fmul(v, builder.sitofp(si, _LV))
    return _V4(x, sp, i), codegen


@intrinsic
def _vload_pair(typingctx, x, i, k):
    """[x[i], x[i+1], x[k], x[k+1]] as two 16-byte loads."""
    if not (_is_c_f8(x) and isinstance(i, types.Integer) and isinstance(k, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        p = _elem_ptr(context, builder, sig.args[0], args[0], args[1])
        q = _elem_ptr(context, builder, sig.args[0], args[0], args[2])
        lo = builder.load(builder.bitcast(p, _LV2.as_pointer()), align=8)
        hi = builder.load(builder.bitcast(q, _LV2.as_pointer()), align=8)
        return builder.shuffle_vector(lo, hi, _mask(0, 1, 2, 3))
    return _V4(x, i, k), codegen


@intrinsic
def _vstore_pair(typingctx, x, i, k, v):
    """x[i], x[i+1] = v[0], v[1] and x[k], x[k+1] = v[2], v[3] (two 16-byte stores)."""
    if not (_is_c_f8(x) and isinstance(i, types.Integer) and isinstance(k, types.Integer) and v == _V4):
        return None

    def codegen(context, builder, sig, args):
        p = _elem_ptr(context, builder, sig.args[0], args[0], args[1])
        q = _elem_ptr(context, builder, sig.args[0], args[0], args[2])
        v = args[3]
        builder.store(builder.shuffle_vector(v, v, _mask(0, 1)), builder.bitcast(p, _LV2.as_pointer()), align=8)
        builder.store(builder.shuffle_vector(v, v, _mask(2, 3)), builder.bitcast(q, _LV2.as_pointer()), align=8)
        return context.get_dummy_value()
    return types.none(x, i, k, v), codegen


@intrinsic
def _vprefetch(typingctx, x, i):
    """Hint: fetch the cache line of x[i] (a hint only: it never faults, any i is harmless)."""
    if not (_is_c_f8(x) and isinstance(i, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        p = _elem_ptr(context, builder, sig.args[0], args[0], args[1])
        i8p = ir.IntType(8).as_pointer()
        fnty = ir.FunctionType(ir.VoidType(), [i8p, _I32, _I32, _I32])
        fn = builder.module.declare_intrinsic("llvm.prefetch", [i8p], fnty)
        # read, high temporal locality, data cache
        builder.call(fn, [builder.bitcast(p, i8p), ir.Constant(_I32, 0), ir.Constant(_I32, 3),
                          ir.Constant(_I32, 1)])
        return context.get_dummy_value()
    return types.none(x, i), codegen


def _binop_typer(name, a, b):
    if not (a == _V4 and b == _V4):
        return None

    def codegen(context, builder, sig, args):
        return getattr(builder, name)(args[0], args[1])
    return _V4(a, b), codegen


@intrinsic
def _vadd(typingctx, a, b):
    """a + b, lane by lane."""
    return _binop_typer("fadd", a, b)


@intrinsic
def _vsub(typingctx, a, b):
    """a − b, lane by lane."""
    return _binop_typer("fsub", a, b)


@intrinsic
def _vmul(typingctx, a, b):
    """a · b, lane by lane."""
    return _binop_typer("fmul", a, b)


@intrinsic
def _vsplat(typingctx, c):
    """[c, c, c, c]."""
    if not isinstance(c, types.Float):
        return None

    def codegen(context, builder, sig, args):
        c = context.cast(builder, args[0], sig.args[0], types.float64)
        v = cgutils.get_null_value(_LV)
        for k in range(4):
            v = builder.insert_element(v, c, ir.Constant(_I32, k))
        return v
    return _V4(c), codegen


def _target_has_fma():
    """Whether Numba compiles for a CPU with FMA (the host, unless NUMBA_CPU_NAME says otherwise)."""
    if config.CPU_FEATURES is not None:
        return "+fma" in config.CPU_FEATURES.split(",")
    if config.CPU_NAME not in (None, "host"):
        return False
    try:
        return "+fma" in llvm_binding.get_host_cpu_features().flatten().split(",")
    except RuntimeError:
        return False


_FMA = _target_has_fma()


def _t_plus_v_times(builder, t, v, signs):
    """t + v·signs for signs ±1: one fused multiply-add where the CPU has FMA (it runs on the
    multiply pipes, leaving the add pipes to the butterflies), else a multiply and an add. v·(±1)
    is exact, so both round once to the same t ± v."""
    if _FMA:
        fnty = ir.FunctionType(_LV, [_LV, _LV, _LV])
        fma = cgutils.get_or_insert_function(builder.module, fnty, "llvm.fma.v4f64")
        return builder.call(fma, [v, signs, t])
    return builder.fadd(t, builder.fmul(v, signs))


@intrinsic
def _vlow2(typingctx, a):
    """The stages of stride 1 and 2 inside one vector [x0, x1, x2, x3]:
    t = [x1, x0, x3, x2], y = t + v·[1, −1, 1, −1] = [x0 + x1, x0 − x1, x2 + x3, x2 − x3], then
    t = [y2, y3, y0, y1], z = t + y·[1, 1, −1, −1] = [y0 + y2, y1 + y3, y0 − y2, y1 − y3].
    The products are exact and t + (−v) = t − v, so these are the radix-2 butterflies."""
    if a != _V4:
        return None

    def codegen(context, builder, sig, args):
        v = args[0]
        t = builder.shuffle_vector(v, v, _mask(1, 0, 3, 2))
        v = _t_plus_v_times(builder, t, v, _const4(1.0, -1.0, 1.0, -1.0))
        t = builder.shuffle_vector(v, v, _mask(2, 3, 0, 1))
        return _t_plus_v_times(builder, t, v, _const4(1.0, 1.0, -1.0, -1.0))
    return _V4(a), codegen


# ----------------------------------------------------------------------------- butterflies
@njit(cache=True, nogil=True)
def _bf8(u0, u1, u2, u3, u4, u5, u6, u7):
    """Radix-8 butterfly of 8 vectors (rows 0…7): the stages of row distance 1, 2, 4 in turn; the
    outputs in row order."""
    a0 = _vadd(u0, u1)
    a1 = _vsub(u0, u1)
    a2 = _vadd(u2, u3)
    a3 = _vsub(u2, u3)
    a4 = _vadd(u4, u5)
    a5 = _vsub(u4, u5)
    a6 = _vadd(u6, u7)
    a7 = _vsub(u6, u7)
    b0 = _vadd(a0, a2)
    b2 = _vsub(a0, a2)
    b1 = _vadd(a1, a3)
    b3 = _vsub(a1, a3)
    b4 = _vadd(a4, a6)
    b6 = _vsub(a4, a6)
    b5 = _vadd(a5, a7)
    b7 = _vsub(a5, a7)
    return (_vadd(b0, b4), _vadd(b1, b5), _vadd(b2, b6), _vadd(b3, b7),
            _vsub(b0, b4), _vsub(b1, b5), _vsub(b2, b6), _vsub(b3, b7))


@njit(cache=True, nogil=True)
def _bf4(u0, u1, u2, u3):
    """Radix-4 butterfly of 4 vectors (rows 0…3), outputs in row order."""
    a0 = _vadd(u0, u1)
    a1 = _vsub(u0, u1)
    a2 = _vadd(u2, u3)
    a3 = _vsub(u2, u3)
    return _vadd(a0, a2), _vadd(a1, a3), _vsub(a0, a2), _vsub(a1, a3)


# ----------------------------------------------------------------------------- passes
@njit(cache=True, nogil=True)
def _blk32(x, sp, i0, i1, signed, pf, f):
    """The stages of stride 1…16 on each 32-entry block of x[i0:i1] (the int8 signs at address
    ``sp`` first when ``signed``), outputs · f: per block 8 vectors, the two in-vector stages on each, then a radix-8
    across them. ``pf`` ≥ 0: prefetch x[pf + (i − i0)] as block i is done (the next chunk)."""
    for i in range(i0, i1, 32):
        if pf >= 0:
            q = pf + (i - i0)
            _vprefetch(x, q)
            _vprefetch(x, q + 8)
            _vprefetch(x, q + 16)
            _vprefetch(x, q + 24)
        if signed:
            u0 = _vload_signed(x, sp, i)
            u1 = _vload_signed(x, sp, i + 4)
            u2 = _vload_signed(x, sp, i + 8)
            u3 = _vload_signed(x, sp, i + 12)
            u4 = _vload_signed(x, sp, i + 16)
            u5 = _vload_signed(x, sp, i + 20)
            u6 = _vload_signed(x, sp, i + 24)
            u7 = _vload_signed(x, sp, i + 28)
        else:
            u0 = _vload(x, i)
            u1 = _vload(x, i + 4)
            u2 = _vload(x, i + 8)
            u3 = _vload(x, i + 12)
            u4 = _vload(x, i + 16)
            u5 = _vload(x, i + 20)
            u6 = _vload(x, i + 24)
            u7 = _vload(x, i + 28)
        y = _bf8(_vlow2(u0), _vlow2(u1), _vlow2(u2), _vlow2(u3),
                 _vlow2(u4), _vlow2(u5), _vlow2(u6), _vlow2(u7))
        _vstore(x, i, _vmul(y[0], f))
        _vstore(x, i + 4, _vmul(y[1], f))
        _vstore(x, i + 8, _vmul(y[2], f))
        _vstore(x, i + 12, _vmul(y[3], f))
        _vstore(x, i + 16, _vmul(y[4], f))
        _vstore(x, i + 20, _vmul(y[5], f))
        _vstore(x, i + 24, _vmul(y[6], f))
        _vstore(x, i + 28, _vmul(y[7], f))


@njit(cache=True, nogil=True)
def _r8(x, s0, m, o, f):
    """In place, the stages of stride m, 2m, 4m on x[s0:s0+8m] (8 streams x[s0 + k·m + j]), outputs · f.
    o = 0: vectors at j = 0, 4, …; o = 2: at j = 2, 6, …, m − 6 plus one vector of the pairs
    (j = 0, 1 | m − 2, m − 1) (32-byte-aligned accesses when x is 16 mod 32 bytes)."""
    j0 = 0 if o == 0 else 2
    j1 = m if o == 0 else m - 2
    for j in range(j0, j1, 4):
        i = s0 + j
        y = _bf8(_vload(x, i), _vload(x, i + m), _vload(x, i + 2 * m), _vload(x, i + 3 * m),
                 _vload(x, i + 4 * m), _vload(x, i + 5 * m), _vload(x, i + 6 * m), _vload(x, i + 7 * m))
        _vstore(x, i, _vmul(y[0], f))
        _vstore(x, i + m, _vmul(y[1], f))
        _vstore(x, i + 2 * m, _vmul(y[2], f))
        _vstore(x, i + 3 * m, _vmul(y[3], f))
        _vstore(x, i + 4 * m, _vmul(y[4], f))
        _vstore(x, i + 5 * m, _vmul(y[5], f))
        _vstore(x, i + 6 * m, _vmul(y[6], f))
        _vstore(x, i + 7 * m, _vmul(y[7], f))
    if o != 0:
        i = s0
        t = s0 + m - 2
        y = _bf8(_vload_pair(x, i, t), _vload_pair(x, i + m, t + m),
                 _vload_pair(x, i + 2 * m, t + 2 * m), _vload_pair(x, i + 3 * m, t + 3 * m),
                 _vload_pair(x, i + 4 * m, t + 4 * m), _vload_pair(x, i + 5 * m, t + 5 * m),
                 _vload_pair(x, i + 6 * m, t + 6 * m), _vload_pair(x, i + 7 * m, t + 7 * m))
        _vstore_pair(x, i, t, _vmul(y[0], f))
        _vstore_pair(x, i + m, t + m, _vmul(y[1], f))
        _vstore_pair(x, i + 2 * m, t + 2 * m, _vmul(y[2], f))
        _vstore_pair(x, i + 3 * m, t + 3 * m, _vmul(y[3], f))
        _vstore_pair(x, i + 4 * m, t + 4 * m, _vmul(y[4], f))
        _vstore_pair(x, i + 5 * m, t + 5 * m, _vmul(y[5], f))
        _vstore_pair(x, i + 6 * m, t + 6 * m, _vmul(y[6], f))
        _vstore_pair(x, i + 7 * m, t + 7 * m, _vmul(y[7], f))


@njit(cache=True, nogil=True)
def _r4(x, s0, m, o, f):
    """As ``_r8`` with 4 streams: the stages of stride m, 2m on x[s0:s0+4m]."""
    j0 = 0 if o == 0 else 2
    j1 = m if o == 0 else m - 2
    for j in range(j0, j1, 4):
        i = s0 + j
        y = _bf4(_vload(x, i), _vload(x, i + m), _vload(x, i + 2 * m), _vload(x, i + 3 * m))
        _vstore(x, i, _vmul(y[0], f))
        _vstore(x, i + m, _vmul(y[1], f))
        _vstore(x, i + 2 * m, _vmul(y[2], f))
        _vstore(x, i + 3 * m, _vmul(y[3], f))
    if o != 0:
        i = s0
        t = s0 + m - 2
        y = _bf4(_vload_pair(x, i, t), _vload_pair(x, i + m, t + m),
                 _vload_pair(x, i + 2 * m, t + 2 * m), _vload_pair(x, i + 3 * m, t + 3 * m))
        _vstore_pair(x, i, t, _vmul(y[0], f))
        _vstore_pair(x, i + m, t + m, _vmul(y[1], f))
        _vstore_pair(x, i + 2 * m, t + 2 * m, _vmul(y[2], f))
        _vstore_pair(x, i + 3 * m, t + 3 * m, _vmul(y[3], f))


@njit(cache=True, nogil=True)
def _r2(x, s0, m, o, f):
    """As ``_r8`` with 2 streams: the stage of stride m on x[s0:s0+2m]."""
    j0 = 0 if o == 0 else 2
    j1 = m if o == 0 else m - 2
    for j in range(j0, j1, 4):
        i = s0 + j
        u = _vload(x, i)
        v = _vload(x, i + m)
        _vstore(x, i, _vmul(_vadd(u, v), f))
        _vstore(x, i + m, _vmul(_vsub(u, v), f))
    if o != 0:
        t = s0 + m - 2
        u = _vload_pair(x, s0, t)
        v = _vload_pair(x, s0 + m, t + m)
        _vstore_pair(x, s0, t, _vmul(_vadd(u, v), f))
        _vstore_pair(x, s0 + m, t + m, _vmul(_vsub(u, v), f))


@njit(cache=True, nogil=True)
def _radix_pass(x, s0, m, o, f, r):
    """One radix-r pass (r = 8, 4 or 2) over x[s0 : s0 + r·m]."""
    if r == 8:
        _r8(x, s0, m, o, f)
    elif r == 4:
        _r4(x, s0, m, o, f)
    else:
        _r2(x, s0, m, o, f)


@njit(cache=True, nogil=True)
def _log2(n):
    k = 0
    while n > 1:
        n //= 2
        k += 1
    return k


@njit(cache=True, nogil=True)
def _chunk(x, sp, i0, n, signed, pf, o, f):
    """All stages of stride < n on x[i0:i0+n] (32 ≤ n ≤ 2048, a power of two), outputs · f:
    ``_blk32``, then radix-8 passes (a radix-4 / radix-2 last, or two radix-4 for 4 stages)."""
    one = _vsplat(1.0)
    k = _log2(n // 32)
    _blk32(x, sp, i0, i0 + n, signed, pf, f if k == 0 else one)
    m = 32
    while k > 0:
        r = 8 if (k >= 3 and k != 4) else (4 if k >= 2 else 2)
        g = f if m * r == n else one
        for b in range(i0, i0 + n, r * m):
            _radix_pass(x, b, m, o, g, r)
        m *= r
        k -= _log2(r)


# ----------------------------------------------------------------------------- the transform
@njit(cache=True, nogil=True)
def _fwht(x):
    """In-place unnormalised fast Walsh–Hadamard transform (Sylvester order) of a length-2^k vector."""
    _fwht_ss(x, _NO_SIGNS, 1.0)


@njit(cache=True, nogil=True)
def _fwht_ss(x, s, scale):
    """x ← scale · H (s ⊙ x), in place: a fast Walsh–Hadamard transform (Sylvester order, d = 2^k)
    with a ±1 diagonal (int8 ``s``; empty for none) folded into its first pass and a scale into its
    last (THEORY.md §2.4: H, D_i and the 1/d^{3/2} of the randomized Hadamard operator).

    Parameters
    ----------
    x : float64[::1], length d = 2^k
        Transformed in place.
    s : int8[::1]
        The ±1 signs (length d), or empty: none.
    scale : float
        Multiplies the result (1.0: none).

    Notes
    -----
    Bit-identical to ``scale · H (s ⊙ x)`` computed stage by stage with radix-2 butterflies, stride 1
    first (module docstring). d < 32: scalar loops; d ≤ 2048: one chunk; larger: chunks of 2048 and
    depth-first radix-8 passes for the stages of stride ≥ 2048.
    """
    d = x.shape[0]
    signed = s.shape[0] == d
    if d < 32:
        if signed:
            for t in range(d):
                x[t] = x[t] * s[t]
        h = 1
        while h < d:
            for i in range(0, d, 2 * h):
                for j in range(i, i + h):
                    u = x[j]
                    v = x[j + h]
                    x[j] = u + v
                    x[j + h] = u - v
            h *= 2
        if scale != 1.0:
            for t in range(d):
                x[t] = x[t] * scale
        return
    o = 2 if (x.ctypes.data // 8) % 4 == 2 else 0       # x 16 mod 32 bytes: shifted vector grid
    sp = s.ctypes.data if signed else np.uintp(0)      # (both uintp: no int/uint unification)
    f = _vsplat(scale)
    if d <= _CHUNK:
        _chunk(x, sp, 0, d, signed, -1, o, f)
        return
    one = _vsplat(1.0)
    C = _CHUNK
    R = d // C
    K = _log2(R)
    low = K % 3                              # radix 2^low at the lowest level, radix 8 above
    for b in range(R):
        _chunk(x, sp, b * C, C, signed, (b + 1) * C if b + 1 < R else -1, o, one)
        end = (b + 1) * C
        n = C
        k = K
        while k > 0:
            r = 1 << low if (n == C and low != 0) else 8
            if end % (n * r) != 0:
                break                        # the block of n·r entries ending here is not complete
            _radix_pass(x, end - n * r, n, o, f if n * r == d else one, r)
            n *= r
            k -= _log2(r)


@njit(cache=True, nogil=True)
def fwht_rows(r0_, r1_, X):
    """In-place FWHT of rows [r0_, r1_) of X (m, d)."""
    for k in range(r0_, r1_):
        _fwht(X[k])
