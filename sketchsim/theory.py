"""Closed-form constants and predictions of the paper's mechanism (THEORY.md §2–4).

Used by the decoders, the tests, the reports and the plots; every formula names its source.

Contents
--------
Constants
    :func:`depth_constant` (c_h), :func:`object_sketch_constant` (2^{−(4h−7)}).
Noise levels (THEORY.md §2.4, §4)
    :func:`noise_level` (‖s‖/√d/(c_h w), times √(d/d') after erasure), :func:`erasure_factor`,
    :func:`erasure_rescale`, :func:`similarity_noise_level`, :func:`gaussian_max_quantile`.
Word expansion (THEORY.md §2.1–2.3)
    :func:`word_expansion` writes s_overall as Σ_W W·a_W over formal words W;
    :func:`word_coefficient` then gives E[Aᵀ s] for any decoder word A (e.g. the bias of the naive
    path decoder), and :func:`expected_dot` the word-count prediction of Theorem 2(ii);
    :func:`similarity_lower_bound` is the ≥ 4 shared words bound.
"""
from __future__ import annotations

import math

import numpy as np

from ._validation import check_int

__all__ = [
    "depth_constant",
    "object_sketch_constant",
    "noise_level",
    "erasure_factor",
    "erasure_rescale",
    "similarity_noise_level",
    "gaussian_max_quantile",
    "word_expansion",
    "word_coefficient",
    "expected_dot",
    "similarity_lower_bound",
]


MAX_DEPTH = 256
"""Deepest object depth h the estimators accept: c_h = 2^{-(4h-3)} must stay a normal float64."""


def check_depth(depth, name="depth"):
    """An object depth h: an integer in 2..:data:`MAX_DEPTH` (paper §2.2: the output has h = 1)."""
    return check_int(name, depth, minimum=2, maximum=MAX_DEPTH)


def depth_constant(depth):
    """c_h = 2^{-(4h-3)}: the coefficient of every word carrying an object at depth h (THEORY §2.1).

    The identity word of object θ contributes c_h·W_θ·R_{M,1} x_θ + c_h·W_θ·R_{M,2} e_1 to
    s_overall (h = 2: 1/32, h = 3: 1/512, h = 4: 1/8192).
    """
    h = check_depth(depth)
    return 2.0 ** (-(4 * h - 3))


def object_sketch_constant(depth):
    """2^{-(4h-7)}: coefficient of s_object(θ) under its all-tuple word A_obj (THEORY §2.2)."""
    h = check_depth(depth)
    return 2.0 ** (-(4 * h - 7))


# --------------------------------------------------------------------------- noise levels
def _positive(name, value):
    v = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(v)) or np.any(v <= 0):
        raise ValueError(f"{name} must be positive and finite; got {value!r}")
    return v if v.ndim else float(v)


def _keep(d, keep):
    if keep is None:
        return d
    k = check_int("keep", keep, minimum=1)
    if k > d:
        raise ValueError(f"keep must be in 1..d_sketch={d}; got {k}")
    return k


def erasure_rescale(d_sketch, keep):
    """d/d': the factor every decoder applies to an erased sketch (THEORY.md §4).

    Keeping a d'-prefix P of s: E[Rᵀ P R] = (d'/d)·I for Haar (and for the randomised Hadamard and
    D(b, q, d) families), so (d/d')·Rᵀ P s is unbiased for Rᵀ s's signal.
    """
    d = check_int("d_sketch", d_sketch, minimum=1)
    return d / _keep(d, keep)


def erasure_factor(d_sketch, keep):
    """√(d/d'): predicted growth of every decoder's error after erasing to a d'-prefix (THEORY §4).

    δ → δ' = Õ(1/√d') (paper §3.1 "graceful erasure"; checked numerically in THEORY.md §4).
    """
    return math.sqrt(erasure_rescale(d_sketch, keep))


