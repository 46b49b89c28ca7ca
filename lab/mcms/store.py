"""Storage shared by the portal and the worker: release metadata and the SQLite database in DATA_DIR.

The data directory outlives releases (it plays the database and the App_Data folder), so the schema is created
idempotently by whichever process starts first, and several releases or slots may share it.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DB_NAME = "mcms.sqlite3"
OUTBOX = "outbox"
SYNC_MARKER = ".sync_marker"
SESSION_TTL_S = 8 * 3600

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'queued',
    created_at REAL NOT NULL,
    processed_at REAL
);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    item_id INTEGER NOT NULL REFERENCES items(id),
    status TEXT NOT NULL DEFAULT 'queued',
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    worker TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs(status, id);
CREATE TABLE IF NOT EXISTS heartbeats (
    node TEXT PRIMARY KEY,
    pid INTEGER NOT NULL,
    version TEXT NOT NULL,
    state TEXT NOT NULL,
    beat_at REAL NOT NULL,
    shared_dir TEXT,
    last_sync REAL
);
CREATE TABLE IF NOT EXISTS sessions (
    token TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    created_at REAL NOT NULL
);
"""


@dataclass(frozen=True)
class Release:
    version: str
    faults: tuple[str, ...]
    root: Path


@dataclass(frozen=True)
class Item:
    id: int
    name: str
    status: str
    created_at: float
    processed_at: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "created_at": iso(self.created_at),
            "processed_at": iso(self.processed_at) if self.processed_at is not None else None,
        }


@dataclass(frozen=True)
class Heartbeat:
    node: str
    pid: int
    version: str
    state: str
    beat_at: float
    shared_dir: str | None
    last_sync: float | None


def read_release(root: Path) -> Release:
    """The served version comes from the package's own release.json, never from the code."""
    data = json.loads((root / "release.json").read_text(encoding="utf-8"))
    faults = data.get("faults", [])
    if not isinstance(data.get("version"), str) or not isinstance(faults, list):
        raise ValueError(f"{root / 'release.json'}: expected version (string) and faults (list)")
    return Release(version=data["version"], faults=tuple(str(f) for f in faults), root=root)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


def connect(data_dir: Path) -> sqlite3.Connection:
    # A generous busy timeout: portal threads, the worker and other slots share one database file.
    conn = sqlite3.connect(data_dir / DB_NAME, timeout=10.0, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


@contextmanager
def database(data_dir: Path) -> Iterator[sqlite3.Connection]:
    """One connection per request or loop turn: sqlite3 connections must not cross threads."""
    conn = connect(data_dir)
    try:
        yield conn
    finally:
        conn.close()


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    # BEGIN IMMEDIATE takes the write lock up front, so two workers never claim the same job.
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def init(data_dir: Path) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / OUTBOX).mkdir(exist_ok=True)
    last: sqlite3.Error | None = None
    # Switching to WAL can report "locked" while the other process of the node does the same at start-up.
    for _ in range(50):
        try:
            with database(data_dir) as conn:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.executescript(_SCHEMA)
            return
        except sqlite3.OperationalError as exc:
            last = exc
            time.sleep(0.02)
    raise RuntimeError(f"cannot initialise the database in {data_dir}: {last}")


def _item(row: tuple[Any, ...]) -> Item:
    return Item(id=row[0], name=row[1], status=row[2], created_at=row[3], processed_at=row[4])


def list_items(conn: sqlite3.Connection) -> list[Item]:
    rows = conn.execute("SELECT id, name, status, created_at, processed_at FROM items ORDER BY id").fetchall()
    return [_item(r) for r in rows]


def get_item(conn: sqlite3.Connection, item_id: int) -> Item | None:
    row = conn.execute(
        "SELECT id, name, status, created_at, processed_at FROM items WHERE id = ?", (item_id,)
    ).fetchone()
    return _item(row) if row else None


def create_item(conn: sqlite3.Connection, name: str) -> Item:
    """The item and its job are written together: the portal never shows an item the worker will not see."""
    now = time.time()
    with transaction(conn):
        cur = conn.execute(
            "INSERT INTO items (name, status, created_at) VALUES (?, 'queued', ?)", (name, now)
        )
        item_id = int(cur.lastrowid or 0)
        conn.execute("INSERT INTO jobs (item_id, status, created_at) VALUES (?, 'queued', ?)", (item_id, now))
    return Item(id=item_id, name=name, status="queued", created_at=now, processed_at=None)


def queue_depth(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'running')").fetchone()
    return int(row[0])


