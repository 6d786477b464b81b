"""Detection outputs of a run: detections.jsonl, COCO-json and MOT-txt exports, side-by-side video."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..errors import OutputError
from ..frames import BatchResult, StreamInfo
from ..io.atomic import partial_path, write_atomic, write_error
from .base import Sink
from .media import EncoderSettings, ImageFolderSink, ThreadedSink, VideoSink, sink_from_config
from ..detect.arms import B_SUFFIX, Arm
from ..detect.detections import Detections
from ..detect.draw import side_by_side
from .report import ReportCollector, build_report, write_report
from ..detect.stage import DetectStage, hazy_frames

STREAMS = (Arm.DEHAZED, Arm.RAW)


class DetectionLog(Sink):
    """One JSON line per frame as results arrive, MOT lines alongside, COCO files on close.

    Line format: {"frame", "time", "pts", "name", "source", "haze", "visibility_m", "gate"[, "detector": "fog" or
    "base" with a fog detector], "dehazed": [boxes],
    "raw": [boxes], ...} (``raw`` only in compare mode, with the extra arms raw_b, dehazed_b, fused,
    fused_b when asked for; haze level, visibility and gate strength from engine/haze.py); a box is
    {"box": [x1, y1, x2, y2], "class", "class_id", "confidence"[, "track_id"]} in pixels of the
    original frame.

    With ``exports`` (a run) every file is written under a temporary name and renamed when closed whole,
    so a full disk never leaves one cut under its final name; a live stream's log is appended to in place."""

    needs = frozenset()

    def __init__(self, folder: Path, names: dict[int, str], info: StreamInfo, compare: bool, exports: bool = True,
                 extra: tuple[str, ...] = (), fog: bool = False):
        self.folder = Path(folder)
        self.path = self.folder / "detections.jsonl"
        self.names, self.info, self.compare = names, info, compare
        self.streams = (STREAMS if compare else STREAMS[:1]) + tuple(extra)
        self.fog = fog  # a fog detector takes the hazy frames: each line says which detector gave "dehazed"
        self.exports = exports  # COCO and MOT files; off for live streams (COCO is kept in memory until close)
        self._partials: dict[Path, Path] = {}   # temporary name -> final name
        self._failed = False
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._jsonl = self._open(self.path)
            self._mot = {s: self._open(self.folder / self._stem(s, "mot.txt")) for s in self.streams} \
                if exports else {}
        except OSError as exc:
            raise OutputError(f"cannot write detections into {self.folder}: {exc.strerror or exc}") from exc
        self._coco = {s: {"images": [], "annotations": []} for s in self.streams} if exports else {}

    def _open(self, path: Path):
        if not self.exports:
            return path.open("a", encoding="utf-8")
        tmp = partial_path(path)
        self._partials[tmp] = path
        return tmp.open("w", encoding="utf-8")

    @staticmethod
    def _stem(stream: str, suffix: str) -> str:
        return f"detections.{suffix}" if stream == Arm.DEHAZED else f"detections_{stream}.{suffix}"

    def write_result(self, result: BatchResult) -> None:
        try:
            self._write(result)
        except OSError as exc:
            self._failed = True
            raise write_error(self.folder, exc) from exc

    def _write(self, result: BatchResult) -> None:
        per_stream = {s: result.stream(s) for s in self.streams}
        hazy = hazy_frames(result.haze, len(result)) if self.fog else None
        for i, frame in enumerate(result.batch.frames):
            h, w = frame.shape
            line = {"frame": frame.index, "time": None if frame.time is None else round(frame.time, 4),
                    "pts": frame.pts, "name": frame.name, "source": result.batch.source_id}
            line.update(result.haze_record(i))
            if hazy is not None:
                line["detector"] = "fog" if hazy[i] else "base"
            for stream in self.streams:
                det: Detections = per_stream[stream][i]
                line[stream] = det.to_records(self.names)
                if self.exports:
                    self._export(stream, frame, det, w, h)
            self._jsonl.write(json.dumps(line) + "\n")
            self.written += 1
        self._jsonl.flush()

    def _export(self, stream: str, frame, det: Detections, w: int, h: int) -> None:
        coco = self._coco[stream]
        image_id = frame.index + 1
        coco["images"].append({"id": image_id, "file_name": frame.name or f"frame_{frame.index:06d}",
                               "width": w, "height": h, "frame_index": frame.index, "time": frame.time})
        for j in range(len(det)):
            x1, y1, x2, y2 = (float(v) for v in det.xyxy[j])
            track = int(det.tracker_id[j]) if det.tracker_id is not None else -1
            ann = {"id": len(coco["annotations"]) + 1, "image_id": image_id, "category_id": int(det.class_id[j]),
                   "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                   "area": round((x2 - x1) * (y2 - y1), 2), "iscrowd": 0, "score": round(float(det.confidence[j]), 4)}
            if track >= 0:
                ann["track_id"] = track
            coco["annotations"].append(ann)
            self._mot[stream].write(f"{image_id},{track},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},"
                                    f"{det.confidence[j]:.4f},-1,-1,-1\n")

    def close(self) -> None:
        """Keep what is whole: the log and MOT files when every line reached the disk, then each COCO file."""
        error = None
        for fh in (self._jsonl, *self._mot.values()):
            try:
                fh.close()
            except OSError as exc:
                error = error or exc
        try:
            if error is None and not self._failed:
                for tmp, final in self._partials.items():
                    os.replace(tmp, final)
                categories = [{"id": k, "name": v} for k, v in sorted(self.names.items())]
                for stream, coco in self._coco.items():
                    payload = {"info": {"source": self.info.source, "stream": stream,
                                        "note": "category ids are the detector's class ids"},
                               "categories": categories, **coco}
                    write_atomic(self.folder / self._stem(stream, "coco.json"), json.dumps(payload))
        except OSError as exc:
            error = exc
        finally:
            for tmp in self._partials:
                tmp.unlink(missing_ok=True)
        self.discarded = bool(self._partials) and (error is not None or self._failed)
        if error is not None:
            raise write_error(self.folder, error) from error


class SideBySideSink(Sink):
    """raw | dehazed with boxes and per-frame counts, as a video (or images for image inputs); with
    ``second`` (a second detector), its raw | dehazed below."""

    needs = frozenset({"raw", "dehazed"})

    def __init__(self, target: Sink, names: dict[int, str], second: bool = False):
        self.target, self.names, self.second, self.path = target, names, second, target.path

    @classmethod
    def create(cls, folder: Path, info: StreamInfo, names: dict[int, str], output_cfg,
               device_type: str = "cpu", second: bool = False) -> "SideBySideSink":
        o = output_cfg
        if info.kind == "images":
            return cls(ImageFolderSink(Path(folder) / "side_by_side", o.jpeg_quality), names, second)
        return cls(VideoSink(Path(folder) / "side_by_side.mp4", info, EncoderSettings.from_config(o, device_type),
                             copy_audio=False, atomic=True),
                   names, second)

    def write_result(self, result: BatchResult) -> None:
        raw_dets = result.raw_detections or [None] * len(result)
        raw, dehazed = result.raw, result.dehazed
        for i, frame in enumerate(result.batch.frames):
            image = side_by_side(raw[i], dehazed[i], raw_dets[i], result.detections[i], self.names)
            if self.second:
                below = side_by_side(raw[i], dehazed[i], result.arms[Arm.RAW_B][i], result.arms[Arm.DEHAZED_B][i],
                                     self.names, suffix=B_SUFFIX)
                image = np.concatenate([image, below], axis=0)
            self.target.write(frame, image)
            self.written += 1

    def close(self) -> None:
        self.target.close()


class DetectionOutputs:
    """The sinks of a detection run (dehazed frames, log and exports, report collector, side by side)
    and the report written at the end."""

    def __init__(self, folder: Path, source, cfg, dehazer, detectors, compare: bool):
        info = source.info
        self.folder, self.detectors, self.dehazer, self.cfg = folder, detectors, dehazer, cfg
        self.input = info.source
        dehazed = folder / ("dehazed" if info.kind == "images" else "dehazed.mp4")
        self.stage = DetectStage(detectors, compare=compare, track=cfg.detect.track, frame_rate=float(info.fps or 25))
        names = detectors.names  # the other detectors have the same class ids and names (detect/detectors.py)
        self.collector = ReportCollector(names, compare, self.stage.extra)
        device_type = dehazer.device.type
        self.sinks = [ThreadedSink(DetectionLog(folder, names, info, compare, extra=self.stage.extra,
                                                fog=detectors.fog is not None), cfg.output.queue_size),
                      ThreadedSink(self.collector, cfg.output.queue_size)]
        if cfg.output.video:  # off (--no-video): detections and the report only, nothing to encode
            self.sinks.insert(0, sink_from_config(str(dehazed), info, cfg.output, device_type=device_type))
        if compare:
            self.sinks.append(ThreadedSink(SideBySideSink.create(folder, info, names, cfg.output, device_type,
                                                                 detectors.second is not None), cfg.output.queue_size))
        self.report = None

    def finish(self, stats) -> None:
        base = self.detectors.base
        meta = {"input": self.input, "model": self.dehazer.name, "device": str(self.dehazer.device),
                "runtime": self.dehazer.runtime, "detector": base.label, "detector_runtime": base.runtime,
                "classes": [base.names[i] for i in (base.class_ids or base.names)],
                "conf": self.cfg.detect.conf, "iou": self.cfg.detect.iou, "imgsz": base.imgsz}
        if self.detectors.fog is not None:
            meta["fog_detector"] = {"detector": self.detectors.fog.label, "view": self.detectors.fog_view}
        if self.stage.extra:
            meta["arms"] = {"detector_b": self.detectors.second.label if self.detectors.second is not None else None,
                            "fuse": self.detectors.fuse, "extra": list(self.stage.extra)}
        self.report = build_report(self.collector, meta, stats, self.stage.unique_counts())
        try:
            write_report(self.folder, self.report)
        except OSError as exc:
            raise write_error(self.folder / "report.json", exc) from exc