def noise_level(sketch_norm, d_sketch, depth=None, weight=None, keep=None):
    """Predicted per-coordinate standard deviation of a decoder's output (THEORY.md §2.4, §4).

    σ = ‖s‖ / √d · √(d/d') / (c_h · w).

    A coordinate of Rᵀ r for a unit-free residual r that is (nearly) independent of R is
    ≈ N(0, ‖r‖²/d), and ‖r‖ ≈ ‖s‖ (Theorem 1 with δ ≈ 1/√d). Dividing by c_h·w gives the noise of
    Theorems 1 and 3 (attributes, counts, summed attributes); erasure to a d'-prefix multiplies it
    by √(d/d') (:func:`erasure_factor`).

    Parameters
    ----------
    sketch_norm : float or ndarray
        ‖s_overall‖ (of the full sketch; an erased sketch's full norm is ≈ √(d/d')·‖P s‖).
    d_sketch : int
    depth, weight : int and float, optional
        h and the (effective) weight w; when both are omitted the raw noise ‖s‖/√d of a
        coordinate of Rᵀ s is returned (e.g. for the self-normalised decoders' numerators).
    keep : int, optional
        d' of an erased sketch.

    Returns
    -------
    float or ndarray
    """
    d = check_int("d_sketch", d_sketch, minimum=1)
    norm = np.asarray(sketch_norm, dtype=np.float64)
    if not np.all(np.isfinite(norm)) or np.any(norm < 0):
        raise ValueError(f"sketch_norm must be finite and nonnegative; got {sketch_norm!r}")
    sigma = norm / math.sqrt(d) * math.sqrt(d / _keep(d, keep))
    if (depth is None) != (weight is None):
        raise ValueError("depth and weight must be given together (or both omitted); got "
                         f"depth={depth!r}, weight={weight!r}")
    if depth is not None:
        sigma = sigma / (depth_constant(depth) * _positive("weight", weight))
    return sigma if np.ndim(sigma) else float(sigma)


def similarity_noise_level(norm1, norm2, d_sketch, keep=None):
    """Predicted standard deviation of ⟨s, s̄⟩ around its mean: ‖s‖‖s̄‖/√d · √(d/d') (Theorem 2(i)).

    Theorem 2(i): sketches without a shared module have dot product O(δ)·‖s‖‖s̄‖ with δ ≈ 1/√d;
    after erasure the rescaled (d/d')⟨P s, P s̄⟩ has δ' ≈ 1/√d' (THEORY.md §4).
    """
    d = check_int("d_sketch", d_sketch, minimum=1)
    n1, n2 = np.asarray(norm1, dtype=np.float64), np.asarray(norm2, dtype=np.float64)
    out = n1 * n2 / math.sqrt(d) * math.sqrt(d / _keep(d, keep))
    return out if np.ndim(out) else float(out)


def gaussian_max_quantile(n, alpha=1e-6):
    """k such that P(max_{i ≤ n} |Z_i| > k) ≤ α for standard normal Z_i (union bound).

    k = Φ^{-1}(1 − α/(2n)). Tolerances of the form k·σ for an ℓ∞ error over n coordinates.
    """
    from scipy.stats import norm

    n = check_int("n", n, minimum=1)
    a = float(alpha)
    if not 0.0 < a < 1.0:
        raise ValueError(f"alpha must lie in (0, 1); got {alpha!r}")
    return float(norm.isf(a / (2 * n)))


# --------------------------------------------------------------------------- word expansion
def _padd(dst, word, vec):
    cur = dst.get(word)
    if cur is None:
        dst[word] = vec.copy()
        return
    if len(cur) < len(vec):
        cur = np.concatenate([cur, np.zeros(len(vec) - len(cur))])
    cur[:len(vec)] += vec
    dst[word] = cur


def _factor(expansion, name, scale):
    """scale·(I + R_name) applied to an expansion."""
    out = {}
    for word, vec in expansion.items():
        _padd(out, word, scale * vec)
        _padd(out, (name,) + word, scale * vec)
    return out


