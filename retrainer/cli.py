"""Command line: `python -m retrainer <command>`. Each command is a subparser; heavy imports happen inside
the command, so `--help` and bad input answer at once."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Sequence

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class BadInput(ValueError):
    """A user mistake: printed as one line, exit code 2."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command: Callable[[argparse.Namespace], int] = args.command
    try:
        return command(args)
    except BadInput as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m retrainer",
                                     description="Event-driven retraining for Azure ML pipelines.")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    add_run_local(commands)
    add_publish(commands)
    add_host(commands)
    add_check_azureml(commands)
    return parser


def add_run_local(commands: argparse._SubParsersAction) -> None:
    run_local = commands.add_parser(
        "run-local", help="run a pipeline definition on this machine (steps reused when nothing changed)",
        description="Run a pipeline from pipeline_defs/ on this machine, with MLflow (SQLite) as the run store.")
    run_local.add_argument("pipeline", help="a pipeline definition name, e.g. diabetes_training")
    run_local.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                           help="override a pipeline parameter; a data parameter takes a local file or folder")
    run_local.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    run_local.add_argument("--state-dir", type=Path, default=None,
                           help="local state folder (default: RETRAINER_STATE_DIR or .state)")
    run_local.set_defaults(command=run_local_command)


def add_publish(commands: argparse._SubParsersAction) -> None:
    publish = commands.add_parser(
        "publish", help="publish the pipeline to Azure ML when its definition changed (the azd deploy hook)",
        description="Publish RETRAINER_PIPELINE behind RETRAINER_PIPELINE_ENDPOINT in the workspace the "
                    "RETRAINER_AML_* settings name, only when its content hash is not already the endpoint's "
                    "default, and record the version in pipeline_defs/published.json: the deployed functions "
                    "submit that version and nothing else. Needs requirements-publish.txt.")
    publish.add_argument("--offline", action="store_true",
                         help="only compute the version and record it (no workspace; the azd prepackage hook)")
    publish.add_argument("--manifest", type=Path, default=None,
                         help="where the versions are recorded (default: pipeline_defs/published.json, packaged)")
    publish.set_defaults(command=publish_command)


def add_host(commands: argparse._SubParsersAction) -> None:
    host = commands.add_parser(
        "host", help="serve function_app on the dev host (Azurite started when no storage is set)",
        description="Run the function app on the local Functions host until Ctrl+C. Settings come from "
                    "the environment, then local.settings.json; run events and notifications loop back "
                    "to the host unless configured.")
    host.add_argument("--app-dir", type=Path, default=Path.cwd(), help="folder of function_app.py")
    host.set_defaults(command=host_command)


def add_check_azureml(commands: argparse._SubParsersAction) -> None:
    check = commands.add_parser(
        "check-azureml", help="check against the live workspace what the Azure ML adapter relies on",
        description="Sign in as RETRAINER_AML_AUTH says, find RETRAINER_PIPELINE_ENDPOINT, and create an anchor "
                    "run twice by one id (its tags set with it). With --submit, also submit the deployed pipeline "
                    "on that data under an anchor and find it by its key: a real run on the compute target.")
    check.add_argument("--submit", metavar="DATA_PATH", default=None,
                       help="a path on RETRAINER_DATASTORE (a blob of the incoming container), e.g. diabetes.csv")
    check.set_defaults(command=check_azureml_command)


