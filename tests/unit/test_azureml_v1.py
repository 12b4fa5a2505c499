"""The Azure ML v1 adapter against autospec'd azureml classes: no Azure here, but every SDK call must match
the installed SDK's real signature, or the mock raises TypeError and the test fails.

The pipeline definition, its version hash, DataPath and the datastore object are the real ones.
"""
from __future__ import annotations

from pathlib import Path
from unittest.mock import create_autospec, patch

import pytest
import requests
from azure.core.credentials import AccessToken
from azure.identity import ManagedIdentityCredential
from azureml._restclient import models as run_history_models
from azureml._restclient.exceptions import ServiceException
from azureml._restclient.models.error_response import ErrorResponseException as RunHistoryErrorResponse
from azureml.core import Experiment, Model, Run, Workspace
from azureml.core import authentication
from azureml.core.authentication import TokenAuthentication
from azureml.data.datapath import DataPath
from azureml.pipeline.core import Pipeline, PipelineEndpoint, PipelineRun, PublishedPipeline, StepRun
from azureml.pipeline.core.pipeline_endpoint import PipelineIdVersion
from azureml.pipeline.core._restclients.aeva import models as aeva_models
from azureml.pipeline.core._restclients.aeva.models.error_response import ErrorResponseException
from msrest import Deserializer

import retrainer.retry
from retrainer import pipelines, policy
from retrainer.adapters.azureml_v1 import AzureMLBackend, LiveCheckFailed, anchor_run_id
from retrainer.ports import PipelineNotPublished, PublishedPipelineRef, RunInfo, RunStatus, StepRunInfo
from retrainer.settings import Settings

KEY = "blob:incoming/diabetes.csv@0x8DC1"
DIGEST = policy.key_digest(KEY)
TAGS = {"retrainer.key": KEY, "retrainer.key_sha": DIGEST, "retrainer.trigger": "blob",
        "retrainer.app": "retrainer", "retrainer.blob": "incoming/diabetes.csv", "retrainer.etag": "0x8DC1"}


def settings(**overrides) -> Settings:
    values = dict(backend="azureml", aml_subscription_id="11111111-2222-3333-4444-555555555555",
                  aml_resource_group="ml-rg", aml_workspace="ml-ws", aml_auth="cli",
                  datastore="training_data", compute_target="cpu-cluster",
                  pipeline_endpoint="diabetes-training", experiment="diabetes-retraining")
    values.update(overrides)
    return Settings(**values)


def service_error(status: int) -> ErrorResponseException:
    """The exception the pipeline service's REST client raises for an HTTP error status."""
    response = requests.Response()
    response.status_code = status
    response._content = b'{"error": {"code": "Error", "message": "from the test"}}'
    response.headers["Content-Type"] = "application/json"
    classes = {name: value for name, value in vars(aeva_models).items() if isinstance(value, type)}
    return ErrorResponseException(Deserializer(classes), response)


def run_history_error(status: int) -> ServiceException:
    """What run history's client raises for an HTTP error status (azureml/_restclient/clientbase.py
    _execute_with_arguments wraps the ErrorResponseException)."""
    response = requests.Response()
    response.status_code = status
    response._content = b'{"error": {"code": "UserError", "message": "from the test", "details": []}}'
    response.headers["Content-Type"] = "application/json"
    classes = {name: value for name, value in vars(run_history_models).items() if isinstance(value, type)}
    return ServiceException(RunHistoryErrorResponse(Deserializer(classes), response))


def published_pipeline(version: str, pipeline_id: str) -> PublishedPipeline:
    published = create_autospec(PublishedPipeline, instance=True)
    published.version = version
    published.id = pipeline_id
    return published


def step_run(name: str, run_id: str, status: str, metrics: dict, properties: dict | None = None,
             tags: dict | None = None) -> Run:
    step = create_autospec(Run, instance=True)
    step.name = name
    step.id = run_id
    step.tags = tags or {}
    step.get_details.return_value = {"status": status, "properties": properties or {}, "logFiles": {
        "user_logs/std_log.txt": "https://acct.blob.core.windows.net/logs/std_log.txt?sig=SECRET"}}
    step.get_metrics.return_value = metrics
    step.get_portal_url.return_value = f"https://ml.azure.com/runs/{run_id}"
    return step


def pipeline_children(run: PipelineRun, plain: list, rehydrated: list | None = None) -> None:
    """A pipeline run's step runs as the SDK gives them: `get_children(_rehydrate_runs=False)` yields each as a
    plain Run with its own id; rehydrated (get_steps(), get_children()), an `azureml.ReusedStepRun` child becomes
    the run it reused, by that run's id (StepRun._from_reused_dto, azureml/pipeline/core/run.py)."""
    rehydrated = plain if rehydrated is None else rehydrated
    run.get_children.side_effect = lambda *args, _rehydrate_runs=True, **filters: iter(
        list(rehydrated if _rehydrate_runs else plain))
    run.get_steps.side_effect = lambda: iter(list(rehydrated))


def registered_model(name: str, version: int, tags: dict, properties: dict | None = None) -> Model:
    model = create_autospec(Model, instance=True)
    model.name = name
    model.version = version
    model.tags = tags
    model.properties = properties or {}
    return model


@pytest.fixture(scope="module")
def real_version() -> str:
    """The real content hash of the real definition: what the adapter must find on the endpoint."""
    datastore = pipelines.local_datastore("training_data", "incoming")
    definition = pipelines.load_definition("diabetes_training", datastore=datastore, compute_target="cpu-cluster")
    return pipelines.pipeline_version(definition)


@pytest.fixture(autouse=True)
def no_backoff_sleep(monkeypatch):
    monkeypatch.setattr(retrainer.retry, "retry", retrainer.retry.Retry(sleep=lambda seconds: None))


PATCHED = {   # the azureml names the adapter looks up, where it looks them up
    "Workspace": "azureml.core.Workspace",
    "Datastore": "azureml.core.Datastore",
    "Experiment": "azureml.core.Experiment",
    "Run": "azureml.core.Run",
    "Model": "azureml.core.Model",
    "Pipeline": "azureml.pipeline.core.Pipeline",
    "PipelineEndpoint": "azureml.pipeline.core.PipelineEndpoint",
    "TokenAuthentication": "azureml.core.authentication.TokenAuthentication",
    "ManagedIdentityCredential": "azure.identity.ManagedIdentityCredential",
    "DefaultAzureCredential": "azure.identity.DefaultAzureCredential",
    "ServicePrincipalAuthentication": "azureml.core.authentication.ServicePrincipalAuthentication",
    "AzureCliAuthentication": "azureml.core.authentication.AzureCliAuthentication",
}


