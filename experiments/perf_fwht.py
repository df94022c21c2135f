"""Benchmark: the fast Walsh–Hadamard transform against pip peers, and the hadamard sketch at d = 2^20.

`main()` times, on one thread and in the same process:

* ``sketchsim._fwht._fwht`` (ours), the previous kernel (a verbatim copy kept below as
  ``_old_fwht``, for the before/after and the difference check) and the peers ``fht-cpu``
  (``fht_cpu.fht_1d_f64``) and FFHT (``ffht.fht``, pip ``ffht-unofficial``) when importable, at
  d = 2^10 … 2^22. Rounds are interleaved (every implementation once per round, in rotating order),
  each round times a batch of calls, and the table reports the median over ``ROUNDS`` rounds and
  ours/peer with a verdict (target ≤ 1.0 at 2^16, 2^20, 2^22). Every batch is timed by the wall
  clock (the verdict) and by the thread's CPU time, and ours and fht-cpu also run on a
  64-byte-aligned copy of x (numpy puts large arrays 16 bytes past a page, so half of the 32-byte
  vectors straddle a cache line: ours then shifts its vector grid, fht-cpu is slowed by the splits);
* the largest relative difference of ours against the old kernel (0 means bit-identical);
* the hadamard sketch of a ~100-object network at d = 2^20 on 2 numba threads (target < 1 s), with
  the machine's copy bandwidth (``np.copyto`` of 256 MiB) measured in the same run as context.

Results: ``results/perf_fwht.csv`` and ``results/perf_fwht.md``. The peers are optional
(``pip install -e .[bench]``; ``ffht-unofficial`` needs ``pybind11`` and ``wheel`` installed first
and ``--no-build-isolation``); a missing peer is reported as such. The machine is shared (2 cores,
other jobs running): times are noisy, ratios from interleaved rounds are the meaningful numbers.
"""
from __future__ import annotations

import os
import statistics
import time
import warnings

import numpy as np
from numba import njit

import sketchsim as ss
from sketchsim import _fwht as K

SIZES = tuple(2 ** k for k in (10, 12, 14, 16, 18, 20, 22))
TARGET_SIZES = (2 ** 16, 2 ** 20, 2 ** 22)
ROUNDS = 7
SKETCH_D = 2 ** 20
SKETCH_ROUNDS = 3
SEED = 3


# ----------------------------------------------------------------------------- the previous kernel
# Verbatim copy of the FWHT of sketchsim/_matrix_kernels.py (now sketchsim/_fwht.py) before issue 11 (radix-8 scalar first
# pass, radix-4 stages, 64-column strips): the "before" column and the difference check.
@njit(cache=True, nogil=True)
def _old_fwht(x):
    d = x.shape[0]
    if d <= 4096:
        _old_fwht_small(x)
        return
    C = 4096
    for i in range(0, d, C):
        _old_fwht_small(x[i:i + C])
    R = d // C
    W = 64
    buf = np.empty(R * W)
    for c0 in range(0, C, W):
        for r in range(R):
            for c in range(W):
                buf[r * W + c] = x[r * C + c0 + c]
        _old_radix_stages(buf, R * W, W, 1)
        for r in range(R):
            for c in range(W):
                x[r * C + c0 + c] = buf[r * W + c]


@njit(cache=True, nogil=True)
def _old_radix_stages(x, n, W, h):
    while 4 * h * W <= n:
        m = h * W
        for i in range(0, n, 4 * m):
            p0 = x[i:i + m]
            p1 = x[i + m:i + 2 * m]
            p2 = x[i + 2 * m:i + 3 * m]
            p3 = x[i + 3 * m:i + 4 * m]
            for j in range(m):
                u0 = p0[j]
                u1 = p1[j]
                u2 = p2[j]
                u3 = p3[j]
                a0 = u0 + u1
                a1 = u0 - u1
                a2 = u2 + u3
                a3 = u2 - u3
                p0[j] = a0 + a2
                p2[j] = a0 - a2
                p1[j] = a1 + a3
                p3[j] = a1 - a3
        h *= 4
    while h * W < n:
        m = h * W
        for i in range(0, n, 2 * m):
            a = x[i:i + m]
            b = x[i + m:i + 2 * m]
            for j in range(m):
                u = a[j]
                v = b[j]
                a[j] = u + v
                b[j] = u - v
        h *= 2


