"""Parameter sweeps: grid expansion, named seeds, per-run shards, resume, failures and executors.

An **experiment** is a Python module (benchopt-style contract, ARCHITECTURE.md "Sweeps, results,
figures") with

``NAME`` : str
    Name used for the results files (``[A-Za-z0-9][A-Za-z0-9_.-]*``).
``PROFILES`` : dict
    ``{"quick": grid, "full": grid, ...}``. A *grid* maps a parameter name (a Python identifier) to
    a list of values; the runs are the cartesian product, the last key varying fastest. A scalar
    value stands for a one-element list. The optional entry ``"reps"`` (int >= 1, default 1) is the
    number of repetitions. A profile may also be a *list* of grids (the union of their products,
    as in scikit-learn's ``ParameterGrid``), e.g. one grid per matrix family when only some
    families take extra parameters. Values are None, bool, int, float or str.
``run_one(params: dict, rng: np.random.Generator) -> dict``
    One run: returns scalar metrics (keys are identifiers). Only this call is timed (``time_s``).
``skip(params) -> (bool, reason)`` : optional
    Runs for which it returns true are not run (counted as ``skipped`` with their reason).
``theory(params) -> dict`` : optional
    The predicted values; stored beside the metrics as ``t_<key>`` columns.
``warm_up()`` : optional
    Called once per process before its first timed run (absorbs Numba compilation).

Experiments live in the top-level ``experiments`` package, installed with sketchsim (so that Dask
workers in any directory import the same studies). It is resolved from sketchsim's own location
(``site-packages``, or the repository of an editable install), never from the current directory: a
local ``experiments/`` folder is never imported (see :func:`load_experiment` for the lookup order).
``load_experiment("thm1")`` and ``load_experiment("experiments.thm1")`` both import
``experiments/thm1.py``; any other importable dotted module path works too (its source is checked
for the contract before it runs). The experiments are found by importing the package's public
modules (:func:`available_experiments`).

Randomness (ARCHITECTURE.md "Randomness and reproducibility")
    A run's seed is the first 8 bytes of SHA-256 of the canonical JSON of
    ``[base_seed, NAME, params, rep]`` (big-endian, top bit cleared so that it fits a signed
    int64 column everywhere), and ``run_one`` receives ``np.random.default_rng(seed)``. The seed
    therefore depends only on (base seed, experiment, parameters, repetition): adding, removing or
    reordering grid points never changes an existing run, and results are bit-identical across
    executors and worker counts as long as ``run_one`` itself is (Numba kernels must not depend on
    the thread count).

Files under ``results_dir`` (default ``results/``)::

    results/<NAME>/shards/<run_id>.json   one finished run = one tidy row (written atomically)
    results/<NAME>/failures.csv           runs whose last attempt raised (absent when none)
    results/<NAME>/sweeps/<utc>-<pid>-<random>.json   arguments and counts of each sweep
    results/<NAME>/last_sweep.json        the same for the sweep that finished last
    results/<NAME>/.lock                  lock file of the read-modify-writes (never replaced)
    results/<NAME>.csv                    merged rows of the latest sweep (see :func:`merge`)
    results/<NAME>.schema.json            its column types

Concurrent sweeps of one experiment into one folder (several processes, or hosts sharing the
folder) lose no record: shards and per-sweep manifests have names of their own; ``failures.csv``
is changed by read-modify-writes under an exclusive ``flock`` of ``.lock``; the merged table and
its schema are written together under the same lock (the table is the one of the sweep that merged
last; every sweep's rows stay in the shards, see :func:`merge`). A shard that is not a finished
run's row (unreadable JSON, ``null``, ``[]``, a string, ``{}``, a row of another run) counts as not
finished: it is moved aside to ``<run_id>.json.corrupt`` with one :class:`CorruptShardWarning`
naming it, and its run is recomputed. Temporary files of atomic writes left by killed processes
(``.tmp-<pid>-…`` of a dead pid) are removed when the next sweep starts
(:func:`sketchsim._tempfiles.remove_stale_temps`).

A row holds ``experiment, run_id, p_<param>…, rep, seed, m_<metric>…, t_<theory>…, warnings,
time_s`` and provenance (``utc_time, executor, jobs, numba_threads, blas_threads, sketchsim_version,
git_commit, git_dirty, numpy_version, numba_version, python_version, platform``).
Warnings raised inside ``run_one``/``theory`` (e.g. ``TheoremPreconditionWarning`` when a sweep
leaves a theorem's hypotheses on purpose) are recorded in the ``warnings`` column as distinct
"Category: message" texts joined by " | ", instead of being printed.

Persistence happens **in the parent process** as results arrive (workers only compute and return
a small dict), so the same code path serves serial runs, local processes, a local Dask cluster and
a remote Dask scheduler, and only the sweep's own process writes its records. A shard is written to
a temporary file and renamed (``os.replace``) the moment its result arrives: a sweep killed at any
point loses at most the runs in flight, and re-running it skips every finished run (``force=True``
redoes them). A run whose ``run_one`` (or ``theory``/``warm_up``) raises is recorded in
``failures.csv`` with the error type, message and traceback, never becomes a shard, and is retried
by the next invocation; when a retry succeeds its failure row is removed.

Executors
    ``serial``: in this process, with this process's Numba thread count and BLAS pinned to one
    thread for the duration of the sweep (as in the workers).
    ``processes``: ``ProcessPoolExecutor`` with the *spawn* start method (a forked child dies after
    an OpenMP parallel region in the parent); each worker runs with ``NUMBA_NUM_THREADS=1``,
    ``numba.set_num_threads(1)`` and BLAS pinned to one thread by threadpoolctl. The workers end
    with the sweep's process, however it dies (``prctl(PR_SET_PDEATHSIG, SIGKILL)`` on Linux, a
    thread watching the parent pid elsewhere).
    ``dask``: a ``distributed.LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True)``
    started for the sweep, or an existing cluster given by ``scheduler="tcp://HOST:PORT"``. The
    LocalCluster's nannies live in the sweep's process and their worker processes exit when it
    dies (distributed's own parent-alive pipe: a thread of each worker process exits it once the
    pipe's other end is closed). The
    workers of a remote cluster must be able to import ``sketchsim`` and the experiment module
    (same code installed, or the same path on a shared file system).

Several experiments on one pool (:func:`run_sweeps`, used by ``sketchsim verify`` and ``check``)
    Every run of every experiment goes to one executor, started once: a worker imports the
    studies and loads or compiles their Numba kernels once per call, not once per experiment.
    With a parallel executor the workers first call the studies' distinct ``warm_up`` functions,
    each worker in another order (on a cold cache they compile different kernels at once), then
    the long runs are dispatched longest first (estimates: the ``time_s`` of the same run ids in
    earlier merged tables) and the short ones experiment by experiment, so that no worker waits
    for a long run at the end; each sweep is merged as soon as its last run is in, and a callback
    may then queue more work on the same workers (``verify`` queues the study's figures).
    Dispatch order never changes a result.
"""
from __future__ import annotations

import ast
import contextlib
import dataclasses
import errno
import hashlib
import heapq
import importlib
import importlib.util
import itertools
import json
import math
import numbers
import os
import platform as _platform
import re
import signal
import subprocess
import sys
import threading
import time
import traceback as _traceback
import types
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .._io import atomic_path
from .._tempfiles import remove_stale_temps

__all__ = [
    "EXECUTORS",
    "SweepSummary",
    "available_experiments",
    "load_experiment",
    "parse_grid_overrides",
    "expand_grid",
    "canonical_params",
    "run_seed",
    "run_id",
    "plan_runs",
    "Run",
    "run_sweep",
    "run_sweeps",
    "merge",
    "read_results",
    "read_failures",
    "provenance",
    "CorruptShardWarning",
]

EXECUTORS = ("serial", "processes", "dask")
"""Accepted values of ``executor``."""

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SEED_MASK = (1 << 63) - 1
_SHARD_EXT = ".json"
_PIN_ENV = {
    "NUMBA_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "BLIS_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
}
_PROVENANCE_COLS = (
    "utc_time", "executor", "jobs", "numba_threads", "blas_threads", "sketchsim_version",
    "git_commit", "git_dirty", "numpy_version", "numba_version", "python_version", "platform",
)


# =============================================================================== experiments
def _experiment_roots():
    """Folders that may hold the ``experiments`` package, in lookup order.

    Only the folder holding the ``sketchsim`` package itself: ``site-packages`` for an installed
    sketchsim (pyproject.toml installs ``experiments`` beside it), the repository for a checkout
    or an editable install. Never the current directory (see :func:`load_experiment`).
    """
    return [Path(__file__).resolve().parents[2]]


def _is_experiments_name(name):
    return name == "experiments" or name.startswith("experiments.")


def _experiments_package():
    """The ``experiments`` package of sketchsim's own installation, imported once; None if absent.

    The package is loaded from ``<root>/experiments/__init__.py`` for the first root of
    :func:`_experiment_roots` that has one, and pinned in ``sys.modules``, so that
    ``experiments.<name>`` then resolves inside that folder whatever ``sys.path`` holds (``python
    -m`` puts the current directory first, where a local ``experiments/`` folder would otherwise
    shadow the installed studies and be executed). A different module already imported under the
    name ``experiments`` is dropped, with its submodules.
    """
    for root in _experiment_roots():
        pkg_dir = (Path(root) / "experiments").resolve()
        init = pkg_dir / "__init__.py"
        if init.is_file():
            break
    else:
        return None
    mod = sys.modules.get("experiments")
    if mod is not None:
        paths = [os.path.realpath(p) for p in (getattr(mod, "__path__", None) or [])]
        if paths == [str(pkg_dir)]:
            return mod
        for key in [k for k in sys.modules if _is_experiments_name(k)]:
            del sys.modules[key]
    spec = importlib.util.spec_from_file_location("experiments", init,
                                                  submodule_search_locations=[str(pkg_dir)])
    mod = importlib.util.module_from_spec(spec)
    sys.modules["experiments"] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        sys.modules.pop("experiments", None)
        raise
    importlib.invalidate_caches()
    return mod


