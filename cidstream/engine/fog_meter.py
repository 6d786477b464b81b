"""The learned fog meter: each frame's visibility in metres, with an uncertainty, from the gate's small copy.

Training-free measures (engine/haze.py) read the scene as much as the air: a textured close-up reads
clear and a dark, flat road reads foggy. This small network is trained by ``cidstream train fog-meter``
(training/fog_meter/haze_train.py) on synthetic fog of known visibility over many clear scenes, the generator's
nuisances without fog labelled clear, and real fog, so it learns which loss of contrast is fog. It sees
the RGB copy plus three maps the classical measures use (local contrast, dark channel, saturation) and
their frame statistics, and returns log10 visibility and its standard deviation (in decades). Cost: a few
million multiply-adds per frame on a ~90 px copy, batched on the frames' device.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import DCPParams
from ..errors import WeightsError
from ..models.registry import MODELS
from ..models.weights import FOG_METER, read_weights, save_weights
from ..ops.filters import dark_channel, dcp_transmission, grey, relative_contrast
from ..ops.fog_nss import NSS_COUNT, fog_nss

RECORD = MODELS["fog-meter"]   # the registry's record of the meter: its bundled file, what made it, its input
BUNDLED = RECORD.bundled        # the weights gate.meter "" reads
LOG_VIS_MIN, LOG_VIS_MAX = 1.0, 4.5     # the head's output range: 10 m .. 31.6 km (reported clipped to 20 km)
# the dark channel and DCP transmission on the meter's small copy (engine/haze.small_copy, 90 px short side),
# shared with the training-free measures in engine/haze.py
PATCH = 5                # dark-channel window (15 px at 270 px, scaled)
OMEGA = DCPParams().omega  # fraction of haze removed, the DCP baseline's default (config.DCPParams)
TOP_FRACTION = 0.01      # airlight from the brightest 1 % of the dark channel (few pixels at 90 px)
BANDS = 6        # horizontal bands, top to bottom, of the banded contrast statistic
# Frame statistic sets by name -> count. classic: the classical measures and frame means; nss: those, the
# fog-aware natural-scene statistics (ops/fog_nss.py) and the contrast of each horizontal band (on a fixed
# camera, how far up the frame the contrast survives is how far one sees).
STAT_SETS = {"classic": 8, "nss": 8 + NSS_COUNT + BANDS}


def frame_maps(x: torch.Tensor, which: str = "classic") -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 3, h, w) in [0, 1] -> ((N, 6, h, w) input maps, (N, STAT_SETS[which]) frame statistics).

    Maps: RGB, relative local contrast (3x3 std / mean), dark channel (5x5), saturation. Statistics: the
    classical measures (-ln mean contrast, mean dark channel, 1 - mean DCP transmission) and the mean and
    spread of brightness, saturation and contrast; for ``which`` nss also the fog-aware statistics and -ln mean
    contrast per horizontal band."""
    luma = grey(x)
    contrast = relative_contrast(luma)
    dark = dark_channel(x, PATCH)
    mx, mn = x.amax(dim=1, keepdim=True), x.amin(dim=1, keepdim=True)
    saturation = (mx - mn) / (mx + 0.05)
    airlight, transmission = dcp_transmission(x, dark, PATCH, OMEGA, TOP_FRACTION)
    ddof = 1 if luma[0].numel() > 1 else 0   # a one-pixel frame has no spread (0, not NaN)
    dims = (1, 2, 3)
    stats = torch.stack([
        -contrast.mean(dim=dims).clamp(min=1e-4).log(), dark.mean(dim=dims),
        1.0 - transmission.clamp(0, 1).mean(dim=dims), luma.mean(dim=dims), luma.std(dim=dims, correction=ddof),
        saturation.mean(dim=dims), contrast.std(dim=dims, correction=ddof), airlight.mean(dim=dims)], dim=1)
    if which == "nss":
        bands = F.adaptive_avg_pool2d(contrast, (BANDS, 1)).flatten(1).clamp(min=1e-4).log().neg()
        stats = torch.cat([stats, fog_nss(x, luma), bands], dim=1)
    return torch.cat([x, contrast.clamp(max=2.0), dark, saturation], dim=1), stats


