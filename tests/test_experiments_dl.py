"""Dictionary-learning experiment modules (issue 4): thm4_dictlearn and dictlearn_sketches — contract,
determinism of run_one, analysis and figures on tiny frames, and that the Theorem 4 analysis flags a
broken learner (sign rule broken, count threshold wrong) as a regression."""
import math
import os

import numpy as np
import pandas as pd
import pytest

from sketchsim.harness.sweep import expand_grid, load_experiment, read_results, run_seed, run_sweep

thm4 = load_experiment("thm4_dictlearn")          # also makes the top-level experiments/ importable
sketches = load_experiment("dictlearn_sketches")

TIMING = ("t_recover", "t_gen", "t_bank", "t_sketch", "mb_time", "dl_time")


def _rows(mod, grid, reps=1, seed=0):
    """Tidy rows (p_/m_/t_ columns, rep, seed) from run_one over a small grid, like the sweep."""
    rows = []
    for params in expand_grid(grid):
        for rep in range(reps):
            s = run_seed(seed, mod.NAME, params, rep)
            m = mod.run_one(params, np.random.default_rng(s))
            row = {f"p_{k}": v for k, v in params.items()}
            row.update({f"m_{k}": v for k, v in m.items()})
            if hasattr(mod, "theory"):
                row.update({f"t_{k}": v for k, v in mod.theory(dict(params)).items()})
            row.update(rep=rep, seed=s)
            rows.append(row)
    return pd.DataFrame(rows)


# Small versions of every thm4 study (d ≈ 4k, a few dozen samples): seconds in total.
TINY4 = [
    {"study": ["qk"], "d": [4095], "b": [45], "S": [40], "q": [0.1, 0.25], "K": [1, 3]},
    {"study": ["ds"], "d": [2047, 4095], "b": [0], "S": [10, 40], "q": [0.1]},
    {"study": ["noise"], "d": [4095], "b": [45], "S": [40], "q": [0.1], "l1": [0.0, 0.01], "linf": [0.0, 0.1]},
    {"study": ["thr"], "d": [4095], "b": [45], "S": [40], "q": [0.1], "l1": [0.003], "linf": [0.05],
     "hypercube_tol": [0.3], "count_frac": [0.5, 0.8], "hamming_tol": [0, 1]},
    {"study": ["levels"], "d": [4095], "b": [45], "S": [20], "q": [0.05], "K": [1], "pool": [5], "rho": [0.0],
     "chain": [1, 2], "branch": ["pure", "identity"]},
    {"study": ["sklearn"], "d": [1014], "b": [0], "q": [0.2], "S": [60], "pool": [4], "cap": [3.0]},
]
# qk/ds/noise-free rows only: the rows that the rate-vs-prediction check uses
CLEAN4 = [{"study": ["qk"], "d": [4095], "b": [45], "S": [40], "q": [0.1, 0.2], "K": [1, 2]}]


@pytest.fixture(scope="module")
def frame4():
    return _rows(thm4, TINY4)


# ----------------------------------------------------------------------------------- contract
@pytest.mark.parametrize("mod", [thm4, sketches], ids=lambda m: m.NAME)
def test_contract(mod):
    assert isinstance(mod.NAME, str) and isinstance(mod.TITLE, str) and mod.STATEMENT.strip()
    assert {"quick", "full"} <= set(mod.PROFILES)
    for name in ("run_one", "figures", "analyze", "warm_up"):
        assert callable(getattr(mod, name)), name
    for prof in ("quick", "full"):
        assert expand_grid(mod.PROFILES[prof])


def test_every_profile_point_has_valid_dimensions():
    for prof in ("quick", "full"):
        for params in expand_grid(thm4.PROFILES[prof]):
            p = thm4.full_params(params)
            assert p["d"] % p["b"] == 0 and p["b"] % 3 == 0
            assert p["K"] <= p["N"] * p["pool"]
            th = thm4.theory(params)
            assert params["study"] == "levels" or 0.0 <= th["rate"] <= 1.0
        for params in expand_grid(sketches.PROFILES[prof]):
            d, b = sketches.dims(params["d"])
            assert d % b == 0 and 0 < params["blocks"] * b / d < 1


def test_dims_picks_smallest_admissible_block():
    assert thm4.dims(11400, 57) == (11400, 57)
    assert thm4.dims(32768) == (32724, 54)
    assert sketches.dims(131072) == (131040, 60)
    with pytest.raises(ValueError, match="b must be a multiple of 3"):
        thm4.dims(11400, 30)


