"""Frames the haze gate leaves raw skip the network: they cost the measure alone, come out bit-identical,
and the frames around them are dehazed as if the skipped ones had not been in the batch (issue 36)."""
import av
import cv2
import numpy as np
import pytest
import torch

from cidstream.config import load_config
from cidstream.engine import Dehazer

SIZE = (640, 360)


def _frames(path, n: int) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([cv2.resize(f.to_ndarray(format="rgb24"), SIZE, interpolation=cv2.INTER_AREA)
                         for _, f in zip(range(n), c.decode(video=0))])


@pytest.fixture(scope="module")
def clear_and_fog(shared_data):
    """Frames of a clear highway (the meter reads >= 10 km) and of real night fog (it reads a few km)."""
    return _frames(shared_data / "videos" / "highway_720p.mp4", 3), \
        _frames(shared_data / "videos" / "foggy_road_real.mp4", 3)


def _dehazer(**gate) -> Dehazer:
    """The default cid-lite, its gate a plain skip at 10 km decided frame by frame (a steady gate would move
    its strength in small steps and blur what these tests look at)."""
    cfg = load_config(overrides=[{"gate": {"policy": "skip", "steady": False, **gate}}])
    return Dehazer.from_config(cfg)


class _Counted:
    """Counts the frames the network sees (instrumentation of the real network, which still runs)."""

    def __init__(self, dehazer: Dehazer):
        self.frames = 0
        inner = dehazer._dehaze

        def counted(frames, stream):
            self.frames += frames.shape[0]
            return inner(frames, stream)

        dehazer._dehaze = counted


def test_clear_frames_skip_the_network_and_come_out_bit_identical(clear_and_fog):
    clear, _ = clear_and_fog
    dehazer = _dehazer()
    seen = _Counted(dehazer)
    frames = torch.from_numpy(clear)
    out, haze = dehazer.process_measured(frames, "cam")
    assert (haze.strength == 0).all() and (haze.visibility_m >= 10000).all()   # measured clear: left raw
    assert seen.frames == 0
    assert torch.equal(out, frames)
    every = _dehazer(skip_raw=False)                           # the old way, kept for comparisons
    seen = _Counted(every)
    assert torch.equal(every.process(frames, "cam"), frames) and seen.frames == len(frames)


def test_a_batch_mixing_clear_and_foggy_frames(clear_and_fog):
    clear, fog = clear_and_fog
    mixed = torch.from_numpy(np.stack([clear[0], fog[0], clear[1], fog[1]]))
    dehazer = _dehazer()
    seen = _Counted(dehazer)
    out, haze = dehazer.process_measured(mixed, None)
    assert haze.strength.tolist() == [0.0, 1.0, 0.0, 1.0]
    assert seen.frames == 2                                    # only the two foggy frames went through
    assert torch.equal(out[0], mixed[0]) and torch.equal(out[2], mixed[2])
    alone = _dehazer(policy="off").process(torch.from_numpy(fog[:2]), None)
    diff = (out[[1, 3]].int() - alone.int()).abs()
    assert diff.max() <= 1                                     # the dehazer's own output, batch size aside
    assert (out[[1, 3]].int() - mixed[[1, 3]].int()).abs().float().mean() > 5   # and really dehazed


def test_a_stream_starts_its_smoothing_afresh_after_frames_left_raw(clear_and_fog):
    clear, fog = clear_and_fog
    f0, f1 = (torch.from_numpy(fog[i:i + 1]) for i in (0, 1))
    fresh = _dehazer().process(f1, "cam")                      # f1 as a stream's first frame: no state

    smoothed = _dehazer()
    smoothed.process(f0, "cam")
    after_fog = smoothed.process(f1, "cam")
    assert not torch.equal(after_fog, fresh)                   # a frame after a foggy one carries its state

    skipped = _dehazer()
    seen = _Counted(skipped)
    skipped.process(f0, "cam")
    assert torch.equal(skipped.process(torch.from_numpy(clear[:1]), "cam"), torch.from_numpy(clear[:1]))
    assert seen.frames == 1
    assert torch.equal(skipped.process(f1, "cam"), fresh)      # the raw frame ended the stream's smoothing
