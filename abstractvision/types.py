"""Request and result types: the one source of truth for task parameters.

Each request field is declared once, with its type, bounds and a one-line description, as an
``Annotated[..., Field(...)]`` alias below. Validation (at construction), MCP tool schemas,
tool-calling specs and CLI flags are all derived from these declarations, so a new parameter
is added here and nowhere else. Numeric limits come from the single ``LIMITS`` table.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    with_config,
)
from typing_extensions import NotRequired, TypedDict

from . import compat
from .errors import InvalidRequestError

__all__ = [
    "LIMITS",
    "GeneratedAsset",
    "ImageEditRequest",
    "ImageGenerationRequest",
    "ImageToVideoRequest",
    "ImageUpscaleRequest",
    "Limits",
    "MultiAngleRequest",
    "Task",
    "VideoGenerationRequest",
    "VisionBackendCapabilities",
    "VisionRequest",
    "request_field_schemas",
]


class Task(str, Enum):
    """The six tasks. The value is the name used everywhere (registry, MCP tools)."""

    TEXT_TO_IMAGE = "text_to_image"
    IMAGE_TO_IMAGE = "image_to_image"
    MULTI_VIEW_IMAGE = "multi_view_image"
    TEXT_TO_VIDEO = "text_to_video"
    IMAGE_TO_VIDEO = "image_to_video"
    IMAGE_UPSCALE = "image_upscale"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Limits:
    """Hard limits checked before any backend runs. Backends may only narrow them."""

    min_side: int = 64
    max_side: int = 4096
    side_multiple: int = 8
    max_pixels: int = 4096 * 2304  # a 4K UHD frame fits; 4096x4096 does not
    max_steps: int = 200
    max_guidance_scale: float = 50.0
    max_seed: int = 2**32 - 1
    max_frames: int = 1025
    max_fps: int = 120
    max_prompt_chars: int = 10_000
    max_image_bytes: int = 50 * 1024 * 1024
    max_image_pixels: int = 8192 * 8192
    max_image_frames: int = 1024  # frames of an animated input, counted from its headers
    max_image_frame_pixels: int = 4 * 8192 * 8192  # all frames of an input together
    max_parallel_decodes: int = 2  # full decodes of untrusted images at once, process-wide
    max_angles: int = 12
    max_extra_keys: int = 32
    max_upscale_scale: int = 8
    max_upscale_pixels: int = 8192 * 8192  # output pixels = input pixels x scale^2
    max_batch: int = 16  # images per call (count / seeds)
    max_reference_images: int = 9  # extra input images of a multi-reference edit
    max_control_strength: float = 2.0


LIMITS = Limits()

# --- field declarations (type + bounds + description), shared by all requests -----------------

Prompt = Annotated[
    str,
    Field(min_length=1, max_length=LIMITS.max_prompt_chars, description="What to generate."),
]
OptionalPrompt = Annotated[
    str | None,
    Field(max_length=LIMITS.max_prompt_chars, description="Optional text guidance."),
]
NegativePrompt = Annotated[
    str | None,
    Field(max_length=LIMITS.max_prompt_chars, description="What to keep out of the result."),
]
Width = Annotated[
    int | None,
    Field(
        ge=LIMITS.min_side,
        le=LIMITS.max_side,
        multiple_of=LIMITS.side_multiple,
        description="Width in px; default: the model's.",
    ),
]
Height = Annotated[
    int | None,
    Field(
        ge=LIMITS.min_side,
        le=LIMITS.max_side,
        multiple_of=LIMITS.side_multiple,
        description="Height in px; default: the model's.",
    ),
]
Seed = Annotated[
    int | None,
    Field(ge=0, le=LIMITS.max_seed, description="Same seed, same result."),
]
Steps = Annotated[
    int | None,
    Field(ge=1, le=LIMITS.max_steps, description="Denoising steps; default: the model's."),
]
GuidanceScale = Annotated[
    float | None,
    Field(
        ge=0.0,
        le=LIMITS.max_guidance_scale,
        allow_inf_nan=False,
        description="Prompt adherence (CFG).",
    ),
]
Strength = Annotated[
    float | None,
    Field(
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
        description="Change: 0 keeps the image, 1 replaces it.",
    ),
]


def _image_input(description: str | None = None) -> Any:
    """The bounds of every image given as input: 1 byte to LIMITS.max_image_bytes."""
    return Field(min_length=1, max_length=LIMITS.max_image_bytes, description=description)


ImageBytes = Annotated[bytes, _image_input("Input image (PNG, JPEG, WebP, GIF frame 1).")]
MaskBytes = Annotated[
    bytes | None, _image_input("Same size as image: white = change, black = keep.")
]
ReferenceImages = Annotated[
    tuple[Annotated[bytes, _image_input()], ...],
    Field(
        max_length=LIMITS.max_reference_images,
        description="More input images for multi-reference edits (Qwen-Image-Edit-2509+, FLUX.2).",
    ),
]
ReferenceImage = Annotated[
    bytes | None, _image_input("The subject; generated from the prompt if absent.")
]
# Named camera presets -> (azimuth, elevation, zoom): the ONE table that gives every name its
# explicit camera move. Azimuth orbits the camera around the subject (0 = front, +90 = right side,
# 180 = back, -90 = left); elevation raises it (+90 = straight down from above); zoom > 1 is closer.
ANGLE_PRESETS: Mapping[str, tuple[float, float, float]] = {
    "front": (0, 0, 1),
    "three_quarter": (45, 0, 1),
    "side": (90, 0, 1),
    "back": (180, 0, 1),
    "right": (90, 0, 1),
    "left": (-90, 0, 1),
    "front_right": (45, 0, 1),
    "front_left": (-45, 0, 1),
    "back_right": (135, 0, 1),
    "back_left": (-135, 0, 1),
    "elevated": (0, 30, 1),
    "high": (0, 60, 1),
    "top": (0, 90, 1),
    "low": (0, -30, 1),
    "bottom": (0, -90, 1),
    "close_up": (0, 0, 2),
    "wide": (0, 0, 0.5),
}


@with_config(ConfigDict(extra="forbid"))
class CameraMove(TypedDict):
    """An explicit camera position relative to the reference view; omitted keys keep it."""

    azimuth: NotRequired[
        Annotated[
            float,
            Field(
                ge=-180,
                le=180,
                allow_inf_nan=False,
                description="Degrees around the subject: 0 front, 90 right, 180 back, -90 left.",
            ),
        ]
    ]
    elevation: NotRequired[
        Annotated[
            float,
            Field(
                ge=-90,
                le=90,
                allow_inf_nan=False,
                description="Degrees up (90 = from directly above) or down (negative).",
            ),
        ]
    ]
    zoom: NotRequired[
        Annotated[
            float,
            Field(ge=0.25, le=4, allow_inf_nan=False, description="Closer (> 1) or wider (< 1)."),
        ]
    ]


def _inline_schema(tp: Any) -> dict[str, Any]:
    """The element's own schema with titles dropped, so the field schema needs no $ref."""
    schema = TypeAdapter(tp).json_schema()
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    return schema


