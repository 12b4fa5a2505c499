"""Offline reading of infra/: Bicep parsed by pycep-parser, a small evaluator for the expressions the filters and
app settings use, and Event Grid's filter semantics, so the tests compare what Azure would deliver.

pycep-parser and checkov live in their own venv (.venv-infra, `make infra-tools`): checkov pins many packages
that must not move the app's. The tests run them as subprocesses.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import pytest

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
TOOLS_ENV = "RETRAINER_INFRA_TOOLS"     # set by `make test`: the tools must be there


def tools_bin() -> Path:
    """The infra tools venv's bin folder. Under `make test` a missing venv fails; elsewhere (a bare pytest in a
    checkout without the tools) the infra tests are skipped with the command that installs them."""
    venv = Path(os.environ.get(TOOLS_ENV) or REPO / ".venv-infra")
    bin_dir = (venv if venv.is_absolute() else REPO / venv) / "bin"
    if not (bin_dir / "checkov").exists() or not (bin_dir / "python").exists():
        message = f"infra tools not installed in {bin_dir.parent}: run `make infra-tools`"
        if os.environ.get(TOOLS_ENV):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return bin_dir


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


@lru_cache(maxsize=1)
def _parse_all() -> dict[str, Any]:
    files = [str(path.relative_to(REPO)) for path in bicep_files()]
    result = subprocess.run([str(tools_bin() / "python"), str(Path(__file__).with_name("parse_bicep.py")), *files],
                            cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def parsed(relative: str) -> dict[str, Any]:
    """One template as pycep parses it (keys: parameters, variables, resources, modules, outputs)."""
    template = _parse_all()[relative]
    if "error" in template:
        raise AssertionError(f"{relative} does not parse: {template['error']}")
    return template


class Unresolved(Exception):
    """An expression the evaluator does not compute (a resource property, a function call)."""


class Scope:
    """A template's parameters (defaults, overridable) and variables, to evaluate expressions against.

    pycep writes a reference to a parameter or variable as its bare name (`"prefix"`) and keeps `${...}` inside
    strings as written, so a string equal to a known name is a reference, and `${name}` is interpolated.
    """

    def __init__(self, template: Mapping[str, Any], **overrides: Any) -> None:
        self._values: dict[str, Any] = {}
        for name, param in (template.get("parameters") or {}).items():
            if name in overrides:
                self._values[name] = overrides[name]
            elif "default" in param:
                self._values[name] = param["default"]
        self._variables = {name: var["value"] for name, var in (template.get("variables") or {}).items()}

    def default(self, name: str) -> Any:
        return self._values[name]

    def evaluate(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.evaluate(item) for item in value]
        if isinstance(value, dict):
            if set(value) & {"function", "operator", "property_accessor", "index_accessor"}:
                raise Unresolved(json.dumps(value)[:200])
            return {key: self.evaluate(item) for key, item in value.items()}
        if isinstance(value, str):
            if value in self._values:
                return self._values[value]
            if value in self._variables:
                return self.evaluate(self._variables[value])
            return re.sub(r"\$\{([^}]+)\}", lambda match: str(self._reference(match.group(1))), value)
        return value

    def _reference(self, name: str) -> Any:
        name = name.strip()
        if name in self._values or name in self._variables:
            return self.evaluate(name)
        raise Unresolved(name)


# ------------------------------------------------------------------ Event Grid's filter semantics

def subscription_delivers(filter_: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    """Whether an Event Grid subscription filter passes an event (Event Grid schema), as the service documents it:
    https://learn.microsoft.com/azure/event-grid/event-filtering
    - event types: `includedEventTypes` (absent: all); subject: `subjectBeginsWith` / `subjectEndsWith`,
      case-insensitive unless `isSubjectCaseSensitive`;
    - advanced filters are ANDed; the values of one filter are ORed, except the NOT operators, which AND them;
      string comparisons are case-insensitive;
    - a key the event lacks: "not matched" for every operator but NumberNotIn and StringNotIn, which match.
    Only the operators infra/ uses are modelled; another one fails the test that meets it.
    """
    types = filter_.get("includedEventTypes")
    if types and event["eventType"] not in types:
        return False
    subject = event["subject"]
    case = (lambda text: text) if filter_.get("isSubjectCaseSensitive") else str.lower
    if filter_.get("subjectBeginsWith") and not case(subject).startswith(case(filter_["subjectBeginsWith"])):
        return False
    if filter_.get("subjectEndsWith") and not case(subject).endswith(case(filter_["subjectEndsWith"])):
        return False
    return all(_advanced_match(rule, event) for rule in filter_.get("advancedFilters") or [])


_MISSING = object()


def _lookup(event: Mapping[str, Any], key: str) -> Any:
    value: Any = event
    for part in key.split("."):
        if not isinstance(value, Mapping):
            return _MISSING
        # Event Grid matches envelope keys case-insensitively (Subject, subject); data keys as written.
        matches = [k for k in value if k.lower() == part.lower()]
        if not matches:
            return _MISSING
        value = value[matches[0]]
    return value


def _advanced_match(rule: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    operator, value = rule["operatorType"], _lookup(event, rule["key"])
    if value is _MISSING:
        return operator in ("NumberNotIn", "StringNotIn")
    values = rule.get("values")
    if operator == "StringIn":
        return str(value).lower() in [v.lower() for v in values]
    if operator == "StringNotIn":
        return str(value).lower() not in [v.lower() for v in values]
    if operator == "StringBeginsWith":
        return any(str(value).lower().startswith(v.lower()) for v in values)
    if operator == "StringNotBeginsWith":
        return not any(str(value).lower().startswith(v.lower()) for v in values)
    if operator == "NumberGreaterThan":
        return isinstance(value, (int, float)) and value > rule["value"]
    raise AssertionError(f"operator {operator} is not modelled in tests/infra/bicep.py: add it from the docs")


# ------------------------------------------------------------------ the app's functions

@lru_cache(maxsize=1)
def app_bindings() -> dict[str, list[dict[str, Any]]]:
    """{function name: its bindings} of function_app, from a private import of the file: get_functions() may run
    once per FunctionApp object, and the shared module's belongs to conftest's app_functions fixture."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_function_app_for_infra_tests", REPO / "function_app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {function.get_function_name(): [binding.get_dict_repr() for binding in function.get_bindings()]
            for function in module.app.get_functions()}
