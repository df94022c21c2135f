"""Row-parallel execution of ``nogil`` Numba kernels on a small Python thread pool.

Numba's OpenMP layer wakes its threads in ≈ 8–10 ms after a BLAS call (ARCHITECTURE.md, measured
again here: 10 ms per parallel region placed after a GEMM against 70 µs serial), which would
dominate every small sketch. The engine's hot kernels are therefore serial ``nogil`` functions of
a row range ``(r0, r1, ...)``; :func:`run_rows` splits large calls into contiguous chunks run on
a persistent thread pool (wake-up ≈ tens of µs). Each row is computed by exactly one call, so the
result is bit-identical for any thread count; the thread count follows ``numba.get_num_threads()``.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numba

MIN_PARALLEL_WORK = 200_000
"""Below this many element-operations a call runs on the calling thread only."""

_pool = None
_pool_size = 0


def _get_pool(n):
    global _pool, _pool_size
    if _pool is None or _pool_size < n:
        _pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="sketchsim")
        _pool_size = n
    return _pool


def run_rows(kernel, n_rows, work, *args):
    """Run ``kernel(r0, r1, *args)`` over rows ``[0, n_rows)``, in parallel when ``work`` is large."""
    n_threads = min(numba.get_num_threads(), n_rows)
    if n_threads <= 1 or work < MIN_PARALLEL_WORK:
        kernel(0, n_rows, *args)
        return
    bounds = [n_rows * k // n_threads for k in range(n_threads + 1)]
    pool = _get_pool(n_threads - 1)
    futures = [pool.submit(kernel, bounds[k], bounds[k + 1], *args) for k in range(1, n_threads)]
    kernel(bounds[0], bounds[1], *args)
    for f in futures:
        f.result()