@njit(cache=True, nogil=True)
def _old_fwht_small(x):
    d = x.shape[0]
    if d < 8:
        h = 1
        while h < d:
            for i in range(0, d, 2 * h):
                for j in range(i, i + h):
                    u = x[j]
                    v = x[j + h]
                    x[j] = u + v
                    x[j + h] = u - v
            h *= 2
        return
    for i in range(0, d, 8):
        a0 = x[i] + x[i + 1]
        a1 = x[i] - x[i + 1]
        a2 = x[i + 2] + x[i + 3]
        a3 = x[i + 2] - x[i + 3]
        a4 = x[i + 4] + x[i + 5]
        a5 = x[i + 4] - x[i + 5]
        a6 = x[i + 6] + x[i + 7]
        a7 = x[i + 6] - x[i + 7]
        b0 = a0 + a2
        b2 = a0 - a2
        b1 = a1 + a3
        b3 = a1 - a3
        b4 = a4 + a6
        b6 = a4 - a6
        b5 = a5 + a7
        b7 = a5 - a7
        x[i] = b0 + b4
        x[i + 4] = b0 - b4
        x[i + 1] = b1 + b5
        x[i + 5] = b1 - b5
        x[i + 2] = b2 + b6
        x[i + 6] = b2 - b6
        x[i + 3] = b3 + b7
        x[i + 7] = b3 - b7
    _old_radix_stages(x, d, 1, 8)


# ----------------------------------------------------------------------------- implementations
def implementations():
    """{name: in-place 1-d float64 transform}: ours, old, and whichever peers import."""
    impls = {"ours": K._fwht, "old": _old_fwht}
    try:
        import fht_cpu

        impls["fht-cpu"] = fht_cpu.fht_1d_f64
    except ImportError:
        pass
    try:
        import ffht

        impls["ffht"] = ffht.fht
    except ImportError:
        pass
    return impls


