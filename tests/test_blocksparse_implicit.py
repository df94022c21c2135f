"""The matrix-free block-sparse operator (MatrixBank(..., storage="implicit"), issue 11): the same
D(b, q, d) as Algorithm 2 (paper §4.3) through geometric gaps, kernels ≡ NumPy twin, binned ≡ direct
bit for bit, O(d) memory, and the structure sketchsim.dictlearn decodes."""
import math

import numba
import numpy as np
import pytest
from scipy import stats

import sketchsim as ss
from sketchsim import _dictlearn_kernels as DK
from sketchsim import dictlearn as DL
from sketchsim import reference as ref
from sketchsim._rng import name_key
from sketchsim.matrices import BlockSparseOperator, ImplicitBlockSparseOperator

IOp = ImplicitBlockSparseOperator


def _bank(d, b, q, seed=4, storage="implicit"):
    return ss.MatrixBank(d, "block-sparse", seed, block_size=b, block_prob=q, storage=storage)


def _blocks(op):
    """(column j, block row i, int signs) of every nonzero block."""
    for j in range(op.d):
        rows, signs = op.column_blocks(j)
        for i, s in zip(rows.tolist(), signs):
            yield j, i, s.astype(int)


# ----------------------------------------------------------------------------- kernels ≡ reference
# (360, 180): Enc starts at entry 61 and crosses a 64-bit word; (768, 192): t = 64; (1200, 600): 10 words
@pytest.mark.parametrize("d,b,q,name", [(96, 48, 0.5, "tuple/1"), (240, 48, 0.2, "module/cat/2"),
                                        (189, 63, 1.0, "tuple/3"), (480, 48, 0.05, "tuple/2"),
                                        (360, 180, 0.4, "tuple/1"), (768, 192, 0.5, "module/x/0"),
                                        (1200, 600, 0.7, "tuple/4")])
