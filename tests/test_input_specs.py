"""Inputs as an audit found them (issue 21): recursive globs, names that look like patterns, manifests
naming a file twice, settings stored in weights files, model names in capitals, a label file for a folder."""
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from cidstream.jobs.jobs import collect_jobs
from cidstream.config import load_config
from cidstream.errors import ConfigError, InputError
from cidstream.models import CIDLite, DarkChannelPrior, load_model, save_weights

from .conftest import SAMPLE, textured

DCP = ("--model", "dcp", "--device", "cpu", "--no-progress")


def image(path: Path, h: int = 40, w: int = 48, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), (textured(h, w, seed)[:, :, ::-1] * 255).astype(np.uint8))
    return path


def size(path: Path) -> tuple[int, int]:
    h, w = cv2.imread(str(path)).shape[:2]
    return w, h


# 1. Recursive globs keep the folders under the output folder.

def test_recursive_glob_keeps_relative_folders(cli, tmp_path):
    image(tmp_path / "g" / "a" / "1.jpg", seed=1)
    image(tmp_path / "g" / "b" / "1.jpg", 32, 36, seed=2)
    out = tmp_path / "out"
    code, text = cli("run", f"{tmp_path}/g/**/*.jpg", "-o", out, *DCP)
    assert code == 0, text
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.jpg")) == ["a/1.jpg", "b/1.jpg"]
    assert size(out / "a" / "1.jpg") == (48, 40) and size(out / "b" / "1.jpg") == (36, 32)


def test_recursive_glob_into_its_own_folder_is_refused(cli, tmp_path):
    """out/a/1.jpg is the input g/a/1.jpg: the overwrite check sees the relative names too."""
    first = image(tmp_path / "g" / "a" / "1.jpg", seed=1)
    image(tmp_path / "g" / "b" / "1.jpg", seed=2)
    before = first.read_bytes()
    code, text = cli("run", f"{tmp_path}/g/**/*.jpg", "-o", tmp_path / "g", *DCP)
    assert code == 2 and "would overwrite the input" in text and "Traceback" not in text, text
    assert first.read_bytes() == before


def test_two_inputs_with_one_output_name_are_refused_up_front(cli, tmp_path):
    image(tmp_path / "g" / "1.jpg")
    (tmp_path / "g" / "a").mkdir()
    (tmp_path / "g" / "b").mkdir()
    out = tmp_path / "out"
    code, text = cli("run", f"{tmp_path}/g/*/../*.jpg", "-o", out, *DCP)
    assert code == 2 and "1.jpg" in text and "same output name" in text, text
    assert not out.exists()


# 2. An existing path is itself, even with [ ] ? * in its name.

