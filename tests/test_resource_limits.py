"""Settings that used to fail late or not at all (issue 21): a detector size off the stride grid, batches,
queues and detector sizes beyond the machine's memory, a bad x264 preset, FFmpeg options that do not
exist, --track without a detector. Each is refused (or fixed, with a note) before any frame is processed."""
import json
import os
import re

import pytest
import torch

from cidstream.config import load_config, parse_assignment
from cidstream.errors import ConfigError

from .conftest import SAMPLE
from .test_run_command import has_open

DCP = ("--model", "dcp", "--no-progress")
CPU = ("--device", "cpu")  # where the messages below name the host's memory (on CUDA the batch is the GPU's)
GB = 1e9


def config(*assignments):
    return load_config(overrides=[parse_assignment(a) for a in assignments])


# --- 1. detect.imgsz off the stride grid: rounded up, as Ultralytics' own check_imgsz does, with a note -------

@pytest.mark.slow
@pytest.mark.parametrize("imgsz, used", [(100, 128), (33, 64), (640, 640)])
def test_imgsz_rounded_up_to_the_detector_stride(cli, tmp_path, yolo_weights, imgsz, used):
    out = tmp_path / "out"
    code, text = cli("run", SAMPLE, "-o", out, "--detect", "--detector", yolo_weights, "--max-frames", "2",
                     "--set", f"detect.imgsz={imgsz}", *DCP)
    assert code == 0, text
    note = f"detect.imgsz {imgsz} is not a multiple of 32 (the detector's stride): using {used}"
    assert (note in text) == (imgsz != used), text
    assert json.loads((out / "report.json").read_text())["imgsz"] == used


# --- 2. memory: what a batch needs, against what the machine has, before the work ------------------------------

def test_imgsz_range_maximum_is_sane():
    with pytest.raises(ConfigError, match=r"detect\.imgsz must be within 32\.\.4096, got 8192"):
        config("detect.imgsz=8192")


@pytest.mark.parametrize("args, culprit, hint", [
    (("--batch", "100000"), "engine.batch 100000 at 640x360", "use a smaller --batch"),
    (("--set", "input.queue_size=10000000"), "input.queue_size 10000000 at 640x360", "use a smaller input.queue_size"),
    (("--set", "output.queue_size=10000000"), "output.queue_size 10000000 at 640x360",
     "use a smaller output.queue_size"),
])
def test_buffers_beyond_memory_refused_before_any_frame(cli, tmp_path, args, culprit, hint):
    out = tmp_path / "out.mp4"
    code, text = cli("run", SAMPLE, "-o", out, "--max-frames", "8", *args, *DCP, *CPU)
    assert code == 2, text
    assert re.search(re.escape(culprit) + r" needs about [\d.]+ GB of memory, more than the [\d.]+ GB a run may take "
                     r"here \(80% of the [\d.]+ GB this machine has available\): " + re.escape(hint), text), text
    assert "internal error" not in text and not out.exists()


@pytest.fixture
def small_machine(monkeypatch):
    """A machine with 2 GB available (host and GPU), so the detector's share decides."""
    from cidstream.engine import memory

    monkeypatch.setattr(memory, "available_bytes", lambda device: 2 * GB)


@pytest.mark.slow
def test_detector_size_beyond_memory_refused_in_run(cli, tmp_path, yolo_weights, small_machine):
    out = tmp_path / "out"
    code, text = cli("run", SAMPLE, "-o", out, "--detect", "--detector", yolo_weights, "--max-frames", "2",
                     "--set", "detect.imgsz=4096", *DCP, *CPU)
    assert code == 2, text
    assert re.search(r"detect\.imgsz 4096 in batches of 4 frames at 640x360 needs about [\d.]+ GB of memory, more than "
                     r"the 1\.6 GB a run may take here \(80% of the 2\.0 GB this machine has available\): use a "
                     r"smaller detect\.imgsz", text), text
    assert not out.exists()
    code, text = cli("run", SAMPLE, "-o", out, "--detect", "--detector", yolo_weights, "--max-frames", "2", *DCP)
    assert code == 0, text  # the defaults fit in 2 GB


