"""Stored block-sparse kernels (R X and Rᵀ X) against their literal NumPy twins, bit for bit.

The row-tiled and batch-minor kernels of ``_matrix_kernels`` must keep the summation order of
``reference.block_sparse_apply`` / ``block_sparse_apply_t`` exactly: every tile size (8, 4, 1 rows),
every R X path (row, four-row and batch-minor kernels, chosen by rows and density), short rows, zeros and −0.0 inputs,
and any thread count.
"""
import numba
import numpy as np
import pytest

import sketchsim as ss
from sketchsim import _matrix_kernels as K
from sketchsim import matrices
from sketchsim import reference as ref
from sketchsim._rng import name_key

CASES = [(96, 48, 0.5, "tuple/1"), (240, 48, 0.25, "module/cat/2"), (189, 63, 1.0, "tuple/3")]
ROWS = [1, 3, 4, 5, 8, 9, 12, 13, 15, 16, 17, 21]


def _op_and_dense(d, b, q, name):
    op = ss.MatrixBank(d, "block-sparse", 7, block_size=b, block_prob=q).get(name)
    return op, ref.block_sparse_dense(d, b, q, name_key(7, name))


def _rows(m, L, seed):
    X = np.random.default_rng(seed).standard_normal((m, L))
    X[:, ::5] = 0.0
    X[::2, 1::7] = -0.0
    return X


@pytest.mark.parametrize("d,b,q,name", CASES)
def test_apply_matches_its_literal_twin_bit_for_bit(d, b, q, name):
    op, R = _op_and_dense(d, b, q, name)
    for m in ROWS:
        for L in (d, d // 3):
            X = _rows(m, L, m * 31 + L)
            np.testing.assert_array_equal(op.apply(X), ref.block_sparse_apply(R, X), err_msg=f"m={m} L={L}")
            X[np.random.default_rng(m).random(X.shape) < 0.9] = 0.0      # sparse rows: the row kernel
            np.testing.assert_array_equal(op.apply(X), ref.block_sparse_apply(R, X), err_msg=f"m={m} L={L}")


@pytest.mark.parametrize("d,b,q,name", CASES)
def test_apply_t_matches_its_literal_twin_bit_for_bit(d, b, q, name):
    op, R = _op_and_dense(d, b, q, name)
    for m in ROWS:
        X = _rows(m, d, m)
        np.testing.assert_array_equal(op.apply_t(X), ref.block_sparse_apply_t(R, X), err_msg=f"m={m}")


def test_both_apply_kernels_and_every_thread_count_give_the_same_bits():
    op, _ = _op_and_dense(240, 48, 0.25, "tuple/2")
    args = (op.col_ptr, op.blk_row, op.blk_sign, op.b, op.scale)
    X = _rows(matrices.BATCH_MINOR_MIN_ROWS + 3, 240, 5)
    m = X.shape[0]
    rows = np.zeros((m, 240))
    K.bs_apply(0, m, X, rows, *args, False)
    tiles = np.zeros((m, 240))
    K.bs_apply(0, m, X, tiles, *args, True)
    np.testing.assert_array_equal(tiles, rows)
    outT = np.full((240, m), np.nan)                 # the batch kernel zeroes its own columns
    K.bs_apply_batch(0, 7, np.ascontiguousarray(X.T), outT, *args)
    K.bs_apply_batch(7, m, np.ascontiguousarray(X.T), outT, *args)
    np.testing.assert_array_equal(outT.T, rows)
    n0 = numba.get_num_threads()
    try:
        got = {}
        for n in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            numba.set_num_threads(n)
            got[n] = (op.apply(X), op.apply(X[:5]), op.apply_t(X), op.apply_t(X[:5]))
    finally:
        numba.set_num_threads(n0)
    for a, b in zip(got[1], got[max(got)]):
        np.testing.assert_array_equal(a, b)
