"""Clear weather must not suffer: AP50 of every comparison arm on clear frames, against the base detector's
own confident boxes on the same raw frames.

Arms, as in `cidstream eval --detector-b ADAPTED --fuse wbf`: raw/base, MODEL/base, raw+MODEL wbf/base,
and the same through the adapted detector. The dehazer runs as a user gets it (Dehazer.from_config: the
haze gate at its default, so clear frames are mostly left raw); ``--gate off`` shows the ungated cost.
Sources are the clear_check of configs/train/detector.yaml: clean frames the adapted detector never trained on.

    python benchmarks/clear_weather_arms.py --adapted fog_yolo11n.pt [--model cid-lite] [--gate off]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cidstream.config import AP_CONF, GateConfig, data_root, load_config, read_yaml, words  # noqa: E402
from cidstream.detect import Detector  # noqa: E402
from cidstream.evaluation.clear_check import REF_CONF, read_every, reference_ap  # noqa: E402
from cidstream.detect.fusion import fuse  # noqa: E402
from cidstream.engine import Dehazer  # noqa: E402
from training.data_entries import resolve  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--adapted", required=True, help="the adapted detector (cidstream train detector --out)")
    ap.add_argument("--base", default=str(data_root() / "weights" / "yolo11n_coco_from_int8.pt"))
    ap.add_argument("--model", default="cid-lite", help="dehazing model (default cid-lite)")
    ap.add_argument("--gate", default=None, choices=words(GateConfig, "policy"), help="override the gate policy")
    ap.add_argument("--config", default=str(ROOT / "configs" / "train" / "detector.yaml"),
                    help="its clear_check lists the sources")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "clear_weather_arms.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    check = read_yaml(args.config, "detector training config")["clear_check"]
    cfg = load_config(overrides=[{"gate": {"policy": args.gate}}] if args.gate else ())
    dehazer = Dehazer.from_config(cfg, model=args.model)
    dets = {"base": Detector(args.base, conf=AP_CONF, imgsz=640), "adapted": Detector(args.adapted, conf=AP_CONF, imgsz=640)}
    result = {"base": Path(args.base).name, "adapted": Path(args.adapted).name, "model": args.model,
              "gate": cfg.gate.policy, "reference": f"base detector's boxes with confidence >= {REF_CONF} on the raw "
                                                     "frame", "sources": {}}
    for src in check["sources"]:
        path = Path(resolve(src["path"]))
        frames = read_every(path, int(src.get("step", 6)))
        ref = [dets["base"](f[None])[0] for f in frames]  # reference_ap keeps its boxes >= REF_CONF as truth
        dehazed = [dehazer(f[None])[0] for f in frames]
        row = {"frames": len(frames), "reference_boxes": int(sum((r.confidence >= REF_CONF).sum() for r in ref)),
               "frames_left_raw": int(sum(np.array_equal(a, b) for a, b in zip(frames, dehazed)))}
        for name, d in dets.items():
            raw = ref if name == "base" else [d(f[None])[0] for f in frames]
            deh = [d(f[None])[0] for f in dehazed]
            row[f"raw/{name}"] = reference_ap(ref, raw)
            row[f"{args.model}/{name}"] = reference_ap(ref, deh)
            row[f"raw+{args.model} wbf/{name}"] = reference_ap(ref, [fuse([a, b], "wbf") for a, b in zip(raw, deh)])
        result["sources"][path.stem] = row
        print(f"{path.stem}: {row}  ({time.perf_counter() - t0:.0f} s)", flush=True)
    arms = [k for k in next(iter(result["sources"].values())) if "/" in k]
    result["mean"] = {a: round(float(np.mean([r[a] for r in result["sources"].values()])), 2) for a in arms}
    result["seconds"] = round(time.perf_counter() - t0, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"\n{'arm':<28}" + "".join(f"{s[:14]:>16}" for s in result["sources"]) + f"{'mean':>8}")
    for a in arms:
        print(f"{a:<28}" + "".join(f"{r[a]:>16.2f}" for r in result["sources"].values()) + f"{result['mean'][a]:>8.2f}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
