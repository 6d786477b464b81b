"""One config system: YAML files in ``configs/`` mapped onto these dataclasses.

Precedence: the dataclass defaults < ``--config FILE`` < explicit CLI flags and ``--set section.key=value``.
The defaults live in code only, so an installed wheel and a checkout behave alike; ``configs/default.yaml``
is their commented copy to start a config from, made from these dataclasses and the comments beside their
fields by ``default_config_yaml`` (``python -m cidstream.config configs/default.yaml``; tests/test_cli.py
holds the committed file equal to it).

A setting is declared once: its field's type says what it may be (``Annotated[int, Range(1)]``,
``Annotated[str, OneOf("tcp", "udp")]``) and ``validate`` enforces that for every field, so no list
of ranges or allowed words can drift from the dataclasses. ``read_yaml`` keeps where each key was
written, so an error about a value from a file starts with the file, line and column; it is the one YAML
reader (configs, cameras, training, --set values) and refuses a key written twice and aliases that stand
for more than ALIAS_BUDGET values (a "billion laughs" file).
"""
from __future__ import annotations

import dataclasses
import math
import os
import reprlib
import typing
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Optional

import yaml

from .errors import ConfigError

DEFAULT_CONFIG_FILE = Path(__file__).resolve().parent.parent / "configs" / "default.yaml"  # documentation, not read


def data_root() -> Path:
    """The data sets and weights that training configs, benchmarks and tests use: $CIDSTREAM_DATA, else
    ../shared/data beside a source checkout (the layout of the development machines and CI; an installed
    package has no such folder, so set the variable there)."""
    env = os.environ.get("CIDSTREAM_DATA")
    return Path(env).expanduser() if env else Path(__file__).resolve().parents[2] / "shared" / "data"


# --- what a setting may be: metadata in the field's type --------------------------------------------------

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
        lo, hi = _num(self.lo), _num(self.hi)
        if lo is not None and hi is not None:
            if not self.lo_open and not self.hi_open:
                return f"within {lo}..{hi}"
            return (f"{'greater than' if self.lo_open else 'at least'} {lo} and "
                    f"{'less than' if self.hi_open else 'at most'} {hi}")
        if lo is not None:
            return f"{'greater than' if self.lo_open else 'at least'} {lo}"
        return f"{'less than' if self.hi_open else 'at most'} {hi}"


def _num(x) -> str | None:
    """A bound as people write it: 31536000, not 3.1536e+07."""
    if x is None:
        return None
    return str(int(x)) if float(x).is_integer() else format(x, "g")


class OneOf:
    """The words a setting may be. ``aliases`` are (value, word) pairs for what YAML reads instead of a
    word: an unquoted ``off`` is the boolean false."""

    def __init__(self, *values: str, aliases: tuple = ()):
        self.values, self.aliases = values, aliases

    def normal(self, v):
        return next((word for alias, word in self.aliases if type(v) is type(alias) and v == alias), v)

    def holds(self, v) -> bool:
        return v in self.values

    def describe(self) -> str:
        return f"{', '.join(self.values[:-1])} or {self.values[-1]}" if len(self.values) > 1 else self.values[0]

    def __repr__(self) -> str:
        return f"OneOf{self.values!r}"


# libx264's and libx265's presets, fastest first: another name fails only when the encoder opens ("Invalid argument").
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                "placebo")


# --- the settings -----------------------------------------------------------------------------------------

# what runs cid-lite's network and the detectors on a CPU (cpu_runtime.py): one word list for both settings
CPU_RUNTIMES = OneOf("auto", "torch", "openvino", "onnxruntime")


@dataclass
class DCPParams:
    patch: Annotated[int, Range(1, 255)] = 15   # dark-channel window, pixels
    omega: Annotated[float, Range(0, 1)] = 0.95  # fraction of haze removed (1.0 looks unnatural; above 1: black)
    t0: Annotated[float, Range(0, 1, lo_open=True)] = 0.1  # lower bound on transmission (0 divides by zero)
    top_fraction: Annotated[float, Range(0, 1, lo_open=True)] = 0.001  # brightest dark-channel share: the airlight
    radius: Annotated[Optional[int], Range(1, 1024)] = None  # guided-filter radius; None/null scales with frame size
    eps: Annotated[float, Range(0, 1, lo_open=True)] = 0.001  # guided-filter regularisation
    subsample: Annotated[int, Range(1, 64)] = 4  # fast guided filter: coefficients this much coarser (1 = exact)
    sky_tolerance: Annotated[float, Range(0, 1)] = 0.1  # K: pixels within K of the airlight (sky) are not
    #                                                     over-amplified (0 = off)


