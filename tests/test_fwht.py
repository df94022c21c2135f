"""The FWHT and randomized-Hadamard kernels against their literal NumPy twins (reference.py)."""
import numba
import numpy as np
import pytest

import sketchsim as ss
from sketchsim import _fwht as K
from sketchsim import reference as ref


@pytest.mark.parametrize("k", range(1, 13))
def test_fwht_matches_sylvester_matrix(k):
    d = 2 ** k
    X = np.random.default_rng(k).standard_normal((2, d))
    Y = X.copy()
    K.fwht_rows(0, 2, Y)
    np.testing.assert_allclose(Y, np.stack([ref.fwht(x) for x in X]), rtol=1e-12, atol=1e-12 * np.sqrt(d))


@pytest.mark.parametrize("d", [2 ** 13, 2 ** 14])
def test_cache_blocked_fwht_matches_the_stagewise_transform(d):
    # d > 4096 takes the chunk + strip path; compare against an independent radix-2 stage loop
    x = np.random.default_rng(d).standard_normal(d)
    y = x.copy()
    K._fwht(y)
    z = x.copy()
    h = 1
    while h < d:
        z = z.reshape(-1, 2, h)
        z = np.stack([z[:, 0] + z[:, 1], z[:, 0] - z[:, 1]], axis=1).reshape(-1)
        h *= 2
    np.testing.assert_array_equal(y, z)          # same butterflies in the same stage order


def _stagewise(x, s, scale):
    """scale · H (s ⊙ x) by the textbook radix-2 stage loop (stride 1 first), in NumPy."""
    z = x * s
    h = 1
    while h < len(z):
        z = z.reshape(-1, 2, h)
        z = np.stack([z[:, 0] + z[:, 1], z[:, 0] - z[:, 1]], axis=1).reshape(-1)
        h *= 2
    return z * scale


def _placed(a, offset):
    """A copy of a whose data start ``offset`` bytes past a 64-byte boundary."""
    raw = np.empty(len(a) + 8)
    skip = ((offset - raw.ctypes.data) % 64) // 8
    y = raw[skip:skip + len(a)]
    assert y.ctypes.data % 64 == offset
    y[:] = a
    return y


# 2^0 … 2^17 cover every code path: the scalar loop (d < 32), one chunk (32 ≤ d ≤ 2048, 0 to 6
# radix stages after the first pass) and chunks + depth-first levels (radix 2, 4 or 8 at the lowest).
# The offsets 0/32 use the natural vector grid, 16/48 the shifted one, 8/24 (only 8-byte aligned)
# the natural grid with unaligned accesses.
@pytest.mark.parametrize("k", range(18))
@pytest.mark.parametrize("offset", [0, 8, 16, 24, 32, 48])
def test_fwht_is_bit_identical_to_the_radix2_stage_loop(k, offset):
    d = 2 ** k
    rng = np.random.default_rng(100 + k)
    a = rng.standard_normal(d)
    s = (rng.integers(0, 2, d) * 2 - 1).astype(np.int8)
    y = _placed(a, offset)
    K._fwht_ss(y, s, 0.37)
    np.testing.assert_array_equal(y, _stagewise(a, s, 0.37))
    y = _placed(a, offset)
    K._fwht(y)
    np.testing.assert_array_equal(y, _stagewise(a, 1.0, 1.0))


@pytest.mark.parametrize("offset", [0, 16])
def test_fwht_signed_zeros_and_infinities_follow_the_stage_loop(offset):
    d = 2 ** 13
    rng = np.random.default_rng(5)
    zeros = np.where(rng.random(d) < 0.5, -0.0, 0.0)          # every sum / difference is ±0
    s = (rng.integers(0, 2, d) * 2 - 1).astype(np.int8)
    y = _placed(zeros, offset)
    K._fwht_ss(y, s, 0.5)
    z = _stagewise(zeros, s, 0.5)
    np.testing.assert_array_equal(np.signbit(y), np.signbit(z))
    a = rng.standard_normal(d)
    a[[5, 77, 4000]] = [np.inf, -np.inf, np.inf]              # inf − inf: NaN in some outputs
    y = _placed(a, offset)
    K._fwht(y)
    with np.errstate(invalid="ignore"):
        z = _stagewise(a, 1.0, 1.0)
    assert np.isnan(z).any() and np.isinf(z).any()
    np.testing.assert_array_equal(y, z)                       # same infinities, NaN where z has NaN


def test_fwht_rows_of_a_matrix_match_the_stage_loop():
    X = np.random.default_rng(3).standard_normal((3, 2 ** 15))
    Y = X.copy()
    K.fwht_rows(0, 3, Y)
    for x, y in zip(X, Y):
        np.testing.assert_array_equal(y, _stagewise(x, 1.0, 1.0))


