"""The search syntax: one parser for every surface (CLI, HTTP, web page, bot all reach it through ``search``).

    beach -people                 exclude: photos where people are seen rank last (``-"a phrase"`` too)
    beach without people          the same; so is "beach with no people"; all after it is excluded,
                                  split on "and", "or" and commas ("a park without dogs or bikes")
    a dog and a ball              both things must be seen (a photo's score is its weaker thing's)
    a red bus                     a basic colour term (black, white, grey/gray, red, orange, yellow, green,
                                  blue, purple, pink, brown) also asks the photo's pixels for that colour
    a street at night             light: "at night", "night", "at dusk", "twilight", "during the day", ...
    a black and white photo       black and white (also "b&w", "monochrome", "greyscale") asks for no colour
    "salt and pepper"             a query in double quotes is searched as it is, with no operators

Phrases that are not operators: "black and white" names the photo's lack of colour when it ends the query or
is followed by photo/picture/image/shot ("a dog in black and white", "a black and white photo of a dog"), else
the two colours of the thing ("a black and white dog"); "and" between colour words joins colours of one thing
("a black and brown dog"); the fixed expressions in ``NOT_SPLIT`` ("salt and pepper", "rock and roll", "fish
and chips", ...) are one thing. "with no" and "without" always exclude: "a man with no shirt" is a man where no
shirt is seen. A colour word ending a part is a thing, not a colour ("an orange", "a glass of red").

A query with none of these is a plain query, searched exactly as before (``ParsedQuery.plain``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from vistext.images.attributes import COLOURS

NIGHT, DUSK, DAY, MONOCHROME = "night", "dusk", "day", "monochrome"
COLOUR_WORDS = {**{colour: colour for colour in COLOURS}, "gray": "grey"}
LIGHT_PHRASES = {  # longest first when matched
    "at night": NIGHT, "at nighttime": NIGHT, "at night-time": NIGHT, "in the dark": NIGHT, "nighttime": NIGHT,
    "night-time": NIGHT, "night": NIGHT, "at dusk": DUSK, "at twilight": DUSK, "dusk": DUSK, "twilight": DUSK,
    "during the day": DAY, "in daylight": DAY, "by day": DAY, "daytime": DAY, "in the daytime": DAY,
}  # fmt: skip
MONOCHROME_WORDS = ("black-and-white", "b&w", "b/w", "monochrome", "greyscale", "grayscale")
PHOTO_WORDS = ("photo", "photograph", "picture", "image", "shot", "film", "print")
NOT_SPLIT = (
    "salt and pepper", "rock and roll", "rock n roll", "fish and chips", "bread and butter", "mac and cheese",
    "macaroni and cheese", "peanut butter and jelly", "arts and crafts", "bed and breakfast", "hide and seek",
    "black and white", "pros and cons", "cookies and cream", "bride and groom", "ladies and gentlemen",
)  # fmt: skip
COLOUR_COMPOUNDS = ("red wine", "white wine", "green tea", "black tea", "red panda", "white house")
_ARTICLES = {"a", "an", "the", "some", "two", "three", "in", "with", "and", "dark", "light", "bright", "pale"}
_EXCLUDE = re.compile(r"\s(?:without|with\s+no)\s+(.+)$")
_MINUS = re.compile(r'(?:^|\s)-(?:"([^"]+)"|([^\s"]+))')


@dataclass
class QueryPart:
    """One thing the photo must show: ``text`` is embedded (the words as typed, attribute words included);
    ``attributes`` are what its pixels must say too (colour terms, night/dusk/day, monochrome)."""

    text: str
    attributes: tuple[str, ...] = ()


@dataclass
class ParsedQuery:
    """A search text read by the syntax: the things that must be seen, and those that must not."""

    text: str
    parts: list[QueryPart] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)

    @property
    def plain(self) -> bool:
        """No operator and no attribute: searched exactly as a search always was."""
        return len(self.parts) == 1 and not self.excluded and not self.parts[0].attributes


def parse_query(text: str) -> ParsedQuery:
    """Read ``text`` by the search syntax (see the module's doc)."""
    stripped = " ".join(text.split())
    if len(stripped) >= 2 and stripped[0] == stripped[-1] == '"':
        return ParsedQuery(text, [QueryPart(stripped[1:-1].strip() or stripped)])
    excluded = [(quoted or word).strip() for quoted, word in _MINUS.findall(stripped)]
    rest = _MINUS.sub(" ", stripped).strip()
    found = _EXCLUDE.search(f" {rest}")
    if found:
        excluded += [x for x in re.split(r"\s*(?:,|\band\b|\bor\b)\s*", found.group(1)) if x.strip()]
        rest = f" {rest}"[: found.start()].strip()
    excluded = [x.strip() for x in excluded if x.strip()]
    if not rest:  # only exclusions ("-people"): nothing to rank by, so the words are searched as they are
        return ParsedQuery(text, [QueryPart(text)])
    parsed = ParsedQuery(text, [_part(piece) for piece in _split_things(rest)], excluded)
    return ParsedQuery(text, [QueryPart(text)]) if parsed.plain else parsed  # a plain query: its text as typed


def _split_things(text: str) -> list[str]:
    """``text`` split on "and" where both sides name a thing (see the module's doc)."""
    protected = text
    for phrase in NOT_SPLIT:
        protected = re.sub(rf"\b{re.escape(phrase)}\b", phrase.replace(" and ", " &and& "), protected, flags=re.I)
    pieces: list[str] = []
    for piece in re.split(r"\s+and\s+", protected, flags=re.I):
        words = piece.lower().split()
        if pieces and (not _names_thing(pieces[-1]) or not _names_thing(piece)):
            pieces[-1] = f"{pieces[-1]} and {piece}"
        elif words:
            pieces.append(piece)
    return [piece.replace(" &and& ", " and ") for piece in pieces]


def _names_thing(piece: str) -> bool:
    """Whether ``piece`` holds a word other than articles and colour words (so "a black" does not)."""
    words = [w.strip(",.") for w in piece.lower().split()]
    return any(w not in COLOUR_WORDS and w not in _ARTICLES for w in words)


def _part(text: str) -> QueryPart:
    lower = f" {text.lower()} "
    attributes: list[str] = []
    for phrase in sorted(LIGHT_PHRASES, key=len, reverse=True):
        if f" {phrase} " in lower:
            attributes.append(LIGHT_PHRASES[phrase])
            lower = lower.replace(f" {phrase} ", " ")
    photo = "|".join(PHOTO_WORDS)
    if re.search(rf"\bblack (?:&and&|and) white(?: (?:{photo})s?\b|\s*$)", lower) or any(
        f" {word} " in lower for word in MONOCHROME_WORDS
    ):
        attributes.append(MONOCHROME)
        lower = re.sub(r"\bblack (?:&and&|and) white\b", " ", lower)
    for compound in COLOUR_COMPOUNDS:
        lower = lower.replace(f" {compound} ", " ")
    words = [w.strip(",.") for w in lower.split()]
    for word in words[:-1]:  # a colour word is a colour before another word, not at the end
        if word in COLOUR_WORDS and COLOUR_WORDS[word] not in attributes:
            attributes.append(COLOUR_WORDS[word])
    return QueryPart(" ".join(text.replace("&and&", "and").split()), tuple(dict.fromkeys(attributes)))
