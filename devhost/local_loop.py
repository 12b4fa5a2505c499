"""Close the local loop for the retrainer app on the dev host.

On Azure, the data account's Event Grid subscription sends BlobCreated to `blob_events`, Azure ML posts run
events to the subscription of the `ml_events` function, and notifications go to a real topic or webhook.
Locally, the host's storage subscription scans the container of RETRAINER_INCOMING_PATH for `blob_events`, the
run worker posts to this host's Event Grid webhook for `ml_events`, and notifications (when no target is
configured) go to the host's sink. Only unset
settings are filled; keys travel in headers, never in URLs or logs.
"""
from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import MutableMapping

from devhost.settings import HostSettings, load_local_settings
from retrainer.settings import Settings

EVENTS_FUNCTION = "ml_events"
KEY_SETTINGS = ("DEVHOST_MASTER_KEY", "DEVHOST_EVENTGRID_KEY", "DEVHOST_FUNCTION_KEY", "DEVHOST_SINK_KEY")
DEVELOPMENT_STORAGE = "UseDevelopmentStorage=true"   # the host starts Azurite for these
# Binding expressions (%NAME%) the host must resolve, and the incoming path whose container the storage
# subscription watches: the app's defaults when unset.
BINDING_DEFAULTS = {"RETRAINER_INCOMING_PATH": Settings.incoming_path,
                    "RETRAINER_SCHEDULE": Settings.retrain_schedule,
                    "RETRAINER_RECONCILE_SCHEDULE": Settings.reconcile_schedule}


def prepare(app_dir: Path, env: MutableMapping[str, str] = os.environ) -> HostSettings:
    """Settings for running function_app on the dev host with the local backend, as Core Tools would
    read them (local.settings.json first), completed with local defaults."""
    load_local_settings(app_dir / "local.settings.json", env)
    for name, value in {**BINDING_DEFAULTS, "AzureWebJobsStorage": DEVELOPMENT_STORAGE,
                        "RETRAINER_DATA_STORAGE": DEVELOPMENT_STORAGE}.items():
        if not env.get(name):
            env[name] = value
    state_dir = Path(env.get("RETRAINER_STATE_DIR") or Settings.state_dir)
    env.setdefault("DEVHOST_STATE_DIR", str(state_dir))
    ensure_keys(state_dir, env)
    host = HostSettings.from_env(env)
    wire(host, env)
    return host


def ensure_keys(state_dir: Path, env: MutableMapping[str, str]) -> Path:
    """Give the host keys when none are set: generated once, kept in a file only the owner reads."""
    path = state_dir / "devhost-keys.json"
    if all(env.get(name) for name in KEY_SETTINGS):
        return path
    if path.exists():
        stored = json.loads(path.read_text())
    else:
        stored = {name: secrets.token_urlsafe(24) for name in KEY_SETTINGS}
        state_dir.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(json.dumps(stored, indent=2))
    for name in KEY_SETTINGS:
        if not env.get(name):
            env[name] = stored[name]
    return path


def wire(host: HostSettings, env: MutableMapping[str, str]) -> None:
    base = f"http://{host.host}:{host.port}"
    if not env.get("RETRAINER_LOCAL_EVENTS_ENDPOINT"):
        env["RETRAINER_LOCAL_EVENTS_ENDPOINT"] = f"{base}/runtime/webhooks/eventgrid?functionName={EVENTS_FUNCTION}"
        env["RETRAINER_LOCAL_EVENTS_KEY"] = host.eventgrid_key or ""
    if not env.get("RETRAINER_NOTIFY_TOPIC_ENDPOINT") and not env.get("RETRAINER_NOTIFY_WEBHOOK_URL"):
        env["RETRAINER_NOTIFY_WEBHOOK_URL"] = f"{base}/sink/events"
        env["RETRAINER_NOTIFY_WEBHOOK_KEY"] = host.sink_key or ""
