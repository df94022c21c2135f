"""Graceful erasure (paper §3.1, THEORY.md §4): every decoder on an erased sketch.

Every run sketches one graph (:func:`sketchsim.harness.studykit.build_graph`: target ``t`` of the
unique module ``T`` at depth ``depth`` with effective weight ``weight``, two siblings of module
``U`` sharing the rest) and, with the same bank and structure, a partner sketch s̄ of the same
graph with fresh attributes (one :func:`sketchsim.sketch_batch` call). It keeps the d'-prefix,
d' = round(keep·d) (:func:`sketchsim.decode.erase`; a block boundary for block-sparse), and decodes:

* ``full`` / ``prefix``: Theorem 1(i) attributes of ``t`` from s and from its prefix
  (:func:`sketchsim.decode.attributes`, which rescales an erased sketch by d/d');
* ``random``: the same decoder on a uniformly random subset S of d' coordinates (erased entries set
  to 0, estimate multiplied by ``theory.erasure_rescale(d, d')`` = d/|S|, THEORY.md §4;
  :func:`random_subset_attributes`);
* ``path``: Theorem 1(ii) attributes of ``t`` along its index path from the prefix
  (:func:`sketchsim.decode.attributes_on_path`);
* ``count_t`` / ``count_u``: Theorem 3(i) counts of ``T`` (n = 1, w* = w) and ``U`` (n = 2, w* =
  the siblings' weight) from the prefix (:func:`sketchsim.decode.count`);
* ``sim``: the rescaled dot product of the two erased sketches (:func:`sketchsim.decode.similarity`)
  against the full sketches' dot product ⟨s, s̄⟩;
* ``obj``: the object sketch of ``t`` unrolled from the prefix (:func:`sketchsim.decode.object_sketch`),
  read by ``N_PROBES`` random unit probes u drawn independently of the matrices: ⟨u, ŝ⟩ against
  its expectation κ⟨u, s_object(t)⟩, κ = :func:`sketchsim.harness.studykit.coincidence_factor`
  (word-expansion prediction, > 1 when t's index is 1: see the ``unrolling`` study).

Every decoder's metrics (:func:`sketchsim.harness.studykit.decoder_metrics`) carry the predicted
noise level σ it is normalised and weighted by: the full-sketch level of THEORY.md §2.4
(``theory.noise_level`` for attributes and counts, ``theory.similarity_noise_level``, the object
sketch's ‖s‖/(2^{−(4h−7)} w √d)) times the predicted erasure growth ``theory.erasure_factor(d, d')``
= √(d/d'), so a wrong erasure constant moves the noise tests even where noise dominates.
"""
from __future__ import annotations

import math
import os

import numpy as np

import sketchsim as ss
from sketchsim import decode
from sketchsim import theory as sst
from sketchsim.harness.claims import Claim, pooled_slope_test, ratio_test, rms_ratio_test
from sketchsim.harness.studykit import (ATTR_DIM, bank_skip, bq_note, build_graph, family_depth_groups,
                                        split_noise_model,
                                        coincidence_factor, decoder_metrics, exponent_tests, family_labels, lmax_median,
                                        make_bank, md_table, noise_ratio_of, quiet_precondition,
                                        runs_note, slope_of, unit_nonneg)
from sketchsim.harness.studykit import warm_up  # noqa: F401  (contract: optional warm_up)

NAME = "erasure"
TITLE = "Graceful erasure — every decoder on a kept prefix"
ORDER = 40
STATEMENT = (
    "**Graceful erasure (paper §3.1).** Keeping only the d'_sketch-prefix of the overall sketch "
    "yields a sketch with the same properties and a larger error; the abstract says the same of a "
    "fraction erased at random. Decoders read the kept coordinates and rescale by d/d' "
    "(THEORY.md §4), which keeps them unbiased; since δ → δ' = Õ(1/√d'), every error should grow "
    "by √(d/d') (`theory.erasure_factor`), for a prefix and a uniformly random subset alike.")

