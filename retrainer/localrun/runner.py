"""Run a pipeline definition on this machine: each step a subprocess in a snapshot of its source folder.

Layout of one run under the state folder (runs/<parent run id>/):
    steps/<step>/        the snapshot of the step's source_directory: the step's working directory, so
                         ./outputs lands here and is logged as the child run's `outputs/` artifacts
    steps/<step>.log     stdout and stderr of the step
    data/<name>/         each PipelineData folder, as the step writes it (the compute's mount)
When the caller gives `store_output`, an executed step's PipelineData folders are then written where Azure ML
puts them: on the output's datastore (None: the workspace default) under `azureml/<step run id>/<output name>/`.
That is Azure's surprise worth imitating: a PipelineData on the datastore of a watched container lands in it.
A reused step gets a child run too (tag `reused_from`, the executed run's metrics, params and
artifacts copied); downstream steps read the earlier run's output folders, nothing executes.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from azureml.data.datapath import DataPath

from retrainer.hashing import IGNORED_DIRS, IGNORED_SUFFIXES, DigestCache
from retrainer.ports import RunStatus

from . import store as run_store
from .graph import DataInput, Intermediate, Parameter, PipelineDefinitionError, StepNode, read_graph
from .reuse import reuse_key

LOG_TAIL_LINES = 20


class PipelineInputError(ValueError):
    """A parameter or data input the run cannot use (unknown name, missing file); nothing ran."""


@dataclass(frozen=True)
class StepResult:
    name: str
    status: str                  # RunStatus: Completed | Failed | NotStarted (an upstream step failed)
    reused: bool
    seconds: float
    metrics: dict[str, Any]
    run_id: str                  # the step's MLflow child run ("" when it never started)
    log_path: Path
    exit_code: int | None
    error: str | None


@dataclass(frozen=True)
class PipelineResult:
    run_id: str
    status: str                  # RunStatus.COMPLETED | RunStatus.FAILED
    steps: list[StepResult]
    metrics: dict[str, Any]
    error: str | None = None


@dataclass
class _Context:
    definition_name: str
    run_dir: Path
    parent_run_id: str
    tracking_uri: str
    step_timeout: float
    store: run_store.RunStore
    digests: DigestCache
    data_inputs: dict[str | None, Path]          # parameter name (None: fixed DataPath) -> local path
    fixed_paths: dict[tuple[str, str], Path]     # (datastore, path) of DataPaths without a parameter
    parameter_values: dict[str, Any]
    store_output: Callable[[str | None, str, Path], None] | None
    outputs: dict[str, dict[str, Path]] = field(default_factory=dict)   # step -> PipelineData -> folder
    lock: threading.Lock = field(default_factory=threading.Lock)


def run_pipeline(definition: Any, *, parameters: Mapping[str, Any], state_dir: Path, tracking_uri: str,
                 experiment: str, tags: Mapping[str, str] = {}, parent_run_id: str | None = None,
                 fetch_data: Callable[[str, str], Path] | None = None,
                 store_output: Callable[[str | None, str, Path], None] | None = None, max_workers: int = 2,
                 step_timeout: float = 3600,
                 on_step: Callable[[StepResult], None] | None = None) -> PipelineResult:
    """Run every step of `definition` (a retrainer.pipelines.PipelineDefinition) to the end.

    Raises UnsupportedStepError / PipelineDefinitionError / PipelineInputError before anything runs;
    a failing step does not raise: the result says Failed and names the step.
    """
    try:
        nodes = read_graph(definition.steps)
        parameter_values = _parameter_values(nodes, definition.parameters, parameters)
        data_inputs, fixed_paths = _resolve_data(nodes, parameter_values, fetch_data)
    except (PipelineDefinitionError, PipelineInputError) as error:
        if parent_run_id is not None:   # a run the caller already announced: record why it never started
            store = run_store.RunStore(tracking_uri)
            store.set_tags(parent_run_id, {run_store.TAG_ERROR: str(error)})
            store.finish(parent_run_id, succeeded=False)
        raise

    state_dir = Path(state_dir).resolve()   # steps run in their own folders: every path must be absolute
    state_dir.mkdir(parents=True, exist_ok=True)
    store = run_store.RunStore(tracking_uri)
    run_id = store.start_parent(experiment, definition.name,
                                {run_store.TAG_PIPELINE: definition.name, **tags}, parent_run_id)
    context = _Context(definition.name, state_dir / "runs" / run_id, run_id, tracking_uri, step_timeout, store,
                       DigestCache(state_dir / "digests.sqlite"), data_inputs, fixed_paths, parameter_values,
                       store_output)
    try:
        results = _schedule(nodes, context, max_workers, on_step)
    except BaseException as error:
        store.set_tags(run_id, {run_store.TAG_ERROR: f"runner error: {error}"})
        store.finish(run_id, succeeded=False)
        raise
    finally:
        context.digests.close()

    failed = next((r for r in results if r.status == RunStatus.FAILED), None)
    metrics: dict[str, Any] = {}
    for result in results:
        metrics.update(result.metrics)
    error = failed.error if failed else None
    if error:
        store.set_tags(run_id, {run_store.TAG_ERROR: error})
    store.finish(run_id, succeeded=failed is None)
    return PipelineResult(run_id, RunStatus.FAILED if failed else RunStatus.COMPLETED, results, metrics, error)


# ---------------------------------------------------------------- inputs, before anything runs

def _parameter_values(nodes: list[StepNode], declared: Mapping[str, Any],
                      overrides: Mapping[str, Any]) -> dict[str, Any]:
    values = {name: getattr(p, "default_value", p) for name, p in declared.items()}
    for node in nodes:
        for argument in (*node.arguments, *node.inputs):
            if isinstance(argument, Parameter):
                values.setdefault(argument.name, argument.default)
            elif isinstance(argument, DataInput) and argument.parameter:
                values.setdefault(argument.parameter, argument)   # its default DataPath
    unknown = sorted(set(overrides) - set(values))
    if unknown:
        raise PipelineInputError(f"unknown parameter {', '.join(unknown)}; this pipeline takes "
                                 f"{', '.join(sorted(values)) or 'no parameters'}")
    return {**values, **overrides}


def _resolve_data(nodes: list[StepNode], values: Mapping[str, Any],
                  fetch_data: Callable[[str, str], Path] | None
                  ) -> tuple[dict[str | None, Path], dict[tuple[str, str], Path]]:
    by_parameter: dict[str | None, Path] = {}
    fixed: dict[tuple[str, str], Path] = {}
    for node in nodes:
        for argument in (*node.arguments, *node.inputs):
            if not isinstance(argument, DataInput):
                continue
            if argument.parameter is None:
                location = (argument.datastore, argument.path_on_datastore)
                if location not in fixed:
                    fixed[location] = _fetch(argument.parameter or node.name, *location, fetch_data)
            elif argument.parameter not in by_parameter:
                by_parameter[argument.parameter] = _local_path(argument, values[argument.parameter], fetch_data)
    return by_parameter, fixed


def _local_path(argument: DataInput, value: Any, fetch_data: Callable[[str, str], Path] | None) -> Path:
    if isinstance(value, DataPath):
        return _fetch(argument.parameter, value._datastore.name, value._path_on_datastore, fetch_data)
    if isinstance(value, DataInput):
        return _fetch(argument.parameter, value.datastore, value.path_on_datastore, fetch_data)
    if isinstance(value, (str, os.PathLike)) and str(value):
        local = Path(value).expanduser()
        if local.exists():
            return local.resolve()
        return _fetch(argument.parameter, argument.datastore, str(value), fetch_data)
    raise PipelineInputError(f"{argument.parameter}: expected a file or folder path, got {value!r}")


def _fetch(label: str | None, datastore: str, path: str,
           fetch_data: Callable[[str, str], Path] | None) -> Path:
    if fetch_data is None:
        raise PipelineInputError(f"{label}: {path!r} is not a local file or folder; give an existing path")
    try:
        return Path(fetch_data(datastore, path)).resolve()
    except (FileNotFoundError, LookupError) as error:
        raise PipelineInputError(f"{label}: {path!r} not found on datastore {datastore!r} ({error})") from None
    except Exception as error:     # e.g. the download ran out of retries: name the last error
        raise PipelineInputError(f"{label}: the download of {path!r} from datastore {datastore!r} failed; "
                                 f"the last attempt: {type(error).__name__}: {error}") from None


# ---------------------------------------------------------------- scheduling

def _schedule(nodes: list[StepNode], context: _Context, max_workers: int,
              on_step: Callable[[StepResult], None] | None) -> list[StepResult]:
    results: dict[str, StepResult] = {}
    pending = {node.name: node for node in nodes}
    running: dict[Future, str] = {}
    failed = False
    with ThreadPoolExecutor(max_workers=max(1, max_workers), thread_name_prefix="step") as pool:
        while pending or running:
            if not failed:
                done = {name for name, r in results.items() if r.status == RunStatus.COMPLETED}
                for node in [n for n in pending.values() if n.upstream <= done]:
                    running[pool.submit(_run_step, node, context)] = node.name
                    del pending[node.name]
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                result = future.result()
                del running[future]
                results[result.name] = result
                failed = failed or result.status == RunStatus.FAILED
                if on_step is not None:
                    on_step(result)
    first_failure = next((r.name for r in results.values() if r.status == RunStatus.FAILED), None)
    for node in pending.values():
        results[node.name] = StepResult(node.name, RunStatus.NOT_STARTED, False, 0.0, {}, "",
                                        context.run_dir / "steps" / f"{node.name}.log", None,
                                        f"not run: step {first_failure!r} failed")
    return [results[node.name] for node in nodes]


# ---------------------------------------------------------------- one step

def _run_step(node: StepNode, context: _Context) -> StepResult:
    """Never raises: a runner-side error (disk full, store unreachable) fails the step like a crash."""
    started = time.monotonic()
    log_path = context.run_dir / "steps" / f"{node.name}.log"
    child: list[str] = []
    try:
        return _reuse_or_execute(node, context, started, log_path, child)
    except Exception as error:   # noqa: BLE001 - reported as the step's failure, with its type
        message = f"step {node.name!r} could not run: {type(error).__name__}: {error}"
        if child:
            context.store.set_tags(child[0], {run_store.TAG_ERROR: message})
            context.store.finish(child[0], succeeded=False)
        return StepResult(node.name, RunStatus.FAILED, False, time.monotonic() - started, {},
                          child[0] if child else "", log_path, None, message)


def _reuse_or_execute(node: StepNode, context: _Context, started: float, log_path: Path,
                      child: list[str]) -> StepResult:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command, key_arguments, input_digests, outputs = _resolve_arguments(node, context)
    key = reuse_key(node, key_arguments, input_digests, context.digests)

    earlier = context.store.find_reusable(key) if node.allow_reuse else None
    # Only executed step runs carry the reuse key: they are the index (reuse.py).
    tags = ({run_store.TAG_REUSED_FROM: earlier.run_id} if earlier is not None
            else {run_store.TAG_REUSE_KEY: key})
    tags[run_store.TAG_LOG] = str(log_path)
    child_id, experiment_id = context.store.start_child(context.parent_run_id, node.name, tags)
    child.append(child_id)

    if earlier is not None:
        log_path.write_text(f"step {node.name!r} reused: same reuse key as step run {earlier.run_id}; "
                            "nothing executed\n")
        metrics = context.store.copy_results(earlier.run_id, child_id)
        _log_log(context, child_id, log_path)
        with context.lock:
            context.outputs[node.name] = earlier.outputs
        context.store.finish(child_id, succeeded=True)
        return StepResult(node.name, RunStatus.COMPLETED, True, time.monotonic() - started, metrics, child_id,
                          log_path, None, None)

    exit_code, error = _execute(node, command, child_id, experiment_id, log_path, context)
    workdir = context.run_dir / "steps" / node.name
    context.store.log_folder(child_id, workdir / "outputs", "outputs")
    _log_log(context, child_id, log_path)
    metrics = context.store.metrics(child_id)
    if error is None and context.store_output is not None:
        for name, folder in outputs.items():
            context.store_output(node.output_datastores.get(name), output_path_on_datastore(child_id, name), folder)
    if error is None:
        context.store.set_tags(child_id, {run_store.TAG_OUTPUTS: run_store.tag_json(
            {name: str(folder) for name, folder in outputs.items()})})
        with context.lock:
            context.outputs[node.name] = outputs
    context.store.finish(child_id, succeeded=error is None)
    return StepResult(node.name, RunStatus.COMPLETED if error is None else RunStatus.FAILED, False,
                      time.monotonic() - started, metrics, child_id, log_path, exit_code, error)


def _resolve_arguments(node: StepNode, context: _Context
                       ) -> tuple[list[str], list[Any], list[str], dict[str, Path]]:
    """(command-line arguments, their reuse-key form, content digests of the inputs, output folders)."""
    outputs = {name: context.run_dir / "data" / name for name in node.outputs}

    def local(argument: Any) -> Path:
        if isinstance(argument, DataInput):
            if argument.parameter is None:
                return context.fixed_paths[(argument.datastore, argument.path_on_datastore)]
            return context.data_inputs[argument.parameter]
        if argument.name in outputs:
            return outputs[argument.name]
        with context.lock:
            return context.outputs[argument.producer][argument.name]

    command: list[str] = []
    key_form: list[Any] = []
    for argument in node.arguments:
        if isinstance(argument, str):
            command.append(argument)
            key_form.append(argument)
        elif isinstance(argument, Parameter):
            value = context.parameter_values[argument.name]
            command.append(str(value))
            key_form.append({"parameter": argument.name, "value": str(value)})
        elif isinstance(argument, Intermediate) and argument.name in outputs:
            command.append(str(outputs[argument.name]))
            key_form.append({"output": argument.name})
        else:
            path = local(argument)
            command.append(str(path))
            key_form.append({"input": context.digests.tree(path)})
    input_digests = [context.digests.tree(local(i)) for i in node.inputs
                     if not (isinstance(i, Intermediate) and i.name in outputs)]
    for folder in outputs.values():
        folder.mkdir(parents=True, exist_ok=True)
    return command, key_form, input_digests, outputs


def output_path_on_datastore(step_run_id: str, output_name: str) -> str:
    """Where Azure ML writes a step's PipelineData on its datastore: `azureml/<step run id>/<output name>/`
    (a step's log gives its output as `wasbs://<container>@<account>/azureml/<run id>/output_test`,
    Azure/AML-Kubernetes#23; the datastore is PipelineData's `datastore`, "if not specified, the default
    datastore is used":
    https://learn.microsoft.com/python/api/azureml-pipeline-core/azureml.pipeline.core.pipelinedata)."""
    return f"azureml/{step_run_id}/{output_name}"


def _execute(node: StepNode, arguments: list[str], child_id: str, experiment_id: str, log_path: Path,
             context: _Context) -> tuple[int | None, str | None]:
    """Run the script in a fresh snapshot of its source folder; (exit code, error or None)."""
    workdir = context.run_dir / "steps" / node.name
    shutil.copytree(node.source_directory, workdir,
                    ignore=lambda _dir, names: [n for n in names if n in IGNORED_DIRS or n.endswith(IGNORED_SUFFIXES)])
    (workdir / "outputs").mkdir(exist_ok=True)
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_EXPERIMENT_")}
    env.update(MLFLOW_TRACKING_URI=context.tracking_uri, MLFLOW_RUN_ID=child_id,
               MLFLOW_EXPERIMENT_ID=experiment_id, RETRAINER_RUN_ID=context.parent_run_id,
               RETRAINER_STEP_NAME=node.name, RETRAINER_PIPELINE=context.definition_name, PYTHONUNBUFFERED="1")
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, node.script_name, *arguments], cwd=workdir, env=env,
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            exit_code = process.wait(timeout=context.step_timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return None, (f"step {node.name!r} timed out after {context.step_timeout:g} s and was stopped; "
                          f"log: {log_path}")
    if exit_code == 0:
        return 0, None
    return exit_code, (f"step {node.name!r} failed with exit code {exit_code}; last lines of {log_path}:\n"
                       f"{_tail(log_path)}")


def _log_log(context: _Context, run_id: str, log_path: Path) -> None:
    context.store.client.log_artifact(run_id, str(log_path), run_store.LOG_ARTIFACT_DIR)


def _tail(path: Path) -> str:
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        handle.seek(max(0, handle.tell() - 16384))
        lines = handle.read().decode("utf-8", "replace").splitlines()
    return "\n".join(lines[-LOG_TAIL_LINES:])
