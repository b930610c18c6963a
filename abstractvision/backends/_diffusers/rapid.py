"""``extra.rapid_aio_repo`` (kept from 0.3.x): run one call with another repo's denoiser.

0.3.34 swapped the pipeline's ``transformer`` for the one in ``<repo>/<rapid_aio_subfolder or
"transformer">`` (e.g. ``linoyts/Qwen-Image-Edit-Rapid-AIO``, a 4-step distilled Qwen-Image-Edit),
loaded with the backend's download rules. Here the swapped transformer is loaded once per (repo,
subfolder), kept with the model's cache entry, and seen by that call only: the pipeline gets its
own transformer back when the call ends, so other calls are unaffected.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from typing import Any

from ...errors import CapabilityNotSupportedError, InvalidRequestError, UnknownModelError
from .cache import Entry

EXTRA_KEYS = {
    "rapid_aio_repo": "hub id or folder whose transformer replaces the model's for this call",
    "rapid_aio_subfolder": 'the subfolder of rapid_aio_repo holding it (default "transformer")',
}


@contextlib.contextmanager
def swapped(
    entry: Entry, pipe: Any, extra: Mapping[str, Any], hub_options: Mapping[str, Any]
) -> Iterator[float]:
    """Yields the load time (0 when nothing to swap or already loaded); restores on exit."""
    repo = extra.get("rapid_aio_repo")
    if not repo:
        yield 0.0
        return
    own = getattr(pipe, "transformer", None)
    if own is None:
        raise CapabilityNotSupportedError(
            f"extra.rapid_aio_repo needs a transformer-based model; {type(pipe).__name__} has none"
        )
    if not isinstance(repo, str):
        raise InvalidRequestError("extra.rapid_aio_repo", repo, "must be a hub id or folder")
    subfolder = str(extra.get("rapid_aio_subfolder") or "transformer")
    loaded: dict[str, Any] = entry.__dict__.setdefault("rapid_transformers", {})
    key = f"{repo}#{subfolder}"
    load_s = 0.0
    if key not in loaded:
        started = time.perf_counter()
        try:
            other = type(own).from_pretrained(
                repo, subfolder=subfolder, torch_dtype=own.dtype, **hub_options
            )
        except (OSError, ValueError) as exc:
            raise UnknownModelError(
                f"cannot load extra.rapid_aio_repo {repo!r} ({subfolder}): {exc}"
            ) from None
        loaded[key] = other.to(own.device)
        load_s = time.perf_counter() - started
    pipe.transformer = loaded[key]
    try:
        yield load_s
    finally:
        pipe.transformer = own
