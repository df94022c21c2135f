"""Dictionary learning in the real setting: recover the unknown block-sparse matrices of a sketching
mechanism from overall sketches alone (paper §4, Theorem 4 applied to sketches; THEORY.md §6.2,
"The identity branch helps").

Every run draws a fresh block-sparse :class:`~sketchsim.MatrixBank` D(b, q, d) (seed from ``rng``,
unknown to the learner) and S random inputs of one **fixed** random modular network
(:func:`sketchsim.random_network` with a constant seed; attributes and weights per input from
:func:`sketchsim.fixed_tree_values`), sketches them with :func:`sketchsim.sketch_batch`, and runs
:func:`sketchsim.dictlearn.recover` on the S overall sketches only.

What can be recovered at level 1 (THEORY.md §6.2): expanding every (I+R)/2 factor, the sketch holds
the *identity words* c_h·W_θ·R_{M,1} x_θ and c_h·W_θ·R_{M,2} e_1 of every object θ (c_h =
2^{−(4h−3)}, W_θ its effective weight), i.e. single columns of R_{M,1} (coefficients
Σ_{θ∈M} c_h W_θ x_θ[j]) and column 0 of R_{M,2} (coefficient Σ_{θ∈M} c_h W_θ). Every other word is a
matrix applied to a spread vector: a dense residual of ℓ2 norm ρ ≈ ‖s‖. A column with coefficient ε
passes the block screen when the per-entry residual ρ/√d is small against ε/√(dq), i.e. ρ√q/ε well
below τ∞ (``hypercube_tol``), and is certified when q·d/b is large enough for the count threshold.
So q must be small (q ≈ (τ∞ ε/(3ρ))², ≈ 10⁻³ here) and d ≥ blocks·b/q large.

Parameters (experiments/README.md vocabulary): ``d_sketch`` (requested; b = the smallest admissible
block size and d the largest multiple of b below it, metrics ``d_sketch``, ``block_size``),
``blocks_per_column`` = q·d/b (expected nonzero blocks per column; ``block_prob`` q follows, metric
``block_prob``), ``S`` (sketches), ``depth`` (network depth: 1 → three depth-2 objects in two
modules; 2 → six objects in three modules at depths 2–3). The family is always ``block-sparse``.

Each run evaluates the same sketches under several threshold settings (:data:`SETTINGS`; metric
names end in the setting's key): ``default`` = the library defaults
(``sketchsim.dictlearn.DEFAULTS``: τ∞ 0.3, count_frac 0.5) — the only setting the claim uses —
and, as a sensitivity analysis reported in :func:`details`, ``paper`` (τ∞ 0.3 with the paper's
count_frac 0.8), ``t50`` (τ∞ 0.5, count_frac 0.8), ``t70`` (τ∞ 0.7, count_frac 0.8) and ``t50c50``
(τ∞ 0.5, count_frac 0.5).

Metrics per setting: ``nmat`` recovered matrices, ``named`` of them identified with a true matrix
(canonical signature σ̂_m, one-to-one), ``found`` which ones ("module/L2M1/1:2" = 2 columns),
``ncols`` recovered columns, ``ntrue`` of them true columns (label named, every recovered block equal
to the named matrix's block, signs included: no wrong entry), ``ncomplete`` of them also within
Hamming distance 20% of the whole true column (missing blocks count, THEORY.md §9.2), ``id_exact`` identity-branch
columns recovered exactly (every block equal to R's, signs included) and ``id_rate`` their
fraction, ``other`` further exactly recovered true columns, ``bad`` recovered columns that are no
exact column of a true matrix, ``cert`` the fraction of (sketch, identity column) coefficients
certified, ``relerr_med`` / ``relerr_max`` the median / worst relative error |x̂ − x|/|x| of
certified identity-branch coefficients against the true c_h·Σ W_θ x_θ[j], ``lvl2`` coefficients
certified at level 2 (recursion on the level-1 coefficient vectors). Also ``rho_over_eps`` (‖s‖
over the median true identity coefficient) and ``t_bank``, ``t_sketch``, ``t_recover`` (s).

Claim (pre-registered: written before the first run of this version; rules of
``sketchsim.harness.claims``; family ``block-sparse``, depth = the network depth)
-------------------------------------------------------------------------------------------------
``dictlearn_sketches`` — **the matrices are learned from sketches alone, at the library defaults**
(never the best of several settings): pooled over the runs of one network depth,

* ``true_columns``: the fraction of recovered columns that are columns of a true matrix — no wrong
  entry in any recovered block, signs included; Theorem 4's output is a column of R_{π(i)} — with
  its Wilson 95% interval, consistent when the upper end reaches 1 (:data:`PRECISION_RATE`: no wrong
  recovered column at all; THEORY.md §6.2's reconstruction recovers blocks exactly).
  Blocks never certified (left 0) are not wrong output: Theorem 4 tolerates them up to 20% of the
  nonzero entries, which needs many blocks per column (the regime of ``thm4``); at the few blocks
  per column of this setting the completeness is reported (``ncomplete``), not judged;
* ``labels``: the fraction of recovered matrix labels that map one-to-one onto true matrices (the
  permutation π), same rule;
* ``identity_share``: the fraction of the exactly recovered true columns that are identity-branch
  columns, same rule (THEORY.md §6.2's prediction: no column of a tuple matrix R_i or of an R_{M,0}
  dominates a block at level 1).

No resolution requirement: these are "no wrong output" tests — a single wrong column, label or
non-identity column makes the claim not consistent. The claim is inconclusive when the defaults
recover no column at all (nothing to judge). How many identity-branch columns the defaults recover
at each d is reported in the note and in :func:`details` (a measurement: no regime or prediction is
derived for the sketch setting).
"""
from __future__ import annotations

