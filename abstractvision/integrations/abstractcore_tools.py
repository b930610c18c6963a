"""``make_vision_tools``: AbstractCore ``@tool`` functions over a ``VisionManager``.

Each tool is a plain function with typed arguments (AbstractCore builds its JSON schema from the
signature) that runs through ``abstractvision.tools.dispatch``: the same validation, image-input
resolution (artifact refs, data URLs, base64) and small results as the MCP tools. A tool returns an
artifact ref (or ``{images: [...]}`` for count > 1; the 0.3.x ``*_batch`` tools return a list of
refs); a bad argument comes back as
``{"error", "field", "value", "limit"}`` for the model to fix. Only the tasks the manager's backend
(and ``model_id`` in the registry, when given) can run are returned.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import AbstractVisionError, OptionalDependencyMissingError

__all__ = ["make_vision_tools"]


def _tool_decorator() -> Callable[..., Any]:
    try:
        from abstractcore import tool
    except ImportError as exc:
        raise OptionalDependencyMissingError(
            "abstractcore", None, feature="make_vision_tools"
        ) from exc
    return tool  # type: ignore[no-any-return]


def _call_args(fn: Callable[..., Any], frame_locals: dict[str, Any]) -> dict[str, Any]:
    """The call's arguments (``locals()`` also holds the closure's names)."""
    import inspect

    return {name: frame_locals[name] for name in inspect.signature(fn).parameters}


def _clean(args: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in args.items() if v is not None and v != []}


def _as_list(out: dict[str, Any]) -> Any:
    """A batch tool's answer: the list of refs (0.3.x shape), or the error for the model."""
    return out if "error" in out else out.get("images", [out])


def _legacy_inputs(args: dict[str, Any]) -> dict[str, Any]:
    """0.3.x tool arguments: ``reference_images`` items may be ``{"b64": ...}``;
    ``lora_adapters`` ({source, scale} items) become ``extra.loras``; the video tools'
    ``guidance_2`` / ``flow_shift`` become ``extra.guidance_scale_2`` / ``extra.flow_shift``."""
    refs = args.pop("reference_images", None)
    if refs:
        args["reference_images"] = [
            r["b64"] if isinstance(r, dict) and "b64" in r else r for r in refs
        ]
    adapters = args.pop("lora_adapters", None)
    if adapters:
        from ..compat import legacy_extra

        args["extra"] = legacy_extra(None, adapters)
    for name, key in (("guidance_2", "guidance_scale_2"), ("flow_shift", "flow_shift")):
        if args.get(name) is not None:  # 0.3.x video arguments, kept in extra (as requests do)
            args["extra"] = {**args.get("extra", {}), key: args[name]}
        args.pop(name, None)
    return args


def _inputs(args: dict[str, Any]) -> dict[str, Any]:
    """A tool's arguments as dispatch takes them: the 0.3.x ones (``_legacy_inputs``), and each
    image given as ``<name>_artifact`` (a ref) or ``<name>_b64`` as ``<name>`` (dispatch resolves either)."""
    args = _legacy_inputs(args)
    for name in ("image", "mask", "reference_image"):
        if f"{name}_artifact" in args:
            ref, b64 = args.pop(f"{name}_artifact"), args.pop(f"{name}_b64", None)
            args[name] = ref if ref is not None else b64
    return args


def _batch_twin(
    single: Callable[..., Any],
    name: str,
    doc: str,
    after: str,
    body: Callable[..., Any],
    drop: tuple[str, ...] = (),
) -> Callable[..., Any]:
    """The 0.3.x ``*_batch`` tool of ``single``: the same parameters less ``drop``, with ``count``
    and ``seeds`` right after ``after``; ``body(args)`` gets the call's arguments (as
    ``_call_args`` gives them). AbstractCore reads the signature and hints set here."""
    import inspect

    sig = inspect.signature(single)
    kept = [p for p in sig.parameters.values() if p.name not in {"count", "seeds", *drop}]
    at = [p.name for p in kept].index(after) + 1
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    extra = [
        inspect.Parameter("count", kind, default=None, annotation="int | None"),
        inspect.Parameter("seeds", kind, default=None, annotation="list[int] | None"),
    ]
    params = kept[:at] + extra + kept[at:]
    batch_sig = sig.replace(parameters=params, return_annotation="Any")

    def batch(*args: Any, **kwargs: Any) -> Any:
        bound = batch_sig.bind(*args, **kwargs)
        bound.apply_defaults()
        return body(dict(bound.arguments))

    batch.__name__ = batch.__qualname__ = name
    batch.__doc__ = doc
    batch.__signature__ = batch_sig  # type: ignore[attr-defined]
    batch.__annotations__ = {p.name: p.annotation for p in params} | {"return": "Any"}
    return batch


