"""Task tool definitions from the request dataclasses: one schema for MCP, OpenAI and Anthropic.

A task tool's input schema is ``request_field_schemas`` made agent-facing: flat (no $ref), image
fields swapped for the image-input schema (artifact ref, URI, data URL, base64, path or URL),
``model`` narrowed to the configured models, ``extra`` listing the backend's accepted keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .types import REQUEST_TYPES, Task, VisionBackendCapabilities, request_field_schemas

__all__ = [
    "IMAGE_SCHEMA_TEXT",
    "TASK_TEXT",
    "available_tasks",
    "image_schema",
    "models_for",
    "task_input_schema",
]

IMAGE_SCHEMA_TEXT = "Ref, URI, data URL, base64, path or URL."
# Fields whose name, type and bounds say it all: no description (keeps tools/list small).
_SELF_EVIDENT = frozenset({"negative_prompt", "width", "height", "seed", "steps", "output_format",
                           "model", "num_frames", "fps", "seeds", "control_type"})  # fmt: skip
_CONTROL = ("control_image", "control_type", "control_strength")

# task -> (title, one-line description); the tool name is the task's value.
TASK_TEXT: dict[Task, tuple[str, str]] = {
    Task.TEXT_TO_IMAGE: ("Text to image", "Generate an image from a prompt."),
    Task.IMAGE_TO_IMAGE: ("Edit image", "Change an image by a prompt; a mask limits the change."),
    Task.MULTI_VIEW_IMAGE: (
        "Multi-view image",
        "Render one subject from several angles; without reference_image one is generated.",
    ),
    Task.TEXT_TO_VIDEO: ("Text to video", "Generate a short video from a prompt."),
    Task.IMAGE_TO_VIDEO: ("Image to video", "Animate a still image."),
    Task.IMAGE_UPSCALE: ("Upscale image", "Enlarge an image with added detail (x2-x8)."),
}


def image_schema(description: str) -> dict[str, Any]:
    """The schema of one image input: an artifact ref object or a string form."""
    return {
        "anyOf": [
            {"type": "object", "required": ["$artifact"]},  # an artifact ref
            {"type": "string", "minLength": 1},
        ],
        "description": f"{description.rstrip('.')}. {IMAGE_SCHEMA_TEXT}",
    }


def task_input_schema(
    task: Task,
    models: Sequence[str] = (),
    extra_keys: Mapping[str, str] | None = None,
    *,
    more: Mapping[str, Any] | None = None,
    caps: VisionBackendCapabilities | None = None,
) -> dict[str, Any]:
    """The flat input schema of one task tool; ``more`` adds caller-specific properties.

    Kept small (an MCP tools/list with every tool stays within 12 KB): no description where the
    name and bounds say it all, one short form for image inputs, ``extra`` names its keys (what
    each takes is in the capabilities), no empty defaults; with ``caps``, fields the backend
    cannot use are left out (control images unless supported, the mask when it cannot mask).
    Every bound stays.
    """
    cls = REQUEST_TYPES[task]
    base = request_field_schemas(cls)
    unused = (
        set(_CONTROL) if caps is not None and caps.supports_control_image is not True else set()
    )
    if caps is not None and caps.supports_mask is False:
        unused.add("mask")
    props: dict[str, Any] = {}
    for name, schema in base["properties"].items():
        schema = dict(schema)
        if name in unused:
            continue
        if name in cls.image_fields:
            schema = image_schema(schema.get("description", "Input image"))
        elif name in cls.image_list_fields:
            schema = {
                "type": "array",
                "items": image_schema("Input image"),
                "maxItems": schema["maxItems"],
                "description": schema["description"],
            }
        elif name == "model" and models:
            schema = {"type": "string", "enum": list(models)}
        elif name == "extra":
            if not extra_keys:
                continue
            schema.pop("additionalProperties", None)  # true is the default
            keys = ", ".join(extra_keys)
            schema["description"] = f"Engine options: {keys} (values: the capabilities)."
        elif name == "angles":
            camera = schema.get("items", {}).get("oneOf", [{}])[-1]
            camera.pop("description", None)  # the angles text says what a camera move is
        if schema.get("default") in ([], {}):
            del schema["default"]
        if name in _SELF_EVIDENT:
            schema.pop("description", None)
        for key in ("minimum", "maximum"):  # 50.0 -> 50
            if isinstance(schema.get(key), float) and schema[key].is_integer():
                schema[key] = int(schema[key])
        props[name] = schema
    props.update(more or {})
    return {
        "type": "object",
        "properties": props,
        "required": list(base["required"]),
        "additionalProperties": False,
    }


def available_tasks(caps: VisionBackendCapabilities) -> list[Task]:
    """Tasks a backend runs; multi-view wherever it can edit (the library renders the views)."""
    edit = Task.IMAGE_TO_IMAGE
    return [
        t for t in Task if caps.supports(t) or (t is Task.MULTI_VIEW_IMAGE and caps.supports(edit))
    ]


def models_for(caps: VisionBackendCapabilities, task: Task) -> list[str]:
    """Models configured for ``task``; for multi-view without its own, the edit models."""
    models = caps.models.get(task.value) or ()
    if not models and task is Task.MULTI_VIEW_IMAGE:
        models = caps.models.get(Task.IMAGE_TO_IMAGE.value) or ()
    return [str(m) for m in models]
