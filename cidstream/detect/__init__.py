"""Vehicle detection after dehazing: the detector stage, tracking, comparison and evaluation."""
from .detections import Detections, box_iou
from .detector import DEFAULT_DETECTOR, DETECTOR_ENV, VEHICLE_CLASSES, Detector, DetectorError, letterbox
from .tracking import Tracker

__all__ = ["DEFAULT_DETECTOR", "DETECTOR_ENV", "Detections", "Detector", "DetectorError", "Tracker",
           "VEHICLE_CLASSES", "box_iou", "letterbox"]
