"""Artifact refs and the stores that resolve them.

A ref is a small JSON object an agent can pass to the next tool instead of bytes::

    {"$artifact": "<id>", "content_type": "image/png", "sha256": "...", "size_bytes": 1234,
     "metadata": {...}}

``MediaStore`` is the protocol every store implements. ``LocalAssetStore`` is content-addressed
on a directory; ``FsspecAssetStore`` (object_store.py) keeps the same layout on any fsspec
filesystem and shares the private helpers here; ``RuntimeArtifactStoreAdapter`` puts the protocol
over an agent runtime's store (abstractruntime's ``FileArtifactStore`` / ``InMemoryArtifactStore``
or any duck-typed one).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from . import compat
from .errors import ArtifactNotFoundError, InvalidRequestError

__all__ = [
    "ARTIFACT_URI_PREFIX",
    "LocalAssetStore",
    "MediaStore",
    "RuntimeArtifactStoreAdapter",
    "artifact_uri",
    "compute_artifact_id",
    "get_artifact_id",
    "is_artifact_ref",
    "make_media_ref",
]

ARTIFACT_URI_PREFIX = "abstractvision://artifacts/"
_LOCAL_ID = re.compile(r"^[0-9a-f]{32}$")
# What a runtime store may use as an id: no separators, no dots, bounded length.
_FOREIGN_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_EXTENSIONS = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/webp": ".webp",
    "image/gif": ".gif",
    "video/mp4": ".mp4",
    "video/webm": ".webm",
    "application/json": ".data.json",  # never <id>.json: that name is the metadata file
}


def compute_artifact_id(content: bytes) -> str:
    """Content address: the first 32 hex digits of the SHA-256 of the bytes."""
    return hashlib.sha256(content).hexdigest()[:32]


def is_artifact_ref(value: Any) -> bool:
    """True for a dict shaped like a ref: a non-empty string under ``$artifact``."""
    return (
        isinstance(value, Mapping)
        and isinstance(value.get("$artifact"), str)
        and bool(value["$artifact"])
    )


def get_artifact_id(ref: Mapping[str, Any]) -> str:
    if not is_artifact_ref(ref):
        raise InvalidRequestError("ref", ref, 'must be an artifact ref {"$artifact": id, ...}')
    return str(ref["$artifact"])


def artifact_uri(artifact_id: str) -> str:
    return f"{ARTIFACT_URI_PREFIX}{artifact_id}"


def make_media_ref(
    artifact_id: str,
    *,
    content_type: str | None = None,
    sha256: str | None = None,
    size_bytes: int | None = None,
    filename: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build a ref dict; absent fields are left out rather than set to None."""
    ref: dict[str, Any] = {"$artifact": str(artifact_id), "uri": artifact_uri(artifact_id)}
    if content_type:
        ref["content_type"] = content_type
    if sha256:
        ref["sha256"] = sha256
    if size_bytes is not None:
        ref["size_bytes"] = int(size_bytes)
    if filename:
        ref["filename"] = filename
    if metadata:
        ref["metadata"] = dict(metadata)
    return ref


@runtime_checkable
class MediaStore(Protocol):
    """Where generated media goes. ``store_bytes`` returns a ref; the rest resolve ids."""

    def store_bytes(
        self,
        content: bytes,
        *,
        content_type: str,
        metadata: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        filename: str | None = None,
    ) -> dict[str, Any]: ...

    def load_bytes(self, artifact_id: str) -> bytes: ...

    def get_metadata(self, artifact_id: str) -> dict[str, Any]: ...


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _json_safe(value: Any) -> Any:
    """Metadata must round-trip through JSON: tuples become lists, unknowns become strings."""
    if is_dataclass(value) and not isinstance(value, type):
        value = asdict(value)
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _check_local_id(artifact_id: Any) -> str:
    """A content-addressed store's id: 32 lowercase hex digits, so it can never name a path."""
    if not isinstance(artifact_id, str) or not _LOCAL_ID.match(artifact_id):
        raise InvalidRequestError(
            "artifact_id", artifact_id, "must be 32 lowercase hex digits (a LocalAssetStore id)"
        )
    return artifact_id


