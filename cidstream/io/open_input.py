"""Which source an input spec opens: image folders and globs, stream URLs and capture devices, else video files."""
from __future__ import annotations

import torch

from ..config import InputConfig, LiveConfig
from .camera import LiveSource
from .decode import resolve_decode
from .sources import ImageFolderSource, LiveStreamURL, Source, VideoSource, is_http_url, is_image_input, is_url


def open_source(spec: str, options: dict | None = None, decode_threads: int = InputConfig.decode_threads,
                max_frames: int | None = None, image_fps: float = InputConfig.image_fps, decode: str = "rgb24",
                device=None, live_cfg=None) -> Source:
    """Pick the source for ``spec``: a folder, glob or image file; an HTTP(S) URL of a file FFmpeg knows
    the length of, read like a file (io/sources.is_finite); any other stream URL or capture device
    (reconnecting ``LiveSource``); else a video file. Defaults are the config's input section, except
    ``decode``: a resolved decode path (io/decode.py), not input.decode's ``auto``, so rgb24, which every
    machine has."""
    spec = str(spec)
    live_cfg = live_cfg or LiveConfig()
    if is_image_input(spec):
        return ImageFolderSource(spec, max_frames=max_frames, fps=image_fps)
    if is_http_url(spec):
        try:  # a stalled server must not hang the open: the live section's read timeout, in microseconds
            timeout = {"rw_timeout": str(round(live_cfg.read_timeout_s * 1e6))}
            return VideoSource(spec, options={**timeout, **(options or {})}, decode_threads=decode_threads,
                               max_frames=max_frames, decode=decode, device=device)
        except LiveStreamURL:
            pass
    if is_url(spec) or spec.startswith("/dev/video"):
        return LiveSource.from_config(spec, live_cfg, options=options, max_frames=max_frames, decode=decode)
    return VideoSource(spec, options=options, decode_threads=decode_threads, max_frames=max_frames, decode=decode,
                       device=device)


def source_from_config(spec: str, input_cfg, max_frames: int | None = None, device="cpu", live_cfg=None) -> Source:
    """``open_source`` with the settings of a config's ``input`` (and ``live``) sections; ``device`` is
    where the frames go (input.decode 'auto' picks the cheapest decode path for it)."""
    device = torch.device(device)
    return open_source(spec, options=input_cfg.options, decode_threads=input_cfg.decode_threads,
                       max_frames=max_frames, image_fps=input_cfg.image_fps,
                       decode=resolve_decode(input_cfg.decode, device), device=device, live_cfg=live_cfg)
