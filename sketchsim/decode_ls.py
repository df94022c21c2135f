"""Least-squares decoders: read the whole sketch, not one word of it (THEORY.md §2.5).

The paper's estimators (Theorems 1–3, :mod:`sketchsim.decode`) read one formal word — the identity
word R_{M,1}ᵀ s or the all-tuple word Aᵀ s — out of the 2^{3h−3} words that carry an object at
depth h (THEORY.md §2.1). The overall sketch is, however, an *affine* function of the attribute
vectors (paper §3.3):

.. math::

    s_{overall} = s_0 + \\sum_θ P_θ x_θ,

where s_0 is the attribute-independent part (the counting channels ½R_{M,2}e_1 of every object,
carried up the graph) and P_θ (d × L_θ) is the exact linear map from x_θ to s_overall: the product
of every factor on every path from the output to θ, importance weights w_i included,

    P_θ = Σ_paths  [w_{i_1}(I+R_{i_1})/2] · [½(I+R_{M',0}) · ¼(I+R_2)] · [w_{i_2}(I+R_{i_2})/2] ⋯
          ½(I+R_{M,0}) · ¼(I+R_1) · ½R_{M,1}[:, :L_θ]

(the leaf factor is the cached attribute map A_M of :mod:`sketchsim.sketch`). Two decoders use it:

* :func:`attributes_ls` — **path-matched least squares**: knows θ's paths and the modules and
  weights along them (the graph's structure); every other object's attributes are unknown noise.
  x̂_θ = argmin_x ‖P_θ x − (s − s_0)‖₂.
* :func:`joint_attributes` — **joint least squares / NNLS**: knows the whole structure (modules,
  input order, weights), solves for every attribute at once,
  x̂ = argmin ‖P x − (s − s_0)‖₂ with P = [P_θ1 … P_θn] (optionally x ≥ 0). Exact up to rounding
  while the total attribute length Σ L_θ is below d_sketch and P has full column rank.

Neither decoder ever forms a d × d matrix. Columns of P (d-vectors, one per attribute coordinate)
are pushed up the graph through the bank's operators, batched per node and per tuple position
(:func:`design_matrix`); P itself is d × Σ L_θ. For systems too large to store, ``method="lsqr"``
solves with SciPy's LSQR on the operator x ↦ P x (one forward pass, the cost of one sketch) and
u ↦ Pᵀ u (one adjoint pass down the graph).

The decoders use the graph's *structure* only: ids, modules, input lists, weights and attribute
lengths L_θ = len(graph.attributes[θ]); the attribute values stored in the graph are never read.

Erased sketches (:class:`sketchsim.decode.ErasedSketch`, paper §3.1): the kept prefix is fitted
with the kept rows of P and s_0. Least squares is scale-free, so no d/d' rescale is applied; the
fit stays exact while Σ L_θ < d' (joint) and its noise grows as for any decoder (path LS).
"""
from __future__ import annotations

import math

import numpy as np

from ._validation import check_choice
from .graph import Graph
from .matrices import MatrixBank, module_name, tuple_name
from .sketch import ATTR_MAP_MAX_BYTES, _attr_map, _e1_image

__all__ = ["attributes_ls", "joint_attributes", "design_matrix", "design_adjoint", "DENSE_MAX_BYTES"]

DENSE_MAX_BYTES = 4 * 2**30
"""``method="auto"`` forms P explicitly (d × Σ L_θ float64) up to this size, else uses LSQR."""

LSQR_TOL = 1e-14
"""atol = btol of LSQR: relative residual / normal-equation tolerances (SciPy's meaning)."""
LSQR_ITER_LIM = 500


# --------------------------------------------------------------------------- validation
def _check_bank_graph(bank, graph):
    if not isinstance(bank, MatrixBank):
        raise ValueError(f"bank must be a sketchsim.MatrixBank; got {type(bank).__name__}")
    if not isinstance(graph, Graph):
        raise ValueError(f"graph must be a sketchsim.Graph; got {type(graph).__name__}")
    bank.check_graph(graph)