def _experiment_modules():
    """(names, broken) of the ``experiments`` package's public modules, found by importing them.

    ``names``: bare names of the modules defining ``NAME``, ``PROFILES`` and ``run_one`` (helper
    modules and stand-alone benchmarks define no ``run_one``). ``broken``: {name: "Type: message"}
    of the modules whose import raised. Only sketchsim's own ``experiments`` package is searched
    (:func:`_experiments_package`).
    """
    import pkgutil

    pkg = _experiments_package()
    if pkg is None:
        return [], {}
    names, broken = [], {}
    for m in pkgutil.iter_modules(getattr(pkg, "__path__", [])):
        if m.name.startswith("_"):
            continue
        try:
            mod = importlib.import_module(f"experiments.{m.name}")
        except Exception as exc:  # a study with a missing dependency or a syntax error
            broken[m.name] = f"{type(exc).__name__}: {exc}"
            continue
        if all(hasattr(mod, a) for a in ("NAME", "PROFILES")) and callable(getattr(mod, "run_one",
                                                                                  None)):
            names.append(m.name)
    return sorted(names), broken


def available_experiments():
    """Bare names of the experiments in the ``experiments`` package: its public modules that
    import and define ``NAME``, ``PROFILES`` and ``run_one``."""
    return _experiment_modules()[0]


def _import_candidate(name):
    """Import ``name``; return None when that module (or a parent package) does not exist."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (name == missing or name.startswith(missing + ".")):
            return None
        raise  # the experiment exists but one of its own imports is missing: show that error


_CONTRACT = ("NAME", "PROFILES", "run_one")


def _top_level_names(tree):
    """Names bound at module level by ``tree`` (assignments, defs, imports, also inside top-level
    ``if``/``try``/``with``/``for`` blocks); None when a ``from … import *`` makes it unknowable."""
    names = set()

    def targets(node):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, (ast.Tuple, ast.List)):
            for elt in node.elts:
                targets(elt)
        elif isinstance(node, ast.Starred):
            targets(node.value)

    def visit(stmts):
        for st in stmts:
            if isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(st.name)
            elif isinstance(st, ast.Assign):
                for t in st.targets:
                    targets(t)
            elif isinstance(st, (ast.AnnAssign, ast.AugAssign)):
                targets(st.target)
            elif isinstance(st, (ast.Import, ast.ImportFrom)):
                for alias in st.names:
                    if alias.name == "*":
                        return False
                    names.add(alias.asname or alias.name.split(".")[0])
            elif isinstance(st, (ast.For, ast.AsyncFor, ast.With, ast.AsyncWith)):
                if isinstance(st, (ast.For, ast.AsyncFor)):
                    targets(st.target)
                else:
                    for item in st.items:
                        if item.optional_vars is not None:
                            targets(item.optional_vars)
                if visit(st.body) is False or visit(getattr(st, "orelse", [])) is False:
                    return False
            elif isinstance(st, (ast.If, ast.While)):
                if visit(st.body) is False or visit(st.orelse) is False:
                    return False
            elif isinstance(st, ast.Try) or type(st).__name__ == "TryStar":
                for block in [st.body, st.orelse, st.finalbody] + [h.body for h in st.handlers]:
                    if visit(block) is False:
                        return False
        return True

    return names if visit(tree.body) else None


def _import_outside_package(name):
    """Import the module ``name`` found on ``sys.path`` (not in sketchsim's ``experiments``
    package), or return None when it does not exist.

    A module whose source visibly lacks ``NAME``, ``PROFILES`` or ``run_one`` at top level is
    refused *before* it is executed (ValueError): importing a file runs it, and a module that is
    about to be refused must not have run.
    """
    if name in sys.modules:
        return sys.modules[name]
    try:
        spec = importlib.util.find_spec(name)
    except ModuleNotFoundError as exc:  # a parent package is missing
        missing = exc.name or ""
        if missing and (name == missing or name.startswith(missing + ".")):
            return None
        raise
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    origin = spec.origin
    if origin and origin.endswith(".py") and os.path.isfile(origin):
        try:
            with open(origin, "rb") as fh:
                tree = ast.parse(fh.read(), filename=origin)
        except (OSError, SyntaxError, ValueError):
            tree = None  # importing shows the real error
        bound = _top_level_names(tree) if tree is not None else None
        if bound is not None:
            missing = [a for a in _CONTRACT if a not in bound]
            if missing:
                raise ValueError(
                    f"module {name!r} ({origin}) is not a sketchsim experiment: it must define "
                    f"NAME, PROFILES and run_one(params, rng); missing {', '.join(missing)} "
                    f"(refused without executing it)")
    return _import_candidate(name)


def load_experiment(name_or_module):
    """Return the experiment module named ``name_or_module`` after checking its contract.

    Parameters
    ----------
    name_or_module : str or module
        ``"thm1"`` or ``"experiments.thm1"`` (a module of sketchsim's ``experiments`` package), any
        importable dotted module path, or an already imported module.

    Returns
    -------
    module
        The experiment module.

    Raises
    ------
    ValueError
        Unknown name (the message lists the available experiments), or a module that breaks the
        contract (the message names the attribute and the rule).

    Notes
    -----
    Lookup order of a name, decided here and nowhere else:

    1. ``experiments.<name>`` (or ``<name>`` itself when it starts with ``experiments.``) in the
       ``experiments`` package installed with sketchsim, resolved from sketchsim's own location
       (:func:`_experiment_roots`: ``site-packages`` or the repository of an editable install) —
       never from the current directory, even when ``sys.path`` holds it (``python -m``). A local
       ``experiments/`` folder is never imported, so none of its files runs.
    2. Only for a name without the ``experiments.`` prefix that step 1 does not know: ``<name>`` as
       an ordinary module on ``sys.path`` (e.g. a study outside the package, or a test fixture).
       Its source is checked first, without executing it, for top-level ``NAME``, ``PROFILES``
       and ``run_one``; a module lacking them is refused unexecuted.
    """
    if isinstance(name_or_module, types.ModuleType):
        mod = name_or_module
    elif isinstance(name_or_module, str):
        name = name_or_module.strip()
        if not name or not re.match(r"^[A-Za-z_][A-Za-z0-9_.]*$", name) or ".." in name:
            raise ValueError(f"experiment must be a module name such as 'thm1' or "
                             f"'experiments.thm1'; got {name_or_module!r}")
        pkg = _experiments_package()
        candidates = [name] if _is_experiments_name(name) else [f"experiments.{name}", name]
        mod = None
        for cand in candidates:
            if _is_experiments_name(cand):
                mod = _import_candidate(cand) if pkg is not None else None
            else:
                mod = _import_outside_package(cand)
            if mod is not None:
                break
        if mod is None:
            avail, broken = _experiment_modules()
            raise ValueError(
                f"unknown experiment {name_or_module!r}: no module "
                f"{' or '.join(repr(c) for c in candidates)}; available experiments: "
                f"{', '.join(avail) if avail else '(none found in experiments/)'}"
                + ("".join(f"; {n} cannot be imported ({why})" for n, why in sorted(broken.items()))))
    else:
        raise ValueError(f"experiment must be a module name or a module; got {name_or_module!r}")
    _check_experiment(mod)
    return mod


def _check_experiment(mod):
    label = f"experiment module {mod.__name__!r}"
    missing = [a for a in ("NAME", "PROFILES", "run_one") if not hasattr(mod, a)]
    if missing:
        raise ValueError(f"{label} is not a sketchsim experiment: it must define NAME, PROFILES "
                         f"and run_one(params, rng); missing {', '.join(missing)}")
    name = mod.NAME
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(f"NAME of {label} must be a nonempty string of letters, digits, '_', '.' "
                         f"or '-' (it names result files); got {name!r}")
    if not callable(mod.run_one):
        raise ValueError(f"run_one of {label} must be callable; got {mod.run_one!r}")
    for opt in ("skip", "theory", "warm_up"):
        if hasattr(mod, opt) and not callable(getattr(mod, opt)):
            raise ValueError(f"{opt} of {label} must be callable when defined; "
                             f"got {getattr(mod, opt)!r}")
    profiles = mod.PROFILES
    if not isinstance(profiles, dict) or not profiles:
        raise ValueError(f"PROFILES of {label} must be a nonempty dict "
                         f"{{profile name: grid}}; got {profiles!r}")
    for pname, grid in profiles.items():
        if not isinstance(pname, str) or not pname:
            raise ValueError(f"PROFILES of {label}: profile names must be nonempty strings; "
                             f"got {pname!r}")
        _normalize_grid(grid, where=f"PROFILES[{pname!r}] of {label}")


# ====================================================================================== grids
def _norm_value(value, where):
    """A parameter value as a JSON-stable Python scalar (numpy scalars are unwrapped)."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    raise ValueError(f"{where} must be None, a bool, an int, a float or a str; "
                     f"got {value!r} of type {type(value).__name__}")


def _canon(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=True)


def _normalize_one_grid(grid, where):
    """-> (ordered dict key -> list of values, reps or None)."""
    if not isinstance(grid, dict):
        raise ValueError(f"{where} must be a dict {{parameter: list of values}}; got {grid!r}")
    reps = None
    out = {}
    for key, values in grid.items():
        if key == "reps":
            if isinstance(values, bool) or not isinstance(values, numbers.Integral) or values < 1:
                raise ValueError(f"{where}['reps'] must be an integer >= 1; got {values!r}")
            reps = int(values)
            continue
        if not isinstance(key, str) or not _KEY_RE.match(key):
            raise ValueError(f"{where}: parameter names must be Python identifiers; got {key!r}")
        if isinstance(values, (list, tuple)):
            vals = list(values)
        elif isinstance(values, np.ndarray):
            vals = values.tolist()
        else:
            vals = [values]  # a fixed parameter
        if not vals:
            raise ValueError(f"{where}[{key!r}] must be a nonempty list of values; got {values!r}")
        vals = [_norm_value(v, f"{where}[{key!r}] value") for v in vals]
        canon = [_canon(v) for v in vals]
        if len(set(canon)) != len(canon):
            dup = sorted({c for c in canon if canon.count(c) > 1})
            raise ValueError(f"{where}[{key!r}] must not repeat a value; got {vals!r} "
                             f"(repeated: {', '.join(dup)})")
        out[key] = vals
    return out, reps


def _normalize_grid(grid, where="grid"):
    """A profile (dict or list of dicts) -> list of (grid dict, reps or None)."""
    if isinstance(grid, dict):
        return [_normalize_one_grid(grid, where)]
    if isinstance(grid, (list, tuple)) and grid:
        return [_normalize_one_grid(g, f"{where}[{i}]") for i, g in enumerate(grid)]
    raise ValueError(f"{where} must be a dict {{parameter: list of values}} or a nonempty list of "
                     f"such dicts; got {grid!r}")


_TRUE = {"true", "yes", "on"}
_FALSE = {"false", "no", "off"}
_NONE = {"none", "null"}


