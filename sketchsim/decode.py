"""Decoders: the paper's estimators read back from an overall sketch (THEORY.md §2.2, §4).

Paper §3.3, Theorems 1–3, the recursive-sketch property and graceful erasure (§3.1).

Conventions shared by every decoder
-----------------------------------
``s``
    An overall sketch s_overall of shape ``(d_sketch,)``, a batch of them ``(B, d_sketch)`` (rows
    decoded independently, e.g. from :func:`sketchsim.sketch_batch`), or an :class:`ErasedSketch`
    from :func:`erase`. An erased sketch is zero-padded and every decoder multiplies by d/d'
    (THEORY.md §4); self-normalised forms are ratios, where the factor cancels.
``bank``
    The :class:`~sketchsim.MatrixBank` that built the sketch.
``module``
    The module name M (a nonempty string). The bank cannot tell which modules a sketch holds;
    pass ``graph=`` to check ``module``, ``depth`` and ``path`` against a communication graph.
``depth``
    h, the object's depth (the output pseudo-object has depth 1, its inputs depth 2).
``path``
    The index path (i_1, …, i_{h−1}): 1-based input positions from the output down to the object,
    so h = len(path) + 1 (paper Theorem 1(ii)).
``weight``
    The effective weight w (Theorem 1) or the common weight w* (Theorem 3): a positive number, or
    for a batch an array of shape ``(B,)``. ``None`` selects the self-normalised form where one
    exists.
``length``
    Truncate the attribute estimate to the attribute's true length (coordinates beyond it are
    pure noise).
``column_norm``
    The column-norm correction (THEORY.md §2.4, our reading; see below). ``None`` (default): on
    for the non-orthonormal families ``block-sparse`` and ``gaussian``, off otherwise; ``True`` /
    ``False`` force it on / off (``False`` is the paper's literal estimator).

Column-norm correction (our reading, THEORY.md §2.4)
----------------------------------------------------
Every decoder reads coordinate j as ⟨A e_j, s⟩ for the word A of its channel (A = R_{M,1} for
Theorems 1(i) and 3, the all-tuple word for Theorem 1(ii), A e_1 = R_{M,2} e_1 for the counting
channel). The signal part of s is c_h·w·A x, and ⟨A e_j, A x⟩ = ‖A e_j‖²·x_j + Σ_{k≠j} ⟨A e_j,
A e_k⟩·x_k: the estimate carries a **multiplicative** error ‖A e_j‖² − 1 on top of the additive
noise. For orthonormal matrices ‖A e_j‖ = 1 exactly and nothing changes. For D(b, q, d) the number
of nonzero blocks in a column is Binomial(d/b, q), so ‖R e_j‖² = 1 ± √(b(1−q)/(qd)) (THEORY.md §3)
— a bias of ~20% at b = 48, q = 0.25, d = 3072 that is fixed for a given bank and does not average
out over inputs. Dividing coordinate j by ‖A e_j‖² (computed exactly from the matrices, which the
decoder holds) removes it; the off-diagonal terms are unchanged (still mean zero: the coin flips
make column inner products random in sign). For ``gaussian`` matrices the columns also have
‖R e_j‖² = χ²_d/d = 1 ± √(2/d) ≠ 1, so the same argument applies and the correction is on by
default there too (its effect is small: √(2/d) against √(b(1−q)/(qd)) for D). ``haar``,
``hadamard``, user-supplied (``"dense"``) and zero matrices are left alone, so the orthonormal
families stay bit-identical to the uncorrected estimator.

* Path decoder: the norm is that of the column of the whole word, ‖A e_j‖², computed the cheap
  way (the word applied to e_j, one application per decoded coordinate and matrix; pass
  ``length``). The last matrix's column norm does **not** suffice: each inner matrix D applied to
  the dense vector R_{M,1} e_j adds its own approximate-isometry error ‖R v‖²/‖v‖² − 1, measured
  ≈ 0.08–0.12 relative spread per inner factor at d = 3072, b = 48 (comparable to the last
  column's own 0.12–0.22).
* Self-normalised forms divide both the numerator and the counting denominator by their own
  column norms: (⟨A e_j, s⟩/‖A e_j‖²) / (⟨A_e e_1, s⟩/‖A_e e_1‖²).
* Erased sketches: the full column norm is used and the d/d' rescale kept. For D the nonzero
  blocks of a column are exchangeable among the d/b block positions, so given ‖R e_j‖² the kept
  part satisfies E[(d/d')‖P R e_j‖²] = ‖R e_j‖²: the correction removes the column-norm error and
  leaves the erasure error, which the theory already counts (and never divides by a kept norm
  that can be zero).
* A column that is exactly zero (possible for D when q·d/b is small) decodes to 0, as without the
  correction.
* :func:`object_sketch` is not corrected: it returns a whole d-vector that is queried by probes,
  and correcting it would need all d column norms of A_obj (d applications of the word).

Returned arrays have shape ``(length or d,)`` for one sketch and ``(B, length or d)`` for a batch;
scalar estimates are floats, or ``(B,)`` arrays for a batch.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from ._validation import check_int, check_name
from .matrices import MatrixBank, module_name, tuple_name
from .theory import check_depth, depth_constant, erasure_rescale, object_sketch_constant

__all__ = [
    "attributes",
    "attributes_on_path",
    "count",
    "attribute_sum",
    "mean_attributes",
    "object_sketch",
    "similarity",
    "Similarity",
    "NonFiniteEstimateError",
    "erase",
    "ErasedSketch",
    "path_word",
]


# --------------------------------------------------------------------------- erased sketches
class ErasedSketch:
    """A sketch of which only the d'-prefix survives (graceful erasure, paper §3.1, THEORY.md §4).

    Stores only the kept prefix. Decoders read :attr:`values` (the prefix zero-padded to d, i.e.
    P s) and multiply by :attr:`rescale` = d/d'.

    Parameters
    ----------
    prefix : array_like of shape (keep,) or (B, keep)
        The surviving coordinates s[:keep].
    d_sketch : int
        The full sketch dimension d (the decoder must know what was erased).

    Notes
    -----
    Deliberately not convertible with ``np.asarray``: code that does not know about erasure would
    silently skip the d/d' rescale. Use :attr:`values` when the padded vector is really wanted.
    """

    __slots__ = ("_prefix", "_d")
    __array_ufunc__ = None          # no silent numpy arithmetic on an erased sketch

    def __init__(self, prefix, d_sketch):
        d = check_int("d_sketch", d_sketch, minimum=1)
        p = np.array(prefix, dtype=np.float64)
        if p.ndim not in (1, 2) or p.shape[-1] < 1 or p.shape[-1] > d:
            raise ValueError(f"prefix must have shape (keep,) or (B, keep) with 1 ≤ keep ≤ d_sketch={d}; "
                             f"got shape {p.shape}")
        if not np.all(np.isfinite(p)):
            raise ValueError(f"prefix must be finite; got {float(p[~np.isfinite(p)].flat[0])!r}")
        p.setflags(write=False)
        self._prefix = p
        self._d = d

    @property
    def prefix(self):
        """The kept coordinates, shape ``(keep,)`` or ``(B, keep)`` (read-only)."""
        return self._prefix

    @property
    def keep(self):
        """d', the number of kept leading coordinates."""
        return self._prefix.shape[-1]

    @property
    def d(self):
        """d, the full sketch dimension."""
        return self._d

    @property
    def rescale(self):
        """d/d', the factor the decoders apply (THEORY.md §4; :func:`~sketchsim.theory.erasure_rescale`)."""
        return erasure_rescale(self._d, self.keep)

    @property
    def shape(self):
        """Shape of the full (padded) sketch: ``(d,)`` or ``(B, d)``."""
        return self._prefix.shape[:-1] + (self._d,)

    @property
    def ndim(self):
        return self._prefix.ndim

    @property
    def values(self):
        """P s: the prefix zero-padded to length d (a new array)."""
        out = np.zeros(self.shape)
        out[..., :self.keep] = self._prefix
        return out

    def __repr__(self):
        return f"ErasedSketch(keep={self.keep}, d={self._d}, shape={self.shape})"


