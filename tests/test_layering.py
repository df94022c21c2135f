"""Imports flow one way through the package, and the package names no study.

Layers, lowest first (a module may import its own layer and the ones below, never a later one):

0. kernels   ``sketchsim/_*kernels.py``, ``_rng.py``, ``_fwht.py``
1. core      ``graph``, ``matrices``, ``sketch``, ``_validation``, ``_io``, ``_parallel`` and the
             package ``__init__`` (its public facade re-exports the core)
2. decoders  ``decode``, ``theory``, ``reference``
3. learning  ``dictlearn``, ``learn``, and the applications ``repository``, ``scenes``
4. harness   ``sketchsim/harness/*``
5. CLI       ``cli``, ``__main__``, ``demo``

Every import is found with :mod:`ast`, including those inside functions, so a lazy import does not
escape the rule. The harness discovers studies in the ``experiments`` package; no file of the
package imports ``experiments.<study>`` or spells a study's name as a string.
"""
import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "sketchsim"

LAYERS = {
    "kernels": 0, "core": 1, "decoders": 2, "learning": 3, "harness": 4, "cli": 5,
}
MODULE_LAYER = {
    "sketchsim._rng": "kernels",
    "sketchsim._fwht": "kernels",
    "sketchsim": "core",
    "sketchsim.graph": "core",
    "sketchsim.matrices": "core",
    "sketchsim.sketch": "core",
    "sketchsim._validation": "core",
    "sketchsim._io": "core",
    "sketchsim._parallel": "core",
    "sketchsim._tempfiles": "core",
    "sketchsim.decode": "decoders",
    "sketchsim.decode_ls": "decoders",
    "sketchsim.theory": "decoders",
    "sketchsim.reference": "decoders",
    "sketchsim.unroll": "decoders",
    "sketchsim.signatures": "decoders",
    "sketchsim.dictlearn": "learning",
    "sketchsim.learn": "learning",
    "sketchsim.repository": "learning",
    "sketchsim.scenes": "learning",
    "sketchsim.cli": "cli",
    "sketchsim.__main__": "cli",
    "sketchsim.demo": "cli",
}
STUDIES = ("thm1_attributes", "thm2_similarity", "thm3_summary", "erasure", "unrolling",
           "thm4_dictlearn", "dictlearn_sketches", "thm5_teacher", "decoders_unroll",
           "decoders_signatures")


def module_name(path):
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(mod):
    """Layer name of a module of the package (None: outside the package)."""
    if mod != "sketchsim" and not mod.startswith("sketchsim."):
        return None
    if mod in MODULE_LAYER:
        return MODULE_LAYER[mod]
    if mod == "sketchsim.harness" or mod.startswith("sketchsim.harness."):
        return "harness"
    last = mod.split(".")[1]
    if last.startswith("_") and last.endswith("kernels"):
        return "kernels"
    pytest.fail(f"module {mod} has no layer: add it to MODULE_LAYER in tests/test_layering.py")


def source_files():
    files = sorted(p for p in PKG.rglob("*.py") if "__pycache__" not in p.parts)
    assert len(files) > 15
    return files


def _is_package(mod):
    rel = Path(*mod.split("."))
    return (PKG.parent / rel / "__init__.py").exists()


def _exists(mod):
    rel = Path(*mod.split("."))
    return (PKG.parent / rel).with_suffix(".py").exists() or _is_package(mod)


def imported_modules(path):
    """[(line, module)] of every import in ``path`` (resolved to the module it loads)."""
    mod = module_name(path)
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            for a in node.names:  # `from pkg import sub` loads pkg.sub when it is a module
                sub = f"{target}.{a.name}"
                is_sub = a.name != "*" and (_exists(sub) or target.split(".")[0] == "experiments")
                out.append((node.lineno, sub if is_sub else target))
    return out


def test_every_module_has_a_layer():
    for path in source_files():
        assert layer_of(module_name(path)) is not None


def test_imports_flow_one_way():
    violations = []
    for path in source_files():
        mod = module_name(path)
        here = layer_of(mod)
        for line, target in imported_modules(path):
            there = layer_of(target)
            if there is not None and LAYERS[there] > LAYERS[here]:
                violations.append(f"{path.relative_to(PKG.parent)}:{line}: {mod} ({here}) imports "
                                  f"{target} ({there})")
    assert not violations, "imports against the layering:\n" + "\n".join(violations)


def test_the_layer_map_sees_lazy_imports():
    # the resolver itself: relative, nested and `from . import sub` forms
    cli = dict((t, n) for n, t in imported_modules(PKG / "cli.py"))
    assert "sketchsim.harness.verify" in cli          # imported inside a function
    assert "sketchsim.matrices" in cli
    demo = {t for _, t in imported_modules(PKG / "demo.py")}
    assert "sketchsim.decode" in demo                  # `from . import decode`
    sweep = {t for _, t in imported_modules(PKG / "harness" / "sweep.py")}
    assert "sketchsim" in sweep                        # `from .. import __version__`
    verify = {t for _, t in imported_modules(PKG / "harness" / "verify.py")}
    assert "sketchsim.harness.claims" in verify and "sketchsim.harness.sweep" in verify


def test_the_package_names_no_study():
    names = set(STUDIES) | {f"experiments.{s}" for s in STUDIES}
    found = []
    for path in source_files():
        rel = path.relative_to(PKG.parent)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for line, target in imported_modules(path):
            if target.startswith("experiments.") and target != "experiments.":
                found.append(f"{rel}:{line}: imports {target}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and node.value.strip() in names:
                found.append(f"{rel}:{node.lineno}: names the study {node.value!r}")
    assert not found, "the package must discover studies, not name them:\n" + "\n".join(found)


def test_the_checks_catch_violations(tmp_path, monkeypatch):
    fake = tmp_path / "sketchsim"
    (fake / "harness").mkdir(parents=True)
    (fake / "__init__.py").write_text("from .graph import Graph\n")
    (fake / "harness" / "__init__.py").write_text("")
    (fake / "graph.py").write_text("def f():\n    from .decode import attributes\n")  # core → decoders
    (fake / "decode.py").write_text("from . import learn\n")                          # → learning
    (fake / "learn.py").write_text("import sketchsim.harness.verify\n")               # → harness
    (fake / "harness" / "verify.py").write_text(
        "import importlib\nfrom experiments import thm1_attributes\n"
        "NAME = 'erasure'\nDOC = 'erasure of coordinates is fine in prose'\n")
    for name in ("sketch", "matrices"):  # a clean module
        (fake / f"{name}.py").write_text("from ._io import atomic_path\n")
    (fake / "_io.py").write_text("")
    monkeypatch.setattr(__import__(__name__), "PKG", fake)
    monkeypatch.setattr(__import__(__name__), "source_files",
                        lambda: sorted(fake.rglob("*.py")))
    with pytest.raises(AssertionError) as err:
        test_imports_flow_one_way()
    text = str(err.value)
    assert "sketchsim/graph.py:2: sketchsim.graph (core) imports sketchsim.decode (decoders)" in text
    assert "sketchsim.decode (decoders) imports sketchsim.learn (learning)" in text
    assert "sketchsim.learn (learning) imports sketchsim.harness.verify (harness)" in text
    assert "sketchsim.sketch" not in text
    with pytest.raises(AssertionError) as err:
        test_the_package_names_no_study()
    text = str(err.value)
    assert "sketchsim/harness/verify.py:2: imports experiments.thm1_attributes" in text
    assert "sketchsim/harness/verify.py:3: names the study 'erasure'" in text
    assert ":4:" not in text
