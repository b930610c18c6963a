"""abstractvision.media on real bytes: hostile inputs, masks, encoders, previews and videos."""

from __future__ import annotations

import contextlib
import io
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from abstractvision import media
from abstractvision.errors import InvalidImageError, InvalidRequestError

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _noise(w: int, h: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    pixels = np.random.default_rng(seed).integers(0, 256, (h, w, channels), dtype=np.uint8)
    return Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode)


def _save(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


# --- decompression bombs: refused from the header, before any decoder runs -------------------


def test_png_bomb_is_refused_from_the_header() -> None:
    data = _png_header(100_000, 100_000)  # a header only: there is no pixel data to decode
    with pytest.raises(InvalidImageError) as caught:
        media.inspect_image(data)
    assert str(caught.value) == (
        "image: 100000x100000 = 10000000000 pixels exceeds the limit of 67108864"
    )
    assert caught.value.field == "image"


def _jpeg_bomb() -> bytes:
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, 60_000, 60_000, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + b"\xff\xe0" + struct.pack(">H", 4) + b"\x00\x00" + sof + b"\xff\xd9"


def _webp_bomb() -> bytes:
    body = b"VP8X" + struct.pack("<I", 10) + b"\x00" * 4
    body += (16383).to_bytes(3, "little") + (16383).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


@pytest.mark.parametrize(
    ("data", "claimed"),
    [
        (_jpeg_bomb(), "60000x60000"),
        (_webp_bomb(), "16384x16384"),
        (b"GIF89a" + struct.pack("<HH", 65535, 65535) + b"\x00" * 8, "65535x65535"),
    ],
    ids=["jpeg", "webp", "gif"],
)
def test_other_format_bombs_are_refused_from_the_header(data: bytes, claimed: str) -> None:
    with pytest.raises(InvalidImageError, match=f"{claimed} = .* exceeds the limit"):
        media.inspect_image(data, field="reference_image")


def test_max_pixels_and_max_bytes_are_parameters() -> None:
    data = _save(_noise(64, 64), "PNG")
    with pytest.raises(InvalidImageError, match="64x64 = 4096 pixels exceeds the limit of 4000"):
        media.inspect_image(data, max_pixels=4000)
    with pytest.raises(InvalidImageError, match=f"{len(data)} bytes exceeds the limit of 100"):
        media.inspect_image(data, max_bytes=100)


# --- what is not an allowed, complete image ---------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF"])
def test_truncated_images_are_refused(fmt: str) -> None:
    data = _save(_noise(96, 96), fmt)
    for cut in (len(data) // 2, len(data) * 9 // 10):
        with pytest.raises(InvalidImageError, match=r"^image: corrupt or truncated"):
            media.inspect_image(data[:cut])


def test_corrupt_png_pixel_data_is_refused() -> None:
    good = _save(_noise(32, 32), "PNG")
    start = good.index(b"IDAT") + 4
    bad = good[:start] + b"\x00" * 40 + good[start + 40 :]
    with pytest.raises(InvalidImageError, match="corrupt or truncated PNG"):
        media.inspect_image(bad)


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', "SVG"),
        (b"  <svg width='10' height='10'></svg>", "SVG"),
        (_save(_noise(8, 8), "BMP"), "BMP"),
        (_save(_noise(8, 8), "TIFF"), "TIFF"),
        (_save(_noise(16, 16), "ICO"), "ICO"),
        (b"%PDF-1.7\n", "PDF"),
        (b"plain text", "unknown"),
    ],
)
def test_formats_outside_the_allow_list_are_refused_by_name(data: bytes, name: str) -> None:
    with pytest.raises(InvalidImageError) as caught:
        media.inspect_image(data, field="mask")
    assert str(caught.value) == (
        f"mask: unsupported format ({name}); allowed: PNG, JPEG, WebP, GIF"
    )


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "is empty"),
        ("aGVsbG8=", "expected image bytes, got str"),
        (None, "expected image bytes, got NoneType"),
    ],
)
def test_empty_and_non_bytes_are_refused(data: object, reason: str) -> None:
    with pytest.raises(InvalidImageError, match=f"^image: {reason}$"):
        media.inspect_image(data)  # type: ignore[arg-type]


def test_invalid_image_error_is_an_invalid_request_and_a_value_error() -> None:
    with pytest.raises(InvalidImageError) as caught:
        media.inspect_image(b"nope")
    assert isinstance(caught.value, InvalidRequestError)
    assert isinstance(caught.value, ValueError)