@dataclass
class ModelConfig:
    name: str = "cid-lite"      # registry name (cid-lite, dcp, cid) or a weights file path
    dcp: DCPParams = field(default_factory=DCPParams)


VIS_MIN_M, VIS_MAX_M = 10.0, 20000.0   # visibility readings are clipped to these metres (engine/haze.py)


def words(section: type, name: str) -> list[str]:
    """The words a setting may be (its ``OneOf``), for a flag's ``choices``: the rule is written once, here."""
    hint = typing.get_type_hints(section, include_extras=True)[name]
    return [w for w in next(m for m in hint.__metadata__ if isinstance(m, OneOf)).values if w != ""]


@dataclass
class EngineConfig:
    device: str = "auto"        # auto (cuda if present, else cpu), cpu, cuda, cuda:N
    # auto: bf16 on capable CPUs, fp16/bf16 on CUDA
    precision: Annotated[str, OneOf("auto", "fp32", "bf16", "fp16")] = "auto"
    batch: Annotated[int, Range(1)] = 4  # frames per temporal batch
    max_latency_ms: Annotated[float, Range(0)] = 100.0  # live sources: flush a partial batch after this long
    channels_last: bool = True
    # cid-lite's network on a CPU at fp32: auto = OpenVINO, else onnxruntime (a graph made once per weights and
    # frame size, kept in the user cache); torch
    cpu_runtime: Annotated[str, CPU_RUNTIMES] = "auto"


@dataclass
class InputConfig:
    queue_size: Annotated[int, Range(1)] = 32        # decoded frames buffered ahead of the model
    decode_threads: Annotated[int, Range(0, 256)] = 0  # 0 lets FFmpeg choose
    image_fps: Annotated[float, Range(0, 1000, lo_open=True)] = 25.0  # image folders written as video: frame rate
    options: dict = field(default_factory=dict)  # extra FFmpeg/PyAV options (e.g. rtsp_transport)
    # the form decoded frames take (cidstream/io/decode.py); auto: nvdec on CUDA (frames stay on the GPU), else
    # yuv420p there; rgb24 on a CPU
    decode: Annotated[str, OneOf("auto", "rgb24", "yuv420p", "nvdec")] = "auto"


@dataclass
class OutputConfig:
    codec: str = "auto"         # auto: h264_nvenc on CUDA machines that have it, else libx264; or any FFmpeg encoder
    crf: Annotated[int, Range(0, 51)] = 20  # quality: lower is better and larger
    preset: str = "veryfast"    # x264 speed/size trade-off, ultrafast .. placebo (X264_PRESETS: libx264/libx265)
    threads: Annotated[int, Range(0, 128)] = 0  # encoder threads (0: the encoder chooses); libx264 refuses > 128
    video: bool = True          # false: detections and report only, no dehazed video (--no-video)
    copy_audio: bool = True
    jpeg_quality: Annotated[int, Range(1, 100)] = 95
    queue_size: Annotated[int, Range(1)] = 32  # frames buffered ahead of the encoder


AP_CONF = 0.001  # the detector's confidence wherever AP is measured (eval, benchmarks): AP needs the whole ranking


@dataclass
class DetectConfig:
    detector: str = ""          # Ultralytics model file or name; "" = $CIDSTREAM_DETECTOR, else yolo11n.pt
    #                             (downloads when online)
    classes: list = field(default_factory=lambda: ["car", "bus", "truck", "motorcycle", "bicycle"])  # [] = all
    conf: Annotated[float, Range(0, 1)] = 0.25  # confidence threshold for run (eval: 0.001, AP needs the ranking)
    iou: Annotated[float, Range(0, 1, lo_open=True)] = 0.7  # NMS IoU
    # detector input size; 4096: a 4K frame at full size; not a multiple of the detector's stride (32): rounded up,
    # with a warning
    imgsz: Annotated[int, Range(32, 4096)] = 640
    track: bool = False         # ByteTrack ids and unique-vehicle counts (needs the lap package)
    # Per-frame detector choice: frames the haze gate dehazes (strength > 0) go to this fog-adapted detector
    # (a file, or the short name of one `cidstream train detector` made: "fog" = the last one), clear frames
    # to ``detector`` on the raw frame. "" = every frame to ``detector``.
    fog_detector: str = ""
    # What the fog detector sees: dehazed (the gate's output), fused (its boxes on the raw and the dehazed frame
    # merged by WBF: two calls, no better on select), raw. Chosen on select data by benchmarks/fog_path.py.
    fog_view: Annotated[str, OneOf("fused", "dehazed", "raw")] = "dehazed"
    detector_b: str = ""        # a second detector as extra arms (raw_b/dehazed_b): comparisons
    fuse: Annotated[str, OneOf("", "wbf", "nms")] = ""  # an extra arm: raw and dehazed detections merged
    # the detectors on a CPU: auto = OpenVINO, else onnxruntime (Ultralytics' export, made once, cached); torch
    cpu_runtime: Annotated[str, CPU_RUNTIMES] = "auto"


