"""Device choice, temporal batching, the dehazing stage and the pipeline that joins them."""
from .batcher import iter_batches
from .dehazer import Dehazer, pad_to_multiple
from .device import select_device, select_precision
from .pipeline import RunStats, dehaze_stream, run_pipeline

__all__ = ["Dehazer", "RunStats", "dehaze_stream", "iter_batches", "pad_to_multiple", "run_pipeline",
           "select_device", "select_precision"]
