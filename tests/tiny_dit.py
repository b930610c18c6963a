"""A tiny random-weight FLUX.1 pipeline (a DiT) and a GGUF file of its transformer.

The DiT counterpart of ``tests/tiny_models.py``: what the Diffusers cache hooks (first-block
cache, TaylorSeer, ...), regional compilation (``_repeated_blocks``) and GGUF loading need, none
of which a UNet model exercises. Built like the SD fixtures: every module from a config, the
tokenizers written by hand (the byte-level CLIP one of ``tiny_models`` and a unigram T5 one
here), saved with ``save_pretrained`` and loaded back through ``from_pretrained(local_dir)``.

``width`` widens the transformer (attention heads of 16 channels each) for benchmarks; the
default is a few hundred KB and runs a 64x64 image in a few hundredths of a second on CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tiny_models import clip_text, flow, kl_vae, save, seed, t5_encoder, tiny_clip_tokenizer

__all__ = [
    "T5_VOCAB_SIZE",
    "build_tiny_flux",
    "flux_original_names",
    "flux_parts",
    "flux_shaped_parts",
    "tiny_t5_tokenizer",
    "write_transformer_gguf",
]

_T5_SPECIALS = ("<pad>", "</s>", "<unk>")
# printable ASCII, each as a word-initial piece ("▁a") and a continuation ("a")
_T5_PIECES = [chr(c) for c in range(33, 127)]
T5_VOCAB_SIZE = len(_T5_SPECIALS) + 1 + 2 * len(_T5_PIECES)


def tiny_t5_tokenizer() -> Any:
    """A T5 tokenizer over characters from a hand-written unigram list (no download)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import T5TokenizerFast

    vocab = [(tok, 0.0) for tok in _T5_SPECIALS] + [("▁", -2.0)]
    vocab += [("▁" + p, -3.0) for p in _T5_PIECES] + [(p, -4.0) for p in _T5_PIECES]
    backend = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=False))
    backend.normalizer = normalizers.Sequence([normalizers.Replace(" +", " ")])
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer = T5TokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        extra_ids=0,
        model_max_length=512,
    )
    if len(tokenizer) != T5_VOCAB_SIZE:
        raise RuntimeError(f"tiny T5 tokenizer has {len(tokenizer)} tokens, not {T5_VOCAB_SIZE}")
    return tokenizer


def _flux_encoders(clip: int, clip_ff: int, clip_heads: int, t5: int, **t5_config: Any) -> dict:
    """CLIP (pooled) + T5 text encoders and their tokenizers, from the current torch seed."""
    return {
        "text_encoder": clip_text(
            clip, intermediate=clip_ff, heads=clip_heads, projection_dim=clip, seed=None
        ),
        "text_encoder_2": t5_encoder(t5, vocab=T5_VOCAB_SIZE, seed=None, **t5_config),
        "tokenizer": tiny_clip_tokenizer(),
        "tokenizer_2": tiny_t5_tokenizer(),
    }


