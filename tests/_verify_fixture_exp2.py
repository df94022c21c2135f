"""A second tiny complete study (not a paper experiment), so that tests of ``verify`` run two
studies on one pool of workers (tests/test_verify_pool.py).

A run draws ``n`` standard normal numbers and reports their mean, variance and second moment;
the claim says the variance and the second moment are 1 (log-scale ratio tests).

``VERIFY_FIXTURE2_FIGURE_FAIL=1`` in the environment makes ``figures`` raise (in any process).
"""
import os

from sketchsim.harness.claims import Claim, ratio_test
from sketchsim.harness.plots import band_plot, new_figure, save_figure

NAME = "verify_fixture2"
TITLE = "Fixture 2 — sample variance"
ORDER = 2
STATEMENT = "The sample variance of standard normal draws estimates 1 (fixture)."
PROFILES = {"quick": {"n": [100, 1000, 20000], "reps": 6},
            "full": {"n": [100, 1000, 20000, 100000], "reps": 4}}
FIGURES = ("verify_fixture2.png",)


def run_one(params, rng):
    x = rng.standard_normal(int(params["n"]))
    return {"mean": float(x.mean()), "var": float(x.var()), "m2": float(x @ x / len(x))}


def theory(params):
    return {"var": 1.0}


def claims(df):
    return [Claim("fixture2.var", family=None, depth=None, note=f"{len(df)} runs", tests=[
        ratio_test("var", "sample variance / 1", df["m_var"]),
        ratio_test("m2", "second moment / 1", df["m_m2"]),
    ])]


def figures(df, outdir):
    if os.environ.get("VERIFY_FIXTURE2_FIGURE_FAIL"):
        raise RuntimeError("fixture 2: figures fail on purpose")
    fig, (ax,) = new_figure()
    band_plot(ax, df, "p_n", "m_var", logy=False)
    ax.set_xlabel("n (draws)")
    ax.set_ylabel("sample variance")
    return [save_figure(fig, os.path.join(outdir, "verify_fixture2.png"))]
