"""Read an azureml v1 step graph: which steps, in what order, with what arguments.

Order comes from the objects themselves, as Azure ML derives it: a step that consumes a PipelineData runs
after the step that produces it, and `run_after` adds explicit edges. As `Pipeline(workspace, steps)`
does, producers and run_after targets missing from the list are pulled in.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from azureml.data.datapath import DataPath
from azureml.pipeline.core import PipelineData
from azureml.pipeline.core.graph import PipelineParameter, _PipelineIO
from azureml.pipeline.steps import PythonScriptStep


class PipelineDefinitionError(ValueError):
    """The definition cannot be run locally (duplicate step names, a dependency cycle, ...)."""


class UnsupportedStepError(PipelineDefinitionError):
    """A step (or one of its arguments) of a kind the local runner cannot execute."""


# ---------------------------------------------------------------- what a step's arguments can be

@dataclass(frozen=True)
class Parameter:
    """A PipelineParameter used as a plain value (str, int, float, bool)."""
    name: str
    default: Any


@dataclass(frozen=True)
class DataInput:
    """A DataPath, directly or as a PipelineParameter's default, bound for the step to read."""
    parameter: str | None          # the PipelineParameter's name, when the path can be overridden
    datastore: str
    path_on_datastore: str
    mode: str


@dataclass(frozen=True)
class Intermediate:
    """A PipelineData: a folder written by one step and read by the next."""
    name: str
    producer: str


Argument = str | Parameter | DataInput | Intermediate


@dataclass(frozen=True)
class StepNode:
    name: str
    step_type: str
    script_name: str
    source_directory: Path
    arguments: tuple[Argument, ...]
    inputs: tuple[Argument, ...]          # DataInput / Intermediate the step reads
    outputs: tuple[str, ...]              # names of the PipelineData it writes
    output_datastores: Mapping[str, str | None]   # output name -> its datastore (None: the workspace default)
    upstream: frozenset[str]
    allow_reuse: bool
    environment: Any                       # azureml Environment or None


def read_graph(steps: Sequence[Any]) -> list[StepNode]:
    """The steps in a valid execution order. Raises UnsupportedStepError before anything runs when a step
    is not a PythonScriptStep or passes an argument the runner cannot resolve."""
    everything = _with_dependencies(steps)
    names = [step.name for step in everything]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise PipelineDefinitionError(f"step names must be unique to run locally; repeated: {', '.join(duplicates)}")
    nodes = {node.name: node for node in map(_node, everything)}
    return _topological(nodes)


def describe_step(node: StepNode, *, source_digest: str) -> dict[str, Any]:
    """A JSON-able description of the step's definition (for the pipeline version)."""
    return {
        "name": node.name, "type": node.step_type, "script": node.script_name, "source": source_digest,
        "arguments": [describe_argument(a) for a in node.arguments],
        "inputs": [describe_argument(a) for a in node.inputs], "outputs": list(node.outputs),
        "output_datastores": dict(sorted(node.output_datastores.items())),
        "upstream": sorted(node.upstream), "allow_reuse": node.allow_reuse,
        "environment": describe_environment(node.environment),
    }


def describe_argument(argument: Argument) -> Any:
    if isinstance(argument, str):
        return argument
    if isinstance(argument, Parameter):
        return {"parameter": argument.name, "default": _plain(argument.default)}
    if isinstance(argument, DataInput):
        return {"data": argument.parameter, "datastore": argument.datastore, "path": argument.path_on_datastore,
                "mode": argument.mode}
    return {"intermediate": argument.name, "producer": argument.producer}


def describe_parameter(value: Any) -> Any:
    """A PipelineParameter (or its default) as JSON-able data."""
    default = getattr(value, "default_value", value)
    if isinstance(default, DataPath):
        return {"datastore": default._datastore.name, "path": default._path_on_datastore}
    return _plain(default)


def describe_environment(environment: Any) -> Any:
    """The environment spec as sorted JSON text (None when the step has none)."""
    if environment is None:
        return None
    from azureml.core import Environment

    return json.dumps(Environment._serialize_to_dict(environment), sort_keys=True, default=str)


