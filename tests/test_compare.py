"""Compare mode and eval end to end through the CLI, with the real detector on real footage."""
import json
import re

import av
import pytest


@pytest.fixture(scope="module")
def compare_run(shared_data, yolo_weights, tmp_path_factory):
    import os

    from cidstream.cli import main

    os.environ["YOLO_OFFLINE"] = "1"
    out = tmp_path_factory.mktemp("compare") / "out"
    code = main(["run", str(shared_data / "videos" / "highway_720p.mp4"), "--compare", "--track", "--detector",
                 str(yolo_weights), "-o", str(out), "--max-frames", "8", "--no-progress"])
    assert code == 0
    return out


def frames_in(path):
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        return sum(1 for _ in c.decode(v)), (v.codec_context.width, v.codec_context.height)


@pytest.mark.slow
def test_compare_writes_every_output(compare_run):
    names = {p.name for p in compare_run.iterdir()}
    assert names == {"dehazed.mp4", "side_by_side.mp4", "detections.jsonl", "detections.coco.json",
                     "detections_raw.coco.json", "detections.mot.txt", "detections_raw.mot.txt", "report.json",
                     "report.html"}
    assert frames_in(compare_run / "dehazed.mp4") == (8, (1280, 720))
    assert frames_in(compare_run / "side_by_side.mp4") == (8, (2560, 720))


@pytest.mark.slow
def test_report_numbers_agree_with_detections_jsonl(compare_run):
    lines = [json.loads(x) for x in (compare_run / "detections.jsonl").read_text().splitlines()]
    report = json.loads((compare_run / "report.json").read_text())
    assert [x["frame"] for x in lines] == report["per_frame"]["frame"] == list(range(8))
    for stream in ("raw", "dehazed"):
        counts = [len(x[stream]) for x in lines]
        assert report["per_frame"][stream] == counts
        assert report["totals"][stream]["vehicles"] == sum(counts)
        per_class = {}
        for x in lines:
            for box in x[stream]:
                per_class[box["class"]] = per_class.get(box["class"], 0) + 1
        assert report["totals"][stream]["per_class"] == per_class
        assert sum(report["totals"][stream]["confidence_histogram"]) == sum(counts)
    raw, deh = report["per_frame"]["raw"], report["per_frame"]["dehazed"]
    cmp_ = report["comparison"]
    assert cmp_["frames_more"] == sum(d > r for r, d in zip(raw, deh))
    assert cmp_["frames_fewer"] == sum(d < r for r, d in zip(raw, deh))
    assert cmp_["difference"] == sum(deh) - sum(raw)
    a = cmp_["agreement"]
    assert a["matched"] + a["raw_only"] == sum(raw) and a["matched"] + a["dehazed_only"] == sum(deh)
    assert report["totals"]["raw"]["vehicles"] >= 40  # a clear highway: 5+ cars per frame
    assert 0 < report["speed"]["detector_share"] < 1
    assert report["unique_vehicles"]["raw"] >= 3


@pytest.mark.slow
def test_report_does_not_sell_more_boxes_as_a_gain(compare_run):
    """Without labels a box only the dehazed frame has may be a false one: the difference is not coloured as
    a gain, the page says so, and the agreement card shows the boxes only one side found."""
    page = (compare_run / "report.html").read_text()
    assert "dehazed − raw<b>" in page and "class=up" not in page and "class=down" not in page
    assert "more boxes is not more vehicles found" in page and "cidstream eval" in page
    report = json.loads((compare_run / "report.json").read_text())
    ag = report["comparison"]["agreement"]
    assert f"{ag['raw_only']} only raw, {ag['dehazed_only']} only dehazed" in page


@pytest.mark.slow
def test_exports_match_the_log(compare_run):
    lines = [json.loads(x) for x in (compare_run / "detections.jsonl").read_text().splitlines()]
    coco = json.loads((compare_run / "detections.coco.json").read_text())
    assert len(coco["images"]) == 8
    assert len(coco["annotations"]) == sum(len(x["dehazed"]) for x in lines)
    first = lines[0]["dehazed"][0]
    x1, y1, x2, y2 = first["box"]
    assert coco["annotations"][0]["bbox"] == pytest.approx([x1, y1, x2 - x1, y2 - y1], abs=0.02)
    mot = (compare_run / "detections_raw.mot.txt").read_text().splitlines()
    assert len(mot) == sum(len(x["raw"]) for x in lines)
    assert all(len(row.split(",")) == 10 for row in mot)


