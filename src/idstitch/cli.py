"""The `idstitch` command: a thin shell over the library (sqlite-utils' CLI style).

    idstitch serve                      start the server on ./idstitch-data
    idstitch import persons.jsonl       import persons, one JSON object per line
    idstitch export > persons.jsonl     export every person as JSON lines
    idstitch undo 42 --dry-run          what undoing link-log entry 42 would change
    idstitch expire-events              delete events older than each project's retention
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import click
import msgspec

from idstitch import __version__, operations, retention
from idstitch.clock import parse_time, utc_now
from idstitch.commands import Actor, ImportPerson
from idstitch.errors import IdstitchError, StoreUnavailable
from idstitch.ingest.pipeline import Writer, apply_imports
from idstitch.server.state import ServerConfig
from idstitch.settings import SERVER_SETTINGS, Setting
from idstitch.store import privacy, reads
from idstitch.store.backends import Store, open_store
from idstitch.store.connection import Connection
from idstitch.store.projects import Project, add_secret_key, project_by_id

_SETTINGS = {s.name: s for s in SERVER_SETTINGS}


def _option(name: str) -> Callable[[Any], Any]:
    setting: Setting = _SETTINGS[name]
    kind = type(setting.default) if setting.default is not None else str
    return click.option(
        f"--{name.replace('_', '-')}",
        name,
        default=setting.default,
        type=kind,
        envvar=setting.env,
        show_default=setting.default is not None,
        show_envvar=True,
        help=setting.help,
    )


class _Commands(click.Group):
    """Every command: a store that cannot be written or read now (a full disk, a database that
    is down) is a one-line error, not a traceback; nothing of the command was stored."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except StoreUnavailable as error:
            raise click.ClickException(str(error)) from None


@click.group(cls=_Commands)
@click.version_option(package_name="idstitch")
def cli() -> None:
    """idstitch: identity resolution and user attributes for product analytics."""


@cli.command()
@_option("host")
@_option("port")
@_option("data_dir")
@_option("database")
@_option("ingest_token")
@_option("secret_key")
@_option("max_body_bytes")
@_option("max_batch_events")
@_option("ingest_rate_limit")
@_option("api_rate_limit")
@_option("query_slots")
@_option("query_queue")
@_option("header_timeout")
@_option("keep_alive_timeout")
@_option("max_connections")
@_option("analytics")
def serve(**values: Any) -> None:
    """Start the server on an embedded SQLite data directory (created on first start), or on a
    PostgreSQL database that several servers share.

    Example: idstitch serve --port 8000 --data-dir ./idstitch-data

    Example: idstitch serve --database postgresql://idstitch@db.internal/idstitch
    """
    import uvicorn

    from idstitch.server.app import create_app, prepare
    from idstitch.server.connections import connection_cap, http_protocol, raise_open_files_limit

    values["data_dir"] = Path(values["data_dir"])
    config = ServerConfig.from_mapping(values)
    try:
        store = config.store()
        store.claim_for_server()
        default = prepare(config)
    except IdstitchError as error:
        raise click.ClickException(str(error)) from None
    url = f"http://{config.host}:{config.port}"
    click.echo(f"idstitch {__version__} serving {store.description}")
    click.echo(f"  URL:          {url}")
    click.echo(f"  API docs:     {url}/docs  (OpenAPI: {url}/openapi.json)")
    click.echo(f"  ingest token: {default.project.ingest_token}")
    if default.given_key_revoked:
        click.echo("  secret key:   the one given (IDSTITCH_SECRET_KEY / --secret-key) was revoked and is refused;"
                   " mint another with `idstitch create-key`")
    elif default.new_secret_key:
        click.echo(f"  secret key:   {default.new_secret_key}")
        click.echo("                (stored hashed: copy it now, it is not shown again)")
    else:
        click.echo("  secret key:   created on first start and shown then; mint another with `idstitch create-key`")
    sys.stdout.flush()
    connections = connection_cap(config.max_connections, raise_open_files_limit())
    if connections < config.max_connections:
        click.echo(f"  connections:  at most {connections} (the open-files limit)", err=True)
    uvicorn.run(
        create_app(config, given=store), host=config.host, port=config.port, log_level="warning", access_log=False,
        http=http_protocol(header_timeout=config.header_timeout, max_connections=connections),
        timeout_keep_alive=config.keep_alive_timeout, limit_concurrency=connections + 1,
    )