# ---------------------------------------------------------------- internals

def _with_dependencies(steps: Iterable[Any]) -> list[Any]:
    ordered: list[Any] = []
    seen: set[int] = set()
    pending = list(steps)
    while pending:
        step = pending.pop(0)
        if id(step) in seen:
            continue
        seen.add(id(step))
        ordered.append(step)
        pending.extend(getattr(step, "run_after_steps", None) or [])
        pending.extend(producer for producer in (_producer(i) for i in getattr(step, "_inputs", None) or [])
                       if producer is not None)
    return ordered


def _producer(item: Any) -> Any:
    return getattr(item, "_producer", None) if isinstance(item, PipelineData) else None


def _node(step: Any) -> StepNode:
    step_type = type(step).__name__
    name = getattr(step, "name", "?")
    if type(step) is not PythonScriptStep:
        raise UnsupportedStepError(f"step {name!r} is a {step_type}; the local runner runs PythonScriptStep only")
    if step._command is not None or not step._script_name:
        raise UnsupportedStepError(f"step {name!r} runs a command, not a script; the local runner runs scripts only")
    runconfig = step._runconfig
    return StepNode(
        name=name,
        step_type=step_type,
        script_name=step._script_name,
        source_directory=Path(step._source_directory or ".").resolve(),
        arguments=tuple(_argument(name, a) for a in step._arguments),
        inputs=tuple(_argument(name, i) for i in step._inputs),
        outputs=tuple(_output_name(name, o) for o in step._outputs),
        output_datastores={o._name: o._datastore.name if o._datastore is not None else None
                           for o in step._outputs},
        upstream=frozenset(
            [s.name for s in step.run_after_steps]
            + [p.name for p in (_producer(i) for i in step._inputs) if p is not None]),
        allow_reuse=bool(step._allow_reuse),
        environment=getattr(runconfig, "environment", None) if runconfig is not None else None,
    )


def _argument(step: str, value: Any) -> Argument:
    if isinstance(value, (str, int, float, bool)):
        return str(value)
    if isinstance(value, PipelineParameter):
        if isinstance(value.default_value, DataPath):
            raise UnsupportedStepError(
                f"step {step!r}: DataPath parameter {value.name!r} must be bound with DataPathComputeBinding")
        return Parameter(value.name, value.default_value)
    if isinstance(value, PipelineData):
        if value._producer is None:
            raise PipelineDefinitionError(f"step {step!r} reads PipelineData {value._name!r} that no step writes")
        return Intermediate(value._name, value._producer.name)
    if isinstance(value, _PipelineIO):
        binding = value._datapath_compute_binding
        mode = getattr(binding, "_mode", None) or "mount"
        if value._datapath_param is not None and isinstance(value._datapath_param.default_value, DataPath):
            default = value._datapath_param.default_value
            return DataInput(value._datapath_param.name, default._datastore.name, default._path_on_datastore, mode)
        if isinstance(value._datapath, DataPath):
            return DataInput(None, value._datapath._datastore.name, value._datapath._path_on_datastore, mode)
    raise UnsupportedStepError(
        f"step {step!r} passes a {type(value).__name__}; the local runner resolves str/number arguments, "
        "PipelineParameter, DataPath (with DataPathComputeBinding) and PipelineData only")


def _output_name(step: str, value: Any) -> str:
    if isinstance(value, PipelineData):
        return value._name
    raise UnsupportedStepError(f"step {step!r} writes a {type(value).__name__}; the local runner supports "
                               "PipelineData outputs only")


def _topological(nodes: dict[str, StepNode]) -> list[StepNode]:
    ordered: list[StepNode] = []
    done: set[str] = set()
    remaining = dict(nodes)
    while remaining:
        ready = [n for n in remaining.values() if n.upstream <= done]
        if not ready:
            raise PipelineDefinitionError(f"steps depend on each other in a cycle: {', '.join(sorted(remaining))}")
        for node in ready:
            ordered.append(node)
            done.add(node.name)
            del remaining[node.name]
    return ordered


def _plain(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)
