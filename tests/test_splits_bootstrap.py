"""Fixed select/report halves and bootstrap intervals of AP (cidstream eval --split / --bootstrap)."""
import json

import numpy as np
import pytest

from cidstream.evaluation.ap import GroundTruth, average_precision, match, voc_ap, weighted_ap
from cidstream.evaluation.bootstrap import bootstrap, resample_weights
from cidstream.detect.detections import box_iou
from cidstream.evaluation.splits import in_split, split_of

from .conftest import REPO


def _random_set(seed: int, n_images: int = 12, noise: float = 4.0):
    """Ground truth boxes and noisy detections (some misses, some false alarms) for a few images."""
    rng = np.random.default_rng(seed)
    truth, dets = {}, []
    for i in range(n_images):
        name = f"im{i}.jpg"
        k = int(rng.integers(0, 6))
        xy = rng.uniform(0, 400, (k, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(20, 80, (k, 2))], axis=1)
        difficult = rng.random(k) < 0.1
        truth[name] = GroundTruth(boxes, difficult)
        for b in boxes:
            if rng.random() < 0.8:
                dets.append((name, float(rng.random()), b + rng.normal(0, noise, 4)))
        for _ in range(int(rng.integers(0, 4))):
            xy = rng.uniform(0, 400, 2)
            dets.append((name, float(rng.random() * 0.6), np.concatenate([xy, xy + 30])))
    return truth, dets


def _reference_ap(dets, truth) -> float:
    """VOC AP written out step by step: detections by score, greedy matching, cumulative TP/FP."""
    used = {k: np.zeros(len(g.boxes), bool) for k, g in truth.items()}
    tp, fp = [], []
    for name, _, box in sorted(dets, key=lambda d: -d[1]):
        g = truth[name]
        ious = box_iou(np.asarray(box, np.float64)[None], g.boxes)[0] if len(g.boxes) else np.zeros(0)
        j = int(np.argmax(ious)) if len(ious) else -1
        if j >= 0 and ious[j] >= 0.5 and g.difficult[j]:
            continue
        hit = j >= 0 and ious[j] >= 0.5 and not used[name][j]
        if hit:
            used[name][j] = True
        tp.append(float(hit))
        fp.append(float(not hit))
    positives = sum(int((~g.difficult).sum()) for g in truth.values())
    ctp, cfp = np.cumsum(tp), np.cumsum(fp)
    return voc_ap(ctp / positives, ctp / np.maximum(ctp + cfp, 1e-12))


@pytest.mark.parametrize("seed", range(5))
def test_weighted_ap_with_unit_weights_is_voc_ap(seed):
    truth, dets = _random_set(seed)
    names = list(truth)
    m = match(dets, truth, names)
    expected = _reference_ap(dets, truth)
    assert weighted_ap(m, np.ones(len(names))) == pytest.approx(expected, abs=1e-12)
    assert average_precision(dets, truth).ap == pytest.approx(expected, abs=1e-12)


def test_weighted_ap_counts_an_image_twice_like_a_copy_of_it():
    truth, dets = _random_set(3, n_images=4)
    names = list(truth)
    # Copy image 0 under a new name: same boxes, same detections.
    copy_truth = dict(truth, dup=truth[names[0]])
    copy_dets = dets + [("dup", s, b) for n, s, b in dets if n == names[0]]
    w = np.ones(len(names))
    w[0] = 2
    direct = average_precision(copy_dets, copy_truth).ap
    assert weighted_ap(match(dets, truth, names), w) == pytest.approx(direct, abs=0.02)


def test_bootstrap_intervals_bracket_the_estimate_and_identical_arms_differ_by_zero():
    truth, dets = _random_set(7, n_images=30)
    names = list(truth)
    m = match(dets, truth, names)
    worse = match([(n, s * 0.5 if i % 3 else s, b + 25) for i, (n, s, b) in enumerate(dets)], truth, names)
    out = bootstrap({"raw": {"car": m, "vehicle": m}, "same": {"car": m, "vehicle": m},
                     "worse": {"car": worse, "vehicle": worse}}, ["car"], "vehicle", len(names), resamples=300)
    point = average_precision(dets, truth).ap
    lo, hi = out["arms"]["raw"]["vehicle_ap50"]
    assert lo <= point <= hi and hi - lo > 0.01
    same = next(d for d in out["differences"] if d["a"] == "same" and d["b"] == "raw")
    assert same["vehicle_ap50"] == [0.0, 0.0]
    worse_row = next(d for d in out["differences"] if d["a"] == "worse" and d["b"] == "raw")
    assert worse_row["vehicle_ap50"][1] < 0 and worse_row["vehicle_ap50_lead_share"] == 0.0


