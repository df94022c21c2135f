import warnings

import numpy as np
import pytest

import sketchsim as ss

# Small banks of every family used across the engine tests (d chosen so each family is valid).
FAMILY_BANKS = {
    "haar": (64, {}),
    "gaussian": (64, {}),
    "block-sparse": (96, {"block_size": 48, "block_prob": 0.5}),
    "hadamard": (64, {}),
}


def make_bank(family, seed=0, d=None):
    d0, kw = FAMILY_BANKS[family]
    return ss.MatrixBank(d or d0, family, seed, **kw)


def dense_matvec(bank):
    cache = {}

    def mv(name, v):
        if name not in cache:
            cache[name] = bank.dense(name)
        return cache[name] @ v

    return mv


@pytest.fixture(autouse=True)
def _quiet_precondition_warnings():
    # Small test banks deliberately sit outside Theorem preconditions (tiny q·d/b); tests that
    # check warnings use pytest.warns explicitly.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ss.TheoremPreconditionWarning)
        yield


def unit(v):
    v = np.asarray(v, dtype=float)
    return (v / np.linalg.norm(v)).tolist()
