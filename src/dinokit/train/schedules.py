"""Per-iteration schedules (official `CosineScheduler`: optional frozen start, linear warm-up, cosine to
the final value) and the learning-rate, weight-decay, momentum and teacher-temperature schedules of a run."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def cosine_schedule(base: float, final: float, total: int, warmup: int = 0, start_warmup: float = 0.0,
                    freeze: int = 0) -> np.ndarray:
    rest = np.arange(total - warmup - freeze)
    cosine = final + 0.5 * (base - final) * (1 + np.cos(np.pi * rest / max(len(rest), 1)))
    return np.concatenate((np.zeros(freeze), np.linspace(start_warmup, base, warmup), cosine))


def scaled_lr(base_lr: float, batch_size: int, rule: str = "sqrt_wrt_1024") -> float:
    """The paper's rule: base_lr is for a batch of 1024, scaled by the square root of the ratio."""
    if rule == "sqrt_wrt_1024":
        return base_lr * math.sqrt(batch_size / 1024)
    if rule == "linear_wrt_256":
        return base_lr * batch_size / 256
    if rule == "none":
        return base_lr
    raise ValueError(f"unknown scaling_rule {rule!r} (sqrt_wrt_1024, linear_wrt_256, none)")


@dataclass
class Schedules:
    lr: np.ndarray
    weight_decay: np.ndarray
    momentum: np.ndarray
    teacher_temp: np.ndarray
    last_layer_lr: np.ndarray  # the lr, but 0 while the prototypes are frozen (the first epoch)

    @classmethod
    def from_config(cls, cfg: dict, epoch_length: int) -> Schedules:
        o, t = cfg["optim"], cfg["teacher"]
        total = o["epochs"] * epoch_length
        lr = cosine_schedule(o["lr"], o["min_lr"], total, o["warmup_epochs"] * epoch_length)
        wd = cosine_schedule(o["weight_decay"], o["weight_decay_end"], total)
        momentum = cosine_schedule(t["momentum_teacher"], t["final_momentum_teacher"], total)
        warm = t["warmup_teacher_temp_epochs"] * epoch_length
        temp = np.concatenate((np.linspace(t["warmup_teacher_temp"], t["teacher_temp"], warm),
                               np.full(max(total - warm, 0), t["teacher_temp"])))[:total]
        last = lr.copy()
        last[: o["freeze_last_layer_epochs"] * epoch_length] = 0
        return cls(lr, wd, momentum, temp, last)
