"""Data-file checks from the name, the size and a bounded prefix of the bytes: never the whole blob.

Each check returns None (fine) or a `Rejection` whose message is one line: what is wrong, what to do.
The pipeline's data contract (pipeline_defs/<name>.py DATA_CONTRACT) names the required columns and is
applied to every whole row of the prefix, with the checker the prep step applies to the whole file.
"""
from __future__ import annotations

import codecs
import csv
import io
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Mapping

from step_scripts import data_contract

PREFIX_BYTES = 64 * 1024        # how much of a file is read to validate it
MAX_NAME_CHARS = 1024           # Azure Blob Storage's limit on a blob name
MAX_SEGMENT_CHARS = 255         # common file-system limit on one path segment
_OTHER_DELIMITERS = (";", "\t", "|")
_DRIVE = re.compile(r"^[A-Za-z]:")


class Reason:
    BAD_NAME = "bad_name"
    EMPTY = "empty"
    TOO_LARGE = "too_large"
    NOT_UTF8 = "not_utf8"
    NOT_CSV = "not_csv"
    MISSING_COLUMNS = "missing_columns"
    BREAKS_CONTRACT = "breaks_contract"


@dataclass(frozen=True)
class Rejection:
    reason_code: str            # a Reason value
    message: str                # one line: what is wrong and what to do


def check_name(name: str) -> Rejection | None:
    """Refuse names that could climb out of a folder or confuse a path: the name later becomes a path."""
    def bad(what: str) -> Rejection:
        shown = name if len(name) <= 80 else name[:77] + "..."
        return Rejection(Reason.BAD_NAME, f"data file name {shown!r} {what}; rename it to a plain relative "
                                          "path such as 'folder/data.csv' and upload it again")

    if not name:
        return bad("is empty")
    if len(name) > MAX_NAME_CHARS:
        return bad(f"is longer than {MAX_NAME_CHARS} characters")
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        return bad("contains control characters")
    if "\\" in name:
        return bad("contains a backslash")
    if name.startswith("/") or _DRIVE.match(name):
        return bad("is an absolute path")
    segments = name.split("/")
    if any(s in (".", "..") for s in segments):
        return bad("contains a '.' or '..' segment")
    if any(s == "" for s in segments):
        return bad("contains an empty path segment ('//' or a trailing '/')")
    if any(len(s) > MAX_SEGMENT_CHARS for s in segments):
        return bad(f"has a path segment longer than {MAX_SEGMENT_CHARS} characters")
    return None


def check_data_file(name: str, size: int, prefix: bytes, *, max_bytes: int,
                    contract: Mapping[str, Mapping[str, Any]]) -> Rejection | None:
    """Validate a data file from its name, its size and its first bytes (`prefix`, at most PREFIX_BYTES
    is enough; `size` tells whether the prefix is the whole file) against the pipeline's data contract."""
    rejection = check_name(name)
    if rejection:
        return rejection
    if size > max_bytes:
        return Rejection(Reason.TOO_LARGE, f"{name} is {size} bytes, over the {max_bytes}-byte limit "
                                           "(RETRAINER_MAX_FILE_BYTES); split it into smaller files")
    if size == 0 or not prefix.strip():
        return Rejection(Reason.EMPTY, f"{name} is empty; upload a CSV file with a header row and data rows")
    whole = len(prefix) >= size
    text = _decode(prefix, whole)
    if text is None:
        return Rejection(Reason.NOT_UTF8, f"{name} is not UTF-8 text; export it as CSV with UTF-8 encoding")
    return _check_csv(name, text, whole, contract)


def _decode(prefix: bytes, whole: bool) -> str | None:
    """UTF-8 text of the prefix (BOM dropped), tolerating a character cut at the prefix's end."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    try:
        text = decoder.decode(prefix, final=whole)
    except UnicodeDecodeError:
        return None
    # NUL is valid UTF-8 but never appears in a text file
    return None if "\x00" in text else text


def _check_csv(name: str, text: str, whole: bool, contract: Mapping[str, Mapping[str, Any]]) -> Rejection | None:
    first = text.lstrip()[:1]
    if first in ("{", "[", "<"):
        kind = "XML or HTML" if first == "<" else "JSON"
        return Rejection(Reason.NOT_CSV, f"{name} looks like {kind}, not CSV; export the data as "
                                         "comma-separated values with a header row")
    if not whole:
        cut = max(text.rfind("\n"), text.rfind("\r"))
        if cut < 0:
            return Rejection(Reason.NOT_CSV, f"{name} has no line break in its first {PREFIX_BYTES} bytes; "
                                             "upload a CSV file with one record per line")
        text = text[:cut + 1]   # drop the record cut at the prefix end
    rows: list[list[str]] = []
    try:
        for row in csv.reader(io.StringIO(text, newline=""), strict=True):
            if row:
                rows.append(row)
    except csv.Error as exc:
        return Rejection(Reason.NOT_CSV, f"{name} is not valid CSV ({exc}); save it as comma-separated values")
    header = [cell.strip() for cell in rows[0]] if rows else []
    if len(header) < 2:
        first_line = text.splitlines()[0] if text.strip() else ""
        for delimiter in _OTHER_DELIMITERS:
            if delimiter in first_line:
                return Rejection(Reason.NOT_CSV, f"{name} separates fields with {delimiter!r}; "
                                                 "save it as comma-separated values")
        return Rejection(Reason.NOT_CSV, f"{name} is not CSV (its first line has no comma-separated header); "
                                         "upload a comma-separated file with a header row")
    if any(not cell for cell in header):
        return Rejection(Reason.NOT_CSV, f"{name} has an empty column name in its header; "
                                         "name every column in the first row")
    required = tuple(contract)
    missing = [c for c in required if c not in header]
    if missing:
        if len(missing) == len(required):
            message = f"{name} has none of the required columns ({', '.join(required)}): is it the right file?"
        else:
            message = f"{name} lacks required columns {', '.join(missing)}; add them to its header row"
        return Rejection(Reason.MISSING_COLUMNS, message)
    if len(rows) < 2 and whole:     # a larger file may just have a first record longer than the prefix
        return Rejection(Reason.EMPTY, f"{name} has a header but no data rows; upload the file with its data")
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            return Rejection(Reason.NOT_CSV, f"{name} record {number} has {len(row)} fields but the header has "
                                             f"{len(header)}; give every record the same columns as the header")
    broken = data_contract.violation(contract, header, rows[1:])
    if broken:
        return Rejection(Reason.BREAKS_CONTRACT, f"{name} {broken}; fix the data or check it is the right file")
    return None
