"""Storage of the local Mapillary-compatible server: files under a data dir plus a SQLite
index of users, tokens, upload sessions, clusters, sequences, images and organizations.

Layout of ``DIR``::

    DIR/amly-server.sqlite3     the index (WAL mode)
    DIR/uploads/<session_key>   bytes of resumable upload sessions (append-only)
    DIR/images/<id>.jpg         images of finished clusters (hard links where possible)

The upload side (``amly.server.upload``) writes; the read side (``amly.server.read``) and the
seeder read and write ``images``/``sequences``. All access goes through :class:`Store`, which
is used from the server's event loop only (SQLite calls are short; the big I/O is files).
"""

from __future__ import annotations

import os
import re
import secrets
import sqlite3
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id        TEXT PRIMARY KEY,
    username  TEXT NOT NULL UNIQUE,
    email     TEXT UNIQUE,
    password  TEXT              -- 'pbkdf2$<iterations>$<salt hex>$<hash hex>'
);
CREATE TABLE IF NOT EXISTS tokens (
    token     TEXT PRIMARY KEY,
    user_id   TEXT NOT NULL REFERENCES users(id),
    expires   REAL              -- epoch seconds, NULL = never
);
CREATE TABLE IF NOT EXISTS uploads (
    session_key TEXT PRIMARY KEY,   -- 'mly_tools_<md5>.jpg', 'uuid_<hex>.json', ...
    user_id     TEXT NOT NULL,
    received    INTEGER NOT NULL DEFAULT 0,   -- bytes on disk == next valid Offset
    total       INTEGER,                      -- X-Entity-Length when the client sent it
    handle      TEXT UNIQUE,                  -- set once the upload is complete
    created_at  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS clusters (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL,
    file_type       TEXT NOT NULL,            -- 'mly_bundle_manifest' | 'zip' | ...
    file_handle     TEXT NOT NULL UNIQUE,     -- finishing the same handle twice is idempotent
    organization_id TEXT,
    created_at      REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sequences (
    id              TEXT PRIMARY KEY,
    cluster_id      TEXT,
    user_id         TEXT NOT NULL,
    organization_id TEXT,
    created_at      REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS images (
    id              TEXT PRIMARY KEY,         -- decimal digits only
    sequence_id     TEXT NOT NULL REFERENCES sequences(id),
    seq_index       INTEGER NOT NULL,
    user_id         TEXT NOT NULL,
    organization_id TEXT,
    captured_at     INTEGER NOT NULL,         -- epoch milliseconds
    lon             REAL NOT NULL,
    lat             REAL NOT NULL,
    altitude        REAL,
    compass_angle   REAL,
    make            TEXT,
    model           TEXT,
    width           INTEGER,
    height          INTEGER,
    is_pano         INTEGER NOT NULL DEFAULT 0,
    camera_type     TEXT,
    md5             TEXT,
    path            TEXT,                     -- relative to DIR; NULL for synthetic (seeded) images
    description     TEXT                      -- the embedded MAP* JSON as received
);
CREATE INDEX IF NOT EXISTS images_by_seq ON images(sequence_id, captured_at);
CREATE INDEX IF NOT EXISTS images_by_lat ON images(lat, lon);
CREATE INDEX IF NOT EXISTS images_by_user ON images(user_id, captured_at);
-- Read side (queried by amly.server.read): spatial index kept in sync by triggers, so writers
-- only ever insert into images; computed (SfM-corrected) values when they differ.
CREATE INDEX IF NOT EXISTS images_by_org ON images(organization_id, captured_at);
CREATE VIRTUAL TABLE IF NOT EXISTS images_rtree USING rtree(rid, min_lon, max_lon, min_lat, max_lat);
CREATE TRIGGER IF NOT EXISTS images_rtree_ins AFTER INSERT ON images BEGIN
    INSERT OR REPLACE INTO images_rtree VALUES (CAST(new.id AS INTEGER), new.lon, new.lon, new.lat, new.lat);
END;
CREATE TRIGGER IF NOT EXISTS images_rtree_upd AFTER UPDATE OF lon, lat ON images BEGIN
    INSERT OR REPLACE INTO images_rtree VALUES (CAST(new.id AS INTEGER), new.lon, new.lon, new.lat, new.lat);
END;
CREATE TRIGGER IF NOT EXISTS images_rtree_del AFTER DELETE ON images BEGIN
    DELETE FROM images_rtree WHERE rid = CAST(old.id AS INTEGER);
END;
-- Organizations: what ``GET /{id}`` answers for an organization id (the official uploader
-- asks before ``upload --organization_key``). Ids are decimal digits only, as images' are.
CREATE TABLE IF NOT EXISTS organizations (
    id          TEXT PRIMARY KEY,
    slug        TEXT,
    name        TEXT,
    description TEXT
);
-- Video clusters (file_type 'mly_camm_video'): the checked CAMM MP4 and its GPS track.
CREATE TABLE IF NOT EXISTS videos (
    cluster_id  TEXT PRIMARY KEY REFERENCES clusters(id),
    sequence_id TEXT NOT NULL REFERENCES sequences(id),
    path        TEXT NOT NULL,                -- relative to DIR: videos/<cluster id>.mp4
    size        INTEGER NOT NULL,
    md5         TEXT NOT NULL,
    make        TEXT,
    model       TEXT,
    points      INTEGER NOT NULL,
    started_at  INTEGER,                      -- epoch ms of the first GPS point, if timed
    track       TEXT NOT NULL                 -- JSON [[seconds, lon, lat, alt, epoch], ...]
);
CREATE TABLE IF NOT EXISTS images_computed (
    id              TEXT PRIMARY KEY REFERENCES images(id),
    lon             REAL,
    lat             REAL,
    altitude        REAL,
    compass_angle   REAL
);
"""


class Store:
    """The server's index and file area. Cheap to construct; :meth:`close` when done."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "uploads").mkdir(exist_ok=True)
        self._uploads = str(self.root / "uploads")
        (self.root / "images").mkdir(exist_ok=True)
        (self.root / "videos").mkdir(exist_ok=True)
        self.db = sqlite3.connect(
            self.root / "amly-server.sqlite3", isolation_level=None, check_same_thread=False
        )
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        # Who a token belongs to is cached (amly.server.auth); any change to tokens or users
        # through this connection bumps _auth_changes, one by another connection shows in
        # PRAGMA data_version, and either empties the cache.
        self._auth_changes = 0
        self.token_cache: dict[str, tuple[dict[str, str], float | None]] = {}
        self._token_cache_stamp: tuple[int, int] | None = None
        self.db.create_function("amly_auth_changed", 0, self._auth_changed)
        for table in ("tokens", "users"):
            for op in ("INSERT", "UPDATE", "DELETE"):
                self.db.execute(
                    f"CREATE TEMP TRIGGER IF NOT EXISTS amly_{table}_{op.lower()} AFTER {op} "
                    f"ON main.{table} BEGIN SELECT amly_auth_changed(); END"
                )

    def _auth_changed(self) -> None:
        self._auth_changes += 1

    def valid_token_cache(self) -> dict[str, tuple[dict[str, str], float | None]]:
        """:attr:`token_cache`, emptied first if tokens or users changed since it was filled."""
        (data_version,) = self.db.execute("PRAGMA data_version").fetchone()
        stamp = (self._auth_changes, data_version)
        if stamp != self._token_cache_stamp:
            self.token_cache.clear()
            self._token_cache_stamp = stamp
        return self.token_cache

    def close(self) -> None:
        self.db.close()

    def upload_path(self, session_key: str) -> Path:
        """Where an upload session's bytes live. ``session_key`` must already be validated."""
        return self.root / "uploads" / session_key

    def upload_file(self, session_key: str) -> str:
        """:meth:`upload_path` as a string (the per-request path: no pathlib work)."""
        return f"{self._uploads}{os.sep}{session_key}"

    def new_id(self) -> str:
        """A fresh numeric id, as Mapillary's ids are (digits only, never a path component)."""
        return str(secrets.randbelow(9 * 10**15) + 10**15)

    def holdings(self) -> dict[str, Any]:
        """What the server holds: ``clusters`` finished, ``images``, and ``sequences`` in
        capture order (``id``, ``images``, ``seconds`` from first to last image)."""
        rows = self.db.execute(
            "SELECT s.id, COUNT(i.id), MIN(i.captured_at), MAX(i.captured_at) "
            "FROM sequences s JOIN images i ON i.sequence_id = s.id "
            "GROUP BY s.id ORDER BY MIN(i.captured_at)"
        ).fetchall()
        (clusters,) = self.db.execute("SELECT COUNT(*) FROM clusters").fetchone()
        return {
            "clusters": clusters,
            "images": sum(r[1] for r in rows),
            "sequences": [
                {"id": r[0], "images": r[1], "seconds": (r[3] - r[2]) / 1000.0} for r in rows
            ],
        }

    def add_organization(
        self,
        name: str,
        *,
        org_id: str | None = None,
        slug: str | None = None,
        description: str | None = None,
    ) -> str:
        """Create (or, for an existing ``org_id``, update) an organization; returns its id.

        Raises ``ValueError`` for an empty name or an id that is not decimal digits.
        """
        if not name.strip():
            raise ValueError("an organization needs a name")
        oid = str(org_id) if org_id is not None else self.new_id()
        if not (oid.isascii() and oid.isdigit()):
            raise ValueError(f"organization ids are decimal digits, got {oid!r}")
        self.db.execute(
            "INSERT INTO organizations (id, slug, name, description) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(id) DO UPDATE SET slug = excluded.slug, name = excluded.name,"
            " description = excluded.description",
            (oid, slug if slug is not None else slugify(name), name, description or ""),
        )
        return oid

    def organization(self, org_id: str) -> sqlite3.Row | None:
        """The ``organizations`` row of ``org_id``, or None."""
        row: sqlite3.Row | None = self.db.execute(
            "SELECT id, slug, name, description FROM organizations WHERE id = ?", (org_id,)
        ).fetchone()
        return row


def slugify(name: str) -> str:
    """A URL slug for an organization name, as the service shows one.

    >>> slugify("  Street Views of Berlin! ")
    'street-views-of-berlin'
    """
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
