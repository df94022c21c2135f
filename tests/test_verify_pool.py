"""One pool of workers for every study of a ``verify`` run (issue 11, item 3).

``verify`` with a parallel executor sends every run of every study to one pool (one spawned
``processes`` pool, or one Dask cluster), longest first, and draws a study's figures on a worker as
soon as its last run is in. The files it writes — merged tables, ``verdicts.json``, figures — must
not depend on that: they are compared byte for byte (tables on the columns that do not record
timing or the executor) with a serial run. Two tiny studies: ``tests/_verify_fixture_exp.py`` and
``tests/_verify_fixture_exp2.py``.
"""
import concurrent.futures
import json
import math
import sys
import types
from pathlib import Path

import pandas as pd
import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import _sweep_fixture_exp as sfx  # noqa: E402
import _verify_fixture_exp2 as fx2  # noqa: E402

from sketchsim.harness import sweep  # noqa: E402
from sketchsim.harness import verify as V  # noqa: E402
from sketchsim.harness.sweep import read_results, run_sweep, run_sweeps  # noqa: E402

EXP = ["_verify_fixture_exp", "_verify_fixture_exp2"]
NAMES = ["verify_fixture", "verify_fixture2"]


def quiet(*_a, **_k):
    pass


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for var in ("VERIFY_FIXTURE2_FIGURE_FAIL", "SWEEP_FIXTURE_FAIL", "SWEEP_FIXTURE_SLEEP",
                "SWEEP_FIXTURE_CRASH"):
        monkeypatch.delenv(var, raising=False)


def exact_columns(df):
    """Columns that must not depend on executor, worker count or timing."""
    return [c for c in df.columns
            if c in ("experiment", "run_id", "rep", "seed", "warnings") or c[:2] in ("p_", "m_", "t_")]


def run_verify(base, **kw):
    rdir, fdir = base / "results", base / "figs"
    lines = []
    summaries = V.verify("quick", results_dir=str(rdir), figures_dir=str(fdir), experiments=EXP,
                         quiet=True, out=lines.append, **kw)
    return rdir, fdir, summaries, lines


def assert_same_outputs(a, b):
    (ra, fa), (rb, fb) = a, b
    for name in NAMES:
        ta, tb = read_results(name, ra), read_results(name, rb)
        pd.testing.assert_frame_equal(ta[exact_columns(ta)], tb[exact_columns(tb)],
                                      check_exact=True)
        assert (ra / f"{name}.schema.json").read_bytes() == (rb / f"{name}.schema.json").read_bytes()
    va, vb = (json.loads((d / V.VERDICTS_FILE).read_text()) for d in (ra, rb))
    va.pop("generated"), vb.pop("generated")
    assert va == vb
    figs = sorted(p.name for p in fa.iterdir())
    assert figs == ["verify_fixture.png", "verify_fixture2.png"]
    assert figs == sorted(p.name for p in fb.iterdir())
    for f in figs:
        assert (fa / f).read_bytes() == (fb / f).read_bytes(), f


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    rdir, fdir, summaries, lines = run_verify(tmp_path_factory.mktemp("serial"))
    return rdir, fdir, summaries, lines


@pytest.mark.parametrize("executor", ["processes", "dask"])
def test_a_pool_gives_the_files_of_a_serial_run(serial, tmp_path, executor):
    if executor == "dask":
        pytest.importorskip("distributed")
    rdir, fdir, summaries, lines = run_verify(tmp_path, jobs=2, executor=executor)
    assert_same_outputs(serial[:2], (rdir, fdir))
    assert list(summaries) == NAMES
    for s in summaries.values():
        assert (s.executor, s.jobs, s.failed, s.cached) == (executor, 2, 0, 0) and s.done == s.n_runs
    # figures were drawn by the workers, announced in the studies' order like make_figures does
    assert [ln for ln in lines if "figure(s) in" in ln] == [
        f"{n}: 1 figure(s) in {fdir}" for n in NAMES]
    assert "verify_fixture2" in (rdir / "REPORT.md").read_text()
    timing = json.loads((rdir / "verify_timing.json").read_text())
    assert set(timing["per_experiment_s"]) == set(NAMES) and timing["jobs"] == 2
    assert set(timing["figures_s"]) == set(NAMES)  # drawn by the workers, timed there
    assert timing["wall_s"] <= timing["this_invocation_s"]


