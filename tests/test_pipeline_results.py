"""Silent-wrong-result defects of issue 22: each test fails on the code before the fix."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from .conftest import SAMPLE, cut_clip, run_cli_subprocess, textured

DAWN = "dawn_fog"


def _decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)]).astype(np.float32)


# 1. cidstream batch: the worker's model cache must key on every section Dehazer.from_config reads


@pytest.mark.slow
def test_batch_rows_with_other_gate_settings_get_their_own_dehazer(tmp_path):
    clip = tmp_path / "clip.mp4"
    cut_clip(SAMPLE, clip, frames=6)
    manifest = tmp_path / "rows.jsonl"
    # Row a: always dehazed. Row b: skip with clear_m at the lowest visibility there is (10 m): every frame is
    # measured clear and must come out raw. One worker, so row b runs with the models row a loaded.
    manifest.write_text(json.dumps({"path": str(clip), "output": "a", "gate.policy": "off"}) + "\n"
                        + json.dumps({"path": str(clip), "output": "b", "gate.policy": "skip", "gate.clear_m": 10,
                                      "gate.dense_m": 10}) + "\n")
    out = tmp_path / "out"
    res = run_cli_subprocess("batch", manifest, "-o", out, "--model", "dcp", "--workers", "1", "--device", "cpu",
                             "--no-progress")
    assert res.returncode == 0, res.stdout + res.stderr
    files = json.loads((out / "ledger.json").read_text())["files"]
    assert sorted(e["state"] for e in files.values()) == ["done", "done"]
    raw = _decode(clip)
    a, b = _decode(out / "a.mp4"), _decode(out / "b.mp4")
    assert np.abs(a - raw).mean() > 10      # dehazed
    assert np.abs(b - raw).mean() < 3       # left raw (only the encoder's loss)


def test_model_cache_key_covers_what_from_config_reads():
    from cidstream.jobs.jobs import model_settings
    from cidstream.config import load_config
    from cidstream.engine.dehazer import DehazerSpec

    base = load_config()
    for key, value in (("gate", {"policy": "off"}), ("temporal", {"enabled": False}),
                       ("model", {"dcp": {"omega": 0.8}}), ("engine", {"precision": "fp32"})):
        other = load_config(overrides=[{key: value}])
        assert DehazerSpec.from_config(other) != DehazerSpec.from_config(base), key
        assert model_settings(other, False) != model_settings(base, False), key
    # engine.batch is the pipeline's, not the model's: the same loaded models serve both
    assert DehazerSpec.from_config(load_config(overrides=[{"engine": {"batch": 8}}])) == DehazerSpec.from_config(base)
    hash(model_settings(base, True))
    # every field of every section the dehazer reads is in its spec
    spec = DehazerSpec.from_config(base).as_dict()
    for section in ("gate", "temporal"):
        assert set(spec[section]) == set(vars(getattr(base, section))), section
    assert set(spec["dcp"]) == set(vars(base.model.dcp))


# 2. cidstream eval --batch N: images dehazed and detected in batches, AP unchanged


@pytest.fixture(scope="module")
def fog_subset(shared_data, tmp_path_factory) -> Path:
    """8 labelled dawn_fog images: 6 of one size (1280x720, batchable) and 2 of other sizes, interleaved."""
    from cidstream.io.images import image_header

    src = shared_data / DAWN
    images = sorted((src / "JPEGImages").iterdir())
    same = [p for p in images if image_header(p.read_bytes())[1] == (1280, 720)][:6]
    other = [p for p in images if image_header(p.read_bytes())[1] not in (None, (1280, 720))][:2]
    pick = same[:3] + other[:1] + same[3:] + other[1:]
    root = tmp_path_factory.mktemp("fog8")
    (root / "JPEGImages").mkdir()
    (root / "Annotations").mkdir()
    for i, p in enumerate(pick):  # renamed so the folder order interleaves the sizes
        shutil.copy(p, root / "JPEGImages" / f"{i:02d}_{p.name}")
        shutil.copy(src / "Annotations" / f"{p.stem}.xml", root / "Annotations" / f"{i:02d}_{p.stem}.xml")
    return root


@pytest.mark.slow
def test_eval_batches_images_and_keeps_ap(fog_subset, yolo_weights, tmp_path, cli, monkeypatch):
    import cidstream.engine
    from cidstream.engine.dehazer import Dehazer

    calls: list[int] = []

    class CountingDehazer(Dehazer):
        def process_measured(self, frames, stream=None):
            calls.append(int(frames.shape[0]))
            return super().process_measured(frames, stream)

    monkeypatch.setattr(cidstream.engine, "Dehazer", CountingDehazer)
    reports = {}
    for n in (1, 4):
        calls.clear()
        code, out = cli("eval", fog_subset / "JPEGImages", "--labels", fog_subset / "Annotations", "--model", "dcp",
                        "--detector", yolo_weights, "--device", "cpu", "--batch", n, "--max-images", 8,
                        "--bootstrap", 0, "--examples", 0, "-o", tmp_path / f"b{n}")
        assert code == 0, out
        reports[n] = json.loads((tmp_path / f"b{n}" / "eval.json").read_text())
        assert sum(calls) == 8, calls
        if n == 1:
            assert calls == [1] * 8
        else:
            assert max(calls) == 4 and len(calls) == 4, calls  # 1280x720: 4 + 2; the other two sizes one by one
    r1, r4 = reports[1]["results"], reports[4]["results"]
    assert set(r1) == {"raw", "dcp"}
    for arm in r1:
        for cls, row in r1[arm]["per_class"].items():
            a, b = row["ap50"], r4[arm]["per_class"][cls]["ap50"]
            assert (a is None and b is None) or abs(a - b) <= 1e-6, (arm, cls, a, b)
            assert row["detections"] == r4[arm]["per_class"][cls]["detections"], (arm, cls)
        assert r1[arm]["vehicle_ap50"] is not None


# 3. training's input listing takes every input video suffix


@pytest.mark.slow
def test_eval_stopped_midway_raises_instead_of_scoring_part_of_the_images(fog_subset, detector):
    """The loop records Ctrl-C and returns; eval must not go on to compute AP over the images detected so far."""
    from cidstream.engine import Dehazer
    from cidstream.evaluation.evaluate import run_eval

    def stop_after_first_batch(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_eval(str(fog_subset / "JPEGImages"), str(fog_subset / "Annotations"),
                 {"dcp": Dehazer("dcp", device="cpu")}, detector, progress=stop_after_first_batch, resamples=0,
                 examples=0, batch=4)


def test_training_inputs_find_ts_and_webm_clips(tmp_path):
    from training.inputs import expand_sources, iter_frames

    clip = tmp_path / "src.mp4"
    cut_clip(SAMPLE, clip, frames=4)
    folder = tmp_path / "clips"
    folder.mkdir()
    with av.open(str(clip)) as inp, av.open(str(folder / "a.ts"), "w") as out:  # remux: H.264 in MPEG-TS
        stream = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    frames = _decode(clip).astype(np.uint8)
    with av.open(str(folder / "b.webm"), "w") as out:  # encode: VP9 in WebM
        s = out.add_stream("libvpx-vp9", rate=25)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts = i
            out.mux(s.encode(vf))
        out.mux(s.encode())
    found = expand_sources([str(folder)])
    assert sorted(Path(p).name for p in found) == ["a.ts", "b.webm"]
    for p in found:
        assert sum(1 for _ in iter_frames(p)) == 4


# 4. the haze gate: one set of defaults, one way of counting gated frames


def test_default_haze_gate_is_the_configured_gate():
    from cidstream.config import GateConfig, load_config
    from cidstream.engine.haze import HazeGate

    raw = torch.from_numpy((textured(180, 320) * 255).astype(np.uint8))[None]
    dehazed = 255 - raw
    for configured in (HazeGate.from_config(GateConfig()), HazeGate.from_config(load_config().gate)):
        out_default, haze_default = HazeGate()(raw, dehazed)
        out_cfg, haze_cfg = configured(raw, dehazed)
        assert torch.equal(out_default, out_cfg)
        assert torch.allclose(haze_default.values, haze_cfg.values, equal_nan=True)
    g = GateConfig()
    gate = HazeGate()
    assert (gate.policy, gate.clear_m, gate.dense_m, gate.measure, gate.calib_a, gate.calib_b) == \
        (g.policy, g.clear_m, g.dense_m, g.measure, g.calib_a, g.calib_b)


def test_report_counts_gated_frames_as_the_run_stats_do():
    from cidstream.detect.detections import Detections
    from cidstream.sinks.report import ReportCollector, build_report
    from cidstream.engine.haze import gate_counts
    from cidstream.frames import BatchResult, Frame, FrameBatch

    strength = torch.tensor([0.0, 0.0004, 0.5, 0.9996, 1.0])   # 0.0004 and 0.9996 are blended, not raw / full
    vis = torch.full((5,), 3000.0)   # rows of a HazeRecord: level, visibility, strength, uncertainty, steady
    haze = torch.stack([torch.full((5,), 4.0), vis, strength, torch.full((5,), float("nan")), vis])
    assert gate_counts(strength) == (1, 3)
    frames = [Frame(np.zeros((8, 8, 3), np.uint8), i) for i in range(5)]
    empty = Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32))
    col = ReportCollector({2: "car"}, compare=False)
    col.write_result(BatchResult(FrameBatch.of(frames), None, {"dehazed": [empty] * 5}, haze_values=haze))
    report = build_report(col, {}, None)
    assert report["haze"]["frames_raw"] == 1
    assert report["haze"]["frames_gated"] == 4


def test_ledger_fingerprint_follows_the_model_specs_not_the_device():
    from cidstream.config import load_config
    from cidstream.jobs.jobs import Job, fingerprint

    def fp(**sections):
        cfg = load_config(overrides=[sections])
        return fingerprint(Job(key=str(SAMPLE), input=str(SAMPLE), output="out.mp4", cfg=cfg))

    base = fp()
    assert fp(gate={"policy": "off"}) != base and fp(temporal={"alpha": 0.5}) != base
    assert fp(engine={"device": "cpu"}) == base and fp(engine={"batch": 8}) == base
