"""The host's work queues (ports.WorkQueues) through azure-storage-queue: what waits, and what was poisoned.

The queues live in the host storage account (AzureWebJobsStorage): the Functions host writes the webhooks'
output bindings there, and after host.json's `maxDequeueCount` failed attempts copies a message to
`<queue>-poison` (Microsoft.Azure.WebJobs.Extensions.Storage.Queues, QueueProcessor.CopyMessageToPoisonQueueAsync)
and leaves it there. This adapter only reads: messages are peeked, never dequeued, so reporting one leaves it
for the operator to replay or drop. A queue that does not exist yet holds nothing.
"""
from __future__ import annotations

import base64
import binascii
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueServiceClient

from retrainer.intake import POISON_SUFFIX, WORK_QUEUES
from retrainer.ports import PoisonedMessage
from retrainer.retry import Retry, retry as default_retry

_PEEK_MAX = 32      # the service's limit on one peek


class StorageWorkQueues:
    def __init__(self, connection: str | tuple[str, Any], *, retry: Retry = default_retry) -> None:
        """`connection`: a connection string, or (queue service URL, credential) for identity-based access."""
        if isinstance(connection, str):
            self._service = QueueServiceClient.from_connection_string(connection, retry_total=0)
        else:
            endpoint, credential = connection
            self._service = QueueServiceClient(endpoint, credential=credential, retry_total=0)
        self._retry = retry

    def poisoned(self, limit: int) -> list[PoisonedMessage]:
        found: list[PoisonedMessage] = []
        for queue in (name + POISON_SUFFIX for name in WORK_QUEUES):
            client = self._service.get_queue_client(queue)
            try:
                peeked = self._retry(client.peek_messages, max_messages=min(limit, _PEEK_MAX))
            except ResourceNotFoundError:
                continue
            found.extend(PoisonedMessage(queue=queue, id=m.id, inserted=m.inserted_on, body=_text(m.content))
                         for m in peeked)
        return found

    def depths(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for queue in (q for name in WORK_QUEUES for q in (name, name + POISON_SUFFIX)):
            try:
                properties = self._retry(self._service.get_queue_client(queue).get_queue_properties)
            except ResourceNotFoundError:
                counts[queue] = 0
                continue
            counts[queue] = properties.approximate_message_count
        return counts


def _text(content: str) -> str:
    """The body as the function saw it: the host writes base64 (host.json messageEncoding); a message that is
    not base64 (one reason to be poisoned) is shown as it is."""
    try:
        return base64.b64decode(content, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return content
