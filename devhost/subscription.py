"""Azurite has no Event Grid: a scan of the data account stands in for the Event Grid subscription that sends the
account's BlobCreated events to an Event Grid trigger function.

What it sends is what a storage account emits (https://learn.microsoft.com/azure/event-grid/event-schema-blob-storage):
- a blob written in one call: `PutBlob` with its size, a 0-byte blob included (`contentLength` 0);
- a committed block list (the blob has committed blocks): `PutBlockList`; staged blocks never committed: nothing;
- a blob created by a copy (it carries copy properties): `CopyBlob`;
- with DEVHOST_HNS=on, a file written through the Data Lake (dfs) API of a hierarchical-namespace account:
  `CreateFile` with `contentLength` 0 (and an earlier ETag: the file had one before its flush), then
  `FlushWithClose` with the size. Unlike Azure, `data.url` stays the blob endpoint (Azurite has no dfs endpoint).
Event Grid schema, `topic` the account's resource id, `subject` /blobServices/default/containers/<c>/blobs/<name>,
`data` with api, clientRequestId, requestId, eTag, contentType, contentLength, blobType, url, sequencer (ordered
per blob), storageDiagnostics. The scope is the scanned containers and the BlobCreated type (the subscription's
subjectBeginsWith and includedEventTypes); its advanced filters (api, size, folders) are deliberately not applied:
the app applies the same rules (retrainer/filters.py), and they are exercised here.

How Event Grid delivers (https://learn.microsoft.com/azure/event-grid/delivery-and-retry): one event per POST,
as an array of one (maxEventsPerBatch 1), in no guaranteed order, with headers aeg-event-type: Notification,
aeg-subscription-name, aeg-delivery-count, aeg-data-version, aeg-metadata-version. A 2xx answer ends it. No answer
within 30 s, or another status, is retried after 10 s, 30 s, 1 min, 5 min, 10 min, 30 min, 1 h, 3 h, 6 h, then
every 12 h (Event Grid adds jitter; so do we), at most 30 attempts within 24 hours (the subscription's retryPolicy
defaults), after which the event is dropped (dead-lettering is not modelled: it is logged). 400, 403 and 413 are
not retried (an Azure Function destination). A late answer does not cancel the retry: the function may run twice.
DEVHOST_EVENTGRID_RETRY_DELAYS replaces the schedule (tests shorten it); the bounds stay.

The subscription starts with the host's first start (a marker blob): blobs written before then send nothing, as
for a new subscription on Azure. A blob version (ETag) whose events were delivered or dropped gets a receipt blob
in the host account (`azure-webjobs-hosts/eventgrid/<hostId>/<function>/receipts/<container>/<blob>`, the ETag in
its metadata), so a restarted host sends nothing twice for it; a version written while the host was down is sent
at the next start (Event Grid would have retried it), unless it is older than the 24 h an event lives. Event Grid
is still at-least-once (a timeout or a crash between delivery and receipt sends an event again): the app
deduplicates.
"""
from __future__ import annotations

import heapq
import itertools
import json
import logging
import random
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient

from devhost.settings import HOSTS_CONTAINER, RETRY_SCHEDULE

log = logging.getLogger("devhost")

BLOB_CREATED = "Microsoft.Storage.BlobCreated"
RESPONSE_TIMEOUT = 30.0
MAX_DELIVERY_ATTEMPTS = 30
EVENT_TIME_TO_LIVE = timedelta(hours=24)
NOT_RETRIED = frozenset({400, 403, 413})
DELIVERY_THREADS = 8


@dataclass(frozen=True)
class Subscription:
    """What the stand-in subscription watches and where it delivers."""
    function: str                     # the Event Grid trigger function it delivers to
    containers: tuple[str, ...]       # the data account's containers it watches
    topic: str                        # the storage account's resource id
    hierarchical_namespace: bool = False
    retry_delays: tuple[float, ...] = RETRY_SCHEDULE
    response_timeout: float = RESPONSE_TIMEOUT   # seconds Event Grid waits for an answer


@dataclass
class _Version:
    """One blob version whose events are on their way; its receipt is written when all have settled."""
    container: str
    name: str
    etag: str
    pending: int


@dataclass(order=True)
class _Delivery:
    due: float
    order: int
    event: dict = field(compare=False)
    version: _Version = field(compare=False)
    attempt: int = field(default=1, compare=False)      # 1 for the first delivery


