"""Models on demand: pull what one engine needs from the Hugging Face Hub, list it, remove it.

``pull(model, engine)`` downloads into the Hub cache (``HF_HOME`` / ``HF_HUB_CACHE``), the same
place ``from_pretrained(local_files_only=True)`` reads:

- Diffusers: the files the pipeline loads, read from ``model_index.json``: each component's
  config and tokenizer files and ONE set of weights (safetensors before ``.bin``, the plain files
  before a variant such as fp16; no single-file checkpoints, ONNX or Flax copies).
- stable-diffusion.cpp: the file of each role the registry's ``engines.sdcpp.sources`` names
  (diffusion model, VAE, text encoders), GGUF roles in the quantization asked.

Every file is resumable (a ``<blob>.incomplete`` file survives an interruption and the next pull
asks the Hub for the rest with ``Range``) and checked against the Hub's checksum (sha256 for LFS
files, the git blob id otherwise) before it enters the cache. ``HF_TOKEN`` and ``HF_ENDPOINT``
are honoured through huggingface_hub; a gated repo gives a message naming its licence page.
Progress and cancellation travel in a ``GenerationControl``; concurrent pulls of the same model
in one process share one download.

0.3.34's ``find_model_preset`` (imported by AbstractCore 2.30) is kept: it maps a short preset
name to the Hub repo an engine uses.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from .control import GenerationControl
from .errors import AbstractVisionError, InvalidRequestError, UnknownModelError
from .model_capabilities import ModelCapabilities, VisionModelCapabilitiesRegistry

__all__ = [
    "ENGINES",
    "HuggingFaceAccessError",
    "InstalledModel",
    "ModelAccessError",
    "ModelDownloadError",
    "ModelPreset",
    "PlannedFile",
    "PullPlan",
    "PulledModel",
    "SdcppFilesMissingError",
    "SdcppModelSelection",
    "ensure_model",
    "find_model_preset",
    "format_bytes",
    "installed_models",
    "local_files",
    "local_model_profile",
    "looks_like_hub_id",
    "model_presets",
    "plan_pull",
    "pull",
    "pull_command",
    "registry_presets",
    "remove_model",
    "resolve_model_name",
    "resolve_sdcpp_model_selection",
    "sdcpp_hub_config",
]

log = logging.getLogger(__name__)

ENGINES = ("diffusers", "sdcpp")
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_WEIGHT_SUFFIXES = (
    ".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".msgpack", ".h5", ".onnx", ".onnx_data",
    ".pb", ".gguf", ".mlmodel", ".ot", ".tflite",
)  # fmt: skip
_WEIGHT_STEMS = ("diffusion_pytorch_model", "model", "pytorch_model", "tf_model", "flax_model")
_SKIP_DIRS = {"onnx", "flax", "openvino", "coreml", ".git"}
_REPORT_EVERY_S = 0.2


class ModelAccessError(AbstractVisionError):
    """A gated or private repo this token may not read; the message names the licence page."""


class ModelDownloadError(AbstractVisionError):
    """A download failed (network, checksum mismatch, disk); the next pull resumes it."""


def looks_like_hub_id(value: str | None) -> bool:
    """``owner/name`` that is not an existing local path."""
    return bool(value) and bool(_HUB_ID.match(str(value))) and not Path(str(value)).exists()


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


# --- plans -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedFile:
    """One file of one repo at one commit, with the checksum the Hub publishes for it."""

    repo_id: str
    commit: str
    path: str
    size: int | None
    sha256: str | None = None  # LFS files
    blob_id: str | None = None  # git blob sha1 (every file)
    role: str | None = None  # sd.cpp role


@dataclass
class PullPlan:
    """What ``pull`` will fetch: the files, and for sd.cpp which file fills each role."""

    model: str
    engine: str
    quant: str | None
    files: list[PlannedFile]
    revision: str = "main"
    variant: str | None = None
    notes: list[str] = field(default_factory=list)
    fetched_bytes: int = 0  # downloaded while planning (model_index.json)
    repo_files: int = 0  # what the repos hold in all (a Diffusers pull skips the rest)
    repo_bytes: int = 0

    @property
    def total_bytes(self) -> int:
        return sum(f.size or 0 for f in self.files)


@dataclass(frozen=True)
class PulledModel:
    """A model on disk: ``paths`` is role -> file for sd.cpp, ``{"model": folder}`` for Diffusers."""

    model: str
    engine: str
    quant: str | None
    paths: dict[str, str]
    total_bytes: int
    downloaded_bytes: int
    variant: str | None = None
    files: int = 0
    repo_files: int = 0  # the main repo's files in all (0 when not known)
    repo_bytes: int = 0


def _registry(registry: VisionModelCapabilitiesRegistry | None) -> VisionModelCapabilitiesRegistry:
    return registry if registry is not None else VisionModelCapabilitiesRegistry()


def _check_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise InvalidRequestError("engine", engine, f"must be one of {', '.join(ENGINES)}")
    return engine


def _resolve(
    model: str, engine: str, registry: VisionModelCapabilitiesRegistry | None
) -> tuple[str, VisionModelCapabilitiesRegistry]:
    """The first step of plan/pull/local_files: check ``engine``, resolve a short model name."""
    _check_engine(engine)
    registry = _registry(registry)
    return resolve_model_name(model, registry), registry


def _hub() -> Any:
    try:
        import huggingface_hub
        import huggingface_hub.constants
        import huggingface_hub.errors
        import huggingface_hub.file_download
        import huggingface_hub.utils
    except ImportError:  # pragma: no cover - a dependency of every engine extra
        from .errors import OptionalDependencyMissingError

        raise OptionalDependencyMissingError(
            "huggingface_hub", "sdcpp", feature="model downloads"
        ) from None
    return huggingface_hub


def _endpoint(endpoint: str | None) -> str:
    return (endpoint or _hub().constants.ENDPOINT).rstrip("/")


def _cache(cache_dir: str | os.PathLike[str] | None) -> Path:
    return Path(cache_dir) if cache_dir else Path(_hub().constants.HF_HUB_CACHE)


def _translate(exc: Exception, repo_id: str, endpoint: str | None) -> AbstractVisionError:
    """huggingface_hub errors -> ours, with what to do next."""
    errors = _hub().errors
    page = f"{_endpoint(endpoint)}/{repo_id}"
    if isinstance(exc, errors.GatedRepoError):
        return ModelAccessError(
            f"{repo_id} is gated: accept its licence at {page} with your account, then set "
            "HF_TOKEN to a token of that account (or run `hf auth login`)"
        )
    if isinstance(exc, errors.RevisionNotFoundError):
        return UnknownModelError(f"{repo_id} has no such revision ({exc.__class__.__name__})")
    if isinstance(exc, errors.RemoteEntryNotFoundError):
        return UnknownModelError(f"{repo_id}: file not found on the Hub: {_short(exc)}")
    if isinstance(exc, errors.RepositoryNotFoundError):
        return UnknownModelError(
            f"{repo_id} was not found on the Hub (or it is private: set HF_TOKEN to a token "
            f"that may read it; see {page})"
        )
    if isinstance(exc, errors.OfflineModeIsEnabled) or "offline" in type(exc).__name__.lower():
        return ModelDownloadError(
            f"cannot download {repo_id}: HF_HUB_OFFLINE is set; unset it to pull models"
        )
    return ModelDownloadError(f"download of {repo_id} failed: {_short(exc)}; run the pull again")


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


def _repo_files(
    repo_id: str, revision: str, token: str | bool | None, endpoint: str | None
) -> tuple[str, dict[str, PlannedFile]]:
    """(commit, path -> file) from the Hub's model info with file metadata."""
    hub = _hub()
    api = hub.HfApi(endpoint=endpoint, token=token)
    try:
        info = api.model_info(repo_id, revision=revision, files_metadata=True)
    except Exception as exc:
        raise _translate(exc, repo_id, endpoint) from None
    commit = str(info.sha or revision)
    files: dict[str, PlannedFile] = {}
    for sibling in info.siblings or []:
        lfs = sibling.lfs
        files[sibling.rfilename] = PlannedFile(
            repo_id=repo_id,
            commit=commit,
            path=sibling.rfilename,
            size=(lfs.size if lfs is not None else sibling.size),
            sha256=(lfs.sha256 if lfs is not None else None),
            blob_id=sibling.blob_id,
        )
    return commit, files


