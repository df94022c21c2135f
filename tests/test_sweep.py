"""Tests of sketchsim.harness.sweep: grids, named seeds, shards, resume, failures, executors, SIGKILL.

The experiment under test is ``tests/_sweep_fixture_exp.py`` (NumPy statistics of draws from the
run's generator; switches ``SWEEP_FIXTURE_FAIL``, ``SWEEP_FIXTURE_SLEEP`` and
``SWEEP_FIXTURE_CRASH`` in the environment make runs fail, sleep or kill their worker).
"""
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
import types
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import _sweep_fixture_exp as fx  # noqa: E402

import sketchsim  # noqa: E402
from sketchsim.harness import sweep  # noqa: E402
from sketchsim.harness.sweep import (  # noqa: E402
    available_experiments, expand_grid, load_experiment, merge, parse_grid_overrides, plan_runs,
    read_results, run_id, run_seed, run_sweep)

N_QUICK = 3 * 2 * 2 * 2  # n × scale × kind × reps of the fixture's quick profile


@pytest.fixture(autouse=True)
def _clean_fixture_env(monkeypatch):
    for var in ("SWEEP_FIXTURE_FAIL", "SWEEP_FIXTURE_SLEEP", "SWEEP_FIXTURE_CRASH"):
        monkeypatch.delenv(var, raising=False)


def exact_columns(df):
    """Columns that must not depend on executor, worker count or timing."""
    return [c for c in df.columns
            if c in ("experiment", "run_id", "rep", "seed") or c[:2] in ("p_", "m_", "t_")]


def shard_state(shards_dir):
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in Path(shards_dir).glob("*.json")}


# ========================================================================= grids and overrides
def test_expand_grid_is_a_cartesian_product_in_grid_order():
    runs = expand_grid({"a": [1, 2], "b": ["x", "y", "z"], "c": 0.5, "reps": 4})
    assert len(runs) == 6
    assert runs[0] == {"a": 1, "b": "x", "c": 0.5}
    assert runs[1] == {"a": 1, "b": "y", "c": 0.5}  # last key varies fastest
    assert runs[-1] == {"a": 2, "b": "z", "c": 0.5}
    # a list of grids is the union of their products, without duplicates
    union = expand_grid([{"a": [1, 2]}, {"a": [2, 3]}, {"a": [1], "b": [True]}])
    assert union == [{"a": 1}, {"a": 2}, {"a": 3}, {"a": 1, "b": True}]
    # numpy scalars become plain Python values
    assert expand_grid({"a": np.array([1, 2])}) == [{"a": 1}, {"a": 2}]
    assert type(expand_grid({"a": [np.float64(0.5)]})[0]["a"]) is float


GRID = {"n": [8, 16], "q": [0.5, 1.0], "family": ["haar", "gaussian"], "flag": [True],
        "opt": [None, 3], "free": [None]}


@pytest.mark.parametrize("item, expected", [
    ("n=32,64", [32, 64]),
    ("n=1e3", [1000]),                     # integral float for an int parameter -> int
    ("n=0.5", [0.5]),                      # a non-integral value is kept as a float
    ("q=1, 0.25", [1.0, 0.25]),            # float parameter: "1" -> 1.0 (same seed as the grid)
    ("family=1,hadamard", ["1", "hadamard"]),  # string parameter stays a string
    ("flag=false,1", [False, True]),
    ("opt=none,2.5", [None, 2.5]),
    ("free=true,7,x,null", [True, 7, "x", None]),
])
def test_grid_override_values_are_parsed_like_the_profile(item, expected):
    got = parse_grid_overrides([item], GRID)
    key = item.split("=")[0]
    assert list(got) == [key]
    assert got[key] == expected
    assert [type(v) for v in got[key]] == [type(v) for v in expected]


def test_grid_override_replaces_values_and_keeps_the_rest():
    runs = expand_grid(GRID, ["n=32", "family=hadamard"])
    assert {r["n"] for r in runs} == {32}
    assert {r["family"] for r in runs} == {"hadamard"}
    assert len(runs) == 1 * 2 * 1 * 1 * 2 * 1
    assert parse_grid_overrides({"n": 5}, GRID) == {"n": [5]}
    assert parse_grid_overrides(None, GRID) == {}


