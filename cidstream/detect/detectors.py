"""The detectors of a run, built once from the config's ``detect`` section and handed on as one object:
the base detector, the fog-adapted one that takes the frames the gate dehazes, and a second detector
for comparison arms. Every command (run, batch, live, eval, bench) builds them here."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from .cache import resolve_cached
from .detector import Detector, DetectorSpec


@dataclass(frozen=True)
class DetectorsSpec:
    """What the detectors are built from (paths resolved, short names looked up in the cache). Hashable:
    a batch worker loads one set per distinct spec."""

    base: DetectorSpec
    fog: str = ""
    fog_view: str = "dehazed"
    second: str = ""
    fuse: str = ""

    @classmethod
    def from_config(cls, d) -> "DetectorsSpec":
        fog = resolve_cached(d.fog_detector, "--fog-detector") if d.fog_detector else ""
        second = resolve_cached(d.detector_b, "--detector-b") if d.detector_b else ""
        return cls(DetectorSpec.from_config(d), fog, d.fog_view, second, d.fuse or "")


@dataclass(frozen=True)
class Detectors:
    base: Detector
    fog: Detector | None = None
    fog_view: str = "dehazed"
    second: Detector | None = None
    fuse: str | None = None

    @classmethod
    def from_spec(cls, spec: DetectorsSpec, device) -> "Detectors":
        base = Detector.from_spec(spec.base, device)
        fog = _alike(spec.fog, base, "--fog-detector") if spec.fog else None
        second = _alike(spec.second, base, "--detector-b") if spec.second else None
        return cls(base, fog, spec.fog_view, second, spec.fuse or None)

    @classmethod
    def from_config(cls, detect_cfg, device) -> "Detectors":
        return cls.from_spec(DetectorsSpec.from_config(detect_cfg), device)

    @property
    def device(self):
        return self.base.device

    @property
    def names(self) -> dict[int, str]:
        return self.base.names


def _alike(spec: str, base: Detector, role: str) -> Detector:
    """Another detector with the base's classes and settings (its CPU runtime included), refused unless it names
    its classes the same way under the same ids (its boxes must mean the same thing)."""
    other = Detector(spec, classes=[base.names[i] for i in base.class_ids] if base.class_ids else None,
                     conf=base.conf, iou=base.iou, imgsz=base.imgsz, device=base.device,
                     runtime=base.requested_runtime)
    if other.names != base.names:
        raise ConfigError(f"{role} {other.label} names its classes differently from {base.label} "
                          f"({len(other.names)} vs {len(base.names)} classes, or other names under the same ids): "
                          "use a detector trained on the same classes (cidstream train detector keeps them)")
    return other
