"""`cidstream train generate`: clean frames -> degraded pairs, metadata.jsonl and a contact sheet."""
from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import torch

from .depth import DepthSource
from ..inputs import expand_sources, resize_short_side, round_robin
from .recipe import Recipe, degrade

REPO = Path(__file__).resolve().parents[2]
SAMPLE_SCRIPT = REPO / "samples" / "make_sample.py"
# The built-in clean source: the synthetic road scene samples/make_sample.py draws, before it adds fog
# (samples/hazy_traffic.mp4 itself is foggy, so it cannot be the clean half of a pair).
BUILTIN_SCENE = "builtin:road_scene"
BUILTIN_FRAMES = 500   # 20 s at 25 fps: 100 distinct frames at the default stride of 5
PAIR_FILE = re.compile(r"(clean|hazy)/\d{6}\.png")   # the names generate() gives its images


def builtin_available() -> bool:
    return SAMPLE_SCRIPT.is_file()


def rendered_road_scene(stride: int = 5, frames: int = BUILTIN_FRAMES, fps: int = 25,
                        seed: int = 7) -> Iterator[tuple[np.ndarray, str, int]]:
    """(RGB uint8, source, frame index): every ``stride``-th clean frame of samples/make_sample.py's scene
    (the same cars as samples/hazy_traffic.mp4, drawn without fog; only numpy and OpenCV, no media files)."""
    spec = importlib.util.spec_from_file_location("cidstream_samples_make_sample", SAMPLE_SCRIPT)
    scene = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scene)
    rng = np.random.default_rng(seed)  # as make_sample.main draws its cars
    palette = [(0.7, 0.1, 0.1), (0.1, 0.2, 0.6), (0.85, 0.85, 0.85), (0.15, 0.15, 0.15), (0.8, 0.6, 0.1)]
    cars = [{"x": float(rng.choice([-4.6, -1.2, 1.2, 4.6])), "z0": float(rng.uniform(0, 70)),
             "v": float(rng.uniform(-6, 9)), "color": palette[i % len(palette)]} for i in range(7)]
    for i in range(0, frames, max(1, stride)):
        clean, _ = scene.draw_scene(i / fps, rng, cars)
        yield (np.clip(clean, 0, 1) * 255 + 0.5).astype(np.uint8), BUILTIN_SCENE, i


def clean_frames(sources: list[str], stride: int, dedup: float) -> Iterator[tuple[np.ndarray, str, int]]:
    if list(sources) == [BUILTIN_SCENE]:
        return rendered_road_scene(stride)
    return round_robin(expand_sources(sources), stride, dedup)


