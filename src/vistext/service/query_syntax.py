"""The search syntax: one parser for every surface (CLI, HTTP, web page, bot all reach it through ``search``).

    beach -people                 exclude: photos where people are seen sink (``-"a phrase"`` too)
    beach without people          the same; so is "beach with no people"; all after it is excluded,
                                  split on "and", "or" and commas ("a park without dogs or bikes")
    people                        people: "people", "a person", "someone", "anyone"... (``PEOPLE_TERMS``),
                                  asked for or excluded, are read by the person head (``models.presence``)
    someone surfing               a person named among other words ("a man riding a horse") also asks the
                                  person head that someone is seen (the attribute ``PERSON``)
    a dog and a ball              both things: the whole text is scored, the model reads "and"
    a red bus                     a basic colour term (black, white, grey/gray, red, orange, yellow, green,
                                  blue, purple, pink, brown) also asks the photo's pixels for that colour
    a street at night             light: "at night", "night", "at dusk", "twilight", "during the day", ...
    a black and white photo       black and white (also "b&w", "monochrome", "greyscale") asks for no colour
    a black and white photo       only a light or black and white, naming no thing ("photos at night",
                                  "monochrome"): the chance the pixels give is the relevance (``only_light``)
    "a man with no shirt"         a query in double quotes is searched as it is, with no operators
    -people                       refused: exclusions alone leave nothing to rank by (a UsageError that says so)

Phrases that are not operators: "black and white" names the photo's lack of colour when it ends the query or
is followed by photo/picture/image/shot ("a dog in black and white", "a black and white photo of a dog"), else
the two colours of the thing ("a black and white dog"); "salt and pepper", "rock and roll" and any other "and" are
words of the text. "with no" and "without" always exclude: "a man with no shirt" is a man where no shirt is seen
(quote it to search the words as they are). A colour word ending the text is a thing, not a colour ("an orange",
"a glass of red"), and so are colour compounds ("red wine", "green tea", "red panda").

Two things are scored by their whole text because that ranked best on Flickr8k dev: the minimum or the product of
each thing's own relevance ranked worse (``bench/attributes.py``, docs/benchmarks.md). A query with none of the
above is a plain query, searched exactly as before (``ParsedQuery.plain``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from vistext.errors import UsageError
from vistext.images.attributes import COLOURS
from vistext.models.presence import PERSON_WORDS, PRONOUNS

NIGHT, DUSK, DAY, MONOCHROME, PERSON = "night", "dusk", "day", "monochrome", "person"
COLOUR_WORDS = {**{colour: colour for colour in COLOURS}, "gray": "grey"}
LIGHT_PHRASES = {  # longest first when matched
    "at night": NIGHT, "at nighttime": NIGHT, "at night-time": NIGHT, "in the dark": NIGHT, "nighttime": NIGHT,
    "night-time": NIGHT, "night": NIGHT, "at dusk": DUSK, "at twilight": DUSK, "dusk": DUSK, "twilight": DUSK,
    "during the day": DAY, "in daylight": DAY, "by day": DAY, "daytime": DAY, "in the daytime": DAY,
}  # fmt: skip
MONOCHROME_WORDS = ("black-and-white", "b&w", "b/w", "monochrome", "greyscale", "grayscale")
PHOTO_WORDS = ("photo", "photograph", "picture", "image", "shot", "film", "print")
COLOUR_COMPOUNDS = ("red wine", "white wine", "green tea", "black tea", "red panda", "white house")
# people without saying who: these words (after an article) ask the person head whether anyone is seen; "a man",
# "a girl", "a skier" or "a crowd" say more than that and are searched as words (with the person attribute)
PEOPLE_TERMS = frozenset(
    ("people", "person", "persons", "someone", "somebody", "anyone", "anybody", "human", "humans", "human being",
     "human beings")
)  # fmt: skip
# a word naming a person among other words asks that someone is seen: the head's caption words but the pronouns
# ("a dog and his ball"), and the people words
PERSON_NAMES = (PERSON_WORDS - PRONOUNS) | {word for term in PEOPLE_TERMS for word in term.split() if word != "of"}
_ARTICLE = re.compile(r"^(?:a|an|the|any|some)\s+")
_EXCLUDE = re.compile(r"\s(?:without|with\s+no)\s+(.+)$")
_MINUS = re.compile(r'(?:^|\s)-(?:"([^"]+)"|([^\s"]+))')


@dataclass(frozen=True)
class ParsedQuery:
    """A search text read by the syntax: ``wanted`` is embedded and searched (the words as typed, attribute words
    included, exclusions taken out); ``attributes`` are what the photo's pixels must say too (colour terms,
    night/dusk/day, monochrome); ``excluded`` are things that must not be seen; ``people``: the wanted text only
    asks for people (``PEOPLE_TERMS``), so the person head says how surely each photo shows them; ``only_light``:
    it only asks for a light or for black and white, so the pixels' chance says how surely each photo has it."""

    text: str
    wanted: str
    attributes: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()
    people: bool = False
    only_light: bool = False  # the wanted text names only light or black and white, no thing (``names_only_light``)

    @property
    def plain(self) -> bool:
        """No exclusion, no attribute, not only people: searched exactly as a search always was."""
        return not self.excluded and not self.attributes and not self.people


