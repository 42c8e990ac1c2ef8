"""CLIP (ViT-L/14 in the real pipelines) and DINOv2 embeddings through transformers; unit-norm vectors."""

from __future__ import annotations

import numpy as np
from PIL import Image

from datagen.models.weights import VisionRole


class _Embedder(VisionRole):
    def _batches(self, items: list):
        """`batch_size` items per model call, each call counted."""
        size = self.spec.batch_size
        for start in range(0, len(items), size):
            self.counted(len(items[start : start + size]))
            yield items[start : start + size]

    @staticmethod
    def _unit(tensor) -> np.ndarray:
        array = tensor.float().cpu().numpy()
        return array / np.maximum(np.linalg.norm(array, axis=-1, keepdims=True), 1e-12)


class CLIPEmbedder(_Embedder):
    def load(self) -> None:
        from transformers import CLIPModel, CLIPProcessor

        self._from_pretrained(CLIPModel, CLIPProcessor)

    def embed_images(self, images: list[np.ndarray]) -> np.ndarray:
        import torch

        out = []
        for batch in self._batches(images):
            inputs = self.processor(images=[Image.fromarray(i) for i in batch], return_tensors="pt")
            with torch.inference_mode():
                features = self.model.get_image_features(pixel_values=inputs.pixel_values.to(self.device, self.dtype))
            out.append(self._unit(getattr(features, "pooler_output", features)))
        return np.concatenate(out)

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        import torch

        out = []
        for batch in self._batches(texts):
            inputs = self.processor(text=batch, return_tensors="pt", padding=True, truncation=True, max_length=77)
            with torch.inference_mode():
                features = self.model.get_text_features(
                    input_ids=inputs.input_ids.to(self.device), attention_mask=inputs.attention_mask.to(self.device)
                )
            out.append(self._unit(getattr(features, "pooler_output", features)))
        return np.concatenate(out)


class DINOEmbedder(_Embedder):
    def load(self) -> None:
        from transformers import AutoImageProcessor, AutoModel

        self._from_pretrained(AutoModel, AutoImageProcessor)

    def embed_images(self, images: list[np.ndarray]) -> np.ndarray:
        import torch

        out = []
        for batch in self._batches(images):
            inputs = self.processor(images=[Image.fromarray(i) for i in batch], return_tensors="pt")
            with torch.inference_mode():
                hidden = self.model(pixel_values=inputs.pixel_values.to(self.device, self.dtype)).last_hidden_state
            out.append(self._unit(hidden[:, 0]))  # the CLS token, as DINOv2 similarity is usually measured
        return np.concatenate(out)
