"""multi_view_image on any backend that can edit: one edit of a reference image per camera view.

Routes: *dedicated* when the registry marks the edit model as multi-view (its camera prompt and
LoRA come from the registry, the backend sees an ordinary edit with ``extra["loras"]``);
*generic* otherwise (the view becomes an instruction appended to the subject prompt). Every view
uses the same seed and reference, so the views stay consistent. Without a reference image one
is generated first (text->image). ``generate_views`` returns, in order: the generated reference
(if any), one asset per view, then a labelled contact sheet; metadata ``role`` says which.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from PIL import Image, ImageDraw, ImageFont

from . import media
from .control import GenerationControl
from .errors import (
    AbstractVisionError,
    BackendError,
    CapabilityNotSupportedError,
    GenerationCancelledError,
    InvalidRequestError,
)
from .model_capabilities import MultiViewSpec, VisionModelCapabilitiesRegistry
from .types import (
    ANGLE_PRESETS,
    LIMITS,
    GeneratedAsset,
    ImageEditRequest,
    ImageGenerationRequest,
    MultiAngleRequest,
    VisionBackendCapabilities,
)

if TYPE_CHECKING:
    from .backends.base_backend import VisionBackend

__all__ = ["Plan", "View", "camera_prompt", "contact_sheet", "generate_views", "instruction"]
__all__ += ["plan", "render", "resolve_view", "sheet_layout"]

T2I, I2I = "text_to_image", "image_to_image"
PAD, LABEL_H, COLUMNS = 4, 14, 4
_AXES = ("azimuth", "elevation", "zoom")
_SIDES = {
    0: "front view",
    45: "front-right three-quarter view",
    90: "right side view",
    135: "back-right three-quarter view",
    180: "back view",
    225: "back-left three-quarter view",
    270: "left side view",
    315: "front-left three-quarter view",
}
_HEIGHTS = (  # (lowest elevation, words), highest first
    (75, "top-down view from directly above"),
    (45, "high-angle shot from above"),
    (10, "elevated shot"),
    (-10, "eye-level shot"),
    (-75, "low-angle shot from below"),
    (-90, "view from directly below"),
)


@dataclass(frozen=True)
class View:
    """One requested view as an explicit camera (``preset`` is its name when it had one)."""

    azimuth: float
    elevation: float
    zoom: float
    preset: str | None = None

    @property
    def label(self) -> str:
        if self.preset:
            return self.preset
        text = f"az{self.azimuth:g} el{self.elevation:g}"
        return text if self.zoom == 1 else f"{text} x{self.zoom:g}"

    def axis(self, name: str) -> float:
        return float(getattr(self, name))


def resolve_view(angle: str | Mapping[str, float]) -> View:
    """A preset name or a {azimuth, elevation, zoom} move -> View (through ANGLE_PRESETS)."""
    if isinstance(angle, str):
        return View(*ANGLE_PRESETS[angle], preset=angle)
    return View(angle.get("azimuth", 0.0), angle.get("elevation", 0.0), angle.get("zoom", 1.0))


def _gap(axis: str, a: float, b: float) -> float:
    """Distance on one axis, normalised so a half turn, a quarter tilt and 4x zoom weigh 1."""
    if axis == "azimuth":
        return abs((a - b + 180) % 360 - 180) / 180
    if axis == "elevation":
        return abs(a - b) / 90
    return abs(math.log2(a / b)) / 2


def instruction(prompt: str, view: View) -> str:
    """The generic route's edit prompt: the subject, then the camera in words."""
    side = _SIDES[(45 * round(view.azimuth / 45)) % 360]
    height = next(w for limit, w in _HEIGHTS if view.elevation >= limit)
    zoom = "close-up" if view.zoom > 1.4 else "wide shot" if view.zoom < 0.7 else "medium shot"
    return f"{prompt}. Camera: {side}, {height}, {zoom}. Same subject, same colours and details."


