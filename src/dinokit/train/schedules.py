"""The learning-rate, weight-decay, momentum and teacher-temperature schedules of a pretraining run, each
per iteration (`dinokit.optim.cosine_schedule`)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..optim import cosine_schedule


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
