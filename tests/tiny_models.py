"""Shared tiny components, and builders of tiny SD-shaped Diffusers pipelines.

The component builders here (tokenizers written locally, 1-2 layer CLIP/T5 text encoders, small
VAEs, seeding, saving) are what every tiny-model module of the tests is made of:
``tiny_families`` (one spec per Diffusers family), ``tiny_dit`` (FLUX.1 + GGUF),
``tiny_upscalers`` and ``tiny_control`` import them. No weights are ever downloaded: each
tokenizer comes from a hand-written vocabulary, every module from a config.

Each builder writes a model folder with ``save_pretrained`` so tests load it through the same
``from_pretrained(local_dir)`` path a real model uses. Sizes are chosen so that 64x64 images and
a handful of frames run in well under a second on CPU. ``scale`` widens the SD-shaped model
(used by the peak-RSS benchmark to make weights dominate).

Seeds: a builder given ``seed=N`` reseeds torch first; ``seed=None`` draws its weights from the
stream where the caller left it (several modules under one seed, as a pipeline's builder does).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = [
    "SD_NO_SAFETY",
    "T5_VOCAB",
    "TOKENIZER_VOCAB_SIZE",
    "build_tiny_animatediff",
    "build_tiny_lora",
    "build_tiny_sd",
    "build_tiny_sd_inpaint",
    "build_tiny_svd",
    "byte_vocab",
    "clip_text",
    "clip_vision",
    "flow",
    "kl_vae",
    "save",
    "sd_unet_down",
    "seed",
    "t5_encoder",
    "t5_tokenizer",
    "tiny_clip_tokenizer",
]

_SPECIAL = ("<|startoftext|>", "<|endoftext|>")
TOKENIZER_VOCAB_SIZE = len(_SPECIAL) + 2 * 256
# SD pipelines built without the safety checker
SD_NO_SAFETY = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}


def seed(value: int | None = 0) -> None:
    """Reseed torch (``None``: leave the stream where it is)."""
    if value is None:
        return
    import torch

    torch.manual_seed(value)


def save(pipe: Any, path: Path) -> Path:
    """``save_pretrained`` a pipeline or model to ``path``; return ``path``."""
    pipe.save_pretrained(path)
    return path


# --- tokenizers -------------------------------------------------------------------------------


def _byte_symbols() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for raw bytes (GPT-2 convention)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    symbols: dict[int, str] = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in symbols:
            symbols[b] = chr(256 + extra)
            extra += 1
    return [symbols[b] for b in range(256)]


def byte_vocab(*specials: str) -> dict[str, int]:
    """A byte-level vocabulary: ``specials`` first (ids 0, 1, ...), then the 256 byte symbols."""
    vocab = {s: i for i, s in enumerate(specials)}
    for s in _byte_symbols():
        vocab.setdefault(s, len(vocab))
    return vocab


def tiny_clip_tokenizer() -> Any:
    """A CLIP tokenizer over bytes only (no merges): every character is a token.

    Checked on build: transformers 5 can silently give a 2-token tokenizer when handed
    arguments (or a folder) it does not understand.
    """
    from transformers import CLIPTokenizer

    symbols = _byte_symbols()
    tokens = [*_SPECIAL, *symbols, *(s + "</w>" for s in symbols)]
    tokenizer = CLIPTokenizer(
        vocab={tok: i for i, tok in enumerate(tokens)}, merges=[], model_max_length=77
    )
    if len(tokenizer) != TOKENIZER_VOCAB_SIZE:
        raise RuntimeError(
            f"tiny tokenizer has {len(tokenizer)} tokens, not {TOKENIZER_VOCAB_SIZE}"
        )
    return tokenizer


_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'-:;()\"/"
T5_VOCAB = 4 + 2 * len(_CHARS)


def t5_tokenizer() -> Any:
    """A T5 unigram tokenizer over single characters (pad 0, eos 1, unk 2)."""
    from transformers import T5Tokenizer

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -1.0)]
    vocab += [(c, -2.0) for c in _CHARS] + [("▁" + c, -1.5) for c in _CHARS]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


# --- text and image encoders ------------------------------------------------------------------


def clip_text(
    hidden: int = 32,
    *,
    intermediate: int | None = None,
    layers: int = 2,
    heads: int = 2,
    projection_dim: int | None = None,
    projection: bool = False,
    seed: int | None = 0,
) -> Any:
    """A CLIP text encoder over ``tiny_clip_tokenizer`` (intermediate 2 x hidden and
    projection_dim = hidden unless given; ``projection``: CLIPTextModelWithProjection)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    _reseed(seed)
    config = CLIPTextConfig(
        vocab_size=TOKENIZER_VOCAB_SIZE,
        hidden_size=hidden,
        intermediate_size=intermediate or 2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        max_position_embeddings=77,
        projection_dim=projection_dim or hidden,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)


