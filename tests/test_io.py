"""Files in, files out: counts, timing, names, odd pixel formats, and partial inputs."""
import shutil

import av
import cv2
import numpy as np
import pytest

from cidstream.engine import Dehazer
from cidstream.pipeline import dehaze_stream
from cidstream.io import open_source

from .conftest import SAMPLE, faststart_copy


def probe(path):
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames = [f for f in c.decode(v)]
        return {"frames": len(frames), "rate": v.average_rate, "time_base": v.time_base,
                "size": (v.codec_context.width, v.codec_context.height), "pix_fmt": v.codec_context.pix_fmt,
                "pts": [f.pts for f in frames], "audio": len(c.streams.audio)}


@pytest.mark.slow
def test_real_foggy_video_keeps_frames_rate_size_and_audio(cli, shared_data, tmp_path):
    src = shared_data / "videos" / "foggy_road_real.mp4"
    out = tmp_path / "out.mp4"
    code, text = cli("run", src, "-o", out, "--no-progress")
    assert code == 0, text
    a, b = probe(src), probe(out)
    assert b["frames"] == a["frames"] == 225
    assert (b["rate"], b["time_base"], b["size"]) == (a["rate"], a["time_base"], a["size"])
    assert b["pts"] == a["pts"]
    assert b["audio"] == 1
    with av.open(str(src)) as c1, av.open(str(out)) as c2:
        assert c2.streams.audio[0].frames == c1.streams.audio[0].frames
    assert "225 of 225" in text


@pytest.mark.slow
def test_image_folder_in_gives_same_names_out(cli, shared_data, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for p in sorted((shared_data / "dawn_fog" / "JPEGImages").glob("*.jpg"))[:2]:
        shutil.copy(p, src / p.name)
    rng = np.random.default_rng(0)
    cv2.imwrite(str(src / "grey.png"), rng.integers(0, 256, (40, 50), dtype=np.uint8))
    cv2.imwrite(str(src / "deep16.png"), rng.integers(0, 65536, (30, 41, 3), dtype=np.uint16))
    rgba = rng.integers(0, 256, (33, 20, 4), dtype=np.uint8)
    cv2.imwrite(str(src / "alpha.png"), rgba)
    cv2.imwrite(str(src / "odd.jpg"), rng.integers(0, 256, (27, 39, 3), dtype=np.uint8))
    cv2.imwrite(str(src / "tiny.png"), rng.integers(0, 256, (2, 3, 3), dtype=np.uint8))
    out = tmp_path / "out"
    code, text = cli("run", src, "-o", out, "--no-progress")
    assert code == 0, text
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in src.iterdir())
    for p in src.iterdir():
        a = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        b = cv2.imread(str(out / p.name), cv2.IMREAD_UNCHANGED)
        assert a.shape[:2] == b.shape[:2], p.name
        assert b.dtype == np.uint8
    np.testing.assert_array_equal(cv2.imread(str(out / "alpha.png"), cv2.IMREAD_UNCHANGED)[:, :, 3], rgba[:, :, 3])


def test_glob_and_single_image(cli, tmp_path):
    rng = np.random.default_rng(1)
    for i in (1, 2, 10):
        cv2.imwrite(str(tmp_path / f"f{i}.png"), rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    code, text = cli("run", str(tmp_path / "f*.png"), "-o", tmp_path / "g", "--no-progress")
    assert code == 0, text
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == ["f1.png", "f10.png", "f2.png"]
    code, text = cli("run", tmp_path / "f2.png", "-o", tmp_path / "one.jpg", "--no-progress")
    assert code == 0, text
    assert cv2.imread(str(tmp_path / "one.jpg")).shape == (24, 32, 3)


def test_images_to_video_odd_size_uses_444(cli, tmp_path):
    rng = np.random.default_rng(2)
    src = tmp_path / "frames"
    src.mkdir()
    for i in range(6):
        cv2.imwrite(str(src / f"{i:03d}.png"), rng.integers(0, 256, (31, 45, 3), dtype=np.uint8))
    out = tmp_path / "odd.mp4"
    code, text = cli("run", src, "-o", out, "--no-progress", "--set", "input.image_fps=12")
    assert code == 0, text
    info = probe(out)
    assert info["frames"] == 6 and info["size"] == (45, 31) and info["pix_fmt"] == "yuv444p"
    assert info["rate"] == 12


def test_images_of_different_sizes_cannot_share_a_video(cli, tmp_path):
    src = tmp_path / "mixed"
    src.mkdir()
    cv2.imwrite(str(src / "a.png"), np.zeros((20, 20, 3), np.uint8))
    cv2.imwrite(str(src / "b.png"), np.zeros((30, 20, 3), np.uint8))
    code, text = cli("run", src, "-o", tmp_path / "mixed.mp4", "--no-progress")
    assert code == 2
    assert "write images of different sizes to a folder" in text
    assert "Traceback" not in text


@pytest.mark.slow
def test_truncated_video_keeps_the_frames_before_the_cut(cli, tmp_path):
    # moov atom first (faststart), then cut: the file opens but ends early.
    whole = tmp_path / "whole.mp4"
    faststart_copy(SAMPLE, whole)
    data = whole.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    out = tmp_path / "cut_out.mp4"
    code, text = cli("run", cut, "-o", out, "--no-progress")
    assert code == 2
    assert "ended early" in text and "truncated" in text
    decoded = probe(out)["frames"]
    assert 10 < decoded < 100
    assert f"{decoded} of 100" in text  # the summary counts what was written


def test_python_api_streams_batches():
    dehazer = Dehazer("dcp", device="cpu")
    with open_source(str(SAMPLE), max_frames=10) as src:
        got = [(fb.indices, out.shape) for fb, out in dehaze_stream(src, dehazer, batch=4)]
    assert [i for i, _ in got] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert got[0][1] == (4, 360, 640, 3)


@pytest.mark.slow
def test_variable_frame_rate_timestamps_survive(cli, shared_data, tmp_path):
    src = shared_data / "videos" / "traffic_cam_640x360.mp4"  # VFR, starts at 1.86 s, 1/90000 time base
    out = tmp_path / "vfr.mp4"
    code, text = cli("run", src, "-o", out, "--max-frames", "60", "--no-progress")
    assert code == 0, text
    a, b = probe(src), probe(out)
    assert b["frames"] == 60 and b["time_base"] == a["time_base"]
    assert b["pts"] == a["pts"][:60]