def _check_keep(keep, d, bank=None):
    k = check_int("keep", keep, minimum=1)
    if k > d:
        raise ValueError(f"keep must be in 1..d_sketch={d}; got {k}")
    if bank is not None and bank.family == "block-sparse" and k % bank.block_size:
        raise ValueError(f"keep must be a multiple of block_size={bank.block_size} for the block-sparse "
                         f"family (a block boundary, THEORY.md §4); got {k}")
    return k


def erase(s, keep, bank=None):
    """Keep the d'-prefix of a sketch and erase the rest (graceful erasure, paper §3.1).

    The paper keeps a prefix; for the rotation-invariant families this is statistically the same
    as keeping a random subset (THEORY.md §4). Every decoder accepts the result, decodes P s and
    multiplies by d/d', which leaves it unbiased with error grown by ≈ √(d/d')
    (:func:`sketchsim.theory.erasure_factor`).

    Parameters
    ----------
    s : array_like of shape (d,) or (B, d), or ErasedSketch
        A sketch (or a batch); an already erased sketch can be erased further (aging).
    keep : int
        d', the number of leading coordinates kept: 1 ≤ d' ≤ d (≤ the current d' when re-erasing).
    bank : MatrixBank, optional
        When given, ``s`` must match its dimension and, for the ``block-sparse`` family, ``keep``
        must be a multiple of the block size b so the kept rows keep the law of D(b, q, d'). The
        decoders re-check the block boundary against their own bank.

    Returns
    -------
    ErasedSketch
    """
    if bank is not None and not isinstance(bank, MatrixBank):
        raise ValueError(f"bank must be a sketchsim.MatrixBank or None; got {type(bank).__name__}")
    if isinstance(s, ErasedSketch):
        d, prefix, limit = s.d, s.prefix, s.keep
    else:
        prefix = _as_array(s, None)
        d = limit = prefix.shape[-1]
    if bank is not None and d != bank.d_sketch:
        raise ValueError(f"s must have d_sketch = {bank.d_sketch} entries to match the bank; got {d}")
    k = _check_keep(keep, d, bank)
    if k > limit:
        raise ValueError(f"keep must not exceed the {limit} coordinates this erased sketch still has; got {k}")
    return ErasedSketch(prefix[..., :k], d)


