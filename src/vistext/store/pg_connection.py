"""Connections to the PostgreSQL store: URLs shown without passwords, ad-hoc SQL access, the writers' lock."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from vistext.errors import StoreError
from vistext.store.pg_schema import WRITER_LOCK
from vistext.store.pg_vectors import register_vectors


def display(url: str) -> str:
    """The URL without its password, for messages."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    user = f"{info['user']}@" if info.get("user") else ""
    port = f":{info['port']}" if info.get("port") else ""
    return f"postgresql://{user}{info.get('host', '')}{port}/{info.get('dbname', '')}"


class SqlAccess:
    """``store.catalogue.conn``: one autocommit connection for ad-hoc SQL (inspection, maintenance, tests), as the
    SQLite store's ``catalogue.conn``; opened on first use, closed with the store."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: psycopg.Connection | None = None

    @property
    def conn(self) -> psycopg.Connection:
        if self._conn is None:
            self._conn = psycopg.connect(self.url, autocommit=True)
            register_vectors(self._conn)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


_HOLDER = (
    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE l.locktype = 'advisory' AND l.granted AND l.objid = %s AND l.database = "
    "(SELECT oid FROM pg_database WHERE datname = current_database()) LIMIT 1"
)


@contextmanager
def advisory_writer_lock(conn: psycopg.Connection, where: str) -> Iterator[None]:
    """Hold the writers' session advisory lock on ``conn`` (the server frees it when a process dies); a second
    holder gets a one-line error naming the first (its ``application_name``: "vistext pid N")."""
    conn.autocommit = True
    try:
        got = (conn.execute("SELECT pg_try_advisory_lock(%s)", (WRITER_LOCK,)).fetchone() or (False,))[0]
        if not got:
            holder = conn.execute(_HOLDER, (WRITER_LOCK & 0xFFFFFFFF,)).fetchone()
            name = holder[0].removeprefix("vistext ") if holder and holder[0] else "another process"
            raise StoreError(
                f"{where}: another `vistext index` ({name}) is writing this catalogue; "
                "wait for it to finish, then run again"
            )
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (WRITER_LOCK,))
    finally:
        conn.autocommit = False
