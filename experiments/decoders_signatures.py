"""Object signatures (THEORY.md §5, our extension): top-1 list decoding among 10^3 and 10^5 candidates.

Every run draws a bank and the graph of :func:`sketchsim.harness.studykit.build_graph` (target
``t`` at depth 2 with effective weight ``weight``, two siblings of another module), gives every
object a random binary signature code of length ``SIG_LEN``
(:func:`sketchsim.signatures.make_signatures`) through the cheaper variant x' = [x; σ]/√2
(:func:`~sketchsim.signatures.with_signatures`), sketches it, decodes σ̂ of ``t`` with the paper's
path decoder (Theorem 1(ii), known weight; :func:`~sketchsim.signatures.signature`), and ranks the
true code among ``n_cand`` candidates (the true one plus n_cand − 1 fresh random codes) by centred
correlation (:func:`~sketchsim.signatures.match_signature`).

Metrics: ``top1`` (1 when the true code ranks first), ``score_true``, ``score_other_max``, the
bias-test sums of σ̂ on σ (``sxy_sig`` …), ``rms_err_sig`` (RMS of the centred error Π(σ̂ − σ),
Π = I − 11ᵀ/k), ``tau`` = τ, the exact predicted RMS of Π(σ̂ − σ) for the run's bank and structure
(:func:`signature_noise`), ``p_top1`` = the predicted top-1 probability at τ
(:func:`~sketchsim.signatures.top1_probability`: true score N(‖σ − σ̄‖, τ²) against n−1 others
N(0, 1/k + τ²)), and, for the report, ``tau_iso`` = √2·theory.noise_level(‖s‖, d, 2, w) (THEORY.md
§2.4's noise model) with ``p_top1_iso``, the top-1 probability at τ_iso.

The noise level of the prediction (pre-registered here, revised after issue 10's full profile)
----------------------------------------------------------------------------------------------
The first version predicted the top-1 rate at τ_iso. Its full profile (commit fe90262) was
consistent for haar, gaussian and hadamard and not for block-sparse: top-1 rate 0.142 [0.090,
0.215] against 0.533. Its 120 block-sparse runs (and a rerun of them with the same seeds, σ̂ equal
to rounding) show:

* the list-decoding model is right: at the measured RMS noise of σ̂ it predicts 0.153;
* the decoder is unbiased (slope 0.985) and carries the signature correctly;
* the noise of σ̂ is 1.3–2.5× τ_iso (median 2.0×; gaussian 1.0–1.3×, haar and hadamard 0.96–1.02×).
  τ_iso assumes that the decoder's word A = R_{i_1}R_1R_{T,1} (Theorem 1(ii)) meets a residual
  independent of it. The target's own 7 other words and the counting channels R_{M,2}e_1 share
  R_{i_1} and R_1 with A, and for D(b, q, d) AᵀB is far from an independent projection: D's
  matrix-signature sub-blocks make RᵀR a sum of rank-one blocks (‖R‖_op ≈ √(b/3), THEORY.md §3).
  At d = 1536, q = 0.25, w = 0.9 the target's own part alone has variance 3.6 τ_iso² and the
  counting channels 2.8 τ_iso². This is the excess that ``thm1.ii.noise`` already reports for
  block-sparse (normalised error 1.93×); it is the decoder's noise, not a fault of the signature.

So the top-1 prediction now uses the exact noise level τ of the decoder on the run's bank: σ̂ is
linear in the attributes, σ̂ = √2·K(s_0 + Σ_θ P_θ x'_θ), with K the path decoder restricted to the
signature coordinates and P_θ the exact map of :func:`sketchsim.decode_ls.design_matrix`; over the
law of x'_θ = [x_θ; σ_θ]/√2 (independent objects, x of
:func:`~sketchsim.harness.studykit.unit_nonneg_moments`, σ of
:func:`sketchsim.signatures.signature_moments`), E‖Π(σ̂ − σ)‖² is a quadratic form computed per
run (no attribute or code value enters it). The **noise_sig** test checks τ against the measured error;
the noise level of the decoder against τ_iso is ``thm1.ii.noise``'s claim, not this one's.
"""
from __future__ import annotations