def t5_encoder(
    d_model: int = 32,
    *,
    vocab: int = T5_VOCAB,
    d_kv: int = 8,
    d_ff: int | None = None,
    heads: int = 2,
    buckets: int = 8,
    umt5: bool = False,
    seed: int | None = 0,
) -> Any:
    """A 2-layer T5 (or UMT5) encoder, d_ff 2 x d_model unless given, in eval mode."""
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    _reseed(seed)
    kwargs = dict(
        vocab_size=vocab,
        d_model=d_model,
        d_kv=d_kv,
        d_ff=d_ff or 2 * d_model,
        num_layers=2,
        num_heads=heads,
        relative_attention_num_buckets=buckets,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    if umt5:
        return UMT5EncoderModel(UMT5Config(**kwargs)).eval()
    return T5EncoderModel(T5Config(**kwargs)).eval()


def clip_vision(
    hidden: int, size: int, *, intermediate: int = 16, patch: int = 8, seed: int | None = 0
) -> Any:
    """A 2-layer CLIPVisionModelWithProjection (projection_dim = hidden) at ``size`` px."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    _reseed(seed)
    config = CLIPVisionConfig(
        hidden_size=hidden,
        projection_dim=hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=size,
        intermediate_size=intermediate,
        patch_size=patch,
    )
    return CLIPVisionModelWithProjection(config)


# --- VAEs and schedulers ----------------------------------------------------------------------


def kl_vae(
    latent: int = 4, blocks: int = 4, channels: int = 8, *, seed: int | None = 0, **kw: Any
) -> Any:
    """AutoencoderKL with spatial factor 2**(blocks-1); ``kw`` overrides any config value."""
    from diffusers import AutoencoderKL

    _reseed(seed)
    config: dict[str, Any] = dict(
        in_channels=3,
        out_channels=3,
        block_out_channels=(channels,) * blocks,
        down_block_types=("DownEncoderBlock2D",) * blocks,
        up_block_types=("UpDecoderBlock2D",) * blocks,
        layers_per_block=1,
        latent_channels=latent,
        norm_num_groups=min(channels, 2),
        sample_size=64,
    )
    return AutoencoderKL(**{**config, **kw})


def flow() -> Any:
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler()


_reseed = seed  # the builders' ``seed`` argument shadows the function inside them


# --- SD-shaped pipelines ----------------------------------------------------------------------


def sd_unet_down(scale: int = 1) -> dict[str, Any]:
    """The tiny SD UNet's down path and text width, which its ControlNet mirrors."""
    return {
        "block_out_channels": (8 * scale, 16 * scale),
        "layers_per_block": 1 if scale == 1 else 2,
        "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
        "cross_attention_dim": 32 * scale,
        "attention_head_dim": 2 * scale,
        "norm_num_groups": 2,
    }


def _sd_parts(*, in_channels: int = 4, scale: int = 1) -> dict[str, Any]:
    from diffusers import DDIMScheduler, UNet2DConditionModel

    seed(0)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=in_channels,
        out_channels=4,
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        **sd_unet_down(scale),
    )
    vae = kl_vae(4, channels=8 * scale, seed=None)
    # projection_dim 512: CLIPTextConfig's default (a CLIPTextModel has no projection)
    text_encoder = clip_text(32 * scale, projection_dim=512, seed=None)
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    return {
        "unet": unet,
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": tiny_clip_tokenizer(),
        "scheduler": scheduler,
    }


