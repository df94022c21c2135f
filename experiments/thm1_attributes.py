"""Theorem 1 — attribute recovery: ℓ∞ error against d_sketch, effective weight, depth and family.

Every run draws one :class:`~sketchsim.MatrixBank` (seed from the run's ``rng``) and two small
communication graphs sketched with it:

* graph (i): the target object ``t`` is the only object of its module ``T`` (Theorem 1(i)); it is
  decoded with :func:`sketchsim.decode.attributes` (known weight);
* graph (ii): ``t`` has ``N_SIBLINGS`` siblings of the same module ``T`` (Theorem 1(ii)); it is
  decoded along its index path with :func:`sketchsim.decode.attributes_on_path` (all-tuple word,
  known weight).

The effective weight is controlled exactly: at depth 2 the output's input list is ``t`` (weight w)
plus siblings sharing 1 − w; at depth 3 the output holds a parent ``p`` (weight √w, module ``P``)
plus a filler parent (1 − √w), and ``p`` holds ``t`` (weight √w) plus siblings sharing 1 − √w.
Positions are shuffled with ``rng``. Attributes are nonnegative unit-ℓ2 vectors of length
``ATTR_DIM``.

Metrics per decoder ``k`` in (i, ii): ``err_k`` (ℓ∞ error over the attribute's coordinates),
``norm_err_k`` = err_k / theory.noise_level(‖s‖, d, h, w) (THEORY.md §2.4: the per-coordinate
noise is ≈ ‖s‖/(c_h w √d), so the normalised error should be ≈ the median of the maximum of
``ATTR_DIM`` standard normal magnitudes, :func:`lmax_median`), ``s_norm_k`` (‖s‖) and ``w_eff_k``.

This module also holds the small generic helpers shared by ``erasure`` and ``unrolling``
(:func:`make_bank`, :func:`unit_nonneg`, :func:`exponent_verdict`, :func:`fit_or_none`, …).
"""
from __future__ import annotations

import math
import os
import warnings

import numpy as np

import sketchsim as ss
from sketchsim import decode
from sketchsim import theory as sst
from sketchsim._validation import min_block_size

NAME = "thm1_attributes"
TITLE = "Theorem 1 — attribute recovery"
STATEMENT = (
    "**Theorem 1 (Attribute Recovery).** Given the overall sketch, the attribute vector x_θ of an "
    "object θ can be approximately recovered, with ℓ∞ error O(δ/w_θ) (δ = Õ(1/√d_sketch)), "
    "(i) when θ is the unique object of its module M(θ), knowing M(θ) (and h, w); "
    "(ii) for any object θ, knowing the index path (i_1, …, i_{h−1}) from the output to θ. "
    "Constant depth is assumed. Decoders (THEORY.md §2.2): (i) x̂ = R_{M,1}ᵀ s/(c_h w), "
    "(ii) x̂ = Aᵀ s/(c_h w_path) with the all-tuple word A, c_h = 2^{−(4h−3)}; predicted ℓ∞ error "
    "≈ q_L·‖s‖/(c_h w √d), i.e. error ∝ d^{−1/2} w^{−1}.")

ATTR_DIM = 8
"""Attribute length L of every object (the ℓ∞ error is a maximum over L coordinates)."""
N_SIBLINGS = 2
"""Siblings of the target (module F for decoder (i), module T for decoder (ii))."""
W_REF = 0.4
"""Weight present in every family's grid: the families are compared at this w."""
TOL_EXPONENT = 0.1
"""An exponent is *consistent* when its 95% interval contains the prediction or |est − pred| < this."""
DECODERS = ("i", "ii")
FIT_FAMILIES = ("hadamard", "haar")
"""Orthonormal families whose rows enter the power-law fits (block-sparse / gaussian are compared
through the normalised error instead)."""

_P2 = [2 ** k for k in range(10, 21)]

