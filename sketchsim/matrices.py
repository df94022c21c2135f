"""Random matrix families behind one operator interface, and the named :class:`MatrixBank`.

Families (``family=``):

``haar``
    Uniform random orthonormal (QR of a Gaussian with the sign fix), the paper's mental model (§3.2).
``gaussian``
    I.i.d. N(0, 1/d) entries.
``block-sparse``
    D(b, q, d) of Algorithms 1–2 (paper §4.3) with the resolutions of THEORY.md §9: sub-block order
    random string | column signature | matrix signature, blocks of exactly b entries, Enc encodes
    j−1 (MSB first). Stored as nonzero blocks per column (memory ∝ q·d²), never dense unless asked;
    or, with ``MatrixBank(..., storage="implicit")``, not stored at all (O(d) memory, blocks
    regenerated at every use; the same matrix as the stored one: see :class:`MatrixBank`).
``hadamard``
    R = H D₁ H D₂ H D₃ P / d^{3/2} (three rounds of a randomised Walsh–Hadamard transform and a
    random permutation, THEORY.md §2.4). Orthonormal, O(d log d) apply, O(d) memory, d a power of
    two. **An engineering substitute, not one of the paper's distributions.**

Every operator offers ``apply`` (R x), ``apply_t`` (Rᵀ x), ``dense()`` and ``nbytes``; ``apply``
accepts vectors shorter than d (implicit zero padding, as for attribute vectors, paper §2.2).
"""
from __future__ import annotations

import math
import re

import numpy as np

from . import _hadamard_kernels as HK
from . import _matrix_kernels as K
from ._io import check_allocation
from ._parallel import run_rows
from ._rng import check_seed, name_generator, name_key
from ._validation import (TheoremPreconditionWarning, check_block_params, check_choice, check_int, check_storage,
                          show)

__all__ = ["FAMILIES", "MatrixBank", "module_name", "tuple_name", "parse_name",
           "DenseOperator", "BlockSparseOperator", "ImplicitBlockSparseOperator", "HadamardOperator",
           "ZeroOperator"]

FAMILIES = ("haar", "gaussian", "block-sparse", "hadamard")
DENSE_FAMILIES = ("haar", "gaussian")


def module_name(module, k):
    """Name of module M's k-th matrix R_{M,k} (k = 0, 1, 2): ``module/<M>/<k>``."""
    return f"module/{module}/{int(k)}"


def tuple_name(i):
    """Name of the tuple matrix R_i of 1-based position i: ``tuple/<i>``."""
    return f"tuple/{int(i)}"


_NAME_RE = re.compile(r"tuple/([1-9][0-9]*)|module/(.+)/([012])")


def parse_name(name):
    """``("tuple", i)`` or ``("module", M, k)``; raises for anything else.

    The module name M follows :func:`sketchsim._validation.check_name` (printable, at most 256
    characters; ``/`` allowed, since k is parsed from the end).
    """
    m = _NAME_RE.fullmatch(name) if isinstance(name, str) else None
    if not m or (m.group(2) is not None and (not m.group(2).isprintable() or len(m.group(2)) > 256)):
        raise ValueError(
            f"matrix name must be 'tuple/<i>' (i ≥ 1) or 'module/<M>/<k>' (k in 0, 1, 2; M printable, at most "
            f"256 characters); got {show(name)}")
    if m.group(1):
        return ("tuple", int(m.group(1)))
    return ("module", m.group(2), int(m.group(3)))


def _as_rows(X):
    X = np.asarray(X, dtype=np.float64)
    single = X.ndim == 1
    return np.ascontiguousarray(X[None, :] if single else X), single


