"""libs.sql: the one SQL helper every service's store stands on."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import Integer, String, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from libs.errors import AlreadyExists, Unavailable
from libs.sql import Database, sqlite_file, translate


class _Base(DeclarativeBase):
    pass


class _Item(_Base):
    __tablename__ = "items"
    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'nested' / 'state.db'}")
    _Base.metadata.create_all(database.engine)
    yield database
    database.close()


def test_sqlite_file_folder_is_created_and_pragmas_set(db: Database, tmp_path: Path) -> None:
    assert (tmp_path / "nested").is_dir()
    with db.read() as session:
        assert session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert session.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert session.execute(text("PRAGMA busy_timeout")).scalar() == 30000
    assert sqlite_file("sqlite:///:memory:") is None
    assert sqlite_file("postgresql+psycopg://u@h/db") is None


def test_write_commits_and_an_error_rolls_back(db: Database) -> None:
    with db.write() as session:
        session.add(_Item(name="a", count=1))
    with pytest.raises(RuntimeError), db.write() as session:
        session.add(_Item(name="b", count=1))
        session.flush()
        raise RuntimeError("boom")
    with db.read() as session:
        assert session.scalars(select(_Item.name)).all() == ["a"]


def test_translate_turns_a_duplicate_key_into_already_exists(db: Database) -> None:
    with db.write() as session:
        session.add(_Item(name="a"))
    with (
        pytest.raises(AlreadyExists, match="item 'a' already exists"),
        translate("item 'a'"),
        db.write() as session,
    ):
        session.add(_Item(name="a"))


def test_translate_turns_an_operational_error_into_unavailable() -> None:
    with pytest.raises(Unavailable, match=r"database unavailable \(job 'j'\)"), translate("job 'j'"):
        raise OperationalError("INSERT ...", {}, Exception("could not connect to server"))


def test_two_read_then_write_transactions_queue_instead_of_failing(db: Database) -> None:
    """Each writer reads the counter and writes it back: with the write lock taken at BEGIN
    (IMMEDIATE) the second waits for the first; without it SQLite would refuse one of the
    lock upgrades at once ('database is locked') or lose an increment."""
    with db.write() as session:
        session.add(_Item(name="n", count=0))
    errors: list[BaseException] = []

    def bump() -> None:
        try:
            for _ in range(20):
                with db.write() as session:
                    item = session.get(_Item, "n")
                    assert item is not None
                    time.sleep(0.001)  # widen the window between the read and the write
                    item.count += 1
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=bump) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with db.read() as session:
        assert session.get(_Item, "n").count == 60  # type: ignore[union-attr]
