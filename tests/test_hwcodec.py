"""Codec choice: NVENC only where it really opens, libx264 otherwise; decode paths are checked settings."""
from fractions import Fraction

import av
import numpy as np
import pytest

from cidstream.config import load_config
from cidstream.errors import ConfigError
from cidstream.frames import Frame, StreamInfo
from cidstream.sinks.hwcodec import SOFTWARE_ENCODER, encoder_opens, encoder_options, resolve_encoder
from cidstream.sinks.media import EncoderSettings, VideoSink


def test_auto_encoder_is_software_on_cpu_and_a_working_one_on_cuda():
    assert resolve_encoder("auto", "cpu") == SOFTWARE_ENCODER
    chosen = resolve_encoder("auto", "cuda")
    assert chosen in ("h264_nvenc", SOFTWARE_ENCODER)
    assert encoder_opens(chosen)  # never a listed-but-unusable encoder
    assert resolve_encoder("libx265", "cuda") == "libx265"
    assert encoder_options("h264_nvenc", 23, "veryfast")["cq"] == "23"


def test_auto_codec_writes_a_playable_video(tmp_path):
    info = StreamInfo(source="t", kind="images", width=64, height=48, fps=Fraction(25), frame_count=3)
    sink = VideoSink(tmp_path / "a.mp4", info, EncoderSettings(codec=resolve_encoder("auto", "cpu")))
    for i in range(3):
        img = np.full((48, 64, 3), 40 * i, np.uint8)
        sink.write(Frame(img, i, pts=i), img)
    sink.close()
    with av.open(str(tmp_path / "a.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 3
        assert c.streams.video[0].codec_context.name == "h264"


def test_decode_and_encoder_thread_settings_are_checked():
    with pytest.raises(ConfigError, match="input.decode must be auto, rgb24, yuv420p or nvdec"):
        load_config(None, [{"input": {"decode": "vaapi"}}])
    with pytest.raises(ConfigError, match="output.threads"):
        load_config(None, [{"output": {"threads": -1}}])


def test_encoder_takes_i420_planes_and_its_thread_count(tmp_path):
    """The CUDA path hands the encoder 4:2:0 planes made on the device; the video must equal the RGB route."""
    import torch

    from cidstream.frames import BatchResult, FrameBatch
    from cidstream.ops.color import rgb_to_yuv420

    info = StreamInfo(source="t", kind="images", width=64, height=48, fps=Fraction(25), frame_count=3)
    yy, xx = np.mgrid[0:48, 0:64]
    imgs = np.stack([np.stack([xx * 4, yy * 5, (xx + yy + 40 * i) % 256], -1) for i in range(3)]).astype(np.uint8)
    frames = [Frame(im, i, pts=i) for i, im in enumerate(imgs)]
    out = {}
    for name, i420 in (("rgb", None), ("i420", rgb_to_yuv420(torch.from_numpy(imgs)).numpy())):
        sink = VideoSink(tmp_path / f"{name}.mp4", info, EncoderSettings(codec="libx264", crf=0, threads=2, i420=True))
        assert sink.needs == frozenset({"i420"})  # what a CUDA run asks for
        sink.write_result(BatchResult(FrameBatch(imgs, frames), imgs, i420_frames=i420))
        assert sink.stream.codec_context.thread_count == 2
        sink.close()
        with av.open(str(tmp_path / f"{name}.mp4")) as c:
            out[name] = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)]).astype(int)
    assert out["rgb"].shape == out["i420"].shape == (3, 48, 64, 3)
    assert np.abs(out["rgb"] - out["i420"]).mean() < 2.0
