"""The fog-adapted detector: fusion of raw and dehazed detections, the four arms (and fused ones) of
eval and run --compare, and `cidstream train detector` end to end on real data with the real detector."""
import json
import re
import shutil

import numpy as np
import pytest
import torch

from cidstream.detect.detections import Detections
from cidstream.detect.fusion import fuse


def dets(*rows):
    """rows of (x1, y1, x2, y2, confidence, class)."""
    a = np.asarray(rows, np.float32).reshape(-1, 6)
    return Detections(a[:, :4], a[:, 4], a[:, 5].astype(np.int32))


def test_wbf_averages_agreeing_boxes_and_discounts_a_single_view():
    raw = dets((0, 0, 10, 10, 0.75, 2), (50, 50, 60, 60, 0.8, 2))
    dehazed = dets((1, 1, 11, 11, 0.25, 2))
    out = fuse([raw, dehazed], "wbf")
    assert len(out) == 2
    agreed = np.flatnonzero(out.xyxy[:, 0] < 20)[0]
    np.testing.assert_allclose(out.xyxy[agreed], [0.25, 0.25, 10.25, 10.25], atol=1e-5)  # confidence-weighted
    assert out.confidence[agreed] == pytest.approx(0.5)      # mean of 0.75 and 0.25, both views saw it
    assert out.confidence[1 - agreed] == pytest.approx(0.4)  # 0.8 seen by one view of two
    assert list(out.confidence) == sorted(out.confidence, reverse=True)


def test_nms_keeps_the_most_confident_box_per_class():
    raw = dets((0, 0, 10, 10, 0.6, 2), (0, 0, 10, 10, 0.9, 7))   # a car and a truck on the same spot
    dehazed = dets((0.5, 0.5, 10.5, 10.5, 0.8, 2))   # IoU 0.82 with the raw car
    out = fuse([raw, dehazed], "nms")
    kept = sorted((int(c), round(float(p), 3)) for c, p in zip(out.class_id, out.confidence))
    assert kept == [(2, 0.8), (7, 0.9)]


@pytest.mark.parametrize("method", ["wbf", "nms"])
def test_two_views_that_agree_fuse_to_what_one_view_found(method):
    """Two cars overlapping at IoU 0.6 are two objects after the detector's NMS (0.7): fusing a view
    with itself must keep both, with their confidences."""
    one = dets((0, 0, 100, 100, 0.9, 2), (25, 0, 125, 100, 0.7, 2), (300, 300, 340, 330, 0.2, 7))
    out = fuse([one, one], method)
    order = np.argsort(-one.confidence)
    np.testing.assert_allclose(out.xyxy, one.xyxy[order], atol=1e-4)
    np.testing.assert_allclose(out.confidence, one.confidence[order], atol=1e-6)


def test_fusion_of_nothing_is_nothing():
    assert len(fuse([Detections.empty(), Detections.empty()], "wbf")) == 0
    with pytest.raises(ValueError, match="unknown fusion"):
        fuse([Detections.empty()], "vote")


@pytest.fixture(scope="module")
def copy_of_base(yolo_weights, tmp_path_factory):
    """The base detector under another name: as detector B its arms must equal the base arms exactly."""
    path = tmp_path_factory.mktemp("b") / "same_as_base.pt"
    shutil.copy(yolo_weights, path)
    return path