def _parse_generic(text):
    low = text.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    if low in _NONE:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _parse_value(text, existing):
    """Parse one ``--grid`` value, guided by the types of the profile's values for that key."""
    kinds = {type(v) for v in existing if v is not None}
    if kinds == {str}:
        return text
    low = text.lower()
    if kinds == {bool}:
        if low in _TRUE or low == "1":
            return True
        if low in _FALSE or low == "0":
            return False
        return _parse_generic(text)
    if kinds and kinds <= {int, float}:
        if low in _NONE:
            return None
        if kinds == {float}:
            try:
                return float(text)
            except ValueError:
                return _parse_generic(text)
        try:
            return int(text)
        except ValueError:
            pass
        try:
            x = float(text)
        except ValueError:
            return _parse_generic(text)
        if kinds == {int} and math.isfinite(x) and x.is_integer():
            return int(x)  # "1e3" for an integer parameter
        return x
    return _parse_generic(text)


def parse_grid_overrides(overrides, grid=None):
    """Parse ``--grid key=v1,v2`` strings into ``{key: [values]}``.

    Parameters
    ----------
    overrides : None, str, list of str, or dict
        ``["d_sketch=256,1024", "family=haar"]``; a dict ``{key: value or list}`` is taken as is.
    grid : dict or list of dicts, optional
        The profile being overridden. Each key must be one of its parameters, and values are parsed
        like the profile's values for that key (``"1"`` becomes ``1.0`` for a float parameter and
        stays ``"1"`` for a string one); without type information ``true/false`` become bools,
        ``none``/``null`` None, then int, float, else str.

    Raises
    ------
    ValueError
        Malformed item, repeated key, or a key that is not a parameter of ``grid`` (the message
        lists the valid keys).
    """
    if overrides is None:
        return {}
    grids = _normalize_grid(grid, "grid") if grid is not None else None
    existing = {}
    if grids is not None:
        for g, _ in grids:
            for k, vals in g.items():
                existing.setdefault(k, []).extend(vals)
    valid = ", ".join(existing) if existing else "(none)"

    def check_key(key):
        if not isinstance(key, str) or not _KEY_RE.match(key):
            raise ValueError(f"grid override keys must be parameter names; got {key!r}")
        if key == "reps":
            raise ValueError("grid override 'reps' is not a parameter: use reps=R (--reps R) for "
                             "the number of repetitions")
        if grids is not None and key not in existing:
            raise ValueError(f"grid override names unknown parameter {key!r}; valid keys: {valid}")

    out = {}
    if isinstance(overrides, dict):
        for key, values in overrides.items():
            check_key(key)
            vals = list(values) if isinstance(values, (list, tuple)) else [values]
            out[key] = vals
    else:
        if isinstance(overrides, str):
            overrides = [overrides]
        if not isinstance(overrides, (list, tuple)):
            raise ValueError(f"grid_overrides must be None, a list of 'key=v1,v2' strings or a "
                             f"dict; got {overrides!r}")
        for item in overrides:
            if not isinstance(item, str) or "=" not in item:
                raise ValueError(f"grid override must look like key=v1,v2; got {item!r}")
            key, _, rhs = item.partition("=")
            key = key.strip()
            check_key(key)
            if key in out:
                raise ValueError(f"grid override key {key!r} is given twice; "
                                 f"list all its values once: {key}=v1,v2")
            parts = [p.strip() for p in rhs.split(",")]
            if not rhs.strip() or any(p == "" for p in parts):
                raise ValueError(f"grid override {item!r} needs nonempty comma-separated values "
                                 f"after '=' (key=v1,v2)")
            out[key] = [_parse_value(p, existing.get(key, [])) for p in parts]
    for key, vals in out.items():
        _normalize_one_grid({key: vals}, "grid override")  # types and duplicates
        out[key] = [_norm_value(v, f"grid override {key!r} value") for v in vals]
    return out


def expand_grid(grid, overrides=None):
    """Cartesian product of ``grid`` (a dict, or a list of dicts whose products are joined).

    ``overrides`` (``--grid`` strings or a dict, see :func:`parse_grid_overrides`) replace the
    value lists of existing keys. The ``reps`` entry is ignored here. Returns a list of parameter
    dicts in grid order (last key fastest), without duplicates.
    """
    grids = _normalize_grid(grid, "grid")
    over = parse_grid_overrides(overrides, grid)
    out, seen = [], set()
    for g, _ in grids:
        g = {k: over.get(k, v) for k, v in g.items()}
        keys = list(g)
        for combo in itertools.product(*(g[k] for k in keys)):
            params = dict(zip(keys, combo))
            c = _canon(params)
            if c not in seen:
                seen.add(c)
                out.append(params)
    return out


# ============================================================================ seeds and run ids
def canonical_params(params):
    """Canonical JSON of a parameter dict (sorted keys, no spaces, numpy scalars unwrapped)."""
    if not isinstance(params, dict):
        raise ValueError(f"params must be a dict; got {params!r}")
    return _canon({str(k): _norm_value(v, f"params[{k!r}]") for k, v in params.items()})


def _check_base_seed(seed):
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a nonnegative integer; got {seed!r}")
    return int(seed)


def _check_rep(rep):
    if isinstance(rep, bool) or not isinstance(rep, numbers.Integral) or rep < 0:
        raise ValueError(f"rep must be a nonnegative integer; got {rep!r}")
    return int(rep)


def _sha256_of_list(*parts):
    """SHA-256 of the canonical JSON list of ``parts`` (the last-but-one may be a params dict)."""
    items = [canonical_params(p) if isinstance(p, dict) else _canon(p) for p in parts]
    return hashlib.sha256(("[" + ",".join(items) + "]").encode("ascii")).digest()


def run_seed(base_seed, experiment, params, rep):
    """Seed of one run: the first 8 bytes of SHA-256 of the canonical JSON
    ``[base_seed, experiment, params, rep]``, big-endian, top bit cleared (a nonnegative int64).

    Example: ``run_seed(0, "e", {"d": 8}, 0)`` hashes the bytes ``[0,"e",{"d":8},0]``.
    """
    base_seed, rep = _check_base_seed(base_seed), _check_rep(rep)
    digest = _sha256_of_list(base_seed, str(experiment), params, rep)
    return int.from_bytes(digest[:8], "big") & _SEED_MASK


def run_id(experiment, params, rep, base_seed):
    """Short id (16 hex digits of SHA-256) of (experiment, canonical params, rep, base seed)."""
    base_seed, rep = _check_base_seed(base_seed), _check_rep(rep)
    return _sha256_of_list("run_id", str(experiment), params, rep, base_seed).hex()[:16]


@dataclasses.dataclass(frozen=True)
class Run:
    """One planned run: its id, parameters, repetition index and seed."""

    run_id: str
    params: dict
    rep: int
    seed: int


def _profile_grid(mod, profile):
    profiles = mod.PROFILES
    if not isinstance(profile, str) or profile not in profiles:
        raise ValueError(f"profile must be one of {', '.join(map(repr, profiles))} "
                         f"(PROFILES of experiment {mod.NAME!r}); got {profile!r}")
    return profiles[profile]


def plan_runs(experiment, profile="quick", grid_overrides=None, reps=None, seed=0):
    """Every run of a sweep as :class:`Run` (run_id, params, rep, seed), in grid order, then rep.

    Runs refused by the experiment's ``skip`` are included (filtering happens in
    :func:`run_sweep`). ``reps`` overrides the profile's ``reps`` entry.
    """
    mod = load_experiment(experiment)
    grid = _profile_grid(mod, profile)
    base = _check_base_seed(seed)
    if reps is not None and (isinstance(reps, bool) or not isinstance(reps, numbers.Integral)
                             or reps < 1):
        raise ValueError(f"reps must be None or an integer >= 1; got {reps!r}")
    over = parse_grid_overrides(grid_overrides, grid)
    runs, seen = [], set()
    for g, g_reps in _normalize_grid(grid, f"PROFILES[{profile!r}]"):
        n_reps = int(reps) if reps is not None else (g_reps or 1)
        sub = {k: over.get(k, v) for k, v in g.items()}
        for params in expand_grid(sub):
            for rep in range(n_reps):
                rid = run_id(mod.NAME, params, rep, base)
                if rid not in seen:
                    seen.add(rid)
                    runs.append(Run(rid, params, rep, run_seed(base, mod.NAME, params, rep)))
    return runs


# ================================================================================== provenance
_PROCESS_INFO = {}
_WARMED = set()
_PINNED = {"done": False, "limits": None}


def _git_info(path):
    """(commit, dirty) of the git repository holding ``path``; ("", "") when unavailable.

    ``dirty``: a tracked file outside ``results/`` and ``paper_figs/`` (the outputs) differs from
    the commit.

    Read-only: ``GIT_OPTIONAL_LOCKS=0`` keeps ``git status`` from refreshing the index.
    """
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0")
    cwd = str(path if os.path.isdir(path) else os.path.dirname(path))
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, env=env, timeout=10,
                                capture_output=True, text=True)
        if commit.returncode != 0:
            return "", ""
        # outputs are not code: a sweep rewrites results/ and paper_figs/ as it goes, which must not
        # mark the rows of the next study of the same run as written from a dirty tree
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":(top)",
                                 ":(top,exclude)results", ":(top,exclude)paper_figs"],
                                cwd=cwd, env=env, timeout=30, capture_output=True, text=True)
        dirty = "" if status.returncode != 0 else bool(status.stdout.strip())
        return commit.stdout.strip(), dirty
    except (OSError, subprocess.SubprocessError):
        return "", ""


def _process_info():
    """Versions and thread counts of this process (thread counts refreshed per call)."""
    if not _PROCESS_INFO:
        import numba

        from .. import __version__

        _PROCESS_INFO.update(
            sketchsim_version=__version__, numpy_version=np.__version__,
            numba_version=numba.__version__, python_version=_platform.python_version(),
            platform=_platform.platform())
    info = dict(_PROCESS_INFO)
    import numba

    info["numba_threads"] = int(numba.get_num_threads())
    if "blas_threads" not in _PROCESS_INFO:
        try:
            from threadpoolctl import threadpool_info

            blas = [p["num_threads"] for p in threadpool_info() if p.get("user_api") == "blas"]
            _PROCESS_INFO["blas_threads"] = max(blas) if blas else ""
        except Exception:  # pragma: no cover - threadpoolctl is a dependency
            _PROCESS_INFO["blas_threads"] = ""
    info["blas_threads"] = _PROCESS_INFO["blas_threads"]
    return info


