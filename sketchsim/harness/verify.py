"""The verification suite: discover the studies, run them, decide every claim, write the report,
``verdicts.json`` and the CI check.

``sketchsim verify`` = :func:`verify`; ``sketchsim figures`` = :func:`make_figures`; ``sketchsim
report`` = :func:`write_report`; ``sketchsim check`` = :func:`check`.

A **study** is an experiment module (``experiments/README.md``) that also defines
``claims(df) -> list[Claim]``; this module knows no study by name: it imports every module of the
``experiments`` package and keeps those with ``claims``, in the order of their ``ORDER``.
Verdicts are computed here from the claims by the rules of :mod:`sketchsim.harness.claims`.

Output locations depend on the profile so that a quick run never overwrites the committed
full-profile results: ``full`` writes ``results/`` and ``paper_figs/``; any other profile P writes
``results/P/`` and ``paper_figs/P/``; ``results_dir`` (``--results-dir DIR``) overrides both, with
figures in ``DIR/figures/``.

CI check (``sketchsim check``)
    Every test of every claim is a checked number. ``results/baselines.json`` holds, per number,
    the value of the canonical quick run (base seed 0), its spread over several base seeds, a
    regression tolerance ``max(TOL_SIGMAS·σ, TOL_REL_FLOOR·|value|)`` capped below the value
    itself (``TOL_CAP·|value|``; for numbers predicted to be 0, capped at the theory band), the
    theory band of the test, and the verdict of every claim. ``check`` re-runs the quick profile
    (or reads a finished run with ``from_dir``) and fails when a claim's verdict changed, a
    number left its regression tolerance, or a number left a theory band it was inside.
"""
from __future__ import annotations

import datetime as _dt
from collections import Counter
import json
import math
import os
import platform
import shutil
import tempfile
import time

import numpy as np

from .._io import atomic_write_text
from . import claims as C
from .._io import atomic_path
from .sweep import (_experiment_modules, _experiment_roots, _module_ref, _pin_threads,
                    _resolve_module, load_experiment, provenance, read_results, run_sweeps)

TOL_SIGMAS = 4.0
TOL_REL_FLOOR = 0.02
TOL_CAP = 0.5
BASELINES_FILE = "baselines.json"
VERDICTS_FILE = "verdicts.json"


def output_dirs(profile, results_root="results", figures_root="paper_figs"):
    """(results dir, figures dir) of a profile (``full`` → the roots themselves)."""
    if profile == "full":
        return results_root, figures_root
    return os.path.join(results_root, profile), os.path.join(figures_root, profile)


# ------------------------------------------------------------------------------------ discovery
def discover_studies():
    """Every study of the ``experiments`` package (experiments defining ``claims``), in ``ORDER``.

    A module of the package that cannot be imported is an error here (a verification run must not
    silently drop a study).
    """
    names, broken = _experiment_modules()
    if broken:
        raise ValueError("studies in the experiments package cannot be imported: "
                         + "; ".join(f"{n} ({why})" for n, why in sorted(broken.items())))
    mods = [load_experiment(n) for n in names]
    mods = [m for m in mods if callable(getattr(m, "claims", None))]
    mods.sort(key=lambda mod: (getattr(mod, "ORDER", 1000), mod.NAME))
    return mods


def parse_experiments(text):
    """``"a,b"`` → ``["a", "b"]`` (``--experiments``); None or empty → None (every study)."""
    if text is None:
        return None
    names = [t.strip() for t in str(text).split(",") if t.strip()]
    if not names:
        raise ValueError(f"--experiments must list experiment names separated by commas; got {text!r}")
    return names


def _studies(names=None):
    if names is None:
        return discover_studies()
    mods = []
    for n in names:
        mod = load_experiment(n)
        if not callable(getattr(mod, "claims", None)):
            raise ValueError(f"experiment {n!r} is not a study: it defines no claims(df) "
                             "(see experiments/README.md)")
        mods.append(mod)
    return mods


def _load(mod, results_dir):
    path = os.path.join(results_dir, f"{mod.NAME}.csv")
    if not os.path.exists(path):
        raise ValueError(f"results of {mod.NAME!r} must exist before figures/report: {path} is missing "
                         f"(run `sketchsim run {mod.NAME}` or `sketchsim verify`)")
    return read_results(mod.NAME, results_dir)


def resolve_dirs(profile, results_dir=None, figures_dir=None):
    """(results dir, figures dir) of a profile, with --results-dir / --figures-dir overrides."""
    rdir, fdir = output_dirs(profile)
    if results_dir is not None:
        rdir = results_dir
        fdir = figures_dir or os.path.join(results_dir, "figures")
    elif figures_dir is not None:
        fdir = figures_dir
    return rdir, fdir


