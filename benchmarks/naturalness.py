"""Does the output look natural? Colour cast, flat-region spread and brightness of each model on real fog.

    python benchmarks/naturalness.py --model dcp --model cid-lite [--model path/to/weights.pt ...] \
        [--out benchmarks/results/naturalness.json] [--data $CIDSTREAM_DATA] [--short 360] \
        [--split select|report] [--fade]

Sets (from $CIDSTREAM_DATA; the labelled sets by half, ``--split select`` by default, so the figures
can steer choices without touching the report halves):

* sample: every 5th frame of our own synthetic clip samples/hazy_traffic.mp4 (flat sky, poles);
* real_hazy: the 10 PNGs;
* dawn_fog: the chosen half of dawn_fog/JPEGImages (cidstream.evaluation.splits);
* foggy_road_real: every 5th frame of videos/foggy_road_real.mp4;
* highway_fog_cam: frames of the chosen half's days with visibility < 5000 m (visibility.tsv), about 40
  spread evenly.

Each run also counts, per model, the look goals of issue 40 its set medians meet (``GOALS``: sky spread
<= 1.5, flat spread <= 1.5, cast <= 2.0, sky Δab <= 2.5, L out/in >= 0.75 except on the night clip; a NaN sky
figure counts as met), the "look cells" round 5's selection rule ranks by (docs/training.md).
``--goals-of FILE`` prints that count for an earlier run's JSON without running anything.

``--fade`` adds FADE (Choi, You and Bovik's fog density; ``pip install fade-python``, import ``pyfade``; not a
cidstream dependency) of the input ("raw") and of each output, on the same scaled images: lower = less fog.

Every image is scaled to a ``--short`` px short side before the model; the figures
(cidstream/evaluation/naturalness.py) compare each output with that input. Prints a markdown table
(set x model x figure, means with medians in brackets) and writes the per-image figures and the
aggregates as JSON.
"""
from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cidstream.evaluation.splits import in_split, split_of  # noqa: E402
from cidstream.config import data_root  # noqa: E402
from cidstream.engine import Dehazer  # noqa: E402
from cidstream.io.images import IMAGE_SUFFIXES, natural_key, read_image  # noqa: E402
from cidstream.io import open_source  # noqa: E402
from cidstream.evaluation.naturalness import aggregate, naturalness  # noqa: E402

SETS = ("sample", "real_hazy", "dawn_fog", "foggy_road_real", "highway_fog_cam")
SAMPLE = REPO / "samples" / "hazy_traffic.mp4"
TABLE = (("chroma_shift", "Δab/px"), ("cast", "cast"), ("cast_a", "Δa* mean"), ("cast_b", "Δb* mean"),
         ("brightness_ratio", "L out/in"), ("flat_spread_ratio", "flat spread out/in"),
         ("sky_spread_ratio", "sky spread out/in"), ("sky_brightness_ratio", "sky L out/in"), ("sky_cast", "sky Δab"))


def downscale(img: np.ndarray, short: int) -> np.ndarray:
    h, w = img.shape[:2]
    s = short / min(h, w)
    if s >= 1:
        return img
    return cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def images_of(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=natural_key)


def load_set(name: str, data: Path, short: int, video_stride: int = 5, highway_count: int = 40,
             highway_max_vis: float = 5000.0, split: str = "select") -> list[tuple[str, np.ndarray]]:
    """(item name, RGB uint8 at ``short`` px) for one set; ``split``: the half of the labelled sets."""
    if name == "real_hazy":
        paths = images_of(data / "real_hazy")
    elif name == "dawn_fog":
        paths = in_split(images_of(data / "dawn_fog" / "JPEGImages"), split)
    elif name in ("sample", "foggy_road_real"):
        video = SAMPLE if name == "sample" else data / "videos" / "foggy_road_real.mp4"
        with open_source(str(video)) as src:
            return [(f"frame{f.index:04d}", downscale(f.rgb(), short)) for f in src if f.index % video_stride == 0]
    elif name == "highway_fog_cam":
        root = data / "highway_fog_cam"
        with open(root / "visibility.tsv", newline="") as fh:
            rows = [r for r in csv.DictReader(fh, delimiter="\t")
                    if split_of(Path(r["frame"]).parent.name) == split and float(r["visibility_m"]) < highway_max_vis]
        rows.sort(key=lambda r: r["frame"])
        if len(rows) > highway_count:
            rows = [rows[i] for i in np.linspace(0, len(rows) - 1, highway_count).round().astype(int)]
        paths = [root / "frames" / r["frame"] for r in rows]
    else:
        raise ValueError(f"unknown set {name!r}: {', '.join(SETS)}")
    return [(p.name if name != "highway_fog_cam" else f"{p.parent.name}/{p.name}", downscale(read_image(p)[0], short))
            for p in paths]


def finite_or_none(x):
    """NaN (no flat region in an image) -> null, so the JSON is standard."""
    if isinstance(x, dict):
        return {k: finite_or_none(v) for k, v in x.items()}
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x