def camera_prompt(spec: MultiViewSpec, view: View) -> str:
    """The registry's prompt for a view; a move it does not name is composed axis by axis.

    Each template placeholder (e.g. ``{azimuth}``) controls the axes on which all registry
    angles sharing one of its values agree; the value nearest the view on those axes wins.
    """
    if view.preset in spec.angles:
        return spec.prompt_for(view.preset)
    known = {n: resolve_view(n) for n in spec.angles if n in ANGLE_PRESETS}
    if not known:
        raise CapabilityNotSupportedError("the registry's multi_view angles have no known camera")
    best = min(known, key=lambda n: sum(_gap(a, known[n].axis(a), view.axis(a)) for a in _AXES))
    values = dict(spec.angles[best])
    for slot in set(re.findall(r"\{([a-z_]+)\}", spec.prompt_template)) - {"angle"}:
        groups: dict[str, list[View]] = {}
        for name, cam in known.items():
            groups.setdefault(spec.angles[name][slot], []).append(cam)
        axes = [a for a in _AXES if all(len({c.axis(a) for c in g}) == 1 for g in groups.values())]
        if axes:
            values[slot] = min(
                groups,
                key=lambda v: (sum(_gap(a, groups[v][0].axis(a), view.axis(a)) for a in axes), v),
            )
    return spec.prompt_template.format(angle=best, **values)


@dataclass(frozen=True)
class Plan:
    """Everything decided before the first step: route, seed, models, per-view prompts."""

    request: MultiAngleRequest
    views: tuple[View, ...]
    prompts: tuple[str, ...]
    route: Literal["dedicated", "generic"]
    seed: int
    reference_model: str | None
    extra: dict[str, Any]

    def sample_requests(self) -> list[ImageGenerationRequest | ImageEditRequest]:
        """What the backend will be asked (for gating before anything runs)."""
        edit = self.view_request(0, self.request.reference_image or b"\0")
        return [edit] if self.request.reference_image else [self.reference_request(), edit]

    def _shared(self) -> dict[str, Any]:
        names = ("negative_prompt", "width", "height", "steps", "guidance_scale", "output_format")
        return {n: getattr(self.request, n) for n in names} | {"seed": self.seed}

    def reference_request(self) -> ImageGenerationRequest:
        extra = dict(self.request.extra)
        return ImageGenerationRequest(
            prompt=self.request.prompt, model=self.reference_model, extra=extra, **self._shared()
        )

    def view_request(self, index: int, image: bytes) -> ImageEditRequest:
        r = self.request
        return ImageEditRequest(
            prompt=self.prompts[index],
            image=image,
            strength=r.strength,
            model=r.model,
            extra=self.extra,
            **self._shared(),
        )


def plan(
    request: MultiAngleRequest,
    caps: VisionBackendCapabilities,
    registry: VisionModelCapabilitiesRegistry | None = None,
    model_id: str | None = None,
) -> Plan:
    """Choose the route (registry), the seed and the reference model; refuse what cannot run."""
    if not caps.supports(I2I):
        can = ", ".join(map(str, caps.supported_tasks or ()))
        raise CapabilityNotSupportedError(
            f"multi_view_image needs a backend that can run image_to_image; this one runs: {can}"
        )
    if request.reference_image is None and not caps.supports(T2I):
        raise CapabilityNotSupportedError(
            "this backend cannot run text_to_image: give reference_image to render views of it"
        )
    if request.reference_image is not None and not (request.width and request.height):
        info = media.inspect_image(request.reference_image, field="reference_image")
        if info.width * info.height > LIMITS.max_pixels:
            raise InvalidRequestError(
                "reference_image",
                f"{info.width}x{info.height}",
                f"views would exceed {LIMITS.max_pixels} pixels: pass width and height",
            )
    registry = registry if registry is not None else VisionModelCapabilitiesRegistry()
    model = request.model or model_id or next(iter(caps.models.get(I2I, ())), None)
    spec = None
    if model is not None and model in registry:
        info_ = registry.get(model)
        spec = info_.multi_view
        if spec is None and I2I not in info_.tasks:
            raise CapabilityNotSupportedError(f"model {model!r} can neither edit nor render views")
    views = tuple(resolve_view(a) for a in request.angles)
    extra = dict(request.extra)
    if spec is not None:
        prompts = tuple(camera_prompt(spec, v) for v in views)
        if "loras" in caps.extra_keys:
            camera = {"source": spec.lora, "weight": spec.lora_scale}
            if spec.lora_weight_name:
                camera["weight_name"] = spec.lora_weight_name
            given = extra.get("loras", [])
            user = [x for x in given if not (isinstance(x, dict) and x.get("source") == spec.lora)]
            extra["loras"] = [camera, *user]
    else:
        prompts = tuple(instruction(request.prompt, v) for v in views)
    t2i_models = caps.models.get(T2I, ())
    reference_model = next(
        (m for m in (spec and spec.reference_model, request.model) if m and m in t2i_models), None
    )
    seed = request.seed
    if seed is None:
        seed = random.SystemRandom().randint(0, LIMITS.max_seed)
    route: Literal["dedicated", "generic"] = "dedicated" if spec is not None else "generic"
    return Plan(request, views, prompts, route, seed, reference_model, extra)


