"""Weights and checkpoint files never run code (issue 34): every way a detector file or a training
checkpoint reaches a loader, with a crafted file whose unpickling would create a marker file.

Before: Ultralytics unpickled detector files in full and training read its checkpoints the same way, so
the payload ran (the marker appeared) before any error; `train detector --resume` even went on, exit 0.
"""
import os
import shutil

import pytest
import torch
import yaml

from cidstream.detect.detector import load_yolo
from cidstream.detect.safe_load import check_detector_file, load_detector_checkpoint

from .conftest import REPO, SAMPLE


class _Payload:
    """Unpickling this calls os.system: what a crafted .pt does."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def crafted(path, marker, **extra):
    """A file shaped like an Ultralytics checkpoint whose model is the payload."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": _Payload(marker), "train_args": {}, "epoch": 0, "optimizer": {}, **extra}, path)
    return path


def refused(code, text, marker, exit_code=2, message=True):
    assert code == exit_code, text
    assert not message or "which can run any code; it was not loaded" in text and "posix.system" in text, text
    assert "Traceback" not in text and "internal error" not in text
    assert not marker.exists()  # the payload never ran


def _cameras(tmp_path, bad):
    path = tmp_path / "cams.yaml"
    path.write_text(yaml.safe_dump({"output": str(tmp_path / "live"), "settings": {"detect": {"detector": str(bad)}},
                                    "cameras": [{"name": "a", "url": "rtsp://127.0.0.1:9/x"}]}))
    return path


def _manifest(tmp_path, bad):
    path = tmp_path / "jobs.csv"
    path.write_text(f"path,detect.detector\n{SAMPLE},{bad}\n")
    return path


def _config(tmp_path, bad):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({"detect": {"detector": str(bad)}}))
    return path


# (name, arguments after the command; {bad}: the crafted file, {t}: tmp_path, {w}: the real detector)
PATHS = [
    ("run --detector", ["run", SAMPLE, "--detect", "--detector", "{bad}", "-m", "dcp", "-o", "{t}/o",
                        "--max-frames", "1", "--no-progress"]),
    ("run --detector-b", ["run", SAMPLE, "--compare", "--detector", "{w}", "--detector-b", "{bad}", "-m", "dcp",
                          "-o", "{t}/o", "--max-frames", "1", "--no-progress"]),
    ("config detect.detector", ["run", SAMPLE, "--detect", "--config", "{cfg}", "-m", "dcp", "-o", "{t}/o",
                                "--max-frames", "1", "--no-progress"]),
    ("eval", ["eval", "{data}/dawn_fog/JPEGImages", "--labels", "{data}/dawn_fog/Annotations", "--max-images", "1",
              "-m", "dcp", "--detector", "{bad}", "-o", "{t}/ev"]),
    ("bench", ["bench", SAMPLE, "--detect", "--frames", "2", "--repeats", "1", "-m", "dcp", "--detector", "{bad}"]),
    ("batch manifest", ["batch", "{manifest}", "--detect", "-m", "dcp", "-o", "{t}/b", "--max-frames", "1",
                        "--no-progress"]),
    ("live cameras settings", ["live", "{cameras}", "--detect", "-m", "dcp", "--duration", "1", "--no-status"]),
    ("train detector --detector", ["train", "detector", "--detector", "{bad}", "--run-dir", "{t}/r", "--out",
                                   "{t}/x.pt", "--name", "never"]),
    ("train export", ["train", "export", "{bad}", "-o", "{t}/w.pt"]),
]


@pytest.mark.parametrize("args", [p[1] for p in PATHS], ids=[p[0] for p in PATHS])
def test_a_crafted_detector_file_is_refused_before_it_runs(cli, shared_data, yolo_weights, tmp_path, args):
    marker = tmp_path / "MARKER"
    bad = crafted(tmp_path / "det.pt", marker)
    fill = {"bad": bad, "t": tmp_path, "w": yolo_weights, "data": shared_data, "cfg": _config(tmp_path, bad),
            "manifest": _manifest(tmp_path, bad), "cameras": _cameras(tmp_path, bad)}
    code, text = cli(*[a.format(**fill) if isinstance(a, str) else a for a in args])
    # batch: that file failed, the others go on; train export: its own check of what the file is comes first
    refused(code, text, marker, 1 if args[0] == "batch" else 2, message=args[1] != "export")
    if args[0] == "train":
        assert not (tmp_path / "x.pt").exists() and not (tmp_path / "w.pt").exists()


