"""One test per validation rule of the engine (API and CLI): ValueError naming parameter, rule, value."""
import json
import subprocess
import sys

import numpy as np
import pytest

import sketchsim as ss
from sketchsim.cli import main

from conftest import unit


def _graph_dict(**changes):
    d = {"objects": [
        {"id": "a", "module": "A", "attributes": [0.6, 0.8], "inputs": [{"id": "b", "weight": 0.5},
                                                                        {"id": "c", "weight": 0.5}]},
        {"id": "b", "module": "B", "attributes": [1.0]},
        {"id": "c", "module": "C", "attributes": [0.0, 1.0]}],
        "output": [{"id": "a", "weight": 1.0}]}
    for path, value in changes.items():
        obj, _, field = path.partition(".")
        if obj == "output":
            d["output"] = value
        else:
            target = next(o for o in d["objects"] if o["id"] == obj)
            if value is None:
                target.pop(field)
            else:
                target[field] = value
    return d


# ---------------------------------------------------------------- bank parameters
BANK_CASES = [
    (dict(d_sketch=96, family="block-sparse", block_size=47, block_prob=0.5), "block_size must be a multiple of 3.*got 47"),
    (dict(d_sketch=96, family="block-sparse", block_size=24, block_prob=0.5), r"at least 3·max.*= 30.*got 24"),
    (dict(d_sketch=100, family="block-sparse", block_size=48, block_prob=0.5), "d_sketch must be a multiple of block_size=48; got d_sketch=100"),
    (dict(d_sketch=96, family="block-sparse", block_size=48, block_prob=0.0), r"block_prob must lie in \(0, 1\]; got 0.0"),
    (dict(d_sketch=96, family="block-sparse", block_size=48, block_prob=1.5), r"block_prob must lie in \(0, 1\]; got 1.5"),
    (dict(d_sketch=96, family="block-sparse", block_size=48, block_prob=-0.1), r"block_prob must lie in \(0, 1\]; got -0.1"),
    (dict(d_sketch=96, family="block-sparse", block_size=48, block_prob=float("nan")), r"block_prob must be a finite real number; got nan"),
    (dict(d_sketch=96, family="block-sparse"), "block_size .* required"),
    (dict(d_sketch=96, family="hadamard"), "d_sketch must be a power of two for family 'hadamard'; got 96"),
    (dict(d_sketch=0, family="haar"), "d_sketch must be >= 1; got 0"),
    (dict(d_sketch=-4, family="gaussian"), "d_sketch must be >= 1; got -4"),
    (dict(d_sketch=64, family="orthogonal"), "family must be one of .*got 'orthogonal'"),
    (dict(d_sketch=64, family="haar", block_size=48), "block_size applies only to family 'block-sparse'"),
    (dict(d_sketch=64, family="haar", seed=-1), "seed must be a nonnegative integer; got -1"),
    (dict(d_sketch=2 ** 20, family="haar"), r"d_sketch=1048576 is too large: one haar matrix"),
]


@pytest.mark.parametrize("kwargs,match", BANK_CASES)
def test_bank_rules(kwargs, match):
    kwargs = dict(kwargs)
    seed = kwargs.pop("seed", 0)
    with pytest.raises(ValueError, match=match):
        ss.MatrixBank(seed=seed, **kwargs)


def test_block_size_rule_uses_n_from_the_graph():
    # 48 ≥ 3·(⌈log2 96⌉+3) = 30 is fine for d alone, but N = 70000 matrices need b ≥ 3·17 = 51.
    with pytest.raises(ValueError, match=r"N=70000.*got 48"):
        ss.MatrixBank(96, "block-sparse", 0, block_size=48, block_prob=0.5, n_matrices=70000)
    bank = ss.MatrixBank(24, "block-sparse", 0, block_size=24, block_prob=0.5)  # d term: 3·(5+3) = 24
    # a graph large enough that the N term dominates: N > 2^8 → b ≥ 27 > 24
    objs = [{"id": f"o{i}", "module": f"M{i}", "attributes": [1.0]} for i in range(90)]
    g = ss.Graph(objs, [{"id": f"o{i}", "weight": 1 / 90} for i in range(90)])
    with pytest.raises(ValueError, match=r"block_size must be .* = 27 \(N=360, d=24\); got 24"):
        ss.sketch(g, bank)