def test_one_process_pool_for_every_study(tmp_path, monkeypatch):
    made = []

    class Counting(concurrent.futures.ProcessPoolExecutor):
        def __init__(self, *a, **k):
            made.append(1)
            super().__init__(*a, **k)

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", Counting)
    _, _, summaries, _ = run_verify(tmp_path, jobs=2)
    assert len(made) == 1
    assert sum(s.done for s in summaries.values()) == sum(s.n_runs for s in summaries.values())


def test_a_resumed_pooled_verify_redraws_figures_and_keeps_timing(serial, tmp_path):
    run_verify(tmp_path, jobs=2)
    timing = json.loads((tmp_path / "results" / "verify_timing.json").read_text())
    for f in (tmp_path / "figs").iterdir():
        f.unlink()
    rdir, fdir, summaries, _ = run_verify(tmp_path, jobs=2)  # every run finished: nothing runs
    assert all(s.done == 0 and s.cached == s.n_runs for s in summaries.values())
    assert_same_outputs(serial[:2], (rdir, fdir))
    again = json.loads((rdir / "verify_timing.json").read_text())
    assert (again["wall_s"], again["per_experiment_s"]) == (timing["wall_s"],
                                                            timing["per_experiment_s"])


def test_a_failing_figure_task_stops_verify_before_the_report(tmp_path, monkeypatch):
    monkeypatch.setenv("VERIFY_FIXTURE2_FIGURE_FAIL", "1")  # inherited by the spawned workers
    with pytest.raises(RuntimeError, match="figures fail on purpose"):
        run_verify(tmp_path, jobs=2)
    assert not (tmp_path / "results" / "REPORT.md").exists()
    assert (tmp_path / "results" / "verify_fixture2.csv").exists()
    assert (tmp_path / "figs" / "verify_fixture.png").exists()  # the other study's figures


def test_check_runs_the_studies_on_one_pool(tmp_path, monkeypatch):
    calls = []
    real = V.run_sweeps

    def spy(mods, **kw):
        calls.append([m.NAME for m in mods])
        return real(mods, **kw)

    monkeypatch.setattr(V, "run_sweeps", spy)
    numbers = V._quick_run(0, str(tmp_path), 2, None, True, EXP)
    assert calls == [NAMES] and set(numbers) == set(NAMES)


# ================================================================================ run_sweeps
def test_run_sweeps_equals_one_sweep_per_experiment(tmp_path):
    for exp in (sfx, fx2):
        run_sweep(exp, results_dir=tmp_path / "one", quiet=True)
    seen = []
    extra = []

    def on_done(summary, pool):
        seen.append(summary.experiment)
        # more work on the same workers, queued from a callback
        pool.add(math.sqrt, 16.0, extra.append, lambda exc, tb=None: extra.append(exc),
                 priority=math.inf, label="extra")

    out = run_sweeps([sfx, fx2, sfx], results_dir=tmp_path / "pool", jobs=2,
                     executor="processes", quiet=True, on_done=on_done)
    assert list(out) == ["sweep_fixture", "verify_fixture2"]  # the repeated module runs once
    assert sorted(seen) == sorted(out) and extra == [4.0, 4.0]
    for name in out:
        a, b = read_results(name, tmp_path / "one"), read_results(name, tmp_path / "pool")
        pd.testing.assert_frame_equal(a[exact_columns(a)], b[exact_columns(b)], check_exact=True)
        assert (tmp_path / "pool" / name / "last_sweep.json").exists()
        assert out[name].done == out[name].n_runs - out[name].skipped
    # resumed: nothing left to run, every sweep is merged and reported at once
    seen.clear()
    again = run_sweeps([sfx, fx2], results_dir=tmp_path / "pool", jobs=2, quiet=True,
                       on_done=lambda s, pool: seen.append(s.experiment))
    assert seen == ["sweep_fixture", "verify_fixture2"]
    assert all(s.done == 0 and s.cached == s.n_runs - s.skipped for s in again.values())