@cli.command()
@_option("data_dir")
@_option("database")
def status(data_dir: str, database: str | None) -> None:
    """Show the store and its size on disk, its write-ahead log included (a server need not run).

    Example: idstitch status --data-dir ./idstitch-data
    """
    store = _existing_store(data_dir, database)
    click.echo(f"store: {store.description}")
    for name, size in store.sizes().items():
        click.echo(f"{name.removesuffix('_bytes')}: {'unknown' if size is None else f'{size:,} bytes'}")


@cli.command("create-key")
@_option("data_dir")
@_option("database")
@click.option("--label", default="cli", show_default=True, help="A name to recognise the key by.")
def create_key(data_dir: str, database: str | None, label: str) -> None:
    """Create a new secret key for the default project and print it (only its hash is stored).

    Example: idstitch create-key --label ci
    """
    store = _existing_store(data_dir, database)
    project = _default_project(store)
    click.echo(_write_once(store, lambda context: add_secret_key(context.conn, project.id, label, context.now())))


@cli.command("import")
@click.argument("source", type=click.File("r"), default="-")
@_option("data_dir")
@_option("database")
def import_(source: TextIO, data_dir: str, database: str | None) -> None:
    """Import persons from JSON lines: {"distinct_ids": [...], "properties": {...}, ...} per line.

    Example: idstitch import persons.jsonl
    """
    store = _existing_store(data_dir, database)
    project = _default_project(store)
    commands = [_import_command(line, number) for number, line in enumerate(source, start=1) if line.strip()]
    outcome = _write_once(store, lambda context: apply_imports(context, project.id, project.settings, commands))
    for result in outcome["results"]:
        if result.get("error"):
            click.echo(f"person {result['index'] + 1}: {result['error']}", err=True)
        for warning in result.get("warnings", ()):
            details = msgspec.json.encode(warning["details"]).decode()
            click.echo(f"person {result['index'] + 1}: warning {warning['type']} {details}", err=True)
    click.echo(f"imported {outcome['imported']} of {len(commands)} persons")


def _import_command(line: str, number: int) -> ImportPerson | str:
    try:
        item = msgspec.json.decode(line)
    except msgspec.DecodeError as error:
        return f"line {number} is not JSON: {error}"
    if not isinstance(item, dict) or not isinstance(item.get("distinct_ids"), list) or not item["distinct_ids"]:
        return f"line {number} needs a non-empty `distinct_ids` list"
    if not all(isinstance(d, str) and d for d in item["distinct_ids"]):
        return f"line {number}: every distinct id must be a non-empty string"
    created_at = parse_time(item.get("created_at")) if item.get("created_at") else utc_now()
    if created_at is None:
        return f"line {number}: created_at {item['created_at']!r} is not an ISO-8601 time"
    properties = item.get("properties") or {}
    if not isinstance(properties, dict):
        return f"line {number}: properties must be an object"
    return ImportPerson(
        tuple(item["distinct_ids"]),
        tuple(item.get("user_ids") or ()),
        properties,
        bool(item.get("is_identified")),
        created_at,
        Actor("cli"),
    )


@cli.command()
@_option("data_dir")
@_option("database")
@click.option("-o", "--output", type=click.File("w"), default="-", help="File to write (default: standard output).")
def export(data_dir: str, database: str | None, output: TextIO) -> None:
    """Export every person as JSON lines, in the format `idstitch import` reads.

    Example: idstitch export -o persons.jsonl
    """
    store = _existing_store(data_dir, database)
    conn = store.connect(read_only=True)
    count = 0
    for person in reads.export_persons(conn, _default_project(store).id):
        output.write(msgspec.json.encode(person).decode() + "\n")
        count += 1
    click.echo(f"exported {count} persons", err=True)


