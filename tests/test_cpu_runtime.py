"""cid-lite's network as a graph in OpenVINO or onnxruntime on a CPU (engine.cpu_runtime): the same dehazed
frames as torch within a level, temporal smoothing kept, made once and cached, and any failure leaves torch."""
from __future__ import annotations

import os

import av
import numpy as np
import pytest
import torch

from cidstream.config import load_config
from cidstream.cpu_runtime import graphs_dir, resolve_cpu_runtime
from cidstream.engine import Dehazer
from cidstream.engine.dehazer import DehazerSpec
from cidstream.errors import ConfigError

SIZE = (180, 320)  # height, width: small keeps each export short; the graph is made per working size


@pytest.fixture(scope="module")
def fog_frames(shared_data) -> np.ndarray:
    """12 real fog frames, resized: a clip the dehazer strongly changes."""
    import cv2

    with av.open(str(shared_data / "videos" / "foggy_road_real.mp4")) as c:
        return np.stack([cv2.resize(f.to_ndarray(format="rgb24"), SIZE[::-1], interpolation=cv2.INTER_AREA)
                         for _, f in zip(range(12), c.decode(video=0))])


def dehaze_video(dehazer: Dehazer, frames: np.ndarray) -> np.ndarray:
    """As a run does: batches of 4 of one stream, so temporal smoothing carries over between batches."""
    return np.concatenate([dehazer.process(torch.from_numpy(frames[i:i + 4]), "cam").numpy()
                           for i in range(0, len(frames), 4)])


def test_resolve_picks_a_graph_only_on_a_cpu_at_fp32():
    assert resolve_cpu_runtime("auto", "cpu", order=("openvino", "onnxruntime")) == "openvino"
    assert resolve_cpu_runtime("auto", "cpu", order=("onnxruntime", "openvino")) == "onnxruntime"
    assert resolve_cpu_runtime("onnxruntime", "cpu") == "onnxruntime"
    assert resolve_cpu_runtime("openvino", torch.device("cuda")) == "torch"   # a GPU runs torch as configured
    assert resolve_cpu_runtime("auto", "cpu", "bf16") == "torch"
    assert resolve_cpu_runtime("torch", "cpu") == "torch"
    with pytest.raises(ConfigError, match="unknown CPU runtime"):
        resolve_cpu_runtime("tensorrt", "cpu")


def test_config_and_flag_reach_the_dehazer_spec():
    from argparse import Namespace

    from cidstream.cli import build_parser
    from cidstream.cli_config import make_config
    from cidstream.engine.coefficient_graph import FASTEST

    cfg = load_config(None)
    assert cfg.engine.cpu_runtime == "auto" and cfg.detect.cpu_runtime == "auto"
    assert DehazerSpec.from_config(cfg).cpu_runtime == "auto"
    assert Dehazer.from_config(load_config(None, [{"engine": {"device": "cpu", "precision": "fp32"}}]),
                               model="cid-lite").runtime == FASTEST[0]
    args = build_parser().parse_args(["run", "in.mp4", "--cpu-runtime", "openvino", "--detector", "x.pt"])
    cfg = make_config(args)
    assert (cfg.engine.cpu_runtime, cfg.detect.cpu_runtime, cfg.detect.detector) == ("openvino", "openvino", "x.pt")
    cfg = load_config(None, [{"engine": {"cpu_runtime": "torch"}}])
    assert Dehazer.from_config(cfg, model="cid-lite").runtime == "torch"
    with pytest.raises(ConfigError):
        load_config(None, [{"engine": {"cpu_runtime": "tensorrt"}}])


@pytest.mark.slow  # exports graphs: make test runs it, make test-fast does not
@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_graph_matches_torch_within_a_level_with_temporal_smoothing(runtime, fog_frames, capsys):
    reference = dehaze_video(Dehazer("cid-lite", device="cpu", precision="fp32"), fog_frames)
    dehazer = Dehazer("cid-lite", device="cpu", precision="fp32", cpu_runtime=runtime)
    out = dehaze_video(dehazer, fog_frames)
    assert dehazer.runtime == runtime and dehazer.coefficients is not None
    diff = np.abs(out.astype(np.int16) - reference)
    assert diff.max() <= 1, diff.max()
    assert np.abs(out.astype(np.int16) - fog_frames).mean() > 5   # it did dehaze: not a pass-through
    # frames after the first batch were smoothed with the earlier ones, as torch does: the graph's maps go
    # through the same temporal state (an exported whole graph would differ here by many levels)
    alone = dehaze_video(Dehazer("cid-lite", device="cpu", precision="fp32", cpu_runtime=runtime), fog_frames[4:8])
    assert np.abs(alone.astype(np.int16) - out[4:8]).max() > 1
    assert "warning" not in capsys.readouterr().err


