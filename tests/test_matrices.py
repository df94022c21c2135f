"""Matrix families: D(b, q, d) structure (paper §4.3), orthonormality, determinism, naming."""
import math

import numpy as np
import pytest

import sketchsim as ss
from sketchsim import reference as ref
from sketchsim._rng import name_key
from sketchsim.matrices import parse_name


def _bs(d=480, b=48, q=0.3, seed=4, name="tuple/1"):
    return ss.MatrixBank(d, "block-sparse", seed, block_size=b, block_prob=q).get(name)


def _parse_blocks(op):
    """Yield (column j, block i, signs) of every nonzero block."""
    for j in range(op.d):
        for p in range(op.col_ptr[j], op.col_ptr[j + 1]):
            yield j, int(op.blk_row[p]), op.blk_sign[p].astype(int)


def test_block_sparse_matches_literal_algorithm_2():
    for d, b, q, name in [(96, 48, 0.5, "tuple/1"), (240, 48, 0.2, "module/cat/2"), (189, 63, 1.0, "tuple/3")]:
        op = ss.MatrixBank(d, "block-sparse", 7, block_size=b, block_prob=q).get(name)
        np.testing.assert_array_equal(op.dense(), ref.block_sparse_dense(d, b, q, name_key(7, name)),
                                      err_msg=f"d={d} b={b} q={q}")


def test_block_sparse_value_set_is_exact():
    op = _bs()
    R = op.dense()
    vals = set(np.unique(R).tolist())
    s = 1 / math.sqrt(op.d * op.q)
    assert vals == {0.0, s, -s}


def test_block_sparse_structure_signatures_and_encoding():
    op = _bs(d=480, b=48, q=0.3)
    t, d = op.b // 3, op.d
    nbits = math.ceil(math.log2(d))
    sigma_m = None
    sigma_s = {}
    for j, i, r in _parse_blocks(op):
        rs, rc, rm = r[:t], r[t:2 * t], r[2 * t:]
        # σ_m shared by all blocks of the matrix up to sign
        canon_m = rm * rm[0]
        if sigma_m is None:
            sigma_m = canon_m
        np.testing.assert_array_equal(canon_m, sigma_m)
        # σ_{s,j} shared by all blocks of column j up to sign
        canon_s = rs * rs[0]
        np.testing.assert_array_equal(canon_s, sigma_s.setdefault(j, canon_s))
        # Enc: the first entry is the sign reference; decode the column index and the parity bits
        e = rc * rc[0]
        bits = (e[1:1 + nbits] > 0).astype(int)
        assert int("".join(map(str, bits)), 2) == j          # Enc encodes j−1 for 1-based j
        assert np.all(e[nbits + 3:] == 1)                     # +1 padding
        b_m, b_s = e[nbits + 1], e[nbits + 2]
        # parity bits consistent with the signs (THEORY §6.2 step 3): for a block of R itself
        # (sign(x) = +1), r_m[0]·b_m = sign(x) and r_s[0]·b_s = sign(x)
        assert rm[0] * b_m == 1 and rs[0] * b_s == 1
    assert len(sigma_s) > 0.9 * d


