"""Tests of the sketch repository (sketchsim.repository, paper §1.1).

Expectations are computed independently of the repository: brute-force float64 cosines over the
float32-rounded rows (the documented storage precision), :mod:`sketchsim.decode` applied to sums
computed here with numpy, prefix cosines computed by hand. Crash safety is tested by SIGKILLing a
writer subprocess at random moments.
"""
from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from sketchsim import Graph, MatrixBank, sketch, sketch_objects
from sketchsim import decode as D
from sketchsim import theory as T
from sketchsim.repository import (KINDS, RepositoryError, RepositoryLockedError, SketchRepository)

D_SMALL = 64


def f32(x):
    """The stored value of x: float32-rounded, read back as float64."""
    return np.asarray(x, dtype=np.float32).astype(np.float64)


def cosine_rows(R, q):
    return (R @ q) / (np.linalg.norm(R, axis=1) * np.linalg.norm(q))


@pytest.fixture
def bank():
    return MatrixBank(D_SMALL, "hadamard", 3)


@pytest.fixture
def filled(tmp_path, bank):
    """A repository of 60 random rows (weeks 0..4), with the rows as added."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((60, D_SMALL))
    meta = [{"week": i % 5, "tag": "odd" if i % 2 else "even"} for i in range(60)]
    repo = SketchRepository.create(tmp_path / "r.sketchrepo", bank)
    ids = repo.add(X, ids=[f"s{i}" for i in range(60)], meta=meta)
    yield repo, X, ids, meta
    repo.close()


# --------------------------------------------------------------------------- round trip and search
def test_round_trip_get_query_against_brute_force(tmp_path, bank):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, D_SMALL))
    path = tmp_path / "r.sketchrepo"
    repo = SketchRepository.create(path, bank)
    ids = repo.add(X[:120], meta=[{"i": int(i), "np": np.int64(i)} for i in range(120)])
    ids += repo.add(X[120:], ids=[f"x{i}" for i in range(120, 200)])
    assert ids[:3] == ["#1", "#2", "#3"] and ids[120] == "x120"
    repo.close()

    repo = SketchRepository.open(path)
    assert len(repo) == 200
    b = repo.bank
    assert (b.family, b.d_sketch, b.seed, b.block_size, b.block_prob) == ("hadamard", D_SMALL, 3, None, None)
    for k in (0, 57, 119, 120, 199):
        got = repo.get(ids[k])
        assert isinstance(got, np.ndarray) and got.dtype == np.float64
        np.testing.assert_array_equal(got, f32(X[k]))
    rec = repo.record(ids[5])
    assert rec.meta == {"i": 5, "np": 5} and rec.kind == "overall" and rec.parent is None
    assert rec.keep == D_SMALL and rec.seq == 6

    R = f32(X)
    for qi in (3, 150):
        q = X[qi] + 0.3 * rng.standard_normal(D_SMALL)
        cos = cosine_rows(R, q)
        order = np.argsort(-cos)[:7]
        res = repo.query(q, k=7)
        assert [i for i, _ in res] == [ids[j] for j in order]
        np.testing.assert_allclose([c for _, c in res], cos[order], rtol=1e-12)
    # k larger than the repository: everything, sorted
    res = repo.query(X[0], k=1000)
    assert len(res) == 200 and res[0] == (ids[0], pytest.approx(1.0))
    assert all(a[1] >= b[1] for a, b in zip(res, res[1:]))
    repo.close()


def test_where_filters_select_and_query(filled):
    repo, X, ids, meta = filled
    assert repo.select(where={"week": 3}) == [f"s{i}" for i in range(60) if i % 5 == 3]
    assert repo.select(where={"week": [1, 2], "tag": "odd"}) == [
        f"s{i}" for i in range(60) if i % 5 in (1, 2) and i % 2]
    assert repo.select(where={"week": {"<": 2}}) == [f"s{i}" for i in range(60) if i % 5 < 2]
    assert repo.select(where={"week": {">=": 1, "!=": 4}}) == [f"s{i}" for i in range(60) if i % 5 in (1, 2, 3)]
    assert repo.select(where={"week": "3"}) == []          # a string never equals a number
    assert repo.select(where={"missing": 1}) == []
    assert repo.select() == ids

    q = X[13] + 0.5
    sel = [i for i in range(60) if i % 5 == 3]
    cos = cosine_rows(f32(X[sel]), q)
    order = np.argsort(-cos)[:4]
    res = repo.query(q, k=4, where={"week": 3})
    assert [i for i, _ in res] == [f"s{sel[j]}" for j in order]
    np.testing.assert_allclose([c for _, c in res], cos[order], rtol=1e-12)
    assert repo.query(q, k=3, where={"week": 99}) == []


def test_object_sketches_beside_overall_ones(tmp_path):
    bank = MatrixBank(256, "hadamard", 0)
    repo = SketchRepository.create(tmp_path / "o.sketchrepo", bank)
    graphs = [_scene(np.random.default_rng(s), ["a", "b", "a"]) for s in range(3)]
    for n, g in enumerate(graphs):
        objs, overall = sketch_objects(g, bank, return_overall=True)
        (pid,) = repo.add(overall[None, :], ids=[f"in{n}"], meta=[{"n": n}])
        oids = repo.add_objects(pid, objs, graph=g, meta={"n": n})
        assert oids == [f"in{n}/{o}" for o in objs]
    assert len(repo) == 3 * (1 + len(graphs[0].ids))
    assert repo.select() == ["in0", "in1", "in2"]                       # kind="overall" by default
    kids = repo.select(kind="object", parent="in1")
    assert kids == [f"in1/{o}" for o in graphs[1].ids]
    assert repo.select(kind="object", where={"module": "a"}) == [
        f"in{n}/{o}" for n, g in enumerate(graphs) for o in g.ids if g.module(o) == "a"]
    assert len(repo.select(kind=None)) == len(repo)
    objs = sketch_objects(graphs[2], bank)
    oid = graphs[2].ids[1]
    rec = repo.record(f"in2/{oid}")
    assert rec.kind == "object" and rec.parent == "in2"
    assert rec.meta == {"n": 2, "object": oid, "module": graphs[2].module(oid), "depth": graphs[2].depth(oid)}
    np.testing.assert_array_equal(repo.get(f"in2/{oid}"), f32(objs[oid]))
    # searching object sketches finds the object itself first
    assert repo.query(objs[oid], k=1, kind="object")[0][0] == f"in2/{oid}"
    # explicit form with parents, and a parent added earlier in the same call
    repo.add(np.ones((2, 256)), ids=["p/x", "p/x/y"], kind="object", parents=["in0", "p/x"])
    assert repo.record("p/x/y").parent == "p/x"
    repo.close()


# --------------------------------------------------------------------------- summary statistics
def _scene(rng, modules, weights=None, d_attr=6):
    """output → one root → the given leaves (equal weights unless given), unit nonneg attributes."""
    k = len(modules)
    weights = weights or [1.0 / k] * k
    leaves = []
    for i, m in enumerate(modules):
        x = np.abs(rng.standard_normal(d_attr)) + 0.05
        leaves.append({"id": f"o{i}", "module": m, "attributes": (x / np.linalg.norm(x)).tolist()})
    root = {"id": "root", "module": "root", "attributes": [1.0],
            "inputs": [{"id": f"o{i}", "weight": w} for i, w in enumerate(weights)]}
    return Graph([root] + leaves, [{"id": "root", "weight": 1.0}])


@pytest.fixture(scope="module")
def summary_repo(tmp_path_factory):
    bank = MatrixBank(1024, "hadamard", 7)
    rng = np.random.default_rng(5)
    repo = SketchRepository.create(tmp_path_factory.mktemp("s") / "s.sketchrepo", bank)
    S, metas, n_a = [], [], []
    for i in range(24):
        mods = list(rng.choice(["a", "b"], size=4))
        S.append(sketch(_scene(rng, mods), bank))
        metas.append({"week": i % 3})
        n_a.append(mods.count("a"))
    S = np.array(S)
    repo.add(S, meta=metas)
    yield repo, bank, S, metas, np.array(n_a)
    repo.close()


def test_summary_matches_decoders_on_the_independent_sum(summary_repo):
    repo, bank, S, metas, n_a = summary_repo
    sel = [i for i, m in enumerate(metas) if m["week"] == 1]
    total = f32(S[sel]).sum(axis=0)
    out = repo.summary(where={"week": 1}, module="a", depth=3, weight=0.25, length=6)
    assert out.n_sketches == len(sel) and out.keeps == (1024,)
    assert out.count == pytest.approx(D.count(total, bank, "a", 3, 0.25), rel=1e-9)
    np.testing.assert_allclose(out.attribute_sum, D.attribute_sum(total, bank, "a", 3, 0.25, length=6),
                               rtol=1e-9)
    np.testing.assert_allclose(out.mean_attributes, D.mean_attributes(total, bank, "a", length=6), rtol=1e-9)
    # and it estimates the truth within 5σ, σ = ‖s‖/(√d·c_h·w*) (theory.noise_level)
    sigma = T.noise_level(np.linalg.norm(total), 1024, depth=3, weight=0.25)
    assert abs(out.count - n_a[sel].sum()) < 5 * sigma
    summed, n, keeps = repo.summed(where={"week": 1})
    np.testing.assert_allclose(summed, total, rtol=1e-12, atol=1e-15)
    no_weight = repo.summary(module="a")
    assert no_weight.count is None and no_weight.attribute_sum is None and no_weight.n_sketches == 24


def test_summary_after_aging_uses_erasure_semantics(tmp_path):
    bank = MatrixBank(1024, "hadamard", 7)
    rng = np.random.default_rng(6)
    S = np.array([sketch(_scene(rng, list(rng.choice(["a", "b"], size=4))), bank) for _ in range(12)])
    repo = SketchRepository.create(tmp_path / "a.sketchrepo", bank)
    repo.add(S, meta=[{"week": i % 2} for i in range(12)])
    assert repo.age(0.25, where={"week": 0}) == 6
    w0 = [i for i in range(12) if i % 2 == 0]
    w1 = [i for i in range(12) if i % 2 == 1]
    # one prefix length: the sum is an ErasedSketch and every decoder rescales by d/d'
    s0, n, keeps = repo.summed(where={"week": 0})
    assert isinstance(s0, D.ErasedSketch) and s0.keep == 256 and keeps == (256,)
    expect = D.count(D.ErasedSketch(f32(S[w0])[:, :256].sum(axis=0), 1024), bank, "a", 3, 0.25)
    assert repo.summary(where={"week": 0}, module="a", depth=3, weight=0.25).count == pytest.approx(expect, rel=1e-9)
    # mixed prefix lengths: the pooled estimate is the sum of the per-group decodes
    full = D.count(f32(S[w1]).sum(axis=0), bank, "a", 3, 0.25)
    both = repo.summary(module="a", depth=3, weight=0.25, length=6)
    assert both.keeps == (256, 1024)
    assert both.count == pytest.approx(expect + full, rel=1e-9)
    num = D.attribute_sum(D.ErasedSketch(f32(S[w0])[:, :256].sum(axis=0), 1024), bank, "a", 3, 0.25, length=6) \
        + D.attribute_sum(f32(S[w1]).sum(axis=0), bank, "a", 3, 0.25, length=6)
    np.testing.assert_allclose(both.attribute_sum, num, rtol=1e-9)
    np.testing.assert_allclose(both.mean_attributes, num / (expect + full), rtol=1e-6)
    repo.close()


# --------------------------------------------------------------------------- aging
def test_aging_shrinks_storage_and_queries_use_the_prefix(filled):
    repo, X, ids, meta = filled
    before_bytes, before_file = repo.nbytes, repo.file_size
    assert before_bytes == 60 * D_SMALL * 4
    old = [i for i in range(60) if i % 5 < 2]
    assert repo.age(16, where={"week": {"<": 2}}) == len(old)
    assert repo.nbytes == before_bytes - len(old) * (D_SMALL - 16) * 4
    assert repo.file_size < before_file
    assert repo.age(32, where={"week": {"<": 2}}) == 0                  # aging never grows a row
    got = repo.get("s0")
    assert isinstance(got, D.ErasedSketch) and got.keep == 16 and got.d == D_SMALL
    np.testing.assert_array_equal(got.prefix, f32(X[0, :16]))
    assert repo.record("s0").keep == 16 and repo.record("s2").keep == D_SMALL

    rng = np.random.default_rng(9)
    q = X[1] + 0.2 * rng.standard_normal(D_SMALL)
    R = f32(X)
    keeps = np.array([16 if i % 5 < 2 else D_SMALL for i in range(60)])
    cos = np.array([R[i, :k] @ q[:k] / (np.linalg.norm(R[i, :k]) * np.linalg.norm(q[:k]))
                    for i, k in enumerate(keeps)])
    order = np.argsort(-cos)[:10]
    res = repo.query(q, k=10)
    assert [i for i, _ in res] == [ids[j] for j in order]
    np.testing.assert_allclose([c for _, c in res], cos[order], rtol=1e-12)
    # the same number as decode.similarity between the query and the aged row
    assert dict(res)["s1"] == pytest.approx(D.similarity(q, repo.get("s1")).cosine, rel=1e-12)
    # an aged query against full and aged rows: common prefix
    qe = D.erase(q, 8)
    cos8 = cosine_rows(R[:, :8], q[:8])
    res = repo.query(qe, k=5)
    assert [i for i, _ in res] == [ids[j] for j in np.argsort(-cos8)[:5]]
    # oldest= ages only the first-added rows of the selection
    assert repo.age(0.5, where={"week": 4}, oldest=3) == 3
    assert [repo.record(f"s{i}").keep for i in (4, 9, 14, 19)] == [32, 32, 32, D_SMALL]


def test_aging_block_sparse_respects_block_boundaries(tmp_path):
    bank = MatrixBank(192, "block-sparse", 1, block_size=48, block_prob=0.5)
    repo = SketchRepository.create(tmp_path / "b.sketchrepo", bank)
    repo.add(np.random.default_rng(0).standard_normal((4, 192)))
    with pytest.raises(ValueError, match="keep must be a multiple of block_size=48.*got 50"):
        repo.age(50)
    repo.age(0.3)                                   # 57.6 → rounded down to one block of 48
    assert repo.record("#1").keep == 48
    repo.close()
    reopened = SketchRepository.open(tmp_path / "b.sketchrepo")
    assert (reopened.bank.family, reopened.bank.block_size, reopened.bank.block_prob) == ("block-sparse", 48, 0.5)
    with pytest.raises(ValueError, match="keep must be a multiple of block_size=48"):
        reopened.query(D.ErasedSketch(np.ones(50), 192))
    reopened.close()


# --------------------------------------------------------------------------- bad input
def test_bad_paths(tmp_path, bank):
    path = tmp_path / "r.sketchrepo"
    SketchRepository.create(path, bank).close()
    with pytest.raises(ValueError, match="path must not exist yet.*r.sketchrepo"):
        SketchRepository.create(path, bank)
    with pytest.raises(ValueError, match="path must not exist yet.*directory"):
        SketchRepository.create(tmp_path, bank)
    with pytest.raises(ValueError, match="does not exist"):
        SketchRepository.open(tmp_path / "nope.sketchrepo")
    text = tmp_path / "notes.txt"
    text.write_text("hello " * 100)
    with pytest.raises(ValueError, match="not an SQLite database"):
        SketchRepository.open(text)
    foreign = tmp_path / "other.db"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    with pytest.raises(ValueError, match="another application"):
        SketchRepository.open(foreign)
    with pytest.raises(ValueError, match="bank must be a sketchsim.MatrixBank"):
        SketchRepository.create(tmp_path / "x.sketchrepo", "haar")
    with pytest.raises(ValueError, match="replaced matrices"):
        SketchRepository.create(tmp_path / "y.sketchrepo", bank.replaced(default="zero"))
    assert not (tmp_path / "y.sketchrepo").exists()


def test_corrupted_file_is_refused(tmp_path, bank):
    path = tmp_path / "c.sketchrepo"
    repo = SketchRepository.create(path, bank)
    repo.add(np.random.default_rng(0).standard_normal((300, D_SMALL)))
    repo.close()
    good = path.read_bytes()
    assert len(good) > 3 * 65536
    raw = bytearray(good)
    rng = np.random.default_rng(0)
    for page in range(1, len(raw) // 65536):                   # garble every b-tree page header
        raw[page * 65536:page * 65536 + 12] = rng.integers(0, 256, 12, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="corrupted"):
        SketchRepository.open(path)
    path.write_bytes(good[:len(good) // 2])                    # a truncated copy
    with pytest.raises(ValueError, match="corrupted"):
        SketchRepository.open(path)
    # a flipped bit inside a stored sketch fails its checksum on read, even without quick_check
    path2 = tmp_path / "c2.sketchrepo"
    repo = SketchRepository.create(path2, bank)
    X = np.full((1, D_SMALL), 0.123456)
    repo.add(X, ids=["only"])
    repo.close()
    raw = bytearray(path2.read_bytes())
    needle = np.float32(0.123456).tobytes() * 4
    at = bytes(raw).find(needle)
    assert at > 0
    raw[at + 1] ^= 0x10
    path2.write_bytes(bytes(raw))
    repo = SketchRepository.open(path2)
    with pytest.raises(ValueError, match="corrupted: stored sketch 'only' fails its checksum"):
        repo.get("only")
    with pytest.raises(ValueError, match="corrupted"):
        repo.query(np.ones(D_SMALL))
    repo.close()


def test_bad_sketches_ids_and_meta_store_nothing(filled, bank):
    repo, X, ids, meta = filled
    good = np.ones((2, D_SMALL))
    cases = [
        (dict(sketches=np.ones((2, D_SMALL + 1))), r"sketches must have shape \(n, d_sketch=64\).*got shape \(2, 65\)"),
        (dict(sketches=np.ones(D_SMALL)), r"sketches must have shape \(n, d_sketch=64\).*got shape \(64,\)"),
        (dict(sketches=D.ErasedSketch(np.ones((2, 8)), 128)), "ErasedSketch of d = 128"),
        (dict(sketches=np.where(np.eye(2, D_SMALL) > 0, np.nan, 1.0)), "sketches must be finite; got nan in row 0"),
        (dict(sketches=np.where(np.arange(2 * D_SMALL).reshape(2, D_SMALL) == D_SMALL + 5, -np.inf, 1.0)),
         r"sketches must be finite; got -inf in row 1 \(coordinate 5\)"),
        (dict(sketches=np.full((2, D_SMALL), 1e39)), "float32"),
        (dict(sketches=good, ids=["a", "a"]), "ids must be unique; got 'a' twice"),
        (dict(sketches=good, ids=["new", "s3"]), "ids must be new; got 's3', which is already stored"),
        (dict(sketches=good, ids=["a"]), "ids must hold one id per row: 2; got 1"),
        (dict(sketches=good, ids=["a", 7]), "ids must be nonempty str; got 7"),
        (dict(sketches=good, ids=["a", "#9"]), "ids must not start with '#'"),
        (dict(sketches=good, meta=[{}]), "meta must hold one dict per row: 2; got 1"),
        (dict(sketches=good, meta={"week": 1}), "meta must be a list of 2 dicts"),
        (dict(sketches=good, meta=[{}, 5]), r"meta\[1\] must be a dict; got int"),
        (dict(sketches=good, meta=[{}, {"x": object()}]), r"meta\[1\] must be JSON-serialisable"),
        (dict(sketches=good, meta=[{"x": float("nan")}, {}]), r"meta\[0\] must be JSON-serialisable"),
        (dict(sketches=good, meta=[{}, {3: 1}]), r"meta\[1\] keys must be strings; got the key 3"),
        (dict(sketches=good, kind="object"), "parents must be a list of 2 stored ids"),
        (dict(sketches=good, kind="object", parents=["s1", "zz"]), "parents must be stored ids; got 'zz'"),
        (dict(sketches=good, parents=["s1", "s2"]), "parents applies only to kind='object'"),
        (dict(sketches=good, kind="scene"), "kind must be one of 'overall', 'object'; got 'scene'"),
    ]
    for kwargs, msg in cases:
        with pytest.raises(ValueError, match=msg):
            repo.add(**kwargs)
        assert len(repo) == 60
    assert repo.select() == ids
    np.testing.assert_array_equal(repo.get("s7"), f32(X[7]))


def test_bad_queries_and_selections(filled):
    repo, X, ids, meta = filled
    for k in (0, -3):
        with pytest.raises(ValueError, match=f"k must be a positive integer.*got {k}"):
            repo.query(X[0], k=k)
    for k in (2.5, True, "3", None, 3.0):
        with pytest.raises(ValueError, match="k must be a positive integer; got"):
            repo.query(X[0], k=k)
    with pytest.raises(ValueError, match=r"sketch must have shape \(d_sketch,\) = \(64,\).*got shape \(63,\)"):
        repo.query(X[0, :63])
    with pytest.raises(ValueError, match="sketch must be finite"):
        repo.query(np.where(np.arange(D_SMALL) == 3, np.nan, 1.0))
    with pytest.raises(ValueError, match="sketch must be nonzero"):
        repo.query(np.zeros(D_SMALL))
    with pytest.raises(ValueError, match="ErasedSketch of d = 32"):
        repo.query(D.ErasedSketch(np.ones(8), 32))
    with pytest.raises(ValueError, match="where must be a dict"):
        repo.select(where=[("week", 1)])
    with pytest.raises(ValueError, match=r"where\['week'\] operators must be one of"):
        repo.select(where={"week": {"~": 1}})
    with pytest.raises(ValueError, match=r"where\['week'\] values must be str, int"):
        repo.select(where={"week": {"a": 1}.keys()})
    with pytest.raises(ValueError, match="kind must be one of"):
        repo.query(X[0], kind="objects")
    with pytest.raises(ValueError, match="id must be a stored id; got 'nope'"):
        repo.get("nope")
    with pytest.raises(ValueError, match="where must select at least one sketch"):
        repo.summary(where={"week": 77}, module="a")
    with pytest.raises(ValueError, match="depth and weight must be given together"):
        repo.summary(module="a", depth=3)
    for keep, msg in ((0.0, "keep must be a fraction in"), (1.5, "keep must be a fraction in"),
                      (0, r"keep must be a prefix length in 1..d_sketch=64"), (65, "got 65"),
                      ("half", "keep must be a fraction")):
        with pytest.raises(ValueError, match=msg):
            repo.age(keep)
    with pytest.raises(ValueError, match="oldest must be a positive integer"):
        repo.age(0.5, oldest=0)
    assert repo.nbytes == 60 * D_SMALL * 4


# --------------------------------------------------------------------------- concurrency
def test_second_writer_gets_a_clear_error_and_readers_work(filled):
    repo, X, ids, meta = filled
    path = repo.path
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")                       # another writer mid-transaction
    other.execute("INSERT INTO info (key, value) VALUES ('x', 'y')")
    writer2 = SketchRepository.open(path, timeout=0.2)
    reader = SketchRepository.open(path, readonly=True, timeout=0.2)
    t0 = time.perf_counter()
    with pytest.raises(RepositoryLockedError, match="locked by another writer.*only one process may write"):
        writer2.add(np.ones((1, D_SMALL)))
    assert time.perf_counter() - t0 < 5
    with pytest.raises(RepositoryLockedError):
        writer2.age(0.5)
    # readers are not blocked by the writer's open transaction
    assert len(reader) == 60 and reader.query(X[4], k=1)[0][0] == "s4"
    other.execute("ROLLBACK")
    other.close()
    writer2.add(np.ones((1, D_SMALL)), ids=["late"])
    assert reader.query(np.ones(D_SMALL), k=1)[0] == ("late", pytest.approx(1.0))   # sees new rows
    assert len(repo) == 61
    with pytest.raises(RepositoryError, match="readonly=True"):
        reader.add(np.ones((1, D_SMALL)))
    # a reader's in-memory matrix follows another object's aging
    writer2.age(8, where={"week": 0})
    assert reader.query(X[5], k=1)[0] == ("s5", pytest.approx(1.0))
    assert repo.record("s5").keep == 8
    writer2.close()
    reader.close()
    with pytest.raises(RepositoryError, match="closed"):
        reader.query(X[0])


_WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    from sketchsim.repository import SketchRepository

    path, batch, d = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    repo = SketchRepository.open(path, check=False)
    start = len(repo) // batch
    print("ready", flush=True)
    for b in range(start, start + 1_000_000):
        X = np.random.default_rng(b).standard_normal((batch, d))
        repo.add(X, ids=[f"b{b}-{i}" for i in range(batch)], meta=[{"batch": b}] * batch)
""")


