"""Per-frame haze level, its visibility in metres, and the gate strength that follows from it.

A traffic camera is clear most of the day and dehazing a clear frame can cost detections, so the
dehazer measures how hazy each frame is (cheaply, on a ~90 px copy) and the gate decides how much of
the dehazed frame to keep. Three candidate measures share the dark channel / transmission code of
the DCP model; benchmarks/visibility_fit.py picked the one that ranks visibility best on the select
days of highway_fog_cam (local contrast) and fitted log(visibility) = a + b * level there.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..config import GateConfig, OneOf, rules
from ..ops.filters import box_filter, dark_channel, estimate_airlight

SHORT_SIDE = 90          # pixels: the measure runs on a copy this small (cost is flat in frame size)
PATCH = 5                # dark-channel window on that copy (15 px at 270 px, scaled)
OMEGA = 0.95
TOP_FRACTION = 0.01      # airlight from the brightest 1 % of the dark channel (few pixels at 90 px)
VIS_MIN_M, VIS_MAX_M = 10.0, 20000.0
# The words of gate.policy and gate.measure are their types' OneOf in cidstream/config.py, listed once there.
_WORDS: dict[str, OneOf] = {key: rule for key, rule in rules(GateConfig()) if isinstance(rule, OneOf)}
POLICIES = _WORDS["policy"].values     # off, skip, blend
MEASURES = _WORDS["measure"].values    # contrast, transmission, dark


def _small(frames: torch.Tensor, short_side: int = SHORT_SIDE) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, h, w) in [0, 1] with short side ``short_side`` (area average)."""
    x = frames.permute(0, 3, 1, 2).float().div_(255.0)
    h, w = x.shape[-2:]
    scale = short_side / min(h, w)
    if scale < 1:
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return x


def haze_measures(frames: torch.Tensor, short_side: int = SHORT_SIDE,
                  which: tuple[str, ...] = MEASURES) -> dict[str, torch.Tensor]:
    """Candidate haze measures (``which``), each (N,) on the frames' device, higher = hazier.

    transmission: 1 - mean DCP transmission; dark: mean dark channel; contrast: -ln of the mean
    relative local standard deviation (3x3) of the grey image (fog flattens local contrast and
    lifts the mean; about 3 on a clear highway frame, 4.5 in dense fog, unbounded above)."""
    x = _small(frames, short_side)
    out = {}
    if "transmission" in which or "dark" in which:
        dark = dark_channel(x, PATCH)
        out["dark"] = dark.mean(dim=(1, 2, 3))
        if "transmission" in which:
            airlight = estimate_airlight(x, dark, TOP_FRACTION)
            t = 1.0 - OMEGA * dark_channel(x / airlight, PATCH)
            out["transmission"] = 1.0 - t.clamp(0, 1).mean(dim=(1, 2, 3))
    if "contrast" in which:
        grey = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
        mean = box_filter(grey, 1)
        std = (box_filter(grey * grey, 1) - mean * mean).clamp(min=0).sqrt()
        out["contrast"] = -(std / (mean + 0.05)).mean(dim=(1, 2, 3)).clamp(min=1e-4).log()
    return {k: out[k] for k in which}


def haze_level(frames: torch.Tensor, measure: str = "transmission") -> torch.Tensor:
    """(N,) haze level (higher = hazier) of uint8 (N, H, W, 3) frames (any device; stays there)."""
    if frames.dtype != torch.uint8 or frames.dim() != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames shaped (N, H, W, 3), got {frames.dtype} {tuple(frames.shape)}")
    return haze_measures(frames, which=(measure,))[measure]


def visibility_m(level, a: float, b: float):
    """Visibility in metres from a haze level: exp(a + b * level), clipped to [10, 20000] m.

    Works on tensors (stays on their device) and on floats."""
    if isinstance(level, torch.Tensor):
        return torch.exp(a + b * level.float()).clamp(VIS_MIN_M, VIS_MAX_M)
    return min(VIS_MAX_M, max(VIS_MIN_M, math.exp(a + b * float(level))))


