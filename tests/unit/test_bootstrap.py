"""The composition root wires the adapters the settings name, and refuses a missing store clearly."""
import pytest

from retrainer import bootstrap
from retrainer.adapters.local_ml import LocalMLBackend
from retrainer.adapters.table_ledger import TableLedger
from retrainer.settings import Settings, SettingsError

DEV = "UseDevelopmentStorage=true"


def test_local_settings_build_the_local_backend_over_the_table_ledger():
    deps = bootstrap.build(Settings.from_env({"AzureWebJobsStorage": DEV, "RETRAINER_DATA_STORAGE": DEV}))

    assert isinstance(deps.backend, LocalMLBackend)
    assert isinstance(deps.ledger, TableLedger)
    assert deps.contract["Diabetic"] == {"type": "integer", "values": [0, 1]}


@pytest.mark.parametrize("backend, adapter", [("azureml", "AzureMLBackend"), ("azureml_v2", "AzureMLv2Backend")])
def test_the_backend_setting_picks_the_sdk(backend, adapter):
    deps = bootstrap.build(Settings.from_env({"AzureWebJobsStorage": DEV, "RETRAINER_DATA_STORAGE": DEV,
                                              "RETRAINER_BACKEND": backend, "RETRAINER_AML_SUBSCRIPTION_ID": "1234"}))

    assert type(deps.backend).__name__ == adapter


def test_an_identity_based_host_storage_needs_no_connection_string():
    deps = bootstrap.build(Settings.from_env({"AzureWebJobsStorage__accountName": "retrainerapp",
                                              "RETRAINER_DATA_STORAGE": DEV}))

    assert deps.ledger._table.url.startswith("https://retrainerapp.table.core.windows.net")


@pytest.mark.parametrize("env, named", [
    ({"RETRAINER_DATA_STORAGE": DEV}, "AzureWebJobsStorage"),
    ({"AzureWebJobsStorage": DEV}, "RETRAINER_DATA_STORAGE"),
])
def test_a_missing_store_is_an_error_that_names_its_setting(env, named):
    with pytest.raises(SettingsError, match=named):
        bootstrap.build(Settings.from_env(env))
