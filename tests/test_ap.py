"""AP against cases worked out by hand, and label reading."""
import numpy as np
import pytest

from cidstream.evaluation.ap import GroundTruth, average_precision, voc_ap
from cidstream.evaluation.labels import match_labels, read_voc, read_yolo
from cidstream.errors import InputError


def gt(*boxes, difficult=None):
    arr = np.array(boxes, np.float64).reshape(-1, 4)
    return GroundTruth(arr, np.array(difficult if difficult is not None else [False] * len(arr), bool))


def test_voc_ap_all_point_interpolation():
    # precision 1 up to recall 0.5, then 0.5 up to recall 1.0: area 0.5 * 1 + 0.5 * 0.5
    assert voc_ap(np.array([0.5, 1.0]), np.array([1.0, 0.5])) == pytest.approx(0.75)
    # the envelope takes the best precision at any higher recall: (0.25 at r=.5 is lifted to 0.4)
    assert voc_ap(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.25, 0.4])) == pytest.approx(0.5 + 0.5 * 0.4)


def test_ranked_detections_worked_example():
    # Three ground-truth boxes on one image; ranked detections are TP, FP, TP, FP, TP.
    truth = {"a": gt([0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10])}
    far = [100, 100, 110, 110]
    dets = [("a", 0.9, [0, 0, 10, 10]), ("a", 0.8, far), ("a", 0.7, [20, 0, 30, 10]), ("a", 0.6, far),
            ("a", 0.5, [40, 0, 50, 10])]
    r = average_precision(dets, truth)
    # precision at the recall steps 1/3, 2/3, 1 is 1, 2/3, 3/5 -> AP = (1 + 2/3 + 3/5) / 3
    assert r.ap == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    assert (r.positives, r.detections, r.true_positives) == (3, 5, 3)


def test_duplicates_difficult_and_misses():
    truth = {"a": gt([0, 0, 10, 10], [20, 0, 30, 10], difficult=[False, True]), "b": gt([0, 0, 10, 10])}
    dets = [("a", 0.9, [0, 0, 10, 10]),     # TP
            ("a", 0.8, [0, 0, 10, 10.5]),   # duplicate of the same box: FP
            ("a", 0.7, [20, 0, 30, 10]),    # matches a difficult box: ignored
            ("b", 0.6, [50, 50, 60, 60])]   # miss: FP; b's box is never found
    r = average_precision(dets, truth)
    # ranked: TP (p=1, r=.5), FP (p=.5) and FP (p=1/3): envelope 1 up to recall 0.5, then nothing
    assert r.positives == 2 and r.true_positives == 1
    assert r.ap == pytest.approx(0.5)
    assert average_precision([], truth).ap == 0.0
    assert np.isnan(average_precision([], {"a": gt()}).ap)


def test_iou_threshold_is_inclusive_at_half():
    truth = {"a": gt([0, 0, 10, 10])}
    # 10x10 box shifted so that IoU = 50/150 = 1/3: a miss; a 10x5 half box: IoU exactly 0.5: a hit
    assert average_precision([("a", 0.9, [5, 0, 15, 10])], truth).ap == 0.0
    assert average_precision([("a", 0.9, [0, 0, 10, 5])], truth).ap == 1.0


def test_label_readers(tmp_path):
    xml = tmp_path / "img1.xml"
    xml.write_text("<annotation><object><name>Motorbike</name><difficult>1</difficult><bndbox><xmin>1</xmin>"
                   "<ymin>2</ymin><xmax>30</xmax><ymax>40</ymax></bndbox></object><object><name>car</name>"
                   "<bndbox><xmin>5</xmin><ymin>6</ymin><xmax>7</xmax><ymax>8</ymax></bndbox></object></annotation>")
    boxes = read_voc(xml)
    assert [(b.name, b.xyxy, b.difficult) for b in boxes] == [("motorcycle", (1, 2, 30, 40), True),
                                                              ("car", (5, 6, 7, 8), False)]
    txt = tmp_path / "img1.txt"
    txt.write_text("3 0.5 0.5 0.2 0.4\n")
    (b,) = read_yolo(txt, 100, 50, {2: "car"}, id_offset=1)
    assert b.name == "car" and b.xyxy == pytest.approx((40, 15, 60, 35))
    txt.write_text("car 0.5 0.5\n")
    with pytest.raises(InputError, match="line 1: expected 'class cx cy w h'"):
        read_yolo(txt, 100, 50, {}, 0)


def test_labels_must_match_images(tmp_path):
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "other.xml").write_text("<annotation/>")
    images = [tmp_path / "a.jpg", tmp_path / "b.jpg"]
    with pytest.raises(InputError, match="none of the 1 label files"):
        match_labels(images, labels, "voc")
    (labels / "a.xml").write_text("<annotation/>")
    with pytest.raises(InputError, match="1 of 2 images have no VOC label file.*b.jpg"):
        match_labels(images, labels, "voc")