# ---------------------------------------------------------------- graph rules
GRAPH_CASES = [
    (_graph_dict(**{"a.inputs": [{"id": "b", "weight": -0.1}]}), r"weights of object 'a' must be nonnegative; got -0.1"),
    (_graph_dict(**{"a.inputs": [{"id": "b", "weight": float("nan")}]}), r"weight of input 1 of object 'a' must be a finite real number; got nan"),
    (_graph_dict(**{"a.inputs": [{"id": "b", "weight": float("inf")}]}), r"weight of input 1 of object 'a' must be a finite real number; got inf"),
    (_graph_dict(**{"a.inputs": [{"id": "b", "weight": 0.7}, {"id": "c", "weight": 0.3 + 2e-9}]}),
     r"weights of object 'a' must sum to at most 1 \(\+1e-09\); got a sum of 1.000000002"),
    (_graph_dict(output=[{"id": "a", "weight": 1.5}]), r"weights of the output must sum to at most 1.*1.5"),
    (_graph_dict(**{"b.attributes": [-1.0]}), r"attributes of object 'b' must be nonnegative; got -1.0"),
    (_graph_dict(**{"b.attributes": [float("nan")]}), r"attributes of object 'b' must be finite; got nan"),
    (_graph_dict(**{"b.attributes": [float("inf")]}), r"attributes of object 'b' must be finite; got inf"),
    (_graph_dict(**{"b.attributes": [0.5, 0.5]}), r"attributes of object 'b' must have unit ℓ2 norm.*got norm 0.707"),
    (_graph_dict(**{"b.attributes": []}), r"attributes of object 'b' must be a nonempty vector"),
    (_graph_dict(**{"b.inputs": [{"id": "a", "weight": 1.0}]}), r"acyclic; got the cycle 'a' -> 'b' -> 'a'"),
    (_graph_dict(**{"c.id": "b"}), r"object ids must be unique; got the id 'b' twice"),
    (_graph_dict(**{"a.inputs": [{"id": "zebra", "weight": 0.5}]}), r"inputs of object 'a' must name known objects; got unknown id 'zebra'"),
    (_graph_dict(output=[{"id": "ghost", "weight": 1.0}]), r"inputs of the output must name known objects; got unknown id 'ghost'"),
    (_graph_dict(output=[]), r"output must list at least one input object; got an empty list"),
    (_graph_dict(**{"b.module": None}), r"must have the field 'module'"),
]


@pytest.mark.parametrize("graph,match", GRAPH_CASES)
def test_graph_rules(graph, match):
    with pytest.raises(ValueError, match=match):
        ss.Graph.from_dict(graph)


def test_weights_within_tolerance_are_accepted():
    ss.Graph.from_dict(_graph_dict(**{"a.inputs": [{"id": "b", "weight": 0.5}, {"id": "c", "weight": 0.5 + 5e-10}]}))


def test_normalize_rescales_attributes():
    g = ss.Graph.from_dict(_graph_dict(**{"b.attributes": [3.0, 4.0]}), normalize=True)
    np.testing.assert_allclose(g.attributes[g.index["b"]], [0.6, 0.8])
    with pytest.raises(ValueError, match="cannot be normalised"):
        ss.Graph.from_dict(_graph_dict(**{"b.attributes": [0.0, 0.0]}), normalize=True)


def test_attribute_longer_than_d_sketch():
    g = ss.Graph.from_dict(_graph_dict(**{"b.attributes": unit(np.ones(70))}))
    with pytest.raises(ValueError, match=r"attributes of object 'b' must not be longer than d_sketch=64; got length 70"):
        ss.sketch(g, ss.MatrixBank(64, "gaussian", 0))


def test_unreachable_objects_are_dropped_with_a_warning():
    d = _graph_dict()
    d["objects"].append({"id": "orphan", "module": "Z", "attributes": [1.0]})
    with pytest.warns(ss.GraphWarning, match="1 object.*no path to the output.*'orphan'"):
        g = ss.Graph.from_dict(d)
    assert "orphan" not in g.ids and len(g) == 3


def test_module_at_several_depths_warns():
    d = _graph_dict()
    d["output"] = [{"id": "a", "weight": 0.5}, {"id": "b", "weight": 0.5}]   # b at depth 2 and 3
    with pytest.warns(ss.TheoremPreconditionWarning, match="several depths"):
        g = ss.Graph.from_dict(d)
    assert g.depths[g.index["b"]] == (2, 3)