@pytest.mark.parametrize("overrides, match", [
    (["zzz=1"], r"unknown parameter 'zzz'; valid keys: n, q, family, flag, opt, free"),
    ({"zzz": [1]}, r"unknown parameter 'zzz'"),
    (["n"], r"must look like key=v1,v2; got 'n'"),
    (["n="], r"needs nonempty comma-separated values"),
    (["n=1,,2"], r"needs nonempty comma-separated values"),
    (["n=1", "n=2"], r"'n' is given twice"),
    (["reps=3"], r"use reps=R \(--reps R\)"),
    (["n=4,4"], r"must not repeat a value"),
    (["1n=4"], r"must be parameter names"),
    (5, r"grid_overrides must be None, a list"),
])
def test_grid_override_errors(overrides, match):
    with pytest.raises(ValueError, match=match):
        parse_grid_overrides(overrides, GRID)


@pytest.mark.parametrize("grid, match", [
    ({"a": []}, r"grid\['a'\] must be a nonempty list"),
    ({"a": [[1]]}, r"must be None, a bool, an int, a float or a str; got \[1\]"),
    ({"1a": [1]}, r"parameter names must be Python identifiers; got '1a'"),
    ({"a": [1], "reps": 0}, r"grid\['reps'\] must be an integer >= 1; got 0"),
    ({"a": [1, 1.0]}, None),  # 1 and 1.0 are different values (different seeds)
    ([], r"nonempty list of such dicts"),
    ("a=1", r"must be a dict"),
])
def test_grid_validation(grid, match):
    if match is None:
        assert expand_grid(grid) == [{"a": 1}, {"a": 1.0}]
        return
    with pytest.raises(ValueError, match=match):
        expand_grid(grid)


# ========================================================================================= seeds
def test_run_seed_follows_the_documented_formula():
    digest = hashlib.sha256(b'[7,"sweep_fixture",{"kind":"normal","n":8},2]').digest()
    expected = int.from_bytes(digest[:8], "big") & (2**63 - 1)
    assert run_seed(7, "sweep_fixture", {"n": 8, "kind": "normal"}, 2) == expected
    # key order does not matter, value types do
    assert run_seed(0, "e", {"a": 1, "b": 2}, 0) == run_seed(0, "e", {"b": 2, "a": 1}, 0)
    assert run_seed(0, "e", {"a": 1}, 0) != run_seed(0, "e", {"a": 1.0}, 0)
    assert run_id("e", {"a": 1}, 0, 0) != run_id("e", {"a": 1}, 0, 1)
    assert len(run_id("e", {"a": 1}, 0, 0)) == 16


def test_seeds_are_stable_when_the_grid_grows_or_is_reordered():
    def mapping(runs):
        return {(json.dumps(r.params, sort_keys=True), r.rep): (r.seed, r.run_id) for r in runs}

    base = mapping(plan_runs(fx, "quick"))
    assert len(base) == N_QUICK
    seeds = [s for s, _ in base.values()]
    assert len(set(seeds)) == len(seeds) and all(0 <= s < 2**63 for s in seeds)
    grown = mapping(plan_runs(fx, "quick", ["n=99,8,13,50"], reps=3))
    assert len(grown) == 4 * 2 * 2 * 3
    assert base.items() <= grown.items()  # every existing run keeps its seed and run id
    reordered = mapping(plan_runs(fx, "quick", ["n=50,13,8", "kind=uniform,normal"]))
    assert reordered == base
    other = mapping(plan_runs(fx, "quick", seed=1))
    assert not {s for s, _ in other.values()} & set(seeds)
    for run in plan_runs(fx, "quick"):
        assert run.seed == run_seed(0, fx.NAME, run.params, run.rep)
        assert run.run_id == run_id(fx.NAME, run.params, run.rep, 0)


