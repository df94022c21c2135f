"""Command line: ``sketchsim <command> …`` (also ``python -m sketchsim``).

A user mistake never produces a traceback: a :class:`ValueError` becomes one line on stderr and
exit status 2, and output files are written atomically, so nothing is left behind on failure.
Each subcommand is a pair ``_add_<name>(subparsers)`` / ``_run_<name>(args)`` registered in
:data:`COMMANDS`.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings

import numpy as np

from ._io import atomic_save_npy, atomic_save_npz, available_memory_bytes, check_allocation, check_output_path
from ._validation import STORAGES
from .matrices import FAMILIES

DUMP_LIMIT_BYTES = 4 * 2**30
"""Largest total size of ``--dump-matrices`` output (also capped at half the available memory)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _bank_args(p, with_seed=True):
    p.add_argument("--d-sketch", type=int, required=True, help="sketch dimension d")
    p.add_argument("--family", required=True, choices=FAMILIES, help="random matrix family")
    if with_seed:
        p.add_argument("--seed", type=int, required=True, help="bank seed (nonnegative integer)")
    p.add_argument("--block-size", type=int, default=None, help="b of D(b, q, d) (block-sparse only)")
    p.add_argument("--block-prob", type=float, default=None, help="q of D(b, q, d) (block-sparse only)")
    _storage_arg(p)


def _storage_arg(p):
    p.add_argument("--storage", default=None, choices=STORAGES,
                   help="block-sparse only: 'stored' (default; memory ∝ q·d²) or 'implicit' (matrix-free, O(d) "
                        "memory, for d in the millions); both give the same matrices")


def _make_bank(args):
    from .matrices import MatrixBank

    return MatrixBank(args.d_sketch, args.family, args.seed, block_size=args.block_size,
                      block_prob=args.block_prob, storage=args.storage)


# ------------------------------------------------------------------------------------ sketch
def _add_sketch(sub):
    p = sub.add_parser("sketch", help="sketch a communication graph given in JSON",
                       description="Sketch GRAPH.json and write OUT.npz with 'overall', 'object/<id>' "
                                   "and, with --dump-matrices, 'matrix/tuple/<i>' and 'matrix/module/<M>/<k>'.")
    p.add_argument("graph", metavar="GRAPH.json")
    _bank_args(p)
    p.add_argument("--normalize", action="store_true", help="rescale attributes to unit ℓ2 instead of rejecting")
    p.add_argument("--out", required=True, metavar="OUT.npz")
    p.add_argument("--dump-matrices", action="store_true", help="also store every matrix used, dense")


