"""Claims and verdicts: the rules that decide whether a measurement agrees with the paper.

An experiment does not write verdicts. It returns :class:`Claim` objects, each holding the
:class:`Test` statistics that bear on one statement of the paper for one family and one depth;
the rules below, fixed here before any run, turn them into verdicts. The same rules decide the
report's headlines, ``verdicts.json`` and the CI check.

Rules (pre-registered)
----------------------
A :class:`Test` compares an estimate (with its 95% interval) with a prediction from the theory:

* ``inconclusive`` when there is no finite estimate, or when the interval's half-width exceeds the
  test's ``resolution`` (the run has too little power to tell the effect the test is sized for:
  an exponent off by ¼, a constant off by a factor 2);
* otherwise ``consistent`` when the prediction lies inside the interval or within ``tol`` of the
  estimate (``kind="equal"``); for one-sided bounds (``kind="at_most"`` / ``"at_least"``) when the
  estimate (or the near end of its interval) satisfies the bound within ``tol``;
* otherwise ``not consistent``.

``scale="log"`` applies all of this to logarithms (ratios, constants): ``tol = log(1.25)`` means
"within a factor 1.25", ``resolution = log(2)/2`` means "the interval can tell a factor 2".

A :class:`Claim` is ``not consistent`` when any of its tests is, ``consistent`` when all are,
``inconclusive`` otherwise (with every reason). A headline (:func:`headline`) judges one claim name
over the paper's families and every depth: ``consistent`` only when every paper family is
consistent or inconclusive with a stated reason (and at least one is consistent); the families that
disagree are named. ``hadamard`` is reported beside them as the engineering substitute it is and
never decides a headline.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

CONSISTENT = "consistent"
NOT_CONSISTENT = "not consistent"
INCONCLUSIVE = "inconclusive"
VERDICTS = (CONSISTENT, NOT_CONSISTENT, INCONCLUSIVE)

PAPER_FAMILIES = ("haar", "gaussian", "block-sparse")
"""The paper's distributions (Haar-orthonormal, i.i.d. Gaussian, D(b, q, d)), in report order."""
SUBSTITUTE_FAMILIES = ("hadamard",)
"""Engineering substitutes (THEORY.md §2.4): reported, never deciding a headline."""

EXPONENT_TOL = 0.1
"""An exponent is consistent within ±0.1 of its prediction (or when its interval covers it)."""
EXPONENT_RESOLUTION = 0.125
"""Largest interval half-width of an exponent test: half of the ¼ error it must detect."""
FACTOR_TOL = math.log(1.25)
"""A constant or ratio is consistent within a factor 1.25 of its prediction (log scale)."""
FACTOR_RESOLUTION = math.log(2.0) / 2
"""Largest log-interval half-width of a constant test: half of the factor 2 it must detect."""
SLOPE_TOL = 0.1
"""A bias slope (estimate on truth) is consistent within ±0.1 of 1 (or when its interval covers 1)."""
SLOPE_RESOLUTION = 0.25
"""Largest half-width of a slope interval: half of the 0.5 a factor-2 scale error moves it by."""


def _finite(x):
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


