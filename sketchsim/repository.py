"""A persistent repository of sketches (paper §1.1, "Sketch Repository").

Overall sketches of a network's inputs, and the object sketches beneath them, are kept in one
SQLite file bound to one :class:`~sketchsim.MatrixBank`. The repository answers

* similarity search: the top-k stored sketches by cosine (Theorem 2's score normalised), exact with
  BLAS by default, optionally through an approximate `faiss` index;
* metadata filters: every call that reads a selection takes ``where={"week": 3}`` and friends;
* summary statistics: the selected overall sketches are summed and the Theorem 3 decoders of
  :mod:`sketchsim.decode` read counts and mean attributes from the sum (:meth:`summary`);
* aging: a "generalised LRU" (paper §1.1) keeps only a prefix of older sketches (graceful erasure,
  §3.1, THEORY.md §4); storage really shrinks and every later read rescales by d/d'.

Example
-------
>>> repo = SketchRepository.create("scenes.sketchrepo", bank)          # doctest: +SKIP
>>> ids = repo.add(S, meta=[{"week": w} for w in weeks])                # S: (n, d_sketch)
>>> repo.query(S[0], k=5, where={"week": 3})                            # [(id, cosine), ...]
>>> repo.summary(where={"week": 3}, module="digit-7", depth=3, weight=0.25).count
>>> repo.age(0.25, where={"week": {"<": 3}})                            # keep d/4 of old weeks

Storage (format version 1)
--------------------------
One SQLite file (standard library ``sqlite3``, WAL journal, 64 KiB pages), never pickles:

``info(key, value)``
    ``format``, ``format_version``, ``bank`` (JSON: family, d_sketch, seed, block_size,
    block_prob), ``dtype`` (``float32``), ``generation`` (bumped by every aging).
``rows(seq, id, kind, parent, meta)``
    ``seq`` is the insertion order; ``kind`` is ``"overall"`` or ``"object"``; ``parent`` the id of
    the sketch an object sketch belongs to; ``meta`` a JSON object.
``vectors(seq, keep, crc, data)``
    ``data`` holds the first ``keep`` coordinates as little-endian float32 (``keep`` = d for a
    whole sketch, d' < d after aging), ``crc`` its CRC-32 (checked on every read).

Sketches are stored as **float32**: a relative rounding of 6·10⁻⁸, far below the sketches' own
noise δ ≈ 1/√d. :meth:`get` returns exactly the stored float32 values (as float64).

Aged rows
---------
A row aged to a d'-prefix is an :class:`~sketchsim.decode.ErasedSketch` (:meth:`get` returns one),
and every read follows :mod:`sketchsim.decode`'s erasure semantics: the cosine between a query and
an aged row compares their common prefix (the d/d' factors of :func:`~sketchsim.decode.similarity`
cancel in a cosine), and sums for :meth:`summary` rescale each row's prefix by d/d'.

Concurrency and crash safety
----------------------------
Each :meth:`add` (and each :meth:`age`) is one transaction: a writer killed at any moment leaves a
repository that opens and holds every sketch of the adds that returned, in order, and nothing of
the one in flight. Any number of readers (other processes, or objects opened with
``readonly=True``) work alongside one writer and see a consistent snapshot per call. A write takes
SQLite's write lock (``BEGIN IMMEDIATE``); a second writer that cannot get it within ``timeout``
seconds gets a :class:`RepositoryLockedError`. One object must not be shared between threads.
"""
from __future__ import annotations

import json
import math
import numbers
import os
import sqlite3
import tempfile
import warnings
import zlib
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from . import decode
from .decode import ErasedSketch
from .matrices import MatrixBank

__all__ = ["SketchRepository", "Record", "Summary", "RepositoryError", "RepositoryLockedError",
           "KINDS", "FORMAT_VERSION"]

FORMAT = "sketchsim-repository"
FORMAT_VERSION = 1
APPLICATION_ID = 0x534B5348          # "SKSH" in the SQLite header: identifies the file type
PAGE_SIZE = 65536                    # a d = 1024 float32 row (4 KiB) packs ~15 to a page
DTYPE = np.dtype("<f4")
KINDS = ("overall", "object")
DEFAULT_TIMEOUT = 2.0
LOAD_CHUNK = 4096                    # rows per fetch when loading vectors into memory
_SQL_CHUNK = 500                     # host parameters per IN (...) list
_SQLITE_MAGIC = b"SQLite format 3\x00"

_SCHEMA = """
CREATE TABLE info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE rows (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('overall', 'object')),
    parent TEXT,
    meta TEXT NOT NULL
);
CREATE INDEX rows_kind ON rows (kind, seq);
CREATE INDEX rows_parent ON rows (parent);
CREATE TABLE vectors (
    seq INTEGER PRIMARY KEY REFERENCES rows (seq),
    keep INTEGER NOT NULL,
    crc INTEGER NOT NULL,
    data BLOB NOT NULL
);
"""


class RepositoryError(RuntimeError):
    """A repository cannot do what was asked in its current state (closed, read-only)."""


class RepositoryLockedError(RepositoryError):
    """Another writer holds the repository's write lock."""


@dataclass(frozen=True)
class Record:
    """What the repository knows about one stored sketch (:meth:`SketchRepository.record`).

    ``seq`` is the insertion order (1-based); ``keep`` the number of stored leading coordinates
    (d unless aged); ``meta`` the metadata dict given to :meth:`SketchRepository.add`.
    """

    id: str
    kind: str
    parent: str | None
    meta: dict
    keep: int
    seq: int


@dataclass(frozen=True)
class Summary:
    """Summary statistics of a selection (:meth:`SketchRepository.summary`, paper Theorem 3).

    Attributes
    ----------
    n_sketches : int
        Number of overall sketches summed.
    module : str
    keeps : tuple of int
        The distinct stored prefix lengths among them (``(d,)`` when none is aged).
    mean_attributes : ndarray or None
        Weight-averaged mean attribute of the module's objects over the whole selection
        (:func:`~sketchsim.decode.mean_attributes`, no weight needed); None when its denominator
        ⟨R_{M,2} e_1, s⟩ is zero (an aged block-sparse sum whose kept prefix misses that column).
    count : float or None
        Estimated number of the module's objects in the whole selection
        (:func:`~sketchsim.decode.count`); None unless ``depth`` and ``weight`` were given.
    attribute_sum : ndarray or None
        Σ x_θ over them (:func:`~sketchsim.decode.attribute_sum`); None unless ``depth`` and
        ``weight`` were given.
    """

    n_sketches: int
    module: str
    keeps: tuple
    mean_attributes: np.ndarray
    count: float | None
    attribute_sum: np.ndarray | None


