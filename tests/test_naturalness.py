"""Naturalness figures (cidstream/evaluation/naturalness.py): each responds to the defect it is meant to catch."""
import math

import cv2
import numpy as np
import pytest

from cidstream.evaluation.naturalness import aggregate, naturalness, to_lab

from .conftest import textured


def scene(h: int = 120, w: int = 160, seed: int = 0) -> np.ndarray:
    """A flat pale sky over the top third, a textured ground below; RGB uint8."""
    img = textured(h, w, seed)
    img[: h // 3] = (0.80, 0.82, 0.85)
    return (img * 255 + 0.5).astype(np.uint8)


def test_identity_changes_nothing():
    img = scene()
    r = naturalness(img, img.copy())
    assert r["chroma_shift"] == 0 and r["cast"] == 0 and r["cast_a"] == 0 and r["cast_b"] == 0
    assert r["brightness_ratio"] == pytest.approx(1.0)
    assert r["flat_spread_ratio"] == pytest.approx(1.0)
    assert r["sky_spread_ratio"] == pytest.approx(1.0)
    assert r["sky_brightness_ratio"] == pytest.approx(1.0)
    assert r["sky_cast"] == 0
    assert r["sky_fraction"] >= 0.3          # the flat top third is found as the sky


def test_yellow_tint_gives_positive_b_shift():
    img = scene()
    tinted = np.clip(img.astype(np.int16) + np.array([12, 10, -25]), 0, 255).astype(np.uint8)
    r = naturalness(img, tinted)
    assert r["cast_b"] > 5
    assert abs(r["cast_a"]) < r["cast_b"]
    assert r["cast"] >= r["cast_b"] and r["chroma_shift"] >= r["cast"] - 1e-9
    assert r["sky_cast"] > 5
    blue = np.clip(img.astype(np.int16) + np.array([-20, -5, 25]), 0, 255).astype(np.uint8)
    assert naturalness(img, blue)["cast_b"] < -5


def test_blotches_in_flat_sky_raise_spread():
    img = scene()
    h, w = img.shape[:2]
    rng = np.random.default_rng(1)
    # Smooth low-frequency blotches (what a network leaves in a sky), only in the sky.
    coarse = rng.normal(0, 1, (4, 6)).astype(np.float32)
    field = cv2.resize(coarse, (w, h // 3), interpolation=cv2.INTER_CUBIC) * 10
    out = img.astype(np.float32)
    out[: h // 3] += field[..., None]
    out = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    r = naturalness(img, out)
    assert r["flat_spread_ratio"] > 1.5
    assert r["sky_spread_ratio"] > 3
    # The ground (not flat) was left alone: a darker band only in the sky raises the sky spread too.
    band = img.astype(np.int16)
    band[h // 3 - 10: h // 3] -= 30
    assert naturalness(img, np.clip(band, 0, 255).astype(np.uint8))["sky_spread_ratio"] > 3


def test_darkened_output_lowers_brightness():
    img = scene()
    dark = (img.astype(np.float32) * 0.6).astype(np.uint8)
    r = naturalness(img, dark)
    assert 0.5 < r["brightness_ratio"] < 0.8
    assert r["sky_brightness_ratio"] < 0.8
    assert naturalness(img, np.clip(img.astype(np.int16) + 30, 0, 255).astype(np.uint8))["brightness_ratio"] > 1


def test_no_flat_region_gives_nan():
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    r = naturalness(noise, noise)
    assert r["flat_fraction"] < 0.02
    assert math.isnan(r["flat_spread_ratio"]) and math.isnan(r["sky_spread_ratio"])
    assert r["brightness_ratio"] == pytest.approx(1.0)


def test_refuses_mismatched_pairs():
    img = scene()
    with pytest.raises(ValueError):
        naturalness(img, img[:-2])
    with pytest.raises(ValueError):
        to_lab(img.astype(np.float32))


def test_aggregate_mean_median_and_skips_nan():
    rs = [{"brightness_ratio": 1.0, "flat_spread_ratio": float("nan")},
          {"brightness_ratio": 0.5, "flat_spread_ratio": 2.0},
          {"brightness_ratio": 0.6, "flat_spread_ratio": 4.0}]
    a = aggregate(rs)
    assert a["brightness_ratio"]["mean"] == pytest.approx(0.7) and a["brightness_ratio"]["median"] == pytest.approx(0.6)
    assert a["brightness_ratio"]["n"] == 3
    assert a["flat_spread_ratio"] == {"mean": 3.0, "median": 3.0, "n": 2}


def test_dcp_on_a_real_hazy_image(shared_data):
    from cidstream.engine import Dehazer
    from cidstream.io.images import read_image

    img, _ = read_image(shared_data / "real_hazy" / "canon.png")
    h, w = img.shape[:2]
    s = 360 / min(h, w)
    if s < 1:
        img = cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    out = Dehazer("dcp", device="cpu")(img)
    r = naturalness(img, out)
    finite = {k: v for k, v in r.items() if math.isfinite(v)}
    assert {"chroma_shift", "cast", "brightness_ratio", "flat_fraction"} <= set(finite)
    assert 0 < r["chroma_shift"] < 40 and r["cast"] < 30
    assert 0.2 < r["brightness_ratio"] < 1.2          # dehazing removes airlight: darker, not black
    assert 0 <= r["flat_fraction"] <= 1
    if math.isfinite(r["flat_spread_ratio"]):
        assert 0.2 < r["flat_spread_ratio"] < 20


def test_look_goals_count_the_medians_of_each_set():
    import importlib.util

    from .conftest import REPO

    spec = importlib.util.spec_from_file_location("naturalness_bench", REPO / "benchmarks" / "naturalness.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    fig = lambda median: {"mean": median, "median": median, "n": 1}  # noqa: E731
    day = {"sky_spread_ratio": fig(1.4), "flat_spread_ratio": fig(2.0), "cast": fig(1.0), "sky_cast": fig(float("nan")),
           "brightness_ratio": fig(0.7)}
    night = {"sky_spread_ratio": fig(1.6), "flat_spread_ratio": fig(1.0), "cast": fig(3.0), "sky_cast": fig(1.0),
             "brightness_ratio": fig(0.3)}
    cells = bench.look_cells({"sample": {"m": day}, "foggy_road_real": {"m": night}})["m"]
    assert (cells["met"], cells["of"]) == (5, 9)   # night: no brightness goal; a NaN sky figure counts as met
    assert cells["missed"] == ["sample:flat_spread_ratio=2.00", "sample:brightness_ratio=0.70",
                               "foggy_road_real:sky_spread_ratio=1.60", "foggy_road_real:cast=3.00"]
