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

from ._io import atomic_save_npy, atomic_save_npz, available_memory_bytes
from .matrices import FAMILIES

DUMP_LIMIT_BYTES = 4 * 2**30
"""Largest total size of ``--dump-matrices`` output (also capped at half the available memory)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _bank_args(p, with_seed=True):
    p.add_argument("--d-sketch", type=int, required=True, help="sketch dimension d")
    p.add_argument("--family", required=True, choices=FAMILIES, help="random matrix family")
    if with_seed:
        p.add_argument("--seed", type=int, required=True, help="bank seed (nonnegative integer)")
    p.add_argument("--block-size", type=int, default=None, help="b of D(b, q, d) (block-sparse only)")
    p.add_argument("--block-prob", type=float, default=None, help="q of D(b, q, d) (block-sparse only)")


def _make_bank(args):
    from .matrices import MatrixBank

    return MatrixBank(args.d_sketch, args.family, args.seed, block_size=args.block_size,
                      block_prob=args.block_prob)


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

    graph = Graph.from_json(args.graph, normalize=args.normalize)
    bank = _make_bank(args)
    bank.check_graph(graph)
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
    atomic_save_npz(args.out, arrays)
    print(f"wrote {args.out}: overall sketch (d={bank.d_sketch}, ‖s‖₂={np.linalg.norm(overall):.4g}), "
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

    parse_name(args.name)
    d = args.d_sketch
    avail = available_memory_bytes()
    if d > 0 and avail is not None and 8 * d * d > avail // 2:
        raise ValueError(f"--d-sketch={d} gives a dense matrix of {8 * d * d / 2**30:.1f} GiB, more than half "
                         f"the available memory ({avail / 2**30:.1f} GiB)")
    bank = _make_bank(args)
    R = bank.dense(args.name)
    atomic_save_npy(args.out, R)
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
        if args.spread_seeds < 2:
            raise ValueError(f"--spread-seeds must be at least 2 to measure a spread; got {args.spread_seeds}")
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

    try:
        samples = np.load(args.samples, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"SAMPLES.npy could not be read as a .npy array ({args.samples}): {exc}") from None
    if not isinstance(samples, np.ndarray):
        raise ValueError(f"SAMPLES.npy must be a single .npy array of shape (S, d); got {args.samples}")
    res = recover(samples, args.block_size, args.block_prob, hypercube_tol=args.hypercube_tol,
                  count_frac=args.count_frac, hamming_tol=args.hamming_tol, levels=args.levels)
    n, d = res.n_columns, res.d
    need = 8 * n * d
    avail = available_memory_bytes()
    if avail is not None and need > avail:
        raise ValueError(f"column_values ({n} columns × d={d} float64) needs {need / 2**30:.2f} GiB, more "
                         f"than the available memory ({avail / 2**30:.2f} GiB)")
    atomic_save_npz(args.out, res.arrays())
    print(f"wrote {args.out}: {res.n_matrices} matrices, {n} columns, {res.n_coefficients} coefficients "
          f"from {samples.shape[0]} samples (d={d}, levels={len(res.levels)})")


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


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.formatwarning = _format_warning
    try:
        COMMANDS[args.command][1](args)
    except (ValueError, OSError, RuntimeError, ModuleNotFoundError) as exc:
        print(f"sketchsim {args.command}: error: {exc}", file=sys.stderr)
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