@pytest.fixture(scope="module")
def autospecs() -> dict:
    """create_autospec is slow on these big classes: build each spec once and reset it for every test."""
    import importlib

    classes = {name: create_autospec(getattr(importlib.import_module(target.rsplit(".", 1)[0]), name))
               for name, target in PATCHED.items()}
    instances = {"workspace": create_autospec(Workspace, instance=True),
                 "experiment": create_autospec(Experiment, instance=True),
                 "endpoint": create_autospec(PipelineEndpoint, instance=True),
                 "anchor": create_autospec(Run, instance=True)}
    return {**classes, **instances}


class SDK:
    """Autospec'd azureml classes patched in, wired to return autospec'd workspace, experiment and endpoint."""

    def __init__(self, mocker, autospecs: dict):
        for spec in autospecs.values():
            spec.reset_mock(return_value=True, side_effect=True)
        for name, target in PATCHED.items():
            setattr(self, name, mocker.patch(target, new=autospecs[name]))
        self.workspace = autospecs["workspace"]
        self.Workspace.get.return_value = self.workspace
        # A real datastore object (no workspace needed), so DataPath is the real thing too.
        self.datastore = pipelines.local_datastore("training_data", "incoming")
        self.Datastore.get.return_value = self.datastore
        self.experiment = autospecs["experiment"]
        self.Experiment.return_value = self.experiment
        self.endpoint = autospecs["endpoint"]
        self.endpoint.name = "diabetes-training"
        self.endpoint.status = "Active"
        self.endpoint.pipeline_version_list = [PipelineIdVersion(version="0", pipeline_id="pp-1")]
        self.PipelineEndpoint.list.return_value = [self.endpoint]
        self.Pipeline.return_value = create_autospec(Pipeline, instance=True)
        self.Model.list.return_value = []
        self.run_history: dict[str, Run] = {}     # runs by id, as Run.get finds them
        self.children: list[Run] = []             # the anchor's child runs, as the service records them
        self.anchor = autospecs["anchor"]
        self.anchor.get_children.side_effect = lambda **filters: iter(list(self.children))
        self.experiment.start_logging.side_effect = self.start_logging
        self.Run.get.side_effect = self.get_run

    def start_logging(self, *args, run_id=None, tags=None, **kwargs) -> Run:
        """Run history's PATCH by id: the first call creates the run with its tags, a later one finds it."""
        if run_id not in self.run_history:
            self.anchor.id = run_id
            self.anchor.get_tags.return_value = dict(tags or {})
            self.run_history[run_id] = self.anchor
        return self.run_history[run_id]

    def get_run(self, workspace, run_id) -> Run:
        if run_id not in self.run_history:
            raise run_history_error(404)
        return self.run_history[run_id]

    def submitted_under_the_anchor(self, run: PipelineRun):
        """An endpoint.submit side effect: the service records the pipeline run as the anchor's child."""
        def submit(experiment_name, pipeline_parameters=None, parent_run_id=None, pipeline_version=None):
            assert parent_run_id == self.anchor.id
            self.children.append(run)
            return run
        return submit


@pytest.fixture
def sdk(mocker, autospecs) -> SDK:
    return SDK(mocker, autospecs)


def submitted_run(run_id: str = "pipeline-run-1") -> PipelineRun:
    run = create_autospec(PipelineRun, instance=True)
    run.id = run_id
    run.get_portal_url.return_value = f"https://ml.azure.com/runs/{run_id}"
    return run


REF = PublishedPipelineRef(name="diabetes_training", version="v-hash", pipeline_id="pp-1",
                           endpoint="diabetes-training")


# ---------------------------------------------------------------- workspace and auth

def test_workspace_uses_azure_cli_auth_when_configured(sdk):
    AzureMLBackend(settings(aml_auth="cli")).current_model("diabetes_model")

    sdk.AzureCliAuthentication.assert_called_once_with()
    sdk.Workspace.get.assert_called_once_with(
        name="ml-ws", auth=sdk.AzureCliAuthentication.return_value,
        subscription_id="11111111-2222-3333-4444-555555555555", resource_group="ml-rg")


def test_workspace_uses_service_principal_from_settings(sdk):
    backend = AzureMLBackend(settings(aml_auth="service_principal", aml_tenant_id="tenant-1",
                                      aml_client_id="app-1", aml_client_secret="s3cret"))
    backend.current_model("diabetes_model")

    sdk.ServicePrincipalAuthentication.assert_called_once_with(
        tenant_id="tenant-1", service_principal_id="app-1", service_principal_password="s3cret")
    assert sdk.Workspace.get.call_args.kwargs["auth"] is sdk.ServicePrincipalAuthentication.return_value


def test_workspace_uses_user_assigned_managed_identity_through_azure_identity(sdk):
    """Issue 7 item 3: not MsiAuthentication (msrestazure's MSI_ENDPOINT/MSI_SECRET, api-version 2017-09-01),
    but TokenAuthentication over azure-identity's ManagedIdentityCredential, which speaks the
    IDENTITY_ENDPOINT/IDENTITY_HEADER protocol App Service and Functions document."""
    AzureMLBackend(settings(aml_auth="msi", aml_client_id="identity-client-id")).current_model("m")

    sdk.ManagedIdentityCredential.assert_called_once_with(client_id="identity-client-id")
    sdk.TokenAuthentication.assert_called_once()
    assert sdk.Workspace.get.call_args.kwargs["auth"] is sdk.TokenAuthentication.return_value


def test_workspace_uses_system_assigned_managed_identity_without_client_id(sdk):
    AzureMLBackend(settings(aml_auth="msi")).current_model("m")

    sdk.ManagedIdentityCredential.assert_called_once_with(client_id=None)


def test_default_auth_is_default_azure_credential_with_the_user_assigned_identity(sdk):
    AzureMLBackend(settings(aml_auth="default", aml_client_id="identity-client-id")).current_model("m")

    sdk.DefaultAzureCredential.assert_called_once_with(managed_identity_client_id="identity-client-id")
    sdk.ManagedIdentityCredential.assert_not_called()
    assert sdk.Workspace.get.call_args.kwargs["auth"] is sdk.TokenAuthentication.return_value


