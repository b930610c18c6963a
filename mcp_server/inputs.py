"""Image arguments to bytes for tool calls: the library's resolver, configured from the server's
options (``--input-root``, ``--allow-private-urls``, ``--allow-url-host``, size and time caps).
"""

from __future__ import annotations

import functools
from typing import Any

import anyio

from abstractvision import MediaStore, media
from abstractvision.inputs import ACCEPTED, ImageResolver

from .config import ServerConfig

__all__ = ["ACCEPTED", "ImageInputs"]


class ImageInputs:
    """Resolves the image fields of tool arguments against the store and the configured rules."""

    def __init__(self, config: ServerConfig, store: MediaStore) -> None:
        self.config = config
        self.store = store
        self.resolver = ImageResolver(
            store,
            roots=config.input_root,
            max_bytes=config.max_input_bytes,
            allow_private_urls=config.allow_private_urls,
            allow_hosts=config.allow_url_host,
            url_timeout_s=config.url_timeout_s,
            no_roots_hint="file paths are disabled; start the server with --input-root DIR",
        )

    @property
    def roots(self) -> list[Any]:
        return self.resolver.roots

    async def resolve(self, field: str, value: Any) -> bytes:
        """The bytes of one image argument, proven a safe, complete image (so a bad image is
        refused before it becomes a job and takes a queue place)."""
        data = await self.resolver.resolve_async(field, value)
        await anyio.to_thread.run_sync(functools.partial(media.inspect_image, data, field=field))
        return data
