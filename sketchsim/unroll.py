"""Blind unrolling: find which objects of which modules sit where in a sketch (THEORY.md §2.5).

**An extension, not the paper's.** The paper's decoders (Theorems 1–3) read an object back when
its module, depth and index path are known. :func:`unroll` is given only the sketch, the bank and a
list of candidate module names, and returns an estimated :class:`~sketchsim.graph.Graph`: the
objects, their modules, their tuple positions (the tree), their effective weights and their
attributes.

Model
-----
s_overall is linear in the unknowns of each object θ (THEORY.md §2.1): with z_θ = W_θ·x_θ (the
attribute times the effective weight) and W_θ,

    s = Σ_θ C_θ [z_θ; W_θ],   C_θ = Q_path(θ) · A'_M,
    A'_M = ½(I+R_{M,0}) · ¼(I+R_1) · ½ [R_{M,1}, R_{M,2} e_1],
    Q_path = ½(I+R_{i_1}) · Π_{ancestors P} [½(I+R_{P,0}) · ¼(I+R_2) · ½(I+R_{i_next})].

C_θ depends only on the index path, the modules along it and M(θ), never on the weights, so once
the structure is known the attributes and weights follow from one (overdetermined while
Σ(L_θ+1) < d) least-squares problem, which is exact up to rounding (THEORY.md §2.5, "joint LS").
The work is in finding the structure.

Algorithm (greedy, top-down, orthogonal matching pursuit over candidate words)
------------------------------------------------------------------------------
For each depth h = 2 … ``max_depth`` (the output pseudo-object has depth 1):

1. **Candidates**: every (found parent at depth h−1, or the output; position 1…``max_inputs`` not
   yet taken; module). Its score vector u_c = C_cᵀ r is computed through operators only
   (``apply_t``; no d×d matrix): pull the residual r back along the parent's path once, then
   through ½(I+R_j)ᵀ and A'_Mᵀ.
2. **Formal Gram.** E[C_cᵀ C_c'] = κ(c, c')·I, with κ the sum over the *formal words* the two
   column maps share of the products of their coefficients (expand every (I+R)/2 factor into I and
   R; words ending in different modules never meet). κ captures every coincidence of the literal
   construction: same-module siblings at positions 1 and 2 share half their words (THEORY.md
   §2.3), a deeper object of module M shares 1/8 of its words with a shallower candidate of M at
   its own position (a "ghost"), cousins at the same position share words through the identity
   branches of their parents.
3. **OMP in the formal metric**: the score of c is the energy of the residual along the part of c
   orthogonal (under κ) to the objects already accepted,
   ‖u_c − Σ κ(c,θ) Δz_θ‖² / (κ_cc − k_cᵀK⁻¹k_c).
   Under the null (no object there) score/σ² ~ χ²_{L+1} with σ² = ‖r‖²/d (a coordinate of a
   randomly rotated residual), so the best candidate is accepted while score > σ²·χ²_{L+1}
   quantile at ``alpha``/(number of candidates of the level) (Bonferroni); each acceptance takes
   its position. σ² stays that of the residual the level started from: a formal update leaves
   the cross-talk (C_cᵀC_θ − κI)Δz_θ, of variance ≈ (energy of θ)/d per coordinate, so formally
   explained energy is still noise to the other candidates. Objects lighter than that noise are
   found by a later pass (step 6), once the heavier ones are explained exactly.
4. **Exact refit.** All accepted objects are refit jointly. The column maps C_θ ("word images",
   rows (L+1, d)) are built once through the operators and cached with their Gram blocks
   C_a C_bᵀ; while they fit ``EXPLICIT_MAX_BYTES`` the normal equations CᵀC y = Cᵀs are solved
   directly (Cholesky, O(Σ(L+1)³)); above it by preconditioned conjugate gradients through the
   operators (formal Gram K⊗I as preconditioner) until the residual left in the span of the found
   columns is below 1% of the noise floor. Either way r = s − C y is the exact residual the next
   depth is searched in — and must be: a solver error ε‖s‖ in that span is not white, a
   candidate sharing words with a found node reads a d-independent share of it while σ² falls
   as 1/d, so a 10⁻⁸-relative solve (the conjugate gradients used before issue 10's second study)
   produced false objects of weight ≈ 10⁻⁸ at d ≥ 2^14 in 25–45% of 5- and 10-object trees.
   Because found objects are explained away exactly, the noise that hides a deep, light object is
   the energy of what is still unexplained, not ‖s‖: the 2^{4h} penalty of the paper's
   single-word decoders does not apply once the shallower objects are found.
5. **Moves and pruning.** Each node in turn is taken out of the fit and its position rescored with
   every module — and, for a leaf, every free position of its input list; it moves when another
   (position, module) explains SWAP_MARGIN times more (ghosts that took a position before the
   deeper objects they mimicked were reachable, a module chosen under noise, a sibling placed at
   a position sharing words with its own). Then nodes whose removal would cost less than the
   acceptance threshold (formal Schur complement ‖z_θ‖²/(K⁻¹)_θθ against σ²·χ²_{L+1}, σ² the
   residual energy per remaining degree of freedom, Bonferroni over the nodes) or with Ŵ ≤ 0 are
   dropped one at a time with their subtrees, refitting after each.
6. **Passes.** Steps 1–5 repeat over all depths until a pass changes nothing or returns to a
   structure already seen (at most ``MAX_SWEEPS``).

Limits (honest): one object per position (a tree, as in a Graph); a DAG's shared child is found
once per path; objects of weight 0 are not in the sketch and cannot be found; positions with gaps
(a missed object at position 1 of a list whose position 2 was found) are compacted in the returned
Graph, whose sketch then differs — :class:`UnrollInfo` keeps the detected paths.
"""
from __future__ import annotations

import functools
import math
import numbers
import warnings
from dataclasses import dataclass, field

import numpy as np

from ._validation import TheoremPreconditionWarning, check_int
from .graph import Graph
from .matrices import MatrixBank, module_name, tuple_name

__all__ = ["unroll", "UnrollInfo", "fit_structure", "column_words", "formal_gram", "DEFAULT_LENGTH", "MAX_DEPTH",
           "MAX_INPUTS", "ALPHA", "REL_NOISE_FLOOR"]

