"""Which tasks a model folder can run, read from its ``model_index.json`` and the pipeline classes.

``VIDEO_PIPELINES`` is the one table of video pipeline classes (task, frame rule, default fps);
image tasks are derived from Diffusers' own AutoPipeline mappings, so a new image family works
without an entry here. For a model in the capability registry, the registry's class per task
and its frame rule win over what is read from the folder.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import (
    BackendError,
    CapabilityNotSupportedError,
    InvalidRequestError,
    UnknownModelError,
)
from ...types import LIMITS

log = logging.getLogger(__name__)

T2I, I2I, T2V, I2V = "text_to_image", "image_to_image", "text_to_video", "image_to_video"
IMAGE_TASKS = (T2I, I2I)
VIDEO_TASKS = (T2V, I2V)


@dataclass(frozen=True)
class VideoFamily:
    """How one video pipeline class counts frames and what it defaults to."""

    task: str
    frame_step: int = 1  # num_frames must be frame_step*k + frame_offset
    frame_offset: int = 0
    default_fps: int = 8
    image_arg: str | None = None  # name of the conditioning image argument (image->video)

    @property
    def rule(self) -> str:
        return f"{self.frame_step}k+{self.frame_offset}"

    def check_frames(self, num_frames: int, class_name: str) -> None:
        """Refuse a frame count the pipeline would silently round (the agent asked for it)."""
        if num_frames < self.frame_offset or (num_frames - self.frame_offset) % self.frame_step:
            below = max(
                self.frame_offset, num_frames - (num_frames - self.frame_offset) % self.frame_step
            )
            raise InvalidRequestError(
                "num_frames",
                num_frames,
                f"{class_name} needs num_frames = {self.rule} (e.g. {below} or {below + self.frame_step})",
            )


# class name (model_index.json "_class_name") -> video family
VIDEO_PIPELINES: dict[str, VideoFamily] = {
    "WanPipeline": VideoFamily(T2V, 4, 1, 16),
    "WanImageToVideoPipeline": VideoFamily(I2V, 4, 1, 16, "image"),
    "LTXPipeline": VideoFamily(T2V, 8, 1, 24),
    "LTXImageToVideoPipeline": VideoFamily(I2V, 8, 1, 24, "image"),
    "CogVideoXPipeline": VideoFamily(T2V, 4, 1, 8),
    "CogVideoXImageToVideoPipeline": VideoFamily(I2V, 4, 1, 8, "image"),
    "HunyuanVideoPipeline": VideoFamily(T2V, 4, 1, 15),
    "HunyuanVideoImageToVideoPipeline": VideoFamily(I2V, 4, 1, 15, "image"),
    "WanVACEPipeline": VideoFamily(T2V, 4, 1, 16),
    "LTX2Pipeline": VideoFamily(T2V, 8, 1, 24),
    "LTX2ImageToVideoPipeline": VideoFamily(I2V, 8, 1, 24, "image"),
    "HunyuanVideo15Pipeline": VideoFamily(T2V, 4, 1, 24),
    "HunyuanVideo15ImageToVideoPipeline": VideoFamily(I2V, 4, 1, 24, "image"),
    "MochiPipeline": VideoFamily(T2V, 6, 1, 30),
    "AnimateDiffPipeline": VideoFamily(T2V, 1, 1, 8),
    "AnimateDiffSDXLPipeline": VideoFamily(T2V, 1, 1, 8),
    "StableVideoDiffusionPipeline": VideoFamily(I2V, 1, 1, 7, "image"),
}


# Image pipeline classes that Diffusers' AutoPipeline mappings miss: kind -> class that runs it
# (kinds: text_to_image, image_to_image, inpaint). A class only here for "inpaint" needs a mask.
IMAGE_PIPELINES: dict[str, dict[str, str]] = {
    "FluxFillPipeline": {"inpaint": "FluxFillPipeline"},
    "KolorsPipeline": {T2I: "KolorsPipeline", I2I: "KolorsImg2ImgPipeline"},
    "KolorsImg2ImgPipeline": {T2I: "KolorsPipeline", I2I: "KolorsImg2ImgPipeline"},
    "HiDreamImagePipeline": {T2I: "HiDreamImagePipeline"},
    "HunyuanImagePipeline": {T2I: "HunyuanImagePipeline"},
    "StableDiffusionInstructPix2PixPipeline": {I2I: "StableDiffusionInstructPix2PixPipeline"},
    "StableDiffusionXLInstructPix2PixPipeline": {I2I: "StableDiffusionXLInstructPix2PixPipeline"},
}


# Pipelines whose ``image`` takes a list: the edit image first, then the reference images
MULTI_IMAGE_PIPELINES = frozenset(
    {"QwenImageEditPlusPipeline", "Flux2Pipeline", "Flux2KleinPipeline", "Flux2KleinKVPipeline"}
)


@dataclass(frozen=True)
class ModelInfo:
    """What a model folder declares: its pipeline class and the tasks that class can run."""

    source: str
    class_name: str
    tasks: tuple[str, ...]
    supports_mask: bool
    registry_classes: Mapping[str, str]
    installed: bool = True  # False: the installed diffusers lacks class_name

    def video_family(self, task: str) -> tuple[str, VideoFamily]:
        name = self.registry_classes.get(task, self.class_name)
        family = VIDEO_PIPELINES.get(name)
        if family is None or family.task != task:
            raise BackendError(f"{self.source} ({name}) is not a {task} pipeline")
        return name, family


def is_local_path(source: str) -> bool:
    return source.startswith(("/", "./", "../", "~")) or Path(source).expanduser().exists()


def canonical_source(source: str) -> str:
    """A hub id the registry knows under another name (renamed repo) -> the id to load."""
    if is_local_path(source):
        return source
    try:
        from ...model_capabilities import VisionModelCapabilitiesRegistry

        return VisionModelCapabilitiesRegistry().canonical_id(source)
    except Exception:  # the registry is advice here
        return source


def find_model_index(
    source: str, *, allow_download: bool, cache_dir: str | None, revision: str | None
) -> Path:
    """The model_index.json of a local folder or a hub id (from the cache unless downloads allowed)."""
    source = canonical_source(source)
    if is_local_path(source):
        index = Path(source).expanduser() / "model_index.json"
        if not index.is_file():
            raise UnknownModelError(
                f"model folder {source!r} has no model_index.json: give the folder of a "
                "Diffusers model (the one that holds model_index.json)"
            )
        return index
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        return Path(
            hf_hub_download(
                source,
                "model_index.json",
                revision=revision,
                cache_dir=cache_dir,
                local_files_only=not allow_download,
            )
        )
    except LocalEntryNotFoundError:
        hint = (
            "downloads are off (allow_download=False): fetch it first with "
            f"`abstractvision pull {source}`, point cache_dir at the cache holding it, or allow "
            "downloads"
            if not allow_download
            else "it could not be downloaded; check the id, the network and HF_TOKEN"
        )
        raise UnknownModelError(f"model {source!r} is not in the local cache; {hint}") from None
    except EntryNotFoundError:
        raise UnknownModelError(
            f"{source!r} is not a Diffusers model (no model_index.json)"
        ) from None
    except Exception as exc:  # RepositoryNotFoundError, HTTP errors, bad ids
        raise UnknownModelError(f"cannot find model {source!r}: {exc}") from None


def inpaint_only(class_name: str) -> bool:
    """A dedicated inpainting class: every edit goes through its mask input."""
    return "Inpaint" in class_name or set(IMAGE_PIPELINES.get(class_name, ())) == {"inpaint"}


def tasks_of_class(class_name: str) -> tuple[tuple[str, ...], bool]:
    """(tasks, supports_mask) of a pipeline class, from Diffusers' AutoPipeline mappings."""
    video = VIDEO_PIPELINES.get(class_name)
    if video is not None:
        return (video.task,), False
    from .upscale import UPSCALE, UPSCALERS

    if class_name in UPSCALERS:
        return (UPSCALE,), False
    own = IMAGE_PIPELINES.get(class_name)
    if own is not None:
        kinds = [T2I] if T2I in own else []
        kinds += [I2I] if I2I in own or "inpaint" in own else []
        return tuple(kinds), "inpaint" in own
    from diffusers.pipelines import auto_pipeline as auto

    tasks: list[str] = []
    if auto._get_task_class(auto.AUTO_TEXT2IMAGE_PIPELINES_MAPPING, class_name, False):
        tasks.append(T2I)
    if auto._get_task_class(auto.AUTO_IMAGE2IMAGE_PIPELINES_MAPPING, class_name, False):
        tasks.append(I2I)
    inpaint = auto._get_task_class(auto.AUTO_INPAINT_PIPELINES_MAPPING, class_name, False)
    if inpaint is not None and I2I not in tasks:
        tasks.append(I2I)
    if "Inpaint" in class_name and T2I in tasks:
        tasks.remove(T2I)  # a dedicated inpainting UNet cannot generate from noise alone
    return tuple(tasks), inpaint is not None


