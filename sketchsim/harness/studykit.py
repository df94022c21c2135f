"""Shared helpers of the studies in ``experiments/`` (one place; no study imports another).

Bank construction and grid skips per family, attribute draws, family labels, power-law fits that
refuse unidentifiable rows, markdown tables and warning control. Studies import these from here;
a helper needed by two studies belongs here, not in either study.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

import sketchsim as ss
from sketchsim._validation import min_block_size

from .claims import PAPER_FAMILIES, SUBSTITUTE_FAMILIES

TOL_EXPONENT = 0.1
"""Kept for the detail tables; the verdict rule's tolerance is :data:`claims.EXPONENT_TOL`."""
FAMILY_ORDER = PAPER_FAMILIES + SUBSTITUTE_FAMILIES
"""Report order of the families: the paper's, then the substitute."""


def lmax_median(L):
    """Median of max_{j ≤ L} |Z_j| for i.i.d. standard normal Z_j: Φ⁻¹((1 + 2^{−1/L})/2).

    The predicted normalised ℓ∞ error when the L decoded coordinates carry independent
    N(0, σ²) noise with σ = theory.noise_level (THEORY.md §2.4).
    """
    from scipy.stats import norm

    return float(norm.ppf((1.0 + 0.5 ** (1.0 / int(L))) / 2.0))


def unit_nonneg(rng, L):
    """A nonnegative unit-ℓ2 attribute vector of length L drawn from ``rng``."""
    v = np.abs(rng.standard_normal(int(L)))
    return v / np.linalg.norm(v)


def bank_skip(params, dense_max=2048):
    """(skip, reason) for grid points whose family cannot take d (or is too slow there)."""
    fam = params["family"]
    d = int(params["d_sketch"])
    if fam == "hadamard" and d & (d - 1):
        return True, f"hadamard needs a power of two; got d={d}"
    if fam in ("haar", "gaussian") and d > dense_max:
        return True, f"dense family {fam} is limited to d ≤ {dense_max} (QR / memory cost)"
    if fam == "block-sparse":
        b, q = params.get("block_size"), params.get("block_prob")
        if b is None or q is None:
            return True, "block-sparse needs block_size and block_prob"
        b = int(b)
        if d % b:
            return True, f"d={d} is not a multiple of b={b}"
        if b < min_block_size(d) or b % 3:
            return True, f"b={b} is below the minimum block size {min_block_size(d)} for d={d}"
        if float(q) * d / b < 4:
            return True, f"q·d/b = {float(q) * d / b:.2g} < 4 (empty columns, THEORY.md §3)"
    elif params.get("block_size") is not None or params.get("block_prob") is not None:
        return True, "block_size / block_prob apply to block-sparse only"
    return False, ""


def make_bank(params, rng):
    """The run's MatrixBank: family and d from ``params``, seed ``int(rng.integers(2**31))``."""
    fam = params["family"]
    seed = int(rng.integers(2 ** 31))
    kw = {}
    if fam == "block-sparse":
        kw = {"block_size": int(params["block_size"]), "block_prob": float(params["block_prob"])}
    return ss.MatrixBank(int(params["d_sketch"]), fam, seed, **kw)


def family_label(fam, b=None, q=None):
    """'hadamard', 'haar', … or 'block-sparse b=48 q=0.25'."""
    if fam == "block-sparse" and b is not None and not _isnan(b):
        return f"block-sparse b={int(b)} q={float(q):g}"
    return str(fam)


def _isnan(v):
    try:
        return math.isnan(float(v))
    except (TypeError, ValueError):
        return False


def family_labels(df):
    """Series of :func:`family_label` per row of a results table."""
    import pandas as pd

    b = df["p_block_size"] if "p_block_size" in df else pd.Series(np.nan, index=df.index)
    q = df["p_block_prob"] if "p_block_prob" in df else pd.Series(np.nan, index=df.index)
    return pd.Series([family_label(f, bb, qq) for f, bb, qq in zip(df["p_family"], b, q)],
                     index=df.index)


def fit_or_none(y, X, names):
    """:func:`sketchsim.harness.fitting.fit_power_law`, or None when the rows cannot identify the fit
    (fewer than 2 distinct values of a variable, or too few rows)."""
    from .fitting import fit_power_law

    y = np.asarray(y, dtype=float)
    X = np.asarray(X, dtype=float).reshape(len(y), -1)
    good = np.isfinite(y) & (y > 0) & np.all(np.isfinite(X) & (X > 0), axis=1)
    if good.sum() < X.shape[1] + 3:
        return None
    for k in range(X.shape[1]):
        if len(np.unique(X[good, k])) < 2:
            return None
    return fit_power_law(y[good], X[good], names)


def fmt_ci(ci, digits=3):
    return f"[{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def md_table(header, rows):
    """A markdown table from a header list and rows of already formatted cells."""
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def quiet_precondition():
    """Context manager that silences TheoremPreconditionWarning (deliberate settings)."""
    ctx = warnings.catch_warnings()

    class _Q:
        def __enter__(self):
            ctx.__enter__()
            warnings.simplefilter("ignore", ss.TheoremPreconditionWarning)

        def __exit__(self, *exc):
            return ctx.__exit__(*exc)

    return _Q()


def warm_up():
    """Compile the engine's Numba kernels before the first timed run."""
    with quiet_precondition():
        ss.warm_up()




def families_in(df):
    """Families present in a results table, in :data:`FAMILY_ORDER` (unknown ones last)."""
    fams = [f for f in df["p_family"].dropna().unique()] if "p_family" in df else []
    return [f for f in FAMILY_ORDER if f in fams] + sorted(f for f in fams if f not in FAMILY_ORDER)
