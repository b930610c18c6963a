"""Random-weight stable-diffusion.cpp model files written from tensor specs (tests/data/sdcpp).

sd.cpp loads a model by tensor names and shapes, so a file with the right names and shapes but
random values runs the real load, text-encode, sample and decode path. Images are noise; the
engine code that runs is the one a real model uses. Values follow a recipe that keeps
activations finite: 1-D biases zero, 1-D weights/scales one, N-D weights normal with std
1/sqrt(fan_in). The 1.3B Wan DiT is written as raw Q4_0 blocks, one tensor at a time, so no
float array of the whole model is ever built.

FLUX.2 [klein] and Wan come from JSON specs; the other families are specs built in code from the
blocks sd.cpp assembles (``clip_text_spec``, ``kl_vae_spec``, ``flux1_spec``, ``sd1_spec``, ...):
adding a family is one such function. ``write_gguf_q8`` writes any spec with Q8_0 linear weights
(sd.cpp keeps convolutions in f16, so they stay f16 here too).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np

__all__ = [
    "SPEC_DIR",
    "Spec",
    "clip_text_spec",
    "flux1_dit_spec",
    "flux1_spec",
    "kl_vae_spec",
    "load_spec",
    "sd1_controlnet_spec",
    "sd1_spec",
    "sd1_unet_spec",
    "write_gguf_q4",
    "write_gguf_q8",
    "write_safetensors",
    "write_safetensors_fast",
]

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


# --- specs as code: one function per building block, one per family -----------------------------
#
# Each returns ``{"tensor name": [torch-order shape]}`` in the layout sd.cpp loads (BFL / LDM names,
# the same as the published single-file checkpoints). Sizes sd.cpp infers from the file are small
# here; sizes it hard-codes are the real ones (see the source lines quoted in the test module).

Spec = dict[str, list[int]]


def _linear(name: str, out: int, inp: int, *, bias: bool = True) -> Spec:
    spec = {f"{name}.weight": [out, inp]}
    if bias:
        spec[f"{name}.bias"] = [out]
    return spec


def _conv(name: str, out: int, inp: int, k: int = 3) -> Spec:
    return {f"{name}.weight": [out, inp, k, k], f"{name}.bias": [out]}


def _norm(name: str, dim: int) -> Spec:
    return {f"{name}.weight": [dim], f"{name}.bias": [dim]}


def clip_text_spec(prefix: str, *, hidden: int = 768, layers: int = 12, mlp: int = 3072) -> Spec:
    """An OpenAI CLIP text transformer (HF names): CLIP-L/14 by default, as sd.cpp builds it
    (clip.hpp: ``hidden_size = 768``, ``n_layer = 12``, ``vocab_size = 49408``, fixed)."""
    p = f"{prefix}.text_model"
    spec: Spec = {
        f"{p}.embeddings.token_embedding.weight": [49408, hidden],
        f"{p}.embeddings.position_embedding.weight": [77, hidden],
        **_norm(f"{p}.final_layer_norm", hidden),
    }
    for i in range(layers):
        layer = f"{p}.encoder.layers.{i}"
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            spec |= _linear(f"{layer}.self_attn.{proj}", hidden, hidden)
        spec |= _norm(f"{layer}.layer_norm1", hidden) | _norm(f"{layer}.layer_norm2", hidden)
        spec |= _linear(f"{layer}.mlp.fc1", mlp, hidden) | _linear(f"{layer}.mlp.fc2", hidden, mlp)
    return spec


def _vae_resblock(name: str, inp: int, out: int) -> Spec:
    spec = _norm(f"{name}.norm1", inp) | _conv(f"{name}.conv1", out, inp)
    spec |= _norm(f"{name}.norm2", out) | _conv(f"{name}.conv2", out, out)
    if inp != out:
        spec |= _conv(f"{name}.nin_shortcut", out, inp, 1)
    return spec


def _vae_mid(name: str, ch: int) -> Spec:
    spec = _vae_resblock(f"{name}.block_1", ch, ch) | _vae_resblock(f"{name}.block_2", ch, ch)
    spec |= _norm(f"{name}.attn_1.norm", ch)
    for proj in ("q", "k", "v", "proj_out"):
        spec |= _conv(f"{name}.attn_1.{proj}", ch, ch, 1)
    return spec


def kl_vae_spec(
    prefix: str = "first_stage_model",
    *,
    z: int,
    decoder_ch: int = 32,
    encoder: bool = True,
    quant: bool = False,
) -> Spec:
    """The LDM KL autoencoder (ch_mult 1,2,4,4, two res blocks). sd.cpp infers the decoder's
    width from ``decoder.conv_in`` (auto_encoder_kl.hpp ``detect_decoder_ch``) but builds the
    encoder at ``ch = 128`` always, so only the decoder is small here."""
    mult = (1, 2, 4, 4)
    spec: Spec = {}
    ch = decoder_ch
    d = f"{prefix}.decoder"
    block_in = ch * mult[-1]
    spec |= _conv(f"{d}.conv_in", block_in, z) | _vae_mid(f"{d}.mid", block_in)
    for i in reversed(range(len(mult))):
        out = ch * mult[i]
        for j in range(3):
            spec |= _vae_resblock(f"{d}.up.{i}.block.{j}", block_in, out)
            block_in = out
        if i != 0:
            spec |= _conv(f"{d}.up.{i}.upsample.conv", block_in, block_in)
    spec |= _norm(f"{d}.norm_out", ch) | _conv(f"{d}.conv_out", 3, ch)
    if quant:
        spec |= _conv(f"{prefix}.post_quant_conv", z, z, 1)
    if encoder:
        ch, e = 128, f"{prefix}.encoder"
        spec |= _conv(f"{e}.conv_in", ch, 3)
        block_in = ch
        for i, m in enumerate(mult):
            for j in range(2):
                spec |= _vae_resblock(f"{e}.down.{i}.block.{j}", block_in, ch * m)
                block_in = ch * m
            if i != len(mult) - 1:
                spec |= _conv(f"{e}.down.{i}.downsample.conv", block_in, block_in)
        spec |= _vae_mid(f"{e}.mid", block_in) | _norm(f"{e}.norm_out", block_in)
        spec |= _conv(f"{e}.conv_out", 2 * z, block_in)
        if quant:
            spec |= _conv(f"{prefix}.quant_conv", 2 * z, 2 * z, 1)
    return spec


def flux1_dit_spec(
    *,
    hidden: int = 128,
    depth: int = 1,
    single: int = 1,
    guidance: bool = False,
    fill: bool = False,
) -> Spec:
    """FLUX.1 DiT: [schnell] by default, [dev]/Kontext with ``guidance`` (a ``guidance_in``
    embedder), Fill with ``fill`` (384 input channels: latent + masked image + mask, which is
    how model.cpp tells VERSION_FLUX_FILL). flux.hpp infers depth, single depth, hidden size
    (``txt_in``) and head size (``key_norm``); the RoPE axes (16, 56, 56) fix the head at 128."""
    p, head, mlp = "model.diffusion_model", 128, 4 * hidden
    spec: Spec = _linear(f"{p}.img_in", hidden, 384 if fill else 64)
    spec |= _linear(f"{p}.txt_in", hidden, 4096)
    if guidance:
        spec |= _linear(f"{p}.guidance_in.in_layer", hidden, 256)
        spec |= _linear(f"{p}.guidance_in.out_layer", hidden, hidden)
    for emb, inp in (("time_in", 256), ("vector_in", 768)):
        spec |= _linear(f"{p}.{emb}.in_layer", hidden, inp)
        spec |= _linear(f"{p}.{emb}.out_layer", hidden, hidden)
    for i in range(depth):
        for s in ("img", "txt"):
            b = f"{p}.double_blocks.{i}.{s}"
            spec |= _linear(f"{b}_mod.lin", 6 * hidden, hidden)
            spec |= _linear(f"{b}_attn.qkv", 3 * hidden, hidden)
            spec |= _linear(f"{b}_attn.proj", hidden, hidden)
            spec[f"{b}_attn.norm.query_norm.scale"] = [head]
            spec[f"{b}_attn.norm.key_norm.scale"] = [head]
            spec |= _linear(f"{b}_mlp.0", mlp, hidden) | _linear(f"{b}_mlp.2", hidden, mlp)
    for i in range(single):
        b = f"{p}.single_blocks.{i}"
        spec |= _linear(f"{b}.linear1", 3 * hidden + mlp, hidden)
        spec |= _linear(f"{b}.linear2", hidden, hidden + mlp)
        spec |= _linear(f"{b}.modulation.lin", 3 * hidden, hidden)
        spec[f"{b}.norm.query_norm.scale"] = [head]
        spec[f"{b}.norm.key_norm.scale"] = [head]
    spec |= _linear(f"{p}.final_layer.linear", 64, hidden)
    spec |= _linear(f"{p}.final_layer.adaLN_modulation.1", 2 * hidden, hidden)
    return spec


def flux1_spec(**dit: bool) -> Spec:
    """FLUX.1: tiny DiT, CLIP-L (the pooled vector; no T5: sd.cpp feeds zeros, conditioner.hpp
    FluxCLIPEmbedder), a narrow 16-channel VAE decoder and the fixed-size encoder."""
    text = clip_text_spec("text_encoders.clip_l.transformer")
    return flux1_dit_spec(**dit) | text | kl_vae_spec(z=16)


_Q8_BYTES = 34  # Q8_0 block: 2 bytes f16 scale + 32 int8 values
_POOL = 1 << 22  # 4 Mi normal values, reused (at random offsets) by every tensor


class _Noise:
    """The same recipe as ``_float_tensor`` (1-D: zeros/ones; N-D: normal / sqrt(fan_in)) drawn
    from one pool of normals at random offsets, so a gigabyte of f16 takes a second, not ten."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.pool = self.rng.standard_normal(_POOL, dtype=np.float32)

    def tensor(self, name: str, shape: list[int]) -> np.ndarray:
        if len(shape) == 1:
            return _float_tensor(name, shape, self.rng)
        n, start = math.prod(shape), int(self.rng.integers(0, _POOL))
        values = np.resize(np.roll(self.pool, -start)[: min(n, _POOL)], n)
        return (values * (1 / math.sqrt(math.prod(shape[1:])))).astype(np.float16).reshape(shape)


