"""A local stand-in for the Azure Functions host (tooling, not deployed).

`DevHost("function_app:app").start()` (or `python -m retrainer host`) indexes the FunctionApp once and serves:
- queue triggers: Azurite queues polled as host.json extensions.queues says (visibility timeout, dequeue count,
  `<queue>-poison`); queue output bindings (func.Out) write base64 messages;
- timer triggers: NCRONTAB in UTC, status blobs azure-webjobs-hosts/timers/<hostId>/<functionId>/status;
- Event Grid triggers: POST /runtime/webhooks/eventgrid?functionName=NAME (the bare name, exactly; header
  aeg-event-type), every event passed on; the blobs extension's /runtime/webhooks/blobs answers 202 and drops
  (no blob triggers are served: BlobCreated go to an Event Grid trigger);
- HTTP triggers: /api/<route>; POST /admin/functions/<name> with body {"input": "..."} runs any other function;
- a storage scan standing in for the Event Grid subscription on the data account: new blob versions of the
  watched containers become BlobCreated events (PutBlob, PutBlockList, CopyBlob; CreateFile + FlushWithClose with
  DEVHOST_HNS=on) posted to the Event Grid trigger DEVHOST_SUBSCRIPTION_FUNCTION, retried as Event Grid retries;
- a notification sink: POST/GET /sink/events (JSON lines in DEVHOST_STATE_DIR/sink-events.jsonl).
Keys (`code` query parameter or x-functions-key header): DEVHOST_MASTER_KEY (any level), DEVHOST_FUNCTION_KEY,
DEVHOST_EVENTGRID_KEY (the webhooks); DEVHOST_AUTH=off accepts requests without keys. With no
AzureWebJobsStorage (or UseDevelopmentStorage=true) it starts Azurite and points those settings at it.
"""