def _is_weight(path: str) -> bool:
    return path.lower().endswith(_WEIGHT_SUFFIXES)


def _weight_group(name: str) -> tuple[str, str | None] | None:
    """('safetensors'|'bin'|..., variant) of a weights or weights-index file name, None otherwise.

    ``diffusion_pytorch_model.fp16.safetensors``, ``model.fp16-00001-of-00002.safetensors`` and
    ``model.safetensors.index.fp16.json`` are fp16; without the middle part, no variant.
    """
    lower = name.lower()
    index = re.match(
        r"^(?P<stem>[a-z_]+)\.(?P<fmt>safetensors|bin)\.index(?:\.(?P<v>\w+))?\.json$", lower
    )
    if index:
        return index.group("fmt"), index.group("v")
    if not _is_weight(lower):
        return None
    fmt = lower.rsplit(".", 1)[1]
    stem = lower[: -len(fmt) - 1]
    stem = re.sub(r"-\d{5}-of-\d{5}$", "", stem)
    parts = stem.split(".")
    if len(parts) == 2 and parts[0] in _WEIGHT_STEMS:
        return fmt, parts[1]
    if len(parts) == 1 and parts[0] in _WEIGHT_STEMS:
        return fmt, None
    return fmt, "other:" + stem  # an unusual file: never chosen over the standard names


def _pick_weights(names: list[str], variant: str | None) -> tuple[list[str], str | None]:
    """One set of weights for one component: (file names, the variant chosen)."""
    groups: dict[tuple[str, str | None], list[str]] = {}
    for name in names:
        group = _weight_group(name)
        if group is not None:
            groups.setdefault(group, []).append(name)
    order: list[tuple[str, str | None]] = []
    for fmt in ("safetensors", "bin"):
        if variant:
            order.append((fmt, variant))
        order.append((fmt, None))
    for fmt in ("safetensors", "bin"):  # a component published only as a variant
        order += [(fmt, v) for v in ("bf16", "fp16", "fp32") if v != variant]
    for key in order:
        chosen = [n for n in groups.get(key, []) if _is_weight(n)]
        if chosen:
            return sorted(groups[key]), key[1]
    return [], None


def _diffusers_plan(
    repo_id: str,
    commit: str,
    files: dict[str, PlannedFile],
    index: dict[str, Any],
    variant: str | None,
) -> tuple[list[PlannedFile], str | None, list[str]]:
    components = [
        name
        for name, value in index.items()
        if not name.startswith("_")
        and isinstance(value, list)
        and len(value) == 2
        and value[0] is not None
        and value[1] is not None
    ]
    chosen = ["model_index.json"]
    notes: list[str] = []
    used_variant: str | None = None
    for component in components:
        inside = [p for p in files if PurePosixPath(p).parts[:1] == (component,)]
        direct = [p for p in inside if len(PurePosixPath(p).parts) == 2]
        nested = [p for p in inside if len(PurePosixPath(p).parts) > 2]
        chosen += [p for p in direct if _weight_group(PurePosixPath(p).name) is None]
        # tokenizers may keep files one level down; weights never are loaded from there
        chosen += [
            p for p in nested if PurePosixPath(p).parts[1] not in _SKIP_DIRS and not _is_weight(p)
        ]
        names = [PurePosixPath(p).name for p in direct]
        weights, picked = _pick_weights(names, variant)
        if picked is not None:
            used_variant = used_variant or picked
        chosen += [f"{component}/{w}" for w in weights]
        if not weights and any(_weight_group(n) for n in names):
            notes.append(f"{component}: no loadable weights found")
    seen: set[str] = set()
    out = []
    for path in chosen:
        if path in files and path not in seen:
            seen.add(path)
            out.append(files[path])
    return out, used_variant, notes


def _quant_regex(pattern: str) -> re.Pattern[str]:
    """A registry file pattern (``*`` globs, ``{quant}``) as a regex capturing the quant."""

    def glob(text: str) -> str:
        return ".*".join(re.escape(part) for part in text.split("*"))

    head, found, tail = pattern.partition("{quant}")
    if not found:
        return re.compile(glob(pattern), re.IGNORECASE)
    return re.compile(glob(head) + r"(?P<quant>[A-Za-z0-9_]+?)" + glob(tail), re.IGNORECASE)


def _match_source(
    names: Iterable[str], pattern: str, quant: str | None
) -> tuple[str | None, list[str]]:
    """(the file for ``quant``, every quant the pattern matches) among ``names``."""
    regex = _quant_regex(pattern)
    found: dict[str, str] = {}
    plain: list[str] = []
    for name in sorted(names, key=len):
        match = regex.fullmatch(name)
        if match is None:
            continue
        got = match.groupdict().get("quant")
        if got is None:
            plain.append(name)
        else:
            found.setdefault(got.lower(), name)
    if "{quant}" not in pattern:
        return (plain[0] if plain else None), []
    quants = sorted({regex.fullmatch(n).group("quant") for n in found.values()})  # type: ignore[union-attr]
    return found.get((quant or "").lower()), quants


