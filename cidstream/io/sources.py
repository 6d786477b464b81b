"""Frame sources: video files and URLs through PyAV, image folders and globs through OpenCV."""
from __future__ import annotations

import errno
import glob as _glob
import os
import stat as _stat
import time
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av

from ..config import InputConfig
from ..errors import InputError
from ..frames import Frame, StreamInfo
from ..redact import redact_url
from .decode import FrameDecoder, probe_orientation
from .images import IMAGE_SUFFIXES, natural_key, natural_path_key, read_image

LIVE_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")
HTTP_SCHEMES = ("http://", "https://")


def has_wildcards(text: str) -> bool:
    return any(c in text for c in "*?[")


def is_glob(spec: str) -> bool:
    """A pattern to expand: wildcards, and no file or folder of that name (an existing path wins, so
    'photo[1].jpg' is that file, not photo1.jpg)."""
    return has_wildcards(spec) and not os.path.lexists(spec)


def glob_root(pattern: str) -> Path:
    """The folder a pattern searches: its leading parts up to the first one with wildcards that is not
    the name of an existing folder ('shots [2024]/*.png' searches 'shots [2024]')."""
    root = Path()
    for part in Path(pattern).parts:
        if has_wildcards(part) and not os.path.lexists(root / part):
            break
        root /= part
    return root


def expand_glob(pattern: str) -> tuple[Path, list[Path]]:
    """(root, paths matched) of a pattern, ``**`` recursive; the root is taken as named, not as a pattern."""
    root = glob_root(pattern)
    rest = Path(pattern).relative_to(root)
    escaped = os.path.join(_glob.escape(str(root)), str(rest)) if root.parts else str(rest)
    return root, [Path(p) for p in _glob.glob(escaped, recursive=True)]


def no_match(spec: str, what: str, suffixes) -> InputError:
    """A pattern that matched nothing may have been meant as a file name: say both."""
    return InputError(f"no file or folder named {spec}, and as a pattern it matches no {what} "
                      f"(looked for {', '.join(suffixes)})")


def is_url(spec: str) -> bool:
    return spec.lower().startswith(LIVE_SCHEMES)


def is_http_url(spec: str) -> bool:
    """A URL that may name a video file as well as a camera's stream (see ``is_finite``)."""
    return spec.lower().startswith(HTTP_SCHEMES)


def ffmpeg_message(exc: BaseException) -> str:
    """FFmpeg's reason in one line; its error strings quote the URL, so credentials are masked."""
    text = getattr(exc, "strerror", None) or str(exc)
    return redact_url(str(text).splitlines()[0][:200])


def not_video(container) -> str | None:
    """Why an opened container is no video to dehaze, or None: FFmpeg opens text as ANSI art (``tty``)
    and audio as a stream without pictures; neither is a camera's fault a reconnect could fix."""
    if container.format is not None and container.format.name == "tty":
        return "text, not video"
    if not container.streams.video:
        return "no video stream"
    return None


def is_finite(container) -> bool:
    """FFmpeg knows the container's length: a file (over HTTP too: a known size gives MP4, MKV and
    MPEG-TS files a duration) or a finished playlist. A camera's MJPEG, live HLS or endless MPEG-TS has
    none, so such a URL is read as a live stream."""
    return bool(container.duration and container.duration > 0)


class LiveStreamURL(Exception):
    """An HTTP URL that is not a finite video file (or could not be opened yet): a live source takes it,
    with its reconnects and its judgement of which open errors are permanent."""


_FILE_TYPES = ((_stat.S_ISFIFO, "a named pipe (FIFO)"), (_stat.S_ISCHR, "a character device"),
               (_stat.S_ISBLK, "a block device"), (_stat.S_ISSOCK, "a socket"))


def _path_problem(spec: str, exc: OSError) -> str:
    """What an OSError from stat/open of ``spec`` means, in words."""
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied: {spec}"
    if exc.errno == errno.ENOTDIR:
        for parent in reversed(Path(spec).parents):
            if os.path.lexists(parent) and not os.path.isdir(parent):
                return f"{spec}: {parent} is a file, not a folder"
        return f"{spec}: part of the path is not a folder"
    if exc.errno == errno.ELOOP:
        return f"{spec}: too many levels of symbolic links (a link loop)"
    if exc.errno == errno.ENAMETOOLONG:
        return f"{spec[:80]}...: the path is too long ({len(spec)} characters) for the file system"
    if exc.errno == errno.ENOENT:
        if os.path.islink(spec):
            return f"input not found: {spec} is a symbolic link to {os.readlink(spec)}, which does not exist"
        return f"input not found: {spec}"
    return f"cannot read {spec}: {exc.strerror or exc}"


