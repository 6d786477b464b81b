"""cid-lite's scattering head (issue 40): what holds by construction, whatever the weights, and the training
truth it is supervised with."""
import pytest
import torch

from cidstream.errors import WeightsError
from cidstream.models import build, load_model, save_weights
from training.synthetic import degradations as D
from training.dehazer import losses as L
from training.synthetic.generate import degrade_batch
from training.synthetic.recipe import parse_recipe


def random_scattering(seed: int = 0, **config):
    torch.manual_seed(seed)
    net = build("cid-lite", head="scattering", **config).eval()
    for p in net.parameters():  # far from the nearly-clear start, so the head really varies over the frame
        torch.nn.init.normal_(p, std=0.3)
    return net


def ramp_scene(h=96, w=160):
    """A road-like frame: darker, textured ground below a bright flat sky."""
    g = torch.Generator().manual_seed(1)
    x = 0.25 + 0.3 * torch.rand(1, 3, h, w, generator=g)
    x[..., : h // 3, :] = 0.8
    return x


def test_one_transmission_for_all_colours_and_a_near_grey_airlight():
    net = random_scattering()
    with torch.no_grad():
        maps = net.scattering_maps(ramp_scene())
    gain = maps["ab"][:, :3]
    assert torch.equal(gain[:, 0], gain[:, 1]) and torch.equal(gain[:, 1], gain[:, 2])  # a = g / t, one map
    airlight = maps["airlight"][0]
    assert float(airlight.max() / airlight.min()) <= 1.15 / 0.85 + 1e-6  # each colour within 15 % of the level
    assert float(maps["t"].min()) >= net.t_min - 1e-6 and float(maps["t"].max()) <= 1.0


def test_a_frame_at_the_airlight_is_left_as_it_is_under_any_weights():
    # J = (I - A) / t + A = A wherever I = A, whatever t the network predicts: fog at the airlight is not painted on
    for seed in range(3):
        net = random_scattering(seed, sky_tolerance=0.0, keep_brightness=0.0)
        probe = torch.full((1, 3, 96, 160), 0.5)
        with torch.no_grad():
            a = net.scattering_maps(probe)["airlight"][0]   # the airlight depends on the frame: find it, then use it
            frame = a.view(1, 3, 1, 1).expand(1, 3, 96, 160).clone()
            for _ in range(3):
                a = net.scattering_maps(frame)["airlight"][0]
                frame = a.view(1, 3, 1, 1).expand(1, 3, 96, 160).clone()
            out = net(frame)
        assert float((out - frame).abs().max()) < 0.02, seed


def test_sky_guard_leaves_regions_at_the_airlight_alone():
    net = random_scattering(sky_tolerance=0.1)
    x = ramp_scene()
    with torch.no_grad():
        a = net.scattering_maps(x)["airlight"][0]
        x[..., : 32, :] = a.view(3, 1, 1)          # a sky exactly at the airlight
        maps = net.scattering_maps(x)
    sky = maps["t"][..., 1:6, :]                   # head rows inside the sky
    assert float(sky.min()) > 0.99
    unguarded = random_scattering(sky_tolerance=0.0)
    with torch.no_grad():
        assert float(unguarded.scattering_maps(x)["t"][..., 1:6, :].min()) < 0.99


def uniform_haze_net(t: float, **config):
    """A scattering head that sees t everywhere under a 0.8 grey airlight (weights zeroed, biases set)."""
    net = build("cid-lite", head="scattering", sky_tolerance=0.0, **config).eval()
    torch.nn.init.zeros_(net.head.weight)
    torch.nn.init.constant_(net.head.bias, float(torch.logit(torch.tensor((t - net.t_min) / (1 - net.t_min)))))
    torch.nn.init.zeros_(net.airlight_head.weight)
    torch.nn.init.constant_(net.airlight_head.bias, float(torch.logit(torch.tensor((0.8 - 0.2) / 0.8))))
    return net


def test_brightness_keeping_gain():
    x = ramp_scene()
    dark = uniform_haze_net(0.4, keep_brightness=0.0)
    kept = uniform_haze_net(0.4, keep_brightness=0.9)
    with torch.no_grad():
        y0, y1 = dark(x), kept(x)
        maps = kept.scattering_maps(x)
    gain, cap = float(maps["gain"]), min(kept.max_gain, float(1 / maps["airlight"].max()))
    luma = lambda v: float((0.299 * v[:, 0] + 0.587 * v[:, 1] + 0.114 * v[:, 2]).mean())  # noqa: E731
    assert 1.0 <= gain <= cap + 1e-6 and luma(y1) >= luma(y0)
    assert luma(y0) < 0.8 * luma(x)                   # the scattering model alone darkens this frame ...
    assert gain == pytest.approx(cap) or luma(y1) >= 0.9 * luma(x) - 0.03   # ... the gain gives it back, up to its cap


def test_weights_keep_the_head_and_refuse_a_bad_one(tmp_path):
    net = random_scattering(keep_brightness=0.65)
    path = save_weights(net, tmp_path / "s.pt")
    loaded = load_model(str(path)).model.eval()
    assert loaded.head_kind == "scattering" and loaded.keep_brightness == 0.65
    x = ramp_scene()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x))
    payload = torch.load(path, weights_only=False)
    for key, value in (("head", "free"), ("t_min", 5.0), ("keep_brightness", "high")):
        bad = dict(payload, config={**payload["config"], key: value})
        torch.save(bad, tmp_path / "bad.pt")
        with pytest.raises(WeightsError, match=key):
            load_model(str(tmp_path / "bad.pt"))


