"""The attack catalogue, each row a test: ids, paths, URLs, oversized and malformed inputs,
argument and flag injection. Every attack must be refused, name the field and store nothing.
docs/security.md lists each row and its result.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import zlib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from http_servers import png, serving
from mcp import Client
from mcp.shared.exceptions import MCPError
from rel_support import FaultBackend, config, connect, snapshot, text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from abstractvision import InvalidRequestError, LocalAssetStore
from abstractvision.backends._sdcpp import options as sd_options

pytestmark = pytest.mark.anyio
SECRET = b"top secret bytes outside every root"


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Path]:
    """An input root with a good PNG, a secret file beside it and links out of root and store."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "ok.png").write_bytes(png())
    (outside / "secret.png").write_bytes(png((64, 64), (1, 2, 3)))
    (outside / "secret.txt").write_bytes(SECRET)
    os.symlink(outside / "secret.png", root / "link.png")
    os.symlink(outside, root / "dirlink")
    return {"root": root, "outside": outside, "store": tmp_path / "store", "tmp": tmp_path}


@asynccontextmanager
async def client_for(world: dict[str, Path], *flags: str) -> AsyncIterator[Client]:
    cfg = config(world["tmp"], "--input-root", str(world["root"]), "--wait-s", "5", *flags)
    async with connect(cfg, FaultBackend(step_s=0.0)) as client:
        yield client


async def refused(client: Client, world: dict[str, Path], tool: str, args: dict[str, Any]) -> str:
    """Call ``tool``; it must be an isError result and leave the store unchanged."""
    before = snapshot(world["store"])
    result = await client.call_tool(tool, args)
    assert result.is_error, f"{tool}({str(args)[:200]}) was accepted: {text(result)[:300]}"
    assert snapshot(world["store"]) == before
    message = text(result)
    assert SECRET.decode() not in message
    return message


async def edit(client: Client, world: dict[str, Path], image: Any, **more: Any) -> str:
    return await refused(client, world, "image_to_image", {"prompt": "x", "image": image, **more})


# --- artifact ids and URIs ----------------------------------------------------------------------

BAD_IDS = [
    "../../etc/passwd",
    "..%2F..%2Fetc%2Fpasswd",
    "%2e%2e/%2e%2e/etc/passwd",
    "/etc/passwd",
    "..\\..\\windows\\win.ini",
    "0" * 31 + "/",
    "A" * 32,
    "0" * 32 + "\x00",
    "0" * 33,
]


@pytest.mark.parametrize("bad", BAD_IDS)
async def test_artifact_ids_with_traversal(world: dict[str, Path], bad: str) -> None:
    async with client_for(world) as client:
        message = await edit(client, world, {"$artifact": bad})
        assert "artifact" in message or "image" in message
        await edit(client, world, "abstractvision://artifacts/" + bad)
        with pytest.raises(MCPError):
            await client.read_resource("abstractvision://artifacts/" + bad)


async def test_store_links_out_of_the_store_are_refused(world: dict[str, Path]) -> None:
    """A planted metadata file or blob link leading out of the store never resolves."""
    store = LocalAssetStore(world["store"])
    ref = store.store_bytes(png(), content_type="image/png")
    good_id = ref["$artifact"]
    forged = json.loads((world["store"] / f"{good_id}.json").read_text())
    # 1. metadata whose content_file walks out (sha256 set to the secret's, so only the path stops it)
    import hashlib

    for name in ("../outside/secret.txt", str(world["outside"] / "secret.txt")):
        meta = {**forged, "content_file": name, "sha256": hashlib.sha256(SECRET).hexdigest()}
        (world["store"] / f"{good_id}.json").write_text(json.dumps(meta))
        with pytest.raises(Exception, match="bad metadata"):
            store.load_bytes(good_id)
    # 2. the metadata file itself a link out of the store
    other = "f" * 32
    (world["outside"] / "meta.json").write_text(json.dumps({**forged, "artifact_id": other}))
    os.symlink(world["outside"] / "meta.json", world["store"] / f"{other}.json")
    with pytest.raises(Exception, match="outside the store"):
        store.load_bytes(other)
    # 3. the blob a link out of the store
    (world["store"] / f"{good_id}.json").write_text(json.dumps(forged))
    blob = world["store"] / forged["content_file"]
    blob.unlink()
    os.symlink(world["outside"] / "secret.txt", blob)
    with pytest.raises(Exception, match="outside the store"):
        store.load_bytes(good_id)
    async with client_for(world) as client:
        for artifact in (good_id, other):
            with pytest.raises(MCPError):
                await client.read_resource("abstractvision://artifacts/" + artifact)
            await edit(client, world, {"$artifact": artifact})


# --- file paths ---------------------------------------------------------------------------------