# --------------------------------------------------------------------------- argument checking
def _as_array(s, d):
    s = np.asarray(s, dtype=np.float64)
    if s.ndim not in (1, 2) or s.shape[-1] == 0 or (d is not None and s.shape[-1] != d):
        want = "(d_sketch,) or (B, d_sketch)" if d is None else f"({d},) or (B, {d})"
        raise ValueError(f"s must have shape {want}; got {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"s must be finite; got {float(s[~np.isfinite(s)].flat[0])!r}")
    return s


def _check_bank(bank):
    if not isinstance(bank, MatrixBank):
        raise ValueError(f"bank must be a sketchsim.MatrixBank; got {type(bank).__name__}")
    return bank


def _sketch(s, bank):
    """(rows of shape (B, d), single, rescale d/d') from an array or an :class:`ErasedSketch`."""
    _check_bank(bank)
    d = bank.d_sketch
    if isinstance(s, ErasedSketch):
        if s.d != d:
            raise ValueError(f"s must have d_sketch = {d} entries to match the bank; got an erased sketch "
                             f"of d = {s.d}")
        _check_keep(s.keep, d, bank)
        arr, factor = s.values, s.rescale
    else:
        arr, factor = _as_array(s, d), 1.0
    single = arr.ndim == 1
    return np.ascontiguousarray(arr[None, :] if single else arr), single, factor


def _check_module(module, bank=None, graph=None):
    """A module name; with a bank that has sketched graphs, one of the modules it has seen.

    Without ``graph=`` a decoder cannot know the sketch's modules; the bank records those of every
    graph it checked (:attr:`MatrixBank.known_modules`), so a misspelt module is refused instead
    of decoding noise. A fresh bank (nothing sketched with it yet) knows none and accepts any name.
    """
    module = check_name("module", module)
    known = None if graph is not None else getattr(bank, "known_modules", None)
    if known and module not in known:
        shown = ", ".join(map(repr, sorted(known)[:10])) + (" …" if len(known) > 10 else "")
        raise ValueError(f"module must be a module of a graph sketched with this bank ({shown}); got {module!r} "
                         "(pass graph= to check against a specific graph)")
    return module


def _check_weight(weight, n_rows, single):
    """A positive finite weight: scalar, or shape (B,) for a batch; returned as (B, 1) or float."""
    if isinstance(weight, bool):
        raise ValueError(f"weight must be a positive finite number; got {weight!r}")
    try:
        w = np.asarray(weight, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"weight must be a positive finite number; got {weight!r}") from None
    if w.ndim == 0:
        val = float(w)
        if not math.isfinite(val) or val <= 0:
            raise ValueError(f"weight must be a positive finite number; got {weight!r}")
        return val
    if single or w.shape != (n_rows,):
        raise ValueError(f"weight must be a number, or an array of shape (B,) = ({n_rows},) for a batch "
                         f"of sketches; got shape {w.shape}")
    bad = ~np.isfinite(w) | (w <= 0)
    if bad.any():
        raise ValueError(f"weight must be positive and finite; got {float(w[bad][0])!r}")
    return w[:, None]


def _check_length(length, d):
    if length is None:
        return None
    L = check_int("length", length, minimum=1)
    if L > d:
        raise ValueError(f"length must be in 1..d_sketch={d}; got {L}")
    return L


def _check_path(path):
    if isinstance(path, (str, bytes)) or not hasattr(path, "__len__"):
        raise ValueError(f"path must be a nonempty list of 1-based input positions; got {path!r}")
    path = list(path)
    if not path:
        raise ValueError("path must be a nonempty list of 1-based input positions (depth h = len(path)+1 ≥ 2); "
                         "got []")
    out = []
    for k, i in enumerate(path):
        if isinstance(i, bool) or not isinstance(i, numbers.Integral):
            raise ValueError(f"path entries must be integers (1-based input positions); got {i!r} at index {k}")
        if i < 1:
            raise ValueError(f"path entries must be ≥ 1 (1-based input positions); got {int(i)} at index {k}")
        out.append(int(i))
    return out


def _graph_checks(graph, module=None, depth=None, path=None):
    """Check module / depth / path against a communication graph (optional ``graph=``)."""
    if graph is None:
        return
    from .graph import Graph

    if not isinstance(graph, Graph):
        raise ValueError(f"graph must be a sketchsim.Graph or None; got {type(graph).__name__}")
    if module is not None and module not in graph.modules:
        raise ValueError(f"module must be one of the graph's modules {graph.modules}; got {module!r}")
    if path is not None:
        if len(path) + 1 > graph.max_depth:
            raise ValueError(f"path must not be longer than the sketch's depth: at most {graph.max_depth - 1} "
                             f"positions for a graph of depth {graph.max_depth}; got {len(path)} ({path})")
        children = graph.output[0]
        node = None
        for k, i in enumerate(path):
            if i > len(children):
                where = "the output" if node is None else f"object {graph.ids[node]!r}"
                raise ValueError(f"path entry {k} must be ≤ the {len(children)} inputs of {where}; got {i} "
                                 f"(path {path})")
            node = int(children[i - 1])
            children = graph.inputs[node][0]
        if module is not None and graph.module(graph.ids[node]) != module:
            raise ValueError(f"path must lead to an object of module {module!r}; path {path} leads to "
                             f"{graph.ids[node]!r} of module {graph.module(graph.ids[node])!r}")
    elif depth is not None and module is not None:
        depths = graph.module_depths[module]
        if depth not in depths:
            raise ValueError(f"depth must be the depth of module {module!r} in the graph "
                             f"({', '.join(map(str, depths))}); got {depth}")


# --------------------------------------------------------------------------- words
def path_word(path, module=None, channel=1):
    """Matrix names of the all-tuple word A of an index path, outermost first (THEORY.md §2.2).

    ``A = R_{i_1} R_2 R_{i_2} R_2 ⋯ R_2 R_{i_{h−1}} R_1 R_{M,channel}`` (h = 2: R_{i_1} R_1 R_{M,1}).
    With ``module=None`` the object-sketch word ``A_obj = R_{i_1} R_2 ⋯ R_2 R_{i_{h−1}}`` is
    returned. The word uses every tuple factor on the path, so its length fixes the depth and it
    cannot be produced by another branch or another object (THEORY.md §2.3).

    Parameters
    ----------
    path : sequence of int
        1-based input positions from the output down.
    module : str, optional
    channel : {1, 2}
        1: the attribute channel R_{M,1}; 2: the counting channel R_{M,2} (applied to e_1).
    """
    path = _check_path(path)
    names = []
    for k, i in enumerate(path):
        if k:
            names.append(tuple_name(2))
        names.append(tuple_name(i))
    if module is not None:
        if channel not in (1, 2):
            raise ValueError(f"channel must be 1 (attributes) or 2 (counting); got {channel!r}")
        names += [tuple_name(1), module_name(_check_module(module), channel)]
    return names


def _apply_t(bank, names, S):
    """Wᵀ S for the word W = names[0] names[1] ⋯ (outermost first): apply names[0]ᵀ first."""
    for name in names:
        S = bank.get(name).apply_t(S)
    return S


def _e1_image(bank, module):
    """R_{M,2} e_1 (cached on the operator, under the same attribute the engine uses)."""
    op = bank.get(module_name(module, 2))
    col = getattr(op, "_e1_image", None)
    if col is None:
        col = op.column(0)
        op._e1_image = col
    return col


CORRECTED_FAMILIES = ("block-sparse", "gaussian")
"""Families whose columns do not have unit norm: the column-norm correction is on by default."""

_CHUNK = 256          # rows of e_j pushed through a word at once (bounds the memory to 256·d floats)


def _correct(ops, column_norm):
    """Whether to apply the column-norm correction for a decode that reads the operators ``ops``."""
    if column_norm is None:
        return any(op.family in CORRECTED_FAMILIES for op in ops)
    if isinstance(column_norm, (bool, np.bool_)):
        return bool(column_norm)
    raise ValueError(f"column_norm must be None, True or False; got {column_norm!r}")


def _column_sq_norms(op, n):
    """‖R e_j‖² for j < n (0-based), exactly, cached on the operator (which is immutable)."""
    got = getattr(op, "_col_sq", None)
    if got is not None and len(got) >= n:
        return got[:n]
    if op.family == "block-sparse":
        # every entry of a nonzero block is ±1/√(dq): ‖R e_j‖² = (#nonzero blocks of column j)·b/(dq)
        got = np.diff(op.col_ptr).astype(np.float64) * (op.b * op.scale * op.scale)
    elif hasattr(op, "matrix"):
        got = np.einsum("ij,ij->j", op.matrix, op.matrix)
    else:
        return _word_column_sq_norms([op], n)
    op._col_sq = got
    return got[:n]


def _word_column_sq_norms(ops, n):
    """‖A e_j‖² for j < n of the word A = ops[0] ops[1] ⋯ (outermost first): A applied to e_j."""
    if len(ops) == 1 and (ops[0].family == "block-sparse" or hasattr(ops[0], "matrix")):
        return _column_sq_norms(ops[0], n)
    last = ops[-1]
    key = tuple(ops[:-1])
    cache = getattr(last, "_word_col_sq", None)
    if cache is None:
        cache = last._word_col_sq = {}
    got = cache.get(key)
    if got is not None and len(got) >= n:
        return got[:n]
    out = np.empty(n)
    for a in range(0, n, _CHUNK):
        b = min(n, a + _CHUNK)
        V = np.zeros((b - a, b))
        V[np.arange(b - a), np.arange(a, b)] = 1.0                 # rows e_a … e_{b−1}
        for op in reversed(ops):
            V = op.apply(V)
        out[a:b] = np.einsum("ij,ij->i", V, V)
    cache[key] = out
    return out


def _safe(norms):
    """Column norms with exact zeros replaced by 1 (a zero column decodes to 0 either way)."""
    return np.where(norms > 0, norms, 1.0)


def _e1_sq_norm(bank, module):
    """‖R_{M,2} e_1‖² (cached with the e_1 image)."""
    col = _e1_image(bank, module)
    return float(col @ col)


class NonFiniteEstimateError(ValueError):
    """A decoder's estimate would be inf or NaN (the divisor c_h·w or ⟨R_{M,2} e_1, s⟩ is zero or
    below float precision); raised instead of returning it."""


_NOT_FINITE = ("the estimate is not finite in float64: it divides by c_h·w (depth h, weight w) or by "
               "⟨R_{M,2} e_1, s⟩, which is zero or below float precision here; check depth, weight and module")


def _out(X, single, length):
    if length is not None:
        X = X[:, :length]
    if not np.all(np.isfinite(X)):
        raise NonFiniteEstimateError(f"{_NOT_FINITE}; got {float(X[~np.isfinite(X)].flat[0])!r}")
    return X[0] if single else X


def _scalar_out(v, single):
    if not np.all(np.isfinite(v)):
        raise NonFiniteEstimateError(f"{_NOT_FINITE}; got {float(np.ravel(v)[~np.isfinite(np.ravel(v))][0])!r}")
    return float(v[0]) if single else v


def _divide_columns(X, norms):
    return X / _safe(norms)[None, :]


def _self_normalised(X, T, bank, module, ops, prefix_ops, column_norm):
    """X / ⟨A_e e_1, T⟩ row by row (T: the sketch after the word's prefix), with the column-norm
    correction of numerator and denominator when it applies. ``ops``: the attribute word's
    operators (outermost first); ``prefix_ops``: its prefix (None for the bare R_{M,1})."""
    e1 = _e1_image(bank, module)
    den = T @ e1
    e2 = bank.get(module_name(module, 2))
    if not _correct(list(ops) + [e2], column_norm):
        return X / den[:, None]
    if prefix_ops:
        num_norms = _word_column_sq_norms(list(ops), X.shape[1])
        e_norm = float(_word_column_sq_norms(list(prefix_ops) + [e2], 1)[0])
    else:
        num_norms = _column_sq_norms(ops[0], X.shape[1])
        e_norm = _e1_sq_norm(bank, module)
    X = _divide_columns(X, num_norms)
    return X / (den / (e_norm if e_norm > 0 else 1.0))[:, None]


# --------------------------------------------------------------------------- Theorems 1 and 3
def attributes(s, bank, module, depth, weight=None, length=None, *, graph=None, column_norm=None):
    """Attribute Recovery for the unique object of a module (paper Theorem 1(i), THEORY.md §2.2).

    x̂ = R_{M,1}ᵀ s / (c_h · w), c_h = 2^{−(4h−3)}; ℓ∞ error O(δ/w) w.h.p., about
    ‖s‖/(c_h w √d) per coordinate (:func:`sketchsim.theory.noise_level`).

    Parameters
    ----------
    s : ndarray of shape (d,) or (B, d), or ErasedSketch
    bank : MatrixBank
    module : str
        M(θ*); no other object of the sketch may come from it (else see
        :func:`attributes_on_path` or :func:`attribute_sum`).
    depth : int
        h(θ*) ≥ 2.
    weight : float or ndarray of shape (B,), optional
        Effective weight w_{θ*}. ``None``: the self-normalised form
        x̂ = R_{M,1}ᵀ s / ⟨R_{M,2} e_1, s⟩, whose denominator estimates c_h·w through the counting
        channel (``depth`` is then only validated).
    length : int, optional
        Attribute length; the estimate is truncated to it.
    graph : Graph, optional
        Check ``module`` and ``depth`` against a communication graph.
    column_norm : bool, optional
        Divide coordinate j by ‖R_{M,1} e_j‖² (and the self-normalised denominator by
        ‖R_{M,2} e_1‖²): the column-norm correction of the module docstring. Default: on for
        ``block-sparse`` and ``gaussian``, off (bit-identical) for orthonormal families.

    Returns
    -------
    ndarray of shape (length or d,) or (B, length or d)
    """
    S, single, factor = _sketch(s, bank)
    module = _check_module(module, bank, graph)
    h = check_depth(depth)
    c = depth_constant(h)
    L = _check_length(length, bank.d_sketch)
    w = None if weight is None else _check_weight(weight, S.shape[0], single)
    _graph_checks(graph, module, h)
    op = bank.get(module_name(module, 1))
    X = op.apply_t(S)
    if w is None:
        X = _self_normalised(X, S, bank, module, [op], None, column_norm)
    else:
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):  # refused by _out
            X = X * (factor / (c * w))
        if _correct([op], column_norm):
            X = _divide_columns(X, _column_sq_norms(op, X.shape[1]))
    return _out(X, single, L)


