"""EditReward's model as its authors publish it (TIGER-AI-Lab/EditReward, EditReward/model/qwen2_5_vl_trainer.py, MIT):
Qwen2.5-VL with two reward heads over the decoder's last hidden states, pooled at the `<|Reward|>` token. Imports
nothing of datagen: the reward role (models/reward.py) loads it and the tiny builder (models/tiny.py) builds it.
"""

from __future__ import annotations

import functools

REWARD_TOKEN = "<|Reward|>"
"""The special token the authors add to the tokenizer; the heads read the hidden state there."""
HEAD_WIDTHS = (1024, 16)
"""The hidden widths of each head's MLP when the config gives no `rm_head_kwargs` (the published model's)."""
OUTPUTS = 2
"""Each head's outputs (`output_dim: 2`, the uncertainty loss's mean and log sigma)."""
RUBRICS = ("following", "quality")
"""The rubric each head reads the pair under, head_0 first."""


@functools.cache
def model_class():
    """EditReward's model class: Qwen2.5-VL with its two reward heads (built here, so that torch and transformers
    are imported only when the role loads)."""
    import torch
    from torch import nn
    from transformers import Qwen2_5_VLForConditionalGeneration

    def head(hidden: int) -> nn.Sequential:
        wide, narrow = HEAD_WIDTHS
        return nn.Sequential(
            nn.Linear(hidden, wide),
            nn.ReLU(),
            nn.Dropout(0.05),
            nn.Linear(wide, narrow),
            nn.ReLU(),
            nn.Linear(narrow, OUTPUTS),
        )

    class EditRewardQwen2_5_VL(Qwen2_5_VLForConditionalGeneration):
        def __init__(self, config):
            super().__init__(config)
            hidden = config.text_config.hidden_size
            self.rm_heads = nn.ModuleDict({f"head_{n}": head(hidden) for n in range(len(RUBRICS))})
            self.rm_heads.to(torch.float32)

        def head_scores(self, batch: dict, head: str, token_id: int):
            """[B, OUTPUTS]: one head's outputs at each sequence's reward token. The image embeddings are put in the
            image tokens' places and the decoder is run on the result with its default positions, as the authors'
            `_run_single_batch_through_model_and_head` does."""
            ids = batch["input_ids"]
            embeds = self.get_input_embeddings()(ids)
            images = self.model.get_image_features(batch["pixel_values"], batch["image_grid_thw"])
            images = torch.cat(list(getattr(images, "pooler_output", images)), dim=0).to(embeds.dtype)
            places = (ids == self.config.image_token_id).unsqueeze(-1).expand_as(embeds)
            embeds = embeds.masked_scatter(places, images)
            hidden = self.model.language_model(inputs_embeds=embeds, attention_mask=batch["attention_mask"])[0]
            logits = self.rm_heads[head](hidden.float())
            return logits[ids == token_id].view(ids.shape[0], -1)

    return EditRewardQwen2_5_VL