@lru_cache(maxsize=4096)
def parse_query(text: str) -> ParsedQuery:
    """Read ``text`` by the search syntax (see the module's doc). Kept per text (a popular search is parsed once,
    not on every request in the server's event loop), so the answer is shared: frozen, never to be changed."""
    stripped = " ".join(text.split())
    if len(stripped) >= 2 and stripped[0] == stripped[-1] == '"':
        return ParsedQuery(text, stripped[1:-1].strip() or stripped)
    excluded = [(quoted or word).strip() for quoted, word in _MINUS.findall(stripped)]
    rest = _MINUS.sub(" ", stripped).strip()
    found = _EXCLUDE.search(f" {rest}")
    if found:
        excluded += re.split(r"\s*(?:,|\band\b|\bor\b)\s*", found.group(1))
        rest = f" {rest}"[: found.start()].strip()
    excluded = [x.strip() for x in excluded if x.strip()]
    if not rest:  # only exclusions: searching their words would rank what they exclude first
        raise UsageError(
            f'"{stripped}" only says what to leave out: add what to look for ("a beach {stripped}"), or put the '
            "words in double quotes to search them as they are"
        )
    attributes = _attributes(rest)
    people, only_light = names_people(rest), names_only_light(rest, attributes)
    parsed = ParsedQuery(text, rest, attributes, tuple(excluded), people, only_light)
    return ParsedQuery(text, text) if parsed.plain else parsed  # a plain query: its text as typed


def names_people(text: str) -> bool:
    """Whether ``text`` asks only for people, without saying who ("people", "a person", "a crowd": ``PEOPLE_TERMS``
    after an article)."""
    return _ARTICLE.sub("", " ".join(text.lower().strip(" .,!?").split())) in PEOPLE_TERMS


# words that may stand around a light or black and white without naming a thing ("photos taken at night")
_FRAME_WORDS = frozenset(
    ("a", "an", "the", "some", "any", "my", "all", "of", "in", "at", "by", "during", "taken", "made",
     *PHOTO_WORDS, *(f"{word}s" for word in PHOTO_WORDS))
)  # fmt: skip


def names_only_light(text: str, attributes: tuple[str, ...]) -> bool:
    """Whether ``text`` asks only for a light (night, dusk, day) or black and white, naming no thing: what is left
    once those phrases and the words framing them (``_FRAME_WORDS``) are taken out is nothing."""
    if not attributes or not set(attributes) <= {NIGHT, DUSK, DAY, MONOCHROME}:
        return False
    lower = f" {' '.join(text.lower().strip(' .,!?').split())} "
    phrases = [*LIGHT_PHRASES, *MONOCHROME_WORDS, "black and white"]
    for phrase in sorted(phrases, key=len, reverse=True):
        lower = lower.replace(f" {phrase} ", " ")
    return all(word in _FRAME_WORDS for word in lower.split())


def _attributes(text: str) -> tuple[str, ...]:
    """The attributes ``text`` names, in the order found (light, monochrome, colours, then a person)."""
    lower = f" {text.lower()} "
    attributes: list[str] = []
    for phrase in sorted(LIGHT_PHRASES, key=len, reverse=True):
        if f" {phrase} " in lower:
            attributes.append(LIGHT_PHRASES[phrase])
            lower = lower.replace(f" {phrase} ", " ")
    photo = "|".join(PHOTO_WORDS)
    if re.search(rf"\bblack and white(?: (?:{photo})s?\b|\s*$)", lower) or any(
        f" {word} " in lower for word in MONOCHROME_WORDS
    ):
        attributes.append(MONOCHROME)
        lower = re.sub(r"\bblack and white\b", " ", lower)
    for compound in COLOUR_COMPOUNDS:
        lower = lower.replace(f" {compound} ", " ")
    words = [w.strip(",.") for w in lower.split()]
    for word in words[:-1]:  # a colour word is a colour before another word, not at the end
        if word in COLOUR_WORDS and COLOUR_WORDS[word] not in attributes:
            attributes.append(COLOUR_WORDS[word])
    if PERSON_NAMES.intersection(words) and not names_people(text):  # only people: the head is the relevance
        attributes.append(PERSON)
    return tuple(dict.fromkeys(attributes))