def attributes_on_path(s, bank, path, module, weight=None, length=None, *, graph=None, column_norm=None):
    """Attribute Recovery along a known index path (paper Theorem 1(ii), THEORY.md §2.2–2.3).

    x̂ = Aᵀ s / (c_h · w_path) with the all-tuple word
    A = R_{i_1} R_2 R_{i_2} R_2 ⋯ R_2 R_{i_{h−1}} R_1 R_{M,1} (:func:`path_word`), i.e.
    x̂ = R_{M,1}ᵀ R_1ᵀ R_{i_{h−1}}ᵀ R_2ᵀ ⋯ R_2ᵀ R_{i_1}ᵀ s / (c_h w_path), R_{i_1}ᵀ applied first.
    Unlike the naive word R_{i_1} ⋯ R_{i_{h−1}} R_{M,1}, it is unbiased even when objects of the
    same module are siblings, because no other branch or object produces A (THEORY.md §2.3).

    Parameters
    ----------
    s : ndarray of shape (d,) or (B, d), or ErasedSketch
    bank : MatrixBank
    path : sequence of int
        (i_1, …, i_{h−1}): 1-based input positions from the output down; depth h = len(path) + 1.
    module : str
        M(θ*).
    weight : float or ndarray of shape (B,), optional
        w_path, the product of the weights along the path. ``None``: the self-normalised form
        Aᵀ s / ⟨A_e e_1, s⟩ with A_e the same word ending in R_{M,2}, which estimates c_h·w_path.
    length : int, optional
        Attribute length.
    graph : Graph, optional
        Check that the path exists (not longer than the graph's depth) and ends at an object of
        ``module``.
    column_norm : bool, optional
        Divide coordinate j by ‖A e_j‖², the squared norm of column j of the whole word (the word
        applied to e_j: one application per returned coordinate, so pass ``length``), and the
        self-normalised denominator by ‖A_e e_1‖². Default: on for ``block-sparse`` and
        ``gaussian``, off (bit-identical) for orthonormal families (module docstring).

    Returns
    -------
    ndarray of shape (length or d,) or (B, length or d)
    """
    S, single, factor = _sketch(s, bank)
    path = _check_path(path)
    module = _check_module(module, bank, graph)
    h = check_depth(len(path) + 1, "len(path) + 1 (the depth)")
    L = _check_length(length, bank.d_sketch)
    w = None if weight is None else _check_weight(weight, S.shape[0], single)
    _graph_checks(graph, module, h, path)
    names = path_word(path, module)
    T = _apply_t(bank, names[:-1], S)                            # R_1ᵀ R_{i_{h−1}}ᵀ ⋯ R_{i_1}ᵀ s
    ops = [bank.get(n) for n in names]
    X = ops[-1].apply_t(T)
    if L is not None:
        X = X[:, :L]                       # only the returned coordinates need a column norm
    if w is None:
        X = _self_normalised(X, T, bank, module, ops, ops[:-1], column_norm)
    else:
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):  # refused by _out
            X = X * (factor / (depth_constant(h) * w))
        if _correct(ops, column_norm):
            X = _divide_columns(X, _word_column_sq_norms(ops, X.shape[1]))
    return _out(X, single, L)


