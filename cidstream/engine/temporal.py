"""Temporal smoothing of a model's low-resolution estimates, per video stream.

Dehazing each frame on its own lets the estimated haze (cid-lite's gain/offset maps, DCP's airlight)
jump from frame to frame, and the output flickers although the fog does not. The fog
changes slowly, so an exponential moving average of those *low-resolution* estimates removes the
flicker while every frame's own pixels (and, through the guided upsampling, its edges) stay current.
Moving objects are handled by motion-adaptive weights: where the input changed between frames at the
maps' resolution, the current estimate gets more weight, so cars do not drag a ghost of their haze
estimate behind them. Only the maps' spatial pattern is averaged (``alpha``); their mean stays the
current frame's, and the output's brightness gain over the input is averaged instead (``level_alpha``,
with dcp's airlight), since the per-frame level follows real exposure changes.

State is per stream key; a scene cut (mean |Δ| of a tiny grey thumbnail above ``cut_threshold``) or a
frame size change resets it, so the first frame after a cut is exactly the stateless output.
Independent pictures (stream ``None``) are never smoothed.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

import torch
import torch.nn.functional as F

from ..config import TemporalConfig

THUMB = (18, 32)  # grey thumbnail compared for scene cuts


def thumbnails(grey: torch.Tensor) -> torch.Tensor:
    """(N, 1, h, w) grey in [0, 1] -> (N, 1, 18, 32): what scene cuts are judged on."""
    return F.adaptive_avg_pool2d(grey, THUMB)


def is_cut(prev_thumb: torch.Tensor | None, thumb: torch.Tensor, threshold: float) -> bool:
    """A new scene: no previous frame, or the thumbnails differ by more than ``threshold`` (mean |Δ|)."""
    return prev_thumb is None or float((thumb - prev_thumb).abs().mean()) > threshold


class _State:
    __slots__ = ("shape", "thumb", "maps", "guides")

    def __init__(self, shape, thumb):
        self.shape, self.thumb = shape, thumb
        self.maps: dict[str, torch.Tensor] = {}
        self.guides: dict[str, torch.Tensor] = {}


class TemporalSmoother:
    """EMA of named low-resolution maps per stream; see the module docstring.

    Call ``begin(x, streams)`` once per batch (x: the model's [0, 1] input, streams: one key or None
    per frame), then ``smooth(name, maps)`` for each estimate in the order the model makes them.
    Defaults are TemporalConfig's (cidstream/config.py), so the Python API smooths like a default run."""

    def __init__(self, alpha: float = TemporalConfig.alpha, level_alpha: float = TemporalConfig.level_alpha,
                 cut_threshold: float = TemporalConfig.cut_threshold, motion: float = TemporalConfig.motion,
                 max_streams: int = 64):
        self.alpha, self.level_alpha, self.cut_threshold = alpha, level_alpha, cut_threshold
        self.motion, self.max_streams = motion, max_streams
        self._states: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self._batch: list = []   # per frame of the current batch: (state, fresh) or None
        self._grey: torch.Tensor | None = None

    def reset(self, stream=None) -> None:
        """Forget one stream's state (all streams when None)."""
        with self._lock:
            if stream is None:
                self._states.clear()
            else:
                self._states.pop(stream, None)

    def begin(self, x: torch.Tensor, streams: list) -> None:
        grey = x.float().mean(dim=1, keepdim=True)
        self._grey = grey
        thumbs = thumbnails(grey)
        shape = tuple(x.shape[-2:])
        self._batch = []
        with self._lock:
            for i, key in enumerate(streams):
                if key is None:
                    self._batch.append(None)
                    continue
                st = self._states.get(key)
                fresh = st is None or st.shape != shape or is_cut(st.thumb, thumbs[i], self.cut_threshold)
                if fresh:
                    st = _State(shape, thumbs[i])
                    self._states[key] = st
                st.thumb = thumbs[i]
                self._states.move_to_end(key)
                self._batch.append((st, fresh))
            while len(self._states) > self.max_streams:
                self._states.popitem(last=False)

    def smooth(self, name: str, maps: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) estimates of this batch -> the same, averaged over time per stream, frame by frame."""
        out = list(maps.float().unbind(0))
        guides = F.adaptive_avg_pool2d(self._grey, maps.shape[-2:]) if maps.shape[-1] > 1 else None
        for i, entry in enumerate(self._batch):
            if entry is None:
                continue
            st, fresh = entry
            cur = out[i]
            prev = st.maps.get(name)
            if not fresh and prev is not None and prev.shape == cur.shape:
                if guides is None:   # a global value (airlight, output gain)
                    cur = torch.lerp(prev, cur, self.level_alpha)
                else:
                    # Only the spatial pattern is averaged; each channel's mean stays this frame's, since the
                    # model's per-frame level follows the input's exposure (averaging it adds flicker).
                    level, prev_level = cur.mean(dim=(1, 2), keepdim=True), prev.mean(dim=(1, 2), keepdim=True)
                    w = torch.full_like(cur[:1], self.alpha)
                    if self.motion > 0 and name in st.guides:
                        # Where the picture moved, trust this frame: weight rises to 1 as |Δ grey| reaches `motion`.
                        change = (guides[i] - st.guides[name]).abs()
                        w = w + (1.0 - w) * (change / self.motion).clamp(max=1.0)
                    cur = torch.lerp(prev - prev_level, cur - level, w) + level
            st.maps[name] = cur
            if guides is not None:
                st.guides[name] = guides[i]
            out[i] = cur
        return torch.stack(out).to(maps.dtype)

    def steady_level(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Scale each output frame so its brightness gain over the input (mean luma out / in) is the
        stream's moving average of that gain: the model's frame-to-frame brightness jitter goes, the
        input's own brightness changes pass through."""
        if self.level_alpha >= 1.0:
            return y
        y = y.float()
        gain = y.mean(dim=(1, 2, 3), keepdim=True) / x.float().mean(dim=(1, 2, 3), keepdim=True).clamp(min=1e-3)
        return y * (self.smooth("gain", gain) / gain.clamp(min=1e-3))