def test_implicit_matches_its_literal_reference(d, b, q, name):
    op = _bank(d, b, q, seed=7).get(name)
    assert isinstance(op, IOp) and op.family == "block-sparse" and op.storage == "implicit"
    R = ref.block_sparse_dense(d, b, q, name_key(7, name))
    np.testing.assert_array_equal(op.dense(), R)
    for j in (0, 1, d // 2, d - 1):
        np.testing.assert_array_equal(op.column(j), R[:, j])
        rows, signs = op.column_blocks(j)
        assert rows.tolist() == [i for i, _ in ref.block_sparse_blocks(d, b, q, name_key(7, name), j)]
        for i, s in zip(rows, signs):
            np.testing.assert_array_equal(s * op.scale, R[i * b:(i + 1) * b, j])
    np.testing.assert_array_equal(np.diff(op.col_ptr), (R != 0).sum(axis=0) // b)
    assert op.n_blocks == int((R != 0).sum()) // b


def test_implicit_apply_and_transpose_match_the_dense_matrix():
    op = _bank(480, 48, 0.3).get("tuple/1")
    R = op.dense()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((3, op.d))
    X[1, ::3] = 0.0
    np.testing.assert_allclose(op.apply(X), X @ R.T, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(op.apply_t(X), X @ R, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(op.apply(X[0, :7]), R[:, :7] @ X[0, :7], rtol=1e-12, atol=1e-12)
    for f in (op.apply, op.apply_t):                     # out= is filled completely, stale contents ignored
        buf = np.full((3, op.d), np.nan)
        np.testing.assert_array_equal(f(X, out=buf), f(X))


def test_tiny_q_gives_empty_columns_without_overflow():
    """q = 1e−18: gaps up to 3.7e19 blocks (beyond int64) must end the column, never wrap around."""
    op = IOp(96, 48, 1e-18, 12345, "tuple/1")
    assert op.n_blocks == 0 and not op.dense().any()
    assert ref.block_sparse_blocks(96, 48, 1e-18, 12345, 0) == []


def _run(op, X, transpose, how):
    """op.apply / apply_t with the direct kernels (how='direct') or the binned path with the class
    constants (GROUP, CHUNK_ENTRIES, TILE_BYTES, ROW_CHUNK, CHUNK_CELLS, CHUNK_BYTES) = how."""
    names = ("DIRECT_MAX_BYTES", "GROUP", "CHUNK_ENTRIES", "TILE_BYTES", "ROW_CHUNK", "CHUNK_CELLS", "CHUNK_BYTES")
    saved = [getattr(IOp, n) for n in names]
    try:
        if how == "direct":
            IOp.DIRECT_MAX_BYTES = 1 << 62
        else:
            IOp.DIRECT_MAX_BYTES = 0
            for n, v in zip(names[1:], how):
                setattr(IOp, n, v)
        op._groups = None
        return op.apply_t(X) if transpose else op.apply(X)
    finally:
        for n, v in zip(names, saved):
            setattr(IOp, n, v)
        op._groups = None


@pytest.mark.parametrize("d,b,q", [(4800, 60, 0.05), (3000, 60, 1.0), (12000, 60, 0.01)])
def test_binned_apply_is_bit_identical_to_direct_for_any_tiling_and_thread_count(d, b, q):
    """Each output entry gets the same terms in the same (ascending column) order whatever the
    chunks, groups, tiles, row chunks and threads: results equal bit for bit."""
    op = IOp(d, b, q, name_key(3, "tuple/2"), "tuple/2")
    rng = np.random.default_rng(1)
    tilings = [(64, 500, 4096, 2, 64, 1 << 20), (7, 37, 1000, 3, 10, 4096),
               (1024, 1 << 24, 1 << 20, 8, 1 << 22, 1 << 28)]
    if d <= 5000:     # a group per column, chunks of ≤ 96 blocks and of one column record, a tile per block row
        tilings.append((1, 96, 64, 1, 1, 8))
    old = numba.get_num_threads()
    try:
        for m, L in [(1, d), (11, d), (5, d // 3 + 7)]:
            X = rng.standard_normal((m, L))
            X[:, rng.choice(L, L // 4, replace=False)] = 0.0
            X[0, :5] = 0.0
            Xt = rng.standard_normal((m, d))
            want, want_t = _run(op, X, False, "direct"), _run(op, Xt, True, "direct")
            for how in tilings:
                for threads in ((1, 2) if how[0] > 1 else (2,)):
                    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
                    np.testing.assert_array_equal(_run(op, X, False, how), want, err_msg=f"{m} {L} {how}")
                    np.testing.assert_array_equal(_run(op, Xt, True, how), want_t, err_msg=f"ᵀ {m} {how}")
        if d <= 5000:
            R = op.dense()
            np.testing.assert_allclose(want, X @ R[:, :X.shape[1]].T, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(want_t, Xt @ R, rtol=1e-12, atol=1e-12)
    finally:
        numba.set_num_threads(old)


# ----------------------------------------------------------------------------- the distribution
def _chi2_binomial(counts, n, q):
    """p-value of a χ² goodness of fit of ``counts`` to Binomial(n, q), tail bins pooled to ≥ 5."""
    k = np.arange(n + 1)
    expect = stats.binom.pmf(k, n, q) * counts.size
    obs = np.bincount(counts, minlength=n + 1)[:n + 1].astype(float)
    lo, hi = int(np.argmax(np.cumsum(expect) >= 5)), int(n - np.argmax(np.cumsum(expect[::-1]) >= 5))
    e = np.concatenate([[expect[:lo + 1].sum()], expect[lo + 1:hi], [expect[hi:].sum()]])
    o = np.concatenate([[obs[:lo + 1].sum()], obs[lo + 1:hi], [obs[hi:].sum()]])
    return stats.chisquare(o, e * o.sum() / e.sum()).pvalue


@pytest.mark.parametrize("d,b,q", [(19200, 48, 0.02), (4800, 48, 0.3), (4800, 48, 0.75)])
def test_blocks_per_column_follow_binomial_and_positions_are_uniform(d, b, q):
    """Per-column counts ~ Binomial(d/b, q) (χ², mean and variance z-tests), every block row is
    nonzero ~ Binomial(d, q) times over the columns, and f_m, f_s, f_c are fair coins. A wrong gap,
    e.g. log U / log q (which is the right one only at q = 1/2) or i + g instead of i + 1 + g, fails
    these tests (see the report of issue 11)."""
    op = IOp(d, b, q, name_key(2, "tuple/1"), "tuple/1")
    nb = d // b
    counts = np.diff(op.col_ptr)
    assert _chi2_binomial(counts, nb, q) > 1e-4
    z_mean = (counts.mean() - nb * q) / math.sqrt(nb * q * (1 - q) / d)
    assert abs(z_mean) < 5
    var, v0 = counts.var(ddof=1), nb * q * (1 - q)
    assert abs(var / v0 - 1) < 5 * math.sqrt(2 / (d - 1)) * 1.5       # sd of a sample variance ≈ v·√(2/(n−1))
    rows = np.zeros(nb, dtype=np.int64)
    for j in range(d):
        rows[op.column_blocks(j)[0]] += 1
    chi2 = np.sum((rows - d * q) ** 2 / (d * q * (1 - q)))
    assert stats.chi2.sf(chi2, nb) > 1e-4
    us = [u for j in range(0, d, max(1, d // 400)) for _, u in ref.block_sparse_blocks(d, b, q, op.key, j)]
    bits = np.array([[(u >> k) & 1 for k in range(3)] for u in us])
    assert np.all(np.abs(bits.mean(axis=0) - 0.5) < 5 * 0.5 / math.sqrt(len(us)))


# ----------------------------------------------------------------------------- Algorithm 2's structure
def test_every_block_has_algorithm_2_structure_and_is_the_stored_draw():
    d, b, q = 480, 48, 0.3
    op = _bank(d, b, q).get("module/M/1")
    stored = _bank(d, b, q, storage="stored").get("module/M/1")
    t, nbits = b // 3, math.ceil(math.log2(d))
    sigma_m, sigma_s = None, {}
    for j, i, r in _blocks(op):
        rs, rc, rm = r[:t], r[t:2 * t], r[2 * t:]
        canon_m = rm * rm[0]
        sigma_m = canon_m if sigma_m is None else sigma_m
        np.testing.assert_array_equal(canon_m, sigma_m)                  # σ_m shared up to sign
        canon_s = rs * rs[0]
        np.testing.assert_array_equal(canon_s, sigma_s.setdefault(j, canon_s))   # σ_{s,j} per column
        e = rc * rc[0]
        assert int("".join(map(str, (e[1:1 + nbits] > 0).astype(int))), 2) == j  # Enc encodes j−1 (1-based j)
        assert np.all(e[nbits + 3:] == 1)                                 # +1 padding
        assert rm[0] * e[nbits + 1] == 1 and rs[0] * e[nbits + 2] == 1    # parity bits (THEORY §6.2 step 3)
    # the stored operator holds the very same blocks (one draw of D(b, q, d) for both storages)
    np.testing.assert_array_equal(sigma_m, stored.blk_sign[0, 2 * t:] * stored.blk_sign[0, 2 * t])
    for j in range(d):
        lo = stored.col_ptr[j]
        if lo < stored.col_ptr[j + 1] and j in sigma_s:
            s = stored.blk_sign[lo, :t].astype(int)
            np.testing.assert_array_equal(s * s[0], sigma_s[j])
    np.testing.assert_array_equal(op.dense(), stored.dense())


@pytest.mark.parametrize("d,b,q", [(11400, 57, 0.06), (4800, 60, 0.1)])
def test_dictlearn_parses_every_block_of_the_implicit_operator(d, b, q):
    """sketchsim.dictlearn's screen and parse kernels invert the implicit sampler too: each nonzero
    block of x·R e_j decodes to j, sign(x), |x|, one σ̂_m per matrix, one σ̂_s per column and R's
    own block signs."""
    op = _bank(d, b, q, seed=21).get("module/A/1")
    rng = np.random.default_rng(0)
    cols = rng.choice(d, 40, replace=False)
    x = rng.uniform(0.2, 2.0, cols.size) * rng.choice([-1.0, 1.0], cols.size)
    Xs = np.zeros((cols.size, d))
    Xs[np.arange(cols.size), cols] = x
    Y = op.apply(Xs)
    lrn = DL._Learner(d, b, q, 0.3, 0.8, 0)
    S, nb = Y.shape[0], d // b
    status = np.empty((S, nb), dtype=np.int8)
    DK.screen_blocks(0, S, Y, b, lrn.L, 0.3, status)
    offsets = np.concatenate([[0], np.cumsum((status == DK.ST_ACCEPT).sum(axis=1))]).astype(np.int64)
    n = int(offsets[-1])
    out = dict(block=np.empty(n, np.int32), column=np.empty(n, np.int64), sign=np.empty(n, np.int8),
               magnitude=np.empty(n), km=np.empty((n, lrn.wt), np.uint64), ks=np.empty((n, lrn.wt), np.uint64),
               pat=np.empty((n, lrn.wb), np.uint64))
    DK.parse_blocks(0, S, Y, b, lrn.L, lrn.mag_scale, status, offsets, out["block"], out["column"], out["sign"],
                    out["magnitude"], out["km"], out["ks"], out["pat"])
    nnz = np.diff(op.col_ptr)[cols]
    assert (status == DK.ST_ACCEPT).sum(axis=1).tolist() == nnz.tolist()
    assert set(np.unique(status)) <= {DK.ST_ZERO, DK.ST_ACCEPT}
    k = np.repeat(np.arange(cols.size), nnz)
    np.testing.assert_array_equal(out["column"], cols[k])
    np.testing.assert_array_equal(out["sign"], np.sign(x[k]))
    np.testing.assert_allclose(out["magnitude"], np.abs(x[k]), rtol=1e-12)
    assert np.unique(out["km"], axis=0).shape[0] == 1
    for c in range(cols.size):
        sel = k == c
        assert np.unique(out["ks"][sel], axis=0).shape[0] == 1
        rows, signs = op.column_blocks(int(cols[c]))
        np.testing.assert_array_equal(out["block"][sel], rows)
        np.testing.assert_array_equal(DL._unpack(out["pat"][sel], b), signs)


def test_dictlearn_recovers_implicit_matrices_exactly():
    """End to end: recover() on y = Σ_i R_i x_i with implicit R_i returns their true columns."""
    d, b, q = 11400, 57, 0.06
    bank = _bank(d, b, q, seed=1000)
    ops = [bank.get(ss.tuple_name(i + 1)) for i in range(2)]
    rng = np.random.default_rng(0)
    pools = [rng.choice(d, 6, replace=False) for _ in ops]
    Y = np.zeros((50, d))
    for i, op in enumerate(ops):
        X = np.zeros((50, d))
        for k in range(50):
            c = rng.choice(pools[i], rng.integers(1, 3), replace=False)
            X[k, c] = rng.uniform(0.3, 0.7, c.size) * rng.choice([-1.0, 1.0], c.size)
        Y += op.apply(X)
    res = DL.recover(Y, b, q)
    assert res.n_columns >= 6
    t = b // 3
    true_sig = []
    for op in ops:
        rows, signs = op.column_blocks(int(np.argmax(np.diff(op.col_ptr))))
        true_sig.append(signs[0, 2 * t:] * signs[0, 2 * t])
    V = res.column_values()
    for c in range(res.n_columns):
        lab = int(res.column_matrix[c])
        hits = [i for i, s in enumerate(true_sig) if np.array_equal(s, res.matrix_signature[lab])]
        assert len(hits) == 1
        j = int(res.column_index[c])
        assert j in pools[hits[0]]
        mask = V[c] != 0
        assert mask.any()
        np.testing.assert_array_equal(V[c][mask], ops[hits[0]].column(j)[mask])


# ----------------------------------------------------------------------------- the bank option
def test_storage_option_is_validated():
    with pytest.raises(ValueError, match="storage applies only to family 'block-sparse'.*'implicit'.*haar"):
        ss.MatrixBank(64, "haar", 0, storage="implicit")
    with pytest.raises(ValueError, match="storage must be one of 'stored', 'implicit'.*'lazy'"):
        _bank(96, 48, 0.5, storage="lazy")
    with pytest.raises(ValueError, match="storage must be one of"):
        _bank(96, 48, 0.5, storage=1)
    assert _bank(96, 48, 0.5, storage=None).storage == "stored"
    assert isinstance(_bank(96, 48, 0.5, storage=None).get("tuple/1"), BlockSparseOperator)
    assert ss.MatrixBank(64, "haar", 0).storage is None
    bank = _bank(96, 48, 0.5)
    assert "storage='implicit'" in repr(bank) and "storage" not in repr(_bank(96, 48, 0.5, storage="stored"))
    assert bank.replaced({}).get("tuple/1").storage == "implicit"


def test_implicit_bank_at_eight_million_costs_o_of_d():
    """d = 84·99864 ≈ 2^23: the size guard counts O(d) plus a fixed scratch for the implicit
    storage (the stored one would need q·d²-many bytes); nothing is drawn before use."""
    d, b = 84 * 99864, 84
    q = 4 * b / d
    implicit = _bank(d, b, q)
    assert implicit.matrix_nbytes() < 2**30
    assert implicit.matrix_nbytes() >= 16 * d
    stored_estimate = q * 9.0 * d * d
    assert stored_estimate > 20 * 2**30
    op = implicit.get("tuple/1")
    assert op.nbytes == 0
    col = op.column(d - 1)
    rows, signs = op.column_blocks(d - 1)
    assert np.count_nonzero(col) == rows.size * b and op.nbytes == 0


def test_nbytes_is_o_of_d_after_use():
    d, b, q = 48 * 2000, 48, 0.05
    op = IOp(d, b, q, name_key(1, "tuple/1"), "tuple/1")
    X = np.random.default_rng(0).standard_normal((2, d))
    old = IOp.DIRECT_MAX_BYTES
    try:
        IOp.DIRECT_MAX_BYTES = 0
        op.apply(X)                                  # binned: keeps the blocks per group only
    finally:
        IOp.DIRECT_MAX_BYTES = old
    assert 0 < op.nbytes <= 8 * (d // op._groups[0] + 2)
    op.col_ptr
    assert op.nbytes <= 8 * (d + 1) + 8 * (d // op._groups[0] + 2)
    assert op.nbytes < q * d * d / 100               # far below the stored blocks (∝ q·d²)


def test_same_seed_same_matrix_and_independent_of_other_names():
    a, b_ = _bank(96, 48, 0.4, seed=21), _bank(96, 48, 0.4, seed=21)
    for name in ("module/new/0", "tuple/5"):
        b_.get(name)
    for name in ("tuple/1", "module/cat/1"):
        np.testing.assert_array_equal(a.dense(name), b_.dense(name))
    assert not np.array_equal(a.dense("tuple/1"), _bank(96, 48, 0.4, seed=22).dense("tuple/1"))
    assert not np.array_equal(a.dense("tuple/1"), a.dense("tuple/2"))


def test_sketch_with_an_implicit_bank_equals_the_literal_recursion():
    g = ss.random_network(depth=3, fan_in=(2, 3), attr_dim=5, random_state=4)
    d = 480
    bank = _bank(d, 48, 0.3, seed=5)
    dense = {n: bank.dense(n) for n in bank.matrix_names(g)}
    want = ref.sketch_overall(g, lambda n, v: dense[n] @ v, d)
    np.testing.assert_allclose(ss.sketch(g, bank), want, rtol=1e-10, atol=1e-12)


def test_column_norm_correction_reads_the_implicit_block_counts():
    from sketchsim.decode import _column_sq_norms

    op = _bank(480, 48, 0.3).get("tuple/2")
    R = op.dense()
    np.testing.assert_allclose(_column_sq_norms(op, 480), (R * R).sum(axis=0), rtol=1e-12)


def test_column_blocks_validates_j():
    op = _bank(96, 48, 0.5).get("tuple/1")
    with pytest.raises(ValueError, match="j must be <= 95; got 96"):
        op.column_blocks(96)
    with pytest.raises(ValueError, match="column index j must lie in 0..95"):
        op.column(-1)
