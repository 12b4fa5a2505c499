"""The Azure ML backend on SDK v2 (azure-ai-ml): the same pipeline_defs/ definition, translated into a pipeline
component (retrainer.adapters.azureml_v2_translate), run as pipeline jobs.

What v2 changes (azure-ai-ml 1.35.2, operations/_job_operations.py, operations/_model_operations.py):
- A job's tags travel in its create request (`JobOperations.create_or_update` puts `job.tags` into the PUT body),
  so no run ever exists without the key.
- Job names are unique in a workspace and chosen by the caller: the job is named after the key's digest
  (`retrainer-<policy.key_digest>`), so a second submission for the same key is refused by the service itself;
  finding the run is `jobs.get(name)`, no tag query.
- The definition is registered as a pipeline component whose version is its content hash (`python -m retrainer
  publish`); the functions look that version up and never build the definition.
- A model registers from the job's output (`azureml://jobs/<job>/outputs/artifacts/paths/<path>`).
- Step metrics: azure-ai-ml has no metrics API; v2 reads them through the workspace's MLflow endpoint
  (`Workspace.mlflow_tracking_uri`), here with MLflow's REST call `GET api/2.0/mlflow/runs/get`
  (https://mlflow.org/docs/latest/rest-api.html#get-run); a job's MLflow run id is its name.

azure-ai-ml is imported inside the methods, on first use: importing this module stays light. Every service call
goes through `retrainer.retry` (the SDK clients are built with `retry_total=0`: one retry layer).
"""
from __future__ import annotations

import re
import threading
from pathlib import PurePosixPath
from typing import Any, Callable, Iterator, Mapping, TypeVar

from retrainer.policy import TAG_BLOB, TAG_KEY, TAG_KEY_HASH, TAG_PIPELINE_VERSION, TAG_RUN_ID
from retrainer.ports import (ModelRef, PipelineNotPublished, PublishedPipelineRef, RunInfo, RunRef, RunStatus,
                             StepRunInfo)
from retrainer.settings import Settings

T = TypeVar("T")

URI_FILE = "uri_file"
URI_FOLDER = "uri_folder"
_DATASTORE_URI = re.compile(r"^azureml://datastores/(?P<datastore>[^/]+)/paths/(?P<path>.*)$")
DATA_DEFAULT_TAG = "retrainer.data_default."   # + input name, on the pipeline component
JOB_NAME_PREFIX = "retrainer-"
# The token scope azure-ai-ml's own run-history client asks for (_restclient/runhistory/_configuration.py);
# the MLflow endpoint is served from the same workspace API host.
ML_SCOPE = "https://ml.azure.com/.default"
# On a reused step's run: the run that holds its outputs and metrics (as in v1: the pipeline service runs v2
# pipeline jobs too; retrainer.adapters.azureml_v1.REUSED_RUN_PROPERTY)
REUSED_RUN_PROPERTY = "azureml.reusedrunid"
# v2 job statuses (azure-ai-ml operations/_run_history_constants.py, JobStatus) as RunStatus values.
# NotResponding is final in the SDK's TERMINAL_STATUSES: a job that stopped answering has failed. Step jobs come
# from run history, whose step runs may say "Finished" / "Cancelled" (retrainer.adapters.azureml_v1 sees them).
_STATUSES = {"Starting": RunStatus.PREPARING, "Provisioning": RunStatus.PREPARING,
             "CancelRequested": RunStatus.RUNNING, "NotResponding": RunStatus.FAILED,
             "Finished": RunStatus.COMPLETED, "Cancelled": RunStatus.CANCELED}


def datastore_uri(datastore: str, path: str) -> str:
    """The v2 address of a path on a datastore (how `Input(path=...)` names registered-datastore data)."""
    return f"azureml://datastores/{datastore}/paths/{path.lstrip('/')}"


def path_type(path: str) -> str:
    """uri_file for a path that names a file (it has an extension), uri_folder otherwise."""
    return URI_FILE if PurePosixPath(path).suffix and not path.endswith("/") else URI_FOLDER