@pytest.mark.slow
def test_eval_four_arms_and_fusion(cli, shared_data, yolo_weights, copy_of_base, tmp_path):
    code, text = cli("eval", shared_data / "dawn_fog" / "JPEGImages", "--labels", shared_data / "dawn_fog" /
                     "Annotations", "--model", "dcp", "--detector", yolo_weights, "--detector-b", copy_of_base,
                     "--fuse", "wbf", "--split", "report", "--max-images", "6", "--bootstrap", "50",
                     "-o", tmp_path / "ev")
    assert code == 0, text
    report = json.loads((tmp_path / "ev" / "eval.json").read_text())
    res = report["results"]
    assert list(res) == ["raw", "dcp", "raw+dcp wbf", "raw [B]", "dcp [B]", "raw+dcp wbf [B]"]
    for arm in ("raw", "dcp", "raw+dcp wbf"):  # the same weights under another name: the same numbers
        assert res[arm]["vehicle_ap50"] == res[arm + " [B]"]["vehicle_ap50"]
    # fusion keeps every view's boxes: at least as many true positives as either view alone
    tp = {a: res[a]["per_class"]["vehicle"]["true_positives"] for a in ("raw", "dcp", "raw+dcp wbf")}
    assert tp["raw+dcp wbf"] >= max(tp["raw"], tp["dcp"])
    assert report["detector_b"] == "same_as_base.pt" and report["fuse"] == "wbf"
    pairs = {(d["a"], d["b"]) for d in report["bootstrap"]["differences"]}
    assert ("raw [B]", "raw") in pairs and ("dcp [B]", "dcp") in pairs and ("dcp [B]", "raw [B]") in pairs
    page = (tmp_path / "ev" / "eval.html").read_text()
    assert "same_as_base.pt" in page and "weighted box fusion" in page


@pytest.mark.slow
def test_run_compare_four_arms(cli, shared_data, yolo_weights, copy_of_base, tmp_path):
    from .conftest import cut_clip

    clip = tmp_path / "fog.mp4"
    cut_clip(shared_data / "videos" / "foggy_road_real.mp4", clip, 6, width=180)
    code, text = cli("run", clip, "--compare", "--model", "dcp", "--gate", "off", "--detector", yolo_weights,
                     "--detector-b", copy_of_base, "--fuse", "nms", "-o", tmp_path / "o", "--no-progress")
    assert code == 0, text
    out = tmp_path / "o"
    for arm in ("raw_b", "dehazed_b", "fused", "fused_b"):
        assert (out / f"detections_{arm}.coco.json").is_file() and (out / f"detections_{arm}.mot.txt").is_file()
    lines = [json.loads(x) for x in (out / "detections.jsonl").read_text().splitlines()]
    report = json.loads((out / "report.json").read_text())
    assert report["arms"] == {"detector_b": "same_as_base.pt", "fuse": "nms",
                              "extra": ["raw_b", "dehazed_b", "fused", "fused_b"]}
    for arm in ("raw", "dehazed", "raw_b", "dehazed_b", "fused", "fused_b"):
        assert report["totals"][arm]["vehicles"] == sum(len(x[arm]) for x in lines)
    for x in lines:
        assert x["raw_b"] == x["raw"] and x["dehazed_b"] == x["dehazed"]  # same weights, same boxes
        assert len(x["fused"]) <= len(x["raw"]) + len(x["dehazed"])
    assert "other arms" in text and "dehazed [B]" in text
    import av

    def size(path):
        with av.open(str(path)) as c:
            return c.streams.video[0].codec_context.width, c.streams.video[0].codec_context.height

    w, h = size(out / "dehazed.mp4")
    assert size(out / "side_by_side.mp4") == (2 * w, 2 * h)  # raw | dehazed, base above and B below


def test_cache_names_newest_and_labels(monkeypatch, tmp_path):
    """A short name resolves to the newest file kept under it (by stamp, then by the suffix of two
    trainings in one second); a cached file is labelled with its name, any other file is not; a path is
    never looked up. (Detector.label on a real cached model: the run and bench tests below.)"""
    from cidstream.detect.cache import cached_label, new_entry, resolve_cached

    monkeypatch.setenv("CIDSTREAM_CACHE", str(tmp_path / "cache"))
    made = new_entry("fog")
    made.write_bytes(b"0")
    folder = made.parent
    for name in ("20200104-101500.pt", "20200104-101500-2.pt", "20200104-101500-10.pt", "20200103-235959-11.pt"):
        (folder / name).write_bytes(b"1")
    assert resolve_cached("fog") == str(made)  # made now, years after the others
    made.unlink()
    newest = folder / "20200104-101500-10.pt"
    assert resolve_cached("fog") == str(newest)  # same second: the later suffix, -10 after -2
    assert resolve_cached("other/fog.pt") == "other/fog.pt"
    assert cached_label(str(newest)) == f"fog ({newest.name})"
    assert cached_label(str(tmp_path / "fog.pt")) is None


