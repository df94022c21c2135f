"""The pre-registered verdict rules of sketchsim.harness.claims, on hand-written numbers."""
import math

import numpy as np
import pytest

from sketchsim.harness import claims as C

E_TOL, E_RES = C.EXPONENT_TOL, C.EXPONENT_RESOLUTION


def exponent(est, lo, hi, predicted=-0.5):
    return C.Test("alpha_d", "α, exponent of d", est, (lo, hi), predicted, E_TOL, E_RES)


def ratio(est, lo, hi, predicted=1.0):
    return C.Test("ratio", "ratio", est, (lo, hi), predicted, C.FACTOR_TOL, C.FACTOR_RESOLUTION,
                  scale="log")


def good(key="g"):
    return C.Test(key, key, -0.5, (-0.55, -0.45), -0.5, E_TOL, E_RES)


def bad(key="b"):
    return C.Test(key, key, -1.0, (-1.05, -0.95), -0.5, E_TOL, E_RES)


def unsure(key="u"):
    return C.Test(key, key, -0.5, (-1.0, 0.0), -0.5, E_TOL, E_RES)


class FakeFit:
    """What exponent_test reads of a PowerLawFit."""

    def __init__(self, est, lo, hi):
        self.est, self.ci = est, (lo, hi)

    def exponent(self, var):
        assert var == "d"
        return self.est

    def interval(self, var):
        assert var == "d"
        return self.ci


# ------------------------------------------------------------------------------------ constants
def test_the_pre_registered_constants():
    assert (C.EXPONENT_TOL, C.EXPONENT_RESOLUTION) == (0.1, 0.125)
    assert C.FACTOR_TOL == pytest.approx(math.log(1.25))
    assert C.FACTOR_RESOLUTION == pytest.approx(math.log(2) / 2)
    assert (C.SLOPE_TOL, C.SLOPE_RESOLUTION) == (0.1, 0.25)
    assert C.PAPER_FAMILIES == ("haar", "gaussian", "block-sparse")
    assert C.SUBSTITUTE_FAMILIES == ("hadamard",)


# ------------------------------------------------------------------------------------ exponents
@pytest.mark.parametrize("est, lo, hi, verdict", [
    (-0.48, -0.55, -0.41, C.CONSISTENT),         # interval covers the prediction
    (-0.59, -0.64, -0.54, C.CONSISTENT),         # within ±0.1 although the interval misses it
    (-0.62, -0.74, -0.495, C.CONSISTENT),        # 0.12 away, but the interval covers -0.5
    (-0.61, -0.66, -0.56, C.NOT_CONSISTENT),     # 0.11 away, interval misses: outside the band
    (-0.25, -0.30, -0.20, C.NOT_CONSISTENT),     # an exponent off by ¼
    (-0.50, -0.625, -0.375, C.CONSISTENT),       # half-width exactly at the resolution
    (-0.50, -0.80, -0.20, C.INCONCLUSIVE),       # half-width 0.3 > 0.125: too little power
    (-0.25, -0.55, 0.05, C.INCONCLUSIVE),        # too wide decides before the band
])
def test_exponent_band_and_power(est, lo, hi, verdict):
    t = exponent(est, lo, hi)
    v, why = t.verdict()
    assert v == verdict
    if verdict == C.INCONCLUSIVE:
        assert why.startswith("too little power: interval half-width") and "> 0.125" in why
    else:
        assert why == ""
    assert t.band == pytest.approx((-0.6, -0.4))


def test_exponent_test_from_a_fit():
    t = C.exponent_test("alpha_d", "α", FakeFit(-0.47, -0.52, -0.42), "d", -0.5, source="Thm 1")
    assert (t.estimate, t.interval, t.predicted, t.tol, t.resolution, t.source) == (
        -0.47, (-0.52, -0.42), -0.5, 0.1, 0.125, "Thm 1")
    assert t.verdict() == (C.CONSISTENT, "")
    none = C.exponent_test("alpha_d", "α", None, "d", -0.5)
    assert none.verdict() == (C.INCONCLUSIVE, "no finite estimate")
    nan_ci = C.exponent_test("alpha_d", "α", FakeFit(-0.5, math.nan, math.nan), "d", -0.5)
    assert nan_ci.verdict()[0] == C.INCONCLUSIVE and "n/a" in nan_ci.verdict()[1]


