"""Notifications received by a real HTTP endpoint on loopback: Event Grid's client and the webhook."""
from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from azure.core.exceptions import HttpResponseError

from retrainer.adapters.notify import EventGridNotifier, FanoutNotifier, WebhookNotifier, build_notifier
from retrainer.retry import Retry
from retrainer.settings import Settings

TOPIC_KEY = "topic-key-not-for-logs"
HOOK_KEY = "hook-key-not-for-logs"
SOURCE = "/retrainer/diabetes-training"
LINEAGE = {"key": "blob:incoming/diabetes.csv@0x8DC1", "state": "registered", "run_id": "run-1",
           "model_version": 3, "updated": datetime(2026, 11, 29, 2, 5, tzinfo=timezone.utc),
           "notified": ["retrainer.model.registered"]}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: object


@dataclass
class Sink:
    """An HTTP endpoint that records each POST and answers with the scripted statuses, then 200."""

    port: int = 0
    received: list[Received] = field(default_factory=list)
    statuses: dict[str, list[int]] = field(default_factory=dict)  # path -> statuses to answer first

    scheme: str = "http"

    def url(self, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path.split("?")[0] == path]


def _serve(state: Sink, tls_context=None):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()},
                                           json.loads(body)))
            scripted = state.statuses.get(self.path.split("?")[0])
            self.send_response(scripted.pop(0) if scripted else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls_context is not None:
        server.socket = tls_context.wrap_socket(server.socket, server_side=True)
    state.port = server.server_port
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return server


@pytest.fixture
def sink():
    state = Sink()
    server = _serve(state)
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def tls_sink(tmp_path, monkeypatch):
    """The sink over HTTPS with a self-signed certificate the client trusts (a bearer token is only ever sent
    over TLS: azure-core's BearerTokenCredentialPolicy refuses plain http)."""
    import ssl

    cert, key = _self_signed_certificate(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))      # requests (azure-core's transport) trusts it
    state = Sink(scheme="https")
    server = _serve(state, context)
    yield state
    server.shutdown()
    server.server_close()


