"""Digit scenes — learning new modules from emerging clusters of object sketches (paper §1.1).

The network knows digits 0–7 only (``train_digit_net(0, classes=range(8))``); scenes holding 8s and
9s arrive. Every digit is typed by the 0–7 network (module ``digit-<predicted class>``, so an 8 or a
9 is typed wrongly) and its attributes are the network's unit-ℓ2 hidden activations. A run:

1. **split**: the held-out 0–7 digits (``net.test_idx``) and all 8s and 9s (never seen in training)
   are split in halves from the run's rng: *arrival* (drawn into scenes) and *test*;
2. **arrival**: ``N_SCENES`` scenes (4 full slots, uniform weights) of arrival digits; the object
   sketch s_object of every digit (:func:`sketchsim.sketch_objects`) goes into a
   :class:`~sketchsim.repository.SketchRepository` with metadata scene, slot and module (= the
   predicted class). A digit is a leaf of its scene graph, so its object sketch depends only on its
   module and attributes: it is computed from the one-digit graph, batched per module (bit-identical
   to the digit's object sketch inside the scene graph, and 8 batches instead of one per scene);
3. **representation** of each arrival digit, the only thing that differs between the two
   procedures: *sketch* — x̂ = 16·R_{M,1}ᵀ R_1ᵀ s_object read from the repository's object row
   (the R_1-slot branch of s_object, see :func:`sketchsim.decode.object_sketch`; M = the stored
   module); *raw* (the reference) — the exact embedding x;
4. **novelty**: score 1 − cos(rep, p_M), p_M = the mean training embedding of the predicted class
   M (the existing module's own prototype); the ``FLAG_FRAC`` highest-scoring objects are flagged;
5. **clusters**: KMeans (``K_NEW`` clusters, fixed seed shared by both procedures) on the flagged
   unit-normalised representations; **purity** = Σ_clusters (largest true-label count) / #flagged;
6. **new modules**: one nearest-centroid module per cluster (its unit centroid), named after its
   majority true label (the oracle naming of a discovered cluster, used for scoring only); a
   held-out test 8 or 9 (its exact embedding: a module runs on the network's activations) is given
   the name of the nearest new centroid (cosine); **accuracy** = share given their true label.
   Reported only: the recall of 8s and 9s among the flagged objects, and the share of held-out 0–7
   digits that the grown network (old prototypes and new centroids) still gives their own class.

Pre-registered (written before any run of this study): the sketch procedure is judged against the
raw-embedding reference on the same scenes, split and KMeans seed, at the largest d of each family
in the profile (smaller d are reported in the details, not judged):

* ``scenes.emerging.purity`` — mean over runs of purity(sketch) − purity(raw) ≥ −0.10 (``MARGIN``);
* ``scenes.emerging.accuracy`` — mean over runs of accuracy(sketch) − accuracy(raw) on held-out
  8s and 9s ≥ −0.10;

each a :func:`~sketchsim.harness.claims.mean_test` (one-sided, ``kind="at_least"``) with
resolution 0.10 (the 95% interval's half-width must be ≤ 0.10 to tell a shortfall of the margin).
Expected noise (THEORY.md §2.4 reasoning for a leaf object sketch): ‖x̂ − x‖ ≈ √(c·L/d) with L = 32
and c of a few units, i.e. ~0.4 at d = 1024 for orthonormal families, larger for gaussian and D(b, q, d).
"""
from __future__ import annotations

import os
import tempfile

import numpy as np

from sketchsim.harness import studykit as sk
from sketchsim.harness.claims import PAPER_FAMILIES, SUBSTITUTE_FAMILIES, Claim, mean_test

NAME = "scenes_emerging"
TITLE = "Digit scenes — learning new modules from emerging clusters of object sketches (§1.1)"
ORDER = 92
STATEMENT = (
    "**Paper §1.1** *(Learning New Modules)*: *we start with a bare-bones modular network and want to "
    "grow it. We feed it inputs and examine the resulting sketches for emerging clusters. When we find "
    "such a cluster, we use its points to train a corresponding (reversible) module.*")
