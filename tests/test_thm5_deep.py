"""Theorem 5 beyond depth 2 (experiments/thm5_teacher.py, issue 11 item 6): the storage rule, the
teacher of a grid point, seeds of the older grids, storage-agnostic hidden truth, chunked samples
and the middle-object metrics. Small d only (seconds)."""
import hashlib
import math

import numpy as np
import pytest

import experiments.thm5_teacher as E
from sketchsim import MatrixBank
from sketchsim import learn as LN


def test_storage_rule_is_implicit_above_2_20():
    assert E.storage_for(2**20) == "stored"
    assert E.storage_for(2**20 + 1) == "implicit"
    assert E.storage_for(102000) == "stored"
    assert E.storage_for(9999936) == "implicit"
    for bad in (0, -5, 2.5, True):
        with pytest.raises(ValueError, match="d_sketch"):
            E.storage_for(bad)


def test_deep_grid_in_full_and_deep_profiles():
    assert E.DEEP_D == 81 * 123456 and E.DEEP_D % E.block_size_for(E.DEEP_D) == 0
    assert E.DEEP_GRID in E.PROFILES["full"] and E.PROFILES["deep"] == [E.DEEP_GRID]
    assert E.DEEP_GRID["depth"] == [3] and E.DEEP_GRID["fan_in"] == [1] and E.DEEP_GRID["w"] == [1.0]
    # memory: the largest n of sketches of length d at 8 bytes stays under 4 GB
    assert max(E.DEEP_GRID["n_sketches"]) * E.DEEP_D * 8 < 4 * 2**30


def test_teacher_for_chain_and_default():
    chain = E.teacher_for({"depth": 3, "w": 1.0, "fan_in": 1}, random_state=0)
    assert set(chain.graph.ids) == {"t0", "t0.0", "t0.0.0"}
    assert chain.top == ("t0",) and chain.weight("t0.0") == 1.0
    default = E.teacher_for({"depth": 3, "w": 0.9}, random_state=0)          # no fan_in: 2
    assert default.top == ("t0", "t1") and len(default.leaves) == 8
    assert math.isclose(default.weight("t0.1"), 0.45)


@pytest.mark.parametrize("params, name", [
    ({"depth": 3, "w": 0.0, "fan_in": 1}, "w"),
    ({"depth": 3, "w": 1.5, "fan_in": 1}, "w"),
    ({"depth": 3, "w": 1.0, "fan_in": 0}, "fan_in"),
    ({"depth": 3, "w": 1.0, "fan_in": 1.5}, "fan_in"),
])
def test_teacher_for_rejects_bad_params(params, name):
    with pytest.raises(ValueError, match=name):
        E.teacher_for(params)


def test_instance_seed_of_older_grids_unchanged():
    p = {"depth": 2, "w": 0.9, "d_sketch": 25488, "instance": 0}
    want = int.from_bytes(hashlib.sha256(b"thm5/2/0.9/25488/0").digest()[:8], "big") >> 1
    assert E._instance_seed(p) == want
    assert E._instance_seed(dict(p, fan_in=2)) == want
    assert E._instance_seed(dict(p, fan_in=float("nan"))) == want
    assert E._instance_seed(dict(p, fan_in=1)) != want


def test_hidden_truth_implicit_matches_dense_columns():
    d = 6144
    b = E.block_size_for(d)
    q = 6 * b / d
    teacher = E.teacher_for({"depth": 2, "w": 1.0, "fan_in": 1}, random_state=3)
    bank = MatrixBank(d, "block-sparse", 11, block_size=b, block_prob=q, storage="implicit")
    truth = E.hidden_truth(bank, teacher, max_column=3)
    for nm in truth.names:
        op = bank.get(nm)
        for j in range(3):
            col = op.column(j)                          # the operator's own dense column
            blocks = truth.columns[(nm, j)]
            nz = sorted({i // b for i in np.flatnonzero(col)})
            assert sorted(blocks) == nz
            for r, sg in blocks.items():
                np.testing.assert_array_equal(np.sign(col[r * b:(r + 1) * b]), sg)
        sig = truth.signatures[nm]
        j = next(j for j in range(d) if np.any(op.column(j)))
        blk = np.sign(op.column(j)).reshape(-1, b)
        first = blk[np.flatnonzero(np.any(blk != 0, axis=1))[0]][2 * (b // 3):]
        np.testing.assert_array_equal(sig, first * first[0])


def test_samples_chunked_equals_teacher_samples():
    d = 6144
    b = E.block_size_for(d)
    teacher = E.teacher_for({"depth": 3, "w": 1.0, "fan_in": 1}, random_state=1)
    bank = MatrixBank(d, "block-sparse", 2, block_size=b, block_prob=6 * b / d)
    smap = LN.sketch_map(teacher, bank)
    ref = LN.teacher_samples(teacher, 7, bank, np.random.default_rng(5), method="direct")
    got = E.samples_chunked(teacher, 7, smap, np.random.default_rng(5), chunk=1000)
    np.testing.assert_array_equal(got.inputs, ref.inputs)
    np.testing.assert_array_equal(got.outputs, ref.outputs)
    np.testing.assert_allclose(got.sketches, ref.sketches, rtol=0, atol=1e-13 * np.abs(ref.sketches).max())


def test_run_one_deep_metrics_small_d(monkeypatch):
    p = {"depth": 3, "w": 1.0, "fan_in": 1, "d_sketch": 6144, "instance": 0, "n_sketches": 12}
    monkeypatch.setattr(E, "IMPLICIT_MIN_D", 1000)     # exercise the implicit path at small d
    E._CACHE.clear()
    out = E.run_one(p, np.random.default_rng(0))
    E._CACHE.clear()
    assert out["storage_implicit"] == 1.0 and out["fan_in"] == 1 and out["n_top"] == 1
    assert out["omega_mid0"] == 2.0 ** -9                 # c_3·W, W = 1
    assert math.isclose(out["omega_floor_ratio_mid0"], 2.0 ** -9 / out["floor"])
    assert out["snr_margin_mid0"] <= out["omega_floor_ratio_mid0"] + 1e-15
    assert out["regime_mid0"] == 0.0 and out["regime"] == 0.0   # far below the floor at this d
    assert "learned_top1" not in out                      # no t1 in a single chain
    assert out["sample_bytes"] == 12 * 6144 * 8
    monkeypatch.setattr(E, "IMPLICIT_MIN_D", 2**20)
    out2 = E.run_one(p, np.random.default_rng(0))         # stored bank: same matrices, same metrics
    E._CACHE.clear()
    assert out2["storage_implicit"] == 0.0
    for k in ("floor", "sketch_norm", "snr_margin_mid0", "min_blocks_mid0", "n_matrices", "snr_margin_top0"):
        assert out2[k] == out[k], k