# --- inspecting and decoding allowed images ---------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "mode", "has_alpha"),
    [("PNG", "RGBA", True), ("PNG", "L", False), ("JPEG", "RGB", False), ("WEBP", "RGBA", True)],
)
def test_inspect_reports_format_size_mode_and_alpha(fmt: str, mode: str, has_alpha: bool) -> None:
    info = media.inspect_image(_save(_noise(40, 24, mode), fmt))
    assert (info.format, info.width, info.height) == (fmt.lower(), 40, 24)
    assert (info.mode, info.has_alpha, info.n_frames) == (mode, has_alpha, 1)
    assert info.mime_type == f"image/{fmt.lower()}"


def test_animated_gif_is_accepted_and_decodes_to_its_first_frame() -> None:
    frames = [Image.new("RGB", (20, 10), color) for color in ("red", "green", "blue")]
    data = _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    info = media.inspect_image(data)
    assert (info.format, info.n_frames) == ("gif", 3)
    assert media.decode_image(data).getpixel((5, 5)) == (255, 0, 0)


def _exif_rotated_jpeg() -> bytes:
    """40x20 stored: left half red, right half blue; EXIF orientation 6 (display rotated 90 CW)."""
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    image.paste((0, 0, 255), (20, 0, 40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    return _save(image, "JPEG", exif=exif.tobytes(), quality=95)


def test_exif_orientation_is_applied_and_reported() -> None:
    data = _exif_rotated_jpeg()
    info = media.inspect_image(data)
    assert (info.width, info.height) == (20, 40)
    image = media.decode_image(data)
    assert image.size == (20, 40)
    top, bottom = image.getpixel((10, 5)), image.getpixel((10, 35))
    assert top[0] > 200 and top[2] < 60  # the stored left (red) is now on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_rgba_decodes_to_rgb_on_white_not_black() -> None:
    image = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    image.putpixel((0, 0), (10, 20, 30, 255))
    decoded = media.decode_image(_save(image, "PNG"))
    assert decoded.mode == "RGB"
    assert decoded.getpixel((5, 5)) == (255, 255, 255)
    assert decoded.getpixel((0, 0)) == (10, 20, 30)
    assert media.decode_image(_save(image, "PNG"), mode="RGBA").getpixel((5, 5))[3] == 0


def test_sixteen_bit_grey_is_scaled_not_clipped() -> None:
    grey = Image.fromarray(np.full((8, 8), 32768, dtype=np.uint16))
    assert media.decode_image(_save(grey, "PNG"), mode="L").getpixel((0, 0)) == 128


def test_decode_image_errors_name_the_field() -> None:
    with pytest.raises(InvalidImageError, match=r"^init_image: "):
        media.decode_image(b"GIF89a", field="init_image")


# --- masks: one convention, white = change ----------------------------------------------------


def test_grey_mask_keeps_soft_levels() -> None:
    mask = Image.new("L", (16, 8), 0)
    mask.paste(255, (0, 0, 8, 8))
    mask.putpixel((15, 7), 128)
    decoded = media.decode_mask(_save(mask, "PNG"), size=(16, 8))
    assert decoded.mode == "L"
    assert np.array_equal(np.asarray(decoded), np.asarray(mask))


def test_alpha_mask_transparent_means_change() -> None:
    mask = Image.new("RGBA", (16, 8), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (8, 0, 16, 8))
    decoded = media.decode_mask(_save(mask, "PNG"), size=(16, 8))
    assert decoded.getpixel((12, 4)) == 255  # transparent -> change
    assert decoded.getpixel((2, 4)) == 0  # opaque -> keep


def test_fully_opaque_rgba_mask_uses_its_colours() -> None:
    mask = Image.new("RGBA", (8, 8), (0, 0, 0, 255))
    mask.paste((255, 255, 255, 255), (0, 0, 4, 8))
    decoded = media.decode_mask(_save(mask, "PNG"), size=(8, 8))
    assert (decoded.getpixel((1, 1)), decoded.getpixel((6, 6))) == (255, 0)


def test_mask_of_another_size_is_refused_naming_both_sizes() -> None:
    with pytest.raises(InvalidImageError) as caught:
        media.decode_mask(_save(Image.new("L", (32, 16)), "PNG"), size=(64, 64))
    assert str(caught.value) == "mask: mask is 32x16 but the image is 64x64; sizes must match"


def test_mask_to_alpha_png_round_trips() -> None:
    mask = _noise(24, 16, "L", seed=3)
    alpha_png = media.mask_to_alpha_png(mask)
    as_rgba = Image.open(io.BytesIO(alpha_png))
    assert as_rgba.mode == "RGBA"
    assert as_rgba.getpixel((0, 0))[3] == 255 - mask.getpixel((0, 0))
    back = media.decode_mask(alpha_png, size=(24, 16))
    assert np.array_equal(np.asarray(back), np.asarray(mask))


# --- encoding ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["png", "webp", "jpeg", "jpg", "PNG"])
def test_encode_image_formats_and_mime(fmt: str) -> None:
    data, mime = media.encode_image(_noise(32, 24), fmt)
    canonical = fmt.lower().replace("jpg", "jpeg")
    assert mime == f"image/{canonical}"
    info = media.inspect_image(data)
    assert (info.format, info.width, info.height) == (canonical, 32, 24)


def test_encode_image_is_deterministic_and_drops_metadata() -> None:
    first = _noise(32, 32)
    second = first.copy()
    second.info["comment"] = b"made at 12:00"
    second.info["exif"] = Image.Exif().tobytes()
    for fmt in ("png", "webp", "jpeg"):
        assert media.encode_image(first, fmt) == media.encode_image(second, fmt)
    assert b"12:00" not in media.encode_image(second, "png")[0]


def test_png_is_lossless_and_jpeg_drops_alpha_on_white() -> None:
    rgba = _noise(16, 16, "RGBA", seed=1)
    back = Image.open(io.BytesIO(media.encode_image(rgba)[0]))
    assert np.array_equal(np.asarray(back), np.asarray(rgba))
    clear = Image.new("RGBA", (16, 16), (0, 0, 0, 0))
    jpeg = Image.open(io.BytesIO(media.encode_image(clear, "jpeg", quality=95)[0]))
    assert jpeg.mode == "RGB" and min(jpeg.getpixel((8, 8))) > 245


def test_encode_image_refuses_unknown_format_and_bad_quality() -> None:
    with pytest.raises(InvalidRequestError, match="must be one of png, webp, jpeg"):
        media.encode_image(_noise(8, 8), "bmp")
    for quality in (0, 101, True):
        with pytest.raises(InvalidRequestError, match="quality"):
            media.encode_image(_noise(8, 8), "webp", quality=quality)


# --- thumbnails -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "max_bytes"), [("webp", 48_000), ("jpeg", 20_000), ("png", 30_000)]
)
def test_thumbnail_of_noise_stays_under_max_bytes(fmt: str, max_bytes: int) -> None:
    data, mime = media.thumbnail(_noise(1024, 1024), max_bytes=max_bytes, format=fmt)
    assert len(data) <= max_bytes
    assert mime == f"image/{fmt}"
    info = media.inspect_image(data)
    assert max(info.width, info.height) <= 256


def test_thumbnail_from_bytes_keeps_aspect_and_alpha() -> None:
    data, _ = media.thumbnail(_save(_noise(600, 300, "RGBA"), "PNG"), max_side=128)
    info = media.inspect_image(data)
    assert (info.width, info.height, info.has_alpha) == (128, 64, True)


def test_thumbnail_impossible_budget_raises() -> None:
    with pytest.raises(InvalidRequestError, match="too small for any preview"):
        media.thumbnail(_noise(256, 256), max_bytes=10)


@settings(max_examples=15, deadline=None)
@given(st.integers(2_000, 60_000), st.integers(64, 700), st.integers(64, 700))
def test_thumbnail_always_fits_its_budget(max_bytes: int, w: int, h: int) -> None:
    data, _ = media.thumbnail(_noise(w, h, seed=w * h), max_bytes=max_bytes)
    assert len(data) <= max_bytes


# --- video ------------------------------------------------------------------------------------


def _frames(n: int, w: int = 64, h: int = 64) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def test_mp4_of_nine_frames_decodes_back() -> None:
    data, mime = media.encode_video(_frames(9), fps=8)
    assert mime == "video/mp4"
    assert media.video_info(data) == media.VideoInfo("mp4", 64, 64, 9, 8.0)
    assert media.poster_frame(data).size == (64, 64)


def test_mp4_from_float_frames_and_pil_frames() -> None:
    ramp = np.linspace(0.0, 1.0, 64 * 64 * 3, dtype=np.float32).reshape(64, 64, 3)
    data, _ = media.encode_video([ramp, ramp[::-1]], fps=24)
    assert media.video_info(data).n_frames == 2
    poster = np.asarray(media.poster_frame(data), dtype=float)
    assert abs(poster.mean() - 127.5) < 8
    pil = [Image.fromarray(f) for f in _frames(3, 48, 32)]
    info = media.video_info(media.encode_video(pil, fps=12)[0])
    assert (info.width, info.height, info.n_frames, info.fps) == (48, 32, 3, 12.0)


def test_mp4_odd_sizes_are_padded_to_even() -> None:
    data, _ = media.encode_video(_frames(3, 63, 65), fps=10)
    info = media.video_info(data)
    assert (info.width, info.height, info.n_frames) == (64, 66, 3)


@pytest.mark.parametrize(("fmt", "mime"), [("webp", "image/webp"), ("gif", "image/gif")])
def test_animated_webp_and_gif(fmt: str, mime: str) -> None:
    data, got_mime = media.encode_video(_frames(5, 33, 17), fps=10, format=fmt)
    assert got_mime == mime
    info = media.video_info(data)
    assert (info.format, info.width, info.height, info.n_frames) == (fmt, 33, 17, 5)
    assert info.fps == pytest.approx(10.0)
    assert Image.open(io.BytesIO(data)).info.get("loop") == 0
    assert media.poster_frame(data).size == (33, 17)


def test_encode_video_validates_frames_fps_and_format() -> None:
    with pytest.raises(InvalidRequestError, match="at least one frame"):
        media.encode_video([], fps=8)
    with pytest.raises(InvalidRequestError, match="same size"):
        media.encode_video(_frames(1) + _frames(1, 32, 32), fps=8, format="webp")
    for fps in (0, 121, True, 8.5):
        with pytest.raises(InvalidRequestError, match=r"^fps="):
            media.encode_video(_frames(1), fps=fps)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError, match="must be one of mp4, webp, gif"):
        media.encode_video(_frames(1), fps=8, format="avi")
    with pytest.raises(InvalidRequestError, match="HxW, HxWx3 or HxWx4"):
        media.encode_video([np.zeros((4, 4, 2), np.uint8)], fps=8)