@pytest.mark.parametrize("args, message", [
    (["--detector-b", "{w}"], "--detector-b chooses detectors: add --detect"),
    (["--detect", "--fog-view", "raw"], "--fog-view says what the fog detector sees: add --fog-detector"),
    (["--fog-detector", "{w}", "--fuse", "wbf"], "--fog-detector and --fuse choose detectors: add --detect"),
    (["--compare", "--detector-b", "{t}/renamed.pt"], "names its classes differently"),
    (["--detect", "--fog-detector", "{t}/renamed.pt"], "names its classes differently"),
    (["--detect", "--fog-detector", "nosuchname"], "no detector of that name"),
    (["--detect", "--fog-detector", "{t}/missing.pt"], "detector file not found"),
])
def test_arm_errors(cli, tmp_path, yolo_weights, args, message):
    from .conftest import SAMPLE

    # A detector whose classes carry other names: a real checkpoint with its names edited (no such file ships).
    ckpt = torch.load(yolo_weights, map_location="cpu", weights_only=False)
    ckpt["model"].names = {**ckpt["model"].names, 0: "pedestrian"}  # the vehicle classes are still there
    torch.save(ckpt, tmp_path / "renamed.pt")
    code, text = cli("run", SAMPLE, "--detector", yolo_weights, *[a.format(t=tmp_path, w=yolo_weights) for a in args],
                     "-o", tmp_path / "o", "--max-frames", "2", "--no-progress")
    assert code == 2, text
    assert message in text and "Traceback" not in text


SMOKE = """detector: {base}
data:
  recipe: configs/train/generate.yaml
  clean: [{data}/videos/highway2_720p.mp4]
  clean_stride: 20
  copies: 2
  clean_share: 0.5
  max_clean: 6
  real: [{{path: {data}/dawn_fog/JPEGImages, split: select}}]
  max_real: 4
  val_share: 0.3
train: {{epochs: 1, batch: 4, imgsz: 320}}
output: {{base_share: 0.5}}
clear_check:
  sources: [{{path: {data}/videos/highway_720p.mp4, step: 150}}]
"""


@pytest.fixture(scope="module")
def trained(shared_data, tmp_path_factory):
    from .conftest import run_cli_subprocess

    root = tmp_path_factory.mktemp("train_detector")
    cfg = root / "detector.yaml"
    cfg.write_text(SMOKE.format(base=shared_data / "weights" / "yolo11n_coco_from_int8_unfused.pt", data=shared_data))
    # A subprocess, its output a pipe as in a log: test_train_detector_prints_progress_lines_in_a_log reads it.
    proc = run_cli_subprocess("train", "detector", "--config", cfg, "--out", root / "fog.pt", "--run-dir",
                              root / "run", "--name", "smoke", timeout=900)
    (root / "stderr.log").write_text(proc.stderr)
    assert proc.returncode == 0, proc.stderr
    return root, cfg


@pytest.mark.slow
def test_train_detector_prints_progress_lines_in_a_log(trained):
    """Rich bars draw nothing in a log and Ultralytics' epoch bars say nothing useful there: plain lines with
    the time left while the set is built, during Ultralytics' epochs and during the clear-weather check."""
    err = (trained[0] / "stderr.log").read_text()
    assert re.search(r"^clean frames: 6/6 frames \(100%\), .*ETA 0 s$", err, re.M), err
    assert re.search(r"training: (\d+)/\1 batches \(100%\), [\d.]+ batches/s, \d+ s, ETA 0 s$", err, re.M), err
    assert re.search(r"^clear-weather check: highway_720p: \d+/\d+ frames", err, re.M), err
    building, training, checking = (err.index(s) for s in ("clean frames: started", "training: started",
                                                           "clear-weather check: highway_720p: started"))
    assert building < training < checking