def count(s, bank, module, depth, weight, *, graph=None, column_norm=None):
    """Frequency Recovery: the number of objects of a module (paper Theorem 3(i), THEORY.md §2.2).

    n̂ = ⟨R_{M,2} e_1, s⟩ / (c_h · w*). In general ⟨R_{M,2} e_1, s⟩/c_h estimates Σ_{θ∈M} W_θ, so
    n̂ is the weighted count divided by w*; when every object of M has effective weight w*, its
    additive error is O(δ/w*) and ``round(n̂)`` is exact once that error is below ½ (paper §3.3).

    Parameters
    ----------
    s : ndarray of shape (d,) or (B, d), or ErasedSketch
    bank : MatrixBank
    module : str
        M*.
    depth : int
        h(M*) ≥ 2.
    weight : float or ndarray of shape (B,)
        w*, the common effective weight.
    graph : Graph, optional
        Check ``module`` and ``depth``.
    column_norm : bool, optional
        Divide by ‖R_{M,2} e_1‖² (column-norm correction, module docstring): for D(b, q, d) the
        uncorrected n̂ carries the multiplicative error n·(‖R_{M,2} e_1‖² − 1). Default: on for
        ``block-sparse`` and ``gaussian``, off (bit-identical) for orthonormal families.

    Returns
    -------
    float, or ndarray of shape (B,)
    """
    S, single, factor = _sketch(s, bank)
    module = _check_module(module, bank, graph)
    h = check_depth(depth)
    if weight is None:
        raise ValueError("weight must be a positive finite number (w*, Theorem 3 needs it); got None")
    w = _check_weight(weight, S.shape[0], single)
    _graph_checks(graph, module, h)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):      # refused by _scalar_out
        n = (S @ _e1_image(bank, module)) * factor / (depth_constant(h) * np.ravel(w))
    if _correct([bank.get(module_name(module, 2))], column_norm):
        e_norm = _e1_sq_norm(bank, module)
        n = n / (e_norm if e_norm > 0 else 1.0)
    return _scalar_out(n, single)