@pytest.mark.parametrize("d", [2, 8, 64, 512])
def test_signed_scaled_fwht(d):
    rng = np.random.default_rng(d)
    x = rng.standard_normal(d)
    s = (rng.integers(0, 2, d) * 2 - 1).astype(np.int8)
    y = x.copy()
    K._fwht_ss(y, s, 0.37)
    np.testing.assert_allclose(y, 0.37 * ref.fwht(s * x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("d", [1, 2, 16, 256, 1024])
def test_hadamard_apply_and_transpose_match_the_literal_matrix(d):
    op = ss.MatrixBank(d, "hadamard", 7).get("tuple/1")
    assert op.perm.dtype == np.int32 and op.signs.dtype == np.int8
    R = ref.hadamard_dense(op.perm, op.signs)     # H D1 H D2 H D3 P / d^{3/2}, literally
    X = np.random.default_rng(d).standard_normal((3, d))
    np.testing.assert_allclose(op.apply(X), X @ R.T, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(op.apply_t(X), X @ R, rtol=1e-12, atol=1e-13)
    L = max(1, d // 3)                            # short rows: zero padding
    np.testing.assert_allclose(op.apply(X[:, :L]), X[:, :L] @ R[:, :L].T, rtol=1e-12, atol=1e-13)


def test_hadamard_results_do_not_depend_on_thread_count():
    d = 2 ** 13
    op = ss.MatrixBank(d, "hadamard", 2).get("module/a/0")
    X = np.random.default_rng(0).standard_normal((12, d))
    n0 = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        a, at = op.apply(X), op.apply_t(X)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        b, bt = op.apply(X), op.apply_t(X)
    finally:
        numba.set_num_threads(n0)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(at, bt)


# ----------------------------------------------------------------------------- blocked gather (P x)
from sketchsim import _hadamard_kernels as HK  # noqa: E402


@pytest.mark.parametrize("d,block", [(16, 4), (256, 16), (2 ** 12, 256), (2 ** 16, HK.GATHER_BLOCK_MIN),
                                     (2 ** 18, HK.gather_block(2 ** 18))])
def test_gather_plan_and_blocked_gather_match_their_twins(d, block):
    rng = np.random.default_rng(d)
    perm = rng.permutation(d).astype(np.int32)
    s = (rng.integers(0, 2, d) * 2 - 1).astype(np.int8)
    pos, q = np.empty(d, np.int32), np.empty(d, np.uint16)
    HK.gather_plan(perm, block, pos, q)
    rpos, rq = ref.hadamard_gather_plan(perm, block)
    np.testing.assert_array_equal(pos, rpos)
    np.testing.assert_array_equal(q, rq)
    x = rng.standard_normal(d)
    y = np.full(d, np.nan)
    HK._gather_blocked(x, y, pos, q, s, np.empty(block))
    np.testing.assert_array_equal(y, ref.hadamard_gather_blocked(x, rpos, rq, s, block))
    np.testing.assert_array_equal(y, x[perm] * s)           # the same values as the direct gather


@pytest.mark.parametrize("d", [2 ** 16, 2 ** 17])
def test_blocked_gather_operator_is_bit_identical_to_the_direct_gather(d):
    op = ss.MatrixBank(d, "hadamard", 4).get("module/m/1")
    pos, q = op._gather_plan()
    assert len(pos) == d and op.nbytes == 13 * d               # perm, signs and the plan
    X = np.random.default_rng(1).standard_normal((3, d))
    blocked = op.apply(X)
    direct = np.empty_like(blocked)
    HK.hadamard_apply(0, 3, X, HK.NO_ROWS, direct, op.perm, HK.NO_POS, HK.NO_Q, op.signs[0], op.signs[1],
                      op.signs[2], op.scale, False, 0.0)
    np.testing.assert_array_equal(blocked, direct)
    # and R is still orthonormal: ‖R x‖ = ‖x‖, Rᵀ R x = x
    np.testing.assert_allclose(np.linalg.norm(blocked, axis=1), np.linalg.norm(X, axis=1), rtol=1e-12)
    np.testing.assert_allclose(op.apply_t(blocked), X, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("family,d", [("hadamard", 64), ("hadamard", 2 ** 16), ("haar", 32), ("gaussian", 32),
                                      ("block-sparse", 96)])
def test_apply_rows_matches_apply_then_plus_identity(family, d):
    kw = {"block_size": 48, "block_prob": 0.5} if family == "block-sparse" else {}
    op = ss.MatrixBank(d, family, 3, **kw).get("tuple/2")
    X = np.random.default_rng(d).standard_normal((5, d))
    rows = np.array([4, 0, 2], dtype=np.int64)
    out = np.full((3, d), np.nan)
    op._apply_rows(X, rows, out)
    np.testing.assert_array_equal(out, op.apply(X[rows]))
    op._apply_rows(X, rows, out, 0.25)
    Y = op.apply(X[rows])                                   # the engine's former three steps
    Y += X[rows]
    Y *= 0.25
    np.testing.assert_array_equal(out, Y)                   # same roundings
    if d <= 64:
        np.testing.assert_allclose(out, ref.apply_plus_identity(op.dense(), X[rows], 0.25), rtol=1e-12,
                                   atol=1e-14)
    every = op._apply_rows(X, None, np.empty((5, d)), 0.5)     # rows=None: every row
    np.testing.assert_array_equal(every, op._apply_rows(X, np.arange(5), np.empty((5, d)), 0.5))


def test_blocked_gather_does_not_depend_on_thread_count():
    import sketchsim._parallel

    d = 2 ** 16
    op = ss.MatrixBank(d, "hadamard", 9).get("tuple/1")
    X = np.random.default_rng(2).standard_normal((5, d))
    n0 = numba.get_num_threads()
    old = sketchsim._parallel.MIN_PARALLEL_WORK
    try:
        sketchsim._parallel.MIN_PARALLEL_WORK = 0
        numba.set_num_threads(1)
        a = op._apply_rows(X, np.array([3, 1, 4, 0]), np.empty((4, d)), 0.5)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        b = op._apply_rows(X, np.array([3, 1, 4, 0]), np.empty((4, d)), 0.5)
    finally:
        numba.set_num_threads(n0)
        sketchsim._parallel.MIN_PARALLEL_WORK = old
    np.testing.assert_array_equal(a, b)
