"""Render a comparison sheet (raw | each model) on frames of our own synthetic sample.

    python samples/make_comparison.py --models dcp cid-lite [--frames 10 60] [--out sheet.png] [--figures]

``--figures`` writes each output's naturalness figures (cidstream/evaluation/naturalness.py) under its
name: mean L* ratio, sky spread ratio and mean colour shift Δab against the raw frame.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import av
import cv2
import numpy as np

from cidstream.engine import Dehazer
from cidstream.evaluation.naturalness import naturalness

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", default=str(HERE / "hazy_traffic.mp4"))
    parser.add_argument("--frames", type=int, nargs="+", default=[10, 60])
    parser.add_argument("--models", nargs="+", default=["dcp", "cid-lite"], help="model names or weights files")
    parser.add_argument("--out", default="comparison.png")
    parser.add_argument("--figures", action="store_true", help="print naturalness figures on each output panel")
    args = parser.parse_args()
    with av.open(args.video) as c:
        frames = {i: f.to_ndarray(format="rgb24") for i, f in enumerate(c.decode(video=0)) if i in args.frames}
    dehazers = [Dehazer(m, device="cpu") for m in args.models]
    rows = []
    for i in args.frames:
        panels = [("raw", frames[i])] + [(d.loaded.name, d(frames[i])) for d in dehazers]
        tiles = []
        for name, img in panels:
            note = ""
            if args.figures and name != "raw":
                f = naturalness(frames[i], img)
                note = f"L x{f['brightness_ratio']:.2f}  sky spread x{f['sky_spread_ratio']:.1f}  dab {f['chroma_shift']:.1f}"
            img = img.copy()
            cv2.rectangle(img, (0, 0), (150 if not note else 360, 26), (0, 0, 0), -1)
            cv2.putText(img, name, (6, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.65, (255, 255, 255), 1, cv2.LINE_AA)
            if note:
                cv2.putText(img, note, (130, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
            tiles += [img, np.full((img.shape[0], 6, 3), 255, np.uint8)]
        rows += [np.concatenate(tiles[:-1], axis=1), np.full((6, sum(t.shape[1] for t in tiles[:-1]), 3), 255,
                                                             np.uint8)]
    sheet = np.concatenate(rows[:-1], axis=0)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_PNG_COMPRESSION, 9] if args.out.lower().endswith(".png") else [cv2.IMWRITE_JPEG_QUALITY, 92]
    cv2.imwrite(args.out, cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), params)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
