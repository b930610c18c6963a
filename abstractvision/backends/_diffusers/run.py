"""One pipeline call: keyword filtering, seeds, schedulers, progress/cancel hooks, typed failures.

Everything here inspects the pipeline's ``__call__`` instead of assuming a model family, so a
keyword reaches a pipeline only when that pipeline declares it.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
from collections.abc import Iterator, Mapping
from typing import Any

from ...control import GenerationControl
from ...errors import (
    BackendError,
    CapabilityNotSupportedError,
    GenerationCancelledError,
    InvalidRequestError,
    OutOfMemoryError,
)
from .cache import Entry, empty_device_cache

log = logging.getLogger(__name__)

# extra["scheduler"] name -> (diffusers class, config overrides)
SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "ddim": ("DDIMScheduler", {}),
    "pndm": ("PNDMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {}),
    "dpmpp_2m_karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "dpmpp_sde": ("DPMSolverSDEScheduler", {}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "lcm": ("LCMScheduler", {}),
    "flow_euler": ("FlowMatchEulerDiscreteScheduler", {}),
}

EXTRA_KEYS: dict[str, str] = {
    "scheduler": "sampler, one of: " + ", ".join(SCHEDULERS) + " (must suit the model)",
    "guidance_scale_2": "guidance of the second (low-noise) expert of a two-expert model "
    "(Wan 2.2 A14B); default: guidance_scale",
    "max_sequence_length": "prompt token budget of a T5/LLM text encoder (e.g. <= 256 for "
    "FLUX.1-schnell); default: the pipeline's",
    "loras": 'LoRA adapters: [{"source": allowed folder/file/hub id, "weight": float, '
    '"weight_name": file in the repo (optional)}]',
}


class _Interrupted(Exception):
    """Raised from the step hook of a pipeline that has no ``_interrupt`` flag."""


def call_params(pipe: Any) -> Mapping[str, inspect.Parameter]:
    return inspect.signature(type(pipe).__call__).parameters


def default_of(pipe: Any, name: str) -> Any:
    param = call_params(pipe).get(name)
    return None if param is None or param.default is inspect.Parameter.empty else param.default


def denoise_steps(pipe: Any, steps: int | None, strength: float | None) -> int | None:
    """Steps an edit really runs: diffusers skips the first ``1 - strength`` of the schedule.

    A product that rounds to zero would crash inside the pipeline, so it is refused up front.
    """
    if steps is None or "strength" not in call_params(pipe):
        return steps
    strength = strength if strength is not None else default_of(pipe, "strength")
    if strength is None:
        return steps
    run = min(int(steps * strength), steps)
    if run < 1:
        need = "strength > 0" if strength <= 0 else f"steps >= {math.ceil(1 / strength)}"
        raise InvalidRequestError(
            "steps", steps, f"with strength {strength} no denoising step is left: use {need}"
        )
    return run


def filter_kwargs(
    pipe: Any, wanted: Mapping[str, Any], *, required: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Keep the set keywords that ``__call__`` declares; a missing required one is an error."""
    params = call_params(pipe)
    out: dict[str, Any] = {}
    for key, value in wanted.items():
        if value is None:
            continue
        if key in params:
            out[key] = value
        elif key in required:
            raise CapabilityNotSupportedError(f"{type(pipe).__name__} takes no {key!r} input")
        else:
            log.debug("%s does not take %s; not passed", type(pipe).__name__, key)
    return out


def guidance_kwargs(pipe: Any, value: float | None) -> dict[str, float]:
    """guidance_scale, or true_cfg_scale where that is the pipeline's real classifier-free knob."""
    if value is None:
        return {}
    params = call_params(pipe)
    if "true_cfg_scale" in params:
        transformer = getattr(pipe, "transformer", None)
        distilled = bool(getattr(getattr(transformer, "config", None), "guidance_embeds", False))
        if "guidance_scale" not in params or not distilled:
            return {"true_cfg_scale": value}
    return {"guidance_scale": value} if "guidance_scale" in params else {}