@dataclass
class LiveConfig:
    transport: Annotated[str, OneOf("tcp", "udp")] = "tcp"  # RTSP transport: tcp survives NAT and loss
    open_timeout_s: Annotated[float, Range(0, lo_open=True)] = 10.0  # PyAV: give up opening a stream after this long
    read_timeout_s: Annotated[float, Range(0, lo_open=True)] = 10.0  # PyAV: give up a read that returns nothing
    # no new frame for this long: reconnect (PyAV's timeouts miss a camera that stays connected but silent)
    watchdog_s: Annotated[float, Range(0, lo_open=True)] = 5.0
    reconnect: bool = True
    max_reconnects: Annotated[int, Range(0)] = 0  # 0 = forever
    backoff_initial_s: Annotated[float, Range(0, lo_open=True)] = 0.5  # first wait before reconnecting; doubles
    backoff_max_s: Annotated[float, Range(0, lo_open=True)] = 30.0  # at least backoff_initial_s (validate)
    backoff_jitter: Annotated[float, Range(0, 1, hi_open=True)] = 0.3  # +-30%: cameras do not reconnect in lockstep
    queue_size: Annotated[int, Range(1)] = 4  # frames buffered per camera; older ones dropped when processing lags
    segment_s: Annotated[float, Range(0)] = 300.0  # cidstream live: a new video file every this many seconds (0 = one)
    status_every_s: Annotated[float, Range(0, lo_open=True)] = 2.0  # cidstream live: status and stats.json refresh
    # cidstream live: a fog event when a camera's visibility stays below fog_event_m for fog_hold_s, a clear event
    # when it then stays above fog_clear_m (at least fog_event_m: the gap keeps events from chattering)
    fog_event_m: Annotated[float, Range(VIS_MIN_M, VIS_MAX_M)] = 1000.0   # fog as meteorology counts it: < 1 km
    fog_clear_m: Annotated[float, Range(VIS_MIN_M, VIS_MAX_M)] = 1500.0
    fog_hold_s: Annotated[float, Range(0)] = 10.0


# Video files an input folder or glob picks up (input: 14 suffixes). Not cidstream.sinks.media.VIDEO_SUFFIXES, the
# containers an output may be written as (5).
INPUT_VIDEO_SUFFIXES = [".mp4", ".mkv", ".mov", ".avi", ".ts", ".m2ts", ".mts", ".m4v", ".webm", ".mpg", ".mpeg",
                        ".flv", ".wmv", ".3gp"]
VIDEO_SUFFIXES = INPUT_VIDEO_SUFFIXES  # the older name


@dataclass
class BatchConfig:
    engine: Annotated[str, OneOf("local", "ray")] = "local"  # local (processes or threads here) | ray (a cluster)
    # files processed at once (ray: 0 = as many as the cluster has CPUs/GPUs for; 0 only with ray, validate)
    workers: Annotated[int, Range(0)] = 1
    # auto: threads sharing one model on CUDA, processes on CPU
    local_workers: Annotated[str, OneOf("auto", "processes", "threads")] = "auto"
    address: str = ""           # ray: cluster address; "" starts a Ray instance on this machine, "auto" or
    #                             ray://HOST:10001 joins one
    cpus_per_task: Annotated[float, Range(0, lo_open=True)] = 1.0  # ray: CPUs reserved per file
    gpus_per_task: Annotated[float, Range(0)] = 1.0  # ray: GPUs reserved per file on CUDA (0.5 packs two per GPU)
    max_attempts: Annotated[int, Range(1)] = 2  # tries per file when its worker process dies (not for decode failures)
    video_suffixes: list = field(default_factory=lambda: list(INPUT_VIDEO_SUFFIXES))  # what a folder or glob picks up


@dataclass
class TemporalConfig:
    """Video only (files, cameras): image folders and eval are never smoothed (docs/architecture.md)."""
    # smooth cid-lite's coefficient maps / dcp's airlight and transmission over time (--no-temporal: false, every
    # frame on its own)
    enabled: bool = True
    # weight of the current frame in the moving average of the maps (1 = no smoothing; 0 would freeze the first)
    alpha: Annotated[float, Range(0, 1, lo_open=True)] = 0.25
    level_alpha: Annotated[float, Range(0, 1, lo_open=True)] = 0.3  # the same for global values (airlight, gain)
    # |Δ grey| at which a map cell follows the current frame fully (0 = no motion adaption)
    motion: Annotated[float, Range(0, 1)] = 0.04
    # mean |Δ| of a grey thumbnail (0..1) that counts as a scene cut: state reset
    cut_threshold: Annotated[float, Range(0, 1, lo_open=True)] = 0.08


