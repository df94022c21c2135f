"""Power-law fits of measured errors: error ≈ C · Π_k x_k^{α_k} (log-log least squares).

Used by the report and the CI regression check. Intervals are two-sided 95% t intervals of the
ordinary least-squares coefficients in log space; the "fitted bound" is the upper 95% prediction
quantile exp(log Ĉ + Σ α̂_k log x_k + t_{0.95}·σ̂), so about 5% of runs lie above it when the
power law describes the data.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import stats

__all__ = ["PowerLawFit", "fit_power_law"]


@dataclass
class PowerLawFit:
    """Result of :func:`fit_power_law`."""

    variables: list
    exponents: np.ndarray            # α_k
    exponent_ci: np.ndarray          # (k, 2)
    log_c: float                     # log C
    log_c_ci: tuple
    sigma: float                     # residual standard deviation in log space
    n: int
    r2: float
    violation_rate: float            # fraction of runs above the fitted bound
    extra: dict = field(default_factory=dict)

    @property
    def constant(self):
        return float(np.exp(self.log_c))

    @property
    def constant_ci(self):
        return tuple(float(np.exp(v)) for v in self.log_c_ci)

    def exponent(self, name):
        return float(self.exponents[self.variables.index(name)])

    def interval(self, name):
        return tuple(float(v) for v in self.exponent_ci[self.variables.index(name)])

    def predict(self, **x):
        """Fitted median error at the given variable values."""
        return float(np.exp(self.log_c + sum(a * np.log(x[v]) for v, a in zip(self.variables, self.exponents))))

    def as_dict(self, prefix=""):
        out = {f"{prefix}log_c": self.log_c, f"{prefix}C": self.constant, f"{prefix}sigma": self.sigma,
               f"{prefix}n": self.n, f"{prefix}r2": self.r2, f"{prefix}violation_rate": self.violation_rate}
        for v, a, (lo, hi) in zip(self.variables, self.exponents, self.exponent_ci):
            out[f"{prefix}alpha_{v}"] = float(a)
            out[f"{prefix}alpha_{v}_lo"] = float(lo)
            out[f"{prefix}alpha_{v}_hi"] = float(hi)
        return out


def fit_power_law(y, X, names):
    """Fit log y = log C + Σ α_k log x_k by least squares.

    Parameters
    ----------
    y : array of shape (n,)
        Positive errors (nonpositive or non-finite rows are dropped).
    X : array of shape (n, k)
        Positive explanatory variables (e.g. d_sketch, effective weight w).
    names : list of str
        Names of the k variables.

    Returns
    -------
    PowerLawFit
    """
    y = np.asarray(y, dtype=np.float64)
    X = np.asarray(X, dtype=np.float64).reshape(len(y), -1)
    keep = np.isfinite(y) & (y > 0) & np.all(np.isfinite(X) & (X > 0), axis=1)
    y, X = y[keep], X[keep]
    n, k = X.shape
    if n < k + 2:
        raise ValueError(f"fit_power_law needs at least {k + 2} positive rows; got {n}")
    A = np.column_stack([np.ones(n), np.log(X)])
    ly = np.log(y)
    coef, *_ = np.linalg.lstsq(A, ly, rcond=None)
    resid = ly - A @ coef
    dof = n - k - 1
    sigma = float(np.sqrt(resid @ resid / dof))
    cov = sigma ** 2 * np.linalg.pinv(A.T @ A)
    se = np.sqrt(np.diag(cov))
    t = stats.t.ppf(0.975, dof)
    ci = np.column_stack([coef - t * se, coef + t * se])
    tss = float(((ly - ly.mean()) ** 2).sum())
    r2 = 1.0 - float(resid @ resid) / tss if tss > 0 else 1.0
    bound = A @ coef + stats.t.ppf(0.95, dof) * sigma
    violation = float(np.mean(ly > bound))
    return PowerLawFit(list(names), coef[1:], ci[1:], float(coef[0]), (float(ci[0, 0]), float(ci[0, 1])),
                       sigma, n, r2, violation)
