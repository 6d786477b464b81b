"""`cidstream run` as an audit found it: nothing of the user's lost, bad input told as it is, runs that
can be watched, stopped and timed. Real clips and images throughout; a fake only where noted."""
import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

from cidstream.config import Config

from .conftest import SAMPLE, frame_count, run_cli_subprocess

DCP = ("--model", "dcp", "--no-progress")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def real_images(shared_data, folder: Path, count: int, suffix: str = ".png", width: int = 160) -> list[Path]:
    """``count`` DAWN fog photos, scaled down, written into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, src in enumerate(sorted((shared_data / "dawn_fog" / "JPEGImages").glob("*.jpg"))[:count]):
        img = cv2.imread(str(src))
        img = cv2.resize(img, (width, round(img.shape[0] * width / img.shape[1])))
        path = folder / f"img{i + 1}{suffix}"
        cv2.imwrite(str(path), img)
        out.append(path)
    return out


def start_run(*args, cwd=None):
    env = dict(os.environ, COLUMNS="400")
    return subprocess.Popen([sys.executable, "-m", "cidstream", "run", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)


def interrupt(proc, timeout: float, times: int = 1, gap: float = 0.3) -> str:
    """Ctrl-C (``times`` of them, ``gap`` s apart); the run's stderr once it has exited."""
    for k in range(times):
        if k:
            time.sleep(gap)  # the scenario: a user pressing Ctrl-C again shortly after (while the run finalizes)
        proc.send_signal(signal.SIGINT)
    return proc.communicate(timeout=timeout)[1]


def timed_interrupt(proc, err: "StderrLines") -> tuple[float, str]:
    """One Ctrl-C: seconds until the run exited, and its stderr."""
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.wait(60)
    return time.monotonic() - sent, err.text()


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


class StderrLines:
    """Collects a process's stderr lines in a thread, so a test can wait for one."""

    def __init__(self, proc):
        import threading

        self.lines: list[str] = []
        self._thread = threading.Thread(target=lambda: self.lines.extend(iter(proc.stderr.readline, "")),
                                        daemon=True)
        self._thread.start()

    def text(self, timeout: float = 60) -> str:
        self._thread.join(timeout)
        return "".join(self.lines)


def has_open(pid: int, path: Path) -> bool:
    """Whether process ``pid`` has ``path`` open (Linux /proc). The fd links name the file with every
    symlink resolved (../shared may be one), so ``path`` is resolved too."""
    fds = Path(f"/proc/{pid}/fd")
    target = str(Path(path).resolve())
    try:
        return any(os.path.realpath(os.readlink(fd)) == target for fd in fds.iterdir())
    except OSError:
        return False


def being_written(out: Path, pid: int) -> Path:
    """Where run ``pid`` writes the video ``out`` until it is finalized (io/atomic.partial_path); like
    ``out`` before it, it appears with the first encoded frame."""
    return out.with_name(f".{out.name}.{pid}.tmp{out.suffix}")


def summary_frames(text: str) -> int:
    return int(re.search(r"frames\s+(\d+)", text).group(1))


def summary_seconds_per_frame(text: str) -> float:
    """Seconds per frame end to end, as the run measured itself (its summary's "N fps end to end")."""
    return 1.0 / float(re.search(r"([\d.]+) fps end to end", text).group(1))


# 1. Nothing of the user's is overwritten: outputs are compared with inputs by file identity.