@pytest.mark.slow
def test_train_detector_writes_a_drop_in_ultralytics_model(trained, shared_data):
    from ultralytics import YOLO

    from cidstream.detect import Detector

    root, _ = trained
    model = YOLO(str(root / "fog.pt"))
    assert model.task == "detect" and len(model.names) == 80  # every class of the base, its ids
    meta = model.ckpt["cidstream"]
    assert meta["base_model"].endswith("yolo11n_coco_from_int8_unfused.pt")
    assert meta["data"]["clean_frames"] == 6 and meta["data"]["real_fog_frames"] == 4
    assert meta["train_args"]["epochs"] == 1
    check = meta["metrics"]["clear_check"]["highway_720p"]
    assert check["base"] == 100.0 and 0 <= check["adapted"] <= 100  # the base matches its own boxes exactly
    assert "metrics/mAP50(B)" in meta["metrics"]["adaptation_val"]
    frames = np.zeros((1, 64, 96, 3), np.uint8)
    assert len(Detector(str(root / "fog.pt"))(frames)) == 1  # usable as --detector


@pytest.mark.slow
def test_output_is_the_trained_weights_blended_with_the_base(trained, shared_data):
    root, _ = trained
    out = torch.load(root / "fog.pt", map_location="cpu", weights_only=False)
    trained_w = torch.load(root / "run" / "yolo" / "weights" / "best.pt", map_location="cpu", weights_only=False)
    base = torch.load(shared_data / "weights" / "yolo11n_coco_from_int8_unfused.pt", map_location="cpu",
                      weights_only=False)
    assert out["cidstream"]["base_share"] == 0.5
    a, t, b = (c["model"].state_dict() for c in (out, trained_w, base))
    moved = 0
    for k, v in a.items():
        if v.is_floating_point():
            mid = (t[k].float() + b[k].float()) / 2
            assert torch.allclose(v.float(), mid, atol=2e-3, rtol=2e-3), k
            moved += int(not torch.equal(t[k].float(), b[k].float()))
    assert moved > 100  # training changed the weights, so the blend is a real midpoint


@pytest.mark.slow
def test_train_detector_labels_come_from_the_clean_view(trained, shared_data):
    """Each clean frame's copies (clean or degraded) carry the same labels; real fog comes from the select
    half only; label files hold the base detector's class ids."""
    from cidstream.evaluation.splits import split_of

    root, _ = trained
    data = root / "run" / "dataset"
    rows = [line.split("\t") for line in (data / "images.tsv").read_text().splitlines()[1:]]
    by_frame: dict = {}
    for part, file, view, source, frame in rows:
        label = (data / "labels" / part / file.replace(".jpg", ".txt")).read_text()
        if view == "real_fog":
            assert split_of(source) == "select"
        else:
            by_frame.setdefault((source, frame), set()).add(label)
    assert len(by_frame) == 6
    assert all(len(labels) == 1 for labels in by_frame.values())
    ids = {int(line.split()[0]) for labels in by_frame.values() for text in labels for line in text.splitlines()}
    assert ids and ids <= set(range(80)) and 2 in ids  # COCO car = 2 on a highway
    views = {r[2] for r in rows}
    assert "clean" in views and views - {"clean", "real_fog"}  # clean copies and degraded domains


@pytest.mark.slow
def test_train_detector_resume_after_the_end_and_errors(trained, cli, shared_data, tmp_path):
    root, cfg = trained
    code, text = cli("train", "detector", "--config", cfg, "--out", tmp_path / "again.pt", "--run-dir",
                     root / "run", "--resume")
    assert code == 0, text
    assert "training set already built" in text and "nothing left to train" in text
    assert (tmp_path / "again.pt").is_file()
    code, text = cli("train", "detector", "--config", cfg, "--detector", shared_data / "weights" /
                     "yolo11n_coco_from_int8.pt", "--out", tmp_path / "x.pt", "--run-dir", tmp_path / "r")
    assert code == 2 and "is fused" in text and "Traceback" not in text
    code, text = cli("train", "detector", "--config", cfg, "--detector", tmp_path / "missing.pt", "--out",
                     tmp_path / "x.pt", "--run-dir", tmp_path / "r")
    assert code == 2 and "not found" in text and "Traceback" not in text


