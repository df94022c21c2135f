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
    "MAX_NAME_LENGTH",
    "show",
    "check_int",
    "check_real",
    "check_prob",
    "check_bool",
    "check_name",
    "check_float_array",
    "check_choice",
    "check_block_params",
    "check_storage",
    "check_finite_nonneg",
    "min_block_size",
]


class TheoremPreconditionWarning(UserWarning):
    """A well-defined input that lies outside the hypotheses of one of the paper's theorems."""


MAX_NAME_LENGTH = 256
"""Longest object id or module name (characters); longer names are refused where they enter."""

_SHOW_CHARS = 80


def show(value):
    """A short, safe ``repr`` of a user value for an error message (never huge, never raising)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        v = int(value)
        if abs(v) >= 10**30:
            return f"an integer of {len(str(abs(v))) if v.bit_length() < 13000 else 'over 4000'} digits"
        return str(v)
    try:
        text = repr(value)
    except Exception:                      # pragma: no cover - exotic objects
        text = f"<{type(value).__name__}>"
    if len(text) > _SHOW_CHARS:
        text = f"{text[:_SHOW_CHARS - 20]}… ({type(value).__name__} of {len(text)} characters)"
    return text


def check_int(name, value, minimum=None, maximum=None):
    """Return ``value`` as an int, or raise if it is not an integer in ``[minimum, maximum]``.

    Booleans, strings and non-integral floats are refused; an integral float (``4.0``) is accepted.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value)) \
                and float(value).is_integer():
            value = int(value)
        else:
            raise ValueError(f"{name} must be an integer; got {show(value)}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {show(value)}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}; got {show(value)}")
    return value


def check_real(name, value, minimum=None, maximum=None, *, low_open=False, high_open=False):
    """Return ``value`` as a finite float in the given range, or raise.

    Booleans, strings, complex numbers and integers too large for a float are refused.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number; got {show(value)}")
    try:
        v = float(value)
    except OverflowError:
        raise ValueError(f"{name} must be a finite real number (at most {np.finfo(float).max:.3g}); "
                         f"got {show(value)}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be a finite real number; got {show(value)}")
    too_low = minimum is not None and (v < minimum or (low_open and v == minimum))
    too_high = maximum is not None and (v > maximum or (high_open and v == maximum))
    if too_low or too_high:
        if minimum is not None and maximum is not None:
            rule = f"lie in {'(' if low_open else '['}{minimum:g}, {maximum:g}{')' if high_open else ']'}"
        elif minimum is not None:
            rule = f"be {'>' if low_open else '>='} {minimum:g}"
        else:
            rule = f"be {'<' if high_open else '<='} {maximum:g}"
        raise ValueError(f"{name} must {rule}; got {show(value)}")
    return v


def check_prob(name, value):
    """A probability in (0, 1] (a real number, never a string or a bool)."""
    return check_real(name, value, 0.0, 1.0, low_open=True)


def check_bool(name, value):
    """``True`` or ``False`` (also NumPy booleans); anything else, ``"no"`` included, is refused."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise ValueError(f"{name} must be True or False; got {show(value)}")


def check_name(name, value):
    """An object id or a module name: a nonempty printable string of at most 256 characters.

    Printable (``str.isprintable``) excludes NUL, newlines, tabs and other control characters,
    which would make names collide or differ invisibly in ``.npz`` keys, matrix names and
    messages. ``/`` is allowed: every key that embeds a name (``object/<id>``,
    ``module/<M>/<k>``) is parsed from both ends, so it round-trips.
    """
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string; got {type(value).__name__} {show(value)}")
    if not value:
        raise ValueError(f"{name} must be a nonempty string; got ''")
    if len(value) > MAX_NAME_LENGTH:
        raise ValueError(f"{name} must be at most {MAX_NAME_LENGTH} characters; got {len(value)} "
                         f"characters ({show(value[:30])}…)")
    if not value.isprintable():
        bad = next(c for c in value if not c.isprintable())
        raise ValueError(f"{name} must be printable text (no control characters such as NUL, tab or "
                         f"newline); got {show(value)} containing {bad!r}")
    return value


_KIND_TEXT = {"b": "booleans", "c": "complex numbers", "U": "strings", "S": "bytes", "M": "datetimes",
              "m": "time deltas", "V": "structured records", "O": "objects"}


