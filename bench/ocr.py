"""Text in photos (``vistext index --ocr``): the share of written words the OCR step finds, what it reads where
nothing was written, and what it costs per photo next to the rest of indexing.

    .venv/bin/python bench/ocr.py --quick      # 8 signs, 4 screenshots, 4 documents, 6 plain photos, cost on 10
    .venv/bin/python bench/ocr.py              # 40 / 12 / 12 / 20, cost on 30 photos

Pictures are made in a temporary folder (never in the repository), with words drawn from the 4,000 most common
alphabetic GloVe words (the list vistext ships) and numbers, in the DejaVu and Liberation fonts of
/usr/share/fonts (sans, serif, mono, condensed; regular, bold, italic):

- ``sign``: a Flickr8k original (read where it lies) with a board of 1-3 words, 16-64 px letters, turned by up
  to 15 degrees, in colours contrasting with the board, anywhere on the photo;
- ``screenshot``: a light or dark plain background with 6-10 short lines at 13-22 px, like a chat or settings page;
- ``document``: a white page with 8-12 lines of 5-8 words at 16-26 px in a serif or sans font, turned by up to
  3 degrees, like a phone photo of a letter;
- ``plain``: Flickr8k originals as they are (some hold real text: shirts, signs, numbers on a bus).

A written word counts as found when the words the OCR step stored for its picture (``searchable_words``: lower
case, letters apart from digits, no accents, runs of letters split into common words) hold it. Each kind is
scored at the shipped confidence cut and at others (lines below the cut are dropped), with the words found on
plain photos as the other side of the cut.
The cost: ``vistext index`` of N Flickr8k originals into a new catalogue without OCR, then the OCR step alone
over the same photos (as ``index --ocr`` runs it), in seconds per photo.
"""

from __future__ import annotations

import argparse
import gzip
import os
import random
import tempfile
import time
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from vistext.images import open_image
from vistext.indexing.photo_text import OCR_MIN_SIDE
from vistext.models.ocr import MIN_CONFIDENCE, TextReader
from vistext.store.photo_text import searchable_words, words

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
FLICKR8K = Path(os.environ.get("VISTEXT_FLICKR8K") or SHARED / "flickr8k")
FONTS = sorted(
    path
    for folder in ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/truetype/liberation")
    for path in Path(folder).glob("*.ttf")
    if "ExtraLight" not in path.name and "Math" not in path.name
)
CUTS = (0.5, 0.7, MIN_CONFIDENCE, 0.9)


@dataclass
class Picture:
    path: Path
    kind: str
    written: list[str]  # the words drawn on it (as photo_text.words splits them)
    detail: str = ""  # sign: its letter size bucket and turn


def vocabulary(n: int = 4000) -> list[str]:
    listing = files("vistext").joinpath("models", "pretrained", "glove-6b-50d-words.txt.gz")
    found = [w for w in gzip.decompress(listing.read_bytes()).decode().split("\n")[:20000] if w.isalpha()]
    return [w for w in found if len(w) >= 3][:n]


def _font(rng: random.Random, size: int, pool: list[Path] | None = None) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(rng.choice(pool or FONTS)), size)


def _phrase(rng: random.Random, vocab: list[str], n: int) -> str:
    chosen = [rng.choice(vocab) for _ in range(n)]
    if rng.random() < 0.3:
        chosen[rng.randrange(n)] = str(rng.randrange(1, 9999))
    text = " ".join(chosen)
    return text.upper() if rng.random() < 0.5 else text.title() if rng.random() < 0.5 else text