def path_attacks(world: dict[str, Path]) -> list[str]:
    root, outside = world["root"], world["outside"]
    return [
        "../outside/secret.png",
        str(outside / "secret.png"),
        str(root / ".." / "outside" / "secret.png"),
        "link.png",  # symlink in the root to a file outside
        "dirlink/secret.png",  # symlinked folder out of the root
        "%2e%2e/outside/secret.png",
        "..%2Foutside%2Fsecret.png",
        "~/../../etc/passwd",
        "/etc/passwd",
        "/proc/self/environ",
        "/dev/zero",
        str(root),  # a folder
    ]


async def test_file_paths_out_of_the_roots(world: dict[str, Path]) -> None:
    async with client_for(world) as client:
        ok = await client.call_tool("image_to_image", {"prompt": "x", "image": "ok.png"})
        assert not ok.is_error, text(ok)
        for attack in path_attacks(world):
            message = await edit(client, world, attack)
            assert "image" in message, (attack, message)


async def test_file_paths_without_roots_are_refused(world: dict[str, Path]) -> None:
    cfg = config(world["tmp"])
    async with connect(cfg, FaultBackend(step_s=0.0)) as client:
        for attack in [str(world["root"] / "ok.png"), "ok.png", "../outside/secret.png"]:
            message = await refused(
                client, world, "image_to_image", {"prompt": "x", "image": attack}
            )
            assert "input-root" in message or "base64" in message


# --- URLs -----------------------------------------------------------------------------------------


@pytest.fixture
def only_loopback_connects(monkeypatch: pytest.MonkeyPatch) -> None:
    """A guard bug must not reach any address but 127.0.0.1: other connects fail the test."""
    real_send = httpx.AsyncClient.send

    async def send(self: httpx.AsyncClient, request: httpx.Request, **kw: Any) -> Any:
        assert request.url.host == "127.0.0.1", f"the guard let {request.url} through"
        return await real_send(self, request, **kw)

    monkeypatch.setattr(httpx.AsyncClient, "send", send)


@pytest.fixture
def image_host() -> Iterator[str]:
    """127.0.0.1 HTTP server: /img.png, and redirects from /to?u=... to any URL."""

    async def image(request: Request) -> Response:
        return Response(png(), media_type="image/png")

    async def to(request: Request) -> Response:
        return RedirectResponse(request.query_params["u"], status_code=302)

    app = Starlette(routes=[Route("/img.png", image), Route("/to", to)])
    with serving(app) as url:
        yield url


URL_ATTACKS = [
    "file:///etc/passwd",
    "FILE:///etc/passwd",
    "file://localhost/etc/passwd",
    "ftp://127.0.0.1/x.png",
    "gopher://127.0.0.1:6379/_INFO",
    "http://127.0.0.1:{port}/img.png",
    "http://localhost:{port}/img.png",
    "http://[::1]:{port}/img.png",
    "http://[::ffff:127.0.0.1]:{port}/img.png",
    "http://169.254.169.254/latest/meta-data/",
    "http://2130706433:{port}/img.png",  # decimal 127.0.0.1
    "http://0177.0.0.1:{port}/img.png",  # octal
    "http://0x7f.0.0.1:{port}/img.png",  # hex
    "http://127.1:{port}/img.png",  # short form
    "http://0.0.0.0:{port}/img.png",
    "http://10.0.0.1/x.png",
    "http://user:pass@127.0.0.1:{port}/img.png",
    "http://loopback.test:{port}/img.png",  # a name the test resolver maps to 127.0.0.1
]


@pytest.fixture
def loopback_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """``loopback.test`` resolves to 127.0.0.1 (the resolver under test; no real name is used)."""
    real = socket.getaddrinfo

    def fake(host: Any, *args: Any, **kwargs: Any) -> Any:
        return real("127.0.0.1" if host == "loopback.test" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)


@pytest.mark.usefixtures("only_loopback_connects", "loopback_name")
async def test_private_urls_are_refused(world: dict[str, Path], image_host: str) -> None:
    port = image_host.rsplit(":", 1)[1]
    async with client_for(world, "--url-timeout-s", "3") as client:
        for attack in URL_ATTACKS:
            url = attack.format(port=port)
            message = await edit(client, world, url)
            assert "image" in message, (url, message)


@pytest.mark.usefixtures("only_loopback_connects")
async def test_redirect_from_an_allowed_host_to_a_private_one(
    world: dict[str, Path], image_host: str
) -> None:
    port = image_host.rsplit(":", 1)[1]
    flags = ("--allow-url-host", "127.0.0.1", "--url-timeout-s", "3")
    async with client_for(world, *flags) as client:
        allowed = await client.call_tool(
            "image_to_image", {"prompt": "x", "image": f"{image_host}/img.png"}
        )
        assert not allowed.is_error, text(allowed)  # the allowed hop itself works
        for target in (
            f"http://localhost:{port}/img.png",
            f"http://[::1]:{port}/img.png",
            "http://169.254.169.254/latest/meta-data/",
            "file:///etc/passwd",
        ):
            message = await edit(client, world, f"{image_host}/to?u={target}")
            assert "image" in message, (target, message)


