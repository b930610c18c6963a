"""Refuse up front a registry model whose weights cannot fit the device and offload setting.

The figure comes from the registry's published parameter counts at the dtype the backend will
load (``ModelCapabilities.memory_bytes``), so a 56B-parameter model is refused in a millisecond
with the number, instead of failing minutes into a download or a load. Only weights are
counted (activations come on top), and only total memory is compared, so a refusal is certain:
a model that passes may still run out of memory later, which the loader reports too.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from ...errors import OutOfMemoryError

log = logging.getLogger(__name__)

GIB = 2**30


def system_memory_bytes() -> int | None:
    """Total physical memory of this machine (None where it cannot be read)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        return None


def device_memory_bytes(device: str) -> int | None:
    """Total memory of a CUDA device; system memory for cpu and mps (unified memory)."""
    if device.startswith("cuda"):
        import torch

        index = int(device.split(":", 1)[1]) if ":" in device else torch.cuda.current_device()
        return int(torch.cuda.get_device_properties(index).total_memory)
    return system_memory_bytes()


def check_fits(source: str, dtype: Any, device: str, options: Any) -> None:
    """Raise ``OutOfMemoryError`` naming the figures when ``source``'s weights cannot fit.

    Skipped for a quantized load (``quantize`` / ``gguf_file``): the figure would be too high.
    """
    if getattr(options, "quantize", None) or getattr(options, "gguf_file", None):
        return
    try:
        from ...model_capabilities import VisionModelCapabilitiesRegistry

        registry = VisionModelCapabilitiesRegistry()
        if source not in registry:
            return
        caps = registry.get(source)
    except Exception:  # the registry is advice here
        log.debug("no registry figures for %s", source, exc_info=True)
        return
    dtype_name = str(dtype).removeprefix("torch.")
    need = caps.memory_bytes(dtype_name)
    if need is None:
        return
    largest = int(max(caps.parameters_b.values()) * need / sum(caps.parameters_b.values()))
    what = f"{source} needs {need / GIB:.1f} GiB for its weights at {dtype_name} "
    what += f"({caps.total_parameters_b:g}B published parameters)"
    on_gpu = device.startswith("cuda")
    sequential = on_gpu and options.enable_sequential_cpu_offload
    if on_gpu and options.enable_model_cpu_offload == "auto" and not sequential:
        gpu = device_memory_bytes(device)  # too big for the card: auto offloads (at worst
        sequential = gpu is None or need > gpu  # sequentially), so only system memory counts
    offload = on_gpu and options.enable_model_cpu_offload is True and not sequential
    system = system_memory_bytes()
    if on_gpu and not sequential:
        gpu = device_memory_bytes(device)
        if gpu is not None and not offload and need > gpu:
            raise OutOfMemoryError(
                f"{what}; {device} has {gpu / GIB:.1f} GiB. Enable model CPU offload "
                "(enable_model_cpu_offload), pick a smaller model or a quantized engine (sd.cpp)"
            )
        if gpu is not None and offload and largest > gpu:
            raise OutOfMemoryError(
                f"{what}; its largest part ({largest / GIB:.1f} GiB) does not fit {device} "
                f"({gpu / GIB:.1f} GiB) even with model CPU offload: use sequential CPU offload"
            )
    if (not on_gpu or offload or sequential) and system is not None and need > system:
        where = "this machine's memory" if not on_gpu else "system memory (offloaded weights)"
        raise OutOfMemoryError(
            f"{what}; {where} is {system / GIB:.1f} GiB. Pick a smaller model, a lower "
            "precision (torch_dtype) or a quantized engine (sd.cpp)"
        )
