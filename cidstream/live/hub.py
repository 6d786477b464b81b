"""Several cameras, one process, one model: frames of all cameras are batched together (by frame
size) on one device, and results are routed back to each camera's outputs.

A camera that fails (gives up reconnecting, or its disk refuses writes) is marked failed; the others
go on. Stopping (Ctrl-C, SIGTERM, --duration, --max-frames) stops reading, processes the frames
already received, and closes every output."""
from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..detect.stage import DetectStage
from ..engine.haze import gate_counts
from ..errors import CidstreamError
from ..frames import BatchResult, Frame, FrameBatch
from ..io.atomic import OutputLock, write_atomic, write_error
from ..io.camera import LiveSource
from ..io.decode import resolve_decode
from ..pipeline import DehazeStage, Pipeline, sink_needs
from ..sinks.detections import DetectionLog
from ..sinks.base import Sink
from ..sinks.media import EncoderSettings, ThreadedSink
from ..sinks.segments import SegmentedVideoSink
from .fog_watch import FogEvent, FogWatch

log = logging.getLogger("cidstream.live")
LATENCY_WINDOW = 2000   # frames per camera kept for latency percentiles (memory stays flat)


def percentile(values, q: float) -> float | None:
    if not values:
        return None
    return float(np.percentile(np.fromiter(values, float), q))


