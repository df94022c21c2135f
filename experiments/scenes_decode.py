"""Digit scenes — counting (Theorem 3) and attribute recovery (Theorem 1(ii)) on real activations.

Paper §1.1 applications on the trained digit network of :mod:`sketchsim.scenes` (ten classes, 32
hidden ReLU units, cached under ``results/cache/scenes``). A run draws one bank and ``BATCH`` scenes
of held-out digits with ``n_slots = 1/weight`` slots, every slot full (uniform weights: every digit
has the common effective weight w* = 1/n_slots that Theorem 3's count needs), sketches them (batched
per shared structure) and decodes, from each overall sketch alone:

* **counting** (Theorem 3(i)): n̂_c = ``decode.count(s, bank, "digit-c", 3, w*)`` for each of the
  ten classes; ground truth = the network's own predictions (the modules of the scene graph);
* **attribute recovery** (Theorem 1(ii)): x̂ = ``decode.attributes_on_path(s, bank, path,
  "digit-c", w*)`` for each digit (its slot path and module known), classified with the network's
  own head (x̂ rescaled by the median hidden norm); agreement with the network's prediction on the
  true image;
* extension (not the paper): the path-matched least-squares decoder ``decode_ls.attributes_ls`` on
  up to ``LS_CAP`` digits per run (key ``ls``).

Noise model (THEORY.md §2.4): σ = ‖s‖/(c_3 w* √d) per decoded coordinate, c_3 = 2^{−9}; the
predicted count accuracy is P(|N(0, σ)| < ½) and the predicted classification accuracy is simulated
by classifying x + σ·z with the head (``SIM_DRAWS`` Gaussian draws per digit). The digit features
are real, correlated and sparse (ReLU), not the i.i.d. draws of the synthetic studies.
"""
from __future__ import annotations

import math

import numpy as np

from sketchsim import decode, decode_ls
from sketchsim import theory as T
from sketchsim.harness import studykit as sk
from sketchsim.harness.claims import (PAPER_FAMILIES, SUBSTITUTE_FAMILIES, Claim, rate_test, ratio_test)

NAME = "scenes_decode"
TITLE = "Digit scenes — counting and attribute recovery from real activations (§1.1, Theorems 1, 3)"
ORDER = 90
STATEMENT = (
    "**Theorem 3(i)** (paper §3.3) *Frequency Recovery: for a module M\\* at constant depth whose "
    "objects share the effective weight w\\*, we can estimate the number of objects produced by M\\* "
    "with additive error O(δ/w\\*).* **Theorem 1(ii)** *Attribute Recovery along a known path: ℓ∞ "
    "error O(δ/w).* δ = Õ(1/√d). Applied here (paper §1.1) to a trained digit network: how many "
    "digits of each class a scene holds, and each digit's hidden embedding, from the scene's overall "
    "sketch alone.")
METHOD = (
    "Scenes of held-out digits (scikit-learn's bundled 8×8 digits), n_slots = 1/w\\* slots all full, "
    "scene graph output → scene → digit (digits at depth 3, module `digit-<predicted class>`, "
    "attributes = unit-ℓ2 hidden activations). Per run: one bank, 32 scenes. Tests per family: "
    "**count slope** — weighted slope of n̂ on n over every (scene, class) (predicted 1: unbiased); "
    "**α_count / β_count** — exponents of d and w\\* of the RMS count error / ‖s‖ (predicted −½, −1); "
    "**attr slope** and **α_attr / β_attr** likewise for the decoded embedding coordinates. Noise "
    "model (separate `.noise` claims, THEORY.md §2.4): **count_noise** — geometric mean over runs of "
    "RMS(n̂ − n)/σ (predicted 1); **count_rate** — exact-count rate vs P(|N(0, σ)| < ½) (±0.05); "
    "**attr_noise** — median normalised ℓ∞ error / q_32; **class_rate** — head agreement vs the rate "
    "simulated from x + σz (±0.05). σ = ‖s‖/(c_3 w\\* √d), c_3 = 2^{−9}.")

