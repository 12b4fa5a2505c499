"""Load a FunctionApp (Python v2 model) and read each function's bindings, as the host's indexing does."""
from __future__ import annotations

import importlib
import inspect
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

TRIGGERS = ("timerTrigger", "eventGridTrigger", "httpTrigger", "queueTrigger")
_SETTING = re.compile(r"%([^%]+)%")
QUEUE_NAME = re.compile(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$")


class AppLoadError(RuntimeError):
    """The function app cannot be loaded or uses something the dev host does not serve."""


@dataclass(frozen=True)
class QueueOutput:
    """A queue output binding (`@app.queue_output`): the argument that receives a func.Out, the queue (%SETTING%
    resolved, lower-cased and validated as the extension does) and the connection setting."""
    name: str
    queue_name: str
    connection: str | None


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    trigger: Mapping[str, Any]          # the trigger binding as function.json has it, %SETTINGS% resolved
    user_function: Callable[..., Any]
    outputs: tuple[QueueOutput, ...] = ()

    @property
    def trigger_type(self) -> str:
        return self.trigger["type"]

    @property
    def function_id(self) -> str:
        """The id the Functions host gives the function (names timer status blobs)."""
        return f"Host.Functions.{self.name}"

    @property
    def parameter(self) -> inspect.Parameter:
        return inspect.signature(self.user_function).parameters[self.trigger["name"]]


def load_functions(target: str, app_dir: Path | None = None,
                   environ: Mapping[str, str] | None = None) -> list[FunctionSpec]:
    """Import `module:attribute` afresh and index its functions once.

    `FunctionApp.get_functions()` is not idempotent (a second call fails on duplicate names), so
    the module is re-imported on every load: a host restarted in one process gets a new app."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise AppLoadError(f"app target {target!r} must look like 'module:attribute', e.g. 'function_app:app'")
    folder = str((app_dir or Path.cwd()).resolve())
    if folder in sys.path:
        sys.path.remove(folder)
    sys.path.insert(0, folder)
    sys.modules.pop(module_name, None)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name:
            raise
        raise AppLoadError(f"cannot import {module_name!r} from {folder}: run the host from the app's folder "
                           "or pass the right app target") from None
    app = getattr(module, attribute, None)
    if app is None or not hasattr(app, "get_functions"):
        raise AppLoadError(f"{target!r} is not an azure.functions.FunctionApp")
    environ = os.environ if environ is None else environ
    return [_describe(function, environ) for function in app.get_functions()]


def _describe(function: Any, environ: Mapping[str, str]) -> FunctionSpec:
    name = function.get_function_name()
    bindings = json.loads(function.get_function_json())["bindings"]
    triggers = [b for b in bindings if b["type"].endswith("Trigger")]
    trigger = triggers[0]
    if trigger["type"] not in TRIGGERS:
        raise AppLoadError(f"function {name!r}: the dev host does not serve {trigger['type']} "
                           f"(it serves {', '.join(TRIGGERS)})")
    where = f"function {name!r}"
    outputs = []
    for binding in bindings:
        if binding is trigger or (binding["type"] == "http" and binding["name"] == "$return"):
            continue
        if binding["type"] != "queue" or str(binding.get("direction", "")).lower() != "out":
            raise AppLoadError(f"{where}: binding {binding['name']!r} of type {binding['type']} "
                               "is not served by the dev host (it serves queue output bindings)")
        outputs.append(QueueOutput(binding["name"], queue_name(resolve(binding["queueName"], environ, where), f"{where} queue output"),
                                   binding.get("connection")))
    user_function = function.get_user_function()
    parameters = inspect.signature(user_function).parameters
    expected = [trigger["name"], *(o.name for o in outputs)]
    if sorted(parameters) != sorted(expected):
        raise AppLoadError(f"{where}: its parameters {list(parameters)} must be the binding arguments {expected}")
    resolved = {key: resolve(value, environ, where) if isinstance(value, str) else value
                for key, value in trigger.items()}
    return FunctionSpec(name=name, trigger=resolved, user_function=user_function, outputs=tuple(outputs))


def connection_string(setting: str, environ: Mapping[str, str] | None, where: str) -> str:
    """The value of a connection setting (the host also tries AzureWebJobs<name>)."""
    environ = os.environ if environ is None else environ
    value = environ.get(setting) or environ.get(f"AzureWebJobs{setting}")
    if not value:
        raise AppLoadError(f"{where}: connection setting {setting!r} is not set; the dev host needs a storage "
                           "connection string there")
    return value


def queue_name(name: str, where: str) -> str:
    """Lower-cased as the queue extension does (QueuesExtensionConfigProvider.NormalizeQueueName), then the
    Storage rules: 3-63 characters, letters, digits and single hyphens, a letter or digit at both ends."""
    lowered = name.lower()
    if not QUEUE_NAME.fullmatch(lowered):
        raise AppLoadError(f"{where}: {name!r} is not a valid queue name (3-63 lowercase letters, digits and "
                           "single hyphens, starting and ending with a letter or digit)")
    return lowered


def resolve(value: str, environ: Mapping[str, str], where: str) -> str:
    """Replace %NAME% binding expressions with app settings, as the host does."""
    def setting(match: re.Match) -> str:
        if match.group(1) not in environ:
            raise AppLoadError(f"{where}: app setting {match.group(1)!r} is not set "
                               "(add it to local.settings.json Values or the environment)")
        return environ[match.group(1)]
    return _SETTING.sub(setting, value)
