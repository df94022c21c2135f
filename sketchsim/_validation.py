"""Argument checking shared by the whole package.

Every violated *definition* raises :class:`ValueError` whose message names the parameter, the rule
and the value received; a well-defined setting outside a theorem's hypotheses warns with
:class:`TheoremPreconditionWarning` instead (ARCHITECTURE.md, "Errors and warnings").
"""
from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = [
    "TheoremPreconditionWarning",
    "check_int",
    "check_choice",
    "check_block_params",
    "check_finite_nonneg",
    "min_block_size",
]


class TheoremPreconditionWarning(UserWarning):
    """A well-defined input that lies outside the hypotheses of one of the paper's theorems."""


def check_int(name, value, minimum=None):
    """Return ``value`` as an int, or raise if it is not an integer ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, numbers.Real) and float(value).is_integer():
            value = int(value)
        else:
            raise ValueError(f"{name} must be an integer; got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}")
    return value


def check_choice(name, value, choices):
    """Raise unless ``value`` is one of ``choices`` (listing them)."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def min_block_size(d_sketch, n_matrices=None):
    """Smallest admissible block size b (paper §4.3): 3·max(⌈log2 N⌉, ⌈log2 d⌉ + 3).

    ``n_matrices`` is N, the number of matrices that must be told apart; when unknown only the
    d term applies.
    """
    need = _ceil_log2(d_sketch) + 3
    if n_matrices is not None and n_matrices > 1:
        need = max(need, _ceil_log2(n_matrices))
    return 3 * need


def _ceil_log2(n):
    return 0 if n <= 1 else int(math.ceil(math.log2(n) - 1e-12))


def check_block_params(d_sketch, block_size, block_prob, n_matrices=None):
    """Validate (b, q, d) of D(b, q, d_sketch) (paper §4.3). Returns ``(b, q)``."""
    if block_size is None:
        raise ValueError("block_size (b) is required for the block-sparse family; got None")
    if block_prob is None:
        raise ValueError("block_prob (q) is required for the block-sparse family; got None")
    b = check_int("block_size", block_size, minimum=1)
    need = min_block_size(d_sketch, n_matrices)
    n_txt = f"N={n_matrices}, " if n_matrices is not None else ""
    if b % 3 != 0 or b < need:
        raise ValueError(
            "block_size must be a multiple of 3 and at least "
            f"3·max(⌈log2 N⌉, ⌈log2 d⌉+3) = {need} ({n_txt}d={d_sketch}); got {b}"
        )
    if d_sketch % b != 0:
        raise ValueError(f"d_sketch must be a multiple of block_size={b}; got d_sketch={d_sketch}")
    try:
        q = float(block_prob)
    except (TypeError, ValueError):
        raise ValueError(f"block_prob must be a number in (0, 1]; got {block_prob!r}") from None
    if not (0.0 < q <= 1.0):
        raise ValueError(f"block_prob must lie in (0, 1]; got {block_prob!r}")
    return b, q


def check_finite_nonneg(name, arr):
    """Raise unless every entry of ``arr`` is finite and >= 0."""
    arr = np.asarray(arr, dtype=np.float64)
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValueError(f"{name} must be finite; got {arr[bad].flat[0]!r}")
    if (arr < 0).any():
        raise ValueError(f"{name} must be nonnegative; got {arr[arr < 0].flat[0]!r}")
    return arr