BATCH = 32
LS_CAP = 4
LS_MAX_D = 4096
"""The LS extension runs at d ≤ LS_MAX_D only (its design matrix costs ~1 s per digit at d = 2^16)."""
SIM_DRAWS = 16
L = 32                      # hidden units of the digit network (attribute length)
COUNT_TARGET = 0.9
"""Per-class exact-count accuracy the details extrapolate to (σ ≤ 0.5/Φ⁻¹(0.95) = 0.304)."""

_WHY = ("depth 3 only (digits sit at depth 3 of a scene); c_3 = 2^{−9} makes the paper families' slope "
        "tests need d ≫ 2048 (dense) for power")
SCOPE = {name: {"families": PAPER_FAMILIES + SUBSTITUTE_FAMILIES, "depths": (3,), "why": _WHY}
         for name in ("scenes.count", "scenes.attr")}

FIG_COUNT = "scenes_count_acc_vs_d.png"
FIG_ATTR = "scenes_attr_acc_vs_d.png"
FIGURES = (FIG_COUNT, FIG_ATTR)


def _g(family, d, weight, reps, b=None, q=None):
    return sk.family_grid(family, reps, b, q, d_sketch=d, weight=weight)


PROFILES = {
    "quick": [
        _g("hadamard", [2 ** 10, 2 ** 12, 2 ** 14], [1.0, 0.5], 2),
        _g("haar", [64, 128, 256], [1.0, 0.5], 2),
        _g("gaussian", [128, 256, 512], [1.0, 0.5], 2),
        _g("block-sparse", [384, 576, 768], [1.0, 0.5], 2, 48, 0.5),
    ],
    "full": [
        _g("hadamard", [2 ** 12, 2 ** 14, 2 ** 16, 2 ** 18], [1.0, 0.5, 0.25], 6),
        _g("haar", [64, 128, 256, 512], [1.0, 0.5, 0.25], 6),
        _g("gaussian", [128, 256, 512, 1024, 2048], [1.0, 0.5, 0.25], 6),
        _g("block-sparse", [768, 1536, 3072, 6144], [1.0, 0.5, 0.25], 6, 48, 0.5),
    ],
}


def skip(params):
    w = float(params["weight"])
    n = round(1.0 / w)
    if not 1 <= n <= 4 or abs(n * w - 1.0) > 1e-9:
        return True, "weight must be 1/n_slots with n_slots ∈ {1, 2, 3, 4}"
    return sk.bank_skip(params, dense_max=2048)


warm_up = sk.warm_up


def theory(params):
    return {"alpha_d": -0.5, "beta_w": -1.0, "c_3": T.depth_constant(3)}


def run_one(params, rng):
    with sk.one_blas_thread():
        return _run_one(params, rng)


