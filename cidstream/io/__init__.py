"""Frame sources: video files, image folders and globs, streams and cameras."""
from .open_input import open_source, source_from_config
from .sources import ImageFolderSource, Source, VideoSource, is_url

__all__ = ["ImageFolderSource", "Source", "VideoSource", "is_url", "open_source", "source_from_config"]
