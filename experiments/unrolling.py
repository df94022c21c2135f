"""Unrolling: the recursive-sketch property (paper §1, §3.3; THEORY.md §2.2).

Every run sketches a depth-3 tree (:func:`build_tree`: the output holds two objects of module
``P``, each holding two objects of module ``Q``; positions shuffled with ``rng``) and recovers the
sketch of one inner object θ at depth ``depth`` (2: a ``P`` object, which has inputs of its own;
3: a ``Q`` object below it) from the overall sketch alone:

    ŝ = decode.object_sketch(s, bank, path, weight=w_path) = A_objᵀ s / (w_path·2^{−(4h−7)}),

and compares it with the true s_object(θ) (:func:`sketchsim.sketch_objects`) the two ways
THEORY.md §2.2 calls meaningful:

* **probes** (``probe``): ⟨u, ŝ⟩ against its expectation κ⟨u, s_object⟩ for ``N_PROBES`` random
  unit probes u drawn independently of the matrices, where ``kappa`` = κ =
  :func:`sketchsim.harness.studykit.coincidence_factor` is the word-expansion prediction of
  E⟨ŝ, s_object⟩/‖s_object‖² (κ ≈ 1.29 when the index i_1 = 1 coincides with the slot matrix R_1 of
  s_object, ≈ 1.01 for i_1 = 2: THEORY.md §2.3's pitfall for object sketches); the bias-test sums
  ``sxy_probe`` = Σ_u ⟨u, ŝ⟩·κ⟨u, s_object⟩, ``sxx_probe``, ``syy_probe``, ``n_probe`` and
  ``sigma_probe`` = ‖s‖/(2^{−(4h−7)} w √d), the predicted sd of ⟨u, ŝ − κ s_object⟩;
  ``probe_norm_err`` = RMS_u ⟨u, ŝ − κ s_object⟩/sigma_probe, predicted ``probe_norm_pred`` =
  √(1 − (2^{−(4h−7)} w κ ‖s_object‖/‖s‖)²) (‖ŝ‖ = ‖s‖/(2^{−(4h−7)} w) for orthonormal matrices and
  the signal κ s_object is not part of the noise);
* **attribute through the R_1-slot branch** (``attr``): x̂ = 16·R_{M,1}ᵀ R_1ᵀ ŝ against the true
  x_θ, with the metrics of :func:`sketchsim.harness.studykit.decoder_metrics` and σ =
  theory.noise_level(‖s‖, d, h, w) (the read-out equals the path decoder, THEORY.md §2.2);
  ``attr_path_mismatch`` = max |x̂ − attributes_on_path(s, column_norm=False)| (algebraically 0).

``vec_rel_err`` = ‖ŝ − s_object‖/‖s_object‖ is recorded to show why the vectors themselves are not
compared: the coincidence and crosstalk terms carry ‖s‖/(2^{−(4h−7)} w) ≫ ‖s_object‖ of norm,
independently of d.
"""
from __future__ import annotations

import math
import os

import numpy as np

import sketchsim as ss
from sketchsim import decode
from sketchsim import theory as sst
from sketchsim.harness.claims import Claim, ratio_test
from sketchsim.harness.studykit import (ATTR_DIM, bank_skip, bq_note, family_depth_groups, graph_builder,
                                        split_noise_model, coincidence_factor,
                                        decoder_metrics, exponent_tests, family_labels, lmax_median,
                                        make_bank, md_table, noise_ratio_of, quiet_precondition,
                                        runs_note, slope_of)
from sketchsim.harness.studykit import warm_up  # noqa: F401  (contract: optional warm_up)
from sketchsim.matrices import module_name, tuple_name

NAME = "unrolling"
TITLE = "Unrolling — the recursive-sketch property"
ORDER = 50
STATEMENT = (
    "**Recursive-sketch property (paper §1, §3.3).** From the overall sketch one can recover a "
    "functional approximation of the sketch of any inner object, given its index path: "
    "ŝ = A_objᵀ s/(w_path·2^{−(4h−7)}) with A_obj = R_{i_1} R_2 R_{i_2} ⋯ R_2 R_{i_{h−1}} "
    "(THEORY.md §2.2), so that ⟨u, ŝ⟩ ≈ ⟨u, s_object⟩ for probes u independent of the matrices "
    "and ŝ can be queried like an object sketch through its R_1 / R_2 slot branches "
    "(16·R_{M,1}ᵀR_1ᵀŝ ≈ x_θ). Both read-outs are unbiased, with errors ∝ d^{−1/2}.")

