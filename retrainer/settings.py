"""Typed app settings, read from the environment in one place (Functions app settings land there).

A missing or invalid setting is a `SettingsError` that names it. Secrets are read here but never
appear in `Settings.public()` (the health endpoint) nor in `repr`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

LOCAL_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
AZURE_ML_BACKENDS = ("azureml", "azureml_v2")   # SDK v1 (azureml-core), SDK v2 (azure-ai-ml)


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names it and says what is expected."""


def _secret():
    return field(default=None, repr=False, metadata={"secret": True})


def _url():
    """A URL whose path or query may carry a token (webhook URLs often do): shown as its origin only."""
    return field(default=None, metadata={"url": True})


@dataclass(frozen=True)
class Settings:
    # where the work runs
    backend: str = "local"                           # RETRAINER_BACKEND: "azureml" (SDK v1) | "azureml_v2" | "local"
    # storage
    storage_connection: str = field(default="", repr=False, metadata={"secret": True})  # AzureWebJobsStorage
    storage_account: str = ""                        # AzureWebJobsStorage__accountName (identity-based)
    data_connection: str = field(default="", repr=False, metadata={"secret": True})  # RETRAINER_DATA_STORAGE
    data_service_uri: str | None = _url()            # RETRAINER_DATA_STORAGE__serviceUri (identity-based)
    incoming_path: str = "incoming/{name}"           # RETRAINER_INCOMING_PATH (the watched container)
    dataset_prefix: str = ""                         # RETRAINER_DATASET_PREFIX: the timer's dataset folder
    quarantine_container: str = "quarantine"         # RETRAINER_QUARANTINE_CONTAINER
    ledger_table: str = "retrainerledger"            # RETRAINER_LEDGER_TABLE
    max_file_bytes: int = 1 << 30                    # RETRAINER_MAX_FILE_BYTES
    # pipeline
    pipeline: str = "diabetes_training"              # RETRAINER_PIPELINE (module in pipeline_defs/)
    pipeline_endpoint: str = "diabetes-training"     # RETRAINER_PIPELINE_ENDPOINT
    experiment: str = "diabetes-retraining"          # RETRAINER_EXPERIMENT
    datastore: str = "training_data"                 # RETRAINER_DATASTORE (maps to the incoming container)
    intermediate_datastore: str = ""                 # RETRAINER_INTERMEDIATE_DATASTORE ("": the workspace default)
    compute_target: str = "cpu-cluster"              # RETRAINER_COMPUTE_TARGET
    # model and gate
    model_name: str = "diabetes_model"               # RETRAINER_MODEL_NAME
    model_step: str = "train"                        # RETRAINER_MODEL_STEP: the step that saved the model
    model_path: str = "outputs/diabetes_model.pkl"   # RETRAINER_MODEL_PATH: relative to that step's run
    primary_metric: str = "AUC"                      # RETRAINER_PRIMARY_METRIC
    metric_floor: float = 0.8                        # RETRAINER_METRIC_FLOOR
    min_delta: float = 0.0                           # RETRAINER_MIN_DELTA
    # schedules (NCRONTAB, seconds first)
    retrain_schedule: str = "0 0 2 * * *"            # RETRAINER_SCHEDULE
    reconcile_schedule: str = "0 */15 * * * *"       # RETRAINER_RECONCILE_SCHEDULE
    run_deadline_minutes: int = 180                  # RETRAINER_RUN_DEADLINE_MINUTES
    claim_lease_minutes: int = 10                    # RETRAINER_CLAIM_LEASE_MINUTES
    # Azure ML workspace (its Event Grid topic is derived from these)
    aml_subscription_id: str = LOCAL_SUBSCRIPTION    # RETRAINER_AML_SUBSCRIPTION_ID
    aml_resource_group: str = "local"                # RETRAINER_AML_RESOURCE_GROUP
    aml_workspace: str = "local"                     # RETRAINER_AML_WORKSPACE
    aml_auth: str = "msi"                            # RETRAINER_AML_AUTH: msi | default | service_principal | cli
    aml_tenant_id: str | None = None                 # RETRAINER_AML_TENANT_ID
    aml_client_id: str | None = None                 # RETRAINER_AML_CLIENT_ID (also the user-assigned MSI)
    aml_client_secret: str | None = _secret()        # RETRAINER_AML_CLIENT_SECRET
    # notifications
    notify_topic_endpoint: str | None = _url()       # RETRAINER_NOTIFY_TOPIC_ENDPOINT
    notify_topic_key: str | None = _secret()         # RETRAINER_NOTIFY_TOPIC_KEY
    notify_webhook_url: str | None = _url()          # RETRAINER_NOTIFY_WEBHOOK_URL
    notify_webhook_key: str | None = _secret()       # RETRAINER_NOTIFY_WEBHOOK_KEY (x-retrainer-key header)
    # local backend
    state_dir: Path = Path(".state")                 # RETRAINER_STATE_DIR
    local_events_endpoint: str | None = _url()       # RETRAINER_LOCAL_EVENTS_ENDPOINT
    local_events_key: str | None = _secret()         # RETRAINER_LOCAL_EVENTS_KEY
    local_max_runs: int = 2                          # RETRAINER_LOCAL_MAX_RUNS: local runs at once
    local_worker_lease_seconds: int = 60             # RETRAINER_LOCAL_WORKER_LEASE_SECONDS
    mlflow_uri: str | None = _url()                  # RETRAINER_MLFLOW_TRACKING_URI (default: SQLite in state_dir)

    @property
    def workspace_topic(self) -> str:
        """The Event Grid topic of the workspace: only its events are acted on."""
        return (f"/subscriptions/{self.aml_subscription_id}/resourceGroups/{self.aml_resource_group}"
                f"/providers/Microsoft.MachineLearningServices/workspaces/{self.aml_workspace}")

    @property
    def incoming_container(self) -> str:
        return self.incoming_path.split("/", 1)[0]

    @property
    def mlflow_tracking_uri(self) -> str:
        """The local backend's MLflow tracking and registry store: RETRAINER_MLFLOW_TRACKING_URI (e.g. an
        MLflow server), else SQLite in the state folder."""
        return self.mlflow_uri or f"sqlite:///{(self.state_dir / 'mlflow.db').resolve()}"

    def public(self) -> dict[str, object]:
        """Every non-secret setting, for the health endpoint; URLs as their origin only."""
        shown = {}
        for f in fields(self):
            if f.metadata.get("secret"):
                continue
            value = getattr(self, f.name)
            if f.metadata.get("url") and value:
                value = url_origin(value)
            shown[f.name] = str(value) if isinstance(value, Path) else value
        return shown

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for f in fields(cls):
            name = _ENV_NAMES[f.name]
            raw = env.get(name)
            if raw is None or raw == "":
                continue
            values[f.name] = _convert(name, f.default, raw)
        settings = cls(**values)
        settings._check()
        return settings

    def _check(self) -> None:
        _one_of("RETRAINER_BACKEND", self.backend, (*AZURE_ML_BACKENDS, "local"))
        _one_of("RETRAINER_AML_AUTH", self.aml_auth, ("msi", "default", "service_principal", "cli"))
        if "/" not in self.incoming_path:
            raise SettingsError("RETRAINER_INCOMING_PATH must be 'container/{name}' "
                                f"(got {self.incoming_path!r})")
        if self.backend in AZURE_ML_BACKENDS:
            if self.aml_subscription_id == LOCAL_SUBSCRIPTION:
                raise SettingsError(f"RETRAINER_AML_SUBSCRIPTION_ID is required when RETRAINER_BACKEND={self.backend}")
            if self.aml_auth == "service_principal":
                for setting, value in (("RETRAINER_AML_TENANT_ID", self.aml_tenant_id),
                                       ("RETRAINER_AML_CLIENT_ID", self.aml_client_id),
                                       ("RETRAINER_AML_CLIENT_SECRET", self.aml_client_secret)):
                    if not value:
                        raise SettingsError(f"{setting} is required when RETRAINER_AML_AUTH=service_principal")
        if self.intermediate_datastore == self.datastore:
            raise SettingsError(
                f"RETRAINER_INTERMEDIATE_DATASTORE must differ from RETRAINER_DATASTORE ({self.datastore!r}): Azure ML "
                "writes a pipeline's intermediate data under azureml/ on it, into the watched container; leave it "
                "empty for the workspace's default datastore")


