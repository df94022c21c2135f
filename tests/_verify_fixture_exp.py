"""A tiny complete verification experiment for tests/test_verify.py (not a paper experiment).

Theorem 1(i) at depth 2 on a two-object network with the hadamard family; its analysis fits the
ℓ∞ error against d so the CI check has numbers whose regressions it must catch.
"""
import os
import warnings

import numpy as np

import sketchsim as ss
from sketchsim import decode
from sketchsim.harness.fitting import fit_power_law
from sketchsim.harness.plots import band_plot, new_figure, save_figure

NAME = "verify_fixture"
TITLE = "Fixture — Theorem 1(i) at depth 2"
STATEMENT = "Attribute recovery with O(δ/w) ℓ∞ error (fixture)."
PROFILES = {"quick": {"d_sketch": [1024, 4096, 16384], "reps": 3},
            "full": {"d_sketch": [1024, 4096, 16384, 65536], "reps": 4}}


def run_one(params, rng):
    d = int(params["d_sketch"])
    x = np.abs(rng.standard_normal(4))
    x /= np.linalg.norm(x)
    g = ss.Graph([{"id": "t", "module": "T", "attributes": x.tolist()},
                  {"id": "o", "module": "O", "attributes": [1.0]}],
                 [{"id": "t", "weight": 0.6}, {"id": "o", "weight": 0.4}])
    bank = ss.MatrixBank(d, "hadamard", int(rng.integers(2**31)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = ss.sketch(g, bank)
    est = decode.attributes(s, bank, "T", 2, weight=0.6, length=4)
    return {"err_inf": float(np.abs(est - x).max())}


def figures(df, outdir):
    fig, (ax,) = new_figure()
    band_plot(ax, df, "p_d_sketch", "m_err_inf")
    ax.set_xlabel("d_sketch (coordinates)")
    ax.set_ylabel("ℓ∞ error")
    return [save_figure(fig, os.path.join(outdir, "verify_fixture.png"))]


def analyze(df):
    fit = fit_power_law(df["m_err_inf"], df[["p_d_sketch"]].to_numpy(), ["d"])
    lo, hi = fit.interval("d")
    verdict = "consistent" if lo - 0.1 <= -0.5 <= hi + 0.1 else "not consistent"
    md = (f"α = {fit.exponent('d'):.3f} [{lo:.3f}, {hi:.3f}], C = {fit.constant:.3g}; verdict: {verdict}\n\n"
          "![fixture](../paper_figs/verify_fixture.png)")
    return {"markdown": md, "verdict": verdict,
            "baselines": {"alpha_d": fit.exponent("d"), "log_c": fit.log_c,
                          "median_err_1024": float(df[df.p_d_sketch == 1024].m_err_inf.median())}}
