"""Where results go: video and image files, camera segments, detection logs, the detection report."""
from .base import NullSink, Sink
from .media import (EncoderSettings, ImageFileSink, ImageFolderSink, ThreadedSink, VideoSink, open_sink, output_kind,
                    sink_from_config)

__all__ = ["EncoderSettings", "ImageFileSink", "ImageFolderSink", "NullSink", "Sink", "ThreadedSink", "VideoSink",
           "open_sink", "output_kind", "sink_from_config"]
