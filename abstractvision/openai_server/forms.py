"""OpenAI request bodies (JSON or multipart) to the plain parameters ``VisionManager.run`` takes.

Only the mapping lives here; bounds are checked by the request dataclasses. Multipart values
arrive as text, so numeric fields are converted first. OpenAI-only fields that have no meaning
here are accepted and dropped, unless the backend takes them as ``extra`` keys (a proxy to
another OpenAI-compatible service does); any other unknown field is refused by name.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Collection, Mapping
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request

from ..types import LIMITS
from .errors import ApiError

__all__ = ["image_params", "read_body", "upscale_params", "video_params"]

_INTS = frozenset({"n", "seed", "steps", "num_frames", "fps", "seconds"})
_FLOATS = frozenset({"guidance_scale", "strength"})
_COMMON = ("prompt", "model", "negative_prompt", "seed", "steps", "guidance_scale")
# OpenAI fields with no local meaning: accepted so stock clients work, then dropped.
_DROPPED = frozenset(
    {"quality", "style", "user", "moderation", "background", "output_compression"}
    | {"partial_images", "input_fidelity"}
)
_SIZE = re.compile(r"^(\d{1,5})x(\d{1,5})$")
_FILE_FIELDS = ("image", "image[]", "mask", "input_reference")


async def read_body(request: Request) -> tuple[dict[str, Any], dict[str, bytes], bool]:
    """(fields, files, typed): ``typed`` is False for form data, whose values are text."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind in ("multipart/form-data", "application/x-www-form-urlencoded"):
        form = await request.form(max_files=4, max_fields=64)
        fields: dict[str, Any] = {}
        files: dict[str, bytes] = {}
        for key, value in form.multi_items():
            if key in files or key in fields:
                raise ApiError(400, f"{key} was given more than once; one is accepted", param=key)
            if isinstance(value, UploadFile):
                data = await value.read(LIMITS.max_image_bytes + 1)
                if len(data) > LIMITS.max_image_bytes:
                    raise ApiError(413, f"{key} is over {LIMITS.max_image_bytes} bytes", param=key)
                files[key.removesuffix("[]")] = data
            else:
                fields[key] = value
        return fields, files, False
    try:
        body = json.loads(await request.body() or b"null")
    except ValueError:
        raise ApiError(400, "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    return body, {}, True


def _number(name: str, value: Any, typed: bool) -> Any:
    if typed or value is None or not isinstance(value, str):
        return value
    try:
        return int(value) if name in _INTS else float(value)
    except ValueError:
        kind = "an integer" if name in _INTS else "a number"
        raise ApiError(400, f"{name}={value!r} must be {kind}", param=name) from None


def _take(
    fields: Mapping[str, Any], typed: bool, known: Collection[str], extra_keys: Collection[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split fields into (ours, extra); numbers converted; unknown names refused."""
    ours: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for name, value in fields.items():
        if name in _INTS or name in _FLOATS:
            value = _number(name, value, typed)
        if name == "extra":
            if isinstance(value, str):
                try:
                    value = json.loads(value)
                except ValueError:
                    raise ApiError(400, "extra must be a JSON object", param="extra") from None
            if not isinstance(value, dict):
                raise ApiError(400, "extra must be a JSON object", param="extra")
            extra.update(value)
        elif name in known:
            ours[name] = value
        elif name in extra_keys:
            extra[name] = value if typed else _json_or_text(value)
        elif name not in _DROPPED:
            accepted = ", ".join(sorted({*known, *extra_keys}))
            raise ApiError(400, f"unknown parameter {name!r}; accepted: {accepted}", param=name)
    return ours, extra


def _json_or_text(value: Any) -> Any:
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return value


def _size(value: Any) -> dict[str, int]:
    if value in (None, "", "auto"):
        return {}
    match = _SIZE.match(str(value))
    if not match:
        raise ApiError(400, f"size={value!r} must be WIDTHxHEIGHT or auto", param="size")
    return {"width": int(match[1]), "height": int(match[2])}


def _format(value: Any) -> str | None:
    return None if value is None else "jpeg" if value == "jpg" else value


def _params(ours: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    params = {k: ours[k] for k in _COMMON if ours.get(k) is not None}
    params.update(_size(ours.get("size")))
    if ours.get("output_format") is not None:
        params["output_format"] = _format(ours["output_format"])
    if extra:
        params["extra"] = extra
    return params


def image_params(
    fields: Mapping[str, Any],
    files: Mapping[str, bytes],
    typed: bool,
    *,
    edit: bool,
    extra_keys: Collection[str],
    max_n: int,
) -> tuple[dict[str, Any], int]:
    """(parameters of one image task, how many images were asked for)."""
    known = {*_COMMON, "n", "size", "response_format", "output_format", "stream"}
    if edit:
        known |= {"strength", "image", "mask"}
    ours, extra = _take(fields, typed, known, extra_keys)
    if ours.get("stream") in (True, "true", "True"):
        raise ApiError(400, "streaming is not supported; leave stream unset", param="stream")
    if ours.get("response_format") not in (None, "b64_json"):
        raise ApiError(400, "only response_format=b64_json is served", param="response_format")
    n = ours.get("n", 1)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= max_n:
        raise ApiError(400, f"n={n!r} must be an integer in 1..{max_n}", param="n")
    params = _params(ours, extra)
    if edit:
        for name in ("image", "mask"):
            if name in ours:
                raise ApiError(400, f"{name} must be sent as a file (multipart)", param=name)
            if name in files:
                params[name] = files[name]
        if "image" not in params:
            raise ApiError(400, "image is required (a multipart file)", param="image")
        if ours.get("strength") is not None:
            params["strength"] = ours["strength"]
    return params, n


def video_params(
    fields: Mapping[str, Any],
    files: Mapping[str, bytes],
    typed: bool,
    *,
    extra_keys: Collection[str],
) -> tuple[str, dict[str, Any], int | None]:
    """(task, parameters, seconds). ``seconds`` sets num_frames only together with ``fps``."""
    known = {*_COMMON, "size", "seconds", "num_frames", "fps", "output_format", "input_reference"}
    ours, extra = _take(fields, typed, known, extra_keys)
    params = _params(ours, extra)
    for name in ("num_frames", "fps"):
        if ours.get(name) is not None:
            params[name] = ours[name]
    seconds = ours.get("seconds")
    if seconds is not None:
        seconds = _number("seconds", seconds, False) if isinstance(seconds, str) else seconds
        if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 1:
            raise ApiError(400, f"seconds={seconds!r} must be a positive integer", param="seconds")
        if "num_frames" not in params and "fps" in params:
            params["num_frames"] = seconds * params["fps"]
    image = files.get("input_reference")
    reference = ours.get("input_reference")
    if image is None and isinstance(reference, str) and reference.startswith("data:"):
        try:
            image = base64.b64decode(reference.partition(",")[2], validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(
                400, "input_reference is not valid base64", param="input_reference"
            ) from None
    elif image is None and reference is not None:
        raise ApiError(
            400, "input_reference must be an image file or a data URL", param="input_reference"
        )
    if image is None:
        return "text_to_video", params, seconds
    params["image"] = image
    return "image_to_video", params, seconds


_FACTOR = re.compile(r"^\s*(\d{1,2})\s*[xX]?\s*$")
# AbstractCore's upscale form fields that have no meaning here (SeedVR2 options, routing).
_UPSCALE_DROPPED = frozenset({"softness", "quantize", "provider", "base_url", "vae_tiling"})


def upscale_params(
    fields: Mapping[str, Any],
    files: Mapping[str, bytes],
    typed: bool,
    *,
    extra_keys: Collection[str],
) -> dict[str, Any]:
    """``/v1/images/upscale``: image (file), scale (``4`` or ``"4x"``; ``resolution`` "Nx" is
    read as the same), optional prompt and the common fields."""
    known = {*_COMMON, "scale", "resolution", "response_format", "output_format", "image"}
    fields = {k: v for k, v in fields.items() if k not in _UPSCALE_DROPPED}
    ours, extra = _take(fields, typed, known, extra_keys)
    if ours.get("response_format") not in (None, "b64_json"):
        raise ApiError(400, "only response_format=b64_json is served", param="response_format")
    params = _params(ours, extra)
    for name in ("scale", "resolution"):
        value = ours.get(name)
        if value is None or "scale" in params:
            continue
        match = _FACTOR.match(str(value)) if not isinstance(value, bool) else None
        if match is None or (name == "resolution" and "x" not in str(value).lower()):
            raise ApiError(
                400, f"{name}={value!r} must be a factor such as 2, 4 or '4x'", param=name
            )
        params["scale"] = int(match[1])
    if "image" in ours:
        raise ApiError(400, "image must be sent as a file (multipart)", param="image")
    if "image" not in files:
        raise ApiError(400, "image is required (a multipart file)", param="image")
    params["image"] = files["image"]
    return params