def provenance(path=None):
    """Versions, thread counts, platform and git commit (of the repository holding ``path``,
    default this package) — the provenance columns of every row, for ``sketchsim info``."""
    commit, dirty = _git_info(path or Path(__file__).resolve().parent)
    info = _process_info()
    info.update(git_commit=commit, git_dirty=dirty)
    return info


def _utc_now():
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ===================================================================================== workers
def _pin_threads():
    """One Numba thread (for the calling thread: the setting is thread-local) and one BLAS
    thread (process-wide, applied once per process)."""
    import numba

    if not _PINNED["done"]:
        from threadpoolctl import threadpool_limits

        _PINNED["limits"] = threadpool_limits(limits=1)
        _PINNED["done"] = True
        _PROCESS_INFO.pop("blas_threads", None)
    numba.set_num_threads(1)


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _exit_with_parent(parent_pid, poll_s=0.5):
    """Make this (worker) process end when process ``parent_pid``, its parent, ends.

    On Linux ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` has the kernel kill this process the moment its
    parent exits, however it dies (SIGKILL included) and even while this process is busy in
    compiled code holding the GIL. The signal is tied to the parent *thread* that started this
    process: the ``processes`` executor starts its workers from the thread that calls
    :func:`run_sweep`, which outlives the pool. The parent may have died before the ``prctl`` call
    (this process is then already re-parented): checked right after it. Elsewhere (no ``prctl``),
    a daemon thread polls ``os.getppid()`` every ``poll_s`` seconds and exits the process when the
    parent changed.

    Parameters
    ----------
    parent_pid : int
        Pid of the process that started this one (``os.getpid()`` there, passed in).
    poll_s : float
        Polling period of the fallback watchdog thread.
    """
    armed = False
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent_pid:  # died before prctl took effect
        os._exit(1)
    if armed:
        return

    def watch():
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="sketchsim-parent-watch", daemon=True).start()


def _init_worker(parent_pid=None):
    """Initializer of the ``processes`` executor's (spawned) workers: end with the parent
    (:func:`_exit_with_parent`), one Numba and one BLAS thread."""
    if parent_pid is not None:
        _exit_with_parent(parent_pid)
    for key, val in _PIN_ENV.items():
        os.environ[key] = val
    # Numba re-reads NUMBA_* variables at each compilation and refuses a changed thread count
    # once its pool is up, so make the new value effective now, before any parallel region.
    from numba.core import config
    from numba.np.ufunc import parallel

    if not getattr(parallel, "_is_initialized", True):
        config.reload_config()
    _pin_threads()


def _resolve_module(name, file):
    mod = sys.modules.get(name)
    if mod is not None and (file is None or os.path.abspath(getattr(mod, "__file__", "") or "")
                            == os.path.abspath(file)):
        return mod
    if name != "__main__":
        if _is_experiments_name(name):
            _experiments_package()  # the installed studies, not a local experiments/ folder
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError:
            if not file:
                raise
    if not file or not os.path.exists(file):
        raise ModuleNotFoundError(
            f"experiment module {name!r} cannot be imported in this worker"
            f"{'' if not file else f' and {file} does not exist here'}; install the project on "
            "every worker (or share its directory at the same path)")
    alias = name if name != "__main__" else "_sketchsim_experiment_" + Path(file).stem
    spec = importlib.util.spec_from_file_location(alias, file)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[alias] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        sys.modules.pop(alias, None)
        raise
    return mod


def _module_ref(mod):
    file = getattr(mod, "__file__", None)
    return mod.__name__, (os.path.abspath(file) if file else None)


def _scalars(obj, what):
    if not isinstance(obj, dict):
        raise TypeError(f"{what} must return a dict of scalars; got {type(obj).__name__}")
    out = {}
    for k, v in obj.items():
        if not isinstance(k, str) or not _KEY_RE.match(k):
            raise TypeError(f"{what} returned key {k!r}; keys must be Python identifiers")
        if isinstance(v, np.ndarray) and v.ndim == 0:
            v = v.item()
        if isinstance(v, np.generic):
            v = v.item()
        if not (v is None or isinstance(v, (bool, int, float, str))):
            raise TypeError(f"{what} returned {k}={v!r} of type {type(v).__name__}; values must be "
                            "None, bool, int, float or str")
        out[k] = v
    return out


def _execute(task):
    """Run one task in the current process; never raises for an ordinary exception.

    ``task`` = {module, file, run_id, params, rep, seed, pin}. Returns {run_id, status: "ok",
    metrics, theory, time_s, info, utc_time} or {run_id, status: "failed", error_type,
    error_message, traceback}.
    """
    try:
        if task.get("pin"):
            _pin_threads()
        mod = _resolve_module(task["module"], task["file"])
        key = (mod.__name__, getattr(mod, "__file__", None))
        if key not in _WARMED and callable(getattr(mod, "warm_up", None)):
            mod.warm_up()
        _WARMED.add(key)
        rng = np.random.default_rng(task["seed"])
        params = dict(task["params"])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            t0 = time.perf_counter()
            metrics = mod.run_one(params, rng)
            elapsed = time.perf_counter() - t0
            metrics = _scalars(metrics, "run_one")
            theory = {}
            if callable(getattr(mod, "theory", None)):
                theory = _scalars(mod.theory(dict(task["params"])), "theory")
        return {"run_id": task["run_id"], "status": "ok", "metrics": metrics, "theory": theory,
                "warnings": _warning_text(caught), "time_s": elapsed, "info": _process_info(),
                "utc_time": _utc_now()}
    except Exception as exc:
        return _failure_result(task["run_id"], exc)


def _warning_text(caught, limit=1000):
    """Distinct warnings as "Category: message" joined by " | " (for the ``warnings`` column)."""
    seen = []
    for w in caught:
        text = f"{w.category.__name__}: {w.message}"
        if text not in seen:
            seen.append(text)
    out = " | ".join(seen)
    return out if len(out) <= limit else out[:limit - 3] + "..."


def _failure_result(rid, exc, tb=None):
    if tb is None:
        tb = "".join(_traceback.format_exception(type(exc), exc, exc.__traceback__))
    return {"run_id": rid, "status": "failed", "error_type": type(exc).__name__,
            "error_message": str(exc), "traceback": tb[-4000:], "utc_time": _utc_now()}


# ================================================================================== persistence
def _write_json_atomic(path, obj):
    with atomic_path(path, suffix=".part") as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, allow_nan=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())


_LOCK_NAME = ".lock"
_LOCKS = {}
_LOCKS_GUARD = threading.Lock()


@contextlib.contextmanager
def _exclusive(exp_dir):
    """Hold the experiment folder's lock (``<exp_dir>/.lock``) for a read-modify-write.

    An exclusive ``flock`` on a lock file that is never replaced serializes every sweep that
    writes the same results (processes on this host, and hosts sharing the folder where the file
    system honours ``flock``, as Linux NFS does). Re-entrant within a process (and serialized among
    its threads). Without ``fcntl``, or on a file system that refuses locks, only this process's
    threads are serialized.
    """
    key = os.path.abspath(os.path.join(os.fspath(exp_dir), _LOCK_NAME))
    with _LOCKS_GUARD:
        entry = _LOCKS.setdefault(key, {"rlock": threading.RLock(), "depth": 0, "fd": None})
    with entry["rlock"]:
        if entry["depth"] == 0:
            os.makedirs(os.path.dirname(key), exist_ok=True)
            fd = os.open(key, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                import fcntl

                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX)
                        break
                    except InterruptedError:
                        continue
            except ImportError:  # pragma: no cover - not POSIX
                pass
            except OSError as exc:  # pragma: no cover - a file system without locks
                if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                    os.close(fd)
                    raise
            entry["fd"] = fd
        entry["depth"] += 1
        try:
            yield
        finally:
            entry["depth"] -= 1
            if entry["depth"] == 0:
                fd, entry["fd"] = entry["fd"], None
                os.close(fd)  # releases the flock


class _FailureLog:
    """``failures.csv``: one row per run whose latest attempt failed; removed when empty.

    Every change is a read-modify-write of the file on disk under the experiment folder's lock
    (:func:`_exclusive`), applied the moment it happens, so that sweeps running concurrently into
    one results folder (from several processes or hosts) keep each other's rows; the file itself
    is replaced atomically, so readers never see a partial file.
    """

    def __init__(self, path):
        self.path = Path(path)

    @property
    def rows(self):
        """{run_id: row} as on disk now (rows of every sweep)."""
        import csv

        rows = {}
        try:
            with open(self.path, newline="", encoding="utf-8") as fh:
                for row in csv.DictReader(fh):
                    if row.get("run_id"):
                        rows[row["run_id"]] = row
        except FileNotFoundError:
            pass
        return rows

    def update(self, records=None, resolved=()):
        """Add or replace ``records`` ({run_id: row}; ``attempts`` counts on from the row on disk)
        and drop the rows of ``resolved`` run ids, atomically with respect to other writers."""
        records = records or {}
        resolved = [rid for rid in resolved if rid not in records]
        if not records and not resolved:
            return
        with _exclusive(self.path.parent):
            rows = self.rows
            changed = False
            for rid in resolved:
                changed |= rows.pop(rid, None) is not None
            for rid, row in records.items():
                prev = rows.get(rid)
                try:
                    attempts = int(prev["attempts"]) + 1 if prev else 1
                except (KeyError, TypeError, ValueError):
                    attempts = 1
                rows[rid] = {**row, "attempts": attempts}
                changed = True
            if changed:
                self._write(rows)

    def record(self, rid, row):
        """Record the failure ``row`` of run ``rid``."""
        self.update(records={rid: row})

    def resolve(self, rid):
        """Drop the row of run ``rid`` (it has finished); a no-op without a log."""
        if self.path.exists():
            self.update(resolved=[rid])

    def _write(self, rows):
        import csv

        if not rows:
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass
            return
        cols = []
        for row in rows.values():
            for c in row:
                if c not in cols:
                    cols.append(c)
        with atomic_path(self.path, suffix=".part") as tmp:
            with open(tmp, "w", newline="", encoding="utf-8") as fh:
                w = csv.DictWriter(fh, fieldnames=cols, lineterminator="\n")
                w.writeheader()
                for rid in sorted(rows):
                    w.writerow({c: _csv_text(rows[rid].get(c)) for c in cols})
                fh.flush()
                os.fsync(fh.fileno())


class CorruptShardWarning(UserWarning):
    """A shard file that is not a finished run's row (unreadable JSON, not an object, or a row of
    another run): it is moved aside to ``<name>.corrupt`` and its run is recomputed."""