PROFILES = {
    "quick": [
        {"family": ["hadamard"], "d_sketch": [2 ** 10, 2 ** 12, 2 ** 14, 2 ** 16],
         "weight": [0.1, 0.2, 0.4, 0.8], "depth": [2, 3], "reps": 3},
        {"family": ["haar"], "d_sketch": [128, 256, 512], "weight": [0.2, 0.4], "depth": [2],
         "reps": 3},
        {"family": ["gaussian"], "d_sketch": [256, 512, 1024], "weight": [0.4], "depth": [2],
         "reps": 3},
        {"family": ["block-sparse"], "d_sketch": [1536, 3072], "block_size": [48],
         "block_prob": [0.25, 0.5], "weight": [0.4], "depth": [2], "reps": 3},
    ],
    "full": [
        {"family": ["hadamard"], "d_sketch": [2 ** 10, 2 ** 12, 2 ** 14, 2 ** 16, 2 ** 18, 2 ** 20],
         "weight": [0.1, 0.2, 0.4, 0.8], "depth": [2, 3], "reps": 6},
        {"family": ["haar"], "d_sketch": [256, 512, 1024], "weight": [0.1, 0.2, 0.4, 0.8],
         "depth": [2, 3], "reps": 4},
        {"family": ["haar"], "d_sketch": [2048], "weight": [0.4], "depth": [2], "reps": 3},
        {"family": ["gaussian"], "d_sketch": [256, 512, 1024, 2048], "weight": [0.2, 0.4, 0.8],
         "depth": [2, 3], "reps": 4},
        {"family": ["block-sparse"], "d_sketch": [1536, 3072, 6144, 12288], "block_size": [48, 96],
         "block_prob": [0.1, 0.25, 0.5], "weight": [0.4], "depth": [2], "reps": 4},
    ],
}


# ============================================================================ shared helpers
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


def exponent_verdict(est, ci, pred, tol=TOL_EXPONENT):
    """(consistent, text): consistent if ``ci`` contains ``pred`` or |est − pred| < ``tol``."""
    lo, hi = ci
    inside = lo <= pred <= hi
    close = abs(est - pred) < tol
    ok = bool(inside or close)
    why = ("interval contains the prediction" if inside else
           f"|est − pred| = {abs(est - pred):.3f} < {tol}" if close else
           f"interval [{lo:.3f}, {hi:.3f}] excludes {pred:g} and |est − pred| = {abs(est - pred):.3f} ≥ {tol}")
    return ok, ("consistent" if ok else "NOT consistent") + f" ({why})"


def fit_or_none(y, X, names):
    """:func:`sketchsim.harness.fitting.fit_power_law`, or None when the rows cannot identify the fit
    (fewer than 2 distinct values of a variable, or too few rows)."""
    from sketchsim.harness.fitting import fit_power_law

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


def fig_link(name):
    """Markdown image link to a figure in paper_figs/ from results/REPORT.md."""
    return f"![{name}](../paper_figs/{name})"


def warm_up():
    """Compile the engine's Numba kernels before the first timed run."""
    with quiet_precondition():
        ss.warm_up()


# ============================================================================ graphs
def build_graph(depth, weight, decoder, rng, L=ATTR_DIM, n_siblings=N_SIBLINGS):
    """A graph whose target ``t`` (module ``T``) sits at ``depth`` with effective weight ``weight``.

    ``decoder == "i"``: every other object has another module (``t`` is unique in ``T``);
    ``decoder == "ii"``: ``t``'s siblings are of module ``T`` too. Returns the Graph and the
    index path of ``t``.
    """
    w = float(weight)
    if not 0 < w <= 1:
        raise ValueError(f"weight must lie in (0, 1]; got {weight!r}")
    sib_module = "T" if decoder == "ii" else "F"
    objects = []

    def obj(oid, module, inputs=()):
        objects.append({"id": oid, "module": module, "attributes": unit_nonneg(rng, L).tolist(),
                        "inputs": list(inputs)})

    def shuffled(items):
        return [items[k] for k in rng.permutation(len(items))]

    def family_list(tw, prefix):
        items = [{"id": "t", "weight": tw}]
        rest = 1.0 - tw
        if rest > 1e-12:
            items += [{"id": f"{prefix}{k}", "weight": rest / n_siblings} for k in range(n_siblings)]
        return shuffled(items)

    if depth == 2:
        out = family_list(w, "s")
        obj("t", "T")
        for it in out:
            if it["id"] != "t":
                obj(it["id"], sib_module)
    elif depth == 3:
        a = math.sqrt(w)
        inner = family_list(a, "s")
        obj("t", "T")
        for it in inner:
            if it["id"] != "t":
                obj(it["id"], sib_module)
        obj("p", "P", inner)
        out = [{"id": "p", "weight": a}]
        if 1.0 - a > 1e-12:
            obj("f", "F")
            obj("q", "P", [{"id": "f", "weight": 1.0}])
            out.append({"id": "q", "weight": 1.0 - a})
        out = shuffled(out)
    else:
        raise ValueError(f"depth must be 2 or 3; got {depth!r}")
    g = ss.Graph(objects, out)
    return g, g.paths("t")[0]


