"""Padding and cropping, precision choice, temporal batching and the background reader."""
import threading
import time

import numpy as np
import pytest
import torch

from cidstream.engine import Dehazer, iter_batches, pad_to_multiple, select_precision
from cidstream.errors import DeviceError
from cidstream.frames import Frame
from cidstream.io.reader import END, BackgroundReader
from cidstream.models import build

from .conftest import wait_until


@pytest.mark.parametrize("h, w", [(37, 61), (5, 3), (16, 32), (1, 1), (360, 641), (730, 1283)])
def test_every_pixel_comes_back(h, w):
    # A fresh cid-lite is exactly the identity (zero head), so any pixel lost or moved by
    # padding and cropping would show; bf16 autocast and channels_last are on, as in real runs.
    dehazer = Dehazer(build("cid-lite"), device="cpu", precision="auto")
    frames = np.random.default_rng(0).integers(0, 256, (2, h, w, 3), dtype=np.uint8)
    out = dehazer(frames)
    assert out.dtype == np.uint8 and out.shape == frames.shape
    np.testing.assert_array_equal(out, frames)


def test_pad_to_multiple_sizes_and_modes():
    x = torch.arange(2 * 3 * 5 * 7, dtype=torch.float32).view(2, 3, 5, 7)
    y = pad_to_multiple(x, 16, min_size=32)
    assert y.shape[-2:] == (32, 32)
    assert torch.equal(y[..., :5, :7], x)
    z = pad_to_multiple(torch.rand(1, 3, 40, 50), 16)
    assert z.shape[-2:] == (48, 64)


def test_dehazer_accepts_single_frames_and_tensors():
    dehazer = Dehazer("dcp", device="cpu")
    frame = np.full((20, 30, 3), 128, np.uint8)
    assert dehazer(frame).shape == (20, 30, 3)
    out = dehazer(torch.from_numpy(frame[None]))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.uint8 and out.shape == (1, 20, 30, 3)
    assert dehazer.precision == "fp32"  # DCP keeps full precision whatever is asked


def test_precision_choice():
    cpu = torch.device("cpu")
    assert select_precision("fp32", cpu) == "fp32"
    assert select_precision("auto", cpu) in ("bf16", "fp32")
    with pytest.raises(DeviceError, match="fp16 is not supported on the CPU"):
        select_precision("fp16", cpu)


def _frame(i, shape=(8, 8, 3)):
    return Frame(np.zeros(shape, np.uint8), i)


def test_batches_are_full_in_order_and_split_on_size_change():
    items = [_frame(i) for i in range(5)] + [_frame(5 + i, (4, 4, 3)) for i in range(3)]
    reader = BackgroundReader(lambda: iter(items), maxsize=4).start()
    batches = list(iter_batches(reader, batch=3))
    assert [b.indices for b in batches] == [[0, 1, 2], [3, 4], [5, 6, 7]]
    assert batches[0].images.shape == (3, 8, 8, 3)


def test_live_partial_batch_flushes_after_max_latency():
    second_frame_released = threading.Event()

    def slow():
        yield _frame(0)
        # The second frame is held back until the first batch is out (30 s at most: a batcher that waits
        # for it then gets both frames in one batch, which the assert below catches).
        second_frame_released.wait(30)
        yield _frame(1)

    reader = BackgroundReader(slow, maxsize=4).start()
    t0 = time.monotonic()
    batches = iter_batches(reader, batch=8, max_latency_ms=50)
    first = next(batches)
    waited = time.monotonic() - t0
    second_frame_released.set()
    assert first.indices == [0]  # flushed by the latency limit, not by the second frame (still held back)
    assert waited >= 0.05        # and not before the limit (a lower bound: no machine makes it flaky)
    assert [b.indices for b in batches] == [[1]]


@pytest.mark.slow
def test_reader_drop_oldest_keeps_fresh_frames():
    release = threading.Event()

    def fast():
        for i in range(50):
            yield _frame(i)
        release.set()

    reader = BackgroundReader(fast, maxsize=4, drop_oldest=True).start()
    # A deadline, not a speed check: each put into the full queue waits 0.1 s before it drops (~5 s here).
    assert release.wait(60)
    # All 50 frames are handed over; END follows once the reads below make room.
    wait_until(lambda: reader.produced == 50, 10, "all 50 frames handed to the queue")
    got = []
    while (item := reader.get(timeout=1)) is not END:
        got.append(item.index)
    assert got[-1] == 49 and len(got) <= 4
    assert reader.dropped == 50 - len(got)


def test_reader_reraises_producer_errors():
    def broken():
        yield _frame(0)
        raise ValueError("decoder exploded")

    reader = BackgroundReader(broken, maxsize=2).start()
    assert reader.get(timeout=2).index == 0
    with pytest.raises(ValueError, match="decoder exploded"):
        reader.get(timeout=2)


def test_reader_stop_unblocks_a_full_queue():
    reader = BackgroundReader(lambda: (_frame(i) for i in range(10**6)), maxsize=2).start()
    wait_until(lambda: reader.produced >= 2, 10, "the queue to fill")  # the producer now blocks on a full queue
    reader.stop(join_timeout=2)
    assert not reader._thread.is_alive()
    assert reader.produced < 100  # the producer stopped instead of decoding on


def test_one_device_resolver_answers_for_the_batch_engines():
    """The batch engines choose threads or processes by whether the device setting means a GPU, asked of
    engine/device.py like select_device itself (auto follows what torch sees)."""
    from cidstream.engine.device import cuda_available, means_cuda, select_device
    from cidstream.jobs.executors import _wants_cuda

    for name in ("cpu", "cuda", "cuda:1", "auto", " AUTO "):
        assert _wants_cuda(name.strip().lower()) == means_cuda(name)
    assert means_cuda("cuda:1") and not means_cuda("cpu")
    assert means_cuda("auto") == cuda_available() == (select_device("auto").type == "cuda")
