"""Theorem 5 (paper §4.1, THEORY.md §7): learning a teacher network from (input, output, sketch)
triples — sketchsim.learn, and experiments/thm5_teacher.py (the study contract and the evaluation
against the hidden bank, which is experiment code, not library code).

Regime of the main fixture (derived in sketchsim/learn.py's docstring): a depth-2 teacher with one
top object t0 (weight 1, attributes of length 2) computed from two input leaves (depth 3, weight
1/2 each), d = 51072, b = 57, q·d/b = 6. The identity branch puts c_2·W·x_j = x_j/32 on column j of
R_{t0,1} and 1/32 on column 0 of R_{t0,2}; with ‖s‖ ≈ 0.13 the single-sample SNR is
r = c_2 W x_j/(‖s‖√q) ≈ 2.9·x_j, just above the screen's ≈ 2.3 for x_j ≈ 1. The leaves carry 1/1024
per coordinate (r ≈ 0.09): invisible. (At the d ≈ 6000–12000 first suggested for this test the
same r is ≈ 1.0: nothing at all is certified, measured.)
"""
import math
import warnings

import numpy as np
import pytest

import sketchsim as ss
from sketchsim import learn as LN
from sketchsim.harness.claims import CONSISTENT, INCONCLUSIVE, NOT_CONSISTENT, Claim
from sketchsim.harness.sweep import load_experiment
from sketchsim.theory import depth_constant

T5 = load_experiment("thm5_teacher")      # the evaluation helpers (hidden truth, label names, evaluate)

D, B = 51072, 57
Q = 6 * B / D
N_TRAIN = 120


@pytest.fixture(scope="module")
def setup():
    teacher = LN.make_teacher(depth=2, n_top=1, fan_in=2, attr_dim=2, kind="linear", random_state=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ss.TheoremPreconditionWarning)
        bank = ss.MatrixBank(D, "block-sparse", 102, block_size=B, block_prob=Q)
        train = LN.teacher_samples(teacher, N_TRAIN, bank, random_state=2)
    truth = T5.hidden_truth(bank, teacher)
    learned = LN.learn_from_sketches(train.inputs, train.outputs, train.sketches, B, Q,
                                     input_dims=teacher.input_dims)
    return teacher, bank, truth, train, learned


def _names(learned, truth):
    return T5.label_names(learned.dictionary, truth)


# ----------------------------------------------------------------------------- recovery and typing
def test_recovers_and_types_the_top_modules_matrices(setup):
    teacher, _, truth, _, learned = setup
    names = _names(learned, truth)
    kinds = {names[m.label]: m.kind for m in learned.matrices}
    # exactly the two identity-branch matrices of the depth-2 module, typed by what they multiply
    assert kinds == {"module/Mt0/1": "R_{M,1}", "module/Mt0/2": "R_{M,2}"}
    m1 = next(m for m in learned.matrices if m.kind == "R_{M,1}")
    m2 = next(m for m in learned.matrices if m.kind == "R_{M,2}")
    assert m1.columns == (0, 1) and m2.columns == (0,)
    assert m1.object == m2.object == learned.objects[0].name          # paired into one module
    # every recovered block is the true block of the hidden matrix, signs included
    ok, n = T5._columns_exact(learned.dictionary, truth, names)
    assert n == 3 and ok == n
    # no tuple matrix and no R_{M,0} (dense coefficient vectors), nothing at depth 3 (leaf module)
    assert not any(nm.startswith("tuple/") or nm.endswith("/0") or "leaf" in nm for nm in names)


