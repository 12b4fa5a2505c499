"""azure.yaml's hooks against the templates: the scripts exist, and the postdeploy hook passes events.bicep
exactly its parameters, from values azd has (main.bicep's outputs)."""
from __future__ import annotations

import os
import re

from tests.infra.bicep import REPO, parsed


def test_every_hook_script_exists_and_is_executable():
    runs = re.findall(r"^\s*run:\s*(\S+)", (REPO / "azure.yaml").read_text(), flags=re.M)
    assert runs, "azure.yaml declares no hooks"
    for run in runs:
        assert os.access(REPO / run, os.X_OK), f"{run} is missing or not executable"


def test_the_subscriptions_hook_passes_events_bicep_its_parameters_from_azd_outputs():
    script = (REPO / "infra" / "hooks" / "subscribe.sh").read_text()
    passed = dict(re.findall(r"^\s+(\w+)=\"\$(\w+)\"", script, flags=re.M))
    params = parsed("infra/events.bicep")["parameters"]
    required = {name for name, param in params.items() if "default" not in param}
    assert required <= set(passed) <= set(params), (sorted(passed), sorted(params))
    outputs = set(parsed("infra/main.bicep")["outputs"])
    assert not [env for env in passed.values() if env not in outputs], "the hook reads a value azd does not have"
