"""Blob storage (ports.BlobStore) through azure-storage-blob; Azurite locally.

ETags are returned without the quotes the HTTP header carries ("0x8DC..."), as Event Grid's BlobCreated
`eTag` has them, so keys built from either source agree. Every service call goes through `Retry`; the
SDK's own retries are off.
"""
from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient

from retrainer.ports import BlobInfo
from retrainer.retry import Retry, retry as default_retry

# Metadata travels in HTTP headers: printable ASCII only. Anything else is percent-encoded.
_HEADER_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")
_MAX_REASON = 1024  # all metadata of a blob must fit in 8 KiB


class AzureBlobStore:
    def __init__(self, service: BlobServiceClient, quarantine_container: str, *,
                 retry: Retry = default_retry) -> None:
        self._service = service
        self._quarantine = quarantine_container
        self._retry = retry
        self._quarantine_ready = False

    @classmethod
    def from_connection_string(cls, connection_string: str, quarantine_container: str, *,
                               retry: Retry = default_retry) -> "AzureBlobStore":
        return cls(BlobServiceClient.from_connection_string(connection_string, retry_total=0),
                   quarantine_container, retry=retry)

    @classmethod
    def from_service_uri(cls, service_uri: str, quarantine_container: str, *, credential: Any = None,
                         retry: Retry = default_retry) -> "AzureBlobStore":
        """An identity-based connection, as Functions configures one with `<SETTING>__serviceUri`: the
        app's managed identity (or the developer's sign-in) through DefaultAzureCredential."""
        if credential is None:
            from azure.identity import DefaultAzureCredential  # only identity-based apps pay for it

            credential = DefaultAzureCredential()
        return cls(BlobServiceClient(service_uri, credential=credential, retry_total=0),
                   quarantine_container, retry=retry)

    # ---------------------------------------------------------------- ports.BlobStore

    def properties(self, container: str, name: str) -> BlobInfo:
        try:
            props = self._retry(self._service.get_blob_client(container, name).get_blob_properties)
        except ResourceNotFoundError:
            raise FileNotFoundError(f"no blob {container}/{name}") from None
        return _info(container, props)

    def read_prefix(self, container: str, name: str, max_bytes: int) -> bytes:
        if max_bytes <= 0:
            return b""
        blob = self._service.get_blob_client(container, name)
        try:
            return self._retry(lambda: blob.download_blob(offset=0, length=max_bytes).readall())
        except HttpResponseError as error:
            if error.status_code == 416:  # a range of an empty blob: there is nothing to read
                return b""
            raise

    def list(self, container: str, prefix: str = "") -> list[BlobInfo]:
        blobs = self._service.get_container_client(container)
        return self._retry(lambda: [_info(container, p) for p in blobs.list_blobs(name_starts_with=prefix or None)])

    def quarantine(self, container: str, name: str, reason: str) -> str:
        """Server-side copy to `<quarantine container>/<container>/<name>` with metadata reason, source and
        etag (non-ASCII percent-encoded). The copy finishes in the service; the original stays."""
        self._ensure_quarantine_container()
        copy_name = f"{container}/{name}"
        source = self._service.get_blob_client(container, name)
        etag = self._retry(source.get_blob_properties).etag
        metadata = {"reason": _header_value(reason[:_MAX_REASON]), "source": _header_value(copy_name),
                    "etag": etag.strip('"')}
        target = self._service.get_blob_client(self._quarantine, copy_name)
        # The same-account source URL needs no SAS: the request's own authorization covers it.
        self._retry(target.start_copy_from_url, source.url, metadata=metadata, source_etag=etag,
                    source_match_condition=MatchConditions.IfNotModified)
        return copy_name

    def download(self, container: str, name: str, destination: str) -> None:
        """Stream in chunks to a sibling ".part" file, then rename: a failed download leaves no file that
        looks complete."""
        target = Path(destination)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        blob = self._service.get_blob_client(container, name)

        def fetch() -> None:
            with open(partial, "wb") as out:
                blob.download_blob().readinto(out)

        try:
            self._retry(fetch)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)

    def upload(self, container: str, name: str, source: str) -> None:
        client = self._service.get_container_client(container)

        def put() -> None:
            with open(source, "rb") as data:
                client.upload_blob(name, data, overwrite=True)

        try:
            self._retry(put)
        except ResourceNotFoundError:       # the container does not exist yet
            try:
                self._retry(client.create_container)
            except ResourceExistsError:
                pass
            self._retry(put)

    # ---------------------------------------------------------------- helpers

    def _ensure_quarantine_container(self) -> None:
        if self._quarantine_ready:
            return
        try:
            self._retry(self._service.create_container, self._quarantine)
        except ResourceExistsError:
            pass
        self._quarantine_ready = True


def _info(container: str, props) -> BlobInfo:
    md5 = props.content_settings.content_md5
    return BlobInfo(container=container, name=props.name, size=props.size, etag=props.etag.strip('"'),
                    last_modified=props.last_modified,
                    content_md5=base64.b64encode(md5).decode("ascii") if md5 else None)


def _header_value(text: str) -> str:
    return quote(text, safe=_HEADER_SAFE)