def test_learns_the_top_module_map_with_small_error(setup):
    """Threshold 0.08, derived: the least-squares decode of coordinate j through the recovered
    column (n_b ≈ 6 blocks of b entries ±1/√(dq)) has error ‖s‖·√q/(c_2 W √(n_b b)) ≈
    0.13·0.082·32/√342 ≈ 0.018; the same distortion enters every sample, so the learned module
    inherits it: relative ℓ2 error of a 2-vector ≈ √2·0.018 ≈ 0.026; 0.08 is 3σ. The module family
    is exactly fittable (oracle error on the true attributes ≈ 0)."""
    teacher, _, truth, train, learned = setup
    obj = learned.objects[0]
    assert obj.identified and obj.learned
    assert obj.module.inputs == ("in0", "in1")                          # the two leaves, in order
    ev = T5.evaluate(learned, teacher, truth, train=train, random_state=7)
    assert ev["inputs_ok_t0"] == 1.0 and ev["learned_t0"] == 1.0
    assert ev["attr_err_t0"] <= 0.08
    assert ev["module_err_t0"] <= 0.08
    assert ev["oracle_err_t0"] <= 1e-3
    # the learned network predicts t0's attributes from fresh network inputs
    U = teacher.sample_inputs(50, 3)
    P = learned.predict(U)[obj.name]
    assert np.median(np.linalg.norm(P - teacher.forward(U)["t0"], axis=1)) <= 0.08


def test_subgraph_identification_weight_and_depth(setup):
    teacher, _, truth, train, learned = setup
    ev = T5.evaluate(learned, teacher, truth, train=train, random_state=7, w_subgraph=0.4)
    # true subgraph {W ≥ 0.4} = t0 and both leaves; only the depth-2 object is visible
    assert ev["n_true_subgraph"] == 3
    assert ev["n_identified"] == 1 and ev["subgraph_precision"] == 1.0
    assert ev["subgraph_recall_depth2"] == 1.0 and ev["subgraph_recall_depth3"] == 0.0
    obj = learned.objects[0]
    # ω = c_2·W = 1/32 from both channels (unit attributes), W from the outputs, hence the depth
    c2w = depth_constant(2) * teacher.weight("t0")
    assert obj.omega == pytest.approx(c2w, rel=0.1)
    assert obj.omega_count == pytest.approx(c2w, rel=0.1)
    assert obj.completeness == pytest.approx(1.0, abs=0.1)
    assert obj.output_weight == pytest.approx(1.0, abs=0.1)
    assert abs(obj.depth_estimate - 2.0) < 0.25
    assert obj.certified_fraction >= learned.params["beta"]


def test_report_says_what_was_and_was_not_learned(setup):
    _, _, _, _, learned = setup
    text = learned.report()
    assert "LEARNED m" in text and "N(A·[in0, in1] + c)" in text
    assert "Not recovered, by construction: the tuple matrices R_i and every R_{M,0}" in text
    assert "depth 3 (c_h = 1/512): visible only if" in text and "impossible" in text
    assert "NOT learned" not in text
    s = learned.summary()
    assert (s["n_matrices"], s["n_attr_matrices"], s["n_count_matrices"], s["n_learned"]) == (2, 1, 1, 1)


def test_recursion_level_two_certifies_nothing(setup):
    """Level-2 samples are the recovered coefficient vectors: attributes (2-sparse) and e_1. No
    block of b entries is fully nonzero, so nothing is certified and the result is unchanged."""
    teacher, _, _, train, learned = setup
    two = LN.learn_from_sketches(train.inputs, train.outputs, train.sketches, B, Q, input_dims=teacher.input_dims,
                                 levels=2)
    assert [lv.n_certified for lv in two.dictionary.levels][1] == 0
    assert two.matrices == learned.matrices
    assert "certified per level: [" in two.report()


def test_detection_floor_matches_the_measured_boundary(setup):
    """The floor ω_min = r*·‖s‖·√q sits between what is certified (1/32 on the e_1 column) and the
    largest depth-3 coefficient (1/1024): 1/1024 < ω_min < 1/32."""
    _, _, _, _, learned = setup
    assert 1 / 1024 < learned.floor < 1 / 32
    assert LN.required_snr(57, 0.9) == pytest.approx(2.29, abs=0.02)
    assert LN.required_snr(57, 0.3) == pytest.approx(3 * LN.required_snr(57, 0.9))