N_SIBLINGS = 2
N_PROBES = 64
"""Random unit probes of the unrolled object sketch per run. A probe's signal-to-noise ratio is
2^{−(4h−7)} w ‖s_object‖/‖s‖·√(d'/d) ≈ 0.7·√(d'/d) at depth 2, independent of d, so the bias slope
needs many probes; 64 cost one 64 × d Gaussian draw."""
_KEEPS = [0.5, 0.25, 0.125, 0.0625]
_BS = {"block_size": [48], "block_prob": [0.25, 0.5]}

PROFILES = {
    # Dense banks cost d³ while the slope's information grows like d, so haar and gaussian use many
    # cheap runs at small d; hadamard and block-sparse resolve the slope at their smallest d already.
    "quick": [
        {"family": ["hadamard"], "d_sketch": [2 ** 12, 2 ** 14, 2 ** 16], "keep": _KEEPS,
         "weight": [0.8], "depth": [2], "reps": 2},
        {"family": ["haar"], "d_sketch": [128], "keep": _KEEPS, "weight": [0.8], "depth": [2],
         "reps": 24},
        {"family": ["gaussian"], "d_sketch": [256], "keep": _KEEPS, "weight": [0.8], "depth": [2],
         "reps": 12},
        {"family": ["block-sparse"], "d_sketch": [1536], **_BS, "keep": _KEEPS, "weight": [0.8],
         "depth": [2], "reps": 4},
    ],
    "full": [
        {"family": ["hadamard"], "d_sketch": [2 ** 12, 2 ** 14, 2 ** 16, 2 ** 18],
         "keep": _KEEPS + [0.03125], "weight": [0.8], "depth": [2], "reps": 4},
        {"family": ["hadamard"], "d_sketch": [2 ** 18, 2 ** 20], "keep": _KEEPS, "weight": [0.8],
         "depth": [3], "reps": 4},
        {"family": ["haar", "gaussian"], "d_sketch": [128, 256, 512], "keep": _KEEPS,
         "weight": [0.8], "depth": [2], "reps": 24},
        {"family": ["block-sparse"], "d_sketch": [1536, 3072, 6144], **_BS, "keep": _KEEPS,
         "weight": [0.8], "depth": [2], "reps": 3},
    ],
}

METHOD = (
    f"Setting: target of weight w (unique module T) with two siblings of module U, attributes of "
    f"length L = {ATTR_DIM}; the prefix keeps d' = keep·d coordinates (a block boundary for "
    "block-sparse). Each decoder is read on the prefix of the same sketch and compared with the truth "
    "(attributes, counts 1 and 2, the full sketches' dot product ⟨s, s̄⟩, probes of κ times the true "
    "object sketch, κ = E⟨ŝ, s_object⟩/‖s_object‖² from the word expansion, see `unrolling`). "
    "Noise levels σ are the full-sketch predictions of THEORY.md §2.4 times "
    "`theory.erasure_factor(d, d')` = √(d/d'). Tests per family and depth: **slope** — weighted "
    "least-squares slope of estimate on truth through the origin, pooled over runs and kept "
    "fractions, each run weighted by 1/σ² (predicted 1: the d/d' rescale keeps every decoder "
    "unbiased); **noise** — median normalised ℓ∞ error / q_L for attribute vectors, RMS of "
    "(estimate − truth)/σ with its χ² interval for scalars (counts, similarity), geometric mean of the "
    "per-run RMS probe error / its prediction for the object sketch (predicted 1); **γ** — exponent "
    "of d/d' of the erased RMS error in units of the full-sketch noise (predicted ½). The similarity's "
    "σ includes the exact sampling factor √((1 + ρ²)(1 − d'/d)) of a rescaled subset sum of "
    "two correlated rotated vectors (ρ = cosine of s and s̄; derived, not from THEORY.md).")


