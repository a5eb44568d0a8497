"""The `idstitch` command line: export and import round-trip, keys, helpful errors."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from fastapi.testclient import TestClient

from idstitch.cli import cli
from idstitch.server.app import create_app, prepare
from idstitch.server.state import ServerConfig
from tests.conftest import SECRET_KEY


def test_export_then_import_into_a_fresh_data_dir_gives_the_same_persons(config: ServerConfig, tmp_path: Path):
    with TestClient(create_app(config)) as client:
        client.post("/ingest/identify", json={"token": config.ingest_token, "user_id": "user-1",
                                              "anonymous_id": "cookie-1", "set": {"plan": "pro"}})
        client.post("/ingest/track", json={"token": config.ingest_token, "distinct_id": "cookie-2", "event": "x"})
    runner = CliRunner()
    exported = runner.invoke(cli, ["export", "--data-dir", str(config.data_dir)])
    assert exported.exit_code == 0, exported.output
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    assert sorted(tuple(p["distinct_ids"]) for p in lines) == [("cookie-1", "user-1"), ("cookie-2",)]

    fresh = ServerConfig(data_dir=tmp_path / "fresh", secret_key=SECRET_KEY)
    prepare(fresh)
    source = tmp_path / "persons.jsonl"
    source.write_text(exported.stdout + "not json\n")
    imported = runner.invoke(cli, ["import", str(source), "--data-dir", str(fresh.data_dir)])
    assert imported.exit_code == 0, imported.output
    assert "imported 2 of 3 persons" in imported.output
    assert "line 3 is not JSON" in imported.output

    with TestClient(create_app(fresh)) as client:
        person = client.get("/api/persons", params={"distinct_id": "cookie-1"},
                            headers={"Authorization": f"Bearer {SECRET_KEY}"}).json()
    assert person["properties"] == {"plan": "pro"}
    assert person["user_ids"] == ["user-1"]
    assert sorted(person["distinct_ids"]) == ["cookie-1", "user-1"]


def test_import_says_which_attributes_it_dropped(config: ServerConfig, tmp_path: Path):
    prepare(config)
    source = tmp_path / "persons.jsonl"
    source.write_text(
        '{"distinct_ids": ["018f-anon"], "properties": {"email": "bob@example.com"}}\n'
        '{"distinct_ids": ["018f-anon-2", "ada-42"], "is_identified": true, "properties": {"email": "ada@example.com"}}\n'
    )
    imported = CliRunner().invoke(cli, ["import", str(source), "--data-dir", str(config.data_dir)])
    assert imported.exit_code == 0, imported.output
    assert "person 1: warning pii_on_anonymous {\"key\":\"email\"}" in imported.output
    assert "person 2:" not in imported.output
    assert "imported 2 of 2 persons" in imported.output


def test_create_key_prints_a_working_secret_key(config: ServerConfig):
    prepare(config)
    result = CliRunner().invoke(cli, ["create-key", "--data-dir", str(config.data_dir), "--label", "ci"])
    assert result.exit_code == 0
    key = result.stdout.strip()
    assert key.startswith("sk_")
    with TestClient(create_app(config)) as client:
        assert client.get("/api/warnings", headers={"Authorization": f"Bearer {key}"}).status_code == 200


def test_commands_on_a_missing_data_dir_say_how_to_start(tmp_path: Path):
    result = CliRunner().invoke(cli, ["export", "--data-dir", str(tmp_path / "nowhere")])
    assert result.exit_code != 0
    assert "run `idstitch serve" in result.output


def test_serve_reads_its_settings_from_the_environment():
    result = CliRunner().invoke(cli, ["serve", "--help"])
    for variable in ("IDSTITCH_DATA_DIR", "IDSTITCH_PORT", "IDSTITCH_HOST", "IDSTITCH_INGEST_TOKEN", "IDSTITCH_SECRET_KEY"):
        assert variable in result.output


def test_merge_then_undo_from_the_command_line_with_dry_runs_first(config: ServerConfig):
    with TestClient(create_app(config)) as client:
        for user, device in (("ann", "ann-phone"), ("bob", "bob-phone")):
            client.post("/ingest/identify", json={"token": config.ingest_token, "user_id": user, "anonymous_id": device})
    runner = CliRunner()
    where = ["--data-dir", str(config.data_dir)]

    tried = runner.invoke(cli, ["merge", "ann", "bob", "--dry-run", *where])
    assert tried.exit_code == 0, tried.output
    assert tried.output.startswith("dry run: nothing was changed\n")
    assert "would remove person" in tried.output and "(was bob, bob-phone)" in tried.output

    merged = runner.invoke(cli, ["merge", "ann", "bob", *where])
    assert merged.exit_code == 0, merged.output
    assert "removed person" in merged.output

    with TestClient(create_app(config)) as client:
        client.headers["Authorization"] = f"Bearer {SECRET_KEY}"
        person = client.get("/api/persons", params={"distinct_id": "bob"}).json()
        merge_id = client.get(f"/api/persons/{person['id']}/links").json()["results"][-1]["id"]
    undone = runner.invoke(cli, ["undo", str(merge_id), *where])
    assert undone.exit_code == 0, undone.output
    assert "id bob: person" in undone.output and f"link-log entry {merge_id}: merged -> undone" in undone.output
    missing = runner.invoke(cli, ["undo", "424242", *where])
    assert missing.exit_code == 1 and "No link-log entry 424242" in missing.output