# ----------------------------------------------------------------------------- typing rules
def test_column0_only_attribute_is_typed_by_domination():
    """R_{M,1} with only column 0 certified looks like c·e_1 too; its coefficient c·W·x_0 is below the
    R_{M,2} coefficient c·W in every sample (x_0 ≤ 1), which decides the type."""
    d, b, q = 4560, 48, 0.1
    bank = ss.MatrixBank(d, "block-sparse", 3, block_size=b, block_prob=q)
    r1, r2 = bank.get("module/A/1"), bank.get("module/A/2")
    # precondition: both columns 0 have ≥ 6 nonzero blocks (the count threshold is 0.5·q·d/b = 4.75)
    assert min(r1.col_ptr[1], r2.col_ptr[1]) >= 6
    rng = np.random.default_rng(0)
    x0 = rng.uniform(0.4, 0.95, 40)
    Y = 0.5 * r2.apply(np.eye(1)) + 0.5 * r1.apply(x0[:, None])
    U = rng.uniform(0, 1, (40, 3))
    learned = LN.learn_from_sketches(U, None, Y, b, q)
    names = T5.label_names(learned.dictionary, bank, ["module/A/1", "module/A/2"])
    kinds = {names[m.label]: m.kind for m in learned.matrices}
    assert kinds == {"module/A/1": "R_{M,1}", "module/A/2": "R_{M,2}"}
    obj = learned.objects[0]
    assert obj.attr_dim == 1 and not obj.learned and "constant [1]" in obj.reason
    assert obj.completeness == pytest.approx(np.median(x0), abs=0.02)


def test_noise_only_sketches_learn_nothing():
    rng = np.random.default_rng(1)
    d, b, q = 4560, 48, 0.1
    Y = rng.standard_normal((30, d)) * 0.1 / math.sqrt(d)
    learned = LN.learn_from_sketches(rng.uniform(0, 1, (30, 4)), None, Y, b, q)
    assert learned.matrices == [] and learned.objects == [] and learned.learned_modules == {}
    assert "none learned" in learned.report()
    assert learned.predict(rng.uniform(0, 1, (3, 4))) == {}


# ----------------------------------------------------------------------------- teacher and sketches
def test_affine_sketch_map_equals_direct_sketching():
    teacher = LN.make_teacher(depth=3, n_top=2, fan_in=2, attr_dim=3, kind="relu", random_state=4)
    bank = ss.MatrixBank(960, "block-sparse", 3, block_size=48, block_prob=0.3)
    a = LN.teacher_samples(teacher, 12, bank, random_state=5, method="affine")
    b = LN.teacher_samples(teacher, 12, bank, random_state=5, method="direct")
    np.testing.assert_array_equal(a.inputs, b.inputs)
    assert np.max(np.abs(a.sketches - b.sketches)) <= 1e-12 * np.max(np.abs(b.sketches))
    smap = LN.sketch_map(teacher, bank)
    c = LN.teacher_samples(teacher, 12, smap, random_state=5)
    np.testing.assert_array_equal(c.sketches, a.sketches)


def test_teacher_structure_and_forward():
    t = LN.make_teacher(depth=3, n_top=2, fan_in=2, attr_dim=3, leaf_dim=4, random_state=0)
    assert t.top == ("t0", "t1") and len(t.leaves) == 8 and t.input_dims == (4,) * 8
    assert t.order[-1] == "t1" and set(t.inputs_of["t0"]) == {"t0.0", "t0.1"}
    assert [t.depth(o) for o in ("t0", "t0.1", "t0.1.0")] == [2, 3, 4]
    assert t.weight("t0") == pytest.approx(2 / 3) and t.weight("t0.1.0") == pytest.approx(1 / 6)
    U = t.sample_inputs(20, 1)
    A = t.forward(U)
    for oid, X in A.items():
        assert np.all(X >= 0) and np.allclose(np.linalg.norm(X, axis=1), 1.0)
    k = t.leaves.index("t0.1.0")
    assert k == 2 and t.input_slices[k] == slice(8, 12)
    np.testing.assert_allclose(A["t0.1.0"], U[:, 8:12] / np.linalg.norm(U[:, 8:12], axis=1, keepdims=True),
                               atol=1e-8)
    np.testing.assert_allclose(A["t0"], t.modules["t0"](np.hstack([A["t0.0"], A["t0.1"]])))
    np.testing.assert_allclose(t.outputs(A), 2 / 3 * A["t0"] + 1 / 3 * A["t1"])