def keep_of(params):
    """d' = round(keep · d)."""
    return int(round(float(params["keep"]) * int(params["d_sketch"])))


def skip(params):
    bad, why = bank_skip(params)
    if bad:
        return bad, why
    if int(params.get("depth", 2)) not in (2, 3):
        return True, "depth must be 2 or 3"
    f = float(params["keep"])
    if not 0 < f < 1:
        return True, f"keep must lie in (0, 1) (the full sketch is decoded in every run); got {f}"
    k = keep_of(params)
    if k < 1:
        return True, f"keep·d = {k} < 1"
    if params["family"] == "block-sparse" and k % int(params["block_size"]):
        return True, f"d' = {k} is not a block boundary (b = {params['block_size']})"
    return False, ""


def random_subset_attributes(s, bank, module, depth, weight, keep, rng, length=None):
    """Theorem 1(i) decoder on a uniformly random subset of ``keep`` coordinates of ``s``.

    The erased coordinates are set to zero and the estimate is multiplied by
    ``theory.erasure_rescale(d, keep)`` = d/|S| (THEORY.md §4: E[Rᵀ P_S R] = (|S|/d)·I for a
    uniformly random S and any fixed R). The subset is drawn from ``rng``
    (``rng.choice(d, keep, replace=False)``).
    """
    d = bank.d_sketch
    S = rng.choice(d, int(keep), replace=False)
    masked = np.zeros(d)
    masked[S] = np.asarray(s, dtype=float)[S]
    return (decode.attributes(masked, bank, module, depth, weight=weight, length=length)
            * sst.erasure_rescale(d, int(keep)))


def run_one(params, rng):
    d = int(params["d_sketch"])
    h = int(params.get("depth", 2))
    w = float(params.get("weight", 0.8))
    L = int(params.get("attr_dim", ATTR_DIM))
    k = keep_of(params)
    ef = sst.erasure_factor(d, k)
    with quiet_precondition():
        bank = make_bank(params, rng)
        g, path = build_graph(h, w, rng, L, N_SIBLINGS, "U")
        partner = {oid: np.vstack([g.attributes[i], unit_nonneg(rng, L)]) for i, oid in enumerate(g.ids)}
        S, objs = ss.sketch_batch(g, bank, attributes=partner, return_objects=True)
        s, sbar, s_obj = S[0], S[1], objs["t"][0]
        x = g.attributes[g.index["t"]]
        w_t = g.weight("t")
        w_u = g.weight("s0")
        E, Ebar = decode.erase(s, k, bank), decode.erase(sbar, k, bank)
        full = decode.attributes(s, bank, "T", h, weight=w_t, length=L)
        pre = decode.attributes(E, bank, "T", h, weight=w_t, length=L)
        rnd = random_subset_attributes(s, bank, "T", h, w_t, k, rng, length=L)
        pth = decode.attributes_on_path(E, bank, path, "T", weight=w_t, length=L)
        n_t = decode.count(E, bank, "T", h, w_t)
        n_u = decode.count(E, bank, "U", h, w_u)
        sim = decode.similarity(E, Ebar).dot
        s_hat = decode.object_sketch(E, bank, path, weight=w_t)
    norm, nbar = float(np.linalg.norm(s)), float(np.linalg.norm(sbar))
    sig = sst.noise_level(norm, d, h, w_t)
    out = {"keep_coords": float(k), "s_norm": norm, "w_eff": float(w_t), "w_sibling": float(w_u),
           "erasure_factor": ef}
    out.update(decoder_metrics("full", full, x, sig))
    out.update(decoder_metrics("prefix", pre, x, sig * ef))
    out.update(decoder_metrics("random", rnd, x, sig * ef))
    out.update(decoder_metrics("path", pth, x, sig * ef))
    out.update(decoder_metrics("count_t", [n_t], [1.0], sig * ef))
    out.update(decoder_metrics("count_u", [n_u], [float(N_SIBLINGS)],
                               sst.noise_level(norm, d, h, w_u) * ef))
    dot = float(s @ sbar)
    rho = dot / (norm * nbar)
    out["cos_full"] = rho
    out.update(decoder_metrics("sim", [sim], [dot], sst.similarity_noise_level(norm, nbar, d) * ef
                               * math.sqrt((1.0 + rho * rho) * (1.0 - k / d))))
    # object sketch: probes drawn after (independently of) the bank; E⟨u, ŝ⟩ = κ⟨u, s_object⟩
    kappa = coincidence_factor(g, "t", path, w_t)
    U = rng.standard_normal((N_PROBES, d))
    U /= np.linalg.norm(U, axis=1, keepdims=True)
    pe, ps = U @ s_hat, kappa * (U @ s_obj)
    c_obj = sst.object_sketch_constant(h)
    on = float(np.linalg.norm(s_obj))
    psig = norm / (c_obj * w_t * math.sqrt(d)) * ef
    pred = math.sqrt(max(0.0, 1.0 - (c_obj * w_t * kappa * on / norm) ** 2 * (k / d)))
    out.update({"sxy_obj": float(pe @ ps), "sxx_obj": float(ps @ ps), "syy_obj": float(pe @ pe),
                "n_obj": float(N_PROBES), "sigma_obj": psig, "kappa": kappa,
                "probe_norm_err": float(np.sqrt(np.mean((pe - ps) ** 2))) / psig,
                "probe_norm_pred": pred, "obj_norm": on})
    return {key: float(v) for key, v in out.items()}


