"""Random-weight stable-diffusion.cpp model files written from tensor specs (tests/data/sdcpp).

sd.cpp loads a model by tensor names and shapes, so a file with the right names and shapes but
random values runs the real load, text-encode, sample and decode path. Images are noise; the
engine code that runs is the one a real model uses. Values follow a recipe that keeps
activations finite: 1-D biases zero, 1-D weights/scales one, N-D weights normal with std
1/sqrt(fan_in). The 1.3B Wan DiT is written as raw Q4_0 blocks, one tensor at a time, so no
float array of the whole model is ever built.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np

__all__ = ["SPEC_DIR", "load_spec", "write_gguf_q4", "write_safetensors"]

SPEC_DIR = Path(__file__).parent / "data" / "sdcpp"
_Q4_BLOCK = 32  # values per Q4_0 block: 2 bytes f16 scale + 16 bytes of nibbles
_Q4_BYTES = 18


def load_spec(name: str) -> dict[str, list[int]]:
    """``{"tensor name": [shape...]}`` from ``tests/data/sdcpp/<name>.json``."""
    return json.loads((SPEC_DIR / f"{name}.json").read_text())


def _float_tensor(name: str, shape: list[int], rng: np.random.Generator) -> np.ndarray:
    if len(shape) == 1:
        fill = 0.0 if name.endswith("bias") else 1.0
        return np.full(shape, fill, dtype=np.float32)
    fan_in = math.prod(shape[1:])
    values = rng.standard_normal(shape, dtype=np.float32) / math.sqrt(fan_in)
    return values.astype(np.float16)


def write_safetensors(spec: dict[str, list[int]], path: Path, *, seed: int = 0) -> Path:
    """All tensors as float (f32 1-D, f16 otherwise) in one ``.safetensors`` file."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    tensors = {name: _float_tensor(name, shape, rng) for name, shape in sorted(spec.items())}
    save_file(tensors, str(path))
    return path


def _is_q4(name: str, shape: list[int]) -> bool:
    return len(shape) == 2 and name.endswith("weight") and shape[-1] % _Q4_BLOCK == 0


def _q4_blocks(shape: list[int], noise: np.ndarray) -> np.ndarray:
    """Raw Q4_0 bytes for a ``rows x cols`` weight: random nibbles, one f16 scale per block."""
    rows, cols = shape
    blocks = rows * cols // _Q4_BLOCK
    data = noise[: blocks * _Q4_BYTES].reshape(blocks, _Q4_BYTES).copy()
    scale = np.float16(0.22 / math.sqrt(cols)).tobytes()
    data[:, 0] = scale[0]
    data[:, 1] = scale[1]
    return data.reshape(rows, cols // _Q4_BLOCK * _Q4_BYTES)


def write_gguf_q4(spec: dict[str, list[int]], path: Path, *, seed: int = 0) -> Path:
    """A ``.gguf`` whose 2-D weights are Q4_0 blocks, streamed tensor by tensor."""
    import gguf

    rng = np.random.default_rng(seed)
    names = sorted(spec)
    q4_bytes = max(
        (math.prod(spec[n]) // _Q4_BLOCK * _Q4_BYTES for n in names if _is_q4(n, spec[n])),
        default=0,
    )
    noise = rng.integers(0, 256, size=q4_bytes, dtype=np.uint8)  # shared by every Q4 tensor
    writer = gguf.GGUFWriter(path, arch="wan")
    for name in names:
        shape = spec[name]
        if _is_q4(name, shape):
            nbytes = math.prod(shape) // _Q4_BLOCK * _Q4_BYTES
            byte_shape = [shape[0], shape[1] // _Q4_BLOCK * _Q4_BYTES]
            writer.add_tensor_info(
                name, byte_shape, np.dtype(np.uint8), nbytes, gguf.GGMLQuantizationType.Q4_0
            )
        else:
            dtype = np.dtype(np.float32 if len(shape) == 1 else np.float16)
            writer.add_tensor_info(name, shape, dtype, math.prod(shape) * dtype.itemsize)
    writer.write_header_to_file(path)
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for _name, tensor in _tensors(spec, names, noise, rng):
        writer.write_tensor_data(tensor)
    writer.close()
    return path


def _tensors(
    spec: dict[str, list[int]], names: list[str], noise: np.ndarray, rng: np.random.Generator
) -> Iterator[tuple[str, np.ndarray]]:
    for name in names:
        shape = spec[name]
        if _is_q4(name, shape):
            yield name, _q4_blocks(shape, noise)
        else:
            yield name, _float_tensor(name, shape, rng)
