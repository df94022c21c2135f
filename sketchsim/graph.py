"""Communication graphs of modular networks (paper §2.1–2.2).

A :class:`Graph` holds objects (an id, the module that produced it, a nonnegative unit-ℓ2
attribute vector x_θ and a weighted, ordered list of input objects) and the inputs of the implicit
output pseudo-object. Depth h(θ) (the output has depth 1) and effective weights w_θ (the sum over
paths of the product of weights, THEORY.md §2.1) are computed, never given.

JSON form (input order is the tuple position: the first input is position 1)::

    {"objects": [{"id": "edge-3", "module": "edge", "attributes": [0.6, 0.8],
                  "inputs": [{"id": "pixel-blob-1", "weight": 0.5}]}, ...],
     "output":  [{"id": "cat-1", "weight": 1.0}]}
"""
from __future__ import annotations

import json
import numbers
import os
import warnings
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ._rng import check_random_state
from ._validation import (TheoremPreconditionWarning, check_bool, check_choice, check_float_array, check_int,
                          check_name, check_real, show)

__all__ = ["Graph", "GraphWarning", "random_network", "fixed_tree_values", "WEIGHT_TOL", "UNIT_TOL"]

WEIGHT_TOL = 1e-9
"""Slack allowed on Σ w_i ≤ 1 for one input list (paper §3.3)."""
UNIT_TOL = 1e-6
"""Allowed deviation of ‖x_θ‖₂ from 1 when attributes are not normalised on load."""


class GraphWarning(UserWarning):
    """Something in a graph was dropped or is suspicious, but the graph is still usable."""


@dataclass(frozen=True)
class _Level:
    """Objects of one height (longest path to a leaf); children always sit in lower levels."""

    objects: np.ndarray          # object indices, grouped by module
    module_groups: tuple         # ((module index, start, stop) into ``objects``), ...
    internal: np.ndarray         # positions (into ``objects``) of objects that have inputs


def _fmt(v):
    return repr(float(v)) if isinstance(v, (float, np.floating)) else repr(v)


def validate_weights(name, w):
    """Weights of one input list: finite, nonnegative, summing to at most 1 (+1e-9).

    ``w`` may be ``(k,)`` or batched ``(B, k)``.
    """
    w = check_float_array(f"weights of {name}", w, ndims=(1, 2), allow_empty=True, finite=False)
    if not np.all(np.isfinite(w)):
        raise ValueError(f"weights of {name} must be finite; got {_fmt(w[~np.isfinite(w)].flat[0])}")
    if np.any(w < 0):
        raise ValueError(f"weights of {name} must be nonnegative; got {_fmt(w[w < 0].flat[0])}")
    total = w.sum(axis=-1)
    if np.any(total > 1.0 + WEIGHT_TOL):
        raise ValueError(
            f"weights of {name} must sum to at most 1 (+{WEIGHT_TOL:g}); got a sum of "
            f"{float(np.max(total))!r}"
        )
    return w


def validate_attributes(name, x, normalize=False, d_sketch=None):
    """Attribute vector(s) x_θ: finite, nonnegative, unit ℓ2 (or normalised), length ≤ d_sketch.

    ``x`` may be ``(L,)`` or batched ``(B, L)``. Returns a float64 array.
    """
    if isinstance(x, (numbers.Number, np.generic)) or (isinstance(x, np.ndarray) and x.ndim == 0):
        raise ValueError(f"attributes of {name} must be a vector (a list of numbers); got the scalar {show(x)}")
    x = np.array(check_float_array(f"attributes of {name}", x, ndims=(1, 2), allow_empty=True, finite=False))
    if x.shape[-1] == 0 or x.size == 0:
        raise ValueError(f"attributes of {name} must be a nonempty vector; got length 0")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"attributes of {name} must be finite; got {_fmt(x[~np.isfinite(x)].flat[0])}")
    if np.any(x < 0):
        raise ValueError(f"attributes of {name} must be nonnegative; got {_fmt(x[x < 0].flat[0])}")
    if d_sketch is not None and x.shape[-1] > d_sketch:
        raise ValueError(
            f"attributes of {name} must not be longer than d_sketch={d_sketch}; got length {x.shape[-1]}"
        )
    if normalize:
        peak = np.max(x, axis=-1, keepdims=True)
        if np.any(peak == 0):
            raise ValueError(f"attributes of {name} cannot be normalised: the vector is all zeros")
        x = x / peak                     # first scale by the largest entry: subnormal vectors normalise too
        return x / np.linalg.norm(x, axis=-1, keepdims=True)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    if np.any(np.abs(norm - 1.0) > UNIT_TOL):
        bad = float(norm.flat[np.argmax(np.abs(norm - 1.0))])
        raise ValueError(
            f"attributes of {name} must have unit ℓ2 norm (±{UNIT_TOL:g}; pass normalize=True / "
            f"--normalize to rescale); got norm {bad!r}"
        )
    return x


