"""Mutation suite: deliberate bugs that the verdicts and ``sketchsim check`` must catch.

Each mutation is a literal text replacement in one source file. For each, the package is copied to
a scratch directory, the bug is applied there, the QUICK profile of the affected studies is run
with base seed 0 (``sketchsim verify --experiments … --results-dir …``), and then

* every claim name in ``expect`` must have at least one (family, depth) cell that reads "not
  consistent" in ``verdicts.json`` and did not in the baselines (a verdict the bug turned), and
* ``sketchsim check --from`` against the committed ``results/baselines.json`` must exit 1.

The copy is imported through ``PYTHONPATH`` (ahead of the editable install), which the run checks.
A mutation whose ``old`` text is not found exactly once is an error (the suite is stale).

Usage::

    python tests/mutation_suite.py [--jobs 2] [--only NAME,NAME] [--out results/mutations]

writes ``OUT.json`` and ``OUT.md`` (which bug each claim catches) and exits 1 if any mutation
escaped. CI runs it after ``sketchsim check``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Mutation:
    name: str
    description: str
    file: str
    old: str
    new: str
    experiments: tuple
    expect: tuple          # claim names that must read "not consistent" (at least one claim each)


DECODE_IMPORT = "from .theory import check_depth, depth_constant, erasure_rescale, object_sketch_constant"

MUTATIONS = (
    Mutation(
        "decoder_c3_x2", "c_h doubled at depth 3 in the decoders only (predictions unchanged)",
        "sketchsim/decode.py", DECODE_IMPORT,
        "from .theory import check_depth, depth_constant as _c_h, erasure_rescale, object_sketch_constant\n\n\n"
        "def depth_constant(h):\n    return _c_h(h) * (2.0 if int(h) == 3 else 1.0)",
        ("thm1_attributes",), ("thm1.i", "thm1.i.noise", "thm1.ii", "thm1.ii.noise")),
    Mutation(
        "theory_c3_x2", "c_h doubled at depth 3 in theory.depth_constant (decoders and predictions together)",
        "sketchsim/theory.py", "    return 2.0 ** (-(4 * h - 3))",
        "    return 2.0 ** (-(4 * h - 3)) * (2.0 if h == 3 else 1.0)",
        ("thm1_attributes",), ("thm1.i", "thm1.ii")),
    Mutation(
        "theory_c2_x2", "c_h doubled at depth 2 in theory.depth_constant (decoders and predictions together)",
        "sketchsim/theory.py", "    return 2.0 ** (-(4 * h - 3))",
        "    return 2.0 ** (-(4 * h - 3)) * (2.0 if h == 2 else 1.0)",
        ("thm1_attributes", "thm2_similarity", "thm3_summary"), ("thm1.i", "thm1.ii", "thm2.ii", "thm3.count")),
    Mutation(
        "erasure_sqrt", "erasure rescale √(d/d') instead of d/d'",
        "sketchsim/theory.py", "    return d / _keep(d, keep)",
        "    return math.sqrt(d / _keep(d, keep))",
        ("erasure",), ("erasure", "erasure.path", "erasure.count", "erasure.similarity")),
    Mutation(
        "thm2_prediction_x2", "the Theorem 2 prediction (expected dot product) doubled",
        "sketchsim/theory.py", "    return total\n",
        "    return 2.0 * total\n",
        ("thm2_similarity",), ("thm2.ii",)),
    Mutation(
        "count_x1.25", "the count decoder off by 25%",
        "sketchsim/decode.py",
        "    n = (S @ _e1_image(bank, module)) * factor / (depth_constant(h) * np.ravel(w))",
        "    n = 1.25 * (S @ _e1_image(bank, module)) * factor / (depth_constant(h) * np.ravel(w))",
        ("thm3_summary", "scenes_decode"), ("thm3.count", "scenes.count")),
    Mutation(
        "path_word_reversed", "the index-path word reversed in the path decoder",
        "sketchsim/decode.py", "    return names\n\n\ndef _apply_t",
        "    return names[::-1]\n\n\ndef _apply_t",
        ("thm1_attributes",), ("thm1.ii",)),
    Mutation(
        "object_sketch_x2", "the object-sketch constant 2^{-(4h-7)} off by a factor 2",
        "sketchsim/theory.py", "    return 2.0 ** (-(4 * h - 7))",
        "    return 2.0 ** (-(4 * h - 6))",
        ("unrolling",), ("unrolling",)),
    Mutation(
        "parity_bit_flipped", "a flipped parity bit (f'_m) in the matrix signature of D(b, q, d)",
        "sketchsim/_matrix_kernels.py", "            elif s == t + 1 + nbits:\n                f = nc ^ nm\n",
        "            elif s == t + 1 + nbits:\n                f = nc ^ nm ^ 1\n",
        ("thm4_dictlearn",), ("thm4", "thm4.prediction")),
    Mutation(
        "ls_leaf_map_x2", "the least-squares decoders' leaf map A_M doubled (a c_h off by 2 in decode_ls only)",
        "sketchsim/decode_ls.py", "        return _attr_map(bank, module, L)\n",
        "        return 2.0 * _attr_map(bank, module, L)\n",
        ("decoders_ls",), ("decoders.joint_ls",)),
)


def _copy_tree(dst):
    ignore = shutil.ignore_patterns(".git", ".ci-venv*", "results", "paper_figs", "*.egg-info", ".pytest_cache")
    for sub in ("sketchsim", "experiments"):
        shutil.copytree(ROOT / sub, dst / sub, ignore=ignore, copy_function=shutil.copy2)
    for f in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / f, dst / f)
    (dst / "results").mkdir()
    shutil.copy2(ROOT / "results" / "baselines.json", dst / "results" / "baselines.json")


def _apply(dst, m):
    path = dst / m.file
    text = path.read_text(encoding="utf-8")
    n = text.count(m.old)
    if n != 1:
        raise SystemExit(f"mutation {m.name}: the text to replace occurs {n} times in {m.file} "
                         f"(must be exactly once; the suite is stale): {m.old!r}")
    path.write_text(text.replace(m.old, m.new), encoding="utf-8")


def _env(src):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(src) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _baseline_verdicts(path, experiments):
    """{"claim|family|depth": verdict} of the baselines of ``experiments``."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    out = {}
    for exp in experiments:
        out.update(data.get(exp, {}).get("claims", {}))
    return out