def _run_sketch(args):
    from .graph import Graph
    from .sketch import sketch_objects

    out = check_output_path(args.out, "--out", inputs=[args.graph])
    graph = Graph.from_json(args.graph, normalize=args.normalize)
    bank = _make_bank(args)
    names = bank.matrix_names(graph)
    if args.dump_matrices:
        d = bank.d_sketch
        total = len(names) * d * d * 8
        avail = available_memory_bytes()
        limit = DUMP_LIMIT_BYTES if avail is None else min(DUMP_LIMIT_BYTES, avail // 2)
        if total > limit:
            raise ValueError(
                f"--dump-matrices must fit in {limit / 2**30:.2f} GiB (4 GiB or half the available "
                f"memory); {len(names)} dense {d}×{d} float64 matrices need {total / 2**30:.2f} GiB "
                f"(--d-sketch={d}): use a smaller --d-sketch or omit --dump-matrices")
    objects, overall = sketch_objects(graph, bank, return_overall=True)
    arrays = {"overall": overall}
    arrays.update({f"object/{oid}": s for oid, s in objects.items()})
    if args.dump_matrices:
        arrays.update({f"matrix/{n}": bank.dense(n) for n in names})
    atomic_save_npz(out, arrays, name="--out", inputs=[args.graph])
    print(f"wrote {out}: overall sketch (d={bank.d_sketch}, ‖s‖₂={np.linalg.norm(overall):.4g}), "
          f"{len(objects)} object sketches" + (f", {len(names)} matrices" if args.dump_matrices else ""))


# ------------------------------------------------------------------------------------ matrix
def _add_matrix(sub):
    p = sub.add_parser("matrix", help="sample one random matrix and save it dense (.npy)",
                       description="Write the dense matrix NAME of the bank (seed, family) to R.npy; "
                                   "identical to MatrixBank(D, F, S, ...).dense(NAME).")
    _bank_args(p)
    p.add_argument("--name", default="tuple/1",
                   help="matrix name: 'tuple/<i>' or 'module/<M>/<k>' (default: tuple/1)")
    p.add_argument("--out", required=True, metavar="R.npy")


def _run_matrix(args):
    from .matrices import parse_name

    check_output_path(args.out, "--out")
    parse_name(args.name)
    bank = _make_bank(args)
    d = bank.d_sketch
    check_allocation("--d-sketch", d, 16 * d * d, "the dense d×d float64 matrix (and its copy for writing)")
    R = bank.dense(args.name)
    atomic_save_npy(args.out, R, name="--out")
    print(f"wrote {args.out}: {args.family} matrix {args.name!r}, shape {R.shape}")


# ------------------------------------------------------------------------------------ demo
def _add_demo(sub):
    p = sub.add_parser("demo", help="sketch a synthetic modular network with every family and decode it")
    p.add_argument("--seed", type=int, default=0, help="seed of the network and the banks")
    p.add_argument("--quick", action="store_true", help="smaller dimensions (a few seconds)")


def _run_demo(args):
    from .demo import run_demo

    run_demo(seed=args.seed, quick=args.quick)


# ------------------------------------------------------------------------------------ verification suite
def _sweep_args(p):
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--executor", choices=("serial", "processes", "dask"), default=None,
                   help="serial | processes (local spawn pool) | dask (LocalCluster, or --scheduler); "
                        "default: serial for 1 job, processes otherwise")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="join an existing Dask cluster, e.g. tcp://HOST:8786 (implies --executor dask)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_verify(sub):
    p = sub.add_parser("verify", help="run every study, decide its claims, figures, verdicts.json and REPORT.md "
                                      "(the main job)",
                       description="Runs the studies of the profile, writes tidy CSVs, figures, verdicts.json and "
                                   "REPORT.md. Profile full → results/, paper_figs/; quick → results/quick/, "
                                   "paper_figs/quick/; --results-dir DIR → DIR/ and DIR/figures/.")
    p.add_argument("--profile", choices=("quick", "full"), default="quick")
    p.add_argument("--seed", type=int, default=0, help="base seed of the sweeps")
    p.add_argument("--force", action="store_true", help="redo finished runs")
    p.add_argument("--experiments", default=None, metavar="A,B",
                   help="only these studies (comma-separated names; default every study)")
    p.add_argument("--results-dir", default=None, metavar="DIR", help="write tables, verdicts and report here")
    p.add_argument("--figures-dir", default=None, metavar="DIR", help="write figures here")
    p.add_argument("--allow-dirty", action="store_true",
                   help="let --profile full write the committed results from a dirty tree (the report says so)")
    _sweep_args(p)


def _run_verify(args):
    from .harness.verify import parse_experiments, verify

    verify(profile=args.profile, jobs=args.jobs, executor=args.executor, scheduler=args.scheduler,
           seed=args.seed, force=args.force, quiet=args.quiet, results_dir=args.results_dir,
           figures_dir=args.figures_dir, experiments=parse_experiments(args.experiments),
           allow_dirty=args.allow_dirty)


def _add_run(sub):
    p = sub.add_parser("run", help="run one experiment's sweep (resumable)")
    p.add_argument("experiment", metavar="EXPERIMENT")
    p.add_argument("--profile", default="quick", help="profile of the experiment (default quick)")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="override a grid parameter (repeatable)")
    p.add_argument("--reps", type=int, default=None, help="repetitions per grid point")
    p.add_argument("--seed", type=int, default=0, help="base seed")
    p.add_argument("--force", action="store_true", help="redo finished runs")
    p.add_argument("--results-dir", default=None, help="default: results/ for full, results/<profile>/ otherwise")
    _sweep_args(p)