def use_scheduler(entry: Entry, pipe: Any, name: str | None) -> None:
    """Put the named scheduler (or the model's own) on ``pipe`` for this call."""
    if entry.default_scheduler is None:
        entry.default_scheduler = pipe.scheduler
    if name is None:
        pipe.scheduler = entry.default_scheduler
        return
    if not isinstance(name, str) or name not in SCHEDULERS:
        raise InvalidRequestError(
            "extra.scheduler", name, f"must be one of {', '.join(SCHEDULERS)}"
        )
    if name not in entry.schedulers:
        import diffusers

        class_name, overrides = SCHEDULERS[name]
        compatible = {c.__name__ for c in getattr(entry.default_scheduler, "compatibles", ())}
        compatible.add(type(entry.default_scheduler).__name__)
        if class_name not in compatible:
            fits = sorted(n for n, (c, _) in SCHEDULERS.items() if c in compatible)
            raise CapabilityNotSupportedError(
                f"scheduler {name!r} does not suit this model; use one of: {', '.join(fits) or 'none'}"
            )
        cls = getattr(diffusers, class_name)
        entry.schedulers[name] = cls.from_config(entry.default_scheduler.config, **overrides)
    pipe.scheduler = entry.schedulers[name]


def make_generator(device: str, seed: int) -> Any:
    """A seeded generator where latents are drawn: CUDA on a CUDA pipeline, else CPU."""
    import torch

    return torch.Generator(device="cuda" if device.startswith("cuda") else "cpu").manual_seed(seed)


def progress_kwargs(pipe: Any, control: GenerationControl, steps: int | None) -> dict[str, Any]:
    """Step hook: report (step, total) every step; on cancel, interrupt the loop."""
    params = call_params(pipe)
    can_interrupt = isinstance(getattr(type(pipe), "interrupt", None), property)

    def total() -> int | None:
        return getattr(pipe, "_num_timesteps", None) or steps

    if "callback_on_step_end" in params:

        def on_step_end(
            p: Any, step: int, timestep: Any, tensors: dict[str, Any]
        ) -> dict[str, Any]:
            control.report(step + 1, total())
            if control.cancelled:
                if not can_interrupt:
                    raise _Interrupted
                p._interrupt = True
            return tensors

        return {"callback_on_step_end": on_step_end}
    if "callback" in params:

        def on_step(step: int, timestep: Any, latents: Any) -> None:
            control.report(step + 1, total())
            if control.cancelled:
                raise _Interrupted

        return {
            "callback": on_step,
            **({"callback_steps": 1} if "callback_steps" in params else {}),
        }
    return {}


def run_pipeline(pipe: Any, kwargs: dict[str, Any], control: GenerationControl) -> Any:
    """Call the pipeline; translate cancellation and device failures into typed errors."""
    import torch

    name = type(pipe).__name__
    try:
        with torch.inference_mode():
            result = pipe(**kwargs)
    except _Interrupted:
        raise GenerationCancelledError("generation cancelled by the caller") from None
    except torch.cuda.OutOfMemoryError:
        raise _oom(name) from None
    except RuntimeError as exc:
        if "out of memory" in str(exc).lower():  # MPS and older CUDA builds
            raise _oom(name) from None
        raise BackendError(f"{name} failed: {exc}") from exc
    except (ValueError, TypeError) as exc:
        raise BackendError(f"{name} rejected the inputs: {exc}") from exc
    except GenerationCancelledError:
        raise
    except Exception as exc:  # an engine bug must not escape untyped
        raise BackendError(f"{name} failed ({type(exc).__name__}): {exc}") from exc
    finally:
        if hasattr(pipe, "_interrupt"):
            pipe._interrupt = False
    control.check()
    return result


def _oom(name: str) -> OutOfMemoryError:
    empty_device_cache()
    return OutOfMemoryError(
        f"{name} ran out of device memory; freed the cache. Try a smaller width/height, "
        "fewer frames, or enable model CPU offload / VAE tiling in the backend config."
    )


@contextlib.contextmanager
def decode_one_by_one(pipe: Any) -> Iterator[None]:
    """VAE-decode a batch image by image, so each image's bytes match its solo run's."""
    vae = getattr(pipe, "vae", None)
    before = getattr(vae, "use_slicing", None)
    if before is False:
        vae.use_slicing = True  # type: ignore[union-attr]
    try:
        yield
    finally:
        if before is False:
            vae.use_slicing = False  # type: ignore[union-attr]