def test_the_token_callback_gives_azureml_the_managed_identity_token_for_the_audience_it_asks(sdk):
    """The real TokenAuthentication calls the callback with an ADAL resource and uses the string it returns
    (azureml/core/authentication.py TokenAuthentication._get_aad_token); the credential gets the MSAL scope."""
    credential = create_autospec(ManagedIdentityCredential, instance=True)
    credential.get_token.return_value = AccessToken("arm-token", 4102444800)
    sdk.ManagedIdentityCredential.return_value = credential

    AzureMLBackend(settings(aml_auth="msi")).current_model("m")

    callback = sdk.TokenAuthentication.call_args.kwargs["get_token_for_audience"]
    with patch.object(authentication, "TokenAuthentication", TokenAuthentication):   # the real class
        auth = TokenAuthentication(get_token_for_audience=callback)
        assert auth.get_token() == "arm-token"
    resource = auth._cloud_type.endpoints.active_directory_resource_id      # e.g. https://management.core.windows.net/
    credential.get_token.assert_called_once_with(resource + "/.default")


def test_workspace_is_looked_up_once_per_backend(sdk):
    backend = AzureMLBackend(settings())
    backend.current_model("m")
    backend.find_model("m", "run-1")

    sdk.Workspace.get.assert_called_once()


# ---------------------------------------------------------------- publishing

def test_intermediates_go_to_the_workspace_default_datastore_unless_one_is_named(sdk):
    from retrainer.localrun.graph import read_graph

    default = AzureMLBackend(settings()).definition("diabetes_training")
    sdk.Datastore.get.side_effect = lambda workspace, name: pipelines.local_datastore(name, "scratch")
    named = AzureMLBackend(settings(intermediate_datastore="scratch_store")).definition("diabetes_training")

    assert read_graph(default.steps)[0].output_datastores == {"prepped_data": None}
    assert read_graph(named.steps)[0].output_datastores == {"prepped_data": "scratch_store"}
    sdk.Datastore.get.assert_any_call(sdk.workspace, "scratch_store")


def endpoint_listing(sdk) -> None:
    """The one way the adapter looks an endpoint up: a listing with the disabled ones."""
    sdk.PipelineEndpoint.list.assert_called_once_with(workspace=sdk.workspace, active_only=False, max_results=1000)


def test_missing_endpoint_publishes_the_pipeline_and_creates_the_endpoint(sdk, real_version):
    other = create_autospec(PipelineEndpoint, instance=True)
    other.name = "another-endpoint"
    sdk.PipelineEndpoint.list.return_value = [other]
    published = published_pipeline(real_version, "pp-new")
    sdk.Pipeline.return_value.publish.return_value = published

    ref = AzureMLBackend(settings()).publish("diabetes_training")

    sdk.Datastore.get.assert_called_once_with(sdk.workspace, "training_data")
    endpoint_listing(sdk)
    workspace, steps = sdk.Pipeline.call_args.args
    assert workspace is sdk.workspace
    assert [step.name for step in steps] == ["prep", "train"]
    publish = sdk.Pipeline.return_value.publish
    publish.assert_called_once()
    assert publish.call_args.kwargs["name"] == "diabetes_training"
    assert publish.call_args.kwargs["version"] == real_version
    sdk.PipelineEndpoint.publish.assert_called_once_with(
        workspace=sdk.workspace, name="diabetes-training", pipeline=published,
        description=sdk.PipelineEndpoint.publish.call_args.kwargs["description"])
    assert ref == PublishedPipelineRef(name="diabetes_training", version=real_version, pipeline_id="pp-new",
                                       endpoint="diabetes-training", newly_published=True)


def test_endpoint_whose_default_has_this_version_is_used_without_publishing(sdk, real_version):
    sdk.endpoint.get_pipeline.return_value = published_pipeline(real_version, "pp-current")

    ref = AzureMLBackend(settings()).publish("diabetes_training")

    sdk.endpoint.get_pipeline.assert_called_once_with()    # no version: the endpoint's default
    sdk.Pipeline.assert_not_called()
    sdk.PipelineEndpoint.publish.assert_not_called()
    sdk.endpoint.add_default.assert_not_called()
    assert ref.pipeline_id == "pp-current" and ref.version == real_version and not ref.newly_published


def test_endpoint_with_another_version_gets_the_new_pipeline_as_default(sdk, real_version):
    sdk.endpoint.get_pipeline.return_value = published_pipeline("an-older-hash", "pp-old")
    published = published_pipeline(real_version, "pp-new")
    sdk.Pipeline.return_value.publish.return_value = published

    ref = AzureMLBackend(settings()).publish("diabetes_training")

    assert sdk.Pipeline.return_value.publish.call_args.kwargs["version"] == real_version
    sdk.endpoint.add_default.assert_called_once_with(published)
    sdk.PipelineEndpoint.publish.assert_not_called()
    assert ref.pipeline_id == "pp-new" and ref.newly_published


def test_disabled_endpoint_is_a_clear_error_naming_the_setting(sdk):
    sdk.endpoint.status = "Disabled"

    with pytest.raises(RuntimeError, match="RETRAINER_PIPELINE_ENDPOINT"):
        AzureMLBackend(settings()).publish("diabetes_training")
    sdk.Pipeline.assert_not_called()


def test_endpoint_is_found_by_name_over_a_listing_with_disabled_ones(sdk, real_version):
    """Issue 7 item 6: `PipelineEndpoint.get` raises ErrorResponseException for any non-200, so the adapter
    no longer reads an error as "missing": it lists every endpoint (pipeline_endpoint.py, PipelineEndpoint.list)
    and picks the name; only a successful listing without it means "publish a new one"."""
    sdk.PipelineEndpoint.get.side_effect = service_error(404)     # would have meant "absent" before
    sdk.endpoint.get_pipeline.return_value = published_pipeline(real_version, "pp-1")

    ref = AzureMLBackend(settings()).publish("diabetes_training")

    endpoint_listing(sdk)
    sdk.PipelineEndpoint.get.assert_not_called()
    sdk.PipelineEndpoint.publish.assert_not_called()
    assert ref.pipeline_id == "pp-1" and not ref.newly_published


def test_disabled_endpoint_found_in_the_listing_is_not_published_over(sdk):
    disabled = create_autospec(PipelineEndpoint, instance=True)
    disabled.name, disabled.status = "diabetes-training", "Disabled"
    sdk.PipelineEndpoint.list.return_value = [disabled]

    with pytest.raises(RuntimeError, match="is Disabled"):
        AzureMLBackend(settings()).publish("diabetes_training")
    sdk.PipelineEndpoint.publish.assert_not_called()