def _run_run(args):
    from .harness.sweep import run_sweep
    from .harness.verify import output_dirs

    rdir = args.results_dir or output_dirs(args.profile)[0]
    summary = run_sweep(args.experiment, profile=args.profile, grid_overrides=args.grid or None, reps=args.reps,
                        seed=args.seed, force=args.force, jobs=args.jobs, executor=args.executor,
                        scheduler=args.scheduler, results_dir=rdir, quiet=args.quiet)
    print(summary)
    if summary.failed:
        raise ValueError(f"{summary.failed} run(s) failed; see {summary.failures_path}")


def _add_figures(sub):
    p = sub.add_parser("figures", help="rebuild the figures from the results tables")
    p.add_argument("--profile", choices=("quick", "full"), default="full")
    p.add_argument("--experiments", default=None, metavar="A,B", help="only these studies")
    p.add_argument("--results-dir", default=None, metavar="DIR", help="tables written by verify --results-dir DIR")
    p.add_argument("--figures-dir", default=None, metavar="DIR")


def _run_figures(args):
    from .harness.verify import resolve_dirs, make_figures, parse_experiments

    make_figures(*resolve_dirs(args.profile, args.results_dir, args.figures_dir), parse_experiments(args.experiments))


def _add_report(sub):
    p = sub.add_parser("report", help="rebuild verdicts.json and REPORT.md from the results tables")
    p.add_argument("--profile", choices=("quick", "full"), default="full")
    p.add_argument("--experiments", default=None, metavar="A,B", help="only these studies")
    p.add_argument("--results-dir", default=None, metavar="DIR", help="tables written by verify --results-dir DIR")
    p.add_argument("--figures-dir", default=None, metavar="DIR")


def _run_report(args):
    from .harness.verify import resolve_dirs, parse_experiments, write_report

    write_report(*resolve_dirs(args.profile, args.results_dir, args.figures_dir), profile=args.profile,
                 experiments=parse_experiments(args.experiments))


def _add_check(sub):
    p = sub.add_parser("check", help="CI regression: re-run the quick profile and compare claims and numbers with "
                                     "results/baselines.json")
    p.add_argument("--update-baselines", action="store_true",
                   help="measure the run-to-run spread over --spread-seeds base seeds and rewrite the baselines")
    p.add_argument("--spread-seeds", type=int, default=4, help="base seeds for --update-baselines (default 4)")
    p.add_argument("--experiments", default=None, metavar="A,B", help="only these studies")
    p.add_argument("--from", dest="from_dir", default=None, metavar="DIR",
                   help="compare a finished quick run of base seed 0 in DIR instead of re-running")
    p.add_argument("--baselines-dir", default="results", metavar="DIR", help="where baselines.json lives")
    p.add_argument("--explain", action="store_true",
                   help="print every checked number with its tolerance, theory band and power, then exit")
    _sweep_args(p)


def _run_check(args):
    from .harness.verify import check, explain, parse_experiments, update_baselines

    exps = parse_experiments(args.experiments)
    if args.explain:
        explain(results_root=args.baselines_dir)
        return
    if args.update_baselines:
        update_baselines(n_seeds=args.spread_seeds, jobs=args.jobs, executor=args.executor, quiet=args.quiet,
                         results_root=args.baselines_dir, experiments=exps)
        return
    if args.from_dir is not None and not os.path.isdir(args.from_dir):
        raise ValueError(f"--from must be a directory holding a finished quick run; got {args.from_dir!r}")
    problems = check(jobs=args.jobs, executor=args.executor, quiet=args.quiet, results_root=args.baselines_dir,
                     experiments=exps, from_dir=args.from_dir)
    if problems:
        raise _CheckFailed(f"{len(problems)} problem(s): claim verdicts changed or numbers moved (listed above)")


class _CheckFailed(Exception):
    pass


# ------------------------------------------------------------------------------------ info
def _add_info(sub):
    sub.add_parser("info", help="versions, threads and cache location")


def _run_info(args):
    import numba

    from . import __version__

    print(f"sketchsim {__version__}\nnumpy {np.__version__}\nnumba {numba.__version__} "
          f"({numba.config.NUMBA_NUM_THREADS} threads, layer {numba.config.THREADING_LAYER})\n"
          f"cpus {os.cpu_count()}")


