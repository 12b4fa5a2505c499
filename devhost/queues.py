"""Storage queues as the Functions host's queue extension (Microsoft.Azure.WebJobs.Extensions.Storage.Queues 5.x,
extension bundle 4.x) drives them: queue output bindings and queue triggers.

Modelled on the extension's source (Azure/azure-sdk-for-net, sdk/storage/):
- Microsoft.Azure.WebJobs.Extensions.Storage.Common/src/Shared/Queues/QueuesOptions.cs: host.json
  `extensions.queues` defaults: batchSize 16 (at most 32), newBatchThreshold batchSize/2 * processor count,
  maxPollingInterval 1 min (at least 100 ms), visibilityTimeout 0, maxDequeueCount 5, messageEncoding base64.
- .../Queues/QueueListener.cs: a trigger queue is never created by the listener (it checks that it exists and
  backs off while it does not); up to batchSize messages are received at once, invisible for 10 minutes, renewed
  at half that while the function runs (UpdateQueueMessageVisibilityCommand); a new batch is fetched once the
  messages in flight drop to newBatchThreshold; an empty queue backs off from 100 ms to maxPollingInterval with
  +-20 % jitter (Timers/RandomizedExponentialBackoffStrategy.cs); a message written by an output binding of the
  same host wakes the listener at once (SharedQueueWatcher).
- .../Queues/QueueProcessor.cs: success deletes the message; a failure with DequeueCount >= maxDequeueCount
  copies the body to `<queue>-poison` (created if missing) and deletes it, otherwise releases it with the
  visibilityTimeout; a message received with DequeueCount > maxDequeueCount is poisoned before any invocation.
  A queue named `*-poison`, or whose poison name would be invalid, has no poison queue: a failed message there
  stays invisible (10 min) instead (Queues/src/Listeners/QueueListenerFactory.cs, CreatePoisonQueueReference).
- Queues/src/QueueServiceClientProvider.cs: a message that is not valid base64 goes straight to the poison queue,
  unchanged and without an invocation.
- Queues/src/Config/QueuesExtensionConfigProvider.cs: an output binding's queue name is lower-cased and validated;
  each value is added with AddMessageAndCreateIfNotExists (the queue is created on the first write).
How an output value becomes messages is the Functions host's, not the extension's: see `output_messages`.
The function receives the azure.functions.QueueMessage the Python worker builds (azure/functions/queue.py,
QueueMessageInConverter) from the trigger metadata the host sends (Id, DequeueCount, InsertionTime,
ExpirationTime, NextVisibleTime, PopReceipt).
"""
from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import random
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Iterable, Mapping

from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.functions import meta
from azure.functions.queue import QueueMessageInConverter, QueueMessageOutConverter
from azure.storage.queue import QueueClient, QueueServiceClient

from devhost.app_loader import QUEUE_NAME, FunctionSpec, QueueOutput, connection_string, queue_name
from devhost.settings import MIN_POLLING_INTERVAL, QueuesOptions

log = logging.getLogger("devhost")

POISON_SUFFIX = "-poison"
LISTENER_VISIBILITY = 600          # seconds a received message stays invisible while its function runs


def poison_queue_name(queue: str) -> str | None:
    if queue.endswith(POISON_SUFFIX) or not QUEUE_NAME.fullmatch(queue + POISON_SUFFIX):
        return None
    return queue + POISON_SUFFIX


# --- output bindings -------------------------------------------------------------------------------------------

def output_messages(value: Any) -> list[bytes]:
    """The message bodies the host adds for a queue output binding's value.

    The worker encodes the value with azure.functions' QueueMessageOutConverter (str -> string, bytes -> bytes,
    QueueMessage or a list -> json). The host's collector for queues is IAsyncCollector<byte[]> (the first of
    byte[], JObject, string the extension converts from: webjobs-sdk AsyncCollectorBindingProvider.GetDefaultType),
    filled by FunctionBinding.ReadAsEnumerable + BindAsyncCollectorAsync<byte[]> (azure-functions-host,
    src/WebJobs.Script/Binding/FunctionBinding.cs). Surprises that follow, kept here on purpose:
    - a string that looks like JSON ({...} or [...]) is parsed: a JSON array becomes one message per element,
      and a JSON object is re-serialised by Newtonsoft with indentation (the same JSON, not the same text);
    - an element that is a string is added as its text, other scalars as .NET prints them (True, False);
    - a list of QueueMessage objects is added as their {"id", "body"} JSON, not their bodies.
    A value that is None is not written (WorkerFunctionInvoker.BindOutputsAsync skips null outputs)."""
    datum = QueueMessageOutConverter.encode(value, expected_type=None)
    if datum.type == "bytes":
        return [bytes(datum.value)]
    if datum.type == "string":
        text = datum.value
        if not _looks_like_json(text):
            return [text.encode("utf-8")]
        token = json.loads(text)
    else:  # json: a QueueMessage or a list
        token = json.loads(datum.value)
    elements = token if isinstance(token, list) else [token]
    return [_dotnet_text(element).encode("utf-8") for element in elements]


