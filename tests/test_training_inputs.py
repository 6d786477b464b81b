"""`cidstream train ...` fails early and clearly on what it cannot do, and never destroys files (issue 34):
the run folder's dataset/, the checkpoint export reads, the user's files beside generated pairs."""
import json
from pathlib import Path

import cv2
import pytest
import torch

from .conftest import REPO, textured

SHIPPED = REPO / "cidstream" / "weights" / "cid_lite.pt"
NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="asks for a GPU on a machine without one")


def training_checkpoint(path: Path) -> Path:
    """A checkpoint as Trainer._save writes it (training/dehazer/trainer.py), of a tiny cid-lite: a real one takes a
    training run; this holds the same keys and a real model's state."""
    from cidstream.models import build

    config = {"widths": [4, 4, 8, 8]}
    model = build("cid-lite", **config)
    torch.save({"phase": "pretrain", "step": 1, "done": ["pretrain"], "model": model.state_dict(),
                "config": {"model": {"arch": "cid-lite", "config": config}}, "data": {}, "metrics": {},
                "phase_seconds": {}}, path)
    return path


# --- train export ------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_export_refuses_to_write_over_its_checkpoint_by_any_name(cli, tmp_path):
    ck = training_checkpoint(tmp_path / "ck.pt")
    before = ck.read_bytes()
    (tmp_path / "link.pt").hardlink_to(ck)
    for out in (ck, tmp_path / "link.pt", tmp_path / "sub" / ".." / "ck.pt"):
        code, text = cli("train", "export", ck, "-o", out)
        assert code == 2 and "is the checkpoint itself" in text and "Traceback" not in text, text
    assert ck.read_bytes() == before
    code, text = cli("train", "export", ck, "-o", tmp_path / "w.pt")   # the same checkpoint exports elsewhere
    assert code == 0, text
    code, text = cli("train", "export", ck, "-o", tmp_path / "w.pt")   # and again over its own weights
    assert code == 0, text


@pytest.mark.slow
def test_export_refuses_to_replace_a_file_that_is_not_weights(cli, tmp_path):
    ck, other = training_checkpoint(tmp_path / "after_pretrain.pt"), training_checkpoint(tmp_path / "checkpoint.pt")
    before = other.read_bytes()
    code, text = cli("train", "export", ck, "-o", other)
    assert code == 2 and "exists and is not cidstream weights" in text, text
    assert other.read_bytes() == before


def test_export_refuses_weights_files_that_are_no_training_checkpoint(cli, tmp_path):
    code, text = cli("train", "export", SHIPPED, "-o", tmp_path / "w.pt")
    assert code == 2 and "is already cidstream weights" in text and "Traceback" not in text, text
    (tmp_path / "notes.pt").write_text("not torch")
    code, text = cli("train", "export", tmp_path / "notes.pt", "-o", tmp_path / "w.pt")
    assert code == 2 and "is not a training checkpoint" in text, text
    code, text = cli("train", "export", tmp_path, "-o", tmp_path / "w.pt")
    assert code == 2 and "is a folder" in text, text
    assert not (tmp_path / "w.pt").exists()


@pytest.mark.parametrize("name, message", [("out/", "is a folder"), ("existing", "is a folder"),
                                           ("w.onnx", "cidstream export --model"), ("w.ts", "cidstream export"),
                                           ("w.txt", "a weights file name ends in .pt")])
def test_export_refuses_outputs_it_would_not_write_as_named(cli, tmp_path, name, message):
    ck = training_checkpoint(tmp_path / "ck.pt")
    (tmp_path / "existing").mkdir()
    code, text = cli("train", "export", ck, "-o", f"{tmp_path}/{name}")
    assert code == 2 and message in text and "Traceback" not in text, text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.pt", "existing"]   # nothing written


# --- devices, data folder -------------------------------------------------------------------------------------

@NO_GPU
@pytest.mark.parametrize("step", [["generate", "--count", "2", "--out", "{t}/pairs"],
                                  ["pretrain", "--run-dir", "{t}/run"]])
def test_a_gpu_asked_for_without_one_is_refused_before_any_work(cli, tmp_path, step):
    code, text = cli("train", *[a.format(t=tmp_path) for a in step], "--device", "cuda")
    assert code == 2 and "no CUDA GPU is available" in text and "Traceback" not in text, text
    assert list(tmp_path.iterdir()) == []