# ================================================================================== experiments
@pytest.fixture
def experiments_pkg(tmp_path, monkeypatch):
    """A throwaway top-level ``experiments`` package in a temporary cwd."""
    pkg = tmp_path / "experiments"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "alpha.py").write_text(textwrap.dedent("""
        NAME = "alpha"
        PROFILES = {"quick": {"x": [1, 2]}, "full": {"x": [1, 2, 3]}}
        def run_one(params, rng):
            return {"y": params["x"] + rng.random()}
    """))
    (pkg / "norun.py").write_text('NAME = "norun"\nPROFILES = {"quick": {"x": [1]}}\n')
    # run_one named in a string or a comment is not a definition (the old regex scan took it)
    (pkg / "helper.py").write_text('DOC = """\nrun_one = None\n"""\n# def run_one\n')
    (pkg / "noname.py").write_text("def run_one(params, rng):\n    return {}\n")
    # defined by assignment (e.g. re-exported from a shared module) is a definition
    (pkg / "gamma.py").write_text('from experiments.alpha import PROFILES, run_one\nNAME = "gamma"\n')
    (pkg / "needsdep.py").write_text("import not_a_real_module_xyz\ndef run_one(p, r): pass\n")
    (pkg / "_helpers.py").write_text("")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sweep, "_experiment_roots", lambda: [tmp_path])
    # first on sys.path: the installed `experiments` package (an editable install's finder
    # comes after sys.path) must not shadow the throwaway one
    monkeypatch.setattr(sys, "path", [str(tmp_path)] + [
        p for p in sys.path if not (Path(p or ".") / "experiments").is_dir()])
    def ours(k):
        return k == "experiments" or k.startswith("experiments.")

    saved = {k: v for k, v in sys.modules.items() if ours(k)}
    for k in saved:
        del sys.modules[k]
    yield pkg
    for k in [k for k in sys.modules if ours(k)]:
        del sys.modules[k]
    sys.modules.update(saved)


def test_load_experiment_by_bare_or_dotted_name(experiments_pkg):
    mod = load_experiment("alpha")
    assert mod.NAME == "alpha" and mod.__name__ == "experiments.alpha"
    assert load_experiment("experiments.alpha") is mod
    assert load_experiment(mod) is mod
    # found by importing: modules defining NAME, PROFILES and run_one
    assert available_experiments() == ["alpha", "gamma"]
    with pytest.raises(ValueError, match=r"unknown experiment 'beta': no module 'experiments.beta' "
                                         r"or 'beta'; available experiments: alpha, gamma; needsdep "
                                         r"cannot be imported \(ModuleNotFoundError: No module named "
                                         r"'not_a_real_module_xyz'\)$"):
        load_experiment("beta")
    with pytest.raises(ValueError, match=r"not a sketchsim experiment.*missing run_one"):
        load_experiment("norun")
    # a missing dependency of an existing experiment is not reported as an unknown experiment
    with pytest.raises(ModuleNotFoundError, match="not_a_real_module_xyz"):
        load_experiment("needsdep")
    # any importable module path works, and so does the fixture by its module name
    assert load_experiment("_sweep_fixture_exp") is fx


def _module(**attrs):
    mod = types.ModuleType("fake_experiment")
    base = {"NAME": "fake", "PROFILES": {"quick": {"a": [1]}}, "run_one": lambda p, r: {}}
    base.update(attrs)
    for k, v in base.items():
        if v is not None:
            setattr(mod, k, v)
    return mod


@pytest.mark.parametrize("attrs, match", [
    ({"NAME": "a/b"}, r"NAME of experiment module 'fake_experiment' must be a nonempty string"),
    ({"NAME": None}, r"missing NAME"),
    ({"PROFILES": {}}, r"PROFILES of .* must be a nonempty dict"),
    ({"PROFILES": {"quick": {"a": []}}}, r"PROFILES\['quick'\].*\['a'\] must be a nonempty list"),
    ({"run_one": 3}, r"run_one of .* must be callable"),
    ({"skip": "no"}, r"skip of .* must be callable when defined"),
])
def test_experiment_contract_is_checked(attrs, match):
    with pytest.raises(ValueError, match=match):
        load_experiment(_module(**attrs))


