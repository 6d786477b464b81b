"""The steady gate on video: flicker with the per-frame gate, the default steady gate and its variants (issue 35).

The dehazer runs once per clip with no gate (its temporal smoothing on, as in a default run), keeping each
frame's raw and dehazed pixels; every gate setting then measures and mixes those frames as the pipeline does
(HazeGate.decide + apply_gate), so the settings differ only in the strengths they give. Printed per clip and
setting: the flicker and warping-error ratios (cidstream/evaluation/stability.py: the output's frame-to-frame
change over the input's; 1 = no more unsteady than the input), the largest strength change between consecutive
frames and the strength's range. The variants show what each part of the default (gate section of
configs/default.yaml) does; docs/benchmarking.md ("Steady gate") says which design decision saw which clip.

    python benchmarks/steady_gate.py            # foggy_road_real + the sample -> benchmarks/results/steady_gate.json
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cidstream.config import data_root, load_config  # noqa: E402
from cidstream.engine import Dehazer  # noqa: E402
from cidstream.engine.haze import HazeGate, apply_gate  # noqa: E402
from cidstream.evaluation.stability import StabilityMeter  # noqa: E402
from cidstream.io import source_from_config  # noqa: E402

CLIPS = ((data_root() / "videos" / "foggy_road_real.mp4", 225), (ROOT / "samples" / "hazy_traffic.mp4", 100))
VARIANTS = {"per frame": {"steady": False}, "steady (default)": {},
            "steady, no band": {"band": 1.0}, "steady, no band, alpha 0.01": {"band": 1.0, "steady_alpha": 0.01}}


def dehaze_clip(path: Path, frames: int, cfg) -> tuple[list, list]:
    """(raw batches, dehazed batches) of one clip: the configured model and temporal smoothing, no gate."""
    dehazer = Dehazer.from_config(cfg)
    dehazer.gate = HazeGate(policy="off")
    raws, outs = [], []
    with source_from_config(str(path), cfg.input, frames, "cpu") as src:
        batch = []
        for f in src:
            batch.append(f.rgb())
            if len(batch) == cfg.engine.batch:
                raws.append(torch.from_numpy(np.stack(batch)))
                batch = []
        if batch:
            raws.append(torch.from_numpy(np.stack(batch)))
    for raw in raws:
        outs.append(dehazer.process(raw, stream=str(path)))
    return raws, outs


def score(raws: list, outs: list, gate: HazeGate | None, stream: str) -> dict:
    """Stability and strength figures of one gate setting (None: the dehazer alone, gate off)."""
    meter, strengths, vis = StabilityMeter(), [], []
    for raw, out in zip(raws, outs):
        if gate is not None:
            haze = gate.decide(raw, stream)
            out = apply_gate(raw, out, haze.strength)
            strengths += haze.strength.tolist()
            vis += haze.visibility_m.tolist()
        meter.update_batch(raw.numpy(), out.numpy())
    res = meter.result()
    row = {"flicker_ratio": res["flicker_ratio"], "warp_ratio": res["warp_ratio"]}
    if strengths:
        s = np.asarray(strengths)
        row |= {"max_step_seen": round(float(np.abs(np.diff(s)).max()), 4), "strength_min": round(float(s.min()), 3),
                "strength_max": round(float(s.max()), 3), "visibility_m_median": round(float(np.median(vis)), 1)}
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "steady_gate.json"))
    args = p.parse_args(argv)
    cfg = load_config(overrides=[{"engine": {"device": "cpu"}}])
    results = []
    for path, n in CLIPS:
        raws, outs = dehaze_clip(path, n, cfg)
        rows = {"gate off": score(raws, outs, None, str(path))}
        for name, change in VARIANTS.items():
            gate = HazeGate(**{**vars(cfg.gate), **change}, cut_threshold=cfg.temporal.cut_threshold)
            rows[name] = score(raws, outs, gate, str(path))
        results.append({"clip": path.name, "frames": sum(len(r) for r in raws), "rows": rows})
        print(f"{path.name}")
        for name, r in rows.items():
            print(f"  {name:30s} flicker {r['flicker_ratio']:6.3f}  warp {r['warp_ratio']:6.3f}"
                  + (f"  max|Δs| {r['max_step_seen']:.4f}  s {r['strength_min']:.3f}..{r['strength_max']:.3f}"
                     if "max_step_seen" in r else ""), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": platform.processor() or platform.machine(), "device": "cpu",
                               "model": cfg.model.name, "gate": vars(cfg.gate), "variants": VARIANTS,
                               "clips": results}, indent=2) + "\n")
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
