"""The PostgreSQL database behind a store: its connection pool, transactions and the writers' lock.

``Database.open`` fails fast and in one line: it first connects once, with a short connect timeout, so an
unreachable server says "cannot connect to postgresql://...: connection refused" within seconds, not after the
pool's wait; on that connection it makes sure pgvector's ``vector`` type exists (creating the extension where the
user may, else naming the SQL a superuser must run), because every pooled connection registers that type as it
opens. URLs are shown without their password.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import psycopg
from psycopg_pool import ConnectionPool

from vistext.errors import StoreError
from vistext.store.postgres.schema import WRITER_LOCK
from vistext.store.postgres.vectors import register_vectors

CONNECT_TIMEOUT = 5  # seconds to reach the server at all; the pool's own timeout covers a busy server


def display(url: str) -> str:
    """The URL without its password, for messages."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    user = f"{info['user']}@" if info.get("user") else ""
    port = f":{info['port']}" if info.get("port") else ""
    return f"postgresql://{user}{info.get('host', '')}{port}/{info.get('dbname', '')}"


def _reason(error: psycopg.Error) -> str:
    """The cause of a failed connection in a few words ("connection refused", "database ... does not exist")."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else type(error).__name__
    text = re.sub(r"^connection failed: ", "", text)
    text = re.sub(r'^connection to server at "[^"]*"(?:[^:]*)? failed: ', "", text)
    text = re.sub(r"^(?:FATAL|ERROR): +", "", text)
    return text[:1].lower() + text[1:] if text[:1].isupper() and text[1:2].islower() else text


def _ensure_vector_type(conn: psycopg.Connection, where: str, *, readonly: bool) -> None:
    """pgvector's ``vector`` type must exist before a pooled connection can register it: create the extension
    when it is missing and this user may, else say in one line what a superuser must run."""
    if conn.execute("SELECT 1 FROM pg_type WHERE typname = 'vector'").fetchone():
        return
    database = conn.info.dbname
    must_run = f"a superuser must run `CREATE EXTENSION vector;` in database {database!r}"
    if readonly:
        raise StoreError(f"{where}: no vistext catalogue here (the vector extension is not created; {must_run})")
    try:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    except psycopg.errors.InsufficientPrivilege:
        raise StoreError(f"{where}: this user may not create the vector extension; {must_run}") from None
    except (psycopg.errors.UndefinedFile, psycopg.errors.FeatureNotSupported) as error:
        raise StoreError(
            f"{where}: pgvector is not installed on this server ({_reason(error)}); install pgvector, then {must_run}"
        ) from None


class Database:
    """A pool of connections to one database, each knowing the ``vector`` type and the session's
    ``hnsw.ef_search``; ``transaction()`` hands one out for a transaction. Thread-safe."""

    def __init__(self, url: str, *, readonly: bool, timeout: float, pool_size: int, ef_search: int) -> None:
        self.url = url if "://" in url else f"postgresql://{url}"
        self.where = display(self.url)
        self.readonly = readonly
        connect = min(CONNECT_TIMEOUT, max(1, int(timeout)))
        try:
            with psycopg.connect(self.url, autocommit=True, connect_timeout=connect) as conn:
                _ensure_vector_type(conn, self.where, readonly=readonly)
        except psycopg.OperationalError as error:
            raise StoreError(f"cannot connect to {self.where}: {_reason(error)}") from None
        except psycopg.Error as error:
            raise StoreError(f"{self.where}: {_reason(error)}") from None
        options = "-c default_transaction_read_only=on" if readonly else ""
        self.pool = ConnectionPool(
            self.url,
            min_size=1,
            max_size=pool_size,
            timeout=timeout,
            open=False,
            kwargs={
                "application_name": f"vistext pid {os.getpid()}",
                "options": options,
                "connect_timeout": connect,
            },
            configure=lambda conn: register_vectors(conn, ef_search),
        )
        try:
            self.pool.open(wait=True, timeout=timeout)
        except psycopg.Error as error:
            self.pool.close()
            raise StoreError(f"cannot connect to {self.where}: {_reason(error)}") from None

    @contextmanager
    def transaction(self, *, snapshot: bool = False, read: bool = False) -> Iterator[psycopg.Connection]:
        """A transaction on a pooled connection (``snapshot``: repeatable read, for several consistent reads;
        ``read``: autocommit, for one statement: no BEGIN/COMMIT round trips); failures become a StoreError."""
        try:
            with self.pool.connection() as conn:
                if read:
                    conn.autocommit = True
                elif snapshot:  # sent with the first statement's BEGIN, not as a round trip of its own
                    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
                try:
                    yield conn
                    conn.commit()  # (nothing to commit in autocommit)
                finally:
                    with suppress(psycopg.Error):
                        conn.rollback()  # a no-op after the commit; ends a failed transaction
                        conn.autocommit, conn.isolation_level = False, None
        except psycopg.Error as error:
            raise StoreError(f"{self.where}: {str(error).splitlines()[0]}") from None

    def check_writable(self) -> None:
        if self.readonly:
            raise StoreError(f"{self.where}: the store is open read-only; open it without readonly to write")

    def close(self) -> None:
        self.pool.close()


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
            # the server frees a dead session's locks itself: a lost connection must not hide the real error
            with suppress(psycopg.Error):
                conn.execute("SELECT pg_advisory_unlock(%s)", (WRITER_LOCK,))
    finally:
        with suppress(psycopg.Error):
            conn.autocommit = False