def _check_clean(profile, allow_dirty, results_dir):
    """Full-profile results written into the committed tree must come from a clean commit."""
    prov = provenance()
    dirty = prov.get("git_dirty") is True
    if profile == "full" and results_dir is None and dirty and not allow_dirty:
        raise ValueError("verify --profile full writes the committed results and refuses a dirty tree "
                         "(git status shows uncommitted changes): commit first, or pass --allow-dirty "
                         "to mark the report as written from a dirty tree")
    return prov


# ------------------------------------------------------------------------------------ verify
def verify(profile="quick", jobs=1, executor=None, scheduler=None, seed=0, force=False, quiet=False,
           results_dir=None, figures_dir=None, experiments=None, allow_dirty=False, out=print):
    """Run every study of ``profile``, then the figures, ``verdicts.json`` and REPORT.md.

    All the studies' runs go to **one** pool of workers (:func:`~sketchsim.harness.sweep.run_sweeps`):
    the workers start, import the studies and load (or compile) their Numba kernels once per
    ``verify``, runs are dispatched longest first, and with a parallel executor a study's figures
    are drawn by a worker as soon as its last run is in, while the other studies' runs go on
    (:func:`_draw_figures`: the worker returns the PNG bytes and this process writes them, so a
    remote Dask cluster needs no access to the figures folder). With ``jobs=1`` (``serial``) the
    studies run one after the other in this process and the figures are drawn after the last one,
    as :func:`make_figures` does. Tables, verdicts and figures do not depend on the executor or
    the worker count.

    Returns the sweep summaries ``{NAME: SweepSummary}``.
    """
    _check_clean(profile, allow_dirty, results_dir)
    rdir, fdir = resolve_dirs(profile, results_dir, figures_dir)
    mods = _studies(experiments)
    by_name = {mod.NAME: mod for mod in mods}
    drawn = {}  # NAME -> ([figure paths], s) or the exception that stopped them (parallel executors)
    in_pool = []
    claims = _ClaimsThread(rdir)
    t0 = time.perf_counter()

    def on_done(summary, pool):
        out(str(summary))
        if pool.parallel:
            in_pool.append(summary.experiment)
            _queue_figures(pool, by_name[summary.experiment], rdir, fdir, drawn)
            claims.add(by_name[summary.experiment])

    hints = _hint_dirs(profile, rdir)
    try:
        summaries = {} if not mods else run_sweeps(
            mods, profile=profile, seed=seed, force=force, jobs=jobs, executor=executor,
            scheduler=scheduler, results_dir=rdir, quiet=quiet, on_done=on_done, hint_dirs=hints,
            finish_first=_figure_weights(mods, [rdir, *hints]))
    finally:
        computed = claims.result(mods)
    t_sweeps = time.perf_counter() - t0
    tpath = os.path.join(rdir, "verify_timing.json")
    previous = {}
    if os.path.exists(tpath):
        with open(tpath, encoding="utf-8") as fh:
            previous = json.load(fh)
    prev_per = previous.get("per_experiment_s", {})
    per = {k: (v.wall_time_s if v.done or k not in prev_per else prev_per[k])
           for k, v in summaries.items()}
    ran = any(v.done for v in summaries.values())
    # the sweeps overlap on one pool: their wall time is the whole sweep phase, not a sum
    wall = t_sweeps if ran or "wall_s" not in previous else previous["wall_s"]
    timing = {"wall_s": float(wall), "jobs": jobs, "executor": executor or "auto",
              "per_experiment_s": per, "figures_s": previous.get("figures_s", {}),
              "this_invocation_s": time.perf_counter() - t0}
    atomic_write_text(tpath, json.dumps(timing, indent=1))
    # the modules themselves, not their NAMEs: a study's NAME need not be its module name
    chosen = None if experiments is None else mods
    fig_s = {}
    if in_pool:
        for mod in mods:  # in the studies' order, as make_figures reports them
            made = drawn[mod.NAME]
            if isinstance(made, BaseException):
                raise made
            made, fig_s[mod.NAME] = made
            out(f"{mod.NAME}: {len(made)} figure(s) in {fdir}")
    else:
        make_figures(rdir, fdir, chosen, out=out, times=fig_s)
    # seconds of each study's figures (for the order of the next run), and the time up to here
    timing.update(figures_s=fig_s, this_invocation_s=time.perf_counter() - t0)
    atomic_write_text(tpath, json.dumps(timing, indent=1))
    write_report(rdir, fdir, profile, chosen, timing=timing, seed=seed, allow_dirty=allow_dirty,
                 out=out, computed=computed)
    return summaries


