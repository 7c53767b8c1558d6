"""What `dinokit serve` computes, apart from HTTP: the model behind a dynamic batcher, the index, the
duplicate groups, thumbnails and the `viz` pictures of the collection's images.

Embeddings are computed as `dinokit embed` computes them (the same processor, `token_forward` and `pool`);
with an index, the settings come from the index, so that a query is embedded as the collection was.
"""
from __future__ import annotations

import io
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass

import numpy as np
import torch
from PIL import Image

from ..classify import load_classifier, top_predictions
from ..data import decode_image, load_image
from ..embeddings import EmbeddingIndex
from ..errors import InputFileError, UsageError
from ..features.embed import EmbedOptions, load_embedder, make_processor, model_metadata, token_forward
from ..features.pooling import pool
from ..features.search import index_options
from ..io import read_json
from ..models.dinotxt import DinoTxt
from ..weights import model_identity
from .batching import DynamicBatcher
from .collection import Collection

PICTURES = ("pca", "attention")


@dataclass(frozen=True)
class ServeLimits:
    """How much the service takes at once. Requests beyond `max_queue` waiting images get a 503."""

    max_batch_size: int = 32  # images in one forward pass
    batch_window_ms: float = 5.0  # how long the first request of a batch waits for others
    max_queue: int = 256  # images waiting for the model
    max_request_bytes: int = 32 << 20  # the body of one request
    max_pixels: int = 50_000_000  # of one decoded image (a decompression bomb is refused before decoding)
    max_images_per_request: int = 64