def _check_sketch(s, d):
    """(rows (B, keep), single, keep) from an array of shape (d,) / (B, d) or an ErasedSketch."""
    from .decode import ErasedSketch            # lazy: decode re-exports this module

    if isinstance(s, ErasedSketch):
        if s.d != d:
            raise ValueError(f"s must have d_sketch = {d} entries to match the bank; got an erased sketch "
                             f"of d = {s.d}")
        arr, keep = s.prefix, s.keep
    else:
        arr = np.asarray(s, dtype=np.float64)
        if arr.ndim not in (1, 2) or arr.shape[-1] != d:
            raise ValueError(f"s must have shape ({d},) or (B, {d}) to match the bank's d_sketch; got "
                             f"{arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"s must be finite; got {float(arr[~np.isfinite(arr)].flat[0])!r}")
        keep = d
    single = arr.ndim == 1
    return np.ascontiguousarray(arr[None, :] if single else arr), single, keep


def _check_design(design, bank, n_rows):
    """A reused :func:`design_matrix` result (Pᵀ, s_0, offsets) with ``n_rows`` rows of Pᵀ."""
    try:
        Pt, s0, off = design
        Pt, s0, off = np.asarray(Pt, dtype=np.float64), np.asarray(s0, dtype=np.float64), np.asarray(off)
    except (TypeError, ValueError):
        raise ValueError("design must be the (Pt, s0, offsets) returned by design_matrix; got "
                         f"{type(design).__name__}") from None
    d = bank.d_sketch
    if Pt.shape != (n_rows, d) or s0.shape != (d,) or off.shape[0] < 2 or off[-1] != n_rows:
        raise ValueError(f"design must come from design_matrix of this graph and bank: Pt of shape "
                         f"({n_rows}, {d}) and s0 of shape ({d},); got {Pt.shape} and {s0.shape}")
    return Pt, s0, off


def _check_bool(name, v):
    if not isinstance(v, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False; got {v!r}")
    return bool(v)


# --------------------------------------------------------------------------- the linear map
def _parents(graph):
    """Per object: [(parent index or −1 for the output, 1-based position, weight)], cached."""
    got = graph.__dict__.get("_ls_parents")
    if got is None:
        got = [[] for _ in graph.ids]
        for k, (c, w) in enumerate(zip(*graph.output), start=1):
            got[int(c)].append((-1, k, float(w)))
        for p, (children, weights) in enumerate(graph.inputs):
            for k, (c, w) in enumerate(zip(children, weights), start=1):
                got[int(c)].append((p, k, float(w)))
        graph.__dict__["_ls_parents"] = got
    return got


def _attr_rows(bank, module, L):
    """Rows [A_Mᵀ; c_M] (L+1, d): A_M = ½(I+R_{M,0}) · ¼(I+R_1) · ½R_{M,1}[:, :L], c_M the same
    chain applied to ½R_{M,2}e_1 — the engine's cached attribute map when it fits the cache."""
    if 8 * bank.d_sketch * (L + 1) <= ATTR_MAP_MAX_BYTES:
        return _attr_map(bank, module, L)
    Y = np.zeros((L + 1, bank.d_sketch))
    Y[:L] = bank.get(module_name(module, 1)).apply(np.eye(L))
    Y[L] = _e1_image(bank.get(module_name(module, 2)))
    Y *= 0.5
    Y += bank.get(tuple_name(1)).apply(Y)
    Y *= 0.25
    Y += bank.get(module_name(module, 0)).apply(Y)
    Y *= 0.5
    return Y


def _merge(parts):
    """Concatenate (cols, rows) blocks, summing rows that carry the same column (DAG paths)."""
    if len(parts) == 1:
        return parts[0]
    cols = np.concatenate([c for c, _ in parts])
    Y = np.concatenate([y for _, y in parts])
    uniq, inv = np.unique(cols, return_inverse=True)
    if len(uniq) == len(cols):
        return cols, Y
    out = np.zeros((len(uniq), Y.shape[1]))
    np.add.at(out, inv, Y)
    return uniq, out


def _propagate(graph, bank, seeds, n_cols):
    """Push contributions to object sketches up to s_overall (linear, paper §3.3).

    ``seeds``: {object index: (cols (k,), Y (k, d))}, row r of Y is a contribution to s_object of
    that object belonging to output column cols[r]. Returns (n_cols, d): row c is the sum of the
    images in s_overall of every row of column c. Objects are visited children first; at each
    object the rows that reached its s_input are turned into s_object rows by ½(I+R_{M,0})·¼(I+R_2)
    and handed to every parent through w_i(I+R_i)/2 (one operator application per position).
    """
    d = bank.d_sketch
    out = np.zeros((n_cols, d))
    parents = _parents(graph)
    pending = {}
    r2 = bank.get(tuple_name(2))
    for o in graph.children_first:
        o = int(o)
        parts = []
        if o in seeds:
            parts.append(seeds[o])
        if o in pending:
            cols, U = _merge(pending.pop(o))
            U = U + r2.apply(U)
            U *= 0.25                                           # ½ · (I+R_2)/2: the s_input slot
            U += bank.get(module_name(graph.module(graph.ids[o]), 0)).apply(U)
            U *= 0.5                                            # (I+R_{M,0})/2
            parts.append((cols, U))
        if not parts:
            continue
        cols, Y = _merge(parts)
        by_pos = {}
        for p, i, w in parents[o]:
            by_pos.setdefault(i, []).append((p, w))
        for i, plist in by_pos.items():
            Z = Y + bank.get(tuple_name(i)).apply(Y)            # (I+R_i) s_object; ½ w_i below
            for p, w in plist:
                if p < 0:
                    out[cols] += (0.5 * w) * Z
                else:
                    pending.setdefault(p, []).append((cols, (0.5 * w) * Z))
    return out


def _adjoint(graph, bank, U, objects, lengths):
    """Pᵀ u per object: {object index: (B, L_θ)} for rows U (B, d) (the adjoint of :func:`_propagate`)."""
    parents_first = [int(o) for o in graph.children_first[::-1]]
    G = {}
    children, weights = graph.output
    by_pos = {}
    for k, (c, w) in enumerate(zip(children, weights), start=1):
        by_pos.setdefault(k, []).append((int(c), float(w)))
    _push(bank, U, by_pos, G)
    r2 = bank.get(tuple_name(2))
    wanted = set(objects)
    out = {}
    for o in parents_first:
        g = G.pop(o, None)
        if g is None:
            continue
        mod = graph.module(graph.ids[o])
        if o in wanted:
            V = _attr_rows(bank, mod, lengths[o])
            out[o] = g @ V[:lengths[o]].T                       # A_Mᵀ g
        ch, ws = graph.inputs[o]
        if len(ch):
            H = g + bank.get(module_name(mod, 0)).apply_t(g)
            H *= 0.5
            H = H + r2.apply_t(H)
            H *= 0.25
            bp = {}
            for k, (c, w) in enumerate(zip(ch, ws), start=1):
                bp.setdefault(k, []).append((int(c), float(w)))
            _push(bank, H, bp, G)
    return out


def _push(bank, H, by_pos, G):
    for i, clist in by_pos.items():
        Z = H + bank.get(tuple_name(i)).apply_t(H)
        for c, w in clist:
            if c in G:
                G[c] += (0.5 * w) * Z
            else:
                G[c] = (0.5 * w) * Z


def _offsets(objects, lengths):
    off = np.zeros(len(objects) + 1, dtype=np.int64)
    np.cumsum([lengths[o] for o in objects], out=off[1:])
    return off


def _attribute_seeds(graph, bank, objects, lengths, off):
    seeds = {}
    for k, o in enumerate(objects):
        L = lengths[o]
        V = _attr_rows(bank, graph.module(graph.ids[o]), L)
        seeds[o] = (np.arange(off[k], off[k] + L), V[:L])
    return seeds


def _s0(graph, bank):
    """s_0: s_overall with every attribute set to 0 (the counting channels only)."""
    seeds = {}
    for o in range(len(graph.ids)):
        V = _attr_rows(bank, graph.module(graph.ids[o]), len(graph.attributes[o]))
        seeds[o] = (np.zeros(1, dtype=np.int64), V[-1:])
    return _propagate(graph, bank, seeds, 1)[0]


def design_matrix(graph, bank, object_ids=None):
    """The affine map of the sketch: (Pᵀ, s_0, offsets) with s_overall = s_0 + P x (THEORY §2.5).

    Parameters
    ----------
    graph : Graph
        Structure and weights (attribute values are not read, only their lengths L_θ).
    bank : MatrixBank
    object_ids : list of str, optional
        Objects whose columns to build, in this order (default: every object, in ``graph.ids``
        order).

    Returns
    -------
    Pt : ndarray of shape (Σ L_θ, d)
        Row offsets[k] + j is P_θk e_{j+1}, the image in s_overall of coordinate j of x_θk.
    s0 : ndarray of shape (d,)
        The attribute-independent part of s_overall.
    offsets : ndarray of shape (len(object_ids) + 1,)
    """
    _check_bank_graph(bank, graph)
    ids = list(graph.ids) if object_ids is None else list(object_ids)
    objects = [graph._idx(o) for o in ids]
    if len(set(objects)) != len(objects):
        raise ValueError(f"object_ids must not repeat an object; got {ids!r}")
    lengths = {o: len(graph.attributes[o]) for o in range(len(graph.ids))}
    off = _offsets(objects, lengths)
    Pt = _propagate(graph, bank, _attribute_seeds(graph, bank, objects, lengths, off), int(off[-1]))
    return Pt, _s0(graph, bank), off


def design_adjoint(graph, bank, U, object_ids=None):
    """Pᵀ u for every row u of U without forming P: the adjoint of :func:`design_matrix` (THEORY.md §2.5).

    Block θ of the result is P_θᵀ u, where P_θ (d × L_θ) is the exact map from x_θ to s_overall
    (paper §3.3). One pass down the graph (parents first): per node and tuple position one
    application of (I+R_i)ᵀ to the B rows, per object with inputs one of ½(I+R_{M,0})ᵀ and
    ¼(I+R_2)ᵀ, and the cached attribute map A_Mᵀ as a product — the cost of decoding B sketches,
    where :func:`design_matrix` pushes Σ L_θ columns up the graph. Use it when B < Σ L_θ, e.g. for
    Kᵀ-rows of a linear decoder K (K P_θ = (P_θᵀKᵀ)ᵀ).

    Parameters
    ----------
    graph : Graph
        Structure and weights (attribute values are not read, only their lengths L_θ).
    bank : MatrixBank
    U : ndarray of shape (d,) or (B, d)
        Rows u (finite).
    object_ids : list of str, optional
        Objects whose blocks to return (default: every object).

    Returns
    -------
    dict of object id -> ndarray of shape (B, L_θ) (or (L_θ,) for U of shape (d,))
    """
    _check_bank_graph(bank, graph)
    d = bank.d_sketch
    arr = np.asarray(U, dtype=np.float64)
    if arr.ndim not in (1, 2) or arr.shape[-1] != d:
        raise ValueError(f"U must have shape ({d},) or (B, {d}) to match the bank's d_sketch; got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"U must be finite; got {float(arr[~np.isfinite(arr)].flat[0])!r}")
    single = arr.ndim == 1
    arr = np.ascontiguousarray(arr[None, :] if single else arr)
    ids = list(graph.ids) if object_ids is None else list(object_ids)
    objects = [graph._idx(o) for o in ids]
    if len(set(objects)) != len(objects):
        raise ValueError(f"object_ids must not repeat an object; got {ids!r}")
    lengths = {o: len(graph.attributes[o]) for o in range(len(graph.ids))}
    got = _adjoint(graph, bank, arr, objects, lengths)
    out = {}
    for oid, o in zip(ids, objects):
        g = got.get(o)
        g = np.zeros((arr.shape[0], lengths[o])) if g is None else g
        out[oid] = g[0] if single else g
    return out


# --------------------------------------------------------------------------- solvers
GRAM_COND_MAX = 1e10
"""Largest condition number of the equilibrated Gram matrix PᵀP for the normal-equation solve."""


def _solve_dense(Pt, R, nonnegative):
    """argmin ‖P x − r‖ (x ≥ 0 if ``nonnegative``) for every row r of R; P given as Pt = Pᵀ (n, m).

    Overdetermined (n ≤ m): columns are equilibrated to unit norm (the scales c_h·W_θ of different
    objects span orders of magnitude) through the Gram matrix G = PᵀP (n × n, P is never copied);
    when the equilibrated G is well conditioned (κ ≤ :data:`GRAM_COND_MAX`) the least-squares
    solution comes from its Cholesky factor plus one step of iterative refinement on the true
    residual (error ≈ (κ·ε)² relative: exact to rounding for the sketch's near-orthogonal columns,
    and ≈ 20–50× faster than LAPACK's gelsd for a tall P), otherwise from ``scipy.linalg.lstsq``
    (gelsd). Exact zero columns decode to 0. Underdetermined (n > m): no equilibration, gelsd
    returns the minimum ℓ2-norm solution. NNLS: ``scipy.optimize.nnls`` on the equilibrated P.
    """
    from scipy.linalg import cho_factor, cho_solve, lstsq
    from scipy.optimize import nnls

    n, m = Pt.shape
    if n > m and not nonnegative:
        return lstsq(Pt.T, R.T, lapack_driver="gelsd", check_finite=False)[0].T
    if n <= m:
        G = Pt @ Pt.T
        norms = np.sqrt(np.maximum(np.diag(G), 0.0))
        norms = np.where(norms > 0, norms, 1.0)
        if not nonnegative:
            Gs = G / np.outer(norms, norms)
            ev = np.linalg.eigvalsh(Gs)
            if ev[0] > ev[-1] / GRAM_COND_MAX:
                cho = cho_factor(Gs, check_finite=False)
                X = cho_solve(cho, (Pt @ R.T) / norms[:, None], check_finite=False)      # (n, B)
                res = R.T - Pt.T @ (X / norms[:, None])                                   # refinement
                X += cho_solve(cho, (Pt @ res) / norms[:, None], check_finite=False)
                return (X / norms[:, None]).T
    else:
        norms = np.ones(n)
    A = (Pt / norms[:, None]).T                                # (m, n), Fortran-ordered
    if nonnegative:
        X = np.empty((R.shape[0], n))
        for b in range(R.shape[0]):
            X[b] = nnls(A, R[b], maxiter=max(100, 10 * n))[0]
    else:
        X = lstsq(A, R.T, lapack_driver="gelsd", check_finite=False, overwrite_a=True)[0].T
    return X / norms[None, :]


def _column_scales(graph, bank, objects, lengths):
    """Rough ‖P_θ e_j‖ per column for LSQR's diagonal preconditioner: the exact norms of the leaf map
    A_M times the gain of the path factors for orthonormal R (‖(I+R)v/2‖ ≈ ‖v‖/√2)."""
    gain = np.zeros(len(graph.ids))
    parents = _parents(graph)
    for o in graph.children_first[::-1]:                       # parents first
        o = int(o)
        g2 = 0.0
        for p, _, w in parents[o]:
            up = 1.0 if p < 0 else gain[p] / 4.0
            g2 += (w / math.sqrt(2.0) * up) ** 2
        gain[o] = math.sqrt(g2)
    out = []
    for o in objects:
        V = _attr_rows(bank, graph.module(graph.ids[o]), lengths[o])[:lengths[o]]
        out.append(np.sqrt(np.einsum("ij,ij->i", V, V)) * gain[o])
    sc = np.concatenate(out)
    return np.where(sc > 0, sc, 1.0)


def _solve_lsqr(graph, bank, objects, lengths, off, R, keep):
    """LSQR on the operator P (forward :func:`_propagate`, adjoint :func:`_adjoint`), diagonally
    preconditioned by :func:`_column_scales`; rows of P beyond ``keep`` are dropped (erasure)."""
    from scipy.sparse.linalg import LinearOperator, lsqr

    d = bank.d_sketch
    n = int(off[-1])
    scale = _column_scales(graph, bank, objects, lengths)
    maps = {o: _attr_rows(bank, graph.module(graph.ids[o]), lengths[o]) for o in objects}

    def matvec(z):
        x = np.ravel(z) / scale
        seeds = {o: (np.zeros(1, dtype=np.int64), x[off[k]:off[k + 1]][None, :] @ maps[o][:lengths[o]])
                 for k, o in enumerate(objects)}
        return _propagate(graph, bank, seeds, 1)[0][:keep]

    def rmatvec(u):
        U = np.zeros((1, d))
        U[0, :keep] = np.ravel(u)
        g = _adjoint(graph, bank, U, objects, lengths)
        out = np.zeros(n)
        for k, o in enumerate(objects):
            if o in g:
                out[off[k]:off[k + 1]] = g[o][0]
        return out / scale

    op = LinearOperator((keep, n), matvec=matvec, rmatvec=rmatvec, dtype=np.float64)
    X = np.empty((R.shape[0], n))
    for b in range(R.shape[0]):
        X[b] = lsqr(op, R[b], atol=LSQR_TOL, btol=LSQR_TOL, iter_lim=LSQR_ITER_LIM)[0] / scale
    return X


# --------------------------------------------------------------------------- public decoders
def attributes_ls(s, bank, graph, object_id, *, nonnegative=False, design=None):
    """Path-matched least squares for one object's attributes (THEORY.md §2.5, beyond the paper).

    x̂_θ = argmin_x ‖P_θ x − (s − s_0)‖₂, where P_θ (d × L_θ) is the exact linear map from x_θ to
    s_overall — every word of every path from the output to θ, with the importance weights, the
    depth constants c_h and the slot factors of paper §3.3 — and s_0 the attribute-independent part
    of s (the counting channels ½R_{M,2}e_1 of every object). The decoder knows the graph's
    structure (modules, input order, weights, attribute lengths) but not the other objects'
    attributes, which act as noise. Compare :func:`sketchsim.decode.attributes` /
    :func:`~sketchsim.decode.attributes_on_path` (Theorem 1), which read a single word; path LS is
    10–30× more accurate on the same sketch (THEORY.md §2.5 table) and also unbiased.

    Parameters
    ----------
    s : ndarray of shape (d,) or (B, d), or ErasedSketch
        Overall sketch(es) made with ``bank`` from ``graph``'s structure. For an erased sketch the
        kept prefix is fitted with the kept rows of P_θ and s_0 (no d/d' rescale: LS is
        scale-free).
    bank : MatrixBank
    graph : Graph
        The communication graph; its attribute *values* are not read, only L_θ.
    object_id : str
        θ, an object of ``graph``.
    nonnegative : bool, default False
        Constrain x̂ ≥ 0 (NNLS, ``scipy.optimize.nnls``); the paper's attributes are nonnegative.
    design : tuple, optional
        ``design_matrix(graph, bank, [object_id])``, to reuse the map P_θ and s_0 across calls (to
        decode many sketches at once, pass them as one ``(B, d)`` array instead).

    Returns
    -------
    ndarray of shape (L_θ,) or (B, L_θ)
    """
    _check_bank_graph(bank, graph)
    S, single, keep = _check_sketch(s, bank.d_sketch)
    o = graph._idx(object_id)
    nonnegative = _check_bool("nonnegative", nonnegative)
    if design is None:
        Pt, s0, _ = design_matrix(graph, bank, [object_id])
    else:
        Pt, s0, _ = _check_design(design, bank, len(graph.attributes[o]))
    X = _solve_dense(np.ascontiguousarray(Pt[:, :keep]), S - s0[:keep], nonnegative)
    assert X.shape[1] == len(graph.attributes[o])
    return X[0] if single else X


def joint_attributes(s, bank, graph, nonnegative=False, *, method="auto", design=None):
    """Every attribute vector at once by (nonnegative) least squares (THEORY.md §2.5).

    x̂ = argmin_x ‖P x − (s − s_0)‖₂ over the stacked x = (x_θ1, …, x_θn), P = [P_θ1 … P_θn] the exact
    linear map of the sketch (paper §3.3; see :func:`attributes_ls`), s_0 its
    attribute-independent part. The decoder knows the structure (modules, input order, weights,
    attribute lengths) and the matrices, not the attributes.

    * Σ L_θ < d_sketch (or < d' for an erased sketch) and P of full column rank (always, for
      continuous random matrices): the system is overdetermined and consistent, so x̂ equals the
      truth up to rounding (≈ 1e−12 for orthonormal families). This shows the sketch is a linear
      measurement that loses nothing while the unknowns fit in d_sketch.
    * Σ L_θ > d_sketch: the system is underdetermined and **nothing is exact**. Least squares
      returns the minimum-ℓ2-norm solution of P x = s − s_0 (columns are then not equilibrated, so
      this is the plain minimum norm), which fits s exactly but is not the truth;
      ``nonnegative=True`` returns *a* nonnegative solution picked by the active-set NNLS
      algorithm, which helps only when the truth is sparse enough to be the unique nonnegative one.

    Parameters
    ----------
    s : ndarray of shape (d,) or (B, d), or ErasedSketch
    bank : MatrixBank
    graph : Graph
        Structure and weights; its attribute values are not read.
    nonnegative : bool, default False
        NNLS (``scipy.optimize.nnls`` on the column-equilibrated P) instead of least squares
        (Cholesky of the equilibrated PᵀP with one refinement step when it is well conditioned,
        else ``scipy.linalg.lstsq`` / LAPACK gelsd; see ``_solve_dense``).
    method : {"auto", "dense", "lsqr"}
        ``"dense"`` forms P (d × Σ L_θ floats) and solves directly; ``"lsqr"`` never forms P and runs
        SciPy's LSQR on the operator (one sketch-sized forward and adjoint pass per iteration,
        diagonally preconditioned; least squares only, tolerance :data:`LSQR_TOL`); ``"auto"``
        picks dense up to :data:`DENSE_MAX_BYTES`.
    design : tuple, optional
        ``design_matrix(graph, bank)`` (every object, graph order), to reuse P and s_0 across calls
        (implies the dense method).

    Returns
    -------
    dict of object id -> ndarray of shape (L_θ,) or (B, L_θ)
    """
    _check_bank_graph(bank, graph)
    S, single, keep = _check_sketch(s, bank.d_sketch)
    nonnegative = _check_bool("nonnegative", nonnegative)
    method = check_choice("method", method, ("auto", "dense", "lsqr"))
    objects = list(range(len(graph.ids)))
    lengths = {o: len(graph.attributes[o]) for o in objects}
    off = _offsets(objects, lengths)
    n = int(off[-1])
    if design is not None:
        design = _check_design(design, bank, n)
        if method == "lsqr":
            raise ValueError("method must be 'dense' or 'auto' when a design is given; got 'lsqr'")
        method = "dense"
    if method == "auto":
        method = "dense" if 8 * n * bank.d_sketch <= DENSE_MAX_BYTES else "lsqr"
    if method == "lsqr" and nonnegative:
        raise ValueError("method must be 'dense' or 'auto' when nonnegative=True (LSQR has no bounds); "
                         "got 'lsqr'")
    if method == "dense":
        Pt, s0, _ = design_matrix(graph, bank) if design is None else design
        X = _solve_dense(np.ascontiguousarray(Pt[:, :keep]) if keep < bank.d_sketch else Pt,
                         S - s0[:keep], nonnegative)
    else:
        s0 = _s0(graph, bank)
        X = _solve_lsqr(graph, bank, objects, lengths, off, S - s0[:keep], keep)
    out = {}
    for k, oid in enumerate(graph.ids):
        x = X[:, off[k]:off[k + 1]]
        out[oid] = x[0] if single else x
    return out
