"""`dinokit eval zeroshot`: dino.txt's zero-shot classification protocol on an image folder (its notebook's
ImageNet evaluation): each class's text classifier from the class name and the prompt templates, every
image's normalised embedding scored against them (100 × cosine), top-1 and top-5 accuracy.

Class names: `classes.txt` in the folder (one per line, in the sorted order of the class sub-folders), else
CLIP's ImageNet names when there are 1000 classes, else the folder names with `_` as spaces.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..data import ImageFiles, OfficialEvalProcessor
from ..data.folders import labelled_images
from ..errors import UsageError
from ..runtime.images import run_over_images
from ..weights.labels import zeroshot_class_names, zeroshot_templates
from ..zeroshot import LOGIT_SCALE, load_dinotxt, text_classifier
from .knn import accuracy

CLASSES_FILE = "classes.txt"


def class_names(root, folders: list[str], classes_file=None) -> tuple[list[str], str]:
    """(readable names in class-index order, where they came from)."""
    path = Path(classes_file) if classes_file else Path(root) / CLASSES_FILE
    if path.is_file():
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if len(names) != len(folders):
            raise UsageError(f"{path} names {len(names)} classes but {root} has {len(folders)} class folders")
        return names, str(path)
    if classes_file:
        raise UsageError(f"--classes {classes_file}: no such file")
    if len(folders) == 1000:
        return zeroshot_class_names(), "CLIP's ImageNet class names (1000 class folders)"
    return [f.replace("_", " ") for f in folders], "the folder names"


def eval_zeroshot(val, model="dinotxt", *, classes_file=None, templates: list[str] | None = None, image_size: int = 224,
                  batch_size: int = 64, num_workers: int = 2, device=None) -> dict:
    paths, labels, folders = labelled_images(val)
    if not paths:
        raise UsageError(f"{val} has no images")
    names, source = class_names(val, folders, classes_file)
    templates = templates or zeroshot_templates()
    net = load_dinotxt(model, device)
    classifier = text_classifier(net, names, templates)
    scores, kept, failures = [], [], []
    labels_t = torch.tensor(labels)

    def keep(batch, logits):
        failures.extend(batch.failures)
        if logits is not None:
            scores.append(logits.float().cpu())
            kept.append(batch.indices)

    device = next(net.parameters()).device
    run_over_images(ImageFiles.from_paths(paths, OfficialEvalProcessor(image_size)),
                    lambda pixels: LOGIT_SCALE * net.encode_image(pixels, normalize=True).float() @ classifier.T, keep,
                    batch_size=batch_size, num_workers=num_workers, device=device)
    if not scores:
        raise UsageError(f"no image of {val} could be used ({len(failures)} failed)")
    scores, targets = torch.cat(scores), labels_t[torch.cat(kept)]
    return {"protocol": "zeroshot", "model": str(model), "val_images": len(targets), "failed": len(failures),
            "failures": [{"path": p, "reason": r} for p, r in failures[:20]], "classes": len(names),
            "class_names_from": source, "templates": len(templates),
            "top1": accuracy(scores, targets, 1), "top5": accuracy(scores, targets, 5)}
