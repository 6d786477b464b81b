"""configs/cameras.yaml: the cameras of a `cidstream live` run, mapped onto dataclasses like every config."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..config import merge, read_yaml
from ..errors import ConfigError


@dataclass
class CameraConfig:
    name: str = ""
    url: str = ""                # rtsp://, rtsps://, http(s):// (MJPEG, HLS), or /dev/videoN; no files
    options: dict = field(default_factory=dict)  # FFmpeg/PyAV options for this camera only
    output: str = ""             # folder under the run's output folder (default: the name)


@dataclass
class CamerasFile:
    output: str = "live_out"     # where each camera's folder goes (-o overrides)
    settings: dict = field(default_factory=dict)  # keys of configs/default.yaml for this run (model, live, ...)
    cameras: list = field(default_factory=list)   # of CameraConfig


NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def is_file_url(url: str) -> bool:
    """A path or file: URL, not a stream or a capture device (/dev/...): `live` would replay a file in a
    loop, faster than real time, with a reconnect at each end, so such a camera is refused."""
    return url.lower().startswith("file:") or ("://" not in url and not url.startswith("/dev/"))


def load_cameras(path: str | Path) -> CamerasFile:
    try:
        return _load(path)
    except ConfigError as exc:
        text = str(exc)
        raise ConfigError(text if str(path) in text else f"{path}: {text}") from None


def _load(path: str | Path) -> CamerasFile:
    data = read_yaml(path, what="cameras file")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with a 'cameras' list")
    cams = data.pop("cameras", None)
    out = CamerasFile()
    merge(out, data)
    if not isinstance(cams, list) or not cams:
        raise ConfigError(f"{path}: 'cameras' must be a non-empty list of {{name, url}} entries")
    seen_names, seen_folders = set(), set()
    for i, entry in enumerate(cams):
        where = f"{path}: cameras[{i}]"
        cam = CameraConfig()
        merge(cam, entry if isinstance(entry, dict) else {"url": entry}, where=f"cameras[{i}]")
        if not cam.url:
            raise ConfigError(f"{where}: no url")
        if is_file_url(cam.url):
            raise ConfigError(f"{where}: url {cam.url!r} is a file, not a camera stream (rtsp://, http(s)://, "
                              "/dev/videoN): use `cidstream run` or `cidstream batch` for video files")
        cam.name = cam.name or f"camera{i + 1}"
        if not NAME.match(cam.name):
            raise ConfigError(f"{where}: name {cam.name!r} must be letters, digits, '.', '_' or '-' (it names files)")
        cam.output = cam.output or cam.name
        if Path(cam.output).is_absolute() or ".." in Path(cam.output).parts:
            raise ConfigError(f"{where}: output {cam.output!r} must be a folder inside the run's output")
        if cam.name in seen_names or cam.output in seen_folders:
            raise ConfigError(f"{where}: camera name and output folder must be unique ({cam.name!r})")
        seen_names.add(cam.name)
        seen_folders.add(cam.output)
        out.cameras.append(cam)
    return out
