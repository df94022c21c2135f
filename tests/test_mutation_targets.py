"""The mutation suite (tests/mutation_suite.py, run by CI) stays applicable: each deliberate bug's
text occurs exactly once in its file, and each names studies and claims that exist. The suite
itself is too slow for the default run; this catches a refactoring that leaves it stale."""
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _suite():
    spec = importlib.util.spec_from_file_location("mutation_suite", ROOT / "tests" / "mutation_suite.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod              # dataclasses looks the module up while it is executed
    spec.loader.exec_module(mod)
    return mod


MUTATIONS = _suite().MUTATIONS


@pytest.mark.parametrize("m", MUTATIONS, ids=[m.name for m in MUTATIONS])
def test_mutation_text_occurs_exactly_once(m):
    text = (ROOT / m.file).read_text(encoding="utf-8")
    assert text.count(m.old) == 1, f"{m.name}: {m.old!r} occurs {text.count(m.old)} times in {m.file}"
    assert m.new != m.old


@pytest.mark.parametrize("m", MUTATIONS, ids=[m.name for m in MUTATIONS])
def test_mutation_names_existing_studies(m):
    for exp in m.experiments:
        assert (ROOT / "experiments" / f"{exp}.py").exists(), f"{m.name}: no study {exp}"
