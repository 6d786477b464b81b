"""Multi-domain haze generation: physical properties of each degradation, depth, recipes, CLI."""
import json
import math
import re

import numpy as np
import pytest
import torch

from cidstream.errors import ConfigError
from cidstream.ops.filters import dark_channel
from training.synthetic import degradations as D
from training.synthetic.depth import estimate_horizon, image_cues, road_prior
from training.synthetic.recipe import OPS, Step, apply_step, parse_recipe

from .conftest import REPO, textured


def batch(n=3, h=48, w=64, seed=0):
    return torch.from_numpy(np.stack([textured(h, w, seed + i) for i in range(n)])).permute(0, 3, 1, 2)


def ramp_depth(n, h, w):
    return torch.linspace(0, 1, w).view(1, 1, 1, w).expand(n, 1, h, w)


def full(n, v):
    return torch.full((n,), float(v))


def test_zero_density_leaves_the_image_unchanged():
    x = batch()
    y = D.haze(x, ramp_depth(3, 48, 64), full(3, 0.0), torch.full((3, 3), 0.9))
    assert torch.equal(y, x)


def test_farther_pixels_get_more_haze():
    x = batch()
    airlight = torch.full((3, 3), 0.9)
    y = D.haze(x, ramp_depth(3, 48, 64), full(3, 2.0), airlight)
    gap = (y - 0.9).abs().mean(dim=(0, 1, 2))  # distance to the airlight, per column (depth grows along x)
    near, mid, far = gap[:8].mean(), gap[28:36].mean(), gap[-8:].mean()
    assert near > mid > far


def test_dark_channel_rises_with_beta():
    x = batch()
    depth = torch.full((3, 1, 48, 64), 0.6)
    levels = [float(dark_channel(D.haze(x, depth, full(3, b), torch.full((3, 3), 0.85)), 7).mean())
              for b in (0.0, 0.5, 1.0, 2.0, 4.0)]
    assert all(a < b for a, b in zip(levels, levels[1:])), levels


def test_patchy_and_height_dependent_fog():
    x = torch.zeros(2, 3, 64, 64)
    depth = torch.full((2, 1, 64, 64), 0.5)
    g = torch.Generator().manual_seed(1)
    patchy = D.haze(x, depth, full(2, 2.0), torch.ones(2, 3), full(2, 0.8), None, g)[:, 0]
    uniform = D.haze(x, depth, full(2, 2.0), torch.ones(2, 3))[:, 0]
    assert uniform.std() < 1e-6 < patchy.std()
    tall = D.haze(x, depth, full(2, 2.0), torch.ones(2, 3), None, full(2, 2.0))[:, 0]
    assert tall[:, :4].mean() < tall[:, -4:].mean()  # thinner fog at the top of the frame


STEP_PARAMS = {
    "haze": {"beta": [0.5, 3.0], "airlight": [0.6, 0.95], "tint": ["grey", "yellow", "blue"],
             "patchiness": [0.0, 0.5], "height_falloff": [0.0, 1.0]},
    "low_light": {"gamma": [1.5, 3.0], "exposure": [0.3, 0.8]},
    "glow": {"strength": [0.5, 2.0], "threshold": [0.5, 0.8]},
    "gaussian_noise": {"sigma": [0.01, 0.05]},
    "poisson_gaussian_noise": {"shot": [0.001, 0.01], "read": [0.005, 0.02]},
    "chroma_noise": {"sigma": [0.01, 0.05]},
    "colour_cast": {"red": [0.9, 1.1], "green": [0.9, 1.1], "blue": [0.6, 0.9]},
    "defocus_blur": {"radius": [1.0, 3.0]},
    "motion_blur": {"length": [3, 9], "angle": [0.0, 3.1]},
    "rain": {"density": [0.002, 0.01], "length": [5, 15], "angle": [1.3, 1.8], "brightness": [0.2, 0.6]},
    "jpeg": {"quality": [20, 60]},
    "video_codec": {"crf": [30, 45]},
}


def test_every_op_is_covered_here():
    assert set(STEP_PARAMS) == set(OPS)