def flux_parts(*, width: int = 32, layers: int = 1, single_layers: int = 1) -> dict[str, Any]:
    """The components of a FluxPipeline: 1+1 DiT blocks, 2-layer CLIP and T5, 2-block VAE."""
    from diffusers import FluxTransformer2DModel

    seed(0)
    heads = max(2, width // 16)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=16,  # 4 latent channels packed 2x2
        num_layers=layers,
        num_single_layers=single_layers,
        attention_head_dim=width // heads,
        num_attention_heads=heads,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        axes_dims_rope=_rope_axes(width // heads),
    )
    encoders = _flux_encoders(32, 37, 2, 32, d_ff=37, heads=4)
    vae = kl_vae(
        4,
        blocks=2,
        seed=None,
        sample_size=32,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.0609,
        scaling_factor=1.5035,
    )
    return {"transformer": transformer, **encoders, "vae": vae, "scheduler": flow()}


def flux_shaped_parts(*, layers: int = 19, single_layers: int = 38) -> dict[str, Any]:
    """FLUX.1-dev's transformer at its real width (3072 = 24 heads x 128; 19 + 38 blocks by
    default, ~11.9 B parameters) and its real 16-channel VAE, with random weights; the text
    encoders keep FLUX's output widths (T5 4096, CLIP 768) on 2 layers, since they run once
    per image. For GPU benchmarks: build it on the GPU (``with torch.device("cuda")``).
    """
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel

    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=64,
        num_layers=layers,
        num_single_layers=single_layers,
        attention_head_dim=128,
        num_attention_heads=24,
        joint_attention_dim=4096,
        pooled_projection_dim=768,
        guidance_embeds=True,
        axes_dims_rope=(16, 56, 56),
    )
    encoders = _flux_encoders(768, 1024, 12, 4096, d_kv=64, d_ff=1024, heads=8, buckets=32)
    vae = kl_vae(
        16,
        seed=None,
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
        norm_num_groups=32,
        sample_size=1024,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.1159,
        scaling_factor=0.3611,
    )
    scheduler = FlowMatchEulerDiscreteScheduler(
        base_image_seq_len=256,
        base_shift=0.5,
        max_image_seq_len=4096,
        max_shift=1.15,
        shift=3.0,
        use_dynamic_shifting=True,
    )
    return {"transformer": transformer, **encoders, "vae": vae, "scheduler": scheduler}


