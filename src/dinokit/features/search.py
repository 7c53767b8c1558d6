"""The Python side of `dinokit search` and `dinokit dedup`."""
from __future__ import annotations

import numpy as np
import torch

from ..data import list_images, load_image
from ..embeddings import EmbeddingIndex, Hit, drop_unusable, duplicate_groups, read_embeddings
from ..errors import UsageError
from ..pretrained import is_dinotxt
from ..zeroshot import load_dinotxt
from .embed import EmbedOptions, load_embedder, make_processor, token_forward
from .pooling import pool


def embed_images(images, model, *, pooling="cls", normalize=False, image_size=None, interpolate_mode=None,
                 device="cpu", batch_size=8) -> np.ndarray:
    """Embeddings of a few images in memory (paths or PIL images), computed exactly as `dinokit embed`
    computes them: the same processor, model and forward."""
    options = EmbedOptions(model=str(model) if not isinstance(model, torch.nn.Module) else "dinov2_vits14", pooling=pooling,
                           normalize=normalize, image_size=image_size, interpolate_mode=interpolate_mode, device=device)
    net = model if isinstance(model, torch.nn.Module) else load_embedder(options)
    processor = make_processor(options.model if not isinstance(model, torch.nn.Module) else None, image_size)
    forward = token_forward(net, options, processor.crop_size["height"] if processor.do_center_crop else None)
    out = []
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            pixels = processor([load_image(p) if not hasattr(p, "mode") else p for p in images[i:i + batch_size]])
            tokens = forward(pixels["pixel_values"].to(device))
            out.append(pool(tokens, net.num_prefix_tokens, pooling, normalize).float().cpu().numpy())
    return np.concatenate(out)


def embed_texts(texts: list[str], model, *, device="cpu") -> np.ndarray:
    """dino.txt text embeddings of `texts`, normalised: what a text query is compared with."""
    net = load_dinotxt(model, device)
    with torch.inference_mode():
        return net.encode_texts(texts, normalize=True).float().cpu().numpy()


def search(query=None, index=None, k: int = 10, *, text: str | list[str] | None = None, device="cpu",
           nprobe: int | None = None) -> list[list[Hit]]:
    """Nearest images of each query: image paths, a text file of paths, a folder, an array of embeddings, or
    `text=` (one string or several) for an index made with dino.txt. `nprobe`: the lists an IVF index visits."""
    if index is None:
        raise TypeError("search() needs index=: an index folder (`dinokit index`) or an EmbeddingIndex")
    index = index if isinstance(index, EmbeddingIndex) else EmbeddingIndex(index, nprobe=nprobe)
    if (query is None) == (text is None):
        raise TypeError("search() takes a query (images or embeddings) or text=, not both")
    if text is not None:
        model = index.meta.get("dinokit.model")
        if model is None or not is_dinotxt(model):
            raise UsageError(f"this index was made with {model or 'an unknown model'}, which does not read text: "
                             "text search needs an index of dino.txt embeddings (`dinokit embed --model dinotxt`)")
        return index.search(embed_texts([text] if isinstance(text, str) else list(text), model, device=device), k)
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
