"""Images and videos in and out: safe decoding of untrusted inputs, deterministic encoding.

Inputs are untrusted (agents pass bytes from anywhere), so ``inspect_image`` sniffs the format
by magic bytes (PNG, JPEG, WebP, GIF only) and reads the pixel count and the number of frames
from the headers themselves before Pillow touches the data: a decompression bomb or a GIF of a
million frames is refused without allocating anything. Then a full decode of the first frame
proves the data is complete; at most ``LIMITS.max_parallel_decodes`` such decodes run at once.
No process-wide Pillow setting is changed.

Mask convention everywhere: mode "L", white (255) = change, black (0) = keep; grey = partial.
Video needs the ``video`` extra (imageio-ffmpeg) for MP4 only; WebP and GIF use Pillow.
"""

from __future__ import annotations

import io
import itertools
import os
import struct
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageOps

from .errors import (
    BackendError,
    InvalidImageError,
    InvalidRequestError,
    OptionalDependencyMissingError,
)
from .types import LIMITS

__all__ = [
    "ImageInfo",
    "VideoInfo",
    "decode_image",
    "decode_mask",
    "encode_image",
    "encode_video",
    "inspect_image",
    "mask_to_alpha_png",
    "poster_frame",
    "thumbnail",
    "video_info",
]

IMAGE_MIME = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp", "gif": "image/gif"}
VIDEO_MIME = {"mp4": "video/mp4", "webp": "image/webp", "gif": "image/gif"}
_PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP", "gif": "GIF"}
_REFUSED_MAGIC = (  # named so the error says what was sent, not just "unknown"
    (b"<svg", "SVG"),
    (b"<?xml", "SVG/XML"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"%PDF", "PDF"),
)
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_WHITE = (255, 255, 255, 255)


@dataclass(frozen=True)
class ImageInfo:
    """What ``inspect_image`` found. Width/height are as displayed (EXIF orientation applied)."""

    format: str  # png | jpeg | webp | gif
    width: int
    height: int
    mode: str
    has_alpha: bool
    n_frames: int

    @property
    def mime_type(self) -> str:
        return IMAGE_MIME[self.format]


@dataclass(frozen=True)
class VideoInfo:
    format: str  # mp4 | webp | gif
    width: int
    height: int
    n_frames: int
    fps: float


# --- decoding untrusted images ---------------------------------------------------------------