def _load_shard(path, name):
    """(row, problem) of the shard ``path`` of experiment ``name``.

    A shard is a finished run when it holds a JSON object whose ``run_id`` is the file's stem and
    whose ``experiment`` is ``name``: then ``(row, None)``. Otherwise ``(None, why)``, with
    ``why == "missing"`` when there is no file.
    """
    try:
        with open(path, encoding="utf-8") as fh:
            row = json.load(fh)
    except FileNotFoundError:
        return None, "missing"
    except (OSError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        return None, f"not readable JSON ({type(exc).__name__}: {exc})"
    if not isinstance(row, dict):
        return None, f"holds a JSON {type(row).__name__}, not an object"
    rid = Path(path).name[:-len(_SHARD_EXT)]
    if row.get("run_id") != rid:
        return None, f"its run_id is {row.get('run_id')!r}, not {rid!r}"
    if row.get("experiment") != name:
        return None, f"its experiment is {row.get('experiment')!r}, not {name!r}"
    return row, None


def _read_shard(path, name):
    """The row of the shard ``path`` (a dict), or None when it is missing or malformed; a
    malformed shard is moved aside (:func:`_quarantine_shard`)."""
    row, problem = _load_shard(path, name)
    if problem is not None and problem != "missing":
        _quarantine_shard(path, name)
    return row


def _shard_finished(path, name):
    """True when ``path`` holds a finished run; a malformed shard is moved aside (False)."""
    return _read_shard(path, name) is not None


def _quarantine_shard(path, name):
    """Move the malformed shard ``path`` aside to ``<name>.corrupt`` and warn once, naming it.

    Checked again under the experiment's lock, so that a shard a concurrent sweep has just
    rewritten is never moved aside.
    """
    path = Path(path)
    with _exclusive(path.parent.parent):
        problem = _load_shard(path, name)[1]
        if problem is None or problem == "missing":
            return
        aside = path.with_name(path.name + ".corrupt")
        try:
            os.replace(path, aside)
        except FileNotFoundError:
            return
    warnings.warn(f"shard {path} is malformed ({problem}): moved aside to {aside.name}; "
                  f"its run is not counted as finished and will be recomputed",
                  CorruptShardWarning, stacklevel=3)


def _csv_text(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _type_rank(v):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return (0, 0)
    if isinstance(v, bool):
        return (1, int(v))
    if isinstance(v, (int, float)):
        return (2, v)
    return (3, str(v))


def _column_order(rows):
    seen = {}
    for row in rows:
        for c in row:
            seen.setdefault(c, None)
    cols = list(seen)
    head = [c for c in ("experiment", "run_id") if c in seen]
    pcols = [c for c in cols if c.startswith("p_")]
    mid = [c for c in ("rep", "seed") if c in seen]
    mcols = [c for c in cols if c.startswith("m_")]
    tcols = [c for c in cols if c.startswith("t_")]
    tail = [c for c in ("warnings", "time_s") + _PROVENANCE_COLS if c in seen]
    rest = [c for c in cols if c not in set(head + pcols + mid + mcols + tcols + tail)]
    return head + pcols + mid + mcols + tcols + tail + rest, pcols


def _results_name(experiment, results_dir):
    if isinstance(experiment, types.ModuleType):
        return load_experiment(experiment).NAME
    if isinstance(experiment, str):
        if _NAME_RE.match(experiment) and (Path(results_dir) / experiment / "shards").is_dir():
            return experiment
        return load_experiment(experiment).NAME
    raise ValueError(f"experiment must be a name or a module; got {experiment!r}")


def merge(experiment, results_dir="results", run_ids=None):
    """Merge shards into ``<results_dir>/<NAME>.csv`` and return them as a DataFrame.

    Parameters
    ----------
    experiment : str or module
        Experiment (module, module name, or the ``NAME`` of a results folder).
    results_dir : path
    run_ids : iterable of str, optional
        Only these runs (missing shards are ignored); default every shard in the folder, whatever
        sweep wrote it. :func:`run_sweep` passes its own runs, so ``<NAME>.csv`` then holds exactly
        the latest sweep.

    Rows are sorted by parameters (in column order), then ``rep``, ``seed`` and ``run_id``, so the
    output is identical whatever the order in which runs finished. A malformed shard (not a JSON
    object holding its own run) is moved aside to ``<file>.corrupt`` with a
    :class:`CorruptShardWarning` and gives no row. With sweeps finishing concurrently, the table
    is the one of the sweep that merged last, and it always matches its schema file. Floats are read back exactly by
    ``pandas.read_csv`` (see :func:`read_results`). Nothing is written when there are no rows.
    """
    import pandas as pd

    results_dir = Path(_check_dir(results_dir))
    name = _results_name(experiment, results_dir)
    shards = results_dir / name / "shards"
    if run_ids is None:
        files = sorted(shards.glob("*" + _SHARD_EXT)) if shards.is_dir() else []
    else:
        files = [shards / f"{rid}{_SHARD_EXT}" for rid in sorted(set(run_ids))]
        files = [f for f in files if f.exists()]
    rows = []
    for f in files:
        if f.name.startswith("."):
            continue
        row = _read_shard(f, name)  # a malformed shard is moved aside with a warning
        if row is not None:
            rows.append(row)
    rows.sort(key=lambda r: str(r.get("run_id", "")))
    cols, pcols = _column_order(rows)
    rows.sort(key=lambda r: (tuple(_type_rank(r.get(c)) for c in pcols),
                             _type_rank(r.get("rep")), _type_rank(r.get("seed")),
                             str(r.get("run_id", ""))))
    schema = _schema(rows, cols)
    # built column by column from the JSON values (never through a float64 intermediate, which
    # would round integers beyond 2**53 in a column with missing values)
    df = pd.DataFrame({c: _column([r.get(c) for r in rows], schema[c]) for c in cols},
                      columns=cols)
    if rows:
        # the table and its schema are one record: written together under the experiment's lock,
        # so that two sweeps finishing at once never leave one's table with the other's schema
        with _exclusive(results_dir / name):
            with atomic_path(results_dir / f"{name}.schema.json", suffix=".part") as tmp:
                with open(tmp, "w", encoding="utf-8") as fh:
                    json.dump(schema, fh, indent=0)
            with atomic_path(results_dir / f"{name}.csv", suffix=".part") as tmp:
                df.to_csv(tmp, index=False, lineterminator="\n")
    return df


def _schema(rows, cols):
    """{column: "bool" | "int" | "float" | "str"} from the JSON types of the shard values.

    Integers mixed with floats are floats; a column of only missing values is float; any other
    mixture (e.g. bools and strings) is str.
    """
    out = {}
    for c in cols:
        kinds = set()
        for r in rows:
            v = r.get(c)
            if v is None:
                continue
            kinds.add("bool" if isinstance(v, bool) else "int" if isinstance(v, int)
                      else "float" if isinstance(v, float) else "str")
        if kinds <= {"int"} and kinds:
            out[c] = "int"
        elif kinds <= {"int", "float"}:
            out[c] = "float"
        elif kinds == {"bool"}:
            out[c] = "bool"
        else:
            out[c] = "str"
    return out


def _column(values, kind):
    """One typed column from JSON values (None = missing).

    int → int64 (nullable ``Int64`` with missing values), float → float64 (NaN when missing),
    bool → bool (nullable ``boolean``), str → object of str (None when missing; an empty string
    counts as missing, since the CSV cannot tell them apart).
    """
    import pandas as pd

    missing = [v is None for v in values]
    if kind == "int":
        return pd.array(values, dtype="Int64") if any(missing) else np.array(values, dtype=np.int64)
    if kind == "float":
        return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    if kind == "bool":
        return pd.array(values, dtype="boolean") if any(missing) else np.array(values, dtype=bool)
    # an explicit object Series: pandas ≥ 3 would infer its own "str" dtype from an array
    return pd.Series([None if v is None or v == "" else (v if isinstance(v, str) else _csv_text(v))
                      for v in values], dtype=object)


_READ_DTYPES = {"int": "Int64", "float": "float64", "bool": "boolean", "str": object}


def _typed(df, schema):
    """Columns cast to the schema's types: int64 / bool without missing values, else the nullable
    ``Int64`` / ``boolean``; str columns as objects with None for missing values."""
    import pandas as pd

    for c, kind in schema.items():
        if c not in df:
            continue
        col = df[c]
        if kind == "str":
            df[c] = pd.Series([None if m else v for v, m in zip(col.tolist(), col.isna())],
                              index=df.index, dtype=object)
        elif kind in ("int", "bool") and not col.isna().any():
            df[c] = col.astype("int64" if kind == "int" else bool)
        else:
            df[c] = col.astype(_READ_DTYPES[kind])
    return df


def read_results(experiment, results_dir="results"):
    """The merged table ``<results_dir>/<NAME>.csv`` as a DataFrame, typed and exact.

    With the schema ``<NAME>.schema.json`` written by :func:`merge`, every column keeps its type
    (ints stay ints, even beyond 2**53 next to missing values; bools stay bools; strings stay
    strings, including "NA", "None" or "nan"; an empty field is missing) and floats are read back
    bit for bit (``float_precision="round_trip"`` on pandas < 3, whose default parser may differ
    from ``repr`` in the last digit; pandas ≥ 3 is exact by default and deprecates the option).
    """
    import pandas as pd

    results_dir = Path(_check_dir(results_dir))
    name = _results_name(experiment, results_dir)
    path = results_dir / f"{name}.csv"
    spath = results_dir / f"{name}.schema.json"
    exact = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}
    if not spath.exists():  # a table from before schemas: pandas' own type inference
        return pd.read_csv(path, **exact)
    with open(spath, encoding="utf-8") as fh:
        schema = json.load(fh)
    # only an empty field is missing: "NA", "None", "nan", "null" … are strings of str columns
    df = pd.read_csv(path, dtype={c: _READ_DTYPES[k] for c, k in schema.items()},
                     keep_default_na=False, na_values=[""], **exact)
    return _typed(df, schema)


def read_failures(experiment, results_dir="results"):
    """Rows of ``<results_dir>/<NAME>/failures.csv`` as a list of dicts (empty when absent)."""
    log = _FailureLog(Path(_check_dir(results_dir)) / str(experiment) / "failures.csv")
    return list(log.rows.values())


# ======================================================================================= sweep
@dataclasses.dataclass
class SweepSummary:
    """What :func:`run_sweep` did. ``done`` runs were computed now, ``cached`` were already
    finished (shard present), ``skipped`` were refused by the experiment's ``skip`` and ``failed``
    raised (recorded in ``failures_path``, retried next time). ``manifest_path`` is this sweep's
    own record under ``<NAME>/sweeps/`` (arguments and counts)."""

    experiment: str
    profile: str
    n_runs: int
    done: int
    cached: int
    skipped: int
    failed: int
    merged_path: Path | None
    shards_dir: Path
    failures_path: Path
    executor: str
    jobs: int
    wall_time_s: float
    skip_reasons: dict = dataclasses.field(default_factory=dict)
    failures: list = dataclasses.field(default_factory=list)
    manifest_path: Path | None = None

    @property
    def ok(self):
        """True when no run failed."""
        return self.failed == 0

    def to_dict(self):
        d = dataclasses.asdict(self)
        for k in ("merged_path", "shards_dir", "failures_path", "manifest_path"):
            d[k] = None if d[k] is None else str(d[k])
        return d

    def __str__(self):
        parts = [f"{self.done} done", f"{self.cached} already finished"]
        if self.skipped:
            parts.append(f"{self.skipped} skipped")
        parts.append(f"{self.failed} failed" + (f" (see {self.failures_path})" if self.failed
                                                 else ""))
        out = f" -> {self.merged_path}" if self.merged_path else ""
        return (f"{self.experiment} [{self.profile}]: {self.n_runs} runs: {', '.join(parts)}"
                f"{out} in {self.wall_time_s:.1f} s ({self.executor}, jobs={self.jobs})")


def _check_bool(name, value):
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False; got {value!r}")
    return value


def _check_dir(results_dir):
    if not isinstance(results_dir, (str, os.PathLike)) or not os.fspath(results_dir):
        raise ValueError(f"results_dir must be a nonempty path; got {results_dir!r}")
    p = Path(results_dir)
    if p.exists() and not p.is_dir():
        raise ValueError(f"results_dir must be a directory; got {str(p)!r}, which is a file")
    return p


def _check_scheduler(scheduler, executor):
    if scheduler is None:
        return None
    if not isinstance(scheduler, str) or not scheduler.strip() or any(c.isspace()
                                                                      for c in scheduler.strip()):
        raise ValueError(f"scheduler must be an address such as 'tcp://HOST:PORT'; "
                         f"got {scheduler!r}")
    if executor != "dask":
        raise ValueError(f"scheduler is only used by executor='dask'; got scheduler={scheduler!r} "
                         f"with executor={executor!r}")
    scheduler = scheduler.strip()
    if "://" not in scheduler:
        scheduler = "tcp://" + scheduler
    if not re.match(r"^[a-z][a-z0-9+]*://[^/\s]+:\d+$", scheduler):
        raise ValueError(f"scheduler must be an address such as 'tcp://HOST:PORT'; "
                         f"got {scheduler!r}")
    return scheduler


def run_sweep(experiment, profile="quick", grid_overrides=None, reps=None, seed=0, force=False,
              jobs=1, executor=None, scheduler=None, results_dir="results", quiet=False):
    """Run (or resume) a sweep of ``experiment`` and merge its rows into ``results/<NAME>.csv``.

    Parameters
    ----------
    experiment : str or module
        See :func:`load_experiment` (``"thm1"``, ``"experiments.thm1"``, a module).
    profile : str
        Key of the experiment's ``PROFILES`` (``--profile``; ``quick`` by default).
    grid_overrides : list of str or dict, optional
        ``--grid key=v1,v2`` items replacing the value lists of existing parameters.
    reps : int, optional
        Repetitions per grid point (``--reps``); default the profile's ``reps`` entry, else 1.
    seed : int
        Base seed (``--seed``), nonnegative.
    force : bool
        Redo runs that already have a shard (``--force``). A forced run that fails loses its old
        shard (the row would no longer describe the current code).
    jobs : int
        Worker processes (``--jobs``) for ``processes`` and a local Dask cluster; ignored with a
        remote ``scheduler`` (the cluster's size decides).
    executor : {"serial", "processes", "dask"} or None
        ``--executor``; None picks ``dask`` when a ``scheduler`` is given, else ``serial`` when
        ``jobs == 1`` and ``processes`` otherwise.
    scheduler : str, optional
        ``--scheduler tcp://HOST:PORT`` of a running Dask scheduler (``executor="dask"`` only);
        without it a LocalCluster with ``jobs`` single-threaded worker processes is started.
    results_dir : path
    quiet : bool
        No progress bar (it is also off when stderr is not a terminal).

    Returns
    -------
    SweepSummary
        Counts (``done``, ``cached`` = skipped as finished, ``skipped`` by the experiment,
        ``failed``), the merged CSV path, and the failures of this invocation.

    Raises
    ------
    ValueError
        Any invalid argument (naming it, the rule and the value), or an unknown experiment.
    """
    t_start = time.perf_counter()
    jobs, executor, scheduler, results_dir = _sweep_options(jobs, executor, scheduler, force,
                                                             quiet, results_dir, seed)
    sweep = _Sweep(experiment, profile, grid_overrides, reps, seed, force, jobs, executor,
                   scheduler, results_dir, t_start)
    from tqdm import tqdm

    bar = tqdm(total=len(sweep.tasks), desc=sweep.name, unit="run",
               disable=quiet or not _stderr_is_tty(), leave=False)
    sweep.recorder.bar = bar
    pool = _Pool(executor, jobs, scheduler)
    try:
        sweep.submit(pool, _estimated_costs(sweep, [results_dir]) if pool.parallel else None)
        pool.run()
    finally:
        bar.close()
    return sweep.finish(time.perf_counter())


def run_sweeps(experiments, profile="quick", seed=0, force=False, jobs=1, executor=None,
               scheduler=None, results_dir="results", quiet=False, on_done=None, hint_dirs=(),
               finish_first=None):
    """Run (or resume) the sweeps of several experiments on **one** pool of workers.

    Every run of every experiment is planned first (exactly as :func:`run_sweep` plans one sweep:
    same run ids, seeds, shards, failures, manifests and merged tables), then all of them go to a
    single executor: the ``processes`` pool or Dask cluster is started once, so each worker imports
    the studies and loads or compiles their Numba kernels once for the whole call instead of once
    per experiment. With a parallel executor (see :func:`_dispatch_priorities`):

    * each worker first warms the experiments' distinct ``warm_up`` functions, every worker in
      another (rotated) order, so that on a cold Numba cache the workers compile different
      kernels at the same time and load the others' from the cache (:func:`_warm_worker`);
    * the long runs go first, longest first (estimated from the ``time_s`` of the same run ids
      in earlier merged tables, :func:`_estimated_costs`), then the short ones experiment by
      experiment, those with the largest ``finish_first`` weight first: no worker waits for a
      long run at the end, and the experiments whose follow-up work (``on_done``) is largest
      finish early, so that it overlaps the remaining runs.

    The order never changes a result (a run depends only on its seed). ``serial`` runs them in
    the order of ``experiments``, each in grid order, as consecutive :func:`run_sweep` calls
    would.

    An experiment's sweep is merged (``<NAME>.csv``, its manifest) the moment its last run
    arrives; ``on_done(summary, pool)`` is then called in this process, and may queue more work on
    the same workers with ``pool.add(fn, arg, on_result, on_error, priority)`` (``verify`` draws
    the study's figures that way while the other sweeps go on).

    Parameters
    ----------
    experiments : list of str or module
        See :func:`load_experiment`; the same module given twice runs once. Two different
        modules with one ``NAME`` are refused (they would write the same results).
    profile, seed, force, jobs, executor, scheduler, results_dir, quiet
        As in :func:`run_sweep` (every experiment runs its own ``profile`` grid, no overrides).
    on_done : callable, optional
        ``on_done(summary, pool)``, see above.
    hint_dirs : list of paths
        Further folders whose merged tables ``<NAME>.csv`` give run times for the longest-first
        order (``results_dir`` is always searched first).
    finish_first : dict, optional
        ``{NAME: weight}``: among the short runs, experiments of larger weight are dispatched
        first (default: all equal, in the order of ``experiments``).

    Returns
    -------
    dict
        ``{NAME: SweepSummary}`` in the order of ``experiments``. ``wall_time_s`` of a summary is
        the time from the dispatch of its first run to the arrival of its last one (sweeps
        overlap, so these do not add up to the call's wall time).

    Raises
    ------
    ValueError
        As :func:`run_sweep`, and for ``experiments`` that is not a nonempty list.
    """
    jobs, executor, scheduler, results_dir = _sweep_options(jobs, executor, scheduler, force,
                                                             quiet, results_dir, seed)
    if isinstance(experiments, (str, types.ModuleType)) or not isinstance(experiments,
                                                                            (list, tuple)) \
            or not experiments:
        raise ValueError(f"experiments must be a nonempty list of experiment names or modules; "
                         f"got {experiments!r}")
    if on_done is not None and not callable(on_done):
        raise ValueError(f"on_done must be callable or None; got {on_done!r}")
    mods, names = [], {}
    for exp in experiments:
        mod = load_experiment(exp)
        seen = names.get(mod.NAME)
        if seen is mod:
            continue
        if seen is not None:
            raise ValueError(f"experiments must have distinct NAMEs (each names its results "
                             f"folder); modules {seen.__name__!r} and {mod.__name__!r} are both "
                             f"{mod.NAME!r}")
        names[mod.NAME] = mod
        mods.append(mod)
    sweeps = [_Sweep(mod, profile, None, None, seed, force, jobs, executor, scheduler,
                     results_dir, time.perf_counter()) for mod in mods]
    from tqdm import tqdm

    bar = tqdm(total=sum(len(s.tasks) for s in sweeps), desc="sweeps", unit="run",
               disable=quiet or not _stderr_is_tty(), leave=False)
    pool = _Pool(executor, jobs, scheduler)
    summaries = {}

    def finished(sweep):
        summary = summaries[sweep.name] = sweep.finish(time.perf_counter(), from_first=True)
        if on_done is not None:
            on_done(summary, pool)

    hints = [results_dir, *[Path(d) for d in hint_dirs]]
    running = [sweep for sweep in sweeps if sweep.tasks]
    prio = (_dispatch_priorities(running, {sw.name: _estimated_costs(sw, hints) for sw in running},
                                 finish_first or {}, jobs) if pool.parallel else {})
    try:
        if pool.parallel:
            _queue_warm_ups(pool, running, jobs)
        for sweep in sweeps:
            sweep.recorder.bar = bar
            if sweep.tasks:
                sweep.submit(pool, prio.get(sweep.name), on_done=finished)
            else:  # every run finished (or skipped) before: merged at once
                finished(sweep)
        pool.run()
    finally:
        bar.close()
    return {sweep.name: summaries[sweep.name] for sweep in sweeps}


def _sweep_options(jobs, executor, scheduler, force, quiet, results_dir, seed):
    """Validated ``(jobs, executor, scheduler, results_dir)`` of :func:`run_sweep` and
    :func:`run_sweeps` (ValueError naming the argument, the rule and the value)."""
    if jobs is None or isinstance(jobs, bool) or not isinstance(jobs, numbers.Integral) or jobs < 1:
        raise ValueError(f"jobs must be an integer >= 1; got {jobs!r}")
    jobs = int(jobs)
    if executor is None:
        executor = "serial" if jobs == 1 and scheduler is None else (
            "dask" if scheduler is not None else "processes")
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(map(repr, EXECUTORS))}; "
                         f"got {executor!r}")
    if executor == "serial" and jobs != 1:
        raise ValueError(f"jobs must be 1 with executor='serial' (use executor='processes' or "
                         f"'dask' for parallel runs); got jobs={jobs}")
    scheduler = _check_scheduler(scheduler, executor)
    _check_bool("force", force)
    _check_bool("quiet", quiet)
    results_dir = _check_dir(results_dir)
    _check_base_seed(seed)
    if executor == "dask" and importlib.util.find_spec("distributed") is None:
        raise ValueError("executor='dask' needs the optional package 'distributed': "
                         "pip install 'sketchsim[distributed]'")
    return jobs, executor, scheduler, results_dir