DEFAULT_LENGTH = 16
"""Attribute length tried for every module when ``length`` is not given. Trailing coordinates that
decode to noise are trimmed from the returned attributes."""
MAX_DEPTH = 5
"""Largest ``max_depth`` accepted (a depth-h column map has 2^{3h−3} formal words)."""
MAX_INPUTS = 64
"""Largest ``max_inputs`` accepted."""
ALPHA = 1e-3
"""Default family-wise false-alarm probability of the acceptance test, per depth (Bonferroni over
the candidates of that depth)."""
REL_NOISE_FLOOR = 1e-7
"""σ² is never taken below (REL_NOISE_FLOOR·‖s‖)²/d: once everything is explained the residual is
rounding, and a column of pure rounding must not pass the test. The exact refit leaves ≈ 10⁻¹⁵‖s‖
(measured, hadamard 2^10–2^16), 10⁸ below the floor; the price is that an object carrying less than
≈ 10⁻¹⁴ of ‖s‖² cannot be detected."""
PCG_LEAK = 1e-2
"""Operator-only refit (conjugate gradients): iterate until the energy of the residual left inside
the span of the found columns is below PCG_LEAK × the noise floor (REL_NOISE_FLOOR·‖s‖)²/d, so that
the acceptance test never reads solver error as signal (see :func:`_refit`)."""
PCG_MAX_ITER = 200
PCG_STALL = 8
"""Conjugate gradients stop after PCG_STALL steps without halving the residual energy (rounding)."""
MAX_SWEEPS = 32
"""Largest number of top-down passes. A pass searches every depth, then moves and prunes; the
passes repeat until one changes nothing or returns to a structure already seen (a cycle). Each
pass's acceptance test reads the noise of the residual the pass starts from, so objects lighter
than that noise are found in a later pass, once the heavier ones are explained exactly; positions
freed by pruning (ghosts removed once the deeper objects they mimicked were found) are searched
again."""
SWAP_MARGIN = 1.5
"""A node moves (other module, or for a leaf another free position of its list) only when the new
(position, module) explains SWAP_MARGIN times more energy than its own."""


# --------------------------------------------------------------------------- formal words
def _factors(path, ancestors, module):
    """Factors (scalar, matrix name or None) of the column map C, outermost first."""
    path = [int(i) for i in path]
    out = [(0.5, tuple_name(path[0]))]
    for P, i in zip(ancestors, path[1:]):
        out += [(0.5, module_name(P, 0)), (0.25, tuple_name(2)), (0.5, tuple_name(i))]
    out += [(0.5, module_name(module, 0)), (0.25, tuple_name(1)), (0.5, None)]
    return out


def column_words(path, ancestors, module):
    """Formal-word expansion of the column map C = Q_path · A'_M without its last matrix.

    Parameters
    ----------
    path : sequence of int
        (i_1, …, i_{h−1}), 1-based positions from the output down.
    ancestors : sequence of str
        Modules of the objects on the path above the object (h−2 of them, outermost first).
    module : str
        M(θ); every word continues with R_{M,1} (attributes) or R_{M,2} e_1 (counting).

    Returns
    -------
    dict of tuple of matrix names (outermost first; the identity is the empty tuple) -> coefficient
    """
    words = {(): 1.0}
    for a, name in _factors(path, ancestors, module):
        new = {}
        for w, c in words.items():
            new[w] = new.get(w, 0.0) + a * c
            if name is not None:
                w2 = w + (name,)
                new[w2] = new.get(w2, 0.0) + a * c
        words = new
    return words


def formal_gram(words1, module1, words2, module2):
    """κ: E[⟨C_1 e_j, C_2 e_j⟩] for independent isotropic matrices — the sum over shared formal
    words of the products of their coefficients; 0 for different modules."""
    if module1 != module2:
        return 0.0
    if len(words2) < len(words1):
        words1, words2 = words2, words1
    return float(sum(c * words2.get(w, 0.0) for w, c in words1.items()))


# --------------------------------------------------------------------------- structure and operators
EXPLICIT_MAX_BYTES = 384 * 2 ** 20
"""Word images kept in memory: the column maps C_θ of the found nodes (rows (L+1, d) each) are built
once, through the operators, and reused by every forward map, adjoint and Gram while their total
size stays below this; above it (d = 2^20 with many objects) every product goes through the
operators again. Results differ only by rounding between the two modes."""
APRIME_MAX_BYTES = 128 * 2 ** 20
"""A'_M of every candidate module (rows (L+1, d) each) is kept when their total fits; candidate
scores are then one GEMM instead of three operator passes per module."""


def _key(path, ancestors, module):
    """Hashable identity of a column map: (index path, ancestors' modules, module)."""
    return (tuple(int(i) for i in path), tuple(ancestors), module)


@functools.lru_cache(maxsize=1 << 16)
def _words_of_key(key):
    path, anc, module = key
    return column_words(path, list(anc), module)


@functools.lru_cache(maxsize=1 << 18)
def _kappa_ordered(k1, k2):
    return formal_gram(_words_of_key(k1), k1[2], _words_of_key(k2), k2[2])


def _kappa(k1, k2):
    """κ of two column maps given by their keys (cached; symmetric)."""
    if k1[2] != k2[2]:
        return 0.0
    return _kappa_ordered(k1, k2) if k1 <= k2 else _kappa_ordered(k2, k1)


@dataclass
class _Node:
    path: tuple
    module: str
    parent: int          # index into the node list, -1 for the output
    L: int
    words: dict
    children: list = field(default_factory=list)
    key: tuple = ()

    @property
    def depth(self):
        return len(self.path) + 1


def _e1(bank, module):
    """R_{M,2} e_1, cached on the operator (the decoders' own helper)."""
    from .decode import _e1_image      # decode re-exports this module: import at call time

    return _e1_image(bank, module)


def _group_apply(bank, names, X, transpose=False):
    """Row k of the result is R_{names[k]} X[k] (or its transpose): one operator call per name."""
    out = np.empty((len(names), bank.d_sketch))
    groups = {}
    for k, n in enumerate(names):
        groups.setdefault(n, []).append(k)
    for n, ks in groups.items():
        op = bank.get(n)
        out[ks] = op.apply_t(X[ks]) if transpose else op.apply(X[ks])
    return out


def _attr_adjoint(bank, module, G, L):
    """A'_Mᵀ for the rows of G: [½ R_{M,1}ᵀ a [:L], ½⟨R_{M,2}e_1, a⟩], a = ¼(I+R_1)ᵀ ½(I+R_{M,0})ᵀ g."""
    t = 0.5 * (G + bank.get(module_name(module, 0)).apply_t(G))
    a = 0.25 * (t + bank.get(tuple_name(1)).apply_t(t))
    U = np.empty((G.shape[0], L + 1))
    U[:, :L] = 0.5 * bank.get(module_name(module, 1)).apply_t(a)[:, :L]
    U[:, L] = 0.5 * (a @ _e1(bank, module))
    return U


