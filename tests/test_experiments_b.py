"""Tests of the Theorem 2 and Theorem 3 experiments (experiments/thm2_similarity.py, thm3_summary.py).

* contract (experiments/README.md): names, profiles, callables, grids that expand and skip cleanly;
* ``run_one`` on tiny parameters: finite floats only, bit-identical for a fixed seed;
* ``analyze`` / ``figures`` on a tiny results table: the promised keys, PNG files, figure links;
* Theorem 2(iii) for haar: ‖Δs‖/ε ≤ ½ (and the sharper chain bound w_θ·2^{−h}) on every run;
* regression: rows produced with a decoder whose constant is wrong move the baselines far outside
  their seed-to-seed spread (what ``sketchsim check`` relies on).
"""
from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd
import pytest

from sketchsim.harness import sweep

MODULES = ("thm2_similarity", "thm3_summary")


def load(name):
    return sweep.load_experiment(name)


def rows(mod, grid, base_seed=0):
    """The tidy table (p_/m_ columns) of ``grid`` run serially with the sweep's named seeds."""
    reps = grid.get("reps", 1) if isinstance(grid, dict) else 1
    out = []
    for params in sweep.expand_grid(grid):
        skip = getattr(mod, "skip", None)
        if skip is not None and skip(params)[0]:
            continue
        for rep in range(reps):
            seed = sweep.run_seed(base_seed, mod.NAME, params, rep)
            metrics = mod.run_one(dict(params), np.random.default_rng(seed))
            row = {f"p_{k}": v for k, v in params.items()}
            row.update({f"m_{k}": v for k, v in metrics.items()})
            row.update(rep=rep, seed=seed, time_s=0.0)
            out.append(row)
    return pd.DataFrame(out)


def table(mod, grids, base_seed=0):
    return pd.concat([rows(mod, g, base_seed) for g in grids], ignore_index=True)


# --------------------------------------------------------------------------- tiny grids
T2_TINY = [
    {"part": "i", "family": "hadamard", "d": [256, 1024, 4096], "reps": 2},
    {"part": "i", "family": "haar", "d": [32, 64], "reps": 2},
    {"part": "ii", "family": "hadamard", "d": [4096], "depth": [2], "w": [0.5, 0.9], "wbar": [0.5, 0.9]},
    {"part": "ii", "family": "block-sparse", "d": [96], "depth": [2], "w": [0.9], "wbar": [0.9],
     "b": 48, "q": 0.5},
    {"part": "iii", "family": ["haar", "gaussian"], "d": [64], "graph": ["single", "random"], "eps": [0.1],
     "reps": 2},
    {"part": "hist", "family": "hadamard", "d": [1024], "reps": 4},
]

T3_TINY = [
    {"family": "hadamard", "d": [1024, 4096, 16384], "depth": [2], "w": [0.08, 0.16], "n": [3], "reps": 2},
    {"family": "hadamard", "d": [4096], "depth": [3], "w": [0.16], "n": [2], "reps": 1},
    {"family": "block-sparse", "d": [96], "depth": [2], "w": [0.16], "n": [3], "b": 48, "q": 0.5,
     "reps": 1},
]


@pytest.fixture(scope="module")
def t2_df():
    return table(load("thm2_similarity"), T2_TINY)


@pytest.fixture(scope="module")
def t3_df():
    return table(load("thm3_summary"), T3_TINY)


# --------------------------------------------------------------------------- contract
@pytest.mark.parametrize("name", MODULES)
def test_module_satisfies_the_contract(name):
    mod = load(name)                                   # sweep's own contract check runs here
    assert mod.NAME == name
    assert isinstance(mod.TITLE, str) and mod.TITLE
    assert isinstance(mod.STATEMENT, str) and "Theorem" in mod.STATEMENT
    assert {"quick", "full"} <= set(mod.PROFILES)
    for fn in ("run_one", "analyze", "figures", "skip", "theory"):
        assert callable(getattr(mod, fn)), fn
    for profile in ("quick", "full"):
        runs = sweep.plan_runs(name, profile)
        kept = [r for r in runs if not mod.skip(r.params)[0]]
        assert kept, profile
        for r in kept:
            assert all(math.isfinite(v) for v in mod.theory(r.params).values())
    assert len(sweep.plan_runs(name, "quick")) < len(sweep.plan_runs(name, "full"))


