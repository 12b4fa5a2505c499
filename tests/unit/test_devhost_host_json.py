"""host.json as the dev host reads it: the file, then the app settings that override it, as the Functions host
applies them (AzureFunctionsJobHost__<path>, matched case-insensitively)."""
import json

from devhost.settings import HostJson


def test_app_settings_override_host_json_values(tmp_path):
    path = tmp_path / "host.json"
    path.write_text(json.dumps({"version": "2.0", "extensions": {"queues": {"visibilityTimeout": "00:00:30",
                                                                              "batchSize": 8}}}))

    plain = HostJson.read(path, {})
    overridden = HostJson.read(path, {"AzureFunctionsJobHost__extensions__queues__visibilityTimeout": "00:00:01",
                                      "AZUREFUNCTIONSJOBHOST__EXTENSIONS__QUEUES__MAXDEQUEUECOUNT": "2",
                                      "AzureFunctionsJobHost__extensions__http__routePrefix": "v1",
                                      "UNRELATED": "x"})

    assert (plain.queues.visibility_timeout, plain.queues.max_dequeue_count) == (30, 5)
    assert (overridden.queues.visibility_timeout, overridden.queues.max_dequeue_count) == (1, 2)
    assert overridden.queues.batch_size == 8 and overridden.route_prefix == "v1"
