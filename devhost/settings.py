"""Dev host settings: `local.settings.json` as Core Tools reads it, then DEVHOST_* variables."""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, MutableMapping


HOSTS_CONTAINER = "azure-webjobs-hosts"   # where the Functions host keeps its state in AzureWebJobsStorage
# Event Grid's redelivery delays in seconds, then every 12 h (https://learn.microsoft.com/azure/event-grid/delivery-and-retry)
RETRY_SCHEDULE = (10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 10800.0, 21600.0, 43200.0)


class HostSettingsError(ValueError):
    """A dev host setting is missing or invalid; the message names it."""


@dataclass(frozen=True)
class HostSettings:
    host: str = "127.0.0.1"                  # DEVHOST_HOST
    port: int = 7071                         # DEVHOST_PORT (0: a free port)
    poll_interval: float = 1.0               # DEVHOST_POLL_INTERVAL: seconds between storage scans
    workers: int = 4                         # DEVHOST_WORKERS: invocations running at once
    host_id: str = "devhost"                 # DEVHOST_HOST_ID: names subscription receipts and timer status blobs
    auth: bool = True                        # DEVHOST_AUTH: off accepts every request without a key
    master_key: str | None = field(default=None, repr=False)     # DEVHOST_MASTER_KEY: admin level, any level
    function_key: str | None = field(default=None, repr=False)   # DEVHOST_FUNCTION_KEY: function level
    eventgrid_key: str | None = field(default=None, repr=False)  # DEVHOST_EVENTGRID_KEY: the webhooks' system key
    sink_key: str | None = field(default=None, repr=False)       # DEVHOST_SINK_KEY: x-retrainer-key on /sink
    azurite_dir: Path | None = None          # DEVHOST_AZURITE_DIR: Azurite data folder (unset: in memory)
    state_dir: Path = Path(".state")         # DEVHOST_STATE_DIR: the sink's events.jsonl
    # The storage scan standing in for the Event Grid subscription on the data account (devhost/subscription.py)
    subscription_function: str = "blob_events"                  # DEVHOST_SUBSCRIPTION_FUNCTION ("off": no scan)
    subscription_connection: str = "RETRAINER_DATA_STORAGE"      # DEVHOST_SUBSCRIPTION_CONNECTION
    subscription_containers: tuple[str, ...] = ()                # DEVHOST_SUBSCRIPTION_CONTAINERS (comma-separated)
    subscription_topic: str | None = None                        # DEVHOST_SUBSCRIPTION_TOPIC
    hierarchical_namespace: bool = False                         # DEVHOST_HNS
    eventgrid_retry_delays: tuple[float, ...] = RETRY_SCHEDULE    # DEVHOST_EVENTGRID_RETRY_DELAYS (seconds)

    def __post_init__(self) -> None:
        if self.auth:
            for name, value in (("DEVHOST_MASTER_KEY", self.master_key),
                                ("DEVHOST_EVENTGRID_KEY", self.eventgrid_key)):
                if not value:
                    raise HostSettingsError(f"{name} is required (or set DEVHOST_AUTH=off for local use)")
        if self.poll_interval <= 0 or self.workers < 1:
            raise HostSettingsError("DEVHOST_POLL_INTERVAL must be > 0 and DEVHOST_WORKERS >= 1")
        if not self.eventgrid_retry_delays or any(d < 0 for d in self.eventgrid_retry_delays):
            raise HostSettingsError("DEVHOST_EVENTGRID_RETRY_DELAYS must be seconds >= 0, comma-separated, "
                                    "e.g. 10,30,60")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "HostSettings":
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for name, (attr, kind) in _VARIABLES.items():
            raw = env.get(name, "").strip()
            if not raw:
                continue
            try:
                values[attr] = kind(raw)
            except ValueError:
                raise HostSettingsError(f"{name} must be a {kind.__name__} (got {raw!r})") from None
        return cls(**values)


def _flag(raw: str) -> bool:
    if raw.lower() in ("1", "true", "on", "yes"):
        return True
    if raw.lower() in ("0", "false", "off", "no"):
        return False
    raise ValueError(raw)


