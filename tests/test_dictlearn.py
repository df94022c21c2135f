"""Recursable dictionary learning (paper §4.2, THEORY.md §6.2): kernels ≡ reference, exact recovery
in the checked-demo regime, determinism, validation rules and the CLI contract."""
import math
import subprocess
import sys

import numba
import numpy as np
import pytest

import sketchsim as ss
from sketchsim import _dictlearn_kernels as K
from sketchsim import dictlearn as DL
from sketchsim import reference as ref
from sketchsim.cli import main
from sketchsim.dictlearn import recover

# Checked-demo regime of THEORY.md §6.2 at a modest size: q·d/b = 12, count threshold 9.6 blocks.
D, B, Q, N = 11400, 57, 0.06, 3
T = B // 3
RHO = 0.05          # ℓ2 norm of the dense residual ("everything else" of x)


def _make(d=D, b=B, q=Q, n_mat=N, S=60, pool=6, rho=RHO, seed=0, n_res=300):
    """y = Σ_i R_i (x_i + w_i): 1–2 heavy coordinates per matrix per sample, drawn from a pool of
    ``pool`` columns per matrix, |x| ∈ [0.3, 0.7]; w_i a residual on ``n_res`` random coordinates."""
    rng = np.random.default_rng(seed)
    bank = ss.MatrixBank(d, "block-sparse", 1000 + seed, block_size=b, block_prob=q)
    ops = [bank.get(ss.tuple_name(i + 1)) for i in range(n_mat)]
    pools = [rng.choice(d, pool, replace=False) for _ in range(n_mat)]
    X = np.zeros((n_mat, S, d))
    Y = np.zeros((S, d))
    for i in range(n_mat):
        W = np.zeros((S, d))
        for k in range(S):
            kk = rng.integers(1, 3)
            cols = rng.choice(pools[i], kk, replace=False)
            X[i, k, cols] = rng.uniform(0.3, 0.7, kk) * rng.choice([-1.0, 1.0], kk)
            idx = rng.choice(d, n_res, replace=False)
            W[k, idx] = rng.standard_normal(n_res)
            W[k, cols] = 0.0
        W *= rho / math.sqrt(n_mat) / np.linalg.norm(W, axis=1, keepdims=True)
        Y += ops[i].apply(X[i] + W)
    return Y, X, ops


def _true_blocks(op, j):
    lo, hi = op.col_ptr[j], op.col_ptr[j + 1]
    return dict(zip(op.blk_row[lo:hi].tolist(), op.blk_sign[lo:hi]))


def _label_map(res, ops):
    """Recovered label → true matrix index, through the canonical matrix signature σ̂_m."""
    true_sig = [op.blk_sign[0, 2 * T:] * op.blk_sign[0, 2 * T] for op in ops]
    out = {}
    for lab in range(res.n_matrices):
        hits = [i for i, s in enumerate(true_sig) if np.array_equal(s, res.matrix_signature[lab])]
        out[lab] = hits[0] if hits else -1
    return out


def _predicted_certified(X, ops, threshold):
    """Oracle: (sample, matrix, column) triples whose heavy column has ≥ threshold blocks that no
    other heavy column of the same sample touches. Such blocks pass the screen (the residual is
    ~0.04 of the signal per entry), and blocks shared by two heavy columns fail it (their ratio is
    ≥ 0.3/0.7 > τ_∞ = 0.3), so the algorithm must certify exactly these triples."""
    n_mat, S, _ = X.shape
    out = set()
    for k in range(S):
        heavy = [(i, int(j)) for i in range(n_mat) for j in np.flatnonzero(X[i, k])]
        rows = {h: set(_true_blocks(ops[h[0]], h[1])) for h in heavy}
        for h in heavy:
            others = set().union(*[rows[o] for o in heavy if o != h])
            if len(rows[h] - others) >= threshold:
                out.add((k, h[0], h[1]))
    return out


@pytest.fixture(scope="module")
def demo():
    Y, X, ops = _make()
    res = recover(Y, B, Q)
    return Y, X, ops, res


