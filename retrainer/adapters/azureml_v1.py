"""The Azure ML backend: azureml-core and azureml-pipeline-core (SDK v1).

The pipeline definition in pipeline_defs/ is published behind one PipelineEndpoint; its content hash is the
published pipeline's `version`, so a changed definition becomes the endpoint's new default and an unchanged
one is reused. Runs are submitted through the endpoint and found again by their idempotency tag.

azureml is imported inside the methods, on first use: importing this module stays light.
"""
from __future__ import annotations

import hashlib
import tempfile
import threading
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator, Mapping, TypeVar

from retrainer.policy import APP_NAME, TAG_APP, TAG_BLOB, TAG_KEY_HASH, TAG_PIPELINE_VERSION, TAG_RUN_ID
from retrainer.ports import (ModelRef, PipelineNotPublished, PublishedPipelineRef, RunInfo, RunRef, RunStatus,
                             StepRunInfo)
from retrainer.settings import Settings

T = TypeVar("T")

REUSED_RUN_PROPERTY = "azureml.reusedrunid"     # on a reused step run: the run that holds its outputs
# The anchor run's retrainer.app tag: not APP_NAME, so ml_events ignores the anchor's own run events.
ANCHOR_APP = f"{APP_NAME}.anchor"

# Step runs report "Finished" (the pipeline service's word); run history says "Completed".
_STATUS_ALIASES = {"Finished": RunStatus.COMPLETED, "Cancelled": RunStatus.CANCELED}
_TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_ENDPOINT_LIST_MAX = 1000


class AzureMLTransientError(ConnectionError):
    """An Azure ML call met a transient fault (throttling, 5xx, a dropped connection); the original error is
    the `__cause__`. A ConnectionError so `retrainer.retry` treats it as worth another attempt."""

    def __init__(self, error: BaseException):
        super().__init__(f"{type(error).__name__}: {error}")
        self.response = getattr(error, "response", None)   # keeps Retry-After visible to the retry policy


class LiveCheckFailed(RuntimeError):
    """A live-workspace check saw the service behave otherwise than the adapter relies on."""