def test_describe_and_json():
    t = exponent(-0.491, -0.508, -0.474)
    assert t.describe() == ("α, exponent of d = -0.491 [-0.508, -0.474] vs -0.500 (± 0.1): "
                            "consistent")
    j = t.to_json()
    assert j["verdict"] == C.CONSISTENT and j["band"] == pytest.approx([-0.6, -0.4])
    assert j["interval"] == [-0.508, -0.474] and j["kind"] == "equal" and j["scale"] == "linear"
    wide = exponent(-0.5, -0.8, -0.2).describe()
    assert wide.endswith("inconclusive (too little power: interval half-width 0.3 > 0.125)")
    assert C.Test("k", "k", math.nan, None, 1.0, 0.1).to_json()["estimate"] is None


def test_invalid_kind_or_scale():
    with pytest.raises(ValueError, match="Test.kind must be"):
        C.Test("k", "k", 1.0, None, 1.0, 0.1, kind="between")
    with pytest.raises(ValueError, match="Test.scale must be"):
        C.Test("k", "k", 1.0, None, 1.0, 0.1, scale="sqrt")


# ------------------------------------------------------------------------------------ log ratios
@pytest.mark.parametrize("est, lo, hi, verdict", [
    (1.2, 1.1, 1.3, C.CONSISTENT),               # a factor 1.2 is within ×1.25
    (1 / 1.2, 1 / 1.3, 1 / 1.1, C.CONSISTENT),   # symmetric on the log scale
    (1.3, 1.2, 1.4, C.NOT_CONSISTENT),           # factor 1.3, interval misses 1
    (2.0, 1.8, 2.2, C.NOT_CONSISTENT),           # a factor 2 is not
    (0.5, 0.45, 0.55, C.NOT_CONSISTENT),
    (1.0, 0.5, 2.0, C.INCONCLUSIVE),             # log half-width log 2 > log(2)/2
    (2.0, 1.0, 4.0, C.INCONCLUSIVE),             # too wide to tell the factor 2 it shows
    (1.0, 0.0, 2.0, C.INCONCLUSIVE),             # an interval reaching 0 has no log width
])
def test_log_ratio(est, lo, hi, verdict):
    assert ratio(est, lo, hi).verdict()[0] == verdict


def test_log_ratio_band_and_nonpositive_estimate():
    assert ratio(1.0, 0.9, 1.1).band == pytest.approx((0.8, 1.25))
    assert ratio(2.0, 1.9, 2.1, predicted=2.0).band == pytest.approx((1.6, 2.5))
    v, why = ratio(-1.0, -1.1, -0.9).verdict()
    assert v == C.INCONCLUSIVE and "≤ 0 on a log scale" in why
    assert ratio(1.0, 0.9, 1.1).describe().endswith("vs 1.000 (within ×1.25): consistent")


def test_ratio_test_geometric_mean_and_t_interval():
    from scipy.stats import t as student

    vals = 1.2 * np.exp(np.array([0.01, -0.01] * 5))
    r = C.ratio_test("gain", "gain", vals)
    sd = math.sqrt(10 * 0.01 ** 2 / 9)
    q = student.ppf(0.975, 9)
    assert r.estimate == pytest.approx(1.2)
    assert r.interval == pytest.approx((1.2 * math.exp(-q * sd / math.sqrt(10)),
                                        1.2 * math.exp(q * sd / math.sqrt(10))))
    assert r.scale == "log" and r.verdict()[0] == C.CONSISTENT
    assert C.ratio_test("gain", "gain", 2 * vals / 1.2).verdict()[0] == C.NOT_CONSISTENT
    # a spread of ±1 in log over 4 runs cannot tell a factor 2
    wide = C.ratio_test("gain", "gain", np.exp([1.0, -1.0, 1.0, -1.0]))
    assert wide.verdict()[0] == C.INCONCLUSIVE


