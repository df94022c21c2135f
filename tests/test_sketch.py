"""The sketch engine against the literal reference (paper §3.3) and its exact properties."""
import numba
import numpy as np
import pytest

import sketchsim as ss
from sketchsim import reference as ref
from sketchsim.matrices import module_name
from sketchsim.theory import depth_constant

from conftest import FAMILY_BANKS, dense_matvec, make_bank, unit

# Random DAGs: depth 1–5 object levels, fan-in 1–6, with and without shared children.
DAG_CASES = [
    dict(depth=1, fan_in=(1, 1), share_prob=0.0),
    dict(depth=1, fan_in=(6, 6), share_prob=0.0),
    dict(depth=2, fan_in=(1, 6), share_prob=0.5),
    dict(depth=3, fan_in=(1, 4), share_prob=0.4),
    dict(depth=4, fan_in=(1, 3), share_prob=0.5),
    dict(depth=5, fan_in=(1, 2), share_prob=0.3),
]


def _assert_close(actual, expected, what):
    scale = max(np.abs(expected).max(), 1e-300)
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-12 * scale, err_msg=what)


@pytest.fixture(params=["attr-map", "direct", "auto"])
def attr_path(request, monkeypatch):
    """Run a test through each evaluation path of the attribute branch (cached map / direct / the
    automatic choice)."""
    import importlib

    mod = importlib.import_module("sketchsim.sketch")
    if request.param != "auto":
        always = request.param == "attr-map"
        monkeypatch.setattr(mod, "_use_attr_map", lambda *args: always)
    return request.param


@pytest.mark.parametrize("family", list(FAMILY_BANKS))
@pytest.mark.parametrize("case", range(len(DAG_CASES)))
def test_kernel_matches_reference_on_random_dags(family, case, attr_path):
    g = ss.random_network(**DAG_CASES[case], attr_dim=(1, 5), random_state=100 + case)
    bank = make_bank(family, seed=case)
    objects, overall = ss.sketch_objects(g, bank, return_overall=True)
    ref_objects, ref_overall = ref.sketch_objects(g, dense_matvec(bank), bank.d_sketch)
    _assert_close(overall, ref_overall, f"overall, {family}, case {case}")
    _assert_close(ss.sketch(g, bank), ref_overall, f"sketch(), {family}, case {case}")
    for oid in g.ids:
        _assert_close(objects[oid], ref_objects[oid], f"object {oid}, {family}, case {case}")


def test_shared_children_cases_really_share():
    g = ss.random_network(**DAG_CASES[3], random_state=103)
    parents_per_child = np.zeros(len(g), int)
    for ch, _ in g.inputs:
        np.add.at(parents_per_child, ch, 1)
    assert parents_per_child.max() >= 2


@pytest.fixture(params=["one-chunk", "chunked"])
def batch_chunking(request, monkeypatch):
    import importlib

    if request.param == "chunked":   # one batch row per chunk
        monkeypatch.setattr(importlib.import_module("sketchsim.sketch"), "BATCH_CHUNK_BYTES", 1)
    return request.param


@pytest.mark.parametrize("family", list(FAMILY_BANKS))
def test_batched_matches_single(family, attr_path, batch_chunking):
    g = ss.random_network(depth=3, fan_in=(1, 4), share_prob=0.3, attr_dim=(2, 4), random_state=7)
    bank = make_bank(family, seed=2)
    attrs, weights, out_w = ss.fixed_tree_values(g, 5, random_state=3)
    batch, objs = ss.sketch_batch(g, bank, attrs, weights, out_w, return_objects=True)
    assert batch.shape == (5, bank.d_sketch)
    for b in range(5):
        gb = ss.Graph.from_dict(_with_values(g, attrs, weights, out_w, b))
        single_objs, single = ss.sketch_objects(gb, bank, return_overall=True)
        _assert_close(batch[b], single, f"batch row {b}")
        for oid in g.ids:
            _assert_close(objs[oid][b], single_objs[oid], f"batch row {b} object {oid}")


