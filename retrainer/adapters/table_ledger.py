"""The ledger (ports.Ledger) in Azure Table Storage through azure-data-tables; Azurite locally.

Layout: every row lives in one partition, so a claim can be one entity-group transaction.
- A key row per idempotency key. RowKey = "key-" + sha256(key) in hex: keys carry '/', '\\', '#', '?' and
  non-ASCII, which a RowKey cannot, and can be longer than a RowKey may be. The raw key is the `key`
  property. Lineage fields are properties of their own (so `run_id` can be filtered on); lists and dicts
  are JSON text, and `json_fields` names them so they read back as what was written.
- A "newest first" index row per key, written in the same transaction as the claim. Table Storage returns
  rows in RowKey order and has no ORDER BY, so its RowKey is "new-" + (a large number - the creation
  time in microseconds): `recent(n)` reads the first n index rows, then those n key rows.

Every service call goes through `Retry`; the SDK's own retries are off. A claim and every update carry a
random token (`claim_token`, `write_token`), so that a retried write whose first attempt did land (the
response was lost, the retry met the row's new ETag) is recognised as the caller's own and reported done.
"""
from __future__ import annotations

import hashlib
import json
import re
import uuid
from datetime import date, datetime, timedelta, timezone
from itertools import islice
from typing import Any, Mapping

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import EdmType, EntityProperty, TableClient, TableTransactionError, UpdateMode

from retrainer.ports import Claim, ConcurrencyError, LedgerEntry, State
from retrainer.retry import Retry, retry as default_retry

PARTITION = "ledger"
KEY_PREFIX, INDEX_PREFIX = "key-", "new-"
_NEWEST = 10 ** 17  # microseconds, past year 5000: (_NEWEST - created) stays positive and fixed-width
_MICROSECOND = timedelta(microseconds=1)
# Table Storage: a string property holds at most 64 KiB in UTF-16 (32K code units), an entity at most 1 MiB
# (https://learn.microsoft.com/rest/api/storageservices/understanding-the-table-service-data-model). A longer
# value fails every write with 400, so long lineage (an Azure ML error message) is stored truncated, marked so.
_MAX_STRING_UNITS = 32 * 1024
_MAX_ENTITY_BYTES = 1024 * 1024 - 16 * 1024    # leaves room for the service's own per-entity overhead

# Properties the ledger itself uses; a lineage field may not take these names.
_OWN = frozenset({"PartitionKey", "RowKey", "Timestamp", "key", "kind", "state", "created", "updated",
                  "claim_token", "write_token", "json_fields"})
_PROPERTY_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
_TABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]{2,62}")