class _Progress:
    """Maps each job's (step, total) onto one overall count: ``jobs * unit`` steps in all."""

    def __init__(self, parent: GenerationControl, jobs: int, steps: int | None) -> None:
        self.parent, self.jobs, self.unit = parent, jobs, steps

    def run(self, index: int, label: str, call: Callable[[GenerationControl], Any]) -> Any:
        def forward(step: int, total: int | None) -> None:
            if self.unit is None:
                self.unit = total or 1
            done = min(self.unit, round(step * self.unit / total) if total else step)
            text = f"{label}: step {step}/{total}" if total else f"{label}: step {step}"
            self.parent.report(index * self.unit + done, self.jobs * self.unit, text)

        child = GenerationControl(lambda e: forward(e.step, e.total))
        unregister = self.parent.on_cancel(child.cancel)
        try:
            result = call(child)
        finally:
            unregister()
        self.parent.check()
        return result


def _located(exc: Exception, where: str, **info: Any) -> AbstractVisionError:
    """The same error type where it can be rebuilt, its message prefixed with the view."""
    text = f"{where} failed: {exc}"
    new: AbstractVisionError
    if isinstance(exc, InvalidRequestError):
        new = InvalidRequestError(exc.field, exc.value, exc.limit, message=text)
    elif isinstance(exc, AbstractVisionError):
        try:
            new = type(exc)(text)
        except TypeError:
            new = BackendError(text)
    else:
        new = BackendError(f"{where} failed ({type(exc).__name__}): {exc}")
    for key, value in info.items():
        setattr(new, key, value)
    return new


def _job(
    progress: _Progress, index: int, where: str, call: Any, meta: dict[str, Any], **info: Any
) -> GeneratedAsset:
    """One backend call under the overall progress; a failure names ``where`` it happened."""
    try:
        asset: GeneratedAsset = progress.run(index, where, call)
    except GenerationCancelledError:
        raise
    except Exception as exc:
        raise _located(exc, where, **info) from exc
    return dataclasses.replace(asset, metadata={**asset.metadata, **meta})


