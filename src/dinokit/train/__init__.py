"""Self-supervised pretraining and distillation with the DINOv2 recipe (DINO + iBOT + KoLeo, multi-crop,
EMA teacher), from a laptop CPU smoke test to many processes with torchrun."""
from ..optim import cosine_schedule
from .config import PRESETS, load_config
from .heads import DINOHead
from .losses import DINOLoss, KoLeoLoss, iBOTPatchLoss, sinkhorn_knopp
from .schedules import Schedules
from .trainer import TrainingDiverged, TrainResult, train

__all__ = ["load_config", "PRESETS", "train", "TrainResult", "TrainingDiverged", "DINOHead", "DINOLoss",
           "iBOTPatchLoss", "KoLeoLoss", "sinkhorn_knopp", "Schedules", "cosine_schedule"]
