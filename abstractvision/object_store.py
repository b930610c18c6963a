"""``FsspecAssetStore``: the content-addressed artifact store on any fsspec filesystem.

Several front ends and replicas (Ray Serve scale-out) share one store. A shared directory works
with ``LocalAssetStore``; this store does the same on ``s3://bucket/prefix``, ``gs://...``,
``memory://name`` or ``file:///dir``, with the same ids, file layout (``<id><ext>`` plus
``<id>.json``), metadata document and refs, so either store can read what the other wrote.

fsspec and the protocol's package (s3fs for ``s3://``) are imported when a store is built, never
at ``import abstractvision``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .artifacts import (
    LocalAssetStore,
    MediaStore,
    _atomic_write,
    _check_local_id,
    _content_name,
    _decode_metadata,
    _encode_metadata,
    _id_of_metadata_name,
    _inside,
    _metadata_name,
    _new_metadata,
    _newest_first,
    _read_regular,
    _ref_of,
    _verified,
)
from .errors import ArtifactNotFoundError, InvalidRequestError, OptionalDependencyMissingError

__all__ = ["FsspecAssetStore", "open_store"]


class FsspecAssetStore:
    """Content-addressed store under an fsspec URL; an artifact is visible once its metadata is.

    Writes put the blob first and the metadata document last, each whole: on a filesystem with
    atomic rename (local disk) through a temporary file, fsync and rename; elsewhere as one PUT,
    which object stores publish whole or not at all. A failed write therefore never writes the
    metadata, and no reader can see a partial artifact. Loads re-hash the bytes.
    """

    def __init__(self, url: str, *, storage_options: Mapping[str, Any] | None = None) -> None:
        feature = f"the artifact store {url}"
        try:
            import fsspec
            from fsspec.implementations.local import LocalFileSystem
            from fsspec.registry import known_implementations
        except ImportError:
            raise OptionalDependencyMissingError("fsspec", "s3", feature=feature) from None
        try:
            fs, root = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
        except ImportError:  # the protocol's own package (s3fs, gcsfs, ...) is missing
            protocol = url.split("://", 1)[0]
            known = known_implementations.get(protocol, {})
            package = str(known.get("class", protocol)).split(".")[0]
            extra = "s3" if package == "s3fs" else None  # the only protocol package we ship
            raise OptionalDependencyMissingError(package, extra, feature=feature) from None
        except ValueError as exc:  # "Protocol not known"
            raise InvalidRequestError("store", url, str(exc)) from None
        self._url = url.rstrip("/")
        self._fs = fs
        self._root = str(root).rstrip("/")
        # Local disk has rename; an object store has no rename but publishes each PUT whole.
        self._local_dir = Path(self._root).resolve() if isinstance(fs, LocalFileSystem) else None
        if self._local_dir is not None:
            self._local_dir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return self._url

    @property
    def fs(self) -> Any:
        """The fsspec filesystem (for tests and tools; the layout is ``<id><ext>``, ``<id>.json``)."""
        return self._fs

    def _path(self, name: str, artifact_id: str) -> str:
        path = f"{self._root}/{name}"
        if self._local_dir is not None:
            _inside(Path(path), self._local_dir, artifact_id)
        return path

    def _cat(self, path: str, artifact_id: str) -> bytes:
        """A file's bytes; on local disk only a regular file, opened without blocking."""
        if self._local_dir is not None:
            return _read_regular(Path(path), self._local_dir, artifact_id)
        return bytes(self._fs.cat_file(path))

    def _put(self, path: str, data: bytes) -> None:
        if self._local_dir is not None:
            _atomic_write(Path(path), data)  # temp + fsync + rename, as LocalAssetStore does
        else:
            self._fs.pipe_file(path, data)  # a single PUT: the object appears whole or not at all

    def _fresh(self, path: str) -> str:
        """Drop fsspec's cached listing: another process may have written since it was taken."""
        self._fs.invalidate_cache(path)
        return path

    def store_bytes(
        self,
        content: bytes,
        *,
        content_type: str,
        metadata: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        filename: str | None = None,
    ) -> dict[str, Any]:
        meta = _new_metadata(
            content, content_type=content_type, metadata=metadata, tags=tags, filename=filename
        )
        content = bytes(content)
        artifact_id = meta["artifact_id"]
        blob = self._fresh(self._path(meta["content_file"], artifact_id))
        try:
            same = self._fs.size(blob) == len(content)
        except FileNotFoundError:
            same = False
        if not same:
            self._put(blob, content)
        # Last: from here on readers see the artifact. A blob left by a failed metadata write is
        # not removed, since a concurrent writer of the same bytes may already point at it.
        self._put(self._path(_metadata_name(artifact_id), artifact_id), _encode_metadata(meta))
        return _ref_of(meta)

    def get_metadata(self, artifact_id: str) -> dict[str, Any]:
        _check_local_id(artifact_id)
        try:
            raw = self._cat(self._path(_metadata_name(artifact_id), artifact_id), artifact_id)
        except FileNotFoundError:
            raise ArtifactNotFoundError(f"no artifact {artifact_id} in the store") from None
        return _decode_metadata(artifact_id, raw)

    def load_bytes(self, artifact_id: str) -> bytes:
        meta = self.get_metadata(artifact_id)
        try:
            path = self._path(_content_name(artifact_id, meta), artifact_id)
            data = self._cat(path, artifact_id)
        except FileNotFoundError:
            raise ArtifactNotFoundError(f"artifact {artifact_id} has lost its content") from None
        return _verified(artifact_id, bytes(data), meta)

    def exists(self, artifact_id: str) -> bool:
        path = self._path(_metadata_name(_check_local_id(artifact_id)), artifact_id)
        return bool(self._fs.exists(self._fresh(path)))

    def list_artifacts(self) -> list[dict[str, Any]]:
        """Metadata of every visible artifact, newest first."""
        try:
            names = self._fs.ls(self._fresh(self._root), detail=False)
        except FileNotFoundError:  # nothing written yet under this prefix
            return []
        out = []
        for name in names:
            artifact_id = _id_of_metadata_name(str(name).rstrip("/").rsplit("/", 1)[-1])
            if artifact_id is not None:
                with contextlib.suppress(ArtifactNotFoundError):
                    out.append(self.get_metadata(artifact_id))
        return _newest_first(out)

    def delete(self, artifact_id: str) -> bool:
        """Remove an artifact, metadata first so it is never visible without its blob."""
        try:
            meta = self.get_metadata(artifact_id)
        except ArtifactNotFoundError:
            return False
        with contextlib.suppress(FileNotFoundError):
            self._fs.rm_file(self._path(_metadata_name(artifact_id), artifact_id))
        with contextlib.suppress(FileNotFoundError, ArtifactNotFoundError):
            self._fs.rm_file(self._path(_content_name(artifact_id, meta), artifact_id))
        return True


def open_store(
    spec: str | os.PathLike[str] | None, storage_options: Mapping[str, Any] | None = None
) -> MediaStore:
    """``--store``: a URL (anything with ``://``) is an ``FsspecAssetStore``, else a folder.

    ``None`` is the default folder (~/.abstractvision/assets). Options only make sense for a URL,
    so they are refused with a folder rather than silently ignored.
    """
    if spec is not None and "://" in str(spec):
        return FsspecAssetStore(str(spec), storage_options=storage_options)
    if storage_options:
        raise InvalidRequestError(
            "--store-option",
            sorted(storage_options),  # keys only: values may be secrets
            "applies only to a URL --store (s3://...)",
        )
    return LocalAssetStore(spec)