_flag.__name__ = "on/off flag"


def _names(raw: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in raw.split(",") if name.strip())


def _seconds(raw: str) -> tuple[float, ...]:
    return tuple(float(part) for part in raw.split(","))


_names.__name__ = "comma-separated list of names"
_seconds.__name__ = "comma-separated list of seconds"

_VARIABLES = {
    "DEVHOST_HOST": ("host", str), "DEVHOST_PORT": ("port", int),
    "DEVHOST_POLL_INTERVAL": ("poll_interval", float), "DEVHOST_WORKERS": ("workers", int),
    "DEVHOST_HOST_ID": ("host_id", str),
    "DEVHOST_AUTH": ("auth", _flag), "DEVHOST_MASTER_KEY": ("master_key", str),
    "DEVHOST_FUNCTION_KEY": ("function_key", str), "DEVHOST_EVENTGRID_KEY": ("eventgrid_key", str),
    "DEVHOST_SINK_KEY": ("sink_key", str), "DEVHOST_AZURITE_DIR": ("azurite_dir", Path),
    "DEVHOST_STATE_DIR": ("state_dir", Path),
    "DEVHOST_SUBSCRIPTION_FUNCTION": ("subscription_function", str),
    "DEVHOST_SUBSCRIPTION_CONNECTION": ("subscription_connection", str),
    "DEVHOST_SUBSCRIPTION_CONTAINERS": ("subscription_containers", _names),
    "DEVHOST_SUBSCRIPTION_TOPIC": ("subscription_topic", str), "DEVHOST_HNS": ("hierarchical_namespace", _flag),
    "DEVHOST_EVENTGRID_RETRY_DELAYS": ("eventgrid_retry_delays", _seconds),
}


MAX_BATCH_SIZE = 32            # Azure Queues returns at most 32 messages per request
MIN_POLLING_INTERVAL = 0.1     # QueuePollingIntervals.Minimum, seconds


@dataclass(frozen=True)
class QueuesOptions:
    """host.json `extensions.queues`, with the extension's defaults (QueuesOptions.cs)."""
    batch_size: int = 16
    new_batch_threshold: int | None = None   # None: batch_size // 2 * processor count
    max_polling_interval: float = 60.0       # seconds
    visibility_timeout: float = 0.0          # seconds a failed message stays invisible before its retry
    max_dequeue_count: int = 5
    message_encoding: str = "base64"         # or "none"

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            raise HostSettingsError(f"host.json extensions.queues.batchSize must be 1 to {MAX_BATCH_SIZE} "
                                     f"(got {self.batch_size})")
        if self.new_batch_threshold is not None and self.new_batch_threshold < 0:
            raise HostSettingsError("host.json extensions.queues.newBatchThreshold must be 0 or more")
        if self.max_polling_interval < MIN_POLLING_INTERVAL:
            raise HostSettingsError("host.json extensions.queues.maxPollingInterval must not be less than "
                                     "00:00:00.1")
        if self.max_dequeue_count < 1:
            raise HostSettingsError("host.json extensions.queues.maxDequeueCount must not be less than 1")
        if self.visibility_timeout < 0:
            raise HostSettingsError("host.json extensions.queues.visibilityTimeout must not be negative")
        if self.message_encoding not in ("base64", "none"):
            raise HostSettingsError("host.json extensions.queues.messageEncoding must be base64 or none "
                                     f"(got {self.message_encoding!r})")

    @property
    def threshold(self) -> int:
        if self.new_batch_threshold is not None:
            return self.new_batch_threshold
        return self.batch_size // 2 * (os.cpu_count() or 1)

    @classmethod
    def from_host_json(cls, section: Mapping[str, Any]) -> "QueuesOptions":
        """The `extensions.queues` object; keys are matched case-insensitively, as .NET configuration does."""
        given = {str(k).lower(): v for k, v in section.items()}
        values: dict[str, Any] = {}
        try:
            for key, attr, parse in (("batchsize", "batch_size", int), ("newbatchthreshold", "new_batch_threshold", int),
                                     ("maxpollinginterval", "max_polling_interval", timespan_seconds),
                                     ("visibilitytimeout", "visibility_timeout", timespan_seconds),
                                     ("maxdequeuecount", "max_dequeue_count", int),
                                     ("messageencoding", "message_encoding", lambda v: str(v).lower())):
                if key in given:
                    values[attr] = parse(given[key])
        except (TypeError, ValueError) as error:
            raise HostSettingsError(f"host.json extensions.queues is not valid: {error}") from None
        return cls(**values)


