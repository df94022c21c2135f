"""Theorem 4 — recursable dictionary learning in its own setting, with a scikit-learn peer.

Every run draws N = 3 matrices R_1 … R_N of D(b, q, d) from a fresh :class:`~sketchsim.MatrixBank`
(seed from the run's ``rng``; the learner never sees it) and S samples

    y⁽ᵏ⁾ = [R_1 … R_N] x⁽ᵏ⁾ + z₁ + z_∞,

* **heavy part**: K heavy coordinates per sample, (matrix, column) pairs drawn without replacement
  from a pool of ``pool`` columns per matrix (so a column recurs about S·K/(N·pool) times), values
  ±U[x_min, x_max] with x_min = 0.3, x_max = 0.7 (the checked demo of THEORY.md §6.2);
* **dense residual**: ``n_res`` random coordinates of x with Gaussian values scaled to ℓ2 norm ρ
  (``rho``), also sent through the R_i (x is not sparse, as Theorem 4 allows);
* **ℓ1 noise** z₁: ‖z₁‖₁ = ``l1``·√d made of spikes of magnitude ½/√(dq) (half an entry of a unit
  column) at random positions, i.e. 2·l1·d·√q spikes per sample;
* **ℓ∞ noise** z_∞: i.i.d. uniform on [−η, η]/√(dq) with η = ``linf`` (relative to the entry size of
  a unit coefficient, so η = 0.1 is a third of the smallest heavy entry).

The learner is :func:`sketchsim.dictlearn.recover` with the run's thresholds. Metrics (``ours``):

``rate``
    fraction of the essential columns (every (matrix, column) heavy in some sample) recovered
    exactly: the recovered label maps to the right matrix (by its canonical signature σ̂_m), the
    column index is right and **every** recovered block equals the true block of R, signs included.
``spurious``, ``wrong``, ``extra``
    recovered columns that are no column of any R_i (a wrong block, or a label matching no true
    matrix); essential columns recovered with at least one wrong block; and genuine columns of
    some R_i (every block exact) that are not essential: certified from a residual coordinate
    (harmless: Theorem 4 allows recovering more than the essential columns).
``block_frac``
    median, over exactly recovered columns, of recovered blocks / true nonzero blocks (blocks that
    always collide stay 0: the "Hamming errors" Theorem 4 tolerates).
``coef_rate``, ``err_cert``, ``err_cert_med``, ``err_heavy``, ``sign_err``
    fraction of heavy coefficients certified; ℓ∞ and median |x̂ − x| over certified coefficients;
    ℓ∞ error over **all** heavy coefficients (x̂ = 0 when not certified: then the error is ≥ x_min);
    certified coefficients with the wrong sign.
``t_recover``, ``t_gen``
    wall time of ``recover`` and of drawing the samples (seconds).

Studies (parameter ``study``): ``qk`` (phase over q × K), ``ds`` (phase over d × S), ``b``,
``rho``, ``noise`` (l1 × linf), ``thr`` (the threshold grid behind the defaults), ``levels``
(recursion depth 1–3: chains R_a R_b … x e_j, pure or through identity branches (I+R)/2) and
``sklearn`` (the peer on the same samples: MiniBatchDictionaryLearning and DictionaryLearning,
fit_algorithm='cd', fraction of true essential columns matched with |cos| > 0.99 after optimal
matching; our columns are scored by the same rule as well as by the exact-block rule).

Theory (``t_rate``): the prediction of ``rate`` from block counting. A column j has
n ~ Bin(d/b, q) nonzero blocks; in one appearance (value x) each survives with probability
p(x) = (1 − q)^{K−1} (no other heavy column in it: collided blocks always fail the screen, since
two heavy values give |u| = 1 ± c/x with c/x ≥ 0.3/0.7 > τ∞) · (1 − 2·l1·√q)^b (no ℓ1 spike in
it) · P(|e| ≤ τ∞)^b (every entry's relative noise e — residual N(0, ρ²q/x²) plus ℓ∞ U[±η/x] —
within the tolerance), and the column is certified when ≥ count_frac·q·d/b blocks survive.
Appearances m ~ Bin(S, K/(N·pool)), m ≥ 1; so t_rate = E_n E_{m≥1}[1 − (1 − E_x P(Bin(n, p(x)) ≥
thr))^m]; ``t_rate_noisefree`` drops the noise factors. ``t_err_med``: the median
|x̂ − x| of a median of n̄ block estimates each with σ = √(ρ²q/b + η²/(3b)) (THEORY.md §6.2).
"""
from __future__ import annotations

import math
import os
import time
import warnings

import numpy as np

import sketchsim as ss
from sketchsim._validation import TheoremPreconditionWarning, min_block_size
from sketchsim.dictlearn import DEFAULTS, recover
from experiments.thm1_attributes import md_table

NAME = "thm4_dictlearn"
TITLE = "Theorem 4 — recursable dictionary learning (own setting)"
STATEMENT = (
    "**Theorem 4 (Recursable dictionary learning).** Given samples y⁽ᵏ⁾ = [R_1 … R_N] x⁽ᵏ⁾ + z₁ + z_∞ "
    "with R_i ∈ D(b, q, d) unknown, ‖x⁽ᵏ⁾‖₂ ≤ O(1), ‖z₁‖₁ ≤ O(√d), ‖z_∞‖_∞ ≤ ε_h: the algorithm "
    "recovers, up to a permutation π of the matrices, every essential column (some sample has "
    "|x| ≥ ε_{h+1} there) to within a small Hamming error (≤ 20% of its nonzero blocks, THEORY.md "
    "§9.2), and x̂⁽ᵏ⁾ with |x̂_{(π(i)−1)d+j} − x_{(i−1)d+j}| ≤ ε_{h+1}, in time poly(S, d); applied "
    "recursively for H = 3·depth levels (each recovered coefficient vector is a sample of the next "
    "level). Parameters: b ≥ poly(log N, log d, 1/ε_H), q ≥ poly(·)/√d, d ≥ poly(1/ε_H, log N, log S).")

N_MAT = 3
X_MIN, X_MAX = 0.3, 0.7
SPIKE = 0.5
"""Magnitude of an ℓ1-noise spike in units of 1/√(dq) (the entry size of a unit column)."""
ALPHA = 0.1
"""sklearn sparse-coding penalty α: the best of {0.02, 0.1, 0.3} for both sklearn learners at
d = 1014, S = 500, 30 atoms (α = 0.02 leaves MiniBatch at 0% matched, 0.3 drops both)."""
MB_EPOCHS = 20
"""MiniBatchDictionaryLearning max_iter (epochs over the data; early stopping off)."""
DL_MAX_ITER = 60
COS_MATCH = 0.99
REF = {"d": 11400, "b": 57, "q": 0.06, "S": 100, "K": 3, "pool": 20, "rho": 0.05, "n_res": 200,
       "l1": 0.0, "linf": 0.0}
"""The reference point (THEORY.md §6.2's checked-demo regime at d = 11400, q·d/b = 12)."""
THR_DEFAULT = {"hypercube_tol": DEFAULTS["hypercube_tol"], "count_frac": DEFAULTS["count_frac"],
               "hamming_tol": DEFAULTS["hamming_tol"]}
PAPER_COUNT_FRAC = 0.8
"""The paper's count fraction (§4.2, "0.8·q·d_sketch", typo-corrected to 0.8·q·d/b), compared with the
library default 0.5 in the phase diagrams and the sklearn study."""


def _g(study, reps, **over):
    g = {"study": [study]}
    g.update({k: v if isinstance(v, list) else [v] for k, v in over.items()})
    g["reps"] = reps
    return g


PROFILES = {
    "quick": [
        _g("qk", 1, q=[0.02, 0.06, 0.15], K=[1, 3, 8]),
        _g("ds", 1, d=[4095, 16383], b=0, S=[10, 100]),
        _g("noise", 1, l1=[0.0, 0.01], linf=[0.0, 0.1]),
        _g("thr", 1, l1=0.003, linf=0.05, hypercube_tol=[0.15, 0.3, 0.45], count_frac=[0.5, 0.8],
           hamming_tol=[0, 1]),
        _g("levels", 1, chain=[1, 2], branch=["pure", "identity"], q=0.02, K=1, S=60, pool=10,
           rho=0.02),
        _g("sklearn", 1, d=1014, b=0, q=0.2, S=300, pool=10, cap=10.0),
    ],
    "full": [
        _g("qk", 3, q=[0.01, 0.02, 0.04, 0.06, 0.1, 0.15, 0.25], K=[1, 2, 3, 5, 8, 12], count_frac=[0.5, 0.8]),
        _g("ds", 3, d=[2047, 4095, 8191, 16383, 32767], b=0, S=[3, 10, 30, 100, 300, 1000],
           count_frac=[0.5, 0.8]),
        _g("b", 3, b=[57, 72, 90, 114]),
        _g("rho", 3, rho=[0.0, 0.05, 0.1, 0.2, 0.4]),
        _g("noise", 3, l1=[0.0, 0.001, 0.003, 0.01, 0.03], linf=[0.0, 0.03, 0.06, 0.1, 0.15]),
        _g("thr", 3, l1=0.003, linf=0.05, hypercube_tol=[0.15, 0.3, 0.45], count_frac=[0.5, 0.65, 0.8],
           hamming_tol=[0, 1, 2]),
        _g("levels", 3, chain=[1, 2, 3], branch=["pure", "identity"], q=[0.01, 0.02], K=1, S=60, pool=10,
           rho=0.02),
        _g("sklearn", 2, d=[1014], b=0, q=[0.2], S=500, pool=10, cap=60.0),
        _g("sklearn", 2, d=[4095], b=0, q=[0.1], S=500, pool=10, cap=60.0),
        _g("sklearn", 2, d=[11400], q=[0.06], S=500, pool=10, cap=60.0),
    ],
}