def check_input_path(spec: str, regular: bool = True) -> os.stat_result:
    """``spec`` exists and can be read; with ``regular``, it is a non-empty regular file. Otherwise an
    InputError that says what is wrong ("input not found" only when nothing is there)."""
    try:
        st = os.stat(spec)
    except (OSError, ValueError) as exc:
        raise InputError(_path_problem(spec, exc) if isinstance(exc, OSError) else f"invalid path {spec!r}") from exc
    if not regular or _stat.S_ISDIR(st.st_mode):
        return st
    for test, what in _FILE_TYPES:
        if test(st.st_mode):
            raise InputError(f"{spec} is {what}, not a regular file: give a video or image file")
    try:
        with open(spec, "rb") as fh:
            empty = st.st_size == 0 and not fh.read(1)  # /proc files announce 0 bytes and still have content
    except OSError as exc:
        raise InputError(_path_problem(spec, exc)) from exc
    if empty:
        raise InputError(f"input file is empty (0 bytes): {spec}")
    return st


def check_input_spec(spec: str) -> None:
    """What can be checked of an input before anything is opened: a file or folder path must be there
    and readable (URLs, capture devices and glob patterns are checked when opened)."""
    spec = str(spec)
    if is_url(spec) or spec.startswith("/dev/video") or is_glob(spec):
        return
    check_input_path(spec)


class Source:
    """Iterable of ``Frame``; ``info`` describes the stream before the first frame is read."""

    info: StreamInfo
    live = False
    decode_path = "software, rgb24"

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class VideoSource(Source):
    """Decodes the first video stream of a file with PyAV (FFmpeg threads on); streams use ``LiveSource``.
    An HTTP(S) URL is read here when it is a finite file (``is_finite``; else ``LiveStreamURL``), losslessly
    to its end; its messages and ``info.source`` show it with credentials masked.

    ``decode`` says what form frames take (see ``io.decode``): rgb24 (FFmpeg converts on the CPU),
    yuv420p (planes, converted where the model runs) or nvdec (decoded on the GPU, frames stay there).
    It is a resolved path, not input.decode's ``auto``, so its default is rgb24, which every machine
    has; ``decode_threads`` defaults to the config's input.decode_threads."""

    def __init__(self, spec: str, options: dict | None = None, decode_threads: int = InputConfig.decode_threads,
                 max_frames: int | None = None, decode: str = "rgb24", device=None):
        self.spec, self.name = spec, redact_url(spec)
        self.max_frames = max_frames
        opts = {str(k): str(v) for k, v in (options or {}).items()}
        url = is_http_url(spec)
        if not url:
            check_input_path(spec)
        self.decoder = FrameDecoder(decode, device)
        try:
            self.container = self.decoder.open(spec, opts)
        except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
            if url:
                raise LiveStreamURL(ffmpeg_message(exc)) from exc
            raise InputError(f"cannot open {spec} as video: {ffmpeg_message(exc)} "
                             "(corrupt, truncated, or not a video file)") from exc
        problem = not_video(self.container)
        if problem is not None or (url and not is_finite(self.container)):
            self.container.close()
            if problem is None:
                raise LiveStreamURL("no known length: a stream")
            raise InputError(f"cannot read {self.name}: {problem}")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        if decode_threads:
            self.stream.codec_context.thread_count = decode_threads
        ctx = self.stream.codec_context
        if not ctx.width or not ctx.height:
            self.container.close()
            raise InputError(f"{self.name}: the video stream has no frame size (corrupt or unsupported codec)")
        fps = self.stream.average_rate or self.stream.guessed_rate
        # Frames are turned upright by their display matrix (io.decode): announce the upright size.
        transposed = probe_orientation(spec, opts)[0]
        self.info = StreamInfo(
            source=self.name,
            location=spec,
            kind="video",
            width=ctx.height if transposed else ctx.width,
            height=ctx.width if transposed else ctx.height,
            fps=Fraction(fps) if fps else None,
            time_base=Fraction(self.stream.time_base) if self.stream.time_base else None,
            frame_count=self.stream.frames or None,
            codec=ctx.name,
            has_audio=bool(self.container.streams.audio),
        )
        if max_frames is not None and self.info.frame_count:
            self.info.frame_count = min(self.info.frame_count, max_frames)
        elif max_frames is not None:
            self.info.frame_count = None

    def __iter__(self) -> Iterator[Frame]:
        count = 0
        start = last = None
        try:
            for vf in self.container.decode(self.stream):
                if self.max_frames is not None and count >= self.max_frames:
                    return
                t = float(vf.time) if vf.time is not None else None
                if start is None and t is not None:
                    start = t
                last = t if t is not None else last
                yield self.decoder.frame(vf, count, pts=vf.pts, time=(t - start) if t is not None else None,
                                         captured_at=time.monotonic())
                count += 1
        except av.error.FFmpegError as exc:
            raise InputError(f"decoding {self.name} failed after {count} frames: {ffmpeg_message(exc)}") from exc
        if count == 0:
            raise InputError(f"{self.name}: no frame could be decoded (corrupt or empty video)")
        self._check_complete(count, last)

    def _check_complete(self, count: int, last: float | None) -> None:
        """Frame counts in headers include frames an edit list hides, so compare times instead."""
        s = self.stream
        if self.max_frames is not None or last is None or not s.duration or not s.time_base:
            return
        end = float(((s.start_time or 0) + s.duration) * s.time_base)
        slack = max(1.0, 3.0 / float(self.info.fps or 25))
        if last < end - slack:
            raise InputError(f"{self.name} ended early: {count} frames decoded up to {last:.1f} s of the "
                             f"{end:.1f} s its container announces (truncated file?)")

    @property
    def decode_path(self) -> str:
        return self.decoder.path

    def close(self) -> None:
        self.container.close()


