"""The fog meter's fog-aware statistics (ops/fog_nss.py) and what issue 35 added to its training: fog moves
each statistic the way the natural-scene argument says, the meter's statistic sets load and are refused by
name, a training entry can leave days out, and the real samples' loss weight counts."""
import numpy as np
import pytest
import torch

from cidstream.engine.fog_meter import STAT_SETS, FogMeter, frame_maps, read_meter, save_meter
from cidstream.errors import ConfigError, WeightsError
from cidstream.ops.filters import grey
from cidstream.ops.fog_nss import NSS_COUNT, fog_nss
from training.data_entries import source_specs
from training.fog_meter.haze_train import label_loss

from .conftest import textured


def fogged(x: torch.Tensor, t: float, airlight: float = 0.85) -> torch.Tensor:
    """A uniform veil: transmission t everywhere (what fog does to a flat scene at one depth)."""
    return x * t + airlight * (1 - t)


def test_fog_moves_every_statistic_the_expected_way():
    clear = torch.from_numpy(textured(90, 160, seed=3)).permute(2, 0, 1)[None].float()
    clear = clear * torch.tensor([1.0, 0.8, 0.6]).view(1, 3, 1, 1)   # some colour to lose
    foggy = fogged(clear, 0.25)
    s_clear, s_fog = (fog_nss(x, grey(x))[0] for x in (clear, foggy))
    assert s_clear.shape == (NSS_COUNT,) and torch.isfinite(s_clear).all()
    names = ["mscn_var", "pair_var", "log_sharpness", "sharpness_cv", "energy_grey", "energy_yb", "energy_rg",
             "entropy", "colourfulness"]
    lower = {n: bool(s_fog[i] < s_clear[i]) for i, n in enumerate(names) if n != "sharpness_cv"}
    assert all(lower.values()), lower   # fog flattens, darkens contrast energy, narrows histogram and colour
    # the sharpness statistic follows the veil's transmission: ln(0.25) lower
    assert float(s_clear[2] - s_fog[2]) == pytest.approx(-np.log(0.25), abs=0.05)


def test_flat_frame_gives_finite_statistics():
    x = torch.full((2, 3, 90, 160), 0.5)
    maps, stats = frame_maps(x, "nss")
    assert stats.shape == (2, STAT_SETS["nss"]) and torch.isfinite(stats).all()


def test_meter_statistic_sets_round_trip_and_an_unknown_set_is_refused(tmp_path):
    model = FogMeter(stats="nss").eval()
    loaded, _ = read_meter(save_meter(model, tmp_path / "nss.pt"))
    assert loaded.stats == "nss"
    x = torch.rand(3, 3, 90, 120)
    with torch.no_grad():
        assert torch.equal(model(x)[0], loaded(x)[0])
    obj = torch.load(tmp_path / "nss.pt", weights_only=True)
    obj["config"]["stats"] = "classic"   # weights of one set read as another: a clear refusal
    torch.save(obj, tmp_path / "wrong.pt")
    with pytest.raises(WeightsError, match="do not fit the network"):
        read_meter(tmp_path / "wrong.pt")
    obj["config"]["stats"] = "magic"
    torch.save(obj, tmp_path / "unknown.pt")
    with pytest.raises(WeightsError, match="unknown frame statistics"):
        read_meter(tmp_path / "unknown.pt")


def test_a_training_entry_leaves_named_days_out(tmp_path):
    for day in ("DayA", "DayB"):
        (tmp_path / day).mkdir()
        for k in range(2):
            (tmp_path / day / f"{k}.jpg").write_bytes(b"x")
    every = source_specs([{"path": str(tmp_path), "split_by": "folder"}])
    kept = source_specs([{"path": str(tmp_path), "split_by": "folder", "leave_out": ["DayB"]}])
    assert len(every) == 4 and len(kept) == 2 and all("/DayA/" in p for p in kept)
    with pytest.raises(ConfigError, match="leave_out names DayC"):   # a typo is not silently ignored
        source_specs([{"path": str(tmp_path), "split_by": "folder", "leave_out": ["DayC"]}])


def test_real_samples_weigh_as_the_config_says():
    mu, sigma = torch.tensor([3.0, 3.0]), torch.tensor([0.1, 0.1])
    y, kind = torch.tensor([3.0, 2.0]), torch.tensor([0, 0])   # the second sample is off by one decade
    plain = label_loss(mu, sigma, y, kind)
    heavier = label_loss(mu, sigma, y, kind, torch.tensor([1.0, 3.0]))
    assert torch.allclose(plain, label_loss(mu, sigma, y, kind, torch.ones(2)))
    assert heavier > plain   # the wrong sample counts three times


def test_meter_selection_rule_guards_recall_then_ranks_by_tune_days():
    import sys
    from pathlib import Path

    bench = str(Path(__file__).resolve().parents[1] / "benchmarks")
    sys.path.insert(0, bench)
    try:
        from fog_meter_select import choose_candidate
    finally:
        sys.path.remove(bench)
    rows = {"a": {"mean_recall": 0.99, "tune_days": {"spearman": 0.60, "median_factor": 1.5}},
            "b": {"mean_recall": 0.95, "tune_days": {"spearman": 0.90, "median_factor": 1.2}},   # recall too low
            "c": {"mean_recall": 0.98, "tune_days": {"spearman": 0.73, "median_factor": 2.0}},
            "d": {"mean_recall": 0.98, "tune_days": {"spearman": 0.725, "median_factor": 1.8}}}  # tie: lower factor
    assert choose_candidate(rows, tuned=True)[0] == "d"
    for r in rows.values():
        r["median_factor_select_days"] = 1.0
    rows["a"]["median_factor_select_days"] = 0.9
    assert choose_candidate(rows, tuned=False)[0] == "a"
