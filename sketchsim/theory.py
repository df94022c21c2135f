"""Closed-form constants and predictions of the paper's mechanism (THEORY.md §2).

Used by the decoders, the tests, the reports and the plots; every formula names its source.
"""
from __future__ import annotations

from ._validation import check_int

__all__ = ["depth_constant", "object_sketch_constant"]


def depth_constant(depth):
    """c_h = 2^{-(4h-3)}: the coefficient of every word carrying an object at depth h (THEORY §2.1).

    The identity word of object θ contributes c_h·W_θ·R_{M,1} x_θ + c_h·W_θ·R_{M,2} e_1 to
    s_overall (h = 2: 1/32, h = 3: 1/512, h = 4: 1/8192).
    """
    h = check_int("depth", depth, minimum=2)
    return 2.0 ** (-(4 * h - 3))


def object_sketch_constant(depth):
    """2^{-(4h-7)}: coefficient of s_object(θ) under its all-tuple word A_obj (THEORY §2.2)."""
    h = check_int("depth", depth, minimum=2)
    return 2.0 ** (-(4 * h - 7))