_ENV_NAMES = {f.name: "RETRAINER_" + f.name.upper() for f in fields(Settings)}
_ENV_NAMES.update(
    storage_connection="AzureWebJobsStorage",
    storage_account="AzureWebJobsStorage__accountName",
    data_connection="RETRAINER_DATA_STORAGE",
    data_service_uri="RETRAINER_DATA_STORAGE__serviceUri",
    retrain_schedule="RETRAINER_SCHEDULE",
    mlflow_uri="RETRAINER_MLFLOW_TRACKING_URI",
)


def user_cache_dir() -> Path:
    """Where the local backend keeps what it makes once per machine and reuses across state folders (an empty
    MLflow store, pipeline versions): $XDG_CACHE_HOME/retrainer, by default ~/.cache/retrainer."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "retrainer"


def url_origin(url: str) -> str:
    """Scheme and host only: a URL's user info, path or query may hold a key (e.g. ?code=)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def env_name(field_name: str) -> str:
    """The app setting that fills a Settings field (for docs and error messages)."""
    return _ENV_NAMES[field_name]


def _convert(name: str, default: object, raw: str) -> object:
    try:
        if isinstance(default, bool):
            return raw.strip().lower() in ("1", "true", "yes")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, Path):
            return Path(raw)
    except ValueError:
        kind = type(default).__name__
        raise SettingsError(f"{name} must be a {kind} (got {raw!r})") from None
    return raw


def _one_of(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise SettingsError(f"{name} must be one of {', '.join(allowed)} (got {value!r})")
