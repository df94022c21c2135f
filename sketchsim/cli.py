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


# ------------------------------------------------------------------------------------ info
def _add_info(sub):
    sub.add_parser("info", help="versions, threads and cache location")


def _run_info(args):
    import numba

    from . import __version__

    print(f"sketchsim {__version__}\nnumpy {np.__version__}\nnumba {numba.__version__} "
          f"({numba.config.NUMBA_NUM_THREADS} threads, layer {numba.config.THREADING_LAYER})\n"
          f"cpus {os.cpu_count()}")


COMMANDS = {
    "sketch": (_add_sketch, _run_sketch),
    "matrix": (_add_matrix, _run_matrix),
    "demo": (_add_demo, _run_demo),
    "info": (_add_info, _run_info),
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
    except ValueError as exc:
        print(f"sketchsim {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sketchsim {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
