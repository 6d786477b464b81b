"""The detection stage of the pipeline: each frame to the base or the fog-adapted detector by the haze
gate, the raw frames too in compare mode, a second detector and fused views as extra arms; tracking per
stream inside."""
from __future__ import annotations

import numpy as np
import torch

from .arms import Arm
from .detections import Detections
from .detector import Detector
from .detectors import Detectors
from .fusion import fuse as fuse_views
from .tracking import Tracker


def arm_names(detector_b: bool, fuse: str | None, compare: bool = True) -> tuple[Arm, ...]:
    """The arms beyond dehazed (and raw in compare mode): raw_b and dehazed_b through the second
    detector, fused (raw and dehazed detections merged) per detector."""
    b = ((Arm.RAW_B,) if compare else ()) + (Arm.DEHAZED_B,) if detector_b else ()
    fused = ((Arm.FUSED,) + ((Arm.FUSED_B,) if detector_b else ())) if fuse else ()
    return b + fused


def hazy_frames(haze, n: int) -> np.ndarray:
    """Which frames the gate dehazed (strength > 0): they take the fog path. Without a gate record (no
    dehazer) every frame does."""
    if haze is None:
        return np.ones(n, bool)
    strength = haze.strength
    strength = strength.cpu().numpy() if isinstance(strength, torch.Tensor) else np.asarray(strength)
    return strength > 0


def _take(frames, idx: np.ndarray):
    if isinstance(frames, torch.Tensor):
        return frames[torch.as_tensor(idx, device=frames.device, dtype=torch.long)]
    return frames[idx]


def _detect_parts(detector: Detector, parts: list[tuple[object, np.ndarray]]) -> list[list[Detections]]:
    """One detector call over several (frames, indices) selections; detections per selection."""
    chosen = [_take(f, i) for f, i in parts if len(i)]
    if not chosen:
        return [[] for _ in parts]
    cat = torch.cat if isinstance(chosen[0], torch.Tensor) else np.concatenate
    found = detector(cat(chosen) if len(chosen) > 1 else chosen[0])
    out, k = [], 0
    for _, i in parts:
        out.append(found[k:k + len(i)])
        k += len(i)
    return out


class DetectStage:
    """The detector calls of a batch (raw and dehazed frames together in one call per detector), then
    tracking frame by frame when asked, with one tracker per stream and arm (a live batch holds several
    cameras). Frames may be numpy arrays or device tensors.

    Arms: ``dehazed``, the output; ``raw`` (the base detector on the raw frames) in compare mode; with
    a second detector ``dehazed_b`` (and ``raw_b`` in compare mode); with ``fuse`` ('wbf' or 'nms')
    ``fused`` (and ``fused_b``): raw and dehazed detections merged.

    With a fog detector the output is chosen per frame: a frame the gate dehazed (strength > 0) goes to the
    fog detector on its ``fog_view`` (dehazed, raw, or both fused by WBF), a clear one to the base detector
    on the raw frame, which the gate left untouched. ``keep_base`` adds ``dehazed_base``, the base detector
    on every dehazed frame (eval's per-model arm)."""

    def __init__(self, detectors: Detectors | Detector, compare: bool = False, track: bool = False,
                 frame_rate: float = 30.0, keep_base: bool = False):
        self.detectors = detectors if isinstance(detectors, Detectors) else Detectors(detectors)
        self.compare, self.track, self.frame_rate = compare, track, frame_rate
        self.keep_base = keep_base and self.detectors.fog is not None
        self.extra = arm_names(self.detectors.second is not None, self.detectors.fuse, compare)
        self.arms = ((Arm.RAW, Arm.DEHAZED) if compare else (Arm.DEHAZED,)) + self.extra
        self.trackers: dict[tuple, Tracker] = {}
        self.frame_rates: dict[str, float] = {}   # per stream, where it differs from frame_rate (live cameras)

    def __call__(self, raw, dehazed, streams: list | None = None, haze=None) -> dict[str, list[Detections]]:
        """arm -> detections per frame; ``streams``: the stream of each frame, for tracking (None: one);
        ``haze``: the gate record (5, N), whose strength row picks each frame's detector."""
        n = len(dehazed)
        d = self.detectors
        every = np.arange(n)
        raw_arm = raw is not None and self.compare
        with_raw = raw_arm or bool(d.fuse)   # fusion merges raw and dehazed detections (raw None: the dehazed)
        raw = dehazed if raw is None else raw
        arms: dict[Arm, list[Detections]] = {}
        if d.fog is None:
            hazy, clear = every[:0], every
        else:
            mask = hazy_frames(haze, n)
            hazy, clear = every[mask], every[~mask]
        # The base detector: the raw frames where an arm needs them (clear frames' output is among them),
        # the dehazed frames where they are its output or an arm's.
        base_raw = every if with_raw else (clear if d.fog is not None else every[:0])
        base_dehazed = every if d.fog is None or self.keep_base or d.fuse else every[:0]
        on_raw, on_dehazed = _detect_parts(d.base, [(raw, base_raw), (dehazed, base_dehazed)])
        by_raw = dict(zip(base_raw.tolist(), on_raw))
        if raw_arm:
            arms[Arm.RAW] = on_raw
        if d.fog is None:
            arms[Arm.DEHAZED] = on_dehazed
        else:
            if self.keep_base or d.fuse:
                arms[Arm.DEHAZED_BASE] = on_dehazed
            views = {"dehazed": [(dehazed, hazy)], "raw": [(raw, hazy)],
                     "fused": [(raw, hazy), (dehazed, hazy)]}[d.fog_view]
            found = _detect_parts(d.fog, views)
            fog = found[0] if len(found) == 1 else [fuse_views([a, b], "wbf") for a, b in zip(*found)]
            chosen = dict(zip(hazy.tolist(), fog))
            arms[Arm.DEHAZED] = [chosen[i] if i in chosen else by_raw[i] for i in range(n)]
        if d.second is not None:
            raw_b, arms[Arm.DEHAZED_B] = _detect_parts(d.second, [(raw, every if with_raw else every[:0]),
                                                                  (dehazed, every)])
            if raw_arm:
                arms[Arm.RAW_B] = raw_b
        if d.fuse:
            base_dehazed_arm = arms.get(Arm.DEHAZED_BASE, arms[Arm.DEHAZED])
            arms[Arm.FUSED] = [fuse_views([r, x], d.fuse) for r, x in zip(on_raw, base_dehazed_arm)]
            if d.second is not None:
                arms[Arm.FUSED_B] = [fuse_views([r, x], d.fuse) for r, x in zip(raw_b, arms[Arm.DEHAZED_B])]
        if not self.keep_base:
            arms.pop(Arm.DEHAZED_BASE, None)
        if self.track:
            keys = streams or [None] * n
            arms = {arm: [self._tracker(keys[i], arm).update(det) for i, det in enumerate(dets)]
                    for arm, dets in arms.items()}
        return arms

    def _tracker(self, stream, arm: str) -> Tracker:
        key = (stream, arm)
        if key not in self.trackers:
            self.trackers[key] = Tracker(self.frame_rates.get(stream, self.frame_rate))
        return self.trackers[key]

    def unique_counts(self) -> dict[str, int]:
        """Unique track ids per arm, over all streams."""
        if not self.track:
            return {}
        out = dict.fromkeys(self.arms, 0)
        for (_, arm), tracker in self.trackers.items():
            out[arm] = out.get(arm, 0) + tracker.unique
        return out
