"""Benchmark of the verification suite (issue 11, item 3: a second worker that helps ``verify``).

Measures, in one run, the wall time of ``sketchsim verify --profile quick`` with ``--jobs 1`` (the
default ``serial`` executor) and ``--jobs 2`` (the ``processes`` executor: one pool of two
single-threaded workers for every study), each from a **cold** Numba cache (a fresh, empty
``NUMBA_CACHE_DIR``: every kernel is compiled) and from a **warm** one (the cache a cold run of this
benchmark filled), each in a fresh interpreter (``python -m sketchsim verify``, the command users
run) and a fresh results directory, so that every run is computed. The four configurations are
interleaved in every round (the order alternates between rounds), so that a change of the
machine's load hits them alike; the verdict compares medians over the rounds: the issue's target
is a speed-up ``t(--jobs 1) / t(--jobs 2) ≥ 1.6``, cold and warm.

Each row also splits the wall time, from the run's ``verify_timing.json``: ``sweeps_s`` (every
study's runs and, with ``--jobs 2``, the figures the workers draw meanwhile), ``figures_s`` (the
figures drawn after the last run: all of them with ``--jobs 1``, only those still pending with
``--jobs 2``) and ``other_s`` (interpreter start, imports, discovery of the studies,
``verdicts.json`` and REPORT.md); ``cpu_s`` is the user + system time of ``verify`` and its
workers, ``load_before``/``load_after`` the machine's 1-minute load average around the run (the
speed-up needs an otherwise idle machine: see the report's note on Linux's per-session
scheduling groups).

The full-profile time comes from the committed full profile's own files
(``sketchsim.harness.verify.last_verify_time``): the wall time of the last ``sketchsim verify
--profile full`` when that run computed every run itself, else (it resumed an interrupted one)
Σ ``time_s`` of the tables / workers, labelled as a lower bound (``--full`` re-runs the full
profile instead, hours). ``--speedup-experiment NAME`` (default ``unrolling``) also times that
experiment's full profile with 1 and 2 workers on a warm cache: the compute-dominated speed-up.

Run: ``python experiments/perf_verify.py [--repeats R] [--experiments A,B] [--out-dir DIR]
[--full] [--speedup-experiment NAME]``, or ``--from-csv`` to rewrite the report from
``DIR/perf_verify.csv`` without measuring. Writes ``DIR/perf_verify.csv`` and ``DIR/perf_verify.md``
(default ``results/``).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import pandas as pd

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))
RESULTS = os.path.join(ROOT, "results")
TARGET = 1.6
"""Issue 11: quick profile at least 1.6× faster with --jobs 2 than with --jobs 1, cold and warm."""


def timed_verify(profile, jobs, cache_dir, experiments=None, workdir=None):
    """Wall time and its parts of one ``python -m sketchsim verify`` in a fresh interpreter and
    fresh results/figures folders, with ``NUMBA_CACHE_DIR=cache_dir``."""
    with tempfile.TemporaryDirectory(prefix="sketchsim-perf-", dir=workdir) as tmp:
        rdir, fdir = os.path.join(tmp, "results"), os.path.join(tmp, "figs")
        env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
        cmd = [sys.executable, "-m", "sketchsim", "verify", "--profile", profile, "--jobs", str(jobs),
               "--results-dir", rdir, "--figures-dir", fdir, "--quiet"]
        if experiments:
            cmd += ["--experiments", experiments]
        load0 = os.getloadavg()[0]
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        with open(os.path.join(rdir, "verify_timing.json"), encoding="utf-8") as fh:
            timing = json.load(fh)
    inv, sweeps = float(timing["this_invocation_s"]), float(timing["wall_s"])
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)  # verify and its workers
    return {"wall_s": wall, "sweeps_s": sweeps, "figures_s": inv - sweeps, "other_s": wall - inv,
            "cpu_s": cpu, "load_before": load0, "load_after": os.getloadavg()[0]}


_CHILD_RUN = """
import sys
from sketchsim.harness.sweep import run_sweep
if __name__ == "__main__":
    run_sweep(sys.argv[1], profile=sys.argv[2], jobs=int(sys.argv[3]), executor="processes",
              results_dir=sys.argv[4], quiet=True)
