"""The ingest benchmark's pipeline: one trivial step that counts the rows of the new file.

It exercises everything around a pipeline (submission, a run worker, a step subprocess, the run's event,
the gate) while the step itself costs next to nothing, so bench/ingest.py measures the plumbing.
Importing this module is light (validation reads DATA_CONTRACT); azureml is imported inside `build`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

DATA_CONTRACT: dict[str, dict[str, Any]] = {"file": {"type": "text"}, "row": {"type": "integer", "min": 0},
                                             "value": {"type": "number"}}


SOURCE_DIRECTORY = Path(__file__).resolve().parents[1] / "bench" / "trivial_step"
DEFAULT_DATA_PATH = "bench.csv"      # path on the datastore when no input_data is given


def build(datastore: Any, compute_target: str, *, intermediate_datastore: Any = None,
          source_directory: Path = SOURCE_DIRECTORY) -> tuple[list[Any], dict[str, Any]]:
    """The step and the pipeline parameters (every definition takes `input_data` and its fingerprint
    `input_data_version`; this one has no intermediate to place). `source_directory` defaults to
    bench/trivial_step/."""
    from azureml.data.datapath import DataPath, DataPathComputeBinding
    from azureml.pipeline.core import PipelineParameter
    from azureml.pipeline.steps import PythonScriptStep

    input_data = PipelineParameter(name="input_data",
                                   default_value=DataPath(datastore=datastore, path_on_datastore=DEFAULT_DATA_PATH))
    input_binding = (input_data, DataPathComputeBinding(mode="mount"))
    input_data_version = PipelineParameter(name="input_data_version", default_value="unversioned")
    count = PythonScriptStep(
        name="count", script_name="count_rows.py", source_directory=str(source_directory),
        arguments=["--input-data", input_binding, "--input-data-version", input_data_version],
        inputs=[input_binding], compute_target=compute_target, allow_reuse=True)
    return [count], {"input_data": input_data, "input_data_version": input_data_version}