class Service:
    def __init__(self, model: str | None = None, *, index=None, duplicates=None, classifier: str | None = None,
                 pooling: str | None = None, normalize: bool | None = None, image_size: int | None = None,
                 interpolate_mode: str | None = None, device: str | None = None, limits: ServeLimits = ServeLimits()):
        self.limits = limits
        self.index = EmbeddingIndex(index) if index is not None else None
        self.options = self._options(model, pooling, normalize, image_size, interpolate_mode, device)
        self.options.check()
        o = self.options
        self.processor = make_processor(o.model, o.image_size)
        crop = self.processor.crop_size["height"] if self.processor.do_center_crop else None
        self.net = load_embedder(o)
        self.reads_text = isinstance(self.net, DinoTxt)
        self._check_index_weights()
        self.forward = token_forward(self.net, o, crop)
        self.groups = _read_groups(duplicates) if duplicates is not None else []
        self.collection = Collection([*(self.index.paths if self.index else []), *(p for g in self.groups for p in g)])
        self.classifier = None
        if classifier:
            try:
                self.classifier, self.classifier_processor = load_classifier(classifier)
            except ValueError as e:
                raise UsageError(f"--classifier: {e}") from None
        self.model_lock = threading.Lock()  # the viz pictures run the backbone outside the batcher
        self._pictures: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self.batchers: dict[str, DynamicBatcher] = {}

    def _options(self, model, pooling, normalize, image_size, interpolate_mode, device) -> EmbedOptions:
        given = {"pooling": pooling, "normalize": normalize, "image_size": image_size, "interpolate_mode": interpolate_mode}
        if self.index is None:
            return EmbedOptions(model=model or "dinov2_vits14", **{k: v for k, v in given.items() if v is not None},
                                device=device)
        if "dinokit.model" not in self.index.meta:
            raise UsageError("--index: this index does not record how its embeddings were made (rebuild it with "
                             "`dinokit index` from a `dinokit embed` output)")
        options = index_options(self.index.meta, device=device)
        if model is not None and model_identity(model) != options.model:
            raise UsageError(f"--model {model} is not the model of the index ({options.model}): leave --model out")
        differing = [f"--{k.replace('_', '-')} {v} (the index: {getattr(options, k)})"
                     for k, v in given.items() if v is not None and v != getattr(options, k)]
        if differing:
            raise UsageError("the index was made with other settings: " + "; ".join(differing)
                             + "; leave them out to use the index's")
        return options

    def _check_index_weights(self) -> None:
        recorded = self.index.meta.get("dinokit.weights") if self.index else None
        if recorded and recorded != model_metadata(self.net)["dinokit.weights"]:
            raise UsageError(f"the weights of {self.options.model} changed since the index was made: "
                             "re-embed and rebuild the index, or serve the model it was made with")

    # --- the batchers -----------------------------------------------------------------------------------
    def start(self, on_batch=None) -> None:
        lim = self.limits
        kinds = {"embed": self._embed_batch, **({"classify": self._classify_batch} if self.classifier else {})}
        for kind, run in kinds.items():
            self.batchers[kind] = DynamicBatcher(
                run, max_batch_size=lim.max_batch_size, window_ms=lim.batch_window_ms, max_queue=lim.max_queue,
                name=f"dinokit-{kind}", on_batch=(lambda n, s, kind=kind: on_batch(kind, n, s)) if on_batch else None,
            ).start()

    def stop(self) -> None:
        for batcher in self.batchers.values():
            batcher.stop()

    def queue_depth(self) -> int:
        return sum(b.depth for b in self.batchers.values())

    def _embed_batch(self, pixels: list[torch.Tensor]) -> list[np.ndarray]:
        o = self.options
        with self.model_lock, torch.inference_mode():
            return _by_shape(pixels, lambda x: pool(self.forward(x.to(o.torch_device, o.torch_dtype)),
                                                    self.net.num_prefix_tokens, o.pooling, o.normalize).float().cpu().numpy())

    def _classify_batch(self, pixels: list[torch.Tensor]) -> list[torch.Tensor]:
        with torch.inference_mode():
            return _by_shape(pixels, lambda x: self.classifier(x).logits.softmax(-1).float())

    # --- requests ---------------------------------------------------------------------------------------
    def pixels(self, data: bytes, name: str, processor=None) -> torch.Tensor:
        """One upload → the model's input, or `ImageLoadError` (corrupt, empty, not an image, too many pixels)."""
        image = decode_image(data, name, max_pixels=self.limits.max_pixels)
        return (processor or self.processor)(image)["pixel_values"][0]

    async def embed(self, pixels: list[torch.Tensor]) -> np.ndarray:
        return np.stack(await self.batchers["embed"].submit(pixels))

    def embed_text(self, texts: list[str]) -> np.ndarray:
        """dino.txt text embeddings (normalised), as `dinokit search --text` computes them."""
        with self.model_lock, torch.inference_mode():
            return self.net.encode_texts(texts, normalize=True).float().cpu().numpy()

    def search(self, vectors: np.ndarray, k: int) -> list[list[dict]]:
        return [[{"path": h.path, "key": self.collection.key(h.path), "score": h.score} for h in hits]
                for hits in self.index.search(vectors, k)]

    async def classify(self, pixels: list[torch.Tensor], top_k: int) -> list[list[dict]]:
        labels = self.classifier.config.id2label or {}
        return [top_predictions(p, labels, top_k) for p in await self.batchers["classify"].submit(pixels)]

    def thumbnail(self, key: str, size: int = 256) -> bytes:
        image = load_image(self.collection.resolve(key), max_pixels=self.limits.max_pixels)
        image.thumbnail((size, size), Image.BICUBIC)
        out = io.BytesIO()
        image.save(out, "JPEG", quality=85)
        return out.getvalue()

    def picture(self, kind: str, key: str) -> bytes:
        """The PNG `dinokit viz pca|attention` draws for one image of the collection (the last 64 kept)."""
        from ..features.attention import attention_figure
        from ..features.viz import pca_figure

        path = self.collection.resolve(key)
        vit = self.net.backbone if isinstance(self.net, DinoTxt) else self.net
        if (kind, path) not in self._pictures:
            with self.model_lock:
                figure = pca_figure(vit, [path]) if kind == "pca" else attention_figure(vit, path)
            out = io.BytesIO()
            figure.save(out, "PNG")
            self._pictures[(kind, path)] = out.getvalue()
            while len(self._pictures) > 64:
                self._pictures.popitem(last=False)
        return self._pictures[(kind, path)]

    def info(self) -> dict:
        o = self.options
        width = self.net.config.hidden_size * (2 if o.pooling == "cls+mean" else 1) if not self.reads_text else None
        dim = self.net.config.embed_dim if self.reads_text else width
        return {"model": o.model, "pooling": o.pooling, "normalize": o.normalize, "image_size": o.image_size, "dim": dim,
                "index": {"count": len(self.index.paths), "source": self.index.meta.get("source")} if self.index else None,
                "duplicate_groups": len(self.groups), "classifier": self.classifier is not None,
                "reads_text": self.reads_text, "limits": asdict(self.limits)}


def _by_shape(pixels: list[torch.Tensor], run) -> list:
    """run(stacked batch) per group of same-sized inputs; results in the order of `pixels`."""
    out: list = [None] * len(pixels)
    shapes: dict[tuple, list[int]] = {}
    for i, p in enumerate(pixels):
        shapes.setdefault(tuple(p.shape), []).append(i)
    for indices in shapes.values():
        for i, row in zip(indices, run(torch.stack([pixels[i] for i in indices]))):
            out[i] = row
    return out


def _read_groups(path) -> list[list[str]]:
    """The groups of a `dinokit dedup --json` output."""
    data = read_json(path)
    groups = data.get("groups") if isinstance(data, dict) else None
    if not isinstance(groups, list) or not all(isinstance(g, list) and all(isinstance(p, str) for p in g) for g in groups):
        raise InputFileError(path, "not a `dinokit dedup --json` output (no list of groups of paths)")
    return groups