class Graph:
    """A weighted communication graph with an implicit output pseudo-object (paper §2.1).

    Parameters
    ----------
    objects : list of dict
        Each ``{"id": str, "module": str, "attributes": list of float,
        "inputs": [{"id": str, "weight": float}, ...]}``; ``inputs`` may be omitted (a leaf).
        Input order is the tuple position i of R_i (1-based). An object may feed several parents.
    output : list of dict
        The inputs ``[{"id": str, "weight": float}, ...]`` of the output pseudo-object.
    normalize : bool, default False
        Rescale every attribute vector to unit ℓ2 instead of rejecting non-unit ones.

    Raises
    ------
    ValueError
        Duplicate or unknown ids, cycles, an empty output, negative / non-finite / over-unit weights,
        negative / non-finite / non-unit attributes.

    Warns
    -----
    GraphWarning
        Objects unreachable from the output are left out of the graph.
    TheoremPreconditionWarning
        A module whose objects sit at several depths (the theorems assume one depth per module).

    Notes
    -----
    Depth h(θ): the output has depth 1, its inputs depth 2, and so on (paper §2.2). Effective
    weight W_θ: the sum over paths to the output of the product of the weights along the path
    (paper §2.2 defines it for a single path; the sum is what a DAG's sketch carries, THEORY §2.1).
    """

    def __init__(self, objects, output, normalize=False):
        normalize = check_bool("normalize", normalize)
        if not isinstance(objects, (list, tuple)):
            raise ValueError(f"objects must be a list of objects; got {type(objects).__name__}")
        if not isinstance(output, (list, tuple)):
            raise ValueError(f"output must be a list of inputs; got {type(output).__name__}")
        if len(output) == 0:
            raise ValueError("output must list at least one input object; got an empty list")
        specs = {}
        order = []
        for pos, obj in enumerate(objects):
            if not isinstance(obj, dict):
                raise ValueError(f"objects[{pos}] must be an object (dict); got {obj!r}")
            for key in ("id", "module", "attributes"):
                if key not in obj:
                    raise ValueError(f"objects[{pos}] must have the field {key!r}; got fields {sorted(obj)}")
            oid = check_name(f"objects[{pos}].id", obj["id"])
            if oid in specs:
                raise ValueError(f"object ids must be unique; got the id {oid!r} twice")
            module = check_name(f"module of object {oid!r}", obj["module"])
            x = validate_attributes(f"object {oid!r}", obj["attributes"], normalize=normalize)
            if x.ndim != 1:
                raise ValueError(f"attributes of object {oid!r} must be a vector; got shape {x.shape}")
            ins = self._parse_inputs(f"object {oid!r}", obj.get("inputs", []) or [])
            specs[oid] = (module, x, ins)
            order.append(oid)
        out = self._parse_inputs("the output", output)
        for owner, ins in [("the output", out)] + [(f"object {o!r}", specs[o][2]) for o in order]:
            for cid, _ in ins:
                if cid not in specs:
                    raise ValueError(f"inputs of {owner} must name known objects; got unknown id {cid!r}")
        self._check_acyclic(order, specs)
        reachable = self._reachable(out, specs)
        dropped = [o for o in order if o not in reachable]
        if dropped:
            shown = ", ".join(map(repr, dropped[:5])) + (" …" if len(dropped) > 5 else "")
            warnings.warn(
                f"{len(dropped)} object(s) have no path to the output and are left out of the "
                f"sketch: {shown}", GraphWarning, stacklevel=2)
        self.ids = [o for o in order if o in reachable]
        self.index = {o: i for i, o in enumerate(self.ids)}
        self.modules = list(dict.fromkeys(specs[o][0] for o in self.ids))
        mod_index = {m: i for i, m in enumerate(self.modules)}
        self.module_of = np.array([mod_index[specs[o][0]] for o in self.ids], dtype=np.int64)
        self.attributes = [specs[o][1] for o in self.ids]
        self.inputs = [
            (np.array([self.index[c] for c, _ in specs[o][2]], dtype=np.int64),
             np.array([w for _, w in specs[o][2]], dtype=np.float64))
            for o in self.ids
        ]
        self.output = (np.array([self.index[c] for c, _ in out], dtype=np.int64),
                       np.array([w for _, w in out], dtype=np.float64))
        self._compute_depths_and_weights()

    # ------------------------------------------------------------------ parsing / validation
    @staticmethod
    def _parse_inputs(owner, inputs):
        if not isinstance(inputs, (list, tuple)):
            raise ValueError(f"inputs of {owner} must be a list; got {inputs!r}")
        parsed = []
        for k, item in enumerate(inputs):
            if not isinstance(item, dict) or "id" not in item or "weight" not in item:
                raise ValueError(
                    f"input {k + 1} of {owner} must be {{'id': ..., 'weight': ...}}; got {show(item)}")
            cid = check_name(f"id of input {k + 1} of {owner}", item["id"])
            w = check_real(f"weight of input {k + 1} of {owner}", item["weight"])
            parsed.append((cid, w))
        validate_weights(owner, np.array([w for _, w in parsed], dtype=np.float64))
        return parsed

    @staticmethod
    def _check_acyclic(order, specs):
        state = dict.fromkeys(order, 0)  # 0 new, 1 on stack, 2 done
        for root in order:
            if state[root]:
                continue
            stack = [(root, iter(specs[root][2]))]
            path = [root]
            state[root] = 1
            while stack:
                node, it = stack[-1]
                nxt = next(it, None)
                if nxt is None:
                    state[node] = 2
                    stack.pop()
                    path.pop()
                    continue
                child = nxt[0]
                if state[child] == 1:
                    cyc = path[path.index(child):] + [child]
                    raise ValueError(
                        "the communication graph must be acyclic; got the cycle "
                        + " -> ".join(map(repr, cyc)))
                if state[child] == 0:
                    state[child] = 1
                    path.append(child)
                    stack.append((child, iter(specs[child][2])))

    @staticmethod
    def _reachable(out, specs):
        seen = set()
        todo = [c for c, _ in out]
        while todo:
            o = todo.pop()
            if o in seen:
                continue
            seen.add(o)
            todo.extend(c for c, _ in specs[o][2])
        return seen

    def _compute_depths_and_weights(self):
        n = len(self.ids)
        # topological order parents-before-children (reverse post-order from the output)
        topo, seen = [], np.zeros(n, bool)
        for root in self.output[0]:
            if seen[root]:
                continue
            stack = [(int(root), iter(self.inputs[root][0]))]
            seen[root] = True
            while stack:
                node, it = stack[-1]
                child = next(it, None)
                if child is None:
                    topo.append(node)
                    stack.pop()
                elif not seen[child]:
                    seen[child] = True
                    stack.append((int(child), iter(self.inputs[child][0])))
        self.children_first = np.array(topo, dtype=np.int64)
        depths = [set() for _ in range(n)]
        weight = np.zeros(n)
        for c, w in zip(*self.output):
            depths[c].add(2)
            weight[c] += w
        for p in topo[::-1]:
            for c, w in zip(*self.inputs[p]):
                depths[c].update(h + 1 for h in depths[p])
                weight[c] += weight[p] * w
        self.depths = [tuple(sorted(s)) for s in depths]
        self.effective_weight = weight
        height = np.zeros(n, dtype=np.int64)
        for p in topo:
            ch = self.inputs[p][0]
            if len(ch):
                height[p] = 1 + height[ch].max()
        self.height = height
        by_module = {}
        for i, ds in enumerate(self.depths):
            by_module.setdefault(self.modules[self.module_of[i]], set()).update(ds)
        multi = {m: sorted(ds) for m, ds in by_module.items() if len(ds) > 1}
        if multi:
            m, ds = next(iter(multi.items()))
            warnings.warn(
                f"{len(multi)} module(s) produce objects at several depths (e.g. {m!r} at depths "
                f"{ds}); Theorems 1–3 assume one depth per module", TheoremPreconditionWarning,
                stacklevel=3)
        self.module_depths = {m: tuple(sorted(ds)) for m, ds in by_module.items()}

    # ------------------------------------------------------------------ accessors
    def __len__(self):
        return len(self.ids)

    def __repr__(self):
        return (f"Graph({len(self.ids)} objects, {len(self.modules)} modules, depth "
                f"{self.max_depth}, {len(self.output[0])} output inputs)")

    @property
    def max_depth(self):
        """Largest object depth h (the output pseudo-object has depth 1)."""
        return max(max(d) for d in self.depths)

    @property
    def max_fan_in(self):
        """Largest input-list length, including the output's (tuple positions used)."""
        return max([len(self.output[0])] + [len(c) for c, _ in self.inputs])

    @property
    def n_matrices(self):
        """N for the block-size rule: 3 per module plus the tuple positions (at least R_1, R_2)."""
        return 3 * len(self.modules) + max(2, self.max_fan_in)

    def depth(self, object_id):
        """Depth h(θ) of one object; raises if it is reached at several depths."""
        ds = self.depths[self._idx(object_id)]
        if len(ds) > 1:
            raise ValueError(f"object {object_id!r} is reached at several depths {list(ds)}")
        return ds[0]

    def weight(self, object_id):
        """Effective weight W_θ (sum over paths of the product of weights)."""
        return float(self.effective_weight[self._idx(object_id)])

    def module(self, object_id):
        """Module M(θ) that produced the object."""
        return self.modules[self.module_of[self._idx(object_id)]]

    def objects_of(self, module):
        """Ids of the objects produced by ``module``."""
        if module not in self.modules:
            raise ValueError(f"module must be one of the graph's modules {self.modules}; got {module!r}")
        m = self.modules.index(module)
        return [o for o, mm in zip(self.ids, self.module_of) if mm == m]

    def _idx(self, object_id):
        try:
            return self.index[object_id]
        except KeyError:
            raise ValueError(f"object_id must name an object of the graph; got {object_id!r}") from None

    def paths(self, object_id):
        """Every index path (1-based input positions from the output down) that reaches the object."""
        target = self._idx(object_id)
        result = []
        # iterative depth-first walk (no recursion limit on deep chains), same order as recursion
        stack = [(self.output[0], 0, [])]
        while stack:
            children, k, prefix = stack.pop()
            if k >= len(children):
                continue
            stack.append((children, k + 1, prefix))
            c = int(children[k])
            path = prefix + [k + 1]
            if c == target:
                result.append(path)
            stack.append((self.inputs[c][0], 0, path))
        return result

    # ------------------------------------------------------------------ scheduling
    @cached_property
    def levels(self):
        """Objects grouped by height (leaves first), each level grouped by module."""
        levels = []
        for h in range(int(self.height.max()) + 1 if len(self.height) else 0):
            objs = np.flatnonzero(self.height == h)
            objs = objs[np.argsort(self.module_of[objs], kind="stable")]
            groups, start = [], 0
            mods = self.module_of[objs]
            for k in range(1, len(objs) + 1):
                if k == len(objs) or mods[k] != mods[start]:
                    groups.append((int(mods[start]), start, k))
                    start = k
            internal = np.array([k for k, o in enumerate(objs) if len(self.inputs[o][0])], dtype=np.int64)
            levels.append(_Level(objs, tuple(groups), internal))
        return levels

    # ------------------------------------------------------------------ I/O
    def to_dict(self):
        """The JSON-ready description (reachable objects only)."""
        objs = []
        for i, oid in enumerate(self.ids):
            ch, w = self.inputs[i]
            objs.append({"id": oid, "module": self.modules[self.module_of[i]],
                         "attributes": [float(v) for v in self.attributes[i]],
                         "inputs": [{"id": self.ids[c], "weight": float(x)} for c, x in zip(ch, w)]})
        out = [{"id": self.ids[c], "weight": float(x)} for c, x in zip(*self.output)]
        return {"objects": objs, "output": out}

    @classmethod
    def from_dict(cls, obj, normalize=False):
        """Build a graph from the JSON structure ``{"objects": [...], "output": [...]}``."""
        if not isinstance(obj, dict):
            raise ValueError(f"a graph must be a JSON object with 'objects' and 'output'; got {type(obj).__name__}")
        for key in ("objects", "output"):
            if key not in obj:
                raise ValueError(f"a graph must have the field {key!r}; got fields {sorted(obj)}")
        return cls(obj["objects"], obj["output"], normalize=normalize)

    @classmethod
    def from_json(cls, path, normalize=False):
        """Read a graph from a JSON file (malformed JSON is reported with its line and column)."""
        path = os.fspath(path)
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            raise ValueError(f"graph file {path!r} cannot be read: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise ValueError(f"graph file {path!r} must be UTF-8 text (JSON); byte {exc.object[exc.start]:#04x} at "
                             f"offset {exc.start} is not UTF-8") from None
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"graph file {path!r} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
            ) from None
        except RecursionError:
            raise ValueError(f"graph file {path!r} must be a JSON graph; got lists or objects nested too deeply "
                             "to read") from None
        except ValueError as exc:            # e.g. an integer literal of more than 4300 digits
            raise ValueError(f"graph file {path!r} could not be read as JSON: {exc}") from None
        return cls.from_dict(obj, normalize=normalize)

    def to_json(self, path):
        """Write the graph as JSON (atomically)."""
        from ._io import atomic_write_text

        atomic_write_text(path, json.dumps(self.to_dict(), indent=1))