# ----------------------------------------------------------------------------- determinism
def test_deterministic(setup):
    teacher, bank, _, train, learned = setup
    again = LN.learn_from_sketches(train.inputs, train.outputs, train.sketches, B, Q,
                                   input_dims=teacher.input_dims)
    assert again.matrices == learned.matrices
    for o1, o2 in zip(again.objects, learned.objects):
        np.testing.assert_array_equal(o1.attributes, o2.attributes)
        np.testing.assert_array_equal(o1.module.B, o2.module.B)
        assert (o1.omega, o1.learned, o1.module.inputs) == (o2.omega, o2.learned, o2.module.inputs)
    s1 = LN.teacher_samples(teacher, 5, bank, random_state=9)
    s2 = LN.teacher_samples(teacher, 5, bank, random_state=9)
    np.testing.assert_array_equal(s1.sketches, s2.sketches)
    t1 = LN.make_teacher(random_state=3)
    t2 = LN.make_teacher(random_state=3)
    np.testing.assert_array_equal(t1.modules["t0"].A, t2.modules["t0"].A)


# ----------------------------------------------------------------------------- validation
def _ok(S=4, d=96):
    return np.zeros((S, 3)), np.zeros((S, 2)), np.zeros((S, d))


@pytest.mark.parametrize("kwargs,match", [
    ({"inputs": np.zeros((3, 3))}, r"inputs must have one row per sketch \(S=4\); got 3 rows"),
    ({"inputs": np.zeros(4)}, r"inputs must be a 2-D array"),
    ({"outputs": np.full((4, 2), np.nan)}, r"outputs must be finite; got nan"),
    ({"sketches": np.zeros((1, 96))}, r"sketches must hold at least 2 samples; got 1"),
    ({"sketches": np.full((4, 96), np.inf)}, r"sketches must be finite; got inf"),
    ({"input_dims": [2, 2]}, r"input_dims must sum to inputs.shape\[1\]=3; got \[2, 2\]"),
    ({"input_dims": [3, 0]}, r"input_dims entries must be >= 1; got 0"),
    ({"input_dims": "abc"}, r"input_dims must be a nonempty sequence"),
    ({"beta": 0.0}, r"beta must lie in \(0, 1\]; got 0.0"),
    ({"beta": 1.5}, r"beta must lie in \(0, 1\]; got 1.5"),
    ({"fit": "svm"}, r"fit must be one of 'normalized', 'ridge'; got 'svm'"),
    ({"max_fan_in": 0}, r"max_fan_in must be >= 1; got 0"),
    ({"ridge": -1.0}, r"ridge must be >= 0; got -1.0"),
    ({"select_gain": 1.0}, r"select_gain must lie in \[0, 1\); got 1.0"),
    ({"fit_tol": 0}, r"fit_tol must be > 0; got 0"),
    ({"complete_tol": 2.0}, r"complete_tol must lie in \(0, 1\]; got 2.0"),
    ({"n_folds": 1}, r"n_folds must be >= 2; got 1"),
    ({"block_size": 47}, r"block_size must be a multiple of 3"),
    ({"block_prob": 0.0}, r"block_prob must lie in \(0, 1\]; got 0.0"),
    ({"hypercube_tol": 1.0}, r"hypercube_tol must lie in \(0, 1\)"),
])
def test_learner_validation(kwargs, match):
    U, Yo, S = _ok()
    args = {"inputs": U, "outputs": Yo, "sketches": S, "block_size": 48, "block_prob": 0.5}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        LN.learn_from_sketches(args.pop("inputs"), args.pop("outputs"), args.pop("sketches"),
                               args.pop("block_size"), args.pop("block_prob"), **args)


@pytest.mark.parametrize("kwargs,match", [
    ({"depth": 1}, r"depth must be >= 2; got 1"),
    ({"n_top": 0}, r"n_top must be >= 1; got 0"),
    ({"fan_in": 1.5}, r"fan_in must be an integer; got 1.5"),
    ({"attr_dim": 0}, r"attr_dim must be >= 1; got 0"),
    ({"kind": "tanh"}, r"kind must be one of 'linear', 'relu'; got 'tanh'"),
    ({"n_top": 2, "top_weights": [0.5]}, r"top_weights must have n_top=2 entries"),
    ({"n_top": 2, "top_weights": [0.8, 0.4]}, r"top_weights must be positive and sum to at most 1"),
])
def test_teacher_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LN.make_teacher(**kwargs)