def test_ratio_test_median_and_degenerate_inputs():
    v = np.arange(1, 101) / 50.5  # median 1.0
    r = C.ratio_test("m", "m", v, statistic="median")
    assert r.estimate == pytest.approx(1.0)
    assert r.interval == pytest.approx((v[39], v[60]))
    for vals in ([1.0, 1.1], [1.0, -1.0, 1.2, 0.9], [math.nan, math.inf, 1.0]):
        assert C.ratio_test("m", "m", vals).verdict() == (C.INCONCLUSIVE, "no finite estimate")


def test_median_interval_order_statistics():
    assert C.median_interval(np.arange(100.0)) == (39.0, 60.0)  # X(40), X(61) of 100
    assert C.median_interval(np.arange(10.0)[::-1]) == (1.0, 8.0)  # X(2), X(9) of 10, sorted
    assert C.median_interval(np.arange(6.0)) == (0.0, 5.0)     # [min, max] covers 96.9 %
    # with 5 values even [min, max] covers only 93.75 %: no 95% interval exists
    assert C.median_interval(np.arange(5.0)) == (-math.inf, math.inf)
    r = C.ratio_test("m", "m", [0.9, 1.0, 1.1, 1.0, 1.05], statistic="median")
    assert r.estimate == 1.0 and r.verdict()[0] == C.INCONCLUSIVE


# ------------------------------------------------------------------------------------ slopes
def test_slope_through_the_origin_by_hand():
    from scipy.stats import t as student

    t = C.slope_test("slope", "slope", [1.0, 2.0, 3.3], [1.0, 2.0, 3.0])
    b = 14.9 / 14
    r = np.array([1.0, 2.0, 3.3]) - b * np.array([1.0, 2.0, 3.0])
    se = math.sqrt(r @ r / 2 / 14)
    q = student.ppf(0.975, 2)
    assert t.estimate == pytest.approx(b)
    assert t.interval == pytest.approx((b - q * se, b + q * se))
    assert (t.predicted, t.tol, t.resolution) == (1.0, 0.1, 0.25)
    assert t.verdict()[0] == C.CONSISTENT


def test_slope_on_synthetic_data():
    rng = np.random.default_rng(1)
    x = rng.uniform(0.1, 1.0, 200)
    noise = 0.05 * rng.standard_normal(200)
    assert C.slope_test("s", "s", x + noise, x).verdict()[0] == C.CONSISTENT
    assert C.slope_test("s", "s", 0.5 * x + noise, x).verdict()[0] == C.NOT_CONSISTENT
    assert C.slope_test("s", "s", 2.0 * x + noise, x).verdict()[0] == C.NOT_CONSISTENT
    # with an intercept: y = 3 + x
    t = C.slope_test("s", "s", 3 + x + noise, x, through_origin=False)
    assert t.estimate == pytest.approx(1.0, abs=0.05) and t.verdict()[0] == C.CONSISTENT
    # noise 10× the signal: the interval cannot tell a slope of 0.5
    loud = C.slope_test("s", "s", x + 10 * rng.standard_normal(200), x)
    assert loud.verdict()[0] == C.INCONCLUSIVE


def test_slope_degenerate_inputs():
    assert C.slope_test("s", "s", [1, 2], [1, 2]).verdict()[0] == C.INCONCLUSIVE
    assert C.slope_test("s", "s", [1, 2, 3], [0, 0, 0]).verdict()[0] == C.INCONCLUSIVE
    assert C.slope_test("s", "s", [1, 2, 3], [2, 2, 2],
                        through_origin=False).verdict()[0] == C.INCONCLUSIVE
    # non-finite pairs are dropped
    t = C.slope_test("s", "s", [1.0, math.nan, 2.0, 3.0, 4.0], [1.0, 2.0, 2.0, 3.0, 4.0])
    assert t.estimate == pytest.approx(1.0)