def test_block_sparse_nonzero_block_rate_within_binomial_bound():
    for q in (0.05, 0.3, 0.9):
        op = _bs(d=960, b=48, q=q, seed=11)
        n = op.d * (op.d // op.b)
        rate = op.n_blocks / n
        sigma = math.sqrt(q * (1 - q) / n)
        assert abs(rate - q) <= 5 * sigma, f"q={q}: rate {rate:.4f} vs q ± 5σ = {5 * sigma:.4f}"


def test_block_sparse_rate_check_can_fail():
    # the same bound rejects a sampler drawing at 1.1·q
    op = _bs(d=960, b=48, q=0.33, seed=11)
    n = op.d * (op.d // op.b)
    q_wrong = 0.3
    assert abs(op.n_blocks / n - q_wrong) > 5 * math.sqrt(q_wrong * (1 - q_wrong) / n)


def test_block_sparse_memory_is_proportional_to_q_d2():
    small, large = _bs(d=1920, b=48, q=0.05), _bs(d=1920, b=48, q=0.4)
    ratio = large.nbytes / small.nbytes
    assert 0.8 * 8 < ratio < 1.2 * 8            # ∝ q
    assert large.nbytes < 0.06 * 1920 ** 2 * 8  # far below a dense float64 array


def test_block_sparse_apply_and_transpose_match_dense():
    op = _bs()
    R = op.dense()
    X = np.random.default_rng(0).standard_normal((3, op.d))
    np.testing.assert_allclose(op.apply(X), X @ R.T, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(op.apply_t(X), X @ R, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(op.apply(X[0, :7]), R[:, :7] @ X[0, :7], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("family,d", [("haar", 64), ("hadamard", 256), ("hadamard", 1)])
def test_orthonormal_families(family, d):
    R = ss.MatrixBank(d, family, 3).dense("module/a/0")
    np.testing.assert_allclose(R.T @ R, np.eye(d), atol=1e-10)


def test_hadamard_equals_its_dense_view_and_reference():
    op = ss.MatrixBank(128, "hadamard", 5).get("tuple/2")
    R = op.dense()
    np.testing.assert_allclose(R, ref.hadamard_dense(op.perm, op.signs), atol=1e-13)
    X = np.random.default_rng(1).standard_normal((4, 128))
    np.testing.assert_allclose(op.apply(X), X @ R.T, atol=1e-13)
    np.testing.assert_allclose(op.apply_t(X), X @ R, atol=1e-13)
    assert op.nbytes <= 8 * 4 * 128                   # O(d) memory: perm + 3 sign vectors


def test_fwht_kernel_matches_reference():
    from sketchsim._fwht import fwht_rows

    for d in (1, 2, 4, 8, 16, 32, 64, 512):
        X = np.random.default_rng(d).standard_normal((2, d))
        Y = X.copy()
        fwht_rows(0, Y.shape[0], Y)
        np.testing.assert_allclose(Y, np.stack([ref.fwht(x) for x in X]), rtol=1e-12, atol=1e-12)


def test_gaussian_entries_have_variance_one_over_d():
    d = 256
    R = ss.MatrixBank(d, "gaussian", 1).dense("tuple/1")
    var = R.var()
    # sample variance of d² normals: sd ≈ σ²·√(2/d²)
    assert abs(var - 1 / d) < 5 * (1 / d) * math.sqrt(2 / d ** 2)


@pytest.mark.parametrize("family", ["haar", "gaussian", "hadamard", "block-sparse"])
def test_same_seed_same_matrix_and_independent_of_other_names(family):
    kw = {"block_size": 48, "block_prob": 0.4} if family == "block-sparse" else {}
    d = 96 if family == "block-sparse" else 64
    a = ss.MatrixBank(d, family, 21, **kw)
    b = ss.MatrixBank(d, family, 21, **kw)
    # b draws other matrices first (as when a graph gains modules): the named ones do not change
    for name in ("module/new/0", "module/new/1", "tuple/5"):
        b.get(name)
    for name in ("tuple/1", "module/cat/1"):
        np.testing.assert_array_equal(a.dense(name), b.dense(name))
    c = ss.MatrixBank(d, family, 22, **kw)
    assert not np.array_equal(a.dense("tuple/1"), c.dense("tuple/1"))
    assert not np.array_equal(a.dense("tuple/1"), a.dense("tuple/2"))


def test_adding_a_module_to_a_graph_keeps_its_sketch_matrices():
    g1 = ss.random_network(depth=2, fan_in=2, random_state=3)
    d = g1.to_dict()
    d["objects"].append({"id": "extra", "module": "brand-new", "attributes": [1.0]})
    d["output"] = [{"id": o["id"], "weight": o["weight"] / 2} for o in d["output"]] + \
        [{"id": "extra", "weight": 0.5}]
    g2 = ss.Graph.from_dict(d)
    b1, b2 = ss.MatrixBank(64, "haar", 1), ss.MatrixBank(64, "haar", 1)
    ss.sketch(g2, b2)
    for name in b1.matrix_names(g1):
        np.testing.assert_array_equal(b1.dense(name), b2.dense(name))


def test_matrix_names():
    assert parse_name("tuple/3") == ("tuple", 3)
    assert parse_name("module/a/b/2") == ("module", "a/b", 2)
    for bad in ("tuple/0", "module/a/3", "R1", "module//1"):
        with pytest.raises(ValueError, match="matrix name"):
            parse_name(bad)


def test_replaced_bank_overrides_and_zero_default():
    base = ss.MatrixBank(16, "gaussian", 0)
    M = np.eye(16) * 2
    bank = base.replaced({"tuple/1": M}, default="zero")
    np.testing.assert_array_equal(bank.dense("tuple/1"), M)
    assert not bank.dense("tuple/2").any()
    kept = base.replaced({"tuple/1": M})
    np.testing.assert_array_equal(kept.dense("tuple/2"), base.dense("tuple/2"))
    with pytest.raises(ValueError, match="shape"):
        base.replaced({"tuple/1": np.eye(3)})


@pytest.mark.parametrize("family,d,kw", [("haar", 96, {}), ("gaussian", 96, {}), ("hadamard", 128, {}),
                                         ("block-sparse", 192, dict(block_size=48, block_prob=0.3))])
def test_out_argument_fills_the_given_buffer_with_the_same_result(family, d, kw):
    op = ss.MatrixBank(d, family, 3, **kw).get("tuple/2")
    X = np.random.default_rng(1).standard_normal((3, d))
    for f in (op.apply, op.apply_t):
        buf = np.full((3, d), np.nan)                  # stale contents must not leak into the result
        res = f(X, out=buf)
        assert np.shares_memory(res, buf)
        np.testing.assert_array_equal(buf, f(X))
        v = np.full(d, np.nan)
        f(X[1], out=v)
        np.testing.assert_array_equal(v, f(X[1]))
    with pytest.raises(ValueError, match="out must be .* shape \\(3, %d\\)" % d):
        op.apply(X, out=np.empty((3, d - 1)))
    with pytest.raises(ValueError, match="overlap"):
        op.apply_t(X, out=X)


# ----------------------------------------------------------------------------- D sampler (issue 11)
@pytest.mark.parametrize("d,b,q,seed,name", [(480, 48, 0.3, 4, "tuple/1"), (189, 63, 1.0, 2, "module/x/1"),
                                             (4800, 60, 0.1, 3, "tuple/1"),
                                             (20400, 60, 6 * 60 / 20400, 11, "module/A/2")])
def test_stored_and_implicit_storage_hold_the_same_matrix(d, b, q, seed, name):
    """One draw of D(b, q, d) per (seed, name), whatever the storage: the stored blocks are the
    implicit operator's (the applies order their products differently, so they agree to rounding)."""
    bank = dict(block_size=b, block_prob=q)
    st = ss.MatrixBank(d, "block-sparse", seed, **bank).get(name)
    im = ss.MatrixBank(d, "block-sparse", seed, storage="implicit", **bank).get(name)
    np.testing.assert_array_equal(st.col_ptr, im.col_ptr)
    for j in (0, 1, d // 3, d - 1):
        rows, signs = im.column_blocks(j)
        p0, p1 = st.col_ptr[j], st.col_ptr[j + 1]
        np.testing.assert_array_equal(st.blk_row[p0:p1], rows)
        np.testing.assert_array_equal(st.blk_sign[p0:p1], signs)
    X = np.random.default_rng(seed).standard_normal((2, d))
    np.testing.assert_allclose(st.apply(X), im.apply(X), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(st.apply_t(X), im.apply_t(X), rtol=1e-13, atol=1e-13)
    if d <= 1000:                                       # a dense d = 20400 pair would take 6.7 GB
        np.testing.assert_array_equal(st.dense(), im.dense())


@pytest.mark.parametrize("d,b,q,seed,name,digest", [
    (4800, 60, 0.1, 3, "tuple/1", "9b2e6f99bc832e2e690cc1aaf0a347487bf700331586c64842d653136941ebbd"),
    (20400, 60, 6 * 60 / 20400, 11, "module/A/2", "06f9a66770a0c78c4fa1ac5e68e03dfd53adcf14ed54d2a632de9b3e673c388e"),
])
def test_block_sparse_stream_is_fixed(d, b, q, seed, name, digest):
    """SHA-256 of (col_ptr, blk_row, blk_sign) of the geometric-gap sampler: every committed
    block-sparse result depends on this stream, so a change to it must be deliberate (the digests
    were recorded when the stored sampler moved to the gap stream, issue 11)."""
    import hashlib

    op = ss.MatrixBank(d, "block-sparse", seed, block_size=b, block_prob=q).get(name)
    got = hashlib.sha256(op.col_ptr.tobytes() + op.blk_row.tobytes() + op.blk_sign.tobytes()).hexdigest()
    assert got == digest


def test_block_sparse_sampler_is_the_same_for_any_thread_count():
    import numba

    from sketchsim.matrices import BlockSparseOperator

    d, b, q = 4800, 60, 0.05
    key = name_key(9, "tuple/3")
    old = numba.get_num_threads()
    try:
        ops = []
        for threads in (1, 2):
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            ops.append(BlockSparseOperator(d, b, q, key, "tuple/3"))
        for attr in ("col_ptr", "blk_row", "blk_sign"):
            np.testing.assert_array_equal(getattr(ops[0], attr), getattr(ops[1], attr))
    finally:
        numba.set_num_threads(old)