def test_too_many_frames_are_refused_before_encoding() -> None:
    frames = [np.zeros((2, 2, 3), np.uint8)] * 1026
    with pytest.raises(InvalidRequestError, match="at most 1025 frames"):
        media.encode_video(frames, fps=8, format="gif")


def test_video_info_refuses_non_video() -> None:
    with pytest.raises(InvalidImageError, match="not an MP4, animated WebP or GIF"):
        media.video_info(_save(_noise(8, 8), "PNG"))
    with pytest.raises(InvalidImageError, match="unreadable MP4"):
        media.video_info(b"\x00\x00\x00\x18ftypisom" + b"\x00" * 64)


# --- import hygiene and the missing extra -----------------------------------------------------


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_importing_media_pulls_in_no_torch_or_imageio() -> None:
    result = _run(
        "import sys, abstractvision.media\n"
        "bad = [m for m in ('torch', 'imageio', 'imageio_ffmpeg') if m in sys.modules]\n"
        "print(bad)"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_missing_imageio_ffmpeg_names_the_extra() -> None:
    result = _run(
        "import sys; sys.modules['imageio_ffmpeg'] = None\n"
        "import numpy as np\n"
        "from abstractvision import media\n"
        "from abstractvision.errors import OptionalDependencyMissingError\n"
        "frame = np.zeros((8, 8, 3), np.uint8)\n"
        "assert media.encode_video([frame], fps=4, format='gif')[1] == 'image/gif'\n"
        "try:\n"
        "    media.encode_video([frame], fps=4)\n"
        "except OptionalDependencyMissingError as exc:\n"
        "    print(exc)\n"
    )
    assert result.returncode == 0, result.stderr
    assert "imageio-ffmpeg" in result.stdout and "abstractvision[video]" in result.stdout


# --- properties -------------------------------------------------------------------------------


@FAST
@given(st.binary(max_size=512))
def test_random_bytes_only_ever_raise_invalid_image_error(data: bytes) -> None:
    with contextlib.suppress(InvalidImageError):
        media.inspect_image(data)


_VALID = {fmt: _save(_noise(24, 16, seed=5), fmt) for fmt in ("PNG", "JPEG", "WEBP", "GIF")}


@FAST
@given(
    st.sampled_from(sorted(_VALID)),
    st.integers(min_value=0, max_value=10_000),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4),
)
def test_damaged_images_only_ever_raise_invalid_image_error(
    fmt: str, cut: int, flips: list[tuple[int, int]]
) -> None:
    data = bytearray(_VALID[fmt][: max(1, len(_VALID[fmt]) - cut % len(_VALID[fmt]))])
    for where, value in flips:
        data[where % len(data)] = value
    try:
        info = media.inspect_image(bytes(data))
    except InvalidImageError:
        return
    image = media.decode_image(bytes(data))  # anything that passes inspection must decode
    assert image.size == (info.width, info.height)


@FAST
@given(
    st.integers(1, 40),
    st.integers(1, 40),
    st.sampled_from(["RGB", "RGBA", "L"]),
    st.integers(0, 2**32 - 1),
)
def test_valid_images_round_trip_losslessly(w: int, h: int, mode: str, seed: int) -> None:
    image = _noise(w, h, mode, seed=seed)
    data, mime = media.encode_image(image, "png")
    info = media.inspect_image(data)
    assert (info.width, info.height, info.mode, mime) == (w, h, mode, "image/png")
    back = media.decode_image(data, mode=mode)
    assert np.array_equal(np.asarray(back), np.asarray(image))
    webp = media.decode_image(media.encode_image(image, "webp")[0], mode="RGB")
    assert webp.size == (w, h)