@pytest.mark.parametrize("name,params", [
    ("thm2_similarity", {"part": "i", "family": "hadamard", "d": 256}),
    ("thm2_similarity", {"part": "ii", "family": "haar", "d": 64, "depth": 3, "w": 0.5, "wbar": 0.9}),
    ("thm2_similarity", {"part": "iii", "family": "block-sparse", "d": 96, "graph": "random", "eps": 0.5,
                         "b": 48, "q": 0.5}),
    ("thm2_similarity", {"part": "hist", "family": "gaussian", "d": 64}),
    ("thm3_summary", {"family": "hadamard", "d": 256, "depth": 3, "w": 0.16, "n": 3}),
    ("thm3_summary", {"family": "gaussian", "d": 64, "depth": 2, "w": 0.1, "n": 6}),
])
def test_run_one_returns_finite_floats_and_is_deterministic(name, params):
    mod = load(name)
    a = mod.run_one(dict(params), np.random.default_rng(123))
    b = mod.run_one(dict(params), np.random.default_rng(123))
    c = mod.run_one(dict(params), np.random.default_rng(124))
    assert a and set(a) == set(b)
    for k, v in a.items():
        assert type(v) is float, (k, type(v))
        assert math.isfinite(v), (k, v)
        assert v == b[k], k                       # bit-identical for a fixed seed
    assert a != c


def test_thm3_graph_has_exactly_equal_effective_weights():
    mod = load("thm3_summary")
    for n, w, h in [(1, 0.3, 2), (6, 0.16, 2), (5, 0.1, 3), (6, 0.16, 3)]:
        g, targets = mod.summary_graph(n, w, h, np.random.default_rng(0))
        assert len(targets) == n
        assert all(g.weight(t) == w and g.depth(t) == h for t in targets)
        assert set(g.objects_of("M")) == set(targets)
    assert mod.skip({"family": "hadamard", "d": 256, "depth": 3, "w": 0.2, "n": 5})[0]
    with pytest.raises(ValueError, match="Σw ≤ 1"):
        mod.summary_graph(5, 0.3, 2, np.random.default_rng(0))


def test_perturbation_is_exact_nonnegative_and_unit():
    mod = load("thm2_similarity")
    rng = np.random.default_rng(5)
    for eps in (1e-3, 0.1, 0.9):
        x = mod._unit_nonneg(rng, 8)
        xp, used = mod._arc_point(x, eps)
        assert used == pytest.approx(eps, rel=1e-9)
        assert np.all(xp >= 0) and np.linalg.norm(xp) == pytest.approx(1.0, abs=1e-12)


# --------------------------------------------------------------------------- Theorem 2(iii)
def test_haar_perturbation_ratio_is_at_most_one_half(t2_df):
    mod = load("thm2_similarity")
    df = pd.concat([t2_df, rows(mod, {"part": "iii", "family": "haar", "d": [32, 128],
                                      "graph": ["single", "random"], "eps": [0.01, 1.0], "reps": 2},
                                base_seed=7)])
    haar = df[(df["p_part"] == "iii") & (df["p_family"] == "haar")]
    assert len(haar) >= 20
    assert (haar["m_ratio"] <= 0.5).all() and (haar["m_worst"] <= 0.5).all()
    assert (haar["m_ratio"] <= haar["m_worst"] * (1 + 1e-9)).all()      # a direction is ≤ the sup
    assert (haar["m_worst_over_chain"] <= 1 + 1e-9).all()               # σ_max ≤ w_θ 2^{−h}


