"""Generation recipes: domains (day haze, dense fog, sand-dust, night haze...) as ordered degradation
steps whose parameters are drawn per sample from ranges given in YAML (configs/train/generate.yaml).

A parameter is a number (fixed), a [low, high] pair (uniform), or a list of words (one is chosen).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Annotated

import torch

from cidstream.config import Range, check_rules, config_error, mark_of, merge, plain, read_yaml
from cidstream.errors import ConfigError

from . import degradations as D

# Airlight colours by tint name, multiplied by the sampled airlight level.
TINTS = {"grey": (1.0, 1.0, 1.0), "yellow": (1.0, 0.84, 0.6), "blue": (0.86, 0.93, 1.0)}

# op -> (parameter names, whether it needs depth, whether it draws noise)
OPS = {
    "haze": (("beta", "airlight", "tint", "patchiness", "height_falloff"), True, True),
    "low_light": (("gamma", "exposure"), False, False),
    "glow": (("strength", "threshold"), False, False),
    "gaussian_noise": (("sigma",), False, True),
    "poisson_gaussian_noise": (("shot", "read"), False, True),
    "chroma_noise": (("sigma",), False, True),
    "colour_cast": (("red", "green", "blue"), False, False),
    "defocus_blur": (("radius",), False, False),
    "motion_blur": (("length", "angle"), False, False),
    "rain": (("density", "length", "angle", "brightness"), False, True),
    "jpeg": (("quality",), False, False),
    "video_codec": (("crf",), False, False),
}
DEFAULTS = {"haze": {"patchiness": 0.0, "height_falloff": 0.0, "tint": "grey"},
            "colour_cast": {"red": 1.0, "green": 1.0, "blue": 1.0}, "motion_blur": {"angle": [0.0, math.pi]},
            "rain": {"angle": [1.35, 1.79], "brightness": [0.2, 0.5]}}


@dataclass
class Step:
    op: str
    params: dict


@dataclass
class Domain:
    name: str
    weight: float
    steps: list[Step]


@dataclass
class Recipe:
    """A parsed recipe (parse_recipe); a file's keys and their defaults are RecipeFile's."""
    domains: list[Domain]
    seed: int
    short_side: int
    depth: dict
    path: str | None = None


@dataclass
class RecipeFile:
    """The keys of a recipe file, their defaults and ranges (checked like every config: cidstream.config)."""
    seed: int = 0
    short_side: Annotated[int, Range(32, 4096)] = 360  # clean frames are resized so their short side is this
    depth: dict = field(default_factory=lambda: {"source": "road_prior"})  # training/synthetic/depth.py
    domains: dict = field(default_factory=dict)  # name -> DomainFile


@dataclass
class DomainFile:
    weight: Annotated[float, Range(0)] = 1.0  # share of the samples, relative to the other domains
    steps: list[dict] = field(default_factory=list)  # {op, parameters}: OPS


def _error(message: str, data=None, key=None, value: bool = True) -> ConfigError:
    """An error at the key's place in the file; without one (a dict given in code) it says 'recipe:'."""
    mark = mark_of(data, key, value)
    return config_error(message if mark else f"recipe: {message}", mark)


def _apply(obj, data, where: str = ""):
    """cidstream.config.merge and the rules of the types, with the 'recipe:' prefix where no place is known."""
    try:
        merge(obj, data, where)
        check_rules(obj, f"{where}." if where else "")
    except ConfigError as exc:
        raise exc if getattr(exc, "mark", None) else _error(str(exc)) from None
    return obj


def _check_param(where: str, value, step: dict, key: str):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
        if value[0] > value[1]:
            raise _error(f"{where}: range {value} runs backwards", step, key)
        return
    if isinstance(value, str) or (isinstance(value, list) and value and all(isinstance(v, str) for v in value)):
        return
    raise _error(f"{where}: expected a number, a [low, high] range or word(s), got {value!r}", step, key)


def parse_recipe(data: dict, path: str | None = None) -> Recipe:
    known = [f.name for f in fields(RecipeFile)]
    unknown = [k for k in data if k not in known]
    if unknown:
        raise _error(f"unknown key(s) {', '.join(map(str, sorted(unknown, key=str)))} (known: "
                     f"{', '.join(sorted(known))})", data, unknown[0], value=False)
    settings = _apply(RecipeFile(), data)
    domains = []
    for name, spec in settings.domains.items():
        if not isinstance(spec, dict) or "steps" not in spec:
            raise _error(f"domain '{name}' needs 'steps' (and optionally 'weight')", settings.domains, name)
        domain = _apply(DomainFile(), spec, f"domains.{name}")
        steps = []
        for i, raw in enumerate(domain.steps):
            where = f"domains.{name}.steps[{i}]"
            if "op" not in raw:
                raise _error(f"{where}: each step is a mapping with an 'op'", raw)
            op = raw["op"]
            if op not in OPS:
                raise _error(f"{where}: unknown op '{op}' (known: {', '.join(OPS)})", raw, "op")
            params = dict(DEFAULTS.get(op, {}))
            for k, v in raw.items():
                if k == "op":
                    continue
                if k not in OPS[op][0]:
                    raise _error(f"{where}: op '{op}' has no parameter '{k}' (it has: {', '.join(OPS[op][0])})",
                                 raw, k, value=False)
                _check_param(f"{where}.{k}", v, raw, k)
                params[k] = plain(v)
            missing = [k for k in OPS[op][0] if k not in params]
            if missing:
                raise _error(f"{where}: op '{op}' needs {', '.join(missing)}", raw, "op")
            if op == "haze":
                tints = params["tint"] if isinstance(params["tint"], list) else [params["tint"]]
                bad = [t for t in tints if t not in TINTS]
                if bad:
                    raise _error(f"{where}.tint: unknown tint {bad} (known: {', '.join(TINTS)})", raw, "tint")
            steps.append(Step(op, params))
        domains.append(Domain(str(name), domain.weight, steps))
    if not domains:
        raise _error("no domains", data, "domains")
    return Recipe(domains, settings.seed, settings.short_side, plain(settings.depth), path)


