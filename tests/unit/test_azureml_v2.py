"""The Azure ML SDK v2 adapter against autospec'd azure-ai-ml operations: no workspace here, but every call must
match the installed SDK's signature, or the mock raises TypeError and the test fails. The entities it sends and
reads (PipelineComponent, PipelineJob, Model, child jobs) are azure-ai-ml's real classes; a sent job is also
checked as the REST body the SDK builds from it.
"""
from __future__ import annotations

from unittest.mock import create_autospec

import pytest
from azure.ai.ml import MLClient
from azure.ai.ml.entities import Model, PipelineJob, Workspace
from azure.ai.ml.entities._job.base_job import _BaseJob
from azure.ai.ml.operations import ComponentOperations, JobOperations, ModelOperations, WorkspaceOperations
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.core.rest import HttpResponse

import retrainer.retry
from retrainer import pipelines, policy
from retrainer.adapters import azureml_v2
from retrainer.adapters.azureml_v2 import AzureMLv2Backend, job_name
from retrainer.adapters.azureml_v2_translate import translate
from retrainer.ports import PipelineNotPublished, PublishedPipelineRef, RunInfo, RunStatus, StepRunInfo
from retrainer.settings import Settings
from tests.unit.fakes import Clock, FakeBlobStore

KEY = "blob:incoming/diabetes.csv@0x8DC1"
DIGEST = policy.key_digest(KEY)
TAGS = policy.run_tags(KEY, "blob", "ignored", blob="diabetes.csv", etag="0x8DC1")
WORKSPACE_ID = ("/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/ml-rg/providers/"
                "Microsoft.MachineLearningServices/workspaces/ml-ws")


def settings(**overrides) -> Settings:
    values = dict(backend="azureml_v2", aml_subscription_id="11111111-2222-3333-4444-555555555555",
                  aml_resource_group="ml-rg", aml_workspace="ml-ws", aml_auth="cli", datastore="training_data",
                  compute_target="cpu-cluster", experiment="diabetes-retraining")
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(autouse=True)
def no_backoff_sleep(monkeypatch):
    monkeypatch.setattr(retrainer.retry, "retry", retrainer.retry.Retry(sleep=lambda seconds: None))


@pytest.fixture(scope="module")
def operation_specs() -> dict:
    """create_autospec is slow on these classes: built once, reset for every test."""
    return {"jobs": create_autospec(JobOperations, instance=True),
            "components": create_autospec(ComponentOperations, instance=True),
            "models": create_autospec(ModelOperations, instance=True),
            "workspaces": create_autospec(WorkspaceOperations, instance=True)}


@pytest.fixture
def ml(mocker, operation_specs):
    """MLClient, autospec'd: its constructor's signature is checked too; its operations are the SDK's."""
    client_class = mocker.patch("azure.ai.ml.MLClient", autospec=True)
    client = client_class.return_value
    for name, spec in operation_specs.items():
        spec.reset_mock(return_value=True, side_effect=True)
        setattr(client, name, spec)
    mocker.patch("azure.identity.AzureCliCredential", autospec=True)
    return client


@pytest.fixture
def blobs():
    store = FakeBlobStore(Clock())
    store.put("incoming", "2026/diabetes.csv", b"a,b\n1,2\n")
    return store


@pytest.fixture(scope="module")
def lab():
    """The lab definition, its real version, and its pipeline component as the workspace returns it."""
    definition = pipelines.load_definition("diabetes_training", compute_target="cpu-cluster",
                                           datastore=pipelines.local_datastore("training_data", "incoming"))
    version = pipelines.pipeline_version(definition)
    return version, registered(translate(definition, version))


def registered(component):
    """A component as `components.get` returns it: from its REST body, with an id (steps registered)."""
    from azure.ai.ml.entities import Component

    rest = component._to_rest_object()
    for node in rest.properties.component_spec["jobs"].values():
        node["componentId"] = f"{WORKSPACE_ID}/components/azureml_anonymous/versions/0"
    rest.id = f"{WORKSPACE_ID}/components/{component.name}/versions/{component.version}"
    return Component._from_rest_object(rest)


