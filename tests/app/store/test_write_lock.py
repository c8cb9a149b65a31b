"""Writers to one SQLite file queue on `<database>.writelock`: threads of one process and
separate processes alike, each transaction opening the lock file anew and leaving nothing
open behind it."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from app.config import Settings
from app.store.engine import create_db_engine, write_lock_path, write_transaction

ROOT = Path(__file__).resolve().parents[3]
CHILD = """
import sys
from sqlalchemy import text
from app.config import Settings
from app.store.engine import create_db_engine, write_transaction

engine = create_db_engine(Settings(database_url=sys.argv[1], data_dir=sys.argv[2]))
with write_transaction(engine) as conn:
    conn.execute(text("INSERT INTO marks (who) VALUES ('child')"))
"""


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Engine]:
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'w.db'}")
    engine = create_db_engine(settings)
    with write_transaction(engine) as conn:
        conn.execute(text("CREATE TABLE marks (id INTEGER PRIMARY KEY, who TEXT NOT NULL)"))
    yield engine
    engine.dispose()


def _lock_file(engine: Engine) -> str:
    path = write_lock_path(engine)
    assert path is not None
    return path


def _blocked_waiters(path: str) -> int:
    """Requests waiting for an flock on `path` (Linux lists them in /proc/locks as `->`)."""
    inode = os.stat(path).st_ino
    count = 0
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "->" in fields and "FLOCK" in fields:
            device_inode = fields[fields.index("FLOCK") + 4]
            count += int(device_inode.rsplit(":", 1)[1]) == inode
    return count


def _wait_for_waiter(path: str) -> None:
    deadline = time.monotonic() + 30
    while not _blocked_waiters(path):
        if time.monotonic() > deadline:
            raise AssertionError(f"nobody came to wait for {path}")
        time.sleep(0.01)


def _free(path: str) -> bool:
    """True when a fresh open file description can take the lock at once."""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def _marks(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT who FROM marks ORDER BY id")).scalars())


def test_the_lock_file_lies_beside_the_database(db: Engine, tmp_path: Path) -> None:
    assert _lock_file(db) == f"{tmp_path / 'w.db'}.writelock"
    # Nothing to share a file lock on: an in-memory database, a PostgreSQL server.
    memory = create_engine("sqlite://")
    assert write_lock_path(memory) is None
    with write_transaction(memory) as conn:
        assert conn.execute(text("SELECT 1")).scalar_one() == 1
    assert write_lock_path(create_engine("postgresql+psycopg://warden@127.0.0.1/w")) is None


def test_two_threads_of_one_process_exclude_each_other(db: Engine) -> None:
    path = _lock_file(db)
    inside, release = threading.Event(), threading.Event()

    def first() -> None:
        with write_transaction(db) as conn:
            conn.execute(text("INSERT INTO marks (who) VALUES ('first')"))
            inside.set()
            release.wait(30)

    def second() -> None:
        with write_transaction(db) as conn:
            conn.execute(text("INSERT INTO marks (who) VALUES ('second')"))

    holder = threading.Thread(target=first)
    holder.start()
    assert inside.wait(30)
    assert not _free(path)  # another open() of this very process is refused too
    waiter = threading.Thread(target=second)
    waiter.start()
    # The second thread queues in the kernel on the file lock, not in SQLite's busy loop.
    _wait_for_waiter(path)
    release.set()
    holder.join(30)
    waiter.join(30)
    assert _marks(db) == ["first", "second"]
    assert _free(path)


def test_two_processes_exclude_each_other(db: Engine, tmp_path: Path) -> None:
    path = _lock_file(db)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    with write_transaction(db) as conn:
        conn.execute(text("INSERT INTO marks (who) VALUES ('parent')"))
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(db.url), str(tmp_path)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            _wait_for_waiter(path)
        except AssertionError:
            child.kill()
            raise AssertionError(child.communicate()[0]) from None
    out, _ = child.communicate(timeout=60)
    assert child.returncode == 0, out
    assert _marks(db) == ["parent", "child"]
    assert _free(path)


def test_a_transaction_leaves_no_descriptor_open(db: Engine) -> None:
    path = os.path.realpath(_lock_file(db))

    def open_on_lock() -> int:
        fds = Path("/proc/self/fd")
        return sum(1 for fd in fds.iterdir() if os.path.realpath(fd) == path)

    with write_transaction(db) as conn:
        conn.execute(text("INSERT INTO marks (who) VALUES ('a')"))
        assert open_on_lock() == 1
    assert open_on_lock() == 0
    with pytest.raises(RuntimeError), write_transaction(db):
        raise RuntimeError("rolled back")
    assert open_on_lock() == 0 and _free(path)
    assert _marks(db) == ["a"]