def _selector_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for kind in reversed(privacy.SELECTOR_KINDS):
        command = click.option(f"--{kind.replace('_', '-')}", kind, help=f"The person's {kind.replace('_', ' ')}.")(command)
    return command


def _cli_selector(given: dict[str, Any]) -> privacy.Selector:
    try:
        return privacy.Selector.one_of(**{k: given.pop(k) for k in privacy.SELECTOR_KINDS})
    except IdstitchError as error:
        raise click.UsageError(str(error)) from None


@cli.command("export-person")
@_selector_options
@_option("data_dir")
@_option("database")
@click.option("-o", "--output", type=click.File("w"), default="-", help="File to write (default: standard output).")
def export_person(data_dir: str, database: str | None, output: TextIO, **given: Any) -> None:
    """Export everything held about a person as one JSON document (logged in the audit log).

    Example: idstitch export-person --email ada@example.com -o ada.json
    """
    selector = _cli_selector(given)
    store = _existing_store(data_dir, database)
    project = _default_project(store)
    document = privacy.export_document(store.connect(read_only=True), project.id, selector, utc_now())
    _write_once(store, lambda context: privacy.write_audit(
        context.conn, project.id, "cli", "export",
        {**privacy.audit_selector(context.conn, project.id, selector), "persons": len(document["persons"])}, context.now(),
    ))
    output.write(msgspec.json.encode(document).decode() + "\n")
    click.echo(f"exported {len(document['persons'])} persons", err=True)


@cli.command("delete-person")
@_selector_options
@_option("data_dir")
@_option("database")
@click.option("--suppress", is_flag=True, help="Drop (and count) later events from the person's ids.")
@click.option("--keep-anonymised-counts", is_flag=True, help="Keep the events for totals, without ids or properties.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def delete_person(
    data_dir: str, database: str | None, suppress: bool, keep_anonymised_counts: bool, yes: bool, **given: Any
) -> None:
    """Erase a person: ids, attributes, events, links, and the warnings and dead letters holding
    their data (logged in the audit log).

    Example: idstitch delete-person --distinct-id user-42 --suppress --yes
    """
    selector = _cli_selector(given)
    store = _existing_store(data_dir, database)
    project = _default_project(store)
    if not yes:
        click.confirm(f"Erase everything held about {selector.kind} {selector.value!r}?", abort=True)
    try:
        report = _write_once(store, lambda context: privacy.erase(
            context.conn, project.id, selector, actor="cli", now=context.now(),
            suppress=suppress, keep_anonymised_counts=keep_anonymised_counts,
        ))
    except IdstitchError as error:
        raise click.ClickException(str(error)) from None
    pending = store.forget_erased(wait=30.0)
    click.echo(msgspec.json.encode({"erased": report.to_json(), "suppress": suppress, "complete": pending is None,
                                    "pending": pending, "remains": store.erasure_remains}).decode())
    if pending:
        raise click.ClickException(
            f"the rows are erased but not yet their bytes: {pending}; the server's next erasure or its shutdown"
            " finishes it"
        )


@cli.command("expire-events")
@_option("data_dir")
@_option("database")
def expire_events(data_dir: str, database: str | None) -> None:
    """Delete, now, every project's events older than its `events_retention_days` (a server does it
    every few minutes); persons, their ids and attributes stay. Prints one JSON line per project.

    Example: idstitch expire-events --data-dir ./idstitch-data
    """
    store = _existing_store(data_dir, database)
    writer = Writer(store.write_session(utc_now), utc_now)
    try:
        done = asyncio.run(retention.expire_events(writer, store))
    finally:
        writer.close()
    if not done:
        click.echo("no project sets events_retention_days: every event is kept", err=True)
    for project in done:
        click.echo(msgspec.json.encode(project.to_json()).decode())


@cli.command()
@click.argument("link_id", type=int)
@_option("data_dir")
@_option("database")
@click.option("--dry-run", is_flag=True, help="Change nothing: print what the undo would change.")
def undo(link_id: int, data_dir: str, database: str | None, dry_run: bool) -> None:
    """Undo one identify, alias, merge or split of the link log (its id, as the API and the UI show
    it): the persons become what they would be had it never happened. Undoing an `undo` entry
    redoes what it undid.

    Example: idstitch undo 42 --dry-run
    """
    _identity_action(data_dir, database, lambda p: operations.undo(p.id, p.settings, link_id, _CLI), dry_run)