def test_endpoint_lookup_error_other_than_not_found_is_raised(sdk):
    sdk.PipelineEndpoint.list.side_effect = service_error(403)

    with pytest.raises(ErrorResponseException):
        AzureMLBackend(settings()).publish("diabetes_training")
    sdk.Pipeline.assert_not_called()



# ---------------------------------------------------------------- looking the published pipeline up (the functions)

@pytest.fixture
def deployed(monkeypatch, tmp_path, real_version):
    """The manifest `python -m retrainer publish` packages with the app, recording the deployed version."""
    manifest = tmp_path / "published.json"
    pipelines.record_version("diabetes_training", real_version, manifest)
    monkeypatch.setattr(pipelines, "PUBLISHED_MANIFEST", manifest)

    def no_building(*args, **kwargs):
        raise AssertionError("the functions build no definition (no azureml-pipeline-steps at run time)")

    monkeypatch.setattr(pipelines, "load_definition", no_building)
    return manifest


def test_the_functions_use_the_endpoints_default_when_it_is_the_deployed_version(sdk, real_version, deployed):
    sdk.endpoint.get_pipeline.return_value = published_pipeline(real_version, "pp-current")

    ref = AzureMLBackend(settings()).ensure_published("diabetes_training")

    endpoint_listing(sdk)
    sdk.endpoint.get_pipeline.assert_called_once_with()    # no version: the endpoint's default
    sdk.Pipeline.assert_not_called()
    sdk.PipelineEndpoint.publish.assert_not_called()
    assert ref == PublishedPipelineRef(name="diabetes_training", version=real_version, pipeline_id="pp-current",
                                       endpoint="diabetes-training")


def test_a_default_of_another_version_is_a_clear_error_and_nothing_is_published(sdk, real_version, deployed):
    sdk.endpoint.get_pipeline.return_value = published_pipeline("an-older-hash", "pp-old")

    with pytest.raises(PipelineNotPublished, match=f"serves diabetes_training version an-older-hash, this "
                                                   f"deployment expects {real_version}"):
        AzureMLBackend(settings()).ensure_published("diabetes_training")
    sdk.Pipeline.assert_not_called()
    sdk.endpoint.add_default.assert_not_called()


def test_a_deployment_without_a_recorded_version_asks_for_publish(sdk, deployed):
    deployed.write_text("{}")

    with pytest.raises(PipelineNotPublished, match="python -m retrainer publish"):
        AzureMLBackend(settings()).ensure_published("diabetes_training")
    sdk.PipelineEndpoint.list.assert_not_called()


def test_a_missing_endpoint_asks_for_publish(sdk, deployed):
    sdk.PipelineEndpoint.list.return_value = []

    with pytest.raises(PipelineNotPublished, match="'diabetes-training' does not exist in workspace 'ml-ws'"):
        AzureMLBackend(settings()).ensure_published("diabetes_training")
    sdk.PipelineEndpoint.publish.assert_not_called()


def test_a_disabled_endpoint_is_not_used(sdk, deployed):
    sdk.endpoint.status = "Disabled"

    with pytest.raises(RuntimeError, match="is Disabled"):
        AzureMLBackend(settings()).ensure_published("diabetes_training")


def test_the_lookup_is_cached_per_process(sdk, real_version, deployed):
    sdk.endpoint.get_pipeline.return_value = published_pipeline(real_version, "pp-current")
    backend = AzureMLBackend(settings())

    assert backend.ensure_published("diabetes_training") == backend.ensure_published("diabetes_training")
    sdk.PipelineEndpoint.list.assert_called_once()


# ---------------------------------------------------------------- submitting

def test_submit_goes_through_the_endpoint_with_a_datapath_on_the_configured_datastore(sdk):
    run = submitted_run()
    sdk.endpoint.submit.return_value = run

    result = AzureMLBackend(settings()).submit(REF, {"input_data": "incoming/diabetes.csv"},
                                               "diabetes-retraining", TAGS)

    endpoint_listing(sdk)
    sdk.Datastore.get.assert_called_once_with(sdk.workspace, "training_data")
    sdk.endpoint.submit.assert_called_once()
    call = sdk.endpoint.submit.call_args
    assert call.args == ("diabetes-retraining",)
    data_path = call.kwargs["pipeline_parameters"]["input_data"]
    assert isinstance(data_path, DataPath)
    assert data_path.datastore_name == "training_data"
    assert data_path.path_on_datastore == "incoming/diabetes.csv"
    assert result.run_id == "pipeline-run-1"
    assert result.url == "https://ml.azure.com/runs/pipeline-run-1"


def test_submit_runs_the_ensured_pipeline_not_whatever_is_the_default(sdk):
    """Issue 7 item 7: without `pipeline_version`, PipelineEndpoint.submit runs the endpoint's default at the
    time the service gets the call (pipeline_endpoint.py, PipelineEndpoint.submit): a concurrent publish
    would swap the pipeline under the run. The version that holds the ref's pipeline id is passed."""
    sdk.endpoint.pipeline_version_list = [PipelineIdVersion(version="0", pipeline_id="pp-1"),
                                          PipelineIdVersion(version="1", pipeline_id="pp-newer-default")]
    sdk.endpoint.get_default_version.return_value = "1"
    sdk.endpoint.submit.return_value = submitted_run()

    AzureMLBackend(settings()).submit(REF, {"input_data": "incoming/diabetes.csv"}, "diabetes-retraining", TAGS)

    assert sdk.endpoint.submit.call_args.kwargs["pipeline_version"] == "0"


def test_submit_rereads_a_cached_endpoint_that_does_not_list_the_pipeline_yet(sdk):
    stale = create_autospec(PipelineEndpoint, instance=True)
    stale.name, stale.status = "diabetes-training", "Active"
    stale.pipeline_version_list = [PipelineIdVersion(version="0", pipeline_id="pp-0")]
    sdk.endpoint.pipeline_version_list = [PipelineIdVersion(version="0", pipeline_id="pp-0"),
                                          PipelineIdVersion(version="1", pipeline_id="pp-1")]
    sdk.endpoint.submit.return_value = submitted_run()
    sdk.PipelineEndpoint.list.side_effect = [[stale], [sdk.endpoint]]
    backend = AzureMLBackend(settings())

    backend.submit(REF, {"input_data": "incoming/diabetes.csv"}, "diabetes-retraining", TAGS)

    stale.submit.assert_not_called()
    assert sdk.endpoint.submit.call_args.kwargs["pipeline_version"] == "1"


