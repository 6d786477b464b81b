"""Dark channel prior (He et al.) with guided-filter refinement, batched in torch.

The training-free baseline: every report compares the learned models against it. All steps
are tensor ops (separable min filter, integral-image box filter), so it runs batched on the
GPU as well as on the CPU, in fp32 (the guided filter's variances need the precision).
"""
from __future__ import annotations

import torch

from ..config import DCPParams
from ..ops.filters import dark_channel, estimate_airlight, guided_filter
from .base import DehazeModel, Normalization


class DarkChannelPrior(DehazeModel):
    """J = (I - A) / max(t, t0) + A with t = 1 - omega * dark(I / A), refined by a guided filter.

    Defaults are the config's ``model.dcp`` section (DCPParams), so ``DarkChannelPrior()`` is the dcp a
    default run uses."""

    arch = "dcp"
    normalization = Normalization(input="unit", output="clamp")
    low_precision_ok = False
    trainable = False

    def __init__(self, patch: int = DCPParams.patch, omega: float = DCPParams.omega, t0: float = DCPParams.t0,
                 top_fraction: float = DCPParams.top_fraction, radius: int | None = DCPParams.radius,
                 eps: float = DCPParams.eps, subsample: int = DCPParams.subsample,
                 sky_tolerance: float = DCPParams.sky_tolerance):
        super().__init__()
        self.sky_tolerance = sky_tolerance
        self.patch, self.omega, self.t0, self.top_fraction = patch, omega, t0, top_fraction
        self.radius, self.eps, self.subsample = radius, eps, subsample

    def config(self) -> dict:
        return {"patch": self.patch, "omega": self.omega, "t0": self.t0, "top_fraction": self.top_fraction,
                "radius": self.radius, "eps": self.eps, "subsample": self.subsample,
                "sky_tolerance": self.sky_tolerance}

    def transmission(self, x: torch.Tensor, smooth=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Refined transmission (N, 1, H, W) and airlight (N, 3, 1, 1) of a [0, 1] batch.

        ``smooth(name, maps)``, for video, averages the airlight over time (engine/temporal.py); the
        transmission stays each frame's own (averaging its coarse pattern raised the warping error
        where vehicles move past a still camera: benchmarks/stability.py)."""
        x = x.float()
        airlight = estimate_airlight(x, dark_channel(x, self.patch), self.top_fraction)
        if smooth is not None:
            airlight = smooth("airlight", airlight)
        raw_t = 1.0 - self.omega * dark_channel(x / airlight, self.patch)
        # Default radius scales with the frame (about 60 px at 1080p, 20 px at 360p) so results do
        # not depend on resolution.
        radius = self.radius or max(4, round(min(x.shape[-2:]) / 18))
        grey = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
        t = guided_filter(grey, raw_t, radius, self.eps, self.subsample)
        if self.sky_tolerance > 0:
            # Sky and other regions close to the airlight break the prior: a tiny t there would blow
            # up compression noise. Raise t where |I - A| is below the tolerance K (t * K / |I - A|).
            distance = (x - airlight).abs().mean(dim=1, keepdim=True)
            distance = guided_filter(grey, distance, radius, self.eps, self.subsample)
            t = torch.minimum(t * (self.sky_tolerance / distance.clamp(min=1e-3)).clamp(min=1.0),
                              torch.ones_like(t))
        return t.clamp(self.t0, 1.0), airlight

    def forward_smoothed(self, x: torch.Tensor, smooth) -> torch.Tensor:
        """``forward`` with the airlight passed through ``smooth`` (video; see transmission)."""
        t, airlight = self.transmission(x, smooth)
        return (x.float() - airlight) / t + airlight

    def forward_features(self, x: torch.Tensor):
        t, airlight = self.transmission(x)
        image = (x.float() - airlight) / t + airlight
        z = torch.cat([airlight.flatten(1), t.mean(dim=(2, 3))], dim=1)
        return image, z
