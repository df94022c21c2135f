"""Benchmark: fast sampling of D(b, q, d) and the matrix-free block-sparse operator (issue 11).

`main()` runs, in one process on ``THREADS`` numba threads and in this order:

* **sampling** of the stored D(b, q, d) at d = 102000 (b = 60, the smallest admissible block size,
  q = 6·b/d as in ``thm5_teacher``): the sampler before issue 11 (a verbatim copy kept below, a float
  coin per block, O(d²/b) coins, in a count pass and again in the fill pass) against
  ``BlockSparseOperator`` (geometric gaps between the nonzero blocks of a column, O(q·d/b) draws per
  column; the stream of the implicit operator, so a different draw of the same distribution than the
  old sampler), rounds interleaved, medians of wall and CPU time, their ratio, the verdict against
  the 0.1 s target, a check that the stored draw equals the implicit operator's block for block,
  and the nonzero blocks of both draws against their expectation q·d²/b;
* a whole **``sketchsim.sketch``** of a random network at d = 84·99864 (≈ 2^23) with
  ``MatrixBank(..., storage="implicit")``: wall and CPU time, peak RSS (``resource.getrusage``)
  against the engine's own n_objects × d float64 object sketches, and the bytes the matrices hold.
  The network has 20 objects, not 100: the engine keeps every object sketch (n_objects·d·8 bytes)
  and level temporaries (2.3× the object sketches for this graph at the peak, measured), and the
  sketch takes about 5 s of CPU per object at 2^23: 100 objects would need ≈ 15–20 GiB of this
  24 GiB machine shared with other jobs, and most of a quarter of an hour. It runs first, so that
  the peak RSS is its own;
* the **machine's limits**, measured with small Numba kernels on the same threads: the memory
  bandwidth of a triad a = b + s·c on 3 × 256 MiB, and two update rates (one update = one
  ``y += v·s`` on a float64): an axpy on L1-resident data (the core's FLOP / load-store bound) and
  b-entry blocks added at random places of an L2-resident array (the bound of the access pattern
  of the implicit apply, whose output tiles are cache-sized);
* the **implicit operator** at that d: ``apply`` of 1 and 8 dense rows and ``apply_t`` of 1 row, in
  updates per second (nonzero entries × rows / time) against those limits.

* the **stored operator's kernels** at d = 1008 … 6144 (:func:`bench_stored`, its own files
  ``results/perf_blocksparse_stored.{csv,md}``; ``--only stored`` runs it alone, in about a minute):
  R X and Rᵀ X as the library runs them against the kernels before this change (one row at a time,
  still the library's path for sparse rows) and against a dense float64 GEMM of the same matrix
  (the issue's "4–5× slower than dense"), 1 numba and 1 BLAS thread, interleaved rounds, medians,
  whether the outputs are bit-identical, and the update rates against this machine's L1 axpy rate
  measured in the same run.

Results: ``results/perf_blocksparse.csv`` and ``results/perf_blocksparse.md``. The machine is shared
(2 cores, other jobs running): absolute times are noisy; CPU times and interleaved ratios are the
meaningful numbers.
"""
from __future__ import annotations

import math
import os
import resource
import statistics
import time
import warnings

import numpy as np
from numba import njit

import sketchsim as ss
from sketchsim._matrix_kernels import STREAM_SIGMA_M, STREAM_SIGMA_S
from sketchsim._parallel import run_rows
from sketchsim._rng import mix3, name_key
from sketchsim._validation import min_block_size
from sketchsim.matrices import BlockSparseOperator, ImplicitBlockSparseOperator

THREADS = 2
SAMPLING_D = 102000
SAMPLING_B = min_block_size(SAMPLING_D)           # 60
SAMPLING_Q = 6 * SAMPLING_B / SAMPLING_D          # q·d/b = 6 nonzero blocks per column
SAMPLING_TARGET_S = 0.1
ROUNDS = 7
BIG_B = 84                                        # 3·max(⌈log2 N⌉, ⌈log2 d⌉ + 3) = 78 ≤ 84, 84 | d
BIG_D = 84 * 99864                                # 8 388 576 ≈ 2^23
BLOCKS_PER_COLUMN = 4                             # q·d/b: the smallest without the precondition warning
SEED = 11
SKETCH_SEED = 1
PEAK_FACTOR = 4
"""Bound on the peak memory of one sketch of this graph over its n_objects·d·8 bytes of object
sketches (the engine's level temporaries and the bins of an apply; measured 2.3× at d = BIG_D).
The run is refused when this estimate exceeds 80 % of the available memory."""