import math
import os
import time

import numpy as np

import sketchsim as ss
from sketchsim.dictlearn import DEFAULTS, PAPER_COUNT_FRAC
from sketchsim.harness.claims import Claim, rate_test
from sketchsim.harness.studykit import (block_dims, canonical_signature, column_exact, column_hamming, grid_text,
                                        md_table, quiet_precondition, quiet_recover, warm_up_dictlearn)

NAME = "dictlearn_sketches"
TITLE = "Dictionary learning from sketches (the real setting)"
ORDER = 70
STATEMENT = (
    "**Paper §4 (Theorem 4 applied to sketches).** The matrices of the sketching mechanism need not be "
    "known: drawn from D(b, q, d), they can be learned from overall sketches alone by recursable dictionary "
    "learning (the sketch is [R_1 … R_N]·x + noise at every level, with H = 3·depth levels), which returns "
    "the matrices up to a permutation, their essential columns and the coefficients. Reconstruction: the "
    "identity branches of (I+R)/2 put c_h·W_θ·R_{M,1}x_θ and c_h·W_θ·R_{M,2}e_1 into the sketch directly, so "
    "level 1 already sees columns of the module matrices (THEORY.md §6.2).")
METHOD = (
    "S overall sketches of one fixed random network (depth 1: three depth-2 objects, modules L2M0 ×1 and "
    "L2M1 ×2, attributes of length 2; 9 matrices), a fresh unknown D(b, q, d) bank per run, q = "
    "blocks_per_column·b/d; the learner sees the sketches and b, q only. The recoverable targets are the "
    "identity-branch columns: R_{M,1} columns 0…L−1 and R_{M,2} column 0 of each module, with coefficients "
    "c_h·Σ W_θ x_θ[j] and c_h·Σ W_θ. **The claim uses the library default thresholds only** (τ∞ 0.3, "
    "count_frac 0.5): pooled over runs, the recovered columns must be true columns (no wrong entry), the "
    "recovered labels must map one-to-one onto true matrices, and the exactly recovered columns must be "
    "identity-branch columns (THEORY.md §6.2): no wrong output at all (Wilson 95% upper end 1). "
    "Recovery per d and the other threshold settings (including the paper's count_frac 0.8) are "
    "measurements in the tables below, not claims.")

