"""A perceptual loss in the detector's own eyes: the frozen backbone of the Ultralytics detector the
runtime feeds. Dehazed synthetic frames should give the detector the features their clean originals
give it (a task-driven supervised term; the detector's labels are never used)."""
from __future__ import annotations

import torch
from torch import nn

from cidstream.errors import ConfigError


def frozen_detector(weights: str, purpose: str) -> nn.Module:
    """The detection network of an Ultralytics model file, in fp32, eval mode, without gradients;
    a file that does not load says which training term needed it."""
    from cidstream.detect.detector import DetectorError, load_yolo

    try:
        net = load_yolo(str(weights)).model
    except DetectorError as exc:
        raise ConfigError(f"{exc} (needed for the {purpose})") from None
    net = net.float().eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


class DetectorFeatures(nn.Module):
    """Backbone layers 0..max(taps) of an Ultralytics detection model; returns the maps at ``taps``
    (for YOLO11: 4, 6, 10 are the stride-8, 16 and 32 maps the neck uses)."""

    def __init__(self, weights: str, taps: tuple[int, ...] = (4, 6, 10)):
        super().__init__()
        layers = frozen_detector(weights, "feature loss").model
        self.taps = tuple(sorted(taps))
        chain = list(layers[: self.taps[-1] + 1])
        if any(getattr(m, "f", -1) != -1 for m in chain):
            raise ConfigError(f"{weights}: the first {len(chain)} layers are not a plain chain (not a YOLO backbone)")
        self.layers = nn.ModuleList(chain)

    def train(self, mode: bool = True):  # always frozen, BatchNorm statistics included
        return super().train(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i in self.taps:
                out.append(x)
        return out


def feature_loss(features: DetectorFeatures, out: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Per-sample mean over taps of |f(out) - f(clean)| relative to the clean features' magnitude, shape (N,)."""
    with torch.no_grad():
        target = features(clean)
    total = 0.0
    for a, b in zip(features(out.clamp(0, 1)), target):
        total = total + (a - b).abs().mean(dim=(1, 2, 3)) / b.abs().mean(dim=(1, 2, 3)).clamp(min=1e-3)
    return total / len(target)