import math
import os

import numpy as np

import sketchsim as ss
from sketchsim import decode, decode_ls
from sketchsim import theory as sst
from sketchsim.harness.claims import Claim, pooled_slope_test, rate_test, ratio_test
from sketchsim.harness.studykit import (bank_skip, build_graph, families_in, family_labels, fmt_num,
                                        make_bank, md_table, quiet_precondition,
                                        unit_nonneg_moments)
from sketchsim.harness.studykit import warm_up  # noqa: F401  (contract: optional warm_up)
from sketchsim.signatures import (make_signatures, match_signature, signature, signature_moments,
                                  top1_probability, with_signatures)

NAME = "decoders_signatures"
TITLE = "Object signatures — list decoding of a fingerprint (extension)"
ORDER = 84
STATEMENT = (
    "**Object Signature Recovery (paper §3.3, last paragraph; the construction is in a supplement we do "
    "not have — THEORY.md §5, our design).** Each object carries a signature (a random nonnegative "
    "binary code, appended to its attribute: x' = [x; σ]/√2); decoding the attribute and list-decoding "
    "its tail against a candidate set recovers the object's identity, usable as a fingerprint (§1.1).")
METHOD = (
    "Depth-2 target of effective weight w, signature length k = 128, attribute length 8, path decoder "
    "(Theorem 1(ii)) with known weight. τ is the exact RMS noise of the centred σ̂ for the run's bank "
    "and structure over the law of the attributes and codes (module docstring of "
    "experiments/decoders_signatures.py); τ_iso = √2·theory.noise_level is THEORY.md §2.4's model, "
    "shown in the details table. Tests per family: **top1_rate** — observed top-1 count against the "
    "mean predicted probability at τ (equal within ±0.1, Wilson interval): checks the list-decoding "
    "model; **noise_sig** — geometric mean over runs of the measured RMS of Π(σ̂ − σ) over τ "
    "(predicted 1 within ×1.25): checks τ; **slope_sig** — slope of σ̂ on σ pooled over runs, weighted "
    "by 1/τ² (predicted 1: a wrong √2 moves it to 0.71).")

SIG_LEN = 128
ATTR_L = 8

_BS = {"block_size": [48], "block_prob": [0.25]}
PROFILES = {
    # ≈ 35 core-seconds: ≥ 10 runs for hadamard, haar and gaussian (dense banks at d ≤ 512, where the
    # QR of a bank is cheap; haar at 256), 12 for block-sparse (the exact τ costs ≈ 2–2.5× the rest of
    # a run: 0.7 s at 1536, 2.8 s at 3072).
    "quick": [
        {"family": ["hadamard"], "d_sketch": [2 ** 12, 2 ** 14], "weight": [0.3, 0.9],
         "n_cand": [1000], "reps": 3},
        {"family": ["hadamard"], "d_sketch": [2 ** 14], "weight": [0.9], "n_cand": [100000], "reps": 2},
        {"family": ["haar"], "d_sketch": [256], "weight": [0.9], "n_cand": [1000], "reps": 10},
        {"family": ["gaussian"], "d_sketch": [512], "weight": [0.9], "n_cand": [1000], "reps": 10},
        {"family": ["block-sparse"], "d_sketch": [1536, 3072], **_BS, "weight": [0.9], "n_cand": [1000],
         "reps": 6},
    ],
    # ≈ 1400 core-seconds (CPU time per run, one thread, with the exact τ): hadamard 0.03–1.5 s a run
    # up to 2^16 (2^18 is left out: the exact τ costs 12 s a run there, and every run at 2^18 is a
    # predicted and observed certain success, p ≥ 0.94, which tells nothing about the list-decoding
    # model); haar costs d³ per bank matrix (2.6 s at 1024, 17 s at 2048), so it stops at 1024;
    # gaussian reaches 4096 (5 s) with 5 reps; block-sparse 10 reps (0.7 s at 1536, 10 s at 6144).
    "full": [
        {"family": ["hadamard"], "d_sketch": [2 ** 10, 2 ** 12, 2 ** 14, 2 ** 16],
         "weight": [0.1, 0.3, 0.9], "n_cand": [1000, 100000], "reps": 20},
        {"family": ["haar"], "d_sketch": [512, 1024], "weight": [0.3, 0.9], "n_cand": [1000, 100000], "reps": 20},
        {"family": ["gaussian"], "d_sketch": [512, 1024, 2048], "weight": [0.3, 0.9],
         "n_cand": [1000, 100000], "reps": 20},
        {"family": ["gaussian"], "d_sketch": [4096], "weight": [0.3, 0.9], "n_cand": [1000, 100000], "reps": 5},
        {"family": ["block-sparse"], "d_sketch": [1536, 3072, 6144], **_BS, "weight": [0.3, 0.9],
         "n_cand": [1000, 100000], "reps": 10},
    ],
}
SCOPE = {"decoders.signatures": {"families": ("haar", "gaussian", "block-sparse", "hadamard"),
                                 "depths": (2,), "why": "the target sits at depth 2"}}


