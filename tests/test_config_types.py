"""The config rules live in the field types (Annotated Range/OneOf), errors about a file's value say
where it was written, training configs go through the same machinery, and data_root() honours
$CIDSTREAM_DATA. Fast: no models, no media."""
import dataclasses
import json
from pathlib import Path

import pytest

from cidstream.config import (Config, OneOf, Range, check_rules, data_root, load_config, merge, read_yaml,
                              rules)
from cidstream.errors import ConfigError
from training.synthetic.recipe import DomainFile, RecipeFile, load_recipe
from training.dehazer.train_config import Adapt, DataEntry, Finetune, Phases, Pretrain, TrainConfig, read_train_config

REPO = Path(__file__).resolve().parents[1]
TRAIN = REPO / "configs" / "train"


def _bad_value(rule):
    """A value just outside the rule."""
    if isinstance(rule, OneOf):
        return "no-such-" + rule.values[0]
    assert isinstance(rule, Range)
    if rule.lo is not None:
        return rule.lo if rule.lo_open else rule.lo - 1
    return rule.hi if rule.hi_open else rule.hi + 1


def _nested(key: str, value) -> dict:
    *parents, leaf = key.split(".")
    out = node = {}
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return out


def _full_train_config():
    return TrainConfig(phases=Phases(Pretrain(), Adapt(), Finetune()))


# Every rule of every config dataclass: (what, factory, key, rule). The runtime config goes through
# load_config (file defaults, merge, validate); the training ones through merge and check_rules.
CASES = [("runtime", Config, key, rule) for key, rule in rules(Config())]
for factory in (_full_train_config, DataEntry, RecipeFile, DomainFile):
    CASES += [(factory.__name__, factory, key, rule) for key, rule in rules(factory())]


def test_every_config_class_declares_its_rules_in_types():
    whats = {what for what, *_ in CASES}
    assert whats == {"runtime", "_full_train_config", "DataEntry", "RecipeFile", "DomainFile"}
    keys = {key for what, _, key, _ in CASES if what == "runtime"}
    # the enumerations that used to be hand-written checks in validate()
    assert {"engine.precision", "input.decode", "live.transport", "gate.policy", "gate.measure", "batch.engine",
            "batch.local_workers"} <= keys
    assert {"train.batch", "phases.finetune.rff", "validation.pairs"} <= {k for w, _, k, _ in CASES if w != "runtime"}
    for what, factory, _, _ in CASES:  # the defaults obey the rules
        check_rules(factory())


@pytest.mark.parametrize("what, factory, key, rule", CASES, ids=[f"{c[0]}:{c[2]}" for c in CASES])
def test_each_rule_is_enforced_from_the_type(what, factory, key, rule):
    bad = _bad_value(rule)
    with pytest.raises(ConfigError) as err:
        if what == "runtime":
            load_config(overrides=[_nested(key, bad)])
        else:
            obj = factory()
            merge(obj, _nested(key, bad))
            check_rules(obj)
    assert str(err.value).startswith(f"{key} must be {rule.describe()}, got "), str(err.value)


def test_yaml_off_is_the_gate_policy_off(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("gate:\n  policy: off\n")
    assert load_config(path).gate.policy == "off"


# --- errors say where ------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, message", [
    ("engine:\n  batch: 0\n", "line 2, column 10: engine.batch must be at least 1, got 0"),
    ("engine:\n  batch: many\n", "line 2, column 10: engine.batch: expected an integer, got 'many'"),
    ("engine:\n  batchh: 4\n", "line 2, column 3: unknown config key 'engine.batchh' (known keys here: "),
    ("model: {dcp: {omega: 5}}\n", "line 1, column 22: model.dcp.omega must be within 0..1, got 5.0"),
    ("gate:\n  clear_m: 4000\n  dense_m: 8000\n", "line 3, column 12: gate.dense_m must be at most gate.clear_m"),
    ("live:\n  transport: quic\n", "line 2, column 14: live.transport must be tcp or udp, got 'quic'"),
    ("engine: 3\n", "line 1, column 9: engine: expected a mapping of keys, got int"),
])
def test_a_bad_value_in_a_file_names_file_line_and_column(tmp_path, text, message):
    path = tmp_path / "x.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"config file {path}, {message}")