N_PROBES = 64
"""Random unit probes per run, capped at ``PROBE_BUDGET // d`` (at least 4) to bound the cost of the
draw (a probe's signal-to-noise ratio, 2^{−(4h−7)} w ‖s_object‖/‖s‖, does not grow with d: ≈ 0.9 at
depth 2 and ≈ 0.04 at depth 3 here)."""
PROBE_BUDGET = 2 ** 22
TOP_WEIGHTS = (0.9, 0.1)
INNER_WEIGHTS = (0.9, 0.1)
PROBE_SLOPE_DEPTHS = (2,)
"""Depths whose claims carry the probe slope: at depth 3 a probe's signal-to-noise ratio is ≈ 0.04,
so the slope would need ~10^5 probes per claim; the slot read-out carries the depth-3 bias test."""

_BS = {"block_size": [48], "block_prob": [0.25, 0.5]}
PROFILES = {
    "quick": [
        {"family": ["hadamard"], "d_sketch": [2 ** 10, 2 ** 12, 2 ** 14, 2 ** 16], "depth": [2],
         "reps": 4},
        {"family": ["hadamard"], "d_sketch": [2 ** 12, 2 ** 14, 2 ** 16], "depth": [3], "reps": 3},
        {"family": ["hadamard"], "d_sketch": [2 ** 18], "depth": [3], "reps": 8},
        {"family": ["haar", "gaussian"], "d_sketch": [64, 128, 256, 512], "depth": [2], "reps": 4},
        {"family": ["haar", "gaussian"], "d_sketch": [64, 128, 256], "depth": [3], "reps": 5},
        {"family": ["block-sparse"], "d_sketch": [768, 1536, 3072], **_BS, "depth": [2], "reps": 3},
        {"family": ["block-sparse"], "d_sketch": [768, 1536], **_BS, "depth": [3], "reps": 4},
    ],
    "full": [
        {"family": ["hadamard"], "d_sketch": [2 ** 10, 2 ** 12, 2 ** 14, 2 ** 16, 2 ** 18],
         "depth": [2], "reps": 6},
        {"family": ["hadamard"], "d_sketch": [2 ** 12, 2 ** 14, 2 ** 16, 2 ** 18, 2 ** 20],
         "depth": [3], "reps": 6},
        {"family": ["haar", "gaussian"], "d_sketch": [64, 128, 256, 512, 1024], "depth": [2, 3],
         "reps": 8},
        {"family": ["haar", "gaussian"], "d_sketch": [2048], "depth": [2, 3], "reps": 3},
        {"family": ["block-sparse"], "d_sketch": [768, 1536, 3072, 6144], **_BS, "depth": [2, 3],
         "reps": 4},
    ],
}

METHOD = (
    "Setting: a depth-3 tree (two module-P objects under the output with weights "
    f"{TOP_WEIGHTS[0]}/{TOP_WEIGHTS[1]}, two module-Q objects under each, "
    f"{INNER_WEIGHTS[0]}/{INNER_WEIGHTS[1]} under the target's parent); the target is the heavier "
    f"P object (depth 2, w_path = {TOP_WEIGHTS[0]}, it has inputs) or its heavier Q input (depth 3, "
    f"w_path = {TOP_WEIGHTS[0] * INNER_WEIGHTS[0]:g}); attributes of length L = {ATTR_DIM}. "
    "ŝ = `decode.object_sketch(s, bank, path, weight=w_path)`; "
    f"{N_PROBES} random unit probes per run (fewer above d = 2^16), drawn independently of the matrices. Tests per family "
    "and depth: **slope_attr** — weighted least-squares slope of the slot read-out "
    "16·R_{M,1}ᵀR_1ᵀŝ on x through the origin, each run weighted by 1/σ² with σ = "
    "`theory.noise_level(‖s‖, d, h, w)` (predicted 1); **noise_attr** — median normalised ℓ∞ "
    "error of that read-out / q_L (predicted 1); **α** — exponent of d of its RMS error/‖s‖ "
    "(predicted −½, with ≥ 3 values of d); **slope_probe** (depth 2 only, see PROBE_SLOPE_DEPTHS) "
    "— slope of ⟨u, ŝ⟩ on κ⟨u, s_object⟩ pooled over probes and runs, weighted by 1/σ_u² with σ_u = "
    "‖s‖/(2^{−(4h−7)} w √d) (predicted 1); κ = E⟨ŝ, s_object⟩/‖s_object‖² is computed per run from "
    "the word expansions of s and s_object (THEORY.md §2.1): the literal ŝ is *not* an unbiased "
    "functional approximation when an index matrix R_{i_ℓ} coincides with a slot matrix R_1/R_2 of "
    "s_object (κ ≈ 1.29 for i_1 = 1 at depth 2, measured 1.29; see the table below), the object-sketch "
    "form of the pitfall of THEORY.md §2.3; **noise_probe** — geometric mean over runs of the RMS "
    "probe error ⟨u, ŝ − κ s_object⟩ / σ_u·√(1 − (2^{−(4h−7)} w κ ‖s_object‖/‖s‖)²) (predicted 1). "
    "The whole vector ŝ is not compared with s_object: its coincidence terms do not shrink with d "
    "(THEORY.md §2.2).")