def render(
    backend: VisionBackend, plan: Plan, control: GenerationControl | None = None
) -> list[GeneratedAsset]:
    """Run the plan: [reference?] + views + contact sheet. See the module docstring."""
    control = control if control is not None else GenerationControl()
    request, n = plan.request, len(plan.views)
    common = {"route": plan.route, "seed": plan.seed}
    progress = _Progress(control, n + (request.reference_image is None), request.steps)
    out: list[GeneratedAsset] = []
    image = request.reference_image
    if image is None:
        ref_request = plan.reference_request()
        call = functools.partial(_call, backend.generate_image, ref_request)
        out.append(_job(progress, 0, "reference image", call, {"role": "reference", **common}))
        image = out[0].data
    views: list[GeneratedAsset] = []
    failed: dict[str, Any] | None = None
    for k, view in enumerate(plan.views):
        control.check()
        call = functools.partial(_call, backend.edit_image, plan.view_request(k, image))
        meta = {"role": "view", "view_index": k, "view_count": n, "angle": view.label}
        meta |= {"azimuth": view.azimuth, "elevation": view.elevation, "zoom": view.zoom}
        meta |= {"view_prompt": plan.prompts[k], **common}
        where = f"view {k + 1}/{n} ({view.label})"
        try:
            views.append(
                _job(progress, len(out) + k, where, call, meta, view_index=k, angle=view.label)
            )
        except GenerationCancelledError:
            raise
        except AbstractVisionError as exc:
            if not request.partial_results or not views:
                raise
            failed = {"view_index": k, "angle": view.label, "error": str(exc)}
            failed["error_type"] = type(exc.__cause__ or exc).__name__
            break
    control.check()
    labels = [v.metadata["angle"] for v in views]
    sheet = contact_sheet([media.decode_image(v.data, field="view") for v in views], labels)
    data, mime = media.encode_image(sheet, request.output_format or "png")
    sheet_meta = {"role": "contact_sheet", "angles": labels, "width": sheet.width, **common}
    sheet_meta |= {"height": sheet.height, "view_count": len(views), "views_requested": n}
    if failed is not None:
        sheet_meta["failed"] = failed
    return [*out, *views, GeneratedAsset("image", data, mime, sheet_meta)]


def _call(method: Any, request: Any, control: GenerationControl) -> GeneratedAsset:
    result: GeneratedAsset = method(request, control=control)
    return result


def generate_views(
    backend: VisionBackend,
    request: MultiAngleRequest,
    *,
    control: GenerationControl | None = None,
    registry: VisionModelCapabilitiesRegistry | None = None,
) -> list[GeneratedAsset]:
    """plan + render on ``backend`` (what ``VisionBackend.generate_angles`` does by default)."""
    return render(backend, plan(request, backend.get_capabilities(), registry), control)


def sheet_layout(
    count: int, tile: tuple[int, int]
) -> tuple[tuple[int, int], list[tuple[int, ...]]]:
    """(sheet size, one (left, top, right, bottom) image box per tile); labels sit below."""
    cols = max(1, min(count, COLUMNS))
    rows = max(1, math.ceil(count / cols))
    w, h = tile
    size = (cols * w + (cols + 1) * PAD, rows * (h + LABEL_H) + (rows + 1) * PAD)
    boxes = []
    for i in range(count):
        x, y = PAD + (i % cols) * (w + PAD), PAD + (i // cols) * (h + LABEL_H + PAD)
        boxes.append((x, y, x + w, y + h))
    return size, boxes


def contact_sheet(
    images: Sequence[Image.Image], labels: Sequence[str], *, max_tile: int = 256
) -> Image.Image:
    """All views on one image, up to COLUMNS per row, each labelled below (no upscaling)."""
    if not images:
        raise InvalidRequestError("views", 0, "a contact sheet needs at least one view")
    scale = min(1.0, max_tile / max(max(im.size) for im in images))
    tile = (
        max(1, round(max(im.width for im in images) * scale)),
        max(1, round(max(im.height for im in images) * scale)),
    )
    size, boxes = sheet_layout(len(images), tile)
    sheet = Image.new("RGB", size, (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for im, label, (x0, y0, _, y1) in zip(images, labels, boxes, strict=True):
        fitted = im.convert("RGB")
        if fitted.width > tile[0] or fitted.height > tile[1]:
            fitted = fitted.copy()
            fitted.thumbnail(tile, Image.Resampling.LANCZOS)
        sheet.paste(
            fitted, (x0 + (tile[0] - fitted.width) // 2, y0 + (tile[1] - fitted.height) // 2)
        )
        while len(label) > 1 and draw.textlength(label, font=font) > tile[0]:
            label = label[:-1]
        draw.text((x0, y1 + 1), label, fill=(235, 235, 235), font=font)
    return sheet
