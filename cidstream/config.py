"""One config system: YAML files in ``configs/`` mapped onto these dataclasses.

Precedence: dataclass defaults < ``configs/default.yaml`` (when running from a checkout)
< ``--config FILE`` < explicit CLI flags and ``--set section.key=value``.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import ConfigError

DEFAULT_CONFIG_FILE = Path(__file__).resolve().parent.parent / "configs" / "default.yaml"


@dataclass
class DCPParams:
    patch: int = 15             # dark-channel window, pixels
    omega: float = 0.95         # fraction of haze removed (1.0 looks unnatural)
    t0: float = 0.1             # lower bound on transmission, avoids amplifying noise
    top_fraction: float = 0.001  # share of brightest dark-channel pixels used for the airlight
    radius: typing.Optional[int] = None  # guided-filter radius; None scales with frame size
    eps: float = 0.001          # guided-filter regularisation
    subsample: int = 4          # fast guided filter: coefficients on a grid this much coarser (1 = exact)
    sky_tolerance: float = 0.1  # K: pixels within K of the airlight (sky) are not over-amplified (0 = off)


@dataclass
class ModelConfig:
    name: str = "cid-lite"      # registry name (cid-lite, dcp, cid) or a weights file path
    dcp: DCPParams = field(default_factory=DCPParams)


@dataclass
class EngineConfig:
    device: str = "auto"        # auto (cuda if present, else cpu), cpu, cuda, cuda:N
    precision: str = "auto"     # auto (bf16 on capable CPUs, fp16/bf16 on CUDA), fp32, bf16, fp16
    batch: int = 4              # frames per temporal batch
    max_latency_ms: float = 100.0  # live sources: flush a partial batch after this long
    channels_last: bool = True


@dataclass
class InputConfig:
    queue_size: int = 32        # decoded frames buffered ahead of the model
    decode_threads: int = 0     # 0 lets FFmpeg choose
    image_fps: float = 25.0     # frame rate given to image folders written as video
    options: dict = field(default_factory=dict)  # extra FFmpeg/PyAV options (e.g. rtsp_transport)
    decode: str = "auto"        # auto | rgb24 | yuv420p | nvdec: the form decoded frames take (cidstream/io/decode.py)


@dataclass
class OutputConfig:
    codec: str = "auto"         # auto: h264_nvenc on CUDA machines that have it, else libx264; or any FFmpeg encoder
    crf: int = 20               # quality: lower is better and larger
    preset: str = "veryfast"    # x264 speed/size trade-off
    threads: int = 0            # encoder threads (0: the encoder chooses, all cores for libx264)
    video: bool = True          # false: detections and report only, no dehazed video (--no-video)
    copy_audio: bool = True
    jpeg_quality: int = 95
    queue_size: int = 32        # frames buffered ahead of the encoder


@dataclass
class DetectConfig:
    detector: str = ""          # Ultralytics model file or name; "" = $CIDSTREAM_DETECTOR, else yolo11n.pt
    classes: list = field(default_factory=lambda: ["car", "bus", "truck", "motorcycle", "bicycle"])  # [] = all
    conf: float = 0.25          # confidence threshold for run (eval uses 0.001, as AP needs the full ranking)
    iou: float = 0.7            # NMS IoU
    imgsz: int = 640            # detector input size
    track: bool = False         # ByteTrack ids and unique-vehicle counts


@dataclass
class LiveConfig:
    transport: str = "tcp"          # RTSP transport: tcp (default; survives NAT and loss) | udp
    open_timeout_s: float = 10.0    # PyAV: give up opening a stream after this long
    read_timeout_s: float = 10.0    # PyAV: give up a read that returns nothing for this long
    watchdog_s: float = 5.0         # no new frame for this long: drop the connection and reconnect
    reconnect: bool = True
    max_reconnects: int = 0         # 0 = forever
    backoff_initial_s: float = 0.5  # first wait before reconnecting; doubles per failed attempt
    backoff_max_s: float = 30.0
    backoff_jitter: float = 0.3     # +-30% random spread, so many cameras do not reconnect in lockstep
    queue_size: int = 4             # frames buffered per camera; older ones are dropped when processing lags
    segment_s: float = 300.0        # cidstream live: a new video file every this many seconds (0 = one file)
    status_every_s: float = 2.0     # cidstream live: terminal status and stats.json refresh


# Video files an input folder or glob picks up (input: 14 suffixes). Not cidstream.io.sinks.VIDEO_SUFFIXES, the
# containers an output may be written as (5).
INPUT_VIDEO_SUFFIXES = [".mp4", ".mkv", ".mov", ".avi", ".ts", ".m2ts", ".mts", ".m4v", ".webm", ".mpg", ".mpeg",
                        ".flv", ".wmv", ".3gp"]
VIDEO_SUFFIXES = INPUT_VIDEO_SUFFIXES  # the older name


@dataclass
class BatchConfig:
    engine: str = "local"       # local (worker processes or threads here) | ray (a Ray cluster)
    workers: int = 1            # files processed at once (ray: 0 = as many as the cluster has CPUs/GPUs for)
    local_workers: str = "auto"  # auto: threads sharing one model on CUDA, processes on CPU | processes | threads
    address: str = ""           # ray: cluster address; "" starts a Ray instance on this machine, "auto" joins one
    cpus_per_task: float = 1.0  # ray: CPUs reserved per file
    gpus_per_task: float = 1.0  # ray: GPUs reserved per file when running on CUDA (0.5 packs two per GPU)
    max_attempts: int = 2       # tries per file when its worker process dies (not for files that fail to decode)
    video_suffixes: list = field(default_factory=lambda: list(INPUT_VIDEO_SUFFIXES))  # what a folder or glob picks up


@dataclass
class TemporalConfig:
    """Video only (files, cameras): image folders and eval are never smoothed (docs/architecture.md)."""
    enabled: bool = True        # smooth cid-lite's coefficient maps / dcp's airlight and transmission over time
    alpha: float = 0.25         # weight of the current frame in the moving average of the maps (1 = no smoothing)
    level_alpha: float = 0.3    # the same for global values: dcp's airlight, the output's brightness gain
    motion: float = 0.04        # |Δ grey| at which a map cell follows the current frame fully (0 = no motion adaption)
    cut_threshold: float = 0.08  # mean |Δ| of a grey thumbnail (0..1) that counts as a scene cut: state reset


@dataclass
class GateConfig:
    """Haze gating (engine/haze.py): how much of the dehazed frame to keep, from each frame's haze level
    calibrated to metres of visibility (benchmarks/visibility_fit.py, gate_check.py)."""
    # Default chosen by benchmarks/gate_check.py: clear frames keep their detections, fog gains stay.
    policy: typing.Union[str, bool] = "skip"  # off (always dehazed) | skip (raw frame at or above clear_m) | blend
    clear_m: float = 10000.0    # visibility at or above which a frame counts as clear (skip: raw; blend: strength 0)
    dense_m: float = 1000.0     # blend: full dehazing at or below this visibility (log-linear in between)
    measure: str = "contrast"   # haze level: contrast | transmission | dark (the calibration below is for contrast)
    calib_a: float = 21.3215    # visibility_m = exp(calib_a + calib_b * level), clipped to 10..20000 m;
    calib_b: float = -3.5265    # fitted on highway_fog_cam select days (benchmarks/results/visibility_fit.json)


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    input: InputConfig = field(default_factory=InputConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    detect: DetectConfig = field(default_factory=DetectConfig)
    batch: BatchConfig = field(default_factory=BatchConfig)
    live: LiveConfig = field(default_factory=LiveConfig)
    temporal: TemporalConfig = field(default_factory=TemporalConfig)
    gate: GateConfig = field(default_factory=GateConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _check_type(value, hint, where: str):
    origin = typing.get_origin(hint)
    if origin is typing.Union:
        for arg in typing.get_args(hint):
            if arg is type(None) and value is None:
                return None
            try:
                return _check_type(value, arg, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where}: {value!r} has the wrong type")
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if hint is list or origin is list:
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        raise ConfigError(f"{where}: expected a list of names, got {value!r}")
    if hint is dict or origin is dict:
        if isinstance(value, dict):
            return dict(value)
        raise ConfigError(f"{where}: expected a mapping, got {value!r}")
    return value


def merge(obj, data: dict, where: str = "") -> None:
    """Apply a nested mapping onto a dataclass instance, rejecting unknown keys and bad types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping of keys, got {type(data).__name__}")
    hints = typing.get_type_hints(type(obj))
    names = [f.name for f in dataclasses.fields(obj)]
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in names:
            raise ConfigError(f"unknown config key '{path}' (known keys here: {', '.join(names)})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            merge(current, value, path)
        else:
            setattr(obj, key, _check_type(value, hints[key], path))


@dataclass(frozen=True)
class Range:
    """Allowed values of a numeric setting: ``lo``/``hi`` bounds (None = unbounded), open or closed."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def holds(self, v) -> bool:
        if isinstance(v, float) and not math.isfinite(v):
            return False
        if self.lo is not None and not (v > self.lo if self.lo_open else v >= self.lo):
            return False
        if self.hi is not None and not (v < self.hi if self.hi_open else v <= self.hi):
            return False
        return True

    def describe(self) -> str:
        lo, hi = self.lo, self.hi
        if lo is not None and hi is not None:
            if not self.lo_open and not self.hi_open:
                return f"within {lo:g}..{hi:g}"
            return (f"{'greater than' if self.lo_open else 'at least'} {lo:g} and "
                    f"{'less than' if self.hi_open else 'at most'} {hi:g}")
        if lo is not None:
            return f"{'greater than' if self.lo_open else 'at least'} {lo:g}"
        return f"{'less than' if self.hi_open else 'at most'} {hi:g}"


# Every numeric setting and what it may be (tests/test_audit_config.py checks that none is missing).
RANGES: dict[str, Range] = {
    "model.dcp.patch": Range(1, 255),                  # dark-channel window, pixels
    "model.dcp.omega": Range(0, 1),                    # a fraction of the haze; above 1 the image goes black
    "model.dcp.t0": Range(0, 1, lo_open=True),         # 0 divides by zero where the haze is opaque
    "model.dcp.top_fraction": Range(0, 1, lo_open=True),
    "model.dcp.radius": Range(1, 1024),                # null = scales with the frame
    "model.dcp.eps": Range(0, 1, lo_open=True),
    "model.dcp.subsample": Range(1, 64),
    "model.dcp.sky_tolerance": Range(0, 1),
    "engine.batch": Range(1),
    "engine.max_latency_ms": Range(0),
    "input.queue_size": Range(1),
    "input.decode_threads": Range(0, 256),
    "input.image_fps": Range(0, 1000, lo_open=True),
    "output.crf": Range(0, 51),
    "output.threads": Range(0, 128),                   # libx264 refuses more than 128
    "output.jpeg_quality": Range(1, 100),
    "output.queue_size": Range(1),
    "detect.conf": Range(0, 1),
    "detect.iou": Range(0, 1, lo_open=True),
    "detect.imgsz": Range(32, 4096),                   # 4096: a 4K frame at full size; memory decides below that
    "live.open_timeout_s": Range(0, lo_open=True),
    "live.read_timeout_s": Range(0, lo_open=True),
    "live.watchdog_s": Range(0, lo_open=True),
    "live.max_reconnects": Range(0),                   # 0 = forever
    "live.backoff_initial_s": Range(0, lo_open=True),
    "live.backoff_max_s": Range(0, lo_open=True),
    "live.backoff_jitter": Range(0, 1, hi_open=True),
    "live.queue_size": Range(1),
    "live.segment_s": Range(0),                       # 0 = one file
    "live.status_every_s": Range(0, lo_open=True),
    "batch.workers": Range(0),                         # 0 only with the ray engine (checked below)
    "batch.cpus_per_task": Range(0, lo_open=True),
    "batch.gpus_per_task": Range(0),
    "batch.max_attempts": Range(1),
    "temporal.alpha": Range(0, 1, lo_open=True),       # 0 would freeze the first frame's estimate forever
    "temporal.level_alpha": Range(0, 1, lo_open=True),
    "temporal.motion": Range(0, 1),                    # 0 = the same weight everywhere
    "temporal.cut_threshold": Range(0, 1, lo_open=True),
    "gate.clear_m": Range(10, 20000),                  # the calibrated visibility range, metres
    "gate.dense_m": Range(10, 20000),
    "gate.calib_a": Range(-1000, 1000),
    "gate.calib_b": Range(-1000, 0, hi_open=True),     # more haze must mean less visibility
}


# libx264's and libx265's presets, fastest first: another name fails only when the encoder opens ("Invalid argument").
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                "placebo")


def setting(cfg: Config, key: str):
    """The value of a dotted key (``engine.batch``)."""
    node = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


def validate(cfg: Config) -> Config:
    for key, allowed in RANGES.items():
        value = setting(cfg, key)
        if value is not None and not allowed.holds(value):
            raise ConfigError(f"{key} must be {allowed.describe()}, got {value!r}")
    e = cfg.engine
    if e.precision not in ("auto", "fp32", "bf16", "fp16"):
        raise ConfigError(f"engine.precision must be auto, fp32, bf16 or fp16, got {e.precision!r}")
    if cfg.input.decode not in ("auto", "rgb24", "yuv420p", "nvdec"):
        raise ConfigError(f"input.decode must be auto, rgb24, yuv420p or nvdec, got {cfg.input.decode!r}")
    if cfg.input.options:  # FFmpeg ignores names it does not know: refuse them here instead
        from .io.decode import unknown_ffmpeg_options

        unknown = unknown_ffmpeg_options(cfg.input.options)
        if unknown:
            raise ConfigError(f"input.options: FFmpeg has no option {', '.join(map(repr, unknown))} (for any demuxer, "
                              "protocol or decoder): check the name")
    o = cfg.output
    codec = "libx264" if o.codec == "auto" else o.codec  # auto is libx264 wherever NVENC is not used
    if codec in ("libx264", "libx265") and o.preset not in X264_PRESETS:
        raise ConfigError(f"output.preset must be one of {', '.join(X264_PRESETS[:-1])} or {X264_PRESETS[-1]} "
                          f"for {codec}, got {o.preset!r}")
    lv = cfg.live
    if lv.transport not in ("tcp", "udp"):
        raise ConfigError(f"live.transport must be tcp or udp, got {lv.transport!r}")
    if lv.backoff_max_s < lv.backoff_initial_s:
        raise ConfigError(f"live.backoff_max_s must be at least live.backoff_initial_s ({lv.backoff_initial_s:g}), "
                          f"got {lv.backoff_max_s:g}")
    g = cfg.gate
    if g.policy is False:  # YAML reads an unquoted off as false
        g.policy = "off"
    if g.policy not in ("off", "skip", "blend"):
        raise ConfigError(f"gate.policy must be off, skip or blend, got {g.policy!r}")
    if g.measure not in ("contrast", "transmission", "dark"):
        raise ConfigError(f"gate.measure must be contrast, transmission or dark, got {g.measure!r}")
    if g.dense_m > g.clear_m:
        raise ConfigError(f"gate.dense_m must be at most gate.clear_m ({g.clear_m:g}), got {g.dense_m:g}")
    b = cfg.batch
    if b.engine not in ("local", "ray"):
        raise ConfigError(f"batch.engine must be local or ray, got {b.engine!r}")
    if b.local_workers not in ("auto", "processes", "threads"):
        raise ConfigError(f"batch.local_workers must be auto, processes or threads, got {b.local_workers!r}")
    if b.workers == 0 and b.engine == "local":
        raise ConfigError(f"batch.workers must be at least 1 (0 only with the ray engine), got {b.workers}")
    return cfg


def yaml_error_text(exc: yaml.YAMLError) -> str:
    """'line L, column C: problem (context at line L2)' from a PyYAML error (1-based, as editors count)."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        text = f"line {mark.line + 1}, column {mark.column + 1}: {exc.problem or 'syntax error'}"
        if exc.context:
            cm = exc.context_mark
            at = f" at line {cm.line + 1}, column {cm.column + 1}" if cm is not None else ""
            text += f" ({exc.context}{at})"
        return text
    return str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__


def read_yaml(path: str | Path, what: str = "config file") -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path} is not valid YAML: {yaml_error_text(exc)}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {path} is not UTF-8 text") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} must hold a mapping of sections, got {type(data).__name__}")
    return data


def parse_assignment(text: str) -> dict:
    """``engine.batch=8`` -> {'engine': {'batch': 8}}; the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"--set expects section.key=value, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    out: dict = {}
    node = out
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def load_config(path: str | Path | None = None, overrides: typing.Iterable[dict] = ()) -> Config:
    cfg = Config()
    if DEFAULT_CONFIG_FILE.is_file():
        merge(cfg, read_yaml(DEFAULT_CONFIG_FILE))
    if path is not None:
        merge(cfg, read_yaml(path))
    for data in overrides:
        merge(cfg, data)
    return validate(cfg)