def _with_values(g, attrs, weights, out_w, b):
    d = g.to_dict()
    for obj in d["objects"]:
        obj["attributes"] = attrs[obj["id"]][b].tolist()
        for k, inp in enumerate(obj["inputs"]):
            inp["weight"] = float(weights[obj["id"]][b, k])
    for k, inp in enumerate(d["output"]):
        inp["weight"] = float(out_w[b, k])
    return d


def test_sketch_many_equals_sketch_batch():
    g = ss.random_network(depth=2, fan_in=(2, 3), random_state=4)
    bank = make_bank("gaussian", seed=1)
    attrs, weights, out_w = ss.fixed_tree_values(g, 3, random_state=5)
    graphs = [ss.Graph.from_dict(_with_values(g, attrs, weights, out_w, b)) for b in range(3)]
    np.testing.assert_array_equal(ss.sketch_many(graphs, bank),
                                  ss.sketch_batch(g, bank, attrs, weights, out_w))


def test_sketch_many_rejects_different_structures():
    g1 = ss.random_network(depth=2, fan_in=2, random_state=1)
    g2 = ss.random_network(depth=2, fan_in=3, random_state=1)
    with pytest.raises(ValueError, match="share one structure"):
        ss.sketch_many([g1, g2], make_bank("gaussian"))


def _chain(depth, module_x, x, weights, sibling=True):
    """A chain output -> o2 -> … -> target at depth ``depth`` (each level with an extra sibling)."""
    objs, prev = [], None
    ids = [f"n{h}" for h in range(2, depth + 1)]
    for h, oid in zip(range(2, depth + 1), ids):
        last = h == depth
        obj = {"id": oid, "module": module_x if last else f"m{h}",
               "attributes": x if last else unit([1, 2, 3]), "inputs": []}
        objs.append(obj)
        if prev is not None:
            prev["inputs"] = [{"id": oid, "weight": weights[h - 2]}]
            if sibling:
                objs.append({"id": f"s{h}", "module": f"sib{h}", "attributes": unit([2, 1]), "inputs": []})
                prev["inputs"].append({"id": f"s{h}", "weight": 1 - weights[h - 2]})
        prev = obj
    output = [{"id": ids[0], "weight": weights[0]}]
    if sibling:
        objs.append({"id": "s-top", "module": "sibtop", "attributes": unit([1, 1]), "inputs": []})
        output.append({"id": "s-top", "weight": 1 - weights[0]})
    return ss.Graph(objs, output)


@pytest.mark.parametrize("depth", [2, 3, 4])
def test_depth_constant_exact(depth, attr_path):
    """THEORY §2.1: with every matrix but R_{M,1} zero, R_{M,1}ᵀ s = c_h·w·x exactly."""
    x = unit([3, 1, 0, 2, 5])
    g = _chain(depth, "target", x, weights=[0.7, 0.4, 0.9, 0.6])
    w = g.weight(f"n{depth}")
    name = module_name("target", 1)
    base = ss.MatrixBank(32, "haar", 9)
    bank = base.replaced({name: base.dense(name)}, default="zero")
    s = ss.sketch(g, bank)
    recovered = bank.get(name).apply_t(s)
    expected = np.zeros(32)
    expected[:5] = depth_constant(depth) * w * np.array(x)
    np.testing.assert_allclose(recovered, expected, rtol=1e-12, atol=1e-15)
    # and the constant is the one from the paper's formula, not any other power of two
    assert not np.allclose(recovered, 2 * expected)