def job_inputs(component: Any, parameters: Mapping[str, str], data_type: Callable[[str], str]) -> dict:
    """Every pipeline input for one submission of `component` (as translated, or as the workspace returns it):
    the given parameters over the component's defaults. A data parameter's value is a path on the datastore of
    its default; `data_type(path)` says whether it names a file or a folder (the job's input type is what v2
    mounts, whatever type the component declared)."""
    from azure.ai.ml import Input

    declared = dict(component.inputs)
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        raise ValueError(f"pipeline {component.name!r} has no parameter {', '.join(map(repr, unknown))}; "
                         f"its parameters: {', '.join(sorted(declared))}")
    inputs: dict[str, Any] = {}
    for name, spec in sorted(declared.items()):
        if spec.type in (URI_FILE, URI_FOLDER):
            default = _DATASTORE_URI.match((component.tags or {}).get(DATA_DEFAULT_TAG + name, ""))
            if default is None:
                raise ValueError(f"pipeline {component.name!r} records no datastore for its data input {name!r} "
                                 f"(tag {DATA_DEFAULT_TAG + name}): publish it again")
            if name in parameters:
                path, kind = parameters[name], data_type(parameters[name])
            else:
                path, kind = default["path"], spec.type
            inputs[name] = Input(type=kind, path=datastore_uri(default["datastore"], path))
        elif name in parameters:
            inputs[name] = _value(name, spec.type, parameters[name])
    return inputs


def _value(name: str, kind: str, raw: Any) -> Any:
    """A submitted parameter as its pipeline input's declared type (one left out takes the input's default)."""
    if kind == "boolean":
        text = str(raw).strip().lower()
        if text in ("true", "false"):
            return text == "true"
    elif kind in ("integer", "number"):
        try:
            return int(raw) if kind == "integer" else float(raw)
        except (TypeError, ValueError):
            pass
    else:
        return str(raw)
    raise ValueError(f"parameter {name!r} must be a {kind} (got {raw!r})")


def pipeline_job(component: Any, inputs: Mapping[str, Any], *, name: str, experiment: str,
                 tags: Mapping[str, str], compute: str) -> Any:
    """A job of the registered pipeline component (by its id, or `azureml:<name>:<version>`)."""
    from azure.ai.ml.entities import PipelineJob, PipelineJobSettings

    return PipelineJob(component=component, inputs=dict(inputs), name=name, experiment_name=experiment,
                       tags=dict(tags), settings=PipelineJobSettings(default_compute=compute))


def job_name(key_digest: str) -> str:
    """The job a key's submission is: one per key in the workspace."""
    return JOB_NAME_PREFIX + key_digest