"""


def timed_sweep(experiment, profile, jobs):
    """Wall time of one experiment's sweep (warm Numba cache: compute-dominated)."""
    with tempfile.TemporaryDirectory(prefix="sketchsim-perf-") as tmp:
        cmd = [sys.executable, "-c", _CHILD_RUN, experiment, profile, str(jobs), os.path.join(tmp, "results")]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=ROOT)
        return time.perf_counter() - t0


def full_time_from_results():
    """(seconds, workers, how) of the committed full profile: the wall time of the last ``verify``
    (``how`` = "measured") when it ran every run itself; when it resumed from an interrupted one,
    Σ time_s / workers of the tables (``how`` = "lower bound"), never a partial wall time."""
    from sketchsim.harness.verify import last_verify_time

    t = last_verify_time(RESULTS)
    if t is None:
        return None, None, None
    if t["cached_runs"] == 0:
        return t["wall_s"], t["jobs"], "measured"
    return t["run_time_s"] / t["jobs"], t["jobs"], (
        f"lower bound: Σ time_s of the {t['n_runs']} runs / {t['jobs']} workers; the last verify resumed "
        f"({t['cached_runs']} runs computed by earlier, interrupted invocations), so its wall time "
        f"({t['wall_s'] / 60:.0f} min) does not time the profile")


def round_order(rnd):
    """The four (jobs, cache) configurations of round ``rnd``: a cold run first (it fills the warm
    cache in round 0), the worker counts alternating between rounds."""
    a, b = (1, 2) if rnd % 2 == 0 else (2, 1)
    return [(a, "cold"), (b, "cold"), (a, "warm"), (b, "warm")]


def measure_quick(repeats, experiments=None, log=print):
    rows = []
    with tempfile.TemporaryDirectory(prefix="sketchsim-perf-caches-") as caches:
        warm = os.path.join(caches, "warm")
        for rnd in range(repeats):
            for jobs, cache in round_order(rnd):
                if cache == "cold":
                    cache_dir = os.path.join(caches, f"cold-{rnd}-{jobs}")
                    os.makedirs(cache_dir)
                else:
                    cache_dir = warm
                r = timed_verify("quick", jobs, cache_dir, experiments)
                if cache == "cold":
                    if not os.path.isdir(warm):  # the first cold run fills the warm cache
                        shutil.copytree(cache_dir, warm)
                    shutil.rmtree(cache_dir, ignore_errors=True)
                rows.append({"profile": "quick", "jobs": jobs, "cache": cache, "rep": rnd, **r,
                             "experiments": experiments or "all"})
                log(f"round {rnd}: quick, --jobs {jobs}, {cache} cache: {r['wall_s']:.1f} s "
                    f"(sweeps {r['sweeps_s']:.1f} s, figures after them {r['figures_s']:.1f} s, "
                    f"other {r['other_s']:.1f} s; {r['cpu_s']:.1f} CPU-s; load "
                    f"{r['load_before']:.1f} → {r['load_after']:.1f})")
    return rows


