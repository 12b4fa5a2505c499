"""The local runner on a test-only pipeline with parallel branches: real subprocesses, MLflow on SQLite."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from retrainer.localrun import PipelineInputError, UnsupportedStepError, run_pipeline
from retrainer.localrun.store import find_run_by_tag, read_run
from tests.fixtures.localrun import pipeline as fixture_pipeline


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory) -> Path:
    """An initialised MLflow database, copied per test (creating the schema takes seconds)."""
    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


class Bench:
    def __init__(self, root: Path, store: Path, monkeypatch) -> None:
        self.root = root
        self.state = root / "state"
        self.state.mkdir()
        shutil.copy(store, self.state / "mlflow.db")
        self.tracking_uri = f"sqlite:///{self.state / 'mlflow.db'}"
        self.executions_file = root / "executions.txt"
        monkeypatch.setenv("FIXTURE_EXECUTIONS", str(self.executions_file))
        self.input = root / "input.txt"
        self.input.write_text("hello")
        self.steps = root / "steps"
        shutil.copytree(fixture_pipeline.STEPS_DIR, self.steps)

    def run(self, definition=None, **kwargs):
        kwargs.setdefault("parameters", {"input_data": str(self.input)})
        definition = definition or fixture_pipeline.build(source_directory=self.steps)
        return run_pipeline(definition, state_dir=self.state, tracking_uri=self.tracking_uri,
                            experiment="fixture", **kwargs)

    def executions(self) -> list[str]:
        """Steps that really executed since the last call."""
        if not self.executions_file.exists():
            return []
        names = self.executions_file.read_text().split()
        self.executions_file.unlink()
        return names

    def artifact(self, run_id: str, path: str) -> str:
        local = MlflowClient(tracking_uri=self.tracking_uri).download_artifacts(run_id, path, str(self.root))
        return Path(local).read_text()


@pytest.fixture
def bench(tmp_path, empty_store, monkeypatch) -> Bench:
    return Bench(tmp_path, empty_store, monkeypatch)


def step(result, name):
    return next(s for s in result.steps if s.name == name)


def test_parallel_branches_run_at_the_same_time_and_feed_the_join(bench, tmp_path):
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    seen = []

    result = bench.run(fixture_pipeline.build(source_directory=bench.steps, log_metrics=True),
                       parameters={"input_data": str(bench.input), "barrier": str(barrier)},
                       max_workers=2, on_step=seen.append)

    assert result.status == "Completed", result.error
    assert [s.name for s in result.steps] == ["split", "left", "right", "join"]
    assert sorted(bench.executions()) == ["join", "left", "right", "split"]
    assert sorted(s.name for s in seen) == ["join", "left", "right", "split"]
    join = step(result, "join")
    assert result.metrics == {"chars": len("left:left[t1]:hello|right:right[t1]:hello")}
    assert bench.artifact(join.run_id, "outputs/result.txt") == "left:left[t1]:hello|right:right[t1]:hello"
    assert "join done" in bench.artifact(join.run_id, "logs/join.log")


def test_arguments_and_environment_reach_the_script(bench):
    result = bench.run(parameters={"input_data": str(bench.input), "tag": "custom"})

    split = step(result, "split")
    seen = json.loads(bench.artifact(split.run_id, "outputs/seen.json"))
    run_dir = bench.state / "runs" / result.run_id
    assert seen["argv"] == ["--input", str(bench.input.resolve()), "--left", str(run_dir / "data" / "left_data"),
                            "--right", str(run_dir / "data" / "right_data"), "--tag", "custom"]
    assert Path(seen["cwd"]) == run_dir / "steps" / "split"      # a snapshot, not the source folder
    assert seen["env"] == {"MLFLOW_TRACKING_URI": bench.tracking_uri, "MLFLOW_RUN_ID": split.run_id,
                           "RETRAINER_RUN_ID": result.run_id, "RETRAINER_STEP_NAME": "split"}
    assert not (bench.steps / "outputs").exists()


def test_a_datastore_path_is_fetched_through_the_callable(bench, tmp_path):
    fetched = []

    def fetch_data(datastore: str, path: str) -> Path:
        fetched.append((datastore, path))
        target = tmp_path / "downloaded.txt"
        target.write_text("from the datastore")
        return target

    result = bench.run(parameters={}, fetch_data=fetch_data)

    assert result.status == "Completed", result.error
    assert fetched == [("fixture_store", fixture_pipeline.DEFAULT_INPUT)]
    assert "from the datastore" in bench.artifact(step(result, "join").run_id, "outputs/result.txt")


def test_a_second_run_on_the_same_content_executes_nothing(bench):
    definition = fixture_pipeline.build(source_directory=bench.steps, log_metrics=True)
    first = bench.run(definition)
    bench.executions()

    second = bench.run(definition)

    assert second.status == "Completed"
    assert bench.executions() == []
    assert all(s.reused for s in second.steps)
    assert second.metrics == first.metrics == {"chars": len("left:left[t1]:hello|right:right[t1]:hello")}
    join = step(second, "join")
    assert bench.artifact(join.run_id, "outputs/result.txt") == bench.artifact(
        step(first, "join").run_id, "outputs/result.txt")
    info = read_run(bench.tracking_uri, second.run_id)
    assert info.status == "Completed" and all(s.reused for s in info.steps)
    assert info.step("join").metrics == first.metrics
    tags = MlflowClient(tracking_uri=bench.tracking_uri).get_run(join.run_id).data.tags
    assert tags["reused_from"] == step(first, "join").run_id


def edit(path: Path) -> None:
    path.write_text(path.read_text() + "\n# edited\n")


@pytest.mark.parametrize("change, expected_runs", [
    ("edit the join script", ["join"]),
    # split reruns; its outputs are byte-identical, so the branches and the join are still reused
    ("edit a module only split imports", ["split"]),
    ("change a parameter split reads", ["split", "left", "right", "join"]),
    ("same input path, other content", ["split", "left", "right", "join"]),
    ("join has allow_reuse=False", ["join"]),
    ("another environment", ["split", "left", "right", "join"]),
])
def test_a_changed_part_of_the_key_reruns_exactly_the_affected_steps(bench, change, expected_runs):
    bench.run()
    bench.executions()
    parameters = {"input_data": str(bench.input)}
    definition = None
    if change == "edit the join script":
        edit(bench.steps / "join.py")
    elif change == "edit a module only split imports":
        edit(bench.steps / "splitting.py")
    elif change == "change a parameter split reads":
        parameters["tag"] = "t2"
    elif change == "same input path, other content":
        bench.input.write_text("HELLO")
    elif change == "join has allow_reuse=False":
        definition = fixture_pipeline.build(source_directory=bench.steps, join_allow_reuse=False)
    else:
        definition = fixture_pipeline.build(source_directory=bench.steps, environment="other-env")

    result = bench.run(definition, parameters=parameters)

    assert result.status == "Completed", result.error
    assert sorted(bench.executions()) == sorted(expected_runs)
    assert sorted(s.name for s in result.steps if not s.reused) == sorted(expected_runs)


def test_a_failing_step_fails_the_run_and_later_steps_do_not_run(bench):
    result = bench.run(fixture_pipeline.build(source_directory=bench.steps, left_script="fail.py"))

    assert result.status == "Failed"
    left = step(result, "left")
    assert (left.status, left.exit_code) == ("Failed", 3)
    assert "exit code 3" in left.error and "boom: the fixture step failed on purpose" in left.error
    assert "working 49" in left.error and "working 10" not in left.error   # the tail, not the whole log
    assert step(result, "join").status == "NotStarted"
    assert "join" not in bench.executions()
    assert result.error == left.error
    info = read_run(bench.tracking_uri, result.run_id)
    assert info.status == "Failed" and "left" in info.error
    assert info.failed_step().name == "left"
    assert info.step("join") is None


def test_a_step_over_its_timeout_is_stopped(bench):
    result = bench.run(fixture_pipeline.build(source_directory=bench.steps, left_script="sleep.py"),
                       step_timeout=1)

    left = step(result, "left")
    assert result.status == "Failed"
    assert left.exit_code is None and "timed out after 1 s" in left.error
    assert step(result, "join").status == "NotStarted"


def test_an_unsupported_step_is_refused_before_anything_runs(bench):
    from azureml.pipeline.steps import CommandStep

    from retrainer.pipelines import PipelineDefinition

    definition = fixture_pipeline.build(source_directory=bench.steps)
    command = CommandStep(name="shell_out", command="echo hi", source_directory=str(bench.steps),
                          compute_target="cpu-cluster")
    mixed = PipelineDefinition(definition.name, (*definition.steps, command), definition.parameters, None)

    with pytest.raises(UnsupportedStepError, match="'shell_out' is a CommandStep"):
        bench.run(mixed)

    assert bench.executions() == []
    assert MlflowClient(tracking_uri=bench.tracking_uri).get_experiment_by_name("fixture") is None


@pytest.mark.parametrize("parameters, message", [
    ({"input_dat": "x"}, "unknown parameter input_dat; this pipeline takes barrier, input_data, tag"),
    ({"input_data": "/no/such/file.csv"}, "input_data: '/no/such/file.csv' is not a local file or folder"),
])
def test_bad_parameters_are_refused_before_anything_runs(bench, parameters, message):
    with pytest.raises(PipelineInputError, match=message):
        bench.run(parameters=parameters)

    assert bench.executions() == []


def test_a_run_created_earlier_is_the_parent(bench):
    client = MlflowClient(tracking_uri=bench.tracking_uri)
    experiment_id = client.create_experiment("fixture")
    created = client.create_run(experiment_id, tags={"retrainer.key": "manual:1"}).info.run_id

    result = bench.run(fixture_pipeline.build(source_directory=bench.steps, log_metrics=True),
                       parent_run_id=created, tags={"retrainer.trigger": "manual"})

    assert result.run_id == created
    info = read_run(bench.tracking_uri, created)
    assert info.status == "Completed"
    assert info.tags["retrainer.key"] == "manual:1" and info.tags["retrainer.trigger"] == "manual"
    names = [s.name for s in info.steps]     # left and right run in parallel: either may start first
    assert names[0] == "split" and sorted(names[1:3]) == ["left", "right"] and names[3] == "join"
    assert info.metrics == result.metrics and "chars" in info.metrics


def test_an_announced_run_records_why_it_never_started(bench):
    client = MlflowClient(tracking_uri=bench.tracking_uri)
    created = client.create_run(client.create_experiment("fixture")).info.run_id

    with pytest.raises(PipelineInputError):
        bench.run(parameters={"input_data": "/no/such/file.csv"}, parent_run_id=created)

    info = read_run(bench.tracking_uri, created)
    assert info.status == "Failed" and "/no/such/file.csv" in info.error
    assert bench.executions() == []


def test_a_relative_state_folder_works_from_the_steps_own_folders(bench, monkeypatch):
    monkeypatch.chdir(bench.root)

    result = run_pipeline(fixture_pipeline.build(source_directory=bench.steps),
                          parameters={"input_data": "input.txt"}, state_dir=Path("relative-state"),
                          tracking_uri=bench.tracking_uri, experiment="fixture")

    assert result.status == "Completed", result.error
    assert (bench.root / "relative-state" / "runs" / result.run_id / "data" / "left_out" / "data.txt").is_file()


def test_find_run_by_tag_matches_keys_with_awkward_characters(bench):
    key = "blob:incoming/o'brien #1?é\\x.csv@0x8DC"
    result = bench.run(tags={"retrainer.key": key})

    assert find_run_by_tag(bench.tracking_uri, "fixture", "retrainer.key", key) == result.run_id
    assert find_run_by_tag(bench.tracking_uri, "fixture", "retrainer.key", key + "x") is None
    assert find_run_by_tag(bench.tracking_uri, "no-such-experiment", "retrainer.key", key) is None
