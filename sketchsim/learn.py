"""Theorem 5 (paper §4.1): learning a teacher modular network from its sketches.

A **teacher** (:func:`make_teacher`) is a modular network with a fixed tree: top objects (depth 2)
feed the output pseudo-object, every internal object is computed by its own module from the
attributes of its inputs, and the leaves (the deepest level) read their attributes from the network
input. :func:`teacher_samples` draws random network inputs and returns (input, output, overall
sketch) triples, the sketches built with a :class:`~sketchsim.MatrixBank` the learner never sees.

The **learner** (:func:`learn_from_sketches`) gets the triples only and follows THEORY.md §7:

1. **Recover** matrices and coefficients with the recursable learner
   (:func:`sketchsim.dictlearn.recover`).
2. **Type** every recovered matrix from what it multiplies: coefficient vectors ≈ c·e_1 (column 0
   only, positive) → an R_{M,2}; nonnegative coefficients on a few low columns → an R_{M,1} (its
   coefficient vectors are c_h·W_θ·x_θ, the identity branch of THEORY §2.1); anything else →
   ``unknown``. Each R_{M,1} is paired with the R_{M,2} of the same module: ‖c_h W x‖ = c_h W
   for unit attributes, which is exactly the R_{M,2} coefficient; their ratio (``completeness``)
   also reveals attribute coordinates that were never certified. An R_{M,1} of which only column
   0 was certified looks like c·e_1 too: of two unpaired such labels, the one whose coefficient
   stays below the other's (c_h W x_0 ≤ c_h W) in ≥ 90% of the samples, with a ratio that varies
   beyond the decode noise (x_0 varies; two R_{M,2} have the constant ratio W/W' under fixed
   weights), is retyped R_{M,1}. A lone column-0-only R_{M,1} stays indistinguishable from an
   R_{M,2} and is mistyped (measured in 1 of 183 runs of the experiment).
3. **Decode** every sample (not only those where a column was certified) through the recovered
   columns (median over their blocks of the per-block estimate): the Theorem 1(i) decoder with
   learned matrices.
4. **Identify** the objects (one per R_{M,1}; in a fixed tree every sample has the same structure,
   so a recovered matrix *is* an object across samples) certified in ≥ β of the samples; estimate
   their identity coefficient ω = c_h·W_θ, and — when the outputs are the weighted sum of the top
   objects' attributes, as for :func:`make_teacher` — their weight W_θ and hence their depth h.
5. **Pair and fit**: for every identified object choose its inputs among the network-input groups
   and the lighter identified objects (a child's ω is ≤ 1/16 of its parent's: c_{h+1} = c_h/16 and
   W_child ≤ W_parent; candidates are the objects with ω ≤ 1.25·ω_parent/16, the 1.25 a margin for
   the estimation error of the two ω) by best-subset selection on cross-validated error, then fit
   the module by least squares of the normalised-linear model x ≈ N(A z + c) (N = ℓ2
   normalisation).

Each step is one function (``_recover_dictionary``, ``_type_matrices``, ``_decode_columns``,
``_pair_labels``, ``_find_column0_attributes``, ``_build_objects``, ``_estimate_output_weights``,
``_candidate_inputs``, ``_fit_object``); the thresholds a user may tune are the parameters of
:func:`learn_from_sketches` (:data:`LEARN_DEFAULTS`), the internal ones are named module constants
(:data:`POSITIVE_FRAC_MIN`, :data:`MIN_SHARED_FRAC`, :data:`PAIR_MAX_LOG_RATIO`,
:data:`DOMINATION_FRAC`, :data:`CHILD_OMEGA_RATIO`, …), each documented where it is defined.

**What is learnable at feasible sizes** (derived; measured in ``experiments/thm5_teacher``). The
block screen must see a column of R_{M,1} dominate its blocks: signal per entry c_h·W·x_j/√(dq)
against per-entry noise ‖s‖/√d, so the single-sample SNR is r = c_h W x_j / (‖s‖ √q)
(:func:`identity_snr`), and a column is certified when r ≳ 2.3 (:func:`required_snr`, τ = 0.9).
The other 15 words of a depth-2 object already give ‖s‖ ≥ 4·c_2·W, so r ≤ x_j/(4√q): even a lone
depth-2 object needs q ≲ 0.012, hence d ≳ 6b/q ≈ 3·10⁴ (six nonzero blocks per column), and every
other object adds noise (experiments/thm5_teacher's full profile, two top objects of weights w and
1 − w, measures how often the heavier one's module is learned at d = 25488, 51072 and 102000). A
depth-3 object has r ≤ x_j/(64√q) (its parent's words are noise 64× its signal), which needs
q ≲ 5·10⁻⁵, d ≳ 10⁷ (thm5_teacher's deep grid runs a single chain at d ≈ 10⁷ with a matrix-free
bank: its middle object sits at about the floor there). The
tuple matrices R_i and the R_{M,0} multiply dense subsketches, whose coordinates are all
≈ ‖u‖/√d: no column ever dominates a block, at any d, so they are never recovered, and levels ≥ 2
certify nothing (their samples are the recovered attributes and e_1). Consequently the modules
learnable from sketches at d ≲ 10⁵ are those whose output object sits at depth 2 and whose inputs
are network-input leaves. :meth:`LearnedNetwork.report` says this for every object it sees and
gives the detection floor it measured.

The evaluation against the hidden bank and the teacher (matching labels to bank matrices, module
errors on fresh inputs) is experiment code: it lives in ``experiments/thm5_teacher.py``; the
learner never sees the bank.
"""
from __future__ import annotations

import math
import numbers
import time
import warnings
import weakref
from dataclasses import dataclass, field

import numpy as np
from scipy import stats
from scipy.optimize import least_squares, nnls

from ._rng import check_random_state
from ._validation import TheoremPreconditionWarning, check_choice, check_int, check_real
from .dictlearn import _check_samples, recover
from .graph import Graph
from .matrices import MatrixBank
from .sketch import sketch_batch
from .theory import depth_constant

__all__ = [
    "TeacherModule", "Teacher", "TeacherSamples", "make_teacher", "teacher_samples", "sketch_map",
    "LearnedMatrix", "LearnedModule", "LearnedObject", "LearnedNetwork", "learn_from_sketches",
    "LEARN_DEFAULTS", "identity_snr", "required_snr", "detection_floor", "SketchMap",
]

LEARN_DEFAULTS = {
    "hypercube_tol": 0.9,
    "count_frac": 0.5,
    "hamming_tol": 1,
    "levels": 1,
    "beta": 0.05,
    "max_attr_dim": 64,
    "max_fan_in": 4,
    "fit": "normalized",
    "ridge": 1e-3,
    "select_gain": 0.2,
    "fit_tol": 0.1,
    "complete_tol": 0.9,
    "n_folds": 5,
}
"""Defaults of :func:`learn_from_sketches` (justified in its docstring)."""

_EPS = 1e-9


def _unit_rows(X):
    X = np.asarray(X, dtype=np.float64)
    n = np.linalg.norm(X, axis=-1, keepdims=True)
    return X / np.where(n > 0, n, 1.0)


def _check_real(name, value, lo=None, hi=None, lo_open=False, hi_open=False):
    return check_real(name, value, lo, hi, low_open=lo_open, high_open=hi_open)


# ============================================================================ theory helpers
def identity_snr(coefficient, sketch_norm, block_prob):
    """Single-sample SNR r = ω / (‖s‖·√q) of a column carried with coefficient ω.

    A nonzero block of column j of a D(b, q, d) matrix holds entries ±ω/√(dq); the rest of the
    sketch puts about ‖s‖/√d on every entry, so r = signal/noise per entry. For an attribute
    coordinate through the identity branch, ω = c_h·W_θ·x_j (THEORY.md §2.1).
    """
    return np.asarray(coefficient, dtype=float) / (np.asarray(sketch_norm, dtype=float) * math.sqrt(block_prob))


def required_snr(block_size, hypercube_tol, pass_prob=0.1):
    """SNR r at which a block passes the hypercube screen with probability ``pass_prob``.

    Gaussian noise of per-entry size 1/r around ±1: every one of the b entries must stay within τ
    of ±1 after ℓ1 normalisation, so P(|N| ≤ τ r)^b = pass_prob, r = Φ⁻¹((1 + pass_prob^{1/b})/2)/τ.
    A column has ≈ q·d/b blocks and needs count_frac of them; the per-block noise differs by ±25%
    between blocks and is almost the same in every sample (it is the other words of the same
    objects), so a column is certified once its quietest blocks pass. Calibration (6 teachers at
    d = 51072, b = 57, q·d/b = 6, τ = 0.9): certified coefficients had r ≥ 1.8, 5% quantile
    2.2–2.7, which the default pass_prob = 0.1 (r ≈ 2.3 for b = 57, τ = 0.9; 6.9 for τ = 0.3)
    summarises. The boundary is soft: read the floor as ±25%.
    """
    p1 = pass_prob ** (1.0 / block_size)
    return float(stats.norm.ppf(0.5 * (1.0 + p1)) / hypercube_tol)


