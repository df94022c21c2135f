"""Benchmark of the sketch engine (issue: sketch engine, "Performance").

Measures, in one run and on one machine:

* the machine's limits: NumPy float64 GEMM GFLOP/s (square, d = 2048, all BLAS threads) and copy
  GB/s (a 256 MiB array);
* objects sketched per second for a ~100-object random network with
  - ``baseline``: a straightforward NumPy implementation that sketches object by object
    (``sketchsim.reference.sketch_objects``: one matrix–vector product per factor, the literal
    formula, dense matrices as ``R @ v``; for hadamard, one operator apply per factor),
  - ``single``: ``sketchsim.sketch`` (one input),
  - ``batched``: ``sketchsim.sketch_batch`` with B = 64 inputs sharing the tree;
  for d = 256…4096 (haar, gaussian, block-sparse; block-sparse uses the multiple of b = 48 just
  below each power of two, since d must be a multiple of b and b a multiple of 3) and
  d = 2^8…2^20 for hadamard;
* the executed matrix-product flops of the batched schedule, hence the fraction of the GEMM limit;
* sampling time and memory of D(b, q, d) at d = 4080 for several q;
* the hadamard target (issue 11): ``sketchsim.sketch`` of the same network at d = 2^20 in < 1 s on
  2 threads, timed on 2 threads and on 1 (BLAS pinned to as many), interleaved, median of rounds,
  with the first (cold) call, CPU and system time, page faults, a check that 1 and 2 engine
  (numba) threads give the same bits, and a bound from measured parts: operator rows per sketch ×
  the time of one fused operator row (1 thread) / 2 threads.

Run: ``python experiments/perf_sketch.py [--quick] [--only hadamard-2e20]``. Writes
``results/perf_sketch.csv``, ``results/perf_sketch_sampling.csv`` and ``results/perf_sketch.md``
(targets and verdicts); ``--only hadamard-2e20`` runs the machine limits and the hadamard target
only (a minute or two) and writes ``results/perf_sketch_hadamard-2e20.{csv,md}``.
Timings are medians of repeats after a warm-up (Numba compilation excluded).
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time
import warnings

import numpy as np
import pandas as pd

import sketchsim as ss
from sketchsim import reference
from sketchsim._io import atomic_write_text
from sketchsim.harness.studykit import median_time
from sketchsim.matrices import module_name, tuple_name
from sketchsim.sketch import _plan

RESULTS = os.path.join(os.path.dirname(__file__), os.pardir, "results")
B = 64
BLOCK = 48


def timeit(fn, min_time=1.0, max_reps=7, min_reps=3):
    """(median wall time of ``fn()``, repeats): at least ``min_reps``, about ``min_time`` s; a repeat
    longer than 5·min_time ends the loop (:func:`sketchsim.harness.studykit.median_time`)."""
    return median_time(fn, min_time, max_reps, min_reps, stop_after=5 * min_time)


def blas_threads():
    from threadpoolctl import threadpool_info

    return ",".join(str(i["num_threads"]) for i in threadpool_info() if i["user_api"] == "blas")


def machine_limits():
    rng = np.random.default_rng(0)
    n = 2048
    A, Bm = rng.standard_normal((n, n)), rng.standard_normal((n, n))
    A @ Bm
    t, _ = timeit(lambda: A @ Bm, min_time=2.0, min_reps=5)
    gemm = 2 * n ** 3 / t / 1e9
    src = np.ones(2 ** 25)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    tc, _ = timeit(lambda: np.copyto(dst, src), min_time=1.0, min_reps=5)
    copy = 2 * src.nbytes / tc / 1e9          # bytes read + written
    return {"gemm_gflops": gemm, "copy_gbs": copy}


def bench_graph():
    """A fixed random network of about 100 objects (depth 3, fan-in 4–5, 3 modules per level)."""
    return ss.random_network(depth=3, fan_in=(4, 5), n_top=4, modules_per_level=3, attr_dim=16,
                             random_state=3)


def executed_flops(graph, d, batch):
    """Flops of the matrix products the batched schedule runs (dense families, warm bank).

    With B = 64 every module group has at least L + 1 attribute rows, so the attribute branch of
    every object goes through the cached map (one (rows × L)·(L × d) product); only objects with
    inputs apply R_2 and R_{M,0} to their input sketch, and each distinct (child, position) pair
    of every input list applies R_i once (``sketchsim.sketch._run``).
    """
    plan = _plan(graph)
    n_products = 0
    attr = 0
    for lv in plan.levels:
        n_products += 2 * len(lv.internal)              # R_2 and R_{M,0} on s_input
        if lv.edges is not None:
            n_products += lv.edges.n_y                  # R_i on each distinct (child, position)
        for m, a, z in lv.groups:
            L = max(len(graph.attributes[plan.order[r]]) for r in range(a, z))
            attr += (z - a) * 2 * d * L                 # attribute map A_M x
    n_products += plan.output_edges.n_y
    return batch * (n_products * 2 * d * d + attr)


def make_bank(family, d, seed=0):
    if family == "block-sparse":
        return ss.MatrixBank(d, family, seed, block_size=BLOCK, block_prob=min(1.0, 8 * BLOCK / d))
    return ss.MatrixBank(d, family, seed)


def baseline_fn(graph, bank):
    if bank.family in ("haar", "gaussian", "block-sparse"):
        mats = {n: bank.dense(n) for n in bank.matrix_names(graph)}
        return lambda: reference.sketch_objects(graph, lambda n, v: mats[n] @ v, bank.d_sketch)
    return lambda: reference.sketch_objects(graph, lambda n, v: bank.get(n).apply(v), bank.d_sketch)


def dims(family, quick):
    if family == "hadamard":
        return [2 ** k for k in ((8, 10, 14) if quick else (8, 10, 12, 14, 16, 18, 20))]
    powers = (256, 1024) if quick else (256, 512, 1024, 2048, 4096)
    if family == "block-sparse":
        return [BLOCK * (p // BLOCK) for p in powers]
    return list(powers)


def bench_sketching(graph, limits, quick):
    rows = []
    n_obj = len(graph)
    attrs, weights, out_w = ss.fixed_tree_values(graph, B, random_state=1)
    for family in ss.FAMILIES:
        for d in dims(family, quick):
            bank = make_bank(family, d)
            for name in bank.matrix_names(graph):      # draw every matrix before timing
                bank.get(name)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ss.sketch(graph, bank)
                t_single, r_single = timeit(lambda: ss.sketch(graph, bank))
                dense_ok = family != "hadamard" or d <= 2 ** 14
                t_base, r_base = timeit(baseline_fn(graph, bank), min_time=1.0, max_reps=5) \
                    if (dense_ok or d <= 2 ** 20) else (np.nan, 0)
                fits = n_obj * B * d * 8 * 4 < 6 * 2 ** 30
                if fits:
                    ss.sketch_batch(graph, bank, attrs, weights, out_w)
                    t_batch, r_batch = timeit(lambda: ss.sketch_batch(graph, bank, attrs, weights, out_w))
                else:
                    t_batch, r_batch = np.nan, 0
            flops = executed_flops(graph, d, B) if family in ("haar", "gaussian") else np.nan
            for mode, t, reps, batch in (("baseline", t_base, r_base, 1), ("single", t_single, r_single, 1),
                                         ("batched", t_batch, r_batch, B)):
                row = {"family": family, "d_sketch": d, "mode": mode, "batch": batch, "n_objects": n_obj,
                       "time_s": t, "reps": reps, "objects_per_s": n_obj * batch / t,
                       "speedup_vs_baseline": (t_base / t) * batch}
                if mode == "batched" and family in ("haar", "gaussian"):
                    row["gflops"] = flops / t / 1e9
                    row["frac_gemm"] = row["gflops"] / limits["gemm_gflops"]
                rows.append(row)
            print(f"{family:>12} d={d:>8}: baseline {t_base * 1e3:9.2f} ms, single {t_single * 1e3:9.2f} ms "
                  f"(×{t_base / t_single:5.1f}), batched {t_batch * 1e3:9.2f} ms for {B} "
                  f"(×{t_base * B / t_batch:6.1f})", flush=True)
            del bank
    return pd.DataFrame(rows)


TARGET_D = 2 ** 20
TARGET_S = 1.0


def operator_rows(graph, bank, batch=1):
    """Operator rows one sketch applies once the bank is warm (attribute maps cached): R_p on each
    distinct (child, position), R_2 and R_{M,0} on each object with inputs, and the three matrices
    on every attribute row of a group that does not use its map (``sketchsim.sketch._run``)."""
    from sketchsim.sketch import _use_attr_map

    plan = _plan(graph)
    d = bank.d_sketch
    rows = plan.output_edges.n_y
    pairs = {(graph.modules[m], max(len(graph.attributes[plan.order[r]]) for r in range(a, z)))
             for lv in plan.levels for m, a, z in lv.groups}
    maps_bytes = sum(8 * d * (L + 1) for _, L in pairs)
    for lv in plan.levels:
        if lv.edges is not None:
            rows += lv.edges.n_y + 2 * len(lv.internal)
        for m, a, z in lv.groups:
            L = max(len(graph.attributes[plan.order[r]]) for r in range(a, z))
            if not _use_attr_map(bank, graph.modules[m], L, (z - a) * batch, maps_bytes):
                rows += 3 * (z - a)
    return rows * batch


def _timed(fn):
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    out = fn()
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return out, {"time_s": wall, "cpu_s": r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime,
                 "sys_s": r1.ru_stime - r0.ru_stime, "minflt": r1.ru_minflt - r0.ru_minflt}


def bench_gather_block(op, rounds=5, n_rows=16):
    """Pass 1 + pass 2 of the blocked gather (``_hadamard_kernels._gather_blocked``) of ``op``'s
    permutation on ``n_rows`` cold rows (n_rows·d·8 bytes, beyond the caches), 1 thread, with the
    fixed block C = 4096 used before and with ``gather_block(d)``, interleaved: (ms per row, ms per
    row, C, same bits)."""
    from sketchsim import _hadamard_kernels as HK

    d = op.d
    x = np.random.default_rng(1).standard_normal((n_rows, d))
    plans = {}
    for C in (HK.GATHER_BLOCK_MIN, HK.gather_block(d)):
        pos, q = np.empty(d, np.int32), np.empty(d, np.uint16)
        HK.gather_plan(op.perm, C, pos, q)
        plans[C] = (pos, q, np.empty(C), np.empty((n_rows, d)))
    t = {C: [] for C in plans}

    def run(C):
        pos, q, buf, y = plans[C]
        for i in range(n_rows):
            HK._gather_blocked(x[i], y[i], pos, q, op.signs[2], buf)

    for C in plans:
        run(C)
    for r in range(rounds):
        for C in (list(plans) if r % 2 == 0 else list(plans)[::-1]):
            t0 = time.perf_counter()
            run(C)
            t[C].append((time.perf_counter() - t0) / n_rows)
    c_old, c_new = list(plans)
    same = bool(np.array_equal(plans[c_old][3], plans[c_new][3]))
    return float(np.median(t[c_old])) * 1e3, float(np.median(t[c_new])) * 1e3, c_new, same


def bench_hadamard_target(graph, limits, rounds=5):
    """The issue-11 target: hadamard sketch of ``graph`` at d = 2^20 in < 1 s on 2 threads.

    Interleaved rounds (thread order alternating), each a warm ``ss.sketch`` on 2 and on 1
    thread(s) (numba threads and BLAS threads pinned together); the first call (matrices drawn,
    gather plans and attribute maps built) reported apart. Also the time of one operator row
    R x ↦ ½(x + R x) on 1 thread (median of 15), the bound it implies, whether 1 and 2 engine
    threads give the same bits (BLAS threads fixed), and how far the 1-thread run (BLAS on 1 too)
    is from the 2-thread one (OpenBLAS rounds the attribute-map GEMM differently per thread count).
    """
    import numba
    from threadpoolctl import threadpool_limits

    d = TARGET_D
    n_obj = len(graph)
    bank = ss.MatrixBank(d, "hadamard", 0)
    nmax = min(2, numba.config.NUMBA_NUM_THREADS)
    counts = [nmax, 1] if nmax > 1 else [1]
    n0 = numba.get_num_threads()
    try:
        def cold():
            for name in bank.matrix_names(graph):
                bank.get(name)
            return ss.sketch(graph, bank)

        numba.set_num_threads(nmax)
        with threadpool_limits(limits=nmax):
            _, first = _timed(cold)
        n_rows = operator_rows(graph, bank)
        samples = {n: [] for n in counts}
        sketches = {}
        for r in range(rounds):
            for n in (counts if r % 2 == 0 else counts[::-1]):
                numba.set_num_threads(n)
                with threadpool_limits(limits=n):
                    s, m = _timed(lambda: ss.sketch(graph, bank))
                samples[n].append(m)
                sketches.setdefault(n, s)
                print(f"  hadamard d=2^20, {n} thread(s), round {r + 1}: {m['time_s']:.3f} s "
                      f"(cpu {m['cpu_s']:.2f} s, sys {m['sys_s']:.2f} s, {m['minflt']} faults)", flush=True)
        numba.set_num_threads(1)                    # engine threads only: BLAS stays at nmax
        with threadpool_limits(limits=nmax):
            engine_1 = ss.sketch(graph, bank)
        op = bank.get("tuple/2")
        x = np.random.default_rng(0).standard_normal((1, d))
        y = np.empty((1, d))
        op._apply_rows(x, None, y, 0.5)
        t_row, _ = timeit(lambda: op._apply_rows(x, None, y, 0.5), min_time=0.3, max_reps=15, min_reps=15)
        g_old, g_new, g_block, g_same = bench_gather_block(op)
    finally:
        numba.set_num_threads(n0)
    identical = bool(np.array_equal(engine_1, sketches[counts[0]]))
    diff_all = float(np.abs(sketches[counts[-1]] - sketches[counts[0]]).max())
    rows = []
    for n in counts:
        med = {k: float(np.median([m[k] for m in samples[n]])) for k in samples[n][0]}
        rows.append({"family": "hadamard", "d_sketch": d, "mode": "target", "batch": 1, "n_objects": n_obj,
                     "threads": n, "time_s": med["time_s"], "time_min_s": min(m["time_s"] for m in samples[n]),
                     "reps": len(samples[n]), "objects_per_s": n_obj / med["time_s"], "cpu_s": med["cpu_s"],
                     "sys_s": med["sys_s"], "minflt": med["minflt"], "first_call_s": first["time_s"],
                     "operator_rows": n_rows, "row_time_s": t_row, "bound_s": n_rows * t_row / n,
                     "bits_identical_engine_threads": identical, "max_abs_diff_blas_threads": diff_all,
                     "gather_ms_block4096": g_old, "gather_ms_block_d": g_new, "gather_block_d": g_block,
                     "gather_bits_identical": g_same,
                     "load_avg_1min": os.getloadavg()[0]})
    df = pd.DataFrame(rows)
    t2 = float(df[df.threads == counts[0]].time_s.iloc[0])
    print(f"hadamard d=2^20, {n_obj} objects: {t2:.3f} s on {counts[0]} threads (target < {TARGET_S:g} s: "
          f"{'met' if t2 < TARGET_S else 'MISSED'}, ×{t2 / TARGET_S:.2f} of the target); first call "
          f"{first['time_s']:.2f} s; {n_rows} operator rows × {t_row * 1e3:.2f} ms (1 thread) / {counts[0]} = "
          f"{n_rows * t_row / counts[0]:.3f} s bound; 1 vs {counts[0]} engine threads bit-identical: {identical}; "
          f"1 vs {counts[0]} BLAS threads too: max |diff| {diff_all:.1e}",
          flush=True)
    return df


def hadamard_target_lines(tgt, limits):
    """Markdown section of the hadamard target from its rows (mode ``target``)."""
    ok = lambda c: "met" if c else "MISSED"  # noqa: E731
    r2 = tgt.sort_values("threads").iloc[-1]
    lines = [
        "## Hadamard target: d = 2^20, ~100 objects, < 1 s on 2 threads (issue 11)",
        "",
        f"`ss.sketch` of the benchmark network ({int(r2.n_objects)} objects) with a warm bank (matrices drawn, "
        f"gather plans and attribute maps built); interleaved rounds, medians; numba and BLAS threads pinned "
        f"together. Machine limits of the same run: GEMM {limits['gemm_gflops']:.1f} GFLOP/s, copy "
        f"{limits['copy_gbs']:.1f} GB/s; 1-minute load average at the end: {r2.load_avg_1min:.1f} on "
        f"{os.cpu_count()} cpus.",
        "",
        "| threads | median (s) | min (s) | CPU (s) | system (s) | minor faults | operator rows | bound: rows × row / threads (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for _, r in tgt.sort_values("threads", ascending=False).iterrows():
        lines.append(f"| {int(r.threads)} | {r.time_s:.3f} | {r.time_min_s:.3f} | {r.cpu_s:.2f} | {r.sys_s:.2f} | "
                     f"{r.minflt:.0f} | {int(r.operator_rows)} | {r.bound_s:.3f} |")
    lines += [
        "",
        f"- target < {TARGET_S:g} s on {int(r2.threads)} threads: **{r2.time_s:.3f} s**, ×{r2.time_s / TARGET_S:.2f} of the "
        f"target: **{ok(r2.time_s < TARGET_S and int(r2.threads) >= 2)}**",
        f"- one operator row ½(x + R x) at d = 2^20, 1 thread: {r2.row_time_s * 1e3:.2f} ms; first (cold) call "
        f"{r2.first_call_s:.2f} s",
        f"- 1 and {int(r2.threads)} engine (numba) threads, BLAS threads fixed, give bit-identical sketches: "
        f"{bool(r2.bits_identical_engine_threads)}; 1 thread with BLAS also on 1 against {int(r2.threads)}: "
        + (f"max |diff| {r2.max_abs_diff_blas_threads:.1e} (OpenBLAS's GEMM of the attribute maps rounds "
           "differently with 1 and 2 threads on this machine)" if r2.max_abs_diff_blas_threads > 0 else
           "the same bits here too (max |diff| 0; OpenBLAS may split the attribute-map GEMM differently with 1 "
           "and 2 threads on other machines, which would change its rounding)"),
    ]
    if "gather_ms_block_d" in tgt and np.isfinite(r2.gather_ms_block_d):
        lines.append(f"- the gather P x of one cold row (1 thread, interleaved, medians): blocks of 4096 entries "
                     f"{r2.gather_ms_block4096:.2f} ms, blocks of gather_block(d) = {int(r2.gather_block_d)} "
                     f"{r2.gather_ms_block_d:.2f} ms (×{r2.gather_ms_block4096 / r2.gather_ms_block_d:.2f}); "
                     f"the same bits: {bool(r2.gather_bits_identical)}")
    lines.append("")
    return lines


def bench_sampling(quick):
    rows = []
    d = 4080
    for q in (0.05, 0.1, 0.25, 0.5, 1.0):
        def draw():
            return ss.MatrixBank(d, "block-sparse", 1, block_size=BLOCK, block_prob=q).get("tuple/1")

        draw()
        t, reps = timeit(draw, min_time=0.5)
        op = draw()
        rows.append({"d_sketch": d, "block_size": BLOCK, "block_prob": q, "time_s": t, "reps": reps,
                     "nbytes": op.nbytes, "dense_nbytes": 8 * d * d, "bytes_per_q_d2": op.nbytes / (q * d * d)})
        print(f"sampling D(48, {q}, {d}): {t * 1e3:.1f} ms, {op.nbytes / 2**20:.1f} MiB", flush=True)
    return pd.DataFrame(rows)


def report(df, samp, limits, graph, elapsed):
    def get(family, d, mode, col):
        sel = df[(df.family == family) & (df.d_sketch == d) & (df["mode"] == mode)]
        return float(sel[col].iloc[0]) if len(sel) else float("nan")

    had = df[(df.family == "hadamard") & (df["mode"] == "single")]
    dmax = int(had.d_sketch.max())
    t_had = get("hadamard", dmax, "single", "time_s")
    tgt = df[df["mode"] == "target"]
    if len(tgt):
        r2 = tgt.sort_values("threads").iloc[-1]
        had_line = (f"| hadamard: 100-object graph at d = 2^20 in < 1 s on 2 threads | {r2.time_s:.2f} s for "
                    f"{int(r2.n_objects)} objects on {int(r2.threads)} threads (×{r2.time_s / TARGET_S:.2f} of the target) | "
                    f"{'met' if r2.time_s < TARGET_S and int(r2.threads) >= 2 else 'MISSED'} |")
    else:
        had_line = (f"| hadamard: 100-object graph at d = 2^{int(np.log2(dmax))} in < 1 s | {t_had:.2f} s for "
                    f"{len(graph)} objects | {'met' if dmax == 2 ** 20 and t_had < 1 else 'MISSED'} |")
    frac = max(get("haar", 1024, "batched", "frac_gemm"), get("gaussian", 1024, "batched", "frac_gemm"))
    frac_h = get("haar", 1024, "batched", "frac_gemm")
    sp256 = min(get("haar", 256, "single", "speedup_vs_baseline"), get("gaussian", 256, "single", "speedup_vs_baseline"))
    s4080 = samp[samp.block_prob == 0.1]
    t_samp = float(s4080.time_s.iloc[0]) if len(s4080) else float("nan")
    mem_ratio = samp.bytes_per_q_d2
    ok = lambda c: "met" if c else "MISSED"  # noqa: E731
    lines = [
        "# Sketch engine benchmark",
        "",
        "Generated by `python experiments/perf_sketch.py`"
        + (f" in {elapsed:.0f} s" if elapsed == elapsed else " (report rebuilt with `--report-only`)")
        + f" on {platform.machine()} "
        f"({os.cpu_count()} cpus), numpy {np.__version__}, Python {sys.version.split()[0]}.",
        f"Graph: {len(graph)} objects, {len(graph.modules)} modules, depth {graph.max_depth}, "
        f"attributes of length 16; batched B = {B}. Medians of repeats after warm-up; BLAS threads "
        f"{blas_threads()} for every measurement (GEMM limit included); engine kernels on "
        f"{__import__('numba').get_num_threads()} thread(s).",
        "",
        "## Machine limits measured in this run",
        f"- float64 GEMM (2048², all BLAS threads): **{limits['gemm_gflops']:.1f} GFLOP/s**",
        f"- copy bandwidth (256 MiB, read + write): **{limits['copy_gbs']:.1f} GB/s**",
        "",
        "## Targets",
        "| target | measured | verdict |",
        "|---|---|---|",
        f"| batched dense sketching at d = 1024, B = 64: ≥ 50% of GEMM | {frac:.0%} of GEMM "
        f"(haar {frac_h:.0%}) | {ok(frac >= 0.5)} |",
        f"| single sketch at d = 256: ≥ 5× the NumPy baseline | ×{get('haar', 256, 'single', 'speedup_vs_baseline'):.1f} "
        f"(haar), ×{get('gaussian', 256, 'single', 'speedup_vs_baseline'):.1f} (gaussian); verdict on the worse | "
        f"{ok(sp256 >= 5)} |",
        had_line,
        f"| sampling D(48, 0.1, 4080) < 0.5 s | {t_samp * 1e3:.0f} ms | {ok(t_samp < 0.5)} |",
        f"| memory of D ∝ q·d², not d² | bytes/(q·d²) = {mem_ratio.min():.2f}…{mem_ratio.max():.2f} "
        f"for q = {samp.block_prob.min()}…{samp.block_prob.max()} | {ok(mem_ratio.max() / mem_ratio.min() < 1.3)} |",
        "",
        "hadamard memory per matrix is O(d): a permutation and three sign vectors, plus a gather plan from "
        "d = 2^13 on (13 bytes per coordinate in all).",
        "",
    ]
    if len(tgt):
        lines += hadamard_target_lines(tgt, limits)
    lines += [
        "## Throughput (objects sketched per second)",
        "",
    ]
    df = df[df["mode"].isin(["baseline", "single", "batched"])]
    piv = df.pivot_table(index=["family", "d_sketch"], columns="mode", values="objects_per_s", sort=False)
    piv = piv[["baseline", "single", "batched"]]
    sp = df.pivot_table(index=["family", "d_sketch"], columns="mode", values="speedup_vs_baseline", sort=False)
    lines.append("| family | d | baseline obj/s | single obj/s | ×baseline | batched obj/s | ×baseline | batched % of GEMM |")
    lines.append("|---|---|---|---|---|---|---|---|")
    for (fam, d), r in piv.iterrows():
        fg = get(fam, d, "batched", "frac_gemm")
        lines.append(f"| {fam} | {d} | {r['baseline']:.3g} | {r['single']:.3g} | {sp.loc[(fam, d), 'single']:.1f} | "
                     f"{r['batched']:.3g} | {sp.loc[(fam, d), 'batched']:.1f} | "
                     f"{'' if np.isnan(fg) else f'{fg:.0%}'} |")
    lines += ["", "Blank batched cells: B·n·d too large to hold in memory (n = objects).", ""]
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer dimensions (a smoke run; not committed)")
    p.add_argument("--out", default=RESULTS, help="results directory")
    p.add_argument("--report-only", action="store_true",
                   help="rebuild perf_sketch.md (and the derived flop columns) from the committed CSVs")
    p.add_argument("--only", choices=["hadamard-2e20"],
                   help="run only this part (with the machine limits) and write perf_sketch_<part>.{csv,md}")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds of the hadamard target (default 5)")
    p.add_argument("--blas-threads", type=int, default=os.cpu_count(),
                   help="BLAS threads for every measurement, the GEMM limit included (default: all cpus)")
    args = p.parse_args(argv)
    from threadpoolctl import threadpool_limits

    if args.report_only:
        _rebuild_report(args)
        return
    with threadpool_limits(limits=args.blas_threads):
        _main(args)


def _rebuild_report(args):
    df = pd.read_csv(os.path.join(args.out, "perf_sketch.csv"))
    samp = pd.read_csv(os.path.join(args.out, "perf_sketch_sampling.csv"))
    graph = bench_graph()
    limits = {"gemm_gflops": float(df.gemm_gflops.iloc[0]), "copy_gbs": float(df.copy_gbs.iloc[0])}
    sel = (df["mode"] == "batched") & df.family.isin(["haar", "gaussian"])
    flops = df[sel].d_sketch.map(lambda d: executed_flops(graph, int(d), B))
    df.loc[sel, "gflops"] = flops / df.loc[sel, "time_s"] / 1e9
    df.loc[sel, "frac_gemm"] = df.loc[sel, "gflops"] / limits["gemm_gflops"]
    from sketchsim._io import atomic_path

    with atomic_path(os.path.join(args.out, "perf_sketch.csv")) as tmp:
        df.to_csv(tmp, index=False)
    md = report(df, samp, limits, graph, float("nan"))
    atomic_write_text(os.path.join(args.out, "perf_sketch.md"), md)
    print(md)


def _main(args):
    t0 = time.perf_counter()
    ss.warm_up()
    graph = bench_graph()
    limits = machine_limits()
    print(f"limits: GEMM {limits['gemm_gflops']:.1f} GFLOP/s, copy {limits['copy_gbs']:.1f} GB/s", flush=True)
    if args.only == "hadamard-2e20":
        _main_target(args, graph, limits, t0)
        return
    samp = bench_sampling(args.quick)
    df = bench_sketching(graph, limits, args.quick)
    df = pd.concat([df, bench_hadamard_target(graph, limits, args.rounds)], ignore_index=True)
    for k, v in limits.items():
        df[k] = v
    os.makedirs(args.out, exist_ok=True)
    suffix = "_quick" if args.quick else ""
    from sketchsim._io import atomic_path

    with atomic_path(os.path.join(args.out, f"perf_sketch{suffix}.csv")) as tmp:
        df.to_csv(tmp, index=False)
    with atomic_path(os.path.join(args.out, f"perf_sketch_sampling{suffix}.csv")) as tmp:
        samp.to_csv(tmp, index=False)
    md = report(df, samp, limits, graph, time.perf_counter() - t0)
    atomic_write_text(os.path.join(args.out, f"perf_sketch{suffix}.md"), md)
    print(md)


def _main_target(args, graph, limits, t0):
    from sketchsim._io import atomic_path

    df = bench_hadamard_target(graph, limits, args.rounds)
    for k, v in limits.items():
        df[k] = v
    os.makedirs(args.out, exist_ok=True)
    with atomic_path(os.path.join(args.out, f"perf_sketch_{args.only}.csv")) as tmp:
        df.to_csv(tmp, index=False)
    md = "\n".join([
        "# Sketch engine benchmark: hadamard target only",
        "",
        f"Generated by `python experiments/perf_sketch.py --only {args.only} --rounds {args.rounds}` in "
        f"{time.perf_counter() - t0:.0f} s on {platform.machine()} ({os.cpu_count()} cpus), numpy {np.__version__}, "
        f"Python {sys.version.split()[0]}; BLAS threads {blas_threads()} for the machine limits.",
        "",
        "## Machine limits measured in this run",
        f"- float64 GEMM (2048², all BLAS threads): **{limits['gemm_gflops']:.1f} GFLOP/s**",
        f"- copy bandwidth (256 MiB, read + write): **{limits['copy_gbs']:.1f} GB/s**",
        "",
        *hadamard_target_lines(df, limits),
    ]) + "\n"
    atomic_write_text(os.path.join(args.out, f"perf_sketch_{args.only}.md"), md)
    print(md)


if __name__ == "__main__":
    main()
