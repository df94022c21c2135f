"""A real Dask cluster: a `dask scheduler` and `dask worker ADDRESS --nworkers 2 --nthreads 1`
started as separate processes from a directory that is not the repository.

The workers can then import only what is installed: ``sketchsim`` and the ``experiments`` package
(pyproject.toml installs both; before it did, every run of ``sketchsim run unrolling --scheduler
tcp://…`` failed with ``ModuleNotFoundError: No module named 'experiments'``). The fixture study
``tests/_sweep_fixture_exp.py`` is not installed, so the workers get ``tests/`` — and nothing else —
on their PYTHONPATH. The sweep through the cluster must be bit-identical to a serial sweep.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

distributed = pytest.importorskip(
    "distributed", reason="the optional package 'distributed' is not installed "
                          "(pip install 'sketchsim[distributed]')")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import _sweep_fixture_exp as fx  # noqa: E402

from sketchsim.harness.sweep import read_results, run_sweep  # noqa: E402

START_TIMEOUT = 60


def _stop(proc):
    """SIGTERM the process group (the nanny and its workers), then SIGKILL what is left."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture
def cluster(tmp_path):
    """(scheduler address, the workers' cwd); every process is killed at the end."""
    elsewhere = tmp_path / "elsewhere"        # the workers' cwd: not the repository
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONPATH"] = str(HERE)             # the fixture study only; no repository root
    procs, logs = [], []

    def start(name, *args):
        log = open(tmp_path / f"{name}.log", "wb")
        logs.append(log)
        procs.append(subprocess.Popen([sys.executable, "-m", *args], cwd=elsewhere, env=env,
                                      stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True))
        return procs[-1]

    def logs_text():
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                         for p in sorted(tmp_path.glob("*.log")))

    sched_file = tmp_path / "scheduler.json"
    try:
        sched = start("scheduler", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                      "--port", "0", "--no-dashboard", "--scheduler-file", str(sched_file))
        deadline = time.monotonic() + START_TIMEOUT
        address = None
        while address is None:
            if sched.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"dask scheduler did not start:\n{logs_text()}")
            try:
                address = json.loads(sched_file.read_text())["address"]
            except (OSError, ValueError, KeyError):
                time.sleep(0.1)
        assert address.startswith("tcp://127.0.0.1:")
        worker = start("worker", "distributed.cli.dask_worker", address, "--nworkers", "2",
                       "--nthreads", "1", "--no-dashboard", "--death-timeout", "60",
                       "--local-directory", str(tmp_path / "dask-scratch"))
        with distributed.Client(address, timeout="30s", set_as_default=False) as client:
            try:
                client.wait_for_workers(2, timeout=START_TIMEOUT)
            except TimeoutError:
                pytest.fail(f"dask workers did not start (exit {worker.poll()}):\n{logs_text()}")
        yield address, elsewhere
    finally:
        for p in reversed(procs):
            _stop(p)
        for log in logs:
            log.close()


def _exact_columns(df):
    return [c for c in df.columns
            if c in ("experiment", "run_id", "rep", "seed") or c[:2] in ("p_", "m_", "t_")]


def test_sweep_on_a_real_cluster_matches_a_serial_sweep(cluster, tmp_path):
    import pandas as pd

    address, elsewhere = cluster
    t0 = time.perf_counter()
    with distributed.Client(address, timeout="30s", set_as_default=False) as client:
        # first, before anything could add the repository to sys.path: the installed packages
        def where():
            import experiments
            import sketchsim

            return {"cwd": os.getcwd(), "experiments": experiments.__file__,
                    "sketchsim": sketchsim.__file__, "path": list(sys.path)}

        seen = client.run(where)
        assert len(seen) == 2
        for info in seen.values():
            assert Path(info["cwd"]).resolve() == elsewhere.resolve()
            assert str(ROOT) not in [str(Path(p or ".").resolve()) for p in info["path"]]
            assert Path(info["experiments"]).parent.name == "experiments"
            assert Path(info["sketchsim"]).parent.name == "sketchsim"
        # every study of the repository is installed, found by name as the executor's tasks
        # import them (found, not executed: importing them all would take seconds per worker)
        studies = sorted(p.stem for p in (ROOT / "experiments").glob("*.py")
                         if not p.name.startswith("_"))

        def found(names):
            import importlib.util

            return sorted(n for n in names if importlib.util.find_spec(f"experiments.{n}"))

        assert len(studies) >= 8 and "unrolling" in studies
        assert client.run(found, studies) == {w: studies for w in seen}

    s = run_sweep(fx, results_dir=tmp_path / "cluster", scheduler=address, quiet=True)
    assert (s.executor, s.done, s.failed) == ("dask", 24, 0), s.failures
    run_sweep(fx, results_dir=tmp_path / "serial", quiet=True)
    a = read_results(fx, tmp_path / "serial")
    b = read_results(fx, tmp_path / "cluster")
    pd.testing.assert_frame_equal(a[_exact_columns(a)], b[_exact_columns(b)], check_exact=True)
    assert (b["numba_threads"] == 1).all() and (b["executor"] == "dask").all()
    assert time.perf_counter() - t0 < 60
