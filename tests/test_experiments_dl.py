"""Dictionary-learning studies: thm4_dictlearn and dictlearn_sketches — the study contract
(claims, details, figures, no analyze), determinism of run_one, the regime bound, the claims on small
tables, and that the Theorem 4 claims flag a broken learner (sign rule inverted, count threshold
ignored) as "not consistent"."""
import math
import os

import numpy as np
import pandas as pd
import pytest

from sketchsim.harness.claims import CONSISTENT, INCONCLUSIVE, NOT_CONSISTENT, Claim
from sketchsim.harness.studykit import block_dims, column_hamming
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


# Small versions of every thm4 study (d ≈ 4k–8k, a few dozen samples): seconds in total. The regime
# group lies inside the regime by the bound (B ≈ 0.005 at d = 8160, q = 0.2, K = 1).
REGIME4 = [{"study": ["regime"], "d_sketch": [8191], "block_size": [0], "block_prob": [0.2], "K": [1], "S": [20]}]
TINY4 = REGIME4 + [
    {"study": ["qk"], "d_sketch": [4095], "block_size": [45], "S": [40], "block_prob": [0.1, 0.25], "K": [1, 3]},
    {"study": ["ds"], "d_sketch": [2047, 4095], "block_size": [0], "S": [10, 40], "block_prob": [0.1]},
    {"study": ["noise"], "d_sketch": [4095], "block_size": [45], "S": [40], "block_prob": [0.1], "l1": [0.0, 0.01],
     "linf": [0.0, 0.1]},
    {"study": ["thr"], "d_sketch": [4095], "block_size": [45], "S": [40], "block_prob": [0.1], "l1": [0.003],
     "linf": [0.05], "hypercube_tol": [0.3], "count_frac": [0.5, 0.8], "hamming_tol": [0, 1]},
    {"study": ["levels"], "d_sketch": [4095], "block_size": [45], "S": [20], "block_prob": [0.05], "K": [1],
     "pool": [5], "rho": [0.0], "chain": [1, 2], "branch": ["pure", "identity"]},
]
SKLEARN4 = [{"study": ["sklearn"], "d_sketch": [1014], "block_size": [0], "block_prob": [0.2], "S": [40], "pool": [4],
             "cap": [0.5]}]


@pytest.fixture(scope="module")
def frame4():
    return pd.concat([_rows(thm4, REGIME4, reps=11), _rows(thm4, TINY4[1:])], ignore_index=True)


# ----------------------------------------------------------------------------------- contract
@pytest.mark.parametrize("mod", [thm4, sketches], ids=lambda m: m.NAME)
def test_contract(mod):
    assert isinstance(mod.NAME, str) and isinstance(mod.TITLE, str) and mod.STATEMENT.strip()
    assert isinstance(mod.ORDER, int) and mod.METHOD.strip() and isinstance(mod.FIGURES, tuple)
    assert {"quick", "full"} <= set(mod.PROFILES)
    for name in ("run_one", "figures", "claims", "details", "warm_up"):
        assert callable(getattr(mod, name)), name
    assert not hasattr(mod, "analyze")
    for prof in ("quick", "full"):
        for params in expand_grid(mod.PROFILES[prof]):
            assert not {"d", "b", "q", "blocks"} & set(params), params       # one vocabulary
    assert (thm4.ORDER, sketches.ORDER) == (60, 70)


def test_every_profile_point_has_valid_dimensions():
    for prof in ("quick", "full"):
        for params in expand_grid(thm4.PROFILES[prof]):
            p = thm4.full_params(params)
            assert p["d_sketch"] % p["block_size"] == 0 and p["block_size"] % 3 == 0
            assert p["K"] <= p["N"] * p["pool"]
            if prof == "full" and params["study"] not in ("regime", "sklearn"):
                continue                                    # the quick grid covers every study's theory
            th = thm4.theory(params)
            assert params["study"] == "levels" or 0.0 <= th["rate"] <= 1.0
            if params["study"] == "regime":                 # the regime study lies inside the regime
                assert th["fail_bound"] <= thm4.REGIME_DELTA, params
        for params in expand_grid(sketches.PROFILES[prof]):
            d, b = block_dims(params["d_sketch"])
            assert d % b == 0 and 0 < params["blocks_per_column"] * b / d < 1


