"""infra/ offline: every Bicep file parses, and checkov finds no failed check that is not suppressed in place with
its reason (`// checkov:skip=ID: why` inside the resource)."""
from __future__ import annotations

import json
import subprocess

import pytest

from tests.infra.bicep import INFRA, REPO, bicep_files, parsed, tools_bin


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: str(p.relative_to(INFRA)))
def test_bicep_file_parses(path):
    template = parsed(str(path.relative_to(REPO)))
    assert template.get("resources") or template.get("modules"), f"{path.name} declares nothing"


def test_modules_point_at_files_that_exist():
    for path in bicep_files():
        for name, module in (parsed(str(path.relative_to(REPO))).get("modules") or {}).items():
            target = module["detail"]["path"]
            assert (path.parent / target).is_file(), f"{path.name}: module {name} points at missing {target}"


def test_checkov_finds_no_unexplained_failure():
    result = subprocess.run([str(tools_bin() / "checkov"), "--directory", str(INFRA), "--framework", "bicep",
                             "--output", "json", "--compact"],
                            cwd=REPO, capture_output=True, text=True)
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed = [f"{check['check_id']} {check['resource']} ({check['file_path']}): {check['check_name']}"
              for report in reports for check in report["results"]["failed_checks"]]
    assert not failed, "checkov failures (fix, or suppress in place with the reason):\n" + "\n".join(failed)
    skipped = [check for report in reports for check in report["results"]["skipped_checks"]]
    unexplained = [f"{check['check_id']} {check['resource']}" for check in skipped
                   if len((check.get("check_result") or {}).get("suppress_comment") or "") < 20]
    assert not unexplained, f"suppressed without a reason: {unexplained}"
    assert sum(report["summary"]["passed"] for report in reports) > 0, "checkov checked nothing"
    assert all(report["summary"]["parsing_errors"] == 0 for report in reports)


def test_azd_parameters_file_matches_main_bicep():
    given = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    params = parsed("infra/main.bicep")["parameters"]
    required = {name for name, param in params.items() if "default" not in param}
    assert set(given) <= set(params), f"not parameters of main.bicep: {sorted(set(given) - set(params))}"
    assert required <= set(given), f"azd would prompt for: {sorted(required - set(given))}"
