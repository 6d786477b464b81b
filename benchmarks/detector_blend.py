"""Choose output.base_share of `cidstream train detector` on the SELECT half: for each share, the adapted
weights blended with the base (training/detector/detector_train.blend_with_base), then
  (a) vehicle AP50 and mAP50 of raw/adapted and MODEL/adapted on the select half of dawn_fog (cidstream eval's
      run_eval, gate off);
  (b) clear-frame AP50 against the base detector's boxes (configs/train/detector.yaml clear_check sources).
The report half is never touched here.

    python benchmarks/detector_blend.py --trained runs/detector/yolo/weights/best.pt [--shares 0 0.25 0.5 0.75] (default 0 0.5)
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cidstream.config import AP_CONF, data_root, load_config, read_yaml  # noqa: E402
from cidstream.detect import Detector  # noqa: E402
from cidstream.detect.safe_load import load_detector_checkpoint  # noqa: E402
from cidstream.evaluation.clear_check import clear_check  # noqa: E402
from cidstream.evaluation.evaluate import run_eval  # noqa: E402
from cidstream.engine import Dehazer  # noqa: E402
from training.data_entries import resolve  # noqa: E402
from training.detector.detector_train import blend_with_base  # noqa: E402


def main(argv=None) -> int:
    data = data_root()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trained", required=True, help="the trained weights (RUN_DIR/yolo/weights/best.pt)")
    ap.add_argument("--base", default=str(data / "weights" / "yolo11n_coco_from_int8_unfused.pt"))
    ap.add_argument("--shares", type=float, nargs="+", default=[0.0, 0.5])
    ap.add_argument("--model", default="dcp")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "detector_blend.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    check = read_yaml(ROOT / "configs" / "train" / "detector.yaml", "detector training config")["clear_check"]
    sources = [dict(s, path=resolve(s["path"])) for s in check["sources"]]
    cfg = load_config(overrides=[{"gate": {"policy": "off"}}])
    dehazers = {args.model: Dehazer.from_config(cfg, model=args.model)}
    result = {"trained": args.trained, "model": args.model, "split": "select", "shares": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for share in args.shares:
            ckpt = load_detector_checkpoint(args.trained, "trained detector")
            blend_with_base(ckpt, args.base, share)
            path = Path(tmp) / f"blend_{share:g}.pt"
            torch.save(ckpt, path)
            # the blended detector alone (the base arms do not change with the share: eval them once with
            # `cidstream eval --split select`)
            ev = run_eval(str(data / "dawn_fog" / "JPEGImages"), str(data / "dawn_fog" / "Annotations"), dehazers,
                          Detector(str(path), conf=AP_CONF), "voc", examples=0, split="select", resamples=0)
            row = {arm: {"vehicle_ap50": r["vehicle_ap50"], "map50": r["map50"]} for arm, r in ev["results"].items()}
            clear = clear_check({"adapted": str(path)}, sources, reference=args.base, log=lambda m: None)
            row["clear_ap50"] = {k: v["adapted"] for k, v in clear.items()}
            row["clear_ap50_min"] = min(row["clear_ap50"].values())
            result["shares"][f"{share:g}"] = row
            print(f"share {share:g}: {json.dumps(row)}  ({time.perf_counter() - t0:.0f} s)", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