def test_run_sweeps_records_failures_like_run_sweep(tmp_path, monkeypatch):
    monkeypatch.setenv("SWEEP_FIXTURE_FAIL", "13")
    one = run_sweep(sfx, results_dir=tmp_path / "one", quiet=True)
    pooled = run_sweeps([sfx, fx2], results_dir=tmp_path / "pool", jobs=2, quiet=True)
    s = pooled["sweep_fixture"]
    assert (s.done, s.failed) == (one.done, one.failed) and s.failed > 0
    assert sorted(f["run_id"] for f in s.failures) == sorted(f["run_id"] for f in one.failures)
    assert pooled["verify_fixture2"].failed == 0


@pytest.mark.parametrize("experiments, match", [
    ([], "experiments must be a nonempty list"),
    ("_sweep_fixture_exp", "experiments must be a nonempty list"),
    (["no_such_experiment"], "unknown experiment"),
])
def test_run_sweeps_validates_its_arguments(tmp_path, experiments, match):
    with pytest.raises(ValueError, match=match):
        run_sweeps(experiments, results_dir=tmp_path, quiet=True)
    with pytest.raises(ValueError, match="jobs must be an integer >= 1"):
        run_sweeps([sfx], results_dir=tmp_path, jobs=0, quiet=True)
    with pytest.raises(ValueError, match="on_done must be callable"):
        run_sweeps([sfx], results_dir=tmp_path, on_done=3, quiet=True)


def test_two_modules_with_one_name_are_refused(tmp_path):
    other = types.ModuleType("other_fixture")
    other.NAME, other.PROFILES, other.run_one = sfx.NAME, sfx.PROFILES, sfx.run_one
    with pytest.raises(ValueError, match="distinct NAMEs.*'sweep_fixture'"):
        run_sweeps([sfx, other], results_dir=tmp_path, quiet=True)


def test_pool_runs_highest_priority_first_and_callbacks_may_add_work():
    order = []
    pool = sweep._Pool("serial", 1)

    def add(x, priority):
        pool.add(abs, x, order.append, lambda exc, tb=None: order.append(exc), priority=priority)

    for x, p in ((-1, 1.0), (-2, 5.0), (-3, 1.0), (-4, 3.0)):
        add(x, p)
    pool.add(abs, -5, lambda r: (order.append(r), add(-6, 0.5)), None, priority=2.0)
    pool.run()
    assert order == [2, 4, 5, 1, 3, 6]  # 5.0, 3.0, 2.0, then 1.0 in insertion order, 0.5


def test_pool_reports_an_exception_of_a_task_to_its_callback():
    got = []
    pool = sweep._Pool("serial", 1)
    pool.add(math.sqrt, -1.0, got.append, lambda exc, tb=None: got.append(type(exc).__name__))
    pool.run()
    assert got == ["ValueError"]


def test_estimated_costs_come_from_earlier_tables(tmp_path):
    first = run_sweep(fx2, results_dir=tmp_path / "a", quiet=True)
    assert first.done == 18
    table = read_results("verify_fixture2", tmp_path / "a")  # floats read back exactly
    known = dict(zip(table["run_id"], table["time_s"]))
    plan = sweep._Sweep(fx2, "quick", None, None, 0, True, 2, "processes", None, tmp_path / "b", 0.0)
    costs = sweep._estimated_costs(plan, [tmp_path / "b", tmp_path / "a"])
    assert costs == {rid: known[rid] for rid in costs} and len(costs) == 18
    plan = sweep._Sweep(fx2, "quick", None, None, 1, True, 2, "processes", None, tmp_path / "c", 0.0)
    costs = sweep._estimated_costs(plan, [tmp_path / "a"])  # other seed: other run ids
    med = float(table["time_s"].median())
    assert len(costs) == 18 and all(c == pytest.approx(med) for c in costs.values())
    assert set(sweep._estimated_costs(plan, [tmp_path / "none"]).values()) == {1.0}


