"""`cidstream export`: ONNX/TorchScript graphs that take and return uint8 frames, checked against the Dehazer.

Each export costs seconds of tracing and conversion, so the files are made once per module and
shared: cid-lite --dynamic (ONNX, through the CLI), dcp fixed 640x360, cid at 48x32, cid-lite
TorchScript at 96x64.
"""
import json
import warnings

import av
import cv2
import numpy as np
import pytest
import torch

from cidstream.engine import Dehazer
from cidstream.export import export_model
from cidstream.models import load_model

from .conftest import cut_clip, frame_count

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def real_frames(shared_data):
    """Four decoded 640x360 frames of the real traffic camera, (4, 360, 640, 3) uint8 RGB."""
    with av.open(str(shared_data / "videos" / "traffic_cam_640x360.mp4")) as c:
        return np.stack([f.to_ndarray(format="rgb24") for _, f in zip(range(4), c.decode(video=0))])


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    return tmp_path_factory.mktemp("exports")


@pytest.fixture(scope="module")
def cid_lite_onnx(exports):
    """cid-lite with its bundled weights, fp32, any frame size (--dynamic), through the CLI."""
    from cidstream.cli import main

    path = exports / "cid_lite.onnx"
    assert main(["export", "--model", "cid-lite", "--dynamic", "-o", str(path)]) == 0
    return path


@pytest.fixture(scope="module")
def dcp_onnx(exports):
    """dcp, the default fixed size (640x360)."""
    path = exports / "dcp.onnx"
    meta = export_model("dcp", path, verify=False)
    assert meta["input"]["shape"] == ["N", 360, 640, 3]
    return path


def run_onnx(path, frames: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.type, out.name, out.type) == ("frames", "tensor(uint8)", "dehazed", "tensor(uint8)")
    return session.run(None, {"frames": frames})[0]


def max_diff(a: np.ndarray, b: np.ndarray) -> int:
    assert a.shape == b.shape and a.dtype == b.dtype == np.uint8
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


@pytest.mark.slow
def test_cid_lite_onnx_matches_dehazer_at_several_sizes(cid_lite_onnx, real_frames):
    dehazer = Dehazer("cid-lite", device="cpu", precision="fp32")
    crop = np.ascontiguousarray(real_frames[:2, 40:311, 100:581])        # 481x271: padded to 496x272 inside
    portrait = np.ascontiguousarray(real_frames[:1, :, 200:400])          # 200x360
    for frames in (real_frames, crop, portrait):
        assert max_diff(run_onnx(cid_lite_onnx, frames), dehazer(frames)) <= 1, frames.shape


@pytest.mark.slow
def test_metadata_is_in_the_file(cid_lite_onnx):
    props = {p.key: p.value for p in onnx.load(str(cid_lite_onnx)).metadata_props}
    meta = json.loads(props["cidstream"])
    assert meta["model"] == "cid-lite" and meta["arch"] == "cid-lite" and meta["weights"] == "cid_lite.pt"
    from cidstream.models import read_weights
    from cidstream.models.registry import bundled_weights

    phases = read_weights(bundled_weights("cid-lite")).metadata["training"]["phases"]
    assert phases == ["pretrain"]        # round 5 ships phase 1 (docs/training.md); the graph carries what the file says
    assert meta["weights_metadata"]["training"]["phases"] == phases
    assert meta["normalization"]["input"] == "unit" and meta["normalization"]["output"] == "clamp"
    assert meta["input"] == {"name": "frames", "dtype": "uint8", "layout": "NHWC", "channels": "RGB",
                             "shape": ["N", "H", "W", 3]}
    assert meta["export"]["dynamic"] is True and meta["export"]["precision"] == "fp32"
    assert meta["export"]["opset"] == 18 and meta["cidstream_version"]
    assert meta["min_side"] == 16 and meta["max_short_side"] == 719
    assert props["model"] == "cid-lite" and json.loads(props["training_phases"]) == phases


@pytest.mark.slow
def test_run_with_an_onnx_model_writes_a_playable_video(cid_lite_onnx, shared_data, tmp_path, cli):
    out = tmp_path / "clear.mp4"
    code, text = cli("run", shared_data / "videos" / "traffic_cam_640x360.mp4", "-o", out, "--model", cid_lite_onnx,
                     "--max-frames", 6, "--no-progress", "--device", "cpu")
    assert code == 0, text
    assert "cid-lite (cid_lite.onnx)" in text
    assert frame_count(out) == 6
    with av.open(str(out)) as c:
        frame = next(c.decode(video=0))
        assert (frame.width, frame.height) == (640, 360)