def test_block_dims_picks_smallest_admissible_block():
    assert block_dims(11400, 57) == (11400, 57)
    assert block_dims(32768) == (32724, 54)
    assert block_dims(131072) == (131040, 60)
    with pytest.raises(ValueError, match="b must be a multiple of 3"):
        block_dims(11400, 30)


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
    {"study": "qk", "d_sketch": 4095, "block_size": 45, "S": 30, "block_prob": 0.1, "K": 3, "l1": 0.01,
     "linf": 0.05},
    {"study": "levels", "d_sketch": 4095, "block_size": 45, "S": 10, "block_prob": 0.05, "K": 1, "pool": 5,
     "chain": 2, "branch": "identity"},
])
def test_thm4_run_one_is_deterministic(params):
    a = thm4.run_one(params, np.random.default_rng(7))
    b = thm4.run_one(params, np.random.default_rng(7))
    _same(_strip(a), _strip(b))
    c = thm4.run_one(params, np.random.default_rng(8))
    assert _strip(c) != _strip(a)


def test_sketches_run_one_is_deterministic_and_exact():
    params = {"d_sketch": 16384, "blocks_per_column": 4, "S": 4, "depth": 1}
    a = sketches.run_one(params, np.random.default_rng(3))
    b = sketches.run_one(params, np.random.default_rng(3))
    _same(_strip(a), _strip(b))
    assert a["n_id_columns"] == 6 and a["n_matrices_true"] == 9
    assert (a["d_sketch"], a["block_size"]) == (16371, 51)
    for key in sketches.SETTINGS:
        assert a[f"bad_{key}"] == 0 and a[f"ntrue_{key}"] == a[f"ncols_{key}"]


# ----------------------------------------------------------------------------------- thm4 pieces
def test_samples_and_evaluation_are_exact_on_noise_free_data():
    """Every recovered essential column is the true one block by block; coefficients match."""
    p = thm4.full_params({"study": "qk", "d_sketch": 4095, "block_size": 45, "S": 40, "block_prob": 0.1, "K": 2,
                          "rho": 0.0})
    sm = thm4.draw_samples(np.random.default_rng(0), p)
    out, res = thm4._ours(sm, p)
    assert out["rate"] > 0.3 and out["wrong"] == 0 and out["spurious"] == 0 and out["sign_err"] == 0
    assert out["err_cert"] < 1e-12                   # no noise, no residual: exact magnitudes
    assert out["perm_ok"] == 1.0 and sm["res_max"] == 0.0
    # the essential set is exactly the heavy (matrix, column) pairs
    assert {tuple(e) for e in sm["ess"]} == set(zip(sm["hi"].tolist(), sm["hj"].tolist()))
    # the guarantee is the conjunction of its parts; an uncertified heavy coefficient misses ε
    assert out["guarantee"] == float(out["perm_ok"] == out["cols_ok"] == out["coefs_ok"] == 1.0)
    assert (out["coef_rate"] < 1.0) <= (out["coefs_ok"] == 0.0)


def test_column_hamming_counts_missing_wrong_and_extra_blocks():
    p = thm4.full_params({"study": "qk", "d_sketch": 4095, "block_size": 45, "S": 40, "block_prob": 0.1, "K": 1,
                          "rho": 0.0})
    sm = thm4.draw_samples(np.random.default_rng(1), p)
    out, res = thm4._ours(sm, p)
    c = 0
    i = int(np.flatnonzero(thm4.label_candidates(res, sm["ops"])[res.column_matrix[c]])[0])
    op, j = sm["ops"][i], int(res.column_index[c])
    dist, n_true = column_hamming(res, c, op, j)
    rows, _ = res.column_blocks(c)
    assert n_true == (op.col_ptr[j + 1] - op.col_ptr[j]) * op.b
    assert dist == n_true - len(rows) * op.b           # exact blocks: only the missing ones count
    assert column_hamming(res, None, op, j) == (n_true, n_true)


def test_predicted_rate_matches_its_oracle_limits():
    # K = 1, count threshold 1 block: every column with ≥ 1 block is certified at its first appearance
    r = thm4.predicted_rate(4095, 45, 0.1, 1, 50, 3, 10, count_frac=1 / (0.1 * 4095 / 45))
    assert r == pytest.approx(1 - 0.9 ** 91, abs=1e-9)
    # a threshold above the number of blocks certifies nothing
    assert thm4.predicted_rate(4095, 45, 0.1, 3, 50, 3, 10, count_frac=1.0) < 0.6
    assert thm4.predicted_rate(4095, 45, 0.5, 12, 50, 3, 10, count_frac=0.8) < 1e-6
    # the quadrature of the entry pass probability never exceeds 1 (it did: t_rate was NaN)
    assert 0.0 <= thm4.predicted_rate(32724, 54, 0.1, 1, 30, 3, 20, 0.5, rho=0.05, linf=0.05) <= 1.0


