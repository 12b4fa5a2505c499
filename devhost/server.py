"""The dev host's HTTP surface (Starlette): HTTP triggers under /api (host.json routePrefix), the Event Grid and blobs
webhooks under /runtime/webhooks, manual runs under /admin/functions, and a notification sink."""
from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import azure.functions as func
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from devhost import eventgrid
from devhost.app_loader import FunctionSpec
from devhost.bindings import Invoker, event_argument
from devhost.queues import direct_argument
from devhost.settings import HostSettings
from devhost.timers import Timers

log = logging.getLogger("devhost")
SINK_FILE = "sink-events.jsonl"


@dataclass(frozen=True)
class HttpRoute:
    spec: FunctionSpec
    pattern: re.Pattern
    methods: frozenset[str] | None  # None: any method
    auth_level: str

    @classmethod
    def of(cls, spec: FunctionSpec) -> "HttpRoute":
        methods = spec.trigger.get("methods")
        return cls(spec, _route_regex(spec.trigger.get("route") or spec.name),
                   frozenset(m.upper() for m in methods) if methods else None,
                   str(spec.trigger.get("authLevel", "FUNCTION")).lower())


def _route_regex(template: str) -> re.Pattern:
    """ASP.NET-style route templates: literals (case-insensitive), {name}, {name:constraint},
    {name?} and {*rest}."""
    regex = ""
    for segment in template.strip("/").split("/"):
        token = re.fullmatch(r"\{(\*?)(\w+)(?::[^}?]*)?(\??)\}", segment)
        if token is None:
            regex += "/" + re.escape(segment)
        elif token.group(1):
            regex += f"(?:/(?P<{token.group(2)}>.*))?"
        elif token.group(3):
            regex += f"(?:/(?P<{token.group(2)}>[^/]+))?"
        else:
            regex += f"/(?P<{token.group(2)}>[^/]+)"
    return re.compile(regex + "/?", re.IGNORECASE)


