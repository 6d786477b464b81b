"""The detector on a CPU through a graph runtime (onnxruntime, OpenVINO): the same boxes as PyTorch, the graph made
once and cached, and PyTorch kept with one warning where the graph cannot be made or loaded."""
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from cidstream.config import Config
from cidstream.cpu_runtime import graphs_dir, resolve_cpu_runtime
from cidstream.detect.cpu_graph import FASTEST
from cidstream.detect.detector import Detector, DetectorSpec
from cidstream.detect.detectors import Detectors, DetectorsSpec
from cidstream.errors import ConfigError
from cidstream.evaluation.clear_check import reference_ap

from .conftest import wait_until

GRAPHS = ("onnxruntime", "openvino")
MIN_AP = 99.5


@contextlib.contextmanager
def captured_fds():
    """What the process writes to file descriptors 1 and 2 (Python's sys.stdout / sys.stderr, which pytest swaps,
    and C libraries) while the block runs."""
    files = {fd: tempfile.TemporaryFile() for fd in (1, 2)}
    saved = {fd: os.dup(fd) for fd in files}
    out = {}
    try:
        for fd, f in files.items():
            os.dup2(f.fileno(), fd)
        with contextlib.redirect_stdout(sys.__stdout__), contextlib.redirect_stderr(sys.__stderr__):
            try:
                yield out
            finally:
                sys.__stdout__.flush()
                sys.__stderr__.flush()
    finally:
        for fd, f in files.items():
            os.dup2(saved[fd], fd)
            os.close(saved[fd])
            f.seek(0)
            out["stdout" if fd == 1 else "stderr"] = f.read().decode(errors="replace")
            f.close()


def _entries(folder: Path) -> dict:
    """Name -> (inode, mtime) of everything in a cache folder."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.iterdir()} if folder.is_dir() else {}


@pytest.fixture(scope="module")
def weights(shared_data) -> str:
    return str(shared_data / "weights" / "yolo11n_coco_from_int8.pt")


@pytest.fixture(scope="module")
def frames(shared_data) -> np.ndarray:
    """8 real 1280x720 RGB frames of a clear highway, 10 frames apart."""
    out = []
    with av.open(str(shared_data / "videos" / "highway_720p.mp4")) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % 10 == 0:
                out.append(frame.to_ndarray(format="rgb24"))
            if len(out) == 8:
                break
    return np.stack(out)


@pytest.fixture(scope="module")
def module_cache(tmp_path_factory):
    """A graph cache of this module's own, so the first Detector of each runtime really exports."""
    before = os.environ.get("CIDSTREAM_CACHE")
    os.environ["CIDSTREAM_CACHE"] = str(tmp_path_factory.mktemp("graph-cache"))
    yield graphs_dir()
    if before is None:
        os.environ.pop("CIDSTREAM_CACHE", None)
    else:
        os.environ["CIDSTREAM_CACHE"] = before


@pytest.fixture(scope="module")
def torch_boxes(weights, frames):
    det = Detector(weights, conf=0.001)
    return {"numpy": det(frames), "tensor": det(torch.from_numpy(frames))}


@pytest.fixture(scope="module")
def graph_detectors(weights, module_cache):
    """One detector per graph runtime, each made from an empty cache (what each printed is kept)."""
    made = {}
    for runtime in GRAPHS:
        with captured_fds() as said:
            det = Detector(weights, conf=0.001, runtime=runtime)
        made[runtime] = {"detector": det, **said}
    return made


