"""Per-frame haze level, its visibility in metres, and the gate strength that follows from it.

A traffic camera is clear most of the day and dehazing a clear frame can cost detections, so the
dehazer measures how hazy each frame is (cheaply, on a ~90 px copy) and the gate decides how much of
the dehazed frame to keep. The default measure is the learned fog meter (engine/fog_meter.py): it gives
visibility and its uncertainty directly, and holds across scenes (benchmarks/fog_measures.py). Three
training-free measures share the dark channel / transmission code of the DCP model; their level becomes
metres through log(visibility) = a + b * level, fitted by benchmarks/visibility_fit.py on the select days
of highway_fog_cam.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..config import VIS_MAX_M, VIS_MIN_M, GateConfig, OneOf, TemporalConfig, rules
from ..frames import HazeRecord
from ..ops.filters import dark_channel, dcp_transmission, grey, relative_contrast
from .fog_meter import OMEGA, PATCH, TOP_FRACTION, load_meter, measure_visibility
from .steady_gate import SteadyGate

SHORT_SIDE = 90          # pixels: the measure runs on a copy this small (cost is flat in frame size)
# The words of gate.policy and gate.measure are their types' OneOf in cidstream/config.py, listed once there.
_WORDS: dict[str, OneOf] = {key: rule for key, rule in rules(GateConfig()) if isinstance(rule, OneOf)}
POLICIES = _WORDS["policy"].values     # off, skip, blend
MEASURES = _WORDS["measure"].values    # learned, contrast, transmission, dark
LEVEL_MEASURES = tuple(m for m in MEASURES if m != "learned")   # the training-free ones (haze_measures)


def small_copy(frames: torch.Tensor, short_side: int = SHORT_SIDE) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, h, w) in [0, 1] with short side ``short_side`` (area average)."""
    x = frames.permute(0, 3, 1, 2).float().div_(255.0)
    h, w = x.shape[-2:]
    scale = short_side / min(h, w)
    if scale < 1:
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return x