def _half(bank, name, X, c=0.5):
    """c·(I + R_name) applied to the rows of X."""
    return c * (X + bank.get(name).apply(X))


def _path_rows(bank, key, X):
    """Q_path applied to rows X that live in the output space of the object (after ½(I+R_{M,0}))."""
    path, anc, _ = key
    for t in range(len(path) - 1, 0, -1):            # innermost level first
        X = _half(bank, tuple_name(path[t]), X)
        X = _half(bank, tuple_name(2), X, 0.25)
        X = _half(bank, module_name(anc[t - 1], 0), X)
    return _half(bank, tuple_name(path[0]), X)


class _Images:
    """Cache of word images shared by the structures of one :func:`unroll` call: A'_M per module,
    C_θ per column map (both as rows (L+1, d)) and the Gram blocks C_a C_bᵀ of pairs of them."""

    def __init__(self, bank, aprime_ok=True):
        self.bank = bank
        self.d = bank.d_sketch
        self.aprime_ok = aprime_ok
        self.aprime = {}
        self.cols = {}
        self.gram = {}

    def module_rows(self, module, L):
        """A'_M as rows: row j < L is A'_M e_j, row L is A'_M e_{L+1} (the counting channel)."""
        key = (module, L)
        A = self.aprime.get(key)
        if A is not None:
            return A
        bank = self.bank
        A = np.empty((L + 1, self.d))
        A[:L] = 0.5 * bank.get(module_name(module, 1)).apply(np.eye(L))
        A[L] = 0.5 * _e1(bank, module)
        A = _half(bank, tuple_name(1), A, 0.25)
        A = _half(bank, module_name(module, 0), A)
        if self.aprime_ok:
            self.aprime[key] = A
        return A

    def scores(self, module, X, L):
        """A'_Mᵀ for the rows of X (through the cached A'_M when it is kept)."""
        if self.aprime_ok:
            return X @ self.module_rows(module, L).T
        return _attr_adjoint(self.bank, module, X, L)

    def columns(self, key, L):
        """C_θ as rows (L+1, d), built through the operators once."""
        ck = (key, L)
        C = self.cols.get(ck)
        if C is None:
            C = self.cols[ck] = _path_rows(self.bank, key, self.module_rows(key[2], L))
        return C

    def map_rows(self, key, L, Y):
        """Rows y ↦ C_θ y without keeping C_θ (operators only)."""
        bank = self.bank
        Y = np.atleast_2d(Y)
        A = 0.5 * (bank.get(module_name(key[2], 1)).apply(Y[:, :L]) + Y[:, L:L + 1] * _e1(bank, key[2])[None, :])
        A = _half(bank, tuple_name(1), A, 0.25)
        A = _half(bank, module_name(key[2], 0), A)
        return _path_rows(bank, key, A)

    def gram_block(self, ca, cb):
        """C_a C_bᵀ for two (key, L) column identities (cached)."""
        if ca > cb:
            return self.gram_block(cb, ca).T
        G = self.gram.get((ca, cb))
        if G is None:
            G = self.gram[(ca, cb)] = self.columns(*ca) @ self.columns(*cb).T
        return G

    def trim(self, live):
        """Drop the column images (and their Gram blocks) not in ``live`` once over budget."""
        size = sum(C.nbytes for C in self.cols.values())
        if size <= EXPLICIT_MAX_BYTES:
            return
        for ck in [c for c in self.cols if c not in live]:
            del self.cols[ck]
        self.gram = {p: G for p, G in self.gram.items() if p[0] in live and p[1] in live}


