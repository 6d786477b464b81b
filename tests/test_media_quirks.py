"""Media audit: rotation metadata of videos and EXIF orientation of images, images above the pixel
limit, and the decoders' own stderr noise on corrupt or truncated JPEGs. All media are made here."""
import os
import struct
import zlib

import av
import cv2
import numpy as np
import pytest

from cidstream.errors import InputError
from cidstream.engine.device import cuda_available
from cidstream.io.decode import nvdec_available
from cidstream.io.images import read_image
from cidstream.io.sources import VideoSource

RED, GREEN, BLUE = (230, 30, 30), (30, 200, 30), (30, 30, 230)


def pattern(h: int, w: int) -> np.ndarray:
    """RGB with a red top-left quadrant, a green bottom-right corner and a blue strip at the top right:
    every rotation and mirror of it is different."""
    img = np.full((h, w, 3), 20, np.uint8)
    img[: h // 2, : w // 2] = RED
    img[h - h // 4:, w - w // 4:] = GREEN
    img[: h // 8, w - w // 4:] = BLUE
    return img


def upright(img: np.ndarray, degrees: int, hflip=False, vflip=False) -> np.ndarray:
    """What a player shows for a display rotation of ``degrees`` counterclockwise, then mirrors
    (PyAV's set_display_rotation / VideoFrame.rotation convention)."""
    out = np.rot90(img, (degrees // 90) % 4)
    if hflip:
        out = out[:, ::-1]
    if vflip:
        out = out[::-1]
    return np.ascontiguousarray(out)


def rotated_video(path, degrees, hflip=False, vflip=False, w=64, h=48, frames=4, codec="libx264",
                  pix_fmt="yuv420p"):
    """A short video whose stream carries a display matrix (as phones write), frames stored as ``pattern``."""
    img = pattern(h, w)
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=25)
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        if codec == "libx264":
            s.options = {"crf": "0"}
        s.set_display_rotation(degrees, hflip=hflip, vflip=vflip)
        for _ in range(frames):
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    with av.open(str(path)) as c:  # the tag must be there for the test to mean anything
        first = next(c.decode(video=0))
        assert (first.width, first.height) == (w, h)
        assert first.rotation == ((degrees + 180) % 360) - 180 or hflip or vflip
        assert any(sd.type == av.sidedata.sidedata.Type.DISPLAYMATRIX for sd in first.side_data)
    return img


def close_to(a: np.ndarray, b: np.ndarray, tol=12.0) -> bool:
    return a.shape == b.shape and float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean()) < tol


def run_cli(capfd, *args):
    """The CLI in-process; (exit code, stdout, stderr) as written to the file descriptors, so what
    C libraries print is seen too."""
    from cidstream.cli import main

    code = main([str(a) for a in args])
    out = capfd.readouterr()
    return code, out.out, out.err


def one_error_line(out: str, err: str) -> str:
    lines = [ln for ln in (out + err).splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


# --- 1. rotation of videos -------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["rgb24", "yuv420p"])
@pytest.mark.parametrize("degrees,hflip,vflip", [(90, False, False), (-90, False, False), (180, False, False),
                                                 (90, True, False), (0, False, True)])
def test_rotated_video_frames_and_size_are_upright(tmp_path, mode, degrees, hflip, vflip):
    path = tmp_path / "phone.mp4"
    img = rotated_video(path, degrees, hflip, vflip)
    want = upright(img, degrees, hflip, vflip)
    with VideoSource(str(path), decode=mode) as src:
        assert (src.info.height, src.info.width) == want.shape[:2]
        frames = list(src)
    assert len(frames) == 4
    for f in frames:
        assert f.shape == want.shape[:2]
        if mode == "yuv420p":  # the planes themselves are turned (4:2:0 stays 4:2:0)
            assert f.planes is not None
            h, w = want.shape[:2]
            assert tuple(f.planes.y.shape) == (h, w) and tuple(f.planes.u.shape) == (h // 2, w // 2)
        assert close_to(f.rgb(), want), (degrees, hflip, vflip, mode)


def test_rotated_odd_size_420_video_is_turned_as_rgb(tmp_path):
    path = tmp_path / "odd.mkv"
    img = rotated_video(path, 90, w=63, h=47, codec="mjpeg", pix_fmt="yuvj420p")
    with VideoSource(str(path), decode="yuv420p") as src:
        assert (src.info.width, src.info.height) == (47, 63)
        f = next(iter(src))
    assert f.image is not None and close_to(f.image, upright(img, 90), tol=15)


def test_rotated_video_output_plays_upright(tmp_path, capfd):
    src, out = tmp_path / "phone.mp4", tmp_path / "out.mp4"
    img = rotated_video(src, 90, w=64, h=48, frames=6)
    code, stdout, stderr = run_cli(capfd, "run", src, "-o", out, "--no-progress", "--device", "cpu")
    assert code == 0, stdout + stderr
    with av.open(str(out)) as c:
        frames = list(c.decode(video=0))
    assert len(frames) == 6
    # Upright pixels and no display matrix: every player shows it as the input is shown.
    assert (frames[0].width, frames[0].height) == (48, 64)
    assert frames[0].rotation == 0
    assert not any(sd.type == av.sidedata.sidedata.Type.DISPLAYMATRIX for sd in frames[0].side_data)
    got = frames[0].to_ndarray(format="rgb24").astype(np.int16)
    red = np.argwhere((got[..., 0] - got[..., 1] > 80) & (got[..., 0] - got[..., 2] > 80))
    want = np.argwhere(np.all(upright(img, 90) == RED, axis=-1))
    assert len(red) > 0.8 * len(want)
    assert np.abs(red.mean(0) - want.mean(0)).max() < 3  # the red quadrant is where a player shows it


@pytest.mark.skipif(not (cuda_available() and nvdec_available()), reason="needs CUDA and an FFmpeg with NVDEC")
@pytest.mark.parametrize("degrees,hflip", [(90, False), (-90, True), (180, False)])
def test_rotated_video_nvdec_planes_are_upright(tmp_path, degrees, hflip):
    path = tmp_path / "phone.mp4"
    img = rotated_video(path, degrees, hflip)
    want = upright(img, degrees, hflip)
    with VideoSource(str(path), decode="nvdec", device="cuda") as src:
        assert (src.info.height, src.info.width) == want.shape[:2]
        frames = list(src)
    if not src.decode_path.startswith("NVDEC,"):
        pytest.skip(f"NVDEC did not run: {src.decode_path}")
    for f in frames:
        assert f.planes.on_device and tuple(f.planes.y.shape) == want.shape[:2]
        assert close_to(f.rgb(), want)


def test_display_matrix_angle_not_a_quarter_turn_is_warned(tmp_path, caplog):
    path = tmp_path / "tilted.mp4"
    img = rotated_video(path, 45)
    with VideoSource(str(path), decode="rgb24") as src:
        frames = list(src)
    assert close_to(frames[0].image, img)  # processed as stored, but not silently
    assert "not a multiple of 90" in caplog.text


# --- 1. EXIF orientation of images -----------------------------------------------------------------

def tiff_ifd(orientation: int, big_endian=False) -> bytes:
    """A TIFF structure (as inside EXIF) whose IFD0 holds only Orientation (tag 274, SHORT)."""
    e = ">" if big_endian else "<"
    return ((b"MM\0*" if big_endian else b"II*\0") + struct.pack(e + "I", 8) + struct.pack(e + "H", 1)
            + struct.pack(e + "HHIHH", 274, 3, 1, orientation, 0) + struct.pack(e + "I", 0))


def jpeg_with_exif(rgb: np.ndarray, orientation: int) -> bytes:
    data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    payload = b"Exif\0\0" + tiff_ifd(orientation)
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    at = 4 + struct.unpack(">H", data[4:6])[0]  # after SOI and the JFIF APP0 segment
    return data[:at] + app1 + data[at:]


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_with_exif(bgr_or_bgra: np.ndarray, orientation: int) -> bytes:
    data = cv2.imencode(".png", bgr_or_bgra)[1].tobytes()
    at = data.index(b"IDAT") - 4
    return data[:at] + png_chunk(b"eXIf", tiff_ifd(orientation, big_endian=True)) + data[at:]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_jpeg_exif_orientation_is_applied(tmp_path, orientation):
    path = tmp_path / f"o{orientation}.jpg"
    path.write_bytes(jpeg_with_exif(pattern(40, 64), orientation))
    rgb, alpha = read_image(path)
    # OpenCV's IMREAD_COLOR applies EXIF orientation itself: the same decoder, so the same pixels.
    want = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert alpha is None
    assert rgb.shape == want.shape == ((64, 40, 3) if orientation >= 5 else (40, 64, 3))
    np.testing.assert_array_equal(rgb, want)


def test_png_exif_orientation_turns_16_bit_rgba_and_its_alpha(tmp_path):
    rgb = pattern(30, 50).astype(np.uint16) * 257
    alpha = np.tile(np.linspace(0, 65535, 50).astype(np.uint16), (30, 1))
    bgra = np.dstack([rgb[..., ::-1], alpha])
    path = tmp_path / "o6.png"
    path.write_bytes(png_with_exif(bgra, 6))  # 6: turn 90 degrees clockwise to show
    got, got_alpha = read_image(path)
    assert got.shape == (50, 30, 3)
    np.testing.assert_array_equal(got, np.rot90(pattern(30, 50), -1))
    np.testing.assert_array_equal(got_alpha, np.rot90((alpha / 257.0 + 0.5).astype(np.uint8), -1))


def test_tiff_orientation_tag_is_read_and_applied_once(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    path = tmp_path / "o6.tif"
    Image.fromarray(pattern(30, 50)).save(path, tiffinfo={274: 6})
    got, _ = read_image(path)  # OpenCV's TIFF decoder turns it itself: not a second time
    np.testing.assert_array_equal(got, np.rot90(pattern(30, 50), -1))


def test_exif_rotated_photo_runs_upright_through_the_cli(tmp_path, capfd):
    src, out = tmp_path / "photo.jpg", tmp_path / "photo_clear.png"
    src.write_bytes(jpeg_with_exif(pattern(48, 64), 8))  # 8: turn 90 degrees counterclockwise to show
    code, stdout, stderr = run_cli(capfd, "run", src, "-o", out, "--no-progress", "--device", "cpu")
    assert code == 0, stdout + stderr
    assert cv2.imread(str(out)).shape == (64, 48, 3)


# --- 2. pixel limit --------------------------------------------------------------------------------

def huge_png(width=60000, height=60000) -> bytes:
    """A valid PNG header declaring a huge image, with a token of pixel data: refused before decoding."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * 16))
            + png_chunk(b"IEND", b""))


def test_image_above_the_pixel_limit_is_refused_with_its_size(tmp_path, capfd):
    path = tmp_path / "huge.png"
    path.write_bytes(huge_png())
    with pytest.raises(InputError, match=r"60000x60000 = 3,600,000,000 pixels, above the limit of 1,073,741,824"):
        read_image(path)
    code, stdout, stderr = run_cli(capfd, "run", path, "-o", tmp_path / "out.png", "--no-progress", "--device", "cpu")
    assert code == 2
    assert "60000x60000" in one_error_line(stdout, stderr)


def test_pixel_limit_follows_opencv_environment(tmp_path, monkeypatch):
    path = tmp_path / "wide.png"
    path.write_bytes(cv2.imencode(".png", np.zeros((10, 300, 3), np.uint8))[1].tobytes())
    monkeypatch.setenv("CV_IO_MAX_IMAGE_PIXELS", "2000")
    with pytest.raises(InputError, match=r"300x10 = 3,000 pixels, above the limit of 2,000"):
        read_image(path)


# --- 3. truncated and corrupt JPEGs: our one line, not libjpeg's -----------------------------------

def textured_jpeg() -> bytes:
    rng = np.random.default_rng(3)
    img = cv2.GaussianBlur((rng.random((96, 128, 3)) * 255).astype(np.uint8), (5, 5), 0)
    return cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def test_truncated_jpeg_is_an_error_without_library_noise(tmp_path, capfd):
    data = textured_jpeg()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) * 2 // 3])  # decodable: libjpeg would fill the rest with grey
    code, stdout, stderr = run_cli(capfd, "run", path, "-o", tmp_path / "out.jpg", "--no-progress", "--device", "cpu")
    assert code == 2
    assert "truncated" in one_error_line(stdout, stderr)
    assert not (tmp_path / "out.jpg").exists()


def test_jpeg_cut_in_its_header_gives_only_our_line(tmp_path, capfd):
    path = tmp_path / "stub.jpg"
    path.write_bytes(textured_jpeg()[:200])
    code, stdout, stderr = run_cli(capfd, "run", path, "-o", tmp_path / "out.jpg", "--no-progress", "--device", "cpu")
    assert code == 2
    assert "cannot decode image" in one_error_line(stdout, stderr)


def test_corrupt_jpeg_data_is_an_error_without_library_noise(tmp_path, capfd):
    data = bytearray(textured_jpeg())
    mid = (data.index(b"\xff\xda") + len(data)) // 2
    data[mid:mid + 2] = b"\xff\xd0"  # a stray restart marker in the middle of the scan
    path = tmp_path / "bad.jpg"
    path.write_bytes(bytes(data))
    code, stdout, stderr = run_cli(capfd, "run", path, "-o", tmp_path / "out.jpg", "--no-progress", "--device", "cpu")
    assert code == 2
    line = one_error_line(stdout, stderr)
    assert "corrupt" in line and "libjpeg: Corrupt JPEG data" in line


def test_only_the_decoders_own_stderr_lines_are_swallowed(capfd):
    from cidstream.io.images import _native_stderr

    with _native_stderr() as noise:
        os.write(2, b"Premature end of JPEG file\n")
        os.write(2, b"another thread's message\n")
    err = capfd.readouterr().err
    assert noise == ["Premature end of JPEG file\n"]
    assert "another thread's message" in err and "Premature" not in err
