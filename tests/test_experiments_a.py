"""Studies thm1_attributes, erasure and unrolling: contract, determinism, claims per family and
depth, figures, and that their claims turn "not consistent" when a decoder constant is wrong.

Expected constants are written from the paper's formulas (c_h = 2^{−(4h−3)}, the object-sketch
constant 2^{−(4h−7)}, the erasure rescale d/d'), never computed with the library's helpers.
"""
import ast
import math
import os

import numpy as np
import pandas as pd
import pytest

import sketchsim as ss
import sketchsim.decode as decode_mod
import sketchsim.theory as theory_mod
from sketchsim.harness import claims as C
from sketchsim.harness import studykit as SK
from sketchsim.harness.sweep import expand_grid, load_experiment, plan_runs, run_seed

thm1 = load_experiment("thm1_attributes")      # also makes the top-level experiments/ importable
erasure = load_experiment("erasure")
unrolling = load_experiment("unrolling")

MODULES = [thm1, erasure, unrolling]
_PAPER_NAMES = {"thm1_attributes": {"thm1.i", "thm1.ii"},
                "erasure": {"erasure", "erasure.path", "erasure.count", "erasure.similarity",
                            "erasure.object"},
                "unrolling": {"unrolling"}}
# every paper claim has a twin `<name>.noise` that judges THEORY §2.4's noise constant
CLAIM_NAMES = {k: v | {n + ".noise" for n in v} for k, v in _PAPER_NAMES.items()}


