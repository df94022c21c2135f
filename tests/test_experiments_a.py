"""Experiment modules thm1_attributes, erasure and unrolling (issue 3): contract, determinism,
analysis keys, figures, and that the Theorem 1 analysis catches a decoder with a wrong constant."""
import math
import os

import numpy as np
import pandas as pd
import pytest

import sketchsim.decode as decode_mod
from sketchsim.harness.sweep import expand_grid, load_experiment, plan_runs, run_seed

thm1 = load_experiment("thm1_attributes")      # also makes the top-level experiments/ importable
erasure = load_experiment("erasure")
unrolling = load_experiment("unrolling")

MODULES = [thm1, erasure, unrolling]


def _rows(mod, grid, reps=2, seed=0):
    """Tidy rows (p_/m_ columns, rep, seed) from run_one over a small grid, like the sweep does."""
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
        {"family": ["haar", "gaussian"], "d_sketch": [64, 128], "weight": [0.4], "depth": [2]},
        {"family": ["block-sparse"], "d_sketch": [768], "block_size": [48], "block_prob": [0.25],
         "weight": [0.4], "depth": [2]},
    ],
    "erasure": [
        {"family": ["hadamard"], "d_sketch": [2 ** 10], "keep_frac": [0.5, 0.25, 0.125],
         "weight": [0.4], "depth": [2]},
        {"family": ["block-sparse"], "d_sketch": [768], "block_size": [48], "block_prob": [0.25],
         "keep_frac": [0.5, 0.25], "weight": [0.4], "depth": [2]},
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
    for attr in ("NAME", "TITLE", "STATEMENT"):
        assert isinstance(getattr(mod, attr), str) and getattr(mod, attr)
    assert {"quick", "full"} <= set(mod.PROFILES)
    for fn in ("run_one", "analyze", "figures", "skip", "theory", "warm_up"):
        assert callable(getattr(mod, fn)), fn
    quick = [r for r in plan_runs(mod, "quick") if not mod.skip(r.params)[0]]
    assert len(quick) == len(plan_runs(mod, "quick")), "the quick profile must not plan skipped runs"
    full = [r for r in plan_runs(mod, "full") if not mod.skip(r.params)[0]]
    assert len(full) > len(quick)
    # enough rows for a fit: every quick grid has ≥ 3 reps, and some family spans ≥ 3 values of d
    for grid in mod.PROFILES["quick"]:
        assert grid["reps"] >= 3
    ds = pd.Series([r.params["d_sketch"] for r in quick if r.params["family"] == "hadamard"])
    assert ds.nunique() >= 3
    for r in quick[:3]:
        th = mod.theory(r.params)
        assert all(isinstance(v, float) and math.isfinite(v) for v in th.values())


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
    assert thm1.skip({"family": "block-sparse", "d_sketch": 12288, "block_size": 48, "block_prob": 0.25,
                      "weight": 0.4, "depth": 2})[0]               # b below the minimum for d
    assert thm1.skip({"family": "block-sparse", "d_sketch": 1536, "block_size": 48, "block_prob": 0.1,
                      "weight": 0.4, "depth": 2})[0]               # q·d/b < 4
    assert not thm1.skip({"family": "block-sparse", "d_sketch": 1536, "block_size": 48,
                          "block_prob": 0.25, "weight": 0.4, "depth": 2})[0]
    assert erasure.skip({"family": "hadamard", "d_sketch": 1024, "keep_frac": 1.0, "weight": 0.4,
                         "depth": 2})[0]
    assert erasure.skip({"family": "block-sparse", "d_sketch": 768, "block_size": 48, "block_prob": 0.25,
                         "keep_frac": 0.03125, "weight": 0.4, "depth": 2})[0]   # 24 is not a block boundary


def test_graphs_control_the_weight_exactly():
    rng = np.random.default_rng(0)
    for h in (2, 3):
        for w in (0.1, 0.37, 1.0):
            for dec in ("i", "ii"):
                g, path = thm1.build_graph(h, w, dec, rng)
                assert g.depth("t") == h and len(path) == h - 1
                assert g.weight("t") == pytest.approx(w, rel=1e-12)
                same = g.objects_of("T")
                assert (len(same) == 1) == (dec == "i" or w == 1.0)


def test_estimators_are_exact_without_erasure():
    """keep = d: the prefix and the random-subset estimators equal the full decoder."""
    import sketchsim as ss

    rng = np.random.default_rng(1)
    bank = ss.MatrixBank(128, "haar", 5)
    g, _ = thm1.build_graph(2, 0.5, "i", rng)
    s = ss.sketch(g, bank)
    full = decode_mod.attributes(s, bank, "T", 2, weight=0.5, length=8)
    rnd = erasure.random_subset_attributes(s, bank, "T", 2, 0.5, 128, rng, length=8)
    pre = decode_mod.attributes(decode_mod.erase(s, 128, bank), bank, "T", 2, weight=0.5, length=8)
    np.testing.assert_allclose(rnd, full, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(pre, full, rtol=1e-12, atol=1e-14)


def test_unrolling_readout_matches_path_decoder(tiny_frames):
    df = tiny_frames["unrolling"]
    assert df["m_attr_path_mismatch"].max() < 1e-9


# ------------------------------------------------------------------------------ analyze/figures
EXPECTED_KEYS = {
    "thm1_attributes": {f"thm1.{dec}.depth{h}.{k}" for dec in ("i", "ii") for h in (2, 3)
                        for k in ("alpha_d", "beta_w", "C", "violation_rate", "median_norm_err")}
    | {f"thm1.family.{f}.median_norm_err" for f in ("hadamard", "haar", "gaussian", "block-sparse")},
    "erasure": {f"erasure.{m}.{k}" for m in ("prefix", "random")
                for k in ("exponent", "C", "violation_rate", "median_norm_err")}
    | {"erasure.prefix_over_random"},
    "unrolling": {f"unrolling.depth{h}.{m}.{k}" for h in (2, 3) for m in ("probe", "attr")
                  for k in ("alpha_d", "C", "violation_rate")}
    | {f"unrolling.depth{h}.median_{m}_norm_err" for h in (2, 3) for m in ("probe", "attr")}
    | {"unrolling.max_path_mismatch"},
}


@pytest.mark.parametrize("mod", MODULES, ids=lambda m: m.NAME)
def test_analyze_and_figures(mod, tiny_frames, tmp_path):
    df = tiny_frames[mod.NAME]
    res = mod.analyze(df)
    assert set(res) >= {"markdown", "baselines"}
    assert isinstance(res["markdown"], str) and "erdict" in res["markdown"]
    base = res["baselines"]
    assert set(base) == EXPECTED_KEYS[mod.NAME]
    assert all(isinstance(v, float) and math.isfinite(v) for v in base.values())
    paths = mod.figures(df, str(tmp_path))
    assert paths and len(paths) == len(mod.FIGURES)
    for p in paths:
        assert os.path.dirname(p) == str(tmp_path) and p.endswith(".png")
        with open(p, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
        assert f"](../paper_figs/{os.path.basename(p)})" in res["markdown"]
    # empty or unrelated tables do not crash
    empty = df.iloc[0:0]
    assert isinstance(mod.analyze(empty)["markdown"], str)
    assert mod.figures(empty, str(tmp_path / "empty")) == []


# ------------------------------------------------------------------------ regression detection
def _thm1_fit_frame(reps=3):
    grid = {"family": ["hadamard"], "d_sketch": [2 ** 10, 2 ** 12, 2 ** 14], "weight": [0.2, 0.8],
            "depth": [2]}
    return _rows(thm1, grid, reps=reps, seed=7)


def test_thm1_analysis_detects_wrong_depth_constant(monkeypatch):
    good = _thm1_fit_frame()
    g = thm1.analyze(good)["baselines"]
    fit_good = thm1._fits(good)[("i", 2)][0]
    # predictions hold for the correct decoder
    assert fit_good.interval("d")[0] - 0.1 < -0.5 < fit_good.interval("d")[1] + 0.1
    assert 0.5 < g["thm1.i.depth2.median_norm_err"] / thm1.lmax_median(thm1.ATTR_DIM) < 2.0

    orig = decode_mod.depth_constant
    monkeypatch.setattr(decode_mod, "depth_constant", lambda h: 2.0 * orig(h))   # a decoder bug
    bad = _thm1_fit_frame()
    monkeypatch.undo()
    b = thm1.analyze(bad)["baselines"]
    fit_bad = thm1._fits(bad)[("i", 2)][0]
    lo, hi = fit_good.constant_ci
    # the fitted constant leaves the good fit's interval by a wide margin ...
    assert not lo / 2 <= fit_bad.constant <= hi * 2, (fit_bad.constant, (lo, hi))
    # ... the d exponent is no longer −½ ...
    assert fit_bad.exponent("d") > fit_good.interval("d")[1] + 0.1
    # ... and the median normalised error leaves the 95% order-statistic interval of the good median
    ne = np.sort(good["m_norm_err_i"].to_numpy())
    n = len(ne)
    half = 1.96 * math.sqrt(n) / 2
    lo_med, hi_med = ne[max(0, int(n / 2 - half))], ne[min(n - 1, int(math.ceil(n / 2 + half)))]
    assert lo_med <= g["thm1.i.depth2.median_norm_err"] <= hi_med
    assert b["thm1.i.depth2.median_norm_err"] > 1.3 * hi_med, (b["thm1.i.depth2.median_norm_err"], hi_med)
