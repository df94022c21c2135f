"""verify / report / figures / check orchestration, on a tiny complete fixture experiment."""
import json
import os
import sys
from pathlib import Path

import pytest

from sketchsim.harness import verify as V

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

EXP = ["_verify_fixture_exp"]


def test_output_dirs():
    assert V.output_dirs("full") == ("results", "paper_figs")
    assert V.output_dirs("quick") == (os.path.join("results", "quick"), os.path.join("paper_figs", "quick"))


def test_verify_writes_csv_figures_and_report(tmp_path):
    rdir, fdir = tmp_path / "results", tmp_path / "figs"
    V.verify("quick", results_dir=str(rdir), figures_dir=str(fdir), experiments=EXP, quiet=True,
             out=lambda *a: None)
    assert (rdir / "verify_fixture.csv").exists()
    assert (fdir / "verify_fixture.png").exists()
    report = (rdir / "REPORT.md").read_text()
    assert "Fixture — Theorem 1(i) at depth 2" in report and "verdict" in report
    assert "> Attribute recovery" in report
    assert "../figs/verify_fixture.png" in report          # figure links relative to the report


def _baselines(tmp_path):
    root = tmp_path / "results"
    V.update_baselines(n_seeds=2, results_root=str(root), experiments=EXP, quiet=True, out=lambda *a: None)
    return root


def test_check_passes_on_unchanged_code_and_catches_a_wrong_decoder_constant(tmp_path, monkeypatch):
    root = _baselines(tmp_path)
    data = json.loads((root / "baselines.json").read_text())
    entry = data["verify_fixture"]["log_c"]
    assert entry["tol"] >= 4 * entry["std"] and entry["n_seeds"] == 2
    assert V.check(results_root=str(root), experiments=EXP, quiet=True, out=lambda *a: None) == []
    # a decoder whose depth constant is off by 2: the fitted constant moves by log 2
    import sketchsim.decode

    monkeypatch.setattr(sketchsim.decode, "depth_constant", lambda h: 2.0 ** (-(4 * h - 3)) * 2)
    problems = V.check(results_root=str(root), experiments=EXP, quiet=True, out=lambda *a: None)
    assert any("log_c" in p and "verify_fixture" in p for p in problems), problems


def test_compare_reports_missing_and_moved_numbers():
    base = {"e": {"a": {"value": 1.0, "tol": 0.1, "std": 0.02, "n_seeds": 4, "figure": "f.png"},
                  "b": {"value": 0.0, "tol": 0.1, "std": 0.02, "n_seeds": 4}}}
    assert V.compare(base, {"e": {"a": 1.05, "b": 0.0}}) == []
    probs = V.compare(base, {"e": {"a": 1.5}})
    assert len(probs) == 2 and "f.png" in probs[0] and "missing" in probs[1]
    assert V.compare(base, {"e": {"a": float("nan"), "b": 0.0}})


def test_check_without_baselines_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="baselines must exist"):
        V.check(results_root=str(tmp_path), out=lambda *a: None)


def test_report_requires_results(tmp_path):
    with pytest.raises(ValueError, match="results of 'verify_fixture' must exist"):
        V.write_report(str(tmp_path), str(tmp_path), experiments=EXP, out=lambda *a: None)


def test_cli_run_and_errors(tmp_path, capsys):
    from sketchsim.cli import main

    assert main(["run", "_verify_fixture_exp", "--results-dir", str(tmp_path), "--grid", "d_sketch=1024",
                 "--reps", "1", "--quiet"]) == 0
    assert (tmp_path / "verify_fixture.csv").exists()
    assert main(["run", "no_such_experiment", "--results-dir", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sketchsim run: error:")
    assert main(["run", "_verify_fixture_exp", "--results-dir", str(tmp_path), "--grid", "nope=1", "--quiet"]) == 2
    assert "nope" in capsys.readouterr().err
