"""Tokenizer, vocabulary, word vectors and content words."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vistext.errors import DatasetError, ModelError
from vistext.text import Vocabulary, WordVectors, content_words, singular, tokenize


def test_tokenize_lowercases_and_drops_punctuation() -> None:
    expected = ["a", "dog's", "ball", "isn't", "it", "yes", "2", "dogs"]
    assert tokenize("A Dog's ball, isn't it? Yes!  2 dogs...") == expected
    assert tokenize("Café ÜBER naïve — ‘quoted’ don’t") == ["café", "über", "naïve", "quoted", "don't"]
    assert tokenize("snake_case and emoji 🐶 ") == ["snake", "case", "and", "emoji"]
    assert tokenize("") == []


def test_vocabulary_build_encode_and_round_trip(tmp_path: Path) -> None:
    texts = ["a dog runs", "a dog sits", "a cat"]
    vocab = Vocabulary.build((tokenize(t) for t in texts), min_count=2)
    assert vocab.tokens == ["<pad>", "<unk>", "a", "dog"]
    assert vocab.encode(["a", "cat", "dog"]) == [2, 1, 3]
    assert vocab.encode(["a", "a", "a"], max_len=2) == [2, 2]
    assert len(Vocabulary.build([["x", "y", "z"]], max_size=3)) == 3

    ids, lengths = vocab.encode_batch(["a dog", "dog a dog a dog", ""], max_len=4)
    assert ids.dtype == np.int64 and ids.shape == (3, 4)
    assert lengths.tolist() == [2, 4, 1]
    assert ids[0].tolist() == [2, 3, 0, 0] and ids[2].tolist() == [1, 0, 0, 0]

    vocab.save(tmp_path / "vocab.json")
    loaded = Vocabulary.load(tmp_path / "vocab.json")
    assert loaded.tokens == vocab.tokens and loaded.encode(["dog"]) == [3]


def test_vocabulary_load_rejects_other_versions(tmp_path: Path) -> None:
    path = tmp_path / "vocab.json"
    path.write_text('{"format": "vistext-vocabulary", "version": 99, "tokens": ["<pad>", "<unk>"]}')
    with pytest.raises(ModelError, match="vocab.json: vocabulary format version 99, expected 1"):
        Vocabulary.load(path)
    path.write_text("[1, 2]")
    with pytest.raises(ModelError, match="not a vistext vocabulary"):
        Vocabulary.load(path)


def test_word_vectors_from_text_file(tmp_path: Path) -> None:
    glove = tmp_path / "glove.txt"
    glove.write_text("dog 1 0 0\ncat 0.9 0.1 0\n\nthe 0 0 1\n")
    vectors = WordVectors.from_text_file(glove)
    assert vectors.dim == 3 and "cat" in vectors and "cow" not in vectors
    np.testing.assert_allclose(vectors.vector("cat"), [0.9, 0.1, 0.0])

    w2v = tmp_path / "w2v.txt"
    w2v.write_text("2 2\nsun 1 2\nmoon 3 4\n")
    assert WordVectors.from_text_file(w2v).words == ["sun", "moon"]

    vocab = Vocabulary(["dog", "unknownword"])
    matrix = vectors.matrix_for(vocab, rng=0)
    assert matrix.shape == (4, 3) and matrix.dtype == np.float32
    assert not matrix[0].any()
    np.testing.assert_allclose(matrix[2], [1, 0, 0])
    assert 0 < np.abs(matrix[3]).max() < 1
    assert vectors.coverage(vocab) == 0.5


BAD_VECTORS = [
    ("dog 1 2\ncat 1 x\n", ":2: non-numeric"),
    ("dog 1 2\ncat 1 2 3\n", ":2: 3 values, expected 2"),
    ("dog 1 2\nlonely\n", ":2: expected a word"),
]


@pytest.mark.parametrize(("text", "reason"), BAD_VECTORS)
def test_word_vectors_malformed_lines_name_file_and_line(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(DatasetError, match=f"bad.txt{reason}"):
        WordVectors.from_text_file(path)


def _cosine(vectors: WordVectors, a: str, b: str) -> float:
    x, y = vectors.vector(a), vectors.vector(b)
    return float(x @ y / np.linalg.norm(x) / np.linalg.norm(y))


def test_bundled_glove_is_sensible_and_cached() -> None:
    glove = WordVectors.bundled_glove()
    assert glove is WordVectors.bundled_glove()
    assert len(glove) == 400_000 and glove.dim == 50
    assert _cosine(glove, "dog", "puppy") > 0.7
    assert _cosine(glove, "dog", "economics") < 0.2


def test_glove_covers_flickr8k_vocabulary(flickr8k: Path) -> None:
    from vistext.datasets import open_caption_dataset

    dataset = open_caption_dataset(f"flickr8k:{flickr8k}?check_images=false")
    vocab = Vocabulary.build((tokenize(c.text) for c in dataset.captions("train")), min_count=2)
    assert WordVectors.bundled_glove().coverage(vocab) > 0.95


SINGULARS = {
    "dogs": "dog", "puppies": "puppy", "children": "child", "men": "man", "women": "woman", "people": "people",
    "boxes": "box", "leaves": "leaf", "grass": "grass", "bus": "bus", "buses": "bus", "dress": "dress",
    "dresses": "dress", "jeans": "jeans", "glasses": "glasses", "sunglasses": "sunglasses", "shorts": "shorts",
    "firemen": "fireman", "ladies": "lady", "skies": "sky", "movies": "movie", "ties": "tie", "skis": "ski",
    "shoes": "shoe", "waves": "wave", "houses": "house", "benches": "bench", "dishes": "dish", "tennis": "tennis",
    "canvas": "canvas", "cactus": "cactus", "species": "species", "feet": "foot", "mustaches": "mustache",
    "tomatoes": "tomato", "toys": "toy", "specimen": "specimen", "dog": "dog", "sheep": "sheep", "this": "this",
    "lens": "lens", "series": "series", "octopus": "octopus", "class": "class", "classes": "class",
}  # fmt: skip


@pytest.mark.parametrize(("plural", "single"), sorted(SINGULARS.items()))
def test_singular(plural: str, single: str) -> None:
    assert singular(plural) == single


def test_content_words_drop_stop_words_numbers_and_possessives() -> None:
    text = "A dog's owner throws 2 balls while the Puppies and Children run through the grass in 3D."
    assert content_words(text) == ["dog", "owner", "throw", "ball", "puppy", "child", "run", "grass"]
    assert content_words("This is a man wearing jeans near a fire") == ["man", "jeans", "fire"]


def test_word_vectors_accept_spaced_words_and_reject_non_utf8(tmp_path: Path) -> None:
    path = tmp_path / "spaced.txt"
    path.write_text("dog 1 2\nat name@x.com 3 4\n")
    assert WordVectors.from_text_file(path).words == ["dog", "at name@x.com"]
    path.write_bytes(b"dog 1 2\n\xff\xfe 1 2\n")
    with pytest.raises(DatasetError, match="spaced.txt:.*not UTF-8"):
        WordVectors.from_text_file(path)
