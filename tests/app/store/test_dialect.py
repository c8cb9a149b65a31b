"""The dialect helper builds statements that behave alike on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import (
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    case,
    create_engine,
    func,
    insert,
    select,
)

from app.config import Settings
from app.store.dialect import (
    DriverSQL,
    Excluded,
    consistent_snapshot,
    driver_datetime,
    driver_insert_on_conflict,
    insert_on_conflict,
    is_postgresql,
    placeholder,
)
from app.store.engine import create_db_engine, read_connection, write_transaction
from app.store.tables import UTCDateTime

METADATA = MetaData()
SEEN = Table(
    "seen",
    METADATA,
    Column("id", Integer, primary_key=True),
    Column("project_id", Integer, nullable=False),
    Column("name", String(32), nullable=False),
    Column("first", Integer, nullable=False),
    Column("last", Integer, nullable=False),
    Column("at", UTCDateTime(), nullable=True),
    UniqueConstraint("project_id", "name"),
)
SEEN_KEY = ("project_id", "name")


@pytest.fixture
def db(settings: Settings) -> Iterator[Engine]:
    engine = create_db_engine(settings)
    METADATA.create_all(engine)
    yield engine
    engine.dispose()


def _rows(engine: Engine) -> dict[str, tuple[int, int]]:
    with read_connection(engine) as conn:
        found = conn.execute(select(SEEN.c.name, SEEN.c.first, SEEN.c.last))
        return {name: (first, last) for name, first, last in found}


def _row(name: str, first: int, last: int | None = None) -> dict[str, object]:
    return {"project_id": 1, "name": name, "first": first, "last": first if last is None else last}


def test_is_postgresql_names_the_backend(db: Engine, database_url: str) -> None:
    assert is_postgresql(db) is database_url.startswith("postgresql")
    with db.connect() as conn:
        assert is_postgresql(conn) is is_postgresql(db)


def test_insert_on_conflict_do_nothing_keeps_the_stored_row(db: Engine) -> None:
    with write_transaction(db) as conn:
        conn.execute(insert_on_conflict(conn, SEEN, SEEN_KEY), [_row("a", 1), _row("b", 2)])
    with write_transaction(db) as conn:
        new = conn.execute(
            insert_on_conflict(conn, SEEN, SEEN_KEY).returning(SEEN.c.name),
            [_row("a", 10), _row("c", 3)],
        ).scalars()
        assert list(new) == ["c"]  # only the rows it inserted come back
    assert _rows(db) == {"a": (1, 1), "b": (2, 2), "c": (3, 3)}


def test_insert_on_conflict_do_update_sets_from_the_proposed_row(db: Engine) -> None:
    def widen(excluded: Excluded) -> dict[str, object]:
        return {
            "first": case((excluded.first < SEEN.c.first, excluded.first), else_=SEEN.c.first),
            "last": case((excluded.last > SEEN.c.last, excluded.last), else_=SEEN.c.last),
        }

    with write_transaction(db) as conn:
        conn.execute(insert_on_conflict(conn, SEEN, SEEN_KEY, set_=widen), [_row("a", 5)])
    with write_transaction(db) as conn:
        conn.execute(
            insert_on_conflict(conn, SEEN, SEEN_KEY, set_=widen),
            [_row("a", 3, 4), _row("b", 7)],
        )
    with write_transaction(db) as conn:
        conn.execute(insert_on_conflict(conn, SEEN, SEEN_KEY, set_=widen), [_row("a", 4, 9)])
    assert _rows(db) == {"a": (3, 9), "b": (7, 7)}


def test_driver_insert_counts_the_rows_it_inserted(db: Engine) -> None:
    statement = driver_insert_on_conflict("seen", ("project_id", "name", "first", "last"), SEEN_KEY)
    with write_transaction(db) as conn:
        assert placeholder(conn) in statement.text(conn)
        done = conn.exec_driver_sql(statement.text(conn), [(1, "a", 1, 1), (1, "b", 2, 2)])
        assert done.rowcount == 2
    with write_transaction(db) as conn:
        done = conn.exec_driver_sql(
            statement.text(conn), [(1, "a", 9, 9), (1, "c", 3, 3), (1, "b", 9, 9)]
        )
        assert done.rowcount == 1  # ingest counts accepted spans by it
    assert _rows(db) == {"a": (1, 1), "b": (2, 2), "c": (3, 3)}


def test_driver_sql_is_written_once_per_placeholder_style(db: Engine) -> None:
    statement = DriverSQL.of("SELECT name FROM seen WHERE project_id = {mark} AND first > {mark}")
    assert statement.qmark.endswith("project_id = ? AND first > ?")
    assert statement.format.endswith("project_id = %s AND first > %s")
    with write_transaction(db) as conn:
        conn.execute(insert(SEEN), [_row("a", 1), _row("b", 5)])
    with read_connection(db) as conn:
        assert conn.exec_driver_sql(statement.text(conn), (1, 2)).scalars().all() == ["b"]
        # A variable-length IN list takes the placeholder itself.
        mark = placeholder(conn)
        names = conn.exec_driver_sql(
            f"SELECT name FROM seen WHERE name IN ({mark}, {mark}) ORDER BY name", ("a", "b")
        ).scalars()
        assert list(names) == ["a", "b"]


def test_an_unknown_paramstyle_is_refused() -> None:
    engine = create_engine("sqlite://", paramstyle="named")
    with pytest.raises(ValueError, match="'named'"):
        placeholder(engine)


def test_a_driver_datetime_reads_back_as_sqlalchemy_writes_it(db: Engine) -> None:
    when = datetime(2025, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
    mark = "{mark}"
    statement = DriverSQL.of(
        f"INSERT INTO seen (project_id, name, first, last, at) "
        f"VALUES ({mark}, {mark}, {mark}, {mark}, {mark})"
    )
    with write_transaction(db) as conn:
        conn.exec_driver_sql(statement.text(conn), (1, "raw", 1, 1, driver_datetime(conn, when)))
        conn.execute(insert(SEEN).values(**_row("orm", 1), at=when))
    with read_connection(db) as conn:
        stored = dict(conn.execute(select(SEEN.c.name, SEEN.c.at)).all())
        # Compared in SQL too: the raw value sorts and matches as SQLAlchemy's own does.
        same = conn.execute(select(func.count()).where(SEEN.c.at == when)).scalar_one()
    assert stored == {"raw": when, "orm": when}
    assert same == 2


def test_a_consistent_snapshot_does_not_see_later_commits(db: Engine) -> None:
    with write_transaction(db) as conn:
        conn.execute(insert(SEEN), [_row("a", 1)])
    count = select(func.count()).select_from(SEEN)

    def later(name: str) -> None:
        with write_transaction(db) as other:
            other.execute(insert(SEEN), [_row(name, 2)])

    with db.connect() as conn:
        consistent_snapshot(conn)
        assert conn.execute(count).scalar_one() == 1
        later("b")
        assert conn.execute(count).scalar_one() == 1
    with db.connect() as conn:
        assert conn.execute(count).scalar_one() == 2
        later("c")
        # Without it PostgreSQL (READ COMMITTED) sees each statement's own snapshot.
        if is_postgresql(db):
            assert conn.execute(count).scalar_one() == 3
