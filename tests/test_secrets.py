"""Issue 34, secrets and links: a camera password in a URL reaches no terminal line, log line or output
file (it is shown as user:***@) while the real URL still opens the stream; links in HTML reports are
relative file links only.

Streams come from a real HTTP server on 127.0.0.1 (tests/test_http_sources.py's, which asks for
Basic credentials under /private/) or from ports nobody listens on; no mocks."""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from urllib.parse import urljoin
from urllib.request import url2pathname

import av
import numpy as np
import pytest

from cidstream.config import LiveConfig
from cidstream.io.camera import LiveSource
from cidstream.jobs.overview import render_batch_html
from cidstream.redact import redact_url
from cidstream.sinks.report import file_href

from .conftest import free_port, run_cli_subprocess
from .test_http_sources import BOUND_S, CLIP_FRAMES, WebServer, clip  # noqa: F401  (clip: a fixture)
from .test_live import cameras_yaml, stats, until_given_up

SECRET = "S3cr3t-pw"


def files_holding(folder: Path, needle: str) -> list[str]:
    """Files under ``folder`` whose bytes contain ``needle`` (JSON, HTML, MOT, video containers alike)."""
    return [str(p) for p in folder.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


# --- the one function --------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, shown", [
    ("rtsp://admin:pw@10.0.0.5:554/stream", "rtsp://admin:***@10.0.0.5:554/stream"),
    ("http://admin:p@ss:w0rd@cam/x.mjpg", "http://admin:***@cam/x.mjpg"),   # '@' in it: up to the last one
    ("cannot open 'https://u:pw@h/a.m3u8': 401", "cannot open 'https://u:***@h/a.m3u8': 401"),
    ("http://:token@h/x", "http://:***@h/x"),
    ("http://cam/snap.cgi?user=admin&password=pw&res=1", "http://cam/snap.cgi?user=admin&password=***&res=1"),
    ("http://cam/api?token=abc#f", "http://cam/api?token=***#f"),
    ("rtsp://admin:***@cam/s", "rtsp://admin:***@cam/s"),                  # masked twice: the same
    ("rtsp://user@cam/s", "rtsp://user@cam/s"),                            # a user name alone is no secret
    ("out/clip.mp4: mail a@b.c, ratio 2:1", "out/clip.mp4: mail a@b.c, ratio 2:1"),
])
def test_redact_url(text, shown):
    assert redact_url(text) == shown


def test_ffmpeg_error_strings_quote_the_url_and_are_masked():
    from cidstream.io.sources import ffmpeg_message

    url = f"http://admin:{SECRET}@127.0.0.1:{free_port()}/x.mp4"
    with pytest.raises(av.error.FFmpegError) as info:
        av.open(url, timeout=(3, 3))
    assert SECRET in str(info.value)                     # what PyAV says ...
    assert SECRET not in redact_url(str(info.value))     # ... and what we print
    assert ffmpeg_message(info.value) == "Connection refused"


# --- terminal and logs ----------------------------------------------------------------------------------

def test_cli_error_lines_hide_the_password(cli, tmp_path):
    port = free_port()
    code, text = cli("run", f"http://admin:{SECRET}@127.0.0.1:{port}/x.mp4", "-o", tmp_path / "one.jpg")
    assert code == 2   # refused before any model loads, with the input in the message
    assert text.strip() == (f"error: output {tmp_path / 'one.jpg'} is a single image but the input "
                            f"http://admin:***@127.0.0.1:{port}/x.mp4 has several frames: give a folder (images) "
                            "or a video path (.mp4) as output, or --max-frames 1")


def test_camera_log_lines_and_failure_hide_the_password(caplog):
    url = f"rtsp://admin:{SECRET}@127.0.0.1:{free_port()}/cam"
    cfg = LiveConfig(backoff_initial_s=0.05, backoff_max_s=0.1, open_timeout_s=2.0, read_timeout_s=2.0,
                     max_reconnects=2)
    caplog.set_level(logging.WARNING, logger="cidstream.live")
    source = until_given_up(LiveSource.from_config(url, cfg), timeout=20)
    shown = redact_url(url)
    assert source.name == shown and source.info.source == shown
    assert str(source.failure) == f"camera {shown}: Connection refused; gave up after 2 reconnects"
    lines = [r.getMessage() for r in caplog.records]
    assert any(line.startswith(f"camera {shown}: Connection refused; reconnect 1 in") for line in lines), lines
    assert not [line for line in lines if SECRET in line]


def test_batch_refuses_a_stream_url_without_showing_the_password(cli, tmp_path):
    url = f"http://admin:{SECRET}@127.0.0.1:9/clip.mp4"
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"path\n{url}\n")
    for inputs, where in (([url], ""), ([manifest], f"manifest {manifest}:2: ")):
        code, text = cli("batch", *inputs, "-o", tmp_path / "out")
        assert code == 2
        assert text.strip() == (f"error: {where}{redact_url(url)} is a stream URL, and cidstream batch reads "
                                "files: use cidstream run (one stream) or cidstream live (cameras)")
    assert not (tmp_path / "out" / "ledger.json").exists()   # nothing recorded, the password least of all