def test_haze_names_the_missing_data_folder(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("CIDSTREAM_DATA", str(tmp_path / "nonexistent"))
    code, text = cli("train", "haze", "--run-dir", tmp_path / "run", "--out", tmp_path / "m.pt", "--steps", "1",
                     "--device", "cpu")
    assert code == 2 and "Traceback" not in text, text
    assert f"the data folder {tmp_path / 'nonexistent'} does not exist" in text and "clean[0].path" in text


# --- train generate ----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_generate_removes_its_earlier_pairs_and_nothing_else(cli, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        cv2.imwrite(str(frames / f"f{i}.png"), (textured(120, 200, seed=i) * 255).astype("uint8"))
    out = tmp_path / "pairs"
    (out / "clean").mkdir(parents=True)
    (out / "clean" / "mine.png").write_bytes(b"user file")
    (out / "clean" / "999999.png").write_bytes(b"user file with a name like ours, not in metadata.jsonl")
    for count in (5, 2):
        code, text = cli("train", "generate", "--out", out, "--count", count, frames)
        assert code == 0, text
    meta = [json.loads(x) for x in (out / "metadata.jsonl").read_text().splitlines()]
    assert [m["clean"] for m in meta] == [f"clean/{i:06d}.png" for i in range(2)]
    assert sorted(p.name for p in (out / "hazy").iterdir()) == [f"{i:06d}.png" for i in range(2)]
    assert sorted(p.name for p in (out / "clean").iterdir()) == [f"{i:06d}.png" for i in range(2)] + [
        "999999.png", "mine.png"]


# --- train detector ----------------------------------------------------------------------------------------

def test_detector_name_must_be_one_fog_detector_finds(cli, tmp_path):
    from cidstream.detect.cache import resolve_cached

    base = tmp_path / "base.pt"
    base.write_bytes(b"")   # refused before the base detector is read
    code, text = cli("train", "detector", "--detector", base, "--name", "my.pt", "--run-dir", tmp_path / "run",
                     "--device", "cpu")
    assert code == 2 and "--name 'my.pt'" in text and "--out my.pt" in text, text
    assert resolve_cached("my.pt") == "my.pt"   # why: --fog-detector my.pt is a path, not a cache lookup
    assert not (tmp_path / "run").exists()


def test_detector_cache_must_be_writable_before_training(cli, tmp_path, monkeypatch):
    base = tmp_path / "base.pt"
    base.write_bytes(b"")
    (tmp_path / "cache").write_text("a file, not a folder")
    monkeypatch.setenv("CIDSTREAM_CACHE", str(tmp_path / "cache"))
    code, text = cli("train", "detector", "--detector", base, "--run-dir", tmp_path / "run", "--device", "cpu")
    assert code == 2 and "detector cache folder" in text and "$CIDSTREAM_CACHE" in text, text
    assert not (tmp_path / "run").exists()


def our_dataset(root: Path) -> Path:
    """A set as DatasetWriter writes it, with the label caches Ultralytics adds."""
    from training.detector.detector_data import DatasetWriter

    writer = DatasetWriter(root)
    writer.write("train", (textured(32, 48) * 255).astype("uint8"), torch.zeros((0, 5)).numpy(), "clean", "v", 0)
    writer.write("val", (textured(32, 48) * 255).astype("uint8"), torch.zeros((0, 5)).numpy(), "day_haze", "v", 3)
    writer.manifest.close()
    for name in ("dataset.json", "data.yaml", "labels/train.cache", "labels/val.cache"):
        (root / name).write_text("{}")
    return root


def test_only_a_dataset_we_built_may_be_replaced(tmp_path):
    from cidstream.errors import OutputError
    from training.detector.detector_data import check_own_dataset

    check_own_dataset(tmp_path / "absent")
    (tmp_path / "empty" / "images").mkdir(parents=True)
    check_own_dataset(tmp_path / "empty")
    check_own_dataset(our_dataset(tmp_path / "ours"))
    (tmp_path / "ours" / "images" / "train" / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match=r"it holds images/train/notes.txt.*choose another --run-dir"):
        check_own_dataset(tmp_path / "ours")
    (tmp_path / "yolo" / "images" / "train").mkdir(parents=True)   # a user's own YOLO set, our file names
    (tmp_path / "yolo" / "images" / "train" / "000000_clean.jpg").write_bytes(b"jpg")
    with pytest.raises(OutputError, match="no images.tsv of ours"):
        check_own_dataset(tmp_path / "yolo")
    (tmp_path / "linked").symlink_to(tmp_path / "ours")
    with pytest.raises(OutputError, match="it is a link"):
        check_own_dataset(tmp_path / "linked")


TINY = """detector: {data}/weights/yolo11n_coco_from_int8_unfused.pt
data:
  recipe: configs/train/generate.yaml
  clean: [{data}/videos/highway2_720p.mp4]
  clean_stride: 40
  copies: 1
  max_clean: 3
  val_share: {val_share}
  imgsz: 160
train: {{epochs: 1, batch: 2, imgsz: 160, workers: 0}}
"""


@pytest.mark.slow
def test_detector_keeps_user_files_in_the_run_folder_dataset(cli, shared_data, tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY.format(data=shared_data, val_share=0.5))
    (tmp_path / "run" / "dataset").mkdir(parents=True)
    (tmp_path / "run" / "dataset" / "notes.txt").write_text("mine")
    code, text = cli("train", "detector", "--config", cfg, "--run-dir", tmp_path / "run", "--device", "cpu")
    assert code == 2 and "it holds notes.txt" in text and "Traceback" not in text, text
    assert (tmp_path / "run" / "dataset" / "notes.txt").read_text() == "mine"


@pytest.mark.slow
def test_detector_without_validation_images_stops_before_training(cli, shared_data, tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY.format(data=shared_data, val_share=0.001))   # no frame of 3 hashes below 0.001
    code, text = cli("train", "detector", "--config", cfg, "--run-dir", tmp_path / "run", "--device", "cpu")
    assert code == 2 and "has no val images" in text and "data.val_share" in text and "Traceback" not in text, text
    assert not (tmp_path / "run" / "yolo").exists()   # Ultralytics never started
