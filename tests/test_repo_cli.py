"""`sketchsim repo build|query|stats|age`: happy paths and refused inputs (exit 2, one line, nothing lost)."""
import json
import os

import pytest

from sketchsim.cli import main

BUILD = ["--seed", "0", "--d-sketch", "256", "--family", "hadamard"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    d = tmp_path_factory.mktemp("repo")
    cwd = os.getcwd()
    os.chdir(d)                      # the digit network's cache lives under ./results/cache/scenes
    try:
        path = str(d / "r.sketchrepo")
        assert main(["repo", "build", path, "--scenes", "12", "--objects"] + BUILD) == 0
    finally:
        os.chdir(cwd)
    return path


def _state(path):
    from sketchsim.repository import SketchRepository

    with SketchRepository.open(path, readonly=True) as r:
        ids = r.select(kind=None)
        return len(ids), r.nbytes, [r.record(i).keep for i in ids]


def _refused(capsys, argv, words):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    for w in words:
        assert w in err[0], err[0]
    return err[0]


def test_build_query_stats(built, capsys):
    capsys.readouterr()
    n, _, keeps = _state(built)
    assert n > 12 and set(keeps) == {256}
    assert main(["repo", "query", built, "--scene", "0", "--k", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[0].split("\t") == ["scene-0", "1.0000"]
    assert main(["repo", "query", built, "--scene", "1", "--where", "n_digits=4"]) == 0
    assert main(["repo", "stats", built, "--module", "digit-7", "--depth", "3", "--weight", "0.25"]) == 0
    out = capsys.readouterr().out
    assert "12 overall" in out and "summary of digit-7" in out and "count ≈" in out


def test_build_graphs_and_query_graph(tmp_path, capsys):
    g = {"objects": [{"id": "a", "module": "A", "attributes": [1.0, 0.0]}], "output": [{"id": "a", "weight": 1.0}]}
    (tmp_path / "gs").mkdir()
    for k in range(3):
        g["objects"][0]["attributes"] = [(1.0 - 0.09 * k * k) ** 0.5, 0.3 * k]
        (tmp_path / "gs" / f"g{k}.json").write_text(json.dumps(g))
    path = str(tmp_path / "g.sketchrepo")
    assert main(["repo", "build", path, "--graphs", str(tmp_path / "gs")] + BUILD) == 0
    assert main(["repo", "query", path, "--graph", str(tmp_path / "gs" / "g0.json"), "--k", "1"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("g0\t1.0000")


def test_age(tmp_path, built, capsys):
    import shutil

    path = str(tmp_path / "a.sketchrepo")
    shutil.copy(built, path)
    assert main(["repo", "age", path, "--keep", "0.25"]) == 0
    assert "→" in capsys.readouterr().out
    n, _, keeps = _state(path)
    assert set(keeps) == {64}


@pytest.mark.parametrize("argv, words", [
    (["query", "{repo}", "--scene", "0", "--k", "0"], ["--k", "0"]),
    (["query", "{repo}", "--scene", "0", "--where", "novalue"], ["--where", "KEY=VALUE", "novalue"]),
    (["stats", "{repo}", "--module", "digit-x"], ["--module", "digit-x"]),
    (["age", "{repo}", "--keep", "0.25", "--where", "=3"], ["--where", "=3"]),
    (["age", "{repo}", "--keep", "1.5"], ["keep", "1.5"]),
    (["build", "{repo}", "--scenes", "2"] + BUILD, ["REPO", "must not exist"]),
])
def test_refused_inputs_leave_repository_unchanged(built, capsys, argv, words):
    before = _state(built)
    capsys.readouterr()
    _refused(capsys, ["repo"] + [a.replace("{repo}", built) for a in argv], words)
    assert _state(built) == before


def test_missing_repository(tmp_path, capsys):
    for action in (["query", "--scene", "0"], ["stats"], ["age", "--keep", "0.5"]):
        missing = str(tmp_path / "nope.sketchrepo")
        _refused(capsys, ["repo", action[0], missing] + action[1:], ["REPO", "nope.sketchrepo", "does not exist"])
        assert not os.path.exists(missing)