# ------------------------------------------------------------------------------------ one-sided
def test_at_most():
    def t(est, interval):
        return C.Test("k", "k", est, interval, 0.1, 0.02, kind="at_most").verdict()[0]

    assert t(0.05, (0.03, 0.07)) == C.CONSISTENT
    assert t(0.13, (0.11, 0.15)) == C.CONSISTENT          # the near (lower) end is within tol
    assert t(0.2, (0.15, 0.25)) == C.NOT_CONSISTENT
    assert t(0.119, None) == C.CONSISTENT                   # a point statistic: tol alone
    assert t(0.121, None) == C.NOT_CONSISTENT
    assert C.Test("k", "k", 0.0, None, 0.1, 0.02, kind="at_most").band == (None, pytest.approx(0.12))


def test_at_least():
    def t(est, interval):
        return C.Test("k", "k", est, interval, 0.9, 0.05, kind="at_least").verdict()[0]

    assert t(0.95, (0.9, 1.0)) == C.CONSISTENT
    assert t(0.8, (0.7, 0.86)) == C.CONSISTENT             # the near (upper) end is within tol
    assert t(0.5, (0.4, 0.6)) == C.NOT_CONSISTENT
    assert t(0.86, None) == C.CONSISTENT and t(0.84, None) == C.NOT_CONSISTENT
    assert C.Test("k", "k", 0.0, None, 0.9, 0.05, kind="at_least").band == (pytest.approx(0.85), None)
    d = C.Test("k", "rate", 0.95, (0.9, 1.0), 0.9, 0.05, kind="at_least").describe()
    assert d == "rate = 0.950 [0.900, 1.000] ≥ 0.900 (± 0.05): consistent"


def test_at_most_on_a_log_scale():
    t = C.Test("k", "k", 1.1, (1.0, 1.2), 1.0, C.FACTOR_TOL, kind="at_most", scale="log")
    assert t.verdict()[0] == C.CONSISTENT
    t = C.Test("k", "k", 2.0, (1.8, 2.2), 1.0, C.FACTOR_TOL, kind="at_most", scale="log")
    assert t.verdict()[0] == C.NOT_CONSISTENT


# ------------------------------------------------------------------------------------ rates, means
def test_rate_test_wilson_interval_by_hand():
    # 45/50: Wilson 95% interval [0.7864, 0.9565] (z = 1.96)
    t = C.rate_test("rate", "rate", 45, 50, 0.9)
    assert t.estimate == 0.9
    assert t.interval == pytest.approx((0.7863977, 0.9565242), abs=1e-7)
    assert (t.kind, t.tol) == ("at_least", 0.05) and t.verdict()[0] == C.CONSISTENT
    assert C.rate_test("r", "r", 0, 10, 0.5).interval == pytest.approx((0.0, 0.2775328), abs=1e-7)
    lo, hi = C.rate_test("r", "r", 10, 10, 0.5).interval
    assert lo == pytest.approx(0.7224672, abs=1e-7) and hi <= 1.0
    assert C.rate_test("r", "r", 20, 50, 0.9).verdict()[0] == C.NOT_CONSISTENT
    assert C.rate_test("r", "r", 0, 0, 0.9).verdict() == (C.INCONCLUSIVE, "no finite estimate")
    with pytest.raises(ValueError, match="successes must be between 0 and n"):
        C.rate_test("r", "r", 11, 10, 0.9)


@pytest.mark.parametrize("n", [10, 60, 64, 100, 501, 1000])
def test_rate_test_all_or_none_reaches_the_exact_bound(n):
    """n/n successes against "rate ≥ 1" (tol 0) is consistent: the Wilson upper bound is exactly 1
    (c + h rounds to 1 − 2e-16 for n = 60), and 0/n against "rate ≤ 0" likewise."""
    t = C.rate_test("r", "r", n, n, 1.0, tol=0.0)
    assert t.interval[1] == 1.0 and t.verdict()[0] == C.CONSISTENT
    t = C.rate_test("r", "r", 0, n, 0.0, tol=0.0, kind="at_most")
    assert t.interval[0] == 0.0 and t.verdict()[0] == C.CONSISTENT


