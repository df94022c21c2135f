"""Benchmark: the sketch repository (paper §1.1) — sketch, insert, exact and approximate top-10 search.

``python -m experiments.perf_repository`` writes ``results/perf_repository.csv`` and ``.md``.

1. Sketch 10^4 digit scenes (4 slots, held-out digits) at d = 4096 (hadamard; one process).
2. Insert them into a :class:`~sketchsim.repository.SketchRepository` (batches of 1000).
3. Exact top-10 by cosine over 10^5 and 10^6 stored sketches (d = 1024, float32) against faiss-cpu
   ``IndexFlatIP`` on the same unit rows, in the same process, interleaved query by query; medians
   over ``N_QUERIES`` queries. Target: ours ≥ 0.8× faiss's speed. Rows are generated directly (not
   sketched): a mixture of ``N_CENTRES`` random unit centres plus noise, unit-normalised, so that
   near neighbours exist (uniformly random rows have none, and no index could find them).
4. Approximate search at 10^6: faiss ``IndexIVFFlat`` (nlist = 1024), the smallest nprobe reaching
   recall@10 ≥ 0.95 against exact; target ≥ 10× the exact speed.
5. Bytes per stored sketch: on disk (SQLite file) and in memory (the float32 search matrix).

The 10^6 repository lives in a temporary directory, deleted at the end.
"""
from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np

D_SCENES = 4096
N_SCENES = 10_000
D_SEARCH = 1024
SIZES = (100_000, 1_000_000)
N_QUERIES = 9
N_CENTRES = 2000
NOISE = 1.0
TARGET_EXACT = 0.8
TARGET_RECALL, TARGET_SPEEDUP = 0.95, 10.0
CHUNK = 20_000


def _log(*a):
    print(*a, file=sys.stderr, flush=True)


def _rows(rng, centres, n):
    c = centres[rng.integers(len(centres), size=n)]
    X = c + NOISE * rng.standard_normal((n, centres.shape[1])).astype(np.float32) / np.sqrt(centres.shape[1])
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X.astype(np.float32)


def bench_scenes(tmp):
    import sketchsim as ss
    from sketchsim import scenes
    from sketchsim.harness import studykit as sk
    from sketchsim.repository import SketchRepository

    net = sk.digit_net()
    t = time.perf_counter()
    sc = scenes.compose_scenes(N_SCENES, 1, pool=net.test_idx)
    gs = scenes.scene_graphs(sc, net)
    t_graph = time.perf_counter() - t
    bank = ss.MatrixBank(D_SCENES, "hadamard", 7)
    ss.sketch(gs[0], bank)                               # warm the bank's matrices / kernels
    t = time.perf_counter()
    S = sk.sketch_graphs(gs, bank)
    t_sketch = time.perf_counter() - t
    repo = SketchRepository.create(os.path.join(tmp, "scenes.sketchrepo"), bank)
    t = time.perf_counter()
    for a in range(0, N_SCENES, 1000):
        repo.add(S[a:a + 1000], meta=[{"scene": int(k)} for k in range(a, min(a + 1000, N_SCENES))])
    t_ins = time.perf_counter() - t
    rows = [("scenes", "graphs (compose + network)", N_SCENES, t_graph, N_SCENES / t_graph, "scenes/s", "", ""),
            ("scenes", f"sketch d={D_SCENES} hadamard", N_SCENES, t_sketch, N_SCENES / t_sketch, "scenes/s", "", ""),
            ("scenes", "repository insert (batches of 1000)", N_SCENES, t_ins, N_SCENES / t_ins, "rows/s", "", ""),
            ("scenes", "disk bytes per sketch", N_SCENES, 0.0, repo.file_size / N_SCENES, "bytes", "", "")]
    repo.close()
    return rows


