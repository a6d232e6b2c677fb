"""Start and stop Azurite's blob service from node_modules, on 127.0.0.1 only."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AZURITE_BLOB = ROOT / "node_modules" / ".bin" / "azurite-blob"
ACCOUNT = "devstoreaccount1"


def well_known_key() -> str:
    """Azurite's published development key, as the storage SDK itself knows it."""
    from azure.storage.blob import BlobServiceClient

    credential = BlobServiceClient.from_connection_string("UseDevelopmentStorage=true").credential
    return str(credential.account_key)


def connection_string(port: int, host: str = "127.0.0.1") -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={well_known_key()};"
        f"BlobEndpoint=http://{host}:{port}/{ACCOUNT};"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(
    port: int, deadline_seconds: float, process: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"process exited with {process.returncode} before port {port} opened"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing answered on 127.0.0.1:{port} within {deadline_seconds} s")


@dataclass
class Azurite:
    """A running Azurite blob service; use as a context manager."""

    port: int
    process: subprocess.Popen[bytes]
    location: Path | None

    @property
    def connection_string(self) -> str:
        return connection_string(self.port)

    @property
    def blob_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def __enter__(self) -> Azurite:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start(
    port: int | None = None,
    location: Path | None = None,
    log: Path | None = None,
    on_spawn: Callable[[subprocess.Popen[bytes]], None] | None = None,
) -> Azurite:
    """Start Azurite's blob service; in memory unless ``location`` is given. ``on_spawn``
    sees the process as soon as it exists, before Azurite answers (to guard it)."""
    if not AZURITE_BLOB.exists():
        raise RuntimeError(f"{AZURITE_BLOB} is missing: run `npm ci` (the Makefile does)")
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not on PATH; Azurite needs Node.js 20 or newer")
    port = port or free_port()
    args = [
        str(AZURITE_BLOB),
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        str(port),
        "--disableTelemetry",
        "--skipApiVersionCheck",
        "--silent",
    ]
    if location is None:
        args.append("--inMemoryPersistence")
    else:
        location.mkdir(parents=True, exist_ok=True)
        args += ["--location", str(location)]
    if log is not None:
        args += ["--debug", str(log)]
    # A file, not a pipe: nobody reads Azurite's stderr while it runs, and a full pipe
    # would block it.
    errors = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process
    process = subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=errors, env=os.environ.copy()
    )
    if on_spawn is not None:
        on_spawn(process)
    try:
        wait_for_port(port, 30, process)
    except Exception:
        process.kill()
        errors.seek(0)
        raise RuntimeError(f"Azurite did not start: {errors.read()[-2000:]!r}") from None
    return Azurite(port, process, location)
