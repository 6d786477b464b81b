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

from ..config import Config, merge, parse_assignment, validate
from ..engine.fog_meter import meter_file
from ..errors import ConfigError, InputError
from ..io.images import natural_path_key
from ..sinks.media import VIDEO_SUFFIXES as WRITABLE_VIDEO_SUFFIXES
from ..io.sources import expand_glob, is_glob, is_image_input, no_match
from ..models.registry import bundled_weights, canonical_name

MANIFEST_SUFFIXES = (".csv", ".jsonl")
# Keys of a manifest line that are not config keys.
JOB_KEYS = ("path", "output", "max_frames", "detect", "compare")
# Settings that change speed, not the output: a rerun with other values still counts as "same settings".
RUNTIME_ONLY = {"engine": ("device", "batch", "max_latency_ms", "channels_last"),
                "input": ("queue_size", "decode_threads", "decode"), "output": ("queue_size", "threads")}


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
    payload = {**job.settings(), "dehazer": built_from, "detector": detectors and dataclasses.asdict(detectors),
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
            with path.open(newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                if not reader.fieldnames or "path" not in reader.fieldnames:
                    raise ConfigError(f"manifest {path}: the first line must name the columns, one of them 'path'")
                for n, row in enumerate(reader, start=2):
                    rows.append((f"{path}:{n}", {k: v for k, v in row.items() if k and v not in (None, "")}))
        else:
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
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
    return rows


def _yaml_value(text):
    return parse_assignment(f"x={text}")["x"] if isinstance(text, str) else text


def _with_options(base: Config, row: dict, where: str) -> tuple[Config, dict]:
    """The job's own config (base plus the row's config keys) and its job keys."""
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


def collect_jobs(inputs: list[str], cfg: Config, detect: bool = False, compare: bool = False,
                 max_frames: int | None = None) -> list[Job]:
    """Expand INPUTS (folders recursively, globs, manifests, single files) into jobs with unique outputs."""
    suffixes = {s.lower() for s in cfg.batch.video_suffixes}
    entries: list[tuple[Path, str, Config, dict]] = []   # (input, output stem, config, job options)
    for spec in inputs:
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
                job_cfg, opts = _with_options(cfg, row, where)
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


def _free_name(stem: str, ext: str, used, tag: str | None) -> str:
    """STEM+EXT when free, else STEM_TAG+EXT, else STEM_2+EXT, STEM_3+EXT..."""
    candidates = [stem] + ([f"{stem}_{tag}"] if tag else [])
    n = 2
    while True:
        for candidate in candidates:
            if candidate + ext not in used:
                return candidate + ext
        candidates, n = [f"{stem}_{n}"], n + 1


def _make_jobs(entries, detect: bool, compare: bool, max_frames: int | None, base_models: str = "") -> list[Job]:
    """One job per entry, each with its own output. A file named twice with the same settings (a folder
    and a glob over it) runs once; with other settings or another output (a manifest line per model) it
    is a job of its own. Outputs that manifest lines set are refused when two are one; default outputs
    are made unique: a.mp4 and a.mkv give a.mp4 and a_mkv.mp4, a second model of x.mp4 x_MODEL.mp4,
    other settings x_2.mp4."""
    planned = []   # (job, output stem, extension, the output its manifest line set or None)
    seen = set()
    for item, stem, cfg, opts in entries:
        where = opts.get("where", str(item))
        job_detect = _as_bool(opts["detect"], where) if "detect" in opts else detect
        job_compare = _as_bool(opts["compare"], where) if "compare" in opts else compare
        job_detect = job_detect or job_compare
        frames = _yaml_value(opts["max_frames"]) if "max_frames" in opts else max_frames
        if frames is not None and (not isinstance(frames, int) or frames < 1):
            raise ConfigError(f"{where}: max_frames must be a positive integer, got {frames!r}")
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
    used: dict[str, Job] = {}
    for job, _, _, given in planned:
        if given is not None:
            if given in used:
                raise ConfigError(f"{used[given].where} and {job.where} would both write {given}: give each "
                                  "line its own output")
            used[given] = job
    models: dict[str, list[str]] = {}   # input -> the models of its jobs so far
    for job, stem, ext, given in planned:
        earlier, model = models.setdefault(job.key, []), _model_tag(job.cfg)
        if given is None:
            if earlier:  # x.mp4 once per model: x_cid-lite.mp4; with other settings x_2.mp4
                tag = model if model not in earlier else None
            else:        # a.mp4 next to a.mkv: a_mkv.mp4
                tag = Path(job.input).suffix.lstrip(".").lower() or "file"
            job.output = _free_name(stem, ext, used, tag)
            used[job.output] = job
        earlier.append(model)
    for job, *_ in planned:
        if len(models[job.key]) > 1:  # the ledger keeps one entry per job
            job.key = f"{job.key} -> {job.output}"
        job.fingerprint = fingerprint(job)
    return [job for job, *_ in planned]