class TableLedger:
    """`connection` is a connection string, or (table service URI, credential) for an identity-based
    connection, e.g. ("https://acct.table.core.windows.net", DefaultAzureCredential())."""

    def __init__(self, connection: str | tuple[str, Any], table_name: str, *,
                 retry: Retry = default_retry) -> None:
        if not _TABLE_NAME.fullmatch(table_name):
            raise ValueError(f"ledger table name {table_name!r} is not valid: use 3-63 letters and digits, "
                             "starting with a letter (RETRAINER_LEDGER_TABLE)")
        if isinstance(connection, str):
            self._table = TableClient.from_connection_string(connection, table_name=table_name, retry_total=0)
        else:
            endpoint, credential = connection
            self._table = TableClient(endpoint, table_name, credential=credential, retry_total=0)
        self._retry = retry
        self._table_ready = False

    # ---------------------------------------------------------------- ports.Ledger

    def claim(self, key: str, kind: str, fields: Mapping[str, Any]) -> Claim:
        self._ensure_table()
        now = _now()
        token = uuid.uuid4().hex
        row = _encode(key, kind, State.CLAIMED, now, now, fields) | {"claim_token": token}
        index = {"PartitionKey": PARTITION, "RowKey": _index_row_key(key, now), "key_row": row["RowKey"]}
        try:
            results = self._retry(self._table.submit_transaction, [("create", row), ("create", index)])
        except TableTransactionError as error:
            if error.error_code != "EntityAlreadyExists":
                raise
            existing = self._read(_row_key(key))
            if existing is None:  # rows are never deleted, so the conflicting row is there
                raise RuntimeError(f"ledger row for {key!r} conflicted on insert but cannot be read") from error
            won = existing.get("claim_token") == token  # our first attempt landed, its answer was lost
            return Claim(won=won, entry=_decode(existing, existing.metadata["etag"]))
        return Claim(won=True, entry=_decode(row, results[0]["etag"]))

    def get(self, key: str) -> LedgerEntry | None:
        self._ensure_table()
        row = self._read(_row_key(key))
        return None if row is None else _decode(row, row.metadata["etag"])

    def update(self, entry: LedgerEntry, state: str, fields: Mapping[str, Any]) -> LedgerEntry:
        """Replace the row with the merged fields (a None value removes a field), if its ETag still matches."""
        if entry.etag is None:
            raise ValueError(f"ledger entry {entry.key!r} has no etag: update an entry read from the ledger")
        self._ensure_table()
        token = uuid.uuid4().hex
        row = _encode(entry.key, entry.kind, state, entry.created, _now(), {**entry.fields, **fields}) | {
            "write_token": token}
        try:
            result = self._retry(self._table.update_entity, row, mode=UpdateMode.REPLACE, etag=entry.etag,
                                 match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceNotFoundError) as error:
            stored = self._read(row["RowKey"])
            if stored is not None and stored.get("write_token") == token:   # ours landed; its answer was lost
                return _decode(stored, stored.metadata["etag"])
            raise ConcurrencyError(f"ledger row {entry.key!r} changed since it was read") from error
        return _decode(row, result["etag"])

    def find_by_run(self, run_id: str) -> LedgerEntry | None:
        """The first row (by creation) that carries `run_id`: the one whose submission started the run."""
        rows = self._query("run_id eq @run_id", run_id=run_id)
        entries = [_decode(row, row.metadata["etag"]) for row in rows]
        return min(entries, key=lambda e: e.created, default=None)

    def list_in_state(self, state: str, updated_before: datetime) -> list[LedgerEntry]:
        rows = self._query("state eq @state and updated lt @before", state=state,
                           before=_utc(updated_before, "updated_before"))
        return [_decode(row, row.metadata["etag"]) for row in rows]

    def list_unnotified(self, updated_before: datetime) -> list[LedgerEntry]:
        rows = self._query("notified eq @pending and updated lt @before", pending=False,
                           before=_utc(updated_before, "updated_before"))
        return [_decode(row, row.metadata["etag"]) for row in rows]

    def recent(self, limit: int) -> list[LedgerEntry]:
        if limit <= 0:
            return []
        self._ensure_table()
        page = "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi"
        index_rows = self._retry(lambda: list(islice(self._table.query_entities(
            page, parameters=_prefix_range(INDEX_PREFIX), results_per_page=limit), limit)))
        entries = []
        for index in index_rows:
            row = self._read(index["key_row"])
            if row is not None:
                entries.append(_decode(row, row.metadata["etag"]))
        return entries

    # ---------------------------------------------------------------- helpers

    def _ensure_table(self) -> None:
        if self._table_ready:
            return
        try:
            self._retry(self._table.create_table)
        except ResourceExistsError:
            pass
        self._table_ready = True

    def _read(self, row_key: str):
        try:
            return self._retry(self._table.get_entity, PARTITION, row_key)
        except ResourceNotFoundError:
            return None

    def _query(self, condition: str, **parameters: Any) -> list:
        """Key rows matching `condition` (parameters as @name, each a word of its own)."""
        self._ensure_table()
        query = f"PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi and {condition}"
        parameters |= _prefix_range(KEY_PREFIX)
        return self._retry(lambda: list(self._table.query_entities(query, parameters=parameters)))


def _row_key(key: str) -> str:
    return KEY_PREFIX + hashlib.sha256(key.encode("utf-8")).hexdigest()


def _index_row_key(key: str, created: datetime) -> str:
    micros = (created - datetime(1970, 1, 1, tzinfo=timezone.utc)) // _MICROSECOND
    return f"{INDEX_PREFIX}{_NEWEST - micros:017d}-{_row_key(key)}"


