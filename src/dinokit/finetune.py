"""`dinokit finetune`: a classifier for an ImageFolder dataset, by linear probe or full fine-tuning.

The result is a transformers-layout `Dinov2ForImageClassification` folder (config.json with the class
names, model.safetensors, preprocessor_config.json) that dinokit, `dinokit classify` and transformers load.
"""
from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from .data import Dinov2ImageProcessor, ImageFiles, collate_images
from .data.augment import classification_train_transform
from .data.folders import labelled_images
from .errors import UsageError, first_line, refuse_changed_settings
from .io import atomic_write
from .optim import cosine_schedule, fuse, param_groups
from .pretrained import Dinov2ForImageClassification, load_model
from .runtime.cpu import fast_path
from .weights import model_identity, weights_fingerprint
from .weights.pretrained import with_linear_head

CHECKPOINT = "checkpoint.pt"


@dataclass
class FinetuneConfig:
    train: str
    val: str | None
    model: str
    output: str
    mode: str = "linear"  # linear: frozen backbone; full: everything, with layer-wise lr decay
    epochs: int = 10
    batch_size: int = 32
    lr: float | None = None  # default: 1e-3 (linear) or 5e-5 (full), for batch 32
    weight_decay: float = 0.05
    layer_decay: float = 0.75
    warmup_epochs: float = 1.0
    image_size: int = 224
    min_crop_scale: float = 0.08
    flip: bool = True
    num_workers: int = 2
    device: str | None = None
    seed: int = 0


def optimizer_groups(model: Dinov2ForImageClassification, lr: float, decay: float, weight_decay: float) -> list[dict]:
    """The recipe's parameter groups (`dinokit.optim.param_groups`: layer-wise lr decay, no weight decay on
    biases, norms and LayerScale); the head learns at the full rate."""
    groups = fuse(param_groups(model.dinov2, decay) + param_groups(model.classifier))
    return [{"params": g["params"], "lr": lr * g["lr_multiplier"], "base_lr": lr * g["lr_multiplier"],
             "weight_decay": weight_decay * g["wd_multiplier"]} for g in groups]


def evaluate(model, loader, labels: torch.Tensor, device) -> float:
    fast_path(model).eval()  # in place; training steps take the plain path (gradients on)
    correct = seen = 0
    with torch.inference_mode():
        for batch in loader:
            if batch.pixel_values is None:
                continue
            y = labels[batch.indices]
            correct += (model(batch.pixel_values.to(device)).logits.argmax(-1).cpu() == y).sum().item()
            seen += len(y)
    return correct / max(1, seen)


def _atomic_save(obj, path: Path):
    with atomic_write(path) as tmp:
        torch.save(obj, tmp)


def _np_state() -> dict:
    """numpy's RNG state as tensors and numbers, so the checkpoint loads with weights_only=True."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"keys": torch.from_numpy(keys.astype(np.int64)), "rest": [int(pos), int(has_gauss), float(gauss)]}


def _py_state(state):
    version, internal, gauss = state
    return version, tuple(internal), gauss


# What a resumed fine-tuning may change: more epochs (the cosine schedule then spans the new length from
# the epoch it resumes at), where it runs and with how many workers. Anything else is another model.
RESUMABLE_CHANGES = ("epochs", "num_workers", "device", "output")


def _settings(cfg: FinetuneConfig, backbone, classes: list[str]) -> dict:
    """What the result depends on, as a checkpoint records it: the options with paths made absolute, the
    backbone's weights fingerprint and the class names."""
    settings = asdict(cfg)
    settings.update(model=model_identity(cfg.model), train=str(Path(cfg.train).resolve()),
                    val=str(Path(cfg.val).resolve()) if cfg.val else None, output=str(Path(cfg.output).resolve()),
                    weights=weights_fingerprint(backbone), classes=list(classes))
    return settings