def attribute_sum(s, bank, module, depth, weight, length=None, *, graph=None, column_norm=None):
    """Summed Attribute Recovery (paper Theorem 3(ii), THEORY.md §2.2).

    Σ̂x = R_{M,1}ᵀ s / (c_h · w*), which estimates Σ_{θ∈M} W_θ x_θ / w*: the plain sum Σ x_θ when
    every object of M has effective weight w*; ℓ∞ error O(δ/w*).

    Parameters
    ----------
    s : ndarray of shape (d,) or (B, d), or ErasedSketch
    bank : MatrixBank
    module : str
        M*.
    depth : int
        h(M*) ≥ 2.
    weight : float or ndarray of shape (B,)
        w*, the common effective weight.
    length : int, optional
        Attribute length.
    graph : Graph, optional
        Check ``module`` and ``depth``.
    column_norm : bool, optional
        As for :func:`attributes` (divide coordinate j by ‖R_{M,1} e_j‖²).

    Returns
    -------
    ndarray of shape (length or d,) or (B, length or d)
    """
    if weight is None:
        raise ValueError("weight must be a positive finite number (w*, Theorem 3 needs it); got None; "
                         "use mean_attributes for the weight-free mean")
    return attributes(s, bank, module, depth, weight=weight, length=length, graph=graph,
                      column_norm=column_norm)