def _rows(mod, grid, reps=2, seed=0):
    """Tidy rows (p_/m_ columns, rep, seed) from run_one over a small grid, like the sweep does
    (BLAS pinned to one thread, as in the sweep: dense QR thrashes on a loaded machine otherwise)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return _rows_unpinned(mod, grid, reps, seed)


def _rows_unpinned(mod, grid, reps, seed):
    rows = []
    for params in expand_grid(grid):
        bad, _ = mod.skip(params)
        if bad:
            continue
        for rep in range(reps):
            s = run_seed(seed, mod.NAME, params, rep)
            m = mod.run_one(params, np.random.default_rng(s))
            row = {f"p_{k}": v for k, v in params.items()}
            row.update({f"m_{k}": v for k, v in m.items()})
            row.update(rep=rep, seed=s)
            rows.append(row)
    return pd.DataFrame(rows)


TINY = {
    "thm1_attributes": [
        {"family": ["hadamard"], "d_sketch": [2 ** 8, 2 ** 10, 2 ** 12], "weight": [0.2, 0.8],
         "depth": [2, 3]},
        {"family": ["haar", "gaussian"], "d_sketch": [64, 128], "weight": [0.8], "depth": [2]},
        {"family": ["block-sparse"], "d_sketch": [768], "block_size": [48], "block_prob": [0.5],
         "weight": [0.8], "depth": [2]},
    ],
    "erasure": [
        {"family": ["hadamard"], "d_sketch": [2 ** 10], "keep": [0.5, 0.25, 0.125],
         "weight": [0.8], "depth": [2]},
        {"family": ["block-sparse"], "d_sketch": [768], "block_size": [48], "block_prob": [0.5],
         "keep": [0.5, 0.25], "weight": [0.8], "depth": [2]},
    ],
    "unrolling": [
        {"family": ["hadamard"], "d_sketch": [2 ** 8, 2 ** 10, 2 ** 12], "depth": [2, 3]},
        {"family": ["haar"], "d_sketch": [64], "depth": [2, 3]},
    ],
}


@pytest.fixture(scope="module")
def tiny_frames():
    return {mod.NAME: _rows(mod, TINY[mod.NAME]) for mod in MODULES}


# ------------------------------------------------------------------------------------ contract
@pytest.mark.parametrize("mod", MODULES, ids=lambda m: m.NAME)
def test_contract(mod):
    assert load_experiment(mod.NAME) is mod
    for attr in ("NAME", "TITLE", "STATEMENT", "METHOD"):
        assert isinstance(getattr(mod, attr), str) and getattr(mod, attr)
    assert isinstance(mod.ORDER, int)
    assert {"quick", "full"} <= set(mod.PROFILES)
    for fn in ("run_one", "claims", "details", "figures", "skip", "theory", "warm_up"):
        assert callable(getattr(mod, fn)), fn
    assert not hasattr(mod, "analyze"), "the old analyze() contract is gone"
    assert isinstance(mod.FIGURES, tuple) and mod.FIGURES
    quick = [r for r in plan_runs(mod, "quick") if not mod.skip(r.params)[0]]
    assert len(quick) == len(plan_runs(mod, "quick")), "the quick profile must not plan skipped runs"
    full = [r for r in plan_runs(mod, "full") if not mod.skip(r.params)[0]]
    assert len(full) > len(quick)
    # the quick profile runs the paper's three families and the substitute
    assert {r.params["family"] for r in quick} == {"haar", "gaussian", "block-sparse", "hadamard"}
    for r in quick[:3]:
        th = mod.theory(r.params)
        assert all(isinstance(v, float) and math.isfinite(v) for v in th.values())


def test_quick_profile_depths():
    for mod in (thm1, unrolling):
        fam_depths = {(r.params["family"], r.params["depth"]) for r in plan_runs(mod, "quick")}
        assert {(f, h) for f in ("haar", "gaussian", "block-sparse", "hadamard") for h in (2, 3)} <= fam_depths
    fam_depths = {(r.params["family"], r.params["depth"]) for r in plan_runs(erasure, "quick")}
    assert {(f, 2) for f in ("haar", "gaussian", "block-sparse", "hadamard")} <= fam_depths


@pytest.mark.parametrize("mod", MODULES, ids=lambda m: m.NAME)
def test_no_study_imports_another(mod):
    tree = ast.parse(open(mod.__file__, encoding="utf-8").read())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert not (node.module or "").startswith("experiments"), node.module
        elif isinstance(node, ast.Import):
            assert not any(a.name.startswith("experiments") for a in node.names)


@pytest.mark.parametrize("mod", MODULES, ids=lambda m: m.NAME)
def test_run_one_floats_and_deterministic(mod):
    params = expand_grid(TINY[mod.NAME][0])[1]
    a = mod.run_one(params, np.random.default_rng(123))
    b = mod.run_one(params, np.random.default_rng(123))
    c = mod.run_one(params, np.random.default_rng(124))
    assert a and set(a) == set(b)
    for k, v in a.items():
        assert type(v) is float and math.isfinite(v), (k, v)
        assert v == b[k], k                      # bit-identical for one seed
    assert any(a[k] != c[k] for k in a)          # and a different seed draws differently


def test_skip_rules():
    assert thm1.skip({"family": "haar", "d_sketch": 4096, "weight": 0.4, "depth": 2})[0]
    assert thm1.skip({"family": "hadamard", "d_sketch": 1000, "weight": 0.4, "depth": 2})[0]
    assert thm1.skip({"family": "hadamard", "d_sketch": 16, "weight": 0.4, "depth": 2})[0]   # L > d
    assert thm1.skip({"family": "block-sparse", "d_sketch": 12288, "block_size": 48, "block_prob": 0.25,
                      "weight": 0.4, "depth": 2})[0]               # b below the minimum for d
    assert thm1.skip({"family": "block-sparse", "d_sketch": 1536, "block_size": 48, "block_prob": 0.1,
                      "weight": 0.4, "depth": 2})[0]               # q·d/b < 4
    assert not thm1.skip({"family": "block-sparse", "d_sketch": 1536, "block_size": 48,
                          "block_prob": 0.25, "weight": 0.4, "depth": 2})[0]
    assert erasure.skip({"family": "hadamard", "d_sketch": 1024, "keep": 1.0, "weight": 0.4,
                         "depth": 2})[0]
    assert erasure.skip({"family": "block-sparse", "d_sketch": 768, "block_size": 48, "block_prob": 0.25,
                         "keep": 0.03125, "weight": 0.4, "depth": 2})[0]   # 24 is not a block boundary


def test_graphs_control_the_weight_exactly():
    rng = np.random.default_rng(0)
    for h in (2, 3):
        for w in (0.1, 0.37, 1.0):
            for sib in ("F", "T", "U"):
                g, path = SK.build_graph(h, w, rng, sibling_module=sib)
                assert g.depth("t") == h and len(path) == h - 1
                assert g.weight("t") == pytest.approx(w, rel=1e-12)
                same = g.objects_of("T")
                assert (len(same) == 1) == (sib != "T" or w == 1.0)


def test_estimators_are_exact_without_erasure():
    """keep = d: the prefix and the random-subset estimators equal the full decoder."""
    rng = np.random.default_rng(1)
    bank = ss.MatrixBank(128, "haar", 5)
    g, _ = SK.build_graph(2, 0.5, rng, L=8)
    s = ss.sketch(g, bank)
    full = decode_mod.attributes(s, bank, "T", 2, weight=0.5, length=8)
    rnd = erasure.random_subset_attributes(s, bank, "T", 2, 0.5, 128, rng, length=8)
    pre = decode_mod.attributes(decode_mod.erase(s, 128, bank), bank, "T", 2, weight=0.5, length=8)
    np.testing.assert_allclose(rnd, full, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(pre, full, rtol=1e-12, atol=1e-14)


def test_unrolling_readout_matches_path_decoder(tiny_frames):
    df = tiny_frames["unrolling"]
    assert df["m_attr_path_mismatch"].max() < 1e-9


def test_coincidence_factor_predicts_the_object_sketch_bias():
    """κ = E⟨ŝ, s_object⟩/‖s_object‖² from the word expansion matches the measured ratio: ≈ 1 when
    the index is 2, ≈ 1.29 when index 1 coincides with the slot matrix R_1 (depth 2)."""
    by_path = {}
    for r in range(12):
        rng = np.random.default_rng(r)
        bank = ss.MatrixBank(2 ** 12, "hadamard", 100 + r)
        g = unrolling.build_tree(rng)
        path = g.paths("a")[0]
        w = g.weight("a")
        objs, s = ss.sketch_objects(g, bank, return_overall=True)
        sh = decode_mod.object_sketch(s, bank, path, weight=w)
        k = SK.coincidence_factor(g, "a", path, w)
        emp = float(sh @ objs["a"]) / float(objs["a"] @ objs["a"])
        by_path.setdefault(path[0], []).append((k, emp))
    assert set(by_path) == {1, 2}
    k1 = np.mean([k for k, _ in by_path[1]])
    k2 = np.mean([k for k, _ in by_path[2]])
    assert 1.2 < k1 < 1.4 and abs(k2 - 1) < 0.05
    for vals in by_path.values():
        k, emp = np.mean(vals, axis=0)
        assert abs(emp - k) < 0.05, (emp, k)


def test_pooled_slope_test_equals_slope_test_on_pooled_pairs():
    rng = np.random.default_rng(3)
    xs = [np.abs(rng.standard_normal(5)) for _ in range(6)]
    sig = rng.uniform(0.1, 1.0, 6)
    ys = [0.9 * x + s * rng.standard_normal(5) for x, s in zip(xs, sig)]
    a = C.pooled_slope_test("k", "l", [x @ y for x, y in zip(xs, ys)], [x @ x for x in xs],
                            [y @ y for y in ys], [5] * 6, weights=1 / sig ** 2)
    b = C.slope_test("k", "l", np.concatenate([y / s for y, s in zip(ys, sig)]),
                     np.concatenate([x / s for x, s in zip(xs, sig)]))
    assert a.estimate == pytest.approx(b.estimate, rel=1e-12)
    assert a.interval == pytest.approx(b.interval, rel=1e-9)


def test_rms_ratio_test_covers_the_true_scale():
    z = 2.0 * np.random.default_rng(4).standard_normal(400)
    t = C.rms_ratio_test("k", "l", z, predicted=2.0)
    assert t.interval[0] < 2.0 < t.interval[1] and t.verdict()[0] == C.CONSISTENT
    assert C.rms_ratio_test("k", "l", z, predicted=1.0).verdict()[0] == C.NOT_CONSISTENT


# ------------------------------------------------------------------------------ claims/figures
@pytest.mark.parametrize("mod", MODULES, ids=lambda m: m.NAME)
def test_claims_details_and_figures(mod, tiny_frames, tmp_path):
    df = tiny_frames[mod.NAME]
    got = mod.claims(df)
    assert got and all(isinstance(c, C.Claim) for c in got)
    assert {c.claim for c in got} == CLAIM_NAMES[mod.NAME]
    # one claim per (name, family, depth) present in the table
    keys = [(c.claim, c.family, c.depth) for c in got]
    assert len(keys) == len(set(keys))
    present = {(f, int(h)) for f, h in zip(df["p_family"], df["p_depth"])}
    for name in CLAIM_NAMES[mod.NAME]:
        assert {(f, h) for n, f, h in keys if n == name} == present
    for c in got:
        assert c.verdict()[0] in C.VERDICTS
        keys_t = [t.key for t in c.tests]
        assert len(keys_t) == len(set(keys_t))
        if c.claim.endswith(".noise"):
            assert keys_t and all(t.key.startswith("noise") for t in c.tests), (c.claim, keys_t)
        else:
            assert any(t.key.startswith("slope") for t in c.tests), (c.claim, keys_t)  # a bias test
            assert not any(t.key.startswith("noise") for t in c.tests), (c.claim, keys_t)
        json = c.to_json(mod.NAME)
        assert json["claim"] == c.claim
    assert isinstance(mod.details(df), str) and mod.details(df)
    paths = mod.figures(df, str(tmp_path))
    assert paths and len(paths) == len(mod.FIGURES)
    for p in paths:
        assert os.path.dirname(p) == str(tmp_path) and os.path.basename(p) in mod.FIGURES
        with open(p, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    # empty tables do not crash
    empty = df.iloc[0:0]
    assert mod.claims(empty) == []
    assert mod.details(empty) == ""
    assert mod.figures(empty, str(tmp_path / "empty")) == []


def test_block_sparse_note_names_b_and_q(tiny_frames):
    got = [c for c in thm1.claims(tiny_frames["thm1_attributes"]) if c.family == "block-sparse"]
    assert got and all("b∈{48}" in c.note and "q∈{0.5}" in c.note for c in got)


def test_exponents_only_with_enough_levels(tiny_frames):
    got = {(c.claim, c.family, c.depth): c for c in thm1.claims(tiny_frames["thm1_attributes"])}
    had = got[("thm1.i", "hadamard", 2)]
    assert {"alpha_d", "beta_w"} <= {t.key for t in had.tests}           # 3 d values, 2 weights
    haar = got[("thm1.i", "haar", 2)]
    assert not {"alpha_d", "beta_w"} & {t.key for t in haar.tests}       # 2 d values, 1 weight
    assert "α, exponent of d" in haar.note and "β, exponent of w" in haar.note


# ------------------------------------------------------------------------ regression detection
C2_PAPER = 2.0 ** -(4 * 2 - 3)      # c_2 = 1/32 (paper: c_h = 2^{-(4h-3)})
C3_PAPER = 2.0 ** -(4 * 3 - 3)      # c_3 = 1/512


def test_paper_constants():
    assert theory_mod.depth_constant(2) == C2_PAPER == 1 / 32
    assert theory_mod.depth_constant(3) == C3_PAPER == 1 / 512
    assert theory_mod.object_sketch_constant(2) == 2.0 ** -(4 * 2 - 7) == 0.5
    assert theory_mod.erasure_rescale(1024, 256) == 1024 / 256


def _thm1_frame(depth=2, reps=3):
    grid = {"family": ["hadamard"], "d_sketch": [2 ** 12, 2 ** 14, 2 ** 16], "weight": [0.8],
            "depth": [depth]}
    return _rows(thm1, grid, reps=reps, seed=7)


def _claim(claims, name, fam, h):
    return next(c for c in claims if (c.claim, c.family, c.depth) == (name, fam, h))


def test_thm1_claims_flip_when_the_decoders_double_c_h(monkeypatch):
    good = thm1.claims(_thm1_frame())
    for name in ("thm1.i", "thm1.ii"):
        c = _claim(good, name, "hadamard", 2)
        assert c.verdict()[0] == C.CONSISTENT, c.evidence()
    # a decoder bug: c_h doubled in the decoders only (the predictions keep the paper's c_h)
    monkeypatch.setattr(decode_mod, "depth_constant", lambda h: 2.0 * 2.0 ** -(4 * h - 3))
    bad = thm1.claims(_thm1_frame())
    monkeypatch.undo()
    for name in ("thm1.i", "thm1.ii"):
        c = _claim(bad, name, "hadamard", 2)
        assert c.verdict()[0] == C.NOT_CONSISTENT, c.evidence()
        slope = next(t for t in c.tests if t.key == "slope")
        assert slope.estimate == pytest.approx(0.5, abs=0.05)              # x̂ halved
        assert slope.verdict()[0] == C.NOT_CONSISTENT


def test_thm1_noise_test_catches_c_h_where_noise_dominates(monkeypatch):
    """Depth 3, gaussian, d ≤ 256: σ per coordinate ≳ 3, so the slope has no power, but the
    normalised error against the paper's c_3 halves when the decoders use 2·c_3."""
    grid = {"family": ["gaussian"], "d_sketch": [64, 128, 256], "weight": [0.8], "depth": [3]}
    good = thm1.claims(_rows(thm1, grid, reps=6, seed=3))
    monkeypatch.setattr(decode_mod, "depth_constant", lambda h: 2.0 * 2.0 ** -(4 * h - 3))
    bad = thm1.claims(_rows(thm1, grid, reps=6, seed=3))
    monkeypatch.undo()
    c_good, c_bad = _claim(good, "thm1.i.noise", "gaussian", 3), _claim(bad, "thm1.i.noise", "gaussian", 3)
    n_good = next(t for t in c_good.tests if t.key == "noise")
    n_bad = next(t for t in c_bad.tests if t.key == "noise")
    assert n_good.verdict()[0] == C.CONSISTENT, n_good.describe()
    assert n_bad.verdict()[0] == C.NOT_CONSISTENT and n_bad.estimate < 0.65, n_bad.describe()
    assert c_bad.verdict()[0] == C.NOT_CONSISTENT