class AzureMLBackend:
    def __init__(self, settings: Settings):
        self._settings = settings
        self._lock = threading.Lock()
        self._workspace_object: Any = None
        self._datastore_object: Any = None
        self._published: dict[str, PublishedPipelineRef] = {}
        self._endpoints: dict[str, Any] = {}

    # ------------------------------------------------------------ pipelines

    def ensure_published(self, pipeline_name: str) -> PublishedPipelineRef:
        """The published pipeline this deployment expects, looked up: the endpoint's default must carry the
        version `python -m retrainer publish` recorded when the app was packaged (pipelines.deployed_version).
        The functions never publish (building a definition needs azureml-pipeline-steps, which the runtime
        package leaves out), and never run another version than the one deployed with them."""
        with self._lock:
            if pipeline_name not in self._published:
                self._published[pipeline_name] = self._look_up(pipeline_name)
            return self._published[pipeline_name]

    def _look_up(self, pipeline_name: str) -> PublishedPipelineRef:
        from retrainer import pipelines

        endpoint_name = self._settings.pipeline_endpoint
        expected = pipelines.deployed_version(pipeline_name)
        endpoint = self._find_endpoint(endpoint_name)
        if endpoint is None:
            raise PipelineNotPublished(
                f"pipeline endpoint {endpoint_name!r} does not exist in workspace {self._settings.aml_workspace!r}: "
                "run `python -m retrainer publish` (azd deploy runs it)")
        self._check_active(endpoint)
        default = _retrying(endpoint.get_pipeline)       # no version: the endpoint's default
        if default.version != expected:
            raise PipelineNotPublished(
                f"pipeline endpoint {endpoint_name!r} serves {pipeline_name} version {default.version}, this "
                f"deployment expects {expected}: nothing is submitted until they agree; redeploy (azd deploy "
                "publishes the deployed definition) or deploy the app that matches the endpoint")
        self._endpoints[endpoint_name] = endpoint
        return PublishedPipelineRef(name=pipeline_name, version=expected, pipeline_id=default.id,
                                    endpoint=endpoint_name)

    def publish(self, pipeline_name: str) -> PublishedPipelineRef:
        """Publish the definition and make it the endpoint's default, unless the default already carries its
        version (`python -m retrainer publish`; needs requirements-publish.txt)."""
        with self._lock:
            return self._publish_if_changed(pipeline_name)

    def _publish_if_changed(self, pipeline_name: str) -> PublishedPipelineRef:
        from azureml.pipeline.core import Pipeline, PipelineEndpoint

        from retrainer import pipelines

        workspace = self._workspace()
        definition = self.definition(pipeline_name)
        version = pipelines.pipeline_version(definition)
        endpoint_name = self._settings.pipeline_endpoint
        endpoint = self._find_endpoint(endpoint_name)
        if endpoint is not None:
            self._check_active(endpoint)
            default = _retrying(endpoint.get_pipeline)       # no version: the endpoint's default
            if default.version == version:
                self._endpoints[endpoint_name] = endpoint
                return PublishedPipelineRef(name=pipeline_name, version=version, pipeline_id=default.id,
                                            endpoint=endpoint_name)

        description = f"{pipeline_name} (retrainer, version {version})"
        published = _retrying(lambda: Pipeline(workspace, list(definition.steps)).publish(
            name=pipeline_name, description=description, version=version))
        if endpoint is None:
            endpoint = _retrying(PipelineEndpoint.publish, workspace=workspace, name=endpoint_name,
                                 pipeline=published, description=f"retrainer: {pipeline_name}")
        else:
            _retrying(endpoint.add_default, published)
        self._endpoints[endpoint_name] = endpoint
        return PublishedPipelineRef(name=pipeline_name, version=version, pipeline_id=published.id,
                                    endpoint=endpoint_name, newly_published=True)

    def definition(self, pipeline_name: str):
        """The definition on this workspace's datastores: the training data on RETRAINER_DATASTORE, the
        intermediates on RETRAINER_INTERMEDIATE_DATASTORE or, unset, on the workspace default (PipelineData's
        `datastore=None`), never on the watched container."""
        from azureml.core import Datastore

        from retrainer import pipelines

        name = self._settings.intermediate_datastore
        intermediate = _retrying(Datastore.get, self._workspace(), name) if name else None
        return pipelines.load_definition(pipeline_name, datastore=self._datastore(),
                                         compute_target=self._settings.compute_target,
                                         intermediate_datastore=intermediate)

    def _check_active(self, endpoint: Any) -> None:
        if endpoint.status != "Active":
            raise RuntimeError(f"pipeline endpoint {endpoint.name!r} is {endpoint.status}: enable it in Azure ML "
                               "studio or set RETRAINER_PIPELINE_ENDPOINT to another name")

    def _find_endpoint(self, name: str) -> Any | None:
        """The endpoint of that name, disabled ones included, or None.

        Not `PipelineEndpoint.get(name=)`: the pipeline service's client raises ErrorResponseException for
        any non-200 (azureml/pipeline/core/_restclients/aeva/service_caller.py,
        get_pipeline_endpoint_by_name_async), and the SDK itself treats any error from `get` as "not
        found" (pipeline_endpoint.py, PipelineEndpoint.publish), so a 404 is no sure sign of absence.
        Listing answers "absent" only with a successful reply. `list` reads one page of `max_results`
        (the BatchSize header, service_caller.py get_all_pipeline_endpoints_async).
        """
        from azureml.pipeline.core import PipelineEndpoint

        endpoints = _retrying(PipelineEndpoint.list, workspace=self._workspace(), active_only=False,
                              max_results=_ENDPOINT_LIST_MAX)
        return next((endpoint for endpoint in endpoints if endpoint.name == name), None)

    def _endpoint_and_version(self, ref: PublishedPipelineRef) -> tuple[Any, str]:
        """The endpoint and its version number of the pipeline in `ref`.

        `PipelineEndpoint.submit` without `pipeline_version` runs whatever is the default when the service
        gets the call (pipeline_endpoint.py, PipelineEndpoint.submit), so a concurrent publish could swap the
        pipeline under a run: submit by the version that holds `ref.pipeline_id`. A cached endpoint that
        does not list it yet (another process published it) is read again once.
        """
        for fresh in (False, True):
            if fresh or ref.endpoint not in self._endpoints:
                endpoint = self._find_endpoint(ref.endpoint)
                if endpoint is None:
                    raise LookupError(f"pipeline endpoint {ref.endpoint!r} does not exist in workspace "
                                      f"{self._settings.aml_workspace!r}: run `python -m retrainer publish`")
                self._endpoints[ref.endpoint] = endpoint
            endpoint = self._endpoints[ref.endpoint]
            version = next((item.version for item in endpoint.pipeline_version_list
                            if item.pipeline_id == ref.pipeline_id), None)
            if version is not None:
                return endpoint, version
        raise LookupError(f"pipeline endpoint {ref.endpoint!r} holds no published pipeline {ref.pipeline_id}; "
                          "it was removed since it was published: submit again to publish it")

    # ------------------------------------------------------------ runs

    def submit(self, ref: PublishedPipelineRef, parameters: Mapping[str, str], experiment: str,
               tags: Mapping[str, str]) -> RunRef:
        """Submit the pipeline as the child of an anchor run that carries the key from its creation.

        No SDK v1 pipeline submit takes run tags (`Experiment.submit(tags=)` sets them after the run exists:
        azureml/core/experiment.py, Experiment.submit), so a run whose submit response was lost, or whose
        process died before `set_tags`, would be untagged and submitted again. The anchor closes that window:
        `Experiment.start_logging(run_id=...)` creates a run with its tags in one PATCH by id
        (azureml/_restclient/experiment_client.py, ExperimentClient.create_run: `run.patch`), so creating it
        again is a no-op; the pipeline is submitted with `parent_run_id=` it (pipeline_endpoint.py,
        PipelineEndpoint.submit), and `find_run` looks at the anchor's children.
        """
        from azureml.data.datapath import DataPath

        digest = tags.get(TAG_KEY_HASH)
        if not digest:
            raise ValueError(f"submit needs the {TAG_KEY_HASH!r} tag: without it a retried submit could run twice")
        endpoint, endpoint_version = self._endpoint_and_version(ref)
        pipeline_parameters: dict[str, Any] = dict(parameters)
        pipeline_parameters["input_data"] = DataPath(datastore=self._datastore(),
                                                     path_on_datastore=parameters["input_data"])
        run_tags = {**tags, TAG_PIPELINE_VERSION: ref.version}
        anchor = _retrying(self._start_anchor, experiment, digest, {**run_tags, TAG_APP: ANCHOR_APP})

        def submit_unless_already_submitted() -> Any:
            # The anchor's child is the key's run: an earlier attempt (a transient error may hide a run the
            # service did create) or an earlier submit of the key submitted it already.
            return _first_child(anchor) or endpoint.submit(
                experiment, pipeline_parameters=pipeline_parameters, parent_run_id=anchor.id,
                pipeline_version=endpoint_version)

        run = _retrying(submit_unless_already_submitted)
        _settle_submission(anchor, run, run_tags)
        return RunRef(run_id=run.id, experiment=experiment, tags=run_tags, url=run.get_portal_url())

    def find_run(self, tag_key: str, tag_value: str) -> RunRef | None:
        """The pipeline run submitted under the key whose digest is `tag_value`: the anchor's child.

        By the anchor's id, not a tag query: `Run.list` lists top-level runs only, and writes a tag value
        into OData unescaped (azureml/_restclient/_odata/runs.py get_filter_run_tag_equals). A child that
        its submitter died before tagging gets its tags here, so its run events reach ml_events.
        """
        if tag_key != TAG_KEY_HASH:
            raise ValueError(f"the Azure ML backend finds runs by {TAG_KEY_HASH} (policy.key_digest), not {tag_key}")
        experiment = self._settings.experiment
        anchor = _retrying(self._anchor, experiment, tag_value)
        run = _retrying(_first_child, anchor) if anchor is not None else None
        if run is None:
            return None    # nothing submitted, or only the anchor: a submit under the same anchor follows
        tags = _retrying(run.get_tags)
        if tags.get(TAG_KEY_HASH) != tag_value:
            tags = {**_retrying(anchor.get_tags), TAG_APP: APP_NAME}
            _settle_submission(anchor, run, tags)
        return RunRef(run_id=run.id, experiment=experiment, tags=tags, url=run.get_portal_url())

    def _start_anchor(self, experiment: str, digest: str, tags: Mapping[str, str]) -> Any:
        """Create (or, with the same id, find) the anchor run; outputs=False and snapshot_directory=None, so it
        uploads nothing from this process's folder. One call, not retried here: callers retry around it."""
        from azureml.core import Experiment

        return Experiment(self._workspace(), experiment).start_logging(
            run_id=anchor_run_id(experiment, digest), tags=dict(tags), outputs=False, snapshot_directory=None)

    def _anchor(self, experiment: str, digest: str) -> Any | None:
        """The anchor run of a key, or None. One look-up, not retried here: callers retry around it."""
        from azureml._restclient.exceptions import ServiceException
        from azureml.core import Run

        try:
            return Run.get(self._workspace(), anchor_run_id(experiment, digest))
        except ServiceException as error:
            if error.status_code == 404:     # run history's GET by id: no run has that id
                return None
            raise

    def live_check(self, data_path: str | None = None) -> Iterator[str]:
        """What only a live workspace can confirm (`python -m retrainer check-azureml`): the identity signs in;
        the endpoint is found by listing; an anchor run is absent before it is created (run history answers 404
        by id), carries its tags from its creation, and is found, not duplicated, when created again. With
        `data_path`, a real submission of the deployed pipeline on that data: the pipeline run must be the
        anchor's child and `find_run` must find it. Yields a line per check; raises LiveCheckFailed."""
        import uuid

        from retrainer import policy

        s, experiment = self._settings, self._settings.experiment
        workspace = self._workspace()
        yield f"signed in to workspace {workspace.name} with RETRAINER_AML_AUTH={s.aml_auth}"
        endpoint = self._find_endpoint(s.pipeline_endpoint)
        yield (f"pipeline endpoint {s.pipeline_endpoint}: {endpoint.status}, default version "
               f"{endpoint.default_version} of {len(endpoint.pipeline_version_list)}" if endpoint is not None
               else f"pipeline endpoint {s.pipeline_endpoint}: absent (python -m retrainer publish creates it)")
        check = uuid.uuid4().hex
        digest = policy.key_digest(f"check:{check}")
        if _retrying(self._anchor, experiment, digest) is not None:
            raise LiveCheckFailed(f"a run that was never created was found by id {anchor_run_id(experiment, digest)}")
        if data_path is None:
            tags = {TAG_APP: ANCHOR_APP, TAG_KEY_HASH: digest}
            anchor = _retrying(self._start_anchor, experiment, digest, tags)
            again = _retrying(self._start_anchor, experiment, digest, tags)
            found = _retrying(self._anchor, experiment, digest)
            stored = _retrying(found.get_tags) if found is not None else {}
            if found is None or again.id != anchor.id or stored.get(TAG_KEY_HASH) != digest:
                raise LiveCheckFailed(f"anchor run {anchor.id}: created again as {again.id}, found "
                                      f"{found is not None}, tags {stored}")
            _retrying(anchor.complete)
            yield f"anchor run {anchor.id}: absent before, created with its tags in one call, created again as itself"
            return
        ref = self.ensure_published(s.pipeline)
        run = self.submit(ref, {"input_data": data_path}, experiment,
                          policy.run_tags(f"check:{check}", "check", ref.version))
        found_run = self.find_run(TAG_KEY_HASH, digest)
        if found_run is None or found_run.run_id != run.run_id:
            raise LiveCheckFailed(f"pipeline run {run.run_id} is not found under its anchor "
                                  f"(found {found_run.run_id if found_run else None})")
        yield f"pipeline run {run.run_id} on {data_path}, found under its anchor by its key: {run.url}"

    def get_run(self, run_id: str) -> RunInfo:
        from azureml.core import Run

        workspace = self._workspace()
        run = _retrying(Run.get, workspace, run_id)       # a PipelineRun for a pipeline run id
        details = _retrying(run.get_details)
        # Not get_steps(): it rehydrates an `azureml.ReusedStepRun` child as the run it reused, by that run's id
        # (azureml_pipeline_core's entry point azureml.ReusedStepRun = StepRun._from_reused_dto, run.py), so the
        # reuse would be invisible. The children as plain runs keep their own ids, tags and properties.
        children = _retrying(lambda: list(run.get_children(_rehydrate_runs=False)))
        steps = [self._step_info(step) for step in children]
        return RunInfo(run_id=run.id, status=_status(details), tags=_retrying(run.get_tags),
                       steps=tuple(steps), error=_error_message(details))

    def _step_info(self, step: Any) -> StepRunInfo:
        details = _retrying(step.get_details)
        holder = self._output_holder(step, details)
        metrics = {name: _last(value) for name, value in _retrying(holder.get_metrics).items()}
        # The portal link, not details["logFiles"]: those are SAS URLs, which must not reach logs or events.
        return StepRunInfo(name=step.name, run_id=step.id, status=_status(details), metrics=metrics,
                           log_location=step.get_portal_url(), reused=holder is not step)

    def _output_holder(self, step: Any, details: Mapping[str, Any]) -> Any:
        """The run that holds a step's metrics and outputs: a reused step points at the run it reused, in its
        properties or (an azureml.ReusedStepRun) its tags: the SDK reads both (pipeline/core/run.py,
        StepRun._from_dto and StepRun._from_reused_dto)."""
        from azureml.core import Run

        reused = (details.get("properties") or {}).get(REUSED_RUN_PROPERTY) or (step.tags or {}).get(
            REUSED_RUN_PROPERTY)
        return _retrying(Run.get, self._workspace(), reused) if reused else step

    # ------------------------------------------------------------ models

    def register_model(self, run: RunInfo, name: str, path: str, tags: Mapping[str, str],
                       properties: Mapping[str, str]) -> ModelRef:
        from azureml.core import Model, Run

        from retrainer.retry import once

        step = run.model_step(self._settings.model_step)
        workspace = self._workspace()
        step_run = _retrying(Run.get, workspace, step.run_id)
        holder = self._output_holder(step_run, _retrying(step_run.get_details))
        model_tags = {**{k: v for k, v in run.tags.items() if k in (TAG_BLOB, TAG_KEY_HASH, TAG_PIPELINE_VERSION)},
                      **tags, TAG_RUN_ID: run.run_id}
        # The run id tag is set with the registration itself, so a version a lost response hid is found.
        register = once(Model.register, lambda: self._version_of_run(name, run.run_id))
        with tempfile.TemporaryDirectory(prefix="retrainer-model-") as folder:
            local_file = Path(folder) / PurePosixPath(path).name
            _retrying(holder.download_file, name=path, output_file_path=str(local_file))
            model = _retrying(register, workspace=workspace, model_path=str(local_file), model_name=name,
                              tags={k: str(v) for k, v in model_tags.items()},
                              properties={k: str(v) for k, v in properties.items()},
                              description=f"from run {run.run_id}, step {step.name}")
        return _model_ref(model)

    def current_model(self, name: str) -> ModelRef | None:
        models = _retrying(self._models, name, latest=True)
        return _model_ref(max(models, key=lambda m: m.version)) if models else None

    def find_model(self, name: str, run_id: str) -> ModelRef | None:
        model = _retrying(self._version_of_run, name, run_id)
        return _model_ref(model) if model else None

    def _version_of_run(self, name: str, run_id: str) -> Any | None:
        """The first version of `name` registered from `run_id` (one query, not retried here)."""
        models = self._models(name, tags=[[TAG_RUN_ID, run_id]])
        return min(models, key=lambda m: m.version) if models else None

    def _models(self, name: str, **filters: Any) -> list:
        """One registry query, not retried here: callers retry around it. Tag filters are [key, value] pairs."""
        from azureml.core import Model

        return Model.list(self._workspace(), name=name, **filters)

    # ------------------------------------------------------------ workspace

    def _workspace(self) -> Any:
        if self._workspace_object is None:
            from azureml.core import Workspace

            s = self._settings
            self._workspace_object = _retrying(Workspace.get, name=s.aml_workspace, auth=self._auth(),
                                               subscription_id=s.aml_subscription_id,
                                               resource_group=s.aml_resource_group)
        return self._workspace_object

    def _auth(self) -> Any:
        """The workspace's authentication. Managed identity goes through azure-identity, not `MsiAuthentication`:
        that one uses msrestazure's MSI_ENDPOINT/MSI_SECRET protocol (api-version 2017-09-01) and falls back to
        the VM metadata endpoint (msrestazure/azure_active_directory.py, get_msi_token_webapp / MSIAuthentication),
        while App Service and Functions document IDENTITY_ENDPOINT/IDENTITY_HEADER with api-version 2019-08-01,
        MSI_* being aliases of the older protocol only
        (https://learn.microsoft.com/azure/app-service/overview-managed-identity#rest-endpoint-reference).
        azure-identity's ManagedIdentityCredential reads IDENTITY_ENDPOINT/IDENTITY_HEADER
        (azure/identity/_credentials/app_service.py) and the other hosts' protocols.
        """
        from azureml.core.authentication import (AzureCliAuthentication, ServicePrincipalAuthentication,
                                                 TokenAuthentication)

        s = self._settings
        if s.aml_auth == "service_principal":
            return ServicePrincipalAuthentication(tenant_id=s.aml_tenant_id, service_principal_id=s.aml_client_id,
                                                  service_principal_password=s.aml_client_secret)
        if s.aml_auth == "cli":
            return AzureCliAuthentication()
        if s.aml_auth == "default":
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential(managed_identity_client_id=s.aml_client_id)
        else:
            from azure.identity import ManagedIdentityCredential

            # a client id names a user-assigned identity; without one, the system-assigned identity
            credential = ManagedIdentityCredential(client_id=s.aml_client_id)
        return TokenAuthentication(get_token_for_audience=_token_for_audience(credential))

    def _datastore(self) -> Any:
        if self._datastore_object is None:
            from azureml.core import Datastore

            self._datastore_object = _retrying(Datastore.get, self._workspace(), self._settings.datastore)
        return self._datastore_object


