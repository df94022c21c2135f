"""verify / figures / report / check on a tiny complete fixture study (tests/_verify_fixture_exp.py).

Every call passes ``experiments=[...]`` with the fixture, so no real study ever runs here, and
every output goes to a temporary directory.
"""
import json
import math
import os
import sys
import types
from pathlib import Path

import pytest

from sketchsim.harness import claims as C
from sketchsim.harness import verify as V

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import _verify_fixture_exp as fx  # noqa: E402

EXP = ["_verify_fixture_exp"]


def quiet(*_a, **_k):
    pass


def broken_depth_constant(h):
    """The decoder's c_h off by a factor 2 (x̂ halved)."""
    return 2.0 ** (-(4 * h - 3)) * 2


@pytest.fixture(scope="module")
def verified(tmp_path_factory):
    """One quick verify of the fixture (base seed 0): (results dir, figures dir)."""
    base = tmp_path_factory.mktemp("verified")
    rdir, fdir = base / "results", base / "figs"
    V.verify("quick", results_dir=str(rdir), figures_dir=str(fdir), experiments=EXP, quiet=True,
             out=quiet)
    return rdir, fdir


@pytest.fixture(scope="module")
def baselines(tmp_path_factory):
    """results root holding baselines.json measured over 2 base seeds."""
    root = tmp_path_factory.mktemp("baselines")
    V.update_baselines(n_seeds=2, results_root=str(root), experiments=EXP, quiet=True, out=quiet)
    return root


def test_output_dirs():
    assert V.output_dirs("full") == ("results", "paper_figs")
    assert V.output_dirs("quick") == (os.path.join("results", "quick"),
                                      os.path.join("paper_figs", "quick"))
    assert V.resolve_dirs("quick", "R") == ("R", os.path.join("R", "figures"))
    assert V.resolve_dirs("quick", "R", "F") == ("R", "F")


def test_parse_experiments():
    assert V.parse_experiments(None) is None
    assert V.parse_experiments(" a, b ,") == ["a", "b"]
    with pytest.raises(ValueError, match="--experiments must list experiment names"):
        V.parse_experiments(" , ")


# ------------------------------------------------------------------------------------ verify
def test_verify_writes_tables_figures_and_timing(verified):
    rdir, fdir = verified
    assert (rdir / "verify_fixture.csv").exists()
    assert json.loads((rdir / "verify_fixture.schema.json").read_text())["m_err_rms"] == "float"
    assert (fdir / "verify_fixture.png").stat().st_size > 0
    timing = json.loads((rdir / "verify_timing.json").read_text())
    assert set(timing["per_experiment_s"]) == {"verify_fixture"} and timing["jobs"] == 1


def test_verdicts_json_has_the_documented_fields(verified):
    rdir, _ = verified
    doc = json.loads((rdir / V.VERDICTS_FILE).read_text())
    assert {"profile", "commit", "dirty", "claims", "headlines"} <= set(doc)
    assert doc["profile"] == "quick" and doc["seed"] == 0 and isinstance(doc["dirty"], bool)
    assert "Rules" not in doc["rules"] and "inconclusive" in doc["rules"]
    by_claim = {c["claim"]: c for c in doc["claims"]}
    assert set(by_claim) == {"fixture.rate", "fixture.bias"}
    for c in doc["claims"]:
        assert {"experiment", "claim", "family", "depth", "verdict", "evidence", "substitute",
                "tests"} <= set(c)
        assert c["experiment"] == "verify_fixture" and c["depth"] == 2
        assert c["verdict"] in C.VERDICTS
        for t in c["tests"]:
            assert {"key", "estimate", "interval", "predicted", "band", "verdict", "reason"} <= set(t)
    rate, bias = by_claim["fixture.rate"], by_claim["fixture.bias"]
    assert (rate["family"], rate["substitute"], rate["verdict"]) == ("hadamard", True, C.CONSISTENT)
    assert (bias["family"], bias["substitute"], bias["verdict"]) == (None, False, C.CONSISTENT)
    assert [t["key"] for t in bias["tests"]] == ["slope", "gain"]
    assert "α, exponent of d" in rate["evidence"] and "15 runs" in rate["evidence"]
    heads = {h["claim"]: h for h in doc["headlines"]}
    assert set(heads) == {"fixture.rate", "fixture.bias"}
    # hadamard is the substitute: it never decides a headline
    assert heads["fixture.rate"]["verdict"] == C.INCONCLUSIVE
    assert "substitute hadamard at depth 2: consistent" in heads["fixture.rate"]["headline"]
    assert heads["fixture.bias"]["verdict"] == C.CONSISTENT
    assert all(h["experiment"] == "verify_fixture" for h in doc["headlines"])


