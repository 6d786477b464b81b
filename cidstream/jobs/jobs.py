"""What a batch has to do: one job per input file, from folders, globs and manifests."""
from __future__ import annotations

import copy
import csv
import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..config import FLAG_RANGES, Config, merge, parse_assignment, validate
from ..engine.fog_meter import meter_file
from ..errors import ConfigError, InputError
from ..io.images import natural_path_key
from ..sinks.media import VIDEO_SUFFIXES as WRITABLE_VIDEO_SUFFIXES
from ..io.sources import expand_glob, is_glob, is_image_input, is_url, no_match
from ..redact import redact_url
from ..models.registry import bundled_weights, canonical_name
from .ledger import BATCH_FILES

MANIFEST_SUFFIXES = (".csv", ".jsonl")
# Config keys of a manifest line that name files: relative ones are read from the manifest's folder.
PATH_KEYS = ("model.name", "detect.detector", "detect.fog_detector", "detect.detector_b", "gate.meter")
# A file or folder name in an output: file systems take 255 bytes, less what the batch adds while writing
# (".NAME.PID.tmp.mp4", ".NAME.lock", "NAME.replaced").
MAX_NAME_BYTES = 200
# Keys of a manifest line that are not config keys.
JOB_KEYS = ("path", "output", "max_frames", "detect", "compare")
# Settings that change speed, not the output: a rerun with other values still counts as "same settings".
# settings that change where and how fast a job runs, not what it makes (a CPU runtime: the same output within
# a level, the same boxes), so changing one does not redo finished files
RUNTIME_ONLY = {"engine": ("device", "batch", "max_latency_ms", "channels_last", "cpu_runtime"),
                "input": ("queue_size", "decode_threads", "decode"), "output": ("queue_size", "threads"),
                "detect": ("cpu_runtime",)}


@dataclass
class Job:
    key: str                # the ledger's name for this job: the input's absolute path (+ " -> OUTPUT"
    #                         when the batch has several jobs of that file)
    input: str
    output: str             # relative to the batch's output folder
    cfg: Config
    detect: bool = False
    compare: bool = False
    max_frames: int | None = None
    fingerprint: str = ""
    attempts: int = 0
    frames_hint: int | None = None  # frame count from the header, for the progress view
    where: str = ""         # the manifest line it came from ("" for folders, globs and files)
    own_models: bool = False  # its manifest line changed the model/engine/detector settings: if those cannot
    #                           be loaded, only this file fails (otherwise every file would, and the batch stops)
    replaces: bool = False    # its output was there when planned, all of it written by batches into OUT_DIR

    def settings(self) -> dict:
        """What decides the output's content (the fingerprint's ingredients, shown in the ledger)."""
        cfg = self.cfg.to_dict()
        cfg.pop("batch")
        for section, keys in RUNTIME_ONLY.items():
            for key in keys:
                cfg[section].pop(key)
        if not (self.detect or self.compare):
            cfg.pop("detect")
        return {"config": cfg, "detect": self.detect, "compare": self.compare, "max_frames": self.max_frames,
                "output": self.output}


def model_settings(cfg: Config, detect: bool) -> tuple:
    """What decides which models a file needs (a worker loads them once per distinct value): the specs
    the dehazer and the detector are built from, all of them."""
    from ..detect.detectors import DetectorsSpec
    from ..engine.dehazer import DehazerSpec

    return DehazerSpec.from_config(cfg), DetectorsSpec.from_config(cfg.detect) if detect else None


def _file_stamp(path: str | Path) -> dict | None:
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


def fingerprint(job: Job) -> str:
    """Same settings, same input file and same model weights -> same fingerprint."""
    weights = bundled_weights(job.cfg.model.name) or Path(job.cfg.model.name)
    dehazer, detectors = model_settings(job.cfg, job.detect)  # the specs the models are built from ...
    built_from = {k: v for k, v in dehazer.as_dict().items() if k not in RUNTIME_ONLY["engine"]}  # ... not where
    detector = detectors and dataclasses.asdict(detectors)
    if detector:
        detector["base"].pop("runtime")
    payload = {**job.settings(), "dehazer": built_from, "detector": detector,
               "detector_files": detectors and [_file_stamp(p) for p in (detectors.fog, detectors.second) if p],
               "input": _file_stamp(job.input),
               "weights": _file_stamp(weights) if weights.suffix else None,
               "fog_meter": _file_stamp(meter_file(job.cfg.gate.meter)) if job.cfg.gate.measure == "learned" else None}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _videos_under(folder: Path, suffixes: set[str]) -> list[Path]:
    return sorted((p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in suffixes),
                  key=natural_path_key)