def skip(params):
    w = float(params["weight"])
    if not 0 < w <= 1:
        return True, "weight must lie in (0, 1]"
    if ATTR_L + SIG_LEN > int(params["d_sketch"]):
        return True, "attribute plus signature longer than d_sketch"
    return bank_skip(params, dense_max=4096)


# ============================================================================ prediction
def signature_noise(s, sig_hat, gs, bank, object_id, sig_len, weight, L):
    """τ: the exact RMS of the centred error Π(σ̂ − σ) of :func:`~sketchsim.signatures.signature`
    (path decoder of Theorem 1(ii), known ``weight``, default column norms) over the law of the
    attributes and codes (module docstring). No attribute or code value enters it.

    σ̂ = K s with K = √2/(c_h w)·diag(1/‖u_j‖²)·Uᵀ-rows, u_j = A e_{L+j} the word's columns at the
    signature coordinates (the ‖u_j‖² only for the column-norm-corrected families), so
    σ̂ = c + K P z with c = K s_0, z = (x'_θ)_θ and K P_θ = (P_θᵀKᵀ)ᵀ from
    :func:`sketchsim.decode_ls.design_adjoint` (k rows pushed down the graph, not Σ L_θ columns up).
    With T = K P − E (E picks σ = √2·x'_t[L:]) and the moments of x' = [x; σ]/√2,
    E‖Π(σ̂ − σ)‖² = ‖Π(c + T E z)‖² + Σ_θ tr(Π T_θ C_θ T_θᵀ Π). ``s`` and ``sig_hat`` (the run's
    sketch and decoded σ̂) only check that K is the decoder that produced σ̂ (K s = σ̂ to rounding).
    Returns √(E‖Π(σ̂ − σ)‖²/k).
    """
    k = int(sig_len)
    path = gs.paths(object_id)[0]
    ops = [bank.get(n) for n in decode.path_word(path, gs.module(object_id))]
    U = np.zeros((k, bank.d_sketch))
    U[np.arange(k), L + np.arange(k)] = 1.0
    for op in reversed(ops):
        U = op.apply(U)                                          # u_j = A e_{L+j}
    scale = np.full(k, math.sqrt(2.0) / (sst.depth_constant(len(path) + 1) * float(weight)))
    if any(op.family in decode.CORRECTED_FAMILIES for op in ops):
        scale /= np.einsum("ij,ij->i", U, U)
    if not np.allclose(scale * (U @ s), sig_hat, rtol=1e-9, atol=1e-9 * float(np.max(np.abs(sig_hat)))):
        raise RuntimeError("signature_noise: the linear map does not reproduce the decoder's σ̂")
    _, s0, _ = decode_ls.design_matrix(gs, bank, [])
    c = scale * (U @ s0)
    blocks = decode_ls.design_adjoint(gs, bank, U)              # {id: U P_θ, (k, L + k)}
    mx, Cx = unit_nonneg_moments(L)
    ms, Cs = signature_moments(k)
    mu = np.concatenate([mx, ms]) / math.sqrt(2.0)
    C = np.zeros((L + k, L + k))
    C[:L, :L], C[L:, L:] = Cx / 2.0, Cs / 2.0
    mean, var = c, 0.0
    for oid, B in blocks.items():
        T = scale[:, None] * B
        if oid == object_id:
            T[np.arange(k), L + np.arange(k)] -= math.sqrt(2.0)
        mean = mean + T @ mu
        T -= T.mean(axis=0, keepdims=True)                       # Π T_θ
        var += float(np.einsum("ij,jk,ik->", T, C, T))
    mean = mean - mean.mean()
    return math.sqrt((float(mean @ mean) + var) / k)


