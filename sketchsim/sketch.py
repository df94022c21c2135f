"""Recursive sketches (paper §3.3), single and batched.

.. math::

    s_{tuple}(s_1..s_k; w) = \\sum_i w_i \\tfrac{I+R_i}{2} s_i, \\quad
    s_{attr}(θ) = \\tfrac12 R_{M,1} x_θ + \\tfrac12 R_{M,2} e_1,

    s_{object}(θ) = \\tfrac{I+R_{M,0}}{2}\\, s_{tuple}(s_{attr}, s_{input}; \\tfrac12, \\tfrac12), \\quad
    s_{input}(θ) = s_{tuple}(s_{object}(θ_1..θ_k); w_1..w_k), \\quad
    s_{overall} = s_{input}(\\text{output}).

The tuple matrices R_1, R_2 of the (attr, input) pair are the same R_1, R_2 as in every input list
(the literal reading, THEORY.md §1). Evaluation is level by level (leaves first): every matrix is
applied once per level to all the rows that need it (a GEMM for dense families, a Numba kernel
otherwise), and a Numba kernel merges weighted child sketches into their parents' input sketches.
The batched form runs B network inputs that share one graph structure through the same schedule,
so each matrix product has B times more rows. Intermediates live in a per-thread workspace reused
across calls (no fresh pages per call at large d), each (I+R)/2 factor is one operator call, and
the attribute branch goes through a cached affine map whenever it fits (:func:`_use_attr_map`).
"""
from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass

import numba
import numpy as np
from numba import njit

from . import _parallel
from ._parallel import run_rows
from ._validation import check_bool, show
from .graph import Graph, validate_attributes, validate_weights
from .matrices import MatrixBank, module_name, tuple_name

__all__ = ["sketch", "sketch_objects", "sketch_batch", "sketch_many", "warm_up", "release_workspace"]


MERGE_COLUMNS = 2048
"""Columns per block of the merge kernel: a parent's block stays in L1 while its inputs are added."""


@njit(cache=True, nogil=True)
def _merge_inputs(r0_, r1_, out, S, Y, ptr, child, yrow, w, B):
    """out[p·B+b] = Σ_{e ∈ p} ½ w[e, b] (S[child_e·B+b] + Y[yrow_e·B+b]): a tuple sketch's sum.

    Each (parent, batch) row is owned by one iteration and edges are summed in a fixed order from
    0.0, so the result does not depend on the thread count; the row is done in blocks of
    ``MERGE_COLUMNS`` (written once, not once per edge), which changes no operation.
    """
    d = out.shape[1]
    for pb in range(r0_, r1_):
        p = pb // B
        b = pb - p * B
        o = out[pb]
        for t0 in range(0, d, MERGE_COLUMNS):
            t1 = min(d, t0 + MERGE_COLUMNS)
            for t in range(t0, t1):
                o[t] = 0.0
            for e in range(ptr[p], ptr[p + 1]):
                c = 0.5 * w[e, b]
                sr = S[child[e] * B + b]
                yr = Y[yrow[e] * B + b]
                for t in range(t0, t1):
                    o[t] += c * (sr[t] + yr[t])


@njit(cache=True, nogil=True)
def _add_rows(r0_, r1_, S, rows, V):
    """S[rows[k]] += V[k] for k in [r0_, r1_) (rows distinct)."""
    d = S.shape[1]
    for k in range(r0_, r1_):
        r = rows[k]
        for t in range(d):
            S[r, t] += V[k, t]


@njit(cache=True, nogil=True)
def _add_vector(r0_, r1_, S, v, c):
    """S[k] = (S[k] + v) · c for rows k in [r0_, r1_): ``S += v; S *= c`` in one pass (c = 1 exact)."""
    d = S.shape[1]
    for k in range(r0_, r1_):
        for t in range(d):
            S[k, t] = (S[k, t] + v[t]) * c


