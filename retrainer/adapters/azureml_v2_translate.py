"""Translate a v1 pipeline definition (pipeline_defs/, written with the azureml v1 classes) into an Azure ML
SDK v2 pipeline component, so the same definition runs as a v2 pipeline job.

The step graph is the one the local runner reads (`retrainer.localrun.graph`); each step becomes one anonymous
`command` component:
- code = the step's source directory, command = `python <script> <arguments>`;
- a PipelineParameter becomes a pipeline input (string / integer / number / boolean from its default, a DataPath
  default as uri_file or uri_folder) bound into the step as `${{parent.inputs.<name>}}`;
- a fixed DataPath becomes a step input on `azureml://datastores/<datastore>/paths/<path>`;
- a PipelineData becomes a named output of its producer, bound into its consumers as
  `${{parent.jobs.<producer>.outputs.<name>}}`, written where v1 writes it: under `azureml/<job>/<output>/` on
  its datastore, or where v2 puts outputs by default (the workspace's default datastore, same layout) when it
  names none;
- the conda spec and base image of the step's environment become an inline v2 environment;
- allow_reuse becomes `is_deterministic`. As in v1, a reused step is keyed on its inputs' paths, not their
  contents: a definition that passes a data fingerprint parameter (e.g. `input_data_version`) makes new data
  under an old path a new step run in both SDKs.

v2 pipelines order steps by data alone (no `run_after`, no StepSequence: Azure/azure-cli#26739), so a step that
runs after another without reading its output cannot be expressed: like any construct without a v2 form, it fails
here, naming the step and the construct, before anything is sent.

Sources (azure-ai-ml 1.35.2): `entities/_component/pipeline_component.py`, `entities/_component/command_component.py`
(`is_deterministic`), `entities/_inputs_outputs/input.py` (modes ro_mount, download, direct); v1 input modes from
`azureml/data/datapath.py` (DataPathComputeBinding mount / download / direct).
azure-ai-ml is imported inside functions. This module is for publishing (it reads the definition, which needs
azureml-pipeline-steps); what a submission needs at run time lives in retrainer.adapters.azureml_v2.
"""
from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Mapping

from retrainer.localrun.graph import (DataInput, Intermediate, Parameter, PipelineDefinitionError, StepNode,
                                      UnsupportedStepError)
from retrainer.adapters.azureml_v2 import DATA_DEFAULT_TAG, URI_FILE, URI_FOLDER, datastore_uri, path_type
from retrainer.pipelines import PipelineDefinition

# azure-ai-ml validates input and output names against this (entities/_inputs_outputs/utils.py, IOConstants)
_IO_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_INPUT_MODES = {"mount": "ro_mount", "download": "download", "direct": "direct"}
_PRIMITIVE_TYPES = ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"))


class UntranslatableStepError(PipelineDefinitionError):
    """A step, or one of its arguments, has no SDK v2 form; the message names the step and the construct."""


@dataclass(frozen=True)
class DataParameter:
    """A pipeline input that is a path on a datastore (a v1 DataPath PipelineParameter)."""
    datastore: str
    path: str
    type: str           # URI_FILE | URI_FOLDER


def translate(definition: PipelineDefinition, version: str) -> Any:
    """The definition as a v2 pipeline component (azure.ai.ml.entities.PipelineComponent) named after it, with
    `version` (its content hash). A data input has no default in a v2 component spec, so each DataPath
    parameter's default is kept in a tag (`DATA_DEFAULT_TAG` + name = its azureml:// address)."""
    from azure.ai.ml import Input
    from azure.ai.ml.entities import PipelineComponent

    from retrainer.localrun.graph import read_graph

    try:
        nodes = read_graph(definition.steps)
    except UnsupportedStepError as error:
        raise UntranslatableStepError(f"cannot translate to SDK v2: {error}") from None
    defaults = {name: _parameter_default(name, value) for name, value in definition.parameters.items()}
    producers = {output: node.name for node in nodes for output in node.outputs}
    stores = _intermediate_datastores(definition.steps)
    jobs = {node.name: _step_job(node, defaults, producers, stores) for node in nodes}
    inputs = {name: _pipeline_input(Input, value) for name, value in sorted(defaults.items())}
    data_defaults = {DATA_DEFAULT_TAG + name: datastore_uri(value.datastore, value.path)
                     for name, value in sorted(defaults.items()) if isinstance(value, DataParameter)}
    return PipelineComponent(name=definition.name, version=version, display_name=definition.name,
                             description=f"{definition.name} (retrainer, version {version})",
                             inputs=inputs, jobs=jobs, tags=data_defaults)


