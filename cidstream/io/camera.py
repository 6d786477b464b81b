"""Live sources (RTSP, HTTP MJPEG/HLS, capture devices) that survive the real world.

A supervisor thread owns the connection: it opens the stream with PyAV, decodes in a connection
thread, and watches the age of the newest frame. PyAV's own timeouts cover a dead socket, not a
camera that keeps the connection alive without sending pictures, so when no frame has arrived for
``watchdog_s`` the connection is abandoned (its thread exits at its next read or timeout and closes
its own container) and a new one is opened after an exponential backoff with jitter. Frames go into
a small drop-oldest queue: whoever consumes them always gets fresh ones and latency stays bounded.

A source that has never sent a frame and cannot be opened for a reason no reconnect fixes (see
``PERMANENT_ERRORS``) fails at once instead of retrying forever.
"""
from __future__ import annotations

import queue
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Iterator

import av

from ..config import LiveConfig
from ..errors import InputError
from ..frames import Frame, StreamInfo
from ..redact import redact_url, redacting_logger
from .decode import FrameDecoder
from .reader import END
from .sources import Source, ffmpeg_message, not_video

log = redacting_logger("cidstream.live")  # hub.py logs here too: no line shows a camera's password

# Live timestamps are wall-clock milliseconds since the source started, so they stay monotonic
# across reconnects and show the real timing of a stream with dropped frames.
LIVE_TIME_BASE = Fraction(1, 1000)

# Errors opening a stream that reconnecting will not fix: nothing at that path (an absent /dev/videoN),
# not a stream FFmpeg can read (an HTML page), HTTP/RTSP 404, HTTP 401/403 (a wrong password does not
# become right), or a protocol or format this FFmpeg lacks. Trusted only while the source has never sent a frame: a camera that streamed once may come
# back whatever it answers now, and a refused connection or a timeout is a camera rebooting.
PERMANENT_ERRORS = (av.error.FileNotFoundError, av.error.InvalidDataError, av.error.HTTPNotFoundError,
                    av.error.HTTPUnauthorizedError, av.error.HTTPForbiddenError, av.error.LookupError)


def is_capture_device(spec: str) -> bool:
    return spec.startswith("/dev/video")


@dataclass
class LiveStats:
    received: int = 0          # frames decoded from the camera
    dropped: int = 0           # frames dropped because the consumer was busy (drop-oldest)
    reconnects: int = 0        # connections opened after the first
    watchdog_fires: int = 0    # connections abandoned because no frame came for watchdog_s
    state: str = "starting"    # connecting | streaming | waiting | stopped | failed
    last_error: str | None = None
    connected_at: float | None = None   # monotonic time of the newest connection's first frame
    events: deque = field(default_factory=lambda: deque(maxlen=50), repr=False)  # (wall time, text)

    def event(self, text: str) -> None:
        self.events.append((time.time(), text))


class _Connection:
    """One attempt: opens the stream and decodes into the source's queue until told to stop."""

    def __init__(self, source: "LiveSource", attempt: int):
        self.source, self.attempt = source, attempt
        self.stop = threading.Event()
        self.started = time.monotonic()
        self.last_frame = None          # monotonic time of the newest frame
        self.error: str | None = None
        self.permanent = False          # av.open failed with one of PERMANENT_ERRORS
        self.ended = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"live-{source.name}-{attempt}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        src = self.source
        container = None
        try:
            container = av.open(src.url, options=src.av_options(), timeout=(src.open_timeout_s, src.read_timeout_s),
                                **({"format": "v4l2"} if is_capture_device(src.url) else {}))
            problem = not_video(container)
            if problem is not None:  # text or audio served where video was expected: no reconnect fixes it
                self.permanent = True
                raise InputError(problem)
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            rate = stream.average_rate or stream.guessed_rate
            if rate:
                src.info.fps = Fraction(rate)
            t0 = time.perf_counter()
            for vf in container.decode(stream):
                if self.stop.is_set():
                    return
                now = time.monotonic()
                self.last_frame = now
                decoded = src.decoder.frame(vf, 0)
                src.busy_seconds += time.perf_counter() - t0  # reading and decoding, as a file's reader counts it
                src._deliver(decoded, now, self)
                t0 = time.perf_counter()
            self.error = "the stream ended"
        except InputError as exc:
            self.error = str(exc)
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            self.error = ffmpeg_message(exc)
            self.permanent = container is None and isinstance(exc, PERMANENT_ERRORS)
        except Exception as exc:  # anything else from the decoder: this connection is over, try another
            self.error = redact_url(f"{type(exc).__name__}: {exc}")
        finally:
            if container is not None:
                try:
                    container.close()
                except Exception:  # closing a broken connection may fail too; nothing left to save
                    pass
            self.ended.set()