def _angle_kind(value: Any) -> str:
    return "preset" if isinstance(value, str) else "camera"


Angle = Annotated[
    Annotated[Literal[tuple(ANGLE_PRESETS)], Tag("preset")]  # type: ignore[valid-type]
    | Annotated[CameraMove, Tag("camera"), WithJsonSchema(_inline_schema(CameraMove))],
    Discriminator(_angle_kind),
]
Angles = Annotated[
    tuple[Angle, ...],
    Field(
        min_length=1,
        max_length=LIMITS.max_angles,
        description=(
            "Views to render: preset names (front, three_quarter, side, back, left, right, top, "
            "...) or camera moves {azimuth, elevation, zoom}; one image per view."
        ),
    ),
]
PartialResults = Annotated[
    bool,
    Field(description="On a failed view, return the finished ones."),
]
NumFrames = Annotated[
    int | None,
    Field(ge=1, le=LIMITS.max_frames, description="Frames to generate; default: the model's."),
]
Fps = Annotated[
    int | None,
    Field(ge=1, le=LIMITS.max_fps, description="Frames per second of the encoded video."),
]
Model = Annotated[
    str | None,
    Field(
        min_length=1,
        max_length=256,
        description="Default: the backend's.",
    ),
]
ImageFormat = Annotated[
    Literal["png", "webp", "jpeg"] | None,
    Field(description="Encoding of the result; default png."),
]
VideoFormat = Annotated[
    Literal["mp4", "webp", "gif"] | None,
    Field(description="Encoding of the result; default mp4."),
]
UpscaleScale = Annotated[
    int | None,
    Field(
        ge=2,
        le=LIMITS.max_upscale_scale,
        description="Factor; default: the model's own (mostly 4).",
    ),
]
UpscalePrompt = Annotated[
    str | None,
    Field(
        max_length=LIMITS.max_prompt_chars,
        description="Guidance for text-guided upscalers (SD x4).",
    ),
]
Count = Annotated[
    int | None,
    Field(
        ge=1,
        le=LIMITS.max_batch,
        description="Images (default 1); image k: seed+k or seeds[k].",
    ),
]
Seeds = Annotated[
    tuple[Annotated[int, Field(ge=0, le=LIMITS.max_seed)], ...],
    Field(
        max_length=LIMITS.max_batch,
        description="One seed per image (sets count).",
    ),
]
ControlImage = Annotated[bytes | None, _image_input("Edge/depth/pose map for control models.")]
ControlType = Annotated[
    Literal["canny", "depth", "pose", "lineart", "scribble", "tile", "segmentation"] | None,
    Field(description="What control_image shows."),
]
ControlStrength = Annotated[
    float | None,
    Field(
        ge=0.0,
        le=LIMITS.max_control_strength,
        allow_inf_nan=False,
        description="Control weight (default 1).",
    ),
]
Extra = Annotated[
    dict[str, Any],
    Field(
        max_length=LIMITS.max_extra_keys,
        description="Engine options beyond the common ones; only the keys the backend lists.",
    ),
]


