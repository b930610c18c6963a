"""Tiny random-weight upscalers, architecturally real, built locally (no download).

- ``build_tiny_sd_upscaler``: StableDiffusionUpscalePipeline (x4; 7-channel UNet over latents +
  the low-res image, noise-level class embedding, a 3-block VAE = factor 4).
- ``build_tiny_ldm_sr``: LDMSuperResolutionPipeline (x4; 6-channel UNet2DModel, 3-block VQModel).
- ``build_tiny_latent_upscaler``: StableDiffusionLatentUpscalePipeline (x2 in latent space).
- ``write_tiny_esrgan``: an RRDBNet (ESRGAN x4) safetensors file stable-diffusion.cpp loads as
  its upscaler: one RRDB block (sd.cpp detects the block count and, from conv_up1/conv_up2, the
  factor; it fixes 64 features and 32 growth channels, so those stay real size).
"""

from __future__ import annotations

from pathlib import Path

from tiny_models import clip_text, kl_vae, save, seed, tiny_clip_tokenizer

__all__ = [
    "build_tiny_latent_upscaler",
    "build_tiny_ldm_sr",
    "build_tiny_sd_upscaler",
    "esrgan_spec",
    "write_tiny_esrgan",
]


def build_tiny_sd_upscaler(path: Path) -> Path:
    from diffusers import (
        DDIMScheduler,
        DDPMScheduler,
        StableDiffusionUpscalePipeline,
        UNet2DConditionModel,
    )

    seed(0)
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=7,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=2,
        norm_num_groups=2,
        num_class_embeds=100,
    )
    vae = kl_vae(4, blocks=3, seed=None, sample_size=32, scaling_factor=0.08333)
    # projection_dim 512: CLIPTextConfig's default (a CLIPTextModel has no projection)
    text_encoder = clip_text(16, layers=1, projection_dim=512, seed=None)
    pipe = StableDiffusionUpscalePipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tiny_clip_tokenizer(),
        unet=unet,
        low_res_scheduler=DDPMScheduler(),
        scheduler=DDIMScheduler(prediction_type="v_prediction"),
        max_noise_level=350,
    )
    return save(pipe, path)


def build_tiny_ldm_sr(path: Path) -> Path:
    from diffusers import DDIMScheduler, LDMSuperResolutionPipeline, UNet2DModel, VQModel

    seed(0)
    unet = UNet2DModel(
        sample_size=16,
        in_channels=6,
        out_channels=3,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=2,
    )
    vqvae = VQModel(
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 8, 8),
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        latent_channels=3,
        norm_num_groups=2,
        num_vq_embeddings=16,
    )
    return save(LDMSuperResolutionPipeline(vqvae=vqvae, unet=unet, scheduler=DDIMScheduler()), path)


def esrgan_spec(num_block: int = 1, scale: int = 4) -> dict[str, list[int]]:
    """Tensor names and shapes of an RRDBNet as stable-diffusion.cpp reads it."""
    feat, grow = 64, 32
    spec: dict[str, list[int]] = {}

    def conv(name: str, cin: int, cout: int) -> None:
        spec[f"{name}.weight"] = [cout, cin, 3, 3]
        spec[f"{name}.bias"] = [cout]

    conv("conv_first", 3, feat)
    for b in range(num_block):
        for r in (1, 2, 3):
            for i in range(1, 6):
                cin = feat + (i - 1) * grow
                conv(f"body.{b}.rdb{r}.conv{i}", cin, grow if i < 5 else feat)
    conv("conv_body", feat, feat)
    conv("conv_up1", feat, feat)
    if scale == 4:
        conv("conv_up2", feat, feat)
    conv("conv_hr", feat, feat)
    conv("conv_last", feat, 3)
    return spec


def write_tiny_esrgan(path: Path) -> Path:
    from sdcpp_models import write_safetensors

    return write_safetensors(esrgan_spec(), path, seed=3)


def build_tiny_latent_upscaler(path: Path) -> Path:
    """StableDiffusionLatentUpscalePipeline (x2 in latent space; K-diffusion UNet blocks)."""
    from diffusers import (
        EulerDiscreteScheduler,
        StableDiffusionLatentUpscalePipeline,
        UNet2DConditionModel,
    )

    seed(0)
    unet = UNet2DConditionModel(
        act_fn="gelu",
        attention_head_dim=8,
        norm_num_groups=None,
        block_out_channels=[32, 32, 64, 64],  # K blocks norm in groups of 32 channels
        time_cond_proj_dim=160,
        conv_in_kernel=1,
        conv_out_kernel=1,
        cross_attention_dim=32,
        down_block_types=("KDownBlock2D", *("KCrossAttnDownBlock2D",) * 3),
        in_channels=8,
        mid_block_type=None,
        only_cross_attention=False,
        out_channels=5,
        resnet_time_scale_shift="scale_shift",
        time_embedding_type="fourier",
        timestep_post_act="gelu",
        up_block_types=(*("KCrossAttnUpBlock2D",) * 3, "KUpBlock2D"),
    )
    vae = kl_vae(4, seed=None, sample_size=32)
    text_encoder = clip_text(32, intermediate=37, heads=4, seed=None)
    pipe = StableDiffusionLatentUpscalePipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tiny_clip_tokenizer(),
        unet=unet,
        scheduler=EulerDiscreteScheduler(prediction_type="sample"),
    )
    return save(pipe, path)
