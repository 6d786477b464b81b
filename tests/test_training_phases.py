"""Losses, the sample-weight learner, and the three-phase runner (tiny runs, resume, export)."""
import json

import pytest
import torch
import yaml

from cidstream.models import build, load_model
from training.dehazer import losses as L

from .conftest import REPO


def test_coral_bounded_equals_its_closed_form_on_known_covariances():
    # Samples whose covariances are exactly diag(1, 1) and diag(4, 1): ||C_s - C_t||_F^2 = 9, d = 2.
    base = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]]) * (3 / 4) ** 0.5
    source, target = base, base * torch.tensor([2.0, 1.0])
    torch.testing.assert_close(L.covariance(source), torch.eye(2))
    expected = 1 - torch.exp(torch.tensor(-9.0 / (4 * 2 * 2)))
    torch.testing.assert_close(L.coral_bounded(source, target), expected)
    assert float(L.coral_bounded(source, source)) == 0.0
    far = L.coral_bounded(base, base * 100)
    assert 0.99 < float(far) <= 1.0  # bounded (exp underflows to 0 for huge differences)


def test_weight_learner_lowers_weighted_cross_covariance_on_planted_correlations():
    g = torch.Generator().manual_seed(0)
    n = 96
    x = torch.randn(n, generator=g)
    z = torch.stack([x, x + 0.2 * torch.randn(n, generator=g), torch.randn(n, generator=g)], dim=1)
    learner = L.SampleWeightLearner(3, k=2, steps=30, penalty=0.05)
    u = learner.rff(z)
    uniform = L.weighted_cross_covariance(u, torch.ones(n))
    w = learner(z)
    assert float(L.weighted_cross_covariance(u, w)) < 0.5 * float(uniform)
    assert w.shape == (n,) and abs(float(w.mean()) - 1.0) < 1e-5 and float(w.min()) > 0
    assert len(learner.past) == 1  # remembered for the next batches


def test_image_metrics():
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(L.ssim(x, x), torch.ones(2))
    assert float(L.psnr(x, (x + 0.1).clamp(0, 1)).mean()) < 25
    assert float(L.dark_channel_prior_loss(torch.ones(1, 3, 16, 16))) == 1.0
    # a network must not be able to "remove haze" by going below black
    assert float(L.dark_channel_prior_loss(-torch.ones(1, 3, 16, 16))) == 0.0
    assert float(L.colour_balance(x, x)) == 0.0


@pytest.mark.slow
def test_detector_feature_loss_sees_haze_and_trains_only_the_dehazer(yolo_weights, highway_frames):
    from training.dehazer.detector_features import DetectorFeatures, feature_loss

    features = DetectorFeatures(str(yolo_weights))
    clean = torch.from_numpy(highway_frames[:2, :192, :320]).permute(0, 3, 1, 2).float() / 255
    hazy = 0.4 * clean + 0.6 * 0.9                        # dense uniform haze
    light = 0.8 * clean + 0.2 * 0.9                       # light haze
    noisy = (clean + 0.01 * torch.randn_like(clean)).clamp(0, 1)
    assert torch.allclose(feature_loss(features, clean, clean), torch.zeros(2), atol=1e-6)
    dense_l, light_l, noise_l = (feature_loss(features, x, clean) for x in (hazy, light, noisy))
    assert (dense_l > light_l).all() and (dense_l > 2 * noise_l).all()
    out = hazy.clone().requires_grad_(True)
    feature_loss(features, out, clean).sum().backward()
    assert out.grad is not None and out.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in features.parameters())
    features.train()
    assert not features.training                            # frozen BatchNorm too


def test_real_sampler_gives_the_teacher_crop_of_the_same_region():
    import numpy as np

    from training.dehazer.trainer import RealSampler

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (60, 80, 3), dtype=np.uint8) for _ in range(3)]
    sampler = RealSampler(frames, 32, "cpu", teachers=[255 - f for f in frames])
    real, teacher = sampler.batch_with_teacher(5, torch.Generator().manual_seed(1))
    assert real.shape == teacher.shape == (5, 3, 32, 32)
    torch.testing.assert_close(teacher, 1 - real)
    again = sampler.batch(5, torch.Generator().manual_seed(1))
    torch.testing.assert_close(again, real)               # same randomness with or without the teacher