@dataclasses.dataclass(frozen=True)
class Test:
    """One statistic of a claim with its theory band.

    Parameters
    ----------
    key : str
        Short identifier, unique within the claim (``"alpha_d"``, ``"slope"``); with the claim,
        family and depth it names the number in ``baselines.json``.
    label : str
        What is measured, for humans (``"α, exponent of d"``).
    estimate : float
    interval : (float, float) or None
        95% interval of the estimate (None: a point statistic, judged by ``tol`` alone).
    predicted : float
        The theory's value (or bound, for one-sided kinds).
    tol : float
        Half-width of the theory band around ``predicted`` (on ``scale``).
    resolution : float or None
        Largest interval half-width (on ``scale``) at which the test still has the power it was
        sized for; wider gives ``inconclusive``. None: no power requirement.
    kind : {"equal", "at_most", "at_least"}
    scale : {"linear", "log"}
    source : str
        Where the prediction comes from (``"Theorem 1: error ∝ d^{-1/2}"``).
    """

    __test__ = False  # not a pytest test class, although its name starts with "Test"

    key: str
    label: str
    estimate: float
    interval: tuple | None
    predicted: float
    tol: float
    resolution: float | None = None
    kind: str = "equal"
    scale: str = "linear"
    source: str = ""

    def __post_init__(self):
        if self.kind not in ("equal", "at_most", "at_least"):
            raise ValueError(f"Test.kind must be 'equal', 'at_most' or 'at_least'; got {self.kind!r}")
        if self.scale not in ("linear", "log"):
            raise ValueError(f"Test.scale must be 'linear' or 'log'; got {self.scale!r}")

    def _t(self, v):
        v = float(v)
        if self.scale == "log":
            return math.log(v) if v > 0 else -math.inf
        return v

    @property
    def band(self):
        """(low, high) of the theory band on the natural scale (None for an open side)."""
        p = float(self.predicted)
        if self.scale == "log":
            lo, hi = p * math.exp(-self.tol), p * math.exp(self.tol)
        else:
            lo, hi = p - self.tol, p + self.tol
        if self.kind == "at_most":
            lo = None
        elif self.kind == "at_least":
            hi = None
        return lo, hi

    def halfwidth(self):
        """Interval half-width on the test's scale (None without an interval)."""
        if self.interval is None or not all(_finite(v) for v in self.interval):
            return None
        lo, hi = self.interval
        if self.scale == "log" and (lo <= 0 or hi <= 0):
            return math.inf
        return (self._t(hi) - self._t(lo)) / 2

    def verdict(self):
        """(verdict, reason) by the module's rule."""
        if not _finite(self.estimate):
            return INCONCLUSIVE, "no finite estimate"
        if self.scale == "log" and float(self.estimate) <= 0:
            return INCONCLUSIVE, f"estimate {self.estimate:.3g} ≤ 0 on a log scale"
        hw = self.halfwidth()
        if self.resolution is not None and self.interval is not None:
            if hw is None or hw > self.resolution:
                return INCONCLUSIVE, (f"too little power: interval half-width "
                                      f"{'n/a' if hw is None else f'{hw:.3g}'} > {self.resolution:.3g}")
        est, pred = self._t(self.estimate), self._t(self.predicted)
        lo_i, hi_i = ((self._t(v) for v in self.interval) if hw is not None else (est, est))
        if self.kind == "equal":
            ok = abs(est - pred) <= self.tol or lo_i <= pred <= hi_i
        elif self.kind == "at_most":
            ok = lo_i <= pred + self.tol
        else:
            ok = hi_i >= pred - self.tol
        return (CONSISTENT if ok else NOT_CONSISTENT), ""

    def describe(self, digits=3):
        """``α, exponent of d = −0.491 [−0.508, −0.474] vs −0.5 ± 0.1: consistent``."""
        v, why = self.verdict()
        est = _num(self.estimate, digits)
        ci = "" if self.interval is None else f" [{_num(self.interval[0], digits)}, {_num(self.interval[1], digits)}]"
        if self.scale == "log":
            band = f"within ×{math.exp(self.tol):.3g}"
        else:
            band = f"± {self.tol:.3g}"
        rel = {"equal": "vs", "at_most": "≤", "at_least": "≥"}[self.kind]
        text = f"{self.label} = {est}{ci} {rel} {_num(self.predicted, digits)} ({band}): {v}"
        return text + (f" ({why})" if why else "")

    def to_json(self):
        v, why = self.verdict()
        lo, hi = self.band
        return {"key": self.key, "label": self.label, "estimate": _jf(self.estimate),
                "interval": None if self.interval is None else [_jf(x) for x in self.interval],
                "predicted": _jf(self.predicted), "band": [_jf(lo), _jf(hi)], "tol": _jf(self.tol),
                "resolution": _jf(self.resolution), "kind": self.kind, "scale": self.scale,
                "source": self.source, "verdict": v, "reason": why}


def _jf(v):
    return float(v) if _finite(v) else None


def _num(v, digits=3):
    if not _finite(v):
        return "n/a"
    v = float(v)
    if v != 0 and (abs(v) >= 1e4 or abs(v) < 1e-3):
        return f"{v:.{digits}g}"
    return f"{v:.{digits}f}"


