"""Raw encoder speed: image backbones (fp32 / bf16+channels_last / torch.compile), text towers, JPEG decode.

No Django, no database: just the towers on a synthetic batch, as the embedding worker runs them.

    .venv/bin/python -m bench.encoder_throughput [--compile all|none|resnet50,...] [--batch 32]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.common import DEMO_CSV, ROOT, bench_env, log, table, write_result

if TYPE_CHECKING:  # each benchmark imports torch itself
    import torch
    from torch import nn

BACKBONES = [  # (name, input size, pretrained weights?)
    ("efficientnet_lite0", 224, True),
    ("efficientnet_lite2", 260, True),
    ("resnet50", 224, False),  # random weights: speed only (no ResNet50 weights offline)
]
COMPILE_TIMEOUT_S = 180


def _backbone(name: str) -> nn.Module:
    import torch
    from torch import nn

    if name == "resnet50":
        from torchvision.models import resnet50

        torch.manual_seed(0)
        model = resnet50(weights=None)
        model.fc = nn.Identity()
        return model.eval()
    from ml.backbones import build_backbone

    return build_backbone(name)[0]


def _pixels(batch: int, size: int) -> torch.Tensor:
    # Real pixels (demo photos) rather than noise, so cosine checks compare meaningful features.
    import torch
    from PIL import Image

    from ml.backbones import backbone_spec
    from ml.transforms import to_model_input

    images = [Image.open(ROOT / "demo" / row["image"]).convert("RGB") for row in _demo_rows(batch)]
    spec = backbone_spec("efficientnet_lite0")
    return torch.from_numpy(to_model_input(images, size, spec.mean, spec.std))


def _demo_rows(n: int) -> list[dict]:
    with open(DEMO_CSV, newline="") as f:
        return [row for _, row in zip(range(n), csv.DictReader(f))]


def _time(fn: Callable[[], object], min_iters: int = 3, min_seconds: float = 3.0) -> float:
    """Seconds per call (median), after one warm-up call."""
    fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_iters or time.perf_counter() - start < min_seconds:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def _cos_min(a: torch.Tensor, b: torch.Tensor) -> float:
    x = a.float().numpy()
    y = b.float().numpy()
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    return float((x * y).sum(1).min())


def bench_backbone(name: str, size: int, batch: int, compile_: bool) -> list[dict]:
    import torch

    model = _backbone(name)
    x = _pixels(batch, size)
    rows: list[dict[str, Any]] = []
    with torch.inference_mode():
        ref = model(x)
        s = _time(lambda: model(x))
        rows.append({"mode": "fp32 eager", "s_per_batch": s, "cos_min_vs_fp32": 1.0})
        model_cl = model.to(memory_format=torch.channels_last)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model_cl(x_cl)
            s = _time(lambda: model_cl(x_cl))
        rows.append({"mode": "bf16 autocast + channels_last", "s_per_batch": s, "cos_min_vs_fp32": _cos_min(ref, out)})
    if compile_:
        rows.append(_compile_in_subprocess(name, size, batch, ref))
    for r in rows:
        r.update(backbone=name, input=size, batch=batch)
        if r.get("s_per_batch"):
            r["img/s"] = round(batch / r["s_per_batch"], 1)
            r["ms/img"] = round(r["s_per_batch"] / batch * 1000, 2)
    return rows


def _compile_in_subprocess(name: str, size: int, batch: int, ref: torch.Tensor) -> dict:
    # A separate process so a compile that runs past COMPILE_TIMEOUT_S can be abandoned.
    ref_path = Path(bench_env()["VITRINE_DATA_DIR"]) / f"compile-ref-{name}.npy"
    ref_path.parent.mkdir(parents=True, exist_ok=True)
    np.save(ref_path, ref.float().numpy())
    cmd = [
        sys.executable,
        "-m",
        "bench.encoder_throughput",
        "--compile-one",
        name,
        str(size),
        str(batch),
        str(ref_path),
    ]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=bench_env(), capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S)
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    except subprocess.TimeoutExpired:
        result = {"mode": "bf16 + channels_last + torch.compile", "note": f"skipped: compile > {COMPILE_TIMEOUT_S} s"}
    except (json.JSONDecodeError, IndexError):
        result = {"mode": "bf16 + channels_last + torch.compile", "note": f"failed: {proc.stderr[-300:]}"}
    return result


def compile_one(name: str, size: int, batch: int, ref_path: str) -> None:
    import torch

    model = _backbone(name).to(memory_format=torch.channels_last)
    x = _pixels(batch, size).contiguous(memory_format=torch.channels_last)
    compiled = torch.compile(model)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        t = time.perf_counter()
        out = compiled(x)
        compile_s = time.perf_counter() - t
        s = _time(lambda: compiled(x))
    ref = torch.from_numpy(np.load(ref_path))
    print(
        json.dumps(
            {
                "mode": "bf16 + channels_last + torch.compile",
                "s_per_batch": s,
                "cos_min_vs_fp32": _cos_min(ref, out),
                "compile_s": round(compile_s, 1),
            }
        )
    )


def bench_text(batch: int) -> list[dict]:
    import torch

    from ml.config import TextTowerCfg
    from ml.towers import GRUTextTower, MiniLM

    rows_csv = _demo_rows(batch)
    texts = [f"{r['title']}. {r['description']}" for r in rows_csv]
    rows = []
    torch.manual_seed(0)
    gru = GRUTextTower(TextTowerCfg(vocab_source="none"), texts=texts).eval()
    minilm = MiniLM().eval()
    for name, tower in (("bi-GRU (GRUTextTower)", gru), ("MiniLM-L6 (baseline text)", minilm)):
        tokens = tower.tokenize(texts)
        with torch.inference_mode():
            ref = tower(**tokens)
            for mode, bf16 in (("fp32", False), ("bf16 autocast", True)):
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    out = tower(**tokens)
                    s = _time(lambda: tower(**tower.tokenize(texts)))  # tokenising is part of the cost
                rows.append(
                    {
                        "tower": name,
                        "mode": mode,
                        "batch": batch,
                        "texts/s": round(batch / s, 1),
                        "ms/batch": round(s * 1000, 1),
                        "cos_min_vs_fp32": _cos_min(ref, out),
                    }
                )
    return rows


def bench_jpeg(n: int = 40) -> tuple[list[dict], dict]:
    """Decode + resize + centre-crop to 224 of a ~1600 px product-size JPEG, with and without draft()."""
    import torch
    from PIL import Image
    from sklearn import datasets  # only for its sample photo

    from ml.backbones import backbone_spec
    from ml.transforms import _resize_center_crop, open_image, to_model_input

    src = Image.open(Path(datasets.__file__).parent / "images" / "china.jpg")
    big = src.convert("RGB").resize((1600, 1067), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    big.save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    rows = []
    crops = {}
    for label, draft in (("no draft", None), ("draft(224)", 224)):
        s = _time(lambda: [_resize_center_crop(open_image(data, draft_size=draft), 224) for _ in range(n)])
        crops[label] = _resize_center_crop(open_image(data, draft_size=draft), 224)
        rows.append(
            {
                "decode": label,
                "source": f"{big.width}x{big.height} JPEG q90, {len(data) // 1024} KiB",
                "ms/image": round(s / n * 1000, 2),
            }
        )
    # Does draft change the embedding? Compare EfficientNet-Lite0 features of the two crops.
    model = _backbone("efficientnet_lite0")
    spec = backbone_spec("efficientnet_lite0")
    with torch.inference_mode():
        a = model(torch.from_numpy(to_model_input([crops["no draft"]], 224, spec.mean, spec.std)))
        b = model(torch.from_numpy(to_model_input([crops["draft(224)"]], 224, spec.mean, spec.std)))
    return rows, {"draft_vs_full_decode_lite0_cosine": _cos_min(a, b)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument(
        "--compile", default="all", help="backbones to also run under torch.compile: all, none or a list"
    )
    parser.add_argument("--compile-one", nargs=4, metavar=("NAME", "SIZE", "BATCH", "REF"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.compile_one:
        name, size, batch, ref = args.compile_one
        compile_one(name, int(size), int(batch), ref)
        return
    started = time.time()
    bench_env()
    import torch

    log(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    image_rows = []
    for name, size, _ in BACKBONES:
        log(f"image backbone {name} @ {size}")
        compile_ = args.compile == "all" or name in args.compile.split(",")
        image_rows += bench_backbone(name, size, args.batch, compile_=compile_)
    table(
        image_rows,
        ["backbone", "input", "batch", "mode", "img/s", "ms/img", "cos_min_vs_fp32", "compile_s", "note"],
        title="Image backbones",
    )
    log("text towers")
    text_rows = bench_text(64)
    table(text_rows, title="Text towers (batch 64, demo product texts)")
    log("JPEG decode")
    jpeg_rows, jpeg_extra = bench_jpeg()
    table(jpeg_rows, title="JPEG decode + resize + crop to 224")
    print(jpeg_extra)
    write_result(
        "encoder_throughput", {"image": image_rows, "text": text_rows, "jpeg": jpeg_rows, **jpeg_extra}, started
    )


if __name__ == "__main__":
    main()
