"""Tiny random-weight pipelines of every model family we list, one short spec per family.

Each family is a ``Family``: the Diffusers pipeline class, a function returning its components
(built from the shared parts below: tokenizers written locally, 1-2 layer text encoders,
1-block transformers, small VAEs) and what the tests run on it (tasks, size, frames). The
components mirror Diffusers' own ``get_dummy_components()`` for the family, with every
hub-downloaded tokenizer replaced by one built here from a hand-written vocabulary, and VAEs
given their real spatial factor (8, or 16 for Wan 2.2 TI2V) so 64-pixel outputs need few tokens.

Adding a family = a registry entry + one ``Family(...)`` line in ``FAMILIES`` (see
docs/model-families.md). ``build_family(name, path)`` writes the folder with ``save_pretrained``;
tests load it with ``from_pretrained`` like a downloaded model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tiny_models import (
    _sd_parts,
    byte_vocab,
    clip_text,
    clip_vision,
    flow,
    kl_vae,
    save,
    t5_encoder,
    t5_tokenizer,
    tiny_clip_tokenizer,
)
from tiny_models import seed as _seed

__all__ = ["FAMILIES", "QWEN_IMAGE_DIT", "Family", "build_family"]

T2I, I2I, INPAINT, T2V, I2V = "t2i", "i2i", "inpaint", "t2v", "i2v"
QWEN_SPECIALS = (
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)


@dataclass(frozen=True)
class Family:
    """One pipeline family: class, components, and what to run on it."""

    pipeline: str
    parts: Callable[[], dict[str, Any]]
    tasks: tuple[str, ...]
    size: tuple[int, int] = (64, 64)
    frames: int | None = None  # video: a frame count the family's rule accepts
    steps: int = 2
    config: dict[str, Any] = field(default_factory=dict)  # extra pipeline init kwargs
    # modules the family needs beyond the diffusers extra (imported before the family runs)
    requires: tuple[str, ...] = ()
    broken: str | None = None  # why the installed Diffusers cannot run it (an xfail, strict)


# --- tokenizers, all built here (CLIP and T5 ones: tiny_models) --------------------------------


def qwen_tokenizer() -> Any:
    """A Qwen2 byte-level BPE tokenizer without merges, with the chat and vision specials."""
    from transformers import Qwen2Tokenizer

    vocab = byte_vocab()
    vocab["<|endoftext|>"] = len(vocab)
    tok = Qwen2Tokenizer(vocab=vocab, merges=[])
    tok.add_special_tokens({"additional_special_tokens": list(QWEN_SPECIALS)})
    tok.chat_template = CHATML
    return tok


CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
QWEN_VOCAB = 257 + len(QWEN_SPECIALS)


def _qid(name: str) -> int:
    return 257 + QWEN_SPECIALS.index(name)


def llama_tokenizer(*, bos: bool = False) -> Any:
    """A Llama byte-level tokenizer (bos 0, eos 1, unk 2) over the 256 byte symbols."""
    from transformers import LlamaTokenizer

    vocab = byte_vocab("<s>", "</s>", "<unk>")
    return LlamaTokenizer(vocab=vocab, merges=[], pad_token="</s>", add_bos_token=bos)


# --- text encoders (CLIP and T5 ones: tiny_models) ---------------------------------------------


def qwen3_model(hidden: int = 16, *, causal_lm: bool = False, layers: int = 2) -> Any:
    from transformers import Qwen3Config, Qwen3ForCausalLM, Qwen3Model

    _seed(0)
    config = Qwen3Config(
        vocab_size=QWEN_VOCAB,
        hidden_size=hidden,
        intermediate_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=hidden // 2,
        max_position_embeddings=1024,
    )
    return (Qwen3ForCausalLM if causal_lm else Qwen3Model)(config)


_QWEN25_TEXT = {
    "hidden_size": 16,
    "intermediate_size": 16,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
    "rope_theta": 1000000.0,
    "vocab_size": QWEN_VOCAB,
}


def qwen25_vl() -> Any:
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    _seed(0)
    config = Qwen2_5_VLConfig(
        text_config=dict(_QWEN25_TEXT),
        vision_config={
            "depth": 2,
            "hidden_size": 16,
            "intermediate_size": 16,
            "num_heads": 2,
            "out_hidden_size": 16,
        },
        hidden_size=16,
        vocab_size=QWEN_VOCAB,
        vision_start_token_id=_qid("<|vision_start|>"),
        vision_end_token_id=_qid("<|vision_end|>"),
        image_token_id=_qid("<|image_pad|>"),
        video_token_id=_qid("<|video_pad|>"),
    )
    return Qwen2_5_VLForConditionalGeneration(config).eval()


def _qwen_image_processor() -> Any:
    # the PIL image processor: the default (fast) one imports torchvision in transformers 5; both
    # write the same preprocessor_config.json (image_processor_type "Qwen2VLImageProcessor")
    from transformers import Qwen2VLImageProcessorPil

    return Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=56 * 56 * 4)


def qwen_processor_parts(path: Path) -> Path:
    """A Qwen2-VL processor folder (image processor config + tokenizer), written part by part:
    building the processor object itself needs torchvision in transformers 5."""
    _qwen_image_processor().save_pretrained(path)
    qwen_tokenizer().save_pretrained(path)
    return path


def _with_qwen_processor(path: Path) -> Path:
    """Add the Qwen-Image-Edit ``processor`` component (as on the Hub) to a saved folder."""
    import json

    qwen_processor_parts(path / "processor")
    index = json.loads((path / "model_index.json").read_text())
    index["processor"] = ["transformers", "Qwen2VLProcessor"]
    (path / "model_index.json").write_text(json.dumps(index, indent=2))
    return path


# --- families -------------------------------------------------------------------------------


def _sdxl() -> dict[str, Any]:
    from diffusers import EulerDiscreteScheduler, UNet2DConditionModel

    _seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16),
        layers_per_block=1,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=6 * 8 + 32,
        cross_attention_dim=64,
        norm_num_groups=2,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        steps_offset=1,
        beta_schedule="scaled_linear",
        timestep_spacing="leading",
    )
    return {
        "unet": unet,
        "scheduler": scheduler,
        "vae": kl_vae(4),
        "text_encoder": clip_text(32),
        "tokenizer": tiny_clip_tokenizer(),
        "text_encoder_2": clip_text(32, projection=True, seed=1),
        "tokenizer_2": tiny_clip_tokenizer(),
        "image_encoder": None,
        "feature_extractor": None,
    }


def _sd3() -> dict[str, Any]:
    from diffusers import SD3Transformer2DModel

    _seed(0)
    transformer = SD3Transformer2DModel(
        sample_size=8,
        patch_size=2,
        in_channels=16,
        num_layers=1,
        attention_head_dim=8,
        num_attention_heads=2,
        caption_projection_dim=16,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        out_channels=16,
    )
    return {
        "transformer": transformer,
        "scheduler": flow(),
        "vae": kl_vae(16, use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609),
        "text_encoder": clip_text(16, projection=True),
        "tokenizer": tiny_clip_tokenizer(),
        "text_encoder_2": clip_text(16, projection=True, seed=1),
        "tokenizer_2": tiny_clip_tokenizer(),
        "text_encoder_3": t5_encoder(32),
        "tokenizer_3": t5_tokenizer(),
        "image_encoder": None,
        "feature_extractor": None,
    }


def _flux(in_channels: int = 4, out_channels: int | None = None, latent: int = 1) -> Any:
    def parts() -> dict[str, Any]:
        from diffusers import FluxTransformer2DModel

        _seed(0)
        transformer = FluxTransformer2DModel(
            patch_size=1,
            in_channels=in_channels,
            out_channels=out_channels,
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=32,
            pooled_projection_dim=32,
            axes_dims_rope=[4, 4, 8],
            guidance_embeds=True,
        )
        return {
            "transformer": transformer,
            "scheduler": flow(),
            "vae": kl_vae(
                latent, use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609
            ),
            "text_encoder": clip_text(32),
            "tokenizer": tiny_clip_tokenizer(),
            "text_encoder_2": t5_encoder(32),
            "tokenizer_2": t5_tokenizer(),
        }

    return parts


def _flux_extra(parts: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    return lambda: {**parts(), "image_encoder": None, "feature_extractor": None}


def _flux2_vae() -> Any:
    from diffusers import AutoencoderKLFlux2

    _seed(0)
    return AutoencoderKLFlux2(
        sample_size=64,
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8,) * 4,
        layers_per_block=1,
        latent_channels=1,
        norm_num_groups=2,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )


def _flux2_transformer(joint: int, guidance: bool) -> Any:
    from diffusers import Flux2Transformer2DModel

    _seed(0)
    return Flux2Transformer2DModel(
        patch_size=1,
        in_channels=4,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=joint,
        timestep_guidance_channels=256,
        axes_dims_rope=[4, 4, 4, 4],
        guidance_embeds=guidance,
    )


def _flux2_klein() -> dict[str, Any]:
    # the pipeline stacks hidden states 9, 18 and 27 (as of Qwen3-4B): 28 layers, joint = 3 x 16
    return {
        "transformer": _flux2_transformer(16 * 3, False),
        "scheduler": flow(),
        "vae": _flux2_vae(),
        "text_encoder": qwen3_model(16, causal_lm=True, layers=28),
        "tokenizer": qwen_tokenizer(),
    }


MISTRAL_TEMPLATE = (
    "{% for m in messages %}[{{ m['role'] }}]{% if m['content'] is string %}{{ m['content'] }}"
    "{% else %}{% for c in m['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{% endfor %}"
)


def _flux2_dev() -> dict[str, Any]:
    """FLUX.2 [dev]: Mistral 3 text encoder (hidden states 10, 20, 30 stacked), guidance embedding."""
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration

    _seed(0)
    config = Mistral3Config(
        text_config={
            "model_type": "mistral",
            "vocab_size": 259,
            "hidden_size": 16,
            "intermediate_size": 32,
            "max_position_embeddings": 1024,
            "num_attention_heads": 2,
            "num_hidden_layers": 31,
            "num_key_value_heads": 1,
            "head_dim": 8,
            "sliding_window": None,
            "bos_token_id": 0,
            "eos_token_id": 1,
            "pad_token_id": 1,
        },
        vision_config={
            "model_type": "pixtral",
            "hidden_size": 16,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 32,
            "image_size": 28,
            "patch_size": 14,
            "num_channels": 3,
        },
        image_token_index=2,
        spatial_merge_size=1,
    )
    tokenizer = llama_tokenizer()
    tokenizer.chat_template = MISTRAL_TEMPLATE
    return {
        "transformer": _flux2_transformer(16 * 3, True),
        "scheduler": flow(),
        "vae": _flux2_vae(),
        "text_encoder": Mistral3ForConditionalGeneration(config).eval(),
        "tokenizer": tokenizer,
    }


# the Qwen-Image transformer; tiny_control's Qwen-Image ControlNet mirrors it
QWEN_IMAGE_DIT: dict[str, Any] = {
    "patch_size": 2,
    "in_channels": 16,
    "out_channels": 4,
    "num_layers": 1,
    "attention_head_dim": 16,
    "num_attention_heads": 2,
    "joint_attention_dim": 16,
    "axes_dims_rope": (8, 4, 4),
}


def _qwen_image_parts(*, edit: bool) -> dict[str, Any]:
    from diffusers import AutoencoderKLQwenImage, QwenImageTransformer2DModel

    _seed(0)
    transformer = QwenImageTransformer2DModel(**QWEN_IMAGE_DIT, guidance_embeds=False)
    _seed(0)
    vae = AutoencoderKLQwenImage(
        base_dim=8,
        z_dim=4,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
        latents_mean=[0.0] * 4,
        latents_std=[1.0] * 4,
    )
    parts = {
        "transformer": transformer,
        "vae": vae,
        "scheduler": flow(),
        "text_encoder": qwen25_vl(),
        "tokenizer": qwen_tokenizer(),
    }
    if edit:
        parts["processor"] = None  # written part by part: build_family -> _with_qwen_processor
    return parts


def _z_image() -> dict[str, Any]:
    import torch
    from diffusers import ZImageTransformer2DModel

    _seed(0)
    transformer = ZImageTransformer2DModel(
        all_patch_size=(2,),
        all_f_patch_size=(1,),
        in_channels=4,
        dim=32,
        n_layers=1,
        n_refiner_layers=1,
        n_heads=2,
        n_kv_heads=2,
        norm_eps=1e-5,
        qk_norm=True,
        cap_feat_dim=16,
        rope_theta=256.0,
        t_scale=1000.0,
        axes_dims=[8, 4, 4],
        axes_lens=[256, 32, 32],
    )
    with torch.no_grad():
        transformer.x_pad_token.copy_(torch.ones_like(transformer.x_pad_token.data))
        transformer.cap_pad_token.copy_(torch.ones_like(transformer.cap_pad_token.data))
    return {
        "transformer": transformer,
        "vae": kl_vae(4, shift_factor=0.1159, scaling_factor=0.3611),
        "scheduler": flow(),
        "text_encoder": qwen3_model(16),
        "tokenizer": qwen_tokenizer(),
    }


def _wan_transformer(in_channels: int, out_channels: int, **kw: Any) -> Any:
    from diffusers import WanTransformer3DModel

    _seed(0)
    return WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=in_channels,
        out_channels=out_channels,
        text_dim=32,
        freq_dim=256,
        ffn_dim=32,
        num_layers=1,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
        **kw,
    )


def _wan_vae(*, ti2v: bool = False) -> Any:
    from diffusers import AutoencoderKLWan

    _seed(0)
    if ti2v:  # Wan 2.2 VAE: 48 latent channels, 16x spatial (a 2x2 patchify in front)
        return AutoencoderKLWan(
            base_dim=3,
            z_dim=48,
            in_channels=12,
            out_channels=12,
            is_residual=True,
            patch_size=2,
            latents_mean=[0.0] * 48,
            latents_std=[1.0] * 48,
            dim_mult=[1, 1, 1, 1],
            num_res_blocks=1,
            scale_factor_spatial=16,
            scale_factor_temporal=4,
            temperal_downsample=[False, True, True],
        )
    return AutoencoderKLWan(
        base_dim=3,
        z_dim=16,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
    )


def _wan(*, i2v: bool = False, experts: int = 1, ti2v: bool = False) -> Callable[[], dict]:
    """Wan 2.1 (T2V / I2V with a CLIP image encoder), 2.2 A14B (two experts), 2.2 TI2V-5B."""

    def parts() -> dict[str, Any]:
        from diffusers import UniPCMultistepScheduler

        channels = 48 if ti2v else 16
        in_channels = channels + 20 if i2v and not ti2v else channels
        image = i2v and experts == 1 and not ti2v  # only Wan 2.1 I2V has a CLIP image encoder
        kw = {"image_dim": 4} if image else {}
        out: dict[str, Any] = {
            "transformer": _wan_transformer(in_channels, channels, **kw),
            "transformer_2": _wan_transformer(in_channels, channels) if experts == 2 else None,
            "vae": _wan_vae(ti2v=ti2v),
            "scheduler": UniPCMultistepScheduler(
                prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0
            ),
            "text_encoder": t5_encoder(32, umt5=True),
            "tokenizer": t5_tokenizer(),
        }
        if i2v:
            out["image_encoder"], out["image_processor"] = (
                _clip_vision(hidden=4, size=32) if image else (None, None)
            )
        return out

    return parts


def _clip_vision(hidden: int, size: int) -> tuple[Any, Any]:
    from transformers import CLIPImageProcessor

    return clip_vision(hidden, size), CLIPImageProcessor(crop_size=size, size=size)


def _ltx() -> dict[str, Any]:
    from diffusers import AutoencoderKLLTXVideo, LTXVideoTransformer3DModel

    _seed(0)
    transformer = LTXVideoTransformer3DModel(
        in_channels=8,
        out_channels=8,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=2,
        attention_head_dim=8,
        cross_attention_dim=16,
        num_layers=1,
        caption_channels=32,
    )
    _seed(0)
    vae = AutoencoderKLLTXVideo(
        in_channels=3,
        out_channels=3,
        latent_channels=8,
        block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, True, False),
        decoder_spatio_temporal_scaling=(True, True, True, False),
        decoder_inject_noise=(False, False, False, False, False),
        upsample_residual=(False, False, False, False),
        upsample_factor=(1, 1, 1, 1),
        timestep_conditioning=False,
        patch_size=4,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    )
    return {
        "transformer": transformer,
        "vae": vae,
        "scheduler": flow(),
        "text_encoder": t5_encoder(32),
        "tokenizer": t5_tokenizer(),
    }


def _cogvideox(in_channels: int = 4) -> dict[str, Any]:
    from diffusers import AutoencoderKLCogVideoX, CogVideoXTransformer3DModel, DDIMScheduler

    _seed(0)
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=in_channels,  # image->video: noise + image latents
        out_channels=4,
        time_embed_dim=2,
        text_embed_dim=32,
        num_layers=1,
        sample_width=8,
        sample_height=8,
        sample_frames=9,
        patch_size=2,
        temporal_compression_ratio=4,
        max_text_seq_length=226,  # the pipeline pads prompts to 226 tokens
    )
    _seed(0)
    vae = AutoencoderKLCogVideoX(
        in_channels=3,
        out_channels=3,
        down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=2,
        temporal_compression_ratio=4,
    )
    return {
        "transformer": transformer,
        "vae": vae,
        "scheduler": DDIMScheduler(),
        "text_encoder": t5_encoder(32),
        "tokenizer": t5_tokenizer(),
    }


def _hunyuan_video() -> dict[str, Any]:
    from diffusers import (
        AutoencoderKLHunyuanVideo,
        FlowMatchEulerDiscreteScheduler,
        HunyuanVideoTransformer3DModel,
    )
    from transformers import LlamaConfig, LlamaModel

    _seed(0)
    transformer = HunyuanVideoTransformer3DModel(
        in_channels=4,
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=10,
        num_layers=1,
        num_single_layers=1,
        num_refiner_layers=1,
        patch_size=1,
        patch_size_t=1,
        guidance_embeds=True,
        text_embed_dim=16,
        pooled_projection_dim=8,
        rope_axes_dim=(2, 4, 4),
    )
    _seed(0)
    vae = AutoencoderKLHunyuanVideo(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        down_block_types=("HunyuanVideoDownBlock3D",) * 4,
        up_block_types=("HunyuanVideoUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=1,
        act_fn="silu",
        norm_num_groups=4,
        scaling_factor=0.476986,
        spatial_compression_ratio=8,
        temporal_compression_ratio=4,
        mid_block_add_attention=True,
    )
    _seed(0)
    llama = LlamaModel(
        LlamaConfig(
            vocab_size=259,
            hidden_size=16,
            intermediate_size=32,
            num_attention_heads=2,
            num_hidden_layers=3,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )
    return {
        "transformer": transformer,
        "vae": vae,
        "scheduler": FlowMatchEulerDiscreteScheduler(shift=7.0),
        "text_encoder": llama,
        "tokenizer": llama_tokenizer(),
        "text_encoder_2": clip_text(8),
        "tokenizer_2": tiny_clip_tokenizer(),
    }


def gemma_tokenizer() -> Any:
    """A Gemma byte-level tokenizer (pad 0, eos 1, bos 2, unk 3) over the 256 byte symbols."""
    from transformers import GemmaTokenizer

    vocab = byte_vocab("<pad>", "<eos>", "<bos>", "<unk>")
    return GemmaTokenizer(vocab=vocab, merges=[])


def _ltx2() -> dict[str, Any]:
    """LTX-2: video + audio transformer, Gemma 3 text encoder, text connectors, vocoder."""
    from diffusers import (
        AutoencoderKLLTX2Audio,
        AutoencoderKLLTX2Video,
        LTX2VideoTransformer3DModel,
    )
    from diffusers.pipelines.ltx2 import LTX2TextConnectors, LTX2Vocoder
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration

    _seed(0)
    text_encoder = Gemma3ForConditionalGeneration(
        Gemma3Config(
            text_config={
                "vocab_size": 260,
                "hidden_size": 16,
                "intermediate_size": 32,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "num_key_value_heads": 1,
                "head_dim": 8,
                "sliding_window": 16,
                "pad_token_id": 0,
                "eos_token_id": 1,
                "bos_token_id": 2,
            },
            vision_config={
                "hidden_size": 16,
                "intermediate_size": 32,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "image_size": 28,
                "patch_size": 14,
            },
            mm_tokens_per_image=4,
            boi_token_index=3,
            eoi_token_index=3,
            image_token_index=3,
        )
    ).eval()
    hidden, layers = 16, 2
    _seed(0)
    transformer = LTX2VideoTransformer3DModel(
        in_channels=4,
        out_channels=4,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=2,
        attention_head_dim=8,
        cross_attention_dim=16,
        audio_in_channels=4,
        audio_out_channels=4,
        audio_num_attention_heads=2,
        audio_attention_head_dim=4,
        audio_cross_attention_dim=8,
        num_layers=1,
        qk_norm="rms_norm_across_heads",
        caption_channels=hidden,
        rope_double_precision=False,
        rope_type="split",
    )
    _seed(0)
    connectors = LTX2TextConnectors(
        caption_channels=hidden,
        text_proj_in_factor=layers + 1,
        video_connector_num_attention_heads=2,
        video_connector_attention_head_dim=8,
        video_connector_num_layers=1,
        video_connector_num_learnable_registers=None,
        audio_connector_num_attention_heads=2,
        audio_connector_attention_head_dim=8,
        audio_connector_num_layers=1,
        audio_connector_num_learnable_registers=None,
        connector_rope_base_seq_len=32,
        rope_theta=10000.0,
        rope_double_precision=False,
        causal_temporal_positioning=False,
        rope_type="split",
    )
    _seed(0)
    vae = AutoencoderKLLTX2Video(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(8,),
        decoder_block_out_channels=(8,),
        layers_per_block=(1,),
        decoder_layers_per_block=(1, 1),
        spatio_temporal_scaling=(True,),
        decoder_spatio_temporal_scaling=(True,),
        decoder_inject_noise=(False, False),
        downsample_type=("spatial",),
        upsample_residual=(False,),
        upsample_factor=(1,),
        timestep_conditioning=False,
        patch_size=4,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    )
    _seed(0)
    audio_vae = AutoencoderKLLTX2Audio(
        base_channels=4,
        output_channels=2,
        ch_mult=(1,),
        num_res_blocks=1,
        attn_resolutions=None,
        in_channels=2,
        resolution=32,
        latent_channels=2,
        norm_type="pixel",
        causality_axis="height",
        dropout=0.0,
        mid_block_add_attention=False,
        sample_rate=16000,
        mel_hop_length=160,
        is_causal=True,
        mel_bins=8,
    )
    _seed(0)
    vocoder = LTX2Vocoder(
        in_channels=2 * 8,
        hidden_channels=32,
        out_channels=2,
        upsample_kernel_sizes=[4, 4],
        upsample_factors=[2, 2],
        resnet_kernel_sizes=[3],
        resnet_dilations=[[1, 3, 5]],
        leaky_relu_negative_slope=0.1,
        output_sampling_rate=16000,
    )
    return {
        "transformer": transformer,
        "vae": vae,
        "audio_vae": audio_vae,
        "scheduler": flow(),
        "text_encoder": text_encoder,
        "tokenizer": gemma_tokenizer(),
        "connectors": connectors,
        "vocoder": vocoder,
        "processor": None,
        "prompt_enhancer": None,
        "duration_head": None,
    }


def _hunyuan_video15(*, i2v: bool = False) -> Callable[[], dict[str, Any]]:
    def parts() -> dict[str, Any]:
        from diffusers import (
            AutoencoderKLHunyuanVideo15,
            ClassifierFreeGuidance,
            FlowMatchEulerDiscreteScheduler,
            HunyuanVideo15Transformer3DModel,
        )
        from transformers import ByT5Tokenizer, Qwen2_5_VLTextConfig, Qwen2_5_VLTextModel

        _seed(0)
        transformer = HunyuanVideo15Transformer3DModel(
            in_channels=9,
            out_channels=4,
            num_attention_heads=2,
            attention_head_dim=8,
            num_layers=1,
            num_refiner_layers=1,
            mlp_ratio=2.0,
            patch_size=1,
            patch_size_t=1,
            text_embed_dim=16,
            text_embed_2_dim=32,
            image_embed_dim=12,
            rope_axes_dim=(2, 2, 4),
            target_size=64,  # image->video output area (the 480p/720p tier of the real ones)
            task_type="i2v" if i2v else "t2v",
        )
        _seed(0)
        vae = AutoencoderKLHunyuanVideo15(
            in_channels=3,
            out_channels=3,
            latent_channels=4,
            block_out_channels=(8, 8, 8, 8),
            layers_per_block=1,
            spatial_compression_ratio=16,
            temporal_compression_ratio=4,
            downsample_match_channel=False,
            upsample_match_channel=False,
        )
        _seed(0)
        text_encoder = Qwen2_5_VLTextModel(Qwen2_5_VLTextConfig(**_QWEN25_TEXT))
        from transformers import T5Config, T5EncoderModel

        _seed(0)
        byt5 = T5EncoderModel(
            T5Config(vocab_size=384, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=2)
        )
        out = {
            "transformer": transformer.eval(),
            "vae": vae.eval(),
            "scheduler": FlowMatchEulerDiscreteScheduler(shift=7.0),
            "text_encoder": text_encoder.eval(),
            "tokenizer": qwen_tokenizer(),
            "text_encoder_2": byt5.eval(),
            "tokenizer_2": ByT5Tokenizer(),
            "guider": ClassifierFreeGuidance(guidance_scale=1.0),
        }
        if i2v:
            from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

            _seed(0)
            out["image_encoder"] = SiglipVisionModel(
                SiglipVisionConfig(
                    hidden_size=12,
                    intermediate_size=16,
                    num_hidden_layers=1,
                    num_attention_heads=2,
                    image_size=32,
                    patch_size=8,
                )
            ).eval()
            out["feature_extractor"] = SiglipImageProcessor(size={"height": 32, "width": 32})
        return out

    return parts


def _pix2pix() -> dict[str, Any]:
    """InstructPix2Pix: the SD 1.x parts with an 8-channel UNet (latents + image latents)."""
    return {**_sd_parts(in_channels=8), "safety_checker": None, "feature_extractor": None}


def _pixart_sigma() -> dict[str, Any]:
    from diffusers import DDIMScheduler, PixArtTransformer2DModel

    _seed(0)
    transformer = PixArtTransformer2DModel(
        sample_size=32,  # 256 px resolution bins (real: 128, the 1024 px ones)
        num_layers=1,
        patch_size=2,
        attention_head_dim=8,
        num_attention_heads=2,
        caption_channels=32,
        in_channels=4,
        cross_attention_dim=16,
        out_channels=8,  # learned sigma
        attention_bias=True,
        activation_fn="gelu-approximate",
        num_embeds_ada_norm=1000,
        norm_type="ada_norm_single",
        norm_elementwise_affine=False,
        norm_eps=1e-6,
    )
    return {
        "transformer": transformer,
        "vae": kl_vae(4),
        "scheduler": DDIMScheduler(),
        "text_encoder": t5_encoder(32),
        "tokenizer": t5_tokenizer(),
    }


def _lumina2() -> dict[str, Any]:
    from diffusers import Lumina2Transformer2DModel
    from transformers import Gemma2Config, Gemma2Model

    _seed(0)
    transformer = Lumina2Transformer2DModel(
        sample_size=8,
        patch_size=2,
        in_channels=4,
        hidden_size=16,
        num_layers=1,
        num_refiner_layers=1,
        num_attention_heads=1,
        num_kv_heads=1,
        multiple_of=16,
        ffn_dim_multiplier=None,
        norm_eps=1e-5,
        scaling_factor=1.0,
        axes_dim_rope=[8, 4, 4],
        cap_feat_dim=8,
    )
    _seed(0)
    text_encoder = Gemma2Model(
        Gemma2Config(
            vocab_size=260,
            head_dim=4,
            hidden_size=8,
            intermediate_size=8,
            num_attention_heads=2,
            num_hidden_layers=2,
            num_key_value_heads=2,
            sliding_window=2,
            pad_token_id=0,
            eos_token_id=1,
            bos_token_id=2,
        )
    )
    return {
        "transformer": transformer,
        "vae": kl_vae(4, use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609),
        "scheduler": flow(),
        "text_encoder": text_encoder,
        "tokenizer": gemma_tokenizer(),
    }


def _cogview4() -> dict[str, Any]:
    from diffusers import CogView4Transformer2DModel, FlowMatchEulerDiscreteScheduler
    from transformers import GlmConfig, GlmForCausalLM

    _seed(0)
    transformer = CogView4Transformer2DModel(
        patch_size=2,
        in_channels=4,
        num_layers=1,
        attention_head_dim=4,
        num_attention_heads=4,
        out_channels=4,
        text_embed_dim=32,
        time_embed_dim=8,
        condition_dim=4,
    )
    _seed(0)
    text_encoder = GlmForCausalLM(
        GlmConfig(
            vocab_size=259,
            hidden_size=32,
            intermediate_size=8,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=4,
            head_dim=8,
            pad_token_id=1,
        )
    )
    scheduler = FlowMatchEulerDiscreteScheduler(
        base_shift=0.25,
        max_shift=0.75,
        base_image_seq_len=256,
        use_dynamic_shifting=True,
        time_shift_type="linear",
    )
    return {
        "transformer": transformer,
        "vae": kl_vae(4),
        "scheduler": scheduler,
        "text_encoder": text_encoder,
        # byte-level, with a BOS as GLM-4's [gMASK]<sop> prefix: an empty prompt is never empty
        "tokenizer": llama_tokenizer(bos=True),
    }


def _mochi() -> dict[str, Any]:
    from diffusers import AutoencoderKLMochi, MochiTransformer3DModel

    _seed(0)
    transformer = MochiTransformer3DModel(
        patch_size=2,
        num_attention_heads=2,
        attention_head_dim=8,
        num_layers=1,
        pooled_projection_dim=16,
        in_channels=12,
        out_channels=None,
        qk_norm="rms_norm",
        text_embed_dim=32,
        time_embed_dim=4,
        activation_fn="swiglu",
        max_sequence_length=256,
    )
    transformer.pos_frequencies.data = transformer.pos_frequencies.new_full(
        transformer.pos_frequencies.shape, 0
    )
    _seed(0)
    vae = AutoencoderKLMochi(
        latent_channels=12,
        out_channels=3,
        encoder_block_out_channels=(32, 32, 32, 32),
        decoder_block_out_channels=(32, 32, 32, 32),
        layers_per_block=(1, 1, 1, 1, 1),
    )
    return {
        "transformer": transformer,
        "vae": vae,
        "scheduler": flow(),
        "text_encoder": t5_encoder(32),
        "tokenizer": t5_tokenizer(),
    }


def _stable_cascade() -> dict[str, Any]:
    """Stable Cascade combined: prior (stage C) + decoder (stage B) UNets, Paella VQ (stage A)."""
    from diffusers import DDPMWuerstchenScheduler
    from diffusers.models import StableCascadeUNet
    from diffusers.pipelines.deprecated.wuerstchen import PaellaVQModel

    _seed(0)
    prior = StableCascadeUNet(
        conditioning_dim=32,
        block_out_channels=(32, 32),
        num_attention_heads=(2, 2),
        down_num_layers_per_block=(1, 1),
        up_num_layers_per_block=(1, 1),
        clip_image_in_channels=32,
        switch_level=(False,),
        clip_text_in_channels=32,
        clip_text_pooled_in_channels=32,
        dropout=(0.0, 0.0),
    ).eval()
    _seed(0)
    decoder = StableCascadeUNet(
        in_channels=4,
        out_channels=4,
        conditioning_dim=32,
        block_out_channels=(16, 32),
        num_attention_heads=(-1, 2),
        down_num_layers_per_block=(1, 1),
        up_num_layers_per_block=(1, 1),
        down_blocks_repeat_mappers=(1, 1),
        up_blocks_repeat_mappers=(1, 1),
        block_types_per_layer=(
            ("SDCascadeResBlock", "SDCascadeTimestepBlock"),
            ("SDCascadeResBlock", "SDCascadeTimestepBlock", "SDCascadeAttnBlock"),
        ),
        switch_level=None,
        clip_text_pooled_in_channels=32,
        dropout=(0.0, 0.0),
    ).eval()
    _seed(0)
    vqgan = PaellaVQModel(bottleneck_blocks=1, num_vq_embeddings=2).eval()
    text_encoder = clip_text(32, projection=True).eval()
    return {
        "text_encoder": text_encoder,
        "tokenizer": tiny_clip_tokenizer(),
        "decoder": decoder,
        "scheduler": DDPMWuerstchenScheduler(),
        "vqgan": vqgan,
        "prior_text_encoder": text_encoder,
        "prior_tokenizer": tiny_clip_tokenizer(),
        "prior_prior": prior,
        "prior_scheduler": DDPMWuerstchenScheduler(),
        "prior_feature_extractor": None,
        "prior_image_encoder": None,
    }


FAMILIES: dict[str, Family] = {
    "sdxl": Family("StableDiffusionXLPipeline", _sdxl, (T2I, I2I, INPAINT)),
    "sd3": Family("StableDiffusion3Pipeline", _sd3, (T2I, I2I, INPAINT)),
    "flux": Family("FluxPipeline", _flux_extra(_flux()), (T2I, I2I, INPAINT)),
    "flux-kontext": Family("FluxKontextPipeline", _flux_extra(_flux()), (T2I, I2I)),
    # Fill: packed latents (4) + packed masked-image latents (4) + the 8x8 mask per latent, packed
    "flux-fill": Family("FluxFillPipeline", _flux(4 + 4 + 64 * 4, 4), (INPAINT,)),
    "flux2-klein": Family(
        "Flux2KleinPipeline", _flux2_klein, (T2I, I2I), config={"is_distilled": True}
    ),
    "flux2-dev": Family("Flux2Pipeline", _flux2_dev, (T2I, I2I)),
    "qwen-image": Family(
        "QwenImagePipeline", lambda: _qwen_image_parts(edit=False), (T2I, I2I, INPAINT)
    ),
    "qwen-image-edit": Family(
        "QwenImageEditPipeline",
        lambda: _qwen_image_parts(edit=True),
        (I2I,),
    ),
    "qwen-image-edit-plus": Family(
        "QwenImageEditPlusPipeline",
        lambda: _qwen_image_parts(edit=True),
        (I2I,),
    ),
    "z-image": Family("ZImagePipeline", _z_image, (T2I, I2I)),
    "wan": Family("WanPipeline", _wan(), (T2V,), frames=5),
    "wan-i2v": Family("WanImageToVideoPipeline", _wan(i2v=True), (I2V,), frames=5),
    "wan22-a14b": Family(
        "WanPipeline", _wan(experts=2), (T2V,), frames=5, config={"boundary_ratio": 0.875}
    ),
    "wan22-a14b-i2v": Family(
        "WanImageToVideoPipeline",
        _wan(i2v=True, experts=2),
        (I2V,),
        frames=5,
        config={"boundary_ratio": 0.9},
    ),
    "wan22-ti2v": Family(
        "WanPipeline",
        _wan(ti2v=True),
        (T2V,),
        frames=5,
        config={"expand_timesteps": True},
    ),
    "ltx": Family("LTXPipeline", _ltx, (T2V,), frames=9),
    "ltx-i2v": Family("LTXImageToVideoPipeline", _ltx, (I2V,), frames=9),
    "ltx2-i2v": Family("LTX2ImageToVideoPipeline", _ltx2, (I2V,), frames=9),
    "cogvideox-i2v": Family(
        "CogVideoXImageToVideoPipeline", lambda: _cogvideox(8), (I2V,), frames=5
    ),
    "cogvideox": Family("CogVideoXPipeline", _cogvideox, (T2V,), frames=5),
    "hunyuan-video": Family("HunyuanVideoPipeline", _hunyuan_video, (T2V,), frames=5),
    "hunyuan-video15": Family("HunyuanVideo15Pipeline", _hunyuan_video15(), (T2V,), frames=5),
    "hunyuan-video15-i2v": Family(
        "HunyuanVideo15ImageToVideoPipeline", _hunyuan_video15(i2v=True), (I2V,), frames=5
    ),
    "ltx2": Family("LTX2Pipeline", _ltx2, (T2V,), frames=9),
    "instruct-pix2pix": Family(
        "StableDiffusionInstructPix2PixPipeline",
        _pix2pix,
        (I2I,),
        config={"requires_safety_checker": False},
    ),
    "pixart-sigma": Family("PixArtSigmaPipeline", _pixart_sigma, (T2I,)),
    "lumina2": Family("Lumina2Pipeline", _lumina2, (T2I,)),
    "cogview4": Family("CogView4Pipeline", _cogview4, (T2I,)),
    "mochi": Family("MochiPipeline", _mochi, (T2V,), frames=7),
    "stable-cascade": Family(
        "StableCascadeCombinedPipeline",
        _stable_cascade,
        (T2I,),
        broken="diffusers 0.42 moved PaellaVQModel (stage A) to pipelines.deprecated and no "
        "longer loads it from a model folder by the name model_index.json gives",
    ),
}


def build_family(name: str, path: Path) -> Path:
    """Write family ``name`` as a model folder at ``path`` (``save_pretrained``)."""
    import diffusers

    family = FAMILIES[name]
    cls = getattr(diffusers, family.pipeline)
    parts = family.parts()
    save(cls(**parts, **family.config), path)
    return _with_qwen_processor(path) if name.startswith("qwen-image-edit") else path