NET_SEED = {1: 1, 2: 0}
"""Seed of the fixed network per depth: depth 1 → 3 objects in modules L2M0 (1) and L2M1 (2);
depth 2 → 6 objects, modules L2M1, L3M1, L3M0."""
ATTR_DIM = 2
SETTINGS = {"default": (DEFAULTS["hypercube_tol"], DEFAULTS["count_frac"]), "paper": (0.3, PAPER_COUNT_FRAC),
            "t50": (0.5, PAPER_COUNT_FRAC), "t70": (0.7, PAPER_COUNT_FRAC), "t50c50": (0.5, 0.5)}
"""Threshold settings evaluated in every run: key → (hypercube_tol, count_frac). Only ``default``
enters the claim."""
LABELS = {"default": f"library defaults (τ∞ {SETTINGS['default'][0]}, count_frac {SETTINGS['default'][1]})",
          "paper": f"τ∞ 0.3, count_frac {PAPER_COUNT_FRAC} (the paper's rule)",
          "t50": f"τ∞ 0.5, count_frac {PAPER_COUNT_FRAC}", "t70": f"τ∞ 0.7, count_frac {PAPER_COUNT_FRAC}",
          "t50c50": "τ∞ 0.5, count_frac 0.5"}
HAMMING_FRAC = 0.2
"""A true recovered column is *complete* when within Hamming distance 20% of the true column's
nonzero entries (Theorem 4's tolerance, THEORY.md §9.2)."""
PRECISION_RATE = 1.0
"""Fraction (Wilson upper end, within 1e-9) of recovered columns / labels that must be true ones: all."""
PRECISION_TOL = 1e-9

PROFILES = {
    "quick": {"d_sketch": [65536, 131072], "blocks_per_column": [4], "S": [40], "depth": [1], "reps": 1},
    "full": [
        {"d_sketch": [32768, 65536, 131072], "blocks_per_column": [4], "S": [50], "depth": [1], "reps": 3},
        {"d_sketch": [262144], "blocks_per_column": [4], "S": [50], "depth": [1], "reps": 2},
        {"d_sketch": [131072], "blocks_per_column": [4], "S": [10, 25, 100, 250], "depth": [1], "reps": 2},
        {"d_sketch": [131072], "blocks_per_column": [3, 6, 10], "S": [50], "depth": [1], "reps": 2},
        {"d_sketch": [131072], "blocks_per_column": [4], "S": [50], "depth": [2], "reps": 2},
    ],
}


def network(depth):
    if depth == 1:
        return ss.random_network(depth=1, fan_in=(3, 3), modules_per_level=2, attr_dim=ATTR_DIM,
                                 random_state=NET_SEED[1])
    if depth == 2:
        return ss.random_network(depth=2, fan_in=(2, 2), modules_per_level=2, attr_dim=ATTR_DIM,
                                 random_state=NET_SEED[2])
    raise ValueError(f"depth must be 1 or 2; got {depth}")


def effective_weights(graph, weights, output_weights):
    """(n_objects, B) effective weights W_θ per input (sum over paths of weight products)."""
    B = output_weights.shape[0]
    W = np.zeros((len(graph.ids), B))
    for pos, c in enumerate(graph.output[0]):
        W[c] += output_weights[:, pos]
    for p in graph.children_first[::-1]:                 # parents before children
        for pos, c in enumerate(graph.inputs[p][0]):
            W[c] += W[p] * weights[graph.ids[p]][:, pos]
    return W


def truth_depths(graph):
    """{(matrix name, column j): depth h of the module's objects} for the identity-branch columns."""
    out = {}
    for o in range(len(graph.ids)):
        mod = graph.modules[graph.module_of[o]]
        h = graph.depths[o][0]
        for j in range(len(graph.attributes[o])):
            out[(ss.module_name(mod, 1), j)] = h
        out[(ss.module_name(mod, 2), 0)] = h
    return out


