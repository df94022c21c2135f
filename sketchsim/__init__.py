"""sketchsim: executable reference implementation of *Recursive Sketches for Modular Deep
Learning* (Ghazi, Panigrahy, Wang, ICML 2019).

Public API (a contract): :class:`Graph`, :class:`MatrixBank`, :func:`sketch`,
:func:`sketch_objects`, :func:`sketch_batch`, :func:`sketch_many`, the synthetic generators
:func:`random_network` and :func:`fixed_tree_values`, :func:`warm_up`, and
:func:`release_workspace` (frees the per-thread scratch the sketch engine keeps between calls).
"""
from ._validation import TheoremPreconditionWarning
from .graph import Graph, GraphWarning, fixed_tree_values, random_network
from .matrices import FAMILIES, MatrixBank, module_name, tuple_name
from .sketch import release_workspace, sketch, sketch_batch, sketch_many, sketch_objects, warm_up

__version__ = "0.1.0"

__all__ = [
    "Graph", "GraphWarning", "TheoremPreconditionWarning", "MatrixBank", "FAMILIES",
    "module_name", "tuple_name", "sketch", "sketch_objects", "sketch_batch", "sketch_many",
    "random_network", "fixed_tree_values", "warm_up", "release_workspace", "__version__",
]
