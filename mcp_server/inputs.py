"""Image arguments to bytes for tool calls: the library's resolver, configured from the server's
options (``--input-root``, ``--allow-private-urls``, ``--allow-url-host``, size and time caps).
"""

from __future__ import annotations

from typing import Any

from abstractvision import MediaStore
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
        return await self.resolver.resolve_async(field, value)
