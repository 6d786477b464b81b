"""Model layouts, weights files, and the DCP baseline's physics."""
import dataclasses
import math

import numpy as np
import pytest
import torch

from cidstream.errors import WeightsError
from cidstream.models import CIDLite, CIDNet, DarkChannelPrior, build, load_model, read_weights, save_weights
from cidstream.ops.filters import box_filter, min_filter

from .conftest import textured


def official_cid_layout() -> dict[str, tuple]:
    """Key -> shape of the official CID checkpoint, written from the published description
    (Res2Net-101 v1b 26w x 4s to layer3, attention decoder, pyramid enhancer, 7x7 tail),
    independently of our model code."""
    shapes: dict[str, tuple] = {}

    def bn(prefix, c):
        shapes.update({f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
                       f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()})

    def conv(prefix, cout, cin, k, bias=False):
        shapes[f"{prefix}.weight"] = (cout, cin, k, k)
        if bias:
            shapes[f"{prefix}.bias"] = (cout,)

    conv("encoder.conv1.0", 32, 3, 3); bn("encoder.conv1.1", 32)
    conv("encoder.conv1.3", 32, 32, 3); bn("encoder.conv1.4", 32)
    conv("encoder.conv1.6", 64, 32, 3); bn("encoder.bn1", 64)
    inplanes = 64
    for layer, (planes, blocks) in enumerate([(64, 3), (128, 4), (256, 23)], start=1):
        width = math.floor(planes * 26 / 64)
        for b in range(blocks):
            p = f"encoder.layer{layer}.{b}"
            conv(f"{p}.conv1", width * 4, inplanes, 1); bn(f"{p}.bn1", width * 4)
            for i in range(3):
                conv(f"{p}.convs.{i}", width, width, 3); bn(f"{p}.bns.{i}", width)
            conv(f"{p}.conv3", planes * 4, width * 4, 1); bn(f"{p}.bn3", planes * 4)
            if b == 0:
                conv(f"{p}.downsample.1", planes * 4, inplanes, 1); bn(f"{p}.downsample.2", planes * 4)
            inplanes = planes * 4

    def attention(prefix, c):
        conv(f"{prefix}.conv1", c, c, 3, True); conv(f"{prefix}.conv2", c, c, 3, True)
        conv(f"{prefix}.calayer.ca.0", c // 8, c, 1, True); conv(f"{prefix}.calayer.ca.2", c, c // 8, 1, True)
        conv(f"{prefix}.palayer.pa.0", c // 8, c, 1, True); conv(f"{prefix}.palayer.pa.2", 1, c // 8, 1, True)

    attention("mid_conv", 1024); attention("attention1", 256); attention("attention2", 192)
    conv("enhancer.refine1", 20, 28, 3, True); conv("enhancer.refine2", 20, 20, 3, True)
    for name in ("conv1010", "conv1020", "conv1030", "conv1040"):
        conv(f"enhancer.{name}", 1, 20, 1, True)
    conv("enhancer.refine3", 28, 24, 3, True)
    shapes["enhancer.batch1.weight"] = (100,); shapes["enhancer.batch1.bias"] = (100,)
    conv("tail1.1", 3, 28, 7, True)
    return shapes


def fake_official_checkpoint(path, extra=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    state = {}
    for k, shape in official_cid_layout().items():
        if k.endswith("num_batches_tracked"):
            state["module." + k] = torch.tensor(0)
        elif k.endswith("running_var"):
            state["module." + k] = torch.ones(shape)
        else:
            state["module." + k] = torch.randn(shape, generator=g) * 0.02
    state.update(extra or {})
    torch.save({"model": state}, path)
    return state


def test_cid_matches_official_layout_key_for_key():
    ours = {k: tuple(v.shape) for k, v in CIDNet().state_dict().items()}
    official = official_cid_layout()
    assert sorted(set(ours) ^ set(official)) == []
    assert {k: s for k, s in ours.items() if official[k] != s} == {}


@pytest.mark.slow
def test_official_checkpoint_loads_by_path_and_runs(tmp_path):
    path = tmp_path / "official.pk"
    state = fake_official_checkpoint(path, extra={"module.encoder.layer4.0.conv1.weight": torch.zeros(1)})
    loaded = load_model(str(path))
    assert loaded.name == "cid"
    net = loaded.model
    assert net.normalization.input == "symmetric" and net.normalization.output == "clamp"
    key = "mid_conv.conv1.weight"
    assert torch.equal(net.state_dict()[key], state["module." + key])
    with torch.no_grad():
        image, z = net.forward_features(torch.rand(1, 3, 64, 96) * 2 - 1)
    assert image.shape == (1, 3, 64, 96) and z.shape == (1, 1024)
    assert image.abs().max() <= 1.0  # tanh output


@pytest.mark.slow
def test_official_checkpoint_with_wrong_shape_names_the_key(tmp_path):
    path = tmp_path / "bad.pk"
    fake_official_checkpoint(path, extra={"module.tail1.1.weight": torch.zeros(3, 28, 5, 5)})
    with pytest.raises(WeightsError, match=r"tail1\.1\.weight: file \[3, 28, 5, 5\] vs model \[3, 28, 7, 7\]"):
        load_model(str(path))


def test_a_model_without_weights_says_so(monkeypatch, tmp_path):
    from cidstream.models import registry

    with pytest.raises(WeightsError, match="model 'cid' has no weights.*official"):
        load_model("cid")
    monkeypatch.setitem(registry.MODELS, "cid-lite", dataclasses.replace(registry.MODELS["cid-lite"],
                                                                         bundled=tmp_path / "not_shipped.pt"))
    with pytest.raises(WeightsError, match="model 'cid-lite' has no weights"):
        load_model("cid-lite")


def test_the_default_model_is_the_bundled_trained_cid_lite():
    from cidstream.config import Config
    from cidstream.models import bundled_weights

    path = bundled_weights("cid-lite")
    assert path is not None and path.stat().st_size < 10 * 1024 * 1024
    loaded = load_model(Config().model.name)
    assert loaded.name == "cid-lite" and loaded.weights == path
    training = loaded.metadata["training"]
    assert training["phases"] == ["pretrain"]          # round 5 ships phase 1, chosen on select (docs/training.md)
    assert loaded.model.head_kind == "scattering" and loaded.model.config() == training["config"]["model"]["config"]
    assert "psnr" in loaded.metadata["metrics"]
    # Trained, not the identity it starts as: uniform haze over a texture is lifted off.
    clean = torch.from_numpy(textured(96, 160)).permute(2, 0, 1)[None]
    hazy = 0.5 * clean + 0.5 * 0.8
    with torch.no_grad():
        out = loaded.model(hazy).clamp(0, 1)
    assert out.std() > 1.2 * hazy.std() and out.mean() < hazy.mean()


def test_cid_lite_interface_and_identity_start():
    net = build("cid-lite").eval()
    x = torch.rand(2, 3, 48, 80)
    with torch.no_grad():
        image, z = net.forward_features(x)
    assert image.shape == x.shape and z.shape == (2, net.widths[-1])
    assert torch.allclose(image, x, atol=1e-6)  # zero-initialised head: a = 1, b = 0


def test_weights_roundtrip_keeps_metadata(tmp_path):
    net = CIDLite(widths=(8, 16, 24, 32))
    torch.nn.init.normal_(net.head.weight, std=0.1)
    path = save_weights(net, tmp_path / "w.pt", training={"phases": 3}, metrics={"psnr": 21.5})
    wf = read_weights(path)
    assert wf.arch == "cid-lite" and wf.config == {"widths": [8, 16, 24, 32], "work_short_side": 360}
    assert wf.metadata["metrics"] == {"psnr": 21.5} and "created" in wf.metadata
    loaded = load_model(str(path)).model
    assert torch.equal(loaded.head.weight, net.head.weight)


@pytest.mark.parametrize("content, message", [
    (b"", "empty"),
    (b"this is not a checkpoint at all", "not a PyTorch checkpoint"),
    (b"PK\x03\x04 truncated zip", "corrupt or truncated"),
])
def test_unreadable_weights_files(tmp_path, content, message):
    path = tmp_path / "w.pt"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match=message):
        load_model(str(path))


def test_weights_of_unknown_kind_and_architecture(tmp_path):
    other = tmp_path / "other.pt"
    torch.save({"net": {"fc.weight": torch.zeros(2, 2)}}, other)
    with pytest.raises(WeightsError, match="not a cidstream weights file nor an official CID checkpoint"):
        load_model(str(other))
    arch = tmp_path / "arch.pt"
    save_weights(CIDLite(), arch)
    payload = torch.load(arch, weights_only=True)
    payload["arch"] = "unet9000"
    torch.save(payload, arch)
    with pytest.raises(WeightsError, match="unknown architecture 'unet9000'"):
        load_model(str(arch))
    with pytest.raises(WeightsError, match="weights file not found"):
        load_model("missing/weights.pt")
    with pytest.raises(WeightsError, match="unknown model 'dcpp'"):
        load_model("dcpp")


def test_every_bundled_weights_file_has_one_record_that_describes_it():
    """Issue 39: one record per model (torchvision style), the fog meter included: each file in cidstream/weights/
    is described once, by a record of its kind whose sha256 it still has (a retrained file updates its record)."""
    import hashlib

    from cidstream.models import DEHAZER, FOG_METER, MODELS, model_names
    from cidstream.models.registry import WEIGHTS_DIR

    described = [e.bundled for e in MODELS.values() if e.bundled is not None]
    assert sorted(described) == sorted(WEIGHTS_DIR.glob("*.pt")), described
    for name, entry in MODELS.items():
        assert entry.kind in (DEHAZER, FOG_METER) and entry.description and entry.input, name
        assert (entry.cls is not None) == (entry.kind == DEHAZER), name
        if entry.bundled is None:
            continue
        assert entry.trained_by and entry.trained_on, name
        assert hashlib.sha256(entry.bundled.read_bytes()).hexdigest() == entry.sha256, f"{name}: {entry.bundled}"
        wf = read_weights(entry.bundled)
        assert wf.kind == entry.kind and wf.metadata, name
        assert read_weights(entry.bundled, entry.kind).kind == entry.kind
    assert model_names(FOG_METER) == ["fog-meter"] and "fog-meter" not in model_names(DEHAZER)
    assert model_names() == model_names(DEHAZER) + model_names(FOG_METER)


def test_the_fog_meter_is_no_dehazer_by_name_nor_by_file(tmp_path):
    from cidstream.models import MODELS

    meter = MODELS["fog-meter"].bundled
    for spec in ("fog-meter", "Fog-Meter"):
        with pytest.raises(WeightsError, match="'fog-meter' is the fog meter, not a dehazer.*--fog-meter.*dehazers: "):
            load_model(spec)
    with pytest.raises(WeightsError, match="not a dehazer"):
        build("fog-meter")
    with pytest.raises(WeightsError, match=r"fog_meter\.pt is a fog meter weights file, not a dehazer's.*--fog-meter"):
        load_model(str(meter))
    # ... and a dehazer's file is no fog meter (one reader for both, asked for a kind)
    save_weights(CIDLite(widths=(8, 8, 8, 8)), tmp_path / "w.pt")
    with pytest.raises(WeightsError, match=r"is a dehazer's weights file \(cid-lite\), not a fog meter"):
        read_weights(tmp_path / "w.pt", "fog-meter")
    assert read_weights(tmp_path / "w.pt").kind == "dehazer"


class _RunsCode:
    """Unpickling this calls os.system: what a crafted weights file does."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return os.system, (f"touch '{self.marker}'",)


def test_a_weights_file_that_would_run_code_is_not_loaded(tmp_path):
    marker = tmp_path / "MARKER"
    payload = torch.load(save_weights(CIDLite(widths=(8, 8, 8, 8)), tmp_path / "w.pt"), weights_only=True)
    payload["metadata"] = {"note": _RunsCode(marker)}
    torch.save(payload, tmp_path / "crafted.pt")
    with pytest.raises(WeightsError, match=r"holds Python objects \(.*system.*\).*not loaded, for safety"):
        load_model(str(tmp_path / "crafted.pt"))
    assert not marker.exists()


def test_saving_weights_never_leaves_half_a_file(tmp_path, monkeypatch):
    from cidstream.io import atomic

    path = save_weights(CIDLite(widths=(8, 8, 8, 8)), tmp_path / "w.pt")
    before = path.read_bytes()

    def full_disk(fh, *args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", full_disk)
    with pytest.raises(OSError):
        save_weights(CIDLite(widths=(8, 16, 8, 8)), path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["w.pt"]


def test_min_and_box_filters_match_naive_versions():
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.random((1, 1, 23, 31)).astype(np.float32))
    out = min_filter(x, 5)[0, 0].numpy()
    padded = np.pad(x[0, 0].numpy(), 2, mode="edge")
    naive = np.array([[padded[i:i + 5, j:j + 5].min() for j in range(31)] for i in range(23)])
    np.testing.assert_array_equal(out, naive)
    box = box_filter(x.double(), 3)[0, 0].numpy()
    xn = x[0, 0].double().numpy()
    naive = np.array([[xn[max(0, i - 3):i + 4, max(0, j - 3):j + 4].mean() for j in range(31)] for i in range(23)])
    np.testing.assert_allclose(box, naive, atol=1e-9)


def test_dcp_recovers_synthetic_haze_and_estimates_airlight():
    clean = textured(96, 128)
    airlight = np.array([0.85, 0.86, 0.9], np.float32)
    t = np.full((96, 128, 1), 0.45, np.float32)
    t[:20] = 0.02  # a far band (sky): where the airlight shows itself, as in real scenes
    hazy = clean * t + airlight * (1 - t)
    x = torch.from_numpy(hazy).permute(2, 0, 1)[None]
    dcp = DarkChannelPrior()
    with torch.no_grad():
        t_est, a_est = dcp.transmission(x)
        out = dcp(x).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(a_est.flatten().numpy(), airlight, atol=0.03)
    assert abs(float(t_est[0, 0, 40:].mean()) - 0.45) < 0.1
    near = slice(40, None)
    err_hazy = np.abs(hazy[near] - clean[near]).mean()
    err_out = np.abs(out[near] - clean[near]).mean()
    assert err_out < 0.5 * err_hazy, (err_out, err_hazy)


def test_dcp_batch_equals_single_images():
    frames = torch.from_numpy(np.stack([textured(40, 56, s) for s in range(3)])).permute(0, 3, 1, 2)
    dcp = DarkChannelPrior()
    with torch.no_grad():
        batched = dcp(frames)
        single = torch.cat([dcp(frames[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, single)


def test_dcp_sky_tolerance_keeps_noise_in_the_sky_down():
    rng = np.random.default_rng(3)
    clean = textured(96, 128)
    airlight = np.array([0.85, 0.86, 0.9], np.float32)
    hazy = clean * 0.5 + airlight * 0.5
    hazy[:30] = airlight + rng.normal(0, 0.01, (30, 128, 3))  # sky: the airlight plus sensor/codec noise
    x = torch.from_numpy(hazy.astype(np.float32)).permute(2, 0, 1)[None]
    noise_in = hazy[5:25].std(axis=(0, 1)).mean()
    with torch.no_grad():
        plain = DarkChannelPrior(sky_tolerance=0.0)(x).clamp(0, 1)[0, :, 5:25].std(dim=(1, 2)).mean()
        tolerant = DarkChannelPrior(sky_tolerance=0.1)(x).clamp(0, 1)[0, :, 5:25].std(dim=(1, 2)).mean()
    assert plain > 4 * noise_in        # the bare prior amplifies sky noise several times
    assert tolerant < 2 * noise_in     # the tolerance leaves the sky about as it was