class _ClaimsThread:
    """The claims of each study, computed in a thread of this process as soon as its sweep is
    merged (parallel executors: this process is otherwise idle while the workers run), from its
    own read of the table — the same computation :func:`compute_claims` does afterwards, so the
    verdicts are the same."""

    def __init__(self, results_dir):
        self.results_dir, self.futures, self.ex = results_dir, {}, None

    def add(self, mod):
        if self.ex is None:
            from concurrent.futures import ThreadPoolExecutor

            self.ex = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sketchsim-claims")
        self.futures[mod.NAME] = self.ex.submit(self._one, mod)

    def _one(self, mod):
        df = _load(mod, self.results_dir)
        return mod, df, study_claims(mod, df)

    def result(self, mods):
        """[(module, df, claims)] of ``mods`` in their order, or None unless every one of them
        was computed here without error (then :func:`write_report` computes them itself, raising
        what there is to raise)."""
        if self.ex is None:
            return None
        try:
            out = []
            for mod in mods:
                fut = self.futures.get(mod.NAME)
                if fut is None or fut.exception() is not None:
                    return None
                out.append(fut.result())
            return out
        finally:
            self.ex.shutdown(wait=True, cancel_futures=True)


def _hint_dirs(profile, rdir):
    """Folders whose merged tables give earlier run times for the longest-first order: the
    profile's default results folder and the committed full-profile one, of this repository."""
    root = os.path.join(str(_experiment_roots()[0]), "results")
    dirs = [output_dirs(profile, root, "")[0], root]
    seen, out = {os.path.abspath(rdir)}, []
    for d in dirs:
        if os.path.abspath(d) not in seen and os.path.isdir(d):
            seen.add(os.path.abspath(d))
            out.append(d)
    return out


def _figure_weights(mods, dirs):
    """{NAME: weight} for :func:`run_sweeps`'s ``finish_first``: the seconds each study's figures
    took in the last ``verify`` whose ``verify_timing.json`` (in the first of ``dirs`` that has
    them all) records every study of ``mods``; else the number of figures each declares
    (``FIGURES``). Studies with costly figures then finish early and their figures are drawn while
    the other studies run."""
    names = [m.NAME for m in mods]
    for d in dirs:
        try:
            with open(os.path.join(d, "verify_timing.json"), encoding="utf-8") as fh:
                known = json.load(fh).get("figures_s") or {}
            if all(isinstance(known.get(n), (int, float)) for n in names):
                return {n: float(known[n]) for n in names}
        except (OSError, ValueError, AttributeError):
            continue
    return {m.NAME: float(len(getattr(m, "FIGURES", ()) or ()))
            if callable(getattr(m, "figures", None)) else 0.0 for m in mods}


def _queue_figures(pool, mod, results_dir, figures_dir, drawn):
    """Queue the drawing of ``mod``'s figures on ``pool`` (ahead of every run still waiting);
    ``drawn[NAME]`` gets (the written paths, seconds spent drawing), or the exception (raised by
    :func:`verify`)."""
    name = mod.NAME
    if not callable(getattr(mod, "figures", None)):
        drawn[name] = ([], 0.0)
        return
    try:
        df = _load(mod, results_dir)
    except ValueError as exc:  # no results (every run failed): verify stops here, as before
        drawn[name] = exc
        return
    modname, modfile = _module_ref(mod)

    def done(res):
        drawn[name] = (_write_figures(res, figures_dir), float(res["time_s"]))

    def failed(exc, tb=None):
        drawn[name] = exc

    pool.add(_draw_figures, {"module": modname, "file": modfile, "df": df}, done, failed,
             priority=math.inf, label=f"figures-{name}")


def _draw_figures(task):
    """Pool task: ``figures(df, folder)`` of one study into a scratch folder of the worker.

    Returns ``{"made": [paths relative to the folder], "files": {relative path: bytes},
    "time_s": seconds in figures()}`` (every file written), which :func:`_write_figures` writes
    into the figures folder. Threads pinned as in every worker.
    """
    _pin_threads()
    mod = _resolve_module(task["module"], task["file"])
    with tempfile.TemporaryDirectory(prefix="sketchsim-figures-") as tmp:
        t0 = time.perf_counter()
        made = mod.figures(task["df"], tmp) or []
        elapsed = time.perf_counter() - t0
        files = {}
        for root, _, names in os.walk(tmp):
            for n in names:
                path = os.path.join(root, n)
                with open(path, "rb") as fh:
                    files[os.path.relpath(path, tmp)] = fh.read()
        rel = [os.path.relpath(os.path.abspath(p), tmp) for p in made]
    return {"made": rel, "files": files, "time_s": elapsed}


def _write_figures(res, figures_dir):
    """Write the files of a :func:`_draw_figures` result into ``figures_dir`` (atomically);
    returns the paths of the figures the study reported."""
    for rel, data in sorted(res["files"].items()):
        path = os.path.join(figures_dir, rel)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with atomic_path(path, suffix=os.path.splitext(rel)[1] or ".part") as tmp:
            with open(tmp, "wb") as fh:
                fh.write(data)
    return [os.path.join(figures_dir, rel) for rel in res["made"]]