def detection_floor(sketch_norm, block_prob, block_size, hypercube_tol):
    """Smallest coefficient ω a column needs to be certified (:func:`required_snr`), x_j = 1."""
    return required_snr(block_size, hypercube_tol) * float(sketch_norm) * math.sqrt(block_prob)


# ============================================================================ the teacher
@dataclass
class TeacherModule:
    """The known function of one module: x = N(relu(A z + c) + 10⁻⁹) (``relu``) or x = N(A z)
    with A ≥ 0 (``linear``), z the concatenated attributes of the inputs in order, N the ℓ2
    normalisation (outputs nonnegative and unit ℓ2)."""

    name: str
    kind: str
    A: np.ndarray
    c: np.ndarray

    def __call__(self, z):
        z = np.atleast_2d(np.asarray(z, dtype=np.float64))
        if z.shape[1] != self.A.shape[1]:
            raise ValueError(f"inputs of module {self.name!r} must have {self.A.shape[1]} columns; got {z.shape[1]}")
        g = z @ self.A.T + self.c
        if self.kind == "relu":
            g = np.maximum(g, 0.0) + _EPS
        return _unit_rows(g)


@dataclass
class Teacher:
    """A teacher network with a fixed tree (:func:`make_teacher`).

    Attributes
    ----------
    graph : Graph
        The structure (ids, modules, weights); its attributes are placeholders.
    modules : dict
        Object id → :class:`TeacherModule` for every internal object.
    inputs_of : dict
        Object id → ordered ids of its inputs (tuple positions 1, 2, …).
    leaves : tuple
        Leaf ids in network-input order: leaf i reads ``inputs[:, input_slices[i]]``.
    top : tuple
        Ids of the objects feeding the output pseudo-object.
    order : tuple
        Internal ids, children before parents.
    """

    graph: Graph
    modules: dict
    inputs_of: dict
    leaves: tuple
    top: tuple
    order: tuple
    input_dims: tuple
    kind: str
    leaf_module: str = "leaf"

    @property
    def input_dim(self):
        return int(sum(self.input_dims))

    @property
    def input_slices(self):
        edges = np.concatenate([[0], np.cumsum(self.input_dims)]).astype(int)
        return [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]

    @property
    def output_weights(self):
        return self.graph.output[1].copy()

    def depth(self, oid):
        return self.graph.depth(oid)

    def weight(self, oid):
        return self.graph.weight(oid)

    def module_name(self, oid):
        return self.graph.module(oid)

    def attr_dim(self, oid):
        return len(self.graph.attributes[self.graph.index[oid]])

    def sample_inputs(self, n, random_state=None):
        """``n`` random network inputs: every leaf slice is N(relu(g) + 10⁻⁹), g ~ N(0, I)
        (nonnegative, unit ℓ2, about half its coordinates ≈ 0)."""
        n = check_int("n", n, minimum=1)
        rng = check_random_state(random_state)
        parts = [_unit_rows(np.maximum(rng.standard_normal((n, L)), 0.0) + _EPS) for L in self.input_dims]
        return np.concatenate(parts, axis=1)

    def forward(self, inputs):
        """Every object's attributes for network inputs of shape ``(n, input_dim)``: dict id → (n, L)."""
        U = np.asarray(inputs, dtype=np.float64)
        if U.ndim != 2 or U.shape[1] != self.input_dim:
            raise ValueError(f"inputs must have shape (n, {self.input_dim}); got {U.shape}")
        attrs = {oid: _unit_rows(np.maximum(U[:, s], 0.0) + _EPS) for oid, s in zip(self.leaves, self.input_slices)}
        for oid in self.order:
            z = np.concatenate([attrs[c] for c in self.inputs_of[oid]], axis=1)
            attrs[oid] = self.modules[oid](z)
        return attrs

    def outputs(self, attrs):
        """Network output: the output pseudo-object's weighted sum Σ_t W_t x_t of the top objects'
        attributes (zero-padded to the longest), so with ≥ 2 top objects the individual top
        attributes are not in the output."""
        L = max(attrs[t].shape[1] for t in self.top)
        n = attrs[self.top[0]].shape[0]
        y = np.zeros((n, L))
        for t, w in zip(self.top, self.output_weights):
            y[:, :attrs[t].shape[1]] += w * attrs[t]
        return y

    def describe(self):
        lines = [f"teacher: {len(self.graph)} objects, {len(self.order)} internal modules ({self.kind}), "
                 f"{len(self.leaves)} leaves reading {self.input_dim} input coordinates"]
        for oid in self.graph.ids:
            ins = self.inputs_of.get(oid, ())
            lines.append(f"  {oid}: module {self.module_name(oid)!r}, depth {self.depth(oid)}, "
                         f"W = {self.weight(oid):.3g}, L = {self.attr_dim(oid)}"
                         + (f", inputs {list(ins)}" if ins else ", leaf"))
        return "\n".join(lines)


def make_teacher(depth=2, n_top=1, fan_in=2, attr_dim=2, leaf_dim=None, kind="linear", top_weights=None,
                 random_state=None):
    """A teacher modular network with a fixed tree.

    Parameters
    ----------
    depth : int ≥ 2
        Object levels: top objects at depth 2 (the output pseudo-object has depth 1), leaves at
        depth ``depth + 1``.
    n_top : int ≥ 1
        Objects feeding the output.
    fan_in : int ≥ 1
        Inputs of every internal object (weights 1/fan_in each).
    attr_dim : int ≥ 1
        Attribute length L of every internal object.
    leaf_dim : int ≥ 1, optional
        Length of each leaf's slice of the network input (default ``attr_dim``).
    kind : {"linear", "relu"}
        Module family (:class:`TeacherModule`): ``linear`` has A = U(0,1)⁴ entrywise with rows
        scaled to unit ℓ1 and c = 0 (nonnegative; skewed and balanced so that every output
        coordinate dominates for some inputs — a coordinate that never exceeds ≈ 0.9 cannot be
        certified at d ≈ 5·10⁴, see the module docstring); ``relu`` has A ~ N(0, 2.25/p),
        c ~ U(0, 0.2) (outputs often one-hot, but the family is harder to fit: ≈ 0.02–0.2
        error from 120 exact pairs).
    top_weights : sequence of n_top nonnegative numbers summing to ≤ 1, optional
        Output weights W_t (default: 1 for a single top object, otherwise proportional to
        n_top, n_top − 1, …, 1 so that the top objects have distinct weights).
    random_state : int, Generator or None

    Returns
    -------
    Teacher
        Internal object ids are index paths (``t0``, ``t0.1``, …), each with its own module
        ``M<id>``; the leaves share the read-in module ``leaf``.
    """
    depth = check_int("depth", depth, minimum=2)
    n_top = check_int("n_top", n_top, minimum=1)
    fan_in = check_int("fan_in", fan_in, minimum=1)
    attr_dim = check_int("attr_dim", attr_dim, minimum=1)
    leaf_dim = attr_dim if leaf_dim is None else check_int("leaf_dim", leaf_dim, minimum=1)
    kind = check_choice("kind", kind, ("linear", "relu"))
    if top_weights is None:
        tw = np.array([1.0]) if n_top == 1 else np.arange(n_top, 0, -1, dtype=float) / (n_top * (n_top + 1) / 2)
    else:
        tw = np.asarray(top_weights, dtype=np.float64)
        if tw.shape != (n_top,):
            raise ValueError(f"top_weights must have n_top={n_top} entries; got shape {tw.shape}")
        if not np.all(np.isfinite(tw)) or np.any(tw <= 0) or tw.sum() > 1 + 1e-9:
            raise ValueError(f"top_weights must be positive and sum to at most 1; got {tw.tolist()}")
    rng = check_random_state(random_state)
    objects, modules, inputs_of, leaves, order = [], {}, {}, [], []

    def build(oid, level):
        if level == depth:                                      # leaf
            leaves.append(oid)
            objects.append({"id": oid, "module": "leaf", "attributes": [1.0] + [0.0] * (leaf_dim - 1)})
            return leaf_dim
        kids = [f"{oid}.{k}" for k in range(fan_in)]
        p = sum(build(c, level + 1) for c in kids)
        if kind == "linear":
            A = rng.uniform(0.0, 1.0, (attr_dim, p)) ** 4
            A, c = A / A.sum(axis=1, keepdims=True), np.zeros(attr_dim)
        else:
            A, c = rng.standard_normal((attr_dim, p)) * 1.5 / math.sqrt(p), rng.uniform(0.0, 0.2, attr_dim)
        modules[oid] = TeacherModule(f"M{oid}", kind, A, c)
        inputs_of[oid] = tuple(kids)
        order.append(oid)
        objects.append({"id": oid, "module": f"M{oid}", "attributes": [1.0] + [0.0] * (attr_dim - 1),
                        "inputs": [{"id": c, "weight": 1.0 / fan_in} for c in kids]})
        return attr_dim

    top = [f"t{i}" for i in range(n_top)]
    for t in top:
        build(t, 1)
    graph = Graph(objects, [{"id": t, "weight": float(w)} for t, w in zip(top, tw)])
    return Teacher(graph=graph, modules=modules, inputs_of=inputs_of, leaves=tuple(leaves), top=tuple(top),
                   order=tuple(order), input_dims=tuple([leaf_dim] * len(leaves)), kind=kind)