def theory(params):
    d = int(params["d_sketch"])
    return {"erasure_factor": sst.erasure_factor(d, keep_of(params)),
            "erasure_rescale": sst.erasure_rescale(d, keep_of(params)),
            "median_norm_err": lmax_median(int(params.get("attr_dim", ATTR_DIM)))}


# ============================================================================ claims
_SLOPE_SRC = "THEORY §4: the d/d' rescale keeps every decoder unbiased"


def _groups(df):
    return family_depth_groups(df, ("p_family", "p_depth", "p_keep", "p_d_sketch", "m_err_prefix",
                                    "m_sigma_prefix"))


def _note(rows, extra=()):
    n = runs_note(rows)
    ks = "keep d'/d ∈ {" + ", ".join(f"{v:g}" for v in sorted(rows["p_keep"].unique())) + "}"
    return "; ".join(p for p in [n, ks, bq_note(rows), *extra] if p)


def _pooled(rows, keys, test_key, label):
    cols = ("sxy", "sxx", "syy", "n", "sigma")
    arr = {c: np.concatenate([rows[f"m_{c}_{k}"].to_numpy(float) for k in keys]) for c in cols}
    return pooled_slope_test(test_key, label, arr["sxy"], arr["sxx"], arr["syy"], arr["n"],
                             weights=1.0 / arr["sigma"] ** 2, source=_SLOPE_SRC)


