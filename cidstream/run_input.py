"""One input to one output: what `cidstream run` does, also used for each file of `cidstream batch`."""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .engine import Dehazer
from .pipeline import run_pipeline
from .engine.memory import check_memory
from .pipeline import RunStats
from .errors import CidstreamError, InputError, OutputError
from .frames import StreamInfo
from .io import source_from_config
from .sinks import sink_from_config
from .io.atomic import OutputLock, file_ids, same_file
from .detect.arms import Arm
from .io.probe import announced_frames
from .sinks.base import Sink
from .sinks.media import output_kind
from .io.sources import image_names


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
    skipped: list = field(default_factory=list)   # (path, reason) of input images that could not be read

    @property
    def complete(self) -> bool:
        return self.error is None and self.stats is not None and not self.stats.interrupted and not self.skipped


DETECTION_FILES = ("detections.jsonl", "detections.mot.txt", "detections.coco.json", "report.json", "report.html")
COMPARE_FILES = tuple(f"detections_{arm}.{kind}" for arm in Arm if arm not in (Arm.DEHAZED, Arm.DEHAZED_BASE)
                      for kind in ("mot.txt", "coco.json"))  # the extra arms' files only when asked for


def input_files(spec: str, max_frames: int | None = None) -> tuple[list[Path], bool]:
    """The files ``spec`` reads (images or one video; none for a stream) and whether they are images."""
    from .io.sources import is_image_input, is_url, list_images

    spec = str(spec)
    if is_url(spec) or spec.startswith("/dev/video"):
        return [], False
    if is_image_input(spec):
        return list_images(spec)[:max_frames], True
    return [Path(spec)], False


def planned_outputs(output: str | Path, names: list[str] | None, images: bool, detect: bool = False,
                    compare: bool = False, video: bool = True) -> list[Path]:
    """Every file a run into ``output`` would write (image inputs: ``names`` as io.sources.image_names gives them)."""
    folder, names = Path(output), names or []
    if detect:
        planned = [folder / n for n in DETECTION_FILES + (COMPARE_FILES if compare else ())]
        subs = (["dehazed"] if video else []) + (["side_by_side"] if compare else [])
        for sub in subs:
            planned += [folder / sub / n for n in names] if images else [folder / f"{sub}.mp4"]
        return planned
    kind = output_kind(str(output))
    if kind in ("video", "image"):
        return [Path(output)]
    if kind == "folder":
        return [folder / n for n in names]
    return []


def check_output(spec: str, output: str | Path, detect: bool = False, compare: bool = False, video: bool = True,
                 max_frames: int | None = None, frames: int | None = None,
                 inputs: tuple[list[Path], bool] | None = None) -> None:
    """Refuse, before any frame is processed, an output that would overwrite an input file (by file
    identity: the same device and inode, so also through a hard link, symlink, relative path or
    case-folding file system), a single image path for an input of several frames, and an output
    another run is writing."""
    spec, out = str(spec), str(output)
    paths, images = inputs if inputs is not None else input_files(spec, max_frames)
    names = image_names(spec, paths) if images else None  # refuses two images with one output name
    if not detect and output_kind(out) == "image":
        if frames is None:
            if max_frames == 1:
                frames = 1
            elif images:
                frames = len(paths)
            elif paths:
                frames = announced_frames(spec)  # no estimate: a refusal needs the count
                frames = None if frames is None else min(frames, max_frames or frames)
        if frames != 1:
            what = f"{frames} frames" if frames else "several frames"
            raise OutputError(f"output {out} is a single image but the input {spec} has {what}: give a folder "
                              "(images) or a video path (.mp4) as output, or --max-frames 1")
    if detect or output_kind(out) != "null":
        OutputLock(out).check()
    ids = file_ids(paths)
    if not ids:
        return
    for target in planned_outputs(out, names, images, detect, compare, video):
        source = same_file(target, ids)
        if source is None:
            continue
        if target == Path(out):
            raise OutputError(f"output {out} is the input itself ({source}, the same file"
                              f"{' by another name' if str(source) != out else ''}): choose another output path")
        same = "" if os.path.normpath(target) == os.path.normpath(source) else f" (writing {target}, the same file)"
        raise OutputError(f"output {out} would overwrite the input {source}{same}: choose another output path")


