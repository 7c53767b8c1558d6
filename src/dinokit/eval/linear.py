"""The linear-probe protocol on frozen features: a grid of (blocks, avgpool, learning rate) heads trained at
once with SGD (momentum 0.9, no weight decay, cosine schedule), the best chosen on a held-out 10% of the
training set (the official script chooses on the validation set), then reported on the validation set.
Also the paper's third protocol, L2-regularised logistic regression with a sweep of C."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .features import FeatureSet

LEARNING_RATES = (1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 1e-1)


def holdout_split(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    cut = max(1, int(round(n * fraction)))
    return perm[cut:], perm[:cut]


def linear_probe(train_views: list[FeatureSet], val: FeatureSet, *, epochs: int = 100, batch_size: int = 256,
                 learning_rates=LEARNING_RATES, block_options=(1, 4), avgpool_options=(False, True),
                 holdout: float = 0.1, seed: int = 0) -> dict:
    """`train_views`: one FeatureSet per cached view of the training images (1: centre crops; K: augmented
    views, one drawn at random per image and step)."""
    torch.manual_seed(seed)
    base = train_views[0]
    num_classes = len(base.classes)
    max_blocks = base.cls.shape[1]
    configs = [(b, a) for b in block_options if b <= max_blocks for a in avgpool_options
               if not a or base.patch_mean is not None]
    fit_idx, hold_idx = holdout_split(len(base.labels), holdout, seed)
    inputs = {c: torch.stack([v.linear_input(*c) for v in train_views]) for c in configs}  # [views, N, F]
    heads = torch.nn.ModuleDict({
        f"{b}_{int(a)}_{i}": torch.nn.Linear(inputs[(b, a)].shape[-1], num_classes)
        for b, a in configs for i in range(len(learning_rates))})
    for head in heads.values():
        torch.nn.init.normal_(head.weight, std=0.01), torch.nn.init.zeros_(head.bias)
    scale = batch_size / 256
    optimizer = torch.optim.SGD([{"params": h.parameters(), "lr": learning_rates[int(name.rsplit("_", 1)[1])] * scale,
                                  "base_lr": learning_rates[int(name.rsplit("_", 1)[1])] * scale}
                                 for name, h in heads.items()], momentum=0.9, weight_decay=0.0)
    labels = base.labels
    steps_per_epoch = math.ceil(len(fit_idx) / batch_size)
    total = epochs * steps_per_epoch
    step = 0
    for _ in range(epochs):
        order = fit_idx[torch.randperm(len(fit_idx))]
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            view = torch.randint(len(train_views), (len(idx),))
            for g in optimizer.param_groups:
                g["lr"] = g["base_lr"] * 0.5 * (1 + math.cos(math.pi * step / total))
            loss = sum(F.cross_entropy(heads[f"{b}_{int(a)}_{i}"](inputs[(b, a)][view, idx]), labels[idx])
                       for b, a in configs for i in range(len(learning_rates)))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
    results = []
    with torch.no_grad():
        for b, a in configs:
            held = inputs[(b, a)][0, hold_idx]
            val_in = val.linear_input(b, a)
            for i, lr in enumerate(learning_rates):
                head = heads[f"{b}_{int(a)}_{i}"]
                results.append({
                    "blocks": b, "avgpool": a, "lr": lr,
                    "holdout_accuracy": (head(held).argmax(1) == labels[hold_idx]).float().mean().item(),
                    "val_accuracy": (head(val_in).argmax(1) == val.labels).float().mean().item(),
                })
    best = max(results, key=lambda r: (r["holdout_accuracy"], -abs(math.log10(r["lr"]) + 3)))
    return {"best": best, "grid": results, "train_images": len(fit_idx), "holdout_images": len(hold_idx),
            "views": len(train_views), "epochs": epochs}


def _fit_logreg(x: torch.Tensor, y: torch.Tensor, num_classes: int, C: float, max_iter: int = 200) -> torch.nn.Linear:
    """Multinomial logistic regression minimising mean CE + ||W||² / (2·C·N) (sklearn's objective / N)."""
    head = torch.nn.Linear(x.shape[1], num_classes)
    torch.nn.init.zeros_(head.weight), torch.nn.init.zeros_(head.bias)
    opt = torch.optim.LBFGS(head.parameters(), lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")
    n = len(y)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(head(x), y) + head.weight.pow(2).sum() / (2 * C * n)
        loss.backward()
        return loss

    opt.step(closure)
    return head


def logistic_regression(train: FeatureSet, val: FeatureSet, *, Cs=None, holdout: float = 0.1, seed: int = 0) -> dict:
    """The paper's third protocol on the final CLS: 45 values of C from 1e-6 to 1e5, chosen on a held-out
    10% of the training set, then refitted on the whole training set and reported on the validation set."""
    Cs = list(Cs) if Cs is not None else torch.logspace(-6, 5, 45).tolist()
    x, y, k = train.final_cls(), train.labels, len(train.classes)
    fit_idx, hold_idx = holdout_split(len(y), holdout, seed)
    sweep = []
    for C in Cs:
        head = _fit_logreg(x[fit_idx], y[fit_idx], k, C)
        with torch.no_grad():
            sweep.append({"C": C, "holdout_accuracy": (head(x[hold_idx]).argmax(1) == y[hold_idx]).float().mean().item()})
    best = max(sweep, key=lambda r: r["holdout_accuracy"])
    head = _fit_logreg(x, y, k, best["C"])
    with torch.no_grad():
        acc = (head(val.final_cls()).argmax(1) == val.labels).float().mean().item()
    return {"best_C": best["C"], "val_accuracy": acc, "sweep": sweep}