def _run_one(params, rng):
    from sketchsim import scenes
    from scipy.special import erf

    w = float(params["weight"])
    n_slots = round(1.0 / w)
    d = int(params["d_sketch"])
    net = sk.digit_net()
    scale = sk.hidden_scale(net)
    with sk.quiet_precondition():
        bank = sk.make_bank(params, rng)
        sc = scenes.compose_scenes(BATCH, int(rng.integers(2 ** 31)), pool=net.test_idx, n_slots=n_slots,
                                   p_empty=0.0)
        gs = scenes.scene_graphs(sc, net, weights="uniform")
        S = sk.sketch_graphs(gs, bank)
        # a class absent from every scene is still a legitimate question ("how many 2s?": 0)
        bank.known_modules.update(f"digit-{c}" for c in net.classes)
        norms = np.linalg.norm(S, axis=1)
        sig = T.noise_level(norms, d, 3, w)                         # per scene
        # ---- counting (Theorem 3(i)), every class of every scene
        truth = np.array([[sum(g.module(o) == f"digit-{c}" for o in g.ids) for c in net.classes] for g in gs],
                         dtype=float)
        est = np.column_stack([decode.count(S, bank, f"digit-{c}", 3, w) for c in net.classes])
        err = est - truth
        sg = np.broadcast_to(sig[:, None], err.shape)
        exact = np.rint(est) == truth
        p_exact = erf(0.5 / (sg * math.sqrt(2.0)))
        # ---- attribute recovery (Theorem 1(ii)) per digit, batched per (path, module)
        items = [(b, o) for b, g in enumerate(gs) for o in g.ids if g.module(o).startswith("digit-")]
        groups = {}
        for b, o in items:
            g = gs[b]
            groups.setdefault((tuple(g.paths(o)[0]), g.module(o)), []).append((b, o))
        Xh, X, sx, cls = [], [], [], []
        for (path, module), its in groups.items():
            bs = [b for b, _ in its]
            xh = decode.attributes_on_path(S[bs], bank, list(path), module, weight=w, length=L)
            Xh.append(np.atleast_2d(xh))
            X.append(np.array([gs[b].attributes[gs[b].index[o]] for b, o in its]))
            sx.append(sig[bs])
            cls += [int(module.split("-")[1])] * len(its)
        Xh, X, sx, cls = np.vstack(Xh), np.vstack(X), np.concatenate(sx), np.array(cls)
        linf = np.max(np.abs(Xh - X), axis=1)
        ok = sk.head_classes(net, Xh, scale) == cls
        noisy = X[:, None, :] + sx[:, None, None] * rng.standard_normal((len(X), SIM_DRAWS, L))
        p_ok = (sk.head_classes(net, noisy.reshape(-1, L), scale).reshape(len(X), SIM_DRAWS)
                == cls[:, None]).mean(axis=1)
        # ---- extension: path-matched least squares on the first LS_CAP digits
        ls_ok, ls_err = [], []
        for b, o in (items[:LS_CAP] if d <= LS_MAX_D else []):
            xl = decode_ls.attributes_ls(S[b], bank, gs[b], o)
            xt = gs[b].attributes[gs[b].index[o]]
            ls_err.append(float(np.sqrt(np.mean((xl - xt) ** 2))))
            ls_ok.append(bool(sk.head_classes(net, xl, scale)[0] == int(gs[b].module(o).split("-")[1])))
    sig_run = float(np.mean(sig))
    return {
        "s_norm": float(norms.mean()), "sigma": sig_run, "n_slots": float(n_slots),
        # count
        "count_rms_err": float(np.sqrt(np.mean(err ** 2))),
        "count_z_rms": float(np.sqrt(np.mean((err / sg) ** 2))),
        "count_exact": float(exact.sum()), "count_n": float(exact.size),
        "count_p_exact": float(p_exact.sum()),
        "count_digit_exact": float(exact[truth > 0].sum()), "count_digit_n": float((truth > 0).sum()),
        "sxy_count": float(est.ravel() @ truth.ravel()), "sxx_count": float(truth.ravel() @ truth.ravel()),
        "syy_count": float(est.ravel() @ est.ravel()), "n_count": float(truth.size), "sigma_count": sig_run,
        # attributes
        "attr_rms_err": float(np.sqrt(np.mean((Xh - X) ** 2))),
        "attr_norm_err_med": float(np.median(linf / sx)),
        "class_ok": float(ok.sum()), "class_n": float(len(ok)), "class_p_ok": float(p_ok.sum()),
        "sxy_attr": float(np.sum(Xh * X)), "sxx_attr": float(np.sum(X * X)), "syy_attr": float(np.sum(Xh * Xh)),
        "n_attr": float(X.size), "sigma_attr": sig_run,
        # extension
        "ls_rms_err": float(np.mean(ls_err)) if ls_err else math.nan, "ls_ok": float(sum(ls_ok)), "ls_n": float(len(ls_ok)),
    }


# ============================================================================ claims
def _groups(df):
    return [(fam, df[df["p_family"] == fam]) for fam in sk.families_in(df)]