def word_expansion(graph, object_id=None):
    """s_overall (or, with ``object_id``, that object's sketch s_object(θ)) written as a sum over
    formal words: s = Σ_W W·a_W (THEORY.md §2.1).

    Each factor (I+R)/2 of the sketch (paper §3.3) is split into I/2 + R/2 and the products are
    collected by the *formal* word W: the tuple of matrix names chosen R, outermost first, ending
    in ``module/<M>/1`` (a_W multiplies x, an attribute-length vector) or ``module/<M>/2`` (a_W is
    a length-1 array, the coefficient of e_1). Branches that give the same formal word add up
    (the shared R_1/R_2 coincidences of THEORY.md §2.3, DAG paths, same-module objects).

    For random matrices with E[R] = 0 drawn independently per name (every family of
    :class:`~sketchsim.MatrixBank`), distinct formal words are uncorrelated, up to O(1/d) terms
    from repeated matrices (E[R²] = I/d for Haar), and E[Wᵀ W] = I. Hence
    E[Aᵀ s] ≈ a_A (:func:`word_coefficient`) and E[⟨s, s̄⟩] ≈ Σ_W ⟨a_W, ā_W⟩ (:func:`expected_dot`).

    Parameters
    ----------
    graph : Graph
    object_id : str, optional
        Expand that object's sketch instead of the overall sketch.

    Returns
    -------
    dict of tuple of str -> ndarray
        2^{3h−3} words per object at depth h and per path (8, 64, 512 for h = 2, 3, 4): fine for
        small graphs, exponential in depth.
    """
    from .matrices import module_name, tuple_name

    memo = {}

    def input_exp(children, weights):
        out = {}
        for i, (c, w) in enumerate(zip(children, weights), start=1):
            for word, vec in _factor(obj_exp(int(c)), tuple_name(i), 0.5 * float(w)).items():
                _padd(out, word, vec)
        return out

    def obj_exp(o):
        if o in memo:
            return memo[o]
        m = graph.modules[graph.module_of[o]]
        attr = {(module_name(m, 1),): 0.5 * np.asarray(graph.attributes[o], dtype=np.float64),
                (module_name(m, 2),): np.array([0.5])}
        t = _factor(attr, tuple_name(1), 0.25)                       # ½ · (I+R_1)/2 · s_attr
        children, weights = graph.inputs[o]
        if len(children):
            for word, vec in _factor(input_exp(children, weights), tuple_name(2), 0.25).items():
                _padd(t, word, vec)                                  # ½ · (I+R_2)/2 · s_input
        memo[o] = _factor(t, module_name(m, 0), 0.5)                 # (I+R_{M,0})/2
        return memo[o]

    if object_id is not None:
        if object_id not in graph.index:
            raise ValueError(f"object_id must be an object of the graph; got {object_id!r}")
        return obj_exp(graph.index[object_id])
    return input_exp(*graph.output)


def _expansion(graph_or_expansion):
    return graph_or_expansion if isinstance(graph_or_expansion, dict) else word_expansion(graph_or_expansion)


def word_coefficient(graph_or_expansion, word, length=None):
    """a_W: the vector in front of the formal word W in s_overall, so E[Wᵀ s] ≈ a_W (THEORY §2.1).

    For a decoder word A ending in R_{M,1} this is the expected (unnormalised) decoder output; e.g.
    the naive path decoder of THEORY.md §2.3 has E = a_A / (c_h w), which the all-tuple word
    makes equal to x_θ.

    Parameters
    ----------
    graph_or_expansion : Graph or dict
        A graph, or the result of :func:`word_expansion` (to reuse it).
    word : sequence of str
        Matrix names outermost first, e.g. ``("tuple/1", "tuple/1", "module/P/1")``.
    length : int, optional
        Zero-pad or truncate the result to this length (default: as stored, or length 1 if the word
        does not occur).
    """
    vec = _expansion(graph_or_expansion).get(tuple(word))
    vec = np.zeros(1) if vec is None else vec.copy()
    if length is not None:
        L = check_int("length", length, minimum=1)
        vec = np.concatenate([vec, np.zeros(max(0, L - len(vec)))])[:L]
    return vec


def expected_dot(graph1, graph2):
    """Word-count prediction of E⟨s, s̄⟩ for two sketches made with one bank (Theorem 2(ii)).

    E⟨s, s̄⟩ ≈ Σ_W ⟨a_W, ā_W⟩ over the formal words common to both sketches (THEORY.md §2.2):
    a shared module at depth h contributes c_h² w w̄ (⟨x, x̄⟩ + 1) per shared word and path pair,
    counted with multiplicity; every term is ≥ 0 because attributes are nonnegative. Sketches
    without a shared module share no word: the prediction is 0 (Theorem 2(i)).
    """
    e1, e2 = _expansion(graph1), _expansion(graph2)
    if len(e2) < len(e1):
        e1, e2 = e2, e1
    total = 0.0
    for word, a in e1.items():
        b = e2.get(word)
        if b is not None:
            n = min(len(a), len(b))
            total += float(a[:n] @ b[:n])
    return total


def similarity_lower_bound(depth, weight1, weight2, attr_dot=0.0):
    """4·c_h²·w·w̄·(1 + ⟨x, x̄⟩): the words always shared by two same-module objects (Theorem 2(ii)).

    The choices at the leaf's R_{M,0} and at its R_1 slot, with I everywhere else, give 4 formal
    words common to both sketches (THEORY.md §2.2), so E⟨s, s̄⟩ ≥ this bound (all terms ≥ 0).
    """
    c = depth_constant(depth)
    return 4.0 * c * c * _positive("weight1", weight1) * _positive("weight2", weight2) * (1.0 + float(attr_dot))