@pytest.mark.slow  # exports graphs: make test runs it, make test-fast does not
@pytest.mark.parametrize("runtime", GRAPHS)
def test_graph_finds_the_boxes_torch_finds(runtime, graph_detectors, torch_boxes, frames):
    det = graph_detectors[runtime]["detector"]
    assert det.runtime == runtime
    threads = torch.get_num_threads()
    numpy_found = det(frames)  # Ultralytics' own letterbox
    tensor_found = det(torch.from_numpy(frames))  # ours, then a float tensor
    assert torch.get_num_threads() == threads  # the rest of the run keeps its threads
    assert sum(len(d) for d in numpy_found) > 50  # a busy highway: plenty to compare
    assert reference_ap(torch_boxes["numpy"], numpy_found) >= MIN_AP
    assert reference_ap(torch_boxes["tensor"], tensor_found) >= MIN_AP
    # the confident boxes themselves agree within 2 pixels
    for ref, got in zip(torch_boxes["tensor"], tensor_found):
        keep_ref, keep_got = ref.confidence >= 0.5, got.confidence >= 0.5
        if keep_ref.sum() == keep_got.sum() and keep_ref.any():
            a = ref.xyxy[keep_ref][np.argsort(-ref.confidence[keep_ref])]
            b = got.xyxy[keep_got][np.argsort(-got.confidence[keep_got])]
            assert np.abs(a - b).max() < 2.0


@pytest.mark.slow  # exports graphs: make test runs it, make test-fast does not
@pytest.mark.parametrize("runtime", GRAPHS)
def test_first_use_exports_once_quietly(runtime, graph_detectors):
    said = graph_detectors[runtime]
    assert said["stdout"] == ""
    lines = said["stderr"].strip().splitlines()
    assert len(lines) == 1 and "preparing the detector" in lines[0] and runtime in lines[0], said["stderr"]


@pytest.mark.slow  # exports graphs: make test runs it, make test-fast does not
def test_graph_is_cached_per_runtime(weights, graph_detectors, module_cache, capfd):
    entries = _entries(module_cache)
    graphs = {n for n in entries if not n.startswith(".")}
    assert len(graphs) == 2  # one per runtime
    assert sum(n.endswith(".onnx") for n in graphs) == 1 and sum(n.endswith("_openvino_model") for n in graphs) == 1
    assert graphs == set(entries)  # nothing half-made left behind
    for runtime in GRAPHS:
        again = Detector(weights, conf=0.001, runtime=runtime)
        assert again.runtime == runtime
    out = capfd.readouterr()
    assert "preparing" not in out.err and out.out == ""
    assert _entries(module_cache) == entries  # the same files, not made again


@pytest.mark.slow  # exports graphs: make test runs it, make test-fast does not
def test_exported_model_file_runs_as_given(weights, graph_detectors, module_cache, tmp_path, frames, torch_boxes):
    onnx = next(module_cache.glob("*.onnx"))
    given = Path(shutil.copy(onnx, tmp_path / "detector.onnx"))
    entries = _entries(module_cache)
    det = Detector(str(given), conf=0.001, runtime="openvino")
    assert det.runtime == "onnxruntime"  # the file the user gave, not a graph made from it
    assert _entries(module_cache) == entries
    assert reference_ap(torch_boxes["numpy"][:2], det(frames[:2])) >= MIN_AP


def test_torch_stays_torch(weights, monkeypatch, tmp_path):
    monkeypatch.setenv("CIDSTREAM_CACHE", str(tmp_path / "cache"))
    assert Detector(weights).runtime == "torch"  # the Python API's default
    assert Detector(weights, runtime="torch").runtime == "torch"
    assert Detector(weights, runtime="auto", device="cuda").runtime == "torch"  # graphs are for CPUs only
    assert not (tmp_path / "cache").exists()  # no graph made
    with pytest.raises(ConfigError, match="unknown CPU runtime"):
        Detector(weights, runtime="tensorrt")


@pytest.mark.slow  # exports graphs: make test runs it, make test-fast does not
def test_config_builds_every_detector_on_the_configured_runtime(weights, graph_detectors):
    cfg = Config()
    assert cfg.detect.cpu_runtime == "auto"
    assert DetectorSpec.from_config(cfg.detect).runtime == "auto"
    cfg.detect.detector, cfg.detect.fog_detector, cfg.detect.detector_b = weights, weights, weights
    spec = DetectorsSpec.from_config(cfg.detect)
    assert hash(spec) == hash(DetectorsSpec.from_config(cfg.detect))
    dets = Detectors.from_spec(spec, torch.device("cpu"))
    expected = resolve_cpu_runtime("auto", "cpu", order=FASTEST)
    assert expected in GRAPHS
    assert (dets.base.runtime, dets.fog.runtime, dets.second.runtime) == (expected,) * 3
    cfg.detect.cpu_runtime = "torch"
    dets = Detectors.from_config(cfg.detect, torch.device("cpu"))
    assert (dets.base.runtime, dets.fog.runtime, dets.second.runtime) == ("torch",) * 3