class _Structure:
    """The found tree and its linear map y = [z_θ; W_θ]_θ ↦ s (forward) and its adjoint."""

    def __init__(self, bank, images=None):
        self.bank = bank
        self.nodes = []
        self.images = images if images is not None else _Images(bank)

    def add(self, path, module, parent, L, words):
        anc = () if parent < 0 else self.nodes[parent].key[1] + (self.nodes[parent].module,)
        self.nodes.append(_Node(tuple(path), module, parent, L, words, key=_key(path, anc, module)))
        k = len(self.nodes) - 1
        if parent >= 0:
            self.nodes[parent].children.append(k)
        return k

    def col_ids(self):
        return [(n.key, n.L) for n in self.nodes]

    def explicit(self):
        """Whether the column images of every node fit the memory budget."""
        return sum(n.L + 1 for n in self.nodes) * self.bank.d_sketch * 8 <= EXPLICIT_MAX_BYTES

    def by_depth(self):
        out = {}
        for k, n in enumerate(self.nodes):
            out.setdefault(n.depth, []).append(k)
        return [out[h] for h in sorted(out)]

    def node_forward(self, k, y):
        """C_k y for one node."""
        n = self.nodes[k]
        if self.explicit():
            return y @ self.images.columns(n.key, n.L)
        return self.images.map_rows(n.key, n.L, y[None, :])[0]

    def forward(self, Y):
        """s = Σ_θ C_θ y_θ."""
        if not self.explicit():
            return self._forward_ops(Y)
        s = np.zeros(self.bank.d_sketch)
        self.images.trim(set(self.col_ids()))
        for n, y in zip(self.nodes, Y):
            s += y @ self.images.columns(n.key, n.L)
        return s

    def adjoint(self, r, want_inputs=False):
        """(U, G_in): U[k] = C_kᵀ r, and G_in[k] = the residual pulled back into the input-list space
        of node k (what a child candidate at position j reads through ½(I+R_j)ᵀ), for every node
        when ``want_inputs`` is True, or for the node indices it lists."""
        if not self.explicit():
            return self._adjoint_ops(r, want_inputs)
        self.images.trim(set(self.col_ids()))
        U = [self.images.columns(n.key, n.L) @ r for n in self.nodes]
        want = range(len(self.nodes)) if want_inputs is True else (want_inputs or ())
        return U, self.inputs(r, want)

    def inputs(self, r, ks):
        """{k: residual pulled back into node k's input-list space} (operators, shared prefixes)."""
        bank = self.bank
        g, gin = {}, {}

        def g_of(k):
            if k not in g:
                n = self.nodes[k]
                src = r if n.parent < 0 else gin_of(n.parent)
                x = src[None, :]
                g[k] = 0.5 * (x + bank.get(tuple_name(n.path[-1])).apply_t(x))
            return g[k]

        def gin_of(k):
            if k not in gin:
                x = g_of(k)
                t = 0.5 * (x + bank.get(module_name(self.nodes[k].module, 0)).apply_t(x))
                gin[k] = (0.25 * (t + bank.get(tuple_name(2)).apply_t(t)))[0]
            return gin[k]

        return {k: gin_of(k) for k in ks}

    def normal_matrix(self):
        """CᵀC of the found nodes (n_par × n_par) from cached Gram blocks, and the offsets."""
        ids = self.col_ids()
        off = np.concatenate([[0], np.cumsum([L + 1 for _, L in ids])]).astype(int)
        G = np.empty((off[-1], off[-1]))
        for a, ca in enumerate(ids):
            for b in range(a, len(ids)):
                B = self.images.gram_block(ca, ids[b])
                G[off[a]:off[a + 1], off[b]:off[b + 1]] = B
                if b != a:
                    G[off[b]:off[b + 1], off[a]:off[a + 1]] = B.T
        return G, off

    def _forward_ops(self, Y):
        """s = Σ_θ C_θ y_θ, computed level by level from the deepest (the sketch recursion)."""
        bank, d = self.bank, self.bank.d_sketch
        o = {}
        levels = self.by_depth()
        for ks in reversed(levels):
            A = np.zeros((len(ks), d))
            for m in {self.nodes[k].module for k in ks}:
                rows = [r for r, k in enumerate(ks) if self.nodes[k].module == m]
                L = self.nodes[ks[rows[0]]].L
                Z = np.array([Y[ks[r]][:L] for r in rows])
                A[rows] = 0.5 * (bank.get(module_name(m, 1)).apply(Z)
                                 + np.array([Y[ks[r]][L] for r in rows])[:, None] * _e1(bank, m)[None, :])
            T = 0.25 * (A + bank.get(tuple_name(1)).apply(A))
            par = [r for r, k in enumerate(ks) if self.nodes[k].children]
            if par:
                kids = [(r, c) for r in par for c in self.nodes[ks[r]].children]
                X = np.array([o[c] for _, c in kids])
                X = 0.5 * (X + _group_apply(bank, [tuple_name(self.nodes[c].path[-1]) for _, c in kids], X))
                inp = np.zeros((len(par), d))
                where = {r: j for j, r in enumerate(par)}
                for (r, _), x in zip(kids, X):
                    inp[where[r]] += x
                T[par] += 0.25 * (inp + bank.get(tuple_name(2)).apply(inp))
            O = 0.5 * (T + _group_apply(bank, [module_name(self.nodes[k].module, 0) for k in ks], T))
            for r, k in enumerate(ks):
                o[k] = O[r]
        top = [k for k, n in enumerate(self.nodes) if n.parent < 0]
        s = np.zeros(d)
        if top:
            X = np.array([o[k] for k in top])
            s = (0.5 * (X + _group_apply(bank, [tuple_name(self.nodes[k].path[0]) for k in top], X))).sum(axis=0)
        return s

    def _adjoint_ops(self, r, want_inputs=False):
        """:meth:`adjoint` through the operators only (every node, level by level)."""
        bank = self.bank
        U, G_in, g = {}, {}, {}
        wanted = set(range(len(self.nodes))) if want_inputs is True else set(want_inputs or ())
        top = [k for k, n in enumerate(self.nodes) if n.parent < 0]
        if top:
            X = np.broadcast_to(r, (len(top), len(r))).copy()
            X = 0.5 * (X + _group_apply(bank, [tuple_name(self.nodes[k].path[0]) for k in top], X, True))
            for k, x in zip(top, X):
                g[k] = x
        for ks in self.by_depth():
            Gm = np.array([g[k] for k in ks])
            T = 0.5 * (Gm + _group_apply(bank, [module_name(self.nodes[k].module, 0) for k in ks], Gm, True))
            Aa = 0.25 * (T + bank.get(tuple_name(1)).apply_t(T))
            for m in {self.nodes[k].module for k in ks}:
                rows = [j for j, k in enumerate(ks) if self.nodes[k].module == m]
                L = self.nodes[ks[rows[0]]].L
                V = bank.get(module_name(m, 1)).apply_t(Aa[rows])
                e = Aa[rows] @ _e1(bank, m)
                for j, v, ee in zip(rows, V, e):
                    U[ks[j]] = np.concatenate([0.5 * v[:L], [0.5 * ee]])
            need = [j for j, k in enumerate(ks) if self.nodes[k].children or k in wanted]
            if need:
                Gi = 0.25 * (T[need] + bank.get(tuple_name(2)).apply_t(T[need]))
                kids = []
                for j, gi in zip(need, Gi):
                    k = ks[j]
                    G_in[k] = gi
                    kids += [(c, gi) for c in self.nodes[k].children]
                if kids:
                    X = np.array([gi for _, gi in kids])
                    X = 0.5 * (X + _group_apply(bank, [tuple_name(self.nodes[c].path[-1]) for c, _ in kids],
                                                X, True))
                    for (c, _), x in zip(kids, X):
                        g[c] = x
        return [U[k] for k in range(len(self.nodes))], {k: v for k, v in G_in.items() if k in wanted}

    def gram_blocks(self):
        """{module: (node indices, K)} of the formal Gram, block-diagonal by module."""
        out = {}
        for k, n in enumerate(self.nodes):
            out.setdefault(n.module, []).append(k)
        res = {}
        for m, ks in out.items():
            K = np.array([[_kappa(self.nodes[a].key, self.nodes[b].key) for b in ks] for a in ks])
            res[m] = (ks, K)
        return res


def _precondition(blocks, R):
    out = [None] * len(R)
    for ks, Kinv in blocks:
        Z = Kinv @ np.array([R[k] for k in ks])
        for k, z in zip(ks, Z):
            out[k] = z
    return out


def _dot(A, B):
    return float(sum(a @ b for a, b in zip(A, B)))


