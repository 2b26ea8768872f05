"""The WordNet 3.0 noun hierarchy, read from its database files (``data.noun``, ``index.noun``, ``noun.exc``).

The workshop's source for the default tag vocabulary (``training/default_tags``): ImageNet-1k classes are
WordNet noun synsets (``n02084071`` is the synset at offset 02084071 of ``data.noun``), so every class's
hypernyms say which everyday word names it (``golden retriever`` -> ``dog``). The files come with Debian's
``wordnet-base`` package (``/usr/share/wordnet``) or Princeton's WordNet 3.0 download; WordNet's licence lets
anyone use and redistribute it and what is derived from it, with its copyright notice (docs/commands.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from vistext.errors import UsageError

DEFAULT_DIR = Path("/usr/share/wordnet")
_SENSE = re.compile(r"^(?P<lemma>.+)\.n\.(?P<number>\d{2})$")
_WNID = re.compile(r"^n\d{8}$")


@dataclass
class Synset:
    """One noun synset: its offset (``n`` + 8 digits, ImageNet's wnid), lemmas, hypernyms and hyponyms."""

    wnid: str
    lemmas: list[str]
    hypernyms: list[str] = field(default_factory=list)
    hyponyms: list[str] = field(default_factory=list)


class WordNet:
    """Noun synsets by wnid, senses by ``lemma.n.NN``, and the morphology WordNet uses for plurals."""

    def __init__(self, directory: str | Path | None = None) -> None:
        self.directory = Path(directory) if directory is not None else DEFAULT_DIR
        if not (self.directory / "data.noun").is_file():
            raise UsageError(f"{self.directory}: no WordNet database here (data.noun); install Debian's "
                             "wordnet-base package or pass the folder of WordNet 3.0's dict files")  # fmt: skip
        self.synsets: dict[str, Synset] = {}
        with open(self.directory / "data.noun", encoding="utf-8") as lines:
            for line in lines:
                if not line.startswith("  "):
                    self._read(line)
        self._senses: dict[str, list[str]] = {}
        with open(self.directory / "index.noun", encoding="utf-8") as lines:
            for line in lines:
                if not line.startswith("  "):
                    parts = line.split()
                    count = int(parts[2])
                    self._senses[parts[0]] = ["n" + offset for offset in parts[-count:]]
        self.exceptions: dict[str, str] = {}
        with open(self.directory / "noun.exc", encoding="utf-8") as lines:
            for line in lines:
                parts = line.split()
                if len(parts) >= 2:
                    self.exceptions.setdefault(parts[0], parts[1])

    def _read(self, line: str) -> None:
        fields = line.split(" | ")[0].split()
        words = int(fields[3], 16)
        lemmas = [fields[4 + 2 * i].replace("_", " ").lower() for i in range(words)]
        lemmas = [re.sub(r"\(.*\)$", "", lemma) for lemma in lemmas]  # "kite(a)" markers
        synset = Synset("n" + fields[0], list(dict.fromkeys(lemmas)))
        at = 4 + 2 * words
        for i in range(int(fields[at])):
            symbol, offset, pos = fields[at + 1 + 4 * i : at + 4 + 4 * i]
            if pos != "n":
                continue
            if symbol in ("@", "@i"):
                synset.hypernyms.append("n" + offset)
            elif symbol in ("~", "~i"):
                synset.hyponyms.append("n" + offset)
        self.synsets[synset.wnid] = synset

    def sense(self, name: str) -> str:
        """The wnid of ``lemma.n.NN`` (NLTK's sense names: ``dog.n.01`` is the first noun sense of dog) or of a wnid."""
        if _WNID.match(name):
            if name not in self.synsets:
                raise UsageError(f"{name!r}: no such noun synset in WordNet")
            return name
        match = _SENSE.match(name)
        if match is None:
            raise UsageError(f"{name!r}: a WordNet sense is written lemma.n.NN, e.g. dog.n.01")
        senses = self._senses.get(match["lemma"].replace(" ", "_").lower(), [])
        number = int(match["number"])
        if not 1 <= number <= len(senses):
            raise UsageError(f"{name!r}: WordNet has {len(senses)} noun senses of {match['lemma']!r}")
        return senses[number - 1]

    def ancestors(self, wnid: str) -> set[str]:
        """``wnid`` and every synset above it (all hypernym paths)."""
        return set(self._walk(wnid, up=True))

    def descendants(self, wnid: str) -> Iterator[str]:
        """``wnid`` and every synset below it."""
        return self._walk(wnid, up=False)

    def _walk(self, wnid: str, *, up: bool) -> Iterator[str]:
        """``wnid`` and every synset reached through hypernyms (``up``) or hyponyms, each once."""
        seen: set[str] = set()
        stack = [wnid]
        while stack:
            current = stack.pop()
            if current not in seen and current in self.synsets:
                seen.add(current)
                yield current
                synset = self.synsets[current]
                stack.extend(synset.hypernyms if up else synset.hyponyms)

    @cached_property
    def _suffixes(self) -> tuple[tuple[str, str], ...]:
        return (("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"), ("men", "man"),
                ("ies", "y"), ("s", ""))  # fmt: skip

    def singular(self, word: str) -> str:
        """WordNet's base form of a plural noun (``puppies`` -> ``puppy``, ``men`` -> ``man``), else ``word``."""
        if word in self.exceptions:
            return self.exceptions[word]
        if word in self._senses:
            return word
        for suffix, ending in self._suffixes:
            if word.endswith(suffix) and word[: -len(suffix)] + ending in self._senses:
                return word[: -len(suffix)] + ending
        return word