@dataclasses.dataclass
class Claim:
    """The evidence on one statement of the paper for one family and one depth.

    Parameters
    ----------
    claim : str
        The statement's name (``"thm1.i"``); names are a contract of ``verdicts.json``.
    family : str or None
        Matrix family, or None for a claim that spans families.
    depth : int or None
    tests : list of Test
    note : str
        Extra evidence (runs, settings) printed before the tests.
    inconclusive : str
        A reason that makes the claim inconclusive whatever its tests say (too few d values, too
        few runs); empty when the tests decide.
    """

    claim: str
    family: str | None
    depth: int | None
    tests: list
    note: str = ""
    inconclusive: str = ""

    @property
    def substitute(self):
        return self.family in SUBSTITUTE_FAMILIES

    def verdict(self):
        """(verdict, reasons) by the module's rule."""
        if self.inconclusive:
            return INCONCLUSIVE, [self.inconclusive]
        if not self.tests:
            return INCONCLUSIVE, ["no test could be computed"]
        vs = [t.verdict() for t in self.tests]
        if any(v == NOT_CONSISTENT for v, _ in vs):
            return NOT_CONSISTENT, [t.key for t, (v, _) in zip(self.tests, vs) if v == NOT_CONSISTENT]
        if all(v == CONSISTENT for v, _ in vs):
            return CONSISTENT, []
        return INCONCLUSIVE, [f"{t.key}: {why}" for t, (v, why) in zip(self.tests, vs) if v == INCONCLUSIVE]

    def evidence(self):
        parts = [self.note] if self.note else []
        if self.inconclusive:
            parts.append(f"inconclusive: {self.inconclusive}")
        parts += [t.describe() for t in self.tests]
        return "; ".join(parts)

    def where(self):
        fam = self.family or "all families"
        return fam + ("" if self.depth is None else f", depth {self.depth}")

    def to_json(self, experiment):
        v, _ = self.verdict()
        return {"experiment": experiment, "claim": self.claim, "family": self.family,
                "depth": None if self.depth is None else int(self.depth), "verdict": v,
                "substitute": self.substitute, "evidence": self.evidence(),
                "tests": [t.to_json() for t in self.tests]}


def _cells(claims):
    """``haar at depth 2, 3; gaussian at depth 2`` (families in first-appearance order)."""
    order, depths = [], {}
    for c in claims:
        fam = c.family or "all families"
        if fam not in depths:
            order.append(fam)
            depths[fam] = []
        if c.depth is not None and c.depth not in depths[fam]:
            depths[fam].append(c.depth)
    return "; ".join(f + (f" at depth {', '.join(str(h) for h in sorted(depths[f]))}" if depths[f] else "")
                     for f in order)


def headline(claims):
    """(verdict, text) of claims sharing one name, over paper families and depths.

    ``consistent`` only when every deciding claim (paper family or family-spanning) is consistent
    or inconclusive with a reason, and at least one is consistent. Substitutes are named after a
    ``|`` and never decide.
    """
    deciding = [c for c in claims if not c.substitute]
    subs = [c for c in claims if c.substitute]
    bad = [c for c in deciding if c.verdict()[0] == NOT_CONSISTENT]
    inc = [c for c in deciding if c.verdict()[0] == INCONCLUSIVE]
    good = [c for c in deciding if c.verdict()[0] == CONSISTENT]
    if bad:
        v = NOT_CONSISTENT
        text = "not consistent for " + _cells(bad)
        if good:
            text += "; consistent for " + _cells(good)
    elif good:
        v = CONSISTENT
        text = "consistent for " + _cells(good)
    else:
        v = INCONCLUSIVE
        text = "inconclusive"
    if inc:
        reasons = {}
        for c in inc:
            reasons.setdefault("; ".join(c.verdict()[1]), []).append(c)
        text += "; inconclusive for " + "; ".join(f"{_cells(cs)} ({why})" for why, cs in reasons.items())
    if subs:
        parts = {}
        for c in subs:
            parts.setdefault(c.verdict()[0], []).append(c)
        text += " | substitute " + "; ".join(f"{_cells(cs)}: {v_}" for v_, cs in parts.items())
    return v, text


def group_headlines(claims):
    """{claim name: (verdict, text)} in first-appearance order."""
    names = []
    for c in claims:
        if c.claim not in names:
            names.append(c.claim)
    return {n: headline([c for c in claims if c.claim == n]) for n in names}


def experiment_verdict(claims):
    """One verdict for an experiment: the worst of its claim headlines."""
    heads = group_headlines(claims)
    vs = [v for v, _ in heads.values()]
    if not vs:
        return INCONCLUSIVE
    if NOT_CONSISTENT in vs:
        return NOT_CONSISTENT
    if CONSISTENT in vs:
        return CONSISTENT
    return INCONCLUSIVE