class _Operator:
    """Common interface: ``apply``, ``apply_t``, ``dense``, ``column``, ``nbytes``."""

    family = ""

    def __init__(self, d_sketch, name):
        self.d = int(d_sketch)
        self.name = name

    def apply(self, X, out=None):
        """R x for a vector ``(L,)`` or rows ``(m, L)`` with L ≤ d (zero-padded); returns ``(…, d)``.

        ``out``, optional: a C-contiguous float64 array of the result's shape, filled and returned
        (no fresh pages in a loop that reuses it). It must not overlap ``X``.
        """
        X, single = _as_rows(X)
        if X.shape[1] > self.d:
            raise ValueError(f"vectors given to {self.name} must have length ≤ d_sketch={self.d}; got {X.shape[1]}")
        res = self._apply(X, self._out(out, X, single))
        return res[0] if single else res

    def apply_t(self, X, out=None):
        """Rᵀ x for a vector ``(d,)`` or rows ``(m, d)``; ``out`` as in :meth:`apply`."""
        X, single = _as_rows(X)
        if X.shape[1] != self.d:
            raise ValueError(f"vectors given to {self.name}ᵀ must have length d_sketch={self.d}; got {X.shape[1]}")
        res = self._apply_t(X, self._out(out, X, single))
        return res[0] if single else res

    def _out(self, out, X, single):
        """The (m, d) array a kernel fills: ``out`` checked (as rows), or a fresh uninitialised one."""
        m = X.shape[0]
        if out is None:
            return np.empty((m, self.d))
        want = (self.d,) if single else (m, self.d)
        if not isinstance(out, np.ndarray) or out.dtype != np.float64 or out.shape != want \
                or not out.flags.c_contiguous or not out.flags.writeable:
            got = (f"{out.dtype} array of shape {out.shape}" if isinstance(out, np.ndarray)
                   else type(out).__name__)
            raise ValueError(f"out must be a writeable C-contiguous float64 array of shape {want}; got {got}")
        if np.shares_memory(out, X):
            raise ValueError("out must not overlap the input X")
        return out.reshape(m, self.d)

    def _apply_rows(self, X, rows, out, plus=None):
        """Engine entry (no checks): ``out = R X[rows]``, or ``out = plus·(X[rows] + R X[rows])``.

        ``X``: C-contiguous float64 ``(n, L)`` (L = d when ``plus`` is given); ``rows``: int64
        indices into X, or None for every row; ``out``: a given C-contiguous ``(m, d)`` array that
        overlaps neither. The (I+R)/2-type factors of the sketch (paper §3.3) in one call, with the
        same roundings as ``Y = R X; Y += X; Y *= plus``; subclasses may fuse them.
        """
        Xr = X if rows is None else X[rows]
        self._apply(Xr, out)
        if plus is not None:
            out += Xr
            out *= plus
        return out

    def _row_task(self, X, rows, out, plus=None):
        """``(kernel, args, work)`` such that ``kernel(r0, r1, *args)`` computes rows [r0, r1) of
        :meth:`_apply_rows` (each row on its own), for an engine that spreads several operators'
        rows over its threads; None when the operator has no such row kernel."""
        return None

    def column(self, j):
        """Column j (0-based) of R, i.e. R e_{j+1}."""
        if not 0 <= int(j) < self.d:
            raise ValueError(f"column index j must lie in 0..{self.d - 1}; got {j}")
        e = np.zeros((1, j + 1))
        e[0, j] = 1.0
        return self._apply(e, np.empty((1, self.d)))[0]

    def __repr__(self):
        return f"{type(self).__name__}({self.name!r}, d={self.d})"


class DenseOperator(_Operator):
    """A dense d×d matrix (``haar``, ``gaussian`` or user-supplied)."""

    def __init__(self, matrix, name, family="dense"):
        super().__init__(matrix.shape[0], name)
        self.matrix = np.ascontiguousarray(matrix, dtype=np.float64)
        self.family = family

    def _apply(self, X, out):
        L = X.shape[1]
        return np.matmul(X, self.matrix.T if L == self.d else self.matrix[:, :L].T, out=out)

    def _apply_t(self, X, out):
        return np.matmul(X, self.matrix, out=out)

    def dense(self):
        return self.matrix.copy()

    @property
    def nbytes(self):
        return self.matrix.nbytes


class ZeroOperator(_Operator):
    """The zero matrix (for ablations and the depth-constant test, THEORY.md §2.1)."""

    family = "zero"

    def _apply(self, X, out):
        out.fill(0.0)
        return out

    _apply_t = _apply

    def dense(self):
        return np.zeros((self.d, self.d))

    nbytes = 0


BATCH_MINOR_MIN_ROWS = 16
BATCH_MINOR_MIN_DENSITY = 0.25
TILE_MIN_DENSITY = 0.35
"""Kernel choice of the stored block-sparse R X (every kernel gives the same bits, so the choice
never changes a result). With at least ``BATCH_MINOR_MIN_ROWS`` rows of which at least
``BATCH_MINOR_MIN_DENSITY`` of the entries are nonzero: the batch as the contiguous axis
(``_matrix_kernels.bs_apply_batch``, vectorised, but it visits every column); else four rows per
pass when at least ``TILE_MIN_DENSITY`` are nonzero; else one row at a time, each skipping its own
zeros. Measured on 1 thread, d = 3072, q = 0.5, 32 rows (ms, row kernel → tiles → batch): dense
rows 130 → 65 → 25; half zeros 98 → 69 → 41; 75% zeros 46 → 52 → 31; 90% zeros 15 → 20 → 30."""


