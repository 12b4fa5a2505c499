"""Start Azurite (the npm package pinned in package.json) on free loopback ports, and stop it.

Used by the dev host when no storage connection is configured, and by the test session.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from devhost.polling import poll

REPO = Path(__file__).resolve().parent.parent
ACCOUNT = "devstoreaccount1"
# Azurite's documented, public development key (not a secret).
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class AzuriteError(RuntimeError):
    pass


@dataclass
class Azurite:
    blob_port: int
    queue_port: int
    table_port: int
    process: subprocess.Popen
    workdir: Path

    @property
    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
                f"BlobEndpoint=http://127.0.0.1:{self.blob_port}/{ACCOUNT};"
                f"QueueEndpoint=http://127.0.0.1:{self.queue_port}/{ACCOUNT};"
                f"TableEndpoint=http://127.0.0.1:{self.table_port}/{ACCOUNT};")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def free_port() -> int:
    """A loopback port free right now (the caller binds it soon after)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _executable() -> str:
    local = REPO / "node_modules" / ".bin" / "azurite"
    if local.exists():
        return str(local)
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise AzuriteError("Node.js is not installed: install Node.js 20 or newer (with npm), then run `make install`")
    raise AzuriteError("Azurite is not installed: run `npm install` (or `make install`) in the repository")


def start(data_dir: Path | None = None, timeout: float = 30.0) -> Azurite:
    """Start blob, queue and table services; in memory unless `data_dir` is given."""
    exe = _executable()
    workdir = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="azurite-"))
    workdir.mkdir(parents=True, exist_ok=True)
    ports = [free_port() for _ in range(3)]
    args = [exe, "--silent", "--skipApiVersionCheck", "--disableProductStyleUrl",
            "--blobHost", "127.0.0.1", "--blobPort", str(ports[0]),
            "--queueHost", "127.0.0.1", "--queuePort", str(ports[1]),
            "--tableHost", "127.0.0.1", "--tablePort", str(ports[2])]
    args += ["--location", str(workdir)] if data_dir else ["--inMemoryPersistence"]
    log = open(workdir / "azurite.log", "ab")
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               cwd=workdir, env={**os.environ, "AZURITE_ACCEPT_EULA": "true"})
    azurite = Azurite(*ports, process=process, workdir=workdir)

    def listening() -> bool:
        if process.poll() is not None:
            raise AzuriteError(f"Azurite exited with code {process.returncode}; see {workdir / 'azurite.log'}")
        return all(_listening(p) for p in ports)

    if poll(listening, timeout, interval=0.1):
        return azurite
    azurite.stop()
    raise AzuriteError(f"Azurite did not start within {timeout:.0f}s; see {workdir / 'azurite.log'}")


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0
