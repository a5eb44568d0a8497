"""The SDK's pure parts under Node's own test runner, and its mirrors of the server's lists."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from idstitch import ids
from idstitch.first_touch import CAMPAIGN_KEYS

SDK = Path(__file__).resolve().parents[2] / "sdk" / "js"


def node(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    executable = shutil.which("node")
    if executable is None:
        pytest.fail("node is missing: `make test` installs it (scripts/test-deps)")
    return subprocess.run([executable, *args], cwd=SDK, input=stdin, capture_output=True, text=True, timeout=120)


def test_node_unit_tests_pass():
    result = node("--test", "test/")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "# fail 0" in result.stdout


def test_the_committed_build_is_up_to_date():
    result = node("build.mjs", "--check")
    assert result.returncode == 0, result.stderr


def _js(module: str, expression: str, stdin: str = "") -> object:
    script = (
        f"import * as m from './src/{module}';"
        "let input = ''; process.stdin.on('data', (d) => (input += d));"
        f"process.stdin.on('end', () => console.log(JSON.stringify(((m, input) => {expression})(m, input))));"
    )
    result = node("--input-type=module", "-e", script, stdin=stdin)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_generic_id_list_is_the_servers():
    assert sorted(_js("ids.js", "m.GENERIC_IDS")) == sorted(ids._GENERIC_IDS)


def test_the_campaign_keys_are_the_servers():
    assert sorted(_js("context.js", "m.CAMPAIGN_KEYS")) == sorted(CAMPAIGN_KEYS)


def _samples() -> list[str]:
    fixed = [
        "", " ", "\t\n", "\u00a0", "\u3000", "\u2003", "\ufeff", "\x1c", "\x85", "0", "00", "'0'", '"0"', "'0",
        "null", "NULL", "'null'", '"Null"', "'null\"", " null", "null ", "[object Object]", "nan", "NaN", "none",
        "guest", "Guest", "anonymous", "distinct_id", "DistinctId", "id", "ID", "'id'", "email", "e-mail",
        "not_authenticated", "true", "False", "undefined", "user-1", "ümlaut", "\u212a", "İd", "'' ", "''", '""',
        "'\u00a0'",
    ]
    alphabet = ["n", "u", "l", "N", "L", "'", '"', " ", "\u00a0", "\ufeff", "\x1f", "0", "1", "i", "d", "I", "D"]
    rng = random.Random(4)
    generated = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6))) for _ in range(2000)]
    return fixed + generated


def test_illegal_ids_are_decided_as_the_server_decides_them():
    samples = _samples()
    js = _js("ids.js", "JSON.parse(input).map((id) => m.isIllegalForIdentity(id))", stdin=json.dumps(samples))
    python = [ids.is_illegal_for_identity(s) for s in samples]
    differences = [(s, j, p) for s, j, p in zip(samples, js, python) if j != p]
    assert differences == []


def test_the_readmes_show_the_snippet_the_browser_tests_load():
    snippet = "\n".join(line for line in (SDK / "snippet.html").read_text().splitlines() if not line.startswith("<!--"))
    for readme in (SDK.parents[1] / "README.md", SDK / "README.md"):
        assert f"```html\n{snippet}\n```" in readme.read_text(), readme
