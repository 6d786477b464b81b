"""The haze gate over time: on video, one strength per stream that follows the stream's smoothed visibility.

The fog meter reads each frame with noise (on a clip of unchanging fog its readings spread over a factor of
two), and a gate that decides frame by frame turns that noise into brightness flicker: the output jumps between
more and less dehazed although the fog does not change. Fog changes over seconds to minutes, so on video the gate
follows an exponential moving average of each stream's log visibility, re-aims the strength only when that
average has moved by more than the factor ``band`` from where the strength was last aimed (so fog that stays
the same gives one constant strength, not a slow wander with the meter's noise), moves the strength by at most
``max_step`` from one frame to the next, and a stream that is left raw starts dehazing only once its smoothed
visibility is below ``clear_m / hysteresis``, so a camera whose visibility hovers at the threshold does not
toggle between raw and dehazed. A scene cut (judged as the model's temporal smoothing judges it) or a new frame
size starts the stream afresh from that frame's own reading. Independent pictures (stream None: image folders,
eval) are gated frame by frame.
"""
from __future__ import annotations

import math
import threading
from collections import OrderedDict
from typing import Callable

import torch

from .temporal import is_cut, thumbnails


class _Stream:
    __slots__ = ("shape", "thumb", "log_vis", "aim", "strength")

    def __init__(self, shape, thumb, log_vis: float, strength: float):
        self.shape, self.thumb, self.log_vis, self.strength = shape, thumb, log_vis, strength
        self.aim = log_vis   # the smoothed log visibility the strength was last aimed at


class SteadyGate:
    """Per-stream memory of the gate; ``update`` turns a batch's per-frame visibility into steady strengths."""

    def __init__(self, alpha: float, max_step: float, hysteresis: float, band: float, cut_threshold: float,
                 max_streams: int = 256):
        self.alpha, self.max_step, self.hysteresis = alpha, max_step, hysteresis
        self.log_band = math.log(band)
        self.cut_threshold, self.max_streams = cut_threshold, max_streams
        self._streams: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def reset(self, stream=None) -> None:
        """Forget one stream (all when None)."""
        with self._lock:
            if stream is None:
                self._streams.clear()
            else:
                self._streams.pop(stream, None)

    def update(self, visibility: torch.Tensor, small: torch.Tensor, streams: list, shape: tuple,
               strength_of: Callable[[torch.Tensor], torch.Tensor],
               clear_m: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(strength, steady visibility), each (N,) on the host, for the frames of one batch in order.

        visibility: (N,) per-frame readings; small: the (N, 3, h, w) [0, 1] copy they were measured on (its
        thumbnails judge scene cuts); streams: one key or None per frame; shape: the frames' (H, W);
        strength_of: the policy's visibility -> strength; clear_m: where a raw stream may start dehazing
        (divided by the hysteresis)."""
        vis = visibility.detach().double().cpu()
        strength = strength_of(vis).double()
        steady = vis.clone()
        thumbs = thumbnails(small.float().mean(dim=1, keepdim=True)).cpu()
        enter_m = clear_m / self.hysteresis
        with self._lock:
            for i, key in enumerate(streams):
                if key is None:
                    continue
                st = self._streams.get(key)
                log_vis = math.log(max(float(vis[i]), 1e-6))
                if st is None or st.shape != shape or is_cut(st.thumb, thumbs[i], self.cut_threshold):
                    st = _Stream(shape, thumbs[i], log_vis, float(strength[i]))
                    self._streams[key] = st
                else:
                    st.thumb = thumbs[i]
                    st.log_vis += self.alpha * (log_vis - st.log_vis)
                    if abs(st.log_vis - st.aim) > self.log_band:
                        st.aim = st.log_vis
                    v = math.exp(st.aim)
                    target = float(strength_of(torch.tensor([v], dtype=torch.float64))[0])
                    if st.strength == 0 and v >= enter_m:   # left raw: stays raw until clearly below the threshold
                        target = 0.0
                    step = target - st.strength   # reaching the target lands on it exactly (0 and 1 are bit-exact)
                    st.strength = target if abs(step) <= self.max_step else st.strength + math.copysign(
                        self.max_step, step)
                self._streams.move_to_end(key)
                strength[i], steady[i] = st.strength, math.exp(st.log_vis)
            while len(self._streams) > self.max_streams:
                self._streams.popitem(last=False)
        return strength, steady
