"""`python -m retrainer publish`: the azd hooks' command. Offline it records the version the package expects;
online it publishes through the Azure ML adapter (autospec'd here: no workspace) and records what it published."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from retrainer import cli, pipelines
from retrainer.adapters.azureml_v1 import AzureMLBackend
from retrainer.ports import PublishedPipelineRef

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("RETRAINER_")}
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "retrainer", *args], cwd=REPO, env=environment,
                          capture_output=True, text=True, timeout=300)


def offline_version(datastore_account: str = "devstoreaccount1", intermediate: str | None = None) -> str:
    definition = pipelines.load_definition(
        "diabetes_training", compute_target="cpu-cluster",
        datastore=pipelines.local_datastore("training_data", "incoming", account=datastore_account),
        intermediate_datastore=(pipelines.local_datastore(intermediate, "runs", account=datastore_account)
                                if intermediate else None))
    return pipelines.pipeline_version(definition)


def test_offline_records_the_version_and_keeps_other_pipelines(tmp_path):
    manifest = tmp_path / "published.json"
    manifest.write_text(json.dumps({"other_pipeline": "abc"}))

    first = run_cli("publish", "--offline", "--manifest", str(manifest))
    second = run_cli("publish", "--offline", "--manifest", str(manifest))

    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout                                   # idempotent
    version = offline_version()
    assert first.stdout.strip() == f"diabetes_training version {version} (recorded; not published)"
    assert json.loads(manifest.read_text()) == {"other_pipeline": "abc", "diabetes_training": version}


def test_the_offline_version_is_the_one_published_from_the_workspace():
    # The prepackage hook computes it offline; the predeploy hook with the workspace's datastore object, which
    # names the same datastore on another account: the two must agree, or the deployment expects a version
    # the endpoint never gets.
    assert offline_version() == offline_version(datastore_account="stdataworkspace")
    assert offline_version(intermediate="runs") == offline_version("stdataworkspace", intermediate="runs")
    assert offline_version(intermediate="runs") != offline_version()


def test_offline_names_the_intermediate_datastore_as_the_workspace_would(tmp_path):
    manifest = tmp_path / "published.json"
    result = run_cli("publish", "--offline", "--manifest", str(manifest),
                     env={"RETRAINER_INTERMEDIATE_DATASTORE": "runs"})
    assert result.returncode == 0, result.stderr
    assert json.loads(manifest.read_text()) == {"diabetes_training": offline_version(intermediate="runs")}


def test_unknown_pipeline_is_one_line_and_exit_2(tmp_path):
    result = run_cli("publish", "--offline", "--manifest", str(tmp_path / "m.json"),
                     env={"RETRAINER_PIPELINE": "no_such_pipeline"})
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "unknown pipeline 'no_such_pipeline'" in result.stderr
    assert not (tmp_path / "m.json").exists()


def test_publishing_needs_the_azure_ml_backend(tmp_path):
    result = run_cli("publish", "--manifest", str(tmp_path / "m.json"))
    assert result.returncode == 2
    assert result.stderr.startswith("error: publish needs RETRAINER_BACKEND=azureml")


def test_publish_prints_the_endpoint_and_version_and_records_it(azure_env, tmp_path, monkeypatch, capsys):
    ref = PublishedPipelineRef(name="diabetes_training", version="v" * 32, pipeline_id="pp-1",
                               endpoint="diabetes-training", newly_published=True)
    publish = _autospec_returning(ref)
    monkeypatch.setattr(AzureMLBackend, "publish", publish)
    manifest = tmp_path / "published.json"

    assert cli.main(["publish", "--manifest", str(manifest)]) == 0

    publish.assert_called_once()
    assert publish.call_args.args[1:] == ("diabetes_training",)
    out = capsys.readouterr().out
    assert out == f"diabetes_training version {'v' * 32} at endpoint diabetes-training (published, now the default; pipeline pp-1)\n"
    assert json.loads(manifest.read_text()) == {"diabetes_training": "v" * 32}


def test_a_failed_publish_is_one_line_and_exit_1(azure_env, tmp_path, monkeypatch, capsys):
    failing = _autospec_returning(None)
    failing.side_effect = RuntimeError("pipeline endpoint 'diabetes-training' is Disabled\n  traceback-ish detail")
    monkeypatch.setattr(AzureMLBackend, "publish", failing)

    assert cli.main(["publish", "--manifest", str(tmp_path / "m.json")]) == 1

    err = capsys.readouterr().err
    assert err == ("error: publishing diabetes_training to workspace 'ws' failed: RuntimeError: pipeline endpoint "
                   "'diabetes-training' is Disabled\n")
    assert not (tmp_path / "m.json").exists()


def _autospec_returning(value):
    from unittest.mock import create_autospec

    return create_autospec(AzureMLBackend.publish, return_value=value)
