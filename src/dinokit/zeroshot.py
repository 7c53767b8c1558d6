"""Zero-shot classification with dino.txt: class names (and prompt templates) → text classifier weights;
an image's class is the one whose weights its image embedding is closest to, as in dino.txt's notebook.

A class's weights are CLIP's prompt ensemble: every template filled with the name, each text embedding
normalised, their mean normalised again. Scores are 100 × cosine; probabilities their softmax.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from .classify import top_predictions
from .data import load_image
from .errors import UsageError
from .io import atomic_write
from .models.dinotxt import DinoTxt
from .pretrained import DinoTxtModel, is_dinotxt
from .runtime.cpu import fast_path
from .weights import weights_fingerprint
from .weights.labels import zeroshot_class_names, zeroshot_templates

LOGIT_SCALE = 100.0  # the notebook's zero-shot logits: 100 × cosine


def load_dinotxt(model, device=None) -> DinoTxtModel:
    """A dino.txt model (given, or loaded by name or folder onto the fast path); any other model is refused."""
    if isinstance(model, DinoTxt):
        return model
    if isinstance(model, torch.nn.Module) or not is_dinotxt(model):
        name = type(model).__name__ if isinstance(model, torch.nn.Module) else model
        raise UsageError(f"{name} does not read text: this needs a dino.txt model (--model dinotxt)")
    return fast_path(DinoTxtModel.from_pretrained(model, device=device))


CACHE = Path(os.environ.get("DINOKIT_CACHE", Path.home() / ".cache" / "dinokit")) / "zeroshot"


def text_classifier(model: DinoTxtModel, class_names: list[str], templates: list[str] | None = None,
                    batch_size: int = 256, cache: str | os.PathLike | None = CACHE) -> torch.Tensor:
    """[classes, embed_dim]: the normalised mean of each class's normalised template embeddings. Kept in
    `cache` (None: not kept) under a hash of the text tower's weights, the names and the templates: the
    ImageNet classifier is 80,000 texts through the text tower."""
    templates = templates or ["{}"]
    bad = [t for t in templates if t.count("{}") != 1]
    if bad:
        raise UsageError(f"a template must hold exactly one {{}} for the class name: {bad[0]!r}")
    if cache is None:
        return _text_classifier(model, class_names, templates, batch_size)
    key = hashlib.sha256(json.dumps([weights_fingerprint(model.text), class_names, templates]).encode()).hexdigest()[:32]
    path = Path(cache) / f"{key}.pt"
    if path.is_file():
        return torch.load(path, map_location=model.logit_scale.device, weights_only=True)
    weights = _text_classifier(model, class_names, templates, batch_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp:
        torch.save(weights.cpu(), tmp)
    return weights


def _text_classifier(model, class_names, templates, batch_size) -> torch.Tensor:
    texts = [t.format(name) for name in class_names for t in templates]
    with torch.inference_mode():
        embeddings = torch.cat([model.encode_texts(texts[i:i + batch_size], normalize=True).float()
                                for i in range(0, len(texts), batch_size)])
    weights = embeddings.view(len(class_names), len(templates), -1).mean(dim=1)
    return torch.nn.functional.normalize(weights, dim=-1)


def image_logits(model: DinoTxtModel, pixels: torch.Tensor, classifier: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        image = model.encode_image(pixels.to(classifier.device), normalize=True).float()
    return LOGIT_SCALE * image @ classifier.T


def zero_shot_classify(images, model="dinotxt", *, labels: list[str] | None = None, templates: list[str] | None = None,
                       top_k: int = 5, device=None) -> list[dict]:
    """[{"image", "predictions": [{"label", "index", "probability"}]}] per image, as `classify` answers.
    Without labels: ImageNet's 1000 classes with CLIP's 80 templates; with labels, the same templates unless
    `templates` are given."""
    from .data import OfficialEvalProcessor

    net = load_dinotxt(model, device)
    if labels is not None and (len(set(labels)) != len(labels) or not all(label.strip() for label in labels) or not labels):
        raise UsageError("labels must be distinct and not empty")
    labels = list(labels) if labels else zeroshot_class_names()  # CLIP's ImageNet names repeat two (class indices differ)
    classifier = text_classifier(net, labels, templates or zeroshot_templates())
    processor = OfficialEvalProcessor()
    names = dict(enumerate(labels))
    results = []
    for path in images:
        probs = image_logits(net, processor(load_image(path)).pixel_values, classifier).softmax(-1)[0]
        results.append({"image": str(path), "predictions": top_predictions(probs, names, top_k)})
    return results