def test_erasure_claim_flips_with_a_wrong_rescale(monkeypatch):
    grid = {"family": ["hadamard"], "d_sketch": [2 ** 12, 2 ** 14], "keep": [0.5, 0.25, 0.125, 0.0625],
            "weight": [0.8], "depth": [2]}
    good = erasure.claims(_rows(erasure, grid, reps=2, seed=5))
    assert _claim(good, "erasure", "hadamard", 2).verdict()[0] == C.CONSISTENT
    # the paper's rescale is d/d'; √(d/d') is wrong by √(d/d')
    monkeypatch.setattr(theory_mod, "erasure_rescale", lambda d, k: math.sqrt(d / k))
    bad = erasure.claims(_rows(erasure, grid, reps=2, seed=5))
    monkeypatch.undo()
    c = _claim(bad, "erasure", "hadamard", 2)
    assert c.verdict()[0] == C.NOT_CONSISTENT, c.evidence()
    assert "slope_random" in c.verdict()[1]
    c = _claim(bad, "erasure.noise", "hadamard", 2)
    assert c.verdict()[0] == C.NOT_CONSISTENT and "noise_prefix" in c.verdict()[1], c.evidence()


@pytest.mark.parametrize("where", ["decoder", "library"])
def test_unrolling_claim_flips_with_a_wrong_object_sketch_constant(monkeypatch, where):
    """2^{-(4h-7)} doubled in the decoder only, or in theory.object_sketch_constant (which the decoder
    imports): the read-out and the probes are halved against the paper's constant."""
    grid = {"family": ["hadamard"], "d_sketch": [2 ** 8, 2 ** 10, 2 ** 12, 2 ** 14], "depth": [2]}
    good = _claim(unrolling.claims(_rows(unrolling, grid, reps=3, seed=2)), "unrolling", "hadamard", 2)
    assert good.verdict()[0] != C.NOT_CONSISTENT, good.evidence()
    assert all(t.verdict()[0] == C.CONSISTENT for t in good.tests if t.key.startswith("slope"))
    wrong = lambda h: 2.0 * 2.0 ** -(4 * h - 7)     # noqa: E731
    monkeypatch.setattr(decode_mod, "object_sketch_constant", wrong)
    if where == "library":
        monkeypatch.setattr(theory_mod, "object_sketch_constant", wrong)
    bad = unrolling.claims(_rows(unrolling, grid, reps=3, seed=2))
    monkeypatch.undo()
    c = _claim(bad, "unrolling", "hadamard", 2)
    assert c.verdict()[0] == C.NOT_CONSISTENT, c.evidence()
    assert {"slope_attr", "slope_probe"} <= set(c.verdict()[1])
    probe = next(t for t in c.tests if t.key == "slope_probe")
    assert probe.estimate == pytest.approx(0.5, abs=0.1)