# ---------------------------------------------------------------- helpers

def anchor_run_id(experiment: str, digest: str) -> str:
    """The anchor run's id: one per key and experiment (run ids are unique across the workspace)."""
    return "retrainer_" + hashlib.sha256(f"{experiment}\n{digest}".encode("utf-8")).hexdigest()[:40]


def _token_for_audience(credential: Any) -> Callable[[str], str]:
    """TokenAuthentication's callback: it passes an ADAL resource (ARM's or Azure ML's) and wants the bearer
    token string (azureml/core/authentication.py, TokenAuthentication._get_aad_token). A resource becomes
    an MSAL scope by appending "/.default", trailing slash kept (azureml/_vendor/azure_cli_core/auth/util.py,
    resource_to_scopes)."""
    def get_token_for_audience(resource: str) -> str:
        return credential.get_token(resource + "/.default").token

    return get_token_for_audience


def _first_child(anchor: Any) -> Any | None:
    return next(iter(anchor.get_children()), None)


def _settle_submission(anchor: Any, run: Any, tags: Mapping[str, str]) -> None:
    """Tag the pipeline run (its run events carry the tags ml_events matches) and end the anchor. Both calls
    are idempotent: a recovering `find_run` repeats them."""
    _retrying(run.set_tags, dict(tags))
    _retrying(anchor.complete)