def run_one(m, jobs, workdir):
    src = workdir / "src"
    out = workdir / "out"
    _copy_tree(src)
    _apply(src, m)
    env = _env(src)
    probe = subprocess.run([sys.executable, "-c", "import sketchsim, experiments; print(sketchsim.__file__); "
                            "print(experiments.__path__[0])"], cwd=src, env=env, capture_output=True,
                           text=True, timeout=120)
    files = probe.stdout.split()
    if probe.returncode or not files or not all(f.startswith(str(src)) for f in files):
        raise SystemExit(f"mutation {m.name}: the mutated copy is not what Python imports: {probe.stdout} "
                         f"{probe.stderr}")
    t0 = time.perf_counter()
    exps = ",".join(m.experiments)
    v = subprocess.run([sys.executable, "-m", "sketchsim", "verify", "--profile", "quick", "--seed", "0",
                        "--experiments", exps, "--results-dir", str(out), "--jobs", str(jobs), "--quiet"],
                       cwd=src, env=env, capture_output=True, text=True, timeout=1800)
    rec = {"mutation": m.name, "description": m.description, "file": m.file, "experiments": list(m.experiments),
           "expect": list(m.expect), "verify_exit": v.returncode}
    caught_claims = []
    base = _baseline_verdicts(src / "results" / "baselines.json", m.experiments)
    if v.returncode == 0:
        doc = json.loads((out / "verdicts.json").read_text(encoding="utf-8"))
        flipped = []
        for c in doc["claims"]:
            cid = f"{c['claim']}|{c['family'] or 'all'}|{'-' if c['depth'] is None else c['depth']}"
            if c["verdict"] == "not consistent" and base.get(cid) != "not consistent":
                flipped.append(c)
                caught_claims.append(f"{c['claim']} [{c['family'] or 'all'}, depth {c['depth']}] "
                                     f"(was {base.get(cid, 'absent')})")
        rec["not_consistent"] = caught_claims
        rec["expected_caught"] = {e: any(c["claim"] == e for c in flipped) for e in m.expect}
    else:
        rec["verify_stderr"] = v.stderr[-2000:]
        rec["expected_caught"] = {e: False for e in m.expect}
    ch = subprocess.run([sys.executable, "-m", "sketchsim", "check", "--from", str(out), "--experiments", exps,
                         "--baselines-dir", str(src / "results"), "--quiet"],
                        cwd=src, env=env, capture_output=True, text=True, timeout=600)
    rec["check_exit"] = ch.returncode
    rec["check_output"] = (ch.stdout + ch.stderr)[-3000:]
    rec["seconds"] = round(time.perf_counter() - t0, 1)
    rec["caught"] = bool(rec["verify_exit"] == 0 and all(rec["expected_caught"].values()) and ch.returncode == 1)
    return rec