def _rope_axes(head_dim: int) -> tuple[int, int, int]:
    """FLUX's rotary split of one head (16, 56, 56 of 128 at full size); even parts summing to it."""
    first = max(2, (head_dim // 8) // 2 * 2)
    rest = head_dim - first
    second = rest // 2 // 2 * 2
    return (first, second, rest - second)


def build_tiny_flux(
    path: Path, *, width: int = 32, layers: int = 1, single_layers: int = 1
) -> Path:
    """FluxPipeline (text->image; image->image and inpaint via from_pipe) in a model folder."""
    from diffusers import FluxPipeline

    parts = flux_parts(width=width, layers=layers, single_layers=single_layers)
    return save(FluxPipeline(**parts), path)


def flux_original_names(state: dict[str, Any]) -> dict[str, Any]:
    """A FluxTransformer2DModel state dict under FLUX.1's original (BFL) tensor names.

    The layout of the FLUX GGUF files people run in stable-diffusion.cpp and ComfyUI: fused
    qkv and linear1, shift/scale order of the final modulation. The inverse of Diffusers'
    ``convert_flux_transformer_checkpoint_to_diffusers`` (which assumes width 3072).
    """
    import torch

    out: dict[str, Any] = {}
    pairs = {
        "time_in.in_layer": "time_text_embed.timestep_embedder.linear_1",
        "time_in.out_layer": "time_text_embed.timestep_embedder.linear_2",
        "vector_in.in_layer": "time_text_embed.text_embedder.linear_1",
        "vector_in.out_layer": "time_text_embed.text_embedder.linear_2",
        "guidance_in.in_layer": "time_text_embed.guidance_embedder.linear_1",
        "guidance_in.out_layer": "time_text_embed.guidance_embedder.linear_2",
        "txt_in": "context_embedder",
        "img_in": "x_embedder",
        "final_layer.linear": "proj_out",
    }
    double = {
        "img_mod.lin": "norm1.linear",
        "txt_mod.lin": "norm1_context.linear",
        "img_mlp.0": "ff.net.0.proj",
        "img_mlp.2": "ff.net.2",
        "txt_mlp.0": "ff_context.net.0.proj",
        "txt_mlp.2": "ff_context.net.2",
        "img_attn.proj": "attn.to_out.0",
        "txt_attn.proj": "attn.to_add_out",
    }
    double_norms = {
        "img_attn.norm.query_norm.scale": "attn.norm_q.weight",
        "img_attn.norm.key_norm.scale": "attn.norm_k.weight",
        "txt_attn.norm.query_norm.scale": "attn.norm_added_q.weight",
        "txt_attn.norm.key_norm.scale": "attn.norm_added_k.weight",
    }
    single = {"modulation.lin": "norm.linear", "linear2": "proj_out"}
    single_norms = {
        "norm.query_norm.scale": "attn.norm_q.weight",
        "norm.key_norm.scale": "attn.norm_k.weight",
    }

    def take(original: str, ours: str) -> None:
        for kind in ("weight", "bias"):
            if f"{ours}.{kind}" in state:
                out[f"{original}.{kind}"] = state[f"{ours}.{kind}"]

    for original, ours in pairs.items():
        take(original, ours)
    for kind in ("weight", "bias"):
        shift_scale = state[f"norm_out.linear.{kind}"].chunk(2, dim=0)
        out[f"final_layer.adaLN_modulation.1.{kind}"] = torch.cat(shift_scale[::-1], dim=0)
    blocks = {int(k.split(".")[1]) for k in state if k.startswith("transformer_blocks.")}
    for i in sorted(blocks):
        ours, original = f"transformer_blocks.{i}", f"double_blocks.{i}"
        for o, d in double.items():
            take(f"{original}.{o}", f"{ours}.{d}")
        for o, d in double_norms.items():
            out[f"{original}.{o}"] = state[f"{ours}.{d}"]
        for kind in ("weight", "bias"):
            img = [state[f"{ours}.attn.to_{x}.{kind}"] for x in "qkv"]
            txt = [state[f"{ours}.attn.add_{x}_proj.{kind}"] for x in "qkv"]
            out[f"{original}.img_attn.qkv.{kind}"] = torch.cat(img, dim=0)
            out[f"{original}.txt_attn.qkv.{kind}"] = torch.cat(txt, dim=0)
    blocks = {int(k.split(".")[1]) for k in state if k.startswith("single_transformer_blocks.")}
    for i in sorted(blocks):
        ours, original = f"single_transformer_blocks.{i}", f"single_blocks.{i}"
        for o, d in single.items():
            take(f"{original}.{o}", f"{ours}.{d}")
        for o, d in single_norms.items():
            out[f"{original}.{o}"] = state[f"{ours}.{d}"]
        for kind in ("weight", "bias"):
            parts = [state[f"{ours}.attn.to_{x}.{kind}"] for x in "qkv"]
            parts.append(state[f"{ours}.proj_mlp.{kind}"])
            out[f"{original}.linear1.{kind}"] = torch.cat(parts, dim=0)
    return out


def write_transformer_gguf(
    model_dir: Path,
    path: Path,
    *,
    quant: str = "Q8_0",
    original_names: bool = False,
    dtype: Any = None,
) -> Path:
    """The model folder's ``transformer`` as one ``.gguf`` file, its 2-D weights quantised.

    Tensor names are Diffusers' own, so ``from_single_file`` loads it without a key conversion;
    ``original_names`` writes FLUX.1's original names instead (the layout of the GGUFs made for
    stable-diffusion.cpp / ComfyUI), which Diffusers converts on load; its converter assumes the
    full 3072 width. 1-D tensors stay float32, as GGUF tools leave them.
    """
    import gguf
    import numpy as np
    from diffusers import FluxTransformer2DModel

    options = {"torch_dtype": dtype} if dtype is not None else {}
    model = FluxTransformer2DModel.from_pretrained(model_dir, subfolder="transformer", **options)
    kind = getattr(gguf.GGMLQuantizationType, quant)
    block = gguf.GGML_QUANT_SIZES[kind][0]
    writer = gguf.GGUFWriter(str(path), arch="flux")
    state = model.state_dict()
    if original_names:
        state = flux_original_names(state)
    for name, tensor in state.items():
        values = tensor.detach().float().numpy()
        if values.ndim == 2 and values.shape[-1] % block == 0:
            writer.add_tensor(name, gguf.quants.quantize(values, kind), raw_dtype=kind)
        else:
            writer.add_tensor(name, values.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
