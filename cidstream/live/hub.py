"""Several cameras, one process, one model: frames of all cameras are batched together (by frame
size) on one device, and results are routed back to each camera's outputs.

A camera that fails (gives up reconnecting, or its disk refuses writes) is marked failed; the others
go on. Stopping (Ctrl-C, SIGTERM, --duration, --max-frames) stops reading, processes the frames
already received, and closes every output."""
from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import CidstreamError
from ..engine.haze import gate_counts
from ..engine.pipeline import BatchProcessor, sink_needs
from ..frames import BatchResult, Frame, FrameBatch
from ..io.atomic import write_atomic
from ..io.decode import resolve_decode
from ..io.live import LiveSource
from ..io.segments import SegmentedVideoSink
from ..io.sinks import EncoderSettings, Sink, ThreadedSink

LATENCY_WINDOW = 2000   # frames per camera kept for latency percentiles (memory stays flat)


def percentile(values, q: float) -> float | None:
    if not values:
        return None
    return float(np.percentile(np.fromiter(values, float), q))


class CameraRun:
    """One camera: its live source, its outputs and its counters."""

    def __init__(self, spec, cfg, root: Path, device_type: str, notify: threading.Event, detector=None,
                 max_frames: int | None = None):
        from ..detect.outputs import DetectionLog
        from ..detect.tracking import Tracker

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
        if detector is not None:
            self.sinks.append(ThreadedSink(DetectionLog(self.folder, detector.names, self.source.info, compare=False,
                                                        exports=False), o.queue_size))
        self.tracker = Tracker(float(self.source.info.fps or 25)) if detector is not None and cfg.detect.track \
            else None
        self.processed = 0
        self.latencies_ms: deque = deque(maxlen=LATENCY_WINDOW)
        self.visibility_m: deque = deque(maxlen=LATENCY_WINDOW)   # per frame, from the haze gate
        self.gated = 0                                              # frames not fully dehazed (gate < 1)
        self._rate: deque = deque(maxlen=64)   # (monotonic time, processed) for the current fps
        self.error: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None or self.source.stats.state == "failed"

    def write(self, result: BatchResult) -> None:
        """This camera's share of a batch that may have held several cameras' frames."""
        if self.error is not None:
            return
        frames = result.batch.frames
        if self.tracker is not None:
            result.detections = [self.tracker.update(d) for d in result.detections]
        try:
            for sink in self.sinks:
                sink.write_result(result)
        except CidstreamError as exc:  # this camera's outputs are broken; the others go on
            self.error = str(exc)
            self.source.stop()
            return
        now = time.monotonic()
        self.latencies_ms.extend((now - f.captured_at) * 1000.0 for f in frames)
        haze = result.haze
        if haze is not None:
            self.visibility_m.extend(haze[1].tolist())
            self.gated += sum(gate_counts(haze[2]))
        self.processed += len(frames)
        self._rate.append((now, self.processed))

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
        return {"name": self.name, "url": self.spec.url, "state": "failed" if self.failed else s.state,
                "fps": round(self.fps(), 2), "received": s.received, "processed": self.processed,
                "dropped": s.dropped, "drop_rate": round(s.dropped / s.received, 4) if s.received else 0.0,
                "latency_ms_p50": _round(percentile(self.latencies_ms, 50)),
                "latency_ms_p95": _round(percentile(self.latencies_ms, 95)),
                "visibility_m": _round(self.visibility_m[-1]) if self.visibility_m else None,
                "visibility_m_p50": _round(percentile(self.visibility_m, 50)),
                "gated_frames": self.gated,
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


class LiveHub:
    def __init__(self, cameras_file, cfg, root: Path, dehazer, detector=None, max_frames: int | None = None):
        self.cfg, self.root, self.dehazer, self.detector = cfg, Path(root), dehazer, detector
        self.notify = threading.Event()
        self.stop_requested = threading.Event()
        self.cameras = [CameraRun(spec, cfg, self.root, dehazer.device.type, self.notify, detector, max_frames)
                        for spec in cameras_file.cameras]
        needs = sink_needs([s for c in self.cameras for s in c.sinks])
        self.processor = BatchProcessor(dehazer, (lambda raw, out: (detector(out), None, {})) if detector else None,
                                        needs)
        self.stats_path = self.root / "stats.json"
        self._turn = 0

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

    def _process(self, items: list[tuple[CameraRun, Frame]]) -> None:
        """One model call (and one detector call) per batch of frames from any cameras; each camera
        then gets its own frames' results, downloaded in its writer threads."""
        batch = self.cfg.engine.batch
        for i in range(0, len(items), batch):
            chunk = items[i:i + batch]
            # Temporal state per camera: one batch mixes cameras, so each frame names its own.
            result = self.processor(FrameBatch.of([f for _, f in chunk]), streams=[cam.name for cam, _ in chunk])
            n = len(chunk)
            dets = result.detections or [None] * n
            # One download per batch (only the forms the cameras' sinks read), then split per camera.
            dehazed = result.dehazed if "dehazed" in self.processor.needs else None
            i420 = result.dehazed_i420
            haze = result.haze
            by_cam: dict[str, list[int]] = {}
            for j, (cam, _) in enumerate(chunk):
                by_cam.setdefault(cam.name, []).append(j)
            for idx in by_cam.values():
                cam = chunk[idx[0]][0]
                fb = FrameBatch(None, [chunk[j][1] for j in idx], cam.name)
                cam.write(BatchResult(fb, None if dehazed is None else dehazed[idx], [dets[j] for j in idx], None,
                                      dehazed_i420=None if i420 is None else i420[idx],
                                      haze=None if haze is None else haze[:, idx]))

    def write_stats(self, started: float, reason: str | None = None) -> list[dict]:
        cams = [c.status() for c in self.cameras]
        payload = {"updated": time.strftime("%Y-%m-%dT%H:%M:%S"), "seconds": round(time.monotonic() - started, 1),
                   "model": self.dehazer.name, "device": str(self.dehazer.device), "stopped": reason,
                   "cameras": cams}
        write_atomic(self.stats_path, json.dumps(payload, indent=1))
        return cams

    def run(self, duration_s: float | None = None, on_status=None) -> HubResult:
        """Process until stopped; ``on_status(list of camera dicts)`` every live.status_every_s."""
        self.root.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        next_status = started
        reason = "interrupted"
        for cam in self.cameras:
            cam.source.start()
        try:
            while True:
                if self.stop_requested.is_set():
                    break
                if duration_s is not None and time.monotonic() - started >= duration_s:
                    reason = "duration"
                    break
                if all(not c.source.running for c in self.cameras) and all(c.source.frames.empty()
                                                                           for c in self.cameras):
                    reason = "all cameras failed" if all(c.failed for c in self.cameras) else "max-frames"
                    break
                self.notify.wait(0.05)
                self.notify.clear()
                for items in self._gather().values():
                    self._process(items)
                if time.monotonic() >= next_status:
                    next_status = time.monotonic() + self.cfg.live.status_every_s
                    cams = self.write_stats(started)
                    if on_status is not None:
                        on_status(cams)
        except KeyboardInterrupt:
            reason = "interrupted"
        finally:
            for cam in self.cameras:      # stop reading ...
                cam.source.stop()
            try:
                while groups := self._gather():      # ... process what was already received ...
                    for items in groups.values():
                        self._process(items)
            finally:
                for cam in self.cameras:  # ... and finalize every output
                    cam.source.close()
                    cam.close()
        cams = self.write_stats(started, reason)
        return HubResult(cams, time.monotonic() - started, reason)
