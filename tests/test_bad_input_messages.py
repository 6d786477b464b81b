"""Audit of bad input and of what people read: config ranges, YAML errors, batch manifests, unwritable
outputs, detector files, train generate, eval (--max-images, YOLO id offsets), bench on a truncated file,
the report's speed table and label placement. Real files throughout; running as root, chmod does not
stop writes, so the unwritable cases are a path under a regular file and a path under /proc (and a
chmod 0o555 folder only when the tests do not run as root)."""
import dataclasses
import json
import os
import re
import typing

import numpy as np
import pytest

from cidstream.config import Config, load_config, parse_assignment, validate
from cidstream.errors import ConfigError, OutputError

from .conftest import SAMPLE, cut_clip, faststart_copy

DAWN = "dawn_fog"


def _numeric_keys(obj, prefix=""):
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            yield from _numeric_keys(value, key + ".")
            continue
        hint = hints[f.name]
        args = typing.get_args(hint) or (hint,)
        if any(a in (int, float) for a in args):
            yield key


# --- 1. every numeric setting has a range --------------------------------------------------------------

def test_every_numeric_setting_has_a_range():
    from cidstream.config import ranges

    keys, declared = set(_numeric_keys(Config())), set(ranges())
    assert "output.threads" in keys and "model.dcp.omega" in keys and "live.backoff_jitter" in keys
    assert keys - declared == set(), "numeric settings without a Range in their type (cidstream/config.py)"
    assert declared - keys == set(), "ranges() names keys that are not numeric settings"
    validate(load_config())  # the shipped defaults are inside every range


@pytest.mark.parametrize("assignment, message", [
    ("model.dcp.omega=5", "model.dcp.omega must be within 0..1, got 5.0"),
    ("model.dcp.omega=-0.1", "model.dcp.omega must be within 0..1, got -0.1"),
    ("model.dcp.t0=0", "model.dcp.t0 must be greater than 0 and at most 1, got 0.0"),
    ("model.dcp.top_fraction=2", "model.dcp.top_fraction must be greater than 0 and at most 1, got 2.0"),
    ("model.dcp.patch=0", "model.dcp.patch must be within 1..255, got 0"),
    ("model.dcp.radius=0", "model.dcp.radius must be within 1..1024, got 0"),
    ("model.dcp.eps=0", "model.dcp.eps must be greater than 0 and at most 1, got 0.0"),
    ("model.dcp.subsample=0", "model.dcp.subsample must be within 1..64, got 0"),
    ("model.dcp.sky_tolerance=1.5", "model.dcp.sky_tolerance must be within 0..1, got 1.5"),
    ("engine.batch=0", "engine.batch must be at least 1, got 0"),
    ("engine.max_latency_ms=-5", "engine.max_latency_ms must be at least 0, got -5.0"),
    ("engine.max_latency_ms=.nan", "engine.max_latency_ms must be at least 0, got nan"),
    ("input.queue_size=0", "input.queue_size must be at least 1, got 0"),
    ("input.decode_threads=-1", "input.decode_threads must be within 0..256, got -1"),
    ("input.image_fps=0", "input.image_fps must be greater than 0 and at most 1000, got 0.0"),
    ("output.crf=52", "output.crf must be within 0..51, got 52"),
    ("output.threads=-1", "output.threads must be within 0..128, got -1"),
    ("output.threads=500", "output.threads must be within 0..128, got 500"),
    ("output.jpeg_quality=0", "output.jpeg_quality must be within 1..100, got 0"),
    ("output.queue_size=0", "output.queue_size must be at least 1, got 0"),
    ("detect.conf=1.5", "detect.conf must be within 0..1, got 1.5"),
    ("detect.iou=0", "detect.iou must be greater than 0 and at most 1, got 0.0"),
    ("detect.imgsz=16", "detect.imgsz must be within 32..4096, got 16"),
    ("live.open_timeout_s=0", "live.open_timeout_s must be greater than 0, got 0.0"),
    ("live.read_timeout_s=-1", "live.read_timeout_s must be greater than 0, got -1.0"),
    ("live.watchdog_s=0", "live.watchdog_s must be greater than 0, got 0.0"),
    ("live.max_reconnects=-1", "live.max_reconnects must be at least 0, got -1"),
    ("live.backoff_initial_s=0", "live.backoff_initial_s must be greater than 0, got 0.0"),
    ("live.backoff_max_s=0.1", "live.backoff_max_s must be at least live.backoff_initial_s (0.5), got 0.1"),
    ("live.backoff_jitter=1", "live.backoff_jitter must be at least 0 and less than 1, got 1.0"),
    ("live.queue_size=0", "live.queue_size must be at least 1, got 0"),
    ("live.segment_s=-1", "live.segment_s must be at least 0, got -1.0"),
    ("live.status_every_s=0", "live.status_every_s must be greater than 0, got 0.0"),
    ("batch.workers=-1", "batch.workers must be at least 0, got -1"),
    ("batch.cpus_per_task=0", "batch.cpus_per_task must be greater than 0, got 0.0"),
    ("batch.gpus_per_task=-1", "batch.gpus_per_task must be at least 0, got -1.0"),
    ("batch.max_attempts=0", "batch.max_attempts must be at least 1, got 0"),
])
def test_out_of_range_settings_are_refused_with_key_range_and_value(assignment, message):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[parse_assignment(assignment)])
    assert str(err.value) == message


