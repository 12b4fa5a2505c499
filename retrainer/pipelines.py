"""Pipeline definitions: find one in pipeline_defs/ by name, build it, and fingerprint it.

Light at import: azureml is imported only when a definition is built.
"""
from __future__ import annotations

import hashlib
import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

DEFINITIONS_PACKAGE = "pipeline_defs"
DEFINITIONS_DIR = Path(__file__).resolve().parents[1] / DEFINITIONS_PACKAGE
# The pipeline versions a deployment expects, written by `python -m retrainer publish` (the azd hooks) and
# packaged with the app, so the deployed functions know the version without building the definition.
PUBLISHED_MANIFEST = DEFINITIONS_DIR / "published.json"
# The packages whose classes a definition is built from (a new release may describe a step differently).
_BUILDING_PACKAGES = ("azureml-core", "azureml-pipeline-core", "azureml-pipeline-steps")


class UnknownPipelineError(ValueError):
    """No pipeline definition has this name."""


@dataclass(frozen=True)
class PipelineDefinition:
    name: str
    steps: tuple
    parameters: Mapping[str, Any]
    environment_file: Path | None


def known_pipelines() -> list[str]:
    return sorted(p.stem for p in DEFINITIONS_DIR.glob("*.py") if not p.stem.startswith("_"))


def load_definition(name: str, *, datastore: Any, compute_target: str,
                    intermediate_datastore: Any = None) -> PipelineDefinition:
    """Build the named definition's steps and parameters (imports azureml). Intermediates go to
    `intermediate_datastore` (None: the workspace default)."""
    module = _module(name)
    steps, parameters = module.build(datastore, compute_target, intermediate_datastore=intermediate_datastore)
    environment_file = getattr(module, "ENVIRONMENT_FILE", None)
    source = getattr(module, "SOURCE_DIRECTORY", None)
    env_path = Path(source) / environment_file if environment_file and source else None
    return PipelineDefinition(name=name, steps=tuple(steps), parameters=dict(parameters),
                              environment_file=env_path)


def data_contract(name: str) -> Mapping[str, Mapping[str, Any]]:
    """The named pipeline's data contract, its columns and their rules (no azureml import); a wrong
    declaration is a ValueError naming the column."""
    from step_scripts.data_contract import check_contract

    contract = _module(name).DATA_CONTRACT
    check_contract(contract)
    return contract


def local_datastore(name: str, container: str, account: str = "devstoreaccount1") -> Any:
    """An AzureBlobDatastore that needs no workspace: enough for DataPath and PipelineData."""
    from azureml.data.azure_storage_datastore import AzureBlobDatastore

    return AzureBlobDatastore(workspace=None, name=name, container_name=container, account_name=account)


def pipeline_version(definition: PipelineDefinition) -> str:
    """Content hash of the definition: step graph, parameter names and defaults, every file under each
    source directory, and the environment spec. Equal definitions give equal versions on any machine."""
    from retrainer.hashing import DigestCache
    from retrainer.localrun.graph import describe_parameter, describe_step, read_graph

    digests = DigestCache()
    nodes = read_graph(definition.steps)
    sources = {str(node.source_directory): digests.tree(node.source_directory) for node in nodes}
    document = {
        "name": definition.name,
        "steps": [describe_step(node, source_digest=sources[str(node.source_directory)]) for node in nodes],
        "parameters": {name: describe_parameter(value) for name, value in sorted(definition.parameters.items())},
        "environment_file": (digests.file(definition.environment_file)
                             if definition.environment_file and definition.environment_file.is_file() else None),
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:32]


def version_inputs(name: str, source_directories: Iterable[str], arguments: Mapping[str, Any],
                   digests: Any) -> str:
    """A digest of everything `pipeline_version` reads, taken without building the definition (no azureml
    import): the files of pipeline_defs/ (the definition and any helper it imports from there), every file under
    `source_directories` (the steps' folders, the environment spec among them), the `arguments` it is built
    with, the azureml packages that build it and the code that computes the version. Equal inputs give the
    version computed before. `digests` is a `retrainer.hashing.DigestCache` (unchanged files are not read)."""
    from importlib import metadata

    document = {
        "name": name,
        "definitions": digests.tree(DEFINITIONS_DIR, include=lambda path: path.suffix == ".py"),
        "sources": {folder: digests.tree(Path(folder)) for folder in sorted(source_directories)},
        "arguments": {key: str(value) for key, value in sorted(arguments.items())},
        "sdk": {dist: metadata.version(dist) for dist in _BUILDING_PACKAGES},
        "versioning": [digests.file(Path(__file__)), digests.file(Path(__file__).parent / "localrun" / "graph.py")],
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


def source_directories(definition: PipelineDefinition) -> list[str]:
    """The folders whose files `pipeline_version` hashes: each step's source directory, and the environment
    spec's folder."""
    from retrainer.localrun.graph import read_graph

    folders = {str(node.source_directory) for node in read_graph(definition.steps)}
    if definition.environment_file:
        folders.add(str(definition.environment_file.parent))
    return sorted(folders)


def expected_version(name: str, manifest: Path | None = None) -> str | None:
    """The version of `name` this deployment was packaged with, or None when it was not."""
    try:
        versions = json.loads((manifest or PUBLISHED_MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    return versions.get(name)


def deployed_version(name: str) -> str:
    """The version of `name` the app was packaged with; PipelineNotPublished when it was packaged with none."""
    from retrainer.ports import PipelineNotPublished

    version = expected_version(name)
    if version is None:
        raise PipelineNotPublished(
            f"this deployment records no version of pipeline {name!r} ({PUBLISHED_MANIFEST.name} is missing it): "
            "deploy with `azd deploy` (its hooks publish), or run `python -m retrainer publish` before starting "
            "the app")
    return version


def record_version(name: str, version: str, manifest: Path | None = None) -> None:
    """Note `name`'s version in the manifest (other pipelines' entries are kept)."""
    manifest = manifest or PUBLISHED_MANIFEST
    try:
        versions = json.loads(manifest.read_text(encoding="utf-8"))
    except FileNotFoundError:
        versions = {}
    versions[name] = version
    manifest.write_text(json.dumps(versions, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _module(name: str):
    if name not in known_pipelines():
        raise UnknownPipelineError(f"unknown pipeline {name!r}; known pipelines: {', '.join(known_pipelines())}")
    return importlib.import_module(f"{DEFINITIONS_PACKAGE}.{name}")
