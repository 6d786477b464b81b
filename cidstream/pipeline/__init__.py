"""The one loop: stages with typed outputs (pipeline/stages.py, detect/stage.py), a frozen result per
batch (frames.BatchResult) and ``Pipeline(stages, sinks).run(batches)``, driven by run, batch, live,
eval and bench."""
from .loop import Pipeline, RunStats, dehaze_stream, run_pipeline, sink_needs, source_batches
from .stages import Dehazed, DehazeStage

__all__ = ["Dehazed", "DehazeStage", "Pipeline", "RunStats", "dehaze_stream", "run_pipeline", "sink_needs",
           "source_batches"]
