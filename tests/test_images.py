"""Safe decoding: every bad input becomes one ImageDecodeError naming the file; odd modes become correct RGB."""

from __future__ import annotations

import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vistext.errors import ImageDecodeError
from vistext.images import IMAGE_SUFFIXES, file_hash, iter_image_files, open_image, thumbnail


@pytest.fixture()
def photo(real_jpegs: list[Path]) -> Path:
    """A real photo: a 500px Flickr8k original, or scikit-image's rocket.jpg without the research data."""
    return real_jpegs[0]


def _fails(path: Path, reason_part: str, **kwargs: object) -> ImageDecodeError:
    with pytest.raises(ImageDecodeError) as caught:
        open_image(path, **kwargs)  # type: ignore[arg-type]
    error = caught.value
    assert str(path) in str(error), str(error)
    assert reason_part in error.reason, error.reason
    assert "\n" not in str(error)
    return error


def test_real_photo_decodes_to_rgb(photo: Path) -> None:
    img = open_image(photo)
    assert img.mode == "RGB"
    assert min(img.size) >= 224


def test_big_jpeg_is_drafted_but_keeps_min_side(tmp_path: Path, photo: Path) -> None:
    big = tmp_path / "big.jpg"
    Image.open(photo).convert("RGB").resize((3000, 2000)).save(big, quality=90)
    small = open_image(big, min_side=224)
    assert min(small.size) >= 224 and small.size[0] < 3000  # decoded at a reduced DCT scale
    assert open_image(big, min_side=None).size == (3000, 2000)


def test_truncated_jpeg(tmp_path: Path, photo: Path) -> None:
    bad = tmp_path / "truncated.jpg"
    bad.write_bytes(photo.read_bytes()[:2000])
    _fails(bad, "truncated or corrupt")


def test_text_file_named_jpg(tmp_path: Path) -> None:
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is not a photo\n")
    _fails(bad, "not an image file")


def test_empty_file(tmp_path: Path) -> None:
    bad = tmp_path / "empty.png"
    bad.touch()
    _fails(bad, "empty file (0 bytes)")


def test_missing_file(tmp_path: Path) -> None:
    _fails(tmp_path / "nope.jpg", "file not found")


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    ("side", "reason"),
    [
        (40000, "image too large: 1600000000 pixels (limit 80000000)"),
        (9000, "image too large: 9000x9000 pixels (limit 80000000)"),
    ],
)
def test_decompression_bomb_header_is_refused(tmp_path: Path, side: int, reason: str) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_claiming(side, side))
    _fails(bomb, reason)  # refused from the header: decoding would have said "truncated"


def test_image_over_max_pixels_is_refused_before_decoding(tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    Image.new("RGB", (1000, 800), (10, 20, 30)).save(big)
    error = _fails(big, "image too large: 1000x800 pixels (limit 500000)", max_pixels=500_000)
    assert error.path == str(big)


def test_cmyk_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (64, 48), (0, 255, 255, 0)).save(path, quality=95)  # pure red in CMYK
    img = open_image(path)
    assert img.mode == "RGB" and img.size == (64, 48)
    r, g, b = np.asarray(img)[24, 32].astype(int)
    assert r > 200 and g < 60 and b < 60


def test_16bit_png(tmp_path: Path) -> None:
    path = tmp_path / "gray16.png"
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (32, 1))
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode.startswith("I")
    pixels = np.asarray(open_image(path))
    assert pixels.shape == (32, 64, 3) and pixels.dtype == np.uint8
    assert pixels[0, 0, 0] == 0 and pixels[0, -1, 0] == 255 and 100 < pixels[0, 32, 0] < 155


def test_alpha_png_composited_on_white(tmp_path: Path) -> None:
    path = tmp_path / "alpha.png"
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[:, :10] = (0, 0, 255, 255)  # opaque blue on the left, fully transparent on the right
    Image.fromarray(rgba, "RGBA").save(path)
    pixels = np.asarray(open_image(path))
    assert tuple(pixels[5, 2]) == (0, 0, 255)
    assert tuple(pixels[5, 15]) == (255, 255, 255)


def test_palette_gif_first_frame(tmp_path: Path) -> None:
    path = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (16, 16), colour).convert("P") for colour in ((0, 200, 0), (200, 0, 0))]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    pixels = np.asarray(open_image(path))
    r, g, b = pixels[8, 8].astype(int)
    assert g > 150 and r < 50  # the first (green) frame, not the second


def test_exif_rotated_photo_swaps_dimensions(tmp_path: Path, photo: Path) -> None:
    source = Image.open(photo).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rotated.jpg"
    source.save(path, exif=exif.tobytes())
    width, height = source.size
    assert open_image(path, min_side=None).size == (height, width)


def test_unicode_path(tmp_path: Path, photo: Path) -> None:
    folder = tmp_path / "фото 写真"
    folder.mkdir()
    path = folder / "café ☕.jpg"
    shutil.copy(photo, path)
    assert open_image(path).mode == "RGB"
    bad = folder / "сломан.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    _fails(bad, "")


def test_heic_suffix_known() -> None:
    assert {".heic", ".heif", ".jpg", ".png"} <= IMAGE_SUFFIXES


def test_iter_image_files_sorted_recursive_skips_hidden(tmp_path: Path, photo: Path) -> None:
    for rel in ("b.JPG", "a/c.png", "a/.hidden.jpg", ".vistext/x.jpg", "notes.txt", "z.webp"):
        target = tmp_path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, target)
    found = [p.relative_to(tmp_path).as_posix() for p in iter_image_files(tmp_path)]
    assert found == ["b.JPG", "z.webp", "a/c.png"]  # a folder's files first, then its sub-folders, each sorted


def test_file_hash_is_content_based(tmp_path: Path, photo: Path) -> None:
    copy = tmp_path / "copy.jpg"
    shutil.copy(photo, copy)
    assert file_hash(copy) == file_hash(photo)
    copy.write_bytes(copy.read_bytes() + b"\0")
    assert file_hash(copy) != file_hash(photo)


def test_thumbnail_keeps_aspect(photo: Path) -> None:
    thumb = thumbnail(photo, max_side=128)
    width, height = Image.open(photo).size
    assert max(thumb.size) == 128
    assert abs(thumb.size[0] / thumb.size[1] - width / height) < 0.02
