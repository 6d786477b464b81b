"""The command line as a user meets it: help, config, bad input, Ctrl-C, bench."""
import json
import re
import signal
import subprocess
import sys
import time

import av
import pytest
import yaml

from cidstream.config import Config, load_config, DEFAULT_CONFIG_FILE
from cidstream.errors import ConfigError

from .conftest import SAMPLE, run_cli_subprocess


@pytest.fixture
def bad_files(tmp_path):
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "zero.mp4").write_bytes(b"")
    (tmp_path / "text.mp4").write_text("not a video\n")
    (tmp_path / "cut.mp4").write_bytes(SAMPLE.read_bytes()[:20000])  # moov at the end: cannot open
    (tmp_path / "badkey.yaml").write_text("engine:\n  batchh: 4\n")
    (tmp_path / "badsyntax.yaml").write_text("engine: [1, 2\n")
    (tmp_path / "badtype.yaml").write_text("engine:\n  batch: many\n")
    (tmp_path / "weights.pt").write_bytes(b"\x80\x02garbage")
    (tmp_path / "afile").write_text("x")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 30)
    return tmp_path


@pytest.mark.parametrize("args, message", [
    (["{d}/missing.mp4"], "input not found: {d}/missing.mp4"),
    (["{d}/empty_dir"], "no images in folder"),
    (["{d}/zero.mp4"], "input file is empty (0 bytes)"),
    (["{d}/text.mp4"], "cannot open {d}/text.mp4 as video"),
    (["{d}/cut.mp4"], "corrupt, truncated, or not a video file"),
    (["{d}/broken.png"], "cannot decode image"),
    (["{s}", "-o", "{d}/afile/out.mp4"], "is a file, not a folder"),
    (["{s}", "-o", "{d}/afile/outdir"], "is a file, not a folder"),
    (["{s}", "-c", "{d}/badkey.yaml"], "unknown config key 'engine.batchh'"),
    (["{s}", "-c", "{d}/badsyntax.yaml"], "is not valid YAML"),
    (["{s}", "-c", "{d}/badtype.yaml"], "engine.batch: expected an integer, got 'many'"),
    (["{s}", "-c", "{d}/nothere.yaml"], "config file not found"),
    (["{s}", "--set", "model.dcp.omgea=1"], "unknown config key 'model.dcp.omgea'"),
    (["{s}", "--batch", "0"], "engine.batch must be at least 1"),
    (["{s}", "-m", "{d}/weights.pt"], "corrupt or truncated"),
    (["{s}", "-m", "cid"], "model 'cid' has no weights"),
    (["{s}", "-m", "yolo"], "unknown model 'yolo'"),
    (["{s}", "--device", "cuda:7"], "cuda"),
    (["{s}", "-o", "{s}"], "is the input itself"),
])
def test_bad_input_gives_one_clear_message(cli, bad_files, args, message):
    fmt = {"d": bad_files, "s": SAMPLE}
    code, text = cli("run", *[a.format(**fmt) for a in args], "--no-progress")
    assert code == 2, text
    assert message.format(**fmt) in text
    assert "Traceback" not in text and "internal error" not in text


@pytest.mark.slow
def test_user_error_in_a_real_process_has_no_traceback(tmp_path):
    proc = run_cli_subprocess("run", tmp_path / "nothing.mp4")
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: input not found: {tmp_path / 'nothing.mp4'}"


@pytest.mark.slow
def test_help_texts_guide_a_new_user():
    top = run_cli_subprocess("--help")
    assert top.returncode == 0
    for command in ("run", "bench", "eval", "batch", "live", "models", "export", "train"):  # each with its line
        assert re.search(rf"^    {command} +\w", top.stdout, re.M), command
    run = run_cli_subprocess("run", "--help")
    for flag in ("--output", "--model", "--device", "--batch", "--config", "--max-frames", "examples:"):
        assert flag in run.stdout


def test_models_lists_every_model(cli):
    from cidstream.models.registry import MODELS

    code, text = cli("models")
    assert code == 0
    rows = {line.split("│")[1].strip(): line for line in text.splitlines() if line.count("│") >= 4}
    assert {"dcp", "cid-lite", "cid"} <= set(rows), text     # one row each, named exactly
    for name in ("dcp", "cid-lite", "cid"):
        assert MODELS[name].description.split()[0] in rows[name]
    assert "cid_lite.pt" in rows["cid-lite"] and "not bundled" in rows["cid"]