def test_values_not_from_a_file_have_no_place_and_a_later_source_may_fix_one(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("engine:\n  batch: 0\n")
    assert load_config(path, [{"engine": {"batch": 2}}]).engine.batch == 2  # checked after all sources
    path.write_text("engine:\n  batch: 4\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, [{"engine": {"batch": 0}}])
    assert str(err.value) == "engine.batch must be at least 1, got 0"


def test_syntax_errors_keep_their_text(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("engine:\n  batch: 4\n   x: 2\n")
    with pytest.raises(ConfigError) as err:
        read_yaml(path)
    assert str(err.value) == f"config file {path} is not valid YAML: line 3, column 5: mapping values are not allowed here"


def test_config_dicts_stay_plain(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("input:\n  options: {rtsp_transport: tcp}\n")
    options = load_config(path).to_dict()["input"]["options"]
    assert type(options) is dict and options == {"rtsp_transport": "tcp"}


def test_a_cameras_file_error_keeps_its_path_first_and_says_where(tmp_path):
    from cidstream.live.cameras import load_cameras

    path = tmp_path / "cams.yaml"
    path.write_text("cameras:\n  - {name: a, url: rtsp://x/y, fps: 3}\n")
    with pytest.raises(ConfigError) as err:
        load_cameras(path)
    assert str(err.value).startswith(f"{path}: unknown config key 'cameras[0].fps'")
    assert str(err.value).endswith("(line 2, column 32)")


# --- training configs ------------------------------------------------------------------------------------

def _edited(tmp_path, old: str, new: str) -> tuple[Path, int]:
    """cid_lite.yaml with one line changed; the 1-based number of that line."""
    text = (TRAIN / "cid_lite.yaml").read_text()
    assert text.count(old) == 1
    path = tmp_path / "train.yaml"
    path.write_text(text.replace(old, new))
    return path, text[: text.index(old)].count("\n") + 1


def test_every_shipped_training_config_loads():
    from training.detector.detector_train import load_detector_config

    cfg = read_train_config(TRAIN / "cid_lite.yaml")
    json.dumps(cfg)  # plain data: it goes into checkpoints and weights metadata
    assert cfg["train"]["batch"] == 12 and cfg["phases"]["finetune"]["rff"] == 2  # given / a default
    for name in ("generate", "generate_untuned", "eval_dense_patchy"):
        assert load_recipe(TRAIN / f"{name}.yaml").domains
    assert load_detector_config(str(TRAIN / "detector.yaml"))["data"]


def test_an_unknown_training_key_names_file_and_line(tmp_path):
    path, line = _edited(tmp_path, "  log_every: 25", "  log_evry: 25")
    with pytest.raises(ConfigError) as err:
        read_train_config(path)
    assert str(err.value).startswith(f"training config {path}, line {line}, column 3: unknown config key "
                                     "'train.log_evry' (known keys here: crop, batch,")


def test_a_bad_training_value_names_file_line_and_column(tmp_path):
    path, line = _edited(tmp_path, "  batch: 12", "  batch: 0")
    with pytest.raises(ConfigError) as err:
        read_train_config(path)
    assert str(err.value) == f"training config {path}, line {line}, column 10: train.batch must be at least 1, got 0"
    path, line = _edited(tmp_path, "split: select}              # images", "split: selekt}              # images")
    with pytest.raises(ConfigError, match=rf", line {line}, column \d+: data.target\[3\].split must be select, "):
        read_train_config(path)


def test_a_training_phase_without_steps_is_refused(tmp_path):
    path, line = _edited(tmp_path, "    steps: 600\n", "")
    with pytest.raises(ConfigError, match=r"phases.pretrain needs 'steps'"):
        read_train_config(path)


def test_recipe_errors_name_file_and_line(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("seed: 0\ndomains:\n  a:\n    weight: 1\n    steps:\n      - {op: smog}\n")
    with pytest.raises(ConfigError) as err:
        load_recipe(path)
    assert str(err.value).startswith(f"recipe {path}, line 6, column 14: domains.a.steps[0]: unknown op 'smog'")


# --- data root -------------------------------------------------------------------------------------------

def test_data_root_honours_cidstream_data(monkeypatch, tmp_path):
    monkeypatch.setenv("CIDSTREAM_DATA", str(tmp_path / "data"))
    assert data_root() == tmp_path / "data"
    monkeypatch.delenv("CIDSTREAM_DATA")
    assert data_root() == REPO.parent / "shared" / "data"  # a source checkout's fallback


def test_no_hard_coded_shared_data_paths_in_code():
    for folder in ("training", "benchmarks"):
        for path in (REPO / folder).glob("*.py"):
            assert '"shared" / "data"' not in path.read_text(), path


def test_config_classes_are_dataclasses_with_defaults():
    """Every field has a default (a file may leave any key out), and a default-built object holds exactly them."""
    for cls in (TrainConfig, DataEntry, RecipeFile, DomainFile, Config):
        assert dataclasses.is_dataclass(cls)
        made = cls()
        for f in dataclasses.fields(cls):
            assert f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING, \
                f"{cls.__name__}.{f.name} has no default"
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            assert getattr(made, f.name) == default, f"{cls.__name__}.{f.name}"


def test_signature_defaults_are_the_config_defaults():
    """Constructors take their defaults from cidstream/config.py, so a Python caller gets what a default
    run gets and a changed default cannot leave a stale copy behind."""
    import inspect

    from cidstream.config import setting
    from cidstream.detect.detector import Detector
    from cidstream.engine.temporal import TemporalSmoother
    from cidstream.io.camera import LiveSource
    from cidstream.io.images import write_image
    from cidstream.io.open_input import open_source
    from cidstream.io.reader import BackgroundReader
    from cidstream.io.sources import ImageFolderSource, VideoSource
    from cidstream.jobs.runner import run_jobs
    from cidstream.models.dcp import DarkChannelPrior
    from cidstream.pipeline.loop import dehaze_stream, run_pipeline
    from cidstream.sinks.media import (EncoderSettings, ImageFileSink, ImageFolderSink, ThreadedSink, VideoSink,
                                       open_sink)
    from cidstream.sinks.segments import SegmentedVideoSink

    same = lambda *names: {n: f"{names[0]}.{n}" for n in names[1:]}  # noqa: E731  (section, *fields)
    pairs = [
        (TemporalSmoother, same("temporal", "alpha", "level_alpha", "cut_threshold", "motion")),
        (DarkChannelPrior, same("model.dcp", "patch", "omega", "t0", "top_fraction", "radius", "eps", "subsample",
                                "sky_tolerance")),
        (Detector, same("detect", "classes", "conf", "iou", "imgsz")),
        (LiveSource, same("live", "transport", "open_timeout_s", "read_timeout_s", "watchdog_s", "reconnect",
                          "max_reconnects", "backoff_initial_s", "backoff_max_s", "backoff_jitter", "queue_size")),
        (EncoderSettings, same("output", "crf", "preset", "threads")),
        (VideoSink, same("output", "copy_audio")),
        (open_sink, same("output", "copy_audio", "jpeg_quality")),
        (ImageFolderSink, same("output", "jpeg_quality")),
        (ImageFileSink, same("output", "jpeg_quality")),
        (write_image, same("output", "jpeg_quality")),
        (ThreadedSink, {"maxsize": "output.queue_size"}),
        (SegmentedVideoSink, same("live", "segment_s")),
        (BackgroundReader, {"maxsize": "input.queue_size"}),
        (VideoSource, same("input", "decode_threads")),
        (ImageFolderSource, {"fps": "input.image_fps"}),
        (open_source, same("input", "decode_threads", "image_fps")),
        (dehaze_stream, {"batch": "engine.batch", "queue_size": "input.queue_size"}),
        (run_pipeline, {"batch": "engine.batch", "max_latency_ms": "engine.max_latency_ms",
                        "queue_size": "input.queue_size"}),
        (run_jobs, same("batch", "max_attempts")),
    ]
    cfg = Config()
    for fn, params in pairs:
        signature = inspect.signature(fn)
        for param, key in params.items():
            default = signature.parameters[param].default
            if isinstance(default, tuple):  # a list setting's default, kept immutable (VEHICLE_CLASSES)
                default = list(default)
            assert default == setting(cfg, key), f"{fn.__qualname__}({param}=...) is not the default of {key}"