@pytest.mark.parametrize("op", sorted(STEP_PARAMS))
def test_every_degradation_runs_on_a_batch_in_range_and_reproducibly(op):
    x = batch(n=3)
    depth = ramp_depth(3, 48, 64)
    step = Step(op, dict(STEP_PARAMS[op]))
    y1, p1 = apply_step(x, depth, step, torch.Generator().manual_seed(5))
    y2, p2 = apply_step(x, depth, step, torch.Generator().manual_seed(5))
    y3, _ = apply_step(x, depth, step, torch.Generator().manual_seed(6))
    assert y1.shape == x.shape and y1.dtype == x.dtype
    assert float(y1.min()) >= 0.0 and float(y1.max()) <= 1.0
    assert torch.equal(y1, y2) and p1 == p2          # same seed, same samples
    assert not torch.equal(y1, y3)                    # another seed, other samples
    assert len(p1) == 3 and p1[0] != p1[1]            # parameters drawn per sample
    assert not torch.allclose(y1, x, atol=1e-3)       # it does something


def test_degradations_do_what_they_say():
    x = batch()
    assert D.low_light(x, full(3, 2.0), full(3, 0.7)).mean() < 0.7 * x.mean()
    noisy = D.gaussian_noise(torch.full((2, 3, 64, 64), 0.5), full(2, 0.05), torch.Generator().manual_seed(0))
    assert abs(float(noisy.std()) - 0.05) < 0.005
    cast = D.colour_cast(x, torch.tensor([[1.0, 1.0, 0.5]] * 3))
    assert torch.allclose(cast[:, 2], x[:, 2] * 0.5) and torch.equal(cast[:, 0], x[:, 0])
    blurred = D.motion_blur(x, full(3, 7), full(3, 0.0))
    assert abs(float(blurred.mean() - x.mean())) < 0.01 and blurred.std() < x.std()
    dark = torch.zeros(1, 3, 64, 64)
    dark[:, :, 30:34, 30:34] = 1.0  # one lamp in the dark
    glowing = D.glow(dark, full(1, 1.0), full(1, 0.5))
    assert glowing[0, 0, 32, 40] > 0.01 and glowing[0, 0, 2, 2] < glowing[0, 0, 32, 40]
    dark = torch.full((1, 3, 96, 96), 0.2)
    assert torch.equal(D.rain(dark, full(1, 0.0), full(1, 12), full(1, 1.57), full(1, 0.5),
                              torch.Generator().manual_seed(0)), dark)  # no drops, no change
    rained = D.rain(dark, full(1, 0.003), full(1, 12), full(1, math.pi / 2), full(1, 0.5),
                    torch.Generator().manual_seed(0))
    streaks = (rained - dark)[0, 0]
    assert float(streaks.min()) >= 0 and float(streaks.max()) > 0.3  # bright streaks, nothing darkened
    # falling straight down: streak pixels continue below each other, not beside each other
    assert float((streaks[1:] * streaks[:-1]).sum()) > 3 * float((streaks[:, 1:] * streaks[:, :-1]).sum())
    err = {q: float((D.jpeg(x, torch.tensor([q] * 3)) - x).abs().mean()) for q in (10, 95)}
    assert err[10] > 2 * err[95]


def test_road_prior_depth():
    # sky above row 20, ground below, a dark pole standing on the road from row 30 to row 50
    x = torch.full((1, 3, 64, 64), 0.35)
    x[:, :, :20] = 0.9
    x[:, :, 30:50, 30:34] = 0.05
    assert int(estimate_horizon(x)[0]) == 20
    d = road_prior(x)[0, 0]
    assert torch.all(d[:20] == 1.0)                                   # sky is far
    ground = d[21:, 5]
    assert torch.all(ground[1:] <= ground[:-1]) and ground[-1] < 0.1   # nearer towards the bottom
    pole = d[32:48, 31:33]
    assert float(pole.max() - pole.min()) < 1e-6                      # the pole: one depth...
    assert abs(float(pole[0, 0]) - float(d[52, 31])) < 0.02           # ...that of the ground where it stands
    cues = image_cues(x)
    assert cues.shape == (1, 1, 64, 64) and float(cues[0, 0, 5].mean()) > float(cues[0, 0, 60].mean())


