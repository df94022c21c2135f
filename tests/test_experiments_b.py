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


# --------------------------------------------------------------------------- Theorem 3 (thm3_summary)
T3_VOCAB = {"family", "d_sketch", "depth", "weight", "n_objects", "block_size", "block_prob", "reps"}

T3_TINY = [
    {"family": "hadamard", "d_sketch": [512, 2048, 8192], "depth": [2], "weight": [0.08, 0.16],
     "n_objects": [2, 6], "reps": 2},
    {"family": "haar", "d_sketch": [64], "depth": [2], "weight": [0.16], "n_objects": [6], "reps": 3},
    {"family": "block-sparse", "d_sketch": [384], "depth": [2], "weight": [0.16], "n_objects": [6],
     "block_size": 48, "block_prob": 0.5, "reps": 3},
]


@pytest.fixture(scope="module")
def t3_df():
    return table(load("thm3_summary"), T3_TINY)


def _t3_grid_keys(profile):
    grids = load("thm3_summary").PROFILES[profile]
    return set().union(*(set(g) for g in (grids if isinstance(grids, list) else [grids])))


def test_thm3_contract():
    mod = load("thm3_summary")                        # sweep's own contract check runs here
    assert mod.NAME == "thm3_summary" and mod.ORDER == 30
    assert isinstance(mod.TITLE, str) and mod.TITLE and "Theorem 3" in mod.STATEMENT
    assert isinstance(mod.METHOD, str) and "column-norm" in mod.METHOD
    for fn in ("run_one", "claims", "details", "figures", "skip", "theory", "warm_up"):
        assert callable(getattr(mod, fn)), fn
    assert not hasattr(mod, "analyze")                # the old contract is gone
    assert mod.FIGURES == (mod.FIG_COUNT_D, mod.FIG_COUNT_W, mod.FIG_EXACT, mod.FIG_ATTR)
    assert set(mod.SCOPE) == {"thm3.count", "thm3.sum", "thm3.mean"}
    for scope in mod.SCOPE.values():                  # unmeasured cells are reported, with the reason
        assert set(scope["families"]) == {"haar", "gaussian", "block-sparse", "hadamard"}
        assert tuple(scope["depths"]) == (2, 3) and "depth 3" in scope["why"]
    with open(mod.__file__, encoding="utf-8") as fh:   # no study imports another study
        src = fh.read()
    assert "from experiments" not in src and "import experiments" not in src
    for profile in ("quick", "full"):
        assert _t3_grid_keys(profile) <= T3_VOCAB, _t3_grid_keys(profile) - T3_VOCAB
        runs = sweep.plan_runs("thm3_summary", profile)
        kept = [r for r in runs if not mod.skip(r.params)[0]]
        assert len(kept) == len(runs), [r.params for r in runs if mod.skip(r.params)[0]][:3]
        fams = {(r.params["family"], r.params["depth"]) for r in kept}
        assert {("haar", 2), ("gaussian", 2), ("block-sparse", 2), ("hadamard", 2)} <= fams, fams
        for r in kept[:: max(1, len(kept) // 50)]:
            assert all(math.isfinite(v) for v in mod.theory(r.params).values())
    assert ("hadamard", 3) in {(r.params["family"], r.params["depth"]) for r in sweep.plan_runs("thm3_summary", "full")}
    assert len(sweep.plan_runs("thm3_summary", "quick")) < len(sweep.plan_runs("thm3_summary", "full"))



def _deterministic_finite_metrics(mod, params):
    """run_one's metrics: finite Python floats, bit-identical for a fixed seed, changed by another."""
    a = mod.run_one(dict(params), np.random.default_rng(123))
    b = mod.run_one(dict(params), np.random.default_rng(123))
    c = mod.run_one(dict(params), np.random.default_rng(124))
    assert a and set(a) == set(b)
    for k, v in a.items():
        assert type(v) is float, (k, type(v))
        assert math.isfinite(v), (k, v)
        assert v == b[k], k                       # bit-identical for a fixed seed
    assert a != c
    return a

@pytest.mark.parametrize("params", [
    {"family": "hadamard", "d_sketch": 256, "depth": 3, "weight": 0.16, "n_objects": 3},
    {"family": "gaussian", "d_sketch": 64, "depth": 2, "weight": 0.1, "n_objects": 6},
    {"family": "block-sparse", "d_sketch": 384, "depth": 2, "weight": 0.16, "n_objects": 2, "block_size": 48,
     "block_prob": 0.5},
])
def test_thm3_run_one_returns_finite_floats_and_is_deterministic(params):
    mod = load("thm3_summary")
    a = _deterministic_finite_metrics(mod, params)
    assert a["true_count"] == params["n_objects"]
    if params["family"] == "hadamard":            # orthonormal: the column-norm correction is the identity
        assert a["est_count"] == a["est_count_uncorrected"]


def test_thm3_graph_has_exactly_equal_effective_weights():
    mod = load("thm3_summary")
    for n, w, h in [(1, 0.3, 2), (6, 0.16, 2), (5, 0.1, 3), (6, 0.16, 3)]:
        g, targets = mod.summary_graph(n, w, h, np.random.default_rng(0))
        assert len(targets) == n
        assert all(g.weight(t) == w and g.depth(t) == h for t in targets)
        assert set(g.objects_of("M")) == set(targets)
    assert mod.skip({"family": "hadamard", "d_sketch": 256, "depth": 3, "weight": 0.2, "n_objects": 5})[0]
    with pytest.raises(ValueError, match="Σw ≤ 1"):
        mod.summary_graph(5, 0.3, 2, np.random.default_rng(0))


# ---- claims on synthetic tables: the rules, independent of the simulation
def _t3_synthetic(count_scale=1.0, sum_scale=1.0, alpha=-0.5, noise=1.0, seed=0,
                  families=("haar", "block-sparse", "hadamard")):
    """A results table drawn from the noise model of the study: every decoded coordinate carries
    N(0, s²) with s = noise·σ·(d/4096)^(α+½), σ = ‖s‖/(c_2 w √d) with c_2 = 1/32 written out; the
    count and the sum are scaled by ``count_scale`` / ``sum_scale`` (a decoder bug)."""
    rng = np.random.default_rng(seed)
    out = []
    K = 16                                        # coordinates per run (RMS and ℓ∞ over them)
    for fam in families:
        for d in (1024, 4096, 16384):
            for w in (0.08, 0.16):
                for n in (2, 6):
                    for rep in range(6):
                        norm = 0.1
                        sig = norm / (w * math.sqrt(d) / 32)
                        s = noise * sig * (d / 4096) ** (alpha + 0.5)
                        m = 0.33
                        ec = s * rng.standard_normal(K)
                        es = s * rng.standard_normal(K)
                        sm = sig * math.sqrt(1 + m * m) / n
                        em = noise * sm * (d / 4096) ** (alpha + 0.5) * rng.standard_normal(K)
                        row = {"p_family": fam, "p_d_sketch": d, "p_depth": 2, "p_weight": w, "p_n_objects": n,
                               "p_block_size": 48.0 if fam == "block-sparse" else np.nan,
                               "p_block_prob": 0.5 if fam == "block-sparse" else np.nan,
                               "m_true_count": float(n), "m_est_count": count_scale * n + float(ec.mean()),
                               "m_est_count_uncorrected": count_scale * n + float(ec.mean()),
                               "m_err_count": float(np.sqrt(np.mean((count_scale * n - n + ec) ** 2))),
                               "m_norm_err_count": float(np.sqrt(np.mean(((count_scale * n - n + ec) / sig) ** 2))),
                               "m_rate_exact_count": float(np.mean(np.abs(ec) < 0.5)),
                               "m_rate_exact_count_pred": math.erf(0.5 / (math.sqrt(2) * sig)),
                               "m_true_sum": n * m, "m_est_sum": sum_scale * n * m + float(es.mean()),
                               "m_err_sum": float(np.max(np.abs(es))),
                               "m_norm_err_sum": float(np.sqrt(np.mean((es / sig) ** 2))),
                               "m_true_mean": m, "m_est_mean": m + float(em.mean()),
                               "m_rel_err_mean": float(em.mean()) / m, "m_err_mean": float(np.max(np.abs(em))),
                               "m_norm_err_mean": float(np.sqrt(np.mean((em / sm) ** 2))),
                               "m_sketch_norm": norm, "m_noise_pred": sig, "m_e1_col_norm_sq": 1.0}
                        out.append(row)
    return pd.DataFrame(out)


def _t3_by_id(claims):
    return {(c.claim, c.family, c.depth): c for c in claims}


def test_thm3_claims_follow_the_preregistered_rules():
    from sketchsim.harness.claims import CONSISTENT, NOT_CONSISTENT

    mod = load("thm3_summary")
    good = _t3_by_id(mod.claims(_t3_synthetic()))
    assert set(good) == {(c, f, 2) for c in ("thm3.count", "thm3.sum", "thm3.mean")
                         for f in ("haar", "block-sparse", "hadamard")}
    for key, c in good.items():
        assert c.verdict()[0] == CONSISTENT, (key, c.evidence())
        keys = [t.key for t in c.tests]
        assert keys[0] == "bias" and "alpha_d" in keys, keys
        # σ is the prediction for rotation-invariant families only; D gets the theorem's bound on α
        assert ("noise_ratio" in keys) == (key[1] != "block-sparse"), keys
        alpha = next(t for t in c.tests if t.key == "alpha_d")
        assert alpha.kind == ("at_most" if key[1] == "block-sparse" else "equal")
    assert "pooled over b∈{48}" in good[("thm3.count", "block-sparse", 2)].note
    assert "substitute" in good[("thm3.count", "hadamard", 2)].note
    # the deliberate bug of the mutation suite: a count off by 25% turns thm3.count (and only it)
    bad = _t3_by_id(mod.claims(_t3_synthetic(count_scale=1.25)))
    for fam in ("haar", "block-sparse", "hadamard"):
        c = bad[("thm3.count", fam, 2)]
        assert c.verdict()[0] == NOT_CONSISTENT and "bias" in c.verdict()[1], c.evidence()
        assert bad[("thm3.sum", fam, 2)].verdict()[0] == CONSISTENT
    # a summed-attribute decoder off by 25%, an error falling like d^−¼, a noise 1.5× the prediction
    bad = _t3_by_id(mod.claims(_t3_synthetic(sum_scale=1.25)))
    assert bad[("thm3.sum", "haar", 2)].verdict() == (NOT_CONSISTENT, ["bias"])
    bad = _t3_by_id(mod.claims(_t3_synthetic(alpha=-0.25)))
    for name in ("thm3.count", "thm3.sum"):
        for fam in ("haar", "block-sparse"):
            assert "alpha_d" in bad[(name, fam, 2)].verdict()[1], bad[(name, fam, 2)].evidence()
    bad = _t3_by_id(mod.claims(_t3_synthetic(noise=1.5)))
    assert bad[("thm3.sum", "haar", 2)].verdict() == (NOT_CONSISTENT, ["noise_ratio"])
    assert bad[("thm3.sum", "block-sparse", 2)].verdict()[0] == CONSISTENT     # not tested for D
    assert "measured RMS error/σ = 1.4" in bad[("thm3.sum", "block-sparse", 2)].note     # ≈ 1.5
    # a faster decay is allowed for D (the theorem is a bound), not for rotation-invariant families
    fast = _t3_by_id(mod.claims(_t3_synthetic(alpha=-0.75)))
    assert fast[("thm3.sum", "block-sparse", 2)].verdict()[0] == CONSISTENT
    assert fast[("thm3.sum", "haar", 2)].verdict() == (NOT_CONSISTENT, ["alpha_d"])


def test_thm3_claims_details_and_figures_on_a_tiny_run(t3_df, tmp_path):
    mod = load("thm3_summary")
    cl = _t3_by_id(mod.claims(t3_df))
    assert set(cl) == {(c, f, 2) for c in ("thm3.count", "thm3.sum", "thm3.mean")
                       for f in ("haar", "block-sparse", "hadamard")}
    had = cl[("thm3.count", "hadamard", 2)]
    assert [t.key for t in had.tests] == ["bias", "alpha_d", "noise_ratio"]
    assert abs(had.tests[0].estimate - 1) < 0.1                       # unbiased count
    assert [t.key for t in cl[("thm3.count", "haar", 2)].tests] == ["bias", "noise_ratio"]   # one d
    text = mod.details(t3_df)
    assert "Column-norm correction" in text and "block-sparse" in text and "exact-count rate" in text
    paths = mod.figures(t3_df, str(tmp_path))
    assert sorted(os.path.basename(p) for p in paths) == sorted(mod.FIGURES)
    for p in paths:
        with open(p, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    assert mod.claims(t3_df.iloc[0:0]) == [] and mod.details(t3_df.iloc[0:0]) == ""


T3_REG = {"family": "hadamard", "d_sketch": [2048, 8192], "depth": [2], "weight": [0.16], "n_objects": [1, 6],
          "reps": 5}


def test_thm3_count_claim_flips_when_the_count_decoder_is_off_by_25_percent(monkeypatch):
    # the mutation suite's bug ("count decoder off by 25%"), on a real tiny run
    import sketchsim.decode as decode
    from sketchsim.harness.claims import CONSISTENT, NOT_CONSISTENT

    mod = load("thm3_summary")
    good = _t3_by_id(mod.claims(rows(mod, T3_REG)))[("thm3.count", "hadamard", 2)]
    real = decode.count
    monkeypatch.setattr(decode, "count", lambda *a, **k: 1.25 * real(*a, **k))
    bad = _t3_by_id(mod.claims(rows(mod, T3_REG)))[("thm3.count", "hadamard", 2)]
    assert good.verdict()[0] == CONSISTENT, good.evidence()
    assert bad.verdict()[0] == NOT_CONSISTENT and "bias" in bad.verdict()[1], bad.evidence()
    assert bad.tests[0].estimate == pytest.approx(1.25, abs=0.05)


# --------------------------------------------------------------------------- Theorem 2 (thm2_similarity)
T2_VOCAB = {"part", "family", "d_sketch", "depth", "weight", "weight_bar", "block_size", "block_prob",
            "graph", "epsilon", "reps"}

T2_TINY = [
    {"part": "i", "family": "hadamard", "d_sketch": [256, 1024], "depth": [2], "reps": 2},
    {"part": "i", "family": "haar", "d_sketch": [32, 64], "depth": [2], "reps": 2},
    {"part": "ii", "family": "hadamard", "d_sketch": [4096], "depth": [2], "weight": [0.35, 1.0],
     "weight_bar": [0.35, 1.0]},
    {"part": "ii", "family": "block-sparse", "d_sketch": [768], "depth": [2], "weight": [1.0],
     "weight_bar": [1.0], "block_size": 48, "block_prob": 0.25, "reps": 2},
    {"part": "iii", "family": ["haar", "gaussian"], "d_sketch": [64], "depth": [2, 3],
     "graph": ["single", "random"], "epsilon": [0.1]},
    {"part": "hist", "family": "hadamard", "d_sketch": [1024], "reps": 4},
]


@pytest.fixture(scope="module")
def t2_df():
    return table(load("thm2_similarity"), T2_TINY)


def _grid_keys(profile):
    grids = profile if isinstance(profile, list) else [profile]
    return set().union(*(set(g) for g in grids))


def test_thm2_contract():
    mod = load("thm2_similarity")                     # sweep's own contract check runs here
    assert mod.NAME == "thm2_similarity" and mod.ORDER == 20
    assert isinstance(mod.TITLE, str) and "Theorem 2" in mod.STATEMENT
    assert isinstance(mod.METHOD, str) and "../paper_figs" not in mod.METHOD
    assert mod.FIGURES == (mod.FIG_DISJOINT, mod.FIG_DOT, mod.FIG_PERTURB, mod.FIG_HIST)
    assert all(f.endswith(".png") for f in mod.FIGURES)
    for fn in ("run_one", "claims", "details", "figures", "skip", "theory", "warm_up"):
        assert callable(getattr(mod, fn)), fn
    assert not hasattr(mod, "analyze")
    for profile in ("quick", "full"):
        assert _grid_keys(mod.PROFILES[profile]) <= T2_VOCAB, profile
        runs = sweep.plan_runs("thm2_similarity", profile)
        kept = [r for r in runs if not mod.skip(r.params)[0]]
        assert len(kept) == len(runs), profile                 # the profiles hold no skipped point
        for r in kept:
            assert all(math.isfinite(v) for v in mod.theory(r.params).values())
        # every part runs the three paper families and the substitute at depth 2
        for part in ("i", "ii", "iii"):
            cover = {(r.params["family"], r.params["depth"]) for r in kept if r.params["part"] == part}
            assert {(f, 2) for f in ("haar", "gaussian", "block-sparse", "hadamard")} <= cover, (profile, part)
        if profile == "full":
            for part in ("i", "iii"):
                cover = {(r.params["family"], r.params["depth"]) for r in kept if r.params["part"] == part}
                assert {(f, 3) for f in ("haar", "gaussian", "block-sparse", "hadamard")} <= cover, part
    assert len(sweep.plan_runs("thm2_similarity", "quick")) < len(sweep.plan_runs("thm2_similarity", "full"))
    assert mod.skip({"part": "ii", "family": "haar", "d_sketch": 64, "depth": 4, "weight": 1.0,
                     "weight_bar": 1.0})[0]
    assert mod.skip({"part": "x", "family": "haar", "d_sketch": 64})[0]


@pytest.mark.parametrize("params", [
    {"part": "i", "family": "hadamard", "d_sketch": 256, "depth": 3},
    {"part": "ii", "family": "haar", "d_sketch": 64, "depth": 3, "weight": 0.5, "weight_bar": 0.9},
    {"part": "iii", "family": "block-sparse", "d_sketch": 768, "depth": 3, "graph": "random", "epsilon": 0.5,
     "block_size": 48, "block_prob": 0.25},
    {"part": "iii", "family": "haar", "d_sketch": 64, "depth": 3, "graph": "single", "epsilon": 0.1},
    {"part": "hist", "family": "gaussian", "d_sketch": 64},
])
def test_thm2_run_one_returns_finite_floats_and_is_deterministic(params):
    mod = load("thm2_similarity")
    assert not mod.skip(params)[0]
    a = _deterministic_finite_metrics(mod, params)
    if params["part"] == "iii":
        assert a["target_depth"] == params["depth"]
        if params["graph"] == "single":
            assert a["target_weight"] == 1.0


def _unit(v):
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


def test_thm2_word_count_prediction_and_bound_from_the_paper():
    """E⟨s, s̄⟩ of the part-(ii) graphs, counted by hand from the sketch's formulas (THEORY.md §2.1-2.2).

    Depth 2 (shared object at input position 1): the 3 binary choices (input-tuple R_1, R_{S,0}, the
    attribute slot's R_1) give 8 words of coefficient c_2·w; the tuple R_1 alone and the slot R_1 alone
    are the same formal word R_1R_{S,k}, so the 7 distinct words have multiplicities 1, 2, 1, 1, 1, 1, 1
    and Σ mult² = 10. Depth 3 (under private parents, R_{P,0} never shared): 5 shared choices, Σ mult² =
    20 (R_2 chosen) + 32 (R_2 not chosen) = 52. Every shared word adds c_h²ww̄(⟨x,x̄⟩ + 1).
    """
    mod = load("thm2_similarity")
    from sketchsim import theory

    rng = np.random.default_rng(0)
    x, xb = _unit([1.0, 2.0, 0.0, 0.5, 1.0, 0.0, 3.0, 1.0]), _unit([2.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.5])
    c2, c3 = 1.0 / 32, 1.0 / 512
    for h, c, words in ((2, c2, 10), (3, c3, 52)):
        for w, wb in ((1.0, 1.0), (0.5, 0.8), (0.35, 1.0)):
            g1, g2 = mod._shared_graph("a", h, w, x, rng), mod._shared_graph("b", h, wb, xb, rng)
            expect = words * c * c * w * wb * (1.0 + float(x @ xb))
            assert theory.expected_dot(g1, g2) == pytest.approx(expect, rel=1e-12), (h, w, wb)
            assert theory.similarity_lower_bound(h, w, wb, float(x @ xb)) == pytest.approx(
                4 * c * c * w * wb * (1.0 + float(x @ xb)), rel=1e-12)


def test_thm2_coherence_of_single_objects_counted_by_hand():
    """κ² = Σ_g F(g)F̄(g)/(F(e)F̄(e)) for one object of weight 1 at depth 2 per graph (units 2c_2²).

    Same input position 1: F(e) = 1+4+1+1+1+1+1 = 10, F(R_1·) = F(·R_1⁻¹) = 6 (4 from the tuple/slot
    R_1 pairs, 1 + 1 through R_{M,0}), F(R_1R_1·) = F(·(R_1R_1)⁻¹) = 1: κ² = (100 + 36 + 36 + 1 + 1)/100.
    Positions 1 and 2: the second graph's 8 words are distinct, F̄(e) = 8, and only its slot R_1 matches
    (F̄ = 1 each way): κ² = (80 + 6 + 6)/80.
    """
    import sketchsim as ss

    mod = load("thm2_similarity")
    x = _unit(np.ones(8))

    def graph(module, position):
        objs = [{"id": "t", "module": module, "attributes": x.tolist()}]
        ins = [{"id": "t", "weight": 1.0}]
        if position == 2:
            objs.insert(0, {"id": "z", "module": module + "z", "attributes": x.tolist()})
            ins.insert(0, {"id": "z", "weight": 1e-300})     # holds position 1 with a negligible weight
        return ss.Graph(objs, ins)

    fa, fb, fc = (mod.pair_moments(graph(m, p)) for m, p in (("A", 1), ("B", 1), ("C", 2)))
    assert fa[((), ())] == pytest.approx(10 * 2 / 32 ** 2, rel=1e-12)
    assert mod.coherence(fa, fb) == pytest.approx(math.sqrt(1.74), rel=1e-9)
    assert mod.coherence(fa, fc) == pytest.approx(math.sqrt(92 / 80), rel=1e-6)


def test_thm2_coherence_predicts_the_measured_noise():
    """RMS of ⟨s, s̄⟩/(‖s‖‖s̄‖/√d) over 150 hadamard banks for two single objects at input position 1
    is κ = √1.74 within 20% (the standard error of an RMS of 150 normal draws is 6%)."""
    import sketchsim as ss

    x = _unit(np.arange(1.0, 9.0))
    ga = ss.Graph([{"id": "t", "module": "A", "attributes": x.tolist()}], [{"id": "t", "weight": 1.0}])
    gb = ss.Graph([{"id": "t", "module": "B", "attributes": x[::-1].tolist()}], [{"id": "t", "weight": 1.0}])
    d, z = 1024, []
    for seed in range(150):
        bank = ss.MatrixBank(d, "hadamard", seed)
        s1, s2 = ss.sketch(ga, bank), ss.sketch(gb, bank)
        z.append(float(s1 @ s2) / (np.linalg.norm(s1) * np.linalg.norm(s2)) * math.sqrt(d))
    rms = math.sqrt(float(np.mean(np.square(z))))
    assert abs(rms / math.sqrt(1.74) - 1) < 0.2, rms


def test_thm2_perturbation_is_exact_nonnegative_and_unit():
    mod = load("thm2_similarity")
    rng = np.random.default_rng(5)
    for eps in (1e-3, 0.1, 0.9):
        x = np.abs(rng.standard_normal(8))
        x /= np.linalg.norm(x)
        xp, used = mod._arc_point(x, eps)
        assert used == pytest.approx(eps, rel=1e-9)
        assert np.all(xp >= 0) and np.linalg.norm(xp) == pytest.approx(1.0, abs=1e-12)


def test_thm2_haar_perturbation_gain_is_at_most_one_half(t2_df):
    """Theorem 2(iii) for orthonormal R: ‖Δs‖/ε ≤ σ_max ≤ w_θ·2^{−h} ≤ ½ on every run."""
    mod = load("thm2_similarity")
    df = pd.concat([t2_df, rows(mod, {"part": "iii", "family": "haar", "d_sketch": [32, 128], "depth": [2, 3],
                                      "graph": ["single", "random"], "epsilon": [0.01, 1.0]}, base_seed=7)])
    haar = df[(df["p_part"] == "iii") & (df["p_family"] == "haar")]
    assert len(haar) >= 20
    assert (haar["m_gain_eps"] <= 0.5).all() and (haar["m_gain_worst"] <= 0.5).all()
    assert (haar["m_gain_eps"] <= haar["m_gain_worst"] * (1 + 1e-9)).all()       # a direction is ≤ the sup
    assert (haar["m_gain_worst_over_chain"] <= 1 + 1e-9).all()                     # σ_max ≤ w_θ 2^{−h}
    single = haar[haar["p_graph"] == "single"]
    assert np.allclose(single["m_chain_bound"], 2.0 ** -single["p_depth"].astype(float))


# --------------------------------------------------------------------------- thm2 claims on small tables
def _t2_synthetic(part, family, depth, n, **cols):
    base = {"p_part": part, "p_family": family, "p_depth": depth}
    if family == "block-sparse":
        base.update(p_block_size=48, p_block_prob=0.25)
    out = pd.DataFrame([base] * n)
    for k, v in cols.items():
        out[k] = v
    return out


def _t2_table(scale_i=1.0, dot_factor=1.0, gain=0.1, rng=None):
    """A synthetic results table whose numbers follow the theory (times the given factors)."""
    rng = rng or np.random.default_rng(0)
    parts = []
    d = np.repeat([64, 256, 1024, 4096], 4)
    for fam in ("haar", "gaussian"):
        noise = np.exp(rng.normal(0, 0.05, len(d)))
        parts.append(_t2_synthetic("i", fam, 2, len(d), p_d_sketch=d,
                                   m_cos_rms=1.23 * scale_i / np.sqrt(d) * noise,
                                   m_cos_rms_sqrt_d=1.23 * scale_i * noise, m_coherence_rms=1.23,
                                   m_score_rms_over_noise=scale_i * noise))
    ww = np.tile([0.1225, 0.21, 0.35, 0.6, 1.0], 4)
    xx = rng.uniform(0.3, 0.9, len(ww))
    pred = 10 * (1 / 32) ** 2 * ww * (1 + xx)                # THEORY.md §2.2: 10 shared words at depth 2
    lb = 4 * (1 / 32) ** 2 * ww * (1 + xx)
    dot = pred * dot_factor * np.exp(rng.normal(0, 0.03, len(ww)))
    for fam in ("haar", "block-sparse"):
        parts.append(_t2_synthetic("ii", fam, 2, len(ww), p_d_sketch=1024, m_dot=dot, m_dot_pred=pred,
                                   m_dot_lower_bound=lb, m_ratio_pred=dot / pred, m_ratio_lower_bound=dot / lb,
                                   m_z=(dot - pred) / 1e-4, m_weight_product=ww, m_attr_dot=xx))
    for fam, h in (("haar", 2), ("gaussian", 3)):
        g = gain * np.linspace(0.5, 1.0, 6) * (1.0 if h == 2 else 0.25)
        w = np.ones(6)
        parts.append(_t2_synthetic("iii", fam, h, 6, p_d_sketch=128, m_gain_eps=g, m_gain_worst=1.2 * g,
                                   m_target_weight=w, m_chain_bound=w * 2.0 ** -h,
                                   m_gain_worst_over_chain=1.2 * g / 2.0 ** -h))
    return pd.concat(parts, ignore_index=True)


def _by_id(claims):
    return {(c.claim, c.family, c.depth): c for c in claims}


def test_thm2_claims_follow_the_preregistered_rules():
    mod = load("thm2_similarity")
    from sketchsim.harness.claims import CONSISTENT, NOT_CONSISTENT, Claim

    got = _by_id(mod.claims(_t2_table()))
    assert set(got) == {("thm2.i", "haar", 2), ("thm2.i", "gaussian", 2), ("thm2.ii", "haar", 2),
                        ("thm2.ii", "block-sparse", 2), ("thm2.iii", "haar", 2), ("thm2.iii", "gaussian", 3)}
    assert all(isinstance(c, Claim) for c in got.values())
    keys = {k: [t.key for t in c.tests] for k, c in got.items()}
    assert keys[("thm2.i", "haar", 2)] == ["alpha_d", "scale"]
    assert keys[("thm2.i", "gaussian", 2)] == ["alpha_d"]                  # κ assumes RᵀR = I
    assert "not judged" in got[("thm2.i", "gaussian", 2)].note
    assert keys[("thm2.ii", "haar", 2)] == ["slope_pred", "lower_bound", "beta_ww"]
    assert keys[("thm2.iii", "haar", 2)] == ["max_gain_eps", "max_gain_worst", "max_gain_over_chain"]
    assert keys[("thm2.iii", "gaussian", 3)] == ["max_gain_eps", "max_gain_worst"]
    assert "pooled over (b, q) ∈ {(48, 0.25)}" in got[("thm2.ii", "block-sparse", 2)].note
    for k, c in got.items():
        assert c.verdict()[0] == CONSISTENT, (k, c.evidence())
    t = {x.key: x for x in got[("thm2.ii", "haar", 2)].tests}
    assert t["slope_pred"].estimate == pytest.approx(1.0, abs=0.03)
    assert t["lower_bound"].estimate == pytest.approx(2.5, rel=0.03)       # 10 words / 4 words
    assert t["beta_ww"].estimate == pytest.approx(1.0, abs=0.05)
    a = {x.key: x for x in got[("thm2.i", "haar", 2)].tests}
    assert a["alpha_d"].estimate == pytest.approx(-0.5, abs=0.05)

    # a scale off by 2, a prediction off by 2, a gain above ½: each turns its claim not consistent
    bad = _by_id(mod.claims(_t2_table(scale_i=2.0, dot_factor=0.5, gain=0.6)))
    assert bad[("thm2.i", "haar", 2)].verdict() == (NOT_CONSISTENT, ["scale"])
    assert bad[("thm2.i", "gaussian", 2)].verdict()[0] == CONSISTENT         # its scale is not judged
    for fam in ("haar", "block-sparse"):
        assert bad[("thm2.ii", fam, 2)].verdict() == (NOT_CONSISTENT, ["slope_pred"])
    assert bad[("thm2.iii", "haar", 2)].verdict()[0] == NOT_CONSISTENT
    assert bad[("thm2.iii", "gaussian", 3)].verdict()[0] == CONSISTENT        # 0.6 · ¼ · 1.2 < ½
    # the measured dot below the ≥ 4-words bound (a factor 0.3 of the prediction)
    low = _by_id(mod.claims(_t2_table(dot_factor=0.3)))
    assert "lower_bound" in low[("thm2.ii", "haar", 2)].verdict()[1]
    # a table holding one part only
    only = mod.claims(_t2_table()[lambda f: f["p_part"] == "iii"])
    assert {c.claim for c in only} == {"thm2.iii"}
    assert mod.claims(_t2_table().iloc[0:0]) == []


def test_thm2_claims_details_and_figures_on_a_tiny_run(t2_df, tmp_path):
    mod = load("thm2_similarity")
    got = _by_id(mod.claims(t2_df))
    assert {k for k in got if k[0] == "thm2.i"} == {("thm2.i", "haar", 2), ("thm2.i", "hadamard", 2)}
    assert {k for k in got if k[0] == "thm2.ii"} == {("thm2.ii", "block-sparse", 2), ("thm2.ii", "hadamard", 2)}
    assert {k for k in got if k[0] == "thm2.iii"} == {("thm2.iii", f, h) for f in ("haar", "gaussian")
                                                      for h in (2, 3)}
    ii = {t.key: t for t in got[("thm2.ii", "hadamard", 2)].tests}
    assert 0.9 < ii["slope_pred"].estimate < 1.1                   # word-count prediction at d = 4096
    assert ii["lower_bound"].estimate > 1
    assert got[("thm2.iii", "haar", 2)].verdict()[0] == "consistent"
    for c in got.values():
        assert c.evidence()
    text = mod.details(t2_df)
    assert "AUC" in text and "|---" in text and "../paper_figs" not in text
    paths = mod.figures(t2_df, str(tmp_path))
    assert sorted(os.path.basename(p) for p in paths) == sorted(mod.FIGURES)
    for p in paths:
        with open(p, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"


REG2 = {"part": "ii", "family": "hadamard", "d_sketch": [4096], "depth": [2], "weight": [0.35, 1.0],
        "weight_bar": [0.35, 1.0], "reps": 3}


def test_thm2_ii_flips_when_the_prediction_or_c2_is_doubled(monkeypatch):
    """The mutations of the CI suite: E⟨s,s̄⟩ doubled (theory.expected_dot) and c_2 doubled
    (theory.depth_constant, used by the ≥ 4-words bound) each make thm2.ii not consistent."""
    mod = load("thm2_similarity")
    from sketchsim import theory

    def ii(df):
        (c,) = [c for c in mod.claims(df) if c.claim == "thm2.ii"]
        return c, {t.key: t for t in c.tests}

    good, tg = ii(rows(mod, REG2))
    assert good.verdict()[0] == "consistent", good.evidence()

    real_dot, real_c = theory.expected_dot, theory.depth_constant
    monkeypatch.setattr(theory, "expected_dot", lambda g1, g2: 2.0 * real_dot(g1, g2))
    bad, tb = ii(rows(mod, REG2))
    assert bad.verdict() == ("not consistent", ["slope_pred"])
    assert tb["slope_pred"].estimate == pytest.approx(tg["slope_pred"].estimate / 2, rel=1e-12)

    monkeypatch.setattr(theory, "expected_dot", real_dot)
    monkeypatch.setattr(theory, "depth_constant", lambda h: real_c(h) * (2.0 if h == 2 else 1.0))
    bad, tb = ii(rows(mod, REG2))
    assert bad.verdict() == ("not consistent", ["lower_bound"])
    assert tb["lower_bound"].estimate == pytest.approx(tg["lower_bound"].estimate / 4, rel=1e-12)
