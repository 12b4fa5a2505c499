"""The content-aware reuse key of a step, and where earlier results are found.

A step is reused when an earlier, finished step run has the same key: a sha256 over
- the step's source: every file under its source directory that the step can depend on: all non-Python
  files, its script, and the Python modules the script imports from that folder (followed transitively).
  So editing train_diabetes.py does not invalidate prep, which shares the folder but never imports it.
  A script that imports dynamically (importlib, __import__, runpy, exec) depends on every .py file;
- the script name and each argument (literals and parameter values as given, inputs as content digests,
  outputs by name);
- the bytes of every input: a data file or folder, or an upstream step's output folder (so a changed file
  at the same path misses, and an unchanged upstream output still hits after the upstream reran);
- the environment spec and the Python that runs the step.
`allow_reuse=False` skips the lookup; the run still records its key.

The index is the run store itself: each executed step's MLflow child run carries the tags
`retrainer.reuse_key` and `retrainer.outputs` (its output folders under the state folder). A candidate
whose output folders have been deleted is not reused. Keeping the index in MLflow means deleting runs in
`mlflow ui` (or pointing at another store) never leaves a stale reuse.
"""
from __future__ import annotations

import ast
import hashlib
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from retrainer.hashing import DigestCache

from .graph import StepNode, describe_environment

DYNAMIC_IMPORT_NAMES = frozenset({"importlib", "__import__", "runpy", "exec", "import_module", "run_path"})


def reuse_key(node: StepNode, arguments: Sequence[Any], input_digests: Sequence[str],
              digests: DigestCache) -> str:
    """`arguments`: the resolved argument descriptions (see runner); `input_digests`: content digests of
    the step's inputs in declaration order."""
    document = {
        "source": source_digest(node.source_directory, node.script_name, digests),
        "script": node.script_name,
        "arguments": list(arguments),
        "inputs": list(input_digests),
        "environment": describe_environment(node.environment),
        "python": sys.version,
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


def source_digest(source_directory: Path, script_name: str, digests: DigestCache) -> str:
    modules = script_dependencies(source_directory, script_name)
    return digests.tree(source_directory,
                        include=lambda rel: rel.suffix != ".py" or modules is None or rel in modules)


def script_dependencies(source_directory: Path, script_name: str) -> set[Path] | None:
    """Relative paths of the .py files the script can import from its folder, itself included; None when
    the script (or a module it imports) imports dynamically, i.e. every .py file counts."""
    root = Path(source_directory)
    script = Path(script_name)
    found: set[Path] = set()
    pending = [script]
    search_dir = script.parent          # `python dir/script.py` puts dir/ first on sys.path
    while pending:
        relative = pending.pop()
        if relative in found or not (root / relative).is_file():
            continue
        found.add(relative)
        try:
            tree = ast.parse((root / relative).read_bytes(), filename=str(relative))
        except (SyntaxError, ValueError):
            return None
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id in DYNAMIC_IMPORT_NAMES:
                return None
            if isinstance(node, ast.Attribute) and node.attr in DYNAMIC_IMPORT_NAMES:
                return None
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] in DYNAMIC_IMPORT_NAMES:
                        return None
                    pending.extend(_module_files(search_dir, alias.name))
            elif isinstance(node, ast.ImportFrom):
                base = relative.parent if node.level else search_dir
                for _ in range(max(node.level - 1, 0)):
                    base = base.parent
                module = node.module or ""
                if module.split(".")[0] in DYNAMIC_IMPORT_NAMES:
                    return None
                pending.extend(_module_files(base, module))
                for alias in node.names:
                    pending.extend(_module_files(base, f"{module}.{alias.name}" if module else alias.name))
    return found


def _module_files(base: Path, dotted: str) -> list[Path]:
    """Candidate files for a module and its parent packages (existence is checked by the caller)."""
    parts = [p for p in dotted.split(".") if p]
    candidates = []
    for depth in range(1, len(parts) + 1):
        folder = base.joinpath(*parts[:depth])
        candidates += [folder.with_suffix(".py"), folder / "__init__.py"]
    return candidates