def haze_measures(frames: torch.Tensor, short_side: int = SHORT_SIDE,
                  which: tuple[str, ...] = LEVEL_MEASURES, small: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Candidate haze measures (``which``), each (N,) on the frames' device, higher = hazier.

    transmission: 1 - mean DCP transmission; dark: mean dark channel; contrast: -ln of the mean
    relative local standard deviation (3x3) of the grey image (fog flattens local contrast and
    lifts the mean; about 3 on a clear highway frame, 4.5 in dense fog, unbounded above). ``small``: the
    frames' small copy when the caller has made it already."""
    x = small_copy(frames, short_side) if small is None else small
    out = {}
    if "transmission" in which or "dark" in which:
        dark = dark_channel(x, PATCH)
        out["dark"] = dark.mean(dim=(1, 2, 3))
        if "transmission" in which:
            t = dcp_transmission(x, dark, PATCH, OMEGA, TOP_FRACTION)[1]
            out["transmission"] = 1.0 - t.clamp(0, 1).mean(dim=(1, 2, 3))
    if "contrast" in which:
        out["contrast"] = -relative_contrast(grey(x)).mean(dim=(1, 2, 3)).clamp(min=1e-4).log()
    return {k: out[k] for k in which}


def haze_level(frames: torch.Tensor, measure: str = "transmission") -> torch.Tensor:
    """(N,) haze level (higher = hazier) of uint8 (N, H, W, 3) frames (any device; stays there)."""
    if frames.dtype != torch.uint8 or frames.dim() != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames shaped (N, H, W, 3), got {frames.dtype} {tuple(frames.shape)}")
    return haze_measures(frames, which=(measure,))[measure]


def measured_visibility(frames: torch.Tensor, measure: str, calib_a: float, calib_b: float,
                        meter: str = "", small: torch.Tensor | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(level, visibility in metres, uncertainty factor), each (N,), of uint8 (N, H, W, 3) frames.

    learned: the fog meter's visibility; its level is log10(20 km / visibility) (decades below the meter's
    limit) and its factor 10**sigma (the visibility is within /factor..*factor about two times in three).
    The training-free measures: their level, the calibrated visibility and NaN (no uncertainty).
    ``small``: the frames' small_copy when the caller has made it already."""
    if frames.dtype != torch.uint8 or frames.dim() != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames shaped (N, H, W, 3), got {frames.dtype} {tuple(frames.shape)}")
    small = small_copy(frames) if small is None else small
    if measure == "learned":
        vis, factor = measure_visibility(small, meter)
        vis = vis.clamp(VIS_MIN_M, VIS_MAX_M)
        return torch.log10(VIS_MAX_M / vis), vis, factor
    level = haze_measures(frames, which=(measure,), small=small)[measure]
    return level, visibility_m(level, calib_a, calib_b), torch.full_like(level, float("nan"))


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
    """The gate as the dehazer runs it: measure, decide (per frame, or on video steadily per stream:
    engine/steady_gate.py), mix. Defaults are GateConfig's (cidstream/config.py), calibration included;
    ``cut_threshold`` is the temporal section's, so the gate and the model's smoothing agree on scene cuts."""

    def __init__(self, policy: str = _DEFAULT.policy, clear_m: float = _DEFAULT.clear_m,
                 dense_m: float = _DEFAULT.dense_m, calib_a: float = _DEFAULT.calib_a,
                 calib_b: float = _DEFAULT.calib_b, measure: str = _DEFAULT.measure, meter: str = _DEFAULT.meter,
                 steady: bool = _DEFAULT.steady, steady_alpha: float = _DEFAULT.steady_alpha,
                 max_step: float = _DEFAULT.max_step, hysteresis: float = _DEFAULT.hysteresis,
                 band: float = _DEFAULT.band, skip_raw: bool = _DEFAULT.skip_raw,
                 cut_threshold: float = TemporalConfig.cut_threshold):
        policy = _WORDS["policy"].normal(policy)  # the config's alias: YAML reads an unquoted off as false
        if policy not in POLICIES:
            raise ValueError(f"unknown gate policy {policy!r}: use {', '.join(POLICIES)}")
        if measure not in MEASURES:
            raise ValueError(f"unknown haze measure {measure!r}: use {', '.join(MEASURES)}")
        self.policy, self.clear_m, self.dense_m = policy, clear_m, dense_m
        self.calib_a, self.calib_b, self.measure, self.meter = calib_a, calib_b, measure, meter
        self.skip_raw = skip_raw  # Dehazer.process_measured runs the network only where the strength is > 0
        self.steady = SteadyGate(steady_alpha, max_step, hysteresis, band, cut_threshold) if steady else None
        if measure == "learned":
            load_meter(meter)   # a missing or wrong weights file stops here, before any frame is read

    @classmethod
    def from_config(cls, g, cut_threshold: float = TemporalConfig.cut_threshold) -> "HazeGate":
        return cls(**vars(g), cut_threshold=cut_threshold)

    def measure_frames(self, raw: torch.Tensor, small: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(level, visibility_m, uncertainty factor) of uint8 (N, H, W, 3) frames, as configured."""
        return measured_visibility(raw, self.measure, self.calib_a, self.calib_b, self.meter, small)

    def decide(self, raw: torch.Tensor, streams=None) -> HazeRecord:
        """Each frame's level, visibility_m, strength, uncertainty factor and the steady visibility the strength
        follows (the per-frame reading where frames are independent), as floats on the frames' device.
        ``streams``: one key or None per frame, or one key for all (see Dehazer.process)."""
        small = small_copy(raw)
        level, vis, factor = self.measure_frames(raw, small)
        keys = list(streams) if isinstance(streams, (list, tuple)) else [streams] * raw.shape[0]
        if self.steady is None or self.policy == "off" or all(k is None for k in keys):
            s, steady = gate_strength(vis, self.policy, self.clear_m, self.dense_m), vis
        else:
            s, steady = self.steady.update(vis, small, keys, tuple(raw.shape[1:3]), self._strength, self.clear_m)
        return HazeRecord(torch.stack([level.float(), vis.float(), s.to(vis.device, torch.float32), factor.float(),
                                       steady.to(vis.device, torch.float32)]))

    def _strength(self, visibility: torch.Tensor) -> torch.Tensor:
        return gate_strength(visibility, self.policy, self.clear_m, self.dense_m)

    def __call__(self, raw: torch.Tensor, dehazed: torch.Tensor, streams=None) -> tuple[torch.Tensor, HazeRecord]:
        """(gated uint8 frames, the record of ``decide``)."""
        haze = self.decide(raw, streams)
        return (dehazed if self.policy == "off" else apply_gate(raw, dehazed, haze.strength)), haze


def gate_counts(strength) -> tuple[int, int]:
    """(frames left raw, frames blended) from gate strengths (a tensor, array or list, per frame): raw where
    the strength is exactly 0, blended where 0 < s < 1; "gated" (not fully dehazed) is their sum. Counted on
    the unrounded strengths (the outputs round to 3 decimals: 0.9996 would pass for fully dehazed). RunStats
    (pipeline/loop.py), live stats (live/hub.py) and the detection report all count with it."""
    s = (strength.detach().cpu().double() if isinstance(strength, torch.Tensor)
         else torch.as_tensor(strength, dtype=torch.float64))
    return int((s == 0).sum()), int(((s > 0) & (s < 1)).sum())