# ============================================================================ contract
def skip(params):
    if int(params["depth"]) not in (2, 3):
        return True, "depth must be 2 or 3"
    return bank_skip(params)


def run_one(params, rng):
    d = int(params["d_sketch"])
    h = int(params["depth"])
    w = float(params["weight"])
    L = int(params.get("attr_dim", ATTR_DIM))
    out = {}
    with quiet_precondition():
        bank = make_bank(params, rng)
        for dec in DECODERS:
            g, path = build_graph(h, w, dec, rng, L)
            s = ss.sketch(g, bank)
            x = g.attributes[g.index["t"]]
            w_eff = g.weight("t")
            if dec == "i":
                xh = decode.attributes(s, bank, "T", h, weight=w_eff, length=L)
            else:
                xh = decode.attributes_on_path(s, bank, path, "T", weight=w_eff, length=L)
            err = float(np.max(np.abs(xh - x)))
            norm = float(np.linalg.norm(s))
            out[f"err_{dec}"] = err
            out[f"norm_err_{dec}"] = err / sst.noise_level(norm, d, h, w_eff)
            out[f"s_norm_{dec}"] = norm
            out[f"w_eff_{dec}"] = float(w_eff)
    return {k: float(v) for k, v in out.items()}


def theory(params):
    d, h, w = int(params["d_sketch"]), int(params["depth"]), float(params["weight"])
    L = int(params.get("attr_dim", ATTR_DIM))
    return {"c_h": sst.depth_constant(h),
            "noise_per_unit_norm": sst.noise_level(1.0, d, h, w),
            "median_norm_err": lmax_median(L)}



# ============================================================================ analysis
def _ok(df, cols):
    cols = [c for c in cols if c in df]
    return df.dropna(subset=cols) if cols else df.iloc[0:0]


def _fit_rows(df, dec, h):
    sub = df[(df["p_depth"] == h) & df["p_family"].isin(FIT_FAMILIES)]
    return _ok(sub, [f"m_err_{dec}", f"m_s_norm_{dec}"])


def _fits(df):
    """{(dec, h): (fit, fit of err/‖s‖, rows)} for the hadamard/haar rows."""
    res = {}
    for dec in DECODERS:
        for h in (2, 3):
            sub = _fit_rows(df, dec, h)
            if not len(sub):
                continue
            X = np.column_stack([sub["p_d_sketch"], sub[f"m_w_eff_{dec}"] if f"m_w_eff_{dec}" in sub
                                 else sub["p_weight"]])
            f = fit_or_none(sub[f"m_err_{dec}"], X, ["d", "w"])
            fa = fit_or_none(sub[f"m_err_{dec}"] / sub[f"m_s_norm_{dec}"], X, ["d", "w"])
            if f is not None:
                res[(dec, h)] = (f, fa, sub)
    return res


def theory_constant(h, s_norm_median, L=ATTR_DIM):
    """Predicted C of error ≈ C·d^{−1/2}·w^{−1}: q_L·‖s‖/c_h (THEORY.md §2.4)."""
    return lmax_median(L) * s_norm_median / sst.depth_constant(h)