@pytest.mark.parametrize("data, message", [
    ({"domains": {"a": {"steps": [{"op": "smog"}]}}}, "unknown op 'smog'"),
    ({"domains": {"a": {"steps": [{"op": "haze", "beta": 1, "airlight": 0.8, "density": 2}]}}}, "no parameter 'density'"),
    ({"domains": {"a": {"steps": [{"op": "haze", "beta": [2, 1], "airlight": 0.8}]}}}, "runs backwards"),
    ({"domains": {"a": {"steps": [{"op": "haze", "beta": 1, "airlight": 0.8, "tint": "green"}]}}}, "unknown tint"),
    ({"domains": {"a": {"steps": [{"op": "jpeg"}]}}}, "needs quality"),
    ({"domain": {}}, "unknown key(s) domain"),
])
def test_recipe_errors(data, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_recipe(data)


def test_default_recipe_parses():
    from training.synthetic.recipe import load_recipe

    recipe = load_recipe(REPO / "configs" / "train" / "generate.yaml")
    assert {d.name for d in recipe.domains} >= {"day_haze", "dense_fog", "sand_dust", "night_haze"}
    detector = load_recipe(REPO / "configs" / "train" / "detector_generate.yaml")  # extends generate.yaml
    assert [d.name for d in detector.domains] == [d.name for d in recipe.domains] + ["rain_haze", "dusk_fog"]
    assert detector.domains[:len(recipe.domains)] == recipe.domains and detector.seed == recipe.seed


def test_recipe_extends_another(tmp_path):
    from training.synthetic.recipe import load_recipe

    def step(beta):
        return {"op": "haze", "beta": beta, "airlight": 0.8}

    (tmp_path / "base.yaml").write_text(json.dumps({"seed": 4, "short_side": 200, "domains": {
        "a": {"weight": 1, "steps": [step(1)]}, "b": {"weight": 1, "steps": [step(2)]}}}))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "child.yaml").write_text(json.dumps({"extends": "../base.yaml", "seed": 9, "domains": {
        "b": {"weight": 3, "steps": [step(5)]}, "c": {"steps": [step(7)]}}}))
    recipe = load_recipe(tmp_path / "sub" / "child.yaml")
    assert [(d.name, d.weight, d.steps[0].params["beta"]) for d in recipe.domains] == [
        ("a", 1, 1), ("b", 3, 5), ("c", 1.0, 7)]             # the child's domain replaces the base's
    assert (recipe.seed, recipe.short_side) == (9, 200)     # the child's keys win, the rest is the base's
    (tmp_path / "base.yaml").write_text(json.dumps({"extends": "sub/child.yaml", "domains": {}}))
    with pytest.raises(ConfigError, match="goes round in a circle"):
        load_recipe(tmp_path / "sub" / "child.yaml")
    (tmp_path / "odd.yaml").write_text(json.dumps({"extends": 3, "domains": {}}))
    with pytest.raises(ConfigError, match="another recipe"):
        load_recipe(tmp_path / "odd.yaml")
    (tmp_path / "listed.yaml").write_text(json.dumps({"extends": "base.yaml", "domains": ["a"]}))
    (tmp_path / "base.yaml").write_text(json.dumps({"domains": {"a": {"steps": [step(1)]}}}))
    with pytest.raises(ConfigError, match="domains"):
        load_recipe(tmp_path / "listed.yaml")
    (tmp_path / "gone.yaml").write_text(json.dumps({"extends": "nowhere.yaml"}))
    with pytest.raises(ConfigError, match="not found"):
        load_recipe(tmp_path / "gone.yaml")


