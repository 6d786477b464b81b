"""The one pipeline loop: typed stage outputs, a frozen result per batch, tracking per stream, and every
command driving the same Pipeline."""
from __future__ import annotations

import dataclasses
import functools
import threading

import numpy as np
import pytest
import torch

from cidstream.detect.detections import Detections
from cidstream.detect.stage import DetectStage
from cidstream.engine import Dehazer
from cidstream.frames import BatchResult, Frame, FrameBatch
from cidstream.pipeline import Dehazed, DehazeStage, Pipeline
from cidstream.sinks import Sink

from .conftest import SAMPLE, textured


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


class _Watch:
    """Each dehazer call, marked by whether a Pipeline was taking batches and whether a DehazeStage (the
    loop's stage) made it. Counts for the whole process, not per thread: bench and batch run pipelines in
    threads of their own, and a pipeline may call its stages from a worker thread."""

    def __init__(self):
        self.lock = threading.Lock()
        self.active = {"pipeline": 0, "stage": 0}
        self.calls: list[dict] = []

    def scope(self, name, method):
        @functools.wraps(method)
        def wrapped(*args, **kwargs):
            with self.lock:
                self.active[name] += 1
            try:
                return method(*args, **kwargs)
            finally:
                with self.lock:
                    self.active[name] -= 1
        return wrapped

    def record(self, method):
        @functools.wraps(method)
        def wrapped(*args, **kwargs):
            with self.lock:
                self.calls.append({k: n > 0 for k, n in self.active.items()})
            return method(*args, **kwargs)
        return wrapped


FAST = ("--model", "dcp", "--device", "cpu", "--cpu-runtime", "torch")
EVAL = ("--max-images", 1, "--yolo-id-offset", 1, "--bootstrap", 0)


@pytest.mark.parametrize("command", [
    "run", "batch",
    pytest.param("bench", marks=pytest.mark.slow),  # 6-11 s here, most of it loading the detector's modules
    pytest.param("eval --examples 0", marks=pytest.mark.slow),
    pytest.param("eval", marks=pytest.mark.slow),
])
def test_every_command_dehazes_inside_the_one_loop(command, cli, monkeypatch, tmp_path, request):
    """run, bench, batch and eval, run for real: every dehazer call happens while a Pipeline takes batches,
    so no command has a loop of its own over the dehazer. bench also times the dehazing stage alone (its
    point); those calls must still go through the loop's DehazeStage."""
    watch = _Watch()
    for method in ("feed", "process"):
        monkeypatch.setattr(Pipeline, method, watch.scope("pipeline", getattr(Pipeline, method)))
    monkeypatch.setattr(DehazeStage, "__call__", watch.scope("stage", DehazeStage.__call__))
    monkeypatch.setattr(Dehazer, "process_measured", watch.record(Dehazer.process_measured))
    out = tmp_path / "out"
    if command == "run":
        args = ("run", SAMPLE, "-o", out, "--max-frames", 2, "--no-progress")
    elif command == "bench":
        args = ("bench", SAMPLE, "--frames", 2, "--repeats", 1)
    elif command == "batch":
        args = ("batch", SAMPLE, "-o", out, "--max-frames", 2, "--set", "batch.local_workers=threads", "--no-progress")
    else:
        dawn = request.getfixturevalue("shared_data") / "dawn_fog"
        args = ("eval", dawn / "JPEGImages", "--labels", dawn / "labels_yolo", "-o", out, *EVAL,
                "--detector", request.getfixturevalue("yolo_weights"), *command.split()[1:])
    code, text = cli(*args, *FAST)
    assert code == 0, text
    inside = [c["pipeline"] for c in watch.calls]
    assert any(inside), f"{command}: no dehazer call inside a Pipeline ({len(inside)} calls)"
    if command == "bench":
        assert all(c["stage"] for c in watch.calls), "bench dehazed without the loop's DehazeStage"
    else:
        assert all(inside), f"{command}: {inside.count(False)} of {len(inside)} dehazer calls outside a Pipeline"