@cli.command()
@click.argument("target")
@click.argument("source")
@_option("data_dir")
@_option("database")
@click.option("--dry-run", is_flag=True, help="Change nothing: print what the merge would change.")
def merge(target: str, source: str, data_dir: str, database: str | None, dry_run: bool) -> None:
    """Merge the person of distinct id SOURCE into the person of TARGET, identified or not.

    Example: idstitch merge user-42 user-42-old --dry-run
    """
    _identity_action(data_dir, database, lambda p: operations.merge(p.id, p.settings, target, source, _CLI), dry_run)


@cli.command()
@click.argument("person_id")
@click.option("--group", "groups", multiple=True, help="Comma-separated distinct ids that become one person (repeat).")
@_option("data_dir")
@_option("database")
@click.option("--dry-run", is_flag=True, help="Change nothing: print what the split would change.")
def split(person_id: str, groups: tuple[str, ...], data_dir: str, database: str | None, dry_run: bool) -> None:
    """Split a person: each --group of ids becomes one person, the ids in no group another; with no
    --group, every id becomes a person of its own.

    Example: idstitch split 5b0c...e1 --group user-42,phone --group laptop
    """
    chosen = tuple(tuple(d for d in group.split(",") if d) for group in groups) or None
    _identity_action(
        data_dir, database, lambda p: operations.split(p.id, p.settings, person_id, None, chosen, _CLI), dry_run
    )


_CLI = Actor("cli")


def _identity_action(data_dir: str, database: str | None, make: Callable[[Project], operations.Action], dry_run: bool) -> None:
    store = _existing_store(data_dir, database)
    project = _default_project(store)
    run = operations.identity_change(project.id, project.settings, make(project), dry_run=dry_run)
    try:
        change = _write_once(store, run)
    except operations.Previewed as preview:
        change = preview.change
    except IdstitchError as error:
        raise click.ClickException(str(error)) from None
    if dry_run:
        click.echo("dry run: nothing was changed")
    for line in change.sentences():
        click.echo(line)


def _write_once(store: Store, fn: Callable[[Any], Any]) -> Any:
    writer = Writer(store.write_session(utc_now), utc_now)
    try:
        return writer.write_now(fn)
    finally:
        writer.close()


def _existing_store(data_dir: str, database: str | None) -> Store:
    try:
        store = open_store(database, Path(data_dir))
    except IdstitchError as error:
        raise click.ClickException(str(error)) from None
    if not store.exists():
        raise click.ClickException(
            f"No idstitch database at {store.description}: run `idstitch serve --data-dir {data_dir}` first"
        )
    return store


def _default_project(store: Store) -> Project:
    conn: Connection = store.connect(read_only=True)
    try:
        project = project_by_id(conn, conn.execute("SELECT coalesce(min(id), 0) FROM projects").fetchone()[0])
    finally:
        conn.close()
    if project is None:
        raise click.ClickException("No project yet: run `idstitch serve` once first")
    return project


@cli.command()
@_option("data_dir")
@_option("database")
@click.option("--visitors", default=300, show_default=True, type=click.IntRange(1, 100_000), help="Visitors to simulate.")
@click.option("--seed", default=7, show_default=True, help="Random seed: the same seed gives the same data.")
@click.option("--url", default="http://127.0.0.1:8000", show_default=True, help="The server's URL, for the printed link.")
def demo(data_dir: str, database: str | None, visitors: int, seed: int, url: str) -> None:
    """Load a month of demo visitors (sessions, sign-ups on several devices, plans, refused
    merges, warnings) through the ingest path, and print a secret key for the web UI.

    Example: idstitch demo --data-dir ./idstitch-data
    """
    from idstitch.demo import load_demo
    from idstitch.server.app import prepare

    config = ServerConfig(data_dir=Path(data_dir), database=database)
    project = prepare(config).project
    store = config.store()
    report = load_demo(store, project, visitors=visitors, seed=seed)
    created = _write_once(store, lambda context: privacy.create_secret_key(
        context.conn, project.id, "demo", "cli", context.now()
    ))
    click.echo(f"demo: {report.events} events sent, {report.accepted} accepted ({report.duplicates} already there),"
               f" {report.rejected} rejected, {report.warnings} warnings")
    click.echo(f"  web UI:       {url.rstrip('/')}/ui/")
    click.echo(f"  secret key:   {created['secret']}  (sign in with it; stored hashed, not shown again)")


