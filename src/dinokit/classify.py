"""`dinokit classify`: the top-k labels of images from a classifier (ImageNet `_lc` heads or your own)."""
from __future__ import annotations

import torch

from .data import Dinov2ImageProcessor, load_image
from .pretrained import Dinov2ForImageClassification, load_model
from .runtime.cpu import fast_path


def load_classifier(model: str, *, layers: int | None = None, interpolate_mode: str | None = None):
    """(classifier on the fast path, its processor); a model without a classification head is a ValueError."""
    net = load_model(model, interpolate_mode=interpolate_mode, **({"layers": layers} if layers else {}))
    if not isinstance(net, Dinov2ForImageClassification):
        raise ValueError(f"{model} has no classification head: use an `_lc` name (dinov2_vits14_lc), "
                         "a *-imagenet1k-1-layer repo, or a folder written by `dinokit finetune`")
    return fast_path(net), Dinov2ImageProcessor.from_pretrained(model)


def top_predictions(probs: torch.Tensor, labels: dict, top_k: int) -> list[dict]:
    """[{"label", "index", "probability"}, ...] of one image's class probabilities, most probable first."""
    top = probs.topk(min(top_k, probs.numel()))
    return [{"label": labels.get(int(i), str(int(i))), "index": int(i), "probability": round(float(p), 6)}
            for p, i in zip(top.values, top.indices)]


def classify(images, model: str = "dinov2_vits14_lc", *, top_k: int = 5, layers: int | None = None,
             interpolate_mode: str | None = None) -> list[dict]:
    """[{"image", "predictions": [{"label", "index", "probability"}, ...]}] per image, most probable first."""
    net, processor = load_classifier(model, layers=layers, interpolate_mode=interpolate_mode)
    labels = net.config.id2label or {}
    results = []
    for path in images:
        with torch.inference_mode():
            probs = net(processor(load_image(path)).pixel_values).logits.softmax(-1)[0]
        results.append({"image": str(path), "predictions": top_predictions(probs, labels, top_k)})
    return results
