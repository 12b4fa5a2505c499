"""HTTP triggers under /api with their auth levels, manual runs on /admin/functions, and the
notification sink, on a running dev host."""
from __future__ import annotations

import json

import httpx
import pytest
from azure.core.credentials import AzureKeyCredential
from azure.core.messaging import CloudEvent
from azure.eventgrid import EventGridPublisherClient

from tests.fixtures.devhost_app.harness import (FUNCTION_KEY, MASTER_KEY, SINK_KEY, EnvironmentSnapshot,
    app_folder, host, invocations, use_storage)
from tests.support.waiting import wait_for


@pytest.fixture(scope="module")
def running(azurite, tmp_path_factory):
    with EnvironmentSnapshot():
        use_storage(azurite.connection_string)
        folder = app_folder(tmp_path_factory.mktemp("http"), )
        with host(folder) as devhost:
            yield devhost, folder


@pytest.fixture
def api(running):
    with httpx.Client(base_url=running[0].base_url) as client:
        yield client


def test_anonymous_route_with_route_and_query_parameters(api):
    response = api.get("/api/hello/ada", params={"punct": "!"})
    assert response.status_code == 200 and response.text == "hello ada !"


def test_route_method_and_path_must_match(api):
    assert api.post("/api/hello/ada").status_code == 404       # GET only
    assert api.get("/api/hello").status_code == 404            # {who} is required
    assert api.get("/api/nothing-here").status_code == 404


@pytest.mark.parametrize("headers, params, status", [
    ({}, {}, 401),
    ({"x-functions-key": "wrong"}, {}, 401),
    ({"x-functions-key": FUNCTION_KEY}, {}, 201),
    ({}, {"code": FUNCTION_KEY}, 201),
    ({"x-functions-key": MASTER_KEY}, {}, 201),
])
def test_function_level_needs_a_function_or_master_key(api, headers, params, status):
    response = api.post("/api/echo", json={"n": 1}, headers=headers, params=params)
    assert response.status_code == status
    if status == 201:
        assert response.json() == {"got": {"n": 1}}
        assert response.headers["content-type"].startswith("application/json")


@pytest.mark.parametrize("key, status", [(None, 401), (FUNCTION_KEY, 401), (MASTER_KEY, 200)])
def test_admin_level_needs_the_master_key(api, key, status):
    response = api.get("/api/admin-only", headers={"x-functions-key": key} if key else {})
    assert response.status_code == status
    if status == 200:
        assert response.text == "admin ok"


def test_admin_endpoint_runs_a_timer_by_hand_with_the_master_key_only(api, running):
    _, folder = running
    before = len(invocations(folder, "tick"))
    assert api.post("/admin/functions/tick", json={"input": ""}, headers={"x-functions-key": FUNCTION_KEY}
                    ).status_code == 401
    assert api.post("/admin/functions/no_such", json={"input": ""}, headers={"x-functions-key": MASTER_KEY}
                    ).status_code == 404
    assert api.post("/admin/functions/tick", json={"input": ""}, headers={"x-functions-key": MASTER_KEY}
                    ).status_code == 202
    runs = wait_for(lambda: invocations(folder, "tick")[before:], "the manual timer run")
    assert runs[0]["past_due"] is False


def test_admin_endpoint_runs_a_queue_function_with_the_input_as_its_body(api, running):
    _, folder = running
    assert api.post("/admin/functions/work", json={"input": "by hand"}, headers={"x-functions-key": MASTER_KEY}
                    ).status_code == 202
    (run,) = wait_for(lambda: [r for r in invocations(folder, "work") if r["body"] == "by hand"], "the manual run")
    assert run["id"] is None and run["dequeue_count"] == 0
    assert api.post("/admin/functions/hello", json={"input": ""}, headers={"x-functions-key": MASTER_KEY}
                    ).status_code == 400


def test_sink_records_cloudevents_posted_with_its_key(api, running):
    devhost, _ = running
    notification = {"specversion": "1.0", "id": "n1", "source": "/retrainer/diabetes-training",
                    "type": "retrainer.model.registered", "subject": "blob:incoming/a.csv@0x1", "data": {"v": 3}}
    assert api.post("/sink/events", json=[notification]).status_code == 401
    assert api.post("/sink/events", json=[notification], headers={"x-retrainer-key": SINK_KEY}).status_code == 200
    # a notifier may use the publisher client, which sends its key as aeg-sas-key
    client = EventGridPublisherClient(f"{devhost.base_url}/sink/events", AzureKeyCredential(SINK_KEY))
    client.send([CloudEvent(source="/retrainer/x", type="retrainer.run.failed", subject="k", data={})])
    client.close()
    listed = api.get("/sink/events", headers={"x-retrainer-key": SINK_KEY}).json()
    assert [e["type"] for e in listed] == ["retrainer.model.registered", "retrainer.run.failed"]
    assert listed[0] == notification
    lines = devhost.sink_file.read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines][0] == "n1"


def test_host_json_route_prefix_moves_the_http_triggers(azurite, tmp_path):
    folder = app_folder(tmp_path, host_json={"extensions": {"http": {"routePrefix": "v1"}}})
    with EnvironmentSnapshot():
        use_storage(azurite.connection_string)
        with host(folder) as devhost:
            assert httpx.get(f"{devhost.base_url}/v1/hello/bo").text == "hello bo"
            assert httpx.get(f"{devhost.base_url}/api/hello/bo").status_code == 404