def _check_batch_and_control(request: Any) -> None:
    """count/seeds agree (seeds set count); control_type/strength need a control_image."""
    seeds = getattr(request, "seeds", ())
    if seeds:
        if request.count not in (None, len(seeds)):
            raise InvalidRequestError(
                "count", request.count, f"must equal the number of seeds ({len(seeds)})"
            )
        if request.seed is not None:
            raise InvalidRequestError("seed", request.seed, "give seed or seeds, not both")
        object.__setattr__(request, "count", len(seeds))
    if getattr(request, "control_image", None) is None:
        for name in ("control_type", "control_strength"):
            if getattr(request, name, None) is not None:
                raise InvalidRequestError(name, getattr(request, name), "needs a control_image")


@functools.cache
def _field_adapters(cls: type) -> dict[str, TypeAdapter[Any]]:
    hints = typing.get_type_hints(cls, include_extras=True)
    return {f.name: TypeAdapter(hints[f.name]) for f in dataclasses.fields(cls)}


def _limit_text(error: Mapping[str, Any]) -> str:
    """Turn one pydantic error into the limit it broke, in words an agent can act on."""
    ctx = error.get("ctx") or {}
    kind = error["type"]
    words = {
        "greater_than_equal": "must be >= {ge}",
        "less_than_equal": "must be <= {le}",
        "multiple_of": "must be a multiple of {multiple_of}",
        "string_too_short": "must have at least {min_length} character(s)",
        "string_too_long": "must have at most {max_length} characters",
        "bytes_too_short": "must not be empty",
        "bytes_too_long": "must be at most {max_length} bytes",
        "too_short": "must have at least {min_length} item(s)",
        "too_long": "must have at most {max_length} items",
        "literal_error": "must be one of {expected}",
    }
    template = words.get(kind)
    if template is not None:
        try:
            return template.format(**ctx)
        except KeyError:
            pass
    return str(error.get("msg", kind)).replace("Input should", "must")


def _allowed_range(adapter: TypeAdapter[Any]) -> str:
    """'64..4096, multiple of 8' for a numeric field; '' when the field has no numeric bounds."""
    schema = adapter.json_schema()
    for option in schema.get("anyOf", [schema]):
        if "minimum" in option or "maximum" in option:
            text = f"{option.get('minimum', '')}..{option.get('maximum', '')}"
            if "multipleOf" in option:
                text += f", multiple of {option['multipleOf']}"
            return text
    return ""