def registry_classes(source: str) -> dict[str, str]:
    """Pipeline class per task for a model the capability registry knows; {} otherwise."""
    try:
        from ...model_capabilities import VisionModelCapabilitiesRegistry

        registry = VisionModelCapabilitiesRegistry()
        if source not in registry:
            return {}
        engine = registry.get(source).engines.diffusers
        return {str(task): name for task, name in (engine.pipelines if engine else {}).items()}
    except Exception:  # the registry is advice here; the model folder is the truth
        log.debug("registry lookup failed for %s", source, exc_info=True)
        return {}


def registry_frame_rule(source: str, task: str) -> tuple[int, int] | None:
    try:
        from ...model_capabilities import VisionModelCapabilitiesRegistry

        spec = VisionModelCapabilitiesRegistry().param_spec(source, task).get("num_frames")
        return spec.frame_step() if spec is not None and spec.frame_rule else None
    except Exception:
        return None


def read_model_info(index: Path, source: str) -> ModelInfo:
    try:
        data: dict[str, Any] = json.loads(index.read_text(encoding="utf-8"))
        class_name = str(data["_class_name"])
    except (OSError, ValueError, KeyError) as exc:
        raise BackendError(f"unreadable model_index.json for {source!r}: {exc}") from None
    import diffusers

    source = canonical_source(source)
    tasks, mask = tasks_of_class(class_name)
    classes = registry_classes(source)
    extra = tuple(t for t in classes if t in (*IMAGE_TASKS, *VIDEO_TASKS) and t not in tasks)
    installed = getattr(diffusers, class_name, None) is not None
    return ModelInfo(source, class_name, tasks + extra, mask, classes, installed)