def _overwrite_cases(tmp_path, shared_data):
    d = tmp_path / "d"
    a, b = real_images(shared_data, d, 2)
    hard = tmp_path / "hard.png"
    os.link(a, hard)
    link = tmp_path / "link.png"
    link.symlink_to(a)
    dd = tmp_path / "dd"
    (dd / "dehazed").mkdir(parents=True)
    video = dd / "dehazed.mp4"
    video.write_bytes(SAMPLE.read_bytes())
    real_images(shared_data, dd / "dehazed", 1)
    det = ("--detect", "--detector", shared_data / "weights" / "yolo11n_coco_from_int8.pt")
    return {
        "glob into its own folder": ([f"{d}/*.png", "-o", f"{d}/"], [a, b], "would overwrite the input"),
        "image into its own folder": ([a, "-o", d], [a], "would overwrite the input"),
        "folder into itself": ([d, "-o", f"{d}/."], [a, b], "is the input itself"),
        "hard link to the input": ([a, "-o", hard], [a], "is the input itself"),
        "symlink to the input": ([a, "-o", link], [a], "is the input itself"),
        "relative path": (["d/img1.png", "-o", "./d/../d/img1.png"], [a], "is the input itself"),
        "detect: video named like the dehazed output": ([video, *det, "-o", dd], [video], "would overwrite the input"),
        "detect: images in the dehazed folder": ([f"{dd}/dehazed/*.png", *det, "-o", dd], [dd / "dehazed" / "img1.png"],
                                                 "would overwrite the input"),
    }


CASES = ["glob into its own folder", "image into its own folder", "folder into itself", "hard link to the input",
         "symlink to the input", "relative path", "detect: video named like the dehazed output",
         "detect: images in the dehazed folder"]


@pytest.mark.parametrize("case", CASES)
def test_output_never_overwrites_an_input(cli, shared_data, tmp_path, monkeypatch, case):
    monkeypatch.chdir(tmp_path)
    args, inputs, message = _overwrite_cases(tmp_path, shared_data)[case]
    before = {p: digest(p) for p in inputs}
    code, text = cli("run", *args, *DCP)
    assert code == 2, text
    assert message in text and "Traceback" not in text
    assert {p: digest(p) for p in inputs} == before


# 2. One unreadable image does not stop a folder run.

@pytest.mark.parametrize("bad_at", [0, 1])
def test_corrupt_image_is_skipped_listed_and_the_rest_written(cli, shared_data, tmp_path, bad_at):
    src = tmp_path / "in"
    good = real_images(shared_data, src, 3, suffix=".jpg")
    bad = good[bad_at].with_suffix(".png")
    good[bad_at].unlink()
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 30)  # a PNG header and nothing after it
    good = [p for p in good if p.exists()]
    out = tmp_path / "out"
    code, text = cli("run", src, "-o", out, *DCP)
    assert code == 2, text
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in good)
    for p in good:
        assert cv2.imread(str(out / p.name)).shape == cv2.imread(str(p)).shape
    assert "skipped" in text and str(bad) in text
    assert "Traceback" not in text


# 3. A single image path for an input of several frames is refused before any work.

def test_single_image_output_for_several_frames_is_refused_up_front(cli, shared_data, tmp_path):
    out = tmp_path / "out.jpg"
    code, text = cli("run", SAMPLE, "-o", out, *DCP)
    assert code == 2, text
    assert "is a single image" in text and "100 frames" in text
    assert not out.exists()
    folder = tmp_path / "two"
    real_images(shared_data, folder, 2)
    code, text = cli("run", folder, "-o", tmp_path / "one.png", *DCP)
    assert code == 2 and "is a single image" in text and not (tmp_path / "one.png").exists()
    code, text = cli("run", SAMPLE, "-o", out, "--max-frames", "1", *DCP)  # one frame: one image
    assert code == 0, text
    assert cv2.imread(str(out)).shape == (360, 640, 3)


# 4. Interrupted before the first frame: no output is claimed.