def test_submit_of_a_pipeline_the_endpoint_no_longer_holds_is_a_clear_error(sdk):
    sdk.endpoint.pipeline_version_list = [PipelineIdVersion(version="0", pipeline_id="pp-other")]

    with pytest.raises(LookupError, match="holds no published pipeline pp-1"):
        AzureMLBackend(settings()).submit(REF, {"input_data": "x.csv"}, "diabetes-retraining", TAGS)
    sdk.endpoint.submit.assert_not_called()


ANCHOR_ID = anchor_run_id("diabetes-retraining", DIGEST)
RUN_TAGS = {**TAGS, "retrainer.pipeline_version": "v-hash"}


class ProcessDied(BaseException):
    """A fault injected between two calls: the host process is gone (nothing catches a BaseException)."""


def test_submit_creates_the_anchor_with_the_tags_then_the_pipeline_as_its_child(sdk):
    """Issue 7 item 4: the key travels with the submission. The anchor is created with its tags in one PATCH
    by a deterministic id; the pipeline run is its child; the pipeline run is tagged and the anchor ended."""
    run = submitted_run()
    sdk.endpoint.submit.side_effect = sdk.submitted_under_the_anchor(run)

    result = AzureMLBackend(settings()).submit(REF, {"input_data": "incoming/diabetes.csv"},
                                               "diabetes-retraining", TAGS)

    sdk.Experiment.assert_called_with(sdk.workspace, "diabetes-retraining")
    start = sdk.experiment.start_logging.call_args
    assert start.kwargs == {"run_id": ANCHOR_ID, "tags": {**RUN_TAGS, "retrainer.app": "retrainer.anchor"},
                            "outputs": False, "snapshot_directory": None}
    assert sdk.endpoint.submit.call_args.kwargs["parent_run_id"] == ANCHOR_ID
    run.set_tags.assert_called_once_with(RUN_TAGS)
    sdk.anchor.complete.assert_called_once_with()
    assert result.run_id == "pipeline-run-1" and result.tags == RUN_TAGS


def test_the_anchor_arguments_are_ones_start_logging_passes_on_to_the_run_it_creates():
    """Experiment.start_logging takes **kwargs, so autospec cannot check them: bind them to where they go
    (azureml/core/run.py: Run._start_logging, then Run._create, which takes `tags`)."""
    import inspect

    kwargs = {"run_id": ANCHOR_ID, "tags": RUN_TAGS, "outputs": False, "snapshot_directory": None}
    bound = inspect.signature(Run._start_logging).bind("experiment", **kwargs)
    assert bound.arguments["kwargs"] == {"tags": RUN_TAGS}
    inspect.signature(Run._create).bind("experiment", run_id=ANCHOR_ID, tags=RUN_TAGS)


def test_the_anchor_carries_no_app_tag_so_its_own_run_events_are_ignored(sdk):
    from retrainer.events import RunEvent

    sdk.endpoint.submit.side_effect = sdk.submitted_under_the_anchor(submitted_run())
    AzureMLBackend(settings()).submit(REF, {"input_data": "incoming/diabetes.csv"}, "diabetes-retraining", TAGS)
    anchor_tags = sdk.experiment.start_logging.call_args.kwargs["tags"]
    event = RunEvent(id="e1", type="Microsoft.MachineLearningServices.RunCompleted",
                     topic=settings().workspace_topic, subject=f"experiments/x/runs/{ANCHOR_ID}", time=None,
                     run_id=ANCHOR_ID, experiment_name="diabetes-retraining", experiment_id="x", run_type=None,
                     run_status="Completed", run_tags=anchor_tags)

    assert "not submitted by retrainer" in policy.ignore_run_event(event, settings())


def test_crash_between_the_anchor_and_the_pipeline_submit_submits_once_on_retry(sdk):
    run = submitted_run()
    sdk.endpoint.submit.side_effect = ProcessDied()
    with pytest.raises(ProcessDied):
        AzureMLBackend(settings()).submit(REF, {"input_data": "incoming/diabetes.csv"}, "diabetes-retraining", TAGS)

    # the retried invocation, in a new process: nothing to recover, so it submits under the same anchor
    sdk.endpoint.submit.side_effect = sdk.submitted_under_the_anchor(run)
    backend = AzureMLBackend(settings())
    assert backend.find_run("retrainer.key_sha", DIGEST) is None
    result = backend.submit(REF, {"input_data": "incoming/diabetes.csv"}, "diabetes-retraining", TAGS)

    assert {call.kwargs["run_id"] for call in sdk.experiment.start_logging.call_args_list} == {ANCHOR_ID}
    assert sdk.children == [run] and result.run_id == "pipeline-run-1"


def test_crash_between_the_pipeline_submit_and_its_tags_is_recovered_by_find_run(sdk):
    run = submitted_run()
    run.set_tags.side_effect = ProcessDied()
    sdk.endpoint.submit.side_effect = sdk.submitted_under_the_anchor(run)
    with pytest.raises(ProcessDied):
        AzureMLBackend(settings()).submit(REF, {"input_data": "incoming/diabetes.csv"}, "diabetes-retraining", TAGS)

    run.set_tags.side_effect = None
    run.get_tags.return_value = {}            # the pipeline run was never tagged
    found = AzureMLBackend(settings()).find_run("retrainer.key_sha", DIGEST)

    assert found.run_id == "pipeline-run-1" and found.tags == RUN_TAGS
    run.set_tags.assert_called_with(RUN_TAGS)   # its run events now carry the key ml_events matches
    sdk.anchor.complete.assert_called_once_with()
    sdk.endpoint.submit.assert_called_once()


def test_find_run_of_a_tagged_child_changes_nothing(sdk):
    run = submitted_run("pipeline-run-7")
    run.get_tags.return_value = dict(RUN_TAGS)
    sdk.start_logging(run_id=ANCHOR_ID, tags={**RUN_TAGS, "retrainer.app": "retrainer.anchor"})
    sdk.children.append(run)

    found = AzureMLBackend(settings()).find_run("retrainer.key_sha", DIGEST)

    sdk.Run.get.assert_called_once_with(sdk.workspace, ANCHOR_ID)
    assert found.run_id == "pipeline-run-7" and found.tags == RUN_TAGS
    run.set_tags.assert_not_called()
    sdk.anchor.complete.assert_not_called()


def test_find_run_without_an_anchor_is_none(sdk):
    assert AzureMLBackend(settings()).find_run("retrainer.key_sha", DIGEST) is None


