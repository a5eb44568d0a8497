"""Every example of README.md runs as written against a real server started the way the README
says (`make serve`'s own command, from the Makefile), in README order, on one data directory.

Only what the README tells the reader to substitute is substituted: `URL`, `TOKEN` and `KEY`
(its variables block, filled from what the server printed at start), `PERSON_ID` (its comment
says where it comes from), and `phc_...` / `http://127.0.0.1:8000` in the SDK examples. Shell
blocks run in bash with `set -eu`; `curl` is given `--fail-with-body`, so an answer of 400 or
more fails the example. Blocks that cannot run here (a browser, another machine, PostgreSQL at
db.internal, `make test` itself) are listed in NOT_RUN with where they are checked instead,
and a test fails when a block is neither run nor listed, in README.md or in docs/*.md.
"""

from __future__ import annotations

import doctest
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from idstitch.query.filters import parse_filter

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
START_TIMEOUT = 30.0
CURL = 'curl() { command curl --fail-with-body --show-error "$@"; }'


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    language: str
    text: str

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def first_line(self) -> str:
        return self.text.strip().splitlines()[0].strip()


def blocks(path: Path) -> list[Block]:
    found, language, start, lines = [], None, 0, []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith("```"):
            if language is None:
                language, start, lines = line[3:].strip(), number, []
            else:
                found.append(Block(path, start, language, "\n".join(lines) + "\n"))
                language = None
        elif language is not None:
            lines.append(line)
    return found


# Blocks that are not run here, by file and first line, with where they are checked instead.
NOT_RUN = {
    ("README.md", "make serve    # creates .venv, installs pinned dependencies, starts idstitch on ./idstitch-data"):
        "the server of this test is started with the command `make serve` runs (from the Makefile); `make test` is this suite",
    ("README.md", "idstitch 0.1.0 serving idstitch-data/idstitch.db"):
        "output, compared with what the server prints in test_the_server_prints_what_the_readme_shows",
    ("README.md", "<script>"): "the snippet is sdk/js/snippet.html (test_the_browser_snippet_is_the_sdks), run in Chromium by tests/sdk",
    ("README.md", "idstitch('identify', 'user-42', { email: 'ada@example.com', plan: 'pro' }); // at login: joins the anonymous history"):
        "browser code, run in Chromium by tests/sdk/test_browser_sdk.py",
    ("README.md", "import posthog from 'posthog-js'"): "browser code, run in Chromium by tests/compat/test_posthog_js.py",
    ("README.md", '{"and": ['): "a filter document, validated in test_the_filter_document_is_valid",
    ("README.md", "createdb idstitch                                          # once, on the database server"):
        "needs PostgreSQL on db.internal; tests/integration/test_several_servers.py runs servers on one PostgreSQL",
    ("docs/deploy.md", "# docker-compose.yml: PostgreSQL, three idstitch servers, nginx in front."): "docker compose; not available here",
    ("docs/deploy.md", "[Unit]"): "a systemd unit; not available here",
    ("docs/deploy.md", "systemctl enable --now idstitch@8001 idstitch@8002     # two processes: one per core is a good start"):
        "systemd; not available here",
    ("docs/deploy.md", ".venv/bin/idstitch migrate --to postgresql://idstitch@db.internal/idstitch --data-dir ./idstitch-data"):
        "needs PostgreSQL on db.internal; tests/test_migrate.py runs migrate",
    ("docs/migrate.md", "createdb idstitch                                  # an empty database, on the database server"):
        "needs PostgreSQL on db.internal; tests/test_migrate.py runs migrate",
    ("docs/migrate.md", "table                  SQLite PostgreSQL copied now"): "output of migrate",
    ("docs/design.md", "browser: idstitch.js | posthog-js        server: idstitch client | posthog | segment"): "a drawing",
    ("docs/design.md", "src/idstitch/"): "a layout drawing, checked by tests/test_layers.py",
}
# Lines of a run block that are skipped, with why: a second server on the same port and data
# directory, and a migration to a PostgreSQL on another machine.
SKIPPED_LINES = {
    "make serve                    # terminal 1: the server on http://127.0.0.1:8000":
        "the server of this test is `make serve`'s command, already running",
    ".venv/bin/idstitch serve --host 0.0.0.0 --port 8000 --data-dir ./idstitch-data":
        "the server of this test already serves ./idstitch-data (a second one refuses to start, as the README says)",
    ".venv/bin/idstitch migrate --to postgresql://idstitch@db.internal/idstitch   # copy ./idstitch-data into PostgreSQL":
        "needs PostgreSQL on db.internal; tests/test_migrate.py runs migrate",
}


def _key(block: Block) -> tuple[str, str]:
    return (str(block.path.relative_to(ROOT)), block.first_line)


def runnable(block: Block) -> bool:
    return _key(block) not in NOT_RUN


@pytest.mark.parametrize("block", [b for path in (README, *DOCS) for b in blocks(path)], ids=lambda b: b.name)
def test_every_example_is_run_or_says_where_it_is_checked(block: Block) -> None:
    if runnable(block):
        assert block.path == README, f"{block.name} ({block.first_line!r}) is neither run nor listed in NOT_RUN"
        assert block.language in ("sh", "python"), f"{block.name}: no runner for {block.language!r} blocks"


def test_every_listed_exception_is_still_in_the_docs() -> None:
    present = {_key(b) for path in (README, *DOCS) for b in blocks(path)}
    assert set(NOT_RUN) <= present, sorted(set(NOT_RUN) - present)
    lines = {line.strip() for b in blocks(README) for line in b.text.splitlines()}
    assert set(SKIPPED_LINES) <= lines, sorted(set(SKIPPED_LINES) - lines)