class Endpoints:
    def __init__(self, specs: Iterable[FunctionSpec], settings: HostSettings, invoker: Invoker,
                 timers: Timers, *, route_prefix: str = "api") -> None:
        specs = list(specs)
        self._specs = {s.name.lower(): s for s in specs}     # the admin API ignores case
        self._functions_by_name = {s.name: s for s in specs}
        self._routes = [HttpRoute.of(s) for s in self._specs.values() if s.trigger_type == "httpTrigger"]
        self._settings, self._invoker, self._timers = settings, invoker, timers
        self._route_prefix = route_prefix
        self.sink_file = Path(settings.state_dir) / SINK_FILE
        self._sink_lock = threading.Lock()

    def asgi(self) -> Starlette:
        return Starlette(routes=[
            Route("/runtime/webhooks/eventgrid", self.eventgrid_webhook, methods=["POST", "OPTIONS"]),
            Route("/runtime/webhooks/blobs", self.blob_webhook, methods=["POST", "OPTIONS"]),
            Route("/admin/functions/{name}", self.run_function, methods=["POST"]),
            Route("/sink/events", self.sink, methods=["GET", "POST"]),
            # last: with an empty routePrefix (host.json) it takes every other path
            Route("/".join(("", self._route_prefix, "{path:path}")).replace("//", "/"), self.http_trigger,
                  methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]),
        ])

    # --- keys: `code` query parameter or x-functions-key header, as the Functions host takes them
    def _authorized(self, request: Request, level: str) -> bool:
        if not self._settings.auth or level == "anonymous":
            return True
        given = request.query_params.get("code") or request.headers.get("x-functions-key")
        keys = {"admin": [self._settings.master_key],
                "function": [self._settings.master_key, self._settings.function_key],
                "system": [self._settings.master_key, self._settings.eventgrid_key]}[level]
        return bool(given) and any(k and hmac.compare_digest(given, k) for k in keys)

    # --- Event Grid trigger
    async def eventgrid_webhook(self, request: Request) -> Response:
        """The Event Grid extension's webhook: `functionName` is the bare function name, matched exactly
        (EventGridExtensionConfigProvider keeps its listeners in a case-sensitive dictionary under
        Descriptor.ShortName.Split('.').Last(), so `Host.Functions.NAME` is 404 there as here). Every event is
        passed on: the extension filters nothing; one invocation per event, all run, then 202 or 500."""
        if not self._authorized(request, "system"):
            return _unauthorized()
        name = request.query_params.get("functionName", "")
        spec = self._functions_by_name.get(name)
        if spec is None or spec.trigger_type != "eventGridTrigger":
            hint = (f" (the Event Grid webhook takes the bare function name: functionName={name.rsplit('.', 1)[-1]})"
                    if name.startswith("Host.Functions.") else "")
            return _error(404, f"cannot find function: {name!r}{hint}")
        events, answer = await self._notification(request)
        if answer:
            return answer
        try:
            arguments = [_event(spec, event, index) for index, event in enumerate(events)]
        except eventgrid.BadDelivery as error:
            return _error(400, str(error))
        futures = [self._invoker.submit(spec, lambda a=a: a, "event") for a in arguments]
        outcomes = await asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
        return Response(status_code=202 if all(o.succeeded for o in outcomes) else 500)

    # --- the blobs extension's webhook
    async def blob_webhook(self, request: Request) -> Response:
        """The blobs extension's webhook, which the extension bundle always serves. It queues each event for the
        blob trigger whose id (`Host.Functions.NAME`) `functionName` gives, without looking at its type, api or
        size, and answers 202; an id no blob trigger has is dropped later with a log line
        (BlobsExtensionConfigProvider.ConvertAsync, BlobQueueTriggerExecutor: FunctionNotFound). The dev host serves
        no blob triggers (the app's BlobCreated go to an Event Grid trigger), so every event ends that way."""
        if not self._authorized(request, "system"):
            return _unauthorized()
        events, answer = await self._notification(request)
        if answer:
            return answer
        log.warning("blobs webhook: no blob trigger with id %r (the dev host serves none): %d event(s) dropped, "
                    "as the blobs extension drops events for an unknown function id",
                    request.query_params.get("functionName", ""), len(events))
        return Response(status_code=202)

    @staticmethod
    async def _notification(request: Request) -> tuple[list[dict[str, Any]], Response | None]:
        """The events of an Event Grid delivery, or the answer that ends it: the CloudEvents and
        SubscriptionValidation handshakes, a subscription's deletion, a bad delivery."""
        if request.method == "OPTIONS":
            return [], _cloudevents_handshake(request)
        try:
            kind = eventgrid.delivery_kind(request.headers)
            events = eventgrid.parse_batch(await request.body())
            if kind == eventgrid.VALIDATION:
                return [], JSONResponse(eventgrid.validation_response(events))
        except eventgrid.BadDelivery as error:
            return [], _error(400, str(error))
        if kind == eventgrid.DELETION:
            return [], Response(status_code=202)
        return events, None

    # --- HTTP triggers
    async def http_trigger(self, request: Request) -> Response:
        path = "/" + request.path_params["path"]
        for route in self._routes:
            match = route.pattern.fullmatch(path)
            if match is None or (route.methods and request.method not in route.methods):
                continue
            if not self._authorized(request, route.auth_level):
                return Response(status_code=401)
            http_request = func.HttpRequest(
                request.method, str(request.url), headers=dict(request.headers),
                params=dict(request.query_params),
                route_params={k: v for k, v in match.groupdict().items() if v is not None},
                body=await request.body())
            outcome = await asyncio.wrap_future(self._invoker.submit(route.spec, lambda: http_request, "http"))
            return _http_response(outcome.result) if outcome.succeeded else Response(status_code=500)
        return Response(status_code=404)

    # --- manual runs, as the host's admin API: body {"input": "..."}
    async def run_function(self, request: Request) -> Response:
        if not self._authorized(request, "admin"):
            return Response(status_code=401)
        spec = self._specs.get(request.path_params["name"].lower())
        if spec is None:
            return _error(404, f"no function named {request.path_params['name']!r}")
        try:
            given = json.loads(await request.body() or b"{}").get("input", "")
        except (ValueError, AttributeError):
            return _error(400, 'the body must be JSON like {"input": "..."}')
        if spec.trigger_type == "timerTrigger":
            await run_in_threadpool(self._timers.fire_now, spec.name)
        elif spec.trigger_type == "eventGridTrigger":
            try:
                argument = _event(spec, json.loads(given) if isinstance(given, str) else given, 0)
            except (ValueError, eventgrid.BadDelivery) as error:
                return _error(400, f"input must be one event as JSON: {error}")
            self._invoker.submit(spec, lambda: argument, "manual")
        elif spec.trigger_type == "queueTrigger":
            text = given if isinstance(given, str) else json.dumps(given)
            self._invoker.submit(spec, lambda: direct_argument(text), "manual")
        else:
            return _error(400, f"function {spec.name!r} is an HTTP trigger: call it under /api")
        return Response(status_code=202)

    # --- notification sink: records CloudEvents posted to it (one JSON line each) and prints them
    async def sink(self, request: Request) -> Response:
        key = self._settings.sink_key
        given = request.headers.get("x-retrainer-key") or request.headers.get("aeg-sas-key")
        if key and not (given and hmac.compare_digest(given, key)):
            return _error(401, "header x-retrainer-key (or aeg-sas-key) with the sink key is required")
        if request.method == "GET":
            return JSONResponse(await run_in_threadpool(self.sink_events))
        try:
            events = eventgrid.parse_batch(await request.body())
        except eventgrid.BadDelivery as error:
            return _error(400, str(error))
        with self._sink_lock:
            self.sink_file.parent.mkdir(parents=True, exist_ok=True)
            with self.sink_file.open("a", encoding="utf-8") as out:
                for event in events:
                    out.write(json.dumps(event, sort_keys=True) + "\n")
        for event in events:
            log.info("sink: %s subject=%s id=%s", event.get("type") or event.get("eventType"),
                     event.get("subject"), event.get("id"))
        return Response(status_code=200)

    def sink_events(self) -> list[dict[str, Any]]:
        with self._sink_lock:
            if not self.sink_file.exists():
                return []
            return [json.loads(line) for line in self.sink_file.read_text(encoding="utf-8").splitlines() if line]