def _autogroup():
    try:
        with open("/proc/sys/kernel/sched_autogroup_enabled", encoding="ascii") as fh:
            return fh.read().strip()
    except OSError:
        return "n/a"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=1,
                   help="rounds of the four quick configurations (medians reported)")
    p.add_argument("--experiments", default=None, metavar="A,B",
                   help="only these studies (a subset for development; default every study)")
    p.add_argument("--out-dir", default=RESULTS, help="where perf_verify.csv/md go (default results/)")
    p.add_argument("--full", action="store_true", help="also time the full profile with 2 workers (≈ 1 h)")
    p.add_argument("--from-csv", action="store_true",
                   help="measure nothing: rewrite perf_verify.md from the perf_verify.csv in --out-dir "
                        "(and the committed full-profile files), with the options that CSV was made with")
    p.add_argument("--speedup-experiment", default="unrolling",
                   help="experiment whose full profile is timed with 1 and 2 workers, warm cache "
                        "(the compute-dominated speed-up); '' to skip")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error(f"--repeats must be >= 1; got {args.repeats}")
    if args.from_csv:
        path = os.path.join(args.out_dir, "perf_verify.csv")
        if not os.path.exists(path):
            p.error(f"--from-csv: no {path} to rewrite the report from")
        df = pd.read_csv(path)
        q = df[df.profile == "quick"]
        sp = df[df.profile.astype(str).str.startswith("full:")]
        args.repeats = int(q["rep"].max()) + 1 if len(q) else args.repeats
        args.speedup_experiment = sp.profile.iloc[0].split(":", 1)[1] if len(sp) else ""
        args.full = bool((df.profile == "full").any())
        text = report(df, args)
        with open(os.path.join(args.out_dir, "perf_verify.md"), "w", encoding="utf-8") as fh:
            fh.write(text)
        print(text)
        return
    rows = []
    if args.speedup_experiment:
        for jobs in (1, 2):
            t = timed_sweep(args.speedup_experiment, "full", jobs)
            rows.append({"profile": f"full:{args.speedup_experiment}", "jobs": jobs, "cache": "warm",
                         "rep": 0, "wall_s": t})
            print(f"{args.speedup_experiment} full, {jobs} worker(s), warm cache: {t:.1f} s", flush=True)
    rows += measure_quick(args.repeats, args.experiments, log=lambda s: print(s, flush=True))
    if args.full:
        with tempfile.TemporaryDirectory(prefix="sketchsim-perf-full-") as cache:
            r = timed_verify("full", 2, cache)
        rows.append({"profile": "full", "jobs": 2, "cache": "cold", "rep": 0, **r})
    df = pd.DataFrame(rows)
    os.makedirs(args.out_dir, exist_ok=True)
    df.to_csv(os.path.join(args.out_dir, "perf_verify.csv"), index=False)
    text = report(df, args)
    with open(os.path.join(args.out_dir, "perf_verify.md"), "w", encoding="utf-8") as fh:
        fh.write(text)
    print(text)