def analyze(df):
    L = ATTR_DIM
    qL = lmax_median(L)
    base = {}
    lines = []
    need = ["p_family", "p_depth", "p_d_sketch", "p_weight"]
    if not len(df) or any(c not in df for c in need):
        return {"markdown": "No Theorem 1 runs in the results table.", "baselines": base}
    fits = _fits(df)
    lines.append(
        f"Setting: a target object with nonnegative unit attributes of length L = {L}, effective "
        "weight w set exactly (siblings carry the rest), one bank per run shared by the two graphs. "
        "Fits are log-log least squares of the per-run ℓ∞ error, error ≈ C·d^α·w^β, on the "
        f"orthonormal families ({', '.join(FIT_FAMILIES)}); intervals are 95% t intervals. "
        f"**Verdict rule**: an exponent is consistent with its prediction (α = −½, β = −1) when "
        f"its 95% interval contains the prediction or it lies within ±{TOL_EXPONENT}; the constant "
        "is consistent when C / C_theory lies in [0.5, 2], with C_theory = q_L·median‖s‖/c_h "
        f"(q_L = {qL:.3f}, the median of the largest of L standard normal magnitudes). The violation "
        "rate is the fraction of runs above the fitted 95% prediction bound (≈ 5% expected).")
    rows = []
    verdicts = []
    for (dec, h), (f, fa, sub) in sorted(fits.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        a, b = f.exponent("d"), f.exponent("w")
        va, ta = exponent_verdict(a, f.interval("d"), -0.5)
        vb, tb = exponent_verdict(b, f.interval("w"), -1.0)
        vba, tba = (exponent_verdict(fa.exponent("w"), fa.interval("w"), -1.0) if fa is not None
                    else (None, "n/a"))
        sn = float(np.median(sub[f"m_s_norm_{dec}"]))
        ct = theory_constant(h, sn, L)
        ratio = f.constant / ct
        vc = 0.5 <= ratio <= 2.0
        key = f"thm1.{dec}.depth{h}"
        base.update({f"{key}.alpha_d": a, f"{key}.beta_w": b, f"{key}.C": f.constant,
                     f"{key}.violation_rate": f.violation_rate})
        rows.append([f"({dec})", h, f.n, f"{a:.3f} {fmt_ci(f.interval('d'))}",
                     f"{b:.3f} {fmt_ci(f.interval('w'))}",
                     "—" if fa is None else f"{fa.exponent('w'):.3f} {fmt_ci(fa.interval('w'))}",
                     f"{f.constant:.4g} {fmt_ci(f.constant_ci, 4)}", f"{ct:.4g} ({ratio:.2f}×)",
                     f"{f.violation_rate:.1%}", f"{f.r2:.3f}"])
        verdicts.append(f"- Theorem 1({dec}), depth {h}: α {ta}; β {tb}"
                        + ("" if fa is None else f" (β of error/‖s‖: {tba})")
                        + f"; C/C_theory = {ratio:.2f} → {'consistent' if vc else 'NOT consistent'}.")
    if rows:
        lines.append("")
        lines.append(md_table(["decoder", "depth", "runs", "α (d) [95%]", "β (w) [95%]",
                               "β of error/‖s‖", "C [95%]", "C_theory (C/C_th)", "violation rate",
                               "R²"], rows))
        lines.append("")
        lines += verdicts
        lines.append("")
        lines.append("β is also fitted on error/‖s‖ because ‖s‖ itself varies with w (the target's "
                     "share of the sketch changes): the prediction error ∝ ‖s‖/(c_h w √d) gives "
                     "β = −1 exactly only after that division.")
    else:
        lines.append("\nNo hadamard/haar rows with two or more d and w values: no fit.")

    # normalised error per family (decoder i, depth 2), at any d and at equal d
    sub = _ok(df[df["p_depth"] == 2], ["m_norm_err_i"])
    if len(sub):
        sub = sub.assign(label=family_labels(sub))
        lines.append("")
        lines.append(f"**Families** (decoder (i), depth 2; normalised error = ℓ∞ error / "
                     f"(‖s‖/(c_h w √d)), predicted median q_L = {qL:.3f}):")
        frows = []
        for lab, g in sub.groupby("label", sort=True):
            ne = g["m_norm_err_i"]
            frows.append([lab, len(g), f"{int(g['p_d_sketch'].min())}–{int(g['p_d_sketch'].max())}",
                          f"{ne.median():.3f}", f"[{ne.quantile(0.2):.3f}, {ne.quantile(0.8):.3f}]",
                          f"{ne.median() / qL:.2f}"])
        lines.append("")
        lines.append(md_table(["family", "runs", "d range", "median normalised error", "20–80%",
                               "÷ q_L"], frows))
        for fam, g in sub.groupby("p_family", sort=True):
            base[f"thm1.family.{fam}.median_norm_err"] = float(g["m_norm_err_i"].median())
        # equal-d comparison where several families share a d
        piv = sub.groupby(["p_d_sketch", "label"])["m_norm_err_i"].median().unstack()
        piv = piv[piv.notna().sum(axis=1) >= 2]
        if len(piv):
            lines.append("")
            lines.append("Median normalised error at equal d (only d shared by ≥ 2 families):")
            lines.append("")
            lines.append(md_table(["d"] + list(piv.columns),
                                  [[int(dd)] + ["—" if _isnan(v) else f"{v:.3f}" for v in r]
                                   for dd, r in piv.iterrows()]))
    # depth constant
    dc_rows = []
    for h in (2, 3):
        for dec in DECODERS:
            g = _ok(df[(df["p_depth"] == h) & df["p_family"].isin(FIT_FAMILIES)],
                    [f"m_err_{dec}", f"m_s_norm_{dec}"])
            if not len(g):
                continue
            k = g[f"m_err_{dec}"] * np.sqrt(g["p_d_sketch"]) * g[f"m_w_eff_{dec}"] / g[f"m_s_norm_{dec}"]
            pred = qL / sst.depth_constant(h)
            dc_rows.append([h, f"({dec})", f"{k.median():.4g}", f"{pred:.4g}", f"{k.median() / pred:.3f}"])
            base[f"thm1.{dec}.depth{h}.median_norm_err"] = float(g[f"m_norm_err_{dec}"].median())
    if dc_rows:
        lines.append("")
        lines.append("**Depth constant**: median of error·√d·w/‖s‖, predicted q_L/c_h = q_L·2^{4h−3}:")
        lines.append("")
        lines.append(md_table(["depth", "decoder", "measured", "predicted", "ratio"], dc_rows))
    lines.append("")
    lines += [fig_link(n) for n in FIGURES]
    return {"markdown": "\n".join(lines), "baselines": base}


# ============================================================================ figures
FIGURES = ("thm1_error_vs_d.png", "thm1_error_vs_inv_w.png", "thm1_depth_constant.png",
           "thm1_families.png")


def _ref_weight(sub):
    ws = sub["p_weight"].unique()
    if W_REF in ws:
        return W_REF
    return float(sub["p_weight"].mode().iloc[0])


def figures(df, outdir):
    from sketchsim.harness.plots import band_plot, new_figure, reference_line, save_figure

    paths = []
    qL = lmax_median(ATTR_DIM)
    if not len(df) or any(c not in df for c in ("p_family", "p_depth", "p_d_sketch", "p_weight")):
        return paths
    df = df.assign(label=family_labels(df)) if len(df) else df
    # 1. error vs d per family, depth 2, decoder (i), at the reference weight
    sub = _ok(df[df["p_depth"] == 2], ["m_err_i"]) if len(df) else df
    if len(sub):
        wr = _ref_weight(sub)
        sub = sub[sub["p_weight"] == wr]
        fig, (ax,) = new_figure(width=6.0, height=4.2)
        band_plot(ax, sub, "p_d_sketch", "m_err_i", hue="label")
        ds = np.array(sorted(sub["p_d_sketch"].unique()), dtype=float)
        C = theory_constant(2, float(sub["m_s_norm_i"].median())) / wr
        reference_line(ax, ds, C / np.sqrt(ds), label=r"theory $q_L\|s\|/(c_2 w\sqrt{d})$ ∝ $d^{-1/2}$")
        ax.set_xlabel("d_sketch (coordinates)")
        ax.set_ylabel("ℓ∞ error (attribute units)")
        ax.set_title(f"Theorem 1(i), depth 2, w = {wr:g}")
        ax.legend(fontsize=7)
        paths.append(save_figure(fig, os.path.join(outdir, FIGURES[0])))
    # 2. error vs 1/w at a fixed d, per depth, both decoders
    fit_df = df[df["p_family"].isin(FIT_FAMILIES)] if len(df) else df
    depths = [h for h in (2, 3) if len(fit_df) and (fit_df["p_depth"] == h).any()]
    if depths:
        fig, axes = new_figure(ncols=len(depths), width=4.8, height=4.0)
        drawn = False
        for ax, h in zip(axes, depths):
            g = _ok(fit_df[fit_df["p_depth"] == h], ["m_err_i", "m_err_ii"])
            nw = g.groupby("p_d_sketch")["p_weight"].nunique()
            cand = nw[nw >= 2].index
            if not len(cand):
                ax.set_axis_off()
                continue
            dref = int(max(cand))
            g = g[g["p_d_sketch"] == dref]
            long = _long(g, ["err"], extra=["p_weight"])
            long["inv_w"] = 1.0 / long["p_weight"]
            band_plot(ax, long, "inv_w", "err", hue="decoder", label_fmt="Theorem 1({})")
            iw = np.array(sorted(long["inv_w"].unique()))
            C = theory_constant(h, float(long["s_norm"].median())) / math.sqrt(dref)
            reference_line(ax, iw, C * iw, label="theory ∝ 1/w")
            ax.set_xscale("log")
            ax.set_xticks(iw)
            ax.set_xticklabels([f"{v:.3g}" for v in iw])
            ax.minorticks_off()
            ax.set_xlabel("1/w (inverse effective weight)")
            ax.set_ylabel("ℓ∞ error (attribute units)")
            ax.set_title(f"depth {h}, d = {dref} (hadamard/haar)")
            ax.legend(fontsize=7)
            drawn = True
        if drawn:
            paths.append(save_figure(fig, os.path.join(outdir, FIGURES[1])))
        else:
            import matplotlib.pyplot as plt
            plt.close(fig)
    # 3. depth constant
    if depths:
        long = _long(_ok(fit_df, ["m_err_i", "m_err_ii"]), ["err", "norm_err"], extra=["p_depth"])
        if len(long):
            long["k"] = long["err"] * np.sqrt(long["p_d_sketch"]) * long["w_eff"] / long["s_norm"]
            fig, axes = new_figure(ncols=2, width=4.8, height=4.0)
            band_plot(axes[0], long, "p_depth", "k", hue="decoder", label_fmt="Theorem 1({})", logx=False)
            hs = np.array(sorted(long["p_depth"].unique()), dtype=float)
            reference_line(axes[0], hs, qL * 2.0 ** (4 * hs - 3), label=r"theory $q_L\,2^{4h-3}$")
            axes[0].set_xticks(hs)
            axes[0].set_xlabel("depth h (levels)")
            axes[0].set_ylabel("error·√d·w/‖s‖ (dimensionless)")
            axes[0].set_title("depth constant 1/c_h")
            axes[0].legend(fontsize=7)
            long["hd"] = long["decoder"].map(lambda s: f"({s})") + " h=" + long["p_depth"].astype(int).astype(str)
            band_plot(axes[1], long, "p_d_sketch", "norm_err", hue="hd", logy=True)
            ds = np.array(sorted(long["p_d_sketch"].unique()), dtype=float)
            reference_line(axes[1], ds, np.full(len(ds), qL), label=f"theory q_L = {qL:.2f}")
            axes[1].set_xlabel("d_sketch (coordinates)")
            axes[1].set_ylabel("normalised ℓ∞ error (noise units)")
            axes[1].set_title("error / (‖s‖/(c_h w √d))")
            axes[1].legend(fontsize=7)
            paths.append(save_figure(fig, os.path.join(outdir, FIGURES[2])))
    # 4. families side by side
    sub = _ok(df[df["p_depth"] == 2], ["m_norm_err_i"]) if len(df) else df
    if len(sub):
        import matplotlib.pyplot as plt

        fig, axes = new_figure(ncols=2, width=5.2, height=4.2)
        band_plot(axes[0], sub, "p_d_sketch", "m_norm_err_i", hue="label")
        ds = np.array(sorted(sub["p_d_sketch"].unique()), dtype=float)
        reference_line(axes[0], ds, np.full(len(ds), qL), label=f"theory q_L = {qL:.2f}")
        axes[0].set_xlabel("d_sketch (coordinates)")
        axes[0].set_ylabel("normalised ℓ∞ error (noise units)")
        axes[0].set_title("Theorem 1(i), depth 2, all w")
        axes[0].legend(fontsize=7)
        labels = sorted(sub["label"].unique())
        data = [sub.loc[sub["label"] == lab, "m_norm_err_i"].values for lab in labels]
        axes[1].boxplot(data, whis=(20, 80), showfliers=False)
        axes[1].set_xticks(range(1, len(labels) + 1))
        axes[1].set_xticklabels([lab.replace(" b=", "\nb=") for lab in labels], fontsize=7, rotation=20)
        axes[1].axhline(qL, ls="--", color="k", lw=1.2, label="theory q_L")
        axes[1].set_ylabel("normalised ℓ∞ error (noise units)")
        axes[1].set_title("families side by side (box 25–75%, whiskers 20–80%)", fontsize=9)
        axes[1].legend(fontsize=7)
        paths.append(save_figure(fig, os.path.join(outdir, FIGURES[3])))
        plt.close("all")
    return paths


def _long(df, metrics, extra=()):
    """Stack the per-decoder metric columns into rows with a ``decoder`` column."""
    import pandas as pd

    parts = []
    for dec in DECODERS:
        cols = {f"m_{m}_{dec}": m for m in metrics}
        cols.update({f"m_s_norm_{dec}": "s_norm", f"m_w_eff_{dec}": "w_eff"})
        keep = ["p_d_sketch"] + [c for c in extra if c != "p_d_sketch"]
        part = df[keep + [c for c in cols if c in df]].rename(columns=cols)
        part["decoder"] = dec
        parts.append(part)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