def test_report_has_the_summary_table_sections_and_relative_figure_links(verified):
    rdir, _ = verified
    report = (rdir / "REPORT.md").read_text()
    assert "| experiment | claim | verdict | headline |" in report
    assert "| `fixture.bias` | **consistent** |" in report
    assert "[Fixture — Theorem 1(i) at depth 2](#fixture--theorem-1i-at-depth-2)" in report
    assert "## Fixture — Theorem 1(i) at depth 2" in report
    assert "> Attribute recovery" in report
    assert fx.METHOD in report and "| d | median RMS error |" in report  # METHOD and details()
    assert "15 runs, 0 failed run(s)." in report
    assert "| `fixture.rate` | hadamard (substitute) | 2 | consistent |" in report
    assert "![verify_fixture.png](../figs/verify_fixture.png)" in report  # relative to the report
    dirty = json.loads((rdir / V.VERDICTS_FILE).read_text())["dirty"]
    assert ("**written from a dirty tree**" in report) == dirty     # quick: no --allow-dirty
    assert "--allow-dirty)" not in report


def test_report_links_figures_under_results_dir_by_default(tmp_path):
    rdir = tmp_path / "out"
    V.verify("quick", results_dir=str(rdir), experiments=EXP, quiet=True, out=quiet)
    assert (rdir / "figures" / "verify_fixture.png").exists()
    assert "![verify_fixture.png](figures/verify_fixture.png)" in (rdir / "REPORT.md").read_text()
    # report and figures can be rebuilt from the tables alone
    (rdir / "REPORT.md").unlink()
    V.write_report(str(rdir), str(rdir / "figures"), "quick", experiments=EXP, out=quiet)
    assert "fixture.bias" in (rdir / "REPORT.md").read_text()
    assert V.make_figures(str(rdir), str(tmp_path / "f2"), experiments=EXP, out=quiet) == [
        str(tmp_path / "f2" / "verify_fixture.png")]


def test_report_and_figures_refuse_missing_results(tmp_path):
    with pytest.raises(ValueError, match=r"results of 'verify_fixture' must exist before "
                                         r"figures/report: .*verify_fixture\.csv is missing"):
        V.write_report(str(tmp_path), str(tmp_path), experiments=EXP, out=quiet)
    with pytest.raises(ValueError, match=r"results of 'verify_fixture' must exist"):
        V.make_figures(str(tmp_path), str(tmp_path), experiments=EXP, out=quiet)
    assert not (tmp_path / V.VERDICTS_FILE).exists() and not (tmp_path / "REPORT.md").exists()


def test_verify_refuses_when_every_run_failed(tmp_path, monkeypatch):
    def boom(params, rng):
        raise RuntimeError("broken study")

    monkeypatch.setattr(fx, "run_one", boom)
    with pytest.raises(ValueError, match=r"results of 'verify_fixture' must exist"):
        V.verify("quick", results_dir=str(tmp_path), experiments=EXP, quiet=True, out=quiet)
    assert not (tmp_path / "REPORT.md").exists()
    assert (tmp_path / "verify_fixture" / "failures.csv").exists()


def test_verify_rejects_a_module_that_is_not_a_study(tmp_path):
    with pytest.raises(ValueError, match=r"'_sweep_fixture_exp' is not a study: it defines no "
                                         r"claims\(df\)"):
        V.verify("quick", results_dir=str(tmp_path), experiments=["_sweep_fixture_exp"],
                 quiet=True, out=quiet)
    with pytest.raises(ValueError, match="unknown experiment 'no_such_study'"):
        V.verify("quick", results_dir=str(tmp_path), experiments=["no_such_study"], quiet=True,
                 out=quiet)


def test_full_profile_refuses_a_dirty_tree_before_writing(tmp_path, monkeypatch):
    monkeypatch.setattr(V, "provenance", lambda path=None: {"git_dirty": True,
                                                            "git_commit": "0123456789abcdef"})

    def no_sweep(*a, **k):
        raise AssertionError("nothing may run before the dirty-tree check")

    monkeypatch.setattr(V, "run_sweeps", no_sweep)
    monkeypatch.chdir(tmp_path)  # the default output dirs are relative: results/, paper_figs/
    with pytest.raises(ValueError, match=r"refuses a dirty tree.*--allow-dirty"):
        V.verify("full", experiments=EXP, quiet=True, out=quiet)
    assert list(tmp_path.iterdir()) == []


