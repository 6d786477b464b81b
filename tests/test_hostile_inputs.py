"""Issue 34: configs, eval labels and long runs. No hang, no unbounded memory, nothing silently wrong:
YAML alias bombs, duplicate keys and deep nesting in every YAML the project reads; error messages that
quote a value stay short; --bootstrap and --duration ranges; frame latencies of a live run in bounded
memory; one live run per output folder; a frame larger than the run was sized for, mid-stream; label
files that cannot be right (refused with file and line) or are partly right (fixed, with one warning)."""
import http.server
import json
import re
import signal
import threading
import time

import av
import cv2
import numpy as np
import pytest

from cidstream.config import load_config, parse_assignment, read_yaml
from cidstream.errors import ConfigError, InputError
from cidstream.evaluation.labels import read_voc, read_yolo
from cidstream.live.cameras import load_cameras
from training.synthetic.recipe import load_recipe

from .conftest import SAMPLE, run_cli_subprocess, serve_mjpeg
from .test_live import cameras_yaml, start_live, stats, wait_for

DCP = ("--model", "dcp", "--no-progress")
DAWN = "dawn_fog"


def bomb(levels: int) -> str:
    """A "billion laughs" YAML list: each anchor holds nine aliases of the one before, 9**levels values."""
    parts, prev = ["&l0 [x, x, x, x, x, x, x, x, x]"], "l0"
    for i in range(1, levels):
        parts.append(f"&l{i} [{', '.join([f'*{prev}'] * 9)}]")
        prev = f"l{i}"
    return f"[{', '.join(parts)}]"


# --- 1. YAML: aliases, recursion, duplicate keys, nesting; one loader for every file ---------------------------

YAML_READERS = {  # (reader, text with {value} where the value goes)
    "config": (load_config, "engine:\n  batch: {value}\n"),
    "cameras": (load_cameras, "settings:\n  engine:\n    batch: {value}\ncameras:\n  - url: rtsp://127.0.0.1/cam\n"),
    "recipe": (load_recipe, "domains:\n  fog:\n    steps: {value}\n"),
}


@pytest.mark.parametrize("reader", YAML_READERS)
def test_an_alias_bomb_is_refused_where_it_is_written(tmp_path, reader):
    load, template = YAML_READERS[reader]
    path = tmp_path / "bomb.yaml"
    path.write_text(template.format(value=bomb(6)))  # 531441 values; 9 levels: 387 million, 5.7 GB before
    assert path.stat().st_size < 400
    with pytest.raises(ConfigError) as err:
        load(path)
    text = str(err.value)
    assert "repeat more than 10,000 values; configs never need that many" in text, text[:300]
    assert str(path) in text and len(text) < 400
    line = template.split("\n").index(next(t for t in template.split("\n") if "{value}" in t)) + 1
    assert f"line {line}, column" in text, text


def test_an_alias_bomb_in_set_is_refused():
    with pytest.raises(ConfigError, match=r"^--set engine\.batch, line 1, column \d+: the aliases up to \*l\d "
                                          r"repeat more than 10,000 values"):
        parse_assignment("engine.batch=" + bomb(6))


def test_aliases_that_configs_use_still_work(tmp_path):
    path = tmp_path / "cams.yaml"
    path.write_text("common: &opts {rtsp_transport: tcp}\n"
                    "base: &base {max_delay: '500000'}\n"
                    "merged: {<<: *base, max_delay: '100'}\n"
                    "cams: [{options: *opts}, {options: *opts}]\n")
    data = read_yaml(path)
    assert data["cams"][1]["options"] == {"rtsp_transport": "tcp"}
    assert data["merged"] == {"max_delay": "100"}  # a merge key's value overridden on purpose: no duplicate


def test_an_alias_inside_what_it_names_is_refused(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text("input:\n  options: &o {x: *o}\n")
    with pytest.raises(ConfigError, match=r"loop\.yaml, line 2, column 19: alias \*o is inside the value it names"):
        load_config(path)


@pytest.mark.parametrize("text, where", [
    ("engine:\n  batch: 2\n  device: cpu\n  batch: 8\n", "line 4, column 3: key 'batch' is written twice in one "
                                                         "mapping (first at line 2, column 3)"),
    ("engine:\n  batch: 2\nengine:\n  device: cpu\n", "line 3, column 1: key 'engine' is written twice"),
])
def test_a_key_written_twice_is_refused(tmp_path, text, where):
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"^config file .*dup\.yaml, {re.escape(where)}"):
        load_config(path)


