"""`python -m retrainer check-azureml`: the one-off check against a live workspace, its output and exit codes
(the adapter's live_check autospec'd: no workspace here; the checks themselves are in test_azureml_v1)."""
from __future__ import annotations

from unittest.mock import create_autospec

from retrainer import cli
from retrainer.adapters.azureml_v1 import AzureMLBackend, LiveCheckFailed


def live_check(monkeypatch, *outcomes):
    """live_check yielding each string of `outcomes` and raising the exception among them."""
    def checks(self, data_path=None):
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
            yield outcome

    check = create_autospec(AzureMLBackend.live_check, side_effect=checks)
    monkeypatch.setattr(AzureMLBackend, "live_check", check)
    return check


def test_each_passed_check_is_a_line_and_exit_0(azure_env, monkeypatch, capsys):
    check = live_check(monkeypatch, "signed in to workspace ws", "anchor run retrainer_x: absent before")

    assert cli.main(["check-azureml", "--submit", "diabetes.csv"]) == 0

    assert check.call_args.args[1:] == ("diabetes.csv",)
    assert capsys.readouterr().out == "ok: signed in to workspace ws\nok: anchor run retrainer_x: absent before\n"


def test_a_failed_check_is_one_line_and_exit_1(azure_env, monkeypatch, capsys):
    live_check(monkeypatch, "signed in to workspace ws", LiveCheckFailed("anchor run r: created again as s\nmore"))

    assert cli.main(["check-azureml"]) == 1

    captured = capsys.readouterr()
    assert captured.out == "ok: signed in to workspace ws\n"
    assert captured.err == "FAILED: LiveCheckFailed: anchor run r: created again as s\n"


def test_the_check_needs_the_azure_ml_backend(monkeypatch, capsys):
    monkeypatch.setenv("RETRAINER_BACKEND", "local")

    assert cli.main(["check-azureml"]) == 2
    assert capsys.readouterr().err == ("error: check-azureml needs RETRAINER_BACKEND=azureml (or azureml_v2) and "
                                       "the RETRAINER_AML_* settings\n")