def test_full_profile_with_allow_dirty_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(V, "provenance", lambda path=None: {"git_dirty": True,
                                                            "git_commit": "0123456789abcdef"})
    monkeypatch.chdir(tmp_path)
    V.verify("full", experiments=EXP, quiet=True, allow_dirty=True, out=quiet)
    doc = json.loads((tmp_path / "results" / V.VERDICTS_FILE).read_text())
    assert (doc["profile"], doc["dirty"], doc["allow_dirty"], doc["commit"]) == (
        "full", True, True, "0123456789abcdef")
    report = (tmp_path / "results" / "REPORT.md").read_text()
    assert "**written from a dirty tree (--allow-dirty)**" in report and "0123456789" in report
    assert "![verify_fixture.png](../paper_figs/verify_fixture.png)" in report
    assert (tmp_path / "paper_figs" / "verify_fixture.png").exists()


def test_clean_tree_or_own_results_dir_needs_no_allow_dirty(tmp_path, monkeypatch):
    monkeypatch.setattr(V, "provenance", lambda path=None: {"git_dirty": True})
    V._check_clean("quick", False, None)             # results/quick/ is not the committed set
    V._check_clean("full", False, str(tmp_path))      # an explicit results dir is not either
    monkeypatch.setattr(V, "provenance", lambda path=None: {"git_dirty": False})
    V._check_clean("full", False, None)


# ------------------------------------------------------------------------------------ check
def test_baselines_hold_every_claim_and_number(baselines):
    data = json.loads((baselines / V.BASELINES_FILE).read_text())
    assert "_about" in data
    entry = data["verify_fixture"]
    assert entry["claims"] == {"fixture.rate|hadamard|2": C.CONSISTENT,
                               "fixture.bias|all|2": C.CONSISTENT}
    assert set(entry["keys"]) == {"fixture.rate.hadamard.d2.alpha_d", "fixture.bias.all.d2.slope",
                                  "fixture.bias.all.d2.gain"}
    for key, ref in entry["keys"].items():
        assert ref["n_seeds"] == 2 and len(ref["seed_values"]) == 2
        assert ref["value"] == ref["seed_values"][0]            # the canonical run is seed 0
        assert ref["tol"] >= min(V.TOL_SIGMAS * ref["std"], V.TOL_CAP * abs(ref["value"])) - 1e-15
        assert ref["tol"] <= V.TOL_CAP * abs(ref["value"])
        assert ref["in_band"] and ref["halfwidth_ok"], key
    alpha = entry["keys"]["fixture.rate.hadamard.d2.alpha_d"]
    assert alpha["band"] == pytest.approx([-0.6, -0.4]) and alpha["predicted"] == -0.5
    gain = entry["keys"]["fixture.bias.all.d2.gain"]
    assert gain["band"] == pytest.approx([0.8, 1.25])


def test_check_passes_on_unchanged_code(baselines, verified, tmp_path):
    lines = []
    assert V.check(results_root=str(baselines), experiments=EXP, quiet=True, out=lines.append,
                   keep=str(tmp_path / "kept")) == []
    assert lines[-1].startswith("check passed: 2 claim verdicts unchanged, 3 numbers")
    assert (tmp_path / "kept" / "verify_fixture.csv").exists()       # keep= leaves the run
    # the finished quick run of verify (seed 0) is the same run
    assert V.check(results_root=str(baselines), experiments=EXP, from_dir=str(verified[0]),
                   out=quiet) == []


def test_check_catches_a_decoder_constant_off_by_2(baselines, monkeypatch):
    import sketchsim.decode

    monkeypatch.setattr(sketchsim.decode, "depth_constant", broken_depth_constant)
    lines = []
    problems = V.check(results_root=str(baselines), experiments=EXP, quiet=True, out=lines.append)
    assert ("verify_fixture: claim fixture.bias|all|2 is now not consistent (baseline: consistent)"
            in problems), problems
    assert ("verify_fixture: claim fixture.rate|hadamard|2 is now not consistent "
            "(baseline: consistent)" in problems), problems
    assert any(p.startswith("verify_fixture: fixture.bias.all.d2.slope = 0.5") for p in problems)
    assert any("fixture.bias.all.d2.gain" in p and "left its theory band [0.8, 1.25]" in p
               for p in problems), problems
    assert lines[0].startswith(f"check FAILED: {len(problems)} problem(s) among 2 claims and 3 "
                               "numbers")


