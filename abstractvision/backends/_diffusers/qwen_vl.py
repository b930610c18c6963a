"""Qwen2-VL processors without torchvision (the ``processor`` of Qwen-Image-Edit pipelines).

transformers 5 builds ``Qwen2VLProcessor`` only with torchvision: its default image processor
is the torchvision one, and the processor checks its ``video_processor`` slot against a class
that transformers exports only when torchvision is importable. The edit pipelines only ever
pass images, so without torchvision we build the processor from the same ``processor/`` folder
with the PIL image processor (``Qwen2VLImageProcessorPil``, which reads the same
``preprocessor_config.json``) and no video processor, and hand it to ``from_pretrained``.
"""

from __future__ import annotations

import inspect
from typing import Any

__all__ = ["processor_components"]


def processor_components(cls: Any, source: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``{"processor": ...}`` for a pipeline whose Qwen2-VL processor needs torchvision, else {}.

    ``kwargs`` are the pipeline's ``from_pretrained`` arguments (cache_dir, revision,
    local_files_only); the processor comes from the model's ``processor`` subfolder.
    """
    param = inspect.signature(cls.__init__).parameters.get("processor")
    if param is None or "Qwen2VLProcessor" not in str(param.annotation):
        return {}
    import transformers
    from transformers.utils import is_torchvision_available

    image_cls = getattr(transformers, "Qwen2VLImageProcessorPil", None)
    if is_torchvision_available() or image_cls is None:
        return {}  # the stock path works, or this transformers has no PIL processor to offer
    from transformers import AutoTokenizer, Qwen2VLProcessor

    class _ImagesOnlyQwen2VLProcessor(Qwen2VLProcessor):
        """Qwen2VLProcessor with an empty video slot (the edit pipelines pass images only)."""

        def check_argument_for_proper_class(self, argument_name: str, argument: Any) -> Any:
            if argument_name == "video_processor" and argument is None:
                return None
            return super().check_argument_for_proper_class(argument_name, argument)

    hub = {
        key: kwargs[key]
        for key in ("cache_dir", "revision", "local_files_only")
        if kwargs.get(key) is not None
    }
    image_processor = image_cls.from_pretrained(source, subfolder="processor", **hub)
    tokenizer = AutoTokenizer.from_pretrained(source, subfolder="processor", **hub)
    processor = _ImagesOnlyQwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer)
    return {"processor": processor}