@pytest.mark.parametrize("assignment", ["model.dcp.omega=0", "model.dcp.omega=1", "model.dcp.t0=1",
                                        "model.dcp.radius=null", "model.dcp.sky_tolerance=0", "output.threads=0",
                                        "batch.workers=0 ", "live.segment_s=0", "detect.conf=0"])
def test_range_edges_that_mean_something_are_accepted(assignment):
    overrides = [parse_assignment(assignment)]
    if assignment.startswith("batch.workers"):
        overrides.append({"batch": {"engine": "ray"}})
    load_config(overrides=overrides)


def test_omega_5_on_the_command_line_stops_before_writing(cli, tmp_path):
    # before: accepted, exit 0, and most output pixels black
    out = tmp_path / "o.mp4"
    code, text = cli("run", SAMPLE, "-o", out, "-m", "dcp", "--set", "model.dcp.omega=5", "--no-progress")
    assert code == 2, text
    assert "error: model.dcp.omega must be within 0..1, got 5.0" in text
    assert "Traceback" not in text and not out.exists()


# --- 2. YAML syntax errors name file, line and column ---------------------------------------------------

@pytest.mark.parametrize("text, where", [
    ("engine:\n  batch: [1, 2\n", "line 3, column 1: expected ',' or ']', but got '<stream end>' "
                                  "(while parsing a flow sequence at line 2, column 10)"),
    ("engine:\n  batch: 4\n   x: 2\n", "line 3, column 5: mapping values are not allowed here"),
    ("engine:\n\tbatch: 4\n", "line 2, column 1: found character '\\t' that cannot start any token"),
])
def test_yaml_errors_in_config_files_give_line_and_column(cli, tmp_path, text, where):
    path = tmp_path / "my.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"config file {path} is not valid YAML: {where}")
    code, out = cli("run", SAMPLE, "-c", path, "--no-progress")
    assert code == 2 and f"{path} is not valid YAML: line" in out and "Traceback" not in out


def test_yaml_errors_in_cameras_files_give_line_and_column(cli, tmp_path):
    path = tmp_path / "cams.yaml"
    path.write_text("cameras:\n  - {name: a, url: rtsp://127.0.0.1:1/x\n")
    code, text = cli("live", path, "--no-status")
    assert code == 2, text
    assert f"error: cameras file {path} is not valid YAML: line 3, column 1: expected ',' or '}}'" in text
    assert text.count(str(path)) == 1  # said once, not "cams.yaml: config file cams.yaml ..."


