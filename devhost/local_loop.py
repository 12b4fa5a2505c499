"""Close the local loop for the retrainer app on the dev host.

On Azure, Azure ML posts run events to the Event Grid subscription of the `ml_events` function, and
notifications go to a real topic or webhook. Locally, the run worker posts to this host's Event Grid
webhook, and notifications (when no target is configured) go to the host's sink. Only unset
settings are filled; keys travel in headers, never in URLs or logs.
"""
from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import MutableMapping

from devhost.settings import HostSettings

EVENTS_FUNCTION = "ml_events"
KEY_SETTINGS = ("DEVHOST_MASTER_KEY", "DEVHOST_EVENTGRID_KEY", "DEVHOST_FUNCTION_KEY", "DEVHOST_SINK_KEY")


def ensure_keys(state_dir: Path, env: MutableMapping[str, str] = os.environ) -> Path:
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
        env.setdefault(name, stored[name])
    return path


def wire(host: HostSettings, env: MutableMapping[str, str] = os.environ) -> None:
    base = f"http://{host.host}:{host.port}"
    env.setdefault("RETRAINER_LOCAL_EVENTS_ENDPOINT",
                   f"{base}/runtime/webhooks/eventgrid?functionName={EVENTS_FUNCTION}")
    if host.eventgrid_key:
        env.setdefault("RETRAINER_LOCAL_EVENTS_KEY", host.eventgrid_key)
    if not env.get("RETRAINER_NOTIFY_TOPIC_ENDPOINT") and not env.get("RETRAINER_NOTIFY_WEBHOOK_URL"):
        env["RETRAINER_NOTIFY_WEBHOOK_URL"] = f"{base}/sink/events"
        if host.sink_key:
            env["RETRAINER_NOTIFY_WEBHOOK_KEY"] = host.sink_key