def check_float_array(name, value, ndims=(1,), allow_empty=False, finite=True):
    """Return ``value`` as a float64 ndarray of one of ``ndims`` dimensions, or raise.

    Refused: strings, booleans, complex, datetime, structured and object arrays; ragged nested
    lists; numbers too large for a float; empty arrays (unless ``allow_empty``); non-finite
    entries (when ``finite``). Integers are converted.
    """
    if isinstance(value, (str, bytes, dict)) or value is None:
        raise ValueError(f"{name} must be an array of numbers; got {type(value).__name__} {show(value)}")
    if isinstance(value, np.ndarray):
        arr = value
    else:
        try:
            arr = np.asarray(value)
        except (ValueError, TypeError):
            raise ValueError(f"{name} must be a rectangular array of numbers (every row the same length); "
                             f"got ragged nested lists {show(value)}") from None
    kind = arr.dtype.kind
    if kind == "O":
        try:
            arr = np.asarray(arr.tolist() if arr.ndim else arr.item(), dtype=np.float64)
        except OverflowError:
            raise ValueError(f"{name} must hold finite numbers (at most {np.finfo(float).max:.3g}); got an "
                             "integer too large for a float") from None
        except (TypeError, ValueError):
            bad = next((v for v in arr.ravel() if isinstance(v, (str, bytes, dict, list, tuple, bool))
                        or v is None), None)
            raise ValueError(f"{name} must hold numbers only; got {show(bad) if bad is not None else show(value)}"
                             ) from None
    elif kind not in "iuf":
        raise ValueError(f"{name} must hold real numbers; got {_KIND_TEXT.get(kind, arr.dtype)} "
                         f"(dtype {arr.dtype}): {show(value)}")
    if arr.ndim not in ndims:
        want = " or ".join(f"{n}-d" for n in ndims)
        raise ValueError(f"{name} must be a {want} array; got {arr.ndim}-d of shape {arr.shape}")
    if not allow_empty and (arr.size == 0 or (arr.ndim and arr.shape[-1] == 0)):
        raise ValueError(f"{name} must not be empty; got shape {arr.shape}")
    out = np.asarray(arr, dtype=np.float64)
    if finite and not np.all(np.isfinite(out)):
        bad = out[~np.isfinite(out)].flat[0]
        extra = " (a number too large for a float?)" if np.isinf(bad) and kind != "f" else ""
        raise ValueError(f"{name} must be finite{extra}; got {bad!r}")
    return out


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
            f"3·max(⌈log2 N⌉, ⌈log2 d⌉+3) = {need} ({n_txt}d={show(d_sketch)}); got {b}"
        )
    if d_sketch % b != 0:
        raise ValueError(f"d_sketch must be a multiple of block_size={b}; got d_sketch={show(d_sketch)}")
    q = check_prob("block_prob", block_prob)
    dd = float(min(d_sketch, 2**60))
    if q * dd * (dd / b) < 1.0:
        raise ValueError(f"block_prob must give each matrix at least one expected nonzero block (q·d²/b ≥ 1); "
                         f"got q={block_prob!r} with d={show(d_sketch)}, b={b}, so the matrices would be all zeros")
    return b, q


STORAGES = ("stored", "implicit")


def check_storage(family, storage):
    """How a bank keeps its block-sparse matrices: ``"stored"`` (default) or ``"implicit"``. Returns it.

    ``storage`` applies to family ``"block-sparse"`` only: for any other family it must be None.
    """
    if family != "block-sparse":
        if storage is not None:
            raise ValueError(f"storage applies only to family 'block-sparse'; got storage={show(storage)} with "
                             f"family {family!r}")
        return None
    if storage is None:
        return "stored"
    if not isinstance(storage, str) or storage not in STORAGES:
        raise ValueError(f"storage must be one of {', '.join(map(repr, STORAGES))} (or None for 'stored'); got "
                         f"{show(storage)}")
    return storage


def check_finite_nonneg(name, arr):
    """Raise unless every entry of ``arr`` is finite and >= 0."""
    arr = np.asarray(arr, dtype=np.float64)
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValueError(f"{name} must be finite; got {arr[bad].flat[0]!r}")
    if (arr < 0).any():
        raise ValueError(f"{name} must be nonnegative; got {arr[arr < 0].flat[0]!r}")
    return arr