@cli.command()
@click.option("--to", "target", required=True, metavar="URL",
              help="The PostgreSQL database to copy into: empty, or holding an interrupted run of this migration.")
@_option("data_dir")
@click.option("--chunk-rows", default=10_000, show_default=True, type=click.IntRange(1, 1_000_000),
              help="Rows per COPY; each chunk commits together with its progress.")
def migrate(target: str, data_dir: str, chunk_rows: int) -> None:
    """Copy the SQLite data directory into PostgreSQL (every table, id and key), to serve it
    from several servers. Interrupted, the same command continues where it stopped and stores
    nothing twice. The SQLite file is only read, and no server may serve it meanwhile; start
    the servers on PostgreSQL once it has finished (docs/migrate.md).

    Example: idstitch migrate --to postgresql://idstitch@db.internal/idstitch
    """
    from idstitch.store.migration import CountsDiffer, MigrationReport, copy_data_dir_to_postgres

    bar = _MigrationBar()
    try:
        report: MigrationReport = copy_data_dir_to_postgres(Path(data_dir), target, chunk_rows=chunk_rows, progress=bar)
    except KeyboardInterrupt:
        bar.close()
        raise _Interrupted(f"interrupted after {bar.rows} rows: run the same command again to continue") from None
    except CountsDiffer as failed:
        bar.close()
        _echo_migration(failed.report)
        raise click.ClickException(str(failed)) from None
    except IdstitchError as failed:
        bar.close()
        raise click.ClickException(str(failed)) from None
    bar.close()
    _echo_migration(report)


class _Interrupted(click.ClickException):
    exit_code = 130  # as a shell reports Ctrl-C


class _MigrationBar:
    """The library's `Progress` as a click progress bar on stderr, made once the total is known."""

    def __init__(self) -> None:
        self.bar: Any = None
        self.rows = 0

    def start(self, total: int, done: int) -> None:
        self.bar = click.progressbar(length=max(total, 1), label="copying", file=sys.stderr, show_pos=True)
        self.bar.__enter__()
        self.bar.update(done)

    def advance(self, table: str, rows: int) -> None:
        self.rows += rows
        if self.bar is not None:
            self.bar.label = f"{table:<17}"
            self.bar.update(rows)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


def _echo_migration(report: Any) -> None:
    click.echo(f"{'table':<18} {'SQLite':>10} {'PostgreSQL':>10} {'copied now':>10}")
    for table in report.tables:
        mark = "" if table.source_rows == table.target_rows else "  differs"
        click.echo(f"{table.table:<18} {table.source_rows:>10} {table.target_rows:>10} {table.copied:>10}{mark}")
    for table in report.tables:
        if table.altered:
            click.echo(f"{table.table}: {table.altered} values held NUL characters (PostgreSQL stores none): now U+FFFD")
    seconds = report.elapsed_seconds
    if report.already_complete:
        click.echo("already migrated: nothing copied" + (
            " (PostgreSQL has changed since, as the servers on it write)" if report.mismatched else ""
        ))
        return
    rate = f", {report.copied / seconds:,.0f} rows/s" if seconds > 0 and report.copied else ""
    resumed = " (resumed)" if report.resumed else ""
    click.echo(f"copied {report.copied} rows in {seconds:.1f} s{rate}{resumed}")
    if not report.mismatched:
        click.echo(f"verified: all {len(report.tables)} tables have the same row counts on both sides")


if __name__ == "__main__":
    cli()