def make_figures(results_dir="results", figures_dir="paper_figs", experiments=None, out=print,
                 times=None):
    """Rebuild every figure from the merged results tables only (``times``, a dict, gets the
    seconds each study's ``figures`` took)."""
    paths = []
    for mod in _studies(experiments):
        df = _load(mod, results_dir)
        t = time.perf_counter()
        made = mod.figures(df, figures_dir) if callable(getattr(mod, "figures", None)) else []
        if times is not None:
            times[mod.NAME] = time.perf_counter() - t
        paths.extend(made)
        out(f"{mod.NAME}: {len(made)} figure(s) in {figures_dir}")
    return paths


def study_claims(mod, df):
    """The claims of one study on its results table (validated), completed by its ``SCOPE``.

    ``SCOPE`` (optional) maps a claim name to ``{"families": [...], "depths": [...], "why": str}``:
    the evidence the paper's statement covers. Every (family, depth) of the scope for which the
    study returned no claim becomes an explicit *inconclusive* claim ("not measured: why"), so a
    headline never silently rests on a subset.
    """
    got = list(mod.claims(df))
    for c in got:
        if not isinstance(c, C.Claim):
            raise TypeError(f"claims() of {mod.NAME} must return Claim objects; got {type(c).__name__}")
    have = {(c.claim, c.family, c.depth) for c in got}
    for name, scope in getattr(mod, "SCOPE", {}).items():
        for fam in scope.get("families", (None,)):
            for h in scope.get("depths", (None,)):
                if (name, fam, h) not in have:
                    got.append(C.Claim(name, fam, h, [], inconclusive="not measured in this profile: "
                                       + scope.get("why", "no runs")))
    return got


def compute_claims(results_dir, experiments=None):
    """[(module, df, [Claim])] for every study with results in ``results_dir``."""
    res = []
    for mod in _studies(experiments):
        df = _load(mod, results_dir)
        res.append((mod, df, study_claims(mod, df)))
    return res


def verdicts_document(computed, profile, seed=None, allow_dirty=False):
    """The ``verdicts.json`` document of computed claims."""
    prov = provenance()
    claims, heads = [], []
    for mod, _, cl in computed:
        claims += [c.to_json(mod.NAME) for c in cl]
        for name, (v, text) in C.group_headlines(cl).items():
            heads.append({"experiment": mod.NAME, "claim": name, "verdict": v, "headline": text})
    return {"profile": profile, "seed": seed, "commit": prov.get("git_commit") or None,
            "dirty": bool(prov.get("git_dirty")), "allow_dirty": bool(allow_dirty),
            "generated": f"{_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M UTC}",
            "rules": C.__doc__.split("Rules (pre-registered)")[1].strip(),
            "claims": claims, "headlines": heads}


def table_provenance(df):
    """[(commit, dirty, rows)] of a results table: the code each group of its rows was run from
    (the ``git_commit`` and ``git_dirty`` columns every run records), most rows first. A run outside
    a git checkout has no commit: ``"(no git commit)"``; an unrecorded dirty flag counts as dirty
    (nothing shows the tree was clean)."""
    if not len(df) or "git_commit" not in df:
        return []

    def commit(v):
        return v if isinstance(v, str) and v.strip() else "(no git commit)"

    def dirty(v):
        return not ((isinstance(v, (bool, np.bool_)) and not v)
                    or (isinstance(v, str) and v.strip().lower() == "false"))

    flags = df["git_dirty"].tolist() if "git_dirty" in df else [None] * len(df)
    counts = Counter((commit(c), dirty(dy)) for c, dy in zip(df["git_commit"].tolist(), flags))
    return sorted(((c, dy, n) for (c, dy), n in counts.items()), key=lambda t: (-t[2], t[0]))


def _last_sweeps(results_dir, computed):
    """{study: its ``<NAME>/last_sweep.json``} for the studies of ``computed`` that have one."""
    out = {}
    for mod, _, _ in computed:
        path = os.path.join(results_dir, mod.NAME, "last_sweep.json")
        if os.path.exists(path):
            try:
                with open(path, encoding="utf-8") as fh:
                    out[mod.NAME] = json.load(fh)
            except (OSError, ValueError):
                pass
    return out


