"""A tiny deterministic experiment for tests/test_sweep.py (not a paper experiment).

Metrics are NumPy statistics of draws from ``rng``, so they depend only on (params, seed).
Two environment switches make it misbehave on purpose, in any worker process:

``SWEEP_FIXTURE_FAIL=<n>``   runs with ``params["n"] == <n>`` raise ``ValueError``;
``SWEEP_FIXTURE_SLEEP=<s>``  every run sleeps ``s`` seconds first (for the SIGKILL test);
``SWEEP_FIXTURE_CRASH=<n>``  runs with ``params["n"] == <n>`` kill their process (``os._exit``);
                             only ever set it with a process-pool executor.
"""
import os
import time
import warnings

import numpy as np

NAME = "sweep_fixture"

PROFILES = {
    "quick": {"n": [8, 13, 50], "scale": [0.5, 2.0], "kind": ["normal", "uniform"], "reps": 2},
    "full": {"n": [8, 13, 50, 200], "scale": [0.5, 1.0, 2.0],
             "kind": ["normal", "uniform", "skipme"], "reps": 3},
    # a union of two grids: the second adds a parameter only some runs have
    "union": [{"n": [8], "kind": ["normal"]},
              {"n": [8, 20], "kind": ["uniform"], "flag": [True, False]}],
    "kill": {"n": [8, 50], "scale": [0.5, 1.0, 2.0, 3.0, 4.0], "reps": 3},
}


def skip(params):
    if params.get("kind") == "skipme":
        return True, "kind 'skipme' is not implemented"
    return False, ""


def warm_up():
    np.random.default_rng(0).standard_normal(4)


def run_one(params, rng):
    sleep = float(os.environ.get("SWEEP_FIXTURE_SLEEP", "0") or 0)
    if sleep:
        time.sleep(sleep)
    crash = os.environ.get("SWEEP_FIXTURE_CRASH")
    if crash and params["n"] == int(crash):
        os._exit(3)
    fail = os.environ.get("SWEEP_FIXTURE_FAIL")
    if fail and params["n"] == int(fail):
        raise ValueError(f"fixture failure for n={params['n']}")
    n = params["n"]
    scale = params.get("scale", 1.0)
    if scale > 1:
        warnings.warn(f"scale {scale} > 1 is outside the fixture's comfort zone", UserWarning)
        warnings.warn(f"scale {scale} > 1 is outside the fixture's comfort zone", UserWarning)
    if params.get("kind", "normal") == "uniform":
        x = rng.uniform(-scale, scale, size=n)
    else:
        x = rng.normal(0.0, scale, size=n)
    y = x @ rng.standard_normal((n, 3))
    return {
        "mean": float(x.mean()),
        "std": np.float64(x.std(ddof=1)),
        "max_abs": float(np.abs(x).max()),
        "n_pos": int((x > 0).sum()),
        "any_big": bool(np.abs(x).max() > 2 * scale),
        "proj_norm": float(np.linalg.norm(y)),
        "label": f"n{n}",
    }


def theory(params):
    scale = params.get("scale", 1.0)
    if params.get("kind", "normal") == "uniform":
        return {"std": scale / np.sqrt(3.0)}
    return {"std": float(scale)}