# --- oversized and malformed images -------------------------------------------------------------


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width`` x ``height`` with one tiny IDAT (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def test_base64_of_100_mb(world: dict[str, Path]) -> None:
    huge = "A" * (100 * 1024 * 1024 * 4 // 3)
    async with client_for(world) as client:
        message = await edit(client, world, huge)
        assert "bytes" in message
        message = await edit(client, world, "data:image/png;base64," + huge)
        assert "bytes" in message


async def test_malformed_images(world: dict[str, Path]) -> None:
    good = png()
    async with client_for(world) as client:
        for name, data in {
            "100k x 100k header": png_claiming(100_000, 100_000),
            "truncated": good[: len(good) // 2],
            "not an image": b"hello world, not an image at all",
            "empty": b"",
        }.items():
            message = await edit(client, world, b64(data) or "=")
            assert "image" in message, (name, message)
        jobs = (await client.call_tool("list_jobs", {})).structured_content["jobs"]
        assert jobs == []  # refused before becoming jobs: no queue place taken
        message = await edit(client, world, b64(good), mask=b64(png((32, 32))))
        assert "mask" in message


# --- argument, model and flag injection ---------------------------------------------------------

INJECTIONS: list[dict[str, Any]] = [
    {"model_path": "/etc/passwd"},
    {"--output": "/tmp/x"},
    {"output": "/tmp/x.png"},
    {"lora_model_dir": "/"},
    {"extra": {"prompt": "override", "model": "other/model"}},
    {"extra": {"--lora-model-dir": "/", "-o": "/tmp/x"}},
    {"extra": {"model_path": "/etc/passwd"}},
    {"model": "../../etc/passwd"},
    {"model": "--help"},
    {"model": "fault/model; rm -rf /"},
    {"prompt": "x" * 10_001},
    {"prompt": "x" * 1_000_000},
    {"prompt": ""},
    {"prompt": 12},
    {"negative_prompt": "n" * 10_001},
    {"width": 10**9},
    {"width": 100_000, "height": 100_000},
    {"steps": -1},
    {"steps": 10**6},
    {"seed": -1},
    {"seed": 2**64},
    {"guidance_scale": 1e9},  # (inf/nan cannot travel in JSON; the library refuses them too)
    {"guidance_scale": -1},
    {"wait_s": -5},
    {"wait_s": "forever"},
]


@pytest.mark.parametrize("inject", INJECTIONS, ids=lambda d: str(d)[:40])
async def test_extra_keys_and_bounds(world: dict[str, Path], inject: dict[str, Any]) -> None:
    async with client_for(world) as client:
        args = {"prompt": "a cat", **inject}
        message = await refused(client, world, "text_to_image", args)
        named = {k for k in inject} | {f"extra.{k}" for k in inject.get("extra", {})}
        assert any(n in message for n in named) or "extra" in message, message


@pytest.mark.parametrize(
    "prompt",
    [
        "a cat <lora:../../../etc/passwd:1>",
        "a cat <LORA:/abs/path.safetensors:0.5>",
        "<lora:x:1>",
    ],
)
def test_sdcpp_prompt_lora_tags_refused(prompt: str) -> None:
    """sd.cpp loads any file named in a ``<lora:path:w>`` prompt tag: the backend refuses them."""

    unset = dict.fromkeys(("width", "height", "steps", "guidance_scale"))
    cfg = SimpleNamespace(lora_dir=None, sampler=None, scheduler=None, vae_tiling=None, **unset)
    req = SimpleNamespace(prompt=prompt, negative_prompt=None, extra={}, **unset)
    with pytest.raises(InvalidRequestError, match="prompt"):
        sd_options.generation_kwargs(req, cfg, 1)
    req.prompt, req.negative_prompt = "ok", prompt
    with pytest.raises(InvalidRequestError, match="negative_prompt"):
        sd_options.generation_kwargs(req, cfg, 1)


@pytest.mark.parametrize(
    "extra",
    [
        {"lora_model_dir": "/"},
        {"model_path": "/etc/passwd"},
        {"upscale_model": "/x"},
        {"sampler": "euler --output /tmp/x"},
        {"loras": ["../../etc/passwd"]},
        {"loras": ["/abs/x.safetensors"]},
        {"loras": [{"name": "a", "weight": 1, "path": "/x"}]},
    ],
    ids=lambda d: str(d)[:40],
)
def test_sdcpp_extra_cannot_reach_files_or_flags(extra: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="extra"):
        sd_options.binding_options({k: v for k, v in extra.items() if k != "loras"})
        sd_options.resolve_loras(extra.get("loras"), str(tmp_path))