class LiveSource(Source):
    """A reconnecting live stream; iterate it, or ``start()`` it and ``take()`` frames without blocking.

    The connection settings default to LiveConfig's (the config's ``live`` section), so a source made in
    Python behaves like one from a default config. ``decode`` is a resolved decode path (io/decode.py),
    not input.decode's ``auto``: rgb24, the software path every stream can take."""

    live = True

    def __init__(self, url: str, name: str | None = None, options: dict | None = None,
                 transport: str = LiveConfig.transport, open_timeout_s: float = LiveConfig.open_timeout_s,
                 read_timeout_s: float = LiveConfig.read_timeout_s, watchdog_s: float = LiveConfig.watchdog_s,
                 reconnect: bool = LiveConfig.reconnect, max_reconnects: int = LiveConfig.max_reconnects,
                 backoff_initial_s: float = LiveConfig.backoff_initial_s,
                 backoff_max_s: float = LiveConfig.backoff_max_s, backoff_jitter: float = LiveConfig.backoff_jitter,
                 queue_size: int = LiveConfig.queue_size,
                 max_frames: int | None = None, notify: threading.Event | None = None, decode: str = "rgb24"):
        self.url, self.name = url, name or redact_url(url)  # the URL opens the stream; the name is shown
        self.decoder = FrameDecoder("rgb24" if decode == "nvdec" else decode)  # streams decode in software
        self.options = {str(k): str(v) for k, v in (options or {}).items()}
        self.transport = transport
        self.open_timeout_s, self.read_timeout_s, self.watchdog_s = open_timeout_s, read_timeout_s, watchdog_s
        self.reconnect, self.max_reconnects = reconnect, max_reconnects
        self.backoff_initial_s, self.backoff_max_s, self.backoff_jitter = backoff_initial_s, backoff_max_s, backoff_jitter
        self.max_frames = max_frames
        self.frames: queue.Queue = queue.Queue(maxsize=max(1, queue_size))
        self.notify = notify
        self.stats = LiveStats()
        self.info = StreamInfo(source=redact_url(url), kind="live", fps=Fraction(25), time_base=LIVE_TIME_BASE)
        self._stop = threading.Event()
        self._t0 = None
        self._index = 0
        self._lock = threading.Lock()
        self._supervisor: threading.Thread | None = None
        self._current: _Connection | None = None
        self.failure: InputError | None = None
        self.busy_seconds = 0.0   # time the connection threads spent reading and decoding frames

    @classmethod
    def from_config(cls, url: str, live_cfg, options: dict | None = None, name: str | None = None,
                    max_frames: int | None = None, notify=None, decode: str = "rgb24") -> "LiveSource":
        c = live_cfg
        return cls(url, name=name, options=options, transport=c.transport, open_timeout_s=c.open_timeout_s,
                   read_timeout_s=c.read_timeout_s, watchdog_s=c.watchdog_s, reconnect=c.reconnect,
                   max_reconnects=c.max_reconnects, backoff_initial_s=c.backoff_initial_s,
                   backoff_max_s=c.backoff_max_s, backoff_jitter=c.backoff_jitter, queue_size=c.queue_size,
                   max_frames=max_frames, notify=notify, decode=decode)

    def av_options(self) -> dict:
        opts = dict(self.options)
        if self.url.lower().startswith(("rtsp://", "rtsps://")):
            opts.setdefault("rtsp_transport", self.transport)
        return opts

    # -- producer side (connection threads) --------------------------------------------------------
    def _deliver(self, decoded: Frame, now: float, conn: _Connection) -> None:
        with self._lock:
            if conn is not self._current or self._stop.is_set():
                return  # an abandoned connection still decoding: ignore it
            if self.max_frames is not None and self._index >= self.max_frames:
                self._stop.set()
                return
            if self._t0 is None:
                self._t0 = now
            if self.stats.connected_at is None or self.stats.state != "streaming":
                self.stats.connected_at = now
                self.stats.state = "streaming"
                h, w = decoded.shape
                self.stats.event(f"streaming ({w}x{h})")
                if self.info.width is None:
                    self.info.height, self.info.width = h, w
            t = now - self._t0
            frame = Frame(decoded.image, self._index, pts=round(t / LIVE_TIME_BASE), time=t, captured_at=now,
                          planes=decoded.planes)
            self._index += 1
            self.stats.received += 1
        q = self.frames
        with q.mutex:  # drop the oldest and put the newest as one step: a consumer never sees the queue one short
            if len(q.queue) >= q.maxsize:
                q.queue.popleft()
                self.stats.dropped += 1
            q.queue.append(frame)
            q.unfinished_tasks += 1
            q.not_empty.notify()
        if self.notify is not None:
            self.notify.set()

    # -- supervisor -----------------------------------------------------------------------------
    def start(self) -> "LiveSource":
        if self._supervisor is None:
            self._supervisor = threading.Thread(target=self._supervise, name=f"live-{self.name}", daemon=True)
            self._supervisor.start()
        return self

    def _backoff(self, failures: int) -> float:
        delay = min(self.backoff_max_s, self.backoff_initial_s * (2 ** max(0, failures - 1)))
        return delay * (1 + self.backoff_jitter * (2 * random.random() - 1))

    def _supervise(self) -> None:
        failures = 0   # consecutive connections that delivered no frame
        attempt = 0
        while not self._stop.is_set():
            attempt += 1
            if attempt > 1:
                self.stats.reconnects += 1
            self.stats.state = "connecting"
            with self._lock:
                self._current = conn = _Connection(self, attempt)
            reason, permanent = self._watch(conn)
            with self._lock:
                self._current = None
            conn.stop.set()
            if self._stop.is_set():
                break
            if conn.last_frame is not None:
                failures = 0  # it worked for a while: start the backoff from the beginning
            failures += 1
            self.stats.last_error = reason
            if permanent and not self.stats.received:
                self._fail(f"cannot read camera {self.name}: {reason}")
                break
            if not self.reconnect or (self.max_reconnects and self.stats.reconnects >= self.max_reconnects):
                self._fail(f"camera {self.name}: {reason}; " + ("reconnecting is off" if not self.reconnect else
                                                               f"gave up after {self.stats.reconnects} reconnects"))
                break
            delay = self._backoff(failures)
            self.stats.state = "waiting"
            self.stats.event(f"{reason}; reconnecting in {delay:.1f} s")
            log.warning("camera %s: %s; reconnect %d in %.1f s", self.name, reason, self.stats.reconnects + 1,
                        delay)
            self._stop.wait(delay)
        if self.stats.state != "failed":
            self.stats.state = "stopped"
        if self.notify is not None:
            self.notify.set()

    def _fail(self, message: str) -> None:
        self.failure = InputError(message)
        self.stats.state = "failed"
        self.stats.event(message)
        log.error("%s", message)

    def _watch(self, conn: _Connection) -> tuple[str, bool]:
        """Wait until the connection ends or goes silent; returns why it is over, and whether that
        reason is one of PERMANENT_ERRORS."""
        while not self._stop.is_set():
            if conn.ended.wait(0.05):
                return conn.error or "the connection closed", conn.permanent
            newest = conn.last_frame or conn.started
            if time.monotonic() - newest > self.watchdog_s:
                self.stats.watchdog_fires += 1
                what = "no frame" if conn.last_frame is not None else "no first frame"
                return f"watchdog: {what} for {self.watchdog_s:g} s", False
        return "stopped", False

    # -- consumer side --------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._supervisor is not None and self._supervisor.is_alive()

    def take(self, limit: int) -> list[Frame]:
        out = []
        while len(out) < limit:
            try:
                out.append(self.frames.get_nowait())
            except queue.Empty:
                break
        return out

    def __iter__(self) -> Iterator[Frame]:
        self.start()
        while True:
            try:
                yield self.frames.get(timeout=0.1)
            except queue.Empty:
                if not self.running and self.frames.empty():
                    break
        if self.failure is not None:
            raise self.failure

    def reader(self) -> "LiveReader":
        """The pipeline's view of this source (``get``/``stop``, like a BackgroundReader): its own
        drop-oldest queue is the only buffer between the camera and the model."""
        return LiveReader(self)

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self.stop()
        if self._supervisor is not None:
            self._supervisor.join(timeout=2.0)


class LiveReader:
    """Takes frames straight from a live source's drop-oldest queue (live.queue_size).

    No second queue is put behind it (as a file's BackgroundReader would be): frames waiting
    between camera and model are at most the live queue plus the batch being collected, so latency
    stays what live.queue_size promises. Drops are counted by the source (``stats.dropped``)."""

    dropped = 0

    def __init__(self, source: LiveSource):
        self.source = source.start()

    @property
    def busy_seconds(self) -> float:
        return self.source.busy_seconds

    def get(self, timeout: float | None = None):
        """Next frame, or END once the source has stopped and its queue is empty (raising the
        source's failure, if any); raises queue.Empty on timeout."""
        src = self.source
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = 0.1 if end is None else min(0.1, max(0.0, end - time.monotonic()))
            try:
                return src.frames.get(timeout=wait)
            except queue.Empty:
                if not src.running and src.frames.empty():
                    if src.failure is not None:
                        raise src.failure
                    return END
                if end is not None and time.monotonic() >= end:
                    raise

    def stop(self, join_timeout: float = 1.0) -> None:
        self.source.stop()