@pytest.mark.parametrize("value, match", [
    (42, r"experiment must be a module name or a module; got 42"),
    ("", r"experiment must be a module name"),
    ("a/b", r"experiment must be a module name"),
])
def test_load_experiment_rejects_bad_names(value, match):
    with pytest.raises(ValueError, match=match):
        load_experiment(value)


# ============================================================================ run_sweep arguments
@pytest.mark.parametrize("kwargs, match", [
    ({"profile": "huge"}, r"profile must be one of 'quick', 'full', 'union', 'kill' "
                          r"\(PROFILES of experiment 'sweep_fixture'\); got 'huge'"),
    ({"reps": 0}, r"reps must be None or an integer >= 1; got 0"),
    ({"reps": 1.5}, r"reps must be None or an integer >= 1; got 1.5"),
    ({"seed": -1}, r"seed must be a nonnegative integer; got -1"),
    ({"seed": "0"}, r"seed must be a nonnegative integer; got '0'"),
    ({"jobs": 0}, r"jobs must be an integer >= 1; got 0"),
    ({"executor": "threads"}, r"executor must be one of 'serial', 'processes', 'dask'; "
                              r"got 'threads'"),
    ({"executor": "serial", "jobs": 2}, r"jobs must be 1 with executor='serial'"),
    ({"scheduler": "tcp://h:1", "executor": "processes"},
     r"scheduler is only used by executor='dask'"),
    ({"scheduler": "no address here", "executor": "dask"}, r"scheduler must be an address"),
    ({"scheduler": "tcp://host-without-port", "executor": "dask"}, r"scheduler must be an addr"),
    ({"force": "yes"}, r"force must be True or False; got 'yes'"),
    ({"quiet": 1}, r"quiet must be True or False; got 1"),
    ({"grid_overrides": ["nope=1"]}, r"unknown parameter 'nope'; valid keys: n, scale, kind"),
])
def test_run_sweep_validates_its_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        run_sweep(fx, results_dir=tmp_path / "res", **{"quiet": True, **kwargs})
    assert not (tmp_path / "res" / "sweep_fixture" / "shards").exists() or not any(
        (tmp_path / "res" / "sweep_fixture" / "shards").iterdir())


def test_run_sweep_rejects_a_file_as_results_dir(tmp_path):
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(ValueError, match=r"results_dir must be a directory"):
        run_sweep(fx, results_dir=f, quiet=True)


