"""A real `idstitch serve` process on a loopback port and a data directory in tmp_path.

The in-process fixtures of tests/conftest.py cannot be killed halfway through a commit; this one
can. `ServerProcess.kill()` sends SIGKILL to the one process it started (by its pid), and
`start()` brings a new one up on the same data directory.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

INGEST_TOKEN = "phc_integration_token"
SECRET_KEY = "sk_integration_secret"

START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0


def idstitch_command() -> list[str]:
    """The `idstitch` script beside this interpreter, so any clone's .venv runs its own code."""
    script = Path(sys.executable).parent / "idstitch"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "idstitch.cli"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServerProcess:
    """One server at a time on `data_dir`; `base_url` changes with each start (a new free port)."""

    data_dir: Path
    log_dir: Path
    # A PostgreSQL URL to serve instead of the SQLite file in data_dir.
    database_url: str | None = None
    ingest_token: str = INGEST_TOKEN
    secret_key: str = SECRET_KEY
    # Rate limits off: these tests send and read faster than a client should; ratelimit.py has its own tests.
    env: dict[str, str] = field(
        default_factory=lambda: {"IDSTITCH_INGEST_RATE_LIMIT": "0", "IDSTITCH_API_RATE_LIMIT": "0"}
    )
    # The soft limit on open files the server starts with (None: this process's).
    open_files: int | None = None
    port: int = 0
    starts: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database(self) -> Path:
        return self.data_dir / "idstitch.db"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None, f"server pid {self.pid} is still running"
        self.port = free_port()
        self.starts += 1
        log = self.log_dir / f"server-{self.port}-{self.starts}.log"
        env = {
            **os.environ,
            **self.env,
            "IDSTITCH_INGEST_TOKEN": self.ingest_token,
            "IDSTITCH_SECRET_KEY": self.secret_key,
        }
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [*idstitch_command(), "serve", "--host", "127.0.0.1", "--port", str(self.port),
                 "--data-dir", str(self.data_dir),
                 *(["--database", self.database_url] if self.database_url else [])],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                preexec_fn=None if self.open_files is None else self._limit_open_files,
            )
        self._wait_healthy(log)

    def _limit_open_files(self) -> None:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.open_files, hard))

    def _wait_healthy(self, log: Path) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"idstitch serve exited with {self.process.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(f"{self.base_url}/_health", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"idstitch serve did not answer /_health within {START_TIMEOUT}s:\n{log.read_text()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, the writer thread dies wherever it is."""
        assert self.process is not None, "no server was started"
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=STOP_TIMEOUT)

    def restart(self) -> None:
        """Kill the running server if any, then start a new one on the same data directory."""
        if self.process is not None and self.process.poll() is None:
            self.kill()
        self.start()

    def __enter__(self) -> ServerProcess:
        """Started; `with` stops it at the end whatever happened, a failed start included."""
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        """SIGTERM (a clean shutdown), then SIGKILL if it does not go; only the process we started."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A started server; stopped at teardown whatever the test did to it."""
    with ServerProcess(data_dir=tmp_path / "data", log_dir=tmp_path) as server:
        yield server