class _Sweep:
    """One experiment's sweep, from its plan (the constructor: runs, skips, finished shards,
    resolved failures, the tasks still to run) through its results (:attr:`recorder`) to its merged
    table and manifest (:meth:`finish`)."""

    def __init__(self, experiment, profile, grid_overrides, reps, seed, force, jobs, executor,
                 scheduler, results_dir, t_start):
        mod = load_experiment(experiment)
        runs = plan_runs(mod, profile, grid_overrides, reps, seed)

        name = mod.NAME
        exp_dir = results_dir / name
        shards_dir = exp_dir / "shards"
        shards_dir.mkdir(parents=True, exist_ok=True)
        for folder in (results_dir, exp_dir, exp_dir / "sweeps", shards_dir):
            remove_stale_temps(folder)  # left by killed writers; a live sweep's files are kept
        failures = _FailureLog(exp_dir / "failures.csv")
        failures.update(resolved=[rid for rid in failures.rows  # finished since it was recorded
                                  if _shard_finished(shards_dir / f"{rid}{_SHARD_EXT}", name)])

        skip_reasons, todo, kept, cached = {}, [], [], 0
        skip_fn = getattr(mod, "skip", None)
        for run in runs:
            if skip_fn is not None:
                res = skip_fn(dict(run.params))
                flag, reason = (tuple(res) + ("",))[:2] if isinstance(res, (tuple, list)) \
                    else (res, "")
                if flag:
                    reason = str(reason) if reason else "skip() returned True"
                    skip_reasons[reason] = skip_reasons.get(reason, 0) + 1
                    continue
            kept.append(run)
            if not force and _shard_finished(shards_dir / f"{run.run_id}{_SHARD_EXT}", name):
                cached += 1
                continue
            todo.append(run)

        modname, modfile = _module_ref(mod)
        commit, dirty = _git_info(modfile or Path(__file__).resolve().parent)
        parent_prov = {"executor": executor, "jobs": jobs if scheduler is None else "",
                       "git_commit": commit, "git_dirty": dirty}
        self.tasks = [{"module": modname, "file": modfile, "run_id": run.run_id,
                       "params": run.params, "rep": run.rep, "seed": run.seed,
                       "pin": executor != "serial"} for run in todo]
        self.mod, self.name, self.profile, self.runs, self.kept = mod, name, profile, runs, kept
        self.todo, self.cached, self.skip_reasons = todo, cached, skip_reasons
        self.exp_dir, self.shards_dir, self.results_dir = exp_dir, shards_dir, results_dir
        self.executor, self.jobs, self.scheduler = executor, jobs, scheduler
        self.args = {"grid_overrides": grid_overrides, "reps": reps, "seed": int(seed),
                     "force": force}
        self.modname, self.commit = modname, commit
        self.recorder = _Recorder(name, shards_dir, failures, parent_prov, todo, force, None)
        self.t_start = t_start
        self.t_first = None  # dispatch of the first run (run_sweeps)
        self.remaining = len(self.tasks)
        self._on_done = None

    def submit(self, pool, costs=None, on_done=None):
        """Queue every task on ``pool`` (priority ``costs[run_id]``, e.g. estimated seconds;
        default 0: grid order); ``on_done(self)`` is called when the last result has been
        recorded."""
        self._on_done = on_done
        for task in self.tasks:
            rid = task["run_id"]
            pool.add(_execute, task, self._result,
                     lambda exc, tb=None, rid=rid: self._result(_failure_result(rid, exc, tb=tb)),
                     priority=0.0 if costs is None else costs[rid], on_start=self._started,
                     label=f"run-{rid}")

    def _started(self):
        if self.t_first is None:
            self.t_first = time.perf_counter()

    def _result(self, res):
        self.recorder(res)
        self.remaining -= 1
        if self.remaining == 0 and self._on_done is not None:
            self._on_done(self)

    def finish(self, t_end, from_first=False):
        """Merge this sweep's rows into ``<NAME>.csv``, write its manifests; the summary.

        Its ``wall_time_s`` ends at ``t_end`` and starts at ``t_start`` (the call of
        :func:`run_sweep`, or the plan), or with ``from_first`` at the dispatch of its first run.
        """
        name, exp_dir = self.name, self.exp_dir
        df = merge(self.mod, self.results_dir, run_ids=[r.run_id for r in self.kept])
        t0 = self.t_first if from_first and self.t_first is not None else self.t_start
        summary = SweepSummary(
            experiment=name, profile=self.profile, n_runs=len(self.runs),
            done=self.recorder.done, cached=self.cached, skipped=sum(self.skip_reasons.values()),
            failed=len(self.recorder.failures),
            merged_path=self.results_dir / f"{name}.csv" if len(df) else None,
            shards_dir=self.shards_dir, failures_path=exp_dir / "failures.csv",
            executor=self.executor, jobs=self.jobs, wall_time_s=max(0.0, t_end - t0),
            skip_reasons=self.skip_reasons, failures=self.recorder.failures)
        manifest = {"experiment": name, "module": self.modname, "profile": self.profile,
                    "grid_overrides": self.args["grid_overrides"], "reps": self.args["reps"],
                    "seed": self.args["seed"], "force": self.args["force"],
                    "scheduler": self.scheduler,
                    **{k: v for k, v in summary.to_dict().items()
                       if k not in ("failures", "experiment", "profile", "manifest_path")},
                    "utc_time": _utc_now(), "git_commit": self.commit, "pid": os.getpid()}
        manifest = json.loads(json.dumps(manifest, default=str))
        # one file per sweep, never overwritten (concurrent sweeps keep both), then the latest
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        summary.manifest_path = (exp_dir / "sweeps"
                                 / f"{stamp}-{os.getpid()}-{os.urandom(4).hex()}.json")
        _write_json_atomic(summary.manifest_path, manifest)
        _write_json_atomic(exp_dir / "last_sweep.json", manifest)
        return summary