def check_azureml_command(args: argparse.Namespace) -> int:
    settings = _azure_ml_settings("check-azureml")

    from retrainer.bootstrap import azure_ml_backend

    try:
        for line in azure_ml_backend(settings).live_check(args.submit):
            print(f"ok: {line}")
    except Exception as error:  # noqa: BLE001 - one line saying which check failed; the exit code says so too
        print(f"FAILED: {type(error).__name__}: {_first_line(error)}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def host_command(args: argparse.Namespace) -> int:
    from devhost import host, local_loop
    from devhost.settings import HostSettingsError

    try:
        settings = local_loop.prepare(args.app_dir)
    except HostSettingsError as error:
        raise BadInput(str(error)) from None
    print(f"keys for the host's API and webhooks: {settings.state_dir / 'devhost-keys.json'}", file=sys.stderr)
    return host.main(["--app-dir", str(args.app_dir)])


def publish_command(args: argparse.Namespace) -> int:
    from retrainer import pipelines

    settings = _settings() if args.offline else _azure_ml_settings("publish")
    try:
        if args.offline:
            # Workspace-less datastores of the same names: only a datastore's name enters the version, so this
            # is the version the workspace's datastores give (AzureMLBackend.definition).
            intermediate = settings.intermediate_datastore
            definition = pipelines.load_definition(
                settings.pipeline, compute_target=settings.compute_target,
                datastore=pipelines.local_datastore(settings.datastore, settings.incoming_container),
                intermediate_datastore=pipelines.local_datastore(intermediate, intermediate) if intermediate else None)
            version = pipelines.pipeline_version(definition)
    except pipelines.UnknownPipelineError as error:
        raise BadInput(str(error)) from None

    manifest = args.manifest or pipelines.PUBLISHED_MANIFEST
    if args.offline:
        pipelines.record_version(settings.pipeline, version, manifest)
        print(f"{settings.pipeline} version {version} (recorded; not published)")
        return EXIT_OK

    from retrainer.bootstrap import azure_ml_backend

    try:
        ref = azure_ml_backend(settings).publish(settings.pipeline)
    except Exception as error:  # noqa: BLE001 - one line for the hook's log, the exit code stops the deploy
        print(f"error: publishing {settings.pipeline} to workspace {settings.aml_workspace!r} failed: "
              f"{type(error).__name__}: {_first_line(error)}", file=sys.stderr)
        return EXIT_FAILED
    pipelines.record_version(settings.pipeline, ref.version, manifest)
    state = "published, now the default" if ref.newly_published else "unchanged, already the default"
    print(f"{settings.pipeline} version {ref.version} at endpoint {ref.endpoint} ({state}; pipeline {ref.pipeline_id})")
    return EXIT_OK


def _settings():
    from retrainer.settings import Settings, SettingsError

    try:
        return Settings.from_env()
    except SettingsError as error:
        raise BadInput(str(error)) from None


def _azure_ml_settings(command: str):
    """The settings, which must name an Azure ML workspace: `command` has nothing to do on the local backend."""
    from retrainer.settings import AZURE_ML_BACKENDS

    settings = _settings()
    if settings.backend not in AZURE_ML_BACKENDS:
        raise BadInput(f"{command} needs RETRAINER_BACKEND=azureml (or azureml_v2) and the RETRAINER_AML_* settings")
    return settings


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else "(no message)"


def run_local_command(args: argparse.Namespace) -> int:
    parameters = _parse_params(args.param)
    from retrainer.pipelines import UnknownPipelineError, load_definition, local_datastore, pipeline_version

    settings = _settings()
    try:
        if args.state_dir is not None:
            settings = _with_state_dir(settings, args.state_dir)
        definition = load_definition(args.pipeline, compute_target=settings.compute_target,
                                     datastore=local_datastore(settings.datastore, settings.incoming_container))
    except UnknownPipelineError as error:
        raise BadInput(str(error)) from None

    from retrainer.localrun import PipelineDefinitionError, PipelineInputError, run_pipeline

    try:
        result = run_pipeline(definition, parameters=parameters, state_dir=settings.state_dir,
                              tracking_uri=settings.mlflow_tracking_uri, experiment=settings.experiment,
                              tags={"retrainer.pipeline_version": pipeline_version(definition)})
    except (PipelineInputError, PipelineDefinitionError) as error:
        raise BadInput(str(error)) from None

    if args.json:
        print(json.dumps({
            "run_id": result.run_id, "status": result.status,
            "steps": [{"name": s.name, "status": s.status, "reused": s.reused, "seconds": round(s.seconds, 3)}
                      for s in result.steps],
            "metrics": result.metrics}, indent=2))
    else:
        _print_text(result, settings.mlflow_tracking_uri)
    if result.error:
        print(f"error: {result.error}", file=sys.stderr)
    return EXIT_OK if result.status == "Completed" else EXIT_FAILED


def _parse_params(raw: list[str]) -> dict[str, str]:
    parameters: dict[str, str] = {}
    for item in raw:
        name, separator, value = item.partition("=")
        if not separator or not name.strip():
            raise BadInput(f"--param {item!r} must look like NAME=VALUE, e.g. input_data=data/diabetes_sample.csv")
        parameters[name.strip()] = value
    return parameters


def _with_state_dir(settings, state_dir: Path):
    from dataclasses import replace

    return replace(settings, state_dir=state_dir)


def _print_text(result, tracking_uri: str) -> None:
    print(f"run {result.run_id}: {result.status}")
    width = max((len(s.name) for s in result.steps), default=4)
    for step in result.steps:
        outcome = "reused" if step.reused else {"Completed": "ran", "Failed": "FAILED"}.get(step.status, "not run")
        print(f"  {step.name:<{width}}  {outcome:<7} {step.seconds:7.2f} s")
    for name, value in result.metrics.items():
        print(f"  {name} = {value:g}" if isinstance(value, float) else f"  {name} = {value}")
    print(f"browse: mlflow ui --backend-store-uri {tracking_uri}")
