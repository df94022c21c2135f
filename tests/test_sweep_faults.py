"""Hostile input and faults in the sweep machinery (issue 8): concurrent sweeps into one folder,
workers whose parent dies, leftover temporary files, malformed shards, a shadowing experiments/
folder.

Like tests/test_sweep.py, the experiment under test is ``tests/_sweep_fixture_exp.py`` (switches
``SWEEP_FIXTURE_FAIL`` and ``SWEEP_FIXTURE_SLEEP`` in the environment make runs fail or sleep, in
any process); subprocesses find it through ``PYTHONPATH``.
"""
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import _sweep_fixture_exp as fx  # noqa: E402

from sketchsim import _tempfiles  # noqa: E402
from sketchsim.harness import sweep  # noqa: E402
from sketchsim.harness.sweep import (  # noqa: E402
    CorruptShardWarning, load_experiment, merge, read_failures, read_results, run_sweep)

REPO = HERE.parent


@pytest.fixture(autouse=True)
def _clean_fixture_env(monkeypatch):
    for var in ("SWEEP_FIXTURE_FAIL", "SWEEP_FIXTURE_SLEEP", "SWEEP_FIXTURE_CRASH"):
        monkeypatch.delenv(var, raising=False)


def _env(**extra):
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE)] + [p for p in [os.environ.get("PYTHONPATH")]
                                                       if p])
    return env


def _dead_pid():
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ====================================================================== 1. concurrent sweeps
def test_two_failure_logs_of_one_folder_keep_each_others_rows(tmp_path):
    """Interleaved writers (what two sweeps do) each add their rows to what is on disk."""
    path = tmp_path / "exp" / "failures.csv"
    a, b = sweep._FailureLog(path), sweep._FailureLog(path)
    a.record("a1", {"run_id": "a1", "error_type": "E"})
    b.record("b1", {"run_id": "b1", "error_type": "E"})
    a.record("a2", {"run_id": "a2", "error_type": "E"})
    b.record("a1", {"run_id": "a1", "error_type": "E"})  # the same run failed again elsewhere
    rows = {r["run_id"]: r for r in sweep._FailureLog(path).rows.values()}
    assert sorted(rows) == ["a1", "a2", "b1"]
    assert rows["a1"]["attempts"] == "2" and rows["b1"]["attempts"] == "1"
    b.resolve("a2")
    a.resolve("a1")
    assert sorted(sweep._FailureLog(path).rows) == ["b1"]
    a.resolve("b1")
    assert not path.exists()  # removed when empty


_CONCURRENT_SCRIPT = """
import json, os, sys, time
import _sweep_fixture_exp as fx
from sketchsim.harness.sweep import run_sweep
res, grid, go = sys.argv[1], sys.argv[2], sys.argv[3]
while not os.path.exists(go):
    time.sleep(0.005)
s = run_sweep(fx, results_dir=res, grid_overrides=[grid], quiet=True)
print(json.dumps({"failed": s.failed, "done": s.done, "failures_path": str(s.failures_path),
                  "manifest_path": str(s.manifest_path),
                  "ids": sorted(f["run_id"] for f in s.failures)}))
"""