def _looks_like_json(text: str) -> bool:
    """Utility.IsJson in the Functions host: trimmed text wrapped in {} or []."""
    stripped = text.strip()
    return len(stripped) >= 2 and ((stripped[0], stripped[-1]) in (("{", "}"), ("[", "]")))


def _dotnet_text(token: Any) -> str:
    """JToken.ToString(): strings bare, objects and arrays indented, booleans and numbers as .NET prints them."""
    if isinstance(token, str):
        return token
    if token is None:
        return ""
    if isinstance(token, bool):
        return "True" if token else "False"
    if isinstance(token, float):
        return str(int(token)) if token.is_integer() and abs(token) < 1e15 else repr(token).replace("e", "E")
    if isinstance(token, int):
        return str(token)
    return json.dumps(token, indent=2, ensure_ascii=False)


class QueueOutputs:
    """Writes output binding values to their queues (AddMessageAndCreateIfNotExists), then wakes a queue
    trigger of this host that listens on that queue, as SharedQueueWatcher does."""

    def __init__(self, options: QueuesOptions, environ: Mapping[str, str] | None = None) -> None:
        self._options = options
        self._environ = environ
        self._services: dict[str, QueueServiceClient] = {}
        self._lock = threading.Lock()
        self._watchers: dict[tuple[str, str], list[Callable[[], None]]] = {}

    def service(self, connection: str | None) -> QueueServiceClient:
        setting = connection or "AzureWebJobsStorage"
        with self._lock:
            if setting not in self._services:
                self._services[setting] = QueueServiceClient.from_connection_string(
                    connection_string(setting, self._environ, f"queue connection {setting!r}"))
            return self._services[setting]

    def watch(self, connection: str | None, queue: str, wake: Callable[[], None]) -> None:
        self._watchers.setdefault((connection or "AzureWebJobsStorage", queue), []).append(wake)

    def write(self, binding: QueueOutput, value: Any) -> int:
        """Add the messages `value` stands for; returns how many."""
        if value is None:
            return 0
        bodies = output_messages(value)
        client = self.service(binding.connection).get_queue_client(binding.queue_name)
        for body in bodies:
            add_message(client, encode(body, self._options.message_encoding))
        for wake in self._watchers.get((binding.connection or "AzureWebJobsStorage", binding.queue_name), []):
            wake()
        return len(bodies)


def encode(body: bytes, encoding: str) -> str:
    return base64.b64encode(body).decode("ascii") if encoding == "base64" else body.decode("utf-8")


def add_message(client: QueueClient, text: str) -> None:
    """QueueClientExtensions.AddMessageAndCreateIfNotExistsAsync: send, and create the queue on a 404."""
    try:
        client.send_message(text)
    except ResourceNotFoundError:
        try:
            client.create_queue()
        except ResourceExistsError:
            pass
        client.send_message(text)


# --- queue triggers --------------------------------------------------------------------------------------------

@dataclass
class _InFlight:
    message: Any                      # azure.storage.queue.QueueMessage, pop receipt kept current
    renew_at: float
    lock: threading.Lock = field(default_factory=threading.Lock)