def last_verify_time(results_dir="results"):
    """How long the last ``verify`` into ``results_dir`` took, from the files it leaves there.

    Returns None without a ``verify_timing.json``; else a dict: ``wall_s`` and ``jobs`` of that
    invocation, ``n_runs`` and ``cached_runs`` over the studies of its ``per_experiment_s`` (from
    their ``<NAME>/last_sweep.json``: runs found already done, i.e. computed by earlier, interrupted
    invocations) and ``run_time_s``, Σ ``time_s`` of those studies' tables (seconds of one worker).
    ``wall_s`` times the whole profile only when ``cached_runs`` is 0; otherwise
    ``run_time_s / jobs`` is a lower bound of an uninterrupted run's wall time.
    """
    tpath = os.path.join(results_dir, "verify_timing.json")
    if not os.path.exists(tpath):
        return None
    with open(tpath, encoding="utf-8") as fh:
        timing = json.load(fh)
    names = list(timing.get("per_experiment_s", {}))
    n_runs = cached = 0
    run_time = 0.0
    for name in names:
        spath = os.path.join(results_dir, name, "last_sweep.json")
        if os.path.exists(spath):
            with open(spath, encoding="utf-8") as fh:
                sweep = json.load(fh)
            n_runs += int(sweep.get("n_runs", 0))
            cached += int(sweep.get("cached", 0))
        cpath = os.path.join(results_dir, f"{name}.csv")
        if os.path.exists(cpath):
            import pandas as pd

            col = pd.read_csv(cpath, usecols=lambda c: c == "time_s")
            if "time_s" in col:
                run_time += float(np.nansum(pd.to_numeric(col["time_s"], errors="coerce")))
    return {"wall_s": float(timing["wall_s"]), "jobs": int(timing["jobs"]), "n_runs": n_runs,
            "cached_runs": cached, "run_time_s": run_time}


def _timing_lines(timing, sweeps, computed):
    """REPORT.md's account of the time the last ``verify`` took.

    A study whose last sweep found runs already done (``cached`` in its ``last_sweep.json``:
    shards of an earlier, interrupted invocation) was not timed by that ``verify`` in full; its
    wall time is not shown, and the line says how many runs the earlier invocations computed. The
    tables' own Σ ``time_s`` (seconds of one worker per run, :func:`_provenance_lines`) is the
    account that survives resumption.
    """
    if not timing:
        return []
    names = [mod.NAME for mod, _, _ in computed]
    resumed = {k: v for k, v in sweeps.items() if k in names and v.get("cached")}
    per = ", ".join(f"{k} {v:.0f} s" for k, v in timing.get("per_experiment_s", {}).items()
                    if k not in resumed)
    line = (f"Sweep wall time of the last `sketchsim verify`: {timing['wall_s']:.0f} s with "
            f"{timing['jobs']} job(s), executor {timing['executor']}" + (f" ({per})." if per else "."))
    if resumed:
        n_cached = sum(int(v.get("cached", 0)) for v in resumed.values())
        n_runs = sum(int(sweeps[k].get("n_runs", 0)) for k in names if k in sweeps)
        which = ", ".join(f"{k} {int(v['cached'])}" for k, v in resumed.items())
        line += (f" That `verify` resumed from shards of earlier, interrupted invocations of the same "
                 f"profile: {n_cached} of the {n_runs} runs were computed before it started ({which}), "
                 f"so its wall time covers only the rest; the run time of every table is in the "
                 f"provenance table below (Σ of the runs' `time_s`).")
    return [line]


def _provenance_lines(computed):
    """REPORT.md's account of where each table comes from (commit, clean or dirty tree), with each
    table's run time: Σ of its runs' ``time_s`` (seconds of one worker per run, whatever the
    number of workers, pauses or resumptions of the sweep)."""
    rows, clean_single, commits = [], 0, set()
    for mod, df, _ in computed:
        prov = table_provenance(df)
        commits.update(c for c, _, _ in prov)
        if len(prov) == 1 and not prov[0][1]:
            clean_single += 1
        text = "; ".join(f"{c[:10]}{' (dirty tree)' if dy else ''}: {n} runs" for c, dy, n in prov) \
            or "no provenance recorded"
        t = float(np.nansum(np.asarray(df["time_s"], dtype=float))) if "time_s" in df and len(df) else float("nan")
        rows.append(f"| {mod.NAME} | {len(df)} | {t / 60:.1f} | {text} |" if np.isfinite(t)
                    else f"| {mod.NAME} | {len(df)} | – | {text} |")
    if not rows:
        return []
    n = len(rows)
    summary = (f"{clean_single} of {n} tables come from a single clean commit; the tables span "
               f"{len(commits)} commit(s)" + ("." if len(commits) <= 1 else
                                             ": the numbers of one table reproduce from its own "
                                             "commit, not necessarily from the others'."))
    return ["", "## Provenance of the tables", "",
            "Each run records the commit it ran from and whether the tree was dirty (columns "
            "`git_commit`, `git_dirty`). " + summary + " Run time: Σ of the runs' `time_s`, in "
            "minutes of one worker.", "",
            "| study | runs | run time (min) | commit (runs) |", "|---|---|---|---|"] + rows


