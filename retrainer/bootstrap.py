"""Composition root: settings -> adapters -> handler dependencies, built lazily, once per process.

Triggers call `deps()`; nothing here runs at import, so `import function_app` stays light, and the
heavy SDKs load inside the adapters on first use (an event that is filtered out loads none).
"""
from __future__ import annotations

import threading

from retrainer.settings import AZURE_ML_BACKENDS, Settings, SettingsError

_lock = threading.Lock()
_settings: Settings | None = None
_deps = None


def settings() -> Settings:
    """The app settings of this process (read on first use): all a webhook needs to filter an event."""
    global _settings
    with _lock:
        if _settings is None:
            _settings = Settings.from_env()
        return _settings


def deps():
    """The handlers' dependencies for this process (built on first use)."""
    global _deps
    current = settings()
    with _lock:
        if _deps is None:
            _deps = build(current)
        return _deps


def reset() -> None:
    """Forget the settings and the built dependencies (tests, and a dev host that changed the settings)."""
    global _settings, _deps
    with _lock:
        _settings = _deps = None


def build(settings: Settings):
    from retrainer import pipelines
    from retrainer.adapters.notify import build_notifier
    from retrainer.adapters.table_ledger import TableLedger
    from retrainer.adapters.work_queues import StorageWorkQueues
    from retrainer.handlers import Deps

    blobs = blob_store(settings)
    return Deps(
        settings=settings,
        ledger=TableLedger(_host_storage(settings, "table"), settings.ledger_table),
        queues=StorageWorkQueues(_host_storage(settings, "queue")),
        blobs=blobs,
        backend=ml_backend(settings, blobs),
        notifier=build_notifier(settings),
        contract=pipelines.data_contract(settings.pipeline),
    )


def _host_storage(settings: Settings, service: str):
    """The app's storage account (the ledger's table, the host's work queues): a connection string, or
    (identity-based, as the Functions host allows) the `service` endpoint of its account and the identity."""
    if settings.storage_connection:
        return settings.storage_connection
    if settings.storage_account:
        from azure.identity import DefaultAzureCredential

        return f"https://{settings.storage_account}.{service}.core.windows.net", DefaultAzureCredential()
    raise SettingsError("AzureWebJobsStorage (or AzureWebJobsStorage__accountName) is required: the storage "
                        "account holding the ledger and the work queues")


def blob_store(settings: Settings):
    """The data account's blobs, through the blob trigger's connection (RETRAINER_DATA_STORAGE)."""
    from retrainer.adapters.blob_store import AzureBlobStore

    if settings.data_connection:
        return AzureBlobStore.from_connection_string(settings.data_connection, settings.quarantine_container)
    if settings.data_service_uri:
        return AzureBlobStore.from_service_uri(settings.data_service_uri, settings.quarantine_container)
    raise SettingsError("RETRAINER_DATA_STORAGE is not set: give the data storage account's connection "
                        "string, or RETRAINER_DATA_STORAGE__serviceUri for an identity-based connection")


def ml_backend(settings: Settings, blobs):
    if settings.backend in AZURE_ML_BACKENDS:
        return azure_ml_backend(settings, blobs)
    return local_backend(settings, blobs)


def azure_ml_backend(settings: Settings, blobs=None):
    """The workspace's backend: SDK v1 (RETRAINER_BACKEND=azureml) or v2 (azureml_v2). v2 tells a data file from
    a folder by the blob store; `publish` needs none."""
    if settings.backend == "azureml_v2":
        from retrainer.adapters.azureml_v2 import AzureMLv2Backend

        return AzureMLv2Backend(settings, blobs)
    from retrainer.adapters.azureml_v1 import AzureMLBackend

    return AzureMLBackend(settings)


def local_backend(settings: Settings, blobs):
    from retrainer.adapters.local_ml import LocalMLBackend

    return LocalMLBackend(settings, blobs)