# ------------------------------------------------------------------------------------ learn-dictionary
def _add_learn_dictionary(sub):
    from .dictlearn import DEFAULTS

    p = sub.add_parser(
        "learn-dictionary", help="recover block-sparse matrices and coefficients from samples (paper §4)",
        description="Recursable dictionary learning (paper §4.2, THEORY.md §6.2) on the rows of SAMPLES.npy "
                    "(shape (S, d)). Writes OUT.npz with column_matrix, column_index (n,), column_values "
                    "(n, d), coef_sample, coef_matrix, coef_column, coef_value (m,); with --levels > 1 also "
                    "coef_level, sample_level, sample_parent, sample_matrix (sample ids ≥ S are the "
                    "recovered coefficient vectors of earlier levels).")
    p.add_argument("samples", metavar="SAMPLES.npy")
    p.add_argument("--block-size", type=int, required=True, help="b of D(b, q, d)")
    p.add_argument("--block-prob", type=float, required=True, help="q of D(b, q, d)")
    p.add_argument("--out", required=True, metavar="OUT.npz")
    p.add_argument("--hypercube-tol", type=float, default=DEFAULTS["hypercube_tol"],
                   help="τ_∞ of the block screen (default %(default)s)")
    p.add_argument("--count-frac", type=float, default=DEFAULTS["count_frac"],
                   help="certify with ≥ COUNT_FRAC·q·d/b consistent blocks (default %(default)s)")
    p.add_argument("--hamming-tol", type=int, default=DEFAULTS["hamming_tol"],
                   help="bits of key / matrix-signature difference merged (default %(default)s)")
    p.add_argument("--levels", type=int, default=DEFAULTS["levels"],
                   help="recursion levels (default %(default)s)")


def _run_learn_dictionary(args):
    from .dictlearn import recover

    check_output_path(args.out, "--out", inputs=[args.samples])
    samples = _load_samples(args.samples)
    res = recover(samples, args.block_size, args.block_prob, hypercube_tol=args.hypercube_tol,
                  count_frac=args.count_frac, hamming_tol=args.hamming_tol, levels=args.levels)
    n, d = res.n_columns, res.d
    need = 8 * n * d
    avail = available_memory_bytes()
    if avail is not None and need > avail:
        raise ValueError(f"column_values ({n} columns × d={d} float64) needs {need / 2**30:.2f} GiB, more "
                         f"than the available memory ({avail / 2**30:.2f} GiB)")
    atomic_save_npz(args.out, res.arrays(), name="--out", inputs=[args.samples])
    print(f"wrote {args.out}: {res.n_matrices} matrices, {n} columns, {res.n_coefficients} coefficients "
          f"from {samples.shape[0]} samples (d={d}, levels={len(res.levels)})")


# ------------------------------------------------------------------------------------ repo
REPO_ACTIONS = ("build", "query", "stats", "age")
SCENE_WEIGHT = 0.25
"""w* of a digit in the scenes of ``repo build --scenes`` (4 slots, uniform weights): the default --weight."""


