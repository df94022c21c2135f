"""Slow, literal NumPy twins of every kernel: the test oracle and a readable specification.

Nothing here is optimised; each function follows the paper's formula or algorithm line by line.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.linalg import hadamard as _hadamard_matrix

from ._matrix_kernels import STREAM_GAP, STREAM_SIGMA_M, STREAM_SIGMA_S
from ._rng import mix_np
from .matrices import module_name, tuple_name


# ----------------------------------------------------------------------------- sketches (§3.3)
def sketch_objects(graph, matvec, d_sketch):
    """Every object sketch and the overall sketch, computed object by object from the formulas.

    Parameters
    ----------
    graph : Graph
    matvec : callable (name, vector of shape (d,)) -> vector of shape (d,)
        R_name @ v, e.g. ``lambda n, v: dense[n] @ v``.
    d_sketch : int

    Returns
    -------
    (dict of object id -> (d,) array, overall (d,) array)
    """
    d = d_sketch
    memo = {}
    e1 = np.zeros(d)
    e1[0] = 1.0

    def s_tuple(sketches, weights):
        out = np.zeros(d)
        for i, (s, w) in enumerate(zip(sketches, weights), start=1):
            out = out + w * (s + matvec(tuple_name(i), s)) / 2
        return out

    def s_object(o):
        if o in memo:
            return memo[o]
        m = graph.modules[graph.module_of[o]]
        x = np.zeros(d)
        x[:len(graph.attributes[o])] = graph.attributes[o]
        s_attr = 0.5 * matvec(module_name(m, 1), x) + 0.5 * matvec(module_name(m, 2), e1)
        children, weights = graph.inputs[o]
        s_input = s_tuple([s_object(c) for c in children], weights)
        t = s_tuple([s_attr, s_input], [0.5, 0.5])
        memo[o] = (t + matvec(module_name(m, 0), t)) / 2
        return memo[o]

    children, weights = graph.output
    overall = s_tuple([s_object(c) for c in children], weights)
    return {graph.ids[o]: s_object(o) for o in range(len(graph.ids))}, overall


def sketch_overall(graph, matvec, d_sketch):
    """s_overall only (see :func:`sketch_objects`)."""
    return sketch_objects(graph, matvec, d_sketch)[1]


# ----------------------------------------------------------------------------- decoders (THEORY.md §2.2, §2.4)
def word_matrix(matrices):
    """The dense word A = M_1 M_2 ⋯ M_k from its matrices, outermost first."""
    A = np.eye(matrices[0].shape[0])
    for M in matrices:
        A = A @ M
    return A


def _kept(s, keep):
    """(P s, d/d'): the sketch with coordinates ≥ keep zeroed, and the erasure rescale."""
    s = np.asarray(s, dtype=np.float64)
    d = s.shape[0]
    keep = d if keep is None else keep
    return np.where(np.arange(d) < keep, s, 0.0), d / keep


def decode_word(s, A, c_h, weight, length=None, keep=None, column_norm=True):
    """x̂_j = (d/d')·⟨A e_j, P s⟩ / (c_h·w), divided by ‖A e_j‖² when ``column_norm`` (a zero
    column is left undivided), for j < length: Theorems 1 and 3(ii) with the column-norm correction
    (THEORY.md §2.4), one sketch ``s`` of shape (d,)."""
    ps, factor = _kept(s, keep)
    L = A.shape[1] if length is None else length
    out = np.zeros(L)
    for j in range(L):
        col = A[:, j]                                           # A e_j
        out[j] = factor * float(col @ ps) / (c_h * weight)
        if column_norm and float(col @ col) > 0:
            out[j] = out[j] / float(col @ col)
    return out


def decode_count(s, a_e, c_h, weight, keep=None, column_norm=True):
    """n̂ = (d/d')·⟨a_e, P s⟩ / (c_h·w*), divided by ‖a_e‖² when ``column_norm``; a_e = R_{M,2} e_1
    (or the path word ending in R_{M,2}, applied to e_1)."""
    ps, factor = _kept(s, keep)
    a_e = np.asarray(a_e, dtype=np.float64)
    n = factor * float(a_e @ ps) / (c_h * weight)
    if column_norm and float(a_e @ a_e) > 0:
        n = n / float(a_e @ a_e)
    return n


def decode_ratio(s, A, a_e, length=None, keep=None, column_norm=True):
    """Self-normalised form (⟨A e_j, s⟩/‖A e_j‖²) / (⟨a_e, s⟩/‖a_e‖²) (norms only when
    ``column_norm``): weight-free Theorem 1 and the mean attribute of Theorem 3. The erasure
    factor d/d' cancels."""
    num = decode_word(s, A, 1.0, 1.0, length, keep, column_norm)
    den = decode_count(s, a_e, 1.0, 1.0, keep, column_norm)
    return num / den


# ----------------------------------------------------------------------------- D(b, q, d) (§4.3)
def _pm(u):
    return np.where((np.asarray(u, dtype=np.uint64) & np.uint64(1)) == 1, 1, -1)


def enc(j, b_m, b_s, d_sketch, block_size, block_prob):
    """Algorithm 1, Enc(j, b_m, b_s) with 1-based column index j (THEORY.md §9 item 5)."""
    nbits = 0 if d_sketch <= 1 else math.ceil(math.log2(d_sketch) - 1e-12)
    bits = [(j - 1) >> (nbits - 1 - k) & 1 for k in range(nbits)]        # binary of j-1, MSB first
    sigma = [1 if bit else -1 for bit in bits]                           # 0 -> -1, 1 -> +1
    sigma = [1] + sigma                                                  # prepend +1
    sigma = sigma + [b_m, b_s]                                           # append the parity bits
    sigma = sigma + [1] * (block_size // 3 - len(sigma))                 # pad with +1
    return np.array(sigma, dtype=np.float64) / math.sqrt(d_sketch * block_prob)


# ----------------------------------------------------------------------------- randomized Hadamard
def hadamard_dense(perm, signs):
    """R = H D1 H D2 H D3 P / d^{3/2} as a dense matrix, with (P x)_k = x[perm[k]]."""
    d = len(perm)
    H = _hadamard_matrix(d).astype(np.float64)
    P = np.zeros((d, d))
    P[np.arange(d), perm] = 1.0
    D1, D2, D3 = (np.diag(s) for s in signs)
    return H @ D1 @ H @ D2 @ H @ D3 @ P / d ** 1.5


def fwht(x):
    """Unnormalised Walsh–Hadamard transform H x (Sylvester ordering)."""
    return _hadamard_matrix(len(x)).astype(np.float64) @ x


def hadamard_gather_plan(perm, block):
    """(pos, q) of the blocked gather of (P x)_i = x[perm[i]] with destination blocks of ``block``.

    Bucket b collects the sources j of destination block b (perm⁻¹[j] // block = b) in increasing
    j: pos[j] is the slot of source j in that bucketed copy of x, and q[i] the offset, inside the
    bucket of i's block, of i's source perm[i].
    """
    d = len(perm)
    inv = np.argsort(perm)                                  # perm⁻¹
    pos = np.empty(d, dtype=np.int64)
    for b in range(d // block):
        sources = np.flatnonzero(inv // block == b)         # increasing source order
        pos[sources] = b * block + np.arange(len(sources))
    q = pos[perm] - (np.arange(d) // block) * block
    return pos, q


def hadamard_gather_blocked(x, pos, q, signs, block):
    """x[perm] ⊙ signs through the plan: copy x into its buckets, then read each block's bucket."""
    d = len(x)
    buckets = np.empty(d)
    buckets[pos] = x
    return buckets[(np.arange(d) // block) * block + q] * signs


def apply_plus_identity(R, X, c):
    """c·(X + X Rᵀ) row by row: c(I+R)x, the (I+R)/2-type factors of the sketch (paper §3.3)."""
    return c * (X + X @ R.T)


# ----------------------------------------------------------------------------- tuple merge
def merge_inputs(children_sketches, transformed, weights):
    """Σ_i ½ w_i (s_i + R_i s_i) given the s_i and the R_i s_i (the merge kernel's contract)."""
    out = np.zeros_like(children_sketches[0])
    for s, rs, w in zip(children_sketches, transformed, weights):
        out = out + 0.5 * w * (s + rs)
    return out


# ----------------------------------------------------------------------------- dictionary learning (§4.2)
def _dl_ceil_log2(n):
    return 0 if n <= 1 else math.ceil(math.log2(n) - 1e-12)


def dictlearn_block(v, d_sketch, block_prob, hypercube_tol):
    """Steps 1–5 of THEORY.md §6.2 for one block v (length b), literally.

    Returns ``(status, parsed)`` with status one of ``_dictlearn_kernels.ST_*`` and, when accepted,
    parsed = dict(column (0-based j), sign, magnitude, sigma_m, sigma_s, pattern).
    """
    from ._dictlearn_kernels import (ST_ACCEPT, ST_BAD_INDEX, ST_BAD_PADDING, ST_OFF_CUBE,
                                     ST_SIGN_MISMATCH, ST_ZERO)

    v = np.asarray(v, dtype=np.float64)
    b = v.shape[0]
    t = b // 3
    L = _dl_ceil_log2(d_sketch)
    a = np.sum(np.abs(v))                                     # 1. ℓ1 norm
    if not a > 0:
        return ST_ZERO, None
    u = b * v / a                                             #    ℓ1-normalise (to ±1 scale)
    if np.max(np.abs(np.abs(u) - 1.0)) > hypercube_tol:       #    ℓ∞-close to the hypercube?
        return ST_OFF_CUBE, None
    r = np.where(u > 0, 1, -1)                                #    round
    r_s, r_c, r_m = r[:t], r[t:2 * t], r[2 * t:]              # 2. parse
    g = r_c[0]
    e = g * r_c                                               #    = Enc(j, f'_m, f'_s)·√(dq)
    if not np.all(e[L + 3:] == 1):
        return ST_BAD_PADDING, None
    j = 0
    for bit in e[1:L + 1]:                                    #    binary code of j, MSB first
        j = 2 * j + (1 if bit == 1 else 0)
    if j >= d_sketch:
        return ST_BAD_INDEX, None
    b_m, b_s = e[L + 1], e[L + 2]                             #    parity bits
    sign = r_m[0] * b_m                                       # 3. sign(x_j)
    if r_s[0] * b_s != sign:
        return ST_SIGN_MISMATCH, None
    return ST_ACCEPT, {
        "column": j,
        "sign": int(sign),
        "magnitude": a * math.sqrt(d_sketch * block_prob) / b,    # 5.
        "sigma_m": (r_m * r_m[0]).astype(np.int8),                # 4. canonical forms
        "sigma_s": (r_s * r_s[0]).astype(np.int8),
        "pattern": (sign * r).astype(np.int8),                    #    true block of R (signs)
    }


def dictlearn_screen(samples, block_size, hypercube_tol):
    """Status (S, d/b) of every block of every sample (twin of ``screen_blocks``)."""
    Y = np.asarray(samples, dtype=np.float64)
    S, d = Y.shape
    b = block_size
    status = np.empty((S, d // b), dtype=np.int8)
    for k in range(S):
        for ell in range(d // b):
            status[k, ell] = dictlearn_block(Y[k, ell * b:(ell + 1) * b], d, 1.0, hypercube_tol)[0]
    return status


def dictlearn_parse(samples, block_size, block_prob, hypercube_tol):
    """Every accepted block in (sample, block) order (twin of ``parse_blocks``).

    Returns a dict of arrays: sample, block, column, sign, magnitude (n,), and sigma_m, sigma_s
    (n, b/3), pattern (n, b) as ±1 int8.
    """
    Y = np.asarray(samples, dtype=np.float64)
    S, d = Y.shape
    b, t = block_size, block_size // 3
    rows = []
    for k in range(S):
        for ell in range(d // b):
            st, p = dictlearn_block(Y[k, ell * b:(ell + 1) * b], d, block_prob, hypercube_tol)
            if p is not None:
                rows.append((k, ell, p))
    out = {
        "sample": np.array([r[0] for r in rows], dtype=np.int64),
        "block": np.array([r[1] for r in rows], dtype=np.int64),
        "column": np.array([r[2]["column"] for r in rows], dtype=np.int64),
        "sign": np.array([r[2]["sign"] for r in rows], dtype=np.int64),
        "magnitude": np.array([r[2]["magnitude"] for r in rows], dtype=np.float64),
    }
    for name, width in (("sigma_m", t), ("sigma_s", t), ("pattern", b)):
        out[name] = np.array([r[2][name] for r in rows], dtype=np.int8).reshape(len(rows), width)
    return out


def dictlearn_recover_exact(samples, block_size, block_prob, hypercube_tol=0.3, count_frac=0.5):
    """Steps 6–9 of THEORY.md §6.2 with exact keys (Hamming tolerance 0), one level, with dicts.

    Returns ``(columns, coefficients)``: columns maps (σ̂_m as a tuple, j) to {block ℓ: ±1 signs
    (b,) by per-entry majority over its certified copies, ties to the earliest copy};
    coefficients maps (sample, σ̂_m tuple, j) to sign · median of the block magnitudes.
    """
    Y = np.asarray(samples, dtype=np.float64)
    S, d = Y.shape
    b = block_size
    threshold = count_frac * block_prob * d / b
    copies = {}          # (σ̂_m, j) -> {ℓ: [patterns in sample order]}
    coefficients = {}
    for k in range(S):
        groups = {}      # 6. consistency count: key (σ̂_m, j, σ̂_s) -> accepted blocks of sample k
        for ell in range(d // b):
            st, p = dictlearn_block(Y[k, ell * b:(ell + 1) * b], d, block_prob, hypercube_tol)
            if p is None:
                continue
            key = (tuple(p["sigma_m"]), p["column"], tuple(p["sigma_s"]))
            groups.setdefault(key, []).append((ell, p))
        entries = {}
        for (sig_m, j, _), blocks in groups.items():
            if len(blocks) >= threshold:          # certified: 7. collect by (matrix signature, j)
                entries.setdefault((sig_m, j), []).extend(blocks)
        for (sig_m, j), blocks in entries.items():
            for ell, p in blocks:
                copies.setdefault((sig_m, j), {}).setdefault(ell, []).append(p["pattern"])
            mags = [p["magnitude"] for _, p in blocks]             # 9. coefficient
            vote = sum(p["sign"] for _, p in blocks)
            signed = sum(p["sign"] * p["magnitude"] for _, p in blocks)
            sign = 1 if vote > 0 else -1 if vote < 0 else (-1 if signed < 0 else 1)
            coefficients[(k, sig_m, j)] = sign * float(np.median(mags))
    columns = {}
    for key, per_block in copies.items():                         # 8. majority vote per entry
        columns[key] = {}
        for ell, pats in per_block.items():
            s = np.sum(np.array(pats, dtype=np.int64), axis=0)
            columns[key][ell] = np.where(s > 0, 1, np.where(s < 0, -1, pats[0])).astype(np.int8)
    return columns, coefficients


# =============================================================================================
# ----------------------------------------------------------------------------- least-squares decoders
# (THEORY.md §2.5; twins of sketchsim.decode_ls). s_overall = s_0 + Σ_θ P_θ x_θ is affine in the
# attributes, so P and s_0 are read off the literal sketch above: s_0 with every attribute 0, and
# column j of P_θ as the sketch with x_θ = e_j (others 0) minus s_0. Dense matrices, small d only.
def _sketch_with_attributes(graph, dense, d_sketch, attrs):
    """The literal s_overall of ``graph``'s structure with the attribute vectors ``attrs`` (any
    values, zeros included: the twin bypasses the Graph's unit-norm validation on purpose)."""
    import copy

    g = copy.copy(graph)
    g.attributes = [np.asarray(a, dtype=np.float64) for a in attrs]
    return sketch_overall(g, lambda name, v: dense[name] @ v, d_sketch)


def ls_design_matrix(graph, dense, d_sketch, object_ids=None):
    """(P of shape (d, Σ L_θ), s_0 of shape (d,), offsets), one literal sketch per column.

    ``dense``: {matrix name: (d, d) array}, e.g. ``{n: bank.dense(n) for n in bank.matrix_names(g)}``.
    """
    ids = list(graph.ids) if object_ids is None else list(object_ids)
    zeros = [np.zeros(len(x)) for x in graph.attributes]
    s0 = _sketch_with_attributes(graph, dense, d_sketch, zeros)
    cols, offsets = [], [0]
    for oid in ids:
        o = graph.index[oid]
        for j in range(len(graph.attributes[o])):
            attrs = [z.copy() for z in zeros]
            attrs[o][j] = 1.0
            cols.append(_sketch_with_attributes(graph, dense, d_sketch, attrs) - s0)
        offsets.append(offsets[-1] + len(graph.attributes[o]))
    return np.column_stack(cols), s0, np.array(offsets)


def attributes_ls(s, graph, dense, d_sketch, object_id, keep=None):
    """Path-matched least squares: argmin ‖P_θ x − (s − s_0)‖ over the first ``keep`` rows
    (np.linalg.lstsq, no scaling)."""
    P, s0, _ = ls_design_matrix(graph, dense, d_sketch, [object_id])
    k = d_sketch if keep is None else keep
    return np.linalg.lstsq(P[:k], (np.asarray(s, dtype=np.float64) - s0)[:k], rcond=None)[0]


def joint_attributes(s, graph, dense, d_sketch, nonnegative=False, keep=None):
    """Joint least squares (np.linalg.lstsq: the minimum-norm solution when underdetermined) or
    NNLS (scipy.optimize.nnls) for every object at once; {object id: x̂_θ}."""
    from scipy.optimize import nnls

    P, s0, off = ls_design_matrix(graph, dense, d_sketch)
    k = d_sketch if keep is None else keep
    r = (np.asarray(s, dtype=np.float64) - s0)[:k]
    if nonnegative:
        x = nnls(P[:k], r, maxiter=max(100, 10 * P.shape[1]))[0]
    else:
        x = np.linalg.lstsq(P[:k], r, rcond=None)[0]
    return {oid: x[off[i]:off[i + 1]] for i, oid in enumerate(graph.ids)}


# ============================================================================= blind unrolling and
# object signatures (issue 10, part 2): twins of sketchsim/unroll.py and sketchsim/signatures.py
def unroll_column_factors(path, ancestors, module):
    """Factors (scalar, matrix name or None) of the column map C = Q_path·A'_M, outermost first:
    ½(I+R_{i_1}), then per ancestor P: ½(I+R_{P,0}), ¼(I+R_2), ½(I+R_{i_next}); then ½(I+R_{M,0}),
    ¼(I+R_1) and the scalar ½ of s_attr."""
    out = [(0.5, tuple_name(path[0]))]
    for P, i in zip(ancestors, path[1:]):
        out += [(0.5, module_name(P, 0)), (0.25, tuple_name(2)), (0.5, tuple_name(i))]
    return out + [(0.5, module_name(module, 0)), (0.25, tuple_name(1)), (0.5, None)]


def unroll_column_map(dense, path, ancestors, module, L):
    """Dense C (d, L+1) of one candidate: [Q·A'_M e_j for j < L, Q·A'_M's counting column], where
    Q·A'_M = Π_factors a(I + R) (the last factor a scalar) applied to [R_{M,1}[:, :L], R_{M,2} e_1].

    ``dense``: dict name -> (d, d) array (e.g. ``{n: bank.dense(n) for n in names}``)."""
    d = dense[module_name(module, 1)].shape[0]
    M = np.eye(d)
    for a, name in unroll_column_factors(path, ancestors, module):
        M = M @ (a * (np.eye(d) + dense[name]) if name is not None else a * np.eye(d))
    B = np.column_stack([dense[module_name(module, 1)][:, :L], dense[module_name(module, 2)][:, 0]])
    return M @ B


def unroll_candidate_score(r, C):
    """u = Cᵀ r (the score vector of a candidate) and the exact projection energy ‖P_C r‖²."""
    u = C.T @ r
    coef, *_ = np.linalg.lstsq(C, r, rcond=None)
    return u, float(np.sum((C @ coef) ** 2))


def unroll_formal_gram(factors1, module1, factors2, module2):
    """κ = Σ over formal words of coef₁(w)·coef₂(w): every I/R choice of every factor enumerated
    literally (identity choices dropped from the word); 0 for different modules."""
    if module1 != module2:
        return 0.0

    def expand(factors):
        out = {}
        k = len(factors)
        for mask in range(2 ** k):
            word, coef = [], 1.0
            for t, (a, name) in enumerate(factors):
                coef *= a
                if name is not None and (mask >> t) & 1:
                    word.append(name)
                elif name is None and (mask >> t) & 1:
                    coef = 0.0                       # a scalar factor has no R branch
            key = tuple(word)
            out[key] = out.get(key, 0.0) + coef
        return out

    e1, e2 = expand(factors1), expand(factors2)
    return float(sum(c * e2.get(w, 0.0) for w, c in e1.items()))


def unroll_joint_lstsq(s, columns):
    """Joint least squares of stacked column maps [C_1 … C_n] (THEORY.md §2.5): list of y_θ."""
    C = np.concatenate(columns, axis=1)
    y, *_ = np.linalg.lstsq(C, s, rcond=None)
    out, a = [], 0
    for Cb in columns:
        out.append(y[a:a + Cb.shape[1]])
        a += Cb.shape[1]
    return out


def signature_decode(s, A, c_h, weight, attr_len, sig_len):
    """σ̂ = √2·x̂'[L−k:L] with x̂' the literal word decoder (:func:`decode_word`, no column norm) of
    the combined attribute x' = [x; σ]/√2 of length L (THEORY.md §5, cheaper variant)."""
    x = decode_word(s, A, c_h, weight, length=attr_len, column_norm=False)
    return math.sqrt(2.0) * x[attr_len - sig_len:attr_len]


def match_signature_scores(sig_hat, candidates):
    """Centred correlation of σ̂ with every candidate, one at a time: ⟨σ̂, c − c̄⟩/‖c − c̄‖."""
    out = np.empty(len(candidates))
    for i, c in enumerate(candidates):
        c = np.asarray(c, dtype=np.float64)
        cc = c - c.mean()
        n = math.sqrt(float(cc @ cc))
        out[i] = float(np.dot(sig_hat, cc)) / n if n > 0 else -np.inf
    return out


# ----------------------------------------------------------------------------- implicit D(b, q, d)
def block_sparse_blocks(d_sketch, block_size, block_prob, key, j):
    """Nonzero blocks of column j (0-based) of D(b, q, d) (either storage), literally: [(i, u), ...].

    Geometric gaps (twin of ``_matrix_kernels._next_block``): the k-th nonzero block, k = 0, 1, …,
    uses u = mix(key, 4, j, k), U = ((u >> 11) + 1)·2⁻⁵³ and lies ⌊log U / log(1 − q)⌋ + 1 blocks
    after the previous one (the first after "block −1"); blocks at or past d/b end the column. For
    q = 1 every gap is 0. i is 0-based; u's bits 0, 1, 2 are f_m, f_s, f_c.
    """
    nb = d_sketch // block_size
    out, i, k = [], -1, 0
    while True:
        u = int(mix_np(key, STREAM_GAP, j, k))
        if block_prob >= 1.0:
            gap = 0
        else:
            U = ((u >> 11) + 1) * 2.0 ** -53
            gap = math.floor(math.log(U) / math.log1p(-block_prob))
        i = i + 1 + gap
        if i >= nb:
            return out
        out.append((i, u))
        k += 1


def block_sparse_dense(d_sketch, block_size, block_prob, key):
    """Algorithm 2, D(b, q, d), literally, from the same random bits as the Numba samplers (both storages).

    Random bits: σ_m[t] from mix(key, 1, t, 0); σ_{s,j}[t] from mix(key, 2, j−1, t); the nonzero
    blocks of column j (η = 1, step 11) and their u (f_m, f_s, f_c = bits 0, 1, 2, step 8) from
    :func:`block_sparse_blocks` (geometric gaps: the blocks are independent Bernoulli(q)).
    """
    d, b, q = d_sketch, block_size, block_prob
    t = b // 3
    scale = 1.0 / math.sqrt(d * q)
    R = np.zeros((d, d))
    sigma_m = _pm(mix_np(key, STREAM_SIGMA_M, np.arange(t), 0)) * scale          # step 4
    for j in range(1, d + 1):                                                     # step 5
        sigma_s = _pm(mix_np(key, STREAM_SIGMA_S, j - 1, np.arange(t))) * scale   # step 6
        for i0, u in block_sparse_blocks(d, b, q, key, j - 1):           # steps 7, 11: η = 1
            f_m, f_s, f_c = (1 if (u >> k) & 1 else -1 for k in range(3))         # step 8
            fp_m = f_m * np.sign(sigma_m[0])                                      # step 9
            fp_s = f_s * np.sign(sigma_s[0])
            sigma_c = enc(j, fp_m, fp_s, d, b, q)                                 # step 10
            R[b * i0:b * (i0 + 1), j - 1] = np.concatenate([f_s * sigma_s, f_c * sigma_c, f_m * sigma_m])
    return R


def block_sparse_apply(R, X):
    """R X of a dense block-sparse R for rows X (m, L ≤ d), in the stored kernels' summation order.

    out[k, i] = 0.0 + R[i, 0]·X[k, 0] + R[i, 1]·X[k, 1] + …, one rounding per term, columns in
    increasing order (``_matrix_kernels.bs_apply``; an entry ±1/√(dq) times X[k, j] is the kernels'
    ±(X[k, j]·scale), and a zero entry adds ±0.0, which changes no sum that starts at +0.0).
    """
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    out = np.zeros((X.shape[0], R.shape[0]))
    for j in range(X.shape[1]):
        out += X[:, j:j + 1] * R[:, j][None, :]
    return out


def block_sparse_apply_t(R, X):
    """Rᵀ X of a dense block-sparse R for rows X (m, d), in the stored kernels' summation order.

    out[k, j] = scale · (0.0 + Σ sign(R[i, j])·X[k, i] over the nonzero entries of column j in
    increasing i), scale = |nonzero entry| = 1/√(dq) (``_matrix_kernels.bs_apply_t``).
    """
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    nz = R[R != 0]
    scale = float(np.abs(nz[0])) if nz.size else 0.0
    out = np.zeros((X.shape[0], R.shape[1]))
    for j in range(R.shape[1]):
        acc = np.zeros(X.shape[0])
        for i in np.flatnonzero(R[:, j]):
            acc = acc + np.sign(R[i, j]) * X[:, i]
        out[:, j] = acc * scale
    return out