@dataclass
class TeacherSamples:
    """(input, output, overall sketch) triples, plus the hidden attributes (for evaluation only)."""

    inputs: np.ndarray        # (n, input_dim)
    outputs: np.ndarray       # (n, L_out)
    sketches: np.ndarray      # (n, d)
    attributes: dict          # object id -> (n, L)

    def __len__(self):
        return int(self.inputs.shape[0])


@dataclass
class SketchMap:
    """The teacher's sketch as an affine map s = s0 + Σ_θ A_θ x_θ (:func:`sketch_map`)."""

    s0: np.ndarray            # (d,)
    maps: dict                # object id -> (d, L_θ)

    @property
    def d_sketch(self):
        return int(self.s0.shape[0])

    def __call__(self, attrs):
        n = next(iter(attrs.values())).shape[0]
        S = np.repeat(self.s0[None, :], n, axis=0)
        for oid, A in self.maps.items():
            S += attrs[oid] @ A.T
        return S


_MAP_CACHE = weakref.WeakKeyDictionary()     # bank -> {id(teacher): (teacher, SketchMap)}


def sketch_map(teacher, bank):
    """The sketch of the teacher's fixed tree as an exact affine map of its attributes.

    With fixed weights every factor of the mechanism is linear, so s = s_0 + Σ_θ A_θ x_θ
    (THEORY.md §2.1: every word is linear in x_θ or in e_1). The map is read off
    :func:`sketchsim.sketch_batch` itself on one batch of basis configurations:
    B = s(all x = e_0); D_θj = s(x_θ = e_j) − B = A_θ(e_j − e_0) for j ≥ 1; and
    s(x_θ = (e_0 + e_1)/√2) − B = D_θ1/√2 + (√2 − 1)·A_θ e_0 gives A_θ e_0 (attributes must stay unit
    vectors, so e_0 cannot simply be switched off). Objects with L = 1 have x = [1] always and go
    into s_0. Agrees with direct sketching to rounding (≈ 10⁻¹⁵ relative, tests/test_learn.py).

    Returns
    -------
    SketchMap
    """
    if not isinstance(teacher, Teacher):
        raise ValueError(f"teacher must be a Teacher from make_teacher; got {type(teacher).__name__}")
    if not isinstance(bank, MatrixBank):
        raise ValueError(f"bank must be a sketchsim.MatrixBank; got {type(bank).__name__}")
    g = teacher.graph
    base = {oid: np.eye(len(g.attributes[i]))[0] for i, oid in enumerate(g.ids)}
    rows = [dict(base)]
    plan = []
    for oid in g.ids:
        L = len(base[oid])
        for j in range(1, L):
            r = dict(base)
            r[oid] = np.eye(L)[j]
            plan.append((oid, j, len(rows)))
            rows.append(r)
        if L >= 2:
            r = dict(base)
            r[oid] = (np.eye(L)[0] + np.eye(L)[1]) / math.sqrt(2.0)
            plan.append((oid, -1, len(rows)))
            rows.append(r)
    attrs = {oid: np.stack([r[oid] for r in rows]) for oid in g.ids}
    S = np.empty((len(rows), bank.d_sketch))
    for a in range(0, len(rows), 16):
        S[a:a + 16] = sketch_batch(g, bank, {k: v[a:a + 16] for k, v in attrs.items()})
    B = S[0]
    maps = {oid: np.zeros((bank.d_sketch, len(base[oid]))) for oid in g.ids}
    for oid, j, k in plan:
        if j > 0:
            maps[oid][:, j] = S[k] - B                       # D_θj = A_θ(e_j − e_0)
    s0 = B.copy()
    for oid, j, k in plan:
        if j == -1:
            a0 = (S[k] - B - maps[oid][:, 1] / math.sqrt(2.0)) / (math.sqrt(2.0) - 1.0)
            maps[oid][:, 1:] += a0[:, None]                  # A_θ e_j = D_θj + A_θ e_0
            maps[oid][:, 0] = a0
            s0 -= a0
    return SketchMap(s0=s0, maps=maps)


def teacher_samples(teacher, n, bank, random_state=None, method="affine", chunk=16):
    """Draw ``n`` random network inputs and return their (input, output, sketch) triples.

    ``bank`` is the :class:`~sketchsim.MatrixBank` (unknown to the learner) or a
    :class:`SketchMap` built from it. ``method="direct"`` runs :func:`sketchsim.sketch_batch` on
    every input (``chunk`` at a time; needs a bank); ``"affine"`` (default) evaluates the exact
    affine map of :func:`sketch_map` (built once per (bank, teacher) and cached, so the cost no
    longer grows with ``n``); both agree to rounding (tests/test_learn.py).
    """
    if not isinstance(teacher, Teacher):
        raise ValueError(f"teacher must be a Teacher from make_teacher; got {type(teacher).__name__}")
    if not isinstance(bank, (MatrixBank, SketchMap)):
        raise ValueError(f"bank must be a sketchsim.MatrixBank or a SketchMap; got {type(bank).__name__}")
    n = check_int("n", n, minimum=1)
    method = check_choice("method", method, ("affine", "direct"))
    chunk = check_int("chunk", chunk, minimum=1)
    if method == "direct" and not isinstance(bank, MatrixBank):
        raise ValueError("method 'direct' needs bank to be a MatrixBank; got a SketchMap")
    U = teacher.sample_inputs(n, random_state)
    attrs = teacher.forward(U)
    if isinstance(bank, SketchMap):
        S = bank(attrs)
    elif method == "affine":
        per_bank = _MAP_CACHE.setdefault(bank, {})
        cached = per_bank.get(id(teacher))
        if cached is None or cached[0] is not teacher:
            cached = per_bank[id(teacher)] = (teacher, sketch_map(teacher, bank))
        S = cached[1](attrs)
    else:
        S = np.empty((n, bank.d_sketch))
        for a in range(0, n, chunk):
            z = min(n, a + chunk)
            S[a:z] = sketch_batch(teacher.graph, bank, {k: v[a:z] for k, v in attrs.items()})
    return TeacherSamples(inputs=U, outputs=teacher.outputs(attrs), sketches=S, attributes=attrs)


# ============================================================================ learned objects
@dataclass(frozen=True)
class LearnedMatrix:
    """One recovered matrix (a dictionary label) and its type.

    ``kind`` is ``"R_{M,1}"`` (attribute matrix), ``"R_{M,2}"`` (counting matrix) or
    ``"unknown"``; ``object`` names the learned object it belongs to (or None).
    """

    label: int
    kind: str
    columns: tuple
    n_certified: int
    certified_fraction: float
    positive_fraction: float
    object: str | None
    note: str


@dataclass
class LearnedModule:
    """A fitted module x ≈ N(relu(B [z; 1]) + 10⁻⁹) on the concatenated inputs z."""

    inputs: tuple             # candidate names, in the order of z
    input_dims: tuple
    B: np.ndarray             # (L_out, p + 1)
    fit: str
    train_error: float        # median relative ℓ2 error on the training pairs
    cv_error: float           # median relative ℓ2 error, held-out folds (selection criterion)

    def predict(self, z):
        z = np.atleast_2d(np.asarray(z, dtype=np.float64))
        if z.shape[1] != self.B.shape[1] - 1:
            raise ValueError(f"z must have {self.B.shape[1] - 1} columns (inputs {list(self.inputs)}); got {z.shape[1]}")
        return _predict(self.B, z)


@dataclass
class LearnedObject:
    """An object recovered from the sketches (one R_{M,1} label; one object per module in a fixed
    tree with unique modules, the weighted sum of the module's objects otherwise)."""

    name: str
    attr_label: int
    count_label: int | None
    columns: tuple            # attribute coordinates whose column was recovered
    attr_dim: int             # max(columns) + 1
    missing: tuple            # coordinates < attr_dim never recovered (decoded as 0)
    certified_fraction: float
    omega: float              # median identity coefficient c_h·W (‖decoded coefficient vector‖)
    omega_count: float        # the paired R_{M,2} coefficient (same quantity), NaN if unpaired
    output_weight: float      # W from the outputs (NaN if not estimated)
    depth_estimate: float     # (3 − log2(ω/W))/4 (NaN if not estimated)
    identified: bool
    attributes: np.ndarray    # (S, attr_dim) decoded unit attributes of every sample
    completeness: float = float("nan")   # median ‖c_hW x̂‖ / (R_{M,2} coefficient): ≈ 1 when complete
    decode_error: float = float("nan")   # estimated relative ℓ2 error of x̂ (spread of per-block estimates)
    module: LearnedModule | None = None
    learned: bool = False
    reason: str = ""


def _predict(B, z):
    G = z @ B[:, :-1].T + B[:, -1]
    return _unit_rows(np.maximum(G, 0.0) + _EPS)