# --------------------------------------------------------------------------- helpers
def _bank_record(bank):
    if not isinstance(bank, MatrixBank):
        raise ValueError(f"bank must be a sketchsim.MatrixBank; got {type(bank).__name__}")
    if bank._overrides or bank._default is not None:
        raise ValueError("bank must be a plain MatrixBank rebuilt from (family, d_sketch, seed, block_size, "
                         "block_prob); got a bank with replaced matrices (MatrixBank.replaced), which a "
                         "repository cannot record")
    rec = {"family": bank.family, "d_sketch": bank.d_sketch, "seed": bank.seed,
           "block_size": bank.block_size, "block_prob": bank.block_prob}
    if bank.storage == "implicit":         # same matrices as stored; kept so a rebuild stays O(d) in memory
        rec["storage"] = bank.storage
    return rec


def _bank_from_record(rec):
    return MatrixBank(rec["d_sketch"], rec["family"], rec["seed"], block_size=rec.get("block_size"),
                      block_prob=rec.get("block_prob"), storage=rec.get("storage"))


def _json_default(obj):
    if isinstance(obj, (np.bool_, np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _dump_meta(k, m):
    if not isinstance(m, dict):
        raise ValueError(f"meta[{k}] must be a dict; got {type(m).__name__} {m!r}")
    bad = [key for key in m if not isinstance(key, str)]
    if bad:
        raise ValueError(f"meta[{k}] keys must be strings; got the key {bad[0]!r}")
    try:
        return json.dumps(m, allow_nan=False, default=_json_default, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"meta[{k}] must be JSON-serialisable (finite numbers, strings, lists, dicts); "
                         f"got {m!r}: {exc}") from None


def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def _scalar(name, v):
    """A where-value bound as an SQL parameter (json_extract returns 1/0 for true/false)."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, str) or _is_int(v):
        return v
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError(f"where[{name!r}] values must be finite; got {v!r}")
        return v
    raise ValueError(f"where[{name!r}] values must be str, int, float, bool or None (or a list of them, or "
                     f"{{op: value}} with op in ==, !=, <, <=, >, >=, in); got {v!r}")


_OPS = {"==": "=", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


def _where_sql(where, kind, parent):
    """SQL condition and parameters for the selection arguments shared by every read."""
    clauses, params = [], []
    if kind is not None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(map(repr, KINDS))} or None (both); got {kind!r}")
        clauses.append("r.kind = ?")
        params.append(kind)
    if parent is not None:
        if not isinstance(parent, str):
            raise ValueError(f"parent must be a stored id (str) or None; got {parent!r}")
        clauses.append("r.parent = ?")
        params.append(parent)
    if where is None:
        return clauses, params
    if not isinstance(where, dict):
        raise ValueError(f"where must be a dict of metadata key -> value (or None); got {where!r}")
    for key, cond in where.items():
        if not isinstance(key, str) or not key or '"' in key or "\\" in key:
            raise ValueError(f"where keys must be nonempty metadata keys without '\"' or '\\'; got {key!r}")
        path = f'$."{key}"'
        if isinstance(cond, dict):
            items = list(cond.items())
            if not items:
                raise ValueError(f"where[{key!r}] must hold at least one {{op: value}}; got {{}}")
        elif isinstance(cond, (list, tuple, set, frozenset)):
            items = [("in", cond)]
        else:
            items = [("==", cond)]
        for op, val in items:
            if op == "in":
                if not isinstance(val, (list, tuple, set, frozenset)):
                    raise ValueError(f"where[{key!r}] 'in' needs a list of values; got {val!r}")
                vals = [_scalar(key, v) for v in val if v is not None]
                ors = []
                if vals:
                    ors.append(f"json_extract(r.meta, ?) IN ({', '.join('?' * len(vals))})")
                    params += [path] + vals
                if any(v is None for v in val):
                    ors.append("json_type(r.meta, ?) = 'null'")
                    params.append(path)
                clauses.append("(" + " OR ".join(ors) + ")" if ors else "0")
            elif op not in _OPS:
                raise ValueError(f"where[{key!r}] operators must be one of {', '.join(list(_OPS) + ['in'])}; "
                                 f"got {op!r}")
            elif val is None:
                if op not in ("==", "!="):
                    raise ValueError(f"where[{key!r}] can compare None only with == or !=; got {op!r}")
                clauses.append("json_type(r.meta, ?) " + ("= 'null'" if op == "==" else "IS NOT 'null'"))
                params.append(path)
            else:
                clauses.append(f"json_extract(r.meta, ?) {_OPS[op]} ?")
                params += [path, _scalar(key, val)]
    return clauses, params


def _check_k(k):
    if not _is_int(k):
        raise ValueError(f"k must be a positive integer; got {k!r}")
    if k <= 0:
        raise ValueError(f"k must be a positive integer (k ≥ 1); got {k}")
    return int(k)


def _encode(row):
    data = np.ascontiguousarray(row, dtype=DTYPE).tobytes()
    return zlib.crc32(data), data


# --------------------------------------------------------------------------- in-memory index
class _Index:
    """Float32 matrix of every stored row (zero-padded beyond its prefix) for BLAS search."""

    def __init__(self, d):
        self.d = d
        self.n = 0
        self.M = np.zeros((0, d), dtype=np.float32)
        self.seqs = np.zeros(0, dtype=np.int64)
        self.keeps = np.zeros(0, dtype=np.int64)
        self.sqnorm = np.zeros(0, dtype=np.float64)
        self.kinds = np.zeros(0, dtype=np.int8)          # index into KINDS
        self.ids = []
        self.generation = None
        self.last_seq = 0
        self.ann = None

    def reserve(self, extra):
        need = self.n + extra
        if need > self.M.shape[0]:
            cap = max(need, 2 * self.M.shape[0], 256)
            M = np.zeros((cap, self.d), dtype=np.float32)
            M[:self.n] = self.M[:self.n]
            self.M = M
            for name in ("seqs", "keeps", "sqnorm", "kinds"):
                old = getattr(self, name)
                new = np.zeros(cap, dtype=old.dtype)
                new[:self.n] = old[:self.n]
                setattr(self, name, new)


# --------------------------------------------------------------------------- the repository
class SketchRepository:
    """A persistent store of sketches bound to one :class:`~sketchsim.MatrixBank` (paper §1.1).

    Build one with :meth:`create` or :meth:`open`, never directly. See the module docstring for
    the storage format, the aging semantics and the concurrency rules.

    Selections
    ----------
    :meth:`select`, :meth:`query`, :meth:`summed`, :meth:`summary` and :meth:`age` select rows with
    the same keyword arguments:

    ``where``
        A dict over the metadata: ``{"week": 3}`` (equality), ``{"week": [1, 2]}`` (membership),
        ``{"week": {"<": 3}}`` (operators ``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=``, ``in``);
        several keys must all hold. A row without the key never matches (not even ``!=``);
        ``None`` matches an explicit JSON null. Numbers and strings never compare equal.
    ``kind``
        ``"overall"`` (default), ``"object"``, or ``None`` for both.
    ``parent``
        Only the object sketches of one stored sketch.
    """

    def __init__(self, path, conn, bank, readonly, timeout):
        self._path = path
        self._conn = conn
        self._bank = bank
        self._readonly = readonly
        self._timeout = timeout
        self._index = _Index(bank.d_sketch)
        self._in_read = False

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(cls, path, bank, *, timeout=DEFAULT_TIMEOUT):
        """A new, empty repository at ``path`` (a file that must not exist), bound to ``bank``.

        The bank is recorded by its parameters (family, d_sketch, seed, block_size, block_prob),
        from which :meth:`open` rebuilds it; a bank with replaced matrices is refused. The file
        appears atomically, complete, or not at all.
        """
        path = os.fspath(path)
        record = _bank_record(bank)
        if os.path.lexists(path):
            raise ValueError(f"path must not exist yet (create never overwrites; use open): got the existing "
                             f"{'directory' if os.path.isdir(path) else 'file'} {path!r}")
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".sketchrepo", dir=directory)
        os.close(fd)
        os.unlink(tmp)                     # let SQLite create it with the page size below
        try:
            conn = sqlite3.connect(tmp, isolation_level=None)
            try:
                conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version = {FORMAT_VERSION}")
                conn.executescript(_SCHEMA)
                conn.execute("BEGIN")
                conn.executemany("INSERT INTO info (key, value) VALUES (?, ?)", [
                    ("format", FORMAT), ("format_version", str(FORMAT_VERSION)),
                    ("bank", json.dumps(record)), ("dtype", "float32"), ("generation", "0")])
                conn.execute("COMMIT")
                conn.execute("PRAGMA journal_mode = WAL")
            finally:
                conn.close()
            try:
                os.link(tmp, path)         # atomic, and fails if a concurrent create won the race
            except FileExistsError:
                raise ValueError(f"path must not exist yet (create never overwrites); got {path!r}, which "
                                 "appeared while creating") from None
            except OSError:                # no hard links on this file system
                if os.path.lexists(path):
                    raise ValueError(f"path must not exist yet (create never overwrites); got {path!r}") from None
                os.replace(tmp, path)
        finally:
            for suffix in ("", "-wal", "-shm", "-journal"):
                if os.path.exists(tmp + suffix):
                    os.unlink(tmp + suffix)
        return cls.open(path, timeout=timeout, check=False)

    @classmethod
    def open(cls, path, *, readonly=False, timeout=DEFAULT_TIMEOUT, check=True):
        """Reopen a repository; its bank is rebuilt from what it recorded.

        Parameters
        ----------
        path : str or PathLike
            A file made by :meth:`create`.
        readonly : bool
            Refuse writes (a reader beside another process's writer needs no more than this).
        timeout : float
            Seconds a write waits for another writer's lock before :class:`RepositoryLockedError`.
        check : bool
            Run SQLite's ``quick_check`` over the whole file first (linear in its size; a
            corrupted file is refused with a ValueError). Row checksums are verified on every read
            regardless.
        """
        path = os.fspath(path)
        try:
            timeout = float(timeout)
        except (TypeError, ValueError):
            raise ValueError(f"timeout must be a number of seconds ≥ 0; got {timeout!r}") from None
        if not (timeout >= 0 and math.isfinite(timeout)):
            raise ValueError(f"timeout must be a number of seconds ≥ 0; got {timeout!r}")
        if not os.path.exists(path):
            raise ValueError(f"path must be an existing sketch repository; got {path!r}, which does not exist "
                             "(SketchRepository.create makes a new one)")
        if not os.path.isfile(path):
            raise ValueError(f"path must be a sketch repository file; got the directory {path!r}")
        with open(path, "rb") as fh:
            head = fh.read(100)
        if len(head) < 100 or head[:16] != _SQLITE_MAGIC:
            raise ValueError(f"path must be a sketch repository (an SQLite file made by SketchRepository.create); "
                             f"got {path!r}, which is not an SQLite database")
        uri = "file:" + _uri_path(path) + ("?mode=ro" if readonly else "?mode=rw")
        try:
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=timeout)
        except sqlite3.Error as exc:
            raise ValueError(f"path must be a readable sketch repository; got {path!r}: {exc}") from None
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            if app_id != APPLICATION_ID:
                raise ValueError(f"path must be a sketch repository; got {path!r}, an SQLite database of "
                                 f"another application (application_id {app_id:#x})")
            if check:
                res = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
                if res != ["ok"]:
                    raise ValueError(f"path must be an intact sketch repository; {path!r} is corrupted "
                                     f"(SQLite quick_check: {'; '.join(map(str, res[:3]))})")
            info = dict(conn.execute("SELECT key, value FROM info").fetchall())
            if info.get("format") != FORMAT:
                raise ValueError(f"path must be a sketch repository; got {path!r} (format {info.get('format')!r})")
            version = int(info.get("format_version", -1))
            if version != FORMAT_VERSION:
                raise ValueError(f"path must be a sketch repository of format version {FORMAT_VERSION}; got "
                                 f"{path!r} of version {version}")
            bank = _bank_from_record(json.loads(info["bank"]))
            if not readonly:
                conn.execute("PRAGMA journal_mode = WAL")
        except ValueError:
            conn.close()
            raise
        except (sqlite3.Error, KeyError, TypeError, json.JSONDecodeError) as exc:
            conn.close()
            raise ValueError(f"path must be an intact sketch repository; {path!r} is corrupted or not a "
                             f"repository: {type(exc).__name__}: {exc}") from None
        return cls(path, conn, bank, readonly, timeout)

    # ------------------------------------------------------------------ basics
    @property
    def path(self):
        return self._path

    @property
    def bank(self):
        """The :class:`~sketchsim.MatrixBank` every stored sketch was made with."""
        return self._bank

    @property
    def d_sketch(self):
        return self._bank.d_sketch

    @property
    def readonly(self):
        return self._readonly

    def close(self):
        """Close the file (idempotent). Later calls raise :class:`RepositoryError`."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
            self._index = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

    def __repr__(self):
        state = "closed" if self._conn is None else f"{len(self)} sketches"
        return f"SketchRepository({self._path!r}, {self._bank!r}, {state})"

    @property
    def conn(self):
        if self._conn is None:
            raise RepositoryError(f"the repository {self._path!r} is closed")
        return self._conn

    def __len__(self):
        """Number of stored sketches of both kinds."""
        return self.conn.execute("SELECT COUNT(*) FROM rows").fetchone()[0]

    def __contains__(self, sketch_id):
        return isinstance(sketch_id, str) and self.conn.execute(
            "SELECT 1 FROM rows WHERE id = ?", (sketch_id,)).fetchone() is not None

    @property
    def nbytes(self):
        """Bytes of sketch values stored (4 per kept coordinate)."""
        return int(self.conn.execute("SELECT COALESCE(SUM(LENGTH(data)), 0) FROM vectors").fetchone()[0])

    @property
    def file_size(self):
        """Bytes on disk: the file and its write-ahead log."""
        return sum(os.path.getsize(self._path + s) for s in ("", "-wal") if os.path.exists(self._path + s))

    # ------------------------------------------------------------------ transactions
    @contextmanager
    def _write(self):
        if self._readonly:
            raise RepositoryError(f"the repository {self._path!r} was opened with readonly=True; open it "
                                  "without readonly to write")
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise RepositoryLockedError(
                    f"the repository {self._path!r} is locked by another writer (waited {self._timeout:g} s): "
                    "only one process may write at a time; retry later or open with a longer timeout") from None
            raise
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")

    @contextmanager
    def _read(self):
        """One consistent snapshot (a read transaction) for everything inside."""
        if self._in_read:
            yield self.conn
            return
        conn = self.conn
        conn.execute("BEGIN")
        self._in_read = True
        try:
            yield conn
        finally:
            self._in_read = False
            conn.execute("COMMIT")

    # ------------------------------------------------------------------ writing
    def _rows_of(self, sketches):
        """(float32 rows (n, keep), keep) from an array or a batched ErasedSketch."""
        d = self.d_sketch
        if isinstance(sketches, ErasedSketch):
            if sketches.d != d:
                raise ValueError(f"sketches must have d_sketch = {d} entries to match the repository's bank; "
                                 f"got an ErasedSketch of d = {sketches.d}")
            self._check_keep(sketches.keep, "sketches (ErasedSketch) keep")
            arr = sketches.prefix
        else:
            try:
                arr = np.asarray(sketches, dtype=np.float64)
            except (TypeError, ValueError):
                raise ValueError(f"sketches must be a numeric array of shape (n, d_sketch={d}); got "
                                 f"{type(sketches).__name__}") from None
            if arr.ndim != 2 or arr.shape[1] != d:
                raise ValueError(f"sketches must have shape (n, d_sketch={d}) for this repository's bank "
                                 f"{self._bank!r}; got shape {arr.shape}")
        if arr.ndim != 2:
            raise ValueError(f"sketches must be a batch of shape (n, {d}); got an ErasedSketch of shape "
                             f"{sketches.shape} (use a 2-d prefix)")
        bad = ~np.isfinite(arr)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise ValueError(f"sketches must be finite; got {float(arr[r, c])!r} in row {r} (coordinate {c})")
        with np.errstate(over="ignore"):
            rows = arr.astype(DTYPE)
        bad = ~np.isfinite(rows)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise ValueError(f"sketches must fit in float32 (|value| < 3.4e38); got {float(arr[r, c])!r} in row {r}")
        return rows, arr.shape[1]

    def _check_keep(self, k, name):
        bank = self._bank
        if bank.family == "block-sparse" and k % bank.block_size:
            raise ValueError(f"{name} must be a multiple of block_size={bank.block_size} for the block-sparse "
                             f"family (a block boundary, THEORY.md §4); got {k}")
        return k

    def add(self, sketches, ids=None, meta=None, *, kind="overall", parents=None):
        """Store a batch of sketches in one transaction; returns their ids.

        Parameters
        ----------
        sketches : array of shape (n, d_sketch), or ErasedSketch of shape (n, d_sketch)
            Finite rows made with the repository's bank (an ErasedSketch is stored aged).
        ids : list of str, optional
            New unique ids (not starting with ``#``, which marks generated ids). Default:
            ``"#<seq>"`` from the insertion order.
        meta : list of dict, optional
            One JSON-serialisable dict per row (numpy scalars are converted).
        kind : {"overall", "object"}
            ``"object"`` rows are object sketches (:func:`~sketchsim.sketch_objects`) and need
            ``parents``.
        parents : list of str, optional
            For ``kind="object"``: the id of the stored sketch each row belongs to (stored earlier
            or earlier in this call).

        Raises
        ------
        ValueError
            Anything invalid, before anything is written: the call stores all rows or none.
        RepositoryLockedError
            Another writer holds the lock.
        """
        rows, keep = self._rows_of(sketches)
        n = rows.shape[0]
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(map(repr, KINDS))}; got {kind!r}")
        if ids is not None:
            if isinstance(ids, (str, bytes)) or not hasattr(ids, "__len__"):
                raise ValueError(f"ids must be a list of {n} str (one per row) or None; got {ids!r}")
            ids = list(ids)
            if len(ids) != n:
                raise ValueError(f"ids must hold one id per row: {n}; got {len(ids)}")
            for k, i in enumerate(ids):
                if not isinstance(i, str) or not i:
                    raise ValueError(f"ids must be nonempty str; got {i!r} at index {k}")
                if i.startswith("#"):
                    raise ValueError(f"ids must not start with '#' (reserved for generated ids); got {i!r} at "
                                     f"index {k}")
            seen = set()
            for i in ids:
                if i in seen:
                    raise ValueError(f"ids must be unique; got {i!r} twice in this call")
                seen.add(i)
        if meta is None:
            metas = ["{}"] * n
        else:
            if isinstance(meta, dict) or not isinstance(meta, (list, tuple)):
                raise ValueError(f"meta must be a list of {n} dicts (one per row) or None; got "
                                 f"{type(meta).__name__}")
            if len(meta) != n:
                raise ValueError(f"meta must hold one dict per row: {n}; got {len(meta)}")
            metas = [_dump_meta(k, m) for k, m in enumerate(meta)]
        if kind == "overall":
            if parents is not None:
                raise ValueError(f"parents applies only to kind='object'; got parents with kind={kind!r}")
            parents = [None] * n
        else:
            if parents is None or isinstance(parents, (str, bytes)) or not hasattr(parents, "__len__"):
                raise ValueError(f"parents must be a list of {n} stored ids for kind='object'; got {parents!r}")
            parents = list(parents)
            if len(parents) != n:
                raise ValueError(f"parents must hold one id per row: {n}; got {len(parents)}")
            for k, p in enumerate(parents):
                if not isinstance(p, str):
                    raise ValueError(f"parents must be stored ids (str); got {p!r} at index {k}")
        if n == 0:
            return []
        encoded = [_encode(r) for r in rows]
        with self._write() as conn:
            first = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM rows").fetchone()[0] + 1
            seqs = range(first, first + n)
            if ids is None:
                ids = [f"#{s}" for s in seqs]
            else:
                stored = self._existing(conn, ids)
                if stored:
                    raise ValueError(f"ids must be new; got {sorted(stored)[0]!r}, which is already stored "
                                     f"({len(stored)} such id(s))")
            if kind == "object":
                own = {}
                for k, i in enumerate(ids):
                    own.setdefault(i, k)
                outside = [p for k, p in enumerate(parents) if own.get(p, n) >= k]
                known = self._existing(conn, outside)
                missing = [p for p in outside if p not in known]
                if missing:
                    raise ValueError(f"parents must be stored ids; got {missing[0]!r}, which is not stored")
            try:
                conn.executemany("INSERT INTO rows (seq, id, kind, parent, meta) VALUES (?, ?, ?, ?, ?)",
                                 zip(seqs, ids, [kind] * n, parents, metas))
                conn.executemany("INSERT INTO vectors (seq, keep, crc, data) VALUES (?, ?, ?, ?)",
                                 ((s, keep, c, b) for s, (c, b) in zip(seqs, encoded)))
            except sqlite3.IntegrityError as exc:          # a race the checks above should prevent
                raise ValueError(f"ids must be new and unique; got a conflict: {exc}") from None
        return list(ids)

    def add_objects(self, parent, objects, graph=None, meta=None):
        """Store the object sketches of one stored sketch (e.g. from :func:`~sketchsim.sketch_objects`).

        Parameters
        ----------
        parent : str
            A stored id (usually the overall sketch of the same input).
        objects : dict of object id -> array of shape (d_sketch,)
        graph : Graph, optional
            When given, each row's metadata also records the object's ``module`` and ``depth``.
        meta : dict, optional
            Metadata shared by every row.

        Returns
        -------
        list of str
            The new ids ``"<parent>/<object id>"``; each row's metadata holds ``"object"``: its id.
        """
        if not isinstance(objects, dict) or not objects:
            raise ValueError(f"objects must be a nonempty dict of object id -> sketch; got {objects!r}"[:200])
        if meta is not None and not isinstance(meta, dict):
            raise ValueError(f"meta must be a dict shared by every object row, or None; got {meta!r}")
        if not isinstance(parent, str):
            raise ValueError(f"parent must be a stored id (str); got {parent!r}")
        keys = list(objects)
        d = self.d_sketch
        rows = []
        for oid in keys:
            v = np.asarray(objects[oid], dtype=np.float64)
            if v.shape != (d,):
                raise ValueError(f"objects[{oid!r}] must be a sketch of shape (d_sketch,) = ({d},); got shape "
                                 f"{v.shape}")
            rows.append(v)
        metas = []
        for oid in keys:
            m = dict(meta or {})
            m["object"] = oid
            if graph is not None:
                m["module"] = graph.module(oid)
                m["depth"] = graph.depth(oid)
            metas.append(m)
        return self.add(np.stack(rows), ids=[f"{parent}/{o}" for o in keys], meta=metas, kind="object",
                        parents=[parent] * len(keys))

    @staticmethod
    def _existing(conn, ids):
        found = set()
        ids = list(ids)
        for a in range(0, len(ids), _SQL_CHUNK):
            part = ids[a:a + _SQL_CHUNK]
            found.update(r[0] for r in conn.execute(
                f"SELECT id FROM rows WHERE id IN ({', '.join('?' * len(part))})", part))
        return found

    # ------------------------------------------------------------------ reading single rows
    def _fetch(self, sketch_id):
        if not isinstance(sketch_id, str):
            raise ValueError(f"id must be a stored id (str); got {sketch_id!r}")
        row = self.conn.execute(
            "SELECT r.id, r.kind, r.parent, r.meta, v.keep, r.seq, v.crc, v.data FROM rows r "
            "JOIN vectors v ON v.seq = r.seq WHERE r.id = ?", (sketch_id,)).fetchone()
        if row is None:
            raise ValueError(f"id must be a stored id; got {sketch_id!r}, which is not in the repository")
        return row

    def _decode_blob(self, sketch_id, keep, crc, data):
        if zlib.crc32(data) != crc or len(data) != 4 * keep:
            raise ValueError(f"the repository {self._path!r} is corrupted: stored sketch {sketch_id!r} fails its "
                             "checksum")
        return np.frombuffer(data, dtype=DTYPE)

    def get(self, sketch_id):
        """The stored sketch: ndarray of shape (d_sketch,) (float64 holding the stored float32 values),
        or an :class:`~sketchsim.decode.ErasedSketch` (its kept prefix) if the row was aged."""
        _, _, _, _, keep, _, crc, data = self._fetch(sketch_id)
        v = self._decode_blob(sketch_id, keep, crc, data).astype(np.float64)
        return v if keep == self.d_sketch else ErasedSketch(v, self.d_sketch)

    def record(self, sketch_id):
        """The :class:`Record` (kind, parent, metadata, keep, insertion order) of a stored sketch."""
        i, kind, parent, meta, keep, seq, _, _ = self._fetch(sketch_id)
        return Record(i, kind, parent, json.loads(meta), int(keep), int(seq))

    # ------------------------------------------------------------------ selections
    def _select(self, conn, where, kind, parent):
        clauses, params = _where_sql(where, kind, parent)
        sql = "SELECT r.seq, r.id FROM rows r" + (" WHERE " + " AND ".join(clauses) if clauses else "")
        return conn.execute(sql + " ORDER BY r.seq", params).fetchall()

    def select(self, where=None, *, kind="overall", parent=None):
        """Ids of the selected sketches, in insertion order (see "Selections" in the class docstring)."""
        with self._read() as conn:
            return [i for _, i in self._select(conn, where, kind, parent)]

    def _refresh(self, conn):
        """Bring the in-memory float32 matrix up to date (inside a read transaction)."""
        ix = self._index
        gen = conn.execute("SELECT value FROM info WHERE key = 'generation'").fetchone()[0]
        if gen != ix.generation:
            ix = self._index = _Index(self.d_sketch)
            ix.generation = gen
        cur = conn.execute("SELECT r.seq, r.id, r.kind, v.keep, v.crc, v.data FROM rows r JOIN vectors v ON "
                           "v.seq = r.seq WHERE r.seq > ? ORDER BY r.seq", (ix.last_seq,))
        while True:
            chunk = cur.fetchmany(LOAD_CHUNK)
            if not chunk:
                break
            ix.reserve(len(chunk))
            for seq, sid, kind, keep, crc, data in chunk:
                v = self._decode_blob(sid, keep, crc, data)
                j = ix.n
                ix.kinds[j] = KINDS.index(kind)
                ix.M[j, :keep] = v
                ix.seqs[j] = seq
                ix.keeps[j] = keep
                ix.sqnorm[j] = float(np.dot(v, v.astype(np.float64)))
                ix.ids.append(sid)
                ix.n += 1
            ix.last_seq = int(ix.seqs[ix.n - 1])
        return ix

    def _rows_selected(self, conn, where, kind, parent):
        """(index, positions of the selected rows in its matrix)."""
        ix = self._refresh(conn)
        if kind is not None and kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(map(repr, KINDS))} or None (both); got {kind!r}")
        if where is None and parent is None:
            if kind is None:
                return ix, np.arange(ix.n)
            return ix, np.flatnonzero(ix.kinds[:ix.n] == KINDS.index(kind))
        clauses, params = _where_sql(where, kind, parent)
        cur = conn.execute("SELECT r.seq FROM rows r WHERE " + " AND ".join(clauses) + " ORDER BY r.seq", params)
        seqs = np.fromiter((s for (s,) in cur), dtype=np.int64)
        return ix, np.searchsorted(ix.seqs[:ix.n], seqs)

    def _query_vector(self, sketch):
        d = self.d_sketch
        if isinstance(sketch, ErasedSketch):
            if sketch.d != d:
                raise ValueError(f"sketch must have d_sketch = {d} entries to match the repository's bank; got an "
                                 f"ErasedSketch of d = {sketch.d}")
            if sketch.ndim != 1:
                raise ValueError(f"sketch must be one sketch of shape ({d},); got an ErasedSketch of shape "
                                 f"{sketch.shape}")
            self._check_keep(sketch.keep, "sketch (ErasedSketch) keep")
            q, kq = sketch.values, sketch.keep
        else:
            try:
                q = np.asarray(sketch, dtype=np.float64)
            except (TypeError, ValueError):
                raise ValueError(f"sketch must be a numeric array of shape ({d},); got {type(sketch).__name__}") \
                    from None
            if q.shape != (d,):
                raise ValueError(f"sketch must have shape (d_sketch,) = ({d},) for this repository's bank; got "
                                 f"shape {q.shape}")
            kq = d
        if not np.all(np.isfinite(q)):
            raise ValueError(f"sketch must be finite; got {float(q[~np.isfinite(q)][0])!r}")
        if not np.any(q[:kq]):
            raise ValueError("sketch must be nonzero (a cosine with the zero vector is undefined); got all zeros")
        return q, kq

    def query(self, sketch, k=10, *, where=None, kind="overall", parent=None, approximate=False):
        """The k stored sketches most similar to ``sketch`` by cosine, best first.

        Exact by default: one float32 GEMV over the in-memory matrix, ``np.argpartition`` for the
        candidates, and their cosines recomputed in float64 from the stored values. Against an aged
        row (or with an aged query) the cosine compares the common prefix only, as
        :func:`~sketchsim.decode.similarity` does (its d/d' factors cancel in a cosine).

        Parameters
        ----------
        sketch : ndarray of shape (d_sketch,), or ErasedSketch
        k : int
            At least 1; fewer results come back when fewer rows are selected.
        where, kind, parent
            The selection (class docstring).
        approximate : bool
            Find candidates with a `faiss` HNSW index (``pip install faiss-cpu``, extra ``ann``),
            then rerank them exactly; may miss true neighbours, aged ones in particular.

        Returns
        -------
        list of (id, cosine) tuples
        """
        q, kq = self._query_vector(sketch)
        k = _check_k(k)
        with self._read() as conn:
            ix, pos = self._rows_selected(conn, where, kind, parent)
            if len(pos) == 0:
                return []
            if approximate:
                cand = self._ann_candidates(ix, pos, q, kq, k)
                if cand is not None:
                    return self._rank(ix, cand, q, kq, k)
            return self._rank(ix, self._exact_candidates(ix, pos, q, kq, k), q, kq, k)

    def _exact_candidates(self, ix, pos, q, kq, k):
        full = len(pos) == ix.n
        M = ix.M[:ix.n] if full else ix.M[pos]
        dots = M @ q.astype(np.float32)
        keeps = np.minimum(ix.keeps[pos], kq)
        qcum = np.concatenate([[0.0], np.cumsum(q[:kq] ** 2)])
        qn = np.sqrt(qcum[keeps])
        if kq < self.d_sketch:
            rn = np.sqrt(np.einsum("ij,ij->i", M[:, :kq], M[:, :kq], dtype=np.float64))
        else:
            rn = np.sqrt(ix.sqnorm[pos])
        denom = qn * rn
        with np.errstate(invalid="ignore", divide="ignore"):
            cos = np.where(denom > 0, dots / np.where(denom > 0, denom, 1.0), -np.inf)
        m = min(len(pos), 2 * k + 8)        # a margin for float32 near-ties; reranked in float64
        top = np.argpartition(-cos, m - 1)[:m] if m < len(pos) else np.arange(len(pos))
        top = top[np.isfinite(cos[top])]
        return pos[top]

    def _rank(self, ix, cand, q, kq, k):
        if len(cand) == 0:
            return []
        R = ix.M[cand].astype(np.float64)
        keeps = np.minimum(ix.keeps[cand], kq)
        mask = np.arange(self.d_sketch)[None, :] < keeps[:, None]
        Rm = np.where(mask, R, 0.0)
        Qm = np.where(mask, q[None, :], 0.0)
        dots = np.einsum("ij,ij->i", Rm, Qm)
        denom = np.linalg.norm(Rm, axis=1) * np.linalg.norm(Qm, axis=1)
        ok = denom > 0
        cand, cos = cand[ok], dots[ok] / denom[ok]
        order = np.lexsort((ix.seqs[cand], -cos))[:k]
        return [(ix.ids[j], float(cos[o])) for o, j in zip(order, cand[order])]

    def _ann_candidates(self, ix, pos, q, kq, k):
        try:
            import faiss
        except ImportError:
            raise ValueError("approximate must be False unless faiss is installed (pip install faiss-cpu, or the "
                             "extra sketchsim[ann]); got approximate=True without faiss") from None
        if ix.ann is None or ix.ann[1] < ix.n:
            index, done = (ix.ann if ix.ann is not None else (faiss.IndexHNSWFlat(self.d_sketch, 32,
                                                                                  faiss.METRIC_INNER_PRODUCT), 0))
            X = np.array(ix.M[done:ix.n], dtype=np.float32)
            norms = np.sqrt(ix.sqnorm[done:ix.n])[:, None]
            X /= np.where(norms > 0, norms, 1.0).astype(np.float32)
            index.add(X)
            ix.ann = (index, ix.n)
        index = ix.ann[0]
        qq = np.zeros((1, self.d_sketch), dtype=np.float32)
        qq[0, :kq] = q[:kq] / np.linalg.norm(q[:kq])
        selected = np.zeros(ix.n, dtype=bool)
        selected[pos] = True
        n_cand = min(ix.n, max(4 * k, 64))
        while True:
            _, found = index.search(qq, n_cand)
            found = found[0][found[0] >= 0]
            found = found[selected[found]]
            if len(found) >= min(k, len(pos)) or n_cand >= ix.n:
                return found if len(found) else None
            n_cand = min(ix.n, 4 * n_cand)

    # ------------------------------------------------------------------ summary statistics
    def summed(self, where=None, *, kind="overall", parent=None):
        """The sum of the selected sketches, ready for any :mod:`sketchsim.decode` decoder.

        Returns
        -------
        sketch : ndarray of shape (d_sketch,) or ErasedSketch
            An ndarray when no selected row is aged; an ErasedSketch of the summed prefixes when
            all share one prefix d' < d; and when prefixes differ, the ndarray
            Σ_g (d/d'_g)·P_g Σ_{rows of g} s, group g being the rows aged to d'_g. The decoders are
            linear in s (the self-normalised ones are ratios of linear maps), so decoding it equals
            summing the per-group decodes of ErasedSketch(Σ_g) (pooled for the ratios).
        n : int
            Number of sketches summed.
        keeps : tuple of int
            The distinct prefix lengths d'_g.
        """
        with self._read() as conn:
            ix, pos = self._rows_selected(conn, where, kind, parent)
            if len(pos) == 0:
                raise ValueError(f"where must select at least one sketch; selected none (where={where!r}, "
                                 f"kind={kind!r}, parent={parent!r})")
            d = self.d_sketch
            keeps = ix.keeps[pos]
            groups = np.unique(keeps)
            sums = {}
            for g in groups:
                rows = pos[keeps == g]
                acc = np.zeros(int(g))
                for a in range(0, len(rows), LOAD_CHUNK):
                    acc += ix.M[rows[a:a + LOAD_CHUNK], :g].sum(axis=0, dtype=np.float64)
                sums[int(g)] = acc
        keeps_t = tuple(int(g) for g in groups)
        if keeps_t == (d,):
            return sums[d], len(pos), keeps_t
        if len(keeps_t) == 1:
            return ErasedSketch(sums[keeps_t[0]], d), len(pos), keeps_t
        total = np.zeros(d)
        for g, acc in sums.items():
            total[:g] += acc * (d / g)
        return total, len(pos), keeps_t

    def summary(self, where=None, *, module, depth=None, weight=None, length=None, kind="overall",
                parent=None, column_norm=None):
        """Summary statistics of a selection (paper §1.1 and Theorem 3): sum the selected overall
        sketches (:meth:`summed`), then decode the sum with :mod:`sketchsim.decode`.

        Parameters
        ----------
        where, kind, parent
            The selection (class docstring).
        module : str
            The module M* whose objects are summarised.
        depth, weight : int, float, optional
            h(M*) and the common effective weight w* of its objects; both needed for
            :attr:`Summary.count` and :attr:`Summary.attribute_sum` (Theorem 3 needs w*).
        length : int, optional
            Attribute length (truncates the attribute estimates).
        column_norm : bool, optional
            As in :mod:`sketchsim.decode`.

        Returns
        -------
        Summary
        """
        if (depth is None) != (weight is None):
            raise ValueError(f"depth and weight must be given together (Theorem 3 needs both for a count); got "
                             f"depth={depth!r}, weight={weight!r}")
        s, n, keeps = self.summed(where, kind=kind, parent=parent)
        bank = self._bank
        try:
            mean = decode.mean_attributes(s, bank, module, length=length, column_norm=column_norm)
        except decode.NonFiniteEstimateError:
            mean = None          # ⟨R_{M,2} e_1, s⟩ = 0: e.g. an aged block-sparse sum whose prefix misses that column
        count = total = None
        if depth is not None:
            count = decode.count(s, bank, module, depth, weight, column_norm=column_norm)
            total = decode.attribute_sum(s, bank, module, depth, weight, length=length, column_norm=column_norm)
        return Summary(n, module, keeps, mean, count, total)

    # ------------------------------------------------------------------ aging
    def _keep_length(self, keep):
        d, bank = self.d_sketch, self._bank
        if isinstance(keep, (float, np.floating)) and not isinstance(keep, bool):
            f = float(keep)
            if not (0.0 < f <= 1.0):
                raise ValueError(f"keep must be a fraction in (0, 1] (float) or a prefix length 1..{d} (int); "
                                 f"got {keep!r}")
            unit = bank.block_size if bank.family == "block-sparse" else 1
            return max(unit, int(math.floor(f * d / unit + 1e-9)) * unit)
        if not _is_int(keep):
            raise ValueError(f"keep must be a fraction in (0, 1] (float) or a prefix length 1..{d} (int); got "
                             f"{keep!r}")
        k = int(keep)
        if not 1 <= k <= d:
            raise ValueError(f"keep must be a prefix length in 1..d_sketch={d} (or a float fraction); got {k}")
        return self._check_keep(k, "keep")

    def age(self, keep, where=None, *, kind="overall", parent=None, oldest=None, vacuum=True):
        """Forget all but a prefix of the selected sketches (graceful erasure as a generalised LRU).

        Rows already shorter than the new prefix are left alone (aging never restores anything).
        Every later read treats an aged row as an :class:`~sketchsim.decode.ErasedSketch`.

        Parameters
        ----------
        keep : float or int
            A float is a fraction of d_sketch, an int the prefix length d'. For the block-sparse
            family d' must fall on a block boundary (a fraction is rounded down to one, at least one
            block).
        where, kind, parent
            The selection (class docstring).
        oldest : int, optional
            Age only the ``oldest`` first-added rows of the selection.
        vacuum : bool
            Rewrite the file afterwards so that the space really returns to the file system
            (a ``VACUUM``: linear in the file size). If it cannot run (another writer), a
            RuntimeWarning says so and :meth:`vacuum` can be called later.

        Returns
        -------
        int
            Number of rows shortened.
        """
        k = self._keep_length(keep)
        if oldest is not None and (not _is_int(oldest) or oldest < 1):
            raise ValueError(f"oldest must be a positive integer or None; got {oldest!r}")
        clauses, params = _where_sql(where, kind, parent)
        sql = "SELECT r.seq FROM rows r" + (" WHERE " + " AND ".join(clauses) if clauses else "") + " ORDER BY r.seq"
        if oldest is not None:
            sql += f" LIMIT {int(oldest)}"
        changed = 0
        with self._write() as conn:
            seqs = [s for (s,) in conn.execute(sql, params)]
            for a in range(0, len(seqs), _SQL_CHUNK):
                part = seqs[a:a + _SQL_CHUNK]
                rows = conn.execute(f"SELECT v.seq, r.id, v.keep, v.crc, v.data FROM vectors v JOIN rows r ON "
                                    f"r.seq = v.seq WHERE v.seq IN ({', '.join('?' * len(part))}) AND v.keep > ?",
                                    part + [k]).fetchall()
                updates = []
                for seq, sid, old, crc, data in rows:
                    v = self._decode_blob(sid, old, crc, data)
                    c, b = _encode(v[:k])
                    updates.append((k, c, b, seq))
                conn.executemany("UPDATE vectors SET keep = ?, crc = ?, data = ? WHERE seq = ?", updates)
                changed += len(updates)
            if changed:
                gen = int(conn.execute("SELECT value FROM info WHERE key = 'generation'").fetchone()[0])
                conn.execute("UPDATE info SET value = ? WHERE key = 'generation'", (str(gen + 1),))
        if changed and vacuum:
            try:
                self.vacuum()
            except RepositoryLockedError as exc:
                warnings.warn(f"aged {changed} sketches, but the space could not be reclaimed yet: {exc}",
                              RuntimeWarning, stacklevel=2)
        return changed

    def vacuum(self):
        """Rewrite the file compactly (returns the space freed by :meth:`age` to the file system)."""
        if self._readonly:
            raise RepositoryError(f"the repository {self._path!r} was opened with readonly=True; open it "
                                  "without readonly to vacuum")
        conn = self.conn
        try:
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise RepositoryLockedError(f"the repository {self._path!r} is locked by another writer; VACUUM "
                                            "must wait") from None
            raise


def _uri_path(path):
    from urllib.parse import quote

    return quote(os.path.abspath(path))