def test_mean_test():
    t = C.mean_test("bias", "mean signed error", [0.1, -0.1, 0.2, -0.2], predicted=0.0, tol=0.05)
    assert t.estimate == pytest.approx(0.0) and t.verdict()[0] == C.CONSISTENT
    assert t.interval[0] < 0 < t.interval[1]
    off = C.mean_test("bias", "b", [1.0, 1.1, 0.9, 1.0], predicted=0.0, tol=0.05)
    assert off.verdict()[0] == C.NOT_CONSISTENT
    assert C.mean_test("b", "b", [1.0]).verdict()[0] == C.INCONCLUSIVE


# ------------------------------------------------------------------------------------ claims
def test_claim_aggregation():
    assert C.Claim("c", "haar", 2, [good("a"), good("b")]).verdict() == (C.CONSISTENT, [])
    assert C.Claim("c", "haar", 2, [good("a"), bad("b")]).verdict() == (C.NOT_CONSISTENT, ["b"])
    # one bad test decides even next to an inconclusive one
    assert C.Claim("c", "haar", 2, [unsure("u"), bad("b")]).verdict() == (C.NOT_CONSISTENT, ["b"])
    v, why = C.Claim("c", "haar", 2, [good("a"), unsure("u")]).verdict()
    assert v == C.INCONCLUSIVE and len(why) == 1 and why[0].startswith("u: too little power")
    assert C.Claim("c", "haar", 2, []).verdict() == (C.INCONCLUSIVE, ["no test could be computed"])
    forced = C.Claim("c", "haar", 2, [good()], inconclusive="only 2 values of d")
    assert forced.verdict() == (C.INCONCLUSIVE, ["only 2 values of d"])
    assert forced.evidence().startswith("inconclusive: only 2 values of d; g = ")


def test_claim_json_and_where():
    c = C.Claim("thm1.i", "hadamard", np.int64(3), [good()], note="12 runs")
    j = c.to_json("thm1_attributes")
    assert j["experiment"] == "thm1_attributes" and j["depth"] == 3 and type(j["depth"]) is int
    assert j["substitute"] is True and j["verdict"] == C.CONSISTENT
    assert j["evidence"].startswith("12 runs; g = ")
    assert c.where() == "hadamard, depth 3"
    assert C.Claim("x", None, None, []).where() == "all families"


# ------------------------------------------------------------------------------------ headlines
def fam(name, family, depth, *tests, **kw):
    return C.Claim(name, family, depth, list(tests), **kw)


def test_headline_substitute_never_decides():
    v, text = C.headline([fam("c", "hadamard", 2, good())])
    assert v == C.INCONCLUSIVE and text == "inconclusive | substitute hadamard at depth 2: consistent"
    v, text = C.headline([fam("c", "haar", 2, good()), fam("c", "hadamard", 2, bad())])
    assert v == C.CONSISTENT
    assert text == "consistent for haar at depth 2 | substitute hadamard at depth 2: not consistent"


def test_headline_names_the_paper_family_that_disagrees():
    claims = [fam("c", "haar", 2, good()), fam("c", "gaussian", 3, bad()),
              fam("c", "block-sparse", 2, good())]
    v, text = C.headline(claims)
    assert v == C.NOT_CONSISTENT and text == ("not consistent for gaussian at depth 3; consistent for haar at depth 2; "
                                               "block-sparse at depth 2")
    claims.append(fam("c", None, None, bad()))  # a family-spanning claim decides too
    assert C.headline(claims)[1].startswith("not consistent for gaussian at depth 3; all families; consistent for")


def test_headline_inconclusive_cases():
    v, text = C.headline([fam("c", "haar", 2, unsure()), fam("c", "gaussian", 2,
                                                              inconclusive="too few d")])
    assert v == C.INCONCLUSIVE
    assert text.startswith("inconclusive; inconclusive for haar at depth 2 (u: too little power")
    assert "gaussian at depth 2 (too few d)" in text
    assert C.headline([]) == (C.INCONCLUSIVE, "inconclusive")
    # consistent where it could be decided, with the undecided named and reasoned
    v, text = C.headline([fam("c", "haar", 2, good()), fam("c", "block-sparse", 2, unsure())])
    assert v == C.CONSISTENT
    assert text.startswith("consistent for haar at depth 2; inconclusive for block-sparse at depth 2 (u: ")