def claims(df):
    out = []
    if not len(df):
        return out
    for fam, sub in _groups(df):
        note = sk.runs_note(sub) + ((", " + sk.bq_note(sub)) if sk.bq_note(sub) else "")
        ssn = sub["m_s_norm"]
        # ---- count: the paper's statement (unbiased, error ∝ d^-1/2 w^-1)
        tests = [sk.slope_of(sub, "count", "count_slope", "slope of n̂ on n (count)",
                             source="Theorem 3(i): unbiased count")]
        et, notes = sk.exponent_tests(sub, sub["m_count_rms_err"] / ssn, [
            ("p_d_sketch", "d", -0.5, "alpha_count", "α, exponent of d (count error/‖s‖)",
             "Theorem 3(i): error O(δ/w*), δ ∝ d^-1/2"),
            ("p_weight", "w", -1.0, "beta_count", "β, exponent of w* (count error/‖s‖)",
             "Theorem 3(i): error O(δ/w*)", 2)])
        out.append(Claim("scenes.count", fam, 3, tests + et, note="; ".join([note] + notes)))
        # ---- count: the noise model
        n_ex, n_all, p_ex = sub["m_count_exact"].sum(), sub["m_count_n"].sum(), sub["m_count_p_exact"].sum()
        out.append(Claim("scenes.count.noise", fam, 3, [
            ratio_test("count_noise", "RMS(n̂ − n)/σ (geometric mean over runs)", sub["m_count_z_rms"],
                       source="THEORY §2.4: σ = ‖s‖/(c_3 w* √d)"),
            rate_test("count_rate", f"exact-count rate (predicted {p_ex / n_all:.3f})", int(n_ex), int(n_all),
                      p_ex / n_all, tol=0.05, kind="equal",
                      source="P(|N(0, σ)| < ½) averaged over (scene, class)"),
        ], note=note))
        # ---- attributes: the paper's statement
        tests = [sk.slope_of(sub, "attr", "attr_slope", "slope of x̂ on x (embedding coordinates)",
                             source="Theorem 1(ii): unbiased along the path")]
        et, notes = sk.exponent_tests(sub, sub["m_attr_rms_err"] / ssn, [
            ("p_d_sketch", "d", -0.5, "alpha_attr", "α, exponent of d (attribute RMS error/‖s‖)",
             "Theorem 1: error O(δ/w), δ ∝ d^-1/2"),
            ("p_weight", "w", -1.0, "beta_attr", "β, exponent of w (attribute RMS error/‖s‖)",
             "Theorem 1: error O(δ/w)", 2)])
        out.append(Claim("scenes.attr", fam, 3, tests + et, note="; ".join([note] + notes)))
        # ---- attributes: the noise model on real correlated features
        ok, n, p_ok = sub["m_class_ok"].sum(), sub["m_class_n"].sum(), sub["m_class_p_ok"].sum()
        out.append(Claim("scenes.attr.noise", fam, 3, [
            ratio_test("attr_noise", "median normalised ℓ∞ error / q_32 (median over runs)",
                       sub["m_attr_norm_err_med"] / sk.lmax_median(L), statistic="median",
                       source=f"THEORY §2.4: ℓ∞ ≈ q_32·σ, q_32 = {sk.lmax_median(L):.3f}"),
            rate_test("class_rate", f"head agreement on x̂ (predicted {p_ok / n:.3f})", int(ok), int(n),
                      p_ok / n, tol=0.05, kind="equal",
                      source="head(x + σz) simulated with σ of THEORY §2.4"),
        ], note=note))
    return out


# ============================================================================ report
def _d90(sub, w):
    """d at which the count is exact with probability COUNT_TARGET for w*, extrapolated from the
    measured RMS count error at the largest d with σ ∝ d^-1/2 (and ∝ 1/w* from the nearest w)."""
    from scipy.stats import norm

    sig_need = 0.5 / norm.ppf(0.5 + COUNT_TARGET / 2)
    dmax = sub["p_d_sketch"].max()
    top = sub[sub["p_d_sketch"] == dmax]
    wn = top["p_weight"].iloc[(top["p_weight"] - w).abs().argsort().iloc[0]]
    e = float(top[top["p_weight"] == wn]["m_count_rms_err"].mean()) * wn / w
    return dmax * (e / sig_need) ** 2