def test_coefficient_smoothness_penalises_blotches_in_flat_regions_only():
    flat = torch.full((1, 3, 32, 32), 0.8)
    edge = flat.clone()
    edge[..., 16:] = 0.2                                              # a strong image edge at column 16
    smooth_maps = torch.cat((torch.full((1, 3, 8, 8), 1.5), torch.full((1, 3, 8, 8), -0.2)), 1)
    step_maps = smooth_maps.clone()
    step_maps[:, :3, :, 4:] = 3.0                                     # the gain jumps at column 4 (of 8)
    assert float(L.coefficient_smoothness(smooth_maps, flat)) == 0.0
    blotch = float(L.coefficient_smoothness(step_maps, flat))
    assert blotch > 0
    assert float(L.coefficient_smoothness(step_maps, edge)) < 0.01 * blotch   # the jump follows an edge


def test_cid_lite_output_is_its_coefficient_maps_applied():
    net = build("cid-lite", widths=[8, 8, 16, 16]).eval()
    torch.nn.init.normal_(net.head.weight, std=0.1)
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        ab, work, _ = net.coefficient_maps(x)
        torch.testing.assert_close(net.apply_coefficients(ab, work, x), net(x))
    assert ab.shape == (2, 6, 16, 24) and (ab[:, :3] > 0).all()


def test_merge_detections_keeps_the_union_of_views():
    import numpy as np

    from training.dehazer.pseudo_labels import merge_detections

    box = np.array([[10, 10, 50, 40]], np.float32)
    raw = (np.concatenate([box, [[100, 100, 140, 130]]]), np.array([0.5, 0.2], np.float32), np.array([2, 2]))
    dcp = (np.concatenate([box + 1, [[200, 50, 260, 90]], box]), np.array([0.8, 0.6, 0.9], np.float32),
           np.array([2, 7, 0]))
    merged = merge_detections([raw, dcp], conf=0.3, iou=0.6)
    # The car seen in both views once (the better-scored box), the truck only the DCP view saw, the
    # person overlapping the car kept (another class); the 0.2 box dropped.
    assert sorted(merged[:, 0].tolist()) == [0, 2, 7]
    np.testing.assert_allclose(merged[merged[:, 0] == 2, 1:], box + 1)
    empty = merge_detections([(np.zeros((0, 4)), np.zeros(0), np.zeros(0))], conf=0.3, iou=0.6)
    assert empty.shape == (0, 5)


def test_crop_boxes_moves_clips_and_drops_boxes_mostly_outside():
    import numpy as np

    from training.dehazer.pseudo_labels import crop_boxes

    boxes = np.array([[2, 40, 40, 60, 60], [3, 90, 40, 130, 60], [5, 120, 10, 200, 30]], np.float32)
    out = crop_boxes(boxes, top=20, left=30, size=64)
    # the first lies inside; the second has 4 of its 40 columns inside (dropped); the third none
    np.testing.assert_allclose(out, [[2, 10, 20, 30, 40]])
    half = crop_boxes(np.array([[1, 0, 0, 40, 20]], np.float32), top=0, left=20, size=64)
    np.testing.assert_allclose(half, [[1, 0, 0, 20, 20]])     # exactly half inside: kept, clipped


@pytest.mark.slow
def test_detection_loss_rewards_seeing_the_pseudo_labels_and_trains_only_the_dehazer(yolo_weights, highway_frames,
                                                                                      tmp_path):
    import numpy as np

    from cidstream.errors import ConfigError
    from training.dehazer.pseudo_labels import DetectionLoss, pseudo_labels

    frames = [np.ascontiguousarray(f[:352, 400:752]) for f in highway_frames[:2]]
    labels = pseudo_labels(str(yolo_weights), frames, frames, conf=0.3, iou=0.6)
    assert all(len(b) > 0 for b in labels)                        # the highway has cars
    assert set(np.concatenate(labels)[:, 0].astype(int)) & {2, 5, 7}
    loss = DetectionLoss(str(yolo_weights))
    clean = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255
    hazy = (0.3 * clean + 0.7 * 0.85).requires_grad_(True)          # cars almost gone
    seen, unseen = float(loss(clean, labels)), loss(hazy, labels)
    assert seen < float(unseen.detach())
    unseen.backward()
    assert hazy.grad is not None and hazy.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in loss.parameters())
    assert float(loss(clean, [np.zeros((0, 5), np.float32)] * 2)) > 0   # no boxes: background loss only
    (tmp_path / "bad.pt").write_bytes(b"not a model")
    with pytest.raises(ConfigError, match="pseudo-label term"):
        DetectionLoss(str(tmp_path / "bad.pt"))


