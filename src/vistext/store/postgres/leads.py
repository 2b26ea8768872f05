"""A space's leading directions: the short vector a PostgreSQL space's HNSW index is built over.

The vectors of most searched spaces lie close to a few directions: the default fused space's 899 dimensions
hold 98.9 % of their energy in their top 192 principal directions, fitted on 1,000 photos of one kind and
checked on 10,000 of every kind (Flickr8k and opendomain-classes). Such a space is indexed by each vector's
``lead``: the unit vector's coordinates along those ``P`` directions, stored as ``halfvec`` beside the float32
vector. At 1M rows the graph over 160-d leads built in 0.52-0.56x the time of one over the 899-d vectors and
held a quarter of their bytes; a search walks it for more candidates than ``ef_search`` (``search``) and scores
them again with the full float32 vectors, so the hits it returns are ranked exactly.

The basis is fitted once (``decide``), when the space first outgrows exact search, from the vectors it then
holds, under a lock that writers who do not know the decision yet take shared (``read``): no row is written
without its lead after the decision, and the rows already written get theirs then. It never changes: every
stored lead was made with it. A space whose energy is spread over many directions (the backbone's 1,280-d
pooled features need over 384 for 94 %), or too few vectors to fit one from, keeps an index over the whole
vector: ``lead_dims`` 0. ``NULL``: not decided yet.
"""

from __future__ import annotations

import numpy as np
import psycopg
from psycopg import sql

from vistext.store.postgres.indexes import space_source
from vistext.store.postgres.vectors import as_array, dump_vector
from vistext.store.records import IMAGE_SPACE, l2_normalise

LEAD_ENERGY = 0.985  # the share of the fitted vectors' energy the leading directions keep
STEP = 32  # lead sizes are multiples of this
MAX_SHARE = 3  # a lead longer than a third of the vector saves too little: the whole vector is indexed
ROWS_PER_DIRECTION = 3  # a fit needs at least this many vectors per direction it keeps (and one per dimension)
FIT_ROWS = 20_000  # the most vectors a fit reads
BACKFILL_CHUNK = 2_000

_LOCK = "SELECT {}(hashtextextended('lead:' || %s, 0))"


