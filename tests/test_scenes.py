"""Tests of the digit scenes and their modular network (sketchsim.scenes)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sketchsim import Graph, MatrixBank, sketch, sketch_objects  # noqa: E402
from sketchsim import decode as D  # noqa: E402
from sketchsim.scenes import (DigitNet, Scene, compose_scenes, data_hash, load_digit_data,  # noqa: E402
                              scene_graph, scene_graphs, train_digit_net)


@pytest.fixture(scope="module")
def data():
    return load_digit_data()


@pytest.fixture(scope="module")
def net(tmp_path_factory, data):
    return train_digit_net(0, cache_dir=tmp_path_factory.mktemp("cache"))


def test_data_is_the_bundled_digits(data):
    X, y = data
    assert X.shape == (1797, 64) and y.shape == (1797,)
    assert X.min() == 0.0 and X.max() == 1.0 and set(np.unique(y)) == set(range(10))


def test_training_is_deterministic_per_seed(data):
    a = train_digit_net(3, cache_dir=None, max_iter=60)
    b = train_digit_net(3, cache_dir=None, max_iter=60)
    c = train_digit_net(4, cache_dir=None, max_iter=60)
    for name in ("W1", "b1", "W2", "b2", "train_idx", "test_idx"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.W1, c.W1) and not np.array_equal(a.test_idx, c.test_idx)
    assert not a.from_cache and not b.from_cache


def test_held_out_accuracy_above_090(net, data):
    X, y = data
    assert len(np.intersect1d(net.train_idx, net.test_idx)) == 0
    assert len(net.train_idx) + len(net.test_idx) == 1797
    acc = net.accuracy(X[net.test_idx], y[net.test_idx])
    assert acc > 0.9, acc
    # stratified split: every class is held out in proportion
    counts = np.bincount(y[net.test_idx], minlength=10) / np.bincount(y, minlength=10)
    assert np.all(np.abs(counts - 0.25) < 0.02)


def test_cache_hit_and_miss_on_seed_and_data(tmp_path, data):
    X, y = data
    first = train_digit_net(1, cache_dir=tmp_path, max_iter=60)
    assert not first.from_cache and len(list(tmp_path.glob("*.npz"))) == 1
    again = train_digit_net(1, cache_dir=tmp_path, max_iter=60)
    assert again.from_cache
    for name in ("W1", "b1", "W2", "b2", "classes", "train_idx", "test_idx"):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    assert again.data_hash == first.data_hash == data_hash(X, y)
    other_seed = train_digit_net(2, cache_dir=tmp_path, max_iter=60)
    assert not other_seed.from_cache
    X2 = X.copy()
    X2[0, 10] = 0.5 if X2[0, 10] != 0.5 else 0.25                 # one pixel changed
    other_data = train_digit_net(1, data=(X2, y), cache_dir=tmp_path, max_iter=60)
    assert not other_data.from_cache and other_data.data_hash != first.data_hash
    assert len(list(tmp_path.glob("*.npz"))) == 3
    assert train_digit_net(1, data=(X2, y), cache_dir=tmp_path, max_iter=60).from_cache
    assert not train_digit_net(1, cache_dir=tmp_path, max_iter=60, retrain=True).from_cache
    # the cache holds arrays only: it loads without pickles
    for f in tmp_path.glob("*.npz"):
        with np.load(f, allow_pickle=False) as z:
            assert {"W1", "b1", "W2", "b2", "classes", "key", "data_hash"} <= set(z.files)
    # an unreadable cache file is retrained over, with a warning
    f = next(tmp_path.glob("digitnet-seed2-*.npz"))
    f.write_bytes(b"garbage")
    with pytest.warns(RuntimeWarning, match="unreadable cached model"):
        assert not train_digit_net(2, cache_dir=tmp_path, max_iter=60).from_cache


def test_training_on_a_subset_of_classes(tmp_path, data):
    X, y = data
    net8 = train_digit_net(0, classes=range(8), cache_dir=tmp_path)
    np.testing.assert_array_equal(net8.classes, np.arange(8))
    assert set(np.unique(y[net8.train_idx])) == set(range(8)) == set(np.unique(y[net8.test_idx]))
    assert net8.accuracy(X[net8.test_idx], y[net8.test_idx]) > 0.9
    unseen = np.flatnonzero(y >= 8)
    assert set(np.unique(net8.predict(X[unseen]))) <= set(range(8))   # never predicts 8 or 9
    assert net8.proba(X[:3]).shape == (3, 8)
    with pytest.raises(ValueError, match="classes must be at least two labels present"):
        train_digit_net(0, classes=[3, 12], cache_dir=None)


def test_attributes_are_nonnegative_unit_hidden_features(net, data):
    X, _ = data
    F = net.features(X)
    assert F.shape == (1797, net.n_hidden) and (F >= 0).all()
    np.testing.assert_allclose(np.linalg.norm(F, axis=1), 1.0, rtol=1e-12)
    H = net.hidden(X[:50])
    ok = np.linalg.norm(H, axis=1) > 0
    np.testing.assert_allclose(F[:50][ok], H[ok] / np.linalg.norm(H[ok], axis=1, keepdims=True))
    p = net.proba(X)
    assert np.all((p.max(axis=1) > 0) & (p.max(axis=1) <= 1))


def test_scenes_are_seeded_and_well_formed(net, data):
    X, y = data
    a = compose_scenes(40, seed=5, pool=net.test_idx)
    b = compose_scenes(40, seed=5, pool=net.test_idx)
    assert [s.slots for s in a] == [s.slots for s in b]
    assert [s.slots for s in compose_scenes(40, seed=6, pool=net.test_idx)] != [s.slots for s in a]
    for s in a:
        assert isinstance(s, Scene) and len(s.slots) == 4 and 1 <= len(s.occupied) <= 4
        assert all(i is None or i in set(net.test_idx) for i in s.slots)
        for i, idx in enumerate(s.slots):
            if idx is None:
                assert not s.images[i].any() and s.labels[i] is None
            else:
                np.testing.assert_array_equal(s.images[i].ravel(), X[idx])
                assert s.labels[i] == y[idx]
        assert s.canvas.shape == (16, 16)
        np.testing.assert_array_equal(s.canvas[:8, 8:], s.images[1])
    assert any(len(s.occupied) < 4 for s in a)
    full = compose_scenes(5, seed=1, p_empty=0.0)
    assert all(len(s.occupied) == 4 for s in full)
    with pytest.raises(ValueError, match="p_empty must lie in"):
        compose_scenes(3, p_empty=1.0)
    with pytest.raises(ValueError, match="min_digits must be at most n_slots=4"):
        compose_scenes(3, min_digits=5)


def test_scene_graph_is_valid_and_sketchable(net):
    scenes = compose_scenes(6, seed=2, pool=net.test_idx)
    bank = MatrixBank(1024, "hadamard", 0)
    for patches in (False, True):
        graphs = scene_graphs(scenes, net, patches=patches)
        for sc, g in zip(scenes, graphs):
            assert isinstance(g, Graph)
            assert g.max_depth == (4 if patches else 3)
            scene = g.index["scene"]
            assert g.module("scene") == "scene" and g.depth("scene") == 2
            children = [g.ids[c] for c in g.inputs[scene][0]]
            assert children == ["slot1", "slot2", "slot3", "slot4"]          # tuple position = slot
            for i, oid in enumerate(children):
                if sc.slots[i] is None:
                    assert g.module(oid) == "empty" and g.weight(oid) == 0
                    continue
                img = sc.images[i].ravel()[None, :]
                c = int(net.predict(img)[0])
                assert g.module(oid) == f"digit-{c}" and g.depth(oid) == 3
                assert g.weight(oid) == pytest.approx(net.proba(img).max() / 4)
                np.testing.assert_allclose(g.attributes[g.index[oid]], net.features(img)[0])
                if patches:
                    kids = g.inputs[g.index[oid]]
                    assert [g.ids[k] for k in kids[0]] == [f"{oid}-patch{q}" for q in range(1, 5)]
                    assert kids[1].sum() == pytest.approx(1.0)
                    assert all(g.module(g.ids[k]) == "patch" and g.depth(g.ids[k]) == 4 for k in kids[0])
            for x in g.attributes:
                assert (x >= 0).all() and np.linalg.norm(x) == pytest.approx(1.0)
            s = sketch(g, bank)
            assert s.shape == (1024,) and np.isfinite(s).all() and np.linalg.norm(s) > 0
        objs = sketch_objects(graphs[0], bank)
        assert set(objs) == set(graphs[0].ids)
    assert scene_graph(scenes[0], net).ids == scene_graphs(scenes[:1], net)[0].ids


def test_summed_scene_sketches_decode_the_scene_module(net):
    """Theorem 3 through the scenes: the sum of many scene sketches counts the scene objects
    (depth 2, weight 1) within 5σ, σ = ‖Σs‖/(√d·c_2), and its mean scene attribute points along
    the true mean. (Depth-3 digit counts need a far larger d: c_3 = 2⁻⁹ makes σ hundreds of
    digits here.)"""
    scenes = compose_scenes(150, seed=9, pool=net.test_idx)
    graphs = scene_graphs(scenes, net, weights="uniform")
    bank = MatrixBank(4096, "hadamard", 1)
    total = np.sum([sketch(g, bank) for g in graphs], axis=0)
    sigma = np.linalg.norm(total) / np.sqrt(4096) / 2.0 ** -5
    est = D.count(total, bank, "scene", 2, 1.0)
    assert abs(est - 150) < 5 * sigma < 75, (est, sigma)        # a factor-2 error would fail
    truth = np.mean([g.attributes[g.index["scene"]] for g in graphs], axis=0)
    mean = D.mean_attributes(total, bank, "scene", length=len(truth))
    assert mean @ truth / (np.linalg.norm(mean) * np.linalg.norm(truth)) > 0.9


def test_bad_arguments(net, data):
    with pytest.raises(ValueError, match="weights must be 'confidence' or 'uniform'"):
        scene_graph(compose_scenes(1, seed=0)[0], net, weights="max")
    with pytest.raises(ValueError, match="net must be a DigitNet"):
        scene_graph(compose_scenes(1, seed=0)[0], "net")
    with pytest.raises(ValueError, match=r"data must be \(X, y\) of shapes \(n, 64\)"):
        train_digit_net(0, data=(np.ones((5, 63)), np.zeros(5, int)), cache_dir=None)
    assert isinstance(net, DigitNet)
