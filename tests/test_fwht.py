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
