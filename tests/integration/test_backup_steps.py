"""`medstream backup`'s copy in steps while another connection keeps writing: SQLite restarts the copy on each
write between steps, and the copy is made in one step when that keeps happening; either way it is consistent."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from medstream.admin import backup


def test_a_copy_made_while_the_database_is_written_is_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source, target = tmp_path / "busy.db", tmp_path / "copy.db"
    with sqlite3.connect(source) as setup:
        setup.execute("PRAGMA journal_mode=WAL")
        setup.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, payload TEXT NOT NULL)")
        setup.executemany("INSERT INTO t (payload) VALUES (?)", [("x" * 1000,) for _ in range(2000)])
    setup.close()
    monkeypatch.setattr(backup, "STEP_PAGES", 1)  # hundreds of steps: the writer gets in between them
    stop = threading.Event()

    def write() -> None:
        writer = sqlite3.connect(source, isolation_level=None)
        try:
            while not stop.is_set():
                writer.execute("INSERT INTO t (payload) VALUES ('y')")
        finally:
            writer.close()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        done = backup.backup(f"sqlite:///{source}", target)
    finally:
        stop.set()
        writer.join()

    assert done.startswith(f"backed up {source} to {target}")
    copy = sqlite3.connect(target)
    try:
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        (count,) = copy.execute("SELECT count(*) FROM t WHERE payload != 'y'").fetchone()
        assert count == 2000
    finally:
        copy.close()