def identity_truth(graph, attrs, weights, output_weights):
    """{(matrix name, column j): (B,) coefficient}: the identity-branch columns of every module."""
    W = effective_weights(graph, weights, output_weights)
    out = {}
    for o, oid in enumerate(graph.ids):
        h = graph.depths[o][0]
        c = 2.0 ** (-(4 * h - 3))
        mod = graph.modules[graph.module_of[o]]
        x = attrs[oid]
        for j in range(x.shape[1]):
            key = (ss.module_name(mod, 1), j)
            out[key] = out.get(key, 0.0) + c * W[o] * x[:, j]
        key = (ss.module_name(mod, 2), 0)
        out[key] = out.get(key, 0.0) + c * W[o]
    return out



def _signature(op):
    s = canonical_signature(op)
    return np.zeros(op.b // 3, np.int8) if s is None else s


def evaluate(res, ops, truth, depths=None):
    """Metrics of one recovery (module docstring) against the named operators ``ops``."""
    names = list(ops)
    sigs = np.stack([_signature(ops[n]) for n in names])
    lab = np.full(res.n_matrices, -1, np.int64)
    for m in range(res.n_matrices):
        dist = (sigs != res.matrix_signature[m][None, :]).sum(axis=1)
        k = int(np.argmin(dist))
        if dist[k] <= 1:
            lab[m] = k
    named, counts = np.unique(lab[lab >= 0], return_counts=True)
    one_to_one = int(sum(c for c in counts if c == 1))
    exact, other, bad, ntrue, ncomplete, per_name = set(), 0, 0, 0, 0, {}
    for c in range(res.n_columns):
        m = int(res.column_matrix[c])
        j = int(res.column_index[c])
        if lab[m] < 0:
            bad += 1
            continue
        name = names[lab[m]]
        op = ops[name]
        dist, n_true = column_hamming(res, c, op, j)
        ok, _ = column_exact(res, c, op, j)
        if not ok or n_true == 0:
            bad += 1
            continue
        ntrue += 1
        ncomplete += int(dist <= HAMMING_FRAC * n_true)
        per_name[name] = per_name.get(name, 0) + 1
        if (name, j) in truth:
            exact.add((name, j))
        else:
            other += 1
    # coefficients of identity-branch columns (level 1)
    rel, n_cert = [], 0
    lvl = res.coef_level == 1
    for s, m, j, v in zip(res.coef_sample[lvl], res.coef_matrix[lvl], res.coef_column[lvl], res.coef_value[lvl]):
        if lab[m] < 0:
            continue
        key = (names[lab[m]], int(j))
        if key in truth:
            t = float(truth[key][s])
            n_cert += 1
            rel.append(abs(v - t) / abs(t) if t != 0 else math.inf)
    S1 = int(np.sum(res.sample_level == 1))
    found = ",".join(f"{n}:{per_name[n]}" for n in sorted(per_name))
    by_depth = {}
    for h in (2, 3):
        keys = [k for k in truth if (depths or {}).get(k) == h]
        by_depth[f"id_rate_h{h}"] = (sum(k in exact for k in keys) / len(keys)) if keys else float("nan")
    return {**by_depth, "nmat": res.n_matrices, "named": one_to_one, "found": found or "-",
            "ncols": res.n_columns, "ntrue": ntrue, "ncomplete": ncomplete, "id_exact": len(exact),
            "id_rate": len(exact) / len(truth), "other": other, "bad": bad,
            "cert": n_cert / (S1 * len(truth)) if S1 else float("nan"),
            "relerr_med": float(np.median(rel)) if rel else float("nan"),
            "relerr_max": float(np.max(rel)) if rel else float("nan"),
            "lvl2": int(np.sum(res.coef_level == 2))}


def run_one(params, rng):
    d, b = block_dims(params["d_sketch"])
    q = float(params["blocks_per_column"]) * b / d
    S = int(params["S"])
    g = network(int(params["depth"]))
    t0 = time.perf_counter()
    bank = ss.MatrixBank(d, "block-sparse", int(rng.integers(0, 2 ** 62)), block_size=b, block_prob=q)
    names = bank.matrix_names(g)
    ops = {n: bank.get(n) for n in names}
    t_bank = time.perf_counter() - t0
    attrs, weights, out_w = ss.fixed_tree_values(g, S, random_state=rng)
    t0 = time.perf_counter()
    with quiet_precondition():
        Y = ss.sketch_batch(g, bank, attrs, weights, out_w)
    t_sketch = time.perf_counter() - t0
    truth = identity_truth(g, attrs, weights, out_w)
    eps = float(np.median([np.median(np.abs(v)) for v in truth.values()]))
    out = {"d_sketch": d, "block_size": b, "block_prob": q, "n_id_columns": len(truth),
           "n_matrices_true": len(names), "s_norm": float(np.median(np.linalg.norm(Y, axis=1))), "eps_med": eps,
           "t_bank": t_bank, "t_sketch": t_sketch}
    out["rho_over_eps"] = out["s_norm"] / eps
    depths = truth_depths(g)
    for key, (tau, cf) in SETTINGS.items():
        t0 = time.perf_counter()
        res = quiet_recover(Y, b, q, hypercube_tol=tau, count_frac=cf, levels=2)
        dt = time.perf_counter() - t0
        for k, v in evaluate(res, ops, truth, depths).items():
            out[f"{k}_{key}"] = v
        out[f"t_recover_{key}"] = dt
    return out


warm_up = warm_up_dictlearn


# ================================================================================ claims
def claims(df):
    """``dictlearn_sketches`` per network depth, at the library defaults (module docstring)."""
    if not len(df) or "m_ncols_default" not in df:
        return [Claim(NAME, "block-sparse", None, [], inconclusive="no runs")]
    out = []
    for depth, g in df.groupby("p_depth"):
        n_cols, n_true = int(g["m_ncols_default"].sum()), int(g["m_ntrue_default"].sum())
        n_lab, n_named = int(g["m_nmat_default"].sum()), int(g["m_named_default"].sum())
        n_id = int(g["m_id_exact_default"].sum())
        n_exact = n_id + int(g["m_other_default"].sum())
        src = "Theorem 4 applied to sketches: the output columns are columns of R_π(i)"
        tests = [rate_test("true_columns", "recovered columns that are true columns (no wrong entry)", n_true, n_cols,
                           PRECISION_RATE, tol=PRECISION_TOL, source=src),
                 rate_test("labels", "recovered labels mapping one-to-one onto true matrices", n_named, n_lab,
                           PRECISION_RATE, tol=PRECISION_TOL, source="Theorem 4: up to a permutation π of the matrices"),
                 rate_test("identity_share", "exactly recovered columns that are identity-branch columns", n_id,
                           n_exact, PRECISION_RATE, tol=PRECISION_TOL,
                           source="THEORY.md §6.2: only the identity words dominate blocks at level 1")]
        per_d = g.groupby("m_d_sketch").agg(k=("m_id_exact_default", "sum"), n=("m_n_id_columns", "sum"),
                                            runs=("m_id_exact_default", "size"))
        note = (f"library defaults, {len(g)} runs: {n_cols} columns recovered, {n_true} true, "
                f"{int(g['m_ncomplete_default'].sum())} of them complete within 20% Hamming; identity-branch columns "
                "recovered exactly per d: " + ", ".join(f"d = {grid_text(d)}: {int(r.k)}/{int(r.n)}"
                                                       for d, r in per_d.iterrows()))
        out.append(Claim(NAME, "block-sparse", int(depth), tests, note=note,
                         inconclusive="" if n_cols else "the library defaults recovered no column in these runs"))
    return out


# ================================================================================ report
FIGURES = ("dictlearn_sketches_d.png", "dictlearn_sketches_S.png")


def _main(df):
    """Rows of the main series: depth 1, 4 blocks per column (the d and S sweeps)."""
    if not len(df):
        return df
    return df[(df["p_depth"] == 1) & (df["p_blocks_per_column"] == 4)]


def figures(df, outdir):
    import matplotlib.pyplot as plt

    from sketchsim.harness.plots import band_plot, new_figure, save_figure

    paths = []
    main = _main(df)
    s_d = main.groupby("p_S")["p_d_sketch"].nunique().idxmax() if len(main) else None
    d_s = main.groupby("p_d_sketch")["p_S"].nunique().idxmax() if len(main) else None
    for fname, x, xl, sel in ((FIGURES[0], "m_d_sketch", "sketch dimension d", main[main["p_S"] == s_d]
                               if len(main) else main),
                              (FIGURES[1], "p_S", "number of sketches S",
                               main[main["p_d_sketch"] == d_s] if len(main) else main)):
        if not len(sel) or sel[x].nunique() < 2:
            continue
        sel = sel.copy()                                  # one block: assign() below stays cheap
        fig, axes = new_figure(3, width=4.6, height=3.9)
        for k, (key, lab) in enumerate(LABELS.items()):
            col = f"m_id_rate_{key}"
            if col not in sel:
                continue
            lab = lab if key == "default" else f"sensitivity: {lab}"
            band_plot(axes[0], sel.assign(series=lab), x, col, hue="series", logy=False, colors={lab: f"C{k}"})
            band_plot(axes[1], sel.assign(series=lab), x, f"m_cert_{key}", hue="series", logy=False,
                      colors={lab: f"C{k}"})
            rel = sel.dropna(subset=[f"m_relerr_med_{key}"])
            if len(rel):
                band_plot(axes[2], rel.assign(series=lab), x, f"m_relerr_med_{key}", hue="series",
                          colors={lab: f"C{k}"})
        axes[0].set_ylabel("identity-branch columns recovered exactly")
        axes[1].set_ylabel("fraction of (sketch, column) coefficients certified")
        axes[2].set_ylabel("median relative coefficient error")
        for ax in axes:
            ax.set_xlabel(xl)
            ax.set_xscale("log", base=2)
        axes[0].set_ylim(-0.05, 1.05)
        axes[1].set_ylim(-0.05, 1.05)
        axes[0].legend(fontsize=6)
        paths.append(save_figure(fig, os.path.join(outdir, fname)))
    plt.close("all")
    return paths


def _cell(g, key):
    rel = f"{g[f'm_relerr_med_{key}'].median():.2g}" if g[f"m_relerr_med_{key}"].notna().any() else "—"
    return f"{g[f'm_id_rate_{key}'].median():.2f} / {g[f'm_cert_{key}'].median():.2f} / {rel}"


def details(df):
    """Recovery per grid point at the library defaults, the threshold sensitivity (labelled), the
    matrices found, the depth-2 network and what is and is not recovered."""
    if not len(df) or "m_id_rate_default" not in df:
        return "No dictlearn_sketches runs in the results table."
    keys = ["p_depth", "p_blocks_per_column", "m_d_sketch", "p_S"]
    rows, sens = [], []
    for key, g in df.groupby(keys):
        dep, blocks, d, S = key
        head = [grid_text(dep), grid_text(blocks), grid_text(d), grid_text(S), f"{g['m_block_prob'].median():.2g}",
                f"{g['m_rho_over_eps'].median():.0f}", len(g)]
        rows.append(head + [_cell(g, "default"), int(g["m_ncols_default"].sum()), int(g["m_ncomplete_default"].sum()),
                            int(g["m_bad_default"].sum()),
                            f"{g['m_t_bank'].median() + g['m_t_sketch'].median():.1f}"])
        sens.append(head[:4] + [_cell(g, k) for k in SETTINGS if k != "default"])
    lines = [f"Median ‖s‖ = {df['m_s_norm'].median():.3f}, median target coefficient ε = {df['m_eps_med'].median():.3g}: "
             "everything but the identity words is a dense residual for level 1. Cells: identity-branch columns "
             "recovered exactly / (sketch, identity column) coefficients certified / median relative coefficient "
             "error (medians over runs); ‖s‖/ε = sketch norm over the median true identity coefficient.", "",
             "### Library defaults (the claim's setting)", "",
             md_table(["depth", "q·d/b", "d", "S", "q", "‖s‖/ε", "runs", LABELS["default"], "columns recovered",
                       "complete (≤ 20% Hamming)", "wrong columns", "bank+sketch (s)"], rows), "",
             "### Sensitivity to the thresholds (same sketches; a measurement, not a claim)",
             "No setting is chosen from this table: the claim uses the library defaults fixed in "
             "`sketchsim.dictlearn.DEFAULTS`.", "",
             md_table(["depth", "q·d/b", "d", "S"] + [LABELS[k] for k in SETTINGS if k != "default"], sens)]
    main = _main(df)
    if len(main):
        s_d = main.groupby("p_S")["p_d_sketch"].nunique().idxmax()
        lines += ["", f"Matrices and exactly recovered columns per run (`name:columns`), {LABELS['default']}, "
                      f"S = {grid_text(s_d)}:", ""]
        for d, g in main[main["p_S"] == s_d].groupby("m_d_sketch"):
            vc = g["m_found_default"].value_counts()
            lines.append(f"- d = {grid_text(d)}: " + "; ".join(f"`{k}` ×{v}" for k, v in vc.items()))
    deep = df[df["p_depth"] == 2]
    if len(deep):
        lines += ["", "Depth-2 network (objects at depths 2 and 3, c_3 = 1/512), library defaults: identity columns of "
                      f"depth-2 modules recovered {deep['m_id_rate_h2_default'].median():.0%}, of depth-3 modules "
                      f"{deep['m_id_rate_h3_default'].median():.0%} (median over {len(deep)} runs; τ∞ 0.5, count_frac "
                      f"0.5: {deep['m_id_rate_h2_t50c50'].median():.0%} and {deep['m_id_rate_h3_t50c50'].median():.0%}): "
                      "a depth-3 identity coefficient is 16× smaller against a larger residual "
                      f"(‖s‖/ε ≈ {deep['m_rho_over_eps'].median():.0f})."]
    n_bad = {k: int(df[f"m_bad_{k}"].sum()) for k in SETTINGS}
    lines += ["", "Recovered columns that are no exact column of a true matrix: "
                  + ", ".join(f"{LABELS[k]}: {v}" for k, v in n_bad.items())
                  + f". Level-2 certified coefficients (recursion on the level-1 coefficient vectors), all runs and "
                    f"settings: {int(sum(df[f'm_lvl2_{k}'].sum() for k in SETTINGS))}: the level-1 coefficient vectors "
                    "of R_{M,1} are attribute vectors (no block structure), and the spread words that would lead to "
                    "R_i/R_{M,0} are far below the level-1 screen (Theorem 4 own setting, levels study)."]
    if len(main):
        first = {}
        for k in SETTINGS:
            ok = main.groupby("m_d_sketch")[f"m_id_rate_{k}"].median()
            hit = [d for d, v in ok.items() if v > 0]
            first[k] = grid_text(min(hit)) if hit else "none of the tested d"
        big = main[main["m_d_sketch"] == main["m_d_sketch"].max()]
        lines += ["", "### What is and is not recovered",
                  f"- Recovered at the largest d = {grid_text(big['m_d_sketch'].iloc[0])} with the library defaults: "
                  f"{big['m_id_rate_default'].median():.0%} of the identity-branch columns (median over {len(big)} runs), "
                  f"exactly (every block and sign); labels one-to-one onto true matrices in "
                  f"{int((big['m_named_default'] == big['m_nmat_default']).sum())} of {len(big)} runs; coefficients to a "
                  f"median relative error of {_fmt(big['m_relerr_med_default'].median())}.",
                  "- Not recovered at these sizes: any column of the tuple matrices R_i or of R_{M,0} (their coefficients "
                  "are spread over q·d columns at ≈ ε/√(dq) each) and anything at level ≥ 2. The screen needs the "
                  "per-entry residual ‖s‖√q/ε (median here "
                  f"{(df['m_rho_over_eps'] * np.sqrt(df['m_block_prob'])).median():.2f}) well under τ∞ for all b entries "
                  "of a block, so q must be small and d = blocks·b/q large. Smallest d with a median recovery > 0: "
                  + "; ".join(f"{LABELS[k]}: {first[k]}" for k in SETTINGS) + "."]
    return "\n".join(lines)


def _fmt(v):
    return "—" if v is None or not math.isfinite(float(v)) else f"{float(v):.2g}"
