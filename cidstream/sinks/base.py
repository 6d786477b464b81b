"""What every sink is: the pipeline hands it each batch's results and closes it at the end (sinks/media.py
writes video and images, sinks/detections.py detections and reports, sinks/segments.py live segments)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..frames import BatchResult, Frame


class Sink:
    """Takes the pipeline's results; frame sinks write the dehazed images, others override write_result.

    ``needs`` names the host forms of a result the sink reads for every batch ("dehazed" RGB, "i420"
    planes of the dehazed frames, "raw" RGB), so the pipeline starts those downloads early; anything
    else a sink reads now and then is fetched on demand."""

    written = 0
    path: Path | None = None
    needs: frozenset = frozenset({"dehazed"})
    discarded = False   # the output could not be completed (a full disk) and was removed

    def write(self, frame: Frame, image: np.ndarray) -> None:
        raise NotImplementedError

    def write_result(self, result: BatchResult) -> None:
        i420 = result.dehazed_i420 if "i420" in self.needs else None
        if i420 is not None:  # video sinks on CUDA: 4:2:0 planes made on the GPU, see VideoSink.write
            for frame, planes in zip(result.batch.frames, i420):
                self.write(frame, planes, i420=True)
            return
        for frame, image in zip(result.batch.frames, result.dehazed):
            self.write(frame, image)

    def close(self) -> None:
        pass


class NullSink(Sink):
    """Discards frames: benchmarks and detection-only runs."""

    needs = frozenset()

    def write(self, frame: Frame, image: np.ndarray) -> None:
        self.written += 1