def fit_basis(sample: np.ndarray) -> np.ndarray | None:
    """(P, dim) the leading directions of ``sample``'s unit vectors, P the fewest (a multiple of ``STEP``) that
    keep ``LEAD_ENERGY`` of their energy; None where that saves too little or the sample is too small."""
    rows, dim = sample.shape
    if rows < dim:
        return None
    unit = l2_normalise(np.asarray(sample, dtype=np.float32)).astype(np.float64)
    _, singular, directions = np.linalg.svd(unit, full_matrices=False)
    energy = np.cumsum(singular**2) / max(float(np.sum(singular**2)), 1e-30)
    # at least an eighth of the dimensions: a first thousand photos of one kind may hold their energy in fewer
    # directions than the collection they begin (fitted on 1,000 photos of 26 classes, 128 of the fused space's
    # 899 directions still found 0.997 of the top 10 on 10,125 of every kind)
    size = max(int(np.searchsorted(energy, LEAD_ENERGY)) + 1, dim // 8)
    size = -(-size // STEP) * STEP
    if size * MAX_SHARE > dim or size * ROWS_PER_DIRECTION > rows:
        return None
    return np.ascontiguousarray(directions[:size], dtype=np.float32)


def leads_of(vectors: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """(N, P) the leads of N vectors: their unit vectors' coordinates along the basis."""
    return l2_normalise(np.atleast_2d(np.asarray(vectors, dtype=np.float32))) @ basis.T


class Leads:
    """Each space's decided basis (None: the whole vector is indexed), cached for one store: a decision never
    changes once made, so it is read from the server once."""

    def __init__(self) -> None:
        self._bases: dict[str, np.ndarray | None] = {}

    def decided(self, space: str) -> bool:
        return space in self._bases

    def basis(self, space: str) -> np.ndarray | None:
        return self._bases.get(space)

    def read(self, conn: psycopg.Connection, spaces: list[str], *, lock: bool) -> None:
        """Learn the decisions made on ``spaces`` (``lock``: as a writer, holding the spaces' lead locks shared
        until the transaction ends, so a decision cannot land between this read and the rows written)."""
        undecided = sorted(space for space in spaces if space not in self._bases)
        if not undecided:
            return
        if lock:
            for space in undecided:
                conn.execute(sql.SQL(_LOCK).format(sql.SQL("pg_advisory_xact_lock_shared")), (space,))
        # read through the row as JSON: a catalogue older than v7 opened read-only has no such columns
        rows = conn.execute(
            "SELECT s.space, (to_jsonb(s) ->> 'lead_dims')::int, to_jsonb(s) ->> 'basis' FROM spaces s "
            "WHERE s.space = ANY(%s)",
            (undecided,),
        ).fetchall()
        for space, size, basis in rows:
            if size is not None:
                self._remember(space, int(size), basis)

    def decide(self, conn: psycopg.Connection, space: str) -> np.ndarray | None:
        """Fit ``space``'s basis from the vectors it holds and give every row its lead, once (inside the
        caller's transaction, holding the space's lead lock); returns the basis (None: the whole vector)."""
        conn.execute(sql.SQL(_LOCK).format(sql.SQL("pg_advisory_xact_lock")), (space,))
        row = conn.execute("SELECT lead_dims, basis FROM spaces WHERE space = %s", (space,)).fetchone()
        if row is None:
            return None
        if row[0] is not None:  # decided before
            self._remember(space, int(row[0]), row[1])
            return self._bases[space]
        basis = fit_basis(_sample(conn, space))
        conn.execute(
            "UPDATE spaces SET lead_dims = %s, basis = %s WHERE space = %s",
            (0 if basis is None else len(basis), None if basis is None else basis.tobytes(), space),
        )
        if basis is not None:
            _backfill(conn, space, basis)
        self._bases[space] = basis
        return basis

    def _remember(self, space: str, size: int, basis: bytes | str | None) -> None:
        if not size or basis is None:
            self._bases[space] = None
            return
        raw = bytes.fromhex(basis[2:]) if isinstance(basis, str) else bytes(basis)  # JSON gives bytea as \x...
        self._bases[space] = np.frombuffer(raw, dtype=np.float32).reshape(size, -1).copy()


def _sample(conn: psycopg.Connection, space: str) -> np.ndarray:
    table, column, rows = space_source(space)
    query = sql.SQL("SELECT {column} FROM {table} WHERE {rows} LIMIT {limit}").format(
        column=column, table=table, rows=rows, limit=sql.Literal(FIT_ROWS)
    )
    vectors = [vector for (value,) in conn.execute(query) if (vector := as_array(value)) is not None]
    return np.stack(vectors) if vectors else np.zeros((0, 1), np.float32)


def _backfill(conn: psycopg.Connection, space: str, basis: np.ndarray) -> None:
    """Give the rows of ``space`` written before its basis their leads, a chunk of rows per statement."""
    table, column, rows = space_source(space)
    image = space == IMAGE_SPACE
    keys = sql.SQL("sha, model" if image else "sha")
    select = sql.SQL("SELECT {keys}, {column} FROM {table} WHERE {rows} AND lead IS NULL").format(
        keys=keys, column=column, table=table, rows=rows
    )
    update = sql.SQL(
        "UPDATE {table} v SET lead = u.lead::halfvec FROM unnest(%s::text[], %s::text[], %s::vector[]) "
        "AS u(sha, model, lead) WHERE v.sha = u.sha AND {match} AND {rows}"
    ).format(table=table, match=sql.SQL("v.model = u.model" if image else "true"), rows=rows)
    with conn.cursor(name="vistext_lead_backfill") as cursor:
        cursor.execute(select)
        while batch := cursor.fetchmany(BACKFILL_CHUNK):
            found = [(row, vector) for row in batch if (vector := as_array(row[-1])) is not None]
            vectors = leads_of(np.stack([vector for _, vector in found]), basis)
            shas = [row[0] for row, _ in found]  # each key beside its own vector's lead
            models = [row[1] if image else "" for row, _ in found]
            conn.execute(update, (shas, models, [dump_vector(v) for v in vectors]))