def _silent_stream(source, stats: RunStats, duration: float | None) -> InputError | None:
    """A stream that sent no frame in all of --duration is a failure, not an empty success (a camera
    that is down or refuses the connection is retried until then, as cameras reboot)."""
    if not source.live or duration is None or stats.frames or stats.interrupted or source.stats.received:
        return None
    why = source.stats.last_error
    return InputError(f"no frame from {source.info.source} in {duration:g} s"
                      + (f" (last problem: {why})" if why else ""))


def process_input(spec: str, output: str | Path, cfg, dehazer: Dehazer, detectors=None, compare: bool = False,
                  max_frames: int | None = None, on_start: Callable[[StreamInfo], None] | None = None,
                  on_batch: Callable[[RunStats], None] | None = None, model_lock=None,
                  duration: float | None = None) -> InputRun:
    """Dehaze ``spec`` into ``output``; with ``detectors`` (detect/detectors.py: the base detector, and the
    fog and comparison detectors the config names), ``output`` is a folder of detection outputs.

    Errors opening the input or output raise; errors while streaming are returned in ``InputRun.error``
    after every output is closed. ``model_lock`` serializes model calls when threads share one model;
    ``duration`` (seconds) stops the run after that long, finalized as a complete one. Images that
    cannot be read are skipped and listed in ``InputRun.skipped``. ``compare`` adds the raw arm
    (detect/stage.py)."""
    device_type = dehazer.device.type
    with contextlib.ExitStack() as claims:
        source = claims.enter_context(source_from_config(str(spec), cfg.input, max_frames, dehazer.device, cfg.live))
        paths = getattr(source, "paths", None)
        check_output(str(spec), output, detect=detectors is not None, compare=compare, video=cfg.output.video,
                     max_frames=max_frames, frames=source.info.frame_count if source.info.kind != "live" else None,
                     inputs=(list(paths), True) if paths is not None else None)
        # settings beyond this machine's memory: refused before any output
        fits = lambda size: check_memory(cfg, dehazer.device, size, dehazer.net.arch,  # noqa: E731
                                         detectors is not None, compare)
        fits((source.info.height, source.info.width))  # later, larger frames: run_pipeline's frame_check
        if detectors is not None or output_kind(str(output)) != "null":  # held until every output is final
            claims.enter_context(OutputLock(output))
        outputs = None
        if detectors is not None:
            from .sinks.detections import DetectionOutputs

            outputs = DetectionOutputs(Path(output), source, cfg, dehazer, detectors, compare)
            sinks, stage = outputs.sinks, outputs.stage
        else:
            sinks, stage = [sink_from_config(str(output), source.info, cfg.output, device_type=device_type)], None
        if on_start is not None:
            on_start(source.info)
        stats = error = None
        try:
            stats = run_pipeline(source, dehazer, sinks, batch=cfg.engine.batch,
                                 max_latency_ms=cfg.engine.max_latency_ms, queue_size=cfg.input.queue_size,
                                 detect=stage, on_batch=on_batch, model_lock=model_lock, duration=duration,
                                 frame_check=fits)
            error = _silent_stream(source, stats, duration)
        except CidstreamError as exc:
            error = exc
        finally:
            if outputs is not None:  # the report covers whatever was processed, even after an error
                try:
                    outputs.finish(stats)
                except CidstreamError as exc:
                    error = error or exc
        return InputRun(stats, source.info.frame_count, sinks[0], outputs.report if outputs else None,
                        outputs.folder if outputs else None, error, list(getattr(source, "skipped", [])))