def _markdown(records):
    lines = ["# Mutation suite", "",
             "Deliberate bugs applied one at a time to a copy of the code; the quick profile (base seed 0) of "
             "the affected studies is run and `sketchsim check --from` compares it with "
             "`results/baselines.json`. Written by `python tests/mutation_suite.py`.", "",
             "| mutation | file | expected claims | caught | `check` exit | verdicts turned \"not consistent\" | s |",
             "|---|---|---|---|---|---|---|"]
    for r in records:
        exp = ", ".join(f"`{k}` {'✓' if v else '✗'}" for k, v in r["expected_caught"].items())
        nc = "; ".join(r.get("not_consistent", [])) or (f"verify failed (exit {r['verify_exit']})"
                                                       if r["verify_exit"] else "none")
        lines.append(f"| {r['mutation']}: {r['description']} | `{r['file']}` | {exp} | "
                     f"{'**yes**' if r['caught'] else '**NO**'} | {r['check_exit']} | {nc} | {r['seconds']} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--only", default=None, help="comma-separated mutation names")
    p.add_argument("--out", default=None, help="write OUT.json and OUT.md (e.g. results/mutations)")
    p.add_argument("--list", action="store_true")
    a = p.parse_args(argv)
    muts = MUTATIONS
    if a.list:
        for m in muts:
            print(f"{m.name}: {m.description} ({m.file}; expects {', '.join(m.expect)})")
        return 0
    if a.only:
        names = a.only.split(",")
        unknown = set(names) - {m.name for m in muts}
        if unknown:
            p.error(f"--only: unknown mutation(s) {sorted(unknown)}; --list shows them")
        muts = [m for m in muts if m.name in names]
    records = []
    for m in muts:
        with tempfile.TemporaryDirectory(prefix=f"sketchsim-mut-{m.name}-") as tmp:
            rec = run_one(m, a.jobs, Path(tmp))
        records.append(rec)
        print(f"{m.name}: {'caught' if rec['caught'] else 'ESCAPED'} ({rec['seconds']} s; check exit "
              f"{rec['check_exit']}; expected {rec['expected_caught']})", flush=True)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out + ".json").write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")
        Path(a.out + ".md").write_text(_markdown(records), encoding="utf-8")
    escaped = [r["mutation"] for r in records if not r["caught"]]
    if escaped:
        print(f"mutation suite FAILED: {len(escaped)} of {len(records)} bug(s) escaped: {', '.join(escaped)}")
        return 1
    print(f"mutation suite passed: all {len(records)} bugs caught")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