def _refit(st, s, Y0):
    """Least squares min ‖s − C y‖ over all found nodes (THEORY.md §2.5 joint LS). Returns
    (Y, iterations).

    The residual r = s − C y it leaves is what the next acceptance test reads as noise, so its
    part inside the span of the found columns, ‖P_C r‖² = gᵀ(CᵀC)⁻¹g with g = Cᵀr, must be far
    below the noise floor: that part is not white, and a candidate sharing formal words with a
    found node sees a fraction of it that does not shrink with d, while the test's per-coordinate
    σ² does (a tolerance-level solve error ε‖s‖ passes the test once d ≳ 1/ε², the false
    detections of weight ≈ 10⁻⁸ this solve replaced).

    * Word images kept (:meth:`_Structure.explicit`): CᵀC from the cached Gram blocks, solved
      directly (Cholesky; least squares when CᵀC is singular, Σ(L+1) ≥ d); ‖P_C r‖ is then at
      rounding (≈ 10⁻¹⁵‖s‖). Counted as one iteration.
    * Operators only: preconditioned conjugate gradients on CᵀC y = Cᵀs with the formal Gram K⊗I
      as preconditioner, run until the preconditioned energy gᵀ(K⁻¹⊗I)g ≈ ‖P_C r‖² is below
      :data:`PCG_LEAK` × the noise floor (REL_NOISE_FLOOR·‖s‖)²/d, or stagnates.
    """
    b, _ = st.adjoint(s)
    if st.explicit():                      # CᵀC from the cached word images: one O(n_par³) solve
        from scipy.linalg import LinAlgError, cho_factor, cho_solve

        G, off = st.normal_matrix()
        bb = np.concatenate(b)
        try:
            y = cho_solve(cho_factor(G), bb)
        except LinAlgError:
            y = np.linalg.lstsq(G, bb, rcond=None)[0]
        if not np.all(np.isfinite(y)):
            y = np.linalg.lstsq(G, bb, rcond=None)[0]
        return [y[off[k]:off[k + 1]].copy() for k in range(len(st.nodes))], 1
    blocks = [(ks, np.linalg.pinv(K)) for ks, K in st.gram_blocks().values()]
    Y = [y.copy() for y in Y0]

    def normal(P):
        return st.adjoint(st.forward(P))[0]

    d = st.bank.d_sketch
    target = PCG_LEAK * (REL_NOISE_FLOOR ** 2) * float(s @ s) / d
    AY = normal(Y)
    R = [bb - a for bb, a in zip(b, AY)]
    Zp = _precondition(blocks, R)
    P = [z.copy() for z in Zp]
    rz = _dot(R, Zp)
    best = rz
    it = stall = 0
    while it < PCG_MAX_ITER and rz > target and stall < PCG_STALL:
        AP = normal(P)
        pap = _dot(P, AP)
        if not pap > 0:
            break
        a = rz / pap
        Y = [y + a * p for y, p in zip(Y, P)]
        R = [rr - a * ap for rr, ap in zip(R, AP)]
        Zp = _precondition(blocks, R)
        rz_new = _dot(R, Zp)
        P = [z + (rz_new / rz) * p for z, p in zip(Zp, P)]
        rz = rz_new
        it += 1
        stall = 0 if rz < 0.5 * best else stall + 1      # rounding reached: no halving in PCG_STALL steps
        best = min(best, rz)
    return Y, it


# --------------------------------------------------------------------------- result
@dataclass
class UnrollInfo:
    """Diagnostics of :func:`unroll`.

    Attributes
    ----------
    paths : list of tuple
        Detected index paths (1-based positions from the output), one per object, in the order of
        ``graph.ids`` (before any compaction of gaps).
    modules : list of str
    weights : ndarray
        Estimated effective weights W_θ (the counting-channel coefficient of the refit).
    estimates : list of ndarray
        The refit unknowns [W_θ x_θ; W_θ] of each object (untrimmed, unclipped).
    residual_norm : float
        ‖s − C y‖ after the final refit.
    noise : float
        σ, the final per-coordinate noise level used by the tests.
    n_candidates : int
        Candidate (parent, position, module) triples scored over all depths.
    pcg_iterations : int
        Refit iterations over all passes (a direct solve, used while the word images are kept,
        counts one; conjugate-gradient steps otherwise).
    pruned : list of (path, module)
        Objects accepted and later removed (ghosts of deeper objects or noise).
    compacted : bool
        Whether some input list had a gap in its positions (the returned graph renumbers them).
    """

    paths: list
    modules: list
    weights: np.ndarray
    estimates: list
    residual_norm: float
    noise: float
    n_candidates: int
    pcg_iterations: int
    pruned: list
    compacted: bool