class AzureMLv2Backend:
    def __init__(self, settings: Settings, blobs: Any = None):
        self._settings = settings
        self._blobs = blobs              # tells a data file from a folder (uri_file / uri_folder)
        self._lock = threading.Lock()
        self._client_object: Any = None
        self._credential_object: Any = None
        self._tracking_object: Any = None
        self._components: dict[tuple[str, str], Any] = {}
        self._published: dict[str, PublishedPipelineRef] = {}

    # ------------------------------------------------------------ pipelines

    def ensure_published(self, pipeline_name: str) -> PublishedPipelineRef:
        """The pipeline component version this deployment expects (pipelines.deployed_version, recorded by
        `python -m retrainer publish`), looked up in the workspace; never registered from here."""
        with self._lock:
            if pipeline_name not in self._published:
                self._published[pipeline_name] = self._look_up(pipeline_name)
            return self._published[pipeline_name]

    def _look_up(self, pipeline_name: str) -> PublishedPipelineRef:
        from retrainer import pipelines

        expected = pipelines.deployed_version(pipeline_name)
        component = self._registered(pipeline_name, expected)
        if component is None:
            raise PipelineNotPublished(
                f"pipeline component {pipeline_name}:{expected} is not registered in workspace "
                f"{self._settings.aml_workspace!r}: run `python -m retrainer publish` (azd deploy runs it)")
        return PublishedPipelineRef(name=pipeline_name, version=expected, pipeline_id=component.id,
                                    endpoint=pipeline_name)

    def publish(self, pipeline_name: str) -> PublishedPipelineRef:
        """Register the definition as a pipeline component versioned by its content hash, unless that version
        is registered already (`python -m retrainer publish`; needs requirements-publish.txt)."""
        from retrainer import pipelines
        from retrainer.adapters.azureml_v2_translate import translate

        definition = self.definition(pipeline_name)
        version = pipelines.pipeline_version(definition)
        with self._lock:
            component = self._registered(pipeline_name, version)
            newly = component is None
            if newly:
                component = _retrying(self._client().components.create_or_update, translate(definition, version))
                self._components[(pipeline_name, version)] = component
        return PublishedPipelineRef(name=pipeline_name, version=version, pipeline_id=component.id,
                                    endpoint=pipeline_name, newly_published=newly)

    def definition(self, pipeline_name: str):
        """The definition on datastores of the configured names (a v2 job names datastores; it needs no v1
        workspace): the same version `python -m retrainer publish --offline` computes."""
        from retrainer import pipelines

        s = self._settings
        intermediate = s.intermediate_datastore
        return pipelines.load_definition(
            pipeline_name, compute_target=s.compute_target,
            datastore=pipelines.local_datastore(s.datastore, s.incoming_container),
            intermediate_datastore=pipelines.local_datastore(intermediate, intermediate) if intermediate else None)

    def _registered(self, name: str, version: str) -> Any | None:
        from azure.core.exceptions import ResourceNotFoundError

        if (name, version) not in self._components:
            try:
                self._components[(name, version)] = _retrying(self._client().components.get, name=name,
                                                              version=version)
            except ResourceNotFoundError:
                return None
        return self._components[(name, version)]

    # ------------------------------------------------------------ runs

    def submit(self, ref: PublishedPipelineRef, parameters: Mapping[str, str], experiment: str,
               tags: Mapping[str, str]) -> RunRef:
        from azure.core.exceptions import HttpResponseError

        digest = tags.get(TAG_KEY_HASH)
        if not digest:
            raise ValueError(f"submit needs the {TAG_KEY_HASH!r} tag: it names the job, so a retried submit "
                             "cannot run twice")
        component = self._deployed(ref)
        try:
            created = _retrying(self._client().jobs.create_or_update,
                                self._job(component, ref, parameters, experiment, tags))
        except HttpResponseError:
            # The name exists: an earlier attempt (its response lost, or a crash before it was recorded) made
            # the job. Anything else is a real error.
            created = self._our_job(digest)
            if created is None:
                raise
        return self._run_ref(created)

    def _deployed(self, ref: PublishedPipelineRef) -> Any:
        with self._lock:
            component = self._registered(ref.name, ref.version)
        if component is None:
            raise PipelineNotPublished(f"pipeline component {ref.name}:{ref.version} is not registered in "
                                       f"workspace {self._settings.aml_workspace!r}: run `python -m retrainer publish`")
        return component

    def _job(self, component: Any, ref: PublishedPipelineRef, parameters: Mapping[str, str], experiment: str,
             tags: Mapping[str, str]) -> Any:
        """The pipeline job of one submission, named after its key digest, its tags in the create request. By
        the component's id: the job refers to the registered component rather than carrying its steps again."""
        return pipeline_job(component.id, job_inputs(component, parameters, self._data_type),
                            name=job_name(tags[TAG_KEY_HASH]), experiment=experiment,
                            tags={**tags, TAG_PIPELINE_VERSION: ref.version}, compute=self._settings.compute_target)

    def live_check(self, data_path: str | None = None) -> Iterator[str]:
        """What only a live workspace can confirm (`python -m retrainer check-azureml` with
        RETRAINER_BACKEND=azureml_v2): the identity signs in and the deployed pipeline component is found. With
        `data_path`, a real job of it on that data: absent before, created with its tags in the request, readable
        through the workspace's MLflow endpoint, a second create of its name answered (refused, or at most an update
        of the same job), and found by name. Yields a line per check; raises LiveCheckFailed."""
        import uuid

        from azure.core.exceptions import HttpResponseError

        from retrainer import policy
        from retrainer.adapters.azureml_v1 import LiveCheckFailed

        s = self._settings
        client = self._client()
        workspace = _retrying(client.workspaces.get, s.aml_workspace)
        yield f"signed in to workspace {workspace.name} with RETRAINER_AML_AUTH={s.aml_auth}"
        ref = self.ensure_published(s.pipeline)
        yield f"pipeline component {ref.name}:{ref.version}: {ref.pipeline_id}"
        if data_path is None:
            return
        key = f"check:{uuid.uuid4().hex}"
        tags = policy.run_tags(key, "check", ref.version)
        digest = tags[TAG_KEY_HASH]
        if self._our_job(digest) is not None:
            raise LiveCheckFailed(f"job {job_name(digest)} was found before it was created")
        run = self.submit(ref, {"input_data": data_path}, s.experiment, tags)
        stored = _retrying(client.jobs.get, run.run_id).tags or {}
        if stored.get(TAG_KEY) != key:
            raise LiveCheckFailed(f"job {run.run_id} was created without its tags (it has {sorted(stored)})")
        yield f"job {run.run_id} on {data_path}, created with its tags (key {key}): {run.url}"
        metrics = self._metrics(run.run_id, missing_ok=False)    # the job's name must be its MLflow run id
        yield f"the workspace's MLflow endpoint answers for job {run.run_id} ({len(metrics)} metrics so far)"
        try:
            _retrying(client.jobs.create_or_update, self._job(self._deployed(ref), ref,
                                                              {"input_data": data_path}, s.experiment, tags))
        except HttpResponseError as error:
            first_line = (str(error).strip().splitlines() or ["(no message)"])[0]
            answer = f"refused: HTTP {error.status_code} {type(error).__name__}: {first_line}"
        else:
            answer = "accepted as an update of the same job (no second job: the name is the job)"
        found = self.find_run(TAG_KEY_HASH, digest)
        if found is None or found.run_id != run.run_id:
            raise LiveCheckFailed(f"job {run.run_id} is not found by its name after a second create")
        yield f"a second create of {run.run_id} {answer}"
        yield (f"when it ends, ml_events logs its RunCompleted with key {key}: the event carried the job's tags "
               "(runTags)")

    def find_run(self, tag_key: str, tag_value: str) -> RunRef | None:
        if tag_key != TAG_KEY_HASH:
            raise ValueError(f"the SDK v2 backend finds runs by {TAG_KEY_HASH!r} (the job's name), not {tag_key!r}")
        job = self._our_job(tag_value)
        return self._run_ref(job) if job is not None else None

    def _our_job(self, digest: str) -> Any | None:
        """The job named after this key digest, if it exists and carries the digest."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            job = _retrying(self._client().jobs.get, job_name(digest))
        except ResourceNotFoundError:
            return None
        if (job.tags or {}).get(TAG_KEY_HASH) != digest:
            raise RuntimeError(f"job {job.name!r} exists without the {TAG_KEY_HASH} tag this app gives it: "
                               "another tool took the name; rename or delete that job")
        return job

    def _run_ref(self, job: Any) -> RunRef:
        return RunRef(run_id=job.name, experiment=job.experiment_name or self._settings.experiment,
                      tags=dict(job.tags or {}), url=job.studio_url)

    def get_run(self, run_id: str) -> RunInfo:
        client = self._client()
        job = _retrying(client.jobs.get, run_id)
        children = _retrying(lambda: list(client.jobs.list(parent_job_name=run_id)))
        steps = tuple(self._step_info(child) for child in children)
        status = _status(job.status)
        failed = next((s for s in steps if s.status == RunStatus.FAILED), None)
        error = None
        if failed is not None:
            error = f"step {failed.name!r} failed (log: {failed.log_location})"
        elif status in (RunStatus.FAILED, RunStatus.CANCELED):
            error = f"pipeline job {run_id} {status.lower()}"
        return RunInfo(run_id=job.name, status=status, tags=dict(job.tags or {}), steps=steps, error=error)

    def _step_info(self, child: Any) -> StepRunInfo:
        holder = _output_holder(child)
        # The node's name: the translator gives each node its step's name as display name.
        return StepRunInfo(name=child.display_name, run_id=child.name, status=_status(child.status),
                           metrics=self._metrics(holder), log_location=child.studio_url,
                           reused=holder != child.name)

    def _metrics(self, run_id: str, *, missing_ok: bool = True) -> dict[str, Any]:
        """The run's latest metric values, from the workspace's MLflow endpoint. A run MLflow does not know (a
        step that never started) has none: MLflow answers 404 RESOURCE_DOES_NOT_EXIST."""
        from azure.core.rest import HttpRequest

        def fetch() -> dict[str, Any]:
            response = self._tracking().send_request(
                HttpRequest("GET", "api/2.0/mlflow/runs/get", params={"run_id": run_id}))
            if response.status_code == 404 and missing_ok:
                return {}
            response.raise_for_status()
            metrics = ((response.json().get("run") or {}).get("data") or {}).get("metrics") or []
            return {metric["key"]: metric["value"] for metric in metrics}

        return _retrying(fetch)

    def _data_type(self, path: str) -> str:
        """uri_file when the path is a blob of the datastore's container, uri_folder otherwise (without a blob
        store, as the path reads: with an extension, a file)."""
        if not path or path.endswith("/"):
            return URI_FOLDER
        if self._blobs is None:
            return path_type(path)
        try:
            self._blobs.properties(self._settings.incoming_container, path)
        except FileNotFoundError:
            return URI_FOLDER
        return URI_FILE

    # ------------------------------------------------------------ models

    def register_model(self, run: RunInfo, name: str, path: str, tags: Mapping[str, str],
                       properties: Mapping[str, str]) -> ModelRef:
        from azure.ai.ml.constants import AssetTypes
        from azure.ai.ml.entities import Model

        existing = self.find_model(name, run.run_id)
        if existing is not None:
            return existing
        step = run.model_step(self._settings.model_step)
        holder = _output_holder(_retrying(self._client().jobs.get, step.run_id))
        model_tags = {**{k: v for k, v in run.tags.items() if k in (TAG_BLOB, TAG_PIPELINE_VERSION)},
                      **tags, TAG_RUN_ID: run.run_id}
        model = Model(name=name, type=AssetTypes.CUSTOM_MODEL,
                      path=f"azureml://jobs/{holder}/outputs/artifacts/paths/{path.lstrip('/')}",
                      tags={k: str(v) for k, v in model_tags.items()},
                      properties={k: str(v) for k, v in properties.items()},
                      description=f"from run {run.run_id}, step {step.name}")
        return _model_ref(_retrying(self._client().models.create_or_update, model))

    def current_model(self, name: str) -> ModelRef | None:
        """The highest version of the model, whichever backend registered it (v1 and v2 share the registry)."""
        models = self._models(name)
        return _model_ref(max(models, key=lambda m: int(m.version))) if models else None

    def find_model(self, name: str, run_id: str) -> ModelRef | None:
        models = [m for m in self._models(name) if (m.tags or {}).get(TAG_RUN_ID) == run_id]
        return _model_ref(min(models, key=lambda m: int(m.version))) if models else None

    def _models(self, name: str) -> list:
        """Every numbered version of the model (none when the name is not registered yet)."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            models = _retrying(lambda: list(self._client().models.list(name=name)))
        except ResourceNotFoundError:
            return []
        return [m for m in models if str(m.version).isdigit()]

    # ------------------------------------------------------------ workspace

    def _client(self) -> Any:
        if self._client_object is None:
            from azure.ai.ml import MLClient

            s = self._settings
            self._credential_object = self._credential()
            self._client_object = MLClient(credential=self._credential_object, subscription_id=s.aml_subscription_id,
                                           resource_group_name=s.aml_resource_group, workspace_name=s.aml_workspace,
                                           retry_total=0, enable_telemetry=False)
        return self._client_object

    def _credential(self) -> Any:
        """azure-identity, as RETRAINER_AML_AUTH says (a client id names a user-assigned identity)."""
        import azure.identity as identity

        s = self._settings
        if s.aml_auth == "service_principal":
            return identity.ClientSecretCredential(s.aml_tenant_id, s.aml_client_id, s.aml_client_secret)
        if s.aml_auth == "cli":
            return identity.AzureCliCredential()
        if s.aml_auth == "default":
            return identity.DefaultAzureCredential(managed_identity_client_id=s.aml_client_id)
        return identity.ManagedIdentityCredential(client_id=s.aml_client_id)

    def _tracking(self) -> Any:
        """An HTTP client for the workspace's MLflow endpoint (azureml://<host>/mlflow/... served over https)."""
        if self._tracking_object is None:
            from azure.core import PipelineClient
            from azure.core.pipeline.policies import BearerTokenCredentialPolicy

            client = self._client()
            workspace = _retrying(client.workspaces.get, self._settings.aml_workspace)
            base = "https://" + workspace.mlflow_tracking_uri.split("://", 1)[1].rstrip("/") + "/"
            self._tracking_object = PipelineClient(
                base, per_call_policies=[BearerTokenCredentialPolicy(self._credential_object, ML_SCOPE)],
                retry_total=0)
        return self._tracking_object


# ---------------------------------------------------------------- helpers

def _retrying(operation: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    from retrainer.retry import retry

    return retry(operation, *args, **kwargs)


def _output_holder(job: Any) -> str:
    """The run that holds a step's outputs and metrics: a reused step points at the run it reused."""
    return (job.properties or {}).get(REUSED_RUN_PROPERTY) or job.name


def _status(status: str | None) -> str:
    return _STATUSES.get(status or "", status or RunStatus.NOT_STARTED)


def _model_ref(model: Any) -> ModelRef:
    tags = dict(model.tags or {})
    return ModelRef(name=model.name, version=int(model.version), run_id=tags.get(TAG_RUN_ID), tags=tags,
                    properties=dict(model.properties or {}))
