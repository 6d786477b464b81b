"""eval's detection run: the labelled images read in batches of one size and fed to one Pipeline per view
(raw, then each model), the path ``run`` takes, so the AP measures what a run would detect."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..detect.arms import B_SUFFIX, Arm, per_frame_arm
from ..detect.detections import Detections
from ..detect.detectors import Detectors
from ..detect.stage import DetectStage
from ..frames import BatchResult, Frame, FrameBatch
from ..io.images import image_header, read_image
from ..pipeline import DehazeStage, Pipeline
from ..sinks.base import Sink
from .examples import ExampleImages


def _size_groups(images: list[Path], batch: int) -> list[list[int]]:
    """Indices of ``images`` in batches of at most ``batch``: images of one declared size (upright, from the
    file header) together, in image order; a header without a size makes a group of its own."""
    if batch <= 1:
        return [[k] for k in range(len(images))]
    groups: dict[object, list[int]] = {}
    for k, path in enumerate(images):
        try:
            with open(path, "rb") as fh:
                _, size, orientation = image_header(fh.read(1 << 20))  # the header, not the pixels
        except Exception:  # only a hint for grouping: read_image reports a bad file when its turn comes
            size, orientation = None, 1
        key = ("unknown", k) if size is None else (size[::-1] if orientation in (5, 6, 7, 8) else size)
        groups.setdefault(key, []).append(k)
    out = []
    for members in groups.values():
        out += [members[i:i + batch] for i in range(0, len(members), batch)]
    return sorted(out, key=lambda g: g[0])


def _read_stacked(images: list[Path], group: list[int], sizes: dict):
    """(indices, uint8 (N, H, W, 3) array) per decoded shape of the group's images (a header may have lied)."""
    by_shape: dict[tuple, list] = {}
    for k in group:
        rgb, _ = read_image(images[k])
        sizes[images[k]] = rgb.shape[:2]
        by_shape.setdefault(rgb.shape, []).append((k, rgb))
    for items in by_shape.values():
        yield [k for k, _ in items], np.stack([rgb for _, rgb in items])


def _image_batches(images: list[Path], batch: int, sizes: dict):
    """The images in batches of one size (see _size_groups), as frames named by their file (so no
    temporal state joins them: they are independent pictures)."""
    for group in _size_groups(images, batch):
        for idx, stack in _read_stacked(images, group, sizes):
            yield FrameBatch(stack, [Frame(stack[j], k, name=images[k].name) for j, k in enumerate(idx)], "eval")


class _ViewDetections(Sink):
    """The eval's sink: each image's detections on one view (raw or a model's output), per detector. It
    holds the view's latest result until the batch has passed every view, for the example images."""

    needs = frozenset()

    def __init__(self, view: str, detected: dict, done: list, total: int, progress):
        self.view, self.detected, self.done, self.total, self.progress = view, detected, done, total, progress
        self.latest: BatchResult | None = None

    def write_result(self, result: BatchResult) -> None:
        arms = result.arms
        for i, frame in enumerate(result.batch.frames):
            per_detector = self.detected.setdefault(frame.index, {})
            base = per_detector.setdefault("", {})
            base[self.view] = arms[Arm.DEHAZED_BASE][i] if Arm.DEHAZED_BASE in arms else arms[Arm.DEHAZED][i]
            if Arm.DEHAZED_BASE in arms:  # a fog detector: the per-frame choice is the stage's output
                base[per_frame_arm(self.view)] = arms[Arm.DEHAZED][i]
            if Arm.DEHAZED_B in result.arms:
                per_detector.setdefault(B_SUFFIX, {})[self.view] = result.arms[Arm.DEHAZED_B][i]
        self.latest = result
        self.done[0] += len(result)
        if self.progress is not None:
            self.progress(self.done[0], self.total)


def detect_views(images: list[Path], batch: int, sizes: dict, dehazers: dict, detectors: Detectors,
                 progress, examples: ExampleImages) -> dict[int, dict[str, dict[str, Detections]]]:
    """image index -> detector suffix -> view (or 'MODEL per-frame') -> detections. One pipeline per view
    (raw, then each model): uint8 batches dehazed on the dehazer's device and detected there. Each batch of
    images is read once, fed to every view's pipeline in turn, then offered to ``examples`` with what each
    view made of it. Fusion is eval's own (per view pair). ``sizes`` gets each image's decoded (h, w)."""
    first = next(iter(dehazers.values()), None)
    device = first.device if first is not None else "cpu"
    detected: dict = {}
    done = [0]
    total = len(images) * (1 + len(dehazers))
    plain = Detectors(detectors.base, second=detectors.second)
    per_frame = Detectors(detectors.base, detectors.fog, detectors.fog_view, detectors.second)
    sinks = [_ViewDetections(view, detected, done, total, progress) for view in [Arm.RAW, *dehazers]]
    pipelines = [Pipeline(DehazeStage(dehazer, device),
                          DetectStage(plain if dehazer is None else per_frame, keep_base=True), [sink])
                 for sink, dehazer in zip(sinks, [None, *dehazers.values()])]
    try:
        for fb in _image_batches(images, batch, sizes):
            for pipeline in pipelines:
                if pipeline.feed([fb]).interrupted:  # an AP over part of the images would be wrong: stop
                    raise KeyboardInterrupt
            examples.offer({sink.view: sink.latest for sink in sinks}, detected)
            for sink in sinks:
                sink.latest = None  # a batch's frames (on the device, too) live no longer than its turn
    finally:
        for pipeline in pipelines:
            pipeline.close()
    return detected