# ---------------------------------------------------------------- parameters

def _parameter_default(name: str, parameter: Any) -> Any:
    from azureml.data.datapath import DataPath

    _check_io_name(None, name, "pipeline parameter")
    default = getattr(parameter, "default_value", parameter)
    if isinstance(default, DataPath):
        path = default._path_on_datastore
        return DataParameter(default._datastore.name, path, path_type(path))
    if _primitive_type(default) is None:
        raise UntranslatableStepError(f"pipeline parameter {name!r} defaults to a {type(default).__name__}; SDK v2 "
                                      "pipeline inputs are strings, numbers, booleans or datastore paths")
    return default


def _pipeline_input(input_class: Any, default: Any) -> Any:
    if isinstance(default, DataParameter):
        # A data input's default is not part of a component's spec: submit always binds every data input.
        return input_class(type=default.type)
    return input_class(type=_primitive_type(default), default=default)


def _primitive_type(value: Any) -> str | None:
    return next((name for kind, name in _PRIMITIVE_TYPES if isinstance(value, kind)), None)


# ---------------------------------------------------------------- steps

def _intermediate_datastores(steps: Any) -> dict[str, str]:
    """PipelineData name -> the datastore it names (none: the workspace default), from every listed step's
    inputs and outputs (a producer left out of the list is seen through its consumer's input)."""
    from azureml.pipeline.core import PipelineData

    return {item._name: item.datastore.name for step in steps
            for item in [*(getattr(step, "_outputs", None) or []), *(getattr(step, "_inputs", None) or [])]
            if isinstance(item, PipelineData) and item.datastore is not None}


