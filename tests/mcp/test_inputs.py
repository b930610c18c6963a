"""Image inputs: data URLs, base64, sandboxed paths, guarded URLs (redirects included)."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from abstractvision import InvalidRequestError, LocalAssetStore, media
from mcp_server.config import load_config
from mcp_server.inputs import ImageInputs

pytestmark = pytest.mark.anyio
PNG = media.encode_image(Image.new("RGB", (8, 8), (1, 2, 3)), "png")[0]


@pytest.fixture
def web() -> Iterator[str]:
    """Serves /img.png, /redirect (to localhost: another host) and /big on 127.0.0.1."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            port = self.server.server_address[1]
            if self.path == "/redirect":
                self.send_response(302)
                self.send_header("Location", f"http://localhost:{port}/img.png")
                self.end_headers()
                return
            body = PNG if self.path == "/img.png" else b"\0" * 10_000
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _inputs(tmp_path: Path, *flags: str) -> ImageInputs:
    cfg = load_config(["--store", str(tmp_path / "s"), *flags], environ={})
    return ImageInputs(cfg, LocalAssetStore(cfg.store))


async def test_inline_forms(tmp_path: Path) -> None:
    inputs = _inputs(tmp_path)
    b64 = base64.b64encode(PNG).decode()
    assert await inputs.resolve("image", b64) == PNG
    assert await inputs.resolve("image", f"data:image/png;base64,{b64}") == PNG
    ref = LocalAssetStore(tmp_path / "s").store_bytes(PNG, content_type="image/png")
    assert await inputs.resolve("image", ref) == PNG
    assert await inputs.resolve("image", ref["uri"]) == PNG


async def test_paths_stay_inside_roots(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.png").write_bytes(PNG)
    (tmp_path / "secret.png").write_bytes(PNG)
    (root / "link.png").symlink_to(tmp_path / "secret.png")
    inputs = _inputs(tmp_path, "--input-root", str(root))
    assert await inputs.resolve("image", str(root / "a.png")) == PNG
    assert await inputs.resolve("image", "a.png") == PNG
    for bad in ("../secret.png", str(tmp_path / "secret.png"), "link.png"):
        with pytest.raises(InvalidRequestError, match="inside an allowed root"):
            await inputs.resolve("image", bad)


async def test_urls_guarded(tmp_path: Path, web: str) -> None:
    with pytest.raises(InvalidRequestError, match="non-public") as refused:
        await _inputs(tmp_path).resolve("mask", f"{web}/img.png")
    assert refused.value.field == "mask" and str(refused.value).startswith("mask=")
    trusted = _inputs(tmp_path, "--allow-url-host", "127.0.0.1", "--max-input-bytes", "5000")
    assert await trusted.resolve("image", f"{web}/img.png") == PNG
    with pytest.raises(InvalidRequestError, match="localhost resolves to the non-public"):
        await trusted.resolve("image", f"{web}/redirect")
    with pytest.raises(InvalidRequestError, match="5000 bytes"):
        await trusted.resolve("image", f"{web}/big")
    everything = _inputs(tmp_path, "--allow-private-urls")
    assert await everything.resolve("image", f"{web}/redirect") == PNG