def recipe_data(path: str | Path, _seen: tuple = ()) -> dict:
    """A recipe file's mapping, with ``extends: OTHER.yaml`` (relative to the file) resolved: the other
    recipe's keys and domains, then this file's (a domain of the same name replaces the other's)."""
    path = Path(path)
    data = read_yaml(path, "recipe")
    base = data.pop("extends", None)
    if base is None:
        return data
    if not isinstance(base, str) or not base:
        raise ConfigError(f"recipe {path}: extends: expected the file name of another recipe, got {base!r}")
    base_path = (path.parent / base).resolve()
    if base_path in _seen or base_path == path.resolve():
        raise ConfigError(f"recipe {path}: 'extends: {base}' goes round in a circle")
    parent = recipe_data(base_path, (*_seen, path.resolve()))
    mine = data.get("domains", {})
    for key, value in parent.items():
        data.setdefault(key, value)
    if isinstance(mine, dict) and isinstance(parent.get("domains"), dict):  # else parse_recipe says what is wrong
        data["domains"] = {**parent["domains"], **mine}
    return data


def load_recipe(path: str | Path) -> Recipe:
    return parse_recipe(recipe_data(path), str(path))


def draw(value, n: int, generator: torch.Generator):
    """Per-sample values: a tensor (N,) for numbers and ranges, a list of N words for choices."""
    if isinstance(value, str):
        return [value] * n
    if isinstance(value, list) and value and isinstance(value[0], str):
        idx = torch.randint(len(value), (n,), generator=generator, device=generator.device)
        return [value[int(i)] for i in idx]
    if isinstance(value, list):
        lo, hi = float(value[0]), float(value[1])
        return lo + (hi - lo) * torch.rand(n, generator=generator, device=generator.device).cpu()
    return torch.full((n,), float(value))


def apply_step(x: torch.Tensor, depth: torch.Tensor, step: Step, generator: torch.Generator,
               truth: dict | None = None) -> tuple[torch.Tensor, dict]:
    """Draw the step's parameters for the batch, apply it, and return what was drawn (per sample).
    A haze step also puts its transmission map and airlight into ``truth`` when one is given."""
    n = x.shape[0]
    p = {k: draw(v, n, generator) for k, v in step.params.items()}
    op = step.op
    if op == "haze":
        tint = torch.tensor([TINTS[t] for t in p["tint"]])
        airlight = (tint * p["airlight"].view(-1, 1)).clamp(0, 1)
        t = D.transmission(x, depth, p["beta"], p["patchiness"], p["height_falloff"], generator)
        y = D.scatter(x, t, airlight)
        if truth is not None:
            truth["t"], truth["airlight"] = t, airlight.to(x)
    elif op == "low_light":
        y = D.low_light(x, p["gamma"], p["exposure"])
    elif op == "glow":
        y = D.glow(x, p["strength"], p["threshold"])
    elif op == "gaussian_noise":
        y = D.gaussian_noise(x, p["sigma"], generator)
    elif op == "poisson_gaussian_noise":
        y = D.poisson_gaussian_noise(x, p["shot"], p["read"], generator)
    elif op == "chroma_noise":
        y = D.chroma_noise(x, p["sigma"], generator)
    elif op == "colour_cast":
        y = D.colour_cast(x, torch.stack([p["red"], p["green"], p["blue"]], dim=1))
    elif op == "defocus_blur":
        y = D.defocus_blur(x, p["radius"])
    elif op == "motion_blur":
        y = D.motion_blur(x, p["length"], p["angle"])
    elif op == "rain":
        y = D.rain(x, p["density"], p["length"], p["angle"], p["brightness"], generator)
    elif op == "jpeg":
        y = D.jpeg(x, p["quality"].round().int())
    else:  # video_codec
        y = D.video_codec(x, p["crf"].round().int())
    drawn = [{k: (v[i] if isinstance(v, list) else round(float(v[i]), 4)) for k, v in p.items()} for i in range(n)]
    return y, drawn


def degrade(x: torch.Tensor, depth: torch.Tensor, domain: Domain, generator: torch.Generator,
            truth: dict | None = None):
    """All steps of a domain on a batch; returns the degraded batch and per-sample parameter records
    (``truth``: see apply_step)."""
    records = [[] for _ in range(x.shape[0])]
    for step in domain.steps:
        x, drawn = apply_step(x, depth, step, generator, truth)
        for rec, d in zip(records, drawn):
            rec.append({"op": step.op, **d})
    return x, records