def _add_repo(sub):
    p = sub.add_parser(
        "repo", help="build, query, summarise and age a sketch repository (paper §1.1)",
        description="build REPO: store the overall sketches of N digit scenes (--scenes N, held-out digits, "
                    "4 slots, uniform weights; ids scene-<i>) or of every *.json graph in a folder (--graphs DIR; "
                    "id = file stem), with --objects also their object sketches (metadata scene, slot, class). "
                    "query REPO: the --k most similar stored sketches to a stored scene (--scene I) or a graph "
                    "(--graph G.json), as 'id cosine' lines. stats REPO: row counts and storage; with --module "
                    "the Theorem 3 summary of the selection. age REPO --keep F: keep a prefix of the selected "
                    "sketches (generalised LRU). --where key=value (repeatable) selects by metadata.")
    p.add_argument("action", choices=REPO_ACTIONS, metavar="{build,query,stats,age}")
    p.add_argument("repo", metavar="REPO")
    g = p.add_argument_group("build")
    g.add_argument("--scenes", type=int, default=None, metavar="N", help="number of digit scenes to store")
    g.add_argument("--graphs", default=None, metavar="DIR", help="store every *.json graph file of DIR")
    g.add_argument("--seed", type=int, default=None, help="seed of the scenes and the bank")
    g.add_argument("--d-sketch", type=int, default=None, help="sketch dimension d")
    g.add_argument("--family", default=None, choices=FAMILIES, help="random matrix family")
    g.add_argument("--block-size", type=int, default=None, help="b of D(b, q, d) (block-sparse only)")
    g.add_argument("--block-prob", type=float, default=None, help="q of D(b, q, d) (block-sparse only)")
    _storage_arg(g)
    g.add_argument("--objects", action="store_true", help="also store the object sketches")
    g = p.add_argument_group("query")
    g.add_argument("--scene", type=int, default=None, metavar="I", help="query with the stored scene-<I>")
    g.add_argument("--graph", default=None, metavar="G.json", help="query with the sketch of this graph")
    g.add_argument("--k", type=int, default=10, help="number of results (default 10)")
    g = p.add_argument_group("stats")
    g.add_argument("--module", default=None, help="summarise this module (Theorem 3), e.g. digit-7")
    g.add_argument("--depth", type=int, default=3, help="depth of the module's objects (default 3)")
    g.add_argument("--weight", type=float, default=SCENE_WEIGHT,
                   help=f"common effective weight w* of its objects (default {SCENE_WEIGHT}, the digit scenes')")
    g = p.add_argument_group("age")
    g.add_argument("--keep", default=None, help="fraction of d to keep (0 < F ≤ 1), or an integer prefix length")
    p.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                   help="metadata filter (repeatable; VALUE read as JSON when it parses, else as a string)")


def _parse_where(items):
    import json

    where = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--where must be KEY=VALUE with a nonempty KEY; got {item!r}")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        if isinstance(value, (dict, list)) or (isinstance(value, float) and not np.isfinite(value)):
            raise ValueError(f"--where VALUE must be a string, number, true, false or null; got {item!r}")
        where[key.strip()] = value
    return where or None


def _open_repo(path, readonly):
    from .repository import SketchRepository

    if not os.path.exists(path):
        raise ValueError(f"REPO must be an existing sketch repository (sketchsim repo build makes one); got "
                         f"{path!r}, which does not exist")
    return SketchRepository.open(path, readonly=readonly)


def _repo_build_items(args, bank):
    """(ids, overall sketches, metas, [(parent, {object id: sketch}, graph, meta)]) to store."""
    from .graph import Graph
    from .sketch import sketch_objects

    if (args.scenes is None) == (args.graphs is None):
        raise ValueError("repo build needs exactly one of --scenes N or --graphs DIR; got "
                         + ("both" if args.scenes is not None else "neither"))
    items = []
    if args.scenes is not None:
        from . import scenes

        if args.scenes < 1:
            raise ValueError(f"--scenes must be a positive integer; got {args.scenes}")
        net = scenes.train_digit_net(0)
        sc = scenes.compose_scenes(args.scenes, args.seed, pool=net.test_idx)
        for i, g in enumerate(scenes.scene_graphs(sc, net, weights="uniform")):
            items.append((f"scene-{i}", g, {"scene": i, "n_digits": len(sc[i].occupied)}))
    else:
        if not os.path.isdir(args.graphs):
            raise ValueError(f"--graphs must be a folder of *.json graph files; got {args.graphs!r}")
        files = sorted(f for f in os.listdir(args.graphs) if f.endswith(".json"))
        if not files:
            raise ValueError(f"--graphs must hold at least one *.json graph file; got none in {args.graphs!r}")
        for f in files:
            items.append((f[:-5], Graph.from_json(os.path.join(args.graphs, f)), {"file": f}))
    ids, rows, metas, objects = [], [], [], []
    for sid, g, meta in items:
        objs, overall = sketch_objects(g, bank, return_overall=True)
        meta["modules"] = sorted({g.module(o) for o in g.ids})
        ids.append(sid)
        rows.append(overall)
        metas.append(meta)
        if args.objects:
            keep = {o: v for o, v in objs.items() if g.module(o) not in ("empty", "scene")}
            if keep:
                objects.append((sid, keep, g, {k: meta[k] for k in ("scene", "file") if k in meta}))
    return ids, np.array(rows), metas, objects


