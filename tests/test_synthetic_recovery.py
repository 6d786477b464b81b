"""benchmarks/synthetic_recovery.py on a tiny run: 3 frames, the dense patchy recipe, raw and dcp."""
import importlib.util
import json
import math

import pytest

from .conftest import REPO

pytestmark = pytest.mark.slow  # a whole (tiny) benchmark run on real footage


def load_benchmark():
    spec = importlib.util.spec_from_file_location("synthetic_recovery", REPO / "benchmarks" / "synthetic_recovery.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_run_dense_patchy(shared_data, tmp_path, capsys):
    bench = load_benchmark()
    out = tmp_path / "recovery.json"
    result = bench.main(["--model", "dcp", "--frames", "3", "--recipe", "configs/train/eval_dense_patchy.yaml",
                         "--resamples", "100", "--data", str(shared_data), "--out", str(out)])
    printed = capsys.readouterr().out
    assert "| eval_dense_patchy | dcp |" in printed and "| eval_dense_patchy | raw |" in printed
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))

    assert len(result["frames"]) == 3 and result["truth"]["boxes"] > 0
    rec = result["recipes"]["eval_dense_patchy"]
    assert rec["domains"] == {"dense_patchy": 3}
    assert list(rec["arms"]) == ["raw", "dcp"]
    for arm, r in rec["arms"].items():
        assert math.isfinite(r["psnr"]) and 5 < r["psnr"] < 60, (arm, r["psnr"])
        assert 0 < r["ssim"] <= 1
        assert 0 <= r["recovery_ap50"] <= 1
        lo, hi = r["recovery_ap50_ci"]
        assert 0 <= lo <= hi <= 1
        assert len(r["per_frame"]["psnr"]) == 3
    # dense haze hides vehicles the detector finds on the clean frame
    assert rec["arms"]["raw"]["recovery_ap50"] < 1
    assert [d["arms"] for d in rec["differences"]] == ["dcp - raw"]

    # the same seed gives the same pairs: frame i is degraded with its own generator
    again = bench.degrade(REPO / "configs/train/eval_dense_patchy.yaml", bench.clean_frames(shared_data, 1, 20), 321)
    assert again[1][0] == rec["drawn"][0]