@dataclass(frozen=True)
class _EdgeGroup:
    """Input lists of a set of parents, grouped for one merge: CSR by parent, products by position."""

    ptr: np.ndarray        # (n_parents + 1,)
    child: np.ndarray      # schedule row of each edge's child
    yrow: np.ndarray       # row of R_pos s_child in the stacked products
    wcol: np.ndarray       # column of each edge in the flat weight table
    products: tuple        # ((position, children rows (unique), first Y row), ...)
    n_y: int


@dataclass(frozen=True)
class _LevelPlan:
    start: int             # schedule rows [start, stop)
    stop: int
    groups: tuple          # ((module index, start, stop) in schedule rows), ...
    internal: np.ndarray   # local rows (0-based in the level) of objects with inputs
    edges: _EdgeGroup | None

    def internal_groups(self, B):
        """Per module: (module, rows of U (internal objects × B), rows of S, their number), for batch
        size B; rows as a slice where they are consecutive, else an int64 index array."""
        cache = self.__dict__.setdefault("_ig", {})
        if B not in cache:
            out = []
            sched = self.start + self.internal
            for m, a, z in self.groups:
                k = np.flatnonzero((sched >= a) & (sched < z))
                if len(k):
                    bb = np.arange(B)[None, :]
                    out.append((m, _as_slice((k[:, None] * B + bb).ravel()),
                                _as_slice((sched[k][:, None] * B + bb).ravel()), len(k) * B))
            cache[B] = out
        return cache[B]


def _as_slice(rows):
    """``slice(r0, r1)`` if ``rows`` are r0, r0+1, …, r1−1, else ``rows`` (int64)."""
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) and rows[-1] - rows[0] == len(rows) - 1 and np.all(np.diff(rows) == 1):
        return slice(int(rows[0]), int(rows[-1]) + 1)
    return rows


class _Plan:
    """Schedule of a graph: schedule order (levels, then modules), edges, weight offsets."""

    def __init__(self, graph: Graph):
        order = np.concatenate([lv.objects for lv in graph.levels])
        self.order = order
        row = np.empty(len(order), dtype=np.int64)
        row[order] = np.arange(len(order))
        self.row = row
        offs = np.zeros(len(graph.ids) + 1, dtype=np.int64)
        np.cumsum([len(c) for c, _ in graph.inputs], out=offs[1:])
        self.edge_offset = offs       # flat weight column of object o's k-th input: offs[o] + k
        levels, start = [], 0
        for lv in graph.levels:
            stop = start + len(lv.objects)
            groups = tuple((m, start + a, start + z) for m, a, z in lv.module_groups)
            parents = lv.objects[lv.internal]
            edges = self._edges(graph, [graph.inputs[p][0] for p in parents],
                                [offs[p] for p in parents]) if len(parents) else None
            levels.append(_LevelPlan(start, stop, groups, lv.internal, edges))
            start = stop
        self.levels = levels
        self.own_values = None
        self.output_edges = self._edges(graph, [graph.output[0]], [offs[-1]])

    def scratch_rows(self, B):
        """(rows of U, rows of T) that :func:`_run` needs for batch size B: U holds the input
        sketches of one level's internal objects, T the products R_p s of one level's input lists
        (or a module group's direct-path intermediate, or U transformed)."""
        n_int = max([len(lv.internal) for lv in self.levels] + [1])
        n_tmp = max([n_int, self.output_edges.n_y] + [z - a for lv in self.levels for _, a, z in lv.groups]
                    + [lv.edges.n_y for lv in self.levels if lv.edges is not None])
        return n_int * B, n_tmp * B

    def _edges(self, graph, child_lists, w_offsets):
        ptr = np.zeros(len(child_lists) + 1, dtype=np.int64)
        np.cumsum([len(c) for c in child_lists], out=ptr[1:])
        child = self.row[np.concatenate(child_lists)]
        pos = np.concatenate([np.arange(1, len(c) + 1) for c in child_lists])
        wcol = np.concatenate([off + np.arange(len(c)) for c, off in zip(child_lists, w_offsets)])
        yrow = np.empty(len(child), dtype=np.int64)
        products, n_y = [], 0
        for p in np.unique(pos):
            sel = np.flatnonzero(pos == p)
            uniq, inv = np.unique(child[sel], return_inverse=True)
            yrow[sel] = n_y + inv
            products.append((int(p), uniq, n_y))
            n_y += len(uniq)
        return _EdgeGroup(ptr, child, yrow, wcol, tuple(products), n_y)


