"""How the dev host turns a queue output binding's value into messages (the Functions host's rules), and reads
host.json extensions.queues (the queue extension's defaults and limits)."""
from datetime import datetime, timezone

import azure.functions as func
import pytest
from azure.storage.queue import QueueMessage

from devhost.app_loader import FunctionSpec
from devhost.queues import output_messages, poison_queue_name, trigger_argument
from devhost.settings import HostSettingsError, QueuesOptions, timespan_seconds


@pytest.mark.parametrize("value, messages", [
    ("plain text", [b"plain text"]),
    (b"\x00\xff", [b"\x00\xff"]),
    (["a", "b"], [b"a", b"b"]),                                   # a list: one message each
    ('["x", 2, 1.0, true]', [b"x", b"2", b"1", b"True"]),          # a JSON array string too, .NET's text
    ('{"k": [1]}', [b'{\n  "k": [\n    1\n  ]\n}']),               # a JSON object string: re-indented
    ("[not json", [b"[not json"]),
])
def test_output_values_become_the_messages_the_host_adds(value, messages):
    assert output_messages(value) == messages


def test_a_queue_message_object_is_added_as_its_id_and_body_json():
    (message,) = output_messages(func.QueueMessage(id="m1", body="hi"))
    assert message == b'{\n  "id": "m1",\n  "body": "hi"\n}'


def test_an_unsupported_output_value_fails_the_invocation():
    with pytest.raises(NotImplementedError):
        output_messages(42)


def test_queue_options_defaults_are_the_extensions():
    options = QueuesOptions()
    assert (options.batch_size, options.max_dequeue_count, options.visibility_timeout, options.max_polling_interval,
            options.message_encoding) == (16, 5, 0.0, 60.0, "base64")


def test_queue_options_from_host_json_keys_in_any_case():
    options = QueuesOptions.from_host_json({"BatchSize": 4, "newBatchThreshold": 2, "maxPollingInterval": "00:00:02",
                                            "visibilityTimeout": "00:01:30", "maxDequeueCount": 3,
                                            "messageEncoding": "None"})
    assert (options.batch_size, options.threshold, options.max_polling_interval, options.visibility_timeout,
            options.max_dequeue_count, options.message_encoding) == (4, 2, 2.0, 90.0, 3, "none")


@pytest.mark.parametrize("section", [{"batchSize": 33}, {"batchSize": 0}, {"maxDequeueCount": 0},
                                     {"maxPollingInterval": "00:00:00.05"}, {"messageEncoding": "utf8"},
                                     {"visibilityTimeout": "soon"}])
def test_invalid_queue_options_name_the_setting(section):
    with pytest.raises(HostSettingsError, match="extensions.queues"):
        QueuesOptions.from_host_json(section)


@pytest.mark.parametrize("text, seconds", [("00:00:30", 30), ("01:00", 3600), ("1.02:00:00", 93600),
                                           ("00:00:00.5", 0.5), ("2", 172800)])
def test_timespans_read_as_dotnet_does(text, seconds):
    assert timespan_seconds(text) == seconds


def test_poison_queue_names():
    assert poison_queue_name("retrainer-blob-events") == "retrainer-blob-events-poison"
    assert poison_queue_name("work-poison") is None                  # a poison queue has none
    assert poison_queue_name("q" * 60) is None                       # the name would be too long


def _spec(annotation):
    def work(msg: annotation) -> None: ...
    return FunctionSpec("work", {"type": "queueTrigger", "name": "msg", "queueName": "q"}, work)


def test_the_function_gets_a_queue_message_or_the_body_as_its_parameter_asks():
    stored = QueueMessage(content="aGk=")
    stored.id, stored.pop_receipt, stored.dequeue_count = "id-1", "receipt", 3
    stored.inserted_on = datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)
    stored.expires_on = datetime(2026, 12, 7, 9, 0, tzinfo=timezone.utc)
    message = trigger_argument(_spec(func.QueueMessage), stored, b"hi")
    assert (message.id, message.get_body(), message.dequeue_count, message.pop_receipt) == ("id-1", b"hi", 3, "receipt")
    assert message.insertion_time == stored.inserted_on and message.expiration_time == stored.expires_on
    assert trigger_argument(_spec(str), stored, b"hi") == "hi"
    assert trigger_argument(_spec(bytes), stored, b"hi") == b"hi"
