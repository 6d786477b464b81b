"""Render samples/hazy_traffic.mp4: a synthetic road scene with moving cars under fog.

Everything is drawn here (no third-party media): a perspective road, lane markings, roadside
poles and cars, then fog by the atmospheric scattering model I = J t + A (1 - t) with
t = exp(-beta * depth), depth taken from the same perspective geometry.

    python samples/make_sample.py [--out samples/hazy_traffic.mp4] [--seconds 4]
"""
from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from cidstream.frames import Frame, StreamInfo
from cidstream.sinks import EncoderSettings, VideoSink

W, H, HORIZON, VX = 640, 360, 150, 320
FAR = 60.0  # metres at which the road meets the horizon band


def row_depth(y: np.ndarray) -> np.ndarray:
    """Ground-plane depth (m) of image rows below the horizon; the camera sits 6 m up."""
    return np.clip(6.0 * 420.0 / np.maximum(y - HORIZON, 1e-3), 3.0, FAR)


def project(x_m: float, z_m: float) -> tuple[float, float, float]:
    """Ground point (lateral x, distance z) in metres -> image (u, v) and pixels per metre."""
    scale = 420.0 / z_m
    return VX + x_m * scale, HORIZON + 6.0 * scale, scale


def set_depth(depth: np.ndarray, x0: float, y0: float, x1: float, y1: float, z: float) -> None:
    """Give a box of the depth map one distance, clipped to the frame."""
    xa, xb = int(np.clip(x0, 0, W)), int(np.clip(x1 + 1, 0, W))
    ya, yb = int(np.clip(y0, 0, H)), int(np.clip(y1 + 1, 0, H))
    depth[ya:yb, xa:xb] = z


def draw_scene(t: float, rng: np.random.Generator, cars: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    img = np.zeros((H, W, 3), np.float32)
    yy = np.arange(H, dtype=np.float32)[:, None]
    sky = np.clip(0.55 + 0.35 * (yy / HORIZON), 0, 1)
    img[:HORIZON] = np.concatenate([0.55 * sky, 0.65 * sky, 0.8 * sky], axis=1)[:HORIZON, None, :]
    img[HORIZON:] = (0.32, 0.42, 0.28)  # grass
    depth = np.full((H, W), FAR * 1.6, np.float32)
    depth[HORIZON:] = row_depth(yy[HORIZON:])
    road = np.array([project(-7, 3.5)[:2], project(7, 3.5)[:2], project(7, FAR)[:2], project(-7, FAR)[:2]],
                    np.int32)
    cv2.fillConvexPoly(img, road, (0.33, 0.33, 0.35))
    for lane_x in (-2.3, 2.3):  # dashed markings moving toward the camera
        for k in range(40):
            z0 = 4.0 + ((k * 6.0 - t * 18.0) % 240.0)
            z1 = z0 + 3.0
            if z1 > FAR:
                continue
            p0, p1 = project(lane_x, z0), project(lane_x, z1)
            cv2.line(img, (int(p0[0]), int(p0[1])), (int(p1[0]), int(p1[1])), (0.9, 0.9, 0.88),
                     max(1, int(0.15 * p0[2])))
    for side in (-9.0, 9.0):  # roadside poles
        for k in range(12):
            z = 5.0 + ((k * 9.0 - t * 18.0) % 108.0)
            if z > FAR:
                continue
            u, v, s = project(side, z)
            top = v - 7.0 * s
            cv2.rectangle(img, (int(u - 0.15 * s), int(top)), (int(u + 0.15 * s), int(v)), (0.2, 0.18, 0.15), -1)
            set_depth(depth, u - 0.15 * s, top, u + 0.15 * s, v, z)
    for car in sorted(cars, key=lambda c: -((c["z0"] + c["v"] * t) % 70.0)):
        z = 5.0 + (car["z0"] + car["v"] * t) % 70.0
        if z > FAR:
            continue
        u, v, s = project(car["x"], z)
        w, h = 1.8 * s, 1.4 * s
        x0, y0, x1, y1 = int(u - w / 2), int(v - h), int(u + w / 2), int(v)
        cv2.rectangle(img, (x0, y0), (x1, y1), car["color"], -1)
        cv2.rectangle(img, (x0 + int(0.15 * w), y0 + int(0.1 * h)), (x1 - int(0.15 * w), y0 + int(0.45 * h)),
                      (0.15, 0.18, 0.22), -1)  # windscreen
        for wx in (x0 + int(0.2 * w), x1 - int(0.2 * w)):
            cv2.circle(img, (wx, y1), max(1, int(0.18 * s)), (0.05, 0.05, 0.05), -1)
        set_depth(depth, x0, y0, x1, y1, z)
    return img, depth


def add_fog(clean: np.ndarray, depth: np.ndarray, beta: float, airlight, rng) -> np.ndarray:
    t = np.exp(-beta * depth / FAR)[..., None]
    hazy = clean * t + np.asarray(airlight, np.float32) * (1.0 - t)
    hazy += rng.normal(0.0, 0.01, hazy.shape).astype(np.float32)
    return np.clip(hazy, 0.0, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).with_name("hazy_traffic.mp4")))
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--beta", type=float, default=2.2, help="fog density (higher is thicker)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    palette = [(0.7, 0.1, 0.1), (0.1, 0.2, 0.6), (0.85, 0.85, 0.85), (0.15, 0.15, 0.15), (0.8, 0.6, 0.1)]
    cars = [{"x": float(rng.choice([-4.6, -1.2, 1.2, 4.6])), "z0": float(rng.uniform(0, 70)),
             "v": float(rng.uniform(-6, 9)), "color": palette[i % len(palette)]} for i in range(7)]
    n = int(args.seconds * args.fps)
    info = StreamInfo(source="synthetic", kind="images", width=W, height=H, fps=Fraction(args.fps),
                      time_base=Fraction(1, args.fps), frame_count=n)
    sink = VideoSink(args.out, info, EncoderSettings(crf=26, preset="slow"), copy_audio=False)
    for i in range(n):
        clean, depth = draw_scene(i / args.fps, rng, cars)
        hazy = add_fog(clean, depth, args.beta, (0.82, 0.83, 0.85), rng)
        sink.write(Frame((hazy * 255 + 0.5).astype(np.uint8), i, pts=i), (hazy * 255 + 0.5).astype(np.uint8))
    sink.close()
    print(f"wrote {args.out}: {n} frames, {W}x{H} @ {args.fps} fps, {Path(args.out).stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()