def test_a_key_written_twice_in_a_cameras_file_or_set_is_refused(tmp_path):
    path = tmp_path / "cams.yaml"
    path.write_text("cameras:\n  - name: a\n    url: rtsp://127.0.0.1/a\n    name: b\n")
    with pytest.raises(ConfigError, match=r"cams\.yaml: key 'name' is written twice in one mapping \(first at line 2, "
                                          r"column 5\): only the last would count; keep one \(line 4, column 5\)"):
        load_cameras(path)
    with pytest.raises(ConfigError, match=r"^--set input\.options, line 1, column 8: key 'a' is written twice"):
        parse_assignment("input.options={a: 1, a: 2}")


def test_yaml_nested_too_deeply_is_refused(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("engine:\n  batch: " + "[" * 500 + "]" * 500 + "\n")  # 1 KB: a RecursionError before
    with pytest.raises(ConfigError, match=r"deep\.yaml: nested too deeply to read"):
        load_config(path)


def test_a_message_quoting_a_value_is_cut_short():
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[parse_assignment(f"engine.batch={list(range(5000))}")])
    assert str(err.value).startswith("engine.batch: expected an integer, got [0, 1, 2, 3, 4, 5, 6, 7, ...]")
    assert len(str(err.value)) < 300


# --- 2. flags that are no setting: ranges in the same Range type, checked once ---------------------------------

@pytest.mark.parametrize("args, message", [
    (("run", SAMPLE, "--duration", "inf"), "--duration must be greater than 0 and at most 31536000 seconds (leave it "
                                           "out for no limit), got inf"),
    (("run", SAMPLE, "--duration", "1e300"), "--duration must be greater than 0 and at most 31536000 seconds"),
    (("run", SAMPLE, "--duration", "0"), "--duration must be greater than 0"),
    (("run", SAMPLE, "--max-frames", "0"), "--max-frames must be at least 1, got 0"),
    (("eval", "imgs", "--labels", "lbl", "--bootstrap", "-1"), "--bootstrap must be within 0..10000, got -1"),
    (("eval", "imgs", "--labels", "lbl", "--bootstrap", "100000000"), "--bootstrap must be within 0..10000, got "
                                                                      "100000000"),
])
def test_flag_ranges(cli, tmp_path, args, message):
    code, text = cli(*args, "-o", tmp_path / "out", *DCP[:2])
    assert code == 2 and f"error: {message}" in text, text
    assert "internal error" not in text and not (tmp_path / "out").exists()


# --- 3. a live run's latencies: a bounded sample that keeps p50/p95 -------------------------------------------

@pytest.mark.slow
def test_live_latencies_stay_bounded_over_many_frames():
    from cidstream.engine import Dehazer
    from cidstream.frames import Frame, FrameBatch
    from cidstream.pipeline import DehazeStage, Pipeline
    from cidstream.pipeline.loop import LATENCY_SAMPLES

    pipeline = Pipeline(DehazeStage(Dehazer("dcp", device="cpu")), live=True)
    img = np.full((8, 8, 3), 128, np.uint8)
    total, per_batch = 3 * LATENCY_SAMPLES, 1024

    def batches():  # frames captured 0 to 99.9 s before now: the latencies are known, give or take a batch's time
        for start in range(0, total, per_batch):
            now = time.monotonic()
            yield FrameBatch.of([Frame(img, i, captured_at=now - (i % 1000) / 10) for i in
                                 range(start, start + per_batch)])

    stats = pipeline.feed(batches())
    assert stats.frames == total
    assert len(stats.latencies_ms) == LATENCY_SAMPLES  # 1 float per frame before: 3x as many, growing forever
    assert 47_000 < float(np.median(list(stats.latencies_ms))) < 54_000  # of all frames: 50 s
    assert 92_000 < float(np.percentile(list(stats.latencies_ms), 95)) < 98_000  # 95 s


# --- 4. one live run per output folder -------------------------------------------------------------------------

class _Mjpeg(http.server.BaseHTTPRequestHandler):
    """An endless multipart JPEG stream of grey 160x90 frames, 25 a second, as a camera sends."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        serve_mjpeg(self)


@pytest.fixture
def camera():
    """The URL of a real HTTP MJPEG camera on 127.0.0.1."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Mjpeg)
    server.stopping = threading.Event()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/mjpeg"
    server.stopping.set()
    server.shutdown()
    server.server_close()