def test_default_yaml_mirrors_the_dataclasses():
    """configs/default.yaml is made from the dataclasses (values, and comments from beside their fields)."""
    from cidstream.config import DEFAULT_CONFIG_COMMAND, default_config_yaml

    made = default_config_yaml()
    assert yaml.safe_load(made) == Config().to_dict()
    assert DEFAULT_CONFIG_FILE.read_text(encoding="utf-8") == made, \
        f"configs/default.yaml is not what the code makes: regenerate it with `{DEFAULT_CONFIG_COMMAND}`"


def test_config_precedence(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("engine:\n  batch: 6\nmodel:\n  dcp:\n    omega: 0.8\n")
    cfg = load_config(f, [{"engine": {"batch": 2}}])
    assert cfg.engine.batch == 2 and cfg.model.dcp.omega == 0.8 and cfg.model.name == "cid-lite"
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(None, [{"engine": 3}])


@pytest.mark.slow
def test_max_frames_and_set_override(cli, tmp_path):
    out = tmp_path / "short.mp4"
    code, text = cli("run", SAMPLE, "-o", out, "--max-frames", "7", "--set", "output.crf=30", "--no-progress")
    assert code == 0, text
    with av.open(str(out)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 7


@pytest.mark.slow
def test_ctrl_c_finalizes_a_playable_output(shared_data, tmp_path):
    src = shared_data / "videos" / "heavy_foggy_road_synthetic.mp4"  # 3696 frames: far longer than we wait
    out = tmp_path / "interrupted.mp4"
    proc = subprocess.Popen([sys.executable, "-m", "cidstream", "run", str(src), "-o", str(out), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**__import__("os").environ, "COLUMNS": "400"})
    deadline = time.monotonic() + 120
    partial = out.with_name(f".{out.name}.{proc.pid}.tmp{out.suffix}")  # written there until finalized
    while time.monotonic() < deadline and (not partial.exists() or partial.stat().st_size < 50_000):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    written = int(err.split("frames")[1].split()[0])
    with av.open(str(out)) as c:
        decoded = sum(1 for _ in c.decode(video=0))
    assert 0 < decoded == written < 3696


@pytest.mark.slow
def test_bench_reports_every_stage_as_json(tmp_path):
    out = tmp_path / "bench.json"
    proc = run_cli_subprocess("bench", SAMPLE, "--frames", "4", "--repeats", "1", "--model", "cid", "--batch", "2",
                              "--json", out)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(out.read_text())
    for key in ("decode_fps", "model_fps", "encode_fps", "end_to_end_fps"):
        assert r[key] > 0
    assert r["slowest_stage"] in ("decode", "model", "encode")
    stages = {"decode": r["decode_fps"], "model": r["model_fps"], "encode": r["encode_fps"]}
    assert min(stages, key=stages.get) == r["slowest_stage"]
    # One round: the ratio is exactly that round's end-to-end / slowest stage.
    assert r["ratio"] == pytest.approx(r["end_to_end_fps"] / min(stages.values()))
    assert r["serial_fps"] == pytest.approx(1 / sum(1 / v for v in stages.values()))
    assert r["frames"] == 4 and r["width"] == 640 and "random weights" in " ".join(r["notes"])
    assert "end to end / slowest stage" in proc.stderr
    # the haze measure alone, and its share of the dehazing stage it runs inside
    assert r["gate_measure"] == "learned" and r["gate_fps"] > 0
    assert r["gate_share"] == pytest.approx(r["model_fps"] / r["gate_fps"], rel=1e-3)
    assert "haze measure (learned)" in proc.stderr
    # On the CPU an RGB batch is read in place: no upload stage to time (it read 500000 fps before), and a
    # fixed cost is a cost or nothing (never negative)
    assert r["upload_fps"] is None and "upload: none" in proc.stderr and "upload (part of model)" not in proc.stderr
    assert r["fixed_cost_s"] is None or r["fixed_cost_s"] >= 0
    assert r["network_frames"] == 4   # the sample is foggy throughout: the network ran on every frame


def test_fixed_cost_is_a_cost_or_nothing():
    from cidstream.bench import fixed_cost

    # 90 frames at 30 fps (3 s) and 30 frames at 15 fps (2 s): 60 frames per second of difference, 1.5 s fixed
    assert fixed_cost(90, 30.0, 30, 15.0) == pytest.approx(1.5)
    # the short run came out relatively faster than the long one: noise, reported as not measured (not -0.5 s)
    assert fixed_cost(90, 30.0, 30, 40.0) is None