class BlockSparseOperator(_Operator):
    """A draw of D(b, q, d) stored as nonzero blocks per column (paper §4.3, Algorithms 1–2).

    The blocks are those of :class:`ImplicitBlockSparseOperator` at the same key (the nonzero blocks
    of a column found through geometric gaps, see there): the two storages are one matrix, and
    drawing it costs O(q·d/b) random draws per column, not one coin per block.

    Attributes
    ----------
    col_ptr : ndarray of shape (d + 1,)
        Blocks of column j are ``col_ptr[j]:col_ptr[j+1]`` (0-based j).
    blk_row : ndarray of shape (n_blocks,)
        Block index i (0-based) of each nonzero block: rows ``[i·b, (i+1)·b)``.
    blk_sign : ndarray of shape (n_blocks, b), int8
        Signs of the block entries; every entry equals ``sign · scale`` with scale = 1/√(dq).
    """

    family = "block-sparse"
    storage = "stored"

    def __init__(self, d_sketch, block_size, block_prob, key, name):
        super().__init__(d_sketch, name)
        self.b, self.q, self.key = int(block_size), float(block_prob), int(key)
        d, b = self.d, self.b
        implicit = ImplicitBlockSparseOperator(d, b, self.q, self.key, name)   # the same blocks, not stored
        self.col_ptr = implicit.col_ptr
        n = int(self.col_ptr[-1])
        self.blk_row = np.empty(n, dtype=np.int32)
        self.blk_sign = np.empty((n, b), dtype=np.int8)
        run_rows(K.bs_fill, d, n * b * 4 + d * 20, 0, np.uint64(self.key), d, b, implicit._lq, self.col_ptr,
                 self.blk_row, self.blk_sign)
        self.scale = implicit.scale

    @property
    def n_blocks(self):
        return int(self.col_ptr[-1])

    def column_blocks(self, j):
        """The nonzero blocks of column j (0-based): (block rows (n,) int32 ascending, signs (n, b) int8),
        as :meth:`ImplicitBlockSparseOperator.column_blocks` (views of the stored arrays)."""
        j = check_int("j", j, minimum=0, maximum=self.d - 1)
        lo, hi = self.col_ptr[j], self.col_ptr[j + 1]
        return self.blk_row[lo:hi], self.blk_sign[lo:hi]

    def _apply(self, X, out):
        m = X.shape[0]
        work = m * self.n_blocks * self.b * X.shape[1] // self.d
        args = (self.col_ptr, self.blk_row, self.blk_sign, self.b, self.scale)
        density = np.count_nonzero(X) / max(1, X.size) if m >= 4 else 0.0   # < 4 rows: the row kernel
        if m >= BATCH_MINOR_MIN_ROWS and density >= BATCH_MINOR_MIN_DENSITY:
            outT = np.empty((self.d, m))
            run_rows(K.bs_apply_batch, m, work, np.ascontiguousarray(X.T), outT, *args)
            out[:] = outT.T
        else:
            out.fill(0.0)
            run_rows(K.bs_apply, m, work, X, out, *args, density >= TILE_MIN_DENSITY)
        return out

    def _apply_t(self, X, out):
        run_rows(K.bs_apply_t, X.shape[0], X.shape[0] * self.n_blocks * self.b, X, out, self.col_ptr,
                 self.blk_row, self.blk_sign, self.b, self.scale)
        return out

    def dense(self):
        out = np.zeros((self.d, self.d))
        run_rows(K.bs_dense, self.d, self.n_blocks * self.b, out, self.col_ptr, self.blk_row, self.blk_sign,
                 self.b, self.scale)
        return out

    @property
    def nbytes(self):
        return self.col_ptr.nbytes + self.blk_row.nbytes + self.blk_sign.nbytes


