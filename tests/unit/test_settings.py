import json
from pathlib import Path

import pytest

from retrainer.settings import Settings, SettingsError, env_name

REPO = Path(__file__).resolve().parents[2]


def test_defaults_need_no_environment():
    settings = Settings.from_env({})
    assert settings.backend == "local"
    assert settings.incoming_container == "incoming"
    assert settings.workspace_topic.endswith("/workspaces/local")


def test_example_settings_file_holds_every_setting_and_parses():
    values = json.loads((REPO / "local.settings.example.json").read_text())["Values"]
    names = {env_name(f) for f in Settings.__dataclass_fields__}
    assert names <= set(values), f"missing from the example: {sorted(names - set(values))}"
    Settings.from_env(values)


@pytest.mark.parametrize("env, named", [
    ({"RETRAINER_BACKEND": "sagemaker"}, "RETRAINER_BACKEND"),
    ({"RETRAINER_METRIC_FLOOR": "high"}, "RETRAINER_METRIC_FLOOR"),
    ({"RETRAINER_RUN_DEADLINE_MINUTES": "1.5"}, "RETRAINER_RUN_DEADLINE_MINUTES"),
    ({"RETRAINER_INCOMING_PATH": "incoming"}, "RETRAINER_INCOMING_PATH"),
    ({"RETRAINER_BACKEND": "azureml"}, "RETRAINER_AML_SUBSCRIPTION_ID"),
    ({"RETRAINER_BACKEND": "azureml_v2"}, "RETRAINER_AML_SUBSCRIPTION_ID"),
    ({"RETRAINER_BACKEND": "azureml", "RETRAINER_AML_SUBSCRIPTION_ID": "1234",
      "RETRAINER_AML_AUTH": "service_principal"}, "RETRAINER_AML_TENANT_ID"),
])
def test_a_bad_setting_is_an_error_that_names_it(env, named):
    with pytest.raises(SettingsError, match=named):
        Settings.from_env(env)


def test_secrets_stay_out_of_public_view_and_repr():
    settings = Settings.from_env({
        "AzureWebJobsStorage": "AccountKey=storage-secret", "RETRAINER_DATA_STORAGE": "AccountKey=data-secret",
        "RETRAINER_NOTIFY_TOPIC_ENDPOINT": "https://t.example/api/events",
        "RETRAINER_NOTIFY_TOPIC_KEY": "topic-secret", "RETRAINER_NOTIFY_WEBHOOK_KEY": "hook-secret",
        "RETRAINER_AML_CLIENT_SECRET": "sp-secret", "RETRAINER_LOCAL_EVENTS_KEY": "events-secret",
    })
    shown = json.dumps(settings.public()) + repr(settings)
    for secret in ("storage-secret", "data-secret", "topic-secret", "hook-secret", "sp-secret", "events-secret"):
        assert secret not in shown
    assert settings.public()["notify_topic_endpoint"] == "https://t.example"


def test_a_webhook_url_shows_only_its_origin():
    settings = Settings.from_env({
        "RETRAINER_NOTIFY_WEBHOOK_URL": "https://user:pw-secret@hooks.example/services/T0/B0/token-secret?code=k"})
    assert settings.public()["notify_webhook_url"] == "https://hooks.example"


def test_intermediates_on_the_watched_datastore_are_refused_at_start():
    with pytest.raises(SettingsError, match="RETRAINER_INTERMEDIATE_DATASTORE must differ from RETRAINER_DATASTORE"):
        Settings.from_env({"RETRAINER_DATASTORE": "training_data", "RETRAINER_INTERMEDIATE_DATASTORE": "training_data"})
    assert Settings.from_env({"RETRAINER_INTERMEDIATE_DATASTORE": "scratch"}).intermediate_datastore == "scratch"
