"""Sources and sinks of frames."""
from .sinks import (EncoderSettings, ImageFileSink, ImageFolderSink, NullSink, Sink, ThreadedSink, VideoSink, open_sink, output_kind,
                    sink_from_config)
from .sources import ImageFolderSource, Source, VideoSource, is_url, open_source, source_from_config

__all__ = ["EncoderSettings", "ImageFileSink", "ImageFolderSink", "ImageFolderSource", "NullSink", "Sink", "Source", "ThreadedSink",
           "VideoSink", "VideoSource", "is_url", "open_sink", "open_source", "output_kind", "sink_from_config",
           "source_from_config"]
