"""What the deployment uploads (.funcignore, read as infra/package.py and the Functions tooling read it): the app
and nothing of the tooling, the tests or the local state."""
from __future__ import annotations

import importlib.util
import subprocess
import sys

from tests.infra.bicep import REPO

_spec = importlib.util.spec_from_file_location("_package_for_tests", REPO / "infra" / "package.py")
package = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(package)


def test_the_package_holds_the_app():
    files = set(package.app_files())
    for needed in ("function_app.py", "host.json", "requirements.txt", "retrainer/bootstrap.py",
                   "retrainer/filters.py", "triggers/ml_events.py", "pipeline_defs/diabetes_training.py"):
        assert needed in files, needed


def test_the_package_leaves_out_tooling_tests_and_state():
    files = package.app_files()
    left_out = ("tests/", "devhost/", "bench/", "infra/", ".venv", ".state/", "node_modules/",
                "data/", "build/", "__pycache__/", ".git/")
    assert not [f for f in files if f.startswith(left_out) or "/__pycache__/" in f or f.endswith(".pyc")]
    for tooling in ("requirements-dev.txt", "requirements-publish.txt", "requirements-infra.txt", "azure.yaml",
                    "Makefile", "local.settings.json", "package.json"):
        assert tooling not in files, tooling


def test_funcignore_patterns_follow_gitignore_rules():
    patterns = [".git*", "tests", "*.pyc", "build/", "/data"]
    assert package.ignored(".gitignore", patterns) and package.ignored(".git/config", patterns)
    assert package.ignored("tests/unit/test_x.py", patterns) and package.ignored("a/tests/x.py", patterns)
    assert package.ignored("retrainer/x.pyc", patterns)
    assert package.ignored("build/package/x", patterns) and package.ignored("build", patterns, is_dir=True)
    assert not package.ignored("build", patterns)
    assert package.ignored("data/x.csv", patterns) and not package.ignored("retrainer/data/x.csv", patterns)
    assert not package.ignored("retrainer/testsuite.py", patterns)


def test_the_runtime_requirements_leave_out_the_pipeline_building_sdk():
    runtime = (REPO / "requirements.txt").read_text()
    assert "azureml-pipeline-steps" not in runtime
    assert "azureml-pipeline-steps" in (REPO / "requirements-publish.txt").read_text()
    assert "-r requirements-publish.txt" in (REPO / "requirements-dev.txt").read_text()


def test_a_v2_deployment_carries_sdk_v2_only_and_the_same_runtime_otherwise():
    def pins(name: str) -> set[str]:
        return {line.strip() for line in (REPO / name).read_text().splitlines()
                if line.strip() and not line.startswith("#")}

    v1, v2 = pins("requirements.txt"), pins("requirements-v2.txt")
    assert not [line for line in v2 if line.startswith("azureml")], "a v2 package carries no SDK v1"
    assert v2 - v1 == {"azure-ai-ml==1.35.2"}
    assert v1 - v2 == {line for line in v1 if line.startswith("azureml-")}
    assert "azure-ai-ml==1.35.2" in pins("requirements-publish.txt"), "the publish hook serves both backends"


def test_the_packaged_files_load_the_app_without_the_pipeline_building_sdk(tmp_path):
    # The files the deployment uploads, alone in a folder, imported in a fresh interpreter in which
    # azureml.pipeline.steps cannot be imported: a module .funcignore drops, or a runtime import of the
    # publishing SDK, fails here rather than at the first cold start on Azure.
    import shutil

    for relative in package.app_files():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / relative, tmp_path / relative)
    code = ("import sys, importlib.abc\n"
            "class Block(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.startswith('azureml.pipeline.steps'): raise ImportError('not in the package: ' + name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "import function_app\n"
            "from retrainer import bootstrap, handlers, intake\n"
            "from retrainer.adapters import azureml_v1, blob_store, notify, table_ledger\n"
            "assert function_app.__file__.startswith(sys.argv[1]), function_app.__file__\n"
            "assert len(function_app.app.get_functions()) > 0\n")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=tmp_path, check=True,
                   env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path)})
