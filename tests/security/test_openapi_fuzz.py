"""Schemathesis against the OpenAPI document at /openapi.json: every documented operation, with
data that fits the schema and data that does not, must never get a 5xx, and every answer must be
what the document says (its body fits the response schema of its status, with its content type).

Each operation is a test of its own; the budget per operation is half of `IDSTITCH_FUZZ_EXAMPLES`
(tests/security/conftest.py), as some 40 operations make this the longest fuzz test. The
document is read from the app without starting it, and the cases run through the module's
one `fuzz_client`, whose lifespan pytest closes: a lifespan left running by Schemathesis kept
the test process from ever exiting.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from schemathesis import GenerationMode
from schemathesis.checks import content_type_conformance, not_a_server_error, response_schema_conformance

from idstitch.server.app import create_app
from tests.conftest import SECRET_KEY
from tests.security.conftest import FUZZ_EXAMPLES, fuzz_config, fuzz_settings

pytestmark = pytest.mark.both_stores

ADMIN = {"Authorization": f"Bearer {SECRET_KEY}"}


def _schema() -> schemathesis.schemas.BaseSchema:
    document = create_app(fuzz_config(Path("unused"))).openapi()
    loaded = schemathesis.openapi.from_dict(document)
    # Explicit examples and random fuzzing only: the exhaustive "coverage" phase never finished
    # on the recursive filter schema (its combinations grow without bound).
    loaded.config.phases.update(phases=["examples", "fuzzing"])
    loaded.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=max(10, FUZZ_EXAMPLES // 2),
        allow_x00=True,
    )
    return loaded


schema = _schema()
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


@schema.parametrize()
@fuzz_settings
def test_no_operation_answers_5xx(case, fuzz_client):
    # Keep one valid key on every request: with a wrong key everything is a dull 401. (Key
    # revocation is excluded here: revoking the only key would turn the rest into 401s.)
    if case.method == "DELETE" and case.path.startswith("/api/keys"):
        return
    response = fuzz_client.request(**case.as_transport_kwargs(base_url="http://testserver", headers=ADMIN))
    assert response.status_code < 500, f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:500]}"
    case.validate_response(response, checks=CHECKS)
