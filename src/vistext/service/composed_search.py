"""Searching a query the syntax composed (``service.query_syntax``): attributes named, things excluded.

The wanted text is first searched on its own (its best ``POOL`` photos, ``PERSON_POOL`` when a named person is the
only addition, or the page's depth if deeper); each photo found is then scored against every excluded thing
(searches restricted to those photos), and its attribute measures (``images.attributes``, stored at indexing) give
the chance that each named colour or light holds:

    relevance of the wanted text x chance of each attribute ** WEIGHTS[its family]
                                 x (1 - relevance of each excluded thing)

so it stays a 0-1 score, and a photo showing an excluded thing sinks in proportion to how surely it shows it.
The weights say how much the pixels re-rank what the words found (chosen on dev: colour 0.25, light 0.25,
black and white 4). The attribute chances are logistic fits on Flickr8k dev photos (``bench/attributes.py
--fit`` prints them): the chance that people describing the photo name that colour (given it shows the thing)
or light. They are conservative: a dark street that nobody called "night" counts against the fit. Black and
white is set by hand from the dev photos' colourfulness (no Flickr8k caption says "black and white photo"). A
photo with no stored measures (indexed before them and not yet refilled by ``vistext index``) gets
``UNMEASURED`` for each attribute.

A light or black and white asked for alone ("a black and white photo", "photos at night": ``ParsedQuery.only_light``)
names nothing for the words to find, so the pixels' chance stands for the relevance, over the words' best
``LIGHT_POOL`` photos, kept to a hundredth, the words ordering photos scored alike.

People, asked for or excluded without saying who ("people", "-people", "without anyone": ``PEOPLE_TERMS``), are
read by the person head from each photo's stored pooled features (``service.person_chances``): its chance stands
for the text's relevance ("people" ranks the pool by it) or for the excluded thing's, and a person named among
other words ("someone surfing") multiplies the relevance by the chance ** ``WEIGHTS["person"]``. Scores where the
chance stands for a relevance are kept to a hundredth, and photos scored alike keep the order the words give them.
A photo whose features the head cannot read (another encoder's) keeps the words' own relevance.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from concurrent.futures import Executor, Future
from typing import TYPE_CHECKING

import numpy as np

from vistext.images.attributes import ATTRIBUTE_SPACE, COLOURS, MEASURES, measure_index
from vistext.models.presence import CHANCE_RANGE
from vistext.service.batching import run_on, when_all
from vistext.service.person_chances import PresenceMemo, stored_presence
from vistext.service.queries import Query, QueryFor
from vistext.service.query_syntax import DAY, DUSK, MONOCHROME, NIGHT, PERSON, ParsedQuery, names_people
from vistext.store.records import VectorHit

if TYPE_CHECKING:
    from vistext.service.ordering import ResultPage
    from vistext.service.queries import QueryBatcher
    from vistext.service.results import SearchResult
    from vistext.store import Store

POOL = 200  # photos the wanted text contributes before the composed scores re-rank them
PERSON_POOL = 50  # the same when only the person attribute re-ranks (a gentle factor: chance ** 0.5)
LIGHT_POOL = 2000  # the same for a light or black and white alone: the words barely rank it, the pixels do
UNMEASURED = 0.5  # the chance an attribute holds for a photo whose pixels were never measured
COLOUR_FLOOR = 0.01  # added to a colour's fraction before its logarithm

# logistic coefficients (intercept, then one per feature of ``attribute_features``), fitted by bench/attributes.py
COLOUR_FIT = (0.37, 0.72)  # log(fraction + 0.01): P(>= 2 captions say "<colour> <noun>" | >= 2 name the noun)
NIGHT_FIT = (-0.26, -12.65, 0.18)  # mean luma, dark fraction: P(a caption says "night")
DUSK_FIT = (-6.24, 3.37, 1.4)  # warm top third, luma of the top third: P(a caption says sunset or dusk)
MONOCHROME_FIT = (-21.0, -6.0)  # log(chroma + 0.005): one half at chroma 0.025 (b/w photos ~0.01, 2% of dev < 0.033)

# how strongly each family's chance re-ranks (score x chance ** weight), chosen on Flickr8k dev by
# ``bench/attributes.py --sweep``; a person named among other words: by ``bench/presence.py`` (Flickr8k dev
# captions naming a person, among Flickr8k and opendomain-classes dev photos)
WEIGHTS = {"colour": 0.25, "light": 0.25, "monochrome": 4.0, "person": 0.5}

Searcher = Callable[[Sequence[Query]], list[list[VectorHit]]]


def attribute_features(name: str, measures: np.ndarray) -> np.ndarray:
    """(n, f) features of attribute ``name`` from (n, M) stored measures: what its logistic fit reads."""
    m = np.asarray(measures, dtype=np.float64)
    if name in COLOURS:
        return np.log(m[:, [measure_index(name)]] + COLOUR_FLOOR)
    if name in (NIGHT, DAY):
        return m[:, [measure_index("luma"), measure_index("dark")]]
    if name == DUSK:
        return m[:, [measure_index("warm_sky"), measure_index("sky_luma")]]
    if name == MONOCHROME:
        return np.log(m[:, [measure_index("chroma")]] + 0.005)
    raise ValueError(f"no attribute {name!r}")


def family(name: str) -> str:
    """The family of attribute ``name`` (a key of ``WEIGHTS``): colour, light, monochrome or person."""
    if name == PERSON:
        return "person"
    return "colour" if name in COLOURS else "monochrome" if name == MONOCHROME else "light"


def _fit(name: str) -> tuple[float, ...]:
    if name in COLOURS:
        return COLOUR_FIT
    return {NIGHT: NIGHT_FIT, DAY: NIGHT_FIT, DUSK: DUSK_FIT, MONOCHROME: MONOCHROME_FIT}[name]


def logistic(coefficients: Sequence[float], features: np.ndarray) -> np.ndarray:
    """sigmoid(intercept + features . weights) for each row of ``features``."""
    z = coefficients[0] + features @ np.asarray(coefficients[1:], dtype=np.float64)
    return 1.0 / (1.0 + np.exp(-z))


def attribute_chance(name: str, measures: np.ndarray, coefficients: Sequence[float] | None = None) -> np.ndarray:
    """(n,) chance that attribute ``name`` holds for each row of (n, M) measures (rows of NaN: ``UNMEASURED``)."""
    measures = np.asarray(measures, dtype=np.float64)
    known = ~np.isnan(measures).any(axis=1)
    chance = np.full(len(measures), UNMEASURED)
    if known.any():
        found = logistic(coefficients or _fit(name), attribute_features(name, measures[known]))
        chance[known] = 1.0 - found if name == DAY else found
    return chance


def composed_scores(
    parsed: ParsedQuery,
    relevance: np.ndarray,
    measures: np.ndarray,
    fits: dict[str, Sequence[float]] | None = None,
    presence: np.ndarray | None = None,
) -> np.ndarray:
    """(n,) scores of n photos from ``relevance`` (row 0 the wanted text, then one row per excluded thing, 0-1)
    and their (n, M) ``measures`` (NaN rows: unmeasured); ``fits`` overrides attribute coefficients (the bench);
    ``presence``: each photo's chance of showing a person (NaN or None: unknown, the person attribute then
    changes nothing)."""
    if parsed.only_light:  # the words name nothing else: the pixels' chance is the relevance
        chances = [attribute_chance(name, measures, (fits or {}).get(name)) for name in parsed.attributes]
        score = np.prod(chances, axis=0)
    else:
        score = np.array(relevance[0], dtype=np.float64)  # a copy: the caller may rewrite its rows afterwards
        for name in parsed.attributes:
            if name == PERSON:
                chance = np.ones(len(score)) if presence is None else _read_people(np.ones(len(score)), presence)
            else:
                chance = attribute_chance(name, measures, (fits or {}).get(name))
            score = score * chance ** WEIGHTS[family(name)]
    for row in range(1, len(relevance)):
        score = score * (1.0 - np.clip(relevance[row], 0.0, 1.0))
    return score


def stored_measures(store: Store, ids: Sequence[int]) -> np.ndarray:
    """(len(ids), M) attribute measures stored for ``ids``, NaN rows where there are none."""
    measures = np.full((len(ids), len(MEASURES)), np.nan)
    row = {int(i): n for n, i in enumerate(ids)}
    for image_id, found in store.vectors_of(ATTRIBUTE_SPACE, list(row)).items():
        if len(found) == len(MEASURES):
            measures[row[image_id]] = found
    return measures


def _read_people(otherwise: np.ndarray, presence: np.ndarray) -> np.ndarray:
    """The head's ``presence`` within ``CHANCE_RANGE`` where it can tell, ``otherwise`` (the words' relevance, or 1
    for the attribute) where it cannot."""
    return np.where(np.isnan(presence), otherwise, np.clip(presence, *CHANCE_RANGE))


def composed_steps(
    parsed: ParsedQuery,
    query_for: QueryFor,
    depth: int,
    restrict: np.ndarray | None,
    measures_of: Callable[[list[int]], np.ndarray],
    presence_of: Callable[[list[int]], np.ndarray] | None = None,
) -> Generator[list[Query], list[list[VectorHit]], list[VectorHit]]:
    """The ``depth`` best photos for ``parsed`` (among ``restrict`` when given), best first, as steps: each
    yields the queries it needs answered (readable 0-1 scores) and is sent their hits, so a caller may wait on
    them in a thread (``composed_hits``) or go on when they come (``composed_page``). ``query_for`` makes a query
    in the space searched, ``measures_of`` gives ids' stored measures (NaN rows: none), ``presence_of`` their
    chance of showing a person (NaN: unknown)."""
    if parsed.only_light:
        pool = LIGHT_POOL
    else:
        pool = PERSON_POOL if parsed.attributes == (PERSON,) and not parsed.excluded else POOL
    first = (yield [query_for(parsed.wanted, max(pool, depth), restrict)])[0]
    paths = {hit.id: hit.path for hit in first}
    if not paths:
        return []
    ids = np.array(sorted(paths), dtype=np.int64)
    column = {int(i): n for n, i in enumerate(ids)}
    relevance = np.zeros((1 + len(parsed.excluded), len(ids)))
    for hit in first:
        relevance[0, column[hit.id]] = hit.score
    excluded = (yield [query_for(term, len(ids), ids) for term in parsed.excluded]) if parsed.excluded else []
    for row, hits in enumerate(excluded, start=1):
        for hit in hits:
            relevance[row, column[hit.id]] = hit.score
    measured = any(name != PERSON for name in parsed.attributes)  # the person attribute reads no measures
    measures = measures_of(ids.tolist()) if measured else np.full((len(ids), len(MEASURES)), np.nan)
    # what the words alone say: breaks the near-ties of the head's (or the pixels') chances kept to a hundredth
    words = relevance[0].copy() if parsed.only_light else composed_scores(parsed, relevance, measures)
    people = [0] * parsed.people + [row for row, term in enumerate(parsed.excluded, 1) if names_people(term)]
    presence = None
    if (people or PERSON in parsed.attributes) and presence_of is not None:
        presence = presence_of(ids.tolist())
        for row in people:
            relevance[row] = _read_people(relevance[row], presence)
    scores = composed_scores(parsed, relevance, measures, presence=presence)
    if (people and presence is not None) or parsed.only_light:  # a chance as relevance is good to a hundredth:
        scores = np.round(scores, 2)  # within one, the words decide the order
    order = np.lexsort((ids, -words, -scores))[:depth]
    return [VectorHit(int(ids[n]), paths[int(ids[n])], float(scores[n])) for n in order]


def composed_hits(
    parsed: ParsedQuery,
    query_for: QueryFor,
    depth: int,
    restrict: np.ndarray | None,
    search: Searcher,
    measures_of: Callable[[list[int]], np.ndarray],
    presence_of: Callable[[list[int]], np.ndarray] | None = None,
) -> list[VectorHit]:
    """``composed_steps`` run to the end in this thread, ``search`` answering each step's queries."""
    steps = composed_steps(parsed, query_for, depth, restrict, measures_of, presence_of)
    try:
        queries = next(steps)
        while True:
            queries = steps.send(search(queries))
    except StopIteration as done:
        return list(done.value)