def test_check_from_a_run_with_the_broken_decoder(baselines, tmp_path, monkeypatch):
    import sketchsim.decode

    monkeypatch.setattr(sketchsim.decode, "depth_constant", broken_depth_constant)
    V.verify("quick", results_dir=str(tmp_path), experiments=EXP, quiet=True, out=quiet)
    monkeypatch.undo()
    problems = V.check(results_root=str(baselines), experiments=EXP, from_dir=str(tmp_path),
                       out=quiet)
    assert any("claim fixture.bias|all|2 is now not consistent" in p for p in problems)
    with pytest.raises(ValueError, match="results of 'verify_fixture' must exist"):
        V.check(results_root=str(baselines), experiments=EXP, from_dir=str(tmp_path / "nope"),
                out=quiet)


def test_check_of_a_study_without_baselines_fails(tmp_path, monkeypatch):
    (tmp_path / V.BASELINES_FILE).write_text(json.dumps({"other": {"claims": {}, "keys": {}}}))

    def no_run(*a, **k):
        raise AssertionError("a study without baselines is not run")

    monkeypatch.setattr(V, "_quick_run", no_run)
    problems = V.check(results_root=str(tmp_path), experiments=EXP, out=quiet)
    assert problems == [f"verify_fixture: no baselines in {tmp_path / V.BASELINES_FILE} (add them "
                        "with `sketchsim check --update-baselines --experiments verify_fixture`)"]


def test_check_without_baselines_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"baselines must exist for `sketchsim check`: .* is "
                                         r"missing \(create it with `sketchsim check "
                                         r"--update-baselines`\)"):
        V.check(results_root=str(tmp_path), out=quiet)


def test_explain_lists_every_number(baselines):
    lines = []
    V.explain(str(baselines), out=lines.append)
    text = "\n".join(lines)
    assert "claim fixture.bias|all|2: consistent" in text
    assert "fixture.rate.hadamard.d2.alpha_d:" in text and "theory band [-0.6, -0.4]" in text
    assert "power yes" in text and "power NO" not in text


def test_update_baselines_for_some_experiments_keeps_the_others(tmp_path, monkeypatch):
    root = tmp_path / "root"
    root.mkdir()
    other = {"claims": {"a|haar|2": "consistent"}, "keys": {}}
    (root / V.BASELINES_FILE).write_text(json.dumps({"_about": "old", "other_study": other}))
    estimates = iter([1.0, 1.1, 0.9])

    def fake_quick_run(seed, rdir, jobs, executor, quiet, experiments):
        t = {"estimate": next(estimates), "band": [0.8, 1.25], "predicted": 1.0, "tol": 0.22,
             "verdict": C.CONSISTENT, "label": "gain", "claim": "g|all|2"}
        return {"verify_fixture": {"claims": {"g|all|2": C.CONSISTENT}, "keys": {"g.all.d2.gain": t}}}

    monkeypatch.setattr(V, "_quick_run", fake_quick_run)
    V.update_baselines(n_seeds=3, results_root=str(root), experiments=EXP, out=quiet)
    data = V.load_baselines(str(root))
    assert data["other_study"] == other
    ref = data["verify_fixture"]["keys"]["g.all.d2.gain"]
    assert ref["value"] == 1.0 and ref["seed_values"] == [1.0, 1.1, 0.9]
    assert ref["std"] == pytest.approx(0.1) and ref["tol"] == pytest.approx(0.4)
    assert ref["in_band"] and ref["halfwidth_ok"] and ref["n_seeds"] == 3


# ------------------------------------------------------------------------------------ compare
def _ref(value, tol, band, in_band=True):
    return {"value": value, "tol": tol, "std": tol / 4, "n_seeds": 4, "band": band,
            "in_band": in_band}


BASE = {"e": {"claims": {"c|haar|2": "consistent", "c|all|-": "inconclusive"},
              "keys": {"c.haar.d2.alpha": _ref(-0.5, 0.05, [-0.6, -0.4]),
                       "c.haar.d2.ratio": _ref(1.0, 0.3, [0.8, 1.25]),
                       "c.all.d-.slope": _ref(0.4, 0.1, [0.9, 1.1], in_band=False)}}}


