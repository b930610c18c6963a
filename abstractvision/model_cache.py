"""0.3.34's ``abstractvision.model_cache``: questions about the Hugging Face cache on disk.

0.4 reads huggingface_hub's cache as it is (``pull``, ``models --installed``, ``rm`` in
``model_downloads``); this module keeps 0.3.34's public names for callers that ask whether a
repo's snapshot is usable (weights present, no ``.incomplete`` download, every shard a
``*.index.json`` names on disk) or that move a model folder of the 0.3.x ``~/models`` layout
into the cache. No network.

Cache roots, in order: ``cache_dir`` when given ("configured cache"), then this process's Hub
cache ("default HF cache": ``HF_HUB_CACHE``, else ``HF_HOME``/hub, else
``~/.cache/huggingface/hub``, read when called so a changed environment is seen).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from .model_downloads import _is_weight

__all__ = [
    "cached_hf_model_sources",
    "default_hf_cache_root",
    "ensure_hf_repo_snapshot",
    "hf_cache_roots",
    "hf_repo_dir",
    "hf_snapshot_has_incomplete_downloads",
    "hf_snapshot_has_weight_files",
    "hf_snapshot_is_usable",
    "hf_snapshot_missing_indexed_weight_files",
    "import_directory_to_hf_cache",
    "incomplete_hf_model_sources",
    "resolve_hf_repo_snapshot",
]


def default_hf_cache_root() -> Path:
    """The Hub cache this process writes to (``HF_HUB_CACHE``, ``HF_HOME``/hub, or the default)."""
    env = os.environ
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    return Path.home() / ".cache" / "huggingface" / "hub"


def hf_cache_roots(
    *, cache_dir: str | os.PathLike[str] | None = None, extra_roots: Sequence[object] | None = None
) -> list[tuple[str, Path]]:
    """(label, folder) of every cache root searched, without duplicates."""
    found: list[tuple[str, Path]] = []
    wanted: list[tuple[str, object]] = []
    if cache_dir:
        wanted.append(("configured cache", cache_dir))
    wanted.append(("default HF cache", default_hf_cache_root()))
    for root in extra_roots or ():
        wanted.append(tuple(root) if isinstance(root, tuple) else ("extra cache root", root))  # type: ignore[arg-type]
    seen: set[str] = set()
    for label, value in wanted:
        path = Path(str(value)).expanduser()
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            found.append((str(label), path))
    return found


def _folder_name(repo_id: str) -> str:
    return "models--" + str(repo_id).strip().replace("/", "--")


def hf_repo_dir(repo_id: str, *, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """``<cache>/models--org--name``: where the Hub cache keeps one repo."""
    root = Path(cache_dir).expanduser() if cache_dir else default_hf_cache_root()
    return root / _folder_name(repo_id)


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []


def hf_snapshot_has_incomplete_downloads(snapshot_dir: Path | str) -> bool:
    """An ``.incomplete`` file in the snapshot's download state or in its repo's blobs."""
    snap = Path(snapshot_dir)
    places = [snap / ".cache" / "huggingface" / "download"]
    if snap.parent.name == "snapshots":
        places.append(snap.parent.parent / "blobs")
    return any(p.name.endswith(".incomplete") for place in places for p in _files(place))


def _content(snap: Path) -> list[Path]:
    """Files of the snapshot itself (not huggingface_hub's ``.cache`` bookkeeping)."""
    return [p for p in _files(snap) if ".cache" not in p.relative_to(snap).parts]


def hf_snapshot_has_weight_files(snapshot_dir: Path | str) -> bool:
    """At least one weights file (safetensors, bin, gguf, ...) in the snapshot."""
    return any(_is_weight(p.name) and p.is_file() for p in _content(Path(snapshot_dir)))


def hf_snapshot_missing_indexed_weight_files(snapshot_dir: Path | str) -> list[str]:
    """Shards a ``*.index.json`` of the snapshot names that are not on disk (snapshot-relative)."""
    snap = Path(snapshot_dir)
    missing: set[str] = set()
    for index in _content(snap):
        if not index.name.endswith(".index.json"):
            continue
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map") or {}
        except (OSError, ValueError, AttributeError):
            continue
        for shard in set(weight_map.values()) if isinstance(weight_map, dict) else ():
            if not (index.parent / str(shard)).is_file():
                missing.add((index.parent / str(shard)).relative_to(snap).as_posix())
    return sorted(missing)


def hf_snapshot_is_usable(
    snapshot_dir: Path | str,
    *,
    required_files: Sequence[str] | None = None,
    require_weight_files: bool = False,
    reject_incomplete: bool = True,
) -> bool:
    """The snapshot has ``required_files``, weights when asked, and no unfinished download."""
    snap = Path(snapshot_dir)
    if not snap.is_dir() or any(not (snap / name).is_file() for name in required_files or ()):
        return False
    if require_weight_files and not hf_snapshot_has_weight_files(snap):
        return False
    if reject_incomplete and hf_snapshot_has_incomplete_downloads(snap):
        return False
    return not (require_weight_files and hf_snapshot_missing_indexed_weight_files(snap))


def _snapshot_of(repo_dir: Path, revision: str | None = None) -> Path | None:
    snapshots = repo_dir / "snapshots"
    if not snapshots.is_dir():
        return None
    for ref in dict.fromkeys(r for r in (revision, "main") if r):
        pointer = repo_dir / "refs" / ref
        name = pointer.read_text(encoding="utf-8").strip() if pointer.is_file() else ref
        if (snapshots / name).is_dir():
            return snapshots / name
    folders = [p for p in snapshots.iterdir() if p.is_dir()]
    return max(folders, key=lambda p: p.stat().st_mtime) if folders else None


def _snapshots(repo_id: str, cache_dir, revision, extra_roots) -> list[tuple[str, Path]]:
    out = []
    if "/" in str(repo_id or ""):
        for label, root in hf_cache_roots(cache_dir=cache_dir, extra_roots=extra_roots):
            snap = _snapshot_of(root / _folder_name(repo_id), revision)
            if snap is not None:
                out.append((label, snap))
    return out


def cached_hf_model_sources(
    model_id: str,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    extra_roots: Sequence[object] | None = None,
    required_files: Sequence[str] | None = None,
    require_weight_files: bool = False,
    reject_incomplete: bool = True,
) -> list[str]:
    """Labels of the cache roots holding a usable snapshot of ``model_id``."""
    return [
        label
        for label, snap in _snapshots(model_id, cache_dir, None, extra_roots)
        if hf_snapshot_is_usable(
            snap,
            required_files=required_files,
            require_weight_files=require_weight_files,
            reject_incomplete=reject_incomplete,
        )
    ]


def incomplete_hf_model_sources(
    model_id: str,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    extra_roots: Sequence[object] | None = None,
    required_files: Sequence[str] | None = None,
    require_weight_files: bool = False,
    reject_incomplete: bool = True,
) -> list[str]:
    """Labels of the cache roots where ``model_id`` was started but is not usable."""
    out = []
    name = _folder_name(model_id)
    for label, root in hf_cache_roots(cache_dir=cache_dir, extra_roots=extra_roots):
        snap = _snapshot_of(root / name)
        if snap is None:
            if (root / name).exists() or (root / ".locks" / name).exists():
                out.append(label)
        elif not hf_snapshot_is_usable(
            snap,
            required_files=required_files,
            require_weight_files=require_weight_files,
            reject_incomplete=reject_incomplete,
        ):
            out.append(label)
    return out


def resolve_hf_repo_snapshot(
    repo_id: str,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    revision: str | None = None,
    extra_roots: Sequence[object] | None = None,
    required_files: Sequence[str] | None = None,
    require_weight_files: bool = False,
    reject_incomplete: bool = True,
) -> Path | None:
    """The first usable snapshot of ``repo_id`` across the cache roots, or None."""
    for _, snap in _snapshots(repo_id, cache_dir, revision, extra_roots):
        if hf_snapshot_is_usable(
            snap,
            required_files=required_files,
            require_weight_files=require_weight_files,
            reject_incomplete=reject_incomplete,
        ):
            return snap
    return None


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def import_directory_to_hf_cache(
    source_dir: Path | str,
    *,
    repo_id: str,
    cache_dir: str | os.PathLike[str] | None = None,
    ref_name: str = "main",
    cleanup_source: bool = True,
) -> Path:
    """Move (or copy, with ``cleanup_source=False``) a model folder into a cache snapshot."""
    source = Path(source_dir).expanduser()
    if not source.is_dir():
        raise FileNotFoundError(f"model folder {source.name!r} does not exist")
    repo = hf_repo_dir(repo_id, cache_dir=cache_dir)
    name = hashlib.sha1(f"{repo_id}\0{source.resolve()}".encode()).hexdigest()
    snap = repo / "snapshots" / name
    if not snap.exists():
        snap.parent.mkdir(parents=True, exist_ok=True)
        staging = snap.with_name(name + ".importing")
        _remove(staging)
        try:
            if cleanup_source:
                try:
                    source.rename(staging)
                except OSError:
                    shutil.copytree(source, staging)
            else:
                shutil.copytree(source, staging)
            staging.rename(snap)
        except BaseException:
            _remove(staging)  # no half-imported snapshot
            raise
    if cleanup_source and source.exists() and source.resolve() != snap.resolve():
        _remove(source)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / ref_name).write_text(name, encoding="utf-8")
    return snap


def ensure_hf_repo_snapshot(
    repo_id: str,
    *,
    source_dir: Path | str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    revision: str | None = None,
    extra_roots: Sequence[object] | None = None,
    ref_name: str = "main",
    cleanup_source: bool = True,
    required_files: Sequence[str] | None = None,
    require_weight_files: bool = False,
    reject_incomplete: bool = True,
) -> Path | None:
    """A usable cached snapshot of ``repo_id``; else ``source_dir`` imported into the cache."""
    snap = resolve_hf_repo_snapshot(
        repo_id,
        cache_dir=cache_dir,
        revision=revision,
        extra_roots=extra_roots,
        required_files=required_files,
        require_weight_files=require_weight_files,
        reject_incomplete=reject_incomplete,
    )
    source = Path(source_dir).expanduser() if source_dir is not None else None
    if snap is not None:
        if (
            source is not None
            and cleanup_source
            and source.exists()
            and source.resolve() != snap.resolve()
        ):
            _remove(source)
        return snap
    if source is None or not source.is_dir():
        return None
    return import_directory_to_hf_cache(
        source,
        repo_id=repo_id,
        cache_dir=cache_dir,
        ref_name=ref_name,
        cleanup_source=cleanup_source,
    )
