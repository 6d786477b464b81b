import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CIDSTREAM_DATA", REPO.parent / "shared" / "data"))
SAMPLE = REPO / "samples" / "hazy_traffic.mp4"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data; CI has it, so there a missing folder is a failure, not a skip."""
    if not (SHARED_DATA / "videos").is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"shared data not found at {SHARED_DATA} (CI must provide ../shared/data)")
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch, tmp_path):
    # Rich wraps at the terminal width; keep messages on one line so tests can match them.
    monkeypatch.setenv("COLUMNS", "400")
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "yolo-config"))


@pytest.fixture
def cli(capsys):
    """Run the CLI in-process; returns (exit code, everything printed)."""
    from cidstream.cli import main

    def run(*args):
        code = main([str(a) for a in args])
        out = capsys.readouterr()
        return code, out.out + out.err

    return run


def run_cli_subprocess(*args, timeout=300, **kw):
    env = dict(os.environ, COLUMNS="400")
    return subprocess.run([sys.executable, "-m", "cidstream", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env, **kw)


def textured(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A clean-looking RGB float image in [0, 1] with edges and texture at several scales."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = 0.5 + 0.25 * np.sin(xx / 7.0) * np.cos(yy / 11.0)
    img = np.stack([base, 0.6 * base + 0.2, 1.0 - 0.8 * base], axis=-1)
    img[(xx // 16 + yy // 16) % 2 == 0] *= 0.35  # dark patches: the dark-channel prior holds there
    img += rng.normal(0, 0.02, img.shape)
    return np.clip(img, 0, 1).astype(np.float32)


@pytest.fixture(scope="session")
def yolo_weights(shared_data) -> Path:
    return shared_data / "weights" / "yolo11n_coco_from_int8.pt"


@pytest.fixture(scope="session")
def detector(yolo_weights, tmp_path_factory):
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ.setdefault("YOLO_CONFIG_DIR", str(tmp_path_factory.mktemp("yolo-config")))
    from cidstream.detect import Detector

    return Detector(str(yolo_weights))


@pytest.fixture(scope="session")
def highway_frames(shared_data):
    import av

    with av.open(str(shared_data / "videos" / "highway_720p.mp4")) as c:
        return np.stack([f.to_ndarray(format="rgb24") for _, f in zip(range(6), c.decode(video=0))])