def _repo_object_meta(objs, graph, base):
    """Per object row: the shared metadata plus slot and predicted class for digit scenes."""
    out = {}
    for o in objs:
        m = dict(base)
        mod = graph.module(o)
        if o.startswith("slot") and o[4:].isdigit():
            m["slot"] = int(o[4:])
        if mod.startswith("digit-"):
            m["class"] = int(mod.split("-")[1])
        out[o] = m
    return out


def _run_repo(args):
    from ._validation import check_int

    where = _parse_where(args.where)
    if args.action == "build":
        from .repository import SketchRepository

        for name in ("seed", "d_sketch", "family"):
            if getattr(args, name) is None:
                raise ValueError(f"repo build needs --{name.replace('_', '-')}; got none")
        if os.path.lexists(args.repo):
            raise ValueError(f"REPO must not exist yet for repo build (it never overwrites); got the existing "
                             f"path {args.repo!r}")
        check_output_path(args.repo, "REPO")
        bank = _make_bank(args)
        ids, S, metas, objects = _repo_build_items(args, bank)
        repo = SketchRepository.create(args.repo, bank)
        try:
            repo.add(S, ids=ids, meta=metas)
            n_obj = 0
            for parent, objs, g, base in objects:
                per = _repo_object_meta(objs, g, base)
                oids = list(objs)
                repo.add(np.array([objs[o] for o in oids]), ids=[f"{parent}/{o}" for o in oids],
                         meta=[dict(per[o], object=o, module=g.module(o), depth=g.depth(o)) for o in oids],
                         kind="object", parents=[parent] * len(oids))
                n_obj += len(oids)
        except BaseException:
            repo.close()
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(args.repo + suffix):
                    os.unlink(args.repo + suffix)
            raise
        repo.close()
        print(f"built {args.repo}: {len(ids)} overall sketches, {n_obj} object sketches "
              f"(d={bank.d_sketch}, {bank.family}, seed {bank.seed})")
        return
    if args.action == "query":
        check_int("--k", args.k, minimum=1)
        if args.k < 1:
            raise ValueError(f"--k must be a positive integer (k ≥ 1); got {args.k}")
        if (args.scene is None) == (args.graph is None):
            raise ValueError("repo query needs exactly one of --scene I or --graph G.json; got "
                             + ("both" if args.scene is not None else "neither"))
        repo = _open_repo(args.repo, readonly=True)
        try:
            if args.scene is not None:
                sid = f"scene-{args.scene}"
                if sid not in repo:
                    raise ValueError(f"--scene must name a stored scene (id scene-<I>); got {args.scene}, and "
                                     f"{sid!r} is not stored in {args.repo!r}")
                q = repo.get(sid)
            else:
                from .graph import Graph
                from .sketch import sketch

                q = sketch(Graph.from_json(args.graph), repo.bank)
            for i, cos in repo.query(q, k=args.k, where=where):
                print(f"{i}\t{cos:.4f}")
        finally:
            repo.close()
        return
    if args.action == "stats":
        repo = _open_repo(args.repo, readonly=True)
        try:
            if args.module is not None:
                known = set()
                for i in repo.select(kind="overall"):
                    known.update(repo.record(i).meta.get("modules", []))
                if args.module not in known:
                    raise ValueError(f"--module must be a module of the stored graphs ({', '.join(sorted(known))}); "
                                     f"got {args.module!r}")
            n_all = len(repo.select(where, kind=None))
            n_ov = len(repo.select(where))
            b = repo.bank
            print(f"{args.repo}: d={b.d_sketch} {b.family} seed {b.seed}; rows {n_all} selected "
                  f"({n_ov} overall, {n_all - n_ov} object) of {len(repo)}")
            print(f"storage: {repo.nbytes} bytes of sketch values, file {repo.file_size} bytes")
            if args.module is not None:
                s = repo.summary(where, module=args.module, depth=args.depth, weight=args.weight)
                print(f"summary of {args.module} over {s.n_sketches} sketches (Theorem 3, depth {args.depth}, "
                      f"w*={args.weight:g}): count ≈ {s.count:.2f}, prefix lengths {list(s.keeps)}")
        finally:
            repo.close()
        return
    # age
    if args.keep is None:
        raise ValueError("repo age needs --keep (a fraction in (0, 1] or an integer prefix length); got none")
    try:
        keep = int(args.keep) if args.keep.strip().isdigit() else float(args.keep)
    except ValueError:
        raise ValueError(f"--keep must be a fraction in (0, 1] or an integer prefix length; got {args.keep!r}") \
            from None
    repo = _open_repo(args.repo, readonly=False)
    try:
        before, fb = repo.nbytes, repo.file_size
        try:
            n = repo.age(keep, where, kind=None)
        except ValueError as exc:
            raise ValueError(f"--keep: {exc}") from None
        print(f"aged {n} sketches to keep={args.keep}: sketch values {before} → {repo.nbytes} bytes, "
              f"file {fb} → {repo.file_size} bytes")
    finally:
        repo.close()