@pytest.fixture
def deployed(monkeypatch, tmp_path, lab):
    manifest = tmp_path / "published.json"
    monkeypatch.setattr(pipelines, "PUBLISHED_MANIFEST", manifest)
    pipelines.record_version("diabetes_training", lab[0], manifest)
    return lab


def our_job(digest=DIGEST, status="Running", **tags) -> PipelineJob:
    return PipelineJob(name=job_name(digest), experiment_name="diabetes-retraining", status=status,
                       tags={**TAGS, **tags})


def child(name, node, status="Completed", **properties) -> _BaseJob:
    return _BaseJob(name=name, display_name=node, status=status, properties=properties)


def mlflow_answers(backend, metrics_by_run: dict | None) -> list:
    """The workspace's MLflow endpoint, answering runs/get with each run's metrics (None: every run exists, with
    none), 404 for another run; returns the requests."""
    from azure.core import PipelineClient

    tracking = create_autospec(PipelineClient, instance=True)
    asked = []

    def send_request(request, **kwargs):
        asked.append(request)
        run_id = request.url.split("run_id=", 1)[1]
        response = create_autospec(HttpResponse, instance=True)
        if metrics_by_run is not None and run_id not in metrics_by_run:
            response.status_code = 404
            response.json.return_value = {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": f"Run {run_id} not found"}
            response.raise_for_status.side_effect = HttpResponseError("404 Not Found")
            return response
        response.status_code = 200
        metrics = (metrics_by_run or {}).get(run_id, {})
        response.json.return_value = {"run": {"info": {"run_id": run_id}, "data": {"metrics": [
            {"key": k, "value": v, "timestamp": 1, "step": 0} for k, v in metrics.items()]}}}
        return response

    tracking.send_request.side_effect = send_request
    backend._tracking_object = tracking
    return asked


# ---------------------------------------------------------------- pipelines

def test_the_deployed_version_is_looked_up_never_registered(ml, deployed, blobs):
    version, component = deployed
    ml.components.get.return_value = component

    ref = AzureMLv2Backend(settings(), blobs).ensure_published("diabetes_training")

    ml.components.get.assert_called_once_with(name="diabetes_training", version=version)
    ml.components.create_or_update.assert_not_called()
    assert ref == PublishedPipelineRef("diabetes_training", version, component.id, "diabetes_training")


def test_a_version_not_registered_submits_nothing_and_says_what_to_run(ml, deployed, blobs):
    ml.components.get.side_effect = ResourceNotFoundError("not found")

    with pytest.raises(PipelineNotPublished, match=r"not registered .*python -m retrainer publish"):
        AzureMLv2Backend(settings(), blobs).ensure_published("diabetes_training")


def test_publish_registers_the_translated_component_once(ml, lab, blobs):
    version, _ = lab
    ml.components.get.side_effect = ResourceNotFoundError("not found")
    ml.components.create_or_update.side_effect = lambda component, **kwargs: registered(component)

    ref = AzureMLv2Backend(settings(), blobs).publish("diabetes_training")

    [(sent,), _] = ml.components.create_or_update.call_args
    assert (sent.name, sent.version, list(sent.jobs)) == ("diabetes_training", version, ["prep", "train"])
    assert ref.version == version and ref.newly_published


def test_publish_of_a_registered_version_changes_nothing(ml, lab, blobs):
    ml.components.get.return_value = lab[1]

    ref = AzureMLv2Backend(settings(), blobs).publish("diabetes_training")

    ml.components.create_or_update.assert_not_called()
    assert not ref.newly_published


# ---------------------------------------------------------------- runs

def test_submit_names_the_job_after_the_key_with_the_tags_in_the_create_request(ml, deployed, blobs):
    ml.components.get.return_value = deployed[1]
    ml.jobs.create_or_update.side_effect = lambda job, **kwargs: job
    backend = AzureMLv2Backend(settings(), blobs)
    ref = backend.ensure_published("diabetes_training")

    run = backend.submit(ref, {"input_data": "2026/diabetes.csv", "input_data_version": "etag:0x8DC1"},
                         "diabetes-retraining", TAGS)

    [(job,), _] = ml.jobs.create_or_update.call_args
    body = job._to_rest_object().as_dict()
    assert body["name"] == run.run_id == f"retrainer-{DIGEST}"
    properties = body["properties"]
    assert properties["tags"] == {**TAGS, "retrainer.pipeline_version": ref.version}
    assert properties["experimentName"] == "diabetes-retraining"
    assert properties["componentId"] == deployed[1].id and properties["jobs"] == {}
    assert properties["inputs"]["input_data"] == {
        "jobInputType": "uri_file", "uri": "azureml://datastores/training_data/paths/2026/diabetes.csv"}
    assert properties["inputs"]["input_data_version"] == {"jobInputType": "literal", "value": "etag:0x8DC1"}
    assert properties["settings"]["default_compute"] == "cpu-cluster"
    assert run.tags["retrainer.key_sha"] == DIGEST


def test_a_folder_is_bound_as_uri_folder(ml, deployed, blobs):
    ml.components.get.return_value = deployed[1]
    ml.jobs.create_or_update.side_effect = lambda job, **kwargs: job
    backend = AzureMLv2Backend(settings(), blobs)

    backend.submit(backend.ensure_published("diabetes_training"), {"input_data": "2026"}, "diabetes-retraining", TAGS)

    [(job,), _] = ml.jobs.create_or_update.call_args
    assert job._to_rest_object().as_dict()["properties"]["inputs"]["input_data"] == {
        "jobInputType": "uri_folder", "uri": "azureml://datastores/training_data/paths/2026"}


@pytest.mark.parametrize("refusal", [ResourceExistsError("A job with this name already exists"),
                                     HttpResponseError("UserError: already exists")])
def test_a_name_the_service_refuses_is_the_run_an_earlier_attempt_made(ml, deployed, blobs, refusal):
    ml.components.get.return_value = deployed[1]
    ml.jobs.create_or_update.side_effect = refusal
    ml.jobs.get.return_value = our_job()
    backend = AzureMLv2Backend(settings(), blobs)

    run = backend.submit(backend.ensure_published("diabetes_training"), {"input_data": "2026/diabetes.csv"},
                         "diabetes-retraining", TAGS)

    ml.jobs.get.assert_called_once_with(f"retrainer-{DIGEST}")
    assert run.run_id == f"retrainer-{DIGEST}"


def test_a_refusal_with_no_job_of_that_name_is_raised(ml, deployed, blobs):
    ml.components.get.return_value = deployed[1]
    ml.jobs.create_or_update.side_effect = HttpResponseError("compute cpu-cluster not found")
    ml.jobs.get.side_effect = ResourceNotFoundError("no such job")
    backend = AzureMLv2Backend(settings(), blobs)

    with pytest.raises(HttpResponseError, match="compute cpu-cluster not found"):
        backend.submit(backend.ensure_published("diabetes_training"), {"input_data": "a.csv"}, "e", TAGS)


def test_find_run_is_a_get_by_name(ml, blobs):
    ml.jobs.get.side_effect = [ResourceNotFoundError("no such job"), our_job()]
    backend = AzureMLv2Backend(settings(), blobs)

    assert backend.find_run(policy.TAG_KEY_HASH, DIGEST) is None
    found = backend.find_run(policy.TAG_KEY_HASH, DIGEST)

    assert found.run_id == f"retrainer-{DIGEST}" and found.tags[policy.TAG_KEY] == KEY
    with pytest.raises(ValueError, match="finds runs by 'retrainer.key_sha'"):
        backend.find_run(policy.TAG_KEY, KEY)


def test_a_job_of_our_name_without_our_digest_is_not_taken_for_ours(ml, blobs):
    ml.jobs.get.return_value = PipelineJob(name=job_name(DIGEST), tags={"owner": "someone else"})

    with pytest.raises(RuntimeError, match="another tool took the name"):
        AzureMLv2Backend(settings(), blobs).find_run(policy.TAG_KEY_HASH, DIGEST)


def test_get_run_reads_steps_and_their_metrics_from_mlflow_a_reused_step_from_the_run_it_reused(ml, blobs):
    run_id = f"retrainer-{DIGEST}"
    ml.jobs.get.return_value = our_job(status="Completed")
    ml.jobs.list.return_value = iter([child("c-prep", "prep", **{"azureml.reusedrunid": "old-prep"}),
                                      child("c-train", "train", status="Finished")])   # run history's word
    backend = AzureMLv2Backend(settings(), blobs)
    asked = mlflow_answers(backend, {"old-prep": {"rows": 500.0}, "c-train": {"AUC": 0.91, "Accuracy": 0.88}})

    info = backend.get_run(run_id)

    ml.jobs.list.assert_called_once_with(parent_job_name=run_id)
    assert info.status == RunStatus.COMPLETED and info.error is None
    assert info.step("prep") == StepRunInfo("prep", "c-prep", RunStatus.COMPLETED, {"rows": 500.0}, None, True)
    assert info.metrics == {"rows": 500.0, "AUC": 0.91, "Accuracy": 0.88}
    assert info.step("train").status == RunStatus.COMPLETED
    assert [request.url for request in asked] == ["api/2.0/mlflow/runs/get?run_id=old-prep",
                                                  "api/2.0/mlflow/runs/get?run_id=c-train"]


def test_a_failed_run_names_its_failed_step(ml, blobs):
    ml.jobs.get.return_value = our_job(status="Failed")
    ml.jobs.list.return_value = iter([child("c-prep", "prep"), child("c-train", "train", status="Failed"),
                                      child("c-score", "score", status="Canceled")])
    backend = AzureMLv2Backend(settings(), blobs)
    mlflow_answers(backend, {"c-prep": {}, "c-train": {"rows": 3.0}})     # the canceled step never ran

    info = backend.get_run(f"retrainer-{DIGEST}")

    assert info.status == RunStatus.FAILED
    assert info.failed_step().name == "train" and "step 'train' failed" in info.error
    assert info.step("score").metrics == {}


def test_the_mlflow_endpoint_is_the_workspace_tracking_uri_over_https_with_a_bearer_token(ml, mocker, blobs):
    client_class = mocker.patch("azure.core.PipelineClient", autospec=True)
    ml.workspaces.get.return_value = Workspace(
        name="ml-ws", mlflow_tracking_uri=f"azureml://eastus.api.azureml.ms/mlflow/v1.0{WORKSPACE_ID}")

    AzureMLv2Backend(settings(), blobs)._tracking()

    ml.workspaces.get.assert_called_once_with("ml-ws")
    [(base,), options] = client_class.call_args
    assert base == f"https://eastus.api.azureml.ms/mlflow/v1.0{WORKSPACE_ID}/"
    [policy_] = options["per_call_policies"]
    assert type(policy_).__name__ == "BearerTokenCredentialPolicy" and policy_._scopes == (azureml_v2.ML_SCOPE,)


# ---------------------------------------------------------------- models

def run_info(reused_from=None) -> RunInfo:
    return RunInfo(f"retrainer-{DIGEST}", RunStatus.COMPLETED, {**TAGS, "retrainer.pipeline_version": "v9"},
                   (StepRunInfo("train", "c-train", RunStatus.COMPLETED, {"AUC": 0.91}),))


def test_a_model_registers_from_the_model_steps_output_tagged_with_the_run(ml, blobs):
    ml.models.list.return_value = iter([])
    ml.jobs.get.return_value = child("c-train", "train", **{"azureml.reusedrunid": "old-train"})
    ml.models.create_or_update.side_effect = lambda model: Model(name=model.name, version="3", tags=model.tags,
                                                                  properties=model.properties, path=model.path)

    model = AzureMLv2Backend(settings(), blobs).register_model(
        run_info(), "diabetes_model", "outputs/diabetes_model.pkl", {"retrainer.data": "incoming/diabetes.csv"},
        {"AUC": "0.91"})

    [(sent,), _] = ml.models.create_or_update.call_args
    assert sent.path == "azureml://jobs/old-train/outputs/artifacts/paths/outputs/diabetes_model.pkl"
    assert sent.type == "custom_model"
    assert sent.tags == {"retrainer.blob": "diabetes.csv", "retrainer.pipeline_version": "v9",
                         "retrainer.data": "incoming/diabetes.csv", "retrainer.run_id": f"retrainer-{DIGEST}"}
    assert (model.version, model.run_id, model.properties) == (3, f"retrainer-{DIGEST}", {"AUC": "0.91"})


def test_a_version_already_registered_from_the_run_is_returned_not_registered_again(ml, blobs):
    ml.models.list.return_value = iter([Model(name="diabetes_model", version="2",
                                              tags={"retrainer.run_id": f"retrainer-{DIGEST}"})])

    model = AzureMLv2Backend(settings(), blobs).register_model(run_info(), "diabetes_model", "outputs/m.pkl", {}, {})

    ml.models.create_or_update.assert_not_called()
    assert model.version == 2


def test_the_champion_is_the_highest_version_whichever_sdk_registered_it(ml, blobs):
    ml.models.list.return_value = iter([
        Model(name="diabetes_model", version="9", properties={"AUC": "0.90"}),     # v1's Model.register
        Model(name="diabetes_model", version="10", properties={"AUC": "0.93"}),    # v2
        Model(name="diabetes_model", version="candidate")])                        # not a number: not ours

    champion = AzureMLv2Backend(settings(), blobs).current_model("diabetes_model")

    ml.models.list.assert_called_once_with(name="diabetes_model")
    assert (champion.version, champion.properties) == (10, {"AUC": "0.93"})


def test_no_model_of_that_name_yet_is_no_champion(ml, blobs):
    ml.models.list.side_effect = ResourceNotFoundError("no such model")

    assert AzureMLv2Backend(settings(), blobs).current_model("diabetes_model") is None


def test_the_client_is_built_with_the_settings_and_one_retry_layer(ml, blobs):
    from azure.ai.ml import MLClient as patched

    ml.models.list.return_value = iter([])
    AzureMLv2Backend(settings(), blobs).current_model("diabetes_model")

    [_, options] = patched.call_args
    assert options["subscription_id"] == "11111111-2222-3333-4444-555555555555"
    assert (options["resource_group_name"], options["workspace_name"]) == ("ml-rg", "ml-ws")
    assert options["retry_total"] == 0 and options["enable_telemetry"] is False


# ---------------------------------------------------------------- live check

def test_the_live_check_signs_in_and_finds_the_deployed_component(ml, deployed):
    ml.workspaces.get.return_value = Workspace(name="ml-ws")
    ml.components.get.return_value = deployed[1]

    lines = list(AzureMLv2Backend(settings()).live_check())

    assert lines == ["signed in to workspace ml-ws with RETRAINER_AML_AUTH=cli",
                     f"pipeline component diabetes_training:{deployed[0]}: {deployed[1].id}"]
    ml.jobs.create_or_update.assert_not_called()


@pytest.mark.parametrize("second_create, answer", [
    (ResourceExistsError("A job with this name already exists"), "refused: HTTP None ResourceExistsError"),
    (None, "accepted as an update of the same job"),
])
def test_the_live_check_creates_a_job_with_its_tags_and_creates_it_again(ml, deployed, second_create, answer):
    ml.workspaces.get.return_value = Workspace(name="ml-ws")
    ml.components.get.return_value = deployed[1]
    created = []

    def create(job, **kwargs):
        if created and second_create is not None:
            raise second_create
        created.append(job)
        return job

    ml.jobs.create_or_update.side_effect = create
    ml.jobs.get.side_effect = lambda name: (created[0] if created else
                                            (_ for _ in ()).throw(ResourceNotFoundError("no such job")))

    backend = AzureMLv2Backend(settings())
    asked = mlflow_answers(backend, None)

    lines = list(backend.live_check("diabetes.csv"))

    assert ml.jobs.create_or_update.call_count == 2
    job = created[0]
    assert job.name.startswith("retrainer-") and job.tags["retrainer.key"].startswith("check:")
    assert lines[2].startswith(f"job {job.name} on diabetes.csv, created with its tags")
    assert [request.url for request in asked] == [f"api/2.0/mlflow/runs/get?run_id={job.name}"]
    assert lines[4].startswith(f"a second create of {job.name} {answer}")