@dataclass
class GateConfig:
    """Haze gating (engine/haze.py): how much of the dehazed frame to keep, from each frame's haze level
    calibrated to metres of visibility (benchmarks/visibility_fit.py, gate_check.py)."""
    # Defaults chosen on select data only: the measure by benchmarks/fog_meter_select.py and fog_measures.py
    # (the fog meter), policy and thresholds by benchmarks/gate_check.py (blend 10 km / 2 km).
    # off (always dehazed) | skip (raw frame at or above clear_m) | blend (strength by visibility) (--gate);
    # YAML reads an unquoted off as false
    policy: Annotated[typing.Union[str, bool], OneOf("off", "skip", "blend", aliases=((False, "off"),))] = "blend"
    # visibility at or above which a frame counts as clear (skip: raw; blend: strength 0); the calibrated range
    clear_m: Annotated[float, Range(VIS_MIN_M, VIS_MAX_M)] = 10000.0
    # blend: full dehazing at or below this (at most clear_m), log-linear in visibility up to clear_m
    dense_m: Annotated[float, Range(VIS_MIN_M, VIS_MAX_M)] = 2000.0
    # learned: the fog meter (engine/fog_meter.py, cidstream train fog-meter) gives visibility and its uncertainty;
    # contrast, transmission, dark: training-free levels turned into metres by calib_a/calib_b below
    measure: Annotated[str, OneOf("learned", "contrast", "transmission", "dark")] = "learned"
    meter: str = ""             # the learned measure's weights file (--fog-meter); empty: the bundled one
    calib_a: Annotated[float, Range(-1000, 1000)] = 21.3215  # visibility_m = exp(calib_a + calib_b * level),
    # clipped to 10..20000 m; fitted for contrast on highway_fog_cam select days
    # (benchmarks/results/visibility_fit.json); negative: more haze must mean less visibility
    calib_b: Annotated[float, Range(-1000, 0, hi_open=True)] = -3.5265
    # video (files, cameras): the strength follows each stream's smoothed visibility (engine/steady_gate.py);
    # image folders and eval are gated frame by frame whatever this says
    steady: bool = True
    # weight of the current frame's reading in the moving average of log visibility (1: per-frame readings)
    steady_alpha: Annotated[float, Range(0, 1, lo_open=True)] = 0.05
    max_step: Annotated[float, Range(0, 1, lo_open=True)] = 0.02  # most the strength moves between two frames
    # a stream left raw starts dehazing only below clear_m / hysteresis (no toggling at the threshold)
    hysteresis: Annotated[float, Range(1, 10)] = 1.25
    # the strength is re-aimed only when the smoothed visibility moved by more than this factor (1: always)
    band: Annotated[float, Range(1, 10)] = 1.25
    # the network runs only on frames the gate keeps some of (a frame left raw costs the measure alone and stays
    # bit-identical); false runs it on every frame as before, for comparisons (benchmarks/clear_frames.py)
    skip_raw: bool = True


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    input: InputConfig = field(default_factory=InputConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    detect: DetectConfig = field(default_factory=DetectConfig)  # --detect / --compare and cidstream eval
    batch: BatchConfig = field(default_factory=BatchConfig)  # cidstream batch
    live: LiveConfig = field(default_factory=LiveConfig)  # camera streams (cidstream run URL, cidstream live)
    temporal: TemporalConfig = field(default_factory=TemporalConfig)
    gate: GateConfig = field(default_factory=GateConfig)  # dehazing a clear frame can cost detections

    def to_dict(self) -> dict:
        return plain(dataclasses.asdict(self))


# --- where a value was written ----------------------------------------------------------------------------

class Mark(typing.NamedTuple):
    origin: str                 # "config file configs/x.yaml"
    line: int                   # 1-based, as editors count
    column: int

    def __str__(self) -> str:
        return f"{self.origin}, line {self.line}, column {self.column}"


class Located(dict):
    """A mapping read by ``read_yaml``: a plain dict that also knows where each key and value was written."""

    at: Mark | None = None      # the mapping itself
    keys_at: dict = {}          # key -> Mark of the key (for unknown keys)
    values_at: dict = {}        # key -> Mark of its value (for bad values)


def mark_of(data, key=None, value: bool = True) -> Mark | None:
    """Where ``data[key]`` (``value=False``: the key itself; no key: the mapping) was written, or None
    (not from a file)."""
    if not isinstance(data, Located):
        return None
    if key is None:
        return data.at
    return (data.values_at if value else data.keys_at).get(key)


def config_error(message: str, mark: Mark | None = None) -> ConfigError:
    """``message`` after the place it is about; ``mark`` and ``detail`` stay on the error for a caller that
    words the place its own way (cameras files)."""
    exc = ConfigError(f"{mark}: {message}" if mark else message)
    exc.mark, exc.detail = mark, message
    return exc


def plain(value):
    """``value`` with every Located mapping as a dict, so checkpoints and weights metadata never need this
    module (or a torch.load allow-list entry) to be read."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


# Values that aliases (*name) may add to one YAML text once written out. Configs repeat a block or two at most
# (cameras sharing options); a "billion laughs" file of a few hundred bytes nests aliases to stand for
# billions of values, which any reader that walks them (an error message, JSON, a report) writes out in full.
ALIAS_BUDGET = 10_000
MESSAGE_VALUE_CHARS = 200  # a value quoted in an error message is cut to this


class _Short(reprlib.Repr):
    """``repr`` cut short at every level, so quoting a value costs little whatever it holds."""

    def __init__(self):
        super().__init__()
        self.maxlevel, self.maxdict, self.maxlist, self.maxstring, self.maxother = 3, 8, 8, 80, 80

    def repr_Located(self, x, level):
        return self.repr_dict(x, level)


_SHORT = _Short()


def shown(value) -> str:
    """``repr(value)`` for an error message, at most MESSAGE_VALUE_CHARS long: a setting given a huge
    structure must not make a message of gigabytes."""
    text = _SHORT.repr(value)
    return text if len(text) <= MESSAGE_VALUE_CHARS else text[:MESSAGE_VALUE_CHARS - 3] + "..."


def _expanded(node: yaml.Node, sizes: dict) -> int:
    """Values ``node`` stands for with its aliases written out; ``sizes`` memoizes by node, which aliases share."""
    if id(node) not in sizes:
        children = node.value if isinstance(node, yaml.SequenceNode) else \
            [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else ()
        sizes[id(node)] = 1 + sum(_expanded(child, sizes) for child in children)
    return sizes[id(node)]


class _SafeLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing what would silently go wrong: a key written twice in one mapping
    (the last would win unseen) and aliases that stand for more than ALIAS_BUDGET values. Errors name
    ``origin``, line and column."""

    origin = ""

    def __init__(self, stream):
        super().__init__(stream)
        self._sizes: dict[int, int] = {}
        self._aliased = 0

    def _refuse(self, mark, message: str):
        raise config_error(message, Mark(self.origin, mark.line + 1, mark.column + 1))

    def compose_node(self, parent, index):
        if not self.check_event(yaml.AliasEvent):
            return super().compose_node(parent, index)
        event = self.peek_event()
        node = super().compose_node(parent, index)
        if node.end_mark is None:  # a collection still being read: the alias is inside what it names
            self._refuse(event.start_mark, f"alias *{event.anchor} is inside the value it names: a structure "
                                           "without end")
        self._aliased += _expanded(node, self._sizes)
        if self._aliased > ALIAS_BUDGET:
            self._refuse(event.start_mark, f"the aliases up to *{event.anchor} repeat more than {ALIAS_BUDGET:,} "
                                           "values; configs never need that many: write the values out")
        return node

    def compose_mapping_node(self, anchor):
        node = super().compose_mapping_node(anchor)
        first: dict = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue  # '<<' merges: later keys override merged ones on purpose
            try:
                key = self.construct_object(key_node)
                mark = first.setdefault(key, key_node.start_mark)
            except (yaml.YAMLError, TypeError):
                continue  # construction says what is wrong with this key
            if mark is not key_node.start_mark:
                self._refuse(key_node.start_mark, f"key {shown(key)} is written twice in one mapping (first at line "
                                                  f"{mark.line + 1}, column {mark.column + 1}): only the last would "
                                                  "count; keep one")
        return node


def _parse(text: str, origin: str, loader: type = _SafeLoader):
    """The one document of ``text``; YAML errors raise as PyYAML's, refusals as ConfigError."""
    reader = loader(text)
    reader.origin = origin
    try:
        return reader.get_single_data()
    except RecursionError:
        raise ConfigError(f"{origin}: nested too deeply to read") from None
    finally:
        reader.dispose()


class _Loader(_SafeLoader):
    """Mappings come out Located."""


def _construct_located(loader: _Loader, node: yaml.MappingNode):
    data = Located()
    yield data
    data.update(loader.construct_mapping(node))
    data.at = Mark(loader.origin, node.start_mark.line + 1, node.start_mark.column + 1)
    data.keys_at, data.values_at = {}, {}
    for key_node, value_node in node.value:  # merge keys (<<) are flattened by now
        key = loader.construct_object(key_node)  # already built: the cached object
        for marks, n in ((data.keys_at, key_node), (data.values_at, value_node)):
            marks[key] = Mark(loader.origin, n.start_mark.line + 1, n.start_mark.column + 1)


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_located)


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
    """The one YAML reader of the project (configs, cameras, training): its mappings are Located, so later
    errors can name the file, line and column of a key or value."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    try:
        data = _parse(path.read_text(encoding="utf-8"), f"{what} {path}", _Loader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path} is not valid YAML: {yaml_error_text(exc)}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {path} is not UTF-8 text") from exc
    if data is None:
        return Located()
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} must hold a mapping of sections, got {type(data).__name__}")
    return data


# --- applying and checking --------------------------------------------------------------------------------

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
        raise ConfigError(f"{where}: {shown(value)} has the wrong type")
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {shown(value)}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {shown(value)}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where}: expected a number, got {shown(value)}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {shown(value)}")
    if hint is list or (origin is list and typing.get_args(hint) == (str,)):
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        raise ConfigError(f"{where}: expected a list of names, got {shown(value)}")
    if origin is list:  # list[X]: each item an X
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {shown(value)}")
        (item,) = typing.get_args(hint)
        return [_check_type(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if hint is dict or origin is dict:
        if isinstance(value, dict):
            return value if isinstance(value, Located) else dict(value)
        raise ConfigError(f"{where}: expected a mapping, got {shown(value)}")
    return value


def _section(hint) -> type | None:
    """The dataclass of a nested section (``Optional`` or not), or None for a plain setting."""
    return next((t for t in (hint, *typing.get_args(hint)) if dataclasses.is_dataclass(t)), None)


# id of a dataclass instance -> its field marks. Not kept in the instance: code passes vars(section) as keyword
# arguments (DarkChannelPrior(**vars(cfg.model.dcp))).
_MARKS: dict[int, dict] = {}


def _marks(obj) -> dict:
    """Field name -> Mark of where its value was last set (None: a default, --set or code)."""
    if id(obj) not in _MARKS:
        _MARKS[id(obj)] = {}
        weakref.finalize(obj, _MARKS.pop, id(obj), None)
    return _MARKS[id(obj)]


def merge(obj, data: dict, where: str = "") -> None:
    """Apply a nested mapping onto a dataclass instance, rejecting unknown keys and bad types. Values are
    range-checked later by ``validate`` (a later source may still fix them), so merge notes where each
    came from."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping of keys, got {type(data).__name__}")
    hints = typing.get_type_hints(type(obj))
    names = [f.name for f in dataclasses.fields(obj)]
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in names:
            raise config_error(f"unknown config key '{path}' (known keys here: {', '.join(names)})",
                               mark_of(data, key, value=False))
        mark, section = mark_of(data, key), _section(hints[key])
        if section is not None and not (value is None and section is not hints[key]):  # null: an Optional's None
            if not isinstance(value, dict):
                raise config_error(f"{path}: expected a mapping of keys, got {type(value).__name__}", mark)
            if getattr(obj, key) is None:
                setattr(obj, key, section())
            merge(getattr(obj, key), value, path)
            continue
        try:
            setattr(obj, key, _check_type(value, hints[key], path))
        except ConfigError as exc:
            raise config_error(str(exc), mark) from None
        _marks(obj)[key] = mark


