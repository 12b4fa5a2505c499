"""Shared fixtures: one Azurite (blob, queue, table) for the whole test session, on free loopback ports."""
from __future__ import annotations

import pytest

from devhost import azurite as azurite_launcher


@pytest.fixture(scope="session")
def azurite():
    """The running Azurite. A missing Node.js or Azurite fails the tests that need it, saying how to fix it."""
    try:
        server = azurite_launcher.start()
    except azurite_launcher.AzuriteError as error:
        pytest.fail(str(error), pytrace=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def storage_connection(azurite) -> str:
    """A connection string for the session's Azurite (what AzureWebJobsStorage holds locally)."""
    return azurite.connection_string
