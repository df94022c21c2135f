"""Graceful erasure (paper §3.1, THEORY.md §4): error against the kept fraction d'/d.

Every run sketches one Theorem 1(i) graph (depth ``depth``, target weight ``weight``, built by
:func:`experiments.thm1_attributes.build_graph`) and decodes the target's attributes three times:

* ``full``: the whole sketch (:func:`sketchsim.decode.attributes`);
* ``prefix``: the d'-prefix kept by :func:`sketchsim.decode.erase` (the decoder rescales by d/d');
  for block-sparse, d' is a block boundary;
* ``random``: a uniformly random subset S of d' coordinates (drawn from the run's ``rng``): the
  erased coordinates are set to 0 and the decoder output is multiplied by d/|S|
  (:func:`random_subset_attributes`, THEORY.md §4).

Metrics: ℓ∞ and RMS errors of each, the ratios to the full-sketch error of the same sketch
(paired, so the sketch-to-sketch spread cancels), and the erased errors divided by
``theory.noise_level(‖s‖, d, h, w, keep=d')`` (normalised errors). Prediction: the error grows
by ``theory.erasure_factor(d, d') = √(d/d')``, for a prefix and a random subset alike.
"""
from __future__ import annotations

import os

import numpy as np

import sketchsim as ss
from sketchsim import decode
from sketchsim import theory as sst

from experiments.thm1_attributes import (ATTR_DIM, TOL_EXPONENT, bank_skip, build_graph,
                                         exponent_verdict, family_labels, fig_link, fit_or_none,
                                         fmt_ci, lmax_median, make_bank, md_table,
                                         quiet_precondition)
from experiments.thm1_attributes import warm_up  # noqa: F401  (contract: optional warm_up)

NAME = "erasure"
TITLE = "Graceful erasure — error against the kept fraction"
STATEMENT = (
    "**Graceful erasure (paper §3.1).** Keeping only the d'_sketch-prefix of the overall sketch "
    "yields a sketch with the same properties and a larger error; the abstract says the same of a "
    "fraction erased at random. Decoders read the kept coordinates and rescale by d/d' "
    "(THEORY.md §4); since δ → δ' = Õ(1/√d'), the error should grow by √(d/d') "
    "(`theory.erasure_factor`), for a prefix and a uniformly random subset alike.")

MODES = ("prefix", "random")
_FRACS_QUICK = [0.5, 0.25, 0.125, 0.0625, 0.03125]
_FRACS_FULL = _FRACS_QUICK + [0.015625]

PROFILES = {
    "quick": [
        {"family": ["hadamard"], "d_sketch": [2 ** 12, 2 ** 14, 2 ** 16], "keep_frac": _FRACS_QUICK,
         "weight": [0.4], "depth": [2], "reps": 8},
        {"family": ["haar"], "d_sketch": [256], "keep_frac": _FRACS_QUICK, "weight": [0.4],
         "depth": [2], "reps": 6},
        {"family": ["block-sparse"], "d_sketch": [3072], "block_size": [48], "block_prob": [0.25],
         "keep_frac": _FRACS_QUICK, "weight": [0.4], "depth": [2], "reps": 5},
    ],
    "full": [
        {"family": ["hadamard"], "d_sketch": [2 ** 14, 2 ** 16, 2 ** 18], "keep_frac": _FRACS_FULL,
         "weight": [0.4], "depth": [2], "reps": 12},
        {"family": ["haar"], "d_sketch": [512, 1024], "keep_frac": _FRACS_FULL, "weight": [0.4],
         "depth": [2], "reps": 6},
        {"family": ["gaussian"], "d_sketch": [1024], "keep_frac": _FRACS_FULL, "weight": [0.4],
         "depth": [2], "reps": 8},
        {"family": ["block-sparse"], "d_sketch": [6144], "block_size": [48], "block_prob": [0.25],
         "keep_frac": _FRACS_FULL, "weight": [0.4], "depth": [2], "reps": 8},
    ],
}


def keep_of(params):
    """d' = round(keep_frac · d)."""
    return int(round(float(params["keep_frac"]) * int(params["d_sketch"])))


def skip(params):
    bad, why = bank_skip(params)
    if bad:
        return bad, why
    f = float(params["keep_frac"])
    if not 0 < f < 1:
        return True, f"keep_frac must lie in (0, 1) (the full sketch is decoded in every run); got {f}"
    k = keep_of(params)
    if k < 1:
        return True, f"keep_frac·d = {k} < 1"
    if params["family"] == "block-sparse" and k % int(params["block_size"]):
        return True, f"d' = {k} is not a block boundary (b = {params['block_size']})"
    return False, ""


