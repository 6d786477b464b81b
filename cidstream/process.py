"""One input to one output: what `cidstream run` does, also used for each file of `cidstream batch`."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .engine import Dehazer, run_pipeline
from .engine.pipeline import RunStats
from .errors import CidstreamError
from .frames import StreamInfo
from .io import sink_from_config, source_from_config
from .io.sinks import Sink


@dataclass
class InputRun:
    """How processing one input ended. ``error`` is set when it failed part-way; whatever was
    written before the failure is finalized (and the report, with detection, covers it)."""

    stats: RunStats | None
    total: int | None
    sink: Sink              # the dehazed-frames sink
    report: dict | None = None
    folder: Path | None = None
    error: CidstreamError | None = None

    @property
    def complete(self) -> bool:
        return self.error is None and self.stats is not None and not self.stats.interrupted


def process_input(spec: str, output: str | Path, cfg, dehazer: Dehazer, detector=None, compare: bool = False,
                  max_frames: int | None = None, on_start: Callable[[StreamInfo], None] | None = None,
                  on_batch: Callable[[RunStats], None] | None = None, model_lock=None) -> InputRun:
    """Dehaze ``spec`` into ``output``; with a ``detector``, ``output`` is a folder of detection outputs.

    Errors opening the input or output raise; errors while streaming are returned in ``InputRun.error``
    after every output is closed. ``model_lock`` serializes model calls when threads share one model."""
    device_type = dehazer.device.type
    with source_from_config(str(spec), cfg.input, max_frames, dehazer.device, cfg.live) as source:
        outputs = None
        if detector is not None:
            from .detect.outputs import DetectionOutputs

            outputs = DetectionOutputs(Path(output), source, cfg, dehazer, detector, compare)
            sinks, stage = outputs.sinks, outputs.stage
        else:
            sinks, stage = [sink_from_config(str(output), source.info, cfg.output, device_type=device_type)], None
        if on_start is not None:
            on_start(source.info)
        stats = error = None
        try:
            stats = run_pipeline(source, dehazer, sinks, batch=cfg.engine.batch,
                                 max_latency_ms=cfg.engine.max_latency_ms, queue_size=cfg.input.queue_size,
                                 detect=stage, on_batch=on_batch, model_lock=model_lock)
        except CidstreamError as exc:
            error = exc
        finally:
            if outputs is not None:  # the report covers whatever was processed, even after an error
                outputs.finish(stats)
        return InputRun(stats, source.info.frame_count, sinks[0], outputs.report if outputs else None,
                        outputs.folder if outputs else None, error)
