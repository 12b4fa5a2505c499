"""The Event Grid subscriptions in infra/ carry the filters the app applies (retrainer.filters): the same rules,
and the same decision on every sample event, under Event Grid's own semantics (tests/infra/bicep.py).

A filter stricter than the code's drops events the app would act on (silence); a looser one only costs
deliveries, but the two are meant to be equal, and these tests hold them so."""
from __future__ import annotations

import itertools

import pytest

from retrainer.events import BLOB_CREATED, RUN_COMPLETED, RUN_STATUS_CHANGED
from retrainer.filters import FINAL_RUN_STATUSES, RUN_EVENT_TYPES, BlobEventFilter, blob_subject
from retrainer.ports import RunStatus
from tests.infra.bicep import Scope, app_bindings, parsed, subscription_delivers

EVENTS = "infra/events.bicep"
RUN_EVENTS = "infra/app/run-events.bicep"


def _main_default(name: str) -> str:
    template = parsed("infra/main.bicep")
    return Scope(template).default(name)


def blob_subscription(**params):
    template = parsed(EVENTS)
    scope = Scope(template, **params)
    resource = template["resources"]["blobEvents"]["config"]
    return scope.evaluate(resource["properties"]["filter"]), resource["properties"]["destination"]


def run_subscriptions():
    template = parsed(RUN_EVENTS)
    scope = Scope(template)
    return {name: scope.evaluate(resource["config"]["properties"]["filter"])
            for name, resource in template["resources"].items()
            if resource["type"] == "Microsoft.EventGrid/systemTopics/eventSubscriptions"}


def code_blob_filter(incoming: str) -> BlobEventFilter:
    return BlobEventFilter(container=incoming, quarantine_container=_main_default("quarantineContainerName"))


def as_subscription_filter(code: BlobEventFilter) -> dict:
    """The subscription filter that says exactly what BlobEventFilter.ignore says."""
    return {
        "includedEventTypes": list(code.event_types),
        "subjectBeginsWith": code.subject_begins_with,
        "isSubjectCaseSensitive": True,
        "advancedFilters": [
            {"operatorType": "StringIn", "key": "data.api", "values": list(code.apis)},
            {"operatorType": "NumberGreaterThan", "key": "data.contentLength", "value": code.min_size_exclusive},
            {"operatorType": "StringNotBeginsWith", "key": "subject", "values": list(code.subject_not_begins_with)},
        ],
    }


def _normalised(filter_: dict) -> dict:
    rules = sorted(({**rule, "values": sorted(rule["values"])} if "values" in rule else rule
                    for rule in filter_.get("advancedFilters", [])), key=lambda rule: (rule["key"], rule["operatorType"]))
    return {**filter_, "includedEventTypes": sorted(filter_["includedEventTypes"]), "advancedFilters": rules}


@pytest.mark.parametrize("incoming", [None, "landing-zone"])
def test_blob_subscription_filter_is_the_codes(incoming):
    params = {"incomingContainerName": incoming} if incoming else {}
    filter_, _ = blob_subscription(**params)
    code = code_blob_filter(incoming or _main_default("incomingContainerName"))
    assert _normalised(filter_) == _normalised(as_subscription_filter(code))


def test_events_template_watches_the_container_main_creates():
    assert Scope(parsed(EVENTS)).default("incomingContainerName") == _main_default("incomingContainerName")
    assert _main_default("quarantineContainerName") != _main_default("incomingContainerName")


def test_blob_subscription_delivers_exactly_what_the_app_acts_on():
    incoming = _main_default("incomingContainerName")
    code = code_blob_filter(incoming)
    filter_, _ = blob_subscription()
    names = ["data.csv", "folder/data.csv", "azureml/run-1/prepped_data/data.csv", "azuremlish.csv"]
    containers = [incoming, _main_default("quarantineContainerName"), "other"]
    apis = ["PutBlob", "PutBlockList", "CopyBlob", "FlushWithClose", "SftpCommit", "CreateFile", "SftpCreate",
            "PutBlockListX"]
    for event_type, container, name, api, size in itertools.product(
            [BLOB_CREATED, "Microsoft.Storage.BlobDeleted"], containers, names, apis, [0, 1, 10_000]):
        subject = blob_subject(container, name)
        event = {"eventType": event_type, "subject": subject, "data": {"api": api, "contentLength": size}}
        acts = code.ignore(event_type, subject, api, size) is None
        assert subscription_delivers(filter_, event) == acts, (event, code.ignore(event_type, subject, api, size))


def test_run_subscriptions_deliver_completed_runs_and_final_statuses_only():
    subscriptions = run_subscriptions()
    included = {t for filter_ in subscriptions.values() for t in filter_["includedEventTypes"]}
    assert included == set(RUN_EVENT_TYPES)

    def delivered(event):
        return any(subscription_delivers(filter_, event) for filter_ in subscriptions.values())

    subject = "experiments/x/runs/run-1"
    # RunCompleted carries no data.runStatus: a runStatus filter on its subscription would drop every one.
    assert delivered({"eventType": RUN_COMPLETED, "subject": subject, "data": {"runId": "run-1"}})
    statuses = [value for name, value in vars(RunStatus).items() if name.isupper() and isinstance(value, str)]
    assert set(FINAL_RUN_STATUSES) <= set(statuses)
    for status in statuses:
        event = {"eventType": RUN_STATUS_CHANGED, "subject": subject, "data": {"runId": "run-1", "runStatus": status}}
        assert delivered(event) == (status in FINAL_RUN_STATUSES), status


def test_run_status_filter_lists_the_final_statuses():
    rules = [rule for filter_ in run_subscriptions().values() for rule in filter_.get("advancedFilters", [])]
    assert rules == [{"operatorType": "StringIn", "key": "data.runStatus", "values": sorted(FINAL_RUN_STATUSES)}]


def test_subscriptions_deliver_to_the_apps_event_grid_functions():
    triggers = {name for name, bindings in app_bindings().items()
                if any(binding["type"] == "eventGridTrigger" for binding in bindings)}
    _, destination = blob_subscription()
    targets = {destination["properties"]["resourceId"].rsplit("/", 1)[-1]}
    events = parsed(EVENTS)
    targets.add(events["modules"]["runEvents"]["config"]["params"]["functionId"].rsplit("/", 1)[-1])
    for target in targets:
        assert target in triggers, f"events.bicep delivers to {target!r}, not an Event Grid trigger of the app"
        assert destination["endpointType"] == "AzureFunction"


def test_the_intake_queues_the_functions_use_are_the_ones_storage_bicep_creates():
    used = {binding["queueName"] for bindings in app_bindings().values() for binding in bindings
            if binding["type"] in ("queue", "queueTrigger")}
    created = set(Scope(parsed("infra/app/storage.bicep")).evaluate("queueNames"))
    assert used and used == created
