"""Issue 34, HTTP sources: a video file served over HTTP is read like a file (every frame, once, exit 0),
a camera's endless stream stays live, what is not video fails at once, and a stream that never sent a
frame in --duration is an error.

Everything is served by a real HTTP server on 127.0.0.1 in a thread (files, Basic auth, an endless
MJPEG stream); no mocks. Every wait is bounded (--duration, wait_for), so a regression fails instead
of hanging."""
from __future__ import annotations

import base64
import functools
import http.server
import re
import shutil
import threading
import time

import numpy as np
import pytest

from cidstream.config import LiveConfig
from cidstream.errors import InputError
from cidstream.io import open_source
from cidstream.io.camera import LiveSource
from cidstream.io.sources import VideoSource

from .conftest import SAMPLE, cut_clip, frame_count, free_port, serve_mjpeg
from .test_live import until_given_up, wait_for

CLIP_FRAMES = 30
FAST = LiveConfig(backoff_initial_s=0.05, backoff_max_s=0.2, open_timeout_s=3.0, read_timeout_s=3.0)
BOUND_S = 40   # --duration of a run that should end by itself long before: old code ran on until then


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Files of the server's folder; /private/... only with the server's Basic credentials (as cameras
    ask for them); /mjpeg: an endless multipart JPEG stream, as a camera sends."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/mjpeg":
            return self._mjpeg()
        if self.path.startswith("/private/"):
            expected = "Basic " + base64.b64encode(self.server.credentials.encode()).decode()
            if self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="camera"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            self.server.authorized += 1
        return super().do_GET()

    def _mjpeg(self):
        serve_mjpeg(self)


class WebServer:
    def __init__(self, root, credentials: str = "admin:S3cr3t-pw"):
        self.root = root
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                      functools.partial(_Handler, directory=str(root)))
        self.server.credentials, self.server.authorized = credentials, 0
        self.server.stopping = threading.Event()
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def auth_url(self, path: str) -> str:
        """``path`` with the credentials in the URL, the way users write camera URLs."""
        return f"http://{self.server.credentials}@127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        self.server.stopping.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A small H.264 MP4 (CLIP_FRAMES frames, 160 wide) made from the bundled sample."""
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    cut_clip(SAMPLE, path, CLIP_FRAMES, width=160)
    return path


@pytest.fixture
def web(tmp_path, clip):
    root = tmp_path / "www"
    (root / "private").mkdir(parents=True)
    shutil.copy(clip, root / "clip.mp4")
    shutil.copy(clip, root / "private" / "clip.mp4")
    (root / "notes.txt").write_text("this is not a video\n" * 2000)         # FFmpeg reads text as ANSI art
    (root / "noise.mp3").write_bytes(np.random.default_rng(0).bytes(300_000))  # opens as audio, no video
    server = WebServer(root)
    yield server
    server.stop()


# --- a video file over HTTP is a file --------------------------------------------------------------------

def test_an_http_video_file_is_read_like_a_file(web):
    with open_source(web.url + "/clip.mp4") as source:
        assert isinstance(source, VideoSource) and not source.live
        assert source.info.frame_count == CLIP_FRAMES
        frames = list(source)
    assert [f.index for f in frames] == list(range(CLIP_FRAMES))  # every frame once, then the end


@pytest.mark.slow
def test_run_on_an_http_video_file_writes_every_frame_and_ends(web, tmp_path, cli):
    out = tmp_path / "out.mp4"
    code, text = cli("run", web.url + "/clip.mp4", "-o", out, "--model", "dcp", "--no-progress",
                     "--duration", BOUND_S)
    assert code == 0, text
    assert re.search(rf"^frames +{CLIP_FRAMES} of {CLIP_FRAMES}\b", text, re.M), text
    assert "reconnect" not in text and "dropped" not in text and "stopped after --duration" not in text
    assert frame_count(out) == CLIP_FRAMES