# ----------------------------------------------------------------------------- the previous sampler
# Verbatim copy of the D(b, q, d) sampler of sketchsim/_matrix_kernels.py (bs_count, bs_fill and their
# helpers) and of BlockSparseOperator.__init__ before issue 11: a float Bernoulli test of mix3(key, 3, j, i)
# for every block, in a count pass and again in the fill pass: the "before" column.
_INV53 = 1.0 / 9007199254740992.0
STREAM_BLOCK = 3    # the old sampler's coin per block, mix3(key, 3, j, i) (no longer used by the library)


@njit(cache=True, nogil=True)
def _pm(u):
    return np.int8(1) if (u & np.uint64(1)) else np.int8(-1)


@njit(cache=True, nogil=True)
def _ceil_log2(n):
    k = 0
    while (1 << k) < n:
        k += 1
    return k


@njit(cache=True, nogil=True)
def _nonzero(u, q):
    return float(u >> np.uint64(11)) * _INV53 < q


@njit(cache=True, nogil=True)
def _old_bs_count(j0, j1, key, d, b, q, counts):
    """counts[j] = number of nonzero blocks (η_{i,j} = 1) of column j, for j in [j0, j1)."""
    nb = d // b
    for j in range(j0, j1):
        c = 0
        for i in range(nb):
            if _nonzero(mix3(key, STREAM_BLOCK, j, i), q):
                c += 1
        counts[j] = c


@njit(cache=True, nogil=True)
def _old_bs_fill(j0, j1, key, d, b, q, col_ptr, blk_row, blk_sign):
    """Fill the nonzero blocks of columns [j0, j1) (Algorithm 2, signs only; scale is 1/√(dq)).

    Block layout (THEORY §9 item 4): f_s·σ_{s,j} | f_c·Enc(j, f'_m, f'_s) | f_m·σ_m, with
    Enc = [+1, bits of j (0-based, MSB first, 0→−1), f'_m, f'_s, +1 padding].
    """
    t = b // 3
    nb = d // b
    nbits = _ceil_log2(d)
    sm0 = _pm(mix3(key, STREAM_SIGMA_M, 0, 0))
    for j in range(j0, j1):
        ss0 = _pm(mix3(key, STREAM_SIGMA_S, j, 0))
        p = col_ptr[j]
        for i in range(nb):
            u = mix3(key, STREAM_BLOCK, j, i)
            if not _nonzero(u, q):
                continue
            fm = _pm(u)
            fs = _pm(u >> np.uint64(1))
            fc = _pm(u >> np.uint64(2))
            blk_row[p] = i
            for k in range(t):
                blk_sign[p, k] = fs * _pm(mix3(key, STREAM_SIGMA_S, j, k))
                blk_sign[p, 2 * t + k] = fm * _pm(mix3(key, STREAM_SIGMA_M, k, 0))
            blk_sign[p, t] = fc
            for k in range(nbits):
                bit = (j >> (nbits - 1 - k)) & 1
                blk_sign[p, t + 1 + k] = fc if bit else -fc
            blk_sign[p, t + 1 + nbits] = fc * fm * sm0
            blk_sign[p, t + 2 + nbits] = fc * fs * ss0
            for k in range(t + 3 + nbits, 2 * t):
                blk_sign[p, k] = fc
            p += 1