def test_the_browser_snippet_is_the_sdks() -> None:
    [snippet] = [b for b in blocks(README) if b.first_line == "<script>"]
    assert snippet.text.strip() in (ROOT / "sdk" / "js" / "snippet.html").read_text()


def test_the_filter_document_is_valid() -> None:
    [document] = [b for b in blocks(README) if b.language == "json"]
    parse_filter(json.loads(document.text))


# -- the server, started as `make serve` starts it ---------------------------------------------


def make_serve_command(venv: Path, port: int, data_dir: str) -> list[str]:
    """The Makefile's `serve` recipe with its variables filled in."""
    recipe = re.search(r"^serve:.*\n\t(.+)$", (ROOT / "Makefile").read_text(), re.M)
    assert recipe, "the Makefile has no `serve` recipe"
    line = recipe.group(1).replace("$(VENV)", str(venv)).replace("$(PORT)", str(port)).replace("$(DATA_DIR)", data_dir)
    assert "$(" not in line, line
    return line.split()


@dataclass
class Server:
    url: str
    token: str
    key: str
    printed: str
    home: Path


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def make_serve(home: Path) -> Iterator[Server]:
    """`make serve` in `home`, whose `.venv` is this interpreter's environment."""
    (home / ".venv").symlink_to(Path(sys.executable).parent.parent)
    port = _free_port()
    log = home / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDSTITCH_")}
    with log.open("wb") as out:
        process = subprocess.Popen(
            make_serve_command(Path(".venv"), port, "idstitch-data"), cwd=home, env=env,
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert process.poll() is None, f"make serve's command exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"no answer on {url}/_health:\n{log.read_text()}"
            try:
                if httpx.get(f"{url}/_health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        printed = log.read_text()
        token = re.search(r"ingest token: (\S+)", printed)
        key = re.search(r"secret key:\s+(sk_\S+)", printed)
        assert token and key, printed
        yield Server(url, token.group(1), key.group(1), printed, home)
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with make_serve(tmp_path_factory.mktemp("readme")) as started:
        yield started


def test_the_server_prints_what_the_readme_shows(server: Server) -> None:
    [shown] = [b for b in blocks(README) if b.first_line.startswith("idstitch 0.1.0 serving")]
    labels = [line.split(":")[0].strip() for line in shown.text.splitlines()[1:]]
    printed = [line.split(":")[0].strip() for line in server.printed.splitlines()[1:5]]
    assert printed == labels
    assert server.printed.splitlines()[0].startswith("idstitch ") and "idstitch-data/idstitch.db" in server.printed


# -- the examples, in README order -------------------------------------------------------------


def _variables(server: Server) -> str:
    [block] = [b for b in blocks(README) if b.first_line.startswith("URL=http://127.0.0.1:8000")]
    return (
        block.text.replace("http://127.0.0.1:8000", server.url)
        .replace("phc_...", server.token)
        .replace("sk_...", server.key)
    )


def _sh(block: Block, server: Server) -> str:
    script = "\n".join(
        f": skipped: {line.strip()}" if line.strip() in SKIPPED_LINES else line for line in block.text.splitlines()
    )
    person = httpx.get(f"{server.url}/api/persons", params={"distinct_id": "user-42"},
                       headers={"Authorization": f"Bearer {server.key}"})
    env = {**os.environ, "PERSON_ID": person.json()["id"] if person.status_code == 200 else "no-user-42-yet"}
    env = {k: v for k, v in env.items() if not k.startswith("IDSTITCH_")}
    done = subprocess.run(
        ["bash", "-c", f"set -eu\n{CURL}\n{_variables(server)}\n{script}"],
        cwd=server.home, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, f"{block.name} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _python(block: Block, server: Server) -> str:
    if block.text.lstrip().startswith(">>>"):
        test = doctest.DocTestParser().get_doctest(
            block.text, {"URL": server.url, "TOKEN": server.token, "KEY": server.key}, block.name, str(block.path), block.line
        )
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
        out: list[str] = []
        runner.run(test, out=out.append)
        assert runner.failures == 0, f"{block.name}:\n" + "".join(out)
        return ""
    code = block.text.replace('"phc_..."', repr(server.token)).replace('"http://127.0.0.1:8000"', repr(server.url))
    done = subprocess.run([sys.executable, "-c", code], cwd=server.home, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{block.name} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _is_demo(block: Block) -> bool:
    return block.first_line.startswith("make serve") and "idstitch demo" in block.text


def test_every_readme_example_runs_as_written(server: Server) -> None:
    ran = []
    for block in blocks(README):
        if not runnable(block) or _is_demo(block):
            continue
        output = _sh(block, server) if block.language == "sh" else _python(block, server)
        assert '"status":"rejected"' not in output.replace(" ", ""), f"{block.name} had a message rejected:\n{output}"
        ran.append(block.first_line)
    assert len(ran) >= 10, ran


def test_the_demo_loads_beside_the_running_server(tmp_path: Path) -> None:
    # Its own server: the demo's month of visitors would change what the other examples show.
    [block] = [b for b in blocks(README) if _is_demo(b)]
    with make_serve(tmp_path) as started:
        output = _sh(block, started)
        assert "secret key:" in output
        answer = httpx.get(f"{started.url}/api/identity", params={"email": "ada@example.com"},
                           headers={"Authorization": f"Bearer {started.key}"})
        assert answer.status_code == 200 and answer.json()["persons"], answer.text
