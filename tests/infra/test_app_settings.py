"""The function app's settings in infra/ against what the code reads: every setting the code or a binding reads is
set by the template or documented as optional in the README; nothing the template sets is unknown to the app;
no secret is set; and the settings the template sets make a valid Azure ML configuration."""
from __future__ import annotations

import re
from dataclasses import fields

import pytest

from retrainer.settings import Settings, env_name
from tests.infra.bicep import REPO, Scope, Unresolved, app_bindings, parsed

# Read by the platform or an SDK rather than by retrainer's code.
PLATFORM_SETTINGS = {
    "APPLICATIONINSIGHTS_CONNECTION_STRING": "the Functions host's telemetry",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Entra ID auth for telemetry (local auth is off)",
    "AZURE_CLIENT_ID": "azure-identity's DefaultAzureCredential: which user-assigned identity to use",
}


def template_settings() -> dict[str, object]:
    """Every app setting the template sets, evaluated where it can be (else a placeholder naming the setting)."""
    main = parsed("infra/main.bicep")
    scope = Scope(main)
    raw = dict(main["modules"]["function"]["config"]["params"]["retrainerSettings"])
    app_settings = parsed("infra/app/function.bicep")["resources"]["appSettings"]["config"]["properties"]
    union = app_settings["function"]
    assert union["type"] == "union" and union["parameters"]["arg_1"] == "retrainerSettings"
    raw.update(union["parameters"]["arg_2"])
    settings = {}
    for name, value in raw.items():
        try:
            settings[name] = scope.evaluate(value)
        except Unresolved:
            settings[name] = f"https://{name.lower().replace('_', '-')}.example"   # an output, known at deploy
    return settings


def binding_settings() -> tuple[set[str], set[str]]:
    """(settings named by %NAME% binding expressions, connection names) of the app's functions."""
    expressions, connections = set(), set()
    for bindings in app_bindings().values():
        for binding in bindings:
            for key, value in binding.items():
                if key == "connection" and value:
                    connections.add(value)
                elif isinstance(value, str):
                    expressions.update(re.findall(r"%([A-Za-z0-9_]+)%", value))
    return expressions, connections


def documented_optional() -> set[str]:
    """Settings in the README's settings table whose default is not "(required)"."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Settings", 1)[1].split("\n## ", 1)[0]
    optional = set()
    for row in table.splitlines():
        cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
        if len(cells) >= 3 and "(required)" not in cells[1]:
            optional.update(re.findall(r"`([A-Za-z0-9_]+)`", cells[0]))
    return optional


def _is_set(name: str, settings: dict) -> bool:
    """Set directly, or as an identity-based connection (`NAME__accountName`, `NAME__serviceUri`, ...)."""
    return name in settings or any(key.startswith(f"{name}__") for key in settings)


def test_every_setting_the_code_reads_is_set_or_documented_optional():
    settings = template_settings()
    read = {env_name(f.name) for f in fields(Settings)}
    missing = sorted(name for name in read if not _is_set(name, settings) and name not in documented_optional())
    assert not missing, f"read by the code, neither set by infra/ nor documented optional in README: {missing}"


def test_binding_expressions_and_connections_are_set():
    # The host resolves %NAME% when it indexes the functions: an unset one disables the function.
    settings = template_settings()
    expressions, connections = binding_settings()
    assert not [name for name in expressions if name not in settings]
    assert not [name for name in connections if not _is_set(name, settings)]


def test_template_sets_nothing_the_app_does_not_read():
    settings = template_settings()
    read = {env_name(f.name) for f in fields(Settings)} | set(PLATFORM_SETTINGS)
    _, connections = binding_settings()
    prefixes = tuple(f"{name}__" for name in read | connections)
    stray = sorted(name for name in settings if name not in read and not name.startswith(prefixes))
    assert not stray, f"set by infra/ but read by nothing (a typo?): {stray}"


def test_no_secret_in_the_settings():
    settings = template_settings()
    secrets = [env_name(f.name) for f in fields(Settings) if f.metadata.get("secret")]
    assert not [name for name in secrets if name in settings], "identity-based connections only: no keys"


def test_the_settings_make_a_valid_azure_configuration():
    values = {name: str(value) for name, value in template_settings().items()}
    settings = Settings.from_env(values)
    main = Scope(parsed("infra/main.bicep"))
    assert settings.backend == "azureml"
    assert settings.aml_auth == "msi" and settings.aml_client_id
    assert settings.storage_account and not settings.storage_connection         # identity-based host storage
    assert settings.data_service_uri and not settings.data_connection           # identity-based data account
    assert settings.notify_topic_endpoint and not settings.notify_topic_key     # identity-based publishing
    assert settings.incoming_container == main.default("incomingContainerName")
    assert settings.quarantine_container == main.default("quarantineContainerName")
    assert settings.datastore == main.default("datastoreName")
    assert settings.compute_target == main.default("computeClusterName")
    assert settings.pipeline == main.default("pipelineName")
    assert settings.pipeline_endpoint == main.default("pipelineEndpointName")
    assert settings.experiment == main.default("experimentName")


@pytest.mark.parametrize("setting", ["AzureWebJobsStorage__accountName", "AzureWebJobsStorage__credential",
                                     "AzureWebJobsStorage__clientId"])
def test_host_storage_is_identity_based(setting):
    assert setting in template_settings()
