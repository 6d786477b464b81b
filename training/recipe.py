"""Generation recipes: domains (day haze, dense fog, sand-dust, night haze...) as ordered degradation
steps whose parameters are drawn per sample from ranges given in YAML (configs/train/generate.yaml).

A parameter is a number (fixed), a [low, high] pair (uniform), or a list of words (one is chosen).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml

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
    "jpeg": (("quality",), False, False),
    "video_codec": (("crf",), False, False),
}
DEFAULTS = {"haze": {"patchiness": 0.0, "height_falloff": 0.0, "tint": "grey"},
            "colour_cast": {"red": 1.0, "green": 1.0, "blue": 1.0}, "motion_blur": {"angle": [0.0, math.pi]}}


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
    domains: list[Domain]
    seed: int = 0
    short_side: int = 360
    depth: dict = field(default_factory=lambda: {"source": "road_prior"})
    path: str | None = None


def _check_param(where: str, value):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
        if value[0] > value[1]:
            raise ConfigError(f"{where}: range {value} runs backwards")
        return
    if isinstance(value, str) or (isinstance(value, list) and value and all(isinstance(v, str) for v in value)):
        return
    raise ConfigError(f"{where}: expected a number, a [low, high] range or word(s), got {value!r}")


def parse_recipe(data: dict, path: str | None = None) -> Recipe:
    known = {"seed", "short_side", "depth", "domains"}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"recipe: unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(known))})")
    domains = []
    for name, spec in (data.get("domains") or {}).items():
        if not isinstance(spec, dict) or "steps" not in spec:
            raise ConfigError(f"recipe: domain '{name}' needs 'steps' (and optionally 'weight')")
        steps = []
        for i, raw in enumerate(spec["steps"]):
            where = f"recipe: domains.{name}.steps[{i}]"
            if not isinstance(raw, dict) or "op" not in raw:
                raise ConfigError(f"{where}: each step is a mapping with an 'op'")
            op = raw["op"]
            if op not in OPS:
                raise ConfigError(f"{where}: unknown op '{op}' (known: {', '.join(OPS)})")
            params = dict(DEFAULTS.get(op, {}))
            for k, v in raw.items():
                if k == "op":
                    continue
                if k not in OPS[op][0]:
                    raise ConfigError(f"{where}: op '{op}' has no parameter '{k}' (it has: {', '.join(OPS[op][0])})")
                _check_param(f"{where}.{k}", v)
                params[k] = v
            missing = [k for k in OPS[op][0] if k not in params]
            if missing:
                raise ConfigError(f"{where}: op '{op}' needs {', '.join(missing)}")
            if op == "haze":
                tints = params["tint"] if isinstance(params["tint"], list) else [params["tint"]]
                bad = [t for t in tints if t not in TINTS]
                if bad:
                    raise ConfigError(f"{where}.tint: unknown tint {bad} (known: {', '.join(TINTS)})")
            steps.append(Step(op, params))
        domains.append(Domain(name, float(spec.get("weight", 1.0)), steps))
    if not domains:
        raise ConfigError("recipe: no domains")
    return Recipe(domains, int(data.get("seed", 0)), int(data.get("short_side", 360)),
                  dict(data.get("depth") or {"source": "road_prior"}), path)


def load_recipe(path: str | Path) -> Recipe:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"recipe {path} is not valid YAML: {str(exc).splitlines()[0]}") from exc
    return parse_recipe(data, str(path))


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


def apply_step(x: torch.Tensor, depth: torch.Tensor, step: Step, generator: torch.Generator) -> tuple[torch.Tensor,
                                                                                                       dict]:
    """Draw the step's parameters for the batch, apply it, and return what was drawn (per sample)."""
    n = x.shape[0]
    p = {k: draw(v, n, generator) for k, v in step.params.items()}
    op = step.op
    if op == "haze":
        tint = torch.tensor([TINTS[t] for t in p["tint"]])
        airlight = (tint * p["airlight"].view(-1, 1)).clamp(0, 1)
        y = D.haze(x, depth, p["beta"], airlight, p["patchiness"], p["height_falloff"], generator)
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
    elif op == "jpeg":
        y = D.jpeg(x, p["quality"].round().int())
    else:  # video_codec
        y = D.video_codec(x, p["crf"].round().int())
    drawn = [{k: (v[i] if isinstance(v, list) else round(float(v[i]), 4)) for k, v in p.items()} for i in range(n)]
    return y, drawn


def degrade(x: torch.Tensor, depth: torch.Tensor, domain: Domain, generator: torch.Generator):
    """All steps of a domain on a batch; returns the degraded batch and per-sample parameter records."""
    records = [[] for _ in range(x.shape[0])]
    for step in domain.steps:
        x, drawn = apply_step(x, depth, step, generator)
        for rec, d in zip(records, drawn):
            rec.append({"op": step.op, **d})
    return x, records