def test_detector_size_beyond_memory_refused_in_eval_bench_live(cli, tmp_path, shared_data, yolo_weights,
                                                                small_machine):
    images = shared_data / "dawn_fog" / "JPEGImages"
    labels = shared_data / "dawn_fog" / "Annotations"
    big = ("--detector", yolo_weights, "--set", "detect.imgsz=4096", "--model", "dcp")
    code, text = cli("eval", images, "--labels", labels, "--max-images", "1", "-o", tmp_path / "ev", *big)
    # eval batches same-size images like run (engine.batch, default 4)
    assert code == 2 and "detect.imgsz 4096 in batches of 4 frames needs about" in text, text
    code, text = cli("eval", images, "--labels", labels, "--max-images", "1", "-o", tmp_path / "ev", *big,
                     "--batch", "1")
    assert code == 2 and "detect.imgsz 4096 one frame at a time needs about" in text, text
    code, text = cli("bench", SAMPLE, "--frames", "2", "--detect", *big)
    assert code == 2 and "detect.imgsz 4096 in batches of 4 frames needs about" in text, text
    cams = tmp_path / "cams.yaml"
    cams.write_text("cameras:\n  - {name: a, url: 'rtsp://127.0.0.1:9/none'}\n")
    code, text = cli("live", cams, "-o", tmp_path / "live", "--detect", "--duration", "1", *big)
    assert code == 2 and "detect.imgsz 4096 in batches of 4 frames needs about" in text, text
    assert not (tmp_path / "live").exists()


def test_gpu_memory_is_what_cuda_has_free(monkeypatch):
    """On CUDA the batch is bounded by the GPU's free memory (torch.cuda.mem_get_info), the queues by the host's."""
    from cidstream.engine import memory

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (int(3 * GB), int(80 * GB)))
    cfg = config("engine.batch=256")
    with pytest.raises(ConfigError, match=r"engine\.batch 256 at 1920x1080 needs about [\d.]+ GB of memory, more "
                                          r"than the 2\.4 GB a run may take on cuda:0 \(80% of the 3\.0 GB free "
                                          r"there\): use a smaller --batch"):
        memory.check_memory(cfg, torch.device("cuda:0"), (1080, 1920), arch="cid-lite")
    memory.check_memory(config("engine.batch=4"), torch.device("cuda:0"), (1080, 1920), arch="cid-lite")


# --- 3. messages: a bad preset, options FFmpeg does not have, --track without a detector ---------------------

PRESETS = "ultrafast, superfast, veryfast, faster, fast, medium, slow, slower, veryslow or placebo"


@pytest.mark.parametrize("assignments, message", [
    (("output.preset=superfast2",), f"output.preset must be one of {PRESETS} for libx264, got 'superfast2'"),
    (("output.codec=libx265", "output.preset=Slow"), f"output.preset must be one of {PRESETS} for libx265, got 'Slow'"),
    (("input.options.foo=1",), "input.options: FFmpeg has no option 'foo' (for any demuxer, protocol or decoder): "
                               "check the name"),
    (("input.options.stimeout=5000000",), "input.options: FFmpeg has no option 'stimeout'"),  # gone since FFmpeg 5
    (("output.preset=slower",), None),
    (("output.codec=h264_nvenc", "output.preset=p7"), None),  # NVENC gets its own preset (sinks/hwcodec.py)
    (("input.options={rtsp_transport: tcp, probesize: 5000000, threads: 2, analyzeduration: 0}",), None),
])
def test_presets_and_ffmpeg_options_checked_up_front(assignments, message):
    if message is None:
        config(*assignments)
        return
    with pytest.raises(ConfigError, match=re.escape(message)):
        config(*assignments)


@pytest.mark.parametrize("args, message", [
    (("--set", "output.preset=superfast2"), f"output.preset must be one of {PRESETS} for libx264"),
    (("--set", "input.options.foo=1"), "input.options: FFmpeg has no option 'foo'"),
    (("--track",), "--track counts the detector's vehicles: it needs --detect or --compare"),
])
def test_run_refuses_before_writing(cli, tmp_path, args, message):
    out = tmp_path / "out.mp4"
    code, text = cli("run", SAMPLE, "-o", out, "--max-frames", "2", *args, *DCP)
    assert code == 2 and f"error: {message}" in text, text
    assert "Invalid argument" not in text and not out.exists()


# --- 4. the test helper has_open sees a file opened through a symlink ----------------------------------------

def test_has_open_resolves_symlinks(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "clip.mp4").write_bytes(b"x")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    via_link = tmp_path / "link" / "clip.mp4"
    with open(via_link, "rb"):
        assert has_open(os.getpid(), via_link)
        assert has_open(os.getpid(), tmp_path / "real" / "clip.mp4")
    assert not has_open(os.getpid(), via_link)
