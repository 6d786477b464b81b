"""Temporal stability of a processed video, relative to its input.

Two figures, each the output's frame-to-frame change divided by the input's, so 1.0 means "no more
unstable than the source" and anything above it is flicker the processing added:

- ``flicker``: mean |Δ mean luma| of consecutive frames (global brightness pumping).
- ``warp``: mean |out_t - warp(out_{t-1})|, the previous frame moved onto the current one by the
  optical flow of the *input* frames (Farnebäck on grey input), so real motion is not counted as
  instability; pixels the flow takes outside the frame and, optionally, occluded ones (forward-backward
  check) are left out.

``StabilityMeter`` takes frames as they pass (a pipeline does not have to keep the video);
``flicker_ratio`` and ``warp_error_ratio`` are the one-call forms over whole sequences.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _luma_mean(frame: np.ndarray) -> float:
    return float(frame.reshape(-1, 3).mean(axis=0, dtype=np.float64) @ LUMA)


def _small(frame: np.ndarray, max_side: int) -> np.ndarray:
    """float32 RGB at most ``max_side`` pixels on its long side (area-averaged: flow and errors are
    about structure, and full-resolution Farnebäck would cost more than the model on a CPU)."""
    h, w = frame.shape[:2]
    scale = max_side / max(h, w)
    if scale < 1.0:
        frame = cv2.resize(frame, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return frame.astype(np.float32)


def _grey(rgb: np.ndarray) -> np.ndarray:
    return np.clip(rgb @ LUMA, 0, 255).astype(np.uint8)


def _flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dense flow with a(p) ≈ b(p + flow(p))."""
    return cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)


class StabilityMeter:
    """Streaming flicker and warping-error ratios of (input, output) frame pairs fed in order.

    ``update(inp, out)`` takes one pair of uint8 RGB (H, W, 3) frames, ``update_batch`` a stack;
    ``reset()`` starts a new sequence (no pair is formed across it). Flow is computed once per input
    pair at ``max_side`` pixels."""

    def __init__(self, max_side: int = 320, occlusion: bool = True, occlusion_px: float = 1.0, warp: bool = True):
        self.max_side, self.occlusion, self.occlusion_px, self.warp = max_side, occlusion, occlusion_px, warp
        self.pairs = 0
        self._flick_in = self._flick_out = 0.0
        self._warp_in = self._warp_out = 0.0
        self.reset()

    def reset(self) -> None:
        self._prev = None   # (input luma, output luma, small input, small output, grey input)

    def update(self, inp: np.ndarray, out: np.ndarray) -> None:
        inp, out = np.asarray(inp), np.asarray(out)
        if inp.shape != out.shape or inp.ndim != 3 or inp.shape[-1] != 3:
            raise ValueError(f"expected two RGB frames of one shape, got {inp.shape} and {out.shape}")
        si, so = _small(inp, self.max_side), _small(out, self.max_side)
        cur = (_luma_mean(inp), _luma_mean(out), si, so, _grey(si))
        prev, self._prev = self._prev, cur
        if prev is None or prev[2].shape != si.shape:
            return
        self.pairs += 1
        self._flick_in += abs(cur[0] - prev[0])
        self._flick_out += abs(cur[1] - prev[1])
        if not self.warp:
            return
        map_x, map_y, valid = self._warp_maps(cur[4], prev[4])
        if not valid.any():
            return
        for idx, acc in ((2, "_warp_in"), (3, "_warp_out")):
            warped = cv2.remap(prev[idx], map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            err = np.abs(cur[idx] - warped).mean(axis=2)[valid].mean()
            setattr(self, acc, getattr(self, acc) + float(err))

    def _warp_maps(self, grey_t: np.ndarray, grey_prev: np.ndarray):
        """Sampling maps taking frame t-1 onto frame t, and the pixels where that is trustworthy."""
        h, w = grey_t.shape
        flow = _flow(grey_t, grey_prev)
        xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        map_x, map_y = xs + flow[..., 0], ys + flow[..., 1]
        valid = (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)
        if self.occlusion:
            back = _flow(grey_prev, grey_t)
            back_at = cv2.remap(back, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            # Forward then backward should come home; where it does not, the pixel was occluded.
            miss = np.hypot(flow[..., 0] + back_at[..., 0], flow[..., 1] + back_at[..., 1])
            limit = self.occlusion_px + 0.05 * (np.hypot(flow[..., 0], flow[..., 1]) + np.hypot(back_at[..., 0],
                                                                                               back_at[..., 1]))
            valid &= miss <= limit
        return map_x, map_y, valid

    def update_batch(self, inputs, outputs) -> None:
        for a, b in zip(inputs, outputs):
            self.update(a, b)

    @property
    def flicker_ratio(self) -> float:
        return _ratio(self._flick_out, self._flick_in)

    @property
    def warp_ratio(self) -> float:
        return _ratio(self._warp_out, self._warp_in)

    def result(self) -> dict:
        """JSON-ready figures (None where the input never changed, so no ratio exists)."""
        def clean(v):
            return None if math.isnan(v) else round(v, 4)
        return {"flicker_ratio": clean(self.flicker_ratio), "warp_ratio": clean(self.warp_ratio), "pairs": self.pairs}


def _ratio(out: float, inp: float) -> float:
    """Ratio of mean changes (the means share one pair count); NaN when the input never changed."""
    return out / inp if inp > 1e-9 else float("nan")


def flicker_ratio(inputs, outputs) -> float:
    """Mean |Δ mean luma| of consecutive output frames ÷ the same for the input frames."""
    m = StabilityMeter(warp=False)
    m.update_batch(inputs, outputs)
    return m.flicker_ratio


def warp_error_ratio(inputs, outputs, max_side: int = 320, occlusion: bool = True) -> float:
    """Mean flow-warping error of consecutive output frames ÷ the same for the input frames (flow of
    the input)."""
    m = StabilityMeter(max_side=max_side, occlusion=occlusion)
    m.update_batch(inputs, outputs)
    return m.warp_ratio
