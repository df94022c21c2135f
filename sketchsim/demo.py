"""``sketchsim demo``: sketch one synthetic modular network with every family and decode it.

The network is the paper's running example (§2.1–2.2): a room seen by a modular network. The output
groups a cat, a dog and two walls (depth 2); the cat and the dog are built from edge and fur
objects (depth 3). For every matrix family the demo prints what the paper's estimators read back
from the overall sketch (Theorem 1(i) attributes, Theorem 3(i) count) next to the truth, and the
noise scale ‖s‖/(c_h·w·√d) the error should track (THEORY.md §2.4).
"""
from __future__ import annotations

import time
import warnings

import numpy as np

from . import decode
from .graph import Graph
from .matrices import MatrixBank
from .sketch import sketch
from .theory import depth_constant

FAMILY_SETTINGS = {
    # family: (d_sketch full, d_sketch quick, extra bank arguments)
    "haar": (1024, 256, {}),
    "gaussian": (1024, 256, {}),
    "block-sparse": (1536, 480, {"block_size": 48, "block_prob": 0.25}),
    "hadamard": (2 ** 18, 2 ** 14, {}),
}


def demo_graph(seed=0):
    """The demo network (nonnegative unit attributes drawn from ``seed``)."""
    rng = np.random.default_rng(seed)

    def attr(n):
        x = np.abs(rng.standard_normal(n))
        return (x / np.linalg.norm(x)).tolist()

    objects = [
        {"id": "cat-1", "module": "cat", "attributes": attr(4),
         "inputs": [{"id": "edge-1", "weight": 0.5}, {"id": "fur-1", "weight": 0.5}]},
        {"id": "dog-1", "module": "dog", "attributes": attr(4),
         "inputs": [{"id": "edge-2", "weight": 0.6}, {"id": "fur-2", "weight": 0.4}]},
        {"id": "wall-1", "module": "wall", "attributes": attr(3)},
        {"id": "wall-2", "module": "wall", "attributes": attr(3)},
        {"id": "edge-1", "module": "edge", "attributes": attr(2)},
        {"id": "edge-2", "module": "edge", "attributes": attr(2)},
        {"id": "fur-1", "module": "fur", "attributes": attr(2)},
        {"id": "fur-2", "module": "fur", "attributes": attr(2)},
    ]
    output = [{"id": "cat-1", "weight": 0.4}, {"id": "dog-1", "weight": 0.3},
              {"id": "wall-1", "weight": 0.15}, {"id": "wall-2", "weight": 0.15}]
    return Graph(objects, output)


def run_demo(seed=0, quick=False, out=print):
    """Print the demo table; returns the rows as a list of dicts."""
    g = demo_graph(seed)
    out(f"network: {len(g)} objects, modules {g.modules}, depths 2–{g.max_depth} (seed {seed})")
    x_cat, x_dog = g.attributes[g.index["cat-1"]], g.attributes[g.index["dog-1"]]
    out(f"truth: x_cat = {np.round(x_cat, 3)} (w = {g.weight('cat-1'):.2f}), "
        f"x_dog = {np.round(x_dog, 3)} (w = {g.weight('dog-1'):.2f}), 2 walls (w = 0.15 each)")
    header = (f"{'family':<13}{'d_sketch':>9}  {'x̂_cat (Thm 1(i))':<30}{'ℓ∞ cat':>8}{'noise':>8}"
              f"{'ℓ∞ dog':>8}{'noise':>8}{'#walls':>8}{'time s':>8}")
    out(header)
    out("-" * len(header))
    rows = []
    c2 = depth_constant(2)
    for family, (d_full, d_quick, extra) in FAMILY_SETTINGS.items():
        d = d_quick if quick else d_full
        t0 = time.perf_counter()
        bank = MatrixBank(d, family, seed, **extra)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            s = sketch(g, bank)
        est_cat = decode.attributes(s, bank, "cat", 2, weight=g.weight("cat-1"), length=len(x_cat))
        est_dog = decode.attributes(s, bank, "dog", 2, weight=g.weight("dog-1"), length=len(x_dog))
        walls = decode.count(s, bank, "wall", 2, weight=0.15)
        elapsed = time.perf_counter() - t0
        norm = float(np.linalg.norm(s))
        row = {"family": family, "d_sketch": d, "err_cat": float(np.abs(est_cat - x_cat).max()),
               "noise_cat": norm / (c2 * g.weight("cat-1") * np.sqrt(d)),
               "err_dog": float(np.abs(est_dog - x_dog).max()),
               "noise_dog": norm / (c2 * g.weight("dog-1") * np.sqrt(d)), "walls": walls,
               "time_s": elapsed}
        rows.append(row)
        out(f"{family:<13}{d:>9}  {np.array2string(est_cat, precision=3, suppress_small=True):<30}"
            f"{row['err_cat']:>8.3f}{row['noise_cat']:>8.3f}{row['err_dog']:>8.3f}{row['noise_dog']:>8.3f}"
            f"{walls:>8.2f}{elapsed:>8.2f}")
    out("noise = ‖s‖₂/(c_h·w·√d), the per-coordinate error scale the estimators should track "
        "(c_2 = 1/32); errors shrink as d grows (hadamard row). Time includes drawing the matrices.")
    return rows
