"""A data file lands in the incoming container: validate it and submit the training pipeline.

The trigger's stream is never read here: the handler reads the blob's properties and a bounded prefix
through its own client.
"""
import azure.functions as func

from retrainer import bootstrap, handlers
from triggers._invoke import log_outcome

bp = func.Blueprint()


@bp.blob_trigger(arg_name="blob", path="%RETRAINER_INCOMING_PATH%", connection="RETRAINER_DATA_STORAGE",
                 source=func.BlobSource.EVENT_GRID)
def blob_ingest(blob: func.InputStream) -> None:
    container, _, name = blob.name.partition("/")
    log_outcome("blob_ingest", handlers.data_arrived(bootstrap.deps(), container, name, trigger="blob"))
