"""A tiny complete study for tests/test_verify.py and tests/test_cli.py (not a paper experiment).

Theorem 1(i) at depth 2 on a two-object network with the hadamard family (fast at every d). Its
claims follow the study contract of experiments/README.md:

* ``fixture.rate`` (per family and depth): the RMS error of the decoded attributes falls as
  d^{-1/2} (an exponent test);
* ``fixture.bias`` (spanning the families, so that it decides its headline): the decoded
  attributes are unbiased — the slope of x̂ on x is 1 (a slope test) and the gain ⟨x̂, x⟩/‖x‖² is 1
  (a log-scale ratio test).

A decoder whose depth constant is off by a factor 2 halves x̂: both ``fixture.bias`` tests and the
exponent (the error no longer falls with d) turn "not consistent".
"""
import os
import warnings

import numpy as np

import sketchsim as ss
from sketchsim import decode
from sketchsim.harness.claims import Claim, exponent_test, ratio_test, slope_test
from sketchsim.harness.fitting import fit_power_law
from sketchsim.harness.plots import band_plot, new_figure, save_figure

NAME = "verify_fixture"
TITLE = "Fixture — Theorem 1(i) at depth 2"
ORDER = 1
STATEMENT = "Attribute recovery with O(δ/w) ℓ∞ error (fixture)."
METHOD = "Two objects (weights 0.6 and 0.4), attributes of length 16, hadamard banks."
LENGTH = 16
PAIRS = 4  # est_k / true_k pairs stored per run for the slope test
PROFILES = {"quick": {"family": ["hadamard"], "d_sketch": [1024, 4096, 16384], "reps": 5},
            "full": {"family": ["hadamard"], "d_sketch": [1024, 4096, 16384, 65536], "reps": 2}}
FIGURES = ("verify_fixture.png",)


def run_one(params, rng):
    d = int(params["d_sketch"])
    x = np.abs(rng.standard_normal(LENGTH))
    x /= np.linalg.norm(x)
    g = ss.Graph([{"id": "t", "module": "T", "attributes": x.tolist()},
                  {"id": "o", "module": "O", "attributes": [1.0]}],
                 [{"id": "t", "weight": 0.6}, {"id": "o", "weight": 0.4}])
    bank = ss.MatrixBank(d, params["family"], int(rng.integers(2**31)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = ss.sketch(g, bank)
    est = decode.attributes(s, bank, "T", 2, weight=0.6, length=LENGTH)
    out = {"err_inf": float(np.abs(est - x).max()),
           "err_rms": float(np.sqrt(np.mean((est - x) ** 2))),
           "gain": float(est @ x / (x @ x))}
    for k in range(PAIRS):
        out[f"est_{k}"] = float(est[k])
        out[f"true_{k}"] = float(x[k])
    return out


def _pairs(df):
    est = np.concatenate([df[f"m_est_{k}"].to_numpy(float) for k in range(PAIRS)])
    true = np.concatenate([df[f"m_true_{k}"].to_numpy(float) for k in range(PAIRS)])
    return est, true


def claims(df):
    out = []
    for fam in sorted(df["p_family"].unique()):
        g = df[df["p_family"] == fam]
        fit = None
        if g["p_d_sketch"].nunique() >= 2:
            fit = fit_power_law(g["m_err_rms"], g[["p_d_sketch"]].to_numpy(), ["d"])
        out.append(Claim("fixture.rate", family=fam, depth=2, note=f"{len(g)} runs", tests=[
            exponent_test("alpha_d", "α, exponent of d", fit, "d", -0.5,
                          source="Theorem 1: δ ∝ d^-1/2")]))
    est, true = _pairs(df)
    out.append(Claim("fixture.bias", family=None, depth=2, tests=[
        slope_test("slope", "slope of x̂ on x", est, true),
        ratio_test("gain", "⟨x̂, x⟩/‖x‖²", df["m_gain"]),
    ]))
    return out


def figures(df, outdir):
    fig, (ax,) = new_figure()
    band_plot(ax, df, "p_d_sketch", "m_err_rms")
    ax.set_xlabel("d_sketch (coordinates)")
    ax.set_ylabel("RMS error")
    return [save_figure(fig, os.path.join(outdir, "verify_fixture.png"))]


def details(df):
    med = df.groupby("p_d_sketch")["m_err_rms"].median()
    rows = "\n".join(f"| {int(d)} | {v:.4f} |" for d, v in med.items())
    return "| d | median RMS error |\n|---|---|\n" + rows