def test_family_grid_keeps_key_order_and_adds_block_params_for_block_sparse_only():
    from sketchsim.harness.studykit import family_grid

    g = family_grid("haar", 4, 48, 0.5, d_sketch=[64], weight=[1.0])
    assert list(g.items()) == [("family", "haar"), ("d_sketch", [64]), ("weight", [1.0]), ("reps", 4)]
    g = family_grid("block-sparse", 2, 48, [0.25, 0.5], d_sketch=[768])
    assert list(g.items()) == [("family", "block-sparse"), ("d_sketch", [768]), ("block_size", [48]),
                               ("block_prob", [0.25, 0.5]), ("reps", 2)]


def test_median_time_counts_calls():
    from sketchsim.harness.studykit import median_time

    calls = []
    t, n = median_time(lambda: calls.append(1), min_time=0.0, max_reps=9, min_reps=4, warm_up=True)
    assert n == 4 and len(calls) == 5 and t >= 0.0
    calls.clear()
    t, n = median_time(lambda: calls.append(1), min_time=0.0, max_reps=3, min_reps=5)
    assert n == 3 and len(calls) == 3                      # max_reps bounds min_reps
    t, n = median_time(lambda: sum(range(20000)), min_time=10.0, max_reps=7, min_reps=3, stop_after=0.0)
    assert n == 1                                           # a repeat longer than stop_after ends the loop