# ==================================================================================== the rows
def test_serial_sweep_writes_one_exact_tidy_row_per_run(tmp_path):
    s = run_sweep(fx, results_dir=tmp_path, quiet=True)
    assert (s.n_runs, s.done, s.cached, s.skipped, s.failed) == (N_QUICK, N_QUICK, 0, 0, 0)
    assert s.ok and s.executor == "serial" and s.merged_path == tmp_path / "sweep_fixture.csv"
    assert len(list(s.shards_dir.glob("*.json"))) == N_QUICK
    assert not s.failures_path.exists()
    assert "24 runs: 24 done, 0 already finished, 0 failed" in str(s)

    df = read_results(fx, tmp_path)
    assert len(df) == N_QUICK and df["run_id"].is_unique
    assert list(df.columns[:10]) == ["experiment", "run_id", "p_n", "p_scale", "p_kind", "rep",
                                     "seed", "m_mean", "m_std", "m_max_abs"]
    for col in ("m_n_pos", "m_any_big", "m_proj_norm", "m_label", "t_std", "warnings", "time_s",
                "utc_time",
                "executor", "jobs", "numba_threads", "blas_threads", "sketchsim_version",
                "git_commit", "git_dirty", "numpy_version", "numba_version", "python_version",
                "platform"):
        assert col in df.columns, col
    assert (df["sketchsim_version"] == sketchsim.__version__).all()
    assert (df["numpy_version"] == np.__version__).all()
    assert (df["time_s"] >= 0).all() and (df["numba_threads"] >= 1).all()
    # deterministic order: by parameters, then repetition
    key = list(zip(df["p_n"], df["p_scale"], df["p_kind"], df["rep"]))
    assert key == sorted(key)
    # every row is exactly what run_one returns with np.random.default_rng(seed), through the CSV
    for row in df.itertuples(index=False):
        params = {"n": row.p_n, "scale": row.p_scale, "kind": row.p_kind}
        assert row.seed == run_seed(0, fx.NAME, params, row.rep)
        assert row.run_id == run_id(fx.NAME, params, row.rep, 0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = fx.run_one(dict(params), np.random.default_rng(row.seed))
        assert (row.m_mean, row.m_std, row.m_max_abs, row.m_n_pos, row.m_any_big,
                row.m_proj_norm, row.m_label) == (m["mean"], m["std"], m["max_abs"], m["n_pos"],
                                                  m["any_big"], m["proj_norm"], m["label"])
        assert row.t_std == fx.theory(params)["std"]
    # warnings raised by run_one are recorded (once per distinct message), not printed
    big = df["p_scale"] > 1
    assert (df.loc[big, "warnings"] == "UserWarning: scale 2.0 > 1 is outside the fixture's "
                                       "comfort zone").all()
    assert df.loc[~big, "warnings"].isna().all()
    # the DataFrame merge() builds from the JSON shards equals the CSV read back, exactly
    merged = merge(fx, tmp_path)
    pd.testing.assert_frame_equal(merged[exact_columns(merged)], df[exact_columns(df)],
                                  check_exact=True, check_dtype=False)
    shard = json.loads((s.shards_dir / f"{df['run_id'][0]}.json").read_text())
    assert shard["run_id"] == df["run_id"][0] and shard["seed"] == df["seed"][0]


AWKWARD = [  # metrics of run i of the round-trip experiment; None = missing
    {"f": -0.03754894278882337, "f_none": None, "i": 2**62 + 1, "i_none": 5, "b": True,
     "b_none": None, "s": "NA", "s_none": "x", "mix": 1},
    {"f": 1e-300, "f_none": 0.1 + 0.2, "i": -3, "i_none": None, "b": False, "b_none": True,
     "s": "None", "s_none": None, "mix": 2.5},
    {"f": 5e-324, "f_none": -0.0, "i": 0, "i_none": 2**62 + 3, "b": True, "b_none": False,
     "s": "007", "s_none": "nan", "mix": None},
    {"f": 2.2250738585072014e-308, "f_none": 123456789.12345679, "i": -(2**63) + 1, "i_none": 1,
     "b": False, "b_none": None, "s": "1e5", "s_none": "null", "mix": 3},
    {"f": 1.7976931348623157e308, "f_none": float("inf"), "i": 7, "i_none": None, "b": True,
     "b_none": None, "s": "a,b \"c\"\nd", "s_none": "True", "mix": -0.5},
]
ROUND_TRIP_TYPES = {"m_f": "float64", "m_f_none": "float64", "m_i": "int64", "m_i_none": "Int64",
                    "m_b": "bool", "m_b_none": "boolean", "m_s": "object", "m_s_none": "object",
                    "m_mix": "float64", "p_i": "int64", "p_tag": "object", "p_x": "float64"}


def _same(got, want):
    """Equal value and type; floats bit for bit; None/NaN/NA all mean missing."""
    if want is None:
        return got is None or got is pd.NA or (isinstance(got, float) and np.isnan(got))
    if isinstance(want, float):
        return isinstance(got, float) and np.float64(got).tobytes() == np.float64(want).tobytes()
    return type(got) is type(want) and got == want


def _values(df, col):
    """Python values of a column (numpy scalars unwrapped)."""
    return [v.item() if isinstance(v, np.generic) else v for v in df[col].tolist()]


def test_tables_round_trip_exactly_and_keep_their_types(tmp_path, monkeypatch):
    mod = types.ModuleType("round_trip_experiment")
    mod.NAME = "round_trip"
    mod.PROFILES = {"quick": [{"i": [0, 1], "tag": ["a", "None"]}, {"i": [2, 3, 4], "x": [0.1]}]}
    mod.run_one = lambda params, rng: dict(AWKWARD[params["i"]])
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    s = run_sweep(mod, results_dir=tmp_path, quiet=True)
    assert (s.done, s.failed) == (7, 0), s.failures
    schema = json.loads((tmp_path / "round_trip.schema.json").read_text())
    assert {k: schema[k] for k in ("m_f", "m_i", "m_i_none", "m_b", "m_b_none", "m_s", "m_mix",
                                   "p_tag", "p_x", "rep", "seed")} == {
        "m_f": "float", "m_i": "int", "m_i_none": "int", "m_b": "bool", "m_b_none": "bool",
        "m_s": "str", "m_mix": "float", "p_tag": "str", "p_x": "float", "rep": "int", "seed": "int"}
    read, merged = read_results(mod, tmp_path), merge(mod, tmp_path)
    for df in (read, merged):
        assert {c: str(df[c].dtype) for c in ROUND_TRIP_TYPES} == ROUND_TRIP_TYPES
        assert df["seed"].dtype == np.int64 and df["rep"].dtype == np.int64
        for row in range(len(df)):
            i = int(df["p_i"].iloc[row])
            for key, want in AWKWARD[i].items():
                if key == "mix" and want is not None:
                    want = float(want)  # ints mixed with floats are floats
                got = _values(df, f"m_{key}")[row]
                assert _same(got, want), (key, i, got, want)
        assert sorted(v for v in _values(df, "p_tag") if v is not None) == ["None", "None", "a",
                                                                               "a"]
        assert _values(df, "p_tag").count(None) == 3 and _values(df, "p_x").count(0.1) == 3
    pd.testing.assert_frame_equal(read[exact_columns(read)], merged[exact_columns(merged)],
                                  check_exact=True)


def test_a_table_without_schema_is_still_read(tmp_path):
    run_sweep(fx, results_dir=tmp_path, quiet=True, grid_overrides=["n=8"], reps=1)
    (tmp_path / "sweep_fixture.schema.json").unlink()
    df = read_results(fx, tmp_path)
    assert len(df) == 4 and df["m_n_pos"].dtype == np.int64


def test_resume_skips_finished_runs_and_force_redoes_them(tmp_path):
    first = run_sweep(fx, results_dir=tmp_path, quiet=True)
    before = shard_state(first.shards_dir)
    df1 = read_results(fx, tmp_path)

    again = run_sweep(fx, results_dir=tmp_path, quiet=True)
    assert (again.done, again.cached, again.failed) == (0, N_QUICK, 0)
    assert shard_state(first.shards_dir) == before  # not even rewritten

    more = run_sweep(fx, results_dir=tmp_path, quiet=True, reps=3)  # a new repetition only
    assert (more.done, more.cached) == (N_QUICK // 2, N_QUICK)

    forced = run_sweep(fx, results_dir=tmp_path, quiet=True, force=True)
    assert (forced.done, forced.cached) == (N_QUICK, 0)
    after = shard_state(first.shards_dir)
    assert all(after[k][0] != before[k][0] for k in before)  # every shard rewritten
    df2 = read_results(fx, tmp_path)
    assert len(df2) == N_QUICK  # the merged table holds exactly the latest sweep
    pd.testing.assert_frame_equal(df1[exact_columns(df1)], df2[exact_columns(df2)],
                                  check_exact=True)


def test_failures_are_recorded_never_sharded_and_retried(tmp_path, monkeypatch):
    monkeypatch.setenv("SWEEP_FIXTURE_FAIL", "13")
    s = run_sweep(fx, results_dir=tmp_path, quiet=True)
    n_fail = N_QUICK // 3
    assert (s.done, s.failed, s.ok) == (N_QUICK - n_fail, n_fail, False)
    assert {f["params"]["n"] for f in s.failures} == {13}
    assert s.failures[0]["error_type"] == "ValueError"
    log = pd.read_csv(s.failures_path)
    assert len(log) == n_fail and set(log["p_n"]) == {13}
    assert set(log["error_type"]) == {"ValueError"}
    assert log["error_message"].str.contains("fixture failure for n=13").all()
    assert log["traceback"].str.contains("run_one").all()
    assert (log["attempts"] == 1).all()
    failed_ids = set(log["run_id"])
    assert not failed_ids & {p.stem for p in s.shards_dir.glob("*.json")}
    assert 13 not in set(read_results(fx, tmp_path)["p_n"])

    s2 = run_sweep(fx, results_dir=tmp_path, quiet=True)  # still failing: retried, counted
    assert (s2.done, s2.cached, s2.failed) == (0, N_QUICK - n_fail, n_fail)
    assert (pd.read_csv(s2.failures_path)["attempts"] == 2).all()

    monkeypatch.delenv("SWEEP_FIXTURE_FAIL")
    s3 = run_sweep(fx, results_dir=tmp_path, quiet=True)  # fixed: retried and resolved
    assert (s3.done, s3.cached, s3.failed) == (n_fail, N_QUICK - n_fail, 0)
    assert not s3.failures_path.exists()
    assert {p.stem for p in s3.shards_dir.glob("*.json")} >= failed_ids
    assert len(read_results(fx, tmp_path)) == N_QUICK


def test_skip_and_union_profiles(tmp_path):
    s = run_sweep(fx, "full", reps=1, results_dir=tmp_path, quiet=True)
    assert s.n_runs == 4 * 3 * 3 and s.skipped == 4 * 3 and s.done == 4 * 3 * 2
    assert s.skip_reasons == {"kind 'skipme' is not implemented": 12}
    assert "skipme" not in set(read_results(fx, tmp_path)["p_kind"])

    u = run_sweep(fx, "union", results_dir=tmp_path / "u", quiet=True)
    assert (u.n_runs, u.done) == (5, 5)
    df = read_results(fx, tmp_path / "u")
    assert list(df.columns[2:5]) == ["p_n", "p_kind", "p_flag"]
    assert df["p_flag"].isna().sum() == 1  # the first grid has no 'flag'


def test_merge_all_shards_or_a_selection(tmp_path):
    a = run_sweep(fx, results_dir=tmp_path, quiet=True, seed=0)
    b = run_sweep(fx, results_dir=tmp_path, quiet=True, seed=1)
    assert b.done == N_QUICK  # a new base seed is a new set of runs
    assert len(read_results(fx, tmp_path)) == N_QUICK  # the latest sweep only
    everything = merge("sweep_fixture", tmp_path)  # by results name, all shards
    assert len(everything) == 2 * N_QUICK and set(everything["seed"]) >= set(
        read_results(fx, tmp_path)["seed"])
    assert len(read_results(fx, tmp_path)) == 2 * N_QUICK
    ids = sorted(p.stem for p in a.shards_dir.glob("*.json"))[:5]
    assert sorted(merge(fx, tmp_path, run_ids=ids + ["0" * 16])["run_id"]) == ids
    assert merge(fx, tmp_path / "empty").empty


# =================================================================================== executors
@pytest.mark.parametrize("executor", ["processes", "dask"])
def test_executors_give_bit_identical_results(tmp_path, monkeypatch, executor):
    if executor == "dask":
        pytest.importorskip("distributed")
    monkeypatch.setenv("SWEEP_FIXTURE_FAIL", "13")  # failures must agree too
    serial = run_sweep(fx, results_dir=tmp_path / "serial", quiet=True)
    other = run_sweep(fx, results_dir=tmp_path / executor, quiet=True, jobs=2, executor=executor)
    assert (other.done, other.failed, other.executor) == (serial.done, serial.failed, executor)
    a, b = read_results(fx, tmp_path / "serial"), read_results(fx, tmp_path / executor)
    pd.testing.assert_frame_equal(a[exact_columns(a)], b[exact_columns(b)], check_exact=True)
    ma, mb = merge(fx, tmp_path / "serial"), merge(fx, tmp_path / executor)  # from the shards
    pd.testing.assert_frame_equal(ma[exact_columns(ma)], mb[exact_columns(mb)], check_exact=True)
    assert (b["executor"] == executor).all() and (b["jobs"] == 2).all()
    assert (b["numba_threads"] == 1).all() and (b["blas_threads"] == 1).all()
    fa, fb = pd.read_csv(serial.failures_path), pd.read_csv(other.failures_path)
    assert list(fa["run_id"]) == list(fb["run_id"])


def test_dask_joins_an_existing_scheduler(tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, silence_logs=logging.ERROR) as cluster:
        s = run_sweep(fx, results_dir=tmp_path / "remote", quiet=True,
                      scheduler=cluster.scheduler_address)  # executor=None -> dask
    assert (s.executor, s.done, s.failed) == ("dask", N_QUICK, 0)
    run_sweep(fx, results_dir=tmp_path / "serial", quiet=True)
    a, b = read_results(fx, tmp_path / "serial"), read_results(fx, tmp_path / "remote")
    pd.testing.assert_frame_equal(a[exact_columns(a)], b[exact_columns(b)], check_exact=True)
    assert (b["numba_threads"] == 1).all()  # pinned per task on workers we did not start


def test_a_crashed_worker_fails_only_runs_in_flight(tmp_path, monkeypatch):
    monkeypatch.setenv("SWEEP_FIXTURE_CRASH", "13")
    grid = ["n=8,13", "scale=0.5", "kind=normal"]
    s = run_sweep(fx, results_dir=tmp_path, quiet=True, jobs=2, executor="processes",
                  grid_overrides=grid)
    assert s.n_runs == 4 and s.done + s.failed == 4
    crashed = [f for f in s.failures if f["params"]["n"] == 13]
    assert len(crashed) == 2 and {f["error_type"] for f in crashed} == {"BrokenProcessPool"}
    monkeypatch.delenv("SWEEP_FIXTURE_CRASH")
    s2 = run_sweep(fx, results_dir=tmp_path, quiet=True, grid_overrides=grid)
    assert (s2.done, s2.cached, s2.failed) == (s.failed, s.done, 0)


# ====================================================================================== SIGKILL
_KILL_SCRIPT = """
import sys
import _sweep_fixture_exp as fx
from sketchsim.harness.sweep import run_sweep
run_sweep(fx, profile="kill", results_dir=sys.argv[1], jobs=int(sys.argv[2]),
          executor=sys.argv[3], quiet=True)
"""


@pytest.mark.parametrize("executor, jobs", [("serial", 1), ("processes", 2)])
def test_sigkill_midway_loses_and_redoes_nothing_finished(tmp_path, executor, jobs):
    n_total = 2 * 5 * 3
    res = tmp_path / "killed"
    shards = res / "sweep_fixture" / "shards"
    env = dict(os.environ, SWEEP_FIXTURE_SLEEP="0.15",
               PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(res), str(jobs), executor],
                            env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if shards.is_dir() and len(list(shards.glob("*.json"))) >= 4:
                break
            time.sleep(0.02)
        assert proc.poll() is None, proc.stderr.read().decode()
        os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its workers, at once
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL

    before = shard_state(shards)
    assert 4 <= len(before) < n_total
    for name, (_, data) in before.items():  # every shard on disk is complete
        assert json.loads(data)["run_id"] == name[:-5]

    s = run_sweep(fx, "kill", results_dir=res, quiet=True)
    assert (s.cached, s.done, s.failed) == (len(before), n_total - len(before), 0)
    after = shard_state(shards)
    assert {k: after[k] for k in before} == before  # untouched: same bytes, same mtime
    assert len(after) == n_total

    clean = run_sweep(fx, "kill", results_dir=tmp_path / "clean", quiet=True)
    assert clean.done == n_total
    a, b = read_results(fx, res), read_results(fx, tmp_path / "clean")
    pd.testing.assert_frame_equal(a[exact_columns(a)], b[exact_columns(b)], check_exact=True)


def test_git_dirty_counts_code_not_outputs(tmp_path):
    """Rewriting results/ or paper_figs/ (what a sweep does) is not a dirty tree; changed code is."""
    import subprocess

    from sketchsim.harness.sweep import _git_info

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True,
                       env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
                            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"})

    for rel in ("code.py", "results/a.csv", "paper_figs/f.png", "sub/mod.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x\n")
    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "init")
    assert _git_info(tmp_path / "sub")[1] is False
    (tmp_path / "results" / "a.csv").write_text("y\n")
    (tmp_path / "paper_figs" / "f.png").write_text("y\n")
    assert _git_info(tmp_path / "sub")[1] is False            # outputs only
    (tmp_path / "code.py").write_text("y\n")
    assert _git_info(tmp_path / "sub")[1] is True             # code changed, seen from a subfolder