def _plan(graph):
    plan = graph.__dict__.get("_sketch_plan")
    if plan is None:
        plan = graph.__dict__["_sketch_plan"] = _Plan(graph)
    return plan


def _e1_image(op):
    """R_{M,2} e_1, cached on the operator."""
    col = getattr(op, "_e1_image", None)
    if col is None:
        col = op.column(0)
        op._e1_image = col
    return col


def _expand(rows, B):
    """Rows of B-batched arrays: row r becomes r·B … r·B+B−1."""
    return rows if B == 1 else (rows[:, None] * B + np.arange(B)[None, :]).ravel()


def _merge(bank, S, edges, W, B, out, Y):
    """s_input = Σ_i ½ w_i (s_i + R_i s_i) of every parent of ``edges`` into ``out`` (n_parents·B, d).

    R_p is applied once to each distinct child at position p, every position in one balanced
    dispatch (:func:`_apply_jobs`), into the scratch ``Y``; then one merge kernel.
    """
    d = S.shape[1]
    _apply_jobs([(bank.get(tuple_name(pos)), S, _expand(uniq, B), Y[y0 * B:(y0 + len(uniq)) * B], None)
                 for pos, uniq, y0 in edges.products])
    w = np.ascontiguousarray(W[edges.wcol])
    run_rows(_merge_inputs, out.shape[0], 2 * len(edges.child) * B * d, out, S, Y, edges.ptr, edges.child,
             edges.yrow, w, B)
    return out