def test_find_run_lookup_errors_other_than_not_found_are_raised(sdk):
    sdk.Run.get.side_effect = run_history_error(403)

    with pytest.raises(ServiceException):
        AzureMLBackend(settings()).find_run("retrainer.key_sha", DIGEST)


def test_find_run_by_another_tag_is_refused(sdk):
    with pytest.raises(ValueError, match="retrainer.key_sha"):
        AzureMLBackend(settings()).find_run("retrainer.key", KEY)
    sdk.Run.get.assert_not_called()


QUOTED_KEY = 'manual:retrain "nightly", 2026'       # an Idempotency-Key a client may send


def test_a_key_with_a_quote_is_looked_up_by_its_digest_not_a_query(sdk):
    """Issue 7 item 5: `Run.list(tags=)` writes the value into OData unescaped
    (azureml/_restclient/_odata/runs.py get_filter_run_tag_equals); the run is found by an id made of the
    key's digest instead, and no tag query is sent."""
    tags = policy.run_tags(QUOTED_KEY, "manual", "v-hash")
    sdk.endpoint.submit.side_effect = sdk.submitted_under_the_anchor(submitted_run())
    backend = AzureMLBackend(settings())

    backend.submit(REF, {"input_data": "incoming/diabetes.csv"}, "diabetes-retraining", tags)
    backend.find_run("retrainer.key_sha", policy.key_digest(QUOTED_KEY))

    anchor_id = sdk.experiment.start_logging.call_args.kwargs["run_id"]
    assert anchor_id == anchor_run_id("diabetes-retraining", policy.key_digest(QUOTED_KEY))
    assert anchor_id.startswith("retrainer_") and anchor_id[len("retrainer_"):].isalnum()
    sdk.Run.get.assert_called_once_with(sdk.workspace, anchor_id)
    sdk.Run.list.assert_not_called()


def test_submit_after_creating_the_endpoint_goes_through_the_new_endpoint(sdk, real_version):
    sdk.PipelineEndpoint.list.return_value = []
    sdk.Pipeline.return_value.publish.return_value = published_pipeline(real_version, "pp-new")
    new_endpoint = create_autospec(PipelineEndpoint, instance=True)
    new_endpoint.pipeline_version_list = [PipelineIdVersion(version="0", pipeline_id="pp-new")]
    new_endpoint.submit.return_value = submitted_run()
    sdk.PipelineEndpoint.publish.return_value = new_endpoint
    backend = AzureMLBackend(settings())

    ref = backend.publish("diabetes_training")
    backend.submit(ref, {"input_data": "incoming/diabetes.csv"}, "diabetes-retraining", TAGS)

    new_endpoint.submit.assert_called_once()
    sdk.PipelineEndpoint.list.assert_called_once()    # the look-up that found nothing; no second one
    assert new_endpoint.submit.call_args.kwargs["pipeline_version"] == "0"


def test_submit_without_the_idempotency_tag_is_refused(sdk):
    with pytest.raises(ValueError, match="retrainer.key_sha"):
        AzureMLBackend(settings()).submit(REF, {"input_data": "x.csv"}, "diabetes-retraining",
                                          {"retrainer.trigger": "manual"})
    sdk.endpoint.submit.assert_not_called()


def test_submit_without_the_idempotency_tag_is_refused(sdk):
    with pytest.raises(ValueError, match="retrainer.key_sha"):
        AzureMLBackend(settings()).submit(REF, {"input_data": "x.csv"}, "diabetes-retraining",
                                          {"retrainer.trigger": "manual"})
    sdk.endpoint.submit.assert_not_called()
    sdk.experiment.start_logging.assert_not_called()


def test_a_second_submit_of_a_key_returns_the_run_of_the_first(sdk):
    sdk.endpoint.submit.side_effect = sdk.submitted_under_the_anchor(submitted_run())
    backend = AzureMLBackend(settings())

    first = backend.submit(REF, {"input_data": "incoming/diabetes.csv"}, "diabetes-retraining", TAGS)
    second = backend.submit(REF, {"input_data": "incoming/diabetes.csv"}, "diabetes-retraining", TAGS)

    sdk.endpoint.submit.assert_called_once()
    assert first == second and first.run_id == "pipeline-run-1"


def test_transient_submit_error_with_a_run_already_created_does_not_submit_again(sdk):
    existing = submitted_run("pipeline-run-created")

    def created_but_the_response_was_lost(*args, **kwargs):
        sdk.children.append(existing)
        raise service_error(503)

    sdk.endpoint.submit.side_effect = created_but_the_response_was_lost

    result = AzureMLBackend(settings()).submit(REF, {"input_data": "incoming/diabetes.csv"},
                                               "diabetes-retraining", TAGS)

    sdk.endpoint.submit.assert_called_once()
    assert result.run_id == "pipeline-run-created"
    existing.set_tags.assert_called_once_with(RUN_TAGS)


def test_transient_submit_error_with_no_run_submits_once_more(sdk):
    run = submitted_run("pipeline-run-2")
    sdk.endpoint.submit.side_effect = [service_error(429), run]

    result = AzureMLBackend(settings()).submit(REF, {"input_data": "incoming/diabetes.csv"},
                                               "diabetes-retraining", TAGS)

    assert sdk.endpoint.submit.call_count == 2
    assert sdk.anchor.get_children.call_count == 2        # before each attempt
    assert result.run_id == "pipeline-run-2"
    run.set_tags.assert_called_once()


def test_non_transient_submit_error_is_raised_without_retry(sdk):
    sdk.endpoint.submit.side_effect = service_error(400)

    with pytest.raises(ErrorResponseException):
        AzureMLBackend(settings()).submit(REF, {"input_data": "incoming/diabetes.csv"},
                                          "diabetes-retraining", TAGS)
    sdk.endpoint.submit.assert_called_once()


def test_transient_set_tags_error_is_retried_without_resubmitting(sdk):
    run = submitted_run()
    run.set_tags.side_effect = [requests.ConnectionError("reset"), None]
    sdk.endpoint.submit.return_value = run

    AzureMLBackend(settings()).submit(REF, {"input_data": "incoming/diabetes.csv"}, "diabetes-retraining", TAGS)

    sdk.endpoint.submit.assert_called_once()
    assert run.set_tags.call_count == 2


# ---------------------------------------------------------------- reading runs

