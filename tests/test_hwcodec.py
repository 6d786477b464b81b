"""Hardware codec choice: NVENC/NVDEC only where they really work, CPU codecs otherwise."""
from fractions import Fraction

import av
import numpy as np
import pytest

from cidstream.config import load_config
from cidstream.errors import ConfigError
from cidstream.frames import Frame, StreamInfo
from cidstream.io.hwcodec import SOFTWARE_ENCODER, decode_hwaccel, encoder_opens, encoder_options, resolve_encoder
from cidstream.io.sinks import VideoSink


def test_auto_encoder_is_software_on_cpu_and_a_working_one_on_cuda():
    assert resolve_encoder("auto", "cpu") == SOFTWARE_ENCODER
    chosen = resolve_encoder("auto", "cuda")
    assert chosen in ("h264_nvenc", SOFTWARE_ENCODER)
    assert encoder_opens(chosen)  # never a listed-but-unusable encoder
    assert resolve_encoder("libx265", "cuda") == "libx265"
    assert encoder_options("h264_nvenc", 23, "veryfast")["cq"] == "23"
    assert decode_hwaccel("cpu") is None


def test_auto_codec_writes_a_playable_video(tmp_path):
    info = StreamInfo(source="t", kind="images", width=64, height=48, fps=Fraction(25), frame_count=3)
    sink = VideoSink(tmp_path / "a.mp4", info, codec="auto")
    for i in range(3):
        img = np.full((48, 64, 3), 40 * i, np.uint8)
        sink.write(Frame(img, i, pts=i), img)
    sink.close()
    with av.open(str(tmp_path / "a.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 3
        assert c.streams.video[0].codec_context.name == "h264"


def test_hwaccel_setting_is_checked():
    with pytest.raises(ConfigError, match="input.hwaccel must be auto or none"):
        load_config(None, [{"input": {"hwaccel": "nvdec"}}])