def _retrying(operation: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Every Azure ML call goes through here: retrainer.retry's bounded backoff, with Azure ML's own
    transient faults (msrest / run history / requests errors) shown to it as AzureMLTransientError."""
    from retrainer.retry import retry

    def attempt() -> T:
        try:
            return operation(*args, **kwargs)
        except Exception as error:
            if _is_transient(error):
                raise AzureMLTransientError(error) from error
            raise

    return retry(attempt)


def _is_transient(error: BaseException) -> bool:
    import requests
    from msrest.exceptions import ClientRequestError

    if isinstance(error, (ConnectionError, TimeoutError, ClientRequestError,
                          requests.ConnectionError, requests.Timeout)):
        return True
    return _status_code(error) in _TRANSIENT_STATUSES


def _status_code(error: BaseException) -> int | None:
    """The HTTP status of an azureml error: ServiceException and WebserviceException carry `status_code`,
    msrest's HttpOperationError (the pipeline service's ErrorResponseException) its `response`."""
    status = getattr(error, "status_code", None)
    if status is None:
        status = getattr(getattr(error, "response", None), "status_code", None)
    try:
        return int(status) if status is not None else None
    except (TypeError, ValueError):
        return None


def _status(details: Mapping[str, Any]) -> str:
    status = details.get("status") or RunStatus.NOT_STARTED
    return _STATUS_ALIASES.get(status, status)


def _error_message(details: Mapping[str, Any]) -> str | None:
    error = (details.get("error") or {}).get("error") or {}
    return error.get("message")


def _last(value: Any) -> Any:
    # A metric logged more than once comes back as a list; the gate compares the final value.
    return value[-1] if isinstance(value, list) and value else value


def _model_ref(model: Any) -> ModelRef:
    tags = dict(model.tags or {})
    return ModelRef(name=model.name, version=int(model.version), run_id=tags.get(TAG_RUN_ID), tags=tags,
                    properties=dict(model.properties or {}))