def test_get_run_maps_the_pipeline_run_and_its_steps(sdk):
    run = submitted_run("pipeline-run-1")
    run.get_details.return_value = {"status": "Completed", "properties": {}}
    run.get_tags.return_value = dict(TAGS)
    prep = step_run("prep", "step-prep", "Finished", {"rows": 1000})
    train = step_run("train", "step-train", "Finished", {"AUC": [0.71, 0.88], "Accuracy": 0.8})
    pipeline_children(run, [prep, train])
    sdk.run_history["pipeline-run-1"] = run

    info = AzureMLBackend(settings()).get_run("pipeline-run-1")

    sdk.Run.get.assert_called_once_with(sdk.workspace, "pipeline-run-1")
    assert info == RunInfo(run_id="pipeline-run-1", status=RunStatus.COMPLETED, tags=TAGS, steps=(
        StepRunInfo(name="prep", run_id="step-prep", status=RunStatus.COMPLETED, metrics={"rows": 1000},
                    log_location="https://ml.azure.com/runs/step-prep"),
        StepRunInfo(name="train", run_id="step-train", status=RunStatus.COMPLETED,
                    metrics={"AUC": 0.88, "Accuracy": 0.8}, log_location="https://ml.azure.com/runs/step-train"),
    ))
    assert "SECRET" not in repr(info)   # log SAS URLs never leave the adapter


def test_get_run_of_a_failed_run_names_the_failed_step_and_the_error(sdk):
    run = submitted_run("pipeline-run-1")
    run.get_details.return_value = {"status": "Failed",
                                    "error": {"error": {"code": "UserError", "message": "train.py exited 1"}}}
    run.get_tags.return_value = dict(TAGS)
    pipeline_children(run, [step_run("prep", "step-prep", "Finished", {}),
                            step_run("train", "step-train", "Failed", {})])
    sdk.run_history["pipeline-run-1"] = run

    info = AzureMLBackend(settings()).get_run("pipeline-run-1")

    assert info.status == RunStatus.FAILED
    assert info.error == "train.py exited 1"
    assert info.failed_step().name == "train"
    assert info.failed_step().log_location == "https://ml.azure.com/runs/step-train"


def test_get_run_reads_a_reused_steps_metrics_from_the_run_it_reused(sdk):
    run = submitted_run("pipeline-run-2")
    run.get_details.return_value = {"status": "Completed"}
    run.get_tags.return_value = {}
    train = step_run("train", "step-train-2", "Finished", {}, properties={"azureml.reusedrunid": "step-train-1"})
    pipeline_children(run, [train])
    original = step_run("train", "step-train-1", "Finished", {"AUC": 0.91})
    sdk.run_history.update({"pipeline-run-2": run, "step-train-1": original})

    info = AzureMLBackend(settings()).get_run("pipeline-run-2")

    assert info.step("train").metrics == {"AUC": 0.91}
    assert info.step("train").reused is True
    assert info.step("train").run_id == "step-train-2"


def test_a_reused_step_run_is_reported_reused_under_its_own_id(sdk):
    """Issue 7 item 10: a step Azure ML reused is a child of type azureml.ReusedStepRun with the reused run's
    id in its tags; get_steps() would load it as that original run (StepRun._from_reused_dto), so the
    adapter reads the children as plain runs."""
    run = submitted_run("pipeline-run-2")
    run.get_details.return_value = {"status": "Completed"}
    run.get_tags.return_value = {}
    reused = step_run("train", "step-train-2", "Finished", {}, tags={"azureml.reusedrunid": "step-train-1",
                                                                     "azureml.nodeid": "n2"})
    original = step_run("train", "step-train-1", "Finished", {"AUC": 0.91})
    pipeline_children(run, plain=[reused], rehydrated=[original])
    sdk.run_history.update({"pipeline-run-2": run, "step-train-1": original})

    info = AzureMLBackend(settings()).get_run("pipeline-run-2")

    assert info.step("train") == StepRunInfo(
        name="train", run_id="step-train-2", status=RunStatus.COMPLETED, metrics={"AUC": 0.91},
        log_location="https://ml.azure.com/runs/step-train-2", reused=True)


# ---------------------------------------------------------------- models

FINISHED = RunInfo(run_id="pipeline-run-1", status=RunStatus.COMPLETED,
                   tags={**TAGS, "retrainer.pipeline_version": "v-hash"}, steps=(
                       StepRunInfo(name="prep", run_id="step-prep", status=RunStatus.COMPLETED),
                       StepRunInfo(name="train", run_id="step-train", status=RunStatus.COMPLETED,
                                   metrics={"AUC": 0.88}),
                   ))


def test_register_model_downloads_from_the_model_step_and_registers_with_lineage(sdk):
    train = step_run("train", "step-train", "Finished", {"AUC": 0.88})
    train.download_file.side_effect = lambda name, output_file_path: Path(output_file_path).write_bytes(b"model")
    sdk.Run.get.side_effect = lambda workspace, run_id: {"step-train": train}[run_id]
    seen = {}

    def register(workspace, model_path, model_name, **kwargs):
        seen["content"] = Path(model_path).read_bytes()   # the downloaded file, still there while registering
        return registered_model(model_name, 4, kwargs["tags"], kwargs["properties"])

    sdk.Model.register.side_effect = register

    ref = AzureMLBackend(settings()).register_model(
        FINISHED, "diabetes_model", "outputs/diabetes_model.pkl", tags={"retrainer.key": KEY},
        properties={"AUC": "0.88", "Accuracy": 0.8})

    sdk.Run.get.assert_called_once_with(sdk.workspace, "step-train")
    assert train.download_file.call_args.kwargs["name"] == "outputs/diabetes_model.pkl"
    call = sdk.Model.register.call_args
    assert call.kwargs["workspace"] is sdk.workspace
    assert call.kwargs["model_name"] == "diabetes_model"
    assert Path(call.kwargs["model_path"]).name == "diabetes_model.pkl"
    assert seen["content"] == b"model"
    assert call.kwargs["tags"] == {"retrainer.key": KEY, "retrainer.key_sha": DIGEST,
                                   "retrainer.run_id": "pipeline-run-1",
                                   "retrainer.blob": "incoming/diabetes.csv", "retrainer.pipeline_version": "v-hash"}
    assert call.kwargs["properties"] == {"AUC": "0.88", "Accuracy": "0.8"}
    assert ref.name == "diabetes_model" and ref.version == 4 and ref.run_id == "pipeline-run-1"