def to_tensor(frames: list[np.ndarray], device) -> torch.Tensor:
    return torch.from_numpy(np.stack(frames)).to(device).permute(0, 3, 1, 2).float() / 255.0


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return (x.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def depth_source(recipe: Recipe) -> DepthSource:
    d = dict(recipe.depth)
    return DepthSource(d.pop("source", "road_prior"), folder=d.get("folder"), path=d.get("path"),
                       invert=bool(d.get("invert", False)), near=float(d.get("near", 0.02)))


def pick_domains(recipe: Recipe, n: int, generator: torch.Generator) -> list[int]:
    weights = torch.tensor([d.weight for d in recipe.domains], dtype=torch.float)
    return torch.multinomial(weights / weights.sum(), n, replacement=True, generator=generator).tolist()


def degrade_batch(recipe: Recipe, clean: torch.Tensor, depth: torch.Tensor, generator: torch.Generator,
                  truth: dict | None = None):
    """Assign a domain per sample, run each domain's steps on its samples; returns (hazy, domains, params).
    With ``truth`` (a dict) it also gets each sample's transmission ``t`` (N, 1, H, W) and ``airlight`` (N, 3):
    t = 1 and a black airlight for a sample whose domain has no haze step."""
    chosen = pick_domains(recipe, clean.shape[0], generator)
    hazy = clean.clone()
    params: list = [None] * clean.shape[0]
    if truth is not None:
        truth["t"] = clean.new_ones((clean.shape[0], 1, *clean.shape[-2:]))
        truth["airlight"] = clean.new_zeros((clean.shape[0], 3))
    for k, domain in enumerate(recipe.domains):
        idx = [i for i, c in enumerate(chosen) if c == k]
        if not idx:
            continue
        part: dict = {}
        out, records = degrade(clean[idx], depth[idx], domain, generator, part if truth is not None else None)
        hazy[idx] = out
        for key, value in part.items():
            truth[key][idx] = value
        for i, rec in zip(idx, records):
            params[i] = rec
    return hazy, [recipe.domains[c].name for c in chosen], params


def listed_pairs(out: Path) -> set[str]:
    """The images an earlier run wrote into ``out``: those its metadata.jsonl lists, under our names only."""
    try:
        lines = (Path(out) / "metadata.jsonl").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return set()
    found = set()
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            found |= {rec[k] for k in ("clean", "hazy") if isinstance(rec.get(k), str) and PAIR_FILE.fullmatch(rec[k])}
    return found


def generate(recipe: Recipe, sources: list[str], out: Path, count: int, stride: int = 15, dedup: float = 2.0,
             batch: int = 8, device: str = "cpu", progress=None) -> dict:
    """Write ``count`` pairs to out/clean, out/hazy (PNG, same names) with out/metadata.jsonl,
    cycling over the sources' frames as often as needed. An earlier run's pairs that this one does not
    rewrite are removed, however it ends: readers of the folder (image globs, `train stats`) would take
    them for this run's. Only files the earlier metadata.jsonl lists under our names are touched."""
    out = Path(out)
    (out / "clean").mkdir(parents=True, exist_ok=True)
    (out / "hazy").mkdir(parents=True, exist_ok=True)
    stale = listed_pairs(out)
    try:
        return _write_pairs(recipe, sources, out, count, stride, dedup, batch, device, progress, stale)
    finally:
        for rel in stale:
            (out / rel).unlink(missing_ok=True)


def _write_pairs(recipe: Recipe, sources: list[str], out: Path, count: int, stride: int, dedup: float, batch: int,
                 device: str, progress, stale: set[str]) -> dict:
    """generate()'s work; each pair it writes is taken out of ``stale``."""
    depth_of = depth_source(recipe)
    sample = 0
    pending: list = []
    domains_seen: dict[str, int] = {}
    with (out / "metadata.jsonl").open("w", encoding="utf-8") as meta:
        def flush():
            nonlocal sample, pending
            if not pending:
                return
            generator = torch.Generator().manual_seed(recipe.seed * 1_000_003 + sample)
            clean = to_tensor([p[0] for p in pending], device)
            depth = depth_of(clean)
            hazy, domains, params = degrade_batch(recipe, clean, depth, generator)
            for (rgb, src, idx), h, dom, prm in zip(pending, to_uint8(hazy), domains, params):
                name = f"{sample:06d}.png"
                cv2.imwrite(str(out / "clean" / name), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
                cv2.imwrite(str(out / "hazy" / name), cv2.cvtColor(h, cv2.COLOR_RGB2BGR))
                stale.difference_update((f"clean/{name}", f"hazy/{name}"))
                meta.write(json.dumps({"id": sample, "clean": f"clean/{name}", "hazy": f"hazy/{name}",
                                       "source": src, "frame": idx, "domain": dom, "seed": recipe.seed,
                                       "depth": recipe.depth.get("source", "road_prior"), "steps": prm}) + "\n")
                domains_seen[dom] = domains_seen.get(dom, 0) + 1
                sample += 1
                if progress is not None:
                    progress(sample)
            pending = []

        # When the sources hold fewer distinct frames than asked for, go round again: each pass draws
        # new domains and parameters for the same clean frames.
        while sample < count:
            before = sample + len(pending)
            for rgb, src, idx in clean_frames(sources, stride, dedup):
                rgb = resize_short_side(rgb, recipe.short_side)
                if pending and rgb.shape != pending[0][0].shape:
                    flush()
                pending.append((rgb, src, idx))
                if len(pending) >= batch or sample + len(pending) >= count:
                    flush()
                if sample >= count:
                    break
            flush()
            if sample == before:  # the sources gave nothing at all
                break
    sheet = contact_sheet(out)
    return {"pairs": sample, "domains": domains_seen, "contact_sheet": str(sheet), "out": str(out)}


def contact_sheet(folder: Path, per_domain: int = 4, width: int = 240) -> Path:
    """One row per domain: clean | degraded thumbnails of its first samples, labelled."""
    folder = Path(folder)
    rows: dict[str, list] = {}
    for line in (folder / "metadata.jsonl").read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        if len(rows.setdefault(rec["domain"], [])) < per_domain:
            rows[rec["domain"]].append(rec)
    tiles_rows = []
    for domain, recs in rows.items():
        tiles = []
        for rec in recs:
            pair = []
            for key in ("clean", "hazy"):
                img = cv2.imread(str(folder / rec[key]))
                h = round(img.shape[0] * width / img.shape[1])
                pair.append(cv2.resize(img, (width, h), interpolation=cv2.INTER_AREA))
            tiles.append(np.concatenate([pair[0], np.full((pair[0].shape[0], 2, 3), 255, np.uint8), pair[1]], 1))
        height = max(t.shape[0] for t in tiles)
        tiles = [np.pad(t, ((0, height - t.shape[0]), (0, 0), (0, 0))) for t in tiles]
        while len(tiles) < per_domain:
            tiles.append(np.zeros_like(tiles[0]))
        row = np.concatenate(sum([[t, np.full((height, 8, 3), 255, np.uint8)] for t in tiles], [])[:-1], 1)
        label = np.full((24, row.shape[1], 3), 255, np.uint8)
        cv2.putText(label, f"{domain}  (clean | degraded)", (4, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1,
                    cv2.LINE_AA)
        tiles_rows.append(np.concatenate([label, row, np.full((8, row.shape[1], 3), 255, np.uint8)], 0))
    width_max = max(r.shape[1] for r in tiles_rows)
    sheet = np.concatenate([np.pad(r, ((0, 0), (0, width_max - r.shape[1]), (0, 0)), constant_values=255)
                            for r in tiles_rows], 0)
    path = folder / "contact_sheet.png"
    cv2.imwrite(str(path), sheet)
    return path
