"""The device-tensor path of the detector (torch uint8 frames, letterboxed where they lie) against Ultralytics' own
numpy path: the same model input, so the same detections, at every frame size; and the letterbox never hands
Ultralytics a float above 1 (which it would take for 0-255 input and divide by 255: a black image)."""
import cv2
import numpy as np
import pytest
import torch

from cidstream.detect import Detector, box_iou, letterbox

# (width, height): 360p, 720p, 1080p, and odd sizes whose scale factor is not a simple fraction
SIZES = [(640, 360), (1280, 720), (1920, 1080), (641, 359), (1001, 563)]
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                 reason="no CUDA device"))]
BOX_TOLERANCE_PX = 1.0


@pytest.fixture(scope="module")
def real_frames(shared_data) -> np.ndarray:
    """Three RGB frames of the highway clip, a second apart-ish (different traffic in each)."""
    import av

    with av.open(str(shared_data / "videos" / "highway_720p.mp4")) as c:
        decoded = [f.to_ndarray(format="rgb24") for _, f in zip(range(41), c.decode(video=0))]
    return np.stack(decoded[::20])


def at_size(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])


@pytest.fixture(scope="module")
def detector_on(detector, yolo_weights):
    """detector_on(device): the session's CPU detector, or one built for the device."""
    built = {"cpu": detector}

    def get(device: str) -> Detector:
        if device not in built:
            built[device] = Detector(str(yolo_weights), device=device)
        return built[device]

    return get


def ultralytics_letterbox(frame_rgb: np.ndarray, stride: int = 32):
    """Ultralytics' predict-time letterbox (a same-shape batch: auto=True) of one RGB frame: RGB uint8 + params."""
    from ultralytics.data.augment import LetterBox

    lb = LetterBox(640, auto=True, stride=stride)
    bgr = np.ascontiguousarray(frame_rgb[..., ::-1])
    params = lb.get_params({"img": bgr})
    return lb(image=bgr)[..., ::-1], params


def as_u8(x: torch.Tensor) -> np.ndarray:
    """float (N, 3, h, w) in [0, 1] -> uint8 (N, h, w, 3)."""
    return (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_tensor_path_gives_the_numpy_paths_detections(detector_on, real_frames, size, device):
    det = detector_on(device)
    frames = at_size(real_frames, size)
    ref = det(frames)  # numpy: Ultralytics' own letterbox
    got = det(torch.from_numpy(frames).to(device))  # tensor: ours, where the tensor lies
    worst = 0.0
    for i, (a, b) in enumerate(zip(ref, got)):
        assert len(a) >= 3, f"frame {i}: the reference path found only {len(a)} vehicles"
        assert len(b) == len(a), f"frame {i} at {size}: {len(b)} detections on the tensor path, {len(a)} on numpy"
        pair = box_iou(a.xyxy, b.xyxy).argmax(axis=1)
        assert len(set(pair.tolist())) == len(a), f"frame {i}: boxes do not pair one to one"
        worst = max(worst, float(np.abs(a.xyxy - b.xyxy[pair]).max()))
        assert (a.class_id == b.class_id[pair]).all(), f"frame {i}: classes differ"
    assert worst <= BOX_TOLERANCE_PX, f"{size} on {device}: boxes differ by up to {worst:.3f} px"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("size", [(1920, 1080), (641, 359), (1001, 563), (3840, 2160), (320, 180)],
                         ids=lambda s: f"{s[0]}x{s[1]}")
def test_letterbox_stays_in_unit_range(size, device):
    w, h = size
    rng = np.random.default_rng(0)
    white = torch.full((1, h, w, 3), 255, dtype=torch.uint8)
    noise = torch.from_numpy(rng.integers(0, 256, (1, h, w, 3), dtype=np.uint8))
    for frames in (white, noise):
        x, ratio, (left, top) = letterbox(frames.to(device), 640)
        assert x.dtype == torch.float32 and x.device.type == device
        assert float(x.max()) <= 1.0 and float(x.min()) >= 0.0
    nh, nw = max(round(h * ratio), 1), max(round(w * ratio), 1)
    x, _, _ = letterbox(white.to(device), 640)
    assert (x[:, :, top:top + nh, left:left + nw] == 1.0).all()  # a white frame stays exactly 1.0, not 1 + eps


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("size", [(641, 359), (1001, 563), (1920, 1080), (1280, 720), (320, 180), (359, 641)],
                         ids=lambda s: f"{s[0]}x{s[1]}")
def test_letterbox_is_ultralytics_letterbox(real_frames, size, device):
    """Same geometry (size, padding offsets), same grey 114 and the same pixels as Ultralytics' cv2 letterbox."""
    frames = at_size(real_frames[:1], size)
    ref, p = ultralytics_letterbox(frames[0])
    x, ratio, (left, top) = letterbox(torch.from_numpy(frames).to(device), 640)
    ours = as_u8(x)[0]
    assert ours.shape == ref.shape
    assert (left, top) == (p["left"], p["top"]) and ratio == pytest.approx(p["ratio"][0])
    nw, nh = p["new_unpad"]
    pad = np.ones(ours.shape[:2], bool)
    pad[top:top + nh, left:left + nw] = False
    assert pad.any() and (ours[pad] == 114).all() and (ref[pad] == 114).all()
    diff = np.abs(ours.astype(int) - ref.astype(int))
    assert diff.max() == 0, (f"{size}: {int((diff > 0).sum())} values differ from cv2 INTER_LINEAR, "
                             f"by up to {int(diff.max())}/255")