# ----------------------------------------------------------------------------- test builders
def exponent_test(key, label, fit, var, predicted, source=""):
    """An exponent of a :class:`~sketchsim.harness.fitting.PowerLawFit` against its prediction."""
    if fit is None:
        return Test(key, label, math.nan, None, predicted, EXPONENT_TOL, EXPONENT_RESOLUTION,
                    source=source)
    return Test(key, label, fit.exponent(var), tuple(fit.interval(var)), predicted, EXPONENT_TOL,
                EXPONENT_RESOLUTION, source=source)


def ratio_test(key, label, values, predicted=1.0, tol=FACTOR_TOL, resolution=FACTOR_RESOLUTION,
               source="", statistic="mean"):
    """A ratio measured/predicted from per-run values: geometric mean (``statistic="mean"``) with a
    t interval on the logs, or the median (``"median"``) with a bootstrap-free order-statistic
    interval. Nonpositive values make the test inconclusive."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) < 3 or np.any(v <= 0):
        return Test(key, label, math.nan, None, predicted, tol, resolution, scale="log", source=source)
    lv = np.log(v)
    if statistic == "median":
        est, (lo, hi) = float(np.median(v)), median_interval(v)
    else:
        m, se = float(lv.mean()), float(lv.std(ddof=1) / math.sqrt(len(lv)))
        from scipy.stats import t as _t

        q = float(_t.ppf(0.975, len(lv) - 1))
        est, lo, hi = math.exp(m), math.exp(m - q * se), math.exp(m + q * se)
    return Test(key, label, est, (lo, hi), predicted, tol, resolution, scale="log", source=source)


def median_interval(v, level=0.95):
    """Distribution-free interval of a median from order statistics (binomial):
    [X_(k), X_(n-k+1)] with the largest k whose coverage is at least ``level``. Unbounded
    (-inf, inf) when even [min, max] covers less (n ≤ 5 at 95%), so that the test is
    inconclusive rather than over-confident."""
    from scipy.stats import binom

    v = np.sort(np.asarray(v, dtype=float))
    n = len(v)
    a = (1 - level) / 2
    k = int(binom.ppf(a, n, 0.5))  # smallest k with P(B ≤ k) ≥ a, so P(B ≤ k - 1) < a
    if k < 1:
        return -math.inf, math.inf
    lo = k - 1                       # X_(k), 0-based
    hi = min(int(binom.isf(a, n, 0.5)), n - 1)   # X_(n-k+1), 0-based
    return float(v[lo]), float(v[hi])


def slope_test(key, label, estimate, truth, predicted=1.0, tol=SLOPE_TOL, resolution=SLOPE_RESOLUTION,
               source="", through_origin=True):
    """The bias test of a decoder: least-squares slope of ``estimate`` on ``truth`` (through the
    origin by default, since a zero truth must decode to zero) with its 95% t interval."""
    y = np.asarray(estimate, dtype=float).ravel()
    x = np.asarray(truth, dtype=float).ravel()
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3 or not np.any(x != 0):
        return Test(key, label, math.nan, None, predicted, tol, resolution, source=source)
    from scipy.stats import t as _t

    if through_origin:
        sxx = float(x @ x)
        b = float(x @ y) / sxx
        r = y - b * x
        dof = len(x) - 1
        se = math.sqrt(float(r @ r) / dof / sxx)
    else:
        xm, ym = x.mean(), y.mean()
        sxx = float(((x - xm) ** 2).sum())
        if sxx == 0:
            return Test(key, label, math.nan, None, predicted, tol, resolution, source=source)
        b = float(((x - xm) * (y - ym)).sum()) / sxx
        r = y - ym - b * (x - xm)
        dof = len(x) - 2
        se = math.sqrt(float(r @ r) / dof / sxx)
    q = float(_t.ppf(0.975, dof))
    return Test(key, label, b, (b - q * se, b + q * se), predicted, tol, resolution, source=source)


def mean_test(key, label, values, predicted=0.0, tol=0.0, resolution=None, source="", kind="equal"):
    """Mean of per-run values with its 95% t interval (mean signed error, rates)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) < 2:
        return Test(key, label, math.nan, None, predicted, tol, resolution, kind=kind, source=source)
    from scipy.stats import t as _t

    m = float(v.mean())
    se = float(v.std(ddof=1) / math.sqrt(len(v)))
    q = float(_t.ppf(0.975, len(v) - 1))
    return Test(key, label, m, (m - q * se, m + q * se), predicted, tol, resolution, kind=kind,
                source=source)


