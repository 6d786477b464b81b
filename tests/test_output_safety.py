"""Outputs as issue 21 found them: two runs on one output, a disk that fills up, Ctrl-C while the last
batch is encoded. Real runs on real clips, a real full file system (a small tmpfs) and real signals."""
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import cv2
import pytest

from .conftest import SAMPLE, frame_count, run_cli_subprocess
from .test_run_command import StderrLines, being_written, has_open, start_run, summary_frames, wait_for

pytestmark = pytest.mark.slow  # real CLI runs on real clips, subprocesses and signals: all end to end

DCP = ("--model", "dcp", "--no-progress")
LONG = "heavy_foggy_road_synthetic.mp4"  # 3696 frames: a run on it lasts far longer than a test waits


def lock_file(output: Path) -> Path:
    """Where a run records that it is writing ``output`` (a file or a folder): beside it."""
    return output.with_name(f".{output.name}.lock")


def holds_lock(output: Path, pid: int) -> bool:
    try:
        return lock_file(output).read_text().strip() == str(pid)
    except OSError:
        return False


def stop(proc, timeout: float = 60) -> str:
    """Ctrl-C; the run's stderr once it has exited."""
    proc.send_signal(signal.SIGINT)
    return proc.communicate(timeout=timeout)[1]


# 1. Two runs on one output: the second is refused up front, the first is not disturbed.

def _concurrent_cases(shared_data, tmp_path):
    det = ("--detect", "--detector", shared_data / "weights" / "yolo11n_coco_from_int8.pt")
    return {
        "video file": (tmp_path / "same.mp4", ()),
        "detection folder": (tmp_path / "same_dir", (*det, "--no-video")),
    }


@pytest.mark.parametrize("case", ["video file", "detection folder"])
def test_a_second_run_on_an_output_being_written_is_refused(shared_data, tmp_path, case):
    # before: both runs print "done"; the second one's frames replace the first's
    out, extra = _concurrent_cases(shared_data, tmp_path)[case]
    first = start_run(shared_data / "videos" / LONG, "-o", out, *extra, *DCP)
    try:  # (before, the first run showed itself by its output alone)
        wait_for(lambda: holds_lock(out, first.pid) or out.exists(), 180, "the first run to claim its output")
        second = run_cli_subprocess("run", SAMPLE, "-o", out, *extra, *DCP, "--max-frames", "3")
        # Refused, not waited for: the first run is still writing when the second one has already ended.
        still_writing = first.poll() is None
        assert first.poll() is None, "the first run must still be running"
        err = stop(first, timeout=120)
    finally:
        first.kill()
    assert second.returncode == 2, second.stderr
    lines = second.stderr.strip().splitlines()
    assert lines == [f"error: {out} is being written by another cidstream run (pid {first.pid}): wait for it "
                     "to end or choose another output path"], second.stderr
    assert still_writing, "the second run ended only after the first one"
    assert first.returncode == 130, err
    if case == "video file":
        assert 0 < frame_count(out) == summary_frames(err)
    else:
        report = json.loads((out / "report.json").read_text())
        assert report["input"].endswith(LONG)
    assert not lock_file(out).exists()


def test_the_lock_of_a_killed_run_does_not_block_the_next(shared_data, tmp_path):
    out = tmp_path / "again.mp4"
    first = start_run(shared_data / "videos" / LONG, "-o", out, *DCP)
    try:
        wait_for(lambda: holds_lock(out, first.pid), 180, "the first run to claim its output")
        wait_for(being_written(out, first.pid).exists, 120, "the first frame to be encoded")
    finally:
        first.kill()  # SIGKILL: no cleanup of its own; the kernel drops its lock
        first.wait(30)
    second = run_cli_subprocess("run", SAMPLE, "-o", out, *DCP, "--max-frames", "3")
    assert second.returncode == 0, second.stderr
    assert frame_count(out) == 3
    # Nothing of the killed run is left: neither its lock nor its unfinished video.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.mp4"]


# 2. A disk that fills up: "no space left on ..." (exit 2), whole files kept, partial ones removed.