@pytest.mark.slow
def test_dcp_onnx_matches_dehazer(dcp_onnx, real_frames):
    assert max_diff(run_onnx(dcp_onnx, real_frames), Dehazer("dcp", device="cpu")(real_frames)) <= 1


def test_dcp_is_not_exported_dynamic(tmp_path, cli):
    code, text = cli("export", "--model", "dcp", "--dynamic", "-o", tmp_path / "d.onnx")
    assert code == 2 and "export each frame size" in text and not (tmp_path / "d.onnx").exists()


@pytest.mark.slow
def test_fixed_size_graph_refuses_other_sizes(dcp_onnx, shared_data, tmp_path, cli):
    clip = tmp_path / "small.mp4"
    cut_clip(shared_data / "videos" / "traffic_cam_640x360.mp4", clip, frames=3, width=320)
    code, text = cli("run", clip, "-o", tmp_path / "out.mp4", "--model", dcp_onnx, "--no-progress", "--device", "cpu")
    assert code == 2
    assert "exported for 640x360 frames, the input is 320x180" in text


@pytest.mark.slow
def test_cid_exports_with_random_weights(exports, real_frames):
    # cid has no bundled weights: random ones (same seed for the export and the reference) at 48x32.
    small = np.stack([cv2.resize(f, (48, 32), interpolation=cv2.INTER_AREA) for f in real_frames[:2]])
    torch.manual_seed(0)
    path = exports / "cid.onnx"
    meta = export_model("cid", path, height=32, width=48, random_init=True, verify=False)
    assert meta["weights"].startswith("random") and meta["normalization"]["input"] == "symmetric"
    torch.manual_seed(0)
    ref = Dehazer(load_model("cid", random_init=True), device="cpu", precision="fp32")(small)
    assert max_diff(run_onnx(path, small), ref) <= 1


@pytest.mark.slow
def test_torchscript_round_trip(exports, real_frames, cli):
    path = exports / "cid_lite.pt"       # Triton's name for TorchScript models
    code, text = cli("export", "--model", "cid-lite", "--format", "torchscript", "-o", path, "--height", 64,
                     "--width", 96)
    assert code == 0, text
    assert "max abs difference in levels: 96x64: " in text
    frames = np.ascontiguousarray(real_frames[:2, 100:164, 200:296])
    ref = Dehazer("cid-lite", device="cpu", precision="fp32")(frames)
    extra = {"cidstream.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)   # torch 2.14: TorchScript is deprecated, still loads
        module = torch.jit.load(str(path), _extra_files=extra)
    assert json.loads(extra["cidstream.json"])["export"]["format"] == "torchscript"
    with torch.inference_mode():
        assert max_diff(module(torch.from_numpy(frames)).numpy(), ref) <= 1
    via_registry = Dehazer(str(path), device="cpu")                      # what cidstream run --model model.pt does
    assert via_registry.exported and max_diff(via_registry(frames), ref) <= 1


@pytest.mark.parametrize("args, message", [
    (["--model", "nonsense"], "unknown model 'nonsense'"),
    (["--model", "dcp", "--dynamic", "--height", "360", "--width", "640"], "--dynamic"),
    (["--model", "dcp", "--height", "360"], "both --height and --width"),
    (["--model", "dcp", "--format", "torchscript", "--dynamic"], "--dynamic needs --format onnx"),
    (["--model", "dcp", "--dynamic"], "dcp cannot be exported with --dynamic"),
])
def test_user_errors_exit_2_with_one_line(tmp_path, cli, args, message):
    code, text = cli("export", *args, "-o", tmp_path / "m.onnx" if "torchscript" not in args else tmp_path / "m.ts")
    assert code == 2
    lines = text.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], text


def test_output_errors(tmp_path, cli):
    folder = tmp_path / "folder.onnx"
    folder.mkdir()
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    for output, message in ((folder, "is an existing directory"), (blocker / "m.onnx", "cannot create the folder"),
                            (tmp_path / "m.ts", "ends in .onnx")):
        code, text = cli("export", "--model", "dcp", "--format", "onnx", "-o", output)
        lines = text.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], text