@pytest.mark.slow
def test_a_second_live_run_into_the_same_folder_is_refused(tmp_path, camera):
    cfg = cameras_yaml(tmp_path, [{"name": "cam", "url": camera}], live={"status_every_s": 0.5})
    root = tmp_path / "live"
    first = start_live([cfg, "--model", "dcp", "--duration", 120], tmp_path / "first.txt")
    try:
        wait_for(lambda: stats(root)["cam"]["processed"] >= 5, what="the first run's frames")
        second = run_cli_subprocess("live", cfg, "--model", "dcp", "--duration", 5, timeout=120)
        assert second.returncode == 2, second.stderr
        assert f"error: {root} is being written by another cidstream run (pid {first.pid})" in second.stderr
        assert "Traceback" not in second.stderr
        first.send_signal(signal.SIGTERM)
        assert first.wait(60) == 0, (tmp_path / "first.txt").read_text()
    finally:
        first.kill()
    assert json.loads((root / "stats.json").read_text())["stopped"] == "interrupted"  # the first run's, whole


# --- 5. a frame larger than the run was sized for, mid-stream ---------------------------------------------------

@pytest.fixture
def half_gb_machine(monkeypatch):
    """0.5 GB available: a 640x360 (or 320x240) run fits, frames of 1280x960 or more in batches of 4 do not."""
    from cidstream.engine import memory

    monkeypatch.setattr(memory, "available_bytes", lambda device: 0.5e9)


def _growing_video(path):
    """10 frames of 320x240, then 10 of 1280x960: two MPEG-TS parts one after the other, as a camera
    recording whose resolution changed."""
    parts = []
    for w, h in ((320, 240), (1280, 960)):
        part = path.with_name(f"{w}x{h}.ts")
        with av.open(str(part), "w", format="mpegts") as c:
            s = c.add_stream("libx264", rate=25)
            s.width, s.height, s.pix_fmt = w, h, "yuv420p"
            for i in range(10):
                c.mux(s.encode(av.VideoFrame.from_ndarray(np.full((h, w, 3), 20 * i, np.uint8), format="rgb24")))
            c.mux(s.encode())
        parts.append(part.read_bytes())
    path.write_bytes(b"".join(parts))


@pytest.mark.parametrize("kind", ["images", pytest.param("video", marks=pytest.mark.slow)])
def test_a_larger_frame_mid_stream_is_refused_and_the_rest_finalized(cli, tmp_path, half_gb_machine, kind):
    out = tmp_path / "out"
    if kind == "images":
        src = tmp_path / "frames"
        src.mkdir()
        with av.open(str(SAMPLE)) as c:
            for i, f in zip(range(2), c.decode(video=0)):
                cv2.imwrite(str(src / f"frame{i + 1}.png"), f.to_ndarray(format="bgr24"))
        cv2.imwrite(str(src / "frame3.png"), np.zeros((2000, 2000, 3), np.uint8))  # a 16000x16000 one alike
        written, culprit = 2, rf"frame 2 \(frame3\.png\) of {src} is 2000x2000, larger than the 640x360"
    else:
        src = tmp_path / "growing.ts"
        _growing_video(src)
        written, culprit = 10, rf"frame 10 of {src} is 1280x960, larger than the 320x240"
    code, text = cli("run", src, "-o", f"{out}/", *DCP)
    assert code == 2, text
    assert re.search(rf"error: {culprit} the run began with: engine\.batch 4 at \d+x\d+ needs about [\d.]+ GB of "
                     r"memory, more than the 0\.4 GB", text), text
    assert "internal error" not in text
    assert len(list(out.iterdir())) == written  # what came before it is written, whole


# --- 6. label files: refused with file and line, or fixed and told once -----------------------------------------

def _voc(path, box="<xmin>10</xmin><ymin>20</ymin><xmax>30</xmax><ymax>40</ymax>", name="car"):
    path.write_text(f"<annotation>\n<size><width>100</width><height>50</height></size>\n<object>\n<name>{name}</name>\n"
                    f"<bndbox>\n{box.replace('><', '>' + chr(10) + '<')}\n</bndbox>\n</object>\n</annotation>\n")
    return path


@pytest.mark.parametrize("box, message", [
    ("<xmin>nan</xmin><ymin>20</ymin><xmax>30</xmax><ymax>40</ymax>", r"line 6: <xmin> of 'car' is nan, not a "
                                                                      r"coordinate"),
    ("<xmin>10</xmin><ymin>20</ymin><xmax>inf</xmax><ymax>40</ymax>", r"line 8: <xmax> of 'car' is inf"),
    ("<xmin>30</xmin><ymin>20</ymin><xmax>10</xmax><ymax>40</ymax>", r"line 5: the box of 'car' is inverted \(xmin 30, "
                                                                     r"ymin 20, xmax 10, ymax 40\)"),
    ("<xmin>10</xmin><ymin>20</ymin><ymax>40</ymax>", r"line 5: the box of 'car' has no number for <xmax>"),
])
def test_voc_boxes_that_cannot_be_right_are_refused(tmp_path, box, message):
    path = _voc(tmp_path / "a.xml", box)
    with pytest.raises(InputError, match=rf"^label file {path}, {message}"):
        read_voc(path)