@pytest.fixture
def tiny_config(tmp_path, shared_data):
    cfg = yaml.safe_load((REPO / "configs" / "train" / "cid_lite.yaml").read_text())
    cfg["model"]["config"]["widths"] = [8, 8, 16, 16]
    cfg["data"].update(clean=[str(shared_data / "videos" / "highway2_720p.mp4")], clean_stride=40,
                       target=[str(shared_data / "real_hazy")], short_side=96)
    cfg["validation"].update(pairs=2, real=2, crop=64)
    cfg["train"].update(crop=48, batch=2, log_every=2, validate_every=3, checkpoint_every=2, pseudo_batch=2,
                        detector=str(shared_data / "weights" / "yolo11n_coco_from_int8.pt"))
    for phase, steps in (("pretrain", 6), ("adapt", 2), ("finetune", 2)):
        cfg["phases"][phase]["steps"] = steps
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.slow
def test_all_phases_then_export(cli, tiny_config, tmp_path):
    run = tmp_path / "run"
    code, text = cli("train", "all", "--config", tiny_config, "--run-dir", run)
    assert code == 0, text
    for phase in ("pretrain", "adapt", "finetune"):
        assert (run / f"after_{phase}.pt").exists()
    rows = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert {r["phase"] for r in rows} == {"pretrain", "adapt", "finetune"}
    assert any("psnr" in r and "coral" in r for r in rows) and any("w_max" in r for r in rows)
    assert {r["phase"] for r in rows if "t_teacher" in r} == {"pretrain", "adapt", "finetune"}  # DCP's transmission
    assert {r["phase"] for r in rows if "physics" in r} == {"pretrain", "adapt", "finetune"}    # generator's t and A
    assert {r["phase"] for r in rows if "detection" in r} == {"adapt", "finetune"}   # pseudo-label term
    assert (run / "log.csv").read_text().startswith("phase,step,loss")
    # The encoder stayed frozen in phases 2-3.
    p1 = torch.load(run / "after_pretrain.pt", weights_only=False)["model"]
    p3 = torch.load(run / "after_finetune.pt", weights_only=False)["model"]
    assert torch.equal(p1["stem.0.0.weight"], p3["stem.0.0.weight"])
    assert not torch.equal(p1["head.weight"], p3["head.weight"])
    out = tmp_path / "w.pt"
    code, text = cli("train", "export", run / "after_finetune.pt", "-o", out)
    assert code == 0, text
    loaded = load_model(str(out))
    assert loaded.name == "cid-lite"
    # trained without the display gain, shipped with the config's (docs/training.md, round 5)
    committed = yaml.safe_load((REPO / "configs" / "train" / "cid_lite.yaml").read_text())["model"]["config"]
    assert loaded.model.head_kind == "scattering" and loaded.model.keep_brightness == committed["keep_brightness"] > 0
    assert loaded.metadata["training"]["phases"] == ["pretrain", "adapt", "finetune"]
    assert "psnr" in loaded.metadata["metrics"] and loaded.metadata["data"]["clean_frames"] > 0


@pytest.mark.slow
def test_stopped_training_resumes_to_the_same_weights(tiny_config, tmp_path):
    from training.dehazer.trainer import Trainer, load_train_config

    cfg = load_train_config(tiny_config)
    whole = Trainer(cfg, tmp_path / "whole", log=lambda m: None)
    whole.run(["pretrain"])

    class Stop(Exception):
        pass

    def kill_at_4(phase, step, total, loss):
        if step == 4:
            raise Stop  # as if the process died right after the step-4 checkpoint

    cut = Trainer(cfg, tmp_path / "cut", log=lambda m: None)
    with pytest.raises(Stop):
        cut.run(["pretrain"], progress=kill_at_4)
    assert torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)["step"] == 4
    resumed = Trainer(cfg, tmp_path / "cut", log=lambda m: None)
    resumed.run(["pretrain"], resume=True)
    for k, v in whole.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[k], v, msg=k)


def test_training_config_errors(cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {arch: cid-lite}\n")
    code, text = cli("train", "pretrain", "--config", bad)
    assert code == 2 and "lacks the 'data' section" in text
    code, text = cli("train", "export", tmp_path / "none.pt", "-o", tmp_path / "w.pt")
    assert code == 2 and "checkpoint not found" in text