def write_report(results_dir="results", figures_dir="paper_figs", profile=None, experiments=None,
                 timing=None, seed=None, allow_dirty=False, out=print, computed=None):
    """Write ``verdicts.json`` and ``REPORT.md`` into ``results_dir`` from the results tables.

    ``computed``: the :func:`compute_claims` of those tables when already known (``verify``
    computes them while the other studies run).
    """
    if computed is None:
        computed = compute_claims(results_dir, experiments)
    doc = verdicts_document(computed, profile, seed, allow_dirty)
    atomic_write_text(os.path.join(results_dir, VERDICTS_FILE), json.dumps(doc, indent=1) + "\n")
    prov = provenance()
    rel_figs = os.path.relpath(figures_dir, results_dir).replace(os.sep, "/").rstrip("/")
    lines = ["# sketchsim verification report", ""]
    dirty = ""
    if doc["dirty"]:  # "--allow-dirty" only when it was given (a quick run needs no permission)
        dirty = " **written from a dirty tree" + (" (--allow-dirty)**" if allow_dirty else "**")
    lines.append(f"Profile **{profile or 'unknown'}**, base seed {seed if seed is not None else 'n/a'}; "
                 f"generated {doc['generated']} by `sketchsim verify`/`sketchsim report` from the tables "
                 f"in `{results_dir}/` (sketchsim {prov.get('sketchsim_version')}, commit "
                 f"{str(prov.get('git_commit'))[:10]}{dirty}, numpy {prov.get('numpy_version')}, numba "
                 f"{prov.get('numba_version')}, {platform.machine()}, {os.cpu_count()} cpus). "
                 f"Machine-readable verdicts: `{VERDICTS_FILE}`.")
    tpath = os.path.join(results_dir, "verify_timing.json")
    if timing is None and os.path.exists(tpath):
        with open(tpath, encoding="utf-8") as fh:
            timing = json.load(fh)
    lines += _timing_lines(timing, _last_sweeps(results_dir, computed), computed)
    lines += _provenance_lines(computed)
    lines += ["", "## Verdicts", "",
              "Every claim is decided per matrix family (the paper's haar, gaussian and block-sparse "
              "D(b, q, d); hadamard is the engineering substitute, reported but never deciding) and per "
              "depth, by rules fixed in `sketchsim/harness/claims.py` before any run: an exponent must "
              f"lie within ±{C.EXPONENT_TOL} of its prediction (or its 95% interval cover it) and is "
              f"*inconclusive* when that interval is wider than ±{C.EXPONENT_RESOLUTION}; a constant or "
              f"ratio within a factor {math.exp(C.FACTOR_TOL):.2f} (inconclusive when its interval "
              f"cannot tell a factor 2); a bias slope of estimate on truth within ±{C.SLOPE_TOL} of 1. "
              "A headline is consistent only when every paper family and depth is consistent or "
              "inconclusive with its reason; the families that disagree are named. A claim ending in "
              "`.noise` judges THEORY.md §2.4's noise constant ‖s‖/(c_h w √d) — derived for orthonormal "
              "matrices — not a statement of the paper, which gives rates only.", "",
              "| experiment | claim | verdict | headline |", "|---|---|---|---|"]
    sections = []
    for mod, df, cl in computed:
        heads = C.group_headlines(cl)
        link = f"[{mod.TITLE}](#{_anchor(mod.TITLE)})"
        for i, (name, (v, text)) in enumerate(heads.items()):
            lines.append(f"| {link if i == 0 else ''} | `{name}` | **{v}** | {text} |")
        if not heads:
            lines.append(f"| {link} | — | {C.INCONCLUSIVE} | no claim could be evaluated |")
        n_fail = _n_failures(mod, results_dir)
        stmt = "\n".join("> " + ln for ln in mod.STATEMENT.strip().splitlines())
        body = [f"{len(df)} runs, {n_fail} failed run(s).", ""]
        if getattr(mod, "METHOD", ""):
            body += [mod.METHOD.strip(), ""]
        body += ["| claim | family | depth | verdict | evidence |", "|---|---|---|---|---|"]
        for c in cl:
            body.append(f"| `{c.claim}` | {c.family or 'all'}{' (substitute)' if c.substitute else ''} | "
                        f"{'—' if c.depth is None else c.depth} | {c.verdict()[0]} | "
                        f"{c.evidence().replace('|', '/')} |")
        if callable(getattr(mod, "details", None)):
            extra = mod.details(df)
            if extra:
                body += ["", extra.strip()]
        figs = [f for f in getattr(mod, "FIGURES", ()) if os.path.exists(os.path.join(figures_dir, f))]
        if figs:
            body += [""] + [f"![{f}]({rel_figs}/{f})" for f in figs]
        sections += ["", f"## {mod.TITLE}", "", stmt, ""] + body + [""]
    text = "\n".join(lines + sections) + "\n"
    path = os.path.join(results_dir, "REPORT.md")
    atomic_write_text(path, text)
    out(f"wrote {path} and {os.path.join(results_dir, VERDICTS_FILE)}")
    return path


def _n_failures(mod, results_dir):
    from .sweep import read_failures

    return len(read_failures(mod.NAME, results_dir))


def _anchor(title):
    return "".join(c.lower() if c.isalnum() else ("-" if c in " -" else "") for c in title)


# ------------------------------------------------------------------------------------ CI check
def claim_id(c):
    return f"{c.claim}|{c.family or 'all'}|{'-' if c.depth is None else c.depth}"


