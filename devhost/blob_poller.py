"""Blob triggers: scan each trigger's container, invoke once per blob version (ETag), keep receipts.

Receipts live where the Functions host keeps them, in container `azure-webjobs-hosts` as
`blobreceipts/<hostId>/<functionId>/<"etag">/<container>/<blob name>`, so a restarted host
reprocesses nothing. A blob version whose function fails `max_dequeue_count` times (host.json
poisonBlobThreshold) gets a message on the `webjobs-blobtrigger-poison` queue (the host's format)
and a poisoned receipt: no more retries.
"""
from __future__ import annotations

import json
import logging
import re
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Iterable

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueServiceClient, TextBase64EncodePolicy

from devhost.app_loader import FunctionSpec, storage_connection
from devhost.bindings import Invoker, Outcome, blob_argument

log = logging.getLogger("devhost")

HOSTS_CONTAINER = "azure-webjobs-hosts"
POISON_QUEUE = "webjobs-blobtrigger-poison"


@dataclass(frozen=True)
class BlobVersion:
    container: str
    name: str
    etag: str  # quoted, as the host writes it in receipts

    def __post_init__(self) -> None:
        # Listing returns ETags bare, blob properties return them quoted: one form for one version.
        object.__setattr__(self, "etag", f'"{self.etag.strip(chr(34))}"')


class BlobPattern:
    """A blob trigger path such as 'incoming/{name}' or 'in/{folder}/{name}.csv'."""

    def __init__(self, path: str) -> None:
        self.container, _, blob_pattern = path.partition("/")
        parts = re.split(r"(\{[^}]*\})", blob_pattern)
        regex = "".join(f"(?P<{p[1:-1]}>.+)" if p.startswith("{") else re.escape(p) for p in parts)
        self._regex = re.compile(regex or ".+")

    def matches(self, container: str, name: str) -> bool:
        return container == self.container and self._regex.fullmatch(name) is not None


