"""Pure decisions: idempotency keys, run tags, routing of run events, the quality gate, claim leases."""
from __future__ import annotations

import base64
import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Mapping

from retrainer.events import RunEvent
from retrainer.filters import BlobEventFilter
from retrainer.ports import BlobInfo, LedgerEntry, ModelRef, RunStatus, State
from retrainer.settings import Settings

APP_NAME = "retrainer"
TAG_APP = "retrainer.app"
TAG_KEY = "retrainer.key"          # the readable ledger key
TAG_KEY_HASH = "retrainer.key_sha"  # its digest: what runs are looked up by (a tag query quotes no value safely)
TAG_TRIGGER = "retrainer.trigger"
TAG_BLOB = "retrainer.blob"
TAG_ETAG = "retrainer.etag"
TAG_PIPELINE_VERSION = "retrainer.pipeline_version"
TAG_RUN_ID = "retrainer.run_id"     # on a model version: the pipeline run it came from
TAG_DATA = "retrainer.data"         # on a model version: the data it was trained on

# A pipeline's step: its parent pipeline run is the one to act on. The pipeline service runs v1 pipelines and v2
# pipeline jobs alike; its step runs' events carry this runType and a tag naming their pipeline run (sample
# RunStatusChanged data: Azure-Samples/azure-machine-learning-pipeline-observability-sample, README.md).
STEP_RUN_TYPE = "azureml.StepRun"
PIPELINE_RUN_TAG = "azureml.pipelinerunid"


# ---------------------------------------------------------------- keys and ids

def normalize_etag(etag: str) -> str:
    """The SDK quotes ETags ('"0x8DC..."'), Event Grid does not: one spelling per blob version."""
    etag = etag.strip()
    if etag.startswith("W/"):
        etag = etag[2:]
    return etag.strip('"')


def blob_key(container: str, name: str, etag: str) -> str:
    return f"blob:{container}/{name}@{normalize_etag(etag)}"


def timer_key(schedule_name: str, scheduled_time: datetime) -> str:
    """One key per tick, however often the tick is delivered (past-due, restarts)."""
    when = scheduled_time.astimezone(timezone.utc) if scheduled_time.tzinfo else scheduled_time
    return f"timer:{schedule_name}@{when.replace(microsecond=0, tzinfo=None).isoformat()}Z"


def manual_key(request_id: str) -> str:
    return f"manual:{request_id}"


def key_digest(key: str) -> str:
    """Hex digest of a ledger key: a tag value with no quote, slash or space, of a fixed length.

    Azure ML v1 writes a tag query's value into OData unescaped (`Run.list(tags=)` formats
    `(Tags/{0} eq {1})`, azureml/_restclient/_odata/constants.py TAG_EQ_FORMAT_STR), so a blob name
    holding `"` cannot be looked up by itself.
    """
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:40]


def blob_filter(settings: Settings) -> BlobEventFilter:
    return BlobEventFilter(container=settings.incoming_container, quarantine_container=settings.quarantine_container)


def training_files(blobs: Iterable[BlobInfo], settings: Settings) -> list[BlobInfo]:
    """The blobs of a dataset folder a training reads: non-empty, not Azure ML's outputs nor quarantine copies."""
    rule = blob_filter(settings)
    return [b for b in blobs if b.size > 0 and not rule.ignored_folder(b.name)]


def file_fingerprint(info: BlobInfo) -> str:
    """What the data behind a path is, passed as the `input_data_version` pipeline parameter.

    Azure ML reuses a step whose arguments are unchanged and does not look behind a DataPath
    (Azure/MachineLearningNotebooks#298: "If the data is in a datastore, we would not be able to detect the
    data change"), so the data's identity must be an argument. A file is its Content-MD5 when the service
    recorded one (identical bytes uploaded again: the same fingerprint, the steps reused), else its ETag.
    """
    if info.content_md5:
        return "md5-" + base64.b64decode(info.content_md5).hex()
    return "etag-" + normalize_etag(info.etag)


def folder_fingerprint(files: Iterable[BlobInfo]) -> str:
    """A folder's fingerprint: a digest over its files' names and fingerprints (one more file: new data)."""
    lines = sorted(f"{b.name}\t{file_fingerprint(b)}" for b in files)
    return "files-" + hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()[:40]


def poison_key(queue: str, message_id: str) -> str:
    return f"poison:{queue}/{message_id}"


