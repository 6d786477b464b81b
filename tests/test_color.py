"""4:2:0 decode paths: the RGB they give matches FFmpeg's own conversion (swscale), on real video.

The yuv420p path runs everywhere; the NVDEC path only where CUDA and FFmpeg's CUDA device exist
(the GPU machine), and must then give exactly what the software path gives."""
from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from cidstream.frames import FrameBatch
from cidstream.engine.device import cuda_available
from cidstream.io.decode import FrameDecoder, nvdec_available, resolve_decode
from cidstream.io.sources import VideoSource
from cidstream.ops.color import ColorSpec, rgb_to_yuv420, yuv420_to_rgb

VIDEOS = ("highway_720p.mp4", "foggy_road_real.mp4", "traffic_cam_640x360.mp4")  # untagged/601 and BT.709
ON_GPU = pytest.mark.skipif(not (cuda_available() and nvdec_available()), reason="needs CUDA and FFmpeg's CUDA device (GPU machine)")


def _rgb_and_planes(path, count=6):
    """swscale's RGB of each frame, and the decoder's 4:2:0 frames."""
    with av.open(str(path)) as c:
        frames = [f for _, f in zip(range(count), c.decode(video=0))]
    return [f.to_ndarray(format="rgb24") for f in frames], frames


@pytest.mark.parametrize("name", VIDEOS)
def test_yuv420_to_rgb_matches_ffmpeg_within_two_levels(shared_data, name):
    refs, frames = _rgb_and_planes(shared_data / "videos" / name)
    for ref, vf in zip(refs, frames):
        planes = [torch.from_dlpack(p)[None] for p in vf.planes]
        ours = yuv420_to_rgb(*planes, ColorSpec.of_frame(vf))[0].numpy()
        diff = np.abs(ours.astype(int) - ref.astype(int))
        assert diff.max() <= 2, (name, diff.max())
        assert diff.mean() < 1.0


def _encode(path, rgb: np.ndarray, pix_fmt: str, color_range=None):
    h, w = rgb.shape[:2]
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        for i in range(3):
            vf = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=pix_fmt)
            vf.pts, vf.time_base = i, Fraction(1, 25)
            for p in s.encode(vf):
                out.mux(p)
        for p in s.encode():
            out.mux(p)


@pytest.mark.parametrize("pix_fmt,size", [("yuvj420p", (360, 640)), ("yuv420p", (359, 641))])
def test_full_range_and_odd_sizes_match_ffmpeg(tmp_path, pix_fmt, size):
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    # Smooth colours: at odd sizes swscale interpolates chroma, which only differs at sharp colour edges.
    rgb = np.stack([(xx * 255 // w), (yy * 255 // h), ((xx + yy) * 255 // (w + h))], -1).astype(np.uint8)
    if h % 2 == 0:  # through a real encode, so the stream carries the range tag
        path = tmp_path / "clip.mp4"
        _encode(path, rgb, pix_fmt)
        refs, frames = _rgb_and_planes(path, 1)
        vf = frames[0]
    else:  # 4:2:0 of an odd size, made by FFmpeg (H.264 cannot hold it)
        vf = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=pix_fmt)
        refs = [vf.to_ndarray(format="rgb24")]
    spec = ColorSpec.of_frame(vf)
    assert spec.full_range == (pix_fmt == "yuvj420p")
    ours = yuv420_to_rgb(*[torch.from_dlpack(p)[None] for p in vf.planes], spec)[0].numpy()
    assert ours.shape == refs[0].shape
    diff = np.abs(ours.astype(int) - refs[0].astype(int))
    # At odd sizes swscale leaves its fast path and interpolates chroma: one level more apart there.
    assert diff.max() <= (2 if h % 2 == 0 else 3) and diff.mean() < 1.0


def test_video_source_yuv_path_batches_like_the_rgb_path(shared_data):
    path = str(shared_data / "videos" / "traffic_cam_640x360.mp4")
    with VideoSource(path, max_frames=8, decode="rgb24") as a, VideoSource(path, max_frames=8, decode="yuv420p") as b:
        rgb, yuv = list(a), list(b)
    assert a.decode_path.startswith("software, rgb24") and b.decode_path == "software, yuv420p planes"
    assert [f.pts for f in rgb] == [f.pts for f in yuv] and all(f.image is None for f in yuv)
    batch = FrameBatch.of(yuv)
    dev = batch.to_device(torch.device("cpu")).numpy()
    assert dev.shape == (8, 360, 640, 3)
    assert np.abs(dev.astype(int) - np.stack([f.image for f in rgb]).astype(int)).max() <= 2
    assert np.array_equal(batch.host_rgb(), dev)


def test_rgb_to_yuv420_round_trip_and_ffmpeg_luma(shared_data):
    refs, _ = _rgb_and_planes(shared_data / "videos" / "highway_720p.mp4", 2)
    rgb = torch.from_numpy(np.stack(refs))
    i420 = rgb_to_yuv420(rgb)
    h, w = rgb.shape[1:3]
    assert i420.shape == (2, h * 3 // 2, w)
    sw = av.VideoFrame.from_ndarray(refs[0], format="rgb24").reformat(format="yuv420p").to_ndarray()
    assert np.abs(i420[0, :h].numpy().astype(int) - sw[:h].astype(int)).max() <= 1  # luma as FFmpeg makes it
    y = i420[:, :h]
    u = i420[:, h:h + h // 4].reshape(2, h // 2, w // 2)
    v = i420[:, h + h // 4:].reshape(2, h // 2, w // 2)
    back = yuv420_to_rgb(y, u, v).numpy().astype(int)
    assert np.abs(back - refs[:2][0].astype(int)[None]).mean() < 3.0  # 4:2:0 loses chroma detail only
    with pytest.raises(ValueError, match="even"):
        rgb_to_yuv420(rgb[:, :-1])


def test_decode_auto_on_cpu_and_bad_modes():
    assert resolve_decode("auto", torch.device("cpu")) in ("rgb24", "yuv420p")
    from cidstream.errors import ConfigError

    with pytest.raises(ConfigError):
        resolve_decode("vaapi", torch.device("cpu"))
    with pytest.raises(ConfigError, match="CUDA"):
        resolve_decode("nvdec", torch.device("cpu"))


@ON_GPU
@pytest.mark.parametrize("name", ["highway_720p.mp4", "foggy_road_real.mp4"])
def test_nvdec_frames_stay_on_gpu_and_equal_software_decoding(shared_data, name):
    """H.264 decoding is bit-exact, so NVDEC planes converted on the GPU equal the software path's."""
    path = str(shared_data / "videos" / name)
    dev = torch.device("cuda")
    with VideoSource(path, max_frames=64, decode="nvdec", device=dev) as hw, \
            VideoSource(path, max_frames=64, decode="yuv420p") as sw:
        hw_frames, sw_frames = list(hw), list(sw)
    assert hw.decode_path == FrameDecoder("nvdec").path
    assert all(f.planes.on_device for f in hw_frames)
    a = FrameBatch.of(hw_frames).to_device(dev).cpu().numpy()
    b = FrameBatch.of(sw_frames).to_device(torch.device("cpu")).numpy()
    assert np.array_equal(a, b)