# ============================================================================ contract
def run_one(params, rng):
    d = int(params["d_sketch"])
    w = float(params["weight"])
    n_cand = int(params["n_cand"])
    with quiet_precondition():
        bank = make_bank(params, rng)
        g, _ = build_graph(2, w, rng, L=ATTR_L)
        sig = make_signatures(len(g.ids), SIG_LEN, rng)
        gs = with_signatures(g, dict(zip(g.ids, sig)))
        s = ss.sketch(gs, bank)
        sh = signature(s, bank, gs, "t", SIG_LEN, weight=gs.weight("t"))
        tau = signature_noise(s, sh, gs, bank, "t", SIG_LEN, gs.weight("t"), ATTR_L)   # no rng
    true = sig[g.index["t"]]
    others = make_signatures(n_cand - 1, SIG_LEN, rng).astype(np.float32)
    _, sc_o = match_signature(sh, others, k=1)
    _, sc_t = match_signature(sh, true[None, :], k=1)
    tau_iso = math.sqrt(2.0) * sst.noise_level(float(np.linalg.norm(s)), d, 2, w)
    mu = float(np.linalg.norm(true - true.mean()))
    e = sh - true
    e = e - e.mean()
    return {"top1": float(sc_t[0] > sc_o[0]), "score_true": float(sc_t[0]), "score_other_max": float(sc_o[0]),
            "tau": tau, "p_top1": top1_probability(mu, tau, SIG_LEN, n_cand),
            "tau_iso": tau_iso, "p_top1_iso": top1_probability(mu, tau_iso, SIG_LEN, n_cand),
            "rms_err_sig": float(np.sqrt(np.mean(e * e))),
            "sxy_sig": float(sh @ true), "sxx_sig": float(true @ true), "syy_sig": float(sh @ sh),
            "n_sig": float(SIG_LEN), "err_sig": float(np.max(np.abs(sh - true)))}


def theory(params):
    return {"slope": 1.0}


STALE = "results predate the exact noise level τ (no m_tau_iso column): rerun the study"