def family_kwargs(pipe: Any, kwargs: Mapping[str, Any], request: Any) -> dict[str, Any]:
    """Arguments a family needs beyond the common ones, from the call's own (tested per family).

    - FLUX.1 Kontext rescales its output to ``max_area`` (default 1 MP) and its input image to a
      preferred Kontext size: keep the asked size (the input is already resized to it).
    - Wan 2.2 A14B runs a second, low-noise expert below ``boundary_ratio``; its guidance is
      ``extra.guidance_scale_2`` (Diffusers' default: the same as guidance_scale).
    - ``reference_images`` (Qwen-Image-Edit-2509+, FLUX.2): ``image`` becomes the list of the
      edit image and the references; a single-image pipeline refuses them.
    - ``extra.max_sequence_length``: the prompt token budget of T5/LLM text encoders.
    - guidance_scale is Stable Video Diffusion's ``max_guidance_scale`` (the top of its ramp)
      and Stable Cascade's ``prior_guidance_scale``.
    - A pipeline that sizes its output itself (HunyuanVideo-1.5 image->video: its resolution
      tier) refuses width/height instead of ignoring them.
    """
    params = inspect.signature(type(pipe).__call__).parameters
    name = type(pipe).__name__
    extra = getattr(request, "extra", {}) or {}
    out: dict[str, Any] = {}
    for side in ("width", "height"):  # an image edit resizes its input to the size instead
        asked = getattr(request, side, None) if "num_frames" in params else None
        if asked is not None and side not in params:
            raise InvalidRequestError(
                side, asked, f"{name} sizes its output from the model itself: omit width/height"
            )
    guidance = getattr(request, "guidance_scale", None)
    if guidance is not None and "guidance_scale" not in params:
        for knob in ("max_guidance_scale", "prior_guidance_scale"):  # SVD / Stable Cascade
            if knob in params:
                out[knob] = guidance
                break
    references = getattr(request, "reference_images", ())
    if references:
        if name not in MULTI_IMAGE_PIPELINES:
            raise CapabilityNotSupportedError(
                f"{name} edits one image; reference_images need a multi-reference model "
                "(Qwen-Image-Edit-2509/2511, FLUX.2)"
            )
        from ... import media

        images = [
            media.decode_image(d, field=f"reference_images.{i}") for i, d in enumerate(references)
        ]
        out["image"] = [kwargs["image"], *images]
    width, height = kwargs.get("width"), kwargs.get("height")
    if "max_area" in params and width and height:
        out["max_area"] = width * height
    if "_auto_resize" in params and "image" in kwargs:
        out["_auto_resize"] = False
    second = extra.get("guidance_scale_2")
    if second is not None:
        if "guidance_scale_2" not in params or getattr(pipe, "transformer_2", None) is None:
            raise InvalidRequestError(
                "extra.guidance_scale_2", second, f"{name} has no second expert"
            )
        top = LIMITS.max_guidance_scale
        if (
            isinstance(second, bool)
            or not isinstance(second, int | float)
            or not 0 <= second <= top
        ):
            raise InvalidRequestError("extra.guidance_scale_2", second, f"must be in [0, {top}]")
        out["guidance_scale_2"] = float(second)
    tokens = extra.get("max_sequence_length")
    if tokens is not None:
        if "max_sequence_length" not in params:
            raise InvalidRequestError(
                "extra.max_sequence_length", tokens, f"{name} takes no max_sequence_length"
            )
        if isinstance(tokens, bool) or not isinstance(tokens, int) or not 1 <= tokens <= 4096:
            raise InvalidRequestError("extra.max_sequence_length", tokens, "must be in [1, 4096]")
        config = getattr(getattr(pipe, "transformer", None), "config", None)
        fixed = getattr(config, "max_text_seq_length", None)  # CogVideoX: a fixed text length
        if isinstance(fixed, int) and tokens != fixed:
            raise InvalidRequestError(
                "extra.max_sequence_length", tokens, f"{name} takes exactly {fixed} tokens"
            )
        out["max_sequence_length"] = tokens
    return out