def list_images(spec: str) -> list[Path]:
    """Image files of a folder (natural sort), a glob pattern (natural sort, folder by folder) or one image file."""
    if is_glob(spec):
        paths = sorted((p for p in expand_glob(spec)[1] if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
                       key=natural_path_key)
        if not paths:
            raise no_match(spec, "image", IMAGE_SUFFIXES)
        return paths
    path = Path(spec)
    if not _stat.S_ISDIR(check_input_path(spec, regular=False).st_mode):
        return [path]
    try:
        paths = sorted((p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
                       key=natural_key)
    except OSError as exc:
        raise InputError(f"cannot list the folder {spec}: {exc.strerror or exc}") from exc
    if not paths:
        raise InputError(f"no images in folder {spec} (looked for {', '.join(IMAGE_SUFFIXES)})")
    return paths


def image_names(spec: str, paths: list[Path]) -> list[str]:
    """The names the images ``paths`` of ``spec`` are written under: their paths below the pattern's root
    for a glob ('g/**/*.jpg': a/1.jpg and b/1.jpg), else their file names. Refused when two would share one."""
    if not is_glob(spec):
        names = [p.name for p in paths]
    else:
        root = glob_root(spec)
        names = [os.path.normpath(p.relative_to(root)) for p in paths]
        outside = next((p for p, n in zip(paths, names) if n.split(os.sep)[0] == ".."), None)
        if outside is not None:
            raise InputError(f"{spec} matches {outside}, outside the folder {root} it searches: "
                             "its name in the output would be outside the output folder")
    first: dict[str, Path] = {}
    for path, name in zip(paths, names):
        if first.setdefault(name, path) != path:
            raise InputError(f"{first[name]} and {path} of {spec} would get the same output name {name}: "
                             "give a pattern that matches each image once")
    return names


class ImageFolderSource(Source):
    """Images of a folder (natural sort), a glob pattern, or a single image file; ``fps`` (for a video
    made of them) defaults to the config's input.image_fps."""

    def __init__(self, spec: str, max_frames: int | None = None, fps: float = InputConfig.image_fps):
        self.spec = spec
        self.paths = list_images(spec)
        if max_frames is not None:
            self.paths = self.paths[:max_frames]
        self.names = image_names(spec, self.paths)
        # An image that cannot be read is skipped (and listed here, (path, reason)), not the end of the run.
        self.skipped: list[tuple[Path, str]] = []
        first = None
        for path in self.paths:
            first = self._read(path)
            if first is not None:
                break
        if first is None:
            if len(self.paths) == 1:
                raise InputError(self.skipped[0][1])
            raise InputError(f"none of the {len(self.paths)} images of {spec} could be read "
                             f"(first: {self.skipped[0][1]})")
        self._first = first
        self.info = StreamInfo(source=spec, kind="images", width=first[0].shape[1], height=first[0].shape[0],
                               fps=Fraction(fps).limit_denominator(1001), frame_count=len(self.paths))

    def _read(self, path: Path):
        try:
            return read_image(path)
        except (InputError, OSError) as exc:
            reason = str(exc) if isinstance(exc, InputError) else f"cannot read image {path}: {exc.strerror or exc}"
            self.skipped.append((path, reason))
            return None

    def __iter__(self) -> Iterator[Frame]:
        i = 0
        skipped_at_open = {p for p, _ in self.skipped}
        for path, name in zip(self.paths, self.names):
            if path in skipped_at_open:
                continue
            image = self._first if self._first is not None and i == 0 else self._read(path)
            self._first = None
            if image is None:
                continue
            rgb, alpha = image
            yield Frame(rgb, i, pts=i, time=i / float(self.info.fps), name=name, alpha=alpha,
                        captured_at=time.monotonic())
            i += 1


def is_image_input(spec: str) -> bool:
    if is_url(spec):
        return False
    if is_glob(spec):
        return True
    path = Path(spec)
    try:
        return path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES
    except OSError:  # a path the system refuses (too long, ...): the source's open says why
        return path.suffix.lower() in IMAGE_SUFFIXES
