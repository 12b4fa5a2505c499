"""`devhost.host.main` as a user runs it: SIGTERM lets an in-flight invocation finish, then the host
and the Azurite it started stop; a user mistake is one line on stderr and exit code 2."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx

from devhost.host import main
from tests.fixtures.devhost_app.harness import TARGET, EnvironmentSnapshot, app_folder, invocations
from tests.support.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
RUN_MAIN = "import sys; from devhost.host import main; sys.exit(main(sys.argv[1:]))"


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_sigterm_lets_the_in_flight_invocation_finish_then_stops_host_and_azurite(tmp_path):
    folder = app_folder(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("AzureWebJobsStorage", "FIXTURE_DATA_STORAGE")}
    env.update(DEVHOST_AUTH="off", DEVHOST_PORT="0", DEVHOST_STATE_DIR=str(tmp_path / "state"), PYTHONPATH=str(REPO))
    log = tmp_path / "host.log"
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-c", RUN_MAIN, "--app", TARGET, "--app-dir", str(folder)],
                                   stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    try:
        url = wait_for(lambda: re.search(r"serving at (http://\S+);", log.read_text()), "the host to serve").group(1)
        blob_port = int(re.search(r"started Azurite \(blob (\d+)", log.read_text()).group(1))
        answer: list[httpx.Response] = []
        request = threading.Thread(target=lambda: answer.append(httpx.get(f"{url}/api/slow?seconds=1.5",
                                                                          timeout=30)))
        request.start()
        wait_for(lambda: invocations(folder, "slow"), "the slow invocation to start")
        process.send_signal(signal.SIGTERM)
        request.join(30)
        assert answer and answer[0].status_code == 200 and answer[0].text == "done"
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    text = log.read_text()
    assert "function=slow trigger=httpTrigger" in text and "outcome=succeeded" in text
    assert not listening(blob_port)


def test_a_missing_key_is_a_one_line_error(tmp_path, capsys):
    folder = app_folder(tmp_path)
    with EnvironmentSnapshot():
        for name in ("DEVHOST_AUTH", "DEVHOST_MASTER_KEY", "DEVHOST_EVENTGRID_KEY"):
            os.environ.pop(name, None)
        assert main(["--app", TARGET, "--app-dir", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err == "error: DEVHOST_MASTER_KEY is required (or set DEVHOST_AUTH=off for local use)\n"


def test_an_app_target_that_does_not_import_is_a_one_line_error(azurite, tmp_path, capsys):
    folder = app_folder(tmp_path)
    with EnvironmentSnapshot():
        os.environ.update(DEVHOST_AUTH="off", DEVHOST_PORT="0", AzureWebJobsStorage=azurite.connection_string)
        assert main(["--app", "no_such_module:app", "--app-dir", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot import 'no_such_module'") and err.count("\n") == 1
