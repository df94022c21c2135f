"""CLI contract: array names of `sketchsim sketch`, `sketchsim matrix`, and CLI ≡ API."""
import json
import subprocess
import sys

import numpy as np
import pytest

import sketchsim as ss
from sketchsim.cli import main


@pytest.fixture
def graph_file(tmp_path):
    g = ss.random_network(depth=3, fan_in=(1, 3), share_prob=0.3, attr_dim=(2, 4), random_state=12)
    p = tmp_path / "graph.json"
    g.to_json(p)
    return p, g


@pytest.mark.parametrize("family,flags", [
    ("haar", ["--d-sketch", "32"]),
    ("gaussian", ["--d-sketch", "32"]),
    ("hadamard", ["--d-sketch", "64"]),
    ("block-sparse", ["--d-sketch", "96", "--block-size", "48", "--block-prob", "0.5"]),
])
def test_sketch_command_writes_contract_arrays_identical_to_api(tmp_path, graph_file, family, flags):
    path, g = graph_file
    out = tmp_path / "s.npz"
    assert main(["sketch", str(path), "--family", family, "--seed", "5", *flags, "--out", str(out),
                 "--dump-matrices"]) == 0
    z = np.load(out)
    kw = {}
    if family == "block-sparse":
        kw = {"block_size": 48, "block_prob": 0.5}
    bank = ss.MatrixBank(int(flags[1]), family, 5, **kw)
    g2 = ss.Graph.from_json(path)
    np.testing.assert_array_equal(z["overall"], ss.sketch(g2, bank))
    objs = ss.sketch_objects(g2, bank)
    assert sorted(k for k in z.files if k.startswith("object/")) == sorted(f"object/{o}" for o in g.ids)
    for oid, s in objs.items():
        np.testing.assert_array_equal(z[f"object/{oid}"], s)
    expected = {f"matrix/tuple/{i}" for i in range(1, max(2, g.max_fan_in) + 1)}
    expected |= {f"matrix/module/{m}/{k}" for m in g.modules for k in range(3)}
    assert {k for k in z.files if k.startswith("matrix/")} == expected
    for name in expected:
        np.testing.assert_array_equal(z[name], bank.dense(name[len("matrix/"):]))


def test_sketch_without_dump_has_no_matrices(tmp_path, graph_file):
    path, _ = graph_file
    out = tmp_path / "s.npz"
    assert main(["sketch", str(path), "--family", "haar", "--seed", "1", "--d-sketch", "16", "--out", str(out)]) == 0
    assert not [k for k in np.load(out).files if k.startswith("matrix/")]


def test_matrix_command_equals_bank(tmp_path):
    out = tmp_path / "R.npy"
    assert main(["matrix", "--family", "block-sparse", "--d-sketch", "96", "--seed", "3", "--block-size", "48",
                 "--block-prob", "0.25", "--out", str(out)]) == 0
    bank = ss.MatrixBank(96, "block-sparse", 3, block_size=48, block_prob=0.25)
    np.testing.assert_array_equal(np.load(out), bank.dense("tuple/1"))
    out2 = tmp_path / "R2.npy"
    assert main(["matrix", "--family", "hadamard", "--d-sketch", "32", "--seed", "3", "--name", "module/cat/2",
                 "--out", str(out2)]) == 0
    np.testing.assert_array_equal(np.load(out2), ss.MatrixBank(32, "hadamard", 3).dense("module/cat/2"))


def test_graph_json_roundtrip(tmp_path, graph_file):
    path, g = graph_file
    g2 = ss.Graph.from_json(path)
    assert g2.to_dict() == g.to_dict()
    assert json.loads(path.read_text())["output"]


def test_console_script_and_module_entry_point(tmp_path, graph_file):
    path, _ = graph_file
    out = tmp_path / "s.npz"
    r = subprocess.run([sys.executable, "-m", "sketchsim", "sketch", str(path), "--family", "gaussian", "--seed", "0",
                        "--d-sketch", "16", "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert out.exists()


def test_demo_quick_runs_and_recovers_at_large_d(capsys):
    from sketchsim.demo import run_demo

    rows = run_demo(seed=0, quick=True, out=lambda *a: None)
    assert [r["family"] for r in rows] == list(ss.FAMILIES)
    had = rows[-1]
    # at d = 2^14 the ℓ∞ error is a few noise units and the wall count rounds to 2
    assert had["err_cat"] < 5 * had["noise_cat"]
    assert round(had["walls"]) == 2


# ------------------------------------------------------------------------------------ verification suite
FIXTURE = "_verify_fixture_exp"  # tests/_verify_fixture_exp.py: a tiny complete study


@pytest.fixture
def fixture_on_path(monkeypatch):
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent))