def timespan_seconds(value: Any) -> float:
    """A .NET TimeSpan as host.json gives it: "hh:mm:ss[.fffffff]", "d.hh:mm:ss", "hh:mm" or "d" (a bare number
    is days, as TimeSpan.Parse reads it)."""
    text = str(value).strip()
    match = re.fullmatch(r"(-)?(?:(\d+)\.)?(\d+):(\d+)(?::(\d+)(?:\.(\d{1,7}))?)?", text)
    if match:
        sign, days, hours, minutes, seconds, fraction = match.groups()
        total = (int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + int(seconds or 0)
                 + (int(fraction) / 10 ** len(fraction) if fraction else 0))
        return -total if sign else total
    if re.fullmatch(r"\d+", text):
        return int(text) * 86400.0
    raise ValueError(f"{value!r} is not a TimeSpan; write it as hh:mm:ss, e.g. \"00:00:30\"")


OVERRIDE_PREFIX = "azurefunctionsjobhost__"


def _override(document: dict, environ: Mapping[str, str]) -> None:
    for name, value in environ.items():
        if not name.lower().startswith(OVERRIDE_PREFIX):
            continue
        *parents, leaf = name[len(OVERRIDE_PREFIX):].split("__")
        node = document
        for part in parents:
            key = next((k for k in node if k.lower() == part.lower()), part)
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ValueError(f"{name} overrides a value of host.json that is not an object")
        node[next((k for k in node if k.lower() == leaf.lower()), leaf)] = value


@dataclass(frozen=True)
class HostJson:
    """What the dev host honours from the app's host.json, with the Functions host's defaults."""
    route_prefix: str = "api"        # extensions.http.routePrefix
    queues: QueuesOptions = field(default_factory=QueuesOptions)   # extensions.queues

    @classmethod
    def read(cls, path: Path, environ: Mapping[str, str] | None = None) -> "HostJson":
        """The file, with the app settings that override it applied as the host applies them: a setting
        `AzureFunctionsJobHost__<path>__<to>__<value>` replaces that value (matched case-insensitively)
        https://learn.microsoft.com/azure/azure-functions/functions-host-json#override-hostjson-values"""
        try:
            document = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
            _override(document, os.environ if environ is None else environ)
            extensions = document.get("extensions") or {}
            prefix = str((extensions.get("http") or {}).get("routePrefix", "api")).strip("/")
            queues = extensions.get("queues") or {}
            if not isinstance(queues, dict):
                raise TypeError
        except (ValueError, AttributeError, TypeError):
            raise HostSettingsError(f"{path} is not valid: extensions.http.routePrefix must be a string and "
                                    "extensions.queues an object") from None
        return cls(route_prefix=prefix, queues=QueuesOptions.from_host_json(queues))


def load_local_settings(path: Path, environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Copy `Values` of local.settings.json into the environment, keeping variables already set
    (as Core Tools does). Returns the names it set. A missing file is fine."""
    environ = os.environ if environ is None else environ
    if not path.exists():
        return []
    try:
        values = json.loads(path.read_text(encoding="utf-8")).get("Values", {})
    except (ValueError, AttributeError):
        raise HostSettingsError(f"{path} is not valid JSON with a \"Values\" object; "
                                "see local.settings.example.json") from None
    if not isinstance(values, dict):
        raise HostSettingsError(f"{path}: \"Values\" must be an object of setting names to strings")
    added = []
    for name, value in values.items():
        if name not in environ:
            environ[name] = "" if value is None else str(value)
            added.append(name)
    return added
