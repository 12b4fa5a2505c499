"""Shared fixtures: one Azurite (blob, queue, table) for the whole test session, on free loopback ports."""
from __future__ import annotations

import os

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


AZURE_ML_ENV = {"RETRAINER_BACKEND": "azureml", "RETRAINER_AML_SUBSCRIPTION_ID": "11111111-2222-3333-4444-555555555555",
                "RETRAINER_AML_RESOURCE_GROUP": "rg", "RETRAINER_AML_WORKSPACE": "ws",
                "RETRAINER_AML_AUTH": "cli"}


@pytest.fixture
def azure_env(monkeypatch):
    """Settings of an Azure ML deployment and nothing else of this machine's RETRAINER_* environment."""
    for name in [n for n in os.environ if n.startswith("RETRAINER_")]:
        monkeypatch.delenv(name)
    for name, value in AZURE_ML_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="session")
def app_functions() -> dict:
    """{name: the user function} of function_app. FunctionApp.get_functions() may run once per app object, and
    the app module is imported once per process, so every test that calls the functions shares this."""
    import function_app

    return {f.get_function_name(): f.get_user_function() for f in function_app.app.get_functions()}
