"""Device choice, temporal batching, the dehazer and its haze gate and temporal smoothing."""
from ..ops.padding import pad_to_multiple
from .batcher import iter_batches
from .dehazer import Dehazer
from .device import select_device, select_precision

__all__ = ["Dehazer", "iter_batches", "pad_to_multiple", "select_device", "select_precision"]