def _step_job(node: StepNode, defaults: Mapping[str, Any], producers: Mapping[str, str],
              stores: Mapping[str, str]) -> Any:
    """One node of the pipeline: an anonymous command component called with its bindings."""
    from azure.ai.ml import Input, Output
    from azure.ai.ml.entities import CommandComponent

    inputs: dict[str, Any] = {}
    bindings: dict[str, Any] = {}

    def bind(argument: DataInput | Intermediate | Parameter, position: int) -> str:
        if isinstance(argument, Parameter):
            name = argument.name
            if name not in defaults:
                raise UntranslatableStepError(f"step {node.name!r} uses PipelineParameter {name!r}, which the "
                                              "definition does not return among its parameters")
            inputs[name] = Input(type=_primitive_type(defaults[name]) or "string")
            bindings[name] = f"${{{{parent.inputs.{name}}}}}"
        elif isinstance(argument, Intermediate):
            name = argument.name
            inputs[name] = Input(type=URI_FOLDER, mode="ro_mount")
            bindings[name] = f"${{{{parent.jobs.{producers[name]}.outputs.{name}}}}}"
        else:
            mode = _INPUT_MODES.get(argument.mode)
            if mode is None:
                raise UntranslatableStepError(f"step {node.name!r} binds a DataPath with mode {argument.mode!r}; "
                                              f"SDK v2 inputs take {', '.join(_INPUT_MODES)}")
            if argument.parameter is not None:
                name = argument.parameter
                default = defaults.get(name)
                kind = default.type if isinstance(default, DataParameter) else path_type(argument.path_on_datastore)
                bindings[name] = f"${{{{parent.inputs.{name}}}}}"
            else:
                name = f"data_{position}"
                kind = path_type(argument.path_on_datastore)
                bindings[name] = Input(type=kind, path=datastore_uri(argument.datastore, argument.path_on_datastore),
                                       mode=mode)
            inputs[name] = Input(type=kind, mode=mode)
        _check_io_name(node, name, "input")
        return f"${{{{inputs.{name}}}}}"

    words = ["python", shlex.quote(node.script_name)]
    for position, argument in enumerate(node.arguments):
        if isinstance(argument, str):
            words.append(shlex.quote(argument))
        elif isinstance(argument, Intermediate) and argument.producer == node.name:
            words.append(f"${{{{outputs.{argument.name}}}}}")
        else:
            words.append(bind(argument, position))
    for position, argument in enumerate(node.inputs, start=len(node.arguments)):
        if _input_name(argument) not in inputs:
            bind(argument, position)     # read by the script without being an argument: still mounted
    _check_order(node, producers)

    outputs = {}
    for name in node.outputs:
        _check_io_name(node, name, "output")
        outputs[name] = Output(type=URI_FOLDER)
    environment, variables = _environment(node)
    component = CommandComponent(display_name=node.name, code=str(node.source_directory), command=" ".join(words),
                                 environment=environment, inputs=inputs, outputs=outputs,
                                 is_deterministic=node.allow_reuse)
    job = component(**bindings)
    job.display_name = node.name              # how get_run tells the pipeline's child jobs apart
    for name in node.outputs:
        if name in stores:
            # ${{name}}: the step job's name, ${{output_name}}: the output's; v2's default layout on that datastore
            job.outputs[name].path = (f"azureml://datastores/{stores[name]}/paths/azureml/"
                                      "${{name}}/${{output_name}}/")
    job.environment_variables = variables     # v2 sets them on the node, v1 on the Environment
    return job


def _input_name(argument: Any) -> str | None:
    if isinstance(argument, (Parameter, Intermediate)):
        return argument.name
    if isinstance(argument, DataInput):
        return argument.parameter
    return None


def _check_order(node: StepNode, producers: Mapping[str, str]) -> None:
    fed_by = {producers[i.name] for i in node.inputs if isinstance(i, Intermediate)}
    if node.upstream - fed_by:
        other = min(node.upstream - fed_by)
        raise UntranslatableStepError(
            f"step {node.name!r} runs after {other!r} without reading its output (run_after): SDK v2 pipelines "
            f"order steps by their data only; pass a PipelineData from {other!r} to {node.name!r} instead")


def _check_io_name(node: StepNode | None, name: str, what: str) -> None:
    if not _IO_NAME.match(name):
        where = f"step {node.name!r}: " if node else ""
        raise UntranslatableStepError(f"{where}{what} name {name!r} is not a valid SDK v2 input/output name "
                                      "(letters, digits and underscores, not starting with a digit)")


def _environment(node: StepNode) -> tuple[Any, dict[str, str]]:
    """The step's v1 Environment as an inline v2 Environment (base image + conda spec) and its variables."""
    from azure.ai.ml.entities import Environment

    v1 = node.environment
    if v1 is None:
        raise UntranslatableStepError(f"step {node.name!r} has no environment; an SDK v2 command component needs "
                                      "one: give the step a runconfig with an Environment")
    docker = v1.docker
    if docker.base_dockerfile or docker.build_context:
        raise UntranslatableStepError(f"step {node.name!r}: environment {v1.name!r} is built from a Dockerfile; "
                                      "the translator supports a base image with a conda specification")
    conda = None
    if not v1.python.user_managed_dependencies:
        # plain JSON data, not the ruamel mapping CondaDependencies keeps
        conda = json.loads(json.dumps(v1.python.conda_dependencies._conda_dependencies))
    environment = Environment(image=docker.base_image, conda_file=conda)
    return environment, dict(v1.environment_variables or {})