def mean_attributes(s, bank, module, length=None, *, graph=None, column_norm=None):
    """Weight-averaged mean attribute of a module, with no weight needed (Theorem 3, THEORY §2.2).

    x̄̂ = R_{M,1}ᵀ s / ⟨R_{M,2} e_1, s⟩, which estimates Σ_θ W_θ x_θ / Σ_θ W_θ over the objects of M
    (the plain mean when their effective weights are equal). c_h cancels, so the depth is not
    needed (all objects of M must still share one depth).

    Parameters
    ----------
    s : ndarray of shape (d,) or (B, d), or ErasedSketch
    bank : MatrixBank
    module : str
    length : int, optional
        Attribute length.
    graph : Graph, optional
        Check ``module``.
    column_norm : bool, optional
        (⟨R_{M,1} e_j, s⟩/‖R_{M,1} e_j‖²) / (⟨R_{M,2} e_1, s⟩/‖R_{M,2} e_1‖²): the column-norm
        correction of numerator and denominator (module docstring). Default: on for
        ``block-sparse`` and ``gaussian``, off (bit-identical) for orthonormal families.

    Returns
    -------
    ndarray of shape (length or d,) or (B, length or d)
    """
    S, single, _ = _sketch(s, bank)
    module = _check_module(module, bank, graph)
    L = _check_length(length, bank.d_sketch)
    _graph_checks(graph, module)
    op = bank.get(module_name(module, 1))
    X = _self_normalised(op.apply_t(S), S, bank, module, [op], None, column_norm)
    return _out(X, single, L)


# --------------------------------------------------------------------------- recursive sketches
def object_sketch(s, bank, path, weight=None, module=None, *, graph=None):
    """Functional approximation of an inner object's sketch (recursive-sketch property, §1, §3.3).

    ŝ = A_objᵀ s / (w_path · 2^{−(4h−7)}) with A_obj = R_{i_1} R_2 R_{i_2} ⋯ R_2 R_{i_{h−1}}
    (h = 2: ŝ = (2/w) R_iᵀ s) (THEORY.md §2.2). For any probe u independent of the matrices,
    ⟨u, ŝ⟩ ≈ ⟨u, s_object(θ)⟩; ŝ can be queried like an object sketch, e.g.
    16·R_{M,1}ᵀ R_1ᵀ ŝ ≈ x_θ (the R_1-slot branch, which carries s_attr with coefficient 1/16).

    ŝ also holds coincidence terms (THEORY.md §2.3): query it through the R_1 or R_2 slot branch,
    never the identity branch, unless the module is unique.

    Parameters
    ----------
    s : ndarray of shape (d,) or (B, d), or ErasedSketch
    bank : MatrixBank
    path : sequence of int
        (i_1, …, i_{h−1}), 1-based input positions from the output down; h = len(path) + 1.
    weight : float or ndarray of shape (B,), optional
        w_path, the product of the weights along the path. Either ``weight`` or ``module`` is
        required: the paper's decoders need w (THEORY.md §9 item 13).
    module : str, optional
        M(θ). Used only when ``weight`` is None: the self-normalised form
        ŝ = A_objᵀ s / (16·⟨R_1 R_{M,2} e_1, A_objᵀ s⟩), whose denominator estimates
        w_path·2^{−(4h−7)} through θ's counting channel (the all-tuple counting word of
        :func:`attributes_on_path`).
    graph : Graph, optional
        Check that the path exists (and ends at an object of ``module`` if given).

    Returns
    -------
    ndarray of shape (d,) or (B, d)
    """
    S, single, factor = _sketch(s, bank)
    path = _check_path(path)
    h = check_depth(len(path) + 1, "len(path) + 1 (the depth)")
    if weight is None and module is None:
        raise ValueError("weight must be given (w_path), or module for the self-normalised form; got "
                         "weight=None and module=None")
    if module is not None:
        module = _check_module(module, bank, graph)
    w = None if weight is None else _check_weight(weight, S.shape[0], single)
    _graph_checks(graph, module, h if module is not None else None, path)
    T = _apply_t(bank, path_word(path), S)
    if w is None:
        probe = bank.get(tuple_name(1)).apply(_e1_image(bank, module))      # R_1 R_{M,2} e_1
        T = T / (16.0 * (T @ probe))[:, None]
    else:
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):  # refused by _out
            T = T * (factor / (object_sketch_constant(h) * w))
    return _out(T, single, None)


