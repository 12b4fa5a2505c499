"""The dev host: serves an azure.functions.FunctionApp the way the Functions host does, on one machine.

    python -m retrainer host            (calls main())
    with DevHost("function_app:app") as host: ...   (tests, the demo)
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Sequence

import uvicorn
from azure.storage.blob import BlobServiceClient

from devhost import azurite
from devhost.app_loader import AppLoadError, FunctionSpec, load_functions
from devhost.bindings import Invoker
from devhost.ncrontab import ScheduleError
from devhost.queues import QueueOutputs, QueueTriggers
from devhost.server import Endpoints
from devhost.settings import HostJson, HostSettings, HostSettingsError, load_local_settings
from devhost.subscription import StorageSubscription, Subscription
from devhost.timers import Timers

log = logging.getLogger("devhost")
STORAGE_SETTING = "AzureWebJobsStorage"
LOCAL_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"   # the placeholder Azure subscription of local runs


class DevHost:
    def __init__(self, app_target: str = "function_app:app", settings: HostSettings | None = None, *,
                 app_dir: Path | None = None) -> None:
        """`settings` None: read DEVHOST_* from the environment after local.settings.json is loaded."""
        self.app_target = app_target
        self.app_dir = Path(app_dir or Path.cwd()).resolve()
        self._given_settings = settings
        self.settings: HostSettings | None = None
        self.functions: list[FunctionSpec] = []
        self.base_url = ""
        self.connection_string = ""
        self._azurite: azurite.Azurite | None = None
        self._server: uvicorn.Server | None = None
        self._server_thread: threading.Thread | None = None
        self._invoker: Invoker | None = None
        self._queue_triggers: QueueTriggers | None = None
        self._subscription: StorageSubscription | None = None
        self._timers: Timers | None = None
        self._endpoints: Endpoints | None = None
        self._replaced_settings: dict[str, str | None] = {}

    @property
    def sink_file(self) -> Path:
        return self._endpoints.sink_file

    def sink_events(self) -> list[dict]:
        return self._endpoints.sink_events()

    def start(self) -> "DevHost":
        """Returns once the functions are indexed, the triggers run and the HTTP server serves."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        load_local_settings(self.app_dir / "local.settings.json")
        self.settings = settings = self._given_settings or HostSettings.from_env()
        self.connection_string = os.environ.get(STORAGE_SETTING, "")
        if _development_storage(self.connection_string):
            self._start_azurite(settings)
        host_json = HostJson.read(self.app_dir / "host.json")
        self.functions = load_functions(self.app_target, self.app_dir)
        outputs = QueueOutputs(host_json.queues)
        self._invoker = Invoker(settings.workers, outputs)
        self._queue_triggers = QueueTriggers(self.functions, outputs, self._invoker.submit, host_json.queues)
        self._timers = Timers(self.functions, BlobServiceClient.from_connection_string(self.connection_string),
                              self._invoker, host_id=settings.host_id)
        self._endpoints = Endpoints(self.functions, settings, self._invoker, self._timers,
                                    route_prefix=host_json.route_prefix)
        self._serve(settings)
        self._subscription = self._storage_subscription(settings)
        self._queue_triggers.start()
        self._timers.start()
        if self._subscription:
            self._subscription.start()
        for spec in self.functions:
            log.info("function %s: %s %s", spec.name, spec.trigger_type,
                     _describe_trigger(spec, self.base_url, host_json.route_prefix))

    def _storage_subscription(self, settings: HostSettings) -> StorageSubscription | None:
        """The stand-in for the Event Grid subscription on the data account, when the app has its function."""
        spec = next((s for s in self.functions if s.name == settings.subscription_function), None)
        if spec is None or spec.trigger_type != "eventGridTrigger":
            if settings.subscription_function != "off":
                log.info("storage subscription off: no Event Grid trigger function %r (DEVHOST_SUBSCRIPTION_FUNCTION)",
                         settings.subscription_function)
            return None
        connection = os.environ.get(settings.subscription_connection)
        if not connection:
            raise HostSettingsError(f"{settings.subscription_connection} is not set: the storage subscription for "
                                    f"{spec.name} reads the data account from it (DEVHOST_SUBSCRIPTION_CONNECTION)")
        data = BlobServiceClient.from_connection_string(connection)
        containers = settings.subscription_containers or (
            os.environ.get("RETRAINER_INCOMING_PATH", "incoming").split("/", 1)[0],)
        topic = settings.subscription_topic or (f"/subscriptions/{LOCAL_SUBSCRIPTION}/resourceGroups/local/providers"
                                                f"/Microsoft.Storage/storageAccounts/{data.account_name}")
        return StorageSubscription(
            Subscription(spec.name, containers, topic, settings.hierarchical_namespace, settings.eventgrid_retry_delays),
            data=data, hosts=BlobServiceClient.from_connection_string(self.connection_string), endpoint=self.base_url,
            key=settings.eventgrid_key if settings.auth else None, host_id=settings.host_id,
            poll_interval=settings.poll_interval)

    def _start_azurite(self, settings: HostSettings) -> None:
        """No storage configured (or UseDevelopmentStorage=true): our own Azurite backs every setting
        that asks for development storage, as well as AzureWebJobsStorage."""
        self._azurite = azurite.start(settings.azurite_dir)
        self.connection_string = self._azurite.connection_string
        for name, value in list(os.environ.items()):
            if name == STORAGE_SETTING or (value and _development_storage(value)):
                self._replaced_settings[name] = value
                os.environ[name] = self.connection_string
        if STORAGE_SETTING not in self._replaced_settings:
            self._replaced_settings[STORAGE_SETTING] = None
            os.environ[STORAGE_SETTING] = self.connection_string
        log.info("started Azurite (blob %d, queue %d, table %d) for %s", self._azurite.blob_port,
                 self._azurite.queue_port, self._azurite.table_port, ", ".join(sorted(self._replaced_settings)))

    def _serve(self, settings: HostSettings) -> None:
        config = uvicorn.Config(self._endpoints.asgi(), host=settings.host, port=settings.port,
                                log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._server_thread = threading.Thread(target=self._server.run, name="http", daemon=True)
        self._server_thread.start()
        while not self._server.started:
            if not self._server_thread.is_alive():
                raise HostSettingsError(f"the HTTP server could not listen on {settings.host}:{settings.port} "
                                        "(port in use? set DEVHOST_PORT)")
            time.sleep(0.02)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.base_url = f"http://{settings.host}:{port}"

    def stop(self) -> None:
        """Stop taking work, let in-flight invocations finish, then stop the server and our Azurite.
        The server outlives the invocations: they may post to this host (run events, the sink)."""
        for trigger in (self._subscription, self._queue_triggers, self._timers):
            if trigger:
                trigger.stop()
        if self._invoker:
            self._invoker.shutdown()
            self._invoker = None
        if self._server:
            self._server.should_exit = True
            self._server_thread.join()
            self._server = None
        if self._azurite:
            self._azurite.stop()
            self._azurite = None
        for name, value in self._replaced_settings.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._replaced_settings.clear()

    def __enter__(self) -> "DevHost":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _development_storage(connection: str) -> bool:
    return not connection or connection.replace(" ", "").lower() == "usedevelopmentstorage=true"


def _describe_trigger(spec: FunctionSpec, base_url: str, route_prefix: str) -> str:
    trigger = spec.trigger
    if spec.trigger_type == "httpTrigger":
        route = "/".join(p for p in (route_prefix, trigger.get("route") or spec.name) if p)
        return f"{base_url}/{route} (auth {str(trigger.get('authLevel')).lower()})"
    if spec.trigger_type == "timerTrigger":
        return f"schedule {trigger['schedule']}"
    if spec.trigger_type == "queueTrigger":
        return f"queue {trigger['queueName']}"
    return f"{base_url}/runtime/webhooks/eventgrid?functionName={spec.name}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the host until SIGINT/SIGTERM. Returns the exit code."""
    parser = argparse.ArgumentParser(prog="retrainer host", description=__doc__.splitlines()[0])
    parser.add_argument("--app", default="function_app:app", help="module:attribute of the FunctionApp")
    parser.add_argument("--app-dir", type=Path, default=Path.cwd(), help="folder of the app and local.settings.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)  # the SDKs log every request at INFO
    host = DevHost(args.app, app_dir=args.app_dir)
    try:
        host.start()
    except (AppLoadError, HostSettingsError, ScheduleError, azurite.AzuriteError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    stop = threading.Event()
    previous = {signum: signal.signal(signum, lambda *_: stop.set()) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        log.info("dev host serving at %s; Ctrl+C stops it", host.base_url)
        while not stop.wait(0.5):
            pass
        log.info("stopping: letting in-flight invocations finish")
    finally:
        host.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0