# --------------------------------------------------------------------------- validation
def _check_sketch(s, bank):
    if not isinstance(bank, MatrixBank):
        raise ValueError(f"bank must be a sketchsim.MatrixBank; got {type(bank).__name__}")
    if type(s).__name__ == "ErasedSketch":
        raise ValueError("s must be a full sketch (an array of shape (d_sketch,)); erased sketches are "
                         "not supported by unroll; got an ErasedSketch")
    arr = np.asarray(s, dtype=np.float64)
    d = bank.d_sketch
    if arr.shape != (d,):
        raise ValueError(f"s must have shape (d_sketch,) = ({d},) to match the bank; got shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValueError(f"s must be finite; got {float(arr[bad][0])!r} at index {int(np.flatnonzero(bad)[0])}")
    return arr


def _check_modules(modules):
    if isinstance(modules, str) or not hasattr(modules, "__iter__"):
        raise ValueError(f"modules must be a nonempty list of module names; got {modules!r}")
    mods = list(modules)
    if not mods:
        raise ValueError("modules must be a nonempty list of module names; got []")
    for m in mods:
        if not isinstance(m, str) or not m:
            raise ValueError(f"modules must hold nonempty strings (module names); got {m!r}")
        if "/" in m:
            raise ValueError(f"module names must not contain '/' (matrix names are module/<M>/<k>); got {m!r}")
    dup = [m for m in dict.fromkeys(mods) if mods.count(m) > 1]
    if dup:
        raise ValueError(f"modules must be unique; got {dup[0]!r} more than once")
    return mods


def _check_lengths(length, modules, d):
    def one(name, v):
        L = check_int(name, v, minimum=1)
        if L + 1 > d:
            raise ValueError(f"{name} must be at most d_sketch − 1 = {d - 1}; got {L}")
        return L

    if length is None:
        return {m: min(DEFAULT_LENGTH, d - 1) for m in modules}
    if isinstance(length, dict):
        unknown = [m for m in length if m not in modules]
        if unknown:
            raise ValueError(f"length must be keyed by the candidate modules {modules}; got unknown module "
                             f"{unknown[0]!r}")
        missing = [m for m in modules if m not in length]
        if missing:
            raise ValueError(f"length must give every candidate module a length; {missing[0]!r} is missing")
        return {m: one(f"length[{m!r}]", length[m]) for m in modules}
    L = one("length", length)
    return {m: L for m in modules}


def _check_bounded(name, v, lo, hi):
    x = check_int(name, v, minimum=lo)
    if x > hi:
        raise ValueError(f"{name} must be in {lo}..{hi}; got {x}")
    return x


def _check_alpha(alpha):
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0.0 < float(alpha) < 1.0:
        raise ValueError(f"alpha must be a number in (0, 1); got {alpha!r}")
    return float(alpha)


# --------------------------------------------------------------------------- the search
@functools.lru_cache(maxsize=4096)
def _chi2_threshold(dof, alpha, m):
    """χ²_{dof} quantile exceeded with probability alpha/m under the null (Bonferroni over m)."""
    from scipy.stats import chi2

    return float(chi2.isf(alpha / max(1, m), dof))


def _candidate_scores(st, bank, parents, G_root, G_in, taken, modules, lengths, max_inputs):
    """[(parent, position, module, u_c, key, path)] for every free (parent, position, module); ``key``
    names the candidate's column map (its formal words are ``_words_of_key(key)``)."""
    cands = []
    rows, meta = [], []
    for p in parents:
        g = G_root if p < 0 else G_in[p]
        for j in range(1, max_inputs + 1):
            if (p, j) in taken:
                continue
            rows.append(g)
            meta.append((p, j))
    if not rows:
        return cands
    X = np.array(rows)
    X = 0.5 * (X + _group_apply(bank, [tuple_name(j) for _, j in meta], X, True))
    for m in modules:
        U = st.images.scores(m, X, lengths[m])
        for (p, j), u in zip(meta, U):
            if p < 0:
                path, anc = (j,), ()
            else:
                n = st.nodes[p]
                path = n.path + (j,)
                anc = n.key[1] + (n.module,)
            cands.append([p, j, m, u, _key(path, anc, m), path])
    return cands


def _ancestors(st, k):
    out = []
    p = st.nodes[k].parent
    while p >= 0:
        out.append(p)
        p = st.nodes[p].parent
    return out[::-1]


def _omp_level(st, cands, Ycur, Ures, r2, d, floor2, alpha, lengths):
    """Formal-metric OMP among one depth's candidates. Returns the accepted candidates with their
    formal increments, and the list of increments for the existing nodes (same order as st.nodes)."""
    n0 = len(st.nodes)
    thr = {L: _chi2_threshold(L + 1, alpha, len(cands)) for L in set(lengths.values())}
    # per module: members (existing node indices or ('c', idx)) with their words and b vectors
    members = {m: [k for k, n in enumerate(st.nodes) if n.module == m] for m in lengths}

    def key_of(x):
        return st.nodes[x].key if isinstance(x, int) else cands[x[1]][4]

    def b_of(x):
        return Ures[x] if isinstance(x, int) else cands[x[1]][3]

    def kap(x, y):
        return _kappa(key_of(x), key_of(y))

    def solve(m):
        T = members[m]
        if not T:
            return T, None, None
        K = np.array([[kap(a, b) for b in T] for a in T])
        Kinv = np.linalg.pinv(K)
        B = np.array([b_of(x) for x in T])
        return T, Kinv, Kinv @ B

    alive = set(range(len(cands)))
    accepted = []
    state = {m: solve(m) for m in lengths}
    # The noise the test reads stays that of the level's starting residual, σ² = ‖r‖²/d: the
    # formal update u_c − κ(c,θ)Δz_θ leaves the error (C_cᵀC_θ − κI)Δz_θ, whose coordinates have
    # variance ≈ κ_cc·κ_θθ‖Δz_θ‖²/d, so an object explained formally still adds its energy/d to
    # every other candidate's noise. (Lowering σ² by the formally explained energy read that
    # cross-talk as signal: ≈ 10–15 false acceptances per tree, each pruned again after a refit.)
    sigma2 = max(r2 / d, floor2)
    while alive:
        best, best_ratio = None, 1.0
        for ci in alive:
            p, j, m, u, key, path = cands[ci]
            T, Kinv, DZ = state[m]
            kcc = kap(("c", ci), ("c", ci))
            if T:
                kc = np.array([kap(("c", ci), x) for x in T])
                v = u - kc @ DZ
                e = kcc - float(kc @ Kinv @ kc)
            else:
                v, e = u, kcc
            if e <= 1e-9 * kcc or not v[-1] > 0:        # the counting coefficient W must be > 0
                continue
            score = float(v @ v) / e
            ratio = score / (sigma2 * thr[lengths[m]])
            if ratio > best_ratio:
                best, best_ratio = ci, ratio
        if best is None:
            break
        p, j, m = cands[best][:3]
        accepted.append(best)
        members[m].append(("c", best))
        state[m] = solve(m)
        alive = {ci for ci in alive if not (cands[ci][0] == p and cands[ci][1] == j)}
    # formal increments for existing nodes and accepted candidates
    inc_nodes = [np.zeros_like(Ycur[k]) for k in range(n0)]
    inc_cands = {}
    for m, (T, Kinv, DZ) in state.items():
        if not T:
            continue
        for x, dz in zip(T, DZ):
            if isinstance(x, int):
                inc_nodes[x] = dz
            else:
                inc_cands[x[1]] = dz
    return accepted, inc_nodes, inc_cands


def _removal_costs(st, Y):
    """Formal Schur-complement energy each node explains given the others: ‖y_θ‖²/(K⁻¹)_θθ."""
    out = np.zeros(len(st.nodes))
    for ks, K in st.gram_blocks().values():
        Kinv = np.linalg.pinv(K)
        for a, k in enumerate(ks):
            q = Kinv[a, a]
            out[k] = float(Y[k] @ Y[k]) / q if q > 0 else math.inf
    return out


def _rebuild(st, Y, keep):
    """A new structure with only the nodes in ``keep`` (a set closed under parents)."""
    new = _Structure(st.bank, st.images)
    remap = {}
    Ynew = []
    for k, n in enumerate(st.nodes):
        if k not in keep:
            continue
        remap[k] = new.add(n.path, n.module, remap.get(n.parent, -1), n.L, n.words)
        Ynew.append(Y[k])
    return new, Ynew


def _recompute_words(st):
    for k, n in enumerate(st.nodes):
        anc = tuple(st.nodes[a].module for a in _ancestors(st, k))
        n.key = _key(n.path, anc, n.module)
        n.words = _words_of_key(n.key)


def _swap_pass(st, Y, s, mods, lengths, stats, max_inputs=MAX_INPUTS):
    """Module-swap and move moves: for each node, remove its own contribution (children kept) and
    score every candidate module at its position — and, for a leaf, at every free position of its
    input list (1 … ``max_inputs``) — against that residual (formal OMP score, orthogonal to the
    other nodes of the module); switch to the best (position, module) when it explains
    SWAP_MARGIN times more. This undoes a ghost that took a position before the deeper objects it
    mimicked were reachable, a wrong module chosen under noise, and a sibling found at a position
    that shares formal words with its true one. Returns (Y, changed).

    With the word images kept, C_qᵀ r_k = C_qᵀ r + (C_q C_kᵀ) y_k comes from the cached Gram blocks
    (one adjoint per change instead of one per node)."""
    bank = st.bank
    changed = False
    r = s - st.forward(Y)
    U_r = None
    for k in range(len(st.nodes)):
        n = st.nodes[k]
        rk = r + st.node_forward(k, Y[k])          # the residual without node k's own contribution
        if st.explicit():
            if U_r is None:
                U_r = st.adjoint(r)[0]
            ck = (n.key, n.L)
            U = [U_r[q] + st.images.gram_block((nq.key, nq.L), ck) @ Y[k] for q, nq in enumerate(st.nodes)]
            G = rk if n.parent < 0 else st.inputs(rk, (n.parent,))[n.parent]
        else:
            U, G_in = st.adjoint(rk, want_inputs=() if n.parent < 0 else (n.parent,))
            G = rk if n.parent < 0 else G_in[n.parent]
        positions = [n.path[-1]]
        if not n.children:
            taken = {st.nodes[q].path[-1] for q, nq in enumerate(st.nodes) if nq.parent == n.parent}
            positions += [j for j in range(1, max_inputs + 1) if j not in taken]
        Xs = 0.5 * (G[None, :] + _group_apply(bank, [tuple_name(j) for j in positions],
                                              np.broadcast_to(G, (len(positions), len(G))).copy(), True))
        anc = n.key[1]
        best, best_score, best_y, cur_score = None, 0.0, None, 0.0
        for m in mods:
            Um = st.images.scores(m, Xs, lengths[m])
            others = [q for q, nq in enumerate(st.nodes) if nq.module == m and q != k]
            if others:
                K = np.array([[_kappa(st.nodes[a].key, st.nodes[b].key) for b in others] for a in others])
                Kinv = np.linalg.pinv(K)
                DZ = Kinv @ np.array([U[q] for q in others])
            for j, u in zip(positions, Um):
                path = n.path[:-1] + (j,)
                key = _key(path, anc, m)
                kcc = _kappa(key, key)
                if others:
                    kc = np.array([_kappa(key, st.nodes[q].key) for q in others])
                    v = u - kc @ DZ
                    e = kcc - float(kc @ Kinv @ kc)
                else:
                    v, e = u, kcc
                if e <= 1e-9 * kcc:
                    continue
                score = float(v @ v) / e
                if m == n.module and j == n.path[-1]:
                    cur_score = score
                if score > best_score and v[-1] > 0:
                    best, best_score, best_y = (j, m), score, v / e
        if best is not None and best != (n.path[-1], n.module) and best_score > SWAP_MARGIN * cur_score:
            j, m = best
            n.path = n.path[:-1] + (j,)
            n.module, n.L = m, lengths[m]
            Y[k] = best_y
            _recompute_words(st)
            Y, it = _refit(st, s, Y)
            stats["iters"] += it
            changed = True
            r = s - st.forward(Y)
            U_r = None
    return Y, changed


def _prune(st, Y, s, d, floor2, alpha, pruned, stats):
    """Drop, one at a time, the least significant node with its subtree while some node explains
    less than the acceptance threshold (χ²_{L+1} at ``alpha``, Bonferroni over the nodes, σ² the
    residual's energy per remaining degree of freedom) or has Ŵ ≤ 0. Refit after each removal.

    (Until issue 10's second study a node lighter than its children, Σ_c Ŵ_c > 1.05·Ŵ_p plus
    noise, was also pruned. It fired on true children whose weights were biased by objects not yet
    found — a few per cent through shared formal words — and then cycled; without it, 256- and
    512-coordinate trees of 10 objects went from 18/20 to 20/20 exact.)"""
    did = False
    while st.nodes:
        r = s - st.forward(Y)
        n_par = sum(n.L + 1 for n in st.nodes)
        sigma2 = max(float(r @ r) / max(d - n_par, 1), floor2)
        cost = _removal_costs(st, Y)
        thr = [sigma2 * _chi2_threshold(n.L + 1, alpha, len(st.nodes)) for n in st.nodes]
        weak = set()
        for k, n in enumerate(st.nodes):
            if cost[k] < thr[k] or not float(Y[k][n.L]) > 0:
                weak.add(k)
        if not weak:
            return st, Y, r, did
        k = min(weak, key=lambda q: cost[q] / thr[q])
        drop = {k}
        todo = list(st.nodes[k].children)
        while todo:
            c = todo.pop()
            drop.add(c)
            todo += st.nodes[c].children
        for q in sorted(drop):
            pruned.append((st.nodes[q].path, st.nodes[q].module))
        did = True
        st, Y = _rebuild(st, Y, set(range(len(st.nodes))) - drop)
        if st.nodes:
            Y, it = _refit(st, s, Y)
            stats["iters"] += it
    return st, Y, s.copy(), did


def unroll(s, bank, modules, max_depth=3, max_inputs=4, *, length=None, alpha=ALPHA, return_info=False):
    """Blind unrolling: estimate the communication graph behind a sketch (THEORY.md §2.5; an
    extension of the paper, see the module docstring for the algorithm).

    Parameters
    ----------
    s : ndarray of shape (d_sketch,)
        One overall sketch (finite).
    bank : MatrixBank
        The bank that built it (its seed, i.e. the matrices, are known to the decoder).
    modules : sequence of str
        Candidate module names (unique). Modules that are absent cost time, not accuracy.
    max_depth : int
        Deepest object depth searched, 2 … :data:`MAX_DEPTH` (the output pseudo-object has depth 1,
        its inputs depth 2; ``max_depth=3`` searches the output's inputs and their inputs).
    max_inputs : int
        Positions 1 … ``max_inputs`` are searched in every input list, 1 … :data:`MAX_INPUTS`.
    length : int or dict of module -> int, optional
        Attribute length L of each module (default :data:`DEFAULT_LENGTH`; longer is safe, the
        trailing coordinates decode to ≈ 0 and are trimmed). Each candidate costs L+1 unknowns.
    alpha : float
        False-alarm probability per depth of the acceptance test.
    return_info : bool
        Also return an :class:`UnrollInfo`.

    Returns
    -------
    Graph or None
        The estimate: object ids ``u0, u1, …`` in detection order, their modules, unit nonnegative
        attributes (negative coordinates clipped, noise-level trailing coordinates trimmed), and
        input weights W_child/W_parent (each list rescaled to sum ≤ 1 if the estimates exceed it).
        None when no object is detected.
    info : UnrollInfo, only if ``return_info``
    """
    s = _check_sketch(s, bank)
    mods = _check_modules(modules)
    H = _check_bounded("max_depth", max_depth, 2, MAX_DEPTH)
    J = _check_bounded("max_inputs", max_inputs, 1, MAX_INPUTS)
    d = bank.d_sketch
    lengths = _check_lengths(length, mods, d)
    alpha = _check_alpha(alpha)

    s_norm2 = float(s @ s)
    floor2 = (REL_NOISE_FLOOR ** 2) * s_norm2 / d
    aprime_ok = sum(lengths[m] + 1 for m in mods) * d * 8 <= APRIME_MAX_BYTES
    st = _Structure(bank, _Images(bank, aprime_ok))
    Y = []
    r = s.copy()
    stats = {"cands": 0, "iters": 0}
    pruned = []
    seen = set()
    for _sweep in range(MAX_SWEEPS):
        changed = False
        for h in range(2, H + 1):
            parents = [-1] if h == 2 else [k for k, n in enumerate(st.nodes) if n.depth == h - 1]
            if not parents:
                break
            Ures, G_in = st.adjoint(r, want_inputs=[p for p in parents if p >= 0]) if st.nodes else ([], {})
            taken = {(n.parent, n.path[-1]) for n in st.nodes}
            cands = _candidate_scores(st, bank, parents, r, G_in, taken, mods, lengths, J)
            stats["cands"] += len(cands)
            if not cands:
                continue
            accepted, inc_nodes, inc_cands = _omp_level(st, cands, Y, Ures, float(r @ r), d, floor2, alpha,
                                                        lengths)
            if not accepted:
                continue
            changed = True
            Y = [y + dz for y, dz in zip(Y, inc_nodes)]
            for ci in accepted:
                p, j, m, u, key, path = cands[ci]
                st.add(path, m, p, lengths[m], _words_of_key(key))
                Y.append(inc_cands[ci])
            Y, it = _refit(st, s, Y)
            stats["iters"] += it
            r = s - st.forward(Y)
        if st.nodes:
            Y, swapped = _swap_pass(st, Y, s, mods, lengths, stats, J)
            changed = changed or swapped
        st, Y, r, did = _prune(st, Y, s, d, floor2, alpha, pruned, stats)
        state = frozenset((n.path, n.module) for n in st.nodes)
        if not (changed or did) or state in seen:
            break
        seen.add(state)
    if st.nodes:
        r = s - st.forward(Y)
    n_par = sum(n.L + 1 for n in st.nodes)
    sigma2 = max(float(r @ r) / max(d - n_par, 1), floor2)
    graph, compacted = _to_graph(st, Y, sigma2)
    info = UnrollInfo([n.path for n in st.nodes], [n.module for n in st.nodes],
                      np.array([y[-1] for y in Y]), [y.copy() for y in Y], float(np.linalg.norm(r)),
                      math.sqrt(sigma2), stats["cands"], stats["iters"], pruned, compacted)
    return (graph, info) if return_info else graph


def _to_graph(st, Y, sigma2):
    """The Graph of a found structure (ids u0, u1, … in node order)."""
    if not st.nodes:
        return None, False
    gram = {k: 0.0 for k in range(len(st.nodes))}
    for ks, K in st.gram_blocks().values():
        Kinv = np.linalg.pinv(K)
        for a, k in enumerate(ks):
            gram[k] = Kinv[a, a]
    W = []
    X = []
    for k, (n, y) in enumerate(zip(st.nodes, Y)):
        z, w = y[:n.L], float(y[n.L])
        nz = float(np.linalg.norm(z))
        if not w > 0:
            w = nz
        W.append(max(w, 0.0))
        x = np.clip(z, 0.0, None)
        if not np.any(x > 0):
            x = np.abs(z)
        if not np.any(x > 0):
            x = np.zeros(n.L)
            x[0] = 1.0
        x = x / np.linalg.norm(x)
        # trim trailing coordinates at the noise level (σ_x ≈ σ·√(K⁻¹)_θθ / W)
        tol = 3.0 * math.sqrt(sigma2 * max(gram[k], 0.0)) / max(w, 1e-300)
        last = len(x)
        while last > 1 and x[last - 1] <= tol:
            last -= 1
        if np.linalg.norm(x[:last]) > 0:
            x = x[:last] / np.linalg.norm(x[:last])
        X.append(x)
    ids = [f"u{k}" for k in range(len(st.nodes))]
    compacted = False

    def input_list(children, parent_w):
        nonlocal compacted
        children = sorted(children, key=lambda c: st.nodes[c].path[-1])
        if [st.nodes[c].path[-1] for c in children] != list(range(1, len(children) + 1)):
            compacted = True
        ws = np.array([W[c] / parent_w if parent_w > 0 else 0.0 for c in children])
        tot = ws.sum()
        if tot > 1.0:
            ws = ws / tot * (1.0 - 1e-12)
        return [{"id": ids[c], "weight": float(w)} for c, w in zip(children, ws)]

    objects = [{"id": ids[k], "module": n.module, "attributes": X[k].tolist(),
                "inputs": input_list(n.children, W[k])} for k, n in enumerate(st.nodes)]
    output = input_list([k for k, n in enumerate(st.nodes) if n.parent < 0], 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TheoremPreconditionWarning)
        return Graph(objects, output, normalize=True), compacted


def fit_structure(s, bank, graph):
    """Joint least-squares attributes of a *known* tree structure (THEORY.md §2.5, through operators).

    Every object's unknowns [W_θ x_θ; W_θ] are refit jointly from ``s`` (the graph's attribute
    values and weights are not used, only its ids, modules, input positions and attribute
    lengths); exact up to rounding while Σ(L_θ+1) < d. Returns {object id: x̂_θ = (W x)^_θ / Ŵ_θ}.
    Each object must be reachable by one path (a tree).
    """
    s = _check_sketch(s, bank)
    if not isinstance(graph, Graph):
        raise ValueError(f"graph must be a sketchsim.Graph; got {type(graph).__name__}")
    st = _Structure(bank)
    order = []

    def walk(children, parent, prefix, anc):
        for pos, c in enumerate(children, start=1):
            oid = graph.ids[c]
            if len(graph.paths(oid)) != 1:
                raise ValueError(f"graph must be a tree (one path per object); object {oid!r} has "
                                 f"{len(graph.paths(oid))} paths")
            m = graph.module(oid)
            path = prefix + (pos,)
            k = st.add(path, m, parent, len(graph.attributes[c]), column_words(path, anc, m))
            order.append(oid)
            walk(graph.inputs[c][0], k, path, anc + [m])

    walk(graph.output[0], -1, (), [])
    Y0 = [np.zeros(n.L + 1) for n in st.nodes]
    Y, _ = _refit(st, s, Y0)
    return {oid: y[:-1] / y[-1] if y[-1] != 0 else y[:-1] for oid, y in zip(order, Y)}