def finetune(cfg: FinetuneConfig, progress: bool = True) -> dict:
    from tqdm import tqdm

    torch.manual_seed(cfg.seed), random.seed(cfg.seed), np.random.seed(cfg.seed)
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    paths, labels, classes = labelled_images(cfg.train)
    backbone = load_model(cfg.model)
    config = with_linear_head(backbone.config, 1, id2label=dict(enumerate(classes)))
    model = Dinov2ForImageClassification(config)
    model.dinov2.load_state_dict(backbone.state_dict())
    torch.nn.init.normal_(model.classifier.weight, std=0.01), torch.nn.init.zeros_(model.classifier.bias)
    model.to(device)
    if cfg.mode == "linear":
        model.dinov2.requires_grad_(False)
    elif cfg.mode != "full":
        raise ValueError(f"mode must be linear or full, got {cfg.mode!r}")
    lr = cfg.lr or ((1e-3 if cfg.mode == "linear" else 5e-5) * cfg.batch_size / 32)
    optimizer = torch.optim.AdamW(optimizer_groups(model, lr, cfg.layer_decay if cfg.mode == "full" else 1.0,
                                                   cfg.weight_decay), betas=(0.9, 0.999))
    processor = Dinov2ImageProcessor(size=cfg.image_size * 256 // 224, crop_size=cfg.image_size)
    train_transform = classification_train_transform(cfg.image_size, cfg.min_crop_scale, cfg.flip)
    train_images = ImageFiles.from_paths(paths, train_transform)
    train_labels = torch.tensor(labels)
    train_loader = DataLoader(train_images, batch_size=cfg.batch_size, shuffle=True, num_workers=cfg.num_workers,
                              collate_fn=collate_images, drop_last=len(paths) > cfg.batch_size,
                              generator=torch.Generator().manual_seed(cfg.seed))
    steps_per_epoch = max(1, len(train_loader))
    total, warmup = cfg.epochs * steps_per_epoch, int(cfg.warmup_epochs * steps_per_epoch)
    lr_factor = cosine_schedule(1.0, 0.0, total, min(warmup, total))
    start_epoch, history = 0, []
    ckpt_path = out / CHECKPOINT
    settings = _settings(cfg, backbone, classes)
    if ckpt_path.is_file():  # resume: same settings, model, optimizer, schedule position and RNG state
        state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        refuse_changed_settings(out, state.get("settings", {}), settings, allowed=RESUMABLE_CHANGES)
        if cfg.epochs < state["epoch"]:
            raise UsageError(f"{out} has trained {state['epoch']} epochs already; --epochs {cfg.epochs} is fewer "
                             "(more epochs continue it)")
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as e:
            raise UsageError(f"{ckpt_path} holds another architecture than --model {cfg.model} "
                             f"({first_line(e)}); choose another output") from None
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, history = state["epoch"], state["history"]
        torch.set_rng_state(state["torch_rng"]), random.setstate(_py_state(state["py_rng"]))
        np.random.set_state(("MT19937", state["np_rng"]["keys"].numpy().astype(np.uint32), *state["np_rng"]["rest"]))
        train_loader.generator.set_state(state["loader_rng"])
    use_amp = device.type == "cuda" and torch.cuda.is_bf16_supported()
    start = time.perf_counter()
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        if cfg.mode == "linear":
            model.dinov2.eval()
        bar = tqdm(train_loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress, unit="batch")
        losses = []
        for i, batch in enumerate(bar):
            if batch.pixel_values is None:  # unreadable images are skipped
                continue
            step = epoch * steps_per_epoch + i
            for g in optimizer.param_groups:
                g["lr"] = g["base_lr"] * float(lr_factor[step])
            x, y = batch.pixel_values, train_labels[batch.indices]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                loss = model(x.to(device), labels=y.to(device)).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 3.0)
            optimizer.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses):.4f}")
        history.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)) if losses else None})
        _atomic_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch + 1,
                      "history": history, "torch_rng": torch.get_rng_state(), "py_rng": random.getstate(),
                      "np_rng": _np_state(), "loader_rng": train_loader.generator.get_state(),
                      "config": asdict(cfg), "settings": settings}, ckpt_path)
    result = {"classes": classes, "train_images": len(paths), "history": history,
              "epochs_run": cfg.epochs - start_epoch, "seconds": round(time.perf_counter() - start, 1)}
    if cfg.val:
        vpaths, vlabels, vclasses = labelled_images(cfg.val)
        if vclasses != classes:
            raise ValueError(f"validation classes {vclasses} differ from training classes {classes}")
        val_loader = DataLoader(ImageFiles.from_paths(vpaths, processor), batch_size=cfg.batch_size,
                                num_workers=cfg.num_workers, collate_fn=collate_images)
        result["val_accuracy"] = evaluate(model, val_loader, torch.tensor(vlabels), device)
        result["chance"] = 1 / len(classes)
    model.cpu().eval().save_pretrained(out)
    processor.save_pretrained(out)
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    return result