@pytest.mark.slow
def test_generate_and_stats_cli(cli, shared_data, tmp_path):
    video = shared_data / "videos" / "highway2_720p.mp4"
    for name in ("a", "b"):
        code, text = cli("train", "generate", "--out", tmp_path / name, "--count", "10", "--stride", "8", video)
        assert code == 0, text
    meta = [json.loads(x) for x in (tmp_path / "a" / "metadata.jsonl").read_text().splitlines()]
    assert len(meta) == 10 and all(m["steps"] and m["domain"] for m in meta)
    assert all(m["source"] == str(video) and m["frame"] % 8 == 0 for m in meta)
    for m in meta:  # same seed, same inputs: identical pairs
        assert (tmp_path / "a" / m["hazy"]).read_bytes() == (tmp_path / "b" / m["hazy"]).read_bytes()
    assert (tmp_path / "a" / "contact_sheet.png").stat().st_size > 10_000
    code, text = cli("train", "stats", "--real", shared_data / "videos" / "foggy_road_real.mp4",
                     "--synthetic", tmp_path / "a", "-o", tmp_path / "stats", "--stride", "25")
    assert code == 0, text
    result = json.loads((tmp_path / "stats" / "stats.json").read_text())
    assert result["sets"]["real"]["images"] == 9 and result["sets"]["a"]["images"] == 10
    assert set(result["distances"]["a"]) == {"dark_channel", "contrast", "saturation", "brightness",
                                             "colour_cast", "noise", "mean"}
    assert (tmp_path / "stats" / "stats.png").exists()


def test_generate_bad_inputs(cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("domains:\n  x:\n    steps:\n      - {op: fog}\n")
    code, text = cli("train", "generate", "--out", tmp_path / "o", "--recipe", bad, tmp_path)
    assert code == 2 and "unknown op 'fog'" in text
    code, text = cli("train", "generate", "--out", tmp_path / "o", tmp_path / "missing.mp4")
    assert code == 2 and "input not found" in text


def test_runtime_never_imports_training():
    for path in (REPO / "cidstream").rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(from|import)\s+training\b", text, re.M), path


def test_dataset_and_network_depth_sources(tmp_path):
    import cv2

    from training.synthetic.depth import DepthSource

    ramp = (np.tile(np.linspace(0, 60000, 40), (30, 1))).astype(np.uint16)  # farther to the right
    (tmp_path / "depth").mkdir()
    cv2.imwrite(str(tmp_path / "depth" / "frame7.png"), ramp)
    x = torch.rand(1, 3, 60, 80)
    d = DepthSource("dataset", folder=str(tmp_path / "depth"))(x, names=["frame7.jpg"])
    assert d.shape == (1, 1, 60, 80) and float(d[0, 0, :, 0].mean()) < 0.05 and float(d[0, 0, :, -1].mean()) > 0.95

    class Brightness(torch.nn.Module):
        def forward(self, img):
            return img.mean(dim=1, keepdim=True)

    path = tmp_path / "depth_net.pt2"
    img = torch.zeros(1, 3, 20, 20)
    torch.export.save(torch.export.export(Brightness(), (img,)), str(path))
    img[:, :, :10] = 1.0  # bright top half
    near_top = DepthSource("network", path=str(path), invert=True)(img)
    assert float(near_top[0, 0, :10].mean()) < float(near_top[0, 0, 10:].mean())
    with pytest.raises(ValueError, match="depth network file not found"):
        DepthSource("network", path=str(tmp_path / "none.pt"))


@pytest.mark.slow
def test_training_datasets(shared_data):
    from training.dehazer.datasets import OnTheFlyPairs, RealHazy, load_frames
    from training.synthetic.recipe import load_recipe

    recipe = load_recipe(REPO / "configs" / "train" / "generate.yaml")
    frames = load_frames([str(shared_data / "videos" / "highway2_720p.mp4")], 180, stride=40)
    pairs = OnTheFlyPairs(frames, recipe, crop=64, length=5)
    a, b = pairs[2], pairs[2]
    assert a["clean"].shape == a["hazy"].shape == (3, 64, 64)
    assert torch.equal(a["hazy"], b["hazy"]) and a["domain"] == b["domain"]
    assert not torch.equal(a["clean"], a["hazy"])
    real = RealHazy([str(shared_data / "real_hazy")], crop=64)
    assert len(real) == 10 and real[0]["hazy"].shape == (3, 64, 64)