def test_concurrent_failing_sweeps_keep_every_record(tmp_path):
    res, go = tmp_path / "res", tmp_path / "go"
    # one sweep fails on n=13, the other on n=50; each also finishes runs (n=8, n=200), so that
    # shards, the merged table and its schema are written concurrently too
    specs = [("n=8,13", "13"), ("n=50,200", "50")]
    procs = [subprocess.Popen([sys.executable, "-c", _CONCURRENT_SCRIPT, str(res), grid, str(go)],
                              env=_env(SWEEP_FIXTURE_FAIL=fail, SWEEP_FIXTURE_SLEEP="0.02"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for grid, fail in specs]
    time.sleep(0.2)
    go.write_text("")  # both start together: their failures interleave
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outs.append(json.loads(out.strip().splitlines()[-1]))
    n_fail = 2 * 2 * 2  # scale × kind × reps of the failing n
    assert [o["failed"] for o in outs] == [n_fail, n_fail]
    assert [o["done"] for o in outs] == [n_fail, n_fail]
    expected = set(outs[0]["ids"]) | set(outs[1]["ids"])
    assert len(expected) == 2 * n_fail
    for o in outs:  # both summaries point to one log that holds both sweeps' failures
        log = pd.read_csv(o["failures_path"])
        assert set(log["run_id"]) == expected and len(log) == 2 * n_fail
        assert set(log["p_n"]) == {13, 50} and (log["attempts"] == 1).all()
    assert {r["run_id"] for r in read_failures("sweep_fixture", res)} == expected
    # every finished run has its shard; the merged table matches its schema (not torn)
    shards = {p.stem for p in (res / "sweep_fixture" / "shards").glob("*.json")}
    assert len(shards) == 2 * n_fail and not shards & expected
    df = read_results(fx, res)
    assert len(df) == n_fail and set(df["p_n"]) in ({8}, {200})
    assert df["m_n_pos"].dtype == np.int64
    # each sweep's manifest is kept (last_sweep.json is the one that finished last)
    manifests = [json.loads(Path(o["manifest_path"]).read_text()) for o in outs]
    assert sorted(m["grid_overrides"][0] for m in manifests) == sorted(g for g, _ in specs)
    assert len(list((res / "sweep_fixture" / "sweeps").glob("*.json"))) == 2
    last = json.loads((res / "sweep_fixture" / "last_sweep.json").read_text())
    assert last in manifests
    assert not list(res.rglob(".tmp-*"))


# ===================================================================== 2. workers and parents
def _children(pid):
    """Pids of the live (non-zombie) children of ``pid``, from /proc."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(d.name))
    return out


def _alive(pid):
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].split()[0] != "Z"


def _cmdline(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("executor", ["processes", "dask"])
def test_workers_exit_when_the_sweep_is_killed(tmp_path, executor):
    """SIGKILL of ``sketchsim run EXP --jobs 2`` (the parent only): its workers exit too.

    ``processes``: our initializer's ``prctl(PR_SET_PDEATHSIG)``; ``dask`` (LocalCluster, whose
    nannies live in the sweep's process): distributed's own parent-alive pipe.
    """
    if executor == "dask":
        pytest.importorskip("distributed")
    cmd = [sys.executable, "-m", "sketchsim", "run", "_sweep_fixture_exp", "--profile", "kill",
           "--jobs", "2", "--executor", executor, "--results-dir", str(tmp_path / "res"),
           "--quiet"]
    proc = subprocess.Popen(cmd, env=_env(SWEEP_FIXTURE_SLEEP="0.3"), cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    workers = []
    try:
        shards = tmp_path / "res" / "sweep_fixture" / "shards"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            workers = [p for p in _children(proc.pid) if "spawn_main" in _cmdline(p)]
            if len(workers) >= 2 and shards.is_dir() and any(shards.glob("*.json")):
                break  # both workers up and computing
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()
        assert len(workers) == 2, workers
        descendants = _children(proc.pid)  # workers and multiprocessing's resource tracker
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(p) for p in descendants):
            time.sleep(0.05)
        assert not [p for p in descendants if _alive(p)], [_cmdline(p) for p in descendants]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in workers:  # never leave a worker behind, even when the test fails
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        proc.stderr.close()


def test_a_worker_whose_parent_is_already_gone_exits_at_once():
    """The race between the spawn and prctl: a parent that died first is noticed."""
    code = ("from sketchsim.harness.sweep import _exit_with_parent\n"
            "_exit_with_parent(1)\n"  # pid 1 is not our parent: as if re-parented
            "raise SystemExit(0)\n")
    done = subprocess.run([sys.executable, "-c", code], env=_env(), timeout=60)
    assert done.returncode == 1


# ======================================================================= 3. leftover temp files
def _plant(path, age_s):
    path.write_text("partial")
    t = time.time() - age_s
    os.utime(path, (t, t))
    return path


def test_remove_stale_temps_removes_only_dead_writers_files(tmp_path):
    dead, live = _dead_pid(), os.getpid()
    stale = _plant(tmp_path / f"{_tempfiles.temp_prefix(dead)}ab12cd.part", 120)
    fresh_dead = _plant(tmp_path / f"{_tempfiles.temp_prefix(dead)}zz99yy.part", 0)  # grace
    mine = _plant(tmp_path / f"{_tempfiles.temp_prefix(live)}ef34gh.part", 120)
    legacy_old = _plant(tmp_path / ".tmp-a1b2c3d4.part", 2 * 3600)
    legacy_new = _plant(tmp_path / ".tmp-q9w8e7r6.part", 10)
    other = _plant(tmp_path / "result.csv", 2 * 3600)
    removed = _tempfiles.remove_stale_temps(tmp_path)
    assert removed == sorted([stale.name, legacy_old.name])
    assert not stale.exists() and not legacy_old.exists()
    assert fresh_dead.exists() and mine.exists() and legacy_new.exists() and other.exists()
    assert _tempfiles.remove_stale_temps(tmp_path / "missing") == []
    assert _tempfiles.temp_prefix() == f".tmp-{os.getpid()}-"


def test_a_sweep_removes_stale_temp_files_of_dead_writers(tmp_path):
    dead = _dead_pid()
    exp_dir = tmp_path / "sweep_fixture"
    shards = exp_dir / "shards"
    shards.mkdir(parents=True)
    planted = {}
    for folder in (tmp_path, exp_dir, shards):
        planted[folder] = (_plant(folder / f".tmp-{dead}-x1y2z3.part", 300),
                           _plant(folder / f".tmp-{os.getpid()}-k4l5m6.part", 300))
    s = run_sweep(fx, results_dir=tmp_path, quiet=True, grid_overrides=["n=8"], reps=1)
    assert s.done == 4
    for stale, live in planted.values():
        assert not stale.exists(), stale
        assert live.exists(), live  # a live writer's (here: this process's) file is untouched


# =========================================================================== 4. malformed shards
@pytest.mark.parametrize("content", ["null", "[]", '"x"', "{}", "3", '{"run_id": ', "",
                                     "WRONG_ID"])
def test_a_malformed_shard_is_moved_aside_reported_once_and_rerun(tmp_path, content):
    grid = ["n=8"]
    first = run_sweep(fx, results_dir=tmp_path, quiet=True, grid_overrides=grid, reps=1)
    good = read_results(fx, tmp_path)
    victim = sorted(first.shards_dir.glob("*.json"))[1]
    if content == "WRONG_ID":  # a valid row, of another run
        other = sorted(first.shards_dir.glob("*.json"))[0]
        content = other.read_text()
    victim.write_text(content)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = run_sweep(fx, results_dir=tmp_path, quiet=True, grid_overrides=grid, reps=1)
    reported = [w for w in caught if issubclass(w.category, CorruptShardWarning)]
    assert len(reported) == 1 and victim.name in str(reported[0].message)
    assert (again.done, again.cached, again.failed) == (1, 3, 0)
    aside = victim.with_name(victim.name + ".corrupt")
    assert aside.read_text() == content  # kept for inspection
    assert json.loads(victim.read_text())["run_id"] == victim.stem  # recomputed
    df = read_results(fx, tmp_path)
    assert len(df) == 4 and not df.filter(like="m_").isna().any().any()
    cols = [c for c in df.columns if c in ("run_id", "seed") or c[:2] in ("p_", "m_")]
    pd.testing.assert_frame_equal(df[cols], good[cols], check_exact=True)
    with warnings.catch_warnings(record=True) as caught:  # reported once: now clean
        warnings.simplefilter("always")
        third = run_sweep(fx, results_dir=tmp_path, quiet=True, grid_overrides=grid, reps=1)
    assert not [w for w in caught if issubclass(w.category, CorruptShardWarning)]
    assert (third.done, third.cached) == (0, 4)


@pytest.mark.parametrize("content", ["null", "[]", '"x"', "{}"])
def test_merge_skips_a_malformed_shard_with_a_warning(tmp_path, content):
    run_sweep(fx, results_dir=tmp_path, quiet=True, grid_overrides=["n=8"], reps=1)
    victim = sorted((tmp_path / "sweep_fixture" / "shards").glob("*.json"))[0]
    victim.write_text(content)
    with pytest.warns(CorruptShardWarning, match=victim.name):
        df = merge("sweep_fixture", tmp_path)
    assert len(df) == 3 and victim.stem not in set(df["run_id"])
    assert not df.filter(like="m_").isna().any().any()


def test_a_failure_row_is_kept_while_its_shard_is_malformed(tmp_path, monkeypatch):
    monkeypatch.setenv("SWEEP_FIXTURE_FAIL", "8")
    s = run_sweep(fx, results_dir=tmp_path, quiet=True, grid_overrides=["n=8"], reps=1)
    assert s.failed == 4
    rid = s.failures[0]["run_id"]
    (s.shards_dir / f"{rid}.json").write_text("{}")  # not a finished run
    with pytest.warns(CorruptShardWarning):
        s2 = run_sweep(fx, results_dir=tmp_path, quiet=True, grid_overrides=["n=8"], reps=1)
    assert s2.failed == 4 and {r["run_id"] for r in read_failures("sweep_fixture", tmp_path)} \
        == {f["run_id"] for f in s.failures}
    rows = {r["run_id"]: r for r in read_failures("sweep_fixture", tmp_path)}
    assert rows[rid]["attempts"] == "2"


# ================================================================ 5. a shadowing experiments/
_MARKER_SRC = "open({marker!r}, 'w').write('executed')\n"


@pytest.fixture
def shadowing_cwd(tmp_path, monkeypatch):
    """A cwd with ``experiments/unrolling.py`` (and a stray ``notastudy.py``) that write a marker
    file when executed; the cwd first on sys.path as under ``python -m``."""
    marker = tmp_path / "MARKER"
    pkg = tmp_path / "experiments"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(_MARKER_SRC.format(marker=str(marker)))
    (pkg / "unrolling.py").write_text(_MARKER_SRC.format(marker=str(marker)))
    (tmp_path / "notastudy.py").write_text(_MARKER_SRC.format(marker=str(marker)))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [str(tmp_path)] + sys.path)

    def ours(k):
        return k == "experiments" or k.startswith("experiments.")

    saved = {k: v for k, v in sys.modules.items() if ours(k)}
    for k in saved:
        del sys.modules[k]
    yield marker
    for k in [k for k in sys.modules if ours(k)]:
        del sys.modules[k]
    sys.modules.update(saved)


def test_the_installed_experiments_package_wins_and_local_files_never_run(shadowing_cwd):
    marker = shadowing_cwd
    mod = load_experiment("unrolling")
    assert Path(mod.__file__).resolve() == (REPO / "experiments" / "unrolling.py").resolve()
    assert load_experiment("experiments.unrolling") is mod
    assert "unrolling" in sweep.available_experiments()
    with pytest.raises(ValueError, match=r"'notastudy' .* not a sketchsim experiment.*missing "
                                         r"NAME, PROFILES, run_one \(refused without executing"):
        load_experiment("notastudy")
    assert not marker.exists()


def test_sketchsim_run_ignores_a_local_experiments_folder(tmp_path):
    marker = tmp_path / "MARKER"
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "__init__.py").write_text("")
    (tmp_path / "experiments" / "unrolling.py").write_text(_MARKER_SRC.format(marker=str(marker)))
    done = subprocess.run([sys.executable, "-m", "sketchsim", "run", "unrolling", "--grid",
                           "nope=1"], cwd=tmp_path, env=_env(), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0
    # refused by the installed study's own grid, not by the local file's missing contract
    assert "unknown parameter 'nope'" in done.stderr, done.stderr
    assert not marker.exists()
