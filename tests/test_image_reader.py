"""One image reader with bounds (data.images.read_image): only the allowed formats are parsed, and the pixel limit
holds for every format before a pixel is decoded; every command skips and counts a refused file."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest
from PIL import Image

from inceptionnet.cli import main
from inceptionnet.data.images import FORMATS, MAX_PIXELS, ImageRefused, read_image, read_image_bytes


def _png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("L", (width, height)).save(out, format="PNG", optimize=True)  # megapixels in a few kB
    return out.getvalue()


def _ico_holding(png: bytes) -> bytes:
    """An ICO whose directory says 16 x 16 and whose one entry is `png`, whatever its size."""
    return struct.pack("<HHH", 0, 1, 1) + struct.pack("<BBBBHHII", 16, 16, 0, 0, 1, 32, len(png), 22) + png


def test_every_allowed_format_reads(tmp_path: Path) -> None:
    for fmt in ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"):
        out = io.BytesIO()
        Image.new("RGB", (40, 30), (200, 10, 10)).save(out, format=fmt)
        image = read_image_bytes(out.getvalue())
        assert image.size == (40, 30) and image.mode == "RGB", fmt
    assert FORMATS == ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")


def test_a_format_outside_the_list_is_refused_before_its_parser_runs() -> None:
    ico = _ico_holding(_png(3000, 3000))  # 9 MP behind a 16 x 16 directory
    with pytest.raises(ImageRefused, match=r"not an image of the formats read here \(JPEG, PNG, WEBP"):
        read_image_bytes(ico)
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n"
    with pytest.raises(ImageRefused):
        read_image_bytes(eps)


def test_the_pixel_limit_holds_before_decoding() -> None:
    with pytest.raises(ImageRefused, match=r"2000 x 1000 = 2.0 MP, above the limit of 1 MP") as refused:
        read_image_bytes(_png(2000, 1000), max_pixels=1_000_000)
    assert refused.value.too_large
    assert Image.MAX_IMAGE_PIXELS == MAX_PIXELS  # Pillow's own bomb limit: the same default
    with pytest.raises(ImageRefused, match=r"above the limit of 89\.4785 MP"):
        read_image_bytes(_png(10_000, 9_000))  # 90 MP: refused by its header, never decoded


def test_predict_skips_and_counts_refused_files(tmp_path: Path, tiny_classifier: Path, capsys) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    Image.new("RGB", (80, 80), (0, 120, 0)).save(folder / "ok.jpg")
    (folder / "icon.jpg").write_bytes(_ico_holding(_png(3000, 3000)))  # an ICO under a photo's name
    (folder / "huge.png").write_bytes(_png(10_000, 9_000))
    out = tmp_path / "preds.jsonl"
    assert main(["predict", str(folder), "--model", str(tiny_classifier), "--engine", "torch", "--json", str(out)]) == 1
    records = {Path(line.split('"path": "')[1].split('"')[0]).name: line for line in out.read_text().splitlines()}
    assert '"error": null' in records["ok.jpg"]
    assert "formats read here" in records["icon.jpg"] and "above the limit" in records["huge.png"]
    assert read_image(folder / "ok.jpg").size == (80, 80)
