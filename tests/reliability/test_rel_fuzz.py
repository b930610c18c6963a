"""Schema fuzzing: hypothesis builds tool arguments from the published (flat) input schemas,
valid and deliberately broken, and sends them through a real MCP client.

Each answer must be a CallToolResult (the client validates the JSON-RPC response), no call may
hang or hit the server's catch-all ("failed unexpectedly"), a broken call must be an isError
result naming the broken field, and a refused call must leave the store folder unchanged.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from http_servers import png
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client
from rel_support import FaultBackend, config, connect, text

from abstractvision import GeneratedAsset, media

FUZZ_CALLS = int(os.environ.get("REL_FUZZ_CALLS", "2000"))
SD_FUZZ_CALLS = int(os.environ.get("REL_SD_FUZZ_CALLS", "100"))
GOOD_B64 = base64.b64encode(png()).decode()
# Random strings for image fields never contain ":" (no scheme, so never a URL fetch).
SAFE_TEXT = st.text(st.characters(blacklist_characters=":", codec="utf-8"), max_size=40)


class TinyBackend(FaultBackend):
    """FaultBackend without sleeps, always a 64x64 image: thousands of calls stay cheap."""

    def generate_image(self, request: Any, *, control: Any = None) -> Any:
        if control is not None:
            control.check()
            control.report(1, 1)
        data, mime = media.encode_image(media.decode_image(png()), "png")
        return GeneratedAsset("image", data, mime, {"model": "fault/model", "width": 64})

    edit_image = generate_image


@dataclass
class Stats:
    calls: int = 0
    ok: int = 0
    refused: int = 0
    broken: int = 0
    by_tool: dict[str, int] = field(default_factory=dict)


# --- strategies from a flat JSON Schema -----------------------------------------------------------


def valid(spec: dict[str, Any], images: list[Any], small: bool) -> st.SearchStrategy[Any]:
    """Values the schema accepts (``images`` for image fields; ``small`` caps sizes for models)."""
    if "anyOf" in spec:  # image fields
        return st.sampled_from(images)
    if "oneOf" in spec:
        return st.one_of([valid(s, images, small) for s in spec["oneOf"]])
    if "enum" in spec:
        return st.sampled_from(spec["enum"])
    kind = spec.get("type")
    if kind == "boolean":
        return st.booleans()
    if kind == "string":
        low, high = spec.get("minLength", 0), min(spec.get("maxLength", 60), 60)
        return st.text(min_size=low, max_size=high).filter(lambda s: len(s.strip()) >= low)
    if kind in ("integer", "number"):
        low, high = spec.get("minimum", -(10**6)), spec.get("maximum", 10**6)
        if small:
            high = min(high, {64: 128, 0: 2}.get(low, low + 2)) if low is not None else high
        step = spec.get("multipleOf", 1)
        if kind == "integer":
            return st.integers(-(-int(low) // step), int(high) // step).map(lambda v: v * step)
        return st.floats(low, min(high, 3.0) if small else high, allow_nan=False)
    if kind == "array":
        return st.lists(valid(spec["items"], images, small), min_size=1, max_size=2 if small else 3)
    if kind == "object":
        props = spec.get("properties", {})
        return st.fixed_dictionaries(
            {}, optional={k: valid(v, images, small) for k, v in props.items()}
        )
    return st.none()


def invalid(spec: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values the schema refuses: wrong type, out of range, too long, not in the enum."""
    options: list[st.SearchStrategy[Any]] = [st.just([1, 2]), st.just({"x": 1})]
    kind = spec.get("type")
    if kind == "array" and spec.get("items", {}).get("type") in ("integer", "number"):
        options = [st.just(["1", "2"]), st.just({"x": 1})]  # [1, 2] is a valid list of numbers
    if "anyOf" in spec:
        return st.one_of(
            st.integers(), st.just({"$artifact": "../../etc/passwd"}), st.just(""),
            SAFE_TEXT.filter(lambda s: s.strip() != ""), st.just("A" * 5000),
        )  # fmt: skip
    if "enum" in spec:
        options.append(st.text(max_size=20).filter(lambda s: s not in spec["enum"]))
    if kind == "string":
        options.append(st.integers())
        if "maxLength" in spec:
            options.append(st.just("x" * (spec["maxLength"] + 1)))
        if spec.get("minLength"):
            options.append(st.just(""))
    if kind in ("integer", "number"):
        options.append(st.text(max_size=5))
        options.append(st.booleans())
        if "minimum" in spec:
            options.append(st.just(spec["minimum"] - 1))
        if "maximum" in spec:
            options.append(st.just(spec["maximum"] + 1))
        if kind == "integer":
            options.append(st.just(65.5))
    if kind == "array":
        options.append(st.just("front"))
        if "maxItems" in spec:
            options.append(st.just(["front"] * (spec["maxItems"] + 1)))
    return st.one_of(options)