def test_export_reads_a_checkpoint_as_plain_data(tmp_path):
    from cidstream.errors import WeightsError
    from training.dehazer.trainer import export

    marker = tmp_path / "MARKER"
    with pytest.raises(WeightsError, match="refused training checkpoint .*posix.system.*it was not loaded"):
        export(crafted(tmp_path / "checkpoint.pt", marker, config={}, phase="pretrain", done=[]), tmp_path / "w.pt")
    assert not marker.exists() and not (tmp_path / "w.pt").exists()


def test_the_detector_named_by_the_environment_is_checked(cli, tmp_path, monkeypatch):
    marker = tmp_path / "MARKER"
    monkeypatch.setenv("CIDSTREAM_DETECTOR", str(crafted(tmp_path / "det.pt", marker)))
    code, text = cli("run", SAMPLE, "--detect", "-m", "dcp", "-o", tmp_path / "o", "--max-frames", "1",
                     "--no-progress")
    refused(code, text, marker)


def test_a_fog_detector_planted_in_the_cache_is_refused(cli, yolo_weights, tmp_path, monkeypatch):
    monkeypatch.setenv("CIDSTREAM_CACHE", str(tmp_path / "cache"))
    marker = tmp_path / "MARKER"
    crafted(tmp_path / "cache" / "detectors" / "planted" / "20250101-000000.pt", marker)
    code, text = cli("run", SAMPLE, "--detect", "--detector", yolo_weights, "--fog-detector", "planted", "-m", "dcp",
                     "-o", tmp_path / "o", "--max-frames", "1", "--no-progress")
    refused(code, text, marker)


# --- what a file may do while it loads -------------------------------------------------------------------

class _CallsANetworkClass:
    """A DetectionModel built from a description whose activation Ultralytics passes to eval()."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        from ultralytics.nn.tasks import DetectionModel

        act = f"__import__('pathlib').Path({str(self.marker)!r}).touch() or nn.SiLU()"
        return DetectionModel, ({"nc": 1, "activation": act, "backbone": [[-1, 1, "Conv", [8, 3, 2]]],
                                 "head": [[-1, 1, "Detect", ["nc"]]]},)


class _CallsAMethod:
    """getattr(PosixPath(marker), 'touch')(): globals a checkpoint may hold, put together to run code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import pathlib

        return pathlib.PosixPath(self.marker).touch, ()


@pytest.mark.parametrize("payload, message", [
    (_CallsANetworkClass, "loading it calls ultralytics.nn.tasks.DetectionModel(...) instead of restoring one"),
    (_CallsAMethod, "loading it looks up pathlib.PosixPath.touch"),
])
def test_allowed_classes_cannot_be_turned_into_calls(tmp_path, payload, message):
    """The allow-list holds classes a checkpoint restores; calling one (its constructor evaluates the
    description) or looking up a method on an allowed object is refused. Before: the marker appeared."""
    marker = tmp_path / "MARKER"
    path = tmp_path / "det.pt"
    torch.save({"model": payload(marker)}, path)
    with pytest.raises(Exception, match="which can run any code") as err:
        load_yolo(str(path))
    assert message in str(err.value)
    assert not marker.exists()


@pytest.mark.parametrize("edit, message", [
    (lambda y, m: y.update(activation=f"__import__('pathlib').Path({str(m)!r}).touch() or nn.SiLU()"),
     "its model description has activation"),
    (lambda y, m: y["backbone"].__setitem__(0, [-1, 1, "torch_load", [repr(str(m))]]),
     "its model description names layer 'torch_load'"),
])
def test_a_base_detector_whose_description_runs_code_is_refused(cli, shared_data, tmp_path, edit, message):
    """Plain data, but Ultralytics builds the training model from it: eval() of the activation, layer
    names looked up in its module and called (torch_load would unpickle another file in full). Before:
    `train detector` built its set, then Ultralytics ran the activation (the marker appeared)."""
    marker = tmp_path / "MARKER"
    ckpt = load_detector_checkpoint(shared_data / "weights" / "yolo11n_coco_from_int8_unfused.pt")
    edit(ckpt["model"].yaml, marker)
    torch.save(ckpt, tmp_path / "base.pt")
    code, text = cli("train", "detector", "--detector", tmp_path / "base.pt", "--run-dir", tmp_path / "r", "--out",
                     tmp_path / "x.pt", "--name", "never")
    assert code == 2, text
    assert message in text and "it was not loaded" in text and "Traceback" not in text
    assert not marker.exists() and not (tmp_path / "x.pt").exists()