def _sniff(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    return None


def _refused_name(data: bytes) -> str:
    head = data[:256].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if b"<svg" in head:
        return "SVG"
    for magic, name in _REFUSED_MAGIC:
        if head.startswith(magic.lower()) or data.startswith(magic):
            return name
    if data[4:8] == b"ftyp":
        return "ISO media (HEIC/AVIF/MP4)"
    return "unknown"


def _header_size(fmt: str, data: bytes) -> tuple[int, int] | None:
    """Width and height from the header alone: no decoder runs, nothing is allocated."""
    if fmt == "png":
        if data[12:16] != b"IHDR" or len(data) < 24:
            return None
        return struct.unpack(">II", data[16:24])
    if fmt == "gif":
        return struct.unpack("<HH", data[6:10]) if len(data) >= 10 else None
    if fmt == "webp":
        chunk = data[12:16]
        if chunk == b"VP8X" and len(data) >= 30:
            return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(
                data[27:30], "little"
            )
        if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
            bits = int.from_bytes(data[21:25], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
            w, h = struct.unpack("<HH", data[26:30])
            return w & 0x3FFF, h & 0x3FFF
        return None
    i = 2  # JPEG: walk the marker segments up to the first frame header
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF or marker == 0x01 or 0xD0 <= marker <= 0xD7:
            i += 1 if marker == 0xFF else 2
            continue
        if marker in (0xD9, 0xDA):
            return None
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker in _JPEG_SOF and i + 9 <= len(data):
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return w, h
        if length < 2:
            return None
        i += 2 + length
    return None


def _gif_frames(data: bytes, stop_after: int) -> int:
    """Frames of a GIF, counted by walking its blocks (no pixel is decoded); stops counting
    once past ``stop_after``. A block structure that breaks off ends the count there."""
    flags = data[10] if len(data) > 10 else 0
    i = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    frames = 0
    n = len(data)
    while i < n and frames <= stop_after:
        kind = data[i]
        if kind == 0x3B:  # trailer
            break
        if kind == 0x21:  # extension: label, then sub-blocks
            i += 2
        elif kind == 0x2C:  # image descriptor, optional local colour table, LZW code size
            if i + 10 > n:
                break
            local = data[i + 9]
            i += 10 + (3 << ((local & 7) + 1) if local & 0x80 else 0) + 1
            frames += 1
        else:
            break
        while i < n and data[i]:  # sub-blocks up to the zero-length terminator
            i += data[i] + 1
        i += 1
    return max(frames, 1)


def _png_frames(data: bytes) -> int:
    """Frames an APNG declares in its ``acTL`` chunk (1 for a still PNG)."""
    i = 8
    while i + 8 <= len(data):
        (length,) = struct.unpack(">I", data[i : i + 4])
        kind = data[i + 4 : i + 8]
        if kind == b"acTL" and i + 12 <= len(data):
            return max(1, struct.unpack(">I", data[i + 8 : i + 12])[0])
        if kind in (b"IDAT", b"IEND"):
            break
        i += 12 + length
    return 1


def _webp_frames(data: bytes, stop_after: int) -> int:
    """``ANMF`` chunks of an animated WebP, counted from the RIFF chunk list."""
    i, frames = 12, 0
    while i + 8 <= len(data) and frames <= stop_after:
        kind = data[i : i + 4]
        (length,) = struct.unpack("<I", data[i + 4 : i + 8])
        frames += kind == b"ANMF"
        i += 8 + length + (length & 1)
    return max(frames, 1)


def _header_frames(fmt: str, data: bytes, stop_after: int) -> int:
    """How many frames ``data`` holds, read from its headers before any decoder runs."""
    if fmt == "gif":
        return _gif_frames(data, stop_after)
    if fmt == "png":
        return _png_frames(data)
    if fmt == "webp":
        return _webp_frames(data, stop_after)
    return 1


def _check_frames(field: str, frames: int, w: int, h: int) -> None:
    if frames > LIMITS.max_image_frames:
        raise InvalidImageError(
            field,
            f"has over {LIMITS.max_image_frames} frames; the limit is {LIMITS.max_image_frames}",
        )
    if frames * w * h > LIMITS.max_image_frame_pixels:
        raise InvalidImageError(
            field,
            f"{frames} frames x {w}x{h} = {frames * w * h} pixels exceeds the limit of "
            f"{LIMITS.max_image_frame_pixels}",
        )


# Full decodes of untrusted images run at most this many at once, process-wide: each may take
# up to max_image_pixels x 4 bytes and a second of CPU, so a burst of calls queues here instead
# of multiplying memory.
_DECODES = threading.BoundedSemaphore(LIMITS.max_parallel_decodes)


def _check_pixels(field: str, w: int, h: int, max_pixels: int) -> None:
    if w <= 0 or h <= 0:
        raise InvalidImageError(field, f"header declares an empty image ({w}x{h})")
    if w * h > max_pixels:
        raise InvalidImageError(
            field, f"{w}x{h} = {w * h} pixels exceeds the limit of {max_pixels}"
        )


def _open(data: Any, field: str, max_bytes: int, max_pixels: int) -> tuple[Image.Image, str]:
    """Sniff, check the header, open with Pillow limited to the allowed formats, fully decode."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidImageError(field, f"expected image bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise InvalidImageError(field, "is empty")
    if len(data) > max_bytes:
        raise InvalidImageError(field, f"{len(data)} bytes exceeds the limit of {max_bytes}")
    fmt = _sniff(data)
    if fmt is None:
        raise InvalidImageError(
            field, f"unsupported format ({_refused_name(data)}); allowed: PNG, JPEG, WebP, GIF"
        )
    size = _header_size(fmt, data)
    if size is None:
        raise InvalidImageError(field, f"corrupt or truncated {fmt.upper()} header")
    _check_pixels(field, *size, max_pixels)
    frames = _header_frames(fmt, data, LIMITS.max_image_frames)
    _check_frames(field, frames, *size)
    try:
        image = Image.open(io.BytesIO(data), formats=[_PIL_FORMATS[fmt]])
        _check_pixels(field, *image.size, max_pixels)  # GIF frames may enlarge the canvas
        _check_frames(field, frames, *image.size)
        image.header_frames = frames  # type: ignore[attr-defined]
        with _DECODES:
            image.load()
    except InvalidImageError:
        raise
    except Exception as exc:  # any decoder failure on untrusted bytes means "not a valid image"
        why = "unreadable" if isinstance(exc, Image.UnidentifiedImageError) else exc
        raise InvalidImageError(
            field, f"corrupt or truncated {fmt.upper()} data ({why or type(exc).__name__})"
        ) from None
    return image, fmt


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def _oriented(image: Image.Image, field: str) -> Image.Image:
    try:
        return ImageOps.exif_transpose(image)
    except Exception as exc:
        raise InvalidImageError(field, f"unreadable EXIF orientation ({exc})") from None


def inspect_image(
    data: bytes,
    *,
    field: str = "image",
    max_bytes: int = LIMITS.max_image_bytes,
    max_pixels: int = LIMITS.max_image_pixels,
) -> ImageInfo:
    """Prove ``data`` is a safe, complete image of an allowed format; raise InvalidImageError."""
    image, fmt = _open(data, field, max_bytes, max_pixels)
    width, height = image.size
    try:
        if image.getexif().get(0x0112) in (5, 6, 7, 8):  # rotated by 90 degrees: swap sides
            width, height = height, width
    except Exception:
        pass  # a broken EXIF block is not a broken image; decode_image reports it if it matters
    # The frame count comes from the headers: Pillow's n_frames walks a GIF frame by frame.
    frames = getattr(image, "header_frames", 1)
    return ImageInfo(fmt, width, height, image.mode, _has_alpha(image), frames)


def _to_8bit(image: Image.Image) -> Image.Image:
    if image.mode.startswith("I"):  # 16/32-bit grey: scale rather than clip to white
        return image.point(lambda v: v / 256).convert("L")
    return image


def _flatten(image: Image.Image) -> Image.Image:
    """Alpha composited on white: transparent regions must not turn black."""
    if not _has_alpha(image):
        return image
    background = Image.new("RGBA", image.size, _WHITE)
    background.alpha_composite(image.convert("RGBA"))
    return background.convert("RGB")


def decode_image(data: bytes, *, field: str = "image", mode: str = "RGB") -> Image.Image:
    """Validated, upright image in ``mode`` (first frame of animations)."""
    image, _ = _open(data, field, LIMITS.max_image_bytes, LIMITS.max_image_pixels)
    image = _to_8bit(_oriented(image, field))
    if mode in ("RGB", "L"):
        image = _flatten(image)
    return image.convert(mode) if image.mode != mode else image  # exif_transpose copied it


def decode_mask(data: bytes, *, size: tuple[int, int], field: str = "mask") -> Image.Image:
    """Mask as mode "L", white = change. Soft masks keep their grey levels (partial change).

    A mask with a meaningful alpha channel (not fully opaque) follows the OpenAI convention:
    transparent = change, so alpha 0 becomes 255. Otherwise its luminance is used as is.
    """
    image, _ = _open(data, field, LIMITS.max_image_bytes, LIMITS.max_image_pixels)
    image = _to_8bit(_oriented(image, field))
    if image.size != tuple(size):
        w, h = image.size
        raise InvalidImageError(
            field, f"mask is {w}x{h} but the image is {size[0]}x{size[1]}; sizes must match"
        )
    if _has_alpha(image):
        alpha = image.convert("RGBA").getchannel("A")
        if alpha.getextrema() != (255, 255):
            return ImageOps.invert(alpha)
        image = image.convert("RGB")
    return image.convert("L")


def mask_to_alpha_png(mask: Image.Image) -> bytes:
    """Our mask as an RGBA PNG whose transparent pixels mark the edit (OpenAI image edits)."""
    rgba = Image.new("RGBA", mask.size, (0, 0, 0, 255))
    rgba.putalpha(ImageOps.invert(mask.convert("L")))
    return encode_image(rgba, "png")[0]


# --- encoding --------------------------------------------------------------------------------


def _to_pil(frame: Any) -> Image.Image:
    """A PIL image, or an HxW / HxWxC array (uint8, or float in [0, 1] as Diffusers returns)."""
    if isinstance(frame, Image.Image):
        return frame
    import numpy as np

    array = np.asarray(frame)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise InvalidRequestError("frames", f"array{array.shape}", "must be HxW, HxWx3 or HxWx4")
    if array.dtype.kind == "f":
        array = np.round(np.clip(np.nan_to_num(array), 0.0, 1.0) * 255.0)
    return Image.fromarray(np.ascontiguousarray(array.astype(np.uint8)))


def _format(value: str, allowed: dict[str, str], field: str = "format") -> str:
    fmt = str(value).lower().replace("jpg", "jpeg")
    if fmt not in allowed:
        raise InvalidRequestError(field, value, f"must be one of {', '.join(allowed)}")
    return fmt


def encode_image(
    image: Image.Image | Any, format: str = "png", *, quality: int | None = None
) -> tuple[bytes, str]:
    """Bytes and MIME type. Metadata is dropped, so the bytes depend on the pixels only."""
    fmt = _format(format, {k: IMAGE_MIME[k] for k in ("png", "webp", "jpeg")})
    if quality is not None and (isinstance(quality, bool) or not 1 <= quality <= 100):
        raise InvalidRequestError("quality", quality, "must be an integer in 1..100")
    image = _to_8bit(_to_pil(image))
    if fmt == "jpeg" or image.mode not in ("1", "L", "LA", "P", "RGB", "RGBA"):
        image = _flatten(image).convert("RGB") if image.mode != "L" else image
    clean = image.copy()
    clean.info = {}
    options: dict[str, Any] = {"png": {}, "webp": {"quality": quality or 90, "method": 4}}.get(
        fmt, {"quality": quality or 92, "optimize": True}
    )
    buffer = io.BytesIO()
    clean.save(buffer, format=_PIL_FORMATS[fmt], **options)
    return buffer.getvalue(), IMAGE_MIME[fmt]


def thumbnail(
    image_or_bytes: Image.Image | bytes,
    *,
    max_side: int = 256,
    max_bytes: int = 48_000,
    format: str = "webp",
) -> tuple[bytes, str]:
    """A preview guaranteed to fit ``max_bytes``: lower the quality first, then the size."""
    fmt = _format(format, {k: IMAGE_MIME[k] for k in ("png", "webp", "jpeg")})
    if max_side < 1 or max_bytes < 1:
        raise InvalidRequestError("max_side/max_bytes", (max_side, max_bytes), "must be >= 1")
    if isinstance(image_or_bytes, (bytes, bytearray, memoryview)):
        source = decode_image(bytes(image_or_bytes), mode="RGBA")
    else:
        source = _to_pil(image_or_bytes)
    side = min(max_side, max(source.size))
    while True:
        preview = source.copy()
        preview.thumbnail((side, side), Image.Resampling.LANCZOS)
        for quality in (80, 60, 40, 25) if fmt != "png" else (None,):
            data, mime = encode_image(preview, fmt, quality=quality)
            if len(data) <= max_bytes:
                return data, mime
        if side <= 16:
            raise InvalidRequestError("max_bytes", max_bytes, "too small for any preview")
        side = max(16, side * 2 // 3)


def _rgb_frames(frames: Iterable[Any]) -> Iterator[Image.Image]:
    """Frames converted one at a time (long videos are not copied twice), checked as they come."""
    size: tuple[int, int] | None = None
    for n, frame in enumerate(frames, 1):
        if n > LIMITS.max_frames:
            raise InvalidRequestError("frames", n, f"must be at most {LIMITS.max_frames} frames")
        image = _flatten(_to_8bit(_to_pil(frame))).convert("RGB")
        if size is not None and image.size != size:
            w, h = image.size
            raise InvalidRequestError(
                f"frames[{n - 1}]",
                f"{w}x{h}",
                f"all frames must have the same size ({size[0]}x{size[1]})",
            )
        size = image.size
        yield image
    if size is None:
        raise InvalidRequestError("frames", 0, "at least one frame is required")


def _imageio_ffmpeg(feature: str) -> Any:
    try:
        import imageio_ffmpeg
    except ImportError:
        raise OptionalDependencyMissingError("imageio-ffmpeg", "video", feature=feature) from None
    return imageio_ffmpeg


def encode_video(frames: Iterable[Any], *, fps: int, format: str = "mp4") -> tuple[bytes, str]:
    """MP4 (H.264, yuv420p; odd sides padded by one edge pixel), or animated WebP/GIF (loop)."""
    fmt = _format(format, VIDEO_MIME)
    if isinstance(fps, bool) or not isinstance(fps, int) or not 1 <= fps <= LIMITS.max_fps:
        raise InvalidRequestError("fps", fps, f"must be an integer in 1..{LIMITS.max_fps}")
    if fmt != "mp4":  # GIF stores centiseconds and merges identical consecutive frames
        images = list(_rgb_frames(frames))
        buffer = io.BytesIO()
        options = {"quality": 90, "method": 4} if fmt == "webp" else {}
        images[0].save(
            buffer,
            format=_PIL_FORMATS[fmt],
            save_all=True,
            append_images=images[1:],
            duration=max(1, round(1000 / fps)),
            loop=0,
            **options,
        )
        return buffer.getvalue(), VIDEO_MIME[fmt]
    ffmpeg = _imageio_ffmpeg("MP4 encoding")
    stream = _rgb_frames(frames)
    first = next(stream)
    width, height = first.size
    even = (width + width % 2, height + height % 2)
    with tempfile.TemporaryDirectory(prefix="abstractvision-") as tmp:
        path = os.path.join(tmp, "video.mp4")
        writer = ffmpeg.write_frames(
            path,
            even,
            fps=fps,
            codec="libx264",
            pix_fmt_out="yuv420p",
            quality=None,
            macro_block_size=1,  # no silent resize to multiples of 16
            ffmpeg_log_level="error",
            output_params=["-crf", "18", "-movflags", "+faststart"],
        )
        try:
            writer.send(None)
            for image in itertools.chain([first], stream):
                writer.send((_pad(image, even) if image.size != even else image).tobytes())
        except InvalidRequestError:
            raise
        except Exception as exc:
            raise BackendError(f"MP4 encoding failed: {exc}") from exc
        finally:
            writer.close()  # stops ffmpeg before the temporary directory goes
        with open(path, "rb") as fh:
            return fh.read(), VIDEO_MIME["mp4"]


def _pad(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Grow to ``size`` by repeating the last row/column (no black seam at the edge)."""
    out = Image.new("RGB", size)
    out.paste(image, (0, 0))
    w, h = image.size
    if size[0] > w:
        out.paste(image.crop((w - 1, 0, w, h)), (w, 0))
    if size[1] > h:
        out.paste(out.crop((0, h - 1, size[0], h)), (0, h))
    return out


# --- reading videos back ---------------------------------------------------------------------


def _video_format(data: bytes) -> str:
    if data[4:8] == b"ftyp":
        return "mp4"
    fmt = _sniff(data)
    if fmt in ("webp", "gif"):
        return fmt
    raise InvalidImageError("video", "not an MP4, animated WebP or GIF")


def _read_mp4(data: bytes, *, count: bool) -> tuple[dict[str, Any], bytes | None, int]:
    ffmpeg = _imageio_ffmpeg("MP4 decoding")
    with tempfile.TemporaryDirectory(prefix="abstractvision-") as tmp:
        path = os.path.join(tmp, "video.mp4")
        with open(path, "wb") as fh:
            fh.write(data)
        try:
            reader = ffmpeg.read_frames(path)
            meta = next(reader)
            first = next(reader, None)
            reader.close()
            n_frames = ffmpeg.count_frames_and_secs(path)[0] if count else 0
        except Exception as exc:
            raise InvalidImageError("video", f"unreadable MP4 ({exc})") from None
    return meta, first, n_frames


def video_info(data: bytes) -> VideoInfo:
    """Format, size, frame count and frame rate of an encoded video (to check outputs).

    Meant for our own outputs: the byte size is not bounded, the frame size still is.
    """
    fmt = _video_format(data)
    if fmt == "mp4":
        meta, _, n_frames = _read_mp4(data, count=True)
        width, height = meta["size"]
        return VideoInfo("mp4", width, height, n_frames, float(meta["fps"]))
    image, _ = _open(data, "video", max(len(data), 1), LIMITS.max_image_pixels)
    duration = image.info.get("duration") or 0
    fps = 1000.0 / duration if duration else 0.0
    return VideoInfo(fmt, image.width, image.height, getattr(image, "n_frames", 1), fps)


def poster_frame(data: bytes) -> Image.Image:
    """The first frame as RGB, for previews of a video."""
    fmt = _video_format(data)
    if fmt != "mp4":
        image, _ = _open(data, "video", max(len(data), 1), LIMITS.max_image_pixels)
        return _flatten(_to_8bit(image)).convert("RGB")
    meta, first, _ = _read_mp4(data, count=False)
    if first is None:
        raise InvalidImageError("video", "MP4 has no frames")
    return Image.frombytes("RGB", tuple(meta["size"]), first)
