"""Tests of the decoders (sketchsim.decode) and of the predictions they rely on (sketchsim.theory).

Three kinds of checks (THEORY.md §2–4):

* exact: where the mathematics is exact (matrices replaced by zero / identity / diagonal /
  block-structured ones, or a sketch built from one formal word) the decoders return the truth to
  1e-10;
* word expansion: the formal-word expansion of ``theory`` reproduces the engine exactly (diagonal
  matrices), and from it the all-tuple word carries exactly c_h·w_path·x while the naive word is
  biased (THEORY.md §2.3);
* statistical: with the ``hadamard`` family at large d and fixed seeds, every estimate lies within
  k·σ of the truth, σ from :func:`sketchsim.theory.noise_level` and k from the Gaussian ℓ∞ quantile
  at false-alarm probability ``ALPHA``. Each such test fails when the constant it protects is off
  by 2 (checked by hand while writing them).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from sketchsim import Graph, MatrixBank, random_network, sketch, sketch_batch, sketch_objects
from sketchsim import decode as D
from sketchsim import theory as T
from sketchsim.matrices import module_name, tuple_name

ALPHA = 1e-4
"""False-alarm probability of each statistical assertion (union bound over coordinates)."""


def k_sigma(n=1):
    """k with P(max of n |N(0,1)| > k) ≤ ALPHA."""
    return T.gaussian_max_quantile(n, ALPHA)


def unit(rng, L):
    x = np.abs(rng.standard_normal(L)) + 0.05
    return x / np.linalg.norm(x)


def obj(oid, module, x, inputs=()):
    return {"id": oid, "module": module, "attributes": [float(v) for v in x],
            "inputs": [{"id": c, "weight": float(w)} for c, w in inputs]}


def path_graph(path, weights, rng, L=4, sibling_module="S", x=None):
    """Output → … → target "t" (module P) along ``path``, with leaf siblings at every level.

    Each parent on the path has max(i, 2) inputs: the path child at position i with weight
    weights[k], leaf siblings elsewhere sharing the rest equally. Intermediate objects are
    "i<depth>" of module M<depth>; siblings are of module S<depth>, except that with
    ``sibling_module="P"`` the target's own siblings are of module P (same module, same depth).
    Returns (graph, target attributes, w_path).
    """
    h = len(path) + 1
    x_t = unit(rng, L) if x is None else np.asarray(x, float)
    objects = {"t": obj("t", "P", x_t)}
    lists = []
    for k, (i, w) in enumerate(zip(path, weights)):
        depth = k + 2
        child = "t" if depth == h else f"i{depth}"
        if child != "t":
            objects[child] = obj(child, f"M{depth}", unit(rng, L))
        n = max(i, 2)
        ins = []
        for pos in range(1, n + 1):
            if pos == i:
                ins.append({"id": child, "weight": float(w)})
                continue
            sid = f"s{depth}_{pos}"
            smod = "P" if (sibling_module == "P" and depth == h) else f"S{depth}"
            objects[sid] = obj(sid, smod, unit(rng, L))
            ins.append({"id": sid, "weight": (1.0 - w) / (n - 1)})
        lists.append(ins)
    for k in range(1, len(path)):
        objects[f"i{k + 1}"]["inputs"] = lists[k]
    return Graph(list(objects.values()), lists[0]), x_t, float(np.prod(weights))


def shift_matrix(d):
    """Permutation P with P e_1 = e_d (so ⟨P e_1, x⟩ = 0 for x supported on the first d−1 coords)."""
    P = np.zeros((d, d))
    P[(np.arange(d) - 1) % d, np.arange(d)] = 1.0
    return P


@pytest.fixture(scope="module")
def haar64():
    return MatrixBank(64, "haar", seed=3)


@pytest.fixture(scope="module")
def small():
    """A tiny sketch for the validation tests."""
    rng = np.random.default_rng(0)
    g, x, w = path_graph([2, 1], [0.6, 0.5], rng)
    bank = MatrixBank(64, "hadamard", seed=1)
    return g, bank, sketch(g, bank)


# =============================================================================== theory: words
def _diag_prediction(expansion, lam, d):
    s = np.zeros(d)
    for word, a in expansion.items():
        v = np.zeros(d)
        if word[-1].endswith("/2"):
            v[0] = a[0]                     # e_1 channel
        else:
            v[:len(a)] = a
        coef = np.ones(d)
        for name in word:
            coef = coef * lam[name]
        s += coef * v
    return s


@pytest.mark.parametrize("seed", [0, 1])
def test_word_expansion_reproduces_engine_with_diagonal_matrices(seed):
    # With commuting diagonal matrices every coordinate evaluates the word polynomial at a new point.
    g = random_network(depth=3, fan_in=(1, 3), modules_per_level=2, attr_dim=(2, 4), share_prob=0.4,
                       random_state=seed)
    d = 16
    base = MatrixBank(d, "hadamard", seed=0)
    rng = np.random.default_rng(seed)
    lam = {n: rng.uniform(-1, 1, d) for n in base.matrix_names(g)}
    bank = base.replaced({n: np.diag(v) for n, v in lam.items()}, default="zero")
    expected = _diag_prediction(T.word_expansion(g), lam, d)
    np.testing.assert_allclose(sketch(g, bank), expected, rtol=0, atol=1e-13)


@pytest.mark.parametrize("path", [[1], [2], [3, 1], [1, 2], [2, 2, 1]])
def test_all_tuple_word_carries_exactly_c_h_w_x_even_with_same_module_siblings(path):
    rng = np.random.default_rng(len(path))
    weights = [0.5, 0.6, 0.7][:len(path)]
    g, x, w = path_graph(path, weights, rng, sibling_module="P")
    h = len(path) + 1
    E = T.word_expansion(g)
    a = T.word_coefficient(E, D.path_word(path, "P"), length=len(x))
    np.testing.assert_allclose(a, T.depth_constant(h) * w * x, rtol=1e-13, atol=0)
    a_e = T.word_coefficient(E, D.path_word(path, "P", channel=2))
    np.testing.assert_allclose(a_e, [T.depth_constant(h) * w], rtol=1e-13)


def test_naive_word_is_biased_as_predicted_depth2():
    # THEORY.md §2.3: t1 at position 1 and t2 at position 2 of one module: E[naive(t1)] = 2x1 + (w2/w1) x2.
    rng = np.random.default_rng(5)
    x1, x2 = unit(rng, 5), unit(rng, 5)
    g = Graph([obj("t1", "P", x1), obj("t2", "P", x2)],
              [{"id": "t1", "weight": 0.5}, {"id": "t2", "weight": 0.4}])
    c = T.depth_constant(2)
    naive = T.word_coefficient(g, [tuple_name(1), module_name("P", 1)], length=5) / (c * 0.5)
    np.testing.assert_allclose(naive, 2 * x1 + 0.8 * x2, rtol=1e-13)
    # depth 3, path (1, 2): E[naive(c12)] = 2 x_c12 + x_c11 for equal weights
    g3 = Graph([obj("t", "T", [1.0], [("c11", 0.5), ("c12", 0.5)]), obj("c11", "P", x1), obj("c12", "P", x2)],
               [{"id": "t", "weight": 1.0}])
    naive3 = T.word_coefficient(g3, [tuple_name(1), tuple_name(2), module_name("P", 1)], length=5)
    np.testing.assert_allclose(naive3 / (T.depth_constant(3) * 0.5), 2 * x2 + x1, rtol=1e-13)


def test_identity_words_carry_weighted_sums_in_a_dag():
    # Theorem 3 basis: the identity words read c_h Σ W_θ x_θ and c_h Σ W_θ (W summed over DAG paths).
    g = random_network(depth=2, fan_in=(2, 3), modules_per_level=1, attr_dim=3, share_prob=0.7,
                       random_state=4)
    E = T.word_expansion(g)
    for m in g.modules:
        (h,) = g.module_depths[m]
        objs = [g.index[o] for o in g.objects_of(m)]
        W = g.effective_weight[objs]
        xs = np.array([g.attributes[o] for o in objs])
        c = T.depth_constant(h)
        np.testing.assert_allclose(T.word_coefficient(E, [module_name(m, 1)]), c * W @ xs, rtol=1e-13)
        np.testing.assert_allclose(T.word_coefficient(E, [module_name(m, 2)]), [c * W.sum()], rtol=1e-13)


def test_expected_dot_shared_and_disjoint_modules():
    rng = np.random.default_rng(6)
    xa, xe = unit(rng, 3), unit(rng, 3)
    g1 = Graph([obj("a", "P", xa), obj("b", "Q", [1.0])], [{"id": "a", "weight": 0.5}, {"id": "b", "weight": 0.5}])
    g2 = Graph([obj("e", "P", xe)], [{"id": "e", "weight": 0.6}])
    g3 = Graph([obj("e", "R", xe)], [{"id": "e", "weight": 0.6}])
    assert T.expected_dot(g1, g3) == 0.0                                   # Theorem 2(i)
    bound = T.similarity_lower_bound(2, 0.5, 0.6, xa @ xe)
    # a and e both at position 1: their 8 branches give 7 formal words, R_1 R_{P,1} twice (tuple R_1 or
    # slot R_1): Σ multiplicity² = 6 + 2² = 10 word products, i.e. 10/4 of the 4-word bound
    assert T.expected_dot(g1, g2) == pytest.approx(2.5 * bound, rel=1e-13)
    assert T.expected_dot(g1, g2) >= bound


# =============================================================================== exact decoding
@pytest.mark.parametrize("path", [[2], [1, 3], [2, 1, 2]])
def test_attributes_exact_when_only_R_M1_survives(haar64, path):
    # Every matrix but R_{P,1} is zero: s = c_h w R_{P,1} x exactly (THEORY.md §2.1), siblings vanish.
    rng = np.random.default_rng(10 + len(path))
    g, x, w = path_graph(path, [0.7, 0.5, 0.6][:len(path)], rng)
    h = len(path) + 1
    bank = haar64.replaced({module_name("P", 1): haar64.get(module_name("P", 1))}, default="zero")
    s = sketch(g, bank)
    np.testing.assert_allclose(D.attributes(s, bank, "P", h, w, length=len(x)), x, atol=1e-10)
    np.testing.assert_allclose(D.attribute_sum(s, bank, "P", h, w, length=len(x)), x, atol=1e-10)


def test_batched_decoding_matches_truth_with_per_row_weights(haar64):
    rng = np.random.default_rng(11)
    g, x, _ = path_graph([2, 1], [0.7, 0.5], rng)
    bank = haar64.replaced({module_name("P", 1): haar64.get(module_name("P", 1))}, default="zero")
    B = 5
    X = np.stack([unit(rng, 4) for _ in range(B)])
    out_w = rng.dirichlet(np.ones(2), size=B)
    i2_w = rng.dirichlet(np.ones(2), size=B)
    S = sketch_batch(g, bank, attributes={"t": X}, weights={"i2": i2_w}, output_weights=out_w)
    w = out_w[:, 1] * i2_w[:, 0]
    Xhat = D.attributes(S, bank, "P", 3, w, length=4)
    np.testing.assert_allclose(Xhat, X, atol=1e-10)
    for b in range(B):
        np.testing.assert_allclose(D.attributes(S[b], bank, "P", 3, float(w[b]), length=4), Xhat[b], atol=1e-12)


@pytest.mark.parametrize("h", [2, 3])
def test_counting_forms_exact_with_orthogonal_channels(h):
    # R_{P,1} = I and R_{P,2} e_1 = e_d ⟂ R_{P,1} x: the counting channel reads c_h Σ W exactly.
    d = 64
    rng = np.random.default_rng(20 + h)
    xs = [unit(rng, 4) for _ in range(3)]
    leaves = [obj(f"p{k}", "P", xs[k]) for k in range(3)] + [obj("q", "Q", [1.0])]
    if h == 2:
        g = Graph(leaves, [{"id": f"p{k}", "weight": 0.2} for k in range(3)] + [{"id": "q", "weight": 0.4}])
        wstar = 0.2
    else:
        top = obj("top", "T", [1.0], [(f"p{k}", 0.25) for k in range(3)] + [("q", 0.25)])
        g = Graph(leaves + [top], [{"id": "top", "weight": 0.8}])
        wstar = 0.2
    bank = MatrixBank(d, "hadamard", 0).replaced(
        {module_name("P", 1): np.eye(d), module_name("P", 2): shift_matrix(d)}, default="zero")
    s = sketch(g, bank)
    assert D.count(s, bank, "P", h, wstar) == pytest.approx(3.0, abs=1e-10)
    np.testing.assert_allclose(D.attribute_sum(s, bank, "P", h, wstar, length=4), sum(xs), atol=1e-10)
    np.testing.assert_allclose(D.mean_attributes(s, bank, "P", length=4), sum(xs) / 3, atol=1e-10)
    # a unique module: the self-normalised Theorem 1(i) form is exact too
    g1 = Graph([obj("p", "P", xs[0]), obj("q", "Q", [1.0])], [{"id": "p", "weight": 0.3}, {"id": "q", "weight": 0.7}])
    np.testing.assert_allclose(D.attributes(sketch(g1, bank), bank, "P", 2, length=4), xs[0], atol=1e-10)


C_H = {2: 1 / 32, 3: 1 / 512, 4: 1 / 8192}
"""c_h = 2^{−(4h−3)} written out from the paper (THEORY.md §2.1), never taken from sketchsim.theory."""
C_OBJ = {2: 1 / 2, 3: 1 / 32, 4: 1 / 512}
"""2^{−(4h−7)}, the coefficient of s_object under its word A_obj (THEORY.md §2.2), written out."""


def literal_word(path, module=None, channel=1):
    """THEORY.md §2.2 written out: R_{i_1} R_2 R_{i_2} R_2 ⋯ R_2 R_{i_{h−1}} [R_1 R_{M,channel}]."""
    names = []
    for k, i in enumerate(path):
        names += (["tuple/2"] if k else []) + [f"tuple/{i}"]
    return names + ([] if module is None else ["tuple/1", f"module/{module}/{channel}"])


@pytest.mark.parametrize("path", [[1], [2], [3, 1], [1, 2], [2, 3, 1]])
def test_path_decoder_inverts_the_all_tuple_word(haar64, path):
    # s = c_h w A x for the all-tuple word A, with c_h and A written from the paper (not from the
    # decoder's helpers, so a wrong c_h or word makes this fail): the decoder must return x.
    rng = np.random.default_rng(30 + len(path))
    x = unit(rng, 6)
    h, w = len(path) + 1, 0.37
    word = literal_word(path, "P")
    assert D.path_word(path, "P") == word
    v = x
    for name in reversed(word):
        v = haar64.get(name).apply(v)
    s = C_H[h] * w * v
    np.testing.assert_allclose(D.attributes_on_path(s, haar64, path, "P", w, length=6), x, atol=1e-10)
    # self-normalised: add the counting word; R_{P,1} = I, R_{P,2} e_1 = e_d keep the channels apart
    d = haar64.d_sketch
    bank = haar64.replaced({module_name("P", 1): np.eye(d), module_name("P", 2): shift_matrix(d)})
    sx, se = x, np.eye(d)[0]
    for name in reversed(word):
        sx = bank.get(name).apply(sx)
    for name in reversed(literal_word(path, "P", channel=2)):
        se = bank.get(name).apply(se)
    s = C_H[h] * w * (sx + se)
    np.testing.assert_allclose(D.attributes_on_path(s, bank, path, "P", length=6), x, atol=1e-10)


@pytest.mark.parametrize("path", [[4], [1, 2], [3, 2, 1]])
def test_object_sketch_inverts_its_word(haar64, path):
    # s = 2^{−(4h−7)} w A_obj v with the constant and the word written from the paper (THEORY §2.2)
    rng = np.random.default_rng(40)
    v = rng.standard_normal(haar64.d_sketch)
    s = v
    word = literal_word(path)
    assert D.path_word(path) == word
    for name in reversed(word):
        s = haar64.get(name).apply(s)
    w = 0.3
    s = s * w * C_OBJ[len(path) + 1]
    np.testing.assert_allclose(D.object_sketch(s, haar64, path, weight=w), v, atol=1e-10)


def test_object_sketch_exact_from_a_real_sketch_depth2():
    # Every matrix acts inside the first half H0 except R_3, which swaps the halves. Only the target
    # (position 3) reaches H1, so (2/w) R_3ᵀ s restricted to H0 is exactly s_object(target).
    d, half = 64, 32
    rng = np.random.default_rng(50)
    g = Graph([obj("a", "Q", unit(rng, 4)), obj("b", "P", unit(rng, 4)),
               obj("t", "T", unit(rng, 4), [("c1", 0.6), ("c2", 0.4)]),
               obj("c1", "C", unit(rng, 4)), obj("c2", "C", unit(rng, 4))],
              [{"id": "a", "weight": 0.3}, {"id": "b", "weight": 0.2}, {"id": "t", "weight": 0.5}])
    base = MatrixBank(half, "haar", seed=5)
    over = {}
    for k, name in enumerate(MatrixBank(d, "hadamard", 0).matrix_names(g)):
        M = np.zeros((d, d))
        M[:half, :half] = base.dense(f"tuple/{k + 10}")        # an independent Haar block per name
        over[name] = M
    swap = np.zeros((d, d))
    swap[np.arange(d), (np.arange(d) + half) % d] = 1.0
    over[tuple_name(3)] = swap
    bank = MatrixBank(d, "hadamard", 0).replaced(over, default="zero")
    objects, s = sketch_objects(g, bank, return_overall=True)
    s_t = objects["t"]
    assert np.all(s_t[half:] == 0)
    np.testing.assert_allclose(D.object_sketch(s, bank, [3], weight=0.5)[:half], s_t[:half], atol=1e-12)


@pytest.mark.parametrize("path", [[2], [1, 2], [3, 1, 2]])
def test_object_sketch_is_consistent_with_the_path_decoder(path):
    # The R_1-slot branch of s_object carries s_attr with coefficient 1/16: 16·R_{P,1}ᵀR_1ᵀ ŝ = path decoder.
    rng = np.random.default_rng(60)
    g, x, w = path_graph(path, [0.6, 0.5, 0.5][:len(path)], rng, sibling_module="P")
    bank = MatrixBank(1024, "hadamard", seed=2)
    s = sketch(g, bank)
    shat = D.object_sketch(s, bank, path, weight=w)
    via = 16 * bank.get(module_name("P", 1)).apply_t(bank.get(tuple_name(1)).apply_t(shat))
    np.testing.assert_allclose(via, D.attributes_on_path(s, bank, path, "P", w), rtol=1e-10, atol=1e-12)


# =============================================================================== column-norm correction
def _quiet_sketch(fn, *args, **kw):
    import warnings

    from sketchsim import TheoremPreconditionWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TheoremPreconditionWarning)
        return fn(*args, **kw)


@pytest.mark.parametrize("family,d,kw", [("block-sparse", 384, {"block_size": 48, "block_prob": 0.5}),
                                         ("gaussian", 64, {})])
def test_column_norm_decoders_match_the_literal_twin(family, d, kw):
    # THEORY.md §2.4 (our reading): every decoder divides coordinate j by ‖A e_j‖²; the literal
    # NumPy twin works on dense matrices and the constants are written out (C_H).
    from sketchsim import reference as ref

    rng = np.random.default_rng(130)
    g, x, w = path_graph([2, 1], [0.6, 0.5], rng)          # target t of module P at depth 3, path (2, 1)
    bank = MatrixBank(d, family, seed=5, **kw)
    s = _quiet_sketch(sketch, g, bank)
    M = {n: bank.dense(n) for n in ("module/P/1", "module/P/2", "tuple/1", "tuple/2")}
    word = ref.word_matrix([M[n] for n in literal_word([2, 1], "P")])
    word_e = ref.word_matrix([M[n] for n in literal_word([2, 1], "P", channel=2)])
    r1, r2e1 = M["module/P/1"], M["module/P/2"][:, 0]
    for keep in (None, d // 2):
        e = s if keep is None else D.erase(s, keep, bank=bank)
        cases = [
            (D.attributes(e, bank, "P", 3, w, length=4), ref.decode_word(s, r1, C_H[3], w, 4, keep)),
            (D.attribute_sum(e, bank, "P", 3, w, length=4), ref.decode_word(s, r1, C_H[3], w, 4, keep)),
            (D.attributes(e, bank, "P", 3, length=4), ref.decode_ratio(s, r1, r2e1, 4, keep)),
            (D.mean_attributes(e, bank, "P", length=4), ref.decode_ratio(s, r1, r2e1, 4, keep)),
            (D.count(e, bank, "P", 3, w), ref.decode_count(s, r2e1, C_H[3], w, keep)),
            (D.attributes_on_path(e, bank, [2, 1], "P", w, length=4), ref.decode_word(s, word, C_H[3], w, 4, keep)),
            (D.attributes_on_path(e, bank, [2, 1], "P", length=4), ref.decode_ratio(s, word, word_e[:, 0], 4, keep)),
            (D.attributes(e, bank, "P", 3, w, length=4, column_norm=False),
             ref.decode_word(s, r1, C_H[3], w, 4, keep, column_norm=False)),
            (D.count(e, bank, "P", 3, w, column_norm=False),
             ref.decode_count(s, r2e1, C_H[3], w, keep, column_norm=False)),
            (D.attributes_on_path(e, bank, [2, 1], "P", length=4, column_norm=False),
             ref.decode_ratio(s, word, word_e[:, 0], 4, keep, column_norm=False)),
        ]
        for k, (got, want) in enumerate(cases):
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12, err_msg=f"case {k}, keep {keep}")
    # the correction is on by default here, and really changes the estimate where ‖R_{P,2} e_1‖ ≠ 1
    # (a column of D(b, q, d) with other than q·d/b nonzero blocks: the bank seed is 5 below)
    if family == "block-sparse":
        op = bank.get("module/P/2")
        assert op.col_ptr[1] - op.col_ptr[0] != round(op.q * d / op.b)
    assert not np.allclose(D.count(s, bank, "P", 3, w), D.count(s, bank, "P", 3, w, column_norm=False))
    # a batch decodes row by row (per-row weights)
    S = np.stack([s, 0.5 * s])
    np.testing.assert_allclose(D.attributes_on_path(S, bank, [2, 1], "P", np.array([w, w / 2]), length=4),
                               np.stack([ref.decode_word(s, word, C_H[3], w, 4)] * 2), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("family", ["haar", "hadamard"])
def test_column_norm_correction_leaves_orthonormal_families_bit_identical(family):
    rng = np.random.default_rng(131)
    g, x, w = path_graph([2, 1], [0.6, 0.5], rng)
    bank = MatrixBank(64, family, seed=4)
    s = sketch(g, bank)
    for fn in (lambda cn: D.attributes(s, bank, "P", 3, w, column_norm=cn),
               lambda cn: D.attributes(s, bank, "P", 3, column_norm=cn),
               lambda cn: D.attributes_on_path(s, bank, [2, 1], "P", w, length=4, column_norm=cn),
               lambda cn: D.attributes_on_path(s, bank, [2, 1], "P", column_norm=cn),
               lambda cn: D.count(s, bank, "P", 3, w, column_norm=cn),
               lambda cn: D.mean_attributes(s, bank, "P", column_norm=cn)):
        np.testing.assert_array_equal(fn(None), fn(False))
        np.testing.assert_allclose(fn(True), fn(False), rtol=1e-12, atol=1e-13)   # norms are 1
    with pytest.raises(ValueError, match=r"column_norm must be None, True or False; got 'yes'"):
        D.count(s, bank, "P", 3, w, column_norm="yes")


def test_column_norm_correction_removes_the_block_sparse_bias():
    # D(b, q, d): ‖R e_j‖² = 1 ± √(b(1−q)/(qd)) (THEORY.md §2.4, §3), a per-bank multiplicative error
    # of the paper's estimator. Over many inputs with one bank, the slope of the uncorrected estimate
    # ⟨R e_j, s⟩/(c_h w) (written out here, c_2 = 1/32) on the truth is ‖R e_j‖²; the corrected
    # decoders' slope is 1 up to the cross-word noise. Count n̂ (Theorem 3(i)) and summed attributes
    # (Theorem 3(ii)), depth 2, n ∈ 1..4 objects of P at w* = 0.2 each, 12 banks.
    d, b, q, w, L, B = 1536, 48, 0.15, 0.2, 4, 16

    def slope(est, truth):
        est, truth = np.ravel(est), np.ravel(truth)
        return float(truth @ est / (truth @ truth))

    cnt = {"unc": [], "cor": [], "norm": []}
    att = {"unc": [], "cor": [], "norm": []}
    for seed in range(12):
        bank = MatrixBank(d, "block-sparse", seed=seed, block_size=b, block_prob=q)
        r2e1 = bank.dense("module/P/2")[:, 0]
        r1 = bank.dense("module/P/1")[:, :L]
        rng = np.random.default_rng(seed)
        n_true, n_unc, n_cor, x_true, x_unc, x_cor = [], [], [], [], [], []
        for n in (1, 2, 3, 4):
            g = Graph([obj(f"t{k}", "P", np.ones(L) / 2) for k in range(n)],
                      [{"id": f"t{k}", "weight": w} for k in range(n)])
            X = {f"t{k}": np.stack([unit(rng, L) for _ in range(B)]) for k in range(n)}
            S = _quiet_sketch(sketch_batch, g, bank, attributes=X)
            n_true.append(np.full(B, n))
            n_unc.append(S @ r2e1 / (C_H[2] * w))
            n_cor.append(D.count(S, bank, "P", 2, w))
            x_true.append(sum(X.values()))
            x_unc.append(S @ r1 / (C_H[2] * w))
            x_cor.append(D.attribute_sum(S, bank, "P", 2, w, length=L))
        n_true, n_unc, n_cor = map(np.concatenate, (n_true, n_unc, n_cor))
        x_true, x_unc, x_cor = map(np.concatenate, (x_true, x_unc, x_cor))
        cnt["unc"].append(slope(n_unc, n_true))
        cnt["cor"].append(slope(n_cor, n_true))
        cnt["norm"].append(float(r2e1 @ r2e1))
        att["unc"] += [slope(x_unc[:, j], x_true[:, j]) for j in range(L)]
        att["cor"] += [slope(x_cor[:, j], x_true[:, j]) for j in range(L)]
        att["norm"] += list(np.sum(r1 ** 2, axis=0))

    def rms(a, b=1.0):
        return float(np.sqrt(np.mean((np.asarray(a) - b) ** 2)))

    # the column norms really spread as predicted (relative s.d. √(b(1−q)/(qd)) ≈ 0.42)
    spread = math.sqrt(b * (1 - q) / (q * d))
    assert 0.5 * spread < rms(cnt["norm"] + att["norm"]) < 1.5 * spread
    # the uncorrected slope is the column norm (the bias the correction removes) ...
    assert rms(cnt["unc"], cnt["norm"]) < 0.5 * rms(cnt["unc"])
    # ... and the corrected decoders' slopes are closer to 1
    assert rms(cnt["cor"]) < 0.5 * rms(cnt["unc"])
    assert rms(att["cor"]) < 0.75 * rms(att["unc"])


# =============================================================================== statistical
D_BIG = 2 ** 18


@pytest.fixture(scope="module")
def big_pair():
    """Depth-2 sketch at d = 2^18: t1 (P, pos 1, w 0.5), t2 (P, pos 2, w 0.4), u (U, pos 3, w 0.1)."""
    rng = np.random.default_rng(70)
    x1, x2, xu = unit(rng, 6), unit(rng, 6), unit(rng, 6)
    g = Graph([obj("t1", "P", x1), obj("t2", "P", x2), obj("u", "U", xu)],
              [{"id": "t1", "weight": 0.5}, {"id": "t2", "weight": 0.4}, {"id": "u", "weight": 0.1}])
    bank = MatrixBank(D_BIG, "hadamard", seed=7)
    return g, bank, sketch(g, bank), (x1, x2, xu)


def test_theorem1i_unique_module_within_noise_level(big_pair):
    g, bank, s, (_, _, xu) = big_pair
    L = len(xu)
    sigma = T.noise_level(np.linalg.norm(s), D_BIG, 2, 0.1)
    est = D.attributes(s, bank, "U", 2, 0.1, length=L)
    assert np.max(np.abs(est - xu)) <= k_sigma(L) * sigma
    # self-normalised: x̂ ≈ x + (n_x − x n_e)/(c w), so σ grows by at most √(1 + ‖x‖∞²)
    est_sn = D.attributes(s, bank, "U", 2, length=L)
    assert np.max(np.abs(est_sn - xu)) <= k_sigma(L) * sigma * math.sqrt(1 + np.max(xu) ** 2)


def test_theorem1ii_all_tuple_unbiased_where_naive_is_biased_depth2(big_pair):
    g, bank, s, (x1, x2, _) = big_pair
    L, c = len(x1), T.depth_constant(2)
    tol1 = k_sigma(L) * T.noise_level(np.linalg.norm(s), D_BIG, 2, 0.5)
    tol2 = k_sigma(L) * T.noise_level(np.linalg.norm(s), D_BIG, 2, 0.4)
    assert np.max(np.abs(D.attributes_on_path(s, bank, [1], "P", 0.5, length=L) - x1)) <= tol1
    assert np.max(np.abs(D.attributes_on_path(s, bank, [2], "P", 0.4, length=L) - x2)) <= tol2
    # the naive word R_{i_1} R_{M,1} (THEORY.md §2.3) lands on its predicted biased mean instead
    naive = bank.get(module_name("P", 1)).apply_t(bank.get(tuple_name(1)).apply_t(s))[:L] / (c * 0.5)
    predicted = T.word_coefficient(g, [tuple_name(1), module_name("P", 1)], length=L) / (c * 0.5)
    assert np.max(np.abs(naive - predicted)) <= tol1
    assert np.max(np.abs(naive - x1)) > 10 * tol1
    # self-normalised path decoder (weight estimated through the counting word)
    est = D.attributes_on_path(s, bank, [1], "P", length=L)
    assert np.max(np.abs(est - x1)) <= tol1 * math.sqrt(1 + np.max(x1) ** 2)


def test_theorem1ii_all_tuple_unbiased_depth3_over_seeds():
    # THEORY.md §2.3, depth 3: c11, c12 of one module under t; path (1, 2). Length-1 attributes (x = 1),
    # averaged over independent banks: E[all-tuple] = 1, E[naive] = 2 + w11/w12.
    g = Graph([obj("t", "T", [1.0], [("c11", 0.3), ("c12", 0.7)]), obj("c11", "P", [1.0]),
               obj("c12", "P", [1.0])], [{"id": "t", "weight": 1.0}])
    d, n_seeds, w, c = 2 ** 18, 12, 0.7, T.depth_constant(3)
    est, naive, sn, sig = [], [], [], []
    for seed in range(n_seeds):
        bank = MatrixBank(d, "hadamard", seed=100 + seed)
        s = sketch(g, bank)
        sig.append(T.noise_level(np.linalg.norm(s), d, 3, w))
        est.append(D.attributes_on_path(s, bank, [1, 2], "P", w, length=1)[0])
        sn.append(D.attributes_on_path(s, bank, [1, 2], "P", length=1)[0])
        t = s
        for name in (tuple_name(1), tuple_name(2), module_name("P", 1)):
            t = bank.get(name).apply_t(t)
        naive.append(t[0] / (c * w))
    se = math.sqrt(np.mean(np.square(sig)) / n_seeds)           # σ of a mean over the seeds
    tol = k_sigma(1) * se
    assert abs(np.mean(est) - 1.0) <= tol
    assert abs(np.mean(sn) - 1.0) <= math.sqrt(2) * tol
    predicted = T.word_coefficient(g, [tuple_name(1), tuple_name(2), module_name("P", 1)])[0] / (c * w)
    assert predicted == pytest.approx(2 + 0.3 / 0.7, rel=1e-12)
    assert abs(np.mean(naive) - predicted) <= tol
    assert abs(np.mean(naive) - 1.0) > 3 * tol


@pytest.fixture(scope="module")
def counting():
    """Three objects of P (w* = 0.2) and one of Q (0.4) at depth 2, d = 2^18."""
    rng = np.random.default_rng(80)
    xs = [unit(rng, 5) for _ in range(3)]
    g = Graph([obj(f"p{k}", "P", xs[k]) for k in range(3)] + [obj("q", "Q", unit(rng, 5))],
              [{"id": f"p{k}", "weight": 0.2} for k in range(3)] + [{"id": "q", "weight": 0.4}])
    bank = MatrixBank(D_BIG, "hadamard", seed=8)
    return bank, sketch(g, bank), xs


def test_theorem3i_count_rounds_to_the_true_integer(counting):
    bank, s, xs = counting
    sigma = T.noise_level(np.linalg.norm(s), D_BIG, 2, 0.2)
    assert k_sigma(1) * sigma < 0.5                           # the regime where rounding is exact
    n = D.count(s, bank, "P", 2, 0.2)
    assert abs(n - 3) <= k_sigma(1) * sigma
    assert round(n) == 3
    # the other module: one object at w* = 0.4
    assert round(D.count(s, bank, "Q", 2, 0.4)) == 1


def test_theorem3ii_summed_and_mean_attributes(counting):
    bank, s, xs = counting
    L = len(xs[0])
    sigma = T.noise_level(np.linalg.norm(s), D_BIG, 2, 0.2)
    total = sum(xs)
    assert np.max(np.abs(D.attribute_sum(s, bank, "P", 2, 0.2, length=L) - total)) <= k_sigma(L) * sigma
    mean = total / 3
    # mean̂ = (c w Σx + n_x)/(c w n + n_e) ≈ m + (n_x − m n_e)/(c w n)
    tol = k_sigma(L) * sigma * math.sqrt(1 + np.max(mean) ** 2) / 3
    assert np.max(np.abs(D.mean_attributes(s, bank, "P", length=L) - mean)) <= tol


def test_object_sketch_self_normalised_matches_known_weight(big_pair):
    g, bank, s, _ = big_pair
    a = D.object_sketch(s, bank, [2], weight=0.4)
    b = D.object_sketch(s, bank, [2], module="P")
    ratio = (a @ b) / (b @ b)                                 # = n̂ for one object (a count of 1)
    assert abs(ratio - 1) <= k_sigma(1) * T.noise_level(np.linalg.norm(s), D_BIG, 2, 0.4)
    np.testing.assert_allclose(a, ratio * b, rtol=1e-9, atol=1e-12)


def test_theorem2_similarity_matches_word_count_prediction():
    rng = np.random.default_rng(90)
    g1 = Graph([obj("a", "P", unit(rng, 8)), obj("b", "Q", unit(rng, 4)), obj("a2", "P", unit(rng, 8))],
               [{"id": "a", "weight": 0.5}, {"id": "b", "weight": 0.3}, {"id": "a2", "weight": 0.2}])
    g2 = Graph([obj("c", "R", unit(rng, 4)), obj("e", "P", unit(rng, 8))],
               [{"id": "c", "weight": 0.4}, {"id": "e", "weight": 0.6}])
    g3 = Graph([obj("c", "R", unit(rng, 4)), obj("e", "S", unit(rng, 8))],
               [{"id": "c", "weight": 0.4}, {"id": "e", "weight": 0.6}])
    d = 2 ** 16
    pred = T.expected_dot(g1, g2)
    assert pred >= T.similarity_lower_bound(2, 0.5, 0.6, g1.attributes[0] @ g2.attributes[1])
    for seed in (0, 1):
        bank = MatrixBank(d, "hadamard", seed=seed)
        s1, s2, s3 = sketch(g1, bank), sketch(g2, bank), sketch(g3, bank)
        r12, r13 = D.similarity(s1, s2), D.similarity(s1, s3)
        sig12 = T.similarity_noise_level(r12.norm1, r12.norm2, d)
        sig13 = T.similarity_noise_level(r13.norm1, r13.norm2, d)
        assert abs(r12.dot - pred) <= k_sigma(1) * sig12               # Theorem 2(ii)
        assert abs(r13.dot) <= k_sigma(1) * sig13                      # Theorem 2(i)
        assert r12.dot > r13.dot + k_sigma(1) * (sig12 + sig13)        # the score separates them


def test_erasure_error_grows_like_sqrt_d_over_dprime():
    # THEORY.md §4: (d/d') R_{M,1}ᵀ P s / (c_h w) is unbiased with noise √(d/d') times larger.
    rng = np.random.default_rng(100)
    L = 256
    x = unit(rng, L)
    g = Graph([obj("a", "P", x), obj("b", "Q", unit(rng, L)), obj("c", "R", unit(rng, L))],
              [{"id": "a", "weight": 0.5}, {"id": "b", "weight": 0.3}, {"id": "c", "weight": 0.2}])
    d = 2 ** 16
    bank = MatrixBank(d, "hadamard", seed=9)
    s = sketch(g, bank)
    norm = np.linalg.norm(s)
    band = k_sigma(1) / math.sqrt(2 * L)          # relative s.e. of an RMS over L Gaussian coordinates
    rms = {}
    for keep in (d, d // 4, d // 16):
        e = D.erase(s, keep)
        err = D.attributes_on_path(e, bank, [1], "P", 0.5, length=L) - x
        rms[keep] = math.sqrt(np.mean(err ** 2))
        assert abs(np.mean(err)) <= k_sigma(1) * T.noise_level(norm, d, 2, 0.5, keep=keep) / math.sqrt(L)
        assert abs(rms[keep] / T.noise_level(norm, d, 2, 0.5, keep=keep) - 1) <= band
    for keep in (d // 4, d // 16):
        ratio = rms[keep] / rms[d]
        assert abs(ratio / T.erasure_factor(d, keep) - 1) <= 2 * band


def test_erased_count_stays_unbiased(counting):
    bank, s, _ = counting
    keep = D_BIG // 16
    sigma = T.noise_level(np.linalg.norm(s), D_BIG, 2, 0.2, keep=keep)
    n = D.count(D.erase(s, keep), bank, "P", 2, 0.2)
    assert abs(n - 3) <= k_sigma(1) * sigma


def test_erased_decoders_equal_rescaled_zero_padded_decoders(small):
    g, bank, s = small
    keep = 24
    e = D.erase(s, keep)
    padded = np.where(np.arange(bank.d_sketch) < keep, s, 0.0)
    f = bank.d_sketch / keep
    np.testing.assert_allclose(D.attributes(e, bank, "P", 3, 0.3), f * D.attributes(padded, bank, "P", 3, 0.3))
    np.testing.assert_allclose(D.count(e, bank, "P", 3, 0.3), f * D.count(padded, bank, "P", 3, 0.3))
    np.testing.assert_allclose(D.attributes_on_path(e, bank, [2, 1], "P", 0.3),
                               f * D.attributes_on_path(padded, bank, [2, 1], "P", 0.3))
    np.testing.assert_allclose(D.object_sketch(e, bank, [2], weight=0.6),
                               f * D.object_sketch(padded, bank, [2], weight=0.6))
    # ratio forms: the factor cancels
    np.testing.assert_allclose(D.mean_attributes(e, bank, "P"), D.mean_attributes(padded, bank, "P"))


# =============================================================================== similarity & erase API
def test_similarity_fields(small):
    g, bank, s = small
    rng = np.random.default_rng(110)
    t = np.abs(rng.standard_normal(bank.d_sketch))
    r = D.similarity(s, t)
    assert isinstance(r, D.Similarity)
    assert r.dot == pytest.approx(float(s @ t), rel=1e-12)
    assert r.norm1 == pytest.approx(float(np.linalg.norm(s)), rel=1e-12)
    assert r.norm2 == pytest.approx(float(np.linalg.norm(t)), rel=1e-12)
    assert r.cosine == pytest.approx(r.dot / (r.norm1 * r.norm2), rel=1e-12)
    assert r.angle == pytest.approx(math.acos(r.cosine))
    assert r.keep == bank.d_sketch
    assert D.similarity(s, 3 * s).cosine == pytest.approx(1.0)
    assert math.isnan(D.similarity(s, np.zeros_like(s)).cosine)
    rb = D.similarity(np.stack([s, t]), s)                      # a batch against one sketch
    np.testing.assert_allclose(rb.dot, [s @ s, t @ s])
    np.testing.assert_allclose(rb.norm2, [np.linalg.norm(s)] * 2)


def test_similarity_of_erased_sketches_uses_the_common_prefix(small):
    g, bank, s = small
    d = bank.d_sketch
    t = np.roll(s, 3)
    r = D.similarity(D.erase(s, 32), D.erase(t, 16))
    assert r.keep == 16
    assert r.dot == pytest.approx(d / 16 * float(s[:16] @ t[:16]), rel=1e-12)
    assert r.norm1 == pytest.approx(math.sqrt(d / 16) * float(np.linalg.norm(s[:16])), rel=1e-12)


def test_erased_sketch_object(small):
    g, bank, s = small
    d = bank.d_sketch
    e = D.erase(s, 40)
    assert (e.keep, e.d, e.shape, e.ndim) == (40, d, (d,), 1)
    assert e.rescale == d / 40
    np.testing.assert_array_equal(e.values[:40], s[:40])
    assert np.all(e.values[40:] == 0)
    e2 = D.erase(e, 10)                                         # aging: erase further
    assert e2.keep == 10 and e2.d == d
    np.testing.assert_array_equal(e2.prefix, s[:10])
    with pytest.raises(TypeError):
        e + 1                                                   # no silent arithmetic without the rescale
    batch = D.erase(np.stack([s, s]), 8)
    assert batch.shape == (2, d)
    np.testing.assert_allclose(D.count(batch, bank, "P", 3, 0.3), [D.count(D.erase(s, 8), bank, "P", 3, 0.3)] * 2)


def test_block_sparse_erasure_at_block_boundaries():
    rng = np.random.default_rng(120)
    g = Graph([obj("a", "P", unit(rng, 4)), obj("b", "Q", unit(rng, 4))],
              [{"id": "a", "weight": 0.5}, {"id": "b", "weight": 0.5}])
    bank = MatrixBank(96, "block-sparse", seed=0, block_size=48, block_prob=0.5)
    s = sketch(g, bank)
    e = D.erase(s, 48, bank=bank)
    assert np.all(np.isfinite(D.attributes(e, bank, "P", 2, 0.5)))
    with pytest.raises(ValueError, match=r"keep must be a multiple of block_size=48.*got 50"):
        D.erase(s, 50, bank=bank)
    with pytest.raises(ValueError, match=r"keep must be a multiple of block_size=48.*got 50"):
        D.attributes(D.erase(s, 50), bank, "P", 2, 0.5)        # erased without the bank: decoder checks


# =============================================================================== validation
def _cases():
    return [
        ("bank", lambda g, b, s: D.attributes(s, "bank", "P", 3, 0.3), r"bank must be a sketchsim\.MatrixBank"),
        ("s shape", lambda g, b, s: D.attributes(s[:-1], b, "P", 3, 0.3), r"s must have shape \(64,\)"),
        ("s ndim", lambda g, b, s: D.count(s[None, None], b, "P", 3, 0.3), r"s must have shape"),
        ("s nan", lambda g, b, s: D.attributes(np.where(np.arange(64) == 5, np.nan, s), b, "P", 3, 0.3),
         r"s must be finite; got nan"),
        ("module empty", lambda g, b, s: D.attributes(s, b, "", 3, 0.3), r"module must be a nonempty string"),
        ("module type", lambda g, b, s: D.mean_attributes(s, b, 7), r"module must be a string; got int 7"),
        ("depth < 2", lambda g, b, s: D.attributes(s, b, "P", 1, 0.3), r"depth must be >= 2; got 1"),
        ("depth type", lambda g, b, s: D.count(s, b, "P", 2.5, 0.3), r"depth must be an integer; got 2\.5"),
        ("weight zero", lambda g, b, s: D.attributes(s, b, "P", 3, 0.0), r"weight must be a positive finite number; got 0\.0"),
        ("weight negative", lambda g, b, s: D.count(s, b, "P", 3, -0.1), r"weight must be a positive.*-0\.1"),
        ("weight nan", lambda g, b, s: D.attribute_sum(s, b, "P", 3, float("nan")), r"weight must be a positive finite number; got nan"),
        ("weight inf", lambda g, b, s: D.attributes_on_path(s, b, [2, 1], "P", float("inf")), r"weight must be .*got inf"),
        ("weight bool", lambda g, b, s: D.attributes(s, b, "P", 3, True), r"weight must be a positive finite number; got True"),
        ("weight batch shape", lambda g, b, s: D.attributes(np.stack([s, s]), b, "P", 3, [0.3, 0.3, 0.3]),
         r"weight must be a number, or an array of shape \(B,\) = \(2,\)"),
        ("weight array for one sketch", lambda g, b, s: D.count(s, b, "P", 3, [0.3]), r"weight must be a number"),
        ("weight row nonpositive", lambda g, b, s: D.count(np.stack([s, s]), b, "P", 3, [0.3, 0.0]),
         r"weight must be positive and finite; got 0\.0"),
        ("count weight None", lambda g, b, s: D.count(s, b, "P", 3, None), r"weight must be .*Theorem 3.*got None"),
        ("sum weight None", lambda g, b, s: D.attribute_sum(s, b, "P", 3, None), r"weight must be .*got None"),
        ("length zero", lambda g, b, s: D.attributes(s, b, "P", 3, 0.3, length=0), r"length must be >= 1; got 0"),
        ("length > d", lambda g, b, s: D.mean_attributes(s, b, "P", length=65), r"length must be in 1\.\.d_sketch=64; got 65"),
        ("path empty", lambda g, b, s: D.attributes_on_path(s, b, [], "P", 0.3), r"path must be a nonempty list.*got \[\]"),
        ("path entry < 1", lambda g, b, s: D.attributes_on_path(s, b, [2, 0], "P", 0.3), r"path entries must be ≥ 1.*got 0 at index 1"),
        ("path entry type", lambda g, b, s: D.object_sketch(s, b, [1.5], weight=0.3), r"path entries must be integers.*1\.5"),
        ("path type", lambda g, b, s: D.object_sketch(s, b, "12", weight=0.3), r"path must be a nonempty list.*'12'"),
        ("path longer than the graph", lambda g, b, s: D.attributes_on_path(s, b, [2, 1, 1], "P", 0.3, graph=g),
         r"path must not be longer than the sketch's depth: at most 2 .*got 3"),
        ("path entry beyond fan-in", lambda g, b, s: D.object_sketch(s, b, [3], weight=0.3, graph=g),
         r"path entry 0 must be ≤ the 2 inputs of the output; got 3"),
        ("path to another module", lambda g, b, s: D.attributes_on_path(s, b, [1], "P", 0.3, graph=g),
         r"path must lead to an object of module 'P'.*'s2_1'"),
        ("module not in graph", lambda g, b, s: D.attributes(s, b, "Z", 3, 0.3, graph=g), r"module must be one of the graph's modules.*got 'Z'"),
        ("depth not the module's", lambda g, b, s: D.count(s, b, "P", 2, 0.3, graph=g), r"depth must be the depth of module 'P' in the graph \(3\); got 2"),
        ("graph type", lambda g, b, s: D.attributes(s, b, "P", 3, 0.3, graph={}), r"graph must be a sketchsim\.Graph"),
        ("keep zero", lambda g, b, s: D.erase(s, 0), r"keep must be >= 1; got 0"),
        ("keep > d", lambda g, b, s: D.erase(s, 65), r"keep must be in 1\.\.d_sketch=64; got 65"),
        ("keep type", lambda g, b, s: D.erase(s, 2.5), r"keep must be an integer; got 2\.5"),
        ("keep beyond an erased sketch", lambda g, b, s: D.erase(D.erase(s, 8), 16), r"keep must not exceed the 8 coordinates"),
        ("erase bank dimension", lambda g, b, s: D.erase(s[:32], 16, bank=b), r"s must have d_sketch = 64 entries.*got 32"),
        ("erased sketch of another d", lambda g, b, s: D.count(D.erase(s[:32], 16), b, "P", 3, 0.3), r"s must have d_sketch = 64.*d = 32"),
        ("object_sketch needs weight or module", lambda g, b, s: D.object_sketch(s, b, [2]), r"weight must be given.*module=None"),
        ("similarity d", lambda g, b, s: D.similarity(s, s[:32]), r"s1 and s2 must have the same d_sketch; got 64 and 32"),
        ("similarity batch", lambda g, b, s: D.similarity(np.stack([s, s]), np.stack([s, s, s])), r"same batch size; got 2 and 3"),
        ("path_word channel", lambda g, b, s: D.path_word([1], "P", channel=0), r"channel must be 1 .* or 2 .*got 0"),
        ("noise_level depth without weight", lambda g, b, s: T.noise_level(1.0, 64, depth=2), r"depth and weight must be given together"),
    ]


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c[0])
def test_validation(small, case):
    _, fn, match = case
    g, bank, s = small
    with pytest.raises(ValueError, match=match):
        fn(g, bank, s)
