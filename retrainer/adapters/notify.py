"""Notifications (ports.Notifier): CloudEvents 1.0 to an Event Grid topic and/or a JSON webhook.

Both receivers get the same structured JSON of an azure.core CloudEvent, with the caller's deterministic
id, so a resend after a crash carries the same id and a receiver can drop it. Transient faults are retried
by `Retry` (the SDK's own retries are off per call); keys are sent, never logged.
"""
from __future__ import annotations

import json
import logging
from datetime import date, datetime
from typing import Any, Mapping, Sequence

from azure.core import PipelineClient
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError
from azure.core.messaging import CloudEvent
from azure.core.pipeline.policies import HttpLoggingPolicy, UserAgentPolicy
from azure.core.rest import HttpRequest

from retrainer.ports import Notifier
from retrainer.retry import Retry, retry as default_retry
from retrainer.settings import Settings, url_origin

log = logging.getLogger(__name__)

WEBHOOK_KEY_HEADER = "x-retrainer-key"
# Per call: no SDK-level retry (ours is the only one) and timeouts that fit in a function invocation.
_HTTP_OPTIONS: dict[str, Any] = {"retry_total": 0, "connection_timeout": 10, "read_timeout": 30}


def structured_cloud_event(event_id: str, event_type: str, source: str, subject: str,
                           data: Mapping[str, Any]) -> dict[str, Any]:
    """The CloudEvents 1.0 structured-mode JSON object of one event (data made JSON-safe)."""
    event = CloudEvent(source=source, type=event_type, subject=subject, id=event_id,
                       data=json.loads(json.dumps(data, default=_json_default)),
                       datacontenttype="application/json")
    return {"specversion": event.specversion, "id": event.id, "source": event.source, "type": event.type,
            "subject": event.subject, "time": event.time.isoformat().replace("+00:00", "Z"),
            "datacontenttype": event.datacontenttype, "data": event.data}


class EventGridNotifier:
    """Publishes to an Event Grid topic (CloudEvents 1.0 input schema), with the topic's access key when one is
    given, else as the app's identity: azure-eventgrid signs a TokenCredential's requests with a bearer token for
    https://eventgrid.azure.net/.default (azure/eventgrid/_legacy/_helpers.py, `_get_authentication_policy`),
    which a topic with local auth off accepts from a principal holding EventGrid Data Sender. The identity is
    DefaultAzureCredential's: AZURE_CLIENT_ID names a user-assigned one."""

    def __init__(self, endpoint: str, key: str | None, source: str, *, credential: Any = None,
                 retry: Retry = default_retry) -> None:
        from azure.eventgrid import EventGridPublisherClient  # only apps that publish to a topic pay for it

        if key:
            credential = AzureKeyCredential(key)
        elif credential is None:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential()
        self._client = EventGridPublisherClient(endpoint, credential)
        self._source = source
        self._retry = retry
        self.receiver = f"Event Grid topic {url_origin(endpoint)}"

    def publish(self, event_id: str, event_type: str, subject: str, data: Mapping[str, Any]) -> None:
        event = structured_cloud_event(event_id, event_type, self._source, subject, data)
        # Sent as its JSON object: the SDK posts a dict as is, while a CloudEvent object would be handed the
        # per-call options too (and log a warning for each).
        self._retry(self._client.send, [event], **_HTTP_OPTIONS)


class WebhookNotifier:
    """POSTs one structured-mode CloudEvent (application/cloudevents+json); the key, when set, goes in the
    `x-retrainer-key` header."""

    def __init__(self, url: str, key: str | None, source: str, *, retry: Retry = default_retry) -> None:
        self._url = url
        self._key = key
        self._source = source
        self._retry = retry
        # No RetryPolicy (ours retries) and no RedirectPolicy (a redirect must not carry the key elsewhere).
        self._client = PipelineClient(url, policies=[UserAgentPolicy(sdk_moniker="retrainer"),
                                                     HttpLoggingPolicy()])
        self.receiver = f"webhook {url_origin(url)}"

    def publish(self, event_id: str, event_type: str, subject: str, data: Mapping[str, Any]) -> None:
        event = structured_cloud_event(event_id, event_type, self._source, subject, data)
        headers = {"Content-Type": "application/cloudevents+json; charset=utf-8"}
        if self._key:
            headers[WEBHOOK_KEY_HEADER] = self._key
        body = json.dumps(event, ensure_ascii=False).encode("utf-8")
        self._retry(self._post, body, headers)

    def _post(self, body: bytes, headers: dict[str, str]) -> None:
        request = HttpRequest("POST", self._url, headers=headers, content=body)
        response = self._client.send_request(request, connection_timeout=_HTTP_OPTIONS["connection_timeout"],
                                              read_timeout=_HTTP_OPTIONS["read_timeout"])
        if not 200 <= response.status_code < 300:
            raise HttpResponseError(response=response)


class FanoutNotifier:
    """Sends each event to every receiver; one failing does not stop the others, and the first failure is
    raised after all were tried (a resend repeats the id, so receivers that got it can drop it)."""

    def __init__(self, receivers: Sequence[Notifier]) -> None:
        self._receivers = list(receivers)

    def publish(self, event_id: str, event_type: str, subject: str, data: Mapping[str, Any]) -> None:
        if not self._receivers:
            log.info("no notification receiver configured: %s for %s not sent", event_type, subject)
            return
        failures = []
        for receiver in self._receivers:
            name = getattr(receiver, "receiver", type(receiver).__name__)
            try:
                receiver.publish(event_id, event_type, subject, data)
            except Exception as error:
                status = getattr(error, "status_code", None)
                log.error("notification %s (%s) for %s to %s failed: %s%s", event_id, event_type, subject,
                          name, type(error).__name__, f" {status}" if status else "")
                failures.append(error)
            else:
                log.info("notified %s (%s) for %s to %s", event_id, event_type, subject, name)
        if failures:
            raise failures[0]


def build_notifier(settings: Settings) -> Notifier:
    """Every configured receiver: the Event Grid topic and/or the webhook (none: events are only logged)."""
    source = f"/retrainer/{settings.pipeline_endpoint}"
    receivers: list[Notifier] = []
    if settings.notify_topic_endpoint:
        receivers.append(EventGridNotifier(settings.notify_topic_endpoint, settings.notify_topic_key, source))
    if settings.notify_webhook_url:
        receivers.append(WebhookNotifier(settings.notify_webhook_url, settings.notify_webhook_key, source))
    return FanoutNotifier(receivers)


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    return str(value)  # e.g. a Path: the receiver gets its text