def test_image_name_with_brackets_is_that_file(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    image(tmp_path / "photo[1].jpg", 40, 48)
    image(tmp_path / "photo1.jpg", 24, 24)   # what the name matches as a pattern
    code, text = cli("run", "photo[1].jpg", *DCP)
    assert code == 0, text
    assert size(tmp_path / "photo[1]_dehazed.jpg") == (48, 40)
    assert not (tmp_path / "images_dehazed").exists()


def test_video_name_with_brackets_is_that_file(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(SAMPLE, tmp_path / "clip [2024].mp4")
    code, text = cli("run", "clip [2024].mp4", "--max-frames", 2, *DCP)
    assert code == 0, text
    assert (tmp_path / "clip [2024]_dehazed.mp4").stat().st_size > 0


def test_folder_with_brackets_in_a_pattern_is_searched_as_named(cli, tmp_path):
    image(tmp_path / "shots [2024]" / "x.png")
    out = tmp_path / "out"
    code, text = cli("run", f"{tmp_path}/shots [2024]/*.png", "-o", out, *DCP)
    assert code == 0, text
    assert [p.name for p in out.iterdir()] == ["x.png"]


def test_pattern_matching_nothing_names_both_readings(cli, tmp_path):
    code, text = cli("run", f"{tmp_path}/shot[7].jpg", "-o", tmp_path / "out", *DCP)
    assert code == 2 and "no file or folder named" in text and "as a pattern" in text, text


def test_batch_input_with_brackets_is_that_file(tmp_path):
    shutil.copy(SAMPLE, tmp_path / "clip [2024].mp4")
    jobs = collect_jobs([str(tmp_path / "clip [2024].mp4")], load_config())
    assert [j.output for j in jobs] == ["clip [2024].mp4"]


# 3. Manifests that name one input twice, or a file above the manifest.

def manifest(tmp_path: Path, lines: list[dict]) -> str:
    path = tmp_path / "list" / "jobs.jsonl"
    path.parent.mkdir(exist_ok=True)
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return str(path)


@pytest.fixture
def clip(tmp_path) -> Path:
    (tmp_path / "list").mkdir()
    return Path(shutil.copy(SAMPLE, tmp_path / "list" / "x.mp4"))


@pytest.mark.parametrize("rows, outputs", [
    ([{"model": "dcp"}, {"model": "cid-lite"}], ["x.mp4", "x_cid-lite.mp4"]),
    ([{"output": "a"}, {"output": "b"}], ["a.mp4", "b.mp4"]),
    ([{}, {"model.dcp.omega": 0.5}], ["x.mp4", "x_2.mp4"]),
    ([{}, {"max_frames": 3}], ["x.mp4", "x_2.mp4"]),
    ([{}, {}], ["x.mp4"]),                           # the same job twice: once
])
def test_manifest_naming_one_input_twice_keeps_each_distinct_job(tmp_path, clip, rows, outputs):
    jobs = collect_jobs([manifest(tmp_path, [{"path": "x.mp4", **r} for r in rows])], load_config())
    assert [j.output for j in jobs] == outputs
    assert len({j.key for j in jobs}) == len(jobs)   # the ledger tells them apart


def test_manifest_rows_writing_one_output_are_refused(tmp_path, clip):
    shutil.copy(SAMPLE, tmp_path / "list" / "y.mp4")
    path = manifest(tmp_path, [{"path": "x.mp4", "output": "same"}, {"path": "y.mp4", "output": "same.mp4"}])
    with pytest.raises(ConfigError, match=r"jobs.jsonl:1 and .*jobs.jsonl:2 would both write same.mp4"):
        collect_jobs([path], load_config())


def test_manifest_row_above_its_folder_gets_an_output_inside(tmp_path):
    shutil.copy(SAMPLE, tmp_path / "x.mp4")
    jobs = collect_jobs([manifest(tmp_path, [{"path": "../x.mp4"}])], load_config())
    assert [j.output for j in jobs] == ["x.mp4"]


def test_batch_runs_both_rows_of_one_input(tmp_path, clip, cli):
    out = tmp_path / "out"
    path = manifest(tmp_path, [{"path": "x.mp4", "model.dcp.omega": 0.9}, {"path": "x.mp4", "model.dcp.omega": 0.5}])
    code, text = cli("batch", path, "-o", out, "--max-frames", 2, *DCP, "--set", "batch.local_workers=threads")
    assert code == 0, text
    assert (out / "x.mp4").stat().st_size > 0 and (out / "x_2.mp4").stat().st_size > 0
    assert {e["state"] for e in json.loads((out / "ledger.json").read_text())["files"].values()} == {"done"}


# 4. Settings stored in a weights file meet the config's ranges.

def _zero_widths():
    net = CIDLite()
    net.config = lambda: {"widths": [0, 0, 0, 0], "work_short_side": 360}
    return net


@pytest.mark.parametrize("make, words", [
    (lambda: DarkChannelPrior(omega=5), ["model.dcp.omega", "within 0..1", "got 5"]),
    (lambda: DarkChannelPrior(patch=0), ["model.dcp.patch", "got 0"]),
    (_zero_widths, ["widths", "positive integers", "[0, 0, 0, 0]"]),
])
def test_weights_file_settings_out_of_range_are_refused(cli, tmp_path, make, words):
    weights = save_weights(make(), tmp_path / "w.pt")
    code, text = cli("run", image(tmp_path / "in.png"), "-o", tmp_path / "out.png", "--model", weights,
                     "--device", "cpu", "--no-progress")
    assert code == 2 and f"weights {weights}" in text and "Traceback" not in text, text
    assert all(w in text for w in words), text


# 5. Model names in any case; a path that is there wins.

def test_model_names_are_case_insensitive(cli, tmp_path, monkeypatch):
    code, text = cli("run", image(tmp_path / "in.png"), "-o", tmp_path / "out.png", "--model", "DCP",
                     "--device", "cpu", "--no-progress")
    assert code == 0 and (tmp_path / "out.png").exists(), text
    assert load_model("Dcp").name == "dcp"
    monkeypatch.chdir(tmp_path)
    save_weights(CIDLite(widths=(8, 8, 8, 8)), tmp_path / "Dcp")
    assert load_model("Dcp").name == "cid-lite"   # the weights file of that name


# 6. --labels takes a folder.

def test_labels_file_instead_of_folder_says_so(tmp_path):
    from cidstream.evaluation.evaluate import run_eval

    image(tmp_path / "images" / "a.jpg")
    labels = tmp_path / "a.xml"
    labels.write_text("<annotation/>")
    with pytest.raises(InputError, match=r"--labels needs a folder of label files.*a\.xml is a file"):
        run_eval(str(tmp_path / "images"), str(labels), {}, None)