def report(df, args):
    q = df[df.profile == "quick"]
    med = q.groupby(["cache", "jobs"])[["wall_s", "sweeps_s", "figures_s", "other_s", "cpu_s",
                                         "load_before"]].median()
    ok = lambda c: "met" if c else "MISSED"  # noqa: E731
    cmd = "python experiments/perf_verify.py --repeats {}".format(args.repeats) + (
        f" --experiments {args.experiments}" if args.experiments else "") + (
        "" if args.speedup_experiment == "unrolling" else
        f" --speedup-experiment '{args.speedup_experiment}'") + (" --full" if args.full else "")
    subset = (f"studies **{args.experiments}** only (a subset)" if args.experiments
              else "every study")
    md = ["# Verification-suite benchmark", "",
          f"Generated by `{cmd}` on {os.cpu_count()} cpus: `sketchsim verify --profile quick` of "
          f"{subset}, `--jobs 1` (serial executor) against `--jobs 2` (processes executor: one pool of "
          "two single-threaded workers for every study, runs longest first, figures drawn by the "
          "workers). Fresh interpreter and results directory per run; *cold*: empty `NUMBA_CACHE_DIR`, "
          "*warm*: the cache a cold run of this benchmark filled. The four configurations are "
          f"interleaved in each of {args.repeats} round(s); medians."
          + (" (Tables rewritten from that CSV by `python experiments/perf_verify.py --from-csv`, which "
             "measures nothing: the full-profile row reads the committed full profile's files.)"
             if getattr(args, "from_csv", False) else ""), "",
          "**Only a quiet machine gives the speed-up.** Linux schedules each session as one group "
          "(`/proc/sys/kernel/sched_autogroup_enabled` = "
          f"{_autogroup()}): while other sessions keep the CPUs busy, the two workers of one "
          "`verify` share the CPU time of a single process, and `--jobs 2` cannot beat `--jobs 1`. "
          "The 1-minute load average before each run is in the CSV (`load_before`; its median is "
          "below); with a load well above the run's own (≈ 1–2) the verdict says nothing about the "
          "code. `CPU-s` is the user + system time of `verify` and its workers: the serial run "
          "already uses more than one core at times (Numba's row-parallel kernels, BLAS in the "
          "figures and claims), and the second worker adds work of its own (imports, kernels "
          "loaded or compiled twice). Two cores cannot do CPU(--jobs 2) seconds of work in less "
          "than half of it, so 2 · t(--jobs 1) / CPU(--jobs 2) bounds the speed-up.", "",
          "| cache | --jobs 1 | --jobs 2 | speed-up | target | verdict | CPU-s 1 → 2 | bound "
          "2·t1/CPU2 | load before |", "|---|---|---|---|---|---|---|---|---|"]
    for cache in ("cold", "warm"):
        if (cache, 1) in med.index and (cache, 2) in med.index:
            t1, t2 = med.loc[(cache, 1), "wall_s"], med.loc[(cache, 2), "wall_s"]
            c1, c2 = med.loc[(cache, 1), "cpu_s"], med.loc[(cache, 2), "cpu_s"]
            load = max(med.loc[(cache, 1), "load_before"], med.loc[(cache, 2), "load_before"])
            md.append(f"| {cache} | {t1:.0f} s | {t2:.0f} s | ×{t1 / t2:.2f} | ≥ {TARGET} | "
                      f"{ok(t1 / t2 >= TARGET)} | {c1:.0f} → {c2:.0f} | ×{2 * t1 / c2:.2f} | "
                      f"{load:.1f} |")
    md += ["", "Where the time goes (medians, seconds): sweeps = every study's runs (with `--jobs 2` "
           "also the figures the workers draw meanwhile); figures = figures drawn after the last run "
           "(all of them with `--jobs 1`); other = interpreter start, imports, discovery of the "
           "studies, `verdicts.json` and REPORT.md.", "",
           "| cache | jobs | wall | sweeps | figures | other |", "|---|---|---|---|---|---|"]
    for (cache, jobs), r in med.iterrows():
        md.append(f"| {cache} | {jobs} | {r.wall_s:.1f} | {r.sweeps_s:.1f} | {r.figures_s:.1f} | "
                  f"{r.other_s:.1f} |")
    full_t, full_jobs, how = ((float(df[df.profile == "full"].wall_s.iloc[0]), 2, "measured") if args.full
                              else full_time_from_results())
    md += ["", "| measure | value | target | verdict |", "|---|---|---|---|"]
    if ("cold", 2) in med.index and not args.experiments:
        t = med.loc[("cold", 2), "wall_s"]
        md.append(f"| quick profile, 2 workers, cold | {t:.0f} s | ≤ 180 s | {ok(t <= 180)} |")
    bound = how not in (None, "measured")
    md.append(f"| full profile ({full_jobs} workers{'; ' + how if bound else ''}) | "
              f"{'≥ ' if bound else ''}{full_t / 60:.1f} min | ≤ 60 min | {ok(full_t <= 3600)} |"
              if full_t else "| full profile | not measured | ≤ 60 min | — |")
    sp = df[df.profile.str.startswith("full:")]
    if len(sp) == 2:
        t1, t2 = (float(sp[sp.jobs == j].wall_s.iloc[0]) for j in (1, 2))
        md.append(f"| speed-up 1 → 2 workers, `{args.speedup_experiment}` full profile, warm cache | "
                  f"×{t1 / t2:.2f} ({t1:.0f} s → {t2:.0f} s) | ≥ 1.7 | {ok(t1 / t2 >= 1.7)} |")
    return "\n".join(md) + "\n"


if __name__ == "__main__":
    main()