def _prefix_range(prefix: str) -> dict[str, str]:
    # Every RowKey starting with `prefix` sorts in [prefix, prefix with its last character bumped).
    return {"pk": PARTITION, "lo": prefix, "hi": prefix[:-1] + chr(ord(prefix[-1]) + 1)}


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{name} must be a timezone-aware datetime (got naive {value.isoformat()})")
    return value.astimezone(timezone.utc)


def _encode(key: str, kind: str, state: str, created: datetime, updated: datetime,
            fields: Mapping[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"PartitionKey": PARTITION, "RowKey": _row_key(key), "key": key, "kind": kind,
                           "state": state, "created": _utc(created, "created"), "updated": _utc(updated, "updated")}
    as_json = []
    for name, value in fields.items():
        if name in _OWN or not _PROPERTY_NAME.fullmatch(name):
            raise ValueError(f"ledger field name {name!r} is not allowed: use letters, digits and '_', "
                             f"and none of {', '.join(sorted(_OWN))}")
        if value is None:
            continue
        if isinstance(value, (str, bool, float)):
            row[name] = value
        elif isinstance(value, int):
            row[name] = value if -2 ** 31 <= value < 2 ** 31 else EntityProperty(value, EdmType.INT64)
        elif isinstance(value, datetime):
            row[name] = _utc(value, f"ledger field {name!r}")
        else:
            row[name] = json.dumps(value, default=_json_default, ensure_ascii=False, sort_keys=True)
            as_json.append(name)
    _fit_table_limits(row, as_json)
    if as_json:
        row["json_fields"] = ",".join(as_json)
    return row


def _fit_table_limits(row: dict[str, Any], as_json: list[str]) -> None:
    """Truncate lineage strings, marked, so the entity fits: each string within a property's 64 KiB, then the
    longest halved until the whole is within 1 MiB. A truncated JSON field reads back as its text."""
    def shorten(name: str, units: int) -> None:
        row[name] = _truncated(row[name], units)
        if name in as_json:
            as_json.remove(name)

    for name, value in list(row.items()):
        if name not in _OWN and isinstance(value, str) and _utf16_units(value) > _MAX_STRING_UNITS:
            shorten(name, _MAX_STRING_UNITS)
    while _entity_bytes(row) > _MAX_ENTITY_BYTES:
        longest = max((name for name, value in row.items() if name not in _OWN and isinstance(value, str)),
                      key=lambda name: _utf16_units(row[name]))
        shorten(longest, _utf16_units(row[longest]) // 2)


def _truncated(value: str, units: int) -> str:
    """`value` cut to at most `units` UTF-16 code units, the marker included; a surrogate pair is never split."""
    marker = f"\n[truncated by retrainer: {len(value)} characters in all]"
    kept = value.encode("utf-16-le")[:2 * (units - _utf16_units(marker))].decode("utf-16-le", errors="ignore")
    return kept + marker


def _utf16_units(value: str) -> int:
    return len(value.encode("utf-16-le")) // 2


def _entity_bytes(row: Mapping[str, Any]) -> int:
    """An upper bound of the stored entity's size: per property 8 bytes and its name in UTF-16, a string
    value in UTF-16 plus 4, any other value 8."""
    return sum(8 + 2 * len(name) + (4 + 2 * _utf16_units(value) if isinstance(value, str) else 8)
               for name, value in row.items())


def _decode(row: Mapping[str, Any], etag: str) -> LedgerEntry:
    as_json = set(filter(None, row.get("json_fields", "").split(",")))
    fields = {}
    for name, value in row.items():
        if name in _OWN:
            continue
        if isinstance(value, EntityProperty):  # Int64
            value = value.value
        elif isinstance(value, datetime):
            value = _plain(value)
        elif name in as_json:
            value = json.loads(value)
        fields[name] = value
    return LedgerEntry(key=row["key"], kind=row["kind"], state=row["state"], created=_plain(row["created"]),
                       updated=_plain(row["updated"]), fields=fields, etag=etag)


def _plain(value: datetime) -> datetime:
    """A plain UTC datetime (the SDK reads back a datetime subclass of its own)."""
    utc = value.astimezone(timezone.utc)
    return datetime.combine(utc.date(), utc.time(), tzinfo=timezone.utc)


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"a ledger field holds a {type(value).__name__}, which is not JSON serializable")