def make_vision_tools(
    *, vision_manager: Any, model_id: str | None = None, registry: Any = None
) -> list[Callable[..., Any]]:
    """The tools for ``vision_manager`` (which needs a store: results are artifact refs)."""
    from ..tool_schemas import available_tasks
    from ..tools import dispatch
    from ..types import Task

    tool = _tool_decorator()
    vm = vision_manager
    if getattr(vm, "store", None) is None:
        raise AbstractVisionError("make_vision_tools needs a VisionManager with a store")
    tasks = set(available_tasks(vm.capabilities()))
    if model_id:
        if registry is None:
            from ..model_capabilities import VisionModelCapabilitiesRegistry

            registry = VisionModelCapabilitiesRegistry()
        tasks = {t for t in tasks if registry.supports(model_id, t.value)}

    def run(task: Task, args: dict[str, Any]) -> dict[str, Any]:
        return dispatch(vm, task.value, _clean(args))

    def run_each(task: Task, args: dict[str, Any]) -> Any:
        """A 0.3.x video batch: one call per seed (``seeds``, else ``count`` from ``seed`` on);
        stops at the first error, which names the videos already made (``completed``)."""
        from ..compat import batch_seeds
        from ..errors import InvalidRequestError

        count, seeds = args.pop("count"), args.pop("seeds")
        try:
            planned = batch_seeds(count, seeds, args.get("seed"))
        except InvalidRequestError as exc:
            return {"error": str(exc), "field": exc.field, "value": exc.value, "limit": exc.limit}
        done: list[dict[str, Any]] = []
        for seed in planned:
            out = run(task, {**args, "seed": seed})
            if "error" in out:
                return {**out, "completed": done}
            done.append(out)
        return done

    tools: list[Callable[..., Any]] = []

    if Task.TEXT_TO_IMAGE in tasks:

        @tool(name="vision_text_to_image", tags=["vision", "image"])
        def vision_text_to_image(
            prompt: str,
            negative_prompt: str | None = None,
            width: int | None = None,
            height: int | None = None,
            steps: int | None = None,
            guidance_scale: float | None = None,
            seed: int | None = None,
            count: int | None = None,
            seeds: list[int] | None = None,
            lora_adapters: list[dict[str, Any]] | None = None,
        ) -> dict[str, Any]:
            """Generate image(s) from a text prompt; returns an artifact ref ({images} if count > 1)."""
            return run(Task.TEXT_TO_IMAGE, _inputs(_call_args(vision_text_to_image, locals())))

        tools.append(vision_text_to_image)

        batch = _batch_twin(
            vision_text_to_image,
            "vision_text_to_image_batch",
            "Several images of one prompt (count, or one per seed); a list of artifact refs.",
            after="prompt",
            body=lambda args: _as_list(run(Task.TEXT_TO_IMAGE, _inputs(args))),
        )
        tools.append(tool(name=batch.__name__, tags=["vision", "image", "batch"])(batch))

    if Task.IMAGE_TO_IMAGE in tasks:

        @tool(name="vision_image_to_image", tags=["vision", "image", "edit"])
        def vision_image_to_image(
            prompt: str,
            image_artifact: dict[str, Any] | None = None,
            image_b64: str | None = None,
            mask_artifact: dict[str, Any] | None = None,
            mask_b64: str | None = None,
            negative_prompt: str | None = None,
            strength: float | None = None,
            steps: int | None = None,
            guidance_scale: float | None = None,
            seed: int | None = None,
            reference_images: list[Any] | None = None,
            lora_adapters: list[dict[str, Any]] | None = None,
        ) -> dict[str, Any]:
            """Edit an image (artifact ref or base64) with a prompt; an optional mask limits it;
            reference_images (refs or base64) for models that combine images; lora_adapters:
            [{source, scale}] from vision_list_adapters."""
            return run(Task.IMAGE_TO_IMAGE, _inputs(_call_args(vision_image_to_image, locals())))

        tools.append(vision_image_to_image)

        batch = _batch_twin(
            vision_image_to_image,
            "vision_image_to_image_batch",
            "Several edits of one image (count, or one per seed); a list of artifact refs.",
            after="image_b64",
            body=lambda args: _as_list(run(Task.IMAGE_TO_IMAGE, _inputs(args))),
            drop=("mask_artifact", "mask_b64"),
        )
        tools.append(tool(name=batch.__name__, tags=["vision", "image", "edit", "batch"])(batch))

    if Task.MULTI_VIEW_IMAGE in tasks:

        @tool(name="vision_multi_view_image", tags=["vision", "image", "multiview"])
        def vision_multi_view_image(
            prompt: str,
            angles: list[str] | None = None,
            reference_image_artifact: dict[str, Any] | None = None,
            seed: int | None = None,
            steps: int | None = None,
        ) -> dict[str, Any]:
            """Consistent views of one subject (front, side, back...); refs {reference, views, contact_sheet}."""
            args = _inputs(_call_args(vision_multi_view_image, locals()))
            return run(Task.MULTI_VIEW_IMAGE, args)

        tools.append(vision_multi_view_image)

    if Task.TEXT_TO_VIDEO in tasks:

        @tool(name="vision_text_to_video", tags=["vision", "video"])
        def vision_text_to_video(
            prompt: str,
            negative_prompt: str | None = None,
            width: int | None = None,
            height: int | None = None,
            num_frames: int | None = None,
            fps: int | None = None,
            steps: int | None = None,
            guidance_scale: float | None = None,
            seed: int | None = None,
            guidance_2: float | None = None,
            flow_shift: float | None = None,
            lora_adapters: list[dict[str, Any]] | None = None,
        ) -> dict[str, Any]:
            """Generate a video from a text prompt; returns an artifact ref."""
            return run(Task.TEXT_TO_VIDEO, _inputs(_call_args(vision_text_to_video, locals())))

        tools.append(vision_text_to_video)

        batch = _batch_twin(
            vision_text_to_video,
            "vision_text_to_video_batch",
            "Several videos of one prompt (count, or one per seed); a list of artifact refs.",
            after="prompt",
            body=lambda args: run_each(Task.TEXT_TO_VIDEO, _inputs(args)),
            drop=("guidance_scale",),
        )
        tools.append(tool(name=batch.__name__, tags=["vision", "video", "batch"])(batch))

    if Task.IMAGE_TO_VIDEO in tasks:

        @tool(name="vision_image_to_video", tags=["vision", "video"])
        def vision_image_to_video(
            image_artifact: dict[str, Any] | None = None,
            image_b64: str | None = None,
            prompt: str | None = None,
            num_frames: int | None = None,
            fps: int | None = None,
            steps: int | None = None,
            seed: int | None = None,
            guidance_2: float | None = None,
            flow_shift: float | None = None,
            lora_adapters: list[dict[str, Any]] | None = None,
        ) -> dict[str, Any]:
            """Animate an image (artifact ref or base64); returns an artifact ref."""
            return run(Task.IMAGE_TO_VIDEO, _inputs(_call_args(vision_image_to_video, locals())))

        tools.append(vision_image_to_video)

        batch = _batch_twin(
            vision_image_to_video,
            "vision_image_to_video_batch",
            "Several videos from one image (count, or one per seed); a list of artifact refs.",
            after="prompt",
            body=lambda args: run_each(Task.IMAGE_TO_VIDEO, _inputs(args)),
        )
        tools.append(tool(name=batch.__name__, tags=["vision", "video", "batch"])(batch))

    upscale = getattr(Task, "IMAGE_UPSCALE", None)
    if upscale is not None and upscale in tasks:

        @tool(name="vision_image_upscale", tags=["vision", "image", "upscale"])
        def vision_image_upscale(
            image_artifact: dict[str, Any] | None = None,
            image_b64: str | None = None,
            scale: int | None = None,
            prompt: str | None = None,
            seed: int | None = None,
        ) -> dict[str, Any]:
            """A larger, more detailed version of an image; returns an artifact ref."""
            return run(upscale, _inputs(_call_args(vision_image_upscale, locals())))

        tools.append(vision_image_upscale)

    @tool(name="vision_list_adapters", tags=["vision", "catalog"])
    def vision_list_adapters(task: str | None = None) -> list[dict[str, Any]]:
        """Adapters (LoRAs) the backend may load, for ``task`` or all."""
        import dataclasses

        return [
            {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(i).items()}
            for i in vm.list_provider_adapters(model=model_id, task=task)
        ]

    tools.append(vision_list_adapters)
    return tools
