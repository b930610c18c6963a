"""Image arguments to bytes: artifact ref, artifact URI, data URL, base64, sandboxed path, URL.

What tool callers (MCP, OpenAI/Anthropic tool calls) send for an image field. URLs go through
``abstractvision.net``: every address of the host must be public unless allowed, redirects are
checked the same way, size and time are capped. Paths must resolve inside an allowed root.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import stat
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx

from .artifacts import ARTIFACT_URI_PREFIX, MediaStore, is_artifact_ref
from .errors import ArtifactNotFoundError, InvalidRequestError
from .net import fetch_url, fetch_url_async
from .types import VisionRequest

__all__ = ["ACCEPTED", "ImageResolver"]

ACCEPTED = (
    "an artifact ref {'$artifact': id}, an abstractvision://artifacts/{id} URI, a data URL, "
    "base64, a file path inside an allowed root, or an http(s) URL"
)
_BASE64 = re.compile(r"^[A-Za-z0-9+/=\s_-]+$")
# Base64 of PNG, JPEG, WebP and GIF headers: such a string is data even if it starts with "/".
_B64_MAGIC = ("iVBORw0KGgo", "/9j/", "UklGR", "R0lGOD")


@dataclass(frozen=True)
class _Artifact:
    id: str


@dataclass(frozen=True)
class _Url:
    url: str


class ImageResolver:
    """Resolves image arguments against a store and the caller's rules (roots, URL policy)."""

    def __init__(
        self,
        store: MediaStore | None,
        *,
        roots: Sequence[str | Path] = (),
        max_bytes: int = 20 * 1024 * 1024,
        allow_private_urls: bool = False,
        allow_hosts: Collection[str] = (),
        url_timeout_s: float = 20.0,
        no_roots_hint: str = "file paths are disabled: allow a folder (roots=[...])",
    ) -> None:
        self.store = store
        self.roots = [Path(r).expanduser().resolve() for r in roots]
        self.max_bytes = max_bytes
        self.allow_private_urls = allow_private_urls
        self.allow_hosts = tuple(allow_hosts)
        self.url_timeout_s = url_timeout_s
        self.no_roots_hint = no_roots_hint

    def resolve(self, field: str, value: Any) -> bytes:
        """The bytes of one image argument (blocking: may read the store or fetch a URL)."""
        found = self._classify(field, value)
        if isinstance(found, _Artifact):
            return self._load(field, found.id)
        if isinstance(found, _Url):
            with httpx.Client() as client:
                return fetch_url(client, found.url, field=field, **self._url_policy())
        return found

    async def resolve_async(self, field: str, value: Any) -> bytes:
        """``resolve`` for async callers: store reads in a worker thread, URLs on httpx async."""
        found = self._classify(field, value)
        if isinstance(found, _Artifact):
            return await anyio.to_thread.run_sync(self._load, field, found.id)
        if isinstance(found, _Url):
            async with httpx.AsyncClient() as client:
                return await fetch_url_async(client, found.url, field=field, **self._url_policy())
        return found

    def resolve_request(self, cls: type[VisionRequest], args: Mapping[str, Any]) -> dict[str, Any]:
        """``args`` with every image field of ``cls`` that is set turned into bytes."""
        out = dict(args)
        for name in cls.image_fields:
            if out.get(name) is not None:
                out[name] = self.resolve(name, out[name])
        for name in cls.image_list_fields:
            if isinstance(out.get(name), list | tuple):
                out[name] = [self.resolve(f"{name}.{i}", v) for i, v in enumerate(out[name])]
        return out

    def _url_policy(self) -> dict[str, Any]:
        return {
            "max_bytes": self.max_bytes,
            "timeout_s": self.url_timeout_s,
            "allow_private": self.allow_private_urls,
            "allow_hosts": self.allow_hosts,
        }

    def _load(self, field: str, artifact_id: str) -> bytes:
        if self.store is None:
            raise InvalidRequestError(field, artifact_id, "artifact refs need a store; none is set")
        try:
            return self.store.load_bytes(artifact_id)
        except InvalidRequestError as exc:  # a malformed id: say which argument held it
            raise InvalidRequestError(field, artifact_id, f"bad artifact_id: {exc.limit}") from None
        except ArtifactNotFoundError as exc:
            raise ArtifactNotFoundError(f"{field}: {exc}") from None

    def _classify(self, field: str, value: Any) -> bytes | _Artifact | _Url:
        if is_artifact_ref(value):
            return _Artifact(str(value["$artifact"]))
        if not isinstance(value, str) or not value.strip():
            raise InvalidRequestError(field, value, f"must be {ACCEPTED}")
        text = value.strip()
        if text.startswith(ARTIFACT_URI_PREFIX):
            return _Artifact(text[len(ARTIFACT_URI_PREFIX) :])
        if text.startswith("data:"):
            header, sep, payload = text.partition(",")
            if not sep or ";base64" not in header:
                raise InvalidRequestError(
                    field, text, "a data URL must be data:<mime>;base64,<data>"
                )
            return self._b64(field, payload)
        try:
            scheme = urlsplit(text).scheme.lower()
        except ValueError as exc:  # "Invalid IPv6 URL" and the like
            raise InvalidRequestError(field, text, f"is not a valid URL ({exc})") from None
        if scheme in ("http", "https"):
            return _Url(text)
        if "://" in text:
            raise InvalidRequestError(field, text, f"unsupported scheme; must be {ACCEPTED}")
        if _looks_like_path(text):
            return self._path(field, text)
        return self._b64(field, text)

    def _b64(self, field: str, payload: str) -> bytes:
        if len(payload) > self.max_bytes * 4 // 3 + 8:
            raise InvalidRequestError(
                field, f"<{len(payload)} base64 chars>", f"must be <= {self.max_bytes} bytes"
            )
        if not _BASE64.match(payload):
            raise InvalidRequestError(field, payload, f"is not base64; must be {ACCEPTED}")
        try:
            compact = "".join(payload.split())
            padded = compact + "=" * (-len(compact) % 4)
            if "-" in compact or "_" in compact:
                return base64.urlsafe_b64decode(padded)
            return base64.b64decode(padded, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequestError(field, payload, "is not valid base64") from None

    def _path(self, field: str, text: str) -> bytes:
        if not self.roots:
            raise InvalidRequestError(field, text, self.no_roots_hint)
        if "\x00" in text:
            raise InvalidRequestError(field, text, "a path must not contain a NUL byte")
        try:
            return self._read_path(field, text)
        except InvalidRequestError:
            raise
        except (OSError, RuntimeError, ValueError) as exc:
            # Say why in words, never with the server's path the exception carries.
            raise InvalidRequestError(field, text, f"cannot be read ({_why(exc)})") from None

    def _read_path(self, field: str, text: str) -> bytes:
        path = Path(text)
        if text.startswith("~"):
            user = text[1:].split("/", 1)[0]
            try:
                path = path.expanduser()
            except RuntimeError:
                raise InvalidRequestError(field, text, f"no such user {user!r}") from None
        if not path.is_absolute():
            path = self.roots[0] / path
        resolved = path.resolve()
        if not any(resolved.is_relative_to(root) for root in self.roots):
            allowed = ", ".join(map(str, self.roots))
            raise InvalidRequestError(field, text, f"must be inside an allowed root ({allowed})")
        try:  # non-blocking open, then fstat: a FIFO or device is refused, never read
            fd = os.open(resolved, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise InvalidRequestError(field, text, "no such file") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise InvalidRequestError(field, text, "no such file")
            if info.st_size > self.max_bytes:
                raise InvalidRequestError(field, text, f"must be <= {self.max_bytes} bytes")
        except BaseException:
            os.close(fd)
            raise
        with os.fdopen(fd, "rb") as fh:
            data = fh.read(self.max_bytes + 1)
        if len(data) > self.max_bytes:
            raise InvalidRequestError(field, text, f"must be <= {self.max_bytes} bytes")
        return data


def _why(exc: BaseException) -> str:
    """An OS error in words without the path it names (errno text, or a fixed phrase)."""
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno).lower()
    if isinstance(exc, RuntimeError) and "loop" in str(exc).lower():
        return "symbolic link loop"
    if isinstance(exc, ValueError):
        return "not a valid path"
    return type(exc).__name__


def _looks_like_path(text: str) -> bool:
    if text.startswith(_B64_MAGIC) or len(text) > 4096:
        return False
    return (
        text.startswith(("/", "./", "../", "~"))
        or "\\" in text
        or bool(re.search(r"\.(png|jpe?g|webp|gif|bmp)$", text, re.IGNORECASE))
        or (len(text) < 256 and "/" in text and "." in text)
    )
