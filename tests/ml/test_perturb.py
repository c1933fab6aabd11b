from __future__ import annotations

import random

from PIL import Image, ImageChops, ImageDraw

from ml.perturb import border_colour, perturb


def product_photo() -> Image.Image:
    img = Image.new("RGB", (200, 160), (250, 250, 250))
    ImageDraw.Draw(img).ellipse((50, 30, 150, 130), fill=(200, 30, 30))
    return img


def test_output_is_rgb_and_cropped_to_75_to_95_percent() -> None:
    rng = random.Random(0)
    for _ in range(30):
        out = perturb(product_photo(), rng)
        assert out.mode == "RGB"
        w, h = out.size
        assert 150 <= w <= 190 and 120 <= h <= 152


def test_deterministic_for_a_seeded_rng() -> None:
    a = perturb(product_photo(), random.Random(42))
    b = perturb(product_photo(), random.Random(42))
    assert a.size == b.size and a.tobytes() == b.tobytes()
    c = perturb(product_photo(), random.Random(43))
    assert c.tobytes() != a.tobytes()


def test_changes_the_pixels_but_keeps_the_item() -> None:
    photo = product_photo()
    out = perturb(photo, random.Random(5))
    assert ImageChops.difference(out, photo.crop((0, 0) + out.size)).getbbox() is not None
    # the red item is still in the middle, the corners still background-like
    r, g, _ = out.getpixel((out.width // 2, out.height // 2))
    assert r > 120 and g < 90
    assert min(out.getpixel((0, 0))) > 150


def test_rotation_fills_with_the_border_colour() -> None:
    grey = Image.new("RGB", (100, 100), (90, 90, 90))
    assert border_colour(grey) == (90, 90, 90)
    out = perturb(grey, random.Random(1))
    # no black wedges in the corners: everything stays near the (brightness-scaled) grey
    lo, hi = out.convert("L").getextrema()
    assert hi - lo < 25 and lo > 40


def test_transparent_and_greyscale_inputs() -> None:
    rgba = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    out = perturb(rgba, random.Random(2))
    assert out.mode == "RGB" and min(out.getpixel((out.width // 2, out.height // 2))) > 150
    grey = Image.new("L", (28, 28), 255)
    assert perturb(grey, random.Random(2)).mode == "RGB"
