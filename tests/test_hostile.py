"""Hostile input, family by family (issue 8): exit status 2 and one line naming the parameter, the
rule and the value; no output file; nothing existing changed; no traceback, hang or lost record.

Each family is one parametrised test whose cases are the hostile inputs; the sweep families
(concurrent records, orphaned workers, shards, experiment lookup) are in ``test_sweep_faults.py``.
"""
import json
import os
import stat
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import sketchsim as ss
from sketchsim import decode
from sketchsim.cli import main

GRAPH = {"objects": [
    {"id": "a", "module": "A", "attributes": [0.6, 0.8], "inputs": [{"id": "b", "weight": 0.5},
                                                                    {"id": "c", "weight": 0.5}]},
    {"id": "b", "module": "B", "attributes": [1.0]},
    {"id": "c", "module": "C", "attributes": [0.0, 1.0]}],
    "output": [{"id": "a", "weight": 1.0}]}
BANK = ["--d-sketch", "64", "--family", "haar", "--seed", "1"]


def _graph(**changes):
    g = json.loads(json.dumps(GRAPH))
    for key, value in changes.items():
        oid, _, field = key.partition(".")
        if oid == "output":
            g["output"] = value
        else:
            next(o for o in g["objects"] if o["id"] == oid)[field] = value
    return g


def _snapshot(folder):
    """Every entry of a folder with its type, mode and content (files) or target (symlinks)."""
    snap = {}
    for name in sorted(os.listdir(folder)):
        p = os.path.join(folder, name)
        st = os.lstat(p)
        if stat.S_ISLNK(st.st_mode):
            snap[name] = ("link", os.readlink(p))
        elif stat.S_ISREG(st.st_mode):
            with open(p, "rb") as fh:
                snap[name] = ("file", stat.S_IMODE(st.st_mode), fh.read())
        else:
            snap[name] = ("other", stat.S_IFMT(st.st_mode))
    return snap


def _refused(capsys, argv, match, folder):
    """Run the CLI in-process: exit 2, one stderr line with ``match``, the folder unchanged."""
    import re

    before = _snapshot(folder)
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, (code, err)
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert re.search(match, lines[0]), (match, lines[0])
    assert _snapshot(folder) == before
    return lines[0]


# =========================================================================== family 1: --out
def _make_target(tmp_path, kind, inp):
    out = tmp_path / "target"
    if kind == "fifo":
        os.mkfifo(out)
    elif kind == "symlink":
        (tmp_path / "elsewhere").write_bytes(b"keep me")
        out.symlink_to(tmp_path / "elsewhere")
    elif kind == "read-only":
        out.write_bytes(b"read only")
        out.chmod(0o444)
    elif kind == "directory":
        out.mkdir()
    elif kind == "the input":
        out = inp
    elif kind == "dangling symlink":
        out.symlink_to(tmp_path / "nowhere")
    return out


OUT_KINDS = [("fifo", "a FIFO"), ("symlink", "symbolic link"), ("read-only", "read-only"),
             ("directory", "a directory"), ("the input", "own input"), ("dangling symlink", "symbolic link")]


@pytest.mark.parametrize("command", ["sketch", "matrix", "learn-dictionary"])
@pytest.mark.parametrize("kind,match", OUT_KINDS, ids=[k for k, _ in OUT_KINDS])
def test_family1_out_never_clobbers(tmp_path, capsys, command, kind, match):
    if command == "sketch":
        inp = tmp_path / "g.json"
        inp.write_text(json.dumps(GRAPH))
    else:
        inp = tmp_path / "y.npy"
        np.save(inp, np.zeros((4, 96)))
    if command == "matrix" and kind == "the input":
        pytest.skip("matrix has no input file")
    out = _make_target(tmp_path, kind, inp)
    argv = {"sketch": ["sketch", inp, *BANK, "--out", out],
            "matrix": ["matrix", *BANK, "--out", out],
            "learn-dictionary": ["learn-dictionary", inp, "--block-size", "48", "--block-prob", "0.5",
                                 "--out", out]}[command]
    _refused(capsys, argv, f"--out .*{match}", tmp_path)