def max_rel_diff(d, seed=0):
    """max |ours − old| / max |old| on a standard normal vector (0.0: bit-identical)."""
    x = np.random.default_rng(seed).standard_normal(d)
    a, b = x.copy(), x.copy()
    K._fwht(a)
    _old_fwht(b)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def aligned_empty(d, align=64):
    """An uninitialised float64 vector of length d whose data start on an ``align``-byte boundary."""
    raw = np.empty(d + align // 8)
    skip = (-raw.ctypes.data % align) // 8
    return raw[skip:skip + d]


def bench_fwht(sizes=SIZES, rounds=ROUNDS):
    """Interleaved timings of every implementation at each size (see the module docstring).

    Each run is (implementation, placement): every implementation on ``x`` as numpy allocates it
    (large arrays start 16 bytes past a page, so half of the 32-byte vectors straddle a cache line)
    and ours and fht-cpu also on a 64-byte-aligned copy. Every batch is timed by the wall clock and
    by the thread's CPU time (``time.thread_time``: the time the batch spent on the CPU, which other
    jobs on a loaded machine do not inflate).
    """
    impls = implementations()
    runs = [(n, "np") for n in impls] + [(n, "a64") for n in ("ours", "fht-cpu") if n in impls]
    rows = []
    for d in sizes:
        k = int(np.log2(d))
        xs = {"np": np.random.default_rng(d).standard_normal(d), "a64": aligned_empty(d)}
        # each call multiplies the norm by √d (k/2 bits): from 1e-290 the values stay finite and normal
        n_calls = max(3, min(3600 // k, 2 ** 23 // (d * k)))
        for n, p in runs:                              # compile / first touch
            xs[p][:] = 1e-290
            impls[n](xs[p])
        wall = {rp: [] for rp in runs}
        cpu = {rp: [] for rp in runs}
        for r in range(rounds):
            for rp in runs[r % len(runs):] + runs[:r % len(runs)]:   # rotate the order
                x = xs[rp[1]]
                x[:] = np.random.default_rng(r).standard_normal(d) * 1e-290
                f = impls[rp[0]]
                t, c = time.perf_counter(), time.thread_time()
                for _ in range(n_calls):
                    f(x)
                c, t = time.thread_time() - c, time.perf_counter() - t
                wall[rp].append(t / n_calls)
                cpu[rp].append(c / n_calls)
        med = {rp: statistics.median(v) for rp, v in wall.items()}
        medc = {rp: statistics.median(v) for rp, v in cpu.items()}
        row = {"d": d, "log2_d": k, "rounds": rounds, "calls_per_round": n_calls,
               "x_addr_mod_64": int(xs["np"].ctypes.data % 64), "max_rel_diff_vs_old": max_rel_diff(d)}
        for n in impls:
            row[f"{n}_us"] = med[(n, "np")] * 1e6
            row[f"{n}_cpu_us"] = medc[(n, "np")] * 1e6
            row[f"{n}_ns_per_dlog2d"] = med[(n, "np")] * 1e9 / (d * k)
        for n in ("ours", "fht-cpu"):
            if (n, "a64") in med:
                row[f"{n}_a64_us"] = med[(n, "a64")] * 1e6
        for peer in ("old", "fht-cpu", "ffht"):
            if peer in impls:
                row[f"ours_over_{peer}"] = med[("ours", "np")] / med[(peer, "np")]
                row[f"ours_over_{peer}_cpu"] = medc[("ours", "np")] / medc[(peer, "np")]
        if ("fht-cpu", "a64") in med:
            row["ours_over_fht-cpu_a64"] = med[("ours", "a64")] / med[("fht-cpu", "a64")]
            row["ours_over_fht-cpu_a64_cpu"] = medc[("ours", "a64")] / medc[("fht-cpu", "a64")]
        rows.append(row)
        print({k_: (round(v, 3) if isinstance(v, float) else v) for k_, v in row.items()}, flush=True)
    return rows


def copy_bandwidth(nbytes=256 * 2 ** 20, reps=5):
    """Copy bandwidth in GB/s (bytes read + written) of np.copyto on nbytes, median of reps."""
    src = np.ones(nbytes // 8)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        np.copyto(dst, src)
        ts.append(time.perf_counter() - t)
    return 2 * nbytes / statistics.median(ts) / 1e9


def sketch_graph():
    """About 100 objects: depth 3, fan-in 4–5, 3 modules per level, attributes of length 16."""
    return ss.random_network(depth=3, fan_in=(4, 5), n_top=4, modules_per_level=3, attr_dim=16,
                             random_state=SEED)


def bench_sketch(d=SKETCH_D, rounds=SKETCH_ROUNDS, threads=2):
    import numba

    old_threads = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        g = sketch_graph()
        bank = ss.MatrixBank(d, "hadamard", SEED)
        for name in bank.matrix_names(g):             # draw every matrix before timing
            bank.get(name)
        bw = copy_bandwidth()
        ss.sketch(g, bank)                            # warm: attribute maps built and cached
        ts = []
        for _ in range(rounds):
            t = time.perf_counter()
            ss.sketch(g, bank)
            ts.append(time.perf_counter() - t)
        bw2 = copy_bandwidth()
        return {"d": d, "n_objects": len(g), "numba_threads": numba.get_num_threads(), "rounds": rounds,
                "median_s": statistics.median(ts), "min_s": min(ts), "copy_gbs_before": bw,
                "copy_gbs_after": bw2}
    finally:
        numba.set_num_threads(old_threads)


def _verdict(r):
    return "met" if r <= 1.0 else "not met"


def _write(rows, sk, out_dir):
    import pandas as pd

    from sketchsim._io import atomic_write_text

    df = pd.DataFrame(rows)
    if sk is not None:
        df = pd.concat([df, pd.DataFrame([{"d": sk["d"], "log2_d": int(np.log2(sk["d"])),
                                           "sketch_median_s": sk["median_s"], "sketch_min_s": sk["min_s"],
                                           "sketch_n_objects": sk["n_objects"],
                                           "sketch_numba_threads": sk["numba_threads"],
                                           "copy_gbs": sk["copy_gbs_before"]}])], ignore_index=True)
    atomic_write_text(os.path.join(out_dir, "perf_fwht.csv"), df.to_csv(index=False))
    peers = [p for p in ("fht-cpu", "ffht") if f"{p}_us" in rows[0]]
    extra = [] if "fht-cpu" not in peers else [
        ("ours_over_fht-cpu_cpu", "ours/fht-cpu (CPU time)"),
        ("ours_over_fht-cpu_a64", "ours/fht-cpu (64-B aligned x)")]
    md = ["# perf_fwht — fast Walsh–Hadamard transform vs pip peers (1 thread), hadamard sketch", "",
          f"Median over {rows[0]['rounds']} interleaved rounds (rotating order) of the mean time of a batch "
          "of in-place float64 transforms, one thread, same process. Peers: "
          + (", ".join(peers) if peers else "none importable") + ". The machine is shared (2 cores, other "
          "jobs running): absolute times are inflated and noisy; the ratios come from interleaved rounds.", "",
          "Times and ratios are wall-clock on x as numpy allocates it (column x mod 64: where its data "
          "start relative to a 64-byte boundary; at 16 or 48, half of the 32-byte vectors at 4-entry "
          "boundaries straddle a cache line). Also: the same batches timed by the thread's CPU time (not "
          "inflated when other jobs take the core), and ours and fht-cpu on a 64-byte-aligned copy of x.", "",
          "| d | x mod 64 | ours (µs) | old (µs) | " + " | ".join(f"{p} (µs)" for p in peers)
          + " | ours/old | " + " | ".join(f"ours/{p}" for p in peers) + "".join(f" | {h}" for _, h in extra)
          + " | verdict (≤ 1.0 vs fht-cpu) | max rel diff vs old |",
          "|---" * (7 + 2 * len(peers) + len(extra)) + "|"]
    for r in rows:
        cells = [f"2^{r['log2_d']}", str(r["x_addr_mod_64"]), f"{r['ours_us']:.1f}", f"{r['old_us']:.1f}"]
        cells += [f"{r[f'{p}_us']:.1f}" for p in peers]
        cells += [f"{r['ours_over_old']:.2f}"] + [f"{r[f'ours_over_{p}']:.2f}" for p in peers]
        cells += [f"{r[c]:.2f}" for c, _ in extra]
        target = r["d"] in TARGET_SIZES and "fht-cpu" in peers
        cells += [(_verdict(r["ours_over_fht-cpu"]) if target else "—"), f"{r['max_rel_diff_vs_old']:.1e}"]
        md.append("| " + " | ".join(cells) + " |")
    if sk is not None:
        md += ["", "## Hadamard sketch", "",
               f"`ss.sketch` of a {sk['n_objects']}-object network (depth 3, fan-in 4–5, 3 modules per level, "
               f"attributes of length 16) at d = 2^{int(np.log2(sk['d']))}, {sk['numba_threads']} numba threads, "
               f"warm bank (matrices drawn, attribute maps cached), median of {sk['rounds']}: "
               f"**{sk['median_s']:.2f} s** (min {sk['min_s']:.2f} s; target < 1 s: "
               f"{'met' if sk['median_s'] < 1.0 else 'not met'}). Copy bandwidth in the same run "
               f"(np.copyto, 256 MiB, read + write): {sk['copy_gbs_before']:.1f} GB/s before, "
               f"{sk['copy_gbs_after']:.1f} GB/s after."]
    atomic_write_text(os.path.join(out_dir, "perf_fwht.md"), "\n".join(md) + "\n")
    return df


def main(out_dir=None, sizes=SIZES, rounds=ROUNDS, sketch=True):
    """Run both benchmarks and write results/perf_fwht.csv and .md (the FWHT table is written first,
    so a long sketch run leaves it on disk)."""
    import numba
    from threadpoolctl import threadpool_limits

    out_dir = out_dir or os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "results")
    with warnings.catch_warnings(), threadpool_limits(1, user_api="blas"):
        warnings.simplefilter("ignore")
        ss.warm_up()
        old = numba.get_num_threads()
        numba.set_num_threads(1)
        try:
            rows = bench_fwht(sizes, rounds)
        finally:
            numba.set_num_threads(old)
        df = _write(rows, None, out_dir)
        if sketch:
            sk = bench_sketch()
            print(sk, flush=True)
            df = _write(rows, sk, out_dir)
    return df


if __name__ == "__main__":
    main()
