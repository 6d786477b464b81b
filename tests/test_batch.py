"""cidstream batch: outputs, failures, the ledger across reruns, killed workers and drivers, Ray vs local."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from cidstream.jobs.jobs import collect_jobs
from cidstream.jobs.ledger import LOCK_NAME, BatchLock
from cidstream.jobs.staging import TMP_DIR, publish, sha256_file
from cidstream.config import load_config
from cidstream.errors import ConfigError

from .conftest import cut_clip, frame_count, run_cli_subprocess

CLIPS = {"highway.mp4": "highway_720p.mp4", "cam1/traffic.mp4": "traffic_cam_640x360.mp4",
         "cam1/foggy.mkv": "foggy_road_real.mp4"}


@pytest.fixture(scope="session")
def archive(shared_data, tmp_path_factory) -> Path:
    """Three short clips in nested folders, a corrupt file and a zero-byte file."""
    root = tmp_path_factory.mktemp("archive")
    for name, src in CLIPS.items():
        cut_clip(shared_data / "videos" / src, root / name, frames=12)
    data = (root / "highway.mp4").read_bytes()
    (root / "corrupt.mp4").write_bytes(data[: len(data) // 3][::-1])
    (root / "empty.mp4").write_bytes(b"")
    (root / "notes.txt").write_text("not a video, not picked up")
    return root


@pytest.fixture(scope="session")
def long_archive(shared_data, tmp_path_factory) -> Path:
    """Clips long enough (a few seconds each) to be killed in the middle of."""
    root = tmp_path_factory.mktemp("long_archive")
    for i, src in enumerate(["highway_720p.mp4", "highway2_720p.mp4", "traffic_cam_640x360.mp4"]):
        cut_clip(shared_data / "videos" / src, root / f"clip{i}.mp4", frames=240)
    return root


def batch(*args, **kw):
    return run_cli_subprocess("batch", *args, "--no-progress", **kw)


def ledger(out: Path) -> dict:
    return json.loads((out / "ledger.json").read_text())["files"]


def assert_outputs_match_ledger(out: Path) -> None:
    for entry in ledger(out).values():
        if entry["state"] == "done":
            for rel, meta in entry["outputs"].items():
                assert sha256_file(out / rel) == meta["sha256"], rel


@pytest.mark.slow
def test_folder_batch_outputs_failures_and_rerun(archive, tmp_path):
    out = tmp_path / "out"
    r = batch(archive, "-o", out, "--workers", "2")
    assert r.returncode == 1, r.stdout + r.stderr        # some files failed
    text = r.stdout + r.stderr
    assert "Traceback" not in text
    assert "corrupt.mp4" in text and "empty (0 bytes)" in text
    for name in ("highway.mp4", "cam1/traffic.mp4", "cam1/foggy.mp4"):
        assert frame_count(out / name) == 12
    entries = {Path(k).name: v for k, v in ledger(out).items()}
    assert {k: v["state"] for k, v in entries.items()} == {
        "highway.mp4": "done", "traffic.mp4": "done", "foggy.mkv": "done", "corrupt.mp4": "failed",
        "empty.mp4": "failed"}
    assert "cannot open" in entries["corrupt.mp4"]["error"]
    assert_outputs_match_ledger(out)
    assert not (out / TMP_DIR).exists()
    report = json.loads((out / "batch_report.json").read_text())
    assert report["totals"] == {"files": 5, "done": 3, "failed": 2, "pending": 0, "vehicles": None}
    assert report["this_run"]["frames"] == 36 and report["this_run"]["fps"] > 0
    assert "corrupt.mp4" in (out / "batch_report.html").read_text()
    assert not (out / LOCK_NAME).exists()                  # the lock goes with the batch that held it

    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.mp4")}
    again = batch(archive, "-o", out, "--workers", "2")
    assert again.returncode == 1                            # the failures are still failures
    assert "0 to do" in again.stderr and "3 already done" in again.stderr
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.mp4")} == mtimes   # no work was done
    # Nothing ran, so there is no speed to report (not "0.0 fps").
    assert json.loads((out / "batch_report.json").read_text())["this_run"]["fps"] is None
    assert "no frames processed" in again.stderr and "0.0 fps" not in again.stderr
    assert "nothing ran" in (out / "batch_report.html").read_text()
    assert not (out / LOCK_NAME).exists()

    retry = batch(archive, "-o", out, "--retry-failed", "--dry-run")
    assert retry.returncode == 0
    assert "2 to do" in retry.stderr and "failed before: retry" in retry.stderr


@pytest.mark.slow
def test_rerun_redoes_what_changed(archive, tmp_path, cli):
    out = tmp_path / "out"
    common = ("batch", archive / "cam1", "-o", out, "--set", "batch.local_workers=threads", "--no-progress")
    code, text = cli(*common)
    assert code == 0, text
    first = ledger(out)

    (out / "foggy.mp4").unlink()
    code, text = cli(*common)
    assert code == 0 and "1 to do, 1 of them redone" in text
    assert ledger(out)[str((archive / "cam1" / "foggy.mkv").resolve())]["state"] == "done"

    target = out / "traffic.mp4"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF                           # same size, other bytes: only --verify sees it
    target.write_bytes(bytes(data))
    code, text = cli(*common)
    assert "0 to do" in text
    code, text = cli(*common, "--verify")
    assert code == 0 and "1 to do" in text
    assert_outputs_match_ledger(out)

    code, text = cli(*common, "--set", "model.dcp.omega=0.8")
    assert code == 0 and "2 to do, 2 of them redone" in text
    after = ledger(out)
    assert all(after[k]["fingerprint"] != first[k]["fingerprint"] for k in first)


@pytest.mark.slow
def test_ray_engine_gives_the_same_ledger_and_outputs_as_local(archive, tmp_path):
    local, ray_out = tmp_path / "local", tmp_path / "ray"
    a = batch(archive, "-o", local, "--workers", "2")
    b = batch(archive, "-o", ray_out, "--workers", "2", "--engine", "ray")
    assert a.returncode == b.returncode == 1, b.stdout + b.stderr
    assert "ray (local Ray instance" in b.stderr
    la, lb = ledger(local), ledger(ray_out)
    assert la.keys() == lb.keys()
    for key in la:
        assert la[key]["state"] == lb[key]["state"], key
        assert la[key]["outputs"] == lb[key]["outputs"], key      # same files, byte for byte
        assert la[key]["fingerprint"] == lb[key]["fingerprint"]
        assert la[key].get("error") == lb[key].get("error")
    assert_outputs_match_ledger(ray_out)


def _start_batch(args, log: Path | None = None) -> subprocess.Popen:
    """The batch in its own process; with ``log`` its output goes to a file (pipes would stay open in
    orphaned workers after the driver is killed)."""
    env = dict(os.environ, COLUMNS="400")
    streams = {"stdout": log.open("w"), "stderr": subprocess.STDOUT} if log else \
        {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    return subprocess.Popen([sys.executable, "-m", "cidstream", "batch", *map(str, args), "--no-progress"],
                            env=env, **streams)


def _wait_for(condition, timeout: float = 120.0, what: str = "condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _staging_busy(out: Path) -> bool:
    tmp = out / TMP_DIR
    return tmp.is_dir() and any(p.is_file() and p.stat().st_size > 0 for p in tmp.rglob("*"))


def _workers_of(pid: int) -> list[psutil.Process]:
    return [c for c in psutil.Process(pid).children() if "spawn_main" in " ".join(c.cmdline())]


@pytest.mark.slow
def test_a_killed_worker_is_replaced_and_its_file_redone(long_archive, tmp_path):
    out = tmp_path / "out"
    proc = _start_batch([long_archive, "-o", out, "--workers", "2"])
    try:
        _wait_for(lambda: _staging_busy(out), what="a file being written")
        victim = _wait_for(lambda: _workers_of(proc.pid), what="worker processes")[0]
        victim.kill()                                    # SIGKILL, mid-file
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    report = json.loads((out / "batch_report.json").read_text())
    assert report["this_run"]["worker_retries"] >= 1
    assert report["totals"]["done"] == 3
    for clip in long_archive.iterdir():
        assert frame_count(out / clip.name) == frame_count(clip)
    assert_outputs_match_ledger(out)


@pytest.mark.slow
def test_a_killed_driver_loses_only_files_in_flight(long_archive, tmp_path):
    out = tmp_path / "out"
    proc = _start_batch([long_archive, "-o", out, "--workers", "1"], log=tmp_path / "log.txt")
    try:
        _wait_for(lambda: (out / "ledger.json").exists() and
                  any(e.get("state") == "done" for e in ledger(out).values()) and _staging_busy(out),
                  what="one file done and the next one in flight")
        workers = _workers_of(proc.pid)
        proc.kill()                                      # SIGKILL the driver only: its worker is orphaned
        proc.wait(timeout=30)
        gone, alive = psutil.wait_procs(workers, timeout=60)
        assert not alive, "an orphaned worker kept running after its driver died"
    finally:
        proc.kill()
    states = {Path(k).name: e["state"] for k, e in ledger(out).items()}
    assert "running" in states.values() and "done" in states.values()
    for name, state in states.items():
        final = out / name
        if state == "done":
            assert frame_count(final) == frame_count(long_archive / name)
        else:
            assert not final.exists(), f"{name} appeared under its final name though unfinished"
    assert_outputs_match_ledger(out)

    rerun = batch(long_archive, "-o", out, "--workers", "1")
    assert rerun.returncode == 0, rerun.stderr
    assert all(e["state"] == "done" for e in ledger(out).values())
    for clip in long_archive.iterdir():
        assert frame_count(out / clip.name) == frame_count(clip)
    assert_outputs_match_ledger(out)
    assert not (out / TMP_DIR).exists()


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_leaves_files_pending(long_archive, tmp_path):
    out = tmp_path / "out"
    proc = _start_batch([long_archive, "-o", out, "--workers", "2"])
    try:
        _wait_for(lambda: _staging_busy(out), what="a file being written")
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "interrupted" in stderr
    for name, entry in ((Path(k).name, e) for k, e in ledger(out).items()):
        assert entry["state"] in ("done", "pending"), entry
        assert (out / name).exists() == (entry["state"] == "done")
    assert not (out / TMP_DIR).exists()


@pytest.mark.slow
def test_detection_batch_reports_vehicles_raw_vs_dehazed(archive, yolo_weights, tmp_path, cli):
    out = tmp_path / "out"
    code, text = cli("batch", archive / "cam1", "-o", out, "--compare", "--detector", yolo_weights,
                     "--set", "batch.local_workers=threads", "--workers", "2", "--no-progress")
    assert code == 0, text
    report = json.loads((out / "batch_report.json").read_text())
    per_file = [json.loads((out / name / "report.json").read_text()) for name in ("foggy", "traffic")]
    raw = sum(r["totals"]["raw"]["vehicles"] for r in per_file)
    dehazed = sum(r["totals"]["dehazed"]["vehicles"] for r in per_file)
    assert report["totals"]["vehicles"]["raw"] == raw and report["totals"]["vehicles"]["dehazed"] == dehazed
    assert raw > 0
    for name in ("foggy", "traffic"):
        assert frame_count(out / name / "dehazed.mp4") == 12 and frame_count(out / name / "side_by_side.mp4") == 12
    html = (out / "batch_report.html").read_text()
    assert "foggy/report.html" in html and f"{dehazed - raw:+d}" in html


def test_a_settings_error_stops_the_batch_with_one_message(archive, tmp_path, cli):
    out = tmp_path / "out"
    code, text = cli("batch", archive / "cam1", "-o", out, "--model", tmp_path / "missing.pt",
                     "--set", "batch.local_workers=threads", "--no-progress")
    assert code == 2 and "missing.pt" in text and "Traceback" not in text
    assert {e["state"] for e in ledger(out).values()} == {"pending"}   # not the files' fault


def test_one_batch_per_output_folder(archive, tmp_path, cli):
    out = tmp_path / "out"
    with BatchLock(out):
        code, text = cli("batch", archive, "-o", out, "--no-progress")
        assert (out / LOCK_NAME).read_text().strip() == str(os.getpid())   # names its holder
    assert code == 2 and "another batch is writing into" in text and f"pid {os.getpid()}" in text
    assert not (out / LOCK_NAME).exists()


def test_manifests_with_per_file_options(archive, tmp_path):
    cfg = load_config()
    csv_path = tmp_path / "list.csv"
    csv_path.write_text("path,output,max_frames,model.dcp.omega\n"
                        f"{archive / 'highway.mp4'},roads/a,5,0.8\n"
                        f"{archive / 'cam1' / 'traffic.mp4'},,,\n")
    jobs = collect_jobs([str(csv_path)], cfg)
    assert [j.output for j in jobs] == ["roads/a.mp4", "traffic.mp4"]
    assert jobs[0].max_frames == 5 and jobs[0].cfg.model.dcp.omega == 0.8
    assert jobs[1].max_frames is None and jobs[1].cfg.model.dcp.omega == cfg.model.dcp.omega
    assert jobs[0].fingerprint != collect_jobs([str(archive / "highway.mp4")], cfg)[0].fingerprint

    jsonl = tmp_path / "list.jsonl"
    jsonl.write_text(json.dumps({"path": str(archive / "highway.mp4"), "compare": True}) + "\n"
                     + json.dumps(str(archive / "cam1" / "foggy.mkv")) + "\n")
    jobs = collect_jobs([str(jsonl)], cfg)
    assert [(j.output, j.detect, j.compare) for j in jobs] == [("highway", True, True), ("foggy.mp4", False, False)]

    jsonl.write_text(json.dumps({"path": "x.mp4", "speed": "fast"}) + "\n")
    with pytest.raises(ConfigError, match=r"list.jsonl:1: unknown column 'speed'"):
        collect_jobs([str(jsonl)], cfg)
    jsonl.write_text(json.dumps({"path": "x.mp4", "engine.batch": 0}) + "\n")
    with pytest.raises(ConfigError, match=r"list.jsonl:1: engine.batch must be at least 1"):
        collect_jobs([str(jsonl)], cfg)


def test_folder_and_glob_inputs_name_outputs_uniquely(archive, tmp_path):
    cfg = load_config()
    jobs = collect_jobs([str(archive)], cfg)
    assert [j.output for j in jobs] == ["cam1/foggy.mp4", "cam1/traffic.mp4", "corrupt.mp4", "empty.mp4",
                                        "highway.mp4"]
    twin = tmp_path / "twin"
    twin.mkdir()
    (twin / "a.mp4").write_bytes(b"x")
    (twin / "a.mkv").write_bytes(b"x")
    assert sorted(j.output for j in collect_jobs([f"{twin}/*"], cfg)) == ["a.mp4", "a_mp4.mp4"]
    assert len(collect_jobs([str(archive), f"{archive}/*.mp4"], cfg)) == 5   # a file named twice runs once


def test_publish_replaces_a_folder_in_one_step(tmp_path):
    final = tmp_path / "out" / "cam"
    final.mkdir(parents=True)
    (final / "old.txt").write_text("old")
    new = tmp_path / "stage" / "cam"
    new.mkdir(parents=True)
    (new / "new.txt").write_text("new")
    publish(new, final)
    assert [p.name for p in final.iterdir()] == ["new.txt"]
    assert not new.exists() and not list((tmp_path / "stage").iterdir())


@pytest.mark.parametrize("value", ["0", "-3", "true", "2.5"])
def test_a_manifest_max_frames_is_held_to_the_flag_rule(archive, tmp_path, value):
    """A manifest's max_frames follows --max-frames' own rule (config.FLAG_RANGES), with the same words."""
    from cidstream.errors import ConfigError

    csv_path = tmp_path / "list.csv"
    csv_path.write_text(f"path,max_frames\n{archive / 'highway.mp4'},{value}\n")
    with pytest.raises(ConfigError, match=r"max_frames must be an integer at least 1"):
        collect_jobs([str(csv_path)], load_config())