def _metadata_name(artifact_id: str) -> str:
    return f"{artifact_id}.json"


def _id_of_metadata_name(name: str) -> str | None:
    """The id whose metadata file is ``name``, or None for any other file (blobs, temp files)."""
    stem, dot, ext = name.rpartition(".")
    return stem if dot and ext == "json" and _LOCAL_ID.match(stem) else None


def _content_name(artifact_id: str, meta: Mapping[str, Any]) -> str:
    """The blob ``meta`` names, only ever ``<id><known extension>``: metadata cannot point away."""
    name = meta.get("content_file")
    allowed = {artifact_id + ext for ext in (*_EXTENSIONS.values(), ".bin")}
    if name not in allowed:
        raise ArtifactNotFoundError(f"artifact {artifact_id} has bad metadata (content_file)")
    return str(name)


def _new_metadata(
    content: Any,
    *,
    content_type: str,
    metadata: Mapping[str, Any] | None,
    tags: Mapping[str, str] | None,
    filename: str | None,
) -> dict[str, Any]:
    """The metadata document of a content-addressed store; its ``content_file`` is the blob name."""
    if not isinstance(content, (bytes, bytearray)):
        raise InvalidRequestError("content", type(content).__name__, "must be bytes")
    sha = hashlib.sha256(content).hexdigest()
    artifact_id = sha[:32]
    return {
        "artifact_id": artifact_id,
        "content_type": content_type,
        "sha256": sha,
        "size_bytes": len(content),
        "content_file": f"{artifact_id}{_EXTENSIONS.get(content_type, '.bin')}",
        "created_at": _now(),
        "filename": filename,
        "tags": {str(k): str(v) for k, v in (tags or {}).items()},
        "metadata": _json_safe(metadata or {}),
    }


def _encode_metadata(meta: Mapping[str, Any]) -> bytes:
    return json.dumps(meta, indent=1).encode()


def _decode_metadata(artifact_id: str, raw: bytes) -> dict[str, Any]:
    """Parse a stored metadata document; anything unusable reads as not found, never half-used."""
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise ArtifactNotFoundError(f"artifact {artifact_id} has corrupt metadata") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("sha256"), str):
        raise ArtifactNotFoundError(f"artifact {artifact_id} has corrupt metadata")
    return meta


def _verified(artifact_id: str, data: bytes, meta: Mapping[str, Any]) -> bytes:
    """``data`` when it hashes to the recorded sha256, so a ref never resolves to other bytes."""
    if hashlib.sha256(data).hexdigest() != meta["sha256"]:
        raise ArtifactNotFoundError(f"artifact {artifact_id} is corrupt (sha256 mismatch)")
    return data


def _ref_of(meta: Mapping[str, Any]) -> dict[str, Any]:
    return make_media_ref(
        meta["artifact_id"],
        content_type=meta["content_type"],
        sha256=meta["sha256"],
        size_bytes=meta["size_bytes"],
        filename=meta["filename"],
        metadata=meta["metadata"],
    )


def _newest_first(metas: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(metas, key=lambda m: m.get("created_at", ""), reverse=True)


def _inside(path: Path, base_dir: Path, artifact_id: str) -> Path:
    """``path`` itself, refused when a link takes it out of the store folder ``base_dir``."""
    if path.is_symlink() and path.resolve().parent != base_dir:
        raise ArtifactNotFoundError(f"artifact {artifact_id} points outside the store")
    return path


_READ_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)  # a FIFO opens at once instead of waiting for a writer
    | getattr(os, "O_NOFOLLOW", 0)  # the path is resolved first; a link swapped in is refused
    | getattr(os, "O_NOCTTY", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)