LONG_RUN_FRACTION = 1 / 40
"""A run is *long* (dispatched first, longest first) when its estimated time is at least this
fraction of a worker's share of all the runs' estimated time (:func:`_dispatch_priorities`)."""


def _dispatch_priorities(sweeps, costs, weights, jobs):
    """{NAME: {run_id: priority}} of the runs of ``sweeps`` (higher is dispatched first).

    ``costs`` = {NAME: {run_id: estimated seconds}}. Long runs (estimate >= LONG_RUN_FRACTION of
    the total estimate / ``jobs``) come first, longest first; the short ones follow grouped by
    experiment, in decreasing ``weights[NAME]`` (ties: the order of ``sweeps``), longest first
    within an experiment. So the last runs of the call are short (little imbalance between the
    workers at the end) and an experiment of large weight finishes early.
    """
    values = [c for d in costs.values() for c in d.values()]
    if not values:
        return {}
    tau = LONG_RUN_FRACTION * sum(values) / max(1, int(jobs))
    big = 2.0 * max(values) + 1.0
    order = sorted(range(len(sweeps)), key=lambda i: (-float(weights.get(sweeps[i].name, 0.0)), i))
    rank = {sweeps[i].name: len(order) - k for k, i in enumerate(order)}
    return {name: {rid: (len(order) + 1 if c >= tau else rank[name]) * big + c
                   for rid, c in d.items()} for name, d in costs.items()}


def _queue_warm_ups(pool, sweeps, jobs):
    """Queue ``jobs`` warm-up items, ahead of every run, each warming the distinct ``warm_up``
    functions of ``sweeps`` in a rotated order (:func:`_warm_worker`). Nothing when there are fewer
    than two distinct ``warm_up`` functions or one worker: each run's process then warms its
    module as before (:func:`_execute`)."""
    groups = {}
    for sweep in sweeps:
        fn = getattr(sweep.mod, "warm_up", None)
        if callable(fn):
            groups.setdefault(id(fn), []).append(_module_ref(sweep.mod))
    units = list(groups.values())
    if len(units) < 2 or jobs < 2:
        return
    for k in range(jobs):
        start = (k * len(units)) // jobs
        pool.add(_warm_worker, {"units": units[start:] + units[:start]}, lambda res: None,
                 lambda exc, tb=None: None, priority=math.inf, label=f"warm-up-{k}")


def _warm_worker(task):
    """Pool item: call each unit's ``warm_up`` (a unit = the modules sharing one ``warm_up``
    function) in the given order and mark those modules warmed in this process, so that their
    runs here do not call it again. A ``warm_up`` that raises is left to the runs (they record
    the error as their failure)."""
    _pin_threads()
    for unit in task["units"]:
        try:
            mods = [_resolve_module(name, file) for name, file in unit]
        except Exception:
            continue
        keys = [(m.__name__, getattr(m, "__file__", None)) for m in mods]
        if all(k in _WARMED for k in keys):
            continue
        try:
            mods[0].warm_up()
        except Exception:
            continue
        _WARMED.update(k for k, m in zip(keys, mods) if m.warm_up is mods[0].warm_up)