@pytest.mark.slow
def test_report_html_is_self_contained(compare_run):
    page = (compare_run / "report.html").read_text()
    report = json.loads((compare_run / "report.json").read_text())
    assert not re.search(r"""(src|href)=['"]?https?://""", page)
    # vehicles per frame, per class, confidence, and visibility over time (every run measures haze)
    assert page.count("data:image/png;base64,") == 4 and "alt='visibility over time'" in page
    assert f"<b>{report['totals']['raw']['vehicles']}</b>" in page
    assert f"<b>{report['totals']['dehazed']['vehicles']}</b>" in page


@pytest.mark.parametrize("args, message", [
    (["--detect", "-o", "{t}/x.mp4"], "the output is a folder"),
    (["--detect", "--detector", "{t}/missing.pt", "-o", "{t}/o"], "detector file not found"),
    (["--detect", "--classes", "car,zeppelin", "--detector", "{w}", "-o", "{t}/o"], "has no class 'zeppelin'"),
    (["--detect", "--conf", "1.5", "--detector", "{w}", "-o", "{t}/o"], "detect.conf must be within 0..1"),
])
def test_detection_run_errors(cli, tmp_path, yolo_weights, args, message):
    from .conftest import SAMPLE

    code, text = cli("run", SAMPLE, *[a.format(t=tmp_path, w=yolo_weights) for a in args], "--no-progress")
    assert code == 2, text
    assert message in text and "Traceback" not in text


def test_offline_default_detector_says_what_to_do(cli, tmp_path, monkeypatch):
    from .conftest import SAMPLE

    monkeypatch.delenv("CIDSTREAM_DETECTOR", raising=False)
    code, text = cli("run", SAMPLE, "--detect", "-o", tmp_path / "o", "--no-progress")
    assert code == 2 and "--detector PATH" in text


@pytest.mark.slow
def test_eval_voc_and_yolo_labels_agree(cli, shared_data, yolo_weights, tmp_path):
    images = shared_data / "dawn_fog" / "JPEGImages"
    common = ["--detector", yolo_weights, "--max-images", "6", "--model", "dcp", "--examples", "1"]
    code, text = cli("eval", images, "--labels", shared_data / "dawn_fog" / "Annotations", "-o", tmp_path / "voc",
                     *common)
    assert code == 0, text
    assert "mAP50" in text and "vehicle (any class)" in text
    code, text = cli("eval", images, "--labels", shared_data / "dawn_fog" / "labels_yolo", "--yolo-id-offset", "1",
                     "-o", tmp_path / "yolo", *common)
    assert code == 0, text
    voc = json.loads((tmp_path / "voc" / "eval.json").read_text())
    yolo = json.loads((tmp_path / "yolo" / "eval.json").read_text())
    assert voc["label_format"] == "voc" and yolo["label_format"] == "yolo" and voc["images"] == 6
    for v in ("raw", "dcp"):
        assert voc["results"][v]["per_class"]["vehicle"]["positives"] == \
            yolo["results"][v]["per_class"]["vehicle"]["positives"] > 0
        assert voc["results"][v]["vehicle_ap50"] == pytest.approx(yolo["results"][v]["vehicle_ap50"], abs=0.02)
        assert 0 < voc["results"][v]["vehicle_ap50"] <= 1
    page = (tmp_path / "voc" / "eval.html").read_text()
    assert page.count("data:image/jpeg;base64,") == 1


@pytest.mark.slow
def test_eval_errors(cli, shared_data, yolo_weights, tmp_path):
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "unrelated.xml").write_text("<annotation/>")
    code, text = cli("eval", shared_data / "dawn_fog" / "JPEGImages", "--labels", labels, "--detector", yolo_weights,
                     "--max-images", "2")
    assert code == 2 and "none of the 1 label files" in text
    empty = tmp_path / "empty_labels"
    empty.mkdir()
    for p in sorted((shared_data / "dawn_fog" / "JPEGImages").glob("*.jpg"))[:2]:
        (empty / f"{p.stem}.xml").write_text("<annotation></annotation>")
    code, text = cli("eval", shared_data / "dawn_fog" / "JPEGImages", "--labels", empty, "--detector", yolo_weights,
                     "--max-images", "2")
    assert code == 2 and "hold no boxes of the evaluated classes" in text