def old_sample(d, b, q, key):
    """(col_ptr, blk_row, blk_sign) exactly as BlockSparseOperator.__init__ drew them before issue 11."""
    counts = np.empty(d, dtype=np.int64)
    key = np.uint64(key)
    run_rows(_old_bs_count, d, d * (d // b) * 8, key, d, b, q, counts)
    col_ptr = np.zeros(d + 1, dtype=np.int64)
    np.cumsum(counts, out=col_ptr[1:])
    n = int(col_ptr[-1])
    blk_row = np.empty(n, dtype=np.int32)
    blk_sign = np.empty((n, b), dtype=np.int8)
    run_rows(_old_bs_fill, d, n * b * 4, key, d, b, q, col_ptr, blk_row, blk_sign)
    return col_ptr, blk_row, blk_sign


# ----------------------------------------------------------------------------- sampling
def bench_sampling(rounds=ROUNDS, d=SAMPLING_D, b=SAMPLING_B, q=SAMPLING_Q):
    """Old vs new sampler of one stored D(b, q, d), interleaved (rotating order), medians."""
    key = name_key(SEED, "tuple/1")
    old = old_sample(d, b, q, key)                    # compile and first touch
    new = BlockSparseOperator(d, b, q, key, "tuple/1")
    imp = ImplicitBlockSparseOperator(d, b, q, key, "tuple/1")
    cols = range(0, d, max(1, d // 200))
    same = bool(np.array_equal(new.col_ptr, imp.col_ptr)) and all(
        np.array_equal(x, y) for j in cols for x, y in zip(new.column_blocks(j), imp.column_blocks(j)))
    impls = {"old": lambda: old_sample(d, b, q, key), "new": lambda: BlockSparseOperator(d, b, q, key, "tuple/1")}
    wall = {n: [] for n in impls}
    cpu = {n: [] for n in impls}
    names = list(impls)
    for r in range(rounds):
        for n in names[r % 2:] + names[:r % 2]:
            t, c = time.perf_counter(), time.process_time()
            impls[n]()
            wall[n].append(time.perf_counter() - t)
            cpu[n].append(time.process_time() - c)
    med = {n: statistics.median(v) for n, v in wall.items()}
    medc = {n: statistics.median(v) for n, v in cpu.items()}
    return {"d": d, "b": b, "q": q, "n_blocks": new.n_blocks, "coins": d * (d // b), "rounds": rounds,
            "old_s": med["old"], "new_s": med["new"], "old_cpu_s": medc["old"], "new_cpu_s": medc["new"],
            "new_min_s": min(wall["new"]), "ratio": med["old"] / med["new"], "cpu_ratio": medc["old"] / medc["new"],
            "same_as_implicit": same, "n_blocks_old": int(old[0][-1]), "n_blocks_expected": q * d * (d // b),
            "verdict": "met" if med["new"] < SAMPLING_TARGET_S else "not met"}


# ----------------------------------------------------------------------------- the machine's limits
@njit(cache=True, nogil=True)
def _triad(r0, r1, a, b_, c, s):
    for i in range(r0, r1):
        a[i] = b_[i] + s * c[i]


@njit(cache=True, nogil=True)
def _l1_axpy(r0, r1, reps, out):
    """reps passes of y += v·x over a 2048-entry (16 KiB) slice per thread range: L1-resident."""
    y = np.zeros(2048)
    x = np.ones(2048)
    for r in range(r0, r1):
        v = 1e-9 * (r + 1)
        for _ in range(reps):
            for i in range(2048):
                ui = np.uint64(i)
                y[ui] += v * x[ui]
        out[r] = y[0]


@njit(cache=True, nogil=True)
def _l2_blocks(r0, r1, b, n_blocks, tile, out):
    """n_blocks additions of v·sv (b entries) at pseudo-random block rows of an L2-resident tile."""
    y = np.zeros(tile)
    sv = np.ones(b)
    nbk = tile // b
    for r in range(r0, r1):
        h = np.uint64(r + 1)
        for p in range(n_blocks):
            h = h * np.uint64(6364136223846793005) + np.uint64(1442695040888963407)
            r0_ = ((h >> np.uint64(33)) % np.uint64(nbk)) * np.uint64(b)
            v = 1e-9 * p
            for s in range(b):
                us = np.uint64(s)
                y[r0_ + us] += v * sv[us]
        out[r] = y[0]


def _l1_time(threads, passes, out):
    """Seconds of ``passes`` L1-resident axpy passes on each of ``threads`` threads."""
    t = time.perf_counter()
    run_rows(_l1_axpy, threads, 10**9, passes, out)
    return time.perf_counter() - t


def _l1_gups(threads, passes, times):
    """G updates/s of :func:`_l1_time` runs (median time)."""
    return threads * passes * 2048 / statistics.median(times) / 1e9


def machine_limits(threads=THREADS, reps=5):
    """Triad bandwidth (GB/s, 24 bytes per element) and update rates (G updates/s) on ``threads`` threads."""
    n = 32 * 2**20                                     # 3 arrays of 256 MiB
    a, b_, c = np.empty(n), np.ones(n), np.ones(n)
    run_rows(_triad, n, n, a, b_, c, 0.5)
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        run_rows(_triad, n, 10**9, a, b_, c, 0.5)
        ts.append(time.perf_counter() - t)
    triad = 24 * n / statistics.median(ts) / 1e9
    del a, b_, c
    out = np.empty(threads)
    run_rows(_l1_axpy, threads, 10**9, 1, out)
    _l2_blocks(0, 1, BIG_B, 10, 2**16, out)
    reps_l1, nblk = 20000, 400000
    ts, tb = [], []
    for _ in range(reps):
        ts.append(_l1_time(threads, reps_l1, out))
        t = time.perf_counter()
        run_rows(_l2_blocks, threads, 10**9, BIG_B, nblk, 2**16, out)   # 2^16 doubles = 512 KiB per thread
        tb.append(time.perf_counter() - t)
    l1 = _l1_gups(threads, reps_l1, ts)
    l2 = threads * nblk * BIG_B / statistics.median(tb) / 1e9
    return {"triad_gbs": triad, "l1_axpy_gups": l1, "l2_block_gups": l2, "threads": threads}


# ----------------------------------------------------------------------------- the implicit operator
def big_q(d=BIG_D, b=BIG_B):
    return BLOCKS_PER_COLUMN * b / d


def bench_apply(d=BIG_D, b=BIG_B):
    """apply of 1 and 8 dense rows and apply_t of 1 row of one implicit D(b, q, d)."""
    warm = ImplicitBlockSparseOperator(84 * 1024, 84, 0.05, 1, "tuple/1")
    for m in (1, 8):                                   # compile (or load) the binned kernels first
        warm.apply(np.ones((m, warm.d)))
        warm.apply_t(np.ones((m, warm.d)))
    op = ImplicitBlockSparseOperator(d, b, big_q(d, b), name_key(SEED, "tuple/1"), "tuple/1")
    t = time.perf_counter()
    n_blocks = op.n_blocks                             # the per-group block counts (one pass, kept)
    t_groups = time.perf_counter() - t
    rng = np.random.default_rng(0)
    rows = []
    for what, m in (("apply", 1), ("apply", 8), ("apply_t", 1)):
        X = rng.standard_normal((m, d))
        out = np.empty((m, d))
        f = op.apply if what == "apply" else op.apply_t
        t, c = time.perf_counter(), time.process_time()
        f(X, out=out)
        w, cp = time.perf_counter() - t, time.process_time() - c
        if not np.all(np.isfinite(out)):
            raise RuntimeError(f"{what} returned non-finite values")
        upd = n_blocks * b * m
        rows.append({"op": what, "rows": m, "wall_s": w, "cpu_s": cp, "updates": upd, "gups": upd / w / 1e9})
        print(rows[-1], flush=True)
        del X, out
    return {"d": d, "b": b, "q": op.q, "n_blocks": n_blocks, "group_counts_s": t_groups, "nbytes": op.nbytes,
            "rows": rows}


STORED_CASES = [(1008, 48, 0.5, 1, 1.0), (1008, 48, 0.5, 8, 1.0), (1008, 48, 0.5, 32, 1.0),
                (3072, 48, 0.5, 32, 1.0), (3072, 48, 0.5, 32, 0.5), (3072, 48, 0.25, 8, 1.0),
                (6144, 48, 0.5, 32, 1.0)]
"""(d, b, q, rows m, fraction of nonzero entries per row) of :func:`bench_stored`: d ≈ 1000 of the
issue's table, and the shapes of ``scenes_decode``'s block-sparse runs (32 attribute coordinates
through a path word, q = 0.5), one of them with half-zero rows."""


def _stored_rates(reps=7, passes=4000):
    """This machine's L1 axpy update rate on 1 thread (G updates/s), the bound of R X's inner loop."""
    out = np.empty(1)
    _l1_time(1, 1, out)
    return _l1_gups(1, passes, [_l1_time(1, passes, out) for _ in range(reps)])


def bench_stored(rounds=ROUNDS, cases=STORED_CASES):
    """R X and Rᵀ X of stored D(b, q, d): the library's kernels against the previous ones (one row at a
    time: ``bs_apply(..., tile=False)`` and ``bs_apply_t`` row by row) and a dense GEMM, 1 thread."""
    import numba
    from threadpoolctl import threadpool_limits

    from sketchsim import _matrix_kernels as K

    old_threads = numba.get_num_threads()
    numba.set_num_threads(1)
    rows = []
    try:
        with threadpool_limits(1, user_api="blas"):
            l1 = _stored_rates()
            for d, b, q, m, dens in cases:
                op = BlockSparseOperator(d, b, q, name_key(SEED, "tuple/1"), "tuple/1")
                R = op.dense()
                rng = np.random.default_rng(d + m)
                X = rng.standard_normal((m, d)) * (rng.random((m, d)) < dens)
                args = (op.col_ptr, op.blk_row, op.blk_sign, op.b, op.scale)
                out = {k: np.empty((m, d)) for k in ("old", "new", "old_t", "new_t", "gemm", "gemm_t")}

                def old_apply():
                    out["old"].fill(0.0)
                    K.bs_apply(0, m, X, out["old"], *args, False)

                def old_apply_t():
                    for k in range(m):
                        K.bs_apply_t(k, k + 1, X, out["old_t"], *args)

                fns = {"old": old_apply, "new": lambda: op._apply(X, out["new"]),
                       "gemm": lambda: np.matmul(X, R.T, out=out["gemm"]),
                       "old_t": old_apply_t, "new_t": lambda: op._apply_t(X, out["new_t"]),
                       "gemm_t": lambda: np.matmul(X, R, out=out["gemm_t"])}
                for f in fns.values():
                    f()
                times = {k: [] for k in fns}
                for r in range(rounds):
                    for k in (list(fns) if r % 2 == 0 else list(fns)[::-1]):
                        t = time.perf_counter()
                        fns[k]()
                        times[k].append(time.perf_counter() - t)
                med = {k: statistics.median(v) for k, v in times.items()}
                upd = op.n_blocks * b * m
                row = {"d": d, "b": b, "q": q, "rows": m, "density": dens, "n_blocks": op.n_blocks,
                       "same_bits_apply": bool(np.array_equal(out["old"], out["new"])),
                       "same_bits_apply_t": bool(np.array_equal(out["old_t"], out["new_t"])),
                       "max_rel_diff_gemm": float(np.abs(out["gemm"] - out["new"]).max()
                                                  / max(np.abs(out["gemm"]).max(), 1e-300)),
                       "l1_axpy_gups": l1}
                for k, v in med.items():
                    row[f"{k}_ms"] = v * 1e3
                row["gups_new"] = upd / med["new"] / 1e9
                row["gups_new_t"] = upd / med["new_t"] / 1e9
                rows.append(row)
                print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    finally:
        numba.set_num_threads(old_threads)
    return rows


def write_stored(out_dir, rows):
    import pandas as pd

    from sketchsim._io import atomic_write_text

    df = pd.DataFrame(rows)
    atomic_write_text(os.path.join(out_dir, "perf_blocksparse_stored.csv"), df.to_csv(index=False))
    l1 = rows[0]["l1_axpy_gups"]
    md = ["# perf_blocksparse — kernels of the stored D(b, q, d) (issue 11)", "",
          "Generated by `python experiments/perf_blocksparse.py --only stored`: 1 numba thread and 1 BLAS "
          f"thread, {ROUNDS} interleaved rounds, medians (ms). *previous*: the kernels before the tiled ones "
          "(one row at a time; still the library's path for sparse rows); *library*: the operator's "
          "`_apply` / `_apply_t` as they run now, kernel choice included (four rows per pass or "
          "batch-minor for R X, eight rows at a time for Rᵀ X), without the argument checks of the public "
          "`apply` / `apply_t`, which the previous kernels are timed without too; *dense*: float64 GEMM of the same matrix stored dense (`X @ R.T`, `X @ R`). "
          f"This machine's L1 axpy rate in the same run: {l1:.2f} G updates/s (one update = one nonzero "
          "entry times one row).", "",
          "| d | q | rows | nonzero | R X previous | R X library | ×previous | R X dense | library/dense "
          "| G upd/s (vs L1) | Rᵀ X previous | Rᵀ X library | ×previous | Rᵀ X dense | library/dense "
          "| same bits |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['d']} | {r['q']:g} | {r['rows']} | {r['density']:.0%} | {r['old_ms']:.2f} | "
                  f"{r['new_ms']:.2f} | ×{r['old_ms'] / r['new_ms']:.2f} | {r['gemm_ms']:.2f} | "
                  f"{r['new_ms'] / r['gemm_ms']:.2f} | {r['gups_new']:.2f} ({r['gups_new'] / l1:.0%}) | "
                  f"{r['old_t_ms']:.2f} | {r['new_t_ms']:.2f} | ×{r['old_t_ms'] / r['new_t_ms']:.2f} | "
                  f"{r['gemm_t_ms']:.2f} | {r['new_t_ms'] / r['gemm_t_ms']:.2f} | "
                  f"{r['same_bits_apply'] and r['same_bits_apply_t']} |")
    md += ["", "*same bits*: the library's outputs are `array_equal` to the previous kernels' (both "
           "operations). The dense GEMM rounds differently (max relative difference "
           f"{max(r['max_rel_diff_gemm'] for r in rows):.1e}); it is a speed reference, not a twin."]
    atomic_write_text(os.path.join(out_dir, "perf_blocksparse_stored.md"), "\n".join(md) + "\n")
    return df


def sketch_graph():
    """20 objects (levels of 13, 5 and 2): depth 3, fan-in 2–3, 2 top inputs, 2 modules per level,
    attributes of length 16."""
    return ss.random_network(depth=3, fan_in=(2, 3), n_top=2, modules_per_level=2, attr_dim=16,
                             random_state=SKETCH_SEED)


def bench_sketch(d=BIG_D, b=BIG_B):
    """One ss.sketch with an implicit bank at d (cold: matrices drawn lazily, nothing stored)."""
    from sketchsim._io import available_memory_bytes

    g = sketch_graph()
    need = PEAK_FACTOR * len(g) * d * 8 + 2**30
    avail = available_memory_bytes()
    if avail is not None and need > 0.8 * avail:
        raise RuntimeError(f"the sketch at d={d} needs about {need / 2**30:.1f} GiB; {avail / 2**30:.1f} GiB available")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for dw in (960, 84 * 1024):                    # compile the direct and the binned kernels
            small = ss.MatrixBank(dw, "block-sparse", 0, block_size=48 if dw == 960 else 84, block_prob=0.5,
                                  storage="implicit")
            ss.sketch(g, small)
    bank = ss.MatrixBank(d, "block-sparse", SEED, block_size=b, block_prob=big_q(d, b), storage="implicit")
    rss0 = _current_rss()
    t, c = time.perf_counter(), time.process_time()
    s = ss.sketch(g, bank)
    w, cp = time.perf_counter() - t, time.process_time() - c
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    ops = [op for op in bank._cache.values() if isinstance(op, ImplicitBlockSparseOperator)]
    return {"d": d, "b": b, "q": bank.block_prob, "n_objects": len(g), "n_matrices": len(ops),
            "wall_s": w, "cpu_s": cp, "rss_before": rss0, "rss_peak": rss1, "rss_peak_increase": rss1 - rss0,
            "object_sketches_bytes": len(g) * d * 8, "matrix_bytes_held": sum(op.nbytes for op in ops),
            "matrix_nbytes_estimate": bank.matrix_nbytes(), "stored_estimate": bank.block_prob * 9.0 * d * d,
            "finite": bool(np.all(np.isfinite(s))), "norm": float(np.linalg.norm(s))}


def _current_rss():
    """Resident set size of this process now, in bytes (/proc/self/statm; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


# ----------------------------------------------------------------------------- output
def _gib(x):
    return f"{x / 2**30:.2f} GiB"


def _write(out_dir, samp, lim, app, sk):
    import pandas as pd

    from sketchsim._io import atomic_write_text

    rows = []
    if samp:
        rows += [{"part": "sampling", "metric": k, "value": v} for k, v in samp.items()]
    if lim:
        rows += [{"part": "machine", "metric": k, "value": v} for k, v in lim.items()]
    if app:
        rows += [{"part": "implicit_apply", "metric": k, "value": v} for k, v in app.items() if k != "rows"]
        for r in app["rows"]:
            rows += [{"part": f"implicit_{r['op']}_m{r['rows']}", "metric": k, "value": v}
                     for k, v in r.items() if k not in ("op", "rows")]
    if sk:
        rows += [{"part": "implicit_sketch", "metric": k, "value": v} for k, v in sk.items()]
    df = pd.DataFrame(rows)
    atomic_write_text(os.path.join(out_dir, "perf_blocksparse.csv"), df.to_csv(index=False))
    md = ["# perf_blocksparse — sampling D(b, q, d) and the matrix-free block-sparse operator (issue 11)", "",
          f"{THREADS} numba threads, one process. The machine is shared (2 cores, other jobs running): wall "
          "times are noisy and inflated; CPU times and interleaved ratios are the robust numbers.", ""]
    if samp:
        md += ["## Sampling one stored D(b, q, d)", "",
               f"d = {samp['d']}, b = {samp['b']}, q = {samp['q']:.5g} (q·d/b = 6), {samp['coins']:.3g} coins, "
               f"{samp['n_blocks']} nonzero blocks; medians of {samp['rounds']} interleaved rounds.", "",
               "| sampler | wall (s) | CPU (s, all threads) |", "|---|---|---|",
               f"| old (float coin per block, two passes) | {samp['old_s']:.3f} | {samp['old_cpu_s']:.3f} |",
               f"| new (geometric gaps, O(q·d/b) draws per column) | {samp['new_s']:.3f} | "
               f"{samp['new_cpu_s']:.3f} |",
               "", f"old/new: **{samp['ratio']:.2f}×** wall, {samp['cpu_ratio']:.2f}× CPU. Target < "
               f"{SAMPLING_TARGET_S} s: **{samp['verdict']}** (median {samp['new_s']:.3f} s, min "
               f"{samp['new_min_s']:.3f} s).", "",
               "The new sampler draws from another stream than the old one (the positions come from geometric "
               "gaps, not one coin per block): the same distribution D(b, q, d), a different matrix at the same "
               f"seed: every block-sparse table must come from a run made after this change. Stored draw equal to the implicit operator's, "
               f"block for block (every {max(1, samp['d'] // 200)}th column): **{samp['same_as_implicit']}**. "
               f"Nonzero blocks: {samp['n_blocks']} (new), {samp['n_blocks_old']} (old), expected "
               f"q·d²/b = {samp['n_blocks_expected']:.0f}."]
    if lim:
        md += ["", "## Machine limits (same run)", "",
               f"* memory bandwidth, triad a = b + s·c on 3 × 256 MiB: **{lim['triad_gbs']:.1f} GB/s** "
               "(24 bytes per element counted);",
               f"* update rate (y += v·s), axpy on L1-resident data: **{lim['l1_axpy_gups']:.2f} G updates/s**;",
               f"* update rate, {BIG_B}-entry blocks at random places of a 512 KiB (L2) array per thread, the "
               f"access pattern of the implicit apply: **{lim['l2_block_gups']:.2f} G updates/s**."]
    if app:
        md += ["", f"## Implicit operator at d = {app['d']} (≈ 2^{math.log2(app['d']):.2f})", "",
               f"b = {app['b']}, q = {app['q']:.4g} (q·d/b = {BLOCKS_PER_COLUMN}), {app['n_blocks']} nonzero blocks "
               f"({app['n_blocks'] * app['b']:.3g} nonzero entries); counting the blocks per group of columns (kept, "
               f"{app['nbytes']} bytes) took {app['group_counts_s']:.2f} s.", "",
               "| operation | rows | wall (s) | CPU (s) | G updates/s | vs L2 block bound | vs L1 axpy bound |",
               "|---|---|---|---|---|---|---|"]
        for r in app["rows"]:
            md.append(f"| {r['op']} | {r['rows']} | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | {r['gups']:.2f} | "
                      + (f"{r['gups'] / lim['l2_block_gups']:.0%} | {r['gups'] / lim['l1_axpy_gups']:.0%} |" if lim
                         else "— | — |"))
        md += ["", "An update is one nonzero entry of R times one row (R X costs nnz(R)·m updates). Each apply "
               "regenerates every block (geometric gaps, one log each), bins them by output tile and adds them "
               "tile by tile; apply_t adds per-block dot products into scattered outputs."]
    if sk:
        md += ["", "## A whole sketch at d ≈ 2^23 with `storage=\"implicit\"`", "",
               f"`ss.sketch` of a {sk['n_objects']}-object random network (depth 3, fan-in 2–3, 2 modules per "
               f"level, attributes of length 16; {sk['n_matrices']} matrices) at d = {sk['d']}, b = {sk['b']}, "
               f"q·d/b = {BLOCKS_PER_COLUMN}, cold bank: **{sk['wall_s']:.1f} s** wall, {sk['cpu_s']:.1f} s CPU; "
               f"sketch finite: {sk['finite']}.", "",
               f"* peak RSS {_gib(sk['rss_peak'])}, {_gib(sk['rss_peak_increase'])} above the RSS before the sketch "
               f"({_gib(sk['rss_before'])}); the engine's object sketches alone are {sk['n_objects']} × d × 8 B = "
               f"{_gib(sk['object_sketches_bytes'])}, one matrix stored as blocks would be "
               f"≈ {_gib(sk['stored_estimate'] / 9 * (1 + 4 / BIG_B))} (a dense one "
               f"{sk['d'] ** 2 * 8 / 2**40:.0f} TiB);",
               f"* bytes held by all {sk['n_matrices']} matrices afterwards: {sk['matrix_bytes_held']} "
               f"(block counts per group of columns); the size guard's estimate per matrix "
               f"{_gib(sk['matrix_nbytes_estimate'])} (O(d) plus a fixed apply scratch), against "
               f"{_gib(sk['stored_estimate'])} for one stored matrix."]
    atomic_write_text(os.path.join(out_dir, "perf_blocksparse.md"), "\n".join(md) + "\n")
    return df


def main(out_dir=None, sampling=True, big=True, d=BIG_D, stored=True):
    """Run the benchmarks and write results/perf_blocksparse.csv and .md (rewritten after each part),
    and results/perf_blocksparse_stored.{csv,md} (``stored``)."""
    import numba
    from threadpoolctl import threadpool_limits

    out_dir = out_dir or os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "results")
    old = numba.get_num_threads()
    numba.set_num_threads(min(THREADS, numba.config.NUMBA_NUM_THREADS))
    samp = lim = app = sk = None
    try:
        with threadpool_limits(1, user_api="blas"):
            if sampling:
                samp = bench_sampling()
                print(samp, flush=True)
                _write(out_dir, samp, lim, app, sk)
            if big:                                        # first, so that its peak RSS is its own
                sk = bench_sketch(d)
                print(sk, flush=True)
                _write(out_dir, samp, lim, app, sk)
            lim = machine_limits()
            print(lim, flush=True)
            _write(out_dir, samp, lim, app, sk)
            if big:
                app = bench_apply(d)
            df = _write(out_dir, samp, lim, app, sk)
        if stored:
            write_stored(out_dir, bench_stored())
        return df
    finally:
        numba.set_num_threads(old)


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="Block-sparse benchmarks (issue 11).")
    ap.add_argument("--only", choices=["stored"], help="stored: only the stored operator's kernels "
                    "(results/perf_blocksparse_stored.*), about a minute")
    ap.add_argument("--out", default=None, help="results directory (default: the repository's results/)")
    a = ap.parse_args()
    if a.only == "stored":
        out = a.out or os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "results")
        os.makedirs(out, exist_ok=True)
        write_stored(out, bench_stored())
    else:
        main(out_dir=a.out)