class QueueListener:
    """One queue trigger function: QueueListener + QueueProcessor of the extension, on a thread of its own."""

    def __init__(self, spec: FunctionSpec, service: QueueServiceClient, submit: Callable[..., "Future"],
                 options: QueuesOptions) -> None:
        self.spec = spec
        self.queue_name = queue_name(spec.trigger["queueName"], f"function {spec.name!r} queueName")
        self._queue = service.get_queue_client(self.queue_name)
        poison = poison_queue_name(self.queue_name)
        self._poison = service.get_queue_client(poison) if poison else None
        self._submit, self._options = submit, options
        self._in_flight: dict[str, _InFlight] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()        # an output binding wrote to this queue, or a message finished
        self._stopping = threading.Event()
        self._queue_exists = False
        self._backoff_exponent = 0
        self._delay = MIN_POLLING_INTERVAL
        self._thread = threading.Thread(target=self._run, name=f"queue-{spec.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop fetching; in-flight messages finish on the invoker (which the host drains next)."""
        self._stopping.set()
        self._wake.set()
        self._thread.join()

    def notify(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                found = self._poll_once()
            except Exception:  # Storage down for a moment: log it and back off
                log.exception("function=%s polling queue %r failed", self.spec.name, self.queue_name)
                self._queue_exists, found = False, False
            if found:
                self._delay, self._backoff_exponent = MIN_POLLING_INTERVAL, 1
                self._wait_for_new_batch_threshold()
            else:
                self._wait(self._next_backoff())
            self._renew_visibility()

    def _poll_once(self) -> bool:
        if not self._queue_exists:
            self._queue_exists = self._exists()
            if not self._queue_exists:
                return False
        try:
            page = next(self._queue.receive_messages(messages_per_page=self._options.batch_size,
                                                     visibility_timeout=LISTENER_VISIBILITY).by_page(), [])
            messages = list(page)
        except ResourceNotFoundError:
            self._queue_exists = False
            return False
        for message in messages:
            self._process(message)
        return bool(messages)

    def _exists(self) -> bool:
        try:
            self._queue.get_queue_properties()
            return True
        except ResourceNotFoundError:
            return False

    def _next_backoff(self) -> float:
        """RandomizedExponentialBackoffStrategy.GetNextDelay(false): min + (0.8 to 1.2) x 2^(n-1) x min, then
        maxPollingInterval once that is reached."""
        maximum = self._options.max_polling_interval
        if self._delay < maximum:
            grown = MIN_POLLING_INTERVAL
            if self._backoff_exponent > 0:
                grown += random.uniform(0.8, 1.2) * 2 ** (self._backoff_exponent - 1) * MIN_POLLING_INTERVAL
            if grown < maximum:
                self._delay, self._backoff_exponent = grown, self._backoff_exponent + 1
            else:
                self._delay = maximum
        return self._delay

    def _wait(self, seconds: float) -> None:
        self._wake.wait(seconds)
        self._wake.clear()

    def _wait_for_new_batch_threshold(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                if len(self._in_flight) <= self._options.threshold:
                    return
            self._wait(1.0)
            self._renew_visibility()

    def _process(self, message: Any) -> None:
        body = self._decode(message)
        if body is None:
            return
        if message.dequeue_count > self._options.max_dequeue_count:   # BeginProcessingMessageAsync
            self._to_poison(message)
            return
        record = _InFlight(message, renew_at=time.monotonic() + LISTENER_VISIBILITY / 2)
        with self._lock:
            self._in_flight[message.id] = record
        future = self._submit(self.spec, lambda: trigger_argument(self.spec, message, body), "queue")
        future.add_done_callback(lambda done: self._complete(record, done))

    def _decode(self, message: Any) -> bytes | None:
        text = message.content or ""
        if self._options.message_encoding == "none":
            return text.encode("utf-8")
        try:
            return base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError):
            log.warning("function=%s message %s on queue %r is not base64 (host.json messageEncoding is base64): "
                        "moved unchanged to the poison queue without an invocation", self.spec.name, message.id,
                        self.queue_name)
            self._to_poison(message)
            return None

    def _complete(self, record: _InFlight, done: "Future") -> None:
        try:
            with record.lock:
                if done.cancelled():
                    # Dropped at shutdown before it ran (the real host runs every fetched message before it
                    # stops): visible again at once for the next start.
                    self._release(record.message, 0)
                    return
                message = record.message
                if done.result().succeeded:
                    self._delete(message)
                elif self._poison is None:
                    log.error("function=%s failed on message %s; queue %r has no poison queue: the message stays "
                              "invisible for %d s", self.spec.name, message.id, self.queue_name, LISTENER_VISIBILITY)
                elif message.dequeue_count >= self._options.max_dequeue_count:
                    self._to_poison(message)
                else:
                    self._release(message, int(self._options.visibility_timeout))
        except Exception:
            log.exception("function=%s completing queue message %s failed", self.spec.name, record.message.id)
        finally:
            with self._lock:
                self._in_flight.pop(record.message.id, None)
            self._wake.set()

    def _to_poison(self, message: Any) -> None:
        if self._poison is None:
            return
        add_message(self._poison, message.content or "")
        self._delete(message)
        log.error("function=%s message %s reached maxDequeueCount of %d: moved to queue %r", self.spec.name,
                  message.id, self._options.max_dequeue_count, self._poison.queue_name)

    def _release(self, message: Any, visibility_timeout: int) -> None:
        try:
            self._queue.update_message(message.id, message.pop_receipt, visibility_timeout=visibility_timeout)
        except HttpResponseError as error:   # pop receipt mismatch or gone: someone else has it
            log.info("function=%s releasing message %s: %s", self.spec.name, message.id, error.reason)

    def _delete(self, message: Any) -> None:
        try:
            self._queue.delete_message(message.id, message.pop_receipt)
        except HttpResponseError as error:
            log.info("function=%s deleting message %s: %s", self.spec.name, message.id, error.reason)

    def _renew_visibility(self) -> None:
        """UpdateQueueMessageVisibilityCommand: a message whose function still runs stays invisible."""
        now = time.monotonic()
        with self._lock:
            due = [r for r in self._in_flight.values() if r.renew_at <= now]
        for record in due:
            with record.lock:
                try:
                    receipt = self._queue.update_message(record.message.id, record.message.pop_receipt,
                                                         visibility_timeout=LISTENER_VISIBILITY)
                    record.message.pop_receipt = receipt.pop_receipt
                    record.message.next_visible_on = receipt.next_visible_on
                    record.renew_at = now + LISTENER_VISIBILITY / 2
                except HttpResponseError:
                    log.exception("function=%s renewing the visibility of message %s failed", self.spec.name,
                                  record.message.id)


def trigger_argument(spec: FunctionSpec, message: Any, body: bytes) -> Any:
    """What the worker passes for a queue message: for a func.QueueMessage parameter, the object azure.functions'
    QueueMessageInConverter builds from the body the host sends as a string (invalid UTF-8 replaced:
    Body.ToValidUTF8String) and the metadata it sends as typed data (strings, numbers and dates as JSON); for a
    str or bytes parameter, the body itself."""
    text = body.decode("utf-8", errors="replace")
    if spec.parameter.annotation in (str, bytes):
        return text if spec.parameter.annotation is str else text.encode("utf-8")
    metadata = {"Id": meta.Datum(message.id, "string"), "PopReceipt": meta.Datum(message.pop_receipt, "string"),
                "DequeueCount": meta.Datum(json.dumps(message.dequeue_count), "json"),
                "InsertionTime": _date(message.inserted_on), "ExpirationTime": _date(message.expires_on),
                "NextVisibleTime": _date(message.next_visible_on)}
    return QueueMessageInConverter.decode(meta.Datum(text, "string"),
                                          trigger_metadata={k: v for k, v in metadata.items() if v is not None})


def direct_argument(text: str) -> Any:
    """A manual run (admin API): the input string becomes the body of a message that was never on a queue."""
    return QueueMessageInConverter.decode(meta.Datum(text, "string"),
                                          trigger_metadata={"DequeueCount": meta.Datum("0", "json")})


def _date(value: datetime | None) -> meta.Datum | None:
    return meta.Datum(json.dumps(value.isoformat()), "json") if value else None


class QueueTriggers:
    def __init__(self, specs: Iterable[FunctionSpec], outputs: QueueOutputs, submit: Callable[..., "Future"],
                 options: QueuesOptions) -> None:
        self.listeners = [QueueListener(s, outputs.service(s.trigger.get("connection")), submit, options)
                          for s in specs if s.trigger_type == "queueTrigger"]
        for listener in self.listeners:
            outputs.watch(listener.spec.trigger.get("connection"), listener.queue_name, listener.notify)

    def start(self) -> None:
        for listener in self.listeners:
            listener.start()

    def stop(self) -> None:
        for listener in self.listeners:
            listener.stop()
