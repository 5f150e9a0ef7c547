"""All of the service's SQL, in one module: a SQLite database under ``HANAMI_HOME``.

Every statement uses bound parameters; table and column names come only from the constants in
this module, never from a request.  The schema carries a version (``PRAGMA user_version``) and is
migrated forward at start; the journal is WAL so that readers never wait for the writer.

One connection is shared by the event loop and the worker threads, serialised by a lock: every
statement is short, and SQLite would serialise the writers anyway.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from .errors import Conflict, NotFound

SCHEMA_VERSION = 1

_SCHEMA_V1 = """
CREATE TABLE users (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, password_hash TEXT NOT NULL,
    is_admin INTEGER NOT NULL, creator_id TEXT, created_at TEXT NOT NULL);
CREATE TABLE projects (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, creator_id TEXT, created_at TEXT NOT NULL);
CREATE TABLE memberships (
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    role TEXT NOT NULL, created_at TEXT NOT NULL, PRIMARY KEY (user_id, project_id));
CREATE TABLE revoked_tokens (jti TEXT PRIMARY KEY, expires_at REAL NOT NULL);
CREATE TABLE clusters (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, project_id TEXT NOT NULL, owner_id TEXT NOT NULL,
    created_at TEXT NOT NULL, template TEXT NOT NULL, seed INTEGER NOT NULL,
    n_inputs INTEGER NOT NULL, n_outputs INTEGER NOT NULL);
CREATE TABLE datasets (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, project_id TEXT NOT NULL, owner_id TEXT NOT NULL,
    created_at TEXT NOT NULL, type TEXT NOT NULL, samples INTEGER NOT NULL,
    inputs INTEGER NOT NULL, outputs INTEGER NOT NULL, columns TEXT NOT NULL,
    size_bytes INTEGER NOT NULL, sha256 TEXT NOT NULL);
CREATE TABLE tasks (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, project_id TEXT NOT NULL, owner_id TEXT NOT NULL,
    created_at TEXT NOT NULL, type TEXT NOT NULL, cluster_id TEXT NOT NULL,
    dataset_id TEXT NOT NULL, epochs INTEGER NOT NULL, state TEXT NOT NULL,
    progress REAL NOT NULL, samples_done INTEGER NOT NULL, samples_total INTEGER NOT NULL,
    error TEXT, started_at TEXT, finished_at TEXT, result_id TEXT);
CREATE INDEX tasks_by_cluster ON tasks (cluster_id);
CREATE TABLE results (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, project_id TEXT NOT NULL, owner_id TEXT NOT NULL,
    created_at TEXT NOT NULL, task_id TEXT NOT NULL, cluster_id TEXT NOT NULL,
    dataset_id TEXT NOT NULL, samples INTEGER NOT NULL, outputs INTEGER NOT NULL);
CREATE TABLE checkpoints (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, project_id TEXT NOT NULL, owner_id TEXT NOT NULL,
    created_at TEXT NOT NULL, cluster_id TEXT, size_bytes INTEGER NOT NULL, sha256 TEXT NOT NULL,
    synapses INTEGER NOT NULL);
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, user_id TEXT, method TEXT NOT NULL,
    path TEXT NOT NULL, status INTEGER NOT NULL);
CREATE TABLE error_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, user_id TEXT, method TEXT NOT NULL,
    path TEXT NOT NULL, message TEXT NOT NULL);
"""

#: Tables of resources that belong to an owner in a project; the visibility rule applies to them.
RESOURCE_TABLES = ("clusters", "datasets", "tasks", "results", "checkpoints")
#: Resources whose names are unique per owner and project.
NAMED_TABLES = ("clusters", "datasets", "checkpoints")


def now() -> str:
    """The current time as ISO 8601 UTC with milliseconds, e.g. ``2025-01-31T12:00:00.123Z``."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Scope:
    """Who asks, for the visibility rule: a global admin sees everything; a project admin sees
    every resource of the token's project; a member sees the resources they own in it."""

    user_id: str
    project_id: str | None
    role: str  # "admin", "project_admin", "member" or "user" (no project)

    def condition(self) -> tuple[str, tuple]:
        if self.role == "admin":
            return "1 = 1", ()
        if self.role == "project_admin":
            return "project_id = ?", (self.project_id,)
        if self.role == "member":
            return "project_id = ? AND owner_id = ?", (self.project_id, self.user_id)
        return "0 = 1", ()