def _fields(obj, prefix: str = ""):
    """(dotted key, owner, field name, rules) of every plain setting of a dataclass tree."""
    hints = typing.get_type_hints(type(obj), include_extras=True)
    for f in dataclasses.fields(obj):
        value, key = getattr(obj, f.name), prefix + f.name
        if dataclasses.is_dataclass(value):
            yield from _fields(value, key + ".")
        else:
            yield key, obj, f.name, getattr(hints[f.name], "__metadata__", ())


def rules(obj=None) -> list[tuple[str, Range | OneOf]]:
    """(dotted key, rule) of every setting whose type carries one (default: the runtime Config)."""
    return [(key, rule) for key, _, _, meta in _fields(obj if obj is not None else Config()) for rule in meta]


def ranges(obj=None) -> dict[str, Range]:
    """Dotted key -> Range of every numeric setting."""
    return {key: rule for key, rule in rules(obj) if isinstance(rule, Range)}


def mark_of_setting(obj, key: str) -> Mark | None:
    """Where the value of a dotted key was written, if it came from a file."""
    *parents, leaf = key.split(".")
    for part in parents:
        obj = getattr(obj, part)
    return _MARKS.get(id(obj), {}).get(leaf)


def check_rules(obj, prefix: str = "") -> None:
    """Every setting of a dataclass tree against the rules in its type; the error names the key (after
    ``prefix``, the section's place: "domains.fog.") and, for a value from a file, where it was written."""
    for key, owner, name, meta in _fields(obj, prefix):
        for rule in meta:
            value = getattr(owner, name)
            if value is None:  # Optional: None means "not set" (e.g. dcp.radius scales with the frame)
                break
            if isinstance(rule, OneOf) and rule.normal(value) is not value:
                setattr(owner, name, value := rule.normal(value))
            if not rule.holds(value):
                raise config_error(f"{key} must be {rule.describe()}, got {shown(value)}",
                                   _MARKS.get(id(owner), {}).get(name))


