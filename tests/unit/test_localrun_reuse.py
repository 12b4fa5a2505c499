"""The reuse key: each part of it changes the key; files a step cannot depend on do not."""
from __future__ import annotations

import shutil

import pytest

from retrainer.hashing import DigestCache
from retrainer.localrun.graph import read_graph
from retrainer.localrun.reuse import reuse_key, script_dependencies, source_digest
from tests.fixtures.localrun import pipeline as fixture_pipeline


@pytest.fixture
def steps_copy(tmp_path):
    target = tmp_path / "steps"
    shutil.copytree(fixture_pipeline.STEPS_DIR, target)
    return target


def node(name, **build_options):
    return next(n for n in read_graph(fixture_pipeline.build(**build_options).steps) if n.name == name)


def key(step, arguments=("--x", "1"), inputs=("d1",)):
    return reuse_key(step, list(arguments), list(inputs), DigestCache())


def test_a_script_depends_on_itself_and_the_modules_it_imports_transitively(steps_copy):
    (steps_copy / "pkg").mkdir()
    (steps_copy / "pkg" / "__init__.py").write_text("")
    (steps_copy / "pkg" / "deep.py").write_text("VALUE = 1\n")
    (steps_copy / "splitting.py").write_text("from pkg import deep\n\ndef halves(t, g):\n    return t, t\n")

    assert script_dependencies(steps_copy, "split.py") == {
        p.relative_to(steps_copy) for p in (steps_copy / "split.py", steps_copy / "record.py",
                                            steps_copy / "splitting.py", steps_copy / "pkg" / "__init__.py",
                                            steps_copy / "pkg" / "deep.py")}


def test_a_dynamic_import_makes_every_python_file_count(steps_copy):
    (steps_copy / "split.py").write_text("import importlib\nimportlib.import_module('record')\n")

    assert script_dependencies(steps_copy, "split.py") is None
    before = source_digest(steps_copy, "split.py", DigestCache())
    (steps_copy / "join.py").write_text("# edited\n")
    assert source_digest(steps_copy, "split.py", DigestCache()) != before


def test_editing_another_steps_script_keeps_the_source_digest(steps_copy):
    before = source_digest(steps_copy, "split.py", DigestCache())

    (steps_copy / "join.py").write_text((steps_copy / "join.py").read_text() + "\n# edited\n")
    assert source_digest(steps_copy, "split.py", DigestCache()) == before

    (steps_copy / "splitting.py").write_text((steps_copy / "splitting.py").read_text() + "\n# edited\n")
    assert source_digest(steps_copy, "split.py", DigestCache()) != before


def test_a_data_file_next_to_the_scripts_counts_for_every_step(steps_copy):
    before = source_digest(steps_copy, "branch.py", DigestCache())

    (steps_copy / "lookup.csv").write_text("a,b\n")

    assert source_digest(steps_copy, "branch.py", DigestCache()) != before


def test_the_same_step_gives_the_same_key():
    assert key(node("left")) == key(node("left"))


@pytest.mark.parametrize("change", ["arguments", "inputs", "script", "environment", "source"])
def test_each_part_of_the_key_changes_it(change, steps_copy):
    base = node("left", source_directory=steps_copy)
    baseline = key(base)

    if change == "arguments":
        changed = key(base, arguments=("--x", "2"))
    elif change == "inputs":
        changed = key(base, inputs=("d2",))
    elif change == "script":
        shutil.copy(steps_copy / "branch.py", steps_copy / "branch_copy.py")
        changed = key(node("left", source_directory=steps_copy, left_script="branch_copy.py"))
    elif change == "environment":
        changed = key(node("left", source_directory=steps_copy, environment="other-env"))
    else:
        (steps_copy / "record.py").write_text((steps_copy / "record.py").read_text() + "\n# edited\n")
        changed = key(base)

    assert changed != baseline
