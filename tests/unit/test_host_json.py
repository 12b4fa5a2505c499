"""host.json's logging: every category filter names logs the Functions host emits."""
from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LEVELS = ["Trace", "Debug", "Information", "Warning", "Error", "Critical", "None"]
# The v2+ host's log categories (https://learn.microsoft.com/azure/azure-functions/configure-monitoring
# #configure-categories): a Python function's own logs arrive as Function.<name>.User.
HOST_CATEGORY_ROOTS = ("Function", "Host", "Microsoft", "Worker")


def log_levels() -> dict[str, str]:
    return json.loads((ROOT / "host.json").read_text())["logging"]["logLevel"]


def level_of(category: str) -> str:
    """The host's rule: the longest configured category the log's category starts with, else default."""
    levels = log_levels()
    matches = [c for c in levels if c != "default" and (category == c or category.startswith(c + "."))]
    return levels[max(matches, key=len)] if matches else levels["default"]


def test_every_log_category_in_host_json_is_one_the_host_emits():
    """Issue 7 item 11: a "retrainer" category matched nothing; Python logs are Function.<name>.User."""
    for category in log_levels():
        assert category == "default" or category.split(".")[0] in HOST_CATEGORY_ROOTS, category


def test_the_functions_own_logs_and_their_results_are_kept_at_information():
    assert LEVELS.index(level_of("Function.blob_ingest.User")) <= LEVELS.index("Information")
    assert LEVELS.index(level_of("Host.Results")) <= LEVELS.index("Information")
