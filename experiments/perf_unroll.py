"""Benchmark: blind unrolling time per tree against d (hadamard 2^12, 2^14, 2^16, 2^18).

`main()` draws one random tree per size (:func:`experiments.decoders_unroll.random_tree` is not
imported — studies do not import each other — the same generator is rebuilt here from
:func:`sketchsim.random_network`: depth 3 with the output at depth 1, fan-in 1–4), sketches it,
warms up with one unroll, then times ``ROUNDS`` unrolls and writes the medians to
``results/perf_unroll.csv`` and ``results/perf_unroll.md``. BLAS is pinned to one thread; numba
uses its default thread count (recorded).
"""
from __future__ import annotations

import os
import statistics
import time
import warnings

import numpy as np

import sketchsim as ss
from sketchsim.unroll import unroll

DIMS = (2 ** 12, 2 ** 14, 2 ** 16, 2 ** 18)
ROUNDS = 3
ROUNDS_LARGE = 1
"""Timed rounds at d ≥ 2^18 (one unroll there takes tens of seconds)."""
NOTE_2_20 = ("d = 2^20 is not timed: the candidates' A'_M images exceed `sketchsim.unroll.APRIME_MAX_BYTES` "
             "there (their scores go through the operators) and a tree of more than 5 objects exceeds "
             "`EXPLICIT_MAX_BYTES` (its refits too); one unroll of this 5-object tree took ≈ 100 s (one round, "
             "default budgets, 1.5 GB peak, exact; ≈ 590 s with a larger image budget before issue 10's second "
             "study), more than half of the 3-minute budget of this benchmark.")
MODULES = ["L2M0", "L2M1", "L3M0", "L3M1", "Z0", "Z1"]
SEED = 11


def _tree():
    return ss.random_network(depth=2, fan_in=(1, 4), modules_per_level=2, attr_dim=8, random_state=SEED)


def _write(rows, out_dir):
    import pandas as pd

    from sketchsim._io import atomic_write_text

    df = pd.DataFrame(rows)
    atomic_write_text(os.path.join(out_dir, "perf_unroll.csv"), df.to_csv(index=False))
    md = ["# perf_unroll — blind unrolling time per tree (hadamard)", "",
          f"One random tree of {rows[0]['n_objects']} objects (depth 3, fan-in ≤ 4, 6 candidate modules, "
          f"attribute length 8); median of {ROUNDS} timed rounds ({ROUNDS_LARGE} at d ≥ 2^18) after a warm-up (kernels compiled and one "
          f"unroll at d = {DIMS[0]}); BLAS pinned to 1 thread, numba threads {rows[0]['numba_threads']}. "
          "The machine is shared (2 cores, other jobs running), so the times are indicative upper bounds. "
          "Refit iterations: a direct solve (word images kept) counts one, a conjugate-gradient step one.",
          "", "| d | objects | median (s) | min (s) | max (s) | exact | refit iterations |", "|---|---|---|---|---|---|---|"]
    md += [f"| {r['d_sketch']} | {r['n_objects']} | {r['median_s']:.3g} | {r['min_s']:.3g} | {r['max_s']:.3g} | "
           f"{r['exact']} | {r['pcg_iterations']} |" for r in rows]
    md += ["", NOTE_2_20]
    atomic_write_text(os.path.join(out_dir, "perf_unroll.md"), "\n".join(md) + "\n")
    return df


def main(out_dir=None, dims=DIMS):
    """Time blind unrolling at each d; the tables are rewritten after every d (a long d = 2^20 run
    leaves the finished rows on disk)."""
    import numba
    from threadpoolctl import threadpool_limits

    out_dir = out_dir or os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "results")
    rows = []
    df = None
    with warnings.catch_warnings(), threadpool_limits(1, user_api="blas"):
        warnings.simplefilter("ignore")
        ss.warm_up()
        g = _tree()
        truth = {tuple(g.paths(o)[0]): g.module(o) for o in g.ids}
        wb = ss.MatrixBank(dims[0], "hadamard", SEED)
        unroll(ss.sketch(g, wb), wb, MODULES, max_depth=3, max_inputs=4, length=8)      # warm-up
        for d in dims:
            bank = ss.MatrixBank(d, "hadamard", SEED)
            s = ss.sketch(g, bank)
            times, info = [], None
            rounds = ROUNDS if d < 2 ** 18 else ROUNDS_LARGE
            for _ in range(rounds):
                t = time.perf_counter()
                _, info = unroll(s, bank, MODULES, max_depth=3, max_inputs=4, length=8, return_info=True)
                times.append(time.perf_counter() - t)
            rows.append({"d_sketch": d, "n_objects": len(g.ids), "rounds": rounds,
                         "median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
                         "exact": int(dict(zip(info.paths, info.modules)) == truth),
                         "pcg_iterations": info.pcg_iterations, "numba_threads": numba.get_num_threads()})
            print(rows[-1], flush=True)
            df = _write(rows, out_dir)
    return df


if __name__ == "__main__":
    main()