@pytest.mark.parametrize("text, message", [
    ("data: {recipe: configs/train/generate.yaml, clean: [x], colour: 3}\n", "unknown keys colour"),
    ("data: {clean: [x]}\n", "needs recipe"),
    ("data: {recipe: a, clean: [x]}\ntrain: {epochz: 2}\n", "train: unknown keys epochz"),
    ("data: {recipe: a, clean: [x]}\nclear_check: {sources: [highway.mp4]}\n", "clear_check needs 'sources'"),
    ("data: {recipe: a, clean: [x]}\noutput: {base_share: 1.5}\n", "base_share must be in [0, 1)"),
    ("data: [\n", "line"),
    ("data: {recipe: a, clean: [x]}\nconsistency: 3\n", "consistency needs a mapping"),
])
def test_train_detector_config_errors(cli, shared_data, tmp_path, text, message):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    code, out = cli("train", "detector", "--config", cfg, "--detector", shared_data / "weights" /
                    "yolo11n_coco_from_int8_unfused.pt", "--out", tmp_path / "x.pt", "--run-dir", tmp_path / "r")
    assert code == 2, out
    assert message in out and "Traceback" not in out
    assert not (tmp_path / "x.pt").exists()


# --- the per-frame detector choice (detect.fog_detector) -------------------------------------------------


def _mixed_frames(shared_data):
    """clear, fog, clear, fog at 640x360: highway_720p frames of the clear check's report half, and
    foggy_road_real (thick night fog, never trained or selected on)."""
    import cv2

    from cidstream.evaluation.clear_check import read_every

    clear = read_every(shared_data / "videos" / "highway_720p.mp4", 20)[21:23]      # frames 420 and 440
    fog = read_every(shared_data / "videos" / "foggy_road_real.mp4", 75)[:2]        # frames 0 and 75
    frames = [clear[0], fog[0], clear[1], fog[1]]
    return [cv2.resize(f, (640, 360), interpolation=cv2.INTER_AREA) for f in frames]


def _same(a, b, tol=1e-3):
    """The same boxes: count, classes, and coordinates and confidences to float rounding (a CPU
    convolution's sums are not bit-stable across calls and batch sizes, ~5e-5 px)."""
    assert len(a) == len(b) and np.array_equal(a.class_id, b.class_id)
    np.testing.assert_allclose(a.xyxy, b.xyxy, atol=tol)
    np.testing.assert_allclose(a.confidence, b.confidence, atol=tol)


@pytest.mark.slow
@pytest.mark.parametrize("view", ["fused", "dehazed", "raw"])
def test_per_frame_choice_splits_one_batch_by_the_gate(trained, shared_data, yolo_weights, view):
    """In one batch, the frames the gate left raw get the base detector's boxes on the raw frame, the
    frames it dehazed the fog detector's on its view; merged back in frame order."""
    from cidstream.config import load_config
    from cidstream.detect import Detector
    from cidstream.detect.detectors import Detectors
    from cidstream.detect.stage import DetectStage, hazy_frames
    from cidstream.engine import Dehazer

    root, _ = trained
    raw = torch.from_numpy(np.stack(_mixed_frames(shared_data)))
    out, haze = Dehazer.from_config(load_config(), model="dcp").process_measured(raw)
    assert hazy_frames(haze, 4).tolist() == [False, True, False, True]
    assert torch.equal(out[[0, 2]], raw[[0, 2]])  # the gate left the clear frames untouched
    base, fog = Detector(str(yolo_weights)), Detector(str(root / "fog.pt"))
    arms = DetectStage(Detectors(base, fog, view))(raw, out, haze=haze)
    found = arms["dehazed"]
    assert list(arms) == ["dehazed"] and len(found) == 4
    clear_ref = base(raw[[0, 2]])   # the base detector, as the stage calls it: on the clear frames of the batch
    _same(found[0], clear_ref[0])
    _same(found[2], clear_ref[1])
    for i in (0, 2):                # and what it finds on that frame alone
        _same(found[i], base(raw[i:i + 1])[0])
    views = {"raw": [raw[[1, 3]]], "dehazed": [out[[1, 3]]], "fused": [raw[[1, 3]], out[[1, 3]]]}[view]
    per_view = [fog(torch.cat(views))] if len(views) == 1 else [fog(torch.cat(views))[:2], fog(torch.cat(views))[2:]]
    fog_ref = per_view[0] if len(per_view) == 1 else [fuse([a, b], "wbf") for a, b in zip(*per_view)]
    _same(found[1], fog_ref[0])
    _same(found[3], fog_ref[1])
    not_base = base(out[[1, 3]])   # the fog path is another detector's output, not the base's on the frame
    assert any(len(f) != len(b) or not np.allclose(f.xyxy, b.xyxy) for f, b in zip((found[1], found[3]), not_base))