def _current(alpha=-0.5, ratio=1.0, slope=0.4, claims=None, drop=()):
    keys = {"c.haar.d2.alpha": {"estimate": alpha}, "c.haar.d2.ratio": {"estimate": ratio},
            "c.all.d-.slope": {"estimate": slope}}
    cl = {"c|haar|2": "consistent", "c|all|-": "inconclusive", **(claims or {})}
    return {"e": {"claims": {k: v for k, v in cl.items() if k not in drop},
                  "keys": {k: v for k, v in keys.items() if k not in drop}}}


def test_compare_passes_within_tolerance():
    assert V.compare(BASE, _current()) == []
    assert V.compare(BASE, _current(alpha=-0.46, ratio=1.2, slope=0.49)) == []
    # new claims or numbers are not problems (the baselines are updated to cover them)
    cur = _current()
    cur["e"]["claims"]["new|haar|2"] = "not consistent"
    assert V.compare(BASE, cur) == []


def test_compare_reports_changed_verdicts_and_missing_claims():
    probs = V.compare(BASE, _current(claims={"c|haar|2": "not consistent"}))
    assert probs == ["e: claim c|haar|2 is now not consistent (baseline: consistent)"]
    probs = V.compare(BASE, _current(drop=("c|all|-",)))
    assert probs == ["e: claim c|all|- is now missing (baseline: inconclusive)"]
    assert V.compare(BASE, {}) == ["e: no current results"]


def test_compare_reports_missing_and_moved_numbers():
    probs = V.compare(BASE, _current(drop=("c.haar.d2.alpha",)))
    assert probs == ["e: c.haar.d2.alpha is missing from the current claims"]
    probs = V.compare(BASE, _current(alpha=-0.44))                 # moved, still in band
    assert len(probs) == 1 and probs[0].startswith("e: c.haar.d2.alpha = -0.44, baseline -0.5 ± 0.05")
    assert "over 4 seeds" in probs[0]
    probs = V.compare(BASE, _current(slope=0.6))                   # moved; band not held before
    assert len(probs) == 1 and "c.all.d-.slope = 0.6, baseline 0.4" in probs[0]
    probs = V.compare(BASE, _current(alpha=None))                  # no estimate any more
    assert probs == ["e: c.haar.d2.alpha = None (baseline -0.5)"]


def test_compare_reports_numbers_leaving_their_theory_band():
    # within the regression tolerance (0.3) but outside the band [0.8, 1.25] it was inside
    probs = V.compare(BASE, _current(ratio=1.28))
    assert probs == ["e: c.haar.d2.ratio = 1.28 left its theory band [0.8, 1.25]"]
    probs = V.compare(BASE, _current(alpha=-0.7))                  # moved and left the band
    assert len(probs) == 2 and "left its theory band [-0.6, -0.4]" in probs[1]
    assert V.compare(BASE, _current(ratio=math.inf))[-1].endswith("left its theory band [0.8, 1.25]")


def test_tolerance_rule():
    # max(4σ, 2 %·|v|), capped at half the value
    assert V._tolerance(1.0, 0.01, {"predicted": 1.0, "tol": 0.2}) == pytest.approx(0.04)
    assert V._tolerance(1.0, 0.001, {"predicted": 1.0, "tol": 0.2}) == pytest.approx(0.02)
    assert V._tolerance(1.0, 1.0, {"predicted": 1.0, "tol": 0.2}) == pytest.approx(0.5)
    # a number predicted to be 0 is capped at its theory band
    assert V._tolerance(0.01, 1.0, {"predicted": 0.0, "tol": 0.05}) == pytest.approx(0.05)