def _apply_jobs(jobs):
    """Run independent ``op._apply_rows(X, rows, out, plus)`` jobs (no output is another's input).

    Operators with a row kernel (``_row_task``) share the thread pool over all their rows at once,
    in contiguous pieces, so that several short jobs (one row per input position of the output, a
    few rows per module) do not leave threads idle; each row is still computed by one kernel call
    on its own, so the result does not depend on the thread count. Other operators (BLAS GEMMs,
    block-sparse) run one after another as usual.
    """
    tasks = []
    for op, X, rows, out, plus in jobs:
        task = op._row_task(X, rows, out, plus) if len(jobs) > 1 else None
        if task is None:
            op._apply_rows(X, rows, out, plus)
        else:
            tasks.append((task[0], out.shape[0], task[1], task[2]))
    if not tasks:
        return
    total = sum(n for _, n, _, _ in tasks)
    n_threads = min(numba.get_num_threads(), total)
    if n_threads <= 1 or sum(wk for _, _, _, wk in tasks) < _parallel.MIN_PARALLEL_WORK:
        for kernel, n, args, _ in tasks:
            kernel(0, n, *args)
        return
    bounds = [total * k // n_threads for k in range(n_threads + 1)]
    pieces = [[] for _ in range(n_threads)]
    start = 0
    for kernel, n, args, _ in tasks:
        for k in range(n_threads):
            a, z = max(bounds[k], start) - start, min(bounds[k + 1], start + n) - start
            if a < z:
                pieces[k].append((kernel, a, z, args))
        start += n

    def run(piece):
        for kernel, a, z, args in piece:
            kernel(a, z, *args)

    pool = _parallel._get_pool(n_threads - 1)
    futures = [pool.submit(run, pieces[k]) for k in range(1, n_threads)]
    run(pieces[0])
    for f in futures:
        f.result()


BATCH_CHUNK_BYTES = 256 * 2**20
"""sketch_batch processes the batch in chunks whose object sketches take at most this much memory."""

ATTR_MAP_MAX_BYTES = 256 * 2**20
"""Largest cached attribute map A_M (d × (L+1) float64) per module; above it, the direct path."""

ATTR_MAP_TOTAL_BYTES = 2 * 2**30
"""Largest total of the attribute maps one sketch may use (distinct (module, L) of the graph);
above it, a group uses its map only when building it costs no more than the direct path."""

WORKSPACE_MAX_BYTES = 2 * 2**30
"""Largest scratch (object sketches and intermediates) kept per thread between sketch calls, so
that repeated calls write into memory already mapped (at d = 2^20 fresh arrays cost ≈ 30% of the
time in page faults); larger requests are allocated per call. :func:`release_workspace` frees it."""


def _use_attr_map(bank, module, L, n_rows, maps_bytes=0):
    """Whether a module group's attribute part goes through the cached map A_M x + c_M.

    Whenever the map fits (at most ``ATTR_MAP_MAX_BYTES``, and the graph's maps together at most
    ``ATTR_MAP_TOTAL_BYTES``): building it costs L+1 rows through three matrices once per bank,
    after which each of the group's ``n_rows`` rows costs a length-L combination instead of three
    operator applications. Over the total budget, only where it pays off within the call
    (n_rows ≥ L+1). The choice depends on (d, L, n_rows, the graph) only, never on what the bank
    has cached, so a sketch does not depend on earlier calls.
    """
    if 8 * bank.d_sketch * (L + 1) > ATTR_MAP_MAX_BYTES:
        return False
    return maps_bytes <= ATTR_MAP_TOTAL_BYTES or n_rows >= L + 1


def _attr_map(bank, module, L):
    """Rows [A_Mᵀ; c_M] of the affine map x ↦ A_M x + c_M giving an object's attribute part.

    A_M = ½(I+R_{M,0}) · ¼(I+R_1) · ½R_{M,1}[:, :L] and c_M = ½(I+R_{M,0}) · ¼(I+R_1) · ½R_{M,2}e_1:
    the whole s_object of a leaf (s_input = 0), and the s_attr branch of any object. Built once per
    (bank, module, L) from L+1 operator applications and cached on the bank; the intermediate
    lives in the thread's workspace (at d = 2^20 fresh temporaries cost more in page faults than
    the transforms), which changes no value.
    """
    key = ("attr-map", module, L)
    V = bank._cache.get(key)
    if V is None:
        Y = np.empty((L + 1, bank.d_sketch))              # the only fresh pages: the cached map
        bank.get(module_name(module, 1)).apply(np.eye(L), out=Y[:L])
        Y[L] = _e1_image(bank.get(module_name(module, 2)))
        Y *= 0.5                                            # s_attr = ½R_{M,1}x + ½R_{M,2}e_1
        Z = _workspace("attr-map", L + 1, bank.d_sketch)
        bank.get(tuple_name(1))._apply_rows(Y, None, Z, 0.25)        # ½ · (I+R_1)/2 of the (attr, input) tuple
        bank.get(module_name(module, 0))._apply_rows(Z, None, Y, 0.5)   # (I+R_{M,0})/2
        V = bank._cache[key] = Y
    return V


_local = threading.local()


def _workspace(name, rows, d):
    """A C-contiguous (rows, d) float64 scratch array of this thread, reused across calls
    (arbitrary contents; kept while the thread's workspace stays within ``WORKSPACE_MAX_BYTES``)."""
    need = rows * d
    bufs = _local.__dict__.setdefault("bufs", {})
    buf = bufs.get(name)
    if buf is None or buf.size < need:
        bufs.pop(name, None)
        buf = np.empty(need)
        if 8 * (sum(b.size for b in bufs.values()) + need) <= WORKSPACE_MAX_BYTES:
            bufs[name] = buf
    return buf[:need].reshape(rows, d)


def release_workspace():
    """Free the calling thread's sketch workspace (it is rebuilt on the next call)."""
    _local.__dict__.pop("bufs", None)


def _run(graph, bank, Xg, W, B):
    """Core evaluation, level by level (leaves first).

    Xg: per module group of each level (keyed by its first schedule row), the attributes stacked as
    ((z−a)·B, L); W: flat weight table (n_edges, B) whose last rows are the output's weights.
    Returns (S of shape (n_obj·B, d) in schedule order, overall of shape (B, d)). S lives in the
    thread's workspace: valid until the next call on this thread (callers copy what they return).

    s_object = [attribute part] + ½(I+R_{M,0}) · ¼(I+R_2) s_input, where the attribute part is
    A_M x + c_M (:func:`_attr_map`, see :func:`_use_attr_map`) or computed directly as
    ½(I+R_{M,0}) · ¼(I+R_1) · (½R_{M,1}x + ½R_{M,2}e_1). Every factor (I+R)/2 is one
    ``_apply_rows(..., plus=c)`` from one scratch array into another; no array is allocated per call
    beyond the returned overall sketch.
    """
    plan = _plan(graph)
    d = bank.d_sketch
    n_int, n_tmp = plan.scratch_rows(B)
    S = _workspace("S", len(graph.ids) * B, d)
    U = _workspace("U", n_int, d)
    T = _workspace("T", n_tmp, d)
    r1 = bank.get(tuple_name(1))
    r2 = bank.get(tuple_name(2))
    pairs = {(graph.modules[m], X.shape[1]) for lv in plan.levels for m, a, z in lv.groups
             for X in (Xg[a],)}
    maps_bytes = sum(8 * d * (L + 1) for _, L in pairs)
    for lv in plan.levels:
        for m, a, z in lv.groups:
            mod = graph.modules[m]
            X = Xg[a]
            L = X.shape[1]
            Sg = S[a * B:z * B]
            if _use_attr_map(bank, mod, L, (z - a) * B, maps_bytes):
                V = _attr_map(bank, mod, L)
                np.matmul(X, V[:L], out=Sg)
                run_rows(_add_vector, len(Sg), Sg.size, Sg, V[L], 1.0)
            else:
                bank.get(module_name(mod, 1)).apply(X, out=Sg)
                run_rows(_add_vector, len(Sg), Sg.size, Sg, _e1_image(bank.get(module_name(mod, 2))), 0.5)
                Tg = T[:len(Sg)]
                r1._apply_rows(Sg, None, Tg, 0.25)
                bank.get(module_name(mod, 0))._apply_rows(Tg, None, Sg, 0.5)
        if lv.edges is None:
            continue
        n = (len(lv.edges.ptr) - 1) * B
        Ul, Tl = U[:n], T[:n]
        _merge(bank, S, lv.edges, W, B, Ul, T)              # s_input of the internal objects
        r2._apply_rows(Ul, None, Tl, 0.25)                  # ½ · (I+R_2)/2 of the (attr, input) tuple
        jobs, off = [], 0                                   # (I+R_{M,0})/2, every module at once
        for m, idx, rows, n_m in lv.internal_groups(B):
            op = bank.get(module_name(graph.modules[m], 0))
            jobs.append((op, Tl[idx], None, U[off:off + n_m], 0.5) if isinstance(idx, slice)
                        else (op, Tl, idx, U[off:off + n_m], 0.5))
            off += n_m
        _apply_jobs(jobs)
        off = 0
        for m, idx, rows, n_m in lv.internal_groups(B):
            rows = np.arange(rows.start, rows.stop) if isinstance(rows, slice) else rows
            run_rows(_add_rows, n_m, n_m * d, S, rows, U[off:off + n_m])
            off += n_m
    overall = np.empty((B, d))
    _merge(bank, S, plan.output_edges, W, B, overall, T)
    return S, overall


def _check_inputs(graph, bank):
    if not isinstance(graph, Graph):
        raise ValueError(f"graph must be a sketchsim.Graph; got {type(graph).__name__}")
    if not isinstance(bank, MatrixBank):
        raise ValueError(f"bank must be a sketchsim.MatrixBank; got {type(bank).__name__}")
    bank.check_graph(graph)


def _stack_groups(plan, X_rows, B):
    """Attributes per module group: {first row: ((z−a)·B, L) zero-padded to the group's longest}."""
    Xg = {}
    for lv in plan.levels:
        for _, a, z in lv.groups:
            L = max(X_rows[r].shape[1] for r in range(a, z))
            X = np.zeros((z - a, B, L))
            for r in range(a, z):
                X[r - a, :, :X_rows[r].shape[1]] = X_rows[r]
            Xg[a] = X.reshape(-1, L)
    return Xg


def _graph_values(graph):
    """The graph's own attributes and weights in :func:`_run`'s layout (cached on the plan)."""
    plan = _plan(graph)
    if plan.own_values is None:
        X_rows = [graph.attributes[o][None, :] for o in plan.order]
        W = np.concatenate([w for _, w in graph.inputs] + [graph.output[1]])[:, None]
        plan.own_values = (_stack_groups(plan, X_rows, 1), W)
    return plan.own_values


def sketch(graph, bank):
    """The overall sketch s_overall = s_input(output pseudo-object) (paper §3.3).

    Parameters
    ----------
    graph : Graph
    bank : MatrixBank

    Returns
    -------
    ndarray of shape (d_sketch,), float64
    """
    _check_inputs(graph, bank)
    Xg, W = _graph_values(graph)
    return _run(graph, bank, Xg, W, 1)[1][0]


def sketch_objects(graph, bank, return_overall=False):
    """Every object sketch s_object(θ) (paper §3.3).

    Returns
    -------
    objects : dict of object id -> ndarray of shape (d_sketch,)
    overall : ndarray of shape (d_sketch,), only if ``return_overall`` (computed in the same pass)
    """
    _check_inputs(graph, bank)
    Xg, W = _graph_values(graph)
    S, overall = _run(graph, bank, Xg, W, 1)
    row = _plan(graph).row
    objects = {oid: S[row[i]].copy() for i, oid in enumerate(graph.ids)}
    return (objects, overall[0]) if return_overall else objects


def _batch_size(attributes, weights, output_weights):
    sizes = set()
    for arr in list((attributes or {}).values()) + list((weights or {}).values()):
        sizes.add(np.shape(arr)[0] if np.ndim(arr) == 2 else None)
    if output_weights is not None:
        sizes.add(np.shape(output_weights)[0] if np.ndim(output_weights) == 2 else None)
    if None in sizes:
        raise ValueError("batched attributes and weights must be 2-d arrays of shape (B, length)")
    if not sizes:
        raise ValueError("sketch_batch needs at least one batched array (attributes, weights or "
                         "output_weights); got none")
    if len(sizes) > 1:
        raise ValueError(f"batched arrays must share one batch size B; got sizes {sorted(sizes)}")
    return sizes.pop()


def sketch_batch(graph, bank, attributes=None, weights=None, output_weights=None,
                 normalize=False, return_objects=False):
    """Sketch B network inputs that share one graph structure (a fixed tree or DAG) in one call.

    Parameters
    ----------
    graph : Graph
        The shared structure (ids, modules, input order). Its own attributes and weights fill in
        whatever is not given.
    bank : MatrixBank
    attributes : dict of object id -> array of shape (B, L_θ), optional
        Per-input attribute vectors x_θ (nonnegative, unit ℓ2 unless ``normalize``).
    weights : dict of object id -> array of shape (B, k_θ), optional
        Per-input importance weights of the object's input list (rows sum to ≤ 1).
    output_weights : array of shape (B, k_out), optional
        Per-input weights of the output's input list.
    normalize : bool
        Rescale attribute rows to unit ℓ2 instead of rejecting them.
    return_objects : bool
        Also return every object sketch.

    Returns
    -------
    overall : ndarray of shape (B, d_sketch)
    objects : dict of object id -> ndarray of shape (B, d_sketch), only if ``return_objects``
    """
    _check_inputs(graph, bank)
    for key, table in (("attributes", attributes), ("weights", weights)):
        if table is not None and not isinstance(table, Mapping):
            raise ValueError(f"{key} must be a dict of object id -> array of shape (B, …) or None; got "
                             f"{type(table).__name__} {show(table)}")
    normalize = check_bool("normalize", normalize)
    return_objects = check_bool("return_objects", return_objects)
    B = _batch_size(attributes, weights, output_weights)
    d = bank.d_sketch
    plan = _plan(graph)
    for key, table in (("attributes", attributes), ("weights", weights)):
        for oid in (table or {}):
            if oid not in graph.index:
                raise ValueError(f"{key} must be keyed by object ids of the graph; got unknown id {oid!r}")
    X = []
    for o in plan.order:
        oid = graph.ids[o]
        if attributes is not None and oid in attributes:
            x = validate_attributes(f"object {oid!r}", attributes[oid], normalize, d)
            if x.shape[0] != B or x.ndim != 2:
                raise ValueError(f"attributes of object {oid!r} must have shape (B={B}, L); got {np.shape(attributes[oid])}")
        else:
            x = np.broadcast_to(graph.attributes[o], (B, len(graph.attributes[o])))
        X.append(x)
    cols = []
    for o, oid in enumerate(graph.ids):
        k = len(graph.inputs[o][0])
        if weights is not None and oid in weights:
            w = validate_weights(f"object {oid!r}", weights[oid])
            if w.shape != (B, k):
                raise ValueError(f"weights of object {oid!r} must have shape (B={B}, {k}); got {w.shape}")
            cols.append(w.T)
        else:
            cols.append(np.broadcast_to(graph.inputs[o][1][:, None], (k, B)))
    k_out = len(graph.output[0])
    if output_weights is not None:
        w = validate_weights("the output", output_weights)
        if w.shape != (B, k_out):
            raise ValueError(f"output_weights must have shape (B={B}, {k_out}); got {w.shape}")
        cols.append(w.T)
    else:
        cols.append(np.broadcast_to(graph.output[1][:, None], (k_out, B)))
    W = np.ascontiguousarray(np.concatenate(cols, axis=0))
    n = len(graph.ids)
    chunk = max(1, min(B, BATCH_CHUNK_BYTES // (8 * d * max(n, 1))))
    overall = np.empty((B, d))
    objects = np.empty((n, B, d)) if return_objects else None
    for b0 in range(0, B, chunk):
        b1 = min(B, b0 + chunk)
        S, overall[b0:b1] = _run(graph, bank, _stack_groups(plan, [x[b0:b1] for x in X], b1 - b0),
                                 np.ascontiguousarray(W[:, b0:b1]), b1 - b0)
        if return_objects:
            objects[:, b0:b1] = S.reshape(n, b1 - b0, d)
    if not return_objects:
        return overall
    return overall, {oid: objects[plan.row[i]] for i, oid in enumerate(graph.ids)}


def sketch_many(graphs, bank, return_objects=False):
    """:func:`sketch_batch` for a list of graphs that share one structure (ids, modules, inputs)."""
    graphs = list(graphs)
    if not graphs:
        raise ValueError("graphs must be a nonempty list of Graph; got an empty list")
    g0 = graphs[0]
    for k, g in enumerate(graphs[1:], start=1):
        same = (g.ids == g0.ids and g.modules == g0.modules and np.array_equal(g.module_of, g0.module_of)
                and all(np.array_equal(a[0], b[0]) for a, b in zip(g.inputs, g0.inputs))
                and np.array_equal(g.output[0], g0.output[0]))
        if not same:
            raise ValueError(f"graphs must share one structure (ids, modules, input order); graph {k} differs "
                             "from graph 0")
    attributes = {oid: np.stack([g.attributes[i] for g in graphs]) for i, oid in enumerate(g0.ids)}
    weights = {oid: np.stack([g.inputs[i][1] for g in graphs]) for i, oid in enumerate(g0.ids)}
    out_w = np.stack([g.output[1] for g in graphs])
    return sketch_batch(g0, bank, attributes, weights, out_w, return_objects=return_objects)


def warm_up():
    """Compile every Numba kernel of the engine on tiny inputs (call before timing anything)."""
    from .graph import random_network

    import warnings

    g = random_network(depth=2, fan_in=2, attr_dim=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _warm_up_families(g)


def _warm_up_families(g):
    for fam, kw in (("hadamard", {}), ("block-sparse", {"block_size": 48, "block_prob": 0.5}),
                    ("gaussian", {})):
        d = 64 if fam == "hadamard" else 96
        bank = MatrixBank(d, fam, 0, **kw)
        s = sketch(g, bank)
        op = bank.get("tuple/1")
        op.apply_t(s)
        op.dense()
        X = np.ones((16, d))               # every R X / Rᵀ X kernel: batch-minor, four-row and row paths
        op.apply(X)
        op.apply(X[:5])
        op.apply_t(X)