def write_safetensors_fast(spec: Spec, path: Path, *, seed: int = 0) -> Path:
    """:func:`write_safetensors` for big specs: pooled noise, streamed tensor by tensor."""
    noise = _Noise(seed)
    names = sorted(spec)
    header: dict[str, object] = {}
    offset = 0
    for name in names:
        shape = spec[name]
        size = math.prod(shape) * (4 if len(shape) == 1 else 2)
        dtype = "F32" if len(shape) == 1 else "F16"
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as fh:
        fh.write(len(raw).to_bytes(8, "little") + raw)
        for name in names:
            fh.write(noise.tensor(name, spec[name]).tobytes())
    return path


def write_gguf_q8(spec: Spec, path: Path, *, seed: int = 0) -> Path:
    """A ``.gguf`` whose 2-D weights are Q8_0 blocks (random int8, one f16 scale per block);
    every other tensor as :func:`write_safetensors` writes it. Streamed tensor by tensor."""
    import gguf

    noise = _Noise(seed)
    rng = noise.rng
    names = sorted(spec)
    writer = gguf.GGUFWriter(path, arch="sdcpp")
    for name in names:
        shape = spec[name]
        if _is_q4(name, shape):  # same rule: a 2-D weight whose rows split into 32-blocks
            byte_shape = [shape[0], shape[1] // _Q4_BLOCK * _Q8_BYTES]
            writer.add_tensor_info(
                name, byte_shape, np.dtype(np.uint8), math.prod(byte_shape),
                gguf.GGMLQuantizationType.Q8_0,
            )  # fmt: skip
        else:
            dtype = np.dtype(np.float32 if len(shape) == 1 else np.float16)
            writer.add_tensor_info(name, shape, dtype, math.prod(shape) * dtype.itemsize)
    writer.write_header_to_file(path)
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for name in names:
        shape = spec[name]
        if _is_q4(name, shape):
            rows, cols = shape
            blocks = rng.integers(
                -127, 128, size=(rows * cols // _Q4_BLOCK, _Q8_BYTES), dtype=np.int8
            )
            scale = np.frombuffer(np.float16(1.7 / (127 * math.sqrt(cols))).tobytes(), np.int8)
            blocks[:, 0:2] = scale
            writer.write_tensor_data(blocks.view(np.uint8).reshape(rows, -1))
        else:
            writer.write_tensor_data(noise.tensor(name, shape))
    writer.close()
    return path


def _unet_resblock(name: str, inp: int, emb: int, out: int) -> Spec:
    spec = _norm(f"{name}.in_layers.0", inp) | _conv(f"{name}.in_layers.2", out, inp)
    spec |= _linear(f"{name}.emb_layers.1", out, emb)
    spec |= _norm(f"{name}.out_layers.0", out) | _conv(f"{name}.out_layers.3", out, out)
    if inp != out:
        spec |= _conv(f"{name}.skip_connection", out, inp, 1)
    return spec


def _spatial_transformer(name: str, ch: int, context: int) -> Spec:
    spec = _norm(f"{name}.norm", ch) | _conv(f"{name}.proj_in", ch, ch, 1)
    spec |= _conv(f"{name}.proj_out", ch, ch, 1)
    b = f"{name}.transformer_blocks.0"
    for attn, kv in (("attn1", ch), ("attn2", context)):
        spec |= _linear(f"{b}.{attn}.to_q", ch, ch, bias=False)
        spec |= _linear(f"{b}.{attn}.to_k", ch, kv, bias=False)
        spec |= _linear(f"{b}.{attn}.to_v", ch, kv, bias=False)
        spec |= _linear(f"{b}.{attn}.to_out.0", ch, ch)
    spec |= _linear(f"{b}.ff.net.0.proj", 8 * ch, ch) | _linear(f"{b}.ff.net.2", ch, 4 * ch)
    for n in ("norm1", "norm2", "norm3"):
        spec |= _norm(f"{b}.{n}", ch)
    return spec


def _unet_input_blocks(p: str, *, tiny: bool, hint: bool = False) -> tuple[Spec, list[int]]:
    """time_embed + input_blocks of unet.hpp ``UnetModelBlock`` / control.hpp ``ControlNetBlock``
    (SD 1.x: ``model_channels = 320``, ``context_dim = 768``, attention at every level); a
    ControlNet (``hint``) adds a zero conv after each input block."""
    mc, emb = 320, 1280
    mult = (1, 2, 4) if tiny else (1, 2, 4, 4)
    spec: Spec = _linear(f"{p}.time_embed.0", emb, mc) | _linear(f"{p}.time_embed.2", emb, emb)
    spec |= _conv(f"{p}.input_blocks.0.0", mc, 4)
    if hint:
        spec |= _conv(f"{p}.zero_convs.0.0", mc, mc, 1)
    chans, ch, idx = [mc], mc, 0
    for i, m in enumerate(mult):
        for _ in range(1 if tiny else 2):
            idx += 1
            spec |= _unet_resblock(f"{p}.input_blocks.{idx}.0", ch, emb, m * mc)
            ch = m * mc
            if i < 3:  # attention_resolutions {4, 2, 1}: the first three levels
                spec |= _spatial_transformer(f"{p}.input_blocks.{idx}.1", ch, 768)
            if hint:
                spec |= _conv(f"{p}.zero_convs.{idx}.0", ch, ch, 1)
            chans.append(ch)
            idx += 1 if tiny else 0  # tiny_unet skips one index per level
        if i != len(mult) - 1:
            idx += 1
            spec[f"{p}.input_blocks.{idx}.0.op.weight"] = [ch, ch, 3, 3]
            spec[f"{p}.input_blocks.{idx}.0.op.bias"] = [ch]
            if hint:
                spec |= _conv(f"{p}.zero_convs.{idx}.0", ch, ch, 1)
            chans.append(ch)
    if not tiny:
        spec |= _unet_resblock(f"{p}.middle_block.0", ch, emb, ch)
        spec |= _spatial_transformer(f"{p}.middle_block.1", ch, 768)
        spec |= _unet_resblock(f"{p}.middle_block.2", ch, emb, ch)
    return spec, chans


def sd1_unet_spec(*, tiny: bool = True) -> Spec:
    """An SD 1.x UNet as unet.hpp builds it. Widths are fixed there (``model_channels = 320``,
    ``context_dim = 768``), so the smallest form is VERSION_SD1_TINY_UNET (BK-SDM-Tiny layout:
    one res block per level, levels 320/640/1280, no middle block; 323 M parameters); the full
    one (``tiny=False``, 860 M) is the one a ControlNet plugs into."""
    p, mc, emb = "model.diffusion_model", 320, 1280
    mult = (1, 2, 4) if tiny else (1, 2, 4, 4)
    spec, chans = _unet_input_blocks(p, tiny=tiny)
    ch, out_idx = chans[-1], 0
    per_level = 1 if tiny else 2
    for i in reversed(range(len(mult))):
        for j in range(per_level + 1):
            ich = chans.pop()
            spec |= _unet_resblock(f"{p}.output_blocks.{out_idx}.0", ch + ich, emb, mult[i] * mc)
            ch = mult[i] * mc
            up = 1
            if i < 3:
                spec |= _spatial_transformer(f"{p}.output_blocks.{out_idx}.1", ch, 768)
                up = 2
            if i > 0 and j == per_level:
                if tiny:
                    out_idx += 1
                    if out_idx == 2:
                        up = 1
                spec |= _conv(f"{p}.output_blocks.{out_idx}.{up}.conv", ch, ch)
            out_idx += 1
    spec |= _norm(f"{p}.out.0", ch) | _conv(f"{p}.out.2", 4, mc)
    return spec


def sd1_controlnet_spec() -> Spec:
    """An SD 1.x ControlNet (control.hpp ``ControlNetBlock``: fixed 320-wide, 361 M parameters):
    the hint encoder, the UNet's input and middle blocks, one zero conv per block."""
    spec, _chans = _unet_input_blocks("control_model", tiny=False, hint=True)
    for i, (inp, out) in enumerate(
        ((3, 16), (16, 16), (16, 32), (32, 32), (32, 96), (96, 96), (96, 256), (256, 320))
    ):
        spec |= _conv(f"control_model.input_hint_block.{2 * i}", out, inp)
    spec |= _conv("control_model.middle_block_out.0", 1280, 1280, 1)
    return spec


def sd1_spec(*, tiny: bool = True) -> Spec:
    """SD 1.x: the UNet, CLIP-L (fixed size) and a narrow 4-channel VAE decoder."""
    return (
        sd1_unet_spec(tiny=tiny)
        | clip_text_spec("cond_stage_model.transformer")
        | kl_vae_spec(z=4, quant=True)
    )