def test_register_model_of_a_reused_step_downloads_from_the_original_run(sdk):
    train = step_run("train", "step-train", "Finished", {}, properties={"azureml.reusedrunid": "step-train-0"})
    original = step_run("train", "step-train-0", "Finished", {"AUC": 0.88})
    original.download_file.side_effect = lambda name, output_file_path: Path(output_file_path).write_bytes(b"m")
    sdk.Run.get.side_effect = lambda workspace, run_id: {"step-train": train, "step-train-0": original}[run_id]
    sdk.Model.register.return_value = registered_model("diabetes_model", 5, {"retrainer.run_id": "pipeline-run-1"})

    AzureMLBackend(settings()).register_model(FINISHED, "diabetes_model", "outputs/diabetes_model.pkl", {}, {})

    original.download_file.assert_called_once()
    train.download_file.assert_not_called()


def test_register_model_without_the_model_step_is_a_clear_error(sdk):
    only_prep = RunInfo(run_id="pipeline-run-1", status=RunStatus.COMPLETED, steps=(
        StepRunInfo(name="prep", run_id="step-prep", status=RunStatus.COMPLETED),))

    with pytest.raises(LookupError, match="RETRAINER_MODEL_STEP"):
        AzureMLBackend(settings()).register_model(only_prep, "diabetes_model", "outputs/m.pkl", {}, {})
    sdk.Model.register.assert_not_called()


def test_current_model_is_none_when_the_name_has_no_version(sdk):
    sdk.Model.list.return_value = []

    assert AzureMLBackend(settings()).current_model("diabetes_model") is None
    sdk.Model.list.assert_called_once_with(sdk.workspace, name="diabetes_model", latest=True)


def test_current_model_is_the_latest_version(sdk):
    sdk.Model.list.return_value = [registered_model("diabetes_model", 7, {"retrainer.run_id": "run-7"},
                                                    {"AUC": "0.9"})]

    ref = AzureMLBackend(settings()).current_model("diabetes_model")

    assert (ref.version, ref.run_id, ref.properties) == (7, "run-7", {"AUC": "0.9"})


def test_find_model_filters_by_the_run_id_tag(sdk):
    sdk.Model.list.return_value = [registered_model("diabetes_model", 3, {"retrainer.run_id": "pipeline-run-1"})]

    ref = AzureMLBackend(settings()).find_model("diabetes_model", "pipeline-run-1")

    sdk.Model.list.assert_called_once_with(sdk.workspace, name="diabetes_model",
                                           tags=[["retrainer.run_id", "pipeline-run-1"]])
    assert ref.version == 3


def test_find_model_without_a_version_from_that_run_is_none(sdk):
    sdk.Model.list.return_value = []

    assert AzureMLBackend(settings()).find_model("diabetes_model", "pipeline-run-9") is None


def test_transient_model_registry_error_is_retried(sdk):
    from azureml.exceptions import WebserviceException

    sdk.Model.list.side_effect = [WebserviceException("throttled", status_code=429), []]

    assert AzureMLBackend(settings()).current_model("diabetes_model") is None
    assert sdk.Model.list.call_count == 2


def test_importing_the_adapter_does_not_import_azureml():
    import subprocess
    import sys

    code = ("import sys, retrainer.adapters.azureml_v1; "
            "print(sorted(m for m in sys.modules if m.startswith('azureml')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.stdout.strip() == "[]"


def test_transient_register_error_finds_the_version_it_created_instead_of_registering_again(sdk):
    train = step_run("train", "step-train", "Finished", {"AUC": 0.88})
    train.download_file.side_effect = lambda name, output_file_path: Path(output_file_path).write_bytes(b"model")
    sdk.run_history["step-train"] = train
    sdk.Model.register.side_effect = service_error(502)
    sdk.Model.list.return_value = [registered_model("diabetes_model", 6, {"retrainer.run_id": "pipeline-run-1"})]

    ref = AzureMLBackend(settings()).register_model(FINISHED, "diabetes_model", "outputs/diabetes_model.pkl",
                                                    {}, {})

    sdk.Model.register.assert_called_once()
    sdk.Model.list.assert_called_once_with(sdk.workspace, name="diabetes_model",
                                           tags=[["retrainer.run_id", "pipeline-run-1"]])
    assert ref.version == 6


# ---------------------------------------------------------------- the live-workspace check (check-azureml)

def test_the_live_check_creates_one_anchor_by_id_with_its_tags(sdk):
    sdk.workspace.name = "ml-ws"
    sdk.endpoint.default_version = "0"

    lines = list(AzureMLBackend(settings()).live_check())

    assert lines[0] == "signed in to workspace ml-ws with RETRAINER_AML_AUTH=cli"
    assert lines[1] == "pipeline endpoint diabetes-training: Active, default version 0 of 1"
    ids = {call.kwargs["run_id"] for call in sdk.experiment.start_logging.call_args_list}
    assert len(ids) == 1 and sdk.experiment.start_logging.call_count == 2
    assert sdk.Run.get.call_count == 2                      # absent before, found after
    sdk.anchor.complete.assert_called_once_with()
    assert lines[2].startswith(f"anchor run {ids.pop()}: absent before")


def test_the_live_check_fails_when_creating_the_anchor_again_makes_another_run(sdk):
    other = create_autospec(Run, instance=True)
    other.id = "another-run"
    created = []

    def start_logging(*args, **kwargs):
        created.append(sdk.start_logging(*args, **kwargs) if not created else other)
        return created[-1]

    sdk.experiment.start_logging.side_effect = start_logging

    with pytest.raises(LiveCheckFailed, match="created again as another-run"):
        list(AzureMLBackend(settings()).live_check())
    sdk.anchor.complete.assert_not_called()


def test_the_live_check_with_submit_finds_the_pipeline_run_under_its_anchor(sdk, real_version, deployed):
    sdk.endpoint.get_pipeline.return_value = published_pipeline(real_version, "pp-1")
    run = submitted_run("pipeline-run-check")
    run.get_tags.side_effect = lambda: dict(run.set_tags.call_args.args[0])
    sdk.endpoint.submit.side_effect = sdk.submitted_under_the_anchor(run)

    lines = list(AzureMLBackend(settings()).live_check("diabetes.csv"))

    assert lines[-1] == ("pipeline run pipeline-run-check on diabetes.csv, found under its anchor by its key: "
                         "https://ml.azure.com/runs/pipeline-run-check")
    assert sdk.endpoint.submit.call_args.kwargs["pipeline_parameters"]["input_data"].path_on_datastore == \
        "diabetes.csv"