def claims(df):
    out = []
    for fam, h, rows in _groups(df):
        # attributes (Theorem 1(i)): prefix and random subset
        y_pre = rows["m_rms_err_prefix"] / rows["m_sigma_full"]
        y_rnd = rows["m_rms_err_random"] / rows["m_sigma_full"]
        inv = rows.assign(erased=1.0 / rows["p_keep"])
        gp, notes = exponent_tests(inv, y_pre, [("erased", "d/d'", 0.5, "gamma_prefix",
                                                 "γ, exponent of d/d' (prefix RMS error / full noise)",
                                                 "paper §3.1 / THEORY §4: error ∝ √(d/d')", 3)])
        gr, _ = exponent_tests(inv, y_rnd, [("erased", "d/d'", 0.5, "gamma_random",
                                             "γ, exponent of d/d' (random-subset RMS error / full noise)",
                                             "THEORY §4: error ∝ √(d/d')", 3)])
        out.append(Claim("erasure", fam, h, [
            slope_of(rows, "prefix", "slope_prefix", "slope of x̂ on x, prefix (weighted 1/σ²)", _SLOPE_SRC),
            slope_of(rows, "random", "slope_random", "slope of x̂ on x, random subset (weighted 1/σ²)",
                     _SLOPE_SRC),
            noise_ratio_of(rows, "prefix", ATTR_DIM, "noise_prefix",
                           "median normalised ℓ∞ error / q_L, prefix"),
            noise_ratio_of(rows, "random", ATTR_DIM, "noise_random",
                           "median normalised ℓ∞ error / q_L, random subset"),
            *gp, *gr], note=_note(rows, ["Theorem 1(i) decoder"] + notes)))
        out.append(Claim("erasure.path", fam, h, [
            slope_of(rows, "path", "slope", "slope of x̂ on x, path decoder on the prefix", _SLOPE_SRC),
            noise_ratio_of(rows, "path", ATTR_DIM, "noise", "median normalised ℓ∞ error / q_L")],
            note=_note(rows, ["Theorem 1(ii) decoder (all-tuple word)"])))
        zc = np.concatenate([((rows[f"m_sxy_{k}"] / rows[f"m_sxx_{k}"] - 1.0) * np.sqrt(rows[f"m_sxx_{k}"])
                              / rows[f"m_sigma_{k}"]).to_numpy(float) for k in ("count_t", "count_u")])
        out.append(Claim("erasure.count", fam, h, [
            _pooled(rows, ("count_t", "count_u"), "slope", "slope of n̂ on n (n = 1 and 2, weighted 1/σ²)"),
            rms_ratio_test("noise", "RMS of (n̂ − n)/σ", zc,
                           source="THEORY §2.4, §4: sd of n̂ = ‖s‖/(c_h w* √d)·√(d/d')")],
            note=_note(rows, ["Theorem 3(i) counts of T (n = 1) and U (n = 2)"])))
        zs = ((rows["m_sxy_sim"] / rows["m_sxx_sim"] - 1.0) * np.sqrt(rows["m_sxx_sim"])
              / rows["m_sigma_sim"]).to_numpy(float)
        out.append(Claim("erasure.similarity", fam, h, [
            slope_of(rows, "sim", "slope", "slope of (d/d')⟨Ps, Ps̄⟩ on ⟨s, s̄⟩ (weighted 1/σ²)", _SLOPE_SRC),
            rms_ratio_test("noise", "RMS of ((d/d')⟨Ps, Ps̄⟩ − ⟨s, s̄⟩)/σ", zs,
                           source="σ = ‖s‖‖s̄‖/√d·√(d/d')·√((1+ρ²)(1−d'/d))")],
            note=_note(rows, [f"median cosine ρ(s, s̄) = {rows['m_cos_full'].median():.2f}"])))
        out.append(Claim("erasure.object", fam, h, [
            slope_of(rows, "obj", "slope", "slope of ⟨u, ŝ⟩ on κ⟨u, s_object⟩ (probes, weighted 1/σ²)",
                     "recursive-sketch property on an erased sketch"),
            ratio_test("noise", "RMS probe error / predicted (geometric mean)",
                       rows["m_probe_norm_err"] / rows["m_probe_norm_pred"],
                       source="σ = ‖s‖/(2^{-(4h-7)} w √d)·√(d/d')")],
            note=_note(rows, [f"{N_PROBES} random unit probes per run"])))
    return [part for c in out for part in split_noise_model(c)]