def _read_regular(path: Path, base_dir: Path, artifact_id: str) -> bytes:
    """The bytes of a file of the store: only a regular file directly in ``base_dir``.

    A FIFO, socket, device or folder put there (anyone with write access to a shared store
    can) is refused at once, never read: opening is non-blocking and the opened descriptor must
    be a regular file. ``FileNotFoundError`` passes through for the caller to word.
    """
    broken = ArtifactNotFoundError(
        f"artifact {artifact_id} is corrupt or missing ({path.name} is not a regular file)"
    )
    try:
        real = path.resolve(strict=True)
    except FileNotFoundError:
        raise
    except (OSError, RuntimeError):  # a link loop, a name too long
        raise broken from None
    if real.parent != base_dir:
        raise ArtifactNotFoundError(f"artifact {artifact_id} points outside the store")
    try:
        fd = os.open(real, _READ_FLAGS)
    except FileNotFoundError:
        raise
    except OSError:  # ENXIO (a socket), ELOOP (a link swapped in), EACCES...
        raise broken from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise broken
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as fh:
        return fh.read()


def _atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class LocalAssetStore:
    """Content-addressed store on a directory: ``<id><ext>`` plus ``<id>.json`` metadata.

    An artifact is visible once its metadata file exists; the blob is written (atomically)
    before it, so a crash never exposes a partial file under a valid id. Loads re-hash the bytes,
    so a ref can never resolve to bytes that disagree with its sha256.
    """

    def __init__(self, base_dir: str | os.PathLike[str] | None = None) -> None:
        if base_dir is None:
            base_dir = Path.home() / ".abstractvision" / "assets"
        self._base_dir = Path(base_dir).expanduser().resolve()
        self._base_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    @property
    def base_dir(self) -> Path:
        return self._base_dir

    def _meta_path(self, artifact_id: str) -> Path:
        return _inside(self._base_dir / _metadata_name(artifact_id), self._base_dir, artifact_id)

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
        blob = self._base_dir / meta["content_file"]
        with self._lock:
            if not blob.exists() or blob.stat().st_size != len(content):
                _atomic_write(blob, content)
            _atomic_write(self._meta_path(meta["artifact_id"]), _encode_metadata(meta))
        return _ref_of(meta)

    def get_metadata(self, artifact_id: str) -> dict[str, Any]:
        path = self._meta_path(_check_local_id(artifact_id))
        try:
            raw = _read_regular(path, self._base_dir, artifact_id)
        except FileNotFoundError:
            raise ArtifactNotFoundError(f"no artifact {artifact_id} in the store") from None
        return _decode_metadata(artifact_id, raw)

    def _content_path(self, artifact_id: str, meta: Mapping[str, Any]) -> Path:
        path = self._base_dir / _content_name(artifact_id, meta)
        return _inside(path, self._base_dir, artifact_id)

    def load_bytes(self, artifact_id: str) -> bytes:
        meta = self.get_metadata(artifact_id)
        try:
            path = self._content_path(artifact_id, meta)
            data = _read_regular(path, self._base_dir, artifact_id)
        except FileNotFoundError:
            raise ArtifactNotFoundError(f"artifact {artifact_id} has lost its content") from None
        return _verified(artifact_id, data, meta)

    def exists(self, artifact_id: str) -> bool:
        return self._meta_path(_check_local_id(artifact_id)).exists()

    def list_artifacts(self) -> list[dict[str, Any]]:
        """Metadata of every visible artifact, newest first."""
        out = []
        for path in self._base_dir.glob("*.json"):
            artifact_id = _id_of_metadata_name(path.name)
            if artifact_id is not None:
                with contextlib.suppress(ArtifactNotFoundError):
                    out.append(self.get_metadata(artifact_id))
        return _newest_first(out)

    def delete(self, artifact_id: str) -> bool:
        """Remove an artifact; False when it was not there."""
        with self._lock:
            try:
                meta = self.get_metadata(artifact_id)
            except ArtifactNotFoundError:
                return False
            self._meta_path(artifact_id).unlink(missing_ok=True)
            with contextlib.suppress(ArtifactNotFoundError):
                self._content_path(artifact_id, meta).unlink(missing_ok=True)
            return True


