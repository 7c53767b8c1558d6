"""The Python side of `dinokit search` and `dinokit dedup`."""
from __future__ import annotations

import numpy as np
import torch

from ..data import list_images, load_image
from ..embeddings import EmbeddingIndex, Hit, drop_unusable, duplicate_groups, read_embeddings
from ..pretrained import Dinov2Model
from ..runtime.cpu import fast_path
from .embed import EmbedOptions, make_processor
from .pooling import pool


def embed_images(images, model, *, pooling="cls", normalize=False, image_size=None, interpolate_mode=None,
                 device="cpu", batch_size=8) -> np.ndarray:
    """Embeddings of a few images in memory, computed exactly as `dinokit embed` computes them."""
    net = model if isinstance(model, torch.nn.Module) else Dinov2Model.from_pretrained(
        model, interpolate_mode=interpolate_mode, device=device)
    fast_path(net)
    processor = make_processor(str(model) if not isinstance(model, torch.nn.Module) else None, image_size)
    out = []
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            pixels = processor([load_image(p) if not hasattr(p, "mode") else p for p in images[i:i + batch_size]])
            tokens = net(pixels["pixel_values"].to(device)).last_hidden_state
            out.append(pool(tokens, net.num_prefix_tokens, pooling, normalize).float().cpu().numpy())
    return np.concatenate(out)


def search(query, index, k: int = 10, *, device="cpu") -> list[list[Hit]]:
    """Nearest images of each query: image paths, a text file of paths, a folder, or an array of embeddings."""
    index = index if isinstance(index, EmbeddingIndex) else EmbeddingIndex(index)
    if isinstance(query, np.ndarray):
        return index.search(query, k)
    o = index_options(index.meta)
    vectors = embed_images([str(p) for p in list_images(query)], o.model, pooling=o.pooling, normalize=o.normalize,
                           image_size=o.image_size, interpolate_mode=o.interpolate_mode, device=device)
    return index.search(vectors, k)


def index_options(meta: dict, **overrides) -> EmbedOptions:
    """The settings an index's embeddings were made with (its meta), so that a query is embedded the same way."""
    size = meta.get("dinokit.image_size")
    return EmbedOptions(model=meta["dinokit.model"], pooling=meta["dinokit.pooling"],
                        normalize=meta.get("dinokit.normalize") == "True",
                        image_size=int(size) if size not in (None, "None") else None,
                        interpolate_mode=meta.get("dinokit.interpolate_mode") or None, **overrides)


def dedup(embeddings, threshold: float = 0.95, *, unusable: list | None = None) -> list[list[str]]:
    """Groups of near-duplicate images (cosine ≥ threshold) in an embeddings folder or file. Rows whose
    embedding is NaN or all zeros are never grouped; their paths are appended to `unusable` if given."""
    paths, vectors, left_out, _ = drop_unusable(*read_embeddings(embeddings)[:2])
    if unusable is not None:
        unusable.extend(left_out)
    return [[paths[i] for i in group] for group in duplicate_groups(vectors, threshold)] if paths else []