def watermark_key(pipeline: str) -> str:
    """The ledger row holding the newest data time the last successful training used."""
    return f"watermark:{pipeline}"


def notification_id(key: str, event_type: str) -> str:
    """Deterministic per (key, type): a resend after a crash carries the same id."""
    return hashlib.sha256((key + event_type).encode("utf-8")).hexdigest()[:32]


def run_tags(key: str, trigger: str, pipeline_version: str, blob: str | None = None,
             etag: str | None = None) -> dict[str, str]:
    tags = {TAG_KEY: key, TAG_KEY_HASH: key_digest(key), TAG_TRIGGER: trigger, TAG_APP: APP_NAME,
            TAG_PIPELINE_VERSION: pipeline_version}
    if blob is not None:
        tags[TAG_BLOB] = blob
    if etag is not None:
        tags[TAG_ETAG] = normalize_etag(etag)
    return tags


# ---------------------------------------------------------------- routing

def ignore_run_event(event: RunEvent, settings: Settings) -> str | None:
    """Why a run event is not this app's to act on, or None when it is."""
    # Azure resource ids are case-insensitive
    if event.topic.lower() != settings.workspace_topic.lower():
        return f"foreign topic {event.topic!r}"
    if event.run_tags.get(TAG_APP) != APP_NAME or not event.run_tags.get(TAG_KEY):
        return f"run {event.run_id} was not submitted by {APP_NAME} (no {TAG_APP}/{TAG_KEY} tags)"
    if event.run_type == STEP_RUN_TYPE or PIPELINE_RUN_TAG in event.run_tags:
        return f"run {event.run_id} is a pipeline step; its pipeline run decides"
    if event.run_status not in RunStatus.TERMINAL:
        return f"run {event.run_id} is {event.run_status}, not finished"
    return None


# ---------------------------------------------------------------- quality gate

@dataclass(frozen=True)
class GateDecision:
    passed: bool
    metric: str
    value: float | None
    champion: float | None
    reason: str


def quality_gate(metrics: Mapping[str, Any], champion: ModelRef | None, settings: Settings) -> GateDecision:
    """At least the floor, and at least the champion's value plus min_delta when there is a champion."""
    name, floor, delta = settings.primary_metric, settings.metric_floor, settings.min_delta
    if name not in metrics:
        logged = ", ".join(sorted(metrics)) or "none"
        return GateDecision(False, name, None, None, f"the run logged no {name} metric (logged: {logged})")
    value = metric_value(metrics[name])
    if value is None:
        return GateDecision(False, name, None, None, f"{name} {metrics[name]!r} is not a number")
    champion_value = metric_value(champion.properties.get(name)) if champion else None
    if value < floor:
        return GateDecision(False, name, value, champion_value, f"{name} {value:.4f} < floor {floor:.4f}")
    if champion is None:
        return GateDecision(True, name, value, None, f"{name} {value:.4f} >= floor {floor:.4f} (no current model)")
    if champion_value is None:
        return GateDecision(True, name, value, None,
                            f"{name} {value:.4f} >= floor {floor:.4f} (current model v{champion.version} "
                            f"records no {name})")
    needed = f"champion {champion_value:.4f} + {delta:.4f}"
    if value < champion_value + delta:
        return GateDecision(False, name, value, champion_value, f"{name} {value:.4f} < {needed}")
    return GateDecision(True, name, value, champion_value,
                        f"{name} {value:.4f} >= floor {floor:.4f} and >= {needed}")


def metric_value(raw: Any) -> float | None:
    """A finite float from a logged metric: a number, its string, or the last of a logged series."""
    if isinstance(raw, (list, tuple)):
        raw = raw[-1] if raw else None
    if raw is None or isinstance(raw, bool):
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


# ---------------------------------------------------------------- leases and watermarks

def claim_is_stale(entry: LedgerEntry, now: datetime, lease_minutes: int) -> bool:
    """A CLAIMED row whose holder gave it back (its work failed) or has had the lease and not moved on
    (presumed dead): the next caller may take it over."""
    return entry.state == State.CLAIMED and ("released_at" in entry.fields
                                             or now - entry.updated >= timedelta(minutes=lease_minutes))


def newest_data(blobs: Iterable[BlobInfo]) -> datetime | None:
    return max((b.last_modified for b in blobs if b.size > 0), default=None)


def has_new_data(newest: datetime | None, watermark: datetime | None) -> bool:
    return newest is not None and (watermark is None or newest > watermark)