def test_group_headlines_and_experiment_verdict():
    claims = [fam("b", "haar", 2, good()), fam("a", "haar", 2, bad()), fam("b", "gaussian", 2, good())]
    heads = C.group_headlines(claims)
    assert list(heads) == ["b", "a"]                               # first-appearance order
    assert heads["b"] == (C.CONSISTENT, "consistent for haar at depth 2; gaussian at depth 2")
    assert C.experiment_verdict(claims) == C.NOT_CONSISTENT        # the worst headline
    assert C.experiment_verdict(claims[:1]) == C.CONSISTENT
    assert C.experiment_verdict([fam("x", "hadamard", 2, good())]) == C.INCONCLUSIVE
    assert C.experiment_verdict([]) == C.INCONCLUSIVE


# ------------------------------------------------------------------------------------ pooled statistics
def test_pooled_slope_test_equals_slope_test_on_the_pooled_pairs():
    rng = np.random.default_rng(3)
    runs = [(rng.uniform(0, 1, k), None) for k in (3, 5, 4, 6)]
    runs = [(x, 0.9 * x + 0.05 * rng.standard_normal(len(x))) for x, _ in runs]
    sxy = [x @ y for x, y in runs]
    sxx = [x @ x for x, _ in runs]
    syy = [y @ y for _, y in runs]
    n = [len(x) for x, _ in runs]
    pooled = C.pooled_slope_test("s", "s", sxy, sxx, syy, n)
    direct = C.slope_test("s", "s", np.concatenate([y for _, y in runs]),
                          np.concatenate([x for x, _ in runs]))
    assert pooled.estimate == pytest.approx(direct.estimate, rel=1e-12)
    assert pooled.interval == pytest.approx(direct.interval, rel=1e-10)
    # weights w_r: the slope of the pairs (√w_r x, √w_r y)
    w = np.array([1.0, 4.0, 0.5, 2.0])
    weighted = C.pooled_slope_test("s", "s", sxy, sxx, syy, n, weights=w)
    scaled = C.slope_test("s", "s", np.concatenate([np.sqrt(wr) * y for wr, (_, y) in zip(w, runs)]),
                          np.concatenate([np.sqrt(wr) * x for wr, (x, _) in zip(w, runs)]))
    assert weighted.estimate == pytest.approx(scaled.estimate, rel=1e-12)
    assert weighted.interval == pytest.approx(scaled.interval, rel=1e-10)
    assert C.pooled_slope_test("s", "s", [1.0], [1.0], [1.0], [2]).verdict()[0] == C.INCONCLUSIVE


def test_rms_ratio_test_chi_square_interval():
    from scipy.stats import chi2

    z = np.array([1.0, -2.0, 0.5, 1.5, -1.0, 0.0, 2.5, -0.5])
    t = C.rms_ratio_test("rms", "rms", z)
    ss = float(z @ z)
    assert t.estimate == pytest.approx(math.sqrt(ss / 8))
    assert t.interval == pytest.approx((math.sqrt(ss / chi2.ppf(0.975, 8)),
                                        math.sqrt(ss / chi2.ppf(0.025, 8))))
    assert t.scale == "log"
    rng = np.random.default_rng(0)
    assert C.rms_ratio_test("r", "r", rng.standard_normal(400)).verdict()[0] == C.CONSISTENT
    assert C.rms_ratio_test("r", "r", 2 * rng.standard_normal(400)).verdict()[0] == C.NOT_CONSISTENT
    assert C.rms_ratio_test("r", "r", rng.standard_normal(5)).verdict()[0] == C.INCONCLUSIVE
    assert C.rms_ratio_test("r", "r", [0.0, 0.0, 0.0]).verdict()[0] == C.INCONCLUSIVE