def test_a_camera_mjpeg_stream_stays_live(web):
    """Endless, with no length: a camera, read with drop-oldest and reconnects."""
    source = open_source(web.url + "/mjpeg", live_cfg=FAST)
    try:
        assert isinstance(source, LiveSource) and source.live
        source.start()
        wait_for(lambda: source.stats.received >= 3, timeout=20, what="frames from the MJPEG stream")
    finally:
        source.close()


# --- what is not video fails at once --------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("path, reason", [("/notes.txt", "text, not video"), ("/noise.mp3", "no video stream")])
def test_run_on_http_content_that_is_not_video_fails_at_once(web, tmp_path, cli, path, reason):
    code, text = cli("run", web.url + path, "-o", tmp_path / "out.mp4", "--model", "dcp", "--no-progress",
                     "--duration", BOUND_S)
    assert code == 2, text
    assert text.strip().splitlines()[-1] == f"error: cannot read {web.url}{path}: {reason}"
    assert "reconnect" not in text and "Traceback" not in text
    assert not (tmp_path / "out.mp4").exists()


@pytest.mark.parametrize("path, reason", [("/notes.txt", "text, not video"), ("/noise.mp3", "no video stream")])
def test_a_camera_serving_what_is_not_video_fails_at_once(web, path, reason):
    source = until_given_up(LiveSource.from_config(web.url + path, FAST, name="cam"))
    assert source.stats.state == "failed" and source.stats.reconnects == 0
    assert str(source.failure) == f"cannot read camera cam: {reason}"


def test_a_camera_whose_password_is_wrong_fails_at_once_without_showing_it(web):
    """HTTP 401: no reconnect makes a wrong password right (it used to be retried forever)."""
    url = f"http://admin:Wr0ng-pw@127.0.0.1:{web.port}/private/clip.mp4"
    source = until_given_up(LiveSource.from_config(url, FAST, name=None))
    assert source.stats.state == "failed" and source.stats.reconnects == 0
    assert "401" in str(source.failure) or "Unauthorized" in str(source.failure), source.failure
    assert "Wr0ng-pw" not in str(source.failure) and "admin:***@" in str(source.failure)


def test_a_text_file_is_not_dehazed_as_video(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("this is not a video\n" * 2000)
    with pytest.raises(InputError) as info:
        VideoSource(str(notes))
    assert str(info.value) == f"cannot read {notes}: text, not video"


# --- a stream that never sent a frame -------------------------------------------------------------------

@pytest.mark.slow
def test_run_duration_on_a_refused_url_fails(tmp_path, cli):
    url = f"http://127.0.0.1:{free_port()}/x.mp4"
    code, text = cli("run", url, "-o", tmp_path / "out.mp4", "--model", "dcp", "--no-progress", "--duration", 3)
    assert code == 2, text
    assert text.strip().splitlines()[-1] == f"error: no frame from {url} in 3 s (last problem: Connection refused)"
    assert "failed" in text and not (tmp_path / "out.mp4").exists()


def test_a_refused_http_url_is_still_retried_like_a_camera():
    """Cameras reboot: a refused connection says nothing about what the URL serves."""
    source = open_source(f"http://127.0.0.1:{free_port()}/x.mp4", live_cfg=FAST)
    try:
        assert isinstance(source, LiveSource)
        source.start()
        wait_for(lambda: source.stats.reconnects >= 2, timeout=20, what="two reconnects")
        assert source.failure is None
    finally:
        source.close()


@pytest.mark.slow
def test_a_stalled_http_server_does_not_hang_the_open():
    """A server that accepts and never answers: the open gives up after live.read_timeout_s."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(4)
        t0 = time.monotonic()
        source = open_source(f"http://127.0.0.1:{sock.getsockname()[1]}/x.mp4",
                             live_cfg=LiveConfig(read_timeout_s=1.0, open_timeout_s=1.0))
        took = time.monotonic() - t0
        source.close()
    assert isinstance(source, LiveSource) and took < 10, took