def test_depth_constant_sums_paths_in_a_dag():
    """An object reached by two paths carries c_h·(Σ_paths Π w)."""
    x = unit([1, 1, 1])
    objs = [{"id": "a", "module": "A", "attributes": unit([1, 2]),
             "inputs": [{"id": "t", "weight": 0.3}]},
            {"id": "b", "module": "B", "attributes": unit([2, 1]),
             "inputs": [{"id": "t", "weight": 0.5}]},
            {"id": "t", "module": "T", "attributes": x}]
    g = ss.Graph(objs, [{"id": "a", "weight": 0.6}, {"id": "b", "weight": 0.4}])
    assert g.weight("t") == pytest.approx(0.6 * 0.3 + 0.4 * 0.5)
    base = ss.MatrixBank(16, "haar", 1)
    name = module_name("T", 1)
    bank = base.replaced({name: base.dense(name)}, default="zero")
    rec = bank.get(name).apply_t(ss.sketch(g, bank))[:3]
    np.testing.assert_allclose(rec, depth_constant(3) * g.weight("t") * np.array(x), rtol=1e-12)


def test_thread_count_does_not_change_sketches(monkeypatch):
    import sketchsim._parallel

    monkeypatch.setattr(sketchsim._parallel, "MIN_PARALLEL_WORK", 0)   # force the threaded path
    g = ss.random_network(depth=3, fan_in=(2, 4), share_prob=0.3, random_state=11)
    attrs, weights, out_w = ss.fixed_tree_values(g, 4, random_state=1)
    results = []
    old = numba.get_num_threads()
    try:
        for n in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(n)
            for fam in FAMILY_BANKS:
                bank = make_bank(fam, seed=5)
                results.append((n, fam, ss.sketch_batch(g, bank, attrs, weights, out_w),
                                bank.dense("tuple/1")))
    finally:
        numba.set_num_threads(old)
    half = len(results) // 2
    for (n1, f1, s1, r1), (n2, f2, s2, r2) in zip(results[:half], results[half:]):
        assert f1 == f2
        np.testing.assert_array_equal(s1, s2, err_msg=f"{f1}: 1 vs {n2} threads")
        np.testing.assert_array_equal(r1, r2, err_msg=f"{f1}: matrix, 1 vs {n2} threads")


def test_leaf_only_graph_and_single_input():
    g = ss.Graph([{"id": "a", "module": "A", "attributes": [1.0]}], [{"id": "a", "weight": 1.0}])
    bank = make_bank("haar")
    _assert_close(ss.sketch(g, bank), ref.sketch_overall(g, dense_matvec(bank), bank.d_sketch), "leaf")


def test_zero_weights_give_zero_sketch():
    g = ss.Graph([{"id": "a", "module": "A", "attributes": [1.0]}], [{"id": "a", "weight": 0.0}])
    assert not ss.sketch(g, make_bank("gaussian")).any()


