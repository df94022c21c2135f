"""The verification suite: run every theorem experiment, draw the figures, write REPORT.md, check CI.

``sketchsim verify`` = :func:`verify`; ``sketchsim figures`` = :func:`make_figures`; ``sketchsim
report`` = :func:`write_report`; ``sketchsim check`` = :func:`check`.

Output locations depend on the profile so that a quick run never overwrites the committed
full-profile results: ``full`` writes ``results/`` and ``paper_figs/``; any other profile P writes
``results/P/`` and ``paper_figs/P/``.

CI regression (``sketchsim check``): every experiment's ``analyze(df)["baselines"]`` gives named
numbers (fitted exponents, constants, rates). ``results/baselines.json`` holds, for each, the
value of the canonical quick run (base seed 0) and a tolerance derived from its run-to-run spread
over several base seeds (``sketchsim check --update-baselines``): tol = max(TOL_SIGMAS·std,
TOL_REL_FLOOR·|value|, TOL_ABS_FLOOR). ``check`` re-runs the quick profile (seed 0) into a
temporary directory and fails, naming the theorem and the figure, when a number moves beyond it.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import shutil
import tempfile
import time

import numpy as np

from ._io import atomic_write_text
from .sweep import load_experiment, provenance, read_results, run_sweep

VERIFY_EXPERIMENTS = ["thm1_attributes", "thm2_similarity", "thm3_summary", "erasure", "unrolling",
                      "thm4_dictlearn", "dictlearn_sketches", "thm5_teacher"]
"""The experiments of ``sketchsim verify`` (in report order)."""

TOL_SIGMAS = 4.0
TOL_REL_FLOOR = 0.02
TOL_ABS_FLOOR = 1e-3
BASELINES_FILE = "baselines.json"


def output_dirs(profile, results_root="results", figures_root="paper_figs"):
    """(results dir, figures dir) of a profile (``full`` → the roots themselves)."""
    if profile == "full":
        return results_root, figures_root
    return os.path.join(results_root, profile), os.path.join(figures_root, profile)


def _experiments(names=None):
    return [load_experiment(n) for n in (names or VERIFY_EXPERIMENTS)]


def verify(profile="quick", jobs=1, executor=None, scheduler=None, seed=0, force=False, quiet=False,
           results_dir=None, figures_dir=None, experiments=None, out=print):
    """Run every experiment of ``profile``, then the figures and the report. Returns the summaries."""
    rdir, fdir = output_dirs(profile)
    rdir, fdir = results_dir or rdir, figures_dir or fdir
    summaries = {}
    t0 = time.perf_counter()
    for mod in _experiments(experiments):
        s = run_sweep(mod, profile=profile, seed=seed, force=force, jobs=jobs, executor=executor,
                      scheduler=scheduler, results_dir=rdir, quiet=quiet)
        summaries[mod.NAME] = s
        out(str(s))
    tpath = os.path.join(rdir, "verify_timing.json")
    previous = {}
    if os.path.exists(tpath):
        with open(tpath, encoding="utf-8") as fh:
            previous = json.load(fh).get("per_experiment_s", {})
    # an experiment whose runs were all finished earlier keeps the time of the sweep that ran them
    per = {k: (v.wall_time_s if v.done or k not in previous else previous[k]) for k, v in summaries.items()}
    timing = {"wall_s": float(sum(per.values())), "jobs": jobs, "executor": executor or "auto",
              "per_experiment_s": per, "this_invocation_s": time.perf_counter() - t0}
    atomic_write_text(tpath, json.dumps(timing, indent=1))
    make_figures(rdir, fdir, experiments, out=out)
    write_report(rdir, fdir, profile, experiments, timing=timing, out=out)
    return summaries


def make_figures(results_dir="results", figures_dir="paper_figs", experiments=None, out=print):
    """Rebuild every figure from the merged results tables only."""
    paths = []
    for mod in _experiments(experiments):
        df = _load(mod, results_dir)
        made = mod.figures(df, figures_dir)
        paths.extend(made)
        out(f"{mod.NAME}: {len(made)} figure(s) in {figures_dir}")
    return paths


def _load(mod, results_dir):
    path = os.path.join(results_dir, f"{mod.NAME}.csv")
    if not os.path.exists(path):
        raise ValueError(f"results of {mod.NAME!r} must exist before figures/report: {path} is missing "
                         f"(run `sketchsim run {mod.NAME}` or `sketchsim verify`)")
    return read_results(mod.NAME, results_dir)


def write_report(results_dir="results", figures_dir="paper_figs", profile=None, experiments=None,
                 timing=None, out=print):
    """Write ``<results_dir>/REPORT.md`` from the results tables (and the figures' file names)."""
    mods = _experiments(experiments)
    prov = provenance()
    rel_figs = os.path.relpath(figures_dir, results_dir)
    lines = ["# sketchsim verification report", ""]
    lines.append(f"Profile **{profile or 'unknown'}**; generated {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M UTC} "
                 f"by `sketchsim verify`/`sketchsim report` from the tables in `{results_dir}/` "
                 f"(sketchsim {prov.get('sketchsim_version')}, commit {str(prov.get('git_commit'))[:10]}, "
                 f"numpy {prov.get('numpy_version')}, numba {prov.get('numba_version')}, {platform.machine()}, "
                 f"{os.cpu_count()} cpus).")
    tpath = os.path.join(results_dir, "verify_timing.json")
    if timing is None and os.path.exists(tpath):
        with open(tpath, encoding="utf-8") as fh:
            timing = json.load(fh)
    if timing:
        per = ", ".join(f"{k} {v:.0f} s" for k, v in timing.get("per_experiment_s", {}).items())
        lines.append(f"Sweep wall time of the last `sketchsim verify`: {timing['wall_s']:.0f} s with {timing['jobs']} "
                     f"job(s), executor {timing['executor']}" + (f" ({per})." if per else ".") +
                     " An experiment whose runs had all finished in an earlier invocation keeps that "
                     "invocation's time.")
    lines += ["", "| experiment | runs | failed runs | verdict |", "|---|---|---|---|"]
    sections = []
    for mod in mods:
        df = _load(mod, results_dir)
        res = mod.analyze(df)
        body = res["markdown"].replace("../paper_figs/", rel_figs.rstrip("/") + "/")
        n_fail = _n_failures(mod, results_dir)
        verdict = res.get("verdict") or _first_verdict(body)
        lines.append(f"| [{mod.TITLE}](#{_anchor(mod.TITLE)}) | {len(df)} | {n_fail} | {verdict} |")
        stmt = "\n".join("> " + ln for ln in mod.STATEMENT.strip().splitlines())
        sections += ["", f"## {mod.TITLE}", "", stmt, "", body.strip(), ""]
    text = "\n".join(lines + sections) + "\n"
    path = os.path.join(results_dir, "REPORT.md")
    atomic_write_text(path, text)
    out(f"wrote {path}")
    return path


def _n_failures(mod, results_dir):
    path = os.path.join(results_dir, mod.NAME, "failures.csv")
    if not os.path.exists(path):
        return 0
    import pandas as pd

    return len(pd.read_csv(path))


def _first_verdict(body):
    """Summary verdict of a section whose analysis gave none: scans its 'consistent' statements."""
    for ln in body.splitlines():
        low = ln.lower().replace("*", "")
        if "verdict:" in low and "rule" not in low:
            text = ln.replace("*", "").strip().lstrip("-# ")
            text = text[text.lower().index("verdict:") + len("verdict:"):].strip()
            return (text[:157] + "…") if len(text) > 160 else text
    lines = [ln.lower() for ln in body.splitlines() if "consistent" in ln.lower() and "rule" not in ln.lower()]
    if not lines:
        return "see section"
    bad = sum(("not consistent" in ln) or ("inconsistent" in ln) for ln in lines)
    return f"not consistent in {bad} statement(s) (see section)" if bad else "consistent"


def _anchor(title):
    keep = "".join(c.lower() if c.isalnum() else ("-" if c in " -" else "") for c in title)
    return keep


# ------------------------------------------------------------------------------------ CI check
def current_baselines(results_dir, experiments=None):
    """{experiment: {key: value}} from ``analyze`` of each experiment's results."""
    return {mod.NAME: {k: float(v) for k, v in mod.analyze(_load(mod, results_dir))["baselines"].items()}
            for mod in _experiments(experiments)}


def compare(baselines, current):
    """Names of the numbers that moved beyond their tolerance, as readable lines (empty: passed)."""
    problems = []
    for exp, entries in baselines.items():
        got = current.get(exp, {})
        for key, ref in entries.items():
            if key not in got:
                problems.append(f"{exp}: {key} is missing from the current analysis")
                continue
            v = got[key]
            if not (math.isfinite(v) and abs(v - ref["value"]) <= ref["tol"]):
                problems.append(f"{exp} [{ref.get('figure', exp)}]: {key} = {v:.6g}, baseline "
                                f"{ref['value']:.6g} ± {ref['tol']:.3g} (spread σ = {ref['std']:.3g} over "
                                f"{ref['n_seeds']} seeds)")
    return problems


def _quick_run(seed, rdir, jobs, executor, quiet, experiments):
    for mod in _experiments(experiments):
        run_sweep(mod, profile="quick", seed=seed, jobs=jobs, executor=executor, results_dir=rdir, quiet=quiet)
    return current_baselines(rdir, experiments)


def update_baselines(n_seeds=4, jobs=1, executor=None, quiet=False, results_root="results",
                     experiments=None, out=print):
    """Measure the run-to-run spread over ``n_seeds`` base seeds and write results/baselines.json."""
    runs = []
    with tempfile.TemporaryDirectory(prefix="sketchsim-baselines-") as tmp:
        for seed in range(n_seeds):
            runs.append(_quick_run(seed, os.path.join(tmp, str(seed)), jobs, executor, quiet, experiments))
            out(f"baseline seed {seed}: done")
    data = {}
    for exp, entries in runs[0].items():
        data[exp] = {}
        for key, value in entries.items():
            vals = np.array([r[exp].get(key, np.nan) for r in runs], dtype=float)
            finite = vals[np.isfinite(vals)]
            std = float(finite.std(ddof=1)) if len(finite) > 1 else 0.0
            tol = max(TOL_SIGMAS * std, TOL_REL_FLOOR * abs(value), TOL_ABS_FLOOR)
            data[exp][key] = {"value": value, "tol": tol, "std": std, "n_seeds": int(len(finite)),
                              "seed_values": [float(v) for v in vals], "figure": exp}
    meta = {"_about": f"Quick-profile numbers of seed 0 with tolerances max({TOL_SIGMAS}·σ over {n_seeds} base "
                      f"seeds, {TOL_REL_FLOOR}·|value|, {TOL_ABS_FLOOR}); written by `sketchsim check "
                      "--update-baselines`."}
    path = os.path.join(results_root, BASELINES_FILE)
    if experiments is not None and os.path.exists(path):
        data = {**load_baselines(results_root), **data}     # refresh only the given experiments
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


def check(jobs=1, executor=None, quiet=False, results_root="results", experiments=None, keep=None, out=print):
    """Re-run the quick profile (seed 0) in a scratch directory and compare with the baselines.

    Returns the list of problems (empty when everything is within tolerance).
    """
    baselines = load_baselines(results_root)
    if experiments is not None:
        names = {m.NAME for m in _experiments(experiments)}
        baselines = {k: v for k, v in baselines.items() if k in names}
    tmp = keep or tempfile.mkdtemp(prefix="sketchsim-check-")
    try:
        current = _quick_run(0, tmp, jobs, executor, quiet, experiments or list(baselines))
    finally:
        if keep is None:
            shutil.rmtree(tmp, ignore_errors=True)
    problems = compare(baselines, current)
    n = sum(len(v) for v in baselines.values())
    if problems:
        out(f"check FAILED: {len(problems)} of {n} numbers moved beyond their tolerance:")
        for p in problems:
            out("  " + p)
    else:
        out(f"check passed: {n} numbers within tolerance of results/{BASELINES_FILE}")
    return problems
