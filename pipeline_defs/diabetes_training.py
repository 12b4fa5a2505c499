"""The lab's diabetes training pipeline: prep (clean + scale) -> train (fit, evaluate, save the model).

Written with the real azureml v1 classes so the same definition is published to Azure ML and run by
`retrainer.localrun`. Importing this module is light (validation reads DATA_CONTRACT); azureml is
imported inside `build`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

# The data the pipeline can train on, declared once: the app checks a landed file's first rows against it
# before submitting (retrainer.validation), and prep checks every row (step_scripts/data_contract.py).
# Empty cells are missing values, which prep drops. Bounds are wide: they catch a wrong file, not outliers.
DATA_CONTRACT: dict[str, dict[str, Any]] = {
    "Pregnancies": {"type": "integer", "min": 0, "max": 30},
    "PlasmaGlucose": {"type": "number", "min": 0, "max": 600},
    "DiastolicBloodPressure": {"type": "number", "min": 0, "max": 300},
    "TricepsThickness": {"type": "number", "min": 0, "max": 200},
    "SerumInsulin": {"type": "number", "min": 0, "max": 2000},
    "BMI": {"type": "number", "min": 0, "max": 150},
    "DiabetesPedigree": {"type": "number", "min": 0, "max": 10},
    "Age": {"type": "integer", "min": 0, "max": 130},
    "Diabetic": {"type": "integer", "values": [0, 1]},     # the label: its two classes
}

SOURCE_DIRECTORY = Path(__file__).resolve().parents[1] / "step_scripts"
ENVIRONMENT_FILE = "environment.yml"   # the step environment spec, next to the scripts
DEFAULT_DATA_PATH = "diabetes.csv"      # path on the datastore when no input_data is given
UNVERSIONED = "unversioned"             # input_data_version when none is given (a run by hand)


def build(datastore: Any, compute_target: str, *, intermediate_datastore: Any = None,
          source_directory: Path = SOURCE_DIRECTORY) -> tuple[list[Any], dict[str, Any]]:
    """The steps and the pipeline parameters. `datastore` holds the training data; the intermediate
    `prepped_data` goes to `intermediate_datastore` (None: the workspace's default datastore), never to the
    watched one, whose every new blob starts a training. `source_directory` defaults to step_scripts/."""
    import json

    from azureml.core import Environment
    from azureml.core.runconfig import RunConfiguration
    from azureml.data.datapath import DataPath, DataPathComputeBinding
    from azureml.pipeline.core import PipelineData, PipelineParameter
    from azureml.pipeline.steps import PythonScriptStep

    source_directory = Path(source_directory)
    runconfig = RunConfiguration()
    runconfig.environment = Environment.from_conda_specification(
        "diabetes-env", str(source_directory / ENVIRONMENT_FILE))

    input_data = PipelineParameter(name="input_data",
                                   default_value=DataPath(datastore=datastore, path_on_datastore=DEFAULT_DATA_PATH))
    input_binding = (input_data, DataPathComputeBinding(mode="mount"))
    # Azure ML reuses a step whose script, arguments and parameter values are unchanged: it cannot see the data
    # behind a DataPath change. The data's fingerprint as an argument makes "unchanged" mean "same data".
    input_data_version = PipelineParameter(name="input_data_version", default_value=UNVERSIONED)
    prepped_data = PipelineData("prepped_data", datastore=intermediate_datastore)

    prep = PythonScriptStep(
        name="prep", script_name="prep_diabetes.py", source_directory=str(source_directory),
        arguments=["--input-data", input_binding, "--input-data-version", input_data_version,
                   "--data-contract", json.dumps(DATA_CONTRACT, sort_keys=True), "--prepped-data", prepped_data],
        inputs=[input_binding], outputs=[prepped_data],
        compute_target=compute_target, runconfig=runconfig, allow_reuse=True)
    train = PythonScriptStep(
        name="train", script_name="train_diabetes.py", source_directory=str(source_directory),
        arguments=["--training-data", prepped_data],
        inputs=[prepped_data],
        compute_target=compute_target, runconfig=runconfig, allow_reuse=True)
    return [prep, train], {"input_data": input_data, "input_data_version": input_data_version}