def _self_signed_certificate(folder):
    from datetime import timedelta
    from ipaddress import ip_address

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=1))
                   .not_valid_after(now + timedelta(hours=1))
                   .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ip_address("127.0.0.1"))]), False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
                   .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "sink.pem", folder / "sink.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class TokenIssuer:
    """Stands in for Microsoft Entra ID (cloud-only): azure.core's TokenCredential protocol, recording scopes."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes, **kwargs):
        from azure.core.credentials import AccessToken

        self.scopes.append(scopes)
        return AccessToken("entra-token-not-for-logs", int(datetime.now(timezone.utc).timestamp()) + 3600)


QUICK = Retry(attempts=3, sleep=lambda _: None)


def assert_cloud_event(event, event_id="e" * 32, event_type="retrainer.model.registered"):
    assert event["specversion"] == "1.0"
    assert event["id"] == event_id
    assert event["source"] == SOURCE
    assert event["type"] == event_type
    assert event["subject"] == LINEAGE["key"]
    assert event["data"] == {**LINEAGE, "updated": "2026-11-29T02:05:00+00:00"}
    assert datetime.fromisoformat(event["time"]).tzinfo is not None


def test_event_grid_publisher_posts_the_cloud_event_with_the_topic_key(sink):
    notifier = EventGridNotifier(sink.url("/api/events"), TOPIC_KEY, SOURCE, retry=QUICK)
    notifier.publish("e" * 32, "retrainer.model.registered", LINEAGE["key"], LINEAGE)

    [request] = sink.at("/api/events")
    assert request.headers["aeg-sas-key"] == TOPIC_KEY
    assert request.headers["content-type"].startswith("application/cloudevents-batch+json")
    [event] = request.body  # Event Grid takes a batch
    assert_cloud_event(event)


def test_without_a_key_the_publisher_signs_in_with_the_identity(tls_sink):
    # infra/ deploys the topic with local auth off: the app publishes as its managed identity.
    issuer = TokenIssuer()
    notifier = EventGridNotifier(tls_sink.url("/api/events"), None, SOURCE, credential=issuer, retry=QUICK)
    notifier.publish("e" * 32, "retrainer.model.registered", LINEAGE["key"], LINEAGE)

    [request] = tls_sink.at("/api/events")
    assert request.headers["authorization"] == "Bearer entra-token-not-for-logs"
    assert "aeg-sas-key" not in request.headers
    assert issuer.scopes == [("https://eventgrid.azure.net/.default",)]
    [event] = request.body
    assert_cloud_event(event)


def test_webhook_posts_one_structured_cloud_event_with_its_key(sink):
    WebhookNotifier(sink.url("/hook"), HOOK_KEY, SOURCE, retry=QUICK).publish(
        "e" * 32, "retrainer.model.registered", LINEAGE["key"], LINEAGE)
    WebhookNotifier(sink.url("/open-hook"), None, SOURCE, retry=QUICK).publish(
        "f" * 32, "retrainer.run.failed", LINEAGE["key"], LINEAGE)

    [request] = sink.at("/hook")
    assert request.headers["x-retrainer-key"] == HOOK_KEY
    assert request.headers["content-type"].startswith("application/cloudevents+json")
    assert_cloud_event(request.body)
    [open_request] = sink.at("/open-hook")
    assert "x-retrainer-key" not in open_request.headers
    assert_cloud_event(open_request.body, "f" * 32, "retrainer.run.failed")


@pytest.mark.parametrize("make", [
    lambda sink: EventGridNotifier(sink.url("/api/events"), TOPIC_KEY, SOURCE, retry=QUICK),
    lambda sink: WebhookNotifier(sink.url("/api/events"), HOOK_KEY, SOURCE, retry=QUICK),
], ids=["event_grid", "webhook"])
def test_throttling_and_server_errors_are_retried_with_the_same_event_id(sink, make):
    sink.statuses["/api/events"] = [429, 503]
    make(sink).publish("e" * 32, "retrainer.model.registered", LINEAGE["key"], LINEAGE)
    attempts = sink.at("/api/events")
    assert len(attempts) == 3
    events = [a.body[0] if isinstance(a.body, list) else a.body for a in attempts]
    assert {e["id"] for e in events} == {"e" * 32}  # a resend is recognisable as the same event


@pytest.mark.parametrize("make", [
    lambda sink: EventGridNotifier(sink.url("/api/events"), TOPIC_KEY, SOURCE, retry=QUICK),
    lambda sink: WebhookNotifier(sink.url("/api/events"), HOOK_KEY, SOURCE, retry=QUICK),
], ids=["event_grid", "webhook"])
def test_a_refusal_is_raised_at_once(sink, make):
    sink.statuses["/api/events"] = [400]
    with pytest.raises(HttpResponseError) as raised:
        make(sink).publish("e" * 32, "retrainer.model.registered", LINEAGE["key"], LINEAGE)
    assert raised.value.status_code == 400
    assert len(sink.at("/api/events")) == 1


def test_fanout_reaches_every_receiver_even_when_one_fails(sink):
    sink.statuses["/broken"] = [500, 500, 500]
    fanout = FanoutNotifier([WebhookNotifier(sink.url("/broken"), HOOK_KEY, SOURCE, retry=QUICK),
                             EventGridNotifier(sink.url("/api/events"), TOPIC_KEY, SOURCE, retry=QUICK)])
    with pytest.raises(HttpResponseError):
        fanout.publish("e" * 32, "retrainer.model.registered", LINEAGE["key"], LINEAGE)
    assert len(sink.at("/broken")) == 3
    [delivered] = sink.at("/api/events")
    assert_cloud_event(delivered.body[0])


def test_build_notifier_sends_to_each_configured_receiver(sink):
    settings = Settings.from_env({
        "RETRAINER_NOTIFY_TOPIC_ENDPOINT": sink.url("/api/events"), "RETRAINER_NOTIFY_TOPIC_KEY": TOPIC_KEY,
        "RETRAINER_NOTIFY_WEBHOOK_URL": sink.url("/hook"), "RETRAINER_NOTIFY_WEBHOOK_KEY": HOOK_KEY,
        "RETRAINER_PIPELINE_ENDPOINT": "diabetes-training"})
    build_notifier(settings).publish("e" * 32, "retrainer.model.registered", LINEAGE["key"], LINEAGE)
    assert_cloud_event(sink.at("/api/events")[0].body[0])
    assert_cloud_event(sink.at("/hook")[0].body)


def test_build_notifier_without_receivers_sends_nothing(sink):
    build_notifier(Settings.from_env({})).publish("e" * 32, "retrainer.model.registered", LINEAGE["key"], LINEAGE)
    assert sink.received == []


def test_keys_never_reach_the_logs(sink, caplog):
    caplog.set_level(logging.DEBUG)
    sink.statuses["/api/events"] = [503]
    sink.statuses["/hook"] = [503, 503, 503]
    fanout = FanoutNotifier([EventGridNotifier(sink.url("/api/events"), TOPIC_KEY, SOURCE, retry=QUICK),
                             WebhookNotifier(sink.url("/hook?code=query-key"), HOOK_KEY, SOURCE, retry=QUICK)])
    with pytest.raises(HttpResponseError):
        fanout.publish("e" * 32, "retrainer.model.registered", LINEAGE["key"], LINEAGE)
    assert sink.at("/api/events") and sink.at("/hook")
    assert "transient fault" in caplog.text and "failed" in caplog.text  # it did log the trouble
    for secret in (TOPIC_KEY, HOOK_KEY):
        assert secret not in caplog.text
    # a key in the webhook's query string stays out of our own log lines (urllib3's DEBUG log is its own)
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("retrainer")]
    assert ours and not any("query-key" in line for line in ours)