def _sdcpp_sources(model: ModelCapabilities) -> dict[str, Any]:
    engine = model.engines.sdcpp
    if engine is None or not engine.sources:
        can = "diffusers" if model.engines.diffusers is not None else "no local engine"
        raise UnknownModelError(
            f"the registry names no stable-diffusion.cpp files for {model.id} (it runs on {can}); "
            "pass the files themselves with --backend-option diffusion_model=... vae=..."
        )
    return dict(engine.sources)


def _sdcpp_plan(
    model: ModelCapabilities,
    quant: str | None,
    token: str | bool | None,
    endpoint: str | None,
) -> tuple[list[PlannedFile], list[str]]:
    sources = _sdcpp_sources(model)
    listings: dict[str, tuple[str, dict[str, PlannedFile]]] = {}
    planned: list[PlannedFile] = []
    notes: list[str] = []
    main = "diffusion_model" if "diffusion_model" in sources else next(iter(sources))
    for role, source in sources.items():
        if source.repo not in listings:
            listings[source.repo] = _repo_files(source.repo, "main", token, endpoint)
        commit, files = listings[source.repo]
        wanted = quant or source.quant
        name, quants = _match_source(files, source.file, wanted)
        if name is None and quants and role != main and source.quant:
            name, _ = _match_source(files, source.file, source.quant)
            if name is not None:
                notes.append(f"{role}: {source.repo} has no {wanted}; using {source.quant}")
        if name is None:
            have = f"; it has: {', '.join(quants)}" if quants else ""
            what = f" in {wanted}" if "{quant}" in source.file else ""
            raise UnknownModelError(
                f"{source.repo} has no {source.file.replace('{quant}', wanted or '')} "
                f"({role} of {model.id}{what}){have}"
            )
        file = files[name]
        planned.append(
            PlannedFile(file.repo_id, commit, file.path, file.size, file.sha256, file.blob_id, role)
        )
    return planned, notes


def plan_pull(
    model: str,
    engine: str = "diffusers",
    *,
    quant: str | None = None,
    revision: str | None = None,
    variant: str | None = None,
    token: str | bool | None = None,
    endpoint: str | None = None,
    registry: VisionModelCapabilitiesRegistry | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> PullPlan:
    """Ask the Hub what ``pull`` would fetch (no file is downloaded)."""
    model, registry = _resolve(model, engine, registry)
    if engine == "sdcpp":
        if model not in registry:
            raise UnknownModelError(
                f"{model} is not in the registry, so which stable-diffusion.cpp files it needs is "
                "unknown; `abstractvision models` lists the known ones"
            )
        files, notes = _sdcpp_plan(registry.get(model), quant, token, endpoint)
        return PullPlan(
            model, engine, quant or _default_quant(registry.get(model)), files, notes=notes
        )
    revision = revision or "main"
    commit, files = _repo_files(model, revision, token, endpoint)
    cache = _cache(cache_dir)
    fetched = 0
    if "model_index.json" in files:
        had_index = (_storage(cache, model) / "snapshots" / commit / "model_index.json").exists()
        index = _read_index(model, commit, token, endpoint, cache)
        planned, used_variant, notes = _diffusers_plan(model, commit, files, index, variant)
        fetched = 0 if had_index else files["model_index.json"].size or 0
    else:  # one model, e.g. an adapter (its config and one set of weights at the root)
        root = [p for p in files if "/" not in p]
        weights, used_variant = _pick_weights(root, variant)
        if not weights or "config.json" not in files:
            raise UnknownModelError(
                f"{model} has no model_index.json, so it is not a Diffusers pipeline repo"
                + ("; try --engine sdcpp" if model in registry else "")
            )
        keep = [p for p in root if p.endswith(".json") and _weight_group(p) is None]
        planned, notes = [files[p] for p in [*keep, *weights]], []
    plan = PullPlan(model, engine, None, planned, revision, used_variant, notes, fetched)
    plan.repo_files, plan.repo_bytes = len(files), sum(f.size or 0 for f in files.values())
    for extra in _companions_of(model, registry, variant, token, endpoint, cache):
        plan.files += extra.files
        plan.fetched_bytes += extra.fetched_bytes
    return plan


def _companions_of(
    model: str,
    registry: VisionModelCapabilitiesRegistry,
    variant: str | None,
    token: Any,
    endpoint: str | None,
    cache: Path,
) -> list[PullPlan]:
    """What a registry model also loads on Diffusers: its base model (for an adapter) and the
    multi-view LoRA file."""
    if model not in registry:
        return []
    caps = registry.get(model)
    out = []
    base = caps.engines.diffusers.base_model if caps.engines.diffusers else None
    if base and base != model:
        out.append(
            plan_pull(
                base,
                "diffusers",
                variant=variant,
                token=token,
                endpoint=endpoint,
                registry=registry,
                cache_dir=cache,
            )
        )
    lora = caps.multi_view
    if lora is not None:
        _, files = _repo_files(lora.lora, "main", token, endpoint)
        name = lora.lora_weight_name
        if name is None:
            found = sorted(
                (p for p in files if p.endswith(".safetensors") and "/" not in p), key=len
            )
            name = found[0] if found else None
        if name is None or name not in files:
            raise UnknownModelError(f"{lora.lora} has no LoRA file {name or '*.safetensors'}")
        out.append(PullPlan(lora.lora, "diffusers", None, [files[name]]))
    return out


def _default_quant(model: ModelCapabilities) -> str | None:
    sources = model.engines.sdcpp.sources if model.engines.sdcpp else {}
    main = sources.get("diffusion_model") or sources.get("model")
    return main.quant if main is not None else None


def _read_index(
    repo_id: str, commit: str, token: Any, endpoint: str | None, cache: Path
) -> dict[str, Any]:
    hub = _hub()
    try:
        path = hub.hf_hub_download(
            repo_id,
            "model_index.json",
            revision=commit,
            token=token,
            endpoint=endpoint,
            cache_dir=cache,
        )
    except Exception as exc:
        raise _translate(exc, repo_id, endpoint) from None
    return dict(json.loads(Path(path).read_text(encoding="utf-8")))


def resolve_model_name(model: str, registry: VisionModelCapabilitiesRegistry | None = None) -> str:
    """A registry id or a short name of one (``flux.2-klein-4b``) -> the id; else as given."""
    registry = _registry(registry)
    if model in registry or "/" in model:
        return model
    key = _norm(model)
    for known in registry.list_models():
        if _norm(known.split("/")[-1]) == key or _norm(known) == key:
            return known
    return model


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower().removesuffix("-gguf"))