def test_family1_device_file_refused_before_any_work(tmp_path):
    from sketchsim._io import check_output_path

    with pytest.raises(ValueError, match="--out must be a regular file.*a device"):
        check_output_path("/dev/null", "--out")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_family1_regular_output_is_replaced(tmp_path, capsys):
    """A writable regular file is the one output that may be replaced (atomically)."""
    inp, out = tmp_path / "g.json", tmp_path / "s.npz"
    inp.write_text(json.dumps(GRAPH))
    out.write_bytes(b"old")
    assert main(["sketch", str(inp), *BANK, "--out", str(out)]) == 0
    assert np.load(out)["overall"].shape == (64,)


# =========================================================================== family 2: ids and names
BAD_NAMES = [("NUL in id", {"b.id": "b\u0000zzz"}, "printable"),
             ("newline in id", {"b.id": "b\n"}, "printable"),
             ("tab in module", {"b.module": "B\tx"}, "printable"),
             ("NUL in module", {"b.module": "m\u0000x"}, "printable"),
             ("70,000-character id", {"b.id": "x" * 70000}, "at most 256 characters"),
             ("dict as id", {"b.id": {"x": 1}}, "must be a string; got dict"),
             ("list as module", {"b.module": ["B"]}, "must be a string; got list"),
             ("number as id", {"b.id": 7}, "must be a string; got int")]


@pytest.mark.parametrize("changes,match", [c[1:] for c in BAD_NAMES], ids=[c[0] for c in BAD_NAMES])
def test_family2_bad_ids_and_names_refused_at_load(tmp_path, capsys, changes, match):
    g = _graph(**changes)
    oid = changes.get("b.id")
    if oid is not None and isinstance(oid, str):
        g["objects"][0]["inputs"][0]["id"] = oid
    inp = tmp_path / "g.json"
    inp.write_text(json.dumps(g))
    _refused(capsys, ["sketch", inp, *BANK, "--out", tmp_path / "s.npz"], match, tmp_path)


GOOD_NAMES = ["a/b", "/leading", "trailing/", "ünïcødé ✓", "with space", "x" * 256, "object/x", "0"]


def test_family2_names_round_trip_through_npz(tmp_path, capsys):
    """Every admissible id keys its own sketch: ``object/<id>`` reads back exactly."""
    objects = [{"id": oid, "module": f"M{k}/{oid[:5]}", "attributes": [1.0]} for k, oid in enumerate(GOOD_NAMES)]
    g = {"objects": objects, "output": [{"id": o["id"], "weight": 1.0 / len(objects)} for o in objects]}
    inp, out = tmp_path / "g.json", tmp_path / "s.npz"
    inp.write_text(json.dumps(g))
    assert main(["sketch", str(inp), *BANK, "--out", str(out), "--dump-matrices"]) == 0
    graph = ss.Graph.from_json(inp)
    per_object = ss.sketch_objects(graph, ss.MatrixBank(64, "haar", 1))
    with np.load(out) as z:
        keys = set(z.files)
        for oid in GOOD_NAMES:
            np.testing.assert_array_equal(z[f"object/{oid}"], per_object[oid])
        for o in objects:
            assert f"matrix/module/{o['module']}/1" in keys
            assert ss.matrices.parse_name(f"module/{o['module']}/1") == ("module", o["module"], 1)
    assert len([k for k in keys if k.startswith("object/")]) == len(GOOD_NAMES)


# =========================================================================== family 5: tracebacks
HUGE = "1" + "0" * 400


def _raw_graph_text(**subs):
    text = json.dumps(GRAPH)
    for old, new in subs.items():
        text = text.replace(old, new)
    return text


