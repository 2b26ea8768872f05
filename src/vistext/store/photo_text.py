"""The text found in photos (``vistext index --ocr``), one table in both backends: content hash -> the lines an
OCR engine read, each with its confidence, and those lines joined as one searchable text. Keyed by content like
the features and the perceptual-hash cache: every copy of the same bytes shares one row, a changed file gets a
new content hash, and a row goes with the last photo holding it. A row with empty text means "read, no text":
the photo is not read again. Each backend indexes the text's ``words`` (as ``words`` splits them, the one
tokenizer of the stored side, the query side and the scoring) for full-text search: SQLite FTS5, PostgreSQL
tsvector + GIN.

``mark`` is the backend's query-parameter marker (``?`` for SQLite, ``%s`` for PostgreSQL).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

LINE_SEPARATOR = " / "  # how a photo's lines are joined into its text (what a hit shows: "OPEN / 24 HOURS")
MAX_TEXT_CHARS = 4000  # a screenshot of a document can hold pages; what is stored and searched is capped
MATCH_LIMIT = 2000  # candidate photos a full-text query returns (best first), before scoring
_CHUNK = 500
# letters and digits apart: OCR often runs "OPEN 24" together as "OPEN24", and a query names them apart
_WORD = re.compile(r"[^\W\d_]+|\d+")
# words a query holds that say nothing about the text in a photo ("a sign that says open")
STOP_WORDS = frozenset(
    "a an and are as at be by for from has have in is it its of on or that the this to with photo picture image "
    "sign says saying written text word words".split()
)

Lines = Sequence[tuple[str, float]]


def words(text: str) -> list[str]:
    """Lower-case words of ``text`` (runs of letters, any script, or of digits) without accents, in order: what
    the full-text index holds (``words`` column) and what a query is split into ("Zürich" finds "ZURICH")."""
    bare = "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))
    return [word.casefold() for word in _WORD.findall(bare)]


def query_words(text: str) -> list[str]:
    """The words of a search text worth looking for in photos: no stop words, no one-letter words except digits,
    each once (order kept)."""
    found = [w for w in words(text) if w not in STOP_WORDS and (len(w) > 1 or w.isdigit())]
    return list(dict.fromkeys(found))


def searchable_words(text: str) -> list[str]:
    """What the full-text index holds for a photo's text: its ``words``, and where letters ran together (OCR
    engines drop the spaces between words: "EMERGENCYEXIT"), the common words they split into as well."""
    from vistext.text import split_run

    found: list[str] = []
    for word in words(text):
        found.append(word)
        if word.isalpha() and len(word) > 4:
            parts = split_run(word)
            found += parts if len(parts) > 1 else []
    return found


def joined(lines: Lines) -> str:
    """The searchable text of a photo's lines."""
    return LINE_SEPARATOR.join(line for line, _ in lines)[:MAX_TEXT_CHARS]


def write_texts(conn: Any, texts: Mapping[str, Lines], mark: str) -> None:
    """Store each content hash's lines (replacing what it had); an empty sequence records "read, no text"."""
    rows = []
    for sha, lines in texts.items():
        text = joined(lines)
        scored = json.dumps([[line, round(float(score), 4)] for line, score in lines])
        rows.append((sha, text, " ".join(searchable_words(text)), scored))
    if not rows:
        return
    cursor = conn.cursor()
    cursor.executemany(f"DELETE FROM photo_text WHERE sha = {mark}", [(row[0],) for row in rows])
    cursor.executemany(
        f"INSERT INTO photo_text (sha, text, words, lines) VALUES ({mark}, {mark}, {mark}, {mark})", rows
    )


def texts_for(conn: Any, ids: Iterable[int], mark: str) -> dict[int, str]:
    """Image id -> its stored text, for those of ``ids`` whose photo has any."""
    wanted = sorted({int(i) for i in ids if -(2**63) <= int(i) < 2**63})  # any other id is in no catalogue
    found: dict[int, str] = {}
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        query = (
            "SELECT i.id, p.text FROM images i JOIN photo_text p ON p.sha = i.sha "
            f"WHERE p.text != '' AND i.id IN ({', '.join([mark] * len(chunk))})"
        )
        found.update((int(image_id), str(text)) for image_id, text in conn.execute(query, chunk).fetchall())
    return found


def lines_for(conn: Any, shas: Iterable[str], mark: str) -> dict[str, list[tuple[str, float]]]:
    """Content hash -> its stored lines with their confidence, for those of ``shas`` whose text was read."""
    wanted = sorted(set(shas))
    found: dict[str, list[tuple[str, float]]] = {}
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        query = f"SELECT sha, lines FROM photo_text WHERE sha IN ({', '.join([mark] * len(chunk))})"
        for sha, lines in conn.execute(query, chunk).fetchall():
            found[str(sha)] = [(str(line), float(score)) for line, score in json.loads(lines)]
    return found


def shas_to_read(conn: Any, decode: Callable[[Any], str]) -> dict[str, str]:
    """Content hash -> one path holding it (``decode`` turns a stored path into one), for every ok photo whose text
    was never read."""
    rows = conn.execute(
        "SELECT i.sha, min(i.path) FROM images i WHERE i.status = 'ok' "
        "AND NOT EXISTS (SELECT 1 FROM photo_text p WHERE p.sha = i.sha) GROUP BY i.sha ORDER BY min(i.id)"
    ).fetchall()
    return {str(sha): decode(path) for sha, path in rows}