def test_guarantee_fail_bound_is_a_regime_not_a_fit():
    """B falls with d at fixed (q, K), rises with K and noise, and is ≥ the chance that a column has
    no nonzero block at all."""
    kw = dict(K=1, S=30, N=3, pool=20, count_frac=0.5)
    b1 = thm4.guarantee_fail_bound(4095, 45, 0.15, **kw)
    b2 = thm4.guarantee_fail_bound(16371, 51, 0.15, **kw)
    assert b2 < b1
    assert thm4.guarantee_fail_bound(16371, 51, 0.15, **dict(kw, K=3)) > b2
    assert thm4.guarantee_fail_bound(16371, 51, 0.15, **kw, linf=0.05, rho=0.05) > b2
    assert b1 >= thm4.predicted_collision_rate(45, 3, 1) > 0


def test_match_fraction_is_sign_and_order_invariant():
    rng = np.random.default_rng(0)
    T = rng.standard_normal((5, 40))
    A = -T[::-1] * 2.0
    assert thm4.match_fraction(A, T) == 1.0
    assert thm4.match_fraction(A[:3], T) == 0.6
    assert thm4.match_fraction(rng.standard_normal((5, 40)), T) == 0.0


# ----------------------------------------------------------------------------------- thm4 claims
def _by_name(claims):
    return {c.claim: c for c in claims}


def test_thm4_claims_and_details(frame4):
    df = frame4
    ours = df[df["p_study"] != "levels"]
    assert (ours["m_wrong"] == 0).all() and (ours["m_sign_err"] == 0).all() and (ours["m_spurious"] == 0).all()
    cl = thm4.claims(df)
    assert all(isinstance(c, Claim) for c in cl)
    got = _by_name(cl)
    assert list(got) == ["thm4", "thm4.prediction"]
    for c in cl:
        assert (c.family, c.depth) == ("block-sparse", 1)
    inside, outside = thm4.regime_split(df)
    assert len(inside) >= 11 and set(inside["p_study"]) >= {"regime"}
    assert got["thm4"].verdict()[0] == CONSISTENT, got["thm4"].evidence()
    assert "outside the regime, not evidence" in got["thm4"].note
    assert got["thm4.prediction"].verdict()[0] != NOT_CONSISTENT, got["thm4.prediction"].evidence()
    md = thm4.details(df)
    for text in ("inside and outside its regime", "Phase transition over q × K", "Recursion levels",
                 "Sensitivity to the thresholds", "the paper's rule"):
        assert text in md, text
    assert "../paper_figs" not in md and "Verdict" not in md
    empty = thm4.claims(df.iloc[0:0])
    assert [c.verdict()[0] for c in empty] == [INCONCLUSIVE, INCONCLUSIVE]


@pytest.mark.parametrize("studies,figs", [(("regime", "qk", "ds"), (0, 1, 7)),
                                          (("noise", "thr", "levels", "sklearn"), (2, 3, 4, 5, 7))])
def test_thm4_figures_and_the_sklearn_peer(frame4, tmp_path, studies, figs):
    df = frame4
    if "sklearn" in studies:
        sk = _rows(thm4, SKLEARN4)
        assert 0.0 <= sk["m_mb_match"].iloc[0] <= 1.0 and sk["m_n_components"].iloc[0] == sk["m_n_essential"].iloc[0]
        df = pd.concat([frame4, sk], ignore_index=True)
        assert "scikit-learn peer" in thm4.details(df)
    df = df[df["p_study"].isin(studies)]
    paths = thm4.figures(df, str(tmp_path))
    assert {os.path.basename(p) for p in paths} == {thm4.FIGURES[i] for i in figs}
    assert all(os.path.getsize(p) > 1000 for p in paths)


