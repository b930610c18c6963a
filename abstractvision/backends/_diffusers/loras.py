"""LoRA adapters from ``extra["loras"]``: allow-list check, load once per pipeline, switch per call.

A LoRA is arbitrary weights (and for a hub id, a download), so a source must match the
configured allow-list: a local folder/file entry allows itself and anything under it; a hub id
entry allows that id, and an entry ending in ``/`` or ``*`` allows ids with that prefix.
Adapters stay loaded on the pipeline (cached by source); a call that asks for another set or
none switches with ``set_adapters`` / ``disable_lora`` so the next output equals the base model's.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from ...errors import BackendError, CapabilityNotSupportedError, InvalidRequestError
from .cache import Entry
from .families import is_local_path

log = logging.getLogger(__name__)

MAX_LORAS_PER_CALL = 8
MAX_LORAS_CACHED = 8
WEIGHT_RANGE = (-4.0, 4.0)

_WEIGHT_FILE = re.compile(r"^[A-Za-z0-9._-]{1,200}\.(safetensors|bin)$")


class Lora(NamedTuple):
    """One adapter of a call: where it comes from, its weight, and the file inside a repo."""

    source: str
    weight: float
    weight_name: str | None = None

    @property
    def key(self) -> str:
        return self.source if self.weight_name is None else f"{self.source}#{self.weight_name}"


LoraSet = tuple[Lora, ...]
_KEYS = {"source", "weight", "weight_name"}


def parse_loras(value: Any, allowlist: Sequence[str]) -> LoraSet:
    """``[{"source", "weight", "weight_name"?}]`` -> Lora tuples, each source allowed.

    ``weight_name`` picks the file in a hub repo or folder holding several (offline loading of a
    hub LoRA needs it: without it diffusers has to list the repo).
    """
    if not isinstance(value, (list, tuple)) or len(value) > MAX_LORAS_PER_CALL:
        raise InvalidRequestError(
            "extra.loras",
            value,
            f"must be a list of at most {MAX_LORAS_PER_CALL} {{source, weight}}",
        )
    out: list[Lora] = []
    for i, item in enumerate(value):
        where = f"extra.loras[{i}]"
        if not isinstance(item, dict) or set(item) - _KEYS or "source" not in item:
            raise InvalidRequestError(
                where, item, 'must be {"source": str, "weight": float, "weight_name"?: str}'
            )
        source, weight = item["source"], item.get("weight", 1.0)
        weight_name = item.get("weight_name")
        if weight_name is not None and (
            not isinstance(weight_name, str) or not _WEIGHT_FILE.match(weight_name)
        ):
            raise InvalidRequestError(
                f"{where}.weight_name", weight_name, "must be a .safetensors or .bin file name"
            )
        if not isinstance(source, str) or not source.strip():
            raise InvalidRequestError(f"{where}.source", source, "must be a non-empty string")
        if (
            isinstance(weight, bool)
            or not isinstance(weight, (int, float))
            or not math.isfinite(weight)
        ):
            raise InvalidRequestError(f"{where}.weight", weight, "must be a number")
        if not WEIGHT_RANGE[0] <= weight <= WEIGHT_RANGE[1]:
            raise InvalidRequestError(f"{where}.weight", weight, f"must be in {WEIGHT_RANGE}")
        if not is_allowed(source, allowlist):
            allowed = ", ".join(allowlist) or "nothing (lora_allowlist is empty)"
            raise CapabilityNotSupportedError(
                f"LoRA source {source!r} is not allowed; the backend's lora_allowlist allows: "
                f"{allowed}. Ask the operator to add it."
            )
        out.append(Lora(source, float(weight), weight_name))
    if len({lora.key for lora in out}) != len(out):
        raise InvalidRequestError("extra.loras", value, "lists the same source twice")
    return tuple(out)


def is_allowed(source: str, allowlist: Sequence[str]) -> bool:
    local = is_local_path(source)
    for entry in allowlist:
        if is_local_path(entry) != local:
            continue
        if local:
            target, root = Path(source).expanduser().resolve(), Path(entry).expanduser().resolve()
            if target.is_relative_to(root):
                return True
        elif source == entry or (
            entry.endswith(("/", "*")) and source.startswith(entry.rstrip("*"))
        ):
            return True
    return False


def adapter_name(source: str) -> str:
    return "lora_" + hashlib.sha1(source.encode("utf-8")).hexdigest()[:12]


def apply_loras(entry: Entry, wanted: LoraSet, *, load_options: dict[str, Any]) -> float:
    """Make exactly ``wanted`` active on the entry's pipeline; returns seconds spent loading."""
    pipe = entry.pipe
    if wanted == entry.active_loras:
        return 0.0
    if not hasattr(pipe, "load_lora_weights"):
        raise CapabilityNotSupportedError(f"{type(pipe).__name__} cannot load LoRA adapters")
    import time

    started = time.perf_counter()
    for lora in wanted:
        if lora.key in entry.loras:
            entry.loras[lora.key] = entry.loras.pop(lora.key)  # most recently used last
            continue
        _evict_unused(entry, keep={lora.key for lora in wanted})
        name = adapter_name(lora.key)
        _load(pipe, lora, name, load_options)
        entry.loras[lora.key] = name
    loaded_s = time.perf_counter() - started
    if wanted:
        pipe.enable_lora()
        pipe.set_adapters(
            [entry.loras[lora.key] for lora in wanted],
            adapter_weights=[lora.weight for lora in wanted],
        )
    elif entry.loras:
        pipe.disable_lora()
    entry.active_loras = wanted
    return loaded_s


def _load(pipe: Any, lora: Lora, name: str, options: dict[str, Any]) -> None:
    source = lora.source
    kwargs: dict[str, Any] = {"adapter_name": name}
    if lora.weight_name is not None:
        kwargs["weight_name"] = lora.weight_name
    path = Path(source).expanduser()
    if is_local_path(source):
        if path.is_file():
            kwargs["weight_name"] = path.name
            path = path.parent
        elif not path.is_dir():
            raise InvalidRequestError("extra.loras.source", source, "no such LoRA file or folder")
        target: str = str(path)
    else:
        target = source
        kwargs.update(options)
    try:
        pipe.load_lora_weights(target, **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise BackendError(
            f"could not load LoRA {source!r} into {type(pipe).__name__}: {exc}. "
            "Check that it was trained for this base model."
        ) from None
    log.info("loaded LoRA %s as %s", source, name)


def _evict_unused(entry: Entry, keep: set[str]) -> None:
    while len(entry.loras) >= MAX_LORAS_CACHED:
        victim = next((s for s in entry.loras if s not in keep), None)
        if victim is None:
            return
        entry.pipe.delete_adapters(entry.loras.pop(victim))