@pytest.mark.slow
def test_interrupt_before_any_frame_claims_no_output(shared_data, tmp_path):
    out = tmp_path / "never.mp4"
    src = shared_data / "videos" / "highway_720p.mp4"
    # 720p in 64-frame batches: the first batch takes seconds after the input is opened (the video
    # file itself only appears with the first encoded frame).
    proc = start_run(src, "-o", out, "--batch", "64", "--set", "input.queue_size=64", "--no-progress")
    try:
        wait_for(lambda: has_open(proc.pid, src), 120, "the input to be opened")
        time.sleep(0.5)  # the scenario: Ctrl-C a moment into the first (seconds-long) batch, not as it opens
        err = interrupt(proc, timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert summary_frames(err) == 0, err
    assert "nothing was written" in err and "nothing written" in err
    assert str(out) not in err
    assert not out.exists()


# 5. An input that cannot be read is reported as what it is.

def _input_cases(tmp_path):
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    (tmp_path / "afile").write_text("x")
    dangling = tmp_path / "dangling.mp4"
    dangling.symlink_to(tmp_path / "gone.mp4")
    loop_a, loop_b = tmp_path / "loop_a.mp4", tmp_path / "loop_b.mp4"
    loop_a.symlink_to(loop_b)
    loop_b.symlink_to(loop_a)
    return [
        (fifo, "is a named pipe (FIFO), not a regular file"),
        ("/dev/null", "is a character device, not a regular file"),
        (dangling, f"is a symbolic link to {tmp_path / 'gone.mp4'}, which does not exist"),
        (loop_a, "too many levels of symbolic links"),
        (tmp_path / "afile" / "x.mp4", f"{tmp_path / 'afile'} is a file, not a folder"),
        (tmp_path / ("a" * 300 + ".mp4"), "the path is too long"),
        ("/proc/self/status", "cannot open /proc/self/status as video"),  # announces 0 bytes, has content
        (tmp_path / "missing.mp4", f"input not found: {tmp_path / 'missing.mp4'}"),
    ]


@pytest.mark.parametrize("index", range(8))
def test_unreadable_input_is_reported_as_what_it_is(cli, tmp_path, index):
    spec, message = _input_cases(tmp_path)[index]
    code, text = cli("run", spec, "-o", tmp_path / "out.mp4", *DCP)
    assert code == 2, text
    assert message in text, text
    assert "empty (0 bytes)" not in text and "Traceback" not in text and "internal error" not in text


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files without read permission")
def test_unreadable_file_says_permission_denied(cli, tmp_path):
    f = tmp_path / "locked.mp4"
    f.write_bytes(SAMPLE.read_bytes())
    f.chmod(0)
    code, text = cli("run", f, "-o", tmp_path / "out.mp4", *DCP)
    assert code == 2 and f"permission denied: {f}" in text


def test_output_on_a_file_system_without_files_says_so(cli, tmp_path):
    code, text = cli("run", SAMPLE, "-o", "/proc/x.mp4", *DCP)
    assert code == 2, text
    assert "does not allow creating files" in text and "No such file or directory" not in text


# 6. The device message names the device asked for.

def test_missing_gpu_message_names_the_requested_device(cli):
    import torch

    code, text = cli("run", SAMPLE, "--device", "cuda:7", *DCP)
    assert code == 2, text
    assert "'cuda:7'" in text
    if torch.cuda.is_available():
        assert f"has {torch.cuda.device_count()} CUDA GPU(s)" in text
    else:
        assert "no CUDA GPU is available" in text


# 7. Progress lines when stderr is not a terminal.

@pytest.mark.slow
def test_progress_lines_when_not_a_terminal(tmp_path):
    proc = run_cli_subprocess("run", SAMPLE, "-o", tmp_path / "a.mp4", "--model", "dcp", "--max-frames", "8")
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^dehazing: \d+/8 frames \(\d+%\), [\d.]+ fps", proc.stderr, re.M), proc.stderr
    quiet = run_cli_subprocess("run", SAMPLE, "-o", tmp_path / "b.mp4", "--model", "dcp", "--max-frames", "8",
                               "--no-progress")
    assert quiet.returncode == 0 and "dehazing:" not in quiet.stderr


@pytest.mark.slow
def test_progress_lines_come_periodically(cli, tmp_path, monkeypatch):
    import cidstream.progress

    monkeypatch.setattr(cidstream.progress, "LINE_EVERY_S", 0.0)  # every batch instead of every 5 s
    code, text = cli("run", SAMPLE, "-o", tmp_path / "a.mp4", "--model", "dcp", "--max-frames", "12", "--batch", "4")
    assert code == 0, text
    assert re.findall(r"dehazing: (\d+)/12 frames", text) == ["4", "8", "12"]


# 8. Help texts name the defaults the config really has.

@pytest.mark.slow
def test_help_names_the_real_defaults():
    cfg = Config()
    help_text = run_cli_subprocess("run", "--help").stdout
    first_example = help_text.split("examples:")[1].strip().splitlines()[0]
    assert first_example.endswith(f"({cfg.model.name})"), first_example
    text = " ".join(help_text.split())
    assert f"(default: {cfg.model.name})" in text
    assert "(dcp)" not in text
    for value in (cfg.engine.device, cfg.engine.precision, cfg.engine.batch, f"{cfg.detect.conf:g}",
                  ",".join(cfg.detect.classes)):
        assert f"(default: {value}" in text, value


# 9. An output suffix that is neither video nor image is refused.

def test_unknown_output_suffix_is_refused(cli, tmp_path):
    out = tmp_path / "out.xyz"
    code, text = cli("run", SAMPLE, "-o", out, *DCP)
    assert code == 2, text
    for accepted in (".mp4", ".mkv", ".png", ".jpg", "ending with '/'"):
        assert accepted in text
    assert not out.exists()
    folder = tmp_path / "frames.v2"  # a dot in a folder name: say it is a folder with '/'
    code, text = cli("run", SAMPLE, "-o", f"{folder}/", "--max-frames", "2", *DCP)
    assert code == 0, text
    assert sorted(p.name for p in folder.iterdir()) == ["frame_000000.png", "frame_000001.png"]


# 10. --duration stops any run and finalizes its output.

@pytest.mark.slow
def test_duration_stops_a_file_run_and_finalizes(cli, shared_data, tmp_path):
    src = shared_data / "videos" / "heavy_foggy_road_synthetic.mp4"
    # Baseline: what a run of this file costs apart from its frames (open, model, one frame, finalize).
    start = time.monotonic()
    code, text = cli("run", src, "-o", tmp_path / "one_frame.mp4", "--max-frames", "1", *DCP)
    assert code == 0, text
    one_frame_run = time.monotonic() - start
    out = tmp_path / "first_seconds.mp4"
    start = time.monotonic()
    code, text = cli("run", src, "-o", out, "--duration", "2", *DCP)
    assert code == 0, text
    # Stopped about 2 s in, not at the end of the file (3696 frames): well within 3x (baseline + 2 s).
    assert time.monotonic() - start < 3 * (one_frame_run + 2)
    assert "stopped after --duration 2 s" in text
    assert 0 < frame_count(out) == summary_frames(text) < 3696


@pytest.mark.slow
def test_duration_stops_a_stream(rtsp_server, tmp_path):
    server = rtsp_server("--testsrc", "--size", "320x240", "--fps", "25")
    out = tmp_path / "cam.mp4"
    # A stream never ends by itself: a run that ignored --duration would hit the timeout (and fail the test).
    proc = run_cli_subprocess("run", server.url, "-o", out, "--duration", "3", *DCP, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "stopped after --duration 3 s" in proc.stderr, proc.stderr
    assert frame_count(out) == summary_frames(proc.stderr) > 0


# 11. Ctrl-C stops quickly and keeps every processed frame in a playable file.

@pytest.mark.slow
def test_ctrl_c_mid_run_exits_quickly_with_a_playable_output(shared_data, tmp_path):
    out = tmp_path / "interrupted.mp4"
    proc = start_run(shared_data / "videos" / "heavy_foggy_road_synthetic.mp4", "-o", out)
    err = StderrLines(proc)
    try:
        wait_for(being_written(out, proc.pid).exists, 180, "the first frame to be encoded")
        time.sleep(2)  # the scenario: the run works for a while, then Ctrl-C mid-run
        took, err = timed_interrupt(proc, err)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    # Quickly: sooner than working through the decoded frames queued ahead (input.queue_size) would take at
    # the speed this run measured itself; never more than the 4 s a quiet machine needs.
    bound = max(4.0, Config().input.queue_size * summary_seconds_per_frame(err))
    assert took < bound, f"exit took {took:.1f} s (bound {bound:.1f} s)"
    assert 0 < frame_count(out) == summary_frames(err) < 3696


@pytest.mark.slow
def test_ctrl_c_while_the_stream_stalls_exits_quickly(rtsp_server, tmp_path):
    """A camera that stops sending (its server process stopped with SIGSTOP: a real stall). The baseline is
    the same run stopped while the camera still streams, measured first."""
    server = rtsp_server("--testsrc", "--size", "320x240", "--fps", "25")

    def interrupted_run(out: Path, stall: bool) -> float:
        proc = start_run(server.url, "-o", out, "--model", "dcp")
        err = StderrLines(proc)
        try:
            wait_for(being_written(out, proc.pid).exists, 120, "the first frame to be encoded")
            time.sleep(1)  # the scenario: the run streams for a second
            if stall:
                os.kill(server.proc.pid, signal.SIGSTOP)
            time.sleep(1.5)  # the frames in flight are processed; then the decoder waits for a camera gone quiet
            took, err = timed_interrupt(proc, err)
        finally:
            if stall:
                os.kill(server.proc.pid, signal.SIGCONT)
            proc.kill()
        assert proc.returncode == 130, err
        assert 0 < frame_count(out) == summary_frames(err)
        return took

    streaming = interrupted_run(tmp_path / "streaming.mp4", stall=False)
    took = interrupted_run(tmp_path / "cam.mp4", stall=True)
    # The stalled camera does not hold the exit up: at most twice a streaming run's exit (measured above), and
    # never more than the 4 s a quiet machine needs.
    bound = max(4.0, 2 * streaming)
    assert took < bound, f"exit took {took:.1f} s (a streaming run's exit {streaming:.1f} s)"


@pytest.mark.slow
def test_second_ctrl_c_while_finalizing_keeps_the_output_playable(shared_data, tmp_path):
    """x264 'veryslow' at 720p takes seconds to flush its lookahead: the second Ctrl-C lands there."""
    out = tmp_path / "twice.mp4"
    proc = start_run(shared_data / "videos" / "highway_720p.mp4", "-o", out, "--model", "dcp",
                     "--set", "output.preset=veryslow", "--no-progress")
    try:
        wait_for(being_written(out, proc.pid).exists, 180, "the first frame to be encoded")
        time.sleep(3)  # the scenario: seconds of frames in the encoder's lookahead for the flush to work through
        err = interrupt(proc, timeout=120, times=2)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    decoded = frame_count(out)  # raises on a file left without its index
    assert decoded > 0
    if re.search(r"frames\s+\d+", err):
        assert decoded == summary_frames(err)


def test_writer_backlog_is_bounded_in_frames(highway_frames):
    """Processed frames waiting for the encoder are written even after Ctrl-C, so their number bounds
    how long stopping takes. A slow encoder cannot be produced reliably on a shared CPU: the inner sink
    here is a fake that takes 20 ms per batch."""
    from cidstream.frames import BatchResult, Frame, FrameBatch
    from cidstream.sinks.base import Sink
    from cidstream.sinks.media import ThreadedSink

    class SlowSink(Sink):
        def write_result(self, result):
            time.sleep(0.02)  # the fake encoder's work (see the docstring), not a wait for an event
            self.written += len(result)

    inner = SlowSink()
    sink = ThreadedSink(inner, maxsize=8)
    images = highway_frames[:4]
    worst = 0
    for k in range(12):
        frames = [Frame(img, 4 * k + i) for i, img in enumerate(images)]
        sink.write_result(BatchResult(FrameBatch(images, frames), images))
        worst = max(worst, 4 * (k + 1) - inner.written)
    sink.close()
    assert inner.written == 48
    assert worst <= 8 + 4  # at most maxsize frames queued, plus the batch being written
