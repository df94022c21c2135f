"""Randomness: name-derived seeds and a counter-based generator usable inside Numba kernels.

A matrix's random stream depends only on (bank seed, its name), so adding a module never changes
the other matrices (ARCHITECTURE.md, "Randomness and reproducibility"). Inside kernels we use
splitmix64 of (key, counters): an entry can be regenerated without storing it and the output never
depends on the thread count. :func:`mix_np` is the NumPy twin used by ``reference.py``.
"""
from __future__ import annotations

import hashlib
import numbers

import numpy as np
from numba import njit

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)


def check_seed(seed, name="seed"):
    """Return ``seed`` as a nonnegative Python int (the bank seed), or raise."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or int(seed) < 0:
        raise ValueError(f"{name} must be a nonnegative integer; got {seed!r}")
    return int(seed)


def name_key(seed, name):
    """64-bit key derived from SHA-256 of (seed, name): the root of one named matrix's stream."""
    digest = hashlib.sha256(f"sketchsim/{int(seed)}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def name_generator(seed, name):
    """A NumPy ``Generator`` whose stream depends only on (seed, name)."""
    digest = hashlib.sha256(f"sketchsim/{int(seed)}/{name}".encode()).digest()
    words = [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 32, 4)]
    return np.random.default_rng(np.random.SeedSequence(words))


def check_random_state(random_state):
    """Turn None, an int or a ``Generator`` into a ``np.random.Generator`` (sklearn idiom)."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None or isinstance(random_state, numbers.Integral):
        return np.random.default_rng(random_state)
    raise ValueError(f"random_state must be None, an int or a numpy Generator; got {random_state!r}")


@njit(cache=True, nogil=True)
def _splitmix(z):
    z = z + _GOLDEN
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(cache=True, nogil=True)
def mix3(key, a, b, c):
    """splitmix64 chain of (key, a, b, c): the counter-based generator's 64-bit output."""
    z = _splitmix(np.uint64(key) ^ _splitmix(np.uint64(a)))
    z = _splitmix(z ^ np.uint64(b))
    return _splitmix(z ^ (np.uint64(c) * _GOLDEN))


def _splitmix_np(z):
    with np.errstate(over="ignore"):
        z = z + _GOLDEN
        z = (z ^ (z >> _S30)) * _M1
        z = (z ^ (z >> _S27)) * _M2
        return z ^ (z >> _S31)


def mix_np(key, a, b, c):
    """NumPy twin of :func:`mix3` (broadcasts over ``a``, ``b``, ``c``)."""
    a = np.asarray(a, dtype=np.uint64)
    b = np.asarray(b, dtype=np.uint64)
    c = np.asarray(c, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = _splitmix_np(np.uint64(key) ^ _splitmix_np(a))
        z = _splitmix_np(z ^ b)
        return _splitmix_np(z ^ (c * _GOLDEN))