# ================================================================================ parameters
def dims(d_target, b=0):
    """(d, b): b = the smallest admissible block size 3·(⌈log2 d⌉+3) unless given, d = the largest
    multiple of b not above ``d_target``."""
    d_target = int(d_target)
    if not b:
        b = min_block_size(d_target)
    b = int(b)
    d = b * (d_target // b)
    if d < b or b < min_block_size(d) or b % 3:
        raise ValueError(f"b must be a multiple of 3 and at least 3·(⌈log2 d⌉+3) with d = {d}; got {b}")
    return d, b


def full_params(params):
    """The run's parameters with every default filled in."""
    p = dict(REF)
    p.update(THR_DEFAULT)
    p.update({"N": N_MAT, "chain": 1, "branch": "pure", "cap": 60.0})
    p.update({k: v for k, v in params.items() if k != "reps"})
    d, b = dims(p["d"], p["b"])
    p["d"], p["b"] = d, b
    return p


# ================================================================================ samples
class Truth:
    """Sparse x: values by key (sample·N + matrix)·d + column (duplicates summed)."""

    def __init__(self, k, i, j, x, N, d):
        self.N, self.d = N, d
        keys = (np.asarray(k, np.int64) * N + np.asarray(i, np.int64)) * d + np.asarray(j, np.int64)
        order = np.argsort(keys, kind="stable")
        keys, x = keys[order], np.asarray(x, float)[order]
        self.keys, inv = np.unique(keys, return_inverse=True)
        self.vals = np.bincount(inv, weights=x, minlength=self.keys.size)

    def key(self, k, i, j):
        return (np.asarray(k, np.int64) * self.N + np.asarray(i, np.int64)) * self.d + np.asarray(j, np.int64)

    def lookup(self, keys):
        keys = np.asarray(keys, np.int64)
        if not self.keys.size:
            return np.zeros(keys.shape)
        pos = np.clip(np.searchsorted(self.keys, keys), 0, self.keys.size - 1)
        hit = self.keys[pos] == keys
        return np.where(hit, self.vals[pos], 0.0)


def draw_bank(rng, d, b, q):
    return ss.MatrixBank(d, "block-sparse", int(rng.integers(0, 2 ** 62)), block_size=b, block_prob=q)


def _apply_sparse(op, S, d, k, j, x, out):
    """out[k] += R (Σ x e_j) for the sparse entries (k, j, x) of one matrix, in row chunks."""
    if not len(k):
        return
    chunk = max(1, (1 << 23) // d)
    order = np.argsort(k, kind="stable")
    k, j, x = k[order], j[order], x[order]
    bounds = np.searchsorted(k, np.arange(0, S + chunk, chunk))
    for c, a in enumerate(range(0, S, chunk)):
        lo, hi = bounds[c], bounds[c + 1]
        if lo == hi:
            continue
        z = min(a + chunk, S)
        X = np.zeros((z - a, d))
        np.add.at(X, (k[lo:hi] - a, j[lo:hi]), x[lo:hi])
        out[a:z] += op.apply(X)


def draw_samples(rng, p):
    """Samples of the Theorem 4 model (module docstring). Returns a dict with Y, ops, the heavy
    coordinates (hk, hi, hj, hx), the full sparse truth and the essential columns."""
    d, b, q, N, S, K, pool = p["d"], p["b"], p["q"], p["N"], p["S"], p["K"], p["pool"]
    if K > N * pool:
        raise ValueError(f"K must be at most N·pool = {N * pool}; got {K}")
    bank = draw_bank(rng, d, b, q)
    ops = [bank.get(ss.tuple_name(i + 1)) for i in range(N)]
    pools = np.stack([rng.choice(d, pool, replace=False) for _ in range(N)])
    pick = np.argsort(rng.random((S, N * pool)), axis=1)[:, :K]
    hk = np.repeat(np.arange(S, dtype=np.int64), K)
    hi = (pick // pool).ravel().astype(np.int64)
    hj = pools[hi, (pick % pool).ravel()].astype(np.int64)
    hx = rng.uniform(X_MIN, X_MAX, S * K) * rng.choice([-1.0, 1.0], S * K)
    k_all, i_all, j_all, x_all = [hk], [hi], [hj], [hx]
    rho, n_res = p["rho"], int(p["n_res"])
    if rho > 0 and n_res > 0:
        flat = rng.integers(0, N * d, (S, n_res))
        v = rng.standard_normal((S, n_res))
        v *= rho / np.linalg.norm(v, axis=1, keepdims=True)
        rk = np.repeat(np.arange(S, dtype=np.int64), n_res)
        ri, rj, rx = flat.ravel() // d, flat.ravel() % d, v.ravel()
        heavy_keys = (hk * N + hi) * d + hj
        keep = ~np.isin((rk * N + ri) * d + rj, heavy_keys)
        k_all.append(rk[keep]), i_all.append(ri[keep]), j_all.append(rj[keep]), x_all.append(rx[keep])
    k_all, i_all, j_all, x_all = (np.concatenate(a) for a in (k_all, i_all, j_all, x_all))
    Y = np.zeros((S, d))
    for i in range(N):
        sel = i_all == i
        _apply_sparse(ops[i], S, d, k_all[sel], j_all[sel], x_all[sel], Y)
    scale = 1.0 / math.sqrt(d * q)
    n1 = int(round(2.0 * p["l1"] * d * math.sqrt(q) / (2 * SPIKE))) if p["l1"] > 0 else 0
    if n1:
        pos = rng.integers(0, d, (S, n1))
        np.add.at(Y, (np.repeat(np.arange(S), n1), pos.ravel()), SPIKE * scale * rng.choice([-1.0, 1.0], S * n1))
    if p["linf"] > 0:
        Y += rng.uniform(-1.0, 1.0, Y.shape) * (p["linf"] * scale)
    ess = np.unique(np.stack([hi, hj], axis=1), axis=0)
    return {"Y": Y, "ops": ops, "hk": hk, "hi": hi, "hj": hj, "hx": hx,
            "truth": Truth(k_all, i_all, j_all, x_all, N, d), "ess": ess, "n_spikes": n1}


# ================================================================================ evaluation
def canonical_signature(op, b):
    """σ̂_m of a D(b, q, d) operator: the matrix signature sub-block of any block times its first
    entry (the same for every block of the matrix)."""
    t = b // 3
    if op.n_blocks == 0:
        return np.zeros(t, np.int8)
    s = op.blk_sign[0, 2 * t:].astype(np.int8)
    return s * s[0]


def label_candidates(res, ops, max_dist=None):
    """(n_labels, N) bool: true operators whose canonical signature lies within ``max_dist``
    (default max(1, hamming_tol)) differing bits of each recovered label's σ̂_m. Two true matrices
    whose signatures are that close are merged into one label by the learner's clustering (a
    signature collision, probability ≈ C(N,2)·Σ_{k≤h} C(b/3−1, k)/2^(b/3−1)); a label then has
    several candidates and each recovered column is checked against all of them."""
    if max_dist is None:
        max_dist = max(1, int(res.params.get("hamming_tol", 1)))
    if res.n_matrices == 0:
        return np.zeros((0, len(ops)), bool)
    true = np.stack([canonical_signature(op, res.block_size) for op in ops])
    dist = (true[None, :, :] != res.matrix_signature[:, None, :]).sum(axis=2)
    return dist <= max_dist


def label_map(res, ops, max_dist=1):
    """Recovered label → index of the nearest true operator within ``max_dist`` bits, or −1."""
    if res.n_matrices == 0:
        return np.zeros(0, np.int64)
    true = np.stack([canonical_signature(op, res.block_size) for op in ops])
    dist = (true[None, :, :] != res.matrix_signature[:, None, :]).sum(axis=2)
    best = np.argmin(dist, axis=1)
    return np.where(dist[np.arange(dist.shape[0]), best] <= max_dist, best, -1).astype(np.int64)


def signature_collisions(ops, b, h):
    """Pairs of true matrices whose canonical signatures differ in ≤ h bits (merged by the learner)."""
    sig = np.stack([canonical_signature(op, b) for op in ops])
    n = 0
    for a in range(len(ops)):
        for c in range(a + 1, len(ops)):
            n += int((sig[a] != sig[c]).sum() <= h)
    return n


def column_exact(res, c, op, j):
    """(every recovered block of column c equals the true block of op's column j, fraction of the
    true nonzero blocks recovered)."""
    rows, signs = res.column_blocks(c)
    lo, hi = op.col_ptr[j], op.col_ptr[j + 1]
    trows, tsign = op.blk_row[lo:hi], op.blk_sign[lo:hi]
    if not len(rows):
        return True, 0.0
    if not len(trows):
        return False, 0.0
    pos = np.clip(np.searchsorted(trows, rows), 0, len(trows) - 1)
    ok = bool(np.all(trows[pos] == rows) and np.array_equal(tsign[pos], signs))
    return ok, len(rows) / len(trows)


def evaluate_columns(res, ops, ess, cand=None):
    """Column metrics against the essential set ``ess`` ((n, 2) array of (matrix, column)).

    ``cand``: :func:`label_candidates` (computed when None)."""
    cand = label_candidates(res, ops) if cand is None else cand
    ess_set = {(int(i), int(j)) for i, j in ess}
    exact, spurious, wrong, extra, fracs = set(), 0, 0, 0, []
    for c in range(res.n_columns):
        m = int(res.column_matrix[c])
        j = int(res.column_index[c])
        cands = np.flatnonzero(cand[m]) if m < cand.shape[0] else []
        if not len(cands):
            spurious += 1
            continue
        checks = [(int(i), *column_exact(res, c, ops[i], j)) for i in cands]
        hit = [(i, fr) for i, ok, fr in checks if ok and (i, j) in ess_set]
        if hit:
            exact.add((hit[0][0], j))
            fracs.append(hit[0][1])
        elif any(ok for _, ok, _ in checks):
            extra += 1            # a genuine column of some R_i, certified from a residual coordinate
        elif any((i, j) in ess_set for i, _, _ in checks):
            wrong += 1
        else:
            spurious += 1
    n_ess = len(ess_set)
    one = cand.sum(axis=1) == 1
    perm_ok = bool(np.all(one) and np.all(cand.sum(axis=0) <= 1))
    return {"n_essential": n_ess, "n_columns": res.n_columns, "rate": len(exact) / n_ess if n_ess else float("nan"),
            "spurious": spurious, "wrong": wrong, "extra": extra,
            "block_frac": float(np.median(fracs)) if fracs else float("nan"),
            "n_matrices": res.n_matrices, "perm_ok": float(perm_ok), "merged_labels": int(np.sum(~one & (cand.sum(axis=1) > 1))),
            "exact_set": exact}


def evaluate_coefficients(res, cand, sm):
    """Coefficient metrics of level 1 against the heavy coordinates and the full truth. A
    coefficient of a label with several candidate matrices is compared with the candidate whose
    true coefficient is largest in magnitude."""
    lvl = res.coef_level == 1
    cs, cm, cj, cv = res.coef_sample[lvl], res.coef_matrix[lvl], res.coef_column[lvl], res.coef_value[lvl]
    truth = sm["truth"]
    N = truth.N
    if cand.shape[0]:
        cc = cand[cm]                                                        # (n, N) candidates
        tvs = np.stack([truth.lookup(truth.key(cs, np.full(cs.size, i), cj)) for i in range(N)], axis=1)
        score = np.where(cc, np.abs(tvs) + 1e-300, -1.0)
        ci = np.argmax(score, axis=1)
        mapped = cc.any(axis=1)
        tv = tvs[np.arange(cs.size), ci][mapped]
        ci = ci[mapped]
    else:
        mapped = np.zeros(cs.size, bool)
        ci, tv = np.zeros(0, np.int64), np.zeros(0)
    err = np.abs(cv[mapped] - tv)
    err_unmapped = np.abs(cv[~mapped])
    all_err = np.concatenate([err, err_unmapped])
    # heavy coordinates: x̂ from the certified map, 0 otherwise
    hkeys = truth.key(sm["hk"], sm["hi"], sm["hj"])
    ckeys = truth.key(cs[mapped], ci, cj[mapped])
    xhat = np.zeros(hkeys.size)
    hit = np.zeros(hkeys.size, bool)
    if ckeys.size:
        order = np.argsort(ckeys)
        ck, cvs = ckeys[order], cv[mapped][order]
        pos = np.clip(np.searchsorted(ck, hkeys), 0, ck.size - 1)
        hit = ck[pos] == hkeys
        xhat = np.where(hit, cvs[pos], 0.0)
    heavy_err = np.abs(xhat - sm["hx"])
    sign_err = int(np.sum(hit & (np.sign(xhat) != np.sign(sm["hx"]))))
    return {"coef_rate": float(hit.mean()) if hit.size else float("nan"),
            "err_cert": float(all_err.max()) if all_err.size else float("nan"),
            "err_cert_med": float(np.median(err)) if err.size else float("nan"),
            "err_heavy": float(heavy_err.max()) if heavy_err.size else float("nan"),
            "sign_err": sign_err, "n_coef": int(cv.size), "coef_unmapped": int((~mapped).sum())}


def predicted_collision_rate(b, N, h):
    """P(some pair of N random canonical signatures of b/3 bits lies within h bits)."""
    t1 = b // 3 - 1
    p = sum(math.comb(t1, k) for k in range(h + 1)) / 2.0 ** t1
    return 1.0 - (1.0 - p) ** (N * (N - 1) // 2)


# ================================================================================ theory
def entry_pass_prob(x, q, rho, linf, tau):
    """P(one entry of a clean block passes the hypercube test): its relative deviation
    e = (Gaussian residual of std ρ/√d + uniform ℓ∞ noise on ±η/√(dq)) / (|x|/√(dq)) must satisfy
    |e| ≤ τ∞ (ℓ1-normalisation moves every entry by the block's mean deviation, O(σ/√b): ignored)."""
    from scipy import stats

    x = np.asarray(x, float)
    sg = rho * math.sqrt(q) / x                 # Gaussian part, relative
    au = linf / x                               # half-width of the uniform part, relative
    if rho == 0 and linf == 0:
        return np.ones_like(x)
    if linf == 0:
        return 2 * stats.norm.cdf(tau / sg) - 1
    if rho == 0:
        return np.minimum(1.0, tau / au)
    u = np.linspace(-1, 1, 129)[None, :] * au[:, None]
    f = stats.norm.cdf((tau - u) / sg[:, None]) - stats.norm.cdf((-tau - u) / sg[:, None])
    return np.trapezoid(f, u, axis=1) / (2 * au)


def predicted_rate(d, b, q, K, S, N, pool, count_frac, rho=0.0, linf=0.0, l1=0.0, tau=0.3):
    """Prediction of ``rate`` from block counting (module docstring), with the noise terms: a block
    of a heavy column survives when no other heavy column shares it ((1−q)^{K−1}), no ℓ1 spike hits
    it ((1 − 2·l1·√q)^b) and all b entries pass the screen (:func:`entry_pass_prob`^b), averaged
    over |x| ~ U[x_min, x_max] per appearance."""
    from scipy import stats

    nb = d // b
    thr = count_frac * q * d / b
    need = max(1, math.ceil(thr - 1e-12))
    xs = np.linspace(X_MIN, X_MAX, 17)
    p_spike = max(0.0, 1.0 - 2.0 * l1 * math.sqrt(q)) ** b
    p_clean = (1.0 - q) ** (K - 1) * p_spike * entry_pass_prob(xs, q, rho, linf, tau) ** b     # (nx,)
    n = np.arange(nb + 1)
    pn = stats.binom.pmf(n, nb, q)
    pc = stats.binom.sf(need - 1, n[:, None], p_clean[None, :]).mean(axis=1)   # P(certified | n), one appearance
    pi = min(1.0, K / (N * pool))
    m = np.arange(1, S + 1)
    pm = stats.binom.pmf(m, S, pi)
    if pm.sum() <= 0:
        return float("nan")
    pm = pm / pm.sum()
    per_n = 1.0 - np.sum(pm[None, :] * (1.0 - pc[:, None]) ** m[None, :], axis=1)
    return float(np.sum(pn * per_n))


def predicted_err_med(d, b, q, K, rho, linf):
    sigma = math.sqrt(rho ** 2 * q / b + linf ** 2 / (3 * b))
    nbar = max(1.0, q * d / b * (1 - q) ** (K - 1))
    return 0.6745 * 1.2533 * sigma / math.sqrt(nbar)


def theory(params):
    p = full_params(params)
    if p["study"] in ("levels",):
        return {}
    return {"rate": predicted_rate(p["d"], p["b"], p["q"], p["K"], p["S"], p["N"], p["pool"], p["count_frac"],
                                   p["rho"], p["linf"], p["l1"], p["hypercube_tol"]),
            "rate_noisefree": predicted_rate(p["d"], p["b"], p["q"], p["K"], p["S"], p["N"], p["pool"],
                                             p["count_frac"]),
            "err_med": predicted_err_med(p["d"], p["b"], p["q"], p["K"], p["rho"], p["linf"])}


# ================================================================================ runs
def _recover(Y, p, levels=1):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TheoremPreconditionWarning)
        return recover(Y, p["b"], p["q"], hypercube_tol=p["hypercube_tol"], count_frac=p["count_frac"],
                       hamming_tol=p["hamming_tol"], levels=levels)


def _ours(sm, p):
    t0 = time.perf_counter()
    res = _recover(sm["Y"], p)
    t_rec = time.perf_counter() - t0
    cand = label_candidates(res, sm["ops"])
    cols = evaluate_columns(res, sm["ops"], sm["ess"], cand)
    cols.pop("exact_set")
    out = dict(cols)
    out.update(evaluate_coefficients(res, cand, sm))
    out["sig_collisions"] = signature_collisions(sm["ops"], p["b"], p["hamming_tol"])
    out["t_recover"] = t_rec
    out["threshold"] = res.count_threshold
    return out, res


def _one_thread(fn):
    import numba

    old = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        return fn()
    finally:
        numba.set_num_threads(old)


def run_one(params, rng):
    p = full_params(params)
    if p["study"] == "levels":
        return run_levels(p, rng)
    t0 = time.perf_counter()
    sm = draw_samples(rng, p)
    t_gen = time.perf_counter() - t0
    if p["study"] == "sklearn":                 # same thread count as the sklearn peer (one)
        out, res = _one_thread(lambda: _ours(sm, p))
    else:
        out, res = _ours(sm, p)
    out.update({"t_gen": t_gen, "d_actual": p["d"], "b_actual": p["b"], "n_spikes": sm["n_spikes"],
                "qdb": p["q"] * p["d"] / p["b"]})
    if p["study"] == "sklearn":
        p08 = dict(p, count_frac=PAPER_COUNT_FRAC)
        t0 = time.perf_counter()
        res08 = _one_thread(lambda: _recover(sm["Y"], p08))
        out["t_recover_cf08"] = time.perf_counter() - t0
        out["rate_cf08"] = evaluate_columns(res08, sm["ops"], sm["ess"])["rate"]
        out.update(run_sklearn(sm, res, p, rng))
    return out


# ================================================================================ sklearn peer
class _Timeout(Exception):
    pass


def match_fraction(atoms, true_cols, thresh=COS_MATCH):
    """Fraction of true columns matched by a learned atom with |cos| > thresh after optimal
    one-to-one matching (Hungarian on |cos|)."""
    from scipy.optimize import linear_sum_assignment

    if true_cols.shape[0] == 0:
        return float("nan")
    if atoms.shape[0] == 0:
        return 0.0
    A = atoms / np.maximum(np.linalg.norm(atoms, axis=1, keepdims=True), 1e-300)
    T = true_cols / np.maximum(np.linalg.norm(true_cols, axis=1, keepdims=True), 1e-300)
    C = np.abs(T @ A.T)
    r, c = linear_sum_assignment(-C)
    return float(np.sum(C[r, c] > thresh) / T.shape[0])


def fit_minibatch(Y, n_comp, seed, epochs=MB_EPOCHS):
    """MiniBatchDictionaryLearning, fair configuration (ARCHITECTURE.md): fit_algorithm='cd', early
    stopping off (tol=0, max_no_improvement=None), batch 256, ``epochs`` passes. {time, components}."""
    from sklearn.decomposition import MiniBatchDictionaryLearning

    t0 = time.perf_counter()
    mb = MiniBatchDictionaryLearning(n_components=n_comp, alpha=ALPHA, fit_algorithm="cd", batch_size=256,
                                     max_iter=epochs, tol=0.0, max_no_improvement=None,
                                     transform_algorithm="lasso_cd", random_state=seed).fit(Y)
    return {"time": time.perf_counter() - t0, "components": mb.components_}


def fit_dictionary_learning(Y, n_comp, cap, seed):
    """DictionaryLearning(fit_algorithm='cd') stopped after ``cap`` seconds (checked by sklearn's
    callback, every 5 iterations). Returns {time, finished, components (the last dictionary seen
    when stopped early, None if none), n_iter}."""
    from sklearn.decomposition import DictionaryLearning

    state = {"dictionary": None, "ii": 0}
    t0 = time.perf_counter()

    def stop(loc):
        state["dictionary"] = np.array(loc.get("dictionary"), copy=True) if loc.get("dictionary") is not None \
            else None
        state["ii"] = int(loc.get("ii", 0))
        if time.perf_counter() - t0 > cap:
            raise _Timeout

    try:
        dl = DictionaryLearning(n_components=n_comp, alpha=ALPHA, fit_algorithm="cd", max_iter=DL_MAX_ITER,
                                transform_algorithm="lasso_cd", callback=stop, random_state=seed).fit(Y)
        return {"time": time.perf_counter() - t0, "finished": True, "components": dl.components_,
                "n_iter": int(dl.n_iter_)}
    except _Timeout:
        return {"time": time.perf_counter() - t0, "finished": False, "components": state["dictionary"],
                "n_iter": state["ii"]}


def run_sklearn(sm, res, p, rng):
    """MiniBatchDictionaryLearning and DictionaryLearning (fit_algorithm='cd', fair settings of
    ARCHITECTURE.md) on the same samples; n_components = the true number of essential columns (an
    oracle the peer gets for free). BLAS pinned to one thread; our learner runs on one Numba thread
    in this study too."""
    from threadpoolctl import threadpool_limits

    Y, ops, ess = sm["Y"], sm["ops"], sm["ess"]
    T = np.stack([ops[i].column(j) for i, j in ess])
    n_comp = int(ess.shape[0])
    seed = int(rng.integers(0, 2 ** 31 - 1))
    out = {"n_components": n_comp, "ours_match": match_fraction(res.column_values(), T) if res.n_columns else 0.0}
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mb = fit_minibatch(Y, n_comp, seed)
        out["mb_time"] = mb["time"]
        out["mb_match"] = match_fraction(mb["components"], T)
        dl = fit_dictionary_learning(Y, n_comp, float(p["cap"]), seed)
        out["dl_time"] = dl["time"]
        out["dl_match"] = match_fraction(dl["components"], T) if dl["components"] is not None else float("nan")
        out["dl_finished"] = float(dl["finished"])
    return out


# ================================================================================ recursion levels
def _word_terms(chain, branch):
    """Terms (coefficient multiplier, matrices outermost first) of the word applied to x e_j:
    pure R_{c1}⋯R_{cm}, or Π (I+R_{cl})/2 expanded into its 2^m subsets."""
    m = len(chain)
    if branch == "pure":
        return [(1.0, tuple(chain))]
    out = []
    for mask in range(1 << m):
        sub = tuple(chain[l] for l in range(m) if mask >> (m - 1 - l) & 1)
        out.append((0.5 ** m, sub))
    return out


def _apply_chain(ops, mats, V):
    for i in reversed(mats):
        V = ops[i].apply(V)
    return V


def run_levels(p, rng):
    """Recursion: y = Σ_words W(x e_j) with W a chain of ``chain`` matrices (pure: R_a R_b …;
    identity: Π (I+R)/2), K words per sample, then ``recover(levels=chain)``."""
    d, b, q, N, S, K, pool, c = p["d"], p["b"], p["q"], p["N"], p["S"], p["K"], p["pool"], int(p["chain"])
    branch = p["branch"]
    bank = draw_bank(rng, d, b, q)
    ops = [bank.get(ss.tuple_name(i + 1)) for i in range(N)]
    pools = np.stack([rng.choice(d, pool, replace=False) for _ in range(N)])
    words = []        # (sample, chain tuple, j, x)
    for k in range(S):
        for _ in range(K):
            ch = tuple(int(v) for v in rng.integers(0, N, c))
            j = int(pools[ch[-1], rng.integers(0, pool)])
            x = float(rng.uniform(X_MIN, X_MAX) * rng.choice([-1.0, 1.0]))
            words.append((k, ch, j, x))
    # samples and exact per-level truth: level h vector of (k, prefix P) = Σ terms with sub[:h] == P
    Y = np.zeros((S, d))
    level_truth = [dict() for _ in range(c + 1)]    # level h → {(k, P): (d,) vector}
    heavy = [dict() for _ in range(c + 1)]          # level h → {(k, P): set of heavy columns}
    for k, ch, j, x in words:
        for mult, sub in _word_terms(ch, branch):
            e = np.zeros((1, d))
            e[0, j] = mult * x
            Y[k] += _apply_chain(ops, sub, e)[0] if sub else e[0]
            for h in range(1, min(len(sub), c) + 1):
                v = _apply_chain(ops, sub[h:], e)[0] if len(sub) > h else e[0]
                key = (k, sub[:h])
                level_truth[h][key] = level_truth[h].get(key, 0.0) + v
                # targets: pure — every nonzero of the level vector; identity — the leaf terms only
                if branch == "pure" or len(sub) == h:
                    heavy[h].setdefault(key, set()).update(np.flatnonzero(v).tolist())
    if p["rho"] > 0:
        Y += rng.standard_normal(Y.shape) * (p["rho"] / math.sqrt(d))
    t0 = time.perf_counter()
    res = _recover(Y, p, levels=c)
    t_rec = time.perf_counter() - t0
    lab = label_map(res, ops)
    out = {"t_recover": t_rec, "d_actual": d, "b_actual": b, "qdb": q * d / b}
    for h in range(1, 4):
        out.update({f"n_cert_{h}": 0, f"frac_{h}": float("nan") if h > c else 0.0,
                    f"relerr_{h}": float("nan"), f"relerr_med_{h}": float("nan"), f"spur_{h}": 0})
    for h in range(1, c + 1):
        sel = np.flatnonzero(res.coef_level == h)
        n_targets = sum(len(s) for s in heavy[h].values())
        found, rel, spur = 0, [], 0
        for r in sel:
            s = int(res.coef_sample[r])
            chain_labels = res.chain(s) + (int(res.coef_matrix[r]),)
            P = tuple(int(lab[m]) if m < lab.size else -1 for m in chain_labels)
            root = s
            while res.sample_parent[root] >= 0:
                root = int(res.sample_parent[root])
            key = (root, P)
            col = int(res.coef_column[r])
            vec = level_truth[h].get(key)
            tv = 0.0 if (vec is None or -1 in P) else float(vec[col])
            if tv == 0.0:
                spur += 1
                continue
            rel.append(abs(res.coef_value[r] - tv) / abs(tv))
            if col in heavy[h].get(key, ()):
                found += 1
        out[f"n_cert_{h}"] = int(sel.size)
        out[f"frac_{h}"] = found / n_targets if n_targets else float("nan")
        out[f"relerr_{h}"] = float(max(rel)) if rel else float("nan")
        out[f"relerr_med_{h}"] = float(np.median(rel)) if rel else float("nan")
        out[f"spur_{h}"] = spur
    # essential leaf columns (matrix c_m, j) and, for the identity branch, every (c_l, j)
    leaf = {(ch[-1], j) for _, ch, j, _ in words}
    every = {(i, j) for _, ch, j, _ in words for i in ch}
    ex = evaluate_columns(res, ops, np.array(sorted(every)))["exact_set"]
    out["deep_rate"] = len(ex & leaf) / len(leaf)
    out["all_rate"] = len(ex) / len(every)
    out["n_columns"] = res.n_columns
    out["n_matrices"] = res.n_matrices
    return out


def warm_up():
    from sketchsim.dictlearn import warm_up as wu

    wu()
    ss.warm_up()


# ================================================================================ report helpers
FIGURES = ["thm4_phase_qk.png", "thm4_phase_ds.png", "thm4_noise.png", "thm4_thresholds.png",
           "thm4_levels.png", "thm4_sklearn.png", "thm4_b_rho.png"]


def _study(df, name):
    if not len(df) or "p_study" not in df:
        return df.iloc[0:0]
    return _intify(df[df["p_study"] == name])


def _col(df, name, default):
    return df[name] if name in df else default


def _defaults_mask(df):
    m = np.ones(len(df), bool)
    for k, v in THR_DEFAULT.items():
        if f"p_{k}" in df:
            col = df[f"p_{k}"]
            m &= (col.isna() | (col == v)).to_numpy()
    return m


def fig_link(name):
    return f"![{name}](../paper_figs/{name})"


def _f(v, fmt=".3g"):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return format(v, fmt)


def _num(v):
    """A grid value as text: integers without '.0'."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return str(int(f)) if f.is_integer() else f"{f:g}"


def _intify(df):
    """Copy of df with integer-valued grid columns as ints (for labels)."""
    df = df.copy()
    for c in ("p_K", "p_S", "p_chain", "p_d", "p_b", "m_d_actual", "m_b_actual", "p_pool", "p_hamming_tol"):
        if c in df and df[c].notna().all() and np.all(np.mod(df[c], 1) == 0):
            df[c] = df[c].astype(np.int64)
    return df


def _pivot_median(sub, row, col, val):
    return sub.pivot_table(index=row, columns=col, values=val, aggfunc="median")


def _heatmap(ax, piv, title, xlabel, ylabel, theory=None, level=0.9):
    Z = piv.to_numpy(dtype=float)
    im = ax.imshow(Z, origin="lower", aspect="auto", vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(piv.shape[1]), [_num(c) for c in piv.columns])
    ax.set_yticks(range(piv.shape[0]), [_num(r) for r in piv.index])
    for a in range(Z.shape[0]):
        for c in range(Z.shape[1]):
            if np.isfinite(Z[a, c]):
                ax.text(c, a, f"{Z[a, c]:.2f}", ha="center", va="center", fontsize=7,
                        color="w" if Z[a, c] < 0.6 else "k")
    if theory is not None and np.isfinite(theory.to_numpy(dtype=float)).sum() >= 4 \
            and min(theory.shape) >= 2:
        T = theory.reindex(index=piv.index, columns=piv.columns).to_numpy(dtype=float)
        if np.nanmin(T) < level < np.nanmax(T):
            cs = ax.contour(np.arange(T.shape[1]), np.arange(T.shape[0]), T, levels=[level], colors="w",
                            linestyles="--", linewidths=1.5)
            ax.clabel(cs, fmt={level: f"theory {level:.0%}"}, fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    return im


def figures(df, outdir):
    import matplotlib.pyplot as plt
    import pandas as pd

    from sketchsim.harness.plots import band_plot, new_figure, reference_line, save_figure

    paths = []
    df = _intify(df)
    # 1–2. phase diagrams: default thresholds, and the paper's count_frac = 0.8 when the grid has it
    for study, row, col, xl, yl, fname in (("qk", "p_K", "p_q", "block probability q", "heavy coordinates per sample K",
                                            FIGURES[0]),
                                           ("ds", "p_S", "m_d_actual", "dimension d", "samples S", FIGURES[1])):
        sub = _study(df, study)
        if not (len(sub) and sub[row].nunique() >= 2 and sub[col].nunique() >= 2):
            continue
        parts = [("default thresholds", sub[_defaults_mask(sub)])]
        if "p_count_frac" in sub and (sub["p_count_frac"] == PAPER_COUNT_FRAC).any():
            parts.append(("the paper's count_frac = 0.8", sub[sub["p_count_frac"] == PAPER_COUNT_FRAC]))
        fig, axes = new_figure(len(parts) + 1, width=5.0, height=4.2)
        for ax, (title, part) in zip(axes, parts):
            piv = _pivot_median(part, row, col, "m_rate")
            th = _pivot_median(part, row, col, "t_rate")
            im = _heatmap(ax, piv, f"exact recovery rate, median ({title})", xl, yl, th, level=0.5)
            fig.colorbar(im, ax=ax)
        part = parts[0][1]
        line_x, hue = (col, row) if study == "qk" else (row, col)
        colors = band_plot(axes[-1], part, line_x, "m_rate", hue=hue,
                           label_fmt=("K = {}" if study == "qk" else "d = {}"), logy=False)
        for k, g in part.groupby(hue):
            t = g.groupby(line_x)["t_rate"].median()
            reference_line(axes[-1], t.index, t.values, color=colors.get(k, "0.4"))
        axes[-1].set_xlabel(xl if study == "qk" else yl)
        axes[-1].set_ylabel("exact recovery rate (default thresholds)")
        axes[-1].set_title("medians, 20–80% bands; dashed: block-counting prediction", fontsize=8)
        axes[-1].legend(fontsize=7)
        paths.append(save_figure(fig, os.path.join(outdir, fname)))
    # 3. noise
    sub = _study(df, "noise")
    if len(sub):
        fig, axes = new_figure(2, width=5.2, height=4.0)
        x1 = sub.assign(l1p=sub["p_l1"].where(sub["p_l1"] > 0, sub["p_l1"][sub["p_l1"] > 0].min() / 3
                                               if (sub["p_l1"] > 0).any() else 1e-4))
        colors = band_plot(axes[0], x1, "l1p", "m_rate", hue="p_linf", label_fmt="η∞ = {}", logy=False)
        for k, g in x1.groupby("p_linf"):
            t = g.groupby("l1p")["t_rate"].median()
            reference_line(axes[0], t.index, t.values, color=colors.get(k, "0.4"))
        axes[0].set_xlabel("ℓ1 noise ‖z₁‖₁/√d (leftmost point: 0); dashed: prediction")
        axes[0].set_ylabel("exact recovery rate")
        axes[0].legend(fontsize=7)
        z = sub[sub["p_l1"] == 0]
        if len(z):
            band_plot(axes[1], z, "p_linf", "m_err_cert_med", logx=False, logy=False)
            zz = z.groupby("p_linf")["t_err_med"].median()
            reference_line(axes[1], zz.index, zz.values, label="predicted median error")
            axes[1].set_xlabel("ℓ∞ noise η (units of 1/√(dq)), no ℓ1 noise")
            axes[1].set_ylabel("median |x̂ − x| on certified coefficients")
            axes[1].set_ylim(bottom=0)
            axes[1].legend(fontsize=7)
        paths.append(save_figure(fig, os.path.join(outdir, FIGURES[2])))
    # 4. thresholds
    sub = _study(df, "thr")
    if len(sub):
        fig, axes = new_figure(2, width=5.5, height=4.0)
        sub = sub.assign(series="count_frac " + sub["p_count_frac"].map(_num) + ", hamming "
                         + sub["p_hamming_tol"].map(_num),
                         bad=sub["m_spurious"] + sub["m_wrong"])
        band_plot(axes[0], sub, "p_hypercube_tol", "m_rate", hue="series", logx=False, logy=False)
        band_plot(axes[1], sub, "p_hypercube_tol", "m_err_cert", hue="series", logx=False, logy=False)
        for ax in axes:
            ax.axvline(DEFAULTS["hypercube_tol"], color="k", ls="--", lw=1)
            ax.set_xlabel("hypercube tolerance τ∞ (dashed: default)")
        axes[0].set_ylabel("exact recovery rate")
        axes[1].set_ylabel("ℓ∞ error of certified coefficients")
        axes[0].set_title(f"spurious + wrong-block columns in this grid: {int(sub['bad'].sum())}", fontsize=8)
        axes[0].legend(fontsize=6)
        paths.append(save_figure(fig, os.path.join(outdir, FIGURES[3])))
    # 5. levels
    sub = _study(df, "levels")
    if len(sub):
        fig, axes = new_figure(3, width=4.6, height=3.9)
        sub = sub.assign(series=sub["p_branch"] + ", q = " + sub["p_q"].map(_num))
        band_plot(axes[0], sub, "p_chain", "m_deep_rate", hue="series", logx=False, logy=False)
        for k, ((br, c), g) in enumerate(sub.groupby(["p_branch", "p_chain"])):
            hs = [h for h in (1, 2, 3) if h <= c]
            long = pd.DataFrame([{"h": h, "frac": r[f"m_frac_{h}"], "relerr": r[f"m_relerr_{h}"]}
                                 for _, r in g.iterrows() for h in hs])
            color = f"C{k % 10}"
            style = "-" if br == "pure" else "--"
            med = long.groupby("h")["frac"].median()
            axes[1].plot(med.index, med.values, style, marker="s", color=color, label=f"{br}, depth {c}")
            rel = long.dropna(subset=["relerr"])
            if len(rel):
                m2 = rel.groupby("h")["relerr"].median()
                axes[2].plot(m2.index, np.maximum(m2.values, 1e-16), style, marker="^", color=color,
                             label=f"{br}, depth {c}")
        axes[0].set_xlabel("word length = recursion depth of the sample")
        axes[0].set_ylabel("deepest matrix: exact column rate")
        axes[1].set_xlabel("recursion level h")
        axes[1].set_ylabel("fraction of level-h true coefficients certified")
        axes[2].set_xlabel("recursion level h")
        axes[2].set_ylabel("worst relative error |x̂ − x|/|x| (certified)")
        axes[2].set_yscale("log")
        for ax in axes:
            ax.set_xticks([1, 2, 3])
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=6)
        axes[0].set_ylim(-0.05, 1.05)
        axes[1].set_ylim(-0.05, 1.05)
        paths.append(save_figure(fig, os.path.join(outdir, FIGURES[4])))
    # 6. sklearn
    sub = _study(df, "sklearn")
    if len(sub):
        fig, axes = new_figure(2, width=5.2, height=4.0)
        for key, lab, style in (("m_rate", "ours (exact blocks)", "o-"), ("m_ours_match", "ours (|cos|>0.99)", "o--"),
                                ("m_mb_match", "MiniBatchDictionaryLearning", "s-"),
                                ("m_dl_match", "DictionaryLearning", "^-")):
            if key in sub:
                g = sub.groupby("m_d_actual")[key]
                axes[0].plot(g.median().index, g.median().values, style, label=lab)
        for key, lab, style in (("m_t_recover", "ours", "o-"), ("m_mb_time", "MiniBatch", "s-"),
                                ("m_dl_time", "DictionaryLearning", "^-")):
            if key in sub:
                g = sub.groupby("m_d_actual")[key]
                axes[1].plot(g.median().index, g.median().values, style, label=lab)
        axes[0].set_ylabel("fraction of essential columns recovered")
        axes[1].set_ylabel("fit time (s, one thread)")
        axes[1].set_yscale("log")
        for ax in axes:
            ax.set_xlabel("dimension d")
            ax.set_xscale("log", base=2)
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=7)
        paths.append(save_figure(fig, os.path.join(outdir, FIGURES[5])))
    # 7. b and rho
    sb, sr = _study(df, "b"), _study(df, "rho")
    if len(sb) or len(sr):
        fig, axes = new_figure(2, width=5.0, height=3.8)
        if len(sb):
            band_plot(axes[0], sb, "m_b_actual", "m_rate", logx=False, logy=False)
            t = sb.groupby("m_b_actual")["t_rate"].median()
            reference_line(axes[0], t.index, t.values, label="prediction")
            axes[0].set_xlabel("block size b")
            axes[0].set_ylabel("exact recovery rate")
            axes[0].legend(fontsize=7)
        if len(sr):
            band_plot(axes[1], sr, "p_rho", "m_rate", logx=False, logy=False)
            t = sr.groupby("p_rho")["t_rate"].median()
            reference_line(axes[1], t.index, t.values, label="prediction")
            axes[1].set_xlabel("dense residual ℓ2 norm ρ")
            axes[1].set_ylabel("exact recovery rate")
            axes[1].legend(fontsize=7)
        paths.append(save_figure(fig, os.path.join(outdir, FIGURES[6])))
    plt.close("all")
    return paths


# ================================================================================ analysis
RATE_TOL = 0.10
"""A study is consistent with the block-counting prediction when its mean (rate − t_rate) over
noise-free default-threshold runs is ≥ −RATE_TOL."""


def _phase_location(sub, row, col, level=0.9):
    """For each row value: the col values whose median rate ≥ level (as a compact range text)."""
    piv = _pivot_median(sub, row, col, "m_rate")
    out = []
    for r, vals in piv.iterrows():
        ok = [c for c, v in vals.items() if np.isfinite(v) and v >= level]
        out.append((r, ok))
    return out


def analyze(df):
    import pandas as pd

    base, lines = {}, []
    if not len(df) or "p_study" not in df:
        return {"markdown": "No Theorem 4 runs in the results table.", "baselines": base,
                "verdict": "no data"}
    df = df.copy()
    dm = _defaults_mask(df)
    problems = []
    lines.append(
        f"Setting (module docstring of `experiments/{NAME}.py`): N = {N_MAT} unknown D(b, q, d) matrices, "
        f"K heavy coordinates ±U[{X_MIN}, {X_MAX}] per sample from a pool of columns per matrix, a dense "
        "residual of ℓ2 norm ρ through the matrices, ℓ1 spikes and uniform ℓ∞ noise. Reference point: "
        f"d = {REF['d']}, q = {REF['q']}, b = 57 (q·d/b = 12), S = {REF['S']}, K = {REF['K']}, pool = "
        f"{REF['pool']} per matrix, ρ = {REF['rho']}. *Exact* recovery = right matrix (via σ̂_m), right "
        "column index and every recovered block equal to R's block, signs included. The dashed theory is "
        "the block-counting prediction t_rate (collisions, noise, count threshold; module docstring).")
    # ---- exactness over every default-threshold run
    ours = df[~df["p_study"].isin(["levels"])]
    od = ours[dm[~df["p_study"].isin(["levels"])]] if len(ours) else ours
    wrong_total = int(od["m_wrong"].sum()) if len(od) else 0
    sign_total = int(od["m_sign_err"].sum()) if len(od) else 0
    spur_total = int(od["m_spurious"].sum()) if len(od) else 0
    extra_total = int(od["m_extra"].sum()) if len(od) and "m_extra" in od else 0
    n_cols_total = int(od["m_n_columns"].sum()) if len(od) else 0
    base["thm4.wrong_block_columns"] = wrong_total
    base["thm4.sign_errors"] = sign_total
    base["thm4.spurious_columns"] = spur_total
    lines += ["", "### Exactness (all studies, default thresholds)",
              f"{len(od)} runs, {n_cols_total} recovered columns: **{wrong_total}** essential columns with a wrong "
              f"block, **{spur_total}** spurious columns (no column of any R_i), **{sign_total}** certified "
              f"coefficients with a wrong sign; {extra_total} further recovered columns are genuine, exactly "
              "recovered columns of some R_i certified from a residual coordinate (not essential, not an error)."]
    if wrong_total or sign_total or spur_total:
        problems.append(f"{wrong_total} wrong-block columns, {spur_total} spurious columns and {sign_total} sign errors")
    if len(od) and "m_perm_ok" in od:
        bad_perm = od[od["m_perm_ok"] < 1]
        coll = od[od["m_sig_collisions"] > 0]
        unexplained = bad_perm[bad_perm["m_sig_collisions"] == 0]
        pred = float(np.mean([predicted_collision_rate(int(b), N_MAT, int(h)) for b, h in
                              zip(od["m_b_actual"], _col(od, "p_hamming_tol", pd.Series(THR_DEFAULT["hamming_tol"],
                                                                                          index=od.index))
                                  .fillna(THR_DEFAULT["hamming_tol"]))]))
        base["thm4.unexplained_permutation_failures"] = len(unexplained)
        lines.append(f"Permutation: the recovered labels map one-to-one onto the true matrices in {len(od) - len(bad_perm)} of "
                     f"{len(od)} runs. {len(coll)} runs drew two matrices whose signatures σ̂_m lie within hamming_tol "
                     f"bits (expected {pred * len(od):.1f} from P = C(N,2)·Σ_{{k≤h}} C(b/3−1,k)/2^(b/3−1), larger at small "
                     f"b); the learner merges such a pair into one label (their columns are then checked against both "
                     f"matrices above). Label failures without such a collision: **{len(unexplained)}**.")
        if len(unexplained):
            problems.append(f"{len(unexplained)} runs whose labels do not map one-to-one without a signature collision")
    # ---- consistency with the prediction (every study with a prediction, every threshold setting)
    pr = df[df["p_study"].isin(["qk", "ds", "b", "rho", "noise", "thr", "sklearn"])]
    if len(pr) and "t_rate" in pr:
        pr = pr.dropna(subset=["t_rate"])
        gap = pr["m_rate"] - pr["t_rate"]
        mgap = float(np.nanmean(gap))
        base["thm4.rate_minus_prediction"] = mgap
        ok = mgap >= -RATE_TOL
        rows = [[st, len(g), f"{g['m_rate'].mean():.3f}", f"{g['t_rate'].mean():.3f}",
                 f"{(g['m_rate'] - g['t_rate']).mean():+.3f}", f"{np.sqrt(((g['m_rate'] - g['t_rate']) ** 2).mean()):.3f}"]
                for st, g in pr.groupby("p_study")]
        lines += ["", "### Recovery rate against the block-counting prediction",
                  "t_rate (module docstring) predicts the exact recovery rate from the block counts alone: a "
                  "column's own nonzero blocks n ~ Bin(d/b, q), the blocks it shares with the other K−1 heavy "
                  "columns of a sample, the blocks hit by an ℓ1 spike, the blocks whose entries leave the hypercube "
                  "tolerance under the residual and ℓ∞ noise, the count threshold, and the number of appearances.", "",
                  md_table(["study", "runs", "mean rate", "mean t_rate", "mean difference", "RMS difference"], rows), "",
                  f"Over all {len(pr)} runs: mean rate − t_rate = **{mgap:+.3f}**; consistent when ≥ −{RATE_TOL}: "
                  f"**{'yes' if ok else 'NO'}**. At the paper's count_frac = 0.8 the rate is far from 1 because a "
                  "column's own block count varies: with q·d/b = 12, P(Bin(200, 0.06) < 9.6) ≈ 0.24 of the columns "
                  "can never reach the threshold (the paper's 0.8 presumes q·d/b large enough to concentrate). The "
                  "library default count_frac = 0.5 (threshold 6 blocks there, P(Bin(200, 0.06) < 6) ≈ 0.02) is "
                  "chosen from the threshold and phase studies below: it recovers at least as much in every cell "
                  "(both recover nothing where the rate is 0) with no spurious or wrong-block column."]
        if not ok:
            problems.append(f"recovery rate {mgap:+.3f} below the block-counting prediction")
    ref = _study(df, "qk")
    if len(ref):
        ref = ref[_defaults_mask(ref)]
        r = ref[(ref["p_q"] == REF["q"]) & (ref["p_K"] == REF["K"])]
        if len(r):
            base["thm4.ref_rate"] = float(r["m_rate"].median())
            base["thm4.ref_err_cert_med"] = float(r["m_err_cert_med"].median())
            base["thm4.ref_coef_rate"] = float(r["m_coef_rate"].median())
            rows = [[f"{r['m_rate'].median():.3f}", f"{r['t_rate'].median():.3f}", f"{r['m_block_frac'].median():.3f}",
                     f"{r['m_coef_rate'].median():.3f}", f"{r['m_err_cert'].median():.2g}",
                     f"{r['m_err_cert_med'].median():.2g}", f"{r['t_err_med'].median():.2g}",
                     f"{r['m_err_heavy'].median():.2g}", f"{r['m_t_recover'].median() * 1e3:.1f}"]]
            lines += ["", f"### Reference point (d = {int(r['m_d_actual'].iloc[0])}, q = {REF['q']}, K = {REF['K']}, "
                          f"S = {REF['S']}, default thresholds; medians of {len(r)} runs)",
                      md_table(["rate", "predicted", "blocks recovered / true", "heavy coefs certified",
                                "ℓ∞ err (certified)", "median err (certified)", "predicted median err",
                                "ℓ∞ err (all heavy)", "recover (ms)"], rows),
                      "", "ℓ∞ error over *all* heavy coefficients is ≥ x_min = 0.3 as soon as one heavy coefficient "
                          "of some sample is not certified (x̂ = 0 there): that is the Theorem's ε_{h+1} guarantee "
                          "failing for that sample, which happens whenever a heavy column collides in too many "
                          "blocks or has too few nonzero blocks for the count threshold."]
    # ---- phase transitions
    for study, row, col, title in (("qk", "p_K", "p_q", f"q × K (d = 11400, b = 57, S = {REF['S']})"),
                                   ("ds", "p_S", "m_d_actual", f"d × S (q = {REF['q']}, K = {REF['K']}, minimal b)")):
        sub = _study(df, study)
        if not (len(sub) and sub[row].nunique() >= 2 and sub[col].nunique() >= 2):
            continue
        parts = [(f"default thresholds (count_frac {THR_DEFAULT['count_frac']})", sub[_defaults_mask(sub)])]
        if "p_count_frac" in sub and (sub["p_count_frac"] == PAPER_COUNT_FRAC).any():
            parts.append(("the paper's count_frac 0.8", sub[sub["p_count_frac"] == PAPER_COUNT_FRAC]))
        lines += ["", f"### Phase transition over {title}"]
        for label, part in parts:
            piv = _pivot_median(part, row, col, "m_rate")
            th = _pivot_median(part, row, col, "t_rate")
            rows = [[_num(r)] + [f"{piv.loc[r, c]:.2f} ({th.loc[r, c]:.2f})" for c in piv.columns] for r in piv.index]
            lines += ["", f"Median exact recovery rate, {label} (block-counting prediction in parentheses):", "",
                      md_table([f"{row[2:]} \\ {col.split('_')[-1] if study == 'qk' else 'd'}"]
                               + [_num(c) for c in piv.columns], rows), ""]
            for level in (0.5, 0.9):
                loc = _phase_location(part, row, col, level)
                lines.append(f"- rate ≥ {level}: " + "; ".join(
                    f"{row[2:]} = {_num(r)}: {col.split('_')[-1] if study == 'qk' else 'd'} ∈ "
                    f"{{{', '.join(_num(v) for v in ok)}}}" if ok else f"{row[2:]} = {_num(r)}: none" for r, ok in loc))
            key = "default" if label.startswith("default") else "cf08"
            base[f"thm4.{study}_mean_rate_{key}"] = float(part["m_rate"].mean())
        lines.append(fig_link(FIGURES[0] if study == "qk" else FIGURES[1]))
    # ---- b, rho
    for name, par, label in (("b", "m_b_actual", "block size b"), ("rho", "p_rho", "dense residual ρ")):
        sub = _study(df, name)
        if len(sub):
            g = sub.groupby(par)
            rows = [[_num(v), f"{gg['m_rate'].median():.3f}", f"{gg['t_rate'].median():.3f}",
                     f"{gg['m_err_cert_med'].median():.2g}", f"{gg['t_err_med'].median():.2g}",
                     int(gg['m_spurious'].sum() + gg['m_wrong'].sum())] for v, gg in g]
            lines += ["", f"### Against {label}", md_table([label, "rate", "predicted", "median err", "predicted err",
                                                          "spurious+wrong"], rows)]
    if len(_study(df, "b")) or len(_study(df, "rho")):
        lines.append(fig_link(FIGURES[6]))
    # ---- noise
    sub = _study(df, "noise")
    if len(sub):
        piv = _pivot_median(sub, "p_l1", "p_linf", "m_rate")
        rows = [[_num(l1)] + [f"{piv.loc[l1, e]:.2f}" for e in piv.columns] for l1 in piv.index]
        lines += ["", "### Noise: median exact recovery rate (rows ℓ1 level ‖z₁‖₁/√d, columns ℓ∞ level η)", "",
                  md_table(["ℓ1 \\ ℓ∞"] + [str(e) for e in piv.columns], rows), ""]
        z = sub[(sub["p_l1"] == 0)]
        if len(z):
            g = z.groupby("p_linf")
            lines.append("Median certified-coefficient error against η (ℓ1 = 0): " + ", ".join(
                f"η = {e}: {gg['m_err_cert_med'].median():.2g} (pred. {gg['t_err_med'].median():.2g}), ℓ∞ "
                f"{gg['m_err_cert'].median():.2g}" for e, gg in g) + ".")
        bad = int(sub["m_wrong"].sum() + sub["m_sign_err"].sum())
        lines.append(f"Wrong blocks + sign errors over the noise grid: {bad}; spurious columns: "
                     f"{int(sub['m_spurious'].sum())}.")
        lines.append(fig_link(FIGURES[2]))
        base["thm4.noise_mean_rate"] = float(sub["m_rate"].mean())
    # ---- thresholds
    sub = _study(df, "thr")
    if len(sub):
        g = sub.groupby(["p_hypercube_tol", "p_count_frac", "p_hamming_tol"])
        rows, best = [], None
        groups = sorted(g, key=lambda kv: kv[0] != tuple(THR_DEFAULT.values()))     # default first: wins ties
        for (tau, cf, h), gg in groups:
            rate = float(gg["m_rate"].median())
            bad = float((gg["m_spurious"] + gg["m_wrong"]).mean())
            sign = float(gg["m_sign_err"].mean())
            errh = float(gg["m_err_cert"].median())
            is_def = (tau, cf, h) == tuple(THR_DEFAULT.values())
            rows.append([f"**{tau}**" if is_def else f"{tau}", cf, int(h), f"{rate:.3f}", f"{bad:.2f}", f"{sign:.2f}",
                         f"{errh:.2g}", len(gg)])
            if bad == 0 and sign == 0 and (best is None or rate > best[0] + 1e-9):
                best = (rate, (tau, cf, h))
        d = sub[_defaults_mask(sub)]
        drate = float(d["m_rate"].median()) if len(d) else float("nan")
        lines += ["", "### Thresholds (ℓ1 = 0.003, η = 0.05; bold = default)", "",
                  md_table(["τ∞", "count_frac", "hamming_tol", "rate", "spurious+wrong / run", "sign errors / run",
                            "ℓ∞ err (certified)", "runs"], sorted(rows, key=lambda r: (str(r[0]).strip("*"), r[1], r[2]))), ""]
        if best is not None:
            lines.append(f"Best clean setting (no spurious/wrong columns, no sign errors; ties go to the default): "
                         f"τ∞ = {best[1][0]}, count_frac = {best[1][1]}, hamming_tol = {int(best[1][2])} with rate "
                         f"{best[0]:.3f}; the defaults give {drate:.3f}.")
            base["thm4.thr_default_rate"] = drate
            base["thm4.thr_best_rate"] = best[0]
        lines.append(fig_link(FIGURES[3]))
    # ---- levels
    sub = _study(df, "levels")
    if len(sub):
        rows = []
        for (br, q, c), gg in sub.groupby(["p_branch", "p_q", "p_chain"]):
            cells = [br, _num(q), _num(c), f"{gg['m_deep_rate'].median():.2f}", f"{gg['m_all_rate'].median():.2f}"]
            for h in (1, 2, 3):
                if h <= c:
                    med = gg[f"m_relerr_med_{h}"].median() if f"m_relerr_med_{h}" in gg else float("nan")
                    cells.append(f"{int(gg[f'm_n_cert_{h}'].median())} / {_f(gg[f'm_frac_{h}'].median(), '.2f')} / "
                                 f"{_f(med, '.2g')} / {_f(gg[f'm_relerr_{h}'].median(), '.2g')}")
                else:
                    cells.append("—")
            rows.append(cells)
        lines += ["", "### Recursion levels (d = 11400, K = 1 word per sample, S = 60)",
                  "Samples y = W(x e_j): a *pure* word R_a R_b ⋯ (length = depth) or the same word through identity "
                  "branches Π (I+R)/2 (the sketch's structure), plus a dense residual (ρ in the grid). Cells per level: "
                  "certified coefficients / fraction of the level's true coefficients certified / median / worst "
                  "relative error |x̂ − x|/|x| of the certified ones (medians over runs).", "",
                  md_table(["branch", "q", "depth", "deepest columns exact", "all word columns exact",
                            "level 1", "level 2", "level 3"], rows), ""]
        pure = sub[sub["p_branch"] == "pure"]
        if len(pure) and "m_relerr_med_1" in pure:
            grow = []
            for q, g in pure.groupby("p_q"):
                e1 = g[g["p_chain"] == 1]["m_relerr_med_1"].median()
                e2 = g[g["p_chain"] == 2]["m_relerr_med_1"].median()
                dq = math.sqrt(float(g["m_d_actual"].iloc[0]) * q)
                if math.isfinite(e1) and math.isfinite(e2) and e1 > 0:
                    grow.append(f"q = {_num(q)}: ×{e2 / e1:.1f} (√(dq) = {dq:.1f})")
                    base[f"thm4.levels_error_growth_q{_num(q)}"] = e2 / e1
            if grow:
                lines.append("Error growth per level: a level-1 coefficient of a pure word of length 2 is |x|/√(dq), so "
                             "the same residual gives a √(dq) times larger relative error than for a word of length 1. "
                             "Measured ratio of median relative errors (length 2 / length 1): " + "; ".join(grow) + ".")
        p2 = sub[(sub["p_branch"] == "pure") & (sub["p_chain"] >= 2)]
        if len(p2):
            n2 = int(p2["m_n_cert_2"].sum())
            base["thm4.levels_pure2_deep_rate"] = float(p2[p2["p_chain"] == 2]["m_deep_rate"].median())
            lines.append(f"Pure words of length ≥ 2: level 2 certified {n2} coefficients in {len(p2)} runs. A level-1 "
                         "coefficient vector of a pure word R_a R_b x e_j is R_b x e_j: q·d heavy coefficients of size "
                         "|x|/√(dq) at once, so every block of R_a collides (K_eff·q = q²d ≫ 1 unless q ≪ 1/√d), and "
                         "level 2 needs all b entries of a block of R_b certified at level 1. Both need "
                         "d ≳ (count·b/(q√d))², far beyond testable sizes (THEORY.md §6.2: ε grows by √(dq) per level).")
        ib = sub[(sub["p_branch"] == "identity")]
        if len(ib):
            base["thm4.levels_identity_deep_rate"] = float(ib["m_deep_rate"].median())
            lines.append(f"Identity branches: the deepest matrix's columns appear at level 1 with coefficient "
                         f"x/2^depth (median exact rate {ib['m_deep_rate'].median():.2f}); this is how the real "
                         "setting is learned (THEORY.md §6.2, \"The identity branch helps\").")
        lines.append(fig_link(FIGURES[4]))
    # ---- sklearn
    sub = _study(df, "sklearn")
    sk_verdict = None
    if len(sub):
        rows = []
        for d, gg in sub.groupby("m_d_actual"):
            mb_ratio = float((gg["m_mb_time"] / gg["m_t_recover"]).median())
            dlf = gg["m_dl_finished"].mean() if "m_dl_finished" in gg else 0
            dl_ratio = float((gg["m_dl_time"] / gg["m_t_recover"]).median())
            rows.append([_num(d), int(gg["m_n_components"].median()), f"{gg['m_rate'].median():.2f}",
                         f"{gg['m_rate_cf08'].median():.2f}" if "m_rate_cf08" in gg else "—",
                         f"{gg['m_ours_match'].median():.2f}", f"{gg['m_mb_match'].median():.2f}",
                         f"{_f(gg['m_dl_match'].median(), '.2f')}" + ("" if dlf == 1 else f" ({dlf:.0%} finished)"),
                         f"{gg['m_t_recover'].median() * 1e3:.1f} ms", f"{gg['m_mb_time'].median():.2f} s",
                         f"{gg['m_dl_time'].median():.2f} s", f"×{mb_ratio:.0f}", f"×{dl_ratio:.0f}",
                         f"{gg['m_rate'].median() - gg['m_mb_match'].median():+.2f}",
                         f"{gg['m_rate'].median() - np.nanmedian(gg['m_dl_match']) if gg['m_dl_match'].notna().any() else float('nan'):+.2f}"])
        ratio_all = float((sub["m_mb_time"] / sub["m_t_recover"]).median())
        gap_mb = float((sub["m_rate"] - sub["m_mb_match"]).median())
        gap_dl = float((sub["m_rate"] - sub["m_dl_match"]).median()) if sub["m_dl_match"].notna().any() else float("nan")
        base["thm4.sklearn_gap_minibatch"] = gap_mb
        if math.isfinite(gap_dl):
            base["thm4.sklearn_gap_batch"] = gap_dl
        base["thm4.sklearn_mb_match"] = float(sub["m_mb_match"].median())
        base["thm4.sklearn_ours_rate"] = float(sub["m_rate"].median())
        if "m_rate_cf08" in sub:
            gap08 = float((sub["m_rate_cf08"] - sub["m_mb_match"]).median())
            base["thm4.sklearn_gap_minibatch_cf08"] = gap08
        faster = ratio_all >= 100
        more = gap_mb > 0 and (not math.isfinite(gap_dl) or gap_dl > 0)
        sk_verdict = (f"ours ×{ratio_all:.0f} faster than MiniBatch (median), recovery gap {gap_mb:+.2f} vs MiniBatch"
                      + (f", {gap_dl:+.2f} vs DictionaryLearning" if math.isfinite(gap_dl) else "")
                      + f" → {'ahead on both' if faster and more else ('faster but recovers less' if faster else 'not 100× faster')}")
        lines += ["", "### scikit-learn peer on the same samples",
                  f"sklearn 1 thread, fit_algorithm='cd', α = {ALPHA}, n_components = the true number of essential "
                  f"columns (an oracle the peer is given); MiniBatch: batch 256, {MB_EPOCHS} epochs, tol = 0, "
                  f"max_no_improvement = None; DictionaryLearning: max_iter {DL_MAX_ITER} with a time cap. Matched = "
                  f"|cos| > {COS_MATCH} after optimal one-to-one matching. sklearn's atoms come with **no column index, "
                  "no matrix label and an arbitrary sign** (a dictionary is only defined up to sign and permutation); "
                  "ours come with all three, and our exact rate additionally demands every block's signs.", "",
                  md_table(["d", "atoms", "ours exact", "ours exact, paper's count_frac 0.8", "ours |cos|>0.99", "MiniBatch",
                            "DictLearning", "ours time",
                            "MiniBatch time", "DictLearning time", "MB/ours time", "DL/ours time",
                            "gap vs MB", "gap vs DL"], rows), "",
                  f"**Verdict (peer)**: {sk_verdict}."
                  + (f" With the paper's count_frac = 0.8 our exact rate is "
                     f"{sub['m_rate_cf08'].median():.2f}, gap {gap08:+.2f} vs MiniBatch and "
                     f"{float((sub['m_rate_cf08'] - sub['m_dl_match']).median()):+.2f} vs DictionaryLearning."
                     if "m_rate_cf08" in sub else "") + " Our |cos| score is lower than the exact rate would suggest because "
                  "blocks that collided in every appearance stay 0 in our columns.", fig_link(FIGURES[5])]
    # ---- verdict
    verdict = ("consistent: exact blocks and signs, recovery at the block-counting prediction"
               if not problems else "REGRESSION: " + "; ".join(problems))
    lines.insert(0, f"**Verdict**: {verdict}." + (f" Peer: {sk_verdict}." if sk_verdict else ""))
    lines.insert(1, "")
    return {"markdown": "\n".join(lines), "baselines": base, "verdict": verdict}