CLI_TRACEBACK_CASES = [
    ("1e400-digit weight", "graph", _raw_graph_text(**{'"weight": 1.0': f'"weight": {HUGE}'}),
     [], r"weight of input 1 of the output must be a finite real number.*integer of 401 digits"),
    ("huge attribute", "graph", _raw_graph_text(**{"[1.0]": f"[{HUGE}]"}), [],
     "attributes of object 'b' must hold finite numbers"),
    ("dict as weight", "graph", _raw_graph_text(**{'"weight": 1.0': '"weight": {"w": 1}'}), [],
     "weight of input 1 of the output must be a real number; got {'w': 1}"),
    ("list as weight", "graph", _raw_graph_text(**{'"weight": 1.0': '"weight": [1]'}), [],
     r"weight of input 1 of the output must be a real number; got \[1\]"),
    ("dict as attributes", "graph", _raw_graph_text(**{"[1.0]": '{"x": 1}'}), [],
     "attributes of object 'b' must be an array of numbers; got dict"),
    ("5000-digit integer literal", "graph", _raw_graph_text(**{"[1.0]": "[" + "1" * 5000 + "]"}), [],
     "could not be read as JSON"),
    ("JSON nested 100,000 deep", "graph", "[" * 100000 + "]" * 100000, [], "nested too deeply|must be a JSON object"),
    ("not UTF-8", "graph", None, [], "must be UTF-8 text"),
]


@pytest.mark.parametrize("case", CLI_TRACEBACK_CASES, ids=[c[0] for c in CLI_TRACEBACK_CASES])
def test_family5_graph_files(tmp_path, capsys, case):
    _, _, text, flags, match = case
    inp = tmp_path / "g.json"
    if text is None:
        inp.write_bytes(b'{"objects": [\xff\xfe]}')
    else:
        inp.write_text(text)
    _refused(capsys, ["sketch", inp, *BANK, "--out", tmp_path / "s.npz", *flags], match, tmp_path)


SIZE_CASES = [
    ("hadamard 2^40", ["--d-sketch", str(2**40), "--family", "hadamard", "--seed", "0"], r"d[-_]sketch=1099511627776 is too large"),
    ("hadamard 2^31", ["--d-sketch", str(2**31), "--family", "hadamard", "--seed", "0"], None),
    ("block-sparse 2^40", ["--d-sketch", str(135 * 2**33), "--family", "block-sparse", "--seed", "0",
                           "--block-size", "135", "--block-prob", "0.5"], r"d[-_]sketch=1159641169920 is too large"),
    ("block-sparse 2^31", ["--d-sketch", str(105 * 2**25), "--family", "block-sparse", "--seed", "0",
                           "--block-size", "105", "--block-prob", "0.1"], r"d[-_]sketch=3523215360 is too large"),
    ("haar 2^20", ["--d-sketch", str(2**20), "--family", "haar", "--seed", "0"], r"d[-_]sketch=1048576 is too large"),
    ("4000-digit d", ["--d-sketch", "9" * 4000, "--family", "hadamard", "--seed", "0"], "power of two|too large"),
    ("4000-digit d, block-sparse", ["--d-sketch", "3" * 4000, "--family", "block-sparse", "--seed", "0",
                                    "--block-size", "12003", "--block-prob", "0.5"], "block_size|too large"),
]


@pytest.mark.parametrize("case", SIZE_CASES, ids=[c[0] for c in SIZE_CASES])
def test_family5_sizes_refused_before_allocating(tmp_path, capsys, case):
    _, bank, match = case
    inp = tmp_path / "g.json"
    inp.write_text(json.dumps(GRAPH))
    for argv in (["sketch", inp, *bank, "--out", tmp_path / "s.npz"], ["matrix", *bank, "--out", tmp_path / "r.npy"]):
        line = _refused(capsys, argv, match or "too large", tmp_path)
        assert len(line) < 400