def test_a_model_yaml_whose_activation_runs_code_is_refused(cli, tmp_path):
    """--detector takes model YAMLs too; Ultralytics builds them with eval(activation). Before: the
    marker appeared, then the run failed on the classes."""
    marker = tmp_path / "MARKER"
    spec = tmp_path / "det.yaml"
    spec.write_text(yaml.safe_dump({"nc": 80, "activation": f"__import__('pathlib').Path({str(marker)!r}).touch()",
                                    "backbone": [[-1, 1, "Conv", [16, 3, 2]]], "head": [[[0], 1, "Detect", ["nc"]]]}))
    code, text = cli("run", SAMPLE, "--detect", "--detector", spec, "-m", "dcp", "-o", tmp_path / "o",
                     "--max-frames", "1", "--no-progress")
    assert code == 2 and "its model description has activation" in text and "it was not loaded" in text, text
    assert not marker.exists()
    assert load_yolo("yolo11n.yaml").task == "detect"  # Ultralytics' own descriptions still build


# --- real files still load --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["yolo11n_coco_from_int8.pt", "yolo11n_coco_from_int8_unfused.pt"])
def test_the_real_yolo11n_files_load(shared_data, name):
    """The fused file stores its layers' forward as getattr(layer, 'forward_fuse'): allowed, no other."""
    model = load_yolo(str(shared_data / "weights" / name))
    assert model.task == "detect" and len(model.names) == 80


# --- training checkpoints and caches ----------------------------------------------------------------------

@pytest.fixture
def small_training(shared_data, tmp_path):
    """A training config on a few small frames; ``teacher``: with the DCP teacher and pseudo-labels
    (which are cached in RUN_DIR/../.cache)."""
    def make(teacher: bool):
        cfg = yaml.safe_load((REPO / "configs" / "train" / "cid_lite.yaml").read_text())
        cfg["model"]["config"]["widths"] = [8, 8, 16, 16]
        cfg["data"].update(clean=[str(shared_data / "videos" / "highway2_720p.mp4")], clean_stride=80,
                           target=[str(shared_data / "real_hazy")], short_side=64)
        cfg["validation"].update(pairs=1, real=1, crop=48)
        cfg["train"].update(crop=32, batch=1, checkpoint_every=1, pseudo_batch=1, detector_weight=0,
                            detector=str(shared_data / "weights" / "yolo11n_coco_from_int8.pt"))
        for name, phase in cfg["phases"].items():
            phase["steps"] = 1
            for key in ("teacher_weight", "pseudo_label_weight"):
                if key in phase:
                    phase[key] = phase[key] if teacher else 0
        path = tmp_path / f"train_{teacher}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return path

    return make


@pytest.mark.slow
def test_train_pretrain_resume_refuses_a_crafted_checkpoint(cli, small_training, tmp_path):
    marker = tmp_path / "MARKER"
    crafted(tmp_path / "run" / "checkpoint.pt", marker)
    code, text = cli("train", "pretrain", "--config", small_training(False), "--run-dir", tmp_path / "run",
                     "--resume")
    refused(code, text, marker)
    assert "refused training checkpoint" in text


@pytest.mark.slow
def test_the_real_targets_cache_is_plain_data_and_a_crafted_one_is_refused(cli, small_training, tmp_path):
    """The DCP teacher and pseudo-label cache used to hold numpy arrays (read with weights_only=False)."""
    cfg = small_training(True)
    code, text = cli("train", "pretrain", "--config", cfg, "--run-dir", tmp_path / "run")
    assert code == 0, text
    (cache,) = (tmp_path / ".cache").glob("real_targets_*.pt")
    assert torch.serialization.get_unsafe_globals_in_checkpoint(cache) == []  # tensors and lists only
    code, text = cli("train", "pretrain", "--config", cfg, "--run-dir", tmp_path / "run2")
    assert code == 0 and f"DCP teacher and pseudo-labels from {cache}" in text, text  # read back
    marker = tmp_path / "MARKER"
    crafted(cache, marker)
    code, text = cli("train", "pretrain", "--config", cfg, "--run-dir", tmp_path / "run3")
    refused(code, text, marker)


