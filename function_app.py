"""The Azure Functions app: registers the blueprints in triggers/, nothing else.

Importing it stays light: azureml, mlflow, sklearn and pandas load only when a function needs them.
"""
import azure.functions as func

from triggers import blob_ingest, http_api, ml_events, reconcile, scheduled_retrain

app = func.FunctionApp()
for module in (blob_ingest, scheduled_retrain, ml_events, reconcile, http_api):
    app.register_functions(module.bp)