def _load_samples(path):
    """Read SAMPLES.npy after checking its header: a 2-d real array that fits in memory."""
    from numpy.lib import format as npy

    what = f"SAMPLES.npy ({path!r})"
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise ValueError(f"{what} could not be read: {exc.strerror}") from None
    with fh:
        try:
            version = npy.read_magic(fh)
            reader = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
            shape, _, dtype = reader(fh)
        except (ValueError, OSError, SyntaxError, TypeError, EOFError):
            raise ValueError(f"{what} must be a .npy array file (numpy.save); this file has no valid .npy "
                             "header") from None
        header_end = fh.tell()
        size = os.fstat(fh.fileno()).st_size
    if dtype.hasobject or dtype.kind not in "iuf" or dtype.fields is not None:
        kinds = {"b": "booleans", "c": "complex numbers", "U": "strings", "S": "bytes", "M": "datetimes",
                 "m": "time deltas", "V": "structured records", "O": "Python objects (pickled)"}
        raise ValueError(f"{what} must hold real numbers (integer or float dtype); got "
                         f"{kinds.get(dtype.kind, 'dtype')} (dtype {dtype})")
    if len(shape) != 2 or shape[1] == 0:
        raise ValueError(f"{what} must be a 2-d array of shape (S, d) with d ≥ 1; got shape {shape}")
    n_items = int(np.prod(shape, dtype=object))
    need = n_items * dtype.itemsize
    if size - header_end < need:
        raise ValueError(f"{what} is truncated: its header declares shape {shape} of {dtype} ({need} bytes) but "
                         f"the file holds {size - header_end} bytes of data")
    check_allocation("SAMPLES.npy shape", shape, n_items * 8 * 3, "the samples in float64, with working copies")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{what} could not be read: {exc}") from None


COMMANDS = {
    "sketch": (_add_sketch, _run_sketch),
    "matrix": (_add_matrix, _run_matrix),
    "demo": (_add_demo, _run_demo),
    "verify": (_add_verify, _run_verify),
    "run": (_add_run, _run_run),
    "figures": (_add_figures, _run_figures),
    "report": (_add_report, _run_report),
    "check": (_add_check, _run_check),
    "info": (_add_info, _run_info),
    "learn-dictionary": (_add_learn_dictionary, _run_learn_dictionary),
    "repo": (_add_repo, _run_repo),
}


def build_parser():
    parser = _Parser(prog="sketchsim", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for add, _ in COMMANDS.values():
        add(sub)
    return parser


def _format_warning(message, category, filename, lineno, line=None):
    return f"sketchsim: warning: {message}\n"


def _check_common(args):
    """Integer options shared by several commands: refuse negative seeds, zero jobs, … up front."""
    from ._validation import check_int

    for attr, minimum in (("seed", 0), ("jobs", 1), ("reps", 1), ("d_sketch", 1), ("block_size", 1),
                          ("spread_seeds", 2), ("levels", 1)):
        value = getattr(args, attr, None)
        if value is not None:
            check_int("--" + attr.replace("_", "-"), value, minimum=minimum)


def _one_line(exc):
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 2000 else text[:1990] + " …"


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.formatwarning = _format_warning
    try:
        _check_common(args)
        COMMANDS[args.command][1](args)
    except (ValueError, OSError, RuntimeError, ModuleNotFoundError) as exc:
        print(f"sketchsim {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"sketchsim {args.command}: error: out of memory (the inputs need more memory than this process "
              "may allocate; use smaller sizes)", file=sys.stderr)
        return 2
    except _CheckFailed as exc:
        print(f"sketchsim {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"sketchsim {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
