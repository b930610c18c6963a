"""Request validation: every field's bounds, declared once in types.py, enforced on construction."""

from __future__ import annotations

import contextlib
import dataclasses
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from abstractvision import LIMITS, InvalidRequestError, Task
from abstractvision.types import (
    REQUEST_TYPES,
    ImageEditRequest,
    ImageGenerationRequest,
    ImageToVideoRequest,
    MultiAngleRequest,
    VideoGenerationRequest,
    request_field_schemas,
)


def test_every_task_has_one_request_type() -> None:
    assert set(REQUEST_TYPES) == set(Task)
    for task, cls in REQUEST_TYPES.items():
        assert cls.task is task


@pytest.mark.parametrize(
    ("field", "value", "limit_words"),
    [
        ("width", 99999, "64..4096"),
        ("width", 100, "multiple of 8"),
        ("height", 32, ">= 64"),
        ("steps", 0, ">= 1"),
        ("steps", 201, "<= 200"),
        ("seed", -1, ">= 0"),
        ("seed", 2**40, "<= 4294967295"),
        ("guidance_scale", 51.0, "<= 50"),
        ("guidance_scale", float("nan"), "finite"),
        ("prompt", "", "at least 1"),
        ("prompt", "x" * (LIMITS.max_prompt_chars + 1), "at most 10000"),
        ("output_format", "tiff", "'png'"),
        ("steps", "5", "integer"),
        ("steps", True, "integer"),
        ("extra", {f"k{i}": i for i in range(LIMITS.max_extra_keys + 1)}, "at most 32"),
    ],
)
def test_out_of_range_values_name_field_value_and_limit(field, value, limit_words) -> None:
    params = {"prompt": "a lighthouse", field: value}
    with pytest.raises(InvalidRequestError) as info:
        ImageGenerationRequest(**params)
    err = info.value
    assert err.field == field
    assert limit_words in err.limit
    assert field in str(err)


def test_total_pixels_are_bounded_across_fields() -> None:
    ImageGenerationRequest(prompt="x", width=4096, height=2304)
    with pytest.raises(InvalidRequestError) as info:
        ImageGenerationRequest(prompt="x", width=4096, height=2312)
    assert info.value.field == "width*height" and str(LIMITS.max_pixels) in info.value.limit


def test_video_and_edit_bounds() -> None:
    with pytest.raises(InvalidRequestError, match="num_frames"):
        VideoGenerationRequest(prompt="x", num_frames=LIMITS.max_frames + 1)
    with pytest.raises(InvalidRequestError, match="fps"):
        ImageToVideoRequest(image=b"\x89PNG", fps=0)
    with pytest.raises(InvalidRequestError, match="strength"):
        ImageEditRequest(prompt="x", image=b"\x89PNG", strength=1.5)
    with pytest.raises(InvalidRequestError, match="image"):
        ImageEditRequest(prompt="x", image=b"")
    with pytest.raises(InvalidRequestError, match="angles"):
        MultiAngleRequest(prompt="x", angles=["front"] * (LIMITS.max_angles + 1))


def test_lists_become_tuples_and_requests_are_frozen() -> None:
    req = MultiAngleRequest(prompt="robot", angles=["front", "back"])
    assert req.angles == ("front", "back")
    with pytest.raises(dataclasses.FrozenInstanceError):
        req.prompt = "other"  # type: ignore[misc]


def test_from_dict_refuses_unknown_and_missing_parameters() -> None:
    with pytest.raises(InvalidRequestError) as info:
        ImageGenerationRequest.from_dict({"prompt": "x", "widht": 512})
    assert info.value.field == "widht" and "width" in info.value.limit
    with pytest.raises(InvalidRequestError, match="required"):
        ImageEditRequest.from_dict({"prompt": "x"})


def test_to_params_leaves_out_bytes_and_unset_values() -> None:
    req = ImageEditRequest(prompt="x", image=b"\x89PNG....", steps=4)
    assert req.to_params() == {"prompt": "x", "steps": 4}
    json.dumps(req.to_params())


@pytest.mark.parametrize("cls", list(REQUEST_TYPES.values()))
def test_field_schemas_are_flat_and_carry_bounds(cls) -> None:
    schema = request_field_schemas(cls)
    text = json.dumps(schema)
    assert "$ref" not in text and "$defs" not in text
    names = [f.name for f in dataclasses.fields(cls)]
    assert list(schema["properties"]) == names
    for name, prop in schema["properties"].items():
        assert prop.get("description"), name
    if "width" in schema["properties"]:
        width = schema["properties"]["width"]
        assert (width["minimum"], width["maximum"], width["multipleOf"]) == (64, 4096, 8)
    if "angles" in schema["properties"]:
        assert schema["properties"]["angles"]["default"] == [
            "front",
            "three_quarter",
            "side",
            "back",
        ]


@given(
    width=st.integers(-(2**40), 2**40),
    steps=st.one_of(st.none(), st.integers(-1000, 1000)),
    guidance=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
)
def test_any_numbers_either_validate_within_bounds_or_raise_the_typed_error(
    width, steps, guidance
) -> None:
    try:
        req = ImageGenerationRequest(prompt="p", width=width, steps=steps, guidance_scale=guidance)
    except InvalidRequestError as err:
        assert err.field in {"width", "steps", "guidance_scale"}
        assert str(err)
        return
    assert LIMITS.min_side <= req.width <= LIMITS.max_side and req.width % 8 == 0
    assert req.steps is None or 1 <= req.steps <= LIMITS.max_steps
    assert req.guidance_scale is None or 0 <= req.guidance_scale <= LIMITS.max_guidance_scale


@given(st.dictionaries(st.text(max_size=20), st.integers() | st.text(max_size=5), max_size=40))
def test_arbitrary_argument_dicts_never_escape_as_other_errors(params) -> None:
    with contextlib.suppress(InvalidRequestError):
        VideoGenerationRequest.from_dict(params)