METHOD = (
    "Digit network trained on 0–7 only; arrival scenes (4 slots) hold held-out 0–7 digits and unseen 8s "
    "and 9s, each typed by the 0–7 network. Object sketches of the digits are stored in a sketch "
    "repository; each digit's attributes are read back from its object sketch (x̂ = 16·R_{M,1}ᵀR_1ᵀ "
    "s_object). Novelty = 1 − cos(x̂, prototype of the predicted class); the top 40 % are clustered "
    "(KMeans, 4 clusters); one nearest-centroid module per cluster, scored on the exact embeddings of "
    "held-out 8s and 9s (nearest new centroid, named by its majority label). The reference runs the same "
    "procedure on the exact embeddings x. Tests (at the largest d of each family): **purity** — mean "
    "over runs of purity(sketch) − purity(raw) ≥ −0.10; **accuracy** — mean over runs of "
    "accuracy(sketch) − accuracy(raw) on held-out 8s and 9s ≥ −0.10 (margins pre-registered).")

N_SCENES = 60
N_SLOTS = 4
FLAG_FRAC = 0.4
K_NEW = 4
NEW_CLASSES = (8, 9)
MARGIN = 0.10
RESOLUTION = 0.10
L = 32
PROCS = ("raw", "sketch")

_WHY = "judged at the largest d of each family in the profile; smaller d are reported in the details"
SCOPE = {n: {"families": PAPER_FAMILIES + SUBSTITUTE_FAMILIES, "depths": (None,), "why": _WHY}
         for n in ("scenes.emerging.purity", "scenes.emerging.accuracy")}
FIG_ACC = "scenes_emerging_accuracy_vs_d.png"
FIG_PUR = "scenes_emerging_purity_vs_d.png"
FIGURES = (FIG_ACC, FIG_PUR)


PROFILES = {
    "quick": [
        sk.family_grid("hadamard", 5, d_sketch=[1024]),
        sk.family_grid("haar", 5, d_sketch=[256]),
        sk.family_grid("gaussian", 5, d_sketch=[512]),
        sk.family_grid("block-sparse", 5, 48, 0.5, d_sketch=[768]),
    ],
    "full": [
        sk.family_grid("hadamard", 10, d_sketch=[256, 1024, 4096, 16384]),
        sk.family_grid("haar", 10, d_sketch=[256, 512, 1024]),
        sk.family_grid("gaussian", 10, d_sketch=[256, 512, 1024]),
        sk.family_grid("block-sparse", 10, 48, 0.5, d_sketch=[768, 1536, 3072]),
    ],
}


def skip(params):
    return sk.bank_skip(params)


warm_up = sk.warm_up


def _net():
    return sk.digit_net(classes=range(8))


def _prototypes(net):
    """Unit mean training embedding per known class (the existing modules' own prototypes)."""
    from sketchsim.scenes import load_digit_data

    X, y = load_digit_data()
    F = net.features(X[net.train_idx])
    yt = y[net.train_idx]
    P = np.array([F[yt == c].mean(axis=0) for c in net.classes])
    return P / np.linalg.norm(P, axis=1, keepdims=True)


def _unit(A):
    A = np.atleast_2d(np.asarray(A, dtype=float))
    n = np.linalg.norm(A, axis=1, keepdims=True)
    return A / np.where(n > 0, n, 1.0)


def _grow(rep, modules, truth, protos, classes, seed, test_F, test_y):
    """Novelty → KMeans → nearest-centroid modules: (purity, correct per test 8/9, correct per test
    0–7 by the grown network, true labels of the flagged objects)."""
    from sklearn.cluster import KMeans

    U = _unit(rep)
    pidx = np.searchsorted(classes, modules)
    novelty = 1.0 - np.einsum("ij,ij->i", U, protos[pidx])
    n_flag = int(round(FLAG_FRAC * len(U)))
    flagged = np.argsort(-novelty, kind="stable")[:n_flag]
    km = KMeans(n_clusters=K_NEW, n_init=4, random_state=seed).fit(U[flagged])
    lab = km.labels_
    ft = truth[flagged]
    purity, names, cents = 0, [], []
    for j in range(K_NEW):
        members = ft[lab == j]
        if not len(members):
            continue
        vals, cnt = np.unique(members, return_counts=True)
        purity += int(cnt.max())
        names.append(int(vals[np.argmax(cnt)]))
        cents.append(U[flagged][lab == j].mean(axis=0))
    cents = _unit(np.array(cents))
    names = np.array(names)
    new = np.isin(test_y, NEW_CLASSES)
    pred_new = names[np.argmax(_unit(test_F[new]) @ cents.T, axis=1)]
    C = np.vstack([protos, cents])
    grown = np.concatenate([classes, names])[np.argmax(_unit(test_F[~new]) @ C.T, axis=1)]
    return purity / n_flag, pred_new == test_y[new], grown == test_y[~new], ft


