"""The one pipeline loop: typed stage outputs, a frozen result per batch, tracking per stream, and every
command driving the same Pipeline."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from cidstream.detect.detections import Detections
from cidstream.detect.stage import DetectStage
from cidstream.engine import Dehazer
from cidstream.frames import BatchResult, Frame, FrameBatch
from cidstream.pipeline import Dehazed, DehazeStage, Pipeline
from cidstream.sinks import Sink

from .conftest import textured


class OneBoxDetector:
    """A stand-in detector: one fixed box per frame, a little to the right in each later frame. Real YOLO
    output cannot be steered frame by frame; the tracking under test is ByteTrack, which is real."""

    names = {2: "car"}

    def __call__(self, frames):
        out = []
        for i in range(len(frames)):
            x = 10.0 + 2 * self.calls
            self.calls += 1
            out.append(Detections(np.array([[x, 10, x + 40, 40]], np.float32), np.array([0.9], np.float32),
                                  np.array([2], np.int32)))
        return out

    calls = 0


class Keep(Sink):
    needs = frozenset({"dehazed"})

    def __init__(self):
        self.results: list[BatchResult] = []
        self.closed = False

    def write_result(self, result: BatchResult) -> None:
        self.results.append(result)

    def close(self) -> None:
        self.closed = True


def _frames(n: int, seed: int = 0) -> list[Frame]:
    rng = np.random.default_rng(seed)
    base = textured(48, 64, seed)
    return [Frame(np.clip(base + rng.integers(0, 3, base.shape), 0, 255).astype(np.uint8), i) for i in range(n)]


def test_the_result_of_a_batch_is_frozen():
    sink = Keep()
    Pipeline(DehazeStage(Dehazer("dcp", device="cpu")), None, [sink]).run([FrameBatch.of(_frames(2), "clip")])
    result = sink.results[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.dehazed_frames = None
    with pytest.raises(TypeError):
        result.arms["dehazed"] = []
    assert sink.closed


def test_the_haze_measure_travels_in_the_stage_output_not_on_the_dehazer():
    dehazer = Dehazer("dcp", device="cpu")
    out = DehazeStage(dehazer)(FrameBatch.of(_frames(3), "clip"))
    assert isinstance(out, Dehazed) and out.frames.shape == (3, 48, 64, 3) and len(out.haze) == 3
    assert not hasattr(dehazer, "last_haze")


def test_identity_stage_hands_the_raw_frames_on():
    fb = FrameBatch.of(_frames(2), "clip")
    out = DehazeStage(None)(fb)
    assert torch.equal(out.frames, out.raw) and out.haze is None
    assert np.array_equal(out.frames.numpy(), fb.images)


def test_tracking_is_per_stream_inside_the_detect_stage():
    """Frames of two cameras in one batch: the same box in each must be two tracks, one per camera, and
    a camera's track continues over its own frames only."""
    stage = DetectStage(OneBoxDetector(), track=True)
    frames = np.zeros((4, 48, 64, 3), np.uint8)
    arms = stage(None, frames, ["a", "b", "a", "b"])
    ids = [int(d.tracker_id[0]) for d in arms["dehazed"]]
    arms = stage(None, frames, ["a", "b", "a", "b"])
    ids += [int(d.tracker_id[0]) for d in arms["dehazed"]]
    tracked = [i for i in ids if i >= 0]
    assert tracked, ids
    a_ids = {i for i, s in zip(ids, "abababab") if s == "a" and i >= 0}
    b_ids = {i for i, s in zip(ids, "abababab") if s == "b" and i >= 0}
    assert len(a_ids) == 1 and len(b_ids) == 1, ids
    assert stage.unique_counts() == {"dehazed": 2}
    assert set(stage.trackers) == {("a", "dehazed"), ("b", "dehazed")}


def test_live_batch_is_split_per_camera_with_its_share_of_everything():
    """``BatchResult.select``: live hands each camera its frames, detections and haze values only."""
    stage = DetectStage(OneBoxDetector())
    sink = Keep()
    fb = FrameBatch.of(_frames(4), streams=("a", "b", "a", "b"))
    Pipeline(DehazeStage(Dehazer("dcp", device="cpu")), stage, [sink]).run([fb])
    whole = sink.results[0]
    part = whole.select([1, 3], "b")
    assert [f.index for f in part.batch.frames] == [1, 3]
    assert np.array_equal(part.dehazed, whole.dehazed[[1, 3]])
    assert np.array_equal(part.haze.values, whole.haze.select([1, 3]).values)
    assert [d.xyxy[0, 0] for d in part.detections] == [whole.detections[i].xyxy[0, 0] for i in (1, 3)]
    # only the forms the cameras' sinks read are shared out (on CUDA, the others are never downloaded)
    slim = whole.select([0, 2], "a", needs=frozenset({"i420"}))
    assert slim.dehazed_frames is None and slim.raw_frames is None and len(slim.detections) == 2


@pytest.mark.parametrize("module, uses", [
    ("cidstream.run_input", "run_pipeline"),
    ("cidstream.live.hub", "Pipeline("),
    ("cidstream.evaluation.evaluate", "Pipeline("),
    ("cidstream.bench", "Pipeline("),
    ("cidstream.jobs.worker", "process_input"),
])
def test_every_command_drives_the_one_loop(module, uses):
    """run and batch (through run_input), live, eval and bench build a Pipeline; none has a loop of its own
    over dehazer and detector."""
    import importlib
    import inspect

    text = inspect.getsource(importlib.import_module(module))
    assert uses in text
    assert ".process(" not in text.replace("pipeline.process(", ""), f"{module} calls a dehazer directly"