def setting(cfg: Config, key: str):
    """The value of a dotted key (``engine.batch``)."""
    node = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


def validate(cfg: Config) -> Config:
    """The rules in the types, then what depends on more than one setting."""
    check_rules(cfg)
    at = lambda key: mark_of_setting(cfg, key)  # noqa: E731
    if cfg.input.options:  # FFmpeg ignores names it does not know: refuse them here instead
        from .ffmpeg_options import unknown_ffmpeg_options

        unknown = unknown_ffmpeg_options(cfg.input.options)
        if unknown:
            raise config_error(f"input.options: FFmpeg has no option {', '.join(map(repr, unknown))} (for any "
                               "demuxer, protocol or decoder): check the name", at("input.options"))
    o = cfg.output
    codec = "libx264" if o.codec == "auto" else o.codec  # auto is libx264 wherever NVENC is not used
    if codec in ("libx264", "libx265") and o.preset not in X264_PRESETS:
        raise config_error(f"output.preset must be one of {', '.join(X264_PRESETS[:-1])} or {X264_PRESETS[-1]} "
                           f"for {codec}, got {shown(o.preset)}", at("output.preset"))
    lv = cfg.live
    if lv.backoff_max_s < lv.backoff_initial_s:
        raise config_error(f"live.backoff_max_s must be at least live.backoff_initial_s ({lv.backoff_initial_s:g}), "
                           f"got {lv.backoff_max_s:g}", at("live.backoff_max_s"))
    if lv.fog_clear_m < lv.fog_event_m:
        raise config_error(f"live.fog_clear_m must be at least live.fog_event_m ({lv.fog_event_m:g}), "
                           f"got {lv.fog_clear_m:g}", at("live.fog_clear_m"))
    g = cfg.gate
    if g.dense_m > g.clear_m:
        raise config_error(f"gate.dense_m must be at most gate.clear_m ({g.clear_m:g}), got {g.dense_m:g}",
                           at("gate.dense_m"))
    b = cfg.batch
    if b.workers == 0 and b.engine == "local":
        raise config_error(f"batch.workers must be at least 1 (0 only with the ray engine), got {b.workers}",
                           at("batch.workers"))
    return cfg