@st.composite
def tool_call(
    draw: Any, schemas: dict[str, dict[str, Any]], images: list[Any], small: bool
) -> tuple[str, dict[str, Any], str | None]:
    """(tool, arguments, the field a broken call must name or None for a valid call)."""
    name = draw(st.sampled_from(sorted(schemas)))
    schema = schemas[name]
    props, required = schema.get("properties", {}), schema.get("required", [])
    args = {k: draw(valid(props[k], images, small)) for k in required}
    for key in draw(st.lists(st.sampled_from(sorted(props) or [""]), max_size=4, unique=True)):
        if key:
            args[key] = draw(valid(props[key], images, small))
    if small and "steps" in props:  # the model's default step count is slow on CPU
        args.setdefault("steps", 1)
    # valid alone but not together (types._check_batch_and_control): a broken call breaks one
    if "seeds" in args:
        args.pop("seed", None)
        args.pop("count", None)
    if "control_image" not in args:
        args.pop("control_type", None)
        args.pop("control_strength", None)
    how = draw(st.sampled_from(["valid", "value", "unknown", "missing"]))
    if how == "value" and props:
        key = draw(st.sampled_from(sorted(props)))
        # wait_s is broken by type and sign (a value over its maximum is tested in test_rel_queue)
        bad = st.sampled_from([-1, "soon", [1]]) if key == "wait_s" else invalid(props[key])
        args[key] = draw(bad)
        return name, args, key
    if how == "unknown":
        key = draw(st.sampled_from(["model_path", "--output", "lora_model_dir", "__class__", "x"]))
        args[key] = draw(st.one_of(st.text(max_size=10), st.integers()))
        return name, args, key
    if how == "missing" and required:
        key = draw(st.sampled_from(required))
        del args[key]
        return name, args, key
    return name, args, None


def listing(folder: Path) -> set[tuple[str, int]]:
    return {(p.name, p.stat().st_size) for p in folder.iterdir()} if folder.exists() else set()


def run_fuzz(
    portal: BlockingPortal, client: Client, store: Path, n: int, small: bool, stats: Stats
) -> None:
    async def prepare() -> tuple[dict[str, dict[str, Any]], list[Any]]:
        # wait_s: the server's own --wait-s (a larger one is refused), then get_job until done
        made = await client.call_tool("text_to_image", {"prompt": "seed image"})
        assert not made.is_error, text(made)
        while made.structured_content.get("status") in ("queued", "running"):  # a slow machine
            job = made.structured_content["job_id"]
            made = await client.call_tool("get_job", {"job_id": job, "wait_s": 1})
        assert not made.is_error, text(made)
        tools = (await client.list_tools()).tools  # exact now: the backend was probed
        ref = made.structured_content
        return {t.name: t.input_schema for t in tools}, [ref, ref["uri"], GOOD_B64]

    schemas, images = portal.call(prepare)

    async def idle() -> None:
        """Wait until no job of an earlier call is still running (and writing the store)."""
        with anyio.fail_after(30):
            while True:
                jobs = (await client.call_tool("list_jobs", {})).structured_content["jobs"]
                if all(j["status"] not in ("queued", "running") for j in jobs):
                    return
                await anyio.sleep(0.01)

    async def send(name: str, args: dict[str, Any]) -> Any:
        with anyio.fail_after(30):
            return await client.call_tool(name, args)

    @settings(max_examples=n, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(tool_call(schemas, images, small))
    def one(call: tuple[str, dict[str, Any], str | None]) -> None:
        name, args, broken = call
        portal.call(idle)
        before = listing(store)
        result = portal.call(send, name, args)
        stats.calls += 1
        stats.by_tool[name] = stats.by_tool.get(name, 0) + 1
        message = text(result)
        assert "failed unexpectedly" not in message, (name, args, message)
        if result.is_error:
            stats.refused += 1
            assert listing(store) == before, (name, args, message)  # nothing stored
        else:
            stats.ok += 1
        if broken is not None:
            stats.broken += 1
            assert result.is_error, (name, args)
            assert broken in message, (name, broken, message[:300])

    one()


def test_fuzz_tool_arguments_fault_backend(tmp_path: Path) -> None:
    stats = Stats()
    cfg = config(tmp_path, "--wait-s", "5")
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(connect(cfg, TinyBackend())) as client,
    ):
        run_fuzz(portal, client, tmp_path / "store", FUZZ_CALLS, False, stats)
    print(f"\nfuzz (FaultBackend): {stats}")
    assert stats.calls >= FUZZ_CALLS * 0.9 and stats.broken > stats.calls // 4


@pytest.mark.slow
def test_fuzz_tool_arguments_tiny_diffusers(tmp_path: Path, tiny_sd_dir: Path) -> None:
    stats = Stats()
    cfg = config(tmp_path, "--model", str(tiny_sd_dir), "--device", "cpu", "--wait-s", "30")
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(connect(cfg)) as client,
    ):
        run_fuzz(portal, client, tmp_path / "store", SD_FUZZ_CALLS, True, stats)
    print(f"\nfuzz (tiny Diffusers): {stats}")
    assert stats.calls >= SD_FUZZ_CALLS * 0.9
