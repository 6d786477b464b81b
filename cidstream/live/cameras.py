"""configs/cameras.yaml: the cameras of a `cidstream live` run, mapped onto dataclasses like every config."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..config import config_error, mark_of, merge, read_yaml
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
    """Errors start with the file's path, as they always have; where a key or value was written follows
    the message ("(line 3, column 12)")."""
    try:
        return _load(path)
    except ConfigError as exc:
        mark, text = getattr(exc, "mark", None), getattr(exc, "detail", str(exc))
        if mark is not None:
            text = f"{text} (line {mark.line}, column {mark.column})"
        raise ConfigError(text if str(path) in text else f"{path}: {text}") from None


def _load(path: str | Path) -> CamerasFile:
    data = read_yaml(path, what="cameras file")  # always a mapping (else read_yaml says so)
    cams = data.pop("cameras", None)
    out = CamerasFile()
    merge(out, data)
    if not isinstance(cams, list) or not cams:
        raise config_error("'cameras' must be a non-empty list of {name, url} entries", mark_of(data, "cameras"))
    seen_names, seen_folders = set(), set()
    for i, entry in enumerate(cams):
        where = f"cameras[{i}]"
        entry = entry if isinstance(entry, dict) else {"url": entry}
        cam = CameraConfig()
        merge(cam, entry, where=where)
        if not cam.url:
            raise config_error(f"{where}: no url", mark_of(entry, "url"))
        if is_file_url(cam.url):
            raise config_error(f"{where}: url {cam.url!r} is a file, not a camera stream (rtsp://, http(s)://, "
                               "/dev/videoN): use `cidstream run` or `cidstream batch` for video files",
                               mark_of(entry, "url"))
        cam.name = cam.name or f"camera{i + 1}"
        if not NAME.match(cam.name):
            raise config_error(f"{where}: name {cam.name!r} must be letters, digits, '.', '_' or '-' (it names "
                               "files)", mark_of(entry, "name"))
        cam.output = cam.output or cam.name
        if Path(cam.output).is_absolute() or ".." in Path(cam.output).parts:
            raise config_error(f"{where}: output {cam.output!r} must be a folder inside the run's output",
                               mark_of(entry, "output"))
        if cam.name in seen_names or cam.output in seen_folders:
            raise config_error(f"{where}: camera name and output folder must be unique ({cam.name!r})",
                               mark_of(entry, "name"))
        seen_names.add(cam.name)
        seen_folders.add(cam.output)
        out.cameras.append(cam)
    return out
