"""GET /api/health for probes (anonymous: the status only) and /api/health/details behind the function key,
called as the Functions host calls them: real func.HttpRequest objects, auth levels from the bindings."""
from __future__ import annotations

import json

from types import SimpleNamespace

import azure.functions as func
import pytest

from retrainer import bootstrap
from retrainer.ports import PoisonedMessage, State
from retrainer.settings import Settings
from tests.unit.fakes import Clock, FakeLedger, FakeWorkQueues
from triggers import http_api

SETTINGS = {"RETRAINER_BACKEND": "azureml", "RETRAINER_AML_SUBSCRIPTION_ID": "11111111-2222-3333-4444-555555555555",
            "RETRAINER_AML_RESOURCE_GROUP": "ml-rg", "RETRAINER_AML_WORKSPACE": "ml-ws",
            "AzureWebJobsStorage": "DefaultEndpointsProtocol=https;AccountName=hostacct;AccountKey=c2VjcmV0;",
            "RETRAINER_DATA_STORAGE": "DefaultEndpointsProtocol=https;AccountName=dataacct;AccountKey=c2VjcmV0;"}


@pytest.fixture(scope="module")
def functions() -> dict:
    """The blueprint in an app of its own: get_functions() is called once per app object."""
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
    app.register_functions(http_api.bp)
    return {f.get_function_name(): f for f in app.get_functions()}


@pytest.fixture
def configured(monkeypatch):
    for name, value in SETTINGS.items():
        monkeypatch.setenv(name, value)


def get(functions: dict, name: str, route: str) -> tuple[int, dict]:
    response = functions[name].get_user_function()(func.HttpRequest("GET", f"http://localhost/api/{route}",
                                                                    body=b"", params={}, headers={}))
    return response.status_code, json.loads(response.get_body())


def test_anonymous_health_answers_the_status_only(functions, configured):
    status, body = get(functions, "health", "health")

    assert (status, body) == (200, {"status": "ok"})
    assert functions["health"].get_trigger().auth_level == func.AuthLevel.ANONYMOUS


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ledger(clock) -> FakeLedger:
    return FakeLedger(clock)


@pytest.fixture
def queues(monkeypatch, clock, ledger) -> FakeWorkQueues:
    queues = FakeWorkQueues()
    monkeypatch.setattr(bootstrap, "deps", lambda: SimpleNamespace(queues=queues, ledger=ledger, clock=clock,
                                                                   settings=Settings()))
    return queues


def test_health_details_need_the_function_key_and_show_no_secret(functions, configured, queues):
    status, body = get(functions, "health_details", "health/details")

    assert functions["health_details"].get_trigger().auth_level == func.AuthLevel.FUNCTION
    assert functions["health_details"].get_trigger().route == "health/details"
    assert status == 200 and body["settings"]["aml_workspace"] == "ml-ws"
    assert "c2VjcmV0" not in json.dumps(body)
    assert body["status"] == "ok" and body["queues"] == {"retrainer-blob-events-poison": 0}
    assert body["overdue"] == {"claimed": 0, "submitted": 0, "unnotified": 0}


def test_a_row_past_its_bound_asks_for_attention_behind_the_key(functions, configured, queues, ledger, clock):
    claimed = ledger.claim("blob:incoming/a.csv@1", "blob", {}).entry
    ledger.update(claimed, State.REGISTERED, {"notified": False})     # its sender died
    clock.advance(minutes=Settings().claim_lease_minutes + 1)

    assert get(functions, "health", "health") == (200, {"status": "ok"})
    status, body = get(functions, "health_details", "health/details")
    assert (status, body["status"], body["overdue"]["unnotified"]) == (200, "attention", 1)


def test_poisoned_work_asks_for_attention_behind_the_key(functions, configured, queues):
    queues.poison.append(PoisonedMessage("retrainer-blob-events-poison", "m-1", None, "{}"))

    assert get(functions, "health", "health") == (200, {"status": "ok"})
    status, body = get(functions, "health_details", "health/details")
    assert (status, body["status"], body["queues"]["retrainer-blob-events-poison"]) == (200, "attention", 1)


def test_a_misconfigured_app_says_so_anonymously_and_what_is_wrong_behind_the_key(functions, configured,
                                                                                 monkeypatch):
    monkeypatch.setenv("RETRAINER_AML_AUTH", "password")

    assert get(functions, "health", "health") == (503, {"status": "misconfigured"})
    status, body = get(functions, "health_details", "health/details")
    assert status == 503 and "RETRAINER_AML_AUTH" in body["error"]