def test_affine_weights_without_a_head_key_load_as_before(tmp_path):
    torch.manual_seed(0)
    old = build("cid-lite").eval()
    torch.nn.init.normal_(old.head.weight, std=0.1)
    payload_path = save_weights(old, tmp_path / "old.pt")
    payload = torch.load(payload_path, weights_only=False)
    assert "head" not in payload["config"]           # what round-4 files hold
    loaded = load_model(str(payload_path)).model.eval()
    assert loaded.head_kind == "affine"
    x = ramp_scene()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), old(x))


def test_generator_truth_is_the_transmission_and_airlight_it_applied():
    recipe = parse_recipe({"domains": {"fog": {"weight": 1, "steps": [
        {"op": "haze", "beta": [1.0, 3.0], "airlight": [0.6, 0.9], "tint": "grey", "patchiness": [0.0, 0.5]}]}}})
    clean = torch.rand(3, 3, 48, 64, generator=torch.Generator().manual_seed(2))
    depth = torch.linspace(0, 1, 48).view(1, 1, 48, 1).expand(3, 1, 48, 64).contiguous()
    truth = {}
    hazy, _, _ = degrade_batch(recipe, clean, depth, torch.Generator().manual_seed(3), truth)
    torch.testing.assert_close(D.scatter(clean, truth["t"], truth["airlight"]), hazy)
    assert float(truth["t"][..., 0, :].mean()) > float(truth["t"][..., -1, :].mean())   # far rows: thicker haze
    again, _, _ = degrade_batch(recipe, clean, depth, torch.Generator().manual_seed(3))
    assert torch.equal(again, hazy)                    # asking for the truth draws nothing more
    maps = {"t_net": torch.nn.functional.adaptive_avg_pool2d(truth["t"], (12, 16)), "airlight": truth["airlight"]}
    assert float(L.scattering_supervision(maps, truth).max()) < 1e-6
    maps["airlight"] = maps["airlight"] * 0.5
    assert float(L.scattering_supervision(maps, truth).min()) > 0.1


def test_frame_airlight_takes_the_colour_of_the_haziest_pixels():
    net = uniform_haze_net(0.5, airlight_colour="frame")   # airlight level 0.8: no colour reaches white
    x = ramp_scene()
    x[:, 1, 40:] += 0.15                            # green fields below ...
    with torch.no_grad():
        grey_sky = net.scattering_maps(x.clamp(0, 1))["airlight"][0]
        x[:, :, :32] = torch.tensor([0.7, 0.7, 0.8]).view(3, 1, 1)   # ... and a bluish sky
        blue_sky = net.scattering_maps(x.clamp(0, 1))["airlight"][0]
    assert float(grey_sky.max() / grey_sky.min()) < 1.02      # a grey sky gives a grey airlight
    assert float(blue_sky[2] / blue_sky[0]) > 1.08             # the fog's colour, not the fields'
    with pytest.raises(ValueError, match="airlight_colour"):
        build("cid-lite", head="scattering", airlight_colour="sky")


def test_export_takes_only_the_display_settings_from_a_config(tmp_path):
    import yaml

    from cidstream.errors import ConfigError
    from training.dehazer.trainer import export, load_train_config

    from .conftest import REPO

    committed = yaml.safe_load((REPO / "configs" / "train" / "cid_lite.yaml").read_text())
    run_cfg = load_train_config(REPO / "configs" / "train" / "cid_lite.yaml")
    run_cfg["model"]["config"].update(keep_brightness=0.5, detail_eps=0.0)     # what the run was started with
    net = build("cid-lite", **run_cfg["model"]["config"])
    ckpt = tmp_path / "after_finetune.pt"
    torch.save({"phase": "finetune", "step": 1, "done": ["finetune"], "model": net.state_dict(), "config": run_cfg,
                "data": {}, "metrics": {}}, ckpt)
    plain = load_model(str(export(ckpt, tmp_path / "plain.pt"))).model
    assert (plain.keep_brightness, plain.detail_eps) == (0.5, 0.0)
    shown = load_model(str(export(ckpt, tmp_path / "shown.pt", REPO / "configs" / "train" / "cid_lite.yaml"))).model
    want = committed["model"]["config"]
    assert (shown.keep_brightness, shown.detail_eps) == (want["keep_brightness"], want.get("detail_eps", 0.0))
    for key, value in net.state_dict().items():
        assert torch.equal(shown.state_dict()[key], value)
    other = dict(committed, model={**committed["model"], "config": {**committed["model"]["config"], "t_min": 0.3}})
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(other))
    with pytest.raises(ConfigError, match="display settings"):
        export(ckpt, tmp_path / "x.pt", tmp_path / "other.yaml")