class VisionRequest:
    """Mixin of the request dataclasses: validates every field on construction.

    Validation is strict (no "5" for 5, no True for 1); a list is accepted for a tuple field.
    A wrong value raises ``InvalidRequestError`` naming the field, the value and the limit.
    """

    task: ClassVar[Task]
    image_fields: ClassVar[tuple[str, ...]] = ()
    image_list_fields: ClassVar[tuple[str, ...]] = ()  # fields holding a list of images

    def __post_init__(self) -> None:
        for name, adapter in _field_adapters(type(self)).items():
            value = getattr(self, name)
            if isinstance(value, list):
                value = tuple(value)
            try:
                value = adapter.validate_python(value, strict=True)
            except ValidationError as exc:
                first = exc.errors(include_url=False)[0]
                where = ".".join(str(p) for p in (name, *first["loc"]))
                limit = _limit_text(first)
                allowed = _allowed_range(adapter)
                if allowed and not first["loc"]:
                    limit = f"{limit} (allowed: {allowed})"
                raise InvalidRequestError(where, first.get("input", value), limit) from None
            object.__setattr__(self, name, value)
        width, height = getattr(self, "width", None), getattr(self, "height", None)
        if width and height and width * height > LIMITS.max_pixels:
            raise InvalidRequestError(
                "width*height", width * height, f"must be <= {LIMITS.max_pixels} pixels"
            )
        _check_batch_and_control(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VisionRequest:
        """Build from plain arguments; an unknown name is an InvalidRequestError, not a drop."""
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        for key in data:
            if key not in names:
                raise InvalidRequestError(
                    str(key), data[key], f"unknown parameter; known: {', '.join(sorted(names))}"
                )
        missing = [
            f.name
            for f in dataclasses.fields(cls)  # type: ignore[arg-type]
            if f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
            and f.name not in data
        ]
        if missing:
            raise InvalidRequestError(missing[0], None, "is required")
        return cls(**data)

    def to_params(self) -> dict[str, Any]:
        """The parameters that were set, without image bytes: for result metadata."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            images = (*type(self).image_fields, *type(self).image_list_fields)
            if f.name in images or value is None or value in ({}, ()):
                continue
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


@dataclass(frozen=True)
class ImageGenerationRequest(VisionRequest):
    """text_to_image."""

    task: ClassVar[Task] = Task.TEXT_TO_IMAGE
    image_fields: ClassVar[tuple[str, ...]] = ("control_image",)

    prompt: Prompt
    negative_prompt: NegativePrompt = None
    width: Width = None
    height: Height = None
    seed: Seed = None
    count: Count = None
    seeds: Seeds = ()
    control_image: ControlImage = None
    control_type: ControlType = None
    control_strength: ControlStrength = None
    steps: Steps = None
    guidance_scale: GuidanceScale = None
    model: Model = None
    output_format: ImageFormat = None
    extra: Extra = field(default_factory=dict)


@dataclass(frozen=True)
class ImageEditRequest(VisionRequest):
    """image_to_image, with an optional mask for inpainting."""

    task: ClassVar[Task] = Task.IMAGE_TO_IMAGE
    image_fields: ClassVar[tuple[str, ...]] = ("image", "mask")
    image_list_fields: ClassVar[tuple[str, ...]] = ("reference_images",)

    prompt: Prompt
    image: ImageBytes
    mask: MaskBytes = None
    negative_prompt: NegativePrompt = None
    width: Width = None
    height: Height = None
    strength: Strength = None
    seed: Seed = None
    count: Count = None
    seeds: Seeds = ()
    steps: Steps = None
    guidance_scale: GuidanceScale = None
    model: Model = None
    output_format: ImageFormat = None
    reference_images: ReferenceImages = ()
    extra: Extra = field(default_factory=dict)


@dataclass(frozen=True)
class MultiAngleRequest(VisionRequest):
    """multi_view_image: consistent views of one subject (see ``abstractvision.multiview``)."""

    task: ClassVar[Task] = Task.MULTI_VIEW_IMAGE
    image_fields: ClassVar[tuple[str, ...]] = ("reference_image",)

    prompt: Prompt
    reference_image: ReferenceImage = None
    angles: Angles = ("front", "three_quarter", "side", "back")
    negative_prompt: NegativePrompt = None
    width: Width = None
    height: Height = None
    strength: Strength = None
    seed: Seed = None
    steps: Steps = None
    guidance_scale: GuidanceScale = None
    model: Model = None
    output_format: ImageFormat = None
    partial_results: PartialResults = False
    extra: Extra = field(default_factory=dict)


@dataclass(frozen=True)
class VideoGenerationRequest(VisionRequest):
    """text_to_video."""

    task: ClassVar[Task] = Task.TEXT_TO_VIDEO

    prompt: Prompt
    negative_prompt: NegativePrompt = None
    width: Width = None
    height: Height = None
    num_frames: NumFrames = None
    fps: Fps = None
    seed: Seed = None
    steps: Steps = None
    guidance_scale: GuidanceScale = None
    model: Model = None
    output_format: VideoFormat = None
    extra: Extra = field(default_factory=dict)


@dataclass(frozen=True)
class ImageToVideoRequest(VisionRequest):
    """image_to_video: animate a still image."""

    task: ClassVar[Task] = Task.IMAGE_TO_VIDEO
    image_fields: ClassVar[tuple[str, ...]] = ("image",)

    image: ImageBytes
    prompt: OptionalPrompt = None
    negative_prompt: NegativePrompt = None
    width: Width = None
    height: Height = None
    num_frames: NumFrames = None
    fps: Fps = None
    seed: Seed = None
    steps: Steps = None
    guidance_scale: GuidanceScale = None
    model: Model = None
    output_format: VideoFormat = None
    extra: Extra = field(default_factory=dict)


@dataclass(frozen=True)
class ImageUpscaleRequest(VisionRequest):
    """image_upscale: a larger image with added detail (output pixels bounded by LIMITS)."""

    task: ClassVar[Task] = Task.IMAGE_UPSCALE
    image_fields: ClassVar[tuple[str, ...]] = ("image",)

    image: ImageBytes
    scale: UpscaleScale = None
    prompt: UpscalePrompt = None
    negative_prompt: NegativePrompt = None
    seed: Seed = None
    steps: Steps = None
    guidance_scale: GuidanceScale = None
    model: Model = None
    output_format: ImageFormat = None
    extra: Extra = field(default_factory=dict)


REQUEST_TYPES: dict[Task, type[VisionRequest]] = {
    cls.task: cls
    for cls in (
        ImageGenerationRequest,
        ImageEditRequest,
        MultiAngleRequest,
        VideoGenerationRequest,
        ImageToVideoRequest,
        ImageUpscaleRequest,
    )
}
# 0.3.x constructor keywords (lora_adapters, guidance_2, resolution...) -> today's fields: compat
for _cls in REQUEST_TYPES.values():
    compat.old_request_names(_cls)
# 0.3.x imported these from here
from .compat import LoRAAdapterSpec as LoRAAdapterSpec  # noqa: E402
from .compat import ProviderAdapterInfo as ProviderAdapterInfo  # noqa: E402
from .compat import ProviderModelInfo as ProviderModelInfo  # noqa: E402


def request_field_schemas(cls: type[VisionRequest]) -> dict[str, dict[str, Any]]:
    """Flat JSON Schema per field (no $ref, Optional folded away) plus the required names.

    Returns ``{"properties": {...}, "required": [...]}`` in declaration order. Image fields keep
    their bytes schema here; the MCP layer swaps in its image-input schema.
    """
    props: dict[str, Any] = {}
    required: list[str] = []
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        schema = dict(_field_adapters(cls)[f.name].json_schema())
        any_of = schema.pop("anyOf", None)
        if any_of is not None:
            non_null = [s for s in any_of if s.get("type") != "null"]
            if len(non_null) == 1:
                schema = {**non_null[0], **schema}
            else:
                schema["anyOf"] = non_null
        schema.pop("title", None)
        if f.default is not dataclasses.MISSING and f.default is not None:
            schema["default"] = list(f.default) if isinstance(f.default, tuple) else f.default
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required.append(f.name)
        props[f.name] = schema
    return {"properties": props, "required": required}


@dataclass(frozen=True)
class GeneratedAsset:
    """What a backend returns: encoded bytes plus metadata (model, seed, timings, size).

    ``preview`` is an optional small companion (an animated WebP for a video) that stores keep
    as a second artifact; metadata stays JSON, so bytes never go there.
    """

    media_type: Literal["image", "video"]
    data: bytes
    mime_type: str
    metadata: dict[str, Any] = field(default_factory=dict)
    preview: bytes | None = None
    preview_mime_type: str | None = None


@dataclass(frozen=True)
class VisionBackendCapabilities:
    """What a configured backend will do now (the registry says what a model could do).

    ``extra_keys`` maps each accepted ``extra`` key to a one-line description; any other key is
    refused before the backend runs. ``models`` maps a task to the model ids configured for it;
    ``frame_rules`` maps a video task to its frame-count rule (e.g. ``"4k+1"``).
    """

    supported_tasks: Sequence[str] | None = None
    supports_mask: bool | None = None
    supports_control_image: bool | None = None
    max_width: int | None = None
    max_height: int | None = None
    max_fps: int | None = None
    max_frames: int | None = None
    extra_keys: Mapping[str, str] = field(default_factory=dict)
    models: Mapping[str, Sequence[str]] = field(default_factory=dict)
    loaded_models: Sequence[str] = ()
    frame_rules: Mapping[str, str] = field(default_factory=dict)

    def supports(self, task: str | Task) -> bool:
        return self.supported_tasks is None or str(task) in {str(t) for t in self.supported_tasks}
