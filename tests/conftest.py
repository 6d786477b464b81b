import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "hazy_traffic.mp4"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The data folder the code under test reads, cidstream.config.data_root() ($CIDSTREAM_DATA, else
    ../shared/data beside the checkout); CI has it, so there a missing folder is a failure, not a skip."""
    from cidstream.config import data_root

    root = data_root()
    if not (root / "videos").is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"shared data not found at {root} (CI must provide it: set $CIDSTREAM_DATA, or place it at "
                        "../shared/data beside the checkout)")
        pytest.skip(f"shared data not found at {root} (set $CIDSTREAM_DATA to the data folder)")
    return root


@pytest.fixture(scope="session", autouse=True)
def _own_cache(tmp_path_factory):
    """Detectors the tests train are kept in a cache of the test session's, never in the user's."""
    os.environ["CIDSTREAM_CACHE"] = str(tmp_path_factory.mktemp("cidstream-cache"))


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch, tmp_path):
    # Rich wraps at the terminal width; keep messages on one line so tests can match them.
    monkeypatch.setenv("COLUMNS", "400")
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "yolo-config"))


@pytest.fixture
def cli(capsys):
    """Run the CLI in-process; returns (exit code, everything printed)."""
    from cidstream.cli import main

    def run(*args):
        code = main([str(a) for a in args])
        out = capsys.readouterr()
        return code, out.out + out.err

    return run


def faststart_copy(src, dst) -> None:
    """Remux the video stream of ``src`` with the index (moov atom) first: cut short, the file still opens."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)


def wait_until(predicate, timeout: float = 30.0, what: str = "the condition", interval: float = 0.01):
    """Poll ``predicate`` until it returns something true and return that; fail the test after ``timeout``
    seconds. The deadline is generous on purpose: it stops a test that would hang, it is not a speed check."""
    import time

    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
    return value


def run_cli_subprocess(*args, timeout=300, **kw):
    env = dict(os.environ, COLUMNS="400")
    return subprocess.run([sys.executable, "-m", "cidstream", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env, **kw)


def textured(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A clean-looking RGB float image in [0, 1] with edges and texture at several scales."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = 0.5 + 0.25 * np.sin(xx / 7.0) * np.cos(yy / 11.0)
    img = np.stack([base, 0.6 * base + 0.2, 1.0 - 0.8 * base], axis=-1)
    img[(xx // 16 + yy // 16) % 2 == 0] *= 0.35  # dark patches: the dark-channel prior holds there
    img += rng.normal(0, 0.02, img.shape)
    return np.clip(img, 0, 1).astype(np.float32)


@pytest.fixture(scope="session")
def yolo_weights(shared_data) -> Path:
    return shared_data / "weights" / "yolo11n_coco_from_int8.pt"


@pytest.fixture(scope="session")
def detector(yolo_weights, tmp_path_factory):
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ.setdefault("YOLO_CONFIG_DIR", str(tmp_path_factory.mktemp("yolo-config")))
    from cidstream.detect import Detector

    return Detector(str(yolo_weights))


@pytest.fixture(scope="session")
def highway_frames(shared_data):
    import av

    with av.open(str(shared_data / "videos" / "highway_720p.mp4")) as c:
        return np.stack([f.to_ndarray(format="rgb24") for _, f in zip(range(6), c.decode(video=0))])


def cut_clip(src: Path, dst: Path, frames: int, width: int = 320) -> None:
    """The first ``frames`` frames of ``src``, scaled to ``width``, as a fresh H.264 file."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        s = inp.streams.video[0]
        h = round(s.codec_context.height * width / s.codec_context.width / 2) * 2
        o = out.add_stream("libx264", rate=25)
        o.width, o.height, o.pix_fmt = width, h, "yuv420p"
        for i, f in enumerate(inp.decode(s)):
            if i >= frames:
                break
            nf = av.VideoFrame.from_ndarray(f.to_ndarray(format="rgb24", width=width, height=h), format="rgb24")
            nf.pts = i
            out.mux(o.encode(nf))
        out.mux(o.encode())


def frame_count(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


SYSTEM_PYTHON = "/usr/bin/python3"   # has python3-gi; the venv does not
RTSP_SERVER = REPO / "tests" / "rtsp_server.py"


def serve_mjpeg(handler) -> None:
    """Answer an HTTP request (a BaseHTTPRequestHandler) with an endless multipart JPEG stream of grey 160x90
    frames, 25 a second, as an MJPEG camera sends, until its server's ``stopping`` event is set."""
    import time

    import cv2

    handler.send_response(200)
    handler.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
    handler.end_headers()
    jpg = cv2.imencode(".jpg", np.full((90, 160, 3), 128, np.uint8))[1].tobytes()
    try:
        while not handler.server.stopping.is_set():
            handler.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n"
                                % (len(jpg), jpg))
            time.sleep(0.04)
    except OSError:  # the client hung up
        pass


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RtspServer:
    """A real GStreamer RTSP server in its own process (tests/rtsp_server.py)."""

    def __init__(self, port: int, args: list[str], mount: str = "/cam"):
        self.port, self.args, self.mount = port, args, mount
        self.url = f"rtsp://127.0.0.1:{port}{mount}"
        self.proc = None

    def start(self) -> "RtspServer":
        import time

        self.proc = subprocess.Popen([SYSTEM_PYTHON, str(RTSP_SERVER), "--port", str(self.port), "--mount",
                                      self.mount, *self.args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("READY"):
            err = self.proc.stderr.read() if self.proc.poll() is not None else ""
            raise RuntimeError(f"RTSP server did not start: {line!r} {err[-500:]}")
        self.started_at = time.time()
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="session")
def gst_rtsp():
    """The GStreamer RTSP server packages; CI installs them (.ci/run), so there their absence fails."""
    probe = ("import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); "
             "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
             "assert all(Gst.ElementFactory.find(e) for e in ('x264enc', 'rtph264pay', 'clockoverlay'))")
    ok = Path(SYSTEM_PYTHON).exists() and subprocess.run([SYSTEM_PYTHON, "-c", probe],
                                                          capture_output=True).returncode == 0
    if not ok:
        message = ("GStreamer RTSP server not available (apt packages gir1.2-gst-rtsp-server-1.0 "
                   "gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-x python3-gi)")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return True


@pytest.fixture
def rtsp_server(gst_rtsp):
    """``rtsp_server(*args, port=None)`` starts a server (e.g. "--testsrc" or "--file", path); all stop at the end."""
    servers = []

    def start(*args, port: int | None = None) -> RtspServer:
        server = RtspServer(port or free_port(), [str(a) for a in args]).start()
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.stop()