def gate_strength(visibility: torch.Tensor, policy: str, clear_m: float, dense_m: float) -> torch.Tensor:
    """(N,) share of the dehazed frame kept, in [0, 1].

    off: 1 everywhere; skip: 0 at or above ``clear_m`` (the raw frame), else 1; blend: 0 at
    ``clear_m`` rising linearly in log visibility to 1 at ``dense_m`` and below."""
    v = visibility.float()
    if policy == "off":
        return torch.ones_like(v)
    if policy == "skip":
        return (v < clear_m).to(v.dtype)
    if policy == "blend":
        if clear_m <= dense_m:
            return (v < clear_m).to(v.dtype)
        s = (math.log(clear_m) - v.clamp(min=VIS_MIN_M).log()) / (math.log(clear_m) - math.log(dense_m))
        s = torch.where(v <= dense_m, torch.ones_like(s), s)   # exact ends: no float rounding at the thresholds
        return torch.where(v >= clear_m, torch.zeros_like(s), s.clamp(0.0, 1.0))
    raise ValueError(f"unknown gate policy {policy!r}: use {', '.join(POLICIES)}")


def apply_gate(raw: torch.Tensor, dehazed: torch.Tensor, strength: torch.Tensor) -> torch.Tensor:
    """raw * (1 - s) + dehazed * s per frame, uint8; s = 0 gives the raw frame and s = 1 the dehazed
    one bit-exact."""
    s = strength.to(raw.device).view(-1, 1, 1, 1)
    mixed = torch.lerp(raw.float(), dehazed.float(), s).add_(0.5).clamp_(0, 255).to(torch.uint8)
    return torch.where(s == 0, raw, torch.where(s == 1, dehazed, mixed))


_DEFAULT = GateConfig()  # the one set of defaults: the config's (HazeGate() is the configured default gate)


class HazeGate:
    """The gate as the dehazer runs it: measure, calibrate, decide, mix. ``last`` holds the latest
    batch's (3, N) tensor of level, visibility and strength, on the device until someone reads it.
    Defaults are GateConfig's (cidstream/config.py), calibration included."""

    def __init__(self, policy: str = _DEFAULT.policy, clear_m: float = _DEFAULT.clear_m,
                 dense_m: float = _DEFAULT.dense_m, calib_a: float = _DEFAULT.calib_a,
                 calib_b: float = _DEFAULT.calib_b, measure: str = _DEFAULT.measure):
        policy = _WORDS["policy"].normal(policy)  # the config's alias: YAML reads an unquoted off as false
        if policy not in POLICIES:
            raise ValueError(f"unknown gate policy {policy!r}: use {', '.join(POLICIES)}")
        if measure not in MEASURES:
            raise ValueError(f"unknown haze measure {measure!r}: use {', '.join(MEASURES)}")
        self.policy, self.clear_m, self.dense_m = policy, clear_m, dense_m
        self.calib_a, self.calib_b, self.measure = calib_a, calib_b, measure

    @classmethod
    def from_config(cls, g) -> "HazeGate":
        return cls(g.policy, g.clear_m, g.dense_m, g.calib_a, g.calib_b, g.measure)

    def __call__(self, raw: torch.Tensor, dehazed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(gated uint8 frames, (3, N) float tensor: level, visibility_m, strength)."""
        level = haze_level(raw, self.measure)
        vis = visibility_m(level, self.calib_a, self.calib_b)
        s = gate_strength(vis, self.policy, self.clear_m, self.dense_m)
        out = dehazed if self.policy == "off" else apply_gate(raw, dehazed, s)
        return out, torch.stack([level.float(), vis, s])


def haze_rows(haze) -> list[dict]:
    """Host dicts {haze, visibility_m, gate} per frame from a (3, N) gate tensor (None -> [])."""
    if haze is None:
        return []
    values = haze.detach().float().cpu().tolist()
    return [{"haze": round(lv, 4), "visibility_m": round(v, 1), "gate": round(s, 3)}
            for lv, v, s in zip(*values)]


def gate_counts(strength) -> tuple[int, int]:
    """(frames left raw, frames blended) from gate strengths (a tensor, array or list, per frame): raw where
    the strength is exactly 0, blended where 0 < s < 1; "gated" (not fully dehazed) is their sum. Counted on
    the unrounded strengths (haze_rows rounds to 3 decimals: 0.9996 would pass for fully dehazed). RunStats
    (pipeline/loop.py), live stats (live/hub.py) and the detection report all count with it."""
    s = (strength.detach().cpu().double() if isinstance(strength, torch.Tensor)
         else torch.as_tensor(strength, dtype=torch.float64))
    return int((s == 0).sum()), int(((s > 0) & (s < 1)).sum())