def test_long_runs_go_first_then_short_ones_by_study_weight():
    costs = {"A": {"a1": 100.0, "a2": 1.0, "a3": 2.0}, "B": {"b1": 1.5, "b2": 0.5}}
    sweeps = [types.SimpleNamespace(name="A"), types.SimpleNamespace(name="B")]
    # long: >= 1/40 of a worker's share (105 s / 2 workers) = 1.3125 s
    prio = sweep._dispatch_priorities(sweeps, costs, {"A": 1.0, "B": 2.0}, jobs=2)
    flat = sorted(((p, rid) for d in prio.values() for rid, p in d.items()), reverse=True)
    assert [rid for _, rid in flat] == ["a1", "a3", "b1", "b2", "a2"]
    prio = sweep._dispatch_priorities(sweeps, costs, {}, jobs=2)  # equal weights: given order
    flat = sorted(((p, rid) for d in prio.values() for rid, p in d.items()), reverse=True)
    assert [rid for _, rid in flat] == ["a1", "a3", "b1", "a2", "b2"]
    assert sweep._dispatch_priorities([], {}, {}, 2) == {}


def test_workers_warm_the_distinct_warm_ups_in_rotated_orders(monkeypatch):
    calls = []
    fns = {k: (lambda k=k: calls.append(k)) for k in ("p", "q")}
    mods = {}
    for name, fn in (("wm_a", "p"), ("wm_b", "q"), ("wm_c", "p"), ("wm_d", None)):
        m = types.ModuleType(name)
        if fn:
            m.warm_up = fns[fn]
        monkeypatch.setitem(sys.modules, name, m)
        mods[name] = m
    sweeps = [types.SimpleNamespace(mod=mods[n]) for n in ("wm_a", "wm_b", "wm_c", "wm_d")]
    monkeypatch.setattr(sweep, "_WARMED", set())
    pool = sweep._Pool("serial", 1)
    sweep._queue_warm_ups(pool, sweeps, jobs=1)  # one worker: nothing to stagger
    assert not pool._heap
    sweep._queue_warm_ups(pool, sweeps[:1] + sweeps[2:], jobs=2)  # one distinct warm_up
    assert not pool._heap
    sweep._queue_warm_ups(pool, sweeps, jobs=2)
    units = [entry[2].arg["units"] for entry in sorted(pool._heap)]
    assert units == [[[("wm_a", None), ("wm_c", None)], [("wm_b", None)]],
                     [[("wm_b", None)], [("wm_a", None), ("wm_c", None)]]]
    pool.run()  # one process here: the second item finds everything warm
    assert calls == ["p", "q"]
    assert sweep._WARMED == {("wm_a", None), ("wm_b", None), ("wm_c", None)}


def test_figure_weights_come_from_the_last_timing_else_the_figure_count(tmp_path):
    mods = [V.load_experiment(e) for e in EXP]
    assert V._figure_weights(mods, [str(tmp_path)]) == {"verify_fixture": 1.0, "verify_fixture2": 1.0}
    (tmp_path / "verify_timing.json").write_text(json.dumps(
        {"figures_s": {"verify_fixture": 0.5}}))  # incomplete: not used
    assert V._figure_weights(mods, [str(tmp_path)])["verify_fixture"] == 1.0
    (tmp_path / "verify_timing.json").write_text(json.dumps(
        {"figures_s": {"verify_fixture": 0.5, "verify_fixture2": 2.5}}))
    assert V._figure_weights(mods, [str(tmp_path / "none"), str(tmp_path)]) == {
        "verify_fixture": 0.5, "verify_fixture2": 2.5}
