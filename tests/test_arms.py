"""The arm names (detect/arms.py) are what a run writes: the detection stage's arms reach detections.jsonl,
the per-arm COCO and MOT files, report.json and the batch summary under the enumeration's values, and eval
names its views the same way. Stand-in detectors keep it fast; the sinks and the stage are the real ones."""
import json

import numpy as np

from cidstream.detect.arms import B_SUFFIX, Arm
from cidstream.detect.detections import Detections
from cidstream.detect.detectors import Detectors
from cidstream.detect.stage import DetectStage
from cidstream.frames import BatchResult, Frame, FrameBatch, StreamInfo

NAMES = {2: "car"}
FRAMES = 3
COMPARED = [a for a in Arm if a is not Arm.DEHAZED_BASE]  # every arm of a run with --compare, -b and --fuse


class BrightCars:
    """A stand-in detector: one car on a dark frame, two on a bright one, so raw and dehazed arms differ."""

    names = NAMES

    def __call__(self, frames):
        out = []
        for frame in frames:
            n = 2 if frame.mean() > 100 else 1
            xyxy = np.array([[4 * k, 0, 4 * k + 4, 4] for k in range(n)], np.float32)
            out.append(Detections(xyxy, np.full(n, 0.9, np.float32), np.full(n, 2, np.int32)))
        return out


def detect(stage: DetectStage) -> BatchResult:
    raw = np.zeros((FRAMES, 16, 16, 3), np.uint8)
    dehazed = np.full_like(raw, 200)
    frames = [Frame(raw[i], i, time=i / 25) for i in range(FRAMES)]
    return BatchResult(FrameBatch(raw, frames, "clip"), dehazed, stage(raw, dehazed), raw_frames=raw)


def test_a_compare_run_writes_each_arm_under_its_name(tmp_path):
    from cidstream.jobs.worker import _detection_summary
    from cidstream.run_input import COMPARE_FILES
    from cidstream.sinks.detections import DetectionLog
    from cidstream.sinks.report import ARM_LABELS, ReportCollector, build_report, write_report

    stage = DetectStage(Detectors(BrightCars(), second=BrightCars(), fuse="nms"), compare=True)
    assert list(stage.arms) == COMPARED
    result = detect(stage)
    assert result.raw_detections is result.arms[Arm.RAW] and result.detections is result.arms[Arm.DEHAZED]
    log = DetectionLog(tmp_path, NAMES, StreamInfo("clip.mp4", "video", 16, 16), True, extra=stage.extra)
    collector = ReportCollector(NAMES, True, stage.extra)
    for sink in (log, collector):
        sink.write_result(result)
    log.close()
    write_report(tmp_path, build_report(collector, {"input": "clip.mp4", "model": "dcp", "detector": "stand-in",
                                                    "classes": ["car"], "conf": 0.25}, None))

    names = [str(a) for a in COMPARED]
    lines = [json.loads(x) for x in (tmp_path / "detections.jsonl").read_text().splitlines()]
    assert [set(x) & set(Arm) for x in lines] == [set(names)] * FRAMES
    assert lines[0][Arm.DEHAZED] != lines[0][Arm.RAW]   # each column holds its own arm's boxes
    report = json.loads((tmp_path / "report.json").read_text())
    assert list(report["totals"]) == names and list(report["per_frame"])[2:] == names
    assert report["totals"][Arm.DEHAZED]["vehicles"] == 2 * FRAMES and report["totals"][Arm.RAW]["vehicles"] == FRAMES
    per_arm = {f"detections_{a}.{kind}" for a in names if a != Arm.DEHAZED for kind in ("mot.txt", "coco.json")}
    written = {p.name for p in tmp_path.iterdir()}
    assert written == {"detections.jsonl", "detections.mot.txt", "detections.coco.json", "report.json",
                       "report.html"} | per_arm
    assert set(COMPARE_FILES) == per_arm  # what a rerun checks before it overwrites
    tagged = {a for a in report["totals"] if ARM_LABELS[a].endswith(B_SUFFIX)}
    assert tagged == {Arm.RAW_B, Arm.DEHAZED_B, Arm.FUSED_B}
    summary = json.loads(json.dumps(_detection_summary(report)))  # as the batch ledger keeps it
    assert summary == {"frames": FRAMES, "dehazed": 2 * FRAMES, "raw": FRAMES, "difference": FRAMES}


def test_eval_names_a_views_arms_from_the_stages():
    """eval reads the stage's dehazed_base, dehazed and dehazed_b arms of a model's view as the arms
    'MODEL', 'MODEL per-frame' and 'MODEL [B]'."""
    from cidstream.evaluation.running import _ViewDetections

    fog = BrightCars()
    stage = DetectStage(Detectors(BrightCars(), fog, "dehazed", second=BrightCars()), keep_base=True)
    result = detect(stage)
    assert set(result.arms) == {Arm.DEHAZED, Arm.DEHAZED_BASE, Arm.DEHAZED_B}
    detected = {}
    _ViewDetections("dcp", detected, [0], FRAMES, None).write_result(result)
    assert {sfx: set(views) for sfx, views in detected[0].items()} == {"": {"dcp", "dcp per-frame"},
                                                                       " [B]": {"dcp"}}
    assert detected[0][""]["dcp per-frame"] is result.arms[Arm.DEHAZED][0]
    assert detected[0][""]["dcp"] is result.arms[Arm.DEHAZED_BASE][0]