class BlobTriggers:
    def __init__(self, specs: Iterable[FunctionSpec], host_storage: str, invoker: Invoker, *, host_id: str,
                 poll_interval: float, max_dequeue_count: int) -> None:
        """`host_storage`: AzureWebJobsStorage (receipts, poison queue); each trigger's blobs come
        from the account its `connection` setting names."""
        self._specs = {s.name: s for s in specs if s.trigger_type == "blobTrigger"}
        self._patterns = {name: BlobPattern(s.trigger["path"]) for name, s in self._specs.items()}
        self._data = {name: BlobServiceClient.from_connection_string(storage_connection(s))
                      for name, s in self._specs.items()}
        self._blobs = BlobServiceClient.from_connection_string(host_storage)
        self._queues = QueueServiceClient.from_connection_string(host_storage)
        self._invoker = invoker
        self._host_id, self._interval, self._max_failures = host_id, poll_interval, max_dequeue_count
        self._lock = threading.Lock()
        self._settled: set[tuple[str, BlobVersion]] = set()       # receipted: complete or poisoned
        self._failures: dict[tuple[str, BlobVersion], int] = {}
        self._in_flight: set[tuple[str, BlobVersion]] = set()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._poll_forever, name="blob-poller", daemon=True)

    def start(self) -> None:
        if not self._specs:
            return
        self._create_container(self._blobs, HOSTS_CONTAINER)
        for name, pattern in self._patterns.items():
            self._create_container(self._data[name], pattern.container)
        try:
            self._poison_queue().create_queue()
        except ResourceExistsError:
            pass
        for name in self._specs:
            self._load_receipts(name)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()

    def accepts_events(self, function_name: str) -> bool:
        spec = self._specs.get(function_name)
        return spec is not None and spec.trigger.get("source") == "EventGrid"

    def blob_created(self, function_name: str, container: str, name: str) -> bool:
        """A BlobCreated notification: invoke now unless that version is receipted or running.
        False when the blob does not exist or does not match the trigger path."""
        if not self._patterns[function_name].matches(container, name):
            return False
        try:
            etag = self._data[function_name].get_blob_client(container, name).get_blob_properties().etag
        except ResourceNotFoundError:
            return False
        self._dispatch(function_name, BlobVersion(container, name, etag), reason="event")
        return True

    def run_now(self, function_name: str, container: str, name: str) -> bool:
        """A manual run (admin endpoint): invoke whatever its receipts say; False if the blob is missing."""
        try:
            etag = self._data[function_name].get_blob_client(container, name).get_blob_properties().etag
        except ResourceNotFoundError:
            return False
        spec = self._specs[function_name]
        self._invoker.submit(spec, lambda: self._argument(spec, BlobVersion(container, name, etag)), "manual")
        return True

    def _poll_forever(self) -> None:
        while not self._stopping.is_set():
            for function_name, pattern in self._patterns.items():
                try:
                    for blob in self._data[function_name].get_container_client(pattern.container).list_blobs():
                        if pattern.matches(pattern.container, blob.name):
                            self._dispatch(function_name, BlobVersion(pattern.container, blob.name, blob.etag),
                                           reason="new blob")
                except Exception:  # Storage down for a moment: log it and scan again next interval
                    log.exception("scanning container %r for function %s failed", pattern.container,
                                  function_name)
            self._stopping.wait(self._interval)

    def _dispatch(self, function_name: str, version: BlobVersion, reason: str) -> None:
        key = (function_name, version)
        with self._lock:
            if key in self._settled or key in self._in_flight:
                return
            self._in_flight.add(key)
        spec = self._specs[function_name]
        future = self._invoker.submit(spec, lambda: self._argument(spec, version), reason)
        future.add_done_callback(lambda done: self._settle(function_name, version, done))

    def _argument(self, spec: FunctionSpec, version: BlobVersion) -> object:
        client = self._data[spec.name].get_blob_client(version.container, version.name)
        # The version the trigger saw: an overwrite since then is a new version, triggered on its own.
        same_version = {"etag": version.etag, "match_condition": MatchConditions.IfNotModified}
        props = client.get_blob_properties(**same_version)
        properties = {"ETag": props.etag, "Length": props.size, "ContentType": props.content_settings.content_type,
                      "LastModified": props.last_modified.isoformat()}
        return blob_argument(spec, lambda: client.download_blob(**same_version).readall(),
                             f"{version.container}/{version.name}", client.url, props.size, properties,
                             props.metadata or {})

    def _settle(self, function_name: str, version: BlobVersion, done: "Future[Outcome]") -> None:
        key = (function_name, version)
        try:
            if done.cancelled():    # dropped at shutdown: no receipt, so the next start triggers it
                return
            outcome = done.result()
            if outcome.succeeded:
                self._write_receipt(function_name, version, {"Status": "Complete"})
                with self._lock:
                    self._settled.add(key)
                return
            if not self._still_there(function_name, version):
                log.info("function=%s blob=%s/%s changed or went away before it was read: that version is "
                         "skipped", function_name, version.container, version.name)
                return
            with self._lock:
                failures = self._failures[key] = self._failures.get(key, 0) + 1
            if failures >= self._max_failures:
                self._poison(function_name, version, failures)
                with self._lock:
                    self._settled.add(key)
            else:
                self._write_receipt(function_name, version, {"Status": "Failed", "Failures": str(failures)})
        except Exception:
            log.exception("recording the outcome of %s for blob %s/%s failed", function_name, version.container,
                          version.name)
        finally:
            with self._lock:
                self._in_flight.discard(key)

    def _still_there(self, function_name: str, version: BlobVersion) -> bool:
        client = self._data[function_name].get_blob_client(version.container, version.name)
        try:
            return BlobVersion(version.container, version.name, client.get_blob_properties().etag) == version
        except ResourceNotFoundError:
            return False

    def _poison(self, function_name: str, version: BlobVersion, failures: int) -> None:
        spec = self._specs[function_name]
        message = {"Type": "BlobTrigger", "FunctionId": spec.function_id, "BlobType": "BlockBlob",
                   "ContainerName": version.container, "BlobName": version.name, "ETag": version.etag}
        self._poison_queue().send_message(json.dumps(message))
        self._write_receipt(function_name, version, {"Status": "Poisoned", "Failures": str(failures)})
        log.error("function=%s blob=%s/%s failed %d times: moved to queue %s, no more retries", function_name,
                  version.container, version.name, failures, POISON_QUEUE)

    def _poison_queue(self):
        # Base64 like the host's queue messages, so a queue trigger on the poison queue can read them.
        return self._queues.get_queue_client(POISON_QUEUE, message_encode_policy=TextBase64EncodePolicy())

    def _receipt_prefix(self, function_name: str) -> str:
        return f"blobreceipts/{self._host_id}/{self._specs[function_name].function_id}/"

    def _write_receipt(self, function_name: str, version: BlobVersion, metadata: dict[str, str]) -> None:
        name = f"{self._receipt_prefix(function_name)}{version.etag}/{version.container}/{version.name}"
        self._blobs.get_blob_client(HOSTS_CONTAINER, name).upload_blob(b"", overwrite=True, metadata=metadata)

    def _load_receipts(self, function_name: str) -> None:
        prefix = self._receipt_prefix(function_name)
        container = self._blobs.get_container_client(HOSTS_CONTAINER)
        for receipt in container.list_blobs(name_starts_with=prefix, include=["metadata"]):
            etag, _, path = receipt.name[len(prefix):].partition("/")
            blob_container, _, blob_name = path.partition("/")
            key = (function_name, BlobVersion(blob_container, blob_name, etag))
            metadata = receipt.metadata or {}
            if metadata.get("Status") in ("Complete", "Poisoned"):
                self._settled.add(key)
            else:
                self._failures[key] = int(metadata.get("Failures", "0"))

    @staticmethod
    def _create_container(service: BlobServiceClient, name: str) -> None:
        try:
            service.create_container(name)
        except ResourceExistsError:
            pass