class CameraRun:
    """One camera: its live source, its outputs and its counters."""

    def __init__(self, spec, cfg, root: Path, device_type: str, notify: threading.Event, detect=None,
                 max_frames: int | None = None):
        self.spec, self.name = spec, spec.name
        self.folder = Path(root) / spec.output
        self.source = LiveSource.from_config(spec.url, cfg.live, options={**cfg.input.options, **spec.options},
                                             name=spec.name, max_frames=max_frames, notify=notify,
                                             decode=resolve_decode(cfg.input.decode, torch.device(device_type)))
        o = cfg.output
        self.video = SegmentedVideoSink(self.folder, self.source.info, cfg.live.segment_s, prefix=spec.name,
                                        encoder=EncoderSettings.from_config(o, device_type)) \
            if o.video else None
        self.sinks: list[Sink] = [ThreadedSink(self.video, o.queue_size)] if o.video else []
        if detect is not None:  # the hub's DetectStage: its arms are what the log records
            self.sinks.append(ThreadedSink(DetectionLog(self.folder, detect.detectors.names, self.source.info,
                                                        compare=False, exports=False, extra=detect.extra,
                                                        fog=detect.detectors.fog is not None), o.queue_size))
        self.processed = 0
        self.latencies_ms: deque = deque(maxlen=LATENCY_WINDOW)
        self.visibility_m: deque = deque(maxlen=LATENCY_WINDOW)   # per frame, from the haze gate
        self.gated = 0                                              # frames not fully dehazed (gate < 1)
        self._rate: deque = deque(maxlen=64)   # (monotonic time, processed) for the current fps
        self.error: str | None = None
        self.fog = FogWatch.from_config(cfg.live)
        self.fog_events: deque = deque(maxlen=20)   # the latest, for stats.json; all of them in fog_events.jsonl

    @property
    def failed(self) -> bool:
        return self.error is not None or self.source.stats.state == "failed"

    def write(self, result: BatchResult) -> None:
        """This camera's share of a batch that may have held several cameras' frames."""
        if self.error is not None:
            return
        frames = result.batch.frames
        now = time.monotonic()
        haze = result.haze
        try:
            for sink in self.sinks:
                sink.write_result(result)
            if haze is not None:
                for frame, visibility in zip(frames, haze.steady_m.tolist()):
                    event = self.fog.update(frame.captured_at or now, visibility)
                    if event is not None:
                        self._record_fog(event, now)
        except CidstreamError as exc:  # this camera's outputs are broken; the others go on
            self.error = str(exc)
            self.source.stop()
            return
        self.latencies_ms.extend((now - f.captured_at) * 1000.0 for f in frames)
        if haze is not None:
            self.visibility_m.extend(haze.visibility_m.tolist())
            self.gated += sum(gate_counts(haze.strength))
        self.processed += len(frames)
        self._rate.append((now, self.processed))

    def _record_fog(self, event: FogEvent, now: float) -> None:
        """A fog or clear event: a log line, a JSON line in the camera's folder, and stats.json."""
        wall = time.time() - (now - event.at)
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(wall)), "camera": self.name,
                 "event": event.event, "visibility_m": round(event.visibility_m, 1), "threshold_m": event.threshold_m,
                 "held_s": round(event.at - event.since, 1)}
        self.fog_events.append(entry)
        word = "below" if event.event == "fog" else "above"
        log.warning("%s: %s, visibility %.0f m (%s %g m for %.0f s)", self.name, event.event, event.visibility_m,
                    word, event.threshold_m, event.at - event.since)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with open(self.folder / "fog_events.jsonl", "a", encoding="utf-8") as fh:
                fh.write(json.dumps(entry) + "\n")
        except OSError as exc:
            raise write_error(self.folder / "fog_events.jsonl", exc) from exc

    def fps(self, window_s: float = 5.0) -> float:
        now = time.monotonic()
        recent = [(t, n) for t, n in self._rate if now - t <= window_s]
        if len(recent) < 2:
            return 0.0
        (t0, n0), (t1, n1) = recent[0], recent[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0

    def close(self) -> None:
        for sink in self.sinks:
            try:
                sink.close()
            except CidstreamError as exc:
                self.error = self.error or str(exc)

    def status(self) -> dict:
        s = self.source.stats
        return {"name": self.name, "url": self.source.info.source, "state": "failed" if self.failed else s.state,
                "fps": round(self.fps(), 2), "received": s.received, "processed": self.processed,
                "dropped": s.dropped, "drop_rate": round(s.dropped / s.received, 4) if s.received else 0.0,
                "latency_ms_p50": _round(percentile(self.latencies_ms, 50)),
                "latency_ms_p95": _round(percentile(self.latencies_ms, 95)),
                "visibility_m": _round(self.visibility_m[-1]) if self.visibility_m else None,
                "visibility_m_p50": _round(percentile(self.visibility_m, 50)),
                "gated_frames": self.gated, "fog": self.fog.foggy, "fog_events": list(self.fog_events),
                "reconnects": s.reconnects, "watchdog_fires": s.watchdog_fires,
                "error": self.error or s.last_error,
                "segments": [p.name for p in self.video.segments] if self.video else [], "folder": str(self.folder),
                "events": [{"time": round(t, 3), "event": e} for t, e in s.events]}


def _round(x):
    return None if x is None else round(x, 1)


@dataclass
class HubResult:
    cameras: list[dict]
    seconds: float
    reason: str          # why it stopped: interrupted, duration, max-frames, all cameras failed

    @property
    def received(self) -> int:
        """Frames the cameras delivered: none after --duration means the run watched nothing, a failure."""
        return sum(c["received"] for c in self.cameras)


class CameraRouter(Sink):
    """The pipeline's one sink in live: each camera's share of a batch (frames of several cameras are
    batched together) goes to that camera's outputs; what they read is downloaded once per batch."""

    def __init__(self, cameras: list[CameraRun]):
        self.cameras = {c.name: c for c in cameras}
        self.needs = sink_needs([s for c in cameras for s in c.sinks])

    def write_result(self, result: BatchResult) -> None:
        by_cam: dict[str, list[int]] = {}
        for j, name in enumerate(result.batch.streams):
            by_cam.setdefault(name, []).append(j)
        for name, idx in by_cam.items():
            self.cameras[name].write(result.select(idx, name, self.needs))

    def close(self) -> None:
        for cam in self.cameras.values():
            cam.close()


class LiveHub:
    def __init__(self, cameras_file, cfg, root: Path, dehazer, detectors=None, max_frames: int | None = None):
        """``detectors``: a Detector or Detectors (detect/detectors.py), or None: no detection."""
        self.cfg, self.root, self.dehazer = cfg, Path(root), dehazer
        self.lock = OutputLock(self.root)
        self.lock.check()  # a live run already writing this folder: refused before any camera opens
        self.notify = threading.Event()
        self.stop_requested = threading.Event()
        detect = DetectStage(detectors, track=cfg.detect.track) if detectors is not None else None
        self.cameras = [CameraRun(spec, cfg, self.root, dehazer.device.type, self.notify, detect, max_frames)
                        for spec in cameras_file.cameras]
        if detect is not None:
            detect.frame_rates = {c.name: float(c.source.info.fps or 25) for c in self.cameras}
        self.pipeline = Pipeline(DehazeStage(dehazer), detect, [CameraRouter(self.cameras)], live=True)
        self.stats_path = self.root / "stats.json"
        self._turn = 0
        self._reason: str | None = None

    def _gather(self) -> dict[tuple, list[tuple[CameraRun, Frame]]]:
        """Every camera's waiting frames (at most a batch each, starting with a different camera
        each round), grouped by frame size so that they stack."""
        groups: dict[tuple, list] = {}
        n = len(self.cameras)
        for k in range(n):
            cam = self.cameras[(self._turn + k) % n]
            for frame in cam.source.take(self.cfg.engine.batch):
                groups.setdefault(frame.layout, []).append((cam, frame))
        self._turn += 1
        return groups

    def _waiting_batches(self):
        """The frames received so far, in batches of any cameras (one model and detector call each);
        each frame names its camera (temporal state, tracking and routing are per camera)."""
        batch = self.cfg.engine.batch
        for items in self._gather().values():
            for i in range(0, len(items), batch):
                chunk = items[i:i + batch]
                yield FrameBatch.of([f for _, f in chunk], streams=tuple(cam.name for cam, _ in chunk))

    def _live_batches(self, started: float, duration_s: float | None, on_status):
        """Batches until a stop: Ctrl-C or stop_requested, --duration, or no camera left running."""
        next_status = started
        while True:
            if self.stop_requested.is_set():
                return
            if duration_s is not None and time.monotonic() - started >= duration_s:
                self._reason = "duration"
                return
            if all(not c.source.running for c in self.cameras) and all(c.source.frames.empty()
                                                                       for c in self.cameras):
                self._reason = "all cameras failed" if all(c.failed for c in self.cameras) else "max-frames"
                return
            self.notify.wait(0.05)
            self.notify.clear()
            yield from self._waiting_batches()
            if time.monotonic() >= next_status:
                next_status = time.monotonic() + self.cfg.live.status_every_s
                cams = self.write_stats(started)
                if on_status is not None:
                    on_status(cams)

    def _remaining_batches(self):
        while True:
            batches = list(self._waiting_batches())
            if not batches:
                return
            yield from batches

    def write_stats(self, started: float, reason: str | None = None) -> list[dict]:
        cams = [c.status() for c in self.cameras]
        payload = {"updated": time.strftime("%Y-%m-%dT%H:%M:%S"), "seconds": round(time.monotonic() - started, 1),
                   "model": self.dehazer.name, "device": str(self.dehazer.device), "stopped": reason,
                   "cameras": cams}
        write_atomic(self.stats_path, json.dumps(payload, indent=1))
        return cams

    def run(self, duration_s: float | None = None, on_status=None) -> HubResult:
        """Process until stopped; ``on_status(list of camera dicts)`` every live.status_every_s. Stopping
        stops reading, processes the frames already received, and finalizes every output. The output
        folder is held (io.atomic.OutputLock, as ``run`` holds its output): a second run into it is refused."""
        with self.lock:
            return self._run(duration_s, on_status)

    def _run(self, duration_s: float | None, on_status) -> HubResult:
        self.root.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        for cam in self.cameras:
            cam.source.start()
        try:
            self.pipeline.feed(self._live_batches(started, duration_s, on_status))
        finally:
            for cam in self.cameras:      # stop reading ...
                cam.source.stop()
            try:
                self.pipeline.feed(self._remaining_batches())    # ... process what was already received ...
            finally:
                for cam in self.cameras:  # ... and finalize every output
                    cam.source.close()
                self.pipeline.close()
        reason = "interrupted" if self.pipeline.stats.interrupted else self._reason or "interrupted"
        cams = self.write_stats(started, reason)
        return HubResult(cams, time.monotonic() - started, reason)
