"""Dark channel prior (He et al.) with guided-filter refinement, batched in torch.

The training-free baseline: every report compares the learned models against it. All steps
are tensor ops (separable min filter, integral-image box filter), so it runs batched on the
GPU as well as on the CPU, in fp32 (the guided filter's variances need the precision).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import DehazeModel, Normalization


def min_filter(x: torch.Tensor, size: int) -> torch.Tensor:
    """Separable erosion of an (N, 1, H, W) map with a size x size square."""
    pad = size // 2
    x = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    x = -F.max_pool2d(-x, (size, 1), stride=1)
    return -F.max_pool2d(-x, (1, size), stride=1)


def dark_channel(x: torch.Tensor, patch: int) -> torch.Tensor:
    return min_filter(x.amin(dim=1, keepdim=True), patch)


def box_filter(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over a (2r+1)^2 window clipped at the borders, in O(1) per pixel via cumulative sums."""

    def along(t: torch.Tensor, dim: int) -> torch.Tensor:
        n = t.shape[dim]
        c = torch.cumsum(t, dim=dim)
        c = torch.cat([torch.zeros_like(c.narrow(dim, 0, 1)), c], dim=dim)
        idx = torch.arange(n, device=t.device)
        hi = (idx + radius + 1).clamp(max=n)
        lo = (idx - radius).clamp(min=0)
        shape = [1] * t.dim()
        shape[dim] = n
        count = (hi - lo).to(t.dtype).view(shape)
        return (c.index_select(dim, hi) - c.index_select(dim, lo)) / count

    return along(along(x, 2), 3)


def guided_filter(guide: torch.Tensor, src: torch.Tensor, radius: int, eps: float) -> torch.Tensor:
    """He et al.'s grey-guide guided filter: edges of ``guide`` shape the smoothed ``src``."""
    mean_i = box_filter(guide, radius)
    mean_p = box_filter(src, radius)
    cov_ip = box_filter(guide * src, radius) - mean_i * mean_p
    var_i = box_filter(guide * guide, radius) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return box_filter(a, radius) * guide + box_filter(b, radius)


def estimate_airlight(x: torch.Tensor, dark: torch.Tensor, top_fraction: float) -> torch.Tensor:
    """Mean colour of the pixels with the brightest dark channel, shape (N, 3, 1, 1)."""
    n = x.shape[0]
    flat_dark = dark.reshape(n, -1)
    k = max(1, int(flat_dark.shape[1] * top_fraction))
    idx = flat_dark.topk(k, dim=1).indices                        # (N, k)
    pixels = x.reshape(n, 3, -1).gather(2, idx.unsqueeze(1).expand(n, 3, k))
    return pixels.mean(dim=2).clamp(min=0.05).view(n, 3, 1, 1)


class DarkChannelPrior(DehazeModel):
    """J = (I - A) / max(t, t0) + A with t = 1 - omega * dark(I / A), refined by a guided filter."""

    arch = "dcp"
    normalization = Normalization(input="unit", output="clamp")
    low_precision_ok = False
    trainable = False

    def __init__(self, patch: int = 15, omega: float = 0.95, t0: float = 0.1, top_fraction: float = 0.001,
                 radius: int | None = None, eps: float = 1e-3):
        super().__init__()
        self.patch, self.omega, self.t0, self.top_fraction = patch, omega, t0, top_fraction
        self.radius, self.eps = radius, eps

    def config(self) -> dict:
        return {"patch": self.patch, "omega": self.omega, "t0": self.t0, "top_fraction": self.top_fraction,
                "radius": self.radius, "eps": self.eps}

    def transmission(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Refined transmission (N, 1, H, W) and airlight (N, 3, 1, 1) of a [0, 1] batch."""
        x = x.float()
        airlight = estimate_airlight(x, dark_channel(x, self.patch), self.top_fraction)
        raw_t = 1.0 - self.omega * dark_channel(x / airlight, self.patch)
        # Default radius scales with the frame (about 60 px at 1080p, 20 px at 360p) so results do
        # not depend on resolution.
        radius = self.radius or max(4, round(min(x.shape[-2:]) / 18))
        grey = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
        t = guided_filter(grey, raw_t, radius, self.eps)
        return t.clamp(self.t0, 1.0), airlight

    def forward_features(self, x: torch.Tensor):
        t, airlight = self.transmission(x)
        image = (x.float() - airlight) / t + airlight
        z = torch.cat([airlight.flatten(1), t.mean(dim=(2, 3))], dim=1)
        return image, z