# --- downloading -------------------------------------------------------------------------------


class _Progress:
    """Byte counter over every file of a pull; reports to the controls, checks cancellation."""

    def __init__(self, label: str, total: int) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.downloaded = 0
        self.controls: list[GenerationControl] = []
        self._last = 0.0
        self._lock = threading.Lock()

    def add(self, n: int, *, fetched: bool = True) -> None:
        with self._lock:
            self.done += n
            if fetched:
                self.downloaded += n
            now = time.monotonic()
            due = now - self._last >= _REPORT_EVERY_S or self.done >= self.total
            if due:
                self._last = now
            controls = list(self.controls)
        for control in controls:
            if due:
                control.report(min(self.done, self.total), self.total, self.message())
        if controls and all(c.cancelled for c in controls):
            controls[0].check()

    def message(self) -> str:
        done, total = self.done / 1e9, self.total / 1e9
        if self.total < 1e8:
            return f"downloading {self.label}: {self.done / 1e6:.1f} / {self.total / 1e6:.1f} MB"
        return f"downloading {self.label}: {done:.1f} / {total:.1f} GB"


class _ByteSink:
    """The ``tqdm_class`` handed to huggingface_hub's ``http_get``: forwards byte counts."""

    def __init__(self, progress: _Progress, **_: Any) -> None:
        self._progress = progress

    def __enter__(self) -> _ByteSink:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: float | None = 1) -> None:
        if n:
            self._progress.add(int(n))

    def close(self) -> None:
        return None


def _git_blob_id(path: Path) -> str:
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode(), usedforsecurity=False)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(path: Path, file: PlannedFile) -> None:
    """Raise ``ModelDownloadError`` unless ``path`` has the Hub's checksum (and size)."""
    if file.size is not None and path.stat().st_size != file.size:
        got = path.stat().st_size
        raise ModelDownloadError(
            f"{file.repo_id}/{file.path}: size {got} bytes, the Hub says {file.size}"
        )
    if file.sha256:
        got, want, kind = _sha256(path), file.sha256, "sha256"
    elif file.blob_id:
        got, want, kind = _git_blob_id(path), file.blob_id, "git blob id"
    else:
        return
    if got != want:
        raise ModelDownloadError(
            f"checksum mismatch for {file.repo_id}/{file.path}: {kind} {got[:12]}..., the Hub "
            f"says {want[:12]}...; the damaged download was deleted, run the pull again"
        )


def _link(blob: Path, pointer: Path) -> None:
    pointer.parent.mkdir(parents=True, exist_ok=True)
    if pointer.is_symlink() or pointer.exists():
        pointer.unlink()
    try:
        pointer.symlink_to(os.path.relpath(blob, pointer.parent))
    except OSError:  # no symlinks (some Windows setups): a copy, as huggingface_hub does
        shutil.copy2(blob, pointer)


def _storage(cache: Path, repo_id: str) -> Path:
    return cache / _hub().file_download.repo_folder_name(repo_id=repo_id, repo_type="model")


def _fetch(
    file: PlannedFile,
    cache: Path,
    revision: str,
    progress: _Progress,
    token: str | bool | None,
    endpoint: str | None,
) -> Path:
    """One file into the cache (blob + snapshot link + ref); resumes a partial blob."""
    hub = _hub()
    storage = _storage(cache, file.repo_id)
    pointer = storage / "snapshots" / file.commit / file.path
    _write_ref(storage, revision, file.commit)
    if pointer.exists():
        progress.add(file.size or 0, fetched=False)
        return pointer
    url = hub.hf_hub_url(file.repo_id, file.path, revision=file.commit, endpoint=endpoint)
    try:
        meta = hub.get_hf_file_metadata(url, token=token, endpoint=endpoint)
    except Exception as exc:
        raise _translate(exc, file.repo_id, endpoint) from None
    etag = meta.etag or file.sha256 or file.blob_id
    blob = storage / "blobs" / str(etag)
    if not blob.exists():
        blob.parent.mkdir(parents=True, exist_ok=True)
        partial = blob.with_name(blob.name + ".incomplete")
        lock = storage.parent / ".locks" / storage.name / f"{etag}.lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        with hub.utils.WeakFileLock(lock):
            if not blob.exists():
                _download(meta, url, partial, file, progress, token)
                try:
                    _verify(partial, file)
                except ModelDownloadError:
                    partial.unlink(missing_ok=True)
                    raise
                os.replace(partial, blob)
    else:
        progress.add(file.size or 0, fetched=False)
    _link(blob, pointer)
    return pointer


def _download(
    meta: Any, url: str, partial: Path, file: PlannedFile, progress: _Progress, token: Any
) -> None:
    hub = _hub()
    resume = partial.stat().st_size if partial.exists() else 0
    if file.size is not None and resume > file.size:
        partial.unlink()
        resume = 0
    if resume:
        log.info("resuming %s/%s at %d bytes", file.repo_id, file.path, resume)
        progress.add(resume, fetched=False)
    headers = hub.utils.build_hf_headers(token=token)
    location = meta.location or url
    if _host(location) != _host(url):  # a CDN: signed URL, no Hub credentials
        headers.pop("authorization", None)
        headers.pop("Authorization", None)
    try:
        with partial.open("ab") as out:
            hub.file_download.http_get(
                location,
                out,
                resume_size=resume,
                headers=headers,
                expected_size=file.size if file.size is not None else meta.size,
                displayed_filename=file.path,
                tqdm_class=functools.partial(_ByteSink, progress),
            )
    except AbstractVisionError:
        raise
    except Exception as exc:
        raise _translate(exc, file.repo_id, None) from None


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).netloc


def _write_ref(storage: Path, revision: str, commit: str) -> None:
    if revision == commit:
        return
    ref = storage / "refs" / revision
    if ref.exists() and ref.read_text().strip() == commit:
        return
    ref.parent.mkdir(parents=True, exist_ok=True)
    ref.write_text(commit)