class Store:
    """The database.  Methods return plain dicts (rows) and raise NotFound / Conflict."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA foreign_keys = ON")
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._migrate()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- plumbing -------------------------------------------------------------------------------

    def _migrate(self) -> None:
        with self._lock:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.path} has schema version {version}, newer than this hanami_torch "
                    f"({SCHEMA_VERSION}); upgrade hanami_torch or point HANAMI_HOME elsewhere"
                )
            if version == 0:
                self._db.executescript("BEGIN;" + _SCHEMA_V1 + f"PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")

    def _all(self, sql: str, params: Iterable = ()) -> list[dict]:
        with self._lock:
            return [dict(row) for row in self._db.execute(sql, tuple(params)).fetchall()]

    def _one(self, sql: str, params: Iterable = ()) -> dict | None:
        with self._lock:
            row = self._db.execute(sql, tuple(params)).fetchone()
        return dict(row) if row is not None else None

    def _run(self, sql: str, params: Iterable = ()) -> int:
        with self._lock:
            return self._db.execute(sql, tuple(params)).rowcount

    def _insert(self, table: str, row: dict) -> dict:
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        try:
            self._run(f"INSERT INTO {table} ({columns}) VALUES ({marks})", row.values())
        except sqlite3.IntegrityError as error:
            raise Conflict(f"{table[:-1]} {row.get('id')!r} exists already") from error
        return row

    def _page(self, table: str, where: str, params: tuple, limit: int, offset: int, order: str) -> tuple[list[dict], int]:
        total = self._one(f"SELECT COUNT(*) AS n FROM {table} WHERE {where}", params)["n"]
        rows = self._all(f"SELECT * FROM {table} WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?", params + (limit, offset))
        return rows, total

    # -- users, projects, memberships ----------------------------------------------------------

    def add_user(self, user_id: str, name: str, password_hash: str, is_admin: bool, creator_id: str | None) -> dict:
        return self._insert("users", {"id": user_id, "name": name, "password_hash": password_hash,
                                      "is_admin": int(is_admin), "creator_id": creator_id, "created_at": now()})

    def user(self, user_id: str) -> dict:
        row = self._one("SELECT * FROM users WHERE id = ?", (user_id,))
        if row is None:
            raise NotFound(f"no user {user_id!r}")
        return row

    def find_user(self, user_id: str) -> dict | None:
        return self._one("SELECT * FROM users WHERE id = ?", (user_id,))

    def users(self, limit: int, offset: int) -> tuple[list[dict], int]:
        return self._page("users", "1 = 1", (), limit, offset, "created_at DESC, id")

    def count_admins(self) -> int:
        return self._one("SELECT COUNT(*) AS n FROM users WHERE is_admin = 1")["n"]

    def update_user(self, user_id: str, **values: Any) -> dict:
        allowed = {"name", "password_hash", "is_admin"}
        changes = {key: value for key, value in values.items() if key in allowed and value is not None}
        if changes:
            assignments = ", ".join(f"{key} = ?" for key in changes)
            self._run(f"UPDATE users SET {assignments} WHERE id = ?", (*changes.values(), user_id))
        return self.user(user_id)

    def delete_user(self, user_id: str) -> None:
        if self._run("DELETE FROM users WHERE id = ?", (user_id,)) == 0:
            raise NotFound(f"no user {user_id!r}")

    def add_project(self, project_id: str, name: str, creator_id: str | None) -> dict:
        return self._insert("projects", {"id": project_id, "name": name, "creator_id": creator_id, "created_at": now()})

    def project(self, project_id: str) -> dict:
        row = self._one("SELECT * FROM projects WHERE id = ?", (project_id,))
        if row is None:
            raise NotFound(f"no project {project_id!r}")
        return row

    def find_project(self, project_id: str) -> dict | None:
        return self._one("SELECT * FROM projects WHERE id = ?", (project_id,))

    def projects(self, limit: int, offset: int, user_id: str | None = None) -> tuple[list[dict], int]:
        if user_id is None:
            return self._page("projects", "1 = 1", (), limit, offset, "created_at DESC, id")
        return self._page("projects", "id IN (SELECT project_id FROM memberships WHERE user_id = ?)",
                          (user_id,), limit, offset, "created_at DESC, id")

    def delete_project(self, project_id: str) -> None:
        self.project(project_id)
        for table in RESOURCE_TABLES:
            if self._one(f"SELECT 1 AS x FROM {table} WHERE project_id = ? LIMIT 1", (project_id,)):
                raise Conflict(f"project {project_id!r} still holds {table}; delete them first")
        self._run("DELETE FROM projects WHERE id = ?", (project_id,))

    def set_membership(self, user_id: str, project_id: str, role: str) -> dict:
        self.user(user_id)
        self.project(project_id)
        self._run(
            "INSERT INTO memberships (user_id, project_id, role, created_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (user_id, project_id) DO UPDATE SET role = excluded.role",
            (user_id, project_id, role, now()),
        )
        return self.membership(user_id, project_id)

    def membership(self, user_id: str, project_id: str) -> dict:
        row = self._one("SELECT * FROM memberships WHERE user_id = ? AND project_id = ?", (user_id, project_id))
        if row is None:
            raise NotFound(f"user {user_id!r} is not a member of project {project_id!r}")
        return row

    def find_membership(self, user_id: str, project_id: str) -> dict | None:
        return self._one("SELECT * FROM memberships WHERE user_id = ? AND project_id = ?", (user_id, project_id))

    def memberships_of_project(self, project_id: str, limit: int, offset: int) -> tuple[list[dict], int]:
        return self._page("memberships", "project_id = ?", (project_id,), limit, offset, "created_at DESC, user_id")

    def memberships_of_user(self, user_id: str) -> list[dict]:
        return self._all("SELECT * FROM memberships WHERE user_id = ? ORDER BY project_id", (user_id,))

    def delete_membership(self, user_id: str, project_id: str) -> None:
        if self._run("DELETE FROM memberships WHERE user_id = ? AND project_id = ?", (user_id, project_id)) == 0:
            raise NotFound(f"user {user_id!r} is not a member of project {project_id!r}")

    # -- tokens ---------------------------------------------------------------------------------

    def revoke_token(self, jti: str, expires_at: float) -> None:
        self._run("INSERT OR IGNORE INTO revoked_tokens (jti, expires_at) VALUES (?, ?)", (jti, expires_at))
        self._run("DELETE FROM revoked_tokens WHERE expires_at < ?", (time.time() - 60,))

    def is_revoked(self, jti: str) -> bool:
        return self._one("SELECT 1 AS x FROM revoked_tokens WHERE jti = ?", (jti,)) is not None

    # -- resources (clusters, datasets, tasks, results, checkpoints) ----------------------------

    def name_taken(self, table: str, name: str, project_id: str, owner_id: str) -> bool:
        assert table in NAMED_TABLES
        return self._one(f"SELECT 1 AS x FROM {table} WHERE name = ? AND project_id = ? AND owner_id = ?",
                         (name, project_id, owner_id)) is not None

    def add_resource(self, table: str, row: dict) -> dict:
        assert table in RESOURCE_TABLES
        if table in NAMED_TABLES and self.name_taken(table, row["name"], row["project_id"], row["owner_id"]):
            raise Conflict(f"you already have a {table[:-1]} named {row['name']!r} in this project; pick another name")
        self._insert(table, {"created_at": now(), **row})
        return self.resource(table, row["id"], None)

    def resource(self, table: str, resource_id: str, scope: Scope | None) -> dict:
        """The row, if ``scope`` may see it (``None``: no check, for the server's own use)."""
        assert table in RESOURCE_TABLES
        where, params = scope.condition() if scope is not None else ("1 = 1", ())
        row = self._one(f"SELECT * FROM {table} WHERE id = ? AND {where}", (resource_id, *params))
        if row is None:
            raise NotFound(f"no {table[:-1]} {resource_id!r} that you can see")
        return row

    def resources(self, table: str, scope: Scope, limit: int, offset: int, **equal: Any) -> tuple[list[dict], int]:
        assert table in RESOURCE_TABLES
        where, params = scope.condition()
        for column, value in equal.items():
            if value is not None:
                assert column in ("cluster_id", "dataset_id", "state", "type")
                where += f" AND {column} = ?"
                params += (value,)
        return self._page(table, where, params, limit, offset, "created_at DESC, id")

    def all_resources(self, table: str, **equal: Any) -> list[dict]:
        assert table in RESOURCE_TABLES
        where, params = "1 = 1", ()
        for column, value in equal.items():
            assert column in ("cluster_id", "dataset_id", "state")
            where += f" AND {column} = ?"
            params += (value,)
        return self._all(f"SELECT * FROM {table} WHERE {where} ORDER BY created_at, id", params)

    def update_resource(self, table: str, resource_id: str, **values: Any) -> None:
        assert table in RESOURCE_TABLES
        assignments = ", ".join(f"{key} = ?" for key in values)
        self._run(f"UPDATE {table} SET {assignments} WHERE id = ?", (*values.values(), resource_id))

    def delete_resource(self, table: str, resource_id: str) -> bool:
        assert table in RESOURCE_TABLES
        return self._run(f"DELETE FROM {table} WHERE id = ?", (resource_id,)) > 0

    def count(self, table: str, **equal: Any) -> int:
        assert table in RESOURCE_TABLES + ("users", "projects")
        where, params = "1 = 1", ()
        for column, value in equal.items():
            where += f" AND {column} = ?"
            params += (value,)
        return self._one(f"SELECT COUNT(*) AS n FROM {table} WHERE {where}", params)["n"]

    # -- logs -----------------------------------------------------------------------------------

    def audit(self, user_id: str | None, method: str, path: str, status: int) -> None:
        self._run("INSERT INTO audit_log (at, user_id, method, path, status) VALUES (?, ?, ?, ?, ?)",
                  (now(), user_id, method, path, status))

    def log_error(self, user_id: str | None, method: str, path: str, message: str) -> int:
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO error_log (at, user_id, method, path, message) VALUES (?, ?, ?, ?, ?)",
                (now(), user_id, method, path, message))
            return cursor.lastrowid

    def log_page(self, table: str, limit: int, offset: int, user_id: str | None) -> tuple[list[dict], int]:
        assert table in ("audit_log", "error_log")
        where, params = ("user_id = ?", (user_id,)) if user_id is not None else ("1 = 1", ())
        return self._page(table, where, params, limit, offset, "id DESC")


def dumps(value: Any) -> str:
    """JSON text for a TEXT column."""
    return json.dumps(value, separators=(",", ":"))