def test_killed_writer_leaves_an_intact_prefix(tmp_path):
    d, batch = 128, 40
    path = tmp_path / "k.sketchrepo"
    SketchRepository.create(path, MatrixBank(d, "hadamard", 0)).close()
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    rng = np.random.default_rng(11)
    counts = []
    for trial in range(4):
        proc = subprocess.Popen([sys.executable, str(script), str(path), str(batch), str(d)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            line = proc.stdout.readline()
            assert line.strip() == "ready", proc.stderr.read()
            time.sleep(rng.uniform(0.02, 0.4))
            assert proc.poll() is None, proc.stderr.read()
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        repo = SketchRepository.open(path)                  # opens, passes quick_check
        n = len(repo)
        assert n % batch == 0
        counts.append(n)
        ids = repo.select()
        n_b = n // batch
        assert ids == [f"b{b}-{i}" for b in range(n_b) for i in range(batch)]
        for b in range(n_b):
            X = np.random.default_rng(b).standard_normal((batch, d))
            for i in (0, batch - 1):
                np.testing.assert_array_equal(repo.get(f"b{b}-{i}"), f32(X[i]))
            assert repo.record(f"b{b}-{i}").meta == {"batch": b}
        repo.query(np.ones(d), k=3)                         # every row's checksum verified on load
        repo.close()
    assert counts == sorted(counts) and counts[-1] > 0


def test_approximate_query_with_faiss(filled):
    pytest.importorskip("faiss")
    repo, X, ids, meta = filled
    for i in (0, 17, 42):
        assert repo.query(X[i], k=3, approximate=True)[0] == (ids[i], pytest.approx(1.0))
    assert [i for i, _ in repo.query(X[3], k=2, approximate=True, where={"week": 3})][0] == "s3"


def test_approximate_query_without_faiss_is_a_clear_error(filled, monkeypatch):
    repo, X, ids, meta = filled
    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(ValueError, match="approximate must be False unless faiss is installed"):
        repo.query(X[0], approximate=True)


def test_kinds_constant():
    assert KINDS == ("overall", "object")


def test_an_implicit_block_sparse_bank_is_recorded_and_rebuilt_as_implicit(tmp_path):
    bank = MatrixBank(192, "block-sparse", 4, block_size=48, block_prob=0.5, storage="implicit")
    path = str(tmp_path / "r.sketchrepo")
    SketchRepository.create(path, bank).close()
    with SketchRepository.open(path) as repo:
        assert repo.bank.storage == "implicit"
        x = np.random.default_rng(0).standard_normal(192)
        np.testing.assert_array_equal(repo.bank.get("tuple/1").apply(x), bank.get("tuple/1").apply(x))