def test_xml_that_is_not_voc_is_refused(tmp_path):
    path = tmp_path / "a.xml"
    path.write_text('<annotations><image name="a.jpg"><box label="car" xtl="1" ytl="2" xbr="3" ybr="4"/></image>'
                    "</annotations>")  # CVAT's format: read as an empty label set before
    with pytest.raises(InputError, match=r"a\.xml is not a Pascal VOC annotation: its root element is <annotations>"):
        read_voc(path)


@pytest.mark.parametrize("line, message", [
    ("3 nan 0.5 0.2 0.4", r"line 2: '3 nan 0\.5 0\.2 0\.4' holds a value that is not a finite number"),
    ("3 0.5 0.5 -0.2 0.4", r"line 2: the box is inverted \(width -0\.2, height 0\.4\)"),
    ("3 0.1 0.1 0.2 0.1 0.3 0.3 0.1", r"line 2: expected 'class cx cy w h' \(5 numbers\)"),  # a polygon
])
def test_yolo_lines_that_cannot_be_right_are_refused(tmp_path, line, message):
    path = tmp_path / "a.txt"
    path.write_text(f"3 0.5 0.5 0.2 0.4\n{line}\n")
    with pytest.raises(InputError, match=rf"^label file {path}, {message}"):
        read_yolo(path, 100, 50, {2: "car"}, 1)


def test_boxes_outside_the_image_are_clipped_and_unknown_names_counted(tmp_path):
    from cidstream.evaluation.labels import LabelNotes

    notes = LabelNotes()
    partly = _voc(tmp_path / "partly.xml", "<xmin>-20</xmin><ymin>20</ymin><xmax>130</xmax><ymax>40</ymax>")
    (box,) = read_voc(partly, (100, 50), notes)
    assert box.xyxy == (0.0, 20.0, 100.0, 40.0)
    outside = _voc(tmp_path / "outside.xml", "<xmin>120</xmin><ymin>20</ymin><xmax>130</xmax><ymax>40</ymax>")
    assert read_voc(outside, (100, 50), notes) == []
    for i in range(3):
        read_voc(_voc(tmp_path / f"van{i}.xml", name="van"), (100, 50), notes)
    yolo = tmp_path / "y.txt"
    yolo.write_text("3 0.95 0.5 0.2 0.4\n")
    (box,) = read_yolo(yolo, 100, 50, {2: "car"}, 1, notes)
    assert box.xyxy == pytest.approx((85, 15, 100, 35))
    assert notes.warnings(["car", "bus"]) == [
        "label boxes reaching outside their image were clipped to it: partly.xml (1 box), y.txt (1 box)",
        "label boxes wholly outside their image were left out: outside.xml (1 box)",
        "label boxes of class names the detector does not know are not evaluated: van (3 boxes)"]
    assert read_voc(partly)[0].xyxy == (-20, 20, 130, 40)  # no image size given: as written


@pytest.mark.slow
def test_eval_tells_clipped_boxes_and_unknown_names_once(cli, tmp_path, shared_data, yolo_weights):
    images, labels = tmp_path / "img", tmp_path / "lbl"
    images.mkdir()
    labels.mkdir()
    for stem in ("foggy-001", "foggy-002"):
        (images / f"{stem}.jpg").write_bytes((shared_data / DAWN / "JPEGImages" / f"{stem}.jpg").read_bytes())
        text = (shared_data / DAWN / "Annotations" / f"{stem}.xml").read_text()
        if stem == "foggy-001":  # 1280x675: a box to x 1601, and a class name COCO has not
            text = text.replace("<xmax>601</xmax>", "<xmax>1601</xmax>", 1).replace("<name>car</name>", "<name>van"
                                                                                  "</name>", 1)
        (labels / f"{stem}.xml").write_text(text)
    code, text = cli("eval", images, "--labels", labels, "--model", "dcp", "--detector", yolo_weights,
                     "--bootstrap", 0, "--examples", 0, "-o", tmp_path / "ev")
    assert code == 0, text
    warnings = json.loads((tmp_path / "ev" / "eval.json").read_text())["warnings"]
    assert "label boxes reaching outside their image were clipped to it: foggy-001.xml (1 box)" in warnings
    assert "label boxes of class names the detector does not know are not evaluated: van (1 box)" in warnings
    assert text.count("warning: label boxes") == 2, text

