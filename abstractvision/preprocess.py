"""Control-image preprocessors you run yourself, before passing ``control_image``.

Nothing runs behind your back: a control model is given exactly the control image you send.
``canny`` turns a photo into the white-on-black edge map Canny ControlNets and FLUX.1 Canny
expect, with Pillow and numpy only (no OpenCV). A depth map needs a depth model (Depth Anything,
MiDaS...): run the one you choose and pass its output as ``control_image`` with
``control_type="depth"``.

    from abstractvision.preprocess import canny
    edges = canny(open("photo.jpg", "rb").read())
    vm.generate_image("a watercolor house", control_image=edges, control_type="canny")
"""

from __future__ import annotations

from typing import Any

from .errors import InvalidRequestError

__all__ = ["canny"]


def canny(image: bytes, low: int = 100, high: int = 200, *, blur: float = 1.4) -> bytes:
    """Canny edges of an image as a PNG (white edges on black, same size as the input).

    ``low``/``high`` are the hysteresis thresholds on the 0-255 gradient scale (OpenCV's usual
    100/200); ``blur`` is the Gaussian sigma applied first.
    """
    import numpy as np
    from PIL import Image

    from . import media

    if not (0 <= low <= high <= 1020):
        raise InvalidRequestError("low/high", (low, high), "need 0 <= low <= high <= 1020")
    if not 0 <= blur <= 10:
        raise InvalidRequestError("blur", blur, "must be in 0..10")
    grey = np.asarray(media.decode_image(image, field="image").convert("L"), dtype=np.float32)
    if blur > 0:
        grey = _gaussian(grey, blur)
    gx = _filter(grey, np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float32))
    gy = _filter(grey, np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], dtype=np.float32))
    magnitude = np.hypot(gx, gy)
    thin = _non_maximum(magnitude, np.arctan2(gy, gx))
    edges = _hysteresis(thin >= high, thin >= low)
    data, _ = media.encode_image(
        Image.fromarray(edges.astype(np.uint8) * 255).convert("RGB"), "png"
    )
    return data


def _filter(image: Any, kernel: Any) -> Any:
    """3x3 correlation with edge padding."""
    import numpy as np

    padded = np.pad(image, 1, mode="edge")
    h, w = image.shape
    out = np.zeros_like(image)
    for dy in range(3):
        for dx in range(3):
            out += kernel[dy, dx] * padded[dy : dy + h, dx : dx + w]
    return out


def _gaussian(image: Any, sigma: float) -> Any:
    import numpy as np

    radius = max(1, round(3 * sigma))
    xs = np.arange(-radius, radius + 1, dtype=np.float32)
    kernel = np.exp(-(xs**2) / (2 * sigma * sigma))
    kernel /= kernel.sum()
    padded = np.pad(image, radius, mode="edge")
    h, w = image.shape
    rows = sum(k * padded[:, i : i + w] for i, k in enumerate(kernel))
    return sum(k * rows[i : i + h, :] for i, k in enumerate(kernel))


def _non_maximum(magnitude: Any, angle: Any) -> Any:
    """Keep a pixel only where it is the largest along its gradient direction."""
    import numpy as np

    sector = (np.round(angle / (np.pi / 4)) % 4).astype(np.int8)  # 0: -, 1: /, 2: |, 3: \\
    padded = np.pad(magnitude, 1)
    h, w = magnitude.shape
    out = np.zeros_like(magnitude)
    for value, (dy, dx) in enumerate(((0, 1), (1, 1), (1, 0), (1, -1))):
        ahead = padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
        behind = padded[1 - dy : 1 - dy + h, 1 - dx : 1 - dx + w]
        keep = (sector == value) & (magnitude >= ahead) & (magnitude >= behind)
        out[keep] = magnitude[keep]
    return out


def _hysteresis(strong: Any, weak: Any) -> Any:
    """Weak edges that touch a strong edge (8-connected, transitively) become edges."""
    import numpy as np

    edges = strong.copy()
    for _ in range(max(edges.shape)):  # each round grows every edge by one pixel
        padded = np.pad(edges, 1)
        h, w = edges.shape
        grown = np.zeros_like(edges)
        for dy in range(3):
            for dx in range(3):
                grown |= padded[dy : dy + h, dx : dx + w]
        grown &= weak
        if np.array_equal(grown, edges):
            break
        edges = grown
    return edges
