"""Frame sinks: H.264 video (timing and audio kept from the source), image folders, null."""
from __future__ import annotations

import errno
import os
import queue
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..config import OutputConfig
from ..errors import OutputError
from ..frames import BatchResult, Frame, FrameBatch, StreamInfo
from ..io.atomic import partial_path, write_error
from ..io.containers import open_input_container, open_output_container
from .base import NullSink, Sink
from .hwcodec import encoder_options, resolve_encoder
from ..io.images import IMAGE_SUFFIXES, write_image
from ..io.sources import ffmpeg_message

VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".m4v", ".avi")


def even_size(height: int, width: int) -> bool:
    """4:2:0 needs an even frame size; odd sizes are encoded 4:4:4 from RGB."""
    return height % 2 == 0 and width % 2 == 0


def uses_i420(needs: frozenset, device_type: str, height: int, width: int) -> bool:
    """The one place that decides whether the encoder gets 4:2:0 planes made on the device (CUDA, even
    sizes, a sink that asks for them: see ``EncoderSettings.i420``) or RGB frames."""
    return "i420" in needs and device_type == "cuda" and even_size(height, width)


@dataclass(frozen=True)
class EncoderSettings:
    """Everything a video sink's encoder is opened with, made once from the ``output`` section
    (``from_config``) and handed whole to every video sink, so no setting can be left behind.

    ``codec`` is resolved (``auto`` already chosen for the device); ``i420``: the frames come as 4:2:0
    planes made on the GPU (CUDA runs; odd sizes still come as RGB), else as RGB. The other defaults
    are OutputConfig's, so ``EncoderSettings()`` encodes like a default config on a CPU machine."""

    codec: str = "libx264"      # resolved, not output.codec's "auto": what auto becomes on a CPU machine
    crf: int = OutputConfig.crf
    preset: str = OutputConfig.preset
    threads: int = OutputConfig.threads  # 0: the encoder chooses
    i420: bool = False

    @classmethod
    def from_config(cls, output_cfg, device_type: str = "cpu") -> "EncoderSettings":
        o = output_cfg
        return cls(codec=resolve_encoder(o.codec, device_type), crf=int(o.crf), preset=o.preset,
                   threads=int(o.threads), i420=device_type == "cuda")

    @property
    def needs(self) -> frozenset:
        """What a video sink with these settings asks the pipeline for (see Sink.needs)."""
        return frozenset({"i420"} if self.i420 else {"dehazed"})

    def options(self) -> dict:
        return encoder_options(self.codec, self.crf, self.preset)


