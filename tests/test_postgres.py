"""The PostgreSQL + pgvector backend beyond the shared store suite: the CLI and server against it, migrating a
real collection from SQLite, loopback-only sockets, idempotent retries, concurrent writers, wide vectors."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from vistext.cli import main
from vistext.errors import StoreError
from vistext.store import ImageRecord, open_store
from vistext.store.postgres.schema import SCHEMA_VERSION


def sql(url: str, query: str) -> Any:
    """The first row of ``query`` (None for a statement without rows) run on its own connection (inspection and
    sabotage, beside the store)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(query)
        return cursor.fetchone() if cursor.description else None


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = main([*argv, "--json", "--quiet"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return code, json.loads(lines[0])


def _listening(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket process ``pid`` listens on, from /proc/net/tcp and tcp6."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = str(fd.readlink()) if fd.is_symlink() else ""
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table, width in (("tcp", 8), ("tcp6", 32)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A: LISTEN
                continue
            address, port = local.split(":")
            raw = bytes.fromhex(address)
            words = [raw[i : i + 4][::-1] for i in range(0, len(raw), 4)]  # each 32-bit word is little-endian
            packed = b"".join(words)
            text = ".".join(str(b) for b in packed) if width == 8 else packed.hex()
            found.append((text, int(port, 16)))
    return found


def test_server_listens_on_loopback_only(pg_server: Any) -> None:
    pid = pg_server.pid()
    assert pid is not None
    sockets = _listening(pid)
    assert sockets == [("127.0.0.1", pg_server.port)], sockets


def test_index_search_similar_info_and_serve_against_postgres(
    pg_url: str,
    sample_photos: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    running_server: Callable[..., Any],
    text_search_available: Callable[[], bool],
    require: Callable[[bool, str], None],
) -> None:
    require(text_search_available(), "no joint image-text model in this checkout: text search needs one")
    photos = shutil.copytree(sample_photos, tmp_path / "photos")
    code, summary = run_json(capsys, "index", str(photos), "--db", pg_url)
    assert code == 0 and summary["added"] == 17 and summary["failed"] == 0
    assert not (photos / ".vistext").exists()  # everything went to the server
    code, summary = run_json(capsys, "index", str(photos), "--db", pg_url)
    assert code == 0 and summary["unchanged"] == 17 and summary["added"] == 0
    code, info = run_json(capsys, "info", "--db", pg_url)
    assert code == 0 and info["ok"] == 17 and info["backend"] == "postgresql"
    code, result = run_json(capsys, "search", "a cat", "-k", "3", "--db", pg_url)
    assert code == 0 and Path(result["results"][0]["path"]).name == "chelsea.png", result
    code, result = run_json(capsys, "similar", str(photos / "chelsea.png"), "-k", "3", "--db", pg_url)
    scores = [hit["score"] for hit in result["results"]]
    assert code == 0 and len(scores) == 3 and scores == sorted(scores, reverse=True)
    assert "chelsea.png" not in {Path(hit["path"]).name for hit in result["results"]}  # the query itself is left out

    from vistext.server import ServerSettings

    with running_server(ServerSettings(db=pg_url, warm_up=False)) as url:
        answer = httpx.get(f"{url}/api/search", params={"q": "flowers", "k": 2}, timeout=60).json()
        assert Path(answer["results"][0]["path"]).name == "flower.jpg", answer


def test_migrate_a_real_collection_from_sqlite(
    pg_url: str, sample_photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photos = shutil.copytree(sample_photos, tmp_path / "photos")
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 not really a JPEG")
    assert main(["index", str(photos), "--quiet", "--json"]) == 0
    capsys.readouterr()
    catalogue = photos / ".vistext" / "catalogue.sqlite"
    with open_store(catalogue) as source:
        cat = source.get(str(photos / "chelsea.png"))
        assert cat is not None and cat.meta is not None and cat.meta.width
        source.set_tags("scenes", {cat.id: [("cat", 0.9), ("indoor", 0.4)]})  # type: ignore[dict-item]
        tagged = len(source.tags_for([r.id for r in source.records() if r.id is not None]))  # + tags with no training
    code, report = run_json(capsys, "migrate", "--from", f"sqlite://{catalogue}", "--to", pg_url)
    assert code == 0 and report["images"] == 18 and report["failed"] == 1 and report["tagged"] == tagged >= 1
    from vistext.store.transfer import store_digest

    with open_store(catalogue, readonly=True) as source, open_store(pg_url) as target:
        assert store_digest(source) == store_digest(target) == (18, report["digest"])
        assert target.spaces() == source.spaces() and target.count("ok") == 17
        kinds = {space.split(":")[0]: about["index"] for space, about in target.info()["spaces"].items()}
        # the joint space and the colour and light measures: read whole, not searched
        assert kinds == {"image": "flat", "fused": "flat", "joint": "none", "attributes": "none"}
        assert target.tag_counts() == source.tag_counts() and target.facets() == source.facets()
        assert {"cat": 1, "indoor": 1}.items() <= target.tag_counts().items()
        copied = target.get(str(photos / "chelsea.png"))
        assert copied is not None and copied.meta == cat.meta
        ids, matrix = source.vectors("image")
        for space in source.spaces():
            np.testing.assert_allclose(target.vectors(space)[1], source.vectors(space)[1], atol=1e-6)
        query = matrix[:3]
        assert [[h.path for h in row] for row in target.search("image", query, 5)] == [
            [h.path for h in row] for row in source.search("image", query, 5)
        ]
    code, again = run_json(capsys, "migrate", "--from", str(photos), "--to", pg_url)  # a re-run duplicates nothing
    assert code == 0 and again["digest"] == report["digest"]


def test_a_retried_batch_never_duplicates_and_prefix_states(pg_url: str, make_records: Callable[..., Any]) -> None:
    records, pooled = make_records(40)
    with open_store(pg_url) as store:
        store.add(records)
        store.add(records)  # a task retried after it had already committed
        assert store.count() == 40 and len(store.vectors("image")[0]) == 40
        assert sql(pg_url, "SELECT count(*) FROM features")[0] == 40
        extra = ImageRecord("/photosX/y.jpg", 1, 1.0, "y", "enc", "ok", None, pooled[0], None)
        store.add([extra])
        under = store.file_states("/photos/")
        assert len(under) == 40 and all(path.startswith("/photos/") for path in under)
        assert set(store.file_states("/photosX/")) == {"/photosX/y.jpg"}


def test_concurrent_writers_and_a_reader(pg_url: str, make_records: Callable[..., Any]) -> None:
    records, pooled = make_records(600, seed=4)
    errors: list[BaseException] = []

    def write(part: list[ImageRecord]) -> None:
        try:
            with open_store(pg_url) as writer:
                for start in range(0, len(part), 25):
                    writer.add(part[start : start + 25])
        except BaseException as error:  # noqa: BLE001 - surfaced to the test thread below
            errors.append(error)

    open_store(pg_url).close()
    threads = [threading.Thread(target=write, args=(records[i::3],)) for i in range(3)]
    with open_store(pg_url, hnsw_threshold=300) as reader:
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            assert all(len(row) <= 5 for row in reader.search("image", pooled[:4], 5))
        for thread in threads:
            thread.join()
        assert not errors, errors
        assert reader.count() == 600
        reader.add(records[:1])  # the next write sees 600 > 300 vectors: the HNSW index is built
        assert reader.info()["spaces"]["image"]["index"] == "hnsw"
        hits = reader.search("image", pooled[:50], 1)
        assert sum(row[0].path == records[i].path for i, row in enumerate(hits)) >= 48


def test_indexes_are_halfvec_and_dimensions_are_checked(pg_url: str) -> None:
    rng = np.random.default_rng(0)
    wide = rng.normal(size=(30, 2500)).astype(np.float32)
    records = [
        ImageRecord(f"/w/{i}.jpg", 1, 1.0, f"w{i}", "enc", "ok", None, wide[i, :64], None, {"wide": wide[i]})
        for i in range(30)
    ]
    with open_store(pg_url, hnsw_threshold=10) as store:
        store.add(records)
        assert store.info()["spaces"]["wide"] == {"dim": 2500, "index": "hnsw", "size": 30}
        kinds = sql(pg_url, "SELECT string_agg(indexdef, ' ') FROM pg_indexes WHERE indexdef LIKE '%USING hnsw%'")[0]
        assert "halfvec(2500)) halfvec_cosine_ops" in kinds and "halfvec(64)) halfvec_cosine_ops" in kinds
        hits = store.search("wide", wide[:5], 1)
        assert [row[0].path for row in hits] == [f"/w/{i}.jpg" for i in range(5)]
        np.testing.assert_allclose(store.vectors("wide")[1][3], wide[3] / np.linalg.norm(wide[3]), atol=1e-6)
        bad = ImageRecord("/w/bad.jpg", 1, 1.0, "b", "enc", "ok", None, wide[0, :64], None, {"wide": wide[0, :10]})
        with pytest.raises(StoreError, match="'wide' holds 2500-d vectors, not 10-d"):
            store.add([bad])


def test_errors_name_the_server(pg_server: Any, pg_url: str) -> None:
    with pytest.raises(StoreError, match=r"cannot connect to postgresql://vistext@127.0.0.1:\d+/nowhere: database"):
        open_store(pg_server.url("nowhere"), timeout=3)
    open_store(pg_url).close()
    sql(pg_url, "UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="catalogue schema version 99 .*newer vistext"):
        open_store(pg_url)


def test_db_start_status_stop(capsys: pytest.CaptureFixture[str], pg_server: Any) -> None:
    import tempfile

    parent = Path(tempfile.mkdtemp(prefix="vistext-db-"))  # not under pytest's folders: those are root-only
    parent.chmod(0o755)
    folder = parent / "server"
    code, started = run_json(capsys, "db", "start", "--dir", str(folder), "--no-fsync")
    try:
        assert code == 0 and started["running"], started and started["url"].startswith(
            "postgresql://vistext@127.0.0.1:"
        )
        with open_store(started["url"]) as store:
            assert store.count() == 0
        code, status = run_json(capsys, "db", "status", "--dir", str(folder))
        assert code == 0 and status["url"] == started["url"]
    finally:
        code, stopped = run_json(capsys, "db", "stop", "--dir", str(folder), "--delete")
    assert code == 0 and not stopped["running"] and not folder.exists()
    parent.rmdir()


_plain = iter(range(1, 1_000_000))


def _plain_database(pg_server: Any, owner: str | None = None) -> str:
    """A new database made from template0: no vector extension, as on any server vistext did not start."""
    name = f"plain_{next(_plain)}"
    with_owner = f" OWNER {owner}" if owner else ""
    sql(pg_server.url("postgres"), f"CREATE DATABASE {name} TEMPLATE template0{with_owner}")
    return name


def test_a_database_without_the_vector_extension_gets_it(pg_server: Any, make_records: Callable[..., Any]) -> None:
    url = pg_server.url(_plain_database(pg_server))
    assert sql(url, "SELECT count(*) FROM pg_extension WHERE extname = 'vector'")[0] == 0
    records, pooled = make_records(10)
    with open_store(url) as store:
        store.add(records)
        assert store.search("image", pooled[3], 1)[0][0].path == records[3].path
    assert sql(url, "SELECT count(*) FROM pg_extension WHERE extname = 'vector'")[0] == 1


def test_a_user_who_may_not_create_the_extension_is_told_the_sql(pg_server: Any) -> None:
    role = f"photos_{next(_plain)}"
    sql(pg_server.url("postgres"), f"CREATE ROLE {role} LOGIN")
    name = _plain_database(pg_server, owner=role)
    url = f"postgresql://{role}@127.0.0.1:{pg_server.port}/{name}"
    with pytest.raises(StoreError) as caught:
        open_store(url, timeout=5)
    message = str(caught.value)
    assert message == (
        f"{url}: this user may not create the vector extension; "
        f"a superuser must run `CREATE EXTENSION vector;` in database '{name}'"
    )
    sql(pg_server.url(name), "CREATE EXTENSION vector")  # what the message asks a superuser to do
    with open_store(url) as store:
        assert store.count() == 0 and store.info()["schema_version"] >= 1


def test_an_unreachable_server_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from vistext.store.postgres.server import free_port

    url = f"postgresql://vistext@127.0.0.1:{free_port()}/vistext"
    with pytest.raises(StoreError) as caught:
        open_store(url)
    assert str(caught.value) == f"cannot connect to {url}: connection refused"
    for command in (["info"], ["search", "dog"], ["index", "."]):
        code, doc = run_json(capsys, *command, "--db", url)
        assert code != 0 and doc["error"].endswith(f"cannot connect to {url}: connection refused"), (command, doc)


def test_a_server_session_killed_while_indexing_is_one_line(pg_url: str, make_records: Callable[..., Any]) -> None:
    records, _ = make_records(5)
    with open_store(pg_url) as store:
        with pytest.raises(StoreError) as caught, store.writer_lock():
            store.add(records[:2])
            sql(pg_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()")  # fmt: skip
            store.add(records[2:])
        assert "\n" not in str(caught.value) and pg_url.split("@")[1] in str(caught.value)
        store.add(records[2:])  # the pool replaces the dead connections
        assert store.count() == 5


def test_a_v3_catalogue_gains_the_removed_tags_table_and_keeps_its_tags(
    pg_url: str, make_records: Callable[..., Any]
) -> None:
    records, _ = make_records(3)
    with open_store(pg_url) as store:
        store.add(records)
        first = min(r.id for r in store.records() if r.id is not None)
        store.set_tags("default", {first: [("dog", 0.9), ("animal", 0.95)]})
    sql(pg_url, "DROP TABLE removed_tags")  # as the previous release left it (nor the later text table)
    sql(pg_url, "DROP TABLE photo_text")
    sql(pg_url, "UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    with open_store(pg_url) as store:
        assert store.info()["schema_version"] == SCHEMA_VERSION
        assert store.tags_for([first]) == {first: [("animal", 0.95), ("dog", 0.9)]}
        store.edit_tags(first, add=["Rex"], remove=["Dog"])
        store.set_tags("default", {first: [("dog", 0.9), ("animal", 0.95)]})  # the next pass: dog stays removed
        assert store.tags_for([first]) == {first: [("Rex", 1.0), ("animal", 0.95)]}
