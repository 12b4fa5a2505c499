"""The step environment Azure ML builds (step_scripts/environment.yml), read as the SDK reads it."""
from __future__ import annotations

from pathlib import Path

from azureml.core import Environment
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]

# What the packages the steps need on Azure ML require of the others, from their published metadata
# (Requires-Dist of azureml-mlflow 1.62.0.post6, azureml-defaults 1.62.0 and the
# azureml-dataset-runtime 1.62.0.post1 it brings).
REQUIRED_BY_DEPENDENCIES = [Requirement("mlflow-skinny<=3.15.0"), Requirement("numpy!=1.19.3,<2.3.3"),
                            Requirement("pyarrow<24.0.0,>=23.0.1")]


def pinned() -> dict[str, Version]:
    environment = Environment.from_conda_specification("diabetes-env", str(ROOT / "step_scripts/environment.yml"))
    pins = {}
    for line in environment.python.conda_dependencies.pip_packages:
        requirement = Requirement(line)
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", f"{line}: the step environment pins exact versions"
        pins[requirement.name] = Version(specifier.version)
    return pins


def test_the_step_environment_has_azureml_defaults_for_the_run_context_and_datapath_mounts():
    """Issue 7 item 9: the lab's environment has azureml-defaults; without it a step on Azure ML lacks the
    run context and DataPath mounting (its azureml-dataset-runtime[fuse])."""
    pins = pinned()

    assert pins["azureml-defaults"].release[:2] == pins["azureml-mlflow"].release[:2] == (1, 62)


def test_the_pins_meet_what_the_azureml_packages_require():
    pins = pinned()

    for requirement in REQUIRED_BY_DEPENDENCIES:
        assert requirement.specifier.contains(pins[requirement.name]), f"{requirement.name} {pins[requirement.name]}"