# Flags that are not settings, with ranges of the same type; check_flags holds every command to them.
# (rule, what the number is)
FLAG_RANGES = {
    "max_frames": (Range(1), ""),
    # a year at most: anything longer is a typo or 'inf', and leaving the flag out already means no limit
    "duration": (Range(0, 365 * 86400, lo_open=True), " seconds (leave it out for no limit)"),
    # (resamples, images) weights in float64: 10,000 resamples of 10,000 images take 0.8 GB; 1000 is plenty
    "bootstrap": (Range(0, 10_000), ""),
}


def check_flags(args) -> None:
    """Every flag of FLAG_RANGES that ``args`` (an argparse namespace) has, against its range."""
    for name, (rule, unit) in FLAG_RANGES.items():
        value = getattr(args, name, None)
        if value is not None and not rule.holds(value):
            raise ConfigError(f"--{name.replace('_', '-')} must be {rule.describe()}{unit}, got {shown(value)}")


def parse_assignment(text: str) -> dict:
    """``engine.batch=8`` -> {'engine': {'batch': 8}}; the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"--set expects section.key=value, got {shown(text)}")
    key, raw = text.split("=", 1)
    try:
        value = _parse(raw, f"--set {key.strip()}") if raw != "" else ""
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
    if path is not None:
        merge(cfg, read_yaml(path))
    for data in overrides:
        merge(cfg, data)
    return validate(cfg)


# --- configs/default.yaml: the defaults written out -------------------------------------------------------

DEFAULT_CONFIG_COMMAND = "python -m cidstream.config configs/default.yaml"  # (re)writes DEFAULT_CONFIG_FILE
COMMENT_COLUMN = 24  # where a setting's comment starts in that file (further right after a long value)
COMMENT_WIDTH = 120  # a value with its comment longer than this has the comment above it


def _source_comments(cls: type) -> tuple[list[str], dict[str, tuple[list[str], list[str]]]]:
    """The comments written in ``cls``'s source: its docstring's lines, and field name -> (the comment lines
    just above the field, its comment on the line and the aligned lines that continue it)."""
    import ast
    import inspect
    import io
    import textwrap
    import tokenize

    source = textwrap.dedent(inspect.getsource(cls))
    comments = {tok.start[0]: tok.string for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                if tok.type == tokenize.COMMENT}
    body = next(n for n in ast.parse(source).body if isinstance(n, ast.ClassDef)).body
    code_rows = {row for node in body for row in range(node.lineno, node.end_lineno + 1)}
    doc = inspect.cleandoc(body[0].value.value).splitlines() \
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) else []
    text = lambda row: comments[row][1:].strip()  # noqa: E731
    fields, taken = {}, set()
    for node in body:
        if not isinstance(node, ast.AnnAssign):
            continue
        above, row = [], node.lineno - 1
        while row in comments and row not in code_rows and row not in taken:
            above.insert(0, text(row))
            row -= 1
        beside = [text(r) for r in range(node.lineno, node.end_lineno + 1) if r in comments]
        row = node.end_lineno + 1
        while beside and row in comments and row not in code_rows and comments[row].startswith("#  "):
            beside.append(text(row))  # '#' then spaces up to the comment above: its next line
            taken.add(row)
            row += 1
        fields[node.target.id] = (above, beside)
    return doc, fields


def _yaml_value(value) -> str:
    """``value`` as one line of YAML ("" for the empty string, as the comments write it)."""
    if value == "":
        return '""'
    return yaml.safe_dump(value, default_flow_style=True, width=1_000_000, allow_unicode=True) \
        .strip().removesuffix("...").strip()


def _render_section(obj, indent: str, lines: list[str]) -> None:
    """``obj``'s settings as YAML lines, each with the comments of its field and the words a OneOf allows."""
    _, notes = _source_comments(type(obj))
    hints = typing.get_type_hints(type(obj), include_extras=True)
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        above, beside = notes.get(f.name, ([], []))
        if dataclasses.is_dataclass(value):
            doc, _ = _source_comments(type(value))
            lines += [f"{indent}# {t}".rstrip() for t in above + doc]
            lines.append(_beside(f"{indent}{f.name}:", beside))
            _render_section(value, indent + "  ", lines)
            continue
        for rule in getattr(hints[f.name], "__metadata__", ()):  # the words it may be, first beside it
            if isinstance(rule, OneOf):
                allowed = " | ".join(w or '""' for w in rule.values)
                beside = [f"{allowed}; {beside[0]}" if beside else allowed, *beside[1:]]
        line = f"{indent}{f.name}: {_yaml_value(value)}"
        if beside and len(_beside(line, beside[:1])) > COMMENT_WIDTH:  # a long value: its comment above it
            above, beside = above + beside, []
        lines += [f"{indent}# {t}".rstrip() for t in above]
        lines.append(_beside(line, beside))