def claims(df):
    out = []
    if not len(df) or "m_top1" not in df:
        return out
    stale = "m_tau_iso" not in df
    for fam in families_in(df):
        rows = df[(df["p_family"] == fam) & df["m_top1"].notna()]
        if not stale:
            rows = rows.dropna(subset=["m_tau", "m_p_top1", "m_rms_err_sig", "m_tau_iso"])
        if not len(rows):
            continue
        k, n = int(rows["m_top1"].sum()), len(rows)
        p = float(rows["m_p_top1"].mean())
        tests = [rate_test("top1_rate", f"top-1 rate (predicted {p:.3f} at τ)", k, n, p, tol=0.1, kind="equal",
                           source="THEORY §5 list decoding at the decoder's exact noise level τ"),
                 ratio_test("noise_sig", "geometric mean of RMS(Π(σ̂ − σ)) / τ",
                            rows["m_rms_err_sig"] / rows["m_tau"] if not stale else [], predicted=1.0,
                            source="τ: exact quadratic form of the linear decoder over the attribute and code law"),
                 pooled_slope_test("slope_sig", "slope of σ̂ on σ (weighted 1/τ²)", rows["m_sxy_sig"],
                                   rows["m_sxx_sig"], rows["m_syy_sig"], rows["m_n_sig"],
                                   weights=1.0 / rows["m_tau"] ** 2, source="x' = [x; σ]/√2, σ̂ = √2·x̂'[L:]")]
        note = (f"{n} runs, d ∈ {{{', '.join(str(int(v)) for v in sorted(rows['p_d_sketch'].unique()))}}}, "
                f"w ∈ {{{', '.join(f'{v:g}' for v in sorted(rows['p_weight'].unique()))}}}, "
                f"n_cand ∈ {{{', '.join(str(int(v)) for v in sorted(rows['p_n_cand'].unique()))}}}")
        if not stale:
            note += (f"; median τ/τ_iso = {float((rows['m_tau'] / rows['m_tau_iso']).median()):.2f} "
                     f"(THEORY §2.4 model: top-1 predicted {float(rows['m_p_top1_iso'].mean()):.3f})")
        out.append(Claim("decoders.signatures", fam, 2, tests, note=note,
                         inconclusive=STALE if stale else ("" if n >= 10 else f"only {n} runs")))
    return out


def details(df):
    if not len(df) or "m_top1" not in df:
        return ""
    d = df.assign(label=family_labels(df))
    rows = []
    for (lab, dd, w, nc), g in d.groupby(["label", "p_d_sketch", "p_weight", "p_n_cand"]):
        iso = "m_tau_iso" in g
        rows.append([lab, int(dd), f"{w:g}", int(nc), len(g), f"{g['m_top1'].mean():.2f}",
                     f"{g['m_p_top1'].mean():.2f}", f"{g['m_p_top1_iso'].mean():.2f}" if iso else "—",
                     fmt_num(float(g["m_tau"].median())),
                     fmt_num(float(g["m_tau_iso"].median())) if iso else "—",
                     fmt_num(float((g["m_rms_err_sig"] / g["m_tau"]).median())) if iso else "—",
                     fmt_num(float(g["m_err_sig"].median()))])
    return ("Top-1 rate per family, d, weight and number of candidates, with its prediction at the exact noise "
            "level τ and at THEORY.md §2.4's τ_iso, the two noise levels (per coordinate of the centred σ̂), "
            "the median measured RMS noise over τ and the median ℓ∞ error of σ̂.\n\n"
            + md_table(["family", "d", "w", "candidates", "runs", "top-1", "predicted (τ)", "predicted (τ_iso)",
                        "τ", "τ_iso", "RMS noise/τ", "ℓ∞ err σ̂"], rows))


FIGURES = ("decoders_signatures.png",)


def figures(df, outdir):
    if not len(df) or "m_top1" not in df:
        return []
    from sketchsim.harness.plots import new_figure, save_figure

    d = df.assign(label=family_labels(df))
    fig, axes = new_figure(ncols=1, width=5.5, height=4.2)
    ax = axes[0] if hasattr(axes, "__len__") else axes
    for (lab, w, nc), g in d.groupby(["label", "p_weight", "p_n_cand"]):
        m = g.groupby("p_d_sketch")[["m_top1", "m_p_top1"]].mean()
        line, = ax.plot(m.index, m["m_top1"], marker="o", label=f"{lab}, w={w:g}, {int(nc)} cand.")
        ax.plot(m.index, m["m_p_top1"], ls=":", color=line.get_color())
    ax.set_xscale("log", base=2)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("d_sketch (coordinates)")
    ax.set_ylabel("top-1 rate (dotted: prediction)")
    ax.set_title("object signatures: list decoding")
    ax.legend(fontsize=6)
    return [save_figure(fig, os.path.join(outdir, FIGURES[0]))]