def rate_test(key, label, successes, n, predicted, tol=0.05, kind="at_least", resolution=None, source=""):
    """A success rate with its Wilson 95% interval against a predicted rate or bound."""
    n = int(n)
    if n > 0 and not 0 <= successes <= n:
        raise ValueError(f"successes must be between 0 and n={n}; got {successes!r}")
    if n <= 0:
        return Test(key, label, math.nan, None, predicted, tol, resolution, kind=kind, source=source)
    p = successes / n
    z = 1.959963984540054
    den = 1 + z * z / n
    c = (p + z * z / (2 * n)) / den
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    lo = 0.0 if successes == 0 else max(c - h, 0.0)      # the Wilson bounds are exactly 0 and 1 there;
    hi = 1.0 if successes == n else min(c + h, 1.0)       # c ± h misses them by rounding (1 − 2e-16)
    return Test(key, label, p, (lo, hi), predicted, tol, resolution, kind=kind, source=source)


def pooled_slope_test(key, label, sxy, sxx, syy, n, weights=None, predicted=1.0, tol=SLOPE_TOL,
                      resolution=SLOPE_RESOLUTION, source=""):
    """:func:`slope_test` (through the origin) from per-run sufficient statistics.

    Run r contributed the pairs (x_rj, y_rj), j < n_r, through ``sxy[r] = Σ_j x_rj y_rj``,
    ``sxx[r] = Σ_j x_rj²`` and ``syy[r] = Σ_j y_rj²``. With ``weights`` w_r (e.g. 1/σ_r², σ_r the
    run's predicted noise level) this is the weighted least-squares slope
    b = Σ w_r sxy_r / Σ w_r sxx_r, with the 95% t interval from the weighted residual sum of
    squares Σ w_r (syy_r − 2b sxy_r + b² sxx_r) on Σ n_r − 1 degrees of freedom: exactly
    :func:`slope_test` on the pooled pairs (√w_r x_rj, √w_r y_rj).
    """
    a = [np.asarray(v, dtype=float).ravel() for v in (sxy, sxx, syy, n)]
    w = np.ones_like(a[0]) if weights is None else np.asarray(weights, dtype=float).ravel()
    ok = np.all([np.isfinite(v) for v in a + [w]], axis=0) & (w > 0) & (a[3] > 0)
    sxy, sxx, syy, n = (v[ok] for v in a)
    w = w[ok]
    Sxy, Sxx, Syy, N = float(w @ sxy), float(w @ sxx), float(w @ syy), float(n.sum())
    if N < 3 or not Sxx > 0:
        return Test(key, label, math.nan, None, predicted, tol, resolution, source=source)
    from scipy.stats import t as _t

    b = Sxy / Sxx
    rss = max(Syy - 2 * b * Sxy + b * b * Sxx, 0.0)
    dof = N - 1
    se = math.sqrt(rss / dof / Sxx)
    q = float(_t.ppf(0.975, dof))
    return Test(key, label, b, (b - q * se, b + q * se), predicted, tol, resolution, source=source)


def rms_ratio_test(key, label, z, predicted=1.0, tol=FACTOR_TOL, resolution=FACTOR_RESOLUTION, source=""):
    """Root mean square of normalised errors z (error / predicted noise level) against ``predicted``.

    For z_i i.i.d. N(0, ρ²) the estimate √(mean z²) of ρ has the exact 95% interval
    √(Σz²/χ²_{n, 0.975}) … √(Σz²/χ²_{n, 0.025}); judged on the log scale like :func:`ratio_test`.
    Suited to scalar estimates (one z per run), whose |z| is too skewed for a geometric mean.
    """
    v = np.asarray(z, dtype=float).ravel()
    v = v[np.isfinite(v)]
    if len(v) < 3:
        return Test(key, label, math.nan, None, predicted, tol, resolution, scale="log", source=source)
    from scipy.stats import chi2

    ss = float(v @ v)
    n = len(v)
    if ss <= 0:
        return Test(key, label, 0.0, None, predicted, tol, resolution, scale="log", source=source)
    est = math.sqrt(ss / n)
    lo = math.sqrt(ss / float(chi2.ppf(0.975, n)))
    hi = math.sqrt(ss / float(chi2.ppf(0.025, n)))
    return Test(key, label, est, (lo, hi), predicted, tol, resolution, scale="log", source=source)