def _rel_err(P, X):
    return np.linalg.norm(P - X, axis=1) / np.maximum(np.linalg.norm(X, axis=1), _EPS)


def _fit_ridge(Z, X, ridge):
    Z1 = np.hstack([Z, np.ones((Z.shape[0], 1))])
    B = np.linalg.solve(Z1.T @ Z1 + ridge * np.eye(Z1.shape[1]), Z1.T @ X).T
    return B


def _fit_normalized(Z, X, ridge):
    """Least squares of the normalised-linear model: min_B Σ_k ‖N(B z̃_k) − x_k‖² with ‖B‖_F = 1
    (the model is scale invariant), started from the ridge solution (Levenberg–Marquardt)."""
    B0 = _fit_ridge(Z, X, ridge)
    nb = np.linalg.norm(B0)
    if not np.isfinite(nb) or nb == 0:
        return B0
    B0 = B0 / nb
    Z1 = np.hstack([Z, np.ones((Z.shape[0], 1))])

    def resid(v):
        B = v.reshape(B0.shape)
        G = Z1 @ B.T
        nr = np.linalg.norm(G, axis=1, keepdims=True)
        return np.concatenate([(G / np.maximum(nr, _EPS) - X).ravel(), [np.sum(B * B) - 1.0]])

    def jac(v):
        # d/dB of G_k/‖G_k‖ with G_k = B z̃_k: (I − u_k u_kᵀ)/‖G_k‖ ⊗ z̃_kᵀ
        B = v.reshape(B0.shape)
        G = Z1 @ B.T
        nr = np.maximum(np.linalg.norm(G, axis=1), _EPS)
        u = G / nr[:, None]
        L = B.shape[0]
        P = (np.eye(L)[None, :, :] - u[:, :, None] * u[:, None, :]) / nr[:, None, None]
        J = (P[:, :, :, None] * Z1[:, None, None, :]).reshape(Z1.shape[0] * L, B.size)
        return np.vstack([J, 2.0 * v[None, :]])

    if Z1.shape[0] * X.shape[1] + 1 < B0.size:
        return B0
    sol = least_squares(resid, B0.ravel(), jac=jac, method="lm", max_nfev=100 * (B0.size + 1))
    B = sol.x.reshape(B0.shape)
    return B if np.all(np.isfinite(B)) else B0


def _fit(Z, X, how, ridge):
    return _fit_normalized(Z, X, ridge) if how == "normalized" else _fit_ridge(Z, X, ridge)


def _cv_error(Z, X, how, ridge, n_folds):
    n = Z.shape[0]
    folds = np.arange(n) % n_folds
    errs = np.empty(n)
    for f in range(n_folds):
        te = folds == f
        if not te.any():
            continue
        B = _fit(Z[~te], X[~te], how, ridge)
        errs[te] = _rel_err(_predict(B, Z[te]), X[te])
    return float(np.median(errs))


