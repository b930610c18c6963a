"""Image arguments to bytes: artifact ref, artifact URI, data URL, base64, sandboxed path, URL.

URLs go through the library's guard (``abstractvision.net``): every address of the host must be
public unless allowed, the connection goes to the checked address, redirects are checked the
same way, and size and time are capped.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx

from abstractvision import InvalidRequestError, MediaStore, is_artifact_ref
from abstractvision.artifacts import ARTIFACT_URI_PREFIX
from abstractvision.net import fetch_url_async

from .config import ServerConfig

ACCEPTED = (
    "an artifact ref {'$artifact': id}, an abstractvision://artifacts/{id} URI, a data URL, "
    "base64, a file path inside an allowed root, or an http(s) URL"
)
_BASE64 = re.compile(r"^[A-Za-z0-9+/=\s_-]+$")


class ImageInputs:
    """Resolves the image fields of tool arguments against the store and the configured rules."""

    def __init__(self, config: ServerConfig, store: MediaStore) -> None:
        self.config = config
        self.store = store
        self.roots = [Path(r).expanduser().resolve() for r in config.input_root]

    async def resolve(self, field: str, value: Any) -> bytes:
        if is_artifact_ref(value):
            return await self._artifact(field, str(value["$artifact"]))
        if isinstance(value, Mapping):
            raise InvalidRequestError(field, value, f"must be {ACCEPTED}")
        if not isinstance(value, str) or not value.strip():
            raise InvalidRequestError(field, value, f"must be {ACCEPTED}")
        text = value.strip()
        if text.startswith(ARTIFACT_URI_PREFIX):
            return await self._artifact(field, text[len(ARTIFACT_URI_PREFIX) :])
        if text.startswith("data:"):
            header, sep, payload = text.partition(",")
            if not sep or ";base64" not in header:
                raise InvalidRequestError(
                    field, text, "a data URL must be data:<mime>;base64,<data>"
                )
            return self._b64(field, payload)
        scheme = urlsplit(text).scheme.lower()
        if scheme in ("http", "https"):
            return await self._url(field, text)
        if "://" in text:
            raise InvalidRequestError(field, text, f"unsupported scheme; must be {ACCEPTED}")
        if _looks_like_path(text):
            return self._path(field, text)
        return self._b64(field, text)

    async def _artifact(self, field: str, artifact_id: str) -> bytes:
        return await anyio.to_thread.run_sync(self.store.load_bytes, artifact_id)

    def _b64(self, field: str, payload: str) -> bytes:
        limit = self.config.max_input_bytes
        if len(payload) > limit * 4 // 3 + 8:
            raise InvalidRequestError(
                field, f"<{len(payload)} base64 chars>", f"must be <= {limit} bytes"
            )
        if not _BASE64.match(payload):
            raise InvalidRequestError(field, payload, f"is not base64; must be {ACCEPTED}")
        try:
            compact = "".join(payload.split())
            if "-" in compact or "_" in compact:
                return base64.urlsafe_b64decode(compact + "=" * (-len(compact) % 4))
            return base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequestError(field, payload, "is not valid base64") from None

    def _path(self, field: str, text: str) -> bytes:
        if not self.roots:
            raise InvalidRequestError(
                field, text, "file paths are disabled; start the server with --input-root DIR"
            )
        path = Path(text).expanduser()
        if not path.is_absolute():
            path = self.roots[0] / path
        resolved = path.resolve()
        if not any(resolved.is_relative_to(root) for root in self.roots):
            allowed = ", ".join(map(str, self.roots))
            raise InvalidRequestError(field, text, f"must be inside an allowed root ({allowed})")
        if not resolved.is_file():
            raise InvalidRequestError(field, text, "no such file")
        size = resolved.stat().st_size
        if size > self.config.max_input_bytes:
            raise InvalidRequestError(
                field, text, f"must be <= {self.config.max_input_bytes} bytes"
            )
        return resolved.read_bytes()

    async def _url(self, field: str, url: str) -> bytes:
        cfg = self.config
        async with httpx.AsyncClient() as client:
            return await fetch_url_async(
                client,
                url,
                max_bytes=cfg.max_input_bytes,
                timeout_s=cfg.url_timeout_s,
                allow_private=cfg.allow_private_urls,
                allow_hosts=cfg.allow_url_host,
                field=field,
            )


# Base64 of PNG, JPEG, WebP and GIF headers: such a string is data even if it starts with "/".
_B64_MAGIC = ("iVBORw0KGgo", "/9j/", "UklGR", "R0lGOD")


def _looks_like_path(text: str) -> bool:
    if text.startswith(_B64_MAGIC) or len(text) > 4096:
        return False
    return (
        text.startswith(("/", "./", "../", "~"))
        or "\\" in text
        or bool(re.search(r"\.(png|jpe?g|webp|gif|bmp)$", text, re.IGNORECASE))
        or (len(text) < 256 and "/" in text and "." in text)
    )