def details(df):
    groups = _groups(df)
    if not groups:
        return ""
    qL = lmax_median(ATTR_DIM)
    tab = []
    for fam, h, rows in groups:
        for kf, g in rows.groupby("p_keep", sort=False):
            tab.append([fam, h, f"{1 / kf:g}", len(g), f"{math.sqrt(1 / kf):.2f}",
                        f"{(g['m_err_prefix'] / g['m_err_full']).median():.2f}",
                        f"{(g['m_err_random'] / g['m_err_full']).median():.2f}",
                        f"{g['m_norm_err_prefix'].median() / qL:.2f}",
                        f"{g['m_norm_err_path'].median() / qL:.2f}",
                        f"{(g['m_sxy_sim'] / g['m_sxx_sim']).median():.3f}"])
    lr = np.log(pd_concat([r["m_err_prefix"] / r["m_err_random"] for _, _, r in groups]))
    gm = float(np.exp(lr.mean()))
    return ("Per family, depth and erased factor d/d' (medians over runs): ℓ∞ error ratios erased/full "
            "of the same sketch (predicted √(d/d')), normalised errors / q_L of the prefix attribute and "
            f"path decoders (predicted 1, q_L = {qL:.3f}), and the per-run ratio of the erased to the full "
            "dot product (predicted 1). Prefix vs random subset, all runs: geometric-mean error ratio "
            f"{gm:.3f} (THEORY.md §4 predicts 1 for rotation-invariant families).\n\n"
            + md_table(["family", "depth", "d/d'", "runs", "√(d/d')", "prefix / full", "random / full",
                        "prefix norm. err / q_L", "path norm. err / q_L", "sim erased / full"], tab))


def pd_concat(parts):
    import pandas as pd

    return pd.concat(parts) if parts else pd.Series(dtype=float)


# ============================================================================ figures
FIGURES = ("erasure_curves.png", "erasure_decoders.png")


def figures(df, outdir):
    import pandas as pd

    from sketchsim.harness.plots import band_plot, new_figure, reference_line, save_figure

    groups = _groups(df)
    if not groups:
        return []
    sub = pd.concat([r for _, _, r in groups])
    sub = sub.assign(erased=1.0 / sub["p_keep"], label=family_labels(sub))
    paths = []
    parts = []
    for m in ("prefix", "random"):
        p = sub[["erased", "label"]].copy()
        p["ratio"] = sub[f"m_err_{m}"] / sub["m_err_full"]
        p["norm_err"] = sub[f"m_norm_err_{m}"]
        p["mode"] = m
        parts.append(p)
    long = pd.concat(parts, ignore_index=True)
    qL = lmax_median(ATTR_DIM)
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
    reference_line(axes[1], e, np.full(len(e), qL), label=f"theory q_L = {qL:.2f}")
    axes[1].set_xlabel("d/d' (erased factor)")
    axes[1].set_ylabel("normalised ℓ∞ error err/σ (noise units at d')")
    axes[1].set_title("error / (√(d/d')·‖s‖/(c_h w √d))")
    axes[1].legend(fontsize=6)
    paths.append(save_figure(fig, os.path.join(outdir, FIGURES[0])))
    # per-run slope estimate/truth of every decoder against d/d'
    parts = []
    for key, lab in (("prefix", "attributes (i)"), ("path", "path (ii)"), ("count_t", "count T"),
                     ("count_u", "count U"), ("sim", "similarity"), ("obj", "object probes")):
        p = sub[["erased"]].copy()
        p["slope"] = sub[f"m_sxy_{key}"] / sub[f"m_sxx_{key}"]
        p["decoder"] = lab
        parts.append(p)
    long = pd.concat(parts, ignore_index=True)
    fig, (ax,) = new_figure(width=6.0, height=4.2)
    band_plot(ax, long, "erased", "slope", hue="decoder", logy=False)
    reference_line(ax, e, np.ones(len(e)), label="theory: unbiased (1)")
    ax.set_ylim(-0.5, 2.5)
    ax.set_xlabel("d/d' (erased factor)")
    ax.set_ylabel("per-run estimate / truth (Σ est·truth / Σ truth²)")
    ax.set_title("every decoder after erasure (all families)")
    ax.legend(fontsize=7)
    paths.append(save_figure(fig, os.path.join(outdir, FIGURES[1])))
    return paths
