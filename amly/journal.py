"""The journal: what amly already did, so that a rerun (after a crash, ``kill -9`` or Ctrl-C)
redoes nothing that finished.

One SQLite file (``data_dir()/journal.sqlite3`` unless told otherwise) in WAL mode holds small
key/value *tables*, one per purpose. Uploads use ``images`` (image session key -> file
handle) and ``sequences`` (sequence checksum -> manifest handle and cluster id); downloads
reuse the same mechanism with their own tables. A write is committed before ``put`` returns,
so whatever a killed process recorded is there on the next run.

>>> import tempfile, os
>>> with Journal(os.path.join(tempfile.mkdtemp(), "j.sqlite3")) as j:
...     t = j.table("images")
...     t.put("mly_tools_abc.jpg", "h1")
...     t.put_many([("k2", {"cluster_id": "7"}), ("k3", "h3")])
...     (t.get("mly_tools_abc.jpg"), t.get("k2"), t.get("nope"), len(t))
('h1', {'cluster_id': '7'}, None, 3)
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .config import data_dir

JOURNAL_FILE = "journal.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (
    purpose  TEXT NOT NULL,
    key      TEXT NOT NULL,
    value    TEXT NOT NULL,     -- JSON
    updated  REAL NOT NULL,
    PRIMARY KEY (purpose, key)
) WITHOUT ROWID;
"""


def default_path() -> Path:
    """``data_dir()/journal.sqlite3`` (``$AMLY_HOME`` moves it, as tests do)."""
    return data_dir() / JOURNAL_FILE


class Journal:
    """A durable key/value store with one namespace per purpose. Thread-safe; cheap calls
    (SQLite in WAL mode with ``synchronous=NORMAL``: a commit survives a killed process)."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else default_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def table(self, purpose: str) -> Table:
        """The namespace for one purpose (``"images"``, ``"sequences"``, ``"downloads"``...)."""
        return Table(self, purpose)

    # -- raw access, used by Table ---------------------------------------------------------

    def _get(self, purpose: str, key: str) -> Any:
        with self._lock:
            row = self._db.execute(
                "SELECT value FROM journal WHERE purpose = ? AND key = ?", (purpose, key)
            ).fetchone()
        return None if row is None else json.loads(row[0])

    def _put(self, purpose: str, key: str, value: Any) -> None:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"))
        with self._lock:
            self._db.execute(
                "INSERT INTO journal (purpose, key, value, updated) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (purpose, key) DO UPDATE SET value = excluded.value, "
                "updated = excluded.updated",
                (purpose, key, text, time.time()),
            )

    def _put_many(self, purpose: str, items: list[tuple[str, Any]]) -> None:
        now = time.time()
        rows = [
            (purpose, k, json.dumps(v, sort_keys=True, separators=(",", ":")), now)
            for k, v in items
        ]
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    "INSERT INTO journal (purpose, key, value, updated) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (purpose, key) DO UPDATE SET value = excluded.value, "
                    "updated = excluded.updated",
                    rows,
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _delete(self, purpose: str, key: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM journal WHERE purpose = ? AND key = ?", (purpose, key))

    def _items(self, purpose: str) -> list[tuple[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT key, value FROM journal WHERE purpose = ? ORDER BY key", (purpose,)
            ).fetchall()
        return [(k, json.loads(v)) for k, v in rows]

    def _count(self, purpose: str) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*) FROM journal WHERE purpose = ?", (purpose,)
            ).fetchone()
        return int(row[0])


class Table:
    """One purpose's key/value namespace. Values are anything JSON can hold."""

    def __init__(self, journal: Journal, purpose: str) -> None:
        self.journal = journal
        self.purpose = purpose

    def get(self, key: str, default: Any = None) -> Any:
        value = self.journal._get(self.purpose, key)
        return default if value is None else value

    def put(self, key: str, value: Any) -> None:
        """Record ``value`` under ``key`` (replacing any earlier value); durable on return."""
        self.journal._put(self.purpose, key, value)

    def put_many(self, items: list[tuple[str, Any]]) -> None:
        """Several puts in one transaction (one commit instead of one per row)."""
        if items:
            self.journal._put_many(self.purpose, items)

    def delete(self, key: str) -> None:
        self.journal._delete(self.purpose, key)

    def items(self) -> Iterator[tuple[str, Any]]:
        return iter(self.journal._items(self.purpose))

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.journal._get(self.purpose, key) is not None

    def __len__(self) -> int:
        return self.journal._count(self.purpose)