@pytest.mark.slow
def test_run_detect_with_a_fog_detector_by_its_short_name(trained, shared_data, yolo_weights, cli, tmp_path):
    """`--fog-detector smoke` finds the detector `train detector --name smoke` made; each line of
    detections.jsonl says which detector gave it, and a clear frame carries the base detector's boxes."""
    import cv2

    from cidstream.detect import Detector

    frames = _mixed_frames(shared_data)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"f{i}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    code, text = cli("run", folder, "--detect", "--fog-detector", "smoke", "--fog-view", "raw", "--model", "dcp",
                     "--detector", yolo_weights, "--batch", "4", "-o", tmp_path / "o", "--no-progress")
    assert code == 0, text
    lines = {x["name"]: x for x in map(json.loads, (tmp_path / "o" / "detections.jsonl").read_text().splitlines())}
    assert [lines[f"f{i}.png"]["detector"] for i in range(4)] == ["base", "fog", "base", "fog"]
    assert "on the raw view of the 2 frames the gate dehazed" in text and "of the 2 left raw" in text
    base, fog = Detector(str(yolo_weights)), Detector(str(trained[0] / "fog.pt"))
    for i, det in ((0, base), (1, fog), (2, base), (3, fog)):
        ref = det(frames[i][None])[0]
        boxes = lines[f"f{i}.png"]["dehazed"]
        assert len(boxes) == len(ref) and len(boxes) > 0
        np.testing.assert_allclose([b["box"] for b in boxes], ref.xyxy, atol=0.02)
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    # the short name resolves to the newest file kept under it, and the report names both
    from cidstream.detect.cache import latest

    assert report["fog_detector"] == {"detector": f"smoke ({latest('smoke').name})", "view": "raw"}
    assert f"yolo11n_coco_from_int8.pt and smoke ({latest('smoke').name}):" in " ".join(text.split())


@pytest.mark.slow
def test_eval_per_frame_arm(trained, shared_data, yolo_weights, cli, tmp_path):
    """With the gate off every image takes the fog path: 'dcp per-frame' with the fog detector on the
    dehazed view is detector B on dcp's output, to the last digit."""
    fog = trained[0] / "fog.pt"
    code, text = cli("eval", shared_data / "dawn_fog" / "JPEGImages", "--labels", shared_data / "dawn_fog" /
                     "Annotations", "--model", "dcp", "--detector", yolo_weights, "--detector-b", fog, "--fog-detector",
                     fog, "--fog-view", "dehazed", "--gate", "off", "--split", "report", "--max-images", "6",
                     "--bootstrap", "20", "-o", tmp_path / "ev")
    assert code == 0, text
    report = json.loads((tmp_path / "ev" / "eval.json").read_text())
    res = report["results"]
    assert list(res) == ["raw", "dcp", "raw [B]", "dcp [B]", "dcp per-frame"]
    assert res["dcp per-frame"]["per_class"] == res["dcp [B]"]["per_class"]
    assert report["fog_detector"] == "fog.pt" and report["fog_view"] == "dehazed"
    assert "per-frame: fog.pt on dehazed" in text