def test_malformed_json_reports_line(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('{"objects": [\n  {"id": "a",,}\n]}')
    with pytest.raises(ValueError, match=r"not valid JSON: .* at line 2, column"):
        ss.Graph.from_json(p)


def test_batched_inputs_are_validated():
    g = ss.Graph.from_dict(_graph_dict())
    bank = ss.MatrixBank(16, "gaussian", 0)
    with pytest.raises(ValueError, match="must be nonnegative"):
        ss.sketch_batch(g, bank, attributes={"b": -np.ones((2, 1))})
    with pytest.raises(ValueError, match="must sum to at most 1"):
        ss.sketch_batch(g, bank, weights={"a": np.full((2, 2), 0.6)})
    with pytest.raises(ValueError, match="share one batch size"):
        ss.sketch_batch(g, bank, attributes={"b": np.ones((2, 1))}, output_weights=np.ones((3, 1)))
    with pytest.raises(ValueError, match="unknown id 'q'"):
        ss.sketch_batch(g, bank, attributes={"q": np.ones((2, 1))})


# ---------------------------------------------------------------- CLI: one line on stderr, exit 2, no output
def _cli(tmp_path, graph, *flags):
    gp = tmp_path / "g.json"
    if isinstance(graph, str):
        gp.write_text(graph)
    else:
        gp.write_text(json.dumps(graph))
    out = tmp_path / "out.npz"
    args = ["sketch", str(gp), "--out", str(out)] + list(flags)
    return args, out


CLI_BANK = ["--d-sketch", "96", "--family", "block-sparse", "--seed", "1", "--block-size", "48", "--block-prob", "0.5"]

CLI_CASES = [(g, CLI_BANK, m) for g, m in GRAPH_CASES] + [
    (_graph_dict(), ["--d-sketch", "96", "--family", "block-sparse", "--seed", "1", "--block-size", "45", "--block-prob", "0.5"],
     "d_sketch must be a multiple of block_size=45"),
    (_graph_dict(), ["--d-sketch", "96", "--family", "block-sparse", "--seed", "1", "--block-size", "48", "--block-prob", "2"],
     r"block_prob must lie in \(0, 1\]; got 2.0"),
    (_graph_dict(), ["--d-sketch", "96", "--family", "hadamard", "--seed", "1"], "power of two"),
    (_graph_dict(), ["--d-sketch", "0", "--family", "haar", "--seed", "1"], "--d-sketch must be >= 1; got 0"),
    ('{"objects": [\n\n  {"id": ]}', CLI_BANK, "not valid JSON: .* at line 3"),
    (_graph_dict(), ["--d-sketch", "8192", "--family", "gaussian", "--seed", "1", "--dump-matrices"],
     r"--dump-matrices must fit in .* GiB"),
]


@pytest.mark.parametrize("graph,flags,match", CLI_CASES)
def test_cli_rejects_bad_input_cleanly(tmp_path, capsys, graph, flags, match):
    import re

    args, out = _cli(tmp_path, graph, *flags)
    assert main(args) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("sketchsim sketch: error: ")
    assert re.search(match, lines[0]), (match, lines[0])
    assert "Traceback" not in err
    assert not out.exists()
    assert not list(tmp_path.glob(".tmp-*"))


def test_cli_bad_input_keeps_existing_output(tmp_path):
    args, out = _cli(tmp_path, _graph_dict(), *CLI_BANK)
    assert main(args) == 0
    before = out.read_bytes()
    bad_args, _ = _cli(tmp_path, _graph_dict(output=[]), *CLI_BANK)
    assert main(bad_args) == 2
    assert out.read_bytes() == before


def test_cli_warnings_are_one_line(tmp_path):
    d = _graph_dict()
    d["objects"].append({"id": "orphan", "module": "Z", "attributes": [1.0]})
    gp = tmp_path / "g.json"
    gp.write_text(json.dumps(d))
    r = subprocess.run([sys.executable, "-m", "sketchsim", "sketch", str(gp), "--out", str(tmp_path / "o.npz"),
                        *CLI_BANK], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "sketchsim: warning: 1 object(s) have no path to the output" in r.stderr
    assert "Traceback" not in r.stderr


def test_cli_matrix_rejects_bad_name(tmp_path, capsys):
    out = tmp_path / "R.npy"
    assert main(["matrix", "--family", "haar", "--d-sketch", "8", "--seed", "0", "--name", "R9", "--out", str(out)]) == 2
    assert "matrix name must be" in capsys.readouterr().err
    assert not out.exists()


def test_cli_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["sketch"])
    assert e.value.code == 2