# --------------------------------------------------------------------------- Theorem 2
@dataclass(frozen=True)
class Similarity:
    """Result of :func:`similarity` (paper Theorem 2).

    Attributes
    ----------
    dot : float or ndarray
        ⟨s, s̄⟩, the paper's score (times d/d' for erased sketches): O(δ) without a shared module,
        Ω(w w̄) − O(δ) with one.
    cosine : float or ndarray
        dot / (norm1 · norm2), the angle alone (NaN when a sketch is zero).
    norm1, norm2 : float or ndarray
        ‖s‖ and ‖s̄‖ (estimated as √(d/d')·‖P s‖ after erasure), the magnitudes alone.
    keep : int
        Number of leading coordinates compared (d, or the smaller d' of two erased sketches).
    """

    dot: float
    cosine: float
    norm1: float
    norm2: float
    keep: int

    @property
    def angle(self):
        """arccos(cosine), in radians."""
        return np.arccos(np.clip(self.cosine, -1.0, 1.0))


def _sim_input(s):
    if isinstance(s, ErasedSketch):
        return s.values, s.d, s.keep
    arr = _as_array(s, None)
    return arr, arr.shape[-1], arr.shape[-1]


def similarity(s1, s2):
    """Sketch-to-Sketch Similarity: the dot product of Theorem 2, with angle and magnitudes.

    ⟨s, s̄⟩ is the paper's score (Theorem 2: O(δ) with no shared module; ≥ Ω(w w̄) − O(δ) when
    both sketches hold an object of one module at one constant depth, because attributes are
    nonnegative). Its expectation is predicted by :func:`sketchsim.theory.expected_dot`. Both
    sketches must come from the same :class:`~sketchsim.MatrixBank`.

    With erased sketches only the common prefix d' = min(d'_1, d'_2) is compared and the dot
    product is rescaled by d/d' (THEORY.md §4), the norms by √(d/d').

    Parameters
    ----------
    s1, s2 : ndarray of shape (d,) or (B, d), or ErasedSketch
        Rows of a batch are compared pairwise (a single sketch broadcasts against a batch).

    Returns
    -------
    Similarity
        ``dot``, ``cosine``, ``norm1``, ``norm2`` (floats, or ``(B,)`` arrays for batches) and
        ``keep``.
    """
    a, d1, k1 = _sim_input(s1)
    b, d2, k2 = _sim_input(s2)
    if d1 != d2:
        raise ValueError(f"s1 and s2 must have the same d_sketch; got {d1} and {d2}")
    if a.ndim == 2 and b.ndim == 2 and a.shape[0] != b.shape[0]:
        raise ValueError(f"s1 and s2 must have the same batch size; got {a.shape[0]} and {b.shape[0]}")
    k = min(k1, k2)
    a, b = a[..., :k], b[..., :k]
    scale = erasure_rescale(d1, k)
    dot = np.sum(a * b, axis=-1) * scale
    n1 = np.sqrt(np.sum(a * a, axis=-1) * scale)
    n2 = np.sqrt(np.sum(b * b, axis=-1) * scale)
    denom = n1 * n2
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(denom > 0, dot / np.where(denom > 0, denom, 1.0), np.nan)
    if np.ndim(dot) == 0:
        return Similarity(float(dot), float(cos), float(n1), float(n2), int(k))
    n1, n2 = np.broadcast_to(n1, dot.shape), np.broadcast_to(n2, dot.shape)
    return Similarity(dot, cos, n1.copy(), n2.copy(), int(k))


# --------------------------------------------------------------------------- beyond the paper
# Decoders that use more of the sketch than the paper's single word (THEORY.md §2.5), and blind
# unrolling: defined in their own modules, part of this module's public names (a contract).
from .decode_ls import attributes_ls, joint_attributes  # noqa: E402
from .unroll import fit_structure, unroll  # noqa: E402

__all__ += ["attributes_ls", "joint_attributes", "unroll", "fit_structure"]