def random_subset_attributes(s, bank, module, depth, weight, keep, rng, length=None):
    """Theorem 1(i) decoder on a uniformly random subset of ``keep`` coordinates of ``s``.

    The erased coordinates are set to zero and the estimate is rescaled by d/|S| (THEORY.md §4:
    E[Rᵀ P_S R] = (|S|/d)·I for a uniformly random S and any fixed R). The subset is drawn from
    ``rng`` (``rng.choice(d, keep, replace=False)``).
    """
    d = bank.d_sketch
    S = rng.choice(d, int(keep), replace=False)
    masked = np.zeros(d)
    masked[S] = np.asarray(s, dtype=float)[S]
    return decode.attributes(masked, bank, module, depth, weight=weight, length=length) * (d / int(keep))


def run_one(params, rng):
    d = int(params["d_sketch"])
    h = int(params.get("depth", 2))
    w = float(params.get("weight", 0.4))
    L = int(params.get("attr_dim", ATTR_DIM))
    k = keep_of(params)
    with quiet_precondition():
        bank = make_bank(params, rng)
        g, _ = build_graph(h, w, "i", rng, L)
        s = ss.sketch(g, bank)
        x = g.attributes[g.index["t"]]
        w_eff = g.weight("t")
        est = {
            "full": decode.attributes(s, bank, "T", h, weight=w_eff, length=L),
            "prefix": decode.attributes(decode.erase(s, k, bank), bank, "T", h, weight=w_eff, length=L),
            "random": random_subset_attributes(s, bank, "T", h, w_eff, k, rng, length=L),
        }
    norm = float(np.linalg.norm(s))
    out = {"keep": float(k), "s_norm": norm, "w_eff": float(w_eff),
           "predicted_factor": sst.erasure_factor(d, k)}
    for key, xh in est.items():
        e = xh - x
        out[f"err_{key}"] = float(np.max(np.abs(e)))
        out[f"rms_{key}"] = float(np.sqrt(np.mean(e * e)))
    nl = sst.noise_level(norm, d, h, w_eff, keep=k)
    for m in MODES:
        out[f"ratio_{m}"] = out[f"err_{m}"] / out["err_full"]
        out[f"rms_ratio_{m}"] = out[f"rms_{m}"] / out["rms_full"]
        out[f"norm_err_{m}"] = out[f"err_{m}"] / nl
    out["norm_err_full"] = out["err_full"] / sst.noise_level(norm, d, h, w_eff)
    return {k: float(v) for k, v in out.items()}


def theory(params):
    d = int(params["d_sketch"])
    return {"erasure_factor": sst.erasure_factor(d, keep_of(params)),
            "median_norm_err": lmax_median(int(params.get("attr_dim", ATTR_DIM)))}


# ============================================================================ analysis
FIGURES = ("erasure_curves.png",)


def _rows(df):
    need = [f"m_ratio_{m}" for m in MODES] + ["m_err_full"]
    if not len(df) or any(c not in df for c in need):
        return df.iloc[0:0]
    sub = df.dropna(subset=need)
    sub = sub[(sub["p_keep_frac"] > 0) & (sub["p_keep_frac"] < 1)]
    return sub.assign(erased=1.0 / sub["p_keep_frac"], label=family_labels(sub))


def _fit(sub, col):
    return fit_or_none(sub[col], np.asarray(sub["erased"], dtype=float)[:, None], ["erased"])