# ----------------------------------------------------------------------------------- determinism
def _strip(m):
    return {k: v for k, v in m.items() if not k.startswith(TIMING)}


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], float) and math.isnan(a[k]):
            assert isinstance(b[k], float) and math.isnan(b[k]), k
        else:
            assert a[k] == b[k], k


@pytest.mark.parametrize("params", [
    {"study": "qk", "d": 4095, "b": 45, "S": 30, "q": 0.1, "K": 3, "l1": 0.01, "linf": 0.05},
    {"study": "levels", "d": 4095, "b": 45, "S": 10, "q": 0.05, "K": 1, "pool": 5, "chain": 2, "branch": "identity"},
])
def test_thm4_run_one_is_deterministic(params):
    a = thm4.run_one(params, np.random.default_rng(7))
    b = thm4.run_one(params, np.random.default_rng(7))
    _same(_strip(a), _strip(b))
    c = thm4.run_one(params, np.random.default_rng(8))
    assert _strip(c) != _strip(a)


def test_sketches_run_one_is_deterministic_and_exact():
    params = {"d": 16384, "blocks": 4, "S": 4, "depth": 1}
    a = sketches.run_one(params, np.random.default_rng(3))
    b = sketches.run_one(params, np.random.default_rng(3))
    _same(_strip(a), _strip(b))
    assert a["n_id_columns"] == 6 and a["n_matrices_true"] == 9
    for suf in sketches.SETTINGS:
        assert a[f"bad_{suf}"] == 0


# ----------------------------------------------------------------------------------- thm4 pieces
def test_samples_and_evaluation_are_exact_on_noise_free_data():
    """Every recovered essential column is the true one block by block; coefficients match."""
    p = thm4.full_params({"study": "qk", "d": 4095, "b": 45, "S": 40, "q": 0.1, "K": 2, "rho": 0.0})
    sm = thm4.draw_samples(np.random.default_rng(0), p)
    out, res = thm4._ours(sm, p)
    assert out["rate"] > 0.3 and out["wrong"] == 0 and out["spurious"] == 0 and out["sign_err"] == 0
    assert out["err_cert"] < 1e-12                   # no noise, no residual: exact magnitudes
    assert out["perm_ok"] == 1.0
    # the essential set is exactly the heavy (matrix, column) pairs
    assert {tuple(e) for e in sm["ess"]} == set(zip(sm["hi"].tolist(), sm["hj"].tolist()))


def test_predicted_rate_matches_its_oracle_limits():
    # K = 1, count threshold 1 block: every column with ≥ 1 block is certified at its first appearance
    r = thm4.predicted_rate(4095, 45, 0.1, 1, 50, 3, 10, count_frac=1 / (0.1 * 4095 / 45))
    assert r == pytest.approx(1 - 0.9 ** 91, abs=1e-9)
    # a threshold above the number of blocks certifies nothing
    assert thm4.predicted_rate(4095, 45, 0.1, 3, 50, 3, 10, count_frac=1.0) < 0.6
    assert thm4.predicted_rate(4095, 45, 0.5, 12, 50, 3, 10, count_frac=0.8) < 1e-6


def test_match_fraction_is_sign_and_order_invariant():
    rng = np.random.default_rng(0)
    T = rng.standard_normal((5, 40))
    A = -T[::-1] * 2.0
    assert thm4.match_fraction(A, T) == 1.0
    assert thm4.match_fraction(A[:3], T) == 0.6
    assert thm4.match_fraction(rng.standard_normal((5, 40)), T) == 0.0


# ----------------------------------------------------------------------------------- analysis
def test_thm4_analyze_and_figures(frame4, tmp_path):
    df = frame4
    ours = df[df["p_study"] != "levels"]
    assert (ours["m_wrong"] == 0).all() and (ours["m_sign_err"] == 0).all() and (ours["m_spurious"] == 0).all()
    res = thm4.analyze(df)
    assert set(res) >= {"markdown", "baselines", "verdict"}
    assert not res["verdict"].startswith("REGRESSION"), res["verdict"]
    base = res["baselines"]
    for key in ("thm4.wrong_block_columns", "thm4.sign_errors", "thm4.spurious_columns",
                "thm4.rate_minus_prediction", "thm4.thr_default_rate", "thm4.sklearn_gap_minibatch",
                "thm4.levels_pure2_deep_rate"):
        assert key in base and math.isfinite(base[key]), key
    md = res["markdown"]
    for text in ("Phase transition over q × K", "scikit-learn peer", "Recursion levels", "Thresholds"):
        assert text in md
    paths = thm4.figures(df, str(tmp_path))
    assert {os.path.basename(p) for p in paths} >= {thm4.FIGURES[i] for i in (0, 1, 2, 3, 4, 5)}
    assert all(os.path.getsize(p) > 1000 for p in paths)
    assert thm4.analyze(df.iloc[0:0])["verdict"] == "no data"