@pytest.mark.slow  # exports graphs: make test runs it, make test-fast does not
def test_a_graph_that_cannot_be_made_leaves_torch_with_one_warning(weights, frames, torch_boxes, tmp_path,
                                                                   monkeypatch, capfd):
    cache = tmp_path / "cache"
    cache.mkdir()
    # a real fault that also stops root (CI may run as root, where permission bits do not): a file where the
    # graphs' folder must be
    (cache / "cpu-graphs").write_text("not a folder")
    monkeypatch.setenv("CIDSTREAM_CACHE", str(cache))
    capfd.readouterr()
    det = Detector(weights, conf=0.001, runtime="onnxruntime")
    out = capfd.readouterr()
    assert det.runtime == "torch"
    assert out.out == ""
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning:") and "onnxruntime" in lines[0], out.err
    assert reference_ap(torch_boxes["numpy"][:2], det(frames[:2])) == 100.0  # it runs, on torch
    assert not [p for p in cache.rglob("*") if p.name != "cpu-graphs"]  # nothing left behind


@pytest.mark.slow  # exports graphs: make test runs it, make test-fast does not
def test_a_damaged_cached_graph_is_made_again(weights, graph_detectors, module_cache, frames, torch_boxes, tmp_path,
                                              monkeypatch, capfd):
    cache = tmp_path / "cache"
    good = next(module_cache.glob("*.onnx"))
    (cache / "cpu-graphs").mkdir(parents=True)
    damaged = cache / "cpu-graphs" / good.name
    damaged.write_bytes(good.read_bytes()[: good.stat().st_size // 3])  # cut short, as by a full disk
    monkeypatch.setenv("CIDSTREAM_CACHE", str(cache))
    capfd.readouterr()
    det = Detector(weights, conf=0.001, runtime="onnxruntime")
    out = capfd.readouterr()
    assert det.runtime == "onnxruntime"
    assert "preparing the detector" in out.err and "warning" not in out.err and out.out == ""
    assert damaged.stat().st_size > 0.9 * good.stat().st_size  # made again, whole
    assert [p.name for p in damaged.parent.iterdir()] == [good.name]
    assert reference_ap(torch_boxes["tensor"][:2], det(torch.from_numpy(frames[:2]))) >= MIN_AP


RACER = """
import sys, time
from pathlib import Path
from cidstream.detect.detector import Detector
Path(sys.argv[2]).touch()
while not Path(sys.argv[3]).exists():
    time.sleep(0.01)
det = Detector(sys.argv[1], runtime="onnxruntime")
print(det.runtime, det(__import__("numpy").zeros((1, 360, 640, 3), "uint8"))[0].xyxy.shape[1])
"""


@pytest.mark.slow  # exports graphs: make test runs it, make test-fast does not
def test_two_processes_making_the_same_graph_at_once_both_get_it_whole(weights, tmp_path):
    env = dict(os.environ, CIDSTREAM_CACHE=str(tmp_path / "cache"), YOLO_OFFLINE="1")
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", RACER, weights, str(tmp_path / f"ready{i}"), str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for i in (0, 1)]
    try:
        wait_until(lambda: all((tmp_path / f"ready{i}").exists() for i in (0, 1)), 120, "both processes to start")
        go.touch()  # both export now
        results = [p.communicate(timeout=240) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for (out, err), p in zip(results, procs):
        assert p.returncode == 0, err
        assert out.split() == ["onnxruntime", "4"], err
        assert "warning" not in err
    assert sum("preparing the detector" in err for _, err in results) >= 1  # both, where they really raced
    graphs = list((tmp_path / "cache" / "cpu-graphs").iterdir())
    assert len(graphs) == 1 and graphs[0].suffix == ".onnx"  # one whole graph, nothing half-made left
    again = Detector(weights, runtime="onnxruntime")
    assert again.runtime == "onnxruntime"