def _npy_with_header(path, shape, dtype="<f8"):
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)


NPY_CASES = [
    ("empty file", lambda p: p.write_bytes(b""), "no valid .npy header"),
    ("plain text", lambda p: p.write_text("1 2 3\n4 5 6\n"), "no valid .npy header"),
    ("npz instead of npy", lambda p: np.savez(open(p, "wb"), a=np.zeros((2, 96))), "no valid .npy header"),
    ("pickled objects", lambda p: np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True),
     "Python objects"),
    ("header claims 10^6 × 10^6", lambda p: _npy_with_header(p, (10**6, 10**6)), "truncated"),
    ("truncated data", lambda p: p.write_bytes(_npy_bytes(np.zeros((40, 96)))[:-100]), "truncated"),
    ("complex", lambda p: np.save(p, np.zeros((4, 96), complex)), "complex"),
    ("datetime", lambda p: np.save(p, np.zeros((4, 96), "datetime64[s]")), "datetimes"),
    ("structured", lambda p: np.save(p, np.zeros((4, 96), [("a", "f8"), ("b", "f8")])), "structured"),
    ("booleans", lambda p: np.save(p, np.zeros((4, 96), bool)), "booleans"),
    ("strings", lambda p: np.save(p, np.full((4, 96), "x")), "strings"),
    ("shape (0, 0)", lambda p: np.save(p, np.zeros((0, 0))), r"d ≥ 1; got shape \(0, 0\)"),
    ("shape (5, 0)", lambda p: np.save(p, np.zeros((5, 0))), r"d ≥ 1; got shape \(5, 0\)"),
    ("1-d", lambda p: np.save(p, np.zeros(96)), r"2-d array.*got shape \(96,\)"),
    ("3-d", lambda p: np.save(p, np.zeros((2, 2, 96))), r"2-d array.*got shape"),
    ("NaN entry", lambda p: np.save(p, np.full((4, 96), np.nan)), "samples must be finite; got nan at row 0"),
    ("missing file", None, "could not be read: No such file"),
]


def _npy_bytes(arr):
    import io

    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


@pytest.mark.parametrize("case", NPY_CASES, ids=[c[0] for c in NPY_CASES])
def test_family5_sample_files(tmp_path, capsys, case):
    _, make, match = case
    inp = tmp_path / "y.npy"
    if make is not None:
        make(inp)
    _refused(capsys, ["learn-dictionary", inp, "--block-size", "48", "--block-prob", "0.5", "--out",
                      tmp_path / "o.npz"], match, tmp_path)


def _chain(n):
    objs = [{"id": f"o{k}", "module": "M", "attributes": [1.0],
             "inputs": [{"id": f"o{k + 1}", "weight": 1.0}] if k + 1 < n else []} for k in range(n)]
    return ss.Graph(objs, [{"id": "o0", "weight": 1.0}])


def _small():
    g = ss.Graph.from_dict(GRAPH)
    bank = ss.MatrixBank(64, "haar", 0)
    return g, bank, ss.sketch(g, bank)


API_CASES = [
    ("decode depth=300", lambda g, b, s: decode.attributes(s, b, "B", 300, 0.5), "depth must be <= 256; got 300"),
    ("decode depth=10**400", lambda g, b, s: decode.attributes(s, b, "B", 10**400, 0.5),
     "depth must be <= 256; got an integer of 401 digits"),
    ("count depth=10**400", lambda g, b, s: decode.count(s, b, "B", 10**400, 0.5), "depth must be <= 256"),
    ("path of 300 positions", lambda g, b, s: decode.attributes_on_path(s, b, [1] * 300, "B", 0.5),
     r"len\(path\) \+ 1 \(the depth\) must be <= 256"),
    ("sketch_batch with a list", lambda g, b, s: ss.sketch_batch(g, b, [np.ones((2, 1))]),
     "attributes must be a dict of object id"),
    ("sketch_batch weights list", lambda g, b, s: ss.sketch_batch(g, b, weights=[[0.5, 0.5]]),
     "weights must be a dict of object id"),
    ("MatrixBank 2**40 hadamard", lambda g, b, s: ss.MatrixBank(2**40, "hadamard", 0),
     "d_sketch=1099511627776 is too large: one hadamard matrix"),
    ("MatrixBank 135·2**33 block-sparse", lambda g, b, s: ss.MatrixBank(135 * 2**33, "block-sparse", 0, 135, 0.5),
     "too large"),
    ("weight 1e400 as int", lambda g, b, s: ss.Graph([{"id": "x", "module": "M", "attributes": [1.0]}],
                                                    [{"id": "x", "weight": 10**400}]),
     "must be a finite real number.*integer of 401 digits"),
]