def test_merge_kernel_matches_reference():
    from sketchsim.sketch import _merge_inputs

    rng = np.random.default_rng(0)
    B, d = 3, 8
    S = rng.standard_normal((5 * B, d))
    Y = rng.standard_normal((4 * B, d))
    ptr = np.array([0, 2, 2, 4])                  # parent 1 has no edges
    child = np.array([0, 3, 4, 1])
    yrow = np.array([1, 0, 3, 2])
    w = rng.random((4, B))
    out = np.empty((3 * B, d))
    _merge_inputs(0, 3 * B, out, S, Y, ptr, child, yrow, w, B)
    for p in range(3):
        for b in range(B):
            es = range(ptr[p], ptr[p + 1])
            expected = ref.merge_inputs([S[child[e] * B + b] for e in es] or [np.zeros(d)],
                                        [Y[yrow[e] * B + b] for e in es] or [np.zeros(d)],
                                        [w[e, b] for e in es] or [0.0])
            np.testing.assert_allclose(out[p * B + b], expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("family", list(FAMILY_BANKS))
def test_same_seed_same_sketch(family):
    g = ss.random_network(depth=3, fan_in=(1, 3), random_state=2)
    a = ss.sketch(g, make_bank(family, seed=4))
    np.testing.assert_array_equal(a, ss.sketch(g, make_bank(family, seed=4)))
    assert not np.array_equal(a, ss.sketch(g, make_bank(family, seed=5)))


def test_hadamard_blocked_gather_sketch_matches_reference_and_thread_count(monkeypatch):
    """d = 2^16 takes the blocked gather and the engine's fused (I+R)/2 factors: the sketch still
    equals the object-by-object reference, and 1 and 2 threads give the same bits."""
    import sketchsim._parallel

    g = ss.random_network(depth=3, fan_in=(2, 3), share_prob=0.3, attr_dim=(3, 6), random_state=21)
    bank = ss.MatrixBank(2 ** 16, "hadamard", 3)
    ref_objects, ref_overall = ref.sketch_objects(g, lambda n, v: bank.get(n).apply(v), bank.d_sketch)
    monkeypatch.setattr(sketchsim._parallel, "MIN_PARALLEL_WORK", 0)
    old = numba.get_num_threads()
    runs = []
    try:
        for n in (1, min(2, numba.config.NUMBA_NUM_THREADS), 1):
            numba.set_num_threads(n)
            runs.append(ss.sketch_objects(g, bank, return_overall=True))
    finally:
        numba.set_num_threads(old)
    objects, overall = runs[0]
    _assert_close(overall, ref_overall, "overall, d = 2^16")
    for oid in g.ids:
        _assert_close(objects[oid], ref_objects[oid], f"object {oid}, d = 2^16")
    for objs, ov in runs[1:]:
        np.testing.assert_array_equal(ov, overall)
        for oid in g.ids:
            np.testing.assert_array_equal(objs[oid], objects[oid])


@pytest.mark.parametrize("family", list(FAMILY_BANKS))
def test_results_do_not_depend_on_earlier_calls(family):
    """The thread's reused workspace (arbitrary contents) and the bank's cached attribute maps leave
    no trace: a sketch equals the same sketch on a fresh bank after unrelated calls, batched calls
    (which build every map) and calls of other sizes; returned arrays are not the workspace."""
    g = ss.random_network(depth=3, fan_in=(1, 4), share_prob=0.3, attr_dim=(2, 5), random_state=8)
    other = ss.random_network(depth=2, fan_in=(3, 5), attr_dim=(1, 3), random_state=9)
    fresh_objects, fresh = ss.sketch_objects(g, make_bank(family, seed=6), return_overall=True)
    bank = make_bank(family, seed=6)
    attrs, weights, out_w = ss.fixed_tree_values(g, 40, random_state=2)
    ss.sketch_batch(g, bank, attrs, weights, out_w)
    ss.sketch(other, bank)
    ss.sketch(other, make_bank(family, seed=1, d=2 * bank.d_sketch))
    objects, overall = ss.sketch_objects(g, bank, return_overall=True)
    ss.sketch_batch(other, bank, *ss.fixed_tree_values(other, 3, random_state=0))   # overwrite the workspace
    np.testing.assert_array_equal(overall, fresh)
    for oid in g.ids:
        np.testing.assert_array_equal(objects[oid], fresh_objects[oid])
    from sketchsim.sketch import release_workspace

    release_workspace()
    np.testing.assert_array_equal(ss.sketch(g, bank), fresh)


def test_attribute_map_budget_falls_back_to_the_direct_path(monkeypatch):
    import importlib

    mod = importlib.import_module("sketchsim.sketch")
    g = ss.random_network(depth=2, fan_in=(2, 3), attr_dim=(2, 4), random_state=5)
    bank = make_bank("gaussian", seed=3)
    assert mod._use_attr_map(bank, "m", 4, 1, 10 ** 6)              # fits: always the map
    monkeypatch.setattr(mod, "ATTR_MAP_TOTAL_BYTES", 0)
    assert not mod._use_attr_map(bank, "m", 4, 1, 10 ** 6)          # over budget: pays off in this call?
    assert mod._use_attr_map(bank, "m", 4, 5, 10 ** 6)
    monkeypatch.setattr(mod, "ATTR_MAP_MAX_BYTES", 8 * bank.d_sketch * 4)
    assert not mod._use_attr_map(bank, "m", 4, 100, 0)              # one map too large
    _assert_close(ss.sketch(g, bank), ref.sketch_overall(g, dense_matvec(bank), bank.d_sketch), "direct path")


def test_blocked_merge_kernel_is_the_edge_order_sum():
    """d spanning several column blocks (and a partial one): the same additions, in input order from
    0.0, as the literal sum; rows split across calls as the thread pool splits them."""
    from sketchsim.sketch import MERGE_COLUMNS, _merge_inputs

    rng = np.random.default_rng(1)
    B, d = 2, 2 * MERGE_COLUMNS + 37
    S = rng.standard_normal((6 * B, d))
    Y = rng.standard_normal((5 * B, d))
    ptr = np.array([0, 3, 4, 6])
    child = np.array([5, 0, 2, 1, 3, 0])
    yrow = np.array([4, 0, 1, 2, 3, 0])
    w = rng.random((6, B))
    out = np.full((3 * B, d), np.nan)
    _merge_inputs(0, 1, out, S, Y, ptr, child, yrow, w, B)
    _merge_inputs(1, 3 * B, out, S, Y, ptr, child, yrow, w, B)
    for p in range(3):
        for b in range(B):
            literal = np.zeros(d)
            for e in range(ptr[p], ptr[p + 1]):
                literal = literal + 0.5 * w[e, b] * (S[child[e] * B + b] + Y[yrow[e] * B + b])
            np.testing.assert_array_equal(out[p * B + b], literal)


def test_apply_jobs_equals_one_job_at_a_time(monkeypatch):
    """Several operators' rows spread over the threads give the same bits as each job alone, for 1
    and 2 threads; operators without a row kernel (dense GEMM) run as usual."""
    import sketchsim._parallel
    from sketchsim.sketch import _apply_jobs

    monkeypatch.setattr(sketchsim._parallel, "MIN_PARALLEL_WORK", 0)
    d = 2 ** 12
    had = ss.MatrixBank(d, "hadamard", 1)
    dense = ss.MatrixBank(256, "gaussian", 1)
    X = np.random.default_rng(0).standard_normal((7, d))
    Xd = np.random.default_rng(1).standard_normal((3, 256))
    specs = [(had.get("tuple/1"), X, np.array([0]), None), (had.get("tuple/2"), X, np.array([6, 2, 3]), 0.25),
             (had.get("module/a/0"), X[2:5], None, 0.5), (dense.get("tuple/1"), Xd, np.array([2, 0]), 0.5),
             (had.get("tuple/3"), X, np.array([1, 1]), None)]
    expected = [op._apply_rows(Xs, rows, np.empty((len(Xs) if rows is None else len(rows), op.d)), plus)
                for op, Xs, rows, plus in specs]
    old = numba.get_num_threads()
    try:
        for n in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(n)
            outs = [np.full_like(e, np.nan) for e in expected]
            _apply_jobs([(op, Xs, rows, o, plus) for (op, Xs, rows, plus), o in zip(specs, outs)])
            for o, e in zip(outs, expected):
                np.testing.assert_array_equal(o, e)
    finally:
        numba.set_num_threads(old)


def test_row_update_kernels_match_numpy():
    from sketchsim.sketch import _add_rows, _add_vector

    rng = np.random.default_rng(3)
    S = rng.standard_normal((6, 40))
    V = rng.standard_normal((3, 40))
    rows = np.array([4, 0, 2])
    expected = S.copy()
    expected[rows] += V
    got = S.copy()
    _add_rows(0, 1, got, rows, V)
    _add_rows(1, 3, got, rows, V)
    np.testing.assert_array_equal(got, expected)
    v = rng.standard_normal(40)
    for c in (1.0, 0.5):
        expected = S.copy()
        expected += v
        expected *= c
        got = S.copy()
        _add_vector(0, 6, got, v, c)
        np.testing.assert_array_equal(got, expected)
