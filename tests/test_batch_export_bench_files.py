"""Issue 34: batch, export and bench never destroy a user's file, and their bad inputs get one clear error
line. Real runs on the sample and real files throughout; each test says what happened before."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cidstream.config import load_config
from cidstream.errors import ConfigError
from cidstream.jobs import collect_jobs

from .conftest import SAMPLE, cut_clip, frame_count

FAST = ("--model", "dcp", "--max-frames", "2", "--set", "batch.local_workers=threads", "--no-progress")


def one_error_line(code: int, text: str, message: str) -> None:
    lines = text.strip().splitlines()
    assert code == 2 and "Traceback" not in text and "internal error" not in text, text
    assert lines[-1].startswith("error:") and message in lines[-1], text


def manifest(tmp_path: Path, text: str, name: str = "m.csv") -> Path:
    shutil.copy(SAMPLE, tmp_path / "a.mp4")
    path = tmp_path / name
    path.write_text(text)
    return path


def ledger(out: Path) -> dict:
    return json.loads((out / "ledger.json").read_text())["files"]


# --- batch: manifest outputs that would hit the batch's own files, or cannot be written -------------------

@pytest.mark.parametrize("output, message", [
    ("ledger.json", "the batch keeps ledger.json for itself"),          # before: ledger.json became a folder
    ("batch_report.html", "the batch keeps batch_report.html for itself"),  # before: IsADirectoryError at the end
    (".cidstream-tmp", "the batch keeps .cidstream-tmp for itself"),    # before: the staging folder, OSError
    ("x" * 300, "a name of 300 bytes in it; at most 200"),              # before: OSError File name too long
])
def test_a_manifest_output_the_batch_cannot_take_is_refused(cli, tmp_path, output, message):
    m = manifest(tmp_path, f"path,output,detect\na.mp4,{output},true\n")
    out = tmp_path / "out"
    code, text = cli("batch", m, "-o", out, *FAST)
    one_error_line(code, text, f"m.csv:2: output '{output[:40]}")
    assert message in text
    assert not out.exists()     # refused before anything was written


def test_a_jsonl_path_that_is_not_a_string_is_refused(cli, tmp_path):
    # before: internal error: TypeError: expected str, bytes or os.PathLike object, not list
    m = manifest(tmp_path, json.dumps({"path": ["a.mp4"]}) + "\n", "m.jsonl")
    code, text = cli("batch", m, "-o", tmp_path / "out", *FAST)
    one_error_line(code, text, "m.jsonl:1: 'path' must be a string (a path), got list")


def test_a_csv_manifest_with_a_byte_order_mark_is_read(tmp_path):
    # before: "the first line must name the columns, one of them 'path'" (the header read as '\ufeffpath')
    m = manifest(tmp_path, "\ufeffpath,output\na.mp4,renamed.mp4\n")
    assert m.read_bytes().startswith(b"\xef\xbb\xbf")
    jobs = collect_jobs([str(m)], load_config())
    assert [(Path(j.input).name, j.output) for j in jobs] == [("a.mp4", "renamed.mp4")]


def test_files_a_manifest_names_are_read_from_its_folder(tmp_path, monkeypatch):
    # before: detector and model paths were read from the current folder (its input paths from the manifest's)
    folder = tmp_path / "lists"
    folder.mkdir()
    (folder / "mine.pt").write_bytes(b"weights")   # a bare name that is a file beside the manifest
    m = manifest(folder, "path,model,detect.detector\n"
                         "a.mp4,mine.pt,weights/yolo.pt\n"
                         "a.mp4,dcp,yolo11n.pt\n")
    monkeypatch.chdir(tmp_path)
    first, second = collect_jobs([str(m.relative_to(tmp_path))], load_config(), detect=True)
    assert Path(first.cfg.model.name).resolve() == (folder / "mine.pt").resolve()
    assert Path(first.cfg.detect.detector).resolve() == (folder / "weights" / "yolo.pt").resolve()
    assert (second.cfg.model.name, second.cfg.detect.detector) == ("dcp", "yolo11n.pt")   # names stay names


def test_outputs_one_inside_the_other_are_refused_or_moved_aside(tmp_path):
    # before: a detection folder 'a' and 'a/x.mp4' were both planned; publishing 'a' replaced the folder
    # holding the other file's output
    m = manifest(tmp_path, "path,output\na.mp4,n1\na.mp4,n1/x\n")
    with pytest.raises(ConfigError, match=r"m.csv:2 and .*m.csv:3 would write n1 and n1/x, one inside the other"):
        collect_jobs([str(m)], load_config(), detect=True)
    archive = tmp_path / "archive"
    (archive / "a").mkdir(parents=True)
    (archive / "a.mp4").write_bytes(b"x")
    (archive / "a" / "x.mp4").write_bytes(b"x")
    jobs = collect_jobs([str(archive)], load_config(), detect=True)
    assert sorted(j.output for j in jobs) == ["a/x", "a_mp4"]


def test_a_batch_folder_whose_report_name_is_taken_is_refused_up_front(cli, tmp_path):
    # before: the files were processed, then "internal error: IsADirectoryError" writing batch_report.html
    m = manifest(tmp_path, "path\na.mp4\n")
    out = tmp_path / "out"
    (out / "batch_report.html").mkdir(parents=True)
    (out / "batch_report.html" / "keep.txt").write_text("mine")
    code, text = cli("batch", m, "-o", out, *FAST)
    one_error_line(code, text, f"{out / 'batch_report.html'} is a folder, not what a batch writes there")
    assert (out / "batch_report.html" / "keep.txt").read_text() == "mine"
    assert not (out / "ledger.json").exists()


# --- batch: outputs that are there and were not written by a batch into the same folder ---------------------

@pytest.mark.slow
def test_batch_leaves_a_folder_it_did_not_write_alone_and_reruns_still_replace_its_own(cli, tmp_path,
                                                                                      yolo_weights):
    # before: out/a/ (the user's) was replaced by the detection folder, notes.txt deleted, exit 0
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.mp4", "b.mp4"):
        shutil.copy(SAMPLE, src / name)
    out = tmp_path / "out"
    (out / "a").mkdir(parents=True)
    (out / "a" / "notes.txt").write_text("the user's")
    common = ("batch", src, "-o", out, "--detect", "--detector", yolo_weights, *FAST)
    code, text = cli(*common)
    one_error_line(code, text, "1 file(s) not processed: their output is there and no batch into")
    assert f"{out / 'a'} holds notes.txt, which no batch into {out} wrote" in text
    assert sorted(p.name for p in (out / "a").iterdir()) == ["notes.txt"]
    assert (out / "a" / "notes.txt").read_text() == "the user's"
    states = {Path(k).name: e["state"] for k, e in ledger(out).items()}
    assert states == {"a.mp4": "refused", "b.mp4": "done"}           # the other file still ran
    assert frame_count(out / "b" / "dehazed.mp4") == 2

    (out / "a" / "notes.txt").unlink()                                # the user moves it away: a rerun does it
    code, text = cli(*common)
    assert code == 0 and "1 to do" in text and "1 already done" in text, text
    code, text = cli(*common, "--set", "model.dcp.omega=0.8")         # its own outputs are still replaced
    assert code == 0 and "2 to do, 2 of them redone" in text, text

    (src / "b.mp4").write_bytes(b"not a video")                      # a redo that fails keeps b's old output ...
    code, text = cli(*common)
    assert code == 1 and ledger(out)[str((src / "b.mp4").resolve())]["state"] == "failed", text
    shutil.copy(SAMPLE, src / "b.mp4")                               # ... which stays the batch's to replace
    code, text = cli(*common)
    assert code == 0 and "1 to do" in text, text
    assert {e["state"] for e in ledger(out).values()} == {"done"}


@pytest.mark.slow
def test_an_output_that_appears_while_the_batch_runs_is_not_replaced(shared_data, tmp_path):
    # before: publish replaced whatever was there when the file was finished
    clip = tmp_path / "in" / "long.mp4"
    cut_clip(shared_data / "videos" / "heavy_foggy_road_synthetic.mp4", clip, frames=400)
    out = tmp_path / "out"
    env = dict(os.environ, COLUMNS="400")
    proc = subprocess.Popen([sys.executable, "-m", "cidstream", "batch", str(clip), "-o", str(out), "--model", "dcp",
                             "--set", "batch.local_workers=threads", "--no-progress"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while not any(p.is_file() and p.stat().st_size for p in (out / ".cidstream-tmp").rglob("*")):
            assert proc.poll() is None and time.monotonic() < deadline, "the batch never started writing"
            time.sleep(0.05)
        (out / "long.mp4").write_text("made meanwhile")
        _, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 2, err
    assert f"{out / 'long.mp4'} appeared while the batch ran: left as it is" in err
    assert (out / "long.mp4").read_text() == "made meanwhile"
    assert next(iter(ledger(out).values()))["state"] == "refused"


# --- export -------------------------------------------------------------------------------------------------

def test_export_never_writes_over_the_weights_it_reads(cli, tmp_path):
    # before: "wrote w.pt", the weights replaced by the TorchScript graph, exit 0
    from cidstream.models.registry import bundled_weights

    weights = tmp_path / "w.pt"
    shutil.copy(bundled_weights("cid-lite"), weights)
    os.link(weights, tmp_path / "same.pt")
    before = weights.read_bytes()
    for output, said in ((weights, "(the same file)"), (tmp_path / "same.pt", "(the same file by another name)")):
        code, text = cli("export", "--model", weights, "-o", output, "--format", "torchscript", "--height", 32,
                         "--width", 32, "--no-verify")
        one_error_line(code, text, f"output {output} is the input {weights} {said}")
    assert weights.read_bytes() == before


def test_export_refuses_a_frame_size_beyond_8k(cli, tmp_path):
    # before: --height 100000 ran for minutes and died (MemoryError, or the kernel's OOM killer)
    code, text = cli("export", "--model", "dcp", "-o", tmp_path / "m.onnx", "--height", 100000, "--width", 640)
    one_error_line(code, text, "--height and --width must be from 1 to 8192, got 100000x640")


def test_export_refuses_a_frame_size_this_machine_has_no_memory_for(cli, tmp_path, monkeypatch):
    # A fake: how much memory is free cannot be set for real; everything else is the real export path.
    import cidstream.engine.memory as memory

    monkeypatch.setattr(memory, "available_bytes", lambda device: 2 * 10**9)
    code, text = cli("export", "--model", "cid-lite", "-o", tmp_path / "m.onnx", "--height", 4320, "--width", 7680)
    one_error_line(code, text, "a 7680x4320 cid-lite graph needs about 10.2 GB to export and check, more than the "
                               "1.6 GB free on cpu: export a smaller --height/--width or --dynamic")
    assert not list(tmp_path.glob("*m.onnx*"))


# --- bench --------------------------------------------------------------------------------------------------

BENCH = ("--model", "dcp", "--frames", "2", "--repeats", "1")


def test_bench_never_writes_its_json_over_the_input(cli, tmp_path):
    # before: the benchmark ran and its JSON replaced the video, exit 0
    video = tmp_path / "s.mp4"
    shutil.copy(SAMPLE, video)
    code, text = cli("bench", video, *BENCH, "--json", video)
    one_error_line(code, text, f"output {video} is the input {video} (the same file)")
    assert video.read_bytes() == SAMPLE.read_bytes()


def test_bench_checks_its_json_file_before_the_work(cli):
    # before: the whole benchmark ran, then "internal error: FileNotFoundError: '/proc/x.json'"
    code, text = cli("bench", SAMPLE, *BENCH, "--json", "/proc/x.json")
    one_error_line(code, text, "the folder of the --json file /proc is not writable")
    assert "end to end" not in text           # refused before any stage was timed


def test_bench_streams_have_a_sane_range(cli):
    # before: --streams 1000 opened 1000 decoders and encoders (3000+ threads) and ran for minutes
    code, text = cli("bench", SAMPLE, *BENCH, "--streams", 1000)
    one_error_line(code, text, "--streams must be from 1 to 64, got 1000")


@pytest.mark.slow
def test_bench_with_many_streams_stops_promptly_on_sigterm(shared_data, tmp_path):
    # before: SIGTERM during the end-to-end runs was noticed only when a stream ended, and the process then
    # waited for every stream to finish its frames (93 s for --streams 1000; 167 s for 32 streams here)
    streams = 24
    env = dict(os.environ, COLUMNS="400", TMPDIR=str(tmp_path))       # where bench writes its videos
    proc = subprocess.Popen([sys.executable, "-m", "cidstream", "bench",
                             str(shared_data / "videos" / "heavy_foggy_road_synthetic.mp4"), "--model", "dcp",
                             "--frames", "45", "--repeats", "1", "--streams", str(streams),
                             "--set", "input.queue_size=4", "--set", "output.queue_size=4"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while len(list(tmp_path.glob("cidstream-bench-*/e2e0_*.mp4"))) < streams:  # every stream has started
            assert proc.poll() is None and time.monotonic() < deadline, "the end-to-end runs never started"
            time.sleep(0.1)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        waited = time.monotonic() - t0
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert waited < 20, f"took {waited:.1f} s to stop"
    assert not list(tmp_path.glob("cidstream-bench-*"))               # its temporary videos are gone