# ------------------------------------------------------------------------------------ CLI
def test_cli_run_and_errors(tmp_path, capsys):
    from sketchsim.cli import main

    assert main(["run", "_verify_fixture_exp", "--results-dir", str(tmp_path), "--grid",
                 "d_sketch=1024", "--reps", "1", "--quiet"]) == 0
    assert (tmp_path / "verify_fixture.csv").exists()
    assert main(["run", "no_such_experiment", "--results-dir", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sketchsim run: error:")
    assert main(["run", "_verify_fixture_exp", "--results-dir", str(tmp_path), "--grid", "nope=1",
                 "--quiet"]) == 2
    assert "nope" in capsys.readouterr().err


def test_table_provenance_counts_runs_per_commit_and_dirty_flag():
    import pandas as pd

    df = pd.DataFrame({"git_commit": ["b" * 40, "a" * 40, "a" * 40, "a" * 40],
                       "git_dirty": [False, True, True, False]})
    assert V.table_provenance(df) == [("a" * 40, True, 2), ("a" * 40, False, 1), ("b" * 40, False, 1)]
    assert V.table_provenance(df.iloc[:0]) == []
    lines = V._provenance_lines([(types.SimpleNamespace(NAME="x"), df, [])])
    text = "\n".join(lines)
    assert "0 of 1 tables come from a single clean commit" in text and "2 commit(s)" in text
    assert "| x | 4 | – | aaaaaaaaaa (dirty tree): 2 runs; aaaaaaaaaa: 1 runs; bbbbbbbbbb: 1 runs |" in text
    timed = df.assign(time_s=[30.0, 60.0, 90.0, 120.0])           # Σ = 300 s = 5.0 min
    assert "| x | 4 | 5.0 | aaaaaaaaaa (dirty tree)" in "\n".join(
        V._provenance_lines([(types.SimpleNamespace(NAME="x"), timed, [])]))
    # outside a git checkout (e.g. the mutation suite's copy) a run records no commit: NaN after the
    # CSV round trip, on every pandas (string dtypes keep it missing)
    for col in (pd.Series([float("nan"), "c" * 40], dtype=object),
                pd.Series([None, "c" * 40], dtype="string")):
        df2 = pd.DataFrame({"git_commit": col, "git_dirty": [float("nan"), "False"]})
        assert V.table_provenance(df2) == [("(no git commit)", True, 1), ("c" * 40, False, 1)]
    assert V.table_provenance(pd.DataFrame({"git_commit": ["d" * 40]})) == [("d" * 40, True, 1)]


def test_timing_line_hides_wall_times_of_resumed_studies():
    comp = [(types.SimpleNamespace(NAME=n), None, []) for n in ("a", "b", "c")]
    timing = {"wall_s": 100.0, "jobs": 2, "executor": "processes",
              "per_experiment_s": {"a": 10.0, "b": 20.0, "c": 30.0}}
    fresh = {"a": {"n_runs": 5, "done": 5, "cached": 0}, "b": {"n_runs": 4, "done": 4, "cached": 0}}
    (line,) = V._timing_lines(timing, fresh, comp)
    assert line == ("Sweep wall time of the last `sketchsim verify`: 100 s with 2 job(s), executor "
                    "processes (a 10 s, b 20 s, c 30 s).")
    resumed = {"a": {"n_runs": 5, "done": 2, "cached": 3}, "b": {"n_runs": 4, "done": 0, "cached": 4},
               "c": {"n_runs": 6, "done": 6, "cached": 0}}
    (line,) = V._timing_lines(timing, resumed, comp)
    assert "(c 30 s)." in line and "a 10 s" not in line and "b 20 s" not in line
    assert "7 of the 15 runs were computed before it started (a 3, b 4)" in line
    assert V._timing_lines(None, resumed, comp) == []


def test_last_verify_time_flags_a_resumed_verify_and_sums_the_run_times(tmp_path):
    import json

    assert V.last_verify_time(str(tmp_path)) is None
    (tmp_path / "verify_timing.json").write_text(json.dumps(
        {"wall_s": 50.0, "jobs": 2, "executor": "processes", "per_experiment_s": {"a": 30.0, "b": 20.0}}))
    for name, sweep, times in (("a", {"n_runs": 3, "done": 3, "cached": 0}, "1.5,2.5,4.0"),
                               ("b", {"n_runs": 2, "done": 0, "cached": 2}, "10.0,20.0")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "last_sweep.json").write_text(json.dumps(sweep))
        (tmp_path / f"{name}.csv").write_text("run_id,time_s\n" + "\n".join(
            f"r{k},{t}" for k, t in enumerate(times.split(","))) + "\n")
    t = V.last_verify_time(str(tmp_path))
    assert t == {"wall_s": 50.0, "jobs": 2, "n_runs": 5, "cached_runs": 2, "run_time_s": 38.0}


def test_power_summary_names_the_claims_without_a_powered_number():
    from sketchsim.harness.verify import power_summary

    base = {"a": {"keys": {"k1": {"claim": "c1|haar|2", "halfwidth_ok": True},
                           "k2": {"claim": "c1|haar|2", "halfwidth_ok": False},
                           "k3": {"claim": "c2|gaussian|3", "halfwidth_ok": False}}},
            "b": {"keys": {"k4": {"claim": "c3|-|-", "halfwidth_ok": False},
                           "k5": {"claim": "c3|-|-", "halfwidth_ok": False}}}}
    lines = power_summary(base)
    assert "power: 1 of 5 checked numbers have it; 1 of 3 claims" in lines[1]
    assert lines[2].endswith(": c2|gaussian|3, c3|-|-")