def bench_search(tmp, n, rng, centres, faiss):
    from sketchsim.repository import SketchRepository

    import sketchsim as ss

    bank = ss.MatrixBank(D_SEARCH, "hadamard", 11)
    path = os.path.join(tmp, f"search-{n}.sketchrepo")
    repo = SketchRepository.create(path, bank)
    flat = faiss.IndexFlatIP(D_SEARCH)
    sample = None
    t_add = 0.0
    for a in range(0, n, CHUNK):
        X = _rows(rng, centres, min(CHUNK, n - a))
        t = time.perf_counter()
        repo.add(X)
        t_add += time.perf_counter() - t
        flat.add(X)
        if sample is None:
            sample = X[:min(len(X), 50_000)].copy()
    _log(f"  {n}: inserted in {t_add:.1f} s")
    Q = _rows(rng, centres, N_QUERIES)
    t = time.perf_counter()
    repo.query(Q[0], k=10)                            # loads the in-memory matrix
    t_load = time.perf_counter() - t
    rows = [("search", f"insert n={n}", n, t_add, n / t_add, "rows/s", "", ""),
            ("search", f"first query (loads index) n={n}", n, t_load, t_load, "s", "", ""),
            ("search", f"disk bytes per sketch n={n}", n, 0.0, repo.file_size / n, "bytes", "", ""),
            ("search", f"memory bytes per sketch n={n}", n, 0.0,
             repo._index.M[:repo._index.n].nbytes / n + 8 * 4, "bytes", "", "")]
    ivf = None
    if n == max(SIZES):
        q = faiss.IndexFlatIP(D_SEARCH)
        ivf = faiss.IndexIVFFlat(q, D_SEARCH, 1024, faiss.METRIC_INNER_PRODUCT)
        t = time.perf_counter()
        ivf.train(sample)
        for a in range(0, n, CHUNK):
            ivf.add(flat.reconstruct_n(a, min(CHUNK, n - a)))
        _log(f"  IVF built in {time.perf_counter() - t:.1f} s")
    t_ours, t_faiss, agree = [], [], 0
    exact_ids = []
    for j in range(N_QUERIES):
        q = Q[j]
        t = time.perf_counter()
        res = repo.query(q.astype(np.float64), k=10)
        t_ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        _, I = flat.search(q[None, :], 10)
        t_faiss.append(time.perf_counter() - t)
        ours = [int(i[1:]) - 1 for i, _ in res]       # generated ids "#<seq>", seq = row + 1
        agree += len(set(ours) & set(I[0].tolist()))
        exact_ids.append(I[0])
    mo, mf = statistics.median(t_ours), statistics.median(t_faiss)
    ratio = mf / mo
    rows.append(("search", f"exact top-10 ours n={n}", n, mo, 1 / mo, "queries/s", "", ""))
    rows.append(("search", f"exact top-10 faiss IndexFlatIP n={n}", n, mf, 1 / mf, "queries/s", "", ""))
    rows.append(("search", f"speed ours/faiss n={n}", n, 0.0, ratio, "ratio", f"≥ {TARGET_EXACT}",
                 "meets target" if ratio >= TARGET_EXACT else "misses target"))
    rows.append(("search", f"top-10 agreement ours vs faiss n={n}", n, 0.0, agree / (10 * N_QUERIES), "fraction",
                 "", ""))
    if ivf is not None:
        for nprobe in (1, 2, 4, 8, 16, 32, 64):
            ivf.nprobe = nprobe
            ts, hit = [], 0
            for j in range(N_QUERIES):
                t = time.perf_counter()
                _, I = ivf.search(Q[j][None, :], 10)
                ts.append(time.perf_counter() - t)
                hit += len(set(I[0].tolist()) & set(exact_ids[j].tolist()))
            rec, mt = hit / (10 * N_QUERIES), statistics.median(ts)
            if rec >= TARGET_RECALL or nprobe == 64:
                break
        sp = mf / mt
        ok = rec >= TARGET_RECALL and sp >= TARGET_SPEEDUP
        rows.append(("ann", f"IVFFlat nlist=1024 nprobe={nprobe} n={n}", n, mt, 1 / mt, "queries/s", "", ""))
        rows.append(("ann", f"IVFFlat recall@10 vs exact n={n}", n, 0.0, rec, "recall", f"≥ {TARGET_RECALL}",
                     "meets target" if rec >= TARGET_RECALL else "misses target"))
        rows.append(("ann", f"IVFFlat speed / exact faiss n={n}", n, 0.0, sp, "ratio", f"≥ {TARGET_SPEEDUP}",
                     "meets target" if sp >= TARGET_SPEEDUP else "misses target"))
        rows.append(("ann", "IVF verdict (recall and speed)", n, 0.0, float(ok), "bool", "both",
                     "meets target" if ok else "misses target"))
        del ivf
    repo.close()
    del flat
    os.unlink(path)
    return rows


def main(out_dir="results"):
    try:
        import faiss
    except ImportError:
        raise SystemExit("perf_repository needs faiss-cpu (pip install 'sketchsim[ann]')") from None
    import pandas as pd
    from threadpoolctl import threadpool_info

    rng = np.random.default_rng(2026)
    centres = rng.standard_normal((N_CENTRES, D_SEARCH)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    rows = []
    tmp = tempfile.mkdtemp(prefix="perf-repo-")
    try:
        _log("scenes …")
        rows += bench_scenes(tmp)
        for n in SIZES:
            _log(f"search n={n} …")
            rows += bench_search(tmp, n, rng, centres, faiss)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    df = pd.DataFrame(rows, columns=["part", "what", "n", "seconds", "value", "unit", "target", "verdict"])
    os.makedirs(out_dir, exist_ok=True)
    df.to_csv(os.path.join(out_dir, "perf_repository.csv"), index=False)
    blas = ", ".join(sorted({f"{i['internal_api']}({i['num_threads']})" for i in threadpool_info()}))
    md = ["# perf_repository — sketch repository benchmark", "",
          f"Machine: {os.cpu_count()} cores (shared); BLAS: {blas}; faiss {faiss.__version__}; "
          f"medians over {N_QUERIES} interleaved queries. Search rows: clustered unit vectors "
          f"({N_CENTRES} centres, noise {NOISE}), d = {D_SEARCH}, float32.", "",
          "| part | what | n | seconds | value | unit | target | verdict |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        md.append("| " + " | ".join([r[0], r[1], str(r[2]), f"{r[3]:.4g}", f"{r[4]:.4g}", r[5], r[6], r[7]]) + " |")
    with open(os.path.join(out_dir, "perf_repository.md"), "w") as fh:
        fh.write("\n".join(md) + "\n")
    print("\n".join(md))
    return df


if __name__ == "__main__":
    main()