def checked_key(c, t):
    return f"{c.claim}.{c.family or 'all'}.d{'-' if c.depth is None else c.depth}.{t.key}"


def current_numbers(results_dir, experiments=None):
    """{experiment: {"claims": {claim id: verdict}, "keys": {key: test JSON}}} of a finished run."""
    data = {}
    for mod, _, cl in compute_claims(results_dir, experiments):
        entry = {"claims": {}, "keys": {}}
        for c in cl:
            entry["claims"][claim_id(c)] = c.verdict()[0]
            for t in c.tests:
                entry["keys"][checked_key(c, t)] = {**t.to_json(), "claim": claim_id(c)}
        data[mod.NAME] = entry
    return data


def _tolerance(value, std, test):
    tol = max(TOL_SIGMAS * std, TOL_REL_FLOOR * abs(value))
    if test.get("predicted") not in (None, 0.0) and abs(value) > 0:
        return min(tol, TOL_CAP * abs(value))
    return min(max(tol, 1e-12), test.get("tol") or tol)


def _in_band(v, band):
    lo, hi = band
    return (v is not None and math.isfinite(v) and (lo is None or v >= lo - 1e-12)
            and (hi is None or v <= hi + 1e-12))


def compare(baselines, current):
    """Readable lines for every claim whose verdict changed and every number that moved (empty:
    passed)."""
    problems = []
    for exp, base in baselines.items():
        got = current.get(exp)
        if got is None:
            problems.append(f"{exp}: no current results")
            continue
        for cid, v in base.get("claims", {}).items():
            now = got["claims"].get(cid)
            if now != v:
                problems.append(f"{exp}: claim {cid} is now {now or 'missing'} (baseline: {v})")
        for key, ref in base.get("keys", {}).items():
            t = got["keys"].get(key)
            if t is None:
                problems.append(f"{exp}: {key} is missing from the current claims")
                continue
            v = t["estimate"]
            if v is None or ref["value"] is None:
                if (v is None) != (ref["value"] is None):
                    problems.append(f"{exp}: {key} = {v} (baseline {ref['value']})")
                continue
            if abs(v - ref["value"]) > ref["tol"]:
                problems.append(f"{exp}: {key} = {v:.6g}, baseline {ref['value']:.6g} ± {ref['tol']:.3g} "
                                f"(σ = {ref['std']:.3g} over {ref['n_seeds']} seeds)")
            band = tuple(ref["band"])
            if ref.get("in_band") and not _in_band(v, band):
                problems.append(f"{exp}: {key} = {v:.6g} left its theory band {_fmt_band(band)}")
    return problems


def _fmt_band(band):
    lo, hi = band
    return f"[{'-∞' if lo is None else f'{lo:.4g}'}, {'∞' if hi is None else f'{hi:.4g}'}]"


def _quick_run(seed, rdir, jobs, executor, quiet, experiments):
    mods = _studies(experiments)
    if mods:  # every study's runs on one pool (see verify)
        run_sweeps(mods, profile="quick", seed=seed, jobs=jobs, executor=executor, results_dir=rdir,
                   quiet=quiet, hint_dirs=_hint_dirs("quick", rdir))
    return current_numbers(rdir, experiments)


def update_baselines(n_seeds=4, jobs=1, executor=None, quiet=False, results_root="results",
                     experiments=None, out=print):
    """Measure the run-to-run spread over ``n_seeds`` base seeds and write results/baselines.json."""
    runs = []
    with tempfile.TemporaryDirectory(prefix="sketchsim-baselines-") as tmp:
        for seed in range(n_seeds):
            runs.append(_quick_run(seed, os.path.join(tmp, str(seed)), jobs, executor, quiet, experiments))
            out(f"baseline seed {seed}: done")
    data = {}
    for exp, entry in runs[0].items():
        keys = {}
        for key, t in entry["keys"].items():
            vals = np.array([np.nan if r[exp]["keys"].get(key, {}).get("estimate") is None
                             else r[exp]["keys"][key]["estimate"] for r in runs], dtype=float)
            finite = vals[np.isfinite(vals)]
            std = float(finite.std(ddof=1)) if len(finite) > 1 else 0.0
            value = t["estimate"]
            keys[key] = {"value": value, "std": std, "n_seeds": int(len(finite)),
                         "tol": None if value is None else _tolerance(value, std, t),
                         "band": t["band"], "in_band": _in_band(value, tuple(t["band"])),
                         "predicted": t["predicted"], "halfwidth_ok": t["verdict"] != C.INCONCLUSIVE,
                         "seed_values": [None if not np.isfinite(v) else float(v) for v in vals],
                         "label": t["label"], "claim": t["claim"]}
        data[exp] = {"claims": entry["claims"], "keys": keys}
    meta = {"_about": f"Quick-profile numbers of base seed 0: regression tolerance max({TOL_SIGMAS}·σ over "
                      f"{n_seeds} base seeds, {TOL_REL_FLOOR}·|value|) capped at {TOL_CAP}·|value|, the "
                      "theory band of each test and the verdict of every claim; written by `sketchsim check "
                      "--update-baselines`."}
    path = os.path.join(results_root, BASELINES_FILE)
    if experiments is not None and os.path.exists(path):
        data = {**load_baselines(results_root), **data}
    atomic_write_text(path, json.dumps({**meta, **data}, indent=1, sort_keys=True))
    out(f"wrote {path}")
    return path


