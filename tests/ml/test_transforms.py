from __future__ import annotations

import io
import random

import pytest
from PIL import Image

from ml.transforms import ImageError, open_image, to_model_input, to_train_input


def encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_decompression_bomb_rejected_before_decoding() -> None:
    data = encode(Image.new("1", (8000, 6000)), "PNG")  # tiny file, 48 MP
    assert len(data) < 100_000
    with pytest.raises(ImageError, match="image too large \\(8000×6000\\)"):
        open_image(data)
    assert open_image(data, max_pixels=50_000_000).size == (8000, 6000)


def test_non_image_rejected() -> None:
    with pytest.raises(ImageError, match="not an image"):
        open_image(b"%PDF-1.4 definitely not pixels")


def test_truncated_jpeg_rejected() -> None:
    data = encode(Image.effect_noise((200, 200), 50).convert("RGB"), "JPEG")
    with pytest.raises(ImageError, match="truncated/corrupt"):
        open_image(data[: len(data) // 2])


def test_exif_orientation_applied(tmp_path) -> None:
    img = Image.new("RGB", (40, 20), "blue")
    img.paste((255, 0, 0), (0, 0, 20, 20))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # display needs a 90 degree clockwise turn
    path = tmp_path / "rotated.jpg"
    img.save(path, exif=exif.tobytes(), quality=95)
    out = open_image(path)
    assert out.size == (20, 40)
    top, bottom = out.getpixel((10, 5)), out.getpixel((10, 35))
    assert top[0] > 200 and top[2] < 60  # the red half is now on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_palette_with_transparency_composited_on_white() -> None:
    img = Image.new("P", (10, 10), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.paste(1, (0, 0, 5, 10))
    data = encode(img, "PNG", transparency=0)  # palette index 0 (black) is transparent
    out = open_image(data)
    assert out.mode == "RGB"
    assert out.getpixel((8, 5)) == (255, 255, 255)
    assert out.getpixel((2, 5)) == (255, 0, 0)


def test_rgba_alpha_composited_on_white() -> None:
    img = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    img.putpixel((0, 0), (0, 0, 255, 255))
    out = open_image(encode(img, "PNG"))
    assert out.getpixel((3, 3)) == (255, 255, 255)
    assert out.getpixel((0, 0)) == (0, 0, 255)


def test_jpeg_draft_decodes_smaller() -> None:
    data = encode(Image.new("RGB", (1600, 1200), "green"), "JPEG")
    assert open_image(data, draft_size=224).size == (400, 300)


def test_model_input_shapes_and_normalisation() -> None:
    imgs = [Image.new("RGB", (300, 100), (255, 255, 255)), Image.new("L", (50, 80), 0)]
    x = to_model_input(imgs, 32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert x.shape == (2, 3, 32, 32)
    assert x[0].min() == pytest.approx(1.0) and x[1].max() == pytest.approx(-1.0)
    y = to_train_input(imgs, 24, (0.5,) * 3, (0.5,) * 3, random.Random(0))
    assert y.shape == (2, 3, 24, 24)


def test_hflip_mirrors() -> None:
    img = Image.new("RGB", (20, 20), "white")
    img.paste((0, 0, 0), (0, 0, 10, 20))
    x = to_model_input([img], 20, (0, 0, 0), (1, 1, 1))
    flipped = to_model_input([img], 20, (0, 0, 0), (1, 1, 1), hflip=True)
    assert float(x[0, 0, 10, 2]) == 0.0 and float(flipped[0, 0, 10, 2]) == 1.0