def _broken_sign(Y, b, q, **kw):
    res = thm4.__dict__["_real_recover"](Y, b, q, **kw)
    res.column_block_sign = -res.column_block_sign          # the sign rule inverted
    res.coef_value = -res.coef_value
    return res


def _broken_count(Y, b, q, **kw):
    kw["count_frac"] = 1.0                                    # ignores the requested threshold
    return thm4.__dict__["_real_recover"](Y, b, q, **kw)


@pytest.fixture(scope="module")
def good_clean():
    return thm4.analyze(_rows(thm4, CLEAN4, reps=2))


@pytest.mark.parametrize("broken,key", [(_broken_sign, "thm4.wrong_block_columns"),
                                        (_broken_count, "thm4.rate_minus_prediction")])
def test_thm4_analyze_flags_a_broken_learner(monkeypatch, good_clean, broken, key):
    good = good_clean
    monkeypatch.setitem(thm4.__dict__, "_real_recover", thm4.recover)
    monkeypatch.setattr(thm4, "recover", broken)
    bad = thm4.analyze(_rows(thm4, CLEAN4, reps=2))
    assert not good["verdict"].startswith("REGRESSION")
    assert bad["verdict"].startswith("REGRESSION"), bad["verdict"]
    assert "REGRESSION" in bad["markdown"]
    g, b_ = good["baselines"], bad["baselines"]
    if key == "thm4.wrong_block_columns":
        assert g[key] == 0 and b_[key] > 0
        assert b_["thm4.qk_mean_rate_default"] == 0.0
    else:
        assert g[key] > -thm4.RATE_TOL and b_[key] < -thm4.RATE_TOL
        assert b_["thm4.qk_mean_rate_default"] < g["thm4.qk_mean_rate_default"] - 0.2


def test_sketches_sweep_analyze_and_figures(tmp_path):
    """Through the real sweep (CSV round trip of the string metric ``found``)."""
    s = run_sweep(sketches, profile="quick", grid_overrides={"d": [16384, 32768], "S": [4]},
                  results_dir=str(tmp_path), quiet=True)
    assert s.ok
    df = read_results(sketches.NAME, str(tmp_path))
    assert len(df) == 2 and "m_found_t50" in df
    res = sketches.analyze(df)
    assert set(res) >= {"markdown", "baselines", "verdict"}
    assert res["baselines"]["sketches.bad_columns"] == 0
    assert "What is and is not recovered" in res["markdown"]
    paths = sketches.figures(df, str(tmp_path / "figs"))
    assert [os.path.basename(p) for p in paths] == [sketches.FIGURES[0]]
    broken = df.copy()
    broken["m_bad_d"] = 3
    assert sketches.analyze(broken)["verdict"].startswith("REGRESSION")


def test_identity_truth_matches_the_sketch():
    """c_h·Σ W_θ x_θ[j] is the exact R_{M,1}ᵀ-coefficient when every other matrix is zero."""
    import sketchsim as ss

    g = sketches.network(1)
    d = 96
    bank = ss.MatrixBank(d, "block-sparse", 0, block_size=48, block_prob=0.5)
    keep = {n: bank.get(n) for n in bank.matrix_names(g) if n.startswith("module/") and n.endswith("/1")}
    zb = bank.replaced(overrides=keep, default="zero")       # every other matrix is 0: only I-words remain
    attrs, w, ow = ss.fixed_tree_values(g, 3, random_state=0)
    Y = ss.sketch_batch(g, zb, attrs, w, ow)
    truth = sketches.identity_truth(g, attrs, w, ow)
    est = sum(np.outer(truth[(n, j)], keep[n].column(j)) for n in keep for j in range(sketches.ATTR_DIM))
    np.testing.assert_allclose(Y, est, atol=1e-12)
