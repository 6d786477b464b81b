"""The gate over time (cidstream/engine/steady_gate.py): on video the strength follows each stream's smoothed
visibility, moves at most max_step per frame, does not toggle at the threshold, restarts at a scene cut; images
stay per frame."""
import numpy as np
import pytest
import torch

from cidstream.config import load_config
from cidstream.engine import Dehazer
from cidstream.engine.haze import HazeGate, gate_strength
from cidstream.frames import HazeRecord
from cidstream.engine.steady_gate import SteadyGate
from cidstream.io import source_from_config

from .conftest import textured


def _strength(v):
    return gate_strength(v, "blend", 10000.0, 2000.0)


def _feed(gate: SteadyGate, readings, stream="cam", small=None):
    """Strengths of a sequence of visibility readings fed one frame at a time on an unchanging picture."""
    small = torch.zeros(1, 3, 9, 16) if small is None else small
    out = []
    for v in readings:
        s, _ = gate.update(torch.tensor([float(v)]), small, [stream], (90, 160), _strength, 10000.0)
        out.append(float(s[0]))
    return out


def test_noisy_readings_of_constant_fog_give_a_steady_strength():
    rng = np.random.default_rng(0)
    readings = 3500 * np.exp(rng.normal(0, 0.35, 300))       # a factor-of-two spread, as the meter reads real fog
    per_frame = _strength(torch.tensor(readings)).numpy()
    steady = np.asarray(_feed(SteadyGate(0.05, 0.02, 1.25, 1.25, 0.08), readings))
    assert np.abs(np.diff(per_frame)).max() > 0.2             # the per-frame gate jumps
    assert np.abs(np.diff(steady)).max() <= 0.02 + 1e-12      # the steady one moves at most max_step a frame
    assert np.ptp(steady[100:]) == 0                          # settled: one constant strength


def test_constant_reading_gives_constant_strength_and_ramps_to_a_new_level():
    s = _feed(SteadyGate(0.05, 0.02, 1.25, 1.25, 0.08), [3000] * 20 + [500] * 200)
    assert len(set(s[:20])) == 1 and s[0] == pytest.approx(float(_strength(torch.tensor([3000.0]))[0]))
    assert all(b >= a for a, b in zip(s[20:], s[21:]))        # fog thickens: strength rises monotonically
    assert s[-1] == 1.0                                       # and lands on full dehazing exactly


def test_hysteresis_keeps_a_raw_stream_raw_near_the_threshold():
    s = _feed(SteadyGate(0.5, 0.02, 1.25, 1.25, 0.08), [12000] + [9000] * 100)
    assert s == [0.0] * 101                                   # 9 km: below clear_m but above 10 km / 1.25
    s = _feed(SteadyGate(0.5, 0.02, 1.25, 1.25, 0.08), [12000] + [5000] * 50)
    assert s[0] == 0.0 and s[-1] > 0.3                        # clearly below: it starts dehazing, gradually


def test_scene_cut_and_new_stream_restart_from_the_frame_itself():
    gate = SteadyGate(0.05, 0.02, 1.25, 1.25, 0.08)
    dark, bright = torch.zeros(1, 3, 9, 16), torch.ones(1, 3, 9, 16)
    _feed(gate, [15000] * 30, small=dark)
    after_cut = _feed(gate, [500], small=bright)
    assert after_cut == [1.0]                                 # no ramp across a cut: this frame's own reading
    assert _feed(gate, [500], stream="other") == [1.0]        # another camera has its own state


def test_images_are_gated_frame_by_frame():
    gate = HazeGate(measure="contrast")
    clean = textured(90, 160, seed=1)
    frames = torch.from_numpy(np.stack([(clean * 255).astype(np.uint8),
                                        np.full((90, 160, 3), 200, np.uint8)]))
    for streams in (None, [None, None]):
        haze = gate.decide(frames, streams)
        assert torch.equal(haze.strength, gate_strength(haze.visibility_m, gate.policy, gate.clear_m, gate.dense_m))
        assert torch.equal(haze.steady_m, haze.visibility_m)   # the steady visibility is the reading itself


@pytest.mark.slow
def test_default_run_on_real_fog_changes_strength_at_most_max_step(shared_data):
    """foggy_road_real: the per-frame gate swings (the issue measured 0.45..0.75); the default steady gate moves
    at most gate.max_step between consecutive frames, and detections.jsonl keeps the per-frame reading."""
    cfg = load_config(overrides=[{"engine": {"device": "cpu"}}])
    with source_from_config(str(shared_data / "videos" / "foggy_road_real.mp4"), cfg.input, 48, "cpu") as src:
        frames = torch.from_numpy(np.stack([f.rgb() for f in src]))
    steady = HazeGate.from_config(cfg.gate)
    per_frame = HazeGate(**{**vars(cfg.gate), "steady": False})
    s_steady = torch.cat([steady.decide(frames[i:i + 4], "clip").strength for i in range(0, 48, 4)])
    h = HazeRecord(torch.cat([per_frame.decide(frames[i:i + 4], "clip").values for i in range(0, 48, 4)], dim=1))
    assert h.strength.diff().abs().max() > 0.05
    assert s_steady.diff().abs().max() <= cfg.gate.max_step + 1e-6
    dehazer = Dehazer.from_config(load_config(overrides=[{"engine": {"device": "cpu"}, "model": {"name": "dcp"}}]))
    _, haze = dehazer.process_measured(frames[:4], stream="clip")
    assert len(haze) == 4 and torch.equal(haze.visibility_m, h.visibility_m[:4])   # the per-frame reading is kept as it is