def test_yaml_errors_in_training_recipes_give_line_and_column(cli, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("seed: 0\ndomains: {a: [1\n")
    code, text = cli("train", "generate", "--out", tmp_path / "pairs", "--count", "1", "--recipe", recipe, SAMPLE)
    assert code == 2 and f"recipe {recipe} is not valid YAML: line 3, column 1" in text, text
    config = tmp_path / "train.yaml"
    config.write_text("model: {a: 1\n")
    code, text = cli("train", "pretrain", "--config", config, "--run-dir", tmp_path / "run")
    assert code == 2 and f"training config {config} is not valid YAML: line 2, column 1" in text, text


# --- 3 and 4. batch manifests: output names, and a bad model fails its own row only ----------------------

@pytest.mark.parametrize("row, video, folder", [
    ("renamed.mp4", "renamed.mp4", "renamed"),      # before: renamed.mp4.mp4 (and a folder renamed.mp4)
    ("sub/Renamed.MKV", "sub/Renamed.MKV", "sub/Renamed"),
    ("renamed", "renamed.mp4", "renamed"),
    ("renamed.v2", "renamed.v2.mp4", "renamed.v2"),
])
def test_a_manifest_output_with_a_video_suffix_keeps_it(tmp_path, row, video, folder):
    from cidstream.jobs import collect_jobs

    manifest = tmp_path / "m.csv"
    manifest.write_text(f"path,output\n{SAMPLE},{row}\n")
    (job,) = collect_jobs([str(manifest)], load_config())
    assert job.output == video
    manifest.write_text(f"path,output,detect\n{SAMPLE},{row},true\n")  # with --detect the output is a folder
    (job,) = collect_jobs([str(manifest)], load_config())
    assert job.output == folder


def test_a_manifest_output_in_a_video_format_we_cannot_write_is_refused(tmp_path):
    from cidstream.jobs import collect_jobs

    manifest = tmp_path / "m.csv"
    manifest.write_text(f"path,output\n{SAMPLE},clip.webm\n")
    with pytest.raises(ConfigError, match=r"m.csv:2: output 'clip.webm': videos are written as .mp4"):
        collect_jobs([str(manifest)], load_config())


def test_a_bad_model_in_one_manifest_row_fails_that_row_only(cli, tmp_path):
    # before: "error: unknown model 'nosuchmodel' ...", exit 2, the other rows left pending
    for name in ("a.mp4", "b.mp4"):
        (tmp_path / name).write_bytes(SAMPLE.read_bytes())
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,output,model\na.mp4,bad.mp4,nosuchmodel\nb.mp4,renamed.mp4,dcp\n")
    out = tmp_path / "out"
    code, text = cli("batch", manifest, "-o", out, "--max-frames", "2", "-m", "dcp",
                     "--set", "batch.local_workers=threads", "--no-progress")
    assert code == 1, text
    assert "Traceback" not in text and "internal error" not in text and "stopped" not in text
    ledger = json.loads((out / "ledger.json").read_text())["files"]
    states = {e["output"]: (e["state"], e.get("error")) for e in ledger.values()}
    assert states["renamed.mp4"] == ("done", None)
    state, error = states["bad.mp4"]
    assert state == "failed" and error.startswith(f"manifest {manifest}:2: unknown model 'nosuchmodel'")
    assert (out / "renamed.mp4").is_file() and not (out / "renamed.mp4.mp4").exists()
    assert not (out / "bad.mp4").exists()


def test_a_bad_model_for_the_whole_batch_still_stops_it(cli, tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"path,output\n{SAMPLE},a.mp4\n")
    code, text = cli("batch", manifest, "-o", tmp_path / "out", "-m", "nosuchmodel",
                     "--set", "batch.local_workers=threads", "--no-progress")
    assert code == 2 and "error: unknown model 'nosuchmodel'" in text


# --- 5 and 7. unwritable output folders, an output that is a file ---------------------------------------

def _unwritable(tmp_path):
    """(label, path) of output folders that cannot be written, whoever runs the tests."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    cases = [("under a file", afile / "out", "is a file, not a folder"),
             ("under /proc", "/proc/cidstream-audit/out", "is not writable")]
    if os.geteuid() != 0:  # root writes into 0o555 folders
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        cases.append(("chmod 555", ro / "out", "is not writable"))
    return cases


def test_batch_into_an_unwritable_folder_says_so_before_any_work(cli, tmp_path):
    # before: "internal error: NotADirectoryError ..." / FileNotFoundError, exit 1
    for label, path, message in _unwritable(tmp_path):
        code, text = cli("batch", SAMPLE, "-o", path, "-m", "dcp", "--no-progress")
        assert code == 2, (label, text)
        assert "error: " in text and message in text and "internal error" not in text, (label, text)


def test_train_generate_into_an_unwritable_folder_or_a_file_says_so(cli, tmp_path):
    # before: "internal error: NotADirectoryError: ... 'afile/clean'", exit 1
    cases = _unwritable(tmp_path) + [("an existing file", tmp_path / "afile", "exists and is a file, not a folder")]
    for label, path, message in cases:
        code, text = cli("train", "generate", "--out", path, "--count", "1", SAMPLE)
        assert code == 2, (label, text)
        assert "error: " in text and message in text and "internal error" not in text, (label, text)
    assert (tmp_path / "afile").read_text() == "x"


def test_train_generate_without_sources_uses_the_built_in_clean_scene(cli, tmp_path, monkeypatch):
    # before (a checkout without ../shared): "error: no sources given and the default clean videos are not in
    # ../shared/data/videos", exit 2. The missing ../shared is simulated by pointing the default elsewhere.
    import training.cli

    monkeypatch.setattr(training.cli, "DATA_VIDEOS", tmp_path / "no_shared" / "videos")
    out = tmp_path / "data" / "pairs"
    code, text = cli("train", "generate", "--out", out, "--count", "3")
    assert code == 0, text
    assert "clean road scene samples/make_sample.py draws" in text
    meta = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert len(meta) == 3 and {m["source"] for m in meta} == {"builtin:road_scene"}
    assert [m["frame"] for m in meta] == [0, 5, 10]
    assert len(list((out / "clean").glob("*.png"))) == 3 and len(list((out / "hazy").glob("*.png"))) == 3


def test_eval_into_an_unwritable_folder_says_so(cli, shared_data, yolo_weights, tmp_path):
    # before: all the detection work, then "internal error: NotADirectoryError ...", exit 1
    dawn = shared_data / DAWN
    for label, path, message in _unwritable(tmp_path):
        code, text = cli("eval", dawn / "JPEGImages", "--labels", dawn / "labels_yolo", "--yolo-id-offset", "1",
                         "-m", "dcp", "--detector", yolo_weights, "--max-images", "1", "--examples", "0", "-o", path)
        assert code == 2, (label, text)
        assert "error: " in text and message in text and "internal error" not in text, (label, text)


def test_run_eval_checks_its_output_folder_before_detecting(shared_data, detector, tmp_path):
    from cidstream.evaluation.evaluate import run_eval

    dawn = shared_data / DAWN
    seen = []
    for label, path, message in _unwritable(tmp_path):
        with pytest.raises(OutputError, match=message):
            run_eval(str(dawn / "JPEGImages"), str(dawn / "labels_yolo"), {}, detector, "yolo", 1, max_images=2,
                     progress=lambda k, n: seen.append(k), output_dir=path)
    assert seen == []  # not one image was processed


# --- 6. a detector that is not a model file -------------------------------------------------------------

@pytest.mark.parametrize("name, content, extra", [
    ("detector.txt", "yolo11n\n", ""),                 # before: internal error: TypeError ..., exit 1
    ("names.names", "person\nbicycle\ncar\n", ""),     # before: internal error: TypeError ..., exit 1
    ("detector.pt", "this is text\n", ": it is a text file"),  # before: "cannot load detector ... ERROR ❌️ ..."
])
def test_a_detector_that_is_not_a_model_file_gets_one_line(cli, tmp_path, name, content, extra):
    path = tmp_path / name
    path.write_text(content)
    code, text = cli("run", SAMPLE, "--detect", "--detector", path, "-m", "dcp", "-o", tmp_path / "o",
                     "--max-frames", "1", "--no-progress")
    assert code == 2, text
    assert f"error: {path} is not an Ultralytics model file{extra} (expected a detection model: .pt," in text
    assert "Traceback" not in text and "internal error" not in text and "❌" not in text
    assert len(text.strip().splitlines()) == 1


# --- 8. eval --max-images 0 -------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["0", "-3"])
def test_eval_max_images_below_1_is_an_error(cli, shared_data, yolo_weights, tmp_path, value):
    # before: 0 evaluated all 150 images, -3 all but the last 3; exit 0
    dawn = shared_data / DAWN
    code, text = cli("eval", dawn / "JPEGImages", "--labels", dawn / "labels_yolo", "-m", "dcp",
                     "--detector", yolo_weights, "--max-images", value, "-o", tmp_path / "ev")
    assert code == 2, text
    assert f"error: --max-images must be at least 1, got {value}" in text
    assert not (tmp_path / "ev").exists()


# --- 9. YOLO labels whose ids are COCO ids + 1 (DAWN) ----------------------------------------------------

@pytest.mark.slow
def test_dawn_labels_without_the_offset_are_detected_and_said(shared_data, detector):
    # before: mAP50 0.000 (car boxes read as motorcycles), no word about it
    from cidstream.evaluation.evaluate import run_eval

    dawn = shared_data / DAWN
    args = (str(dawn / "JPEGImages"), str(dawn / "labels_yolo"), {}, detector, "yolo")
    given_0 = run_eval(*args, 0, max_images=8, examples=0)
    given_1 = run_eval(*args, 1, max_images=8, examples=0)
    assert given_1["warnings"] == [] and given_1["yolo_id_offset"]["used"] == 1
    assert given_0["yolo_id_offset"] == {**given_1["yolo_id_offset"], "given": 0}
    (warning,) = given_0["warnings"]
    assert "--yolo-id-offset 1" in warning and "class ids + 1" in warning
    assert given_0["results"] == given_1["results"]
    assert given_0["results"]["raw"]["per_class"]["car"]["positives"] > 10
    assert given_0["results"]["raw"]["map50"] > 0.2


@pytest.mark.slow
def test_dawn_offset_warning_reaches_the_terminal_and_the_html(cli, shared_data, yolo_weights, tmp_path):
    dawn = shared_data / DAWN
    code, text = cli("eval", dawn / "JPEGImages", "--labels", dawn / "labels_yolo", "-m", "dcp",
                     "--detector", yolo_weights, "--max-images", "6", "--examples", "1", "-o", tmp_path / "ev")
    assert code == 0, text
    assert "warning: the YOLO label ids look like the detector's class ids + 1" in text
    assert "evaluated with --yolo-id-offset 1" in text
    assert "class=warn>warning: the YOLO label ids" in (tmp_path / "ev" / "eval.html").read_text()
    report = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert report["yolo_id_offset"]["used"] == 1 and report["warnings"]


# --- 10. bench on a truncated file -----------------------------------------------------------------------

@pytest.mark.slow
def test_bench_on_a_truncated_file_says_so(tmp_path):
    # before: notes [] (90 frames asked, about 20 timed, nothing said)
    from cidstream.bench import run_bench

    clip, whole, cut = tmp_path / "clip.mp4", tmp_path / "whole.mp4", tmp_path / "cut.mp4"
    cut_clip(SAMPLE, clip, 40, width=160)
    faststart_copy(clip, whole)
    data = whole.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.6)])
    cfg = load_config(overrides=[{"model": {"name": "dcp"}, "engine": {"device": "cpu"}}])
    res = run_bench(str(cut), cfg, frames=90, repeats=1, warmup=0)
    assert res.frames < 40
    (note,) = [n for n in res.notes if "asked for" in n]
    assert note.startswith(f"input ended after {res.frames} of the 90 frames asked for")
    assert "ended early" in note and "truncated file?" in note

    res = run_bench(str(whole), cfg, frames=60, repeats=1, warmup=0)  # complete, just shorter than asked
    (note,) = [n for n in res.notes if "asked for" in n]
    assert note == "input ended after 40 of the 60 frames asked for: all timings are on 40 frames"
    assert not [n for n in run_bench(str(whole), cfg, frames=40, repeats=1, warmup=0).notes if "asked" in n]


# --- 11. the report's speed table and labels that do not overprint ---------------------------------------

@pytest.mark.slow
def test_the_report_speed_table_is_written_for_people():
    # before: rows like "interrupted | False", "end to end fps | 0.64", "detector share | 0.6412"
    from cidstream.sinks.report import ReportCollector, build_report, render_html
    from cidstream.pipeline import RunStats

    stats = RunStats(frames=60, seconds=93.6, interrupted=False,
                     stage_seconds={"decode": 1.5, "dehaze": 40.0, "detect": 60.0, "write": 0.0})
    meta = {"input": "in.mp4", "model": "dcp", "device": "cpu", "detector": "y.pt", "classes": ["car"],
            "conf": 0.25, "iou": 0.7, "imgsz": 640}
    page = render_html(build_report(ReportCollector({2: "car"}, compare=False), meta, stats))
    speed = page.split("<h2>Speed</h2>")[1].split("</table>")[0]
    rows = dict(re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td></tr>", speed))
    assert rows == {"end to end": "0.64 fps", "run time": "1 min 34 s", "decoding": "40.0 fps",
                    "dehazing": "1.5 fps", "detection": "1 fps", "writing": "–",
                    "detector&#x27;s share of the run": "64%", "interrupted (Ctrl-C)": "no"}
    assert "False" not in speed and "0.641" not in speed


def _overlap(a, b):
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_labels_of_overlapping_boxes_do_not_overprint():
    # before: both labels at (x1, y1 - 3) of nearly the same box: printed over each other
    import cv2

    from cidstream.detect.detections import Detections
    from cidstream.detect.draw import draw_detections, place_labels, side_by_side

    frame = np.full((360, 640, 3), 90, np.uint8)
    cv2.rectangle(frame, (200, 150), (330, 230), (40, 40, 160), -1)  # one car ...
    det = Detections(np.array([[198, 148, 332, 232], [202, 146, 336, 229], [200, 40, 330, 120]], np.float32),
                     np.array([0.91, 0.64, 0.5], np.float32), np.array([2, 2, 7], np.int32))  # ... two boxes on it
    names = {2: "car", 7: "truck"}
    placed = place_labels(det, names, 640, 360)
    assert all(p is not None for p in placed)
    rects = [p[2] for p in placed]
    bar = (0, 0, 640, max(14, int(30 * 0.4)))
    for i, a in enumerate(rects):
        assert not _overlap(a, bar)
        assert 0 <= a[0] and a[2] <= 640 and 0 <= a[1] and a[3] <= 360
        for b in rects[i + 1:]:
            assert not _overlap(a, b), (a, b)
    assert placed[0][0] == "car 0.91" and placed[0][2][1] < 148  # the most confident keeps the spot above
    out = draw_detections(frame, det, names, "dehazed")
    for text, _, (x1, y1, x2, y2) in placed:  # each label is drawn where it was placed
        patch = out[y1:y2, x1:x2]
        assert (patch != 0).any() and (patch == 0).any()
    assert side_by_side(frame, frame, det, det, names).shape == (360, 1280, 3)


def test_a_label_with_no_free_spot_is_left_out_not_overprinted():
    from cidstream.detect.detections import Detections
    from cidstream.detect.draw import place_labels

    n = 12  # a dozen boxes on the same small spot: not all labels fit around it
    det = Detections(np.tile(np.array([[300, 200, 340, 230]], np.float32), (n, 1)),
                     np.linspace(0.9, 0.3, n).astype(np.float32), np.full(n, 2, np.int32))
    placed = place_labels(det, {2: "car"}, 640, 360)
    rects = [p[2] for p in placed if p is not None]
    assert 1 <= len(rects) < n and placed[0] is not None
    assert not any(_overlap(a, b) for i, a in enumerate(rects) for b in rects[i + 1:])
