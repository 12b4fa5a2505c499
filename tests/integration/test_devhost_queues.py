"""Queue output bindings and queue triggers on a running dev host against Azurite, as the Functions host's
queue extension behaves: base64 messages, retries with a growing dequeue count, `<queue>-poison` after
maxDequeueCount, host.json's visibilityTimeout, and messages that are not base64."""
from __future__ import annotations

import base64
import json

import httpx
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from devhost.queues import QueueOutputs
from devhost.app_loader import QueueOutput
from devhost.settings import QueuesOptions
from tests.fixtures.devhost_app.harness import (EVENTGRID_KEY, EnvironmentSnapshot, app_folder, host,
    invocations, storage_name, use_storage)
from tests.support.waiting import wait_for

FAST_POLLING = {"maxPollingInterval": "00:00:00.2"}


@pytest.fixture
def env(azurite):
    with EnvironmentSnapshot():
        use_storage(azurite.connection_string)
        yield azurite.connection_string


def app(tmp_path, **queues):
    queue = f"work-{storage_name(tmp_path.name)}"
    folder = app_folder(tmp_path, host_json={"extensions": {"queues": {**FAST_POLLING, **queues}}}, WORK_QUEUE=queue)
    return folder, queue


def publish(devhost, message, event_id: str, **data) -> httpx.Response:
    """One Event Grid delivery to the fixture's `enqueue` function, which puts `message` on the work queue."""
    return httpx.post(f"{devhost.base_url}/runtime/webhooks/eventgrid",
                      params={"functionName": "enqueue", "code": EVENTGRID_KEY},
                      headers={"aeg-event-type": "Notification"},
                      json=[{"id": event_id, "eventType": "Test.Enqueue", "subject": "s", "dataVersion": "1",
                             "eventTime": "2026-11-30T08:00:00Z", "data": {"message": message, **data}}])


def peek(queue: QueueClient) -> list:
    """The visible messages of a queue that may not exist yet."""
    try:
        return list(queue.peek_messages(max_messages=32))
    except ResourceNotFoundError:
        return []


def worked(folder, body: str) -> list[dict]:
    return [row for row in invocations(folder, "work") if row["body"] == body]


def test_an_output_binding_message_is_base64_on_the_queue(env, tmp_path):
    queue = f"raw-{storage_name(tmp_path.name)}"
    outputs = QueueOutputs(QueuesOptions())
    outputs.write(QueueOutput("out", queue, "AzureWebJobsStorage"), "héllo")   # creates the queue on first write
    (message,) = QueueClient.from_connection_string(env, queue).peek_messages()
    assert message.content == base64.b64encode("héllo".encode()).decode()


def test_an_event_grid_function_enqueues_through_its_output_binding_and_the_queue_trigger_reads_it(env, tmp_path):
    folder, queue = app(tmp_path)
    with host(folder) as devhost:
        assert publish(devhost, "hello", "e1").status_code == 202
        (row,) = wait_for(lambda: worked(folder, "hello"), "the queue trigger to read the message")
        assert row["dequeue_count"] == 1 and row["id"] and row["pop_receipt"]
        assert row["insertion_time"] < row["expiration_time"]

        assert publish(devhost, ["a", "b"], "e2").status_code == 202      # a list: one message per element
        wait_for(lambda: worked(folder, "a") and worked(folder, "b"), "one message per list element")

        # A JSON-looking string is parsed by the host and re-serialised (Newtonsoft, indented).
        assert publish(devhost, '{"k": 1}', "e3").status_code == 202
        (parsed,) = wait_for(lambda: [r for r in invocations(folder, "work") if r["body"].startswith("{")],
                             "the JSON message")
        assert json.loads(parsed["body"]) == {"k": 1} and parsed["body"] == '{\n  "k": 1\n}'

        # A message another client sends base64-encoded (as the Functions host expects) is read as well.
        QueueClient.from_connection_string(env, queue, message_encode_policy=TextBase64EncodePolicy()
                                           ).send_message("from a client")
        wait_for(lambda: worked(folder, "from a client"), "the client's message")


def test_a_failed_invocation_writes_no_output(env, tmp_path):
    folder, _ = app(tmp_path)
    with host(folder) as devhost:
        assert publish(devhost, "never", "f1", fail=True).status_code == 500
        assert publish(devhost, "sentinel", "f2").status_code == 202
        wait_for(lambda: worked(folder, "sentinel"), "the sentinel")
    assert worked(folder, "never") == [] and len(invocations(folder, "enqueue")) == 2


def test_a_failing_message_is_retried_then_moved_to_the_poison_queue_with_the_same_body(env, tmp_path):
    folder, queue = app(tmp_path)
    poison = QueueClient.from_connection_string(env, f"{queue}-poison")
    with host(folder) as devhost:
        assert publish(devhost, "fail-me", "p1").status_code == 202
        (moved,) = wait_for(lambda: peek(poison), "a poison message")
        assert publish(devhost, "after", "p2").status_code == 202
        wait_for(lambda: worked(folder, "after"), "a message after the poisoned one")
    assert [r["dequeue_count"] for r in worked(folder, "fail-me")] == [1, 2, 3, 4, 5]
    assert len({r["id"] for r in worked(folder, "fail-me")}) == 1
    assert base64.b64decode(moved.content) == b"fail-me"
    assert QueueClient.from_connection_string(env, queue).get_queue_properties().approximate_message_count == 0


def test_a_failed_message_stays_invisible_for_host_json_visibility_timeout(env, tmp_path):
    folder, queue = app(tmp_path, visibilityTimeout="01:00:00")
    with host(folder) as devhost:
        assert publish(devhost, "fail-once", "v1").status_code == 202
        wait_for(lambda: worked(folder, "fail-once"), "the first attempt")
    # The first host released the failed message for an hour: a new host does not see it yet.
    with host(folder) as devhost:
        assert publish(devhost, "sentinel", "v2").status_code == 202
        wait_for(lambda: worked(folder, "sentinel"), "the sentinel")
    assert [r["dequeue_count"] for r in worked(folder, "fail-once")] == [1]
    assert QueueClient.from_connection_string(env, queue).get_queue_properties().approximate_message_count == 1


def test_max_dequeue_count_comes_from_host_json(env, tmp_path):
    folder, queue = app(tmp_path, maxDequeueCount=2)
    poison = QueueClient.from_connection_string(env, f"{queue}-poison")
    with host(folder) as devhost:
        assert publish(devhost, "fail-twice", "m1").status_code == 202
        wait_for(lambda: peek(poison), "a poison message")
    assert [r["dequeue_count"] for r in worked(folder, "fail-twice")] == [1, 2]


def test_a_message_that_is_not_base64_goes_to_the_poison_queue_unchanged_without_an_invocation(env, tmp_path):
    folder, queue = app(tmp_path)
    client = QueueClient.from_connection_string(env, queue)
    client.create_queue()
    client.send_message("plain text, not base64!")
    poison = QueueClient.from_connection_string(env, f"{queue}-poison")
    with host(folder):
        (moved,) = wait_for(lambda: peek(poison), "a poison message")
    assert moved.content == "plain text, not base64!"
    assert invocations(folder, "work") == []