@pytest.mark.slow  # exports graphs: make test runs it, make test-fast does not
def test_graph_is_made_once_and_reused(fog_frames, capsys):
    Dehazer("cid-lite", device="cpu", precision="fp32", cpu_runtime="onnxruntime").process(
        torch.from_numpy(fog_frames[:2]))
    made = [p for p in graphs_dir().glob("cid-lite-*.onnx")]
    assert made, "no graph in the cache"
    stamps = {p: p.stat().st_mtime_ns for p in made}
    capsys.readouterr()
    Dehazer("cid-lite", device="cpu", precision="fp32", cpu_runtime="onnxruntime").process(
        torch.from_numpy(fog_frames[:2]))
    assert "preparing cid-lite" not in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in made} == stamps


@pytest.mark.slow  # exports graphs: make test runs it, make test-fast does not
def test_a_corrupt_cached_graph_is_made_again(fog_frames, capsys):
    dehazer = Dehazer("cid-lite", device="cpu", precision="fp32", cpu_runtime="onnxruntime")
    dehazer.process(torch.from_numpy(fog_frames[:2]))
    (key,) = dehazer.coefficients._runs                   # the one graph these frames used (others may be cached)
    path = dehazer.coefficients.path(key)
    path.write_bytes(b"not an onnx file")
    capsys.readouterr()
    again = Dehazer("cid-lite", device="cpu", precision="fp32", cpu_runtime="onnxruntime")
    out = again.process(torch.from_numpy(fog_frames[:4])).numpy()
    err = capsys.readouterr().err
    assert "preparing cid-lite" in err and "warning" not in err
    assert path.stat().st_size > 100_000   # a whole graph again
    ref = Dehazer("cid-lite", device="cpu", precision="fp32").process(torch.from_numpy(fog_frames[:4])).numpy()
    assert np.abs(out.astype(np.int16) - ref).max() <= 1


@pytest.mark.slow  # exports graphs: make test runs it, make test-fast does not
def test_a_graph_that_cannot_be_made_leaves_torch_with_one_warning(fog_frames, tmp_path, monkeypatch, capsys):
    # a real fault: the cache folder's place is taken by a file, so the graph cannot be written (as root too)
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("CIDSTREAM_CACHE", str(blocker))
    dehazer = Dehazer("cid-lite", device="cpu", precision="fp32", cpu_runtime="onnxruntime")
    out = dehaze_video(dehazer, fog_frames[:8])
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "runs in torch" in err and "engine.cpu_runtime torch" in err
    reference = dehaze_video(Dehazer("cid-lite", device="cpu", precision="fp32"), fog_frames[:8])
    assert np.array_equal(out, reference)
    assert os.path.isfile(blocker)


@pytest.mark.slow  # exports graphs: make test runs it, make test-fast does not
def test_one_graph_serves_sizes_that_are_multiples_of_16_and_others_get_their_own(fog_frames, capsys):
    import cv2

    dehazer = Dehazer("cid-lite", device="cpu", precision="fp32", cpu_runtime="onnxruntime")
    torch_only = Dehazer("cid-lite", device="cpu", precision="fp32")
    sizes = [(176, 320), (64, 96), (100, 150), (1440, 960)]   # the last is pooled by 2 to 720x480: free
    for h, w in sizes:
        frames = np.stack([cv2.resize(f, (w, h)) for f in fog_frames[:2]])
        out = dehazer.process(torch.from_numpy(frames)).numpy()
        ref = torch_only.process(torch.from_numpy(frames)).numpy()
        assert np.abs(out.astype(np.int16) - ref).max() <= 1, (h, w)
    err = capsys.readouterr().err
    assert "warning" not in err
    made = sorted(p.name.rsplit("-", 1)[1] for p in graphs_dir().glob("cid-lite-*.onnx"))
    assert "any.onnx" in made and "160x112.onnx" not in made   # 100x150 pads to 112x160, a multiple of 16
    assert set(dehazer.coefficients._runs) == {"any"}
    frames = np.stack([cv2.resize(f, (1300, 740)) for f in fog_frames[:2]])   # pads to 752x1312, pooled by 2
    out = dehazer.process(torch.from_numpy(frames)).numpy()
    ref = torch_only.process(torch.from_numpy(frames)).numpy()
    assert np.abs(out.astype(np.int16) - ref).max() <= 1
    assert (376, 656) in dehazer.coefficients._runs and "656x376 working frames" in capsys.readouterr().err
