"""Restoration and detection recovery on synthetic haze pairs: raw (hazy), dcp and each --model.

    python benchmarks/synthetic_recovery.py --model cid-lite [--model path/to/weights.pt ...] \
        [--frames 40] [--out benchmarks/results/synthetic_recovery.json] [--data $CIDSTREAM_DATA]

Clean frames: every ``--stride``-th (20) frame of three clear traffic videos (highway_720p,
ua_detrac_960x540, intersection_cctv_640x480), taken in turn until ``--frames`` (40) are in hand,
each scaled to a 360 px short side and used whole (no crops). Every clear source is also a source
of cid-lite's training pairs, so the held-apart part is the haze: each ``--recipe`` degrades the
frames with training's own ``degrade_batch`` (depth from the recipe's depth source, the road prior,
on the whole frame), with a fixed ``--seed`` and one generator per frame (frame i of a shorter run
is the same pair as frame i of a longer one). Default recipes:

* generate_untuned: configs/train/generate_untuned.yaml, the generator configuration cid-lite's
  training never saw (its validation recipe);
* eval_dense_patchy: configs/train/eval_dense_patchy.yaml, dense fog whose density varies over the
  frame (evaluation only).

Per recipe and arm:

* PSNR and SSIM against the clean frame (training/dehazer/losses.py), on the uint8 images a camera
  pipeline would hand on, averaged over frames;
* detection recovery: class-agnostic vehicle AP50 (VOC, cidstream/evaluation/ap.py) of the detector's
  boxes on the arm's image (conf >= 0.001, NMS IoU 0.7, imgsz 640, classes car/bus/truck/
  motorcycle/bicycle), against the same detector's confident boxes (conf >= 0.25) on the CLEAN
  frame. 1.0 means the detector sees what it saw before the haze. With a 95 % bootstrap interval
  over frames (cidstream/evaluation/bootstrap.py, the same resamples for every arm) and intervals of
  the differences between arms.

Every Dehazer is built plainly (``Dehazer(name, device="cpu")``): no haze gate, no temporal
smoothing. Prints a markdown table and writes JSON (per-frame figures included).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cidstream.detect import VEHICLE_CLASSES, Detector  # noqa: E402
from cidstream.evaluation.ap import GroundTruth, average_precision  # noqa: E402
from cidstream.evaluation.ap import match  # noqa: E402
from cidstream.evaluation.bootstrap import bootstrap  # noqa: E402
from cidstream.config import AP_CONF, data_root  # noqa: E402
from cidstream.engine import Dehazer  # noqa: E402
from training.dehazer import losses as L  # noqa: E402
from training.synthetic.generate import degrade_batch, depth_source, to_tensor, to_uint8  # noqa: E402
from training.inputs import resize_short_side, round_robin  # noqa: E402
from training.synthetic.recipe import load_recipe  # noqa: E402

DATA = data_root()
SOURCES = ("videos/highway_720p.mp4", "clear_traffic/ua_detrac_960x540.mp4",
           "clear_traffic/intersection_cctv_640x480.mp4")
RECIPES = ("configs/train/generate_untuned.yaml", "configs/train/eval_dense_patchy.yaml")
DETECTOR = "weights/yolo11n_coco_from_int8.pt"
VEHICLE = "vehicle"
TRUTH_CONF = 0.25   # the detector's confident boxes on the clean frame are the reference
ARM_CONF = AP_CONF  # ranked detections on each arm, for AP
SHORT_SIDE = 360


def clean_frames(data: Path, count: int, stride: int) -> list[tuple[str, np.ndarray]]:
    """(name, RGB uint8 at a 360 px short side): every ``stride``-th frame, the sources in turn."""
    specs = [str(data / s) for s in SOURCES]
    missing = [s for s in specs if not Path(s).is_file()]
    if missing:
        raise SystemExit(f"clear source(s) not found: {', '.join(missing)} (pass --data)")
    out = []
    for rgb, spec, index in round_robin(specs, stride, 0.0):
        out.append((f"{Path(spec).stem}:{index}", resize_short_side(rgb, SHORT_SIDE)))
        if len(out) >= count:
            break
    return out


def degrade(recipe_path: Path, frames: list[tuple[str, np.ndarray]], seed: int) -> tuple[list[np.ndarray], list]:
    """Hazy uint8 frames and what was drawn for each (domain, steps), one generator per frame."""
    recipe = load_recipe(recipe_path)
    recipe.seed = seed
    depth_of = depth_source(recipe)
    hazy, drawn = [], []
    for i, (_, rgb) in enumerate(frames):
        g = torch.Generator().manual_seed(seed * 1_000_003 + i)
        clean = to_tensor([rgb], "cpu")
        out, domains, params = degrade_batch(recipe, clean, depth_of(clean), g)
        hazy.append(to_uint8(out)[0])
        drawn.append({"domain": domains[0], "steps": params[0]})
    return hazy, drawn


def as_float(images: list[np.ndarray]) -> list[torch.Tensor]:
    return [torch.from_numpy(np.ascontiguousarray(im)).permute(2, 0, 1)[None].float() / 255.0 for im in images]


def detect(detector: Detector, images: list[np.ndarray]) -> list:
    return [detector(im[None])[0] for im in images]


def vehicle_list(names: list[str], found: list) -> list[tuple[str, float, np.ndarray]]:
    """Class-agnostic (image, score, xyxy) over all frames."""
    return [(n, float(d.confidence[k]), d.xyxy[k]) for n, d in zip(names, found) for k in range(len(d))]


def run(models: list[str], frames: int = 40, stride: int = 20, seed: int = 321, recipes=RECIPES,
        data: Path = DATA, detector_path: str | None = None, resamples: int = 1000, log=print) -> dict:
    started = time.perf_counter()
    data = Path(data)
    arms = ["raw", "dcp"] + [m for m in models if m not in ("raw", "dcp")]
    pairs = clean_frames(data, frames, stride)
    names = [n for n, _ in pairs]
    clean_f = as_float([im for _, im in pairs])
    det_spec = detector_path or str(data / DETECTOR)
    detector = Detector(det_spec, classes=VEHICLE_CLASSES, conf=ARM_CONF, iou=0.7, imgsz=640, device="cpu")
    dehazers = {arm: Dehazer(arm, device="cpu") for arm in arms if arm != "raw"}
    log(f"{len(pairs)} clean frames; detector {Path(det_spec).name}; arms {', '.join(arms)}")

    # Reference: the detector's own confident boxes on the clean frames (NMS keeps the higher score,
    # so the boxes >= 0.25 of a 0.001 run are those of a 0.25 run).
    ref = [d[d.confidence >= TRUTH_CONF] for d in detect(detector, [im for _, im in pairs])]
    truth = {n: GroundTruth(d.xyxy.astype(np.float64), np.zeros(len(d), bool)) for n, d in zip(names, ref)}
    positives = int(sum(len(d) for d in ref))

    result = {"frames": names, "stride": stride, "seed": seed, "short_side": SHORT_SIDE,
              "detector": Path(det_spec).name, "truth": {"conf": TRUTH_CONF, "boxes": positives,
                                                         "per_frame": [len(d) for d in ref]},
              "arm_conf": ARM_CONF, "iou_nms": 0.7, "imgsz": 640, "classes": list(VEHICLE_CLASSES),
              "resamples": resamples, "recipes": {}}
    for recipe_path in recipes:
        recipe_path = Path(recipe_path)
        if not recipe_path.is_absolute():
            recipe_path = REPO / recipe_path
        key = recipe_path.stem
        t0 = time.perf_counter()
        hazy, drawn = degrade(recipe_path, pairs, seed)
        per_arm, matched = {}, {}
        for arm in arms:
            t1 = time.perf_counter()
            out = hazy if arm == "raw" else [dehazers[arm](h[None])[0] for h in hazy]
            seconds_dehaze = time.perf_counter() - t1
            out_f = as_float(out)
            psnr = [float(L.psnr(o, c)[0]) for o, c in zip(out_f, clean_f)]
            ssim = [float(L.ssim(o, c)[0]) for o, c in zip(out_f, clean_f)]
            dets = vehicle_list(names, detect(detector, out))
            ap = average_precision(dets, truth)
            matched[arm] = {VEHICLE: match(dets, truth, names)}
            per_arm[arm] = {"psnr": round(float(np.mean(psnr)), 3), "ssim": round(float(np.mean(ssim)), 4),
                            "recovery_ap50": round(ap.ap, 4), "detections": ap.detections,
                            "true_positives": ap.true_positives, "dehaze_seconds": round(seconds_dehaze, 2),
                            "per_frame": {"psnr": [round(v, 3) for v in psnr], "ssim": [round(v, 4) for v in ssim]}}
            log(f"  {key} {arm}: PSNR {per_arm[arm]['psnr']:.2f}  recovery {ap.ap:.3f}")
        boot = bootstrap(matched, [VEHICLE], VEHICLE, len(names), resamples=resamples, seed=seed)
        for arm in arms:
            per_arm[arm]["recovery_ap50_ci"] = boot["arms"][arm]["vehicle_ap50"]
            per_arm[arm]["meets"] = {"psnr_ge_22": per_arm[arm]["psnr"] >= 22.0,
                                     "recovery_ge_0.90": per_arm[arm]["recovery_ap50"] >= 0.90,
                                     "psnr_above_dcp": per_arm[arm]["psnr"] > per_arm["dcp"]["psnr"]}
        differences = [{"arms": f"{d['a']} - {d['b']}", "recovery_ap50": round(
            per_arm[d["a"]]["recovery_ap50"] - per_arm[d["b"]]["recovery_ap50"], 4),
            "recovery_ap50_ci": d["vehicle_ap50"], "lead_share": d["vehicle_ap50_lead_share"]}
            for d in boot["differences"]]
        domains: dict[str, int] = {}
        for d in drawn:
            domains[d["domain"]] = domains.get(d["domain"], 0) + 1
        for arm in arms:  # mean PSNR per haze domain (night haze and sand-dust are not what a dehazer fixes)
            frame_psnr = per_arm[arm]["per_frame"]["psnr"]
            per_arm[arm]["psnr_by_domain"] = {
                dom: round(float(np.mean([p for p, d in zip(frame_psnr, drawn) if d["domain"] == dom])), 3)
                for dom in domains}
        result["recipes"][key] = {"recipe": str(recipe_path.relative_to(REPO)) if recipe_path.is_relative_to(REPO)
                                  else str(recipe_path), "domains": domains, "arms": per_arm,
                                  "differences": differences, "drawn": drawn,
                                  "seconds": round(time.perf_counter() - t0, 1)}
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["machine"] = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                         "torch_threads": torch.get_num_threads()}
    return result


def table(result: dict) -> str:
    lines = [f"Synthetic pairs: {len(result['frames'])} whole frames at {result['short_side']} px, seed "
             f"{result['seed']}; reference: {result['truth']['boxes']} clean-frame vehicle boxes "
             f"(conf >= {result['truth']['conf']}, {result['detector']}).", "",
             "| recipe | arm | PSNR | SSIM | recovery AP50 | 95 % interval |", "|---|---|---:|---:|---:|---|"]
    for key, rec in result["recipes"].items():
        for arm, r in rec["arms"].items():
            ci = r["recovery_ap50_ci"]
            ci_s = f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "n/a"
            lines.append(f"| {key} | {arm} | {r['psnr']:.2f} | {r['ssim']:.4f} | {r['recovery_ap50']:.3f} | {ci_s} |")
    lines += ["", "| recipe | arms | recovery difference | 95 % interval | lead share |", "|---|---|---:|---|---:|"]
    for key, rec in result["recipes"].items():
        for d in rec["differences"]:
            ci = d["recovery_ap50_ci"]
            ci_s = f"[{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else "n/a"
            lines.append(f"| {key} | {d['arms']} | {d['recovery_ap50']:+.3f} | {ci_s} | {d['lead_share']} |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", help="model name or weights path (repeatable; default cid-lite)")
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--stride", type=int, default=20)
    ap.add_argument("--seed", type=int, default=321)
    ap.add_argument("--recipe", action="append", help=f"recipe YAML (repeatable; default {', '.join(RECIPES)})")
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--detector", default=None, help=f"default DATA/{DETECTOR}")
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "synthetic_recovery.json"))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
        import cv2

        cv2.setNumThreads(args.threads)
    os.environ.setdefault("YOLO_OFFLINE", "1")
    result = run(args.model if args.model is not None else ["cid-lite"], args.frames, args.stride, args.seed,
                 args.recipe or RECIPES, Path(args.data), args.detector, args.resamples,
                 log=lambda s: print(s, file=sys.stderr))
    print(table(result))
    print(f"\n{result['seconds']:.0f} s")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        print(f"written {args.out}")
    return result


if __name__ == "__main__":
    main()