class ImplicitBlockSparseOperator(_Operator):
    """A draw of D(b, q, d) that stores no block: every use regenerates the columns (matrix-free).

    The block structure is Algorithm 2's (paper §4.3; THEORY §9 items 4–5), exactly as in
    :class:`BlockSparseOperator`: a nonzero block of column j is f_s·σ_{s,j} | f_c·Enc(j, f'_m, f'_s)
    | f_m·σ_m times 1/√(dq), with the same σ_m and σ_{s,j} streams. Instead of one coin per block
    (Algorithm 2 step 11, O(d/b) per column), the nonzero blocks of column j come one after the
    other with geometric gaps: the k-th (k = 0, 1, …)
    uses u = mix3(key, 4, j, k), U = ((u ≫ 11) + 1)·2⁻⁵³ and lies ⌊log U / log(1−q)⌋ + 1 blocks after
    the previous one (bits 0, 1, 2 of u are f_m, f_s, f_c). The blocks of a column are then independent
    Bernoulli(q), as in Algorithm 2, at O(q·d/b) work per column.

    :class:`BlockSparseOperator` stores exactly these blocks (same key, same matrix): the storage
    changes memory and speed, never the matrix, so a sketch made with one storage decodes with the
    other. (Until issue 11 the stored sampler drew one coin per block from another stream, and the
    two storages were different draws of D(b, q, d).)

    Memory: O(d/G) integers (the blocks per group of G columns, computed on the first large apply)
    plus ``col_ptr`` (8(d+1) bytes) only if something asks for it (the column-norm correction of
    the decoders); each apply uses at most :meth:`scratch_bytes` of temporary buffers.

    ``apply`` (R X) adds, for each output entry, the terms of its columns in ascending column order;
    for large d it first bins the blocks of a chunk of columns by output tile (a tile of ``TILE_BYTES``
    per ``ROW_CHUNK`` rows stays in cache) and then adds them tile by tile, in the same order as the
    direct kernel, so the two paths, and any thread count, give bit-identical results.
    """

    family = "block-sparse"
    storage = "implicit"

    GROUP = 1024
    """Columns per group (fewer when q·d/b is large): the unit of the block counts kept for binning."""
    CHUNK_ENTRIES = 1 << 24
    """Nonzero blocks binned at once (two uint64 buffers of this length)."""
    CHUNK_CELLS = 1 << 22
    """Largest groups × tiles histogram of one chunk."""
    CHUNK_BYTES = 256 * 2**20
    """Largest column records of one chunk: per column its sign template (⌈b/64⌉ words) and the x
    values (apply) or partial sums (apply_t) of up to ROW_CHUNK rows, so each block reads one record."""
    TILE_BYTES = 1 << 20
    """Bytes of output (apply) or input (apply_t) rows one tile spans, per row chunk."""
    ROW_CHUNK = 8
    """Rows of X applied per pass over a tile's blocks."""
    DIRECT_MAX_BYTES = 256 * 1024
    """Below this many bytes of output rows (min(m, ROW_CHUNK)·d·8), or with at most GROUP columns,
    apply / apply_t use the direct kernels (no binning)."""

    def __init__(self, d_sketch, block_size, block_prob, key, name):
        super().__init__(d_sketch, name)
        self.b, self.q, self.key = int(block_size), float(block_prob), int(key)
        self.scale = 1.0 / math.sqrt(self.d * self.q)
        self._lq = K.gap_log(self.q)
        self._groups = None          # (G, group_ptr)
        self._col_ptr = None

    # ------------------------------------------------------------------ sizes and bookkeeping
    @classmethod
    def scratch_bytes(cls, d_sketch, block_size):
        """Upper estimate of the temporary bytes of one apply / apply_t (the bins, histograms, sign
        templates) beyond the output array; independent of d (it depends on b through ⌈b/64⌉)."""
        nwb = (int(block_size) + 63) // 64
        return 2 * 8 * 2 * cls.CHUNK_ENTRIES + 12 * cls.CHUNK_CELLS + cls.CHUNK_BYTES + 8 * (nwb + cls.ROW_CHUNK) * 1024

    def _group_size(self):
        per_col = max(1.0, self.q * (self.d // self.b))
        return int(max(1, min(self.GROUP, self.CHUNK_ENTRIES // (8 * per_col))))

    def _group_ptr(self):
        """(G, ptr): blocks of columns [0, g·G) are ptr[g]; computed once (one pass over the blocks)."""
        G = self._group_size()
        if self._groups is None or self._groups[0] != G:
            d = self.d
            ng = -(-d // G)
            counts = np.empty(ng, dtype=np.int64)
            run_rows(K.bsi_group_counts, ng, self._expected_blocks() * 20, G, np.uint64(self.key), d, self.b,
                     self._lq, counts)
            ptr = np.zeros(ng + 1, dtype=np.int64)
            np.cumsum(counts, out=ptr[1:])
            self._groups = (G, ptr)
        return self._groups

    def _expected_blocks(self, n_cols=None):
        return int(self.q * (self.d // self.b) * (self.d if n_cols is None else n_cols)) + 1

    @property
    def col_ptr(self):
        """Blocks of column j are ``col_ptr[j]:col_ptr[j+1]`` of the column-major enumeration (O(d), on demand)."""
        if self._col_ptr is None:
            d = self.d
            counts = np.empty(d, dtype=np.int64)
            run_rows(K.bsi_col_counts, d, self._expected_blocks() * 20, 0, np.uint64(self.key), d, self.b,
                     self._lq, counts)
            ptr = np.zeros(d + 1, dtype=np.int64)
            np.cumsum(counts, out=ptr[1:])
            self._col_ptr = ptr
        return self._col_ptr

    @property
    def n_blocks(self):
        """Number of nonzero blocks of the matrix."""
        if self._col_ptr is not None:
            return int(self._col_ptr[-1])
        return int(self._group_ptr()[1][-1])

    @property
    def nbytes(self):
        """Bytes held between uses: the group counts and ``col_ptr`` once computed, nothing else."""
        return (0 if self._groups is None else self._groups[1].nbytes) + \
            (0 if self._col_ptr is None else self._col_ptr.nbytes)

    # ------------------------------------------------------------------ columns
    def column_blocks(self, j):
        """The nonzero blocks of column j (0-based): (block rows (n,) int32 ascending, signs (n, b) int8).

        Column j of R is ``signs[k]·scale`` on rows ``[rows[k]·b, (rows[k]+1)·b)`` and 0 elsewhere.
        """
        j = check_int("j", j, minimum=0, maximum=self.d - 1)
        key = np.uint64(self.key)
        cnt = np.empty(1, dtype=np.int64)
        K.bsi_col_counts(j, j + 1, j, key, self.d, self.b, self._lq, cnt)
        rows = np.empty(int(cnt[0]), dtype=np.int32)
        signs = np.empty((int(cnt[0]), self.b), dtype=np.int8)
        K.bs_fill(0, 1, j, key, self.d, self.b, self._lq, np.array([0, cnt[0]]), rows, signs)
        return rows, signs

    def column(self, j):
        """Column j (0-based) of R, regenerated from its blocks."""
        if not 0 <= int(j) < self.d:
            raise ValueError(f"column index j must lie in 0..{self.d - 1}; got {j}")
        rows, signs = self.column_blocks(int(j))
        out = np.zeros(self.d)
        b = self.b
        for r, s in zip(rows.tolist(), signs):
            out[r * b:(r + 1) * b] = s * self.scale
        return out

    def dense(self):
        """The d×d matrix, through the stored operator of the same key (the same matrix; O(d²) anyway)."""
        return BlockSparseOperator(self.d, self.b, self.q, self.key, self.name).dense()

    # ------------------------------------------------------------------ apply
    def _direct(self, m, L):
        return L <= self.GROUP or min(m, self.ROW_CHUNK) * self.d * 8 <= self.DIRECT_MAX_BYTES

    def _chunks(self, L, NT, W):
        """Chunks of whole groups covering columns [0, L): [(first group, end group), ...], each within
        CHUNK_ENTRIES blocks, CHUNK_CELLS histogram cells and CHUNK_BYTES of column records (W words each)."""
        G, ptr = self._group_ptr()
        ng = -(-L // G)
        max_ng = max(1, min(self.CHUNK_CELLS // NT, self.CHUNK_BYTES // (8 * W * G)))
        out, g = [], 0
        while g < ng:
            # the longest run of groups from g within the limits (at least one group)
            h = int(np.searchsorted(ptr, ptr[g] + self.CHUNK_ENTRIES, side="right")) - 1
            h = min(ng, g + max_ng, max(g + 1, h))
            out.append((g, h))
            g = h
        return G, ptr, out

    def _binned(self, X, out, transpose):
        """R X (transpose=False, X of shape (m, L)) or Rᵀ X (X of shape (m, d)) through the bins."""
        m, L = X.shape
        d, b = self.d, self.b
        nb = d // b
        mr = min(m, self.ROW_CHUNK)
        tshift = max(0, (self.TILE_BYTES // (mr * b * 8)).bit_length() - 1)     # tiles of 2^tshift block rows
        NT = ((nb - 1) >> tshift) + 1
        nwb = (b + 63) // 64
        W = nwb + mr                              # a column record: sign template, then x (or sums) of mr rows
        G, ptr, chunks = self._chunks(L, NT, W)
        key = np.uint64(self.key)
        cap = max(int(ptr[h] - ptr[g]) for g, h in chunks)
        buf = np.empty(cap, dtype=np.uint64)
        bins = np.empty(cap, dtype=np.uint64)
        if not transpose:
            out.fill(0.0)
        for g0, g1 in chunks:
            ng = g1 - g0
            c0, c1 = g0 * G, min(L, g1 * G)
            n = int(ptr[g1] - ptr[g0])
            goff = ptr[g0:g1] - ptr[g0]
            gfill = np.empty(ng, dtype=np.int64)
            hist = np.zeros((ng, NT), dtype=np.int32)
            rec = np.empty((c1 - c0, W), dtype=np.uint64)
            recf = rec.view(np.float64)
            run_rows(K.bsi_gen, ng, n * 40, g0, G, c0, c1, key, d, b, self._lq, X, not transpose, tshift, goff, buf,
                     gfill, hist, rec, nwb)
            S = np.zeros(NT * ng + 1, dtype=np.int64)
            np.cumsum(hist.T.ravel(), out=S[1:])
            run_rows(K.bsi_scatter, ng, n * 8 + ng * NT, ng, tshift, buf, goff, gfill, S, bins)
            for k0 in range(0, m, mr):
                k1 = min(m, k0 + mr)
                if transpose:
                    run_rows(K.bsi_apply_t_groups, ng, n * b * (k1 - k0), ng, g0, G, c0, c1, k0, k1, X, out, d, b,
                             self.scale, S, bins, rec, recf, nwb)
                else:
                    run_rows(K.bsi_gather_x, c1 - c0, (c1 - c0) * (k1 - k0), c0, k0, k1, X, recf, nwb)
                    run_rows(K.bsi_apply_tiles, NT, n * b * (k1 - k0), ng, k0, k1, out, c0, d, b, self.scale, S,
                             bins, rec, recf, nwb)
        return out

    def _apply(self, X, out):
        m, L = X.shape
        if not self._direct(m, L):
            return self._binned(X, out, False)
        out.fill(0.0)
        run_rows(K.bsi_apply_direct, m, m * self._expected_blocks(L) * self.b, X, out, np.uint64(self.key),
                 self.d, self.b, self._lq, self.scale)
        return out

    def _apply_t(self, X, out):
        m, d = X.shape
        if not self._direct(m, d):
            return self._binned(X, out, True)
        out.fill(0.0)
        run_rows(K.bsi_apply_t_direct, d, m * self._expected_blocks() * self.b, X, out, np.uint64(self.key), d,
                 self.b, self._lq, self.scale)
        return out


class HadamardOperator(_Operator):
    """R = H D₁ H D₂ H D₃ P / d^{3/2}: fast structured orthonormal transform (THEORY.md §2.4).

    ``P x = x[perm]``; D₁, D₂, D₃ are random ±1 diagonals. Engineering substitute for Haar, not a
    distribution of the paper. From d = 2^13 on, the first apply builds a gather plan of the
    permutation (6 bytes per coordinate, counted in :attr:`nbytes` once built) so that P x runs in
    two streaming passes instead of d cache misses (``_hadamard_kernels``; same result).
    """

    family = "hadamard"

    def __init__(self, d_sketch, rng, name):
        super().__init__(d_sketch, name)
        d = self.d
        # the same draws as ever (int64 permutation, then the three sign rows), stored compactly:
        # int32 permutation and int8 signs, 7 bytes per coordinate
        self.perm = rng.permutation(d).astype(np.int32)
        self.signs = (rng.integers(0, 2, size=(3, d)) * 2 - 1).astype(np.int8)
        self.scale = float(d) ** -1.5

    def _apply(self, X, out):
        return self._apply_rows(X, None, out)

    def _apply_rows(self, X, rows, out, plus=None):
        kernel, args, work = self._row_task(X, rows, out, plus)
        run_rows(kernel, out.shape[0], work, *args)
        return out

    def _row_task(self, X, rows, out, plus=None):
        rows = HK.NO_ROWS if rows is None else np.asarray(rows, dtype=np.int64)
        pos, q = self._gather_plan() if X.shape[1] == self.d else (HK.NO_POS, HK.NO_Q)
        return (HK.hadamard_apply, (X, rows, out, self.perm, pos, q, self.signs[0], self.signs[1], self.signs[2],
                                    self.scale, plus is not None, 0.0 if plus is None else float(plus)),
                self._work(out.shape[0]))

    def _gather_plan(self):
        """(pos, q) of :func:`_hadamard_kernels.gather_plan` for d ≥ ``GATHER_BLOCK_MIN_D`` (built on
        first use, 6 bytes per coordinate), else empty arrays (direct gather)."""
        plan = self.__dict__.get("_gplan")
        if plan is None:
            if self.d < HK.GATHER_BLOCK_MIN_D:
                plan = (HK.NO_POS, HK.NO_Q)
            else:
                pos = np.empty(self.d, dtype=np.int32)
                q = np.empty(self.d, dtype=np.uint16)
                HK.gather_plan(self.perm, HK.gather_block(self.d), pos, q)
                plan = (pos, q)
            self._gplan = plan
        return plan

    def _work(self, m):
        return 3 * m * self.d * max(1, self.d.bit_length())

    def _apply_t(self, X, out):
        run_rows(HK.hadamard_apply_t, X.shape[0], self._work(X.shape[0]), X, out, self.perm,
                 self.signs[0], self.signs[1], self.signs[2], self.scale)
        return out

    def dense(self):
        return self._apply(np.eye(self.d), np.empty((self.d, self.d))).T.copy()

    @property
    def nbytes(self):
        plan = self.__dict__.get("_gplan", ())
        return self.perm.nbytes + self.signs.nbytes + sum(a.nbytes for a in plan)


def _sample_haar(d, rng):
    Q, R = np.linalg.qr(rng.standard_normal((d, d)))
    return Q * np.where(np.diag(R) < 0, -1.0, 1.0)


def _sample_gaussian(d, rng):
    return rng.standard_normal((d, d)) / math.sqrt(d)


class MatrixBank:
    """Every named random matrix of one sketching mechanism, derived from (seed, name).

    Parameters
    ----------
    d_sketch : int
        Sketch dimension d (paper §2.2).
    family : {"haar", "gaussian", "block-sparse", "hadamard"}
        Matrix distribution (see the module docstring).
    seed : int
        Bank seed. Matrix ``name`` is drawn from a stream keyed by SHA-256(seed, name), so adding a
        module never changes the others and anyone holding the seed can rebuild every matrix.
    block_size : int, optional
        b of D(b, q, d) (paper §4.3): a multiple of 3, at least 3·max(⌈log2 N⌉, ⌈log2 d⌉+3), and a
        divisor of d. Block-sparse only.
    block_prob : float, optional
        q of D(b, q, d): probability that a block is nonzero, in (0, 1]. Block-sparse only.
    n_matrices : int, optional
        N, the number of matrices the bank must tell apart, when known in advance; sketching a
        graph re-checks b against the graph's own N (:attr:`Graph.n_matrices`).
    storage : {None, "stored", "implicit"}, optional
        Block-sparse only (None otherwise). ``"stored"`` (the default, None): each matrix is drawn
        once and kept as its nonzero blocks (:class:`BlockSparseOperator`, memory ∝ q·d²).
        ``"implicit"``: nothing is stored, every use regenerates the blocks of each column from the
        counter-based generator (:class:`ImplicitBlockSparseOperator`, memory O(d)), for d in the
        millions. Both hold **the same matrices** at one seed: the storage changes memory and speed
        only, and a sketch made with one storage decodes with the other.

    Notes
    -----
    Names: ``module/<M>/<k>`` is R_{M,k} (k = 0, 1, 2), ``tuple/<i>`` is R_i (1-based position i),
    the same names as the arrays ``matrix/...`` of ``sketchsim sketch --dump-matrices``.
    Matrices are drawn lazily and cached.

    Examples
    --------
    >>> bank = MatrixBank(64, "haar", seed=0)
    >>> R = bank.dense("tuple/1")
    >>> bool(np.allclose(R.T @ R, np.eye(64)))
    True
    """

    def __init__(self, d_sketch, family, seed, block_size=None, block_prob=None, n_matrices=None, storage=None):
        self.d_sketch = check_int("d_sketch", d_sketch, minimum=1)
        self.family = check_choice("family", family, FAMILIES)
        self.seed = check_seed(seed)
        self.storage = check_storage(family, storage)
        d = self.d_sketch
        if family == "block-sparse":
            self.block_size, self.block_prob = check_block_params(d, block_size, block_prob, n_matrices)
        else:
            for pname, val in (("block_size", block_size), ("block_prob", block_prob)):
                if val is not None:
                    raise ValueError(f"{pname} applies only to family 'block-sparse'; got {pname}={val!r} "
                                     f"with family {family!r}")
            self.block_size = self.block_prob = None
        if family == "hadamard" and d & (d - 1):
            raise ValueError(f"d_sketch must be a power of two for family 'hadamard'; got {show(d)}")
        check_allocation("d_sketch", d, self.matrix_nbytes(), f"one {family} matrix of d={show(d)}")
        self._cache = {}
        self._overrides = {}
        self._default = None
        self.known_modules = set()
        """Modules of every graph checked against (sketched with) this bank: decoders given no
        ``graph=`` refuse other module names once this is nonempty."""

    def matrix_nbytes(self):
        """Bytes one matrix of this bank needs while drawn and applied (the size guard's estimate).

        Dense families: the d×d float64 matrix and the QR workspace; hadamard: signs, the
        permutation and work vectors (O(d)); block-sparse: q·d²/b stored blocks of b float64
        entries each, plus their indices; implicit block-sparse: O(d) (``col_ptr`` when asked for,
        the group counts) plus the fixed scratch of one apply
        (:meth:`ImplicitBlockSparseOperator.scratch_bytes`).
        """
        d = self.d_sketch
        if self.family in DENSE_FAMILIES:
            return 16 * d * d
        if self.family == "hadamard":
            return 64 * d
        if self.storage == "implicit":
            return 16 * d + ImplicitBlockSparseOperator.scratch_bytes(d, self.block_size)
        try:
            return float(self.block_prob) * 9.0 * float(d) * float(d) + 64.0 * d
        except OverflowError:
            return math.inf

    # ------------------------------------------------------------------ construction of one matrix
    def __getitem__(self, name):
        return self.get(name)

    def get(self, name):
        """The operator of matrix ``name`` (drawn on first use, then cached)."""
        op = self._cache.get(name)
        if op is not None:
            return op
        parse_name(name)
        if name in self._overrides:
            op = self._overrides[name]
        elif self._default is not None:
            op = self._default(name)
        else:
            op = self._draw(name)
        self._cache[name] = op
        return op

    def _draw(self, name):
        d, fam = self.d_sketch, self.family
        if fam == "block-sparse":
            cls = ImplicitBlockSparseOperator if self.storage == "implicit" else BlockSparseOperator
            return cls(d, self.block_size, self.block_prob, name_key(self.seed, name), name)
        rng = name_generator(self.seed, name)
        if fam == "hadamard":
            return HadamardOperator(d, rng, name)
        sampler = _sample_haar if fam == "haar" else _sample_gaussian
        return DenseOperator(sampler(d, rng), name, family=fam)

    def module(self, module, k):
        """R_{M,k}."""
        return self.get(module_name(module, k))

    def tuple(self, i):
        """R_i (1-based tuple position)."""
        return self.get(tuple_name(i))

    def dense(self, name):
        """Dense ``(d, d)`` array of matrix ``name`` (for small d)."""
        return self.get(name).dense()

    def matrix_names(self, graph):
        """Names of every matrix a graph's sketch uses, tuple positions first."""
        names = [tuple_name(i) for i in range(1, max(2, graph.max_fan_in) + 1)]
        names += [module_name(m, k) for m in graph.modules for k in range(3)]
        return names

    # ------------------------------------------------------------------ checks and variants
    def check_graph(self, graph):
        """Raise if the graph cannot be sketched with this bank (attribute length, N vs b).

        Records the graph's modules in :attr:`known_modules`.
        """
        longest = max(len(x) for x in graph.attributes)
        if longest > self.d_sketch:
            oid = graph.ids[int(np.argmax([len(x) for x in graph.attributes]))]
            raise ValueError(f"attributes of object {oid!r} must not be longer than "
                             f"d_sketch={self.d_sketch}; got length {longest}")
        if self.family == "block-sparse":
            check_block_params(self.d_sketch, self.block_size, self.block_prob, graph.n_matrices)
            if self.block_prob * self.d_sketch / self.block_size < 4:
                import warnings

                warnings.warn(
                    f"q·d/b = {self.block_prob * self.d_sketch / self.block_size:.2g} < 4: many columns "
                    "of D(b, q, d) have no nonzero block (THEORY.md §3)", TheoremPreconditionWarning,
                    stacklevel=3)
        self.known_modules.update(graph.modules)

    def replaced(self, overrides=None, default=None):
        """A bank with some matrices replaced: for ablations and exactness tests.

        Parameters
        ----------
        overrides : dict of name -> ndarray (d, d) or operator
        default : {None, "zero"}
            What every other matrix becomes: drawn as usual (None) or the zero matrix.
        """
        new = object.__new__(MatrixBank)
        new.__dict__.update(self.__dict__)
        new._cache = {}
        new._overrides = dict(self._overrides)
        new.known_modules = set(self.known_modules)
        for name, mat in (overrides or {}).items():
            parse_name(name)
            if isinstance(mat, _Operator):
                op = mat
            else:
                mat = np.asarray(mat, dtype=np.float64)
                if not np.all(np.isfinite(mat)):
                    raise ValueError(f"override {name!r} must be finite; got a non-finite entry")
                if mat.shape != (self.d_sketch, self.d_sketch):
                    raise ValueError(f"override {name!r} must have shape ({self.d_sketch}, {self.d_sketch}); "
                                     f"got {mat.shape}")
                op = DenseOperator(mat, name)
            new._overrides[name] = op
        check_choice("default", default, (None, "zero"))
        if default == "zero":
            new._default = lambda name: ZeroOperator(self.d_sketch, name)
        else:
            base = self
            new._default = None if self._default is None else self._default
            if new._default is None:
                new._default = lambda name: base.get(name)
        return new

    def __repr__(self):
        extra = f", block_size={self.block_size}, block_prob={self.block_prob}" if self.block_size else ""
        if getattr(self, "storage", None) == "implicit":
            extra += ", storage='implicit'"
        return f"MatrixBank(d_sketch={self.d_sketch}, family={self.family!r}, seed={self.seed}{extra})"