class _Inflight:
    """Pulls running in this process, by key: a second caller joins the first's download."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running: dict[tuple[Any, ...], tuple[threading.Event, _Progress, list[Any]]] = {}


_INFLIGHT = _Inflight()


def pull(
    model: str,
    engine: str = "diffusers",
    *,
    quant: str | None = None,
    revision: str | None = None,
    variant: str | None = None,
    token: str | bool | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    endpoint: str | None = None,
    control: GenerationControl | None = None,
    registry: VisionModelCapabilitiesRegistry | None = None,
) -> PulledModel:
    """Download what ``engine`` needs for ``model`` into the Hub cache; returns the local paths.

    Progress goes to ``control`` as byte counts ("downloading X: 1.2 / 7.8 GB"); cancelling it
    stops at the next chunk and keeps the partial file for the next pull. A second call for the
    same model while one runs waits for it (its control sees the same progress).
    """
    model, registry = _resolve(model, engine, registry)
    cache = _cache(cache_dir)
    key = (str(cache), model, engine, (quant or "").lower(), revision, variant)
    with _INFLIGHT.lock:
        running = _INFLIGHT.running.get(key)
        if running is None:
            done = threading.Event()
            progress = _Progress(model.split("/")[-1], 0)
            outcome: list[Any] = []
            _INFLIGHT.running[key] = (done, progress, outcome)
            owner = True
        else:
            done, progress, outcome = running
            owner = False
        if control is not None:
            progress.controls.append(control)
    if not owner:
        while not done.wait(0.1):
            if control is not None:
                control.check()
        if isinstance(outcome[0], BaseException):
            raise outcome[0]
        return outcome[0]  # type: ignore[no-any-return]
    try:
        result = _pull(
            model, engine, quant, revision, variant, token, cache, endpoint, progress, registry
        )
        outcome.append(result)
        return result
    except BaseException as exc:
        outcome.append(exc)
        raise
    finally:
        with _INFLIGHT.lock:
            _INFLIGHT.running.pop(key, None)
        done.set()


def _pull(
    model: str,
    engine: str,
    quant: str | None,
    revision: str | None,
    variant: str | None,
    token: Any,
    cache: Path,
    endpoint: str | None,
    progress: _Progress,
    registry: VisionModelCapabilitiesRegistry,
) -> PulledModel:
    plan = plan_pull(
        model,
        engine,
        quant=quant,
        revision=revision,
        variant=variant,
        token=token,
        endpoint=endpoint,
        registry=registry,
        cache_dir=cache,
    )
    for note in plan.notes:
        log.warning("%s", note)
    progress.total = plan.total_bytes
    if progress.controls:
        for control in progress.controls:
            control.report(0, progress.total, progress.message())
    paths: dict[str, str] = {}
    for file in plan.files:
        rev = plan.revision if file.repo_id == model and engine == "diffusers" else "main"
        local = _fetch(file, cache, rev, progress, token, endpoint)
        if file.role:
            paths[file.role] = str(local)
    if engine == "diffusers":
        paths["model"] = str(_storage(cache, model) / "snapshots" / plan.files[0].commit)
    log.info(
        "%s (%s) on disk: %s, %s downloaded",
        model,
        engine,
        format_bytes(plan.total_bytes),
        format_bytes(progress.downloaded + plan.fetched_bytes),
    )
    downloaded = progress.downloaded + plan.fetched_bytes
    return PulledModel(
        model,
        engine,
        plan.quant,
        paths,
        plan.total_bytes,
        downloaded,
        plan.variant,
        len(plan.files),
        plan.repo_files,
        plan.repo_bytes,
    )


# --- what is on disk ---------------------------------------------------------------------------


def _snapshot(cache: Path, repo_id: str, revision: str = "main") -> Path | None:
    storage = _storage(cache, repo_id)
    ref = storage / "refs" / revision
    commit = ref.read_text().strip() if ref.is_file() else revision
    folder = storage / "snapshots" / commit
    if folder.is_dir():
        return folder
    snapshots = sorted(
        (p for p in (storage / "snapshots").glob("*") if p.is_dir()),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    return snapshots[0] if snapshots else None


def _files_under(folder: Path) -> list[str]:
    return [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]


def local_files(
    model: str,
    engine: str = "diffusers",
    *,
    quant: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    registry: VisionModelCapabilitiesRegistry | None = None,
) -> dict[str, str] | None:
    """The model's files already on disk (no network), or None when something is missing.

    sd.cpp: role -> file (the asked quant, else the registry's default, else any on disk).
    Diffusers: ``{"model": snapshot folder}`` when every component has weights.
    """
    model, registry = _resolve(model, engine, registry)
    cache = _cache(cache_dir)
    if engine == "diffusers":
        folder = _snapshot(cache, model)
        if folder is None or not _companions_on_disk(model, cache, registry):
            return None
        if not (folder / "model_index.json").is_file():  # one model (an adapter)
            names = [p.name for p in folder.iterdir()]
            ok = "config.json" in names and any(_is_weight(n) for n in names)
            return {"model": str(folder)} if ok else None
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
        for name, value in index.items():
            if name.startswith("_") or not isinstance(value, list) or None in value:
                continue
            sub = folder / name
            names = [p.name for p in sub.iterdir()] if sub.is_dir() else []
            if not names:
                return None
            # a model component (config.json) needs weights; tokenizers and schedulers do not
            if "config.json" in names and not any(_is_weight(n) for n in names):
                return None
        return {"model": str(folder)}
    if model not in registry:
        return None
    found = _sdcpp_files_on_disk(registry.get(model), cache, quant)
    if any(path is None for path in found.values()):
        return None
    return {role: str(path) for role, path in found.items()}


def _sdcpp_files_on_disk(
    model: ModelCapabilities, cache: Path, quant: str | None
) -> dict[str, str | None]:
    """role -> its file on disk (the asked quant, the registry's, else any), None when absent."""
    out: dict[str, str | None] = {}
    for role, source in _sdcpp_sources(model).items():
        out[role] = None
        folder = _snapshot(cache, source.repo)
        if folder is None:
            continue
        names = _files_under(folder)
        name = None
        for wanted in (quant, source.quant):
            name, quants = _match_source(names, source.file, wanted)
            if name is not None:
                break
        if name is None and "{quant}" in source.file and quants:
            name, _ = _match_source(names, source.file, quants[0])
        if name is not None:
            out[role] = str(folder / name)
    return out


def sdcpp_hub_config(config: Any, *, required: bool = False) -> Any:
    """An sd.cpp backend config whose ``model`` is a Hub id -> the same with its role files.

    The files are the ones ``pull --engine sdcpp`` put on disk (no network). Not on disk: the
    config comes back unchanged, or with ``required`` an ``UnknownModelError`` naming the pull.
    A 0.3.x preset key or short name (``flux2-klein-base-4b``, ``qwen-image-edit-2511-gguf``)
    that is not a file on disk stands for its registry entry's Hub id.
    """
    import dataclasses

    model = getattr(config, "model", None)
    if getattr(config, "diffusion_model", None):
        return config
    named = _sdcpp_registry_id(model)
    if named is not None:
        config, model = dataclasses.replace(config, model=named), named
    if not looks_like_hub_id(model):
        return config
    files = local_files(model, "sdcpp")
    if files is None:
        if required:
            raise UnknownModelError(
                f"{model} is not on disk for stable-diffusion.cpp: run "
                f"`{pull_command(model, 'sdcpp')}` (or start the server with --allow-download)"
            )
        name = config.model_name or resolve_model_name(model)
        return dataclasses.replace(config, model_name=name)

    given = {role: getattr(config, role) for role in files if getattr(config, role, None)}
    return dataclasses.replace(
        config,
        model=None,
        model_name=config.model_name or resolve_model_name(model),
        **{**files, **given},
    )


def _sdcpp_registry_id(name: Any) -> str | None:
    """The registry id a 0.3.x name (preset key, short name) of an sd.cpp model stands for."""
    if not isinstance(name, str) or looks_like_hub_id(name) or _is_local_path(name):
        return None
    registry = VisionModelCapabilitiesRegistry()
    try:
        caps = registry.get(name)
    except (UnknownModelError, ValueError):
        return None
    return caps.id if caps.engines.sdcpp and caps.engines.sdcpp.sources else None


def _is_local_path(name: str) -> bool:
    try:
        return os.path.lexists(name)
    except (OSError, ValueError):  # NUL, over-long names
        return False


def _companions_on_disk(model: str, cache: Path, registry: VisionModelCapabilitiesRegistry) -> bool:
    if model not in registry:
        return True
    caps = registry.get(model)
    base = caps.engines.diffusers.base_model if caps.engines.diffusers else None
    if base and base != model and local_files(base, cache_dir=cache, registry=registry) is None:
        return False
    lora = caps.multi_view
    if lora is None:
        return True
    folder = _snapshot(cache, lora.lora)
    if folder is None:
        return False
    if lora.lora_weight_name:
        return (folder / lora.lora_weight_name).is_file()
    return any(p.suffix == ".safetensors" for p in folder.iterdir())


def pull_command(model: str, engine: str, quant: str | None = None) -> str:
    """The command that puts ``model`` on disk, for messages."""
    extra = f" --quant {quant}" if quant else ""
    return f"abstractvision pull {model} --engine {engine}{extra}"


def ensure_model(
    model: str,
    engine: str,
    *,
    allow_download: bool,
    quant: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    endpoint: str | None = None,
    control: GenerationControl | None = None,
    registry: VisionModelCapabilitiesRegistry | None = None,
) -> dict[str, str] | None:
    """Make sure a Hub model is on disk before an engine loads it.

    Returns its local files (see ``local_files``), None for a local path (nothing to do).
    Missing with downloads off: ``UnknownModelError`` naming the ``pull`` command.
    """
    if not looks_like_hub_id(model) or engine not in ENGINES:
        return None
    found = local_files(model, engine, quant=quant, cache_dir=cache_dir, registry=registry)
    if found is not None:
        return found
    if not allow_download:
        raise UnknownModelError(
            f"{model} is not on disk and downloads are off: run `{pull_command(model, engine, quant)}`"
            " (or start with --allow-download)"
        )
    return pull(
        model,
        engine,
        quant=quant,
        cache_dir=cache_dir,
        endpoint=endpoint,
        control=control,
        registry=registry,
    ).paths


@dataclass(frozen=True)
class InstalledModel:
    """One repo in the Hub cache: size on disk, files, revisions, partial downloads."""

    repo_id: str
    size_bytes: int
    files: int
    revisions: tuple[str, ...]
    path: str
    partial_bytes: int = 0
    used_by: tuple[str, ...] = ()  # registry models whose sd.cpp files come from this repo

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.repo_id,
            "size_bytes": self.size_bytes,
            "size": format_bytes(self.size_bytes),
            "files": self.files,
            "revisions": list(self.revisions),
            "path": self.path,
            "partial_bytes": self.partial_bytes,
            "used_by": list(self.used_by),
        }


def _companions(registry: VisionModelCapabilitiesRegistry) -> dict[str, list[str]]:
    """repo -> registry models whose sd.cpp sources live there."""
    out: dict[str, list[str]] = {}
    for model_id in registry.list_models():
        engine = registry.get(model_id).engines.sdcpp
        for source in (engine.sources if engine else {}).values():
            out.setdefault(source.repo, [])
            if model_id not in out[source.repo]:
                out[source.repo].append(model_id)
    return out


def installed_models(
    cache_dir: str | os.PathLike[str] | None = None,
    registry: VisionModelCapabilitiesRegistry | None = None,
) -> list[InstalledModel]:
    """Model repos in the Hub cache, largest first (no network)."""
    cache = _cache(cache_dir)
    if not cache.is_dir():
        return []
    companions = _companions(_registry(registry))
    rows = []
    for storage in sorted(cache.glob("models--*")):
        repo_id = storage.name[len("models--") :].replace("--", "/")
        blobs = [p for p in (storage / "blobs").glob("*") if p.is_file()]
        size = sum(p.stat().st_size for p in blobs if not p.name.endswith(".incomplete"))
        partial = sum(p.stat().st_size for p in blobs if p.name.endswith(".incomplete"))
        snapshots = [p for p in (storage / "snapshots").glob("*") if p.is_dir()]
        files = {f for s in snapshots for f in _files_under(s)}
        rows.append(
            InstalledModel(
                repo_id,
                size,
                len(files),
                tuple(s.name for s in snapshots),
                str(storage),
                partial,
                tuple(companions.get(repo_id, ())),
            )
        )
    return sorted(rows, key=lambda r: r.size_bytes, reverse=True)


@dataclass(frozen=True)
class RemovedModel:
    removed: tuple[str, ...]
    kept: tuple[str, ...]  # shared with another model on disk
    freed_bytes: int


def remove_model(
    model: str,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    registry: VisionModelCapabilitiesRegistry | None = None,
) -> RemovedModel:
    """Delete ``model``'s repo and its sd.cpp companion repos no other model on disk needs."""
    registry = _registry(registry)
    model = resolve_model_name(model, registry)
    cache = _cache(cache_dir)
    targets = [model]
    if model in registry and registry.get(model).engines.sdcpp:
        targets += [s.repo for s in (registry.get(model).engines.sdcpp.sources or {}).values()]
    present = {r.repo_id: r for r in installed_models(cache, registry)}
    companions = _companions(registry)
    removed, kept, freed = [], [], 0
    for repo in dict.fromkeys(targets):
        if repo not in present:
            continue
        others = [
            m for m in companions.get(repo, []) if m != model and _sdcpp_on_disk(m, cache, registry)
        ]
        if repo != model and others:
            kept.append(f"{repo} (used by {', '.join(others)})")
            continue
        row = present[repo]
        shutil.rmtree(row.path)
        lock = cache / ".locks" / Path(row.path).name
        shutil.rmtree(lock, ignore_errors=True)
        removed.append(repo)
        freed += row.size_bytes + row.partial_bytes
    if not removed and not kept:
        raise UnknownModelError(
            f"{model} is not on disk ({cache}); `abstractvision models --installed` lists what is"
        )
    return RemovedModel(tuple(removed), tuple(kept), freed)


def _sdcpp_on_disk(model: str, cache: Path, registry: VisionModelCapabilitiesRegistry) -> bool:
    try:
        return local_files(model, "sdcpp", cache_dir=cache, registry=registry) is not None
    except AbstractVisionError:
        return False


# --- 0.3.34 compatibility ----------------------------------------------------------------------


@dataclass(frozen=True)
class ModelPreset:
    """What 0.3.34's ``VisionModelDownloadPreset`` told its callers: the repo to fetch."""

    key: str
    display_name: str
    repo_id: str
    target: str
    engine: str
    quantization_bits: int | None = None
    upstream_repo_id: str | None = None
    aliases: tuple[str, ...] = ()
    allow_patterns: tuple[str, ...] = ()

    @property
    def bits(self) -> int | None:
        """0.3.34's ``ModelCapabilities.downloads`` entries name the quantization ``bits``."""
        return self.quantization_bits

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        out = asdict(self)
        out["aliases"], out["allow_patterns"] = list(self.aliases), list(self.allow_patterns)
        out["runner"] = self.engine
        return out


_SDCPP_NAMES = ("sdcpp", "sd-cpp", "stable-diffusion.cpp", "stable-diffusion-cpp", "gguf")
_DIFFUSERS_NAMES = ("diffusers", "huggingface", "hf", "hf-snapshot", "torch")


def _bits(quant: str | None) -> int | None:
    match = re.search(r"(\d+)", quant or "")
    return int(match.group(1)) if match else None


def find_model_preset(
    name: str,
    *,
    target: str | None = "auto",
    engine: str | None = None,
    require_8bit: bool = True,
) -> ModelPreset:
    """0.3.34's lookup: a preset name (``flux2-klein-4b``, a repo id) -> the repo one engine uses.

    ``target``/``engine`` pick the engine (``gguf``/``stable-diffusion.cpp`` -> sd.cpp's diffusion
    model repo; ``hf-snapshot``/``diffusers`` -> the Diffusers repo). ``require_8bit`` asks for
    an 8-bit sd.cpp build. MLX targets have no presets here (ValueError, as 0.3.34 raised for an
    unknown name).
    """
    registry = VisionModelCapabilitiesRegistry()
    wanted = " ".join(str(v or "").lower() for v in (target, engine))
    if "mlx" in wanted or "mflux" in wanted:
        raise ValueError(
            f"no MLX preset for {name!r}: abstractvision >= 0.4 runs Diffusers and sd.cpp"
        )
    raw = str(name or "").strip()
    for prefix in ("sdcpp/", "sd-cpp/", "stable-diffusion.cpp/", "diffusers/", "hf/"):
        if raw.lower().startswith(prefix):
            raw = raw[len(prefix) :]
    want_sdcpp = any(n in wanted for n in _SDCPP_NAMES)
    want_diffusers = any(n in wanted for n in _DIFFUSERS_NAMES)
    matches: list[tuple[str, str]] = []  # (registry id, engine)
    key = _norm(raw)
    gguf_repo = {}
    for model_id in registry.list_models():
        caps = registry.get(model_id)
        sources = caps.engines.sdcpp.sources if caps.engines.sdcpp else {}
        main = sources.get("diffusion_model") or sources.get("model")
        names = {_norm(model_id), _norm(model_id.split("/")[-1])}
        if main is not None:
            gguf_repo[model_id] = main
            names |= {_norm(main.repo), _norm(main.repo.split("/")[-1])}
        if key in names:
            if main is not None and not want_diffusers:
                matches.append((model_id, "sdcpp"))
            if caps.engines.diffusers is not None and not want_sdcpp:
                matches.append((model_id, "diffusers"))
    if not matches:
        kinds = "stable-diffusion.cpp " if want_sdcpp else ""
        known = ", ".join(
            m.split("/")[-1].lower() for m in registry.list_models() if m in gguf_repo
        )
        raise ValueError(f"Unknown {kinds}vision model preset {name!r}. Known presets: {known}")
    model_id, kind = matches[0]
    caps = registry.get(model_id)
    if kind == "sdcpp":
        main = gguf_repo[model_id]
        return _gguf_preset(model_id, caps, main, "Q8_0" if require_8bit else main.quant)
    if require_8bit and want_sdcpp:
        raise ValueError(f"No 8-bit preset for {name!r}")
    return _diffusers_preset(model_id, caps)


# What ``pull --engine diffusers`` takes, as globs for ``snapshot_download(allow_patterns=...)``:
# the pipeline index, every component's config/tokenizer files (chat templates included) and
# safetensors weights (``pull`` itself picks ONE weights set from the repo listing).
_DIFFUSERS_GLOBS = (
    "model_index.json", "*.json", "*.txt", "*.jinja", "*.model", "*.tiktoken", "*.safetensors",
)  # fmt: skip


def _diffusers_preset(model_id: str, caps: ModelCapabilities) -> ModelPreset:
    short = model_id.split("/")[-1].lower()
    return ModelPreset(
        key=short,
        display_name=caps.display_name,
        repo_id=model_id,
        target="diffusers",
        engine="diffusers",
        quantization_bits=16,
        upstream_repo_id=model_id,
        aliases=tuple(dict.fromkeys((short, *caps.aliases))),
        allow_patterns=_DIFFUSERS_GLOBS,
    )


def _gguf_preset(
    model_id: str, caps: ModelCapabilities, main: Any, quant: str | None
) -> ModelPreset:
    short = model_id.split("/")[-1].lower()
    return ModelPreset(
        key=short,
        display_name=f"{caps.display_name} (GGUF {quant})",
        repo_id=main.repo,
        target="gguf",
        engine="stable-diffusion.cpp",
        quantization_bits=_bits(quant),
        upstream_repo_id=model_id,
        aliases=(short, model_id),
        allow_patterns=(main.file.replace("{quant}", quant or "*"),),
    )


def registry_presets(caps: ModelCapabilities) -> tuple[ModelPreset, ...]:
    """0.3.34's download presets of one registry entry, derived from its engine facts.

    Diffusers: the model's own repo (16-bit). sd.cpp: the diffusion-model repo at the registry's
    default quant, plus ``Q8_0`` when the file name takes a quant (0.3.34's 8-bit default).
    """
    out = []
    if caps.engines.diffusers is not None:
        out.append(_diffusers_preset(caps.id, caps))
    sources = caps.engines.sdcpp.sources if caps.engines.sdcpp else {}
    main = sources.get("diffusion_model") or sources.get("model")
    if main is not None:
        quants = [main.quant] + (["Q8_0"] if "{quant}" in main.file else [])
        for quant in dict.fromkeys(quants):
            out.append(_gguf_preset(caps.id, caps, main, quant))
    return tuple(out)


def model_presets(
    *,
    target: str | None = "auto",
    engine: str | None = None,
    include_non_8bit: bool = False,
    include_all_targets: bool = False,
) -> list[ModelPreset]:
    """0.3.34's preset catalogue, from the registry: every entry's ``registry_presets``.

    ``target``/``engine`` narrow it (``gguf``/``sdcpp``/``stable-diffusion.cpp``, ``diffusers``;
    ``auto``/None: both); by default only 8-bit presets, ``include_non_8bit`` adds the rest.
    MLX targets have no presets in 0.4 (ValueError). ``include_all_targets`` is accepted (0.4
    has no per-host target list: every target is always listed).
    """
    wanted = " ".join(str(v or "").lower() for v in (target, engine))
    if "mlx" in wanted or "mflux" in wanted:
        raise ValueError(
            f"no MLX presets (target={target!r}, engine={engine!r}): abstractvision >= 0.4 runs Diffusers and sd.cpp"
        )
    want_sdcpp = any(n in wanted for n in _SDCPP_NAMES)
    want_diffusers = any(n in wanted for n in _DIFFUSERS_NAMES)
    registry = VisionModelCapabilitiesRegistry()
    out = [
        preset
        for model_id in registry.list_models()
        for preset in registry_presets(registry.get(model_id))
        if (include_non_8bit or preset.quantization_bits == 8)
        and not (want_sdcpp and preset.target != "gguf")
        and not (want_diffusers and preset.target != "diffusers")
    ]
    return sorted(out, key=lambda p: (p.key, p.target, p.repo_id, p.quantization_bits or 0))


# 0.3.34's name of the error for a gated repo: 0.4's own (``pull`` raises it naming the licence
# page and HF_TOKEN); 0.3.x callers catch it by its old name.
HuggingFaceAccessError = ModelAccessError


@functools.lru_cache(maxsize=1)
def local_model_profile() -> str:
    """0.3.34's host kind, from the device ``startup.machine`` finds (what picks the recommended
    model): ``cuda`` (an NVIDIA GPU), ``apple-silicon``, ``macos`` (an Intel Mac) or ``cpu``.

    0.4 picks a model's sd.cpp files from the registry whatever the host.
    """
    import sys

    from .startup import machine

    device = machine().device
    if device == "mps":
        return "apple-silicon"
    if device == "cuda":
        return "cuda"
    return "macos" if sys.platform == "darwin" else "cpu"


class SdcppFilesMissingError(UnknownModelError, RuntimeError):
    """A model's stable-diffusion.cpp files are not all on disk (0.3.34 raised RuntimeError)."""


@dataclass(frozen=True)
class SdcppModelSelection:
    """0.3.34's answer of ``resolve_sdcpp_model_selection``: the sd.cpp files of one model.

    ``model`` is a single checkpoint; otherwise ``diffusion_model`` / ``vae`` / ``llm`` (and the
    other component roles 0.4's registry names: ``clip_l``, ``t5xxl``, ...) are set.
    """

    key: str
    repo_id: str
    capabilities_model_id: str | None = None
    model: str | None = None
    diffusion_model: str | None = None
    vae: str | None = None
    llm: str | None = None
    llm_vision: str | None = None
    files: dict[str, str] = field(default_factory=dict)  # every role -> file

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def resolve_sdcpp_model_selection(
    name: str,
    *,
    allow_download: bool = False,
    token: str | None = None,
    max_workers: int = 4,
) -> SdcppModelSelection:
    """0.3.34: a preset key (``flux2-klein-base-4b``), registry id or GGUF repo id -> the
    stable-diffusion.cpp files ``pull --engine sdcpp`` put in the Hub cache (no network).

    Not all on disk: ``SdcppFilesMissingError`` naming each missing role and the command that
    fetches it; with ``allow_download`` they are pulled instead. ``max_workers`` is accepted
    (``pull`` fetches one file at a time, resumable).
    """
    del max_workers
    requested = str(name or "").strip()
    if not requested:
        raise InvalidRequestError("name", name, "names no stable-diffusion.cpp model")
    preset = find_model_preset(
        requested, target="gguf", engine="stable-diffusion.cpp", require_8bit=True
    )
    model_id = str(preset.upstream_repo_id)
    registry = VisionModelCapabilitiesRegistry()
    from .model_cache import default_hf_cache_root  # read now: HF_HUB_CACHE may have changed

    cache = default_hf_cache_root()
    found = _sdcpp_files_on_disk(registry.get(model_id), cache, None)
    missing = [role for role, path in found.items() if path is None]
    if missing and allow_download:
        found = dict(pull(model_id, "sdcpp", token=token, cache_dir=cache).paths)
    elif missing:
        sources = _sdcpp_sources(registry.get(model_id))
        what = ", ".join(f"{r} ({sources[r].repo}: {sources[r].file})" for r in missing)
        raise SdcppFilesMissingError(
            f"stable-diffusion.cpp files of {requested!r} ({model_id}) are not on disk in "
            f"{cache}: missing {what}; run `{pull_command(model_id, 'sdcpp')}` "
            f"(0.3.x: `abstractvision download {requested} --provider sdcpp`)"
        )
    files = {role: str(path) for role, path in found.items()}
    return SdcppModelSelection(
        key=preset.key,
        repo_id=preset.repo_id,
        capabilities_model_id=model_id,
        model=files.get("model"),
        diffusion_model=files.get("diffusion_model"),
        vae=files.get("vae"),
        llm=files.get("llm"),
        llm_vision=files.get("llm_vision"),
        files=files,
    )