GOALS = (("sky_spread_ratio", "<=", 1.5), ("flat_spread_ratio", "<=", 1.5), ("cast", "<=", 2.0),
         ("sky_cast", "<=", 2.5), ("brightness_ratio", ">=", 0.75))
NIGHT_SETS = ("foggy_road_real",)   # no brightness goal at night


def look_cells(agg: dict) -> dict[str, dict]:
    """Per model: the look goals its set medians meet, of how many, and the ones missed (set:figure=value)."""
    out: dict[str, dict] = {}
    for s, models in agg.items():
        for m, a in models.items():
            cell = out.setdefault(m, {"met": 0, "of": 0, "missed": []})
            for key, op, limit in GOALS:
                if key == "brightness_ratio" and s in NIGHT_SETS:
                    continue
                v = (a.get(key) or {}).get("median")
                ok = v is None or not np.isfinite(v) or (v <= limit if op == "<=" else v >= limit)
                cell["of"] += 1
                cell["met"] += bool(ok)
                if not ok:
                    cell["missed"].append(f"{s}:{key}={v:.2f}")
    return out


def print_look_cells(cells: dict) -> None:
    for m, c in cells.items():
        print(f"{m}: {c['met']}/{c['of']} look goals met; missed: {', '.join(c['missed']) or 'none'}")


def fade_summary(values) -> dict:
    v = np.asarray([float(x) for x in values])
    return {"mean": float(v.mean()), "median": float(np.median(v)), "n": int(v.size)}


def fmt(v: dict) -> str:
    return "–" if not np.isfinite(v["mean"]) else f"{v['mean']:.2f} ({v['median']:.2f})"


def table(agg: dict) -> str:
    lines = ["| set | model | n | " + " | ".join(h for _, h in TABLE) + " |",
             "|---|---|---|" + "---|" * len(TABLE)]
    for s, models in agg.items():
        for m, a in models.items():
            n = a["chroma_shift"]["n"]
            lines.append(f"| {s} | {m} | {n} | " + " | ".join(fmt(a[k]) for k, _ in TABLE) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", help="model name or weights file (repeatable); default dcp and cid-lite")
    p.add_argument("--set", action="append", choices=SETS, help="limit to these sets (repeatable)")
    p.add_argument("--data", default=str(data_root()))
    p.add_argument("--short", type=int, default=360, help="short side the images are scaled to")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "naturalness.json"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--split", choices=("select", "report"), default="select",
                   help="half of dawn_fog and highway_fog_cam (report: only for figures no choice is made on)")
    p.add_argument("--fade", action="store_true", help="also FADE fog density of input and outputs (needs pyfade)")
    p.add_argument("--goals-of", metavar="JSON", help="only count the look goals met in an earlier run's JSON")
    args = p.parse_args(argv)
    if args.goals_of:
        print_look_cells(look_cells(json.loads(Path(args.goals_of).read_text())["aggregate"]))  # NaN is null there
        return 0
    models = args.model or ["dcp", "cid-lite"]
    data = Path(args.data)
    if not data.is_dir():
        p.error(f"no data folder {data}")
    if args.fade:
        try:
            import pyfade
        except ImportError:
            p.error("--fade needs the fade-python package (pip install fade-python)")
    dehazers = {m: Dehazer(m, device=args.device) for m in models}
    per_image, agg, fade = {}, {}, {}
    t0 = time.time()
    for s in args.set or SETS:
        items = load_set(s, data, args.short, split=args.split)
        per_image[s], agg[s] = {}, {}
        if args.fade:
            fade[s] = {"raw": fade_summary([pyfade.fade_array(img) for _, img in items])}
        for m, d in dehazers.items():
            res, densities = {}, []
            for name, img in items:
                out = d(img)
                res[name] = naturalness(img, out)
                if args.fade:
                    densities.append(pyfade.fade_array(out))
                    res[name]["fade"] = float(densities[-1])
            per_image[s][m], agg[s][m] = res, aggregate(res.values())
            if args.fade:
                fade[s][m] = fade_summary(densities)
        print(f"{s}: {len(items)} images ({time.time() - t0:.0f} s)", file=sys.stderr)
    text = table(agg)
    print(text)
    cells = look_cells(agg)
    print_look_cells(cells)
    if fade:
        print("\n| set | " + " | ".join(fade[next(iter(fade))]) + " |  (FADE mean, median in brackets)")
        for s, arms in fade.items():
            print(f"| {s} | " + " | ".join(f"{v['mean']:.2f} ({v['median']:.2f})" for v in arms.values()) + " |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": " ".join(["python", "benchmarks/naturalness.py", *(argv or sys.argv[1:])]),
                               "models": models, "short": args.short, "split": args.split,
                               "machine": platform.machine(), "fade": fade,
                               "look_goals": cells, "aggregate": finite_or_none(agg),
                               "per_image": finite_or_none(per_image)},
                              indent=1, allow_nan=False) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