def _event(spec: FunctionSpec, event: Any, index: int) -> Any:
    if not isinstance(event, dict):
        raise eventgrid.BadDelivery(f"event {index} is not a JSON object")
    try:
        return event_argument(spec, event)
    except KeyError as missing:
        raise eventgrid.BadDelivery(f"event {index} lacks field {missing}") from None
    except ValueError as error:
        raise eventgrid.BadDelivery(f"event {index} is not valid: {error}") from None


def _cloudevents_handshake(request: Request) -> Response:
    """CloudEvents 1.0 webhook validation (an OPTIONS request), as Event Grid sends it."""
    origin = request.headers.get("webhook-request-origin", "*")
    return Response(status_code=200, headers={"WebHook-Allowed-Origin": origin, "WebHook-Allowed-Rate": "*"})


def _http_response(result: Any) -> Response:
    if isinstance(result, func.HttpResponse):
        headers = dict(result.headers)
        if not any(h.lower() == "content-type" for h in headers) and result.mimetype:
            headers["content-type"] = f"{result.mimetype}; charset={result.charset}"
        return Response(result.get_body(), status_code=result.status_code, headers=headers)
    if result is None:
        return Response(status_code=204)
    return Response(result if isinstance(result, bytes) else str(result), media_type="text/plain")


def _unauthorized() -> Response:
    return _error(401, "a valid key is required: `code` query parameter or x-functions-key header")


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status)