def sign(photo: Path, out: Path, rng: random.Random, vocab: list[str]) -> Picture:
    picture = Image.open(photo).convert("RGB")
    size = rng.randrange(16, 65)
    text = _phrase(rng, vocab, rng.randint(1, 3))
    font = _font(rng, size)
    left, top, right, bottom = font.getbbox(text)
    board_colour = rng.choice([(255, 255, 255), (250, 220, 40), (20, 90, 40), (30, 30, 30), (180, 20, 20)])
    ink = (20, 20, 20) if sum(board_colour) > 450 else (250, 250, 250)
    board = Image.new("RGB", (right - left + size, bottom - top + size), board_colour)
    ImageDraw.Draw(board).text((size // 2 - left, size // 2 - top), text, font=font, fill=ink)
    turn = rng.uniform(-15, 15)
    board = board.convert("RGBA").rotate(turn, expand=True, resample=Image.Resampling.BICUBIC)
    if board.width > picture.width:  # a sign wider than the photo is scaled down to fit it
        board = board.resize((picture.width - 10, int(board.height * (picture.width - 10) / board.width)))
    x = rng.randrange(0, max(1, picture.width - board.width))
    y = rng.randrange(0, max(1, picture.height - board.height))
    picture.paste(board, (x, y), board)
    picture.save(out, quality=rng.randrange(75, 96))
    bucket = "16-31 px" if size < 32 else "32-47 px" if size < 48 else "48-64 px"
    return Picture(out, "sign", words(text), f"{bucket}, {'turned' if abs(turn) > 7 else 'level'}")


def screenshot(out: Path, rng: random.Random, vocab: list[str]) -> Picture:
    dark = rng.random() < 0.5
    picture = Image.new(
        "RGB", (rng.choice([720, 1080]), rng.choice([1280, 1600])), (24, 24, 28) if dark else (250, 250, 250)
    )
    draw = ImageDraw.Draw(picture)
    sans = [f for f in FONTS if "Sans" in f.name and "Mono" not in f.name]
    written: list[str] = []
    y = 60
    for _ in range(rng.randint(6, 10)):
        size = rng.randrange(13, 23) * (picture.width // 720)
        text = _phrase(rng, vocab, rng.randint(2, 5))
        draw.text((40, y), text, font=_font(rng, size, sans), fill=(230, 230, 230) if dark else (30, 30, 30))
        written += words(text)
        y += int(size * 2.6)
    picture.save(out)
    return Picture(out, "screenshot", written)


def document(out: Path, rng: random.Random, vocab: list[str]) -> Picture:
    page = Image.new("RGB", (1200, 1500), (252, 250, 245))
    draw = ImageDraw.Draw(page)
    font = _font(rng, rng.randrange(16, 27), [f for f in FONTS if "Serif" in f.name or "Sans-" in f.name])
    written: list[str] = []
    y = 100
    for _ in range(rng.randint(8, 12)):
        text = " ".join(rng.choice(vocab) for _ in range(rng.randint(5, 8)))
        draw.text((90, y), text.capitalize(), font=font, fill=(25, 25, 25))
        written += words(text)
        y += int(font.size * 1.9)
    turned = page.rotate(rng.uniform(-3, 3), expand=True, fillcolor=(120, 110, 100), resample=Image.Resampling.BICUBIC)
    turned.save(out, quality=88)
    return Picture(out, "document", written)


def make_pictures(folder: Path, counts: dict[str, int], seed: int) -> list[Picture]:
    rng = random.Random(seed)
    vocab = vocabulary()
    photos = sorted((FLICKR8K / "originals").glob("*.jpg"))
    chosen = rng.sample(photos, counts["sign"] + counts["plain"])
    pictures = [sign(p, folder / f"sign-{i:03d}.jpg", rng, vocab) for i, p in enumerate(chosen[: counts["sign"]])]
    pictures += [screenshot(folder / f"screen-{i:03d}.png", rng, vocab) for i in range(counts["screenshot"])]
    pictures += [document(folder / f"document-{i:03d}.jpg", rng, vocab) for i in range(counts["document"])]
    pictures += [Picture(p, "plain", []) for p in chosen[counts["sign"] :]]
    return pictures


def read_all(pictures: list[Picture]) -> tuple[dict[Path, list], float]:
    """Each picture's raw OCR results (every line, any confidence), and the mean seconds per picture."""
    reader = TextReader(min_confidence=0.0)
    reader.load()
    raw: dict[Path, list] = {}
    started = time.perf_counter()
    for picture in pictures:  # as the OCR step decodes a photo; cut 0 keeps every line
        raw[picture.path] = reader.read(open_image(picture.path, min_side=OCR_MIN_SIDE))
    return raw, (time.perf_counter() - started) / max(1, len(pictures))


def report_words(pictures: list[Picture], raw: dict[Path, list]) -> None:
    print(f"{'kind':<12} {'pictures':>8} {'words':>6}  " + "  ".join(f"found@{cut:.2f}" for cut in CUTS))
    groups: dict[str, list[Picture]] = {}
    for picture in pictures:
        groups.setdefault(picture.kind, []).append(picture)
        if picture.detail:
            groups.setdefault(f"  {picture.detail}", []).append(picture)
    for name, members in groups.items():
        if name == "plain":
            continue
        written = sum(len(p.written) for p in members)
        shares = []
        for cut in CUTS:
            found = 0
            for picture in members:
                read = set(searchable_words(" / ".join(line for line, score in raw[picture.path] if score >= cut)))
                found += sum(word in read for word in picture.written)
            shares.append(f"{found / max(1, written):10.3f}")
        print(f"{name:<12} {len(members):>8} {written:>6}  " + "  ".join(shares))
    plain = groups.get("plain", [])
    for cut in CUTS:
        kept = [[line for line, score in raw[p.path] if score >= cut] for p in plain]
        with_text = sum(1 for lines in kept if lines)
        n_words = sum(len(words(" ".join(lines))) for lines in kept)
        print(f"plain photos at cut {cut:.2f}: {with_text}/{len(plain)} hold text, {n_words} words in all")


def cost(n: int, seed: int, scratch: Path) -> None:
    from vistext.service import Service

    photos = sorted((FLICKR8K / "originals").glob("*.jpg"))
    folder = scratch / "cost"
    folder.mkdir()
    for photo in random.Random(seed + 1).sample(photos, n):
        os.symlink(photo, folder / photo.name)
    with Service(db=scratch / "cost.sqlite", progress=False) as service:
        service.index(folder)  # warm: the models load and the graphs are built outside the timing
    with Service(db=scratch / "timed.sqlite", progress=False) as service:
        started = time.perf_counter()
        report = service.index(folder, ocr=False)
        plain = time.perf_counter() - started
        started = time.perf_counter()
        text = service.index(folder, ocr=True).text or {}
        ocr = time.perf_counter() - started
    print(
        f"cost on {n} Flickr8k originals ({report.added} indexed): index without OCR {plain / n:.3f} s/photo, "
        f"OCR step {ocr / n:.3f} s/photo ({text.get('with_text', 0)} hold text): OCR is {ocr / plain:.1f}x the rest"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts (about 2 min on 2 busy cores)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    counts = {"sign": 8, "screenshot": 4, "document": 4, "plain": 6} if args.quick else {
        "sign": 40, "screenshot": 12, "document": 12, "plain": 20}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="vistext-ocr-bench-") as scratch:
        folder = Path(scratch) / "pictures"
        folder.mkdir()
        pictures = make_pictures(folder, counts, args.seed)
        raw, seconds = read_all(pictures)
        print(f"OCR engine: {TextReader.name}, shipped confidence cut {MIN_CONFIDENCE}; {seconds:.2f} s per picture")
        report_words(pictures, raw)
        cost(10 if args.quick else 30, args.seed, Path(scratch))


if __name__ == "__main__":
    main()