class FogMeter(nn.Module):
    """Small CNN: stride-2 convolutions (``widths``; none: the frame statistics alone), mean and max pooling,
    the frame statistics, a two-layer head."""

    kind = FOG_METER    # what models/weights.py writes its file as

    def __init__(self, widths: tuple[int, ...] = (16, 32, 48), hidden: int = 48, stats: str = "classic"):
        super().__init__()
        if stats not in STAT_SETS:
            raise ValueError(f"unknown frame statistics {stats!r} (one of {', '.join(STAT_SETS)})")
        self.widths, self.hidden, self.stats = tuple(widths), hidden, stats
        count = STAT_SETS[stats]
        layers, c = [], 6
        for w in self.widths:
            layers += [nn.Conv2d(c, w, 3, stride=2, padding=1), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            c = w
        self.features = nn.Sequential(*layers) if layers else None
        self.stats_norm = nn.BatchNorm1d(count)
        pooled = 2 * c if layers else 0
        self.head = nn.Sequential(nn.Linear(pooled + count, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 2))

    def config(self) -> dict:
        return {"widths": list(self.widths), "hidden": self.hidden, "stats": self.stats}

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, h, w) in [0, 1] -> (N, 2 * widths[-1] + statistics) features (the adaptation aligns these)."""
        maps, stats = frame_maps(x, self.stats)
        if self.features is None:
            return self.stats_norm(stats)
        f = self.features(maps)
        return torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3)), self.stats_norm(stats)], dim=1)

    def predict(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (log10 visibility in metres, its standard deviation in decades), each (N,)."""
        out = self.head(features)
        mu = LOG_VIS_MIN + (LOG_VIS_MAX - LOG_VIS_MIN) * torch.sigmoid(out[:, 0])
        sigma = 0.02 + F.softplus(out[:, 1])
        return mu, sigma

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.predict(self.embed(x))


def save_meter(model: FogMeter, path: str | Path, **metadata) -> Path:
    """Weights with the architecture's sizes and what it was trained on, written by models/weights.py's
    ``save_weights`` like every model's (plain data: loads with weights_only; written whole)."""
    return save_weights(model, path, **metadata)


def read_meter(path: str | Path) -> tuple[FogMeter, dict]:
    """(model in eval mode on the CPU, metadata); a clear WeightsError for anything else. Read by models/weights.py's
    ``read_weights``, like every model's file."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"fog meter weights not found: {path} (train them: cidstream train fog-meter)")
    weights = read_weights(path, FOG_METER)
    cfg = weights.config
    try:
        model = FogMeter(tuple(cfg.get("widths", ())), int(cfg.get("hidden", 48)), str(cfg.get("stats", "classic")))
        model.load_state_dict(weights.state_dict)
    except (RuntimeError, TypeError, ValueError, KeyError) as exc:   # also an unknown statistics set
        raise WeightsError(f"{path}: fog meter weights do not fit the network: {str(exc).splitlines()[0]}") from exc
    return model.eval(), weights.metadata


@lru_cache(maxsize=8)
def _loaded(path: str, device: str) -> FogMeter:
    return read_meter(path)[0].to(device)


def meter_file(weights: str = "") -> Path:
    """The weights file gate.meter names; empty: the bundled one (the registry's fog-meter record)."""
    return Path(weights) if weights else BUNDLED


def load_meter(weights: str = "", device: str = "cpu") -> FogMeter:
    """The meter of a weights file (empty: the bundled one) on a device, loaded once per process."""
    return _loaded(str(meter_file(weights)), str(device))


@torch.no_grad()
def measure_visibility(x: torch.Tensor, weights: str = "") -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 3, h, w) small copies in [0, 1] -> (visibility in metres, uncertainty factor 10**sigma), on x's device."""
    meter = load_meter(weights, x.device)
    mu, sigma = meter(x.float())
    return torch.pow(10.0, mu), torch.pow(10.0, sigma)