@pytest.fixture
def small_disk(tmp_path):
    """``small_disk(size, free=None)``: a tmpfs of ``size`` bytes mounted in tmp_path, optionally filled
    until about ``free`` bytes are left; unmounted at the end. Mounting needs root (CI runs as root)."""
    mounts = []

    def make(size: int, free: int | None = None) -> Path:
        disk = tmp_path / f"disk{len(mounts)}"
        disk.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            message = f"cannot mount a small tmpfs to fill a disk for real: {r.stderr.strip() or r.returncode}"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
        mounts.append(disk)
        if free is not None:
            filler = disk / "filler"
            filler.write_bytes(b"\0" * (size - free))
            filler.chmod(0o444)
        return disk

    yield make
    for disk in mounts:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def assert_whole(folder: Path) -> list[str]:
    """Every file under ``folder`` is complete for its kind; no temporary or half-written file is left.
    Returns the names found (relative)."""
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "filler"):
        rel = str(path.relative_to(folder))
        found.append(rel)
        assert not path.name.startswith("."), f"left behind: {rel}"
        assert path.stat().st_size > 0, f"empty: {rel}"
        text = None if path.suffix in (".mp4", ".png", ".jpg") else path.read_text()
        if path.suffix == ".mp4":
            assert frame_count(path) > 0, rel
        elif path.suffix in (".png", ".jpg"):
            assert cv2.imread(str(path)) is not None, f"cut image: {rel}"
        elif path.name.endswith(".mot.txt"):
            assert text.endswith("\n") and all(len(line.split(",")) == 10 for line in text.splitlines()), rel
        elif path.suffix == ".jsonl":
            assert text.endswith("\n") and all(json.loads(line) for line in text.splitlines()), rel
        elif path.suffix == ".json":
            json.loads(text)
        elif path.suffix == ".html":
            assert text.rstrip().endswith("</html>"), rel
    return found


def _full_disk_cases(shared_data):
    det = ("--detect", "--detector", shared_data / "weights" / "yolo11n_coco_from_int8.pt")
    # name: (tmpfs size, bytes left free, output in the disk, extra args, files that must be kept)
    return {
        # before: "internal error: OSError: [Errno 28] No space left on device" (exit 1), a cut out.mp4 left
        "video": (200_000, None, "out.mp4", (), []),
        # before: "cannot write image ... (unwritable location or unsupported format)"
        "image folder": (1_000_000, None, "frames/", ("--max-frames", "20"), []),
        # before: the cut video under its final name, and the report when the disk filled while it was written
        "detection folder": (300_000, None, "det", det, ["det/report.html", "det/report.json"]),
        # before: a cut detections.jsonl and MOT file under their final names, a 0-byte report.json
        "detections only": (1_000_000, 12_000, "det", (*det, "--no-video"), []),
    }


@pytest.mark.parametrize("case", ["video", "image folder", "detection folder", "detections only"])
def test_full_disk_says_so_and_keeps_only_whole_files(cli, shared_data, small_disk, case):
    size, free, target, extra, kept = _full_disk_cases(shared_data)[case]
    disk = small_disk(size, free)
    out = f"{disk}/{target}"
    code, text = cli("run", SAMPLE, "-o", out, *extra, *DCP)
    assert code == 2, text
    assert f"error: no space left on {disk}" in text, text
    assert "internal error" not in text and "Traceback" not in text
    found = assert_whole(disk)
    assert set(kept) <= set(found), found
    if case == "image folder":
        assert 0 < len(found) < 20, found   # the frames written before the disk filled are kept
    if case == "video":
        assert found == []                  # a video cut short by a full disk does not play: removed


# 3. Ctrl-C while the last frames are encoded: still an interrupted run (130), the file finalized.

def cpu_state(pid: int) -> tuple[str, int]:
    """(state letter, CPU ticks) of the main thread of ``pid``."""
    fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return fields[0], int(fields[11]) + int(fields[12])


def main_thread_waits(pid: int, quiet_s: float = 1.5) -> bool:
    """The main thread has slept, using no CPU, for ``quiet_s``. While frames are processed it works (the
    model runs there) and waits at most a few tenths of a second; once every frame is processed it waits
    for the encoder's threads to flush: the end of the run, while its output is being finalized."""
    state, ticks = cpu_state(pid)
    deadline = time.monotonic() + quiet_s
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now_state, now_ticks = cpu_state(pid)
        if now_ticks != ticks or now_state != "S" or state != "S":
            return False
    return True


def test_ctrl_c_while_the_last_batch_is_encoded_exits_130(shared_data, tmp_path):
    # before: "still finalizing ...", then "done" and exit 0
    out, src = tmp_path / "last.mp4", shared_data / "videos" / "highway2_720p.mp4"
    # x264 'placebo' looks 60 frames ahead: 50 frames are all encoded when the encoder is flushed, on
    # closing, by its own threads (output.threads), for seconds; the model is far quicker, and every
    # frame fits in the writer's queue, so nothing holds the main thread back before that.
    proc = start_run(src, "-o", out, *DCP, "--max-frames", "50", "--set", "output.preset=placebo",
                     "--set", "output.threads=4", "--set", "output.queue_size=1000")
    err = StderrLines(proc)
    try:
        wait_for(lambda: has_open(proc.pid, src), 180, "the input to be opened")
        wait_for(lambda: main_thread_waits(proc.pid), 180, "the run to wait for its encoder")
        proc.send_signal(signal.SIGINT)
        proc.wait(180)
    finally:
        proc.kill()
    err = err.text()
    assert "still finalizing" in err, err  # the Ctrl-C did land while the output was being finalized
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert frame_count(out) == summary_frames(err) == 50
