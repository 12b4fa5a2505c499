"""Run an azureml v1 pipeline definition on this machine, with content-aware step reuse and MLflow as
the run store. Imports azureml and mlflow: import it only where a local run is wanted.

The names below load on first use (PEP 562), so `retrainer.localrun.store` (mlflow only: the local backend's
submit path) does not pull in the runner and azureml.pipeline.steps.
"""
import importlib

_EXPORTS = {"run_pipeline": "runner", "PipelineResult": "runner", "StepResult": "runner",
            "PipelineInputError": "runner", "UnsupportedStepError": "graph", "PipelineDefinitionError": "graph"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
