"""The real detector (YOLO11n COCO) on real frames, tracking, and detector loading errors."""
import numpy as np
import pytest
import torch

from cidstream.detect import Detections, Detector, DetectorError, Tracker, box_iou, letterbox


@pytest.mark.slow
def test_finds_cars_on_a_clear_highway(detector, highway_frames):
    dets = detector(highway_frames[:3])
    assert len(dets) == 3
    for d in dets:
        names = {detector.names[int(c)] for c in d.class_id}
        assert len(d) >= 5 and "car" in names
        assert names <= {"car", "bus", "truck", "motorcycle", "bicycle"}
        h, w = highway_frames.shape[1:3]
        assert (d.xyxy[:, 0] >= 0).all() and (d.xyxy[:, 2] <= w + 1).all() and (d.xyxy[:, 3] <= h + 1).all()


@pytest.mark.slow
def test_device_tensor_path_agrees_with_ultralytics_letterbox(detector, highway_frames):
    # The CUDA hand-off path (letterbox where the tensor lies) runs here on CPU tensors.
    host = detector(highway_frames[:2])
    dev = detector(torch.from_numpy(highway_frames[:2]))
    for a, b in zip(host, dev):
        confident = a[a.confidence > 0.5]
        ious = box_iou(confident.xyxy, b.xyxy)
        assert len(confident) >= 3
        assert (ious.max(axis=1) > 0.85).mean() >= 0.9


def test_letterbox_geometry():
    frames = torch.zeros(2, 720, 1280, 3, dtype=torch.uint8)
    x, ratio, (left, top) = letterbox(frames, 640)
    assert x.shape == (2, 3, 384, 640) and ratio == 0.5 and (left, top) == (0, 12)
    assert x[0, :, 0, 0].tolist() == pytest.approx([114 / 255] * 3)


@pytest.mark.slow
def test_tracker_keeps_ids_across_frames(detector, highway_frames):
    tracker = Tracker(frame_rate=30)
    tracked = [tracker.update(d) for d in detector(highway_frames)]
    total = sum(len(d) for d in tracked)
    assert all(d.tracker_id is not None for d in tracked)
    # the same cars across 6 consecutive frames: far fewer unique ids than detections
    assert 3 <= tracker.unique < total / 2
    first_ids = set(tracked[1].tracker_id[tracked[1].tracker_id >= 0])
    assert len(first_ids & set(tracked[-1].tracker_id)) >= 3


def test_detector_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    monkeypatch.delenv("CIDSTREAM_DETECTOR", raising=False)
    with pytest.raises(DetectorError, match="could not be downloaded.*--detector PATH.*CIDSTREAM_DETECTOR"):
        Detector()  # yolo11n.pt is not here and the machine is offline
    with pytest.raises(DetectorError, match="detector file not found"):
        Detector(str(tmp_path / "nope" / "det.pt"))
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(DetectorError, match="empty"):
        Detector(str(empty))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"PK\x03\x04 not really a checkpoint")
    with pytest.raises(DetectorError, match="cannot load detector"):
        Detector(str(junk))


def test_a_classifier_is_not_a_detector(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    from ultralytics import YOLO

    path = tmp_path / "cls.pt"
    YOLO("yolo11n-cls.yaml").save(str(path))  # built offline from the architecture file, random weights
    with pytest.raises(DetectorError, match="is a 'classify' model, not a detection model"):
        Detector(str(path))


def test_unknown_class_name(yolo_weights):
    with pytest.raises(DetectorError, match="has no class 'spaceship'"):
        Detector(str(yolo_weights), classes=["car", "spaceship"])
    assert Detector(str(yolo_weights), classes=[]).class_ids is None


def test_detections_records():
    d = Detections(np.array([[1, 2, 3, 4]], np.float32), np.array([0.5], np.float32), np.array([2], np.int32),
                   np.array([7]))
    assert d.to_records({2: "car"}) == [{"box": [1.0, 2.0, 3.0, 4.0], "class": "car", "class_id": 2,
                                         "confidence": 0.5, "track_id": 7}]


@pytest.mark.slow
def test_detector_leaves_torch_threads_alone(detector, highway_frames):
    # Ultralytics sets min(8, cores - 1) threads on every CPU predictor setup; 2 differs from that here.
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        detector.yolo.predictor = None  # force a fresh predictor setup, where the thread count is changed
        detector(highway_frames[:1])
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