def load_baselines(results_root="results"):
    path = os.path.join(results_root, BASELINES_FILE)
    if not os.path.exists(path):
        raise ValueError(f"baselines must exist for `sketchsim check`: {path} is missing "
                         "(create it with `sketchsim check --update-baselines`)")
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    return {k: v for k, v in data.items() if not k.startswith("_")}


def check(jobs=1, executor=None, quiet=False, results_root="results", experiments=None, keep=None,
          from_dir=None, out=print):
    """Re-run the quick profile (seed 0) in a scratch directory (or read ``from_dir``, a finished
    quick run of seed 0) and compare with the baselines. Returns the problems (empty: passed)."""
    baselines = load_baselines(results_root)
    chosen, unbaselined = list(baselines), []
    if experiments is not None:
        mods = _studies(experiments)
        # a study without baselines must not pass the check vacuously
        unbaselined = [m.NAME for m in mods if m.NAME not in baselines]
        chosen = [m for m in mods if m.NAME in baselines]
        baselines = {k: v for k, v in baselines.items() if k in {m.NAME for m in chosen}}
    if not chosen:
        current = {}
    elif from_dir is not None:
        current = current_numbers(from_dir, chosen)
    else:
        tmp = keep or tempfile.mkdtemp(prefix="sketchsim-check-")
        try:
            current = _quick_run(0, tmp, jobs, executor, quiet, chosen)
        finally:
            if keep is None:
                shutil.rmtree(tmp, ignore_errors=True)
    problems = [f"{name}: no baselines in {os.path.join(results_root, BASELINES_FILE)} (add them with "
                f"`sketchsim check --update-baselines --experiments {name}`)" for name in unbaselined]
    problems += compare(baselines, current)
    n = sum(len(v.get("keys", {})) for v in baselines.values())
    nc = sum(len(v.get("claims", {})) for v in baselines.values())
    if problems:
        out(f"check FAILED: {len(problems)} problem(s) among {nc} claims and {n} numbers:")
        for p in problems:
            out("  " + p)
    else:
        out(f"check passed: {nc} claim verdicts unchanged, {n} numbers within tolerance and theory bands "
            f"of {os.path.join(results_root, BASELINES_FILE)}")
    return problems


def explain(results_root="results", out=print):
    """Print, per checked number, its value, regression tolerance, theory band and power."""
    baselines = load_baselines(results_root)
    out("Each number is a test of a claim. 'power' says whether the quick profile's 95% interval is "
        f"narrow enough to tell an exponent off by ¼ (half-width ≤ {C.EXPONENT_RESOLUTION}) or a constant "
        f"off by a factor 2 (log half-width ≤ {C.FACTOR_RESOLUTION:.3f}); numbers without it make their "
        "claim inconclusive rather than consistent.")
    for exp, entry in baselines.items():
        out(f"\n{exp}")
        for cid, v in entry.get("claims", {}).items():
            out(f"  claim {cid}: {v}")
        for key, ref in entry.get("keys", {}).items():
            val = "n/a" if ref["value"] is None else f"{ref['value']:.4g}"
            tol = "n/a" if ref["tol"] is None else f"{ref['tol']:.3g}"
            out(f"    {key}: {val} ± {tol}, theory band {_fmt_band(tuple(ref['band']))}, "
                f"power {'yes' if ref.get('halfwidth_ok') else 'NO'}")
    for line in power_summary(baselines):
        out(line)


def power_summary(baselines):
    """Lines: how many checked numbers have the power their test is sized for, and the claims
    (claim|family|depth) none of whose numbers has it, which the check guards by their regression
    tolerances and their verdict alone."""
    keys = [(ref.get("claim"), bool(ref.get("halfwidth_ok"))) for entry in baselines.values()
            for ref in entry.get("keys", {}).values()]
    powered = {}
    for cid, ok in keys:
        powered[cid] = powered.get(cid, False) or ok
    weak = sorted(c for c, ok in powered.items() if not ok)
    n_ok = sum(ok for _, ok in keys)
    lines = ["", f"power: {n_ok} of {len(keys)} checked numbers have it; {len(powered) - len(weak)} of "
             f"{len(powered)} claims (claim|family|depth) have at least one such number."]
    if weak:
        lines.append(f"claims with no powered number (checked by their verdict and regression tolerances "
                     f"only; the quick profile cannot tell a factor-2 constant there): {', '.join(weak)}")
    return lines
