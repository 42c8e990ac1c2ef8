"""The sizes of the models the sd15 pipeline names, as published, and their tiny versions: written once, here.

`FULL` holds the published architectures: the Stable Diffusion 1.5 UNet (4 input channels for text-to-image, 9 for
inpainting: the builder sets them) and VAE with CLIP ViT-L/14's text tower as its text encoder; CLIP ViT-L/14;
Grounding DINO Swin-T with its BERT-base text tower (MM-Grounding-DINO-T has the same sizes); SAM ViT-H; SAM 2.1
Hiera-L; DINOv2-base. `TINY` has the same keys at a size a CPU runs in milliseconds. The builders in
datagen/models/tiny.py take either: `tiny:ROLE` models use TINY, the random real-size stand-ins that
`datagen bench gpu` and benchmarks/real_size.py write into a hub cache use FULL (or TINY, to check that code on a
CPU). Text vocabularies are the tokenizers' unless given here: the tiny tokenizers stand in for the real ones (a
download), and FULL keeps the real embedding tables.

`*_pixels` are the sides the model's processor resizes to: crop side (CLIP, DINOv2), padded longest side (SAM),
square side (SAM 2.1), shortest and longest side (Grounding DINO).
"""

from __future__ import annotations

FULL = {
    "unet": dict(
        sample_size=64,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=768,
        attention_head_dim=8,
    ),
    "vae": dict(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        sample_size=512,
    ),
    # CLIP ViT-L/14's text tower: CLIP's own, and Stable Diffusion 1.5's text encoder
    "clip_text": dict(
        vocab_size=49408,
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        max_position_embeddings=77,
        hidden_act="quick_gelu",
    ),
    "clip_vision": dict(
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=24,
        num_attention_heads=16,
        image_size=224,
        patch_size=14,
        hidden_act="quick_gelu",
    ),
    "clip_projection": 768,
    "clip_pixels": 224,
    "dino": dict(
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        image_size=518,
        patch_size=14,
    ),
    "dino_pixels": 224,
    "grounding": dict(
        backbone_config=dict(  # Swin-T
            model_type="swin",
            embed_dim=96,
            depths=[2, 2, 6, 2],
            num_heads=[3, 6, 12, 24],
            window_size=7,
            image_size=224,
            out_features=["stage2", "stage3", "stage4"],
        ),
        text_config=dict(  # BERT-base (uncased)
            model_type="bert",
            vocab_size=30522,
            hidden_size=768,
            num_hidden_layers=12,
            num_attention_heads=12,
            intermediate_size=3072,
            max_position_embeddings=512,
        ),
        d_model=256,
        encoder_layers=6,
        decoder_layers=6,
        encoder_attention_heads=8,
        decoder_attention_heads=8,
        encoder_ffn_dim=2048,
        decoder_ffn_dim=2048,
        num_queries=900,
        encoder_n_points=4,
        decoder_n_points=4,
        max_text_len=256,
    ),
    "grounding_pixels": (800, 1333),
    "sam": dict(
        vision_config=dict(  # ViT-H; prompt encoder and mask decoder are SamConfig's defaults, as published
            hidden_size=1280,
            num_hidden_layers=32,
            num_attention_heads=16,
            mlp_dim=5120,
            global_attn_indexes=[7, 15, 23, 31],
        ),
    ),
    "sam_pixels": 1024,
    "sam2": dict(
        vision_config=dict(  # Hiera-L (transformers' convert_sam2_to_hf.py); prompt encoder and mask decoder: defaults
            backbone_config=dict(
                hidden_size=144,
                embed_dim_per_stage=[144, 288, 576, 1152],
                num_attention_heads_per_stage=[2, 4, 8, 16],
                blocks_per_stage=[2, 6, 36, 4],
                global_attention_blocks=[23, 33, 43],
                window_positional_embedding_background_size=[7, 7],
                window_size_per_stage=[8, 4, 16, 8],
            ),
            backbone_channel_list=[1152, 576, 288, 144],
        ),
    ),
    "sam2_pixels": 1024,
}
"""The published architectures."""

TINY = {
    "unet": dict(
        sample_size=16,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=32,
    ),
    "vae": dict(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        norm_num_groups=32,
        sample_size=32,
    ),
    "clip_text": dict(
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
    ),
    "clip_vision": dict(
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=32,
        patch_size=8,
    ),
    "clip_projection": 16,
    "clip_pixels": 32,
    "dino": dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        image_size=32,
        patch_size=8,
    ),
    "dino_pixels": 32,
    "grounding": dict(
        backbone_config=dict(
            model_type="swin",
            embed_dim=16,
            depths=[1, 1, 1, 1],
            num_heads=[1, 1, 1, 1],
            window_size=4,
            image_size=128,
            out_features=["stage2", "stage3", "stage4"],
        ),
        text_config=dict(
            model_type="bert",
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=37,
            max_position_embeddings=64,
        ),
        d_model=32,
        encoder_layers=1,
        decoder_layers=2,  # decoder_layers >= 2: its weight tying needs two
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        num_queries=16,
        encoder_n_points=2,
        decoder_n_points=2,
        max_text_len=64,
    ),
    "grounding_pixels": (128, 128),
    "sam": dict(
        vision_config=dict(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            mlp_dim=64,
            output_channels=32,
            image_size=64,
            patch_size=8,
            window_size=4,
            global_attn_indexes=[1],
            num_pos_feats=16,
        ),
        prompt_encoder_config=dict(hidden_size=32, image_size=64, patch_size=8, image_embedding_size=8),
        mask_decoder_config=dict(
            hidden_size=32, mlp_dim=64, num_hidden_layers=2, num_attention_heads=2, iou_head_hidden_dim=32
        ),
    ),
    "sam_pixels": 64,
    "sam2": dict(
        vision_config=dict(
            # a pooling stage's first block windows with the previous stage's window halved: none may be global
            backbone_config=dict(
                hidden_size=8,
                image_size=[64, 64],
                embed_dim_per_stage=[8, 16, 32, 64],
                num_attention_heads_per_stage=[1, 1, 1, 1],
                blocks_per_stage=[1, 1, 2, 1],
                global_attention_blocks=[3],
                window_positional_embedding_background_size=[2, 2],
                window_size_per_stage=[4, 2, 2, 2],
            ),
            backbone_channel_list=[64, 32, 16, 8],
            backbone_feature_sizes=[[16, 16], [8, 8], [4, 4]],  # 64 px at strides 4, 8, 16
            fpn_hidden_size=32,
        ),
        prompt_encoder_config=dict(hidden_size=32, image_size=64, patch_size=16),
        mask_decoder_config=dict(hidden_size=32, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32),
    ),
    "sam2_pixels": 64,
}
"""The same families at a size a CPU runs in milliseconds (the `tiny` pipeline's models)."""

SIZES = {"full": FULL, "tiny": TINY}
