"""Issue 22: encoder settings reach every video sink; a live source in `cidstream run` is buffered once."""
import re
import signal
import time

import av
import pytest

from .test_live import cameras_yaml, start_live, stats, wait_for

pytestmark = pytest.mark.slow  # every test streams from a real RTSP server


def x264_option(path, name: str) -> str | None:
    """The value of ``name`` in the options libx264 writes into its stream (an SEI user-data string
    in the first packet: "... threads=3 lookahead_threads=1 ...")."""
    with av.open(str(path)) as container:
        for packet in container.demux(container.streams.video[0]):
            data = bytes(packet)
            if data:
                m = re.search(rb"[ :]" + name.encode() + rb"=(\w+)", data)
                return m.group(1).decode() if m else None
    return None


def test_live_segments_are_encoded_with_output_threads(rtsp_server, tmp_path):
    server = rtsp_server("--testsrc", "--size", "320x180")
    cfg = cameras_yaml(tmp_path, [{"name": "cam", "url": server.url}], live={"status_every_s": 0.5})
    root = tmp_path / "live"
    proc = start_live([cfg, "--no-status", "--set", "output.threads=1"], tmp_path / "log.txt")
    try:
        wait_for(lambda: stats(root)["cam"]["processed"] >= 10, what="frames written")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0, (tmp_path / "log.txt").read_text()
    finally:
        proc.kill()
    files = sorted((root / "cam").glob("*.mp4"))
    assert files
    # libx264 on its own picks several threads on a multi-core machine: only a thread count
    # handed to the encoder makes this 1.
    assert x264_option(files[0], "threads") == "1"


def test_run_on_a_stream_buffers_no_more_than_the_live_queue(rtsp_server, tmp_path, cli, monkeypatch):
    """A slow model behind a 25 fps camera: frames wait in the live source's drop-oldest queue
    (live.queue_size) only, not in a second deep reader queue (input.queue_size) as well."""
    from cidstream.pipeline import DehazeStage

    step = 0.12  # seconds per frame in the model: ~8 fps against the camera's 25
    original = DehazeStage.__call__

    def slow_dehaze(self, fb):  # a fake slow model: the only way to make the queue fill on any machine
        time.sleep(step * len(fb))
        return original(self, fb)

    monkeypatch.setattr(DehazeStage, "__call__", slow_dehaze)
    server = rtsp_server("--testsrc", "--size", "320x180", "--fps", "25")
    queue_size, batch = 4, 1
    code, out = cli("run", server.url, "-o", tmp_path / "out.mp4", "--model", "dcp", "--device", "cpu",
                    "--batch", batch, "--duration", 9, "--no-progress", "--set", f"live.queue_size={queue_size}",
                    "--set", "input.queue_size=32")
    assert code == 0, out
    m = re.search(r"p50 (\d+) ms, p95 (\d+) ms", out)
    assert m, out
    p95 = int(m.group(2)) / 1000.0
    # queued frames + the batch being processed (+1 for a frame taken while the model runs), plus slack
    bound = (queue_size + batch + 1) * step + 0.4
    assert p95 <= bound, f"p95 latency {p95:.2f} s > {bound:.2f} s: frames waited in more than the live queue\n{out}"
    assert re.search(r"dropped\s+\d+ frames", out), out  # drop-oldest still drops, and says so