def test_samples_validation():
    t = LN.make_teacher(random_state=0)
    bank = ss.MatrixBank(96, "block-sparse", 0, block_size=48, block_prob=0.5)
    with pytest.raises(ValueError, match=r"n must be >= 1; got 0"):
        LN.teacher_samples(t, 0, bank)
    with pytest.raises(ValueError, match=r"bank must be a sketchsim.MatrixBank or a SketchMap; got dict"):
        LN.teacher_samples(t, 2, {})
    with pytest.raises(ValueError, match=r"method must be one of 'affine', 'direct'; got 'x'"):
        LN.teacher_samples(t, 2, bank, method="x")
    with pytest.raises(ValueError, match=r"inputs must have shape \(n, 4\); got \(2, 3\)"):
        t.forward(np.zeros((2, 3)))


# ----------------------------------------------------------------------------- learner steps
def test_a_sibling_is_not_a_candidate_input():
    """Step 5's candidates are objects light enough to be children (ω ≤ 1.25·ω_parent/16, module
    docstring). A sibling with 0.2 of the parent's ω and the *same* attributes explains the parent
    with one input; before the fix (the code admitted ω ≤ ω_parent/4, contradicting the docstring's
    1/16) the learner chose it as the parent's input. Now both objects get their true inputs."""
    d, b, q = 16320, 51, 0.05
    bank = ss.MatrixBank(d, "block-sparse", 4, block_size=b, block_prob=q)
    P1, P2, Q1, Q2 = (bank.get(n) for n in ("module/P/1", "module/P/2", "module/Q/1", "module/Q/2"))
    t = LN.make_teacher(depth=2, n_top=1, fan_in=2, attr_dim=2, kind="linear", random_state=1)
    S = 60
    U = t.sample_inputs(S, 0)
    X = t.forward(U)["t0"]
    wp, wq = 1 / 32, 0.2 / 32
    Y = wp * (P2.apply(np.ones((S, 1))) + P1.apply(X)) + wq * (Q2.apply(np.ones((S, 1))) + Q1.apply(X))
    learned = LN.learn_from_sketches(U, None, Y, b, q, input_dims=t.input_dims)
    objs = sorted(learned.objects, key=lambda o: -o.omega)
    assert len(objs) == 2 and all(o.identified for o in objs)
    assert objs[1].omega / objs[0].omega == pytest.approx(0.2, rel=0.05)
    assert [o.module.inputs for o in objs] == [("in0", "in1"), ("in0", "in1")]
    assert LN.CHILD_OMEGA_RATIO * LN.OMEGA_TOL < 0.2 < 0.25


def test_named_thresholds_of_the_learner():
    """The internal thresholds are module constants (values pinned: the outputs are bit-identical to the
    unrefactored learner on the fixtures above)."""
    assert (LN.POSITIVE_FRAC_MIN, LN.MIN_SHARED, LN.MIN_SHARED_FRAC) == (0.95, 2, 0.25)
    assert LN.PAIR_MAX_LOG_RATIO == pytest.approx(math.log(2.0)) and LN.PAIR_AMBIGUITY_GAP == 0.05
    assert (LN.DOMINATION_SLACK, LN.DOMINATION_FRAC, LN.DOMINATED_RATIO_RANGE, LN.SPREAD_OVER_NOISE) == \
        (1.05, 0.9, (0.3, 0.98), 4.0)
    assert (LN.WEIGHT_MIN, LN.CHILD_OMEGA_RATIO, LN.OMEGA_TOL, LN.SLACK_MIN, LN.SLACK_DECODE_FRAC) == \
        (1e-3, 1 / 16, 1.25, 2e-3, 0.5)
    assert [LN._min_shared(S) for S in (3, 8, 9, 120)] == [2, 2, 2, 30]
    for name in ("hidden_truth", "label_names", "evaluate", "HiddenTruth"):
        assert not hasattr(LN, name)                      # evaluation lives in the experiment