def _prepare_output_file(path: Path) -> None:
    """Create the parent folders and check the file can be created, before any work is done."""
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            raise OutputError(f"cannot write {path}: {parent} is a file, not a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        existed = path.exists()
        with path.open("ab"):
            pass
        if not existed:
            path.unlink()
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {_create_problem(path, exc)}") from exc


def _create_problem(path: Path, exc: OSError) -> str:
    """Why ``path`` cannot be created, in words: ENOENT in a folder that exists means the file
    system does not take new files (/proc, /sys), not that something is missing."""
    if exc.errno == errno.ENOENT and path.parent.is_dir():
        return f"the file system of {path.parent} does not allow creating files there"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied ({path.parent if not path.exists() else path} is not writable)"
    return str(exc.strerror or exc)


class VideoSink(Sink):
    """Encodes with PyAV, keeping the source's frame rate, time base and timestamps.

    Audio packets of the source are copied (not re-encoded), interleaved by time.
    Odd frame sizes are encoded as yuv444p, since 4:2:0 needs even sizes.
    With ``atomic`` the video is written under a temporary name and renamed when finalized: a file
    cut short (a full disk, a killed process) never appears under the final name. (A live segment is
    fragmented instead, and stays visible: it plays up to its last fragment.)
    """

    def __init__(self, path: str | Path, info: StreamInfo, encoder: EncoderSettings = EncoderSettings(),
                 copy_audio: bool = OutputConfig.copy_audio, container_options: dict | None = None,
                 atomic: bool = False):
        self.path = Path(path)
        self.writing = partial_path(self.path) if atomic else self.path
        self._failed: BaseException | None = None
        self.encoder = encoder
        # On CUDA the 4:2:0 planes are made on the GPU (even frame sizes; odd ones come as RGB).
        self.needs = encoder.needs
        _prepare_output_file(self.path)
        self.fps = info.fps or Fraction(25)
        self.time_base = info.time_base or (1 / self.fps)
        self.codec = encoder.codec
        self.expected_frames = info.frame_count
        try:
            self.container = open_output_container(self.writing, container_options)
        except (av.error.FFmpegError, OSError) as exc:
            raise OutputError(f"cannot write video {self.path}: {ffmpeg_message(exc)}") from exc
        self.stream = None
        self._last_pts = None
        self._end_time = 0.0
        self._audio_in = None
        self._audio_out = None
        self._audio_packets = None
        self._pending_audio = None
        if copy_audio and info.has_audio and info.kind == "video":
            self._open_audio(info.location or info.source)

    def _open_audio(self, source: str) -> None:
        try:
            self._audio_in = open_input_container(source)
            a_in = self._audio_in.streams.audio[0]
            self._audio_out = self.container.add_stream_from_template(a_in)
            self._audio_packets = self._audio_in.demux(a_in)
        except (av.error.FFmpegError, ValueError, IndexError):
            # The video matters more than its soundtrack: go on without audio.
            if self._audio_in is not None:
                self._audio_in.close()
            self._audio_in = self._audio_out = self._audio_packets = None

    def _open_video(self, width: int, height: int) -> None:
        try:
            stream = self.container.add_stream(self.codec, rate=self.fps)
        except (av.error.FFmpegError, ValueError) as exc:
            raise OutputError(f"video codec '{self.codec}' is not available: {ffmpeg_message(exc)}") from exc
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p" if even_size(height, width) else "yuv444p"
        # Encoder and stream share the source's time base, so variable-rate timestamps survive exactly.
        stream.time_base = self.time_base
        stream.codec_context.time_base = self.time_base
        stream.options = self.encoder.options()
        if self.encoder.threads:
            stream.codec_context.thread_count = self.encoder.threads
        self.stream = stream

    def _mux_audio_until(self, seconds: float | None) -> None:
        if self._audio_packets is None:
            return
        while True:
            pkt = self._pending_audio
            if pkt is None:
                try:
                    pkt = next(self._audio_packets)
                except (StopIteration, av.error.FFmpegError):
                    self._audio_packets = None
                    return
            if pkt.dts is None:  # demuxer flush packet
                self._pending_audio = None
                continue
            if seconds is not None and float(pkt.pts * pkt.time_base) > seconds:
                self._pending_audio = pkt
                return
            self._pending_audio = None
            pkt.stream = self._audio_out
            self.container.mux(pkt)

    def write(self, frame: Frame, image: np.ndarray, i420: bool = False) -> None:
        """``image``: RGB (H, W, 3), or with ``i420`` the planes (H * 3 / 2, W) in yuv420p layout."""
        h, w = (image.shape[0] * 2 // 3, image.shape[1]) if i420 else image.shape[:2]
        if self.stream is None:
            self._open_video(w, h)
        elif (w, h) != (self.stream.width, self.stream.height):
            raise OutputError(f"frame {frame.index} is {w}x{h} but the video is {self.stream.width}x"
                              f"{self.stream.height}: write images of different sizes to a folder instead")
        pts = frame.pts
        if pts is None or (self._last_pts is not None and pts <= self._last_pts):
            pts = round(frame.index / self.fps / self.time_base)
            if self._last_pts is not None and pts <= self._last_pts:
                pts = self._last_pts + 1
        self._last_pts = pts
        vf = av.VideoFrame.from_ndarray(image, format="yuv420p" if i420 else "rgb24")
        vf.pts = pts
        vf.time_base = self.time_base
        seconds = float(pts * self.time_base)
        self._end_time = seconds + float(1 / self.fps)
        try:
            self._mux_audio_until(seconds)
            for packet in self.stream.encode(vf):
                self.container.mux(packet)
        except (av.error.FFmpegError, OSError) as exc:
            self._failed = exc
            raise write_error(self.path, exc) from exc
        self.written += 1

    def close(self) -> None:
        """Finalize the file; one whose writing failed is removed (atomic), as it would not play."""
        if self.container is None:
            return
        error = self._failed
        try:
            if self.stream is not None and error is None:
                for packet in self.stream.encode(None):
                    self.container.mux(packet)
                # A complete run keeps the whole soundtrack; a cut one (Ctrl-C, --max-frames) ends with the video.
                complete = bool(self.expected_frames) and self.written >= self.expected_frames
                self._mux_audio_until(None if complete else self._end_time)
        except (av.error.FFmpegError, OSError) as exc:
            error = exc
        finally:
            try:
                self.container.close()  # writes the index: on a full disk this is what fails
            except (av.error.FFmpegError, OSError) as exc:
                error = error or exc
            self.container = None
            if self._audio_in is not None:
                self._audio_in.close()
        if self.written == 0 or (error is not None and self.writing != self.path):
            self.writing.unlink(missing_ok=True)  # an mp4 with no frames plays nowhere, nor does a cut one
            self.discarded = error is not None
        elif self.writing != self.path:
            try:
                os.replace(self.writing, self.path)
            except OSError as exc:
                self.writing.unlink(missing_ok=True)
                self.discarded, error = True, exc
        if error is not None and error is not self._failed:  # a failed write has raised already
            raise write_error(self.path, error) from error


class ImageFolderSink(Sink):
    """Writes each frame under its source file name (or frame_NNNNNN.png for video input)."""

    def __init__(self, folder: str | Path, jpeg_quality: int = OutputConfig.jpeg_quality):
        self.path = Path(folder)
        for parent in reversed((self.path / "x").parents):
            if parent.exists() and not parent.is_dir():
                raise OutputError(f"cannot write to folder {self.path}: {parent} is a file, not a folder")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create the output folder {self.path}: "
                              f"{_create_problem(self.path, exc)}") from exc
        self.jpeg_quality = jpeg_quality

    def write(self, frame: Frame, image: np.ndarray) -> None:
        name = frame.name or f"frame_{frame.index:06d}.png"
        target = self.path / name
        if target.parent != self.path:  # a recursive glob's a/1.jpg keeps its folder
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise OutputError(f"cannot create the folder {target.parent}: "
                                  f"{_create_problem(target.parent, exc)}") from exc
        write_image(target, image, frame.alpha, self.jpeg_quality)
        self.written += 1


class ImageFileSink(Sink):
    """A single output image (single image input)."""

    def __init__(self, path: str | Path, jpeg_quality: int = OutputConfig.jpeg_quality):
        self.path = Path(path)
        _prepare_output_file(self.path)
        self.jpeg_quality = jpeg_quality

    def write(self, frame: Frame, image: np.ndarray) -> None:
        if self.written:
            raise OutputError(f"output {self.path} is a single image but the input has several frames")
        write_image(self.path, image, frame.alpha, self.jpeg_quality)
        self.written += 1


class ThreadedSink(Sink):
    """Runs another sink's writes in a background thread, so encoding overlaps the model.

    At most ``maxsize`` frames (output.queue_size; a larger batch alone) wait for the writer: what
    waits there has been processed and is written even after Ctrl-C, so a deep backlog behind a slow
    encoder would make stopping slow. ``busy_seconds`` is the time the inner sink spent writing."""

    _END = object()

    def __init__(self, sink: Sink, maxsize: int = OutputConfig.queue_size):
        self.inner = sink
        self.path = sink.path
        self.needs = sink.needs
        self.busy_seconds = 0.0
        self.maxsize = max(1, maxsize)
        self._queue: queue.Queue = queue.Queue()
        self._pending = 0                      # frames queued and not yet written
        self._room = threading.Condition()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is self._END:
                return
            if self._error is None:
                t0 = time.perf_counter()
                try:
                    self.inner.write_result(item)
                except BaseException as exc:
                    self._error = exc
                self.busy_seconds += time.perf_counter() - t0
            with self._room:
                self._pending -= len(item)
                self._room.notify_all()

    @property
    def written(self) -> int:
        return self.inner.written

    @property
    def discarded(self) -> bool:
        return self.inner.discarded

    def write_result(self, result: BatchResult) -> None:
        if self._error is not None:
            raise self._error
        n = len(result)
        with self._room:
            while self._pending > 0 and self._pending + n > self.maxsize and self._error is None:
                self._room.wait(0.1)
        self._queue.put(result)
        with self._room:  # counted after the put: an interrupt in between can only leave more room
            self._pending += n

    def write(self, frame: Frame, image: np.ndarray) -> None:
        self.write_result(BatchResult(FrameBatch(image[None], [frame]), image[None]))

    def close(self) -> None:
        self._queue.put(self._END)
        self._thread.join()
        try:
            self.inner.close()
        finally:
            if self._error is not None:
                raise self._error


def output_kind(spec: str) -> str:
    """'null', 'video', 'image' or 'folder', from the output path's form. A folder is a path without
    a suffix, one ending with '/', or an existing folder; any other suffix is refused (OutputError)
    rather than guessed."""
    spec = str(spec)
    if spec in ("null", "-", "/dev/null"):
        return "null"
    if spec.endswith(("/", os.sep)):
        return "folder"
    suffix = Path(spec).suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return "video"
    if suffix in IMAGE_SUFFIXES:
        return "image"
    try:
        if not suffix or Path(spec).is_dir():
            return "folder"
    except OSError:
        pass
    raise OutputError(f"output {spec}: unknown file type '{Path(spec).suffix}'; accepted: video "
                      f"{', '.join(VIDEO_SUFFIXES)}; image {', '.join(IMAGE_SUFFIXES)}; or a folder "
                      f"(a path without a suffix, an existing folder, or a path ending with '/'); or 'null'")


def open_sink(spec: str, info: StreamInfo, encoder: EncoderSettings = EncoderSettings(),
              copy_audio: bool = OutputConfig.copy_audio, jpeg_quality: int = OutputConfig.jpeg_quality) -> Sink:
    """The sink ``spec`` names (see ``output_kind``); defaults are OutputConfig's, as in a default run."""
    kind = output_kind(str(spec))
    if kind == "null":
        return NullSink()
    if kind == "video":
        return VideoSink(spec, info, encoder, copy_audio=copy_audio, atomic=True)
    if kind == "image":
        return ImageFileSink(spec, jpeg_quality)
    return ImageFolderSink(spec, jpeg_quality)


def sink_from_config(spec: str, info: StreamInfo, output_cfg, threaded: bool = True, device_type: str = "cpu",
                     encoder: EncoderSettings | None = None) -> Sink:
    """``open_sink`` with the settings of a config's ``output`` section, by default in a background thread;
    codec 'auto' becomes NVENC on CUDA machines that have it, else libx264 (see EncoderSettings.from_config)."""
    o = output_cfg
    encoder = encoder or EncoderSettings.from_config(o, device_type)
    sink = open_sink(spec, info, encoder, copy_audio=o.copy_audio, jpeg_quality=o.jpeg_quality)
    return ThreadedSink(sink, o.queue_size) if threaded else sink