# ----------------------------------------------------------------------------- kernels ≡ reference
def _crafted_samples(rng, d=480, b=48, S=12):
    """Blocks of every kind: valid encodings (some with j ≥ d), broken padding, broken parity,
    noisy and pure-noise blocks, zero blocks."""
    t = b // 3
    L = math.ceil(math.log2(d))
    Y = np.zeros((S, d))
    for k in range(S):
        for ell in range(d // b):
            kind = rng.integers(0, 7)
            if kind == 0:
                continue                                   # zero block
            if kind == 1:
                Y[k, ell * b:(ell + 1) * b] = rng.standard_normal(b)
                continue
            j = int(rng.integers(0, d) if rng.random() < 0.8 else rng.integers(d, 2 ** L))  # some j ≥ d
            fm, fs, fc, sm0, ss0 = rng.choice([-1, 1], 5)
            sig_s = rng.choice([-1, 1], t)
            sig_m = rng.choice([-1, 1], t)
            sig_s[0], sig_m[0] = ss0, sm0
            enc = np.ones(t)
            enc[1:L + 1] = [1 if (j >> (L - 1 - i)) & 1 else -1 for i in range(L)]
            enc[L + 1], enc[L + 2] = fm * sm0, fs * ss0
            if kind == 3:
                enc[L + 3 + rng.integers(0, t - L - 3)] *= -1   # broken padding
            if kind == 4:
                enc[L + 1] *= -1                                 # broken parity bit
            blk = np.concatenate([fs * sig_s, fc * enc, fm * sig_m])
            x = rng.uniform(0.2, 1.0) * rng.choice([-1, 1])
            noise = rng.uniform(0.0, 0.45) * rng.standard_normal(b) if kind == 5 else 0.0
            Y[k, ell * b:(ell + 1) * b] = x * blk * (1.0 + noise)
    return Y


def _kernel_parse(Y, b, q, tol):
    d = Y.shape[1]
    lrn = DL._Learner(d, b, q, tol, 0.8, 0)
    S, nb = Y.shape[0], d // b
    status = np.empty((S, nb), dtype=np.int8)
    K.screen_blocks(0, S, Y, b, lrn.L, tol, status)
    counts = (status == K.ST_ACCEPT).sum(axis=1)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    n = int(offsets[-1])
    out = dict(block=np.empty(n, np.int32), column=np.empty(n, np.int64), sign=np.empty(n, np.int8),
               magnitude=np.empty(n), km=np.empty((n, lrn.wt), np.uint64), ks=np.empty((n, lrn.wt), np.uint64),
               pat=np.empty((n, lrn.wb), np.uint64))
    K.parse_blocks(0, S, Y, b, lrn.L, lrn.mag_scale, status, offsets, out["block"], out["column"], out["sign"],
                   out["magnitude"], out["km"], out["ks"], out["pat"])
    return status, out


@pytest.mark.parametrize("pos", [(0, 1), (5, 9)])
@pytest.mark.parametrize("f, on_cube", [(1 - 1e-7, True), (1 + 1e-7, False)])
def test_screen_prefilter_and_division_free_test_agree_with_reference_on_the_boundary(f, on_cube, pos):
    """The kernel rejects early on the first two entries and compares b|v_i| with a(1 ± τ) instead
    of dividing. Blocks whose first two normalised entries sit just inside (outside) the hypercube
    band, |u_i| = 1 + fτ and |u_j| = 1 − fτ with ‖u‖₁ = b, must get the reference's verdict. The
    positions (0, 1) exercise the prefilter, (5, 9) the full test."""
    rng = np.random.default_rng(7)
    b, tol = 48, 0.3
    Y = _crafted_samples(rng, b=b)
    blocks = Y.reshape(Y.shape[0], -1, b)
    with np.errstate(invalid="ignore"):
        valid = np.all(np.abs(np.abs(blocks) / np.abs(blocks).mean(axis=2, keepdims=True) - 1) < 1e-12, axis=2)
    assert valid.sum() > 20
    scale = rng.uniform(0.2, 3.0, size=valid.sum())[:, None]
    u = np.sign(blocks[valid]) * np.ones(b)
    u[:, pos[0]] *= 1 + f * tol
    u[:, pos[1]] *= 1 - f * tol
    blocks[valid] = u * scale
    Y = blocks.reshape(Y.shape)
    status, _ = _kernel_parse(Y, b, 0.3, tol)
    expect = ref.dictlearn_screen(Y, b, tol)
    np.testing.assert_array_equal(status, expect)
    assert np.all((expect[valid] == K.ST_OFF_CUBE) != on_cube)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_screen_and_parse_kernels_match_reference(seed):
    rng = np.random.default_rng(seed)
    b, q, tol = 48, 0.3, 0.3
    Y = _crafted_samples(rng, b=b)
    status, out = _kernel_parse(Y, b, q, tol)
    np.testing.assert_array_equal(status, ref.dictlearn_screen(Y, b, tol))
    assert set(np.unique(status)) == set(range(len(K.STATUS_NAMES)))   # every verdict exercised
    r = ref.dictlearn_parse(Y, b, q, tol)
    np.testing.assert_array_equal(out["block"], r["block"])
    np.testing.assert_array_equal(out["column"], r["column"])
    np.testing.assert_array_equal(out["sign"], r["sign"])
    np.testing.assert_allclose(out["magnitude"], r["magnitude"], rtol=1e-12)
    np.testing.assert_array_equal(DL._unpack(out["km"], b // 3), r["sigma_m"])
    np.testing.assert_array_equal(DL._unpack(out["ks"], b // 3), r["sigma_s"])
    np.testing.assert_array_equal(DL._unpack(out["pat"], b), r["pattern"])


@pytest.mark.parametrize("d,b,q", [(D, B, Q), (480, 48, 0.5), (4800, 60, 0.1)])
def test_every_nonzero_block_of_a_sampled_matrix_parses_to_its_column(d, b, q):
    """The parse inverts the sampler (matrices.py): each nonzero block of x·R e_j decodes to j,
    sign(x), |x|, one σ̂_m per matrix, one σ̂_s per column, and R's own block signs."""
    op = ss.MatrixBank(d, "block-sparse", 21, block_size=b, block_prob=q).get("module/A/1")
    rng = np.random.default_rng(0)
    cols = rng.choice(d, 40, replace=False)
    x = rng.uniform(0.2, 2.0, cols.size) * rng.choice([-1.0, 1.0], cols.size)
    Xs = np.zeros((cols.size, d))
    Xs[np.arange(cols.size), cols] = x
    Y = op.apply(Xs)
    status, out = _kernel_parse(Y, b, q, 0.3)
    nnz = np.diff(op.col_ptr)[cols]
    assert (status == K.ST_ACCEPT).sum(axis=1).tolist() == nnz.tolist()
    assert set(np.unique(status)) <= {K.ST_ZERO, K.ST_ACCEPT}
    k = np.repeat(np.arange(cols.size), nnz)
    np.testing.assert_array_equal(out["column"], cols[k])
    np.testing.assert_array_equal(out["sign"], np.sign(x[k]))
    np.testing.assert_allclose(out["magnitude"], np.abs(x[k]), rtol=1e-12)
    assert np.unique(out["km"], axis=0).shape[0] == 1
    for c in range(cols.size):
        sel = k == c
        assert np.unique(out["ks"][sel], axis=0).shape[0] == 1
        truth = _true_blocks(op, int(cols[c]))
        np.testing.assert_array_equal(out["block"][sel], sorted(truth))
        np.testing.assert_array_equal(DL._unpack(out["pat"][sel], b), np.array([truth[e] for e in sorted(truth)]))


def test_pack_unpack_roundtrip_over_word_boundaries():
    rng = np.random.default_rng(3)
    for nbits in (1, 63, 64, 65, 130):
        s = rng.choice(np.array([-1, 1], dtype=np.int8), (7, nbits))
        np.testing.assert_array_equal(DL._unpack(DL._pack(s), nbits), s)


@pytest.mark.parametrize("tol", [1, 2, 3])
def test_bucketed_hamming_merge_equals_all_pairs(tol):
    """The banded bucketing finds every pair within tol (pigeonhole), like the all-pairs oracle."""
    rng = np.random.default_rng(tol)
    t, L = 19, 14
    lrn = DL._Learner(57 * 200, 57, 0.05, 0.3, 0.8, tol)
    base = rng.integers(0, 2 ** 62, size=(12, 3), dtype=np.uint64)
    base[:, 0] &= np.uint64((1 << t) - 1) & ~np.uint64(1)
    base[:, 1] &= np.uint64((1 << L) - 1)
    base[:, 2] &= np.uint64((1 << t) - 1) & ~np.uint64(1)
    keys = [base]
    for _ in range(4):                                   # near copies: flip 1..tol+1 meaningful bits
        c = base.copy()
        for row in c:
            for _ in range(rng.integers(1, tol + 2)):
                part = rng.integers(0, 3)
                bit = rng.integers(1, t) if part != 1 else rng.integers(0, L)
                row[part] ^= np.uint64(1) << np.uint64(bit)
        keys.append(c)
    keys = np.unique(np.concatenate(keys), axis=0)
    ctx = rng.integers(0, 2, keys.shape[0]).astype(np.int64)
    roots = DL._merge_within(keys, ctx, lrn.key_masks, tol)
    parent = np.arange(keys.shape[0])

    def find(a):
        while parent[a] != a:
            a = parent[a]
        return a

    for a in range(keys.shape[0]):
        for c in range(a + 1, keys.shape[0]):
            dist = sum(bin(int(x) ^ int(y)).count("1") for x, y in zip(keys[a], keys[c]))
            if dist <= tol and ctx[a] == ctx[c]:
                ra, rc = find(a), find(c)
                parent[max(ra, rc)] = min(ra, rc)
    np.testing.assert_array_equal(roots, [find(a) for a in range(keys.shape[0])])
    assert np.unique(roots).size < keys.shape[0]         # some merges happened


@pytest.mark.parametrize("count_frac", [0.5, 0.8])
def test_driver_matches_literal_reference_pipeline(count_frac):
    """Steps 6–9 with exact keys: the vectorised driver ≡ the dict-based reference."""
    Y, X, ops = _make(S=10, seed=5)
    res = recover(Y, B, Q, hamming_tol=0, count_frac=count_frac)
    cols, coefs = ref.dictlearn_recover_exact(Y, B, Q, count_frac=count_frac)
    assert cols and coefs
    sig = {lab: tuple(res.matrix_signature[lab]) for lab in range(res.n_matrices)}
    got_cols = {}
    for c in range(res.n_columns):
        rows, signs = res.column_blocks(c)
        got_cols[(sig[int(res.column_matrix[c])], int(res.column_index[c]))] = dict(zip(rows.tolist(), signs))
    assert got_cols.keys() == cols.keys()
    for key, blocks in cols.items():
        assert got_cols[key].keys() == blocks.keys()
        for ell, s in blocks.items():
            np.testing.assert_array_equal(got_cols[key][ell], s)
    got_coefs = {(int(k), sig[int(m)], int(j)): v for k, m, j, v in
                 zip(res.coef_sample, res.coef_matrix, res.coef_column, res.coef_value)}
    assert got_coefs.keys() == coefs.keys()
    for key, v in coefs.items():
        assert got_coefs[key] == pytest.approx(v, rel=1e-12)


# ----------------------------------------------------------------------------- exact recovery
def test_exact_recovery_in_checked_demo_regime(demo):
    Y, X, ops, res = demo
    lab = _label_map(res, ops)
    # permutation: labels map one-to-one onto the true matrices
    assert res.n_matrices == N
    assert sorted(lab.values()) == list(range(N))
    # the certified (sample, matrix, column) triples are exactly the oracle's
    pred = _predicted_certified(X, ops, res.count_threshold)
    got = {(int(k), lab[int(m)], int(j)) for k, m, j in zip(res.coef_sample, res.coef_matrix, res.coef_column)}
    assert len(pred) >= 100                     # the regime is meaningful: many certifiable triples
    assert got == pred
    # columns: no spurious column; recovered = essential columns certifiable in some sample
    essential = {(i, int(j)) for i in range(N) for j in np.flatnonzero(np.any(X[i] != 0, axis=0))}
    recovered = {(lab[int(m)], int(j)) for m, j in zip(res.column_matrix, res.column_index)}
    assert recovered <= essential
    assert recovered == {(i, j) for _, i, j in pred}
    assert len(recovered) == res.n_columns      # one column per (matrix, j)
    # every recovered block is the true block of R, signs included
    n_blocks = 0
    for c in range(res.n_columns):
        truth = _true_blocks(ops[lab[int(res.column_matrix[c])]], int(res.column_index[c]))
        rows, signs = res.column_blocks(c)
        assert len(rows) >= res.count_threshold
        for ell, s in zip(rows.tolist(), signs):
            assert ell in truth
            np.testing.assert_array_equal(s, truth[ell])
            n_blocks += 1
    assert n_blocks == res.column_block_row.size
    # coefficients: signs exact, ℓ∞ error within 5σ of one block's magnitude noise,
    # σ = ρ·√(q/b) (per-entry residual ρ/√d over b entries, scaled by √(dq)/b)
    x_true = np.array([X[lab[int(m)], k, j] for k, m, j in zip(res.coef_sample, res.coef_matrix, res.coef_column)])
    np.testing.assert_array_equal(np.sign(res.coef_value), np.sign(x_true))
    sigma = RHO * math.sqrt(Q / B)
    assert np.max(np.abs(res.coef_value - x_true)) <= 5 * sigma


def test_recovered_column_vectors_equal_true_columns_on_recovered_blocks(demo):
    _, _, ops, res = demo
    lab = _label_map(res, ops)
    V = res.column_values()
    assert V.shape == (res.n_columns, D)
    scale = 1.0 / math.sqrt(D * Q)
    for c in range(res.n_columns):
        op = ops[lab[int(res.column_matrix[c])]]
        true_col = op.column(int(res.column_index[c]))
        np.testing.assert_array_equal(V[c], res.column(c))
        mask = V[c] != 0
        np.testing.assert_array_equal(V[c][mask], true_col[mask])
        assert set(np.unique(np.abs(V[c][mask]))) == {scale}
        assert res.find_column(int(res.column_matrix[c]), int(res.column_index[c])) == c
    k, m = int(res.coef_sample[0]), int(res.coef_matrix[0])
    v = res.coef_vector(k, m)
    sel = (res.coef_sample == k) & (res.coef_matrix == m)
    np.testing.assert_array_equal(np.flatnonzero(v), np.sort(res.coef_column[sel]))


def test_noise_only_samples_certify_nothing(demo):
    Y, X, ops, _ = demo
    rng = np.random.default_rng(9)
    noise = rng.standard_normal((20, D)) / math.sqrt(D)              # unit-ℓ2 dense noise
    W = np.zeros((20, D))                                             # residual through R only
    for i in range(20):
        W[i, rng.choice(D, 300, replace=False)] = rng.standard_normal(300)
    resid = ops[0].apply(W / np.linalg.norm(W, axis=1, keepdims=True))
    res = recover(np.concatenate([noise, resid]), B, Q)
    assert res.n_columns == 0 and res.n_coefficients == 0 and res.n_matrices == 0
    # appended to the demo samples, the noise rows get no coefficient and change nothing else
    both = recover(np.concatenate([Y, noise]), B, Q)
    assert not np.any(both.coef_sample >= Y.shape[0])
    base = recover(Y, B, Q)
    np.testing.assert_array_equal(both.coef_value, base.coef_value)
    np.testing.assert_array_equal(both.column_block_sign, base.column_block_sign)


def test_group_key_is_the_bitwise_majority_not_a_tied_representative():
    """Three blocks of one column in one sample, each key seen once: A flips σ_s[i], B is clean, C
    flips σ_s[k]. A–B–C is one component (distance 1 through B); its keys tie on count and A's is
    the lexicographically smallest, so taking the representative key would write A's flip into
    every block. The per-bit majority keeps every entry of R."""
    rng = np.random.default_rng(9)
    op = ss.MatrixBank(D, "block-sparse", 77, block_size=B, block_prob=Q).get(ss.tuple_name(1))
    for j in rng.permutation(D):
        truth = _true_blocks(op, int(j))
        if len(truth) >= 3:
            break
    rows = sorted(truth)[:3]
    x = np.zeros((1, D))
    x[0, j] = 0.6
    Y = op.apply(x)
    keep = np.zeros(D, dtype=bool)
    for ell in rows:
        keep[ell * B:(ell + 1) * B] = True
    Y[0, ~keep] = 0.0                                      # only the three blocks are nonzero
    ref_s = truth[rows[0]][:T] * truth[rows[0]][0]         # canonical σ̂_s of column j
    plus = [i for i in range(1, T) if ref_s[i] == 1]       # a flip there lowers the key
    i, k = plus[0], plus[1]
    Y[0, rows[0] * B + i] *= -1                            # block A
    Y[0, rows[2] * B + k] *= -1                            # block C
    res = recover(Y, B, Q, hamming_tol=1, count_frac=3 / (Q * D / B))
    assert res.n_columns == 1 and res.column_index[0] == j
    got_rows, signs = res.column_blocks(0)
    assert got_rows.tolist() == rows
    for ell, sg in zip(got_rows.tolist(), signs):
        np.testing.assert_array_equal(sg, truth[ell])


def test_hamming_tolerance_absorbs_single_flipped_entries():
    """Blocks with one flipped entry (σ_s, j or σ_m bit) split a sample's count when hamming_tol=0
    and are merged back with hamming_tol=1; rebuilding them from the group's key (and the vote)
    restores the true blocks."""
    rng = np.random.default_rng(4)
    op = ss.MatrixBank(D, "block-sparse", 77, block_size=B, block_prob=Q).get("tuple/1")
    j = int(np.argmax(np.diff(op.col_ptr)))
    truth = _true_blocks(op, j)
    rows = sorted(truth)
    n_j = len(rows)
    L = math.ceil(math.log2(D))
    safe = [p for p in range(1, T)] + [T + 1 + p for p in range(1, L)] + [2 * T + p for p in range(1, T)]
    S = 7
    x = rng.uniform(0.3, 0.7, S) * rng.choice([-1, 1], S)
    Xs = np.zeros((S, D))
    Xs[:, j] = x
    Y = op.apply(Xs)
    n_flip = n_j - 8                                     # 8 clean blocks < 0.8·q·d/b = 9.6
    for k in range(S):
        for ell in rng.choice(rows, n_flip, replace=False):
            Y[k, ell * B + rng.choice(safe)] *= -1       # j's MSB excluded: it could leave [0, d)
    assert recover(Y, B, Q, hamming_tol=0, count_frac=0.8).n_columns == 0
    res = recover(Y, B, Q, hamming_tol=1, count_frac=0.8)
    assert res.n_columns == 1 and res.column_index[0] == j
    rows_got, signs = res.column_blocks(0)
    assert rows_got.tolist() == rows
    for ell, s in zip(rows_got.tolist(), signs):
        np.testing.assert_array_equal(s, truth[ell])
    np.testing.assert_allclose(res.coef_value, x, rtol=1e-12)
    np.testing.assert_array_equal(res.coef_sample, np.arange(S))
    # one sample: no majority to lean on; the flipped copies are rebuilt from the group's key
    one = recover(Y[:1], B, Q, hamming_tol=1, count_frac=0.8)
    for ell, s in zip(*one.column_blocks(0)):
        np.testing.assert_array_equal(s, truth[int(ell)])


# ----------------------------------------------------------------------------- determinism, levels
def test_deterministic_and_thread_count_invariant(demo, monkeypatch):
    import sketchsim._parallel as par

    Y, _, _, res = demo
    again = recover(Y, B, Q)
    monkeypatch.setattr(par, "MIN_PARALLEL_WORK", 0)      # split every kernel call across threads
    n0 = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = recover(Y, B, Q)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = recover(Y, B, Q)
    finally:
        numba.set_num_threads(n0)
    for other in (again, one, two):
        for name, arr in other.arrays(with_columns=False).items():
            np.testing.assert_array_equal(arr, getattr(res, name), err_msg=name)
        np.testing.assert_array_equal(other.column_block_sign, res.column_block_sign)
        np.testing.assert_array_equal(other.column_block_row, res.column_block_row)
        np.testing.assert_array_equal(other.matrix_signature, res.matrix_signature)


def test_levels_keep_chain_and_level_one_unchanged(demo):
    Y, _, _, res = demo
    two = recover(Y, B, Q, levels=2)
    assert [lv.level for lv in two.levels] == [1, 2]
    S = Y.shape[0]
    lvl1 = two.coef_level == 1
    np.testing.assert_array_equal(two.coef_value[lvl1], res.coef_value)
    np.testing.assert_array_equal(two.coef_sample[lvl1], res.coef_sample)
    pairs = sorted(set(zip(res.coef_sample.tolist(), res.coef_matrix.tolist())))
    assert two.levels[1].n_samples == len(pairs)
    assert two.sample_level.tolist() == [1] * S + [2] * len(pairs)
    assert list(zip(two.sample_parent[S:].tolist(), two.sample_matrix[S:].tolist())) == pairs
    assert two.chain(0) == () and two.chain(S) == (pairs[0][1],)
    # a level-2 sample is a sparse coefficient vector: nothing block-like, nothing certified
    assert two.levels[1].n_certified == 0 and not np.any(two.coef_level == 2)
    assert two.n_columns == res.n_columns
    for lv in two.levels:
        assert sum(lv.status_counts.values()) == lv.n_blocks == lv.n_samples * (D // B)
    assert two.levels[0].n_new_columns == res.n_columns and two.levels[0].n_new_matrices == N
    assert "level 2" in two.summary()


def test_warm_up_compiles_every_kernel():
    DL.warm_up()
    for name in ("screen_blocks", "parse_blocks", "merge_buckets", "find_roots", "hamming_rows",
                 "first_nonfinite", "unpack_bits", "majority_bits"):
        assert getattr(K, name).signatures, name


def test_majority_bits_matches_numpy_vote():
    """Per-entry majority over each group's packed rows, ties broken by the group's first row."""
    rng = np.random.default_rng(11)
    n, nbits = 300, 70
    signs = rng.choice(np.array([-1, 1], dtype=np.int8), size=(n, nbits))
    words = DL._pack(signs)
    np.testing.assert_array_equal(K.unpack_bits(words, nbits), signs)
    order = rng.permutation(n).astype(np.int64)
    starts = np.concatenate([[0], np.sort(rng.choice(np.arange(1, n), 40, replace=False)), [n]]).astype(np.int64)
    got = K.majority_bits(words, order, starts, nbits)
    for g in range(starts.size - 1):
        rows = signs[order[starts[g]:starts[g + 1]]].astype(np.int64)
        tot = rows.sum(axis=0)
        np.testing.assert_array_equal(got[g], np.where(tot > 0, 1, np.where(tot < 0, -1, rows[0])))
    assert np.any(np.diff(starts) % 2 == 0)          # even-sized groups: ties are exercised


def test_sparse_level_equals_dense_screening():
    """Levels ≥ 2 screen only rows holding a fully nonzero block; the outcome (records,
    coefficients, counts) equals screening every row densely."""
    rng = np.random.default_rng(6)
    op = ss.MatrixBank(D, "block-sparse", 8, block_size=B, block_prob=Q).get("tuple/2")
    j = int(np.argmax(np.diff(op.col_ptr)))
    rows = np.zeros((5, D))
    rows[0] = 0.4 * op.column(j)
    rows[0, rng.choice(D, 30, replace=False)] += 0.01                 # stray coordinates
    rows[1] = -0.5 * op.column(j)
    rows[1, [ell * B + 3 for ell in _true_blocks(op, j)]] = 0.0      # every block partial
    rows[3, rng.choice(D, 40, replace=False)] = rng.standard_normal(40)
    r, c = np.nonzero(rows)
    ids = np.arange(100, 105)
    dense = DL._Learner(D, B, Q, 0.3, 0.8, 1).level(rows, ids, 2)
    sparse = DL._sparse_level(DL._Learner(D, B, Q, 0.3, 0.8, 1), (5, r, c, rows[r, c]), ids, 2)
    for got, want in zip(sparse[:2], dense[:2]):
        assert got.keys() == want.keys()
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    info_s, info_d = dict(sparse[2]), dict(dense[2])
    info_s.pop("time_s"), info_d.pop("time_s")
    assert info_s == info_d
    assert dense[1]["sample"].tolist() == [100] and dense[1]["col"].tolist() == [j]


# ----------------------------------------------------------------------------- validation
def _ok():
    return np.zeros((2, 96))


@pytest.mark.parametrize("samples,kwargs,match", [
    (np.full((2, 96), np.nan), {}, r"samples must be finite; got nan"),
    (np.full((2, 96), np.inf), {}, r"samples must be finite; got inf"),
    (np.zeros(96), {}, r"samples must be a 2-D array .* got shape \(96,\)"),
    (np.zeros((2, 2, 96)), {}, r"samples must be a 2-D array"),
    (np.zeros((2, 100)), {"block_size": 48}, r"multiple of block_size=48; got d=100"),
    (_ok(), {"block_size": 47}, r"block_size must be a multiple of 3 .* got 47"),
    (np.zeros((2, 96)), {"block_size": 24}, r"block_size must be a multiple of 3 and at least 3·\(⌈log2 d⌉\+3\) = 30 .*got 24"),
    (_ok(), {"block_prob": 0.0}, r"block_prob must lie in \(0, 1\]; got 0.0"),
    (_ok(), {"block_prob": 1.5}, r"block_prob must lie in \(0, 1\]; got 1.5"),
    (_ok(), {"hypercube_tol": 0.0}, r"hypercube_tol must lie in \(0, 1\)"),
    (_ok(), {"hypercube_tol": 1.0}, r"hypercube_tol must lie in \(0, 1\)"),
    (_ok(), {"count_frac": 0.0}, r"count_frac must lie in \(0, 1\]; got 0.0"),
    (_ok(), {"count_frac": 1.2}, r"count_frac must lie in \(0, 1\]; got 1.2"),
    (_ok(), {"hamming_tol": -1}, r"hamming_tol must be >= 0; got -1"),
    (_ok(), {"hamming_tol": 4}, r"hamming_tol must lie in \[0, ⌊\(b/3 − 1\)/4⌋\] = \[0, 3\] .*got 4"),
    (_ok(), {"levels": 0}, r"levels must be >= 1; got 0"),
])
def test_validation_rules(samples, kwargs, match):
    args = {"block_size": 48, "block_prob": 0.5}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        recover(samples, args.pop("block_size"), args.pop("block_prob"), **args)


def test_small_count_threshold_warns():
    with pytest.warns(ss.TheoremPreconditionWarning, match=r"count_frac·q·d/b = 0.125"):
        recover(np.zeros((1, 96)), 48, 0.125)


def test_empty_sample_set_gives_empty_result():
    res = recover(np.zeros((0, 96)), 48, 0.5)
    assert res.n_columns == 0 and res.n_coefficients == 0 and res.column_values().shape == (0, 96)


# ----------------------------------------------------------------------------- CLI
CONTRACT = {"column_matrix", "column_index", "column_values", "coef_sample", "coef_matrix", "coef_column",
            "coef_value"}


def test_cli_writes_exactly_the_contract_arrays(tmp_path, demo, capsys):
    Y, _, _, res = demo
    inp, out = tmp_path / "y.npy", tmp_path / "out.npz"
    np.save(inp, Y[:20])
    assert main(["learn-dictionary", str(inp), "--block-size", str(B), "--block-prob", str(Q),
                 "--out", str(out)]) == 0
    z = np.load(out)
    assert set(z.files) == CONTRACT
    api = recover(Y[:20], B, Q)
    assert z["column_values"].shape == (api.n_columns, D)
    np.testing.assert_array_equal(z["column_values"], api.column_values())
    for name in CONTRACT - {"column_values"}:
        np.testing.assert_array_equal(z[name], getattr(api, name), err_msg=name)
    assert api.n_columns > 0


def test_cli_levels_adds_provenance_arrays(tmp_path):
    Y, _, _ = _make(S=6, seed=2)
    inp, out = tmp_path / "y.npy", tmp_path / "out.npz"
    np.save(inp, Y)
    assert main(["learn-dictionary", str(inp), "--block-size", str(B), "--block-prob", str(Q),
                 "--levels", "2", "--hamming-tol", "0", "--out", str(out)]) == 0
    assert set(np.load(out).files) == CONTRACT | {"coef_level", "sample_level", "sample_parent", "sample_matrix"}


@pytest.mark.parametrize("content,flags,match", [
    ("nan", ["--block-size", "48", "--block-prob", "0.5"], "samples must be finite"),
    ("ok", ["--block-size", "44", "--block-prob", "0.5"], "block_size must be a multiple of 3"),
    ("ok", ["--block-size", "45", "--block-prob", "0.5"], "must be a multiple of block_size=45"),
    ("ok", ["--block-size", "48", "--block-prob", "0.5", "--count-frac", "2"], "count_frac must lie in"),
    ("missing", ["--block-size", "48", "--block-prob", "0.5"], "could not be read"),
])
def test_cli_bad_input_exits_2_with_one_line(tmp_path, capsys, content, flags, match):
    inp, out = tmp_path / "y.npy", tmp_path / "out.npz"
    if content != "missing":
        np.save(inp, np.full((2, 96), np.nan) if content == "nan" else np.zeros((2, 96)))
    assert main(["learn-dictionary", str(inp), *flags, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("sketchsim learn-dictionary: error:") and match in err
    assert not out.exists()


def test_cli_refuses_column_values_larger_than_memory(tmp_path, demo, capsys, monkeypatch):
    import sketchsim.cli as cli

    Y = demo[0]
    inp, out = tmp_path / "y.npy", tmp_path / "out.npz"
    np.save(inp, Y[:10])
    monkeypatch.setattr(cli, "available_memory_bytes", lambda: 1000)
    assert main(["learn-dictionary", str(inp), "--block-size", str(B), "--block-prob", str(Q),
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "column_values" in err and "available memory" in err and err.count("\n") == 1
    assert not out.exists()


def test_cli_subprocess_contract(tmp_path):
    inp, out = tmp_path / "y.npy", tmp_path / "out.npz"
    np.save(inp, np.zeros((3, 96)))
    p = subprocess.run([sys.executable, "-m", "sketchsim", "learn-dictionary", str(inp), "--block-size", "48",
                        "--block-prob", "0.5", "--out", str(out)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert set(np.load(out).files) == CONTRACT
    p = subprocess.run([sys.executable, "-m", "sketchsim", "learn-dictionary", str(inp), "--block-size", "50",
                        "--block-prob", "0.5", "--out", str(out)], capture_output=True, text=True)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "Traceback" not in p.stderr


@pytest.mark.parametrize("max_run", [40, 1000])
def test_group_by_sample_equals_lexsort_grouping(max_run):
    """The per-sample insertion sort gives _group's lexicographic order, starts and inverse (runs
    longer than _INSERTION_MAX fall back to _group itself)."""
    rng = np.random.default_rng(12)
    samp = np.sort(rng.integers(0, 3000 // max_run, 3000)).astype(np.int64)
    keys = rng.integers(0, 4, size=(3000, 3)).astype(np.uint64)       # many equal keys
    keys[::7, 1] = np.uint64(2 ** 63 + 5)                                # words above 2^63 compare unsigned
    got = DL._group_by_sample(samp, keys)
    want = DL._group([samp] + [keys[:, w] for w in range(3)])
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
