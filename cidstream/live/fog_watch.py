"""Fog events per camera: a fog event when visibility stays below ``event_m`` for ``hold_s``, a clear event
when it then stays above ``clear_m`` (> event_m) for ``hold_s``. The gap between the two thresholds and the
hold time keep a visibility that wavers around one threshold from sending an event per frame."""
from __future__ import annotations

from dataclasses import dataclass

FOG, CLEAR = "fog", "clear"


@dataclass
class FogEvent:
    event: str              # fog | clear
    at: float               # the time of the frame that completed the hold (the caller's clock)
    since: float            # when visibility first crossed the threshold, on the same clock
    visibility_m: float     # the lowest (fog) or highest (clear) visibility seen during the hold
    threshold_m: float


class FogWatch:
    def __init__(self, event_m: float, clear_m: float, hold_s: float):
        if clear_m < event_m:
            raise ValueError(f"clear_m ({clear_m:g}) must be at least event_m ({event_m:g})")
        self.event_m, self.clear_m, self.hold_s = event_m, clear_m, hold_s
        self.state = CLEAR
        self._since: float | None = None   # when the opposite condition began, or None
        self._extreme = 0.0

    @classmethod
    def from_config(cls, live_cfg) -> "FogWatch":
        return cls(live_cfg.fog_event_m, live_cfg.fog_clear_m, live_cfg.fog_hold_s)

    @property
    def foggy(self) -> bool:
        return self.state == FOG

    def update(self, t: float, visibility_m: float) -> FogEvent | None:
        """One frame's visibility at time ``t`` (seconds, any steady clock): the event it completes, if any."""
        crossing = visibility_m < self.event_m if self.state == CLEAR else visibility_m > self.clear_m
        if not crossing:
            self._since = None
            return None
        if self._since is None:
            self._since, self._extreme = t, visibility_m
        self._extreme = min(self._extreme, visibility_m) if self.state == CLEAR else max(self._extreme, visibility_m)
        if t - self._since < self.hold_s:
            return None
        self.state = FOG if self.state == CLEAR else CLEAR
        event = FogEvent(self.state, t, self._since, self._extreme,
                         self.event_m if self.state == FOG else self.clear_m)
        self._since = None
        return event