def run_one(params, rng):
    with sk.one_blas_thread():
        return _run_one(params, rng)


def _run_one(params, rng):
    import sketchsim as ss
    from sketchsim import scenes
    from sketchsim.matrices import module_name, tuple_name
    from sketchsim.repository import SketchRepository

    net = _net()
    X, y = scenes.load_digit_data()
    protos = _prototypes(net)
    old = rng.permutation(net.test_idx)
    new = rng.permutation(np.flatnonzero(np.isin(y, NEW_CLASSES)))
    arr_pool = np.concatenate([old[:len(old) // 2], new[:len(new) // 2]])
    test_old, test_new = old[len(old) // 2:], new[len(new) // 2:]
    sc = scenes.compose_scenes(N_SCENES, int(rng.integers(2 ** 31)), pool=arr_pool, n_slots=N_SLOTS, p_empty=0.0)
    gs = scenes.scene_graphs(sc, net, weights="uniform")
    seed = int(rng.integers(2 ** 31))
    where = [(b, o) for b, g in enumerate(gs) for o in g.ids if g.module(o).startswith("digit-")]
    leaves = [ss.Graph([{"id": "digit", "module": gs[b].module(o),
                         "attributes": gs[b].attributes[gs[b].index[o]].tolist()}], [{"id": "digit", "weight": 1.0}])
              for b, o in where]
    with sk.quiet_precondition():
        bank = sk.make_bank(params, rng)
        _, objs = sk.sketch_graphs(leaves, bank, return_objects=True)
        with tempfile.TemporaryDirectory(prefix="scenes-emerging-") as tmp:
            repo = SketchRepository.create(os.path.join(tmp, "r.sketchrepo"), bank)
            try:
                repo.add(np.array([ob["digit"] for ob in objs]), ids=[f"s{b}/{o}" for b, o in where],
                         meta=[{"scene": b, "slot": int(o[4:]), "module": gs[b].module(o)} for b, o in where])
                ids = repo.select(where={"module": {"!=": "empty"}})
                recs = [repo.record(i) for i in ids]
                Sobj = np.array([repo.get(i) for i in ids])
            finally:
                repo.close()
        modules = np.array([int(r.meta["module"].split("-")[1]) for r in recs])
        xh = np.zeros((len(ids), L))
        R1 = bank.get(tuple_name(1))
        for c in np.unique(modules):
            sel = modules == c
            xh[sel] = 16.0 * bank.get(module_name(f"digit-{c}", 1)).apply_t(R1.apply_t(Sobj[sel]))[:, :L]
    # ground truth of each stored object (scoring only)
    truth = np.array([sc[r.meta["scene"]].labels[r.meta["slot"] - 1] for r in recs])
    x = np.array([gs[r.meta["scene"]].attributes[gs[r.meta["scene"]].index[f"slot{r.meta['slot']}"]] for r in recs])
    test_idx = np.concatenate([test_new, test_old])
    test_F, test_y = net.features(X[test_idx]), y[test_idx]
    out = {"n_objects": float(len(ids)), "n_new_objects": float(np.isin(truth, NEW_CLASSES).sum()),
           "attr_err": float(np.mean(np.linalg.norm(xh - x, axis=1))),
           "attr_cos": float(np.mean(np.einsum("ij,ij->i", _unit(xh), x)))}
    for proc, rep in (("raw", x), ("sketch", xh)):
        purity, ok_new, ok_old, ft = _grow(rep, modules, truth, protos, net.classes, seed, test_F, test_y)
        out[f"purity_{proc}"] = float(purity)
        out[f"acc89_{proc}"] = float(ok_new.mean())
        out[f"acc07_{proc}"] = float(ok_old.mean())
        out[f"recall89_{proc}"] = float(np.isin(ft, NEW_CLASSES).sum() / max(out["n_new_objects"], 1.0))
    return out


# ============================================================================ claims
def _top(sub):
    dmax = sub["p_d_sketch"].max()
    return dmax, sub[sub["p_d_sketch"] == dmax]


def claims(df):
    out = []
    for fam in sk.families_in(df):
        dmax, sub = _top(df[df["p_family"] == fam])
        note = sk.runs_note(sub) + (f", {sk.bq_note(sub)}" if sk.bq_note(sub) else "") + \
            f"; raw reference: purity {sub['m_purity_raw'].mean():.3f}, accuracy {sub['m_acc89_raw'].mean():.3f}"
        src = "§1.1: emerging clusters of sketches train new modules"
        out.append(Claim("scenes.emerging.purity", fam, None, [
            mean_test("purity", "cluster purity, sketch − raw embeddings", sub["m_purity_sketch"] - sub["m_purity_raw"],
                      predicted=-MARGIN, kind="at_least", resolution=RESOLUTION, source=src),
        ], note=note))
        out.append(Claim("scenes.emerging.accuracy", fam, None, [
            mean_test("accuracy", "new-module accuracy on held-out 8s and 9s, sketch − raw embeddings",
                      sub["m_acc89_sketch"] - sub["m_acc89_raw"], predicted=-MARGIN, kind="at_least",
                      resolution=RESOLUTION, source=src),
        ], note=note))
    return out


def details(df):
    if not len(df):
        return ""
    rows = []
    for (fam, d), r in df.groupby(["p_family", "p_d_sketch"]):
        rows.append([fam, int(d), len(r), f"{r['m_attr_cos'].mean():.3f}",
                     f"{r['m_recall89_raw'].mean():.3f} / {r['m_recall89_sketch'].mean():.3f}",
                     f"{r['m_purity_raw'].mean():.3f} / {r['m_purity_sketch'].mean():.3f}",
                     f"{r['m_acc89_raw'].mean():.3f} / {r['m_acc89_sketch'].mean():.3f}",
                     f"{r['m_acc07_raw'].mean():.3f} / {r['m_acc07_sketch'].mean():.3f}"])
    return ("### Raw embeddings / sketch, mean over runs\n\n" +
            sk.md_table(["family", "d", "runs", "cos(x̂, x)", "8/9 flagged (recall)", "purity",
                         "accuracy 8s, 9s", "accuracy 0–7 (grown net)"], rows) +
            f"\n\n{N_SCENES} arrival scenes × {N_SLOTS} digits per run (about half are 8s or 9s); "
            f"top {FLAG_FRAC:.0%} by novelty flagged, {K_NEW} KMeans clusters. Accuracy 8s, 9s: nearest new "
            "centroid. Accuracy 0–7: held-out known digits classified by the grown network (old prototypes "
            "+ new centroids), reported only — a new centroid near a known class costs accuracy there.")


def figures(df, outdir):
    from sketchsim.harness.plots import new_figure, save_figure

    if not len(df):
        return []
    written = []
    for fname, key, ylabel in ((FIG_ACC, "acc89", "accuracy on held-out 8s and 9s"),
                               (FIG_PUR, "purity", "cluster purity of flagged objects")):
        fig, (ax,) = new_figure(width=6.4, height=4.2)
        for fam in sk.families_in(df):
            a = df[df["p_family"] == fam].groupby("p_d_sketch")[[f"m_{key}_raw", f"m_{key}_sketch"]].mean()
            line, = ax.plot(a.index, a[f"m_{key}_sketch"], "o-", label=f"{fam}: sketch")
            ax.plot(a.index, a[f"m_{key}_raw"], ":", color=line.get_color(), label=f"{fam}: raw embeddings")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("sketch dimension d")
        ax.set_ylabel(ylabel)
        ax.set_ylim(0, 1.02)
        ax.set_title("sketch (solid) vs raw-embedding reference (dotted)")
        ax.legend(fontsize=7, ncol=2)
        written.append(save_figure(fig, os.path.join(outdir, fname)))
    return written
