"""Run an azureml v1 pipeline definition on this machine, with content-aware step reuse and MLflow as
the run store. Imports azureml and mlflow: import it only where a local run is wanted."""
from .graph import PipelineDefinitionError, UnsupportedStepError
from .runner import PipelineInputError, PipelineResult, StepResult, run_pipeline

__all__ = ["run_pipeline", "PipelineResult", "StepResult", "UnsupportedStepError", "PipelineDefinitionError",
           "PipelineInputError"]