# --------------------------------------------------------------------------- analyze / figures
def _check_outputs(mod, df, tmp_path, figs):
    out = mod.analyze(df)
    assert set(out) >= {"markdown", "baselines"}
    md, base = out["markdown"], out["baselines"]
    assert isinstance(md, str) and "Verdict" in md and "Rule" in md and "95%" in md
    assert base and all(isinstance(k, str) and k.startswith(mod.NAME.split("_")[0] + ".") for k in base)
    assert all(type(v) is float and math.isfinite(v) for v in base.values())
    paths = mod.figures(df, str(tmp_path))
    names = sorted(os.path.basename(p) for p in paths)
    assert names == sorted(figs)
    for p in paths:
        with open(p, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
        assert f"](../paper_figs/{os.path.basename(p)})" in md
    return base


def test_thm2_analyze_and_figures(t2_df, tmp_path):
    mod = load("thm2_similarity")
    base = _check_outputs(mod, t2_df, tmp_path, [mod.FIG_HIST, mod.FIG_DISJOINT, mod.FIG_DOT, mod.FIG_PERTURB])
    for key in ("thm2.i.alpha_d.hadamard", "thm2.ii.ratio_median", "thm2.ii.beta_ww",
                "thm2.iii.max_ratio.haar", "thm2.iii.orthonormal_violations", "thm2.hist.auc_cos"):
        assert key in base, key
    assert base["thm2.iii.orthonormal_violations"] == 0.0
    assert 0.8 < base["thm2.ii.ratio_median"] < 1.25       # word-count prediction at d = 4096
    # a table holding one part only still analyses
    assert mod.analyze(t2_df[t2_df["p_part"] == "iii"])["baselines"]


def test_thm3_analyze_and_figures(t3_df, tmp_path):
    mod = load("thm3_summary")
    base = _check_outputs(mod, t3_df, tmp_path, [mod.FIG_COUNT_D, mod.FIG_COUNT_W, mod.FIG_EXACT, mod.FIG_ATTR])
    for key in ("thm3.count.alpha_d.h2", "thm3.count.beta_w.h2", "thm3.count.C_norm.h2",
                "thm3.count.exact_rate.h2", "thm3.sum.alpha_d_norm.h2", "thm3.count.error_over_sigma.h2"):
        assert key in base, key
    assert base["thm3.count.exact_rate.h2"] > 0.5


# --------------------------------------------------------------------------- regression detection
REG3 = {"family": "hadamard", "d": [1024, 4096, 16384], "depth": [2], "w": [0.08, 0.16], "n": [3], "reps": 2}


def test_thm3_baselines_catch_a_count_decoder_with_a_doubled_constant(monkeypatch):
    import sketchsim.decode as decode
    from sketchsim import theory

    mod = load("thm3_summary")
    good = [mod.analyze(rows(mod, REG3, base_seed=s))["baselines"] for s in (0, 1)]
    monkeypatch.setattr(decode, "depth_constant", lambda h: 2.0 * theory.depth_constant(h))
    bad = mod.analyze(rows(mod, REG3, base_seed=0))["baselines"]
    for key in ("thm3.count.exact_rate.h2", "thm3.count.error_over_sigma.h2"):
        spread = abs(good[0][key] - good[1][key])
        moved = abs(bad[key] - good[0][key])
        assert moved > 5 * spread + 0.05 * abs(good[0][key]), (key, good, bad[key])
    assert bad["thm3.count.exact_rate.h2"] < 0.1 < 0.6 < good[0]["thm3.count.exact_rate.h2"]
    # a constant bias n/2 no longer shrinks with d: the fitted exponent collapses toward 0
    assert abs(bad["thm3.count.alpha_d.h2"]) < 0.2 < abs(good[0]["thm3.count.alpha_d.h2"])


def test_thm2_baselines_catch_a_similarity_decoder_off_by_two(monkeypatch):
    import sketchsim.decode as decode

    mod = load("thm2_similarity")
    grid = {"part": "ii", "family": "hadamard", "d": [4096], "depth": [2], "w": [0.5, 0.9], "wbar": [0.9]}
    good = [mod.analyze(rows(mod, grid, base_seed=s))["baselines"]["thm2.ii.ratio_median"] for s in (0, 1)]
    real = decode.similarity

    def doubled(a, b):
        r = real(a, b)
        return decode.Similarity(2 * r.dot, r.cosine, r.norm1, r.norm2, r.keep)

    monkeypatch.setattr(decode, "similarity", doubled)
    bad = mod.analyze(rows(mod, grid, base_seed=0))["baselines"]["thm2.ii.ratio_median"]
    assert abs(bad - good[0]) > 5 * abs(good[0] - good[1]) + 0.1
    assert bad == pytest.approx(2 * good[0], rel=1e-12)