def test_thm4_outside_regime_runs_are_not_evidence(frame4):
    """Runs outside the regime never decide thm4: failing them all changes nothing."""
    df = frame4.copy()
    _, outside = thm4.regime_split(df)
    df.loc[outside.index, "m_guarantee"] = 0.0
    assert _by_name(thm4.claims(df))["thm4"].verdict()[0] == CONSISTENT
    inside, _ = thm4.regime_split(df)
    df.loc[inside.index[:len(inside) // 2 + 1], "m_guarantee"] = 0.0     # half: interval too wide to tell
    assert _by_name(thm4.claims(df))["thm4"].verdict()[0] == INCONCLUSIVE
    df.loc[inside.index, "m_guarantee"] = 0.0                          # none: interval below 0.9
    assert _by_name(thm4.claims(df))["thm4"].verdict()[0] == NOT_CONSISTENT


def _broken_sign(Y, b, q, **kw):
    res = thm4.__dict__["_real_recover"](Y, b, q, **kw)
    res.column_block_sign = -res.column_block_sign          # the sign rule inverted
    res.coef_value = -res.coef_value
    return res


def _broken_count(Y, b, q, **kw):
    kw["count_frac"] = 1.0                                    # ignores the requested threshold
    return thm4.__dict__["_real_recover"](Y, b, q, **kw)


QK4 = [{"study": ["qk"], "d_sketch": [4095], "block_size": [45], "S": [40], "block_prob": [0.1, 0.15, 0.2],
        "K": [2, 3]}]


def test_thm4_claims_flag_a_broken_sign_rule(monkeypatch):
    """Every block's sign inverted: no essential column within the Hamming tolerance, every certified
    coefficient off by 2|x| ≥ 0.6 > ε — thm4 is not consistent (10 regime runs, none meets it)."""
    monkeypatch.setitem(thm4.__dict__, "_real_recover", thm4.quiet_recover)
    monkeypatch.setattr(thm4, "quiet_recover", _broken_sign)
    bad = _by_name(thm4.claims(_rows(thm4, REGIME4, reps=10)))
    assert bad["thm4"].verdict()[0] == NOT_CONSISTENT, bad["thm4"].evidence()


def test_thm4_claims_flag_an_ignored_count_threshold(monkeypatch):
    """count_frac forced to 1: with K ≥ 2 heavy columns sharing blocks nearly nothing is certified,
    far below the block-counting prediction of the requested threshold."""
    monkeypatch.setitem(thm4.__dict__, "_real_recover", thm4.quiet_recover)
    monkeypatch.setattr(thm4, "quiet_recover", _broken_count)
    bad = _by_name(thm4.claims(_rows(thm4, QK4, reps=4)))
    assert bad["thm4.prediction"].verdict()[0] == NOT_CONSISTENT, bad["thm4.prediction"].evidence()


# ----------------------------------------------------------------------------------- sketches
def test_sketches_sweep_claims_details_and_figures(tmp_path):
    """Through the real sweep (CSV round trip of the string metric ``found``)."""
    s = run_sweep(sketches, profile="quick", grid_overrides={"d_sketch": [16384, 32768], "S": [4]},
                  results_dir=str(tmp_path), quiet=True)
    assert s.ok
    df = read_results(sketches.NAME, str(tmp_path))
    assert len(df) == 2 and "m_found_t50" in df and "m_found_default" in df
    cl = sketches.claims(df)
    assert [(c.claim, c.family, c.depth) for c in cl] == [("dictlearn_sketches", "block-sparse", 1)]
    assert cl[0].verdict()[0] != NOT_CONSISTENT
    md = sketches.details(df)
    assert "Library defaults (the claim's setting)" in md and "Sensitivity to the thresholds" in md
    assert "What is and is not recovered" in md and "../paper_figs" not in md
    paths = sketches.figures(df, str(tmp_path / "figs"))
    assert [os.path.basename(p) for p in paths] == [sketches.FIGURES[0]]


def test_sketches_claim_uses_the_defaults_only():
    """A wrong column under the defaults is caught; one under another setting is not a claim."""
    base = {"p_depth": 1, "p_blocks_per_column": 4, "p_S": 50, "m_d_sketch": 131040, "m_n_id_columns": 6}
    good = {f"m_{k}_default": v for k, v in dict(ncols=5, ntrue=5, ncomplete=2, nmat=3, named=3, id_exact=5,
                                                  other=0).items()}
    df = pd.DataFrame([{**base, **good, "m_ncols_t50": 4, "m_ntrue_t50": 2}] * 3)
    assert sketches.claims(df)[0].verdict()[0] == CONSISTENT
    broken = df.copy()
    broken.loc[0, "m_ntrue_default"] = 3
    c = sketches.claims(broken)[0]
    assert c.verdict() == (NOT_CONSISTENT, ["true_columns"])
    none = df.assign(m_ncols_default=0, m_ntrue_default=0, m_nmat_default=0, m_named_default=0,
                     m_id_exact_default=0)
    assert sketches.claims(none)[0].verdict()[0] == INCONCLUSIVE


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
