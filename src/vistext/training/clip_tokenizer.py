"""A CLIP model's tokenizer as the files the runtime reads with the ``tokenizers`` library (Immich's layout:
``textual/tokenizer.json``, ``tokenizer_config.json``, ``special_tokens_map.json``).

The vocabulary comes from the model's folder (``tokenizer.json``, or ``vocab.json`` + ``merges.txt``) or, for an
open_clip checkpoint that ships none, from the BPE file inside an installed open_clip. The tokenizer.json carries
CLIP's cleaning (NFC, whitespace collapsed, lower case; for an open_clip model also the curly quotes and HTML
entities that open_clip's ftfy and ``html.unescape`` straighten), start and end tokens, truncation to the context
length keeping the end token, and padding to the context length with the model's pad token (id 0 for open_clip, as
its tokenizer pads).
"""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path
from typing import Any

from tokenizers import Regex, Tokenizer, normalizers
from transformers import CLIPTokenizer

from vistext.errors import ModelError
from vistext.models.clip_sources import TOKENIZER_FILES

OPEN_CLIP_BPE = "bpe_simple_vocab_16e6.txt.gz"
OPEN_CLIP_MERGES = 49152 - 256 - 2  # how many merges open_clip's SimpleTokenizer reads from its BPE file
# what ftfy.fix_text and html.unescape change in ordinary text before open_clip tokenizes it
_STRAIGHTENED = {"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u201c": '"', "\u201d": '"',
                 "\u201e": '"', "\u201f": '"', "&amp;": "&", "&quot;": '"', "&#39;": "'", "&lt;": "<", "&gt;": ">",
                 "&nbsp;": " "}  # fmt: skip


def byte_stand_ins() -> dict[int, str]:
    """GPT-2's and CLIP's printable stand-in for each byte value, in the order CLIP numbers them (its first 256
    ids): the printable bytes first, standing for themselves (``!`` is id 0), then the others, mapped past 255."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [byte for byte in range(256) if byte not in printable]
    return {byte: chr(byte) for byte in printable} | {byte: chr(256 + n) for n, byte in enumerate(others)}


def _from_open_clip_bpe(bpe_file: Path) -> CLIPTokenizer:
    """CLIP's tokenizer built from open_clip's BPE file, ids in the order its SimpleTokenizer gives them."""
    lines = gzip.open(bpe_file, "rt", encoding="utf-8").read().split("\n")[1 : OPEN_CLIP_MERGES + 1]
    merges: list[Any] = [tuple(line.split()) for line in lines]
    alphabet = list(byte_stand_ins().values())
    words = alphabet + [v + "</w>" for v in alphabet] + ["".join(m) for m in merges]
    words += ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={word: i for i, word in enumerate(words)}, merges=merges)


def _open_clip_bpe() -> Path | None:
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return None
    file = Path(next(iter(spec.submodule_search_locations))) / OPEN_CLIP_BPE
    return file if file.is_file() else None


def load_clip_tokenizer(folder: Path) -> CLIPTokenizer:
    """The tokenizer of the model in ``folder``; a ModelError says where it looked when there is none."""
    if any(all((folder / name).is_file() for name in group) for group in TOKENIZER_FILES):
        try:
            return CLIPTokenizer.from_pretrained(str(folder))
        except (OSError, ValueError, TypeError) as error:
            raise ModelError(f"{folder}: cannot read its tokenizer files ({error})") from None
    bpe = _open_clip_bpe()
    if bpe is None:
        raise ModelError(
            f"{folder}: no tokenizer files (tokenizer.json, or vocab.json + merges.txt) and open_clip, whose "
            "BPE vocabulary would do, is not installed; copy the tokenizer files of the model into the folder"
        )
    return _from_open_clip_bpe(bpe)


def runtime_tokenizer(tokenizer: CLIPTokenizer, context_length: int, pad_token: str, open_clip: bool) -> Tokenizer:
    """The ``tokenizers`` object the runtime loads, truncation and padding built in; with ``open_clip``, also the
    quotes and HTML entities open_clip's cleaning straightens (a Hugging Face model keeps its tokenizer's own)."""
    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    pad_id = backend.token_to_id(pad_token)
    if pad_id is None:
        raise ModelError(f"the tokenizer has no pad token {pad_token!r}")
    if open_clip:
        straighten = [normalizers.Replace(old, new) for old, new in _STRAIGHTENED.items()]
        backend.normalizer = normalizers.Sequence(
            [normalizers.NFC(), *straighten, normalizers.Replace(Regex(r"\s+"), " "), normalizers.Strip()]
            + [normalizers.Lowercase()]
        )
    backend.enable_truncation(max_length=context_length)
    backend.enable_padding(length=context_length, pad_id=pad_id, pad_token=pad_token)
    return backend


def write_tokenizer(
    tokenizer: CLIPTokenizer, out: Path, context_length: int, pad_token: str, open_clip: bool
) -> dict[str, Any]:
    """Write Immich's textual tokenizer files into ``out``; returns the settings written (for the provenance)."""
    tokenizer.model_max_length = context_length
    tokenizer.pad_token = pad_token
    tokenizer.save_pretrained(str(out))
    special = {key: str(getattr(tokenizer, key)) for key in ("bos_token", "eos_token", "unk_token", "pad_token")}
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2), encoding="utf-8")
    runtime_tokenizer(tokenizer, context_length, pad_token, open_clip).save(str(out / "tokenizer.json"))
    for extra in ("vocab.json", "merges.txt"):  # tokenizer.json holds them; one copy of the vocabulary is enough
        (out / extra).unlink(missing_ok=True)
    return {
        "context_length": context_length,
        "pad_token": pad_token,
        "pad_id": tokenizer.convert_tokens_to_ids(pad_token),
    }