def _estimated_costs(sweep, dirs):
    """{run_id: estimated seconds} of a sweep's tasks, for the longest-first order.

    A run's estimate is its ``time_s`` in the first merged table ``<dir>/<NAME>.csv`` of ``dirs``
    that holds its run id (an earlier sweep of the same run: resumed, forced, or the committed
    full-profile table, which shares the run ids of the grid points a quick profile repeats);
    otherwise the median of the experiment's known times; 1 s when none is known. Only the order
    of dispatch depends on it, never a result.
    """
    import csv

    known = {}
    for d in reversed([Path(x) for x in dirs]):  # earlier folders win
        path = d / f"{sweep.name}.csv"
        try:
            with open(path, newline="", encoding="utf-8") as fh:
                for row in csv.DictReader(fh):
                    try:
                        t = float(row.get("time_s") or "nan")
                    except ValueError:
                        continue
                    if row.get("run_id") and math.isfinite(t) and t >= 0:
                        known[row["run_id"]] = t
        except (OSError, ValueError, csv.Error):
            continue
    fallback = float(np.median(list(known.values()))) if known else 1.0
    return {t["run_id"]: known.get(t["run_id"], fallback) for t in sweep.tasks}


class _Recorder:
    """Persists each result the moment it arrives (in the parent process): a shard for a finished
    run, a ``failures.csv`` row for a failed one (a locked read-modify-write, see
    :class:`_FailureLog`)."""

    def __init__(self, name, shards_dir, failures, parent_prov, runs, force, bar):
        self.name, self.shards_dir, self.log = name, shards_dir, failures
        self.parent_prov, self.force, self.bar = parent_prov, force, bar
        self.by_id = {run.run_id: run for run in runs}
        self.done = 0
        self.failures = []

    def _ident(self, run):
        row = {"experiment": self.name, "run_id": run.run_id}
        row.update({f"p_{k}": v for k, v in run.params.items()})
        row.update(rep=run.rep, seed=run.seed)
        return row

    def __call__(self, res):
        run = self.by_id[res["run_id"]]
        shard = self.shards_dir / f"{run.run_id}{_SHARD_EXT}"
        if res["status"] == "ok":
            row = self._ident(run)
            row.update({f"m_{k}": v for k, v in res["metrics"].items()})
            row.update({f"t_{k}": v for k, v in res["theory"].items()})
            row["warnings"] = res["warnings"]
            row["time_s"] = res["time_s"]
            prov = {**res["info"], **self.parent_prov, "utc_time": res["utc_time"]}
            row.update({c: prov.get(c, "") for c in _PROVENANCE_COLS})
            _write_json_atomic(shard, row)
            self.log.resolve(run.run_id)
            self.done += 1
        else:
            if self.force:  # the old row no longer describes what the code does
                try:
                    os.remove(shard)
                except FileNotFoundError:
                    pass
            row = self._ident(run)
            row.update(error_type=res["error_type"], error_message=res["error_message"],
                       traceback=res["traceback"], utc_time=res["utc_time"], **self.parent_prov)
            self.log.record(run.run_id, row)
            self.failures.append({"run_id": run.run_id, "params": dict(run.params),
                                  "rep": run.rep, "seed": run.seed,
                                  "error_type": res["error_type"],
                                  "error_message": res["error_message"]})
            if self.bar is not None:
                self.bar.set_postfix(failed=len(self.failures))
        if self.bar is not None:
            self.bar.update(1)


def _stderr_is_tty():
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


# =================================================================================== executors
_MAX_BARREN_RESTARTS = 3


class _Item:
    """One unit of work of a :class:`_Pool`: ``fn(arg)`` in a worker, then ``on_result(result)``
    or ``on_error(exception, tb=None)`` in this process."""

    __slots__ = ("fn", "arg", "on_result", "on_error", "on_start", "label")

    def __init__(self, fn, arg, on_result, on_error, on_start=None, label="task"):
        self.fn, self.arg, self.on_result, self.on_error = fn, arg, on_result, on_error
        self.on_start, self.label = on_start, label

    def started(self):
        if self.on_start is not None:
            self.on_start()


class _Pool:
    """Work items on one executor for the whole of a call (one sweep, or every sweep of
    :func:`run_sweeps`): ``serial`` (this process, BLAS pinned to one thread), ``processes`` (one
    pool of spawned single-threaded workers, see :meth:`_run_processes`) or ``dask`` (one
    LocalCluster or one connection to ``scheduler``, see :meth:`_run_dask`).

    Items run highest ``priority`` first, first-added first among equals, with at most two per
    worker in flight; their callbacks run in this process as results arrive and may add further
    items, which :meth:`run` also runs before it returns. ``fn`` must be importable by the workers
    (a module-level function), ``arg`` picklable.
    """

    def __init__(self, executor, jobs, scheduler=None):
        self.executor, self.jobs, self.scheduler = executor, int(jobs), scheduler
        self._heap = []
        self._seq = itertools.count()

    @property
    def parallel(self):
        """True when items run in other processes (not ``serial``)."""
        return self.executor != "serial"

    def add(self, fn, arg, on_result, on_error, priority=0.0, on_start=None, label="task"):
        """Queue ``fn(arg)``; ``on_start()`` is called when it is dispatched."""
        self._push((-float(priority), next(self._seq), _Item(fn, arg, on_result, on_error,
                                                            on_start, label)))

    def _push(self, entry):
        heapq.heappush(self._heap, entry)

    def _pop(self):
        return heapq.heappop(self._heap)

    def run(self):
        """Run every queued item (and those their callbacks add); return when none is left."""
        if not self._heap:
            return
        if self.executor == "serial":
            self._run_serial()
        elif self.executor == "processes":
            self._run_processes()
        else:
            self._run_dask()

    def _run_serial(self):
        # BLAS pinned to one thread as in the workers, so that serial and parallel sweeps give
        # bit-identical results (a product's rounding may depend on BLAS threads)
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1):
            while self._heap:
                item = self._pop()[2]
                item.started()
                try:
                    res = item.fn(item.arg)
                except Exception as exc:
                    item.on_error(exc)
                    continue
                item.on_result(res)

    def _run_processes(self):
        """Spawned worker processes (one pool for every item), at most 2·jobs items in flight.

        A crashed worker (segfault, out-of-memory kill) breaks the pool: the items then in flight
        fail (``BrokenProcessPool``) and a new pool takes the rest. When pools keep breaking
        without finishing a single item (workers dying at start-up, e.g. a script that calls
        :func:`run_sweep` without an ``if __name__ == "__main__":`` guard), raise RuntimeError.

        The workers end when this process ends, even by SIGKILL (:func:`_exit_with_parent`, run
        by their initializer), so a killed sweep leaves no worker computing for nobody.
        """
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
        from concurrent.futures.process import BrokenProcessPool

        ctx = multiprocessing.get_context("spawn")
        window = 2 * self.jobs
        barren = 0  # consecutive broken pools that finished no item
        while self._heap:
            ex = ProcessPoolExecutor(max_workers=self.jobs, mp_context=ctx,
                                     initializer=_init_worker, initargs=(os.getpid(),))
            pending, broken, finished = {}, False, 0
            try:
                while (self._heap or pending) and not broken:
                    while self._heap and len(pending) < window:
                        entry = self._pop()
                        item = entry[2]
                        try:
                            fut = ex.submit(item.fn, item.arg)
                        except BrokenProcessPool:
                            self._push(entry)
                            broken = True
                            break
                        item.started()
                        pending[fut] = item
                    if not pending:
                        break
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in done:
                        item = pending.pop(fut)
                        try:
                            res = fut.result()
                            finished += 1
                        except BrokenProcessPool as exc:
                            broken = True
                            item.on_error(exc, tb=(
                                f"a worker process died abruptly (crash or out of memory) while "
                                f"this {'run' if item.fn is _execute else 'task'} was in flight"))
                            continue
                        except Exception as exc:  # e.g. a result that cannot be pickled
                            item.on_error(exc)
                            continue
                        item.on_result(res)
                for fut, item in pending.items():  # only left when the pool broke
                    try:
                        res = fut.result()
                    except Exception as exc:
                        item.on_error(exc)
                        continue
                    item.on_result(res)
            except BaseException:
                ex.shutdown(wait=False, cancel_futures=True)
                raise
            ex.shutdown(wait=True)
            barren = barren + 1 if broken and not finished else 0
            if barren >= _MAX_BARREN_RESTARTS and self._heap:
                raise RuntimeError(
                    f"worker processes of the 'processes' executor died {barren} times in a row "
                    f"without finishing a run; {len(self._heap)} runs were not attempted. If "
                    "run_sweep is called from a script, put the call under `if __name__ == "
                    "\"__main__\":` (the spawn start method re-imports the main module)")

    def _run_dask(self):
        """Items on a Dask cluster (a LocalCluster started here, or ``scheduler``), at most two
        per worker thread in flight; results come back to this process, which writes the
        shards."""
        import logging

        from distributed import Client, LocalCluster, as_completed

        cluster = None
        try:
            if self.scheduler is None:
                cluster = LocalCluster(n_workers=self.jobs, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=logging.ERROR,
                                       env=dict(_PIN_ENV))
                client = Client(cluster, set_as_default=False)
            else:
                try:
                    client = Client(self.scheduler, set_as_default=False, timeout="20s")
                except (OSError, TimeoutError) as exc:
                    raise OSError(f"cannot connect to the Dask scheduler at {self.scheduler}: "
                                  f"{exc}") from exc
            with client:
                nthreads = sum(client.nthreads().values()) or self.jobs
                window = max(2, 2 * nthreads)
                by_key = {}

                def submit():
                    item = self._pop()[2]
                    fut = client.submit(item.fn, item.arg, pure=False,
                                        key=f"sketchsim-{item.label}-{os.urandom(4).hex()}")
                    item.started()
                    by_key[fut.key] = item
                    return fut

                initial = [submit() for _ in range(min(window, len(self._heap)))]
                ac = as_completed(initial, loop=client.loop)
                try:
                    for fut in ac:
                        item = by_key.pop(fut.key)
                        try:
                            res = fut.result()
                        except Exception as exc:  # a killed worker, a lost connection, ...
                            fut.release()
                            item.on_error(exc)
                        else:
                            fut.release()
                            item.on_result(res)
                        while self._heap and len(by_key) < window:
                            ac.add(submit())
                finally:  # interrupted: do not leave our work busy on a shared cluster
                    leftover = list(ac.futures)
                    if leftover:
                        client.cancel(leftover)
        finally:
            if cluster is not None:
                cluster.close()