def _beside(line: str, comment: list[str]) -> str:
    """``line`` with ``comment`` after it, its further lines under its first."""
    if not comment:
        return line
    column = max(COMMENT_COLUMN, len(line) + 2)
    return "\n".join([f"{line:<{column}}# {comment[0]}", *(f"{'':<{column}}# {t}" for t in comment[1:])])


def default_config_yaml() -> str:
    """The text of configs/default.yaml: every setting of ``Config()`` with its default, under the comments
    written beside its field in this module (and the words a OneOf setting allows), so the file says what
    the code does; tests/test_cli.py holds the committed file to this."""
    lines = ["# cidstream defaults: every setting, with the value it has when nothing sets it. The defaults live in",
             "# cidstream/config.py; this file is made from it and is not read (regenerate it with",
             f"# `{DEFAULT_CONFIG_COMMAND}`; tests/test_cli.py holds the two equal). Copy it or the keys",
             "# you change into your own file and pass --config FILE, or set one key: --set engine.batch=8."]
    _render_section(Config(), "", lines)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # python -m cidstream.config [FILE]: write configs/default.yaml's text to FILE or stdout
    import sys

    if len(sys.argv) > 2 or sys.argv[1:] in (["-h"], ["--help"]):
        sys.exit(f"usage: python -m cidstream.config [FILE]: the defaults as commented YAML ({DEFAULT_CONFIG_COMMAND})")
    if sys.argv[1:]:
        Path(sys.argv[1]).write_text(default_config_yaml(), encoding="utf-8")
    else:
        sys.stdout.write(default_config_yaml())