# --- every output file ----------------------------------------------------------------------------------

@pytest.fixture
def private_web(tmp_path, clip):  # noqa: F811
    """The clip, with a soundtrack, served only to Basic credentials admin:SECRET."""
    root = tmp_path / "www"
    (root / "private").mkdir(parents=True)
    _with_audio(clip, root / "private" / "clip.mp4")
    server = WebServer(root, credentials=f"admin:{SECRET}")
    yield server
    server.stop()


def _with_audio(src: Path, dst: Path) -> None:
    """``src``'s video stream (copied) and a quiet AAC track of the same length."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        video = out.add_stream_from_template(inp.streams.video[0])
        audio = out.add_stream("aac", rate=44100, layout="mono")
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is not None:
                packet.stream = video
                out.mux(packet)
        for i in range(round(CLIP_FRAMES / 25 * 44100 / 1024)):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 44100, i * 1024
            out.mux(audio.encode(frame))
        out.mux(audio.encode())


@pytest.mark.slow
def test_run_with_detect_over_http_shows_the_password_nowhere(private_web, tmp_path, cli, yolo_weights):
    url = private_web.auth_url("/private/clip.mp4")
    shown = redact_url(url)
    out = tmp_path / "out"
    code, text = cli("run", url, "-o", out, "--detect", "--detector", yolo_weights, "--model", "dcp",
                     "--no-progress", "--duration", BOUND_S)   # a bound: it ends by itself long before
    assert code == 0, text
    assert private_web.server.authorized >= 1                 # the real URL opened the stream
    assert re.search(rf"^input +{re.escape(shown)}", text, re.M), text   # the summary's input row, redacted
    assert SECRET not in text and "stopped after --duration" not in text
    assert files_holding(out, SECRET) == []
    lines = [json.loads(line) for line in (out / "detections.jsonl").read_text().splitlines()]
    assert len(lines) == CLIP_FRAMES and {line["source"] for line in lines} == {shown}
    assert json.loads((out / "report.json").read_text())["input"] == shown
    assert json.loads((out / "detections.coco.json").read_text())["info"]["source"] == shown
    assert shown in (out / "report.html").read_text()
    with av.open(str(out / "dehazed.mp4")) as c:             # reopened with the password for its soundtrack
        assert len(c.streams.audio) == 1


@pytest.mark.slow
def test_live_shows_the_password_nowhere(tmp_path):
    web = WebServer(tmp_path)   # its endless MJPEG stream is a camera that streams
    try:
        streaming = f"http://admin:{SECRET}@127.0.0.1:{web.port}/mjpeg"
        refused = f"rtsp://admin:{SECRET}@127.0.0.1:{free_port()}/cam"
        cfg = cameras_yaml(tmp_path, [{"name": "up", "url": streaming}, {"name": "down", "url": refused}],
                           model={"name": "dcp"},
                           live={"status_every_s": 0.5, "backoff_initial_s": 0.05, "backoff_max_s": 0.2})
        r = run_cli_subprocess("live", cfg, "--duration", 4, timeout=120)
    finally:
        web.stop()
    assert r.returncode == 0, r.stderr
    cams = stats(tmp_path / "live")
    assert cams["up"]["url"] == redact_url(streaming) and cams["up"]["processed"] > 0
    assert cams["down"]["url"] == redact_url(refused) and cams["down"]["reconnects"] > 0
    assert SECRET not in r.stdout + r.stderr and "reconnect" in r.stderr
    assert files_holding(tmp_path / "live", SECRET) == []


# --- links in HTML reports ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["javascript:alert(1).mp4", "data:text/html,x.mp4", "//evil.example/x.mp4",
                                  "sub dir/a#b?.mp4"])
def test_file_href_is_a_relative_link_to_that_file(name, tmp_path):
    href = file_href(name)
    assert href.startswith("./") and ":" not in href
    page = (tmp_path / "batch_report.html").as_uri()
    assert Path(url2pathname(urljoin(page, href)[len("file://"):])) == tmp_path / name.lstrip("/")


def test_batch_report_links_no_script(tmp_path):
    report = {"totals": {"files": 1, "done": 1, "failed": 0, "pending": 0, "vehicles": None},
              "this_run": {"fps": 1.0, "frames": 3, "seconds": 3.0}, "inputs": ["in/"], "output_dir": "out",
              "model": "dcp", "engine": "local", "created": "now", "cidstream_version": "0",
              "files": [{"input": "in/javascript:alert(1).mp4", "output": "javascript:alert(1).mp4",
                         "state": "done", "this_run": True, "frames": 3, "summary": None, "error": None}]}
    page = render_batch_html(report)
    assert "href='./javascript%3Aalert%281%29.mp4'" in page
    assert "href='javascript:" not in page