@pytest.mark.parametrize("case", API_CASES, ids=[c[0] for c in API_CASES])
def test_family5_api_raises_value_error(case):
    import re

    _, call, match = case
    g, bank, s = _small()
    with pytest.raises(ValueError) as info:
        call(g, bank, s)
    assert re.search(match, str(info.value)), str(info.value)
    assert len(str(info.value)) < 400


def test_family5_paths_of_a_deep_chain():
    g = _chain(5000)
    assert g.paths("o4999") == [[1] * 5000]
    assert g.paths("o0") == [[1]]


def test_family5_memory_guard_knows_the_process_limit():
    """Under ``ulimit -v`` the guard refuses what MemAvailable alone would allow."""
    code = textwrap.dedent("""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30))
        import sketchsim as ss
        try:
            ss.MatrixBank(20000, "haar", 0)
        except ValueError as e:
            print(e); sys.exit(0)
        sys.exit("not refused")
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "d_sketch=20000 is too large" in res.stdout and "ulimit" in res.stdout


# =========================================================================== family 6: hangs
def test_family6_levels_bounded_and_recovery_stops(tmp_path, capsys):
    inp = tmp_path / "y.npy"
    np.save(inp, np.random.default_rng(0).standard_normal((8, 96)))
    _refused(capsys, ["learn-dictionary", inp, "--block-size", "48", "--block-prob", "0.5", "--levels",
                      "1000000000", "--out", tmp_path / "o.npz"], "levels must be <= 64; got 1000000000", tmp_path)
    res = ss.dictlearn.recover(np.zeros((8, 96)), 48, 0.5, levels=64)
    assert len(res.levels) == 1                          # nothing recovered: no level 2 samples


# =========================================================================== family 7: bad values accepted
def _try(call):
    with pytest.raises(ValueError) as info:
        call()
    return str(info.value)


SILENT_CASES = [
    ("attributes as strings", lambda: ss.Graph.from_dict(_graph(**{"b.attributes": ["1.0"]})), "strings"),
    ("attributes as a scalar", lambda: ss.Graph.from_dict(_graph(**{"b.attributes": 1.0})), "scalar 1.0"),
    ("attributes as booleans", lambda: ss.Graph.from_dict(_graph(**{"b.attributes": [True]})), "booleans"),
    ("weight as a string", lambda: ss.Graph.from_dict(_graph(output=[{"id": "a", "weight": "1"}])),
     "must be a real number; got '1'"),
    ("block_prob 1e-300", lambda: ss.MatrixBank(96, "block-sparse", 0, 48, 1e-300), "all zeros"),
    ("MatrixBank(True)", lambda: ss.MatrixBank(True, "haar", 0), "d_sketch must be an integer; got True"),
    ("block_prob '0.25'", lambda: ss.MatrixBank(96, "block-sparse", 0, 48, "0.25"), "block_prob must be a real number"),
    ("block_prob True", lambda: ss.MatrixBank(96, "block-sparse", 0, 48, True), "block_prob must be a real number"),
    ("block_size True", lambda: ss.MatrixBank(96, "block-sparse", 0, True, 0.5), "block_size must be an integer"),
    ("recover q '0.5'", lambda: ss.dictlearn.recover(np.zeros((4, 96)), 48, "0.5"), "block_prob must be a real number"),
    ("levels=True", lambda: ss.dictlearn.recover(np.zeros((4, 96)), 48, 0.5, levels=True), "levels must be an integer"),
    ("normalize='no'", lambda: ss.Graph.from_dict(GRAPH, normalize="no"), "normalize must be True or False"),
    ("random_network depth=0", lambda: ss.random_network(depth=0), "depth must be >= 1; got 0"),
    ("random_network share_prob=2", lambda: ss.random_network(share_prob=2), r"share_prob must lie in \[0, 1\]"),
    ("random_network fan_in (3, 1)", lambda: ss.random_network(fan_in=(3, 1)), r"fan_in\[1\] must be >= 3"),
    ("fixed_tree_values 1.5", lambda: ss.fixed_tree_values(_small()[0], 1.5), "n_inputs must be an integer; got 1.5"),
    ("matrix name with newline", lambda: ss.matrices.parse_name("tuple/1\n"), "matrix name must be"),
    ("decoder weight 1e-320", lambda: decode.attributes(_small()[2], _small()[1], "B", 3, 1e-320), "not finite"),
    ("count weight 1e-320", lambda: decode.count(_small()[2], _small()[1], "B", 3, 1e-320), "not finite"),
    ("unknown module, no graph", lambda: _decode_unknown_module(), "module must be a module of a graph sketched"),
    ("sketch_batch normalize='yes'", lambda: ss.sketch_batch(_small()[0], _small()[1],
                                                             output_weights=np.ones((2, 1)), normalize="yes"),
     "normalize must be True or False"),
]


def _decode_unknown_module():
    g, bank, s = _small()
    return decode.attributes(s, bank, "Bx", 3, 0.5)


@pytest.mark.parametrize("case", SILENT_CASES, ids=[c[0] for c in SILENT_CASES])
def test_family7_bad_values_refused(case):
    import re

    _, call, match = case
    msg = _try(call)
    assert re.search(match, msg), msg


def test_family7_cli_block_prob_tiny_and_bad_name(tmp_path, capsys):
    inp = tmp_path / "g.json"
    inp.write_text(json.dumps(GRAPH))
    bs = ["--d-sketch", "96", "--family", "block-sparse", "--seed", "0", "--block-size", "48"]
    _refused(capsys, ["sketch", inp, *bs, "--block-prob", "1e-300", "--out", tmp_path / "s.npz"], "all zeros", tmp_path)
    _refused(capsys, ["matrix", *BANK, "--name", "tuple/1\n", "--out", tmp_path / "r.npy"], "matrix name must be",
             tmp_path)


def test_family7_fresh_bank_decodes_any_module():
    """Documented limit: a bank that has sketched nothing cannot know the sketch's modules."""
    g, _, _ = _small()
    bank = ss.MatrixBank(64, "haar", 0)
    s = np.random.default_rng(0).standard_normal(64)
    assert decode.attributes(s, bank, "anything", 2, 0.5).shape == (64,)


# =========================================================================== family 8: messages
MESSAGE_CASES = [
    ("'abc' as attribute", {"b.attributes": ["abc"]}, r"attributes of object 'b' must hold real numbers; got strings"),
    ("ragged attributes", {"b.attributes": [[1.0], [1.0, 2.0]]}, "attributes of object 'b' must be a rectangular array"),
    ("subnormal vector normalised", {"b.attributes": [5e-324, 5e-324]}, None),
]


@pytest.mark.parametrize("case", MESSAGE_CASES, ids=[c[0] for c in MESSAGE_CASES])
def test_family8_messages_name_the_object(tmp_path, capsys, case):
    _, changes, match = case
    inp, out = tmp_path / "g.json", tmp_path / "s.npz"
    inp.write_text(json.dumps(_graph(**changes)))
    if match is None:
        assert main(["sketch", str(inp), *BANK, "--normalize", "--out", str(out)]) == 0
        g = ss.Graph.from_json(inp, normalize=True)
        np.testing.assert_allclose(g.attributes[g.index["b"]], [2**-0.5, 2**-0.5])
        return
    _refused(capsys, ["sketch", inp, *BANK, "--out", out], match, tmp_path)


@pytest.mark.parametrize("argv,match", [
    (["run", "thm1_attributes", "--seed", "-1"], "--seed must be >= 0; got -1"),
    (["verify", "--jobs", "0"], "--jobs must be >= 1; got 0"),
    (["run", "thm1_attributes", "--reps", "0"], "--reps must be >= 1; got 0"),
    (["matrix", "--d-sketch", "0", "--family", "haar", "--seed", "0", "--out", "r.npy"], "--d-sketch must be >= 1"),
    (["matrix", "--d-sketch", "abc", "--family", "haar", "--seed", "0", "--out", "r.npy"],
     "argument --d-sketch: invalid int value: 'abc'"),
    (["matrix", "--family", "nope"], "argument --family: invalid choice"),
], ids=["negative seed", "zero jobs", "zero reps", "zero d", "d not a number", "unknown family"])
def test_family8_option_messages(tmp_path, capsys, monkeypatch, argv, match):
    import re

    monkeypatch.chdir(tmp_path)
    before = _snapshot(tmp_path)
    try:
        code = main(argv)
    except SystemExit as exc:                            # argparse errors exit from the parser
        code = exc.code
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and re.search(match, lines[0]), err
    assert _snapshot(tmp_path) == before


# =========================================================================== family 9: leftovers
def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_family9_stale_temporaries_removed_by_next_write(tmp_path, capsys):
    inp, out = tmp_path / "g.json", tmp_path / "s.npz"
    inp.write_text(json.dumps(GRAPH))
    stale = tmp_path / f".tmp-{_dead_pid()}-abc.npz"
    stale.write_bytes(b"x" * 1000)
    os.utime(stale, (0, os.path.getmtime(stale) - 120))          # past the 60 s grace period
    live = tmp_path / f".tmp-{os.getpid()}-def.npz"
    live.write_bytes(b"y")
    other = tmp_path / ".tmp-unrelated"
    other.write_bytes(b"z")
    assert main(["sketch", str(inp), *BANK, "--out", str(out), "--dump-matrices"]) == 0
    assert not stale.exists() and live.exists() and other.exists()


def test_family9_killed_dump_leaves_nothing_after_next_run(tmp_path):
    """SIGKILL while the matrices are being written, then one more run: no temporary file left."""
    import signal
    import time

    inp = tmp_path / "g.json"
    objs = [{"id": f"o{k}", "module": f"M{k}", "attributes": [1.0]} for k in range(12)]
    inp.write_text(json.dumps({"objects": objs, "output": [{"id": f"o{k}", "weight": 1 / 12} for k in range(12)]}))
    argv = [sys.executable, "-m", "sketchsim", "sketch", str(inp), "--d-sketch", "2048", "--family", "gaussian",
            "--seed", "0", "--dump-matrices", "--out", str(tmp_path / "s.npz")]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list(tmp_path.glob(".tmp-*")) and proc.poll() is None:
        time.sleep(0.02)
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "s.npz").exists()
    for leftover in tmp_path.glob(".tmp-*"):                      # past the 60 s grace period
        os.utime(leftover, (0, os.path.getmtime(leftover) - 120))
    again = [sys.executable, "-m", "sketchsim", "sketch", str(inp), "--d-sketch", "64", "--family", "haar",
             "--seed", "0", "--out", str(tmp_path / "t.npz")]
    subprocess.run(again, check=True, capture_output=True, timeout=120)
    assert not list(tmp_path.glob(".tmp-*"))