def build_tree(rng, L=ATTR_DIM):
    """Depth-3 tree: output → (a, b) of module P; a → (c, e), b → (f, g) of module Q.

    Weights ``TOP_WEIGHTS`` (a, b) and ``INNER_WEIGHTS`` (c, e); (f, g) ½ each; positions shuffled.
    Returns the Graph; the targets are ``a`` (depth 2) and ``c`` (depth 3).
    """
    objects = []
    obj, shuffled = graph_builder(objects, rng, L)
    for oid in "cefg":
        obj(oid, "Q")
    obj("a", "P", shuffled([{"id": "c", "weight": INNER_WEIGHTS[0]}, {"id": "e", "weight": INNER_WEIGHTS[1]}]))
    obj("b", "P", shuffled([{"id": "f", "weight": 0.5}, {"id": "g", "weight": 0.5}]))
    out = shuffled([{"id": "a", "weight": TOP_WEIGHTS[0]}, {"id": "b", "weight": TOP_WEIGHTS[1]}])
    return ss.Graph(objects, out)


def n_probes(d):
    """Probes of a run at dimension d: min(N_PROBES, max(4, PROBE_BUDGET // d))."""
    return int(min(N_PROBES, max(4, PROBE_BUDGET // int(d))))


def skip(params):
    if int(params["depth"]) not in (2, 3):
        return True, "depth must be 2 or 3"
    if int(params.get("attr_dim", ATTR_DIM)) > int(params["d_sketch"]):
        return True, "the attribute length must not exceed d_sketch"
    return bank_skip(params)


def _slot_readout(bank, module, v, L):
    """16·R_{M,1}ᵀ R_1ᵀ v, truncated to L: an object sketch's attribute through its R_1 slot."""
    return 16.0 * bank.get(module_name(module, 1)).apply_t(bank.get(tuple_name(1)).apply_t(v))[:L]


def run_one(params, rng):
    d = int(params["d_sketch"])
    h = int(params["depth"])
    L = int(params.get("attr_dim", ATTR_DIM))
    with quiet_precondition():
        bank = make_bank(params, rng)
        g = build_tree(rng, L)
        target = "a" if h == 2 else "c"
        module = g.module(target)
        path = g.paths(target)[0]
        w = g.weight(target)
        objs, s = ss.sketch_objects(g, bank, return_overall=True)
        s_obj = objs[target]
        s_hat = decode.object_sketch(s, bank, path, weight=w)
        x = g.attributes[g.index[target]]
        x_hat = _slot_readout(bank, module, s_hat, L)
        x_path = decode.attributes_on_path(s, bank, path, module, weight=w, length=L, column_norm=False)
    on, sn = float(np.linalg.norm(s_obj)), float(np.linalg.norm(s))
    kappa = coincidence_factor(g, target, path, w)
    K = n_probes(d)
    U = rng.standard_normal((K, d))                 # probes drawn after (independent of) the bank
    U /= np.linalg.norm(U, axis=1, keepdims=True)
    pe, ps = U @ s_hat, kappa * (U @ s_obj)         # truth: E⟨u, ŝ⟩ = κ⟨u, s_object⟩
    c_obj = sst.object_sketch_constant(h)
    probe_sd = sn / (math.sqrt(d) * c_obj * w)
    out = {"w_path": float(w), "s_norm": sn, "obj_norm": on, "kappa": kappa,
           "sxy_probe": float(pe @ ps), "sxx_probe": float(ps @ ps), "syy_probe": float(pe @ pe),
           "n_probe": float(K), "sigma_probe": probe_sd,
           "probe_norm_err": float(np.sqrt(np.mean((pe - ps) ** 2))) / probe_sd,
           "probe_norm_pred": float(np.sqrt(max(0.0, 1.0 - (c_obj * w * kappa * on / sn) ** 2))),
           "probe_signal": float(np.sqrt(np.mean((U @ s_obj) ** 2))) / on,
           "vec_rel_err": float(np.linalg.norm(s_hat - s_obj)) / on,
           "attr_path_mismatch": float(np.max(np.abs(x_hat - x_path)))}
    out.update(decoder_metrics("attr", x_hat, x, sst.noise_level(sn, d, h, w)))
    return {k: float(v) for k, v in out.items()}


def theory(params):
    h = int(params["depth"])
    return {"object_sketch_constant": sst.object_sketch_constant(h), "probe_norm_err": 1.0,
            "attr_median_norm_err": lmax_median(int(params.get("attr_dim", ATTR_DIM))), "slope": 1.0}


# ============================================================================ claims
def _groups(df):
    return family_depth_groups(df, ("p_family", "p_depth", "p_d_sketch", "m_sxy_attr", "m_sxy_probe"))


def claims(df):
    out = []
    for fam, h, rows in _groups(df):
        tests = [slope_of(rows, "attr", "slope_attr", "slope of 16·R_{M,1}ᵀR_1ᵀŝ on x (weighted 1/σ²)",
                          "THEORY §2.2: the R_1-slot branch of ŝ carries s_attr/16"),
                 noise_ratio_of(rows, "attr", ATTR_DIM, "noise_attr",
                                "median normalised ℓ∞ error of the slot read-out / q_L")]
        ex, notes = exponent_tests(rows, rows["m_rms_err_attr"] / rows["m_s_norm"], [
            ("p_d_sketch", "d", -0.5, "alpha_d", "α, exponent of d (slot read-out RMS error/‖s‖)",
             "recursive-sketch property: error ∝ δ ∝ d^{-1/2}", 3)])
        tests += ex
        if h in PROBE_SLOPE_DEPTHS:
            tests.append(slope_of(rows, "probe", "slope_probe",
                                  "slope of ⟨u, ŝ⟩ on κ⟨u, s_object⟩ (probes, weighted 1/σ_u²)",
                                  "paper §1: ⟨u, ŝ⟩ ≈ ⟨u, s_object⟩ for probes independent of the matrices"))
        else:
            notes.append(f"no probe slope at depth {h}: a probe's signal/noise ≈ "
                         f"{(rows['m_obj_norm'] * sst.object_sketch_constant(h) * rows['m_w_path'] / rows['m_s_norm']).median():.2g}")
        tests.append(ratio_test("noise_probe", "RMS probe error / predicted (geometric mean)",
                                rows["m_probe_norm_err"] / rows["m_probe_norm_pred"],
                                source="σ_u = ‖s‖/(2^{-(4h-7)} w √d) (approximate isometry, THEORY §3)"))
        kap = rows["m_kappa"]
        note = "; ".join(p for p in [runs_note(rows), f"w_path = {rows['m_w_path'].median():g}",
                                     f"κ ∈ [{kap.min():.3f}, {kap.max():.3f}] (median {kap.median():.3f})",
                                     bq_note(rows), *notes] if p)
        out.extend(split_noise_model(Claim("unrolling", fam, h, tests, note=note)))
    return out


def details(df):
    groups = _groups(df)
    if not groups:
        return ""
    qL = lmax_median(ATTR_DIM)
    tab = []
    for fam, h, g in groups:
        tab.append([fam, h, len(g), f"{(g['m_probe_norm_err'] / g['m_probe_norm_pred']).median():.3f}",
                    f"{g['m_norm_err_attr'].median() / qL:.3f}",
                    f"{(g['m_sxy_attr'] / g['m_sxx_attr']).median():.3f}",
                    f"{(g['m_sxy_probe'] / g['m_sxx_probe']).median():.3f}",
                    f"{g['m_kappa'].median():.3f}",
                    f"{(g['m_probe_signal'] * g['m_obj_norm'] / g['m_sigma_probe']).median():.3g}",
                    f"{g['m_vec_rel_err'].median():.3g}",
                    f"{g['m_attr_path_mismatch'].max():.1e}"])
    return ("Per family and depth (medians over runs): RMS probe error / its prediction; slot read-out "
            f"normalised ℓ∞ error / q_L (q_L = {qL:.3f}); per-run slopes of the read-out and of the probes "
            "(predicted 1); a random probe's signal/noise; ‖ŝ − s_object‖/‖s_object‖ (not expected to "
            "shrink with d); and the largest |16·R_{M,1}ᵀR_1ᵀŝ − attributes_on_path| (algebraically 0).\n\n"
            + md_table(["family", "depth", "runs", "probe err / pred", "read-out norm. err / q_L",
                        "read-out slope", "probe slope on κ⟨u,s_obj⟩", "κ (median)", "probe signal/noise", "‖ŝ − s_obj‖/‖s_obj‖",
                        "max path mismatch"], tab))


# ============================================================================ figures
FIGURES = ("unrolling.png",)


def figures(df, outdir):
    import pandas as pd

    from sketchsim.harness.plots import band_plot, new_figure, reference_line, save_figure

    groups = _groups(df)
    if not groups:
        return []
    sub = pd.concat([g for _, _, g in groups])
    sub = sub.assign(label=family_labels(sub))
    sub = sub.assign(fh=sub["label"] + " h=" + sub["p_depth"].astype(int).astype(str),
                     probe_err=sub["m_probe_norm_err"] * sub["m_sigma_probe"] / sub["m_obj_norm"])
    fig, axes = new_figure(ncols=3, width=4.6, height=4.2)
    ds = np.array(sorted(sub["p_d_sketch"].unique()), dtype=float)
    # probes
    band_plot(axes[0], sub, "p_d_sketch", "probe_err", hue="fh")
    for h, c in ((2, "k"), (3, "0.4")):
        g = sub[sub["p_depth"] == h]
        if len(g):
            C = float((g["m_s_norm"] / (sst.object_sketch_constant(h) * g["m_w_path"] * g["m_obj_norm"])).median())
            reference_line(axes[0], ds, C / np.sqrt(ds), label=f"theory h={h} ∝ d^(-1/2)", color=c)
    sig = sub.groupby("p_d_sketch")["m_probe_signal"].median()
    axes[0].plot(sig.index, sig.values, ls=":", color="k", lw=1, label="probe signal ⟨u,s_obj⟩/‖s_obj‖")
    axes[0].set_xlabel("d_sketch (coordinates)")
    axes[0].set_ylabel("RMS ⟨u, ŝ − s_obj⟩ / ‖s_obj‖ (relative)")
    axes[0].set_title("random unit probes")
    axes[0].legend(fontsize=6)
    # attribute read-out
    band_plot(axes[1], sub, "p_d_sketch", "m_err_attr", hue="fh")
    qL = lmax_median(ATTR_DIM)
    for h, c in ((2, "k"), (3, "0.4")):
        g = sub[sub["p_depth"] == h]
        if len(g):
            C = qL * float((g["m_s_norm"] / g["m_w_path"]).median()) / sst.depth_constant(h)
            reference_line(axes[1], ds, C / np.sqrt(ds), label=f"theory h={h}", color=c)
    axes[1].set_xlabel("d_sketch (coordinates)")
    axes[1].set_ylabel("ℓ∞ error (attribute units)")
    axes[1].set_title(r"attribute via the $R_1$ slot: $16\,R_{M,1}^T R_1^T \hat{s}$")
    axes[1].legend(fontsize=6)
    # per-run slopes
    parts = [sub[["p_d_sketch", "fh"]].assign(slope=sub["m_sxy_attr"] / sub["m_sxx_attr"], what="read-out"),
             sub[sub["p_depth"].isin(PROBE_SLOPE_DEPTHS)][["p_d_sketch", "fh"]].assign(
                 slope=sub["m_sxy_probe"] / sub["m_sxx_probe"], what="probes")]
    long = pd.concat(parts, ignore_index=True)
    long["key"] = long["fh"] + " · " + long["what"]
    band_plot(axes[2], long, "p_d_sketch", "slope", hue="key", logy=False)
    reference_line(axes[2], ds, np.ones(len(ds)), label="theory: unbiased (1)")
    axes[2].set_ylim(-1, 3)
    axes[2].set_xlabel("d_sketch (coordinates)")
    axes[2].set_ylabel("per-run slope, estimate on truth (dimensionless)")
    axes[2].set_title("bias of the unrolled object sketch")
    axes[2].legend(fontsize=5)
    return [save_figure(fig, os.path.join(outdir, FIGURES[0]))]
