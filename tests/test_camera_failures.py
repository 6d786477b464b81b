"""Issue 21, cameras: a source that can never work fails fast instead of reconnecting forever; a live
run in which no camera ever sent a frame is not a success; local files are not cameras.

Every wait here is bounded (subprocess timeouts, wait_for), so a regression fails instead of hanging."""
import functools
import http.server
import shutil
import subprocess
import threading
import time

import pytest

from cidstream.config import LiveConfig
from cidstream.errors import ConfigError
from cidstream.io.camera import LiveSource
from cidstream.live.cameras import load_cameras

from .conftest import SAMPLE, free_port, run_cli_subprocess
from .test_live import cameras_yaml, stats, until_given_up, wait_for

ABSENT_DEVICE = "/dev/video987"
FAST = LiveConfig(backoff_initial_s=0.05, backoff_max_s=0.2, open_timeout_s=3.0, read_timeout_s=3.0)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def web(tmp_path):
    """A plain HTTP server on 127.0.0.1 serving tmp_path/www: an HTML page, and whatever a test puts there."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "index.html").write_text("<!doctype html><html><body><h1>Camera admin</h1></body></html>\n")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.root, server.url = root, f"http://127.0.0.1:{server.server_address[1]}"
    yield server
    server.shutdown()
    server.server_close()


def run_cli(*args, timeout=90):
    """The CLI in a subprocess; a run that would go on forever fails the test instead of hanging it."""
    try:
        return run_cli_subprocess(*args, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"cidstream {' '.join(map(str, args))} still running after {timeout} s")


# --- 1. a source that never sent a frame and fails for good is not retried ------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("what, path, reason", [
    ("device", None, "No such file or directory"),
    ("html", "/index.html", "Invalid data found when processing input"),
    ("404", "/missing.m3u8", "Server returned 404 Not Found"),
])
def test_a_source_that_cannot_work_fails_fast(web, what, path, reason):
    url = ABSENT_DEVICE if path is None else web.url + path
    source = until_given_up(LiveSource.from_config(url, FAST, name="cam"))
    assert source.stats.state == "failed" and source.stats.reconnects == 0
    assert str(source.failure) == f"cannot read camera cam: {reason}"
    assert source.stats.last_error == reason


def test_connection_refused_keeps_retrying_a_camera_that_never_streamed():
    """A camera that is rebooting refuses connections: that is not permanent."""
    source = LiveSource.from_config(f"rtsp://127.0.0.1:{free_port()}/cam", FAST, name="rebooting").start()
    try:
        wait_for(lambda: source.stats.reconnects >= 3, timeout=20, what="three reconnects")
        assert source.running and source.stats.state != "failed" and source.failure is None
    finally:
        source.close()


@pytest.mark.slow
def test_a_stream_that_worked_once_keeps_reconnecting_after_a_404(web):
    shutil.copy(SAMPLE, web.root / "clip.mp4")
    source = LiveSource.from_config(web.url + "/clip.mp4", FAST, name="cam").start()
    try:
        wait_for(lambda: source.stats.received > 0, timeout=30, what="a first frame")
        (web.root / "clip.mp4").unlink()
        wait_for(lambda: "404" in (source.stats.last_error or ""), timeout=30, what="a 404")
        reconnects = source.stats.reconnects
        wait_for(lambda: source.stats.reconnects >= reconnects + 2, timeout=20, what="reconnects after the 404")
        assert source.running and source.stats.state != "failed"
    finally:
        source.close()


@pytest.mark.slow
@pytest.mark.parametrize("what", ["device", "html"])
def test_run_fails_fast_on_a_source_that_cannot_work(web, tmp_path, what):
    url = ABSENT_DEVICE if what == "device" else web.url + "/index.html"
    reason = "No such file or directory" if what == "device" else "Invalid data found when processing input"
    # Baseline: a run that opens a source that works, for one frame (the same start-up, the same settings).
    t0 = time.monotonic()
    one = run_cli("run", SAMPLE, "-o", tmp_path / "one.mp4", "--max-frames", "1", "--no-progress")
    one_frame_run = time.monotonic() - t0
    assert one.returncode == 0, one.stderr
    t0 = time.monotonic()
    r = run_cli("run", url, "-o", tmp_path / "out.mp4", "--no-progress")
    took = time.monotonic() - t0
    assert r.returncode == 2, r.stderr
    assert f"cannot read camera {url}: {reason}" in r.stderr
    assert "reconnect" not in r.stderr and "Traceback" not in r.stderr
    # Fast: no slower than twice that one-frame run (one that kept retrying runs into run_cli's deadline).
    assert took < 2 * one_frame_run, f"failing took {took:.1f} s, a one-frame run {one_frame_run:.1f} s"
    assert not (tmp_path / "out.mp4").exists()


@pytest.mark.slow
def test_live_marks_a_camera_that_cannot_work_failed_and_exits(web, tmp_path):
    cfg = cameras_yaml(tmp_path, [{"name": "nodev", "url": ABSENT_DEVICE},
                                  {"name": "page", "url": web.url + "/index.html"}],
                       live={"status_every_s": 0.5, "backoff_initial_s": 0.05, "backoff_max_s": 0.2})
    r = run_cli("live", cfg, "--no-status")
    assert r.returncode == 1, r.stderr
    s = stats(tmp_path / "live")
    assert s["nodev"]["state"] == "failed" and s["nodev"]["reconnects"] == 0
    assert s["nodev"]["error"] == "No such file or directory"
    assert s["page"]["state"] == "failed" and s["page"]["error"] == "Invalid data found when processing input"
    assert "cannot read camera nodev: No such file or directory" in r.stderr
    assert "stopped (all cameras failed)" in r.stderr


@pytest.mark.slow
def test_live_goes_on_with_the_other_cameras(web, rtsp_server, tmp_path):
    server = rtsp_server("--testsrc", "--size", "320x180")
    cfg = cameras_yaml(tmp_path, [{"name": "alive", "url": server.url},
                                  {"name": "page", "url": web.url + "/index.html"}],
                       live={"status_every_s": 0.5, "backoff_initial_s": 0.05, "backoff_max_s": 0.2})
    r = run_cli("live", cfg, "--no-status", "--duration", 8)
    assert r.returncode == 1, r.stderr       # a camera failed, and the user did not stop the run
    s = stats(tmp_path / "live")
    assert s["page"]["state"] == "failed" and s["page"]["reconnects"] == 0
    assert s["alive"]["state"] != "failed" and s["alive"]["processed"] > 0


# --- 2. --duration with no frame from any camera is a failure --------------------------------------------

@pytest.mark.slow
def test_live_duration_without_any_frame_exits_non_zero(tmp_path):
    cfg = cameras_yaml(tmp_path, [{"name": "down", "url": f"rtsp://127.0.0.1:{free_port()}/cam"}],
                       live={"status_every_s": 0.5, "backoff_initial_s": 0.1, "backoff_max_s": 0.5})
    r = run_cli("live", cfg, "--no-status", "--duration", 3)
    assert r.returncode == 1, r.stderr
    assert "error: no camera delivered a frame in 3 s" in r.stderr
    assert stats(tmp_path / "live")["down"]["state"] != "failed"   # still retrying when the time was up


# --- 3. local files are not cameras -------------------------------------------------------------------------

@pytest.mark.parametrize("url", [str(SAMPLE), "samples/hazy_traffic.mp4", f"file://{SAMPLE}", "missing.mp4"])
def test_live_refuses_local_files(tmp_path, url):
    cfg = cameras_yaml(tmp_path, [{"name": "cam", "url": url}])
    with pytest.raises(ConfigError, match=r"cameras\[0\]: url .* is a file, not a camera stream .*"
                                          r"use `cidstream run` or `cidstream batch`"):
        load_cameras(cfg)


@pytest.mark.slow
def test_live_cli_refuses_a_local_file_before_starting(tmp_path):
    cfg = cameras_yaml(tmp_path, [{"name": "cam", "url": str(SAMPLE)}])
    r = run_cli("live", cfg, "--no-status", "--duration", 5)
    assert r.returncode == 2, r.stderr
    assert f"error: {cfg}: cameras[0]: url '{SAMPLE}' is a file, not a camera stream" in r.stderr
    assert not (tmp_path / "live").exists()


@pytest.mark.parametrize("url", ["rtsp://10.0.0.5/stream", "rtsps://cam/s", "https://x/live.m3u8",
                                 "udp://239.0.0.1:1234", "srt://cam:9000", "/dev/video0",
                                 "/dev/v4l/by-id/usb-cam-video-index0"])
def test_live_still_takes_streams_and_devices(tmp_path, url):
    cams = load_cameras(cameras_yaml(tmp_path, [{"name": "cam", "url": url}]))
    assert cams.cameras[0].url == url