def test_resample_weights_are_counts_summing_to_the_set_size():
    w = resample_weights(10, 50, seed=1)
    assert w.shape == (50, 10) and (w.sum(axis=1) == 10).all()
    assert (resample_weights(10, 50, seed=1) == w).all()


def test_split_is_a_fixed_half_by_name():
    names = [f"frame_{i:04d}.jpg" for i in range(400)]
    select = in_split(names, "select")
    report = in_split(names, "report")
    assert set(select).isdisjoint(report) and len(select) + len(report) == 400
    assert 150 < len(select) < 250
    assert split_of("a/b/frame_0001.jpg") == split_of("frame_0001.jpg")   # folders do not matter
    assert in_split(names, "all") == names
    with pytest.raises(ValueError, match="unknown split"):
        in_split(names, "train")


@pytest.mark.parametrize("name", ["dawn_fog.tsv", "highway_fog_cam.tsv"])
def test_committed_split_lists_follow_the_rule(name):
    rows = [line.split("\t") for line in (REPO / "configs" / "splits" / name).read_text().splitlines()
            if line and not line.startswith("#")][1:]
    assert len(rows) >= 19
    assert all(split_of(item) == half for item, half in rows)
    assert {half for _, half in rows} == {"select", "report"}


@pytest.mark.slow
def test_eval_split_and_intervals(cli, shared_data, yolo_weights, tmp_path):
    images = shared_data / "dawn_fog" / "JPEGImages"
    code, text = cli("eval", images, "--labels", shared_data / "dawn_fog" / "Annotations", "--detector", yolo_weights,
                     "--split", "report", "--max-images", "5", "--model", "dcp", "--examples", "1",
                     "--bootstrap", "200", "-o", tmp_path / "ev")
    assert code == 0, text
    assert "report half" in text and "dcp − raw" in text
    report = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert report["split"] == "report" and report["images"] == 5 and report["bootstrap"]["resamples"] == 200
    for arm in ("raw", "dcp"):
        lo, hi = report["results"][arm]["vehicle_ap50_ci"]
        assert lo <= report["results"][arm]["vehicle_ap50"] <= hi
    (diff,) = report["bootstrap"]["differences"]
    assert diff["a"] == "dcp" and diff["b"] == "raw"
    assert diff["vehicle_ap50_difference"] == pytest.approx(
        report["results"]["dcp"]["vehicle_ap50"] - report["results"]["raw"]["vehicle_ap50"], abs=1e-3)
    assert "Differences between arms" in (tmp_path / "ev" / "eval.html").read_text()
    # Only report-half images were read.
    assert len(report["examples"]) == 1 and split_of(report["examples"][0]["image"]) == "report"


def test_training_entries_keep_the_report_half_out(shared_data):
    from training.data_entries import source_specs

    dawn = source_specs([{"path": str(shared_data / "dawn_fog" / "JPEGImages"), "split": "select"}])
    assert len(dawn) > 50 and all(split_of(p) == "select" for p in dawn)
    cam = shared_data / "highway_fog_cam"
    fog = source_specs([{"path": str(cam / "frames"), "split": "select", "split_by": "folder",
                         "visibility": str(cam / "visibility.tsv"), "max_visibility_m": 1000}])
    table = dict(line.split("\t") for line in (cam / "visibility.tsv").read_text().splitlines()[1:])
    assert fog and all(split_of(p.split("/")[-2]) == "select" for p in fog)
    assert all(float(table["/".join(p.split("/")[-2:])]) < 1000 for p in fog)
    clear = source_specs([{"path": str(cam / "frames"), "split": "select", "split_by": "folder",
                           "visibility": str(cam / "visibility.tsv"), "min_visibility_m": 10000}])
    assert clear and all(split_of(p.split("/")[-2]) == "select" for p in clear)
    assert all(float(table["/".join(p.split("/")[-2:])]) >= 10000 for p in clear)
    assert not set(clear) & set(fog)


def test_training_entry_errors_are_readable(shared_data):
    from cidstream.errors import ConfigError
    from training.data_entries import source_specs

    with pytest.raises(ConfigError, match="split must be"):
        source_specs([{"path": str(shared_data / "real_hazy"), "split": "train"}])
    with pytest.raises(ConfigError, match="unknown: colour"):
        source_specs([{"path": str(shared_data / "real_hazy"), "colour": 1}])
    with pytest.raises(ConfigError, match="needs a 'visibility' table"):
        source_specs([{"path": str(shared_data / "real_hazy"), "min_visibility_m": 10000}])
