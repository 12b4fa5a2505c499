"""The fault-injection suite: the app's own ports and handlers, with real adapters, under injected faults.

Storage faults come from a real HTTP proxy between the storage SDK clients and Azurite
(tests/support/fault_proxy.py); backend faults from the local backend's call seam; crashes from SIGKILL.
Every scenario asserts what a user relies on, never time.
"""
from __future__ import annotations

import pytest

from tests.support.fault_proxy import FaultProxy, proxied_connection_string


@pytest.fixture
def table_proxy(azurite):
    proxy = FaultProxy(_endpoint(azurite.connection_string, "TableEndpoint"))
    yield proxy
    proxy.close()


@pytest.fixture
def blob_proxy(azurite):
    proxy = FaultProxy(_endpoint(azurite.connection_string, "BlobEndpoint"))
    yield proxy
    proxy.close()


@pytest.fixture
def proxied_storage(azurite, table_proxy, blob_proxy) -> str:
    """A connection string whose blob and table requests go through the fault proxies."""
    return proxied_connection_string(azurite.connection_string, table=table_proxy, blob=blob_proxy)


def _endpoint(connection_string: str, name: str) -> str:
    parts = dict(part.split("=", 1) for part in connection_string.split(";") if part)
    return parts[name]