def _select_inputs(pool, X, fit, ridge, n_folds, max_fan_in, select_gain, slack=2e-3, max_subsets=2000,
                   n_exact=12):
    """Choose a module's inputs among the candidates ``pool`` (name → (S, L) attributes).

    Every subset of up to ``max_fan_in`` candidates (when there are at most ``max_subsets``) is
    scored by the cross-validated error of the real ``fit`` (when a size has more than ``n_exact``
    subsets, only the ``n_exact`` best by a ridge fit's CV error are; ridge on normalised targets
    ranks poorly, measured: it preferred a wrong pair, 0.055 against 0.059, whose real fit error
    was 0.065 against 0.0007); the smallest size whose error is within a factor
    1/(1 − ``select_gain``) (or ``slack`` absolute) of the best size wins, provided the best beats the constant
    predictor by the fraction ``select_gain`` (else no input is chosen). Exhaustive rather than greedy because
    of the normalisation: one input alone may explain almost nothing while two explain everything
    (measured: 0.086 → 0.088 and 0.071 with one input, 7·10⁻⁵ with both). The absolute
    ``slack`` (the caller passes half the object's estimated decode error, at least 2·10⁻³) keeps
    a superset that only fits the decode noise from winning: the decoded attributes carry a
    systematic error from the other objects' words, which depends on *their* inputs. It must stay
    well below the error of a set that misses a true input (measured: 0.031 with one of two true
    inputs against 0.004 with both, at an estimated decode error of 0.024, which overstates the
    actual 0.004 — the estimate treats the blocks as independent).
    """
    from itertools import combinations

    S, L = X.shape
    names = list(pool)
    budget = (S - S // n_folds) * L
    fits = lambda sub: L * (sum(pool[c].shape[1] for c in sub) + 1) <= budget  # noqa: E731
    n_sub = sum(math.comb(len(names), k) for k in range(1, min(max_fan_in, len(names)) + 1))
    best_of_size, errs = {}, {}
    if n_sub <= max_subsets:
        for k in range(1, min(max_fan_in, len(names)) + 1):
            subs = [sub for sub in combinations(names, k) if fits(sub)]
            if not subs:
                continue
            if len(subs) > n_exact:         # prefilter by the cheap ridge CV
                scored = []
                for sub in subs:
                    Z = np.concatenate([pool[c] for c in sub], axis=1)
                    scored.append((_cv_error(Z, X, "ridge", ridge, n_folds), sub))
                subs = [sub for _, sub in sorted(scored)[:n_exact]]
            scored = []
            for sub in subs:
                Z = np.concatenate([pool[c] for c in sub], axis=1)
                scored.append((_cv_error(Z, X, fit, ridge, n_folds), sub))
            e, sub = min(scored)
            best_of_size[k], errs[k] = list(sub), e
    else:                                   # greedy by the real fit
        chosen = []
        for k in range(1, min(max_fan_in, len(names)) + 1):
            scored = []
            for c in names:
                if c not in chosen and fits(chosen + [c]):
                    Z = np.concatenate([pool[x] for x in chosen + [c]], axis=1)
                    scored.append((_cv_error(Z, X, fit, ridge, n_folds), c))
            if not scored:
                break
            e, c = min(scored)
            chosen = chosen + [c]
            best_of_size[k], errs[k] = list(chosen), e
    e0 = float(np.median(_rel_err(np.repeat(_unit_rows(X.mean(axis=0, keepdims=True)), S, axis=0), X)))
    if not errs or min(errs.values()) > (1.0 - select_gain) * e0:
        return []
    e_min = min(errs.values())
    ok = max(e_min / (1.0 - select_gain), e_min + slack)
    return best_of_size[min(k for k, e in errs.items() if e <= ok)]


# ============================================================================ the learned network
@dataclass
class LearnedNetwork:
    """Output of :func:`learn_from_sketches`. ``report()`` states what was learned and what not."""

    dictionary: object                 # sketchsim.dictlearn.DictionaryResult
    matrices: list                     # LearnedMatrix per label
    objects: list                      # LearnedObject per R_{M,1}
    input_dims: tuple
    params: dict
    n_samples: int
    d: int
    sketch_norm: float                 # median ‖s‖
    floor: float                       # detection floor ω_min (x_j = 1)
    output_fit_residual: float         # relative residual of outputs ≈ Σ W x̂ (NaN if not fitted)
    timings: dict = field(default_factory=dict)

    @property
    def input_names(self):
        return tuple(f"in{i}" for i in range(len(self.input_dims)))

    @property
    def identified(self):
        return [o for o in self.objects if o.identified]

    @property
    def learned_modules(self):
        return {o.name: o.module for o in self.objects if o.learned}

    def object(self, name):
        for o in self.objects:
            if o.name == name:
                return o
        raise ValueError(f"name must be a learned object ({[o.name for o in self.objects]}); got {name!r}")

    def predict(self, inputs):
        """Attributes of every fitted object for new network inputs ``(n, input_dim)``, computed
        through the learned modules (inputs first, then lighter objects): dict name → (n, L)."""
        U = np.asarray(inputs, dtype=np.float64)
        if U.ndim != 2 or U.shape[1] != sum(self.input_dims):
            raise ValueError(f"inputs must have shape (n, {sum(self.input_dims)}); got {U.shape}")
        edges = np.concatenate([[0], np.cumsum(self.input_dims)]).astype(int)
        vals = {nm: U[:, a:b] for nm, a, b in zip(self.input_names, edges[:-1], edges[1:])}
        todo = [o for o in sorted(self.objects, key=lambda o: o.omega) if o.module is not None]
        out = {}
        for o in todo:                      # lighter objects first: every input is ready
            z = np.concatenate([vals[c] if c in vals else out[c] for c in o.module.inputs], axis=1)
            out[o.name] = vals[o.name] = o.module.predict(z)
        return out

    def summary(self):
        """Scalar summary (counts and errors) for tables."""
        kinds = [m.kind for m in self.matrices]
        return {
            "n_matrices": len(self.matrices),
            "n_attr_matrices": kinds.count("R_{M,1}"),
            "n_count_matrices": kinds.count("R_{M,2}"),
            "n_unknown_matrices": kinds.count("unknown"),
            "n_objects": len(self.objects),
            "n_identified": len(self.identified),
            "n_learned": len(self.learned_modules),
            "sketch_norm": self.sketch_norm,
            "floor": self.floor,
        }

    def report(self):
        """Plain-text account: matrices and their types, identified objects, fitted modules, and
        what could not be learned, with the reason."""
        p = self.params
        dl = self.dictionary
        lines = [f"Learned from {self.n_samples} (input, output, sketch) triples, d = {self.d}, "
                 f"b = {p['block_size']}, q = {p['block_prob']:.4g} (q·d/b = "
                 f"{p['block_prob'] * self.d / p['block_size']:.3g}); screen τ = {p['hypercube_tol']}, "
                 f"count ≥ {dl.count_threshold:.3g} blocks."]
        lines.append(f"Median ‖s‖ = {self.sketch_norm:.3g}; detection floor ω_min = r*·‖s‖·√q = {self.floor:.3g} "
                     f"(r* = {required_snr(p['block_size'], p['hypercube_tol']):.2f}): a column carried with "
                     "coefficient c_h·W·x_j below it is not certified in any sample.")
        for h in (2, 3, 4):
            need = self.floor / depth_constant(h)
            lines.append(f"  depth {h} (c_h = 1/{int(round(1 / depth_constant(h)))}): visible only if W·x_j ≳ "
                         f"{need:.3g}" + ("  → impossible (W ≤ 1)" if need > 1 else ""))
        lines.append("")
        lines.append(f"Matrices recovered: {len(self.matrices)} "
                     f"({self.summary()['n_attr_matrices']} typed R_{{M,1}}, {self.summary()['n_count_matrices']} "
                     f"typed R_{{M,2}}, {self.summary()['n_unknown_matrices']} unknown).")
        for m in self.matrices:
            cols = list(m.columns[:8]) + (["…"] if len(m.columns) > 8 else [])
            lines.append(f"  label {m.label}: {m.kind}, columns {cols}, certified in {m.n_certified} samples "
                         f"({m.certified_fraction:.0%})" + (f", object {m.object}" if m.object else "")
                         + (f" — {m.note}" if m.note else ""))
        lines.append("  Not recovered, by construction: the tuple matrices R_i and every R_{M,0}. They multiply "
                     "dense subsketches (every coordinate ≈ ‖u‖/√d), so no column dominates a block at any d; "
                     f"recursion levels ≥ 2 certify nothing (levels run: {p['levels']}, certified per level: "
                     f"{[lv.n_certified for lv in dl.levels]}).")
        lines.append("")
        lines.append(f"Objects (one per R_{{M,1}}; identified when certified in ≥ β = {p['beta']:.3g} of samples):")
        if not self.objects:
            lines.append("  none: no attribute matrix was certified (every object is below the detection floor).")
        for o in self.objects:
            extra = ""
            if np.isfinite(o.output_weight):
                extra = f", W ≈ {o.output_weight:.3g} from the outputs, depth ≈ {o.depth_estimate:.2f}"
            lines.append(f"  {o.name}: L̂ = {o.attr_dim} (columns {list(o.columns)}"
                         + (f", missing {list(o.missing)}" if o.missing else "")
                         + f"), certified in {o.certified_fraction:.0%} of samples, decode error ≈ {o.decode_error:.2g}, "
                         + f"ω = c_h·W ≈ {o.omega:.4g}"
                         + (f" (R_{{M,2}}: {o.omega_count:.4g}, completeness {o.completeness:.2f})"
                            if np.isfinite(o.omega_count) else " (no R_{M,2} paired: completeness unchecked)")
                         + extra + ("" if o.identified else "  — NOT identified (below β)"))
        if np.isfinite(self.output_fit_residual):
            lines.append(f"  outputs ≈ Σ W·x̂ over identified objects: relative residual {self.output_fit_residual:.3g}")
        lines.append("")
        lines.append("Modules:")
        if not any(o.identified for o in self.objects):
            lines.append("  none learned: no object identified.")
        for o in self.objects:
            if not o.identified:
                continue
            if o.learned:
                m = o.module
                lines.append(f"  LEARNED {o.name} = N(A·[{', '.join(m.inputs)}] + c) ({m.fit}): training error "
                             f"{m.train_error:.3g}, cross-validated {m.cv_error:.3g}")
                if all(c in self.input_names for c in m.inputs):
                    lines.append("    (a map from network-input groups: if the true inputs of this object are deeper "
                                 "objects below the floor, this is the composite of the unseen modules under it)")
            else:
                lines.append(f"  NOT learned {o.name}: {o.reason}")
        lines.append("  Not learnable here: every module whose output object or one of whose input objects lies "
                     "below the detection floor (in practice every object at depth ≥ 3, and so every module "
                     "above depth-3 objects).")
        return "\n".join(lines)

    def __repr__(self):
        s = self.summary()
        return (f"LearnedNetwork(n_samples={self.n_samples}, d={self.d}, matrices={s['n_matrices']}, "
                f"identified={s['n_identified']}, learned={s['n_learned']})")


# ============================================================================ the learner
# Named thresholds of the learner's steps (THEORY.md §7; the user-facing ones are LEARN_DEFAULTS).
ATTR_KIND, COUNT_KIND, UNKNOWN_KIND = "R_{M,1}", "R_{M,2}", "unknown"

POSITIVE_FRAC_MIN = 0.95
"""Step 2: a label is an R_{M,1} or R_{M,2} only when ≥ 95% of its certified coefficients are
positive (their true coefficients c_h·W·x_j and c_h·W are ≥ 0; the 5% allow a decoded coefficient
near 0 to flip)."""
MIN_SHARED_FRAC = 0.25
"""Steps 3b/3c compare two labels on the samples where both decoded coefficients are positive,
and only when there are at least max(:data:`MIN_SHARED`, ⌊S·MIN_SHARED_FRAC⌋) of them."""
MIN_SHARED = 2
PAIR_MAX_LOG_RATIO = math.log(2.0)
"""Step 3b: an R_{M,1} pairs with an R_{M,2} only when the median |log(‖c_hW x̂‖ / a_{e_1})| over
the shared samples is ≤ log 2 (the two are the same c_h·W for unit attributes; an unseen
coordinate lowers the first by at most the complete_tol test's margin)."""
PAIR_AMBIGUITY_GAP = 0.05
"""Step 3b: a pairing is noted "ambiguous" when a competing pairing of either label scores within
0.05 (in median |log ratio|) of it."""
DOMINATION_SLACK = 1.05
"""Step 3c: a column-0-only label is "below" another in a sample when its coefficient is ≤ 1.05×
the other's (c_h·W·x_0 ≤ c_h·W, plus the decode noise)."""
DOMINATION_FRAC = 0.9
"""Step 3c: … in ≥ 90% of the shared samples."""
DOMINATED_RATIO_RANGE = (0.3, 0.98)
"""Step 3c: the median ratio c_h·W·x_0 / (c_h·W) = median x_0 must lie in [0.3, 0.98]: an x_0 that
is always ≈ 1 is indistinguishable from an R_{M,2}, and one below 0.3 is rarely certified."""
SPREAD_OVER_NOISE = 4.0
"""Step 3c: the ratio's interquartile range must be ≥ 4× the decode noise of the ratio (x_0 varies
across samples; the ratio of two R_{M,2} coefficients is the constant W/W′)."""
WEIGHT_MIN = 1e-3
"""Step 4: the depth h = (3 − log2(ω/W))/4 is estimated only for output weights W > 10⁻³."""
CHILD_OMEGA_RATIO = 1.0 / 16.0
"""Step 5: a child's identity coefficient is at most 1/16 of its parent's (c_{h+1} = c_h/16 and
W_child ≤ W_parent), so only identified objects with ω ≤ CHILD_OMEGA_RATIO·OMEGA_TOL·ω_parent are
candidate inputs."""
OMEGA_TOL = 1.25
"""Step 5: margin on the ω ratio for the estimation error of the two ω (each ≈ the decode error,
2–4%, of a median over samples): a child with W_child = W_parent (fan-in 1) sits exactly at 1/16."""
SLACK_MIN = 2e-3
"""Step 5: absolute slack of the input selection (:func:`_select_inputs`): max(SLACK_MIN,
SLACK_DECODE_FRAC·decode error of the object)."""
SLACK_DECODE_FRAC = 0.5


def _min_shared(S):
    """Least number of shared samples for a comparison of two labels (steps 3b, 3c)."""
    return max(MIN_SHARED, int(S * MIN_SHARED_FRAC))


@dataclass
class _LabelType:
    """Step 2's verdict on one recovered matrix label (mutable: step 3c may retype it)."""

    label: int
    kind: str
    columns: tuple
    n_certified: int
    positive_fraction: float
    note: str


@dataclass
class _Decoded:
    """Step 3: every sample's coefficient on every recovered column of the typed labels.

    ``values[:, k]`` / ``errors[:, k]``: the median per-block estimate and its standard error for
    the column ``keys[k] = (label, j)``.
    """

    values: np.ndarray
    errors: np.ndarray
    keys: list
    columns: dict             # label -> its recovered column indices

    def __post_init__(self):
        self._pos = {key: k for k, key in enumerate(self.keys)}

    def index(self, label, j):
        return self._pos[(label, j)]

    def coef(self, label, j=0):
        return self.values[:, self._pos[(label, j)]]

    def error(self, label, j=0):
        return self.errors[:, self._pos[(label, j)]]

    def raw(self, label):
        """(S, max column + 1) nonnegative decoded coefficients c_h·W·x̂ of an attribute label."""
        jc = self.columns[label]
        R = np.zeros((self.values.shape[0], max(jc) + 1))
        for j in jc:
            R[:, j] = np.maximum(self.coef(label, j), 0.0)
        return R


def _recover_dictionary(Y, block_size, block_prob, hypercube_tol, count_frac, hamming_tol, levels):
    """Step 1 (THEORY.md §7 step 1; paper §4.2): recursable dictionary learning of the unknown
    D(b, q, d) matrices and the coefficients from the overall sketches
    (:func:`sketchsim.dictlearn.recover`; validates b, q, d and the thresholds)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TheoremPreconditionWarning)
        return recover(Y, block_size, block_prob, hypercube_tol=hypercube_tol, count_frac=count_frac,
                       hamming_tol=hamming_tol, levels=levels)


def _type_matrices(res, max_attr_dim):
    """Step 2 (THEORY.md §7 step 2): type every label from the coefficient vectors it multiplies.

    ``res`` holds the level-1 coefficients only. Coefficients positive in fewer than
    :data:`POSITIVE_FRAC_MIN` of the cases → ``unknown``; a column ≥ ``max_attr_dim`` → ``unknown``
    (not a short attribute); column 0 only (≈ c·e_1) → R_{M,2}; otherwise (nonnegative coefficients
    on short vectors: c_h·W·x_θ through the identity branch) → R_{M,1}. Returns [:class:`_LabelType`].
    """
    out = []
    for lab in range(res.n_matrices):
        sel = res.coef_matrix == lab
        cols = tuple(int(j) for j in np.unique(res.coef_column[sel]))
        vals = res.coef_value[sel]
        n_cert = int(np.unique(res.coef_sample[sel]).size)
        pos = float(np.mean(vals > 0)) if vals.size else 0.0
        if pos < POSITIVE_FRAC_MIN:
            kind, note = UNKNOWN_KIND, f"{1 - pos:.0%} negative coefficients: not an attribute or e_1"
        elif max(cols) >= max_attr_dim:
            kind, note = UNKNOWN_KIND, f"column {max(cols)} ≥ max_attr_dim={max_attr_dim}: not a short attribute"
        elif cols == (0,):
            kind, note = COUNT_KIND, "coefficient vectors ≈ c·e_1"
        else:
            kind, note = ATTR_KIND, "nonnegative coefficients on short vectors (attributes)"
        out.append(_LabelType(lab, kind, cols, n_cert, pos, note))
    return out


def _decode_columns(res, Y, types):
    """Step 3 (THEORY.md §7 step 4, "grouped by word"; the Theorem 1(i) decoder with learned
    columns): decode every sample — not only those where a column was certified — through every
    recovered column of the R_{M,1} and R_{M,2} labels (:func:`_decode_column`). Returns
    :class:`_Decoded`."""
    attr = [t for t in types if t.kind == ATTR_KIND]
    count = [t for t in types if t.kind == COUNT_KIND]
    keys, cols = [], []
    for t in attr + count:
        for j in t.columns:
            keys.append((t.label, j))
            cols.append(res.find_column(t.label, j))
    S = Y.shape[0]
    A = np.zeros((S, len(cols)))
    E = np.zeros((S, len(cols)))
    for k, c in enumerate(cols):
        A[:, k], E[:, k] = _decode_column(res, c, Y)
    return _Decoded(values=A, errors=E, keys=keys, columns={t.label: t.columns for t in types})


def _pair_labels(attr_labels, count_labels, dec, S):
    """Step 3b (THEORY.md §7 step 2, pairing): pair each R_{M,1} with the R_{M,2} of the same module.

    For unit attributes ‖c_h·W·x‖ = c_h·W, exactly the R_{M,2} (e_1) coefficient; pairs are
    scored by the median |log ratio| over the shared samples and taken greedily, closest first,
    up to :data:`PAIR_MAX_LOG_RATIO`. Returns (pair {attr label: count label}, notes {count label:
    text}).
    """
    pair, notes = {}, {}
    scores = []
    for lab in attr_labels:
        nrm = np.linalg.norm(dec.raw(lab), axis=1)
        for e in count_labels:
            a_e = dec.coef(e, 0)
            ok = (a_e > 0) & (nrm > 0)
            if ok.sum() < _min_shared(S):
                continue
            scores.append((float(np.median(np.abs(np.log(nrm[ok] / a_e[ok])))), lab, e))
    scores.sort()
    used_e = set()
    for sc, lab, e in scores:
        if lab in pair or e in used_e or sc > PAIR_MAX_LOG_RATIO:
            continue
        rival = any(s2 - sc < PAIR_AMBIGUITY_GAP and (l2 == lab) != (e2 == e) and l2 not in pair
                    and e2 not in used_e for s2, l2, e2 in scores)
        pair[lab] = e
        used_e.add(e)
        notes[e] = f"pairs with m{lab} (median |log ratio| {sc:.2f})" + (" — ambiguous" if rival else "")
    return pair, notes


def _find_column0_attributes(free, dec, S):
    """Step 3c (module docstring, item 2): among the unpaired e_1-like labels ``free``, find each
    R_{M,1} of which only column 0 was certified.

    Its coefficient c_h·W·x_0 stays below the coefficient c_h·W of its module's R_{M,2} (≤
    :data:`DOMINATION_SLACK`× in ≥ :data:`DOMINATION_FRAC` of the shared samples), with a median
    ratio in :data:`DOMINATED_RATIO_RANGE` and a spread ≥ :data:`SPREAD_OVER_NOISE`× the decode noise
    (x_0 varies; two R_{M,2} have the constant ratio W/W′ under fixed weights). Returns
    [(label, partner, dominated fraction, median ratio, relative spread, noise)].
    """
    med = {e: float(np.median(dec.coef(e, 0))) for e in free}
    lo, hi = DOMINATED_RATIO_RANGE
    taken, found = set(), []
    for e in sorted(free, key=lambda e: med[e]):
        if e in taken:
            continue
        a_e = dec.coef(e, 0)
        best = None
        for e2 in free:
            if e2 == e or e2 in taken or med[e2] < med[e]:
                continue
            a2 = dec.coef(e2, 0)
            ok = (a2 > 0) & (a_e > 0)
            if ok.sum() < _min_shared(S):
                continue
            ratio = a_e[ok] / a2[ok]
            dom = float(np.mean(ratio <= DOMINATION_SLACK))
            rm = float(np.median(ratio))
            iqr = float(np.subtract(*np.percentile(ratio, [75, 25])))
            noise = float(np.median(np.hypot(dec.error(e, 0)[ok] / a_e[ok], dec.error(e2, 0)[ok] / a2[ok])))
            if (dom >= DOMINATION_FRAC and lo <= rm <= hi and iqr >= SPREAD_OVER_NOISE * noise * rm
                    and (best is None or rm > best[2])):
                best = (e2, dom, rm, iqr / rm, noise)
        if best is not None:
            found.append((e,) + best)
            taken.update((e, best[0]))
    return found


def _build_objects(attr_labels, pair, dec, certified, S, beta):
    """Step 4 (THEORY.md §7 steps 2 and 4): one object per R_{M,1} label (in a fixed tree every
    sample has the same structure, so a recovered matrix *is* an object across samples).

    Its attributes x̂ = the decoded c_h·W·x̂ normalised (coordinates never certified are 0 and
    listed as ``missing``); ω = median ‖c_h·W·x̂‖ (the identity coefficient); ``completeness`` =
    median ‖c_h·W·x̂‖ / (paired R_{M,2} coefficient); identified when certified in ≥ β of the
    samples (the paper's β = 1/poly(N)).
    """
    objects = []
    for lab in attr_labels:
        jc = dec.columns[lab]
        L = max(jc) + 1
        R = dec.raw(lab)
        missing = [j for j in range(L) if j not in jc]
        rho = float("nan")
        e = pair.get(lab)
        if e is not None:
            a_e = np.maximum(dec.coef(e, 0), 0.0)
            nrm = np.linalg.norm(R, axis=1)
            ok = a_e > 0
            rho = float(np.median(nrm[ok] / a_e[ok])) if ok.any() else float("nan")
        nrm = np.linalg.norm(R, axis=1)
        X = _unit_rows(R + (nrm[:, None] == 0) * (1.0 / math.sqrt(L)))
        frac = len(certified[lab]) / S
        err = np.sqrt(np.sum(dec.errors[:, [dec.index(lab, j) for j in jc]] ** 2, axis=1))
        decode_err = float(np.median(err / np.maximum(nrm, _EPS)))
        objects.append(LearnedObject(
            name=f"m{lab}", attr_label=lab, count_label=e, columns=tuple(jc), attr_dim=L,
            missing=tuple(missing), certified_fraction=frac, omega=float(np.median(nrm)),
            omega_count=float(np.median(dec.coef(e, 0))) if e is not None else float("nan"),
            output_weight=float("nan"), depth_estimate=float("nan"), identified=frac >= beta, attributes=X,
            completeness=rho, decode_error=decode_err))
    return objects


def _estimate_output_weights(ident, outputs, S):
    """Step 4, weights and depths (THEORY.md §7 step 4): when the outputs are Σ_t W_t x_t over the
    top objects, nonnegative least squares of the outputs on the decoded attributes gives W, and
    ω = c_h·W with c_h = 2^{−(4h−3)} gives h = (3 − log2(ω/W))/4 (for W > :data:`WEIGHT_MIN`).
    Sets ``output_weight`` / ``depth_estimate`` of the identified objects; returns the relative
    residual (NaN when not fitted)."""
    if outputs is None or not ident or not all(o.attr_dim <= outputs.shape[1] for o in ident):
        return float("nan")
    m = outputs.shape[1]
    Mx = np.zeros((S * m, len(ident)))
    for k, o in enumerate(ident):
        P = np.zeros((S, m))
        P[:, :o.attr_dim] = o.attributes
        Mx[:, k] = P.ravel()
    w, rn = nnls(Mx, outputs.ravel())
    residual = float(rn / max(np.linalg.norm(outputs), _EPS))
    for o, wk in zip(ident, w):
        o.output_weight = float(wk)
        if wk > WEIGHT_MIN and o.omega > 0:
            o.depth_estimate = float((3.0 - math.log2(o.omega / wk)) / 4.0)
    return residual


def _candidate_inputs(o, ident, network_inputs):
    """Step 5's candidate inputs of object ``o``: the network-input groups and the identified
    objects light enough to be its children (ω ≤ :data:`CHILD_OMEGA_RATIO`·:data:`OMEGA_TOL`·ω_o)."""
    pool = dict(network_inputs)
    limit = o.omega * CHILD_OMEGA_RATIO * OMEGA_TOL
    pool.update({x.name: x.attributes for x in ident if x is not o and x.omega <= limit})
    return pool


def _fit_object(o, pool, S, fit, ridge, n_folds, max_fan_in, select_gain, fit_tol, complete_tol):
    """Step 5 (THEORY.md §7 step 4, "hand them to the robust learner") for one identified object:
    best-subset input selection on cross-validated error (:func:`_select_inputs`), the module fit
    x ≈ N(A z + c), and the learned/not-learned decision with its reason."""
    X = o.attributes
    chosen = _select_inputs(pool, X, fit, ridge, n_folds, max_fan_in, select_gain,
                            slack=max(SLACK_MIN, SLACK_DECODE_FRAC * o.decode_error))
    base = float(np.median(_rel_err(np.repeat(_unit_rows(X.mean(axis=0, keepdims=True)), S, axis=0), X)))
    if not chosen:
        o.reason = (f"no candidate input lowers the cross-validated error below the constant predictor "
                    f"({base:.3g}); its inputs are not among the network-input groups and recovered objects")
        return
    chosen.sort(key=lambda c: (c[:2] != "in", int(c[2:]) if c[2:].isdigit() else 0, c))
    Z = np.concatenate([pool[c] for c in chosen], axis=1)
    B = _fit(Z, X, fit, ridge)
    cv = _cv_error(Z, X, fit, ridge, n_folds)
    tr = float(np.median(_rel_err(_predict(B, Z), X)))
    o.module = LearnedModule(inputs=tuple(chosen), input_dims=tuple(pool[c].shape[1] for c in chosen), B=B,
                             fit=fit, train_error=tr, cv_error=cv)
    short = np.isfinite(o.completeness) and o.completeness < complete_tol
    o.learned = cv <= fit_tol and not o.missing and not short and o.attr_dim > 1
    if o.attr_dim == 1:
        o.reason = ("only coordinate 0 was recovered: a nonnegative unit vector of length 1 is the constant [1], "
                    "so nothing about the module is learned")
    elif short:
        o.reason = (f"attribute incomplete: ‖c_hW x̂‖ is {o.completeness:.2f} of the R_{{M,2}} coefficient c_hW, so "
                    f"coordinates beyond L̂ = {o.attr_dim} were never certified (module fitted on {chosen}, "
                    f"cross-validated error {cv:.3g}, not trusted)")
    elif o.missing:
        o.reason = (f"attribute incomplete: the columns of coordinates {list(o.missing)} were never certified, "
                    f"so the decoded attributes are wrong there (module fitted on {chosen}, "
                    f"cross-validated error {cv:.3g}, not trusted)")
    elif not o.learned:
        o.reason = (f"best fit on {chosen} has cross-validated error {cv:.3g} > fit_tol={fit_tol}: its true "
                    "inputs are probably objects below the detection floor (this is a composite fit)")


def learn_from_sketches(inputs, outputs, sketches, block_size, block_prob, *, input_dims=None,
                        beta=LEARN_DEFAULTS["beta"], hypercube_tol=LEARN_DEFAULTS["hypercube_tol"],
                        count_frac=LEARN_DEFAULTS["count_frac"], hamming_tol=LEARN_DEFAULTS["hamming_tol"],
                        levels=LEARN_DEFAULTS["levels"], max_attr_dim=LEARN_DEFAULTS["max_attr_dim"],
                        max_fan_in=LEARN_DEFAULTS["max_fan_in"], fit=LEARN_DEFAULTS["fit"],
                        ridge=LEARN_DEFAULTS["ridge"], select_gain=LEARN_DEFAULTS["select_gain"],
                        fit_tol=LEARN_DEFAULTS["fit_tol"], complete_tol=LEARN_DEFAULTS["complete_tol"],
                        n_folds=LEARN_DEFAULTS["n_folds"]):
    """Learn a teacher's modules from (input, output, sketch) triples alone (paper Thm 5, THEORY §7).

    Parameters
    ----------
    inputs : array (S, n_in)
        Network inputs. ``input_dims`` splits the columns into groups (one per leaf object; the
        default is a single group), named ``in0``, ``in1``, … as candidate module inputs.
    outputs : array (S, m) or None
        Network outputs. Used only to estimate the weights W (and hence the depth) of the objects
        that feed the output, assuming the output is Σ_t W_t x_t (as :meth:`Teacher.outputs`);
        the report gives the residual of that assumption.
    sketches : array (S, d)
        Overall sketches built with unknown D(b, q, d) matrices.
    block_size, block_prob : int, float
        b and q of the family (known to the learner; the matrices are not).
    beta : float in (0, 1], default 0.05
        An object is identified when its attribute matrix is certified in ≥ β of the samples (the
        paper's β = 1/poly(N)). Spurious certifications need ≥ count_frac·q·d/b blocks with the
        same random 3-part key and essentially never happen, so β only guards against single flukes.
    hypercube_tol : float, default 0.9
        τ of the block screen. The default of :func:`~sketchsim.dictlearn.recover` (0.3) needs a
        single-sample SNR r ≈ 7 (:func:`required_snr`), which a depth-2 object reaches only at
        d ≈ 10⁶ (measured: nothing certified at d = 11400 with τ = 0.3); τ = 0.9 needs r ≈ 2.3.
        It stays safe: a pure-noise block passes with probability ≈ 0.81^b ≈ 10⁻⁵ (b = 57) and
        must then also pass the padding and parity checks.
    count_frac : float, default 0.5
        Certify a column with ≥ count_frac·q·d/b screened blocks. 0.8 (the paper's) loses the
        columns whose blocks collide with the K ≈ 3–10 other heavy columns (probability ≈ K·q per
        block) or fall below r in a few blocks; with q·d/b ≈ 6 the threshold is 3 blocks.
    hamming_tol, levels : int
        Passed to :func:`~sketchsim.dictlearn.recover`. ``levels`` > 1 is allowed but certifies
        nothing here (the level-2 samples are the recovered attributes and e_1).
    max_attr_dim : int, default 64
        Attribute matrices are certified only on columns < max_attr_dim (attributes are short and
        zero-padded); a label with a higher column is typed ``unknown``.
    max_fan_in : int, default 4
        Most inputs a module may be given by the forward selection.
    fit : {"normalized", "ridge"}, default "normalized"
        Module fit: least squares of x ≈ N(A z + c) (exact for the ``linear`` teacher family, and
        ≈ 0.02–0.04 error for ``relu``), or ridge regression of x on z followed by N(relu(·)).
    ridge : float ≥ 0, default 1e-3
        Ridge penalty (also the start of the ``normalized`` fit).
    select_gain : float in [0, 1), default 0.2
        Input selection (best subset of each size, up to ``max_fan_in``): the smallest set whose
        cross-validated error is within 1/(1 − select_gain) of the best set's is chosen, provided
        the best set beats the constant predictor by this fraction.
    fit_tol : float > 0, default 0.1
        A module counts as learned when its cross-validated error is ≤ fit_tol. The decode error
        of a depth-2 attribute (``LearnedObject.decode_error``, estimated from the spread of the
        per-block estimates) is ≈ 1.25·‖s‖·√q/(c_2·W·√(n_b·b)) per coordinate ≈ 0.02–0.04 at
        d ≈ 5·10⁴, and an exact module class adds little to it; a larger error means that no
        recovered candidate explains the object (its inputs are objects below the detection floor).
    complete_tol : float in (0, 1], default 0.9
        A paired object whose recovered coefficient norm ‖c_hW x̂‖ is below complete_tol times its
        R_{M,2} coefficient c_hW (unit attributes: the ratio is 1 when every coordinate is seen) has
        unseen coordinates, and its module is not declared learned. (Filling an unseen coordinate
        in as √((c_hW)² − ‖c_hW x̂‖²) was tried and rejected: for a small coordinate the difference of
        two squares with ≈ 2% errors each gives errors ≈ 0.2.) The decode error of ≈ 0.02 per
        coordinate moves the ratio by ≲ 0.03.
    n_folds : int ≥ 2, default 5
        Folds of the cross-validation (deterministic: sample k is in fold k mod n_folds).

    Returns
    -------
    LearnedNetwork

    Raises
    ------
    ValueError
        Mismatched or non-finite arrays, fewer than 2 samples, a parameter out of range (the
        message names it, the rule and the value), or an invalid (b, q, d) (from ``recover``).
    """
    t_start = time.perf_counter()
    Y = _check_samples(sketches, "sketches")
    S, d = Y.shape
    if S < 2:
        raise ValueError(f"sketches must hold at least 2 samples; got {S}")
    U = _check_samples(inputs, "inputs", "(S, n_inputs)", rows=S)
    out_arr = None if outputs is None else _check_samples(outputs, "outputs", "(S, n_outputs)", rows=S)
    n_in = U.shape[1]
    if input_dims is None:
        dims = (n_in,)
    else:
        if isinstance(input_dims, (str, bytes)) or not hasattr(input_dims, "__len__") or len(input_dims) == 0:
            raise ValueError(f"input_dims must be a nonempty sequence of positive integers; got {input_dims!r}")
        dims = tuple(check_int("input_dims entries", v, minimum=1) for v in input_dims)
        if sum(dims) != n_in:
            raise ValueError(f"input_dims must sum to inputs.shape[1]={n_in}; got {list(dims)} (sum {sum(dims)})")
    beta = _check_real("beta", beta, 0.0, 1.0, lo_open=True)
    max_attr_dim = check_int("max_attr_dim", max_attr_dim, minimum=1)
    max_fan_in = check_int("max_fan_in", max_fan_in, minimum=1)
    fit = check_choice("fit", fit, ("normalized", "ridge"))
    ridge = _check_real("ridge", ridge, 0.0)
    select_gain = _check_real("select_gain", select_gain, 0.0, 1.0, hi_open=True)
    fit_tol = _check_real("fit_tol", fit_tol, 0.0, lo_open=True)
    complete_tol = _check_real("complete_tol", complete_tol, 0.0, 1.0, lo_open=True)
    n_folds = check_int("n_folds", n_folds, minimum=2)
    params = dict(block_size=block_size, block_prob=float(block_prob) if isinstance(block_prob, numbers.Real) else block_prob,
                  hypercube_tol=hypercube_tol, count_frac=count_frac, hamming_tol=hamming_tol, levels=levels,
                  beta=beta, max_attr_dim=max_attr_dim, max_fan_in=max_fan_in, fit=fit, ridge=ridge,
                  select_gain=select_gain, fit_tol=fit_tol, complete_tol=complete_tol, n_folds=n_folds)

    # 1. recover (validates b, q, d and the thresholds)
    t0 = time.perf_counter()
    res = _recover_dictionary(Y, block_size, block_prob, hypercube_tol, count_frac, hamming_tol, levels)
    timings = {"recover_s": time.perf_counter() - t0}
    q = float(block_prob)
    snorm = float(np.median(np.linalg.norm(Y, axis=1)))
    floor = detection_floor(snorm, q, int(block_size), float(hypercube_tol))

    # 2. type the matrices (level-1 labels: coefficients of the input rows only)
    lvl1 = res.coef_sample < S
    types = _type_matrices(_Sub(res, lvl1), max_attr_dim)
    by_label = {t.label: t for t in types}

    # 3. decode every sample through the recovered columns; certification per (label, sample)
    dec = _decode_columns(res, Y, types)
    certified = {lab: set(res.coef_sample[lvl1 & (res.coef_matrix == lab)].tolist())
                 for lab in range(res.n_matrices)}

    # 3b. pair R_{M,1} with R_{M,2}; 3c. retype the column-0-only R_{M,1} among the unpaired R_{M,2}
    attr_labels = [t.label for t in types if t.kind == ATTR_KIND]
    count_labels = [t.label for t in types if t.kind == COUNT_KIND]
    pair, notes = _pair_labels(attr_labels, count_labels, dec, S)
    free = [e for e in count_labels if e not in pair.values()]
    for e, e2, dom, rm, spread, noise in _find_column0_attributes(free, dec, S):
        by_label[e].kind = ATTR_KIND
        by_label[e].note = (f"column 0 only, below the e_1 coefficient of label {e2} in {dom:.0%} of samples "
                            f"(median ratio {rm:.2f}, relative spread {spread:.2f} ≫ noise {noise:.2g}): an "
                            "attribute coordinate x_0 ≤ 1")
        pair[e] = e2
        notes[e2] = f"pairs with m{e} (dominates its coefficient)"
    attr_labels = [t.label for t in types if t.kind == ATTR_KIND]
    count_labels = [t.label for t in types if t.kind == COUNT_KIND]

    # 4. objects, identification, weights and depths
    objects = _build_objects(attr_labels, pair, dec, certified, S, beta)
    for e in count_labels:
        notes.setdefault(e, "coefficient vectors ≈ c·e_1; no R_{M,1} with a matching norm")
    owner = {o.attr_label: o.name for o in objects}
    owner.update({o.count_label: o.name for o in objects if o.count_label is not None})
    matrices = [LearnedMatrix(label=t.label, kind=t.kind, columns=t.columns, n_certified=t.n_certified,
                              certified_fraction=t.n_certified / S, positive_fraction=t.positive_fraction,
                              object=owner.get(t.label), note=notes.get(t.label, t.note)) for t in types]
    ident = [o for o in objects if o.identified]
    out_res = _estimate_output_weights(ident, out_arr, S)

    # 5. choose inputs and fit the modules (lighter objects first)
    t0 = time.perf_counter()
    edges = np.concatenate([[0], np.cumsum(dims)]).astype(int)
    network_inputs = {f"in{i}": U[:, a:b] for i, (a, b) in enumerate(zip(edges[:-1], edges[1:]))}
    for o in sorted(ident, key=lambda o: o.omega):
        _fit_object(o, _candidate_inputs(o, ident, network_inputs), S, fit, ridge, n_folds, max_fan_in,
                    select_gain, fit_tol, complete_tol)
    for o in objects:
        if not o.identified:
            o.reason = f"certified in {o.certified_fraction:.1%} of samples < β = {beta}"
    timings["fit_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - t_start
    return LearnedNetwork(dictionary=res, matrices=matrices, objects=objects, input_dims=dims, params=params,
                          n_samples=S, d=d, sketch_norm=snorm, floor=floor, output_fit_residual=out_res,
                          timings=timings)


def _decode_column(res, c, Y):
    """Coefficient of recovered column ``c`` in every sample: the median over its recovered blocks
    of the per-block least-squares estimate ⟨R̂ block, y block⟩/‖R̂ block‖².

    The Theorem 1(i) decoder with a learned column. A median rather than one least squares over
    all blocks, because a block shared with another heavy column that always dominates it is
    certified for that column only: least squares on the partial columns then reads the other
    column's coefficient into this one (measured: 0.538 instead of 0.5 with two of eight blocks
    shared), while the median ignores the one or two shared blocks. Per-block noise
    ‖s‖·√q/√b; the median over n_b ≈ 6 blocks costs ≈ 1.25× the least-squares error.
    """
    rows, signs = res.column_blocks(c)
    b = res.block_size
    idx = (rows.astype(np.int64)[:, None] * b + np.arange(b)[None, :]).ravel()
    blocks = Y[:, idx].reshape(Y.shape[0], rows.size, b)
    est = np.einsum("skb,kb->sk", blocks, signs.astype(np.float64)) / (b * res.scale)
    med = np.median(est, axis=1)
    # standard error of the median: 1.2533·σ/√n_b, σ from the median absolute deviation
    spread = 1.4826 * np.median(np.abs(est - med[:, None]), axis=1) * 1.2533 / math.sqrt(max(rows.size, 1))
    return med, spread


class _Sub:
    """View of a DictionaryResult restricted to some coefficient rows (for typing)."""

    def __init__(self, res, mask):
        self.n_matrices = res.n_matrices
        self.coef_matrix = res.coef_matrix[mask]
        self.coef_column = res.coef_column[mask]
        self.coef_value = res.coef_value[mask]
        self.coef_sample = res.coef_sample[mask]