# ---------------------------------------------------------------------- synthetic generators
def _unit_nonneg(rng, size):
    x = np.abs(rng.standard_normal(size))
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _random_weights(rng, k, kind):
    if kind == "uniform":
        return np.full(k, 1.0 / k)
    w = rng.dirichlet(np.ones(k))
    return w / max(1.0, w.sum())


MAX_GENERATED_DEPTH = 64
"""Deepest network :func:`random_network` draws (object levels)."""


def _int_range(name, value):
    """An int k or an inclusive range (lo, hi) of ints ≥ 1, as (lo, hi)."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an integer or a pair (low, high); got {show(value)}")
        lo = check_int(f"{name}[0]", value[0], minimum=1)
        hi = check_int(f"{name}[1]", value[1], minimum=lo)
        return lo, hi
    k = check_int(name, value, minimum=1)
    return k, k


def random_network(depth=3, fan_in=(1, 3), modules_per_level=2, attr_dim=8, n_top=None,
                   share_prob=0.0, weights="random", random_state=None):
    """A random modular network: ``depth`` object levels, modules unique to their level.

    Parameters
    ----------
    depth : int
        Number of object levels; objects have depths h = 2 … depth + 1 (the output has h = 1).
    fan_in : int or (int, int)
        Inputs per non-leaf object (and per the output unless ``n_top`` is given), drawn uniformly
        from the inclusive range.
    modules_per_level : int
        Modules at each level (named ``L<h>M<k>``); every object picks one at random.
    attr_dim : int or (int, int)
        Attribute length (per module, drawn from the range); attributes are nonnegative unit ℓ2.
    n_top : int, optional
        Number of output inputs (default: drawn from ``fan_in``).
    share_prob : float
        Probability that a parent reuses an existing object of the next level instead of a new one
        (a DAG with shared children).
    weights : {"random", "uniform"}
        Dirichlet-random weights summing to 1, or 1/k.
    random_state : int, Generator or None

    Returns
    -------
    Graph
    """
    rng = check_random_state(random_state)
    depth = check_int("depth", depth, minimum=1, maximum=MAX_GENERATED_DEPTH)
    lo, hi = _int_range("fan_in", fan_in)
    alo, ahi = _int_range("attr_dim", attr_dim)
    modules_per_level = check_int("modules_per_level", modules_per_level, minimum=1)
    if n_top is not None:
        n_top = check_int("n_top", n_top, minimum=1)
    share_prob = check_real("share_prob", share_prob, 0.0, 1.0)
    check_choice("weights", weights, ("random", "uniform"))
    dims = {}
    objects = []

    def new_object(level):
        m = f"L{level}M{int(rng.integers(modules_per_level))}"
        if m not in dims:
            dims[m] = int(rng.integers(alo, ahi + 1))
        oid = f"o{len(objects)}-{m}"
        obj = {"id": oid, "module": m, "attributes": _unit_nonneg(rng, dims[m]).tolist(), "inputs": []}
        objects.append(obj)
        return obj

    n_out = int(n_top) if n_top is not None else int(rng.integers(lo, hi + 1))
    frontier = [new_object(2) for _ in range(n_out)]
    output = [{"id": o["id"], "weight": float(w)}
              for o, w in zip(frontier, _random_weights(rng, n_out, weights))]
    for level in range(3, depth + 2):
        nxt = []
        for parent in frontier:
            k = int(rng.integers(lo, hi + 1))
            kids = []
            for _ in range(k):
                pool = [o for o in nxt if o not in kids]
                if pool and rng.random() < share_prob:
                    kids.append(pool[int(rng.integers(len(pool)))])
                else:
                    kids.append(new_object(level))
                    nxt.append(kids[-1])
            parent["inputs"] = [{"id": c["id"], "weight": float(w)}
                                for c, w in zip(kids, _random_weights(rng, k, weights))]
        frontier = nxt
    return Graph(objects, output)


def fixed_tree_values(graph, n_inputs, random_state=None, vary_weights=True):
    """Random attributes (and weights) for ``n_inputs`` network inputs over one fixed graph.

    Returns ``(attributes, weights, output_weights)`` in the form :func:`sketchsim.sketch_batch`
    takes: ``attributes[id]`` of shape ``(B, L_θ)`` (nonnegative, unit ℓ2), ``weights[id]`` of
    shape ``(B, k_θ)`` and ``output_weights`` of shape ``(B, k_out)`` (Dirichlet rows summing to 1,
    or the graph's own weights repeated when ``vary_weights`` is False).
    """
    rng = check_random_state(random_state)
    B = check_int("n_inputs", n_inputs, minimum=1)
    vary_weights = check_bool("vary_weights", vary_weights)
    attrs = {oid: _unit_nonneg(rng, (B, len(graph.attributes[i]))) for i, oid in enumerate(graph.ids)}

    def draw(w):
        if not vary_weights or len(w) == 0:
            return np.repeat(w[None, :], B, axis=0)
        return rng.dirichlet(np.ones(len(w)), size=B)

    weights = {oid: draw(graph.inputs[i][1]) for i, oid in enumerate(graph.ids)}
    return attrs, weights, draw(graph.output[1])
