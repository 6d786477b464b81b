"""The dehazing stage of the one pipeline loop: a batch to the device, dehazed, with each frame's haze
measure; its typed output travels to the detection stage (detect/stage.py) and into the BatchResult."""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from ..engine.dehazer import Dehazer
from ..frames import FrameBatch, HazeRecord

_RUNS = itertools.count()


@dataclass(frozen=True)
class Dehazed:
    """One batch after the dehazing stage, on the device: the raw frames (RGB uint8), the dehazed ones,
    and the (5, N) gate record of HazeGate.decide (None: not measured)."""

    raw: torch.Tensor
    frames: torch.Tensor
    haze: HazeRecord | None


class DehazeStage:
    """``stage(batch) -> Dehazed``. Without a dehazer it hands the raw frames on unchanged (the raw view
    of eval and of a benchmark's detector). Temporal state is per stage object: a rerun of a file with a
    new stage starts fresh."""

    def __init__(self, dehazer: Dehazer | None, device: torch.device | str = "cpu"):
        self.dehazer = dehazer
        self.device = dehazer.device if dehazer is not None else torch.device(device)
        self.name = dehazer.name if dehazer is not None else "raw"
        self._run = next(_RUNS)

    def streams(self, fb: FrameBatch):
        """Temporal-state keys: the source (or, in live, each frame's camera); None for image-folder
        frames, which are independent pictures and must not be smoothed."""
        if fb.streams is not None:
            return [None if s is None else f"{s}#{self._run}" for s in fb.streams]
        if any(f.name is not None for f in fb.frames):
            return None
        return f"{fb.source_id}#{self._run}"

    def __call__(self, fb: FrameBatch) -> Dehazed:
        raw = fb.to_device(self.device)
        if self.dehazer is None:
            return Dehazed(raw, raw, None)
        out, haze = self.dehazer.process_measured(raw, self.streams(fb))
        return Dehazed(raw, out, haze)