def test_a_crafted_fog_meter_training_cache_is_one_line(cli, tmp_path):
    """Read with weights_only before too (nothing ran), but it ended in an internal error, exit 1."""
    from training.fog_meter.haze_train import read_haze_config, sets_file

    marker = tmp_path / "MARKER"
    cache = crafted(sets_file(read_haze_config(str(REPO / "configs" / "train" / "haze.yaml")), tmp_path), marker)
    code, text = cli("train", "haze", "--run-dir", tmp_path, "--out", tmp_path / "m.pt", "--steps", "1")
    refused(code, text, marker)
    assert f"refused training cache {cache}" in text


# --- a detector made by `train detector` ------------------------------------------------------------------

from .test_fog_detector import trained  # noqa: E402,F401 - the smoke training (a module fixture there)


@pytest.mark.slow
def test_a_trained_detector_loads_and_a_crafted_resume_file_is_refused(trained, cli, tmp_path):
    root, cfg = trained
    # what our training writes loads, its metadata plain (older runs also held our config mappings)
    assert not [n for n in torch.serialization.get_unsafe_globals_in_checkpoint(root / "fog.pt")
                if n.startswith("cidstream.")]
    check_detector_file(root / "fog.pt")
    assert load_yolo(str(root / "fog.pt")).task == "detect"
    assert load_detector_checkpoint(root / "run" / "yolo" / "weights" / "last.pt")["model"] is not None
    # a run folder with a crafted last.pt: refused, nothing published (before: exit 0, kept in the cache)
    run = tmp_path / "run"
    shutil.copytree(root / "run" / "dataset", run / "dataset")
    marker = tmp_path / "MARKER"
    crafted(run / "yolo" / "weights" / "last.pt", marker)
    code, text = cli("train", "detector", "--config", cfg, "--run-dir", run, "--resume", "--name", "planted-resume",
                     "--out", tmp_path / "x.pt")
    refused(code, text, marker)
    assert "refused resume checkpoint" in text
    assert not (tmp_path / "x.pt").exists()
    from cidstream.detect.cache import latest

    assert latest("planted-resume") is None


def test_a_resumed_training_takes_no_file_names_from_the_checkpoint(shared_data, tmp_path):
    """A checked last.pt is plain data, but Ultralytics' resume takes its arguments from it: a teacher
    model (distill_model, unpickled in full) and the data YAML (whose download script it runs)."""
    from ultralytics.models.yolo.detect import DetectionTrainer

    from training.detector.detector_train import resume_args

    ckpt = load_detector_checkpoint(shared_data / "weights" / "yolo11n_coco_from_int8_unfused.pt")
    ckpt["train_args"] = {"model": "x.pt", "data": str(tmp_path / "theirs.yaml"), "epochs": 2,
                          "distill_model": str(crafted(tmp_path / "teacher.pt", tmp_path / "MARKER"))}
    last = tmp_path / "last.pt"
    torch.save(ckpt, last)
    check_detector_file(last)
    ours = tmp_path / "dataset" / "data.yaml"
    for part in ("train", "val"):
        (ours.parent / "images" / part).mkdir(parents=True)
    ours.write_text(yaml.safe_dump({"path": str(ours.parent), "train": "images/train", "val": "images/val",
                                    "names": {0: "car"}}))
    trainer = DetectionTrainer(overrides={"model": str(last), "resume": str(last), "mode": "train",
                                          "project": str(tmp_path), **resume_args(ours)})
    assert trainer.args.distill_model is None and trainer.args.data == str(ours)


# --- an old YOLOv5 file -----------------------------------------------------------------------------------

def test_an_old_yolov5_file_says_so(cli, shared_data, yolo_weights, tmp_path):
    """Before: "is not on this machine and could not be downloaded (offline?)" for a file that is there
    (Ultralytics swaps the name yolov5n.pt for its yolov5nu.pt and downloads that)."""
    run = ["run", SAMPLE, "--detect", "-m", "dcp", "-o", tmp_path / "o", "--max-frames", "1", "--no-progress"]
    code, text = cli(*run, "--detector", shared_data / "weights" / "yolov5n.pt")
    assert code == 2 and "is a YOLOv5 model from github.com/ultralytics/yolov5" in text, text
    assert "downloaded" not in text and "❌" not in text
    renamed = tmp_path / "yolov5n.pt"  # a current model under an old name
    shutil.copy(yolo_weights, renamed)
    code, text = cli(*run, "--detector", renamed)
    assert code == 2 and "does not read a file named yolov5n.pt" in text and "rename the file" in text, text
    assert "is not on this machine" not in text
