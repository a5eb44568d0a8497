"""A throwaway PostgreSQL server for tests: `initdb` into a temporary directory, start on a free loopback port.

    with PostgresServer() as server:
        dsn = server.create_database("example")

No pytest here: tests/conftest.py wraps it in fixtures. psycopg is imported only where it is used, so
importing this module (and so conftest.py) never needs it.
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

PREFERRED_BINDIR = Path("/usr/lib/postgresql/15/bin")
SUPERUSER = "postgres"
# initdb and postgres refuse to run as root; as root every command runs as this system user instead.
SYSTEM_USER = "postgres"
COMMAND_TIMEOUT = 120.0
STOP_MODES = ("smart", "fast", "immediate")


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine (scripts/test-deps installs them)."""


def find_bindir() -> Path:
    """Debian's PostgreSQL 15 first, then whatever `pg_config` names, then `initdb` on PATH."""
    candidates = [PREFERRED_BINDIR]
    if pg_config := shutil.which("pg_config"):
        result = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if result.returncode == 0 and result.stdout.strip():
            candidates.append(Path(result.stdout.strip()))
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).resolve().parent)
    for bindir in candidates:
        if all((bindir / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return bindir
    raise PostgresUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found in "
        f"{', '.join(map(str, candidates))}; run scripts/test-deps (apt-get install postgresql)"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ensure_system_user() -> None:
    """Debian's postgresql package creates the user; only a bare machine needs it made here."""
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", SYSTEM_USER], check=True, capture_output=True)


class PostgresServer:
    """One postgres process on 127.0.0.1:`port`, its data and log in a temporary directory it removes on stop()."""

    def __init__(self, bindir: Path | None = None) -> None:
        self.bindir = bindir or find_bindir()
        self.as_root = os.geteuid() == 0
        self.port = 0
        self.base: Path | None = None

    def start(self) -> None:
        """initdb and start; on failure the directory is removed and the error carries the log's tail."""
        if self.base is not None:
            raise RuntimeError("PostgresServer already started")
        if self.as_root:
            ensure_system_user()
        # /tmp, not $TMPDIR: short enough for the unix socket path (~107 bytes), and reachable by SYSTEM_USER.
        self.base = Path(tempfile.mkdtemp(prefix="idstitch-pg-", dir="/tmp" if os.path.isdir("/tmp") else None))
        try:
            self.base.chmod(0o755)
            if self.as_root:
                shutil.chown(self.base, user=SYSTEM_USER)
            self._run("initdb", "-D", str(self.data_dir), "-A", "trust", "-U", SUPERUSER, "-E", "UTF8", "--no-locale")
            with (self.data_dir / "postgresql.conf").open("a") as conf:
                conf.write(
                    f"\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{self.base}'\n"
                    # Durability is under test: keep real fsyncs and synchronous commits.
                    "fsync = on\nsynchronous_commit = on\nmax_connections = 200\nshared_buffers = 128MB\n"
                    # Commit order of rows, for tests that replay what several servers committed.
                    "track_commit_timestamp = on\n"
                )
            # The free port can be taken between probing and binding it; then try another.
            for attempt in range(3):
                self.port = free_port()
                try:
                    self._pg_ctl_start()
                    break
                except RuntimeError as exc:
                    if attempt == 2 or "Address already in use" not in str(exc):
                        raise
        except BaseException:
            self._remove_dir()
            raise

    def stop(self) -> None:
        """Fast shutdown (immediate if that fails), then remove the directory. Safe to call twice."""
        if self.base is None:
            return
        if self._pg_ctl("stop", "-m", "fast").returncode != 0:
            self._pg_ctl("stop", "-m", "immediate")
        self._remove_dir()

    def restart(self, mode: str = "fast") -> None:
        """Stop (`immediate` is a crash: recovery runs on start) and start again on the same port and data."""
        if mode not in STOP_MODES:
            raise ValueError(f"mode must be one of {STOP_MODES}, not {mode!r}")
        if self.base is None:
            raise RuntimeError("PostgresServer not started")
        result = self._pg_ctl("stop", "-m", mode)
        if result.returncode != 0:
            raise RuntimeError(f"pg_ctl stop -m {mode} failed:\n{result.stdout}{result.stderr}{self.log_tail()}")
        self._pg_ctl_start()

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def data_dir(self) -> Path:
        if self.base is None:
            raise RuntimeError("PostgresServer not started")
        return self.base / "data"

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / "postgres.log"

    @property
    def dsn(self) -> str:
        return self.dsn_for("postgres")

    def dsn_for(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str, template: str = "template0") -> str:
        """A fresh database, a copy of `template` (by default empty: template0, which nobody
        connects to); returns its DSN. The template must have no open connections."""
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", template):
            raise ValueError(f"not a plain database name: {template!r}")
        self._execute(f"CREATE DATABASE {{}} TEMPLATE {template}", name)
        return self.dsn_for(name)

    def drop_database(self, name: str) -> None:
        """Drop it even if sessions are still connected (they are terminated)."""
        self._execute("DROP DATABASE IF EXISTS {} WITH (FORCE)", name)

    def deadlocks(self) -> int:
        """Deadlocks detected so far, all databases. A victim's count lands once its session idles ~1s or ends."""
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            row = conn.execute("SELECT coalesce(sum(deadlocks), 0)::bigint FROM pg_stat_database").fetchone()
        return int(row[0]) if row else 0

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except (OSError, RuntimeError):
            return "(no server log)"
        return "--- postgres.log (tail) ---\n" + "\n".join(text.splitlines()[-lines:])

    def _execute(self, template: str, name: str) -> None:
        import psycopg
        from psycopg import sql

        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", name):
            raise ValueError(f"not a plain database name: {name!r}")
        # CREATE/DROP DATABASE cannot run inside a transaction block.
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL(template).format(sql.Identifier(name)))

    def _pg_ctl_start(self) -> None:
        # The port goes on the command line, so restart() reuses it and start() can retry with another.
        result = self._pg_ctl("start", "-l", str(self.log_path), "-o", f"-p {self.port}")
        if result.returncode != 0:
            output = f"{result.stdout}{result.stderr}{self.log_tail()}"
            raise RuntimeError(f"pg_ctl start failed (port {self.port}):\n{output}")

    def _pg_ctl(self, action: str, *args: str) -> subprocess.CompletedProcess[str]:
        return self._run("pg_ctl", action, "-D", str(self.data_dir), "-w", "-t", "60", *args, check=False)

    def _run(self, program: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bindir / program), *args]
        if self.as_root:
            if shutil.which("runuser"):
                command = ["runuser", "-u", SYSTEM_USER, "--", *command]
            else:
                command = ["su", SYSTEM_USER, "-s", "/bin/sh", "-c", shlex.join(command)]
        # cwd: postgres wants a working directory it can read, which the caller's may not be for SYSTEM_USER.
        result = subprocess.run(
            command, cwd=self.base, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"{program} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
        return result

    def _remove_dir(self) -> None:
        if self.base is not None:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None