class StorageSubscription:
    def __init__(self, subscription: Subscription, *, data: BlobServiceClient, hosts: BlobServiceClient,
                 endpoint: str, key: str | None, host_id: str, poll_interval: float) -> None:
        """`endpoint`: the dev host's Event Grid webhook; `key`: its system key (Event Grid's subscription URL
        carries it as `code`)."""
        self.subscription = subscription
        self._data, self._hosts = data, hosts
        self._url = f"{endpoint}/runtime/webhooks/eventgrid"
        self._params = {"functionName": subscription.function, **({"code": key} if key else {})}
        self._prefix = f"eventgrid/{host_id}/{subscription.function}/"
        self._interval = poll_interval
        self._http = httpx.Client(timeout=subscription.response_timeout)
        self._lock = threading.Lock()
        self._settled: dict[tuple[str, str], str] = {}       # (container, blob) -> the ETag last receipted
        self._latest: dict[tuple[str, str], str] = {}        # (container, blob) -> the ETag last seen
        self._in_flight: set[tuple[str, str, str]] = set()
        self._retries: list[_Delivery] = []
        self._order = itertools.count()
        self._sequence = itertools.count()
        self._created: datetime | None = None
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=DELIVERY_THREADS, thread_name_prefix="eventgrid")
        self._threads = [threading.Thread(target=self._scan_forever, name="storage-scan", daemon=True),
                         threading.Thread(target=self._retry_forever, name="eventgrid-retries", daemon=True)]

    def start(self) -> None:
        """Creates the host container and the watched containers if missing (on Azure, infra/ creates those)."""
        for service, container in [(self._hosts, HOSTS_CONTAINER),
                                   *((self._data, c) for c in self.subscription.containers)]:
            try:
                service.create_container(container)
            except ResourceExistsError:
                pass
        self._created = self._subscription_created()
        self._load_receipts()
        for thread in self._threads:
            thread.start()
        log.info("storage subscription: BlobCreated of container(s) %s -> function %s%s",
                 ", ".join(self.subscription.containers), self.subscription.function,
                 " (hierarchical namespace)" if self.subscription.hierarchical_namespace else "")

    def stop(self) -> None:
        """Stop scanning and retrying; deliveries under way finish (their versions' receipts are written)."""
        self._stopping.set()
        self._wake.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._http.close()

    # --- the subscription's state in the host account
    def _subscription_created(self) -> datetime:
        marker = self._hosts.get_blob_client(HOSTS_CONTAINER, self._prefix + "subscription")
        try:
            marker.upload_blob(b"", overwrite=False)
        except ResourceExistsError:
            pass
        return marker.get_blob_properties().creation_time

    def _load_receipts(self) -> None:
        prefix = self._prefix + "receipts/"
        container = self._hosts.get_container_client(HOSTS_CONTAINER)
        for receipt in container.list_blobs(name_starts_with=prefix, include=["metadata"]):
            blob_container, _, name = receipt.name[len(prefix):].partition("/")
            self._settled[(blob_container, name)] = (receipt.metadata or {}).get("etag", "")

    def _write_receipt(self, version: _Version) -> None:
        name = f"{self._prefix}receipts/{version.container}/{version.name}"
        self._hosts.get_blob_client(HOSTS_CONTAINER, name).upload_blob(b"", overwrite=True,
                                                                       metadata={"etag": version.etag})

    # --- the scan: what the account would have emitted since the last one
    def _scan_forever(self) -> None:
        while not self._stopping.is_set():
            for container in self.subscription.containers:
                try:
                    self._scan(container)
                except ResourceNotFoundError:
                    pass                        # the container was deleted: no blob, no event
                except Exception:               # Storage down for a moment: log it and scan again next interval
                    log.exception("storage subscription: scanning container %r failed", container)
            self._stopping.wait(self._interval)

    def _scan(self, container: str) -> None:
        client = self._data.get_container_client(container)
        for blob in client.list_blobs(include=["copy"]):
            etag = blob.etag.strip('"')
            key = (container, blob.name)
            with self._lock:
                if self._settled.get(key) == etag or (container, blob.name, etag) in self._in_flight:
                    continue
                self._latest[key] = etag
            if blob.last_modified < self._created:
                continue                        # written before the subscription existed
            if datetime.now(timezone.utc) - blob.last_modified > EVENT_TIME_TO_LIVE:
                log.warning("storage subscription: %s/%s changed more than 24 h ago while the host was down: its "
                            "event expired, as Event Grid's would", container, blob.name)
                self._settle(_Version(container, blob.name, etag, 0))
                continue
            try:
                events = self._events(container, blob, etag)
            except ResourceNotFoundError:
                continue                        # deleted since the listing
            version = _Version(container, blob.name, etag, pending=len(events))
            with self._lock:
                self._in_flight.add((container, blob.name, etag))
            for event in events:
                self._pool.submit(self._deliver, _Delivery(0.0, next(self._order), event, version))

    def _events(self, container: str, blob: Any, etag: str) -> list[dict]:
        url = self._data.get_blob_client(container, blob.name).url
        if self.subscription.hierarchical_namespace:
            return [self._event(container, blob, "CreateFile", 0, _earlier(etag), url, contentOffset=0),
                    self._event(container, blob, "FlushWithClose", blob.size, etag, url, contentOffset=0)]
        if blob.copy is not None and blob.copy.status:
            api = "CopyBlob"
        elif self._data.get_blob_client(container, blob.name).get_block_list("committed")[0]:
            api = "PutBlockList"
        else:
            api = "PutBlob"
        return [self._event(container, blob, api, blob.size, etag, url)]

    def _event(self, container: str, blob: Any, api: str, length: int, etag: str, url: str,
               **extra: Any) -> dict:
        ticks = int(blob.last_modified.timestamp() * 10_000_000)
        return {
            "topic": self.subscription.topic,
            "subject": f"/blobServices/default/containers/{container}/blobs/{blob.name}",
            "eventType": BLOB_CREATED,
            "eventTime": _event_time(blob.last_modified),
            "id": str(uuid.uuid4()),
            "data": {"api": api, "clientRequestId": str(uuid.uuid4()), "requestId": str(uuid.uuid4()),
                     "eTag": etag, "contentType": blob.content_settings.content_type or "application/octet-stream",
                     "contentLength": length, **extra, "blobType": _blob_type(blob), "url": url,
                     "sequencer": f"{ticks:016x}{next(self._sequence):016x}",
                     "storageDiagnostics": {"batchId": str(uuid.uuid4())}},
            "dataVersion": "",
            "metadataVersion": "1",
        }

    # --- delivery and retries
    def _deliver(self, delivery: _Delivery) -> None:
        status = self._post(delivery)
        if status is not None and 200 <= status < 300:
            self._done(delivery.version)
            return
        what = f"HTTP {status}" if status is not None else f"no answer within {self.subscription.response_timeout:g} s"
        event = delivery.event
        expired = datetime.now(timezone.utc) - _parse_time(event["eventTime"]) > EVENT_TIME_TO_LIVE
        if status in NOT_RETRIED or delivery.attempt >= MAX_DELIVERY_ATTEMPTS or expired:
            log.error("storage subscription: event %s (%s %s) dropped after %d attempt(s), last %s: Event Grid "
                      "does not retry this (or its retry policy is spent)", event["id"], event["data"]["api"],
                      event["subject"], delivery.attempt, what)
            self._done(delivery.version)
            return
        delays = self.subscription.retry_delays
        delay = delays[min(delivery.attempt - 1, len(delays) - 1)] * random.uniform(0.9, 1.1)
        log.warning("storage subscription: event %s for %s: %s; delivery %d again in %.1f s", event["id"],
                    event["subject"], what, delivery.attempt + 1, delay)
        with self._lock:
            heapq.heappush(self._retries, _Delivery(time.monotonic() + delay, next(self._order), event,
                                                    delivery.version, delivery.attempt + 1))
        self._wake.set()

    def _post(self, delivery: _Delivery) -> int | None:
        headers = {"aeg-event-type": "Notification", "aeg-subscription-name": self.subscription.function.upper(),
                   "aeg-delivery-count": str(delivery.attempt - 1), "aeg-data-version": "",
                   "aeg-metadata-version": "1", "content-type": "application/json"}
        try:
            return self._http.post(self._url, params=self._params, headers=headers,
                                   content=json.dumps([delivery.event])).status_code
        except httpx.TimeoutException:
            return None
        except httpx.TransportError as error:
            log.warning("storage subscription: delivering event %s failed: %s", delivery.event["id"], error)
            return 503

    def _retry_forever(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                due = []
                while self._retries and self._retries[0].due <= time.monotonic():
                    due.append(heapq.heappop(self._retries))
                wait = self._retries[0].due - time.monotonic() if self._retries else 60.0
            for delivery in due:
                self._pool.submit(self._deliver, delivery)
            self._wake.wait(max(min(wait, 60.0), 0.0))
            self._wake.clear()

    def _done(self, version: _Version) -> None:
        with self._lock:
            version.pending -= 1
            finished = version.pending <= 0
        if finished:
            self._settle(version)

    def _settle(self, version: _Version) -> None:
        """Receipt the version, unless a newer one of the blob was seen meanwhile (its own receipt follows)."""
        key = (version.container, version.name)
        with self._lock:
            self._in_flight.discard((version.container, version.name, version.etag))
            if self._latest.get(key, version.etag) != version.etag:
                return
            self._settled[key] = version.etag
        try:
            self._write_receipt(version)
        except Exception:   # the version is sent again after a restart: at least once, as Event Grid
            log.exception("storage subscription: writing the receipt of %s/%s failed", version.container,
                          version.name)


def _earlier(etag: str) -> str:
    """An ETag before this one (a Data Lake file has one after CreateFile, another after its flush)."""
    try:
        return f"0x{int(etag, 16) - 1:X}"
    except ValueError:
        return etag + "-created"


def _blob_type(blob: Any) -> str:
    kind = str(getattr(blob.blob_type, "value", blob.blob_type))   # BlockBlob, PageBlob, AppendBlob
    return kind if kind.endswith("Blob") else "BlockBlob"


def _event_time(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def _parse_time(text: str) -> datetime:
    return datetime.strptime(text[:26], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=timezone.utc)
