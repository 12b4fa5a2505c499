"""A pipeline's data contract, checked row by row: the columns' types, ranges and allowed values.

The contract is declared once, in the pipeline definition (pipeline_defs/<name>.py, DATA_CONTRACT), and
travels two ways: the function app checks the rows of a file's bounded prefix before anything is submitted
(retrainer.validation), and the prep step, which on Azure ML has only this folder, gets it as its
`--data-contract` argument and checks the whole file. Pure Python, no pandas: the app imports it too.

A contract maps each column to a rule:
    {"type": "integer" | "number", "min": 0, "max": 30}     numbers, bounds inclusive (either may be absent)
    {"type": "integer", "values": [0, 1]}                    only these values (a label's classes)
    {"type": "text"}                                         any text: the column must only be there
An empty cell is a missing value (prep drops such rows), never a violation.
"""
from __future__ import annotations

import json
import math
from typing import Any, Iterable, Mapping, Sequence

Contract = Mapping[str, Mapping[str, Any]]
TYPES = ("integer", "number", "text")


def parse(text: str) -> Contract:
    """A contract from its JSON text (the prep step's argument); ValueError saying what is wrong."""
    contract = json.loads(text)
    check_contract(contract)
    return contract


def check_contract(contract: Any) -> None:
    """ValueError when the declaration itself is wrong: a definition's mistake, caught before any run."""
    if not isinstance(contract, Mapping) or not contract:
        raise ValueError("a data contract maps column names to rules")
    for column, rule in contract.items():
        if not isinstance(rule, Mapping) or rule.get("type") not in TYPES:
            raise ValueError(f"data contract column {column!r}: 'type' must be one of {', '.join(TYPES)}")
        unknown = set(rule) - {"type", "min", "max", "values"}
        if unknown:
            raise ValueError(f"data contract column {column!r}: unknown keys {', '.join(sorted(unknown))}")


def violation(contract: Contract, header: Sequence[str], rows: Iterable[Sequence[str]],
              first_row_number: int = 2) -> str | None:
    """The first broken rule in `rows` (lists of cells under `header`), as one line naming the column and the
    row (the header is row 1), or None. Columns the contract does not name are not checked."""
    checked = [(index, column, contract[column]) for index, column in enumerate(header) if column in contract]
    for number, row in enumerate(rows, start=first_row_number):
        for index, column, rule in checked:
            cell = row[index].strip() if index < len(row) else ""
            if cell:
                problem = _cell_problem(cell, rule)
                if problem:
                    return f"row {number}, column {column}: {problem}"
    return None


def describe(rule: Mapping[str, Any]) -> str:
    if rule["type"] == "text":
        return "text"
    if "values" in rule:
        return "one of " + ", ".join(_number_text(v) for v in rule["values"])
    bounds = [f">= {_number_text(rule['min'])}" if "min" in rule else "",
              f"<= {_number_text(rule['max'])}" if "max" in rule else ""]
    kind = "a whole number" if rule["type"] == "integer" else "a number"
    return " ".join([kind, " and ".join(b for b in bounds if b)]).strip()


def _cell_problem(cell: str, rule: Mapping[str, Any]) -> str | None:
    if rule["type"] == "text":
        return None
    try:
        value = float(cell)
    except ValueError:
        return f"{cell[:40]!r} is not a number; expected {describe(rule)}"
    if not math.isfinite(value):
        return f"{cell[:40]!r} is not a finite number; expected {describe(rule)}"
    if rule["type"] == "integer" and not value.is_integer():
        return f"{cell[:40]} is not a whole number; expected {describe(rule)}"
    if "values" in rule and value not in rule["values"]:
        return f"{cell[:40]} is not an allowed value; expected {describe(rule)}"
    if ("min" in rule and value < rule["min"]) or ("max" in rule and value > rule["max"]):
        return f"{cell[:40]} is out of range; expected {describe(rule)}"
    return None


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
