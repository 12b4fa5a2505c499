"""What a cold instance imports for its first BlobCreated: `import function_app`, then what the first
invocations load (blob_events, then blob_ingest): the intake, the composition root's adapters (ledger, blobs,
notifications, identity) and the Azure ML SDK for the endpoint look-up and the submission. `--build` adds what
the submitting invocation imported before the functions only looked the pipeline up: the pipeline-building SDK
(the version hash then also imported retrainer.localrun, whose package imports mlflow, which requirements.txt
never held: on Azure that invocation failed).

Run it in a fresh interpreter over the deployment package alone (`make package`), site disabled:
  PYTHONPATH=build/package/app:build/package/app/.python_packages/lib/site-packages \\
      python3.11 -S bench/first_blob_imports.py
Prints the two times; times the whole process from outside too (/usr/bin/time) when comparing packages.
`--v2`: the first invocation with RETRAINER_BACKEND=azureml_v2 (azure-ai-ml in place of the SDK v1 modules).
"""
from __future__ import annotations

import importlib
import sys
import time

FIRST_INVOCATION = ("retrainer.intake", "retrainer.bootstrap", "retrainer.handlers", "retrainer.pipelines",
                    "retrainer.adapters.table_ledger", "retrainer.adapters.blob_store", "retrainer.adapters.notify",
                    "retrainer.adapters.azureml_v1", "azure.identity", "azure.eventgrid", "azureml.core",
                    "azureml.core.authentication", "azureml.pipeline.core", "azureml.data.datapath",
                    "pipeline_defs.diabetes_training")
BUILDING = ("azureml.pipeline.steps", "retrainer.hashing")
# RETRAINER_BACKEND=azureml_v2: the same invocation through azure-ai-ml instead of the SDK v1 modules
SDK_V1 = ("retrainer.adapters.azureml_v1", "azureml.core", "azureml.core.authentication", "azureml.pipeline.core",
          "azureml.data.datapath")
SDK_V2 = ("retrainer.adapters.azureml_v2", "azure.ai.ml", "azure.ai.ml.entities", "azure.core.rest")


def main() -> None:
    start = time.perf_counter()
    importlib.import_module("function_app")
    app = time.perf_counter()
    first = FIRST_INVOCATION
    if "--v2" in sys.argv:
        first = tuple(m for m in FIRST_INVOCATION if m not in SDK_V1) + SDK_V2
    for module in first + (BUILDING if "--build" in sys.argv else ()):
        importlib.import_module(module)
    done = time.perf_counter()
    print(f"import function_app {1000 * (app - start):7.0f} ms; first BlobCreated's imports "
          f"{1000 * (done - app):7.0f} ms; total {1000 * (done - start):7.0f} ms; {len(sys.modules)} modules")


if __name__ == "__main__":
    main()