@compat.old_config_names({"artifact_store": compat.rename("store")})
class RuntimeArtifactStoreAdapter:
    """``MediaStore`` over an agent runtime's artifact store (duck-typed).

    The wrapped store needs ``store(content, content_type=, run_id=, tags=, metadata=)`` returning
    an object or dict with ``artifact_id``, ``load(id)`` returning bytes or an object with
    ``content``, and ``get_metadata(id)``. Generation metadata (model, task, seed, parameters) is
    passed through as ``metadata``, never dropped.
    """

    def __init__(
        self,
        store: Any,
        *,
        run_id: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        for method in ("store", "load"):  # get_metadata is optional, as in 0.3.x
            if not callable(getattr(store, method, None)):
                raise TypeError(f"runtime store {type(store).__name__} has no {method}()")
        # a store written for 0.3.x takes no metadata= (the ref still carries it)
        self._takes_metadata = compat.accepts_keyword(store.store, "metadata")
        self._store = store
        self._run_id = run_id
        self._tags = {str(k): str(v) for k, v in (tags or {}).items()}

    @property
    def store(self) -> Any:
        return self._store

    def _check_id(self, artifact_id: Any) -> str:
        if not isinstance(artifact_id, str) or not _FOREIGN_ID.match(artifact_id):
            raise InvalidRequestError(
                "artifact_id", artifact_id, "must be 1-128 letters, digits, '-' or '_'"
            )
        return artifact_id

    def store_bytes(
        self,
        content: bytes,
        *,
        content_type: str,
        metadata: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        filename: str | None = None,
    ) -> dict[str, Any]:
        content = bytes(content)
        sha = hashlib.sha256(content).hexdigest()
        meta = _json_safe({**(metadata or {}), "sha256": sha})
        if filename:
            meta["filename"] = filename
        extra_args = {"metadata": meta} if self._takes_metadata else {}
        stored = self._store.store(
            content,
            content_type=content_type,
            run_id=self._run_id,
            tags={**self._tags, **{str(k): str(v) for k, v in (tags or {}).items()}},
            **extra_args,
        )
        artifact_id = _field(stored, "artifact_id")
        return make_media_ref(
            str(artifact_id),
            content_type=content_type,
            sha256=sha,
            size_bytes=len(content),
            filename=filename,
            metadata=meta,
        )

    def load_bytes(self, artifact_id: str) -> bytes:
        loaded = self._store.load(self._check_id(artifact_id))
        if loaded is None:
            raise ArtifactNotFoundError(f"no artifact {artifact_id} in the runtime store")
        data = loaded if isinstance(loaded, (bytes, bytearray)) else _field(loaded, "content")
        return bytes(data)

    def get_metadata(self, artifact_id: str) -> dict[str, Any]:
        if not callable(getattr(self._store, "get_metadata", None)):  # a 0.3.x-style store
            data = self.load_bytes(artifact_id)
            return {"artifact_id": artifact_id, "content_type": compat.sniff_type(data)}
        meta = self._store.get_metadata(self._check_id(artifact_id))
        if meta is None:
            raise ArtifactNotFoundError(f"no artifact {artifact_id} in the runtime store")
        if hasattr(meta, "to_dict"):
            meta = meta.to_dict()
        elif is_dataclass(meta) and not isinstance(meta, type):
            meta = asdict(meta)
        out = dict(meta)
        inner = out.get("metadata") or {}
        out.setdefault("sha256", inner.get("sha256"))
        return out


def _field(obj: Any, name: str) -> Any:
    return obj[name] if isinstance(obj, Mapping) else getattr(obj, name)
