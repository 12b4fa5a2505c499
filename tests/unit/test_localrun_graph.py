"""Reading the azureml step graph: order, parallel branches, argument kinds, and what cannot run locally."""
from __future__ import annotations

import pytest

from retrainer.localrun import UnsupportedStepError
from retrainer.localrun.graph import DataInput, Intermediate, Parameter, PipelineDefinitionError, read_graph
from tests.fixtures.localrun import pipeline as fixture_pipeline


def test_order_follows_pipeline_data_and_pulls_in_unlisted_producers():
    definition = fixture_pipeline.build()   # lists only "join"

    nodes = read_graph(definition.steps)

    order = [n.name for n in nodes]
    assert order[0] == "split" and order[-1] == "join"
    assert set(order[1:3]) == {"left", "right"}
    by_name = {n.name: n for n in nodes}
    assert by_name["left"].upstream == {"split"} and by_name["right"].upstream == {"split"}
    assert by_name["join"].upstream == {"left", "right"}
    assert by_name["split"].upstream == frozenset()


def test_arguments_keep_their_kind():
    split = next(n for n in read_graph(fixture_pipeline.build().steps) if n.name == "split")

    assert split.arguments == (
        "--input", DataInput("input_data", "fixture_store", fixture_pipeline.DEFAULT_INPUT, "mount"),
        "--left", Intermediate("left_data", "split"), "--right", Intermediate("right_data", "split"),
        "--tag", Parameter("tag", "t1"))
    assert split.outputs == ("left_data", "right_data")
    assert split.script_name == "split.py" and split.source_directory == fixture_pipeline.STEPS_DIR.resolve()


def test_run_after_adds_an_edge():
    from azureml.pipeline.steps import PythonScriptStep

    first = PythonScriptStep(name="first", script_name="split.py", source_directory=str(fixture_pipeline.STEPS_DIR))
    second = PythonScriptStep(name="second", script_name="split.py", source_directory=str(fixture_pipeline.STEPS_DIR))
    second.run_after(first)

    nodes = read_graph([second])

    assert [n.name for n in nodes] == ["first", "second"]
    assert nodes[1].upstream == {"first"}


def test_a_step_type_the_runner_cannot_run_is_named_before_anything_runs():
    from azureml.pipeline.steps import CommandStep

    command = CommandStep(name="shell_out", command="echo hi", source_directory=str(fixture_pipeline.STEPS_DIR),
                          compute_target="cpu-cluster")

    with pytest.raises(UnsupportedStepError, match="'shell_out' is a CommandStep"):
        read_graph([*fixture_pipeline.build().steps, command])


def test_an_argument_the_runner_cannot_resolve_is_an_unsupported_step():
    from azureml.pipeline.steps import PythonScriptStep

    step = PythonScriptStep(name="odd", script_name="split.py", source_directory=str(fixture_pipeline.STEPS_DIR),
                            arguments=["--x", object()])

    with pytest.raises(UnsupportedStepError, match="step 'odd' passes a object"):
        read_graph([step])


def test_a_cycle_through_run_after_is_refused():
    from azureml.pipeline.steps import PythonScriptStep

    a = PythonScriptStep(name="a", script_name="split.py", source_directory=str(fixture_pipeline.STEPS_DIR))
    b = PythonScriptStep(name="b", script_name="split.py", source_directory=str(fixture_pipeline.STEPS_DIR))
    a.run_after(b)
    b.run_after(a)

    with pytest.raises(PipelineDefinitionError, match="cycle: a, b"):
        read_graph([a])


def test_duplicate_step_names_are_refused():
    from azureml.pipeline.steps import PythonScriptStep

    steps = [PythonScriptStep(name="same", script_name="split.py", source_directory=str(fixture_pipeline.STEPS_DIR))
             for _ in range(2)]

    with pytest.raises(PipelineDefinitionError, match="repeated: same"):
        read_graph(steps)