def analyze(df):
    sub = _rows(df)
    base = {}
    qL = lmax_median(ATTR_DIM)
    lines = [
        "Setting: Theorem 1(i) decoder, depth 2, target weight 0.4, attributes of length "
        f"{ATTR_DIM}. Each run decodes the full sketch, its d'-prefix (`decode.erase`) and a "
        "uniformly random subset of d' coordinates (zeroed elsewhere, rescaled by d/d'); the ratio "
        "erased error / full error of the same sketch is fitted as ratio ≈ C·(d/d')^γ by log-log "
        "least squares over every family (95% t intervals). Prediction: γ = ½, C = 1. "
        f"**Verdict rule**: γ is consistent when its interval contains ½ or |γ − ½| < {TOL_EXPONENT}; "
        "C is consistent when its interval contains 1 or |C − 1| < 0.1. Violation rate: fraction "
        "of runs above the fitted 95% prediction bound."]
    if not len(sub):
        lines.append("\nNo erased runs: no fit.")
        return {"markdown": "\n".join(lines), "baselines": base}
    rows, verdicts = [], []
    for m in MODES:
        for metric, col in (("ℓ∞", f"m_ratio_{m}"), ("RMS", f"m_rms_ratio_{m}")):
            if col not in sub:
                continue
            f = _fit(sub, col)
            if f is None:
                continue
            g, gci = f.exponent("erased"), f.interval("erased")
            ok, txt = exponent_verdict(g, gci, 0.5)
            c_ok = (f.constant_ci[0] <= 1.0 <= f.constant_ci[1]) or abs(f.constant - 1) < 0.1
            rows.append([m, metric, f.n, f"{g:.3f} {fmt_ci(gci)}", f"{f.constant:.3f} {fmt_ci(f.constant_ci)}",
                         f"{f.violation_rate:.1%}", f"{f.r2:.3f}"])
            if metric == "ℓ∞":
                base.update({f"erasure.{m}.exponent": g, f"erasure.{m}.C": f.constant,
                             f"erasure.{m}.violation_rate": f.violation_rate})
                verdicts.append(f"- {m}: γ {txt}; C = {f.constant:.3f} → "
                                f"{'consistent' if c_ok else 'NOT consistent'} with 1.")
    lines += ["", md_table(["kept", "error", "runs", "γ [95%]", "C [95%]", "violation rate", "R²"], rows),
              "", *verdicts]
    # per family: median ratios against √(d/d')
    tab = []
    for (lab, e), g in sub.groupby(["label", "erased"], sort=True):
        tab.append([lab, f"{e:g}", len(g), f"{np.sqrt(e):.2f}", f"{g['m_ratio_prefix'].median():.2f}",
                    f"{g['m_ratio_random'].median():.2f}", f"{g['m_norm_err_prefix'].median():.2f}"])
    lines += ["", f"Median error ratios per family (normalised error = erased ℓ∞ error / "
              f"(√(d/d')·‖s‖/(c_h w √d)), predicted median q_L = {qL:.2f}):", "",
              md_table(["family", "d/d'", "runs", "√(d/d')", "prefix ratio", "random ratio",
                        "prefix normalised error"], tab)]
    # prefix vs random: paired comparison
    lr = np.log(sub["m_ratio_prefix"]) - np.log(sub["m_ratio_random"])
    gm = float(np.exp(lr.mean()))
    se = float(lr.std(ddof=1) / np.sqrt(len(lr))) if len(lr) > 1 else float("nan")
    lines += ["", f"Prefix vs random subset: geometric-mean ratio of their errors {gm:.3f} "
              f"(95% interval [{np.exp(lr.mean() - 1.96 * se):.3f}, {np.exp(lr.mean() + 1.96 * se):.3f}]); "
              "THEORY.md §4 predicts 1 (a prefix is statistically a random subset). Per family:"]
    prow = []
    for lab, idx in sub.groupby("label", sort=True).groups.items():
        v = lr.loc[idx]
        s_ = float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")
        prow.append([lab, len(v), f"{np.exp(v.mean()):.3f}",
                     f"[{np.exp(v.mean() - 1.96 * s_):.3f}, {np.exp(v.mean() + 1.96 * s_):.3f}]"])
    lines += ["", md_table(["family", "runs", "prefix / random error (geometric mean)", "95%"], prow)]
    base["erasure.prefix_over_random"] = gm
    for m in MODES:
        base[f"erasure.{m}.median_norm_err"] = float(sub[f"m_norm_err_{m}"].median())
    lines += ["", *[fig_link(n) for n in FIGURES]]
    return {"markdown": "\n".join(lines), "baselines": base}


def figures(df, outdir):
    import pandas as pd

    from sketchsim.harness.plots import band_plot, new_figure, reference_line, save_figure

    sub = _rows(df)
    if not len(sub):
        return []
    parts = []
    for m in MODES:
        p = sub[["erased", "label", f"m_ratio_{m}", f"m_norm_err_{m}"]].rename(
            columns={f"m_ratio_{m}": "ratio", f"m_norm_err_{m}": "norm_err"})
        p["mode"] = m
        parts.append(p)
    long = pd.concat(parts, ignore_index=True)
    fig, axes = new_figure(ncols=2, width=5.0, height=4.2)
    band_plot(axes[0], long, "erased", "ratio", hue="mode", label_fmt="{} (all families)")
    e = np.array(sorted(long["erased"].unique()), dtype=float)
    reference_line(axes[0], e, np.sqrt(e), label=r"theory $\sqrt{d/d'}$")
    axes[0].set_xlabel("d/d' (erased factor; d' = kept coordinates)")
    axes[0].set_ylabel("ℓ∞ error ratio, erased / full (dimensionless)")
    axes[0].set_title("graceful erasure: prefix vs random subset")
    axes[0].legend(fontsize=7)
    long["fm"] = long["label"] + " · " + long["mode"]
    band_plot(axes[1], long, "erased", "norm_err", hue="fm", logy=True)
    qL = lmax_median(ATTR_DIM)
    reference_line(axes[1], e, np.full(len(e), qL), label=f"theory q_L = {qL:.2f}")
    axes[1].set_xlabel("d/d' (erased factor)")
    axes[1].set_ylabel("normalised ℓ∞ error (noise units at d')")
    axes[1].set_title("error / (√(d/d')·‖s‖/(c_h w √d))")
    axes[1].legend(fontsize=6)
    return [save_figure(fig, os.path.join(outdir, FIGURES[0]))]