def composed_page(
    store: Store,
    queries: QueryBatcher,
    pages: Executor,
    parsed: ParsedQuery,
    query_for: QueryFor,
    search: Query,
    page: ResultPage,
    explain: Callable[[BaseException, Query], BaseException],
    presence: PresenceMemo | None = None,
) -> Future[SearchResult]:
    """A page of a composed query (``search``: its wanted text's query, with the page's depth and filter), as a
    future. Its queries join the batches of whatever else is being searched, and each step goes on, on a
    ``pages`` thread, when its answers come: no thread waits on a batch meanwhile (four page threads blocked on
    composed queries held up every other page). ``presence`` keeps the photos' chances of showing a person."""
    from vistext.service.photo_text import text_hits

    result: Future[SearchResult] = Future()
    steps = composed_steps(
        parsed, query_for, search.depth, search.restrict, lambda ids: stored_measures(store, ids),
        lambda ids: stored_presence(store, ids) if presence is None else presence.of(store, ids),
    )  # fmt: skip

    def advance(asked: list[Future[list[VectorHit]]] | None) -> None:
        try:
            try:
                wanted = next(steps) if asked is None else steps.send([future.result() for future in asked])
            except StopIteration as done:
                result.set_result(page.result(store, done.value, text_hits(store, parsed.wanted, search.restrict)))
                return
            except Exception as error:  # noqa: BLE001 - explained as a plain search's failure is
                raise explain(error, search) from None
            submitted = [queries.submit(query) for query in wanted]
            when_all(submitted, lambda: run_on(pages, lambda: advance(submitted)))
        except BaseException as failure:  # noqa: BLE001 - handed to whoever waits on the page
            result.set_exception(failure)

    advance(None)
    return result