@pytest.mark.slow
def test_batch_detects_with_fog_detector_and_fusion(trained, shared_data, yolo_weights, cli, tmp_path):
    from .conftest import cut_clip

    clip = tmp_path / "in" / "fog.mp4"
    cut_clip(shared_data / "videos" / "foggy_road_real.mp4", clip, 4, width=320)
    code, text = cli("batch", clip, "-o", tmp_path / "out", "--detect", "--detector", yolo_weights, "--model", "dcp",
                     "--fog-detector", "smoke", "--fuse", "wbf", "--no-progress")
    assert code == 0, text
    logs = list((tmp_path / "out").rglob("detections.jsonl"))
    assert len(logs) == 1
    lines = [json.loads(x) for x in logs[0].read_text().splitlines()]
    assert len(lines) == 4 and all(x["detector"] == "fog" and "fused" in x for x in lines)


@pytest.mark.slow
def test_train_detector_keeps_it_in_the_cache(trained):
    from cidstream.detect.cache import cache_root, latest

    made = latest("smoke")
    assert made is not None and made.parent == cache_root() / "detectors" / "smoke"
    assert made.read_bytes() == (trained[0] / "fog.pt").read_bytes()
    log = (trained[0] / "run" / "train.log").read_text()
    assert "device cpu" in log


@pytest.mark.slow
def test_train_detector_with_the_feature_consistency_term(shared_data, cli, tmp_path):
    """The term shows as its own loss column, and the output is Ultralytics' own model class (loadable
    without this package) with the term's settings in the metadata."""
    import csv

    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel

    cfg = tmp_path / "detector.yaml"
    cfg.write_text(SMOKE.format(base=shared_data / "weights" / "yolo11n_coco_from_int8_unfused.pt", data=shared_data)
                   .replace("output: {base_share: 0.5}", "consistency: {weight: 1.0, share: 0.5}\noutput: {base_share: 0}"))
    code, text = cli("train", "detector", "--config", cfg, "--out", tmp_path / "c.pt", "--run-dir", tmp_path / "run",
                     "--name", "consistency-smoke")
    assert code == 0, text
    assert "feature consistency: weight 1.0" in text
    ckpt = torch.load(tmp_path / "c.pt", map_location="cpu", weights_only=False)
    assert type(ckpt["model"]) is DetectionModel
    assert ckpt["cidstream"]["consistency"] == {"weight": 1.0, "share": 0.5}
    with (tmp_path / "run" / "yolo" / "results.csv").open() as fh:
        row = {k.strip(): v for k, v in next(csv.DictReader(fh)).items()}
    assert float(row["train/cons"]) > 0   # the term was computed and logged beside Ultralytics' losses
    assert YOLO(str(tmp_path / "c.pt")).task == "detect"


@pytest.mark.slow
def test_bench_times_the_fog_path_against_the_base_path(trained, yolo_weights, tmp_path):
    from .conftest import SAMPLE, run_cli_subprocess

    out = tmp_path / "bench.json"
    proc = run_cli_subprocess("bench", SAMPLE, "--frames", "4", "--repeats", "1", "--model", "dcp", "--detect",
                              "--detector", yolo_weights, "--fog-detector", "smoke", "--json", out)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(out.read_text())
    assert r["fog_view"] == "dehazed" and r["fog_path_fps"] > 0
    assert re.fullmatch(r"smoke \(\d{8}-\d{6}(-\d+)?\.pt\)", r["fog_detector"])  # the cache name and file
    assert r["fog_path_cost"] == pytest.approx(r["detect_fps"] / r["fog_path_fps"])
    assert "fog path (" in proc.stderr


def test_train_device_finds_the_gpu_or_says_there_is_none():
    """auto takes the GPU when torch sees one (the base detector, pseudo-labels, training and check all run
    there); asking for a GPU on a machine without one is a clear error, not a silent CPU run."""
    from cidstream.errors import ConfigError
    from training.cli import train_device

    assert train_device("cpu") == ("cpu", "cpu")
    if torch.cuda.is_available():
        assert train_device("auto") == ("cuda:0", "0") and train_device("cuda:0") == ("cuda:0", "0")
    else:
        assert train_device("auto") == ("cpu", "cpu")
        with pytest.raises(ConfigError, match="no CUDA GPU is available"):
            train_device("cuda")
    with pytest.raises(ConfigError, match="use auto, cpu, cuda"):
        train_device("gpu")
