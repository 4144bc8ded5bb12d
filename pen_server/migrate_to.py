"""`pen-server migrate-to URL`: copy a PEN's database (SQLite, as `init` makes it) into an
empty PostgreSQL database. The schema is made there by the same Alembic migrations; the rows
go table by table in the order of their foreign keys, in one transaction, read from one
snapshot of the source; the sequences are then set past the copied ids, and every table's
row count is compared. A failure leaves the target as empty as it was.

The PEN must be stopped meanwhile (a row written after the snapshot would not be copied).
Attachments' files stay where the blob store keeps them: only their rows move."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, Engine, Table, func, inspect, select, text

from pen_server import search_index
from pen_server.db import existing_tables, make_engine, migrate
from pen_server.models import Base

BATCH = 1000


class MigrateError(Exception):
    """One sentence for the administrator."""


@dataclass
class Copied:
    tables: int
    rows: int


def _reason(exc: Exception) -> str:
    return str(getattr(exc, "orig", None) or exc).splitlines()[0]


def _copy_table(source: Connection, target: Connection, table: Table) -> int:
    rows = 0
    result = source.execution_options(yield_per=BATCH).execute(select(table).order_by(*table.primary_key.columns))
    for chunk in result.partitions(BATCH):
        target.execute(table.insert(), [dict(row._mapping) for row in chunk])
        rows += len(chunk)
    return rows


def _reset_sequences(target: Connection, table: Table) -> None:
    """PostgreSQL: the next id of an integer key the database numbers follows the copied ones."""
    for column in table.primary_key.columns:
        if column.type.python_type is int:
            sequence = target.scalar(select(func.pg_get_serial_sequence(table.name, column.name)))
            if sequence:  # None: a key the server chooses itself
                highest = target.scalar(select(func.max(column)))
                target.execute(select(func.setval(sequence, highest or 1, highest is not None)))


def _empty(url: str) -> None:
    """Drop what a failed copy made in the target (it held no tables before)."""
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            search_index.drop(conn)  # it refers to messages
            Base.metadata.drop_all(conn)
            conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    finally:
        engine.dispose()


def migrate_to(source_url: str, target_url: str) -> Copied:
    """Copy every row of the database at `source_url` into the empty one at `target_url`."""
    if source_url == target_url:
        raise MigrateError("The PEN already uses that database; give another, empty one.")
    try:
        found = existing_tables(target_url)
    except Exception as exc:
        raise MigrateError(f"Could not open the target database ({_reason(exc)}).") from None
    if found:
        raise MigrateError(f"The target database already holds {len(found)} tables; nothing was copied, as "
                           f"pen-server copies only into an empty database (make a new one, or drop its tables).")
    migrate(source_url)  # the source at the newest schema too, so that both have the same tables
    try:
        migrate(target_url)
    except Exception as exc:
        _empty(target_url)
        raise MigrateError(f"Could not make the schema in the target database ({_reason(exc)}).") from None
    source_engine, target_engine = make_engine(source_url), make_engine(target_url)
    try:
        try:
            counts = _copy_all(source_engine, target_engine)
        finally:
            source_engine.dispose()
            target_engine.dispose()
    except BaseException:
        _empty(target_url)
        raise
    return Copied(len(counts), sum(counts.values()))


def _copy_all(source_engine: Engine, target_engine: Engine) -> dict[str, int]:
    counts: dict[str, int] = {}
    known = set(inspect(source_engine).get_table_names())
    tables = [t for t in Base.metadata.sorted_tables if t.name in known]
    with source_engine.connect() as source, target_engine.connect() as target:
        with source.begin(), target.begin():  # one snapshot read, one transaction written
            if source.dialect.name == "sqlite":
                source.exec_driver_sql("BEGIN")  # pysqlite begins none for reads: one snapshot for all
            for table in tables:
                try:
                    counts[table.name] = _copy_table(source, target, table)
                except Exception as exc:
                    raise MigrateError(f"The rows of {table.name} could not be copied ({_reason(exc)}); "
                                       f"the target database was left empty.") from None
                if target.dialect.name == "postgresql":
                    _reset_sequences(target, table)
            search_index.rebuild(target)  # the index is made from the rows, not copied
            for table in tables:  # every row arrived
                there = target.scalar(select(func.count()).select_from(table))
                if there != counts[table.name]:
                    raise MigrateError(f"The table {table.name} has {there} rows in the target, not "
                                       f"{counts[table.name]}; the target database was left empty.")
    return counts