def build_tiny_sd(path: Path, *, scale: int = 1) -> Path:
    """StableDiffusionPipeline (text->image; image->image and inpaint via from_pipe)."""
    from diffusers import StableDiffusionPipeline

    return save(StableDiffusionPipeline(**_sd_parts(scale=scale), **SD_NO_SAFETY), path)


def build_tiny_sd_inpaint(path: Path) -> Path:
    """StableDiffusionInpaintPipeline with a 9-channel UNet (latents + mask + masked image)."""
    from diffusers import StableDiffusionInpaintPipeline

    return save(StableDiffusionInpaintPipeline(**_sd_parts(in_channels=9), **SD_NO_SAFETY), path)


def build_tiny_animatediff(path: Path) -> Path:
    """AnimateDiffPipeline: the SD parts plus a MotionAdapter mirroring the UNet's channels."""
    from diffusers import AnimateDiffPipeline, MotionAdapter

    parts = _sd_parts()
    seed(1)
    adapter = MotionAdapter(
        block_out_channels=(8, 16),
        motion_layers_per_block=1,
        motion_num_attention_heads=2,
        motion_norm_num_groups=2,
        motion_max_seq_length=32,
        use_motion_mid_block=False,
    )
    return save(AnimateDiffPipeline(motion_adapter=adapter, **parts), path)


def build_tiny_svd(path: Path) -> Path:
    """StableVideoDiffusionPipeline: image encoder at 224 px, channels in multiples of 32."""
    from diffusers import (
        AutoencoderKLTemporalDecoder,
        EulerDiscreteScheduler,
        StableVideoDiffusionPipeline,
        UNetSpatioTemporalConditionModel,
    )
    from transformers import CLIPImageProcessor

    seed(0)
    unet = UNetSpatioTemporalConditionModel(
        sample_size=8,
        in_channels=8,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        cross_attention_dim=32,
        num_attention_heads=(2, 4),
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=24,
        num_frames=8,
    )
    vae = AutoencoderKLTemporalDecoder(
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 32, 32, 32),
        down_block_types=("DownEncoderBlock2D",) * 4,
        layers_per_block=1,
        latent_channels=4,
        sample_size=64,
    )
    image_encoder = clip_vision(32, 224, intermediate=64, patch=32, seed=None)
    feature_extractor = CLIPImageProcessor(
        crop_size={"height": 224, "width": 224}, size={"shortest_edge": 224}
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        interpolation_type="linear",
        prediction_type="v_prediction",
        timestep_spacing="leading",
        steps_offset=1,
        use_karras_sigmas=True,
    )
    pipe = StableVideoDiffusionPipeline(
        vae=vae,
        image_encoder=image_encoder,
        unet=unet,
        scheduler=scheduler,
        feature_extractor=feature_extractor,
    )
    return save(pipe, path)


def build_tiny_lora(path: Path, sd_dir: Path, *, rank: int = 4, seed: int = 7) -> Path:
    """A rank-4 UNet LoRA for the tiny SD model, saved with ``save_lora_weights``.

    B is initialised randomly (peft's default zeros would make the adapter a no-op).
    """
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from peft import LoraConfig, get_peft_model_state_dict

    _reseed(seed)
    unet = UNet2DConditionModel.from_pretrained(sd_dir, subfolder="unet")
    unet.add_adapter(
        LoraConfig(
            r=rank,
            lora_alpha=rank,
            init_lora_weights=False,
            target_modules=["to_q", "to_k", "to_v", "to_out.0"],
        )
    )
    layers = get_peft_model_state_dict(unet)
    StableDiffusionPipeline.save_lora_weights(
        path, unet_lora_layers=layers, safe_serialization=True
    )
    return path