def test_verify_report_figures_and_check_commands(tmp_path, capsys, monkeypatch, fixture_on_path):
    res, base = tmp_path / "res", tmp_path / "base"
    assert main(["verify", "--experiments", FIXTURE, "--results-dir", str(res), "--quiet"]) == 0
    for f in ("verify_fixture.csv", "verdicts.json", "REPORT.md", "figures/verify_fixture.png"):
        assert (res / f).exists(), f
    doc = json.loads((res / "verdicts.json").read_text())
    assert doc["profile"] == "quick" and {c["claim"] for c in doc["claims"]} == {"fixture.rate",
                                                                                  "fixture.bias"}
    (res / "REPORT.md").unlink()
    assert main(["report", "--experiments", FIXTURE, "--results-dir", str(res)]) == 0
    assert "fixture.bias" in (res / "REPORT.md").read_text()
    assert main(["figures", "--experiments", FIXTURE, "--results-dir", str(res), "--figures-dir",
                 str(tmp_path / "figs")]) == 0
    assert (tmp_path / "figs" / "verify_fixture.png").exists()

    assert main(["check", "--update-baselines", "--spread-seeds", "2", "--experiments", FIXTURE,
                 "--baselines-dir", str(base), "--quiet"]) == 0
    assert (base / "baselines.json").exists()
    capsys.readouterr()
    assert main(["check", "--experiments", FIXTURE, "--baselines-dir", str(base), "--from",
                 str(res)]) == 0
    assert "check passed: 2 claim verdicts unchanged, 3 numbers" in capsys.readouterr().out
    assert main(["check", "--explain", "--baselines-dir", str(base)]) == 0
    out = capsys.readouterr().out
    assert "claim fixture.bias|all|2: consistent" in out and "power yes" in out

    # a decoder constant off by 2: the verdicts change and `check --from` exits 1
    import sketchsim.decode

    broken = tmp_path / "broken"
    with monkeypatch.context() as m:
        m.setattr(sketchsim.decode, "depth_constant", lambda h: 2.0 ** (-(4 * h - 3)) * 2)
        assert main(["verify", "--experiments", FIXTURE, "--results-dir", str(broken),
                     "--quiet"]) == 0
    bias = [c for c in json.loads((broken / "verdicts.json").read_text())["claims"]
            if c["claim"] == "fixture.bias"]
    assert [c["verdict"] for c in bias] == ["not consistent"]
    capsys.readouterr()
    assert main(["check", "--experiments", FIXTURE, "--baselines-dir", str(base), "--from",
                 str(broken)]) == 1
    cap = capsys.readouterr()
    assert "check FAILED" in cap.out and "claim fixture.bias|all|2 is now not consistent" in cap.out
    assert cap.err.startswith("sketchsim check: ") and "problem(s)" in cap.err


@pytest.mark.parametrize("argv, message", [
    (["check", "--from", "no/such/dir", "--baselines-dir", "."],
     "--from must be a directory holding a finished quick run"),
    (["check", "--update-baselines", "--spread-seeds", "1"], "--spread-seeds must be >= 2; got 1"),
    (["check", "--baselines-dir", "{tmp}"], "baselines must exist for `sketchsim check`"),
    (["check", "--explain", "--baselines-dir", "{tmp}"], "baselines must exist"),
    (["verify", "--experiments", " , ", "--results-dir", "{tmp}"], "--experiments must list"),
    (["verify", "--experiments", "no_such_study", "--results-dir", "{tmp}"],
     "unknown experiment 'no_such_study'"),
    (["report", "--experiments", FIXTURE, "--results-dir", "{tmp}"],
     "results of 'verify_fixture' must exist"),
])
def test_verification_command_errors_are_one_line(tmp_path, capsys, fixture_on_path, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"sketchsim {argv[0]}: error: ") and message in err[0]


def test_verify_full_refuses_a_dirty_tree(tmp_path, capsys, monkeypatch, fixture_on_path):
    from sketchsim.harness import verify as V

    monkeypatch.setattr(V, "provenance", lambda path=None: {"git_dirty": True})
    monkeypatch.chdir(tmp_path)
    assert main(["verify", "--profile", "full", "--experiments", FIXTURE, "--quiet"]) == 2
    assert "refuses a dirty tree" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_sketch_command_with_implicit_storage_equals_stored(tmp_path, graph_file):
    """--storage implicit gives the same matrices as the stored default (one draw of D(b, q, d)),
    hence the same sketch to rounding; a storage for another family is a clear error (exit 2)."""
    path, _ = graph_file
    bs = ["--family", "block-sparse", "--seed", "5", "--d-sketch", "96", "--block-size", "48", "--block-prob", "0.5"]
    outs = {}
    for storage in ("stored", "implicit"):
        outs[storage] = tmp_path / f"{storage}.npz"
        assert main(["sketch", str(path), *bs, "--storage", storage, "--out", str(outs[storage]),
                     "--dump-matrices"]) == 0
    a, b = np.load(outs["stored"]), np.load(outs["implicit"])
    for name in (k for k in a.files if k.startswith("matrix/")):
        np.testing.assert_array_equal(a[name], b[name])
    np.testing.assert_allclose(a["overall"], b["overall"], rtol=1e-12, atol=1e-15)
    r = subprocess.run([sys.executable, "-m", "sketchsim", "sketch", str(path), "--family", "haar", "--seed", "1",
                        "--d-sketch", "16", "--storage", "implicit", "--out", str(tmp_path / "x.npz")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "storage applies only to family 'block-sparse'" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "x.npz").exists()
