"""Schemathesis against the OpenAPI document at /openapi.json: every documented operation, with
data that fits the schema and data that does not, must never get a 5xx.

Each operation is a test of its own; the budget per operation is `IDSTITCH_FUZZ_EXAMPLES`
(tests/security/conftest.py). The app keeps running across all of them (Schemathesis starts its
lifespan once), so the generated writes pile up and later reads see them.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from schemathesis import GenerationMode

from idstitch.server.app import create_app
from tests.conftest import SECRET_KEY
from tests.security.conftest import FUZZ_EXAMPLES, fuzz_config, fuzz_settings

ADMIN = {"Authorization": f"Bearer {SECRET_KEY}"}


def _schema() -> schemathesis.schemas.BaseSchema:
    # Built at import: Schemathesis's lazy `from_fixture` loader does not run under pytest 9.
    app = create_app(fuzz_config(Path(tempfile.mkdtemp(prefix="idstitch-schemathesis-")) / "data"))
    loaded = schemathesis.openapi.from_asgi("/openapi.json", app)
    loaded.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=FUZZ_EXAMPLES, allow_x00=True,
    )
    return loaded


schema = _schema()


@schema.parametrize()
@fuzz_settings
def test_no_operation_answers_5xx(case):
    # Keep one valid key on every request: with a wrong key everything is a dull 401. (Key
    # revocation is excluded here: revoking the only key would turn the rest into 401s.)
    if case.method == "DELETE" and case.path.startswith("/api/keys"):
        return
    response = case.call(headers=ADMIN, timeout=60)
    assert response.status_code < 500, f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:500]}"