# ----------------------------------------------------------------------------- experiment contract
TINY = {"depth": 2, "w": 0.9, "d_sketch": 4560, "instance": 0, "n_sketches": 20}


def test_experiment_run_one_contract():
    exp = T5
    for name in ("NAME", "TITLE", "STATEMENT", "METHOD", "PROFILES", "FIGURES", "ORDER", "run_one", "claims",
                 "details", "figures"):
        assert hasattr(exp, name)
    assert not hasattr(exp, "analyze") and exp.ORDER == 80
    assert exp.NAME == "thm5_teacher" and set(exp.PROFILES) >= {"quick", "full"}
    m1 = exp.run_one(dict(TINY), np.random.default_rng(0))
    m2 = exp.run_one(dict(TINY), np.random.default_rng(0))
    assert all(isinstance(v, (int, float)) for v in m1.values())
    for key in ("n_matrices", "typing_accuracy", "subgraph_precision", "subgraph_recall", "learned_top0",
                "module_err_top0", "oracle_err_top0", "time_learn_s", "block_size", "block_prob", "regime",
                "snr_margin_top0", "min_blocks_top0", "success_top0", "n_identified_true"):
        assert key in m1
    assert not {"b", "q"} & set(m1)
    timing = {k for k in m1 if k.startswith("time_")}
    assert {k: v for k, v in m1.items() if k not in timing} == pytest.approx(
        {k: v for k, v in m2.items() if k not in timing}, nan_ok=True)
    assert m1["block_size"] == 48 and m1["block_prob"] == pytest.approx(6 * 48 / 4560)
    assert m1["regime"] == 0.0            # d = 4560: far below the detection floor
    assert exp.skip({"d_sketch": 4561})[0] and not exp.skip(dict(TINY))[0]


def _frame(rows):
    import pandas as pd

    return pd.DataFrame(rows)


def test_experiment_claims_details_and_figures_on_a_tiny_frame(tmp_path):
    rows = []
    for d in (4560, 9180):
        for n in (20, 40):
            p = dict(TINY, d_sketch=d, n_sketches=n)
            m = T5.run_one(p, np.random.default_rng(n))
            row = {f"p_{k}": v for k, v in p.items()}
            row.update({f"m_{k}": v for k, v in m.items()})
            row.update(rep=0, seed=n, time_s=1.0)
            rows.append(row)
    df = _frame(rows)
    cl = T5.claims(df)
    assert [(c.claim, c.family, c.depth) for c in cl] == [("thm5", "block-sparse", 2)]
    assert all(isinstance(c, Claim) for c in cl)
    assert cl[0].verdict()[0] == INCONCLUSIVE            # no run in the regime at these sizes
    md = T5.details(df)
    assert "What was learned" in md and "Against the number of sketches" in md and "../paper_figs" not in md
    paths = T5.figures(df, str(tmp_path))
    assert [p.rsplit("/", 1)[1] for p in paths] == list(T5.FIGURES)
    for p in paths:
        with open(p, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"


def test_experiment_claim_rule():
    """Regime runs decide module_learned; a wrong identified object is never tolerated."""
    base = {"p_depth": 2, "m_n_identified": 1, "m_n_identified_true": 1}
    df = _frame([dict(base, m_regime=1.0, m_success_top0=1.0)] * 14 + [dict(base, m_regime=0.0, m_success_top0=0.0)] * 5)
    c = T5.claims(df)[0]
    assert c.verdict()[0] == CONSISTENT and "outside, not evidence: 0 of 5" in c.note
    df.loc[:6, "m_success_top0"] = 0.0                 # half of 14: too few runs to tell
    assert T5.claims(df)[0].verdict()[0] == INCONCLUSIVE
    df.loc[:13, "m_success_top0"] = 0.0                # none: the interval excludes 0.9
    assert T5.claims(df)[0].verdict()[0] == NOT_CONSISTENT
    df = _frame([dict(base, m_regime=1.0, m_success_top0=1.0)] * 14)
    df.loc[0, "m_n_identified_true"] = 0
    assert T5.claims(df)[0].verdict() == (NOT_CONSISTENT, ["identified_true"])