def details(df):
    if not len(df):
        return ""
    rows = []
    for fam, sub in _groups(df):
        for (dd, w), r in sub.groupby(["p_d_sketch", "p_weight"]):
            rows.append([fam, int(dd), f"{w:g}", len(r),
                         f"{r['m_count_exact'].sum() / r['m_count_n'].sum():.3f}",
                         f"{r['m_count_digit_exact'].sum() / max(r['m_count_digit_n'].sum(), 1):.3f}",
                         f"{r['m_count_p_exact'].sum() / r['m_count_n'].sum():.3f}",
                         f"{r['m_class_ok'].sum() / r['m_class_n'].sum():.3f}",
                         f"{r['m_class_p_ok'].sum() / r['m_class_n'].sum():.3f}",
                         (f"{r['m_ls_ok'].sum() / r['m_ls_n'].sum():.3f}" if r["m_ls_n"].sum() > 0 else "—"),
                         sk.fmt_num(float(r["m_attr_rms_err"].mean())), sk.fmt_num(float(r["m_ls_rms_err"].mean()))])
    out = ["### Accuracy vs d (count: every (scene, class); digit: classes present; class: head on x̂)\n",
           sk.md_table(["family", "d", "w*", "runs", "count exact", "count exact (present)", "predicted",
                        "head agreement", "predicted", "head agreement LS (ext.)", "RMS err x̂", "RMS err LS"],
                       rows)]
    ext = []
    for fam, sub in _groups(df):
        ext.append([fam] + [f"{_d90(sub, w):.3g}" for w in (1.0, 0.5, 0.25)])
    out += ["\n### Where counting becomes usable (extrapolated, σ ∝ d^-1/2 w*^-1)\n",
            f"d at which one class count is exact with probability {COUNT_TARGET:g}, from the measured RMS "
            "error at each family's largest d. w* = 0.25 is a full 4-slot scene; depth-3 counts need "
            "d in the millions there (c_3 = 2^-9).\n",
            sk.md_table(["family", "w* = 1", "w* = 0.5", "w* = 0.25"], ext),
            "\n*LS (extension, not the paper)*: `decode_ls.attributes_ls` knows the scene's structure "
            f"(modules = predicted classes, slots, weights) and fits all words of the path; first {LS_CAP} "
            "digits per run."]
    return "\n".join(out)


def figures(df, outdir):
    import os

    from sketchsim.harness.plots import new_figure, save_figure

    written = []
    if not len(df):
        return written
    for fname, num, den, pred, ylabel in (
            (FIG_COUNT, "m_count_exact", "m_count_n", "m_count_p_exact", "exact-count rate (per class)"),
            (FIG_ATTR, "m_class_ok", "m_class_n", "m_class_p_ok", "head agreement on decoded embedding")):
        fig, (ax,) = new_figure(width=6.4, height=4.2)
        for fam, sub in _groups(df):
            for w, r in sub.groupby("p_weight"):
                a = r.groupby("p_d_sketch")[[num, den, pred]].sum()
                line, = ax.plot(a.index, a[num] / a[den], "o-", label=f"{fam}, w*={w:g}")
                ax.plot(a.index, a[pred] / a[den], ":", color=line.get_color())
        ax.set_xscale("log", base=2)
        ax.set_xlabel("sketch dimension d")
        ax.set_ylabel(ylabel)
        ax.set_ylim(0, 1.02)
        ax.set_title("measured (solid) vs noise-model prediction (dotted)")
        ax.legend(fontsize=7, ncol=2)
        written.append(save_figure(fig, os.path.join(outdir, fname)))
    return written
