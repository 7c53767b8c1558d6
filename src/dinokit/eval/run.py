"""The evaluation jobs behind `dinokit eval knn|linear`: load, featurise (cached), evaluate, report."""
from __future__ import annotations

from pathlib import Path

import torch

from ..data.augment import classification_train_transform
from . import DEFAULT_CACHE
from .features import FeatureSet, folder_features, parquet_features
from .knn import knn_eval
from .linear import linear_probe, logistic_regression


def _is_parquet(source) -> bool:
    p = Path(source)
    return p.suffix == ".parquet" or (p.is_dir() and any(p.glob("part-*.parquet")))


def _load(model, model_name, source, labels=None, classes=None, **kw) -> FeatureSet:
    if _is_parquet(source):
        return parquet_features(source, labels, classes)
    return folder_features(model, model_name, source, **kw)


def _model(model_name, device, interpolate_mode, needs_model: bool):
    if not needs_model:
        return None
    from ..pretrained import AutoModel

    return AutoModel.from_pretrained(model_name, device=device, interpolate_mode=interpolate_mode)


def eval_knn(train, val, model="dinov2_vits14", *, ks=(10, 20, 100, 200), temperature=0.07, image_size=224,
             batch_size=64, num_workers=2, device="cpu", cache_dir=DEFAULT_CACHE, interpolate_mode=None,
             train_labels=None, val_labels=None, progress=True) -> dict:
    net = _model(model, device, interpolate_mode, not (_is_parquet(train) and _is_parquet(val)))
    kw = dict(cache_dir=cache_dir, image_size=image_size, batch_size=batch_size, num_workers=num_workers,
              device=device, progress=progress)
    tr = _load(net, model, train, train_labels, **kw)
    va = _load(net, model, val, val_labels, classes=tr.classes, **kw)
    if va.classes != tr.classes:
        raise ValueError(f"validation classes {va.classes} differ from training classes {tr.classes}")
    used, warnings = knn_ks(ks, len(tr.labels), len(tr.classes))
    rows = knn_eval(tr.final_cls(), tr.labels, va.final_cls(), va.labels, len(tr.classes), used, temperature)
    if len(tr.classes) <= 5:  # every class is in the top 5: the column says nothing
        rows = [{**row, "top5": None} for row in rows]
    return {"protocol": "knn", "model": str(model), "temperature": temperature, "train_images": len(tr.labels),
            "val_images": len(va.labels), "classes": len(tr.classes), "results": rows, "warnings": warnings}


def knn_ks(ks, train_images: int, classes: int) -> tuple[list[int], list[str]]:
    """The k values the protocol can use (a k above the training-set size votes with every image: it is
    clipped to that size, once), and what a reader of the table must know."""
    used = sorted({min(k, train_images) for k in ks})
    warnings = []
    clipped = sorted(k for k in ks if k > train_images)
    if clipped:
        warnings.append(f"k {', '.join(map(str, clipped))} exceed the {train_images} training images: clipped to "
                        f"{train_images} (every image votes)")
    if classes <= 5:
        warnings.append(f"top-5 accuracy is 100% by construction with {classes} classes: not reported")
    return used, warnings


MIN_HOLDOUT = 50  # held-out images below which the linear probe's model selection is a coin toss


def eval_linear(train, val, model="dinov2_vits14", *, augment: int = 0, epochs: int = 100, batch_size: int = 256,
                logreg: bool = False, image_size=224, num_workers=2, device="cpu", cache_dir=DEFAULT_CACHE,
                interpolate_mode=None, seed=0, progress=True) -> dict:
    """Cached centre crops by default (a deviation from the official protocol, which augments every step);
    `augment=K` caches K RandomResizedCrop + flip views per training image and draws one per step."""
    net = _model(model, device, interpolate_mode, not (_is_parquet(train) and _is_parquet(val)))
    kw = dict(cache_dir=cache_dir, image_size=image_size, num_workers=num_workers, device=device, progress=progress)
    views = [_load(net, model, train, **kw)]
    if augment and not _is_parquet(train):
        for k in range(augment):
            torch.manual_seed(seed * 1000 + k)  # each cached view is reproducible
            views.append(folder_features(net, model, train, transform=classification_train_transform(image_size),
                                         tag=f"augment{seed}.{k}", **kw))
        views = views[1:]  # augmented views replace the centre crop for training
    va = _load(net, model, val, classes=views[0].classes, **kw)
    result = linear_probe(views, va, epochs=epochs, batch_size=batch_size, seed=seed)
    out = {"protocol": "linear", "model": str(model), "classes": len(va.classes), "val_images": len(va.labels),
           "augmentation": f"{augment} cached augmented views" if augment else "cached centre crops", **result,
           "warnings": []}
    if result["holdout_images"] < MIN_HOLDOUT:
        out["warnings"].append(f"the learning rate, blocks and pooling are chosen on {result['holdout_images']} held-out "
                               f"images (10% of the training set): the choice is noisy below {MIN_HOLDOUT}")
    if logreg:
        out["logistic_regression"] = logistic_regression(views[0] if not augment else _load(net, model, train, **kw),
                                                         va, seed=seed)
    return out
