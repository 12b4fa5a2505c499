"""The storage subscription's deliveries against an endpoint that answers what the test says, over real HTTP:
Event Grid's headers, redelivery of a failed or late-answered event with a growing aeg-delivery-count, at most 30
attempts, and no retry for the codes Event Grid does not retry (400, 403, 413)."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from azure.storage.blob import BlobServiceClient

from devhost.subscription import MAX_DELIVERY_ATTEMPTS, StorageSubscription, Subscription
from tests.fixtures.devhost_app.harness import storage_name
from tests.support.waiting import wait_for


class Endpoint:
    """An HTTP endpoint answering `status` to every POST and recording what it received."""

    def __init__(self, status: int) -> None:
        self.status, self.received = status, []
        self.first_answer_after = 0.0          # seconds the first request waits before its answer
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                endpoint.received.append((self.path, dict(self.headers), json.loads(body)))
                if len(endpoint.received) == 1:
                    time.sleep(endpoint.first_answer_after)
                self.send_response(endpoint.status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def subscription(azurite, tmp_path):
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    container = f"retry-{storage_name(tmp_path.name)}"
    made = []

    def make(status: int, first_answer_after: float = 0.0) -> tuple[StorageSubscription, Endpoint]:
        endpoint = Endpoint(status)
        endpoint.first_answer_after = first_answer_after
        running = StorageSubscription(Subscription("blob_events", (container,), "/subscriptions/x/storageAccounts/a",
                                                   retry_delays=(0.01,), response_timeout=0.5),
                                      data=service, hosts=service, endpoint=endpoint.url, key="k",
                                      host_id=storage_name(tmp_path.name), poll_interval=0.1)
        running.start()
        made.append((running, endpoint))
        return running, endpoint

    yield make, service.get_container_client(container)
    for running, endpoint in made:
        running.stop()
        endpoint.close()




def test_a_failing_endpoint_gets_the_same_event_again_with_a_growing_delivery_count_at_most_30_times(subscription):
    make, container = subscription
    _, endpoint = make(500)
    container.upload_blob("a.csv", b"data")
    wait_for(lambda: len(endpoint.received) >= MAX_DELIVERY_ATTEMPTS, "30 delivery attempts")
    container.upload_blob("b.csv", b"sentinel")       # delivered after a's attempts ran out
    wait_for(lambda: any(body[0]["subject"].endswith("/b.csv") for _, _, body in endpoint.received), "b's event")
    attempts = [(headers, body) for _, headers, body in endpoint.received if body[0]["subject"].endswith("/a.csv")]
    assert len(attempts) == MAX_DELIVERY_ATTEMPTS
    assert [int(h["aeg-delivery-count"]) for h, _ in attempts] == list(range(MAX_DELIVERY_ATTEMPTS))
    assert len({body[0]["id"] for _, body in attempts}) == 1 and all(len(body) == 1 for _, body in attempts)
    path, headers, _ = endpoint.received[0]
    assert path.startswith("/runtime/webhooks/eventgrid?") and "functionName=blob_events" in path and "code=k" in path
    assert headers["aeg-event-type"] == "Notification" and headers["aeg-subscription-name"] == "BLOB_EVENTS"


@pytest.mark.parametrize("status", [400, 403, 413])
def test_codes_event_grid_does_not_retry_end_the_delivery(subscription, status):
    make, container = subscription
    _, endpoint = make(status)
    container.upload_blob("a.csv", b"data")
    container.upload_blob("b.csv", b"sentinel")
    wait_for(lambda: len(endpoint.received) >= 2, "both events")
    endpoint.status = 202
    container.upload_blob("c.csv", b"after")
    wait_for(lambda: any(body[0]["subject"].endswith("/c.csv") for _, _, body in endpoint.received), "c's event")
    assert sorted(body[0]["subject"].rsplit("/", 1)[1] for _, _, body in endpoint.received) == ["a.csv", "b.csv",
                                                                                                  "c.csv"]


def test_an_answer_later_than_the_response_timeout_is_redelivered_though_the_first_one_succeeds(subscription):
    _, endpoint = subscription[0](202, first_answer_after=1.5)
    subscription[1].upload_blob("slow.csv", b"data")
    wait_for(lambda: len(endpoint.received) >= 2, "a redelivery")
    (first, second) = endpoint.received[:2]
    assert first[2][0]["id"] == second[2][0]["id"]
    assert (first[1]["aeg-delivery-count"], second[1]["aeg-delivery-count"]) == ("0", "1")