def node_queue_depth(conn: sqlite3.Connection, node: str) -> int:
    """The jobs waiting for this node's worker: the shared queue, the node's own queue (jobs queued with the
    node's name, which only its worker takes) and what its worker is processing."""
    row = conn.execute(
        "SELECT COUNT(*) FROM jobs WHERE (status = 'queued' AND (worker IS NULL OR worker = ?))"
        " OR (status = 'running' AND worker = ?)",
        (node, node),
    ).fetchone()
    return int(row[0])


def enqueue_node_job(conn: sqlite3.Connection, node: str) -> None:
    """A job on the node's own queue (no item: housekeeping), taken only by that node's worker."""
    conn.execute(
        "INSERT INTO jobs (item_id, status, created_at, worker) VALUES (0, 'queued', ?, ?)",
        (time.time(), node),
    )


def claim_job(conn: sqlite3.Connection, worker: str, *, node_queue: bool = True) -> tuple[int, Item] | None:
    """The oldest job of the shared queue or (unless ``node_queue`` is False) of this node's own queue; a job
    without an item (node housekeeping) is done as it is claimed."""
    own = "worker IS NULL OR worker = ?" if node_queue else "worker IS NULL"
    while True:
        with transaction(conn):
            row = conn.execute(
                f"SELECT id, item_id FROM jobs WHERE status = 'queued' AND ({own}) ORDER BY id LIMIT 1",  # noqa: S608
                (worker,) if node_queue else (),
            ).fetchone()
            if row is None:
                return None
            conn.execute(
                "UPDATE jobs SET status = 'running', started_at = ?, worker = ? WHERE id = ?",
                (time.time(), worker, row[0]),
            )
            item = get_item(conn, row[1])
        if item is not None:
            return int(row[0]), item
        finish_job(conn, row[0], None)


def finish_job(conn: sqlite3.Connection, job_id: int, item_id: int | None) -> None:
    now = time.time()
    with transaction(conn):
        if item_id is not None:
            conn.execute(
                "UPDATE items SET status = 'processed', processed_at = ? WHERE id = ?", (now, item_id)
            )
        conn.execute("UPDATE jobs SET status = 'done', finished_at = ? WHERE id = ?", (now, job_id))


def release_job(conn: sqlite3.Connection, job_id: int) -> None:
    conn.execute("UPDATE jobs SET status = 'queued', worker = NULL WHERE id = ?", (job_id,))


def requeue_abandoned(conn: sqlite3.Connection, worker: str) -> int:
    """Jobs a killed worker of this node had claimed go back to the queue; other nodes' jobs are theirs."""
    cur = conn.execute(
        "UPDATE jobs SET status = 'queued', worker = NULL WHERE status = 'running' AND worker = ?", (worker,)
    )
    return cur.rowcount


def beat(
    conn: sqlite3.Connection,
    node: str,
    *,
    pid: int,
    version: str,
    state: str,
    shared_dir: str | None,
    last_sync: float | None,
) -> None:
    conn.execute(
        "INSERT INTO heartbeats (node, pid, version, state, beat_at, shared_dir, last_sync)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT(node) DO UPDATE SET pid = excluded.pid, version = excluded.version,"
        " state = excluded.state,"
        " beat_at = excluded.beat_at, shared_dir = excluded.shared_dir,"
        " last_sync = COALESCE(excluded.last_sync, heartbeats.last_sync)",
        (node, pid, version, state, time.time(), shared_dir, last_sync),
    )


def heartbeat(conn: sqlite3.Connection, node: str) -> Heartbeat | None:
    row = conn.execute(
        "SELECT node, pid, version, state, beat_at, shared_dir, last_sync FROM heartbeats WHERE node = ?",
        (node,),
    ).fetchone()
    if row is None:
        return None
    return Heartbeat(
        node=row[0],
        pid=row[1],
        version=row[2],
        state=row[3],
        beat_at=row[4],
        shared_dir=row[5],
        last_sync=row[6],
    )


def create_session(conn: sqlite3.Connection, token: str, user: str) -> None:
    now = time.time()
    conn.execute("DELETE FROM sessions WHERE created_at < ?", (now - SESSION_TTL_S,))
    conn.execute("INSERT INTO sessions (token, user, created_at) VALUES (?, ?, ?)", (token, user, now))


def session_user(conn: sqlite3.Connection, token: str) -> str | None:
    row = conn.execute(
        "SELECT user FROM sessions WHERE token = ? AND created_at >= ?", (token, time.time() - SESSION_TTL_S)
    ).fetchone()
    return str(row[0]) if row else None


def end_session(conn: sqlite3.Connection, token: str) -> None:
    conn.execute("DELETE FROM sessions WHERE token = ?", (token,))
