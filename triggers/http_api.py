"""The HTTP API: start a retrain by hand, read the lineage, check health."""
import json

import azure.functions as func

from retrainer import bootstrap, handlers, intake
from retrainer.settings import Settings, SettingsError
from triggers._invoke import log_outcome

bp = func.Blueprint()

MAX_LIMIT = 500
MAX_REQUEST_ID = 200


@bp.route(route="retrain", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def retrain(req: func.HttpRequest) -> func.HttpResponse:
    try:
        body = req.get_json()
    except ValueError:
        return _error(400, 'the body is not JSON: send {"data_path": "<container>/<blob or folder>"}')
    data_path = body.get("data_path") if isinstance(body, dict) else None
    if not isinstance(data_path, str) or not data_path.strip():
        return _error(400, 'missing "data_path": send {"data_path": "<container>/<blob or folder>"}')
    request_id = req.headers.get("Idempotency-Key")
    if request_id is not None and not (0 < len(request_id) <= MAX_REQUEST_ID and request_id.isprintable()):
        return _error(400, f"Idempotency-Key must be 1 to {MAX_REQUEST_ID} printable characters")
    outcome = handlers.retrain_requested(bootstrap.deps(), data_path, request_id)
    log_outcome("retrain", outcome)
    if outcome.action == "rejected":
        return _error(400, outcome.detail["message"])
    status = 200 if outcome.action == "duplicate" else 202
    return _json(status, {"action": outcome.action, "key": outcome.key, **outcome.detail})


@bp.route(route="runs", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def list_runs(req: func.HttpRequest) -> func.HttpResponse:
    raw = req.params.get("limit", "20")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        return _error(400, f"limit must be a whole number from 1 to {MAX_LIMIT} (got {raw!r})")
    return _json(200, {"runs": handlers.recent_runs(bootstrap.deps(), int(raw))})


@bp.route(route="runs/{*key}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def get_run(req: func.HttpRequest) -> func.HttpResponse:
    key = req.route_params.get("key", "")
    record = handlers.lineage(bootstrap.deps(), key)
    if record is None:
        return _error(404, f"no ledger record for key {key!r}: list keys with GET /api/runs")
    return _json(200, record)


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    """For probes: the status only. The settings name the subscription, workspace and accounts."""
    return _health(details=False)


@bp.route(route="health/details", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def health_details(req: func.HttpRequest) -> func.HttpResponse:
    """The status with the non-secret settings (or what is misconfigured), the work queues' depths and the
    ledger rows past their bound, behind the function key. Messages in a poison queue (work the host gave up
    on) or overdue rows make the status "attention"."""
    response = _health(details=True)
    if response.status_code != 200:
        return response
    deps = bootstrap.deps()
    queues, late = handlers.queue_depths(deps), handlers.overdue(deps)
    poisoned = sum(count for name, count in queues.items() if name.endswith(intake.POISON_SUFFIX))
    document = json.loads(response.get_body())
    return _json(200, {**document, "status": "attention" if poisoned or any(late.values()) else "ok",
                       "queues": queues, "overdue": late})


def _health(details: bool) -> func.HttpResponse:
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        return _json(503, {"status": "misconfigured", **({"error": str(error)} if details else {})})
    return _json(200, {"status": "ok", **({"settings": settings.public()} if details else {})})


def _json(status: int, document: dict) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(document, default=str), status_code=status,
                             mimetype="application/json")


def _error(status: int, message: str) -> func.HttpResponse:
    return _json(status, {"error": message})