def _stem_below(item: Path, folder: Path) -> str:
    """A default output name for ``item``: its path below ``folder`` without the suffix, or its file
    name when it lies elsewhere ('../x.mp4' of a manifest: x), so that it stays inside the output folder."""
    rel = os.path.normpath(os.path.relpath(item, folder))
    return item.stem if rel.split(os.sep)[0] == ".." else str(Path(rel).with_suffix(""))


def _manifest_rows(path: Path) -> list[tuple[str, dict]]:
    """(where, row) per manifest line; rows are plain mappings with at least ``path``."""
    rows = []
    try:
        if path.suffix.lower() == ".csv":
            with path.open(newline="", encoding="utf-8-sig") as fh:  # -sig: Excel's BOM is not part of a name
                reader = csv.DictReader(fh)
                if not reader.fieldnames or "path" not in reader.fieldnames:
                    raise ConfigError(f"manifest {path}: the first line must name the columns, one of them 'path'")
                for n, row in enumerate(reader, start=2):
                    rows.append((f"{path}:{n}", {k: v for k, v in row.items() if k and v not in (None, "")}))
        else:
            for n, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ConfigError(f"manifest {path}:{n} is not valid JSON: {exc.msg}") from None
                if isinstance(row, str):
                    row = {"path": row}
                if not isinstance(row, dict):
                    raise ConfigError(f"manifest {path}:{n}: expected an object with a 'path' or a string")
                rows.append((f"{path}:{n}", row))
    except OSError as exc:
        raise InputError(f"cannot read manifest {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError:
        raise InputError(f"manifest {path} is not UTF-8 text") from None
    for where, row in rows:
        if not row.get("path"):
            raise ConfigError(f"manifest {where}: no 'path'")
        for key in ("path", "output"):
            if row.get(key) is not None and not isinstance(row[key], str):
                raise ConfigError(f"manifest {where}: '{key}' must be a string (a path), got "
                                  f"{type(row[key]).__name__} {json.dumps(row[key], default=str)[:60]}")
    return rows


def _yaml_value(text):
    return parse_assignment(f"x={text}")["x"] if isinstance(text, str) else text


def _from_manifest(value, folder: Path):
    """A file named in a manifest, read from the manifest's folder as its input paths are: a relative path
    with a folder part always, a bare name when that file is there (else it stays a name: a model, a
    detector Ultralytics knows, a cached detector)."""
    if not isinstance(value, str) or not value or "://" in value:
        return value
    path = Path(value).expanduser()
    if path.is_absolute():
        return str(path)
    return str(folder / path) if "/" in value or (folder / path).exists() else value


def _with_options(base: Config, row: dict, where: str, folder: Path) -> tuple[Config, dict]:
    """The job's own config (base plus the row's config keys; files named relative to ``folder``, the
    manifest's) and its job keys."""
    cfg = copy.deepcopy(base)
    job_opts = {}
    for key, value in row.items():
        if key in JOB_KEYS:
            job_opts[key] = value
            continue
        if key == "model":
            key = "model.name"
        if "." not in key:
            raise ConfigError(f"manifest {where}: unknown column '{key}' (use {', '.join(JOB_KEYS)}, 'model' "
                              "or a config key such as engine.batch or model.dcp.omega)")
        data: dict = {}
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = _yaml_value(value)
        if key in PATH_KEYS:
            node[leaf] = _from_manifest(node[leaf], folder)
        try:
            merge(cfg, data)
        except ConfigError as exc:
            raise ConfigError(f"manifest {where}: {exc}") from None
    try:
        validate(cfg)
    except ConfigError as exc:
        raise ConfigError(f"manifest {where}: {exc}") from None
    return cfg, job_opts


def _as_bool(value, where: str) -> bool:
    value = _yaml_value(value)
    if not isinstance(value, bool):
        raise ConfigError(f"manifest {where}: expected true or false, got {value!r}")
    return value


def _refuse_stream(spec: str, where: str = "") -> None:
    """A batch reads files: a stream URL would be taken for a path (its password kept in the ledger)."""
    if is_url(spec):
        raise InputError(f"{where}{redact_url(spec)} is a stream URL, and cidstream batch reads files: use "
                         "cidstream run (one stream) or cidstream live (cameras)")


def collect_jobs(inputs: list[str], cfg: Config, detect: bool = False, compare: bool = False,
                 max_frames: int | None = None) -> list[Job]:
    """Expand INPUTS (folders recursively, globs, manifests, single files) into jobs with unique outputs."""
    suffixes = {s.lower() for s in cfg.batch.video_suffixes}
    entries: list[tuple[Path, str, Config, dict]] = []   # (input, output stem, config, job options)
    for spec in inputs:
        _refuse_stream(spec)
        path = Path(spec)
        if is_glob(spec):
            root, found = expand_glob(spec)
            found = sorted((p for p in found if p.is_file() and p.suffix.lower() in suffixes), key=natural_path_key)
            if not found:
                raise no_match(spec, "video file", sorted(suffixes))
            entries += [(p, _stem_below(p, root), cfg, {}) for p in found]
        elif path.is_dir():
            found = _videos_under(path, suffixes)
            if not found:
                raise InputError(f"no video files under {spec} (looked for {', '.join(sorted(suffixes))})")
            entries += [(p, _stem_below(p, path), cfg, {}) for p in found]
        elif path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
            for where, row in _manifest_rows(path):
                _refuse_stream(str(row["path"]), f"manifest {where}: ")
                job_cfg, opts = _with_options(cfg, row, where, path.parent)
                item = Path(row["path"]).expanduser()
                item = item if item.is_absolute() else path.parent / item
                if opts.get("output"):
                    stem = str(opts["output"])
                    suffix = Path(stem).suffix
                    if suffix.lower() in WRITABLE_VIDEO_SUFFIXES:  # renamed.mp4 stays renamed.mp4
                        stem, opts["suffix"] = stem[: -len(suffix)], suffix
                    elif suffix.lower() in suffixes:
                        raise ConfigError(f"manifest {where}: output '{stem}': videos are written as "
                                          f"{', '.join(WRITABLE_VIDEO_SUFFIXES)}")
                else:
                    stem = _stem_below(item, path.parent)
                entries.append((item, stem, job_cfg, {**opts, "where": where}))
        elif path.is_file():
            entries.append((path, path.stem, cfg, {}))
        else:
            raise InputError(f"input not found: {spec}")
    return _make_jobs(entries, detect, compare, max_frames, model_settings(cfg, detect))


def _model_tag(cfg: Config) -> str:
    return Path(canonical_name(cfg.model.name)).stem


def _parents(name: str) -> list[str]:
    return [str(p) for p in Path(name).parents][:-1]  # 'a/b/c' -> ['a/b', 'a']


class _Outputs:
    """Output names taken so far. Two clash when they are one path or one lies inside the other (a
    detection folder 'a' and 'a/x.mp4'): publishing one would replace the other."""

    def __init__(self):
        self.files: dict[str, Job] = {}     # output -> its job
        self.holders: dict[str, Job] = {}   # a folder that holds an output -> that output's job

    def clash(self, name: str) -> Job | None:
        """The job whose output ``name`` would be, hold or lie inside."""
        if name in self.files or name in self.holders:
            return self.files.get(name) or self.holders[name]
        return next((self.files[p] for p in _parents(name) if p in self.files), None)

    def take(self, name: str, job: Job) -> None:
        self.files[name] = job
        for p in _parents(name):
            self.holders.setdefault(p, job)


def _check_output_name(name: str, where: str) -> None:
    """Refuse an output that would take the name of one of the batch's own files or a name too long to write."""
    first = Path(name).parts[0]
    if first.lower() in BATCH_FILES:
        raise ConfigError(f"{where}: output '{name}': the batch keeps {first} for itself in the output folder "
                          f"(as {', '.join(BATCH_FILES)}): choose another name")
    for part in Path(name).parts:
        if len(os.fsencode(part)) > MAX_NAME_BYTES:
            raise ConfigError(f"{where}: output '{name[:40]}...': a name of {len(os.fsencode(part))} bytes in it; "
                              f"at most {MAX_NAME_BYTES} (the file system's 255 less the batch's temporary suffixes)")


def _free_name(stem: str, ext: str, outputs: _Outputs, tag: str | None, where: str) -> str:
    """STEM+EXT when free, else STEM_TAG+EXT, else STEM_2+EXT, STEM_3+EXT..."""
    holder = next((outputs.files[p] for p in _parents(stem) if p in outputs.files), None)
    if holder is not None:  # renaming the last part cannot take it out of the other output's folder
        raise ConfigError(f"{where}: its output {stem + ext} would lie inside {holder.output}, the output of "
                          f"{holder.where or holder.input}: give one of them another output")
    candidates = [stem] + ([f"{stem}_{tag}"] if tag else [])
    n = 2
    while True:
        for candidate in candidates:
            if outputs.clash(candidate + ext) is None:
                return candidate + ext
        candidates, n = [f"{stem}_{n}"], n + 1


def _make_jobs(entries, detect: bool, compare: bool, max_frames: int | None, base_models: str = "") -> list[Job]:
    """One job per entry, each with its own output. A file named twice with the same settings (a folder
    and a glob over it) runs once; with other settings or another output (a manifest line per model) it
    is a job of its own. Outputs that manifest lines set are refused when two are one (or one lies inside
    the other) or take the batch's own names; default outputs are made unique: a.mp4 and a.mkv give a.mp4
    and a_mkv.mp4, a second model of x.mp4 x_MODEL.mp4, other settings x_2.mp4, a detection folder 'a'
    beside 'a/x.mp4' a_mp4."""
    planned = []   # (job, output stem, extension, the output its manifest line set or None)
    seen = set()
    for item, stem, cfg, opts in entries:
        where = opts.get("where", str(item))
        job_detect = _as_bool(opts["detect"], where) if "detect" in opts else detect
        job_compare = _as_bool(opts["compare"], where) if "compare" in opts else compare
        job_detect = job_detect or job_compare
        frames = _yaml_value(opts["max_frames"]) if "max_frames" in opts else max_frames
        rule = FLAG_RANGES["max_frames"][0]   # the --max-frames rule, written once in config.py
        if frames is not None and (isinstance(frames, bool) or not isinstance(frames, int) or not rule.holds(frames)):
            raise ConfigError(f"{where}: max_frames must be an integer {rule.describe()}, got {frames!r}")
        stem = os.path.normpath(stem.strip("/") or item.stem)
        if stem == "." or Path(stem).is_absolute() or Path(stem).parts[0] == "..":
            raise ConfigError(f"{where}: output '{stem}' must stay inside the output folder")
        ext = "" if job_detect or is_image_input(str(item)) else opts.get("suffix", ".mp4")
        given = stem + ext if "output" in opts else None
        job = Job(str(item.resolve()), str(item.absolute()), given or "", cfg, job_detect, job_compare, frames)
        same = (job.key, json.dumps(job.settings(), sort_keys=True, default=str))
        if same in seen:
            continue
        seen.add(same)
        if "where" in opts:
            job.where = where
            job.own_models = model_settings(cfg, job_detect) != base_models
        planned.append((job, stem, ext, given))
    outputs = _Outputs()
    for job, _, _, given in planned:
        if given is not None:
            _check_output_name(given, job.where)
            other = outputs.clash(given)
            if other is not None:
                both = f"both write {given}" if other.output == given else f"write {other.output} and {given}, " \
                                                                            "one inside the other"
                raise ConfigError(f"{other.where} and {job.where} would {both}: give each line its own output")
            outputs.take(given, job)
    models: dict[str, list[str]] = {}   # input -> the models of its jobs so far
    tags: dict[int, str | None] = {}
    for job, stem, ext, given in planned:
        earlier, model = models.setdefault(job.key, []), _model_tag(job.cfg)
        if given is None:
            if earlier:  # x.mp4 once per model: x_cid-lite.mp4; with other settings x_2.mp4
                tags[id(job)] = model if model not in earlier else None
            else:        # a.mp4 next to a.mkv: a_mkv.mp4
                tags[id(job)] = Path(job.input).suffix.lstrip(".").lower() or "file"
        earlier.append(model)
    # Deeper outputs first: a folder output 'a' then moves aside ('a_mp4') for 'a/x.mp4', not the reverse.
    for job, stem, ext, given in sorted(planned, key=lambda p: -len(Path(p[1]).parts)):
        if given is None:
            job.output = _free_name(stem, ext, outputs, tags[id(job)], job.where or job.input)
            _check_output_name(job.output, job.where or job.input)
            outputs.take(job.output, job)
    for job, *_ in planned:
        if len(models[job.key]) > 1:  # the ledger keeps one entry per job
            job.key = f"{job.key} -> {job.output}"
        job.fingerprint = fingerprint(job)
    return [job for job, *_ in planned]
